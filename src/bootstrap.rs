//! Wiring: builds the adapters and the gateway from settings, and runs the
//! HTTP server. This is the only place that knows which adapter implements
//! which port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::payments::SandboxPayments;
use crate::gateway::Gateway;
use crate::http::{self, AppState};
use crate::ports::SystemClock;
use crate::settings::Settings;

/// Builds the application state from checked settings: opens (or creates)
/// the store in the data dir, imports the catalog on first start, and loads
/// or generates the merchant signing key.
pub async fn build(settings: Settings) -> anyhow::Result<AppState> {
    let _ = (SystemClock, Arc::new(SandboxPayments::new(settings.public_base_url.clone())));
    let _ = Gateway::new;
    anyhow::bail!("the embedded store is not wired yet")
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let listen = settings.listen;
    let state = build(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        startup_ms = started.elapsed().as_millis() as u64,
        "agentgate listening"
    );
    http::serve(listener, http::app(state), Duration::from_secs(10)).await?;
    tracing::info!("agentgate stopped");
    Ok(())
}
