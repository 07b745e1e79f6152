//! Turning a presented credential into a [`Caller`]: configured API keys
//! and bearer JWTs from the configured OAuth issuer.
//!
//! API keys are stored as SHA-256 hashes. A plain hash (no salt, no slow
//! KDF) is enough because keys are long random strings: there is no
//! dictionary to attack, and a fast hash keeps every request cheap. The
//! presented key's hash is compared with every configured hash in constant
//! time, so timing reveals neither which key nor how many bytes matched.
//!
//! Tokens are JWTs checked for signature, issuer, audience and expiry.
//! Only ES256 and RS256 are accepted: `none` and the HMAC algorithms are
//! refused before any key is looked up, so a token cannot pick a weaker
//! check. The issuer's JWKS is fetched and cached for `jwks_ttl_secs`; an
//! unknown `kid` triggers one refetch (key rotation), at most once per
//! [`REFETCH_COOLDOWN`], so junk kids cannot make the gateway hammer the
//! issuer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, Tier};
use crate::domain::{Error, ErrorCode};
use crate::settings::Settings;

/// The least time between two JWKS fetches caused by unknown kids.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(10);
/// The most issuer keys kept; a JWKS with more is cut, bounding memory.
const MAX_KEYS: usize = 32;
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 64 * 1024;

struct ApiKey {
    id: String,
    hash: [u8; 32],
    subject: String,
    scopes: Vec<String>,
}

struct Jwks {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    fetched: Option<Instant>,
}

struct Issuer {
    issuer: String,
    audience: String,
    jwks_url: String,
    ttl: Duration,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Jwks>,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
}

/// Checks credentials against the configured keys and issuer.
pub struct Authenticator {
    keys: Vec<ApiKey>,
    issuer: Option<Issuer>,
}

fn unauthorized(message: &str) -> Error {
    Error::new(ErrorCode::Unauthorized, message)
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    base16ct::mixed::decode(hex, &mut out).ok().filter(|b| b.len() == 32)?;
    Some(out)
}

impl Authenticator {
    pub fn new(settings: &Settings) -> Self {
        let keys = settings
            .api_keys
            .iter()
            .filter_map(|k| {
                Some(ApiKey {
                    id: k.id.clone(),
                    hash: decode_hex32(&k.sha256)?,
                    subject: k.subject.clone().unwrap_or_else(|| format!("api-key:{}", k.id)),
                    scopes: k.scopes.clone(),
                })
            })
            .collect();
        let auth = &settings.auth;
        let issuer = match (&auth.issuer, &auth.jwks_url) {
            (Some(issuer), Some(jwks_url)) => Some(Issuer {
                issuer: issuer.clone(),
                audience: auth.audience.clone().unwrap_or_else(|| settings.public_base_url.clone()),
                jwks_url: jwks_url.clone(),
                ttl: Duration::from_secs(auth.jwks_ttl_secs),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                cache: tokio::sync::Mutex::new(Jwks { keys: HashMap::new(), fetched: None }),
            }),
            _ => None,
        };
        Self { keys, issuer }
    }

    /// The caller `credential` proves, or `unauthorized`. The message never
    /// repeats the credential.
    pub async fn authenticate(&self, credential: &str) -> Result<Caller, Error> {
        let hash: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        // Every configured key is compared, so the time taken does not
        // depend on which key matched.
        let mut found: Option<&ApiKey> = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        if let Some(key) = found {
            tracing::debug!(api_key = %key.id, "api key accepted");
            return Ok(Caller::authenticated(&key.subject, Tier::ApiKey, key.scopes.clone()));
        }
        match &self.issuer {
            Some(issuer) if credential.matches('.').count() == 2 => issuer.verify(credential).await,
            _ => Err(unauthorized("the credential is not valid")),
        }
    }
}

impl Issuer {
    async fn verify(&self, token: &str) -> Result<Caller, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("the bearer token is malformed"))?;
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
            return Err(unauthorized("the bearer token's algorithm is not accepted"));
        }
        let kid = header.kid.ok_or_else(|| unauthorized("the bearer token names no key"))?;
        let (alg, key) = self.key(&kid).await?;
        if alg != header.alg {
            return Err(unauthorized("the bearer token's algorithm does not match its key"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthorized("the bearer token has expired"),
                ErrorKind::InvalidAudience => {
                    unauthorized("the bearer token is for another audience")
                }
                ErrorKind::InvalidIssuer => unauthorized("the bearer token is from another issuer"),
                _ => unauthorized("the bearer token is not valid"),
            }
        })?;
        let scopes =
            data.claims.scope.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        Ok(Caller::authenticated(data.claims.sub, Tier::Token, scopes))
    }

    async fn key(&self, kid: &str) -> Result<(Algorithm, DecodingKey), Error> {
        let mut cache = self.cache.lock().await;
        let age = cache.fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a > self.ttl);
        let may_refetch = age.is_none_or(|a| a > REFETCH_COOLDOWN);
        if stale || (!cache.keys.contains_key(kid) && may_refetch) {
            match self.fetch().await {
                Ok(keys) => *cache = Jwks { keys, fetched: Some(Instant::now()) },
                Err(e) => tracing::warn!(error = %e, "issuer keys could not be fetched"),
            }
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized("the bearer token is signed by an unknown key"))
    }

    async fn fetch(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>, Error> {
        let resp = self.http.get(&self.jwks_url).send().await.map_err(Error::internal)?;
        if !resp.status().is_success() {
            return Err(Error::internal(format!("issuer JWKS answered {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(Error::internal)?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(Error::internal("issuer JWKS is too large"));
        }
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(Error::internal)?;
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec)
                    if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, key));
            }
        }
        Ok(keys)
    }
}
