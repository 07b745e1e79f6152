//! AP2 v0.2: the checkout and payment mandates, open and closed, the
//! merchant's checkout JWT, and every check a merchant makes on them.
//!
//! The chain mechanics (SD-JWT, disclosures, key binding, `aud`, `nonce`,
//! times) are `ap2::sdjwt`'s; this module reads the mandates the chains
//! carry. It is pure: the caller passes the trusted keys, its own view of
//! the checkout, the total and `now`, and executes the id reservations this
//! module plans through a [`MandateIdReserver`].
//!
//! # The merchant's checkout JWT
//!
//! When a platform negotiated `dev.ucp.shopping.ap2_mandate`, every
//! checkout response carries `ap2.merchant_authorization`: a detached ES256
//! JWS `<header>..<signature>` (header `{"alg":"ES256","kid":…}`) over the
//! JCS form of the checkout without its `ap2` member. Putting the
//! base64url of those JCS bytes back between the dots (RFC 7515
//! appendix F) gives a compact JWS signed by the merchant whose payload is
//! the checkout: that is the `checkout_jwt` of the closed checkout mandate,
//! and `checkout_hash` is base64url(SHA-256(its ASCII)). The same hash is
//! the payment mandate's `transaction_id` and the `nonce` of both
//! presentations: the merchant's challenge is its own signature over the
//! current state of the session, which nobody can know before the merchant
//! signed it. The `aud` is the merchant's base URL.
//!
//! # What is checked (codes in parentheses)
//!
//! Checkout mandate: every hop but the last is `mandate.checkout.open.1`,
//! the last `mandate.checkout.1` (`mandate_malformed`); `checkout_hash`
//! is the hash of the disclosed `checkout_jwt` (`chain_hash_mismatch`);
//! `checkout_jwt` is, byte for byte, the gateway's JWT of the current
//! session: one the merchant keys do not verify is
//! `merchant_authorization_invalid`, one that does but for another state
//! or checkout is `mandate_scope_mismatch`; every open mandate's
//! constraints hold for that checkout (`mandate_scope_mismatch`).
//!
//! Payment mandate: open hops `mandate.payment.open.1`, the last
//! `mandate.payment.1`; `transaction_id` is the checkout hash,
//! `payment_amount` the checkout total, `payee` this merchant, the
//! execution immediate; every open mandate's pre-set claims equal the
//! closed one's and its constraints hold (`mandate_scope_mismatch`).
//!
//! Constraints: every type the v0.2 schemas define is evaluated; a type
//! this module does not know is refused (`mandate_malformed`), never
//! ignored. A holder may withhold elements of the arrays the schemas mark
//! selectively disclosable (`allowed`, `acceptable_items`), which only
//! narrows a constraint; withholding anything else in a mandate (a
//! constraint, a bound, a pre-set claim, a decoy) is refused, because it
//! could widen one. Lists are bounded ([`MAX_CONSTRAINTS`],
//! [`MAX_REQUIREMENTS`], [`MAX_LIST`]), so evaluation stays cheap.
//!
//! Replay: each closed mandate is reserved once; an open mandate too,
//! unless it allows recurrence (`payment.agent_recurrence`), whose
//! frequency and `max_occurrences` are enforced with per-period and
//! per-use reservations instead. A `payment.budget` across recurrences
//! needs the amounts spent before, which only the gateway's order history
//! knows: [`VerifiedMandates::budget`] returns the limit and
//! [`check_budget`] applies it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

use super::jws::{self, malformed, DecodeOptions, Es256Signer};
use super::keys::PublicKeySet;
use super::mandates::Amount;
use super::sdjwt::{self, ChainInput, ChainPolicy, Hop, VerifiedChain, Withheld};
use super::verify::MandateIdReserver;
use crate::domain::{Currency, Error, ErrorCode, Money, Result};

pub const VCT_CHECKOUT: &str = "mandate.checkout.1";
pub const VCT_CHECKOUT_OPEN: &str = "mandate.checkout.open.1";
pub const VCT_PAYMENT: &str = "mandate.payment.1";
pub const VCT_PAYMENT_OPEN: &str = "mandate.payment.open.1";

/// Longest payment instrument id (the processor token) accepted.
pub const MAX_INSTRUMENT_ID: usize = 4096;
/// Highest `max_occurrences` enforced; each use probes the reservations
/// before it, so the count is bounded.
pub const MAX_OCCURRENCES: u32 = 1000;
/// Most constraints in one open mandate.
pub const MAX_CONSTRAINTS: usize = 32;
/// Most requirements in one `checkout.line_items`, and entries in one
/// `allowed` or `acceptable_items` list: they size the matching below.
pub const MAX_REQUIREMENTS: usize = 64;
pub const MAX_LIST: usize = 256;

fn scope(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::MandateScopeMismatch, message)
}

fn authorization(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::MerchantAuthorizationInvalid, message)
}

// ---- The merchant's side ------------------------------------------------------

/// A merchant as AP2 names one (`types/merchant.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
}

/// The merchant's signature over one state of a checkout, in both forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantAuthorization {
    /// `<header>..<signature>`: `ap2.merchant_authorization`.
    pub detached: String,
    /// The same JWS with its payload: the mandate's `checkout_jwt`.
    pub checkout_jwt: String,
    /// base64url(SHA-256(ASCII of `checkout_jwt`)).
    pub checkout_hash: String,
}

/// Signs `checkout`, which must not carry an `ap2` member: that member is
/// where the signature goes, so it is never signed.
pub fn authorize_checkout(
    signer: &dyn Es256Signer,
    checkout: &Value,
) -> Result<MerchantAuthorization> {
    let Value::Object(members) = checkout else {
        return Err(Error::internal("a checkout to sign is a JSON object"));
    };
    if members.contains_key("ap2") {
        return Err(Error::internal("the ap2 member is never part of the signed checkout"));
    }
    let checkout_jwt = jws::sign_compact(signer, None, checkout)?;
    let mut parts = checkout_jwt.split('.');
    let (Some(header), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::internal("a compact JWS has three parts"));
    };
    Ok(MerchantAuthorization {
        detached: format!("{header}..{signature}"),
        checkout_hash: sdjwt::hash(&checkout_jwt),
        checkout_jwt,
    })
}

/// `checkout` without its `ap2` member: what `merchant_authorization`
/// covers.
pub fn without_ap2(checkout: &Value) -> Value {
    let mut copy = checkout.clone();
    if let Value::Object(m) = &mut copy {
        m.remove("ap2");
    }
    copy
}

/// Checks `ap2.merchant_authorization` of a checkout response against the
/// merchant's keys, as a platform must before showing it to the user.
pub fn verify_merchant_authorization(
    checkout: &Value,
    keys: &PublicKeySet,
    now: OffsetDateTime,
) -> Result<()> {
    let Some(detached) = checkout.pointer("/ap2/merchant_authorization").and_then(Value::as_str)
    else {
        return Err(Error::new(
            ErrorCode::MerchantAuthorizationMissing,
            "the checkout carries no ap2.merchant_authorization",
        ));
    };
    let token = jws::decode_detached(detached, &without_ap2(checkout), None)
        .map_err(|e| authorization(e.message()))?;
    let key = keys.find(token.kid(), now).map_err(|e| authorization(e.message()))?;
    token.verify(key.verifying_key()).map_err(|e| authorization(e.message()))?;
    Ok(())
}

/// The platform's side of [`authorize_checkout`]: the checkout JWT of a
/// checkout response, rebuilt by putting the JCS of the checkout (without
/// `ap2`) back into its `ap2.merchant_authorization`. Check that
/// authorization with [`verify_merchant_authorization`] first.
pub fn checkout_jwt_of(checkout: &Value) -> Result<MerchantAuthorization> {
    let Some(detached) = checkout.pointer("/ap2/merchant_authorization").and_then(Value::as_str)
    else {
        return Err(Error::new(
            ErrorCode::MerchantAuthorizationMissing,
            "the checkout carries no ap2.merchant_authorization",
        ));
    };
    let Some((header, signature)) = detached.split_once("..") else {
        return Err(authorization("merchant_authorization is not a detached JWS"));
    };
    let payload = jws::b64url(&jws::jcs(&without_ap2(checkout))?);
    let checkout_jwt = format!("{header}.{payload}.{signature}");
    Ok(MerchantAuthorization {
        detached: detached.to_owned(),
        checkout_hash: sdjwt::hash(&checkout_jwt),
        checkout_jwt,
    })
}

// ---- Mandate claim sets ---------------------------------------------------------

/// The closed checkout mandate (`checkout_mandate.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutMandate {
    pub vct: String,
    pub checkout_jwt: Option<String>,
    pub checkout_hash: String,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
    /// Only when a KB-JWT follows this mandate (read by `sdjwt`).
    pub cnf: Option<Value>,
}

/// The open checkout mandate (`open_checkout_mandate.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenCheckoutMandate {
    pub vct: String,
    pub constraints: Vec<Value>,
    pub cnf: Value,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
}

/// `types/payment_instrument.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentInstrument {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `types/pisp.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pisp {
    pub legal_name: String,
    pub brand_name: String,
    pub domain_name: String,
}

/// The closed payment mandate (`payment_mandate.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentMandate {
    pub vct: String,
    pub transaction_id: String,
    pub payee: Merchant,
    pub payment_amount: Amount,
    pub payment_instrument: PaymentInstrument,
    pub pisp: Option<Pisp>,
    pub execution_date: Option<String>,
    pub risk_data: Option<Map<String, Value>>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
    pub cnf: Option<Value>,
}

/// The open payment mandate (`open_payment_mandate.json`): constraints,
/// and any closed claim pre-set by the user.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenPaymentMandate {
    pub vct: String,
    pub constraints: Vec<Value>,
    pub cnf: Value,
    pub payee: Option<Merchant>,
    pub payment_amount: Option<Amount>,
    pub payment_instrument: Option<PaymentInstrument>,
    pub pisp: Option<Pisp>,
    pub execution_date: Option<String>,
    pub risk_data: Option<Map<String, Value>>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
}

/// `open_checkout_mandate.json` `$defs/item`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptableItem {
    pub id: String,
    pub title: String,
}

/// `open_checkout_mandate.json` `$defs/line_item_requirements`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItemRequirement {
    pub id: String,
    pub acceptable_items: Vec<AcceptableItem>,
    pub quantity: u32,
}

/// The constraints of an open checkout mandate.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutConstraint {
    AllowedMerchants { allowed: Vec<Merchant> },
    LineItems { items: Vec<LineItemRequirement> },
}

/// `open_payment_mandate.json` `$defs/agent_recurrence` `frequency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Frequency {
    OnDemand,
    Daily,
    Weekly,
    Biweekly,
    Monthly,
    Quarterly,
    Annually,
}

/// The constraints of an open payment mandate.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentConstraint {
    AgentRecurrence {
        frequency: Frequency,
        max_occurrences: Option<u32>,
    },
    AllowedPayees {
        allowed: Vec<Merchant>,
    },
    AllowedPaymentInstruments {
        allowed: Vec<PaymentInstrument>,
    },
    AllowedPisps {
        allowed: Vec<Pisp>,
    },
    /// Integer minor units (the schema's `integer`).
    AmountRange {
        currency: String,
        max: i64,
        min: Option<i64>,
    },
    /// `max` is a `number` in major units (as the AP2 reference SDK reads
    /// it), converted exactly to minor units of `currency`.
    Budget {
        max: Money,
    },
    ExecutionDate {
        not_before: Option<String>,
        not_after: Option<String>,
    },
    Reference {
        conditional_transaction_id: String,
    },
}

/// Reads one constraint object, by its `type`, refusing members the type
/// does not define.
fn constraint_fields<T: DeserializeOwned>(mut value: Map<String, Value>, kind: &str) -> Result<T> {
    value.remove("type");
    serde_json::from_value(Value::Object(value))
        .map_err(|e| malformed(format!("constraint {kind}: {e}")))
}

fn bounded<T>(list: &[T], max: usize, what: &str) -> Result<()> {
    if list.len() > max {
        return Err(malformed(format!("{what} holds more than {max} entries")));
    }
    Ok(())
}

fn constraint_type(value: &Value, at: usize) -> Result<(String, Map<String, Value>)> {
    match value {
        Value::Object(m) => match m.get("type") {
            Some(Value::String(kind)) => Ok((kind.clone(), m.clone())),
            _ => Err(malformed(format!("constraint {at} has no type"))),
        },
        _ => Err(malformed(format!("constraint {at} is not an object"))),
    }
}

impl CheckoutConstraint {
    pub fn parse(value: &Value, at: usize) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Allowed<T> {
            allowed: Vec<T>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Items {
            items: Vec<LineItemRequirement>,
        }
        let (kind, fields) = constraint_type(value, at)?;
        match kind.as_str() {
            "checkout.allowed_merchants" => {
                let a: Allowed<Merchant> = constraint_fields(fields, &kind)?;
                bounded(&a.allowed, MAX_LIST, &kind)?;
                Ok(Self::AllowedMerchants { allowed: a.allowed })
            }
            "checkout.line_items" => {
                let i: Items = constraint_fields(fields, &kind)?;
                bounded(&i.items, MAX_REQUIREMENTS, &kind)?;
                for r in &i.items {
                    bounded(&r.acceptable_items, MAX_LIST, "acceptable_items")?;
                }
                if i.items.is_empty() || i.items.iter().any(|r| r.quantity == 0) {
                    return Err(malformed(
                        "checkout.line_items needs requirements with a quantity above 0",
                    ));
                }
                Ok(Self::LineItems { items: i.items })
            }
            other => Err(malformed(format!(
                "unknown checkout constraint {:?}: a constraint this merchant cannot \
                 evaluate is refused",
                truncate(other)
            ))),
        }
    }
}

impl PaymentConstraint {
    pub fn parse(value: &Value, at: usize) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Allowed<T> {
            allowed: Vec<T>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Recurrence {
            frequency: Frequency,
            max_occurrences: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Range {
            currency: String,
            max: i64,
            min: Option<i64>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Budget {
            max: serde_json::Number,
            currency: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Window {
            not_before: Option<String>,
            not_after: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Reference {
            conditional_transaction_id: String,
        }
        let (kind, fields) = constraint_type(value, at)?;
        Ok(match kind.as_str() {
            "payment.agent_recurrence" => {
                let r: Recurrence = constraint_fields(fields, &kind)?;
                if r.max_occurrences.is_some_and(|m| m == 0 || m > MAX_OCCURRENCES) {
                    return Err(malformed(format!(
                        "max_occurrences must be 1 to {MAX_OCCURRENCES}"
                    )));
                }
                Self::AgentRecurrence { frequency: r.frequency, max_occurrences: r.max_occurrences }
            }
            "payment.allowed_payees" => {
                let a: Allowed<Merchant> = constraint_fields(fields, &kind)?;
                bounded(&a.allowed, MAX_LIST, &kind)?;
                Self::AllowedPayees { allowed: a.allowed }
            }
            "payment.allowed_payment_instruments" => {
                let a: Allowed<PaymentInstrument> = constraint_fields(fields, &kind)?;
                bounded(&a.allowed, MAX_LIST, &kind)?;
                Self::AllowedPaymentInstruments { allowed: a.allowed }
            }
            "payment.allowed_pisps" => {
                let a: Allowed<Pisp> = constraint_fields(fields, &kind)?;
                bounded(&a.allowed, MAX_LIST, &kind)?;
                Self::AllowedPisps { allowed: a.allowed }
            }
            "payment.amount_range" => {
                let r: Range = constraint_fields(fields, &kind)?;
                if r.min.is_some_and(|min| min > r.max) || r.max < 0 {
                    return Err(malformed(
                        "payment.amount_range has min above max, or max below 0",
                    ));
                }
                Self::AmountRange { currency: r.currency, max: r.max, min: r.min }
            }
            "payment.budget" => {
                let b: Budget = constraint_fields(fields, &kind)?;
                Self::Budget { max: major_to_money(&b.max, &b.currency)? }
            }
            "payment.execution_date" => {
                let w: Window = constraint_fields(fields, &kind)?;
                for bound in [&w.not_before, &w.not_after].into_iter().flatten() {
                    parse_instant(bound, false)?;
                }
                Self::ExecutionDate { not_before: w.not_before, not_after: w.not_after }
            }
            "payment.reference" => {
                let r: Reference = constraint_fields(fields, &kind)?;
                Self::Reference { conditional_transaction_id: r.conditional_transaction_id }
            }
            other => {
                return Err(malformed(format!(
                    "unknown payment constraint {:?}: a constraint this merchant cannot \
                     evaluate is refused",
                    truncate(other)
                )))
            }
        })
    }
}

/// A JSON number of major units as exact minor units of `currency`:
/// `12.5` USD is 1250; `12.505` USD, or any exponent form, is refused
/// rather than rounded.
fn major_to_money(number: &serde_json::Number, currency: &str) -> Result<Money> {
    let currency = Currency::parse(currency)
        .ok()
        .filter(|c| c.code() == currency)
        .ok_or_else(|| malformed(format!("{:?} is not an ISO 4217 code", truncate(currency))))?;
    let text = number.to_string();
    let bad = || malformed(format!("budget max {text} is not an amount of {currency}"));
    if text.starts_with('-') || text.contains(['e', 'E']) {
        return Err(bad());
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let fraction = fraction.trim_end_matches('0');
    let exponent = usize::from(currency.exponent());
    if fraction.len() > exponent || whole.is_empty() {
        return Err(bad());
    }
    let digits = format!("{whole}{fraction:0<exponent$}");
    let minor: i64 = digits.parse().map_err(|_| bad())?;
    Ok(Money::new(minor, currency))
}

// ---- Verification -------------------------------------------------------------

/// The gateway's own view of the checkout the mandates must match.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutView<'a> {
    /// The merchant's checkout JWT of the session as it is now.
    pub authorization: &'a MerchantAuthorization,
    /// Its payload: the checkout without `ap2`.
    pub checkout: &'a Value,
    /// Who this merchant is (`checkout.merchant` when AP2 is active).
    pub merchant: &'a Merchant,
    /// The merchant's verification keys, to tell a foreign checkout JWT
    /// from a stale one of ours.
    pub merchant_keys: &'a PublicKeySet,
    /// The amount to charge: the checkout's total.
    pub total: Money,
}

/// Everything [`verify_mandates`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct MandateInput<'a> {
    /// `ap2.checkout_mandate`.
    pub checkout_mandate: &'a str,
    /// The payment mandate (`payment.instruments[].credential.token`).
    pub payment_mandate: &'a str,
    /// Keys that may sign the root of either chain.
    pub agent_keys: &'a PublicKeySet,
    /// The `aud` both presentations must carry: the merchant's base URL.
    pub audience: &'a str,
    pub view: CheckoutView<'a>,
    pub now: OffsetDateTime,
    pub policy: ChainPolicy,
}

/// An id to reserve so a mandate pays once (or as often as it allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserve `id`; it must be new.
    Once { id: String, keep_until: OffsetDateTime },
    /// Reserve the first free `{prefix}{n}`, n = 1..=max: one use of a
    /// recurring mandate. All taken means the uses are spent.
    Use { prefix: String, max: u32, keep_until: OffsetDateTime },
}

/// The limit of a `payment.budget` across the uses of a recurring mandate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimit {
    /// base64url SHA-256 of the open mandate's JWT: what identifies its
    /// earlier uses.
    pub open_mandate: String,
    pub max: Money,
}

/// Both mandates, verified. What the checkout pipeline reads.
#[derive(Debug, Clone)]
pub struct VerifiedMandates {
    /// The checkout JWT's hash: `checkout_hash` and `transaction_id`.
    pub checkout_hash: String,
    /// base64url SHA-256 of the closed checkout mandate's JWT: the
    /// checkout receipt's `reference`.
    pub checkout_reference: String,
    /// The same for the closed payment mandate.
    pub payment_reference: String,
    /// The instrument to charge; its `id` is the processor token.
    pub instrument: PaymentInstrument,
    pub amount: Money,
    /// The root key ids of the two chains (for the record).
    pub checkout_root_kid: String,
    pub payment_root_kid: String,
    /// Budgets that span recurrences, for the caller to apply with the
    /// amounts it has on record.
    pub budgets: Vec<BudgetLimit>,
    /// Whether the payment mandate may be used again (agent recurrence).
    pub recurring: bool,
    pub reservations: Vec<Reservation>,
}

/// Verifies the checkout and payment mandates of a completion. See the
/// module docs for the rules and codes.
pub fn verify_mandates(input: &MandateInput<'_>) -> Result<VerifiedMandates> {
    let view = &input.view;
    let nonce = view.authorization.checkout_hash.as_str();
    let chain = |presentation| {
        sdjwt::verify_chain(&ChainInput {
            presentation,
            root_keys: input.agent_keys,
            audience: input.audience,
            nonce,
            now: input.now,
            policy: input.policy,
        })
    };
    let checkout = chain(input.checkout_mandate)?;
    let checked = check_checkout_chain(&checkout, view)?;
    let payment = chain(input.payment_mandate)?;
    let paid = check_payment_chain(&payment, &checked, view, input.now, input.policy)?;

    let keep_until = |c: &VerifiedChain| {
        OffsetDateTime::from_unix_timestamp(c.valid_until)
            .map_err(|_| malformed("a mandate expiry is out of range"))
    };
    let (checkout_until, payment_until) = (keep_until(&checkout)?, keep_until(&payment)?);
    let root_until = |c: &VerifiedChain| -> Result<OffsetDateTime> {
        let exp = c.hops.first().and_then(|h| h.expires_at).unwrap_or(c.valid_until);
        OffsetDateTime::from_unix_timestamp(exp)
            .ok()
            .and_then(|t| t.checked_add(input.policy.skew.get()))
            .ok_or_else(|| malformed("a mandate expiry is out of range"))
    };
    let mut reservations = vec![
        Reservation::Once {
            id: format!("ap2v2:checkout:{}", checked.closed_jwt_hash),
            keep_until: checkout_until,
        },
        Reservation::Once {
            id: format!("ap2v2:payment:{}", paid.closed_jwt_hash),
            keep_until: payment_until,
        },
    ];
    if paid.recurrence.is_empty() {
        // Without recurrence an open mandate pays once, whatever is
        // disclosed of it: its JWT, not its presentation, is the id.
        for hop in checkout.hops.iter().chain(&payment.hops).filter(|h| h.cnf.is_some()) {
            reservations.push(Reservation::Once {
                id: format!("ap2v2:open:{}", hop.jwt_hash),
                keep_until: root_until(&checkout)?.max(root_until(&payment)?),
            });
        }
    } else {
        let until = root_until(&payment)?;
        for r in &paid.recurrence {
            let base = format!("ap2v2:recurrence:{}", r.open_jwt_hash);
            if let Some(period) = period_key(r.frequency, input.now) {
                reservations.push(Reservation::Once {
                    id: format!("{base}:period:{period}"),
                    keep_until: until,
                });
            }
            if let Some(max) = r.max_occurrences {
                reservations.push(Reservation::Use {
                    prefix: format!("{base}:use:"),
                    max,
                    keep_until: until,
                });
            }
        }
    }
    Ok(VerifiedMandates {
        checkout_hash: view.authorization.checkout_hash.clone(),
        checkout_reference: checked.closed_jwt_hash,
        payment_reference: paid.closed_jwt_hash,
        instrument: paid.instrument,
        amount: paid.amount,
        checkout_root_kid: checkout.root_kid,
        payment_root_kid: payment.root_kid,
        budgets: paid.budgets,
        recurring: !paid.recurrence.is_empty(),
        reservations,
    })
}

/// The period a recurring use falls in, as a reservation key: one use per
/// key. `None` for on-demand use.
pub fn period_key(frequency: Frequency, now: OffsetDateTime) -> Option<String> {
    let date = now.date();
    let days = date.to_julian_day();
    Some(match frequency {
        Frequency::OnDemand => return None,
        Frequency::Daily => format!("d{days}"),
        Frequency::Weekly => {
            let (year, week, _) = date.to_iso_week_date();
            format!("w{year}-{week}")
        }
        // Fortnights counted from a fixed Monday (1970-01-05 is Julian day
        // 2440592), so every fortnight starts on a Monday.
        Frequency::Biweekly => format!("f{}", (days - 2_440_592).div_euclid(14)),
        Frequency::Monthly => format!("m{}-{}", date.year(), u8::from(date.month())),
        Frequency::Quarterly => {
            format!("q{}-{}", date.year(), (u8::from(date.month()) - 1) / 3 + 1)
        }
        Frequency::Annually => format!("y{}", date.year()),
    })
}

/// Applies a budget: what was spent under the mandate before plus this
/// amount must stay within it.
pub fn check_budget(limit: &BudgetLimit, spent_before: Money, amount: Money) -> Result<()> {
    if spent_before.currency() != limit.max.currency() || amount.currency() != limit.max.currency()
    {
        return Err(scope("the payment is not in the budget's currency"));
    }
    let total = spent_before.checked_add(amount)?;
    if total.minor() > limit.max.minor() {
        return Err(scope(format!(
            "the payment would bring spending under this mandate to {total}, above its budget of {}",
            limit.max
        )));
    }
    Ok(())
}

/// Reserves every id of verified mandates, failing with `mandate_replayed`
/// on the first one already used. As for v0.1, ids reserved before a
/// failure stay reserved: failing closed costs nothing legitimate.
pub async fn reserve(mandates: &VerifiedMandates, reserver: &dyn MandateIdReserver) -> Result<()> {
    for r in &mandates.reservations {
        match r {
            Reservation::Once { id, keep_until } => {
                if !reserver.reserve(id, *keep_until).await? {
                    return Err(Error::new(
                        ErrorCode::MandateReplayed,
                        "a mandate of this completion was already used",
                    ));
                }
            }
            Reservation::Use { prefix, max, keep_until } => {
                let mut reserved = false;
                for n in 1..=*max {
                    if reserver.reserve(&format!("{prefix}{n}"), *keep_until).await? {
                        reserved = true;
                        break;
                    }
                }
                if !reserved {
                    return Err(Error::new(
                        ErrorCode::MandateReplayed,
                        format!("the recurring mandate's {max} uses are spent"),
                    ));
                }
            }
        }
    }
    Ok(())
}

struct CheckedCheckout {
    closed_jwt_hash: String,
    /// `sd_hash` of each open checkout mandate, for `payment.reference`.
    open_hashes: Vec<String>,
}

fn vct(hop: &Hop, index: usize, want: &str, what: &str) -> Result<()> {
    match hop.mandate.get("vct") {
        Some(Value::String(v)) if v == want => Ok(()),
        Some(Value::String(v)) => Err(malformed(format!(
            "hop {index} of the {what} carries vct {:?}, expected {want}",
            truncate(v)
        ))),
        _ => Err(malformed(format!("hop {index} of the {what} has no vct"))),
    }
}

fn read<T: DeserializeOwned>(hop: &Hop, what: &str) -> Result<T> {
    serde_json::from_value(Value::Object(hop.mandate.clone()))
        .map_err(|e| malformed(truncate(&format!("{what}: {e}"))))
}

/// Refuses what a mandate withholds outside the arrays whose elements may
/// be withheld (only open mandates have such arrays). A closed mandate
/// withholds nothing: one signed by someone else than the presenter (a
/// root before a KB-JWT) could otherwise lose a claim such as a later
/// `execution_date` on the way.
fn check_withheld(hop: &Hop, constraints: &[Value], arrays: &[&str], what: &str) -> Result<()> {
    for w in &hop.withheld {
        let narrowing = match w {
            Withheld::Element(path) => constraints.iter().enumerate().any(|(i, c)| {
                let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
                let at = format!("$.constraints[{i}]");
                (arrays.contains(&kind) && *path == format!("{at}.allowed"))
                    || (kind == "checkout.line_items"
                        && path.strip_prefix(&format!("{at}.items[")).is_some_and(|rest| {
                            rest.split_once(']').is_some_and(|(n, tail)| {
                                n.parse::<usize>().is_ok() && tail == ".acceptable_items"
                            })
                        }))
            }),
            Withheld::Member(_) => false,
        };
        if !narrowing {
            return Err(malformed(format!(
                "the {what} withholds {}: only elements of allowed lists may be withheld",
                w.path()
            )));
        }
    }
    Ok(())
}

fn check_checkout_chain(chain: &VerifiedChain, view: &CheckoutView<'_>) -> Result<CheckedCheckout> {
    let what = "checkout mandate";
    let (closed, open) = chain.hops.split_last().ok_or_else(|| malformed("no checkout mandate"))?;
    let mut constraints_of = Vec::new();
    for (index, hop) in open.iter().enumerate() {
        vct(hop, index, VCT_CHECKOUT_OPEN, what)?;
        let mandate: OpenCheckoutMandate = read(hop, "open checkout mandate")?;
        bounded(&mandate.constraints, MAX_CONSTRAINTS, "constraints")?;
        check_withheld(hop, &mandate.constraints, &["checkout.allowed_merchants"], what)?;
        let constraints = mandate
            .constraints
            .iter()
            .enumerate()
            .map(|(i, c)| CheckoutConstraint::parse(c, i))
            .collect::<Result<Vec<_>>>()?;
        if !constraints.iter().any(|c| matches!(c, CheckoutConstraint::LineItems { .. })) {
            return Err(malformed(
                "an open checkout mandate needs a checkout.line_items constraint",
            ));
        }
        constraints_of.push(constraints);
    }
    vct(closed, open.len(), VCT_CHECKOUT, what)?;
    check_withheld(closed, &[], &[], what)?;
    let mandate: CheckoutMandate = read(closed, "checkout mandate")?;
    let checkout_jwt = mandate
        .checkout_jwt
        .as_deref()
        .ok_or_else(|| malformed("the checkout mandate does not disclose its checkout_jwt"))?;
    if mandate.checkout_hash != sdjwt::hash(checkout_jwt) {
        return Err(Error::new(
            ErrorCode::ChainHashMismatch,
            "checkout_hash is not the hash of the disclosed checkout_jwt",
        ));
    }
    if checkout_jwt != view.authorization.checkout_jwt {
        return Err(diagnose_checkout_jwt(checkout_jwt, view));
    }
    for constraints in &constraints_of {
        for c in constraints {
            evaluate_checkout(c, view)?;
        }
    }
    Ok(CheckedCheckout {
        closed_jwt_hash: closed.jwt_hash.clone(),
        open_hashes: open.iter().map(|h| h.sd_hash.clone()).collect(),
    })
}

/// Why a checkout JWT is not the current one: not the merchant's at all,
/// or the merchant's for another state or checkout.
fn diagnose_checkout_jwt(checkout_jwt: &str, view: &CheckoutView<'_>) -> Error {
    let options = DecodeOptions { max_bytes: sdjwt::MAX_JWT_BYTES, ..DecodeOptions::default() };
    let token = match jws::decode_compact_with(checkout_jwt, &options) {
        Ok(t) => t,
        Err(e) => return authorization(format!("checkout_jwt: {}", e.message())),
    };
    if token.header().typ().is_some() {
        // The merchant's checkout JWT has no typ; its other tokens do.
        return authorization("checkout_jwt is another kind of merchant token");
    }
    // Any instant the key was valid at will do to find it: a retired key
    // still identifies a checkout JWT as the merchant's.
    let key = match view.merchant_keys.keys().find(|k| k.kid() == token.kid()) {
        Some(k) => k,
        None => return authorization("checkout_jwt is not signed by a key of this merchant"),
    };
    match token.verify(key.verifying_key()) {
        Ok(_) => scope(
            "the checkout mandate authorizes another checkout, or this checkout in another \
             state: read the checkout and sign again",
        ),
        Err(_) => authorization("checkout_jwt does not verify under the merchant's key"),
    }
}

fn evaluate_checkout(c: &CheckoutConstraint, view: &CheckoutView<'_>) -> Result<()> {
    match c {
        CheckoutConstraint::AllowedMerchants { allowed } => {
            if allowed.is_empty() {
                return Err(scope("checkout.allowed_merchants reveals no merchant"));
            }
            if !allowed.iter().any(|m| !m.id.is_empty() && m.id == view.merchant.id) {
                return Err(scope("checkout.allowed_merchants does not name this merchant"));
            }
            Ok(())
        }
        CheckoutConstraint::LineItems { items } => line_items_match(items, view.checkout),
    }
}

/// `checkout.line_items` as the maximum flow the AP2 spec describes: every
/// requirement gets its quantity from items it accepts, and every unit in
/// the checkout serves exactly one requirement.
fn line_items_match(requirements: &[LineItemRequirement], checkout: &Value) -> Result<()> {
    let lines = checkout
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::internal("the checkout has no line_items"))?;
    let mut items: Vec<(&str, u64)> = Vec::new();
    for line in lines {
        let id = line.pointer("/item/id").and_then(Value::as_str);
        let quantity = line.get("quantity").and_then(Value::as_u64);
        let (Some(id), Some(quantity)) = (id, quantity) else {
            return Err(Error::internal("a checkout line without item id or quantity"));
        };
        match items.iter_mut().find(|(i, _)| *i == id) {
            Some((_, q)) => *q = q.saturating_add(quantity),
            None => items.push((id, quantity)),
        }
    }
    if items.is_empty() {
        return Err(scope("an empty checkout does not satisfy checkout.line_items"));
    }
    let wanted: u64 = requirements.iter().map(|r| u64::from(r.quantity)).sum();
    let present: u64 = items.iter().map(|(_, q)| *q).sum();
    if wanted != present {
        return Err(scope(format!(
            "checkout.line_items asks for {wanted} units; the checkout has {present}"
        )));
    }
    // Nodes: 0 source, 1..=R requirements, then items, then the sink.
    let r = requirements.len();
    let sink = 1 + r + items.len();
    let mut graph = Flow::new(sink + 1);
    for (i, req) in requirements.iter().enumerate() {
        graph.edge(0, 1 + i, u64::from(req.quantity));
        for (j, (id, _)) in items.iter().enumerate() {
            if req.acceptable_items.iter().any(|a| a.id == *id) {
                graph.edge(1 + i, 1 + r + j, u64::MAX);
            }
        }
    }
    for (j, (_, q)) in items.iter().enumerate() {
        graph.edge(1 + r + j, sink, *q);
    }
    if graph.max_flow(0, sink) != wanted {
        return Err(scope("the checkout's items do not match the mandate's checkout.line_items"));
    }
    Ok(())
}

/// Edmonds–Karp on an adjacency matrix: the graphs here have at most a few
/// hundred nodes (requirements plus distinct items).
struct Flow {
    capacity: Vec<Vec<u64>>,
}

impl Flow {
    fn new(nodes: usize) -> Self {
        Self { capacity: vec![vec![0; nodes]; nodes] }
    }

    fn edge(&mut self, from: usize, to: usize, capacity: u64) {
        self.capacity[from][to] = self.capacity[from][to].saturating_add(capacity);
    }

    fn max_flow(&mut self, source: usize, sink: usize) -> u64 {
        let n = self.capacity.len();
        let mut total = 0u64;
        loop {
            let mut parent = vec![usize::MAX; n];
            parent[source] = source;
            let mut queue = std::collections::VecDeque::from([source]);
            while let Some(u) = queue.pop_front() {
                for (v, &capacity) in self.capacity[u].iter().enumerate() {
                    if parent[v] == usize::MAX && capacity > 0 {
                        parent[v] = u;
                        queue.push_back(v);
                    }
                }
            }
            if parent[sink] == usize::MAX {
                return total;
            }
            let mut bottleneck = u64::MAX;
            let mut v = sink;
            while v != source {
                let u = parent[v];
                bottleneck = bottleneck.min(self.capacity[u][v]);
                v = u;
            }
            let mut v = sink;
            while v != source {
                let u = parent[v];
                self.capacity[u][v] -= bottleneck;
                self.capacity[v][u] = self.capacity[v][u].saturating_add(bottleneck);
                v = u;
            }
            total = total.saturating_add(bottleneck);
        }
    }
}

struct Recurrence {
    open_jwt_hash: String,
    frequency: Frequency,
    max_occurrences: Option<u32>,
}

struct CheckedPayment {
    closed_jwt_hash: String,
    instrument: PaymentInstrument,
    amount: Money,
    recurrence: Vec<Recurrence>,
    budgets: Vec<BudgetLimit>,
}

fn same_url(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    norm(a) == norm(b)
}

/// Whether `payee` is this merchant: the same id and name (what the user
/// saw when consenting) and, when given, the same website.
fn is_this_merchant(payee: &Merchant, merchant: &Merchant) -> bool {
    payee.id == merchant.id
        && payee.name == merchant.name
        && match (&payee.website, &merchant.website) {
            (Some(a), Some(b)) => same_url(a, b),
            (Some(_), None) => false,
            (None, _) => true,
        }
}

fn check_payment_chain(
    chain: &VerifiedChain,
    checkout: &CheckedCheckout,
    view: &CheckoutView<'_>,
    now: OffsetDateTime,
    policy: ChainPolicy,
) -> Result<CheckedPayment> {
    let what = "payment mandate";
    let (closed_hop, open) =
        chain.hops.split_last().ok_or_else(|| malformed("no payment mandate"))?;
    vct(closed_hop, open.len(), VCT_PAYMENT, what)?;
    check_withheld(closed_hop, &[], &[], what)?;
    let closed: PaymentMandate = read(closed_hop, "payment mandate")?;
    if closed.transaction_id != view.authorization.checkout_hash {
        return Err(scope("the payment mandate pays for another checkout (transaction_id)"));
    }
    let amount = closed.payment_amount.to_money()?;
    if amount != view.total {
        return Err(scope(format!(
            "the payment mandate authorizes {amount}; the checkout total is {}",
            view.total
        )));
    }
    if !is_this_merchant(&closed.payee, view.merchant) {
        return Err(scope("the payment mandate pays another payee"));
    }
    let instrument = &closed.payment_instrument;
    if instrument.id.is_empty()
        || instrument.id.len() > MAX_INSTRUMENT_ID
        || instrument.kind.is_empty()
    {
        return Err(malformed(format!(
            "payment_instrument needs an id of 1 to {MAX_INSTRUMENT_ID} bytes and a type"
        )));
    }
    if let Some(date) = &closed.execution_date {
        let at = parse_instant(date, false)?;
        if at > now + policy.skew.get() {
            return Err(scope("the payment is scheduled for later; this merchant charges at once"));
        }
    }

    let mut recurrence = Vec::new();
    let mut budgets = Vec::new();
    for (index, hop) in open.iter().enumerate() {
        vct(hop, index, VCT_PAYMENT_OPEN, what)?;
        let mandate: OpenPaymentMandate = read(hop, "open payment mandate")?;
        bounded(&mandate.constraints, MAX_CONSTRAINTS, "constraints")?;
        check_withheld(
            hop,
            &mandate.constraints,
            &["payment.allowed_payees", "payment.allowed_payment_instruments"],
            what,
        )?;
        check_preset(&mandate, &closed)?;
        let constraints = mandate
            .constraints
            .iter()
            .enumerate()
            .map(|(i, c)| PaymentConstraint::parse(c, i))
            .collect::<Result<Vec<_>>>()?;
        if !constraints.iter().any(|c| matches!(c, PaymentConstraint::Reference { .. })) {
            return Err(malformed("an open payment mandate needs a payment.reference constraint"));
        }
        for c in &constraints {
            match c {
                PaymentConstraint::AgentRecurrence { frequency, max_occurrences } => {
                    recurrence.push(Recurrence {
                        open_jwt_hash: hop.jwt_hash.clone(),
                        frequency: *frequency,
                        max_occurrences: *max_occurrences,
                    });
                }
                PaymentConstraint::Budget { max } => {
                    let limit = BudgetLimit { open_mandate: hop.jwt_hash.clone(), max: *max };
                    // The first use spends from a full budget.
                    check_budget(&limit, Money::zero(max.currency()), amount)?;
                    budgets.push(limit);
                }
                other => evaluate_payment(other, &closed, amount, checkout, now)?,
            }
        }
    }
    Ok(CheckedPayment {
        closed_jwt_hash: closed_hop.jwt_hash.clone(),
        instrument: closed.payment_instrument.clone(),
        amount,
        recurrence,
        budgets,
    })
}

/// A claim the user pre-set in an open mandate binds the closed one.
fn check_preset(open: &OpenPaymentMandate, closed: &PaymentMandate) -> Result<()> {
    let differs =
        |what: &str| Err(scope(format!("the payment mandate changes the pre-set {what}")));
    if open.payee.as_ref().is_some_and(|p| p.id.is_empty() || p.id != closed.payee.id) {
        return differs("payee");
    }
    if open.payment_amount.as_ref().is_some_and(|a| *a != closed.payment_amount) {
        return differs("payment_amount");
    }
    if open.payment_instrument.as_ref().is_some_and(|i| *i != closed.payment_instrument) {
        return differs("payment_instrument");
    }
    if open.pisp.is_some() && open.pisp != closed.pisp {
        return differs("pisp");
    }
    if open.execution_date.is_some() && open.execution_date != closed.execution_date {
        return differs("execution_date");
    }
    Ok(())
}

fn evaluate_payment(
    c: &PaymentConstraint,
    closed: &PaymentMandate,
    amount: Money,
    checkout: &CheckedCheckout,
    now: OffsetDateTime,
) -> Result<()> {
    match c {
        PaymentConstraint::AmountRange { currency, max, min } => {
            if amount.currency().code() != currency {
                return Err(scope(format!("payment.amount_range is in {}", truncate(currency))));
            }
            if amount.minor() > *max || min.is_some_and(|m| amount.minor() < m) {
                return Err(scope(format!(
                    "{amount} is outside the mandate's payment.amount_range"
                )));
            }
        }
        PaymentConstraint::AllowedPayees { allowed } => {
            if !allowed.iter().any(|m| !m.id.is_empty() && m.id == closed.payee.id) {
                return Err(scope("payment.allowed_payees does not name this payee"));
            }
        }
        PaymentConstraint::AllowedPaymentInstruments { allowed } => {
            let i = &closed.payment_instrument;
            if !allowed.iter().any(|a| a.id == i.id && a.kind == i.kind) {
                return Err(scope(
                    "payment.allowed_payment_instruments does not allow this instrument",
                ));
            }
        }
        PaymentConstraint::AllowedPisps { allowed } => {
            let Some(pisp) = &closed.pisp else {
                return Err(scope("payment.allowed_pisps needs a pisp on the payment mandate"));
            };
            if !allowed.contains(pisp) {
                return Err(scope("payment.allowed_pisps does not allow this pisp"));
            }
        }
        PaymentConstraint::ExecutionDate { not_before, not_after } => {
            // Execution is now; an earlier execution_date was refused above.
            if let Some(b) = not_before {
                if now < parse_instant(b, false)? {
                    return Err(scope("payment.execution_date: too early"));
                }
            }
            if let Some(a) = not_after {
                if now > parse_instant(a, true)? {
                    return Err(scope("payment.execution_date: too late"));
                }
            }
        }
        PaymentConstraint::Reference { conditional_transaction_id } => {
            if !checkout.open_hashes.iter().any(|h| h == conditional_transaction_id) {
                return Err(scope(
                    "payment.reference names an open checkout mandate this checkout was not \
                     made under",
                ));
            }
        }
        // Applied by the caller of this function.
        PaymentConstraint::AgentRecurrence { .. } | PaymentConstraint::Budget { .. } => {}
    }
    Ok(())
}

/// An ISO 8601 date (`2026-03-31`, the start of that day in UTC, or its
/// last second when `end_of_day`) or an RFC 3339 instant.
fn parse_instant(text: &str, end_of_day: bool) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date = Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map_err(|_| malformed(format!("{:?} is not an ISO 8601 date", truncate(text))))?;
    let time = if end_of_day { Time::from_hms(23, 59, 59) } else { Ok(Time::MIDNIGHT) };
    let time = time.map_err(Error::internal)?;
    Ok(date.with_time(time).assume_utc())
}

fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Building v0.2 mandates: the agent's side, for tools, tests, the
/// documentation's example and benches. The verifier never uses it.
/// Salts come from the caller's random source.
pub mod issue {
    use super::*;
    use crate::ap2::sdjwt::issue::{conceal_element, conceal_member, salt, sign_sd_jwt};
    use rand_core::CryptoRngCore;

    /// Makes a mandate selectively disclosable the way the v0.2 schemas
    /// annotate it: `checkout_jwt` as a disclosable member, the elements of
    /// `allowed` and `acceptable_items` one by one, and the mandate itself
    /// as the element of `delegate_payload`. Returns the placeholder to put
    /// in `delegate_payload` and every disclosure, innermost first.
    pub fn conceal_mandate(
        mandate: &Value,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Value, Vec<String>)> {
        let Value::Object(mut m) = mandate.clone() else {
            return Err(Error::invalid("a mandate is a JSON object"));
        };
        let mut disclosures = Vec::new();
        if let Some(Value::Array(constraints)) = m.get_mut("constraints") {
            for c in constraints.iter_mut() {
                let kind = c.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
                if kind.ends_with(".allowed_merchants")
                    || kind == "payment.allowed_payees"
                    || kind == "payment.allowed_payment_instruments"
                {
                    if let Some(Value::Array(allowed)) = c.get_mut("allowed") {
                        conceal_all(allowed, &mut disclosures, rng)?;
                    }
                }
                if let Some(Value::Array(items)) = c.get_mut("items") {
                    for item in items.iter_mut() {
                        if let Some(Value::Array(acceptable)) = item.get_mut("acceptable_items") {
                            conceal_all(acceptable, &mut disclosures, rng)?;
                        }
                    }
                }
            }
        }
        if m.contains_key("checkout_jwt") {
            disclosures.push(conceal_member(&mut m, "checkout_jwt", &salt(rng))?);
        }
        let (placeholder, outer) = conceal_element(&Value::Object(m), &salt(rng))?;
        disclosures.push(outer);
        Ok((placeholder, disclosures))
    }

    fn conceal_all(
        items: &mut [Value],
        disclosures: &mut Vec<String>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<()> {
        for item in items.iter_mut() {
            let (placeholder, d) = conceal_element(item, &salt(rng))?;
            *item = placeholder;
            disclosures.push(d);
        }
        Ok(())
    }

    /// Signs one SD-JWT of a chain carrying `mandate`: a root (`typ` a
    /// root type, `claims` such as `iat`/`exp`) or a hop (`typ`
    /// `kb+sd-jwt[+kb]`, `claims` with `iat`, `aud`, `nonce`, `sd_hash`).
    /// Returns `jwt~disclosures~`.
    pub fn sign_hop(
        signer: &dyn Es256Signer,
        typ: &str,
        mandate: &Value,
        claims: &Value,
        rng: &mut impl CryptoRngCore,
    ) -> Result<String> {
        let (placeholder, disclosures) = conceal_mandate(mandate, rng)?;
        let mut payload = match claims {
            Value::Object(c) => c.clone(),
            _ => return Err(Error::invalid("hop claims are a JSON object")),
        };
        payload.insert("delegate_payload".into(), Value::Array(vec![placeholder]));
        payload.insert("_sd_alg".into(), Value::String(sdjwt::SD_ALG.into()));
        sign_sd_jwt(signer, typ, &Value::Object(payload), &disclosures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn reqs(spec: &[(&[&str], u32)]) -> Vec<LineItemRequirement> {
        spec.iter()
            .enumerate()
            .map(|(i, (ids, q))| LineItemRequirement {
                id: format!("r{i}"),
                acceptable_items: ids
                    .iter()
                    .map(|id| AcceptableItem { id: (*id).into(), title: "t".into() })
                    .collect(),
                quantity: *q,
            })
            .collect()
    }

    fn checkout(lines: &[(&str, u64)]) -> Value {
        json!({"line_items": lines.iter().map(|(id, q)| json!({"item": {"id": id}, "quantity": q}))
            .collect::<Vec<_>>()})
    }

    /// The AP2 spec's own example (shoes and socks) and the cases around
    /// it, including ones a greedy matcher gets wrong.
    #[test]
    fn line_items_are_matched_as_a_flow() {
        let shoes_socks: &[(&[&str], u32)] = &[(&["red", "blue"], 1), (&["socks"], 1)];
        type Case<'a> = (&'a str, &'a [(&'a [&'a str], u32)], Vec<(&'a str, u64)>, bool);
        let cases: Vec<Case> = vec![
            ("red and socks", shoes_socks, vec![("red", 1), ("socks", 1)], true),
            ("blue and socks", shoes_socks, vec![("blue", 1), ("socks", 1)], true),
            ("red and blue", shoes_socks, vec![("red", 1), ("blue", 1)], false),
            ("red only", shoes_socks, vec![("red", 1)], false),
            ("socks only", shoes_socks, vec![("socks", 1)], false),
            ("an extra item", shoes_socks, vec![("red", 1), ("socks", 1), ("hat", 1)], false),
            ("two socks", shoes_socks, vec![("red", 1), ("socks", 2)], false),
            ("greedy would fail", &[(&["a", "b"], 1), (&["a"], 1)], vec![("b", 1), ("a", 1)], true),
            ("quantities split", &[(&["a"], 3)], vec![("a", 2), ("a", 1)], true),
            ("one line for two requirements", &[(&["a"], 1), (&["a"], 2)], vec![("a", 3)], true),
            ("nothing accepts it", &[(&["a"], 1)], vec![("z", 1)], false),
        ];
        for (name, spec, lines, ok) in cases {
            let got = line_items_match(&reqs(spec), &checkout(&lines));
            assert_eq!(got.is_ok(), ok, "{name}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code(), ErrorCode::MandateScopeMismatch, "{name}");
            }
        }
    }

    #[test]
    fn constraints_parse_strictly() {
        let ok_payment = [
            json!({"type": "payment.amount_range", "currency": "USD", "max": 5000, "min": 100}),
            json!({"type": "payment.allowed_payees", "allowed": [{"id": "m", "name": "M"}]}),
            json!({"type": "payment.allowed_payment_instruments", "allowed": [{"id": "i", "type": "card"}]}),
            json!({"type": "payment.allowed_pisps", "allowed": [{"legal_name": "L", "brand_name": "B", "domain_name": "d"}]}),
            json!({"type": "payment.budget", "max": 1000.5, "currency": "USD"}),
            json!({"type": "payment.execution_date", "not_before": "2026-03-01", "not_after": "2026-04-30T23:59:59Z"}),
            json!({"type": "payment.reference", "conditional_transaction_id": "h"}),
            json!({"type": "payment.agent_recurrence", "frequency": "MONTHLY", "max_occurrences": 12}),
        ];
        for c in ok_payment {
            PaymentConstraint::parse(&c, 0).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        let bad_payment = [
            json!({"type": "payment.unknown_limit", "max": 1}),
            json!({"type": "payment.amount_range", "currency": "USD", "max": 5000, "per_item": 1}),
            json!({"type": "payment.amount_range", "currency": "USD", "max": 10.5}),
            json!({"type": "payment.amount_range", "currency": "USD", "max": 10, "min": 20}),
            json!({"type": "payment.budget", "max": 10.005, "currency": "USD"}),
            json!({"type": "payment.budget", "max": 1e300, "currency": "USD"}),
            json!({"type": "payment.budget", "max": -1, "currency": "USD"}),
            json!({"type": "payment.budget", "max": 1, "currency": "usd"}),
            json!({"type": "payment.agent_recurrence", "frequency": "HOURLY"}),
            json!({"type": "payment.agent_recurrence", "frequency": "DAILY", "max_occurrences": 0}),
            json!({"type": "payment.agent_recurrence", "frequency": "DAILY", "max_occurrences": 100000}),
            json!({"type": "payment.execution_date", "not_before": "next tuesday"}),
            json!({"type": 7}),
            json!(["payment.reference"]),
        ];
        for c in bad_payment {
            let err = PaymentConstraint::parse(&c, 0).unwrap_err();
            assert_eq!(err.code(), ErrorCode::MandateMalformed, "{c}");
        }
        for (c, ok) in [
            (
                json!({"type": "checkout.allowed_merchants", "allowed": [{"id": "m", "name": "M"}]}),
                true,
            ),
            (
                json!({"type": "checkout.line_items", "items": [{"id": "r", "acceptable_items": [{"id": "a", "title": "A"}], "quantity": 1}]}),
                true,
            ),
            (json!({"type": "checkout.line_items", "items": []}), false),
            (
                json!({"type": "checkout.line_items", "items": [{"id": "r", "acceptable_items": [], "quantity": 0}]}),
                false,
            ),
            (json!({"type": "checkout.max_items", "max": 3}), false),
        ] {
            assert_eq!(CheckoutConstraint::parse(&c, 0).is_ok(), ok, "{c}");
        }
    }

    #[test]
    fn budgets_convert_exactly_and_accumulate() {
        let cases = [
            ("1000", "USD", Some(100_000)),
            ("1000.5", "USD", Some(100_050)),
            ("0.01", "USD", Some(1)),
            ("1500", "JPY", Some(1500)),
            ("1500.5", "JPY", None),
            ("12.345", "USD", None),
        ];
        for (text, currency, want) in cases {
            let n: serde_json::Number = serde_json::from_str(text).unwrap();
            let got = major_to_money(&n, currency).ok().map(|m| m.minor());
            assert_eq!(got, want, "{text} {currency}");
        }
        let usd = |m| Money::new(m, Currency::usd());
        let limit = BudgetLimit { open_mandate: "h".into(), max: usd(10_000) };
        assert!(check_budget(&limit, usd(6_000), usd(4_000)).is_ok());
        let err = check_budget(&limit, usd(6_001), usd(4_000)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateScopeMismatch);
    }

    #[test]
    fn periods_split_time_as_named() {
        let t = datetime!(2026-03-04 10:00 UTC); // a Wednesday
        let same_day = datetime!(2026-03-04 23:59 UTC);
        let next_monday = datetime!(2026-03-09 00:00 UTC);
        let cases = [
            (Frequency::Daily, same_day, true),
            (Frequency::Daily, datetime!(2026-03-05 00:00 UTC), false),
            (Frequency::Weekly, datetime!(2026-03-08 23:59 UTC), true),
            (Frequency::Weekly, next_monday, false),
            (Frequency::Monthly, datetime!(2026-03-31 23:59 UTC), true),
            (Frequency::Monthly, datetime!(2026-04-01 00:00 UTC), false),
            (Frequency::Quarterly, datetime!(2026-01-01 00:00 UTC), true),
            (Frequency::Quarterly, datetime!(2026-04-01 00:00 UTC), false),
            (Frequency::Annually, datetime!(2026-12-31 23:59 UTC), true),
            (Frequency::Annually, datetime!(2027-01-01 00:00 UTC), false),
        ];
        for (f, other, same) in cases {
            assert_eq!(period_key(f, t) == period_key(f, other), same, "{f:?} {other}");
        }
        assert_eq!(period_key(Frequency::OnDemand, t), None);
        // Fortnights start on Mondays and last fourteen days.
        let start = (0..14).map(|d| next_monday - time::Duration::days(d)).find(|d| {
            period_key(Frequency::Biweekly, *d) != period_key(Frequency::Biweekly, next_monday)
        });
        let fortnight_start = start
            .map(|d| d + time::Duration::days(1))
            .unwrap_or(next_monday - time::Duration::days(13));
        assert_eq!(fortnight_start.weekday(), time::Weekday::Monday);
        assert_eq!(
            period_key(Frequency::Biweekly, fortnight_start),
            period_key(Frequency::Biweekly, fortnight_start + time::Duration::days(13))
        );
        assert_ne!(
            period_key(Frequency::Biweekly, fortnight_start),
            period_key(Frequency::Biweekly, fortnight_start + time::Duration::days(14))
        );
    }

    #[test]
    fn merchant_authorization_round_trips_and_binds_the_checkout() {
        let d = jws::b64url(&[3u8; 32]);
        let key = crate::ap2::PrivateKey::from_text(
            &json!({"kty":"EC","crv":"P-256","d": d}).to_string(),
        )
        .unwrap();
        let ring = crate::ap2::KeyRing::new(key);
        let checkout = json!({"id": "chk_1", "totals": [{"type": "total", "amount": 100}]});
        let auth = authorize_checkout(ring.signer(), &checkout).unwrap();
        assert!(auth.detached.contains(".."));
        assert_eq!(auth.checkout_hash, sdjwt::hash(&auth.checkout_jwt));
        let now = datetime!(2026-03-01 12:00 UTC);
        let mut response = checkout.clone();
        response["ap2"] = json!({"merchant_authorization": auth.detached});
        verify_merchant_authorization(&response, ring.public_keys(), now).unwrap();
        let mut changed = response.clone();
        changed["totals"][0]["amount"] = json!(99);
        let err = verify_merchant_authorization(&changed, ring.public_keys(), now).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MerchantAuthorizationInvalid);
        let err = verify_merchant_authorization(&checkout, ring.public_keys(), now).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MerchantAuthorizationMissing);
        assert_eq!(checkout_jwt_of(&response).unwrap(), auth, "the platform rebuilds the JWT");
        assert!(authorize_checkout(ring.signer(), &response).is_err(), "ap2 is never signed");
    }
}
