//! The AP2 v0.2 attack table: each row is one way to cheat the checkout
//! and payment mandates, and the stable code it must be refused with.
//! Every row goes through what the gateway does on complete (verify both
//! chains against the merchant's own signed checkout, then reserve the
//! mandate ids), after the honest presentations it lists as history, so a
//! row that slipped through fails the test instead of passing silently.

mod ap2v2_support;

use agentgate::ap2::jws;
use agentgate::ap2::sdjwt::{self, TYP_HOP_CLOSED};
use agentgate::ap2::v02::{self, issue, Reservation};
use agentgate::ap2::verify::MemoryReserver;
use agentgate::ap2::{KeyRing, PublicKeySet};
use agentgate::domain::{ErrorCode, Result};
use ap2v2_support::*;
use hmac::{Hmac, Mac};
use rand_core::OsRng;
use serde_json::{json, Value};
use sha2::Sha256;

/// One attempt: the presentations, the history before them, and the keys
/// the merchant resolved for the agent.
struct Run {
    built: Built,
    prior: Vec<Built>,
    agent_keys: PublicKeySet,
}

impl Run {
    fn of(fx: &Fx, built: Built) -> Self {
        Self { built, prior: Vec::new(), agent_keys: fx.agent_keys() }
    }

    async fn go(&self, fx: &Fx) -> Result<v02::VerifiedMandates> {
        let reserver = MemoryReserver::default();
        let merchant = merchant();
        for (i, prior) in self.prior.iter().enumerate() {
            let verified = v02::verify_mandates(&fx.input(prior, &self.agent_keys, &merchant))
                .unwrap_or_else(|e| panic!("prior presentation {i} should verify: {e}"));
            v02::reserve(&verified, &reserver).await.expect("prior reserves");
        }
        let verified = v02::verify_mandates(&fx.input(&self.built, &self.agent_keys, &merchant))?;
        v02::reserve(&verified, &reserver).await?;
        Ok(verified)
    }
}

/// The honest build with `edit` applied to its spec.
fn with(fx: &Fx, edit: impl FnOnce(&Fx, &mut Spec)) -> Run {
    let mut spec = fx.spec();
    edit(fx, &mut spec);
    Run::of(fx, fx.build(&spec))
}

/// The honest build with its presentations rewritten.
fn rewrite(fx: &Fx, edit: impl FnOnce(&Fx, &mut Built)) -> Run {
    let mut built = fx.honest();
    edit(fx, &mut built);
    Run::of(fx, built)
}

fn constraint<'a>(spec: &'a mut ChainSpec, kind: &str) -> &'a mut Value {
    spec.root_mandate["constraints"]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} constraint"))
}

/// A new closed hop for an existing chain: everything up to its last
/// SD-JWT is kept, the last one is signed again by `seed` over `closed`.
fn reclose(fx: &Fx, chain: &str, seed: u8, closed: &Value, iat_offset: i64) -> String {
    let p = sdjwt::parse(chain).expect("parses");
    let prev = p.segments[p.segments.len() - 2].text;
    let keep = &chain[..chain.len() - p.segments[p.segments.len() - 1].text.len()];
    let claims = json!({"iat": fx.t(iat_offset), "aud": MERCHANT_URL,
                        "nonce": fx.auth.checkout_hash, "sd_hash": sdjwt::hash(prev)});
    let hop = issue::sign_hop(&key(seed), TYP_HOP_CLOSED, closed, &claims, &mut OsRng).unwrap();
    format!("{keep}{hop}")
}

/// A disclosure decoded, edited, and encoded again.
fn edit_disclosure(d: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_slice(&jws::b64url_decode(d).unwrap()).unwrap();
    edit(&mut value);
    jws::b64url(value.to_string().as_bytes())
}

fn recurring(fx: &Fx, recurrence: Value) -> (Built, Built) {
    let mut spec = fx.spec();
    spec.payment.root_mandate["constraints"].as_array_mut().unwrap().push(recurrence);
    let first = fx.build(&spec);
    let mut second = first.clone();
    second.checkout = reclose(fx, &first.checkout, AGENT, &fx.closed_checkout(), -20);
    second.payment = reclose(fx, &first.payment, AGENT, &fx.closed_payment(), -20);
    (first, second)
}

type Case = (&'static str, fn(&Fx) -> Run, ErrorCode);

fn cases() -> Vec<Case> {
    use ErrorCode::*;
    vec![
        // --- The checkout binding --------------------------------------
        (
            "checkout_hash is not the hash of the disclosed checkout_jwt",
            |fx| {
                with(fx, |_, s| {
                    s.checkout.closed.as_mut().unwrap()["checkout_hash"] = json!(sdjwt::hash("x"))
                })
            },
            ChainHashMismatch,
        ),
        (
            "checkout_jwt of this checkout in another state (a lower total)",
            |fx| {
                with(fx, |fx, s| {
                    let other = v02::authorize_checkout(fx.ring.signer(), &checkout(3400)).unwrap();
                    let closed = s.checkout.closed.as_mut().unwrap();
                    closed["checkout_jwt"] = json!(other.checkout_jwt);
                    closed["checkout_hash"] = json!(other.checkout_hash);
                })
            },
            MandateScopeMismatch,
        ),
        (
            "checkout_jwt signed by a key that is not the merchant's",
            |fx| {
                with(fx, |fx, s| {
                    let forged = KeyRing::new(key(OTHER));
                    let other = v02::authorize_checkout(forged.signer(), &fx.checkout).unwrap();
                    let closed = s.checkout.closed.as_mut().unwrap();
                    closed["checkout_jwt"] = json!(other.checkout_jwt);
                    closed["checkout_hash"] = json!(other.checkout_hash);
                })
            },
            MerchantAuthorizationInvalid,
        ),
        (
            "checkout_jwt is another merchant token (a receipt) over the checkout",
            |fx| {
                with(fx, |fx, s| {
                    let token =
                        jws::sign_compact(fx.ring.signer(), Some("receipt+jwt"), &fx.checkout)
                            .unwrap();
                    let closed = s.checkout.closed.as_mut().unwrap();
                    closed["checkout_hash"] = json!(sdjwt::hash(&token));
                    closed["checkout_jwt"] = json!(token);
                })
            },
            MerchantAuthorizationInvalid,
        ),
        (
            "the checkout mandate withholds its checkout_jwt",
            |fx| {
                rewrite(fx, |_, b| {
                    let d = disclosures(&b.checkout, 1);
                    b.checkout = b.checkout.replacen(&format!("{}~", d[0]), "", 1);
                })
            },
            MandateMalformed,
        ),
        // --- Disclosures ----------------------------------------------------
        (
            "a disclosure presented twice",
            |fx| {
                rewrite(fx, |_, b| {
                    let d = disclosures(&b.checkout, 1).pop().unwrap();
                    b.checkout = b.checkout.replacen(&format!("~{d}~"), &format!("~{d}~{d}~"), 1);
                })
            },
            MandateMalformed,
        ),
        (
            "a tampered disclosure (the closed payment amount)",
            |fx| {
                rewrite(fx, |_, b| {
                    let d = disclosures(&b.payment, 1).pop().unwrap();
                    let tampered =
                        edit_disclosure(&d, |v| v[1]["payment_amount"]["amount"] = json!(1));
                    b.payment = b.payment.replacen(&d, &tampered, 1);
                })
            },
            MandateInvalidSignature,
        ),
        (
            "a disclosure from another presentation",
            |fx| {
                rewrite(fx, |_, b| {
                    let foreign = disclosures(&b.payment, 1).pop().unwrap();
                    b.checkout.push_str(&format!("{foreign}~"));
                })
            },
            MandateInvalidSignature,
        ),
        (
            "_sd_alg sha-512 on the root",
            |fx| with(fx, |_, s| s.checkout.edit_root = Some(|p| p["_sd_alg"] = json!("sha-512"))),
            AlgNotAllowed,
        ),
        (
            "a constraint withheld from the open checkout mandate",
            |fx| {
                with(fx, |_, s| {
                    s.checkout.root_mandate["constraints"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"...": sdjwt::hash("a constraint the agent hides")}));
                })
            },
            MandateMalformed,
        ),
        (
            "a bound of the amount range withheld (min hidden)",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.amount_range")["_sd"] =
                        json!([sdjwt::hash("min")]);
                })
            },
            MandateMalformed,
        ),
        (
            "a platform-signed closed mandate that lost a claim on the way (KB-JWT form)",
            |fx| {
                let mut spec = fx.spec_kb();
                spec.payment.root_mandate["_sd"] = json!([sdjwt::hash("execution_date withheld")]);
                Run::of(fx, fx.build(&spec))
            },
            MandateMalformed,
        ),
        (
            "a checkout.line_items with more requirements than the bound",
            |fx| {
                with(fx, |_, s| {
                    let many: Vec<Value> = (0..65)
                        .map(|i| {
                            json!({"id": format!("r{i}"), "quantity": 1,
                                        "acceptable_items": [{"id": VARIANT, "title": "T"}]})
                        })
                        .collect();
                    constraint(&mut s.checkout, "checkout.line_items")["items"] = json!(many);
                })
            },
            MandateMalformed,
        ),
        // --- Key binding, hop by hop ---------------------------------------
        (
            "no key-binding hop: the open mandate alone",
            |fx| with(fx, |_, s| s.checkout.closed = None),
            MandateMalformed,
        ),
        (
            "an extra hop after the closed one",
            |fx| {
                rewrite(fx, |fx, b| {
                    let last = sdjwt::parse(&b.checkout).unwrap().segments[1].text.to_owned();
                    let claims = json!({"iat": fx.t(-10), "aud": MERCHANT_URL,
                        "nonce": fx.auth.checkout_hash, "sd_hash": sdjwt::hash(&last)});
                    let extra = issue::sign_hop(
                        &key(AGENT),
                        TYP_HOP_CLOSED,
                        &fx.closed_checkout(),
                        &claims,
                        &mut OsRng,
                    )
                    .unwrap();
                    b.checkout = format!("{}~{extra}", b.checkout);
                })
            },
            MandateMalformed,
        ),
        (
            "a KB-JWT after the closed hop",
            |fx| {
                rewrite(fx, |fx, b| {
                    b.checkout = sdjwt::issue::append_kb_jwt(
                        &key(AGENT),
                        &b.checkout,
                        fx.t(-5),
                        MERCHANT_URL,
                        &fx.auth.checkout_hash,
                    )
                    .unwrap();
                })
            },
            MandateMalformed,
        ),
        (
            "the closed hop is signed by a key the open mandate did not name (cnf)",
            |fx| with(fx, |_, s| s.payment.hop_seed = OTHER),
            MandateInvalidSignature,
        ),
        (
            "a three-hop chain closed by the first delegate instead of the second",
            |fx| {
                with(fx, |fx, s| {
                    let mut middle = fx.open_checkout();
                    middle["cnf"] = cnf(DELEGATE);
                    s.checkout.middle = vec![(AGENT, middle)];
                    s.checkout.hop_seed = AGENT;
                })
            },
            MandateInvalidSignature,
        ),
        (
            "an open hop (kb+sd-jwt+kb) that delegates to no key",
            |fx| {
                with(fx, |fx, s| {
                    let mut middle = fx.open_checkout();
                    middle.as_object_mut().unwrap().remove("cnf");
                    s.checkout.middle = vec![(AGENT, middle)];
                })
            },
            MandateMalformed,
        ),
        (
            "the closed hop binds another root (sd_hash)",
            |fx| with(fx, |_, s| s.payment.binding = Binding::SdHashOf("another~".into())),
            ChainHashMismatch,
        ),
        (
            "the closed hop binds nothing (no sd_hash, no issuer_jwt_hash)",
            |fx| with(fx, |_, s| s.payment.binding = Binding::Missing),
            MandateMalformed,
        ),
        (
            "a KB-JWT whose sd_hash does not cover the disclosures presented",
            |fx| {
                let spec = fx.spec_kb();
                let mut built = fx.build(&spec);
                // Drop a disclosure after the KB-JWT was made over it.
                let d = disclosures(&built.checkout, 0);
                built.checkout = built.checkout.replacen(&format!("{}~", d[0]), "", 1);
                Run::of(fx, built)
            },
            ChainHashMismatch,
        ),
        (
            "a delegation hop used as the root (typ kb+sd-jwt)",
            |fx| with(fx, |_, s| s.checkout.root_typ = TYP_HOP_CLOSED.into()),
            MandateMalformed,
        ),
        // --- JOSE -------------------------------------------------------------
        (
            "alg none on the closed hop",
            |fx| {
                rewrite(fx, |_, b| {
                    b.payment = replace_jwt(&b.payment, 1, |jwt| {
                        with_header(jwt, &json!({"alg": "none", "typ": "kb+sd-jwt"}), &[])
                    });
                })
            },
            AlgNotAllowed,
        ),
        (
            "HS256 root keyed with the platform's public JWK",
            |fx| {
                rewrite(fx, |_, b| {
                    b.checkout = replace_jwt(&b.checkout, 0, |jwt| {
                        let header =
                            json!({"alg": "HS256", "kid": PLATFORM_KID, "typ": "dc+sd-jwt"});
                        let (_, p, _) = segments(jwt);
                        let input = format!("{}.{p}", jws::b64url(header.to_string().as_bytes()));
                        let secret = key(PLATFORM).public().to_jwk().to_string();
                        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                        mac.update(input.as_bytes());
                        format!("{input}.{}", jws::b64url(&mac.finalize().into_bytes()))
                    });
                })
            },
            AlgNotAllowed,
        ),
        (
            "ES384 on the KB-JWT",
            |fx| {
                let mut built = fx.build(&fx.spec_kb());
                let p = sdjwt::parse(&built.payment).unwrap();
                let kb = p.kb_jwt.unwrap().to_owned();
                let forged =
                    with_header(&kb, &json!({"alg": "ES384", "typ": "kb+jwt"}), &[7u8; 96]);
                built.payment = built.payment.replacen(&kb, &forged, 1);
                Run::of(fx, built)
            },
            AlgNotAllowed,
        ),
        (
            "the root names an unknown kid",
            |fx| with(fx, |_, s| s.checkout.root_kid = "platform-2".into()),
            UnknownKid,
        ),
        (
            "the merchant knows no key for this agent",
            |fx| Run { agent_keys: PublicKeySet::new(), ..Run::of(fx, fx.honest()) },
            AgentMissingKey,
        ),
        (
            "the root payload edited after signing",
            |fx| {
                rewrite(fx, |_, b| {
                    b.checkout = replace_jwt(&b.checkout, 0, |jwt| {
                        edit_payload(
                            jwt,
                            |p| p["exp"] = json!(p["exp"].as_i64().unwrap() + 86_400),
                            None,
                        )
                    });
                })
            },
            MandateInvalidSignature,
        ),
        (
            "an oversized checkout mandate",
            |fx| rewrite(fx, |_, b| b.checkout.push_str(&format!("{}~", "A".repeat(130 * 1024)))),
            PayloadTooLarge,
        ),
        // --- Time -------------------------------------------------------------
        (
            "the open mandate expired",
            |fx| {
                with(fx, |fx, s| {
                    s.payment.root_mandate["iat"] = json!(fx.t(-7200));
                    s.payment.root_mandate["exp"] = json!(fx.t(-3600));
                })
            },
            MandateExpired,
        ),
        (
            "the closed hop was made 20 minutes ago",
            |fx| with(fx, |fx, s| s.checkout.hop_claims["iat"] = json!(fx.t(-1200))),
            MandateExpired,
        ),
        (
            "the closed hop is dated 10 minutes ahead",
            |fx| with(fx, |fx, s| s.payment.hop_claims["iat"] = json!(fx.t(600))),
            MandateNotYetValid,
        ),
        (
            "a root that never expires",
            |fx| {
                with(fx, |_, s| {
                    s.checkout.root_claims.as_object_mut().unwrap().remove("exp");
                    s.checkout.root_mandate.as_object_mut().unwrap().remove("exp");
                })
            },
            MandateMalformed,
        ),
        // --- The merchant's challenge ---------------------------------------
        (
            "presented to another audience",
            |fx| with(fx, |_, s| s.checkout.hop_claims["aud"] = json!("https://other.example")),
            MandateScopeMismatch,
        ),
        (
            "answers another challenge (nonce of another checkout state)",
            |fx| {
                with(fx, |fx, s| {
                    let other = v02::authorize_checkout(fx.ring.signer(), &checkout(3400)).unwrap();
                    s.payment.hop_claims["nonce"] = json!(other.checkout_hash);
                })
            },
            MandateScopeMismatch,
        ),
        (
            "a payment mandate presented as the checkout mandate",
            |fx| rewrite(fx, |_, b| b.checkout = b.payment.clone()),
            MandateMalformed,
        ),
        // --- Constraints --------------------------------------------------------
        (
            "an unknown checkout constraint",
            |fx| {
                with(fx, |_, s| {
                    s.checkout.root_mandate["constraints"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "checkout.max_price", "max": 4000}));
                })
            },
            MandateMalformed,
        ),
        (
            "an unknown payment constraint",
            |fx| {
                with(fx, |_, s| {
                    s.payment.root_mandate["constraints"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "payment.velocity", "per_day": 1}));
                })
            },
            MandateMalformed,
        ),
        (
            "an unknown member on a known constraint",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.amount_range")["per_item"] = json!(10)
                })
            },
            MandateMalformed,
        ),
        (
            "the checkout's items are not among the acceptable ones",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.checkout, "checkout.line_items")["items"][0]
                        ["acceptable_items"] =
                        json!([{"id": "v-tshirt-blue-m", "title": "T-shirt, blue, M"}]);
                })
            },
            MandateScopeMismatch,
        ),
        (
            "allowed_merchants does not name this merchant",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.checkout, "checkout.allowed_merchants")["allowed"] =
                        json!([{"id": "https://other.example", "name": MERCHANT_NAME}]);
                })
            },
            MandateScopeMismatch,
        ),
        (
            "the amount is above the amount range",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.amount_range")["max"] = json!(3000)
                })
            },
            MandateScopeMismatch,
        ),
        (
            "the amount is below the amount range",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.amount_range")["min"] = json!(4000)
                })
            },
            MandateScopeMismatch,
        ),
        (
            "the amount range is in another currency",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.amount_range")["currency"] = json!("EUR")
                })
            },
            MandateScopeMismatch,
        ),
        (
            "the budget is below the amount",
            |fx| with(fx, |_, s| constraint(&mut s.payment, "payment.budget")["max"] = json!(30)),
            MandateScopeMismatch,
        ),
        (
            "allowed_payees names another payee",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.allowed_payees")["allowed"] =
                        json!([{"id": "https://evil.example", "name": MERCHANT_NAME}]);
                })
            },
            MandateScopeMismatch,
        ),
        (
            "the instrument is not an allowed one",
            |fx| {
                with(fx, |_, s| {
                    s.payment.closed.as_mut().unwrap()["payment_instrument"]["id"] =
                        json!("fail_token");
                })
            },
            MandateScopeMismatch,
        ),
        (
            "outside the execution window",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.execution_date")["not_after"] =
                        json!("2026-02-28");
                })
            },
            MandateScopeMismatch,
        ),
        (
            "payment.reference names another open checkout mandate",
            |fx| {
                with(fx, |_, s| {
                    constraint(&mut s.payment, "payment.reference")["conditional_transaction_id"] =
                        json!(sdjwt::hash("another open checkout mandate~"));
                })
            },
            MandateScopeMismatch,
        ),
        (
            "an open payment mandate without payment.reference",
            |fx| {
                with(fx, |_, s| {
                    s.payment.root_mandate["constraints"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|c| c["type"] != "payment.reference");
                })
            },
            MandateMalformed,
        ),
        (
            "a pre-set amount changed by the agent",
            |fx| {
                with(fx, |_, s| {
                    s.payment.root_mandate["payment_amount"] =
                        json!({"amount": 3400, "currency": "USD"})
                })
            },
            MandateScopeMismatch,
        ),
        // --- The closed payment mandate -------------------------------------------
        (
            "another payee",
            |fx| {
                with(fx, |_, s| {
                    s.payment.closed.as_mut().unwrap()["payee"] =
                        json!({"id": "https://evil.example", "name": MERCHANT_NAME});
                })
            },
            MandateScopeMismatch,
        ),
        (
            "this merchant's id under another name",
            |fx| {
                with(fx, |_, s| {
                    s.payment.closed.as_mut().unwrap()["payee"]["name"] = json!("Evil Shop")
                })
            },
            MandateScopeMismatch,
        ),
        (
            "an amount other than the checkout total",
            |fx| {
                with(fx, |_, s| {
                    s.payment.closed.as_mut().unwrap()["payment_amount"] =
                        json!({"amount": 3000, "currency": "USD"});
                })
            },
            MandateScopeMismatch,
        ),
        (
            "a transaction_id of another checkout",
            |fx| {
                with(fx, |_, s| {
                    s.payment.closed.as_mut().unwrap()["transaction_id"] = json!(sdjwt::hash("x"))
                })
            },
            MandateScopeMismatch,
        ),
        (
            "a payment scheduled for later",
            |fx| {
                with(fx, |_, s| {
                    s.payment.closed.as_mut().unwrap()["execution_date"] = json!("2026-03-05")
                })
            },
            MandateScopeMismatch,
        ),
        (
            "an unknown claim in the closed payment mandate",
            |fx| with(fx, |_, s| s.payment.closed.as_mut().unwrap()["refundable"] = json!(false)),
            MandateMalformed,
        ),
        // --- Replay -------------------------------------------------------------------
        (
            "the same mandates presented again",
            |fx| {
                let built = fx.honest();
                Run { prior: vec![built.clone()], ..Run::of(fx, built) }
            },
            MandateReplayed,
        ),
        (
            "a single-use open mandate closed a second time",
            |fx| {
                let first = fx.honest();
                let mut second = first.clone();
                second.checkout = reclose(fx, &first.checkout, AGENT, &fx.closed_checkout(), -20);
                second.payment = reclose(fx, &first.payment, AGENT, &fx.closed_payment(), -20);
                Run { prior: vec![first], ..Run::of(fx, second) }
            },
            MandateReplayed,
        ),
        (
            "a daily recurring mandate used twice in one day",
            |fx| {
                let (first, second) = recurring(
                    fx,
                    json!({"type": "payment.agent_recurrence", "frequency": "DAILY"}),
                );
                Run { prior: vec![first], ..Run::of(fx, second) }
            },
            MandateReplayed,
        ),
        (
            "a recurring mandate past max_occurrences",
            |fx| {
                let (first, second) = recurring(
                    fx,
                    json!({"type": "payment.agent_recurrence", "frequency": "ON_DEMAND", "max_occurrences": 1}),
                );
                Run { prior: vec![first], ..Run::of(fx, second) }
            },
            MandateReplayed,
        ),
    ]
}

#[tokio::test]
async fn every_attack_is_refused_with_its_code() {
    let fx = Fx::default();
    let table = cases();
    assert!(table.len() >= 20, "the attack table has {} rows", table.len());
    let mut failures = Vec::new();
    for (name, make, want) in &table {
        let run = make(&fx);
        match run.go(&fx).await {
            Ok(_) => failures.push(format!("{name}: ACCEPTED, expected {}", want.as_str())),
            Err(e) if e.code() != *want => failures.push(format!(
                "{name}: refused with {} ({}), expected {}",
                e.code().as_str(),
                e.message(),
                want.as_str()
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

/// The honest shapes the table tampers with, so a refusal above is the
/// tampering's doing and not the fixture's.
#[tokio::test]
async fn honest_presentations_are_accepted() {
    let fx = Fx::default();
    let three_hops = {
        let mut spec = fx.spec();
        let mut middle = fx.open_checkout();
        middle["cnf"] = cnf(DELEGATE);
        spec.checkout.middle = vec![(AGENT, middle)];
        spec.checkout.hop_seed = DELEGATE;
        fx.build(&spec)
    };
    let issuer_jwt_hash = {
        let mut spec = fx.spec();
        spec.payment.binding = Binding::IssuerJwtHash;
        fx.build(&spec)
    };
    let cases: Vec<(&str, Built)> = vec![
        ("open then closed (human not present)", fx.honest()),
        ("closed with a KB-JWT (human present)", fx.build(&fx.spec_kb())),
        ("three hops", three_hops),
        ("issuer_jwt_hash binding", issuer_jwt_hash),
    ];
    for (name, built) in cases {
        let v = Run::of(&fx, built).go(&fx).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.amount, fx.total, "{name}");
        assert_eq!(v.instrument.id, TOKEN, "{name}");
        assert_eq!(v.checkout_hash, fx.auth.checkout_hash, "{name}");
        assert_eq!(v.checkout_root_kid, PLATFORM_KID, "{name}");
    }
}

#[tokio::test]
async fn recurring_mandates_plan_one_use_per_period_and_count_uses() {
    let fx = Fx::default();
    let (first, _) = recurring(
        &fx,
        json!({"type": "payment.agent_recurrence", "frequency": "MONTHLY", "max_occurrences": 12}),
    );
    let v = fx.verify(&first).unwrap();
    assert!(v.recurring);
    assert_eq!(v.budgets.len(), 1, "the budget spans the uses");
    let kinds: Vec<String> = v
        .reservations
        .iter()
        .map(|r| match r {
            Reservation::Once { id, .. } => {
                id.rsplitn(2, ':').last().unwrap_or_default().to_owned()
            }
            Reservation::Use { prefix, max, .. } => format!("{prefix}1..{max}"),
        })
        .map(|k| k.split(':').filter(|p| p.len() < 40).collect::<Vec<_>>().join(":"))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "ap2v2:checkout",
            "ap2v2:payment",
            "ap2v2:recurrence:period",
            "ap2v2:recurrence:use:1..12"
        ],
        "closed mandates once; the recurring one per period and per use instead of once"
    );
}
