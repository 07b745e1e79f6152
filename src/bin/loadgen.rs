//! Load harness: `cargo build --release --bins && target/release/loadgen`
//! (or `cargo run --release --bin loadgen` after building `agentgate`).
//!
//! Seeds a fresh data dir (demo catalog + a 10k-product synthetic catalog,
//! stock, a trusted user key), starts the release `agentgate` binary on
//! 127.0.0.1 as a separate process, and drives, each phase bounded in time
//! (`LOADGEN_SECS`, default 5) and in requests (`LOADGEN_MAX`, default
//! 200000) at `LOADGEN_CLIENTS` clients (default 64):
//! `GET /.well-known/ucp`, `scout_inventory` over MCP HTTP, UCP REST
//! checkout create, and `execute_checkout` with mandates pre-signed before
//! the timed window (`LOADGEN_CHECKOUTS`, default 2000). It reports
//! throughput, p50, p99, errors and the server's peak RSS (VmHWM) per phase,
//! time to first answer and idle RSS with the 10k store, and the ratio of
//! `execute_checkout` throughput to the crypto floor measured in the same
//! run (the ES256 work of one checkout run on every core at once), plus the
//! share of the server's CPU per checkout that this ES256 work is. Prints a table, then one JSON line. Stops the server at the end.
//!
//! Each phase also reports the CPU time the server and this client used
//! (from `/proc/<pid>/stat`), to show how much of the two cores the client
//! itself takes.
//!
//! `LOADGEN_CALLGRIND=<dir>` runs the server under `valgrind
//! --tool=callgrind` instead (build it with `--profile profiling` and point
//! `AGENTGATE_BIN` at it), zeroes the counters before each phase, dumps them
//! after it into `<dir>`, and reports instructions per request: a cost that
//! does not depend on what else the machine is doing. Use it with a small
//! fixed `LOADGEN_MAX` and few clients. `LOADGEN_PHASES` (comma-separated:
//! `well_known,scout,create,execute`) picks the phases to run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgate::ap2::jws;
use agentgate::ap2::mandates::{CartClaims, IntentClaims, PaymentClaims, MANDATE_TYP};
use agentgate::ap2::PrivateKey;
use serde_json::{json, Value};

const V4: &str = "2026-04-08";
const CHECKOUT_VARIANT: &str = "v-linen-camp-shirt-m";
const CHECKOUT_SKU: &str = "LINEN-CAMP-SHIRT-M";
/// ES256 operations the gateway performs in one `execute_checkout`: it
/// verifies the intent, cart and payment mandates and signs the receipt.
const VERIFIES_PER_CHECKOUT: f64 = 3.0;
const SIGNS_PER_CHECKOUT: f64 = 1.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bin: &Path, data: &Path, callgrind: Option<&Path>) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = match callgrind {
            None => Command::new(bin),
            Some(dir) => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}/callgrind.out", dir.display()))
                    .arg(bin);
                c
            }
        };
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .env_remove("AGENTGATE_CONFIG")
            .env("AGENTGATE_ALLOW_PRIVATE_PROFILE_HOSTS", "true")
            // Every client comes from 127.0.0.1, so the per-caller budgets
            // would refuse most of the load: this measures throughput, not
            // the limiter.
            .env("AGENTGATE_RATE_LIMITS__ENABLED", "false")
            .env("AGENTGATE_TRUSTED_AGENT_JWKS_FILE", data.join("user.jwks.json"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agentgate");
        Server { child, base: format!("http://127.0.0.1:{port}") }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/health` every millisecond; the time from `since` to the
    /// first 200.
    async fn first_answer(&self, http: &reqwest::Client, since: Instant) -> Duration {
        let deadline = since + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await {
                if r.status() == 200 {
                    return since.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the gateway did not answer within 120 s");
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seeds `data`: schema, demo catalog, 10k synthetic products, stock for
/// the checkout SKU, and the user's key as trusted agent JWKS.
async fn seed(data: &Path, user: &PrivateKey, products: usize) {
    let settings = agentgate::settings::Settings::for_data_dir(data);
    let app = agentgate::bootstrap::build(settings).await.expect("build");
    let synthetic = agentgate::adapters::catalog_import::synthetic_catalog(products, 7);
    app.catalog.import(synthetic).await.expect("import");
    let sku = agentgate::domain::Sku::parse(CHECKOUT_SKU).unwrap();
    agentgate::ports::Store::set_stock(app.store.as_ref(), &sku, 10_000_000).await.unwrap();
    let jwks = json!({"keys": [user.public().to_jwk()]}).to_string();
    std::fs::write(data.join("user.jwks.json"), jwks).unwrap();
}

/// A platform profile served on loopback, for the `UCP-Agent` header.
async fn platform() -> String {
    let registry: serde_json::Map<String, Value> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .map(|c| c.name)
        .filter(|n| *n != agentgate::ucp::profile::AP2_MANDATE)
        .map(|n| (n.to_owned(), json!([{"version": V4}])))
        .collect();
    let body = json!({"ucp": {"version": V4, "capabilities": registry}, "signing_keys": []});
    let router = axum::Router::new().route(
        "/.well-known/ucp",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("cache-control", "public, max-age=3600")], axum::Json(body)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("profile=\"http://{addr}/.well-known/ucp\"")
}

/// Sends one `tools/call` over MCP HTTP and returns the reply's body.
async fn call_tool(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    args: &Value,
) -> Option<bytes::Bytes> {
    let resp = http
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": name, "arguments": args}}))
        .send()
        .await
        .ok()?;
    resp.bytes().await.ok()
}

async fn mcp(http: &reqwest::Client, base: &str, name: &str, args: &Value) -> Option<Value> {
    let bytes = call_tool(http, base, name, args).await?;
    let body: Value = serde_json::from_slice(&bytes).ok()?;
    (body["result"]["isError"] == false).then(|| body["result"]["structuredContent"].clone())
}

/// What a timed MCP call needs from the reply: whether the tool succeeded
/// and, for a checkout, its status. Deserialising into these instead of a
/// `Value` skips the rest of the document without building it, so the
/// client spends its share of the two cores on requests rather than on
/// allocating every product of a search page.
#[derive(serde::Deserialize)]
struct Reply {
    result: Option<ToolReply>,
}

#[derive(serde::Deserialize)]
struct ToolReply {
    #[serde(rename = "isError", default)]
    is_error: bool,
    #[serde(rename = "structuredContent")]
    structured: Option<StatusOnly>,
}

#[derive(serde::Deserialize)]
struct StatusOnly {
    status: Option<String>,
}

/// A timed `tools/call`: `Some(status)` when the tool succeeded (`status`
/// is the structured result's `status`, if it has one), `None` otherwise.
async fn mcp_timed(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    args: &Value,
) -> Option<Option<String>> {
    let bytes = call_tool(http, base, name, args).await?;
    let reply: Reply = serde_json::from_slice(&bytes).ok()?;
    let result = reply.result?;
    (!result.is_error).then(|| result.structured.and_then(|s| s.status))
}

/// A ready checkout and its signed mandate chain, made before the timed
/// window.
async fn prepared(http: &reqwest::Client, base: &str, user: &PrivateKey) -> Option<Value> {
    let cart = json!({"action": "create", "variant_id": CHECKOUT_VARIANT});
    let cart = mcp(http, base, "manage_cart", &cart).await?;
    let terms = json!({"cart_id": cart["cart_id"], "buyer_email": "load@example.com",
           "ship_to_street": "1 Main St", "ship_to_city": "Springfield",
           "ship_to_postal_code": "62701", "ship_to_country": "US",
           "fulfillment_option_id": "us-standard"});
    let terms = mcp(http, base, "negotiate_terms", &terms).await?;
    let checkout_id = terms["checkout"]["checkout_id"].clone();
    let total = terms["checkout"]["totals"]["total"]["amount"].as_i64()?;
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
    .ok()?;
    let args =
        json!({"cart_id": cart["cart_id"], "checkout_id": checkout_id, "intent_mandate": intent});
    let terms = mcp(http, base, "negotiate_terms", &args).await?;
    let cart_mandate = terms["cart_mandate"]["token"].as_str()?.to_owned();
    let unverified = jws::decode_compact(&cart_mandate, Some(MANDATE_TYP)).ok()?;
    let claims: CartClaims = jws::parse_claims(unverified.payload_unverified()).ok()?;
    let payment = PaymentClaims::for_cart(
        &cart_mandate,
        &claims,
        "success_token",
        "CARD",
        now,
        time::Duration::minutes(10),
        &mut rand_core::OsRng,
    )
    .ok()?
    .sign(user)
    .ok()?;
    Some(json!({"checkout_id": checkout_id, "intent_mandate": intent, "cart_mandate": cart_mandate,
           "payment_mandate": payment, "idempotency_key": uuid::Uuid::new_v4().to_string()}))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    WellKnown,
    Scout,
    RestCreate,
    Execute,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::WellKnown => "well_known",
            Kind::Scout => "scout",
            Kind::RestCreate => "create",
            Kind::Execute => "execute",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::WellKnown => "GET /.well-known/ucp",
            Kind::Scout => "scout_inventory (MCP HTTP)",
            Kind::RestCreate => "UCP REST checkout create",
            Kind::Execute => "execute_checkout (MCP HTTP)",
        }
    }
}

struct Ctx {
    base: String,
    agent: String,
    prepared: Mutex<Vec<Value>>,
}

/// One request of `kind`; `Some(ok)` or `None` when there is nothing left
/// to send (prepared checkouts used up).
async fn one(kind: Kind, http: &reqwest::Client, ctx: &Ctx, i: u64) -> Option<bool> {
    let base = &ctx.base;
    Some(match kind {
        Kind::WellKnown => match http.get(format!("{base}/.well-known/ucp")).send().await {
            Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
            Err(_) => false,
        },
        Kind::Scout => {
            const QUERIES: [&str; 8] =
                ["linen", "shirt", "kitchen", "book", "", "wool socks", "mug", "lamp"];
            let args = json!({"query": QUERIES[(i % 8) as usize], "limit": 10});
            mcp_timed(http, base, "scout_inventory", &args).await.is_some()
        }
        Kind::RestCreate => {
            let body = json!({"line_items": [{"item": {"id": CHECKOUT_VARIANT}, "quantity": 1}],
                              "buyer": {"email": "load@example.com"}});
            let r = http
                .post(format!("{base}/ucp/v1/checkout-sessions"))
                .header("ucp-agent", &ctx.agent)
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&body)
                .send()
                .await;
            match r {
                Ok(r) => {
                    let ok = r.status().is_success();
                    ok && r.bytes().await.is_ok()
                }
                Err(_) => false,
            }
        }
        Kind::Execute => {
            let args = ctx.prepared.lock().unwrap().pop()?;
            let status = mcp_timed(http, base, "execute_checkout", &args).await;
            status.flatten().as_deref() == Some("paid")
        }
    })
}

#[derive(Clone)]
struct PhaseResult {
    name: &'static str,
    clients: u64,
    requests: usize,
    secs: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    peak_rss_kb: u64,
    /// CPU seconds (user + system) the server and this process used.
    server_cpu_s: f64,
    client_cpu_s: f64,
    /// Instructions per request, under `LOADGEN_CALLGRIND`.
    instructions_per_request: Option<f64>,
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count from after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `callgrind_control` with `args` against `pid`.
fn callgrind_control(args: &[&str], pid: u32) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("callgrind_control");
    assert!(status.success(), "callgrind_control {args:?} failed");
}

/// The `totals:` (instructions) of the newest callgrind dump in `dir`.
fn newest_dump_total(dir: &Path) -> Option<f64> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("callgrind.out"))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())?;
    let text = std::fs::read_to_string(newest.path()).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

async fn phase(
    kind: Kind,
    ctx: Arc<Ctx>,
    clients: u64,
    secs: u64,
    max: u64,
    pid: u32,
    callgrind: Option<&Path>,
) -> PhaseResult {
    if callgrind.is_some() {
        callgrind_control(&["--zero"], pid);
    }
    let (server_cpu0, client_cpu0) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (ctx, stop, sent, errors) = (ctx.clone(), stop.clone(), sent.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let i = sent.fetch_add(1, Ordering::Relaxed);
                if i >= max {
                    break;
                }
                let t = Instant::now();
                match one(kind, &http, &ctx, i).await {
                    None => break,
                    Some(ok) => {
                        latencies.push(t.elapsed());
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu_s = cpu_seconds(pid) - server_cpu0;
    let client_cpu_s = cpu_seconds(std::process::id()) - client_cpu0;
    let instructions_per_request = callgrind.and_then(|dir| {
        callgrind_control(&[&format!("--dump={}", kind.key())], pid);
        // The dump is written by the server process; give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        newest_dump_total(dir).map(|total| total / all.len().max(1) as f64)
    });
    all.sort();
    PhaseResult {
        name: kind.name(),
        clients,
        requests: all.len(),
        secs: elapsed,
        per_sec: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        errors: errors.load(Ordering::Relaxed),
        peak_rss_kb: proc_kb(pid, "VmHWM:"),
        server_cpu_s,
        client_cpu_s,
        instructions_per_request,
    }
}

/// The cost of one ES256 sign and one verify, measured here, in µs, with
/// the gateway's own implementation (`Es256Signer::sign_es256`,
/// `jws::verify_es256`).
fn crypto_costs() -> (f64, f64) {
    use agentgate::ap2::jws::Es256Signer as _;
    let key = PrivateKey::generate(&mut rand_core::OsRng);
    let verifying = *key.public().verifying_key();
    let msg = [7u8; 256];
    let n = 2000;
    let t = Instant::now();
    let mut sig = key.sign_es256(&msg).expect("sign");
    for _ in 0..n {
        sig = key.sign_es256(std::hint::black_box(&msg)).expect("sign");
    }
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        jws::verify_es256(&verifying, std::hint::black_box(&msg), &sig).expect("verify");
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    (sign_us, verify_us)
}

/// The crypto floor as the machine delivers it: one thread per core, all
/// at once, each doing the ES256 work of `per_thread` checkouts (3
/// verifies and 1 sign each). Returns checkouts per second. Dividing the
/// single-thread cost by the core count assumes the cores scale
/// perfectly, which shared vCPUs need not do; this measures instead.
fn parallel_floor(threads: usize, per_thread: usize) -> f64 {
    use agentgate::ap2::jws::Es256Signer as _;
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let key = PrivateKey::generate(&mut rand_core::OsRng);
                let verifying = *key.public().verifying_key();
                let msg = [7u8; 256];
                let sig = key.sign_es256(&msg).expect("sign");
                barrier.wait();
                for _ in 0..per_thread {
                    for _ in 0..VERIFIES_PER_CHECKOUT as usize {
                        jws::verify_es256(&verifying, std::hint::black_box(&msg), &sig)
                            .expect("verify");
                    }
                    for _ in 0..SIGNS_PER_CHECKOUT as usize {
                        let _ = key.sign_es256(std::hint::black_box(&msg)).expect("sign");
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for w in workers {
        w.join().expect("crypto thread");
    }
    (threads * per_thread) as f64 / t.elapsed().as_secs_f64()
}

fn server_binary() -> PathBuf {
    let built = std::env::var_os("AGENTGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().unwrap().parent().unwrap().join("agentgate"));
    // A private copy: other builds sharing the target dir may replace it.
    let copy = std::env::temp_dir().join(format!("agentgate-loadgen-{}", std::process::id()));
    std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    copy
}

fn main() {
    let secs = env_or("LOADGEN_SECS", 5);
    let max = env_or("LOADGEN_MAX", 200_000);
    let clients = env_or("LOADGEN_CLIENTS", 64);
    let checkouts = env_or("LOADGEN_CHECKOUTS", 2000);
    let products = env_or("LOADGEN_PRODUCTS", 10_000) as usize;
    let callgrind = std::env::var_os("LOADGEN_CALLGRIND").map(PathBuf::from);
    if let Some(dir) = &callgrind {
        std::fs::create_dir_all(dir).unwrap();
    }
    let phases: Vec<Kind> = [Kind::WellKnown, Kind::Scout, Kind::RestCreate, Kind::Execute]
        .into_iter()
        .filter(|k| {
            std::env::var("LOADGEN_PHASES")
                .map(|p| p.split(',').any(|n| n.trim() == k.key()))
                .unwrap_or(true)
        })
        .collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let bin = server_binary();
    let data =
        std::env::temp_dir().join(format!("agentgate-loadgen-data-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data).unwrap();
    let user = Arc::new(PrivateKey::generate(&mut rand_core::OsRng));

    let out = runtime.block_on(async {
        seed(&data, &user, products).await;
        let http = reqwest::Client::new();
        let t0 = Instant::now();
        let server = Server::start(&bin, &data, callgrind.as_deref());
        let first_answer = server.first_answer(&http, t0).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss = proc_kb(server.pid(), "VmRSS:");
        let pid = server.pid();
        let agent = platform().await;
        let ctx =
            Arc::new(Ctx { base: server.base.clone(), agent, prepared: Mutex::new(Vec::new()) });
        // Warm-up (untimed).
        for i in 0..200 {
            one(Kind::Scout, &http, &ctx, i).await;
            one(Kind::WellKnown, &http, &ctx, i).await;
        }
        let mut results = Vec::new();
        for kind in [Kind::WellKnown, Kind::Scout, Kind::RestCreate] {
            if phases.contains(&kind) {
                let cg = callgrind.as_deref();
                results.push(phase(kind, ctx.clone(), clients, secs, max, pid, cg).await);
            }
        }
        if !phases.contains(&Kind::Execute) {
            server.stop();
            return (first_answer, idle_rss, results);
        }
        // Checkouts and mandates made outside the timed window.
        let prep_started = Instant::now();
        let mut preps = Vec::new();
        for w in 0..16u64 {
            let (base, user, http) = (ctx.base.clone(), user.clone(), http.clone());
            let n = checkouts / 16 + u64::from(w < checkouts % 16);
            preps.push(tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..n {
                    if let Some(p) = prepared(&http, &base, &user).await {
                        v.push(p);
                    }
                }
                v
            }));
        }
        for p in preps {
            let v = p.await.unwrap();
            ctx.prepared.lock().unwrap().extend(v);
        }
        let prepared_n = ctx.prepared.lock().unwrap().len();
        eprintln!(
            "prepared {prepared_n} checkouts in {:.1} s",
            prep_started.elapsed().as_secs_f64()
        );
        let cg = callgrind.as_deref();
        results.push(phase(Kind::Execute, ctx.clone(), clients, secs * 4, max, pid, cg).await);
        server.stop();
        (first_answer, idle_rss, results)
    });
    let (first_answer, idle_rss, results) = out;
    let (sign_us, verify_us) = crypto_costs();
    let per_checkout_us = VERIFIES_PER_CHECKOUT * verify_us + SIGNS_PER_CHECKOUT * sign_us;
    let ideal_floor = cores * 1e6 / per_checkout_us;
    let floor = parallel_floor(cores as usize, 500);
    let exec = results.iter().find(|r| r.name == Kind::Execute.name());
    let ratio = exec.map_or(0.0, |e| e.per_sec / floor);
    // How much of the server's own CPU went to the ES256 work it cannot
    // avoid: a ratio that does not depend on how much of the machine the
    // load generator took.
    let crypto_share = exec.map_or(0.0, |e| {
        let server_us_per_checkout = e.server_cpu_s * 1e6 / e.requests.max(1) as f64;
        per_checkout_us / server_us_per_checkout
    });

    println!(
        "{:<30} {:>7} {:>9} {:>10} {:>9} {:>9} {:>7} {:>10} {:>8} {:>8} {:>12}",
        "phase",
        "clients",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "peak RSS",
        "srv cpu",
        "cli cpu",
        "instr/req"
    );
    for r in &results {
        // CPU shares of the whole machine (all cores) over the phase.
        let share = |cpu: f64| 100.0 * cpu / (r.secs * cores);
        println!(
            "{:<30} {:>7} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>7} MB {:>7.0}% {:>7.0}% {:>12}",
            r.name,
            r.clients,
            r.requests,
            r.per_sec,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.peak_rss_kb / 1024,
            share(r.server_cpu_s),
            share(r.client_cpu_s),
            r.instructions_per_request.map_or("-".to_owned(), |i| format!("{i:.0}"))
        );
    }
    println!(
        "time to first answer ({products} synthetic products): {:.1} ms",
        first_answer.as_secs_f64() * 1e3
    );
    println!("idle RSS: {:.1} MB", idle_rss as f64 / 1024.0);
    println!(
        "crypto floor: ES256 sign {sign_us:.1} us, verify {verify_us:.1} us; {VERIFIES_PER_CHECKOUT} verify + {SIGNS_PER_CHECKOUT} sign per checkout = {per_checkout_us:.0} us; {cores} cores ideal {ideal_floor:.0}/s, measured on all cores at once {floor:.0} checkouts/s"
    );
    println!("execute_checkout / crypto floor: {:.0}%", ratio * 100.0);
    println!("ES256 share of the server's CPU per checkout: {:.0}%", crypto_share * 100.0);
    let json = json!({
        "cores": cores,
        "products": products,
        "time_to_first_answer_ms": first_answer.as_secs_f64() * 1e3,
        "idle_rss_kb": idle_rss,
        "crypto": {"sign_us": sign_us, "verify_us": verify_us, "floor_per_sec": floor,
                   "ideal_floor_per_sec": ideal_floor, "execute_ratio": ratio,
                   "server_cpu_crypto_share": crypto_share},
        "phases": results.iter().map(|r| json!({
            "name": r.name, "clients": r.clients, "requests": r.requests, "secs": r.secs,
            "per_sec": r.per_sec, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors,
            "peak_rss_kb": r.peak_rss_kb, "server_cpu_s": r.server_cpu_s,
            "client_cpu_s": r.client_cpu_s,
            "instructions_per_request": r.instructions_per_request})).collect::<Vec<_>>(),
    });
    println!("{json}");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&bin);
}
