//! Capability negotiation: from the platform's `UCP-Agent` header and
//! profile to the protocol version and capabilities active for a request
//! (UCP 2026-04-08 overview, "Negotiation Protocol").
//!
//! The flow is: [`profile_url_from_header`] (or [`profile_url_from_meta`]
//! for the MCP binding) names the platform profile; the caller fetches it
//! through the `ProfileFetcher` port; [`negotiate`] intersects it with the
//! business [`Offer`] and returns a [`Negotiated`], which renders the `ucp`
//! member of each response with [`Negotiated::ucp_response`].
//!
//! Pure: no fetching, no clock. Errors carry the negotiation codes of the
//! spec's "Error Codes" table: `invalid_profile_url` (400),
//! `profile_malformed` (422), `version_unsupported` (422). An empty
//! intersection is not an error here: the spec answers it with a UCP
//! response (`capabilities_incompatible`, HTTP 200), which the caller builds
//! when [`Negotiated::is_active`] says the operation's capability is
//! missing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use url::Url;

use super::profile::{CART, CATALOG_LOOKUP, CATALOG_SEARCH, CHECKOUT, ORDER};
use super::VERSION_2026_01_11;
use crate::domain::{Error, ErrorCode, Result};

/// Longest profile URL accepted; it becomes a cache key.
pub const MAX_PROFILE_URL_LEN: usize = 2048;

/// Which URL schemes a profile URL may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeRule {
    /// HTTPS only, as the spec requires ("Profile Requirements", Fetching
    /// rule 1). The only correct choice in production.
    HttpsOnly,
    /// Also plain HTTP, so tests can point at a local server. Follows the
    /// `allow_private_profile_hosts` setting.
    AllowHttpForTests,
}

fn invalid_url(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::InvalidProfileUrl, format!("invalid platform profile URL: {why}"))
}

fn malformed(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::ProfileMalformed, format!("the platform profile is malformed: {why}"))
}

/// Checks a profile URL: absolute, HTTPS (see [`SchemeRule`]), with a host
/// and no credentials. The fragment is dropped, as it never reaches the
/// server.
pub fn profile_url(raw: &str, rule: SchemeRule) -> Result<Url> {
    if raw.len() > MAX_PROFILE_URL_LEN {
        return Err(invalid_url(format!("longer than {MAX_PROFILE_URL_LEN} bytes")));
    }
    let mut url = Url::parse(raw).map_err(invalid_url)?;
    match (url.scheme(), rule) {
        ("https", _) | ("http", SchemeRule::AllowHttpForTests) => {}
        (scheme, _) => return Err(invalid_url(format!("scheme {scheme:?} is not https"))),
    }
    if url.host().is_none() {
        return Err(invalid_url("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid_url("credentials in the URL are not allowed"));
    }
    url.set_fragment(None);
    Ok(url)
}

/// Reads the platform profile URL from a `UCP-Agent` header value, an
/// RFC 8941 dictionary whose `profile` member is a string ("Platform
/// Advertisement on Request", overview): `profile="https://…"`. Several
/// header lines must be joined with `, ` before the call, as RFC 9110
/// section 5.3 allows for list-based fields.
pub fn profile_url_from_header(header: &str, rule: SchemeRule) -> Result<Url> {
    let dict: sfv::Dictionary = sfv::Parser::new(header)
        .with_version(sfv::Version::Rfc8941)
        .parse()
        .map_err(|e| invalid_url(format!("UCP-Agent is not an RFC 8941 dictionary ({e})")))?;
    match dict.get("profile") {
        Some(sfv::ListEntry::Item(item)) => match item.bare_item.as_string() {
            Some(s) => profile_url(s.as_str(), rule),
            None => Err(invalid_url("UCP-Agent `profile` must be a quoted string")),
        },
        Some(sfv::ListEntry::InnerList(_)) => {
            Err(invalid_url("UCP-Agent `profile` must be a string, not a list"))
        }
        None => Err(invalid_url("UCP-Agent has no `profile` member")),
    }
}

/// Reads the platform profile URL from the MCP binding's `meta` argument:
/// `meta["ucp-agent"].profile`.
pub fn profile_url_from_meta(meta: &Value, rule: SchemeRule) -> Result<Url> {
    match meta.get("ucp-agent").and_then(|a| a.get("profile")) {
        Some(Value::String(s)) => profile_url(s, rule),
        Some(_) => Err(invalid_url("meta[\"ucp-agent\"].profile must be a string")),
        None => Err(invalid_url("meta[\"ucp-agent\"].profile is missing")),
    }
}

/// One capability entry as a profile declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityDecl {
    pub name: String,
    pub version: String,
    /// Parent capabilities; empty for a root capability.
    pub extends: Vec<String>,
    pub config: Option<Value>,
}

/// The parts of a profile that negotiation uses, in either wire shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedProfile {
    pub version: String,
    pub capabilities: Vec<CapabilityDecl>,
    /// Public JWKs, each with at least `kid` and `kty`.
    pub signing_keys: Vec<Value>,
}

/// `YYYY-MM-DD`, the shape of every UCP version (ucp.json, `$defs/version`).
fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter()
            .enumerate()
            .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

/// `^[a-z][a-z0-9]*(?:\.[a-z][a-z0-9_]*)+$`, the capability name pattern
/// (capability.json, shopping/types/reverse_domain_name.json).
fn is_reverse_domain(s: &str) -> bool {
    let mut labels = s.split('.');
    let first_ok = labels.next().is_some_and(|l| {
        l.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
            && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    let mut rest = 0;
    let rest_ok = labels.all(|l| {
        rest += 1;
        l.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
            && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    });
    first_ok && rest_ok && rest >= 1
}

fn version_field(v: Option<&Value>, at: &str) -> Result<String> {
    match v.and_then(Value::as_str) {
        Some(s) if is_version(s) => Ok(s.to_owned()),
        Some(s) => Err(malformed(format!("{at}: version {s:?} is not YYYY-MM-DD"))),
        None => Err(malformed(format!("{at}: version is missing or not a string"))),
    }
}

fn name_field(name: &str, at: &str) -> Result<String> {
    if is_reverse_domain(name) {
        Ok(name.to_owned())
    } else {
        Err(malformed(format!("{at}: {name:?} is not a reverse-domain name")))
    }
}

/// Reads one capability entry; `name` comes from the registry key
/// (2026-04-08) or the entry itself (2026-01-11).
fn capability_entry(name: &str, entry: &Value, at: &str) -> Result<CapabilityDecl> {
    let Some(obj) = entry.as_object() else {
        return Err(malformed(format!("{at} is not an object")));
    };
    let version = version_field(obj.get("version"), at)?;
    // `extends` is a string or a non-empty array of strings
    // (capability.json, `$defs/base/extends`).
    let extends = match obj.get("extends") {
        None => Vec::new(),
        Some(Value::String(p)) => vec![name_field(p, &format!("{at}.extends"))?],
        Some(Value::Array(ps)) if !ps.is_empty() => ps
            .iter()
            .map(|p| match p {
                Value::String(p) => name_field(p, &format!("{at}.extends")),
                _ => Err(malformed(format!("{at}.extends holds a non-string"))),
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(malformed(format!("{at}.extends must be a string or a non-empty array")))
        }
    };
    let config = match obj.get("config") {
        None => None,
        Some(c @ Value::Object(_)) => Some(c.clone()),
        Some(_) => return Err(malformed(format!("{at}.config is not an object"))),
    };
    Ok(CapabilityDecl { name: name_field(name, at)?, version, extends, config })
}

/// Parses a discovery profile of either shape: 2026-04-08 capabilities as
/// a registry (an object of arrays), 2026-01-11 as an array of entries
/// with `name`. Only what negotiation reads is checked; other members are
/// left to their owners. An absent `capabilities` reads as none.
pub fn parse_profile(doc: &Value) -> Result<ParsedProfile> {
    let Some(ucp) = doc.get("ucp").filter(|u| u.is_object()) else {
        return Err(malformed("no `ucp` object"));
    };
    let version = version_field(ucp.get("version"), "ucp")?;
    let capabilities = match ucp.get("capabilities") {
        None => Vec::new(),
        Some(Value::Object(registry)) => {
            let mut out = Vec::new();
            for (name, entries) in registry {
                let at = format!("ucp.capabilities[{name:?}]");
                let Some(entries) = entries.as_array() else {
                    return Err(malformed(format!("{at} is not an array")));
                };
                for (i, entry) in entries.iter().enumerate() {
                    out.push(capability_entry(name, entry, &format!("{at}[{i}]"))?);
                }
            }
            out
        }
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let at = format!("ucp.capabilities[{i}]");
                match entry.get("name").and_then(Value::as_str) {
                    Some(name) => capability_entry(name, entry, &at),
                    None => Err(malformed(format!("{at}.name is missing or not a string"))),
                }
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(malformed("ucp.capabilities is neither a registry nor an array")),
    };
    let signing_keys = match doc.get("signing_keys") {
        None => Vec::new(),
        Some(Value::Array(keys)) => {
            for (i, key) in keys.iter().enumerate() {
                let has = |field: &str| key.get(field).is_some_and(Value::is_string);
                if !key.is_object() || !has("kid") || !has("kty") {
                    return Err(malformed(format!(
                        "signing_keys[{i}] is not a JWK with kid and kty"
                    )));
                }
            }
            keys.clone()
        }
        Some(_) => return Err(malformed("signing_keys is not an array")),
    };
    Ok(ParsedProfile { version, capabilities, signing_keys })
}

/// What the business offers, per protocol version. Built by
/// `profile::business_offer` from the same table as the profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    by_version: BTreeMap<String, Vec<CapabilityDecl>>,
}

impl Offer {
    pub fn new(versions: impl IntoIterator<Item = (String, Vec<CapabilityDecl>)>) -> Self {
        Self { by_version: versions.into_iter().collect() }
    }

    /// The protocol versions offered, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.by_version.keys().map(String::as_str)
    }

    pub fn capabilities(&self, version: &str) -> Option<&[CapabilityDecl]> {
        self.by_version.get(version).map(Vec::as_slice)
    }
}

/// A capability active for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCapability {
    pub name: String,
    pub version: String,
    /// Parents, as the business declares them; empty for a root capability.
    pub extends: Vec<String>,
}

/// What the business learned about the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    pub profile_url: Url,
    /// The platform's public JWKs, for verifying its signatures (AP2
    /// mandates, request signatures).
    pub signing_keys: Vec<Value>,
    /// Where to send order webhooks: the `config.webhook_url` of the
    /// platform's order capability, when order was negotiated. Whoever sends
    /// to it must vet it like a profile URL (public addresses only).
    pub webhook_url: Option<Url>,
}

/// The outcome of negotiation.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    version: String,
    capabilities: Vec<ActiveCapability>,
    platform: Platform,
}

/// The kind of resource a response carries, which decides the capabilities
/// it lists ("Response Capability Selection", overview).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Checkout,
    Cart,
    Order,
    CatalogSearch,
    CatalogLookup,
}

impl Resource {
    /// The root capability of the resource.
    pub const fn root(self) -> &'static str {
        match self {
            Self::Checkout => CHECKOUT,
            Self::Cart => CART,
            Self::Order => ORDER,
            Self::CatalogSearch => CATALOG_SEARCH,
            Self::CatalogLookup => CATALOG_LOOKUP,
        }
    }
}

impl Negotiated {
    /// The negotiated protocol version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every active capability, in the business profile's order.
    pub fn capabilities(&self) -> &[ActiveCapability] {
        &self.capabilities
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Whether a capability (for example `dev.ucp.shopping.ap2_mandate`)
    /// is active.
    pub fn is_active(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c.name == name)
    }

    /// The capabilities a response about `resource` lists: its root
    /// capability, if active, and every extension any of whose parents is
    /// listed ("Extension Relevance", overview), followed through chains of
    /// extensions. Empty when the root capability is not active.
    pub fn relevant(&self, resource: Resource) -> Vec<&ActiveCapability> {
        let mut listed: BTreeSet<&str> = BTreeSet::new();
        if self.is_active(resource.root()) {
            listed.insert(resource.root());
        }
        loop {
            let before = listed.len();
            for c in &self.capabilities {
                if c.extends.iter().any(|p| listed.contains(p.as_str())) {
                    listed.insert(&c.name);
                }
            }
            if listed.len() == before {
                break;
            }
        }
        self.capabilities.iter().filter(|c| listed.contains(c.name.as_str())).collect()
    }

    /// The `ucp` member of a response about `resource`, in the negotiated
    /// version's shape: `{version, capabilities: {name: [{version}]}}` for
    /// 2026-04-08, `{version, capabilities: [{name, version}]}` for
    /// 2026-01-11. A 2026-04-08 checkout response must also carry
    /// `payment_handlers` (ucp.json, `response_checkout_schema`), which the
    /// checkout code adds to this object.
    pub fn ucp_response(&self, resource: Resource) -> Value {
        let relevant = self.relevant(resource);
        let capabilities = if self.version == VERSION_2026_01_11 {
            Value::Array(
                relevant.iter().map(|c| json!({"name": c.name, "version": c.version})).collect(),
            )
        } else {
            let registry: Map<String, Value> = relevant
                .iter()
                .map(|c| (c.name.clone(), json!([{ "version": c.version }])))
                .collect();
            Value::Object(registry)
        };
        json!({ "version": self.version, "capabilities": capabilities })
    }
}

/// Negotiates with a platform whose profile, fetched from `profile_url`,
/// is `platform_profile`.
///
/// 1. Protocol version: the platform's `ucp.version` must be one the
///    business offers ("Request-Time Validation", overview); otherwise
///    `version_unsupported`. A platform profile declares exactly one
///    version, so the highest common version is that one.
/// 2. For each business capability, keep it if the platform declares the
///    same name, at the highest version both declare; drop it if they share
///    no version ("Intersection Algorithm", steps 1 and 2).
/// 3. Drop every extension none of whose parents is still present; an
///    extension with several parents stays while at least one remains.
///    Repeat until nothing changes, so chains of extensions fall together
///    (steps 3 and 4).
pub fn negotiate(offer: &Offer, profile_url: Url, platform_profile: &Value) -> Result<Negotiated> {
    let platform = parse_profile(platform_profile)?;
    let Some(business) = offer.capabilities(&platform.version) else {
        let ours: Vec<&str> = offer.versions().collect();
        return Err(Error::new(
            ErrorCode::VersionUnsupported,
            format!(
                "protocol version {} is not supported; this business supports {}",
                platform.version,
                ours.join(", ")
            ),
        ));
    };

    // Steps 1 and 2: intersect by name, at the highest shared version.
    let mut active: Vec<&CapabilityDecl> = Vec::new();
    for decl in business {
        if active.iter().any(|a| a.name == decl.name) {
            continue;
        }
        let business_versions =
            business.iter().filter(|b| b.name == decl.name).map(|b| b.version.as_str());
        let best = business_versions
            .filter(|v| {
                platform.capabilities.iter().any(|p| p.name == decl.name && p.version == *v)
            })
            .max();
        if let Some(best) = best {
            if let Some(chosen) = business.iter().find(|b| b.name == decl.name && b.version == best)
            {
                active.push(chosen);
            }
        }
    }

    // Steps 3 and 4: prune orphaned extensions until stable.
    loop {
        let before = active.len();
        let names: BTreeSet<&str> = active.iter().map(|c| c.name.as_str()).collect();
        active.retain(|c| {
            c.extends.is_empty() || c.extends.iter().any(|p| names.contains(p.as_str()))
        });
        if active.len() == before {
            break;
        }
    }

    let webhook_url = match active.iter().find(|c| c.name == ORDER) {
        Some(order) => webhook_url(&platform, &order.version)?,
        None => None,
    };
    let capabilities = active
        .iter()
        .map(|c| ActiveCapability {
            name: c.name.clone(),
            version: c.version.clone(),
            extends: c.extends.clone(),
        })
        .collect();
    Ok(Negotiated {
        version: platform.version,
        capabilities,
        platform: Platform { profile_url, signing_keys: platform.signing_keys, webhook_url },
    })
}

/// The webhook URL from the platform's order capability at the negotiated
/// version (order.json, `$defs/platform_schema`: `config.webhook_url`).
fn webhook_url(platform: &ParsedProfile, version: &str) -> Result<Option<Url>> {
    let entry = platform.capabilities.iter().find(|c| c.name == ORDER && c.version == version);
    match entry.and_then(|e| e.config.as_ref()).and_then(|c| c.get("webhook_url")) {
        None => Ok(None),
        Some(Value::String(s)) => match Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(Some(u)),
            _ => Err(malformed("the order capability's webhook_url is not an http(s) URL")),
        },
        Some(_) => Err(malformed("the order capability's webhook_url is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ucp::profile::{AP2_MANDATE, DISCOUNT, FULFILLMENT};

    const V1: &str = "2026-01-11";
    const V4: &str = "2026-04-08";

    fn decl(name: &str, version: &str, extends: &[&str]) -> CapabilityDecl {
        CapabilityDecl {
            name: name.into(),
            version: version.into(),
            extends: extends.iter().map(|s| (*s).to_owned()).collect(),
            config: None,
        }
    }

    fn url() -> Url {
        match Url::parse("https://agent.example/profile.json") {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        }
    }

    /// A platform profile in the 2026-04-08 registry shape.
    fn registry(version: &str, caps: &[(&str, &[&str], Value)]) -> Value {
        let mut reg = Map::new();
        for (name, versions, extends) in caps {
            let entries: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let mut e = json!({"version": v, "spec": "https://ucp.dev/s", "schema": "https://ucp.dev/s.json"});
                    if !extends.is_null() {
                        e["extends"] = extends.clone();
                    }
                    e
                })
                .collect();
            reg.insert((*name).to_owned(), Value::Array(entries));
        }
        json!({"ucp": {"version": version, "services": {}, "payment_handlers": {}, "capabilities": reg}})
    }

    fn names(n: &Negotiated) -> Vec<(&str, &str)> {
        n.capabilities().iter().map(|c| (c.name.as_str(), c.version.as_str())).collect()
    }

    fn ok(offer: &Offer, platform: &Value) -> Negotiated {
        match negotiate(offer, url(), platform) {
            Ok(n) => n,
            Err(e) => panic!("negotiation failed: {e}"),
        }
    }

    fn code(r: Result<impl std::fmt::Debug>) -> ErrorCode {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn ucp_agent_header_table() {
        let https = SchemeRule::HttpsOnly;
        let cases: &[(&str, SchemeRule, Result<&str, ErrorCode>)] = &[
            (
                r#"profile="https://agent.example/p.json""#,
                https,
                Ok("https://agent.example/p.json"),
            ),
            (
                r#"profile="https://agent.example/p.json#frag""#,
                https,
                Ok("https://agent.example/p.json"),
            ),
            (
                r#"version="2026-04-08", profile="https://a.example/p";v=1, other=?1"#,
                https,
                Ok("https://a.example/p"),
            ),
            (r#"profile="http://agent.example/p.json""#, https, Err(ErrorCode::InvalidProfileUrl)),
            (
                r#"profile="http://127.0.0.1:9/p.json""#,
                SchemeRule::AllowHttpForTests,
                Ok("http://127.0.0.1:9/p.json"),
            ),
            (
                r#"profile="ftp://agent.example/p""#,
                SchemeRule::AllowHttpForTests,
                Err(ErrorCode::InvalidProfileUrl),
            ),
            (r#"profile=agent"#, https, Err(ErrorCode::InvalidProfileUrl)),
            (r#"profile=("https://a.example/p")"#, https, Err(ErrorCode::InvalidProfileUrl)),
            (r#"agent="x""#, https, Err(ErrorCode::InvalidProfileUrl)),
            (r#"profile="https://a.example/p"#, https, Err(ErrorCode::InvalidProfileUrl)),
            ("", https, Err(ErrorCode::InvalidProfileUrl)),
            ("https://agent.example/p.json", https, Err(ErrorCode::InvalidProfileUrl)),
            (r#"profile="not a url""#, https, Err(ErrorCode::InvalidProfileUrl)),
            (r#"profile="https://user:pw@a.example/p""#, https, Err(ErrorCode::InvalidProfileUrl)),
            (r#"profile="/relative/p.json""#, https, Err(ErrorCode::InvalidProfileUrl)),
        ];
        for (header, rule, want) in cases {
            let got = profile_url_from_header(header, *rule);
            match (want, got) {
                (Ok(u), Ok(got)) => assert_eq!(got.as_str(), *u, "{header}"),
                (Err(c), Err(e)) => assert_eq!(e.code(), *c, "{header}"),
                (want, got) => panic!("{header}: wanted {want:?}, got {got:?}"),
            }
        }
        let long = format!(r#"profile="https://a.example/{}""#, "x".repeat(MAX_PROFILE_URL_LEN));
        assert_eq!(code(profile_url_from_header(&long, https)), ErrorCode::InvalidProfileUrl);
    }

    #[test]
    fn mcp_meta_table() {
        let cases: &[(Value, bool)] = &[
            (json!({"ucp-agent": {"profile": "https://a.example/p"}}), true),
            (json!({"ucp-agent": {"profile": "http://a.example/p"}}), false),
            (json!({"ucp-agent": {"profile": 7}}), false),
            (json!({"ucp-agent": {}}), false),
            (json!({}), false),
        ];
        for (meta, good) in cases {
            let got = profile_url_from_meta(meta, SchemeRule::HttpsOnly);
            assert_eq!(got.is_ok(), *good, "{meta}");
            if let Err(e) = got {
                assert_eq!(e.code(), ErrorCode::InvalidProfileUrl);
            }
        }
    }

    #[test]
    fn intersection_table() {
        // Business: both versions; at 2026-04-08 checkout has two versions.
        let offer = Offer::new([
            (
                V4.to_owned(),
                vec![
                    decl(CHECKOUT, V4, &[]),
                    decl(CHECKOUT, "2026-06-01", &[]),
                    decl(CART, V4, &[]),
                    decl(ORDER, V4, &[]),
                    decl(FULFILLMENT, V4, &[CHECKOUT]),
                    decl(DISCOUNT, V4, &[CHECKOUT, CART]),
                    decl("com.example.gift_wrap", V4, &[FULFILLMENT]),
                    decl("com.example.ribbon", V4, &["com.example.gift_wrap"]),
                ],
            ),
            (V1.to_owned(), vec![decl(CHECKOUT, V1, &[]), decl(DISCOUNT, V1, &[CHECKOUT])]),
        ]);
        type Case<'a> = (&'a str, Value, &'a [(&'a str, &'a str)]);
        let null = Value::Null;
        let cases: Vec<Case<'_>> = vec![
            (
                "everything in common, highest shared checkout version",
                registry(
                    V4,
                    &[
                        (CHECKOUT, &[V4, "2026-06-01", "2026-09-09"], null.clone()),
                        (CART, &[V4], null.clone()),
                        (ORDER, &[V4], null.clone()),
                        (FULFILLMENT, &[V4], json!(CHECKOUT)),
                        (DISCOUNT, &[V4], json!([CHECKOUT, CART])),
                        ("com.example.gift_wrap", &[V4], json!(FULFILLMENT)),
                        ("com.example.ribbon", &[V4], json!("com.example.gift_wrap")),
                    ],
                ),
                &[
                    (CHECKOUT, "2026-06-01"),
                    (CART, V4),
                    (ORDER, V4),
                    (FULFILLMENT, V4),
                    (DISCOUNT, V4),
                    ("com.example.gift_wrap", V4),
                    ("com.example.ribbon", V4),
                ],
            ),
            (
                "no shared capability version drops the capability",
                registry(
                    V4,
                    &[(CHECKOUT, &["2025-01-01"], null.clone()), (CART, &[V4], null.clone())],
                ),
                &[(CART, V4)],
            ),
            (
                "multi-parent extension survives with one parent (cart only)",
                registry(
                    V4,
                    &[(CART, &[V4], null.clone()), (DISCOUNT, &[V4], json!([CHECKOUT, CART]))],
                ),
                &[(CART, V4), (DISCOUNT, V4)],
            ),
            (
                "multi-parent extension survives with the other parent (checkout only)",
                registry(
                    V4,
                    &[(CHECKOUT, &[V4], null.clone()), (DISCOUNT, &[V4], json!([CHECKOUT, CART]))],
                ),
                &[(CHECKOUT, V4), (DISCOUNT, V4)],
            ),
            (
                "multi-parent extension pruned when no parent survives",
                registry(
                    V4,
                    &[(ORDER, &[V4], null.clone()), (DISCOUNT, &[V4], json!([CHECKOUT, CART]))],
                ),
                &[(ORDER, V4)],
            ),
            (
                "chained extensions pruned transitively when the root is missing",
                registry(
                    V4,
                    &[
                        (CART, &[V4], null.clone()),
                        (FULFILLMENT, &[V4], json!(CHECKOUT)),
                        ("com.example.gift_wrap", &[V4], json!(FULFILLMENT)),
                        ("com.example.ribbon", &[V4], json!("com.example.gift_wrap")),
                    ],
                ),
                &[(CART, V4)],
            ),
            (
                "a missing middle link prunes the tail only",
                registry(
                    V4,
                    &[
                        (CHECKOUT, &[V4], null.clone()),
                        (FULFILLMENT, &[V4], json!(CHECKOUT)),
                        ("com.example.ribbon", &[V4], json!("com.example.gift_wrap")),
                    ],
                ),
                &[(CHECKOUT, V4), (FULFILLMENT, V4)],
            ),
            (
                "extension whose parent has no shared version is pruned",
                registry(
                    V4,
                    &[
                        (CHECKOUT, &["2030-01-01"], null.clone()),
                        (FULFILLMENT, &[V4], json!(CHECKOUT)),
                    ],
                ),
                &[],
            ),
            (
                "capabilities the business does not offer are ignored",
                registry(
                    V4,
                    &[
                        (CHECKOUT, &[V4], null.clone()),
                        ("com.other.loyalty", &[V4], json!(CHECKOUT)),
                    ],
                ),
                &[(CHECKOUT, V4)],
            ),
            ("no capabilities at all", json!({"ucp": {"version": V4}}), &[]),
            (
                "2026-01-11 array shape negotiates against the old offer",
                json!({"ucp": {"version": V1, "capabilities": [
                    {"name": CHECKOUT, "version": V1},
                    {"name": DISCOUNT, "version": V1, "extends": CHECKOUT},
                    {"name": FULFILLMENT, "version": V1, "extends": CHECKOUT},
                ]}}),
                &[(CHECKOUT, V1), (DISCOUNT, V1)],
            ),
        ];
        for (name, platform, want) in cases {
            let n = ok(&offer, &platform);
            assert_eq!(names(&n), want.to_vec(), "{name}");
            assert_eq!(n.version(), platform["ucp"]["version"].as_str().unwrap_or(""), "{name}");
        }
    }

    #[test]
    fn error_table() {
        let offer = Offer::new([(V4.to_owned(), vec![decl(CHECKOUT, V4, &[])])]);
        let good_cap = json!({CHECKOUT: [{"version": V4}]});
        let cases: &[(&str, Value, ErrorCode)] = &[
            (
                "newer protocol version",
                json!({"ucp": {"version": "2026-08-25"}}),
                ErrorCode::VersionUnsupported,
            ),
            (
                "older protocol version not offered",
                json!({"ucp": {"version": V1}}),
                ErrorCode::VersionUnsupported,
            ),
            ("not an object", json!("profile"), ErrorCode::ProfileMalformed),
            ("no ucp", json!({"signing_keys": []}), ErrorCode::ProfileMalformed),
            ("ucp not an object", json!({"ucp": []}), ErrorCode::ProfileMalformed),
            ("no version", json!({"ucp": {"capabilities": good_cap}}), ErrorCode::ProfileMalformed),
            (
                "version not a date",
                json!({"ucp": {"version": "latest"}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "capabilities a string",
                json!({"ucp": {"version": V4, "capabilities": "all"}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "registry value not an array",
                json!({"ucp": {"version": V4, "capabilities": {CHECKOUT: {"version": V4}}}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "entry without version",
                json!({"ucp": {"version": V4, "capabilities": {CHECKOUT: [{}]}}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "bad capability name",
                json!({"ucp": {"version": V4, "capabilities": {"Checkout": [{"version": V4}]}}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "extends a number",
                json!({"ucp": {"version": V4, "capabilities": {DISCOUNT: [{"version": V4, "extends": 1}]}}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "extends an empty array",
                json!({"ucp": {"version": V4, "capabilities": {DISCOUNT: [{"version": V4, "extends": []}]}}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "config not an object",
                json!({"ucp": {"version": V4, "capabilities": {CHECKOUT: [{"version": V4, "config": 1}]}}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "array entry without name",
                json!({"ucp": {"version": V1, "capabilities": [{"version": V1}]}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "signing_keys not an array",
                json!({"ucp": {"version": V4}, "signing_keys": {}}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "signing key without kid",
                json!({"ucp": {"version": V4}, "signing_keys": [{"kty": "EC"}]}),
                ErrorCode::ProfileMalformed,
            ),
            (
                "webhook_url not a URL",
                json!({"ucp": {"version": V4, "capabilities": {ORDER: [{"version": V4, "config": {"webhook_url": "x"}}]}}}),
                ErrorCode::ProfileMalformed,
            ),
        ];
        let offer_with_order =
            Offer::new([(V4.to_owned(), vec![decl(CHECKOUT, V4, &[]), decl(ORDER, V4, &[])])]);
        for (name, platform, want) in cases {
            let offer = if name.starts_with("webhook") { &offer_with_order } else { &offer };
            assert_eq!(code(negotiate(offer, url(), platform)), *want, "{name}");
            assert_eq!(
                want.http_status(),
                if *want == ErrorCode::InvalidProfileUrl { 400 } else { 422 }
            );
        }
    }

    #[test]
    fn platform_keys_and_webhook_are_kept() {
        let offer =
            Offer::new([(V4.to_owned(), vec![decl(CHECKOUT, V4, &[]), decl(ORDER, V4, &[])])]);
        let platform = json!({
            "ucp": {"version": V4, "capabilities": {
                CHECKOUT: [{"version": V4}],
                ORDER: [{"version": V4, "config": {"webhook_url": "https://agent.example/hooks"}}],
            }},
            "signing_keys": [{"kid": "p1", "kty": "EC", "crv": "P-256", "x": "a", "y": "b"}],
        });
        let n = ok(&offer, &platform);
        assert_eq!(n.platform().profile_url, url());
        assert_eq!(n.platform().signing_keys[0]["kid"], "p1");
        assert_eq!(
            n.platform().webhook_url.as_ref().map(Url::as_str),
            Some("https://agent.example/hooks")
        );

        // Without order in the intersection there is nothing to notify.
        let offer = Offer::new([(V4.to_owned(), vec![decl(CHECKOUT, V4, &[])])]);
        assert_eq!(ok(&offer, &platform).platform().webhook_url, None);
    }

    #[test]
    fn responses_list_the_resource_and_its_extensions() {
        let offer = Offer::new([
            (
                V4.to_owned(),
                vec![
                    decl(CHECKOUT, V4, &[]),
                    decl(CART, V4, &[]),
                    decl(ORDER, V4, &[]),
                    decl(FULFILLMENT, V4, &[CHECKOUT]),
                    decl(DISCOUNT, V4, &[CHECKOUT, CART]),
                    decl(AP2_MANDATE, V4, &[CHECKOUT]),
                    decl("com.example.ribbon", V4, &[FULFILLMENT]),
                ],
            ),
            (
                V1.to_owned(),
                vec![
                    decl(CHECKOUT, V1, &[]),
                    decl(DISCOUNT, V1, &[CHECKOUT]),
                    decl(ORDER, V1, &[]),
                ],
            ),
        ]);
        let all: Vec<(&str, &[&str], Value)> = vec![
            (CHECKOUT, &[V4], Value::Null),
            (CART, &[V4], Value::Null),
            (ORDER, &[V4], Value::Null),
            (FULFILLMENT, &[V4], json!(CHECKOUT)),
            (DISCOUNT, &[V4], json!([CHECKOUT, CART])),
            (AP2_MANDATE, &[V4], json!(CHECKOUT)),
            ("com.example.ribbon", &[V4], json!(FULFILLMENT)),
        ];
        let n = ok(&offer, &registry(V4, &all));
        assert!(n.is_active(AP2_MANDATE));
        let cases: &[(Resource, &[&str])] = &[
            (
                Resource::Checkout,
                &[CHECKOUT, FULFILLMENT, DISCOUNT, AP2_MANDATE, "com.example.ribbon"],
            ),
            (Resource::Cart, &[CART, DISCOUNT]),
            (Resource::Order, &[ORDER]),
            (Resource::CatalogSearch, &[]),
        ];
        for (resource, want) in cases {
            let got: Vec<&str> = n.relevant(*resource).iter().map(|c| c.name.as_str()).collect();
            assert_eq!(got, want.to_vec(), "{resource:?}");
        }
        assert_eq!(
            n.ucp_response(Resource::Cart),
            json!({"version": V4, "capabilities": {CART: [{"version": V4}], DISCOUNT: [{"version": V4}]}})
        );

        let old = ok(
            &offer,
            &json!({"ucp": {"version": V1, "capabilities": [
                {"name": CHECKOUT, "version": V1},
                {"name": DISCOUNT, "version": V1, "extends": CHECKOUT},
                {"name": ORDER, "version": V1},
            ]}}),
        );
        assert_eq!(
            old.ucp_response(Resource::Checkout),
            json!({"version": V1, "capabilities": [
                {"name": CHECKOUT, "version": V1},
                {"name": DISCOUNT, "version": V1},
            ]})
        );
    }

    #[test]
    fn name_and_version_patterns() {
        for (s, good) in [
            ("dev.ucp.shopping.checkout", true),
            ("com.example.loyalty_gold", true),
            ("a.b", true),
            ("a9.b_", true),
            ("checkout", false),
            ("Dev.ucp", false),
            ("dev..ucp", false),
            ("dev.9ucp", false),
            ("dev_x.ucp", false),
            (".dev", false),
            ("dev.", false),
        ] {
            assert_eq!(is_reverse_domain(s), good, "{s}");
        }
        for (s, good) in [
            ("2026-04-08", true),
            ("2026-4-08", false),
            ("20260408xx", false),
            ("2026-04-0a", false),
        ] {
            assert_eq!(is_version(s), good, "{s}");
        }
    }
}
