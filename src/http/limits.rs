//! Rate limiting at the HTTP edge: classify the route, key the caller,
//! spend one call of the budget, or answer 429 with `Retry-After`.
//!
//! MCP requests pass through untouched here; one HTTP request there is one
//! JSON-RPC message whose tool only the MCP edge knows, so the MCP tool
//! wrapper spends the budget with the [`RateKey`] this layer leaves in the
//! request's extensions.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::gateway::access::Operation;
use crate::gateway::rate_limit::RateKey;
use crate::gateway::Caller;

/// The operation behind a REST route, or `None` for routes that spend no
/// budget (discovery documents, health, processor webhooks, MCP).
pub fn operation_of(method: &Method, path: &str) -> Option<Operation> {
    if path.starts_with("/admin/") {
        return Some(Operation::Operator);
    }
    let rest = path.strip_prefix("/ucp/v1/")?;
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET;
    Some(match parts.as_slice() {
        ["catalog", ..] => Operation::CatalogRead,
        ["carts", _] if get => Operation::CartRead,
        ["carts", ..] => Operation::CartWrite,
        ["checkout-sessions", _, "complete"] => Operation::CheckoutComplete,
        ["checkout-sessions", _] if get => Operation::CheckoutRead,
        ["checkout-sessions", ..] => Operation::CheckoutWrite,
        ["orders", ..] => Operation::OrderRead,
        _ => return None,
    })
}

/// The identity whose budget a request spends: the authenticated subject
/// when an auth layer has established one, otherwise the client address.
/// A `UCP-Agent` URL is not used for anonymous callers: anyone can claim
/// any URL, so keying on it would let a flood rotate URLs to dodge the
/// limit, or claim a victim's URL to exhaust its budget.
pub fn rate_key(req: &Request) -> String {
    if let Some(subject) = req.extensions().get::<Caller>().and_then(|c| c.subject.as_deref()) {
        return format!("sub:{subject}");
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".to_owned(),
    }
}

/// Whether the budget of a request is spent here. The operator MCP endpoint
/// is guarded as an `/admin` route but, like the other MCP endpoints, spends
/// its budget per tool call in the MCP tool wrapper, not twice.
fn spent_by_tool_wrapper(path: &str) -> bool {
    path == "/admin/mcp" || path.starts_with("/admin/mcp/")
}

/// The middleware: see the module docs.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let key = rate_key(&req);
    let op = operation_of(req.method(), req.uri().path())
        .filter(|_| !spent_by_tool_wrapper(req.uri().path()));
    if let Some(op) = op {
        if let Err(e) = state.gateway.rate_limit(op.class(), &key) {
            tracing::info!(class = op.class().as_str(), "rate limited");
            return ApiError(e).into_response();
        }
    }
    req.extensions_mut().insert(RateKey(key));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_operations() {
        let cases = [
            (Method::POST, "/ucp/v1/catalog/search", Some(Operation::CatalogRead)),
            (Method::GET, "/ucp/v1/carts/c1", Some(Operation::CartRead)),
            (Method::PUT, "/ucp/v1/carts/c1", Some(Operation::CartWrite)),
            (Method::POST, "/ucp/v1/carts", Some(Operation::CartWrite)),
            (Method::POST, "/ucp/v1/checkout-sessions", Some(Operation::CheckoutWrite)),
            (Method::GET, "/ucp/v1/checkout-sessions/x", Some(Operation::CheckoutRead)),
            (
                Method::POST,
                "/ucp/v1/checkout-sessions/x/complete",
                Some(Operation::CheckoutComplete),
            ),
            (Method::POST, "/ucp/v1/checkout-sessions/x/cancel", Some(Operation::CheckoutWrite)),
            (Method::GET, "/ucp/v1/orders/o1", Some(Operation::OrderRead)),
            (Method::GET, "/health", None),
            (Method::POST, "/mcp", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(operation_of(&method, path), want, "{method} {path}");
        }
        // Guarded as an operator route, budgeted per tool call.
        assert_eq!(operation_of(&Method::POST, "/admin/mcp"), Some(Operation::Operator));
        assert!(spent_by_tool_wrapper("/admin/mcp"));
        assert!(!spent_by_tool_wrapper("/admin/ledger"));
    }
}
