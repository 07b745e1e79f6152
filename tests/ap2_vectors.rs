//! The worked example of `docs/mandates.md`, generated from code.
//!
//! The example is rebuilt from the fixed keys in `tests/vectors/ap2/` with
//! fixed times and ids. ES256 signing here is deterministic (RFC 6979) and
//! payloads are JCS, so the rebuild is byte-exact. The test fails when the
//! committed vector files or the generated region of the doc differ from
//! the rebuild, and verifies the committed tokens with the real verifier.
//! Run with `AP2_WRITE_VECTORS=1` to rewrite them after a deliberate change.

use std::fs;
use std::path::{Path, PathBuf};

use agentgate::ap2::jws;
use agentgate::ap2::keys::{KeyRing, PrivateKey, PublicKeySet};
use agentgate::ap2::mandates::{
    jcs_hash, token_hash, CartContents, IntentClaims, PaymentClaims, MANDATE_TYP,
};
use agentgate::ap2::{
    sign_cart_mandate, verify_chain, CartMandateRequest, ChainInput, MerchantIdentity, VerifyPolicy,
};
use agentgate::domain::{CheckoutId, Currency, Money};
use rand_core::{CryptoRng, RngCore};
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const CHECKOUT: &str = "chk_0190aa55b2c47e8f9d1a2b3c4d5e6f70";
const MERCHANT_URL: &str = "https://shop.example";
const BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLE (tests/ap2_vectors.rs) -->";
const END: &str = "<!-- END GENERATED EXAMPLE -->";

/// A "random" source that is not: it makes the example reproducible.
struct FixedRng(u8);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0 = self.0.wrapping_add(1);
        dest.fill(self.0);
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
    root().join("tests/vectors/ap2")
}

fn load_key(name: &str) -> PrivateKey {
    let text = fs::read_to_string(vectors().join(name)).expect("vector key file");
    PrivateKey::from_text(&text).expect("vector key parses")
}

fn contents() -> CartContents {
    serde_json::from_value(json!({
        "id": "cart_0190aa55",
        "user_cart_confirmation_required": true,
        "payment_request": {
            "method_data": [{"supported_methods": "CARD", "data": {"network": ["visa", "mastercard"]}}],
            "details": {
                "id": "order_0190aa55",
                "display_items": [
                    {"label": "T-shirt, red, M", "amount": {"amount": 3000, "currency": "USD"}, "sku": "TSHIRT-RED-M", "quantity": 2},
                    {"label": "Shipping", "amount": {"amount": 500, "currency": "USD"}}
                ],
                "total": {"label": "Total", "amount": {"amount": 3500, "currency": "USD"}}
            }
        },
        "cart_expiry": "",
        "merchant_name": "Demo Shop"
    }))
    .expect("contents")
}

struct Example {
    files: Vec<(&'static str, String)>,
    markdown: String,
}

fn header_text(token: &str) -> String {
    let h = token.split('.').next().expect("header");
    String::from_utf8(jws::b64url_decode(h).expect("b64")).expect("utf8")
}

fn payload_text(token: &str) -> String {
    let p = token.split('.').nth(1).expect("payload");
    String::from_utf8(jws::b64url_decode(p).expect("b64")).expect("utf8")
}

fn build() -> Example {
    let user = load_key("user-key.pem");
    let ring = KeyRing::new(load_key("merchant-key.pem"));
    let mut rng = FixedRng(0);

    let mut intent = IntentClaims::new(
        "https://agent.example",
        Money::new(5000, Currency::usd()),
        "Two red T-shirts, size M, for at most 50 USD",
        NOW - Duration::minutes(5),
        Duration::hours(1),
        &mut rng,
    );
    intent.jti = "intent-0001".into();
    intent.merchants = Some(vec![MERCHANT_URL.into()]);
    intent.skus = Some(vec!["TSHIRT-RED-M".into()]);
    let intent_token = intent.sign(&user).expect("intent");

    let checkout = CheckoutId::parse(CHECKOUT).expect("id");
    let (cart_token, cart) = sign_cart_mandate(
        ring.signer(),
        CartMandateRequest {
            merchant_base_url: MERCHANT_URL,
            checkout_id: &checkout,
            contents: contents(),
            intent_mandate: &intent_token,
            ttl: Duration::minutes(15),
        },
        NOW - Duration::minutes(2),
        &mut rng,
    )
    .expect("cart");

    let mut payment = PaymentClaims::for_cart(
        &cart_token,
        &cart,
        "tok_sandbox_4242",
        "CARD",
        NOW - Duration::minutes(1),
        Duration::minutes(10),
        &mut rng,
    )
    .expect("payment");
    payment.jti = "payment-0001".into();
    payment.payment_mandate_contents.payment_mandate_id = "pm-0001".into();
    let payment_token = payment.sign(&user).expect("payment");

    let user_jwks = {
        let mut set = PublicKeySet::new();
        set.insert(user.public().clone(), None).expect("one key");
        set.to_jwks(NOW)
    };
    let merchant_jwks = ring.jwks(NOW);
    let contents_jcs = String::from_utf8(jws::jcs(&cart.contents).expect("jcs")).expect("utf8");
    let example = json!({
        "now": "2026-03-01T12:00:00Z",
        "checkout_id": CHECKOUT,
        "merchant": MERCHANT_URL,
        "user_kid": user.kid(),
        "merchant_kid": ring.active_kid(),
        "intent": {"header": header_text(&intent_token), "payload": payload_text(&intent_token), "token": intent_token},
        "cart": {
            "header": header_text(&cart_token),
            "payload": payload_text(&cart_token),
            "contents_jcs": contents_jcs,
            "cart_hash": cart.cart_hash,
            "intent_hash": cart.intent_hash,
            "token": cart_token,
        },
        "payment": {
            "header": header_text(&payment_token),
            "payload": payload_text(&payment_token),
            "cart_mandate_hash": payment.cart_mandate_hash,
            "token": payment_token,
        },
    });
    assert_eq!(cart.cart_hash, jcs_hash(&cart.contents).expect("hash"));
    assert_eq!(cart.intent_hash, token_hash(&intent_token));
    assert_eq!(payment.cart_mandate_hash, token_hash(&cart_token));

    let markdown = markdown(&example, &sorted(&user_jwks), &sorted(&merchant_jwks));
    let pretty = |v: &Value| format!("{:#}\n", sorted(v));
    let mut contents_file = serde_json::to_value(contents()).expect("json");
    if let Value::Object(m) = &mut contents_file {
        m.remove("cart_expiry");
    }
    Example {
        files: vec![
            ("user.jwks.json", pretty(&user_jwks)),
            ("merchant.jwks.json", pretty(&merchant_jwks)),
            ("contents.json", pretty(&contents_file)),
            ("intent.jws", format!("{intent_token}\n")),
            ("cart.jws", format!("{cart_token}\n")),
            ("payment.jws", format!("{payment_token}\n")),
            ("example.json", pretty(&example)),
        ],
        markdown,
    }
}

/// The value with object members in sorted order, whatever serde_json's
/// `preserve_order` feature says (a dev-dependency turns it on), so the
/// files are the same in every build.
fn sorted(v: &Value) -> Value {
    serde_json::from_slice(&serde_jcs::to_vec(v).expect("jcs")).expect("json")
}

fn markdown(e: &Value, user_jwks: &Value, merchant_jwks: &Value) -> String {
    let s = |v: &Value| v.as_str().expect("string").to_owned();
    let (i, c, p) = (&e["intent"], &e["cart"], &e["payment"]);
    format!(
        r#"{BEGIN}
All values below are in `tests/vectors/ap2/` and are checked by
`cargo test --test ap2_vectors`. The private keys are test keys
(`user-key.pem`, `merchant-key.pem`); never use them for anything else.
"Now" is `{now}`; the checkout id is `{checkout}`; the merchant is `{merchant}`.

User JWKS (`user.jwks.json`), what the agent platform publishes as its UCP
profile `signing_keys`:

```json
{user_jwks:#}
```

Merchant JWKS (`merchant.jwks.json`), served at `/.well-known/jwks.json`:

```json
{merchant_jwks:#}
```

### 1. Intent mandate (signed by the user key)

Protected header:

```json
{ih}
```

Payload (JCS):

```json
{ip}
```

Compact token (`intent.jws`):

```text
{it}
```

### 2. Cart mandate (signed by the merchant key)

`contents` in JCS form:

```json
{cj}
```

`cart_hash` = base64url(SHA-256(the bytes above)) = `{ch}`

`intent_hash` = base64url(SHA-256(ASCII of the intent token)) = `{ihash}`

Protected header:

```json
{chd}
```

Payload (JCS):

```json
{cp}
```

Compact token (`cart.jws`):

```text
{ct}
```

### 3. Payment mandate (signed by the user key)

`cart_mandate_hash` = base64url(SHA-256(ASCII of the cart token)) = `{cmh}`

Protected header:

```json
{ph}
```

Payload (JCS):

```json
{pp}
```

Compact token (`payment.jws`):

```text
{pt}
```

### 4. Check it

```sh
agentgate mandate verify --at {now} \
  --intent tests/vectors/ap2/intent.jws --cart tests/vectors/ap2/cart.jws \
  --payment tests/vectors/ap2/payment.jws \
  --user-jwks tests/vectors/ap2/user.jwks.json \
  --merchant-jwks tests/vectors/ap2/merchant.jwks.json \
  --checkout-id {checkout} --merchant {merchant}
```
{END}"#,
        now = s(&e["now"]),
        checkout = s(&e["checkout_id"]),
        merchant = s(&e["merchant"]),
        ih = s(&i["header"]),
        ip = s(&i["payload"]),
        it = s(&i["token"]),
        cj = s(&c["contents_jcs"]),
        ch = s(&c["cart_hash"]),
        ihash = s(&c["intent_hash"]),
        chd = s(&c["header"]),
        cp = s(&c["payload"]),
        ct = s(&c["token"]),
        cmh = s(&p["cart_mandate_hash"]),
        ph = s(&p["header"]),
        pp = s(&p["payload"]),
        pt = s(&p["token"]),
    )
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

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn vectors_and_doc_match_the_code() {
    let example = build();
    let doc = read(&doc_path());
    let regenerated = replace_region(&doc, &example.markdown)
        .expect("docs/mandates.md has the generated-example markers");
    if write_mode() {
        for (name, text) in &example.files {
            fs::write(vectors().join(name), text).expect("write vector");
        }
        fs::write(doc_path(), &regenerated).expect("write doc");
        return;
    }
    let mut stale = Vec::new();
    for (name, text) in &example.files {
        if read(&vectors().join(name)) != *text {
            stale.push(format!("tests/vectors/ap2/{name}"));
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
fn committed_tokens_verify_as_documented() {
    let token = |name: &str| read(&vectors().join(name)).trim().to_owned();
    let (intent, cart, payment) = (token("intent.jws"), token("cart.jws"), token("payment.jws"));
    let user_keys =
        PublicKeySet::from_jwks_json(&read(&vectors().join("user.jwks.json"))).expect("user");
    let merchant_keys = PublicKeySet::from_jwks_json(&read(&vectors().join("merchant.jwks.json")))
        .expect("merchant");
    let checkout = CheckoutId::parse(CHECKOUT).expect("id");
    let input = ChainInput {
        intent_mandate: &intent,
        cart_mandate: &cart,
        payment_mandate: &payment,
        merchant_keys: &merchant_keys,
        user_keys: &user_keys,
        checkout_id: &checkout,
        merchant: MerchantIdentity { base_url: Some(MERCHANT_URL), name: Some("Demo Shop") },
        now: NOW,
        policy: VerifyPolicy::default(),
    };
    let chain = verify_chain(&input).expect("the documented chain verifies");
    assert_eq!(chain.total().minor(), 3500);
    assert_eq!(chain.payment_token(), "tok_sandbox_4242");
    // The same tokens are stale an hour later: the example does not verify
    // forever by accident.
    let later = ChainInput { now: NOW + Duration::hours(1), ..input };
    assert!(verify_chain(&later).is_err());
    // Every header is exactly what the doc says a header is.
    for t in [&intent, &cart, &payment] {
        let h: Value = serde_json::from_str(&header_text(t)).expect("header");
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["typ"], MANDATE_TYP);
        assert_eq!(h.as_object().map(|o| o.len()), Some(3));
    }
}
