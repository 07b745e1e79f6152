//! The UCP MCP binding at `/ucp/mcp`: the thirteen tools of the UCP
//! 2026-04-08 `mcp.openrpc.json`, driven like a UCP platform would, with
//! every result checked against the method's result schema from the
//! official OpenRPC document.

mod mcp_support;
mod support;

use mcp_support::{start_with, Client, User};
use serde_json::{json, Value};
use support::schema::{self, Resolve};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OPENRPC: &str = "ucp/2026-04-08/services/shopping/mcp.openrpc.json";

/// Checks `result` against the OpenRPC result schema of `tool`, with the
/// UCP visibility annotations resolved for the operation.
fn check(tool: &str, result: &Value) {
    let Some(specs) = support::specs_dir() else { return };
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(specs.join(OPENRPC)).expect("the OpenRPC document"),
    )
    .expect("JSON");
    let index = doc["methods"]
        .as_array()
        .and_then(|m| m.iter().position(|m| m["name"] == tool))
        .unwrap_or_else(|| panic!("{tool} is not in the OpenRPC document"));
    let pointer = format!("/methods/{index}/result/schema");
    let kind = schema::operation_kind(tool).to_owned();
    let validator = schema::validator_with(&specs, OPENRPC, &pointer, &Resolve::response(&kind));
    schema::assert_valid(&validator, &result["structuredContent"], &format!("{tool} result"));
}

/// A platform profile served locally, declaring every capability the
/// business offers, with the user's key among its signing keys.
async fn platform(user: &User) -> (MockServer, String) {
    let server = MockServer::start().await;
    let names: serde_json::Map<String, Value> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .filter(|c| c.name != agentgate::ucp::profile::AP2_MANDATE)
        .map(|c| (c.name.to_owned(), json!([{"version": "2026-04-08"}])))
        .collect();
    let profile = json!({"ucp": {"version": "2026-04-08", "capabilities": names},
                         "signing_keys": [user.key.public().to_jwk()]});
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(profile))
        .mount(&server)
        .await;
    let url = format!("{}/.well-known/ucp", server.uri());
    (server, url)
}

struct Ucp {
    client: Client,
    profile: String,
}

impl Ucp {
    fn meta(&self, key: Option<&str>) -> Value {
        let mut meta = json!({"ucp-agent": {"profile": self.profile}});
        if let Some(k) = key {
            meta["idempotency-key"] = json!(k);
        }
        meta
    }

    /// Calls `tool` with `args` plus `meta`; returns the whole tool result.
    async fn call(&self, tool: &str, mut args: Value, key: Option<&str>) -> Value {
        args["meta"] = self.meta(key);
        self.client.call_tool(tool, args).await
    }

    async fn ok(&self, tool: &str, args: Value, key: Option<&str>) -> Value {
        let r = self.call(tool, args.clone(), key).await;
        assert_ne!(r["isError"], true, "{tool} {args}: {r}");
        mcp_support::check_text_mirror(&r);
        check(tool, &r);
        r["structuredContent"].clone()
    }

    async fn err(&self, tool: &str, args: Value, key: Option<&str>) -> Value {
        let r = self.call(tool, args.clone(), key).await;
        assert_eq!(r["isError"], true, "{tool} {args} should fail: {r}");
        let body = r["structuredContent"].clone();
        assert_eq!(body["ucp"]["status"], "error", "an error_response: {body}");
        body
    }
}

fn code(body: &Value) -> &str {
    body["messages"][0]["code"].as_str().unwrap_or_default()
}

fn total(body: &Value, kind: &str) -> Option<i64> {
    body["totals"].as_array()?.iter().find(|t| t["type"] == kind)?["amount"].as_i64()
}

#[tokio::test]
async fn the_thirteen_tools_shop_end_to_end() {
    let user = User::new();
    let (_platform, profile) = platform(&user).await;
    let server = start_with(|s| s.allow_private_profile_hosts = true).await;
    let client = Client::connect(&format!("{}/ucp/mcp", server.base), "2025-11-25").await;
    let ucp = Ucp { client, profile };

    let tools = ucp.client.request("tools/list", json!({}), None).await;
    let mut names: Vec<&str> =
        tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cancel_cart",
            "cancel_checkout",
            "complete_checkout",
            "create_cart",
            "create_checkout",
            "get_cart",
            "get_checkout",
            "get_order",
            "get_product",
            "lookup_catalog",
            "search_catalog",
            "update_cart",
            "update_checkout"
        ]
    );
    for t in tools["tools"].as_array().unwrap() {
        let required = &t["inputSchema"]["required"];
        assert!(required.as_array().unwrap().contains(&json!("meta")), "{t}");
    }

    // Catalog.
    let found = ucp.ok("search_catalog", json!({"catalog": {"query": "cotton tee"}}), None).await;
    let product = &found["products"][0];
    let variant = product["variants"][0]["id"].as_str().unwrap().to_owned();
    let product_id = product["id"].as_str().unwrap().to_owned();
    let looked =
        ucp.ok("lookup_catalog", json!({"catalog": {"ids": [variant, "nope-123"]}}), None).await;
    assert_eq!(looked["products"][0]["id"], product_id.as_str());
    assert_eq!(looked["messages"][0]["code"], "not_found");
    let one = ucp.ok("get_product", json!({"catalog": {"id": product_id}}), None).await;
    assert_eq!(one["product"]["id"], product_id.as_str());

    // Cart.
    let lines = |q: u32| json!({"line_items": [{"item": {"id": variant}, "quantity": q}]});
    let cart = ucp.ok("create_cart", json!({"cart": lines(1)}), Some("cart-1")).await;
    let cart_id = cart["id"].as_str().unwrap().to_owned();
    let cart =
        ucp.ok("update_cart", json!({"id": cart_id, "cart": lines(2)}), Some("cart-2")).await;
    assert_eq!(cart["line_items"][0]["quantity"], 2);
    let cart = ucp.ok("get_cart", json!({"id": cart_id}), None).await;
    assert_eq!(cart["id"], cart_id.as_str());

    // Checkout from the cart, then the details, then ready.
    let created = ucp
        .ok(
            "create_checkout",
            json!({"checkout": {"cart_id": cart_id, "line_items": []}}),
            Some("chk-1"),
        )
        .await;
    assert_eq!(created["status"], "incomplete");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut body = lines(2);
    body["buyer"] = json!({"email": "ada@example.com"});
    body["fulfillment"] = json!({"methods": [{"type": "shipping", "line_item_ids": ["li_1"],
        "destinations": [{"street_address": "1 Main St", "address_locality": "Springfield",
                          "address_region": "IL", "postal_code": "62701", "address_country": "US",
                          "first_name": "Ada", "last_name": "Lovelace"}],
        "groups": [{"id": "group_1", "selected_option_id": "us-standard"}]}]});
    body["payment"] = json!({"instruments": [{"id": "instr_a", "handler_id": "sandbox", "type": "card",
                                              "credential": {"type": "token", "token": "success_token"}}]});
    let ready = ucp.ok("update_checkout", json!({"id": id, "checkout": body}), Some("chk-2")).await;
    assert_eq!(ready["status"], "ready_for_complete", "{ready}");
    let got = ucp.ok("get_checkout", json!({"id": id}), None).await;
    assert_eq!(got["status"], "ready_for_complete");
    let amount = total(&got, "total").unwrap();

    // Complete with the AP2 chain, once per key.
    let intent = user.intent(amount);
    let mandate = {
        let caller = agentgate::gateway::Caller::subject(format!("ucp-platform:{}", ucp.profile));
        let checkout = agentgate::domain::CheckoutId::parse(&id).unwrap();
        let url = url::Url::parse(&ucp.profile).unwrap();
        server
            .app_gateway
            .issue_cart_mandate(&caller, &checkout, &intent, Some(&url))
            .await
            .expect("a cart mandate for the platform's checkout")
            .token
    };
    let payment = user.payment(&mandate, "success_token");
    let complete = json!({"id": id, "checkout": {
        "payment": {"instruments": [{"id": "instr_a", "handler_id": "sandbox", "type": "card",
                                     "credential": {"type": "token", "token": "success_token"}}]},
        "ap2": {"intent_mandate": intent, "cart_mandate": mandate, "payment_mandate": payment}}});
    let missing_key = ucp.err("complete_checkout", complete.clone(), None).await;
    assert_eq!(code(&missing_key), "idempotency_key_required");
    let done = ucp.ok("complete_checkout", complete.clone(), Some("done-1")).await;
    assert_eq!(done["status"], "completed", "{done}");
    let order_id = done["order"]["id"].as_str().unwrap().to_owned();
    let again = ucp.call("complete_checkout", complete.clone(), Some("done-1")).await;
    assert_eq!(again["structuredContent"], done, "the replay is the first answer");
    assert_eq!(again["_meta"]["idempotency-replayed"], true);
    let mut changed = complete.clone();
    changed["checkout"]["ap2"]["payment_mandate"] = json!(user.payment(&mandate, "success_token"));
    let conflict = ucp.err("complete_checkout", changed, Some("done-1")).await;
    assert_eq!(code(&conflict), "idempotency_conflict");

    let order = ucp.ok("get_order", json!({"id": order_id}), None).await;
    assert_eq!(order["id"], order_id.as_str());

    // Cancels need a key, and a completed checkout cannot be canceled.
    let cancel = ucp.err("cancel_checkout", json!({"id": id}), Some("cancel-1")).await;
    assert_eq!(code(&cancel), "illegal_transition", "{cancel}");
    let canceled = ucp.ok("cancel_cart", json!({"id": cart_id}), Some("cancel-2")).await;
    assert_eq!(canceled["id"], cart_id.as_str());
}

#[tokio::test]
async fn refusals_are_error_responses() {
    let user = User::new();
    let (_platform, profile) = platform(&user).await;
    let server = start_with(|s| s.allow_private_profile_hosts = true).await;
    let client = Client::connect(&format!("{}/ucp/mcp", server.base), "2026-07-28").await;
    let ucp = Ucp { client, profile: profile.clone() };

    let cases: Vec<(&str, Value, Option<&str>, &str)> = vec![
        ("get_checkout", json!({"id": "chk_nope"}), None, "not_found"),
        ("get_checkout", json!({"id": "not-an-id"}), None, "not_found"),
        ("get_order", json!({"id": "ord_nope"}), None, "not_found"),
        ("get_cart", json!({}), None, "invalid_input"),
        ("cancel_cart", json!({"id": "cart_x"}), None, "idempotency_key_required"),
        ("create_cart", json!({"cart": {"line_items": "x"}}), None, "invalid_input"),
        ("search_catalog", json!({"catalog": {"query": 5}}), None, "invalid_input"),
        ("get_product", json!({"catalog": {"id": "p-none"}}), None, "not_found"),
        ("lookup_catalog", json!({"catalog": {"ids": []}}), None, "invalid_input"),
        ("get_cart", json!({"id": "cart_x", "extra": 1}), None, "invalid_input"),
    ];
    for (tool, args, key, want) in cases {
        let body = ucp.err(tool, args.clone(), key).await;
        assert_eq!(code(&body), want, "{tool} {args}: {body}");
    }

    // Negotiation failures carry UCP's codes.
    for (meta, want) in [
        (json!({"ucp-agent": {"profile": "ftp://x"}}), "invalid_profile_url"),
        (json!({"ucp-agent": {"profile": format!("{profile}/missing")}}), "profile_unreachable"),
    ] {
        let r = ucp
            .client
            .call_tool("search_catalog", json!({"meta": meta, "catalog": {"query": "tee"}}))
            .await;
        assert_eq!(r["isError"], true);
        assert_eq!(code(&r["structuredContent"]), want, "{r}");
    }

    // Another platform cannot see this platform's cart.
    let cart = ucp
        .ok("create_cart", json!({"cart": {"line_items": [{"item": {"id": "v-linen-camp-shirt-m"}, "quantity": 1}]}}), None)
        .await;
    let (_other, other_profile) = platform(&User::new()).await;
    let other = Ucp {
        client: Client::connect(&format!("{}/ucp/mcp", server.base), "2026-07-28").await,
        profile: other_profile,
    };
    let hidden = other.err("get_cart", json!({"id": cart["id"]}), None).await;
    assert_eq!(code(&hidden), "not_found");
}
