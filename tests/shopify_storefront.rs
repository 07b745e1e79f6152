//! The Shopify adapters against a local server replaying Storefront and
//! Admin API answers (fixtures in `tests/fixtures/shopify/`, shaped as
//! Shopify's public API reference documents them).

use std::time::Duration;

use agentgate::adapters::shopify::storefront::{CartLineInput, ShopifyStorefront};
use agentgate::adapters::shopify::{RetryPolicy, ShopifyAdmin, ShopifyOptions};
use agentgate::domain::{Currency, ErrorCode, ProductId, Sku, VariantId};
use agentgate::ports::{Catalog, SearchQuery};
use secrecy::SecretString;
use serde_json::Value;
use wiremock::matchers::{body_partial_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GQL: &str = "/api/2025-10/graphql.json";

fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/fixtures/shopify/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn options(server: &MockServer, cache_ttl: Duration) -> ShopifyOptions {
    ShopifyOptions {
        api_base: url::Url::parse(&format!("{}/", server.uri())).unwrap(),
        api_version: "2025-10".into(),
        storefront_token: SecretString::from("sf-token"),
        admin_token: Some(SecretString::from("admin-token")),
        currency: Currency::usd(),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        },
        cache_ttl,
        cache_max_entries: 64,
    }
}

#[tokio::test]
async fn search_maps_products_and_pages_with_opaque_cursors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .and(header("X-Shopify-Storefront-Access-Token", "sf-token"))
        .and(body_partial_json(serde_json::json!({"variables": {"after": null}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("products_page1.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .and(body_partial_json(serde_json::json!({"variables": {"after": "eyJsYXN0X2lkIjo4MDAxLCJsYXN0X3ZhbHVlIjoiODAwMSJ9"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("products_page2.json")))
        .expect(1)
        .mount(&server)
        .await;
    let catalog = ShopifyStorefront::new(&options(&server, Duration::ZERO)).unwrap();
    let q = SearchQuery { text: "shoe".into(), limit: 1, ..Default::default() };
    let page = catalog.search(&q).await.unwrap();
    assert_eq!(page.products.len(), 1);
    let p = &page.products[0];
    assert_eq!(p.id, ProductId::parse("gid://shopify/Product/8001").unwrap());
    assert_eq!(p.category, "apparel/shoes");
    assert_eq!(p.tags, vec!["running", "sale"]);
    assert_eq!(p.variants[0].price.minor(), 8950);
    assert_eq!(p.variants[0].sku, Sku::parse("TR-42").unwrap());
    assert_eq!(p.variants[0].stock, 12);
    // No merchant SKU: the variant's GID stands in, losslessly.
    assert_eq!(p.variants[1].sku.as_str(), "gid://shopify/ProductVariant/9002");
    assert_eq!(p.variants[1].stock, 0);
    let cursor = page.next_cursor.expect("a next page");
    assert!(!cursor.contains("eyJsYXN0X2lk"), "Shopify's cursor must not leak as is");

    let page2 =
        catalog.search(&SearchQuery { cursor: Some(cursor.clone()), ..q.clone() }).await.unwrap();
    assert_eq!(page2.products[0].handle, "gift-card");
    assert!(page2.next_cursor.is_none());
    // Unknown inventory on a variant for sale, and no shipping for a gift card.
    assert_eq!(page2.products[0].variants[0].stock, 100);
    assert!(!page2.products[0].variants[0].requires_shipping);

    // A cursor from another search is refused without calling Shopify.
    let other = SearchQuery { text: "hat".into(), cursor: Some(cursor), ..Default::default() };
    assert_eq!(catalog.search(&other).await.unwrap_err().code(), ErrorCode::InvalidInput);
}

#[tokio::test]
async fn filters_become_shopify_search_terms() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .and(body_string_contains(
            r#"product_type:\"apparel/shoes\" AND tag:\"sale\" AND variants.price:>=10.00 AND variants.price:<=100.00 AND available_for_sale:true"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("products_page2.json")))
        .expect(1)
        .mount(&server)
        .await;
    let catalog = ShopifyStorefront::new(&options(&server, Duration::ZERO)).unwrap();
    let q = SearchQuery {
        category: Some("apparel/shoes".into()),
        tags: vec!["sale".into()],
        price_min: Some(1000),
        price_max: Some(10000),
        in_stock_only: true,
        ..Default::default()
    };
    assert_eq!(catalog.search(&q).await.unwrap().products.len(), 1);
}

#[tokio::test]
async fn throttled_then_success_is_retried_and_reads_are_cached() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("throttled.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("products_page2.json")))
        .expect(1)
        .mount(&server)
        .await;
    let catalog = ShopifyStorefront::new(&options(&server, Duration::from_secs(30))).unwrap();
    let q = SearchQuery::default();
    assert_eq!(catalog.search(&q).await.unwrap().products.len(), 1);
    // The second read comes from the cache: the server expects one success.
    assert_eq!(catalog.search(&q).await.unwrap().products.len(), 1);
}

#[tokio::test]
async fn server_errors_retry_and_then_give_up_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("products_page2.json")))
        .expect(1)
        .mount(&server)
        .await;
    let catalog = ShopifyStorefront::new(&options(&server, Duration::ZERO)).unwrap();
    let v = VariantId::parse("gid://shopify/ProductVariant/9003").unwrap();
    // 503 then success.
    assert_eq!(catalog.search(&SearchQuery::default()).await.unwrap().products.len(), 1);

    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(3) // one try plus max_retries = 2
        .mount(&down)
        .await;
    let catalog = ShopifyStorefront::new(&options(&down, Duration::ZERO)).unwrap();
    let err = catalog.variant(&v).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
}

#[tokio::test]
async fn rest_429_honours_retry_after_within_the_cap() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/admin/api/2025-10/orders/450789469.json"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0.02"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/admin/api/2025-10/orders/450789469.json"))
        .and(header("X-Shopify-Access-Token", "admin-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("admin_order.json")))
        .expect(1)
        .mount(&server)
        .await;
    let admin = ShopifyAdmin::new(&options(&server, Duration::ZERO)).unwrap().unwrap();
    let order = admin.order("gid://shopify/Order/450789469").await.unwrap().unwrap();
    assert_eq!(order.financial_status.as_deref(), Some("paid"));
    assert_eq!(order.fulfillment_status.as_deref(), Some("partial"));
    assert_eq!(order.total.minor(), 17900);
    assert_eq!(order.fulfillments[0].tracking_numbers, vec!["1Z2345"]);
    assert_eq!(order.fulfillments[0].tracking_company.as_deref(), Some("UPS"));
    assert!(admin.order("not-a-number").await.is_err());
}

#[tokio::test]
async fn carts_expose_checkout_urls_and_user_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .and(body_string_contains("cartCreate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("cart_create.json")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .and(body_string_contains("cartLinesAdd"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("cart_user_error.json")))
        .mount(&server)
        .await;
    let sf = ShopifyStorefront::new(&options(&server, Duration::ZERO)).unwrap();
    let line = CartLineInput {
        variant: VariantId::parse("gid://shopify/ProductVariant/9001").unwrap(),
        quantity: 2,
    };
    let cart = sf.cart_create(&[line.clone()], None, &[]).await.unwrap();
    assert_eq!(cart.checkout_url, "https://acme.myshopify.com/cart/c/c1-abc123?key=k1");
    assert_eq!(cart.lines[0].2, 2);
    assert_eq!(cart.total.unwrap().minor(), 17900);
    let err = sf.cart_lines_add(&cart.id, &[line]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.message().contains("does not exist"));
}

#[tokio::test]
async fn a_price_in_another_currency_is_refused() {
    let server = MockServer::start().await;
    let mut doc = fixture("products_page2.json");
    doc["data"]["products"]["nodes"][0]["variants"]["nodes"][0]["price"]["currencyCode"] =
        "EUR".into();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&server)
        .await;
    let catalog = ShopifyStorefront::new(&options(&server, Duration::ZERO)).unwrap();
    let err = catalog.search(&SearchQuery::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
}

#[tokio::test]
async fn escalation_builds_a_cart_naming_the_checkout_and_returns_its_url() {
    use agentgate::ports::ExternalCheckout;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GQL))
        .and(body_string_contains("cartCreate"))
        .and(body_partial_json(serde_json::json!({"variables": {"input": {
            "lines": [{"merchandiseId": "gid://shopify/ProductVariant/9001", "quantity": 2}],
            "buyerIdentity": {"email": "ada@example.com"}
        }}})))
        .and(body_string_contains("agentgate_checkout_id"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("cart_create.json")))
        .expect(1)
        .mount(&server)
        .await;
    let sf = ShopifyStorefront::new(&options(&server, Duration::ZERO)).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let line = agentgate::domain::LineItem {
        id: "li_1".into(),
        variant_id: VariantId::parse("gid://shopify/ProductVariant/9001").unwrap(),
        product_id: ProductId::parse("gid://shopify/Product/8001").unwrap(),
        sku: Sku::parse("TR-42").unwrap(),
        title: "Trail Runner".into(),
        quantity: 2,
        unit_price: agentgate::domain::Money::new(8950, Currency::usd()),
        requires_shipping: true,
    };
    let mut session = agentgate::domain::CheckoutSession::new(
        agentgate::domain::CheckoutId::from_uuid(uuid::Uuid::now_v7()),
        Currency::usd(),
        vec![line],
        None,
        now,
        time::Duration::hours(1),
    )
    .unwrap();
    session.buyer.email = Some("ada@example.com".into());
    let url = sf.continue_url(&session).await.unwrap();
    assert_eq!(url, "https://acme.myshopify.com/cart/c/c1-abc123?key=k1");
}
