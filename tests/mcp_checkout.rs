//! A whole purchase through the MCP gateway tools, as an agent makes it:
//! search, cart, negotiate, mandates, execute, track; and the ways it must
//! refuse: a forged mandate, a replayed key, a reused key with new
//! arguments, someone else's order.

mod mcp_support;

use agentgate::adapters::payments::sandbox::SandboxCall;
use mcp_support::{start_with, Client, User};
use serde_json::{json, Value};

/// Searches, builds a one-line cart and negotiates it to ready, returning
/// (cart_id, checkout_id, total).
async fn ready_checkout(client: &Client) -> (String, String, i64) {
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

    // First call: nothing about the buyer yet, so the checkout says what
    // is missing.
    let terms = client.ok("negotiate_terms", json!({"cart_id": cart_id})).await;
    let checkout = &terms["checkout"];
    assert_eq!(checkout["status"], "incomplete", "{terms}");
    let missing: Vec<&str> =
        checkout["missing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(missing.contains(&"$.buyer.email"), "{missing:?}");
    assert!(missing.contains(&"$.fulfillment.destination"), "{missing:?}");
    assert!(terms["next_step"].as_str().unwrap().contains("Ask the user"), "{terms}");
    assert_eq!(terms["ucp_version"], "2026-04-08");
    let checkout_id = checkout["checkout_id"].as_str().unwrap().to_owned();

    // Second call: the buyer and the address; shipping options appear.
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                   "buyer_email": "ada@example.com", "buyer_first_name": "Ada",
                   "ship_to_name": "Ada Lovelace", "ship_to_street": "1 Main St",
                   "ship_to_city": "Springfield", "ship_to_region": "IL",
                   "ship_to_postal_code": "62701", "ship_to_country": "us"}),
        )
        .await;
    let options = terms["checkout"]["fulfillment_options"].as_array().unwrap().clone();
    assert!(!options.is_empty(), "{terms}");
    assert_eq!(terms["checkout"]["ship_to"]["country"], "US");
    let terms = if terms["checkout"]["status"] == "ready_for_complete" {
        terms
    } else {
        client
            .ok(
                "negotiate_terms",
                json!({"cart_id": cart_id, "checkout_id": checkout_id,
                       "fulfillment_option_id": options[0]["id"]}),
            )
            .await
    };
    assert_eq!(terms["checkout"]["status"], "ready_for_complete", "{terms}");
    assert_eq!(terms["checkout"]["missing"], json!([]));
    assert_eq!(terms["checkout"]["buyer_email"], "ada@example.com", "earlier answers are kept");
    let total = terms["checkout"]["totals"]["total"]["amount"].as_i64().unwrap();
    (cart_id, checkout_id, total)
}

#[tokio::test]
async fn a_confirmed_purchase_end_to_end() {
    let user = User::new();
    let server = start_with(|s| user.trust(s)).await;
    for version in ["2025-11-25", "2026-07-28"] {
        let client = Client::connect(&format!("{}/mcp", server.base), version).await;
        let (cart_id, checkout_id, total) = ready_checkout(&client).await;

        // The user's intent, then the merchant's cart mandate over it.
        let intent = user.intent(total + 10_000);
        let terms = client
            .ok(
                "negotiate_terms",
                json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": intent}),
            )
            .await;
        let mandate = &terms["cart_mandate"];
        assert_eq!(mandate["total"]["amount"], total, "{terms}");
        assert_eq!(mandate["checkout_id"], checkout_id.as_str());
        assert!(terms["next_step"].as_str().unwrap().contains("execute_checkout"));
        assert!(terms["ap2_checkout"].is_null(), "not locked to AP2 v0.2: {terms}");
        let cart_mandate = mandate["token"].as_str().unwrap().to_owned();
        let payment = user.payment(&cart_mandate, "success_token");

        let charges_before = charges(&server);
        let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                          "cart_mandate": cart_mandate, "payment_mandate": payment,
                          "idempotency_key": format!("buy-{version}")});
        let result = client.ok("execute_checkout", args.clone()).await;
        assert_eq!(result["status"], "paid", "{result}");
        assert_eq!(result["charged"]["amount"], total);
        assert_eq!(result["replayed"], false);
        assert!(result["fee"]["amount"].as_i64().unwrap() >= 0);
        assert_eq!(result["receipt"].as_str().unwrap().split('.').count(), 3, "a compact JWS");
        let order_id = result["order_id"].as_str().unwrap().to_owned();
        assert_eq!(charges(&server), charges_before + 1);

        // The same call again (a retry after a timeout): the same order, no
        // second charge.
        let again = client.ok("execute_checkout", args.clone()).await;
        assert_eq!(again["order_id"], order_id.as_str());
        assert_eq!(again["receipt"], result["receipt"]);
        assert_eq!(again["replayed"], true);
        assert_eq!(charges(&server), charges_before + 1, "no second charge");

        // The same key with other arguments is refused.
        let mut changed = args.clone();
        changed["payment_mandate"] = json!(user.payment(&cart_mandate, "success_token"));
        let conflict = client.err("execute_checkout", changed).await;
        assert_eq!(conflict["code"], "idempotency_conflict", "{conflict}");
        assert_eq!(charges(&server), charges_before + 1);

        // Tracking: the tool and the resource tell the same story.
        let order = client.ok("track_order", json!({"order_id": order_id})).await;
        assert_eq!(order["status"], "paid");
        assert_eq!(order["totals"]["total"]["amount"], total);
        assert_eq!(order["checkout_id"], checkout_id.as_str());
        assert!(!order["events"].as_array().unwrap().is_empty());
        let uri = format!("agentgate://orders/{order_id}");
        let read = client.request("resources/read", json!({"uri": uri}), Some(&uri)).await;
        let doc: Value =
            serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(doc["order_id"], order_id.as_str());
        assert_eq!(doc["status"], "paid");
    }
}

fn charges(server: &mcp_support::Server) -> usize {
    server
        .payments
        .calls()
        .iter()
        .filter(|c| matches!(c, SandboxCall::Charge { replayed: false, .. }))
        .count()
}

#[tokio::test]
async fn forged_and_insufficient_mandates_are_refused() {
    let user = User::new();
    let server = start_with(|s| user.trust(s)).await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2025-11-25").await;
    let (cart_id, checkout_id, total) = ready_checkout(&client).await;

    // An intent too small for the total gets no cart mandate, and says why.
    let small = user.intent(total - 1);
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": small}),
        )
        .await;
    assert!(terms["cart_mandate"].is_null(), "{terms}");
    assert_eq!(terms["cart_mandate_error"]["code"], "amount_exceeds_intent", "{terms}");

    // An intent signed by a key the merchant does not know.
    let stranger = User::new();
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                   "intent_mandate": stranger.intent(total + 100)}),
        )
        .await;
    assert!(terms["cart_mandate"].is_null(), "{terms}");
    let code = terms["cart_mandate_error"]["code"].as_str().unwrap_or_default();
    assert!(matches!(code, "unknown_kid" | "mandate_invalid_signature"), "{terms}");

    // A good chain with a forged payment signature fails at execute, with
    // the code, and charges nothing.
    let intent = user.intent(total + 100);
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": intent}),
        )
        .await;
    let cart_mandate = terms["cart_mandate"]["token"].as_str().unwrap().to_owned();
    let payment = user.payment(&cart_mandate, "success_token");
    let (head, rest) = payment.rsplit_once('.').unwrap();
    // Flip the first character of the signature: still base64url, no
    // longer the signature.
    let first = if rest.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{first}{}", rest.get(1..).unwrap_or_default());
    let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                      "cart_mandate": cart_mandate, "payment_mandate": forged,
                      "idempotency_key": "forged-1"});
    let refused = client.err("execute_checkout", args).await;
    assert_eq!(refused["code"], "mandate_invalid_signature", "{refused}");
    assert_eq!(charges(&server), 0);

    // The refusal released the key: the corrected call with the same key
    // goes through.
    let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                      "cart_mandate": cart_mandate, "payment_mandate": payment,
                      "idempotency_key": "forged-1"});
    let done = client.ok("execute_checkout", args).await;
    assert_eq!(done["status"], "paid");

    // Mistakes in the arguments are tool errors too.
    let cases = [
        (
            json!({"checkout_id": "nope", "intent_mandate": "a", "cart_mandate": "b",
                "payment_mandate": "c", "idempotency_key": "k"}),
            "invalid_input",
        ),
        (
            json!({"checkout_id": checkout_id, "intent_mandate": "a", "cart_mandate": "b",
                "payment_mandate": "c", "idempotency_key": "has spaces"}),
            "invalid_input",
        ),
        (json!({"checkout_id": checkout_id}), "invalid_input"),
        // A v0.1 chain needs all three mandates; a v0.2 checkout mandate
        // does not mix with them.
        (
            json!({"checkout_id": checkout_id, "intent_mandate": intent,
                "payment_mandate": payment, "idempotency_key": "k"}),
            "mandate_malformed",
        ),
        (
            json!({"checkout_id": checkout_id, "cart_mandate": cart_mandate,
                "payment_mandate": payment, "idempotency_key": "k"}),
            "mandate_malformed",
        ),
        (
            json!({"checkout_id": checkout_id, "checkout_mandate": "a~b~",
                "intent_mandate": intent, "cart_mandate": cart_mandate,
                "payment_mandate": payment, "idempotency_key": "k"}),
            "mandate_malformed",
        ),
    ];
    for (args, code) in cases {
        assert_eq!(client.err("execute_checkout", args.clone()).await["code"], code, "{args}");
    }
    let not_ready = client
        .err("negotiate_terms", json!({"cart_id": cart_id, "checkout_id": checkout_id}))
        .await;
    assert!(
        matches!(not_ready["code"].as_str(), Some("illegal_transition" | "invalid_input")),
        "{not_ready}"
    );
}

/// Every tool's `structuredContent` validates against the `outputSchema`
/// the same server advertises, so a validating client never rejects a
/// result: each tool is called in its different outcomes and each answer
/// checked.
#[tokio::test]
async fn structured_content_matches_each_output_schema() {
    let user = User::new();
    let server = start_with(|s| user.trust(s)).await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2025-11-25").await;
    let tools = client.request("tools/list", json!({}), None).await;
    let schemas: std::collections::HashMap<String, Value> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["outputSchema"].clone()))
        .collect();
    assert_eq!(schemas.len(), 5, "{:?}", schemas.keys());
    for (name, schema) in &schemas {
        assert_eq!(schema["type"], "object", "{name} declares an object outputSchema");
    }
    let mut checked = std::collections::HashSet::new();
    let mut check = |name: &str, output: &Value| {
        let validator = jsonschema::validator_for(&schemas[name]).expect("a valid JSON Schema");
        let errors: Vec<String> = validator.iter_errors(output).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{output}");
        checked.insert(name.to_owned());
    };

    for args in
        [json!({}), json!({"query": "shirt", "in_stock_only": true}), json!({"query": "zzzz"})]
    {
        check("scout_inventory", &client.ok("scout_inventory", args).await);
    }
    check("manage_cart", &client.ok("manage_cart", json!({"action": "create"})).await);
    let (cart_id, checkout_id, total) = ready_checkout(&client).await;
    check(
        "manage_cart",
        &client.ok("manage_cart", json!({"action": "get", "cart_id": cart_id})).await,
    );
    let other = client.ok("manage_cart", json!({"action": "create"})).await;
    let incomplete = client
        .ok("negotiate_terms", json!({"cart_id": other["cart_id"], "discount_code": "NOPE"}))
        .await;
    check("negotiate_terms", &incomplete);
    let refused = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                                      "intent_mandate": user.intent(1)}),
        )
        .await;
    assert!(refused["cart_mandate_error"].is_object());
    check("negotiate_terms", &refused);
    let intent = user.intent(total);
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                                      "intent_mandate": intent}),
        )
        .await;
    check("negotiate_terms", &terms);
    let cart_mandate = terms["cart_mandate"]["token"].as_str().unwrap().to_owned();
    let args = json!({"checkout_id": checkout_id, "intent_mandate": intent,
                      "cart_mandate": cart_mandate,
                      "payment_mandate": user.payment(&cart_mandate, "success_token"),
                      "idempotency_key": "schema-1"});
    let result = client.ok("execute_checkout", args.clone()).await;
    check("execute_checkout", &result);
    check("execute_checkout", &client.ok("execute_checkout", args).await);
    let order = client.ok("track_order", json!({"order_id": result["order_id"]})).await;
    check("track_order", &order);
    for name in schemas.keys() {
        assert!(checked.contains(name), "no sample call for {name}");
    }
}

/// With `agent_profile_url`, the capabilities are negotiated against the
/// platform's profile and its published `signing_keys` verify the user's
/// mandates, with no key configured at the merchant.
#[tokio::test]
async fn the_platform_profile_drives_negotiation_and_mandate_keys() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let user = User::new();
    let platform = MockServer::start().await;
    let checkout = json!([{"version": "2026-04-08"}]);
    let profile = json!({
        "ucp": {"version": "2026-04-08", "capabilities": {
            "dev.ucp.shopping.checkout": checkout,
            "dev.ucp.shopping.fulfillment": [{"version": "2026-04-08", "extends": "dev.ucp.shopping.checkout"}],
        }},
        "signing_keys": [user.key.public().to_jwk()],
    });
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(profile)
                .insert_header("Cache-Control", "public, max-age=300"),
        )
        .mount(&platform)
        .await;
    let profile_url = format!("{}/.well-known/ucp", platform.uri());
    let server = start_with(|s| s.allow_private_profile_hosts = true).await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2026-07-28").await;
    let (cart_id, checkout_id, total) = ready_checkout(&client).await;

    let intent = user.intent(total);
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                   "agent_profile_url": profile_url, "intent_mandate": intent}),
        )
        .await;
    let names: Vec<&str> = terms["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["dev.ucp.shopping.checkout", "dev.ucp.shopping.fulfillment"], "{terms}");
    let cart_mandate = terms["cart_mandate"]["token"].as_str().expect("issued").to_owned();
    let result = client
        .ok(
            "execute_checkout",
            json!({"checkout_id": checkout_id, "intent_mandate": intent,
                   "cart_mandate": cart_mandate,
                   "payment_mandate": user.payment(&cart_mandate, "success_token"),
                   "agent_profile_url": profile_url, "idempotency_key": "profile-1"}),
        )
        .await;
    assert_eq!(result["status"], "paid");

    // Profiles that cannot be used are tool errors with UCP's codes.
    let cases = [
        ("ftp://example.com/profile".to_owned(), "invalid_profile_url"),
        (format!("{}/missing", platform.uri()), "profile_unreachable"),
    ];
    for (url, code) in cases {
        let body = client
            .err("negotiate_terms", json!({"cart_id": cart_id, "agent_profile_url": url}))
            .await;
        assert_eq!(body["code"], code, "{url}: {body}");
    }
}

/// Orders are visible to the caller who placed them only.
#[tokio::test]
async fn another_callers_order_reads_as_not_found() {
    use agentgate::gateway::Caller;
    let user = User::new();
    let server = mcp_support::start_wrapped(
        |s| user.trust(s),
        |router| {
            router.layer(axum::middleware::map_request(|mut req: axum::extract::Request| async {
                let caller = match req.headers().get("x-test-subject").and_then(|v| v.to_str().ok())
                {
                    Some(s) => Caller::subject(s),
                    None => Caller::anonymous(),
                };
                req.extensions_mut().insert(caller);
                req
            }))
        },
    )
    .await;
    let url = format!("{}/mcp", server.base);
    let alice =
        Client::connect_with_headers(&url, "2025-11-25", &[("x-test-subject", "alice")]).await;
    let bob = Client::connect_with_headers(&url, "2025-11-25", &[("x-test-subject", "bob")]).await;
    let (cart_id, checkout_id, total) = ready_checkout(&alice).await;
    let intent = user.intent(total);
    let terms = alice
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id, "intent_mandate": intent}),
        )
        .await;
    let cart_mandate = terms["cart_mandate"]["token"].as_str().unwrap().to_owned();
    let order = alice
        .ok(
            "execute_checkout",
            json!({"checkout_id": checkout_id, "intent_mandate": intent,
                   "cart_mandate": cart_mandate,
                   "payment_mandate": user.payment(&cart_mandate, "success_token"),
                   "idempotency_key": "alice-1"}),
        )
        .await;
    let order_id = order["order_id"].as_str().unwrap();
    assert_eq!(alice.ok("track_order", json!({"order_id": order_id})).await["status"], "paid");
    assert_eq!(bob.err("track_order", json!({"order_id": order_id})).await["code"], "not_found");
    let uri = format!("agentgate://orders/{order_id}");
    let read = bob.post("resources/read", json!({"uri": uri}), Some(&uri)).await;
    assert!(read.body["error"].is_object(), "{}", read.body);
    // Bob cannot use Alice's checkout either, even with her key.
    let replay =
        bob.err("negotiate_terms", json!({"cart_id": cart_id, "checkout_id": checkout_id})).await;
    assert_eq!(replay["code"], "not_found", "{replay}");
}
