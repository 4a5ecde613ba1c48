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

/// `--offline` and `--verbose`, set once from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Network {
    pub(crate) offline: bool,
    pub(crate) verbose: bool,
}

/// The global network flags.
pub(crate) static NETWORK: OnceLock<Network> = OnceLock::new();

fn network() -> Network {
    NETWORK.get().copied().unwrap_or_default()
}

/// The Hub client the environment and flags allow (`None` offline). Requests are
/// shown on stderr with --verbose, or when stderr is a terminal (a slow Hub is
/// then visible as it happens).
pub(crate) fn hub() -> Option<vramfit_sources::hub::HubClient> {
    use std::io::IsTerminal as _;
    let network = network();
    let client = vramfit_sources::hub::HubClient::from_env(network.offline)?;
    if network.verbose || std::io::stderr().is_terminal() {
        Some(client.with_progress(|line| {
            #[expect(clippy::print_stderr, reason = "progress goes to stderr")]
            {
                eprintln!("vramfit: {line}");
            }
        }))
    } else {
        Some(client)
    }
}

/// MODEL resolved in the documented order, at `--revision` for the cache and the Hub.
pub(crate) fn resolve(name: &str) -> anyhow::Result<vramfit_sources::ResolvedModel> {
    let revision = REVISION.get().and_then(Option::as_deref);
    if let Some(revision) = revision
        && std::path::Path::new(name).exists()
    {
        anyhow::bail!(
            "--revision {revision}: `{name}` is a local path; --revision picks a snapshot of a model in the Hugging Face cache or on the Hub"
        );
    }
    let hub = hub();
    let model = vramfit_sources::resolve_model_with(
        name,
        revision,
        hub.as_ref().map(|h| h as &dyn vramfit_sources::ModelHub),
    )?;
    if network().verbose {
        for step in &model.steps {
            #[expect(clippy::print_stderr, reason = "--verbose goes to stderr")]
            {
                eprintln!("vramfit: resolve {name}: {step}");
            }
        }
    }
    Ok(model)
}
