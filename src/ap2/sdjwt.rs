//! SD-JWT (RFC 9901) presentations and the AP2 v0.2 delegation chains made
//! of them: parsing, disclosure processing, hop-by-hop key binding, `aud`,
//! `nonce` and time.
//!
//! This module knows what an SD-JWT chain is, not what a mandate means:
//! it hands each hop's `delegate_payload` item (the mandate) to
//! `ap2::v02`, which reads `vct`, constraints and hashes. It is pure: time,
//! keys and the merchant's challenge are arguments, and the issuance
//! helpers take their salts from the caller.
//!
//! # The wire format
//!
//! A presentation is one or more SD-JWTs joined by `~` (so two hops are
//! separated by `~~`, the form of the AP2 reference SDK), optionally
//! followed by a KB-JWT:
//!
//! ```text
//! <root JWT>~<disclosure>~…~~<hop JWT>~<disclosure>~…~[<KB-JWT>]
//! ```
//!
//! - The **root** is signed by a key the verifier resolves by `kid` from a
//!   key set it trusts (the agent platform's profile keys, or a configured
//!   issuer); its `typ` is one of [`ROOT_TYPS`].
//! - Every later **hop** (`typ` [`TYP_HOP_OPEN`] or [`TYP_HOP_CLOSED`]) is
//!   signed by the key in the previous hop's `cnf.jwk`, carries `iat`,
//!   `aud`, `nonce`, and exactly one of `sd_hash` (base64url SHA-256 of the
//!   previous SD-JWT as presented, `jwt~d1~…~dn~`) or `issuer_jwt_hash` (of
//!   the previous JWT alone). An open hop names the next signer in its
//!   mandate's `cnf`; a closed hop has no `cnf` and ends the chain.
//! - A trailing **KB-JWT** (`typ` [`TYP_KB_JWT`], RFC 9901 §4.3) is signed
//!   by the last SD-JWT's `cnf` key and carries `iat`, `aud`, `nonce` and
//!   `sd_hash` over everything presented before it, up to and including
//!   the last `~`.
//!
//! Exactly one element proves possession for this merchant: the KB-JWT
//! when there is one, else the closed last hop. Its `aud` and `nonce` must
//! be the caller's challenge, and its `iat` recent. A chain whose last
//! SD-JWT still names a `cnf` key but is not followed by a KB-JWT is
//! refused (nobody proved holding that key), and so is anything after a
//! closed hop.
//!
//! Each SD-JWT carries its mandate as the single element of
//! `delegate_payload`, usually selectively disclosed. Disclosures follow
//! RFC 9901 §7.1: `_sd_alg` is `sha-256` or absent; every digest appears
//! once; every disclosure is referenced exactly once (a copied, altered or
//! foreign disclosure is refused); a disclosed name never overwrites a
//! claim. What the holder withheld is reported per place
//! ([`Withheld`]), so the mandate layer can refuse withholding where it
//! would loosen a constraint.
//!
//! # Why this is hand-written
//!
//! The published Rust SD-JWT crates were evaluated and do not fit: `sd-jwt-rs`
//! implements draft 07 rather than RFC 9901 and verifies signatures
//! through `jsonwebtoken`, outside this gateway's pinned ES256 header
//! policy (`jws`); `sd-jwt-payload` brings `anyhow` and a second crypto
//! stack, parses one SD-JWT with its own lenient JWT reader, and neither
//! understands `~~` delegation chains, `kb+sd-jwt` hops or
//! `delegate_payload`. What is needed on top of `jws` is the disclosure
//! resolver and the hop rules, written here and tested against the RFC
//! examples below.

use std::collections::{HashMap, HashSet};

use rand_core::CryptoRngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use super::jws::{self, malformed, DecodeOptions, Es256Signer, KidRule};
use super::keys::{PublicKey, PublicKeySet};
use super::verify::ClockSkew;
use crate::domain::{Error, ErrorCode, Result};

/// Longest presentation accepted. A checkout JWT travels inside the
/// checkout mandate, so this is sized for a full checkout (50 lines), not
/// for a mandate alone.
pub const MAX_PRESENTATION_BYTES: usize = 128 * 1024;
/// Longest JWT (root, hop or KB-JWT) accepted.
pub const MAX_JWT_BYTES: usize = 64 * 1024;
/// Most SD-JWTs in one chain: a root and its delegations.
pub const MAX_SEGMENTS: usize = 8;
/// Most disclosures in one presentation.
pub const MAX_DISCLOSURES: usize = 256;
/// Most digests (disclosed, withheld or decoy) in one presentation.
pub const MAX_DIGESTS: usize = 4096;
/// Deepest nesting of disclosures inside disclosed values.
const MAX_DEPTH: usize = 32;
/// Longest salt accepted in a disclosure.
const MAX_SALT_LEN: usize = 256;

/// The only `_sd_alg` accepted (also the default when it is absent).
pub const SD_ALG: &str = "sha-256";
/// `typ` values accepted for the root SD-JWT: the SD-JWT VC type this
/// gateway advertises (`vp_formats_supported`), its older name, and the
/// RFC's example type, which the AP2 reference SDK emits.
pub const ROOT_TYPS: &[&str] = &["dc+sd-jwt", "vc+sd-jwt", "example+sd-jwt"];
/// An open delegation hop: names the next signer in its mandate's `cnf`.
pub const TYP_HOP_OPEN: &str = "kb+sd-jwt+kb";
/// A closed delegation hop: the last one, with no `cnf`.
pub const TYP_HOP_CLOSED: &str = "kb+sd-jwt";
/// A plain key-binding JWT (RFC 9901 §4.3).
pub const TYP_KB_JWT: &str = "kb+jwt";

/// Claims an issuer-signed root may carry besides its mandate.
const ROOT_CLAIMS: &[&str] = &["delegate_payload", "iss", "sub", "iat", "exp", "nbf", "jti", "cnf"];
/// Claims a delegation hop may carry.
const HOP_CLAIMS: &[&str] = &[
    "delegate_payload",
    "iss",
    "iat",
    "exp",
    "nbf",
    "jti",
    "aud",
    "nonce",
    "sd_hash",
    "issuer_jwt_hash",
];
/// Claims a KB-JWT may carry.
const KB_CLAIMS: &[&str] = &["iat", "exp", "nbf", "aud", "nonce", "sd_hash"];

/// base64url(SHA-256(ASCII of `text`)): disclosure digests, `sd_hash`,
/// `issuer_jwt_hash`, `checkout_hash` and mandate ids.
pub fn hash(text: &str) -> String {
    jws::b64url(&Sha256::digest(text.as_bytes()))
}

fn unsigned(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::MandateInvalidSignature, message)
}

fn scope(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::MandateScopeMismatch, message)
}

// ---- Parsing ------------------------------------------------------------------

/// One SD-JWT of a presentation, as presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// The issuer-signed (or hop-signed) compact JWT.
    pub jwt: &'a str,
    /// `jwt~d1~…~dn~`, byte for byte: what the next hop's `sd_hash` covers.
    pub text: &'a str,
    disclosures: &'a str,
}

impl<'a> Segment<'a> {
    /// The disclosures, in presentation order.
    pub fn disclosures(&self) -> impl Iterator<Item = &'a str> {
        self.disclosures.split('~').filter(|d| !d.is_empty())
    }
}

/// A presentation split into its SD-JWTs and optional KB-JWT. Nothing is
/// verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation<'a> {
    pub segments: Vec<Segment<'a>>,
    pub kb_jwt: Option<&'a str>,
    /// Everything up to and including the last `~`: what a KB-JWT's
    /// `sd_hash` covers.
    pub before_kb: &'a str,
}

impl Presentation<'_> {
    /// The JWT that carries the last (closed) mandate. Its hash is the AP2
    /// receipt `reference`: it does not change with the disclosures chosen
    /// or the key binding.
    pub fn closed_jwt(&self) -> &str {
        self.segments.last().map_or("", |s| s.jwt)
    }
}

/// Splits a presentation. Only the shape is checked: sizes, non-empty
/// parts, JWTs where JWTs belong and disclosures (no dots) elsewhere.
pub fn parse(text: &str) -> Result<Presentation<'_>> {
    if text.len() > MAX_PRESENTATION_BYTES {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("an SD-JWT presentation is at most {MAX_PRESENTATION_BYTES} bytes"),
        ));
    }
    // Each part with the byte offset where it starts.
    let mut parts = Vec::new();
    let mut offset = 0;
    for part in text.split('~') {
        parts.push((offset, part));
        offset += part.len() + 1;
    }
    let Some(&(last_start, last)) = parts.last().filter(|_| parts.len() >= 2) else {
        return Err(malformed("not an SD-JWT: a presentation ends its JWT with \"~\""));
    };
    let kb_jwt = if last.is_empty() {
        None
    } else if last.contains('.') {
        Some(last)
    } else {
        return Err(malformed("the part after the last \"~\" is neither empty nor a KB-JWT"));
    };
    let body = &parts[..parts.len() - 1];
    let mut segments = Vec::new();
    let mut disclosures = 0usize;
    let mut i = 0;
    while i < body.len() {
        let (start, jwt) = body[i];
        if jwt.matches('.').count() != 2 {
            return Err(malformed(format!(
                "hop {} does not start with a compact JWT",
                segments.len()
            )));
        }
        i += 1;
        let first_disclosure = i;
        while i < body.len() && !body[i].1.is_empty() {
            if body[i].1.contains('.') {
                return Err(malformed(
                    "a JWT where a disclosure belongs: separate the SD-JWTs of a chain with \"~~\"",
                ));
            }
            i += 1;
        }
        disclosures += i - first_disclosure;
        // The segment ends just after the "~" that closes its last part.
        let end = if i < body.len() { body[i].0 } else { last_start };
        let jwt_end = start + jwt.len();
        segments.push(Segment {
            jwt,
            text: &text[start..end],
            disclosures: &text[(jwt_end + 1).min(end)..end],
        });
        if i < body.len() {
            // An empty part separates two SD-JWTs; one must follow it.
            i += 1;
            if i >= body.len() {
                return Err(malformed("an empty SD-JWT after \"~~\""));
            }
        }
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(malformed(format!("a chain holds at most {MAX_SEGMENTS} SD-JWTs")));
    }
    if disclosures > MAX_DISCLOSURES {
        return Err(malformed(format!(
            "a presentation holds at most {MAX_DISCLOSURES} disclosures"
        )));
    }
    Ok(Presentation { segments, kb_jwt, before_kb: &text[..last_start] })
}

// ---- Disclosures --------------------------------------------------------------

/// Where a holder withheld a selectively disclosable part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// One or more members of the object at this path (a digest of its
    /// `_sd` that no disclosure answers: a withheld claim or a decoy).
    Member(String),
    /// One or more elements of the array at this path.
    Element(String),
}

impl Withheld {
    pub fn path(&self) -> &str {
        match self {
            Self::Member(p) | Self::Element(p) => p,
        }
    }
}

/// A payload with its disclosures applied: `_sd`, `_sd_alg` and withheld
/// array elements removed, disclosed claims in place. Paths are JSONPath
/// into this result (`$.delegate_payload[0].constraints[1].allowed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub claims: Map<String, Value>,
    pub withheld: Vec<Withheld>,
}

struct Disclosure {
    name: Option<String>,
    value: Value,
    used: bool,
}

/// Applies `disclosures` to a signed payload (RFC 9901 §7.1).
pub fn resolve(mut payload: Map<String, Value>, disclosures: &[&str]) -> Result<Resolved> {
    match payload.remove("_sd_alg") {
        None => {}
        Some(Value::String(alg)) if alg == SD_ALG => {}
        Some(other) => {
            return Err(Error::new(
                ErrorCode::AlgNotAllowed,
                format!("_sd_alg {other} is not allowed; only {SD_ALG} is"),
            ))
        }
    }
    let mut by_digest = HashMap::new();
    let mut entries = Vec::with_capacity(disclosures.len());
    for text in disclosures {
        let entry = decode_disclosure(text)?;
        if by_digest.insert(hash(text), entries.len()).is_some() {
            return Err(malformed("a disclosure is presented twice"));
        }
        entries.push(entry);
    }
    let mut walker = Walker { by_digest, entries, seen: HashSet::new(), withheld: Vec::new() };
    let Value::Object(claims) = walker.walk(Value::Object(payload), "$", 0)? else {
        return Err(Error::internal("an object resolved to something else"));
    };
    if walker.entries.iter().any(|e| !e.used) {
        return Err(unsigned(
            "a disclosure is not referenced by the signed payload (altered, or from another token)",
        ));
    }
    Ok(Resolved { claims, withheld: walker.withheld })
}

fn decode_disclosure(text: &str) -> Result<Disclosure> {
    let bytes = jws::b64url_decode(text)?;
    let value = jws::parse_json_strict(&bytes)
        .map_err(|_| malformed("a disclosure is not a JSON array"))?;
    let Value::Array(mut items) = value else {
        return Err(malformed("a disclosure is not a JSON array"));
    };
    let salt_ok =
        matches!(items.first(), Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SALT_LEN);
    if !salt_ok {
        return Err(malformed("a disclosure needs a salt string"));
    }
    match items.len() {
        2 => Ok(Disclosure { name: None, value: items.remove(1), used: false }),
        3 => {
            let value = items.remove(2);
            match items.remove(1) {
                Value::String(name) if name != "_sd" && name != "..." && name != "_sd_alg" => {
                    Ok(Disclosure { name: Some(name), value, used: false })
                }
                _ => Err(malformed("a disclosure names no claim, or a reserved one")),
            }
        }
        _ => Err(malformed("a disclosure is [salt, value] or [salt, name, value]")),
    }
}

struct Walker {
    by_digest: HashMap<String, usize>,
    entries: Vec<Disclosure>,
    seen: HashSet<String>,
    withheld: Vec<Withheld>,
}

impl Walker {
    /// Records a digest, refusing one seen before anywhere in the payload
    /// or its disclosures, and returns its disclosure if one was presented.
    fn take(&mut self, digest: &str) -> Result<Option<usize>> {
        if self.seen.len() >= MAX_DIGESTS {
            return Err(malformed(format!("a presentation holds at most {MAX_DIGESTS} digests")));
        }
        if !self.seen.insert(digest.to_owned()) {
            return Err(malformed("a digest appears twice in the signed payload"));
        }
        Ok(self.by_digest.get(digest).copied().inspect(|&i| self.entries[i].used = true))
    }

    fn walk(&mut self, value: Value, path: &str, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(malformed("selective disclosures are nested too deeply"));
        }
        match value {
            Value::Object(mut map) => {
                if map.contains_key("...") {
                    return Err(malformed("an array-element digest outside an array"));
                }
                if map.contains_key("_sd_alg") {
                    return Err(malformed("_sd_alg is allowed at the top level only"));
                }
                let digests = match map.remove("_sd") {
                    None => Vec::new(),
                    Some(Value::Array(d)) => d,
                    Some(_) => return Err(malformed("_sd is not an array")),
                };
                let mut out = Map::new();
                for (name, v) in map {
                    let child = format!("{path}.{name}");
                    out.insert(name, self.walk(v, &child, depth + 1)?);
                }
                let mut withheld = false;
                for digest in digests {
                    let Value::String(digest) = digest else {
                        return Err(malformed("an _sd digest is not a string"));
                    };
                    let Some(i) = self.take(&digest)? else {
                        withheld = true;
                        continue;
                    };
                    let Some(name) = self.entries[i].name.clone() else {
                        return Err(malformed("an array-element disclosure answers an _sd digest"));
                    };
                    if out.contains_key(&name) {
                        return Err(malformed(format!(
                            "disclosed claim {name:?} is already in the payload"
                        )));
                    }
                    let value = std::mem::take(&mut self.entries[i].value);
                    let child = format!("{path}.{name}");
                    let value = self.walk(value, &child, depth + 1)?;
                    out.insert(name, value);
                }
                if withheld {
                    self.withheld.push(Withheld::Member(path.to_owned()));
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut withheld = false;
                for item in items {
                    let digest = match &item {
                        Value::Object(m) if m.contains_key("...") => {
                            match (m.len(), m.get("...")) {
                                (1, Some(Value::String(d))) => Some(d.clone()),
                                _ => {
                                    return Err(malformed(
                                        "an array-element digest object is malformed",
                                    ))
                                }
                            }
                        }
                        _ => None,
                    };
                    let child = format!("{path}[{}]", out.len());
                    let Some(digest) = digest else {
                        out.push(self.walk(item, &child, depth + 1)?);
                        continue;
                    };
                    let Some(i) = self.take(&digest)? else {
                        withheld = true;
                        continue;
                    };
                    if self.entries[i].name.is_some() {
                        return Err(malformed(
                            "an object-property disclosure answers an array digest",
                        ));
                    }
                    let value = std::mem::take(&mut self.entries[i].value);
                    out.push(self.walk(value, &child, depth + 1)?);
                }
                if withheld {
                    self.withheld.push(Withheld::Element(path.to_owned()));
                }
                Ok(Value::Array(out))
            }
            other => Ok(other),
        }
    }
}

// ---- Chains -------------------------------------------------------------------

/// Limits on times, besides the signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPolicy {
    pub skew: ClockSkew,
    /// Oldest the proof of possession (the KB-JWT or the closed hop) may
    /// be: it answers this merchant's challenge, so it is made just before
    /// it is sent.
    pub max_presentation_age: Duration,
    /// Furthest in the future the root may expire: an open mandate is a
    /// standing authorization, but not an endless one.
    pub max_lifetime: Duration,
}

impl Default for ChainPolicy {
    fn default() -> Self {
        Self {
            skew: ClockSkew::DEFAULT,
            max_presentation_age: Duration::minutes(15),
            max_lifetime: Duration::days(400),
        }
    }
}

/// Everything [`verify_chain`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct ChainInput<'a> {
    pub presentation: &'a str,
    /// The keys that may sign a root: the agent platform's profile keys
    /// and the issuers the merchant trusts.
    pub root_keys: &'a PublicKeySet,
    /// The merchant's challenge: the `aud` and `nonce` the proof of
    /// possession must carry.
    pub audience: &'a str,
    pub nonce: &'a str,
    pub now: OffsetDateTime,
    pub policy: ChainPolicy,
}

/// One verified SD-JWT of a chain.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The header `typ` (a root type, or a hop type).
    pub typ: String,
    /// RFC 7638 thumbprint of the key that signed this hop.
    pub signer: String,
    /// The `delegate_payload` item with its disclosures applied.
    pub mandate: Map<String, Value>,
    /// What the holder withheld inside the mandate; paths start at the
    /// mandate (`$.constraints[0].allowed`).
    pub withheld: Vec<Withheld>,
    /// The key this hop delegates to, from the mandate's (or, for a root
    /// followed by a KB-JWT, the JWT's) `cnf`.
    pub cnf: Option<PublicKey>,
    /// base64url SHA-256 of this hop's JWT: stable whatever is disclosed.
    pub jwt_hash: String,
    /// base64url SHA-256 of this SD-JWT as presented (its `sd_hash`).
    pub sd_hash: String,
    /// The earliest `exp` of the JWT and its mandate, if either has one.
    pub expires_at: Option<i64>,
}

/// How the holder of the last key proved possession.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A closed `kb+sd-jwt` hop carried the challenge.
    ClosedHop,
    /// A trailing `kb+jwt` carried it.
    KbJwt,
}

/// A chain that passed every check of this module.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    pub hops: Vec<Hop>,
    /// The `kid` that resolved the root key.
    pub root_kid: String,
    pub binding: Binding,
    /// `iat` of the proof of possession.
    pub presented_at: i64,
    /// The instant after which no part of the chain verifies any more.
    pub valid_until: i64,
}

impl VerifiedChain {
    /// The mandate the chain ends with.
    pub fn last(&self) -> Option<&Hop> {
        self.hops.last()
    }
}

/// Verifies a chain against the trusted root keys and the merchant's
/// challenge. Codes: shape, unknown claims, a missing or extra hop →
/// `mandate_malformed`; `_sd_alg` or a header `alg` other than the one
/// allowed → `alg_not_allowed`; no trusted key → `agent_missing_key`;
/// an unknown root `kid` → `unknown_kid`; a signature that does not
/// verify under the bound key or a disclosure the payload does not
/// reference → `mandate_invalid_signature`; a broken `sd_hash` /
/// `issuer_jwt_hash` link → `chain_hash_mismatch`; another `aud` or
/// `nonce` → `mandate_scope_mismatch`; times → `mandate_not_yet_valid`,
/// `mandate_expired`.
pub fn verify_chain(input: &ChainInput<'_>) -> Result<VerifiedChain> {
    let presentation = parse(input.presentation)?;
    let now = input.now.unix_timestamp();
    let skew = input.policy.skew.get().whole_seconds();
    let clock = Clock { now, skew };
    let mut hops: Vec<Hop> = Vec::with_capacity(presentation.segments.len());
    let mut root_kid = String::new();
    let mut proof: Option<Proof> = None;

    for (index, segment) in presentation.segments.iter().enumerate() {
        let previous = hops.last();
        if let Some(prev) = previous {
            if prev.cnf.is_none() {
                return Err(malformed(format!(
                    "hop {index} follows a hop that delegates to no key (cnf)"
                )));
            }
        }
        let (typ, signer, claims) = match previous {
            None => {
                let (kid, typ, key, claims) = verify_root(segment, input)?;
                root_kid = kid;
                (typ, key, claims)
            }
            Some(prev) => verify_hop(segment, prev, &presentation.segments[index - 1])?,
        };
        let (hop, hop_proof) = read_hop(index, segment, typ, signer, claims, clock)?;
        if hop_proof.is_some() {
            proof = hop_proof;
        }
        hops.push(hop);
    }

    let last = hops.last().ok_or_else(|| malformed("a presentation holds no SD-JWT"))?;
    let binding = match (presentation.kb_jwt, last.cnf.as_ref()) {
        (Some(kb), Some(key)) => {
            proof = Some(verify_kb_jwt(kb, key, presentation.before_kb, clock)?);
            Binding::KbJwt
        }
        (Some(_), None) => {
            return Err(malformed("a KB-JWT follows an SD-JWT that binds no key (cnf)"));
        }
        (None, Some(_)) => {
            return Err(malformed(
                "the chain ends with a delegation to a key (cnf) that never signed: \
                 a closed kb+sd-jwt hop or a KB-JWT must follow",
            ));
        }
        (None, None) if hops.len() == 1 => {
            return Err(malformed("the SD-JWT is not key-bound: no closed hop and no KB-JWT"));
        }
        (None, None) => Binding::ClosedHop,
    };
    let proof = proof.ok_or_else(|| Error::internal("a bound chain without its proof"))?;
    if proof.aud != input.audience {
        return Err(scope(format!(
            "the presentation is for audience {:?}, not this merchant",
            truncate(&proof.aud)
        )));
    }
    if proof.nonce != input.nonce {
        return Err(scope("the presentation answers another challenge (nonce)"));
    }
    let age = i128::from(now) - i128::from(proof.iat);
    let max_age = i128::from(input.policy.max_presentation_age.whole_seconds());
    if age > max_age + i128::from(skew) {
        return Err(Error::new(ErrorCode::MandateExpired, "the presentation is too old"));
    }

    let root_exp = hops
        .first()
        .and_then(|h| h.expires_at)
        .ok_or_else(|| malformed("the root mandate never expires: it needs an exp"))?;
    if i128::from(root_exp) - i128::from(now)
        > i128::from(input.policy.max_lifetime.whole_seconds())
    {
        return Err(malformed(format!(
            "the root mandate is valid for more than {} days",
            input.policy.max_lifetime.whole_days()
        )));
    }
    let proof_end = proof.iat.saturating_add(input.policy.max_presentation_age.whole_seconds());
    let valid_until = hops
        .iter()
        .filter_map(|h| h.expires_at)
        .chain(proof.exp)
        .fold(proof_end, i64::min)
        .saturating_add(skew);
    Ok(VerifiedChain { hops, root_kid, binding, presented_at: proof.iat, valid_until })
}

/// The challenge answer of the proof of possession.
struct Proof {
    iat: i64,
    exp: Option<i64>,
    aud: String,
    nonce: String,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    now: i64,
    skew: i64,
}

fn verify_root(
    segment: &Segment<'_>,
    input: &ChainInput<'_>,
) -> Result<(String, String, String, Map<String, Value>)> {
    let options = DecodeOptions { max_bytes: MAX_JWT_BYTES, ..DecodeOptions::default() };
    let token = jws::decode_compact_with(segment.jwt, &options)?;
    let typ = token.header().typ().unwrap_or_default().to_owned();
    if !ROOT_TYPS.iter().any(|t| jws::same_media_type(&typ, t)) {
        return Err(malformed(format!(
            "the root SD-JWT has typ {:?}; expected one of {ROOT_TYPS:?}",
            truncate(&typ)
        )));
    }
    if input.root_keys.is_empty() {
        return Err(Error::new(
            ErrorCode::AgentMissingKey,
            "no key is known that may sign the root of this mandate",
        ));
    }
    let kid = token.kid().to_owned();
    let key = input.root_keys.find(&kid, input.now)?;
    let verified = token.verify(key.verifying_key())?;
    let claims = verified.claims::<Map<String, Value>>()?;
    Ok((kid, typ, key.thumbprint().to_owned(), claims))
}

fn verify_hop(
    segment: &Segment<'_>,
    prev: &Hop,
    prev_segment: &Segment<'_>,
) -> Result<(String, String, Map<String, Value>)> {
    let options = DecodeOptions {
        kid: KidRule::Optional,
        max_bytes: MAX_JWT_BYTES,
        ..DecodeOptions::default()
    };
    let token = jws::decode_compact_with(segment.jwt, &options)?;
    let typ = token.header().typ().unwrap_or_default().to_owned();
    if ![TYP_HOP_OPEN, TYP_HOP_CLOSED].iter().any(|t| jws::same_media_type(&typ, t)) {
        return Err(malformed(format!(
            "a delegation hop has typ {:?}; expected {TYP_HOP_OPEN} or {TYP_HOP_CLOSED}",
            truncate(&typ)
        )));
    }
    let key = prev.cnf.as_ref().ok_or_else(|| malformed("a hop follows no cnf"))?;
    let verified = token.verify(key.verifying_key()).map_err(|e| {
        if e.code() == ErrorCode::MandateInvalidSignature {
            unsigned("a hop is not signed by the key the previous hop delegated to (cnf)")
        } else {
            e
        }
    })?;
    let claims = verified.claims::<Map<String, Value>>()?;
    match (claims.get("sd_hash"), claims.get("issuer_jwt_hash")) {
        (Some(Value::String(h)), None) if *h == hash(prev_segment.text) => {}
        (None, Some(Value::String(h))) if *h == hash(prev_segment.jwt) => {}
        (Some(Value::String(_)), None) | (None, Some(Value::String(_))) => {
            return Err(Error::new(
                ErrorCode::ChainHashMismatch,
                "a hop is bound to another SD-JWT than the one before it",
            ))
        }
        _ => {
            return Err(malformed(
                "a hop needs exactly one of sd_hash and issuer_jwt_hash, as a string",
            ))
        }
    }
    Ok((typ, key.thumbprint().to_owned(), claims))
}

fn read_hop(
    index: usize,
    segment: &Segment<'_>,
    typ: String,
    signer: String,
    claims: Map<String, Value>,
    clock: Clock,
) -> Result<(Hop, Option<Proof>)> {
    let is_root = index == 0;
    let allowed = if is_root { ROOT_CLAIMS } else { HOP_CLAIMS };
    let disclosures: Vec<&str> = segment.disclosures().collect();
    let Resolved { mut claims, withheld } = resolve(claims, &disclosures)?;
    if let Some(name) = claims.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(malformed(format!(
            "hop {index} carries an unknown claim {:?}",
            truncate(name)
        )));
    }
    let what = format!("hop {index}");
    let times = Times::read(&claims, &what)?;
    times.check(&what, clock)?;

    let prefix = "$.delegate_payload[0]";
    if withheld.iter().any(|w| w.path() == "$.delegate_payload") {
        return Err(malformed(format!("{what} withholds its mandate")));
    }
    let mandate = match claims.remove("delegate_payload") {
        Some(Value::Array(items)) if items.len() == 1 => match items.into_iter().next() {
            Some(Value::Object(m)) => m,
            _ => return Err(malformed(format!("{what}: the mandate is not an object"))),
        },
        Some(Value::Array(items)) => {
            return Err(malformed(format!(
                "{what}: delegate_payload must hold exactly one mandate, not {}",
                items.len()
            )))
        }
        _ => return Err(malformed(format!("{what} has no delegate_payload array"))),
    };
    let mut mandate_withheld = Vec::new();
    for w in withheld {
        let relative = match w.path().strip_prefix(prefix) {
            Some(rest) => format!("${rest}"),
            // Withheld top-level claims (or decoys) outside the mandate
            // change nothing this gateway reads.
            None if w.path() == "$" => continue,
            None => return Err(malformed(format!("{what} withholds part of {}", w.path()))),
        };
        mandate_withheld.push(match w {
            Withheld::Member(_) => Withheld::Member(relative),
            Withheld::Element(_) => Withheld::Element(relative),
        });
    }
    let mandate_times = Times::read(&mandate, &format!("{what} mandate"))?;
    mandate_times.check(&format!("{what} mandate"), clock)?;

    let cnf = match (claims.get("cnf"), mandate.get("cnf")) {
        (Some(_), Some(_)) => {
            return Err(malformed(format!("{what} has a cnf in both its JWT and its mandate")))
        }
        (Some(c), None) | (None, Some(c)) => Some(read_cnf(c, &what)?),
        (None, None) => None,
    };
    if !is_root {
        let open = jws::same_media_type(&typ, TYP_HOP_OPEN);
        if open != cnf.is_some() {
            return Err(malformed(format!(
                "{what}: a {TYP_HOP_OPEN} hop must delegate to a key (cnf) and a \
                 {TYP_HOP_CLOSED} hop must not"
            )));
        }
        if claims.contains_key("cnf") {
            return Err(malformed(format!("{what}: a hop delegates in its mandate's cnf")));
        }
    }
    let proof = if is_root {
        None
    } else {
        let text = |name: &str| match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(malformed(format!("{what} needs a non-empty {name}"))),
        };
        let (aud, nonce) = (text("aud")?, text("nonce")?);
        let iat = times.iat.ok_or_else(|| malformed(format!("{what} needs an iat")))?;
        // Only the closed hop answers this merchant; an open hop answered
        // the delegate it was made for.
        cnf.is_none().then_some(Proof { iat, exp: times.exp, aud, nonce })
    };
    let expires_at = [times.exp, mandate_times.exp].into_iter().flatten().min();
    let hop = Hop {
        typ,
        signer,
        mandate,
        withheld: mandate_withheld,
        cnf,
        jwt_hash: hash(segment.jwt),
        sd_hash: hash(segment.text),
        expires_at,
    };
    Ok((hop, proof))
}

fn read_cnf(value: &Value, what: &str) -> Result<PublicKey> {
    match value {
        Value::Object(m) if m.len() == 1 => match m.get("jwk") {
            Some(jwk) => PublicKey::from_jwk(jwk)
                .map_err(|e| malformed(format!("{what} cnf.jwk: {}", e.message()))),
            None => Err(malformed(format!("{what}: cnf must be {{\"jwk\": …}}"))),
        },
        _ => Err(malformed(format!("{what}: cnf must be {{\"jwk\": …}}"))),
    }
}

fn verify_kb_jwt(token: &str, key: &PublicKey, before_kb: &str, clock: Clock) -> Result<Proof> {
    let options = DecodeOptions {
        expected_typ: Some(TYP_KB_JWT),
        kid: KidRule::Optional,
        max_bytes: MAX_JWT_BYTES,
    };
    let token = jws::decode_compact_with(token, &options)?;
    let verified = token.verify(key.verifying_key()).map_err(|e| {
        if e.code() == ErrorCode::MandateInvalidSignature {
            unsigned("the KB-JWT is not signed by the key the SD-JWT binds (cnf)")
        } else {
            e
        }
    })?;
    let claims = verified.claims::<Map<String, Value>>()?;
    if let Some(name) = claims.keys().find(|k| !KB_CLAIMS.contains(&k.as_str())) {
        return Err(malformed(format!("the KB-JWT carries an unknown claim {:?}", truncate(name))));
    }
    let times = Times::read(&claims, "the KB-JWT")?;
    times.check("the KB-JWT", clock)?;
    match claims.get("sd_hash") {
        Some(Value::String(h)) if *h == hash(before_kb) => {}
        Some(Value::String(_)) => {
            return Err(Error::new(
                ErrorCode::ChainHashMismatch,
                "the KB-JWT sd_hash does not cover this presentation",
            ))
        }
        _ => return Err(malformed("the KB-JWT needs an sd_hash string")),
    }
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(malformed(format!("the KB-JWT needs a non-empty {name}"))),
    };
    Ok(Proof {
        iat: times.iat.ok_or_else(|| malformed("the KB-JWT needs an iat"))?,
        exp: times.exp,
        aud: text("aud")?,
        nonce: text("nonce")?,
    })
}

/// The time claims of a JWT payload or a mandate.
#[derive(Debug, Clone, Copy, Default)]
struct Times {
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

impl Times {
    fn read(claims: &Map<String, Value>, what: &str) -> Result<Self> {
        let int = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| malformed(format!("{what} {name} is not an integer"))),
        };
        Ok(Self { iat: int("iat")?, exp: int("exp")?, nbf: int("nbf")? })
    }

    /// Arithmetic is widened: every number here came from a token.
    fn check(&self, what: &str, clock: Clock) -> Result<()> {
        let (now, skew) = (i128::from(clock.now), i128::from(clock.skew));
        if let (Some(iat), Some(exp)) = (self.iat, self.exp) {
            if exp <= iat {
                return Err(malformed(format!("{what} exp is not after its iat")));
            }
        }
        for (name, t) in [("iat", self.iat), ("nbf", self.nbf)] {
            if t.is_some_and(|t| i128::from(t) > now + skew) {
                return Err(Error::new(
                    ErrorCode::MandateNotYetValid,
                    format!("{what} {name} is in the future"),
                ));
            }
        }
        if self.exp.is_some_and(|exp| now >= i128::from(exp) + skew) {
            return Err(Error::new(ErrorCode::MandateExpired, format!("{what} has expired")));
        }
        Ok(())
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

// ---- Issuance -----------------------------------------------------------------

/// Building SD-JWTs: what an agent (or a test, a doc example, a bench)
/// does. The verifier never uses these. Salts come from the caller so that
/// examples can be reproducible.
pub mod issue {
    use super::*;

    /// A fresh 128-bit salt (RFC 9901 §9.3 asks for at least 128 bits).
    pub fn salt(rng: &mut impl CryptoRngCore) -> String {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        jws::b64url(&bytes)
    }

    /// A disclosure and its digest: `[salt, name, value]` for an object
    /// member, `[salt, value]` for an array element.
    pub fn disclosure(salt: &str, name: Option<&str>, value: &Value) -> Result<(String, String)> {
        let array = match name {
            Some(n) => json!([salt, n, value]),
            None => json!([salt, value]),
        };
        let text = jws::b64url(&serde_json::to_vec(&array).map_err(Error::internal)?);
        let digest = hash(&text);
        Ok((text, digest))
    }

    /// Makes member `name` of `object` selectively disclosable: removes it,
    /// adds its digest to `_sd`, and returns the disclosure.
    pub fn conceal_member(
        object: &mut Map<String, Value>,
        name: &str,
        salt: &str,
    ) -> Result<String> {
        let value = object
            .remove(name)
            .ok_or_else(|| Error::invalid(format!("no member {name:?} to conceal")))?;
        let (text, digest) = disclosure(salt, Some(name), &value)?;
        match object.entry("_sd").or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(d) => d.push(Value::String(digest)),
            _ => return Err(Error::invalid("_sd is not an array")),
        }
        Ok(text)
    }

    /// Makes an array element selectively disclosable: returns the
    /// `{"...": digest}` placeholder to put in its place and the disclosure.
    pub fn conceal_element(value: &Value, salt: &str) -> Result<(Value, String)> {
        let (text, digest) = disclosure(salt, None, value)?;
        Ok((json!({ "...": digest }), text))
    }

    /// Signs `claims` as an SD-JWT with `typ` and appends the disclosures:
    /// `jwt~d1~…~dn~`.
    pub fn sign_sd_jwt(
        signer: &dyn Es256Signer,
        typ: &str,
        claims: &Value,
        disclosures: &[String],
    ) -> Result<String> {
        let jwt = jws::sign_compact(signer, Some(typ), claims)?;
        let mut out = jwt;
        out.push('~');
        for d in disclosures {
            out.push_str(d);
            out.push('~');
        }
        Ok(out)
    }

    /// Signs a KB-JWT over `presented` (everything up to and including its
    /// last `~`) and returns `presented` with it appended.
    pub fn append_kb_jwt(
        signer: &dyn Es256Signer,
        presented: &str,
        iat: i64,
        aud: &str,
        nonce: &str,
    ) -> Result<String> {
        let claims = json!({"iat": iat, "aud": aud, "nonce": nonce, "sd_hash": hash(presented)});
        Ok(format!("{presented}{}", jws::sign_compact(signer, Some(TYP_KB_JWT), &claims)?))
    }
}

#[cfg(test)]
mod tests {
    use super::issue::*;
    use super::*;
    use crate::ap2::keys::PrivateKey;
    use time::macros::datetime;

    fn key(seed: u8) -> PrivateKey {
        let d = jws::b64url(&[seed; 32]);
        PrivateKey::from_text(&json!({"kty":"EC","crv":"P-256","d": d}).to_string()).unwrap()
    }

    /// RFC 9901 §4.2.1 to §4.2.3 and the §5.1 example: disclosures written
    /// out in the RFC, and the digests it lists for them.
    #[test]
    fn rfc_9901_disclosure_digests() {
        let cases = [
            (
                "WyI2cU1RdlJMNWhhaiIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0",
                r#"["6qMQvRL5haj", "family_name", "Möbius"]"#,
                "uutlBuYeMDyjLLTpf6Jxi7yNkEF35jdyWMn9U7b_RYY",
            ),
            (
                "WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIkZSIl0",
                r#"["lklxF5jMYlGTPUovMNIvCA", "FR"]"#,
                "w0I8EKcdCtUPkGCNUrfwVp2xEgNjtoIDlOxc9-PlOhs",
            ),
            (
                "WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgImdpdmVuX25hbWUiLCAiSm9obiJd",
                r#"["2GLC42sKQveCfGfryNRN9w", "given_name", "John"]"#,
                "jsu9yVulwQQlhFlM_3JlzMaSFzglhQG0DpfayQwLUK4",
            ),
        ];
        for (disclosure, json_text, digest) in cases {
            let decoded = jws::b64url_decode(disclosure).unwrap();
            assert_eq!(String::from_utf8(decoded).unwrap(), json_text);
            assert_eq!(hash(disclosure), digest, "{json_text}");
        }
    }

    /// RFC 9901 §7.1 processing on the RFC's own disclosures: an object
    /// member and an array element disclosed, a decoy and a withheld
    /// element left out.
    #[test]
    fn rfc_9901_processing() {
        let given = "WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgImdpdmVuX25hbWUiLCAiSm9obiJd";
        let fr = "WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIkZSIl0";
        let payload = json!({
            "_sd": ["jsu9yVulwQQlhFlM_3JlzMaSFzglhQG0DpfayQwLUK4", "decoyDigestWithNoDisclosure"],
            "_sd_alg": "sha-256",
            "iss": "https://issuer.example.com",
            "nationalities": [
                {"...": "w0I8EKcdCtUPkGCNUrfwVp2xEgNjtoIDlOxc9-PlOhs"},
                {"...": "withheldElementDigest"},
                "DE"
            ]
        });
        let Value::Object(payload) = payload else { unreachable!() };
        let r = resolve(payload, &[given, fr]).unwrap();
        assert_eq!(
            Value::Object(r.claims),
            json!({"iss": "https://issuer.example.com", "given_name": "John", "nationalities": ["FR", "DE"]})
        );
        assert_eq!(
            r.withheld,
            vec![Withheld::Element("$.nationalities".into()), Withheld::Member("$".into())]
        );
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn disclosure_rules_table() {
        use ErrorCode::*;
        let (name_d, name_h) = disclosure("salt-1", Some("name"), &json!("Ada")).unwrap();
        let (elem_d, elem_h) = disclosure("salt-2", None, &json!("x")).unwrap();
        let (sd_d, sd_h) = disclosure("salt-3", Some("_sd"), &json!(["a"])).unwrap();
        let (dup_d, dup_h) = disclosure("salt-4", Some("iss"), &json!("evil")).unwrap();
        let (nested_d, nested_h) =
            disclosure("salt-5", Some("inner"), &json!({"_sd": [name_h.clone()]})).unwrap();
        let not_array = jws::b64url(br#"{"a":1}"#);
        let no_salt = jws::b64url(br#"[1, "n", 2]"#);
        let four = jws::b64url(br#"["s", "n", 2, 3]"#);
        let dup_member = jws::b64url(br#"["s", {"a":1,"a":2}]"#);
        type Row = (&'static str, Value, Vec<String>, std::result::Result<Value, ErrorCode>);
        let rows: Vec<Row> = vec![
            ("member", json!({"_sd": [name_h]}), vec![name_d.clone()], Ok(json!({"name": "Ada"}))),
            (
                "element",
                json!({"a": [{"...": elem_h}]}),
                vec![elem_d.clone()],
                Ok(json!({"a": ["x"]})),
            ),
            (
                "nested disclosure",
                json!({"_sd": [nested_h]}),
                vec![nested_d.clone(), name_d.clone()],
                Ok(json!({"inner": {"name": "Ada"}})),
            ),
            ("sd_alg sha-256", json!({"_sd_alg": "sha-256"}), vec![], Ok(json!({}))),
            ("sd_alg sha-512", json!({"_sd_alg": "sha-512"}), vec![], Err(AlgNotAllowed)),
            ("sd_alg number", json!({"_sd_alg": 256}), vec![], Err(AlgNotAllowed)),
            ("nested sd_alg", json!({"a": {"_sd_alg": "sha-256"}}), vec![], Err(MandateMalformed)),
            (
                "unreferenced disclosure",
                json!({}),
                vec![name_d.clone()],
                Err(MandateInvalidSignature),
            ),
            (
                "disclosure twice",
                json!({"_sd": [name_h]}),
                vec![name_d.clone(), name_d.clone()],
                Err(MandateMalformed),
            ),
            (
                "digest twice",
                json!({"_sd": [name_h, name_h]}),
                vec![name_d.clone()],
                Err(MandateMalformed),
            ),
            (
                "digest in payload and in a disclosure",
                json!({"_sd": [nested_h, name_h]}),
                vec![nested_d.clone(), name_d.clone()],
                Err(MandateMalformed),
            ),
            (
                "element disclosure for a member digest",
                json!({"_sd": [elem_h]}),
                vec![elem_d.clone()],
                Err(MandateMalformed),
            ),
            (
                "member disclosure for an element digest",
                json!({"a": [{"...": name_h}]}),
                vec![name_d.clone()],
                Err(MandateMalformed),
            ),
            (
                "disclosed name overwrites a claim",
                json!({"iss": "good", "_sd": [dup_h]}),
                vec![dup_d],
                Err(MandateMalformed),
            ),
            ("reserved name", json!({"_sd": [sd_h]}), vec![sd_d], Err(MandateMalformed)),
            ("_sd not an array", json!({"_sd": "x"}), vec![], Err(MandateMalformed)),
            ("_sd digest not a string", json!({"_sd": [1]}), vec![], Err(MandateMalformed)),
            (
                "dots with siblings",
                json!({"a": [{"...": "d", "b": 1}]}),
                vec![],
                Err(MandateMalformed),
            ),
            ("dots outside an array", json!({"a": {"...": "d"}}), vec![], Err(MandateMalformed)),
            ("disclosure not an array", json!({}), vec![not_array], Err(MandateMalformed)),
            ("disclosure without salt", json!({}), vec![no_salt], Err(MandateMalformed)),
            ("disclosure of four", json!({}), vec![four], Err(MandateMalformed)),
            ("duplicate JSON member", json!({}), vec![dup_member], Err(MandateMalformed)),
            ("not base64url", json!({}), vec!["a+b".into()], Err(MandateMalformed)),
        ];
        for (name, payload, disclosures, want) in rows {
            let refs: Vec<&str> = disclosures.iter().map(String::as_str).collect();
            let got = resolve(obj(payload), &refs).map(|r| Value::Object(r.claims));
            assert_eq!(got.map_err(|e| e.code()), want, "{name}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut value = json!("leaf");
        let mut disclosures = Vec::new();
        for i in 0..(MAX_DEPTH + 2) {
            let (d, h) = disclosure(&format!("s{i}"), Some("n"), &value).unwrap();
            disclosures.push(d);
            value = json!({"_sd": [h]});
        }
        let refs: Vec<&str> = disclosures.iter().map(String::as_str).collect();
        let err = resolve(obj(value), &refs).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateMalformed);
    }

    #[test]
    fn parsing_table() {
        let jwt = "aGVhZA.cGF5bG9hZA.c2ln";
        type Shape<'a> = std::result::Result<(usize, bool, Vec<&'a str>), ErrorCode>;
        let cases: Vec<(String, Shape)> = vec![
            (format!("{jwt}~"), Ok((1, false, vec![]))),
            (format!("{jwt}~ZA~ZQ~"), Ok((1, false, vec!["ZA", "ZQ"]))),
            (format!("{jwt}~ZA~{jwt}"), Ok((1, true, vec!["ZA"]))),
            (format!("{jwt}~ZA~~{jwt}~ZQ~"), Ok((2, false, vec!["ZQ"]))),
            (format!("{jwt}~~{jwt}~~{jwt}~{jwt}"), Ok((3, true, vec![]))),
            (jwt.to_owned(), Err(ErrorCode::MandateMalformed)),
            (format!("{jwt}~~"), Err(ErrorCode::MandateMalformed)),
            (format!("{jwt}~~~{jwt}~"), Err(ErrorCode::MandateMalformed)),
            (format!("~{jwt}~"), Err(ErrorCode::MandateMalformed)),
            (format!("{jwt}~ZA~{jwt}~"), Err(ErrorCode::MandateMalformed)),
            (format!("{jwt}~ZA"), Err(ErrorCode::MandateMalformed)),
            ("a.b~".to_owned(), Err(ErrorCode::MandateMalformed)),
            (
                format!("{jwt}~{}~", "A".repeat(MAX_PRESENTATION_BYTES)),
                Err(ErrorCode::PayloadTooLarge),
            ),
            (vec![format!("{jwt}~"); MAX_SEGMENTS + 1].join("~"), Err(ErrorCode::MandateMalformed)),
        ];
        for (text, want) in cases {
            let got = parse(&text).map(|p| {
                let last = p.segments.last().unwrap();
                (p.segments.len(), p.kb_jwt.is_some(), last.disclosures().collect::<Vec<_>>())
            });
            assert_eq!(got.map_err(|e| e.code()), want, "{text:.80}");
        }
        // Segment texts are the exact substrings the hashes cover.
        let text = format!("{jwt}~ZA~~{jwt}~ZQ~{jwt}");
        let p = parse(&text).unwrap();
        assert_eq!(p.segments[0].text, format!("{jwt}~ZA~"));
        assert_eq!(p.segments[1].text, format!("{jwt}~ZQ~"));
        assert_eq!(p.before_kb, format!("{jwt}~ZA~~{jwt}~ZQ~"));
    }

    /// A root signed by the platform key with an open mandate delegating
    /// to the agent, and a closed hop signed by the agent.
    fn chain(now: i64, nonce: &str) -> String {
        let platform = key(1).with_kid("platform-1").unwrap();
        let agent = key(2);
        let open =
            json!({"vct": "test.open", "cnf": {"jwk": agent.public().to_jwk()}, "exp": now + 3600});
        let (placeholder, d) = conceal_element(&open, "salt-root").unwrap();
        let root = sign_sd_jwt(
            &platform,
            "dc+sd-jwt",
            &json!({"delegate_payload": [placeholder], "_sd_alg": "sha-256", "iat": now - 60}),
            &[d],
        )
        .unwrap();
        let mut closed = obj(json!({"vct": "test.closed", "secret": "s"}));
        let secret = conceal_member(&mut closed, "secret", "salt-member").unwrap();
        let (placeholder, d) = conceal_element(&Value::Object(closed), "salt-leaf").unwrap();
        let hop = sign_sd_jwt(
            &agent,
            TYP_HOP_CLOSED,
            &json!({"delegate_payload": [placeholder], "iat": now, "aud": "https://shop.example",
                    "nonce": nonce, "sd_hash": hash(&root)}),
            &[d, secret],
        )
        .unwrap();
        format!("{root}~{hop}")
    }

    fn root_keys() -> PublicKeySet {
        let mut set = PublicKeySet::new();
        set.insert(key(1).with_kid("platform-1").unwrap().public().clone(), None).unwrap();
        set
    }

    #[test]
    fn a_two_hop_chain_verifies_and_reports_its_hops() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let text = chain(now.unix_timestamp(), "n-1");
        let keys = root_keys();
        let input = ChainInput {
            presentation: &text,
            root_keys: &keys,
            audience: "https://shop.example",
            nonce: "n-1",
            now,
            policy: ChainPolicy::default(),
        };
        let v = verify_chain(&input).unwrap();
        assert_eq!(v.hops.len(), 2);
        assert_eq!(v.binding, Binding::ClosedHop);
        assert_eq!(v.root_kid, "platform-1");
        assert_eq!(v.hops[1].mandate["secret"], "s");
        assert_eq!(v.hops[1].signer, key(2).public().thumbprint());
        assert!(v.hops[0].cnf.is_some() && v.hops[1].cnf.is_none());
        let p = parse(&text).unwrap();
        assert_eq!(v.hops[1].jwt_hash, hash(p.closed_jwt()));
        assert_eq!(v.hops[0].sd_hash, hash(p.segments[0].text));
        assert_eq!(v.valid_until, now.unix_timestamp() + 15 * 60 + 60);
        for (nonce, aud, code) in [
            ("n-2", "https://shop.example", ErrorCode::MandateScopeMismatch),
            ("n-1", "https://other.example", ErrorCode::MandateScopeMismatch),
        ] {
            let err = verify_chain(&ChainInput { nonce, audience: aud, ..input }).unwrap_err();
            assert_eq!(err.code(), code, "{nonce} {aud}");
        }
        let late = now + Duration::minutes(17);
        let err = verify_chain(&ChainInput { now: late, ..input }).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateExpired);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_presentations_never_panic(text in "[A-Za-z0-9_.~-]{0,400}") {
            let keys = root_keys();
            let _ = verify_chain(&ChainInput {
                presentation: &text,
                root_keys: &keys,
                audience: "a",
                nonce: "n",
                now: datetime!(2026-03-01 12:00 UTC),
                policy: ChainPolicy::default(),
            });
        }

        #[test]
        fn arbitrary_disclosures_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        ) {
            let d = jws::b64url(&bytes);
            let _ = resolve(Map::new(), &[d.as_str()]);
        }
    }
}
