//! The SQLite store against the store contract, plus what only a file on
//! disk can show: everything survives a restart, and damaged rows become
//! errors instead of panics.

#[macro_use]
mod store_contract;

use std::sync::Arc;

use agentgate::adapters::sqlite::SqliteStore;
use agentgate::domain::cart::CartLine;
use agentgate::domain::checkout::PaymentSelection;
use agentgate::domain::order::PaymentRecord;
use agentgate::domain::{
    Cart, CartId, CheckoutId, CheckoutSession, CheckoutStatus, Currency, Error, ErrorCode,
    LedgerEntry, LedgerKind, LineItem, Money, Order, OrderId, OrderStatus, ProductId, Sku,
    VariantId,
};
use agentgate::ports::{CheckoutCommit, IdempotencyBegin, OrderFilter, Store, StoredResponse};
use store_contract::Fixture;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// A fresh store in its own temp dir, removed when the test ends.
async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    Fixture::new(Arc::new(store), dir)
}

store_contract_tests!(sqlite);

const T0: OffsetDateTime = datetime!(2026-05-01 09:00:00.000000001 -07:00);

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn session(id: &str) -> CheckoutSession {
    let line = LineItem {
        id: "li_1".into(),
        variant_id: VariantId::parse("v1").unwrap(),
        product_id: ProductId::parse("p1").unwrap(),
        sku: Sku::parse("S1").unwrap(),
        title: "Kettle".into(),
        quantity: 1,
        unit_price: usd(4500),
        requires_shipping: false,
    };
    let mut s = CheckoutSession::new(
        CheckoutId::parse(id).unwrap(),
        Currency::usd(),
        vec![line],
        Some("agent".into()),
        T0,
        CheckoutSession::DEFAULT_TTL,
    )
    .unwrap();
    s.buyer.email = Some("b@example.com".into());
    s.payment = Some(PaymentSelection {
        handler_id: "sandbox".into(),
        instrument_type: "card".into(),
        token: Some("tok_restart".into()),
    });
    s.transition(CheckoutStatus::ReadyForComplete, T0).unwrap()
}

fn commit(s: &CheckoutSession, order: &str) -> CheckoutCommit {
    let order_id = OrderId::parse(order).unwrap();
    let mut done = s.clone();
    done.order_id = Some(order_id.clone());
    let done = done
        .transition(CheckoutStatus::CompleteInProgress, T0)
        .unwrap()
        .transition(CheckoutStatus::Completed, T0)
        .unwrap();
    let order = Order::new(
        order_id.clone(),
        s.id.clone(),
        OrderStatus::Paid,
        s.owner.clone(),
        s.buyer.email.clone(),
        vec![],
        s.totals,
        usd(135),
        PaymentRecord {
            processor: "sandbox".into(),
            reference: "ch_1".into(),
            amount: s.totals.total,
        },
        T0,
    );
    CheckoutCommit {
        session: done,
        expected_version: 1,
        events: vec![order.created_event("gateway", "trace")],
        stock: vec![(Sku::parse("S1").unwrap(), 1)],
        ledger: LedgerEntry {
            id: format!("led_{order_id}"),
            order_id,
            kind: LedgerKind::Fee,
            gross: usd(4500),
            fee: usd(135),
            at: T0,
        },
        mandates: vec!["a.b.c".into()],
        idempotency: None,
        outbox: Vec::new(),
        order,
    }
}

/// Everything written before a restart reads back identical after it,
/// including versions, so compare-and-set keeps working across restarts.
#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();

    let mut cart = Cart::new(
        CartId::parse("cart_restart").unwrap(),
        Currency::usd(),
        Some("agent".into()),
        T0,
        Duration::hours(1),
    );
    cart.add(
        CartLine {
            variant_id: VariantId::parse("v1").unwrap(),
            product_id: ProductId::parse("p1").unwrap(),
            sku: Sku::parse("S1").unwrap(),
            title: "Kettle".into(),
            quantity: 2,
            unit_price: usd(4500),
            requires_shipping: false,
        },
        T0,
    )
    .unwrap();
    store.insert_cart(&cart).await.unwrap();
    store.update_cart(&cart, 1).await.unwrap();

    let open_session = session("chk_open");
    store.insert_checkout(&open_session).await.unwrap();
    let paid_session = session("chk_paid");
    store.insert_checkout(&paid_session).await.unwrap();
    store.set_stock(&Sku::parse("S1").unwrap(), 7).await.unwrap();
    store.set_stock(&Sku::parse("EMPTY").unwrap(), 0).await.unwrap();
    store.idempotency_begin("held", "fp-held", later()).await.unwrap();
    store.idempotency_begin("done", "fp-done", later()).await.unwrap();
    let mut placed = commit(&paid_session, "ord_restart");
    let response = StoredResponse { status: 201, body: b"{\"id\":\"ord_restart\"}".to_vec() };
    placed.idempotency = Some(("done".into(), response));
    store.commit_checkout(&placed).await.unwrap();
    let reversal = LedgerEntry {
        id: "led_reversal".into(),
        order_id: placed.order.id.clone(),
        kind: LedgerKind::Reversal,
        gross: usd(-4500),
        fee: usd(-135),
        at: T0 + Duration::days(1),
    };
    store.append_ledger(&reversal).await.unwrap();
    store.reserve_mandate_id("mandate-1", later()).await.unwrap();
    store.mark_webhook_seen("stripe", "evt_1").await.unwrap();

    let range = (datetime!(2000-01-01 0:00 UTC), datetime!(2100-01-01 0:00 UTC));
    let before = (
        store.get_cart(&cart.id).await.unwrap(),
        store.get_checkout(&open_session.id).await.unwrap(),
        store.get_checkout(&paid_session.id).await.unwrap(),
        store.get_order(&placed.order.id).await.unwrap(),
        store.order_events(&placed.order.id).await.unwrap(),
        store.order_mandates(&placed.order.id).await.unwrap(),
        store.list_orders(&OrderFilter::default()).await.unwrap(),
        store.ledger_entries(range.0, range.1, None).await.unwrap(),
        [
            store.get_stock(&Sku::parse("S1").unwrap()).await.unwrap(),
            store.get_stock(&Sku::parse("EMPTY").unwrap()).await.unwrap(),
        ],
        store.idempotency_get("held").await.unwrap(),
        store.idempotency_get("done").await.unwrap(),
    );
    // Sanity: the snapshot is of real data, so the comparison below means
    // something.
    assert!(before.0.is_some() && before.3.is_some() && before.9.is_some());
    assert_eq!(before.7.len(), 2);
    assert_eq!(before.8, [Some(6), Some(0)]);
    drop(store);

    let store = SqliteStore::open(dir.path()).unwrap();
    let after = (
        store.get_cart(&cart.id).await.unwrap(),
        store.get_checkout(&open_session.id).await.unwrap(),
        store.get_checkout(&paid_session.id).await.unwrap(),
        store.get_order(&placed.order.id).await.unwrap(),
        store.order_events(&placed.order.id).await.unwrap(),
        store.order_mandates(&placed.order.id).await.unwrap(),
        store.list_orders(&OrderFilter::default()).await.unwrap(),
        store.ledger_entries(range.0, range.1, None).await.unwrap(),
        [
            store.get_stock(&Sku::parse("S1").unwrap()).await.unwrap(),
            store.get_stock(&Sku::parse("EMPTY").unwrap()).await.unwrap(),
        ],
        store.idempotency_get("held").await.unwrap(),
        store.idempotency_get("done").await.unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(after.1.unwrap().value, open_session, "the session, token included");

    // Put-if-absent and compare-and-set state carried over too.
    assert!(!store.reserve_mandate_id("mandate-1", later()).await.unwrap());
    assert!(!store.mark_webhook_seen("stripe", "evt_1").await.unwrap());
    assert!(matches!(
        store.idempotency_begin("held", "fp-held", later()).await.unwrap(),
        IdempotencyBegin::Existing(_)
    ));
    assert_eq!(store.update_cart(&cart, 2).await.unwrap(), 3);
    assert_eq!(store.update_cart(&cart, 2).await.unwrap_err().code(), ErrorCode::VersionConflict);
}

/// Runs raw SQL on the store's database, as a damaged file or a careless
/// manual edit would.
async fn tamper(store: &SqliteStore, sql: &'static str) {
    store.db().write(move |c| c.execute_batch(sql).map_err(Error::store)).await.unwrap();
}

/// Damaged rows become `internal` errors (logged, detail hidden) instead of
/// panics, and the store keeps serving everything else.
#[tokio::test]
async fn damaged_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = CheckoutId::parse("chk_1").unwrap();
    let order = OrderId::parse("ord_1").unwrap();
    let cases: &[(&str, &str)] = &[
        ("checkout: empty object", "UPDATE checkouts SET body = '{}'"),
        ("checkout: not an object", "UPDATE checkouts SET body = '[1, 2]'"),
        ("checkout: newer schema", "UPDATE checkouts SET body = json_set(body, '$.schema', 99)"),
        ("checkout: id of another kind", "UPDATE checkouts SET body = json_set(body, '$.id', 'ord_1')"),
        ("checkout: unknown currency", "UPDATE checkouts SET body = json_set(body, '$.currency', 'ZZZ')"),
        ("checkout: unknown status", "UPDATE checkouts SET body = json_set(body, '$.status', 'paid')"),
        (
            "checkout: negative quantity",
            "UPDATE checkouts SET body = json_set(body, '$.line_items[0].quantity', -1)",
        ),
        ("checkout: bad sku", "UPDATE checkouts SET body = json_set(body, '$.line_items[0].sku', 'a b')"),
        ("checkout: bad time", "UPDATE checkouts SET body = json_set(body, '$.created_at', 'yesterday')"),
        ("order: missing field", "UPDATE orders SET body = json_remove(body, '$.payment')"),
        ("order: bad fee currency", "UPDATE orders SET body = json_set(body, '$.fee.currency', 'usdollar')"),
        (
            "event: unknown kind",
            "INSERT INTO order_events (order_id, at, body)
             VALUES ('ord_1', 0, '{\"schema\":1,\"order_id\":\"ord_1\",\"kind\":{\"type\":\"teleported\"}}')",
        ),
        ("ledger: unknown currency", "INSERT INTO ledger VALUES ('l2', 'ord_1', 'fee', 'ZZZ', 1, 1, 0)"),
        ("ledger: bad order id", "INSERT INTO ledger VALUES ('l3', 'chk_1', 'fee', 'USD', 1, 1, 0)"),
        ("stock: beyond u32", "INSERT INTO stock VALUES ('S2', 5000000000)"),
    ];
    for (name, sql) in cases {
        // Each case starts from a good copy of the rows it damages.
        let fresh = SqliteStore::open(&dir.path().join(name.replace([' ', ':'], "_"))).unwrap();
        let s = session("chk_1");
        fresh.insert_checkout(&s).await.unwrap();
        fresh.set_stock(&Sku::parse("S1").unwrap(), 5).await.unwrap();
        fresh.commit_checkout(&commit(&s, "ord_1")).await.unwrap();
        let all_good = [
            fresh.get_checkout(&checkout).await.map(|_| ()),
            fresh.get_order(&order).await.map(|_| ()),
            fresh.order_events(&order).await.map(|_| ()),
            fresh.list_orders(&OrderFilter::default()).await.map(|_| ()),
            fresh
                .ledger_entries(T0 - Duration::days(1), T0 + Duration::days(1), None)
                .await
                .map(|_| ()),
            fresh.get_stock(&Sku::parse("S2").unwrap()).await.map(|_| ()),
        ];
        assert!(all_good.iter().all(Result::is_ok), "{name}: broken before tampering");

        tamper(&fresh, sql).await;
        let reads = [
            fresh.get_checkout(&checkout).await.map(|_| ()),
            fresh.get_order(&order).await.map(|_| ()),
            fresh.order_events(&order).await.map(|_| ()),
            fresh.list_orders(&OrderFilter::default()).await.map(|_| ()),
            fresh
                .ledger_entries(datetime!(1970-01-01 0:00 UTC), T0 + Duration::days(1), None)
                .await
                .map(|_| ()),
            fresh.get_stock(&Sku::parse("S2").unwrap()).await.map(|_| ()),
        ];
        let failed: Vec<_> = reads.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!failed.is_empty(), "{name}: no read noticed the damage");
        for e in failed {
            assert_eq!(e.code(), ErrorCode::Internal, "{name}: {e}");
            assert_eq!(e.message(), "internal error", "{name}: detail leaked");
        }
        // Everything else is still served.
        fresh.health().await.unwrap();
        assert_eq!(fresh.get_stock(&Sku::parse("S1").unwrap()).await.unwrap(), Some(4), "{name}");
    }
}

#[tokio::test]
async fn opening_an_unusable_data_dir_is_a_store_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreUnavailable);
}
