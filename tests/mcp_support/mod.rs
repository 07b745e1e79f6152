//! A real gateway on a loopback port and a minimal MCP client over
//! streamable HTTP, for the MCP integration tests.
//!
//! The client speaks raw JSON-RPC with reqwest on purpose: the tests check
//! the wire (headers, status codes, exact result shapes) for each protocol
//! revision, which a full SDK client would hide.
#![allow(dead_code)]

use serde_json::{json, Value};

use agentgate::settings::Settings;

/// The protocol revisions the gateway must speak.
pub const REVISIONS: [&str; 3] = ["2025-06-18", "2025-11-25", "2026-07-28"];

pub struct Server {
    pub base: String,
    pub app_gateway: std::sync::Arc<agentgate::gateway::Gateway>,
    pub payments: std::sync::Arc<agentgate::adapters::payments::SandboxPayments>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the whole HTTP app on a free loopback port with a fresh data dir.
pub async fn start() -> Server {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Server {
    start_wrapped(adjust, |router| router).await
}

/// Starts the app with `wrap` applied to its router, e.g. a layer that
/// authenticates callers the way the auth layer will.
pub async fn start_wrapped(
    adjust: impl FnOnce(&mut Settings),
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_data_dir(dir.path());
    adjust(&mut settings);
    let app = agentgate::bootstrap::build(settings).await.expect("build");
    let gateway = app.gateway.clone();
    let payments = app.payments.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = wrap(agentgate::http::app(app.state));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Server {
        base: format!("http://{addr}"),
        app_gateway: gateway,
        payments,
        stop: Some(tx),
        _dir: dir,
    }
}

/// One MCP client bound to an endpoint and a protocol revision.
pub struct Client {
    http: reqwest::Client,
    headers: Vec<(String, String)>,
    pub url: String,
    pub version: &'static str,
    next_id: std::sync::atomic::AtomicU64,
}

/// A JSON-RPC exchange as seen on the wire.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Client {
    /// Connects with `version`: the `initialize` handshake (plus the
    /// `initialized` notification) for revisions that have one, nothing
    /// for 2026-07-28, whose requests carry their own metadata.
    pub async fn connect(url: &str, version: &'static str) -> Client {
        Self::connect_with_headers(url, version, &[]).await
    }

    /// [`Client::connect`], sending `headers` on every request.
    pub async fn connect_with_headers(
        url: &str,
        version: &'static str,
        headers: &[(&str, &str)],
    ) -> Client {
        let client = Client {
            http: reqwest::Client::new(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            url: url.to_owned(),
            version,
            next_id: 1.into(),
        };
        if version < "2026-07-28" {
            let reply = client
                .post(
                    "initialize",
                    json!({
                        "protocolVersion": version,
                        "capabilities": {},
                        "clientInfo": {"name": "agentgate-tests", "version": "1"}
                    }),
                    None,
                )
                .await;
            assert_eq!(reply.status, 200, "initialize: {}", reply.body);
            assert_eq!(reply.body["result"]["protocolVersion"], version, "{}", reply.body);
            let mut note = client
                .http
                .post(&client.url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", version);
            for (k, v) in &client.headers {
                note = note.header(k.as_str(), v.as_str());
            }
            let note = note
                .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .send()
                .await
                .expect("notification sends");
            assert_eq!(note.status().as_u16(), 202, "notifications are answered 202");
        }
        client
    }

    fn meta(&self) -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": self.version,
            "io.modelcontextprotocol/clientInfo": {"name": "agentgate-tests", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}
        })
    }

    /// Sends one request; `name` fills the `Mcp-Name` header 2026-07-28
    /// requires for tools/call, prompts/get and resources/read.
    pub async fn post(&self, method: &str, mut params: Value, name: Option<&str>) -> Reply {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if method != "initialize" {
            req = req.header("mcp-protocol-version", self.version);
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if self.version >= "2026-07-28" {
            req = req.header("mcp-method", method);
            if let Some(name) = name {
                req = req.header("mcp-name", name);
            }
            if let Some(obj) = params.as_object_mut() {
                obj.insert("_meta".into(), self.meta());
            }
        }
        let resp = req
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .expect("request sends");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, content_type, body }
    }

    /// A request that must succeed; returns its `result`.
    pub async fn request(&self, method: &str, params: Value, name: Option<&str>) -> Value {
        let reply = self.post(method, params, name).await;
        assert_eq!(reply.status, 200, "{method} ({}): {}", self.version, reply.body);
        assert!(
            reply.content_type.starts_with("application/json"),
            "JSON responses are on: {}",
            reply.content_type
        );
        assert!(reply.body.get("error").is_none(), "{method} failed: {}", reply.body);
        reply.body["result"].clone()
    }

    pub async fn call_tool(&self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": arguments}), Some(name)).await
    }

    /// Calls a tool that must succeed; returns its `structuredContent`.
    pub async fn ok(&self, name: &str, arguments: Value) -> Value {
        let result = self.call_tool(name, arguments.clone()).await;
        assert_ne!(result["isError"], true, "{name} {arguments} failed: {result}");
        check_text_mirror(&result);
        result["structuredContent"].clone()
    }

    /// Calls a tool that must fail with a tool error; returns its
    /// `structuredContent` (`{code, message, retryable}`).
    pub async fn err(&self, name: &str, arguments: Value) -> Value {
        let result = self.call_tool(name, arguments.clone()).await;
        assert_eq!(result["isError"], true, "{name} {arguments} should fail: {result}");
        check_text_mirror(&result);
        let body = result["structuredContent"].clone();
        assert!(body["code"].is_string(), "{body}");
        assert!(body["message"].is_string(), "{body}");
        assert!(body["retryable"].is_boolean(), "{body}");
        body
    }
}

/// The text content mirrors the structured content, for clients that read
/// only text.
pub fn check_text_mirror(result: &Value) {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    assert_eq!(parsed, result["structuredContent"], "text mirror of {result}");
}

/// A user (or agent platform) with an ES256 key the merchant trusts, who
/// signs AP2 intent and payment mandates.
pub struct User {
    pub key: agentgate::ap2::PrivateKey,
}

impl User {
    pub fn new() -> User {
        User { key: agentgate::ap2::PrivateKey::generate(&mut rand_core::OsRng) }
    }

    /// Writes the user's public key as a JWKS file and points the
    /// merchant's `trusted_agent_jwks_file` at it.
    pub fn trust(&self, settings: &mut Settings) {
        let path = settings.data_dir.join("trusted-agents.jwks.json");
        let jwks = json!({"keys": [self.key.public().to_jwk()]});
        std::fs::write(&path, jwks.to_string()).expect("write the JWKS");
        settings.trusted_agent_jwks_file = Some(path);
    }

    pub fn intent(&self, max_minor: i64) -> String {
        let now = time::OffsetDateTime::now_utc();
        agentgate::ap2::mandates::IntentClaims::new(
            "https://agent.example",
            agentgate::domain::Money::new(max_minor, agentgate::domain::Currency::usd()),
            "a linen shirt",
            now,
            time::Duration::hours(1),
            &mut rand_core::OsRng,
        )
        .sign(&self.key)
        .expect("sign the intent")
    }

    /// A payment mandate for exactly the cart of `cart_mandate`.
    pub fn payment(&self, cart_mandate: &str, token: &str) -> String {
        use agentgate::ap2::jws;
        let unverified =
            jws::decode_compact(cart_mandate, Some(agentgate::ap2::mandates::MANDATE_TYP))
                .expect("a compact JWS");
        let claims: agentgate::ap2::mandates::CartClaims =
            jws::parse_claims(unverified.payload_unverified()).expect("cart claims");
        agentgate::ap2::mandates::PaymentClaims::for_cart(
            cart_mandate,
            &claims,
            token,
            "CARD",
            time::OffsetDateTime::now_utc(),
            time::Duration::minutes(10),
            &mut rand_core::OsRng,
        )
        .expect("payment claims")
        .sign(&self.key)
        .expect("sign the payment")
    }
}
