//! Checkout completion: mandates (an AP2 v0.1 chain or v0.2 SD-JWT
//! mandates) → guardrail → fee → payment → atomic commit → signed receipt,
//! exactly once.
//!
//! This is the pipeline of `DESIGN.md` ("The checkout pipeline"). It owns
//! the order of the steps, the error code of each, and the rules that no
//! crash or race may break: never an order without a charge, never a charge
//! without an order or a recorded refund, never negative stock, never a
//! second charge for one checkout. It knows nothing of MCP or HTTP, and the
//! idempotency *replay* of a whole request (fingerprints, 409 on a reused
//! key) belongs to `gateway/idempotency.rs`; this module only commits the
//! response under the caller's key together with the order.
//!
//! # How exactly-once holds
//!
//! - **The session is the lock.** Before any money moves, the session is
//!   written in `complete_in_progress` with a compare-and-set on the version
//!   the pipeline read, carrying a fresh order id (the *attempt*), the
//!   re-priced lines and the total to charge. Of concurrent completions one
//!   wins; the others see the session in progress and answer
//!   `idempotency_in_progress` (retryable), or the completion once it
//!   landed.
//! - **One charge key per attempt.** The charge's idempotency key is
//!   `<checkout id>:charge:<order id>`: derived from the checkout id and
//!   written down in the session before the charge, so a retry of the same
//!   attempt can never charge twice, while a new attempt after a decline (a
//!   new order id) is a new charge rather than a replay of the decline.
//! - **The commit is conditional on the lock.** `Store::commit_checkout`
//!   compares the session version the lock wrote, and decrements stock only
//!   if enough is left; anything that fails writes nothing.
//! - **A charge that cannot become an order is fenced, then refunded.** When
//!   the commit fails for good (`insufficient_stock` lost to a concurrent
//!   buyer), the session is first rewritten, still in progress, with a
//!   `refund_pending` message. That write bumps the version, so no request
//!   can commit this charge into an order any more, and a crash from here on
//!   leaves a visible debt. Then the processor refunds (key
//!   `<checkout id>:refund:<order id>`), and the session returns to
//!   `ready_for_complete` with the failure and a `payment_refunded` message
//!   naming the charge and the refund: that message is the durable record
//!   (an order event would need an order).
//!
//! # Recovery of a session left in `complete_in_progress`
//!
//! A request that dies between the lock and the commit (crash, timeout,
//! store outage) leaves the session in progress. It holds the lock for a
//! lease of twice the request timeout, counted from the session's
//! `updated_at`; until then other requests answer `idempotency_in_progress`.
//! After it, the next `complete_checkout` of that session recovers:
//! it asks the processor for the charge under the attempt's key
//! ([`Payments::find_charge`](crate::ports::Payments::find_charge), a lookup
//! that moves no money) and
//! - finds none: nothing was charged; the session returns to
//!   `ready_for_complete` and the request goes on as a fresh completion;
//! - finds a success: it finishes the commit (or, if the commit fails for
//!   good or the session carries `refund_pending`, refunds as above);
//! - finds a decline or a required action: it settles the session as the
//!   first request would have.
//!
//! A session found back in `complete_in_progress` after a resume (below)
//! recovers the same way: the charge key finds the captured payment, or
//! the action still waiting, which sends the session back to escalation.
//!
//! Recovery never charges. The mandates are spent (their ids reserved) by
//! the attempt that holds the lock, so a chain pays once even when its
//! attempt is declined or rolled back: the agent asks for a new cart mandate
//! and signs a new payment mandate. A recovered order keeps the mandates of
//! the recovering request if they verify as of the lock instant; otherwise
//! it is committed without them (and says so in the log).
//!
//! # Escalation
//!
//! A processor that needs the buyer (3-D Secure and the like) answers
//! `RequiresAction` with a `continue_url`. The session goes to
//! `requires_escalation` with that URL and **keeps the attempt's order id**,
//! so the attempt's charge key stays known. The agent sends the buyer to
//! the URL (the sandbox serves `/sandbox/authenticate/{reference}` itself)
//! and completes again, with a new idempotency key. That completion takes
//! the lock like a fresh attempt, keeping the order id, and asks the
//! processor for the charge under the attempt's key: a payment still
//! waiting is captured ([`Payments::capture`](crate::ports::Payments::capture),
//! key `<checkout id>:capture:<order id>`), one already captured is
//! committed, and one the buyer refused is settled as a decline. Nothing is
//! charged anew. The mandates were spent by the attempt that escalated.
//!
//! If the agent edits the escalated session instead, the next completion is
//! a fresh attempt with a new order id. Should the buyer still approve the
//! abandoned payment at a processor that captures on approval, that charge
//! has no attempt any more: the processor's webhook reports it and
//! `Gateway::payment_succeeded` refunds it.
//!
//! # The receipt
//!
//! A compact JWS (ES256, `typ: receipt+jwt`, the merchant's active key),
//! an AP2 v0.2 checkout receipt (`checkout_receipt.json`): `status`
//! (`Success`), `iss`, `iat` (the order's creation), `reference` (the hash
//! of the closed mandate paid under: the v0.2 closed checkout mandate's
//! JWT, the v0.1 payment mandate, or the checkout id without mandates),
//! `order_id`, plus `checkout_id`, `total` and `trace_id`;
//! [`Gateway::error_receipt`] signs the `Error` form for a failure. The
//! platform fee is not in it: the fee is between the platform and the
//! merchant, the buyer pays the total either way, and an agent has no use
//! for it. It is in [`Completion::fee`] and on the order for operators.
//! Every claim comes from the stored order, and ES256 signing is
//! deterministic (RFC 6979), so a replayed completion carries the same
//! receipt byte for byte.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::mandates::StoreReserver;
use super::{Caller, Gateway, CAS_ATTEMPTS};
use crate::ap2::sdjwt::{self, ChainPolicy};
use crate::ap2::v02::{self, VerifiedMandates};
use crate::ap2::{self, jws, Amount, ChainInput, MerchantIdentity, VerifiedChain, VerifyPolicy};
use crate::domain::checkout::{Message, MessageType, Severity};
use crate::domain::order::{Delivery, DeliveryMethod, OrderLine, OrderWebhook, PaymentRecord};
use crate::domain::{
    CheckoutId, CheckoutSession, CheckoutStatus, Currency, Error, ErrorCode, Money, Order, OrderId,
    OrderStatus, Result, Sku,
};
use crate::policy::{
    CatalogItem, ClaimedCart, ClaimedLine, GuardrailInput, MerchantClaim, Repriced,
};
use crate::ports::{
    CaptureRequest, ChargeOutcome, ChargeRequest, CheckoutCommit, OrderFilter, RefundRequest,
    StoredResponse, Versioned,
};
use crate::ucp::profile::AP2_MANDATE;

/// The JWS `typ` of a receipt.
pub const RECEIPT_TYP: &str = "receipt+jwt";

/// Message code on a session whose charge is owed back (see module docs).
const REFUND_PENDING: &str = "refund_pending";
/// Message code on a session whose charge was refunded; it names both the
/// charge and the refund reference.
const PAYMENT_REFUNDED: &str = "payment_refunded";

/// Tries of the commit when the store answers with a transient error. The
/// commit is conditional on the lock, so a try that did land makes the
/// next one fail cleanly with `version_conflict`.
const COMMIT_ATTEMPTS: u32 = 3;

/// Orders read to compute an agent's spending in the velocity window. A
/// window holding more orders than this is refused rather than undercounted.
const VELOCITY_SCAN_LIMIT: u32 = 500;

/// The AP2 mandate chain an agent presents, each a compact JWS exactly as
/// received (the chain's hashes are over the bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct MandateChain {
    pub intent: String,
    pub cart: String,
    pub payment: String,
}

impl fmt::Debug for MandateChain {
    // The payment mandate carries the processor token; never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MandateChain")
            .field("intent_bytes", &self.intent.len())
            .field("cart_bytes", &self.cart.len())
            .field("payment_bytes", &self.payment.len())
            .finish()
    }
}

/// The AP2 v0.2 mandates an agent presents, each exactly as received (the
/// key bindings hash the bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct MandatesV02 {
    /// The checkout mandate (UCP `ap2.checkout_mandate`): an SD-JWT chain
    /// ending in a closed `mandate.checkout.1`.
    pub checkout: String,
    /// The payment mandate (UCP `payment.instruments[].credential.token`):
    /// an SD-JWT chain ending in a closed `mandate.payment.1`.
    pub payment: String,
}

impl fmt::Debug for MandatesV02 {
    // The payment mandate names the instrument to charge; never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MandatesV02")
            .field("checkout_bytes", &self.checkout.len())
            .field("payment_bytes", &self.payment.len())
            .finish()
    }
}

/// The mandates of a completion, in either AP2 generation. Which one a
/// completion needs is the session's business: a session created with the
/// UCP AP2 extension negotiated is locked to v0.2 (see
/// [`Gateway::complete_checkout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mandates {
    /// AP2 v0.1: intent, cart and payment mandates (compact JWS).
    V01(MandateChain),
    /// AP2 v0.2: checkout and payment mandates (SD-JWT chains).
    V02(MandatesV02),
}

impl From<MandateChain> for Mandates {
    fn from(chain: MandateChain) -> Self {
        Self::V01(chain)
    }
}

impl From<MandatesV02> for Mandates {
    fn from(mandates: MandatesV02) -> Self {
        Self::V02(mandates)
    }
}

/// Renders the response a transport stores under the caller's idempotency
/// key. The pipeline calls it on the completion it is about to commit, so
/// the stored response lands atomically with the order.
pub type RenderResponse = Arc<dyn Fn(&Completion) -> Result<StoredResponse> + Send + Sync>;

/// A request to complete a checkout. Build it with struct update syntax
/// over `CompleteRequest::default()`.
#[derive(Clone, Default)]
pub struct CompleteRequest {
    /// The AP2 mandates. Required when the `require_mandates` setting is
    /// on, and v0.2 ones when the session is locked to the UCP AP2
    /// extension; verified whenever present, and then the instrument they
    /// authorize is the one charged.
    pub mandates: Option<Mandates>,
    /// The processor token when no mandates are sent; without it the
    /// session's payment instrument token is used.
    pub payment_token: Option<String>,
    /// The agent platform's UCP profile (from `UCP-Agent` or MCP
    /// `meta["ucp-agent"]`), whose `signing_keys` verify the mandates.
    pub agent_profile_url: Option<Url>,
    /// The caller's idempotency key. With `render`, the response is stored
    /// under it in the commit (the key must be held in progress by the
    /// idempotency layer; otherwise the store leaves it).
    pub idempotency_key: String,
    /// The request's trace id (the `Request-Id`); a fresh one when empty.
    pub trace_id: String,
    pub render: Option<RenderResponse>,
    /// Where the agent's platform wants this order's changes posted (its
    /// negotiated UCP order capability's `webhook_url`). Kept on the order;
    /// every change then adds a signed webhook to the outbox.
    pub order_webhook: Option<OrderWebhook>,
}

impl fmt::Debug for CompleteRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompleteRequest")
            .field("mandates", &self.mandates)
            .field("payment_token", &self.payment_token.as_ref().map(|_| "<redacted>"))
            .field("agent_profile_url", &self.agent_profile_url)
            .field("idempotency_key", &self.idempotency_key)
            .field("trace_id", &self.trace_id)
            .field("render", &self.render.is_some())
            .field("order_webhook", &self.order_webhook.as_ref().map(|w| &w.url))
            .finish()
    }
}

/// A completed checkout.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The session, `completed`, with its `order_id`.
    pub session: CheckoutSession,
    /// The order, `paid`.
    pub order: Order,
    /// The platform fee recorded in the ledger (operators only; not in the
    /// receipt).
    pub fee: Money,
    /// The merchant-signed receipt (compact JWS, see the module docs).
    pub receipt: String,
    /// The trace id of the request that completed the checkout.
    pub trace_id: String,
}

/// The claims of a receipt: an AP2 v0.2 checkout receipt
/// (`checkout_receipt.json`: `status`, `iss`, `iat`, `reference`, and
/// `order_id` on success or `error` and `error_description` on error) plus
/// the members this gateway adds, which that schema allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptClaims {
    /// `Success` or `Error` (`types/receipt_status.json`).
    pub status: String,
    pub iss: String,
    pub iat: i64,
    /// The order id (one receipt per order), or for an error receipt the
    /// checkout id and the instant.
    pub jti: String,
    /// base64url(SHA-256) of the closed mandate the checkout was paid
    /// under (the v0.2 closed checkout mandate's JWT, the v0.1 payment
    /// mandate), or the checkout id without mandates.
    pub reference: String,
    /// Present if and only if `status` is `Success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Present if and only if `status` is `Error`: the stable error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    pub checkout_id: String,
    pub total: Amount,
    pub trace_id: String,
}

/// Who is asking, for the whole request.
struct Ctx<'a> {
    caller: &'a Caller,
    request: &'a CompleteRequest,
    trace_id: String,
}

/// One completion attempt: the session as the lock wrote it.
struct Attempt {
    /// The session in `complete_in_progress`, with the attempt's order id,
    /// re-priced lines and the total to charge.
    session: CheckoutSession,
    /// The version the lock (or the last fence) wrote.
    version: u64,
    order_id: OrderId,
    /// Verified mandates to keep with the order (intent, cart, payment).
    mandates: Vec<String>,
}

impl Attempt {
    fn total(&self) -> Money {
        self.session.totals.total
    }

    fn charge_key(&self) -> String {
        format!("{}:charge:{}", self.session.id, self.order_id)
    }

    fn capture_key(&self) -> String {
        format!("{}:capture:{}", self.session.id, self.order_id)
    }

    fn refund_key(&self) -> String {
        format!("{}:refund:{}", self.session.id, self.order_id)
    }
}

impl Gateway {
    /// Completes a `ready_for_complete` checkout: verify, guard, price the
    /// fee, lock, charge, commit, sign. See the module docs for the rules
    /// and `docs/ARCHITECTURE.md` for each failure and what it leaves.
    ///
    /// A checkout already completed answers the same completion to its
    /// owner (retries stay safe when the idempotency record was lost); a
    /// checkout owned by someone else is `not_found`.
    pub async fn complete_checkout(
        &self,
        caller: &Caller,
        id: &CheckoutId,
        request: CompleteRequest,
    ) -> Result<Completion> {
        let trace_id = if request.trace_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            request.trace_id.clone()
        };
        let ctx = Ctx { caller, request: &request, trace_id };
        let mut attempted = false;
        for _ in 0..CAS_ATTEMPTS {
            // Step 1: load the session; someone else's reads as absent.
            let Versioned { value: session, version } = load_session(self, caller, id).await?;
            let step = match session.status() {
                CheckoutStatus::Completed => return completion_of(self, session).await,
                CheckoutStatus::CompleteInProgress => recover(self, &ctx, session, version).await,
                // Escalated by the processor: the attempt waits for the
                // buyer, and this completion finishes it.
                CheckoutStatus::RequiresEscalation if session.order_id.is_some() => {
                    resume(self, &ctx, session, version).await
                }
                CheckoutStatus::ReadyForComplete if !attempted => {
                    attempted = true;
                    attempt(self, &ctx, session, version).await
                }
                // Back to ready after this request's own attempt lost the
                // lock: another request got there and finished; say so
                // rather than try a second payment in one call.
                CheckoutStatus::ReadyForComplete => return Err(changed_concurrently()),
                other => {
                    return Err(Error::new(
                        ErrorCode::IllegalTransition,
                        format!(
                            "only a ready_for_complete checkout can be completed; this one is {}",
                            other.as_str()
                        ),
                    ))
                }
            };
            match step {
                // The session moved under us: look again.
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                done => return done,
            }
        }
        Err(changed_concurrently())
    }
}

/// Steps 1 to 5 for a `ready_for_complete` session, then the charge.
async fn attempt(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    session: CheckoutSession,
    version: u64,
) -> Result<Completion> {
    let now = gw.now();
    if session.is_expired(now) {
        return Err(Error::new(ErrorCode::SessionExpired, "the checkout session has expired"));
    }

    // Step 2: the mandates, when there are some (or must be some).
    let verified = verify_request_mandates(gw, ctx, &session, now).await?;
    let token = match &verified {
        // The mandate's instrument is the one the user authorised; a token
        // sent beside the mandates is not used.
        Some(v) => v.payment_token().to_owned(),
        None => ctx
            .request
            .payment_token
            .clone()
            .or_else(|| session.payment.as_ref().and_then(|p| p.token.clone()))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::invalid("no payment token: send one, or a payment mandate"))?,
    };

    // Step 3: the guardrail, on catalog prices and current stock.
    let catalog = catalog_view(gw, &session).await?;
    let spent = spent_in_window(gw, ctx.caller, session.currency, now).await?;
    let claimed = verified.as_ref().map(|v| v.claimed_cart(&session)).transpose()?;
    let mut input =
        GuardrailInput::new(&session, &catalog, CheckoutStatus::CompleteInProgress, spent);
    match &verified {
        Some(Verified::V01(c)) => {
            input.claimed_cart = claimed.as_ref();
            input.intent_max = Some(c.intent_max());
            input.payment_amount = Some(payment_amount(c)?);
            input.merchant = Some(MerchantClaim {
                expected: &gw.settings.public_base_url,
                named: &c.cart().iss,
            });
        }
        Some(Verified::V02(v)) => {
            // The checkout JWT the agent signed is the session as it is, so
            // its lines are the session's; the guardrail still re-prices
            // them and holds the mandate's amount to the total.
            input.claimed_cart = claimed.as_ref();
            input.payment_amount = Some(v.amount);
        }
        None => {}
    }
    let repriced = guardrail(gw, &input)?;

    // Step 4: the fee, computed now so a bad policy fails before any
    // payment; the ledger entry is written with the order.
    let total = repriced.totals.total;
    if total.minor() <= 0 {
        return Err(Error::invalid("the checkout total is zero; there is nothing to charge"));
    }
    gw.settings.fees.fee_for(total)?;

    // Step 4b: a backend whose own checkout takes the payment (Shopify).
    // The guardrail has passed, so the buyer is handed over to pay there:
    // nothing is charged here, no order id is minted and no mandate is
    // spent, and a later completion starts a fresh attempt.
    if let Some(external) = &gw.external_checkout {
        let mut handed = session;
        handed.line_items = repriced.lines;
        handed.totals = repriced.totals;
        let url = external.continue_url(&handed).await?;
        let content = format!("the buyer pays on the store's own checkout at {url}");
        handed.messages = vec![message(
            MessageType::Info,
            ErrorCode::PaymentRequiresAction.as_str(),
            &content,
            None,
        )];
        handed.continue_url = Some(url);
        let handed = handed.transition(CheckoutStatus::RequiresEscalation, now)?;
        gw.store.update_checkout(&handed, version).await?;
        return Err(Error::new(ErrorCode::PaymentRequiresAction, content));
    }

    // Step 5: take the lock, then spend the mandates, then charge.
    let order_id = OrderId::from_uuid(uuid::Uuid::now_v7());
    let mut locked = session;
    locked.line_items = repriced.lines;
    locked.totals = repriced.totals;
    locked.order_id = Some(order_id.clone());
    locked.messages.clear();
    locked.continue_url = None;
    let locked = locked.transition(CheckoutStatus::CompleteInProgress, now)?;
    // A concurrent completion that got here first makes this a
    // `version_conflict`, and the caller's loop finds it in progress.
    let version = gw.store.update_checkout(&locked, version).await?;
    let mandates = match (&ctx.request.mandates, &verified) {
        (Some(m), Some(_)) => stored_mandates(m),
        _ => Vec::new(),
    };
    let attempt = Attempt { session: locked, version, order_id, mandates };

    if let Some(v) = &verified {
        // Only the lock holder spends the ids, so a duplicate of this very
        // request waits for it instead of reading as a replay.
        if let Err(e) = v.reserve(&StoreReserver(gw.store.as_ref())).await {
            let msg = message(MessageType::Error, e.code().as_str(), e.message(), None);
            release(gw, &attempt, CheckoutStatus::ReadyForComplete, vec![msg], None).await;
            return Err(e);
        }
    }

    let charge = ChargeRequest {
        idempotency_key: attempt.charge_key(),
        amount: total,
        token,
        checkout_id: attempt.session.id.clone(),
        order_id: attempt.order_id.clone(),
    };
    let outcome = match gw.payments.charge(&charge).await {
        Ok(outcome) => outcome,
        // The processor failed to answer; ask it whether the charge exists
        // before deciding anything.
        Err(e) => {
            match gw.payments.find_charge(&charge.idempotency_key).await {
                Ok(Some(outcome)) => outcome,
                Ok(None) => {
                    tracing::warn!(checkout = %attempt.session.id, error = %e, "charge failed before reaching the processor");
                    let content = "the payment processor could not be reached; nothing was charged";
                    let msg = message(MessageType::Error, "payment_failed", content, None);
                    release(gw, &attempt, CheckoutStatus::ReadyForComplete, vec![msg], None).await;
                    return Err(Error::new(
                    ErrorCode::PaymentFailed,
                    format!("{content}; the mandates of this attempt are spent, so retry with new ones"),
                ));
                }
                Err(lookup) => {
                    tracing::error!(checkout = %attempt.session.id, error = %e, lookup = %lookup, "charge outcome unknown; left for recovery");
                    return Err(Error::new(
                    ErrorCode::PaymentFailed,
                    "the payment processor did not answer; retry later and the checkout resumes \
                     where it stopped, without charging twice",
                ));
                }
            }
        }
    };
    settle(gw, ctx, attempt, outcome).await
}

/// A session found in `complete_in_progress`: wait for its lease, then
/// finish or roll back what its attempt started (module docs, "Recovery").
async fn recover(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    session: CheckoutSession,
    version: u64,
) -> Result<Completion> {
    let now = gw.now();
    let lease_end = session.updated_at + lease(gw);
    if now < lease_end {
        let wait = (lease_end - now).whole_seconds().max(1);
        return Err(Error::new(
            ErrorCode::IdempotencyInProgress,
            "this checkout is being completed by another request; retry shortly",
        )
        .with_retry_after(u64::try_from(wait).unwrap_or(1)));
    }
    let order_id = session.order_id.clone().ok_or_else(|| {
        Error::internal(format!("in-progress checkout {} has no order id", session.id))
    })?;
    let fenced = session.messages.iter().any(|m| m.code == REFUND_PENDING);
    let mut attempt = Attempt { session, version, order_id, mandates: Vec::new() };
    let found = gw.payments.find_charge(&attempt.charge_key()).await?;
    tracing::warn!(checkout = %attempt.session.id, order = %attempt.order_id, charged = found.is_some(), "recovering an interrupted completion");
    match found {
        None => {
            let msg = message(
                MessageType::Info,
                "completion_interrupted",
                "an earlier completion was interrupted before payment; nothing was charged",
                None,
            );
            // On success this is a fresh `ready_for_complete` session, and
            // the caller's loop completes it as this request asks.
            let mut ready =
                attempt.session.clone().transition(CheckoutStatus::ReadyForComplete, now)?;
            ready.order_id = None;
            ready.messages = vec![msg];
            gw.store.update_checkout(&ready, attempt.version).await?;
            Err(look_again())
        }
        Some(ChargeOutcome::Succeeded { reference }) if fenced => {
            let cause = cause_of(&attempt.session);
            finish_refund(gw, attempt, reference, cause).await
        }
        Some(outcome) => {
            attempt.mandates = recovered_mandates(gw, ctx, &attempt.session).await;
            settle(gw, ctx, attempt, outcome).await
        }
    }
}

/// A session the processor escalated (`requires_escalation` with the
/// attempt's order id): the buyer was sent to the `continue_url`, and this
/// completion captures what they approved instead of charging anew (module
/// docs, "Escalation").
async fn resume(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    session: CheckoutSession,
    version: u64,
) -> Result<Completion> {
    let now = gw.now();
    if session.is_expired(now) {
        return Err(Error::new(ErrorCode::SessionExpired, "the checkout session has expired"));
    }
    let order_id = session.order_id.clone().ok_or_else(|| {
        Error::internal(format!("escalated checkout {} has no attempt", session.id))
    })?;
    // The mandates were spent by the attempt that escalated; the ones this
    // request carries are kept for audit if they are that chain.
    let mandates = recovered_mandates(gw, ctx, &session).await;
    // Take the lock as a fresh attempt would, keeping the attempt's order
    // id: escalation -> ready -> in progress, written once.
    let mut locked = session.transition(CheckoutStatus::ReadyForComplete, now)?;
    locked.messages.clear();
    locked.continue_url = None;
    let locked = locked.transition(CheckoutStatus::CompleteInProgress, now)?;
    let version = gw.store.update_checkout(&locked, version).await?;
    let attempt = Attempt { session: locked, version, order_id, mandates };
    let outcome = match gw.payments.find_charge(&attempt.charge_key()).await? {
        Some(ChargeOutcome::RequiresAction { reference, .. }) => {
            let capture = CaptureRequest {
                idempotency_key: attempt.capture_key(),
                reference,
                amount: attempt.total(),
            };
            // A failed call leaves the session locked; recovery asks the
            // processor again once the lease ends.
            gw.payments.capture(&capture).await?
        }
        // Captured already (a processor that captures on approval, or an
        // earlier resume that died before its commit).
        Some(outcome) => outcome,
        None => {
            // The processor never saw the attempt: nothing waits, so the
            // checkout is simply ready again.
            tracing::warn!(checkout = %attempt.session.id, order = %attempt.order_id, "escalated attempt unknown to the processor");
            release(gw, &attempt, CheckoutStatus::ReadyForComplete, Vec::new(), None).await;
            return Err(look_again());
        }
    };
    settle(gw, ctx, attempt, outcome).await
}

/// Step 5's outcome: commit a success, release the lock on anything else.
async fn settle(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    attempt: Attempt,
    outcome: ChargeOutcome,
) -> Result<Completion> {
    match outcome {
        ChargeOutcome::Succeeded { reference } => commit(gw, ctx, attempt, reference).await,
        ChargeOutcome::Declined { reason } => {
            let content = format!("the payment was declined ({reason})");
            let msg = Message {
                severity: Some(Severity::RequiresBuyerInput),
                path: Some("$.payment".to_owned()),
                ..message(MessageType::Error, ErrorCode::PaymentDeclined.as_str(), &content, None)
            };
            release(gw, &attempt, CheckoutStatus::ReadyForComplete, vec![msg], None).await;
            Err(Error::new(ErrorCode::PaymentDeclined, content))
        }
        ChargeOutcome::RequiresAction { reference, continue_url } => {
            tracing::info!(checkout = %attempt.session.id, charge = %reference, "payment requires the buyer's action");
            let content = format!(
                "the buyer must approve the payment at {continue_url}, then complete again"
            );
            let msg = Message {
                severity: Some(Severity::RequiresBuyerReview),
                path: Some("$.payment".to_owned()),
                ..message(
                    MessageType::Error,
                    ErrorCode::PaymentRequiresAction.as_str(),
                    &content,
                    None,
                )
            };
            let to = CheckoutStatus::RequiresEscalation;
            release(gw, &attempt, to, vec![msg], Some(continue_url)).await;
            Err(Error::new(ErrorCode::PaymentRequiresAction, content))
        }
    }
}

/// Step 6: the atomic commit, and step 7: the answer.
async fn commit(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    attempt: Attempt,
    reference: String,
) -> Result<Completion> {
    let (commit, completion) = match build_commit(gw, ctx, &attempt, &reference) {
        Ok(built) => built,
        // Money moved and no order can be written: give it back.
        Err(e) => return refund_and_release(gw, attempt, reference, e).await,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match gw.store.commit_checkout(&commit).await {
            Ok(()) => {
                tracing::info!(checkout = %completion.session.id, order = %completion.order.id, total = %completion.order.totals.total, "checkout completed");
                return Ok(completion);
            }
            Err(e) if matches!(e.code(), ErrorCode::VersionConflict | ErrorCode::AlreadyExists) => {
                return lost_lock(gw, attempt, reference).await
            }
            Err(e) if e.retryable() && tries < COMMIT_ATTEMPTS => {
                tokio::time::sleep(std::time::Duration::from_millis(50 << tries)).await;
            }
            // The outcome of a failing store is unknown: the session stays
            // in progress and recovery settles it once the lease ends.
            Err(e) if e.retryable() => return Err(e),
            Err(e) => return refund_and_release(gw, attempt, reference, e).await,
        }
    }
}

/// Everything the commit writes, and the completion it answers with.
fn build_commit(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    attempt: &Attempt,
    reference: &str,
) -> Result<(CheckoutCommit, Completion)> {
    let now = gw.now();
    let session = &attempt.session;
    let actor = ctx.caller.subject.clone().unwrap_or_else(|| "anonymous".to_owned());
    let total = attempt.total();
    let ledger = gw.settings.fees.fee_entry(
        format!("fee_{}", attempt.order_id),
        attempt.order_id.clone(),
        total,
        now,
    )?;
    let lines = order_lines(session)?;
    let mut order = Order::new(
        attempt.order_id.clone(),
        session.id.clone(),
        OrderStatus::Created,
        // An anonymous session's order belongs to whoever paid for it.
        session.owner.clone().or_else(|| ctx.caller.subject.clone()),
        session.buyer.email.clone(),
        lines,
        session.totals,
        ledger.fee,
        PaymentRecord {
            processor: gw.payments.name().to_owned(),
            reference: reference.to_owned(),
            amount: total,
        },
        now,
    );
    order.delivery = Some(delivery_of(gw, session));
    order.webhook = ctx.request.order_webhook.clone();
    let created = order.created_event(&actor, &ctx.trace_id);
    let paid =
        order.transition(OrderStatus::Paid, &actor, "payment captured", &ctx.trace_id, now)?;
    let events = vec![created, paid];
    // Written with the order: the platform hears of it and the buyer gets
    // a confirmation even if this process dies right after the commit.
    let mut outbox = Vec::new();
    outbox.extend(gw.webhook_message(&order, &events, now)?);
    outbox.extend(gw.confirmation_message(&order, now)?);
    let completed = session.clone().transition(CheckoutStatus::Completed, now)?;
    let completion = build_completion(gw, completed, order, &attempt.mandates, &ctx.trace_id)?;
    let idempotency = match &ctx.request.render {
        Some(render) if !ctx.request.idempotency_key.is_empty() => match render(&completion) {
            Ok(response) => Some((ctx.request.idempotency_key.clone(), response)),
            Err(e) => {
                // The order matters more than its replay record.
                tracing::error!(error = %e, "could not render the idempotent response; committing without it");
                None
            }
        },
        _ => None,
    };
    let mut stock: BTreeMap<Sku, u32> = BTreeMap::new();
    for line in &session.line_items {
        let units = stock.entry(line.sku.clone()).or_default();
        // Saturating: an absurd sum cannot be in stock, so the conditional
        // decrement refuses it.
        *units = units.saturating_add(line.quantity);
    }
    let commit = CheckoutCommit {
        session: completion.session.clone(),
        expected_version: attempt.version,
        order: completion.order.clone(),
        events,
        stock: stock.into_iter().collect(),
        ledger,
        mandates: attempt.mandates.clone(),
        idempotency,
        outbox,
    };
    Ok((commit, completion))
}

/// The order's lines: the session's, as they were priced at completion.
pub(super) fn order_lines(session: &CheckoutSession) -> Result<Vec<OrderLine>> {
    session
        .line_items
        .iter()
        .map(|l| {
            Ok(OrderLine {
                variant_id: l.variant_id.clone(),
                sku: l.sku.clone(),
                title: l.title.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                line_total: l.line_total()?,
            })
        })
        .collect()
}

/// How the order reaches the buyer, from the session's fulfillment choice.
pub(super) fn delivery_of(gw: &Gateway, session: &CheckoutSession) -> Delivery {
    use crate::ucp::pricing::MethodKind;
    if !session.requires_fulfillment() {
        return Delivery { method: DeliveryMethod::Digital, destination: None, description: None };
    }
    let method = match super::checkout::method_of(session, gw.pickup_location()) {
        Some(MethodKind::Pickup) => DeliveryMethod::Pickup,
        _ => DeliveryMethod::Shipping,
    };
    Delivery {
        method,
        destination: session.fulfillment.address.clone(),
        description: session.fulfillment.option_title.clone(),
    }
}

/// The commit found the session changed since the lock: find out whether
/// this attempt's order landed anyway.
async fn lost_lock(gw: &Gateway, attempt: Attempt, reference: String) -> Result<Completion> {
    let current = gw.store.get_checkout(&attempt.session.id).await?;
    match current {
        Some(v) if v.value.order_id.as_ref() == Some(&attempt.order_id) => {
            if v.value.status() == CheckoutStatus::Completed {
                // An earlier try of this commit did land.
                return completion_of(gw, v.value).await;
            }
            Err(Error::new(
                ErrorCode::IdempotencyInProgress,
                "this checkout is being completed by another request; retry shortly",
            ))
        }
        _ => {
            // The session no longer refers to this attempt (its lease ran
            // out and recovery rolled it back), so nothing can make this
            // charge an order: refund it.
            let refund =
                refund(gw, &attempt, &reference, "the checkout changed during payment").await;
            tracing::error!(checkout = %attempt.session.id, order = %attempt.order_id, charge = %reference, refund = ?refund, "a charge outlived its attempt and was refunded");
            Err(Error::new(
                ErrorCode::VersionConflict,
                "the checkout changed while it was being paid; the payment was refunded",
            ))
        }
    }
}

/// The commit failed for good after a successful charge: fence the charge
/// off from any commit, then refund it (module docs).
async fn refund_and_release(
    gw: &Gateway,
    attempt: Attempt,
    reference: String,
    cause: Error,
) -> Result<Completion> {
    tracing::warn!(checkout = %attempt.session.id, charge = %reference, cause = %cause, "commit failed after the charge; refunding");
    let mut fenced = attempt.session.clone();
    fenced.messages = vec![
        cause_message(&cause),
        message(
            MessageType::Info,
            REFUND_PENDING,
            &format!("the payment {reference} is being refunded"),
            None,
        ),
    ];
    fenced.updated_at = gw.now();
    match gw.store.update_checkout(&fenced, attempt.version).await {
        Ok(version) => {
            let attempt = Attempt { session: fenced, version, ..attempt };
            finish_refund(gw, attempt, reference, cause).await
        }
        Err(e) if e.code() == ErrorCode::VersionConflict => lost_lock(gw, attempt, reference).await,
        // Unfenced but still locked: recovery commits again, fails again
        // and refunds then.
        Err(_) => Err(cause),
    }
}

/// Refunds a fenced charge and releases the session with the record of it.
async fn finish_refund(
    gw: &Gateway,
    attempt: Attempt,
    reference: String,
    cause: Error,
) -> Result<Completion> {
    let refunded = match refund(gw, &attempt, &reference, cause.code().as_str()).await {
        Ok(r) => r,
        Err(e) => {
            // The fence stays, so the debt is visible and recovery retries
            // the refund under the same key.
            tracing::error!(checkout = %attempt.session.id, charge = %reference, error = %e, "refund failed; left pending");
            return Err(Error::new(
                cause.code(),
                format!("{}; the payment will be refunded", cause.message()),
            ));
        }
    };
    let record = message(
        MessageType::Info,
        PAYMENT_REFUNDED,
        &format!("the payment {reference} was refunded ({refunded})"),
        None,
    );
    release(
        gw,
        &attempt,
        CheckoutStatus::ReadyForComplete,
        vec![cause_message(&cause), record],
        None,
    )
    .await;
    Err(Error::new(cause.code(), format!("{}; the payment was refunded", cause.message())))
}

async fn refund(gw: &Gateway, attempt: &Attempt, reference: &str, reason: &str) -> Result<String> {
    gw.payments
        .refund(&RefundRequest {
            idempotency_key: attempt.refund_key(),
            charge_reference: reference.to_owned(),
            amount: attempt.total(),
            reason: reason.to_owned(),
        })
        .await
}

/// Releases the lock: the session leaves `complete_in_progress` for `to`
/// without its attempt, carrying `messages`. Escalation is the exception:
/// the attempt waits for the buyer, so the session keeps its order id and
/// the next completion captures that payment. A failure is only logged:
/// the session then stays locked and recovery settles it the same way.
async fn release(
    gw: &Gateway,
    attempt: &Attempt,
    to: CheckoutStatus,
    messages: Vec<Message>,
    continue_url: Option<String>,
) {
    let mut session = attempt.session.clone();
    if to != CheckoutStatus::RequiresEscalation {
        session.order_id = None;
    }
    session.messages = messages;
    session.continue_url = continue_url;
    let written = match session.transition(to, gw.now()) {
        Ok(s) => gw.store.update_checkout(&s, attempt.version).await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::warn!(checkout = %attempt.session.id, error = %e, "could not release the checkout; recovery will");
    }
}

/// The completion of a `completed` session, rebuilt from the stored order.
async fn completion_of(gw: &Gateway, session: CheckoutSession) -> Result<Completion> {
    let order_id = session.order_id.clone().ok_or_else(|| {
        Error::internal(format!("completed checkout {} has no order", session.id))
    })?;
    let order = gw
        .store
        .get_order(&order_id)
        .await?
        .ok_or_else(|| {
            Error::internal(format!("order {order_id} of a completed checkout is missing"))
        })?
        .value;
    let events = gw.store.order_events(&order_id).await?;
    let mandates = gw.store.order_mandates(&order_id).await?;
    let trace_id = events.first().map(|e| e.trace_id.clone()).unwrap_or_default();
    build_completion(gw, session, order, &mandates, &trace_id)
}

fn build_completion(
    gw: &Gateway,
    session: CheckoutSession,
    order: Order,
    mandates: &[String],
    trace_id: &str,
) -> Result<Completion> {
    let claims = ReceiptClaims {
        status: "Success".to_owned(),
        iss: gw.settings.public_base_url.clone(),
        iat: order.created_at.unix_timestamp(),
        jti: order.id.as_str().to_owned(),
        reference: receipt_reference(mandates, &order.checkout_id),
        order_id: Some(order.id.as_str().to_owned()),
        error: None,
        error_description: None,
        checkout_id: order.checkout_id.as_str().to_owned(),
        total: Amount::from(order.totals.total),
        trace_id: trace_id.to_owned(),
    };
    let receipt = jws::sign_compact(gw.keys.signer(), Some(RECEIPT_TYP), &claims)?;
    Ok(Completion { session, fee: order.fee, order, receipt, trace_id: trace_id.to_owned() })
}

impl Gateway {
    /// A signed checkout receipt for a completion that failed (status
    /// `Error`), for transports that answer a failure with one. The
    /// reference is the closed checkout mandate presented, when it parses,
    /// so the platform can tie the refusal to what it sent.
    pub fn error_receipt(
        &self,
        session: &CheckoutSession,
        mandates: Option<&Mandates>,
        error: &Error,
        trace_id: &str,
    ) -> Result<String> {
        let now = self.now();
        let presented = mandates.map(stored_mandates).unwrap_or_default();
        let claims = ReceiptClaims {
            status: "Error".to_owned(),
            iss: self.settings.public_base_url.clone(),
            iat: now.unix_timestamp(),
            jti: format!("{}:{}", session.id, now.unix_timestamp_nanos()),
            reference: receipt_reference(&presented, &session.id),
            order_id: None,
            error: Some(error.code().as_str().to_owned()),
            error_description: Some(error.message().to_owned()),
            checkout_id: session.id.as_str().to_owned(),
            total: Amount::from(session.totals.total),
            trace_id: trace_id.to_owned(),
        };
        jws::sign_compact(self.keys.signer(), Some(RECEIPT_TYP), &claims)
    }
}

/// Loads a session the caller may see; anyone else's reads as absent.
pub(super) async fn load_session(
    gw: &Gateway,
    caller: &Caller,
    id: &CheckoutId,
) -> Result<Versioned<CheckoutSession>> {
    match gw.store.get_checkout(id).await? {
        Some(v) if caller.may_access(&v.value.owner) => Ok(v),
        _ => Err(Error::not_found(format!("checkout {id} does not exist"))),
    }
}

/// The catalog's current price and the store's current stock of every
/// variant in the session. A variant the catalog no longer has is left out,
/// and the guardrail refuses its line.
pub(super) async fn catalog_view(
    gw: &Gateway,
    session: &CheckoutSession,
) -> Result<Vec<CatalogItem>> {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for line in &session.line_items {
        if !seen.insert(line.variant_id.clone()) {
            continue;
        }
        let Some((product, vid)) = gw.catalog.variant(&line.variant_id).await? else { continue };
        let Some(variant) = product.variant(&vid) else { continue };
        // The store's count is what the commit decrements; an uncounted SKU
        // has none to sell.
        // A backend with its own checkout (Shopify) counts its own stock,
        // as the catalog read it; its checkout has the final word.
        let available = match gw.external_checkout {
            Some(_) => variant.stock,
            None => gw.store.get_stock(&variant.sku).await?.unwrap_or(0),
        };
        items.push(CatalogItem {
            variant_id: variant.id.clone(),
            sku: variant.sku.clone(),
            unit_price: variant.price,
            available,
        });
    }
    Ok(items)
}

/// What this agent spent within the velocity window, from its orders
/// (canceled and refunded ones excluded). Only read when a velocity limit
/// is set. Anonymous callers share one budget: the orders without an owner.
///
/// It is a read, not a reservation: two completions of one agent racing
/// each other can both pass. The limit bounds an agent's rate of spending,
/// not a balance; the buyer's own bound is the intent's `max_amount`.
pub(super) async fn spent_in_window(
    gw: &Gateway,
    caller: &Caller,
    currency: Currency,
    now: OffsetDateTime,
) -> Result<Money> {
    let zero = Money::zero(currency);
    let Some(limit) = gw.settings.guardrail.velocity else { return Ok(zero) };
    let window = time::Duration::seconds(i64::try_from(limit.window_secs).unwrap_or(i64::MAX));
    let since = now.checked_sub(window).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let filter = OrderFilter {
        owner: caller.subject.clone(),
        limit: VELOCITY_SCAN_LIMIT,
        ..OrderFilter::default()
    };
    let orders = gw.store.list_orders(&filter).await?;
    // Newest first: stop at the first order before the window.
    let in_window: Vec<&Order> = orders.iter().take_while(|o| o.created_at >= since).collect();
    if in_window.len() >= VELOCITY_SCAN_LIMIT as usize {
        return Err(Error::new(
            ErrorCode::VelocityLimitExceeded,
            "too many orders in the spending window to count; try again later",
        ));
    }
    let mut spent = zero;
    for order in in_window {
        let counts = (caller.subject.is_some() || order.owner.is_none())
            && !matches!(order.status(), OrderStatus::Canceled | OrderStatus::Refunded)
            && order.totals.total.currency() == currency;
        if counts {
            spent = spent.checked_add(order.totals.total)?;
        }
    }
    Ok(spent)
}

/// Runs the guardrail and logs a refusal with its metric label.
pub(super) fn guardrail(gw: &Gateway, input: &GuardrailInput<'_>) -> Result<Repriced> {
    gw.settings.guardrail.check(input).map_err(|v| {
        tracing::info!(rule = v.metric_label, code = %v.code, "guardrail refused a checkout");
        Error::from(v)
    })
}

async fn verify_mandates(
    gw: &Gateway,
    session: &CheckoutSession,
    chain: &MandateChain,
    request: &CompleteRequest,
    now: OffsetDateTime,
) -> Result<VerifiedChain> {
    let user_keys = gw.agent_keys(request.agent_profile_url.as_ref()).await?;
    ap2::verify_chain(&ChainInput {
        intent_mandate: &chain.intent,
        cart_mandate: &chain.cart,
        payment_mandate: &chain.payment,
        merchant_keys: gw.keys.public_keys(),
        user_keys: &user_keys,
        checkout_id: &session.id,
        merchant: MerchantIdentity {
            base_url: Some(&gw.settings.public_base_url),
            name: Some(&gw.settings.merchant_name),
        },
        now,
        policy: VerifyPolicy::default(),
    })
}

/// The recovering request's mandates, if they are this checkout's chain as
/// of the lock instant; they are kept for audit only (the lock holder
/// already spent them), so anything less leaves them out.
///
/// v0.2 mandates are bound to the checkout as the agent read it, which the
/// lock rewrote (status, order), so they cannot be verified again here:
/// a recovered v0.2 completion is committed without them.
async fn recovered_mandates(gw: &Gateway, ctx: &Ctx<'_>, session: &CheckoutSession) -> Vec<String> {
    let m = match &ctx.request.mandates {
        Some(Mandates::V01(m)) => m,
        Some(Mandates::V02(_)) => {
            tracing::warn!(checkout = %session.id, "recovered order committed without its v0.2 mandates");
            return Vec::new();
        }
        None => return Vec::new(),
    };
    match verify_mandates(gw, session, m, ctx.request, session.updated_at).await {
        Ok(_) => vec![m.intent.clone(), m.cart.clone(), m.payment.clone()],
        Err(e) => {
            tracing::warn!(checkout = %session.id, error = %e, "recovered order committed without its mandates");
            Vec::new()
        }
    }
}

/// Mandates that verified, of either generation.
enum Verified {
    V01(Box<VerifiedChain>),
    V02(Box<VerifiedMandates>),
}

impl Verified {
    /// The processor token the mandates authorize: the v0.1 payment
    /// response token, or the v0.2 payment instrument id.
    fn payment_token(&self) -> &str {
        match self {
            Self::V01(c) => c.payment_token(),
            Self::V02(v) => &v.instrument.id,
        }
    }

    /// The cart the buyer signed, for the guardrail.
    fn claimed_cart(&self, session: &CheckoutSession) -> Result<ClaimedCart> {
        match self {
            Self::V01(c) => Ok(claimed_cart(c)),
            Self::V02(_) => Ok(ClaimedCart {
                lines: session
                    .line_items
                    .iter()
                    .map(|l| {
                        Ok(ClaimedLine {
                            sku: l.sku.clone(),
                            quantity: l.quantity,
                            line_total: l.line_total()?,
                        })
                    })
                    .collect::<Result<_>>()?,
                total: session.totals.total,
            }),
        }
    }

    async fn reserve(&self, reserver: &dyn ap2::MandateIdReserver) -> Result<()> {
        match self {
            Self::V01(c) => ap2::reserve_mandate_ids(c, reserver).await,
            Self::V02(v) => v02::reserve(v, reserver).await,
        }
    }
}

/// The tokens kept with the order, as presented.
fn stored_mandates(m: &Mandates) -> Vec<String> {
    match m {
        Mandates::V01(c) => vec![c.intent.clone(), c.cart.clone(), c.payment.clone()],
        Mandates::V02(m) => vec![m.checkout.clone(), m.payment.clone()],
    }
}

/// Step 2: which mandates a completion needs, and their verification.
///
/// A session created while the platform had negotiated the UCP AP2
/// extension is locked to it: only v0.2 mandates complete it, and a
/// completion without them (or with a v0.1 chain) is `mandate_required`,
/// whatever the settings say. Other sessions take either generation, or
/// none unless `require_mandates` is on.
async fn verify_request_mandates(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    session: &CheckoutSession,
    now: OffsetDateTime,
) -> Result<Option<Verified>> {
    let locked = session.capabilities.iter().any(|c| c == AP2_MANDATE);
    match (&ctx.request.mandates, locked) {
        (Some(Mandates::V02(m)), _) => {
            let v = verify_v02(gw, ctx, session, m, now).await?;
            Ok(Some(Verified::V02(Box::new(v))))
        }
        (Some(Mandates::V01(_)) | None, true) => Err(Error::new(
            ErrorCode::MandateRequired,
            "this checkout is locked to the AP2 mandate extension \
             (dev.ucp.shopping.ap2_mandate): complete it with AP2 v0.2 checkout and payment \
             mandates (over UCP: ap2.checkout_mandate, and the payment mandate as the \
             instrument's credential token); there is no v0.1 or unprotected fallback",
        )),
        (Some(Mandates::V01(c)), false) => verify_mandates(gw, session, c, ctx.request, now)
            .await
            .map(|c| Some(Verified::V01(Box::new(c)))),
        (None, false) if gw.settings.require_mandates => Err(Error::new(
            ErrorCode::MandateRequired,
            "this merchant completes checkouts only with AP2 mandates (a v0.1 intent, cart \
             and payment chain, or v0.2 checkout and payment mandates)",
        )),
        (None, false) => Ok(None),
    }
}

async fn verify_v02(
    gw: &Gateway,
    ctx: &Ctx<'_>,
    session: &CheckoutSession,
    m: &MandatesV02,
    now: OffsetDateTime,
) -> Result<VerifiedMandates> {
    let agent_keys = gw.agent_keys(ctx.request.agent_profile_url.as_ref()).await?;
    let signed = gw.signed_checkout(session)?;
    let merchant = gw.ap2_merchant();
    let verified = v02::verify_mandates(&v02::MandateInput {
        checkout_mandate: &m.checkout,
        payment_mandate: &m.payment,
        agent_keys: &agent_keys,
        audience: &gw.settings.public_base_url,
        view: v02::CheckoutView {
            authorization: &signed.authorization,
            checkout: &signed.checkout,
            merchant: &merchant,
            merchant_keys: gw.keys.public_keys(),
            total: session.totals.total,
        },
        now,
        policy: ChainPolicy::default(),
    })?;
    if verified.recurring {
        for limit in &verified.budgets {
            let spent =
                spent_under_mandate(gw, ctx.caller, &limit.open_mandate, limit.max.currency())
                    .await?;
            v02::check_budget(limit, spent, verified.amount)?;
        }
    }
    Ok(verified)
}

/// What this caller already paid under a recurring open payment mandate,
/// from its orders' stored payment mandates. Like [`spent_in_window`] it
/// is a read, not a reservation: two uses racing each other can both pass
/// the budget, though never the per-period and per-use reservations.
async fn spent_under_mandate(
    gw: &Gateway,
    caller: &Caller,
    open_mandate: &str,
    currency: Currency,
) -> Result<Money> {
    let filter = OrderFilter {
        owner: caller.subject.clone(),
        limit: VELOCITY_SCAN_LIMIT,
        ..OrderFilter::default()
    };
    let orders = gw.store.list_orders(&filter).await?;
    if orders.len() >= VELOCITY_SCAN_LIMIT as usize {
        return Err(Error::new(
            ErrorCode::VelocityLimitExceeded,
            "too many orders to count what this mandate already spent",
        ));
    }
    let mut spent = Money::zero(currency);
    for order in &orders {
        if matches!(order.status(), OrderStatus::Canceled | OrderStatus::Refunded)
            || order.totals.total.currency() != currency
        {
            continue;
        }
        let stored = gw.store.order_mandates(&order.id).await?;
        let under = match stored.as_slice() {
            [_, payment] => sdjwt::parse(payment)
                .map(|p| p.segments.iter().any(|s| sdjwt::hash(s.jwt) == open_mandate))
                .unwrap_or(false),
            _ => false,
        };
        if under {
            spent = spent.checked_add(order.totals.total)?;
        }
    }
    Ok(spent)
}

/// The receipt's `reference`: the hash of the closed mandate the order was
/// paid under (the v0.2 closed checkout mandate's JWT, as the AP2 SDK
/// computes it; the v0.1 payment mandate), or the checkout id without one.
fn receipt_reference(mandates: &[String], checkout_id: &CheckoutId) -> String {
    match mandates {
        [checkout, _] => sdjwt::parse(checkout)
            .map(|p| sdjwt::hash(p.closed_jwt()))
            .unwrap_or_else(|_| checkout_id.as_str().to_owned()),
        [.., payment] => ap2::mandates::token_hash(payment),
        [] => checkout_id.as_str().to_owned(),
    }
}

fn claimed_cart(chain: &VerifiedChain) -> ClaimedCart {
    ClaimedCart {
        lines: chain
            .line_items()
            .iter()
            .map(|l| ClaimedLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                line_total: l.line_total,
            })
            .collect(),
        total: chain.total(),
    }
}

fn payment_amount(chain: &VerifiedChain) -> Result<Money> {
    chain.payment().payment_mandate_contents.payment_details_total.to_money()
}

/// How long a `complete_in_progress` session belongs to the request that
/// locked it: twice the request timeout, after which that request is gone.
fn lease(gw: &Gateway) -> time::Duration {
    let secs = gw.settings.request_timeout.as_secs().saturating_mul(2);
    time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn message(kind: MessageType, code: &str, content: &str, path: Option<&str>) -> Message {
    Message {
        kind,
        code: code.to_owned(),
        content: content.to_owned(),
        severity: (kind == MessageType::Error).then_some(Severity::Recoverable),
        path: path.map(str::to_owned),
    }
}

/// The buyer-facing message for the failure that forced a refund.
fn cause_message(cause: &Error) -> Message {
    Message {
        severity: Some(Severity::RequiresBuyerInput),
        ..message(MessageType::Error, cause.code().as_str(), cause.message(), None)
    }
}

/// The failure recorded next to a `refund_pending` fence.
fn cause_of(session: &CheckoutSession) -> Error {
    session
        .messages
        .iter()
        .filter(|m| m.kind == MessageType::Error)
        .find_map(|m| {
            let code = ErrorCode::ALL.iter().find(|c| c.as_str() == m.code)?;
            Some(Error::new(*code, m.content.clone()))
        })
        .unwrap_or_else(|| {
            Error::new(ErrorCode::PaymentFailed, "the checkout could not be completed")
        })
}

fn look_again() -> Error {
    Error::new(ErrorCode::VersionConflict, "the checkout changed; look again")
}

fn changed_concurrently() -> Error {
    Error::new(
        ErrorCode::VersionConflict,
        "the checkout was changed by another request while completing; read it and retry",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_attempt_and_derived_from_the_checkout() {
        let chk = CheckoutId::from_uuid(uuid::Uuid::from_u128(1));
        let session = CheckoutSession::new(
            chk.clone(),
            Currency::usd(),
            Vec::new(),
            None,
            OffsetDateTime::UNIX_EPOCH,
            time::Duration::hours(1),
        )
        .unwrap();
        let attempt = |n: u128| Attempt {
            session: session.clone(),
            version: 1,
            order_id: OrderId::from_uuid(uuid::Uuid::from_u128(n)),
            mandates: Vec::new(),
        };
        let (a, b) = (attempt(10), attempt(11));
        assert!(a.charge_key().starts_with(&format!("{chk}:charge:")));
        assert!(a.refund_key().starts_with(&format!("{chk}:refund:")));
        assert_eq!(a.charge_key(), attempt(10).charge_key(), "deterministic");
        assert_ne!(a.charge_key(), b.charge_key(), "a new attempt is a new charge");
        assert_ne!(a.charge_key(), a.refund_key());
    }

    #[test]
    fn the_cause_of_a_fence_is_read_back_from_its_message() {
        let cases: &[(&[(&str, MessageType)], ErrorCode)] = &[
            (
                &[("insufficient_stock", MessageType::Error), (REFUND_PENDING, MessageType::Info)],
                ErrorCode::InsufficientStock,
            ),
            (&[(REFUND_PENDING, MessageType::Info)], ErrorCode::PaymentFailed),
            (&[("not_a_code", MessageType::Error)], ErrorCode::PaymentFailed),
        ];
        for (messages, want) in cases {
            let mut session = CheckoutSession::new(
                CheckoutId::from_uuid(uuid::Uuid::from_u128(1)),
                Currency::usd(),
                Vec::new(),
                None,
                OffsetDateTime::UNIX_EPOCH,
                time::Duration::hours(1),
            )
            .unwrap();
            session.messages = messages.iter().map(|(c, k)| message(*k, c, "x", None)).collect();
            assert_eq!(cause_of(&session).code(), *want, "{messages:?}");
        }
    }

    #[test]
    fn debug_output_hides_tokens() {
        let request = CompleteRequest {
            mandates: Some(
                MandateChain {
                    intent: "i".into(),
                    cart: "c".into(),
                    payment: "secret-payment-mandate".into(),
                }
                .into(),
            ),
            payment_token: Some("tok_secret".into()),
            ..CompleteRequest::default()
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
