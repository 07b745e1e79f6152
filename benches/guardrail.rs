//! The checkout guardrail (`policy::guardrail`), pure: realistic checkouts
//! of 1, 5 and 50 lines with every claim a completion carries (a signed
//! cart, an intent maximum, a payment amount, the merchant, a velocity
//! window, a price tolerance), checked as they pass and as they are
//! refused.
//!
//! - `pass`: every rule runs and the lines are re-priced.
//! - `reject_price`: the last line claims a stale price; refused at the
//!   price rule, after the lines were matched with the catalog.
//! - `reject_payment`: the payment amount is a cent short; refused by the
//!   last rule, so this is the whole check plus building the violation.
//!
//! `cargo bench --bench guardrail`

use std::hint::black_box;
use std::time::Duration;

use agentgate::domain::{
    CheckoutStatus, Currency, LineItem, Money, ProductId, Sku, Totals, VariantId,
};
use agentgate::policy::{
    Adjustments, CatalogItem, ClaimedCart, ClaimedLine, GuardrailConfig, GuardrailInput,
    MerchantClaim, Rule, Transition, VelocityLimit,
};
use criterion::Criterion;

const MERCHANT: &str = "https://shop.example";

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::usd())
}

/// A checkout of `n` lines with varied prices and quantities, the
/// catalog's view of them (enough stock), and the signed cart for it.
struct Checkout {
    lines: Vec<LineItem>,
    catalog: Vec<CatalogItem>,
    cart: ClaimedCart,
    adjustments: Adjustments,
    total: Money,
}

fn checkout(n: usize) -> Checkout {
    let mut lines = Vec::with_capacity(n);
    let mut catalog = Vec::with_capacity(n);
    for i in 0..n {
        let unit = usd(1_299 + 250 * (i as i64 % 17));
        let quantity = 1 + (i as u32 % 3);
        let variant = VariantId::parse(&format!("v-bench-{i:03}-blue-m")).unwrap();
        let sku = Sku::parse(&format!("BENCH-{i:03}-BLUE-M")).unwrap();
        lines.push(LineItem {
            id: format!("li_{}", i + 1),
            variant_id: variant.clone(),
            product_id: ProductId::parse(&format!("p-bench-{i:03}")).unwrap(),
            sku: sku.clone(),
            title: format!("Bench product {i}, blue, M"),
            quantity,
            unit_price: unit,
            requires_shipping: true,
        });
        catalog.push(CatalogItem { variant_id: variant, sku, unit_price: unit, available: 500 });
    }
    let adjustments = Adjustments { discount: usd(-500), fulfillment: usd(799), tax: usd(0) };
    let totals = Totals::compute(
        Currency::usd(),
        &lines,
        adjustments.discount,
        adjustments.fulfillment,
        adjustments.tax,
    )
    .unwrap();
    let cart = ClaimedCart {
        lines: lines
            .iter()
            .map(|l| ClaimedLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                line_total: l.unit_price.checked_mul(l.quantity).unwrap(),
            })
            .collect(),
        total: totals.total,
    };
    Checkout { lines, catalog, cart, adjustments, total: totals.total }
}

fn config() -> GuardrailConfig {
    GuardrailConfig {
        price_tolerance_minor: 1,
        price_tolerance_bps: 50,
        max_order_total_minor: Some(10_000_000),
        max_line_quantity: 100,
        velocity: Some(VelocityLimit { max_amount_minor: 50_000_000, window_secs: 86_400 }),
    }
}

fn input<'a>(c: &'a Checkout, lines: &'a [LineItem], payment: Money) -> GuardrailInput<'a> {
    GuardrailInput {
        currency: Currency::usd(),
        lines,
        catalog: &c.catalog,
        adjustments: c.adjustments,
        claimed_cart: Some(&c.cart),
        intent_max: Some(usd(10_000_000)),
        payment_amount: Some(payment),
        merchant: Some(MerchantClaim { expected: MERCHANT, named: MERCHANT }),
        spent_in_window: usd(12_345),
        transition: Transition {
            from: CheckoutStatus::ReadyForComplete,
            to: CheckoutStatus::CompleteInProgress,
        },
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let config = config();
    let mut group = c.benchmark_group("guardrail");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for n in [1, 5, 50] {
        let co = checkout(n);
        let mut stale = co.lines.clone();
        let last = stale.last_mut().unwrap();
        last.unit_price = last.unit_price.checked_add(usd(1_000)).unwrap();
        let short = co.total.checked_sub(usd(1)).unwrap();

        // The cases must be what their names say, or the figures mean
        // nothing.
        let ok = config.check(&input(&co, &co.lines, co.total)).expect("the pass case passes");
        assert_eq!(ok.totals.total, co.total);
        let price = config.check(&input(&co, &stale, co.total)).expect_err("a stale price");
        assert_eq!(price.rule, Rule::PriceDrift);
        let payment = config.check(&input(&co, &co.lines, short)).expect_err("a short payment");
        assert_eq!(payment.rule, Rule::PaymentAmount);

        group.bench_function(format!("pass/{n}_lines"), |b| {
            b.iter(|| black_box(config.check(black_box(&input(&co, &co.lines, co.total)))))
        });
        group.bench_function(format!("reject_price/{n}_lines"), |b| {
            b.iter(|| black_box(config.check(black_box(&input(&co, &stale, co.total)))))
        });
        group.bench_function(format!("reject_payment/{n}_lines"), |b| {
            b.iter(|| black_box(config.check(black_box(&input(&co, &co.lines, short)))))
        });
    }
    group.finish();
    c.final_summary();
}
