//! The `vramfit` binary: the library's [`vramfit::main`] on the process's
//! arguments; exit codes 0 success, 1 an error about the model or input,
//! 2 bad usage (a flag or a setting that cannot be run), 3 with `--check`: the
//! job does not fit the chosen GPU.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(vramfit::main(std::env::args_os()))
}
