//! Orders paid on a backend's own checkout (Shopify), kept in step with
//! the backend.
//!
//! When the gateway has an [`ExternalCheckout`](crate::ports::ExternalCheckout),
//! a completion that passes the guardrail escalates: the buyer pays on the
//! backend's checkout, and the backend's cart carries the gateway checkout
//! id as an attribute. The backend then reports the order (a webhook body,
//! or a fresh read through [`ExternalOrders`]), and this module:
//!
//! - **creates the local order** the first time a report shows the order
//!   paid and linked to a checkout: the session moves to `completed` and
//!   the order (with its events and fee entry) is written in one
//!   `Store::commit_checkout`, exactly as a gateway-paid completion is. The
//!   order id is derived from the backend's order id, so every report of
//!   one backend order names the same local order;
//! - **reconciles** every later report: new shipments are added, tracking
//!   is brought up to date, a cancellation or full refund moves the status.
//!
//! Reports may arrive twice, concurrently or out of order (a shipment
//! before the payment, an old snapshot after a new one), so every step is
//! monotonic: it only adds what the local order lacks, never removes or
//! moves an order backwards, and writes through the store's compare-and-set
//! and put-if-absent primitives. Applying the same report twice changes
//! nothing the second time.
//!
//! The backend keeps its own stock and sends its own confirmation email,
//! so neither the commit nor a cancellation touches local stock or the
//! notification outbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::orders::{OrderActor, OrderView};
use super::{Gateway, CAS_ATTEMPTS};
use crate::domain::order::{Fulfillment, FulfillmentLine, FulfillmentStatus, PaymentRecord};
use crate::domain::{
    CheckoutSession, CheckoutStatus, Error, ErrorCode, Order, OrderId, OrderStatus, Result,
};
use crate::ports::{
    CheckoutCommit, ExternalFinancialStatus, ExternalFulfillment, ExternalOrder, ExternalOrders,
    Versioned,
};

/// What a backend's report did to the local state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalEffect {
    /// The local order was created (and the checkout completed).
    Created,
    /// The local order changed (a shipment, tracking, a cancellation).
    Updated,
    /// Everything reported was already recorded.
    Unchanged,
    /// Not for the gateway: an order placed elsewhere, not paid yet, or
    /// shipped before the gateway knew it (with no API to read it from).
    Ignored,
    /// The checkout was already completed by another order or canceled;
    /// an operator must look at it (logged as an error).
    Conflict,
}

impl ExternalEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "order_created",
            Self::Updated => "order_updated",
            Self::Unchanged => "unchanged",
            Self::Ignored => "ignored",
            Self::Conflict => "conflict",
        }
    }
}

/// The local order id of backend order `reference`: derived, so every
/// report of one backend order names one local order, and a second
/// creation is refused by the store's put-if-absent.
pub fn external_order_id(source: &str, reference: &str) -> OrderId {
    let digest = Sha256::digest(
        serde_json::json!(["agentgate.external_order", source, reference]).to_string().as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    OrderId::from_uuid(uuid::Uuid::from_bytes(bytes))
}

/// The id a backend shipment has among the order's shipments.
fn shipment_id(external: &ExternalFulfillment) -> String {
    format!("ext_{}", external.id)
}

impl Gateway {
    /// Reads orders from the backend whose checkout takes the payment (see
    /// [`ExternalOrders`]): lookups then show the backend's current state.
    pub fn with_external_orders(mut self, orders: Arc<dyn ExternalOrders>) -> Self {
        self.external_orders = Some(orders);
        self
    }

    /// A report of the whole backend order (`orders/paid`,
    /// `orders/cancelled`, or a fresh read).
    pub async fn receive_external_order(
        &self,
        by: &OrderActor,
        source: &str,
        report: &ExternalOrder,
    ) -> Result<ExternalEffect> {
        let id = external_order_id(source, &report.reference);
        let created = if self.store.get_order(&id).await?.is_none() {
            match self.create_external_order(by, source, &id, report).await? {
                Some(effect) => return Ok(effect),
                None => true,
            }
        } else {
            false
        };
        let (changed, _) = self.reconcile(by, &id, &report.fulfillments, Some(report)).await?;
        Ok(match (created, changed) {
            (true, _) => ExternalEffect::Created,
            (false, true) => ExternalEffect::Updated,
            (false, false) => ExternalEffect::Unchanged,
        })
    }

    /// A report of one shipment of backend order `reference`
    /// (`fulfillments/create`, `fulfillments/update`). With the backend's
    /// order API at hand the whole order is read fresh, which also creates
    /// the local order when the shipment is reported before the payment.
    pub async fn receive_external_fulfillment(
        &self,
        by: &OrderActor,
        source: &str,
        reference: &str,
        shipment: &ExternalFulfillment,
    ) -> Result<ExternalEffect> {
        if let Some(api) = self.external_orders.as_ref().filter(|a| a.source() == source) {
            if let Some(mut report) = api.order(reference).await? {
                // The read may lag the webhook: keep the reported shipment.
                if !report.fulfillments.iter().any(|f| f.id == shipment.id) {
                    report.fulfillments.push(shipment.clone());
                }
                return self.receive_external_order(by, source, &report).await;
            }
        }
        let id = external_order_id(source, reference);
        if self.store.get_order(&id).await?.is_none() {
            tracing::info!(source, reference, "a shipment of an order the gateway does not know");
            return Ok(ExternalEffect::Ignored);
        }
        let (changed, _) = self.reconcile(by, &id, std::slice::from_ref(shipment), None).await?;
        Ok(if changed { ExternalEffect::Updated } else { ExternalEffect::Unchanged })
    }

    /// The backend's current state of `order`, applied to it, when the
    /// order was paid on a backend the gateway can read; `None` otherwise
    /// or when the backend cannot be read (the caller then serves the last
    /// known state).
    pub(super) async fn refreshed_external(&self, order: &Order) -> Option<OrderView> {
        let api = self.external_orders.as_ref()?;
        if order.payment.processor != api.source() {
            return None;
        }
        let report = match api.order(&order.payment.reference).await {
            Ok(Some(report)) => report,
            Ok(None) => {
                tracing::warn!(order = %order.id, reference = %order.payment.reference, "the backend no longer has this order");
                return None;
            }
            Err(e) => {
                tracing::warn!(order = %order.id, error = %e, "could not read the backend's order; serving the last known state");
                return None;
            }
        };
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let by = OrderActor::new(api.source(), trace);
        match self.reconcile(&by, &order.id, &report.fulfillments, Some(&report)).await {
            Ok((_, view)) => Some(view),
            Err(e) => {
                tracing::warn!(order = %order.id, error = %e, "could not apply the backend's order");
                None
            }
        }
    }

    /// Completes the linked checkout into the local order `id`. `None`
    /// when the order now exists (this call or a concurrent one wrote
    /// it); otherwise the effect that explains why there is none.
    async fn create_external_order(
        &self,
        by: &OrderActor,
        source: &str,
        id: &OrderId,
        report: &ExternalOrder,
    ) -> Result<Option<ExternalEffect>> {
        let Some(checkout_id) = &report.checkout_id else {
            return Ok(Some(ExternalEffect::Ignored));
        };
        let paid = matches!(
            report.financial,
            ExternalFinancialStatus::Paid
                | ExternalFinancialStatus::PartiallyRefunded
                | ExternalFinancialStatus::Refunded
        );
        if !paid {
            return Ok(Some(ExternalEffect::Ignored));
        }
        for _ in 0..CAS_ATTEMPTS {
            let Some(Versioned { value: session, version }) =
                self.store.get_checkout(checkout_id).await?
            else {
                tracing::warn!(checkout = %checkout_id, reference = %report.reference, "a backend order names a checkout the gateway does not have");
                return Ok(Some(ExternalEffect::Ignored));
            };
            match session.status() {
                CheckoutStatus::Completed if session.order_id.as_ref() == Some(id) => {
                    return Ok(None)
                }
                CheckoutStatus::Completed | CheckoutStatus::Canceled => {
                    tracing::error!(checkout = %checkout_id, status = session.status().as_str(), reference = %report.reference, "a backend order was paid for a checkout that is already closed; refund it on the backend or reconcile by hand");
                    return Ok(Some(ExternalEffect::Conflict));
                }
                CheckoutStatus::CompleteInProgress => {
                    return Err(Error::new(
                        ErrorCode::IdempotencyInProgress,
                        "the checkout is being completed; deliver the report again",
                    ))
                }
                _ => {}
            }
            let commit = self.external_commit(by, source, id, report, session, version)?;
            match self.store.commit_checkout(&commit).await {
                Ok(()) => {
                    tracing::info!(checkout = %checkout_id, order = %id, reference = %report.reference, "order paid on the backend's checkout");
                    return Ok(None);
                }
                // Another report (or an edit) got there first: look again.
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::VersionConflict | ErrorCode::AlreadyExists
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::VersionConflict, "the checkout is changing concurrently; retry"))
    }

    /// The atomic unit that completes `session` into order `id`: the same
    /// shape as a gateway-paid completion, without stock (the backend keeps
    /// it), mandates (none were spent) or an idempotent response.
    fn external_commit(
        &self,
        by: &OrderActor,
        source: &str,
        id: &OrderId,
        report: &ExternalOrder,
        session: CheckoutSession,
        version: u64,
    ) -> Result<CheckoutCommit> {
        let now = self.now();
        if report.total != session.totals.total {
            // The buyer may have added a code on the backend's checkout:
            // the order keeps the session's lines and totals, and the
            // payment what was actually paid.
            tracing::warn!(checkout = %session.id, paid = %report.total, expected = %session.totals.total, "the backend order's total differs from the checkout's");
        }
        let ledger =
            self.settings.fees.fee_entry(format!("fee_{id}"), id.clone(), report.total, now)?;
        let lines = super::complete::order_lines(&session)?;
        let mut order = Order::new(
            id.clone(),
            session.id.clone(),
            OrderStatus::Created,
            session.owner.clone(),
            session.buyer.email.clone(),
            lines,
            session.totals,
            ledger.fee,
            PaymentRecord {
                processor: source.to_owned(),
                reference: report.reference.clone(),
                amount: report.total,
            },
            now,
        );
        order.delivery = Some(super::complete::delivery_of(self, &session));
        let created = order.created_event(&by.name, &by.trace_id);
        let reason = format!("paid on the {source} checkout as order {}", report.name);
        let paid = order.transition(OrderStatus::Paid, &by.name, &reason, &by.trace_id, now)?;
        let events = vec![created, paid];
        // The state machine's own path: escalated (or edited since) ->
        // ready -> in progress -> completed, written once.
        let mut session = session;
        session.order_id = Some(id.clone());
        session.continue_url = None;
        session.messages.clear();
        let session = match session.status() {
            CheckoutStatus::ReadyForComplete => session,
            _ => session.transition(CheckoutStatus::ReadyForComplete, now)?,
        }
        .transition(CheckoutStatus::CompleteInProgress, now)?
        .transition(CheckoutStatus::Completed, now)?;
        let outbox = self.webhook_message(&order, &events, now)?.into_iter().collect();
        Ok(CheckoutCommit {
            session,
            expected_version: version,
            order,
            events,
            stock: Vec::new(),
            ledger,
            mandates: Vec::new(),
            idempotency: None,
            outbox,
        })
    }

    /// Applies what a report adds to order `id` (module docs); returns
    /// whether anything changed, and the order as it now stands.
    async fn reconcile(
        &self,
        by: &OrderActor,
        id: &OrderId,
        shipments: &[ExternalFulfillment],
        report: Option<&ExternalOrder>,
    ) -> Result<(bool, OrderView)> {
        let changed = AtomicBool::new(false);
        let view = self
            .change_order(id, by, |order, _, now| {
                let events = apply_report(order, shipments, report, by, now)?;
                changed.store(!events.is_empty(), Ordering::Relaxed);
                Ok(events)
            })
            .await?;
        if matches!(view.order.status(), OrderStatus::Canceled | OrderStatus::Refunded) {
            self.reverse_fee(&view.order).await?;
        }
        Ok((changed.load(Ordering::Relaxed), view))
    }
}

/// The events that bring `order` up to a report, applied to it.
fn apply_report(
    order: &mut Order,
    shipments: &[ExternalFulfillment],
    report: Option<&ExternalOrder>,
    by: &OrderActor,
    now: time::OffsetDateTime,
) -> Result<Vec<crate::domain::OrderEvent>> {
    let mut events = Vec::new();
    for shipment in shipments.iter().filter(|s| s.active) {
        let id = shipment_id(shipment);
        let tracking = (
            shipment.carrier.clone(),
            shipment.tracking_number.clone(),
            shipment.tracking_url.clone(),
        );
        if order.fulfillments.iter().any(|f| f.id == id) {
            events.extend(order.update_tracking(&id, tracking, &by.name, &by.trace_id, now)?);
            continue;
        }
        // A shipment of an order already fully shipped, canceled or
        // refunded moves nothing.
        if !matches!(order.status(), OrderStatus::Paid | OrderStatus::PartiallyFulfilled) {
            continue;
        }
        let Some(lines) = shipment_lines(order, shipment) else { continue };
        let fulfillment = Fulfillment {
            id,
            status: FulfillmentStatus::Shipped,
            carrier: tracking.0,
            tracking_number: tracking.1,
            tracking_url: tracking.2,
            lines,
            updated_at: now,
        };
        events.extend(order.add_fulfillment(fulfillment, &by.name, &by.trace_id, now)?);
    }
    if let Some(report) = report {
        let refunded = report.financial == ExternalFinancialStatus::Refunded;
        let canceled = report.cancelled || report.financial == ExternalFinancialStatus::Voided;
        let to = if canceled && order.status().can_transition_to(OrderStatus::Canceled) {
            Some((OrderStatus::Canceled, "canceled on the backend"))
        } else if (canceled || refunded) && order.status().can_transition_to(OrderStatus::Refunded)
        {
            Some((OrderStatus::Refunded, "refunded on the backend"))
        } else {
            None
        };
        if let Some((to, reason)) = to {
            events.push(order.transition(to, &by.name, reason, &by.trace_id, now)?);
        }
    }
    Ok(events)
}

/// The order lines a backend shipment covers, clamped to what is left to
/// ship. An empty list ships what is left; `None` when nothing it names is
/// left, so there is nothing to record.
fn shipment_lines(order: &Order, shipment: &ExternalFulfillment) -> Option<Vec<FulfillmentLine>> {
    if order.unshipped().is_empty() {
        return None;
    }
    if shipment.lines.is_empty() {
        return Some(Vec::new());
    }
    let mut lines: Vec<FulfillmentLine> = Vec::new();
    for (variant, units) in &shipment.lines {
        let Some(line) = order.lines.iter().position(|l| &l.variant_id == variant) else {
            continue;
        };
        let taken: u32 = lines.iter().filter(|l| l.line == line).map(|l| l.quantity).sum();
        let left =
            order.lines[line].quantity.saturating_sub(order.shipped(line)).saturating_sub(taken);
        let quantity = (*units).min(left);
        if quantity > 0 {
            lines.push(FulfillmentLine { line, quantity });
        }
    }
    (!lines.is_empty()).then_some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout::Totals;
    use crate::domain::order::OrderLine;
    use crate::domain::{CheckoutId, Currency, Money, Sku, VariantId};
    use crate::ports::ExternalFulfillment;
    use time::OffsetDateTime;

    fn usd(m: i64) -> Money {
        Money::new(m, Currency::usd())
    }

    fn variant(n: u32) -> VariantId {
        VariantId::parse(&format!("gid://shopify/ProductVariant/{n}")).unwrap()
    }

    /// A paid order of two lines: 2 × variant 1 and 1 × variant 2.
    fn paid_order() -> Order {
        let lines = [(1, 2), (2, 1)]
            .iter()
            .map(|(v, q)| OrderLine {
                variant_id: variant(*v),
                sku: Sku::parse(&format!("S{v}")).unwrap(),
                title: format!("Item {v}"),
                quantity: *q,
                unit_price: usd(100),
                line_total: usd(100 * i64::from(*q)),
            })
            .collect();
        let totals = Totals {
            subtotal: usd(300),
            discount: usd(0),
            fulfillment: usd(0),
            tax: usd(0),
            total: usd(300),
        };
        let payment =
            PaymentRecord { processor: "shopify".into(), reference: "7".into(), amount: usd(300) };
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut o = Order::new(
            external_order_id("shopify", "7"),
            CheckoutId::from_uuid(uuid::Uuid::from_u128(1)),
            OrderStatus::Created,
            None,
            None,
            lines,
            totals,
            usd(0),
            payment,
            now,
        );
        o.transition(OrderStatus::Paid, "t", "paid", "t", now).unwrap();
        o
    }

    fn shipment(id: &str, lines: &[(u32, u32)], number: Option<&str>) -> ExternalFulfillment {
        ExternalFulfillment {
            id: id.into(),
            active: true,
            carrier: Some("UPS".into()),
            tracking_number: number.map(str::to_owned),
            tracking_url: None,
            lines: lines.iter().map(|(v, q)| (variant(*v), *q)).collect(),
        }
    }

    fn report(financial: ExternalFinancialStatus, cancelled: bool) -> ExternalOrder {
        ExternalOrder {
            reference: "7".into(),
            name: "#1007".into(),
            checkout_id: None,
            financial,
            cancelled,
            total: usd(300),
            fulfillments: Vec::new(),
        }
    }

    fn apply(o: &mut Order, s: &[ExternalFulfillment], r: Option<&ExternalOrder>) -> usize {
        let by = OrderActor::new("shopify", "t");
        apply_report(o, s, r, &by, OffsetDateTime::UNIX_EPOCH).unwrap().len()
    }

    #[test]
    fn shipments_are_added_once_line_by_line_and_clamped() {
        let mut o = paid_order();
        // One unit of variant 1, then the rest; an unknown variant and more
        // units than ordered are clamped away.
        assert_eq!(apply(&mut o, &[shipment("a", &[(1, 1), (99, 4)], None)], None), 2);
        assert_eq!(o.status(), OrderStatus::PartiallyFulfilled);
        let both = [shipment("a", &[(1, 1)], None), shipment("b", &[(1, 5), (2, 1)], Some("1Z"))];
        assert_eq!(apply(&mut o, &both, None), 2, "shipment b and the move to fulfilled");
        assert_eq!(o.status(), OrderStatus::Fulfilled);
        assert_eq!(o.fulfillments.len(), 2);
        assert!(o.fully_shipped());
        // The same report again: nothing.
        assert_eq!(apply(&mut o, &both, None), 0);
        // A late shipment of a fulfilled order moves nothing.
        assert_eq!(apply(&mut o, &[shipment("c", &[], None)], None), 0);
        assert_eq!(o.fulfillments.len(), 2);
    }

    #[test]
    fn tracking_only_grows_and_inactive_shipments_are_skipped() {
        let mut o = paid_order();
        let mut cancelled = shipment("x", &[], Some("X"));
        cancelled.active = false;
        assert_eq!(apply(&mut o, &[cancelled], None), 0);
        assert!(o.fulfillments.is_empty());
        assert_eq!(apply(&mut o, &[shipment("a", &[], None)], None), 2);
        assert_eq!(apply(&mut o, &[shipment("a", &[], Some("1Z"))], None), 1);
        assert_eq!(o.fulfillments[0].tracking_number.as_deref(), Some("1Z"));
        // An older report without the number erases nothing.
        assert_eq!(apply(&mut o, &[shipment("a", &[], None)], None), 0);
        assert_eq!(o.fulfillments[0].tracking_number.as_deref(), Some("1Z"));
    }

    #[test]
    fn cancellations_and_refunds_settle_once_and_never_go_back() {
        use ExternalFinancialStatus::*;
        let cases = [
            // (shipped first, report, expected status)
            (false, report(Paid, true), OrderStatus::Canceled),
            (false, report(Voided, false), OrderStatus::Canceled),
            (false, report(Refunded, false), OrderStatus::Refunded),
            (true, report(Paid, true), OrderStatus::Refunded),
            (true, report(Refunded, true), OrderStatus::Refunded),
            (false, report(PartiallyRefunded, false), OrderStatus::Paid),
            (true, report(Paid, false), OrderStatus::Fulfilled),
        ];
        for (shipped, r, want) in cases {
            let mut o = paid_order();
            if shipped {
                apply(&mut o, &[shipment("a", &[], None)], None);
            }
            apply(&mut o, &[], Some(&r));
            assert_eq!(o.status(), want, "{r:?} shipped={shipped}");
            assert_eq!(apply(&mut o, &[], Some(&r)), 0, "again: {r:?}");
            // An older, paid snapshot after the change moves nothing back.
            assert_eq!(apply(&mut o, &[], Some(&report(Paid, false))), 0);
            assert_eq!(o.status(), want);
        }
    }

    #[test]
    fn order_ids_are_derived_per_source_and_reference() {
        let a = external_order_id("shopify", "450789469");
        assert_eq!(a, external_order_id("shopify", "450789469"));
        assert_ne!(a, external_order_id("shopify", "450789470"));
        assert_ne!(a, external_order_id("other", "450789469"));
        assert!(OrderId::parse(a.as_str()).is_ok());
    }
}
