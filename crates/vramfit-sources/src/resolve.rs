/*!
MODEL → spec: a path to a `config.json` or a folder holding one, else a
catalog id or alias.

Order: an existing path wins (so a local folder named like a catalog model is
read from disk), then the embedded catalog. Nothing here touches the network.
*/

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogEntry};
use crate::config::{ParsedConfig, parse_config_str};
use crate::error::SourceError;

/// Largest `config.json` read (real ones are a few KiB; VLM configs up to ~100 KiB).
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Where a model's architecture came from.
#[derive(Clone, Debug)]
pub enum ModelOrigin {
    /// A file on disk.
    File(PathBuf),
    /// The embedded catalog.
    Catalog(CatalogEntry),
}

impl ModelOrigin {
    /// A short description for output (`catalog:meta-llama/Llama-3.1-8B`, or the path).
    pub fn describe(&self) -> String {
        match self {
            ModelOrigin::File(path) => path.display().to_string(),
            ModelOrigin::Catalog(entry) => format!("catalog:{}", entry.id),
        }
    }
}

/// A resolved model.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// What the user asked for.
    pub name: String,
    /// Where it was found.
    pub origin: ModelOrigin,
    /// The parsed architecture and any warnings.
    pub parsed: ParsedConfig,
}

/// Resolves `name` to a model spec.
pub fn resolve_model(name: &str) -> Result<ResolvedModel, SourceError> {
    let path = Path::new(name);
    if path.exists() {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        if path.is_dir() && !file.is_file() {
            return Err(SourceError::NoConfig { path: path.to_path_buf() });
        }
        let text = read_bounded(&file)?;
        let parsed = parse_config_str(&text, &file.display().to_string())?;
        return Ok(ResolvedModel {
            name: name.to_owned(),
            origin: ModelOrigin::File(file),
            parsed,
        });
    }
    let catalog = Catalog::embedded();
    let found = catalog.find(name);
    if found.is_none() && looks_like_path(name) {
        return Err(SourceError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    match found {
        Some(entry) => Ok(ResolvedModel {
            name: name.to_owned(),
            parsed: entry.parse()?,
            origin: ModelOrigin::Catalog(entry.clone()),
        }),
        None => Err(SourceError::UnknownModel {
            name: name.to_owned(),
            suggestions: catalog.suggestions(name),
        }),
    }
}

/// Whether a name that exists neither on disk nor in the catalog was meant as
/// a path (`./model`, `/data/x`, `config.json`), so the error says "not found"
/// rather than "unknown model".
fn looks_like_path(name: &str) -> bool {
    name.starts_with(['.', '/', '~'])
        || Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || name.contains('\\')
        || name.matches('/').count() > 1
}

/// Reads a text file of at most [`MAX_CONFIG_BYTES`].
fn read_bounded(path: &Path) -> Result<String, SourceError> {
    use std::io::Read as _;
    let io = |source| SourceError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SourceError::InvalidField {
            origin: path.display().to_string(),
            key: "(file)".into(),
            reason: format!("is larger than {MAX_CONFIG_BYTES} bytes; not a config.json"),
        });
    }
    Ok(text)
}
