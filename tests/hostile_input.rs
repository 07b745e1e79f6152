//! Hostile input at the edges, as property tests with bounded case counts
//! (they run in CI): arbitrary bytes, arbitrary JSON and valid requests with
//! one field replaced by arbitrary JSON, sent through the real router to
//! the UCP REST endpoints and as MCP tool arguments. Nothing panics (the
//! catch-panic layer would answer 500), and every refusal is a JSON body in
//! the standard shape: UCP `messages[]` with string codes, or a JSON-RPC
//! error / tool error.

use agentgate::settings::Settings;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const V4: &str = "2026-04-08";

struct Edge {
    runtime: tokio::runtime::Runtime,
    router: Router,
    agent: String,
    _platform: MockServer,
    _dir: tempfile::TempDir,
}

fn edge() -> Edge {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router, platform) = runtime.block_on(async {
        let mut settings = Settings::for_data_dir(dir.path());
        settings.allow_private_profile_hosts = true;
        let app = agentgate::bootstrap::build(settings).await.unwrap();
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
                    .set_body_json(json!({"ucp": {"version": V4, "capabilities": registry},
                                          "signing_keys": []}))
                    .insert_header("Cache-Control", "public, max-age=300"),
            )
            .mount(&platform)
            .await;
        (agentgate::http::app(app.state), platform)
    });
    let agent = format!("profile=\"{}/.well-known/ucp\"", platform.uri());
    Edge { runtime, router, agent, _platform: platform, _dir: dir }
}

impl Edge {
    fn send(&self, m: Method, uri: &str, mcp: bool, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.runtime.block_on(async {
            let mut req = Request::builder()
                .method(m)
                .uri(uri)
                .header("content-type", "application/json")
                .header("idempotency-key", uuid::Uuid::new_v4().to_string());
            if mcp {
                // A loopback Host: without one the MCP transport refuses
                // the request before any tool sees its arguments.
                req = req
                    .header("host", "localhost")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-11-25");
            } else {
                req = req.header("ucp-agent", &self.agent);
            }
            let resp = self.router.clone().oneshot(req.body(Body::from(body)).unwrap()).await;
            let resp = resp.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20).await.unwrap();
            (status, bytes.to_vec())
        })
    }
}

/// A UCP REST answer: never a 5xx; a refusal is the error envelope
/// (`error.code`, `error.message`) or carries `messages[]` with string codes.
fn assert_ucp_shape(status: u16, bytes: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "status {status}: {}", String::from_utf8_lossy(bytes));
    if status >= 400 {
        let body: Value = serde_json::from_slice(bytes).map_err(|e| {
            TestCaseError::fail(format!(
                "{status} not JSON ({e}): {}",
                String::from_utf8_lossy(bytes)
            ))
        })?;
        // The transport-level error envelope, or UCP messages.
        if body["error"].is_object() {
            prop_assert!(body["error"]["code"].is_string(), "{status}: {body}");
            prop_assert!(body["error"]["message"].is_string(), "{status}: {body}");
        } else {
            let messages = body["messages"].as_array();
            prop_assert!(messages.is_some_and(|m| !m.is_empty()), "{status}: {body}");
            for m in messages.unwrap() {
                prop_assert!(m["code"].is_string(), "{status}: {body}");
            }
        }
    }
    Ok(())
}

/// An MCP answer: never a 5xx; a JSON-RPC result or error.
fn assert_mcp_shape(status: u16, bytes: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "status {status}: {}", String::from_utf8_lossy(bytes));
    if status == 200 {
        let body: Value = serde_json::from_slice(bytes).map_err(|e| {
            TestCaseError::fail(format!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
        })?;
        prop_assert!(body["result"].is_object() || body["error"]["code"].is_i64(), "{body}");
    }
    Ok(())
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_create() -> Value {
    json!({
        "line_items": [{"item": {"id": "v-organic-cotton-tee-black"}, "quantity": 1}],
        "buyer": {"email": "ada@example.com"},
        "fulfillment": {"methods": [{"type": "shipping", "destinations": [{
            "street_address": "1 Main St", "address_locality": "Springfield",
            "address_region": "IL", "postal_code": "62701", "address_country": "US"}],
            "groups": [{"selected_option_id": "us-standard"}]}]},
        "payment": {"instruments": [{"id": "i1", "handler_id": "sandbox", "type": "card",
            "credential": {"type": "token", "token": "success_token"}}]},
    })
}

/// Replaces the value at a path chosen by `pick` (walking objects and
/// arrays) with `with`.
fn mutate(mut v: Value, pick: &[usize], with: Value) -> Value {
    fn go(v: &mut Value, pick: &[usize], with: Value) {
        let Some((first, rest)) = pick.split_first() else {
            *v = with;
            return;
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().nth(first % m.len()).unwrap().clone();
                go(m.get_mut(&key).unwrap(), rest, with)
            }
            Value::Array(a) if !a.is_empty() => {
                let n = a.len();
                go(&mut a[first % n], rest, with)
            }
            _ => *v = with,
        }
    }
    go(&mut v, pick, with);
    v
}

const UCP_ROUTES: [(&str, &str); 5] = [
    ("POST", "/ucp/v1/checkout-sessions"),
    ("POST", "/ucp/v1/carts"),
    ("POST", "/ucp/v1/catalog/search"),
    ("POST", "/ucp/v1/catalog/lookup"),
    ("POST", "/ucp/v1/catalog/product"),
];

const MCP_TOOLS: [&str; 5] =
    ["scout_inventory", "manage_cart", "negotiate_terms", "execute_checkout", "track_order"];

fn config() -> ProptestConfig {
    ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn ucp_rest_survives_arbitrary_bytes_and_json() {
    let edge = edge();
    proptest!(config(), |(route in 0..UCP_ROUTES.len(),
                          raw in prop::collection::vec(any::<u8>(), 0..256),
                          value in arb_json(),
                          use_raw in any::<bool>())| {
        let (_, uri) = UCP_ROUTES[route];
        let body = if use_raw { raw } else { value.to_string().into_bytes() };
        let (status, bytes) = edge.send(Method::POST, uri, false, body);
        assert_ucp_shape(status, &bytes)?;
    });
}

#[test]
fn ucp_rest_survives_a_valid_create_with_one_field_replaced() {
    let edge = edge();
    proptest!(config(), |(pick in prop::collection::vec(any::<usize>(), 0..7), with in arb_json())| {
        let body = mutate(valid_create(), &pick, with).to_string().into_bytes();
        let (status, bytes) = edge.send(Method::POST, "/ucp/v1/checkout-sessions", false, body);
        assert_ucp_shape(status, &bytes)?;
    });
}

#[test]
fn ucp_rest_survives_hostile_path_ids() {
    let edge = edge();
    // Percent-escapes that decode to invalid UTF-8 get axum's plain-text
    // 400 from the path extractor, not the JSON envelope (a known gap, see
    // docs/testing.md), so ids here are unescaped.
    proptest!(config(), |(id in "[a-zA-Z0-9_.~-]{0,80}")| {
        for uri in [format!("/ucp/v1/checkout-sessions/{id}"), format!("/ucp/v1/orders/{id}")] {
            let (status, bytes) = edge.send(Method::GET, &uri, false, Vec::new());
            prop_assert!(status < 500, "{uri}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        let uri = format!("/ucp/v1/checkout-sessions/{id}/complete");
        let (status, bytes) = edge.send(Method::POST, &uri, false, b"{}".to_vec());
        assert_ucp_shape(status, &bytes)?;
    });
}

/// The MCP requests of these tests reach the tools: a valid call gets a
/// tool result, not a transport refusal. Without it the properties below
/// could pass on refusals alone.
fn assert_mcp_reaches_tools(edge: &Edge) {
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "scout_inventory", "arguments": {"query": "tee"}}});
    let (status, bytes) = edge.send(Method::POST, "/mcp", true, call.to_string().into_bytes());
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert!(body["result"]["content"].is_array(), "{body}");
}

#[test]
fn mcp_tools_survive_arbitrary_arguments() {
    let edge = edge();
    assert_mcp_reaches_tools(&edge);
    proptest!(config(), |(tool in 0..MCP_TOOLS.len(), args in arb_json())| {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": MCP_TOOLS[tool], "arguments": args}});
        let (status, bytes) = edge.send(Method::POST, "/mcp", true, call.to_string().into_bytes());
        assert_mcp_shape(status, &bytes)?;
    });
}

#[test]
fn mcp_survives_arbitrary_bytes() {
    let edge = edge();
    assert_mcp_reaches_tools(&edge);
    proptest!(config(), |(raw in prop::collection::vec(any::<u8>(), 0..256))| {
        let (status, bytes) = edge.send(Method::POST, "/mcp", true, raw);
        prop_assert!(status < 500, "{status}: {}", String::from_utf8_lossy(&bytes));
    });
}
