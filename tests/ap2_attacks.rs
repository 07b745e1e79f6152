//! The attack table: each row is one way to cheat the AP2 chain, and the
//! stable code it must be refused with. Every row goes through what the
//! gateway does on complete (verify, then reserve the mandate ids), so a
//! row that slipped through would fail the test, not pass silently.

mod ap2_support;

use agentgate::ap2::jws;
use agentgate::ap2::mandates::Confirmation;
use agentgate::ap2::verify::{verify_chain_report, PaymentSigner};
use agentgate::ap2::{KeyRing, PublicKeySet};
use agentgate::domain::ErrorCode;
use ap2_support::*;
use hmac::{Hmac, Mac};
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jws::{JwsHeader, ES256K, ES384};
use serde_json::json;
use sha2::Sha256;
use time::Duration;

type Case = (&'static str, fn(&Fx) -> Ctx, ErrorCode);

fn josekit_token(curve: EcCurve, payload: &[u8]) -> String {
    let pair = EcKeyPair::generate(curve).expect("josekit key");
    let signer = match curve {
        EcCurve::P384 => ES384.signer_from_der(pair.to_der_private_key()),
        _ => ES256K.signer_from_der(pair.to_der_private_key()),
    }
    .expect("josekit signer");
    let mut header = JwsHeader::new();
    header.set_token_type("mandate+jwt");
    header.set_key_id(USER_KID);
    josekit::jws::serialize_compact(payload, &header, &signer).expect("josekit sign")
}

fn intent_payload_bytes(ctx: &Ctx) -> Vec<u8> {
    jws::b64url_decode(&segments(&ctx.intent).1).expect("b64")
}

fn cases() -> Vec<Case> {
    use ErrorCode::*;
    vec![
        // --- JOSE header and algorithm attacks -------------------------
        (
            "intent with alg none and no signature",
            |fx| {
                let mut c = fx.chain();
                let h = json!({"alg":"none","kid":USER_KID,"typ":"mandate+jwt"});
                c.intent = assemble(&h, &intent_payload_bytes(&c), Sig::Raw(vec![]));
                c
            },
            AlgNotAllowed,
        ),
        (
            "intent HS256-signed with the user's public JWK as the HMAC secret",
            |fx| {
                let mut c = fx.chain();
                let h = json!({"alg":"HS256","kid":USER_KID,"typ":"mandate+jwt"});
                let secret = key(USER).public().to_jwk().to_string();
                let input =
                    format!("{}.{}", jws::b64url(h.to_string().as_bytes()), segments(&c.intent).1);
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
                mac.update(input.as_bytes());
                c.intent = format!("{input}.{}", jws::b64url(&mac.finalize().into_bytes()));
                c
            },
            AlgNotAllowed,
        ),
        (
            "intent ES384 on a P-384 key (josekit)",
            |fx| {
                let mut c = fx.chain();
                c.intent = josekit_token(EcCurve::P384, &intent_payload_bytes(&c));
                c
            },
            AlgNotAllowed,
        ),
        (
            "intent ES256K on a secp256k1 key (josekit)",
            |fx| {
                let mut c = fx.chain();
                c.intent = josekit_token(EcCurve::Secp256k1, &intent_payload_bytes(&c));
                c
            },
            AlgNotAllowed,
        ),
        (
            "P-384 key published under the kid, token claims ES256",
            |fx| {
                let mut c = fx.chain();
                let pair = EcKeyPair::generate(EcCurve::P384).expect("josekit key");
                let mut jwk = pair.to_jwk_public_key();
                jwk.set_key_id("p384");
                c.user_keys = PublicKeySet::from_jwks_json(
                    &json!({"keys":[serde_json::to_value(&jwk).expect("jwk")]}).to_string(),
                )
                .expect("set");
                let h = json!({"alg":"ES256","kid":"p384","typ":"mandate+jwt"});
                c.intent = reheader(&c.intent, h, &key(OTHER));
                c
            },
            AgentMissingKey,
        ),
        (
            "P-384 key next to the user's key, token names the P-384 kid",
            |fx| {
                let mut c = fx.chain();
                let pair = EcKeyPair::generate(EcCurve::P384).expect("josekit key");
                let mut p384 = pair.to_jwk_public_key();
                p384.set_key_id("p384");
                let keys = json!({"keys":[serde_json::to_value(&p384).expect("jwk"), key(USER).public().to_jwk()]});
                c.user_keys = PublicKeySet::from_jwks_json(&keys.to_string()).expect("set");
                let h = json!({"alg":"ES256","kid":"p384","typ":"mandate+jwt"});
                c.intent = reheader(&c.intent, h, &key(OTHER));
                c
            },
            UnknownKid,
        ),
        (
            "intent signed by a key the user never published",
            |fx| {
                let mut s = fx.spec();
                s.intent_key = key(OTHER);
                fx.build(s, |_| {})
            },
            UnknownKid,
        ),
        (
            "intent signed by another key under the user's kid",
            |fx| {
                let mut s = fx.spec();
                s.intent_key = key(OTHER).with_kid(USER_KID).expect("kid");
                fx.build(s, |_| {})
            },
            MandateInvalidSignature,
        ),
        (
            "jwk header injection: attacker key embedded in the header",
            |fx| {
                let mut c = fx.chain();
                let attacker = key(OTHER);
                let h = json!({"alg":"ES256","kid":USER_KID,"typ":"mandate+jwt","jwk":attacker.public().to_jwk()});
                c.intent = reheader(&c.intent, h, &attacker);
                c
            },
            MandateMalformed,
        ),
        (
            "jku header pointing at an attacker's key set",
            |fx| {
                let mut c = fx.chain();
                let h = json!({"alg":"ES256","kid":USER_KID,"typ":"mandate+jwt","jku":"https://evil.example/jwks"});
                c.intent = reheader(&c.intent, h, &key(USER));
                c
            },
            MandateMalformed,
        ),
        (
            "crit header naming an extension",
            |fx| {
                let mut c = fx.chain();
                let h = json!({"alg":"ES256","kid":USER_KID,"typ":"mandate+jwt","crit":["exp_v2"],"exp_v2":1});
                c.intent = reheader(&c.intent, h, &key(USER));
                c
            },
            MandateMalformed,
        ),
        (
            "wrong typ (a plain JWT)",
            |fx| {
                let mut c = fx.chain();
                let h = json!({"alg":"ES256","kid":USER_KID,"typ":"JWT"});
                c.intent = reheader(&c.intent, h, &key(USER));
                c
            },
            MandateMalformed,
        ),
        (
            "cart mandate presented as the intent",
            |fx| {
                let mut c = fx.chain();
                c.intent = c.cart.clone();
                c
            },
            UnknownKid,
        ),
        // --- Signature bytes and token structure -------------------------
        (
            "DER-encoded signature instead of r||s",
            |fx| {
                let mut c = fx.chain();
                let (h, p, s) = segments(&c.payment);
                let sig = p256::ecdsa::Signature::from_slice(&jws::b64url_decode(&s).expect("b64"))
                    .expect("sig");
                c.payment = format!("{h}.{p}.{}", jws::b64url(sig.to_der().as_bytes()));
                c
            },
            MandateInvalidSignature,
        ),
        (
            "truncated intent token",
            |fx| {
                let mut c = fx.chain();
                c.intent.truncate(c.intent.len() / 2);
                c
            },
            MandateMalformed,
        ),
        (
            "intent payload edited (max_amount raised)",
            |fx| {
                let mut c = fx.chain();
                c.intent =
                    edit_payload(&c.intent, |p| p["max_amount"]["amount"] = json!(900000), None);
                c
            },
            MandateInvalidSignature,
        ),
        (
            "cart payload edited (total lowered)",
            |fx| {
                let mut c = fx.chain();
                c.cart = edit_payload(
                    &c.cart,
                    |p| {
                        p["contents"]["payment_request"]["details"]["total"]["amount"]["amount"] =
                            json!(1)
                    },
                    None,
                );
                c
            },
            MandateInvalidSignature,
        ),
        (
            "oversized intent (20 KiB description)",
            |fx| {
                let mut s = fx.spec();
                s.intent.natural_language_description = "x".repeat(20 * 1024);
                fx.build(s, |_| {})
            },
            PayloadTooLarge,
        ),
        (
            "duplicate max_amount member in a signed intent",
            |fx| {
                let mut c = fx.chain();
                let text = String::from_utf8(intent_payload_bytes(&c)).expect("utf8");
                let dup =
                    text.replacen('{', r#"{"max_amount":{"amount":999999,"currency":"USD"},"#, 1);
                c.intent = assemble(&header_of(&c.intent), dup.as_bytes(), Sig::By(&key(USER)));
                c
            },
            MandateMalformed,
        ),
        (
            "unknown claim the gateway cannot honour",
            |fx| {
                let mut c = fx.chain();
                c.intent = edit_payload(
                    &c.intent,
                    |p| p["max_amount_per_day"] = json!(100),
                    Some(&key(USER)),
                );
                c
            },
            MandateMalformed,
        ),
        (
            "intent without exp",
            |fx| {
                let mut c = fx.chain();
                c.intent = edit_payload(
                    &c.intent,
                    |p| {
                        p.as_object_mut().map(|o| o.remove("exp"));
                    },
                    Some(&key(USER)),
                );
                c
            },
            MandateMalformed,
        ),
        (
            "intent valid for a year",
            |fx| {
                let mut s = fx.spec();
                s.intent.exp = s.intent.iat + Duration::days(365).whole_seconds();
                fx.build(s, |_| {})
            },
            MandateMalformed,
        ),
        // --- Time ---------------------------------------------------------
        (
            "expired intent",
            |fx| {
                let mut s = fx.spec();
                s.intent.iat = (fx.now - Duration::hours(2)).unix_timestamp();
                s.intent.exp = (fx.now - Duration::hours(1)).unix_timestamp();
                fx.build(s, |_| {})
            },
            MandateExpired,
        ),
        (
            "payment mandate not yet valid",
            |fx| {
                fx.build(fx.spec(), |p| {
                    p.iat = (fx.now + Duration::hours(1)).unix_timestamp();
                    p.exp = (fx.now + Duration::hours(2)).unix_timestamp();
                })
            },
            MandateNotYetValid,
        ),
        (
            "expired cart mandate",
            |fx| {
                let mut c = fx.chain();
                c.now = fx.now + Duration::minutes(20);
                c
            },
            MandateExpired,
        ),
        (
            "cart_expiry at the end of time (merchant-signed, hash not updated)",
            |fx| {
                let mut c = fx.chain();
                c.cart = edit_payload(
                    &c.cart,
                    |p| p["contents"]["cart_expiry"] = json!("9999-12-31T23:59:59Z"),
                    Some(&key(MERCHANT)),
                );
                c
            },
            ChainHashMismatch,
        ),
        // --- Replay ---------------------------------------------------------
        (
            "the same chain presented twice",
            |fx| {
                let first = fx.chain();
                let mut again = first.clone();
                again.prior = vec![first];
                again
            },
            MandateReplayed,
        ),
        (
            "one intent spent on a second checkout",
            |fx| {
                let first = fx.chain();
                let mut s = fx.spec();
                s.intent = serde_json::from_value(payload_of(&first.intent)).expect("claims");
                let mut second = fx.build(s, |_| {});
                assert_eq!(
                    second.intent, first.intent,
                    "deterministic signing reproduces the intent"
                );
                second.prior = vec![first];
                second
            },
            MandateReplayed,
        ),
        (
            "the high-S twin of a used payment mandate",
            |fx| {
                let first = fx.chain();
                let mut again = first.clone();
                let (h, p, s) = segments(&first.payment);
                let sig = p256::ecdsa::Signature::from_slice(&jws::b64url_decode(&s).expect("b64"))
                    .expect("sig");
                let (r, s) = sig.split_scalars();
                let twin = p256::ecdsa::Signature::from_scalars(r, -*s).expect("twin");
                again.payment = format!("{h}.{p}.{}", jws::b64url(&twin.to_bytes()));
                again.prior = vec![first];
                again
            },
            MandateReplayed,
        ),
        // --- Amounts and currency ------------------------------------------
        (
            "cart total above the intent's max_amount",
            |fx| {
                let mut s = fx.spec();
                s.intent.max_amount = usd(3499);
                fx.build(s, |_| {})
            },
            AmountExceedsIntent,
        ),
        (
            "payment amount below the cart total",
            |fx| {
                fx.build(fx.spec(), |p| {
                    p.payment_mandate_contents.payment_details_total = usd(3400)
                })
            },
            PaymentAmountMismatch,
        ),
        (
            "payment in another currency",
            |fx| {
                fx.build(fx.spec(), |p| {
                    p.payment_mandate_contents.payment_details_total.currency = "EUR".into()
                })
            },
            CurrencyMismatch,
        ),
        (
            "intent in another currency",
            |fx| {
                let mut s = fx.spec();
                s.intent.max_amount.currency = "EUR".into();
                fx.build(s, |_| {})
            },
            CurrencyMismatch,
        ),
        (
            "cart mixing currencies (merchant-signed)",
            |fx| {
                let mut c = fx.chain();
                c.cart = edit_payload(
                    &c.cart,
                    |p| {
                        p["contents"]["payment_request"]["details"]["display_items"][1]["amount"]
                            ["currency"] = json!("EUR")
                    },
                    Some(&key(MERCHANT)),
                );
                c
            },
            CurrencyMismatch,
        ),
        (
            "lower-case currency spelling",
            |fx| {
                let mut s = fx.spec();
                s.intent.max_amount.currency = "usd".into();
                fx.build(s, |_| {})
            },
            MandateMalformed,
        ),
        // --- Chain links -------------------------------------------------
        (
            "cart mandate from another checkout",
            |fx| {
                let mut s = fx.spec();
                s.cart_checkout = "chk_someoneelse".into();
                fx.build(s, |_| {})
            },
            MandateScopeMismatch,
        ),
        (
            "payment mandate bound to another cart mandate",
            |fx| {
                let mut c = fx.chain();
                c.payment = fx.chain().payment;
                c
            },
            ChainHashMismatch,
        ),
        (
            "cart mandate answering another intent",
            |fx| {
                let mut c = fx.chain();
                c.intent = fx.chain().intent;
                c
            },
            ChainHashMismatch,
        ),
        (
            "cart_hash not matching the signed contents",
            |fx| {
                let mut c = fx.chain();
                c.cart = edit_payload(
                    &c.cart,
                    |p| {
                        p["contents"]["payment_request"]["details"]["display_items"][0]["label"] =
                            json!("Gold bar")
                    },
                    Some(&key(MERCHANT)),
                );
                c
            },
            ChainHashMismatch,
        ),
        (
            "payment for another checkout id",
            |fx| {
                fx.build(fx.spec(), |p| {
                    p.payment_mandate_contents.payment_details_id = "chk_other".into()
                })
            },
            MandateScopeMismatch,
        ),
        (
            "payment to another merchant",
            |fx| {
                fx.build(fx.spec(), |p| {
                    p.payment_mandate_contents.merchant_agent = "https://evil.example".into()
                })
            },
            MandateScopeMismatch,
        ),
        (
            "cart issued under another merchant identity",
            |fx| {
                let mut c = fx.chain();
                c.merchant_url = Some("https://other-shop.example".into());
                c
            },
            MandateScopeMismatch,
        ),
        // --- Keys and signers ------------------------------------------------
        (
            "cart signed by a retired key after its retirement",
            |fx| {
                let mut s = fx.spec();
                s.cart_key = key(OLD_MERCHANT);
                let mut c = fx.build(s, |_| {});
                let ring = KeyRing::new(key(MERCHANT))
                    .with_retired(key(OLD_MERCHANT).public().clone(), fx.now - Duration::seconds(1))
                    .expect("ring");
                c.merchant_keys = ring.public_keys().clone();
                c
            },
            UnknownKid,
        ),
        (
            "cart signed by the user instead of the merchant",
            |fx| {
                let mut s = fx.spec();
                s.cart_key = key(USER);
                fx.build(s, |_| {})
            },
            UnknownKid,
        ),
        (
            "payment signed by a random key although the intent names a cnf key",
            |fx| {
                let mut s = fx.spec();
                s.intent.cnf = Some(Confirmation { jwk: key(AGENT).public().to_jwk() });
                s.intent.user_cart_confirmation_required = false;
                s.payment_key = key(OTHER);
                fx.build(s, |_| {})
            },
            MandateInvalidSignature,
        ),
        (
            "random key claiming the cnf kid for the payment",
            |fx| {
                let mut s = fx.spec();
                s.intent.cnf = Some(Confirmation { jwk: key(AGENT).public().to_jwk() });
                s.intent.user_cart_confirmation_required = false;
                s.payment_key = key(OTHER).with_kid(key(AGENT).kid()).expect("kid");
                fx.build(s, |_| {})
            },
            MandateInvalidSignature,
        ),
        (
            "cnf key used to sign the intent itself",
            |fx| {
                let mut s = fx.spec();
                s.intent.cnf = Some(Confirmation { jwk: key(AGENT).public().to_jwk() });
                s.intent_key = key(AGENT);
                s.payment_key = key(AGENT);
                fx.build(s, |_| {})
            },
            UnknownKid,
        ),
        (
            "cnf-signed payment although the intent requires user confirmation",
            |fx| {
                let mut s = fx.spec();
                s.intent.cnf = Some(Confirmation { jwk: key(AGENT).public().to_jwk() });
                s.intent.user_cart_confirmation_required = true;
                s.payment_key = key(AGENT);
                fx.build(s, |_| {})
            },
            MandateScopeMismatch,
        ),
        (
            "payment signed by the merchant key",
            |fx| {
                let mut s = fx.spec();
                s.payment_key = key(MERCHANT);
                fx.build(s, |_| {})
            },
            MandateInvalidSignature,
        ),
        (
            "cnf carrying a private key",
            |fx| {
                let mut s = fx.spec();
                let mut jwk = key(AGENT).public().to_jwk();
                jwk["d"] = json!(jws::b64url(&[AGENT; 32]));
                s.intent.cnf = Some(Confirmation { jwk });
                fx.build(s, |_| {})
            },
            MandateMalformed,
        ),
        (
            "no user key resolved for the agent",
            |fx| {
                let mut c = fx.chain();
                c.user_keys = PublicKeySet::new();
                c
            },
            AgentMissingKey,
        ),
        // --- Intent scope ------------------------------------------------------
        (
            "merchant not named by the intent",
            |fx| {
                let mut s = fx.spec();
                s.intent.merchants =
                    Some(vec!["https://other-shop.example".into(), "Other Shop".into()]);
                fx.build(s, |_| {})
            },
            MerchantNotAllowed,
        ),
        (
            "sku not allowed by the intent",
            |fx| {
                let mut s = fx.spec();
                s.intent.skus = Some(vec!["MUG-WHITE".into()]);
                fx.build(s, |_| {})
            },
            SkuNotAllowed,
        ),
        (
            "empty merchant allow-list",
            |fx| {
                let mut s = fx.spec();
                s.intent.merchants = Some(vec![]);
                fx.build(s, |_| {})
            },
            MandateMalformed,
        ),
    ]
}

#[tokio::test]
async fn every_attack_is_refused_with_its_code() {
    let fx = Fx::default();
    let cases = cases();
    assert!(cases.len() >= 25, "the acceptance bar is 25 rows, have {}", cases.len());
    let mut failures = Vec::new();
    for (name, build, want) in &cases {
        let ctx = build(&fx);
        match ctx.run_with_history().await {
            Ok(_) => failures.push(format!("{name}: accepted, expected {want}")),
            Err(e) if e.code() != *want => {
                failures.push(format!("{name}: got {e}, expected {want}"))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} attack rows refused with their codes", cases.len());
}

#[tokio::test]
async fn the_honest_chain_passes_and_exposes_what_the_pipeline_needs() {
    let fx = Fx::default();
    let ctx = fx.chain();
    let chain = ctx.run_with_history().await.expect("honest chain");
    assert_eq!(chain.total(), money(3500));
    assert_eq!(chain.intent_max(), money(5000));
    assert_eq!(chain.currency().code(), "USD");
    assert_eq!(chain.payment_token(), PAYMENT_TOKEN);
    assert_eq!(chain.method_name(), "CARD");
    assert_eq!(chain.user_kid(), USER_KID);
    assert_eq!(chain.user_key_thumbprint(), key(USER).public().thumbprint());
    assert_eq!(chain.payment_signer(), &PaymentSigner::User);
    let lines = chain.line_items();
    assert_eq!(lines.len(), 1, "shipping is an adjustment, not a product line");
    assert_eq!(lines[0].sku.as_str(), "TSHIRT-RED-M");
    assert_eq!(lines[0].quantity, 2);
    assert_eq!(lines[0].line_total, money(3000));
    assert_eq!(lines[0].unit_amount(), Some(money(1500)));
    assert_eq!(chain.mandate_ids().len(), 4);
    for id in chain.mandate_ids() {
        assert!(id.keep_until > ctx.now, "{id:?}");
        assert!(id.id.starts_with("ap2:"), "{id:?}");
    }
    assert!(chain.checks().iter().all(|c| c.passed()));
    assert!(!format!("{chain:?}").contains(PAYMENT_TOKEN), "Debug hides the payment token");
}

#[tokio::test]
async fn delegated_payments_and_allow_lists_pass_when_honest() {
    let fx = Fx::default();
    let mut s = fx.spec();
    s.intent.cnf = Some(Confirmation { jwk: key(AGENT).public().to_jwk() });
    s.intent.user_cart_confirmation_required = false;
    s.intent.merchants = Some(vec!["https://SHOP.example/".into()]);
    s.intent.skus = Some(vec!["TSHIRT-RED-M".into(), "MUG-WHITE".into()]);
    s.payment_key = key(AGENT);
    let chain = fx.build(s, |_| {}).run_with_history().await.expect("delegated chain");
    assert_eq!(
        chain.payment_signer(),
        &PaymentSigner::Delegated {
            kid: key(AGENT).kid().to_owned(),
            thumbprint: key(AGENT).public().thumbprint().to_owned()
        }
    );
    // The user may still sign the payment themselves.
    let mut s = fx.spec();
    s.intent.cnf = Some(Confirmation { jwk: key(AGENT).public().to_jwk() });
    fx.build(s, |_| {}).run_with_history().await.expect("user-signed payment");
    // Naming the merchant by name works too.
    let mut s = fx.spec();
    s.intent.merchants = Some(vec![MERCHANT_NAME.into()]);
    fx.build(s, |_| {}).run_with_history().await.expect("merchant by name");
}

#[tokio::test]
async fn retired_merchant_keys_verify_until_their_instant() {
    let fx = Fx::default();
    let mut s = fx.spec();
    s.cart_key = key(OLD_MERCHANT);
    let mut c = fx.build(s, |_| {});
    let ring = KeyRing::new(key(OLD_MERCHANT))
        .rotate(key(MERCHANT), fx.now + Duration::hours(1))
        .expect("rotate");
    assert_eq!(ring.active_kid(), key(MERCHANT).kid());
    c.merchant_keys = ring.public_keys().clone();
    c.run_with_history().await.expect("retired key still inside its window");
}

#[test]
fn the_report_names_each_check_and_stops_at_the_failure() {
    let fx = Fx::default();
    let ok = fx.chain();
    let report = verify_chain_report(&ok.input());
    assert!(report.result.is_ok());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    for expected in [
        "intent.signature",
        "cart.intent_hash",
        "cart.cart_hash",
        "payment.cart_mandate_hash",
        "amount.within_intent",
        "amount.payment_equals_cart",
        "intent.skus",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let mut s = fx.spec();
    s.intent.max_amount = usd(100);
    let bad = fx.build(s, |_| {});
    let report = verify_chain_report(&bad.input());
    let last = report.checks.last().expect("checks ran");
    assert_eq!(last.name, "amount.within_intent");
    assert_eq!(last.error.as_ref().map(|e| e.code()), Some(ErrorCode::AmountExceedsIntent));
    assert!(report.checks[..report.checks.len() - 1].iter().all(|c| c.passed()));
}
