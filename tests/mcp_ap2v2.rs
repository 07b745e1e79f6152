//! AP2 v0.2 through the MCP gateway tools: a platform whose profile
//! declares `dev.ucp.shopping.ap2_mandate` gets a checkout locked to v0.2;
//! `negotiate_terms` hands the agent the merchant's checkout JWT and the
//! values both mandates bind, and `execute_checkout` takes the v0.2
//! checkout and payment mandates, once per key. A v0.1 chain on such a
//! checkout, tampered mandates and wrong combinations of arguments are
//! refused with their codes, and nothing is charged for them.

mod ap2v2_support;
mod mcp_support;

use agentgate::adapters::payments::sandbox::SandboxCall;
use agentgate::ap2::sdjwt;
use agentgate::ap2::v02;
use agentgate::ap2::{jws, KeyRing};
use ap2v2_support::*;
use mcp_support::{start_with, Client, Server};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AP2: &str = "dev.ucp.shopping.ap2_mandate";

/// A platform profile served locally, declaring every capability the
/// business offers (the AP2 extension too), publishing the platform key
/// that signs mandate roots.
async fn platform(server: &MockServer) -> String {
    let names: serde_json::Map<String, Value> = agentgate::ucp::profile::CAPABILITIES
        .iter()
        .map(|c| (c.name.to_owned(), json!([{"version": "2026-04-08"}])))
        .collect();
    let profile = json!({"ucp": {"version": "2026-04-08", "capabilities": names},
                         "signing_keys": [key(PLATFORM).public().to_jwk()]});
    Mock::given(method("GET"))
        .and(path("/.well-known/ucp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(profile))
        .mount(server)
        .await;
    format!("{}/.well-known/ucp", server.uri())
}

async fn shop() -> Server {
    start_with(|s| {
        s.allow_private_profile_hosts = true;
        s.public_base_url = MERCHANT_URL.into();
        s.merchant_name = MERCHANT_NAME.into();
    })
    .await
}

fn charges(server: &Server) -> usize {
    server
        .payments
        .calls()
        .iter()
        .filter(|c| matches!(c, SandboxCall::Charge { replayed: false, .. }))
        .count()
}

/// A one-line cart negotiated to ready for the platform at `profile`;
/// returns (checkout_id, the last negotiate_terms answer).
async fn ready_checkout(client: &Client, profile: &str) -> (String, Value) {
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
    // Not ready yet (no buyer, no address): nothing to sign over.
    let terms = client
        .ok("negotiate_terms", json!({"cart_id": cart_id, "agent_profile_url": profile}))
        .await;
    assert_eq!(terms["checkout"]["status"], "incomplete", "{terms}");
    assert!(terms["ap2_checkout"].is_null(), "{terms}");
    let checkout_id = terms["checkout"]["checkout_id"].as_str().unwrap().to_owned();
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id, "agent_profile_url": profile,
                   "buyer_email": "ada@example.com", "buyer_first_name": "Ada",
                   "ship_to_name": "Ada Lovelace", "ship_to_street": "1 Main St",
                   "ship_to_city": "Springfield", "ship_to_region": "IL",
                   "ship_to_postal_code": "62701", "ship_to_country": "US"}),
        )
        .await;
    let option = terms["checkout"]["fulfillment_options"][0]["id"].clone();
    // An intent mandate is of no use on a locked checkout: no cart mandate.
    let terms = client
        .ok(
            "negotiate_terms",
            json!({"cart_id": cart_id, "checkout_id": checkout_id,
                   "agent_profile_url": profile, "fulfillment_option_id": option,
                   "intent_mandate": "a.b.c"}),
        )
        .await;
    assert_eq!(terms["checkout"]["status"], "ready_for_complete", "{terms}");
    assert!(terms["cart_mandate"].is_null() && terms["cart_mandate_error"].is_null(), "{terms}");
    (checkout_id, terms)
}

/// The agent's side: the checkout JWT from `ap2_checkout`, checked against
/// the merchant's keys, as the fixture's builder takes it.
fn agent_fixture(server: &Server, terms: &Value) -> Fx {
    let ap2 = &terms["ap2_checkout"];
    assert_eq!(ap2["ap2_version"], "0.2", "{terms}");
    let checkout_jwt = ap2["checkout_jwt"].as_str().expect("a checkout JWT").to_owned();
    let checkout_hash = ap2["checkout_hash"].as_str().unwrap().to_owned();
    assert_eq!(checkout_hash, sdjwt::hash(&checkout_jwt));
    assert_eq!(ap2["nonce"], checkout_hash.as_str());
    assert_eq!(ap2["aud"], MERCHANT_URL);
    assert_eq!(ap2["payee"], json!(merchant()));
    let total = ap2["payment_amount"]["amount"].as_i64().unwrap();
    assert_eq!(terms["checkout"]["totals"]["total"]["amount"], total);

    // The JWT is the merchant's signature over the checkout it carries:
    // detached, it verifies as ap2.merchant_authorization of that checkout.
    let (header, payload, signature) = segments(&checkout_jwt);
    let checkout: Value = serde_json::from_slice(&jws::b64url_decode(&payload).unwrap()).unwrap();
    assert_eq!(checkout["id"], terms["checkout"]["checkout_id"]);
    let mut response = checkout.clone();
    response["ap2"] = json!({"merchant_authorization": format!("{header}..{signature}")});
    let now = time::OffsetDateTime::now_utc();
    v02::verify_merchant_authorization(&response, server.app_gateway.keys().public_keys(), now)
        .expect("the merchant's key verifies the checkout JWT");
    let auth = v02::checkout_jwt_of(&response).unwrap();
    assert_eq!(
        (auth.checkout_jwt.as_str(), auth.checkout_hash.as_str()),
        (&*checkout_jwt, &*checkout_hash)
    );

    Fx { now, ring: KeyRing::new(key(OTHER)), checkout, auth, total: usd(total) }
}

#[tokio::test]
async fn an_ap2_platform_pays_with_v02_mandates_over_mcp() {
    let server = shop().await;
    let mock = MockServer::start().await;
    let profile = platform(&mock).await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2025-11-25").await;
    let (checkout_id, terms) = ready_checkout(&client, &profile).await;

    let names: Vec<&str> = terms["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&AP2), "{terms}");
    let next = terms["next_step"].as_str().unwrap();
    assert!(next.contains("AP2 v0.2") && next.contains("checkout_mandate"), "{next}");
    let fx = agent_fixture(&server, &terms);

    // The answer, ap2_checkout included, is what the advertised
    // outputSchema describes.
    let tools = client.request("tools/list", json!({}), None).await;
    let schema = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "negotiate_terms")
        .expect("negotiate_terms is listed")["outputSchema"]
        .clone();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator.iter_errors(&terms).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{terms}");

    // Locked: a v0.1 chain is mandate_required, and nothing is charged.
    let v01 = json!({"checkout_id": checkout_id, "intent_mandate": "a.b.c",
                     "cart_mandate": "a.b.c", "payment_mandate": "a.b.c",
                     "agent_profile_url": profile, "idempotency_key": "v01-1"});
    let refused = client.err("execute_checkout", v01).await;
    assert_eq!(refused["code"], "mandate_required", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("v0.2"), "{refused}");

    // Mixed or incomplete arguments are mandate_malformed before anything
    // is looked at.
    let built = fx.build(&fx.spec_kb());
    let cases = [
        json!({"checkout_id": checkout_id, "checkout_mandate": built.checkout,
               "intent_mandate": "a.b.c", "payment_mandate": built.payment,
               "idempotency_key": "mix-1"}),
        json!({"checkout_id": checkout_id, "checkout_mandate": built.checkout,
               "cart_mandate": "a.b.c", "payment_mandate": built.payment,
               "idempotency_key": "mix-2"}),
        json!({"checkout_id": checkout_id, "payment_mandate": built.payment,
               "idempotency_key": "mix-3"}),
        json!({"checkout_id": checkout_id, "intent_mandate": "a.b.c",
               "payment_mandate": built.payment, "idempotency_key": "mix-4"}),
        json!({"checkout_id": checkout_id, "checkout_mandate": built.checkout,
               "payment_mandate": " ", "idempotency_key": "mix-5"}),
    ];
    for args in cases {
        let body = client.err("execute_checkout", args.clone()).await;
        assert_eq!(body["code"], "mandate_malformed", "{args}: {body}");
    }

    // A checkout mandate whose root signature was tampered with.
    let tampered = replace_jwt(&built.checkout, 0, |jwt| {
        let (head, sig) = jwt.rsplit_once('.').unwrap();
        let first = if sig.starts_with('A') { "B" } else { "A" };
        format!("{head}.{first}{}", sig.get(1..).unwrap_or_default())
    });
    let args = json!({"checkout_id": checkout_id, "checkout_mandate": tampered,
                      "payment_mandate": built.payment, "agent_profile_url": profile,
                      "idempotency_key": "v02-1"});
    let refused = client.err("execute_checkout", args).await;
    assert_eq!(refused["code"], "mandate_invalid_signature", "{refused}");

    // A checkout mandate over a checkout JWT the merchant never signed: its
    // payload changed under the merchant's signature (answering the live
    // challenge, with a checkout_hash that matches the changed JWT).
    let jwt = edit_payload(&fx.auth.checkout_jwt, |p| p["status"] = json!("completed"), None);
    let mut spec = fx.spec_kb();
    spec.checkout.root_mandate = json!({"vct": v02::VCT_CHECKOUT, "checkout_jwt": jwt,
                                        "checkout_hash": sdjwt::hash(&jwt)});
    let other = fx.build(&spec);
    let args = json!({"checkout_id": checkout_id, "checkout_mandate": other.checkout,
                      "payment_mandate": other.payment, "agent_profile_url": profile,
                      "idempotency_key": "v02-1"});
    let refused = client.err("execute_checkout", args).await;
    assert_eq!(refused["code"], "merchant_authorization_invalid", "{refused}");
    assert_eq!(charges(&server), 0, "no refusal charged anything");

    // The honest pair, with the key the refusals released: paid once.
    let args = json!({"checkout_id": checkout_id, "checkout_mandate": built.checkout,
                      "payment_mandate": built.payment, "agent_profile_url": profile,
                      "idempotency_key": "v02-1"});
    let result = client.ok("execute_checkout", args.clone()).await;
    assert_eq!(result["status"], "paid", "{result}");
    assert_eq!(result["checkout_id"], checkout_id.as_str());
    assert_eq!(result["charged"]["amount"], fx.total.minor());
    assert_eq!(result["replayed"], false);
    assert_eq!(charges(&server), 1);
    let receipt = result["receipt"].as_str().unwrap();
    let claims = payload_of(receipt);
    assert_eq!(claims["status"], "Success");
    assert_eq!(claims["order_id"], result["order_id"]);
    let closed = sdjwt::parse(&built.checkout).unwrap();
    assert_eq!(
        claims["reference"],
        sdjwt::hash(closed.closed_jwt()),
        "paid under the checkout mandate"
    );

    // A retry with the same key: the same order, no second charge.
    let again = client.ok("execute_checkout", args.clone()).await;
    assert_eq!(again["order_id"], result["order_id"]);
    assert_eq!(again["receipt"], result["receipt"]);
    assert_eq!(again["replayed"], true);
    assert_eq!(charges(&server), 1, "no second charge");

    // The same key with other mandates (fresh salts, other bytes) is refused.
    let rebuilt = fx.build(&fx.spec_kb());
    let mut changed = args.clone();
    changed["checkout_mandate"] = json!(rebuilt.checkout);
    changed["payment_mandate"] = json!(rebuilt.payment);
    let conflict = client.err("execute_checkout", changed).await;
    assert_eq!(conflict["code"], "idempotency_conflict", "{conflict}");

    // One order, paid, with the checkout it came from.
    let order = client.ok("track_order", json!({"order_id": result["order_id"]})).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(order["checkout_id"], checkout_id.as_str());
    assert_eq!(charges(&server), 1);
}

/// Without a profile, or with one that does not declare the extension, a
/// checkout is not locked: no ap2_checkout, and the v0.1 form is what the
/// tools describe.
#[tokio::test]
async fn the_extension_is_never_assumed() {
    let server = shop().await;
    let client = Client::connect(&format!("{}/mcp", server.base), "2026-07-28").await;
    let cart = client.ok("manage_cart", json!({"action": "create"})).await;
    let terms = client.ok("negotiate_terms", json!({"cart_id": cart["cart_id"]})).await;
    let names: Vec<&str> = terms["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(!names.contains(&AP2), "{terms}");
    assert!(terms["ap2_checkout"].is_null(), "{terms}");

    let tools = client.request("tools/list", json!({}), None).await;
    let execute = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "execute_checkout")
        .expect("execute_checkout is listed")
        .clone();
    let schema = &execute["inputSchema"];
    let mut required: Vec<&str> =
        schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    required.sort_unstable();
    assert_eq!(required, ["checkout_id", "idempotency_key", "payment_mandate"], "{schema}");
    // Optional mandates are plain strings, like every other optional field.
    for field in ["checkout_mandate", "intent_mandate", "cart_mandate", "agent_profile_url"] {
        assert_eq!(schema["properties"][field]["type"], "string", "{field}: {schema}");
    }
    let text = execute["description"].as_str().unwrap();
    assert!(text.contains("AP2 v0.2") && text.contains(AP2), "{text}");
}
