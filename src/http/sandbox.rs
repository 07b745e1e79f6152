//! Pages a buyer's browser lands on during a payment: the sandbox
//! processor's approval page (its stand-in for 3-D Secure) and the page a
//! real processor returns the buyer to afterwards.
//!
//! Both are plain HTML for a person, not API resources: they say what
//! happened and that the agent finishes the checkout. Nothing from the
//! request is echoed into the page.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::{ApiError, ApiPath};
use super::AppState;
use crate::domain::Error;

/// The routes, merged at the root of the app.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox/authenticate/{reference}", get(authenticate))
        .route("/payments/return", get(returned))
}

fn page(title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>"
    );
    let mut resp = (StatusCode::OK, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // The page records a decision; no cache may answer for it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A sandbox charge reference: `sbx_ch_` and digits. Anything else cannot
/// name a waiting payment and reads as unknown.
fn valid_reference(r: &str) -> bool {
    r.len() <= 64 && !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `GET /sandbox/authenticate/{reference}`: the buyer approves the
/// payment. A GET, so an agent can hand the buyer a plain link; approving
/// twice is harmless. The checkout completes only when the agent calls
/// `complete` again.
async fn authenticate(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
) -> Response {
    if !valid_reference(&reference) {
        return ApiError(Error::not_found("no payment waits for approval here")).into_response();
    }
    match state.gateway.approve_payment_action(&reference).await {
        Ok(()) => page(
            "Payment approved",
            "The sandbox payment is approved. Return to your agent: it completes the \
             checkout to finish the purchase.",
        ),
        Err(e) => ApiError(e).into_response(),
    }
}

/// `GET /payments/return`: where a processor's own approval page (Stripe's
/// 3-D Secure) sends the buyer back. The processor already holds the
/// outcome; the agent learns it by completing the checkout again.
async fn returned() -> Response {
    page(
        "Payment step finished",
        "You can close this page. Return to your agent: it completes the checkout to \
         finish the purchase.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_references_are_looked_up() {
        let cases = [
            ("sbx_ch_00000001", true),
            ("", false),
            ("../etc", false),
            ("<script>", false),
            (&"a".repeat(65), false),
        ];
        for (r, want) in cases {
            assert_eq!(valid_reference(r), want, "{r}");
        }
    }
}
