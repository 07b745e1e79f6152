//! Concurrency properties of the completion pipeline, bounded and run in CI
//! on both stores: the embedded SQLite store, and the DynamoDB store on the
//! stand-in `.ci/run` starts (`AGENTGATE_DYNAMODB_ENDPOINT`; without it
//! the DynamoDB tests say NOT RUN, and under `CI=true` they fail). Each
//! property is one function taking a built [`App`]; each store has a
//! fixture that builds one, and a test per property calls the same
//! function with it.
//!
//! - 64 concurrent completes with one idempotency key: one order, one charge.
//! - 200 buyers racing for 10 units: 10 orders, stock 0, and the stock,
//!   sampled all through the race, never leaves `0..=units` nor rises.
//!
//! The stand-in handles one request at a time, so on DynamoDB every race
//! is fully serialised at the store; the gateway's own locking and
//! conditional writes are what keeps the counts right either way.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use agentgate::bootstrap::{self, App};
use agentgate::domain::checkout::{FulfillmentSelection, PaymentSelection, PostalAddress};
use agentgate::domain::{
    CheckoutId, CheckoutSession, CheckoutStatus, Currency, ErrorCode, LineItem, Money, Sku, Totals,
    VariantId,
};
use agentgate::gateway::{Caller, CompleteRequest};
use agentgate::ports::OrderFilter;
use agentgate::settings::{RawSettings, Settings};
use time::{Duration, OffsetDateTime};

const TEE: &str = "v-organic-cotton-tee-black";
const TEE_SKU: &str = "ORGANIC-COTTON-TEE-BLACK";
const SHIPPING: i64 = 500;

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn settings(dir: &tempfile::TempDir) -> Settings {
    let raw = RawSettings {
        data_dir: dir.path().to_owned(),
        public_base_url: Some("https://shop.example".into()),
        merchant_name: "Demo Shop".into(),
        ..RawSettings::default()
    };
    Settings::from_raw(raw).unwrap()
}

/// A fresh SQLite-backed app in its own temporary data dir.
async fn sqlite_app() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = bootstrap::build(settings(&dir)).await.unwrap();
    (dir, app)
}

/// A fresh app on the DynamoDB store, with a table of its own on the
/// stand-in, or `None` (after saying why) without an endpoint.
#[cfg(feature = "aws")]
async fn dynamodb_app() -> Option<(tempfile::TempDir, App)> {
    use agentgate::settings::StoreKind;

    let (_client, table) = support::dynamodb_table("agentgate-race").await?;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dir);
    settings.store = StoreKind::Dynamodb;
    settings.dynamodb = table;
    let app = bootstrap::build(settings).await.unwrap();
    Some((dir, app))
}

/// A session in `ready_for_complete` owned by `owner` for `quantity` of
/// `variant`, written straight to the store.
async fn ready(app: &App, owner: &Caller, variant: &str, quantity: u32) -> CheckoutSession {
    let now = OffsetDateTime::now_utc();
    let vid = VariantId::parse(variant).unwrap();
    let (product, vid) = app.gateway.catalog().variant(&vid).await.unwrap().unwrap();
    let v = product.variant(&vid).unwrap();
    let items = vec![LineItem {
        id: "li_1".into(),
        variant_id: v.id.clone(),
        product_id: product.id.clone(),
        sku: v.sku.clone(),
        title: product.title.clone(),
        quantity,
        unit_price: v.price,
        requires_shipping: v.requires_shipping,
    }];
    let mut session = CheckoutSession::new(
        CheckoutId::from_uuid(uuid::Uuid::now_v7()),
        Currency::usd(),
        items,
        owner.subject.clone(),
        now,
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
        token: Some("success_token".into()),
    });
    let session = session.transition(CheckoutStatus::ReadyForComplete, now).unwrap();
    app.store.insert_checkout(&session).await.unwrap();
    session
}

async fn all_orders(app: &App) -> Vec<agentgate::domain::Order> {
    let all = OrderFilter { limit: 1000, ..OrderFilter::default() };
    app.store.list_orders(&all).await.unwrap()
}

async fn ledger_len(app: &App) -> usize {
    let now = OffsetDateTime::now_utc();
    let day = Duration::days(1);
    app.store.ledger_entries(now - day, now + day, None).await.unwrap().len()
}

/// `clients` concurrent completes of one session with one idempotency key
/// make exactly one order, one charge attempt and one ledger entry; every
/// caller sees that order or a retryable refusal.
pub async fn same_key_completes_make_one_order(app: &App, clients: usize) {
    let sku = Sku::parse(TEE_SKU).unwrap();
    app.store.set_stock(&sku, 100).await.unwrap();
    let owner = Caller::subject("alice");
    let session = ready(app, &owner, TEE, 2).await;
    let charges_before = app.payments.charge_attempts();
    let request = CompleteRequest { idempotency_key: "same-key".into(), ..Default::default() };
    let barrier = Arc::new(tokio::sync::Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (gw, barrier, request, owner) =
                (app.gateway.clone(), barrier.clone(), request.clone(), owner.clone());
            let id = session.id.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                gw.complete_checkout(&owner, &id, request).await
            })
        })
        .collect();
    let mut orders = HashSet::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => {
                orders.insert(done.order.id);
            }
            Err(e) => {
                assert!(e.retryable(), "a refusal that is not retryable: {e}");
                refused += 1;
            }
        }
    }
    // A retry after the race answers with the same order.
    let last = app.gateway.complete_checkout(&owner, &session.id, request).await.unwrap();
    orders.insert(last.order.id.clone());
    assert_eq!(orders.len(), 1, "{clients} callers ({refused} refused) saw one order");
    let mine: Vec<_> =
        all_orders(app).await.into_iter().filter(|o| o.checkout_id == session.id).collect();
    assert_eq!(mine.len(), 1, "one order in the store");
    assert_eq!(app.payments.charge_attempts() - charges_before, 1, "one charge attempt");
    assert_eq!(app.store.get_stock(&sku).await.unwrap(), Some(98));
    assert_eq!(ledger_len(app).await, 1);
    let after = app.store.get_checkout(&session.id).await.unwrap().unwrap().value;
    assert_eq!(after.status(), CheckoutStatus::Completed);
}

/// `buyers` buyers, each with a session for one unit, race for `units`
/// units: exactly `units` orders, stock 0 at the end, and a sampler reading
/// the stock all through the race never sees it above `units` or rising
/// (a negative count would fail the read itself: the port returns `u32`).
pub async fn buyers_race_for_scarce_stock(app: &App, buyers: usize, units: u32) {
    let sku = Sku::parse(TEE_SKU).unwrap();
    app.store.set_stock(&sku, units).await.unwrap();
    let mut sessions = Vec::with_capacity(buyers);
    for n in 0..buyers {
        let buyer = Caller::subject(format!("buyer-{n}"));
        sessions.push((buyer.clone(), ready(app, &buyer, TEE, 1).await));
    }
    let orders_before = all_orders(app).await.len();

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (store, sku, done) = (app.store.clone(), sku.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let stock = store.get_stock(&sku).await.expect("stock reads as a u32").unwrap();
                samples.push(stock);
                if finished {
                    return samples;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let barrier = Arc::new(tokio::sync::Barrier::new(buyers));
    let tasks: Vec<_> = sessions
        .iter()
        .map(|(buyer, session)| {
            let (gw, barrier, buyer, id) =
                (app.gateway.clone(), barrier.clone(), buyer.clone(), session.id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                gw.complete_checkout(&buyer, &id, CompleteRequest::default()).await
            })
        })
        .collect();
    let mut completed = 0u32;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => completed += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::InsufficientStock, "{e}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();

    assert_eq!(completed, units, "exactly {units} buyers got a unit");
    assert_eq!(app.store.get_stock(&sku).await.unwrap(), Some(0));
    assert_eq!(all_orders(app).await.len() - orders_before, units as usize);
    assert!(samples.len() >= 2, "the sampler ran during the race");
    assert!(samples.iter().all(|s| *s <= units), "stock above the start: {samples:?}");
    assert!(samples.windows(2).all(|w| w[1] <= w[0]), "stock rose: {samples:?}");
    assert_eq!(*samples.last().unwrap(), 0);
    // Every charge became an order or was refunded.
    for (_, session) in &sessions {
        let s = app.store.get_checkout(&session.id).await.unwrap().unwrap().value;
        match s.status() {
            CheckoutStatus::Completed | CheckoutStatus::ReadyForComplete => {}
            other => panic!("session left in {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_64_same_key_completes_make_one_order_and_one_charge() {
    let (_dir, app) = sqlite_app().await;
    same_key_completes_make_one_order(&app, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_200_buyers_for_10_units_make_10_orders() {
    let (_dir, app) = sqlite_app().await;
    buyers_race_for_scarce_stock(&app, 200, 10).await;
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_64_same_key_completes_make_one_order_and_one_charge() {
    let Some((_dir, app)) = dynamodb_app().await else { return };
    same_key_completes_make_one_order(&app, 64).await;
}

/// The same 200 buyers as on SQLite. The stand-in serves them one request
/// at a time (about 1,500 requests at a few milliseconds each), so the
/// race is fully serialised at the store and every request still answers
/// well inside the store's 5 s attempt timeout.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_200_buyers_for_10_units_make_10_orders() {
    let Some((_dir, app)) = dynamodb_app().await else { return };
    buyers_race_for_scarce_stock(&app, 200, 10).await;
}
