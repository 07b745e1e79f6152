//! Load harness for the MCP edge over streamable HTTP on loopback: the
//! whole application (router, layers, rmcp, gateway, SQLite) in this
//! process, driven by N concurrent JSON-RPC clients for a fixed time.
//!
//! `cargo bench --bench mcp_load` (release profile). It stops by itself and
//! prints numbers; it asserts nothing about them, since timings depend on
//! the machine. Knobs: `MCP_LOAD_SECS` (default 10), `MCP_LOAD_CLIENTS`
//! (default 16).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn start() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = agentgate::settings::Settings::for_data_dir(dir.path());
    let app = agentgate::bootstrap::build(settings).await.expect("build");
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

fn main() {
    let secs = env_or("MCP_LOAD_SECS", 10);
    let clients = env_or("MCP_LOAD_CLIENTS", 16);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (url, _dir) = start().await;
        // Warm up the prepared statements and connection pools.
        let http = reqwest::Client::new();
        for i in 0..50 {
            call(&http, &url, i, "scout_inventory", &json!({"query": "linen"})).await;
        }
        scout_inventory_throughput(&url, clients, secs).await;
    });
}
