//! Operator endpoints under `/admin`. The auth layer guards the whole
//! prefix with the `admin` scope (the access table's `Operator` row), in
//! every auth mode.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ApiError;
use super::AppState;
use crate::domain::{Currency, Error};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/ledger", get(ledger))
}

fn instant(q: &HashMap<String, String>, name: &str) -> Result<OffsetDateTime, Error> {
    let raw = q.get(name).ok_or_else(|| Error::invalid(format!("`{name}` is required")))?;
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|_| Error::invalid(format!("`{name}` must be an RFC 3339 time")))
}

/// `GET /admin/ledger?from=&to=&currency=`: fee ledger entries in the
/// window and their totals per currency.
async fn ledger(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let from = instant(&q, "from")?;
        let to = instant(&q, "to")?;
        let currency = q.get("currency").map(|c| Currency::parse(c)).transpose()?;
        let entries = state.gateway.store().ledger_entries(from, to, currency).await?;
        let totals = crate::policy::fees::ledger_totals(&entries)?;
        let totals: serde_json::Map<String, serde_json::Value> = totals
            .iter()
            .map(|(c, m)| (c.code().to_owned(), serde_json::to_value(m).unwrap_or_default()))
            .collect();
        Ok::<_, Error>(serde_json::json!({"entries": entries, "totals": totals}))
    }
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}
