//! One module per subcommand.

pub(crate) mod accuracy;
pub(crate) mod engine_accuracy;
pub(crate) mod estimate;
pub(crate) mod fit;
pub(crate) mod gpus;
pub(crate) mod inspect;
pub(crate) mod models;
pub(crate) mod params;
pub(crate) mod rules;
pub(crate) mod serve;

use std::sync::{Mutex, PoisonError};

use vramfit_sources::SourceError;

/// The global flags of one run, and a config given as text for the model.
#[derive(Clone, Debug, Default)]
pub(crate) struct Context {
    /// `--revision`.
    pub(crate) revision: Option<String>,
    /// `--offline` and `--verbose`.
    pub(crate) network: Network,
    /// `(name, config.json text)` standing for MODEL (the Python API's dicts).
    pub(crate) inline_config: Option<(String, String)>,
    /// Keep `--json` documents as values instead of printing them.
    pub(crate) capture_documents: bool,
    /// Colour may be written (the process's own streams, which drop it when
    /// they are not a terminal).
    pub(crate) color: bool,
    /// `--strict`: the workload's warnings are errors.
    pub(crate) strict: bool,
}

/// `--offline`, `--verbose`, `--hub-deadline` and `--hub-max-requests`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Network {
    pub(crate) offline: bool,
    pub(crate) verbose: bool,
    pub(crate) limits: vramfit_sources::hub::HubLimits,
}

/// The current run's context: set at the start of each run (a library caller
/// may run many in one process).
static CONTEXT: Mutex<Option<Context>> = Mutex::new(None);

pub(crate) fn set_context(context: Context) {
    *CONTEXT.lock().unwrap_or_else(PoisonError::into_inner) = Some(context);
}

/// Whether the current run's verdict on `--gpu` was "does not fit" (for `--check`).
static DOES_NOT_FIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes the verdict on the chosen GPU.
pub(crate) fn record_verdict(fits: bool) {
    DOES_NOT_FIT.store(!fits, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the verdict was "does not fit", cleared for the next run.
pub(crate) fn take_does_not_fit() -> bool {
    DOES_NOT_FIT.swap(false, std::sync::atomic::Ordering::Relaxed)
}

/// The document a capturing run produced.
static DOCUMENT: Mutex<Option<serde_json::Value>> = Mutex::new(None);

pub(crate) fn capturing_documents() -> bool {
    CONTEXT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|c| c.capture_documents)
}

pub(crate) fn store_document(document: serde_json::Value) {
    *DOCUMENT.lock().unwrap_or_else(PoisonError::into_inner) = Some(document);
}

pub(crate) fn take_document() -> Option<serde_json::Value> {
    DOCUMENT.lock().unwrap_or_else(PoisonError::into_inner).take()
}

pub(crate) fn context() -> Context {
    CONTEXT.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default()
}

/// Whether the current run may write colour.
pub(crate) fn color() -> bool {
    CONTEXT.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(|c| c.color)
}

/// `--revision` of the current run.
pub(crate) fn revision() -> Option<String> {
    context().revision
}

fn network() -> Network {
    context().network
}

/// The warning when `workload` runs past the model's context window
/// ([`context_limit`]: `max_position_embeddings`, rope-scaled where the config
/// says so), added to the model's warnings (the table and the JSON show them);
/// with `--strict`, an error naming the flag. Positions past the window are
/// untrained: the memory is as estimated, the output is not to be trusted.
pub(crate) fn check_context(
    model: &mut vramfit_sources::ResolvedModel,
    workload: &vramfit_core::workload::Workload,
) -> anyhow::Result<()> {
    use vramfit_core::workload::Workload;
    let spec = &model.parsed.spec;
    let (Some(limit), Some(window)) =
        (vramfit_core::solve::context_limit(spec, workload), spec.max_position_embeddings)
    else {
        return Ok(());
    };
    let what = match workload {
        Workload::Training(t) if t.seq_len > limit => format!("--seq-len {}", t.seq_len),
        Workload::Inference(i) if i.prompt_len > limit => format!(
            "--prompt-len {} + --gen-len {} = {} tokens",
            i.prompt_len,
            i.gen_len,
            i.prompt_len.saturating_add(i.gen_len)
        ),
        _ => return Ok(()),
    };
    let text = format!(
        "{what} runs past the model's context window of {window} tokens (max_position_embeddings, rope-scaled where the config says so): the memory is as estimated, but the model was not trained for those positions"
    );
    if context().strict {
        anyhow::bail!("{text} (--strict)");
    }
    model.parsed.warnings.push(text);
    Ok(())
}

/// The Hub client the environment and flags allow (`None` offline). Requests are
/// shown on stderr with --verbose, or when stderr is a terminal (a slow Hub is
/// then visible as it happens).
pub(crate) fn hub()
-> Result<Option<vramfit_sources::hub::HubClient>, vramfit_sources::hub::HubError> {
    use std::io::IsTerminal as _;
    let network = network();
    let Some(client) = vramfit_sources::hub::HubClient::from_env(network.offline)? else {
        return Ok(None);
    };
    let client = client.with_limits(network.limits);
    Ok(Some(if network.verbose || std::io::stderr().is_terminal() {
        client.with_progress(|line| {
            #[expect(clippy::print_stderr, reason = "progress goes to stderr")]
            {
                eprintln!("vramfit: {line}");
            }
        })
    } else {
        client
    }))
}

/// The Hub, asked only for a model found nowhere local: its client (TLS set-up,
/// the token file) is made on first use, not for every catalog model.
struct LazyHub(
    std::cell::OnceCell<
        Result<Option<vramfit_sources::hub::HubClient>, vramfit_sources::hf_env::TokenError>,
    >,
);

impl LazyHub {
    fn client(&self, name: &str) -> Result<&vramfit_sources::hub::HubClient, SourceError> {
        use vramfit_sources::hub::HubError;
        let made = self.0.get_or_init(|| {
            hub().map_err(|error| match error {
                HubError::Token(token) => token,
                other => vramfit_sources::hf_env::TokenError {
                    origin: "the environment".into(),
                    reason: other.to_string(),
                },
            })
        });
        let hub_error =
            |cause: HubError| SourceError::Hub { name: name.to_owned(), cause: Box::new(cause) };
        match made {
            Ok(Some(client)) => Ok(client),
            Ok(None) => Err(hub_error(HubError::Offline { what: name.to_owned() })),
            Err(token) => Err(hub_error(HubError::Token(token.clone()))),
        }
    }
}

impl vramfit_sources::ModelHub for LazyHub {
    fn fetch_model(
        &self,
        repo: &str,
        revision: &str,
    ) -> Result<vramfit_sources::HubModel, SourceError> {
        self.client(repo)?.fetch_model(repo, revision)
    }

    fn fetch_gguf_model(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<vramfit_sources::HubModel, SourceError> {
        self.client(repo)?.fetch_gguf_model(repo, revision, file)
    }
}

/// MODEL resolved in the documented order, at `--revision` for the cache and the Hub.
pub(crate) fn resolve(name: &str) -> anyhow::Result<vramfit_sources::ResolvedModel> {
    let context = context();
    if let Some((label, text)) = &context.inline_config {
        let parsed = vramfit_sources::parse_config_str(text, label)?;
        return Ok(vramfit_sources::ResolvedModel {
            name: name.to_owned(),
            origin: vramfit_sources::ModelOrigin::Inline(label.clone()),
            parsed,
            stored_weights: None,
            steps: vec![format!("inline: read the config given as {label}")],
        });
    }
    let revision = context.revision.as_deref();
    if let Some(revision) = revision
        && std::path::Path::new(name).exists()
    {
        anyhow::bail!(
            "--revision {revision}: `{name}` is a local path; --revision picks a snapshot of a model in the Hugging Face cache or on the Hub"
        );
    }
    let offline = network().offline || vramfit_sources::hf_env::offline_from_env();
    let lazy = LazyHub(std::cell::OnceCell::new());
    let hub: Option<&dyn vramfit_sources::ModelHub> = if offline { None } else { Some(&lazy) };
    let model = vramfit_sources::resolve_model_with(name, revision, hub)?;
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
