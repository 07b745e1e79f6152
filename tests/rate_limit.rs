//! Rate limits are per caller: one caller's flood is refused with 429 and
//! `Retry-After` (REST) or a `rate_limited` tool error (MCP), while another
//! caller's calls in the same window all go through.

mod mcp_support;

use std::net::SocketAddr;

use agentgate::bootstrap;
use agentgate::ports::SearchQuery;
use agentgate::settings::{RateBudget, Settings};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

fn tight(settings: &mut Settings) {
    // A budget of a few calls and a slow refill, so the flood meets the
    // limit at once and nothing refills while the test runs.
    let b = RateBudget { per_minute: 1, burst: 3 };
    settings.rate_limits.cart = b;
    settings.rate_limits.catalog = b;
}

#[tokio::test]
async fn a_rest_flood_from_one_client_leaves_another_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    tight(&mut settings);
    let app = bootstrap::build(settings).await.unwrap();
    let page = app
        .gateway
        .search(&SearchQuery { in_stock_only: true, limit: 1, ..Default::default() })
        .await
        .unwrap();
    let variant = page.products[0].variants[0].id.to_string();
    let router = agentgate::http::app(app.state.clone());
    let create = |ip: [u8; 4], n: usize| {
        let router = router.clone();
        let variant = variant.clone();
        async move {
            let body = json!({"line_items": [{"item": {"id": variant}, "quantity": 1}]});
            let mut req = Request::post("/ucp/v1/carts")
                .header("content-type", "application/json")
                .header("idempotency-key", format!("k-{}-{n}", ip[3]))
                .body(Body::from(body.to_string()))
                .unwrap();
            req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 40000))));
            router.oneshot(req).await.unwrap()
        }
    };
    let a = [10, 0, 0, 1];
    let b = [10, 0, 0, 2];
    let mut refused = 0;
    for n in 0..8 {
        let resp = create(a, n).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok());
            let secs: u64 = retry.and_then(|s| s.parse().ok()).unwrap_or(0);
            assert!(secs >= 1, "a 429 says when to come back");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            assert_eq!(body["error"]["retryable"], true);
        } else {
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    }
    assert_eq!(refused, 5, "three calls pass, the other five are refused");
    for n in 0..3 {
        let resp = create(b, n).await;
        assert!(resp.status().is_success(), "caller B is not slowed by A: {}", resp.status());
    }
}

#[tokio::test]
async fn an_mcp_flood_from_one_subject_leaves_another_untouched() {
    use agentgate::gateway::Caller;
    let server = mcp_support::start_wrapped(tight, |router| {
        router.layer(axum::middleware::map_request(|mut req: axum::extract::Request| async {
            let subject = req
                .headers()
                .get("x-test-subject")
                .and_then(|v| v.to_str().ok())
                .map(Caller::subject)
                .unwrap_or_else(Caller::anonymous);
            req.extensions_mut().insert(subject);
            req
        }))
    })
    .await;
    let url = format!("{}/mcp", server.base);
    let search = |subject: &'static str| {
        let url = url.clone();
        async move {
            let reply: Value = reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .header("x-test-subject", subject)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": {"name": "scout_inventory", "arguments": {"query": "a"}}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            reply["result"].clone()
        }
    };
    let mut refused = 0;
    for _ in 0..6 {
        let r = search("alice").await;
        if r["isError"] == true {
            assert_eq!(r["structuredContent"]["code"], "rate_limited", "{r}");
            assert!(r["structuredContent"]["retry_after_secs"].as_u64().unwrap_or(0) >= 1, "{r}");
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "alice's last three calls are refused");
    for _ in 0..3 {
        let r = search("bob").await;
        assert_eq!(r["isError"], false, "bob is not slowed by alice: {r}");
    }
}
