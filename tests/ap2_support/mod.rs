//! Shared fixture for the AP2 integration tests: fixed keys, a default
//! chain, and helpers that tamper with tokens the way an attacker would.
#![allow(dead_code)]

use agentgate::ap2::jws::{self, Es256Signer};
use agentgate::ap2::mandates::{
    CartContents, DisplayItem, PaymentDetails, PaymentMethodData, PaymentRequest, PaymentTotal,
};
use agentgate::ap2::verify::MemoryReserver;
use agentgate::ap2::{
    reserve_mandate_ids, sign_cart_mandate, verify_chain, Amount, CartClaims, CartMandateRequest,
    ChainInput, IntentClaims, KeyRing, MerchantIdentity, PaymentClaims, PrivateKey, PublicKeySet,
    VerifiedChain, VerifyPolicy,
};
use agentgate::domain::{CheckoutId, Currency, Money, Result};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const USER: u8 = 1;
pub const AGENT: u8 = 2;
pub const MERCHANT: u8 = 3;
pub const OTHER: u8 = 4;
pub const OLD_MERCHANT: u8 = 5;

pub const USER_KID: &str = "user-1";
pub const MERCHANT_URL: &str = "https://shop.example";
pub const MERCHANT_NAME: &str = "Demo Shop";
pub const CHECKOUT: &str = "chk_0190aa55deadbeef";
pub const PAYMENT_TOKEN: &str = "tok_sandbox_visa";

/// A deterministic P-256 key: the scalar is `seed` repeated 32 times.
pub fn key(seed: u8) -> PrivateKey {
    let d = jws::b64url(&[seed; 32]);
    let key = PrivateKey::from_text(&json!({"kty":"EC","crv":"P-256","d": d}).to_string())
        .expect("fixed test scalar is valid");
    if seed == USER {
        key.with_kid(USER_KID).expect("valid kid")
    } else {
        key
    }
}

pub fn usd(minor: i64) -> Amount {
    Amount { amount: minor, currency: "USD".into() }
}

pub fn money(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

/// Two T-shirts at 15.00 and 5.00 shipping: 35.00.
pub fn contents() -> CartContents {
    CartContents {
        id: "cart_0190aa55".into(),
        user_cart_confirmation_required: true,
        payment_request: PaymentRequest {
            method_data: vec![PaymentMethodData {
                supported_methods: "CARD".into(),
                data: Some(json!({"network": ["visa", "mastercard"]})),
            }],
            details: PaymentDetails {
                id: "order_0190aa55".into(),
                display_items: vec![
                    DisplayItem {
                        label: "T-shirt, red, M".into(),
                        amount: usd(3000),
                        sku: Some("TSHIRT-RED-M".into()),
                        quantity: Some(2),
                    },
                    DisplayItem {
                        label: "Shipping".into(),
                        amount: usd(500),
                        sku: None,
                        quantity: None,
                    },
                ],
                total: PaymentTotal { label: "Total".into(), amount: usd(3500) },
            },
        },
        cart_expiry: String::new(),
        merchant_name: MERCHANT_NAME.into(),
    }
}

/// The knobs of a chain; [`Fx::spec`] gives the honest defaults.
pub struct Spec {
    pub intent: IntentClaims,
    pub intent_key: PrivateKey,
    pub contents: CartContents,
    pub cart_checkout: String,
    pub cart_ttl: Duration,
    pub cart_key: PrivateKey,
    pub payment_key: PrivateKey,
}

#[derive(Clone)]
pub struct Ctx {
    pub intent: String,
    pub cart: String,
    pub payment: String,
    pub user_keys: PublicKeySet,
    pub merchant_keys: PublicKeySet,
    pub checkout: CheckoutId,
    pub merchant_url: Option<String>,
    pub merchant_name: Option<String>,
    pub now: OffsetDateTime,
    /// Chains presented (and reserved) before this one, sharing its store.
    pub prior: Vec<Ctx>,
}

pub struct Fx {
    pub now: OffsetDateTime,
}

impl Default for Fx {
    fn default() -> Self {
        Self { now: datetime!(2026-03-01 12:00 UTC) }
    }
}

impl Fx {
    pub fn user_keys(&self) -> PublicKeySet {
        let mut set = PublicKeySet::new();
        set.insert(key(USER).public().clone(), None).expect("one key");
        set
    }

    pub fn merchant_ring(&self) -> KeyRing {
        KeyRing::new(key(MERCHANT))
    }

    pub fn spec(&self) -> Spec {
        let mut intent = IntentClaims::new(
            "https://agent.example",
            money(5000),
            "Two red T-shirts, size M, under $50",
            self.now - Duration::minutes(5),
            Duration::hours(1),
            &mut OsRng,
        );
        intent.user_cart_confirmation_required = true;
        Spec {
            intent,
            intent_key: key(USER),
            contents: contents(),
            cart_checkout: CHECKOUT.into(),
            cart_ttl: Duration::minutes(15),
            cart_key: key(MERCHANT),
            payment_key: key(USER),
        }
    }

    /// The honest chain.
    pub fn chain(&self) -> Ctx {
        self.build(self.spec(), |_| {})
    }

    pub fn build(&self, spec: Spec, edit_payment: impl FnOnce(&mut PaymentClaims)) -> Ctx {
        let intent = spec.intent.sign(&spec.intent_key).expect("sign intent");
        let (cart, cart_claims) = self.cart_for(
            &intent,
            spec.contents,
            &spec.cart_checkout,
            spec.cart_ttl,
            &spec.cart_key.with_thumbprint_kid(),
        );
        let mut payment = self.payment_claims(&cart, &cart_claims);
        edit_payment(&mut payment);
        let payment = payment.sign(&spec.payment_key).expect("sign payment");
        Ctx {
            intent,
            cart,
            payment,
            user_keys: self.user_keys(),
            merchant_keys: self.merchant_ring().public_keys().clone(),
            checkout: CheckoutId::parse(CHECKOUT).expect("checkout id"),
            merchant_url: Some(MERCHANT_URL.into()),
            merchant_name: Some(MERCHANT_NAME.into()),
            now: self.now,
            prior: Vec::new(),
        }
    }

    /// The merchant's cart mandate over `intent`, as the gateway signs it.
    pub fn cart_for(
        &self,
        intent: &str,
        contents: CartContents,
        checkout: &str,
        ttl: Duration,
        signer: &PrivateKey,
    ) -> (String, CartClaims) {
        let checkout = CheckoutId::parse(checkout).expect("checkout id");
        sign_cart_mandate(
            signer,
            CartMandateRequest {
                merchant_base_url: MERCHANT_URL,
                checkout_id: &checkout,
                contents,
                intent_mandate: intent,
                ttl,
            },
            self.now - Duration::minutes(2),
            &mut OsRng,
        )
        .expect("sign cart")
    }

    /// Honest payment claims for a cart mandate.
    pub fn payment_claims(&self, cart: &str, cart_claims: &CartClaims) -> PaymentClaims {
        PaymentClaims::for_cart(
            cart,
            cart_claims,
            PAYMENT_TOKEN,
            "CARD",
            self.now - Duration::minutes(1),
            Duration::minutes(10),
            &mut OsRng,
        )
        .expect("payment claims")
    }
}

impl Ctx {
    pub fn input(&self) -> ChainInput<'_> {
        ChainInput {
            intent_mandate: &self.intent,
            cart_mandate: &self.cart,
            payment_mandate: &self.payment,
            merchant_keys: &self.merchant_keys,
            user_keys: &self.user_keys,
            checkout_id: &self.checkout,
            merchant: MerchantIdentity {
                base_url: self.merchant_url.as_deref(),
                name: self.merchant_name.as_deref(),
            },
            now: self.now,
            policy: VerifyPolicy::default(),
        }
    }

    /// What the gateway does on complete: verify, then reserve the ids.
    pub async fn run(&self, reserver: &MemoryReserver) -> Result<VerifiedChain> {
        let chain = verify_chain(&self.input())?;
        reserve_mandate_ids(&chain, reserver).await?;
        Ok(chain)
    }

    /// Runs the prior chains (which must pass), then this one, on one store.
    pub async fn run_with_history(&self) -> Result<VerifiedChain> {
        let reserver = MemoryReserver::default();
        for (i, prior) in self.prior.iter().enumerate() {
            if let Err(e) = prior.run(&reserver).await {
                panic!("prior chain {i} should pass: {e}");
            }
        }
        self.run(&reserver).await
    }
}

pub fn segments(token: &str) -> (String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    let h = it.next().unwrap_or_default();
    let p = it.next().unwrap_or_default();
    let s = it.next().unwrap_or_default();
    (h, p, s)
}

pub fn header_of(token: &str) -> Value {
    let (h, _, _) = segments(token);
    serde_json::from_slice(&jws::b64url_decode(&h).expect("b64")).expect("json")
}

pub fn payload_of(token: &str) -> Value {
    let (_, p, _) = segments(token);
    serde_json::from_slice(&jws::b64url_decode(&p).expect("b64")).expect("json")
}

/// Re-assembles a token from a header, raw payload bytes and a signature
/// made by `signer` (or the given raw signature bytes).
pub fn assemble(header: &Value, payload: &[u8], sig: Sig<'_>) -> String {
    let input = format!("{}.{}", jws::b64url(header.to_string().as_bytes()), jws::b64url(payload));
    let sig = match sig {
        Sig::By(k) => k.sign_es256(input.as_bytes()).expect("sign").to_vec(),
        Sig::Raw(bytes) => bytes,
    };
    format!("{input}.{}", jws::b64url(&sig))
}

pub enum Sig<'a> {
    By(&'a PrivateKey),
    Raw(Vec<u8>),
}

/// The token with its header replaced and re-signed by `signer`.
pub fn reheader(token: &str, header: Value, signer: &PrivateKey) -> String {
    let (_, p, _) = segments(token);
    assemble(&header, &jws::b64url_decode(&p).expect("b64"), Sig::By(signer))
}

/// The token with its payload edited, re-signed by `signer` or, with
/// `None`, keeping the original (now wrong) signature.
pub fn edit_payload(
    token: &str,
    edit: impl FnOnce(&mut Value),
    signer: Option<&PrivateKey>,
) -> String {
    let (h, _, s) = segments(token);
    let mut payload = payload_of(token);
    edit(&mut payload);
    let body = jws::b64url(payload.to_string().as_bytes());
    match signer {
        Some(k) => {
            let input = format!("{h}.{body}");
            let sig = k.sign_es256(input.as_bytes()).expect("sign");
            format!("{input}.{}", jws::b64url(&sig))
        }
        None => format!("{h}.{body}.{s}"),
    }
}
