//! The store contract: what every implementation of the `Store` port must
//! do, written once and run against each backend.
//!
//! A backend's test file declares `#[macro_use] mod store_contract;`, writes
//! an `async fn` returning a [`Fixture`] around a fresh, empty store, and
//! calls `store_contract_tests!(that_fn);`. The macro expands to one
//! `#[tokio::test]` per contract case, named after the case, so a failure
//! reads as the rule that broke. Every case runs on a multi-thread runtime
//! because some of them race tasks against each other.
//!
//! A case written here but missing from the macro's list shows up as an
//! unused-function warning in every backend's test build.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use agentgate::domain::cart::CartLine;
use agentgate::domain::checkout::{
    AppliedDiscount, Buyer, FulfillmentSelection, Message, MessageType, PaymentSelection,
    PostalAddress, Severity,
};
use agentgate::domain::order::{
    Fulfillment, FulfillmentLine, FulfillmentStatus, OrderLine, PaymentRecord,
};
use agentgate::domain::{
    Cart, CartId, CheckoutId, CheckoutSession, CheckoutStatus, Currency, ErrorCode, LedgerEntry,
    LedgerKind, LineItem, Money, Order, OrderEvent, OrderEventKind, OrderId, OrderStatus,
    ProductId, Result, Sku, Totals, VariantId,
};
use agentgate::ports::{
    AuditFilter, AuditRecord, AuditedStock, CheckoutCommit, IdempotencyBegin, IdempotencyRecord,
    IdempotencyState, OrderFilter, OutboxEntry, OutboxFilter, OutboxKind, OutboxLease,
    OutboxMessage, OutboxResult, OutboxStatus, Store, StoredResponse, Versioned,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;

/// A store under test plus whatever must live as long as it (a temp dir,
/// a container handle).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Self { store, _guard: Box::new(guard) }
    }
}

/// What a backend's fixture function may return: a [`Fixture`], or, for a
/// backend that needs a service this machine may lack (a cloud stand-in),
/// `Option<Fixture>`, where `None` means the fixture has already reported
/// why it could not run (and failed, under CI) and the case ends there.
pub trait MaybeFixture {
    fn into_fixture(self) -> Option<Fixture>;
}

impl MaybeFixture for Fixture {
    fn into_fixture(self) -> Option<Fixture> {
        Some(self)
    }
}

impl MaybeFixture for Option<Fixture> {
    fn into_fixture(self) -> Option<Fixture> {
        self
    }
}

/// Expands to one test per contract case. `$make` is the path of an
/// `async fn() -> Fixture` (or `-> Option<Fixture>`, see [`MaybeFixture`])
/// returning a fresh, empty store.
macro_rules! store_contract_tests {
    ($make:path) => {
        store_contract_tests!(@cases $make;
            health_answers,
            missing_records_read_as_absent,
            cart_round_trips,
            cart_insert_is_put_if_absent,
            cart_update_is_compare_and_set,
            checkout_round_trips_every_field,
            checkout_round_trips_with_nothing_optional,
            checkout_insert_is_put_if_absent,
            checkout_update_is_compare_and_set,
            commit_checkout_writes_everything,
            commit_checkout_with_stale_version_writes_nothing,
            commit_checkout_short_on_second_line_writes_nothing,
            commit_checkout_for_uncounted_sku_writes_nothing,
            commit_checkout_with_duplicate_order_id_writes_nothing,
            commit_checkout_allows_one_order_per_checkout,
            commit_checkout_with_duplicate_ledger_id_writes_nothing,
            commit_checkout_requires_a_completed_session,
            commit_checkout_of_missing_session_is_not_found,
            commit_checkout_without_held_idempotency_key_still_commits,
            order_round_trips_with_fulfillments,
            order_update_and_events_are_atomic,
            list_orders_filters_and_sorts_newest_first,
            idempotency_begin_is_put_if_absent,
            idempotency_complete_stores_the_response_once,
            idempotency_release_frees_only_in_progress_keys,
            idempotency_expired_records_are_taken_over,
            mandate_ids_are_reserved_once_until_they_expire,
            mandate_ids_are_reserved_in_order_up_to_the_first_replay,
            webhook_events_are_deduplicated_per_source,
            stock_set_and_get,
            stock_decrement_is_conditional,
            stock_adjust_never_goes_below_zero,
            ledger_round_trips_and_filters_by_range_and_currency,
            concurrent_compare_and_set_has_one_winner_per_version,
            concurrent_decrements_never_oversell,
            concurrent_commits_never_oversell,
            discount_uses_count_completed_sessions,
            webhook_events_can_be_forgotten_after_a_failure,
            outbox_rows_commit_with_the_checkout_or_not_at_all,
            outbox_rows_commit_with_the_order_update_or_not_at_all,
            outbox_claims_are_exclusive_until_the_lease_runs_out,
            outbox_results_settle_only_under_the_lease,
            concurrent_outbox_claims_never_share_a_message,
            list_orders_pages_through_a_time_window,
            audited_stock_adjustment_writes_its_record_once,
            audited_stock_adjustment_never_goes_below_zero,
            audited_adjustments_and_decrements_lose_no_update,
            audit_records_filter_by_target_newest_first,
            checkouts_needing_attention_are_escalated_or_stuck,
            commit_checkout_without_stock_or_mandates_commits_once,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let made = $make().await;
                let Some(fixture) = store_contract::MaybeFixture::into_fixture(made) else {
                    return;
                };
                store_contract::$case(std::sync::Arc::clone(&fixture.store)).await;
            }
        )*
    };
}

// ---------------------------------------------------------------- data

/// A time with nanoseconds and a non-UTC offset, so a store that drops
/// either is caught.
const T0: OffsetDateTime = datetime!(2026-05-01 12:34:56.123456789 +02:00);

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn sku(name: &str) -> Sku {
    Sku::parse(name).unwrap()
}

fn cart_id() -> CartId {
    CartId::from_uuid(uuid::Uuid::now_v7())
}

fn checkout_id() -> CheckoutId {
    CheckoutId::from_uuid(uuid::Uuid::now_v7())
}

fn order_id() -> OrderId {
    OrderId::from_uuid(uuid::Uuid::now_v7())
}

fn far_past() -> OffsetDateTime {
    datetime!(1900-01-01 0:00 UTC)
}

fn far_future() -> OffsetDateTime {
    datetime!(2200-01-01 0:00 UTC)
}

/// Real time, for expiry: the contract cannot control a backend's clock.
fn soon_expired() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::seconds(1)
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn cart() -> Cart {
    let mut cart =
        Cart::new(cart_id(), Currency::usd(), Some("agent-a".into()), T0, Duration::hours(1));
    for (i, price) in [1250, 99].into_iter().enumerate() {
        cart.add(
            CartLine {
                variant_id: VariantId::parse(&format!("gid://shop/ProductVariant/{i}")).unwrap(),
                product_id: ProductId::parse("p-1").unwrap(),
                sku: sku(&format!("SKU-{i}")),
                title: format!("Thing {i}"),
                quantity: 2,
                unit_price: usd(price),
                requires_shipping: i == 0,
            },
            T0,
        )
        .unwrap();
    }
    cart
}

fn line(n: usize, sku_name: &str, quantity: u32) -> LineItem {
    LineItem {
        id: format!("li_{n}"),
        variant_id: VariantId::parse(&format!("v-{sku_name}")).unwrap(),
        product_id: ProductId::parse("p-1").unwrap(),
        sku: sku(sku_name),
        title: format!("Item {sku_name}"),
        quantity,
        unit_price: usd(1000),
        requires_shipping: true,
    }
}

/// A session with every optional field filled, in `ready_for_complete`.
fn full_session(lines: &[(&str, u32)]) -> CheckoutSession {
    let items = lines.iter().enumerate().map(|(i, (s, q))| line(i + 1, s, *q)).collect();
    let mut s = CheckoutSession::new(
        checkout_id(),
        Currency::usd(),
        items,
        Some("agent-a".into()),
        T0,
        CheckoutSession::DEFAULT_TTL,
    )
    .unwrap();
    s.cart_id = Some(cart_id());
    s.buyer = Buyer {
        email: Some("ada@example.com".into()),
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        phone_number: Some("+44 20 0000 0000".into()),
    };
    s.fulfillment = FulfillmentSelection {
        address: Some(PostalAddress {
            name: Some("Ada Lovelace".into()),
            street_address: "12 St James's Square".into(),
            extended_address: Some("Flat 1".into()),
            address_locality: "London".into(),
            address_region: Some("LND".into()),
            postal_code: "SW1Y 4JH".into(),
            address_country: "GB".into(),
        }),
        option_id: Some("standard".into()),
        option_title: Some("Standard (3-5 days)".into()),
        amount: Some(usd(500)),
    };
    s.discount_codes = vec!["WELCOME".into()];
    s.applied_discounts = vec![AppliedDiscount {
        code: "WELCOME".into(),
        title: "Welcome 5".into(),
        amount: usd(-500),
        line_ids: vec!["li_1".into()],
    }];
    s.payment = Some(PaymentSelection {
        handler_id: "sandbox".into(),
        instrument_type: "card".into(),
        token: Some("tok_visa_4242".into()),
    });
    s.totals =
        Totals::compute(Currency::usd(), &s.line_items, usd(-500), usd(500), usd(80)).unwrap();
    s.messages = vec![
        Message {
            kind: MessageType::Warning,
            code: "low_stock".into(),
            content: "only a few left".into(),
            severity: Some(Severity::RequiresBuyerReview),
            path: Some("$.line_items[0]".into()),
        },
        Message {
            kind: MessageType::Info,
            code: "note".into(),
            content: "ünïcödé ✓".into(),
            severity: None,
            path: None,
        },
    ];
    s.continue_url = Some("https://shop.example/checkout/continue".into());
    s.ucp_version = Some("2026-04-08".into());
    s.capabilities = vec!["dev.ucp.shopping.checkout".into(), "dev.ucp.shopping.discount".into()];
    s.updated_at = T0 + Duration::nanoseconds(1);
    s.transition(CheckoutStatus::ReadyForComplete, T0 + Duration::seconds(1)).unwrap()
}

fn completed(session: &CheckoutSession, order: &OrderId) -> CheckoutSession {
    let mut s = session.clone();
    s.order_id = Some(order.clone());
    s.transition(CheckoutStatus::CompleteInProgress, T0 + Duration::seconds(2))
        .unwrap()
        .transition(CheckoutStatus::Completed, T0 + Duration::seconds(3))
        .unwrap()
}

fn order_for(
    session: &CheckoutSession,
    id: OrderId,
    status: OrderStatus,
    created_at: OffsetDateTime,
) -> Order {
    let lines = session
        .line_items
        .iter()
        .map(|l| OrderLine {
            variant_id: l.variant_id.clone(),
            sku: l.sku.clone(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            line_total: l.line_total().unwrap(),
        })
        .collect();
    Order::new(
        id,
        session.id.clone(),
        status,
        session.owner.clone(),
        session.buyer.email.clone(),
        lines,
        session.totals,
        usd(30),
        PaymentRecord {
            processor: "sandbox".into(),
            reference: format!("ch_{}", unique()),
            amount: session.totals.total,
        },
        created_at,
    )
}

/// A commit for `session` (stored at version 1) taking one stock line per
/// checkout line.
fn commit_for(session: &CheckoutSession, created_at: OffsetDateTime) -> CheckoutCommit {
    let id = order_id();
    let order = order_for(session, id.clone(), OrderStatus::Paid, created_at);
    let events = vec![
        order.created_event("gateway", "trace-1"),
        OrderEvent {
            order_id: id.clone(),
            at: created_at,
            kind: OrderEventKind::Note { text: "paid with sandbox".into() },
            actor: "gateway".into(),
            reason: "payment".into(),
            trace_id: "trace-1".into(),
        },
    ];
    CheckoutCommit {
        session: completed(session, &id),
        expected_version: 1,
        stock: session.line_items.iter().map(|l| (l.sku.clone(), l.quantity)).collect(),
        ledger: LedgerEntry {
            id: format!("led_{}", unique()),
            order_id: id.clone(),
            kind: LedgerKind::Fee,
            gross: session.totals.total,
            fee: usd(30),
            at: created_at,
        },
        mandates: vec![
            "eyJhbGciOiJFUzI1NiJ9.cart.sig".into(),
            "eyJhbGciOiJFUzI1NiJ9.pay.sig".into(),
        ],
        idempotency: None,
        outbox: vec![outbox_message(&id, OutboxKind::OrderWebhook, created_at)],
        order,
        events,
    }
}

/// A message about `order`, due at `at`.
fn outbox_message(order: &OrderId, kind: OutboxKind, at: OffsetDateTime) -> OutboxMessage {
    OutboxMessage {
        id: format!("evt_{}", unique()),
        kind,
        destination: match kind {
            OutboxKind::OrderWebhook => "https://platform.example/hooks/orders".into(),
            OutboxKind::Notification => "buyer@example.com".into(),
        },
        payload: format!("{{\"order\": \"{order}\", \"n\": 1}}"),
        order_id: Some(order.clone()),
        created_at: at,
    }
}

/// Every message of `order`, as the store lists them.
async fn outbox_of(store: &dyn Store, order: &OrderId) -> Vec<OutboxEntry> {
    let filter = OutboxFilter { order_id: Some(order.clone()), ..OutboxFilter::default() };
    store.outbox_entries(&filter).await.unwrap()
}

fn err_code<T: std::fmt::Debug>(result: Result<T>) -> ErrorCode {
    result.expect_err("expected an error").code()
}

/// Everything a commit could have touched, to compare before and after a
/// refused commit.
#[derive(Debug, PartialEq)]
struct Snapshot {
    session: Option<Versioned<CheckoutSession>>,
    order: Option<Versioned<Order>>,
    orders: Vec<Order>,
    events: Vec<OrderEvent>,
    mandates: Vec<String>,
    stock: BTreeMap<String, Option<u32>>,
    ledger: Vec<LedgerEntry>,
    idempotency: Option<IdempotencyRecord>,
    outbox: Vec<OutboxEntry>,
}

async fn snapshot(store: &dyn Store, commit: &CheckoutCommit) -> Snapshot {
    let mut stock = BTreeMap::new();
    for (s, _) in &commit.stock {
        stock.insert(s.as_str().to_owned(), store.get_stock(s).await.unwrap());
    }
    let key = commit.idempotency.as_ref().map(|(k, _)| k.clone()).unwrap_or_default();
    Snapshot {
        session: store.get_checkout(&commit.session.id).await.unwrap(),
        order: store.get_order(&commit.order.id).await.unwrap(),
        orders: store.list_orders(&OrderFilter { limit: 500, ..Default::default() }).await.unwrap(),
        events: store.order_events(&commit.order.id).await.unwrap(),
        mandates: store.order_mandates(&commit.order.id).await.unwrap(),
        stock,
        ledger: store.ledger_entries(far_past(), far_future(), None).await.unwrap(),
        idempotency: store.idempotency_get(&key).await.unwrap(),
        outbox: store
            .outbox_entries(&OutboxFilter { limit: 500, ..Default::default() })
            .await
            .unwrap(),
    }
}

/// Stores `session` and stocks each of its SKUs.
async fn prepare(store: &dyn Store, session: &CheckoutSession, stock: &[(&str, u32)]) {
    for (s, q) in stock {
        store.set_stock(&sku(s), *q).await.unwrap();
    }
    store.insert_checkout(session).await.unwrap();
}

/// Runs `commit`, which must be refused with `code`, and checks that it
/// left no trace.
async fn assert_refused(store: &dyn Store, commit: &CheckoutCommit, code: ErrorCode) {
    let before = snapshot(store, commit).await;
    assert_eq!(err_code(store.commit_checkout(commit).await), code);
    assert_eq!(snapshot(store, commit).await, before, "a refused commit wrote something");
}

// --------------------------------------------------------------- cases

pub async fn health_answers(store: Arc<dyn Store>) {
    store.health().await.unwrap();
}

pub async fn missing_records_read_as_absent(store: Arc<dyn Store>) {
    assert_eq!(store.get_cart(&cart_id()).await.unwrap(), None);
    assert_eq!(store.get_checkout(&checkout_id()).await.unwrap(), None);
    assert_eq!(store.get_order(&order_id()).await.unwrap(), None);
    assert!(store.order_events(&order_id()).await.unwrap().is_empty());
    assert!(store.order_mandates(&order_id()).await.unwrap().is_empty());
    assert_eq!(store.get_stock(&sku("NOPE")).await.unwrap(), None);
    assert_eq!(store.idempotency_get("nope").await.unwrap(), None);
    assert!(store.list_orders(&OrderFilter::default()).await.unwrap().is_empty());
    assert!(store.ledger_entries(far_past(), far_future(), None).await.unwrap().is_empty());
}

pub async fn cart_round_trips(store: Arc<dyn Store>) {
    let mut cart = cart();
    store.insert_cart(&cart).await.unwrap();
    let got = store.get_cart(&cart.id).await.unwrap().unwrap();
    assert_eq!(got, Versioned { value: cart.clone(), version: got.version });
    // The exact instant and nanoseconds survive, not just an equal instant.
    assert_eq!(got.value.created_at.nanosecond(), T0.nanosecond());

    cart.cancel(T0 + Duration::minutes(1)).unwrap();
    cart.owner = None;
    let v = store.update_cart(&cart, got.version).await.unwrap();
    let got = store.get_cart(&cart.id).await.unwrap().unwrap();
    assert_eq!(got, Versioned { value: cart, version: v });
}

pub async fn cart_insert_is_put_if_absent(store: Arc<dyn Store>) {
    let cart = cart();
    store.insert_cart(&cart).await.unwrap();
    let mut other = cart.clone();
    other.owner = Some("someone-else".into());
    assert_eq!(err_code(store.insert_cart(&other).await), ErrorCode::AlreadyExists);
    assert_eq!(store.get_cart(&cart.id).await.unwrap().unwrap().value, cart);
}

pub async fn cart_update_is_compare_and_set(store: Arc<dyn Store>) {
    let mut cart = cart();
    store.insert_cart(&cart).await.unwrap();
    let v1 = store.get_cart(&cart.id).await.unwrap().unwrap().version;

    cart.clear(T0).unwrap();
    let v2 = store.update_cart(&cart, v1).await.unwrap();
    assert!(v2 > v1, "a write must move the version forward");

    let mut stale = cart.clone();
    stale.owner = Some("stale".into());
    assert_eq!(err_code(store.update_cart(&stale, v1).await), ErrorCode::VersionConflict);
    assert_eq!(err_code(store.update_cart(&stale, v2 + 7).await), ErrorCode::VersionConflict);
    assert_eq!(err_code(store.update_cart(&stale, u64::MAX).await), ErrorCode::VersionConflict);
    let got = store.get_cart(&cart.id).await.unwrap().unwrap();
    assert_eq!(got, Versioned { value: cart.clone(), version: v2 });

    let mut missing = cart.clone();
    missing.id = cart_id();
    assert_eq!(err_code(store.update_cart(&missing, v1).await), ErrorCode::NotFound);
    assert_eq!(store.get_cart(&missing.id).await.unwrap(), None);
}

pub async fn checkout_round_trips_every_field(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1), ("B", 2)]);
    store.insert_checkout(&session).await.unwrap();
    let got = store.get_checkout(&session.id).await.unwrap().unwrap();
    assert_eq!(got.value, session);
    assert_eq!(got.value.status(), CheckoutStatus::ReadyForComplete);
    // The domain skips the token when serialised for an edge; the store
    // must keep it anyway or a completion after a restart cannot charge.
    let token = got.value.payment.as_ref().and_then(|p| p.token.as_deref());
    assert_eq!(token, Some("tok_visa_4242"));
}

pub async fn checkout_round_trips_with_nothing_optional(store: Arc<dyn Store>) {
    let session = CheckoutSession::new(
        checkout_id(),
        Currency::parse("JPY").unwrap(),
        vec![],
        None,
        T0,
        Duration::minutes(5),
    )
    .unwrap();
    store.insert_checkout(&session).await.unwrap();
    let got = store.get_checkout(&session.id).await.unwrap().unwrap();
    assert_eq!(got.value, session);
    assert_eq!(got.value.status(), CheckoutStatus::Incomplete);
}

pub async fn checkout_insert_is_put_if_absent(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    store.insert_checkout(&session).await.unwrap();
    let mut again = session.clone();
    again.buyer.email = None;
    assert_eq!(err_code(store.insert_checkout(&again).await), ErrorCode::AlreadyExists);
    assert_eq!(store.get_checkout(&session.id).await.unwrap().unwrap().value, session);
}

pub async fn checkout_update_is_compare_and_set(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    store.insert_checkout(&session).await.unwrap();
    let v1 = store.get_checkout(&session.id).await.unwrap().unwrap().version;

    let moved = session.clone().transition(CheckoutStatus::Canceled, T0).unwrap();
    let v2 = store.update_checkout(&moved, v1).await.unwrap();
    assert!(v2 > v1);
    let got = store.get_checkout(&session.id).await.unwrap().unwrap();
    assert_eq!(got, Versioned { value: moved.clone(), version: v2 });
    assert_eq!(got.value.status(), CheckoutStatus::Canceled);

    assert_eq!(err_code(store.update_checkout(&session, v1).await), ErrorCode::VersionConflict);
    assert_eq!(store.get_checkout(&session.id).await.unwrap().unwrap().value, moved);

    let mut missing = session.clone();
    missing.id = checkout_id();
    assert_eq!(err_code(store.update_checkout(&missing, v1).await), ErrorCode::NotFound);
}

pub async fn commit_checkout_writes_everything(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 2), ("B", 1)]);
    prepare(&*store, &session, &[("A", 5), ("B", 1)]).await;
    let key = format!("idem-{}", unique());
    let begun = store.idempotency_begin(&key, "fp-complete", later()).await.unwrap();
    assert_eq!(begun, IdempotencyBegin::Started);
    let response = StoredResponse { status: 201, body: b"{\"order\":\"...\"}".to_vec() };
    let mut commit = commit_for(&session, T0 + Duration::seconds(3));
    commit.idempotency = Some((key.clone(), response.clone()));

    store.commit_checkout(&commit).await.unwrap();

    let got = store.get_checkout(&session.id).await.unwrap().unwrap();
    assert_eq!(got.value, commit.session);
    assert_eq!(got.value.status(), CheckoutStatus::Completed);
    assert!(got.version > 1);
    assert_eq!(store.get_stock(&sku("A")).await.unwrap(), Some(3));
    assert_eq!(store.get_stock(&sku("B")).await.unwrap(), Some(0));
    let order = store.get_order(&commit.order.id).await.unwrap().unwrap();
    assert_eq!(order.value, commit.order);
    assert_eq!(order.value.status(), OrderStatus::Paid);
    assert_eq!(store.order_events(&commit.order.id).await.unwrap(), commit.events);
    assert_eq!(store.order_mandates(&commit.order.id).await.unwrap(), commit.mandates);
    assert_eq!(
        store.ledger_entries(far_past(), far_future(), None).await.unwrap(),
        vec![commit.ledger.clone()]
    );
    let record = store.idempotency_get(&key).await.unwrap().unwrap();
    assert_eq!(record.fingerprint, "fp-complete");
    assert_eq!(record.state, IdempotencyState::Completed(response));
    assert_eq!(
        store.list_orders(&OrderFilter::default()).await.unwrap(),
        vec![commit.order.clone()]
    );
}

pub async fn commit_checkout_with_stale_version_writes_nothing(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 5)]).await;
    // Another request moved the session on since the pipeline loaded it.
    let edited = session.clone().transition(CheckoutStatus::Incomplete, T0).unwrap();
    store.update_checkout(&edited, 1).await.unwrap();
    let commit = commit_for(&session, T0);
    assert_refused(&*store, &commit, ErrorCode::VersionConflict).await;
}

pub async fn commit_checkout_short_on_second_line_writes_nothing(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 2), ("B", 3), ("C", 1)]);
    prepare(&*store, &session, &[("A", 10), ("B", 2), ("C", 10)]).await;
    let commit = commit_for(&session, T0);
    assert_refused(&*store, &commit, ErrorCode::InsufficientStock).await;
    // The first line was taken before the second failed; it must be back.
    assert_eq!(store.get_stock(&sku("A")).await.unwrap(), Some(10));
    assert_eq!(store.get_stock(&sku("B")).await.unwrap(), Some(2));
    assert_eq!(store.get_stock(&sku("C")).await.unwrap(), Some(10));
    assert_eq!(store.get_checkout(&session.id).await.unwrap().unwrap().version, 1);
}

pub async fn commit_checkout_for_uncounted_sku_writes_nothing(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1), ("UNCOUNTED", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let commit = commit_for(&session, T0);
    assert_refused(&*store, &commit, ErrorCode::InsufficientStock).await;
    assert_eq!(store.get_stock(&sku("UNCOUNTED")).await.unwrap(), None);
}

pub async fn commit_checkout_with_duplicate_order_id_writes_nothing(store: Arc<dyn Store>) {
    let first = full_session(&[("A", 1)]);
    prepare(&*store, &first, &[("A", 10)]).await;
    let placed = commit_for(&first, T0);
    store.commit_checkout(&placed).await.unwrap();

    let second = full_session(&[("A", 1)]);
    store.insert_checkout(&second).await.unwrap();
    let mut commit = commit_for(&second, T0);
    let clash = placed.order.id.clone();
    commit.session.order_id = Some(clash.clone());
    commit.order = order_for(&second, clash.clone(), OrderStatus::Paid, T0);
    commit.events.iter_mut().for_each(|e| e.order_id = clash.clone());
    commit.ledger.order_id = clash.clone();
    commit.outbox.iter_mut().for_each(|m| m.order_id = Some(clash.clone()));
    assert_refused(&*store, &commit, ErrorCode::AlreadyExists).await;
    assert_eq!(store.get_order(&clash).await.unwrap().unwrap().value, placed.order);
    assert_eq!(store.get_stock(&sku("A")).await.unwrap(), Some(9));
}

pub async fn commit_checkout_allows_one_order_per_checkout(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let first = commit_for(&session, T0);
    store.commit_checkout(&first).await.unwrap();
    let version = store.get_checkout(&session.id).await.unwrap().unwrap().version;

    // Even with the current version, a second order for the same checkout
    // is refused: a checkout is paid for once.
    let mut second = commit_for(&session, T0);
    second.expected_version = version;
    assert_refused(&*store, &second, ErrorCode::AlreadyExists).await;
    assert_eq!(store.get_stock(&sku("A")).await.unwrap(), Some(9));
}

pub async fn commit_checkout_with_duplicate_ledger_id_writes_nothing(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let mut commit = commit_for(&session, T0);
    let booked = LedgerEntry { order_id: order_id(), ..commit.ledger.clone() };
    store.append_ledger(&booked).await.unwrap();
    commit.ledger.id = booked.id.clone();
    assert_refused(&*store, &commit, ErrorCode::AlreadyExists).await;
}

pub async fn commit_checkout_requires_a_completed_session(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let mut commit = commit_for(&session, T0);
    commit.session = session.clone().transition(CheckoutStatus::CompleteInProgress, T0).unwrap();
    assert_refused(&*store, &commit, ErrorCode::IllegalTransition).await;
}

pub async fn commit_checkout_of_missing_session_is_not_found(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    store.set_stock(&sku("A"), 10).await.unwrap();
    let commit = commit_for(&session, T0);
    assert_refused(&*store, &commit, ErrorCode::NotFound).await;
}

/// The session's compare-and-set is what stops a second completion, so a
/// charged order is not thrown away because its replay record went missing
/// (expired or never begun). The response is then not stored.
pub async fn commit_checkout_without_held_idempotency_key_still_commits(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let mut commit = commit_for(&session, T0);
    let key = format!("never-begun-{}", unique());
    commit.idempotency = Some((key.clone(), StoredResponse { status: 201, body: vec![1] }));
    store.commit_checkout(&commit).await.unwrap();
    assert!(store.get_order(&commit.order.id).await.unwrap().is_some());
    assert_eq!(store.idempotency_get(&key).await.unwrap(), None);
}

pub async fn order_round_trips_with_fulfillments(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let commit = commit_for(&session, T0);
    store.commit_checkout(&commit).await.unwrap();
    let got = store.get_order(&commit.order.id).await.unwrap().unwrap();

    let mut order = got.value.clone();
    let shipped = Fulfillment {
        id: "ful_1".into(),
        status: FulfillmentStatus::Shipped,
        carrier: Some("UPS".into()),
        tracking_number: Some("1Z999".into()),
        tracking_url: Some("https://track.example/1Z999".into()),
        lines: vec![FulfillmentLine { line: 0, quantity: 1 }],
        updated_at: T0 + Duration::days(1),
    };
    let pending = Fulfillment {
        id: "ful_2".into(),
        status: FulfillmentStatus::Pending,
        carrier: None,
        tracking_number: None,
        tracking_url: None,
        lines: Vec::new(),
        updated_at: T0 + Duration::days(1),
    };
    order.fulfillments = vec![shipped.clone(), pending];
    let moved = order
        .transition(
            OrderStatus::PartiallyFulfilled,
            "ops",
            "first parcel",
            "trace-2",
            T0 + Duration::days(1),
        )
        .unwrap();
    let events = vec![
        OrderEvent {
            order_id: order.id.clone(),
            at: T0 + Duration::days(1),
            kind: OrderEventKind::Fulfillment { fulfillment: shipped },
            actor: "ops".into(),
            reason: "shipped".into(),
            trace_id: "trace-2".into(),
        },
        moved,
        OrderEvent {
            order_id: order.id.clone(),
            at: T0 + Duration::days(2),
            kind: OrderEventKind::Refund { amount: usd(-100), reference: "re_1".into() },
            actor: "ops".into(),
            reason: "goodwill".into(),
            trace_id: "trace-3".into(),
        },
    ];
    let v = store.update_order(&order, got.version, &events, &[]).await.unwrap();
    let again = store.get_order(&order.id).await.unwrap().unwrap();
    assert_eq!(again, Versioned { value: order.clone(), version: v });
    assert_eq!(again.value.status(), OrderStatus::PartiallyFulfilled);
    let all: Vec<_> = commit.events.iter().chain(&events).cloned().collect();
    assert_eq!(store.order_events(&order.id).await.unwrap(), all);
}

pub async fn order_update_and_events_are_atomic(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let commit = commit_for(&session, T0);
    store.commit_checkout(&commit).await.unwrap();
    let v1 = store.get_order(&commit.order.id).await.unwrap().unwrap().version;

    let mut order = commit.order.clone();
    let event = order.transition(OrderStatus::Fulfilled, "ops", "shipped", "t", T0).unwrap();
    let v2 = store.update_order(&order, v1, std::slice::from_ref(&event), &[]).await.unwrap();
    assert!(v2 > v1);

    // A stale write changes neither the order nor the trail.
    let mut stale = commit.order.clone();
    let stale_event = stale.transition(OrderStatus::Canceled, "ops", "oops", "t", T0).unwrap();
    assert_eq!(
        err_code(store.update_order(&stale, v1, std::slice::from_ref(&stale_event), &[]).await),
        ErrorCode::VersionConflict
    );
    // Events about another order are refused before anything is written.
    let mut foreign = event.clone();
    foreign.order_id = order_id();
    assert_eq!(
        err_code(store.update_order(&order, v2, &[foreign], &[]).await),
        ErrorCode::InvalidInput
    );
    let mut missing = stale.clone();
    missing.id = order_id();
    let missing_event = OrderEvent { order_id: missing.id.clone(), ..stale_event };
    assert_eq!(
        err_code(store.update_order(&missing, 1, &[missing_event], &[]).await),
        ErrorCode::NotFound
    );
    assert!(store.order_events(&missing.id).await.unwrap().is_empty());

    let got = store.get_order(&order.id).await.unwrap().unwrap();
    assert_eq!(got, Versioned { value: order.clone(), version: v2 });
    let mut want = commit.events.clone();
    want.push(event);
    assert_eq!(store.order_events(&order.id).await.unwrap(), want);

    // An update with no events is a plain compare-and-set.
    let v3 = store.update_order(&order, v2, &[], &[]).await.unwrap();
    assert!(v3 > v2);
    assert_eq!(store.order_events(&order.id).await.unwrap(), want);
}

pub async fn list_orders_filters_and_sorts_newest_first(store: Arc<dyn Store>) {
    // (owner, status, minutes after T0)
    let specs = [
        ("alice", OrderStatus::Paid, 1),
        ("bob", OrderStatus::Paid, 5),
        ("alice", OrderStatus::Created, 3),
        ("alice", OrderStatus::Paid, 4),
        ("bob", OrderStatus::Created, 2),
    ];
    let mut placed = Vec::new();
    for (owner, status, minutes) in specs {
        let mut session = full_session(&[("A", 1)]);
        session.owner = Some(owner.into());
        prepare(&*store, &session, &[]).await;
        let mut commit = commit_for(&session, T0);
        commit.stock.clear();
        commit.order =
            order_for(&session, commit.order.id.clone(), status, T0 + Duration::minutes(minutes));
        store.commit_checkout(&commit).await.unwrap();
        placed.push((owner, status, minutes, commit.order));
    }
    let ids = |orders: Vec<Order>| orders.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let want = |keep: &dyn Fn(&str, OrderStatus) -> bool| {
        let mut v: Vec<_> = placed.iter().filter(|(o, s, _, _)| keep(o, *s)).collect();
        v.sort_by_key(|(_, _, m, _)| std::cmp::Reverse(*m));
        v.into_iter().map(|(_, _, _, o)| o.id.clone()).collect::<Vec<_>>()
    };
    let cases: Vec<(OrderFilter, Vec<OrderId>)> = vec![
        (OrderFilter::default(), want(&|_, _| true)),
        (
            OrderFilter { owner: Some("alice".into()), ..Default::default() },
            want(&|o, _| o == "alice"),
        ),
        (
            OrderFilter { status: Some(OrderStatus::Created), ..Default::default() },
            want(&|_, s| s == OrderStatus::Created),
        ),
        (
            OrderFilter {
                owner: Some("alice".into()),
                status: Some(OrderStatus::Paid),
                limit: 0,
                ..Default::default()
            },
            want(&|o, s| o == "alice" && s == OrderStatus::Paid),
        ),
        (OrderFilter { limit: 2, ..Default::default() }, want(&|_, _| true)[..2].to_vec()),
        (OrderFilter { limit: u32::MAX, ..Default::default() }, want(&|_, _| true)),
        (OrderFilter { owner: Some("nobody".into()), ..Default::default() }, Vec::new()),
    ];
    for (filter, expected) in cases {
        let got = ids(store.list_orders(&filter).await.unwrap());
        assert_eq!(got, expected, "{filter:?}");
    }
    // Whole orders come back, not just ids.
    let newest = store.list_orders(&OrderFilter { limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(newest, vec![placed[1].3.clone()]);
}

pub async fn idempotency_begin_is_put_if_absent(store: Arc<dyn Store>) {
    let key = format!("k-{}", unique());
    let until = later();
    assert_eq!(
        store.idempotency_begin(&key, "fp-1", until).await.unwrap(),
        IdempotencyBegin::Started
    );
    let again = store.idempotency_begin(&key, "fp-2", later()).await.unwrap();
    let IdempotencyBegin::Existing(record) = again else { panic!("{again:?}") };
    assert_eq!(record.key, key);
    assert_eq!(record.fingerprint, "fp-1", "the first holder's fingerprint is kept");
    assert_eq!(record.state, IdempotencyState::InProgress);
    assert_eq!(store.idempotency_get(&key).await.unwrap(), Some(record));
    // Another key is independent.
    let other = format!("k-{}", unique());
    assert_eq!(
        store.idempotency_begin(&other, "fp-1", until).await.unwrap(),
        IdempotencyBegin::Started
    );
}

pub async fn idempotency_complete_stores_the_response_once(store: Arc<dyn Store>) {
    let key = format!("k-{}", unique());
    store.idempotency_begin(&key, "fp", later()).await.unwrap();
    // Any bytes, not only UTF-8, come back exactly.
    let response = StoredResponse { status: 201, body: vec![0, 159, 146, 150, b'{', b'}'] };
    store.idempotency_complete(&key, &response).await.unwrap();
    let record = store.idempotency_get(&key).await.unwrap().unwrap();
    assert_eq!(record.state, IdempotencyState::Completed(response.clone()));
    assert_eq!(record.fingerprint, "fp");

    let replay = store.idempotency_begin(&key, "fp", later()).await.unwrap();
    assert_eq!(replay, IdempotencyBegin::Existing(record));

    let other = StoredResponse { status: 500, body: vec![] };
    assert_eq!(err_code(store.idempotency_complete(&key, &other).await), ErrorCode::AlreadyExists);
    assert_eq!(
        store.idempotency_get(&key).await.unwrap().unwrap().state,
        IdempotencyState::Completed(response)
    );
    assert_eq!(
        err_code(store.idempotency_complete("never-begun", &other).await),
        ErrorCode::NotFound
    );
    assert_eq!(store.idempotency_get("never-begun").await.unwrap(), None);
}

pub async fn idempotency_release_frees_only_in_progress_keys(store: Arc<dyn Store>) {
    let key = format!("k-{}", unique());
    store.idempotency_begin(&key, "fp-1", later()).await.unwrap();
    store.idempotency_release(&key).await.unwrap();
    assert_eq!(store.idempotency_get(&key).await.unwrap(), None);
    assert_eq!(
        store.idempotency_begin(&key, "fp-2", later()).await.unwrap(),
        IdempotencyBegin::Started
    );

    let response = StoredResponse { status: 200, body: b"ok".to_vec() };
    store.idempotency_complete(&key, &response).await.unwrap();
    store.idempotency_release(&key).await.unwrap();
    let record = store.idempotency_get(&key).await.unwrap().unwrap();
    assert_eq!(record.state, IdempotencyState::Completed(response), "a stored answer stays");

    store.idempotency_release("never-begun").await.unwrap();
}

/// Records written already expired stand for records whose time ran out:
/// the contract cannot move a backend's clock.
pub async fn idempotency_expired_records_are_taken_over(store: Arc<dyn Store>) {
    let key = format!("k-{}", unique());
    assert_eq!(
        store.idempotency_begin(&key, "fp-old", soon_expired()).await.unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(store.idempotency_get(&key).await.unwrap(), None, "expired reads as absent");
    let response = StoredResponse { status: 200, body: vec![1] };
    assert_eq!(err_code(store.idempotency_complete(&key, &response).await), ErrorCode::NotFound);

    let until = later();
    assert_eq!(
        store.idempotency_begin(&key, "fp-new", until).await.unwrap(),
        IdempotencyBegin::Started
    );
    let record = store.idempotency_get(&key).await.unwrap().unwrap();
    assert_eq!(record.fingerprint, "fp-new");
    assert_eq!(record.state, IdempotencyState::InProgress);
    assert_eq!(record.expires_at, until);

    // A completed record whose time runs out is taken over as well. This
    // one has to wait: a record cannot be completed once expired.
    let done = format!("k-{}", unique());
    let short = OffsetDateTime::now_utc() + Duration::seconds(1);
    store.idempotency_begin(&done, "fp", short).await.unwrap();
    store.idempotency_complete(&done, &response).await.unwrap();
    let wait = short - OffsetDateTime::now_utc() + Duration::milliseconds(50);
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    assert_eq!(store.idempotency_get(&done).await.unwrap(), None);
    assert_eq!(
        store.idempotency_begin(&done, "fp-2", later()).await.unwrap(),
        IdempotencyBegin::Started
    );
    let record = store.idempotency_get(&done).await.unwrap().unwrap();
    assert_eq!((record.fingerprint.as_str(), record.state), ("fp-2", IdempotencyState::InProgress));
}

pub async fn mandate_ids_are_reserved_once_until_they_expire(store: Arc<dyn Store>) {
    let id = format!("mandate-{}", unique());
    assert!(store.reserve_mandate_id(&id, later()).await.unwrap());
    assert!(!store.reserve_mandate_id(&id, later()).await.unwrap(), "a replay");
    assert!(store.reserve_mandate_id(&format!("{id}-2"), later()).await.unwrap());

    let old = format!("mandate-{}", unique());
    assert!(store.reserve_mandate_id(&old, soon_expired()).await.unwrap());
    assert!(store.reserve_mandate_id(&old, later()).await.unwrap(), "expired ids are reusable");
    assert!(!store.reserve_mandate_id(&old, later()).await.unwrap());
}

/// A list of ids is reserved in order up to the first one used before;
/// the ones before it stay reserved and the ones after it are not taken.
pub async fn mandate_ids_are_reserved_in_order_up_to_the_first_replay(store: Arc<dyn Store>) {
    let id = |n: &str| format!("mandate-{n}-{}", unique());
    let (a, b, c, d, e) = (id("a"), id("b"), id("c"), id("d"), id("e"));
    let all = [(a.as_str(), later()), (b.as_str(), later()), (c.as_str(), later())];
    assert_eq!(store.reserve_mandate_ids(&all).await.unwrap(), 3);
    assert!(!store.reserve_mandate_id(&b, later()).await.unwrap(), "each one is reserved");
    let replayed = [(d.as_str(), later()), (b.as_str(), later()), (e.as_str(), later())];
    assert_eq!(store.reserve_mandate_ids(&replayed).await.unwrap(), 1, "stops at b");
    assert!(!store.reserve_mandate_id(&d, later()).await.unwrap(), "d stays reserved");
    assert!(store.reserve_mandate_id(&e, later()).await.unwrap(), "e was not taken");
    assert_eq!(store.reserve_mandate_ids(&[]).await.unwrap(), 0);
    let old = id("old");
    assert!(store.reserve_mandate_id(&old, soon_expired()).await.unwrap());
    let renewed = [(old.as_str(), later()), (c.as_str(), later())];
    assert_eq!(store.reserve_mandate_ids(&renewed).await.unwrap(), 1, "expired ids are reusable");
}

pub async fn webhook_events_are_deduplicated_per_source(store: Arc<dyn Store>) {
    let cases = [
        ("stripe", "evt_1", true),
        ("stripe", "evt_1", false),
        ("stripe", "evt_2", true),
        ("shopify", "evt_1", true),
        ("shopify", "evt_1", false),
    ];
    for (source, event, fresh) in cases {
        assert_eq!(
            store.mark_webhook_seen(source, event).await.unwrap(),
            fresh,
            "{source}/{event}"
        );
    }
}

pub async fn stock_set_and_get(store: Arc<dyn Store>) {
    let s = sku("SET-1");
    assert_eq!(store.get_stock(&s).await.unwrap(), None);
    for q in [10, 3, 0, u32::MAX] {
        store.set_stock(&s, q).await.unwrap();
        assert_eq!(store.get_stock(&s).await.unwrap(), Some(q));
    }
    assert_eq!(store.get_stock(&sku("SET-2")).await.unwrap(), None);
}

pub async fn stock_decrement_is_conditional(store: Arc<dyn Store>) {
    let s = sku("DEC-1");
    store.set_stock(&s, 10).await.unwrap();
    // (take, expected remaining or error, stock afterwards)
    let cases: [(u32, Result<u32, ErrorCode>, u32); 6] = [
        (3, Ok(7), 7),
        (8, Err(ErrorCode::InsufficientStock), 7),
        (0, Ok(7), 7),
        (7, Ok(0), 0),
        (1, Err(ErrorCode::InsufficientStock), 0),
        (u32::MAX, Err(ErrorCode::InsufficientStock), 0),
    ];
    for (take, want, after) in cases {
        let got = store.decrement_stock(&s, take).await.map_err(|e| e.code());
        assert_eq!(got, want, "take {take}");
        assert_eq!(store.get_stock(&s).await.unwrap(), Some(after), "after taking {take}");
    }
    let uncounted = sku("DEC-NONE");
    assert_eq!(err_code(store.decrement_stock(&uncounted, 1).await), ErrorCode::InsufficientStock);
    assert_eq!(store.get_stock(&uncounted).await.unwrap(), None);
}

pub async fn stock_adjust_never_goes_below_zero(store: Arc<dyn Store>) {
    let s = sku("ADJ-1");
    // (delta, expected result, stock afterwards)
    let cases: [(i64, Result<u32, ErrorCode>, Option<u32>); 7] = [
        (-1, Err(ErrorCode::InsufficientStock), None),
        (5, Ok(5), Some(5)),
        (-2, Ok(3), Some(3)),
        (-4, Err(ErrorCode::InsufficientStock), Some(3)),
        (i64::MIN, Err(ErrorCode::InsufficientStock), Some(3)),
        (-3, Ok(0), Some(0)),
        (0, Ok(0), Some(0)),
    ];
    for (delta, want, after) in cases {
        let got = store.adjust_stock(&s, delta).await.map_err(|e| e.code());
        assert_eq!(got, want, "delta {delta}");
        assert_eq!(store.get_stock(&s).await.unwrap(), after, "after delta {delta}");
    }
    let full = sku("ADJ-2");
    store.set_stock(&full, u32::MAX).await.unwrap();
    assert_eq!(err_code(store.adjust_stock(&full, 1).await), ErrorCode::InvalidInput);
    assert_eq!(err_code(store.adjust_stock(&full, i64::MAX).await), ErrorCode::InvalidInput);
    assert_eq!(store.get_stock(&full).await.unwrap(), Some(u32::MAX));
}

pub async fn ledger_round_trips_and_filters_by_range_and_currency(store: Arc<dyn Store>) {
    let t1 = datetime!(2026-06-01 00:00:00 UTC);
    let entry = |id: &str, at: OffsetDateTime, kind: LedgerKind, gross: Money, fee: Money| {
        LedgerEntry { id: id.into(), order_id: order_id(), kind, gross, fee, at }
    };
    let entries = [
        entry("l-before", t1 - Duration::nanoseconds(1), LedgerKind::Fee, usd(1000), usd(30)),
        entry("l-start", t1, LedgerKind::Fee, usd(2000), usd(60)),
        // 00:30:00.5 UTC. Its local text sorts after l-reversal's; the
        // order must follow the instant, not the text.
        entry(
            "l-offset",
            datetime!(2026-06-01 02:30:00.5 +02:00),
            LedgerKind::Fee,
            eur(500),
            eur(15),
        ),
        entry("l-reversal", t1 + Duration::hours(1), LedgerKind::Reversal, usd(-2000), usd(-60)),
        entry("l-eur", t1 + Duration::hours(2), LedgerKind::Fee, eur(700), eur(21)),
        entry("l-end", t1 + Duration::days(1), LedgerKind::Fee, usd(10), usd(1)),
        // 23:00 UTC the day before: its local date is inside the range, the
        // instant is not.
        entry("l-local", datetime!(2026-06-01 01:00:00 +02:00), LedgerKind::Fee, eur(1), eur(0)),
    ];
    // Appended out of order on purpose.
    for i in [3, 0, 6, 5, 2, 1, 4] {
        store.append_ledger(&entries[i]).await.unwrap();
    }
    let ids = |v: Vec<LedgerEntry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let end = t1 + Duration::days(1);
    let eur_c = Currency::parse("EUR").unwrap();
    let in_range: &[&str] = &["l-start", "l-offset", "l-reversal", "l-eur"];
    let cases: [(OffsetDateTime, OffsetDateTime, Option<Currency>, &[&str]); 9] = [
        (t1, end, None, in_range),
        // The same bounds written in another offset.
        (datetime!(2026-06-01 02:00 +02:00), end, None, in_range),
        (t1, end, Some(Currency::usd()), &["l-start", "l-reversal"]),
        (t1, end, Some(eur_c), &["l-offset", "l-eur"]),
        (
            far_past(),
            far_future(),
            None,
            &["l-local", "l-before", "l-start", "l-offset", "l-reversal", "l-eur", "l-end"],
        ),
        (t1 - Duration::nanoseconds(1), t1, None, &["l-before"]),
        (t1, t1 + Duration::nanoseconds(1), None, &["l-start"]),
        (t1, t1, None, &[]),
        (end, t1, None, &[]),
    ];
    for (from, to, currency, want) in cases {
        let got = ids(store.ledger_entries(from, to, currency).await.unwrap());
        assert_eq!(got, want, "[{from}, {to}) {currency:?}");
    }
    // Whole entries come back, negative amounts included.
    let all = store.ledger_entries(far_past(), far_future(), None).await.unwrap();
    for e in &entries {
        assert_eq!(all.iter().find(|g| g.id == e.id), Some(e));
    }

    let mut dup = entries[0].clone();
    dup.fee = usd(1);
    assert_eq!(err_code(store.append_ledger(&dup).await), ErrorCode::AlreadyExists);
    let mixed = entry("l-mixed", t1, LedgerKind::Fee, usd(1), eur(1));
    assert_eq!(err_code(store.append_ledger(&mixed).await), ErrorCode::CurrencyMismatch);
    assert_eq!(store.ledger_entries(far_past(), far_future(), None).await.unwrap(), all);
}

pub async fn concurrent_compare_and_set_has_one_winner_per_version(store: Arc<dyn Store>) {
    const TASKS: usize = 32;
    const ROUNDS: usize = 5;
    let cart = cart();
    store.insert_cart(&cart).await.unwrap();
    for round in 0..ROUNDS {
        let version = store.get_cart(&cart.id).await.unwrap().unwrap().version;
        let barrier = Arc::new(Barrier::new(TASKS));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let mut mine = cart.clone();
            mine.owner = Some(format!("round-{round}-task-{task}"));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (mine.owner.clone(), store.update_cart(&mine, version).await.map_err(|e| e.code()))
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (owner, Ok(v)) => winners.push((owner, v)),
                (_, Err(code)) => assert_eq!(code, ErrorCode::VersionConflict),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let got = store.get_cart(&cart.id).await.unwrap().unwrap();
        assert_eq!(
            (got.value.owner, got.version),
            winners.remove(0),
            "the winner's write is stored"
        );
    }
}

pub async fn concurrent_decrements_never_oversell(store: Arc<dyn Store>) {
    let s = sku("RACE-1");
    store.set_stock(&s, 10).await.unwrap();
    let barrier = Arc::new(Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (store, barrier, s) = (Arc::clone(&store), Arc::clone(&barrier), s.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.decrement_stock(&s, 1).await.map_err(|e| e.code())
            })
        })
        .collect();
    let mut left_seen = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(left) => left_seen.push(left),
            Err(code) => {
                assert_eq!(code, ErrorCode::InsufficientStock);
                refused += 1;
            }
        }
    }
    left_seen.sort_unstable();
    assert_eq!(left_seen, (0..10).collect::<Vec<u32>>(), "each success saw its own remainder");
    assert_eq!(refused, 90);
    assert_eq!(store.get_stock(&s).await.unwrap(), Some(0));
}

pub async fn concurrent_commits_never_oversell(store: Arc<dyn Store>) {
    const SESSIONS: usize = 20;
    const UNITS: u32 = 5;
    // Each session takes one scarce unit and one plentiful one, so a commit
    // that failed on the scarce SKU must also leave the plentiful one alone.
    store.set_stock(&sku("SCARCE"), UNITS).await.unwrap();
    store.set_stock(&sku("PLENTY"), 1000).await.unwrap();
    let mut commits = Vec::new();
    for _ in 0..SESSIONS {
        let session = full_session(&[("PLENTY", 1), ("SCARCE", 1)]);
        store.insert_checkout(&session).await.unwrap();
        commits.push(commit_for(&session, T0));
    }
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let tasks: Vec<_> = commits
        .iter()
        .cloned()
        .map(|commit| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let result = store.commit_checkout(&commit).await.map_err(|e| e.code());
                (commit, result)
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        let (commit, result) = task.await.unwrap();
        let session = store.get_checkout(&commit.session.id).await.unwrap().unwrap();
        let order = store.get_order(&commit.order.id).await.unwrap();
        match result {
            Ok(()) => {
                placed += 1;
                assert_eq!(session.value.status(), CheckoutStatus::Completed);
                assert_eq!(order.map(|o| o.value), Some(commit.order));
            }
            Err(code) => {
                assert_eq!(code, ErrorCode::InsufficientStock);
                assert_eq!(session.value.status(), CheckoutStatus::ReadyForComplete);
                assert_eq!(session.version, 1);
                assert_eq!(order, None);
                assert!(store.order_events(&commit.order.id).await.unwrap().is_empty());
            }
        }
    }
    assert_eq!(placed, UNITS as usize);
    let orders =
        store.list_orders(&OrderFilter { limit: 500, ..Default::default() }).await.unwrap();
    assert_eq!(orders.len(), UNITS as usize);
    assert_eq!(store.get_stock(&sku("SCARCE")).await.unwrap(), Some(0));
    assert_eq!(store.get_stock(&sku("PLENTY")).await.unwrap(), Some(1000 - UNITS));
    let ledger = store.ledger_entries(far_past(), far_future(), None).await.unwrap();
    assert_eq!(ledger.len(), UNITS as usize);
}

pub async fn discount_uses_count_completed_sessions(store: Arc<dyn Store>) {
    let code = format!("C{}", unique().to_ascii_uppercase());
    let with_code = |lines: &[(&str, u32)]| {
        let mut s = full_session(lines);
        s.discount_codes = vec![code.clone()];
        s.applied_discounts[0].code = code.clone();
        s
    };
    assert_eq!(store.discount_uses(&code).await.unwrap(), 0);
    // A session that has not completed has not used the code yet.
    let open = with_code(&[("A", 1)]);
    store.insert_checkout(&open).await.unwrap();
    assert_eq!(store.discount_uses(&code).await.unwrap(), 0);
    for _ in 0..2 {
        let session = with_code(&[("A", 1)]);
        prepare(&*store, &session, &[("A", 5)]).await;
        store.commit_checkout(&commit_for(&session, T0 + Duration::seconds(3))).await.unwrap();
    }
    assert_eq!(store.discount_uses(&code).await.unwrap(), 2);
    assert_eq!(store.discount_uses("SOMETHING-ELSE").await.unwrap(), 0);
}

// ---------------------------------------------------------------- webhooks

pub async fn webhook_events_can_be_forgotten_after_a_failure(store: Arc<dyn Store>) {
    let id = format!("evt_{}", unique());
    assert!(store.mark_webhook_seen("stripe", &id).await.unwrap());
    assert!(!store.mark_webhook_seen("stripe", &id).await.unwrap());
    store.forget_webhook("stripe", &id).await.unwrap();
    assert!(store.mark_webhook_seen("stripe", &id).await.unwrap(), "seen anew after forgetting");
    // Forgetting is per source, and forgetting the unknown is harmless.
    assert!(store.mark_webhook_seen("other", &id).await.unwrap());
    store.forget_webhook("other", &id).await.unwrap();
    assert!(!store.mark_webhook_seen("stripe", &id).await.unwrap());
    store.forget_webhook("stripe", "never-seen").await.unwrap();
}

// ---------------------------------------------------------------- outbox

/// The lease length the outbox cases use.
const LEASE: Duration = Duration::seconds(30);

pub async fn outbox_rows_commit_with_the_checkout_or_not_at_all(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let mut commit = commit_for(&session, T0);
    commit.outbox.push(outbox_message(&commit.order.id, OutboxKind::Notification, T0));

    // A failed commit (stale version) leaves no message behind.
    let stale = CheckoutCommit { expected_version: 7, ..commit.clone() };
    assert_eq!(err_code(store.commit_checkout(&stale).await), ErrorCode::VersionConflict);
    assert!(outbox_of(&*store, &commit.order.id).await.is_empty());

    store.commit_checkout(&commit).await.unwrap();
    let entries = outbox_of(&*store, &commit.order.id).await;
    let messages: Vec<_> = entries.iter().map(|e| e.message.clone()).collect();
    let mut want = commit.outbox.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    let mut got = messages.clone();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want, "every field round-trips");
    for e in &entries {
        assert_eq!(
            (e.status, e.attempts, e.last_error.as_deref()),
            (OutboxStatus::Pending, 0, None)
        );
        assert_eq!(e.next_attempt_at, e.message.created_at, "due at once");
        assert_eq!(e.delivered_at, None);
    }

    // A message id is put-if-absent: a second commit reusing one writes
    // nothing at all.
    let other = full_session(&[("A", 1)]);
    prepare(&*store, &other, &[]).await;
    let mut second = commit_for(&other, T0);
    second.outbox = vec![commit.outbox[0].clone()];
    second.outbox[0].order_id = Some(second.order.id.clone());
    assert_eq!(err_code(store.commit_checkout(&second).await), ErrorCode::AlreadyExists);
    assert!(store.get_order(&second.order.id).await.unwrap().is_none());
}

pub async fn outbox_rows_commit_with_the_order_update_or_not_at_all(store: Arc<dyn Store>) {
    let session = full_session(&[("A", 1)]);
    prepare(&*store, &session, &[("A", 10)]).await;
    let mut commit = commit_for(&session, T0);
    commit.outbox.clear();
    store.commit_checkout(&commit).await.unwrap();
    let v1 = store.get_order(&commit.order.id).await.unwrap().unwrap().version;

    let mut order = commit.order.clone();
    let event = order.transition(OrderStatus::Fulfilled, "ops", "shipped", "t", T0).unwrap();
    let message = outbox_message(&order.id, OutboxKind::OrderWebhook, T0 + Duration::hours(1));
    // Stale: neither the order, nor the event, nor the message.
    let stale = store
        .update_order(&order, v1 + 5, std::slice::from_ref(&event), std::slice::from_ref(&message))
        .await;
    assert_eq!(err_code(stale), ErrorCode::VersionConflict);
    assert!(outbox_of(&*store, &order.id).await.is_empty());
    // A message about another order is refused before anything is written.
    let foreign = OutboxMessage { order_id: Some(order_id()), ..message.clone() };
    let refused = store.update_order(&order, v1, std::slice::from_ref(&event), &[foreign]).await;
    assert_eq!(err_code(refused), ErrorCode::InvalidInput);

    let v2 = store
        .update_order(&order, v1, std::slice::from_ref(&event), std::slice::from_ref(&message))
        .await
        .unwrap();
    assert!(v2 > v1);
    let entries = outbox_of(&*store, &order.id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].message, message);

    // Reusing the message id aborts the whole update.
    let again = order.transition(OrderStatus::Delivered, "ops", "at the door", "t", T0).unwrap();
    let dup = store.update_order(&order, v2, &[again], std::slice::from_ref(&message)).await;
    assert_eq!(err_code(dup), ErrorCode::AlreadyExists);
    let stored = store.get_order(&order.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.value.status()), (v2, OrderStatus::Fulfilled));
}

/// Commits an order with `n` webhook messages due at `T0`, and returns their ids.
async fn order_with_messages(store: &dyn Store, n: usize) -> (OrderId, Vec<String>) {
    let session = full_session(&[("A", 1)]);
    prepare(store, &session, &[("A", 10)]).await;
    let mut commit = commit_for(&session, T0);
    commit.outbox =
        (0..n).map(|_| outbox_message(&commit.order.id, OutboxKind::OrderWebhook, T0)).collect();
    store.commit_checkout(&commit).await.unwrap();
    let ids = commit.outbox.iter().map(|m| m.id.clone()).collect();
    (commit.order.id, ids)
}

/// Claims of the messages of `order` at `now` (other orders' messages may
/// share the store).
async fn claim_of(store: &dyn Store, order: &OrderId, now: OffsetDateTime) -> Vec<OutboxLease> {
    let all = store.claim_outbox(now, LEASE, 1000).await.unwrap();
    all.into_iter().filter(|l| l.message.order_id.as_ref() == Some(order)).collect()
}

pub async fn outbox_claims_are_exclusive_until_the_lease_runs_out(store: Arc<dyn Store>) {
    let (order, ids) = order_with_messages(&*store, 2).await;
    // Not due before its time.
    assert!(claim_of(&*store, &order, T0 - Duration::seconds(1)).await.is_empty());
    let now = T0 + Duration::seconds(1);
    let first = claim_of(&*store, &order, now).await;
    let mut claimed: Vec<_> = first.iter().map(|l| l.message.id.clone()).collect();
    claimed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(claimed, want);
    for l in &first {
        assert_eq!(l.attempts, 0);
        assert_eq!(l.until, now + LEASE);
        assert!(!l.token.is_empty());
    }
    assert_ne!(first[0].token, first[1].token, "each message has its own token");
    // Leased: nobody else gets them, even later within the lease.
    assert!(claim_of(&*store, &order, now + LEASE - Duration::seconds(1)).await.is_empty());
    // After the lease the messages are due again, under new tokens.
    let later = now + LEASE + Duration::seconds(1);
    let second = claim_of(&*store, &order, later).await;
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|l| first.iter().all(|f| f.token != l.token)));
    // The first worker, whose lease ran out, cannot settle them.
    for l in &first {
        assert_eq!(
            err_code(store.finish_outbox(l, &OutboxResult::Delivered).await),
            ErrorCode::VersionConflict
        );
    }
    // A limit is honoured.
    let (other, _) = order_with_messages(&*store, 3).await;
    let some = store.claim_outbox(T0 + Duration::seconds(2), LEASE, 1).await.unwrap();
    assert_eq!(some.len(), 1);
    let _ = other;
}

pub async fn outbox_results_settle_only_under_the_lease(store: Arc<dyn Store>) {
    let (order, ids) = order_with_messages(&*store, 3).await;
    let now = T0 + Duration::seconds(1);
    let leases = claim_of(&*store, &order, now).await;
    assert_eq!(leases.len(), 3);
    let by_id = |id: &str| leases.iter().find(|l| l.message.id == id).unwrap().clone();
    let (delivered, retried, dead) = (by_id(&ids[0]), by_id(&ids[1]), by_id(&ids[2]));
    let retry_at = now + Duration::minutes(5);

    store.finish_outbox(&delivered, &OutboxResult::Delivered).await.unwrap();
    let retry = OutboxResult::Retry { at: retry_at, error: "the endpoint answered 503".into() };
    store.finish_outbox(&retried, &retry).await.unwrap();
    store.finish_outbox(&dead, &OutboxResult::Dead { error: "gave up".into() }).await.unwrap();
    // Settled once: the same lease cannot settle again.
    assert_eq!(
        err_code(store.finish_outbox(&delivered, &OutboxResult::Delivered).await),
        ErrorCode::VersionConflict
    );

    let entries = outbox_of(&*store, &order).await;
    let entry = |id: &str| entries.iter().find(|e| e.message.id == id).unwrap().clone();
    let d = entry(&ids[0]);
    assert_eq!((d.status, d.attempts), (OutboxStatus::Delivered, 1));
    assert!(d.delivered_at.is_some());
    let r = entry(&ids[1]);
    assert_eq!((r.status, r.attempts, r.next_attempt_at), (OutboxStatus::Pending, 1, retry_at));
    assert_eq!(r.last_error.as_deref(), Some("the endpoint answered 503"));
    let x = entry(&ids[2]);
    assert_eq!(
        (x.status, x.attempts, x.last_error.as_deref()),
        (OutboxStatus::Dead, 1, Some("gave up"))
    );
    let dead_only =
        OutboxFilter { order_id: Some(order.clone()), status: Some(OutboxStatus::Dead), limit: 0 };
    assert_eq!(store.outbox_entries(&dead_only).await.unwrap().len(), 1);

    // Only the retried one comes back, and only when it is due.
    assert!(claim_of(&*store, &order, retry_at - Duration::seconds(1)).await.is_empty());
    let again = claim_of(&*store, &order, retry_at).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].message.id.as_str(), again[0].attempts), (ids[1].as_str(), 1));
    store.finish_outbox(&again[0], &OutboxResult::Delivered).await.unwrap();
    assert!(claim_of(&*store, &order, retry_at + Duration::days(1)).await.is_empty());
}

pub async fn concurrent_outbox_claims_never_share_a_message(store: Arc<dyn Store>) {
    let (order, ids) = order_with_messages(&*store, 12).await;
    let workers = 8;
    let barrier = Arc::new(Barrier::new(workers));
    let now = T0 + Duration::seconds(1);
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (store, barrier, order) = (Arc::clone(&store), barrier.clone(), order.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let all = store.claim_outbox(now, LEASE, 3).await.unwrap();
                all.into_iter()
                    .filter(|l| l.message.order_id.as_ref() == Some(&order))
                    .map(|l| l.message.id)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a message was leased twice: {claimed:?}");
    assert_eq!(claimed.len(), ids.len(), "eight workers taking three each cover all twelve");
}

/// Orders at T0 + 1..=6 minutes; the window [T0+2, T0+6) read two at a
/// time, newest first, each page continuing after the last order of the
/// one before.
pub async fn list_orders_pages_through_a_time_window(store: Arc<dyn Store>) {
    let mut placed = Vec::new();
    for minutes in 1..=6 {
        let session = full_session(&[("A", 1)]);
        prepare(&*store, &session, &[]).await;
        let mut commit = commit_for(&session, T0);
        commit.stock.clear();
        let at = T0 + Duration::minutes(minutes);
        commit.order = order_for(&session, commit.order.id.clone(), OrderStatus::Paid, at);
        store.commit_checkout(&commit).await.unwrap();
        placed.push(commit.order);
    }
    let window = |before: Option<(OffsetDateTime, OrderId)>| OrderFilter {
        created_from: Some(T0 + Duration::minutes(2)),
        created_to: Some(T0 + Duration::minutes(6)),
        before,
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..4 {
        let page = store.list_orders(&window(cursor.clone())).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        let last = page.last().unwrap();
        cursor = Some((last.created_at, last.id.clone()));
        seen.extend(page.into_iter().map(|o| o.id));
    }
    let want: Vec<OrderId> = placed[1..5].iter().rev().map(|o| o.id.clone()).collect();
    assert_eq!(seen, want, "minutes 5, 4, 3, 2: from is inclusive, to exclusive, no repeats");
}

fn audit(id: &str, target: &str, delta: i64, at: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        id: id.into(),
        action: "adjust_stock".into(),
        target: target.into(),
        actor: "ops@example".into(),
        reason: "cycle count".into(),
        trace_id: "trace-1".into(),
        fingerprint: format!("fp-{delta}"),
        delta,
        stock_after: None,
        at,
    }
}

pub async fn audited_stock_adjustment_writes_its_record_once(store: Arc<dyn Store>) {
    let s = sku("AUD-1");
    store.set_stock(&s, 5).await.unwrap();
    let id = format!("adjust_stock:{}", unique());
    let first = store.adjust_stock_audited(&s, &audit(&id, "AUD-1", -2, T0)).await.unwrap();
    let AuditedStock::Applied(written) = first else { panic!("first adjustment must apply") };
    assert_eq!(written.stock_after, Some(3));
    assert_eq!(store.get_stock(&s).await.unwrap(), Some(3));
    // The same id again, even with another delta, changes nothing and
    // answers the record as first written.
    let again = store.adjust_stock_audited(&s, &audit(&id, "AUD-1", 7, T0)).await.unwrap();
    assert_eq!(again, AuditedStock::Existing(written.clone()));
    assert_eq!(store.get_stock(&s).await.unwrap(), Some(3));
    let listed = store.audit_records(&AuditFilter::default()).await.unwrap();
    assert_eq!(listed, vec![written]);
    // A SKU never counted starts from zero.
    let fresh = sku("AUD-NEW");
    let id2 = format!("adjust_stock:{}", unique());
    let added = store.adjust_stock_audited(&fresh, &audit(&id2, "AUD-NEW", 4, T0)).await.unwrap();
    assert!(matches!(added, AuditedStock::Applied(r) if r.stock_after == Some(4)));
    assert_eq!(store.get_stock(&fresh).await.unwrap(), Some(4));
}

pub async fn audited_stock_adjustment_never_goes_below_zero(store: Arc<dyn Store>) {
    let s = sku("AUD-2");
    store.set_stock(&s, 1).await.unwrap();
    let id = format!("adjust_stock:{}", unique());
    let refused = store.adjust_stock_audited(&s, &audit(&id, "AUD-2", -2, T0)).await;
    assert_eq!(err_code(refused), ErrorCode::InsufficientStock);
    assert_eq!(store.get_stock(&s).await.unwrap(), Some(1));
    let id2 = format!("adjust_stock:{}", unique());
    let too_many = audit(&id2, "AUD-2", i64::from(u32::MAX), T0);
    assert_eq!(err_code(store.adjust_stock_audited(&s, &too_many).await), ErrorCode::InvalidInput);
    assert_eq!(store.get_stock(&s).await.unwrap(), Some(1));
    assert!(store.audit_records(&AuditFilter::default()).await.unwrap().is_empty(), "no record");
    // The refused key is still free: a corrected request under it applies.
    let ok = store.adjust_stock_audited(&s, &audit(&id, "AUD-2", -1, T0)).await.unwrap();
    assert!(matches!(ok, AuditedStock::Applied(r) if r.stock_after == Some(0)));
}

/// Checkout decrements and operator adjustments racing on one SKU: every
/// one that reports success is in the final count.
pub async fn audited_adjustments_and_decrements_lose_no_update(store: Arc<dyn Store>) {
    let s = sku("AUD-RACE");
    store.set_stock(&s, 50).await.unwrap();
    let barrier = Arc::new(Barrier::new(30));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (store, barrier, s) = (Arc::clone(&store), Arc::clone(&barrier), s.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            if i % 3 == 0 {
                let id = format!("adjust_stock:race-{}", unique());
                store
                    .adjust_stock_audited(&s, &audit(&id, "AUD-RACE", 2, T0))
                    .await
                    .map(|_| 2i64)
                    .map_err(|e| e.code())
            } else {
                store.decrement_stock(&s, 1).await.map(|_| -1i64).map_err(|e| e.code())
            }
        }));
    }
    let mut expected = 50i64;
    for task in tasks {
        match task.await.unwrap() {
            Ok(delta) => expected += delta,
            // Contention may exhaust an adjustment's retries; it then
            // changed nothing.
            Err(code) => assert_eq!(code, ErrorCode::VersionConflict),
        }
    }
    assert_eq!(store.get_stock(&s).await.unwrap(), Some(u32::try_from(expected).unwrap()));
    let applied = store.audit_records(&AuditFilter::default()).await.unwrap();
    assert_eq!(i64::try_from(applied.len()).unwrap() * 2 - 20, expected - 50);
}

pub async fn audit_records_filter_by_target_newest_first(store: Arc<dyn Store>) {
    let (a, b) = (sku("AUD-A"), sku("AUD-B"));
    let mut written = Vec::new();
    for (i, (s, name)) in [(&a, "AUD-A"), (&b, "AUD-B"), (&a, "AUD-A")].into_iter().enumerate() {
        let id = format!("adjust_stock:{}", unique());
        let at = T0 + Duration::seconds(i as i64);
        match store.adjust_stock_audited(s, &audit(&id, name, 1, at)).await.unwrap() {
            AuditedStock::Applied(r) => written.push(r),
            other => panic!("{other:?}"),
        }
    }
    let all = store.audit_records(&AuditFilter::default()).await.unwrap();
    assert_eq!(all, written.iter().rev().cloned().collect::<Vec<_>>());
    let only_a = AuditFilter { target: Some("AUD-A".into()), limit: 0 };
    let got = store.audit_records(&only_a).await.unwrap();
    assert_eq!(got, vec![written[2].clone(), written[0].clone()]);
    assert_eq!(got[0].stock_after, Some(2));
    let one = store.audit_records(&AuditFilter { target: None, limit: 1 }).await.unwrap();
    assert_eq!(one, vec![written[2].clone()]);
}

pub async fn checkouts_needing_attention_are_escalated_or_stuck(store: Arc<dyn Store>) {
    let ready = full_session(&[("A", 1)]);
    store.insert_checkout(&ready).await.unwrap();
    let escalated = full_session(&[("A", 1)])
        .transition(CheckoutStatus::RequiresEscalation, T0 + Duration::seconds(5))
        .unwrap();
    store.insert_checkout(&escalated).await.unwrap();
    let stuck = full_session(&[("A", 1)])
        .transition(CheckoutStatus::CompleteInProgress, T0 + Duration::seconds(3))
        .unwrap();
    store.insert_checkout(&stuck).await.unwrap();
    let got = store.checkouts_needing_attention(0).await.unwrap();
    let ids: Vec<_> = got.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, vec![stuck.id.clone(), escalated.id.clone()], "oldest change first");
    assert_eq!(got[1], escalated);
    // A session that moves on leaves the list.
    let resolved = escalated
        .clone()
        .transition(CheckoutStatus::ReadyForComplete, T0 + Duration::seconds(6))
        .unwrap();
    store.update_checkout(&resolved, 1).await.unwrap();
    let ids: Vec<_> =
        store.checkouts_needing_attention(10).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![stuck.id.clone()]);
}

/// The shape of a completion paid on a backend's own checkout (Shopify):
/// the backend keeps the stock, so no line is counted here, and no mandate
/// or outbox message goes with it. It still commits all-or-nothing, and a
/// second report of the same order (same derived order id) writes nothing.
pub async fn commit_checkout_without_stock_or_mandates_commits_once(store: Arc<dyn Store>) {
    let session = full_session(&[("SHOP-KEPT", 2)]);
    store.insert_checkout(&session).await.unwrap();
    let mut commit = commit_for(&session, T0);
    commit.stock.clear();
    commit.mandates.clear();
    commit.outbox.clear();
    store.commit_checkout(&commit).await.unwrap();

    let got = store.get_checkout(&session.id).await.unwrap().unwrap();
    assert_eq!(got.value.status(), CheckoutStatus::Completed);
    assert_eq!(got.value.order_id.as_ref(), Some(&commit.order.id));
    assert_eq!(store.get_order(&commit.order.id).await.unwrap().unwrap().value, commit.order);
    assert_eq!(store.order_events(&commit.order.id).await.unwrap(), commit.events);
    assert!(store.order_mandates(&commit.order.id).await.unwrap().is_empty());
    assert_eq!(store.get_stock(&sku("SHOP-KEPT")).await.unwrap(), None, "stock untouched");
    assert!(outbox_of(&*store, &commit.order.id).await.is_empty());

    // The same report again, racing: the session moved on, so nothing is
    // written, whatever the store checks first.
    let before = snapshot(&*store, &commit).await;
    let code = err_code(store.commit_checkout(&commit).await);
    assert!(matches!(code, ErrorCode::VersionConflict | ErrorCode::AlreadyExists), "{code:?}");
    assert_eq!(snapshot(&*store, &commit).await, before);
}
