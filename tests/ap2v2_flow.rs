//! AP2 v0.2 through the real gateway: the UCP AP2 extension negotiated
//! over REST, `ap2.merchant_authorization` on every checkout response
//! (recomputed here with josekit), the session locked to mandates,
//! completion with v0.2 mandates both over REST and through the pipeline,
//! the signed receipt, and every payload against the AP2 v0.2 schemas.

mod ap2v2_support;
mod support;

use std::sync::{Arc, Mutex};

use agentgate::ap2::jws;
use agentgate::ap2::sdjwt::{self, ChainInput, ChainPolicy};
use agentgate::ap2::v02::{self, MerchantAuthorization};
use agentgate::ap2::KeyRing;
use agentgate::bootstrap::{self, App};
use agentgate::domain::{CheckoutId, ErrorCode};
use agentgate::gateway::{
    Caller, CompleteRequest, MandateChain, MandatesV02, ReceiptClaims, RECEIPT_TYP,
};
use agentgate::ports::Clock;
use agentgate::settings::Settings;
use ap2v2_support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use support::ap2_schema;
use support::schema::{self, Resolve};
use time::OffsetDateTime;
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const V4: &str = "2026-04-08";
const AP2: &str = "dev.ucp.shopping.ap2_mandate";
const TEE: &str = "v-organic-cotton-tee-black";

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

impl Shop {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

async fn shop_with(configure: impl FnOnce(&mut Settings)) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    settings.allow_private_profile_hosts = true;
    settings.public_base_url = MERCHANT_URL.into();
    settings.merchant_name = MERCHANT_NAME.into();
    configure(&mut settings);
    let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
    let app = bootstrap::build_with_clock(settings, clock.clone()).await.unwrap();
    let router = agentgate::http::app(app.state.clone());
    Shop { app, router, clock, _dir: dir }
}

async fn shop() -> Shop {
    shop_with(|_| {}).await
}

struct Answer {
    status: StatusCode,
    json: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.json)
    }
}

async fn call(
    router: &Router,
    m: Method,
    uri: &str,
    agent: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut req = Request::builder().method(m).uri(uri);
    if let Some(a) = agent {
        req = req.header("ucp-agent", format!("profile=\"{a}\""));
    }
    req = req.header("idempotency-key", uuid::Uuid::new_v4().to_string());
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20).await.unwrap();
    Answer { status, json: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// A platform profile declaring every capability (AP2 included when
/// `ap2`), publishing the platform key that signs mandate roots.
async fn platform(server: &MockServer, at: &str, ap2: bool) -> String {
    let names: Vec<&str> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .map(|c| c.name)
        .filter(|n| ap2 || *n != AP2)
        .collect();
    let registry: serde_json::Map<String, Value> =
        names.iter().map(|n| ((*n).to_owned(), json!([{"version": V4}]))).collect();
    let profile = json!({"ucp": {"version": V4, "capabilities": registry},
                         "signing_keys": [key(PLATFORM).public().to_jwk()]});
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(200).set_body_json(profile))
        .mount(server)
        .await;
    format!("{}{at}", server.uri())
}

fn ready_body(token: &str) -> Value {
    json!({
        "line_items": [{"item": {"id": TEE}, "quantity": 2}],
        "buyer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
        "fulfillment": {"methods": [{"type": "shipping", "destinations": [{
            "street_address": "1 Main St", "address_locality": "Springfield", "address_region": "IL",
            "postal_code": "62701", "address_country": "US"}],
            "groups": [{"selected_option_id": "us-standard"}]}]},
        "payment": {"instruments": [{"id": "instr_a", "handler_id": "sandbox", "type": "card",
                                      "credential": {"type": "token", "token": token}}]}
    })
}

fn total_of(body: &Value) -> i64 {
    body["totals"].as_array().unwrap().iter().find(|t| t["type"] == "total").unwrap()["amount"]
        .as_i64()
        .unwrap()
}

fn without_ap2(body: &Value) -> Value {
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("ap2");
    plain
}

/// RFC 8785 written out for what a checkout holds (objects, arrays,
/// strings, integers, booleans, null): members sorted by their UTF-16 code
/// units, no whitespace, strings and integers as JSON writes them.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            let inner: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(","))
        }
        Value::Number(n) => {
            assert!(n.is_i64() || n.is_u64(), "a checkout holds integers only: {n}");
            n.to_string()
        }
        other => other.to_string(),
    }
}

/// Checks `ap2.merchant_authorization` the way a platform would, with
/// josekit and without the gateway's JCS ([`canonical`]), attached
/// as the payload of the detached JWS, verified under the merchant's
/// published key. Returns the authorization in its three forms.
fn platform_checks(body: &Value, jwks: &Value) -> MerchantAuthorization {
    let detached = body["ap2"]["merchant_authorization"]
        .as_str()
        .unwrap_or_else(|| panic!("no merchant_authorization in {body}"));
    let (header, signature) = detached.split_once("..").expect("a detached JWS");
    let payload = canonical(&without_ap2(body));
    let compact = format!("{header}.{}.{signature}", jws::b64url(payload.as_bytes()));
    let header: Value = serde_json::from_slice(&jws::b64url_decode(header).unwrap()).unwrap();
    assert_eq!(header.as_object().unwrap().len(), 2, "only alg and kid: {header}");
    assert_eq!(header["alg"], "ES256");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the kid is in the merchant JWKS");
    let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (signed, _) = josekit::jws::deserialize_compact(&compact, &verifier)
        .expect("josekit verifies the merchant authorization");
    assert_eq!(signed, payload.as_bytes());
    MerchantAuthorization {
        detached: detached.to_owned(),
        checkout_hash: sdjwt::hash(&compact),
        checkout_jwt: compact,
    }
}

/// The agent's side for a live checkout: the fixture's builder over the
/// checkout as the platform received it.
fn live(shop: &Shop, body: &Value, jwks: &Value) -> Fx {
    let auth = platform_checks(body, jwks);
    Fx {
        now: shop.now(),
        ring: KeyRing::new(key(OTHER)),
        checkout: without_ap2(body),
        auth,
        total: usd(total_of(body)),
    }
}

/// Human not present: open mandates for the live checkout's item.
fn open_spec(fx: &Fx) -> Spec {
    let mut spec = fx.spec();
    spec.checkout.root_mandate["constraints"][0]["items"][0]["acceptable_items"] =
        json!([{"id": TEE, "title": "Organic cotton tee"}]);
    spec
}

fn complete_body(checkout_mandate: &str, payment_mandate: &str) -> Value {
    json!({
        "payment": {"instruments": [{"id": "instr_a", "handler_id": "sandbox", "type": "card",
            "selected": true, "credential": {"type": "token", "token": payment_mandate}}]},
        "ap2": {"checkout_mandate": checkout_mandate}
    })
}

fn error_code(a: &Answer) -> String {
    a.json["messages"][0]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_ap2_platform_completes_over_rest_with_v02_mandates() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let agent = platform(&server, "/ap2-platform.json", true).await;
    let r = &shop.router;
    let jwks = shop.app.keys.jwks(shop.now());

    // The business profile advertises the extension as the spec shows it.
    let profile = call(r, Method::GET, "/.well-known/ucp", None, None).await;
    assert_eq!(
        profile.json["ucp"]["capabilities"][AP2][0]["config"],
        json!({"vp_formats_supported": {"dc+sd-jwt": {}}})
    );

    let created =
        call(r, Method::POST, "/ucp/v1/checkout-sessions", Some(&agent), Some(&ready_body("x")))
            .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.json["ucp"]["capabilities"][AP2][0]["version"], V4);
    platform_checks(&created.json, &jwks);
    assert_eq!(created.json["merchant"], json!(merchant()), "the signed checkout names its payee");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let url = format!("/ucp/v1/checkout-sessions/{id}");

    // Every response carries the authorization: reads and updates too.
    let updated =
        call(r, Method::PUT, &url, Some(&agent), Some(&ready_body("success_token"))).await;
    assert_eq!(updated.json["status"], "ready_for_complete", "{updated:?}");
    let read = call(r, Method::GET, &url, Some(&agent), None).await;
    assert_eq!(read.json, updated.json, "a read of the same state is the same document");
    if let Some(specs) = support::specs_dir() {
        let v = schema::validator_with(
            &specs,
            "ucp/2026-04-08/schemas/shopping/ap2_mandate.json",
            "/$defs/dev.ucp.shopping.checkout",
            &Resolve::response("read"),
        );
        schema::assert_valid(&v, &read.json, "checkout with ap2");
    }
    let fx = live(&shop, &read.json, &jwks);

    // Locked: no mandate, or a v0.1 chain, is mandate_required.
    let complete = format!("{url}/complete");
    let plain = json!({"payment": {"instruments": [{"id": "instr_a", "handler_id": "sandbox",
        "type": "card", "credential": {"type": "token", "token": "success_token"}}]}});
    let a = call(r, Method::POST, &complete, Some(&agent), Some(&plain)).await;
    assert_eq!((a.status.as_u16(), error_code(&a).as_str()), (422, "mandate_required"), "{a:?}");
    let mut v01 = plain.clone();
    v01["ap2"] =
        json!({"intent_mandate": "a.b.c", "cart_mandate": "a.b.c", "payment_mandate": "a.b.c"});
    let a = call(r, Method::POST, &complete, Some(&agent), Some(&v01)).await;
    assert_eq!(error_code(&a), "mandate_required", "{a:?}");
    assert_eq!(shop.app.payments.charge_attempts(), 0);

    // Mandates for a state the checkout has since left are refused.
    let stale = fx.build(&open_spec(&fx));
    let mut changed = ready_body("success_token");
    changed["line_items"][0]["quantity"] = json!(3);
    let after = call(r, Method::PUT, &url, Some(&agent), Some(&changed)).await;
    assert_ne!(after.json["ap2"], read.json["ap2"], "a new state, a new signature");
    let a = call(
        r,
        Method::POST,
        &complete,
        Some(&agent),
        Some(&complete_body(&stale.checkout, &stale.payment)),
    )
    .await;
    assert_eq!(error_code(&a), "mandate_scope_mismatch", "{a:?}");

    // Back to the state the agent wants, read it, sign, complete.
    let now_ready =
        call(r, Method::PUT, &url, Some(&agent), Some(&ready_body("success_token"))).await;
    let fx = live(&shop, &now_ready.json, &jwks);
    let built = fx.build(&open_spec(&fx));
    let done = call(
        r,
        Method::POST,
        &complete,
        Some(&agent),
        Some(&complete_body(&built.checkout, &built.payment)),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.json["status"], "completed", "{done:?}");
    platform_checks(&done.json, &jwks);
    assert_eq!(shop.app.payments.successful_charges(), 1);

    // The order keeps both presentations, as sent.
    let order_id =
        agentgate::domain::OrderId::parse(done.json["order"]["id"].as_str().unwrap()).unwrap();
    use agentgate::ports::Store as _;
    let stored = shop.app.store.order_mandates(&order_id).await.unwrap();
    assert_eq!(stored, vec![built.checkout.clone(), built.payment.clone()]);

    // The same mandates again, for a new checkout in the same state: no.
    let again = call(
        r,
        Method::POST,
        "/ucp/v1/checkout-sessions",
        Some(&agent),
        Some(&ready_body("success_token")),
    )
    .await;
    let other =
        format!("/ucp/v1/checkout-sessions/{}/complete", again.json["id"].as_str().unwrap());
    let a = call(
        r,
        Method::POST,
        &other,
        Some(&agent),
        Some(&complete_body(&built.checkout, &built.payment)),
    )
    .await;
    assert_eq!(error_code(&a), "mandate_scope_mismatch", "{a:?}");
    assert_eq!(shop.app.payments.successful_charges(), 1);
}

#[tokio::test]
async fn platforms_without_the_extension_get_plain_checkouts() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let plain_platform = platform(&server, "/plain.json", false).await;
    for agent in [None, Some(plain_platform.as_str())] {
        let a = call(
            &shop.router,
            Method::POST,
            "/ucp/v1/checkout-sessions",
            agent,
            Some(&ready_body("success_token")),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        assert!(
            a.json.get("ap2").is_none() && a.json.get("merchant").is_none(),
            "{agent:?}: {a:?}"
        );
        assert!(a.json["ucp"]["capabilities"].get(AP2).is_none(), "{agent:?}");
        let complete =
            format!("/ucp/v1/checkout-sessions/{}/complete", a.json["id"].as_str().unwrap());
        let body = json!({"payment": {"instruments": [{"id": "i", "handler_id": "sandbox", "type": "card",
            "credential": {"type": "token", "token": "success_token"}}]}});
        let done = call(&shop.router, Method::POST, &complete, agent, Some(&body)).await;
        assert_eq!(done.json["status"], "completed", "{agent:?}: {done:?}");
    }
}

#[tokio::test]
async fn the_extension_can_be_turned_off() {
    let shop = shop_with(|s| s.ap2_mandate_extension = false).await;
    let server = MockServer::start().await;
    let agent = platform(&server, "/ap2-platform.json", true).await;
    let profile = call(&shop.router, Method::GET, "/.well-known/ucp", None, None).await;
    assert!(profile.json["ucp"]["capabilities"].get(AP2).is_none(), "{profile:?}");
    let a = call(
        &shop.router,
        Method::POST,
        "/ucp/v1/checkout-sessions",
        Some(&agent),
        Some(&ready_body("success_token")),
    )
    .await;
    assert!(a.json.get("ap2").is_none(), "not negotiated, not locked: {a:?}");
}

/// Verifies a receipt with josekit against the merchant's published JWKS.
fn verify_receipt(receipt: &str, jwks: &Value) -> (ReceiptClaims, Value) {
    let header = jws::decode_compact(receipt, Some(RECEIPT_TYP)).unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header.kid()).unwrap();
    let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) = josekit::jws::deserialize_compact(receipt, &verifier).unwrap();
    (serde_json::from_slice(&payload).unwrap(), serde_json::from_slice(&payload).unwrap())
}

#[tokio::test]
async fn the_pipeline_takes_v02_mandates_and_signs_a_schema_valid_receipt() {
    let shop = shop().await;
    let server = MockServer::start().await;
    let agent = platform(&server, "/ap2-platform.json", true).await;
    let jwks = shop.app.keys.jwks(shop.now());
    let a = call(
        &shop.router,
        Method::POST,
        "/ucp/v1/checkout-sessions",
        Some(&agent),
        Some(&ready_body("success_token")),
    )
    .await;
    assert_eq!(a.json["status"], "ready_for_complete", "{a:?}");
    let fx = live(&shop, &a.json, &jwks);
    // Human present this time: closed mandates and a KB-JWT.
    let built = fx.build(&fx.spec_kb());
    let caller = Caller::subject(format!("ucp-platform:{agent}"));
    let id = CheckoutId::parse(a.json["id"].as_str().unwrap()).unwrap();
    let profile = url::Url::parse(&agent).unwrap();

    // The MCP route passes v0.1 chains; on a locked session they are refused.
    let v01 = CompleteRequest {
        mandates: Some(
            MandateChain { intent: "a".into(), cart: "b".into(), payment: "c".into() }.into(),
        ),
        agent_profile_url: Some(profile.clone()),
        ..CompleteRequest::default()
    };
    let err = shop.app.gateway.complete_checkout(&caller, &id, v01).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::MandateRequired);

    let request = CompleteRequest {
        mandates: Some(
            MandatesV02 { checkout: built.checkout.clone(), payment: built.payment.clone() }.into(),
        ),
        agent_profile_url: Some(profile),
        trace_id: "trace-v02".into(),
        ..CompleteRequest::default()
    };
    let done = shop.app.gateway.complete_checkout(&caller, &id, request.clone()).await.unwrap();
    let (claims, payload) = verify_receipt(&done.receipt, &jwks);
    assert_eq!(claims.status, "Success");
    assert_eq!(claims.order_id.as_deref(), Some(done.order.id.as_str()));
    let closed = sdjwt::parse(&built.checkout).unwrap();
    assert_eq!(
        claims.reference,
        sdjwt::hash(closed.closed_jwt()),
        "the closed checkout mandate, as AP2 computes it"
    );
    let again = shop.app.gateway.complete_checkout(&caller, &id, request.clone()).await.unwrap();
    assert_eq!(again.receipt, done.receipt, "a repeat answers the same receipt");

    let error_receipt = shop
        .app
        .gateway
        .error_receipt(
            &done.session,
            request.mandates.as_ref(),
            &agentgate::domain::Error::new(ErrorCode::MandateExpired, "the mandate has expired"),
            "trace-err",
        )
        .unwrap();
    let (error_claims, error_payload) = verify_receipt(&error_receipt, &jwks);
    assert_eq!(
        (error_claims.status.as_str(), error_claims.error.as_deref()),
        ("Error", Some("mandate_expired"))
    );
    assert_eq!(error_claims.reference, claims.reference);

    if let Some(specs) = support::specs_dir() {
        let v = ap2_schema::validator(&specs, "ap2/checkout_receipt.json");
        schema::assert_valid(&v, &payload, "success receipt");
        schema::assert_valid(&v, &error_payload, "error receipt");
        let mut neither = payload.clone();
        neither.as_object_mut().unwrap().remove("order_id");
        schema::assert_invalid(&v, &neither, "a success receipt without order_id");
    }
}

/// Every mandate payload the fixture produces, once its disclosures are
/// applied, and the signed checkout, against the AP2 v0.2 schemas.
#[test]
fn mandate_payloads_match_the_ap2_schemas() {
    let Some(specs) = support::specs_dir() else { return };
    let fx = Fx::default();
    let schema_of = |vct: &str| match vct {
        v02::VCT_CHECKOUT => "ap2/checkout_mandate.json",
        v02::VCT_CHECKOUT_OPEN => "ap2/open_checkout_mandate.json",
        v02::VCT_PAYMENT => "ap2/payment_mandate.json",
        v02::VCT_PAYMENT_OPEN => "ap2/open_payment_mandate.json",
        other => panic!("unexpected vct {other}"),
    };
    let keys = fx.agent_keys();
    let mut seen = std::collections::BTreeSet::new();
    for built in [fx.honest(), fx.build(&fx.spec_kb())] {
        for presentation in [&built.checkout, &built.payment] {
            let chain = sdjwt::verify_chain(&ChainInput {
                presentation,
                root_keys: &keys,
                audience: MERCHANT_URL,
                nonce: &fx.auth.checkout_hash,
                now: fx.now,
                policy: ChainPolicy::default(),
            })
            .unwrap();
            for hop in &chain.hops {
                let mandate = Value::Object(hop.mandate.clone());
                let file = schema_of(mandate["vct"].as_str().unwrap());
                seen.insert(file);
                schema::assert_valid(&ap2_schema::validator(&specs, file), &mandate, file);
            }
        }
    }
    assert_eq!(seen.len(), 4, "every mandate kind was checked: {seen:?}");
    let mut closed = fx.closed_payment();
    closed.as_object_mut().unwrap().remove("payee");
    schema::assert_invalid(
        &ap2_schema::validator(&specs, "ap2/payment_mandate.json"),
        &closed,
        "no payee",
    );
    let checkout = ap2_schema::validator(&specs, "ucp-types/types/checkout.json");
    schema::assert_valid(&checkout, &fx.checkout, "the fixture's signed checkout");
}
