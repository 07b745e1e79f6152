//! Shared fixture for the AP2 v0.2 tests: fixed keys, the merchant's
//! signed checkout, an honest pair of mandates (an open mandate delegated
//! to the agent, then the agent's closed one, for both checkout and
//! payment), and the tools an attacker would use on them.
#![allow(dead_code)]

use agentgate::ap2::jws::{self, Es256Signer};
use agentgate::ap2::sdjwt::{self, ChainPolicy, TYP_HOP_CLOSED, TYP_HOP_OPEN};
use agentgate::ap2::v02::{
    self, issue, CheckoutView, MandateInput, Merchant, MerchantAuthorization, VerifiedMandates,
};
use agentgate::ap2::verify::MemoryReserver;
use agentgate::ap2::{KeyRing, PrivateKey, PublicKeySet};
use agentgate::domain::{Currency, Money, Result};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

pub const PLATFORM: u8 = 11;
pub const AGENT: u8 = 12;
pub const MERCHANT: u8 = 13;
pub const OTHER: u8 = 14;
pub const DELEGATE: u8 = 15;

pub const PLATFORM_KID: &str = "platform-1";
pub const MERCHANT_URL: &str = "https://shop.example";
pub const MERCHANT_NAME: &str = "Demo Shop";
pub const CHECKOUT_ID: &str = "chk_0190aa55b2c47e8f9d1a2b3c4d5e6f70";
pub const VARIANT: &str = "v-tshirt-red-m";
pub const TOKEN: &str = "success_token";
/// Stands for the open checkout mandate's hash in a payment spec; the
/// builder fills it in once the checkout chain exists.
pub const OPEN_CHECKOUT_HASH: &str = "<open checkout hash>";

/// A deterministic P-256 key: the scalar is `seed` repeated 32 times.
pub fn key(seed: u8) -> PrivateKey {
    let d = jws::b64url(&[seed; 32]);
    let key = PrivateKey::from_text(&json!({"kty":"EC","crv":"P-256","d": d}).to_string())
        .expect("fixed test scalar is valid");
    if seed == PLATFORM {
        key.with_kid(PLATFORM_KID).expect("valid kid")
    } else {
        key
    }
}

pub fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

pub fn merchant() -> Merchant {
    Merchant {
        id: MERCHANT_URL.into(),
        name: MERCHANT_NAME.into(),
        website: Some(MERCHANT_URL.into()),
    }
}

/// A ready checkout as the gateway renders it under the AP2 extension
/// (without `ap2`): two red T-shirts at 15.00 and 5.00 shipping.
pub fn checkout(total: i64) -> Value {
    json!({
        "ucp": {"version": "2026-04-08", "capabilities": {
            "dev.ucp.shopping.checkout": [{"version": "2026-04-08"}],
            "dev.ucp.shopping.ap2_mandate": [{"version": "2026-04-08"}]}},
        "id": CHECKOUT_ID,
        "merchant": merchant(),
        "line_items": [{
            "id": "li_1",
            "item": {"id": VARIANT, "title": "T-shirt, red, M", "price": 1500},
            "quantity": 2,
            "totals": [{"type": "subtotal", "amount": 3000}, {"type": "total", "amount": 3000}]
        }],
        "status": "ready_for_complete",
        "currency": "USD",
        "totals": [
            {"type": "subtotal", "display_text": "Subtotal", "amount": 3000},
            {"type": "fulfillment", "display_text": "Standard", "amount": total - 3000},
            {"type": "total", "display_text": "Total", "amount": total}
        ],
        "links": [{"type": "terms_of_service", "url": "https://shop.example/terms"}],
        "expires_at": "2026-03-01T18:00:00Z"
    })
}

/// How a hop binds the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    SdHash,
    IssuerJwtHash,
    /// Neither claim.
    Missing,
    /// An `sd_hash` of this text instead of the previous hop.
    SdHashOf(String),
}

/// A trailing KB-JWT.
#[derive(Debug, Clone)]
pub struct Kb {
    pub seed: u8,
    pub iat: i64,
    pub aud: String,
    pub nonce: String,
}

/// One chain to build: a root, optional open hops, and the closed hop or
/// a KB-JWT.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    pub root_seed: u8,
    pub root_kid: String,
    pub root_typ: String,
    pub root_claims: Value,
    /// The root's mandate: open, with `cnf`, or closed when a KB-JWT
    /// follows it.
    pub root_mandate: Value,
    /// Applied to the root JWT payload (then re-signed by the root key)
    /// before the next hop binds it.
    pub edit_root: Option<fn(&mut Value)>,
    /// Open hops between the root and the closed one: signer and mandate.
    pub middle: Vec<(u8, Value)>,
    pub hop_seed: u8,
    pub hop_typ: String,
    /// The closed mandate; `None` ends the chain at the last open hop.
    pub closed: Option<Value>,
    pub hop_claims: Value,
    pub binding: Binding,
    pub kb: Option<Kb>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub checkout: ChainSpec,
    pub payment: ChainSpec,
}

/// Two presentations, as an agent sends them.
#[derive(Debug, Clone)]
pub struct Built {
    pub checkout: String,
    pub payment: String,
    /// `sd_hash` of the checkout chain's root (the open checkout mandate).
    pub open_checkout_hash: String,
}

pub struct Fx {
    pub now: OffsetDateTime,
    pub ring: KeyRing,
    pub checkout: Value,
    pub auth: MerchantAuthorization,
    pub total: Money,
}

impl Default for Fx {
    fn default() -> Self {
        let ring = KeyRing::new(key(MERCHANT));
        let checkout = checkout(3500);
        let auth = v02::authorize_checkout(ring.signer(), &checkout).expect("sign checkout");
        Self { now: datetime!(2026-03-01 12:00 UTC), ring, checkout, auth, total: usd(3500) }
    }
}

pub fn cnf(seed: u8) -> Value {
    json!({"jwk": key(seed).public().to_jwk()})
}

impl Fx {
    pub fn t(&self, offset: i64) -> i64 {
        self.now.unix_timestamp() + offset
    }

    /// The ISO 8601 date `days` from now.
    pub fn date(&self, days: i64) -> String {
        (self.now + time::Duration::days(days)).date().to_string()
    }

    pub fn agent_keys(&self) -> PublicKeySet {
        let mut set = PublicKeySet::new();
        set.insert(key(PLATFORM).public().clone(), None).expect("one key");
        set
    }

    pub fn open_checkout(&self) -> Value {
        json!({
            "vct": v02::VCT_CHECKOUT_OPEN,
            "constraints": [
                {"type": "checkout.line_items", "items": [{
                    "id": "shirts",
                    "acceptable_items": [
                        {"id": VARIANT, "title": "T-shirt, red, M"},
                        {"id": "v-tshirt-blue-m", "title": "T-shirt, blue, M"}
                    ],
                    "quantity": 2
                }]},
                {"type": "checkout.allowed_merchants", "allowed": [
                    {"id": MERCHANT_URL, "name": MERCHANT_NAME},
                    {"id": "https://other.example", "name": "Other"}
                ]}
            ],
            "cnf": cnf(AGENT),
            "iat": self.t(-3600),
            "exp": self.t(86_400)
        })
    }

    pub fn closed_checkout(&self) -> Value {
        json!({
            "vct": v02::VCT_CHECKOUT,
            "checkout_jwt": self.auth.checkout_jwt,
            "checkout_hash": self.auth.checkout_hash
        })
    }

    pub fn open_payment(&self) -> Value {
        json!({
            "vct": v02::VCT_PAYMENT_OPEN,
            "constraints": [
                {"type": "payment.reference", "conditional_transaction_id": OPEN_CHECKOUT_HASH},
                {"type": "payment.amount_range", "currency": "USD", "max": 5000, "min": 100},
                {"type": "payment.allowed_payees", "allowed": [
                    {"id": MERCHANT_URL, "name": MERCHANT_NAME, "website": MERCHANT_URL}
                ]},
                {"type": "payment.allowed_payment_instruments", "allowed": [
                    {"id": TOKEN, "type": "card", "description": "Visa 4242"}
                ]},
                {"type": "payment.budget", "max": 100, "currency": "USD"},
                {"type": "payment.execution_date", "not_before": self.date(-28), "not_after": self.date(30)}
            ],
            "cnf": cnf(AGENT),
            "iat": self.t(-3600),
            "exp": self.t(86_400)
        })
    }

    pub fn closed_payment(&self) -> Value {
        json!({
            "vct": v02::VCT_PAYMENT,
            "transaction_id": self.auth.checkout_hash,
            "payee": merchant(),
            "payment_amount": {"amount": self.total.minor(), "currency": self.total.currency().code()},
            "payment_instrument": {"id": TOKEN, "type": "card", "description": "Visa 4242"}
        })
    }

    fn chain_spec(&self, open: Value, closed: Value) -> ChainSpec {
        ChainSpec {
            root_seed: PLATFORM,
            root_kid: PLATFORM_KID.into(),
            root_typ: "dc+sd-jwt".into(),
            root_claims: json!({"iat": self.t(-3600), "exp": self.t(86_400)}),
            root_mandate: open,
            edit_root: None,
            middle: Vec::new(),
            hop_seed: AGENT,
            hop_typ: TYP_HOP_CLOSED.into(),
            closed: Some(closed),
            hop_claims: json!({
                "iat": self.t(-30),
                "aud": MERCHANT_URL,
                "nonce": self.auth.checkout_hash
            }),
            binding: Binding::SdHash,
            kb: None,
        }
    }

    /// The honest human-not-present pair: open mandates signed by the
    /// platform, delegated to the agent, closed by the agent.
    pub fn spec(&self) -> Spec {
        Spec {
            checkout: self.chain_spec(self.open_checkout(), self.closed_checkout()),
            payment: self.chain_spec(self.open_payment(), self.closed_payment()),
        }
    }

    /// The honest human-present pair: closed mandates signed by the
    /// platform, bound to the agent's key, and a KB-JWT from the agent.
    pub fn spec_kb(&self) -> Spec {
        let kb_form = |closed: Value| {
            let mut s = self.chain_spec(closed, Value::Null);
            s.root_claims["cnf"] = cnf(AGENT);
            s.closed = None;
            s.kb = Some(Kb {
                seed: AGENT,
                iat: self.t(-30),
                aud: MERCHANT_URL.into(),
                nonce: self.auth.checkout_hash.clone(),
            });
            s
        };
        Spec { checkout: kb_form(self.closed_checkout()), payment: kb_form(self.closed_payment()) }
    }

    pub fn build(&self, spec: &Spec) -> Built {
        let checkout = build_chain(&spec.checkout, None);
        let open_checkout_hash = first_segment_hash(&checkout);
        let payment = build_chain(&spec.payment, Some(&open_checkout_hash));
        Built { checkout, payment, open_checkout_hash }
    }

    pub fn honest(&self) -> Built {
        self.build(&self.spec())
    }

    pub fn input<'a>(
        &'a self,
        built: &'a Built,
        agent_keys: &'a PublicKeySet,
        merchant: &'a Merchant,
    ) -> MandateInput<'a> {
        MandateInput {
            checkout_mandate: &built.checkout,
            payment_mandate: &built.payment,
            agent_keys,
            audience: MERCHANT_URL,
            view: CheckoutView {
                authorization: &self.auth,
                checkout: &self.checkout,
                merchant,
                merchant_keys: self.ring.public_keys(),
                total: self.total,
            },
            now: self.now,
            policy: ChainPolicy::default(),
        }
    }

    pub fn verify(&self, built: &Built) -> Result<VerifiedMandates> {
        let (keys, merchant) = (self.agent_keys(), merchant());
        v02::verify_mandates(&self.input(built, &keys, &merchant))
    }

    /// What the gateway does on complete: verify, then reserve the ids.
    pub async fn run(&self, built: &Built, reserver: &MemoryReserver) -> Result<VerifiedMandates> {
        let verified = self.verify(built)?;
        v02::reserve(&verified, reserver).await?;
        Ok(verified)
    }
}

fn first_segment_hash(chain: &str) -> String {
    let p = sdjwt::parse(chain).expect("built chains parse");
    sdjwt::hash(p.segments[0].text)
}

fn fill(value: &Value, open_checkout_hash: Option<&str>) -> Value {
    match (value, open_checkout_hash) {
        (Value::String(s), Some(h)) if s == OPEN_CHECKOUT_HASH => Value::String(h.to_owned()),
        (Value::Array(a), _) => a.iter().map(|v| fill(v, open_checkout_hash)).collect(),
        (Value::Object(m), _) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), fill(v, open_checkout_hash))).collect())
        }
        (other, _) => other.clone(),
    }
}

fn bind(claims: &Value, binding: &Binding, prev: &str) -> Value {
    let mut claims = claims.clone();
    let jwt = prev.split('~').next().unwrap_or_default();
    match binding {
        Binding::SdHash => claims["sd_hash"] = json!(sdjwt::hash(prev)),
        Binding::IssuerJwtHash => claims["issuer_jwt_hash"] = json!(sdjwt::hash(jwt)),
        Binding::Missing => {}
        Binding::SdHashOf(text) => claims["sd_hash"] = json!(sdjwt::hash(text)),
    }
    claims
}

pub fn build_chain(spec: &ChainSpec, open_checkout_hash: Option<&str>) -> String {
    let root_key = key(spec.root_seed).with_kid(&spec.root_kid).expect("kid");
    let mandate = fill(&spec.root_mandate, open_checkout_hash);
    let mut root =
        issue::sign_hop(&root_key, &spec.root_typ, &mandate, &spec.root_claims, &mut OsRng)
            .expect("sign root");
    if let Some(edit) = spec.edit_root {
        let (jwt, rest) = root.split_once('~').expect("a segment");
        let edited = edit_payload(jwt, edit, Some(&root_key));
        root = format!("{edited}~{rest}");
    }
    let mut chain = root.clone();
    let mut prev = root;
    for (seed, mandate) in &spec.middle {
        let claims = json!({"iat": spec.hop_claims["iat"], "aud": "https://agent.example",
                            "nonce": "delegate-nonce", "sd_hash": sdjwt::hash(&prev)});
        let hop = issue::sign_hop(
            &key(*seed),
            TYP_HOP_OPEN,
            &fill(mandate, open_checkout_hash),
            &claims,
            &mut OsRng,
        )
        .expect("sign hop");
        chain = format!("{chain}~{hop}");
        prev = hop;
    }
    if let Some(closed) = &spec.closed {
        let claims = bind(&spec.hop_claims, &spec.binding, &prev);
        let hop = issue::sign_hop(
            &key(spec.hop_seed),
            &spec.hop_typ,
            &fill(closed, open_checkout_hash),
            &claims,
            &mut OsRng,
        )
        .expect("sign closed hop");
        chain = format!("{chain}~{hop}");
    }
    if let Some(kb) = &spec.kb {
        chain = sdjwt::issue::append_kb_jwt(&key(kb.seed), &chain, kb.iat, &kb.aud, &kb.nonce)
            .expect("sign KB-JWT");
    }
    chain
}

// ---- Tampering ----------------------------------------------------------------

pub fn segments(token: &str) -> (String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    let h = it.next().unwrap_or_default();
    let p = it.next().unwrap_or_default();
    let s = it.next().unwrap_or_default();
    (h, p, s)
}

pub fn payload_of(token: &str) -> Value {
    let (_, p, _) = segments(token);
    serde_json::from_slice(&jws::b64url_decode(&p).expect("b64")).expect("json")
}

/// A JWT with its payload edited, re-signed by `signer` or, with `None`,
/// keeping the original (now wrong) signature.
pub fn edit_payload(token: &str, edit: fn(&mut Value), signer: Option<&PrivateKey>) -> String {
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

/// A JWT with its header replaced and `signature` as its signature.
pub fn with_header(token: &str, header: &Value, signature: &[u8]) -> String {
    let (_, p, _) = segments(token);
    format!("{}.{p}.{}", jws::b64url(header.to_string().as_bytes()), jws::b64url(signature))
}

/// The JWT of the `index`th SD-JWT of a chain, and a function to put a
/// replacement back.
pub fn replace_jwt(chain: &str, index: usize, edit: impl FnOnce(&str) -> String) -> String {
    let p = sdjwt::parse(chain).expect("chain parses");
    let jwt = p.segments[index].jwt;
    let start = jwt.as_ptr() as usize - chain.as_ptr() as usize;
    format!("{}{}{}", &chain[..start], edit(jwt), &chain[start + jwt.len()..])
}

/// The disclosures of the `index`th SD-JWT of a chain.
pub fn disclosures(chain: &str, index: usize) -> Vec<String> {
    let p = sdjwt::parse(chain).expect("chain parses");
    p.segments[index].disclosures().map(str::to_owned).collect()
}
