//! `agentgate demo`: a complete autonomous purchase in about a second, for
//! a newcomer to watch. An in-process MCP client (rmcp, over an in-memory
//! pipe) plays the buying agent against the gateway's own MCP server on
//! the embedded demo store, and every step is printed: the user's key,
//! search, cart, negotiation, the AP2 mandates, the checkout, a retry that
//! charges nothing, and tracking.
//!
//! The agent uses nothing a real one would not have: the five tools, its
//! user's key, and the merchant's public JWKS to check the receipt.

use std::time::Instant;

use rmcp::model::CallToolRequestParams;
use rmcp::ServiceExt;
use serde_json::{json, Value};

use super::{Edge, GatewayServer};
use crate::ap2::jws;
use crate::ap2::mandates::{CartClaims, IntentClaims, PaymentClaims, MANDATE_TYP};
use crate::ap2::PrivateKey;
use crate::domain::{Currency, Money};
use crate::gateway::RECEIPT_TYP;

/// What can stop the demo: a tool answering an error, or a broken pipe.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// What the demo needs from the application it runs against.
pub struct DemoTarget {
    pub edge: std::sync::Arc<Edge>,
    /// The merchant's public keys, to verify the receipt like an agent
    /// would from `/.well-known/jwks.json`.
    pub merchant_jwks: Value,
    /// Counts the processor's charges, to show the retry charged nothing.
    pub charges: Box<dyn Fn() -> usize + Send + Sync>,
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn call(client: &Client, tool: &str, args: Value) -> Result<Value, DemoError> {
    let arguments = args.as_object().cloned().unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await?;
    let body = result.structured_content.unwrap_or(Value::Null);
    if result.is_error == Some(true) {
        return Err(format!("{tool} failed: {body}").into());
    }
    Ok(body)
}

fn step(n: u32, title: &str) {
    println!("\n{n:>2}. {title}");
}

fn say(line: impl AsRef<str>) {
    println!("    {}", line.as_ref());
}

fn shown(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

fn short(token: &str) -> String {
    match token.get(..24) {
        Some(head) => format!("{head}… ({} bytes)", token.len()),
        None => token.to_owned(),
    }
}

/// Runs the purchase against `target`, signing as `user` (whose key the
/// merchant trusts). Prints to stdout.
pub async fn run(target: DemoTarget, user: PrivateKey) -> Result<(), DemoError> {
    let started = Instant::now();
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let server = GatewayServer::new(target.edge);
    let serving = tokio::spawn(async move {
        match server.serve(server_io).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => eprintln!("demo server stopped: {e}"),
        }
    });
    let client: Client = ().serve(client_io).await?;
    let tools = client.list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    say(format!("an MCP client is connected in-process; tools: {}", names.join(", ")));

    step(2, "The user's signing key");
    say(format!("ES256 key {} generated; the merchant trusts its public half", user.kid()));

    step(3, "scout_inventory: the agent looks for a linen shirt");
    let page = call(
        &client,
        "scout_inventory",
        json!({"query": "linen shirt", "in_stock_only": true, "limit": 3}),
    )
    .await?;
    let products = page["products"].as_array().cloned().unwrap_or_default();
    for p in &products {
        let v = &p["variants"][0];
        say(format!(
            "{} — {} ({}, {} variants)",
            shown(&p["title"]),
            shown(&v["price_display"]),
            shown(&v["stock_state"]),
            p["variants"].as_array().map_or(0, Vec::len)
        ));
    }
    let variant = products
        .iter()
        .flat_map(|p| p["variants"].as_array().cloned().unwrap_or_default())
        .find(|v| v["stock_state"] == "in_stock")
        .ok_or("the demo store has no linen shirt in stock")?;
    say(format!("picks {} at {}", shown(&variant["variant_id"]), shown(&variant["price_display"])));

    step(4, "manage_cart: a cart with that variant");
    let cart = call(
        &client,
        "manage_cart",
        json!({"action": "create", "variant_id": variant["variant_id"], "quantity": 1}),
    )
    .await?;
    let cart_id = cart["cart_id"].clone();
    say(format!("cart {} — subtotal {}", shown(&cart_id), shown(&cart["subtotal_display"])));

    step(5, "negotiate_terms: UCP negotiation, a checkout, buyer and shipping");
    let mut terms = call(
        &client,
        "negotiate_terms",
        json!({"cart_id": cart_id, "buyer_email": "ada@example.com", "buyer_first_name": "Ada",
               "ship_to_name": "Ada Lovelace", "ship_to_street": "1 Main St",
               "ship_to_city": "Springfield", "ship_to_region": "IL",
               "ship_to_postal_code": "62701", "ship_to_country": "US"}),
    )
    .await?;
    let checkout_id = terms["checkout"]["checkout_id"].clone();
    say(format!(
        "UCP {} with {} capabilities; checkout {} is {}",
        shown(&terms["ucp_version"]),
        terms["capabilities"].as_array().map_or(0, Vec::len),
        shown(&checkout_id),
        shown(&terms["checkout"]["status"])
    ));
    if terms["checkout"]["status"] != "ready_for_complete" {
        let option = terms["checkout"]["fulfillment_options"][0]["id"].clone();
        terms = call(
            &client,
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                   "fulfillment_option_id": option}),
        )
        .await?;
        say(format!("chose shipping {}: {}", shown(&option), shown(&terms["checkout"]["status"])));
    }
    let totals = &terms["checkout"]["totals"];
    say(format!(
        "subtotal {}, shipping {}, tax {}, total {}",
        shown(&totals["subtotal"]["display"]),
        shown(&totals["fulfillment"]["display"]),
        shown(&totals["tax"]["display"]),
        shown(&totals["total"]["display"])
    ));
    let total = totals["total"]["amount"].as_i64().ok_or("no total")?;

    step(6, "The user signs an intent mandate (AP2)");
    let now = time::OffsetDateTime::now_utc();
    let budget = total + 5_000;
    let intent = IntentClaims::new(
        "urn:agentgate:demo-user",
        Money::new(budget, Currency::usd()),
        "a linen shirt for the summer",
        now,
        time::Duration::hours(1),
        &mut rand_core::OsRng,
    )
    .sign(&user)?;
    say(format!(
        "\"a linen shirt for the summer\", up to {}: {}",
        Money::new(budget, Currency::usd()),
        short(&intent)
    ));

    step(7, "negotiate_terms with the intent: the merchant signs the cart");
    let terms = call(
        &client,
        "negotiate_terms",
        json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": intent}),
    )
    .await?;
    let mandate = &terms["cart_mandate"];
    let cart_mandate = mandate["token"].as_str().ok_or("no cart mandate was issued")?.to_owned();
    say(format!(
        "cart mandate for exactly {}, valid until {}: {}",
        shown(&mandate["total"]["display"]),
        shown(&mandate["expires_at"]),
        short(&cart_mandate)
    ));

    step(8, "The user confirms the total and signs the payment mandate");
    let claims: CartClaims = jws::parse_claims(
        jws::decode_compact(&cart_mandate, Some(MANDATE_TYP))?.payload_unverified(),
    )?;
    let payment = PaymentClaims::for_cart(
        &cart_mandate,
        &claims,
        "success_token",
        "CARD",
        time::OffsetDateTime::now_utc(),
        time::Duration::minutes(10),
        &mut rand_core::OsRng,
    )?
    .sign(&user)?;
    say(format!(
        "pays {} with the sandbox card: {}",
        shown(&mandate["total"]["display"]),
        short(&payment)
    ));

    step(9, "execute_checkout: mandates → guardrail → fee → payment → order");
    let key = uuid::Uuid::new_v4().to_string();
    let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                      "cart_mandate": cart_mandate, "payment_mandate": payment,
                      "idempotency_key": key});
    let charges_before = (target.charges)();
    let done = call(&client, "execute_checkout", args.clone()).await?;
    say(format!(
        "order {} is {}: charged {}, platform fee {}",
        shown(&done["order_id"]),
        shown(&done["status"]),
        shown(&done["charged"]["display"]),
        shown(&done["fee"]["display"])
    ));
    let receipt = done["receipt"].as_str().unwrap_or_default();
    let merchant = crate::ap2::PublicKeySet::from_jwks_value(&target.merchant_jwks)?;
    let unverified = jws::decode_compact(receipt, Some(RECEIPT_TYP))?;
    let key_for_receipt = merchant.find(unverified.kid(), time::OffsetDateTime::now_utc())?;
    unverified.verify(key_for_receipt.verifying_key())?;
    say(format!("receipt verified against the merchant's JWKS: {}", short(receipt)));

    step(10, "The agent retries with the same idempotency key (a lost response, say)");
    let again = call(&client, "execute_checkout", args).await?;
    say(format!(
        "same order {}, replayed: {}, charges in total: {}",
        shown(&again["order_id"]),
        again["replayed"],
        (target.charges)() - charges_before
    ));

    step(11, "track_order");
    let order = call(&client, "track_order", json!({"order_id": done["order_id"]})).await?;
    say(format!("{} is {}", shown(&order["order_id"]), shown(&order["status"])));
    for event in order["events"].as_array().cloned().unwrap_or_default() {
        say(format!("{}  {}", shown(&event["at"]), shown(&event["description"])));
    }

    println!("\nA complete purchase in {} ms.", started.elapsed().as_millis());
    client.cancel().await?;
    serving.abort();
    Ok(())
}
