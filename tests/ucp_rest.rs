//! The UCP REST binding end to end, through the real router: every
//! operation's request and response against the official 2026-04-08
//! OpenAPI schemas (and the checkout in 2026-01-11 shape against that
//! release's), the shopping flow from search to order, idempotency
//! (replay, conflict, concurrency, expiry), negotiation with platform
//! profiles served by a local server, and the error bodies.

mod support;

use std::sync::{Arc, Mutex};

use agentgate::bootstrap::{self, App};
use agentgate::ports::Clock;
use agentgate::settings::Settings;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use support::schema::{self, Resolve};
use time::OffsetDateTime;
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const V4: &str = "2026-04-08";
const V1: &str = "2026-01-11";
const CHECKOUT: &str = "dev.ucp.shopping.checkout";
const DISCOUNT: &str = "dev.ucp.shopping.discount";
const FULFILLMENT: &str = "dev.ucp.shopping.fulfillment";

// ---- Harness ------------------------------------------------------------------

struct ManualClock(Mutex<OffsetDateTime>);

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

struct Shop {
    app: App,
    router: Router,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    // Platform profiles come from a local wiremock server in these tests.
    settings.allow_private_profile_hosts = true;
    let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
    let app = bootstrap::build_with_clock(settings, clock.clone()).await.unwrap();
    let router = agentgate::http::app(app.state.clone());
    Shop { app, router, clock, _dir: dir }
}

/// One answer: status, headers, the raw body and its JSON.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
    json: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.json)
    }
}

/// What a request carries besides method, path and body.
#[derive(Clone, Default)]
struct Opts {
    agent: Option<String>,
    key: Option<String>,
}

fn with_agent(url: &str) -> Opts {
    Opts { agent: Some(format!("profile=\"{url}\"")), key: None }
}

impl Opts {
    fn key(&self, k: &str) -> Self {
        Self { key: Some(k.to_owned()), ..self.clone() }
    }
}

async fn call_raw(
    router: &Router,
    m: Method,
    uri: &str,
    opts: &Opts,
    body: Body,
    json_type: bool,
) -> Answer {
    let mut req = Request::builder().method(m).uri(uri);
    if json_type {
        req = req.header("content-type", "application/json");
    }
    if let Some(a) = &opts.agent {
        req = req.header("ucp-agent", a);
    }
    if let Some(k) = &opts.key {
        req = req.header("idempotency-key", k);
    }
    let resp = router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20).await.unwrap().to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, headers, bytes, json }
}

async fn call(router: &Router, m: Method, uri: &str, opts: &Opts, body: Option<&Value>) -> Answer {
    match body {
        Some(b) => call_raw(router, m, uri, opts, Body::from(b.to_string()), true).await,
        None => call_raw(router, m, uri, opts, Body::empty(), false).await,
    }
}

fn fresh_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Every capability the business offers at `version`, as a platform
/// declaring all of them would list them.
fn platform_profile(version: &str) -> Value {
    let names: Vec<&str> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .filter(|c| version == V4 || c.in_2026_01_11)
        .filter(|c| c.name != agentgate::ucp::profile::AP2_MANDATE)
        .map(|c| c.name)
        .collect();
    if version == V1 {
        json!({"ucp": {"version": V1, "capabilities": names.iter().map(|n| json!({
            "name": n, "version": V1, "spec": "https://ucp.dev/specification/overview",
            "schema": "https://ucp.dev/schemas/shopping/checkout.json"})).collect::<Vec<_>>()}})
    } else {
        let registry: serde_json::Map<String, Value> =
            names.iter().map(|n| ((*n).to_owned(), json!([{"version": V4}]))).collect();
        json!({"ucp": {"version": V4, "capabilities": registry}, "signing_keys": []})
    }
}

/// A local server answering `path` with `body`.
async fn serve(server: &MockServer, at: &str, status: u16, body: Value) -> String {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(server)
        .await;
    format!("{}{at}", server.uri())
}

// ---- Schemas ------------------------------------------------------------------

/// Validators for one REST binding, built once per test.
struct Schemas {
    specs: std::path::PathBuf,
    rest: &'static str,
}

impl Schemas {
    fn v4() -> Option<Self> {
        support::specs_dir().map(|specs| Self { specs, rest: schema::UCP_REST_2026_04_08 })
    }

    fn v1() -> Option<Self> {
        support::specs_dir().map(|specs| Self { specs, rest: schema::UCP_REST_2026_01_11 })
    }

    fn request(&self, op: &str, body: &Value) {
        let v = schema::operation_request(&self.specs, self.rest, op);
        schema::assert_valid(&v, body, &format!("{op} request"));
    }

    fn response(&self, op: &str, status: &str, body: &Value) {
        let v = schema::operation_response(&self.specs, self.rest, op, status);
        schema::assert_valid(&v, body, &format!("{op} {status} response"));
    }

    /// A checkout against the checkout schema composed with the
    /// fulfillment and discount extensions, which the OpenAPI's base
    /// checkout leaves unchecked (`additionalProperties: true`).
    fn extended_checkout(&self, op: &str, body: &Value) {
        let (version, suffix) = if self.rest == schema::UCP_REST_2026_04_08 {
            ("ucp/2026-04-08", "/$defs/dev.ucp.shopping.checkout")
        } else {
            ("ucp/2026-01-11", "/$defs/checkout")
        };
        let fulfillment = format!("{version}/schemas/shopping/fulfillment.json");
        let discount = format!("{version}/schemas/shopping/discount.json");
        let v = schema::validator_all_of(
            &self.specs,
            &[(fulfillment.as_str(), suffix), (discount.as_str(), suffix)],
            &Resolve::response(schema::operation_kind(op)),
        );
        schema::assert_valid(&v, body, &format!("{op} checkout with extensions ({version})"));
    }
}

// ---- Bodies -------------------------------------------------------------------

fn address(country: &str) -> Value {
    json!({"street_address": "1 Main St", "address_locality": "Springfield", "address_region": "IL",
           "postal_code": "62701", "address_country": country, "first_name": "Ada", "last_name": "Lovelace"})
}

fn instrument(token: &str) -> Value {
    json!({"id": "instr_a", "handler_id": "sandbox", "type": "card",
           "credential": {"type": "token", "token": token}})
}

fn checkout_body(items: &[(&str, u32)]) -> Value {
    json!({"line_items": items.iter().map(|(v, q)| json!({"item": {"id": v}, "quantity": q})).collect::<Vec<_>>()})
}

/// A complete create: buyer, US shipping with standard selected, a code
/// and a card.
fn full_checkout_body(items: &[(&str, u32)]) -> Value {
    let mut b = checkout_body(items);
    b["buyer"] = json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"});
    b["fulfillment"] = json!({"methods": [{"type": "shipping", "destinations": [address("US")],
                                            "groups": [{"selected_option_id": "us-standard"}]}]});
    b["discounts"] = json!({"codes": ["WELCOME10"]});
    b["payment"] = json!({"instruments": [instrument("success_token")]});
    b
}

fn total(body: &Value, kind: &str) -> Option<i64> {
    body["totals"].as_array()?.iter().find(|t| t["type"] == kind)?["amount"].as_i64()
}

fn message_codes(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn create(shop: &Shop, opts: &Opts, body: &Value) -> Answer {
    call(
        &shop.router,
        Method::POST,
        "/ucp/v1/checkout-sessions",
        &opts.key(&fresh_key()),
        Some(body),
    )
    .await
}

// ---- Tests --------------------------------------------------------------------

/// Every operation, with its recorded request and response checked
/// against the 2026-04-08 OpenAPI, error responses included.
#[tokio::test]
async fn every_operation_matches_the_2026_04_08_schemas() {
    let shop = shop().await;
    let schemas = Schemas::v4();
    let check = |op: &str, status: &str, body: &Value| {
        if let Some(s) = &schemas {
            s.response(op, status, body);
        }
    };
    let check_request = |op: &str, body: &Value| {
        if let Some(s) = &schemas {
            s.request(op, body);
        }
    };
    let server = MockServer::start().await;
    let platform = with_agent(&serve(&server, "/platform.json", 200, platform_profile(V4)).await);
    let r = &shop.router;

    // Catalog.
    let search = json!({"query": "linen", "pagination": {"limit": 2}});
    check_request("search_catalog", &search);
    let a = call(r, Method::POST, "/ucp/v1/catalog/search", &platform, Some(&search)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("search_catalog", "200", &a.json);
    assert!(!a.json["products"].as_array().unwrap().is_empty());

    let lookup = json!({"ids": ["v-linen-camp-shirt-m", "p-cast-iron-skillet", "missing-thing"]});
    check_request("lookup_catalog", &lookup);
    let a = call(r, Method::POST, "/ucp/v1/catalog/lookup", &platform, Some(&lookup)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("lookup_catalog", "200", &a.json);
    assert_eq!(a.json["products"].as_array().unwrap().len(), 2);
    assert_eq!(a.json["messages"][0]["path"], "$.ids[2]");

    let product = json!({"id": "v-linen-camp-shirt-l"});
    check_request("get_product", &product);
    let a = call(r, Method::POST, "/ucp/v1/catalog/product", &platform, Some(&product)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("get_product", "200", &a.json);
    assert_eq!(a.json["product"]["variants"][0]["id"], "v-linen-camp-shirt-l");
    let a =
        call(r, Method::POST, "/ucp/v1/catalog/product", &platform, Some(&json!({"id": "nope"})))
            .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    check("get_product", "200", &a.json);

    // Cart.
    let cart = checkout_body(&[("v-organic-cotton-tee-black", 2)]);
    check_request("create_cart", &cart);
    let a = call(r, Method::POST, "/ucp/v1/carts", &platform.key(&fresh_key()), Some(&cart)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    check("create_cart", "201", &a.json);
    let cart_id = a.json["id"].as_str().unwrap().to_owned();
    let a = call(r, Method::GET, &format!("/ucp/v1/carts/{cart_id}"), &platform, None).await;
    check("get_cart", "200", &a.json);
    let mut replace = checkout_body(&[("v-stoneware-coffee-mug-ocean-blue", 1)]);
    replace["id"] = json!(cart_id);
    check_request("update_cart", &replace);
    let a = call(
        r,
        Method::PUT,
        &format!("/ucp/v1/carts/{cart_id}"),
        &platform.key(&fresh_key()),
        Some(&replace),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("update_cart", "200", &a.json);
    assert_eq!(total(&a.json, "subtotal"), Some(1600));
    let a = call(
        r,
        Method::POST,
        &format!("/ucp/v1/carts/{cart_id}/cancel"),
        &platform.key(&fresh_key()),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("cancel_cart", "200", &a.json);

    // Checkout: create, read, update, cancel, and the error shapes.
    let body = full_checkout_body(&[("v-organic-cotton-tee-black", 2)]);
    check_request("create_checkout", &body);
    let a = create(&shop, &platform, &body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    check("create_checkout", "201", &a.json);
    if let Some(s) = &schemas {
        s.extended_checkout("create_checkout", &a.json);
        // The validator is strict: a positive discount total would fail.
        let mut wrong = a.json.clone();
        for t in wrong["totals"].as_array_mut().unwrap() {
            if t["type"] == "discount" {
                t["amount"] = json!(360);
            }
        }
        let v = schema::operation_response(&s.specs, s.rest, "create_checkout", "201");
        schema::assert_invalid(&v, &wrong, "a checkout with a positive discount");
    }
    let id = a.json["id"].as_str().unwrap().to_owned();
    let a = call(r, Method::GET, &format!("/ucp/v1/checkout-sessions/{id}"), &platform, None).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("get_checkout", "200", &a.json);
    let mut update = full_checkout_body(&[("v-organic-cotton-tee-black", 3)]);
    update["fulfillment"]["methods"][0]["line_item_ids"] = json!(["li_1"]);
    update["fulfillment"]["methods"][0]["groups"] =
        json!([{"id": "group_1", "selected_option_id": "us-express"}]);
    check_request("update_checkout", &update);
    let a = call(
        r,
        Method::PUT,
        &format!("/ucp/v1/checkout-sessions/{id}"),
        &platform.key(&fresh_key()),
        Some(&update),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("update_checkout", "200", &a.json);
    if let Some(s) = &schemas {
        s.extended_checkout("update_checkout", &a.json);
    }
    assert_eq!(total(&a.json, "fulfillment"), Some(1499));
    let complete = json!({"payment": {"instruments": [instrument("success_token")]}});
    check_request("complete_checkout", &complete);
    let a = call(
        r,
        Method::POST,
        &format!("/ucp/v1/checkout-sessions/{id}/cancel"),
        &platform.key(&fresh_key()),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    check("cancel_checkout", "200", &a.json);
    assert_eq!(a.json["status"], "canceled");
    // Completing a canceled session: an error_response with 409.
    let a = call(
        r,
        Method::POST,
        &format!("/ucp/v1/checkout-sessions/{id}/complete"),
        &platform.key(&fresh_key()),
        Some(&complete),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{a:?}");
    check("complete_checkout", "200", &a.json);

    let missing = "/ucp/v1/checkout-sessions/chk_0000000000000000000000000000dead";
    let a = call(r, Method::GET, missing, &platform, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    check("get_checkout", "200", &a.json);
    assert_eq!(a.json["ucp"]["status"], "error");
    let a = create(&shop, &platform, &checkout_body(&[("v-no-such-thing", 1)])).await;
    assert_eq!(a.status, StatusCode::OK, "a business refusal is HTTP 200: {a:?}");
    check("create_checkout", "201", &a.json);
    assert_eq!(a.json["messages"][0]["code"], "item_unavailable");
    let a = call(
        r,
        Method::GET,
        "/ucp/v1/orders/ord_0000000000000000000000000000dead",
        &platform,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    check("get_order", "200", &a.json);
}

/// A platform that negotiates 2026-01-11 gets that release's shapes, and
/// keeps getting them for the sessions it created.
#[tokio::test]
async fn a_2026_01_11_platform_gets_2026_01_11_checkouts() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let old = with_agent(&serve(&server, "/old.json", 200, platform_profile(V1)).await);
    let mut body = full_checkout_body(&[("v-organic-cotton-tee-black", 2)]);
    // 2026-01-11 requests name the currency.
    body["currency"] = json!("USD");
    body["buyer"] = json!({"email": "ada@example.com", "full_name": "Ada Lovelace"});
    body["payment"] = json!({"instruments": [{
        "id": "instr_a", "handler_id": "sandbox", "type": "card", "brand": "visa", "last_digits": "4242",
        "credential": {"type": "token", "token": "success_token"}}]});
    let schemas = Schemas::v1();
    if let Some(s) = &schemas {
        s.request("create_checkout", &body);
    }
    let a = create(&shop, &old, &body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let id = a.json["id"].as_str().unwrap().to_owned();
    let got =
        call(&shop.router, Method::GET, &format!("/ucp/v1/checkout-sessions/{id}"), &old, None)
            .await;
    for (op, status, answer) in [("create_checkout", "201", &a), ("get_checkout", "200", &got)] {
        if let Some(s) = &schemas {
            s.response(op, status, &answer.json);
            s.extended_checkout(op, &answer.json);
        }
        let j = &answer.json;
        assert_eq!(j["ucp"]["version"], V1);
        assert!(j["ucp"]["capabilities"].is_array(), "capabilities are an array in 2026-01-11");
        assert_eq!(j["payment"]["handlers"][0]["id"], "sandbox");
        assert_eq!(total(j, "discount"), Some(360), "2026-01-11 discounts are positive");
        assert_eq!(total(j, "total"), Some(3600 - 360 + 599));
        assert_eq!(j["status"], "ready_for_complete", "{j}");
    }
    // The same session read by a 2026-04-08 client keeps its shape.
    if let Some(s) = Schemas::v4() {
        let v = schema::operation_response(&s.specs, s.rest, "get_checkout", "200");
        schema::assert_invalid(&v, &got.json, "a 2026-01-11 checkout as 2026-04-08");
    }
    // Cart and catalog do not exist in 2026-01-11.
    let a = call(
        &shop.router,
        Method::POST,
        "/ucp/v1/carts",
        &old.key(&fresh_key()),
        Some(&checkout_body(&[])),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.json["messages"][0]["code"], "capabilities_incompatible");
}

/// Search, cart, checkout from the cart, updates until ready, complete,
/// order.
#[tokio::test]
async fn the_shopping_flow_end_to_end() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let p = with_agent(&serve(&server, "/flow.json", 200, platform_profile(V4)).await);
    let r = &shop.router;

    let a =
        call(r, Method::POST, "/ucp/v1/catalog/search", &p, Some(&json!({"query": "cotton tee"})))
            .await;
    let variant = a.json["products"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["variants"].as_array().unwrap().iter())
        .find(|v| v["id"] == "v-organic-cotton-tee-black")
        .expect("the search finds the tee")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = call(
        r,
        Method::POST,
        "/ucp/v1/carts",
        &p.key(&fresh_key()),
        Some(&checkout_body(&[(&variant, 2)])),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let cart_id = a.json["id"].as_str().unwrap().to_owned();

    let a = create(&shop, &p, &json!({"cart_id": cart_id, "line_items": []})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    assert_eq!(a.json["status"], "incomplete");
    assert_eq!(a.json["cart_id"], cart_id.as_str());
    let id = a.json["id"].as_str().unwrap().to_owned();
    let url = format!("/ucp/v1/checkout-sessions/{id}");
    let mut body = checkout_body(&[(&variant, 2)]);
    let put = |body: Value| {
        let (r, url, p) = (r.clone(), url.clone(), p.clone());
        async move { call(&r, Method::PUT, &url, &p.key(&fresh_key()), Some(&body)).await }
    };

    body["buyer"] = json!({"email": "ada@example.com"});
    let a = put(body.clone()).await;
    assert_eq!(a.json["status"], "incomplete");
    assert!(!message_codes(&a.json).is_empty());

    body["fulfillment"] =
        json!({"methods": [{"type": "shipping", "destinations": [address("US")]}]});
    let a = put(body.clone()).await;
    let options = &a.json["fulfillment"]["methods"][0]["groups"][0]["options"];
    assert_eq!(options[0]["id"], "us-standard", "{a:?}");
    body["fulfillment"]["methods"][0]["groups"] =
        json!([{"id": "group_1", "selected_option_id": "us-standard"}]);
    body["fulfillment"]["methods"][0]["line_item_ids"] = json!(["li_1"]);
    let a = put(body.clone()).await;
    assert_eq!(total(&a.json, "fulfillment"), Some(599));

    body["discounts"] = json!({"codes": ["SAVE5"]});
    body["payment"] = json!({"instruments": [instrument("success_token")]});
    let a = put(body.clone()).await;
    assert_eq!(a.json["status"], "ready_for_complete", "{a:?}");
    // 2 × 18.00 = 36.00; SAVE5 takes 5.00 (over 30.00); shipping 5.99.
    assert_eq!(total(&a.json, "subtotal"), Some(3600));
    assert_eq!(total(&a.json, "discount"), Some(-500));
    assert_eq!(total(&a.json, "fulfillment"), Some(599));
    assert_eq!(total(&a.json, "total"), Some(3600 - 500 + 599));
    let applied = &a.json["discounts"]["applied"][0];
    assert_eq!((applied["code"].as_str(), applied["amount"].as_i64()), (Some("SAVE5"), Some(500)));
    assert_eq!(applied["allocations"], json!([{"path": "$.line_items[0]", "amount": 500}]));
    assert!(a.json.get("messages").is_none(), "nothing left to say: {a:?}");

    // Complete with the sandbox's good token: one charge, one order.
    let complete = json!({"payment": {"instruments": [instrument("success_token")]}});
    let schemas = Schemas::v4();
    if let Some(s) = &schemas {
        s.request("complete_checkout", &complete);
    }
    let done_opts = p.key(&fresh_key());
    let done = call(r, Method::POST, &format!("{url}/complete"), &done_opts, Some(&complete)).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.json["status"], "completed");
    assert_eq!(total(&done.json, "total"), Some(3600 - 500 + 599));
    if let Some(s) = &schemas {
        s.response("complete_checkout", "200", &done.json);
        s.extended_checkout("complete_checkout", &done.json);
    }
    assert_eq!(shop.app.payments.successful_charges(), 1);
    // A retry of the same request is the same answer, and no second charge.
    let again =
        call(r, Method::POST, &format!("{url}/complete"), &done_opts, Some(&complete)).await;
    assert_eq!(again.bytes, done.bytes);
    assert_eq!(again.headers.get("idempotency-replayed").unwrap(), "true");
    assert_eq!(shop.app.payments.successful_charges(), 1);

    let order_id =
        done.json["order"]["id"].as_str().expect("the completed checkout names its order");
    assert!(done.json["order"]["permalink_url"].as_str().unwrap().ends_with(order_id));
    let order = call(r, Method::GET, &format!("/ucp/v1/orders/{order_id}"), &p, None).await;
    assert_eq!(order.status, StatusCode::OK, "{order:?}");
    if let Some(s) = &schemas {
        s.response("get_order", "200", &order.json);
    }
    assert_eq!(order.json["checkout_id"], id.as_str());
    assert_eq!(order.json["line_items"][0]["quantity"]["total"], 2);
    for kind in ["subtotal", "discount", "fulfillment", "total"] {
        assert_eq!(total(&order.json, kind), total(&done.json, kind), "{kind}");
    }
    // The completed session is final and reads the same.
    let a = call(r, Method::GET, &url, &p, None).await;
    assert_eq!(a.json["status"], "completed");
    let a = put(body.clone()).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "a completed checkout cannot change: {a:?}");
}

/// A declined or escalated payment is a business outcome: HTTP 200 with
/// the session, its message and (for escalation) the continue_url.
#[tokio::test]
async fn declined_and_escalated_payments_answer_with_the_session() {
    let shop = shop().await;
    let r = &shop.router;
    let cases: &[(&str, &str, &str)] = &[
        ("fail_token", "ready_for_complete", "payment_declined"),
        ("insufficient_funds", "ready_for_complete", "payment_declined"),
        ("requires_action", "requires_escalation", "payment_requires_action"),
    ];
    for (token, status, code) in cases {
        let a = create(
            &shop,
            &Opts::default(),
            &full_checkout_body(&[("v-organic-cotton-tee-black", 1)]),
        )
        .await;
        let id = a.json["id"].as_str().unwrap().to_owned();
        let complete = json!({"payment": {"instruments": [instrument(token)]}});
        let opts = Opts::default().key(&fresh_key());
        let uri = format!("/ucp/v1/checkout-sessions/{id}/complete");
        let a = call(r, Method::POST, &uri, &opts, Some(&complete)).await;
        assert_eq!(a.status, StatusCode::OK, "{token}: {a:?}");
        assert_eq!(a.json["status"], *status, "{token}");
        assert!(message_codes(&a.json).iter().any(|c| c == code), "{token}: {a:?}");
        if *status == "requires_escalation" {
            assert!(
                a.json["continue_url"].as_str().is_some_and(|u| u.starts_with("http")),
                "{a:?}"
            );
        }
        if let Some(s) = Schemas::v4() {
            s.response("complete_checkout", "200", &a.json);
        }
        // The retry replays the outcome rather than trying the card again.
        let attempts = shop.app.payments.charge_attempts();
        let again = call(r, Method::POST, &uri, &opts, Some(&complete)).await;
        assert_eq!(
            (again.bytes, shop.app.payments.charge_attempts()),
            (a.bytes, attempts),
            "{token}"
        );
    }
    assert_eq!(shop.app.payments.successful_charges(), 0);
}

/// The escalation an agent can follow: the continue_url is the sandbox's
/// approval page; once the buyer opened it, completing again (with a new
/// key) captures that payment into the order, without a second charge.
#[tokio::test]
async fn an_escalated_payment_completes_after_the_buyer_approves() {
    let shop = shop().await;
    let r = &shop.router;
    let a =
        create(&shop, &Opts::default(), &full_checkout_body(&[("v-organic-cotton-tee-black", 1)]))
            .await;
    let id = a.json["id"].as_str().unwrap().to_owned();
    let complete = json!({"payment": {"instruments": [instrument("requires_action")]}});
    let uri = format!("/ucp/v1/checkout-sessions/{id}/complete");
    let a = call(r, Method::POST, &uri, &Opts::default().key(&fresh_key()), Some(&complete)).await;
    assert_eq!(a.json["status"], "requires_escalation", "{a:?}");
    assert!(a.json.get("order").is_none(), "no order before the payment: {a:?}");
    let url = a.json["continue_url"].as_str().unwrap().to_owned();
    let page_path = url.strip_prefix(&shop.app.gateway.settings().public_base_url).unwrap();

    let page = call(r, Method::GET, page_path, &Opts::default(), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.bytes).contains("approved"));
    let unknown =
        call(r, Method::GET, "/sandbox/authenticate/sbx_ch_404", &Opts::default(), None).await;
    assert_eq!(
        (unknown.status, unknown.json["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    let done =
        call(r, Method::POST, &uri, &Opts::default().key(&fresh_key()), Some(&complete)).await;
    assert_eq!(done.json["status"], "completed", "{done:?}");
    assert!(done.json["order"]["id"].is_string());
    if let Some(s) = Schemas::v4() {
        s.response("complete_checkout", "200", &done.json);
    }
    assert_eq!(shop.app.payments.charge_attempts(), 1);
    assert_eq!(shop.app.payments.successful_charges(), 1);
}

#[tokio::test]
async fn a_repeat_replays_the_first_response_byte_for_byte() {
    let shop = shop().await;
    let opts = Opts::default().key("replay-key-1");
    let body = full_checkout_body(&[("v-organic-cotton-tee-black", 1)]);
    let uri = "/ucp/v1/checkout-sessions";
    let first = call(&shop.router, Method::POST, uri, &opts, Some(&body)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotency-replayed").is_none());
    // The same request with keys in another order and other whitespace.
    let reordered = serde_json::to_string_pretty(&body).unwrap();
    let again = call_raw(&shop.router, Method::POST, uri, &opts, Body::from(reordered), true).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.bytes, first.bytes, "byte for byte");
    assert_eq!(again.headers.get("idempotency-replayed").unwrap(), "true");

    // The same key with another body is a conflict; nothing is created.
    let other = full_checkout_body(&[("v-organic-cotton-tee-black", 2)]);
    let a = call(&shop.router, Method::POST, uri, &opts, Some(&other)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{a:?}");
    assert_eq!(a.json["error"]["code"], "idempotency_conflict");

    // The same key on another resource is another request.
    let id = first.json["id"].as_str().unwrap();
    let cancel = format!("{uri}/{id}/cancel");
    let a = call(&shop.router, Method::POST, &cancel, &opts, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "another operation under a used key: {a:?}");

    // Another caller's identical key is its own.
    let server = MockServer::start().await;
    let stranger =
        with_agent(&serve(&server, "/s.json", 200, platform_profile(V4)).await).key("replay-key-1");
    let a = call(&shop.router, Method::POST, uri, &stranger, Some(&body)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_ne!(a.json["id"], first.json["id"]);
}

#[tokio::test]
async fn keys_are_required_bounded_and_released_by_failures() {
    let shop = shop().await;
    let uri = "/ucp/v1/checkout-sessions";
    let body = checkout_body(&[("v-organic-cotton-tee-black", 1)]);
    let cases: &[(Option<&str>, StatusCode, &str)] = &[
        (None, StatusCode::BAD_REQUEST, "idempotency_key_required"),
        (Some("has space"), StatusCode::BAD_REQUEST, "invalid_input"),
        (Some(&"k".repeat(256)), StatusCode::BAD_REQUEST, "invalid_input"),
    ];
    for (key, status, code) in cases {
        let opts = Opts { agent: None, key: key.map(str::to_owned) };
        let a = call(&shop.router, Method::POST, uri, &opts, Some(&body)).await;
        assert_eq!((a.status, a.json["error"]["code"].as_str()), (*status, Some(*code)), "{key:?}");
    }
    let a = call(&shop.router, Method::PUT, &format!("{uri}/chk_x"), &Opts::default(), Some(&body))
        .await;
    assert_eq!(a.json["error"]["code"], "idempotency_key_required");
    // A failure before any effect gives the key back: the corrected
    // request under the same key runs.
    let opts = Opts::default().key("fix-and-retry");
    let too_many = checkout_body(&[("v-organic-cotton-tee-black", 1000)]);
    let a = call(&shop.router, Method::POST, uri, &opts, Some(&too_many)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{a:?}");
    assert_eq!(a.json["messages"][0]["code"], "quantity_limit_exceeded");
    let a = call(&shop.router, Method::POST, uri, &opts, Some(&body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
}

#[tokio::test]
async fn concurrent_duplicates_create_one_session() {
    let shop = shop().await;
    let body = full_checkout_body(&[("v-organic-cotton-tee-black", 1)]);
    let opts = Opts::default().key("burst");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (router, body, opts) = (shop.router.clone(), body.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            call(&router, Method::POST, "/ucp/v1/checkout-sessions", &opts, Some(&body)).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let first = &answers[0];
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    for a in &answers {
        assert_eq!(
            (a.status, &a.bytes),
            (first.status, &first.bytes),
            "every answer is the one session"
        );
    }
    let replays =
        answers.iter().filter(|a| a.headers.get("idempotency-replayed").is_some()).count();
    assert_eq!(replays, 15, "one ran, fifteen were replays");
}

#[tokio::test]
async fn a_record_past_its_expiry_no_longer_replays() {
    let shop = shop().await;
    let body = checkout_body(&[("v-organic-cotton-tee-black", 1)]);
    let opts = Opts::default().key("short-lived");
    let uri = "/ucp/v1/checkout-sessions";
    let first = call(&shop.router, Method::POST, uri, &opts, Some(&body)).await;
    *shop.clock.0.lock().unwrap() += time::Duration::hours(23);
    let within = call(&shop.router, Method::POST, uri, &opts, Some(&body)).await;
    assert_eq!(within.bytes, first.bytes, "kept for at least 24 hours");
    *shop.clock.0.lock().unwrap() += time::Duration::hours(2);
    let after = call(&shop.router, Method::POST, uri, &opts, Some(&body)).await;
    assert_eq!(after.status, StatusCode::CREATED);
    assert!(after.headers.get("idempotency-replayed").is_none());
    assert_ne!(after.json["id"], first.json["id"], "a new session, not a replay");
    // And the first session has expired meanwhile (6 h lifetime).
    let a = call(
        &shop.router,
        Method::GET,
        &format!("{uri}/{}", first.json["id"].as_str().unwrap()),
        &opts,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::GONE, "{a:?}");
    assert_eq!(a.json["messages"][0]["code"], "session_expired");
}

#[tokio::test]
async fn business_outcomes_are_messages_and_foreign_sessions_do_not_exist() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let alice = with_agent(&serve(&server, "/alice.json", 200, platform_profile(V4)).await);
    let bob = with_agent(&serve(&server, "/bob.json", 200, platform_profile(V4)).await);

    let a = create(&shop, &alice, &full_checkout_body(&[("v-flannel-overshirt-m", 1)])).await;
    assert_eq!(a.status, StatusCode::CREATED, "out of stock is not an HTTP error: {a:?}");
    assert_eq!(a.json["status"], "incomplete");
    let m = &a.json["messages"][0];
    assert_eq!((m["type"].as_str(), m["code"].as_str()), (Some("error"), Some("out_of_stock")));
    assert_eq!(
        (m["severity"].as_str(), m["path"].as_str()),
        (Some("recoverable"), Some("$.line_items[0]"))
    );

    let id = a.json["id"].as_str().unwrap();
    let uri = format!("/ucp/v1/checkout-sessions/{id}");
    let mine = call(&shop.router, Method::GET, &uri, &alice, None).await;
    assert_eq!(mine.status, StatusCode::OK);
    let theirs = call(&shop.router, Method::GET, &uri, &bob, None).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs:?}");
    assert_eq!(theirs.json["messages"][0]["code"], "not_found");
    let anonymous = call(&shop.router, Method::GET, &uri, &Opts::default(), None).await;
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    let a =
        call(&shop.router, Method::PUT, &uri, &bob.key(&fresh_key()), Some(&checkout_body(&[])))
            .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // A refused discount code is a warning; the checkout stays ready.
    let mut body = full_checkout_body(&[("v-organic-cotton-tee-black", 1)]);
    body["discounts"] = json!({"codes": ["NOT-A-CODE", "SAVE5"]});
    let a = create(&shop, &alice, &body).await;
    assert_eq!(a.json["status"], "ready_for_complete", "{a:?}");
    assert_eq!(message_codes(&a.json), ["discount_code_invalid", "discount_code_minimum_not_met"]);
    assert_eq!(a.json["messages"][0]["type"], "warning");
}

#[tokio::test]
async fn edge_errors_have_the_standard_body() {
    let shop = shop().await;
    let key = Opts::default().key("edge");
    let big = format!("{{\"line_items\": [], \"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let cases: Vec<(Method, &str, Body, bool, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/ucp/v1/checkout-sessions",
            Body::from("{not json"),
            true,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            "/ucp/v1/checkout-sessions",
            Body::from(big),
            true,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/ucp/v1/checkout-sessions",
            Body::from("{}"),
            false,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/ucp/v1/checkout-sessions",
            Body::from("{\"line_items\": 3}"),
            true,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            Method::DELETE,
            "/ucp/v1/checkout-sessions/chk_1",
            Body::empty(),
            false,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/ucp/v1/no-such-route",
            Body::empty(),
            false,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::POST,
            "/ucp/v1/checkout-sessions/chk_1/cancel",
            Body::from("{oops"),
            true,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
    ];
    for (m, uri, body, json_type, status, code) in cases {
        let a = call_raw(&shop.router, m.clone(), uri, &key, body, json_type).await;
        assert_eq!(a.status, status, "{m} {uri}: {a:?}");
        assert_eq!(a.json["error"]["code"], code, "{m} {uri}");
        let rid = a.headers.get("request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(a.json["error"]["trace_id"], rid, "{m} {uri}");
    }
}

#[tokio::test]
async fn negotiation_failures_map_to_the_spec_statuses() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let unsupported =
        serve(&server, "/future.json", 200, json!({"ucp": {"version": "2030-01-01"}})).await;
    let malformed = serve(&server, "/bad.json", 200, json!({"ucp": "nope"})).await;
    let down = serve(&server, "/down.json", 503, json!({})).await;
    let limited = serve(
        &server,
        "/limited.json",
        200,
        json!({"ucp": {"version": V4, "capabilities": {CHECKOUT: [{"version": V4}]}}}),
    )
    .await;
    let cases: Vec<(Opts, StatusCode, &str)> = vec![
        (
            Opts { agent: Some("profile=\"ftp://x.example/p\"".into()), key: None },
            StatusCode::BAD_REQUEST,
            "invalid_profile_url",
        ),
        (
            Opts { agent: Some("not a dictionary ((".into()), key: None },
            StatusCode::BAD_REQUEST,
            "invalid_profile_url",
        ),
        (with_agent(&down), StatusCode::FAILED_DEPENDENCY, "profile_unreachable"),
        (with_agent(&malformed), StatusCode::UNPROCESSABLE_ENTITY, "profile_malformed"),
        (with_agent(&unsupported), StatusCode::UNPROCESSABLE_ENTITY, "version_unsupported"),
    ];
    for (opts, status, code) in cases {
        let a = call(&shop.router, Method::POST, "/ucp/v1/catalog/search", &opts, Some(&json!({})))
            .await;
        assert_eq!(
            (a.status, a.json["error"]["code"].as_str()),
            (status, Some(code)),
            "{:?}",
            opts.agent
        );
    }
    // Only checkout in common: the checkout answers without extensions and
    // the catalog is incompatible.
    let only = with_agent(&limited);
    let a = create(&shop, &only, &full_checkout_body(&[("v-organic-cotton-tee-black", 1)])).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    assert_eq!(a.json["ucp"]["capabilities"], json!({CHECKOUT: [{"version": V4}]}));
    assert!(a.json.get("discounts").is_none() && a.json.get("fulfillment").is_none());
    assert!(!a.json["ucp"]["capabilities"].as_object().unwrap().contains_key(DISCOUNT));
    assert!(!a.json["ucp"]["capabilities"].as_object().unwrap().contains_key(FULFILLMENT));
    let a =
        call(&shop.router, Method::POST, "/ucp/v1/catalog/search", &only, Some(&json!({}))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["messages"][0]["code"], "capabilities_incompatible");
    assert_eq!(a.json["ucp"]["status"], "error");
}

/// A path id that percent-decodes to invalid UTF-8 is refused with the
/// standard error body, on every route that takes an id, before any
/// handler logic (or idempotency record) runs.
#[tokio::test]
async fn ids_that_are_not_utf8_get_the_standard_body() {
    let shop = shop().await;
    let key = Opts::default().key("bad-path");
    let cases: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/ucp/v1/checkout-sessions/%FF", None),
        (Method::PUT, "/ucp/v1/checkout-sessions/%FF", Some(checkout_body(&[]))),
        (Method::POST, "/ucp/v1/checkout-sessions/chk_%C3%28/complete", Some(json!({}))),
        (Method::POST, "/ucp/v1/checkout-sessions/%FF%FE/cancel", Some(json!({}))),
        (Method::GET, "/ucp/v1/carts/%FF", None),
        (Method::PUT, "/ucp/v1/carts/%80", Some(json!({"line_items": []}))),
        (Method::POST, "/ucp/v1/carts/%FF/cancel", Some(json!({}))),
    ];
    for (m, uri, body) in cases {
        let a = call(&shop.router, m.clone(), uri, &key, body.as_ref()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{m} {uri}: {a:?}");
        assert_eq!(
            a.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{m} {uri}"
        );
        assert_eq!(a.json["error"]["code"], "invalid_input", "{m} {uri}: {a:?}");
        assert_eq!(a.json["error"]["retryable"], false, "{m} {uri}");
        let rid = a.headers.get("request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(!rid.is_empty());
        assert_eq!(a.json["error"]["trace_id"], rid, "{m} {uri}");
    }
    // Nothing was held under the key: a valid request with it still runs.
    let body = checkout_body(&[("v-organic-cotton-tee-black", 1)]);
    let a = call(&shop.router, Method::POST, "/ucp/v1/checkout-sessions", &key, Some(&body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
}
