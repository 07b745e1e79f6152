//! Processor webhooks: `POST /webhooks/stripe`.
//!
//! Stripe signs each delivery with the endpoint's secret
//! (`stripe_webhook_secret`): the `Stripe-Signature` header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">`, with more
//! than one `v1` while a secret is being rolled. A delivery is accepted
//! when any `v1` matches (each compared in constant time by `hmac`) and `t`
//! is within the tolerance (300 s by default) of now, in either direction.
//! The signature is checked over the raw bytes before anything parses them.
//!
//! Answers:
//! - a missing, malformed, forged or stale signature, or no secret
//!   configured: 400 with the standard error body
//!   (`webhook_signature_invalid`); Stripe retries, and an operator sees it;
//! - a signed body that is not a Stripe event: 400 `invalid_input`;
//! - an event acted on, a duplicate (same event id, through
//!   `Store::mark_webhook_seen`) or a type the gateway ignores: 200 with
//!   `{"received": true, "effect": …}`, and nothing changes for the latter
//!   two;
//! - a failure while acting: the error's status (5xx for a store or
//!   processor outage), so Stripe delivers again, and the event id is
//!   forgotten so that delivery is acted on.
//!
//! Events acted on (through `Gateway::receive_payment_event`):
//! `payment_intent.succeeded`, `payment_intent.payment_failed` and
//! `charge.refunded`. The order and checkout come from the payment's
//! `metadata[order_id]` and `metadata[checkout_id]`, which the Stripe
//! adapter sets on every PaymentIntent.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::Sha256;

use super::error::ApiError;
use super::{request_id, AppState};
use crate::domain::{CheckoutId, Currency, Error, ErrorCode, Money, OrderId, Result};
use crate::gateway::{PaymentEvent, PaymentEventKind};

/// The `source` under which Stripe event ids are deduplicated.
pub const STRIPE: &str = "stripe";

/// The routes, merged at the root of the app.
pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/stripe", post(stripe)).route("/webhooks/shopify", post(shopify))
}

fn invalid_signature(why: &str) -> Error {
    Error::new(ErrorCode::WebhookSignatureInvalid, format!("Stripe-Signature: {why}"))
}

/// Checks a `Stripe-Signature` header over `body` (see the module docs).
/// `now` is Unix seconds.
pub fn verify_stripe_signature(
    header: Option<&str>,
    body: &[u8],
    secret: &SecretString,
    now: i64,
    tolerance_secs: u64,
) -> Result<()> {
    let header = header.ok_or_else(|| invalid_signature("the header is missing"))?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(invalid_signature("the header is malformed"));
        };
        match key {
            "t" => {
                let t = value.parse::<i64>().map_err(|_| invalid_signature("t is not a time"))?;
                timestamp = Some(t);
            }
            "v1" => {
                let mut buf = [0u8; 32];
                // A v1 that is not 32 bytes of hex cannot match; skip it
                // like an unknown scheme.
                if let Ok(sig) = base16ct::mixed::decode(value.as_bytes(), &mut buf) {
                    if sig.len() == 32 {
                        signatures.push(buf);
                    }
                }
            }
            // Other schemes (v0, test-mode extras) are ignored.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| invalid_signature("the header has no t"))?;
    if signatures.is_empty() {
        return Err(invalid_signature("the header has no v1 signature"));
    }
    let mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| Error::internal("the webhook secret cannot key an HMAC"))?;
    let mut signed = mac;
    signed.update(timestamp.to_string().as_bytes());
    signed.update(b".");
    signed.update(body);
    // `verify_slice` compares in constant time; every candidate is tried
    // so the time taken does not say which one was close.
    let matched = signatures
        .iter()
        .map(|sig| signed.clone().verify_slice(sig).is_ok())
        .fold(false, |any, ok| any | ok);
    if !matched {
        return Err(invalid_signature("no signature matches"));
    }
    let age = now.saturating_sub(timestamp).unsigned_abs();
    if age > tolerance_secs {
        return Err(invalid_signature("the timestamp is outside the tolerance"));
    }
    Ok(())
}

/// The event kinds acted on, by Stripe event type.
fn kind_of(event_type: &str) -> Option<PaymentEventKind> {
    match event_type {
        "payment_intent.succeeded" => Some(PaymentEventKind::Succeeded),
        "payment_intent.payment_failed" => Some(PaymentEventKind::Failed),
        "charge.refunded" => Some(PaymentEventKind::Refunded),
        _ => None,
    }
}

/// The gateway's view of a Stripe event: the payment, its order and
/// checkout from the metadata, and the amount that matters for the kind.
fn payment_event(event: &Value, kind: Option<PaymentEventKind>) -> Result<PaymentEvent> {
    let event_id = event["id"]
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= 255)
        .ok_or_else(|| Error::invalid("a Stripe event needs an id"))?
        .to_owned();
    let object = &event["data"]["object"];
    let metadata = &object["metadata"];
    // Ids that do not parse are not this gateway's: the event is then
    // about nothing it knows.
    let order_id = metadata["order_id"].as_str().and_then(|s| OrderId::parse(s).ok());
    let checkout_id = metadata["checkout_id"].as_str().and_then(|s| CheckoutId::parse(s).ok());
    let (reference, amount_field) = match kind {
        // A charge names its PaymentIntent, which is the order's reference.
        Some(PaymentEventKind::Refunded) => {
            (object["payment_intent"].as_str().or(object["id"].as_str()), "amount_refunded")
        }
        Some(PaymentEventKind::Succeeded) => (object["id"].as_str(), "amount_received"),
        _ => (object["id"].as_str(), "amount"),
    };
    let currency =
        object["currency"].as_str().and_then(|c| Currency::parse(&c.to_ascii_uppercase()).ok());
    let amount = match (object[amount_field].as_i64(), currency) {
        (Some(minor), Some(currency)) => Some(Money::new(minor, currency)),
        _ => None,
    };
    Ok(PaymentEvent {
        event_id,
        reference: reference.unwrap_or_default().to_owned(),
        order_id,
        checkout_id,
        amount,
    })
}

/// `POST /webhooks/stripe`.
async fn stripe(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let gateway = &state.gateway;
    let settings = &gateway.settings().stripe;
    let Some(secret) = &settings.webhook_secret else {
        tracing::warn!("a Stripe webhook arrived but stripe_webhook_secret is not set");
        return ApiError(invalid_signature("this endpoint has no secret configured"))
            .into_response();
    };
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let now = gateway.now().unix_timestamp();
    let tolerance = settings.webhook_tolerance.as_secs();
    if let Err(e) = verify_stripe_signature(header, &body, secret, now, tolerance) {
        tracing::warn!(reason = %e.message(), "refused a Stripe webhook");
        return ApiError(e).into_response();
    }
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return ApiError(Error::invalid("the body is not a Stripe event")).into_response(),
    };
    let event_type = event["type"].as_str().unwrap_or_default().to_owned();
    let kind = kind_of(&event_type);
    let parsed = match payment_event(&event, kind) {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let rid = request_id::current_request_id();
    tracing::info!(event = %parsed.event_id, event_type = %event_type, trace = %rid, "Stripe webhook");
    match gateway.receive_payment_event(STRIPE, kind, &parsed).await {
        Ok(effect) => Json(json!({"received": true, "effect": effect.as_str()})).into_response(),
        Err(e) => {
            tracing::error!(event = %parsed.event_id, error = %e, "a Stripe event could not be acted on; Stripe will deliver it again");
            ApiError(e).into_response()
        }
    }
}

/// The `source` under which Shopify webhook ids are deduplicated.
pub const SHOPIFY: &str = "shopify";

/// The Shopify topics acted on.
const SHOPIFY_TOPICS: [&str; 4] =
    ["orders/paid", "orders/cancelled", "fulfillments/create", "fulfillments/update"];

/// `POST /webhooks/shopify`: `X-Shopify-Hmac-Sha256` is checked over the
/// raw body (constant time) before anything parses it; a delivery is then
/// deduplicated on `X-Shopify-Webhook-Id`. Answers follow the Stripe
/// endpoint: 400 `webhook_signature_invalid` for a missing or wrong HMAC
/// (or no secret configured), 200 `{"received": true, "effect": …}` for a
/// delivery acted on (`order_created`, `order_updated`, `unchanged`,
/// `ignored`, `conflict`; see `gateway::ExternalEffect`), a `duplicate` or
/// a topic not acted on, and the error's status (with the id forgotten, so
/// the redelivery counts) when acting fails. The order topics carry the
/// whole order; the fulfillment topics one shipment with its `order_id`.
async fn shopify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    use crate::adapters::shopify::{admin, webhooks as shopify_hooks};
    let gateway = &state.gateway;
    let Some(secret) = gateway.settings().shopify.as_ref().and_then(|s| s.webhook_secret.as_ref())
    else {
        tracing::warn!("a Shopify webhook arrived but AGENTGATE_SHOPIFY_WEBHOOK_SECRET is not set");
        return ApiError(Error::new(
            ErrorCode::WebhookSignatureInvalid,
            "X-Shopify-Hmac-Sha256: this endpoint has no secret configured",
        ))
        .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !shopify_hooks::verify(secret, &body, header("x-shopify-hmac-sha256")) {
        tracing::warn!("refused a Shopify webhook: the HMAC does not match");
        return ApiError(Error::new(
            ErrorCode::WebhookSignatureInvalid,
            "X-Shopify-Hmac-Sha256: the signature does not match",
        ))
        .into_response();
    }
    let webhook_id = header("x-shopify-webhook-id").to_owned();
    if webhook_id.is_empty() || webhook_id.len() > 255 {
        return ApiError(Error::invalid("X-Shopify-Webhook-Id is missing or too long"))
            .into_response();
    }
    let topic = header("x-shopify-topic").to_owned();
    if !SHOPIFY_TOPICS.contains(&topic.as_str()) {
        return Json(json!({"received": true, "effect": "ignored"})).into_response();
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return ApiError(Error::invalid("the body is not a Shopify resource")).into_response(),
    };
    // Parsed before the id is marked, so a body that is not a Shopify
    // resource leaves the id free.
    enum Report {
        Order(crate::ports::ExternalOrder),
        Shipment(String, crate::ports::ExternalFulfillment),
    }
    let report = if topic.starts_with("orders/") {
        admin::parse_order(&payload).map(|o| Report::Order(o.to_external()))
    } else {
        admin::parse_fulfillment(&payload).and_then(|f| {
            let order = payload
                .get("order_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| Error::invalid("a fulfillment has no order_id"))?;
            Ok(Report::Shipment(order.to_string(), f.to_external()))
        })
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => return ApiError(Error::invalid(e.message())).into_response(),
    };
    match gateway.store().mark_webhook_seen(SHOPIFY, &webhook_id).await {
        Ok(true) => {}
        Ok(false) => return Json(json!({"received": true, "effect": "duplicate"})).into_response(),
        Err(e) => return ApiError(e).into_response(),
    }
    let rid = request_id::current_request_id();
    let by = crate::gateway::OrderActor::new(admin::SOURCE, rid.clone());
    let effect = match &report {
        Report::Order(o) => gateway.receive_external_order(&by, admin::SOURCE, o).await,
        Report::Shipment(order, f) => {
            gateway.receive_external_fulfillment(&by, admin::SOURCE, order, f).await
        }
    };
    match effect {
        Ok(effect) => {
            tracing::info!(webhook = %webhook_id, topic = %topic, effect = effect.as_str(), trace = %rid, "Shopify webhook");
            Json(json!({"received": true, "effect": effect.as_str()})).into_response()
        }
        Err(e) => {
            // Forget the id, so Shopify's redelivery is acted on.
            if let Err(forget) = gateway.store().forget_webhook(SHOPIFY, &webhook_id).await {
                tracing::error!(webhook = %webhook_id, error = %forget, "could not forget a failed Shopify webhook");
            }
            tracing::error!(webhook = %webhook_id, topic = %topic, error = %e, "a Shopify webhook could not be acted on; Shopify will deliver it again");
            ApiError(e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_800_000_000;

    fn sign(t: i64, body: &[u8], secret: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        base16ct::lower::encode_string(&mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body_and_time() {
        let body = br#"{"id":"evt_1","type":"charge.refunded"}"#;
        let good = sign(NOW, body, SECRET);
        let forged = sign(NOW, body, "whsec_other");
        let cases: Vec<(&str, Option<String>, &[u8], bool)> = vec![
            ("valid", Some(format!("t={NOW},v1={good}")), body, true),
            ("rolled secrets", Some(format!("t={NOW},v1={forged},v1={good}")), body, true),
            ("other schemes ignored", Some(format!("t={NOW},v0=abc,v1={good}")), body, true),
            ("upper-case hex", Some(format!("t={NOW},v1={}", good.to_uppercase())), body, true),
            (
                "skew within tolerance",
                Some(format!("t={},v1={}", NOW - 299, sign(NOW - 299, body, SECRET))),
                body,
                true,
            ),
            ("missing", None, body, false),
            ("forged", Some(format!("t={NOW},v1={forged}")), body, false),
            ("body changed", Some(format!("t={NOW},v1={good}")), b"{}", false),
            (
                "stale",
                Some(format!("t={},v1={}", NOW - 301, sign(NOW - 301, body, SECRET))),
                body,
                false,
            ),
            (
                "future",
                Some(format!("t={},v1={}", NOW + 301, sign(NOW + 301, body, SECRET))),
                body,
                false,
            ),
            ("timestamp swapped", Some(format!("t={},v1={good}", NOW - 1)), body, false),
            ("no t", Some(format!("v1={good}")), body, false),
            ("no v1", Some(format!("t={NOW}")), body, false),
            ("short v1", Some(format!("t={NOW},v1={}", &good[..32])), body, false),
            ("garbage", Some("nonsense".to_owned()), body, false),
            ("empty", Some(String::new()), body, false),
        ];
        let secret = SecretString::from(SECRET);
        for (name, header, body, ok) in cases {
            let got = verify_stripe_signature(header.as_deref(), body, &secret, NOW, 300);
            assert_eq!(got.is_ok(), ok, "{name}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code(), ErrorCode::WebhookSignatureInvalid, "{name}");
                assert_eq!(e.code().http_status(), 400);
                assert!(!e.message().contains(SECRET));
            }
        }
    }

    #[test]
    fn events_name_their_payment_order_and_amount() {
        let order = OrderId::from_uuid(uuid::Uuid::now_v7());
        let checkout = CheckoutId::from_uuid(uuid::Uuid::now_v7());
        let meta = json!({"order_id": order.to_string(), "checkout_id": checkout.to_string()});
        let succeeded = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {
            "id": "pi_1", "object": "payment_intent", "amount": 900, "amount_received": 900,
            "currency": "usd", "metadata": meta}}});
        let e = payment_event(&succeeded, Some(PaymentEventKind::Succeeded)).unwrap();
        assert_eq!(e.reference, "pi_1");
        assert_eq!(e.order_id.as_ref(), Some(&order));
        assert_eq!(e.checkout_id.as_ref(), Some(&checkout));
        assert_eq!(e.amount, Some(Money::new(900, Currency::usd())));
        let refunded = json!({"id": "evt_2", "type": "charge.refunded", "data": {"object": {
            "id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount": 900,
            "amount_refunded": 300, "refunded": false, "currency": "usd", "metadata": meta}}});
        let e = payment_event(&refunded, Some(PaymentEventKind::Refunded)).unwrap();
        assert_eq!(
            (e.reference.as_str(), e.amount),
            ("pi_1", Some(Money::new(300, Currency::usd())))
        );
        let foreign =
            json!({"id": "evt_3", "data": {"object": {"metadata": {"order_id": "not an id"}}}});
        let e = payment_event(&foreign, None).unwrap();
        assert_eq!((e.order_id, e.amount), (None, None));
        assert!(payment_event(&json!({"type": "x"}), None).is_err(), "an event needs an id");
    }
}
