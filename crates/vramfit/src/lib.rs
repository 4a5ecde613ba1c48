/*!
The `vramfit` command as a library: [`main`] runs it on the process's
arguments and streams (the binary, and the Python package's `vramfit`
command, are this one function), and [`run_captured`] runs it on given
arguments with its output captured and its error classified (the Python
API's calls). Both run the same parser, settings and commands, so every
shell answers the same way.
*/

mod cli;
mod commands;
mod local;
mod render;
mod settings;

use std::io::Write;

use crate::cli::{Cli, Command};

/// What kind of error a run ended with, for callers that branch on it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The model is not a file, not in the catalog, not cached, not on the Hub.
    ModelNotFound,
    /// A setting that cannot be run, or a flag the parser refused; the flag is
    /// named where it is known.
    InvalidSetting {
        /// The flag (`--batch-size`), or empty when the parser named none.
        setting: String,
    },
    /// The Hugging Face Hub could not answer.
    Hub,
    /// A safetensors or GGUF header (or index) is invalid.
    Header,
    /// Any other error (a config vramfit does not understand, a file it cannot read).
    Other,
}

/// A run's exit code, its output and, when it failed, the kind of error.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// 0 success, 1 an error about the model or input, 2 bad usage (a flag
    /// or a setting that cannot be run), 3 with `--check`: the job does not
    /// fit the chosen GPU.
    pub code: u8,
    /// What it printed (a table, or a JSON document with `--json`).
    pub stdout: String,
    /// Its error message, if any.
    pub stderr: String,
    /// The error's kind, when it failed.
    pub error: Option<ErrorKind>,
    /// With `as_value`, the `--json` document itself (then not in `stdout`).
    pub document: Option<serde_json::Value>,
}

/// Runs `vramfit` on `args` (the program name first) with the process's
/// standard streams, colouring on terminals; returns the exit code.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut stdout = anstream::stdout().lock();
    let mut stderr = anstream::stderr().lock();
    run(args, Request::default(), &mut stdout, &mut stderr, true).0
}

/// Runs `vramfit` on `args` (the program name first) with its output
/// captured and no colour. With `config`, `(name, text of a config.json)`
/// stands for the model argument: a model given as a Python dict needs no
/// file. With `as_value`, a `--json` document is returned as a value
/// ([`Outcome::document`]) instead of text.
pub fn run_captured<I, T>(args: I, config: Option<(&str, &str)>, as_value: bool) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let request = Request { config, as_value };
    let (code, error, document) = run(args, request, &mut stdout, &mut stderr, false);
    Outcome {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        error,
        document,
    }
}

/// What a library caller asks of a run beyond its arguments.
#[derive(Clone, Copy, Default)]
struct Request<'a> {
    /// `(name, config.json text)` standing for the model.
    config: Option<(&'a str, &'a str)>,
    /// Keep a `--json` document as a value.
    as_value: bool,
}

/// One run at a time per process: the run's flags, its captured document and
/// its verdict live in process-wide state for the commands to read, so
/// concurrent library callers take turns.
static RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run<I, T>(
    args: I,
    request: Request<'_>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    color: bool,
) -> (u8, Option<ErrorKind>, Option<serde_json::Value>)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let _one_at_a_time = RUN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = commands::take_does_not_fit();
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(error) => {
            let text =
                if color { error.render().ansi().to_string() } else { error.render().to_string() };
            let code = u8::try_from(error.exit_code()).unwrap_or(2);
            let _ = if error.use_stderr() {
                stderr.write_all(text.as_bytes())
            } else {
                stdout.write_all(text.as_bytes())
            };
            let kind = (code != 0).then(|| ErrorKind::InvalidSetting {
                setting: match error.get(clap::error::ContextKind::InvalidArg) {
                    Some(clap::error::ContextValue::String(arg)) => flag_of(arg),
                    _ => String::new(),
                },
            });
            return (code, kind, None);
        }
    };
    commands::set_context(commands::Context {
        revision: cli.revision.clone(),
        network: commands::Network {
            offline: cli.offline,
            verbose: cli.verbose,
            limits: {
                let mut limits = vramfit_sources::hub::HubLimits::default();
                limits.deadline = std::time::Duration::from_secs(cli.hub_deadline);
                limits.max_requests = cli.hub_max_requests;
                limits.max_shards = cli.hub_max_shards;
                limits
            },
        },
        inline_config: request.config.map(|(name, text)| (name.to_owned(), text.to_owned())),
        capture_documents: request.as_value,
        color,
        strict: cli.strict,
    });
    let _ = commands::take_document();
    let result = match &cli.command {
        Command::Infer(args) => commands::estimate::run_infer(args, stdout),
        Command::Train(args) => commands::estimate::run_train(args, stdout),
        Command::Params(args) => commands::params::run(args, stdout),
        Command::Fit(args) => commands::fit::run(args, stdout),
        Command::Rules(args) => commands::rules::run(args, stdout),
        Command::Inspect(args) => commands::inspect::run(args, stdout),
        Command::Models(args) => commands::models::run(args, stdout),
        Command::Gpus(args) => commands::gpus::run(args, stdout),
        Command::Accuracy(args) => commands::accuracy::run(args, stdout),
        Command::Completions(args) => {
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut cli::command(), "vramfit", &mut script);
            stdout.write_all(&script).map_err(anyhow::Error::from)
        }
        Command::Man => {
            clap_mangen::Man::new(cli::command()).render(stdout).map_err(anyhow::Error::from)
        }
    };
    let does_not_fit = commands::take_does_not_fit();
    let document = commands::take_document();
    match result {
        Ok(()) if cli.check && does_not_fit => (3, None, document),
        Ok(()) => (0, None, document),
        Err(error) => {
            // A closed pipe (`vramfit models | head`) is not an error.
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return (0, None, None);
            }
            let _ = stdout.flush();
            for (index, cause) in error.chain().enumerate() {
                let text = settings::message(cause);
                let _ = if index == 0 {
                    writeln!(stderr, "error: {text}")
                } else {
                    writeln!(stderr, "  caused by: {text}")
                };
            }
            // A setting that cannot be run is bad usage, like a flag the parser refuses.
            let kind = settings::classify(&error);
            let code = if matches!(kind, ErrorKind::InvalidSetting { .. }) { 2 } else { 1 };
            (code, Some(kind), None)
        }
    }
}

/// The command line parsed. The clap command is built once per process (a
/// library caller runs many commands; building it is most of a short run's
/// time) and reused for each parse.
fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches as _;
    static COMMAND: std::sync::Mutex<Option<clap::Command>> = std::sync::Mutex::new(None);
    let mut guard = COMMAND.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let command = guard.get_or_insert_with(|| {
        let mut command = cli::command();
        command.build();
        command
    });
    let mut matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut matches)
}

/// `--batch-size <B>` → `--batch-size`.
fn flag_of(arg: &str) -> String {
    arg.split_whitespace().next().unwrap_or(arg).trim_end_matches('=').to_owned()
}
