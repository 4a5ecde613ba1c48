/*!
MODEL → spec: a path to a `config.json` or a folder holding one, a `.gguf`
file (or a folder holding one GGUF model and no `config.json`: the spec then
comes from its `{arch}.*` keys, see [`crate::gguf_model`]), else a catalog id
or alias, else a repo id in the local Hugging Face cache.

Order: an existing path wins (so a local folder named like a catalog model is
read from disk), then the embedded catalog, then the Hugging Face cache
(`HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
`XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; the
layout `models--ORG--NAME/snapshots/COMMIT/` with `refs/REVISION` naming the
commit, as `huggingface_hub` writes it), then a model hub when one is given: any [`ModelHub`], such as the Hub
client of the `hub` feature (the CLI gives one unless `--offline` or
`HF_HUB_OFFLINE=1`). Nothing here touches the network itself.
*/

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogEntry};
use crate::checkpoint::has_extension;
use crate::config::{ParsedConfig, parse_config_str};
use crate::error::SourceError;
use crate::gguf_model::read_gguf_model;
use crate::hf_env::{hf_cache_root, is_repo_part};
use vramfit_core::serving::StoredWeights;

use crate::config::MAX_CONFIG_BYTES;

/// Where a model's architecture came from.
#[derive(Clone, Debug)]
pub enum ModelOrigin {
    /// A file on disk.
    File(PathBuf),
    /// The embedded catalog.
    Catalog(CatalogEntry),
    /// A snapshot in the local Hugging Face cache.
    HfCache {
        /// The repo id.
        repo: String,
        /// The snapshot's commit.
        commit: String,
        /// The `config.json` read.
        path: PathBuf,
    },
    /// A config given as text by the caller (the Python API's dicts), named so.
    Inline(String),
    /// The Hugging Face Hub.
    Hub {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The `config.json` URL read.
        url: String,
    },
}

impl ModelOrigin {
    /// A short description for output (`catalog:meta-llama/Llama-3.1-8B`, or the path).
    pub fn describe(&self) -> String {
        match self {
            ModelOrigin::File(path) => path.display().to_string(),
            ModelOrigin::Catalog(entry) => format!("catalog:{}", entry.id),
            ModelOrigin::HfCache { repo, commit, .. } => {
                format!("hf-cache:{repo}@{}", commit.get(..12).unwrap_or(commit))
            }
            ModelOrigin::Hub { repo, revision, .. } => format!("hub:{repo}@{revision}"),
            ModelOrigin::Inline(label) => format!("inline:{label}"),
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
    /// For a GGUF model: its stored tensor bytes, grouped by placement.
    pub stored_weights: Option<StoredWeights>,
    /// What each step of the resolution found (shown by `--verbose`).
    pub steps: Vec<String>,
}

/// Resolves `name` to a model spec (the cache's `main` revision), offline.
pub fn resolve_model(name: &str) -> Result<ResolvedModel, SourceError> {
    resolve_model_at(name, None)
}

/// Resolves `name` offline, taking `revision` (a branch, tag or commit; default
/// `main`) when the model comes from the Hugging Face cache.
pub fn resolve_model_at(name: &str, revision: Option<&str>) -> Result<ResolvedModel, SourceError> {
    resolve_model_with(name, revision, None)
}

/// A model hub the resolver may ask for a repo it finds nowhere local: the
/// Hugging Face Hub client (`hub::HubClient`, feature `hub`), or any other
/// source of the same files (a test's fake, a browser's fetch).
pub trait ModelHub {
    /// The architecture of `repo` at `revision`: its `config.json`, or, for a
    /// repo with no `config.json`, the header of its one GGUF model.
    fn fetch_model(&self, repo: &str, revision: &str) -> Result<HubModel, SourceError>;
    /// The GGUF model `file` of `repo` at `revision` (one file or its split set).
    fn fetch_gguf_model(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<HubModel, SourceError>;
}

/// What a [`ModelHub`] found.
#[derive(Clone, Debug)]
pub struct HubModel {
    /// The parsed architecture.
    pub parsed: ParsedConfig,
    /// The URL read (`config.json`, or the first GGUF file).
    pub url: String,
    /// For a GGUF model: its stored tensor bytes.
    pub stored_weights: Option<StoredWeights>,
}

/// Resolves `name`; a repo id found neither on disk, in the catalog nor in the
/// cache is asked of `hub` when one is given (`None` = offline).
pub fn resolve_model_with(
    name: &str,
    revision: Option<&str>,
    hub: Option<&dyn ModelHub>,
) -> Result<ResolvedModel, SourceError> {
    let mut steps = Vec::new();
    let path = Path::new(name);
    if let Some(gguf_file) = gguf_path(path)? {
        let model = read_gguf_model(&gguf_file)?;
        steps.push(format!(
            "path: `{}` is a GGUF model; its architecture is read from the header",
            gguf_file.display()
        ));
        return Ok(ResolvedModel {
            name: name.to_owned(),
            origin: ModelOrigin::File(gguf_file),
            parsed: model.parsed,
            stored_weights: Some(model.weights),
            steps,
        });
    }
    if path.exists() {
        if path.is_file() && has_extension(path, "safetensors") {
            return Err(SourceError::InvalidField {
                origin: path.display().to_string(),
                key: "(file)".into(),
                reason: "is a safetensors checkpoint: its header lists tensors, not the \
                         architecture. Give the config.json beside it (or its folder), or see \
                         what it stores with `vramfit inspect`"
                    .into(),
            });
        }
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        // No config.json at all; one that is there but not a file (a FIFO, a
        // link loop) is read below, which names what it is.
        if path.is_dir() && std::fs::symlink_metadata(&file).is_err() {
            return Err(SourceError::NoConfig { path: path.to_path_buf() });
        }
        let text = read_bounded(&file)?;
        let parsed = parse_config_str(&text, &file.display().to_string())?;
        steps.push(format!("path: read `{}`", file.display()));
        return Ok(ResolvedModel {
            name: name.to_owned(),
            origin: ModelOrigin::File(file),
            parsed,
            stored_weights: None,
            steps,
        });
    }
    // A link that leads nowhere (dangling, or a loop) is named as such, not
    // looked up as a model name.
    if std::fs::symlink_metadata(path).is_ok() {
        let source = crate::files::open_regular(path).err().unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "a link to nothing")
        });
        return Err(SourceError::Io { path: path.to_path_buf(), source });
    }
    steps.push(format!("path: no file or folder `{name}`"));
    let catalog = Catalog::embedded();
    // A revision names a snapshot: only the cache and the Hub have those.
    let found = if revision.is_some() { None } else { catalog.find(name) };
    // `ORG/NAME/FILE.gguf`: one GGUF model of a Hub repo (which often holds several).
    if let (Some(hub), [org, repo, file]) = (hub, name.split('/').collect::<Vec<_>>().as_slice())
        && !path.exists()
        && has_extension(file, "gguf")
    {
        let repo_id = format!("{org}/{repo}");
        let revision = revision.unwrap_or("main");
        let HubModel { parsed, url, stored_weights } =
            hub.fetch_gguf_model(&repo_id, revision, file)?;
        steps.push(format!("hub: read the GGUF header(s) of `{url}`"));
        return Ok(ResolvedModel {
            name: name.to_owned(),
            origin: ModelOrigin::Hub { repo: repo_id, revision: revision.to_owned(), url },
            parsed,
            stored_weights,
            steps,
        });
    }
    if found.is_none() && looks_like_path(name) {
        return Err(SourceError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    if let Some(entry) = found {
        steps.push(format!("catalog: `{name}` is {}", entry.id));
        return Ok(ResolvedModel {
            name: name.to_owned(),
            parsed: entry.parse()?,
            origin: ModelOrigin::Catalog(entry.clone()),
            stored_weights: None,
            steps,
        });
    }
    steps.push(if revision.is_some() {
        "catalog: skipped (--revision names a snapshot)".to_owned()
    } else {
        format!("catalog: no model `{name}`")
    });
    let cache = hf_cache_root();
    let repo_id = name
        .split_once('/')
        .filter(|(org, repo)| !org.is_empty() && !repo.is_empty() && !repo.contains('/'));
    if let (Some(root), Some((org, repo))) = (&cache, repo_id)
        && let Some((commit, file)) = cached_config(root, org, repo, revision)?
    {
        let text = read_bounded(&file)?;
        let parsed = parse_config_str(&text, &file.display().to_string())?;
        steps.push(format!("hf cache: read `{}`", file.display()));
        return Ok(ResolvedModel {
            name: name.to_owned(),
            origin: ModelOrigin::HfCache { repo: name.to_owned(), commit, path: file },
            parsed,
            stored_weights: None,
            steps,
        });
    }
    steps.push(match &cache {
        Some(root) => format!("hf cache: `{name}` is not in `{}`", root.display()),
        None => "hf cache: no cache folder (HF_HUB_CACHE, HF_HOME and HOME unset)".to_owned(),
    });
    if let (Some(hub), Some(_)) = (hub, repo_id) {
        let revision = revision.unwrap_or("main");
        let HubModel { parsed, url, stored_weights } = hub.fetch_model(name, revision)?;
        steps.push(format!("hub: fetched `{url}`"));
        return Ok(ResolvedModel {
            name: name.to_owned(),
            origin: ModelOrigin::Hub { repo: name.to_owned(), revision: revision.to_owned(), url },
            parsed,
            stored_weights,
            steps,
        });
    }
    if let Some(revision) = revision {
        return Err(SourceError::NotCached {
            name: name.to_owned(),
            revision: revision.to_owned(),
            cache,
        });
    }
    Err(SourceError::UnknownModel {
        name: name.to_owned(),
        suggestions: catalog.suggestions(name),
        cache,
    })
}

/// The GGUF file `path` names: a `.gguf` file, or a folder without a
/// `config.json` that holds exactly one GGUF model (one file or one split set).
fn gguf_path(path: &Path) -> Result<Option<PathBuf>, SourceError> {
    if path.is_file() {
        return Ok(has_extension(path, "gguf").then(|| path.to_path_buf()));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let mut firsts = crate::checkpoint::gguf_models_in(path)
        .map_err(|source| SourceError::Io { path: path.to_path_buf(), source })?;
    match firsts.len() {
        0 => Ok(None),
        1 => Ok(firsts.pop()),
        _ => Err(SourceError::InvalidField {
            origin: path.display().to_string(),
            key: "(folder)".into(),
            reason: format!(
                "holds {} GGUF models and no config.json; name the .gguf file",
                firsts.len()
            ),
        }),
    }
}

/// The commit and `config.json` of `org/repo` at `revision` in the cache at
/// `root`, if cached. A revision of 40 hex digits is a commit; any other is a
/// branch or tag whose commit `refs/REVISION` holds.
fn cached_config(
    root: &Path,
    org: &str,
    repo: &str,
    revision: Option<&str>,
) -> Result<Option<(String, PathBuf)>, SourceError> {
    // Names that could leave the cache folder are not repo ids.
    if !is_repo_part(org) || !is_repo_part(repo) {
        return Ok(None);
    }
    let folder = root.join(format!("models--{org}--{repo}"));
    if !folder.is_dir() {
        return Ok(None);
    }
    let revision = revision.unwrap_or("main");
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_owned()
    } else {
        if !revision.split('/').all(is_repo_part) {
            return Ok(None);
        }
        let refs = folder.join("refs").join(revision);
        if !refs.is_file() {
            return Ok(None);
        }
        let text = read_bounded(&refs)?;
        let commit = text.trim().to_owned();
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SourceError::InvalidField {
                origin: refs.display().to_string(),
                key: "(file)".into(),
                reason: format!("should hold a 40-hex-digit commit, holds {commit:?}"),
            });
        }
        commit
    };
    let file = folder.join("snapshots").join(&commit).join("config.json");
    if !file.is_file() {
        return Err(SourceError::NoConfig { path: file.parent().unwrap_or(&folder).to_path_buf() });
    }
    Ok(Some((commit, file)))
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
    let file = crate::files::open_regular(path).map_err(io)?;
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
