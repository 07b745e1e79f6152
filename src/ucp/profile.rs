//! The business discovery profile served at `/.well-known/ucp`
//! (UCP 2026-04-08, `discovery/profile_schema.json`, `business_profile`).
//!
//! From 2026-01-23 on, services, capabilities and payment handlers are
//! registries: objects keyed by reverse-DNS name, each holding an array of
//! entries.

use serde_json::{json, Value};

use super::VERSION;

/// What the profile needs to know about this deployment.
#[derive(Debug, Clone)]
pub struct ProfileInput<'a> {
    /// Externally visible base URL, without a trailing slash.
    pub public_base_url: &'a str,
    /// Public signing keys (JWKs) from the key ring.
    pub signing_keys: Vec<Value>,
    /// Names of the configured payment processors (`sandbox`, `stripe`).
    pub payment_processors: Vec<&'a str>,
}

const SPEC_BASE: &str = "https://ucp.dev/specification";
const SCHEMA_BASE: &str = "https://ucp.dev/schemas";

fn capability(name: &str, path: &str, extends: Option<&str>) -> (String, Value) {
    let mut entry = json!({
        "version": VERSION,
        "spec": format!("{SPEC_BASE}/{path}"),
        "schema": format!("{SCHEMA_BASE}/shopping/{path}.json"),
    });
    if let Some(parent) = extends {
        entry["extends"] = json!(parent);
    }
    (name.to_owned(), json!([entry]))
}

/// Builds the 2026-04-08 business profile.
pub fn business_profile(input: &ProfileInput<'_>) -> Value {
    let base = input.public_base_url;
    let capabilities: serde_json::Map<String, Value> = [
        capability("dev.ucp.shopping.checkout", "checkout", None),
        capability("dev.ucp.shopping.cart", "cart", None),
        capability("dev.ucp.shopping.catalog.search", "catalog_search", None),
        capability("dev.ucp.shopping.catalog.lookup", "catalog_lookup", None),
        capability("dev.ucp.shopping.order", "order", None),
        capability(
            "dev.ucp.shopping.fulfillment",
            "fulfillment",
            Some("dev.ucp.shopping.checkout"),
        ),
        capability("dev.ucp.shopping.discount", "discount", Some("dev.ucp.shopping.checkout")),
    ]
    .into_iter()
    .collect();
    let handlers: serde_json::Map<String, Value> = input
        .payment_processors
        .iter()
        .map(|p| {
            (
                format!("dev.agentgate.payments.{p}"),
                json!([{
                    "id": p,
                    "version": VERSION,
                    "spec": format!("{base}/docs/payments/{p}"),
                    "schema": format!("{base}/schemas/payments/{p}.json"),
                    "config": {},
                }]),
            )
        })
        .collect();
    json!({
        "ucp": {
            "version": VERSION,
            "services": {
                "dev.ucp.shopping": [
                    {
                        "version": VERSION,
                        "transport": "rest",
                        "endpoint": format!("{base}/ucp/v1"),
                        "spec": format!("{SPEC_BASE}/overview"),
                        "schema": format!("{SCHEMA_BASE}/services/shopping/rest.openapi.json"),
                    },
                    {
                        "version": VERSION,
                        "transport": "mcp",
                        "endpoint": format!("{base}/ucp/mcp"),
                        "spec": format!("{SPEC_BASE}/overview"),
                        "schema": format!("{SCHEMA_BASE}/services/shopping/mcp.openrpc.json"),
                    }
                ]
            },
            "capabilities": capabilities,
            "payment_handlers": handlers,
        },
        "signing_keys": input.signing_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_both_transports_under_the_base_url() {
        let p = business_profile(&ProfileInput {
            public_base_url: "https://shop.example",
            signing_keys: vec![json!({"kid": "k1", "kty": "EC"})],
            payment_processors: vec!["sandbox"],
        });
        assert_eq!(p["ucp"]["version"], VERSION);
        let svc = &p["ucp"]["services"]["dev.ucp.shopping"];
        assert_eq!(svc[0]["endpoint"], "https://shop.example/ucp/v1");
        assert_eq!(svc[1]["endpoint"], "https://shop.example/ucp/mcp");
        assert_eq!(p["signing_keys"][0]["kid"], "k1");
        assert!(p["ucp"]["capabilities"]["dev.ucp.shopping.checkout"].is_array());
    }
}
