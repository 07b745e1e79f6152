//! Orders after checkout, end to end on the real store: a platform whose
//! UCP profile names an order `webhook_url` (a local receiver) completes a
//! checkout over UCP REST, and every change of the order (paid, shipped,
//! delivered, refunded, canceled) reaches the receiver through the outbox,
//! signed with the merchant key; the buyer's confirmation goes to the
//! email API; deliveries that fail back off and dead-letter; Stripe's
//! events move orders once.

mod support;

use std::sync::{Arc, Mutex};

use agentgate::bootstrap::{self, App};
use agentgate::domain::order::FulfillmentStatus;
use agentgate::domain::{
    CheckoutId, Currency, ErrorCode, LedgerKind, Money, OrderEventKind, OrderId, OrderStatus, Sku,
};
use agentgate::gateway::{OrderActor, ShipmentInput};
use agentgate::ports::{
    ChargeOutcome, ChargeRequest, Clock, OutboxFilter, OutboxKind, OutboxStatus, Payments,
};
use agentgate::settings::{NotifySender, RawSettings, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const V4: &str = "2026-04-08";
const ORDER_CAP: &str = "dev.ucp.shopping.order";
const TEE: &str = "v-organic-cotton-tee-black";
const TEE_SKU: &str = "ORGANIC-COTTON-TEE-BLACK";
const WEBHOOK_SECRET: &str = "whsec_orders_test";

struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// A merchant, and an agent platform whose profile asks for order webhooks
/// at its receiver.
struct World {
    app: App,
    router: Router,
    clock: Arc<ManualClock>,
    platform: MockServer,
    agent: String,
    _dir: tempfile::TempDir,
}

async fn world(configure: impl FnOnce(&mut RawSettings)) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = RawSettings {
        data_dir: dir.path().to_owned(),
        // The platform's profile and its receiver are local test servers.
        allow_private_profile_hosts: true,
        stripe_webhook_secret: Some(WEBHOOK_SECRET.into()),
        ..RawSettings::default()
    };
    raw.outbox.max_attempts = 3;
    raw.notify.support_email = "help@shop.example".into();
    configure(&mut raw);
    let settings = Settings::from_raw(raw).unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
    let app = bootstrap::build_with_clock(settings, clock.clone()).await.unwrap();
    let router = agentgate::http::app(app.state.clone());
    let platform = MockServer::start().await;
    let names: Vec<&str> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .map(|c| c.name)
        .filter(|n| *n != agentgate::ucp::profile::AP2_MANDATE)
        .collect();
    let hook = format!("{}/hooks/orders", platform.uri());
    let registry: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| {
            let entry = if *n == ORDER_CAP {
                json!([{"version": V4, "config": {"webhook_url": hook}}])
            } else {
                json!([{"version": V4}])
            };
            ((*n).to_owned(), entry)
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ucp": {"version": V4, "capabilities": registry}, "signing_keys": []}),
        ))
        .mount(&platform)
        .await;
    let agent = format!("profile=\"{}/.well-known/ucp\"", platform.uri());
    app.store.set_stock(&Sku::parse(TEE_SKU).unwrap(), 10).await.unwrap();
    World { app, router, clock, platform, agent, _dir: dir }
}

async fn world_default() -> World {
    world(|_| {}).await
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn ops() -> OrderActor {
    OrderActor::new("ops:grace", "trace-ops-1")
}

impl World {
    async fn call(
        &self,
        m: Method,
        uri: &str,
        body: Option<&Value>,
        agent: bool,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(m).uri(uri);
        if agent {
            req = req.header("ucp-agent", &self.agent);
        }
        req = req.header("idempotency-key", uuid::Uuid::new_v4().to_string());
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A checkout of `quantity` tees, shipped to the US, completed by the
    /// platform: the order id.
    async fn place(&self, quantity: u32) -> OrderId {
        let body = json!({
            "line_items": [{"item": {"id": TEE}, "quantity": quantity}],
            "buyer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
            "fulfillment": {"methods": [{"type": "shipping", "destinations": [{
                "street_address": "1 Main St", "address_locality": "Springfield",
                "address_region": "IL", "postal_code": "62701", "address_country": "US"}],
                "groups": [{"selected_option_id": "us-standard"}]}]},
            "payment": {"instruments": [{"id": "i1", "handler_id": "sandbox", "type": "card",
                "credential": {"type": "token", "token": "success_token"}}]},
        });
        let (status, created) =
            self.call(Method::POST, "/ucp/v1/checkout-sessions", Some(&body), true).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap();
        let complete = json!({"payment": body["payment"]});
        let uri = format!("/ucp/v1/checkout-sessions/{id}/complete");
        let (status, done) = self.call(Method::POST, &uri, Some(&complete), true).await;
        assert_eq!(
            (status, done["status"].as_str()),
            (StatusCode::OK, Some("completed")),
            "{done}"
        );
        OrderId::parse(done["order"]["id"].as_str().unwrap()).unwrap()
    }

    async fn outbox(&self, order: &OrderId) -> Vec<agentgate::ports::OutboxEntry> {
        let f = OutboxFilter { order_id: Some(order.clone()), ..OutboxFilter::default() };
        self.app.store.outbox_entries(&f).await.unwrap()
    }

    /// What the platform's receiver got, oldest first: the bodies.
    async fn received(&self) -> Vec<wiremock::Request> {
        self.platform
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/hooks/orders")
            .collect()
    }

    async fn receiver_answers(&self, status: u16) {
        Mock::given(method("POST"))
            .and(path("/hooks/orders"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&self.platform)
            .await;
    }

    async fn ucp_order(&self, id: &OrderId) -> Value {
        let (status, body) =
            self.call(Method::GET, &format!("/ucp/v1/orders/{id}"), None, true).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// Checks a webhook's detached JWS with josekit against the merchant's
/// JWKS, over the exact bytes received.
fn verify_webhook(req: &wiremock::Request, jwks: &Value) -> Value {
    let sig = req.headers["request-signature"].to_str().unwrap();
    let (header, signature) = sig.split_once("..").expect("a detached JWS");
    let compact = format!("{header}.{}.{signature}", agentgate::ap2::jws::b64url(&req.body));
    let protected: Value =
        serde_json::from_slice(&agentgate::ap2::jws::b64url_decode(header).unwrap()).unwrap();
    assert_eq!(protected["alg"], "ES256");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == protected["kid"])
        .expect("the kid is in the merchant JWKS");
    let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) =
        josekit::jws::deserialize_compact(&compact, &verifier).expect("signature verifies");
    serde_json::from_slice(&payload).unwrap()
}

fn order_schema_check(body: &Value) {
    if let Some(specs) = support::specs_dir() {
        let v = support::schema::operation_response(
            &specs,
            support::schema::UCP_REST_2026_04_08,
            "get_order",
            "200",
        );
        support::schema::assert_valid(&v, body, "order webhook body");
    }
}

#[tokio::test]
async fn a_completed_checkout_posts_a_signed_order_webhook_and_a_confirmation() {
    let w = world_default().await;
    w.receiver_answers(200).await;
    let order = w.place(2).await;
    let entries = w.outbox(&order).await;
    let kinds: Vec<_> = entries.iter().map(|e| (e.message.kind, e.status)).collect();
    assert_eq!(
        kinds,
        vec![
            (OutboxKind::OrderWebhook, OutboxStatus::Pending),
            (OutboxKind::Notification, OutboxStatus::Pending)
        ],
        "written with the order, nothing sent yet"
    );
    assert!(w.received().await.is_empty());

    assert_eq!(w.app.outbox.run_once().await.unwrap(), 2);
    let got = w.received().await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    let body = verify_webhook(req, &w.app.keys.jwks(w.clock.now()));
    assert_eq!(serde_json::from_slice::<Value>(&req.body).unwrap(), body);
    assert_eq!(body["id"], order.as_str());
    assert_eq!(req.headers["webhook-id"].to_str().unwrap(), body["event_id"].as_str().unwrap());
    assert!(uuid::Uuid::parse_str(body["event_id"].as_str().unwrap()).is_ok());
    assert!(body["created_time"].is_string());
    let ts: i64 = req.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!((ts - w.clock.now().unix_timestamp()).abs() <= 1);
    assert!(req.headers["ucp-agent"].to_str().unwrap().contains("/.well-known/ucp"));
    assert_eq!(req.headers["content-type"], "application/json");
    let expectation = &body["fulfillment"]["expectations"][0];
    assert_eq!(expectation["method_type"], "shipping");
    assert_eq!(expectation["destination"]["postal_code"], "62701");
    assert_eq!(body["line_items"][0]["status"], "processing");
    order_schema_check(&body);

    let entries = w.outbox(&order).await;
    assert!(entries.iter().all(|e| e.status == OutboxStatus::Delivered && e.attempts == 1));
    // Delivered means done: another pass sends nothing.
    assert_eq!(w.app.outbox.run_once().await.unwrap(), 0);
    assert_eq!(w.received().await.len(), 1);
}

#[tokio::test]
async fn the_lifecycle_is_guarded_and_every_change_reaches_the_platform() {
    let w = world_default().await;
    w.receiver_answers(200).await;
    let order = w.place(3).await;
    let gw = &w.app.gateway;

    // Refused moves leave the order and the outbox as they were.
    let refused = [
        gw.mark_delivered(&ops(), &order).await.map(drop),
        gw.add_fulfillment(
            &ops(),
            &order,
            ShipmentInput { lines: Some(vec![("li_1".into(), 4)]), ..Default::default() },
        )
        .await
        .map(drop),
        gw.add_fulfillment(
            &ops(),
            &order,
            ShipmentInput { lines: Some(vec![("li_9".into(), 1)]), ..Default::default() },
        )
        .await
        .map(drop),
        gw.add_fulfillment(
            &ops(),
            &order,
            ShipmentInput {
                tracking_url: Some("javascript:alert(1)".into()),
                ..Default::default()
            },
        )
        .await
        .map(drop),
        gw.refund_order(&ops(), &order, "").await.map(drop),
    ];
    let codes: Vec<_> = refused.into_iter().map(|r| r.unwrap_err().code()).collect();
    assert_eq!(
        codes,
        [
            ErrorCode::IllegalTransition,
            ErrorCode::InvalidInput,
            ErrorCode::InvalidInput,
            ErrorCode::InvalidInput,
            ErrorCode::InvalidInput
        ]
    );
    assert_eq!(w.outbox(&order).await.len(), 2);

    let first = ShipmentInput {
        carrier: Some("UPS".into()),
        tracking_number: Some("1Z999AA10123456784".into()),
        tracking_url: Some("https://track.example/1Z999AA10123456784".into()),
        lines: Some(vec![("li_1".into(), 2)]),
    };
    let view = gw.add_fulfillment(&ops(), &order, first).await.unwrap();
    assert_eq!(view.order.status(), OrderStatus::PartiallyFulfilled);
    let view = gw
        .add_fulfillment(
            &ops(),
            &order,
            ShipmentInput { carrier: Some("USPS".into()), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(view.order.status(), OrderStatus::Fulfilled);
    let view = gw.mark_delivered(&ops(), &order).await.unwrap();
    assert_eq!(view.order.status(), OrderStatus::Delivered);
    assert!(view.order.fulfillments.iter().all(|f| f.status == FulfillmentStatus::Delivered));
    // Every change is in the trail with who, why and the trace id.
    let trail = w.app.store.order_events(&order).await.unwrap();
    let ops_events: Vec<_> = trail.iter().filter(|e| e.actor == "ops:grace").collect();
    assert_eq!(ops_events.len(), 5, "two shipments, two status moves, delivery");
    assert!(ops_events.iter().all(|e| e.trace_id == "trace-ops-1" && !e.reason.is_empty()));

    // The UCP order shows expectations, shipments with tracking, counts.
    let body = w.ucp_order(&order).await;
    order_schema_check(&body);
    assert_eq!(body["line_items"][0]["quantity"]["fulfilled"], 3);
    assert_eq!(body["line_items"][0]["status"], "fulfilled");
    let events = body["fulfillment"]["events"].as_array().unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["shipped", "delivered", "shipped", "delivered"]);
    assert_eq!(events[0]["tracking_number"], "1Z999AA10123456784");
    assert_eq!(events[0]["line_items"][0]["quantity"], 2);
    assert_eq!(events[2]["line_items"][0]["quantity"], 1, "the second parcel held the rest");

    // Refund: once at the processor, the fee reversed, the order final.
    let before = w.app.payments.calls().len();
    let view = gw.refund_order(&ops(), &order, "returned by the buyer").await.unwrap();
    assert_eq!(view.order.status(), OrderStatus::Refunded);
    let again = gw.refund_order(&ops(), &order, "returned by the buyer").await.unwrap();
    assert_eq!(again.order.status(), OrderStatus::Refunded);
    let refunds = w.app.payments.calls()[before..]
        .iter()
        .filter(|c| {
            matches!(
                c,
                agentgate::adapters::payments::sandbox::SandboxCall::Refund { replayed: false, .. }
            )
        })
        .count();
    assert_eq!(refunds, 1);
    let day = Duration::days(1);
    let ledger =
        w.app.store.ledger_entries(w.clock.now() - day, w.clock.now() + day, None).await.unwrap();
    let mine: Vec<_> = ledger.iter().filter(|e| e.order_id == order).collect();
    assert_eq!(
        mine.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [LedgerKind::Fee, LedgerKind::Reversal]
    );
    assert_eq!(mine.iter().map(|e| e.fee.minor()).sum::<i64>(), 0, "the fee is given back");
    let body = w.ucp_order(&order).await;
    assert_eq!(body["adjustments"][0]["type"], "refund");
    assert_eq!(body["adjustments"][0]["totals"][0]["amount"], -(view.order.payment.amount.minor()));
    assert!(
        gw.cancel_order(&ops(), &order, "too late").await.is_err(),
        "a refunded order is final"
    );

    // The payment and four changes after it (two shipments, delivery,
    // refund; the repeated refund changed nothing), each posted once.
    assert_eq!(w.app.outbox.run_once().await.unwrap(), 2 + 4);
    let got = w.received().await;
    assert_eq!(got.len(), 5);
    let ids: std::collections::HashSet<_> =
        got.iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 5, "each change has its own event id");
    let last = verify_webhook(
        got.iter()
            .max_by_key(|r| r.headers["webhook-timestamp"].to_str().unwrap().to_owned())
            .unwrap(),
        &w.app.keys.jwks(w.clock.now()),
    );
    assert_eq!(last["id"], order.as_str());
}

#[tokio::test]
async fn a_cancel_refunds_reverses_the_fee_and_restocks() {
    let w = world_default().await;
    w.receiver_answers(200).await;
    let order = w.place(2).await;
    let sku = Sku::parse(TEE_SKU).unwrap();
    assert_eq!(w.app.store.get_stock(&sku).await.unwrap(), Some(8));
    let view =
        w.app.gateway.cancel_order(&ops(), &order, "the buyer changed their mind").await.unwrap();
    assert_eq!(view.order.status(), OrderStatus::Canceled);
    assert_eq!(w.app.store.get_stock(&sku).await.unwrap(), Some(10));
    let refund = view.events.iter().find_map(|e| match &e.kind {
        OrderEventKind::Refund { amount, .. } => Some(*amount),
        _ => None,
    });
    assert_eq!(refund, Some(view.order.payment.amount));
    // A second cancel answers the canceled order and restocks nothing.
    w.app.gateway.cancel_order(&ops(), &order, "again").await.unwrap();
    assert_eq!(w.app.store.get_stock(&sku).await.unwrap(), Some(10));
    let body = w.ucp_order(&order).await;
    assert_eq!(body["line_items"][0]["status"], "removed");
    let kinds: Vec<_> = body["adjustments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "cancellation"]);
    order_schema_check(&body);
    // A shipped order cannot be canceled.
    let shipped = w.place(1).await;
    w.app.gateway.add_fulfillment(&ops(), &shipped, ShipmentInput::default()).await.unwrap();
    let err = w.app.gateway.cancel_order(&ops(), &shipped, "x").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::IllegalTransition);
}

#[tokio::test]
async fn failed_deliveries_back_off_then_dead_letter() {
    let w = world_default().await;
    w.receiver_answers(503).await;
    let order = w.place(1).await;
    let webhook = |entries: Vec<agentgate::ports::OutboxEntry>| {
        entries.into_iter().find(|e| e.message.kind == OutboxKind::OrderWebhook).unwrap()
    };
    w.app.outbox.run_once().await.unwrap();
    let e = webhook(w.outbox(&order).await);
    assert_eq!((e.status, e.attempts), (OutboxStatus::Pending, 1));
    assert!(e.last_error.as_deref().unwrap().contains("503"));
    let wait = e.next_attempt_at - w.clock.now();
    assert!(wait >= Duration::milliseconds(500) && wait <= Duration::seconds(1), "{wait}");
    // Not due yet: nothing is claimed, nothing is sent.
    assert_eq!(w.app.outbox.run_once().await.unwrap(), 0);
    assert_eq!(w.received().await.len(), 1);
    w.clock.advance(Duration::seconds(2));
    w.app.outbox.run_once().await.unwrap();
    let e = webhook(w.outbox(&order).await);
    assert_eq!((e.status, e.attempts), (OutboxStatus::Pending, 2));
    assert!(e.next_attempt_at - w.clock.now() >= Duration::seconds(1), "the wait doubles");
    w.clock.advance(Duration::seconds(5));
    w.app.outbox.run_once().await.unwrap();
    let e = webhook(w.outbox(&order).await);
    assert_eq!((e.status, e.attempts), (OutboxStatus::Dead, 3), "max_attempts = 3");
    assert!(e.last_error.as_deref().unwrap().starts_with("gave up after 3 attempts"));
    w.clock.advance(Duration::days(1));
    assert_eq!(w.app.outbox.run_once().await.unwrap(), 0);
    assert_eq!(w.received().await.len(), 3);

    // 410 Gone is dead at once.
    let w = world_default().await;
    w.receiver_answers(410).await;
    let order = w.place(1).await;
    w.app.outbox.run_once().await.unwrap();
    let e = webhook(w.outbox(&order).await);
    assert_eq!((e.status, e.attempts), (OutboxStatus::Dead, 1));
}

#[tokio::test]
async fn confirmations_go_to_the_email_api_once() {
    let mail = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&mail)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "email_1"})))
        .mount(&mail)
        .await;
    let url = format!("{}/emails", mail.uri());
    let w = world(move |raw| {
        raw.notify.sender = NotifySender::Http;
        raw.notify.url = Some(url);
        raw.notify.api_key = Some("re_test_key".into());
        raw.notify.from = "orders@shop.example".into();
        raw.notify.support_url = Some("https://shop.example/help".into());
    })
    .await;
    w.receiver_answers(200).await;
    let order = w.place(2).await;
    w.app.outbox.run_once().await.unwrap();
    w.clock.advance(Duration::seconds(5));
    w.app.outbox.run_once().await.unwrap();
    let sent = mail.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2, "a failure, then the retry");
    for r in &sent {
        assert_eq!(r.headers["authorization"], "Bearer re_test_key");
        assert_eq!(r.headers["idempotency-key"].to_str().unwrap(), format!("{order}:confirmation"));
    }
    assert_eq!(sent[0].body, sent[1].body, "the retry sends the same email");
    let email: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(email["from"], "orders@shop.example");
    assert_eq!(email["to"], json!(["ada@example.com"]));
    let text = email["text"].as_str().unwrap();
    let paid = w.app.store.get_order(&order).await.unwrap().unwrap().value.payment.amount;
    for needle in [
        order.as_str().to_owned(),
        "2 x ".to_owned(),
        format!("You paid {paid}. No fees were added"),
        "help@shop.example".to_owned(),
        "https://shop.example/help".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains("fee_"), "the platform fee is not the buyer's business");
    let entries = w.outbox(&order).await;
    let n = entries.iter().find(|e| e.message.kind == OutboxKind::Notification).unwrap();
    assert_eq!((n.status, n.attempts), (OutboxStatus::Delivered, 2));
}

// ---- Stripe's events -----------------------------------------------------------

fn stripe_signature(body: &str, t: i64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

impl World {
    async fn stripe(&self, body: &Value, signature: Option<String>) -> (StatusCode, Value) {
        let mut req = Request::post("/webhooks/stripe").header("content-type", "application/json");
        if let Some(s) = signature {
            req = req.header("stripe-signature", s);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn signed(&self, body: &Value) -> (StatusCode, Value) {
        let sig =
            stripe_signature(&body.to_string(), self.clock.now().unix_timestamp(), WEBHOOK_SECRET);
        self.stripe(body, Some(sig)).await
    }
}

fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "api_version": "2026-01-28.clover",
           "created": 1767225600, "livemode": false, "data": {"object": object}})
}

#[tokio::test]
async fn stripe_events_move_orders_once_and_forged_ones_nothing() {
    let w = world_default().await;
    w.receiver_answers(200).await;
    let order_id = w.place(2).await;
    let order = w.app.store.get_order(&order_id).await.unwrap().unwrap().value;
    let meta =
        json!({"order_id": order_id.to_string(), "checkout_id": order.checkout_id.to_string()});
    let paid = order.payment.amount.minor();
    let refunded = event(
        "evt_refund_1",
        "charge.refunded",
        json!({
        "id": "ch_1", "object": "charge", "payment_intent": order.payment.reference,
        "amount": paid, "amount_refunded": paid, "refunded": true, "currency": "usd", "metadata": meta}),
    );

    // Refused before anything: no signature, a forged one, a stale one.
    let now = w.clock.now().unix_timestamp();
    let bad = [
        None,
        Some(stripe_signature(&refunded.to_string(), now, "whsec_forged")),
        Some(stripe_signature(&refunded.to_string(), now - 301, WEBHOOK_SECRET)),
    ];
    for sig in bad {
        let (status, body) = w.stripe(&refunded, sig).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "webhook_signature_invalid");
        assert!(body["error"]["trace_id"].is_string());
    }
    assert_eq!(
        w.app.store.get_order(&order_id).await.unwrap().unwrap().value.status(),
        OrderStatus::Paid
    );

    // The succeeded event of a paid order changes nothing.
    let succeeded = event(
        "evt_pi_1",
        "payment_intent.succeeded",
        json!({
        "id": order.payment.reference, "object": "payment_intent", "amount": paid,
        "amount_received": paid, "currency": "usd", "status": "succeeded", "metadata": meta}),
    );
    assert_eq!(w.signed(&succeeded).await.1["effect"], "unchanged");

    // A partial refund is recorded; the full one refunds the order.
    let partial = event(
        "evt_refund_0",
        "charge.refunded",
        json!({
        "id": "ch_1", "object": "charge", "payment_intent": order.payment.reference,
        "amount": paid, "amount_refunded": 500, "refunded": false, "currency": "usd", "metadata": meta}),
    );
    assert_eq!(w.signed(&partial).await.1["effect"], "applied");
    assert_eq!(
        w.app.store.get_order(&order_id).await.unwrap().unwrap().value.status(),
        OrderStatus::Paid
    );
    let (status, body) = w.signed(&refunded).await;
    assert_eq!((status, body["effect"].as_str()), (StatusCode::OK, Some("applied")), "{body}");
    let after = w.app.store.get_order(&order_id).await.unwrap().unwrap();
    assert_eq!(after.value.status(), OrderStatus::Refunded);
    let events_after = w.app.store.order_events(&order_id).await.unwrap();
    assert_eq!(
        agentgate::domain::Order::refunded_in(&events_after),
        paid,
        "the part and the rest, not the part and the whole"
    );

    // A redelivery is a duplicate, and nothing changes.
    let (status, body) = w.signed(&refunded).await;
    assert_eq!((status, body["effect"].as_str()), (StatusCode::OK, Some("duplicate")));
    assert_eq!(w.app.store.get_order(&order_id).await.unwrap().unwrap().version, after.version);
    assert_eq!(w.app.store.order_events(&order_id).await.unwrap(), events_after);
    // An event type the gateway does not act on.
    let other =
        event("evt_other", "customer.created", json!({"id": "cus_1", "object": "customer"}));
    assert_eq!(w.signed(&other).await.1["effect"], "ignored");
    // A signed body that is not an event.
    assert_eq!(w.signed(&json!({"hello": "world"})).await.0, StatusCode::BAD_REQUEST);

    // The ledger: the fee and its reversal.
    let day = Duration::days(1);
    let ledger =
        w.app.store.ledger_entries(w.clock.now() - day, w.clock.now() + day, None).await.unwrap();
    assert_eq!(
        ledger.iter().filter(|e| e.order_id == order_id).map(|e| e.fee.minor()).sum::<i64>(),
        0
    );
}

#[tokio::test]
async fn a_charge_without_an_order_is_refunded_once() {
    let w = world_default().await;
    w.receiver_answers(200).await;
    let order_id = w.place(1).await;
    let order = w.app.store.get_order(&order_id).await.unwrap().unwrap().value;
    // A charge of an attempt the checkout no longer refers to (it
    // completed under another order), as a processor that captured an
    // abandoned payment would report it.
    let ghost = OrderId::from_uuid(uuid::Uuid::now_v7());
    let key = format!("{}:charge:{ghost}", order.checkout_id);
    let charge = ChargeRequest {
        idempotency_key: key,
        amount: usd(1234),
        token: "success_token".into(),
        checkout_id: order.checkout_id.clone(),
        order_id: ghost.clone(),
    };
    let ChargeOutcome::Succeeded { reference } = w.app.payments.charge(&charge).await.unwrap()
    else {
        panic!("charged")
    };
    let meta = json!({"order_id": ghost.to_string(), "checkout_id": order.checkout_id.to_string()});
    let succeeded = |id: &str| {
        event(
            id,
            "payment_intent.succeeded",
            json!({
        "id": reference, "object": "payment_intent", "amount": 1234, "amount_received": 1234,
        "currency": "usd", "status": "succeeded", "metadata": meta}),
        )
    };
    assert_eq!(w.signed(&succeeded("evt_ghost_1")).await.1["effect"], "orphan_refunded");
    // Stripe may send the same fact under another event id: refunded once.
    assert_eq!(w.signed(&succeeded("evt_ghost_2")).await.1["effect"], "orphan_refunded");
    let refunds: Vec<_> = w
        .app
        .payments
        .calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                agentgate::adapters::payments::sandbox::SandboxCall::Refund { replayed: false, .. }
            )
        })
        .collect();
    assert_eq!(refunds.len(), 1);
    // An attempt still in flight is left to the pipeline.
    let checkout = CheckoutId::from_uuid(uuid::Uuid::now_v7());
    let foreign = json!({"order_id": ghost.to_string(), "checkout_id": checkout.to_string()});
    let unknown = event(
        "evt_ghost_3",
        "payment_intent.succeeded",
        json!({
        "id": "pi_x", "object": "payment_intent", "amount": 1, "amount_received": 1,
        "currency": "usd", "metadata": foreign}),
    );
    assert_eq!(w.signed(&unknown).await.1["effect"], "unchanged", "not a checkout of this gateway");
}

#[tokio::test]
async fn an_operator_refund_after_a_partial_one_gives_back_the_rest() {
    let w = world_default().await;
    w.receiver_answers(200).await;
    let order_id = w.place(2).await;
    let order = w.app.store.get_order(&order_id).await.unwrap().unwrap().value;
    let meta =
        json!({"order_id": order_id.to_string(), "checkout_id": order.checkout_id.to_string()});
    let paid = order.payment.amount.minor();
    let partial = event(
        "evt_partial",
        "charge.refunded",
        json!({
        "id": "ch_1", "object": "charge", "payment_intent": order.payment.reference,
        "amount": paid, "amount_refunded": 700, "refunded": false, "currency": "usd", "metadata": meta}),
    );
    assert_eq!(w.signed(&partial).await.1["effect"], "applied");
    let view = w.app.gateway.refund_order(&ops(), &order_id, "returned").await.unwrap();
    assert_eq!(view.order.status(), OrderStatus::Refunded);
    let refunded: Vec<_> = w
        .app
        .payments
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            agentgate::adapters::payments::sandbox::SandboxCall::Refund {
                amount,
                replayed: false,
                ..
            } => Some(amount),
            _ => None,
        })
        .collect();
    assert_eq!(refunded, vec![usd(paid - 700)], "only what was not given back");
    assert_eq!(agentgate::domain::Order::refunded_in(&view.events), paid);
}
