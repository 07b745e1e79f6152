//! The operator MCP endpoint `/admin/mcp` on a real gateway: who may reach
//! it, and each tool against real orders made by an agent over `/mcp`
//! (stock corrections with their audit trail, refunds with their ledger
//! reversal, the fee report against `/admin/ledger`, escalated checkouts).

mod mcp_support;

use agentgate::adapters::payments::sandbox::SandboxCall;
use agentgate::domain::{OrderEventKind, OrderId, Sku};
use agentgate::settings::ApiKeyConfig;
use mcp_support::{start_with, Client, Server, User};
use serde_json::{json, Value};
use sha2::Digest;

const ADMIN_KEY: &str = "agk_ops_3c2b1a09f8e7d6c5b4a39281706f5e4d";
const PLAIN_KEY: &str = "agk_plain_9e8d7c6b5a49382716f5e4d3c2b1a098";
const VERSION: &str = "2025-11-25";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(id: &str, secret: &str, scopes: &[&str]) -> ApiKeyConfig {
    ApiKeyConfig {
        id: id.into(),
        sha256: hex(&sha2::Sha256::digest(secret.as_bytes())),
        subject: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn server(user: &User) -> Server {
    start_with(|s| {
        user.trust(s);
        s.api_keys = vec![key("ops", ADMIN_KEY, &["admin"]), key("plain", PLAIN_KEY, &[])];
    })
    .await
}

async fn admin(server: &Server) -> Client {
    let auth = format!("Bearer {ADMIN_KEY}");
    Client::connect_with_headers(
        &format!("{}/admin/mcp", server.base),
        VERSION,
        &[("authorization", auth.as_str())],
    )
    .await
}

/// An agent buys one in-stock linen shirt over `/mcp`, paying with the
/// sandbox `token`; returns execute_checkout's structured result.
async fn buy(server: &Server, user: &User, token: &str) -> Value {
    let client = Client::connect(&format!("{}/mcp", server.base), VERSION).await;
    let page =
        client.ok("scout_inventory", json!({"query": "linen shirt", "in_stock_only": true})).await;
    let variant = page["products"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["variants"].as_array().unwrap().iter())
        .find(|v| v["stock_state"] == "in_stock")
        .expect("an in-stock variant")["variant_id"]
        .clone();
    let cart = client.ok("manage_cart", json!({"action": "create", "variant_id": variant})).await;
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id,
                   "buyer_email": "ada@example.com", "buyer_first_name": "Ada",
                   "ship_to_name": "Ada Lovelace", "ship_to_street": "1 Main St",
                   "ship_to_city": "Springfield", "ship_to_region": "IL",
                   "ship_to_postal_code": "62701", "ship_to_country": "us"}),
        )
        .await;
    let checkout_id = terms["checkout"]["checkout_id"].as_str().unwrap().to_owned();
    let terms = if terms["checkout"]["status"] == "ready_for_complete" {
        terms
    } else {
        let option = terms["checkout"]["fulfillment_options"][0]["id"].clone();
        client
            .ok(
                "negotiate_terms",
                json!({"cart_id": cart_id, "checkout_id": checkout_id,
                       "fulfillment_option_id": option}),
            )
            .await
    };
    assert_eq!(terms["checkout"]["status"], "ready_for_complete", "{terms}");
    let total = terms["checkout"]["totals"]["total"]["amount"].as_i64().unwrap();
    let intent = user.intent(total + 10_000);
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": intent}),
        )
        .await;
    let cart_mandate = terms["cart_mandate"]["token"].as_str().unwrap().to_owned();
    let payment = user.payment(&cart_mandate, token);
    let result = client
        .call_tool(
            "execute_checkout",
            json!({"checkout_id": checkout_id, "intent_mandate": intent,
                   "cart_mandate": cart_mandate, "payment_mandate": payment,
                   "idempotency_key": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    let mut out = result["structuredContent"].clone();
    out["checkout_id"] = json!(checkout_id);
    out
}

fn refunds(server: &Server) -> Vec<(String, i64)> {
    server
        .payments
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            SandboxCall::Refund { idempotency_key, amount, replayed: false, .. } => {
                Some((idempotency_key, amount.minor()))
            }
            _ => None,
        })
        .collect()
}

/// A raw `initialize` on `/admin/mcp` with `auth`, as (status, body,
/// WWW-Authenticate).
async fn knock(server: &Server, auth: Option<&str>) -> (u16, Value, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/admin/mcp", server.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

#[tokio::test]
async fn only_an_admin_credential_reaches_the_operator_tools() {
    let user = User::new();
    let server = server(&user).await;
    // Open auth mode (the default) still guards /admin.
    let (status, body, challenge) = knock(&server, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let (status, body, challenge) = knock(&server, Some(&format!("Bearer {PLAIN_KEY}"))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert!(challenge.contains("scope=\"admin\""), "{challenge}");
    let (status, body, _) = knock(&server, Some("Bearer agk_not_a_key_at_all_0000000000")).await;
    assert_eq!(status, 401, "{body}");
    let (status, body, _) = knock(&server, Some(&format!("Bearer {ADMIN_KEY}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "agentgate-operator");

    let ops = admin(&server).await;
    let tools = ops.request("tools/list", json!({}), None).await;
    let mut names: Vec<&str> =
        tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["adjust_stock", "fee_report", "list_orders", "pending_escalations", "refund_order"]
    );
    // The agent endpoint does not offer them.
    let agent = Client::connect(&format!("{}/mcp", server.base), VERSION).await;
    let listed = agent.request("tools/list", json!({}), None).await;
    assert!(!listed.to_string().contains("adjust_stock"));
}

#[tokio::test]
async fn stock_corrections_are_audited_once_per_key_and_never_negative() {
    let user = User::new();
    let server = server(&user).await;
    let ops = admin(&server).await;
    let gw = &server.app_gateway;
    let sku_name = "ORGANIC-COTTON-TEE-BLACK";
    let sku = Sku::parse(sku_name).unwrap();
    let before = gw.store().get_stock(&sku).await.unwrap().unwrap_or(0);

    let args = json!({"sku": sku_name, "delta": 5, "reason": "delivery from the mill",
                      "idempotency_key": "adj-001"});
    let first = ops.ok("adjust_stock", args.clone()).await;
    assert_eq!(first["stock"], before + 5, "{first}");
    assert_eq!(first["replayed"], false);
    assert_eq!(first["actor"], "api-key:ops");
    // A retry answers the first result and moves nothing.
    let again = ops.ok("adjust_stock", args.clone()).await;
    assert_eq!(again["replayed"], true);
    assert_eq!(again["stock"], first["stock"]);
    assert_eq!(again["audit_id"], first["audit_id"]);
    assert_eq!(gw.store().get_stock(&sku).await.unwrap(), Some(before + 5));
    // The key with other arguments is refused.
    let mut changed = args.clone();
    changed["delta"] = json!(6);
    let conflict = ops.err("adjust_stock", changed).await;
    assert_eq!(conflict["code"], "idempotency_conflict", "{conflict}");
    // Never below zero.
    let too_many = json!({"sku": sku_name, "delta": -i64::from(before + 6), "reason": "count",
                          "idempotency_key": "adj-002"});
    let refused = ops.err("adjust_stock", too_many).await;
    assert_eq!(refused["code"], "insufficient_stock", "{refused}");
    assert_eq!(gw.store().get_stock(&sku).await.unwrap(), Some(before + 5));
    // Other mistakes, each with its code and nothing written.
    let cases = [
        (
            json!({"sku": "NO-SUCH-SKU", "delta": 1, "reason": "x", "idempotency_key": "a3"}),
            "not_found",
        ),
        (
            json!({"sku": sku_name, "delta": 0, "reason": "x", "idempotency_key": "a4"}),
            "invalid_input",
        ),
        (
            json!({"sku": sku_name, "delta": 1, "reason": " ", "idempotency_key": "a5"}),
            "invalid_input",
        ),
        (
            json!({"sku": sku_name, "delta": 1, "reason": "x", "idempotency_key": "bad key"}),
            "invalid_input",
        ),
        (json!({"sku": sku_name, "delta": 1, "reason": "x"}), "invalid_input"),
    ];
    for (args, code) in cases {
        let e = ops.err("adjust_stock", args.clone()).await;
        assert_eq!(e["code"], code, "{args}: {e}");
    }
    assert_eq!(gw.store().get_stock(&sku).await.unwrap(), Some(before + 5));
    // Exactly one audit record, naming who, why and what was left.
    let log = gw.audit_log(Some(sku_name), 10).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].actor, "api-key:ops");
    assert_eq!(log[0].reason, "delivery from the mill");
    assert_eq!(log[0].delta, 5);
    assert_eq!(log[0].stock_after, Some(before + 5));
    assert_eq!(log[0].id, first["audit_id"].as_str().unwrap());
}

#[tokio::test]
async fn refunds_reverse_the_fee_and_the_fee_report_is_the_ledger() {
    let user = User::new();
    let server = server(&user).await;
    let ops = admin(&server).await;
    let bought = buy(&server, &user, "success_token").await;
    assert_eq!(bought["status"], "paid", "{bought}");
    let order_id = bought["order_id"].as_str().unwrap().to_owned();
    let paid = bought["charged"]["amount"].as_i64().unwrap();
    let fee = bought["fee"]["amount"].as_i64().unwrap();

    let listed = ops.ok("list_orders", json!({"status": "paid"})).await;
    assert_eq!(listed["orders"][0]["id"], order_id.as_str(), "{listed}");
    assert_eq!(listed["orders"][0]["fee"]["amount"], fee);
    let none = ops.ok("list_orders", json!({"status": "refunded"})).await;
    assert_eq!(none["orders"], json!([]));
    let bad = ops.err("list_orders", json!({"status": "lost"})).await;
    assert_eq!(bad["code"], "invalid_input");

    let today = time::OffsetDateTime::now_utc().date().to_string();
    let window = json!({"from": today, "to": today, "currency": "USD"});
    let before = ops.ok("fee_report", window.clone()).await;
    assert_eq!(before["entries"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before["totals"]["USD"]["amount"], fee);

    // Part first: the order stays paid and keeps its fee.
    let partial = json!({"order_id": order_id, "amount": 100, "reason": "scratched box",
                         "idempotency_key": "ref-1"});
    let done = ops.ok("refund_order", partial.clone()).await;
    assert_eq!(done["status"], "paid", "{done}");
    assert_eq!(done["amount"], 100);
    assert_eq!(done["fee_reversed"], false);
    let replay = ops.ok("refund_order", partial).await;
    assert_eq!(replay["replayed"], true);
    assert_eq!(refunds(&server).len(), 1, "a replay refunds nothing more");
    // Then the rest: the order is refunded and the fee reversed.
    let rest = json!({"order_id": order_id, "reason": "customer returned it",
                      "idempotency_key": "ref-2"});
    let done = ops.ok("refund_order", rest.clone()).await;
    assert_eq!(done["status"], "refunded", "{done}");
    assert_eq!(done["amount"], paid - 100);
    assert_eq!(done["total_refunded"], paid);
    assert_eq!(done["fee_reversed"], true);
    assert_eq!(ops.ok("refund_order", rest).await["replayed"], true);
    let amounts: Vec<i64> = refunds(&server).into_iter().map(|(_, a)| a).collect();
    assert_eq!(amounts, vec![100, paid - 100]);
    let more = json!({"order_id": order_id, "amount": 1, "reason": "again",
                      "idempotency_key": "ref-3"});
    let refused = ops.err("refund_order", more).await;
    assert_eq!(refused["code"], "invalid_input", "nothing is left to refund: {refused}");

    // The refunds are in the order's own audit trail, by the operator.
    let id = OrderId::parse(&order_id).unwrap();
    let events = server.app_gateway.store().order_events(&id).await.unwrap();
    let by_ops: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, OrderEventKind::Refund { .. }))
        .map(|e| (e.actor.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        by_ops,
        vec![("api-key:ops", "scratched box"), ("api-key:ops", "customer returned it")]
    );

    // The ledger now holds the fee and its reversal, summing to zero, and
    // the report and the REST route agree with the store.
    let after = ops.ok("fee_report", window.clone()).await;
    let kinds: Vec<&str> =
        after["entries"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["fee", "reversal"], "{after}");
    assert_eq!(after["totals"]["USD"]["amount"], 0);
    let rest: Value = reqwest::Client::new()
        .get(format!("{}/admin/ledger?from={today}&to={today}&currency=USD", server.base))
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["entries"], after["entries"]);
    assert_eq!(rest["totals"], after["totals"]);
    let from = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let to = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let stored = server.app_gateway.store().ledger_entries(from, to, None).await.unwrap();
    assert_eq!(serde_json::to_value(&stored).unwrap(), after["entries"]);

    for (args, code) in [
        (json!({"from": "yesterday", "to": today}), "invalid_input"),
        (json!({"from": today, "to": today, "currency": "ZZZ"}), "invalid_currency"),
        (json!({"from": "2026-02-01", "to": "2026-01-01"}), "invalid_input"),
    ] {
        assert_eq!(ops.err("fee_report", args.clone()).await["code"], code, "{args}");
    }
}

#[tokio::test]
async fn an_escalated_checkout_is_pending_for_the_operator() {
    let user = User::new();
    let server = server(&user).await;
    let ops = admin(&server).await;
    let empty = ops.ok("pending_escalations", json!({})).await;
    assert_eq!(empty["escalations"], json!([]));
    // A payment that waits for the buyer (3-D Secure) escalates.
    let bought = buy(&server, &user, "requires_action").await;
    let checkout_id = bought["checkout_id"].as_str().unwrap().to_owned();
    let pending = ops.ok("pending_escalations", json!({"limit": 10})).await;
    let list = pending["escalations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{pending} after {bought}");
    assert_eq!(list[0]["checkout_id"], checkout_id.as_str());
    assert_eq!(list[0]["status"], "requires_escalation");
    assert!(list[0]["continue_url"].as_str().is_some_and(|u| u.starts_with("http")), "{pending}");
    assert_eq!(list[0]["expired"], false);
}
