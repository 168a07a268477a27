//! The `certkeeper` binary: parse the command line, run it, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = certkeeper::cli::Cli::parse();
    match certkeeper::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("certkeeper: {e:#}");
            ExitCode::from(certkeeper::cli::exit_code(&e))
        }
    }
}
