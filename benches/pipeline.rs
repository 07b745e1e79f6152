//! The whole checkout pipeline in-process, on the embedded SQLite store
//! and catalog that `bootstrap` builds: no HTTP, no MCP, the `Gateway`
//! calls a transport makes.
//!
//! - `create_update_complete`: a checkout with two lines is created, then
//!   updated with the shipping address, option and payment instrument
//!   (ready), the merchant signs the cart mandate for the buyer's intent,
//!   and the checkout completes with the v0.1 mandate chain (verification
//!   of three ES256 signatures, guardrail, charge on the sandbox
//!   processor, the atomic commit of order, stock, ledger and outbox, the
//!   signed receipt). The agent's signatures (intent, payment) are made
//!   outside the measured time: the intent before the iteration, the
//!   payment mandate between the two timed halves, because it signs the
//!   cart mandate the merchant issues mid-pipeline. That is why this one
//!   times by hand (`iter_custom`) instead of `iter_batched`.
//! - `complete`: only `complete_checkout`, with everything before it done
//!   and every mandate signed in the untimed setup (`iter_batched`).
//!
//! Each iteration is a fresh checkout with fresh mandates (their ids are
//! single-use). The agent's keys come from a trusted JWKS file, so no
//! profile is fetched. Rate limits are off: this measures the pipeline,
//! not the limiter.
//!
//! `cargo bench --bench pipeline`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate::ap2::mandates::{CartClaims, PaymentClaims};
use agentgate::ap2::{IntentClaims, PrivateKey};
use agentgate::bootstrap::{self, App};
use agentgate::domain::{CheckoutId, CheckoutStatus, Currency, Money, Sku};
use agentgate::gateway::{
    Caller, CheckoutContext, CheckoutInput, CheckoutOutcome, CompleteRequest, Gateway, MandateChain,
};
use agentgate::settings::{RateLimits, RawSettings, Settings};
use agentgate::ucp::profile::{AP2_MANDATE, CAPABILITIES};
use agentgate::ucp::wire::v2026_04_08::CheckoutRequest;
use criterion::{BatchSize, Criterion};
use serde_json::json;
use time::OffsetDateTime;
use tokio::runtime::Runtime;

const SHIRT: &str = "v-linen-camp-shirt-m";
const TEE: &str = "v-organic-cotton-tee-black";
const MERCHANT: &str = "https://shop.example";

struct Bench {
    _dir: tempfile::TempDir,
    app: App,
    agent: PrivateKey,
    caller: Caller,
    ctx: CheckoutContext,
    create: CheckoutInput,
    update: CheckoutInput,
}

fn setup(rt: &Runtime) -> Bench {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = PrivateKey::generate(&mut rand_core::OsRng);
    let jwks = dir.path().join("agents.jwks.json");
    std::fs::write(&jwks, json!({"keys": [agent.public().to_jwk()]}).to_string()).unwrap();
    let raw = RawSettings {
        data_dir: dir.path().join("data"),
        public_base_url: Some(MERCHANT.into()),
        merchant_name: "Demo Shop".into(),
        trusted_agent_jwks_file: Some(jwks),
        rate_limits: RateLimits { enabled: false, ..RateLimits::default() },
        ..RawSettings::default()
    };
    let app = rt.block_on(bootstrap::build(Settings::from_raw(raw).unwrap())).expect("app");
    for sku in ["LINEN-CAMP-SHIRT-M", "ORGANIC-COTTON-TEE-BLACK"] {
        rt.block_on(app.store.set_stock(&Sku::parse(sku).unwrap(), 4_000_000_000)).unwrap();
    }

    // The inputs a UCP REST create and update carry, read by the wire
    // layer once; each iteration sends a copy.
    let capabilities: Vec<String> =
        CAPABILITIES.iter().map(|c| c.name).filter(|n| *n != AP2_MANDATE).map(Into::into).collect();
    let lines =
        json!([{"item": {"id": SHIRT}, "quantity": 1}, {"item": {"id": TEE}, "quantity": 2}]);
    let create: CheckoutRequest = serde_json::from_value(json!({
        "line_items": lines,
        "buyer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
    }))
    .unwrap();
    let update: CheckoutRequest = serde_json::from_value(json!({
        "line_items": lines,
        "fulfillment": {"methods": [{"type": "shipping", "destinations": [{
            "street_address": "1 Main St", "address_locality": "Springfield",
            "address_region": "IL", "postal_code": "62701", "address_country": "US"}],
            "groups": [{"selected_option_id": "us-standard"}]}]},
        "payment": {"instruments": [{"id": "i1", "handler_id": "sandbox", "type": "card",
            "credential": {"type": "token", "token": "success_token"}}]},
    }))
    .unwrap();
    Bench {
        _dir: dir,
        caller: Caller::subject("bench-agent"),
        ctx: CheckoutContext {
            ucp_version: "2026-04-08".into(),
            capabilities: capabilities.clone(),
        },
        create: create.create_input(&capabilities).expect("create input"),
        update: update.update_input(&capabilities).expect("update input"),
        app,
        agent,
    }
}

impl Bench {
    fn gw(&self) -> &Arc<Gateway> {
        &self.app.gateway
    }

    fn intent(&self) -> String {
        let max = Money::new(100_000, Currency::usd());
        IntentClaims::new(
            "https://agent.example",
            max,
            "a linen shirt and two tees",
            OffsetDateTime::now_utc(),
            time::Duration::hours(1),
            &mut rand_core::OsRng,
        )
        .sign(&self.agent)
        .unwrap()
    }

    fn payment(&self, cart: &str, claims: &CartClaims) -> String {
        PaymentClaims::for_cart(
            cart,
            claims,
            "success_token",
            "CARD",
            OffsetDateTime::now_utc(),
            time::Duration::minutes(10),
            &mut rand_core::OsRng,
        )
        .unwrap()
        .sign(&self.agent)
        .unwrap()
    }

    /// Create, update to ready, and the merchant's cart mandate for a fresh
    /// intent: everything before the agent signs its payment mandate.
    async fn ready(&self, intent: &str) -> (CheckoutId, String, CartClaims) {
        let created = self.gw().create_checkout(&self.caller, &self.ctx, self.create.clone());
        let CheckoutOutcome::Session(session) = created.await.expect("create") else {
            panic!("create rejected")
        };
        let updated = self.gw().update_checkout(&self.caller, &session.id, self.update.clone());
        let CheckoutOutcome::Session(session) = updated.await.expect("update") else {
            panic!("update rejected")
        };
        assert_eq!(session.status(), CheckoutStatus::ReadyForComplete, "{session:?}");
        let cart = self.gw().issue_cart_mandate(&self.caller, &session.id, intent, None);
        let cart = cart.await.expect("cart mandate");
        (session.id, cart.token, cart.claims)
    }

    async fn complete(&self, id: &CheckoutId, chain: MandateChain) {
        let request =
            CompleteRequest { mandates: Some(chain.into()), ..CompleteRequest::default() };
        let done = self.gw().complete_checkout(&self.caller, id, request).await.expect("complete");
        assert_eq!(done.session.status(), CheckoutStatus::Completed);
        black_box(done);
    }
}

fn main() {
    let rt = Runtime::new().expect("runtime");
    let bench = setup(&rt);
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("pipeline");
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    group.sample_size(30);

    group.bench_function("create_update_complete", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let intent = bench.intent();
                let start = Instant::now();
                let (id, cart, claims) = rt.block_on(bench.ready(&intent));
                timed += start.elapsed();
                let payment = bench.payment(&cart, &claims);
                let chain = MandateChain { intent, cart, payment };
                let start = Instant::now();
                rt.block_on(bench.complete(&id, chain));
                timed += start.elapsed();
            }
            timed
        })
    });

    group.bench_function("complete", |b| {
        b.iter_batched(
            || {
                let intent = bench.intent();
                let (id, cart, claims) = rt.block_on(bench.ready(&intent));
                let payment = bench.payment(&cart, &claims);
                (id, MandateChain { intent, cart, payment })
            },
            |(id, chain)| rt.block_on(bench.complete(&id, chain)),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let orders = bench.app.payments.successful_charges();
    println!("\n{orders} checkouts completed, each charged once");
    c.final_summary();
}
