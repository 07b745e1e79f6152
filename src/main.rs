//! The `agentgate` binary: parse the command line, load settings, and hand
//! off to the library.

use std::process::ExitCode;

use clap::Parser;

use agentgate::cli::{init_logging, init_logging_at, Cli, Command};
use agentgate::settings::Settings;

/// The server allocates and frees many small buffers per request (JSON
/// values, headers, SQLite rows); mimalloc's thread-local free lists make
/// that cheaper in instructions than glibc malloc, at a much higher peak
/// RSS, so it is opt-in (the `mimalloc` feature; see docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line, with one addition: Lambda's `provided` runtimes start
/// an executable named `bootstrap` with no arguments, and `cargo lambda
/// build` names this binary so. A bare `bootstrap` therefore means
/// `agentgate lambda`.
fn arguments() -> Vec<std::ffi::OsString> {
    #[allow(unused_mut)]
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    #[cfg(feature = "aws")]
    {
        let name = args.first().map(std::path::Path::new).and_then(|p| p.file_name());
        if args.len() == 1 && name.is_some_and(|n| n == "bootstrap") {
            args.push("lambda".into());
        }
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(arguments());
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
        #[cfg(feature = "aws")]
        Command::Lambda(args) => {
            let settings = Settings::load(cli.config.as_deref(), &args.overrides())?;
            init_logging(settings.log_format);
            agentgate::lambda::run(settings).await
        }
        #[cfg(feature = "aws")]
        Command::Dynamodb(cmd) => agentgate::cli::dynamodb::run(cli.config.as_deref(), cmd).await,
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
        Command::Ledger(args) => {
            init_logging_at(agentgate::settings::LogFormat::Human, "warn");
            agentgate::cli::admin::ledger(cli.config.as_deref(), args).await
        }
        Command::Admin(cmd) => {
            init_logging_at(agentgate::settings::LogFormat::Human, "warn");
            agentgate::cli::admin::run(cli.config.as_deref(), cmd).await
        }
        Command::Keys(cmd) => agentgate::cli::keys::run(cmd),
        Command::Mandate(cmd) => agentgate::cli::mandate::run(cmd),
    }
}
