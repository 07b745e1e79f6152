//! Orders after checkout: reading one with its audit trail, and the
//! lifecycle operators and fulfilment systems drive.
//!
//! ```text
//! created ──► paid ──► partially_fulfilled ──► fulfilled ──► delivered
//!               │              │                   │             │
//!               ├──► canceled  └──────────┬────────┴─────────────┘
//!               │   (refund)              ▼
//!               └────────────────────► refunded
//! ```
//!
//! Every change goes through [`Order`]'s guarded transitions and is written
//! with one compare-and-set (`Store::update_order`) together with its
//! events (who, why, trace id) and the outbox messages it causes (the
//! platform's order webhook), so the order, its trail and its
//! notifications never disagree. A change that lost a race re-reads and
//! re-applies, like every read-modify-write of the gateway.
//!
//! Money moves before the order does, under keys derived from the order
//! id: a refund is `<order id>:refund` at the processor and `rev_<order
//! id>` in the fee ledger (the reversal of `fee_<order id>`), so a refund
//! retried after a crash refunds and reverses once, then records the
//! status.
//!
//! The writing use cases are for operators and fulfilment systems: they
//! check no ownership, so no agent-facing transport may expose them
//! without an operator scope. Reading checks ownership: someone else's
//! order reads exactly like a missing one, so an order id never confirms
//! that an order exists.

use super::{Caller, Gateway, CAS_ATTEMPTS};
use crate::domain::order::{Fulfillment, FulfillmentLine, FulfillmentStatus, LedgerKind};
use crate::domain::{
    CheckoutId, CheckoutStatus, Error, ErrorCode, LedgerEntry, Money, Order, OrderEvent, OrderId,
    OrderStatus, Result,
};
use crate::policy::fees;
use crate::ports::{OrderFilter, RefundRequest, Versioned};
use crate::ucp::wire::v2026_04_08::order_line_index;

/// An order with its append-only events, oldest first.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub order: Order,
    pub events: Vec<OrderEvent>,
}

/// Who changes an order, for its audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderActor {
    /// An operator's name, `fulfillment:<system>`, `stripe` for webhooks.
    pub name: String,
    /// The trace id of the request or event that caused the change.
    pub trace_id: String,
}

impl OrderActor {
    pub fn new(name: impl Into<String>, trace_id: impl Into<String>) -> Self {
        Self { name: name.into(), trace_id: trace_id.into() }
    }
}

/// A shipment as a fulfilment system reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipmentInput {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    /// An absolute http(s) URL where the buyer follows the parcel.
    pub tracking_url: Option<String>,
    /// `(line id, units)` with the ids of the UCP order (`li_1`, …);
    /// `None` ships everything not shipped yet.
    pub lines: Option<Vec<(String, u32)>>,
}

const MAX_TEXT: usize = 200;

fn optional_text(name: &str, v: &Option<String>) -> Result<Option<String>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.len() > MAX_TEXT || t.chars().any(char::is_control) => Err(Error::invalid(
            format!("{name} must be at most {MAX_TEXT} bytes of printable text"),
        )),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

impl ShipmentInput {
    /// Checks the input against `order` and builds the shipment.
    fn fulfillment(&self, order: &Order, now: time::OffsetDateTime) -> Result<Fulfillment> {
        let tracking_url = optional_text("tracking_url", &self.tracking_url)?;
        if let Some(u) = &tracking_url {
            let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(Error::invalid("tracking_url must be an absolute http(s) URL"));
            }
        }
        let lines = match &self.lines {
            None => Vec::new(),
            Some(list) if list.is_empty() => {
                return Err(Error::invalid("a shipment lists at least one line"))
            }
            Some(list) => list
                .iter()
                .map(|(id, quantity)| {
                    let line = order_line_index(id)
                        .filter(|i| *i < order.lines.len())
                        .ok_or_else(|| Error::invalid(format!("the order has no line {id:?}")))?;
                    Ok(FulfillmentLine { line, quantity: *quantity })
                })
                .collect::<Result<_>>()?,
        };
        Ok(Fulfillment {
            id: format!("ful_{}", order.fulfillments.len() + 1),
            status: FulfillmentStatus::Shipped,
            carrier: optional_text("carrier", &self.carrier)?,
            tracking_number: optional_text("tracking_number", &self.tracking_number)?,
            tracking_url,
            lines,
            updated_at: now,
        })
    }
}

/// A refund to record: `amount` under the processor's `reference`, or,
/// with `total_refunded`, whatever the processor's running total adds to
/// the trail; `settle` names the status it completes.
pub(super) struct RefundRecord<'a> {
    pub amount: Money,
    pub total_refunded: Option<Money>,
    pub reference: &'a str,
    pub settle: Option<OrderStatus>,
}

impl<'a> RefundRecord<'a> {
    /// The refund that completes the payment's: the order moves to `to`.
    pub fn settling(amount: Money, reference: &'a str, to: OrderStatus) -> Self {
        Self { amount, total_refunded: None, reference, settle: Some(to) }
    }
}

/// The fee entry the checkout commit wrote for `order` (`fee_<order id>`),
/// rebuilt from the order, which keeps the gross and the fee.
fn fee_entry_of(order: &Order) -> LedgerEntry {
    LedgerEntry {
        id: format!("fee_{}", order.id),
        order_id: order.id.clone(),
        kind: LedgerKind::Fee,
        gross: order.totals.total,
        fee: order.fee,
        at: order.created_at,
    }
}

impl Gateway {
    /// The order `id` with its events, if `caller` may see it.
    /// An order paid on a backend's own checkout (Shopify) is first
    /// brought up to the backend's current state, so a lookup shows it even
    /// when a webhook was lost; if the backend cannot be read, the last
    /// known state answers.
    pub async fn get_order(&self, caller: &Caller, id: &OrderId) -> Result<OrderView> {
        let order = match self.store.get_order(id).await? {
            Some(v) if caller.may_access(&v.value.owner) => v.value,
            _ => return Err(Error::not_found(format!("order {id} does not exist"))),
        };
        if let Some(view) = self.refreshed_external(&order).await {
            return Ok(view);
        }
        let events = self.store.order_events(id).await?;
        Ok(OrderView { order, events })
    }

    /// The order checkout `id` became, if `caller` may see it. For a
    /// checkout paid on a backend's own checkout the agent never got an
    /// order id: the order appears when the backend reports the payment,
    /// and until then this answers `not_found` saying so.
    pub async fn order_of_checkout(&self, caller: &Caller, id: &CheckoutId) -> Result<OrderView> {
        let session = self.get_checkout(caller, id).await?;
        match (&session.order_id, session.status()) {
            (Some(order), CheckoutStatus::Completed) => self.get_order(caller, order).await,
            (_, status) => Err(Error::not_found(format!(
                "checkout {id} has no order yet (it is {}); if the buyer is paying at its \
                 continue_url, look again later",
                status.as_str()
            ))),
        }
    }

    /// Orders matching `filter`, newest first. For operator tools: it
    /// checks no ownership, so no agent-facing transport may expose it
    /// without an operator scope.
    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>> {
        self.store.list_orders(filter).await
    }

    /// Records a shipment: the order becomes `partially_fulfilled` until
    /// every unit has shipped, then `fulfilled`. The platform's webhook
    /// carries the tracking.
    pub async fn add_fulfillment(
        &self,
        by: &OrderActor,
        id: &OrderId,
        input: ShipmentInput,
    ) -> Result<OrderView> {
        self.change_order(id, by, |order, _, now| {
            let shipment = input.fulfillment(order, now)?;
            order.add_fulfillment(shipment, &by.name, &by.trace_id, now)
        })
        .await
    }

    /// The buyer has received everything: `fulfilled` becomes `delivered`.
    pub async fn mark_delivered(&self, by: &OrderActor, id: &OrderId) -> Result<OrderView> {
        self.change_order(id, by, |order, _, now| {
            order.mark_delivered(&by.name, "delivered to the buyer", &by.trace_id, now)
        })
        .await
    }

    /// Refunds the whole payment through the processor, reverses the
    /// platform fee in the ledger, and moves the order to `refunded`. A
    /// refunded order answers as it is, so a retry is safe.
    pub async fn refund_order(
        &self,
        by: &OrderActor,
        id: &OrderId,
        reason: &str,
    ) -> Result<OrderView> {
        self.give_money_back(by, id, reason, OrderStatus::Refunded).await
    }

    /// Cancels an order that has not shipped: refunds the payment, reverses
    /// the fee, moves the order to `canceled` and puts its units back in
    /// stock. A shipped order is refunded instead (`refund_order`).
    pub async fn cancel_order(
        &self,
        by: &OrderActor,
        id: &OrderId,
        reason: &str,
    ) -> Result<OrderView> {
        let view = self.give_money_back(by, id, reason, OrderStatus::Canceled).await?;
        Ok(view)
    }

    async fn give_money_back(
        &self,
        by: &OrderActor,
        id: &OrderId,
        reason: &str,
        to: OrderStatus,
    ) -> Result<OrderView> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_TEXT {
            return Err(Error::invalid(format!("a reason of 1 to {MAX_TEXT} bytes is required")));
        }
        let Versioned { value: order, .. } = self.load_order(id).await?;
        if order.status() == to {
            return self.order_view(order).await;
        }
        if !order.status().can_transition_to(to) {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!("a {} order cannot be {}", order.status().as_str(), to.as_str()),
            ));
        }
        // What the processor has not given back yet (partial refunds it
        // reported are in the trail).
        let trail = self.store.order_events(id).await?;
        let paid = order.payment.amount;
        let remaining = Money::new(paid.minor() - Order::refunded_in(&trail), paid.currency());
        // The money first, under keys derived from the order: a retry after
        // a crash anywhere below repeats these calls harmlessly.
        let reference = if remaining.minor() > 0 {
            self.payments
                .refund(&RefundRequest {
                    idempotency_key: format!("{}:refund", order.id),
                    charge_reference: order.payment.reference.clone(),
                    amount: remaining,
                    reason: reason.to_owned(),
                })
                .await?
        } else {
            String::new()
        };
        self.reverse_fee(&order).await?;
        let settled = Money::new(remaining.minor().max(0), paid.currency());
        let view = self
            .record_refund(by, id, RefundRecord::settling(settled, &reference, to), reason)
            .await?;
        if to == OrderStatus::Canceled && view.order.status() == OrderStatus::Canceled {
            self.restock(&view.order).await;
        }
        tracing::info!(order = %id, refund = %reference, status = to.as_str(), actor = %by.name, "order refunded");
        Ok(view)
    }

    /// Books the reversal of the order's fee, once (`rev_<order id>`).
    pub(super) async fn reverse_fee(&self, order: &Order) -> Result<()> {
        let reversal =
            fees::reversal(&fee_entry_of(order), format!("rev_{}", order.id), self.now())?;
        match self.store.append_ledger(&reversal).await {
            Err(e) if e.code() == ErrorCode::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// Records a refund the processor made, and the status it settles, if
    /// any. An order already refunded or canceled records nothing more;
    /// a partial refund is recorded only if the trail, read under the
    /// order's compare-and-set, has not recorded that much already.
    pub(super) async fn record_refund(
        &self,
        by: &OrderActor,
        id: &OrderId,
        refund: RefundRecord<'_>,
        reason: &str,
    ) -> Result<OrderView> {
        self.change_order(id, by, |order, trail, now| {
            if matches!(order.status(), OrderStatus::Refunded | OrderStatus::Canceled) {
                return Ok(Vec::new());
            }
            let amount = match refund.total_refunded {
                // The processor's running total: what is new since the trail.
                Some(total) => total.minor() - Order::refunded_in(trail),
                None => refund.amount.minor(),
            };
            let amount = Money::new(amount.max(0), refund.amount.currency());
            if amount.minor() == 0 && refund.settle.is_none() {
                return Ok(Vec::new());
            }
            order.refund(
                amount,
                refund.reference,
                refund.settle,
                &by.name,
                reason,
                &by.trace_id,
                now,
            )
        })
        .await
    }

    /// Puts a canceled order's units back. Best effort after the order is
    /// written: a crash here leaves stock short, never oversold.
    async fn restock(&self, order: &Order) {
        for line in &order.lines {
            if let Err(e) = self.store.adjust_stock(&line.sku, i64::from(line.quantity)).await {
                tracing::error!(order = %order.id, sku = %line.sku, error = %e, "could not restock a canceled order's line");
            }
        }
    }

    pub(super) async fn load_order(&self, id: &OrderId) -> Result<Versioned<Order>> {
        self.store
            .get_order(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("order {id} does not exist")))
    }

    async fn order_view(&self, order: Order) -> Result<OrderView> {
        let events = self.store.order_events(&order.id).await?;
        Ok(OrderView { order, events })
    }

    /// Applies `change` to the order with compare-and-set, retrying on a
    /// concurrent change, and writes its events with the platform webhook
    /// they cause. A change that returns no events writes nothing.
    pub(super) async fn change_order<F>(
        &self,
        id: &OrderId,
        by: &OrderActor,
        change: F,
    ) -> Result<OrderView>
    where
        F: Fn(&mut Order, &[OrderEvent], time::OffsetDateTime) -> Result<Vec<OrderEvent>>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { value: mut order, version } = self.load_order(id).await?;
            // Read after the order: an event appended since bumped the
            // version, so the compare-and-set below would fail and retry.
            let mut trail = self.store.order_events(id).await?;
            let now = self.now();
            let events = change(&mut order, &trail, now)?;
            if events.is_empty() {
                return Ok(OrderView { order, events: trail });
            }
            trail.extend(events.iter().cloned());
            let outbox: Vec<_> = self.webhook_message(&order, &trail, now)?.into_iter().collect();
            match self.store.update_order(&order, version, &events, &outbox).await {
                Ok(_) => {
                    tracing::info!(order = %id, status = order.status().as_str(), actor = %by.name, trace = %by.trace_id, "order changed");
                    return Ok(OrderView { order, events: trail });
                }
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorCode::VersionConflict,
            "the order is being changed concurrently; retry",
        ))
    }
}
