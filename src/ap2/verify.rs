//! The AP2 chain verifier: intent → cart → payment, all or nothing.
//!
//! [`verify_chain`] takes the three compact tokens, the keys it may trust and
//! the context (checkout id, merchant identity, `now`, clock skew), and either
//! returns a [`VerifiedChain`] with everything the checkout pipeline needs, or
//! the first failure with its stable code. It reads no clock and no store:
//! replay protection is a separate step, [`reserve_mandate_ids`], that runs
//! against the caller's store through [`MandateIdReserver`].
//!
//! Where keys come from:
//! - the intent must verify under a key of `user_keys`, a set the caller
//!   resolved (the agent platform's UCP profile `signing_keys`, or a
//!   configured JWKS); a token never names its own key (see `jws`);
//! - the cart must verify under `merchant_keys` (the merchant's ring, with
//!   retired keys honoured until their retirement instant);
//! - the payment must verify under the very key that verified the intent, or
//!   under the intent's `cnf.jwk`, which is trusted only because the intent
//!   carrying it verified first.
//!
//! Code choices, so that each failure has one stable name:
//! - structure, unknown members, bad `typ`, `crit`, key-carrying headers, a
//!   missing `exp`, `exp` not after `iat`, an over-long lifetime and an
//!   incoherent cart → `mandate_malformed`;
//! - a cart for another checkout, a cart issued by another merchant
//!   identity, a payment for another checkout or merchant, and a delegated
//!   (`cnf`) payment when the intent requires the user's own confirmation →
//!   `mandate_scope_mismatch`: the links hold, but the chain is for
//!   something else;
//! - a broken hash link → `chain_hash_mismatch`;
//! - a retired merchant key past its instant → `unknown_kid`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::jws::{self, malformed, Verified};
use super::keys::{PublicKey, PublicKeySet};
use super::mandates::{
    jcs_hash, token_hash, CartClaims, CartLine, CartSummary, IntentClaims, PaymentClaims,
    MANDATE_TYP, MAX_ID_LEN,
};
use crate::domain::{CheckoutId, Currency, Error, ErrorCode, Money, Result};

fn scope(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::MandateScopeMismatch, message)
}

fn hash_mismatch(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::ChainHashMismatch, message)
}

/// Tolerated clock difference between signers and the gateway, applied to
/// `iat` and `exp`. Bounded so that configuration cannot turn expiry off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkew(Duration);

impl ClockSkew {
    pub const DEFAULT: Self = Self(Duration::seconds(60));
    pub const MAX: Duration = Duration::seconds(300);

    pub fn new(skew: Duration) -> Result<Self> {
        if skew.is_negative() || skew > Self::MAX {
            return Err(Error::invalid("clock skew must be between 0 and 300 seconds"));
        }
        Ok(Self(skew))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl Default for ClockSkew {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Limits the verifier applies besides the signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    pub skew: ClockSkew,
    /// Longest `exp - iat` accepted per mandate: a mandate valid for years is
    /// a standing credential, not a mandate.
    pub max_intent_lifetime: Duration,
    pub max_cart_lifetime: Duration,
    pub max_payment_lifetime: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            skew: ClockSkew::DEFAULT,
            max_intent_lifetime: Duration::days(30),
            max_cart_lifetime: Duration::days(1),
            max_payment_lifetime: Duration::days(1),
        }
    }
}

/// Who the merchant is, as the gateway knows itself. Each given part must
/// match what the cart mandate says; an absent part is not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MerchantIdentity<'a> {
    /// Compared with the cart's `iss`, ignoring case and a trailing `/`.
    pub base_url: Option<&'a str>,
    /// Compared exactly with the cart's `contents.merchant_name`.
    pub name: Option<&'a str>,
}

/// Everything [`verify_chain`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct ChainInput<'a> {
    pub intent_mandate: &'a str,
    pub cart_mandate: &'a str,
    pub payment_mandate: &'a str,
    /// The merchant's verification keys (`KeyRing::public_keys()`, or a
    /// public JWKS for offline checks).
    pub merchant_keys: &'a PublicKeySet,
    /// The user or agent platform keys resolved for this agent.
    pub user_keys: &'a PublicKeySet,
    pub checkout_id: &'a CheckoutId,
    pub merchant: MerchantIdentity<'a>,
    pub now: OffsetDateTime,
    pub policy: VerifyPolicy,
}

/// One named check and, if it failed, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub error: Option<Error>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }
}

/// The checks that ran, in order, and the outcome. Verification stops at
/// the first failure, so the last check is the failed one.
#[derive(Debug)]
pub struct ChainReport {
    pub checks: Vec<Check>,
    pub result: Result<VerifiedChain>,
}

/// Who signed the payment mandate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentSigner {
    /// The key that signed the intent.
    User,
    /// The intent's `cnf` key (an agent acting without the user present).
    Delegated { kid: String, thumbprint: String },
}

/// A mandate id to reserve once, and how long the reservation must last
/// (the mandate's `exp` plus the skew: after that the mandate is refused as
/// expired anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateId {
    pub id: String,
    pub keep_until: OffsetDateTime,
}

/// An intent mandate that verified under a resolved user key.
#[derive(Debug, Clone)]
pub struct VerifiedIntent {
    claims: IntentClaims,
    user_key: PublicKey,
    max_amount: Money,
    cnf: Option<PublicKey>,
}

impl VerifiedIntent {
    pub fn claims(&self) -> &IntentClaims {
        &self.claims
    }

    pub fn user_key(&self) -> &PublicKey {
        &self.user_key
    }

    pub fn max_amount(&self) -> Money {
        self.max_amount
    }

    /// The delegated agent key, if the intent names one.
    pub fn cnf_key(&self) -> Option<&PublicKey> {
        self.cnf.as_ref()
    }
}

/// A chain that passed every check. What the checkout pipeline reads.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    intent: VerifiedIntent,
    cart: CartClaims,
    summary: CartSummary,
    payment: PaymentClaims,
    payment_signer: PaymentSigner,
    intent_hash: String,
    cart_mandate_hash: String,
    mandate_ids: Vec<MandateId>,
    checks: Vec<Check>,
}

impl VerifiedChain {
    pub fn intent(&self) -> &IntentClaims {
        &self.intent.claims
    }

    pub fn cart(&self) -> &CartClaims {
        &self.cart
    }

    pub fn payment(&self) -> &PaymentClaims {
        &self.payment
    }

    /// Product lines: SKU, quantity, line total (and `unit_amount()`).
    pub fn line_items(&self) -> &[CartLine] {
        &self.summary.lines
    }

    /// The cart total, which is also the exact payment amount.
    pub fn total(&self) -> Money {
        self.summary.total
    }

    pub fn currency(&self) -> Currency {
        self.summary.currency
    }

    pub fn intent_max(&self) -> Money {
        self.intent.max_amount
    }

    pub fn payment_token(&self) -> &str {
        &self.payment.payment_mandate_contents.payment_response.details.token
    }

    pub fn method_name(&self) -> &str {
        &self.payment.payment_mandate_contents.payment_response.method_name
    }

    pub fn payment_mandate_id(&self) -> &str {
        &self.payment.payment_mandate_contents.payment_mandate_id
    }

    /// The `kid` of the user key that signed the intent.
    pub fn user_kid(&self) -> &str {
        self.intent.user_key.kid()
    }

    pub fn user_key_thumbprint(&self) -> &str {
        self.intent.user_key.thumbprint()
    }

    pub fn payment_signer(&self) -> &PaymentSigner {
        &self.payment_signer
    }

    pub fn requires_refundability(&self) -> bool {
        self.intent.claims.requires_refundability
    }

    /// base64url(SHA-256) of the intent and cart tokens, for storing the chain.
    pub fn intent_hash(&self) -> &str {
        &self.intent_hash
    }

    pub fn cart_mandate_hash(&self) -> &str {
        &self.cart_mandate_hash
    }

    /// Every id to reserve once: the three `jti`s and the payment mandate id,
    /// namespaced by kind and by signer thumbprint so that two signers'
    /// choices cannot collide, and a chain cannot collide with itself.
    pub fn mandate_ids(&self) -> &[MandateId] {
        &self.mandate_ids
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }
}

/// Verifies the whole chain. See the module docs for the codes.
pub fn verify_chain(input: &ChainInput<'_>) -> Result<VerifiedChain> {
    verify_chain_report(input).result
}

/// Verifies the whole chain and reports every check that ran.
pub fn verify_chain_report(input: &ChainInput<'_>) -> ChainReport {
    let mut rec = Recorder::default();
    let result = run_chain(&mut rec, input);
    let result = result.map(|mut chain| {
        chain.checks = rec.checks.clone();
        chain
    });
    ChainReport { checks: rec.checks, result }
}

/// Verifies an intent mandate alone, for example before signing a cart that
/// answers it.
pub fn verify_intent(
    token: &str,
    user_keys: &PublicKeySet,
    now: OffsetDateTime,
    policy: &VerifyPolicy,
) -> Result<VerifiedIntent> {
    intent_steps(&mut Recorder::default(), token, user_keys, now, policy)
}

/// Verifies a cart mandate alone (signature, claims, expiry), for an agent
/// that wants to check what it is about to pay for.
pub fn verify_cart_mandate(
    token: &str,
    merchant_keys: &PublicKeySet,
    now: OffsetDateTime,
    policy: &VerifyPolicy,
) -> Result<CartClaims> {
    cart_steps(&mut Recorder::default(), token, merchant_keys, now, policy).map(|c| c.claims)
}

#[derive(Default)]
struct Recorder {
    checks: Vec<Check>,
}

impl Recorder {
    fn check<T>(&mut self, name: &'static str, result: Result<T>) -> Result<T> {
        self.checks.push(Check { name, error: result.as_ref().err().cloned() });
        result
    }
}

/// Decodes `token`, resolves its `kid` with `resolve`, and verifies it.
fn signed_by<'k>(
    token: &str,
    resolve: impl FnOnce(&str) -> Result<&'k PublicKey>,
) -> Result<(&'k PublicKey, Verified)> {
    let unverified = jws::decode_compact(token, Some(MANDATE_TYP))?;
    let key = resolve(unverified.kid())?;
    Ok((key, unverified.verify(key.verifying_key())?))
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(malformed(format!("{what} must be 1 to {MAX_ID_LEN} characters")));
    }
    Ok(())
}

/// `iat`/`exp` against `now` with the skew. Arithmetic is widened because
/// both numbers come from the token.
fn check_time(
    what: &str,
    iat: i64,
    exp: i64,
    now: OffsetDateTime,
    skew: Duration,
    max_lifetime: Duration,
) -> Result<()> {
    let (iat, exp) = (i128::from(iat), i128::from(exp));
    let now = i128::from(now.unix_timestamp());
    let skew = i128::from(skew.whole_seconds());
    if exp <= iat {
        return Err(malformed(format!("{what} exp is not after its iat")));
    }
    if exp - iat > i128::from(max_lifetime.whole_seconds()) {
        return Err(malformed(format!(
            "{what} lifetime exceeds {} seconds",
            max_lifetime.whole_seconds()
        )));
    }
    if iat > now + skew {
        return Err(Error::new(
            ErrorCode::MandateNotYetValid,
            format!("{what} is issued in the future"),
        ));
    }
    if now >= exp + skew {
        return Err(Error::new(ErrorCode::MandateExpired, format!("{what} has expired")));
    }
    Ok(())
}

fn keep_until(exp: i64, skew: Duration) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(exp)
        .ok()
        .and_then(|t| t.checked_add(skew))
        .ok_or_else(|| malformed("exp is out of range"))
}

fn same_url(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    norm(a) == norm(b)
}

fn intent_steps(
    rec: &mut Recorder,
    token: &str,
    user_keys: &PublicKeySet,
    now: OffsetDateTime,
    policy: &VerifyPolicy,
) -> Result<VerifiedIntent> {
    let signed = if user_keys.is_empty() {
        Err(Error::new(ErrorCode::AgentMissingKey, "no user or agent signing key was resolved"))
    } else {
        signed_by(token, |kid| user_keys.find(kid, now))
    };
    let (user_key, verified) = rec.check("intent.signature", signed)?;
    let intent = rec.check("intent.claims", read_intent(&verified, user_key))?;
    rec.check(
        "intent.time",
        check_time(
            "intent mandate",
            intent.claims.iat,
            intent.claims.exp,
            now,
            policy.skew.get(),
            policy.max_intent_lifetime,
        ),
    )?;
    Ok(intent)
}

fn read_intent(verified: &Verified, user_key: &PublicKey) -> Result<VerifiedIntent> {
    let claims: IntentClaims = verified.claims()?;
    check_id("intent jti", &claims.jti)?;
    let max_amount = claims.max_amount.to_money()?;
    if max_amount.is_negative() {
        return Err(malformed("intent max_amount is negative"));
    }
    for (what, list) in [("merchants", &claims.merchants), ("skus", &claims.skus)] {
        // An empty list would read as "anything" to one party and "nothing"
        // to another; it is refused rather than guessed.
        if list.as_ref().is_some_and(Vec::is_empty) {
            return Err(malformed(format!("intent {what} is an empty list; omit it instead")));
        }
    }
    let cnf = match &claims.cnf {
        None => None,
        Some(c) => {
            let key = PublicKey::from_jwk(&c.jwk)
                .map_err(|e| malformed(format!("intent cnf.jwk: {}", e.message())))?;
            if key.kid() == user_key.kid() && key.thumbprint() != user_key.thumbprint() {
                return Err(malformed("intent cnf key reuses the signer's kid for another key"));
            }
            Some(key)
        }
    };
    Ok(VerifiedIntent { claims, user_key: user_key.clone(), max_amount, cnf })
}

struct VerifiedCart {
    claims: CartClaims,
    summary: CartSummary,
    contents_hash: String,
    merchant_key: PublicKey,
}

fn cart_steps(
    rec: &mut Recorder,
    token: &str,
    merchant_keys: &PublicKeySet,
    now: OffsetDateTime,
    policy: &VerifyPolicy,
) -> Result<VerifiedCart> {
    let (merchant_key, verified) =
        rec.check("cart.signature", signed_by(token, |kid| merchant_keys.find(kid, now)))?;
    let (claims, summary, contents_hash) = rec.check("cart.claims", read_cart(&verified))?;
    let skew = policy.skew.get();
    rec.check(
        "cart.time",
        check_time("cart mandate", claims.iat, claims.exp, now, skew, policy.max_cart_lifetime)
            .and_then(|()| {
                let expiry = OffsetDateTime::parse(&claims.contents.cart_expiry, &Rfc3339)
                    .map_err(|_| malformed("cart_expiry is not an RFC 3339 instant"))?;
                // Only a cart_expiry at the very end of time overflows; it
                // is then simply not past.
                if expiry.checked_add(skew).is_some_and(|limit| now >= limit) {
                    return Err(Error::new(ErrorCode::MandateExpired, "cart has expired"));
                }
                Ok(())
            }),
    )?;
    Ok(VerifiedCart { claims, summary, contents_hash, merchant_key: merchant_key.clone() })
}

fn read_cart(verified: &Verified) -> Result<(CartClaims, CartSummary, String)> {
    let value = jws::parse_json_strict(verified.payload())
        .map_err(|e| malformed(format!("cart payload is not valid JSON: {e}")))?;
    // The hash is taken over `contents` exactly as signed, not over our
    // re-serialization of it, so it means the same to every implementation.
    let contents_hash = match value.get("contents") {
        Some(contents @ Value::Object(_)) => jcs_hash(contents)?,
        _ => return Err(malformed("cart mandate has no contents object")),
    };
    let claims: CartClaims = jws::from_json_value(value)?;
    check_id("cart jti", &claims.jti)?;
    let summary = claims.contents.summary()?;
    Ok((claims, summary, contents_hash))
}

fn run_chain(rec: &mut Recorder, input: &ChainInput<'_>) -> Result<VerifiedChain> {
    let now = input.now;
    let policy = &input.policy;
    let skew = policy.skew.get();
    let expected_checkout = input.checkout_id.as_str();

    let intent = intent_steps(rec, input.intent_mandate, input.user_keys, now, policy)?;
    let cart = cart_steps(rec, input.cart_mandate, input.merchant_keys, now, policy)?;
    let claims = &cart.claims;

    let intent_hash = token_hash(input.intent_mandate);
    rec.check(
        "cart.intent_hash",
        if claims.intent_hash == intent_hash {
            Ok(())
        } else {
            Err(hash_mismatch("cart mandate answers another intent mandate"))
        },
    )?;
    rec.check(
        "cart.cart_hash",
        if claims.cart_hash == cart.contents_hash {
            Ok(())
        } else {
            Err(hash_mismatch("cart_hash does not match the cart contents"))
        },
    )?;
    rec.check(
        "cart.checkout_id",
        if claims.checkout_id == expected_checkout {
            Ok(())
        } else {
            Err(scope("cart mandate is for another checkout"))
        },
    )?;
    rec.check("cart.merchant", {
        let url_ok = input.merchant.base_url.is_none_or(|u| same_url(u, &claims.iss));
        let name_ok = input.merchant.name.is_none_or(|n| n == claims.contents.merchant_name);
        if url_ok && name_ok {
            Ok(())
        } else {
            Err(scope("cart mandate was issued for another merchant"))
        }
    })?;

    let (payment_signer, verified) = rec.check("payment.signature", {
        let user_key = &intent.user_key;
        let cnf = intent.cnf.as_ref();
        signed_by(input.payment_mandate, |kid| {
            if kid == user_key.kid() {
                Ok(user_key)
            } else if let Some(agent) = cnf.filter(|k| k.kid() == kid) {
                Ok(agent)
            } else {
                Err(Error::new(
                    ErrorCode::MandateInvalidSignature,
                    "payment mandate is signed by neither the intent's signer nor its cnf key",
                ))
            }
        })
        .map(|(key, verified)| {
            let signer = if std::ptr::eq(key, user_key) {
                PaymentSigner::User
            } else {
                PaymentSigner::Delegated {
                    kid: key.kid().to_owned(),
                    thumbprint: key.thumbprint().to_owned(),
                }
            };
            (signer, verified)
        })
    })?;
    let payment = rec.check("payment.claims", read_payment(&verified))?;
    let contents = &payment.payment_mandate_contents;
    rec.check(
        "payment.time",
        check_time(
            "payment mandate",
            payment.iat,
            payment.exp,
            now,
            skew,
            policy.max_payment_lifetime,
        ),
    )?;
    let cart_mandate_hash = token_hash(input.cart_mandate);
    rec.check(
        "payment.cart_mandate_hash",
        if payment.cart_mandate_hash == cart_mandate_hash {
            Ok(())
        } else {
            Err(hash_mismatch("payment mandate is bound to another cart mandate"))
        },
    )?;
    rec.check(
        "payment.checkout_id",
        if contents.payment_details_id == expected_checkout {
            Ok(())
        } else {
            Err(scope("payment mandate is for another checkout"))
        },
    )?;
    rec.check(
        "payment.merchant_agent",
        if same_url(&contents.merchant_agent, &claims.iss)
            || contents.merchant_agent == claims.contents.merchant_name
        {
            Ok(())
        } else {
            Err(scope("payment mandate pays another merchant"))
        },
    )?;
    rec.check(
        "payment.confirmation",
        match payment_signer {
            PaymentSigner::Delegated { .. } if intent.claims.user_cart_confirmation_required => {
                Err(scope(
                    "the intent requires the user's cart confirmation, but the payment \
                     mandate is signed by the delegated cnf key",
                ))
            }
            _ => Ok(()),
        },
    )?;

    let paid = contents.payment_details_total.to_money()?;
    let total = cart.summary.total;
    rec.check("amount.currency", {
        let (i, c, p) = (intent.max_amount.currency(), total.currency(), paid.currency());
        if i == c && c == p {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::CurrencyMismatch,
                format!("intent is in {i}, cart in {c}, payment in {p}"),
            ))
        }
    })?;
    rec.check(
        "amount.within_intent",
        if total.minor() <= intent.max_amount.minor() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::AmountExceedsIntent,
                format!("cart total {total} exceeds the intent's {}", intent.max_amount),
            ))
        },
    )?;
    rec.check(
        "amount.payment_equals_cart",
        if paid == total {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::PaymentAmountMismatch,
                format!("payment of {paid} does not equal the cart total {total}"),
            ))
        },
    )?;
    rec.check(
        "intent.merchants",
        match &intent.claims.merchants {
            Some(list)
                if !list
                    .iter()
                    .any(|m| same_url(m, &claims.iss) || *m == claims.contents.merchant_name) =>
            {
                Err(Error::new(
                    ErrorCode::MerchantNotAllowed,
                    "the intent does not name this merchant",
                ))
            }
            _ => Ok(()),
        },
    )?;
    rec.check(
        "intent.skus",
        match &intent.claims.skus {
            Some(allowed) => match cart
                .summary
                .lines
                .iter()
                .find(|line| !allowed.iter().any(|s| s == line.sku.as_str()))
            {
                Some(line) => Err(Error::new(
                    ErrorCode::SkuNotAllowed,
                    format!("the intent does not allow sku {:?}", line.sku.as_str()),
                )),
                None => Ok(()),
            },
            None => Ok(()),
        },
    )?;

    let user = intent.user_key.thumbprint();
    let mandate_ids = vec![
        MandateId {
            id: format!("ap2:intent:{user}:{}", intent.claims.jti),
            keep_until: keep_until(intent.claims.exp, skew)?,
        },
        MandateId {
            id: format!("ap2:cart:{}:{}", cart.merchant_key.thumbprint(), claims.jti),
            keep_until: keep_until(claims.exp, skew)?,
        },
        MandateId {
            id: format!("ap2:payment:{user}:{}", payment.jti),
            keep_until: keep_until(payment.exp, skew)?,
        },
        MandateId {
            id: format!("ap2:payment_mandate_id:{user}:{}", contents.payment_mandate_id),
            keep_until: keep_until(payment.exp, skew)?,
        },
    ];
    Ok(VerifiedChain {
        intent,
        cart: cart.claims,
        summary: cart.summary,
        payment,
        payment_signer,
        intent_hash,
        cart_mandate_hash,
        mandate_ids,
        checks: Vec::new(),
    })
}

fn read_payment(verified: &Verified) -> Result<PaymentClaims> {
    let payment: PaymentClaims = verified.claims()?;
    let contents = &payment.payment_mandate_contents;
    check_id("payment jti", &payment.jti)?;
    check_id("payment_mandate_id", &contents.payment_mandate_id)?;
    if contents.payment_response.details.token.is_empty() {
        return Err(malformed("payment token is empty"));
    }
    OffsetDateTime::parse(&contents.timestamp, &Rfc3339)
        .map_err(|_| malformed("payment timestamp is not an RFC 3339 instant"))?;
    contents.payment_details_total.to_money()?;
    Ok(payment)
}

/// Records mandate ids as used. The gateway implements it with its store's
/// put-if-absent; `true` means newly reserved, `false` seen before.
#[async_trait::async_trait]
pub trait MandateIdReserver: Send + Sync {
    async fn reserve(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool>;

    /// Reserves `ids` in order and stops at the first one reserved before:
    /// returns how many it newly reserved (all of them, or the position of
    /// that first replay). The ids before a replay stay reserved and those
    /// after it are not tried, as with one `reserve` per id; a store can do
    /// the whole list in one write.
    async fn reserve_in_order(&self, ids: &[MandateId]) -> Result<usize> {
        for (n, id) in ids.iter().enumerate() {
            if !self.reserve(&id.id, id.keep_until).await? {
                return Ok(n);
            }
        }
        Ok(ids.len())
    }
}

/// Reserves every id of a verified chain, failing with `mandate_replayed` on
/// the first one already used. Ids reserved before a failure stay reserved:
/// a chain that was partly replayed is not retried, so failing closed costs
/// nothing legitimate.
pub async fn reserve_mandate_ids(
    chain: &VerifiedChain,
    reserver: &dyn MandateIdReserver,
) -> Result<()> {
    let ids = chain.mandate_ids();
    if reserver.reserve_in_order(ids).await? < ids.len() {
        return Err(Error::new(
            ErrorCode::MandateReplayed,
            "a mandate of this chain was already used",
        ));
    }
    Ok(())
}

/// An in-process [`MandateIdReserver`] for tests and one-shot tools. It never
/// forgets, so a long-running server should use its store instead.
#[derive(Debug, Default)]
pub struct MemoryReserver {
    seen: Mutex<HashMap<String, OffsetDateTime>>,
}

#[async_trait::async_trait]
impl MandateIdReserver for MemoryReserver {
    async fn reserve(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool> {
        let mut seen = self.seen.lock().map_err(|_| Error::internal("reserver lock poisoned"))?;
        if seen.contains_key(id) {
            return Ok(false);
        }
        seen.insert(id.to_owned(), keep_until);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn time_window_table() {
        use ErrorCode::*;
        let now = datetime!(2026-03-01 12:00 UTC);
        let t = now.unix_timestamp();
        let skew = Duration::seconds(60);
        let life = Duration::hours(1);
        let cases: &[(&str, i64, i64, std::result::Result<(), ErrorCode>)] = &[
            ("fresh", t - 10, t + 600, Ok(())),
            ("iat within skew ahead", t + 60, t + 600, Ok(())),
            ("iat beyond skew ahead", t + 61, t + 600, Err(MandateNotYetValid)),
            ("exp just passed, within skew", t - 600, t - 59, Ok(())),
            ("exp passed by the skew", t - 600, t - 60, Err(MandateExpired)),
            ("long expired", t - 3000, t - 2000, Err(MandateExpired)),
            ("exp equals iat", t, t, Err(MandateMalformed)),
            ("exp before iat", t, t - 1, Err(MandateMalformed)),
            ("lifetime at the limit", t - 10, t - 10 + 3600, Ok(())),
            ("lifetime over the limit", t - 10, t - 10 + 3601, Err(MandateMalformed)),
            ("extreme values do not overflow", i64::MIN, i64::MAX, Err(MandateMalformed)),
            ("extreme future", i64::MAX - 1, i64::MAX, Err(MandateNotYetValid)),
        ];
        for (name, iat, exp, want) in cases {
            let got = check_time("m", *iat, *exp, now, skew, life).map_err(|e| e.code());
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn clock_skew_is_bounded() {
        assert_eq!(ClockSkew::default().get(), Duration::seconds(60));
        for (secs, ok) in [(0, true), (300, true), (301, false), (-1, false), (86_400, false)] {
            assert_eq!(ClockSkew::new(Duration::seconds(secs)).is_ok(), ok, "{secs}");
        }
    }

    #[test]
    fn merchant_urls_compare_loosely_only_on_case_and_trailing_slash() {
        let cases = [
            ("https://shop.example", "https://shop.example/", true),
            ("https://Shop.Example", "https://shop.example", true),
            ("https://shop.example", "https://shop.example.evil", false),
            ("https://shop.example", "http://shop.example", false),
            ("https://shop.example/a", "https://shop.example/b", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(same_url(a, b), want, "{a} vs {b}");
        }
    }

    #[tokio::test]
    async fn memory_reserver_reserves_once() {
        let r = MemoryReserver::default();
        let until = datetime!(2026-03-01 12:00 UTC);
        assert!(r.reserve("a", until).await.unwrap());
        assert!(!r.reserve("a", until).await.unwrap());
        assert!(r.reserve("b", until).await.unwrap());
    }
}
