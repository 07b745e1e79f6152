//! The `agentgate` binary: parse the command line and hand off to the library.

use std::process::ExitCode;

use agentgate::cli;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agentgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make and inspect ES256 key files.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Sign and verify AP2 mandates.
    #[command(subcommand)]
    Mandate(cli::mandate::MandateCommand),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Keys(cmd) => cli::keys::run(cmd),
        Command::Mandate(cmd) => cli::mandate::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
