//! MCP tool arguments: arbitrary text as the `arguments` of a `tools/call`
//! to every tool of both MCP endpoints (`/mcp`, the gateway tools, and
//! `/ucp/mcp`, the UCP binding), sent through the real router of an app on
//! a fresh SQLite data dir, in-process.
//!
//! The first byte picks the tool (from what `tools/list` answers), the rest
//! is put verbatim where the arguments object goes, so malformed JSON-RPC
//! is fuzzed too. A panic in a handler is caught by the server and answered
//! with a 500, so the oracle is the answer: never a 5xx, and a 200 is a
//! JSON-RPC result or error.
//!
//! Nothing leaves the machine: rate limits are off (they would turn most
//! calls into refusals), and every outbound HTTP request (a platform
//! profile URL in the arguments) goes through a proxy on a closed loopback
//! port.
#![no_main]

use agentgate::settings::Settings;
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::OnceLock;
use tower::ServiceExt;

struct Edge {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// (endpoint, tool name) for every tool both endpoints list.
    tools: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

fn post(
    edge_rt: &tokio::runtime::Runtime,
    router: &Router,
    uri: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    edge_rt.block_on(async {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            // The MCP transport refuses requests without an allowed Host
            // (DNS rebinding protection); a loopback client sends this.
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(Body::from(body))
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20).await.expect("body");
        (status, bytes.to_vec())
    })
}

fn edge() -> &'static Edge {
    static EDGE: OnceLock<Edge> = OnceLock::new();
    EDGE.get_or_init(|| {
        // Set before any thread starts: reqwest reads these when a client
        // is built. Port 9 on loopback refuses at once.
        std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:9");
        std::env::set_var("HTTP_PROXY", "http://127.0.0.1:9");
        std::env::remove_var("NO_PROXY");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let router = runtime.block_on(async {
            let mut settings = Settings::for_data_dir(dir.path());
            settings.rate_limits.enabled = false;
            let app = agentgate::bootstrap::build(settings).await.expect("app");
            agentgate::http::app(app.state)
        });
        let mut tools = Vec::new();
        for endpoint in ["/mcp", "/ucp/mcp"] {
            let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
            let (status, bytes) = post(&runtime, &router, endpoint, list.to_string().into_bytes());
            assert_eq!(status, 200, "{endpoint} tools/list: {}", String::from_utf8_lossy(&bytes));
            let body: Value = serde_json::from_slice(&bytes).expect("tools/list is JSON");
            for tool in body["result"]["tools"].as_array().expect("a tool list") {
                tools.push((endpoint, tool["name"].as_str().expect("a name").to_owned()));
            }
        }
        assert!(tools.len() >= 5, "{tools:?}");
        Edge { runtime, router, tools, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, args)) = data.split_first() else { return };
    let Ok(args) = std::str::from_utf8(args) else { return };
    let edge = edge();
    let (endpoint, tool) = &edge.tools[usize::from(pick) % edge.tools.len()];
    let name = serde_json::to_string(tool).expect("a string");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":{name},"arguments":{args}}}}}"#
    );
    let (status, bytes) = post(&edge.runtime, &edge.router, endpoint, body.into_bytes());
    assert!(status < 500, "{endpoint} {tool}: {status}: {}", String::from_utf8_lossy(&bytes));
    if status == 200 {
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("{endpoint} {tool}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
        });
        assert!(body["result"].is_object() || body["error"]["code"].is_i64(), "{body}");
    }
});
