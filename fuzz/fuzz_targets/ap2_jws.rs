//! AP2 v0.1: the compact and detached JWS decoders, signature checks and
//! claim parsing, and the three-mandate chain verifier, on arbitrary text.
//!
//! The input is up to three tokens, one per line (intent, cart, payment),
//! verified against the committed vector keys, checkout id and time, so a
//! seed of the committed example chain reaches every check of the chain
//! and mutations of it land just beside them. Passing is not panicking.
#![no_main]

use agentgate::ap2::jws::{self, Unverified};
use agentgate::ap2::{verify_chain_report, ChainInput, MerchantIdentity, PublicKeySet};
use agentgate::ap2::{VerifyPolicy, MANDATE_TYP};
use agentgate::domain::CheckoutId;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

struct Keys {
    merchant: PublicKeySet,
    user: PublicKeySet,
    checkout: CheckoutId,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        merchant: PublicKeySet::from_jwks_json(include_str!(
            "../../tests/vectors/ap2/merchant.jwks.json"
        ))
        .expect("vector jwks"),
        user: PublicKeySet::from_jwks_json(include_str!("../../tests/vectors/ap2/user.jwks.json"))
            .expect("vector jwks"),
        checkout: CheckoutId::parse("chk_0190aa55b2c47e8f9d1a2b3c4d5e6f70").expect("vector id"),
    })
}

/// Verifies one decoded token with the key its `kid` names, if any, and
/// reads its claims.
fn check(token: Unverified, keys: &Keys) {
    let kid = token.kid().to_owned();
    let _ = token.payload_unverified().len();
    let key = keys.user.find(&kid, NOW).or_else(|_| keys.merchant.find(&kid, NOW));
    if let Ok(key) = key {
        if let Ok(verified) = token.verify(key.verifying_key()) {
            let _ = verified.claims::<Value>();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = jws::parse_json_strict(data);
        return;
    };
    let keys = keys();
    let mut lines = text.split('\n');
    let (intent, cart, payment) =
        (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    for token in [intent, cart, payment] {
        if let Ok(u) = jws::decode_compact(token, Some(MANDATE_TYP)) {
            check(u, keys);
        }
        if let Ok(u) = jws::decode_detached(token, &serde_json::json!({"id": "x"}), None) {
            check(u, keys);
        }
    }
    let _ = jws::parse_claims::<Value>(data);
    let report = verify_chain_report(&ChainInput {
        intent_mandate: intent,
        cart_mandate: cart,
        payment_mandate: payment,
        merchant_keys: &keys.merchant,
        user_keys: &keys.user,
        checkout_id: &keys.checkout,
        merchant: MerchantIdentity {
            base_url: Some("https://shop.example"),
            name: Some("Demo Shop"),
        },
        now: NOW,
        policy: VerifyPolicy::default(),
    });
    let _ = report.result;
});
