//! The business discovery profiles: 2026-04-08 at `/.well-known/ucp`
//! (`discovery/profile_schema.json`, `$defs/business_profile`) and the
//! 2026-01-11 leaf profile at `/.well-known/ucp/2026-01-11`.
//!
//! Both are rendered from one table of capabilities ([`CAPABILITIES`]), and
//! so is the business side of negotiation ([`business_offer`]), so what is
//! advertised and what is negotiated cannot drift apart.
//!
//! The two versions differ on the wire. From 2026-01-23 on, services,
//! capabilities and payment handlers are registries: objects keyed by
//! reverse-DNS name, each holding an array of entries. In 2026-01-11,
//! capabilities are an array of `{name, version, spec, schema, extends?,
//! config?}`, a service is one object with a member per transport, and
//! payment handlers sit outside `ucp`, under `payment.handlers`.

use serde_json::{json, Map, Value};

use super::negotiate::{CapabilityDecl, Offer};
use super::{VERSION, VERSION_2026_01_11};

/// What the profiles need to know about this deployment.
#[derive(Debug, Clone)]
pub struct ProfileInput<'a> {
    /// Externally visible base URL, without a trailing slash.
    pub public_base_url: &'a str,
    /// Public signing keys (JWKs) from the key ring.
    pub signing_keys: Vec<Value>,
    /// Names of the configured payment processors (`sandbox`, `stripe`).
    pub payment_processors: Vec<&'a str>,
    /// Advertise the AP2 mandate extension (`dev.ucp.shopping.ap2_mandate`;
    /// the `ap2_mandate_extension` setting). A platform that negotiates it
    /// gets signed checkouts and may no longer complete without v0.2
    /// mandates.
    pub ap2_mandate: bool,
}

pub const CHECKOUT: &str = "dev.ucp.shopping.checkout";
pub const CART: &str = "dev.ucp.shopping.cart";
pub const CATALOG_SEARCH: &str = "dev.ucp.shopping.catalog.search";
pub const CATALOG_LOOKUP: &str = "dev.ucp.shopping.catalog.lookup";
pub const ORDER: &str = "dev.ucp.shopping.order";
pub const FULFILLMENT: &str = "dev.ucp.shopping.fulfillment";
pub const DISCOUNT: &str = "dev.ucp.shopping.discount";
pub const AP2_MANDATE: &str = "dev.ucp.shopping.ap2_mandate";

/// One capability this gateway implements.
#[derive(Debug, Clone, Copy)]
pub struct CapabilityDef {
    /// The reverse-DNS name, as the `name` of the capability's schema.
    pub name: &'static str,
    /// The page under `specification/`.
    pub spec: &'static str,
    /// The schema file under `schemas/`.
    pub schema: &'static str,
    /// Parents, for extensions. Parents a version does not offer are
    /// dropped when rendering that version.
    pub extends: &'static [&'static str],
    /// Whether the capability exists in 2026-01-11 (cart and catalog came
    /// later).
    pub in_2026_01_11: bool,
}

/// Every capability, in the order the profiles list them. Names and
/// parents follow the `name` and `$defs` of the 2026-04-08 schemas: the
/// discount schema defines both `dev.ucp.shopping.checkout` and
/// `dev.ucp.shopping.cart`, so discount extends both ("Multi-Parent
/// Extensions", overview); fulfillment and AP2 define only checkout.
pub const CAPABILITIES: &[CapabilityDef] = &[
    CapabilityDef {
        name: CHECKOUT,
        spec: "checkout",
        schema: "shopping/checkout.json",
        extends: &[],
        in_2026_01_11: true,
    },
    CapabilityDef {
        name: CART,
        spec: "cart",
        schema: "shopping/cart.json",
        extends: &[],
        in_2026_01_11: false,
    },
    CapabilityDef {
        name: CATALOG_SEARCH,
        spec: "catalog/search",
        schema: "shopping/catalog_search.json",
        extends: &[],
        in_2026_01_11: false,
    },
    CapabilityDef {
        name: CATALOG_LOOKUP,
        spec: "catalog/lookup",
        schema: "shopping/catalog_lookup.json",
        extends: &[],
        in_2026_01_11: false,
    },
    CapabilityDef {
        name: ORDER,
        spec: "order",
        schema: "shopping/order.json",
        extends: &[],
        in_2026_01_11: true,
    },
    CapabilityDef {
        name: FULFILLMENT,
        spec: "fulfillment",
        schema: "shopping/fulfillment.json",
        extends: &[CHECKOUT],
        in_2026_01_11: true,
    },
    CapabilityDef {
        name: DISCOUNT,
        spec: "discount",
        schema: "shopping/discount.json",
        extends: &[CHECKOUT, CART],
        in_2026_01_11: true,
    },
    CapabilityDef {
        name: AP2_MANDATE,
        spec: "ap2-mandates",
        schema: "shopping/ap2_mandate.json",
        extends: &[CHECKOUT],
        in_2026_01_11: true,
    },
];

/// The capabilities offered at `version`, with parents limited to what
/// that version offers.
fn offered(input: &ProfileInput<'_>, version: &str) -> Vec<(CapabilityDef, Vec<&'static str>)> {
    let included = |c: &CapabilityDef| {
        (version != VERSION_2026_01_11 || c.in_2026_01_11)
            && (c.name != AP2_MANDATE || input.ap2_mandate)
    };
    let names: Vec<&str> = CAPABILITIES.iter().filter(|c| included(c)).map(|c| c.name).collect();
    CAPABILITIES
        .iter()
        .filter(|c| included(c))
        .map(|c| (*c, c.extends.iter().copied().filter(|p| names.contains(p)).collect()))
        .collect()
}

/// The business-specific `config` of a capability, if it has one.
fn config(name: &str) -> Option<Value> {
    // The AP2 extension names the credential formats it accepts for the
    // checkout mandate (ap2-mandates, "Business Profile Advertisement").
    (name == AP2_MANDATE).then(|| json!({ "vp_formats_supported": { "dc+sd-jwt": {} } }))
}

/// The handler registry name of a processor. These handlers are this
/// gateway's own, so they live in its own namespace rather than `dev.ucp`.
pub fn handler_name(processor: &str) -> String {
    format!("dev.agentgate.payments.{processor}")
}

/// Builds the 2026-04-08 business profile served at `/.well-known/ucp`.
pub fn business_profile(input: &ProfileInput<'_>) -> Value {
    let base = input.public_base_url;
    let spec_base = format!("https://ucp.dev/{VERSION}/specification");
    let mut capabilities = Map::new();
    for (def, parents) in offered(input, VERSION) {
        let mut entry = json!({
            "version": VERSION,
            "spec": format!("{spec_base}/{}", def.spec),
            "schema": format!("https://ucp.dev/{VERSION}/schemas/{}", def.schema),
        });
        // `extends` is a string for one parent and an array for several
        // (capability.json, `$defs/base/extends`).
        match parents.as_slice() {
            [] => {}
            [one] => entry["extends"] = json!(one),
            many => entry["extends"] = json!(many),
        }
        if let Some(config) = config(def.name) {
            entry["config"] = config;
        }
        capabilities.insert(def.name.to_owned(), json!([entry]));
    }
    let handlers: Map<String, Value> = input
        .payment_processors
        .iter()
        .map(|p| {
            let entry = json!({
                "id": p,
                "version": VERSION,
                "spec": format!("{base}/docs/payments/{p}"),
                "schema": format!("{base}/schemas/payments/{p}.json"),
                "available_instruments": [{ "type": "card" }],
                "config": {},
            });
            (handler_name(p), json!([entry]))
        })
        .collect();
    let service = |transport: &str, endpoint: String, schema: &str| {
        json!({
            "version": VERSION,
            "transport": transport,
            "endpoint": endpoint,
            "spec": format!("{spec_base}/overview"),
            "schema": format!("https://ucp.dev/{VERSION}/services/shopping/{schema}"),
        })
    };
    json!({
        "ucp": {
            "version": VERSION,
            // Older versions point at their own complete profile ("Protocol
            // Version", overview).
            "supported_versions": {
                VERSION_2026_01_11: format!("{base}/.well-known/ucp/{VERSION_2026_01_11}"),
            },
            "services": {
                "dev.ucp.shopping": [
                    service("rest", format!("{base}/ucp/v1"), "rest.openapi.json"),
                    service("mcp", format!("{base}/ucp/mcp"), "mcp.openrpc.json"),
                ]
            },
            "capabilities": capabilities,
            "payment_handlers": handlers,
        },
        "signing_keys": input.signing_keys,
    })
}

/// Builds the 2026-01-11 business profile served at
/// `/.well-known/ucp/2026-01-11`. It is a leaf: it describes one version
/// and carries no `supported_versions` ("Protocol Version", overview).
/// URLs follow that release's documentation, which did not put the version
/// in the path.
pub fn business_profile_2026_01_11(input: &ProfileInput<'_>) -> Value {
    let base = input.public_base_url;
    let v = VERSION_2026_01_11;
    let capabilities: Vec<Value> = offered(input, v)
        .into_iter()
        .map(|(def, parents)| {
            let mut entry = json!({
                "name": def.name,
                "version": v,
                "spec": format!("https://ucp.dev/specification/{}", def.spec),
                "schema": format!("https://ucp.dev/schemas/{}", def.schema),
            });
            // In 2026-01-11 `extends` is a single string (capability.json),
            // and every extension offered there has exactly one parent.
            if let Some(parent) = parents.first() {
                entry["extends"] = json!(parent);
            }
            if let Some(config) = config(def.name) {
                entry["config"] = config;
            }
            entry
        })
        .collect();
    let handlers: Vec<Value> = input
        .payment_processors
        .iter()
        .map(|p| {
            json!({
                "id": p,
                "name": handler_name(p),
                "version": v,
                "spec": format!("{base}/docs/payments/{p}"),
                "config_schema": format!("{base}/schemas/payments/{p}.json"),
                "instrument_schemas": ["https://ucp.dev/schemas/shopping/types/card_payment_instrument.json"],
                "config": {},
            })
        })
        .collect();
    json!({
        "ucp": {
            "version": v,
            "services": {
                "dev.ucp.shopping": {
                    "version": v,
                    "spec": "https://ucp.dev/specification/overview",
                    "rest": {
                        "schema": "https://ucp.dev/services/shopping/rest.openapi.json",
                        "endpoint": format!("{base}/ucp/v1"),
                    },
                    "mcp": {
                        "schema": "https://ucp.dev/services/shopping/mcp.openrpc.json",
                        "endpoint": format!("{base}/ucp/mcp"),
                    },
                }
            },
            "capabilities": capabilities,
        },
        "payment": { "handlers": handlers },
        "signing_keys": input.signing_keys,
    })
}

/// The business side of negotiation: for each protocol version, the
/// capabilities its profile offers.
pub fn business_offer(input: &ProfileInput<'_>) -> Offer {
    let decls = |version: &str| -> Vec<CapabilityDecl> {
        offered(input, version)
            .into_iter()
            .map(|(def, parents)| CapabilityDecl {
                name: def.name.to_owned(),
                version: version.to_owned(),
                extends: parents.iter().map(|p| (*p).to_owned()).collect(),
                config: config(def.name),
            })
            .collect()
    };
    Offer::new([VERSION, VERSION_2026_01_11].into_iter().map(|v| (v.to_owned(), decls(v))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ucp::negotiate::parse_profile;

    fn input(ap2: bool) -> ProfileInput<'static> {
        ProfileInput {
            public_base_url: "https://shop.example",
            signing_keys: vec![json!({"kid": "k1", "kty": "EC"})],
            payment_processors: vec!["sandbox"],
            ap2_mandate: ap2,
        }
    }

    #[test]
    fn profile_names_both_transports_under_the_base_url() {
        let p = business_profile(&input(false));
        assert_eq!(p["ucp"]["version"], VERSION);
        let svc = &p["ucp"]["services"]["dev.ucp.shopping"];
        assert_eq!(svc[0]["transport"], "rest");
        assert_eq!(svc[0]["endpoint"], "https://shop.example/ucp/v1");
        assert_eq!(svc[1]["transport"], "mcp");
        assert_eq!(svc[1]["endpoint"], "https://shop.example/ucp/mcp");
        assert_eq!(p["signing_keys"][0]["kid"], "k1");
        assert_eq!(
            p["ucp"]["supported_versions"]["2026-01-11"],
            "https://shop.example/.well-known/ucp/2026-01-11"
        );
        assert_eq!(
            p["ucp"]["payment_handlers"]["dev.agentgate.payments.sandbox"][0]["id"],
            "sandbox"
        );
    }

    #[test]
    fn extends_is_a_string_for_one_parent_and_an_array_for_several() {
        let p = business_profile(&input(true));
        let caps = &p["ucp"]["capabilities"];
        let cases: &[(&str, Value)] = &[
            (CHECKOUT, Value::Null),
            (CART, Value::Null),
            (CATALOG_SEARCH, Value::Null),
            (CATALOG_LOOKUP, Value::Null),
            (ORDER, Value::Null),
            (FULFILLMENT, json!(CHECKOUT)),
            (DISCOUNT, json!([CHECKOUT, CART])),
            (AP2_MANDATE, json!(CHECKOUT)),
        ];
        for (name, extends) in cases {
            let entry = &caps[name][0];
            assert_eq!(entry["version"], VERSION, "{name}");
            assert_eq!(&entry["extends"], extends, "{name}");
        }
        assert_eq!(caps.as_object().map(|m| m.len()), Some(cases.len()));
    }

    #[test]
    fn ap2_is_advertised_only_when_asked_for() {
        for ap2 in [false, true] {
            let p = business_profile(&input(ap2));
            let entry = &p["ucp"]["capabilities"][AP2_MANDATE];
            assert_eq!(entry.is_array(), ap2);
            if ap2 {
                assert_eq!(entry[0]["config"]["vp_formats_supported"], json!({"dc+sd-jwt": {}}));
            }
            let old = business_profile_2026_01_11(&input(ap2));
            let listed = old["ucp"]["capabilities"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["name"] == AP2_MANDATE));
            assert_eq!(listed, ap2);
        }
    }

    #[test]
    fn the_2026_01_11_profile_uses_that_release_shape() {
        let p = business_profile_2026_01_11(&input(false));
        assert_eq!(p["ucp"]["version"], VERSION_2026_01_11);
        assert!(p["ucp"].get("supported_versions").is_none(), "a version profile is a leaf");
        let caps = p["ucp"]["capabilities"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = caps.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, [CHECKOUT, ORDER, FULFILLMENT, DISCOUNT]);
        // Cart does not exist in 2026-01-11, so discount keeps one parent.
        assert_eq!(caps[3]["extends"], CHECKOUT);
        assert_eq!(p["payment"]["handlers"][0]["name"], "dev.agentgate.payments.sandbox");
        assert_eq!(
            p["ucp"]["services"]["dev.ucp.shopping"]["rest"]["endpoint"],
            "https://shop.example/ucp/v1"
        );
    }

    #[test]
    fn the_offer_matches_what_the_profiles_advertise() {
        for ap2 in [false, true] {
            let i = input(ap2);
            let offer = business_offer(&i);
            for doc in [business_profile(&i), business_profile_2026_01_11(&i)] {
                let parsed = match parse_profile(&doc) {
                    Ok(p) => p,
                    Err(e) => panic!("our own profile does not parse: {e}"),
                };
                assert_eq!(
                    offer.capabilities(&parsed.version),
                    Some(parsed.capabilities.as_slice())
                );
            }
        }
    }
}
