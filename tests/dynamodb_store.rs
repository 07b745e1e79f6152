//! The DynamoDB store against the store contract, on a DynamoDB stand-in
//! (`moto_server`, started by `.ci/run`, reached through
//! `AGENTGATE_DYNAMODB_ENDPOINT`), one fresh table per test. Plus what only
//! this backend has: its table, its transaction limit, TTL attributes,
//! damaged items, and a whole checkout through the app built with
//! `store = "dynamodb"`.
//!
//! Without the endpoint each test says NOT RUN and checks nothing; under
//! `CI=true` that is a failure instead.

#[macro_use]
mod store_contract;
mod support;

use std::sync::Arc;

use agentgate::adapters::dynamodb::{create_table, CreateOptions, DynamoStore};
use agentgate::domain::order::PaymentRecord;
use agentgate::domain::{
    CheckoutId, CheckoutSession, CheckoutStatus, Currency, ErrorCode, LedgerEntry, LedgerKind,
    LineItem, Money, Order, OrderId, OrderStatus, ProductId, Sku, VariantId,
};
use agentgate::ports::{
    CheckoutCommit, OrderFilter, OutboxFilter, OutboxKind, OutboxMessage, OutboxStatus, Store,
};
use agentgate::settings::{DynamoSettings, Settings, StoreKind};
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use serde_json::{json, Value};
use store_contract::Fixture;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Settings for a fresh, uniquely named table on the stand-in.
/// A client and a fresh table, or `None` (after saying why) without an
/// endpoint.
async fn fresh_table() -> Option<(aws_sdk_dynamodb::Client, DynamoSettings)> {
    support::dynamodb_table("agentgate-test").await
}

async fn fresh_store() -> Option<DynamoStore> {
    let (client, settings) = fresh_table().await?;
    Some(DynamoStore::new(client, settings.table))
}

async fn dynamodb() -> Option<Fixture> {
    let store = fresh_store().await?;
    Some(Fixture::new(Arc::new(store), ()))
}

store_contract_tests!(dynamodb);

// ------------------------------------------------------------- helpers

const T0: OffsetDateTime = datetime!(2026-05-01 09:00:00.000000001 -07:00);

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn session_with(lines: &[(&str, u32)]) -> CheckoutSession {
    let items = lines
        .iter()
        .enumerate()
        .map(|(i, (s, q))| LineItem {
            id: format!("li_{i}"),
            variant_id: VariantId::parse(&format!("v-{s}-{i}")).unwrap(),
            product_id: ProductId::parse("p1").unwrap(),
            sku: sku(s),
            title: format!("Item {s}"),
            quantity: *q,
            unit_price: usd(100),
            requires_shipping: false,
        })
        .collect();
    let s = CheckoutSession::new(
        CheckoutId::from_uuid(uuid::Uuid::now_v7()),
        Currency::usd(),
        items,
        Some("agent".into()),
        T0,
        CheckoutSession::DEFAULT_TTL,
    )
    .unwrap();
    s.transition(CheckoutStatus::ReadyForComplete, T0).unwrap()
}

/// A commit of `session` (stored at version 1) with `events` copies of the
/// created event and `mandates` mandates.
fn commit_with(session: &CheckoutSession, events: usize, mandates: usize) -> CheckoutCommit {
    let id = OrderId::from_uuid(uuid::Uuid::now_v7());
    let mut done = session.clone();
    done.order_id = Some(id.clone());
    let done = done
        .transition(CheckoutStatus::CompleteInProgress, T0)
        .unwrap()
        .transition(CheckoutStatus::Completed, T0)
        .unwrap();
    let order = Order::new(
        id.clone(),
        session.id.clone(),
        OrderStatus::Paid,
        session.owner.clone(),
        None,
        vec![],
        session.totals,
        usd(1),
        PaymentRecord { processor: "sandbox".into(), reference: "ch".into(), amount: usd(0) },
        T0,
    );
    CheckoutCommit {
        session: done,
        expected_version: 1,
        events: vec![order.created_event("gateway", "t"); events],
        stock: session.line_items.iter().map(|l| (l.sku.clone(), l.quantity)).collect(),
        ledger: LedgerEntry {
            id: format!("led_{id}"),
            order_id: id,
            kind: LedgerKind::Fee,
            gross: usd(100),
            fee: usd(1),
            at: T0,
        },
        mandates: (0..mandates).map(|i| format!("h.p{i}.s")).collect(),
        idempotency: None,
        outbox: Vec::new(),
        order,
    }
}

async fn raw_item(store: &DynamoStore, pk: &str, sk: &str) -> Option<Item> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

type Item = std::collections::HashMap<String, AttributeValue>;

// --------------------------------------------------------------- tests

/// The helper creates the table the store and the template describe: every
/// index, TTL on `ttl`, on-demand billing; and it refuses to create one
/// twice.
#[tokio::test]
async fn the_created_table_has_the_indexes_and_ttl() {
    let Some((client, settings)) = fresh_table().await else { return };
    let table = client.describe_table().table_name(&settings.table).send().await.unwrap().table;
    let table = table.unwrap();
    let mut indexes: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_owned))
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["by_owner", "by_time", "outbox_due"]);
    let billing = table.billing_mode_summary().and_then(|b| b.billing_mode()).cloned();
    assert_eq!(billing, Some(aws_sdk_dynamodb::types::BillingMode::PayPerRequest));
    let ttl = client.describe_time_to_live().table_name(&settings.table).send().await.unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let options = CreateOptions { point_in_time_recovery: false, ..CreateOptions::default() };
    let again = create_table(&client, &settings.table, options).await.unwrap_err();
    assert_eq!(again.code(), ErrorCode::AlreadyExists);
}

/// Idempotency records and reserved mandate ids carry a `ttl` in whole
/// seconds no earlier than their expiry, so DynamoDB tidies them up; other
/// items carry none, so DynamoDB never deletes them.
#[tokio::test]
async fn expiring_items_carry_a_ttl_and_others_do_not() {
    let Some(store) = fresh_store().await else { return };
    let until = later() + Duration::nanoseconds(1);
    store.idempotency_begin("k1", "fp", until).await.unwrap();
    store.reserve_mandate_id("m1", until).await.unwrap();
    store.set_stock(&sku("S"), 1).await.unwrap();
    let want = until.unix_timestamp() + 1;
    for (pk, sk) in [("IDEM#k1", "IDEM"), ("MANDATE_ID#m1", "MANDATE_ID")] {
        let item = raw_item(&store, pk, sk).await.unwrap();
        let ttl = item.get("ttl").and_then(|v| v.as_n().ok()).unwrap();
        assert_eq!(ttl.parse::<i64>().unwrap(), want, "{pk}");
    }
    let stock = raw_item(&store, "STOCK#S", "STOCK").await.unwrap();
    assert!(!stock.contains_key("ttl"));
}

/// A commit that would not fit one transaction is refused before anything
/// is written; one at the limit commits. A full cart (50 lines) with the
/// pipeline's events and mandates fits.
#[tokio::test]
async fn commits_beyond_one_transaction_are_refused_whole() {
    let Some(store) = fresh_store().await else { return };
    let max_lines = agentgate::domain::cart::MAX_LINES;
    let skus: Vec<String> = (0..max_lines).map(|i| format!("L{i}")).collect();
    for s in &skus {
        store.set_stock(&sku(s), 10).await.unwrap();
    }
    let lines: Vec<(&str, u32)> = skus.iter().map(|s| (s.as_str(), 1)).collect();

    // The session, order, guard and ledger entry + 50 SKUs + 20 events +
    // 27 mandates = 101 (no idempotency record here).
    let too_big = session_with(&lines);
    store.insert_checkout(&too_big).await.unwrap();
    let commit = commit_with(&too_big, 20, 27);
    let err = store.commit_checkout(&commit).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert!(err.message().contains("100"), "{}", err.message());
    assert_eq!(store.get_order(&commit.order.id).await.unwrap(), None);
    assert_eq!(store.get_stock(&sku("L0")).await.unwrap(), Some(10));
    assert_eq!(store.get_checkout(&too_big.id).await.unwrap().unwrap().version, 1);

    // One mandate fewer: 4 + 50 + 20 + 26 = 100, the most one transaction
    // holds.
    let fits = session_with(&lines);
    store.insert_checkout(&fits).await.unwrap();
    let commit = commit_with(&fits, 20, 26);
    store.commit_checkout(&commit).await.unwrap();
    assert_eq!(store.order_events(&commit.order.id).await.unwrap().len(), 20);
    assert_eq!(store.order_mandates(&commit.order.id).await.unwrap(), commit.mandates);
    assert_eq!(store.get_stock(&sku("L49")).await.unwrap(), Some(9));
}

fn message(order: &OrderId, n: usize) -> OutboxMessage {
    OutboxMessage {
        id: format!("evt_{}_{n}", uuid::Uuid::now_v7().simple()),
        kind: OutboxKind::OrderWebhook,
        destination: "https://platform.example/hooks".into(),
        payload: "{}".into(),
        order_id: Some(order.clone()),
        created_at: T0,
    }
}

/// Outbox messages count toward the transaction limit like everything else
/// written with the change: a commit or an order update that would need
/// more than 100 items is refused whole, naming the limit.
#[tokio::test]
async fn outbox_messages_count_toward_the_transaction_limit() {
    let Some(store) = fresh_store().await else { return };
    let max_lines = agentgate::domain::cart::MAX_LINES;
    let skus: Vec<String> = (0..max_lines).map(|i| format!("O{i}")).collect();
    for s in &skus {
        store.set_stock(&sku(s), 10).await.unwrap();
    }
    let lines: Vec<(&str, u32)> = skus.iter().map(|s| (s.as_str(), 1)).collect();

    // 4 + 50 SKUs + 20 events + 25 mandates + 2 messages = 101.
    let session = session_with(&lines);
    store.insert_checkout(&session).await.unwrap();
    let mut commit = commit_with(&session, 20, 25);
    commit.outbox = (0..2).map(|i| message(&commit.order.id, i)).collect();
    let err = store.commit_checkout(&commit).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert!(err.message().contains("101") && err.message().contains("100"), "{}", err.message());
    assert_eq!(store.get_order(&commit.order.id).await.unwrap(), None);

    // One message fewer fits, and the message is there.
    commit.outbox.pop();
    store.commit_checkout(&commit).await.unwrap();
    let filter = OutboxFilter { order_id: Some(commit.order.id.clone()), ..Default::default() };
    assert_eq!(store.outbox_entries(&filter).await.unwrap().len(), 1);

    // An order update: the order + 100 messages is one item too many.
    let order = store.get_order(&commit.order.id).await.unwrap().unwrap();
    let many: Vec<_> = (0..100).map(|i| message(&order.value.id, i)).collect();
    let err = store.update_order(&order.value, order.version, &[], &many).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert!(err.message().contains("100"), "{}", err.message());
    assert_eq!(store.outbox_entries(&filter).await.unwrap().len(), 1, "nothing was written");
    let v = store.update_order(&order.value, order.version, &[], &many[..99]).await.unwrap();
    assert_eq!(v, order.version + 1);
}

/// A transaction cannot touch one item twice, so a SKU on two lines is
/// taken as one decrement of the sum, and refused as a whole when the sum
/// is not there.
#[tokio::test]
async fn a_sku_on_two_lines_is_taken_once_for_the_sum() {
    let Some(store) = fresh_store().await else { return };
    store.set_stock(&sku("TWICE"), 5).await.unwrap();
    let short = session_with(&[("TWICE", 3), ("TWICE", 3)]);
    store.insert_checkout(&short).await.unwrap();
    let err = store.commit_checkout(&commit_with(&short, 1, 1)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientStock);
    assert_eq!(store.get_stock(&sku("TWICE")).await.unwrap(), Some(5));

    let fits = session_with(&[("TWICE", 2), ("TWICE", 3)]);
    store.insert_checkout(&fits).await.unwrap();
    store.commit_checkout(&commit_with(&fits, 1, 1)).await.unwrap();
    assert_eq!(store.get_stock(&sku("TWICE")).await.unwrap(), Some(0));
}

/// Items damaged outside the store become `internal` errors (detail
/// logged, not shown), never panics, and the rest keeps working.
#[tokio::test]
async fn damaged_items_are_errors_not_panics() {
    let Some(store) = fresh_store().await else { return };
    let session = session_with(&[("D1", 1)]);
    store.set_stock(&sku("D1"), 5).await.unwrap();
    store.insert_checkout(&session).await.unwrap();
    let commit = commit_with(&session, 1, 1);
    store.commit_checkout(&commit).await.unwrap();
    let order_pk = format!("ORDER#{}", commit.order.id);
    let checkout_pk = format!("CHECKOUT#{}", session.id);
    let s = |v: &str| AttributeValue::S(v.into());
    let n = |v: &str| AttributeValue::N(v.into());
    // (what, pk, sk, attribute, value)
    let cases: Vec<(&str, String, &str, &str, AttributeValue)> = vec![
        ("checkout body not json", checkout_pk.clone(), "CHECKOUT", "body", s("{")),
        ("checkout body empty object", checkout_pk.clone(), "CHECKOUT", "body", s("{}")),
        ("checkout version not a number", checkout_pk.clone(), "CHECKOUT", "version", s("1")),
        ("checkout version negative", checkout_pk.clone(), "CHECKOUT", "version", n("-1")),
        ("order body of another kind", order_pk.clone(), "ORDER", "body", s("[1,2]")),
        ("stock beyond u32", "STOCK#D1".into(), "STOCK", "quantity", n("5000000000")),
        ("stock negative", "STOCK#D1".into(), "STOCK", "quantity", n("-3")),
    ];
    for (what, pk, sk, attribute, value) in cases {
        let before = raw_item(&store, &pk, sk).await.unwrap();
        let mut damaged = before.clone();
        damaged.insert(attribute.into(), value);
        let put = |item: Item| {
            store.client().put_item().table_name(store.table()).set_item(Some(item)).send()
        };
        put(damaged).await.unwrap();
        let reads = [
            store.get_checkout(&session.id).await.map(|_| ()),
            store.get_order(&commit.order.id).await.map(|_| ()),
            store.list_orders(&OrderFilter::default()).await.map(|_| ()),
            store.get_stock(&sku("D1")).await.map(|_| ()),
        ];
        let failed: Vec<_> = reads.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!failed.is_empty(), "{what}: no read noticed the damage");
        for e in failed {
            assert_eq!(e.code(), ErrorCode::Internal, "{what}: {e}");
            assert_eq!(e.message(), "internal error", "{what}: detail leaked");
        }
        store.health().await.unwrap();
        put(before).await.unwrap();
    }
}

/// Sends one request to the app; returns the status, the raw body and its
/// JSON.
async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Vec<u8>, Value) {
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            axum::body::Body::from(b.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let resp = tower::ServiceExt::oneshot(router.clone(), req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20).await.unwrap().to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, bytes, json)
}

/// A whole checkout through the application built with `store =
/// "dynamodb"`, over the UCP REST binding and `Gateway::complete_checkout`:
/// the catalog seeds DynamoDB's stock once, an agent builds a cart and a
/// checkout session, completes it (charge, fee, one atomic commit), and
/// everything reads back from DynamoDB. The completion replays from its
/// DynamoDB idempotency record, a second completion charges nothing, and
/// a second cold start does not reset the stock that was sold.
#[tokio::test]
async fn a_checkout_runs_end_to_end_on_dynamodb() {
    let Some((_client, table)) = fresh_table().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    settings.store = StoreKind::Dynamodb;
    settings.dynamodb = table.clone();
    let app = agentgate::bootstrap::build(settings.clone()).await.expect("build");
    let r = agentgate::http::app(app.state.clone());

    let (status, _, health) = call(&r, "GET", "/health", None, None).await;
    assert_eq!((status, &health["store"]), (200, &json!("ok")), "{health}");

    let tee = "v-organic-cotton-tee-black";
    let tee_sku = sku("ORGANIC-COTTON-TEE-BLACK");
    let seeded = app.store.get_stock(&tee_sku).await.unwrap().expect("stock was seeded");
    assert_eq!(seeded, 120, "the catalog's count");

    let key = || uuid::Uuid::new_v4().to_string();
    let items = json!([{"item": {"id": tee}, "quantity": 2}]);
    let (status, _, cart) =
        call(&r, "POST", "/ucp/v1/carts", Some(&key()), Some(&json!({"line_items": items}))).await;
    assert_eq!(status, 201, "{cart}");
    let address = json!({"street_address": "1 Main St", "address_locality": "Springfield",
        "address_region": "IL", "postal_code": "62701", "address_country": "US",
        "first_name": "Ada", "last_name": "Lovelace"});
    let instrument = json!({"id": "instr_a", "handler_id": "sandbox", "type": "card",
        "credential": {"type": "token", "token": "success_token"}});
    let create = json!({
        "cart_id": cart["id"],
        "line_items": items,
        "buyer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
        "fulfillment": {"methods": [{"type": "shipping", "destinations": [address],
            "groups": [{"selected_option_id": "us-standard"}]}]},
        "discounts": {"codes": ["WELCOME10"]},
        "payment": {"instruments": [instrument.clone()]},
    });
    let (status, _, session) =
        call(&r, "POST", "/ucp/v1/checkout-sessions", Some(&key()), Some(&create)).await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["status"], "ready_for_complete", "{session}");
    let id = session["id"].as_str().unwrap().to_owned();

    let complete = json!({"payment": {"instruments": [instrument]}});
    let url = format!("/ucp/v1/checkout-sessions/{id}/complete");
    let done_key = key();
    let (status, first, done) = call(&r, "POST", &url, Some(&done_key), Some(&complete)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    let order_id = OrderId::parse(done["order"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(app.payments.successful_charges(), 1);

    // The same request replays byte for byte from DynamoDB; a new key on
    // the completed session answers the same order without charging again.
    let (_, replay, _) = call(&r, "POST", &url, Some(&done_key), Some(&complete)).await;
    assert_eq!(replay, first);
    let (status, _, again) = call(&r, "POST", &url, Some(&key()), Some(&complete)).await;
    assert_eq!((status, &again["order"]["id"]), (200, &done["order"]["id"]), "{again}");
    assert_eq!(app.payments.successful_charges(), 1);

    // Everything the commit wrote is in DynamoDB.
    let store = &app.store;
    assert_eq!(store.get_stock(&tee_sku).await.unwrap(), Some(118));
    let checkout = CheckoutId::parse(&id).unwrap();
    let stored = store.get_checkout(&checkout).await.unwrap().unwrap();
    assert_eq!(stored.value.status(), CheckoutStatus::Completed);
    let order = store.get_order(&order_id).await.unwrap().unwrap().value;
    assert_eq!(order.checkout_id, checkout);
    assert_eq!(order.status(), OrderStatus::Paid);
    let events = store.order_events(&order_id).await.unwrap();
    assert!(!events.is_empty(), "the order has its audit trail");
    let day = (order.created_at - Duration::days(1), order.created_at + Duration::days(1));
    let ledger = store.ledger_entries(day.0, day.1, None).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].order_id.clone(), ledger[0].gross),
        (order_id.clone(), order.totals.total)
    );
    assert_eq!(store.discount_uses("WELCOME10").await.unwrap(), 1);
    let (status, _, read) =
        call(&r, "GET", &format!("/ucp/v1/orders/{order_id}"), None, None).await;
    assert_eq!((status, &read["checkout_id"]), (200, &json!(id)), "{read}");

    // The buyer's confirmation was queued with the order in DynamoDB, and
    // one outbox pass (what a Lambda write request runs after answering)
    // delivers it.
    let of_order = OutboxFilter { order_id: Some(order_id.clone()), ..OutboxFilter::default() };
    let queued = store.outbox_entries(&of_order).await.unwrap();
    assert!(
        queued.iter().any(
            |e| e.message.kind == OutboxKind::Notification && e.status == OutboxStatus::Pending
        ),
        "{queued:?}"
    );
    assert!(app.outbox.run_once().await.unwrap() >= 1);
    let delivered = OutboxFilter { status: Some(OutboxStatus::Delivered), ..of_order };
    let done = store.outbox_entries(&delivered).await.unwrap();
    assert!(done.iter().any(|e| e.message.kind == OutboxKind::Notification), "{done:?}");

    // A new instance (a cold start on a fresh disk) keeps the sold stock.
    drop(app);
    let dir2 = tempfile::tempdir().unwrap();
    let mut settings2 = settings.clone();
    settings2.data_dir = dir2.path().to_owned();
    let app2 = agentgate::bootstrap::build(settings2).await.unwrap();
    assert_eq!(app2.store.get_stock(&tee_sku).await.unwrap(), Some(118));
    assert_eq!(app2.store.get_order(&order_id).await.unwrap().unwrap().value, order);
}
