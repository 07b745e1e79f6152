//! The two ways MCP reaches this gateway: streamable HTTP (`/mcp`,
//! `/ucp/mcp` and `/admin/mcp`, mounted by the HTTP router) and stdio
//! (`agentgate stdio`).
//!
//! rmcp's HTTP defaults suit a local experiment, not a gateway, so every
//! one that matters is set here on purpose:
//! - stateless (legacy session mode off): no per-client state in memory, so
//!   any instance, or a Lambda, can answer any request; 2026-07-28 has no
//!   sessions anyway;
//! - JSON responses rather than an SSE stream for request/response calls;
//! - the `Host` allowlist from settings (DNS-rebinding defence) and `Origin`
//!   validation switched on, with the allowlist from settings, so a foreign
//!   browser origin gets 403;
//! - the same body limit as the rest of the HTTP edge.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;

use super::operator::OperatorServer;
use super::ucp_binding::UcpServer;
use super::{Edge, GatewayServer};
use crate::settings::Settings;

/// The streamable HTTP configuration for every MCP endpoint.
pub fn http_config(settings: &Settings) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(settings.mcp_allowed_hosts.clone())
        .with_allowed_origins(settings.mcp_allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(settings.max_body_bytes)
}

/// The gateway tools at `/mcp`.
pub fn gateway_service(
    edge: Arc<Edge>,
    settings: &Settings,
) -> StreamableHttpService<GatewayServer, NeverSessionManager> {
    // Built once; the factory hands out cheap clones (a few `Arc`s) per
    // request.
    let server = GatewayServer::new(edge);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        http_config(settings),
    )
}

/// The UCP MCP binding at `/ucp/mcp`.
pub fn ucp_service(
    edge: Arc<Edge>,
    settings: &Settings,
) -> StreamableHttpService<UcpServer, NeverSessionManager> {
    let server = UcpServer::new(edge);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        http_config(settings),
    )
}

/// The operator tools at `/admin/mcp` (admin scope only; the HTTP edge
/// guards the prefix).
pub fn operator_service(
    edge: Arc<Edge>,
    settings: &Settings,
) -> StreamableHttpService<OperatorServer, NeverSessionManager> {
    let server = OperatorServer::new(edge);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        http_config(settings),
    )
}

/// Serves the gateway tools on stdin/stdout until the client closes the
/// stream. Stdout carries only protocol messages; logs go to stderr.
pub async fn serve_stdio(edge: Arc<Edge>) -> std::io::Result<()> {
    let running = GatewayServer::new(edge)
        .serve(rmcp::transport::io::stdio())
        .await
        .map_err(|e| std::io::Error::other(format!("MCP stdio session failed to start: {e}")))?;
    let reason = running.waiting().await.map_err(std::io::Error::other)?;
    tracing::info!(reason = ?reason, "MCP stdio session ended");
    Ok(())
}
