//! `safeship`: the guard rails from a terminal. Parsing, then the same library code the Lambdas
//! run; the exit code says how it went (see [`safeship_cli::Exit`]).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = safeship_cli::Cli::parse();
    safeship_cli::main(cli)
}
