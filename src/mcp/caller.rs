//! Who is calling a tool.
//!
//! The MCP edge never decides identity itself. Over HTTP, the layers in
//! front of the MCP service (an auth layer, when it lands) put a [`Caller`]
//! into the request's extensions; rmcp hands the request parts to the tool
//! call, and [`from_context`] reads the caller back. Without one (no auth
//! layer yet, or stdio, where the local user is the only caller) the caller
//! is anonymous, so resources created here are reachable by whoever holds
//! their unguessable id, the gateway's rule for anonymous owners.

use rmcp::service::RequestContext;
use rmcp::RoleServer;

use crate::gateway::rate_limit::RateKey;
use crate::gateway::Caller;

/// The caller of the request behind `context`.
pub fn from_context(context: &RequestContext<RoleServer>) -> Caller {
    if let Some(caller) = context.extensions.get::<Caller>() {
        return caller.clone();
    }
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .unwrap_or_else(Caller::anonymous)
}

/// The identity whose rate-limit budget a tool call spends: the key the
/// HTTP edge chose for the request, so REST and MCP share one budget per
/// caller; without one (stdio) the caller's subject, or the one local user.
pub fn rate_key(context: &RequestContext<RoleServer>, caller: &Caller) -> String {
    let from_http = context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<RateKey>())
        .map(|k| k.0.clone());
    from_http.unwrap_or_else(|| match &caller.subject {
        Some(subject) => format!("sub:{subject}"),
        None => "local".to_owned(),
    })
}
