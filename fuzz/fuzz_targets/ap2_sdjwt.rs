//! AP2 v0.2: the SD-JWT(+KB) presentation parser, disclosure resolution,
//! the delegation-chain verifier and the checkout and payment mandate
//! checks, on arbitrary text.
//!
//! The input is a checkout mandate presentation, optionally followed by a
//! newline and a payment mandate presentation. Both are checked against the
//! committed v0.2 vectors (platform keys, the merchant's checkout JWT and
//! challenge, the fixed time), so the committed mandates as seeds reach the
//! whole verifier and their mutations land beside every check. Passing is
//! not panicking.
#![no_main]

use agentgate::ap2::sdjwt::{self, ChainInput, ChainPolicy};
use agentgate::ap2::v02::{self, CheckoutView, MandateInput, Merchant, MerchantAuthorization};
use agentgate::ap2::PublicKeySet;
use agentgate::domain::{Currency, Money};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::OnceLock;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const MERCHANT_URL: &str = "https://shop.example";

struct Vectors {
    agent_keys: PublicKeySet,
    merchant_keys: PublicKeySet,
    authorization: MerchantAuthorization,
    checkout: Value,
    merchant: Merchant,
}

fn vectors() -> &'static Vectors {
    static VECTORS: OnceLock<Vectors> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let response: Value =
            serde_json::from_str(include_str!("../../tests/vectors/ap2v2/checkout-response.json"))
                .expect("vector json");
        Vectors {
            agent_keys: PublicKeySet::from_jwks_json(include_str!(
                "../../tests/vectors/ap2v2/platform.jwks.json"
            ))
            .expect("vector jwks"),
            merchant_keys: PublicKeySet::from_jwks_json(include_str!(
                "../../tests/vectors/ap2v2/merchant.jwks.json"
            ))
            .expect("vector jwks"),
            authorization: v02::checkout_jwt_of(&response).expect("vector checkout jwt"),
            checkout: v02::without_ap2(&response),
            merchant: Merchant {
                id: MERCHANT_URL.into(),
                name: "Demo Shop".into(),
                website: Some(MERCHANT_URL.into()),
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let v = vectors();
    let (checkout_mandate, payment_mandate) = text.split_once('\n').unwrap_or((text, ""));

    // The parser and disclosure resolution on their own, with no key.
    if let Ok(presentation) = sdjwt::parse(checkout_mandate) {
        let _ = presentation.closed_jwt();
        for segment in &presentation.segments {
            let disclosures: Vec<&str> = segment.disclosures().collect();
            let _ = sdjwt::resolve(Map::new(), &disclosures);
        }
    }

    // One chain against the merchant's challenge.
    let _ = sdjwt::verify_chain(&ChainInput {
        presentation: checkout_mandate,
        root_keys: &v.agent_keys,
        audience: MERCHANT_URL,
        nonce: &v.authorization.checkout_hash,
        now: NOW,
        policy: ChainPolicy::default(),
    });

    // Both mandates as a completion presents them.
    let _ = v02::verify_mandates(&MandateInput {
        checkout_mandate,
        payment_mandate,
        agent_keys: &v.agent_keys,
        audience: MERCHANT_URL,
        view: CheckoutView {
            authorization: &v.authorization,
            checkout: &v.checkout,
            merchant: &v.merchant,
            merchant_keys: &v.merchant_keys,
            total: Money::new(3500, Currency::usd()),
        },
        now: NOW,
        policy: ChainPolicy::default(),
    });
});
