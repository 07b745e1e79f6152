//! Authentication and the auth tiers at the HTTP edge.
//!
//! A credential (`Authorization: Bearer …` or `X-Api-Key`) is checked by
//! the gateway and, when valid, becomes the request's [`Caller`] in its
//! extensions, where REST handlers and the MCP tool wrapper read it. A
//! credential that does not check out is a 401 even on open routes: a
//! client that sends a broken token wants to know. REST routes are then
//! authorised here against the one access table; MCP requests are
//! authorised per tool by the tool wrapper, which knows the tool.
//!
//! A 401 points at the protected-resource metadata (RFC 9728) with
//! `WWW-Authenticate: Bearer resource_metadata="…"`; a missing scope is a
//! 403 with `error="insufficient_scope"` and the scope needed.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::limits::operation_of;
use super::AppState;
use crate::domain::{Error, ErrorCode};
use crate::gateway::access::{self, Requirement};
use crate::gateway::{Caller, Tier};

/// Where the protected-resource metadata is served.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = v.splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        if scheme.eq_ignore_ascii_case("bearer") {
            return parts.next().map(str::trim).filter(|t| !t.is_empty());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

/// The refusal for `err`, with the `WWW-Authenticate` challenge RFC 6750
/// and RFC 9728 ask for.
pub fn refusal(state: &AppState, err: Error, scope: Option<&str>) -> Response {
    let metadata = format!("{}{METADATA_PATH}", state.gateway.settings().public_base_url);
    let challenge = match (err.code(), scope) {
        (ErrorCode::InsufficientScope, Some(scope)) => format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{metadata}\""
        ),
        _ => format!("Bearer resource_metadata=\"{metadata}\""),
    };
    let mut resp = ApiError(err).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The middleware: see the module docs.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(cred) = credential(req.headers()) {
        match state.gateway.authenticate(cred).await {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(e) => return refusal(&state, e, None),
        }
    }
    if let Some(op) = operation_of(req.method(), req.uri().path()) {
        let mut caller =
            req.extensions().get::<Caller>().cloned().unwrap_or_else(Caller::anonymous);
        // A platform naming its profile is negotiated by the handler before
        // anything happens, and a profile that cannot be fetched refuses the
        // request there; so naming one counts as signed here.
        if caller.tier == Tier::Anonymous && req.headers().contains_key("ucp-agent") {
            caller.tier = Tier::Signed;
        }
        if let Err(e) = state.gateway.authorize(&caller, op) {
            let scope = match op.requirement() {
                Requirement::Scope(s) => Some(s),
                _ => None,
            };
            return refusal(&state, e, scope);
        }
    }
    next.run(req).await
}

/// `GET /.well-known/oauth-protected-resource` (RFC 9728).
pub async fn protected_resource(State(state): State<AppState>) -> Response {
    let settings = state.gateway.settings();
    let servers: Vec<&str> = settings.auth.issuer.iter().map(String::as_str).collect();
    Json(serde_json::json!({
        "resource": settings.public_base_url,
        "authorization_servers": servers,
        "scopes_supported": access::SCOPES,
        "bearer_methods_supported": ["header"],
    }))
    .into_response()
}
