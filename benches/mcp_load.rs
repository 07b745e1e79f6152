//! Load harness for the MCP edge over streamable HTTP on loopback: the
//! whole application (router, layers, rmcp, gateway, SQLite) in this
//! process, driven by N concurrent JSON-RPC clients for a fixed time.
//!
//! `cargo bench --bench mcp_load` (release profile). It stops by itself and
//! prints numbers; it asserts nothing about them, since timings depend on
//! the machine. Two runs:
//! - `scout_inventory` throughput: N clients call it back to back;
//! - `execute_checkout` latency: clients prepare ready checkouts with
//!   signed mandates (untimed) and time only the completion call.
//!
//! Knobs: `MCP_LOAD_SECS` (default 10 per run), `MCP_LOAD_CLIENTS` (default
//! 16), `MCP_CHECKOUT_CLIENTS` (default 4).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The user whose mandates the merchant trusts.
fn user() -> agentgate::ap2::PrivateKey {
    agentgate::ap2::PrivateKey::generate(&mut rand_core::OsRng)
}

async fn start(user: &agentgate::ap2::PrivateKey) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = agentgate::settings::Settings::for_data_dir(dir.path());
    let jwks = dir.path().join("user.jwks.json");
    std::fs::write(&jwks, json!({"keys": [user.public().to_jwk()]}).to_string()).expect("jwks");
    settings.trusted_agent_jwks_file = Some(jwks);
    let app = agentgate::bootstrap::build(settings).await.expect("build");
    // Enough stock that the checkout run never sells out.
    let sku = agentgate::domain::Sku::parse(CHECKOUT_SKU).expect("sku");
    agentgate::ports::Store::set_stock(app.store.as_ref(), &sku, 10_000_000).await.expect("stock");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = agentgate::http::app(app.state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/mcp"), dir)
}

/// One tools/call in the 2025-11-25 stateless shape (no handshake needed:
/// the server keeps no session).
async fn call(http: &reqwest::Client, url: &str, id: u64, name: &str, args: &Value) -> Value {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": name, "arguments": args}}))
        .send()
        .await
        .expect("request");
    resp.json::<Value>().await.expect("JSON body")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn scout_inventory_throughput(url: &str, clients: u64, secs: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let queries = ["linen", "shirt", "kitchen", "book", "", "wool socks", "mug", "lamp"];
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, stop, errors) = (url.to_owned(), Arc::clone(&stop), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let args = json!({"query": queries[(i as usize) % queries.len()], "limit": 10});
                let started = Instant::now();
                let body = call(&http, &url, i, "scout_inventory", &args).await;
                latencies.push(started.elapsed());
                if body["result"]["isError"] != false {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += clients;
            }
            latencies
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "scout_inventory over HTTP: {clients} clients, {secs} s: {} calls, {:.0} calls/s, \
         p50 {:.2} ms, p99 {:.2} ms, {} errors",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        errors.load(Ordering::Relaxed),
    );
}

/// The variant every checkout buys.
const CHECKOUT_VARIANT: &str = "v-linen-camp-shirt-m";
const CHECKOUT_SKU: &str = "LINEN-CAMP-SHIRT-M";

async fn ok(http: &reqwest::Client, url: &str, name: &str, args: Value) -> Value {
    let body = call(http, url, 1, name, &args).await;
    assert_eq!(body["result"]["isError"], false, "{name}: {body}");
    body["result"]["structuredContent"].clone()
}

/// A ready checkout with its mandate chain, as the agent holds it just
/// before `execute_checkout`.
async fn prepared(http: &reqwest::Client, url: &str, user: &agentgate::ap2::PrivateKey) -> Value {
    use agentgate::ap2::jws;
    use agentgate::ap2::mandates::{CartClaims, IntentClaims, PaymentClaims, MANDATE_TYP};
    let cart = json!({"action": "create", "variant_id": CHECKOUT_VARIANT});
    let cart = ok(http, url, "manage_cart", cart).await;
    let terms = ok(
        http,
        url,
        "negotiate_terms",
        json!({"cart_id": cart["cart_id"], "buyer_email": "load@example.com",
               "ship_to_street": "1 Main St", "ship_to_city": "Springfield",
               "ship_to_postal_code": "62701", "ship_to_country": "US",
               "fulfillment_option_id": "us-standard"}),
    )
    .await;
    let checkout_id = terms["checkout"]["checkout_id"].clone();
    let total = terms["checkout"]["totals"]["total"]["amount"].as_i64().expect("total");
    let now = time::OffsetDateTime::now_utc();
    let intent = IntentClaims::new(
        "urn:load",
        agentgate::domain::Money::new(total, agentgate::domain::Currency::usd()),
        "load test",
        now,
        time::Duration::hours(1),
        &mut rand_core::OsRng,
    )
    .sign(user)
    .expect("intent");
    let terms = ok(
        http,
        url,
        "negotiate_terms",
        json!({"cart_id": cart["cart_id"], "checkout_id": checkout_id, "intent_mandate": intent}),
    )
    .await;
    let cart_mandate = terms["cart_mandate"]["token"].as_str().expect("cart mandate").to_owned();
    let unverified = jws::decode_compact(&cart_mandate, Some(MANDATE_TYP)).expect("jws");
    let claims: CartClaims = jws::parse_claims(unverified.payload_unverified()).expect("claims");
    let payment = PaymentClaims::for_cart(
        &cart_mandate,
        &claims,
        "success_token",
        "CARD",
        now,
        time::Duration::minutes(10),
        &mut rand_core::OsRng,
    )
    .expect("payment")
    .sign(user)
    .expect("sign");
    json!({"checkout_id": checkout_id, "intent_mandate": intent, "cart_mandate": cart_mandate,
           "payment_mandate": payment, "idempotency_key": uuid::Uuid::new_v4().to_string()})
}

async fn execute_checkout_latency(
    url: &str,
    clients: u64,
    secs: u64,
    user: Arc<agentgate::ap2::PrivateKey>,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, user) = (url.to_owned(), Arc::clone(&user));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let args = prepared(&http, &url, &user).await;
                let started = Instant::now();
                let body = call(&http, &url, 1, "execute_checkout", &args).await;
                latencies.push(started.elapsed());
                assert_eq!(body["result"]["structuredContent"]["status"], "paid", "{body}");
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort();
    println!(
        "execute_checkout over HTTP: {clients} concurrent buyers, {secs} s: {} checkouts, \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let secs = env_or("MCP_LOAD_SECS", 10);
    let clients = env_or("MCP_LOAD_CLIENTS", 16);
    let buyers = env_or("MCP_CHECKOUT_CLIENTS", 4);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let user = Arc::new(user());
        let (url, _dir) = start(&user).await;
        // Warm up the prepared statements and connection pools.
        let http = reqwest::Client::new();
        for i in 0..50 {
            call(&http, &url, i, "scout_inventory", &json!({"query": "linen"})).await;
        }
        scout_inventory_throughput(&url, clients, secs).await;
        execute_checkout_latency(&url, buyers, secs, user).await;
    });
}
