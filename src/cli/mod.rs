//! The command line: `serve` and the operator and agent-side tools. Parsing
//! only; each command hands off to the library.

pub mod admin;
pub mod catalog;
pub mod demo;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod keys;
pub mod mandate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settings::{LogFormat, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "agentgate",
    version,
    about = "A safe gateway for AI buying agents (UCP, AP2, MCP)"
)]
pub struct Cli {
    /// A TOML settings file (env: AGENTGATE_CONFIG).
    #[arg(long, global = true, env = "AGENTGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP gateway.
    Serve(ServeArgs),
    /// Serve AWS Lambda invocations (API Gateway HTTP API events) with the
    /// same router as `serve`. Only inside Lambda or an emulator.
    #[cfg(feature = "aws")]
    Lambda(LambdaArgs),
    /// Manage the DynamoDB table of the serverless deployment.
    #[cfg(feature = "aws")]
    #[command(subcommand)]
    Dynamodb(dynamodb::DynamodbCommand),
    /// Watch an AI agent make a complete purchase over MCP against an
    /// in-process gateway on the demo store (about a second, no network).
    Demo(demo::DemoArgs),
    /// Serve the MCP gateway tools on stdin/stdout, for a local MCP client
    /// (Claude Desktop, Cursor, VS Code). Logs go to stderr.
    Stdio(StdioArgs),
    /// The platform fee ledger over a date range, from the configured
    /// store (the same data as `GET /admin/ledger`).
    Ledger(admin::LedgerArgs),
    /// Operator tools against the configured store, offline: stock
    /// corrections, orders, refunds, fees, escalations, the audit log.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Manage the embedded catalog.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Make and inspect ES256 key files.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Sign and verify AP2 mandates (agent side and offline checks).
    #[command(subcommand)]
    Mandate(mandate::MandateCommand),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for the store and generated keys [default: ./data].
    #[arg(long, env = "AGENTGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format [default: human].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, clap::Args)]
pub struct StdioArgs {
    /// Directory for the store and generated keys [default: ./data].
    #[arg(long, env = "AGENTGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format on stderr [default: human].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl StdioArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides { listen: None, data_dir: self.data_dir.clone(), log_format: self.log_format }
    }
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            log_format: self.log_format,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct LambdaArgs {
    /// Log format [default: the `log_format` setting; the SAM template sets
    /// json].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl LambdaArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides { log_format: self.log_format, ..Overrides::default() }
    }
}

/// Sets up logging to stderr (stdout stays free for protocol traffic in
/// stdio mode). `RUST_LOG` refines the default `info` level.
pub fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// [`init_logging`] with another default level (the demo prints its own
/// story and logs only warnings unless `RUST_LOG` asks for more).
pub fn init_logging_at(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}
