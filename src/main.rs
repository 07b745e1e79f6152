//! The `agentgate` binary: parse the command line, load settings, and hand
//! off to the library.

use std::process::ExitCode;

use clap::Parser;

use agentgate::cli::{init_logging, init_logging_at, Cli, Command};
use agentgate::settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::load(cli.config.as_deref(), &args.overrides())?;
            init_logging(settings.log_format);
            agentgate::bootstrap::serve(settings).await
        }
        Command::Stdio(args) => {
            let settings = Settings::load(cli.config.as_deref(), &args.overrides())?;
            init_logging(settings.log_format);
            agentgate::bootstrap::stdio(settings).await
        }
        Command::Demo(args) => {
            init_logging_at(agentgate::settings::LogFormat::Human, "warn");
            agentgate::cli::demo::run(args).await
        }
        Command::Catalog(cmd) => agentgate::cli::catalog::run(cmd).await,
        Command::Keys(cmd) => agentgate::cli::keys::run(cmd),
        Command::Mandate(cmd) => agentgate::cli::mandate::run(cmd),
    }
}
