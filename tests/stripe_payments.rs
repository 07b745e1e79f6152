//! The Stripe adapter against a local wiremock server that answers with
//! Stripe's documented response shapes (the JSON under
//! `tests/fixtures/stripe/`): what each port call sends (form fields,
//! metadata, the secret key, the idempotency key), how answers map to
//! outcomes, and that retries after rate limits, server errors and
//! timeouts keep the key, so a replaying Stripe charges once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgate::adapters::payments::{StripeOptions, StripePayments};
use agentgate::domain::{CheckoutId, Currency, ErrorCode, Money, OrderId};
use agentgate::ports::{
    CaptureRequest, ChargeOutcome, ChargeRequest, PaymentStatus, Payments, RefundRequest,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "sk_test_fixture_secret";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn options(server: &MockServer) -> StripeOptions {
    StripeOptions {
        api_base: Url::parse(&server.uri()).unwrap(),
        secret_key: SecretString::from(SECRET),
        api_version: Some("2026-01-28.clover".into()),
        timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        return_url: "https://shop.example/payments/return".into(),
    }
}

fn stripe(server: &MockServer) -> StripePayments {
    StripePayments::new(options(server)).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

fn charge_request(token: &str) -> ChargeRequest {
    let checkout = CheckoutId::from_uuid(uuid::Uuid::now_v7());
    let order = OrderId::from_uuid(uuid::Uuid::now_v7());
    ChargeRequest {
        idempotency_key: format!("{checkout}:charge:{order}"),
        amount: usd(4100),
        token: token.into(),
        checkout_id: checkout,
        order_id: order,
    }
}

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body).into_owned().collect()
}

fn key_of(req: &Request) -> Option<String> {
    req.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn a_charge_confirms_a_payment_intent_with_the_token_metadata_and_key() {
    // A PaymentMethod id and a Shared Payment Token go in different fields.
    let cases = [
        ("pm_card_visa", "payment_method", "shared_payment_granted_token"),
        ("spt_1AgentGranted", "shared_payment_granted_token", "payment_method"),
    ];
    for (token, field, absent) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .and(header("authorization", format!("Bearer {SECRET}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(fixture("payment_intent_succeeded")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let request = charge_request(token);
        let outcome = stripe(&server).charge(&request).await.unwrap();
        assert_eq!(outcome, ChargeOutcome::Succeeded { reference: "pi_3PaidAgentgate0001".into() });
        let reqs = received(&server).await;
        let sent = form(&reqs[0]);
        let want = [
            ("amount", "4100".to_owned()),
            ("currency", "usd".to_owned()),
            ("confirm", "true".to_owned()),
            (field, token.to_owned()),
            ("metadata[order_id]", request.order_id.to_string()),
            ("metadata[checkout_id]", request.checkout_id.to_string()),
            ("metadata[charge_key]", request.idempotency_key.clone()),
            ("return_url", "https://shop.example/payments/return".to_owned()),
        ];
        for (k, v) in want {
            assert_eq!(sent.get(k), Some(&v), "{token}: {k}");
        }
        assert!(!sent.contains_key(absent), "{token}: {absent}");
        assert_eq!(key_of(&reqs[0]), Some(request.idempotency_key.clone()));
        assert_eq!(reqs[0].headers["stripe-version"], "2026-01-28.clover");
        assert_eq!(reqs[0].headers["content-type"], "application/x-www-form-urlencoded");
    }
}

#[tokio::test]
async fn card_errors_are_declines_with_the_decline_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(402).set_body_json(fixture("card_error_insufficient_funds")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let outcome = stripe(&server).charge(&charge_request("pm_card_chargeDeclined")).await.unwrap();
    assert_eq!(outcome, ChargeOutcome::Declined { reason: "insufficient_funds".into() });
}

#[tokio::test]
async fn an_invalid_request_is_a_payment_failure_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(400).set_body_json(fixture("invalid_request")))
        .expect(1)
        .mount(&server)
        .await;
    let err = stripe(&server).charge(&charge_request("pm_missing")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PaymentFailed);
    assert!(err.message().contains("resource_missing"), "{}", err.message());
    assert!(!err.message().contains(SECRET));
}

#[tokio::test]
async fn a_rate_limit_is_retried_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(429).set_body_json(fixture("rate_limit")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("payment_intent_succeeded")))
        .mount(&server)
        .await;
    let request = charge_request("pm_card_visa");
    let outcome = stripe(&server).charge(&request).await.unwrap();
    assert!(matches!(outcome, ChargeOutcome::Succeeded { .. }));
    let reqs = received(&server).await;
    assert_eq!(reqs.len(), 2, "one rate-limited try, one retry");
    assert_eq!(key_of(&reqs[0]), Some(request.idempotency_key.clone()));
    assert_eq!(key_of(&reqs[1]), key_of(&reqs[0]), "the retry keeps the key");
    assert_eq!(reqs[1].body, reqs[0].body, "and the body, so Stripe can replay");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    // 500 once, then success.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(500).set_body_json(fixture("api_error")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("payment_intent_succeeded")))
        .mount(&server)
        .await;
    let request = charge_request("pm_card_visa");
    assert!(matches!(
        stripe(&server).charge(&request).await.unwrap(),
        ChargeOutcome::Succeeded { .. }
    ));
    let reqs = received(&server).await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(key_of(&reqs[1]), Some(request.idempotency_key));

    // 500 for ever: 1 try + 3 retries, then an error the pipeline treats as
    // "unknown outcome".
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(503).set_body_json(fixture("api_error")))
        .mount(&server)
        .await;
    let err = stripe(&server).charge(&charge_request("pm_card_visa")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
    assert_eq!(received(&server).await.len(), 4);

    // Stripe-Should-Retry: false wins over the status.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("Stripe-Should-Retry", "false")
                .set_body_json(fixture("api_error")),
        )
        .mount(&server)
        .await;
    stripe(&server).charge(&charge_request("pm_card_visa")).await.unwrap_err();
    assert_eq!(received(&server).await.len(), 1);
}

/// Stripe's idempotency, as documented: the first answer under a key is
/// stored and replayed (`Idempotent-Replayed: true`) for the same
/// parameters; other parameters under the key are an `idempotency_error`.
/// Its first answer can be slow.
struct IdempotentStripe {
    seen: Mutex<HashMap<String, (Vec<u8>, Value)>>,
    created: Mutex<usize>,
    first_delay: Duration,
}

impl Respond for IdempotentStripe {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let Some(key) = key_of(req) else {
            return ResponseTemplate::new(400).set_body_json(fixture("invalid_request"));
        };
        let mut seen = self.seen.lock().unwrap();
        if let Some((body, answer)) = seen.get(&key) {
            if *body != req.body {
                return ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}}));
            }
            return ResponseTemplate::new(200)
                .insert_header("Idempotent-Replayed", "true")
                .set_body_json(answer.clone());
        }
        *self.created.lock().unwrap() += 1;
        let mut pi = fixture("payment_intent_succeeded");
        pi["id"] = json!(format!("pi_created_{}", seen.len() + 1));
        seen.insert(key, (req.body.clone(), pi.clone()));
        ResponseTemplate::new(200).set_body_json(pi).set_delay(self.first_delay)
    }
}

#[tokio::test]
async fn an_idempotent_replay_charges_once_even_after_a_timeout() {
    let server = MockServer::start().await;
    let emulator = Arc::new(IdempotentStripe {
        seen: Mutex::new(HashMap::new()),
        created: Mutex::new(0),
        // Longer than the client's timeout: the first answer is lost after
        // Stripe created the payment.
        first_delay: Duration::from_millis(800),
    });
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ArcResponder(emulator.clone()))
        .mount(&server)
        .await;
    let mut opts = options(&server);
    opts.timeout = Duration::from_millis(300);
    let stripe = StripePayments::new(opts).unwrap();
    let request = charge_request("pm_card_visa");
    let first = stripe.charge(&request).await.unwrap();
    let ChargeOutcome::Succeeded { reference } = &first else { panic!("{first:?}") };
    assert_eq!(reference, "pi_created_1");
    // A caller's retry of the same charge: the same PaymentIntent.
    assert_eq!(stripe.charge(&request).await.unwrap(), first);
    assert_eq!(*emulator.created.lock().unwrap(), 1, "Stripe created one PaymentIntent");
    let reqs = received(&server).await;
    assert!(reqs.len() >= 3, "a timed-out try, its retry, and the caller's retry");
    assert!(reqs.iter().all(|r| key_of(r) == Some(request.idempotency_key.clone())));
    // Reusing a key for another charge is refused, not charged.
    let other = ChargeRequest { amount: usd(1), ..request.clone() };
    let err = stripe.charge(&other).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PaymentFailed);
    assert_eq!(*emulator.created.lock().unwrap(), 1);
}

struct ArcResponder(Arc<IdempotentStripe>);

impl Respond for ArcResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req)
    }
}

#[tokio::test]
async fn a_timeout_on_every_try_is_an_unknown_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("payment_intent_succeeded"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let mut opts = options(&server);
    opts.timeout = Duration::from_millis(150);
    opts.max_retries = 1;
    let err = StripePayments::new(opts).unwrap().charge(&charge_request("pm_card_visa")).await;
    let err = err.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
    assert!(err.message().contains("timed out"), "{}", err.message());
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn requires_action_escalates_with_the_redirect_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("payment_intent_requires_action")),
        )
        .mount(&server)
        .await;
    let outcome = stripe(&server).charge(&charge_request("pm_card_threeDSecure2Required")).await;
    assert_eq!(
        outcome.unwrap(),
        ChargeOutcome::RequiresAction {
            reference: "pi_3ActionAgentgate002".into(),
            continue_url: "https://3ds.example/authenticate?payment_intent=pi_3ActionAgentgate002"
                .into(),
        }
    );
}

#[tokio::test]
async fn find_charge_reads_the_list_and_matches_the_key() {
    let server = MockServer::start().await;
    let request = charge_request("pm_card_visa");
    let mut mine = fixture("payment_intent_succeeded");
    mine["metadata"]["charge_key"] = json!(request.idempotency_key);
    let mut other = fixture("payment_intent_requires_action");
    other["metadata"]["charge_key"] = json!("chk_other:charge:ord_other");
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "url": "/v1/payment_intents", "has_more": false,
            "data": [other, mine],
        })))
        .mount(&server)
        .await;
    let stripe = stripe(&server);
    let found = stripe.find_charge(&request.idempotency_key).await.unwrap();
    assert_eq!(found, Some(ChargeOutcome::Succeeded { reference: "pi_3PaidAgentgate0001".into() }));
    assert_eq!(stripe.find_charge("chk_unknown:charge:ord_unknown").await.unwrap(), None);
    let reqs = received(&server).await;
    let since: i64 = reqs[0]
        .url
        .query_pairs()
        .find(|(k, _)| k == "created[gte]")
        .map(|(_, v)| v.parse().unwrap())
        .expect("the scan is bounded in time");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(now - since < 3600, "the window starts near the attempt, not a day back");
    assert!(reqs.iter().all(|r| r.method.as_str() == "GET"), "a lookup never posts");
}

#[tokio::test]
async fn find_charge_says_unknown_rather_than_none_when_the_scan_runs_out() {
    let server = MockServer::start().await;
    let mut filler = fixture("payment_intent_succeeded");
    filler["metadata"]["charge_key"] = json!("someone-else");
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "has_more": true, "data": [filler],
        })))
        .mount(&server)
        .await;
    let err = stripe(&server).find_charge("k").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
}

#[tokio::test]
async fn capture_takes_an_approved_payment_and_waits_for_one_not_approved() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_3ActionAgentgate002"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("payment_intent_requires_capture")),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_3ActionAgentgate002/capture"))
        .and(header("idempotency-key", "chk_x:capture:ord_x"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("payment_intent_captured")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_3ActionAgentgate002"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("payment_intent_requires_action")),
        )
        .mount(&server)
        .await;
    let stripe = stripe(&server);
    let capture = CaptureRequest {
        idempotency_key: "chk_x:capture:ord_x".into(),
        reference: "pi_3ActionAgentgate002".into(),
        amount: usd(4100),
    };
    let done = stripe.capture(&capture).await.unwrap();
    assert_eq!(done, ChargeOutcome::Succeeded { reference: "pi_3ActionAgentgate002".into() });
    // The buyer has not approved (yet): still an action, nothing posted.
    let waiting = stripe.capture(&capture).await.unwrap();
    assert!(matches!(waiting, ChargeOutcome::RequiresAction { .. }), "{waiting:?}");
    let wrong = CaptureRequest { amount: usd(9999), ..capture };
    assert_eq!(stripe.capture(&wrong).await.unwrap_err().code(), ErrorCode::InvalidInput);
}

#[tokio::test]
async fn refunds_name_the_payment_the_amount_and_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .and(header("idempotency-key", "ord_x:refund"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("refund_succeeded")))
        .expect(1)
        .mount(&server)
        .await;
    let refund = RefundRequest {
        idempotency_key: "ord_x:refund".into(),
        charge_reference: "pi_3PaidAgentgate0001".into(),
        amount: usd(4100),
        reason: "requested_by_customer".into(),
    };
    assert_eq!(stripe(&server).refund(&refund).await.unwrap(), "re_3PaidAgentgate0001");
    let sent = form(&received(&server).await[0]);
    assert_eq!(sent["payment_intent"], "pi_3PaidAgentgate0001");
    assert_eq!(sent["amount"], "4100");
    assert_eq!(sent["metadata[reason]"], "requested_by_customer");
}

#[tokio::test]
async fn status_reads_the_intent_and_its_latest_charge() {
    let cases: Vec<(Value, PaymentStatus)> = vec![
        (fixture("payment_intent_succeeded"), PaymentStatus::Succeeded),
        (fixture("payment_intent_requires_action"), PaymentStatus::RequiresAction),
        (fixture("payment_intent_requires_capture"), PaymentStatus::Authorized),
        (
            {
                let mut pi = fixture("payment_intent_succeeded");
                pi["latest_charge"] = json!({"id": "ch_1", "object": "charge", "refunded": true});
                pi
            },
            PaymentStatus::Refunded,
        ),
    ];
    for (pi, want) in cases {
        let server = MockServer::start().await;
        let id = pi["id"].as_str().unwrap().to_owned();
        Mock::given(method("GET"))
            .and(path(format!("/v1/payment_intents/{id}")))
            .and(query_param("expand[]", "latest_charge"))
            .respond_with(ResponseTemplate::new(200).set_body_json(pi))
            .mount(&server)
            .await;
        assert_eq!(stripe(&server).status(&id).await.unwrap(), want, "{id}");
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("invalid_request")))
        .mount(&server)
        .await;
    assert_eq!(stripe(&server).status("pi_gone").await.unwrap(), PaymentStatus::Unknown);
}
