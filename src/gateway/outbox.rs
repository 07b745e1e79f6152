//! The outbox: what an order change must tell the outside world, written
//! with the change, and the worker that delivers it.
//!
//! Every order change that a platform subscribed to (the `webhook_url` of
//! its UCP order capability, kept on the order as [`OrderWebhook`]) adds an
//! `order_webhook` message: the full order as the platform's UCP version
//! renders it, plus `event_id` and `created_time`. A completed checkout with
//! a buyer email adds a `notification`: the order confirmation. Both are
//! built here, as data, and committed by the store in the same transaction
//! as the change (`commit_checkout`, `update_order`), so a crash between the
//! change and its delivery loses nothing.
//!
//! [`OutboxWorker`] delivers them. It claims due messages under a lease (so
//! two workers, or a worker and a restarted one, never send one message at
//! the same time), sends each, and settles it: delivered; retried later
//! with exponential backoff and jitter; or dead after `max_attempts`, or at
//! once when the receiver answers 410 Gone or the URL is refused. Delivery
//! is at least once: a crash after a send and before its settlement sends
//! again after the lease, with the same `event_id`, which receivers
//! deduplicate on.
//!
//! Webhook requests carry (see `docs/payments.md`):
//! - `Request-Signature`: a detached JWS (RFC 7515 appendix F,
//!   `<b64url header>..<b64url signature>`, ES256, `kid` of the merchant's
//!   key in `/.well-known/jwks.json`) over the body, which is sent in its
//!   JCS (RFC 8785) form, so the signed bytes are the body's bytes;
//! - `Webhook-Id` (the `event_id`) and `Webhook-Timestamp` (Unix seconds of
//!   the send);
//! - `UCP-Agent: profile="<public base url>/.well-known/ucp"`.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use rand_core::RngCore;
use time::OffsetDateTime;
use tokio::sync::watch;
use url::Url;

use super::Gateway;
use crate::ap2::jws;
use crate::domain::order::OrderWebhook;
use crate::domain::{Error, ErrorCode, Order, OrderEvent, Result};
use crate::ports::{
    Notification, Notifier, OutboxKind, OutboxLease, OutboxMessage, OutboxResult, WebhookSender,
};
use crate::settings::OutboxConfig;
use crate::ucp::wire::{self, v2026_04_08, WireVersion};

/// The header carrying the detached JWS over a webhook body.
pub const SIGNATURE_HEADER: &str = "request-signature";
/// The header carrying a webhook's event id.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// The header carrying a webhook's send time (Unix seconds).
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";

fn rfc3339(t: OffsetDateTime) -> Result<String> {
    wire::rfc3339(t).ok_or_else(|| Error::internal(format!("time {t} cannot be written")))
}

impl Gateway {
    /// The order webhook for a change of `order`, whose whole audit trail
    /// (the change's own events included) is `trail`; `None` when the
    /// platform gave no webhook URL.
    pub(super) fn webhook_message(
        &self,
        order: &Order,
        trail: &[OrderEvent],
        now: OffsetDateTime,
    ) -> Result<Option<OutboxMessage>> {
        let Some(OrderWebhook { url, ucp_version, capabilities }) = &order.webhook else {
            return Ok(None);
        };
        let version = WireVersion::of(ucp_version);
        let ucp = wire::ucp_meta(version, capabilities, None);
        let rendered =
            v2026_04_08::order(order, trail, ucp, &self.settings.public_base_url, version);
        let mut body = serde_json::to_value(&rendered).map_err(Error::internal)?;
        // A UUID, as `Webhook-Id` is one in UCP 2026-04-08.
        let event_id = uuid::Uuid::now_v7().to_string();
        body["event_id"] = serde_json::Value::String(event_id.clone());
        body["created_time"] = serde_json::Value::String(rfc3339(now)?);
        Ok(Some(OutboxMessage {
            id: event_id,
            kind: OutboxKind::OrderWebhook,
            destination: url.clone(),
            payload: body.to_string(),
            order_id: Some(order.id.clone()),
            created_at: now,
        }))
    }

    /// The buyer's order confirmation, when the order has a buyer email.
    /// Its id is derived from the order, so one order confirms once.
    pub(super) fn confirmation_message(
        &self,
        order: &Order,
        now: OffsetDateTime,
    ) -> Result<Option<OutboxMessage>> {
        let Some(to) = order.buyer_email.clone() else { return Ok(None) };
        let notification = Notification {
            to,
            subject: format!(
                "{}: your order {} is confirmed",
                self.settings.merchant_name, order.id
            ),
            text: self.confirmation_text(order),
            order_id: order.id.to_string(),
        };
        Ok(Some(OutboxMessage {
            id: format!("{}:confirmation", order.id),
            kind: OutboxKind::Notification,
            destination: notification.to.clone(),
            payload: serde_json::to_string(&notification).map_err(Error::internal)?,
            order_id: Some(order.id.clone()),
            created_at: now,
        }))
    }

    /// The confirmation: what was bought, the totals, what the buyer paid
    /// (the total: the platform fee is the merchant's cost, never added to
    /// the buyer's payment), where to follow the order and whom to ask.
    fn confirmation_text(&self, order: &Order) -> String {
        let s = &self.settings;
        let mut text =
            format!("Thank you for your order at {}.\n\nOrder {}\n\n", s.merchant_name, order.id);
        for line in &order.lines {
            text.push_str(&format!("  {} x {}  {}\n", line.quantity, line.title, line.line_total));
        }
        let t = &order.totals;
        text.push_str(&format!("\nSubtotal  {}\n", t.subtotal));
        if t.discount.minor() != 0 {
            text.push_str(&format!(
                "Discount  -{}\n",
                t.discount.decimal().trim_start_matches('-')
            ));
        }
        if t.fulfillment.minor() != 0 {
            text.push_str(&format!("Shipping  {}\n", t.fulfillment));
        }
        if t.tax.minor() != 0 {
            text.push_str(&format!("Tax  {}\n", t.tax));
        }
        text.push_str(&format!("Total  {}\n\n", t.total));
        text.push_str(&format!(
            "You paid {}. No fees were added to your payment.\n\n",
            order.payment.amount
        ));
        text.push_str(&format!(
            "Follow your order: {}\n",
            wire::order_permalink(&s.public_base_url, order.id.as_str())
        ));
        text.push_str(&format!("Questions? Write to {}", s.notify.support_email));
        if let Some(url) = &s.notify.support_url {
            text.push_str(&format!(" or visit {url}"));
        }
        text.push_str(".\n");
        text
    }
}

/// Delivers the outbox. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct OutboxWorker {
    gateway: Arc<Gateway>,
    webhooks: Arc<dyn WebhookSender>,
    notifier: Arc<dyn Notifier>,
}

impl OutboxWorker {
    pub fn new(
        gateway: Arc<Gateway>,
        webhooks: Arc<dyn WebhookSender>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self { gateway, webhooks, notifier }
    }

    fn config(&self) -> &OutboxConfig {
        &self.gateway.settings.outbox
    }

    /// Runs until `shutdown` turns true: waits `start_delay_ms`, then looks
    /// for due messages every `poll_interval_ms` (at once again after a
    /// full batch). Deliveries in flight at shutdown finish or are dropped;
    /// a dropped one is sent again after its lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let delay = StdDuration::from_millis(self.config().start_delay_ms);
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
        let poll = StdDuration::from_millis(self.config().poll_interval_ms);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let full = match self.run_once().await {
                Ok(n) => n >= self.config().batch as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox pass failed; trying again later");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass: claims a batch of due messages, delivers them side by
    /// side, and settles each. Returns how many it claimed.
    pub async fn run_once(&self) -> Result<usize> {
        let lease = time::Duration::seconds(i64::try_from(self.config().lease_secs).unwrap_or(60));
        let claimed =
            self.gateway.store.claim_outbox(self.gateway.now(), lease, self.config().batch).await?;
        let n = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for lease in claimed {
            let worker = self.clone();
            tasks.spawn(async move {
                let result = worker.deliver(&lease).await;
                match &result {
                    OutboxResult::Delivered => {
                        tracing::info!(message = %lease.message.id, kind = lease.message.kind.as_str(), order = ?lease.message.order_id.as_ref().map(|o| o.to_string()), "outbox message delivered")
                    }
                    OutboxResult::Retry { at, error } => {
                        tracing::warn!(message = %lease.message.id, attempt = lease.attempts + 1, retry_at = %at, error = %error, "outbox delivery failed; will retry")
                    }
                    OutboxResult::Dead { error } => {
                        tracing::error!(message = %lease.message.id, attempt = lease.attempts + 1, error = %error, "outbox message dead-lettered")
                    }
                }
                if let Err(e) = worker.gateway.store.finish_outbox(&lease, &result).await {
                    // The lease ran out and another worker holds the
                    // message now, or the store is down: either way it is
                    // still pending and will be settled by someone.
                    tracing::warn!(message = %lease.message.id, error = %e, "could not settle an outbox message");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(n)
    }

    async fn deliver(&self, lease: &OutboxLease) -> OutboxResult {
        let outcome = match lease.message.kind {
            OutboxKind::OrderWebhook => self.post_webhook(&lease.message).await,
            OutboxKind::Notification => self.notify(&lease.message).await,
        };
        match outcome {
            Ok(()) => OutboxResult::Delivered,
            Err(Failure::Permanent(error)) => OutboxResult::Dead { error },
            Err(Failure::Transient(error)) => self.retry_or_dead(lease, error),
        }
    }

    async fn post_webhook(&self, m: &OutboxMessage) -> std::result::Result<(), Failure> {
        let url = Url::parse(&m.destination)
            .map_err(|_| Failure::Permanent("the webhook URL does not parse".into()))?;
        let body: serde_json::Value = serde_json::from_str(&m.payload)
            .map_err(|_| Failure::Permanent("the stored payload is not JSON".into()))?;
        let bytes = jws::jcs(&body).map_err(|e| Failure::Permanent(e.to_string()))?;
        let signature = jws::sign_detached(self.gateway.keys.signer(), None, &body)
            .map_err(|e| Failure::Transient(format!("signing failed: {e}")))?;
        let profile =
            format!("profile=\"{}/.well-known/ucp\"", self.gateway.settings.public_base_url);
        let headers = [
            ("content-type", "application/json".to_owned()),
            (SIGNATURE_HEADER, signature),
            (WEBHOOK_ID_HEADER, m.id.clone()),
            (WEBHOOK_TIMESTAMP_HEADER, self.gateway.now().unix_timestamp().to_string()),
            ("ucp-agent", profile),
        ];
        match self.webhooks.post(&url, &headers, &bytes).await {
            Ok(r) if (200..300).contains(&r.status) => Ok(()),
            // The receiver says the endpoint is gone for good.
            Ok(r) if r.status == 410 => Err(Failure::Permanent("the endpoint answered 410".into())),
            Ok(r) => Err(Failure::Transient(format!("the endpoint answered {}", r.status))),
            // A URL the sender refuses (not https, not public) never becomes
            // acceptable by waiting.
            Err(e) if e.code() == ErrorCode::InvalidInput => {
                Err(Failure::Permanent(e.message().to_owned()))
            }
            Err(e) => Err(Failure::Transient(e.message().to_owned())),
        }
    }

    async fn notify(&self, m: &OutboxMessage) -> std::result::Result<(), Failure> {
        let n: Notification = serde_json::from_str(&m.payload)
            .map_err(|_| Failure::Permanent("the stored notification does not parse".into()))?;
        self.notifier.send(&m.id, &n).await.map_err(|e| Failure::Transient(e.message().to_owned()))
    }

    /// The next try after a failed one, or dead when the tries are spent.
    fn retry_or_dead(&self, lease: &OutboxLease, error: String) -> OutboxResult {
        let attempts = lease.attempts.saturating_add(1);
        if attempts >= self.config().max_attempts {
            return OutboxResult::Dead {
                error: format!("gave up after {attempts} attempts: {error}"),
            };
        }
        let at = self.gateway.now() + backoff(self.config(), attempts, rand_core::OsRng.next_u64());
        OutboxResult::Retry { at, error }
    }
}

/// Why a delivery failed, and whether waiting can help.
enum Failure {
    Transient(String),
    Permanent(String),
}

/// The wait after the `attempts`th failure: `backoff_base_ms` doubled per
/// attempt, at most `backoff_max_secs`, then jittered into its upper half
/// so workers that failed together do not retry together. `random` is any
/// random number.
pub fn backoff(config: &OutboxConfig, attempts: u32, random: u64) -> time::Duration {
    let cap_ms = config.backoff_max_secs.saturating_mul(1000);
    let exp = config
        .backoff_base_ms
        .saturating_mul(1u64.checked_shl(attempts.saturating_sub(1)).unwrap_or(u64::MAX))
        .min(cap_ms)
        .max(1);
    let half = exp / 2;
    let jitter = random % (exp - half + 1);
    time::Duration::milliseconds(i64::try_from(half + jitter).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_and_jitters_in_the_upper_half() {
        let config =
            OutboxConfig { backoff_base_ms: 1000, backoff_max_secs: 10, ..Default::default() };
        let cases = [
            (1, 500, 1000),
            (2, 1000, 2000),
            (3, 2000, 4000),
            (4, 4000, 8000),
            (5, 5000, 10_000),
            (40, 5000, 10_000),
        ];
        for (attempts, lo, hi) in cases {
            for random in [0, 1, 499, u64::MAX / 3, u64::MAX] {
                let ms = backoff(&config, attempts, random).whole_milliseconds();
                assert!((lo..=hi).contains(&(ms as i64)), "attempt {attempts}: {ms} ms");
            }
        }
    }
}
