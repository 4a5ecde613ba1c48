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
mod render;
mod settings;

use std::io::Write;

use clap::Parser as _;

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
    /// 0 success, 1 an error about the model or input, 2 bad usage.
    pub code: u8,
    /// What it printed (a table, or a JSON document with `--json`).
    pub stdout: String,
    /// Its error message, if any.
    pub stderr: String,
    /// The error's kind, when it failed.
    pub error: Option<ErrorKind>,
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
    run(args, None, &mut stdout, &mut stderr, true).0
}

/// Runs `vramfit` on `args` (the program name first) with its output
/// captured and no colour. With `config`, the text of a `config.json` stands
/// for the model argument (named `config_name` in the output): a model given
/// as a Python dict needs no file.
pub fn run_captured<I, T>(args: I, config: Option<(&str, &str)>) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (code, error) = run(args, config, &mut stdout, &mut stderr, false);
    Outcome {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        error,
    }
}

fn run<I, T>(
    args: I,
    config: Option<(&str, &str)>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    color: bool,
) -> (u8, Option<ErrorKind>)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
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
            return (code, kind);
        }
    };
    commands::set_context(commands::Context {
        revision: cli.revision.clone(),
        network: commands::Network { offline: cli.offline, verbose: cli.verbose },
        inline_config: config.map(|(name, text)| (name.to_owned(), text.to_owned())),
    });
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
    };
    match result {
        Ok(()) => (0, None),
        Err(error) => {
            // A closed pipe (`vramfit models | head`) is not an error.
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return (0, None);
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
            (1, Some(settings::classify(&error)))
        }
    }
}

/// `--batch-size <B>` → `--batch-size`.
fn flag_of(arg: &str) -> String {
    arg.split_whitespace().next().unwrap_or(arg).trim_end_matches('=').to_owned()
}
