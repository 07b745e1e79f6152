//! Operator endpoints under `/admin`. The auth layer guards the whole
//! prefix with the `admin` scope (the access table's `Operator` row), in
//! every auth mode, and that includes the operator MCP endpoint
//! `/admin/mcp` mounted by the router.

use std::collections::HashMap;

use super::error::ApiError;
use super::AppState;
use crate::domain::Error;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/ledger", get(ledger))
}

/// `GET /admin/ledger?from=&to=&currency=`: fee ledger entries in the
/// window and their totals per currency ([`Gateway::fee_report`], as the
/// `fee_report` operator tool and `agentgate ledger` answer).
///
/// [`Gateway::fee_report`]: crate::gateway::Gateway::fee_report
async fn ledger(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| {
        q.get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::invalid(format!("`{name}` is required")))
    };
    let result = async {
        let report = state
            .gateway
            .fee_report(param("from")?, param("to")?, q.get("currency").map(String::as_str))
            .await?;
        Ok::<_, Error>(report)
    }
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}
