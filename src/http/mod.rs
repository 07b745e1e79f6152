//! The HTTP edge: the axum router, cross-cutting layers and handlers.
//!
//! Only this module knows HTTP. Handlers translate requests into calls on
//! [`Gateway`] and results into responses; they hold no business rules.
//! The layer stack, read top to bottom in [`app`], is the whole story of
//! what happens to every request before a handler sees it.

pub mod admin;
pub mod auth;
pub mod error;
pub mod limits;
pub mod request_id;
pub mod sandbox;
pub mod ucp_rest;
pub mod webhooks;
pub mod well_known;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::gateway::Gateway;
use well_known::StaticDoc;

/// Documents rendered once at startup.
#[derive(Clone)]
pub struct Docs {
    pub profile: StaticDoc,
    pub profile_2026_01_11: StaticDoc,
    pub jwks: StaticDoc,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub docs: Arc<Docs>,
    /// What the MCP endpoints (`/mcp`, `/ucp/mcp`, `/admin/mcp`) share.
    pub mcp: Arc<crate::mcp::Edge>,
}

impl AppState {
    /// Builds the state, rendering the discovery documents from `jwks` (the
    /// public key set of the merchant's key ring).
    pub fn new(gateway: Arc<Gateway>, jwks: serde_json::Value) -> Self {
        use crate::ucp::profile::{business_profile, business_profile_2026_01_11, ProfileInput};
        let settings = gateway.settings();
        let signing_keys = jwks.get("keys").and_then(|k| k.as_array()).cloned().unwrap_or_default();
        let input = ProfileInput {
            public_base_url: &settings.public_base_url,
            signing_keys,
            payment_processors: vec![gateway.payments().name()],
            ap2_mandate: settings.ap2_mandate_extension,
        };
        let profile = business_profile(&input);
        let docs = Docs {
            profile: StaticDoc::new(&profile),
            profile_2026_01_11: StaticDoc::new(&business_profile_2026_01_11(&input)),
            jwks: StaticDoc::new(&jwks),
        };
        let mcp = crate::mcp::Edge::new(Arc::clone(&gateway), Arc::new(profile));
        Self { gateway, docs: Arc::new(docs), mcp }
    }
}

/// The whole HTTP application. Callable from tests with `oneshot`.
pub fn app(state: AppState) -> Router {
    let max_body = state.gateway.settings().max_body_bytes;
    let timeout = state.gateway.settings().request_timeout;
    let mcp_gateway =
        crate::mcp::transport::gateway_service(Arc::clone(&state.mcp), state.gateway.settings());
    let mcp_ucp =
        crate::mcp::transport::ucp_service(Arc::clone(&state.mcp), state.gateway.settings());
    let mcp_operator =
        crate::mcp::transport::operator_service(Arc::clone(&state.mcp), state.gateway.settings());
    let routes = Router::new()
        .route("/health", get(well_known::health))
        .route("/.well-known/ucp", get(well_known::ucp_profile))
        .route("/.well-known/ucp/2026-01-11", get(well_known::ucp_profile_2026_01_11))
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .route(auth::METADATA_PATH, get(auth::protected_resource))
        .nest("/ucp/v1", ucp_rest::router())
        .nest_service("/mcp", mcp_gateway)
        .nest_service("/ucp/mcp", mcp_ucp)
        .nest_service("/admin/mcp", mcp_operator)
        .merge(admin::router())
        .merge(sandbox::router())
        .merge(webhooks::router())
        .fallback(error::not_found)
        .with_state(state.clone());
    // Who is calling and how much they may still do, inside the edge
    // layers so a refusal has a request id and the error body. Read bottom
    // to top: authenticate and authorise, then spend the caller's budget,
    // keyed by the subject authentication established.
    let routes = routes
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::middleware))
        .layer(axum::middleware::from_fn_with_state(state, auth::middleware));
    with_edge_layers(routes, max_body, timeout)
}

/// The cross-cutting layers every route gets. Each `.layer` wraps
/// everything above it, so the list reads from the innermost layer to the
/// outermost.
pub fn with_edge_layers(routes: Router, max_body: usize, timeout: Duration) -> Router {
    routes
        // Bound the size and time of every request.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, timeout))
        // A panic becomes a 500 with the error body, never a dropped
        // connection.
        .layer(CatchPanicLayer::custom(error::panic_response))
        // axum's own empty error responses (405, 413) get the error body.
        .layer(axum::middleware::map_response(error::normalise_bare_errors))
        // Outermost: tag the request with its id, and scope it for error
        // bodies and logs, before anything else can answer.
        .layer(axum::middleware::from_fn(request_id::middleware))
}

/// Serves `app` on `listener` until SIGINT or SIGTERM, then drains
/// in-flight requests for up to `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    grace: Duration,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(());
    let server =
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!("shutdown signal received; draining connections");
                let _ = tx.send(());
            });
    let mut rx2 = rx.clone();
    tokio::select! {
        res = server => res,
        _ = async move {
            let _ = rx2.changed().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Echo {
        #[allow(dead_code)]
        n: u32,
    }

    async fn echo(error::ApiJson(_e): error::ApiJson<Echo>) -> &'static str {
        "ok"
    }

    async fn boom() -> &'static str {
        panic!("secret detail in a panic")
    }

    fn test_app() -> Router {
        let routes = Router::new()
            .route("/echo", post(echo))
            .route("/boom", get(boom))
            .fallback(error::not_found);
        with_edge_layers(routes, 1024, Duration::from_secs(5))
    }

    async fn call(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let resp = test_app().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, body)
    }

    fn json_post(body: impl Into<Body>) -> Request<Body> {
        Request::post("/echo").header("content-type", "application/json").body(body.into()).unwrap()
    }

    /// Every kind of bad request gets the one error shape, and its trace id
    /// is the response's Request-Id.
    #[tokio::test]
    async fn every_error_has_the_error_body() {
        let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
            (json_post("{not json"), StatusCode::BAD_REQUEST, "malformed_json"),
            (
                json_post(format!("{{\"n\": 1, \"pad\": \"{}\"}}", "x".repeat(4096))),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (json_post("{\"n\": -1}"), StatusCode::BAD_REQUEST, "invalid_input"),
            (
                Request::post("/echo").body(Body::from("{}")).unwrap(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                Request::get("/nowhere").body(Body::empty()).unwrap(),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Request::get("/echo").body(Body::empty()).unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                Request::get("/boom").body(Body::empty()).unwrap(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (req, want_status, want_code) in cases {
            let (status, headers, body) = call(req).await;
            assert_eq!(status, want_status, "{want_code}: {body}");
            assert_eq!(body["error"]["code"], want_code, "{body}");
            assert!(body["error"]["message"].is_string());
            assert!(body["error"]["retryable"].is_boolean());
            let rid = headers.get("request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(!rid.is_empty());
            assert_eq!(body["error"]["trace_id"], rid, "trace id equals Request-Id");
            assert!(!body.to_string().contains("secret detail"), "panic text must not leak");
        }
    }

    #[tokio::test]
    async fn method_errors_keep_allow_and_client_ids_are_echoed() {
        let req =
            Request::get("/echo").header("request-id", "client-42").body(Body::empty()).unwrap();
        let (status, headers, body) = call(req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(headers.get("allow").is_some());
        assert_eq!(headers.get("request-id").unwrap(), "client-42");
        assert_eq!(body["error"]["trace_id"], "client-42");
    }
}
