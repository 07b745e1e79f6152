//! The discovery profiles against the official UCP schemas (built directly
//! and served through the router), the `ucp` member of negotiated responses
//! against the response schemas, and the schema helper of
//! `tests/support/schema.rs` against known good and bad payloads, so a
//! helper that accepted everything would be caught here.

mod support;

use agentgate::ucp::negotiate::{self, Resource};
use agentgate::ucp::profile::{self, ProfileInput};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use support::schema::{self, Resolve};
use tower::ServiceExt;

fn jwk() -> Value {
    json!({"kid": "k1", "kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB", "use": "sig", "alg": "ES256"})
}

fn input(base: &str, ap2: bool) -> ProfileInput<'_> {
    ProfileInput {
        public_base_url: base,
        signing_keys: vec![jwk()],
        payment_processors: vec!["sandbox", "stripe"],
        ap2_mandate: ap2,
    }
}

#[test]
fn both_profiles_match_their_official_schemas() {
    let Some(specs) = support::specs_dir() else { return };
    let current =
        schema::validator_at(&specs, schema::UCP_PROFILE_2026_04_08, "/$defs/business_profile");
    // 2026-01-11 has one discovery profile schema, its root.
    let old = schema::validator(&specs, schema::UCP_PROFILE_2026_01_11);
    // The default base URL is plain http on loopback; both must pass.
    for base in ["https://shop.example", "http://127.0.0.1:8080"] {
        for ap2 in [false, true] {
            let i = input(base, ap2);
            schema::assert_valid(
                &current,
                &profile::business_profile(&i),
                &format!("2026-04-08 profile ({base}, ap2 {ap2})"),
            );
            schema::assert_valid(
                &old,
                &profile::business_profile_2026_01_11(&i),
                &format!("2026-01-11 profile ({base}, ap2 {ap2})"),
            );
        }
    }
    // Each shape fails the other version's schema, so the check is real.
    let i = input("https://shop.example", false);
    schema::assert_invalid(
        &old,
        &profile::business_profile(&i),
        "2026-04-08 profile as 2026-01-11",
    );
    schema::assert_invalid(
        &current,
        &profile::business_profile_2026_01_11(&i),
        "2026-01-11 profile as 2026-04-08",
    );
}

#[test]
fn capability_entries_match_their_extension_schemas() {
    let Some(specs) = support::specs_dir() else { return };
    let p = profile::business_profile(&input("https://shop.example", true));
    // Fulfillment defines its own business-side entry schema.
    let v = schema::validator_at(
        &specs,
        "ucp/2026-04-08/schemas/shopping/fulfillment.json",
        &schema::pointer(&["$defs", "dev.ucp.shopping.fulfillment", "business_schema"]),
    );
    schema::assert_valid(
        &v,
        &p["ucp"]["capabilities"]["dev.ucp.shopping.fulfillment"][0],
        "fulfillment entry",
    );
    let v = schema::validator_at(
        &specs,
        "ucp/2026-04-08/schemas/capability.json",
        "/$defs/business_schema",
    );
    for (name, entries) in p["ucp"]["capabilities"].as_object().unwrap() {
        schema::assert_valid(&v, &entries[0], name);
    }
}

/// A platform that declares everything the business offers, at `version`.
fn everything_platform(version: &str) -> Value {
    let i = input("https://agent.example", true);
    let mut doc = if version == agentgate::ucp::VERSION_2026_01_11 {
        profile::business_profile_2026_01_11(&i)
    } else {
        profile::business_profile(&i)
    };
    doc["ucp"].as_object_mut().unwrap().remove("supported_versions");
    doc
}

#[test]
fn negotiated_ucp_members_match_the_response_schemas() {
    let Some(specs) = support::specs_dir() else { return };
    let offer = profile::business_offer(&input("https://shop.example", true));
    let url = url::Url::parse("https://agent.example/profile.json").unwrap();

    let n = negotiate::negotiate(&offer, url.clone(), &everything_platform("2026-04-08")).unwrap();
    let ucp = "ucp/2026-04-08/schemas/ucp.json";
    let cases = [
        (Resource::Checkout, "/$defs/response_checkout_schema"),
        (Resource::Cart, "/$defs/response_cart_schema"),
        (Resource::Order, "/$defs/response_order_schema"),
        (Resource::CatalogSearch, "/$defs/response_catalog_schema"),
        (Resource::CatalogLookup, "/$defs/response_catalog_schema"),
    ];
    for (resource, def) in cases {
        let mut meta = n.ucp_response(resource);
        if resource == Resource::Checkout {
            meta["payment_handlers"] = json!({});
        }
        assert!(!meta["capabilities"].as_object().unwrap().is_empty(), "{resource:?}");
        schema::assert_valid(
            &schema::validator_at(&specs, ucp, def),
            &meta,
            &format!("{resource:?}"),
        );
    }
    // Without payment handlers a checkout `ucp` is incomplete in 2026-04-08.
    let v = schema::validator_at(&specs, ucp, "/$defs/response_checkout_schema");
    schema::assert_invalid(
        &v,
        &n.ucp_response(Resource::Checkout),
        "checkout ucp without payment_handlers",
    );

    let n = negotiate::negotiate(&offer, url, &everything_platform("2026-01-11")).unwrap();
    let ucp = "ucp/2026-01-11/schemas/ucp.json";
    for (resource, def) in [
        (Resource::Checkout, "/$defs/response_checkout"),
        (Resource::Order, "/$defs/response_order"),
    ] {
        let meta = n.ucp_response(resource);
        assert!(!meta["capabilities"].as_array().unwrap().is_empty(), "{resource:?}");
        schema::assert_valid(
            &schema::validator_at(&specs, ucp, def),
            &meta,
            &format!("2026-01-11 {resource:?}"),
        );
    }
}

async fn router(dir: &std::path::Path) -> axum::Router {
    let settings = agentgate::settings::Settings::for_data_dir(dir);
    let app = agentgate::bootstrap::build(settings).await.unwrap();
    agentgate::http::app(app.state)
}

async fn get(
    app: &axum::Router,
    path: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(path);
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec();
    (status, headers, body)
}

#[tokio::test]
async fn the_router_serves_both_profiles_cacheably() {
    let Some(specs) = support::specs_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = router(dir.path()).await;
    let current =
        serde_json::from_slice::<Value>(&get(&app, "/.well-known/ucp", None).await.2).unwrap();
    let old_url = current["ucp"]["supported_versions"]["2026-01-11"].as_str().unwrap().to_owned();
    let old_path = url::Url::parse(&old_url).unwrap().path().to_owned();
    assert_eq!(old_path, "/.well-known/ucp/2026-01-11");

    let cases = [
        (
            "/.well-known/ucp",
            schema::validator_at(&specs, schema::UCP_PROFILE_2026_04_08, "/$defs/business_profile"),
        ),
        (old_path.as_str(), schema::validator(&specs, schema::UCP_PROFILE_2026_01_11)),
    ];
    let mut etags = Vec::new();
    for (path, validator) in &cases {
        let (status, headers, body) = get(&app, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
        // Profiles must be publicly cacheable for at least 60 s ("Hosting").
        let cc = headers[header::CACHE_CONTROL].to_str().unwrap();
        assert!(cc.split(',').any(|d| d.trim() == "public"), "{path}: {cc}");
        let max_age: u64 = cc
            .split(',')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(max_age >= 60, "{path}: {cc}");
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{path}: {etag}");
        let doc: Value = serde_json::from_slice(&body).unwrap();
        schema::assert_valid(validator, &doc, path);
        // The profile's keys are the key ring's, as served in the JWKS.
        let jwks: Value =
            serde_json::from_slice(&get(&app, "/.well-known/jwks.json", None).await.2).unwrap();
        assert_eq!(doc["signing_keys"][0]["kid"], jwks["keys"][0]["kid"], "{path}");
        assert!(doc["signing_keys"][0].get("d").is_none(), "{path}: no private part");

        let (status, headers, body) = get(&app, path, Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(body.is_empty(), "{path}");
        assert_eq!(headers[header::ETAG].to_str().unwrap(), etag, "{path}");

        let (status, _, _) = get(&app, path, Some("\"stale\"")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        etags.push(etag);
    }
    assert_ne!(etags[0], etags[1], "two documents share an ETag");
}

/// Every operation of a REST binding, by `operationId`.
fn operation_ids(specs: &std::path::Path, rel: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(specs.join(rel)).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let Some(id) = op.get("operationId").and_then(Value::as_str) else { continue };
            let statuses = op["responses"]
                .as_object()
                .map(|r| {
                    r.iter()
                        .filter(|(_, v)| v.pointer("/content/application~1json/schema").is_some())
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            out.push((id.to_owned(), statuses));
        }
    }
    out
}

fn minimal_business_profile_0408() -> Value {
    json!({
        "ucp": {
            "version": "2026-04-08",
            "services": {
                "dev.ucp.shopping": [
                    {"version": "2026-04-08", "transport": "rest", "endpoint": "https://shop.example/ucp/v1"}
                ]
            },
            "capabilities": {
                "dev.ucp.shopping.checkout": [{"version": "2026-04-08"}]
            },
            "payment_handlers": {}
        }
    })
}

#[test]
fn schema_helper_resolves_every_rest_operation_of_both_versions() {
    let Some(specs) = support::specs_dir() else { return };
    for rel in [schema::UCP_REST_2026_04_08, schema::UCP_REST_2026_01_11] {
        let ops = operation_ids(&specs, rel);
        assert!(ops.len() >= 5, "{rel}: only {} operations found", ops.len());
        for (id, statuses) in ops {
            let ptr = schema::operation_pointer(&specs, rel, &id);
            let op =
                serde_json::from_str::<Value>(&std::fs::read_to_string(specs.join(rel)).unwrap())
                    .unwrap()
                    .pointer(&ptr)
                    .cloned()
                    .unwrap();
            if op.pointer("/requestBody/content/application~1json/schema").is_some() {
                schema::operation_request(&specs, rel, &id);
            }
            for status in statuses {
                schema::operation_response(&specs, rel, &id, &status);
            }
        }
    }
}

#[test]
fn schema_helper_checks_the_business_profile_def() {
    let Some(specs) = support::specs_dir() else { return };
    let v = schema::validator_at(&specs, schema::UCP_PROFILE_2026_04_08, "/$defs/business_profile");
    schema::assert_valid(&v, &minimal_business_profile_0408(), "minimal profile");

    // Table of single faults, each with the instance path the error must name.
    let cases: &[(&str, &str, Value, &str)] = &[
        ("no services", "/ucp/services", Value::Null, "/ucp"),
        ("bad version", "/ucp/version", json!("April 2026"), "/ucp/version"),
        (
            "rest service without endpoint",
            "/ucp/services/dev.ucp.shopping/0",
            json!({"version": "2026-04-08", "transport": "rest"}),
            "/ucp/services/dev.ucp.shopping/0",
        ),
        (
            "extends not reverse-DNS",
            "/ucp/capabilities/dev.ucp.shopping.checkout/0",
            json!({"version": "2026-04-08", "extends": "Checkout"}),
            "/ucp/capabilities/dev.ucp.shopping.checkout/0/extends",
        ),
        ("signing key without kid", "/signing_keys", json!([{"kty": "EC"}]), "/signing_keys/0"),
        (
            "endpoint not a URI (formats are checked)",
            "/ucp/services/dev.ucp.shopping/0/endpoint",
            json!("not a uri"),
            "/ucp/services/dev.ucp.shopping/0/endpoint",
        ),
    ];
    for (name, at, value, error_path) in cases {
        let mut p = minimal_business_profile_0408();
        set_or_remove(&mut p, at, value.clone());
        let errs = schema::assert_invalid(&v, &p, name);
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("{error_path}:"))),
            "{name}: no error at {error_path}: {errs:#?}"
        );
    }
}

#[test]
fn schema_helper_resolves_request_annotations_per_operation() {
    let Some(specs) = support::specs_dir() else { return };
    let rel = schema::UCP_REST_2026_04_08;
    let create = schema::operation_request(&specs, rel, "create_checkout");
    let body = json!({"line_items": [{"item": {"id": "sku-1"}, "quantity": 1}]});
    schema::assert_valid(&create, &body, "create_checkout request");
    // The same body as a full checkout lacks id, status, totals and more:
    // the raw schema describes a response.
    let raw = schema::validator(&specs, "ucp/2026-04-08/schemas/shopping/checkout.json");
    let errs = schema::assert_invalid(&raw, &body, "raw checkout");
    assert!(errs.iter().any(|e| e.contains("\"id\" is a required property")), "{errs:#?}");
    // Line items are required on create.
    schema::assert_invalid(&create, &json!({}), "create_checkout without line_items");
    // A type error inside a kept field still fails.
    let bad = json!({"line_items": [{"item": {"id": "sku-1"}, "quantity": "one"}]});
    let errs = schema::assert_invalid(&create, &bad, "quantity as a string");
    assert!(errs.iter().any(|e| e.starts_with("/line_items/0/quantity:")), "{errs:#?}");
}

#[test]
fn schema_helper_resolves_absolute_ucp_dev_ids_to_local_files() {
    let Some(specs) = support::specs_dir() else { return };
    // The 2026-01-11 extensions refer to `https://ucp.dev/schemas/shopping/checkout.json`.
    for rel in [
        "ucp/2026-01-11/schemas/shopping/discount.json",
        "ucp/2026-01-11/schemas/shopping/fulfillment.json",
        "ucp/2026-01-11/schemas/shopping/ap2_mandate.json",
        "ucp/2026-04-08/schemas/shopping/discount.json",
    ] {
        schema::validator(&specs, rel);
    }
}

#[test]
fn schema_helper_never_reaches_outside_the_version_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outside.json"), r#"{"type": "string"}"#).unwrap();
    let cases = [
        ("remote", json!({"$ref": "https://example.com/schema.json"}), false),
        ("escape", json!({"$ref": "../../outside.json"}), false),
        ("by_id", json!({"$ref": "https://ucp.dev/schemas/ok.json"}), true),
        ("by_path", json!({"$ref": "https://ucp.dev/schemas/schemas/ok.json"}), true),
    ];
    for (name, doc, ok) in cases {
        let v = dir.path().join("ucp").join(name);
        std::fs::create_dir_all(v.join("schemas")).unwrap();
        let ok_schema = json!({"$id": "https://ucp.dev/schemas/ok.json", "type": "object"});
        std::fs::write(v.join("schemas/ok.json"), ok_schema.to_string()).unwrap();
        std::fs::write(v.join("root.json"), doc.to_string()).unwrap();
        let rel = format!("ucp/{name}/root.json");
        let built = schema::try_validator_all_of(dir.path(), &[(&rel, "")], &Resolve::Raw);
        assert_eq!(built.is_ok(), ok, "{name}: {:?}", built.as_ref().err());
        if let Ok(v) = built {
            assert!(!v.is_valid(&json!(1)), "{name}: the $ref target was not applied");
            assert!(v.is_valid(&json!({})), "{name}");
        }
    }
}

#[test]
fn schema_helper_composes_extensions_with_all_of() {
    let Some(specs) = support::specs_dir() else { return };
    let v = schema::validator_all_of(
        &specs,
        &[
            ("ucp/2026-04-08/discovery/profile_schema.json", "/$defs/business_profile"),
            ("ucp/2026-04-08/schemas/ucp.json", "/$defs/version"),
        ],
        &Resolve::Raw,
    );
    // Nothing is both a profile and a version string.
    schema::assert_invalid(&v, &minimal_business_profile_0408(), "profile vs version");
    schema::assert_invalid(&v, &json!("2026-04-08"), "version vs profile");
}

/// Sets the value at a JSON pointer, or removes it when `value` is null.
fn set_or_remove(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let parent = doc.pointer_mut(parent).unwrap();
    let key = last.replace("~1", "/").replace("~0", "~");
    match (parent, value) {
        (Value::Object(m), Value::Null) => {
            m.remove(&key);
        }
        (Value::Object(m), v) => {
            m.insert(key, v);
        }
        (Value::Array(a), v) => a[key.parse::<usize>().unwrap()] = v,
        _ => panic!("cannot set {pointer}"),
    }
}
