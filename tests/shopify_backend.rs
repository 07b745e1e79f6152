//! The Shopify backend wired through settings and bootstrap: the gateway
//! reads its catalog from the Storefront API (a local server replaying
//! Shopify's documented shapes), and `POST /webhooks/shopify` checks the
//! HMAC and deduplicates deliveries.

use agentgate::adapters::shopify::webhooks::sign;
use agentgate::bootstrap;
use agentgate::domain::ProductId;
use agentgate::ports::SearchQuery;
use agentgate::settings::{BackendKind, RawSettings, Settings, ShopifyConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOOK_SECRET: &str = "shopify-hook-secret";

fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/fixtures/shopify/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

async fn app(server: &MockServer, dir: &tempfile::TempDir) -> bootstrap::App {
    let raw = RawSettings {
        data_dir: dir.path().to_owned(),
        backend: BackendKind::Shopify,
        shopify: ShopifyConfig {
            api_base: Some(server.uri()),
            cache_ttl_secs: 0,
            ..ShopifyConfig::default()
        },
        shopify_storefront_token: Some(SecretString::from("sf-token")),
        shopify_webhook_secret: Some(SecretString::from(HOOK_SECRET)),
        ..RawSettings::default()
    };
    bootstrap::build(Settings::from_raw(raw).unwrap()).await.unwrap()
}

#[tokio::test]
async fn the_gateway_reads_the_catalog_from_shopify() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/2025-10/graphql.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("products_page2.json")))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&server, &dir).await;
    let page = app.gateway.search(&SearchQuery::default()).await.unwrap();
    assert_eq!(page.products.len(), 1);
    assert_eq!(page.products[0].id, ProductId::parse("gid://shopify/Product/8002").unwrap());
}

async fn deliver(
    router: &axum::Router,
    body: &str,
    hmac: Option<String>,
    id: &str,
    topic: &str,
) -> (StatusCode, Value) {
    let mut req = Request::post("/webhooks/shopify")
        .header("content-type", "application/json")
        .header("x-shopify-topic", topic)
        .header("x-shopify-webhook-id", id);
    if let Some(h) = hmac {
        req = req.header("x-shopify-hmac-sha256", h);
    }
    let resp =
        router.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn webhooks_need_a_valid_hmac_and_are_deduplicated() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&server, &dir).await;
    let router = agentgate::http::app(app.state.clone());
    let order = fixture("admin_order.json")["order"].to_string();
    let secret = SecretString::from(HOOK_SECRET);
    let good = sign(&secret, order.as_bytes());

    // Forged: signed with another secret, or missing; nothing is recorded.
    let forged = sign(&SecretString::from("other"), order.as_bytes());
    let (status, body) = deliver(&router, &order, Some(forged), "w-1", "orders/paid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "webhook_signature_invalid", "{body}");
    let (status, _) = deliver(&router, &order, None, "w-1", "orders/paid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A valid signature over a changed body is forged too.
    let (status, _) =
        deliver(&router, &format!("{order} "), Some(good.clone()), "w-1", "orders/paid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Valid: acted on once (an order placed on the shop itself, with no
    // checkout attribute, is not the gateway's); the replayed delivery is
    // a duplicate.
    let (status, body) = deliver(&router, &order, Some(good.clone()), "w-1", "orders/paid").await;
    assert_eq!((status, body["effect"].clone()), (StatusCode::OK, json!("ignored")), "{body}");
    let (status, body) = deliver(&router, &order, Some(good.clone()), "w-1", "orders/paid").await;
    assert_eq!((status, body["effect"].clone()), (StatusCode::OK, json!("duplicate")));
    assert!(!app.store.mark_webhook_seen("shopify", "w-1").await.unwrap());

    // A fulfillment, and a topic the gateway does not act on.
    let f = fixture("admin_order.json")["order"]["fulfillments"][0].to_string();
    let sig = sign(&secret, f.as_bytes());
    let (_, body) = deliver(&router, &f, Some(sig.clone()), "w-2", "fulfillments/create").await;
    assert_eq!(body["effect"], "ignored", "a shipment of an order the gateway does not know");
    let (_, body) = deliver(&router, &f, Some(sig), "w-3", "products/update").await;
    assert_eq!(body["effect"], "ignored");

    // A signed body that is not an order is refused and not marked seen.
    let junk = r#"{"nothing": true}"#;
    let sig = sign(&secret, junk.as_bytes());
    let (status, _) = deliver(&router, junk, Some(sig), "w-4", "orders/cancelled").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(app.store.mark_webhook_seen("shopify", "w-4").await.unwrap());
}
