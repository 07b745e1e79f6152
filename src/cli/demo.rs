//! `agentgate demo`: sets up a throwaway gateway on the embedded demo store
//! and hands it to the demo agent in `mcp::demo`, which prints a complete
//! purchase step by step.

use std::path::PathBuf;

use anyhow::Context as _;
use rand_core::OsRng;
use serde_json::json;

use crate::adapters::payments::sandbox::SandboxCall;
use crate::ap2::PrivateKey;
use crate::mcp::demo::{self, DemoTarget};
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data dir to use [default: a fresh temporary directory, removed
    /// afterwards].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the temporary data dir (store, keys) for a look afterwards.
    #[arg(long)]
    pub keep: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (dir, temporary) = match args.data_dir {
        Some(dir) => (dir, false),
        None => {
            let name = format!("agentgate-demo-{}", uuid::Uuid::new_v4().simple());
            (std::env::temp_dir().join(name), true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    println!("agentgate demo: an AI agent buys a shirt, safely, over MCP");
    println!("\n 1. An in-process gateway on the embedded demo store");

    // The user's key, trusted by the merchant the way an operator would
    // (`trusted_agent_jwks_file`), so the demo needs no network at all.
    let user = PrivateKey::generate(&mut OsRng);
    let jwks_path = dir.join("demo-user.jwks.json");
    std::fs::write(&jwks_path, json!({"keys": [user.public().to_jwk()]}).to_string())
        .with_context(|| format!("cannot write {}", jwks_path.display()))?;
    let mut settings = Settings::for_data_dir(&dir);
    settings.trusted_agent_jwks_file = Some(jwks_path);
    let app = crate::bootstrap::build(settings).await?;
    println!(
        "    {} on {} (store, catalog and merchant key in {})",
        app.gateway.settings().merchant_name,
        app.gateway.payments().name(),
        dir.display()
    );
    let payments = app.payments.clone();
    let target = DemoTarget {
        edge: app.state.mcp.clone(),
        merchant_jwks: app.keys.jwks(app.gateway.now()),
        charges: Box::new(move || {
            payments
                .calls()
                .iter()
                .filter(|c| matches!(c, SandboxCall::Charge { replayed: false, .. }))
                .count()
        }),
    };
    let outcome = demo::run(target, user).await.map_err(|e| anyhow::anyhow!("demo failed: {e}"));
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("Data kept in {}.", dir.display());
    }
    outcome
}
