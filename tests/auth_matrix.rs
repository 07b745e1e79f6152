//! The auth matrix: every REST operation and MCP tool against every kind
//! of caller, with tiers enforced. Tokens are ES256 JWTs signed by a test
//! key whose JWKS a local server publishes as the issuer's.

use agentgate::bootstrap;
use agentgate::settings::{ApiKeyConfig, AuthMode, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};
use sha2::Digest;
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISSUER: &str = "https://issuer.example";
const API_KEY: &str = "agk_test_5d1c0f9e8b7a6d5c4b3a29180f7e6d5c";
const ADMIN_KEY: &str = "agk_admin_0a1b2c3d4e5f60718293a4b5c6d7e8f9";

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    ApiKey,
    TokenNoScope,
    TokenScoped,
    Expired,
    OtherAudience,
    /// An API key with the `admin` scope (not a matrix column).
    Admin,
}

const WHO: [Who; 6] = [
    Who::Anonymous,
    Who::ApiKey,
    Who::TokenNoScope,
    Who::TokenScoped,
    Who::Expired,
    Who::OtherAudience,
];

/// The auth outcome of one call: let through (whatever the handler then
/// says), or refused with 401 or 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Ok,
    U401,
    F403,
}
use Want::{Ok as A, F403 as F, U401 as U};

struct Fixture {
    router: Router,
    tokens: std::collections::HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
    _issuer: MockServer,
}

fn token(pem: &str, aud: &str, scope: &str, exp_offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": ISSUER, "aud": aud, "sub": "agent-7", "scope": scope,
                        "iat": now, "exp": now + exp_offset});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn fixture() -> Fixture {
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(Default::default()).unwrap().to_string();
    let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = json!("k1");
    jwk["alg"] = json!("ES256");
    jwk["use"] = json!("sig");
    let issuer = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk]})))
        .mount(&issuer)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    settings.auth.mode = AuthMode::Enforced;
    settings.auth.issuer = Some(ISSUER.into());
    settings.auth.jwks_url = Some(format!("{}/jwks", issuer.uri()));
    settings.api_keys = vec![
        ApiKeyConfig {
            id: "k1".into(),
            sha256: hex(&sha2::Sha256::digest(API_KEY.as_bytes())),
            subject: None,
            scopes: vec![],
        },
        ApiKeyConfig {
            id: "ops".into(),
            sha256: hex(&sha2::Sha256::digest(ADMIN_KEY.as_bytes())),
            subject: None,
            scopes: vec!["admin".into()],
        },
    ];
    let aud = settings.public_base_url.clone();
    let app = bootstrap::build(settings).await.unwrap();
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("none", token(&pem, &aud, "", 600));
    tokens.insert("scoped", token(&pem, &aud, "checkout:complete orders:read", 600));
    tokens.insert("expired", token(&pem, &aud, "checkout:complete orders:read", -3600));
    tokens.insert(
        "other",
        token(&pem, "https://elsewhere.example", "checkout:complete orders:read", 600),
    );
    Fixture { router: agentgate::http::app(app.state), tokens, _dir: dir, _issuer: issuer }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Fixture {
    fn auth(&self, who: Who) -> Option<String> {
        let t = |k: &str| Some(format!("Bearer {}", self.tokens[k]));
        match who {
            Who::Anonymous => None,
            Who::ApiKey => Some(format!("Bearer {API_KEY}")),
            Who::TokenNoScope => t("none"),
            Who::TokenScoped => t("scoped"),
            Who::Expired => t("expired"),
            Who::OtherAudience => t("other"),
            Who::Admin => Some(format!("Bearer {ADMIN_KEY}")),
        }
    }

    async fn send(
        &self,
        who: Who,
        m: Method,
        uri: &str,
        body: Value,
    ) -> (StatusCode, Value, Option<String>) {
        let mut req = Request::builder()
            .method(m)
            .uri(uri)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("idempotency-key", uuid::Uuid::new_v4().to_string());
        if let Some(a) = self.auth(who) {
            req = req.header("authorization", a);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let challenge =
            resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), challenge)
    }

    /// The auth outcome of a REST call.
    async fn rest(&self, who: Who, m: Method, uri: &str) -> Want {
        let (status, body, challenge) = self.send(who, m, uri, json!({})).await;
        match status {
            StatusCode::UNAUTHORIZED => {
                let c = challenge.unwrap_or_default();
                assert!(c.contains("resource_metadata="), "401 challenge: {c}");
                U
            }
            StatusCode::FORBIDDEN => {
                assert_eq!(body["error"]["code"], "insufficient_scope", "{body}");
                assert!(challenge.unwrap_or_default().contains("insufficient_scope"));
                F
            }
            _ => A,
        }
    }

    /// The auth outcome of an MCP tool call.
    async fn tool(&self, who: Who, endpoint: &str, name: &str) -> Want {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": name, "arguments": {}}});
        let (status, body, _) = self.send(who, Method::POST, endpoint, call).await;
        if status == StatusCode::UNAUTHORIZED {
            return U;
        }
        if status == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "insufficient_scope", "{name}: {body}");
            return F;
        }
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        match body["result"]["structuredContent"]["code"].as_str() {
            Some("unauthorized") => U,
            Some("insufficient_scope") => F,
            _ => A,
        }
    }
}

/// Columns: anonymous, API key, token without scope, token with scope,
/// expired token, token for another audience.
const REST: &[(Method, &str, [Want; 6])] = &[
    (Method::POST, "/ucp/v1/catalog/search", [A, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/catalog/lookup", [A, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/catalog/product", [A, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/carts", [A, A, A, A, U, U]),
    (Method::GET, "/ucp/v1/carts/c1", [A, A, A, A, U, U]),
    (Method::PUT, "/ucp/v1/carts/c1", [A, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/carts/c1/cancel", [A, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/checkout-sessions", [U, A, A, A, U, U]),
    (Method::GET, "/ucp/v1/checkout-sessions/x", [U, A, A, A, U, U]),
    (Method::PUT, "/ucp/v1/checkout-sessions/x", [U, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/checkout-sessions/x/cancel", [U, A, A, A, U, U]),
    (Method::POST, "/ucp/v1/checkout-sessions/x/complete", [U, F, F, A, U, U]),
    (Method::GET, "/ucp/v1/orders/o1", [U, F, F, A, U, U]),
    (Method::GET, "/admin/ledger", [U, F, F, F, U, U]),
];

const TOOLS: &[(&str, &str, [Want; 6])] = &[
    ("/mcp", "scout_inventory", [A, A, A, A, U, U]),
    ("/mcp", "manage_cart", [A, A, A, A, U, U]),
    ("/mcp", "negotiate_terms", [U, A, A, A, U, U]),
    ("/mcp", "execute_checkout", [U, F, F, A, U, U]),
    ("/mcp", "track_order", [U, F, F, A, U, U]),
    ("/ucp/mcp", "search_catalog", [A, A, A, A, U, U]),
    ("/ucp/mcp", "lookup_catalog", [A, A, A, A, U, U]),
    ("/ucp/mcp", "get_product", [A, A, A, A, U, U]),
    ("/ucp/mcp", "create_cart", [A, A, A, A, U, U]),
    ("/ucp/mcp", "get_cart", [A, A, A, A, U, U]),
    ("/ucp/mcp", "update_cart", [A, A, A, A, U, U]),
    ("/ucp/mcp", "cancel_cart", [A, A, A, A, U, U]),
    ("/ucp/mcp", "create_checkout", [U, A, A, A, U, U]),
    ("/ucp/mcp", "get_checkout", [U, A, A, A, U, U]),
    ("/ucp/mcp", "update_checkout", [U, A, A, A, U, U]),
    ("/ucp/mcp", "cancel_checkout", [U, A, A, A, U, U]),
    ("/ucp/mcp", "complete_checkout", [U, F, F, A, U, U]),
    ("/ucp/mcp", "get_order", [U, F, F, A, U, U]),
    ("/admin/mcp", "adjust_stock", [U, F, F, F, U, U]),
    ("/admin/mcp", "list_orders", [U, F, F, F, U, U]),
    ("/admin/mcp", "refund_order", [U, F, F, F, U, U]),
    ("/admin/mcp", "fee_report", [U, F, F, F, U, U]),
    ("/admin/mcp", "pending_escalations", [U, F, F, F, U, U]),
];

#[tokio::test]
async fn every_operation_against_every_tier() {
    let f = fixture().await;
    let mut wrong = Vec::new();
    for (m, uri, wants) in REST {
        for (who, want) in WHO.iter().zip(wants) {
            let got = f.rest(*who, m.clone(), uri).await;
            if got != *want {
                wrong.push(format!("{m} {uri} as {who:?}: want {want:?}, got {got:?}"));
            }
        }
    }
    for (endpoint, name, wants) in TOOLS {
        for (who, want) in WHO.iter().zip(wants) {
            let got = f.tool(*who, endpoint, name).await;
            if got != *want {
                wrong.push(format!("{endpoint} {name} as {who:?}: want {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn an_admin_key_reads_the_fee_ledger() {
    let f = fixture().await;
    let uri = "/admin/ledger?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&currency=USD";
    let (status, body, _) = f.send(Who::Admin, Method::GET, uri, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["entries"].is_array(), "{body}");
    assert!(body["totals"].is_object(), "{body}");
    let (status, body, _) =
        f.send(Who::Admin, Method::GET, "/admin/ledger?from=x", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn protected_resource_metadata_names_the_issuer_and_scopes() {
    let f = fixture().await;
    let (status, body, _) = f
        .send(Who::Anonymous, Method::GET, "/.well-known/oauth-protected-resource", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["authorization_servers"], json!([ISSUER]));
    assert!(body["resource"].is_string());
    assert_eq!(body["bearer_methods_supported"], json!(["header"]));
    let scopes = body["scopes_supported"].as_array().cloned().unwrap_or_default();
    for s in ["checkout:complete", "orders:read", "admin"] {
        assert!(scopes.contains(&json!(s)), "{s}");
    }
}

#[tokio::test]
async fn an_admin_key_reaches_every_operator_tool() {
    let f = fixture().await;
    for name in ["adjust_stock", "list_orders", "refund_order", "fee_report", "pending_escalations"]
    {
        assert_eq!(f.tool(Who::Admin, "/admin/mcp", name).await, A, "{name}");
    }
}

/// Naming a platform profile proves nothing over the UCP MCP binding: no
/// signature is verified there, so the caller stays anonymous and a
/// checkout tool is refused as for anyone anonymous. (Over REST the edge
/// admits a named profile as signed, then the handler must fetch it.)
#[tokio::test]
async fn a_platform_profile_on_ucp_mcp_earns_no_signed_tier() {
    let f = fixture().await;
    let meta = json!({"ucp-agent": {"profile": "https://platform.example/profile.json"}});
    for name in ["create_checkout", "get_checkout", "update_checkout", "cancel_checkout"] {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": name, "arguments": {"meta": meta, "id": "x",
                                                                 "checkout": {}}}});
        let (status, body, _) = f.send(Who::Anonymous, Method::POST, "/ucp/mcp", call).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["result"]["structuredContent"]["code"], "unauthorized", "{name}: {body}");
    }
    // The same claim with an API key is let through to the tool.
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "get_checkout", "arguments": {"meta": meta, "id": "x"}}});
    let (_, body, _) = f.send(Who::ApiKey, Method::POST, "/ucp/mcp", call).await;
    assert_ne!(body["result"]["structuredContent"]["code"], "unauthorized", "{body}");
}
