//! The `vramfit` binary: parses flags, runs a command, prints, and maps errors
//! to exit codes (0 success, 1 an error about the model or input, 2 bad usage).

mod cli;
mod commands;
mod render;
mod settings;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = commands::REVISION.set(cli.revision.clone());
    let _ = commands::NETWORK.set(commands::Network { offline: cli.offline, verbose: cli.verbose });
    let mut stdout = anstream::stdout().lock();
    let result = match &cli.command {
        Command::Infer(args) => commands::estimate::run_infer(args, &mut stdout),
        Command::Train(args) => commands::estimate::run_train(args, &mut stdout),
        Command::Params(args) => commands::params::run(args, &mut stdout),
        Command::Fit(args) => commands::fit::run(args, &mut stdout),
        Command::Rules(args) => commands::rules::run(args, &mut stdout),
        Command::Inspect(args) => commands::inspect::run(args, &mut stdout),
        Command::Models(args) => commands::models::run(args, &mut stdout),
        Command::Gpus(args) => commands::gpus::run(args, &mut stdout),
        Command::Accuracy(args) => commands::accuracy::run(args, &mut stdout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A closed pipe (`vramfit models | head`) is not an error.
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let _ = stdout.flush();
            let mut stderr = anstream::stderr().lock();
            for (index, cause) in error.chain().enumerate() {
                let text = settings::message(cause);
                let _ = if index == 0 {
                    writeln!(stderr, "error: {text}")
                } else {
                    writeln!(stderr, "  caused by: {text}")
                };
            }
            ExitCode::from(1)
        }
    }
}
