//! Payment events: the buyer's approval of a payment that waited for them,
//! and what the processor reports afterwards through its webhooks.
//!
//! These use cases move orders only through the order lifecycle of
//! `orders.rs`, never by writing the store directly, so a webhook and an
//! operator who do the same thing leave the same trail. Every one of them
//! is safe to run twice: a processor redelivers events, and an event that
//! describes what already happened changes nothing.

use super::Gateway;
use crate::domain::Result;

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
