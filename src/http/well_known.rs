//! `/health`, `/.well-known/ucp` (with `/.well-known/ucp/2026-01-11`, the
//! profile of the older protocol version) and `/.well-known/jwks.json`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;

pub async fn health(State(state): State<AppState>) -> Response {
    let h = state.gateway.health().await;
    let status = if h.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(h)).into_response()
}

/// Serves a precomputed JSON document with a strong ETag and public caching,
/// answering `304 Not Modified` to a matching `If-None-Match`.
fn cached_document(headers: &HeaderMap, body: &bytes::Bytes, etag: &HeaderValue) -> Response {
    let matches =
        headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|t| t.trim() == etag.to_str().unwrap_or("") || t.trim() == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.clone())
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::ETAG, etag.clone());
    resp
}

/// A document rendered once at startup.
#[derive(Clone)]
pub struct StaticDoc {
    body: bytes::Bytes,
    etag: HeaderValue,
}

impl StaticDoc {
    pub fn new(value: &serde_json::Value) -> Self {
        let body = bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let digest = Sha256::digest(&body);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\""))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        Self { body, etag }
    }
}

pub async fn ucp_profile(State(state): State<AppState>, headers: HeaderMap) -> Response {
    cached_document(&headers, &state.docs.profile.body, &state.docs.profile.etag)
}

pub async fn ucp_profile_2026_01_11(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let doc = &state.docs.profile_2026_01_11;
    cached_document(&headers, &doc.body, &doc.etag)
}

pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    cached_document(&headers, &state.docs.jwks.body, &state.docs.jwks.etag)
}
