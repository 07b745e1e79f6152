//! The three AP2 v0.1 mandates as claim sets, and how to sign them.
//!
//! Each mandate is an ES256 compact JWS with the header
//! `{"alg":"ES256","kid":…,"typ":"mandate+jwt"}` and a JSON payload whose
//! member names follow the AP2 v0.1 models (snake_case). Amounts are
//! `{"amount": <integer minor units>, "currency": "USD"}`, never decimals.
//!
//! - The **intent mandate** is signed by the user (or the user's agent
//!   platform) and bounds what may be bought: `max_amount`, optionally
//!   `merchants` and `skus`, and optionally a `cnf.jwk` naming the agent key
//!   that may sign the payment mandate for the user.
//! - The **cart mandate** is signed by the merchant's active key. It binds the
//!   checkout id, the cart (`contents`, hashed as `cart_hash`) and the intent
//!   (`intent_hash`).
//! - The **payment mandate** is signed by the intent's signer or its `cnf`
//!   key, and binds the exact amount and the cart mandate (`cart_mandate_hash`).
//!
//! Hashes are base64url(SHA-256(…)): of the JCS (RFC 8785) form of `contents`
//! for `cart_hash`, and of the ASCII of the compact token for the two mandate
//! links. Claim sets refuse unknown members: a constraint the gateway does not
//! understand must fail, not be ignored. This module signs and describes; the
//! checks live in `ap2::verify`. The exact wire format is in
//! `docs/mandates.md`.

use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::jws::{self, malformed, Es256Signer};
use crate::domain::{CheckoutId, Currency, Error, ErrorCode, Money, Result, Sku};

/// The `typ` header of every mandate.
pub const MANDATE_TYP: &str = "mandate+jwt";

/// Longest `jti` or mandate id accepted; they become store keys.
pub const MAX_ID_LEN: usize = 256;

/// base64url(SHA-256(ASCII of a compact token)): how one mandate names another.
pub fn token_hash(token: &str) -> String {
    jws::b64url(&Sha256::digest(token.as_bytes()))
}

/// base64url(SHA-256(JCS(value))): the `cart_hash` of cart contents.
pub fn jcs_hash(value: &impl Serialize) -> Result<String> {
    Ok(jws::b64url(&Sha256::digest(jws::jcs(value)?)))
}

/// A fresh 128-bit random id, base64url.
pub fn new_id(rng: &mut impl CryptoRngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    jws::b64url(&bytes)
}

/// An amount on the wire: integer minor units and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    pub amount: i64,
    pub currency: String,
}

impl Amount {
    /// The amount as [`Money`]. The currency must be written in its canonical
    /// upper-case form, so that one currency has one spelling in signed data.
    pub fn to_money(&self) -> Result<Money> {
        let currency =
            Currency::parse(&self.currency)
                .ok()
                .filter(|c| c.code() == self.currency)
                .ok_or_else(|| malformed(format!("{:?} is not an ISO 4217 code", self.currency)))?;
        Ok(Money::new(self.amount, currency))
    }
}

impl From<Money> for Amount {
    fn from(money: Money) -> Self {
        Self { amount: money.minor(), currency: money.currency().code().to_owned() }
    }
}

fn default_true() -> bool {
    true
}

/// `cnf` (RFC 7800): the key confirmed to act for the intent's signer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// A public JWK (EC P-256). Its `kid`, or its thumbprint when it has
    /// none, is the `kid` the payment mandate must carry.
    pub jwk: Value,
}

/// Claims of the intent mandate (user or agent platform key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentClaims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub max_amount: Amount,
    pub natural_language_description: String,
    /// Merchants allowed, by base URL or name; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchants: Option<Vec<String>>,
    /// SKUs allowed; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
    #[serde(default)]
    pub requires_refundability: bool,
    /// AP2: when true the user confirms the cart, so the payment mandate must
    /// be signed by the user's own key, not by a delegated `cnf` key.
    #[serde(default = "default_true")]
    pub user_cart_confirmation_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl IntentClaims {
    /// An intent for up to `max_amount`, valid for `ttl` from `now`, with no
    /// merchant or SKU restriction and user confirmation required.
    pub fn new(
        iss: impl Into<String>,
        max_amount: Money,
        description: impl Into<String>,
        now: OffsetDateTime,
        ttl: Duration,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let iat = now.unix_timestamp();
        Self {
            iss: iss.into(),
            iat,
            exp: iat.saturating_add(ttl.whole_seconds()),
            jti: new_id(rng),
            max_amount: max_amount.into(),
            natural_language_description: description.into(),
            merchants: None,
            skus: None,
            requires_refundability: false,
            user_cart_confirmation_required: true,
            cnf: None,
        }
    }

    /// Signs the intent with the user's (or platform's) key.
    pub fn sign(&self, signer: &dyn Es256Signer) -> Result<String> {
        jws::sign_compact(signer, Some(MANDATE_TYP), self)
    }
}

/// AP2 `CartContents`, with integer amounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartContents {
    pub id: String,
    pub user_cart_confirmation_required: bool,
    pub payment_request: PaymentRequest,
    /// RFC 3339 instant; the signer sets it to the mandate's `exp`.
    pub cart_expiry: String,
    pub merchant_name: String,
}

/// W3C `PaymentRequest` as AP2 v0.1 carries it (the parts the chain uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub method_data: Vec<PaymentMethodData>,
    pub details: PaymentDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodData {
    pub supported_methods: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentDetails {
    pub id: String,
    pub display_items: Vec<DisplayItem>,
    pub total: PaymentTotal,
}

/// One line of the cart. Product lines carry `sku` and `quantity` and their
/// `amount` is the line total; lines without them are adjustments (shipping,
/// tax, discounts, which may be negative). The items sum to the total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayItem {
    pub label: String,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentTotal {
    pub label: String,
    pub amount: Amount,
}

/// A product line of a cart, checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub label: String,
    pub sku: Sku,
    pub quantity: u32,
    pub line_total: Money,
}

impl CartLine {
    /// The unit price, when the line total divides evenly by the quantity
    /// (a multi-buy price may not).
    pub fn unit_amount(&self) -> Option<Money> {
        let q = i64::from(self.quantity);
        (self.line_total.minor() % q == 0)
            .then(|| Money::new(self.line_total.minor() / q, self.line_total.currency()))
    }
}

/// The typed reading of cart contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartSummary {
    pub currency: Currency,
    pub total: Money,
    pub lines: Vec<CartLine>,
}

impl CartContents {
    /// Checks the cart is coherent and reads it: one currency, product lines
    /// with a valid SKU and a positive quantity, non-negative product and
    /// total amounts, and items that add up to the total. Both the signer
    /// and the verifier use this, so the gateway cannot sign a cart it would
    /// later refuse.
    pub fn summary(&self) -> Result<CartSummary> {
        let details = &self.payment_request.details;
        let total = details.total.amount.to_money()?;
        let currency = total.currency();
        if total.is_negative() {
            return Err(malformed("cart total is negative"));
        }
        if details.display_items.is_empty() {
            return Err(malformed("cart has no items"));
        }
        let mut lines = Vec::new();
        let mut sum = Money::zero(currency);
        for item in &details.display_items {
            let amount = item.amount.to_money()?;
            if amount.currency() != currency {
                return Err(Error::new(
                    ErrorCode::CurrencyMismatch,
                    format!("cart mixes {} and {currency}", amount.currency()),
                ));
            }
            sum = sum.checked_add(amount).map_err(|_| malformed("cart items overflow"))?;
            match (&item.sku, item.quantity) {
                (None, None) => {}
                (Some(sku), Some(quantity)) if quantity > 0 => {
                    if amount.is_negative() {
                        return Err(malformed("a product line has a negative amount"));
                    }
                    let sku = Sku::parse(sku).map_err(|e| malformed(e.message()))?;
                    lines.push(CartLine {
                        label: item.label.clone(),
                        sku,
                        quantity,
                        line_total: amount,
                    });
                }
                _ => return Err(malformed("a product line needs a sku and a quantity above 0")),
            }
        }
        if lines.is_empty() {
            return Err(malformed("cart has no product line"));
        }
        if sum != total {
            return Err(malformed(format!("cart items add up to {sum}, not the total {total}")));
        }
        Ok(CartSummary { currency, total, lines })
    }
}

/// Claims of the cart mandate (merchant key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartClaims {
    /// The merchant's base URL.
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub checkout_id: String,
    pub contents: CartContents,
    pub cart_hash: String,
    pub intent_hash: String,
}

/// What the merchant side needs to sign a cart mandate.
#[derive(Debug, Clone)]
pub struct CartMandateRequest<'a> {
    /// The merchant's base URL, written as `iss`.
    pub merchant_base_url: &'a str,
    pub checkout_id: &'a CheckoutId,
    /// The cart; `cart_expiry` is overwritten with the mandate's expiry.
    pub contents: CartContents,
    /// The compact intent mandate this cart answers.
    pub intent_mandate: &'a str,
    /// Lifetime of the cart mandate; keep it short (minutes).
    pub ttl: Duration,
}

/// Builds and signs a cart mandate with the merchant's key (for the gateway,
/// `KeyRing::signer()`). Returns the compact token and its claims.
pub fn sign_cart_mandate(
    signer: &dyn Es256Signer,
    request: CartMandateRequest<'_>,
    now: OffsetDateTime,
    rng: &mut impl CryptoRngCore,
) -> Result<(String, CartClaims)> {
    if request.ttl <= Duration::ZERO {
        return Err(Error::invalid("cart mandate ttl must be positive"));
    }
    let exp_at = now
        .checked_add(request.ttl)
        .ok_or_else(|| Error::invalid("cart mandate ttl is too long"))?;
    let mut contents = request.contents;
    contents.cart_expiry = exp_at.format(&Rfc3339).map_err(Error::internal)?;
    contents.summary()?;
    let claims = CartClaims {
        iss: request.merchant_base_url.to_owned(),
        iat: now.unix_timestamp(),
        exp: exp_at.unix_timestamp(),
        jti: new_id(rng),
        checkout_id: request.checkout_id.as_str().to_owned(),
        cart_hash: jcs_hash(&contents)?,
        intent_hash: token_hash(request.intent_mandate),
        contents,
    };
    let token = jws::sign_compact(signer, Some(MANDATE_TYP), &claims)?;
    Ok((token, claims))
}

impl CartClaims {
    /// Reads a cart mandate's claims **without checking its signature**, for
    /// an agent building its own payment mandate. Never decide on it.
    pub fn peek_unverified(token: &str) -> Result<Self> {
        let unverified = jws::decode_compact(token, Some(MANDATE_TYP))?;
        jws::parse_claims(unverified.payload_unverified())
    }
}

/// Claims of the payment mandate (the intent's signer or its `cnf` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentClaims {
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub payment_mandate_contents: PaymentMandateContents,
    pub cart_mandate_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentMandateContents {
    pub payment_mandate_id: String,
    /// The checkout id.
    pub payment_details_id: String,
    pub payment_details_total: Amount,
    pub payment_response: PaymentResponse,
    /// The merchant being paid: its base URL or name.
    pub merchant_agent: String,
    /// RFC 3339 instant of the user's (or agent's) authorization.
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentResponse {
    pub method_name: String,
    pub details: PaymentResponseDetails,
}

/// The payment credential. Its `Debug` hides the token, which is as good as
/// money to whoever holds it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentResponseDetails {
    pub token: String,
}

impl fmt::Debug for PaymentResponseDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentResponseDetails").field("token", &"<redacted>").finish()
    }
}

impl PaymentClaims {
    /// A payment mandate paying exactly the cart of `cart_mandate`, whose
    /// claims are `cart`.
    pub fn for_cart(
        cart_mandate: &str,
        cart: &CartClaims,
        payment_token: impl Into<String>,
        method_name: impl Into<String>,
        now: OffsetDateTime,
        ttl: Duration,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let iat = now.unix_timestamp();
        Ok(Self {
            iat,
            exp: iat.saturating_add(ttl.whole_seconds()),
            jti: new_id(rng),
            payment_mandate_contents: PaymentMandateContents {
                payment_mandate_id: new_id(rng),
                payment_details_id: cart.checkout_id.clone(),
                payment_details_total: cart.contents.payment_request.details.total.amount.clone(),
                payment_response: PaymentResponse {
                    method_name: method_name.into(),
                    details: PaymentResponseDetails { token: payment_token.into() },
                },
                merchant_agent: cart.iss.clone(),
                timestamp: now.format(&Rfc3339).map_err(Error::internal)?,
            },
            cart_mandate_hash: token_hash(cart_mandate),
        })
    }

    /// Signs the payment mandate with the intent's signer or its `cnf` key.
    pub fn sign(&self, signer: &dyn Es256Signer) -> Result<String> {
        jws::sign_compact(signer, Some(MANDATE_TYP), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ap2::keys::PrivateKey;
    use serde_json::json;

    fn usd(minor: i64) -> Amount {
        Amount { amount: minor, currency: "USD".into() }
    }

    fn item(sku: Option<&str>, quantity: Option<u32>, minor: i64) -> DisplayItem {
        DisplayItem { label: "x".into(), amount: usd(minor), sku: sku.map(str::to_owned), quantity }
    }

    fn contents(items: Vec<DisplayItem>, total: Amount) -> CartContents {
        CartContents {
            id: "cart_1".into(),
            user_cart_confirmation_required: true,
            payment_request: PaymentRequest {
                method_data: vec![],
                details: PaymentDetails {
                    id: "d1".into(),
                    display_items: items,
                    total: PaymentTotal { label: "Total".into(), amount: total },
                },
            },
            cart_expiry: String::new(),
            merchant_name: "Shop".into(),
        }
    }

    #[test]
    fn cart_summary_table() {
        use ErrorCode::*;
        let eur = Amount { amount: 100, currency: "EUR".into() };
        let cases: Vec<(&str, CartContents, std::result::Result<i64, ErrorCode>)> = vec![
            ("one line", contents(vec![item(Some("A"), Some(2), 500)], usd(500)), Ok(500)),
            (
                "line plus shipping minus discount",
                contents(
                    vec![
                        item(Some("A"), Some(1), 500),
                        item(None, None, 300),
                        item(None, None, -100),
                    ],
                    usd(700),
                ),
                Ok(700),
            ),
            (
                "sum differs",
                contents(vec![item(Some("A"), Some(1), 500)], usd(501)),
                Err(MandateMalformed),
            ),
            ("no items", contents(vec![], usd(0)), Err(MandateMalformed)),
            (
                "only adjustments",
                contents(vec![item(None, None, 5)], usd(5)),
                Err(MandateMalformed),
            ),
            (
                "sku without quantity",
                contents(vec![item(Some("A"), None, 5)], usd(5)),
                Err(MandateMalformed),
            ),
            (
                "zero quantity",
                contents(vec![item(Some("A"), Some(0), 5)], usd(5)),
                Err(MandateMalformed),
            ),
            (
                "bad sku",
                contents(vec![item(Some("a b"), Some(1), 5)], usd(5)),
                Err(MandateMalformed),
            ),
            (
                "negative line",
                contents(vec![item(Some("A"), Some(1), -5)], usd(-5)),
                Err(MandateMalformed),
            ),
            (
                "lower-case currency",
                contents(
                    vec![item(Some("A"), Some(1), 5)],
                    Amount { amount: 5, currency: "usd".into() },
                ),
                Err(MandateMalformed),
            ),
            (
                "unknown currency",
                contents(
                    vec![item(Some("A"), Some(1), 5)],
                    Amount { amount: 5, currency: "ZZZ".into() },
                ),
                Err(MandateMalformed),
            ),
            (
                "mixed currencies",
                contents(vec![item(Some("A"), Some(1), 100)], eur),
                Err(CurrencyMismatch),
            ),
            (
                "overflow",
                contents(vec![item(Some("A"), Some(1), i64::MAX), item(None, None, 1)], usd(0)),
                Err(MandateMalformed),
            ),
        ];
        for (name, c, want) in cases {
            let got = c.summary().map(|s| s.total.minor()).map_err(|e| e.code());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn unit_amount_only_when_exact() {
        let line = |total, quantity| CartLine {
            label: "x".into(),
            sku: Sku::parse("A").unwrap(),
            quantity,
            line_total: Money::new(total, Currency::usd()),
        };
        assert_eq!(line(900, 3).unit_amount().map(|m| m.minor()), Some(300));
        assert_eq!(line(1000, 3).unit_amount(), None);
    }

    #[test]
    fn cart_signing_binds_contents_intent_and_checkout() {
        let key = PrivateKey::generate(&mut rand_core::OsRng);
        let now = time::macros::datetime!(2026-03-01 12:00 UTC);
        let checkout = CheckoutId::parse("chk_1").unwrap();
        let request = CartMandateRequest {
            merchant_base_url: "https://shop.example",
            checkout_id: &checkout,
            contents: contents(vec![item(Some("A"), Some(1), 500)], usd(500)),
            intent_mandate: "a.b.c",
            ttl: Duration::minutes(15),
        };
        let (token, claims) =
            sign_cart_mandate(&key, request.clone(), now, &mut rand_core::OsRng).unwrap();
        assert_eq!(claims.contents.cart_expiry, "2026-03-01T12:15:00Z");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.intent_hash, token_hash("a.b.c"));
        assert_eq!(claims.cart_hash, jcs_hash(&claims.contents).unwrap());
        assert_eq!(CartClaims::peek_unverified(&token).unwrap(), claims);
        // The signer refuses a cart the verifier would refuse.
        let mut bad = request;
        bad.contents = contents(vec![item(Some("A"), Some(1), 500)], usd(400));
        let err = sign_cart_mandate(&key, bad, now, &mut rand_core::OsRng).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateMalformed);
    }

    #[test]
    fn payment_token_is_redacted_in_debug() {
        let d = PaymentResponseDetails { token: "tok_secret".into() };
        assert!(!format!("{d:?}").contains("tok_secret"));
    }

    #[test]
    fn unknown_claims_are_refused() {
        let mut v = serde_json::to_value(IntentClaims::new(
            "u",
            Money::new(1, Currency::usd()),
            "d",
            OffsetDateTime::UNIX_EPOCH,
            Duration::hours(1),
            &mut rand_core::OsRng,
        ))
        .unwrap();
        assert!(jws::from_json_value::<IntentClaims>(v.clone()).is_ok());
        v["max_amount_per_day"] = json!(5);
        let err = jws::from_json_value::<IntentClaims>(v).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MandateMalformed);
    }
}
