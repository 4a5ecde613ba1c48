//! One module per subcommand.

pub(crate) mod accuracy;
pub(crate) mod estimate;
pub(crate) mod fit;
pub(crate) mod gpus;
pub(crate) mod inspect;
pub(crate) mod models;
pub(crate) mod params;
pub(crate) mod rules;
pub(crate) mod serve;

use std::sync::OnceLock;

/// `--revision`, set once from the command line.
pub(crate) static REVISION: OnceLock<Option<String>> = OnceLock::new();

/// MODEL resolved in the documented order, at `--revision` for the cache.
pub(crate) fn resolve(name: &str) -> anyhow::Result<vramfit_sources::ResolvedModel> {
    let revision = REVISION.get().and_then(Option::as_deref);
    if let Some(revision) = revision
        && std::path::Path::new(name).exists()
    {
        anyhow::bail!(
            "--revision {revision}: `{name}` is a local path; --revision picks a snapshot of a model in the Hugging Face cache"
        );
    }
    Ok(vramfit_sources::resolve_model_at(name, revision)?)
}
