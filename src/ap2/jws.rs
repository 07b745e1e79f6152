//! ES256 JSON Web Signatures (RFC 7515): compact and detached, and nothing else.
//!
//! This module owns the byte-level JWS format: the strict base64url codec, the
//! protected header rules and the ECDSA P-256 signature check. It does not know
//! what a mandate is, and it never sees a private key: signing goes through the
//! [`Es256Signer`] trait, which `ap2::keys` implements, so the private scalar
//! stays there.
//!
//! Decoding is a two-step typestate. [`decode_compact`] and [`decode_detached`]
//! check the shape and the header and return an [`Unverified`] token that
//! names its `kid`; the caller resolves that `kid` in the key set it trusts and
//! calls [`Unverified::verify`], which consumes the token and, only on success,
//! hands out a [`Verified`] payload. Nothing can read claims that were not
//! checked, except through the explicitly named
//! [`Unverified::payload_unverified`].
//!
//! Header policy (each rule closes a known JOSE attack):
//! - `alg` must be exactly `ES256`; anything else, absent included, is
//!   `alg_not_allowed` (`none`, HS256 with a public key as secret, RS*, ES384…).
//! - `kid` is required: keys are looked up, never guessed by trying them all.
//! - `jwk`, `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256` are refused: a token never
//!   brings its own key or a URL to fetch one from.
//! - `crit` is refused because this implementation understands no extension,
//!   and `b64`, `zip` and `enc` are refused because they change how the
//!   payload is read.
//! - `typ` must equal the value the caller expects (compared as RFC 7515 media
//!   types: case-insensitive, `application/` optional).
//!
//! High-S signatures: ECDSA signatures are malleable (`(r, s)` and `(r, n-s)`
//! both verify). We always *emit* low-S, but we *accept* both, because
//! RFC 7518 does not require low-S and common JOSE libraries built on OpenSSL
//! emit either. This is safe here because nothing keys on the signature bytes:
//! replay protection keys on `jti`s, and a changed token only breaks the hash
//! links that bind it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{Error, ErrorCode, Result};

/// The only algorithm this gateway signs or accepts.
pub const ALG: &str = "ES256";

/// Upper bound on one token (compact or detached). Mandates are well under
/// 4 KiB; the bound keeps hostile input from costing memory or CPU.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// An ES256 signature is the raw `r || s` pair, 32 bytes each (RFC 7518 §3.4).
pub const SIGNATURE_LEN: usize = 64;

/// Checks an ES256 signature (`r || s`) of `message` with `key`.
///
/// Keys are held as `p256` types (parsing, JWK and PEM, thumbprints); the
/// arithmetic is ring's, whose P-256 is assembly-backed with a precomputed
/// table for the base point: a verify costs about a quarter of `p256`
/// 0.13's (`cargo bench --bench ap2`), and three of them were most of an
/// `execute_checkout`. ring is already in the build through rustls. Both
/// accept high-S. Signing stays on `p256` (see `keys.rs`): ring's nonces
/// are random, and our signatures must be deterministic.
pub fn verify_es256(
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<()> {
    let point = key.to_encoded_point(false);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        point.as_bytes(),
    )
    .verify(message, signature)
    .map_err(|_| Error::new(ErrorCode::MandateInvalidSignature, "signature does not verify"))
}

/// Longest `kid` accepted; thumbprints are 43 characters.
const MAX_KID_LEN: usize = 256;

/// Header members that would let a token choose its own verification key.
const KEY_CARRYING_HEADERS: &[&str] = &["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// Header members that would change how the payload is interpreted.
const PAYLOAD_CHANGING_HEADERS: &[&str] = &["crit", "b64", "zip", "enc"];

/// Something that can produce ES256 signatures under a `kid`.
///
/// `ap2::keys::PrivateKey` is the implementation; the trait exists so that
/// this module can sign without ever holding the private key.
pub trait Es256Signer {
    /// The key id written into the protected header.
    fn kid(&self) -> &str;

    /// Signs `message` (the JWS signing input) with ECDSA P-256 and SHA-256,
    /// returning the raw `r || s` form with a low `s`.
    fn sign_es256(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN]>;
}

/// Base64url without padding, as JWS requires (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decoding: URL alphabet only, no padding, no whitespace,
/// no non-zero trailing bits (so every byte string has exactly one encoding).
pub fn b64url_decode(text: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| malformed("segment is not strict base64url"))
}

/// A `mandate_malformed` error; shared by the ap2 modules.
pub(crate) fn malformed(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::MandateMalformed, message)
}

/// Parses JSON text, refusing duplicate object members anywhere.
///
/// `serde_json` keeps the last of two equal members; an attacker could then
/// show one value to a reviewer and another to us. Refusing duplicates makes
/// the reading unambiguous. Depth is bounded by `serde_json`'s recursion limit.
pub fn parse_json_strict(bytes: &[u8]) -> std::result::Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

/// Decodes a JSON value into a typed claim set, as `mandate_malformed` on
/// failure. The message is cut short because serde may quote the input.
pub fn from_json_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| malformed(truncate(&format!("bad claims: {e}"))))
}

fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this is always Some.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate member {:?}", truncate(&key))));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The protected header members this implementation writes.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
}

/// The header of a token, after the policy above accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    kid: Option<String>,
    typ: Option<String>,
}

impl Header {
    /// The `kid`. Empty only for a token decoded with [`KidRule::Optional`]
    /// that has none: every other decode refuses a token without one.
    pub fn kid(&self) -> &str {
        self.kid.as_deref().unwrap_or_default()
    }

    /// The `kid`, if the header has one.
    pub fn kid_opt(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
}

/// Whether a header must name its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidRule {
    /// The verifier looks the key up by `kid` (every token whose key comes
    /// from a key set).
    Required,
    /// The key is already fixed by something the verifier trusts, such as
    /// the `cnf` of the previous hop of an SD-JWT chain; a `kid`, if
    /// present, is informational and still bounded.
    Optional,
}

/// How [`decode_compact_with`] reads a token. The algorithm and the
/// key-carrying and payload-changing header rules are not options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions<'a> {
    /// `typ` to require, compared as a media type; `None` checks nothing.
    pub expected_typ: Option<&'a str>,
    pub kid: KidRule,
    /// Longest token accepted, in bytes.
    pub max_bytes: usize,
}

impl Default for DecodeOptions<'_> {
    fn default() -> Self {
        Self { expected_typ: None, kid: KidRule::Required, max_bytes: MAX_TOKEN_BYTES }
    }
}

fn encode_header(signer: &dyn Es256Signer, typ: Option<&str>) -> Result<String> {
    let header = HeaderOut { alg: ALG, kid: signer.kid(), typ };
    let json = serde_jcs::to_vec(&header).map_err(Error::internal)?;
    Ok(b64url(&json))
}

/// Canonical (RFC 8785) JSON bytes of `value`.
pub fn jcs(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_jcs::to_vec(value).map_err(Error::internal)
}

/// Signs `payload` as a compact JWS `header.payload.signature`. The payload
/// is written in JCS form so that the same claims always give the same token.
pub fn sign_compact(
    signer: &dyn Es256Signer,
    typ: Option<&str>,
    payload: &impl Serialize,
) -> Result<String> {
    let header = encode_header(signer, typ)?;
    let body = b64url(&jcs(payload)?);
    let signing_input = format!("{header}.{body}");
    let sig = signer.sign_es256(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

/// Signs `payload` as a detached JWS `header..signature` (RFC 7515
/// appendix F) whose signing input is the base64url of the JCS form of
/// `payload`. The verifier recomputes the same bytes from its own copy.
pub fn sign_detached(
    signer: &dyn Es256Signer,
    typ: Option<&str>,
    payload: &impl Serialize,
) -> Result<String> {
    let header = encode_header(signer, typ)?;
    let body = b64url(&jcs(payload)?);
    let sig = signer.sign_es256(format!("{header}.{body}").as_bytes())?;
    Ok(format!("{header}..{}", b64url(&sig)))
}

/// A token whose shape and header passed, but whose signature is unchecked.
#[derive(Debug)]
pub struct Unverified {
    header: Header,
    signing_input: String,
    payload: Vec<u8>,
    signature: Signature,
}

/// A token whose signature verified under a key the caller chose.
#[derive(Debug, Clone)]
pub struct Verified {
    header: Header,
    payload: Vec<u8>,
}

impl Unverified {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn kid(&self) -> &str {
        self.header.kid()
    }

    /// Checks the signature with `key` and, only if it holds, releases the
    /// payload. The caller must have picked `key` from a set it trusts by
    /// this token's `kid`.
    pub fn verify(self, key: &VerifyingKey) -> Result<Verified> {
        verify_es256(key, self.signing_input.as_bytes(), &self.signature.to_bytes().into())?;
        Ok(Verified { header: self.header, payload: self.payload })
    }

    /// The payload bytes **before** any signature check. Only for tools that
    /// display or reuse their own tokens; never base a decision on it.
    pub fn payload_unverified(&self) -> &[u8] {
        &self.payload
    }
}

impl Verified {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Parses the payload as a duplicate-free JSON object into `T`.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T> {
        parse_claims(&self.payload)
    }
}

/// Parses claim bytes (a JSON object without duplicate members) into `T`.
pub fn parse_claims<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let value = parse_json_strict(payload)
        .map_err(|e| malformed(truncate(&format!("payload is not valid JSON: {e}"))))?;
    if !value.is_object() {
        return Err(malformed("payload is not a JSON object"));
    }
    from_json_value(value)
}

/// Checks the shape and header of a compact JWS. `expected_typ` is compared
/// when given.
pub fn decode_compact(token: &str, expected_typ: Option<&str>) -> Result<Unverified> {
    decode_compact_with(token, &DecodeOptions { expected_typ, ..DecodeOptions::default() })
}

/// [`decode_compact`] with the `kid` rule and size bound chosen by the
/// caller (SD-JWT hops are bound to a key by `cnf`, and a checkout JWT may
/// be larger than a mandate).
pub fn decode_compact_with(token: &str, options: &DecodeOptions<'_>) -> Result<Unverified> {
    let (header_b64, payload_b64, sig_b64) = split(token, options.max_bytes)?;
    if payload_b64.is_empty() {
        return Err(malformed("compact token has an empty payload (detached JWS given?)"));
    }
    let payload = b64url_decode(payload_b64)?;
    let signing_input = format!("{header_b64}.{payload_b64}");
    finish(header_b64, sig_b64, signing_input, payload, options)
}

/// Checks the shape and header of a detached JWS `header..signature` over the
/// JCS form of `payload`.
pub fn decode_detached(
    token: &str,
    payload: &impl Serialize,
    expected_typ: Option<&str>,
) -> Result<Unverified> {
    let (header_b64, payload_b64, sig_b64) = split(token, MAX_TOKEN_BYTES)?;
    if !payload_b64.is_empty() {
        return Err(malformed("detached token carries a payload"));
    }
    let payload = jcs(payload)?;
    let signing_input = format!("{header_b64}.{}", b64url(&payload));
    let options = DecodeOptions { expected_typ, ..DecodeOptions::default() };
    finish(header_b64, sig_b64, signing_input, payload, &options)
}

fn split(token: &str, max_bytes: usize) -> Result<(&str, &str, &str)> {
    if token.len() > max_bytes {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("token is longer than {max_bytes} bytes"),
        ));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        // An empty signature is let through to the header check, so that an
        // `alg: none` token is reported as the algorithm problem it is.
        (Some(h), Some(p), Some(s), None) if !h.is_empty() => Ok((h, p, s)),
        _ => Err(malformed("token is not three dot-separated base64url segments")),
    }
}

fn finish(
    header_b64: &str,
    sig_b64: &str,
    signing_input: String,
    payload: Vec<u8>,
    options: &DecodeOptions<'_>,
) -> Result<Unverified> {
    let header = parse_header(&b64url_decode(header_b64)?, options)?;
    let sig_bytes = b64url_decode(sig_b64)?;
    if sig_bytes.len() != SIGNATURE_LEN {
        return Err(Error::new(
            ErrorCode::MandateInvalidSignature,
            format!("ES256 signature must be {SIGNATURE_LEN} bytes r||s, got {}", sig_bytes.len()),
        ));
    }
    // Rejects r or s equal to zero or not below the group order.
    let signature = Signature::from_slice(&sig_bytes).map_err(|_| {
        Error::new(ErrorCode::MandateInvalidSignature, "signature scalars are out of range")
    })?;
    Ok(Unverified { header, signing_input, payload, signature })
}

fn parse_header(bytes: &[u8], options: &DecodeOptions<'_>) -> Result<Header> {
    let value = parse_json_strict(bytes)
        .map_err(|e| malformed(truncate(&format!("header is not valid JSON: {e}"))))?;
    let Value::Object(members) = value else {
        return Err(malformed("header is not a JSON object"));
    };
    // The algorithm comes first: a token with a forbidden algorithm is
    // refused as such, whatever else its header says.
    match members.get("alg") {
        Some(Value::String(alg)) if alg == ALG => {}
        Some(Value::String(alg)) => {
            return Err(Error::new(
                ErrorCode::AlgNotAllowed,
                format!("alg {:?} is not allowed; only ES256 is", truncate(alg)),
            ));
        }
        _ => return Err(Error::new(ErrorCode::AlgNotAllowed, "header has no string alg")),
    }
    if let Some(name) = KEY_CARRYING_HEADERS.iter().find(|h| members.contains_key(**h)) {
        return Err(malformed(format!(
            "header member {name:?} is refused: keys are resolved by the verifier, never taken from the token"
        )));
    }
    if let Some(name) = PAYLOAD_CHANGING_HEADERS.iter().find(|h| members.contains_key(**h)) {
        return Err(malformed(format!("header member {name:?} is not supported")));
    }
    let kid = match (members.get("kid"), options.kid) {
        (Some(Value::String(kid)), _) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => {
            Some(kid.clone())
        }
        (None, KidRule::Optional) => None,
        _ => return Err(malformed("header needs a kid (1 to 256 characters)")),
    };
    let typ = match members.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(malformed("header typ is not a string")),
    };
    if let Some(want) = options.expected_typ {
        if !typ.as_deref().is_some_and(|got| same_media_type(got, want)) {
            return Err(malformed(format!(
                "header typ is {:?}, expected {want:?}",
                typ.as_deref().map(truncate)
            )));
        }
    }
    Ok(Header { kid, typ })
}

/// RFC 7515 §4.1.9: `typ` is a media type compared case-insensitively, and
/// the `application/` prefix may be left out.
pub(crate) fn same_media_type(got: &str, want: &str) -> bool {
    fn strip(t: &str) -> &str {
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    strip(got).eq_ignore_ascii_case(strip(want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use serde_json::json;

    /// A signer built straight on p256 so these tests do not depend on keys.rs.
    struct TestSigner(SigningKey, String);

    impl Es256Signer for TestSigner {
        fn kid(&self) -> &str {
            &self.1
        }
        fn sign_es256(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
            use p256::ecdsa::signature::Signer as _;
            let sig: Signature = self.0.sign(message);
            let sig = sig.normalize_s().unwrap_or(sig);
            Ok(sig.to_bytes().into())
        }
    }

    fn signer() -> TestSigner {
        TestSigner(SigningKey::from_slice(&[7u8; 32]).unwrap(), "k1".into())
    }

    fn header_b64(v: Value) -> String {
        b64url(v.to_string().as_bytes())
    }

    /// Builds a token with an arbitrary header, signed by `signer()`.
    fn forge(header: Value, payload: &str) -> String {
        let s = signer();
        let input = format!("{}.{}", header_b64(header), b64url(payload.as_bytes()));
        let sig = s.sign_es256(input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    fn decode_and_verify(token: &str) -> Result<Verified> {
        decode_compact(token, Some("mandate+jwt"))?.verify(signer().0.verifying_key())
    }

    #[test]
    fn compact_round_trip_is_deterministic_and_canonical() {
        let payload = json!({"b": 1, "a": "x"});
        let t1 = sign_compact(&signer(), Some("mandate+jwt"), &payload).unwrap();
        let t2 = sign_compact(&signer(), Some("mandate+jwt"), &payload).unwrap();
        assert_eq!(t1, t2, "RFC 6979 signing makes tokens reproducible");
        let v = decode_and_verify(&t1).unwrap();
        assert_eq!(v.payload(), br#"{"a":"x","b":1}"#);
        assert_eq!(v.header().kid(), "k1");
        let head = b64url_decode(t1.split('.').next().unwrap()).unwrap();
        assert_eq!(head, br#"{"alg":"ES256","kid":"k1","typ":"mandate+jwt"}"#);
    }

    #[test]
    fn detached_round_trip_and_payload_binding() {
        let payload = json!({"id": "chk_1", "total": 100});
        let token = sign_detached(&signer(), None, &payload).unwrap();
        assert!(token.contains(".."));
        let key = *signer().0.verifying_key();
        decode_detached(&token, &payload, None).unwrap().verify(&key).unwrap();
        // Member order does not matter (JCS), but any value change does.
        let reordered: Value = serde_json::from_str(r#"{"total":100,"id":"chk_1"}"#).unwrap();
        decode_detached(&token, &reordered, None).unwrap().verify(&key).unwrap();
        let changed = json!({"id": "chk_1", "total": 101});
        let err = decode_detached(&token, &changed, None).unwrap().verify(&key).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateInvalidSignature);
        // A detached token is not a compact one and vice versa.
        assert_eq!(decode_compact(&token, None).unwrap_err().code(), ErrorCode::MandateMalformed);
        let compact = sign_compact(&signer(), None, &payload).unwrap();
        let err = decode_detached(&compact, &payload, None).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateMalformed);
    }

    #[test]
    fn header_policy_table() {
        use ErrorCode::*;
        let typ = "mandate+jwt";
        let cases: Vec<(&str, Value, ErrorCode)> = vec![
            ("alg none", json!({"alg":"none","kid":"k1","typ":typ}), AlgNotAllowed),
            ("alg HS256", json!({"alg":"HS256","kid":"k1","typ":typ}), AlgNotAllowed),
            ("alg RS256", json!({"alg":"RS256","kid":"k1","typ":typ}), AlgNotAllowed),
            ("alg ES384", json!({"alg":"ES384","kid":"k1","typ":typ}), AlgNotAllowed),
            ("alg lower case", json!({"alg":"es256","kid":"k1","typ":typ}), AlgNotAllowed),
            ("alg missing", json!({"kid":"k1","typ":typ}), AlgNotAllowed),
            ("alg not string", json!({"alg":["ES256"],"kid":"k1","typ":typ}), AlgNotAllowed),
            ("jwk header", json!({"alg":"ES256","kid":"k1","typ":typ,"jwk":{}}), MandateMalformed),
            (
                "jku header",
                json!({"alg":"ES256","kid":"k1","typ":typ,"jku":"https://x"}),
                MandateMalformed,
            ),
            (
                "x5u header",
                json!({"alg":"ES256","kid":"k1","typ":typ,"x5u":"https://x"}),
                MandateMalformed,
            ),
            ("x5c header", json!({"alg":"ES256","kid":"k1","typ":typ,"x5c":[]}), MandateMalformed),
            (
                "crit header",
                json!({"alg":"ES256","kid":"k1","typ":typ,"crit":["exp"]}),
                MandateMalformed,
            ),
            (
                "b64 false",
                json!({"alg":"ES256","kid":"k1","typ":typ,"b64":false}),
                MandateMalformed,
            ),
            ("zip", json!({"alg":"ES256","kid":"k1","typ":typ,"zip":"DEF"}), MandateMalformed),
            ("kid missing", json!({"alg":"ES256","typ":typ}), MandateMalformed),
            ("kid empty", json!({"alg":"ES256","kid":"","typ":typ}), MandateMalformed),
            ("kid number", json!({"alg":"ES256","kid":1,"typ":typ}), MandateMalformed),
            ("typ missing", json!({"alg":"ES256","kid":"k1"}), MandateMalformed),
            ("typ other", json!({"alg":"ES256","kid":"k1","typ":"JWT"}), MandateMalformed),
            ("typ number", json!({"alg":"ES256","kid":"k1","typ":7}), MandateMalformed),
            ("header array", json!(["ES256"]), MandateMalformed),
        ];
        for (name, header, want) in cases {
            let token = forge(header, "{}");
            let err = decode_and_verify(&token).unwrap_err();
            assert_eq!(err.code(), want, "{name}: {err}");
        }
        // Accepted spellings of typ.
        for ok in ["mandate+jwt", "MANDATE+JWT", "application/mandate+jwt"] {
            let token = forge(json!({"alg":"ES256","kid":"k1","typ":ok}), "{}");
            assert!(decode_and_verify(&token).is_ok(), "{ok}");
        }
    }

    #[test]
    fn structure_and_signature_table() {
        use ErrorCode::*;
        let good = sign_compact(&signer(), Some("mandate+jwt"), &json!({"a": 1})).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let der = signer_der_signature(&format!("{}.{}", parts[0], parts[1]));
        let mut flipped = good.clone().into_bytes();
        let at = parts[0].len() + 3;
        flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let cases: Vec<(&str, String, ErrorCode)> = vec![
            ("empty", String::new(), MandateMalformed),
            ("two segments", format!("{}.{}", parts[0], parts[1]), MandateMalformed),
            ("four segments", format!("{good}.x"), MandateMalformed),
            ("truncated signature", good[..good.len() - 4].to_owned(), MandateMalformed),
            (
                "short signature",
                format!("{}.{}.{}", parts[0], parts[1], b64url(&[1u8; 63])),
                MandateInvalidSignature,
            ),
            ("empty signature", format!("{}.{}.", parts[0], parts[1]), MandateInvalidSignature),
            (
                "DER signature",
                format!("{}.{}.{}", parts[0], parts[1], b64url(&der)),
                MandateInvalidSignature,
            ),
            (
                "zero signature",
                format!("{}.{}.{}", parts[0], parts[1], b64url(&[0u8; 64])),
                MandateInvalidSignature,
            ),
            (
                "padded segment",
                format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
                MandateMalformed,
            ),
            (
                "standard alphabet",
                format!("{}.{}.{}+", parts[0], parts[1], &parts[2][1..]),
                MandateMalformed,
            ),
            ("whitespace", format!(" {good}"), MandateMalformed),
            ("payload byte edited", flipped, MandateInvalidSignature),
            (
                "oversized",
                format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_BYTES), parts[2]),
                PayloadTooLarge,
            ),
        ];
        for (name, token, want) in cases {
            let err = decode_and_verify(&token).unwrap_err();
            assert_eq!(err.code(), want, "{name}: {err}");
        }
        // The wrong key fails as a signature problem.
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let err = decode_compact(&good, None).unwrap().verify(other.verifying_key()).unwrap_err();
        assert_eq!(err.code(), MandateInvalidSignature);
    }

    fn signer_der_signature(input: &str) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let sig: Signature = signer().0.sign(input.as_bytes());
        sig.to_der().as_bytes().to_vec()
    }

    #[test]
    fn an_optional_kid_loosens_nothing_else() {
        use ErrorCode::*;
        let optional = DecodeOptions { kid: KidRule::Optional, ..DecodeOptions::default() };
        let no_kid = forge(json!({"alg":"ES256","typ":"kb+sd-jwt"}), "{}");
        assert_eq!(decode_compact(&no_kid, None).unwrap_err().code(), MandateMalformed);
        let token = decode_compact_with(&no_kid, &optional).unwrap();
        assert_eq!((token.header().kid_opt(), token.kid()), (None, ""));
        token.verify(signer().0.verifying_key()).unwrap();
        let cases: Vec<(Value, ErrorCode)> = vec![
            (json!({"alg":"none"}), AlgNotAllowed),
            (json!({"alg":"ES256","kid":""}), MandateMalformed),
            (json!({"alg":"ES256","kid":7}), MandateMalformed),
            (json!({"alg":"ES256","jwk":{}}), MandateMalformed),
            (json!({"alg":"ES256","crit":["x"]}), MandateMalformed),
        ];
        for (header, want) in cases {
            let err = decode_compact_with(&forge(header.clone(), "{}"), &optional).unwrap_err();
            assert_eq!(err.code(), want, "{header}");
        }
        let small = DecodeOptions { max_bytes: no_kid.len() - 1, ..optional };
        assert_eq!(decode_compact_with(&no_kid, &small).unwrap_err().code(), PayloadTooLarge);
    }

    #[test]
    fn high_s_is_accepted_and_low_s_is_emitted() {
        let token = sign_compact(&signer(), Some("mandate+jwt"), &json!({"n": 1})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let sig = Signature::from_slice(&b64url_decode(parts[2]).unwrap()).unwrap();
        assert!(sig.normalize_s().is_none(), "we emit low-S");
        // (r, n - s) is the high-S twin of the same signature.
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        let twin = format!("{}.{}.{}", parts[0], parts[1], b64url(&high.to_bytes()));
        assert!(decode_and_verify(&twin).is_ok(), "documented: high-S verifies");
    }

    #[test]
    fn claims_parsing_is_strict() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct C {
            a: i64,
        }
        let cases: &[(&str, bool)] = &[
            (r#"{"a":1}"#, true),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a":{"b":1,"b":1}}"#, false),
            (r#"[{"a":1}]"#, false),
            (r#"{"a":1} x"#, false),
            (r#"{"a":1.5}"#, false),
            (r#"{"a":99999999999999999999}"#, false),
            ("\u{feff}{\"a\":1}", false),
        ];
        for (text, ok) in cases {
            let got = parse_claims::<C>(text.as_bytes());
            assert_eq!(got.is_ok(), *ok, "{text}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code(), ErrorCode::MandateMalformed);
            }
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_json_strict(deep.as_bytes()).is_err(), "recursion is bounded");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn decoding_arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = decode_compact(&text, Some("mandate+jwt"));
            let _ = decode_detached(&text, &json!({}), None);
        }

        #[test]
        fn decoding_arbitrary_segments_never_panics(
            h in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            p in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            s in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        ) {
            let token = format!("{}.{}.{}", b64url(&h), b64url(&p), b64url(&s));
            if let Ok(u) = decode_compact(&token, None) {
                let _ = u.verify(signer().0.verifying_key()).map(|v| v.claims::<Value>());
            }
            let _ = parse_claims::<Value>(&p);
        }

        #[test]
        fn arbitrary_headers_never_panic(text in "\\PC{0,200}") {
            let token = format!("{}.e30.{}", b64url(text.as_bytes()), b64url(&[1u8; 64]));
            let _ = decode_compact(&token, Some("mandate+jwt"));
        }
    }
}
