//! Tool errors: how a failed use case reaches the model.
//!
//! A business failure (an unknown variant, a rejected mandate, an
//! idempotency conflict) is a tool *result* with `isError: true`, never a
//! JSON-RPC protocol error: clients show protocol errors to nobody, while the
//! model reads a tool error and can correct itself. The structured body is
//! the same `{code, message, retryable}` triple the HTTP edge uses, with the
//! stable codes of [`ErrorCode`], so an agent can branch on `code` without
//! parsing prose.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Error, ErrorCode};

/// The `structuredContent` of every failed tool call. It also deserializes,
/// because a failed execute_checkout is stored under its idempotency key
/// and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolError {
    /// A stable machine code such as `invalid_input`, `not_found`,
    /// `insufficient_stock` or `idempotency_conflict`.
    pub code: String,
    /// What went wrong, for the model and the user. Never contains secrets
    /// or internal details.
    pub message: String,
    /// Whether sending the same call again later may succeed.
    pub retryable: bool,
    /// Seconds to wait before retrying, when the gateway knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl ToolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str().to_owned(),
            message: message.into(),
            retryable: code.retryable(),
            retry_after_secs: None,
        }
    }

    /// A mistake in the tool arguments.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// The JSON body, as placed in `structuredContent`.
    pub fn to_value(&self) -> serde_json::Value {
        // Three strings, a bool and a number always serialise.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The tool result carrying this error: `isError: true`, the body in
    /// `structuredContent` and its JSON text as the text mirror.
    pub fn into_result(self) -> CallToolResult {
        CallToolResult::structured_error(self.to_value())
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        Self {
            code: e.code().as_str().to_owned(),
            message: e.message().to_owned(),
            retryable: e.retryable(),
            retry_after_secs: e.retry_after(),
        }
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(self.into_result().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_keep_their_code_and_retryability() {
        let cases = [
            (Error::invalid("bad id"), "invalid_input", false),
            (Error::not_found("no such cart"), "not_found", false),
            (Error::new(ErrorCode::VersionConflict, "busy"), "version_conflict", true),
            (Error::new(ErrorCode::IdempotencyConflict, "reused"), "idempotency_conflict", false),
        ];
        for (error, code, retryable) in cases {
            let message = error.message().to_owned();
            let result = ToolError::from(error).into_result();
            assert_eq!(result.is_error, Some(true));
            let body = result.structured_content.clone().unwrap_or_default();
            assert_eq!(body["code"], code);
            assert_eq!(body["message"], message.as_str());
            assert_eq!(body["retryable"], retryable);
            let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone());
            let mirrored: serde_json::Value =
                serde_json::from_str(&text.unwrap_or_default()).unwrap_or_default();
            assert_eq!(mirrored, body, "the text mirror is the same JSON");
        }
    }

    #[test]
    fn retry_after_is_carried_when_known() {
        let e = Error::new(ErrorCode::RateLimited, "slow down").with_retry_after(7);
        let body = ToolError::from(e).to_value();
        assert_eq!(body["retry_after_secs"], 7);
        assert_eq!(body["retryable"], true);
        assert!(ToolError::invalid("x").to_value().get("retry_after_secs").is_none());
    }
}
