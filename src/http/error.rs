//! The one HTTP error shape: `{"error": {"code", "message", "retryable",
//! "trace_id"}}`, with the status taken from the error code. Every error
//! the HTTP edge produces, including unknown routes, wrong methods, bad JSON
//! and panics, goes through here.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::domain::{Error, ErrorCode};

use super::request_id::current_request_id;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// Renders the error body for `err` with the current request's trace id.
pub fn error_body(err: &Error) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": err.code().as_str(),
            "message": err.message(),
            "retryable": err.retryable(),
            "trace_id": current_request_id(),
        }
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(error_body(&self.0))).into_response();
        if let Some(secs) = self.0.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A JSON body extractor whose every rejection is an [`ApiError`]:
/// malformed JSON, a wrong content type, or a body over the size limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError(json_rejection(rejection))),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Error::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => Error::new(
            ErrorCode::MalformedJson,
            format!("the request body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => Error::new(ErrorCode::InvalidInput, e.body_text()),
        JsonRejection::BytesRejection(e) => {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                Error::new(ErrorCode::InvalidInput, "the request body could not be read")
            }
        }
        other => Error::new(ErrorCode::InvalidInput, other.body_text()),
    }
}

/// A path-parameter extractor whose rejection is an [`ApiError`]: a
/// segment that percent-decodes to invalid UTF-8 (`/checkout-sessions/%FF`)
/// or does not parse as `T` is `invalid_input` with the error body, not
/// axum's plain-text 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError(path_rejection(rejection))),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> Error {
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => {
            Error::invalid(format!("the request path is not valid: {}", e.body_text()))
        }
        // A route whose handler asks for parameters it does not have: a bug
        // here, not in the request.
        other => Error::internal(other.body_text()),
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError(Error::new(ErrorCode::NotFound, "no such route"))
}

/// Rewrites the empty bodies axum produces on its own (405 from a method
/// router, 413 from the body limit) into the error shape, keeping headers
/// such as `Allow`.
pub async fn normalise_bare_errors(resp: Response) -> Response {
    let status = resp.status();
    let has_body_type = resp.headers().contains_key(header::CONTENT_TYPE);
    if has_body_type || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidInput,
    };
    let message = match code {
        ErrorCode::MethodNotAllowed => "this route does not accept that method".to_owned(),
        _ => status.canonical_reason().unwrap_or("request failed").to_ascii_lowercase(),
    };
    let (mut parts, _) = resp.into_parts();
    let mut fresh = ApiError(Error::new(code, message)).into_response();
    // Keep the informative headers of the original (Allow, Retry-After).
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.remove(&name) {
            fresh.headers_mut().insert(name, v);
        }
    }
    *fresh.status_mut() = parts.status;
    fresh
}

/// The response for a handler that panicked: a generic internal error. The
/// panic itself is logged; its message never reaches the client.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    ApiError(Error::new(ErrorCode::Internal, "internal error")).into_response()
}
