//! The Lambda entry point run the way Lambda runs it: the real binary,
//! started as `bootstrap` with no arguments, talking to a stand-in of the
//! Lambda Runtime API served here on loopback, with its state in a fresh
//! DynamoDB table on the stand-in of `tests/dynamodb_store.rs`. API Gateway
//! (HTTP API, payload 2.0) events go in through `invocation/next`; the
//! answers come back through `invocation/{id}/response`.
//!
//! It also measures the local cold start: from spawning the process to the
//! first answered event (it prints the figure).

mod support;

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

/// The host name API Gateway would put in `Host` for this test's API.
const API_HOST: &str = "abc123.execute-api.us-east-1.amazonaws.com";

/// What the function sent back for one invocation.
#[derive(Debug)]
struct Answer {
    request_id: String,
    /// `response` or `error`.
    kind: &'static str,
    body: Value,
}

/// The Runtime API stand-in: a queue of events, and a channel of answers.
#[derive(Clone)]
struct Runtime {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    answers: mpsc::UnboundedSender<Answer>,
}

/// `GET /2018-06-01/runtime/invocation/next`: a long poll that answers with
/// the next queued event and the headers the runtime client needs.
async fn next(State(rt): State<Runtime>) -> impl IntoResponse {
    loop {
        let notified = rt.ready.notified();
        let event = rt.events.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
            let deadline = deadline.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
            let mut headers = HeaderMap::new();
            let mut set = |name: &'static str, value: String| {
                headers.insert(name, HeaderValue::from_str(&value).unwrap());
            };
            set("lambda-runtime-aws-request-id", id);
            set("lambda-runtime-deadline-ms", deadline.to_string());
            set(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:agentgate".into(),
            );
            set("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into());
            return (StatusCode::OK, headers, event.to_string());
        }
        notified.await;
    }
}

async fn respond(State(rt): State<Runtime>, Path(id): Path<String>, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = rt.answers.send(Answer { request_id: id, kind: "response", body });
    StatusCode::ACCEPTED
}

async fn fail(State(rt): State<Runtime>, Path(id): Path<String>, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = rt.answers.send(Answer { request_id: id, kind: "error", body });
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Runtime>, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = rt.answers.send(Answer { request_id: "init".into(), kind: "error", body });
    StatusCode::ACCEPTED
}

/// Starts the stand-in on a free loopback port; returns its address, the
/// runtime handle and the receiver of answers.
async fn start_runtime() -> (String, Runtime, mpsc::UnboundedReceiver<Answer>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rt = Runtime { events: Arc::default(), ready: Arc::default(), answers: tx };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rt, rx)
}

/// An API Gateway HTTP API (payload 2.0) event.
fn http_event(method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut headers = json!({
        "host": API_HOST,
        "accept": "application/json, text/event-stream",
        "user-agent": "lambda-local-test",
    });
    if body.is_some() {
        headers["content-type"] = json!("application/json");
    }
    json!({
        "version": "2.0",
        "routeKey": format!("ANY {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": API_HOST,
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "lambda-local-test"
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": format!("ANY {path}"),
            "stage": "$default",
            "time": "21/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_000_000_000_i64
        },
        "body": body.map(Value::to_string),
        "isBase64Encoded": false
    })
}

/// The function's process; killed when the test ends, pass or fail. Its
/// log goes to a file, shown if it stops answering.
struct Function {
    child: Child,
    log: std::path::PathBuf,
}

impl Function {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Queues `event` and waits for its answer, failing early (with the
    /// function's log) if the process exits instead.
    async fn invoke(
        &mut self,
        rt: &Runtime,
        answers: &mut mpsc::UnboundedReceiver<Answer>,
        event: Value,
    ) -> Answer {
        let id = uuid::Uuid::new_v4().to_string();
        rt.events.lock().unwrap().push_back((id.clone(), event));
        rt.ready.notify_waiters();
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            tokio::select! {
                answer = answers.recv() => break answer.expect("the stand-in is running"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        panic!("the function exited ({status}) instead of answering:\n{}", self.log());
                    }
                    assert!(Instant::now() < deadline, "no answer within 60 s:\n{}", self.log());
                }
            }
        };
        assert_eq!(answer.kind, "response", "{answer:?}\n{}", self.log());
        assert_eq!(answer.request_id, id, "{answer:?}");
        answer
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON body of an API Gateway response.
fn json_body(answer: &Answer) -> Value {
    let body = answer.body["body"].as_str().unwrap_or_default();
    assert_eq!(answer.body["isBase64Encoded"], json!(false), "{:?}", answer.body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_answers_api_gateway_events() {
    let Some((_client, table)) = support::dynamodb_table("agentgate-lambda").await else { return };
    let endpoint = table.endpoint_url.clone().expect("the stand-in's endpoint");
    let dir = tempfile::tempdir().unwrap();
    // Lambda starts an executable named `bootstrap` with no arguments.
    // `AGENTGATE_BOOTSTRAP_BIN` swaps in another build of the binary (a
    // release build, to measure its cold start).
    let binary = std::env::var_os("AGENTGATE_BOOTSTRAP_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_agentgate").into());
    // A copy rather than a link: the build a link points at can be
    // replaced while the test runs when a target dir is shared.
    let bootstrap = dir.path().join("bootstrap");
    std::fs::copy(&binary, &bootstrap).unwrap();
    let key = agentgate::ap2::PrivateKey::generate(&mut rand_core::OsRng);
    let pem = key.export_pkcs8_pem().unwrap();
    let (runtime_api, rt, mut answers) = start_runtime().await;

    let spawn = |instance: &str| {
        // Each instance has its own disk, as Lambda instances do.
        let log = dir.path().join(format!("{instance}.log"));
        let child = Command::new(&bootstrap)
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "agentgate")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AGENTGATE_STORE", "dynamodb")
            .env("AGENTGATE_DYNAMODB__TABLE", &table.table)
            .env("AGENTGATE_DYNAMODB__ENDPOINT_URL", &endpoint)
            .env("AGENTGATE_DATA_DIR", dir.path().join(instance))
            .env("AGENTGATE_PUBLIC_BASE_URL", format!("https://{API_HOST}"))
            .env("AGENTGATE_SIGNING_KEY", pem.expose_secret())
            .env("AGENTGATE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Function { child, log }
    };
    // The cold start: spawn to the first answered event (the UCP profile),
    // and the part of it inside the process, from its own log.
    let cold_start = |function: &Function, started: Instant, what: &str| {
        let elapsed = started.elapsed();
        let init = function.log().lines().find(|l| l.contains("agentgate lambda ready")).map(|l| {
            serde_json::from_str::<Value>(l).map(|v| v["init_ms"].clone()).unwrap_or_default()
        });
        eprintln!(
            "local cold start, {what}: {} ms from spawn to the first answer ({} ms of it \
             building the app)",
            elapsed.as_millis(),
            init.unwrap_or_default()
        );
        elapsed
    };

    let started = Instant::now();
    let mut function = spawn("first");
    let answer =
        function.invoke(&rt, &mut answers, http_event("GET", "/.well-known/ucp", None)).await;
    let first_cold_start = cold_start(&function, started, "new table (seeds stock)");
    assert_eq!(answer.body["statusCode"], json!(200), "{:?}", answer.body);
    let profile = json_body(&answer);
    assert!(profile["ucp"]["version"].is_string(), "{profile}");
    let links = profile.to_string();
    assert!(links.contains(&format!("https://{API_HOST}")), "base URL from settings: {links}");
    let cache = answer.body["headers"]["cache-control"].as_str().unwrap_or_default();
    assert!(cache.contains("max-age"), "{:?}", answer.body["headers"]);

    // MCP over the same instance: a stateless 2026-07-28 `tools/list`
    // needs no session, which is what Lambda can offer.
    let list = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "lambda-local-test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}
        }}
    });
    let mut event = http_event("POST", "/mcp", Some(&list));
    event["headers"]["mcp-protocol-version"] = json!("2026-07-28");
    event["headers"]["mcp-method"] = json!("tools/list");
    let answer = function.invoke(&rt, &mut answers, event).await;
    assert_eq!(answer.body["statusCode"], json!(200), "{:?}", answer.body);
    let tools = json_body(&answer);
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"scout_inventory") && names.contains(&"execute_checkout"), "{tools}");

    // /health proves the next invocation reuses the instance and reaches
    // DynamoDB.
    let answer = function.invoke(&rt, &mut answers, http_event("GET", "/health", None)).await;
    assert_eq!(answer.body["statusCode"], json!(200), "{:?}", answer.body);
    let health = json_body(&answer);
    assert_eq!(health["store"], json!("ok"), "{health}");

    // A POST with a JSON body, through the UCP REST binding.
    let search = json!({"query": "cotton tee"});
    let event = http_event("POST", "/ucp/v1/catalog/search", Some(&search));
    let answer = function.invoke(&rt, &mut answers, event).await;
    assert_eq!(answer.body["statusCode"], json!(200), "{:?}", answer.body);
    let found = json_body(&answer);
    assert!(found["products"].as_array().is_some_and(|p| !p.is_empty()), "{found}");

    // A path the router does not know is the gateway's own 404 body.
    let answer = function.invoke(&rt, &mut answers, http_event("GET", "/nowhere", None)).await;
    assert_eq!(answer.body["statusCode"], json!(404), "{:?}", answer.body);
    assert_eq!(json_body(&answer)["error"]["code"], json!("not_found"));
    assert!(first_cold_start < Duration::from_secs(60));

    // A second instance on the same table: stock is seeded already, so its
    // cold start is the usual one. It serves the same key and the same
    // DynamoDB state.
    drop(function);
    let started = Instant::now();
    let mut second = spawn("second");
    let answer =
        second.invoke(&rt, &mut answers, http_event("GET", "/.well-known/jwks.json", None)).await;
    cold_start(&second, started, "table already seeded");
    assert_eq!(answer.body["statusCode"], json!(200), "{:?}", answer.body);
    let jwks = json_body(&answer);
    assert_eq!(jwks["keys"][0]["kid"], json!(key.kid()), "every instance signs with one key");
}

/// Outside Lambda the command says so and exits, instead of the runtime
/// client's panic.
#[test]
fn lambda_outside_lambda_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .arg("lambda")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("AGENTGATE_STORE", "dynamodb")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AWS_LAMBDA_RUNTIME_API"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
