//! Payment events: the buyer's approval of a payment that waited for them,
//! and what the processor reports afterwards through its webhooks.
//!
//! These use cases move orders only through the order lifecycle of
//! `orders.rs`, never by writing the store directly, so a webhook and an
//! operator who do the same thing leave the same trail. Every one of them
//! is safe to run twice: a processor redelivers events, and an event that
//! describes what already happened changes nothing.

use super::orders::RefundRecord;
use super::{Gateway, OrderActor};
use crate::domain::{CheckoutId, CheckoutStatus, Error, Money, OrderId, OrderStatus, Result};
use crate::ports::RefundRequest;

impl Gateway {
    /// Records the buyer's approval of a payment waiting for them (the
    /// sandbox's `/sandbox/authenticate/{reference}` page). The money moves
    /// only when the agent completes the checkout again, which captures it.
    pub async fn approve_payment_action(&self, reference: &str) -> Result<()> {
        self.payments.approve_action(reference).await?;
        tracing::info!(charge = %reference, "the buyer approved a payment action");
        Ok(())
    }
}

/// A payment event from the processor, as its webhook describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    /// The processor's event id (for logs).
    pub event_id: String,
    /// The payment (Stripe: the PaymentIntent id).
    pub reference: String,
    /// From the payment's metadata; absent on payments this gateway did
    /// not make.
    pub order_id: Option<OrderId>,
    pub checkout_id: Option<CheckoutId>,
    /// What the payment took (succeeded) or what has been refunded so far
    /// (refunded), in the payment's currency.
    pub amount: Option<Money>,
}

/// The payment events the gateway acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEventKind {
    Succeeded,
    Failed,
    Refunded,
}

/// What a payment event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEffect {
    /// The event id was seen before: nothing was done again.
    Duplicate,
    /// An event type the gateway does not act on.
    Ignored,
    /// The order moved or a refund was recorded.
    Applied,
    /// It described what the gateway already knew, or something that is
    /// not its business: nothing changed.
    Unchanged,
    /// A charge that no attempt can turn into an order was refunded.
    OrphanRefunded,
}

impl EventEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::OrphanRefunded => "orphan_refunded",
        }
    }
}

impl Gateway {
    /// Takes one verified event from processor `source`: deduplicated by
    /// its id (`Store::mark_webhook_seen`), then acted on by kind (`None`:
    /// a type the gateway ignores). When acting fails, the id is forgotten
    /// again, so the processor's redelivery is acted on rather than skipped.
    pub async fn receive_payment_event(
        &self,
        source: &str,
        kind: Option<PaymentEventKind>,
        event: &PaymentEvent,
    ) -> Result<EventEffect> {
        if !self.store.mark_webhook_seen(source, &event.event_id).await? {
            return Ok(EventEffect::Duplicate);
        }
        let acted = match kind {
            None => return Ok(EventEffect::Ignored),
            Some(PaymentEventKind::Succeeded) => self.payment_succeeded(event).await,
            Some(PaymentEventKind::Failed) => self.payment_failed(event).await,
            Some(PaymentEventKind::Refunded) => self.payment_refunded(event).await,
        };
        if acted.is_err() {
            if let Err(e) = self.store.forget_webhook(source, &event.event_id).await {
                tracing::error!(event = %event.event_id, error = %e, "a failed payment event could not be forgotten; its redelivery will be skipped");
            }
        }
        acted
    }

    /// The processor took the money. Normally the order exists and is paid
    /// already (the pipeline commits on the synchronous answer), and this
    /// changes nothing. A charge no order and no live attempt owns (the
    /// buyer approved a payment the agent had given up on; see
    /// `complete.rs`, "Escalation") is refunded, under the key the pipeline
    /// would use for that attempt's refund, so never twice.
    pub async fn payment_succeeded(&self, event: &PaymentEvent) -> Result<EventEffect> {
        let (Some(order_id), Some(checkout_id)) = (&event.order_id, &event.checkout_id) else {
            return Ok(EventEffect::Unchanged);
        };
        if let Some(v) = self.store.get_order(order_id).await? {
            if v.value.payment.reference != event.reference {
                tracing::warn!(order = %order_id, event = %event.event_id, "payment event names an order paid by another payment");
            }
            return Ok(EventEffect::Unchanged);
        }
        let Some(session) = self.store.get_checkout(checkout_id).await? else {
            return Ok(EventEffect::Unchanged);
        };
        let s = session.value;
        let in_flight = s.order_id.as_ref() == Some(order_id)
            && matches!(
                s.status(),
                CheckoutStatus::CompleteInProgress
                    | CheckoutStatus::RequiresEscalation
                    | CheckoutStatus::Completed
            );
        if in_flight {
            // The attempt that charged is still settling; it commits or
            // refunds this payment itself.
            return Ok(EventEffect::Unchanged);
        }
        let Some(amount) = event.amount.filter(|a| a.minor() > 0) else {
            return Err(Error::invalid("a payment event without its amount"));
        };
        let refund = self
            .payments
            .refund(&RefundRequest {
                idempotency_key: format!("{checkout_id}:refund:{order_id}"),
                charge_reference: event.reference.clone(),
                amount,
                reason: "no order for this payment".to_owned(),
            })
            .await?;
        tracing::error!(checkout = %checkout_id, attempt = %order_id, charge = %event.reference, refund = %refund, "a charge without an order was refunded");
        Ok(EventEffect::OrphanRefunded)
    }

    /// The processor refused a payment. Orders exist only for payments that
    /// went through, so there is no order to move: a decline reaches the
    /// agent when it completes, and this only logs.
    pub async fn payment_failed(&self, event: &PaymentEvent) -> Result<EventEffect> {
        tracing::info!(event = %event.event_id, charge = %event.reference, order = ?event.order_id.as_ref().map(|o| o.to_string()), "the processor reports a failed payment");
        Ok(EventEffect::Unchanged)
    }

    /// The processor refunded (part of) a payment, from the gateway or from
    /// its own dashboard. `event.amount` is the total refunded so far.
    /// Refunded in full, the fee is reversed and the order becomes
    /// `refunded`; in part, the new part is recorded as a refund event.
    /// Replays change nothing.
    pub async fn payment_refunded(&self, event: &PaymentEvent) -> Result<EventEffect> {
        let Some(order_id) = &event.order_id else { return Ok(EventEffect::Unchanged) };
        let Some(v) = self.store.get_order(order_id).await? else {
            return Ok(EventEffect::Unchanged);
        };
        let order = v.value;
        if order.payment.reference != event.reference {
            tracing::warn!(order = %order_id, event = %event.event_id, "refund event for another payment of this order; ignored");
            return Ok(EventEffect::Unchanged);
        }
        if matches!(order.status(), OrderStatus::Refunded | OrderStatus::Canceled) {
            return Ok(EventEffect::Unchanged);
        }
        let Some(total) = event.amount.filter(|a| a.currency() == order.payment.amount.currency())
        else {
            return Err(Error::invalid(
                "a refund event without its amount in the order's currency",
            ));
        };
        let by = OrderActor::new("processor", event.event_id.clone());
        let paid = order.payment.amount;
        let full = total.minor() >= paid.minor();
        if full {
            self.reverse_fee(&order).await?;
        }
        let record = RefundRecord {
            amount: Money::zero(paid.currency()),
            total_refunded: Some(total),
            reference: &event.reference,
            settle: full.then_some(OrderStatus::Refunded),
        };
        let reason = if full {
            "refunded at the payment processor"
        } else {
            "partly refunded at the payment processor"
        };
        let before = self.store.order_events(order_id).await?.len();
        let view = self.record_refund(&by, order_id, record, reason).await?;
        Ok(if view.events.len() > before { EventEffect::Applied } else { EventEffect::Unchanged })
    }
}
