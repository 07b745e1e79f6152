//! The outbox survives a crash: the real binary completes a checkout for a
//! platform whose profile names an order `webhook_url`, is killed with
//! SIGKILL after the commit and before its worker ran, and a second
//! process on the same data dir delivers the webhook, exactly once.

#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentgate::adapters::sqlite::SqliteStore;
use agentgate::ports::{OutboxFilter, OutboxKind, OutboxStatus, Store};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const V4: &str = "2026-04-08";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `agentgate serve` on `port` and `data`, with the outbox worker's
/// first run `start_delay_ms` after startup.
fn start(port: u16, data: &std::path::Path, start_delay_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .env_remove("AGENTGATE_CONFIG")
        // The platform profile and its receiver are on this machine.
        .env("AGENTGATE_ALLOW_PRIVATE_PROFILE_HOSTS", "true")
        .env("AGENTGATE_OUTBOX__START_DELAY_MS", start_delay_ms.to_string())
        .env("AGENTGATE_OUTBOX__POLL_INTERVAL_MS", "50")
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway at {base} did not become healthy");
}

async fn hooks(receiver: &MockServer) -> Vec<wiremock::Request> {
    let all = receiver.received_requests().await.unwrap_or_default();
    all.into_iter().filter(|r| r.url.path() == "/hooks/orders").collect()
}

#[tokio::test]
async fn a_webhook_committed_before_a_crash_is_delivered_once_after_restart() {
    // The platform: its profile asks for order webhooks at its receiver.
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
            let config = if *n == "dev.ucp.shopping.order" {
                json!([{"version": V4, "config": {"webhook_url": hook}}])
            } else {
                json!([{"version": V4}])
            };
            ((*n).to_owned(), config)
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ucp": {"version": V4, "capabilities": registry}, "signing_keys": []}),
        ))
        .mount(&platform)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/orders"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&platform)
        .await;
    let agent = format!("profile=\"{}/.well-known/ucp\"", platform.uri());

    // First life: the worker would start only after ten minutes.
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut first = start(port, data.path(), 600_000);
    wait_healthy(&http, &base).await;

    let instrument = json!({"id": "i1", "handler_id": "sandbox", "type": "card",
                            "credential": {"type": "token", "token": "success_token"}});
    let body = json!({
        "line_items": [{"item": {"id": "v-organic-cotton-tee-black"}, "quantity": 1}],
        "buyer": {"email": "ada@example.com"},
        "fulfillment": {"methods": [{"type": "shipping", "destinations": [{
            "street_address": "1 Main St", "address_locality": "Springfield",
            "address_region": "IL", "postal_code": "62701", "address_country": "US"}],
            "groups": [{"selected_option_id": "us-standard"}]}]},
        "payment": {"instruments": [instrument]},
    });
    let created: Value = http
        .post(format!("{base}/ucp/v1/checkout-sessions"))
        .header("ucp-agent", &agent)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}"));
    let done: Value = http
        .post(format!("{base}/ucp/v1/checkout-sessions/{id}/complete"))
        .header("ucp-agent", &agent)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"payment": {"instruments": [instrument]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let order_id = done["order"]["id"].as_str().unwrap().to_owned();

    // Committed, not delivered: then the process dies without a word.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hooks(&platform).await.is_empty(), "the first life must not deliver");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // Second life on the same data dir, worker on at once.
    let mut second = start(port, data.path(), 0);
    wait_healthy(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while hooks(&platform).await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = hooks(&platform).await;
    assert_eq!(got.len(), 1, "delivered exactly once");
    let delivered: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(delivered["id"], order_id.as_str());
    assert_eq!(
        got[0].headers["webhook-id"].to_str().unwrap(),
        delivered["event_id"].as_str().unwrap()
    );
    assert!(got[0].headers.contains_key("request-signature"));

    // Stopped cleanly, the store says both messages were delivered once.
    let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    assert!(second.wait().unwrap().success());
    let store = SqliteStore::open(data.path()).unwrap();
    let order = agentgate::domain::OrderId::parse(&order_id).unwrap();
    let filter = OutboxFilter { order_id: Some(order), ..OutboxFilter::default() };
    let entries = store.outbox_entries(&filter).await.unwrap();
    let states: Vec<_> = entries.iter().map(|e| (e.message.kind, e.status, e.attempts)).collect();
    assert_eq!(
        states,
        [
            (OutboxKind::OrderWebhook, OutboxStatus::Delivered, 1),
            (OutboxKind::Notification, OutboxStatus::Delivered, 1),
        ]
    );
}
