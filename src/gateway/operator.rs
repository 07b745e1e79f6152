//! The merchant's operator tools: stock corrections, the order list,
//! refunds, the fee report and the checkouts waiting for someone.
//!
//! The admin MCP endpoint (`/admin/mcp`), the admin REST route and the
//! `agentgate ledger` / `agentgate admin …` commands all call these
//! methods, so each operation, its validation and its output shape exist
//! once. Inputs arrive as the strings an operator typed or a tool call
//! carried and are parsed here.
//!
//! Nothing here checks who the caller is: the edges admit only the
//! `admin` scope (HTTP) or the local operator (CLI), and pass who they
//! admitted as the [`OrderActor`] that the audit trail names.
//!
//! Side effects are audited atomically with the effect:
//! - a stock adjustment writes its audit record in the same store
//!   transaction as the stock change (`Store::adjust_stock_audited`),
//!   keyed by the operator's idempotency key, so a replay answers the
//!   first outcome and never moves stock twice;
//! - a refund is recorded in the order's events (actor, reason, trace id)
//!   in the order's own compare-and-set, and its idempotency key replays
//!   the first answer through [`Gateway::idempotent`].

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::idempotency::{fingerprint, Disposition, IdempotencyKey};
use super::orders::RefundRecord;
use super::{Caller, Gateway, OrderActor};
use crate::domain::{
    CheckoutSession, Currency, Error, ErrorCode, LedgerEntry, Money, Order, OrderId, OrderStatus,
    Result, Sku,
};
use crate::policy::fees;
use crate::ports::{
    AuditFilter, AuditRecord, AuditedStock, OrderFilter, RefundRequest, StoredResponse,
};

/// The longest reason kept in the audit trail.
const MAX_REASON: usize = 200;
/// The largest single stock correction, either way. Larger numbers are
/// almost always a typo (a SKU pasted into the delta).
pub const MAX_STOCK_DELTA: i64 = 1_000_000;
/// The most orders or sessions one page lists.
pub const MAX_PAGE: u32 = 200;
const DEFAULT_PAGE: u32 = 50;

/// The transport under which refund keys are stored: one namespace for
/// every operator (MCP and CLI alike), so a key means one refund whoever
/// retries it.
const OPERATOR_TRANSPORT: &str = "operator";

fn reason(raw: &str) -> Result<String> {
    let r = raw.trim();
    if r.is_empty() || r.len() > MAX_REASON || r.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "reason must be 1 to {MAX_REASON} bytes of printable text"
        )));
    }
    Ok(r.to_owned())
}

/// Parses a time bound: RFC 3339, or a bare `YYYY-MM-DD` date in UTC. A
/// date means the start of that day as a lower bound and the end of it as
/// an upper bound, so `--from 2026-11-01 --to 2026-11-30` covers November
/// whole.
pub fn parse_bound(name: &str, raw: &str, upper: bool) -> Result<OffsetDateTime> {
    let raw = raw.trim();
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(raw, &format).map_err(|_| {
        Error::invalid(format!(
            "{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, not {raw:?}"
        ))
    })?;
    let day = if upper { date.next_day().unwrap_or(date) } else { date };
    Ok(day.midnight().assume_utc())
}

/// A stock correction, as applied or as first applied (a replay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockAdjustment {
    pub audit_id: String,
    pub sku: String,
    pub delta: i64,
    /// Units in stock right after the adjustment.
    pub stock: u32,
    pub reason: String,
    pub actor: String,
    pub trace_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// True when this answers an earlier call with the same key.
    pub replayed: bool,
}

impl StockAdjustment {
    fn from_record(r: AuditRecord, replayed: bool) -> Self {
        Self {
            audit_id: r.id,
            sku: r.target,
            delta: r.delta,
            stock: r.stock_after.unwrap_or_default(),
            reason: r.reason,
            actor: r.actor,
            trace_id: r.trace_id,
            at: r.at,
            replayed,
        }
    }
}

/// Which orders to list, as typed: every field optional.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One order in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    pub id: String,
    pub checkout_id: String,
    pub status: &'static str,
    pub owner: Option<String>,
    pub total: Money,
    pub fee: Money,
    pub lines: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&Order> for OrderSummary {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.to_string(),
            checkout_id: o.checkout_id.to_string(),
            status: o.status().as_str(),
            owner: o.owner.clone(),
            total: o.totals.total,
            fee: o.fee,
            lines: o.lines.len(),
            created_at: o.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// The cursor is the last order's creation time (Unix nanoseconds) and id.
/// It is not secret (the caller is an operator who sees every order); it
/// is only checked to be well-formed.
fn encode_cursor(o: &Order) -> String {
    format!("{}_{}", o.created_at.unix_timestamp_nanos(), o.id)
}

fn decode_cursor(raw: &str) -> Result<(OffsetDateTime, OrderId)> {
    let bad = || Error::invalid("cursor is not one this server gave out");
    let (nanos, id) = raw.split_once('_').ok_or_else(bad)?;
    let nanos: i128 = nanos.parse().map_err(|_| bad())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((at, OrderId::parse(id).map_err(|_| bad())?))
}

/// What a refund did, or did the first time its key was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RefundOutcome {
    pub order_id: String,
    pub status: String,
    /// What this refund gave back, in minor units of `currency`.
    pub amount: i64,
    /// Everything refunded on the order so far.
    pub total_refunded: i64,
    pub currency: String,
    /// Whether the platform fee was reversed in the ledger (only a refund
    /// of everything reverses it).
    pub fee_reversed: bool,
    #[serde(default)]
    pub replayed: bool,
}

/// The fee ledger over a window, with totals per currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeeReport {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub currency: Option<Currency>,
    pub entries: Vec<LedgerEntry>,
    /// Sum of `fee` per currency code (reversals are negative).
    pub totals: BTreeMap<String, Money>,
    /// Sum of `gross` of fee entries per currency code.
    pub gross: BTreeMap<String, Money>,
}

/// A checkout that waits for someone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalation {
    pub checkout_id: String,
    pub status: &'static str,
    pub owner: Option<String>,
    pub total: Money,
    /// Where the buyer finishes (escalated sessions).
    pub continue_url: Option<String>,
    /// Why, as the session's messages say.
    pub messages: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub expired: bool,
}

impl Escalation {
    fn new(s: &CheckoutSession, now: OffsetDateTime) -> Self {
        Self {
            checkout_id: s.id.to_string(),
            status: s.status().as_str(),
            owner: s.owner.clone(),
            total: s.totals.total,
            continue_url: s.continue_url.clone(),
            messages: s.messages.iter().map(|m| format!("{}: {}", m.code, m.content)).collect(),
            updated_at: s.updated_at,
            expires_at: s.expires_at,
            expired: s.is_expired(now),
        }
    }
}

impl Gateway {
    /// Adds `delta` units (negative removes) to `sku`'s stock, once per
    /// `idempotency_key`: see the module docs. Refused: an unknown SKU
    /// (`not_found`), a removal below zero (`insufficient_stock`), the key
    /// reused with other arguments (`idempotency_conflict`).
    pub async fn adjust_stock(
        &self,
        by: &OrderActor,
        sku: &str,
        delta: i64,
        reason_text: &str,
        idempotency_key: &str,
    ) -> Result<StockAdjustment> {
        let sku = Sku::parse(sku)?;
        let key = IdempotencyKey::parse(idempotency_key)?;
        let reason = reason(reason_text)?;
        if delta == 0 || delta.abs() > MAX_STOCK_DELTA {
            return Err(Error::invalid(format!(
                "delta must be a non-zero number of units between -{MAX_STOCK_DELTA} and \
                 {MAX_STOCK_DELTA}"
            )));
        }
        if self.catalog.by_sku(&sku).await?.is_none() {
            return Err(Error::not_found(format!("no product has SKU {sku}")));
        }
        let fp = fingerprint(
            "adjust_stock",
            Some(sku.as_str()),
            &serde_json::json!({"delta": delta, "reason": reason}),
        )?;
        let record = AuditRecord {
            id: format!("adjust_stock:{}", key.as_str()),
            action: "adjust_stock".into(),
            target: sku.as_str().to_owned(),
            actor: by.name.clone(),
            reason,
            trace_id: by.trace_id.clone(),
            fingerprint: fp.clone(),
            delta,
            stock_after: None,
            at: self.now(),
        };
        match self.store.adjust_stock_audited(&sku, &record).await? {
            AuditedStock::Applied(r) => {
                tracing::info!(sku = %r.target, delta, stock = ?r.stock_after, actor = %by.name, "stock adjusted");
                Ok(StockAdjustment::from_record(r, false))
            }
            AuditedStock::Existing(r) if r.fingerprint == fp => {
                Ok(StockAdjustment::from_record(r, true))
            }
            AuditedStock::Existing(_) => Err(idempotency_conflict()),
        }
    }

    /// The audit log of operator actions, newest first.
    pub async fn audit_log(&self, target: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>> {
        let filter = AuditFilter { target: target.map(str::to_owned), limit: limit.min(MAX_PAGE) };
        self.store.audit_records(&filter).await
    }

    /// Orders, newest first, a page at a time.
    pub async fn operator_orders(&self, query: &OrderQuery) -> Result<OrderPage> {
        let status = query
            .status
            .as_deref()
            .map(|s| {
                OrderStatus::parse(s.trim()).map_err(|_| {
                    Error::invalid(format!(
                        "status must be one of created, paid, partially_fulfilled, fulfilled, \
                         delivered, canceled, refunded; not {s:?}"
                    ))
                })
            })
            .transpose()?;
        let from = query.from.as_deref().map(|f| parse_bound("from", f, false)).transpose()?;
        let to = query.to.as_deref().map(|t| parse_bound("to", t, true)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(Error::invalid("from must be before to"));
            }
        }
        let limit = match query.limit {
            None => DEFAULT_PAGE,
            Some(0) => return Err(Error::invalid("limit must be at least 1")),
            Some(n) => n.min(MAX_PAGE),
        };
        let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
        // One more than the page tells whether another page follows.
        let filter = OrderFilter {
            owner: None,
            status,
            created_from: from,
            created_to: to,
            before,
            limit: limit + 1,
        };
        let mut orders = self.store.list_orders(&filter).await?;
        let more = orders.len() > limit as usize;
        orders.truncate(limit as usize);
        let next_cursor = if more { orders.last().map(encode_cursor) } else { None };
        Ok(OrderPage { orders: orders.iter().map(OrderSummary::from).collect(), next_cursor })
    }

    /// Refunds an order through the processor, once per `idempotency_key`.
    /// Without `amount` (or with all that is left) everything still paid
    /// is refunded, the fee reversed and the order moved to `refunded`
    /// ([`Gateway::refund_order`]); a smaller `amount` (minor units) is a
    /// partial refund, recorded in the order's events, that leaves the
    /// status and the fee as they are.
    pub async fn operator_refund(
        &self,
        by: &OrderActor,
        order_id: &str,
        amount: Option<i64>,
        reason_text: &str,
        idempotency_key: &str,
    ) -> Result<RefundOutcome> {
        let id = OrderId::parse(order_id)?;
        let key = IdempotencyKey::parse(idempotency_key)?;
        let reason = reason(reason_text)?;
        if amount.is_some_and(|a| a <= 0) {
            return Err(Error::invalid("amount must be a positive number of minor units"));
        }
        let fp = fingerprint(
            "refund_order",
            Some(id.as_str()),
            &serde_json::json!({"amount": amount, "reason": reason}),
        )?;
        let scope = Caller::subject(OPERATOR_TRANSPORT);
        let mut failure = None;
        let answer = self
            .idempotent(OPERATOR_TRANSPORT, &scope, &key, &fp, |_| async {
                match self.refund_now(by, &id, amount, &reason, &key).await {
                    Ok(outcome) => {
                        let body = serde_json::to_vec(&outcome).unwrap_or_default();
                        (StoredResponse { status: 200, body }, Disposition::Keep)
                    }
                    // Nothing was kept; the key is given back so a
                    // corrected retry can run.
                    Err(e) => {
                        failure = Some(e);
                        (StoredResponse { status: 500, body: Vec::new() }, Disposition::Release)
                    }
                }
            })
            .await?;
        if let Some(e) = failure {
            return Err(e);
        }
        let mut outcome: RefundOutcome = serde_json::from_slice(&answer.response.body)
            .map_err(|e| Error::internal(format!("stored refund answer is damaged: {e}")))?;
        outcome.replayed = answer.replayed;
        Ok(outcome)
    }

    async fn refund_now(
        &self,
        by: &OrderActor,
        id: &OrderId,
        amount: Option<i64>,
        reason: &str,
        key: &IdempotencyKey,
    ) -> Result<RefundOutcome> {
        let order = self.load_order(id).await?.value;
        let trail = self.store.order_events(id).await?;
        let paid = order.payment.amount;
        let remaining = paid.minor() - Order::refunded_in(&trail);
        let currency = paid.currency();
        let partial = match amount {
            Some(a) if a > remaining => {
                return Err(Error::invalid(format!(
                    "amount {a} is more than the {remaining} left to refund on order {id}"
                )))
            }
            Some(a) => a < remaining,
            None => false,
        };
        if !partial {
            let view = self.refund_order(by, id, reason).await?;
            let total = Order::refunded_in(&view.events);
            return Ok(RefundOutcome {
                order_id: id.to_string(),
                status: view.order.status().as_str().to_owned(),
                amount: total - Order::refunded_in(&trail),
                total_refunded: total,
                currency: currency.code().to_owned(),
                fee_reversed: view.order.status() == OrderStatus::Refunded,
                replayed: false,
            });
        }
        if !order.status().can_transition_to(OrderStatus::Refunded) {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!("a {} order cannot be refunded", order.status().as_str()),
            ));
        }
        let amount = Money::new(amount.unwrap_or_default(), currency);
        // The processor key names the operator's key, so a retry refunds
        // once and another partial refund is another refund.
        let reference = self
            .payments
            .refund(&RefundRequest {
                idempotency_key: format!("{id}:refund:{}", key.as_str()),
                charge_reference: order.payment.reference.clone(),
                amount,
                reason: reason.to_owned(),
            })
            .await?;
        let record =
            RefundRecord { amount, total_refunded: None, reference: &reference, settle: None };
        let view = self.record_refund(by, id, record, reason).await?;
        Ok(RefundOutcome {
            order_id: id.to_string(),
            status: view.order.status().as_str().to_owned(),
            amount: amount.minor(),
            total_refunded: Order::refunded_in(&view.events),
            currency: currency.code().to_owned(),
            fee_reversed: false,
            replayed: false,
        })
    }

    /// The fee ledger between `from` (inclusive) and `to` (exclusive),
    /// optionally in one currency, with totals.
    pub async fn fee_report(
        &self,
        from: &str,
        to: &str,
        currency: Option<&str>,
    ) -> Result<FeeReport> {
        let from = parse_bound("from", from, false)?;
        let to = parse_bound("to", to, true)?;
        if from >= to {
            return Err(Error::invalid("from must be before to"));
        }
        let currency = currency.map(Currency::parse).transpose()?;
        let entries = self.store.ledger_entries(from, to, currency).await?;
        let totals = fees::ledger_totals(&entries)?
            .into_iter()
            .map(|(c, m)| (c.code().to_owned(), m))
            .collect();
        let mut gross: BTreeMap<String, Money> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.kind == crate::domain::LedgerKind::Fee) {
            let code = e.gross.currency().code().to_owned();
            let sum = gross.get(&code).map_or(0, |m| m.minor()).saturating_add(e.gross.minor());
            gross.insert(code, Money::new(sum, e.gross.currency()));
        }
        Ok(FeeReport { from, to, currency, entries, totals, gross })
    }

    /// Checkout sessions waiting in `requires_escalation` or stuck in
    /// `complete_in_progress`, longest wait first.
    pub async fn pending_escalations(&self, limit: Option<u32>) -> Result<Vec<Escalation>> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let now = self.now();
        let sessions = self.store.checkouts_needing_attention(limit).await?;
        Ok(sessions.iter().map(|s| Escalation::new(s, now)).collect())
    }
}

fn idempotency_conflict() -> Error {
    Error::new(
        ErrorCode::IdempotencyConflict,
        "this idempotency key was already used for a different request; use a new key",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_take_dates_and_times() {
        let cases = [
            ("2026-11-01", false, Some("2026-11-01T00:00:00Z")),
            ("2026-11-01", true, Some("2026-11-02T00:00:00Z")),
            ("2026-11-01T10:00:00+02:00", true, Some("2026-11-01T08:00:00Z")),
            ("yesterday", false, None),
            ("2026-13-01", false, None),
        ];
        for (raw, upper, want) in cases {
            let got = parse_bound("from", raw, upper).ok();
            let want = want.map(|w| OffsetDateTime::parse(w, &Rfc3339).unwrap());
            assert_eq!(got, want, "{raw}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let at = OffsetDateTime::parse("2026-11-01T08:00:00.5Z", &Rfc3339).unwrap();
        let id = OrderId::from_uuid(uuid::Uuid::now_v7());
        let raw = format!("{}_{}", at.unix_timestamp_nanos(), id);
        assert_eq!(decode_cursor(&raw).unwrap(), (at, id));
        for junk in ["", "nonsense", "x_ord", "99999999999999999999999999999_o"] {
            assert!(decode_cursor(junk).is_err(), "{junk}");
        }
    }
}
