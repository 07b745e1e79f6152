//! One agent scenario, run against each commerce backend through the MCP
//! gateway tools over HTTP: search, cart, negotiate, checkout (create,
//! update, complete), then track. The embedded backend takes the payment
//! itself; the Shopify backend (a local server answering Storefront GraphQL
//! and Admin REST in the shapes of Shopify's public API reference) sends
//! the buyer to Shopify's checkout, and the order arrives by signed
//! webhook. Every tool-level result but that escalation must be the same.

mod mcp_support;

use std::sync::{Arc, Mutex};

use agentgate::adapters::shopify::webhooks::sign;
use agentgate::domain::{CheckoutId, CheckoutStatus, OrderId};
use agentgate::gateway::{OrderActor, ShipmentInput};
use agentgate::settings::{BackendKind, ShopifySettings};
use mcp_support::{start_with, Client, Server, User};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const HOOK_SECRET: &str = "scenario-hook-secret";
const SHOP_CHECKOUT: &str = "https://acme-test.myshopify.com/cart/c/Z2NwLXVzLWNlbnRyYWw?key=k1";
const SHOPIFY_ORDER: i64 = 820982911946154508;

/// The one product both backends sell: (variant title, SKU, price, stock).
const VARIANTS: [(&str, &str, i64, u32); 2] =
    [("S", "LINEN-SHIRT-S", 5800, 14), ("M", "LINEN-SHIRT-M", 5800, 9)];

/// The product as the embedded catalog imports it.
fn embedded_catalog() -> Value {
    json!({
        "currency": "USD",
        "products": [{
            "id": "p-linen-shirt", "handle": "linen-shirt", "title": "Linen Shirt",
            "description": "A camp-collar shirt in washed linen.",
            "category": "apparel/shirts", "tags": ["linen", "summer"],
            "variants": VARIANTS.iter().enumerate().map(|(i, (t, sku, price, stock))| json!({
                "id": format!("v-linen-shirt-{i}"), "sku": sku, "title": t,
                "price": price, "stock": stock, "requires_shipping": true
            })).collect::<Vec<_>>()
        }]
    })
}

fn variant_gid(i: usize) -> String {
    format!("gid://shopify/ProductVariant/{}", 7101 + i)
}

/// The product as the Storefront API returns a `Product` node.
fn shopify_product(price: i64) -> Value {
    json!({
        "id": "gid://shopify/Product/7001", "handle": "linen-shirt", "title": "Linen Shirt",
        "description": "A camp-collar shirt in washed linen.", "productType": "Apparel/Shirts",
        "tags": ["linen", "summer"], "featuredImage": null,
        "variants": {"nodes": VARIANTS.iter().enumerate().map(|(i, (t, sku, _, stock))| json!({
            "id": variant_gid(i), "sku": sku, "title": t, "availableForSale": true,
            "quantityAvailable": stock, "requiresShipping": true,
            "price": {"amount": format!("{}.{:02}", price / 100, price % 100), "currencyCode": "USD"}
        })).collect::<Vec<_>>()}
    })
}

/// What the fake shop knows: its price, the carts the gateway made, and
/// the Admin API's view of the order once paid.
#[derive(Default)]
struct Shop {
    price: i64,
    carts: Vec<Value>,
    order: Option<Value>,
}

#[derive(Clone)]
struct ShopResponder(Arc<Mutex<Shop>>);

impl Respond for ShopResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut shop = self.0.lock().unwrap();
        if req.url.path().starts_with("/admin/api/2025-10/orders/") {
            return match &shop.order {
                Some(o)
                    if req.url.path()
                        == format!("/admin/api/2025-10/orders/{SHOPIFY_ORDER}.json") =>
                {
                    ResponseTemplate::new(200).set_body_json(json!({"order": o}))
                }
                _ => ResponseTemplate::new(404).set_body_json(json!({"errors": "Not Found"})),
            };
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let query = body["query"].as_str().unwrap_or_default();
        let product = shopify_product(shop.price);
        let data = if query.contains("cartCreate") {
            let input = &body["variables"]["input"];
            shop.carts.push(input.clone());
            let lines: Vec<Value> = input["lines"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    json!({"id": format!("gid://shopify/CartLine/{i}"), "quantity": l["quantity"],
                                     "merchandise": {"id": l["merchandiseId"]}})
                })
                .collect();
            let units: i64 = lines.iter().map(|l| l["quantity"].as_i64().unwrap()).sum();
            let total = units * shop.price;
            json!({"cartCreate": {"cart": {
                "id": "gid://shopify/Cart/Z2NwLXVzLWNlbnRyYWw?key=k1", "checkoutUrl": SHOP_CHECKOUT,
                "cost": {"totalAmount": {"amount": format!("{}.{:02}", total / 100, total % 100), "currencyCode": "USD"}},
                "lines": {"nodes": lines}}, "userErrors": [], "warnings": []}})
        } else if query.contains("node(id:") {
            let id = body["variables"]["id"].as_str().unwrap_or_default();
            if (0..VARIANTS.len()).any(|i| variant_gid(i) == id) {
                json!({"node": {"id": id, "product": product}})
            } else {
                json!({"node": null})
            }
        } else if query.contains("products(") {
            json!({"products": {"pageInfo": {"hasNextPage": false, "endCursor": "eyJsYXN0X2lkIjo3MDAxfQ=="},
                                "nodes": [product]}})
        } else if query.contains("product(") {
            json!({"product": product})
        } else {
            json!({})
        };
        ResponseTemplate::new(200).set_body_json(json!({"data": data,
            "extensions": {"cost": {"requestedQueryCost": 12, "actualQueryCost": 12,
                "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 988, "restoreRate": 50.0}}}}))
    }
}

enum Kind {
    Embedded,
    Shopify { mock: MockServer, shop: Arc<Mutex<Shop>> },
}

struct Backend {
    server: Server,
    kind: Kind,
    user: User,
}

impl Backend {
    async fn embedded() -> Backend {
        let user = User::new();
        let server = start_with(|s| {
            user.trust(s);
            s.allow_private_profile_hosts = true;
            let path = s.data_dir.join("catalog.json");
            std::fs::write(&path, embedded_catalog().to_string()).unwrap();
            s.catalog_file = Some(path);
        })
        .await;
        Backend { server, kind: Kind::Embedded, user }
    }

    async fn shopify() -> Backend {
        let mock = MockServer::start().await;
        let shop = Arc::new(Mutex::new(Shop { price: VARIANTS[0].2, ..Shop::default() }));
        Mock::given(wiremock::matchers::any())
            .respond_with(ShopResponder(shop.clone()))
            .mount(&mock)
            .await;
        let user = User::new();
        let base = url::Url::parse(&format!("{}/", mock.uri())).unwrap();
        let server = start_with(|s| {
            user.trust(s);
            s.allow_private_profile_hosts = true;
            s.backend = BackendKind::Shopify;
            s.shopify = Some(shopify_settings(base));
        })
        .await;
        Backend { server, kind: Kind::Shopify { mock, shop }, user }
    }

    fn gateway(&self) -> &agentgate::gateway::Gateway {
        &self.server.app_gateway
    }

    /// Cart mutations the gateway sent to Shopify.
    async fn cart_mutations(&self) -> usize {
        match &self.kind {
            Kind::Embedded => 0,
            Kind::Shopify { mock, .. } => mock
                .received_requests()
                .await
                .unwrap_or_default()
                .iter()
                .filter(|r| String::from_utf8_lossy(&r.body).contains("mutation"))
                .count(),
        }
    }

    async fn hook(&self, topic: &str, id: &str, body: &Value) -> Value {
        let raw = body.to_string();
        let hmac = sign(&SecretString::from(HOOK_SECRET), raw.as_bytes());
        let resp = reqwest::Client::new()
            .post(format!("{}/webhooks/shopify", self.server.base))
            .header("content-type", "application/json")
            .header("x-shopify-topic", topic)
            .header("x-shopify-webhook-id", id)
            .header("x-shopify-hmac-sha256", hmac)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{topic}");
        resp.json().await.unwrap()
    }
}

fn shopify_settings(api_base: url::Url) -> ShopifySettings {
    ShopifySettings {
        api_base,
        api_version: "2025-10".into(),
        storefront_token: SecretString::from("sf-token"),
        admin_token: Some(SecretString::from("admin-token")),
        webhook_secret: Some(SecretString::from(HOOK_SECRET)),
        // Off, so a price change on the shop is seen at once.
        cache_ttl: std::time::Duration::ZERO,
        cache_max_entries: 0,
        timeout: std::time::Duration::from_secs(5),
        max_retries: 1,
    }
}

/// Shopify's order (Admin REST shape) for the cart the gateway created:
/// the cart's attributes become the order's `note_attributes`.
fn shopify_order(cart: &Value, fulfillments: Vec<Value>) -> Value {
    let lines: Vec<Value> = cart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let variant: i64 =
                l["merchandiseId"].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
            json!({"id": 466157049 + i as i64, "variant_id": variant, "quantity": l["quantity"],
                   "price": "58.00", "sku": VARIANTS[(variant - 7101) as usize].1})
        })
        .collect();
    let notes: Vec<Value> = cart["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json!({"name": a["key"], "value": a["value"]}))
        .collect();
    json!({
        "id": SHOPIFY_ORDER, "name": "#1001", "email": cart["buyerIdentity"]["email"],
        "currency": "USD", "total_price": "116.00", "financial_status": "paid",
        "fulfillment_status": if fulfillments.is_empty() { Value::Null } else { json!("fulfilled") },
        "cancelled_at": null, "note_attributes": notes, "line_items": lines,
        "fulfillments": fulfillments
    })
}

fn shopify_fulfillment(line_items: &Value) -> Value {
    json!({
        "id": 255858046, "order_id": SHOPIFY_ORDER, "status": "success",
        "created_at": "2026-11-21T10:00:00-05:00", "tracking_company": "UPS",
        "tracking_number": "1Z2345", "tracking_numbers": ["1Z2345"],
        "tracking_url": "https://www.ups.com/track?tracknum=1Z2345",
        "tracking_urls": ["https://www.ups.com/track?tracknum=1Z2345"],
        "line_items": line_items
    })
}

/// Searches and opens a ready checkout for two units of the M variant,
/// with the cart mandate; returns (summary so far, cart id, checkout id,
/// cart mandate, intent).
async fn ready(client: &Client, user: &User) -> (Value, String, String, String, String) {
    let page =
        client.ok("scout_inventory", json!({"query": "linen shirt", "in_stock_only": true})).await;
    let products = page["products"].as_array().unwrap();
    let found: Vec<Value> = products
        .iter()
        .map(|p| {
            json!({"title": p["title"], "category": p["category"], "variants":
                p["variants"].as_array().unwrap().iter().map(|v| json!({
                    "title": v["title"], "sku": v["sku"], "price": v["price"], "stock_state": v["stock_state"]
                })).collect::<Vec<_>>()})
        })
        .collect();
    let variant = products[0]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["sku"] == VARIANTS[1].1)
        .expect("the M variant")["variant_id"]
        .clone();

    let cart = client.ok("manage_cart", json!({"action": "create", "variant_id": variant})).await;
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let cart = client
        .ok(
            "manage_cart",
            json!({"action": "update", "cart_id": cart_id, "variant_id": variant, "quantity": 2}),
        )
        .await;
    let cart_summary = json!({"lines": cart["lines"].as_array().unwrap().iter().map(|l| json!({
        "title": l["title"], "sku": l["sku"], "quantity": l["quantity"], "unit_price": l["unit_price"]
    })).collect::<Vec<_>>(), "subtotal": cart["subtotal"]});

    // Checkout create, then update with the buyer and the address, then
    // with the shipping option.
    let first = client.ok("negotiate_terms", json!({"cart_id": cart_id})).await;
    let checkout_id = first["checkout"]["checkout_id"].as_str().unwrap().to_owned();
    let second = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                   "buyer_email": "ada@example.com", "buyer_first_name": "Ada",
                   "ship_to_name": "Ada Lovelace", "ship_to_street": "1 Main St",
                   "ship_to_city": "Springfield", "ship_to_region": "IL",
                   "ship_to_postal_code": "62701", "ship_to_country": "US"}),
        )
        .await;
    let option = second["checkout"]["fulfillment_options"][0]["id"].clone();
    let third = client
        .ok("negotiate_terms", json!({"cart_id": cart_id, "checkout_id": checkout_id, "fulfillment_option_id": option}))
        .await;
    assert_eq!(third["checkout"]["status"], "ready_for_complete", "{third}");
    let total = third["checkout"]["totals"]["total"]["amount"].as_i64().unwrap();
    let intent = user.intent(total + 10_000);
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": intent}),
        )
        .await;
    let mandate = terms["cart_mandate"]["token"].as_str().expect("a cart mandate").to_owned();
    let checkout = |t: &Value| {
        json!({"status": t["checkout"]["status"], "missing": t["checkout"]["missing"],
               "totals": t["checkout"]["totals"], "lines": t["checkout"]["lines"].as_array().unwrap().len()})
    };
    let summary = json!({
        "search": found, "cart": cart_summary,
        "negotiate": [checkout(&first), checkout(&second), checkout(&third)],
        "cart_mandate_total": terms["cart_mandate"]["total"],
    });
    (summary, cart_id, checkout_id, mandate, intent)
}

/// The scenario; returns the tool-level results that must agree across
/// backends. The escalation step is checked inside, per backend.
async fn scenario(b: &Backend) -> Value {
    let client = Client::connect(&format!("{}/mcp", b.server.base), "2025-11-25").await;
    let (mut summary, _, checkout_id, cart_mandate, intent) = ready(&client, &b.user).await;

    // Complete.
    let payment = b.user.payment(&cart_mandate, "success_token");
    let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                      "cart_mandate": cart_mandate, "payment_mandate": payment,
                      "idempotency_key": "scenario-buy-1"});
    let mut paid_order = None;
    match &b.kind {
        Kind::Embedded => {
            let paid = client.ok("execute_checkout", args).await;
            assert_eq!(paid["status"], "paid", "{paid}");
            paid_order = Some(paid["order_id"].clone());
        }
        Kind::Shopify { shop, .. } => {
            let escalated = client.err("execute_checkout", args).await;
            assert_eq!(escalated["code"], "payment_requires_action", "{escalated}");
            assert!(escalated["message"].as_str().unwrap().contains(SHOP_CHECKOUT), "{escalated}");
            let id = CheckoutId::parse(&checkout_id).unwrap();
            let session = b.gateway().store().get_checkout(&id).await.unwrap().unwrap().value;
            assert_eq!(session.status(), CheckoutStatus::RequiresEscalation);
            assert_eq!(session.continue_url.as_deref(), Some(SHOP_CHECKOUT));
            // The Shopify cart names the checkout, and carries the lines.
            let cart = shop.lock().unwrap().carts.last().cloned().expect("a Shopify cart");
            assert_eq!(
                cart["attributes"],
                json!([{"key": "agentgate_checkout_id", "value": checkout_id}])
            );
            assert_eq!(cart["lines"], json!([{"merchandiseId": variant_gid(1), "quantity": 2}]));
            assert_eq!(cart["buyerIdentity"]["email"], "ada@example.com");

            // Until the buyer pays there is no order to track.
            let early = client.err("track_order", json!({"checkout_id": checkout_id})).await;
            assert_eq!(early["code"], "not_found", "{early}");
            assert!(early["message"].as_str().unwrap().contains("requires_escalation"));

            // The buyer pays on Shopify; Shopify reports the order.
            let order = shopify_order(&cart, Vec::new());
            shop.lock().unwrap().order = Some(order.clone());
            let hook = b.hook("orders/paid", "wh-paid-1", &order).await;
            assert_eq!(hook["effect"], "order_created", "{hook}");
            // The same report again, under another delivery id: no change.
            let hook = b.hook("orders/paid", "wh-paid-2", &order).await;
            assert_eq!(hook["effect"], "unchanged", "{hook}");
        }
    }

    // The agent finds the order by its checkout.
    let before_shipping = client.ok("track_order", json!({"checkout_id": checkout_id})).await;
    let order_id = before_shipping["order_id"].as_str().expect("an order id").to_owned();
    if let Some(paid) = paid_order {
        assert_eq!(paid, json!(order_id));
    }
    let id = CheckoutId::parse(&checkout_id).unwrap();
    let session = b.gateway().store().get_checkout(&id).await.unwrap().unwrap().value;
    assert_eq!(session.status(), CheckoutStatus::Completed);
    assert_eq!(session.order_id.as_ref().map(|o| o.to_string()), Some(order_id.clone()));
    assert_eq!(session.continue_url, None);

    // The goods ship: the operator records it, or Shopify reports it.
    match &b.kind {
        Kind::Embedded => {
            let id = OrderId::parse(&order_id).unwrap();
            let shipment = ShipmentInput {
                carrier: Some("UPS".into()),
                tracking_number: Some("1Z2345".into()),
                tracking_url: Some("https://www.ups.com/track?tracknum=1Z2345".into()),
                lines: None,
            };
            b.gateway().add_fulfillment(&OrderActor::new("ops", "t"), &id, shipment).await.unwrap();
        }
        Kind::Shopify { shop, .. } => {
            let order = shop.lock().unwrap().order.clone().unwrap();
            let items: Vec<Value> = order["line_items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| json!({"id": l["id"], "variant_id": l["variant_id"], "quantity": l["quantity"]}))
                .collect();
            let fulfillment = shopify_fulfillment(&json!(items));
            let cart = shop.lock().unwrap().carts.last().cloned().unwrap();
            shop.lock().unwrap().order = Some(shopify_order(&cart, vec![fulfillment.clone()]));
            let hook = b.hook("fulfillments/create", "wh-ful-1", &fulfillment).await;
            assert_eq!(hook["effect"], "order_updated", "{hook}");
            // An old orders/paid snapshot arriving late moves nothing back.
            let stale = shopify_order(&cart, Vec::new());
            let hook = b.hook("orders/paid", "wh-paid-3", &stale).await;
            assert_eq!(hook["effect"], "unchanged", "{hook}");
        }
    }

    // Exactly one of the two ids.
    for args in [json!({}), json!({"order_id": order_id, "checkout_id": checkout_id})] {
        assert_eq!(client.err("track_order", args).await["code"], "invalid_input");
    }

    // Track.
    let tracked = client.ok("track_order", json!({"order_id": order_id})).await;
    assert_eq!(tracked["checkout_id"], checkout_id.as_str());
    let processor = tracked["payment"]["processor"].as_str().unwrap();
    match &b.kind {
        Kind::Embedded => assert_eq!(processor, "sandbox"),
        Kind::Shopify { .. } => {
            assert_eq!(processor, "shopify");
            assert_eq!(tracked["payment"]["reference"], SHOPIFY_ORDER.to_string());
        }
    }
    let order = |t: &Value| {
        json!({
            "status": t["status"], "totals": t["totals"],
            "lines": t["lines"].as_array().unwrap().iter().map(|l| json!({
                "title": l["title"], "sku": l["sku"], "quantity": l["quantity"],
                "unit_price": l["unit_price"], "line_total": l["line_total"]})).collect::<Vec<_>>(),
            "fulfillments": t["fulfillments"].as_array().unwrap().iter().map(|f| json!({
                "status": f["status"], "carrier": f["carrier"], "tracking_number": f["tracking_number"],
                "tracking_url": f["tracking_url"]})).collect::<Vec<_>>(),
            "event_kinds": t["events"].as_array().unwrap().iter().map(|e| e["kind"].clone()).collect::<Vec<_>>(),
        })
    };

    // The same order through UCP REST, as a platform reads it.
    let mut ucp = ucp_order(&b.server.base, &order_id).await;
    assert_eq!(ucp["id"], order_id.as_str());
    assert_eq!(ucp["checkout_id"], checkout_id.as_str());
    // Ids and instants differ by nature; everything else must agree.
    let doc = ucp.as_object_mut().unwrap();
    for k in ["id", "checkout_id", "permalink_url"] {
        doc.remove(k);
    }
    for line in ucp["line_items"].as_array_mut().unwrap() {
        line["item"].as_object_mut().unwrap().remove("id");
    }
    for event in ucp["fulfillment"]["events"].as_array_mut().unwrap() {
        event.as_object_mut().unwrap().remove("id");
        event.as_object_mut().unwrap().remove("occurred_at");
    }
    summary["ucp_order"] = ucp;
    summary["order_before_shipping"] = order(&before_shipping);
    summary["order"] = order(&tracked);
    summary
}

#[tokio::test]
async fn the_same_agent_scenario_on_every_backend() {
    let embedded = scenario(&Backend::embedded().await).await;
    let shopify = scenario(&Backend::shopify().await).await;
    // The scenario really ran to the end on both.
    assert_eq!(embedded["order"]["status"], "fulfilled", "{embedded}");
    assert_eq!(embedded["order"]["fulfillments"][0]["tracking_number"], "1Z2345");
    assert_eq!(embedded["order_before_shipping"]["status"], "paid");
    assert_eq!(embedded["cart"]["lines"][0]["quantity"], 2);
    assert_eq!(embedded["ucp_order"]["fulfillment"]["events"][0]["tracking_number"], "1Z2345");
    assert_eq!(embedded, shopify);
}

/// The escalation hook runs after the guardrail: a completion the
/// guardrail refuses never reaches Shopify's cart API.
#[tokio::test]
async fn the_guardrail_runs_before_any_shopify_cart() {
    let b = Backend::shopify().await;
    let client = Client::connect(&format!("{}/mcp", b.server.base), "2025-11-25").await;

    // A payment mandate for less than the cart: the agent's own price.
    let (_, _, checkout_id, cart_mandate, intent) = ready(&client, &b.user).await;
    let mut claims = payment_claims(&cart_mandate);
    claims.payment_mandate_contents.payment_details_total.amount -= 1000;
    let cheap = claims.sign(&b.user.key).unwrap();
    let refused = client
        .err(
            "execute_checkout",
            json!({"checkout_id": checkout_id, "intent_mandate": intent,
                   "cart_mandate": cart_mandate, "payment_mandate": cheap,
                   "idempotency_key": "cheap-1"}),
        )
        .await;
    assert_ne!(refused["code"], "payment_requires_action", "{refused}");
    assert_eq!(b.cart_mutations().await, 0, "no Shopify cart for a refused completion");

    // The shop's price moved after the mandate: the guardrail re-prices
    // from Shopify and refuses the stale price.
    let (_, _, checkout_id, cart_mandate, intent) = ready(&client, &b.user).await;
    if let Kind::Shopify { shop, .. } = &b.kind {
        shop.lock().unwrap().price = 6400;
    }
    let payment = b.user.payment(&cart_mandate, "success_token");
    let refused = client
        .err(
            "execute_checkout",
            json!({"checkout_id": checkout_id, "intent_mandate": intent,
                   "cart_mandate": cart_mandate, "payment_mandate": payment,
                   "idempotency_key": "stale-1"}),
        )
        .await;
    assert_ne!(refused["code"], "payment_requires_action", "{refused}");
    assert_eq!(b.cart_mutations().await, 0, "no Shopify cart for a refused completion");
    let id = CheckoutId::parse(&checkout_id).unwrap();
    let session = b.gateway().store().get_checkout(&id).await.unwrap().unwrap().value;
    assert_ne!(session.status(), CheckoutStatus::RequiresEscalation);
    assert_eq!(session.continue_url, None);
}

fn payment_claims(cart_mandate: &str) -> agentgate::ap2::mandates::PaymentClaims {
    use agentgate::ap2::jws;
    let unverified =
        jws::decode_compact(cart_mandate, Some(agentgate::ap2::mandates::MANDATE_TYP)).unwrap();
    let claims: agentgate::ap2::mandates::CartClaims =
        jws::parse_claims(unverified.payload_unverified()).unwrap();
    agentgate::ap2::mandates::PaymentClaims::for_cart(
        cart_mandate,
        &claims,
        "success_token",
        "CARD",
        time::OffsetDateTime::now_utc(),
        time::Duration::minutes(10),
        &mut rand_core::OsRng,
    )
    .unwrap()
}

/// Reports out of order and twice: a shipment before the payment (read
/// back from the Admin API), a cancellation, and a shipment of an order
/// placed elsewhere.
#[tokio::test]
async fn shopify_reports_in_any_order_settle_once() {
    let b = Backend::shopify().await;
    let client = Client::connect(&format!("{}/mcp", b.server.base), "2025-11-25").await;
    let (_, _, checkout_id, cart_mandate, intent) = ready(&client, &b.user).await;
    let payment = b.user.payment(&cart_mandate, "success_token");
    let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                      "cart_mandate": cart_mandate, "payment_mandate": payment,
                      "idempotency_key": "ooo-1"});
    client.err("execute_checkout", args).await;
    let Kind::Shopify { shop, .. } = &b.kind else { unreachable!() };
    let cart = shop.lock().unwrap().carts.last().cloned().unwrap();

    // A shipment of an order nobody knows: ignored, and nothing created.
    let stranger = shopify_fulfillment(&json!([]));
    let mut stranger_body = stranger.clone();
    stranger_body["order_id"] = json!(1);
    let hook = b.hook("fulfillments/create", "wh-x", &stranger_body).await;
    assert_eq!(hook["effect"], "ignored", "{hook}");

    // The shipment arrives first; the Admin API already shows the paid
    // order, so the order is created and shipped in one go.
    let fulfillment = shopify_fulfillment(&json!([{"id": 1, "variant_id": 7102, "quantity": 2}]));
    shop.lock().unwrap().order = Some(shopify_order(&cart, vec![fulfillment.clone()]));
    let hook = b.hook("fulfillments/create", "wh-f", &fulfillment).await;
    assert_eq!(hook["effect"], "order_created", "{hook}");
    let hook = b.hook("fulfillments/update", "wh-f2", &fulfillment).await;
    assert_eq!(hook["effect"], "unchanged", "{hook}");
    let hook = b.hook("orders/paid", "wh-p", &shopify_order(&cart, Vec::new())).await;
    assert_eq!(hook["effect"], "unchanged", "{hook}");
    let tracked = client.ok("track_order", json!({"checkout_id": checkout_id})).await;
    let order_id = tracked["order_id"].as_str().unwrap().to_owned();
    assert_eq!(tracked["status"], "fulfilled", "{tracked}");
    assert_eq!(tracked["fulfillments"].as_array().unwrap().len(), 1);
    let events = tracked["events"].as_array().unwrap().len();

    // Tracking corrected on Shopify: the lookup reads it fresh.
    let mut corrected = fulfillment.clone();
    corrected["tracking_numbers"] = json!(["1Z9999"]);
    corrected["tracking_number"] = json!("1Z9999");
    shop.lock().unwrap().order = Some(shopify_order(&cart, vec![corrected]));
    let tracked = client.ok("track_order", json!({"order_id": order_id})).await;
    assert_eq!(tracked["fulfillments"][0]["tracking_number"], "1Z9999", "{tracked}");
    assert_eq!(tracked["events"].as_array().unwrap().len(), events + 1);
    let again = client.ok("track_order", json!({"order_id": order_id})).await;
    assert_eq!(again["events"].as_array().unwrap().len(), events + 1, "a second read adds nothing");

    // A refund on Shopify of the shipped order: refunded, fee reversed.
    let mut refunded = shopify_order(&cart, Vec::new());
    refunded["financial_status"] = json!("refunded");
    refunded["cancelled_at"] = json!("2026-11-22T10:00:00-05:00");
    shop.lock().unwrap().order = Some(refunded.clone());
    let hook = b.hook("orders/cancelled", "wh-c", &refunded).await;
    assert_eq!(hook["effect"], "order_updated", "{hook}");
    let hook = b.hook("orders/cancelled", "wh-c2", &refunded).await;
    assert_eq!(hook["effect"], "unchanged", "{hook}");
    let tracked = client.ok("track_order", json!({"order_id": order_id})).await;
    assert_eq!(tracked["status"], "refunded", "{tracked}");
    let far = time::OffsetDateTime::now_utc();
    let ledger = b
        .gateway()
        .store()
        .ledger_entries(far - time::Duration::days(1), far + time::Duration::days(1), None)
        .await
        .unwrap();
    let kinds: Vec<_> = ledger.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
}

/// `GET /ucp/v1/orders/{id}` as a UCP platform with a served profile.
async fn ucp_order(base: &str, order_id: &str) -> Value {
    let platform = MockServer::start().await;
    let names: Vec<&str> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .filter(|c| c.name != agentgate::ucp::profile::AP2_MANDATE)
        .map(|c| c.name)
        .collect();
    let registry: serde_json::Map<String, Value> =
        names.iter().map(|n| ((*n).to_owned(), json!([{"version": "2026-04-08"}]))).collect();
    let profile =
        json!({"ucp": {"version": "2026-04-08", "capabilities": registry}, "signing_keys": []});
    Mock::given(wiremock::matchers::path("/platform.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(profile))
        .mount(&platform)
        .await;
    let resp = reqwest::Client::new()
        .get(format!("{base}/ucp/v1/orders/{order_id}"))
        .header("ucp-agent", format!("profile=\"{}/platform.json\"", platform.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}
