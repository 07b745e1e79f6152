//! AP2 costs: one ES256 signature, one verification, the JCS+SHA-256 of a
//! typical cart, a full v0.1 chain verification, and a full v0.2
//! verification (checkout and payment mandates, each an open mandate signed
//! by the platform and a closed hop signed by the agent, with the
//! constraints evaluated). The v0.1 chain does three ECDSA verifications and
//! v0.2 four, plus parsing, disclosures and hashing; the last step prints
//! how close each stays to its bare verifications (target: within 1.3×).

use std::hint::black_box;
use std::time::Instant;

use agentgate::ap2::jws::{self, Es256Signer as _};
use agentgate::ap2::mandates::{jcs_hash, CartContents, IntentClaims, PaymentClaims};
use agentgate::ap2::sdjwt::{self, ChainPolicy, TYP_HOP_CLOSED};
use agentgate::ap2::v02::{
    self, issue, CheckoutView, MandateInput, Merchant, MerchantAuthorization,
};
use agentgate::ap2::{
    sign_cart_mandate, verify_chain, CartMandateRequest, ChainInput, KeyRing, MerchantIdentity,
    PrivateKey, PublicKeySet, VerifyPolicy,
};
use agentgate::domain::{CheckoutId, Currency, Money};
use criterion::{criterion_group, Criterion};
use p256::ecdsa::{Signature, VerifyingKey};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const CHECKOUT: &str = "chk_0190aa55bench";
const MERCHANT: &str = "https://shop.example";

fn key(seed: u8) -> PrivateKey {
    let jwk = json!({"kty": "EC", "crv": "P-256", "d": jws::b64url(&[seed; 32])});
    PrivateKey::from_text(&jwk.to_string()).expect("fixed scalar")
}

/// A cart of three product lines, shipping and tax.
fn contents() -> CartContents {
    let line = |label: &str, sku: &str, qty: u32, amount: i64| json!({"label": label, "sku": sku, "quantity": qty, "amount": {"amount": amount, "currency": "USD"}});
    serde_json::from_value(json!({
        "id": "cart_bench",
        "user_cart_confirmation_required": true,
        "merchant_name": "Demo Shop",
        "cart_expiry": "",
        "payment_request": {
            "method_data": [{"supported_methods": "CARD", "data": {"network": ["visa", "mastercard"]}}],
            "details": {
                "id": "order_bench",
                "display_items": [
                    line("T-shirt, red, M", "TSHIRT-RED-M", 2, 3000),
                    line("Mug, white", "MUG-WHITE", 1, 1200),
                    line("Socks, 3 pack", "SOCKS-3", 3, 2700),
                    {"label": "Shipping", "amount": {"amount": 500, "currency": "USD"}},
                    {"label": "Tax", "amount": {"amount": 552, "currency": "USD"}}
                ],
                "total": {"label": "Total", "amount": {"amount": 7952, "currency": "USD"}}
            }
        }
    }))
    .expect("contents")
}

struct Chain {
    intent: String,
    cart: String,
    payment: String,
    user_keys: PublicKeySet,
    merchant_keys: PublicKeySet,
    checkout: CheckoutId,
}

fn chain() -> Chain {
    let user = key(1);
    let ring = KeyRing::new(key(3));
    let intent = IntentClaims::new(
        "https://agent.example",
        Money::new(10_000, Currency::usd()),
        "Clothes and a mug under 100 USD",
        NOW - Duration::minutes(5),
        Duration::hours(1),
        &mut OsRng,
    )
    .sign(&user)
    .expect("intent");
    let checkout = CheckoutId::parse(CHECKOUT).expect("id");
    let (cart, claims) = sign_cart_mandate(
        ring.signer(),
        CartMandateRequest {
            merchant_base_url: MERCHANT,
            checkout_id: &checkout,
            contents: contents(),
            intent_mandate: &intent,
            ttl: Duration::minutes(15),
        },
        NOW - Duration::minutes(2),
        &mut OsRng,
    )
    .expect("cart");
    let payment = PaymentClaims::for_cart(
        &cart,
        &claims,
        "tok_sandbox_visa",
        "CARD",
        NOW - Duration::minutes(1),
        Duration::minutes(10),
        &mut OsRng,
    )
    .expect("payment")
    .sign(&user)
    .expect("payment");
    let mut user_keys = PublicKeySet::new();
    user_keys.insert(user.public().clone(), None).expect("key");
    Chain { intent, cart, payment, user_keys, merchant_keys: ring.public_keys().clone(), checkout }
}

impl Chain {
    fn input(&self) -> ChainInput<'_> {
        ChainInput {
            intent_mandate: &self.intent,
            cart_mandate: &self.cart,
            payment_mandate: &self.payment,
            merchant_keys: &self.merchant_keys,
            user_keys: &self.user_keys,
            checkout_id: &self.checkout,
            merchant: MerchantIdentity { base_url: Some(MERCHANT), name: None },
            now: NOW,
            policy: VerifyPolicy::default(),
        }
    }

    /// The three (key, signing input, signature) triples, for bare verifies.
    fn raw(&self) -> Vec<(VerifyingKey, String, Signature)> {
        let user = *key(1).public().verifying_key();
        let merchant = *key(3).public().verifying_key();
        [(user, &self.intent), (merchant, &self.cart), (user, &self.payment)]
            .into_iter()
            .map(|(k, token)| {
                let (input, sig) = token.rsplit_once('.').expect("compact");
                let sig = Signature::from_slice(&jws::b64url_decode(sig).expect("b64"))
                    .expect("signature");
                (k, input.to_owned(), sig)
            })
            .collect()
    }
}

/// An honest v0.2 pair for a three-line checkout.
struct V02 {
    checkout_mandate: String,
    payment_mandate: String,
    checkout: Value,
    auth: MerchantAuthorization,
    agent_keys: PublicKeySet,
    merchant_keys: PublicKeySet,
    merchant: Merchant,
}

fn v02_pair() -> V02 {
    let (platform, agent) = (key(1).with_kid("platform-1").expect("kid"), key(2));
    let ring = KeyRing::new(key(3));
    let merchant = Merchant { id: MERCHANT.into(), name: "Demo Shop".into(), website: None };
    let line = |id: &str, qty: u32, price: i64| {
        json!({"id": format!("li_{id}"), "quantity": qty,
        "item": {"id": id, "title": id, "price": price},
        "totals": [{"type": "subtotal", "amount": price * i64::from(qty)}, {"type": "total", "amount": price * i64::from(qty)}]})
    };
    let checkout = json!({
        "id": CHECKOUT, "merchant": merchant, "status": "ready_for_complete", "currency": "USD",
        "line_items": [line("v-tshirt-red-m", 2, 1500), line("v-mug-white", 1, 1200), line("v-socks-3", 3, 900)],
        "totals": [{"type": "subtotal", "amount": 6900}, {"type": "fulfillment", "amount": 500},
                   {"type": "tax", "amount": 552}, {"type": "total", "amount": 7952}],
        "links": [{"type": "terms_of_service", "url": "https://shop.example/terms"}]
    });
    let auth = v02::authorize_checkout(ring.signer(), &checkout).expect("authorize");
    let t = |offset: i64| NOW.unix_timestamp() + offset;
    let cnf = json!({"jwk": agent.public().to_jwk()});
    let root_claims = json!({"iat": t(-3600), "exp": t(86_400)});
    let requirement = |id: &str, qty: u32| {
        json!({"id": id, "quantity": qty,
        "acceptable_items": [{"id": id, "title": id}, {"id": "v-other", "title": "other"}]})
    };
    let open_checkout = json!({"vct": v02::VCT_CHECKOUT_OPEN, "cnf": cnf, "exp": t(86_400), "constraints": [
        {"type": "checkout.line_items", "items": [requirement("v-tshirt-red-m", 2),
            requirement("v-mug-white", 1), requirement("v-socks-3", 3)]},
        {"type": "checkout.allowed_merchants", "allowed": [{"id": MERCHANT, "name": "Demo Shop"}]}]});
    let checkout_root =
        issue::sign_hop(&platform, "dc+sd-jwt", &open_checkout, &root_claims, &mut OsRng)
            .expect("root");
    let hop = |prev: &str| {
        json!({"iat": t(-30), "aud": MERCHANT, "nonce": auth.checkout_hash,
                                   "sd_hash": sdjwt::hash(prev)})
    };
    let closed_checkout = json!({"vct": v02::VCT_CHECKOUT, "checkout_jwt": auth.checkout_jwt,
                                 "checkout_hash": auth.checkout_hash});
    let checkout_hop =
        issue::sign_hop(&agent, TYP_HOP_CLOSED, &closed_checkout, &hop(&checkout_root), &mut OsRng)
            .expect("hop");
    let open_payment = json!({"vct": v02::VCT_PAYMENT_OPEN, "cnf": cnf, "exp": t(86_400), "constraints": [
        {"type": "payment.reference", "conditional_transaction_id": sdjwt::hash(&checkout_root)},
        {"type": "payment.amount_range", "currency": "USD", "max": 10_000},
        {"type": "payment.allowed_payees", "allowed": [merchant]}]});
    let payment_root =
        issue::sign_hop(&platform, "dc+sd-jwt", &open_payment, &root_claims, &mut OsRng)
            .expect("root");
    let closed_payment = json!({"vct": v02::VCT_PAYMENT, "transaction_id": auth.checkout_hash,
        "payee": merchant, "payment_amount": {"amount": 7952, "currency": "USD"},
        "payment_instrument": {"id": "success_token", "type": "card"}});
    let payment_hop =
        issue::sign_hop(&agent, TYP_HOP_CLOSED, &closed_payment, &hop(&payment_root), &mut OsRng)
            .expect("hop");
    let mut agent_keys = PublicKeySet::new();
    agent_keys.insert(platform.public().clone(), None).expect("key");
    V02 {
        checkout_mandate: format!("{checkout_root}~{checkout_hop}"),
        payment_mandate: format!("{payment_root}~{payment_hop}"),
        checkout,
        auth,
        agent_keys,
        merchant_keys: ring.public_keys().clone(),
        merchant,
    }
}

impl V02 {
    fn input(&self) -> MandateInput<'_> {
        MandateInput {
            checkout_mandate: &self.checkout_mandate,
            payment_mandate: &self.payment_mandate,
            agent_keys: &self.agent_keys,
            audience: MERCHANT,
            view: CheckoutView {
                authorization: &self.auth,
                checkout: &self.checkout,
                merchant: &self.merchant,
                merchant_keys: &self.merchant_keys,
                total: Money::new(7952, Currency::usd()),
            },
            now: NOW,
            policy: ChainPolicy::default(),
        }
    }

    /// The four (key, signing input, signature) triples: two roots, two hops.
    fn raw(&self) -> Vec<(VerifyingKey, String, Signature)> {
        let (platform, agent) =
            (*key(1).public().verifying_key(), *key(2).public().verifying_key());
        let mut out = Vec::new();
        for presentation in [&self.checkout_mandate, &self.payment_mandate] {
            let parsed = sdjwt::parse(presentation).expect("parses");
            for (segment, k) in parsed.segments.iter().zip([platform, agent]) {
                let (input, sig) = segment.jwt.rsplit_once('.').expect("compact");
                let sig = Signature::from_slice(&jws::b64url_decode(sig).expect("b64"))
                    .expect("signature");
                out.push((k, input.to_owned(), sig));
            }
        }
        out
    }
}

fn benches(c: &mut Criterion) {
    let chain = chain();
    assert!(verify_chain(&chain.input()).is_ok(), "the bench chain must verify");
    let raw = chain.raw();
    let signer = key(1);
    let (_, payment_input, _) = &raw[2];
    let contents = contents();

    c.bench_function("es256_sign (payment signing input)", |b| {
        b.iter(|| signer.sign_es256(black_box(payment_input.as_bytes())))
    });
    c.bench_function("es256_verify (payment signing input)", |b| {
        let (k, input, sig) = &raw[2];
        b.iter(|| {
            jws::verify_es256(k, black_box(input.as_bytes()), &black_box(sig).to_bytes().into())
        })
    });
    c.bench_function("jcs_sha256 (5-line cart contents)", |b| {
        b.iter(|| jcs_hash(black_box(&contents)))
    });
    c.bench_function("verify_chain (intent + cart + payment)", |b| {
        b.iter(|| verify_chain(black_box(&chain.input())))
    });
    let pair = v02_pair();
    assert!(v02::verify_mandates(&pair.input()).is_ok(), "the bench mandates must verify");
    c.bench_function("v02 verify_mandates (checkout + payment, open then closed)", |b| {
        b.iter(|| v02::verify_mandates(black_box(&pair.input())))
    });
    c.bench_function("v02 authorize_checkout (3-line checkout)", |b| {
        let ring = KeyRing::new(key(3));
        b.iter(|| v02::authorize_checkout(ring.signer(), black_box(&pair.checkout)))
    });
}

/// Times both generations against their bare verifications on the same
/// tokens and prints the ratios.
fn ratio() {
    let chain = chain();
    let raw = chain.raw();
    let rounds = 300;
    let best_of = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..rounds {
                    f();
                }
                start.elapsed().as_secs_f64() / f64::from(rounds)
            })
            .fold(f64::INFINITY, f64::min)
    };
    let bare = best_of(&|| {
        for (k, input, sig) in &raw {
            black_box(jws::verify_es256(k, input.as_bytes(), &sig.to_bytes().into()))
                .expect("verifies");
        }
    });
    let full = best_of(&|| {
        black_box(verify_chain(&chain.input())).expect("verifies");
    });
    println!(
        "\nchain verification {:.1} µs vs three bare ES256 verifies {:.1} µs: ratio {:.3}× (target ≤ 1.3×)",
        full * 1e6,
        bare * 1e6,
        full / bare
    );
    let pair = v02_pair();
    let raw = pair.raw();
    let bare = best_of(&|| {
        for (k, input, sig) in &raw {
            black_box(jws::verify_es256(k, input.as_bytes(), &sig.to_bytes().into()))
                .expect("verifies");
        }
    });
    let full = best_of(&|| {
        black_box(v02::verify_mandates(&pair.input())).expect("verifies");
    });
    println!(
        "v0.2 verification {:.1} µs vs four bare ES256 verifies {:.1} µs: ratio {:.3}× (target ≤ 1.3×)",
        full * 1e6,
        bare * 1e6,
        full / bare
    );
}

criterion_group!(ap2, benches);

fn main() {
    ap2();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}
