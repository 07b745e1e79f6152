//! Request ids. Every response carries `Request-Id`: the client's own when
//! it sent a sane one, otherwise a fresh one. The id is also the trace id in
//! error bodies and log lines, so one value ties a client report to the logs.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The request id of the request being served, or an empty string outside
/// of one.
pub fn current_request_id() -> String {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// Accepts a client id only if it is short printable ASCII: it ends up in
/// logs and headers, so nothing that could forge log lines gets through.
fn acceptable(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

/// Runs `fut` as part of the request `id`, for work a handler moves onto a
/// task of its own (task-locals do not cross `tokio::spawn`), so its error
/// bodies and log lines still carry the request's id.
pub async fn scoped<F: std::future::Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(acceptable)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = CURRENT.scope(id.clone(), next.run(req).instrument(span)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_are_replaced() {
        assert_eq!(acceptable(&HeaderValue::from_static("abc-123")).as_deref(), Some("abc-123"));
        for bad in ["", "a b", "x\ty", "{json}"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert!(acceptable(&v).is_none(), "{bad:?}");
            }
        }
        let long = "a".repeat(129);
        assert!(acceptable(&HeaderValue::from_str(&long).unwrap()).is_none());
    }
}
