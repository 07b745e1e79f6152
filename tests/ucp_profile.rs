//! The discovery profiles against the official UCP schemas, and the schema
//! helper of `tests/support/schema.rs` against known good and bad payloads,
//! so a helper that accepted everything would be caught here.

mod support;

use serde_json::{json, Value};
use support::schema::{self, Resolve};

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
