//! The AP2 v0.2 worked example of `docs/mandates.md`, generated from code.
//!
//! The example is rebuilt from fixed keys, times and salts: ES256 signing
//! is deterministic (RFC 6979), payloads are JCS and the salts come from a
//! fixed source, so the rebuild is byte-exact. The test fails when the
//! committed files in `tests/vectors/ap2v2/` or the generated region of
//! the doc differ from the rebuild, and verifies the committed mandates
//! with the real verifier. Run with `AP2_WRITE_VECTORS=1` to rewrite them
//! after a deliberate change.

use std::fs;
use std::path::{Path, PathBuf};

use agentgate::ap2::jws;
use agentgate::ap2::keys::{KeyRing, PrivateKey, PublicKeySet};
use agentgate::ap2::sdjwt::{self, ChainPolicy, TYP_HOP_CLOSED};
use agentgate::ap2::v02::{self, issue, CheckoutView, MandateInput, Merchant};
use agentgate::domain::{Currency, Money};
use rand_core::{CryptoRng, RngCore};
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const MERCHANT_URL: &str = "https://shop.example";
const PLATFORM_KID: &str = "platform-key-1";
const BEGIN: &str = "<!-- BEGIN GENERATED V0.2 EXAMPLE (tests/ap2v2_vectors.rs) -->";
const END: &str = "<!-- END GENERATED V0.2 EXAMPLE -->";

/// A "random" source that is not: it makes the salts reproducible.
struct FixedRng(u8);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest.iter_mut() {
            self.0 = self.0.wrapping_mul(31).wrapping_add(17);
            *b = self.0;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vectors() -> PathBuf {
    root().join("tests/vectors/ap2v2")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A test key from a fixed scalar.
fn fixed_key(seed: u8) -> PrivateKey {
    let d = jws::b64url(&[seed; 32]);
    PrivateKey::from_text(&json!({"kty":"EC","crv":"P-256","d": d}).to_string()).expect("key")
}

fn merchant_key() -> PrivateKey {
    PrivateKey::from_text(&read(&root().join("tests/vectors/ap2/merchant-key.pem"))).expect("key")
}

fn merchant() -> Merchant {
    Merchant {
        id: MERCHANT_URL.into(),
        name: "Demo Shop".into(),
        website: Some(MERCHANT_URL.into()),
    }
}

fn checkout() -> Value {
    json!({
        "ucp": {"version": "2026-04-08", "capabilities": {
            "dev.ucp.shopping.ap2_mandate": [{"version": "2026-04-08"}],
            "dev.ucp.shopping.checkout": [{"version": "2026-04-08"}]},
            "payment_handlers": {"dev.agentgate.payments.sandbox": [{"id": "sandbox", "version": "2026-04-08"}]}},
        "id": "chk_0190aa55b2c47e8f9d1a2b3c4d5e6f70",
        "merchant": merchant(),
        "line_items": [{"id": "li_1", "item": {"id": "v-tshirt-red-m", "title": "T-shirt, red, M", "price": 1500},
                        "quantity": 2, "totals": [{"type": "subtotal", "amount": 3000}, {"type": "total", "amount": 3000}]}],
        "status": "ready_for_complete",
        "currency": "USD",
        "totals": [{"type": "subtotal", "display_text": "Subtotal", "amount": 3000},
                   {"type": "fulfillment", "display_text": "Standard", "amount": 500},
                   {"type": "total", "display_text": "Total", "amount": 3500}],
        "links": [{"type": "terms_of_service", "url": "https://shop.example/terms"}],
        "payment": {"instruments": [{"id": "instrument_1", "handler_id": "sandbox", "type": "card", "selected": true}]},
        "expires_at": "2026-03-01T18:00:00Z"
    })
}

/// Pretty JSON with members sorted, whatever serde_json's `preserve_order`
/// feature says (a dev-dependency turns it on).
fn pretty(v: &Value) -> String {
    let sorted: Value = serde_json::from_slice(&jws::jcs(v).expect("jcs")).expect("json");
    serde_json::to_string_pretty(&sorted).expect("json")
}

struct Example {
    files: Vec<(&'static str, String)>,
    markdown: String,
}

/// One SD-JWT for the doc: header, payload, and each disclosure decoded.
fn describe(title: &str, segment: &str) -> String {
    let jwt = segment.split('~').next().expect("jwt");
    let part = |i: usize| {
        let text = jwt.split('.').nth(i).expect("part");
        String::from_utf8(jws::b64url_decode(text).expect("b64")).expect("utf8")
    };
    let mut out = format!(
        "{title}\n\nProtected header:\n\n```json\n{}\n```\n\nPayload:\n\n```json\n{}\n```\n",
        part(0),
        part(1)
    );
    out.push_str("\nDisclosures (digest: decoded):\n\n```text\n");
    for d in segment.split('~').skip(1).filter(|d| !d.is_empty()) {
        let decoded = String::from_utf8(jws::b64url_decode(d).expect("b64")).expect("utf8");
        out.push_str(&format!("{}: {decoded}\n", sdjwt::hash(d)));
    }
    out.push_str("```\n");
    out
}

fn build() -> Example {
    let platform = fixed_key(21).with_kid(PLATFORM_KID).expect("kid");
    let agent = fixed_key(22);
    let ring = KeyRing::new(merchant_key());
    let mut rng = FixedRng(7);
    let t = |offset: i64| NOW.unix_timestamp() + offset;

    let plain = checkout();
    let auth = v02::authorize_checkout(ring.signer(), &plain).expect("sign checkout");
    let mut response = plain.clone();
    response["ap2"] = json!({"merchant_authorization": auth.detached});

    let cnf = json!({"jwk": agent.public().to_jwk()});
    let root_claims = json!({"iat": t(-3600), "exp": t(7 * 86_400)});
    let open_checkout = json!({
        "vct": v02::VCT_CHECKOUT_OPEN,
        "constraints": [
            {"type": "checkout.line_items", "items": [{"id": "shirts", "quantity": 2, "acceptable_items": [
                {"id": "v-tshirt-red-m", "title": "T-shirt, red, M"},
                {"id": "v-tshirt-blue-m", "title": "T-shirt, blue, M"}]}]},
            {"type": "checkout.allowed_merchants", "allowed": [{"id": MERCHANT_URL, "name": "Demo Shop"}]}
        ],
        "cnf": cnf,
        "iat": t(-3600),
        "exp": t(7 * 86_400)
    });
    let checkout_root =
        issue::sign_hop(&platform, "dc+sd-jwt", &open_checkout, &root_claims, &mut rng)
            .expect("checkout root");
    let hop_claims = |prev: &str| json!({"iat": t(-30), "aud": MERCHANT_URL, "nonce": auth.checkout_hash, "sd_hash": sdjwt::hash(prev)});
    let closed_checkout = json!({
        "vct": v02::VCT_CHECKOUT,
        "checkout_jwt": auth.checkout_jwt,
        "checkout_hash": auth.checkout_hash
    });
    let checkout_hop = issue::sign_hop(
        &agent,
        TYP_HOP_CLOSED,
        &closed_checkout,
        &hop_claims(&checkout_root),
        &mut rng,
    )
    .expect("checkout hop");
    let checkout_mandate = format!("{checkout_root}~{checkout_hop}");

    let open_payment = json!({
        "vct": v02::VCT_PAYMENT_OPEN,
        "constraints": [
            {"type": "payment.reference", "conditional_transaction_id": sdjwt::hash(&checkout_root)},
            {"type": "payment.amount_range", "currency": "USD", "max": 5000},
            {"type": "payment.allowed_payees", "allowed": [merchant()]}
        ],
        "cnf": cnf,
        "iat": t(-3600),
        "exp": t(7 * 86_400)
    });
    let payment_root =
        issue::sign_hop(&platform, "dc+sd-jwt", &open_payment, &root_claims, &mut rng)
            .expect("payment root");
    let closed_payment = json!({
        "vct": v02::VCT_PAYMENT,
        "transaction_id": auth.checkout_hash,
        "payee": merchant(),
        "payment_amount": {"amount": 3500, "currency": "USD"},
        "payment_instrument": {"id": "success_token", "type": "card", "description": "Visa •••• 4242"}
    });
    let payment_hop = issue::sign_hop(
        &agent,
        TYP_HOP_CLOSED,
        &closed_payment,
        &hop_claims(&payment_root),
        &mut rng,
    )
    .expect("payment hop");
    let payment_mandate = format!("{payment_root}~{payment_hop}");

    let platform_jwks = json!({"keys": [platform.public().to_jwk()]});
    let merchant_jwks = ring.jwks(NOW);
    let reference = sdjwt::hash(sdjwt::parse(&checkout_mandate).expect("parses").closed_jwt());
    let now = NOW.format(&time::format_description::well_known::Rfc3339).expect("time");
    let header = String::from_utf8(
        jws::b64url_decode(auth.detached.split('.').next().expect("header")).expect("b64"),
    )
    .expect("utf8");

    let markdown = format!(
        r#"{BEGIN}
All values below are in `tests/vectors/ap2v2/` and are checked by
`cargo test --test ap2v2_vectors`. The private keys are test keys
(`platform-key.pem`, `agent-key.pem`, and `../ap2/merchant-key.pem`); never
use them for anything else. "Now" is `{now}`; the merchant is
`{MERCHANT_URL}`. Salts are fixed here so the example is reproducible; real
salts are 128 random bits.

Platform JWKS (`platform.jwks.json`), what the agent platform publishes as
its UCP profile `signing_keys`; its key signs both roots:

```json
{platform_jwks}
```

Merchant JWKS (`merchant.jwks.json`), served at `/.well-known/jwks.json`:

```json
{merchant_jwks}
```

### 1. The checkout and the merchant's signature

The checkout response (`checkout-response.json`):

```json
{response}
```

`ap2.merchant_authorization` has the header `{header}`. With the base64url
of the JCS form of the checkout without `ap2` put back between its dots,
it is the checkout JWT (`checkout.jwt`):

```text
{checkout_jwt}
```

`checkout_hash` = base64url(SHA-256(ASCII of that JWT)) = `{checkout_hash}`:
the closed checkout mandate's `checkout_hash`, the closed payment mandate's
`transaction_id`, and the `nonce` of both presentations.

### 2. Checkout mandate

{checkout_root_doc}
{checkout_hop_doc}
The presentation (`checkout-mandate.sdjwt`, sent as `ap2.checkout_mandate`):

```text
{checkout_mandate}
```

### 3. Payment mandate

{payment_root_doc}
{payment_hop_doc}
The presentation (`payment-mandate.sdjwt`, sent as the selected instrument's
`credential.token`):

```text
{payment_mandate}
```

The checkout receipt's `reference` for these mandates is base64url(SHA-256(the
closed checkout hop's JWT)) = `{reference}`.

### 4. Check it

```sh
agentgate mandate verify-v2 --at {now} \
  --checkout-mandate tests/vectors/ap2v2/checkout-mandate.sdjwt \
  --payment-mandate tests/vectors/ap2v2/payment-mandate.sdjwt \
  --checkout tests/vectors/ap2v2/checkout-response.json \
  --agent-jwks tests/vectors/ap2v2/platform.jwks.json \
  --merchant-jwks tests/vectors/ap2v2/merchant.jwks.json
```
{END}"#,
        platform_jwks = pretty(&platform_jwks),
        merchant_jwks = pretty(&merchant_jwks),
        response = pretty(&response),
        checkout_jwt = auth.checkout_jwt,
        checkout_hash = auth.checkout_hash,
        checkout_root_doc = describe("The root, signed by the platform key (an open checkout mandate delegating to the agent key):", &checkout_root),
        checkout_hop_doc = describe(&format!("The closed hop, signed by the agent key (`sd_hash` = base64url(SHA-256(the root as presented, up to its last `~`)) = `{}`):", sdjwt::hash(&checkout_root)), &checkout_hop),
        payment_root_doc = describe("The root, signed by the platform key (an open payment mandate; `payment.reference` is the checkout root's `sd_hash`):", &payment_root),
        payment_hop_doc = describe("The closed hop, signed by the agent key:", &payment_hop),
    );
    let pem = |k: &PrivateKey| k.export_pkcs8_pem().expect("pem").expose_secret().to_owned();
    Example {
        files: vec![
            ("platform-key.pem", pem(&platform)),
            ("agent-key.pem", pem(&agent)),
            ("platform.jwks.json", format!("{}\n", pretty(&platform_jwks))),
            ("merchant.jwks.json", format!("{}\n", pretty(&merchant_jwks))),
            ("checkout-response.json", format!("{}\n", pretty(&response))),
            ("checkout.jwt", format!("{}\n", auth.checkout_jwt)),
            ("checkout-mandate.sdjwt", format!("{checkout_mandate}\n")),
            ("payment-mandate.sdjwt", format!("{payment_mandate}\n")),
        ],
        markdown,
    }
}

fn doc_path() -> PathBuf {
    root().join("docs/mandates.md")
}

fn replace_region(doc: &str, region: &str) -> Option<String> {
    let start = doc.find(BEGIN)?;
    let end = doc.find(END)? + END.len();
    Some(format!("{}{}{}", &doc[..start], region, &doc[end..]))
}

fn write_mode() -> bool {
    std::env::var_os("AP2_WRITE_VECTORS").is_some_and(|v| v == "1")
}

#[test]
fn vectors_and_doc_match_the_code() {
    let example = build();
    let doc = read(&doc_path());
    let regenerated = replace_region(&doc, &example.markdown)
        .expect("docs/mandates.md has the generated v0.2 example markers");
    if write_mode() {
        fs::create_dir_all(vectors()).expect("vector dir");
        for (name, text) in &example.files {
            fs::write(vectors().join(name), text).expect("write vector");
        }
        fs::write(doc_path(), &regenerated).expect("write doc");
        return;
    }
    let mut stale = Vec::new();
    for (name, text) in &example.files {
        if read(&vectors().join(name)) != *text {
            stale.push(format!("tests/vectors/ap2v2/{name}"));
        }
    }
    if regenerated != doc {
        stale.push("docs/mandates.md".into());
    }
    assert!(
        stale.is_empty(),
        "stale (rerun with AP2_WRITE_VECTORS=1 if the change is deliberate): {stale:?}"
    );
}

#[test]
fn committed_mandates_verify_as_documented() {
    let text = |name: &str| read(&vectors().join(name)).trim().to_owned();
    let response: Value = serde_json::from_str(&text("checkout-response.json")).expect("json");
    let merchant_keys = PublicKeySet::from_jwks_json(&text("merchant.jwks.json")).expect("jwks");
    let agent_keys = PublicKeySet::from_jwks_json(&text("platform.jwks.json")).expect("jwks");
    v02::verify_merchant_authorization(&response, &merchant_keys, NOW).expect("authorization");
    let auth = v02::checkout_jwt_of(&response).expect("checkout jwt");
    assert_eq!(auth.checkout_jwt, text("checkout.jwt"));
    let (checkout_mandate, payment_mandate) =
        (text("checkout-mandate.sdjwt"), text("payment-mandate.sdjwt"));
    let plain = v02::without_ap2(&response);
    let merchant = merchant();
    let input = MandateInput {
        checkout_mandate: &checkout_mandate,
        payment_mandate: &payment_mandate,
        agent_keys: &agent_keys,
        audience: MERCHANT_URL,
        view: CheckoutView {
            authorization: &auth,
            checkout: &plain,
            merchant: &merchant,
            merchant_keys: &merchant_keys,
            total: Money::new(3500, Currency::usd()),
        },
        now: NOW,
        policy: ChainPolicy::default(),
    };
    let verified = v02::verify_mandates(&input).expect("the documented mandates verify");
    assert_eq!(verified.instrument.id, "success_token");
    // Stale an hour later: the presentations answer a challenge of now.
    let later = MandateInput { now: NOW + Duration::hours(1), ..input };
    assert_eq!(
        v02::verify_mandates(&later).unwrap_err().code(),
        agentgate::domain::ErrorCode::MandateExpired
    );
    // The committed private keys are the ones whose public halves are
    // published: the platform key in the JWKS, the agent key as the cnf of
    // the open mandate.
    let platform = PrivateKey::from_text(&text("platform-key.pem")).expect("pem");
    assert!(agent_keys.keys().any(|k| k.thumbprint() == platform.public().thumbprint()));
    let agent = PrivateKey::from_text(&text("agent-key.pem")).expect("pem");
    let chain = sdjwt::verify_chain(&sdjwt::ChainInput {
        presentation: &checkout_mandate,
        root_keys: &agent_keys,
        audience: MERCHANT_URL,
        nonce: &auth.checkout_hash,
        now: NOW,
        policy: ChainPolicy::default(),
    })
    .expect("chain");
    assert_eq!(
        chain.hops[0].cnf.as_ref().map(|k| k.thumbprint()),
        Some(agent.public().thumbprint())
    );
    assert_eq!(chain.root_kid, PLATFORM_KID);
}
