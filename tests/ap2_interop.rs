//! Interop with an independent JOSE implementation (josekit, on OpenSSL):
//! what the gateway signs verifies there, and what josekit signs verifies
//! here. Keys cross over in PEM (PKCS#8 and SEC1) and JWK form.

mod ap2_support;

use agentgate::ap2::jws;
use agentgate::ap2::keys::{KeyRing, PrivateKey, PublicKey, PublicKeySet};
use agentgate::ap2::verify::verify_chain;
use ap2_support::*;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::KeyPair as _;
use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::{JwsHeader, ES256};
use serde_json::{json, Value};
use time::Duration;

/// Verifies a compact token with josekit against the key in `jwks` named by
/// the token's kid, and returns the payload josekit saw.
fn josekit_verify(token: &str, jwks: &Value) -> Vec<u8> {
    let set = JwkSet::from_bytes(jwks.to_string().as_bytes()).expect("josekit reads our JWKS");
    let kid = header_of(token)["kid"].as_str().expect("kid").to_owned();
    let jwk = set.get(&kid).into_iter().next().expect("kid in JWKS");
    let verifier = ES256.verifier_from_jwk(jwk).expect("josekit verifier");
    let (payload, header) =
        josekit::jws::deserialize_compact(token, &verifier).expect("josekit verifies");
    assert_eq!(header.token_type(), Some("mandate+jwt"));
    assert_eq!(header.algorithm(), Some("ES256"));
    payload
}

#[test]
fn gateway_mandates_and_jwks_verify_in_josekit() {
    let fx = Fx::default();
    let ctx = fx.chain();
    let ring = fx.merchant_ring();
    let merchant_jwks = ring.jwks(fx.now);
    let user_jwks = fx.user_keys().to_jwks(fx.now);
    for (token, jwks) in
        [(&ctx.intent, &user_jwks), (&ctx.cart, &merchant_jwks), (&ctx.payment, &user_jwks)]
    {
        let payload = josekit_verify(token, jwks);
        assert_eq!(payload, jws::b64url_decode(&segments(token).1).expect("b64"));
    }
    // josekit sees the same key material: its JWK parse of our JWKS keeps
    // the members a generic verifier needs.
    let set = JwkSet::from_bytes(merchant_jwks.to_string().as_bytes()).expect("jwks");
    let jwk = set.keys()[0];
    assert_eq!(jwk.key_type(), "EC");
    assert_eq!(jwk.curve(), Some("P-256"));
    assert_eq!(jwk.key_use(), Some("sig"));
    assert_eq!(jwk.algorithm(), Some("ES256"));
    assert_eq!(jwk.key_id(), Some(ring.active_kid()));
}

#[test]
fn detached_signatures_verify_in_josekit_once_reattached() {
    let fx = Fx::default();
    let ring = fx.merchant_ring();
    let checkout = json!({"id": CHECKOUT, "status": "ready_for_complete", "totals": [{"type":"total","amount":3500}]});
    let detached = jws::sign_detached(ring.signer(), None, &checkout).expect("sign");
    let (h, p, s) = segments(&detached);
    assert!(p.is_empty());
    // A generic library verifies a detached JWS by putting the payload back.
    let body = jws::b64url(&serde_jcs::to_vec(&checkout).expect("jcs"));
    let attached = format!("{h}.{body}.{s}");
    let jwk = Jwk::from_bytes(ring.active_public().to_jwk().to_string()).expect("jwk");
    let verifier = ES256.verifier_from_jwk(&jwk).expect("verifier");
    josekit::jws::deserialize_compact(&attached, &verifier).expect("josekit verifies");
}

#[test]
fn josekit_mandates_verify_in_the_gateway() {
    let fx = Fx::default();
    // The user's key lives in josekit; the gateway only sees its public JWK.
    let pair = EcKeyPair::generate(EcCurve::P256).expect("josekit key");
    let mut public = pair.to_jwk_public_key();
    public.set_key_id("jose-user");
    let user_keys = PublicKeySet::from_jwks_json(
        &json!({"keys":[serde_json::to_value(&public).expect("jwk")]}).to_string(),
    )
    .expect("our parser reads josekit's JWK");
    let signer = ES256.signer_from_jwk(&pair.to_jwk_private_key()).expect("signer");
    let mut header = JwsHeader::new();
    header.set_token_type("mandate+jwt");
    header.set_key_id("jose-user");
    // josekit signs plain serde_json output (not JCS); the gateway must not
    // care how the payload bytes were laid out.
    let sign = |claims: &Value| {
        let bytes = serde_json::to_vec_pretty(claims).expect("json");
        josekit::jws::serialize_compact(&bytes, &header, &signer).expect("josekit sign")
    };

    let intent = sign(&serde_json::to_value(&fx.spec().intent).expect("claims"));
    let (cart, cart_claims) =
        fx.cart_for(&intent, contents(), CHECKOUT, Duration::minutes(15), &key(MERCHANT));
    let payment =
        sign(&serde_json::to_value(fx.payment_claims(&cart, &cart_claims)).expect("claims"));
    let mut ctx = fx.chain();
    ctx.intent = intent;
    ctx.cart = cart;
    ctx.payment = payment;
    ctx.user_keys = user_keys;
    let chain = verify_chain(&ctx.input()).expect("josekit-signed chain verifies");
    assert_eq!(chain.user_kid(), "jose-user");
    assert_eq!(chain.total(), money(3500));
}

#[test]
fn josekit_keys_load_from_pem_and_jwk() {
    let pair = EcKeyPair::generate(EcCurve::P256).expect("josekit key");
    let public = pair.to_jwk_public_key();
    let x = public.parameter("x").and_then(Value::as_str).expect("x").to_owned();
    let y = public.parameter("y").and_then(Value::as_str).expect("y").to_owned();
    let thumbprint = agentgate::ap2::keys::thumbprint(&x, &y);
    let pkcs8 = String::from_utf8(pair.to_pem_private_key()).expect("pem");
    let sec1 = String::from_utf8(pair.to_traditional_pem_private_key()).expect("pem");
    let jwk = serde_json::to_string(&pair.to_jwk_private_key()).expect("jwk");
    assert!(pkcs8.contains("BEGIN PRIVATE KEY"));
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"));
    for text in [&pkcs8, &sec1, &jwk] {
        let key = PrivateKey::from_text(text).expect("loads");
        assert_eq!(key.public().thumbprint(), thumbprint);
        // A key loaded from josekit signs tokens josekit verifies.
        let ring = KeyRing::new(key);
        assert_eq!(ring.active_kid(), thumbprint);
        let token =
            jws::sign_compact(ring.signer(), Some("mandate+jwt"), &json!({"n": 1})).expect("sign");
        let verifier = ES256.verifier_from_jwk(&public).expect("verifier");
        josekit::jws::deserialize_compact(&token, &verifier).expect("josekit verifies");
    }
    let spki = String::from_utf8(pair.to_pem_public_key()).expect("pem");
    assert_eq!(PublicKey::from_text(&spki).expect("spki").thumbprint(), thumbprint);
}
