//! The ports: traits through which the gateway reaches the outside world.
//!
//! Adapters in `adapters/` implement them (SQLite or DynamoDB for the store,
//! the embedded SQLite catalog or Shopify, the sandbox processor or Stripe).
//! The gateway holds each as `Arc<dyn Trait>` and knows nothing of which one
//! it has. Every atomic operation a backend must provide is named here, so a
//! new backend cannot quietly skip one.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{
    Cart, CartId, CategoryNode, CheckoutId, CheckoutSession, Currency, LedgerEntry, Money, Order,
    OrderEvent, OrderId, Product, ProductId, Result, Sku, VariantId,
};

/// A value read from the store together with the version to use for a
/// later compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// A response stored under an idempotency key, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// The first request holding the key is still running.
    InProgress,
    Completed(StoredResponse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Hash of operation + resource id + canonical arguments.
    pub fingerprint: String,
    pub state: IdempotencyState,
    pub expires_at: OffsetDateTime,
}

/// What [`Store::idempotency_begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key was free and is now held by this caller (state in-progress).
    Started,
    /// The key is already in use; the caller compares fingerprints and
    /// either replays, waits, or reports a conflict.
    Existing(IdempotencyRecord),
}

/// Everything the checkout pipeline writes at completion, committed as one
/// atomic unit: all of it lands, or none of it does.
#[derive(Debug, Clone)]
pub struct CheckoutCommit {
    /// The session in its `completed` status.
    pub session: CheckoutSession,
    /// The version the session had when the pipeline loaded it.
    pub expected_version: u64,
    pub order: Order,
    pub events: Vec<OrderEvent>,
    /// Units to take from stock, each only if enough is left.
    pub stock: Vec<(Sku, u32)>,
    pub ledger: LedgerEntry,
    /// The verified mandates, kept with the order for audit (compact JWS).
    pub mandates: Vec<String>,
    /// The response to store under the request's idempotency key.
    pub idempotency: Option<(String, StoredResponse)>,
    /// Deliveries the completion causes (the platform's order webhook, the
    /// buyer's confirmation), written with it so a crash loses none.
    pub outbox: Vec<OutboxMessage>,
}

/// What an outbox message asks the delivery worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// POST the payload, signed, to a platform's order webhook URL.
    OrderWebhook,
    /// Send the payload (a confirmation) to a buyer's email address.
    Notification,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderWebhook => "order_webhook",
            Self::Notification => "notification",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "order_webhook" => Ok(Self::OrderWebhook),
            "notification" => Ok(Self::Notification),
            other => Err(crate::domain::Error::invalid(format!("unknown outbox kind {other:?}"))),
        }
    }
}

/// A delivery to make once the change that caused it has committed. It is
/// written in the same atomic unit as that change (`commit_checkout`,
/// `update_order`), so the change and its delivery exist together or not
/// at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Unique; receivers deduplicate on it (the webhook's `event_id` and
    /// `Webhook-Id`, the email's idempotency key). Put-if-absent.
    pub id: String,
    pub kind: OutboxKind,
    /// The webhook URL or the email address.
    pub destination: String,
    /// The JSON to deliver, fixed when the change committed.
    pub payload: String,
    pub order_id: Option<OrderId>,
    pub created_at: OffsetDateTime,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    /// Waiting for its next delivery (or being delivered under a lease).
    Pending,
    Delivered,
    /// Given up after too many attempts, or refused for good by the receiver.
    Dead,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(crate::domain::Error::invalid(format!("unknown outbox status {other:?}"))),
        }
    }
}

/// A message claimed by one worker until `until`. Only the holder of
/// `token` can settle it, and nobody else can claim it before `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxLease {
    pub message: OutboxMessage,
    /// Deliveries tried before this one.
    pub attempts: u32,
    pub token: String,
    pub until: OffsetDateTime,
}

/// How a delivery under a lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxResult {
    Delivered,
    /// Try again at `at`; the attempt counts.
    Retry {
        at: OffsetDateTime,
        error: String,
    },
    /// Never again; the attempt counts.
    Dead {
        error: String,
    },
}

/// One message with its delivery record, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message: OutboxMessage,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
}

/// Which messages [`Store::outbox_entries`] lists.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    pub order_id: Option<OrderId>,
    pub status: Option<OutboxStatus>,
    /// 0 means the store's default page.
    pub limit: u32,
}

/// Filters for listing orders (operator tools).
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub owner: Option<String>,
    pub status: Option<crate::domain::OrderStatus>,
    /// Orders created at or after this time.
    pub created_from: Option<OffsetDateTime>,
    /// Orders created before this time.
    pub created_to: Option<OffsetDateTime>,
    /// A page position: only orders strictly older, in (created_at, id)
    /// order, than the order created at this time with this id (the last
    /// of the previous page).
    pub before: Option<(OffsetDateTime, OrderId)>,
    pub limit: u32,
}

/// One side-effecting operator action in the audit log. It is written in
/// the same atomic unit as its effect, under a key derived from the
/// operator's idempotency key, so the log and the effect never disagree
/// and one key acts at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unique (`<action>:<idempotency key>`); written put-if-absent.
    pub id: String,
    /// What was done (`adjust_stock`).
    pub action: String,
    /// What it was done to (a SKU).
    pub target: String,
    /// Who did it (the credential's subject, or `cli:<user>`).
    pub actor: String,
    pub reason: String,
    pub trace_id: String,
    /// Hash of the action's canonical arguments: a replay under the same
    /// key matches it, a different request under the same key does not.
    pub fingerprint: String,
    /// The change requested, in the action's own terms (a stock delta).
    pub delta: i64,
    /// Units in stock after the change. Set by the store inside the
    /// atomic write, since only it knows what concurrent writers left.
    pub stock_after: Option<u32>,
    pub at: OffsetDateTime,
}

/// What [`Store::adjust_stock_audited`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditedStock {
    /// The adjustment ran now; this is its record as written.
    Applied(AuditRecord),
    /// A record with this id was already there; nothing changed.
    Existing(AuditRecord),
}

/// Which records [`Store::audit_records`] lists.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub target: Option<String>,
    /// 0 means the store's default page.
    pub limit: u32,
}

/// Durable state. Implementations: `adapters::sqlite::SqliteStore` (the
/// embedded default) and the DynamoDB store. All of them must pass the
/// contract suite in `tests/store_contract`.
///
/// Every read honours expiry itself: an idempotency record or mandate id
/// past its expiry reads as absent (and can be taken over) even if the
/// backend has not yet deleted it. Carts and checkout sessions are returned
/// even when expired: their `is_expired` decides, so a caller can answer
/// `session_expired` rather than `not_found`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap liveness check for `/health`.
    async fn health(&self) -> Result<()>;

    // Carts: put-if-absent on create, compare-and-set on update.
    async fn insert_cart(&self, cart: &Cart) -> Result<()>;
    async fn get_cart(&self, id: &CartId) -> Result<Option<Versioned<Cart>>>;
    /// Writes `cart` if the stored version is still `expected`; returns the
    /// new version, or `version_conflict`.
    async fn update_cart(&self, cart: &Cart, expected: u64) -> Result<u64>;

    // Checkout sessions: same discipline as carts.
    async fn insert_checkout(&self, session: &CheckoutSession) -> Result<()>;
    async fn get_checkout(&self, id: &CheckoutId) -> Result<Option<Versioned<CheckoutSession>>>;
    async fn update_checkout(&self, session: &CheckoutSession, expected: u64) -> Result<u64>;

    // Orders and their append-only events.
    async fn get_order(&self, id: &OrderId) -> Result<Option<Versioned<Order>>>;
    async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>>;
    async fn order_events(&self, id: &OrderId) -> Result<Vec<OrderEvent>>;
    /// The mandates committed with an order (compact JWS, in commit order),
    /// for audit. Empty when the order has none or does not exist.
    async fn order_mandates(&self, id: &OrderId) -> Result<Vec<String>>;
    /// Compare-and-set on the order plus the events that explain the change
    /// and the deliveries it causes, atomically: if the version moved,
    /// nothing is written (`version_conflict`); an outbox id already taken
    /// aborts everything (`already_exists`).
    async fn update_order(
        &self,
        order: &Order,
        expected: u64,
        events: &[OrderEvent],
        outbox: &[OutboxMessage],
    ) -> Result<u64>;

    // Idempotency records.
    /// Put-if-absent of an in-progress record for `key`.
    async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &str,
        expires_at: OffsetDateTime,
    ) -> Result<IdempotencyBegin>;
    /// Stores the final response for a key this caller holds.
    async fn idempotency_complete(&self, key: &str, response: &StoredResponse) -> Result<()>;
    /// Releases a key whose request failed before any effect, so a retry
    /// can run again.
    async fn idempotency_release(&self, key: &str) -> Result<()>;
    async fn idempotency_get(&self, key: &str) -> Result<Option<IdempotencyRecord>>;

    /// How many completed checkouts applied the discount `code` (upper
    /// case, as sessions record it). A use is consumed when its checkout
    /// completes, so this counts from the sessions themselves and needs no
    /// counter of its own. Backends that cannot count answer an error, and
    /// the gateway then refuses codes with a usage limit rather than
    /// assume the limit unreached.
    async fn discount_uses(&self, code: &str) -> Result<u64> {
        let _ = code;
        Err(crate::domain::Error::new(
            crate::domain::ErrorCode::StoreUnavailable,
            "this store cannot count discount uses",
        ))
    }

    /// Put-if-absent of a mandate id; `true` when newly reserved, `false`
    /// when it was reserved before (a replay).
    async fn reserve_mandate_id(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool>;

    /// [`Store::reserve_mandate_id`] for each id in order, stopping at the
    /// first replay; returns how many were newly reserved. The ids before
    /// the replay stay reserved, those after it are not tried. A store
    /// that can should do it in one write: a completion spends three ids.
    async fn reserve_mandate_ids(&self, ids: &[(&str, OffsetDateTime)]) -> Result<usize> {
        for (n, (id, keep_until)) in ids.iter().enumerate() {
            if !self.reserve_mandate_id(id, *keep_until).await? {
                return Ok(n);
            }
        }
        Ok(ids.len())
    }

    /// Put-if-absent of a webhook event id per source; `true` when new.
    async fn mark_webhook_seen(&self, source: &str, event_id: &str) -> Result<bool>;
    /// Forgets an event id whose processing failed after it was marked, so
    /// the sender's redelivery is processed instead of skipped as a
    /// duplicate.
    async fn forget_webhook(&self, source: &str, event_id: &str) -> Result<()>;

    // Stock.
    async fn set_stock(&self, sku: &Sku, quantity: u32) -> Result<()>;
    async fn get_stock(&self, sku: &Sku) -> Result<Option<u32>>;
    /// Conditional decrement: takes `quantity` units only if at least that
    /// many are left; returns the units remaining, or `insufficient_stock`.
    async fn decrement_stock(&self, sku: &Sku, quantity: u32) -> Result<u32>;
    /// Adds (or, with a negative delta, removes) units; never below zero.
    async fn adjust_stock(&self, sku: &Sku, delta: i64) -> Result<u32>;
    /// An operator's stock adjustment with its audit record, atomically.
    /// If a record with `record.id` exists, nothing changes and it is
    /// returned (`Existing`), whatever it says. Otherwise `record.delta`
    /// is added to the SKU's stock (a SKU without stock starts from zero)
    /// and the record is written with `stock_after`; a removal larger
    /// than what is left is `insufficient_stock` and a result above
    /// `u32::MAX` is `invalid_input`, both writing nothing. Concurrent
    /// decrements (checkouts) are never lost: the change applies to what
    /// is there when it commits.
    async fn adjust_stock_audited(&self, sku: &Sku, record: &AuditRecord) -> Result<AuditedStock>;
    /// Audit records, newest first.
    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;

    /// Checkout sessions an operator should look at, oldest first: those
    /// waiting in `requires_escalation` (the buyer must act elsewhere) and
    /// those stuck in `complete_in_progress` (a completion that never
    /// finished). Expired ones are included; `is_expired` tells.
    async fn checkouts_needing_attention(&self, limit: u32) -> Result<Vec<CheckoutSession>>;

    // Fee ledger.
    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<()>;
    async fn ledger_entries(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        currency: Option<Currency>,
    ) -> Result<Vec<LedgerEntry>>;

    /// The checkout completion, atomically: compare-and-set the session,
    /// decrement every stock line conditionally, insert the order (put-if-
    /// absent), its events, the ledger entry, the mandates, the outbox
    /// messages (put-if-absent) and the idempotency response. Any failed
    /// condition aborts everything: `version_conflict`,
    /// `insufficient_stock` or `already_exists`.
    async fn commit_checkout(&self, commit: &CheckoutCommit) -> Result<()>;

    // The outbox: deliveries written with the changes that cause them.
    /// Leases up to `limit` due messages (pending, `next_attempt_at` passed,
    /// no live lease) until `now + lease`, each under a fresh token. Two
    /// callers never lease one message at once, whatever the interleaving.
    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxLease>>;
    /// Settles a leased message: delivered, retried at a later time, or
    /// dead. Only the lease's token can, and only while the message is
    /// pending under it; otherwise `version_conflict` and nothing changes
    /// (the lease ran out and another worker took the message).
    async fn finish_outbox(&self, lease: &OutboxLease, result: &OutboxResult) -> Result<()>;
    /// Messages with their delivery records, oldest first.
    async fn outbox_entries(&self, filter: &OutboxFilter) -> Result<Vec<OutboxEntry>>;
}

/// A page of search results with an opaque cursor to the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub products: Vec<Product>,
    pub next_cursor: Option<String>,
}

/// Catalog search input, already validated at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Free text; empty means "everything matching the filters".
    pub text: String,
    /// A category path; matches it and its children.
    pub category: Option<String>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    /// Inclusive bounds in minor units, compared against variant prices.
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub in_stock_only: bool,
    /// Page size; adapters clamp it to their hard maximum.
    pub limit: u32,
    pub cursor: Option<String>,
}

/// The product catalog. Implementations: the embedded SQLite/FTS5 catalog
/// and Shopify's Storefront API.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
    async fn product(&self, id: &ProductId) -> Result<Option<Product>>;
    async fn product_by_handle(&self, handle: &str) -> Result<Option<Product>>;
    /// The product owning a variant, with that variant's id.
    async fn variant(&self, id: &VariantId) -> Result<Option<(Product, VariantId)>>;
    async fn by_sku(&self, sku: &Sku) -> Result<Option<(Product, VariantId)>>;
    async fn categories(&self) -> Result<Vec<CategoryNode>>;
}

/// A backend whose own checkout takes the payment (Shopify). When the
/// gateway has one, a completion that passes the guardrail does not charge:
/// the session moves to `requires_escalation` with the URL this returns,
/// and the buyer pays there. Implementation: `adapters::shopify::ShopifyStorefront`.
#[async_trait]
pub trait ExternalCheckout: Send + Sync + 'static {
    /// Builds the backend's cart for the session's lines and buyer, and
    /// returns where the buyer pays (the cart's checkout URL).
    async fn continue_url(&self, session: &CheckoutSession) -> Result<String>;
}

/// How far a backend's order has got with its money, as the backend says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalFinancialStatus {
    /// Nothing captured yet (pending, authorized, partially paid).
    Unpaid,
    Paid,
    PartiallyRefunded,
    Refunded,
    /// The authorization was voided before any capture.
    Voided,
}

/// A shipment of a backend's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalFulfillment {
    /// The backend's id, unique within its order.
    pub id: String,
    /// `false` when the backend cancelled the shipment (or it failed).
    pub active: bool,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    /// `(variant, units)`; empty when the backend did not say, which ships
    /// whatever is left.
    pub lines: Vec<(VariantId, u32)>,
}

/// A backend's order as the gateway reconciles it: a snapshot of its real
/// state, read from the backend's API or carried by its webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalOrder {
    /// The backend's order id (Shopify's numeric id, as text).
    pub reference: String,
    /// The shop's name for it (`#1001`), for people.
    pub name: String,
    /// The gateway checkout the order was paid for, from the attribute the
    /// gateway put on the backend's cart; `None` for orders placed
    /// elsewhere.
    pub checkout_id: Option<CheckoutId>,
    pub financial: ExternalFinancialStatus,
    pub cancelled: bool,
    /// What the buyer paid on the backend's checkout.
    pub total: Money,
    pub fulfillments: Vec<ExternalFulfillment>,
}

/// Where a backend that takes the payment itself (Shopify) keeps its
/// orders. The gateway links each to the checkout it escalated and keeps a
/// local order in step with it (webhooks, and a fresh read on every
/// lookup). Implementation: `adapters::shopify::ShopifyAdmin`.
#[async_trait]
pub trait ExternalOrders: Send + Sync + 'static {
    /// The name recorded as the order's payment processor (`shopify`).
    fn source(&self) -> &'static str;
    /// The order `reference` as the backend has it now; `None` when the
    /// backend has no such order.
    async fn order(&self, reference: &str) -> Result<Option<ExternalOrder>>;
}

/// Outcome of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        reference: String,
    },
    /// The buyer must act (3-D Secure and the like) at `continue_url`.
    RequiresAction {
        reference: String,
        continue_url: String,
    },
    Declined {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Derived from the checkout id, so a retry cannot charge twice.
    pub idempotency_key: String,
    pub amount: Money,
    /// The processor token from the payment mandate or instrument.
    pub token: String,
    pub checkout_id: CheckoutId,
    pub order_id: OrderId,
}

/// Finishes a payment that waited for the buyer ([`ChargeOutcome::RequiresAction`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Derived from the checkout and the attempt (`<checkout>:capture:<order>`),
    /// so a retried capture settles the same payment once.
    pub idempotency_key: String,
    /// The processor's reference of the payment that waited.
    pub reference: String,
    /// The amount the attempt charged; a processor refuses to capture more.
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub charge_reference: String,
    pub amount: Money,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Succeeded,
    RequiresAction,
    /// The buyer approved, and the money waits to be captured.
    Authorized,
    Failed,
    Refunded,
    Unknown,
}

/// A payment processor. Implementations: the sandbox (default) and Stripe.
#[async_trait]
pub trait Payments: Send + Sync + 'static {
    /// The processor name used in profiles and records (`sandbox`, `stripe`).
    fn name(&self) -> &str;
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome>;
    /// The outcome of the charge made under `idempotency_key`, or `None`
    /// when the processor never saw that key. This is a lookup and moves no
    /// money: checkout recovery asks it, after a crash between the charge
    /// and the commit, to decide between finishing the commit and rolling
    /// back, so recovery itself never charges.
    async fn find_charge(&self, idempotency_key: &str) -> Result<Option<ChargeOutcome>>;
    /// Finishes a payment that answered `RequiresAction`, once the buyer
    /// acted at its `continue_url`: captures it if the buyer approved
    /// (`Succeeded`), answers `RequiresAction` again while they have not,
    /// and `Declined` when they refused or the approval lapsed. It never
    /// starts a new charge, and a repeated key settles the same payment.
    async fn capture(&self, request: &CaptureRequest) -> Result<ChargeOutcome>;
    /// Refunds (part of) a charge; returns the refund reference. A repeated
    /// key returns the first refund and moves no money.
    async fn refund(&self, request: &RefundRequest) -> Result<String>;
    async fn status(&self, reference: &str) -> Result<PaymentStatus>;
    /// Records the buyer's approval of a payment waiting for them, for a
    /// processor whose approval page the gateway serves itself (the
    /// sandbox's `/sandbox/authenticate/{reference}`). Real processors host
    /// that page themselves, so the default answers `not_found`.
    async fn approve_action(&self, reference: &str) -> Result<()> {
        Err(crate::domain::Error::not_found(format!(
            "no payment {reference} waits for approval here"
        )))
    }
}

/// What a platform's webhook endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
}

/// Posts order webhooks to platforms. Implementation:
/// `adapters::webhooks::HttpWebhookSender`.
///
/// The URL comes from a platform's profile, so a post is SSRF surface like
/// a profile fetch: implementations refuse anything but HTTPS to public
/// addresses, follow no redirects, and bound the time. An error means the
/// endpoint could not be reached (or was refused before sending); an
/// answer of any status is a [`WebhookResponse`].
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    async fn post(
        &self,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<WebhookResponse>;
}

/// A message to a buyer (an order confirmation), as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    pub to: String,
    pub subject: String,
    /// The plain-text body, complete on its own.
    pub text: String,
    pub order_id: String,
}

/// Sends buyer notifications. Implementations: `adapters::notify::LogNotifier`
/// (the default) and `adapters::notify::HttpEmailNotifier`. `key` is the
/// outbox message id: a sender that can deduplicate (an email API's
/// idempotency key) passes it on, so a retried delivery sends one email.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn send(&self, key: &str, notification: &Notification) -> Result<()>;
}

/// The wall clock, injectable so tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Fetches a platform's discovery profile, named in its `UCP-Agent` header,
/// for capability negotiation. Implementation:
/// `adapters::profile_fetcher::HttpProfileFetcher`.
///
/// The URL comes from an unauthenticated request, so a fetch is SSRF
/// surface: implementations refuse anything but HTTPS to public addresses,
/// follow no redirects, bound time and size, and cache (UCP 2026-04-08
/// overview, "Profile Requirements"). Errors: `invalid_profile_url` (not
/// https, not public, unresolvable), `profile_unreachable` (connect
/// failure, timeout, redirect, non-2xx) and `profile_malformed` (too large,
/// not a JSON object).
#[async_trait]
pub trait ProfileFetcher: Send + Sync + 'static {
    async fn fetch(&self, url: &url::Url) -> Result<serde_json::Value>;
}
