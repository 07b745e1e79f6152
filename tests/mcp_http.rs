//! The gateway's MCP server over streamable HTTP, as a client sees it: each
//! protocol revision, the Host and Origin allowlists, tool errors as
//! results, output schemas, resources and prompts.

mod mcp_support;

use mcp_support::{start, start_wrapped, Client, REVISIONS};
use serde_json::{json, Value};

async fn first_variant(client: &Client) -> String {
    let page = client.ok("scout_inventory", json!({"in_stock_only": true, "limit": 1})).await;
    page["products"][0]["variants"][0]["variant_id"].as_str().expect("a variant").to_owned()
}

#[tokio::test]
async fn every_revision_lists_and_calls_the_tools() {
    let server = start().await;
    for version in REVISIONS {
        let client = Client::connect(&format!("{}/mcp", server.base), version).await;
        let tools = client.request("tools/list", json!({}), None).await;
        let names: Vec<&str> =
            tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        for expected in ["scout_inventory", "manage_cart"] {
            assert!(names.contains(&expected), "{version}: {names:?}");
        }
        let page = client.ok("scout_inventory", json!({"query": "linen", "limit": 3})).await;
        assert!(!page["products"].as_array().unwrap().is_empty(), "{version}: {page}");
        if version >= "2026-07-28" {
            assert_eq!(tools["resultType"], "complete", "2026-07-28 result shape");
        } else {
            assert!(tools.get("resultType").is_none(), "{version} gets the legacy shape");
        }
    }
}

#[tokio::test]
async fn discovery_and_version_negotiation() {
    let server = start().await;
    let url = format!("{}/mcp", server.base);
    // 2026-07-28 discovery names exactly the supported revisions.
    let modern = Client::connect(&url, "2026-07-28").await;
    let found = modern.request("server/discover", json!({}), None).await;
    assert_eq!(found["supportedVersions"], json!(REVISIONS));
    assert_eq!(found["capabilities"]["tools"], json!({}));
    assert!(found["capabilities"]["resources"].is_object());
    assert!(found["capabilities"]["prompts"].is_object());

    // A client asking for a revision without structured output is offered
    // the newest one that still has a handshake, and may walk away.
    let http = reqwest::Client::new();
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "old", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25", "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "agentgate");
    assert!(body["result"]["instructions"].as_str().unwrap().contains("execute_checkout"));

    // Stateless: no session id, and GET (a standalone SSE stream) is 405.
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let server = start().await;
    let http = reqwest::Client::new();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let cases: Vec<(Vec<(&str, String)>, u16)> = vec![
        (vec![], 200),
        (vec![("origin", format!("http://localhost:{port}"))], 200),
        (vec![("origin", "http://127.0.0.1:5173".to_owned())], 200),
        (vec![("origin", "http://evil.example.com".to_owned())], 403),
        (vec![("origin", "https://localhost.evil.example.com".to_owned())], 403),
        (vec![("origin", "null".to_owned())], 403),
        (vec![("host", "evil.example.com".to_owned())], 403),
        (vec![("host", format!("evil.example.com:{port}"))], 403),
    ];
    for path in ["/mcp", "/ucp/mcp"] {
        for (headers, want) in &cases {
            let mut req = http
                .post(format!("{}{path}", server.base))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream");
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let status = req.json(&ping).send().await.unwrap().status().as_u16();
            assert_eq!(status, *want, "{path} {headers:?}");
        }
    }
}

#[tokio::test]
async fn argument_mistakes_are_tool_errors_with_codes() {
    let server = start().await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2025-11-25").await;
    let variant = first_variant(&client).await;
    let cart = client.ok("manage_cart", json!({"action": "create"})).await;
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("manage_cart", json!({"action": "buy"}), "invalid_input"),
        ("manage_cart", json!({}), "invalid_input"),
        ("manage_cart", json!({"action": "get"}), "invalid_input"),
        ("manage_cart", json!({"action": "get", "cart_id": "chk_123"}), "invalid_input"),
        ("manage_cart", json!({"action": "get", "cart_id": "cart_ffff"}), "not_found"),
        (
            "manage_cart",
            json!({"action": "add", "cart_id": cart_id, "variant_id": variant, "quantity": -1}),
            "quantity_limit_exceeded",
        ),
        (
            "manage_cart",
            json!({"action": "add", "cart_id": cart_id, "variant_id": variant, "quantity": 1000}),
            "quantity_limit_exceeded",
        ),
        (
            "manage_cart",
            json!({"action": "add", "cart_id": cart_id, "variant_id": variant, "quantity": "2"}),
            "invalid_input",
        ),
        (
            "manage_cart",
            json!({"action": "add", "cart_id": cart_id, "variant_id": "no-such-variant"}),
            "not_found",
        ),
        ("manage_cart", json!({"action": "add", "cart_id": cart_id}), "invalid_input"),
        (
            "manage_cart",
            json!({"action": "add", "cart_id": cart_id, "variant_id": "a b"}),
            "invalid_input",
        ),
        ("manage_cart", json!({"action": "create", "price": 1}), "invalid_input"),
        ("scout_inventory", json!({"limit": 0}), "invalid_input"),
        ("scout_inventory", json!({"limit": 51}), "invalid_input"),
        ("scout_inventory", json!({"price_min": -1}), "invalid_input"),
        ("scout_inventory", json!({"price_min": 500, "price_max": 100}), "invalid_input"),
        ("scout_inventory", json!({"query": "x".repeat(501)}), "invalid_input"),
        ("scout_inventory", json!({"cursor": "not-a-cursor"}), "invalid_input"),
    ];
    for (tool, args, code) in cases {
        let body = client.err(tool, args.clone()).await;
        assert_eq!(body["code"], code, "{tool} {args}: {body}");
        assert_eq!(body["retryable"], false, "{tool} {args}");
    }
    // An unknown tool is the one protocol error: the request is unroutable.
    let reply = client.post("tools/call", json!({"name": "buy_now", "arguments": {}}), None).await;
    assert_eq!(reply.body["error"]["code"], -32602, "{}", reply.body);
}

#[tokio::test]
async fn a_cart_is_built_and_repriced_through_the_tool() {
    let server = start().await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2026-07-28").await;
    let page = client.ok("scout_inventory", json!({"in_stock_only": true, "limit": 5})).await;
    let variants: Vec<(String, i64)> = page["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["variants"][0])
        .map(|v| (v["variant_id"].as_str().unwrap().to_owned(), v["price"].as_i64().unwrap()))
        .collect();
    let (a, price_a) = variants[0].clone();
    let (b, price_b) = variants[1].clone();

    let cart =
        client.ok("manage_cart", json!({"action": "create", "variant_id": a, "quantity": 2})).await;
    let id = cart["cart_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cart_"));
    assert_eq!(cart["subtotal"], price_a * 2);
    let cart =
        client.ok("manage_cart", json!({"action": "add", "cart_id": id, "variant_id": b})).await;
    assert_eq!(cart["subtotal"], price_a * 2 + price_b);
    assert_eq!(cart["item_count"], 3);
    let cart = client
        .ok(
            "manage_cart",
            json!({"action": "update", "cart_id": id, "variant_id": a, "quantity": 1}),
        )
        .await;
    assert_eq!(cart["subtotal"], price_a + price_b);
    let cart = client
        .ok(
            "manage_cart",
            json!({"action": "update", "cart_id": id, "variant_id": b, "quantity": 0}),
        )
        .await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1, "quantity 0 removes the line");
    let cart =
        client.ok("manage_cart", json!({"action": "remove", "cart_id": id, "variant_id": a})).await;
    assert_eq!(cart["subtotal"], 0);
    client
        .ok("manage_cart", json!({"action": "add", "cart_id": id, "variant_id": b, "quantity": 3}))
        .await;
    let cart = client.ok("manage_cart", json!({"action": "get", "cart_id": id})).await;
    assert_eq!(cart["subtotal"], price_b * 3);
    assert_eq!(
        cart["subtotal_display"].as_str().unwrap().split(' ').next(),
        cart["currency"].as_str()
    );
    let cart = client.ok("manage_cart", json!({"action": "clear", "cart_id": id})).await;
    assert_eq!(cart["item_count"], 0);
}

#[tokio::test]
async fn search_pages_with_the_cursor() {
    let server = start().await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2025-06-18").await;
    let first = client.ok("scout_inventory", json!({"limit": 2})).await;
    let cursor = first["next_cursor"].as_str().expect("more than two products");
    let second = client.ok("scout_inventory", json!({"limit": 2, "cursor": cursor})).await;
    let ids = |page: &Value| -> Vec<String> {
        page["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["product_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a, b) = (ids(&first), ids(&second));
    assert_eq!(b.len(), 2);
    assert!(a.iter().all(|id| !b.contains(id)), "pages do not overlap: {a:?} {b:?}");
    let cheap = client.ok("scout_inventory", json!({"price_max": 1000, "limit": 50})).await;
    for p in cheap["products"].as_array().unwrap() {
        let min =
            p["variants"].as_array().unwrap().iter().filter_map(|v| v["price"].as_i64()).min();
        assert!(min.unwrap_or(0) <= 1000, "{p}");
    }
}

#[tokio::test]
async fn resources_and_prompts() {
    let server = start().await;
    for version in REVISIONS {
        let client = Client::connect(&format!("{}/mcp", server.base), version).await;
        let listed = client.request("resources/list", json!({}), None).await;
        let uris: Vec<&str> = listed["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["uri"].as_str())
            .collect();
        assert_eq!(
            uris,
            [
                "agentgate://inventory",
                "agentgate://categories",
                "agentgate://policies",
                "agentgate://ucp-profile"
            ]
        );
        let templates = client.request("resources/templates/list", json!({}), None).await;
        assert_eq!(
            templates["resourceTemplates"][0]["uriTemplate"],
            "agentgate://orders/{order_id}"
        );
        let read = |uri: &'static str| {
            let client = &client;
            async move {
                let r = client.request("resources/read", json!({"uri": uri}), Some(uri)).await;
                assert_eq!(r["contents"][0]["uri"], uri);
                assert_eq!(r["contents"][0]["mimeType"], "application/json");
                let text = r["contents"][0]["text"].as_str().unwrap_or_default().to_owned();
                serde_json::from_str::<Value>(&text).expect("JSON document")
            }
        };
        let inventory = read("agentgate://inventory").await;
        assert!(inventory["products"].as_array().unwrap().len() > 10);
        assert_eq!(inventory["truncated"], false);
        let categories = read("agentgate://categories").await;
        assert!(categories["categories"][0]["path"].is_string());
        let policies = read("agentgate://policies").await;
        assert!(policies["returns"].as_str().unwrap().contains("30 days"));
        let profile = read("agentgate://ucp-profile").await;
        assert_eq!(profile["ucp"]["version"], "2026-04-08");
        assert!(profile["ucp"]["services"]["dev.ucp.shopping"].to_string().contains("/ucp/mcp"));

        let missing = client
            .post(
                "resources/read",
                json!({"uri": "agentgate://nothing"}),
                Some("agentgate://nothing"),
            )
            .await;
        assert!(missing.body["error"]["code"].is_i64(), "{}", missing.body);

        let prompts = client.request("prompts/list", json!({}), None).await;
        let names: Vec<&str> = prompts["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(
            names.contains(&"purchase_with_confirmation")
                && names.contains(&"order_status_briefing")
        );
        let prompt = client
            .request(
                "prompts/get",
                json!({"name": "purchase_with_confirmation",
                       "arguments": {"goal": "a linen shirt", "budget": "80 USD"}}),
                Some("purchase_with_confirmation"),
            )
            .await;
        let text = prompt["messages"][0]["content"]["text"].as_str().unwrap();
        for needle in ["a linen shirt", "80 USD", "explicit yes", "same idempotency_key"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let briefing = client
            .request(
                "prompts/get",
                json!({"name": "order_status_briefing", "arguments": {"order_id": "ord_1"}}),
                Some("order_status_briefing"),
            )
            .await;
        assert!(briefing["messages"][0]["content"]["text"].as_str().unwrap().contains("ord_1"));
    }
}

/// The caller comes from the request's extensions, where an auth layer
/// puts it: a cart created by one subject is invisible to another.
#[tokio::test]
async fn the_caller_is_read_from_request_extensions() {
    use agentgate::gateway::Caller;
    let server = start_wrapped(
        |_| {},
        |router| {
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
        },
    )
    .await;
    let url = format!("{}/mcp", server.base);
    let cart = |subject: &'static str, args: Value| {
        let url = url.clone();
        async move {
            let reply: Value = reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .header("x-test-subject", subject)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": {"name": "manage_cart", "arguments": args}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            reply["result"].clone()
        }
    };
    let created = cart("alice", json!({"action": "create"})).await;
    let id = created["structuredContent"]["cart_id"].as_str().unwrap().to_owned();
    let mine = cart("alice", json!({"action": "get", "cart_id": id})).await;
    assert_eq!(mine["isError"], false, "{mine}");
    let theirs = cart("bob", json!({"action": "get", "cart_id": id})).await;
    assert_eq!(theirs["structuredContent"]["code"], "not_found", "{theirs}");
}
