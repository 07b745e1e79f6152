//! Crash consistency of the checkout pipeline: the real binary takes UCP
//! REST completes from concurrent clients, is killed with SIGKILL in the
//! middle of the load, and restarts on the same data dir. Then:
//!
//! - every order whose completion was acknowledged to a client exists;
//! - for each SKU, stock + units sold == initial stock;
//! - the ledger's fees sum to the fees of the orders, one entry per order;
//! - every session the crash left in `complete_in_progress` is recovered by
//!   completing it again once its lease ends, and none is left behind.
//!
//! Bounded: `CRASH_LOAD_MS` of load (default 1500) from `CRASH_CLIENTS`
//! clients (default 8), everything on 127.0.0.1. `scripts/crash-test.sh`
//! runs it repeatedly with a longer load.

#![cfg(unix)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgate::adapters::payments::sandbox::SLOW_SUCCESS_TOKEN;
use agentgate::adapters::sqlite::SqliteStore;
use agentgate::domain::{CheckoutId, CheckoutStatus, Error, OrderId, Sku};
use agentgate::ports::Store;
use agentgate::settings::Settings;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const V4: &str = "2026-04-08";
/// (variant, sku) pairs the clients buy, one unit of each per order.
const ITEMS: [(&str, &str); 2] = [
    ("v-organic-cotton-tee-black", "ORGANIC-COTTON-TEE-BLACK"),
    ("v-linen-camp-shirt-m", "LINEN-CAMP-SHIRT-M"),
];
const INITIAL_STOCK: u32 = 100_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A private copy of the binary: other builds sharing the target dir may
/// replace the original while this test runs. `AGENTGATE_BIN` names
/// another build of the same tree (a release build, or one kept aside
/// from a shared target dir).
fn private_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("agentgate-crash");
    let built = std::env::var_os("AGENTGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_agentgate")));
    std::fs::copy(&built, &bin).expect("copy the binary");
    bin
}

fn start(bin: &Path, port: u16, data: &Path) -> Child {
    Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .env_remove("AGENTGATE_CONFIG")
        .env("AGENTGATE_ALLOW_PRIVATE_PROFILE_HOSTS", "true")
        // A lease of 2 x 2 s, so recovery after the restart is quick.
        .env("AGENTGATE_REQUEST_TIMEOUT_SECS", "2")
        // All clients share 127.0.0.1's budget: with the limiter on, a
        // burst of 20 completes goes through and the rest are refused, so
        // the kill would rarely land on a completion in flight.
        .env("AGENTGATE_RATE_LIMITS__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway at {base} did not become healthy");
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean stop: {status}");
}

/// Odd clients pay with the slow token, whose answer arrives 100 ms after
/// the charge: a kill then finds requests between charge and commit.
fn instrument(n: usize) -> Value {
    let token = if n % 2 == 1 { SLOW_SUCCESS_TOKEN } else { "success_token" };
    json!({"id": "i1", "handler_id": "sandbox", "type": "card",
           "credential": {"type": "token", "token": token}})
}

fn create_body(item: usize, client: usize) -> Value {
    let (variant, _) = ITEMS[item % ITEMS.len()];
    json!({
        "line_items": [{"item": {"id": variant}, "quantity": 1}],
        "buyer": {"email": "ada@example.com"},
        "fulfillment": {"methods": [{"type": "shipping", "destinations": [{
            "street_address": "1 Main St", "address_locality": "Springfield",
            "address_region": "IL", "postal_code": "62701", "address_country": "US"}],
            "groups": [{"selected_option_id": "us-standard"}]}]},
        "payment": {"instruments": [instrument(client)]},
    })
}

/// What the clients saw: every session created, and the orders whose
/// completion was acknowledged (checkout id -> order id).
#[derive(Default)]
struct Seen {
    sessions: Vec<String>,
    acked: HashMap<String, String>,
}

async fn post(
    http: &reqwest::Client,
    url: String,
    agent: &str,
    body: &Value,
) -> reqwest::Result<(u16, Value)> {
    let r = http
        .post(url)
        .header("ucp-agent", agent)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let json = r.json().await.unwrap_or(Value::Null);
    Ok((status, json))
}

/// One client: create then complete, until `stop` or a connection error.
async fn client(
    n: usize,
    http: reqwest::Client,
    base: String,
    agent: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut i = n;
    while !stop.load(Ordering::SeqCst) {
        let Ok((200 | 201, created)) =
            post(&http, format!("{base}/ucp/v1/checkout-sessions"), &agent, &create_body(i, n))
                .await
        else {
            return;
        };
        let id = created["id"].as_str().unwrap().to_owned();
        seen.lock().unwrap().sessions.push(id.clone());
        let url = format!("{base}/ucp/v1/checkout-sessions/{id}/complete");
        let body = json!({"payment": {"instruments": [instrument(n)]}});
        match post(&http, url, &agent, &body).await {
            Ok((200, done)) if done["status"] == "completed" => {
                let order = done["order"]["id"].as_str().unwrap().to_owned();
                seen.lock().unwrap().acked.insert(id, order);
            }
            Ok(_) => {}
            Err(_) => return,
        }
        i += 1;
    }
}

async fn platform_profile() -> MockServer {
    let platform = MockServer::start().await;
    let registry: serde_json::Map<String, Value> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .map(|c| c.name)
        .filter(|n| *n != agentgate::ucp::profile::AP2_MANDATE)
        .map(|n| (n.to_owned(), json!([{"version": V4}])))
        .collect();
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"ucp": {"version": V4, "capabilities": registry}, "signing_keys": []}),
                )
                .insert_header("Cache-Control", "public, max-age=300"),
        )
        .mount(&platform)
        .await;
    platform
}

/// Reads the session statuses of `ids` from the data dir (no server up).
async fn statuses(data: &Path, ids: &[String]) -> HashMap<String, CheckoutStatus> {
    let store = SqliteStore::open(data).unwrap();
    let mut out = HashMap::new();
    for id in ids {
        let cid = CheckoutId::parse(id).unwrap();
        if let Some(v) = store.get_checkout(&cid).await.unwrap() {
            out.insert(id.clone(), v.value.status());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_under_load_loses_no_acknowledged_order_and_no_unit() {
    let load_ms = env_u64("CRASH_LOAD_MS", 1500);
    let clients = env_u64("CRASH_CLIENTS", 8) as usize;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let bin = private_binary(work.path());

    // Seed: the catalog, the key and a known stock, before the first start.
    {
        let app = agentgate::bootstrap::build(Settings::for_data_dir(&data)).await.unwrap();
        for (_, sku) in ITEMS {
            app.store.set_stock(&Sku::parse(sku).unwrap(), INITIAL_STOCK).await.unwrap();
        }
    }

    let platform = platform_profile().await;
    let agent = format!("profile=\"{}/.well-known/ucp\"", platform.uri());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // First life: load, then SIGKILL in the middle of it.
    let mut first = start(&bin, port, &data);
    wait_healthy(&http, &base).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let halt = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            tokio::spawn(client(
                n,
                http.clone(),
                base.clone(),
                agent.clone(),
                seen.clone(),
                halt.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(load_ms)).await;
    first.kill().unwrap(); // SIGKILL, requests in flight
    first.wait().unwrap();
    halt.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let (sessions, acked) = {
        let s = seen.lock().unwrap();
        (s.sessions.clone(), s.acked.clone())
    };
    assert!(acked.len() >= clients, "the load made orders before the kill: {}", acked.len());

    // What the crash left in progress.
    let before = statuses(&data, &sessions).await;
    let stuck: Vec<String> = before
        .iter()
        .filter(|(_, s)| **s == CheckoutStatus::CompleteInProgress)
        .map(|(id, _)| id.clone())
        .collect();
    eprintln!(
        "crash: {} sessions, {} acknowledged orders, {} left in complete_in_progress",
        sessions.len(),
        acked.len(),
        stuck.len()
    );

    // Second life: completing a stuck session again recovers it once its
    // lease has run out (until then: a retryable in-progress refusal).
    let second = start(&bin, port, &data);
    wait_healthy(&http, &base).await;
    for id in &stuck {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("{base}/ucp/v1/checkout-sessions/{id}/complete");
        let body = json!({"payment": {"instruments": [instrument(0)]}});
        loop {
            let (status, answer) = post(&http, url.clone(), &agent, &body).await.unwrap();
            if status == 200 {
                assert_eq!(answer["status"], "completed", "recovered: {answer}");
                break;
            }
            assert!(Instant::now() < deadline, "{id} not recovered: {status} {answer}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    stop(second);

    // The books, read from the data dir.
    let after = statuses(&data, &sessions).await;
    let left: Vec<_> =
        after.iter().filter(|(_, s)| **s == CheckoutStatus::CompleteInProgress).collect();
    assert!(left.is_empty(), "sessions still in complete_in_progress: {left:?}");
    let store = SqliteStore::open(&data).unwrap();
    // Every order, read by id: `list_orders` returns at most 500, and a
    // run without the rate limiter makes more than that.
    let ids: Vec<String> = store
        .db()
        .read(|c| {
            let mut stmt = c.prepare("SELECT id FROM orders").map_err(Error::store)?;
            let ids = stmt.query_map([], |r| r.get(0)).map_err(Error::store)?;
            ids.collect::<Result<Vec<String>, _>>().map_err(Error::store)
        })
        .await
        .unwrap();
    let mut orders = Vec::with_capacity(ids.len());
    for id in &ids {
        let id = OrderId::parse(id).unwrap();
        orders.push(store.get_order(&id).await.unwrap().expect("listed order reads").value);
    }
    let by_id: HashMap<OrderId, _> = orders.iter().map(|o| (o.id.clone(), o)).collect();
    for (checkout, order) in &acked {
        let order = OrderId::parse(order).unwrap();
        let found = by_id.get(&order).unwrap_or_else(|| panic!("acknowledged {order} lost"));
        assert_eq!(found.checkout_id.to_string(), *checkout);
    }
    let per_checkout: HashSet<_> = orders.iter().map(|o| o.checkout_id.clone()).collect();
    assert_eq!(per_checkout.len(), orders.len(), "one order per checkout");
    for (id, status) in &after {
        let has_order = per_checkout.contains(&CheckoutId::parse(id).unwrap());
        assert_eq!(*status == CheckoutStatus::Completed, has_order, "{id}: {status:?}");
    }
    for (_, sku) in ITEMS {
        let sku = Sku::parse(sku).unwrap();
        let sold: u64 = orders
            .iter()
            .flat_map(|o| o.lines.iter())
            .filter(|l| l.sku == sku)
            .map(|l| u64::from(l.quantity))
            .sum();
        let stock = u64::from(store.get_stock(&sku).await.unwrap().unwrap());
        assert_eq!(stock + sold, u64::from(INITIAL_STOCK), "{sku}: stock {stock} + sold {sold}");
    }
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let ledger = store.ledger_entries(now - day, now + day, None).await.unwrap();
    assert_eq!(ledger.len(), orders.len(), "one ledger entry per order");
    let ledger_fees: i64 = ledger.iter().map(|e| e.fee.minor()).sum();
    let order_fees: i64 = orders.iter().map(|o| o.fee.minor()).sum();
    assert_eq!(ledger_fees, order_fees, "ledger total == fees of the orders");
    drop(platform);
}
