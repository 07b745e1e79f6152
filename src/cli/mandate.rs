//! `agentgate mandate …`: the agent's (and, for tests and docs, the
//! merchant's) side of AP2 mandates, on files: v0.1 chains (`intent`,
//! `cart`, `payment`, `verify`) and v0.2 SD-JWT mandates (`checkout-jwt`,
//! `verify-v2`).
//!
//! Tokens are read from files (surrounding whitespace ignored) and written
//! to stdout or `--out`. `verify` runs the same chain verifier as the
//! gateway, offline: it prints every check and exits non-zero on failure.
//! Replay protection needs the gateway's store, so offline verification
//! cannot and does not check it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use rand_core::OsRng;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::adapters::keyfile::read_secret_file;
use crate::ap2::jws;
use crate::ap2::keys::{KeyRing, PrivateKey, PublicKey, PublicKeySet};
use crate::ap2::mandates::{
    sign_cart_mandate, CartClaims, CartContents, CartMandateRequest, Confirmation, IntentClaims,
    PaymentClaims,
};
use crate::ap2::sdjwt::ChainPolicy;
use crate::ap2::v02;
use crate::ap2::verify::{
    verify_cart_mandate, verify_chain_report, ChainInput, ClockSkew, MerchantIdentity, VerifyPolicy,
};
use crate::domain::{CheckoutId, Currency, Money};
use secrecy::ExposeSecret as _;

#[derive(Debug, clap::Subcommand)]
pub enum MandateCommand {
    /// Sign an intent mandate with the user's (or agent platform's) key.
    Intent(IntentArgs),
    /// Sign a cart mandate with a merchant key (what the gateway does).
    Cart(CartArgs),
    /// Sign a payment mandate for a cart mandate.
    Payment(PaymentArgs),
    /// Verify an intent/cart/payment chain offline and print every check.
    Verify(VerifyArgs),
    /// Sign a checkout as the merchant does for AP2 v0.2: prints its
    /// `merchant_authorization`, `checkout_jwt` and `checkout_hash`.
    CheckoutJwt(CheckoutJwtArgs),
    /// Verify AP2 v0.2 checkout and payment mandates (SD-JWT) offline
    /// against a checkout response carrying `ap2.merchant_authorization`.
    VerifyV2(VerifyV2Args),
}

#[derive(Debug, clap::Args)]
pub struct CheckoutJwtArgs {
    /// Merchant private key file (PEM or JWK); its thumbprint is the kid.
    #[arg(long)]
    key: PathBuf,
    /// JSON file with the checkout (an `ap2` member is ignored).
    #[arg(long)]
    checkout: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyV2Args {
    /// File holding `ap2.checkout_mandate`.
    #[arg(long)]
    checkout_mandate: PathBuf,
    /// File holding the payment mandate (the instrument's credential token).
    #[arg(long)]
    payment_mandate: PathBuf,
    /// The checkout response the mandates answer, with
    /// `ap2.merchant_authorization`, as JSON.
    #[arg(long)]
    checkout: PathBuf,
    /// JWKS of the keys that may sign a mandate's root (the agent platform's
    /// profile keys, or a trusted issuer's).
    #[arg(long)]
    agent_jwks: PathBuf,
    /// JWKS the merchant publishes (`/.well-known/jwks.json`).
    #[arg(long)]
    merchant_jwks: PathBuf,
    /// The audience the presentations must name [default: the checkout's
    /// `merchant.id`].
    #[arg(long)]
    audience: Option<String>,
    /// Clock skew in seconds (0 to 300).
    #[arg(long, default_value_t = 60)]
    skew: i64,
    /// Verify as of this RFC 3339 instant instead of now.
    #[arg(long)]
    at: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct IntentArgs {
    /// Most the agent may spend, in minor units (5000 = 50.00 USD).
    #[arg(long)]
    max_amount: i64,
    #[arg(long)]
    currency: String,
    /// Private key file (PEM or JWK).
    #[arg(long)]
    key: PathBuf,
    /// Allowed merchant (base URL or name); repeat for several. None = any.
    #[arg(long = "merchant")]
    merchants: Vec<String>,
    /// Allowed SKU; repeat for several. None = any.
    #[arg(long = "sku")]
    skus: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u32,
    /// Public key (JWK, SPKI PEM, or a private key file whose public half is
    /// used) of the agent allowed to sign the payment mandate.
    #[arg(long)]
    cnf_jwk: Option<PathBuf>,
    /// Let the cnf agent pay without the user confirming the cart (AP2
    /// `user_cart_confirmation_required: false`).
    #[arg(long)]
    no_user_confirmation: bool,
    #[arg(long)]
    requires_refundability: bool,
    #[arg(long, default_value = "urn:agentgate:cli")]
    issuer: String,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CartArgs {
    /// Merchant private key file (PEM or JWK); its thumbprint is the kid.
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    checkout_id: String,
    /// File holding the compact intent mandate.
    #[arg(long)]
    intent: PathBuf,
    /// JSON file with the AP2 CartContents (`cart_expiry` is filled in).
    #[arg(long)]
    contents: PathBuf,
    /// Merchant base URL, written as `iss`.
    #[arg(long)]
    merchant: String,
    #[arg(long, default_value_t = 900)]
    ttl: u32,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PaymentArgs {
    /// File holding the compact cart mandate.
    #[arg(long)]
    cart_mandate: PathBuf,
    /// Payment credential token from the payment handler.
    #[arg(long)]
    token: String,
    /// The intent signer's key, or the intent's cnf key.
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value = "CARD")]
    method_name: String,
    #[arg(long, default_value_t = 600)]
    ttl: u32,
    /// Check the cart mandate's signature against this JWKS first.
    #[arg(long)]
    merchant_jwks: Option<PathBuf>,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(long)]
    intent: PathBuf,
    #[arg(long)]
    cart: PathBuf,
    #[arg(long)]
    payment: PathBuf,
    /// JWKS of the user / agent platform keys.
    #[arg(long)]
    user_jwks: PathBuf,
    /// JWKS the merchant publishes (`/.well-known/jwks.json`).
    #[arg(long)]
    merchant_jwks: PathBuf,
    #[arg(long)]
    checkout_id: String,
    /// Expected merchant base URL (the cart's `iss`).
    #[arg(long)]
    merchant: Option<String>,
    /// Expected merchant name (the cart's `contents.merchant_name`).
    #[arg(long)]
    merchant_name: Option<String>,
    /// Clock skew in seconds (0 to 300).
    #[arg(long, default_value_t = 60)]
    skew: i64,
    /// Verify as of this RFC 3339 instant instead of now.
    #[arg(long)]
    at: Option<String>,
}

pub fn run(cmd: MandateCommand) -> anyhow::Result<()> {
    match cmd {
        MandateCommand::Intent(args) => intent(args),
        MandateCommand::Cart(args) => cart(args),
        MandateCommand::Payment(args) => payment(args),
        MandateCommand::Verify(args) => verify(args),
        MandateCommand::CheckoutJwt(args) => checkout_jwt(args),
        MandateCommand::VerifyV2(args) => verify_v2(args),
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    jws::parse_json_strict(read_text(path)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", path.display()))
}

fn checkout_jwt(args: CheckoutJwtArgs) -> anyhow::Result<()> {
    let ring = KeyRing::new(read_key(&args.key)?);
    let checkout = v02::without_ap2(&read_json(&args.checkout)?);
    let auth = v02::authorize_checkout(ring.signer(), &checkout)?;
    println!(
        "{}",
        serde_json::json!({
            "merchant_authorization": auth.detached,
            "checkout_jwt": auth.checkout_jwt,
            "checkout_hash": auth.checkout_hash,
        })
    );
    Ok(())
}

fn verify_v2(args: VerifyV2Args) -> anyhow::Result<()> {
    let now = match &args.at {
        Some(at) => OffsetDateTime::parse(at, &Rfc3339)
            .with_context(|| format!("--at {at:?} is not an RFC 3339 instant"))?,
        None => OffsetDateTime::now_utc(),
    };
    let checkout_mandate = read_token(&args.checkout_mandate)?;
    let payment_mandate = read_token(&args.payment_mandate)?;
    let checkout = read_json(&args.checkout)?;
    let agent_keys = read_jwks(&args.agent_jwks)?;
    let merchant_keys = read_jwks(&args.merchant_jwks)?;
    let merchant: v02::Merchant = serde_json::from_value(checkout["merchant"].clone())
        .context("the checkout names no merchant (AP2 checkouts carry `merchant`)")?;
    let total = checkout["totals"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["type"] == "total"))
        .and_then(|t| t["amount"].as_i64())
        .context("the checkout has no total")?;
    let currency = Currency::parse(checkout["currency"].as_str().unwrap_or_default())?;
    let audience = args.audience.unwrap_or_else(|| merchant.id.clone());
    let policy = ChainPolicy {
        skew: ClockSkew::new(Duration::seconds(args.skew))?,
        ..ChainPolicy::default()
    };
    let outcome = v02::verify_merchant_authorization(&checkout, &merchant_keys, now)
        .and_then(|()| v02::checkout_jwt_of(&checkout))
        .and_then(|authorization| {
            println!("✓ merchant_authorization (checkout_hash {})", authorization.checkout_hash);
            v02::verify_mandates(&v02::MandateInput {
                checkout_mandate: &checkout_mandate,
                payment_mandate: &payment_mandate,
                agent_keys: &agent_keys,
                audience: &audience,
                view: v02::CheckoutView {
                    authorization: &authorization,
                    checkout: &v02::without_ap2(&checkout),
                    merchant: &merchant,
                    merchant_keys: &merchant_keys,
                    total: Money::new(total, currency),
                },
                now,
                policy,
            })
        });
    match outcome {
        Ok(v) => {
            println!("✓ checkout mandate (root kid {})", v.checkout_root_kid);
            println!(
                "✓ payment mandate (root kid {}): {} with instrument {}",
                v.payment_root_kid, v.amount, v.instrument.kind
            );
            println!(
                "- replay ({} reservations): not checked offline; the gateway checks it on complete",
                v.reservations.len()
            );
            println!("mandates verified; receipt reference {}", v.checkout_reference);
            Ok(())
        }
        Err(e) => {
            println!("✗ {}: {}", e.code(), e.message());
            bail!("mandates rejected: {}", e.code())
        }
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    Ok(read_text(path)?.trim().to_owned())
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKey> {
    let text = read_secret_file(path)?;
    PrivateKey::from_text(text.expose_secret())
        .with_context(|| format!("{} is not a P-256 private key", path.display()))
}

fn read_jwks(path: &Path) -> anyhow::Result<PublicKeySet> {
    PublicKeySet::from_jwks_json(&read_text(path)?)
        .with_context(|| format!("{} is not a usable JWKS", path.display()))
}

fn emit(token: &str, out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(path) => std::fs::write(path, format!("{token}\n"))
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            println!("{token}");
            Ok(())
        }
    }
}

fn seconds(ttl: u32) -> Duration {
    Duration::seconds(i64::from(ttl))
}

fn intent(args: IntentArgs) -> anyhow::Result<()> {
    let key = read_key(&args.key)?;
    let max = Money::new(args.max_amount, Currency::parse(&args.currency)?);
    let description = args.description.unwrap_or_else(|| format!("Purchases up to {max}"));
    let mut claims = IntentClaims::new(
        args.issuer,
        max,
        description,
        OffsetDateTime::now_utc(),
        seconds(args.ttl),
        &mut OsRng,
    );
    claims.merchants = (!args.merchants.is_empty()).then_some(args.merchants);
    claims.skus = (!args.skus.is_empty()).then_some(args.skus);
    claims.requires_refundability = args.requires_refundability;
    claims.user_cart_confirmation_required = !args.no_user_confirmation;
    if let Some(path) = &args.cnf_jwk {
        let agent = PublicKey::from_text(read_secret_file(path)?.expose_secret())
            .with_context(|| format!("{} holds no P-256 key", path.display()))?;
        claims.cnf = Some(Confirmation { jwk: agent.to_jwk() });
    }
    emit(&claims.sign(&key)?, args.out.as_deref())
}

fn cart(args: CartArgs) -> anyhow::Result<()> {
    let key = read_key(&args.key)?.with_thumbprint_kid();
    let checkout = CheckoutId::parse(&args.checkout_id)?;
    let intent = read_token(&args.intent)?;
    let mut contents = jws::parse_json_strict(read_text(&args.contents)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", args.contents.display()))?;
    // The signer sets cart_expiry; a contents file need not carry one.
    if let Value::Object(m) = &mut contents {
        m.entry("cart_expiry").or_insert_with(|| Value::String(String::new()));
    }
    let contents: CartContents = jws::from_json_value(contents)?;
    let (token, _) = sign_cart_mandate(
        &key,
        CartMandateRequest {
            merchant_base_url: &args.merchant,
            checkout_id: &checkout,
            contents,
            intent_mandate: &intent,
            ttl: seconds(args.ttl),
        },
        OffsetDateTime::now_utc(),
        &mut OsRng,
    )?;
    emit(&token, args.out.as_deref())
}

fn payment(args: PaymentArgs) -> anyhow::Result<()> {
    let key = read_key(&args.key)?;
    let cart_token = read_token(&args.cart_mandate)?;
    let now = OffsetDateTime::now_utc();
    let cart: CartClaims = match &args.merchant_jwks {
        Some(path) => {
            verify_cart_mandate(&cart_token, &read_jwks(path)?, now, &VerifyPolicy::default())?
        }
        None => {
            eprintln!("warning: cart mandate signature not checked (pass --merchant-jwks)");
            CartClaims::peek_unverified(&cart_token)?
        }
    };
    let claims = PaymentClaims::for_cart(
        &cart_token,
        &cart,
        args.token,
        args.method_name,
        now,
        seconds(args.ttl),
        &mut OsRng,
    )?;
    emit(&claims.sign(&key)?, args.out.as_deref())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let now = match &args.at {
        Some(at) => OffsetDateTime::parse(at, &Rfc3339)
            .with_context(|| format!("--at {at:?} is not an RFC 3339 instant"))?,
        None => OffsetDateTime::now_utc(),
    };
    let (intent, cart, payment) =
        (read_token(&args.intent)?, read_token(&args.cart)?, read_token(&args.payment)?);
    let user_keys = read_jwks(&args.user_jwks)?;
    let merchant_keys = read_jwks(&args.merchant_jwks)?;
    let checkout = CheckoutId::parse(&args.checkout_id)?;
    let policy = VerifyPolicy {
        skew: ClockSkew::new(Duration::seconds(args.skew))?,
        ..VerifyPolicy::default()
    };
    let report = verify_chain_report(&ChainInput {
        intent_mandate: &intent,
        cart_mandate: &cart,
        payment_mandate: &payment,
        merchant_keys: &merchant_keys,
        user_keys: &user_keys,
        checkout_id: &checkout,
        merchant: MerchantIdentity {
            base_url: args.merchant.as_deref(),
            name: args.merchant_name.as_deref(),
        },
        now,
        policy,
    });
    for check in &report.checks {
        match &check.error {
            None => println!("✓ {}", check.name),
            Some(e) => println!("✗ {}  {}: {}", check.name, e.code(), e.message()),
        }
    }
    println!(
        "- replay (mandate ids used once): not checked offline; the gateway checks it on complete"
    );
    match report.result {
        Ok(chain) => {
            println!(
                "chain verified: {} paid by {} (intent max {})",
                chain.total(),
                match chain.payment_signer() {
                    crate::ap2::verify::PaymentSigner::User =>
                        format!("user key {}", chain.user_kid()),
                    crate::ap2::verify::PaymentSigner::Delegated { kid, .. } =>
                        format!("delegated agent key {kid}"),
                },
                chain.intent_max()
            );
            Ok(())
        }
        Err(e) => bail!("chain rejected: {}", e.code()),
    }
}
