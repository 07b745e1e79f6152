//! The checkout completion pipeline end to end: the real SQLite store and
//! embedded catalog from `bootstrap`, the sandbox processor, agent keys
//! served as a UCP platform profile by a local HTTP server, and a manual
//! clock. Wrappers around the store and the processor inject the failures a
//! real deployment meets (a crash between charge and commit, a commit that
//! fails for good, a refund that fails once), so every "never" of the
//! pipeline is checked against the money actually moved.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentgate::adapters::payments::sandbox::SandboxCall;
use agentgate::adapters::profile_fetcher::HttpProfileFetcher;
use agentgate::ap2::mandates::{token_hash, CartClaims, PaymentClaims};
use agentgate::ap2::{self, IntentClaims, PrivateKey};
use agentgate::bootstrap::{self, App};
use agentgate::domain::checkout::{FulfillmentSelection, PaymentSelection, PostalAddress};
use agentgate::domain::{
    Cart, CartId, CheckoutId, CheckoutSession, CheckoutStatus, Currency, Error, ErrorCode,
    LedgerEntry, LineItem, Money, Order, OrderEvent, OrderEventKind, OrderId, OrderStatus, Result,
    Sku, Totals, VariantId,
};
use agentgate::gateway::{
    Caller, CompleteRequest, Completion, Gateway, MandateChain, ReceiptClaims, RECEIPT_TYP,
};
use agentgate::policy::VelocityLimit;
use agentgate::ports::{
    CaptureRequest, ChargeOutcome, ChargeRequest, CheckoutCommit, Clock, IdempotencyBegin,
    IdempotencyRecord, IdempotencyState, OrderFilter, OutboxEntry, OutboxFilter, OutboxLease,
    OutboxMessage, OutboxResult, PaymentStatus, Payments, RefundRequest, Store, StoredResponse,
    Versioned,
};
use agentgate::settings::{RawSettings, Settings};
use async_trait::async_trait;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ------------------------------------------------------------- fixture

/// A clock the test moves by hand (to run out a completion's lease).
struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// The store, with `commit_checkout` failing on demand.
struct FlakyStore {
    inner: Arc<dyn Store>,
    /// The next this-many commits fail with this code, writing nothing.
    commit_failures: Mutex<Option<(ErrorCode, usize)>>,
}

impl FlakyStore {
    fn fail_commits(&self, code: ErrorCode, times: usize) {
        *self.commit_failures.lock().unwrap() = Some((code, times));
    }

    fn heal(&self) {
        *self.commit_failures.lock().unwrap() = None;
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        self.inner.insert_cart(cart).await
    }
    async fn get_cart(&self, id: &CartId) -> Result<Option<Versioned<Cart>>> {
        self.inner.get_cart(id).await
    }
    async fn update_cart(&self, cart: &Cart, expected: u64) -> Result<u64> {
        self.inner.update_cart(cart, expected).await
    }
    async fn insert_checkout(&self, session: &CheckoutSession) -> Result<()> {
        self.inner.insert_checkout(session).await
    }
    async fn get_checkout(&self, id: &CheckoutId) -> Result<Option<Versioned<CheckoutSession>>> {
        self.inner.get_checkout(id).await
    }
    async fn update_checkout(&self, session: &CheckoutSession, expected: u64) -> Result<u64> {
        self.inner.update_checkout(session, expected).await
    }
    async fn get_order(&self, id: &OrderId) -> Result<Option<Versioned<Order>>> {
        self.inner.get_order(id).await
    }
    async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>> {
        self.inner.list_orders(filter).await
    }
    async fn order_events(&self, id: &OrderId) -> Result<Vec<OrderEvent>> {
        self.inner.order_events(id).await
    }
    async fn order_mandates(&self, id: &OrderId) -> Result<Vec<String>> {
        self.inner.order_mandates(id).await
    }
    async fn update_order(
        &self,
        order: &Order,
        expected: u64,
        events: &[OrderEvent],
        outbox: &[OutboxMessage],
    ) -> Result<u64> {
        self.inner.update_order(order, expected, events, outbox).await
    }
    async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &str,
        expires_at: OffsetDateTime,
    ) -> Result<IdempotencyBegin> {
        self.inner.idempotency_begin(key, fingerprint, expires_at).await
    }
    async fn idempotency_complete(&self, key: &str, response: &StoredResponse) -> Result<()> {
        self.inner.idempotency_complete(key, response).await
    }
    async fn idempotency_release(&self, key: &str) -> Result<()> {
        self.inner.idempotency_release(key).await
    }
    async fn idempotency_get(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.inner.idempotency_get(key).await
    }
    async fn reserve_mandate_id(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool> {
        self.inner.reserve_mandate_id(id, keep_until).await
    }
    async fn mark_webhook_seen(&self, source: &str, event_id: &str) -> Result<bool> {
        self.inner.mark_webhook_seen(source, event_id).await
    }
    async fn forget_webhook(&self, source: &str, event_id: &str) -> Result<()> {
        self.inner.forget_webhook(source, event_id).await
    }
    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxLease>> {
        self.inner.claim_outbox(now, lease, limit).await
    }
    async fn finish_outbox(&self, lease: &OutboxLease, result: &OutboxResult) -> Result<()> {
        self.inner.finish_outbox(lease, result).await
    }
    async fn outbox_entries(&self, filter: &OutboxFilter) -> Result<Vec<OutboxEntry>> {
        self.inner.outbox_entries(filter).await
    }
    async fn set_stock(&self, sku: &Sku, quantity: u32) -> Result<()> {
        self.inner.set_stock(sku, quantity).await
    }
    async fn get_stock(&self, sku: &Sku) -> Result<Option<u32>> {
        self.inner.get_stock(sku).await
    }
    async fn decrement_stock(&self, sku: &Sku, quantity: u32) -> Result<u32> {
        self.inner.decrement_stock(sku, quantity).await
    }
    async fn adjust_stock(&self, sku: &Sku, delta: i64) -> Result<u32> {
        self.inner.adjust_stock(sku, delta).await
    }
    async fn adjust_stock_audited(
        &self,
        sku: &Sku,
        record: &agentgate::ports::AuditRecord,
    ) -> Result<agentgate::ports::AuditedStock> {
        self.inner.adjust_stock_audited(sku, record).await
    }
    async fn audit_records(
        &self,
        filter: &agentgate::ports::AuditFilter,
    ) -> Result<Vec<agentgate::ports::AuditRecord>> {
        self.inner.audit_records(filter).await
    }
    async fn checkouts_needing_attention(
        &self,
        limit: u32,
    ) -> Result<Vec<agentgate::domain::CheckoutSession>> {
        self.inner.checkouts_needing_attention(limit).await
    }
    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<()> {
        self.inner.append_ledger(entry).await
    }
    async fn ledger_entries(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        currency: Option<Currency>,
    ) -> Result<Vec<LedgerEntry>> {
        self.inner.ledger_entries(from, to, currency).await
    }
    async fn commit_checkout(&self, commit: &CheckoutCommit) -> Result<()> {
        let injected = {
            let mut failures = self.commit_failures.lock().unwrap();
            match failures.as_mut() {
                Some((code, left)) if *left > 0 => {
                    *left -= 1;
                    Some(Error::new(*code, "injected commit failure"))
                }
                _ => None,
            }
        };
        match injected {
            Some(e) => Err(e),
            None => self.inner.commit_checkout(commit).await,
        }
    }
}

/// The sandbox processor, with refunds failing on demand.
struct FlakyPayments {
    inner: Arc<dyn Payments>,
    refund_failures: AtomicUsize,
    /// How long a charge's answer takes to come back after the processor
    /// moved the money (a slow network on the way back).
    answer_delay: Mutex<std::time::Duration>,
}

#[async_trait]
impl Payments for FlakyPayments {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome> {
        let outcome = self.inner.charge(request).await;
        let delay = *self.answer_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        outcome
    }
    async fn find_charge(&self, key: &str) -> Result<Option<ChargeOutcome>> {
        self.inner.find_charge(key).await
    }
    async fn capture(&self, request: &CaptureRequest) -> Result<ChargeOutcome> {
        self.inner.capture(request).await
    }
    async fn approve_action(&self, reference: &str) -> Result<()> {
        self.inner.approve_action(reference).await
    }
    async fn refund(&self, request: &RefundRequest) -> Result<String> {
        let fail = self
            .refund_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(Error::new(ErrorCode::UpstreamUnavailable, "injected refund failure"));
        }
        self.inner.refund(request).await
    }
    async fn status(&self, reference: &str) -> Result<PaymentStatus> {
        self.inner.status(reference).await
    }
}

/// A merchant: the app from `bootstrap`, and a gateway over the same parts
/// with the flaky wrappers in front of the store and the processor.
struct Shop {
    _dir: tempfile::TempDir,
    app: App,
    gateway: Arc<Gateway>,
    store: Arc<FlakyStore>,
    payments: Arc<FlakyPayments>,
    clock: Arc<ManualClock>,
}

async fn shop() -> Shop {
    shop_with(|_| {}).await
}

async fn shop_with(configure: impl FnOnce(&mut RawSettings)) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = RawSettings {
        data_dir: dir.path().to_owned(),
        public_base_url: Some("https://shop.example".into()),
        merchant_name: "Demo Shop".into(),
        // The agent profiles below are served from 127.0.0.1 over HTTP.
        allow_private_profile_hosts: true,
        ..RawSettings::default()
    };
    configure(&mut raw);
    let settings = Settings::from_raw(raw).unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
    let app = bootstrap::build_with_clock(settings.clone(), clock.clone()).await.unwrap();
    let store =
        Arc::new(FlakyStore { inner: app.store.clone(), commit_failures: Mutex::new(None) });
    let payments = Arc::new(FlakyPayments {
        inner: app.payments.clone(),
        refund_failures: AtomicUsize::new(0),
        answer_delay: Mutex::new(std::time::Duration::ZERO),
    });
    let gateway = Arc::new(Gateway::new(
        Arc::new(settings.clone()),
        app.keys.clone(),
        store.clone(),
        app.catalog.clone(),
        payments.clone(),
        Arc::new(HttpProfileFetcher::from_settings(&settings, clock.clone())),
        clock.clone(),
    ));
    Shop { _dir: dir, app, gateway, store, payments, clock }
}

const SHIRT: &str = "v-linen-camp-shirt-m"; // 58.00 USD
const TEE: &str = "v-organic-cotton-tee-black"; // 18.00 USD
const SHIPPING: i64 = 500;

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn alice() -> Caller {
    Caller::subject("alice")
}

impl Shop {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A session in `ready_for_complete`, built through the domain: lines
    /// priced from the catalog, a buyer, a shipping choice, and a payment
    /// instrument carrying `token`.
    async fn ready(&self, owner: &Caller, lines: &[(&str, u32)], token: &str) -> CheckoutSession {
        let mut items = Vec::new();
        for (n, (variant, quantity)) in lines.iter().enumerate() {
            let vid = VariantId::parse(variant).unwrap();
            let (product, vid) = self.app.gateway.catalog().variant(&vid).await.unwrap().unwrap();
            let v = product.variant(&vid).unwrap();
            items.push(LineItem {
                id: format!("li_{}", n + 1),
                variant_id: v.id.clone(),
                product_id: product.id.clone(),
                sku: v.sku.clone(),
                title: product.title.clone(),
                quantity: *quantity,
                unit_price: v.price,
                requires_shipping: v.requires_shipping,
            });
        }
        let mut session = CheckoutSession::new(
            CheckoutId::from_uuid(uuid::Uuid::now_v7()),
            Currency::usd(),
            items,
            owner.subject.clone(),
            self.now(),
            CheckoutSession::DEFAULT_TTL,
        )
        .unwrap();
        session.buyer.email = Some("buyer@example.com".into());
        session.fulfillment = FulfillmentSelection {
            address: Some(PostalAddress {
                street_address: "1 Main St".into(),
                address_locality: "Springfield".into(),
                postal_code: "12345".into(),
                address_country: "US".into(),
                ..PostalAddress::default()
            }),
            option_id: Some("standard".into()),
            option_title: Some("Standard shipping".into()),
            amount: Some(usd(SHIPPING)),
        };
        session.totals =
            Totals::compute(Currency::usd(), &session.line_items, usd(0), usd(SHIPPING), usd(0))
                .unwrap();
        session.payment = Some(PaymentSelection {
            handler_id: "sandbox".into(),
            instrument_type: "card".into(),
            token: Some(token.into()),
        });
        assert!(session.missing_for_completion().is_empty());
        let session = session.transition(CheckoutStatus::ReadyForComplete, self.now()).unwrap();
        self.app.store.insert_checkout(&session).await.unwrap();
        session
    }

    async fn set_stock(&self, sku: &str, units: u32) {
        self.app.store.set_stock(&Sku::parse(sku).unwrap(), units).await.unwrap();
    }

    async fn stock(&self, sku: &str) -> u32 {
        self.app.store.get_stock(&Sku::parse(sku).unwrap()).await.unwrap().unwrap()
    }

    async fn session(&self, id: &CheckoutId) -> CheckoutSession {
        self.app.store.get_checkout(id).await.unwrap().unwrap().value
    }

    /// Every order of a checkout, whoever owns it.
    async fn orders_of(&self, id: &CheckoutId) -> Vec<Order> {
        let all = OrderFilter { limit: 500, ..OrderFilter::default() };
        let orders = self.app.store.list_orders(&all).await.unwrap();
        orders.into_iter().filter(|o| &o.checkout_id == id).collect()
    }

    async fn ledger(&self) -> Vec<LedgerEntry> {
        let day = Duration::days(1);
        self.app.store.ledger_entries(self.now() - day, self.now() + day, None).await.unwrap()
    }

    fn refunds(&self) -> Vec<(String, Money)> {
        self.app
            .payments
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                SandboxCall::Refund { charge_reference, amount, replayed: false, .. } => {
                    Some((charge_reference, amount))
                }
                _ => None,
            })
            .collect()
    }

    async fn complete(&self, caller: &Caller, id: &CheckoutId) -> Result<Completion> {
        self.gateway.complete_checkout(caller, id, CompleteRequest::default()).await
    }
}

/// An agent platform: a user key, published as the `signing_keys` of a UCP
/// profile on a local server.
struct Agent {
    key: PrivateKey,
    profile: Url,
    _server: MockServer,
}

async fn agent() -> Agent {
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let server = MockServer::start().await;
    let profile = json!({
        "ucp": {"version": "2026-04-08", "capabilities": {}},
        "signing_keys": [key.public().to_jwk()],
    });
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(profile)
                .insert_header("Cache-Control", "public, max-age=300"),
        )
        .mount(&server)
        .await;
    let profile = Url::parse(&format!("{}/.well-known/ucp", server.uri())).unwrap();
    Agent { key, profile, _server: server }
}

impl Agent {
    fn intent(&self, max: i64, now: OffsetDateTime) -> String {
        IntentClaims::new(
            "https://agent.example",
            usd(max),
            "a linen shirt and two tees",
            now,
            Duration::hours(1),
            &mut rand_core::OsRng,
        )
        .sign(&self.key)
        .unwrap()
    }

    fn payment(&self, cart: &str, claims: &CartClaims, token: &str, now: OffsetDateTime) -> String {
        PaymentClaims::for_cart(
            cart,
            claims,
            token,
            "CARD",
            now,
            Duration::minutes(10),
            &mut rand_core::OsRng,
        )
        .unwrap()
        .sign(&self.key)
        .unwrap()
    }

    /// The whole AP2 flow for a ready checkout: intent, the merchant's cart
    /// mandate through `issue_cart_mandate`, then the payment mandate.
    async fn chain(&self, shop: &Shop, caller: &Caller, id: &CheckoutId, max: i64) -> MandateChain {
        let intent = self.intent(max, shop.now());
        let cart = shop
            .gateway
            .issue_cart_mandate(caller, id, &intent, Some(&self.profile))
            .await
            .unwrap();
        let payment = self.payment(&cart.token, &cart.claims, "success_token", shop.now());
        MandateChain { intent, cart: cart.token, payment }
    }

    fn request(&self, chain: MandateChain) -> CompleteRequest {
        CompleteRequest {
            mandates: Some(chain.into()),
            agent_profile_url: Some(self.profile.clone()),
            ..CompleteRequest::default()
        }
    }
}

/// Verifies a receipt with josekit against the merchant's published JWKS:
/// an implementation other than ours, from what an agent can fetch.
fn verify_receipt(receipt: &str, jwks: &Value) -> ReceiptClaims {
    let header = ap2::jws::decode_compact(receipt, Some(RECEIPT_TYP)).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header.kid())
        .expect("the receipt's kid is in the merchant JWKS");
    let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, header) = josekit::jws::deserialize_compact(receipt, &verifier).unwrap();
    assert_eq!(header.token_type(), Some(RECEIPT_TYP));
    serde_json::from_slice(&payload).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T>) -> ErrorCode {
    result.unwrap_err().code()
}

// --------------------------------------------------------------- tests

#[tokio::test]
async fn a_full_mandate_chain_completes_once_with_a_verifiable_receipt() {
    let shop = shop().await;
    let agent = agent().await;
    shop.set_stock("LINEN-CAMP-SHIRT-M", 3).await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 10).await;
    let session = shop.ready(&alice(), &[(SHIRT, 1), (TEE, 2)], "unused_token").await;
    let total = 5800 + 2 * 1800 + SHIPPING;

    let intent = agent.intent(20_000, shop.now());
    let cart = shop
        .gateway
        .issue_cart_mandate(&alice(), &session.id, &intent, Some(&agent.profile))
        .await
        .unwrap();
    assert_eq!(cart.total, usd(total));
    let items = &cart.claims.contents.payment_request.details.display_items;
    let labels: Vec<_> = items.iter().map(|i| (i.sku.clone(), i.amount.amount)).collect();
    assert_eq!(
        labels,
        vec![
            (Some("LINEN-CAMP-SHIRT-M".into()), 5800),
            (Some("ORGANIC-COTTON-TEE-BLACK".into()), 3600),
            (None, SHIPPING),
        ],
        "product lines at line totals, shipping as a line without a SKU"
    );
    assert!(cart.expires_at <= shop.now() + Duration::minutes(15));

    let payment = agent.payment(&cart.token, &cart.claims, "success_token", shop.now());
    let chain = MandateChain { intent, cart: cart.token, payment: payment.clone() };
    let request =
        CompleteRequest { trace_id: "trace-happy-1".into(), ..agent.request(chain.clone()) };
    let done = shop.gateway.complete_checkout(&alice(), &session.id, request).await.unwrap();

    // The order, paid, at catalog prices, with its events.
    assert_eq!(done.session.status(), CheckoutStatus::Completed);
    assert_eq!(done.session.order_id.as_ref(), Some(&done.order.id));
    assert_eq!(done.order.status(), OrderStatus::Paid);
    assert_eq!(done.order.totals.total, usd(total));
    assert_eq!(done.order.owner.as_deref(), Some("alice"));
    assert_eq!(done.order.payment.processor, "sandbox");
    let view = shop.gateway.get_order(&alice(), &done.order.id).await.unwrap();
    assert_eq!(view.order, done.order);
    let trail: Vec<_> = view
        .events
        .iter()
        .map(|e| match &e.kind {
            OrderEventKind::StatusChanged { from, to } => {
                (*from, *to, e.actor.as_str(), e.trace_id.as_str())
            }
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        trail,
        vec![
            (None, OrderStatus::Created, "alice", "trace-happy-1"),
            (Some(OrderStatus::Created), OrderStatus::Paid, "alice", "trace-happy-1"),
        ]
    );

    // Money: one charge of the total, a fee of 0.5 % in the ledger.
    assert_eq!(shop.app.payments.successful_charges(), 1);
    assert_eq!(shop.app.payments.charge_attempts(), 1);
    let ledger = shop.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].gross, ledger[0].fee), (usd(total), usd(50)), "0.5% of 99.00, half up");
    assert_eq!(done.fee, usd(50));

    // Stock, mandates, receipt.
    assert_eq!(shop.stock("LINEN-CAMP-SHIRT-M").await, 2);
    assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 8);
    let kept = shop.app.store.order_mandates(&done.order.id).await.unwrap();
    assert_eq!(kept, vec![chain.intent.clone(), chain.cart.clone(), chain.payment.clone()]);
    let receipt = verify_receipt(&done.receipt, &shop.app.keys.jwks(shop.now()));
    assert_eq!(receipt.status, "Success");
    assert_eq!(receipt.iss, "https://shop.example");
    assert_eq!(receipt.order_id.as_deref(), Some(done.order.id.as_str()));
    assert_eq!(receipt.checkout_id, session.id.as_str());
    assert_eq!((receipt.total.amount, receipt.total.currency.as_str()), (total, "USD"));
    assert_eq!(receipt.reference, token_hash(&payment), "bound to the payment mandate");
    assert_eq!(receipt.trace_id, "trace-happy-1");
    assert!(!done.receipt.contains("fee"), "the fee is not the agent's business");

    // Completing again answers the same completion and moves no money.
    let again =
        shop.gateway.complete_checkout(&alice(), &session.id, agent.request(chain)).await.unwrap();
    assert_eq!(again.order.id, done.order.id);
    assert_eq!(again.receipt, done.receipt, "the receipt is rebuilt byte for byte");
    assert_eq!(shop.app.payments.calls().len(), 1);
}

#[tokio::test]
async fn agent_keys_come_from_the_profile_or_the_trusted_jwks_never_from_nowhere() {
    // A configured JWKS verifies without any profile.
    let agent = agent().await;
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks_file = jwks_dir.path().join("agents.jwks.json");
    let jwks = json!({"keys": [agent.key.public().to_jwk()]});
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let trusted = shop_with(|raw| raw.trusted_agent_jwks_file = Some(jwks_file.clone())).await;
    trusted.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = trusted.ready(&alice(), &[(TEE, 1)], "unused").await;
    let gw = &trusted.app.gateway; // built by bootstrap, which read the file
    let intent = agent.intent(10_000, trusted.now());
    let cart = gw.issue_cart_mandate(&alice(), &session.id, &intent, None).await.unwrap();
    let payment = agent.payment(&cart.token, &cart.claims, "success_token", trusted.now());
    let request = CompleteRequest {
        mandates: Some(MandateChain { intent, cart: cart.token, payment }.into()),
        ..CompleteRequest::default()
    };
    gw.complete_checkout(&alice(), &session.id, request).await.unwrap();

    // Without either, the agent has no key: refused before any payment.
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    let intent = agent.intent(10_000, shop.now());
    let err = shop.gateway.issue_cart_mandate(&alice(), &session.id, &intent, None).await;
    assert_eq!(code(err), ErrorCode::AgentMissingKey);
    let chain = MandateChain { intent, cart: "x.y.z".into(), payment: "x.y.z".into() };
    let request = CompleteRequest { mandates: Some(chain.into()), ..CompleteRequest::default() };
    let err = shop.gateway.complete_checkout(&alice(), &session.id, request).await;
    assert_eq!(code(err), ErrorCode::AgentMissingKey);
    assert!(shop.app.payments.calls().is_empty());

    // A bad trusted JWKS stops the process at startup.
    let bad = jwks_dir.path().join("bad.json");
    std::fs::write(&bad, "{\"keys\": []}").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = RawSettings {
        data_dir: dir.path().to_owned(),
        trusted_agent_jwks_file: Some(bad),
        ..RawSettings::default()
    };
    let settings = Settings::from_raw(raw).unwrap();
    assert!(bootstrap::build(settings).await.is_err());
}

/// What a refusal before payment leaves: no call to the processor, the
/// session still ready, no order, stock untouched.
async fn assert_refused_before_payment(shop: &Shop, id: &CheckoutId, name: &str) {
    assert!(shop.app.payments.calls().is_empty(), "{name}: the processor was called");
    assert_eq!(shop.session(id).await.status(), CheckoutStatus::ReadyForComplete, "{name}");
    assert!(shop.orders_of(id).await.is_empty(), "{name}");
    assert!(shop.ledger().await.is_empty(), "{name}");
}

#[tokio::test]
async fn bad_checkouts_are_refused_before_any_payment_call() {
    enum Case {
        /// The session claims a price the catalog does not have.
        HallucinatedPrice,
        OutOfStock,
        /// The signed cart totals more than the user's intent allows.
        OverIntent,
        Expired,
        NoToken,
    }
    let cases = [
        ("hallucinated price", Case::HallucinatedPrice, ErrorCode::PriceMismatch),
        ("out-of-stock line", Case::OutOfStock, ErrorCode::InsufficientStock),
        ("total over the intent", Case::OverIntent, ErrorCode::AmountExceedsIntent),
        ("expired session", Case::Expired, ErrorCode::SessionExpired),
        ("no payment token", Case::NoToken, ErrorCode::InvalidInput),
    ];
    for (name, case, want) in cases {
        let shop = shop().await;
        let agent = agent().await;
        shop.set_stock("LINEN-CAMP-SHIRT-M", 5).await;
        shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
        let token = if matches!(case, Case::NoToken) { "" } else { "success_token" };
        let mut session = shop.ready(&alice(), &[(SHIRT, 1), (TEE, 1)], token).await;
        let mut request = CompleteRequest::default();
        match case {
            Case::HallucinatedPrice => {
                let v = shop.app.store.get_checkout(&session.id).await.unwrap().unwrap();
                session.line_items[0].unit_price = usd(99);
                shop.app.store.update_checkout(&session, v.version).await.unwrap();
            }
            Case::OutOfStock => shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 0).await,
            Case::OverIntent => {
                // The merchant refuses to sign such a cart ...
                let intent = agent.intent(5000, shop.now());
                let err = shop
                    .gateway
                    .issue_cart_mandate(&alice(), &session.id, &intent, Some(&agent.profile))
                    .await;
                assert_eq!(code(err), ErrorCode::AmountExceedsIntent, "{name}: issue");
                // ... and one signed anyway (a merchant key, a cart the
                // verifier must still hold against the intent) is refused.
                let contents = {
                    let fine = agent.intent(50_000, shop.now());
                    let c = shop
                        .gateway
                        .issue_cart_mandate(&alice(), &session.id, &fine, Some(&agent.profile))
                        .await
                        .unwrap();
                    c.claims.contents
                };
                let (cart, claims) = ap2::sign_cart_mandate(
                    shop.app.keys.signer(),
                    ap2::CartMandateRequest {
                        merchant_base_url: "https://shop.example",
                        checkout_id: &session.id,
                        contents,
                        intent_mandate: &intent,
                        ttl: Duration::minutes(15),
                    },
                    shop.now(),
                    &mut rand_core::OsRng,
                )
                .unwrap();
                let payment = agent.payment(&cart, &claims, "success_token", shop.now());
                request = agent.request(MandateChain { intent, cart, payment });
            }
            Case::Expired => {
                shop.clock.advance(CheckoutSession::DEFAULT_TTL + Duration::seconds(1))
            }
            Case::NoToken => {}
        }
        let err = shop.gateway.complete_checkout(&alice(), &session.id, request).await;
        assert_eq!(code(err), want, "{name}");
        assert_refused_before_payment(&shop, &session.id, name).await;
    }
}

#[tokio::test]
async fn mandates_can_be_required() {
    let shop = shop_with(|raw| raw.require_mandates = true).await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    assert_eq!(code(shop.complete(&alice(), &session.id).await), ErrorCode::MandateRequired);
    assert_refused_before_payment(&shop, &session.id, "mandate required").await;
}

#[tokio::test]
async fn forged_mandates_are_refused_before_payment() {
    let shop = shop().await;
    let agent = agent().await;
    let stranger = PrivateKey::generate(&mut rand_core::OsRng);
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    let good = agent.chain(&shop, &alice(), &session.id, 10_000).await;
    let claims = CartClaims::peek_unverified(&good.cart).unwrap();

    // Swaps one byte of a token's payload, keeping its signature.
    let tamper = |token: &str| {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload = ap2::jws::b64url_decode(&parts[1]).unwrap();
        let at = payload.iter().position(|b| *b == b'0').unwrap();
        payload[at] = b'1';
        parts[1] = ap2::jws::b64url(&payload);
        parts.join(".")
    };
    let own_cart = {
        let mut c = claims.clone();
        c.contents.payment_request.details.total.amount.amount = 1;
        ap2::jws::sign_compact(&stranger, Some(ap2::MANDATE_TYP), &c).unwrap()
    };
    let by_stranger = PaymentClaims::for_cart(
        &good.cart,
        &claims,
        "success_token",
        "CARD",
        shop.now(),
        Duration::minutes(10),
        &mut rand_core::OsRng,
    )
    .unwrap()
    .sign(&stranger)
    .unwrap();
    let cases: Vec<(&str, MandateChain, ErrorCode)> = vec![
        (
            "intent signed by a key the profile does not publish",
            MandateChain {
                intent: IntentClaims::new(
                    "x",
                    usd(10_000),
                    "x",
                    shop.now(),
                    Duration::hours(1),
                    &mut rand_core::OsRng,
                )
                .sign(&stranger)
                .unwrap(),
                ..good.clone()
            },
            ErrorCode::UnknownKid,
        ),
        (
            "cart total edited",
            MandateChain { cart: tamper(&good.cart), ..good.clone() },
            ErrorCode::MandateInvalidSignature,
        ),
        (
            "cart signed by someone else",
            MandateChain { cart: own_cart, ..good.clone() },
            ErrorCode::UnknownKid,
        ),
        (
            "payment signed by someone else",
            MandateChain { payment: by_stranger, ..good.clone() },
            ErrorCode::MandateInvalidSignature,
        ),
        (
            "payment edited",
            MandateChain { payment: tamper(&good.payment), ..good.clone() },
            ErrorCode::MandateInvalidSignature,
        ),
    ];
    for (name, chain, want) in cases {
        let err = shop.gateway.complete_checkout(&alice(), &session.id, agent.request(chain)).await;
        assert_eq!(code(err), want, "{name}");
        assert_refused_before_payment(&shop, &session.id, name).await;
    }
    // The genuine chain still works: refusals spent nothing.
    shop.gateway.complete_checkout(&alice(), &session.id, agent.request(good)).await.unwrap();
}

#[tokio::test]
async fn a_chain_pays_for_one_checkout_only() {
    let shop = shop().await;
    let agent = agent().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let first = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    let second = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    let chain = agent.chain(&shop, &alice(), &first.id, 10_000).await;
    shop.gateway
        .complete_checkout(&alice(), &first.id, agent.request(chain.clone()))
        .await
        .unwrap();

    // The same chain on another checkout is bound to the first.
    let err =
        shop.gateway.complete_checkout(&alice(), &second.id, agent.request(chain.clone())).await;
    assert_eq!(code(err), ErrorCode::MandateScopeMismatch);

    // The same intent with a fresh cart and payment mandate is a replay.
    let cart = shop
        .gateway
        .issue_cart_mandate(&alice(), &second.id, &chain.intent, Some(&agent.profile))
        .await
        .unwrap();
    let payment = agent.payment(&cart.token, &cart.claims, "success_token", shop.now());
    let replay = MandateChain { intent: chain.intent.clone(), cart: cart.token, payment };
    let err = shop.gateway.complete_checkout(&alice(), &second.id, agent.request(replay)).await;
    assert_eq!(code(err), ErrorCode::MandateReplayed);
    assert_eq!(shop.app.payments.charge_attempts(), 1, "the replay reached no processor");
    let after = shop.session(&second.id).await;
    assert_eq!(after.status(), CheckoutStatus::ReadyForComplete);
    assert!(after.order_id.is_none());
    assert_eq!(after.messages[0].code, "mandate_replayed");
    assert!(shop.orders_of(&second.id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_completions_make_one_order_and_one_charge() {
    for with_mandates in [false, true] {
        let shop = shop().await;
        let agent = agent().await;
        shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 100).await;
        let session = shop.ready(&alice(), &[(TEE, 2)], "success_token").await;
        let request = if with_mandates {
            agent.request(agent.chain(&shop, &alice(), &session.id, 10_000).await)
        } else {
            CompleteRequest::default()
        };
        let request = CompleteRequest { idempotency_key: "same-key".into(), ..request };
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (gw, barrier, request) =
                    (shop.gateway.clone(), barrier.clone(), request.clone());
                let id = session.id.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    gw.complete_checkout(&alice(), &id, request).await
                })
            })
            .collect();
        let mut orders = HashSet::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(done) => {
                    orders.insert(done.order.id);
                }
                Err(e) => assert!(e.retryable(), "mandates {with_mandates}: not retryable: {e}"),
            }
        }
        let last = shop.complete(&alice(), &session.id).await.unwrap();
        orders.insert(last.order.id.clone());
        assert_eq!(orders.len(), 1, "mandates {with_mandates}: every caller saw one order");
        assert_eq!(shop.orders_of(&session.id).await.len(), 1);
        assert_eq!(shop.app.payments.successful_charges(), 1);
        assert_eq!(shop.app.payments.charge_attempts(), 1);
        assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 98);
        assert_eq!(shop.ledger().await.len(), 1);
    }
}

#[tokio::test]
async fn a_crash_between_charge_and_commit_recovers_without_a_second_charge() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;

    // The store fails every commit: the charge went through, the order did
    // not, and the outcome of the commit is unknown to the pipeline.
    shop.store.fail_commits(ErrorCode::StoreUnavailable, usize::MAX);
    assert_eq!(code(shop.complete(&alice(), &session.id).await), ErrorCode::StoreUnavailable);
    let stuck = shop.session(&session.id).await;
    assert_eq!(stuck.status(), CheckoutStatus::CompleteInProgress);
    assert_eq!(shop.app.payments.successful_charges(), 1);
    shop.store.heal();

    // Within the lease the first request may still be running.
    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyInProgress);
    assert!(err.retryable() && err.retry_after().is_some());

    // After it, recovery finds the charge and finishes the commit.
    shop.clock.advance(Duration::seconds(61));
    let done = shop.complete(&alice(), &session.id).await.unwrap();
    assert_eq!(done.session.order_id.as_ref(), stuck.order_id.as_ref(), "the attempt's own order");
    assert_eq!(shop.app.payments.successful_charges(), 1);
    assert_eq!(shop.app.payments.charge_attempts(), 1);
    assert!(shop.refunds().is_empty());
    assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 4);
    assert_eq!(shop.orders_of(&session.id).await.len(), 1);
}

#[tokio::test]
async fn a_crash_before_the_charge_rolls_back_and_completes_fresh() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    // A lock taken by a request that died before calling the processor.
    let v = shop.app.store.get_checkout(&session.id).await.unwrap().unwrap();
    let mut locked = v.value.transition(CheckoutStatus::CompleteInProgress, shop.now()).unwrap();
    let dead_attempt = OrderId::from_uuid(uuid::Uuid::now_v7());
    locked.order_id = Some(dead_attempt.clone());
    shop.app.store.update_checkout(&locked, v.version).await.unwrap();

    shop.clock.advance(Duration::seconds(61));
    let done = shop.complete(&alice(), &session.id).await.unwrap();
    assert_ne!(done.order.id, dead_attempt, "a new attempt, with a new charge key");
    assert_eq!(shop.app.payments.successful_charges(), 1);
    assert_eq!(shop.app.payments.charge_attempts(), 1);
}

#[tokio::test]
async fn a_commit_that_fails_for_good_refunds_the_charge_and_records_it() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 3)], "success_token").await;
    shop.store.fail_commits(ErrorCode::InsufficientStock, 1);

    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientStock);
    assert!(err.message().contains("refunded"), "{}", err.message());

    let charged = shop.app.payments.successful_charges();
    let refunds = shop.refunds();
    assert_eq!((charged, refunds.len()), (1, 1));
    assert_eq!(refunds[0].1, usd(3 * 1800 + SHIPPING), "the whole charge went back");
    let after = shop.session(&session.id).await;
    assert_eq!(after.status(), CheckoutStatus::ReadyForComplete);
    assert!(after.order_id.is_none());
    let record = after.messages.iter().find(|m| m.code == "payment_refunded").unwrap();
    assert!(record.content.contains(&refunds[0].0), "the record names the charge");
    assert!(after.messages.iter().any(|m| m.code == "insufficient_stock"));
    assert!(shop.orders_of(&session.id).await.is_empty());
    assert!(shop.ledger().await.is_empty());
    assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 5);

    // The buyer can try again: a new attempt, a new charge, one order.
    shop.complete(&alice(), &session.id).await.unwrap();
    assert_eq!(shop.orders_of(&session.id).await.len(), 1);
    assert_eq!(shop.app.payments.successful_charges(), 2);
    assert_eq!(shop.refunds().len(), 1);
}

#[tokio::test]
async fn a_refund_that_fails_stays_owed_until_recovery_pays_it() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    shop.store.fail_commits(ErrorCode::InsufficientStock, 1);
    shop.payments.refund_failures.store(1, Ordering::SeqCst);

    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientStock);
    assert!(shop.refunds().is_empty());
    let owed = shop.session(&session.id).await;
    assert_eq!(owed.status(), CheckoutStatus::CompleteInProgress, "fenced: no order can take it");
    assert!(owed.messages.iter().any(|m| m.code == "refund_pending"));

    shop.clock.advance(Duration::seconds(61));
    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientStock, "recovery reports the original failure");
    assert_eq!(shop.refunds().len(), 1);
    assert_eq!(shop.app.payments.charge_attempts(), 1, "recovery never charges");
    let after = shop.session(&session.id).await;
    assert_eq!(after.status(), CheckoutStatus::ReadyForComplete);
    assert!(after.messages.iter().any(|m| m.code == "payment_refunded"));
    assert!(shop.orders_of(&session.id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_buyers_for_five_units_make_five_orders() {
    let shop = shop().await;
    shop.set_stock("LINEN-CAMP-SHIRT-M", 5).await;
    let mut sessions = Vec::new();
    for n in 0..20 {
        let buyer = Caller::subject(format!("buyer-{n}"));
        sessions.push((buyer.clone(), shop.ready(&buyer, &[(SHIRT, 1)], "success_token").await));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(sessions.len()));
    let tasks: Vec<_> = sessions
        .iter()
        .map(|(buyer, session)| {
            let (gw, barrier, buyer, id) =
                (shop.gateway.clone(), barrier.clone(), buyer.clone(), session.id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                gw.complete_checkout(&buyer, &id, CompleteRequest::default()).await
            })
        })
        .collect();
    let mut completed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => completed += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::InsufficientStock, "{e}"),
        }
    }
    assert_eq!(completed, 5);
    assert_eq!(shop.stock("LINEN-CAMP-SHIRT-M").await, 0);
    let all = OrderFilter { limit: 500, ..OrderFilter::default() };
    assert_eq!(shop.app.store.list_orders(&all).await.unwrap().len(), 5);
    // Every charge is an order or a refund, exactly.
    let refunds = shop.refunds();
    assert_eq!(shop.app.payments.successful_charges(), 5 + refunds.len());
    for (_, session) in &sessions {
        let s = shop.session(&session.id).await;
        let refunded = s.messages.iter().any(|m| m.code == "payment_refunded");
        match s.status() {
            CheckoutStatus::Completed => assert!(!refunded),
            // Refused before the charge (nothing written), or charged,
            // refused at the commit and refunded.
            CheckoutStatus::ReadyForComplete => assert!(
                s.messages.is_empty()
                    || (refunded && s.messages.iter().any(|m| m.code == "insufficient_stock"))
            ),
            other => panic!("session left {other:?}"),
        }
    }
    let mut recorded = 0;
    for (_, session) in &sessions {
        let s = shop.session(&session.id).await;
        recorded += s.messages.iter().filter(|m| m.code == "payment_refunded").count();
    }
    assert_eq!(recorded, refunds.len(), "each refund is recorded on its session");
}

#[tokio::test]
async fn declines_and_required_actions_release_the_session() {
    let cases = [
        ("fail_token", ErrorCode::PaymentDeclined, CheckoutStatus::ReadyForComplete),
        ("insufficient_funds", ErrorCode::PaymentDeclined, CheckoutStatus::ReadyForComplete),
        ("requires_action", ErrorCode::PaymentRequiresAction, CheckoutStatus::RequiresEscalation),
    ];
    for (token, want, status) in cases {
        let shop = shop().await;
        shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
        let session = shop.ready(&alice(), &[(TEE, 1)], token).await;
        let err = shop.complete(&alice(), &session.id).await.unwrap_err();
        assert_eq!(err.code(), want, "{token}");
        let after = shop.session(&session.id).await;
        assert_eq!(after.status(), status, "{token}");
        // An escalated attempt waits for the buyer and keeps its id; a
        // declined one is gone.
        assert_eq!(after.order_id.is_some(), status == CheckoutStatus::RequiresEscalation);
        assert_eq!(after.messages[0].code, want.as_str(), "{token}");
        assert!(shop.orders_of(&session.id).await.is_empty(), "{token}");
        assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 5, "{token}");
        if status == CheckoutStatus::RequiresEscalation {
            let url = after.continue_url.as_deref().unwrap();
            assert!(url.starts_with("https://shop.example/"), "{url}");
            assert!(err.message().contains(url), "the agent can follow it: {}", err.message());
        } else {
            // A new attempt with another card is a new charge, not a
            // replay of the decline.
            let request = CompleteRequest {
                payment_token: Some("success_token".into()),
                ..CompleteRequest::default()
            };
            shop.gateway.complete_checkout(&alice(), &session.id, request).await.unwrap();
            assert_eq!(shop.app.payments.charge_attempts(), 2, "{token}");
            assert_eq!(shop.app.payments.successful_charges(), 1, "{token}");
        }
    }
}

#[tokio::test]
async fn checkouts_and_orders_are_invisible_to_other_callers() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    let mallory = Caller::subject("mallory");
    assert_eq!(code(shop.complete(&mallory, &session.id).await), ErrorCode::NotFound);
    assert!(shop.app.payments.calls().is_empty());
    let done = shop.complete(&alice(), &session.id).await.unwrap();
    assert_eq!(code(shop.complete(&mallory, &session.id).await), ErrorCode::NotFound);
    let theirs = shop.gateway.get_order(&mallory, &done.order.id).await;
    let missing = shop.gateway.get_order(&mallory, &OrderId::from_uuid(uuid::Uuid::now_v7())).await;
    assert_eq!(code(theirs), ErrorCode::NotFound);
    assert_eq!(code(missing), ErrorCode::NotFound, "the same answer as a missing order");
    assert_eq!(
        code(shop.gateway.get_order(&Caller::anonymous(), &done.order.id).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn the_velocity_limit_counts_the_agents_recent_orders() {
    let shop = shop_with(|raw| {
        raw.guardrail.velocity = Some(VelocityLimit { max_amount_minor: 15_000, window_secs: 3600 })
    })
    .await;
    shop.set_stock("LINEN-CAMP-SHIRT-M", 10).await;
    let first = shop.ready(&alice(), &[(SHIRT, 1)], "success_token").await;
    let second = shop.ready(&alice(), &[(SHIRT, 1)], "success_token").await;
    let bobs = shop.ready(&Caller::subject("bob"), &[(SHIRT, 1)], "success_token").await;
    let third = shop.ready(&alice(), &[(SHIRT, 1)], "success_token").await;
    shop.complete(&alice(), &first.id).await.unwrap();
    shop.complete(&alice(), &second.id).await.unwrap();
    shop.complete(&Caller::subject("bob"), &bobs.id).await.unwrap();
    let calls = shop.app.payments.calls().len();
    let err = shop.complete(&alice(), &third.id).await;
    assert_eq!(
        code(err),
        ErrorCode::VelocityLimitExceeded,
        "2 × 63.00 spent, 63.00 more is over 150.00"
    );
    assert_eq!(shop.app.payments.calls().len(), calls, "refused before payment");
    // Outside the window the budget is free again.
    shop.clock.advance(Duration::seconds(3601));
    let fresh = shop.ready(&alice(), &[(SHIRT, 1)], "success_token").await;
    shop.complete(&alice(), &fresh.id).await.unwrap();
}

#[tokio::test]
async fn the_idempotent_response_is_committed_with_the_order() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    let later = shop.now() + Duration::hours(24);
    let begun = shop.app.store.idempotency_begin("idem-1", "fp", later).await.unwrap();
    assert_eq!(begun, IdempotencyBegin::Started);
    let request = CompleteRequest {
        idempotency_key: "idem-1".into(),
        render: Some(Arc::new(|c: &Completion| {
            Ok(StoredResponse { status: 200, body: c.order.id.as_str().as_bytes().to_vec() })
        })),
        ..CompleteRequest::default()
    };
    let done = shop.gateway.complete_checkout(&alice(), &session.id, request).await.unwrap();
    let record = shop.app.store.idempotency_get("idem-1").await.unwrap().unwrap();
    let IdempotencyState::Completed(stored) = record.state else { panic!("not stored") };
    assert_eq!(stored.body, done.order.id.as_str().as_bytes());
}

/// 3-D Secure in the sandbox: the completion escalates with a link, an
/// early retry finds the payment still waiting, the buyer approves at the
/// link, and the next completion captures that payment: one charge, one
/// order, no second attempt at the card.
#[tokio::test]
async fn an_escalated_payment_is_captured_by_the_next_completion() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 2)], "requires_action").await;
    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PaymentRequiresAction);
    let escalated = shop.session(&session.id).await;
    let attempt = escalated.order_id.clone().expect("the attempt is kept");
    let url = escalated.continue_url.clone().unwrap();
    let reference = url.rsplit('/').next().unwrap().to_owned();

    // Completing before the buyer acted: still waiting, no new charge.
    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PaymentRequiresAction);
    let still = shop.session(&session.id).await;
    assert_eq!(still.status(), CheckoutStatus::RequiresEscalation);
    assert_eq!(
        (still.order_id.as_ref(), still.continue_url.as_ref()),
        (Some(&attempt), Some(&url))
    );
    assert_eq!(shop.app.payments.charge_attempts(), 1);

    // The buyer approves; the agent completes again.
    shop.gateway.approve_payment_action(&reference).await.unwrap();
    assert!(shop.gateway.approve_payment_action("sbx_ch_99999999").await.is_err());
    let done = shop.complete(&alice(), &session.id).await.unwrap();
    assert_eq!(done.order.id, attempt, "the order is the attempt that escalated");
    assert_eq!(done.order.payment.reference, reference);
    assert_eq!(done.order.totals.total, usd(2 * 1800 + SHIPPING));
    assert_eq!(shop.app.payments.charge_attempts(), 1, "the card was charged once");
    assert_eq!(shop.app.payments.successful_charges(), 1);
    let captures = shop
        .app
        .payments
        .calls()
        .into_iter()
        .filter(|c| matches!(c, SandboxCall::Capture { replayed: false, .. }))
        .count();
    assert_eq!(captures, 2, "one capture that found it waiting, one that took it");
    assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 3);
    assert_eq!(shop.orders_of(&session.id).await.len(), 1);
    // A retry answers the same completion.
    let again = shop.complete(&alice(), &session.id).await.unwrap();
    assert_eq!(again.order.id, done.order.id);
    assert_eq!(shop.app.payments.successful_charges(), 1);
}

/// A crash after the capture and before the commit leaves the resumed
/// session in progress; recovery finds the captured payment under the
/// attempt's charge key and commits it without charging.
#[tokio::test]
async fn a_resume_interrupted_before_its_commit_is_recovered() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "requires_action").await;
    shop.complete(&alice(), &session.id).await.unwrap_err();
    let url = shop.session(&session.id).await.continue_url.unwrap();
    shop.gateway.approve_payment_action(url.rsplit('/').next().unwrap()).await.unwrap();
    // The store is down at the commit: the session stays locked.
    shop.store.fail_commits(ErrorCode::StoreUnavailable, 10);
    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreUnavailable);
    assert_eq!(shop.session(&session.id).await.status(), CheckoutStatus::CompleteInProgress);
    assert_eq!(shop.app.payments.successful_charges(), 1, "captured before the commit failed");
    shop.store.heal();
    let err = shop.complete(&alice(), &session.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyInProgress, "the lease still runs");
    shop.clock.advance(Duration::minutes(5));
    let done = shop.complete(&alice(), &session.id).await.unwrap();
    assert_eq!(done.session.status(), CheckoutStatus::Completed);
    assert_eq!(shop.app.payments.charge_attempts(), 1);
    assert_eq!(shop.app.payments.successful_charges(), 1);
    assert!(shop.refunds().is_empty());
}

/// The caller gives up while the processor's answer is on its way back:
/// the charge went through, the request future is dropped before the
/// commit (a client or edge timeout), and the session stays locked. The
/// client's retries with the same key and body, fifty at once after the
/// lease, make exactly one order from that one charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_timeout_between_charge_and_commit_charges_once() {
    let shop = shop().await;
    shop.set_stock("ORGANIC-COTTON-TEE-BLACK", 5).await;
    let session = shop.ready(&alice(), &[(TEE, 1)], "success_token").await;
    *shop.payments.answer_delay.lock().unwrap() = std::time::Duration::from_secs(30);
    let request = CompleteRequest { idempotency_key: "retry-key".into(), ..Default::default() };
    let first = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        shop.gateway.complete_checkout(&alice(), &session.id, request.clone()),
    )
    .await;
    assert!(first.is_err(), "the caller timed out");
    assert_eq!(shop.app.payments.successful_charges(), 1, "the money moved");
    let stuck = shop.session(&session.id).await;
    assert_eq!(stuck.status(), CheckoutStatus::CompleteInProgress);
    assert!(shop.orders_of(&session.id).await.is_empty(), "no order yet");
    *shop.payments.answer_delay.lock().unwrap() = std::time::Duration::ZERO;

    // An immediate retry waits for the lease rather than charging again.
    let err = shop.gateway.complete_checkout(&alice(), &session.id, request.clone()).await;
    assert_eq!(code(err), ErrorCode::IdempotencyInProgress);

    shop.clock.advance(Duration::seconds(61));
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (gw, barrier, request) = (shop.gateway.clone(), barrier.clone(), request.clone());
            let id = session.id.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                gw.complete_checkout(&alice(), &id, request).await
            })
        })
        .collect();
    let mut orders = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => {
                orders.insert(done.order.id);
            }
            Err(e) => assert!(e.retryable(), "not retryable: {e}"),
        }
    }
    let last = shop.complete(&alice(), &session.id).await.unwrap();
    orders.insert(last.order.id.clone());
    assert_eq!(orders.len(), 1, "every caller saw one order");
    assert_eq!(Some(&last.order.id), stuck.order_id.as_ref(), "the timed-out attempt's order");
    assert_eq!(shop.orders_of(&session.id).await.len(), 1);
    assert_eq!(shop.app.payments.charge_attempts(), 1);
    assert_eq!(shop.app.payments.successful_charges(), 1);
    assert!(shop.refunds().is_empty());
    assert_eq!(shop.stock("ORGANIC-COTTON-TEE-BLACK").await, 4);
}
