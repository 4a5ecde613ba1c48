//! Errors of model sources: each names the file (or catalog entry) and the key at fault.

use std::path::PathBuf;

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("`{origin}` is not valid JSON: {message} (line {line}, column {column})")]
    Json {
        /// The file or catalog entry.
        origin: String,
        /// The JSON parser's message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Required config keys are absent.
    #[error(
        "`{origin}` (model_type `{model_type}`) lacks the key(s) {}; a decoder config needs them to count parameters",
        .fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
    )]
    MissingFields {
        /// The file or catalog entry.
        origin: String,
        /// The config's `model_type` (or `unknown`).
        model_type: String,
        /// The missing keys.
        fields: Vec<String>,
    },
    /// A config vramfit does not fully understand: any count would be a guess.
    #[error(
        "`{origin}` (model_type `{model_type}`): {reason}. vramfit gives no figure for a config \
         it does not fully understand; the model types it knows: {}",
        crate::config::KNOWN_MODEL_TYPES.join(", ")
    )]
    Unsupported {
        /// The file or catalog entry.
        origin: String,
        /// The config's `model_type` (or `(none)`).
        model_type: String,
        /// The keys it did not understand, dotted for nested keys.
        keys: Vec<String>,
        /// What was not understood, naming the keys and what they signal.
        reason: String,
    },
    /// A key holds a value of the wrong type or an absurd size.
    #[error("`{origin}`: key `{key}` {reason}")]
    InvalidField {
        /// The file or catalog entry.
        origin: String,
        /// The key, dotted for nested keys (`text_config.hidden_size`).
        key: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A model name that is neither a path, nor in the catalog, nor cached.
    #[error("unknown model `{name}`: not a file or folder, not in the embedded catalog{}{}",
        match .cache {
            Some(cache) => format!(", and not in the Hugging Face cache at `{}` (the Hub is asked for ORG/NAME ids unless --offline or HF_HUB_OFFLINE=1)", cache.display()),
            None => String::new(),
        },
        if .suggestions.is_empty() { String::new() }
        else { format!(" (did you mean {}?)", .suggestions.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")) })]
    UnknownModel {
        /// What the user typed.
        name: String,
        /// Close catalog names.
        suggestions: Vec<String>,
        /// The Hugging Face cache searched, if any.
        cache: Option<PathBuf>,
    },
    /// `--revision` for a model the cache does not hold at that revision.
    #[error("`{name}` at revision `{revision}` is not in the Hugging Face cache{}: offline, --revision reads only cached snapshots",
        match .cache { Some(cache) => format!(" at `{}`", cache.display()), None => String::new() })]
    NotCached {
        /// What the user typed.
        name: String,
        /// The revision asked for.
        revision: String,
        /// The cache searched, if any.
        cache: Option<PathBuf>,
    },
    /// A folder without a `config.json`.
    #[error("`{}` has no `config.json`", path.display())]
    NoConfig {
        /// The folder.
        path: PathBuf,
    },
    /// The Hub could not give the model.
    #[error(
        "`{name}` is not on disk, in the catalog or in the Hugging Face cache, and the Hub failed: {cause}"
    )]
    Hub {
        /// What the user typed.
        name: String,
        /// The hub's error (in the message, so not chained a second time):
        /// a `hub::HubError` from the Hub client.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A GGUF header could not be read.
    #[error(transparent)]
    Gguf {
        /// The parser's error (it names the file and the offset or key).
        source: Box<crate::gguf::GgufError>,
    },
    /// The core rejected the architecture (for example, counts overflow).
    #[error("`{origin}`: {source}")]
    Core {
        /// The file or catalog entry.
        origin: String,
        /// The core's reason.
        source: vramfit_core::CoreError,
    },
}
