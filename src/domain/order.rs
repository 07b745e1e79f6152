//! Orders, their lifecycle, the append-only event trail, and fee ledger
//! entries.
//!
//! Order states: created → paid → partially_fulfilled / fulfilled →
//! delivered, plus canceled and refunded. Every status change is recorded as
//! an [`OrderEvent`] with who did it, why, and the trace id of the request.

use serde::Serialize;
use time::OffsetDateTime;

use super::checkout::Totals;
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
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
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
}
