//! The HTTP edge: the axum router, cross-cutting layers and handlers.
//!
//! Only this module knows HTTP. Handlers translate requests into calls on
//! [`Gateway`] and results into responses; they hold no business rules.
//! The layer stack, read top to bottom in [`app`], is the whole story of
//! what happens to every request before a handler sees it.

pub mod error;
pub mod request_id;
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
            ap2_mandate: false,
        };
        let docs = Docs {
            profile: StaticDoc::new(&business_profile(&input)),
            profile_2026_01_11: StaticDoc::new(&business_profile_2026_01_11(&input)),
            jwks: StaticDoc::new(&jwks),
        };
        Self { gateway, docs: Arc::new(docs) }
    }
}

/// The whole HTTP application. Callable from tests with `oneshot`.
pub fn app(state: AppState) -> Router {
    let settings = state.gateway.settings();
    let max_body = settings.max_body_bytes;
    let timeout = settings.request_timeout;
    Router::new()
        .route("/health", get(well_known::health))
        .route("/.well-known/ucp", get(well_known::ucp_profile))
        .route("/.well-known/ucp/2026-01-11", get(well_known::ucp_profile_2026_01_11))
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .fallback(error::not_found)
        .with_state(state)
        // Layers, innermost first (each `.layer` wraps everything above it):
        // 4. bound the size and time of every request;
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, timeout))
        // 3. a panic becomes a 500 with the error body, never a dropped
        //    connection;
        .layer(CatchPanicLayer::custom(error::panic_response))
        // 2. axum's own empty error responses (405, 413) get the error body;
        .layer(axum::middleware::map_response(error::normalise_bare_errors))
        // 1. outermost: tag the request with its id, and scope it for error
        //    bodies and logs, before anything else can answer.
        .layer(axum::middleware::from_fn(request_id::middleware))
}

/// Serves `app` on `listener` until SIGINT or SIGTERM, then drains
/// in-flight requests for up to `grace`.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, grace: Duration) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(());
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
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
