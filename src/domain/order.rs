//! Orders, their lifecycle, the append-only event trail, and fee ledger
//! entries.
//!
//! Order states: created → paid → partially_fulfilled / fulfilled →
//! delivered, plus canceled and refunded. Every status change is recorded as
//! an [`OrderEvent`] with who did it, why, and the trace id of the request.

use serde::Serialize;
use time::OffsetDateTime;

use super::checkout::{PostalAddress, Totals};
use super::error::{Error, ErrorCode, Result};
use super::ids::{CheckoutId, OrderId, Sku, VariantId};
use super::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Paid,
    PartiallyFulfilled,
    Fulfilled,
    Delivered,
    Canceled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Self::Created,
        Self::Paid,
        Self::PartiallyFulfilled,
        Self::Fulfilled,
        Self::Delivered,
        Self::Canceled,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Paid => "paid",
            Self::PartiallyFulfilled => "partially_fulfilled",
            Self::Fulfilled => "fulfilled",
            Self::Delivered => "delivered",
            Self::Canceled => "canceled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown order status {s:?}")))
    }

    pub fn can_transition_to(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Created, Paid | Canceled)
                | (Paid, PartiallyFulfilled | Fulfilled | Canceled | Refunded)
                | (PartiallyFulfilled, PartiallyFulfilled | Fulfilled | Refunded)
                | (Fulfilled, Delivered | Refunded)
                | (Delivered, Refunded)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    pub variant_id: VariantId,
    pub sku: Sku,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

/// A shipment of some or all of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fulfillment {
    pub id: String,
    pub status: FulfillmentStatus,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    /// What the shipment holds. Empty means the whole order (shipments
    /// recorded before lines were tracked).
    pub lines: Vec<FulfillmentLine>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Units of one order line in a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FulfillmentLine {
    /// The position of the line in [`Order::lines`].
    pub line: usize,
    pub quantity: u32,
}

/// How the buyer receives the order, as chosen at checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMethod {
    Shipping,
    Pickup,
    /// Nothing to ship (no line requires shipping).
    Digital,
}

impl DeliveryMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shipping => "shipping",
            Self::Pickup => "pickup",
            Self::Digital => "digital",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "shipping" => Ok(Self::Shipping),
            "pickup" => Ok(Self::Pickup),
            "digital" => Ok(Self::Digital),
            other => Err(Error::invalid(format!("unknown delivery method {other:?}"))),
        }
    }
}

/// The buyer's expectation of the order: how and where it arrives (UCP
/// `fulfillment.expectations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub method: DeliveryMethod,
    /// The shipping address, or the pickup location.
    pub destination: Option<PostalAddress>,
    /// The chosen option's title ("Standard shipping").
    pub description: Option<String>,
}

/// Where the agent's platform wants order changes posted (the `webhook_url`
/// of its UCP order capability), and the protocol version and capabilities
/// it negotiated, which shape the posted order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderWebhook {
    pub url: String,
    pub ucp_version: String,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    Pending,
    Shipped,
    Delivered,
}

/// The money side of an order: who processed it and under what reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    pub processor: String,
    pub reference: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub checkout_id: CheckoutId,
    status: OrderStatus,
    pub owner: Option<String>,
    pub buyer_email: Option<String>,
    pub lines: Vec<OrderLine>,
    pub totals: Totals,
    /// The platform fee taken from this order (ledger entry of the commit).
    pub fee: Money,
    pub payment: PaymentRecord,
    pub fulfillments: Vec<Fulfillment>,
    /// How the order reaches the buyer; `None` on orders from before it
    /// was recorded.
    pub delivery: Option<Delivery>,
    /// The platform's order webhook, when it gave one.
    #[serde(skip)]
    pub webhook: Option<OrderWebhook>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Order {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: OrderId,
        checkout_id: CheckoutId,
        status: OrderStatus,
        owner: Option<String>,
        buyer_email: Option<String>,
        lines: Vec<OrderLine>,
        totals: Totals,
        fee: Money,
        payment: PaymentRecord,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            checkout_id,
            status,
            owner,
            buyer_email,
            lines,
            totals,
            fee,
            payment,
            fulfillments: Vec::new(),
            delivery: None,
            webhook: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Rebuilds an order read back from a store. Only store adapters call
    /// this.
    pub fn restore(mut fresh: Order, status: OrderStatus) -> Self {
        fresh.status = status;
        fresh
    }

    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// Moves the order and returns the event that records the move.
    pub fn transition(
        &mut self,
        to: OrderStatus,
        actor: &str,
        reason: &str,
        trace_id: &str,
        now: OffsetDateTime,
    ) -> Result<OrderEvent> {
        if !self.status.can_transition_to(to) {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!("an order cannot move from {} to {}", self.status.as_str(), to.as_str()),
            ));
        }
        let from = self.status;
        self.status = to;
        self.updated_at = now;
        Ok(OrderEvent {
            order_id: self.id.clone(),
            at: now,
            kind: OrderEventKind::StatusChanged { from: Some(from), to },
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            trace_id: trace_id.to_owned(),
        })
    }

    /// Units of line `line` shipped so far.
    pub fn shipped(&self, line: usize) -> u32 {
        self.fulfillments
            .iter()
            .map(|f| {
                if f.lines.is_empty() {
                    self.lines.get(line).map_or(0, |l| l.quantity)
                } else {
                    f.lines.iter().filter(|fl| fl.line == line).map(|fl| fl.quantity).sum()
                }
            })
            .fold(0u32, u32::saturating_add)
    }

    /// Every unit of every line shipped.
    pub fn fully_shipped(&self) -> bool {
        self.lines.iter().enumerate().all(|(i, l)| self.shipped(i) >= l.quantity)
    }

    /// The units not shipped yet, line by line (lines with none left are
    /// left out).
    pub fn unshipped(&self) -> Vec<FulfillmentLine> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let left = l.quantity.saturating_sub(self.shipped(i));
                (left > 0).then_some(FulfillmentLine { line: i, quantity: left })
            })
            .collect()
    }

    /// Records a shipment of `fulfillment.lines` (an empty list ships what
    /// is left) and moves the order to `partially_fulfilled` or
    /// `fulfilled`. Returns the events: the shipment, then the status
    /// change when there is one.
    pub fn add_fulfillment(
        &mut self,
        mut fulfillment: Fulfillment,
        actor: &str,
        trace_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OrderEvent>> {
        if !matches!(self.status, OrderStatus::Paid | OrderStatus::PartiallyFulfilled) {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!("a {} order cannot be shipped", self.status.as_str()),
            ));
        }
        if fulfillment.lines.is_empty() {
            fulfillment.lines = self.unshipped();
        }
        let mut adding = vec![0u32; self.lines.len()];
        for fl in &fulfillment.lines {
            let Some(slot) = adding.get_mut(fl.line) else {
                return Err(Error::invalid(format!("the order has no line {}", fl.line + 1)));
            };
            if fl.quantity == 0 {
                return Err(Error::invalid("a shipped quantity must be at least 1"));
            }
            *slot = slot.saturating_add(fl.quantity);
        }
        for (i, add) in adding.iter().enumerate() {
            let ordered = self.lines[i].quantity;
            if self.shipped(i).saturating_add(*add) > ordered {
                return Err(Error::invalid(format!(
                    "line {} has {} units left to ship, not {add}",
                    i + 1,
                    ordered.saturating_sub(self.shipped(i))
                )));
            }
        }
        if fulfillment.id.is_empty() || self.fulfillments.iter().any(|f| f.id == fulfillment.id) {
            return Err(Error::invalid("a shipment needs an id unique within its order"));
        }
        fulfillment.status = FulfillmentStatus::Shipped;
        fulfillment.updated_at = now;
        self.fulfillments.push(fulfillment.clone());
        self.updated_at = now;
        let reason = match &fulfillment.carrier {
            Some(c) => format!("shipped with {c}"),
            None => "shipped".to_owned(),
        };
        let mut events = vec![OrderEvent {
            order_id: self.id.clone(),
            at: now,
            kind: OrderEventKind::Fulfillment { fulfillment },
            actor: actor.to_owned(),
            reason: reason.clone(),
            trace_id: trace_id.to_owned(),
        }];
        let to = if self.fully_shipped() {
            OrderStatus::Fulfilled
        } else {
            OrderStatus::PartiallyFulfilled
        };
        if to != self.status {
            events.push(self.transition(to, actor, &reason, trace_id, now)?);
        }
        Ok(events)
    }

    /// Brings the tracking of shipment `id` up to date (a carrier that
    /// reported late, a corrected number). Only what is given replaces what
    /// is recorded, so an older report cannot erase tracking. Returns the
    /// shipment event when something changed, nothing otherwise.
    pub fn update_tracking(
        &mut self,
        id: &str,
        tracking: (Option<String>, Option<String>, Option<String>),
        actor: &str,
        trace_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OrderEvent>> {
        let (carrier, number, url) = tracking;
        let Some(f) = self.fulfillments.iter_mut().find(|f| f.id == id) else {
            return Err(Error::not_found(format!("the order has no shipment {id:?}")));
        };
        let before = f.clone();
        for (slot, new) in [
            (&mut f.carrier, carrier),
            (&mut f.tracking_number, number),
            (&mut f.tracking_url, url),
        ] {
            if new.is_some() {
                *slot = new;
            }
        }
        if *f == before {
            return Ok(Vec::new());
        }
        f.updated_at = now;
        let fulfillment = f.clone();
        self.updated_at = now;
        Ok(vec![OrderEvent {
            order_id: self.id.clone(),
            at: now,
            kind: OrderEventKind::Fulfillment { fulfillment },
            actor: actor.to_owned(),
            reason: "tracking updated".to_owned(),
            trace_id: trace_id.to_owned(),
        }])
    }

    /// The buyer has everything: every shipment is marked delivered and the
    /// order moves to `delivered`.
    pub fn mark_delivered(
        &mut self,
        actor: &str,
        reason: &str,
        trace_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OrderEvent>> {
        let event = self.transition(OrderStatus::Delivered, actor, reason, trace_id, now)?;
        for f in &mut self.fulfillments {
            f.status = FulfillmentStatus::Delivered;
            f.updated_at = now;
        }
        Ok(vec![event])
    }

    /// Records a refund of `amount` under the processor's `reference` and,
    /// when `settle` names a status (`refunded`, or `canceled` for an
    /// order not shipped yet), moves the order there. The caller says
    /// whether the payment is now refunded in full, because earlier partial
    /// refunds live in the trail, not on the order. A zero amount with a
    /// status only moves the order (the money went back earlier). An
    /// illegal move changes nothing.
    // The audit fields (actor, reason, trace id, time) are the four every
    // transition takes; bundling them for this one method would make it
    // the odd one out.
    #[allow(clippy::too_many_arguments)]
    pub fn refund(
        &mut self,
        amount: Money,
        reference: &str,
        settle: Option<OrderStatus>,
        actor: &str,
        reason: &str,
        trace_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OrderEvent>> {
        if amount.currency() != self.payment.amount.currency()
            || amount.minor() < 0
            || (amount.minor() == 0 && settle.is_none())
        {
            return Err(Error::invalid("a refund is a positive amount in the order's currency"));
        }
        // The move first: it is checked before anything changes.
        let moved = match settle {
            Some(to) => Some(self.transition(to, actor, reason, trace_id, now)?),
            None => None,
        };
        self.updated_at = now;
        let mut events = Vec::new();
        if amount.minor() > 0 {
            events.push(OrderEvent {
                order_id: self.id.clone(),
                at: now,
                kind: OrderEventKind::Refund { amount, reference: reference.to_owned() },
                actor: actor.to_owned(),
                reason: reason.to_owned(),
                trace_id: trace_id.to_owned(),
            });
        }
        events.extend(moved);
        Ok(events)
    }

    /// What the refunds recorded in `trail` (this order's events) add up
    /// to, in minor units.
    pub fn refunded_in(trail: &[OrderEvent]) -> i64 {
        trail
            .iter()
            .filter_map(|e| match &e.kind {
                OrderEventKind::Refund { amount, .. } => Some(amount.minor()),
                _ => None,
            })
            .fold(0i64, i64::saturating_add)
    }

    /// The event that records the creation of this order.
    pub fn created_event(&self, actor: &str, trace_id: &str) -> OrderEvent {
        OrderEvent {
            order_id: self.id.clone(),
            at: self.created_at,
            kind: OrderEventKind::StatusChanged { from: None, to: self.status },
            actor: actor.to_owned(),
            reason: "checkout completed".to_owned(),
            trace_id: trace_id.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEventKind {
    StatusChanged { from: Option<OrderStatus>, to: OrderStatus },
    Fulfillment { fulfillment: Fulfillment },
    Refund { amount: Money, reference: String },
    Note { text: String },
}

/// One row of the append-only audit trail of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    pub order_id: OrderId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub kind: OrderEventKind,
    pub actor: String,
    pub reason: String,
    pub trace_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// The fee earned on a completed order.
    Fee,
    /// The reversal of a fee when an order is refunded.
    Reversal,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fee => "fee",
            Self::Reversal => "reversal",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "fee" => Ok(Self::Fee),
            "reversal" => Ok(Self::Reversal),
            other => Err(Error::invalid(format!("unknown ledger kind {other:?}"))),
        }
    }
}

/// One fee ledger entry. A reversal carries a negative fee, so the ledger
/// total is always the plain sum of `fee`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: String,
    pub order_id: OrderId,
    pub kind: LedgerKind,
    pub gross: Money,
    pub fee: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn order_transitions() {
        let legal = [
            (Created, Paid),
            (Created, Canceled),
            (Paid, Fulfilled),
            (Paid, PartiallyFulfilled),
            (Paid, Refunded),
            (PartiallyFulfilled, Fulfilled),
            (Fulfilled, Delivered),
            (Delivered, Refunded),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let expect = legal.contains(&(from, to))
                    || matches!(
                        (from, to),
                        (Paid, Canceled)
                            | (PartiallyFulfilled, PartiallyFulfilled | Refunded)
                            | (Fulfilled, Refunded)
                    );
                assert_eq!(from.can_transition_to(to), expect, "{from:?} -> {to:?}");
            }
        }
        assert!(!Canceled.can_transition_to(Paid));
        assert!(!Refunded.can_transition_to(Paid));
        for st in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(st.as_str()).unwrap(), st);
        }
    }

    fn order(quantities: &[u32]) -> Order {
        use crate::domain::{CheckoutId, Currency, Sku, VariantId};
        let usd = |m| Money::new(m, Currency::usd());
        let lines: Vec<OrderLine> = quantities
            .iter()
            .enumerate()
            .map(|(i, q)| OrderLine {
                variant_id: VariantId::parse(&format!("v{i}")).unwrap(),
                sku: Sku::parse(&format!("S{i}")).unwrap(),
                title: format!("Item {i}"),
                quantity: *q,
                unit_price: usd(100),
                line_total: usd(100 * i64::from(*q)),
            })
            .collect();
        let total: i64 = lines.iter().map(|l| l.line_total.minor()).sum();
        let totals = Totals {
            subtotal: usd(total),
            discount: usd(0),
            fulfillment: usd(0),
            tax: usd(0),
            total: usd(total),
        };
        Order::new(
            OrderId::from_uuid(uuid::Uuid::from_u128(7)),
            CheckoutId::from_uuid(uuid::Uuid::from_u128(8)),
            Paid,
            None,
            None,
            lines,
            totals,
            usd(3),
            PaymentRecord {
                processor: "sandbox".into(),
                reference: "ch".into(),
                amount: usd(total),
            },
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    fn shipment(id: &str, lines: &[(usize, u32)]) -> Fulfillment {
        Fulfillment {
            id: id.into(),
            status: FulfillmentStatus::Pending,
            carrier: Some("UPS".into()),
            tracking_number: None,
            tracking_url: None,
            lines: lines
                .iter()
                .map(|&(line, quantity)| FulfillmentLine { line, quantity })
                .collect(),
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn shipments_fulfil_line_by_line() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let mut o = order(&[2, 1]);
        // (shipment lines, expected status after, events emitted)
        type Step<'a> = (&'a [(usize, u32)], OrderStatus, usize);
        let steps: &[Step<'_>] = &[
            (&[(0, 1)], PartiallyFulfilled, 2),
            (&[(0, 1)], PartiallyFulfilled, 1),
            (&[(1, 1)], Fulfilled, 2),
        ];
        for (n, (lines, want, events)) in steps.iter().enumerate() {
            let got =
                o.add_fulfillment(shipment(&format!("f{n}"), lines), "ops", "t", now).unwrap();
            assert_eq!((o.status(), got.len()), (*want, *events), "step {n}");
            assert!(matches!(got[0].kind, OrderEventKind::Fulfillment { .. }));
        }
        assert!(o.fully_shipped() && o.unshipped().is_empty());
        assert!(o.fulfillments.iter().all(|f| f.status == FulfillmentStatus::Shipped));
        // Nothing is left to ship, and a fulfilled order ships no more.
        assert_eq!(
            o.add_fulfillment(shipment("f9", &[]), "ops", "t", now).unwrap_err().code(),
            ErrorCode::IllegalTransition
        );
        let delivered = o.mark_delivered("ops", "signed for", "t", now).unwrap();
        assert_eq!((o.status(), delivered.len()), (Delivered, 1));
        assert!(o.fulfillments.iter().all(|f| f.status == FulfillmentStatus::Delivered));
    }

    #[test]
    fn bad_shipments_change_nothing() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cases: &[(&str, &[(usize, u32)])] = &[
            ("more than ordered", &[(0, 3)]),
            ("no such line", &[(5, 1)]),
            ("zero units", &[(0, 0)]),
            ("twice over", &[(0, 2), (0, 1)]),
        ];
        for (name, lines) in cases {
            let mut o = order(&[2, 1]);
            let before = o.clone();
            assert!(o.add_fulfillment(shipment("f1", lines), "ops", "t", now).is_err(), "{name}");
            assert_eq!(o, before, "{name}");
        }
        let mut o = order(&[2]);
        o.add_fulfillment(shipment("f1", &[(0, 1)]), "ops", "t", now).unwrap();
        assert!(
            o.add_fulfillment(shipment("f1", &[(0, 1)]), "ops", "t", now).is_err(),
            "duplicate id"
        );
        assert_eq!(
            o.mark_delivered("ops", "x", "t", now).unwrap_err().code(),
            ErrorCode::IllegalTransition,
            "not all shipped"
        );
        // An empty list ships what is left.
        let events = o.add_fulfillment(shipment("f2", &[]), "ops", "t", now).unwrap();
        assert_eq!(o.status(), Fulfilled);
        let OrderEventKind::Fulfillment { fulfillment } = &events[0].kind else { panic!() };
        assert_eq!(fulfillment.lines, vec![FulfillmentLine { line: 0, quantity: 1 }]);
    }

    #[test]
    fn refunds_in_full_move_the_order_and_in_part_do_not() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let usd = |m| Money::new(m, crate::domain::Currency::usd());
        let mut o = order(&[3]);
        let part = o.refund(usd(100), "re_1", None, "ops", "goodwill", "t", now).unwrap();
        assert_eq!((o.status(), part.len()), (Paid, 1));
        let rest = o.refund(usd(200), "re_2", Some(Refunded), "ops", "returned", "t", now).unwrap();
        assert_eq!((o.status(), rest.len()), (Refunded, 2));
        assert_eq!(Order::refunded_in(&[part, rest].concat()), 300);
        let again = o.refund(usd(1), "re_3", Some(Refunded), "ops", "again", "t", now);
        assert!(again.is_err(), "refunded is final");
        // The money went back earlier: a zero refund only moves the order.
        let mut o = order(&[1]);
        let moved = o.refund(usd(0), "", Some(Refunded), "ops", "x", "t", now).unwrap();
        assert_eq!((o.status(), moved.len()), (Refunded, 1));
        let mut shipped = order(&[1]);
        shipped.add_fulfillment(shipment("f", &[]), "ops", "t", now).unwrap();
        let before = shipped.clone();
        let canceled = shipped.refund(usd(100), "re", Some(Canceled), "ops", "x", "t", now);
        assert!(canceled.is_err(), "a shipped order is not canceled");
        assert_eq!(shipped, before);
        let bad = [usd(0), usd(-1), Money::new(5, crate::domain::Currency::parse("EUR").unwrap())];
        for amount in bad {
            assert!(
                order(&[1]).refund(amount, "re", None, "ops", "x", "t", now).is_err(),
                "{amount:?}"
            );
        }
    }

    #[test]
    fn tracking_updates_only_add_what_is_new() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut o = order(&[1]);
        o.add_fulfillment(shipment("f", &[]), "ops", "t", now).unwrap();
        let later = now + time::Duration::hours(1);
        let some = |s: &str| Some(s.to_owned());
        let events =
            o.update_tracking("f", (some("UPS"), some("1Z"), None), "ops", "t", later).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(o.fulfillments[0].tracking_number.as_deref(), Some("1Z"));
        // An older report without tracking erases nothing and says nothing.
        let none = o.update_tracking("f", (None, None, None), "ops", "t", later).unwrap();
        assert!(none.is_empty());
        let same = o.update_tracking("f", (some("UPS"), some("1Z"), None), "ops", "t", later);
        assert!(same.unwrap().is_empty());
        assert_eq!(o.fulfillments[0].carrier.as_deref(), Some("UPS"));
        let missing = o.update_tracking("nope", (None, None, None), "ops", "t", later);
        assert_eq!(missing.unwrap_err().code(), ErrorCode::NotFound);
    }
}
