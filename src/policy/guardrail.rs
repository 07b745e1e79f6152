//! The checkout guardrail: the last check before any money moves (step 4 of
//! the checkout pipeline in `DESIGN.md`).
//!
//! It owns the rules that stop an agent from buying something other than
//! what the catalog sells, at another price, in another currency, from
//! another merchant, beyond what the buyer authorised or beyond the
//! merchant's limits. Every line is re-priced from the catalog: the catalog
//! price is the truth, and the agent's (or the session's) price is only a
//! claim to check. On success it hands back the re-priced lines and totals,
//! which are what the pipeline charges.
//!
//! It must not know where its inputs come from: no store, no catalog port,
//! no clock, no mandate parsing. The caller reads the catalog, verifies the
//! mandates, sums the agent's recent spending, and passes plain values in.
//!
//! # Which violation is reported
//!
//! The rules run in the fixed order of [`Rule::ALL`] and the first failure
//! is returned; later rules are not evaluated. The order goes from "this
//! request makes no sense at all" to "this request is fine but over a
//! limit": state transition, merchant, line quantities, unknown variants,
//! currency, claimed prices, re-priced totals (overflow), the signed cart
//! (lines, prices, total), stock, the merchant's order limit, the buyer's
//! intent limit, the agent's velocity limit, and last the payment amount.
//! One violation at a time is enough for the pipeline, and a fixed order
//! makes the reported code deterministic for the same input.
//!
//! # Unknown or removed variants
//!
//! A line whose variant the catalog no longer sells (or sells under another
//! SKU) is reported as `price_mismatch`, with its own metric label
//! `unknown_variant`. There is no catalog price to match the claim, and the
//! remedy is the same as for a stale price: read the catalog again and
//! rebuild the cart. `not_found` would say that the checkout itself is gone,
//! `insufficient_stock` would invite a retry after a restock that will never
//! come, and `sku_not_allowed` belongs to the intent mandate's SKU list.
//!
//! # Tolerance
//!
//! A claimed unit price passes when it is within the tolerance of the
//! catalog price in either direction. The tolerance per unit is the larger
//! of `price_tolerance_minor` and `price_tolerance_bps` of the catalog unit
//! price, rounded down so that rounding never widens it. A signed cart line
//! or total is allowed the per-unit tolerance times its units. The tolerance
//! only excuses a stale claim: the amount charged is always the re-priced
//! total, and the payment amount must equal it exactly.
//!
//! # Currency of the limits
//!
//! The configured limits are minor units without a currency. They are read
//! in the checkout's currency; the gateway trades in the one currency of its
//! settings, and the currency rule refuses anything else before any limit is
//! compared.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{
    CheckoutSession, CheckoutStatus, Currency, Error, ErrorCode, LineItem, Money, Result, Sku,
    Totals, VariantId,
};

/// The basis-point denominator: 10 000 bps is 100 %.
const BPS_DENOMINATOR: i128 = 10_000;

/// Guardrail settings, part of the gateway settings under `guardrail`.
///
/// Every field has a default, so an empty table is a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardrailConfig {
    /// Absolute tolerance per unit, in minor units, between a claimed and
    /// the catalog unit price.
    pub price_tolerance_minor: i64,
    /// Relative tolerance per unit, in basis points of the catalog unit
    /// price (100 bps = 1 %). The effective tolerance is the larger of this
    /// and `price_tolerance_minor`.
    pub price_tolerance_bps: u32,
    /// The largest order total accepted, in minor units; `None` is no limit.
    pub max_order_total_minor: Option<i64>,
    /// The largest quantity accepted on one line.
    pub max_line_quantity: u32,
    /// The most one agent may spend within a sliding window; `None` is no
    /// limit.
    pub velocity: Option<VelocityLimit>,
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        // Exact prices by default: a tolerance is a merchant's explicit
        // choice, never something an agent gets without asking.
        Self {
            price_tolerance_minor: 0,
            price_tolerance_bps: 0,
            max_order_total_minor: None,
            max_line_quantity: 100,
            velocity: None,
        }
    }
}

/// A spending limit per agent over a sliding window. The caller sums the
/// agent's spending inside `window_secs` and passes it in as
/// [`GuardrailInput::spent_in_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityLimit {
    pub max_amount_minor: i64,
    pub window_secs: u64,
}

fn bad_setting(setting: &str, why: &str) -> Error {
    Error::invalid(format!("setting `guardrail.{setting}`: {why}"))
}

impl GuardrailConfig {
    /// Checks the configuration once at startup, so a bad value stops the
    /// process instead of letting every checkout through or none.
    pub fn validate(&self) -> Result<()> {
        if self.price_tolerance_minor < 0 {
            return Err(bad_setting("price_tolerance_minor", "must not be negative"));
        }
        if i128::from(self.price_tolerance_bps) > BPS_DENOMINATOR {
            return Err(bad_setting("price_tolerance_bps", "must be at most 10000 (100%)"));
        }
        if matches!(self.max_order_total_minor, Some(max) if max <= 0) {
            return Err(bad_setting("max_order_total_minor", "must be positive"));
        }
        if self.max_line_quantity == 0 {
            return Err(bad_setting("max_line_quantity", "must be at least 1"));
        }
        if let Some(v) = self.velocity {
            if v.max_amount_minor <= 0 {
                return Err(bad_setting("velocity.max_amount_minor", "must be positive"));
            }
            if v.window_secs == 0 {
                return Err(bad_setting("velocity.window_secs", "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The tolerance for one unit at `catalog_unit`, in minor units.
    fn unit_tolerance(&self, catalog_unit: Money) -> i128 {
        let relative = i128::from(catalog_unit.minor().unsigned_abs())
            * i128::from(self.price_tolerance_bps)
            / BPS_DENOMINATOR;
        relative.max(i128::from(self.price_tolerance_minor.max(0)))
    }

    /// Runs every rule in the order of [`Rule::ALL`] and returns the
    /// re-priced lines and totals, or the first violation.
    ///
    /// The configuration is taken as validated: settings call
    /// [`GuardrailConfig::validate`] at startup, so a bad limit stops the
    /// process there rather than failing every checkout here.
    pub fn check(&self, input: &GuardrailInput<'_>) -> Result<Repriced, Violation> {
        check_transition(input.transition)?;
        check_merchant(input.merchant)?;
        check_line_quantities(self, input.lines)?;
        let matched = match_catalog(input.lines, input.catalog)?;
        check_currency(input, &matched)?;
        check_prices(self, &matched)?;
        let repriced = reprice(input.currency, &matched, input.adjustments)?;
        if let Some(cart) = input.claimed_cart {
            check_claimed_cart(self, &matched, cart, &repriced.totals)?;
        }
        check_stock(&matched)?;
        let total = repriced.totals.total;
        check_order_total(self, total)?;
        check_intent(input.intent_max, total)?;
        check_velocity(self, input.spent_in_window, total)?;
        check_payment(input.payment_amount, total)?;
        Ok(repriced)
    }
}

/// The catalog's current view of one variant, as read just before the
/// check. A variant the catalog does not return is treated as removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogItem {
    pub variant_id: VariantId,
    pub sku: Sku,
    /// The current unit price; its currency is the catalog's.
    pub unit_price: Money,
    /// Units available now.
    pub available: u32,
}

/// The session amounts that do not come from the catalog. The guardrail
/// keeps them and recomputes subtotal and total around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjustments {
    /// Zero or negative.
    pub discount: Money,
    pub fulfillment: Money,
    pub tax: Money,
}

impl Adjustments {
    pub fn none(currency: Currency) -> Self {
        let zero = Money::zero(currency);
        Self { discount: zero, fulfillment: zero, tax: zero }
    }
}

impl From<&Totals> for Adjustments {
    fn from(t: &Totals) -> Self {
        Self { discount: t.discount, fulfillment: t.fulfillment, tax: t.tax }
    }
}

/// One line of the cart the buyer signed (the cart mandate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedLine {
    pub sku: Sku,
    pub quantity: u32,
    pub line_total: Money,
}

/// The cart the buyer signed: its lines and its total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCart {
    pub lines: Vec<ClaimedLine>,
    pub total: Money,
}

/// The merchant the gateway is, and the merchant a mandate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerchantClaim<'a> {
    pub expected: &'a str,
    pub named: &'a str,
}

/// The requested move of the checkout session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CheckoutStatus,
    pub to: CheckoutStatus,
}

/// Everything the guardrail looks at. Build it with [`GuardrailInput::new`]
/// and fill in the optional claims the request carries.
#[derive(Debug, Clone, Copy)]
pub struct GuardrailInput<'a> {
    /// The checkout's currency; every amount must be in it.
    pub currency: Currency,
    /// The session's lines; `unit_price` is the price the session (and so
    /// the agent) claims.
    pub lines: &'a [LineItem],
    /// The catalog's current view of the session's variants.
    pub catalog: &'a [CatalogItem],
    pub adjustments: Adjustments,
    /// The cart mandate's lines and total, if one was presented.
    pub claimed_cart: Option<&'a ClaimedCart>,
    /// The intent mandate's maximum amount, if one was presented.
    pub intent_max: Option<Money>,
    /// The payment mandate's (or the processor request's) amount.
    pub payment_amount: Option<Money>,
    pub merchant: Option<MerchantClaim<'a>>,
    /// What this agent already spent inside the velocity window. It is
    /// required even without a velocity limit, so that turning the limit on
    /// cannot silently meet a caller that never computed it.
    pub spent_in_window: Money,
    pub transition: Transition,
}

impl<'a> GuardrailInput<'a> {
    /// The input for moving `session` to `to`, with no mandate claims yet.
    pub fn new(
        session: &'a CheckoutSession,
        catalog: &'a [CatalogItem],
        to: CheckoutStatus,
        spent_in_window: Money,
    ) -> Self {
        Self {
            currency: session.currency,
            lines: &session.line_items,
            catalog,
            adjustments: Adjustments::from(&session.totals),
            claimed_cart: None,
            intent_max: None,
            payment_amount: None,
            merchant: None,
            spent_in_window,
            transition: Transition { from: session.status(), to },
        }
    }
}

/// What a passing check hands back: the lines at catalog prices and the
/// totals recomputed from them. These, not the session's, are charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repriced {
    pub lines: Vec<LineItem>,
    pub totals: Totals,
}

/// The guardrail rules, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Transition,
    Merchant,
    LineQuantity,
    UnknownVariant,
    Currency,
    PriceDrift,
    Totals,
    CartLines,
    CartPrice,
    CartTotal,
    Stock,
    OrderTotal,
    IntentMax,
    Velocity,
    PaymentAmount,
}

impl Rule {
    /// Every rule in evaluation order.
    pub const ALL: [Rule; 15] = [
        Self::Transition,
        Self::Merchant,
        Self::LineQuantity,
        Self::UnknownVariant,
        Self::Currency,
        Self::PriceDrift,
        Self::Totals,
        Self::CartLines,
        Self::CartPrice,
        Self::CartTotal,
        Self::Stock,
        Self::OrderTotal,
        Self::IntentMax,
        Self::Velocity,
        Self::PaymentAmount,
    ];

    /// The stable error code a violation of this rule carries.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::Transition => ErrorCode::IllegalTransition,
            Self::Merchant => ErrorCode::MerchantNotAllowed,
            Self::LineQuantity => ErrorCode::QuantityLimitExceeded,
            Self::UnknownVariant | Self::PriceDrift | Self::CartPrice | Self::CartTotal => {
                ErrorCode::PriceMismatch
            }
            Self::Currency => ErrorCode::CurrencyMismatch,
            // The one failure a re-pricing can meet in a valid session.
            Self::Totals => ErrorCode::MoneyOverflow,
            // The signed cart holds other items than the checkout: the
            // mandate is valid, but for something else.
            Self::CartLines => ErrorCode::MandateScopeMismatch,
            Self::Stock => ErrorCode::InsufficientStock,
            Self::OrderTotal => ErrorCode::OrderTotalLimitExceeded,
            Self::IntentMax => ErrorCode::AmountExceedsIntent,
            Self::Velocity => ErrorCode::VelocityLimitExceeded,
            Self::PaymentAmount => ErrorCode::PaymentAmountMismatch,
        }
    }

    /// A low-cardinality label for the rejection metric. Several rules
    /// share a code; the label tells them apart on a dashboard.
    pub const fn metric_label(self) -> &'static str {
        match self {
            Self::Transition => "transition",
            Self::Merchant => "merchant",
            Self::LineQuantity => "line_quantity",
            Self::UnknownVariant => "unknown_variant",
            Self::Currency => "currency",
            Self::PriceDrift => "price_drift",
            Self::Totals => "totals",
            Self::CartLines => "cart_lines",
            Self::CartPrice => "cart_price",
            Self::CartTotal => "cart_total",
            Self::Stock => "stock",
            Self::OrderTotal => "order_total",
            Self::IntentMax => "intent_max",
            Self::Velocity => "velocity",
            Self::PaymentAmount => "payment_amount",
        }
    }

    fn violation(self, message: String) -> Violation {
        Violation { rule: self, code: self.code(), message, metric_label: self.metric_label() }
    }
}

/// Why the guardrail refused a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub code: ErrorCode,
    /// Plain words fit to show the buyer, with amounts formatted by
    /// `Money`'s `Display`. It names SKUs and amounts, never internals.
    pub message: String,
    pub metric_label: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Violation {}

impl From<Violation> for Error {
    fn from(v: Violation) -> Self {
        Error::new(v.code, v.message)
    }
}

/// A session line paired with the catalog's view of its variant.
#[derive(Debug, Clone, Copy)]
struct Matched<'a> {
    line: &'a LineItem,
    catalog: &'a CatalogItem,
}

fn check_transition(t: Transition) -> Result<(), Violation> {
    if t.from.can_transition_to(t.to) {
        return Ok(());
    }
    Err(Rule::Transition.violation(format!(
        "a checkout cannot move from {} to {}",
        t.from.as_str(),
        t.to.as_str()
    )))
}

/// Merchant identities are compared the way the AP2 verifier compares a
/// base URL: ignoring ASCII case, surrounding space and one trailing `/`,
/// so `https://Shop.example/` and `https://shop.example` are one merchant.
fn same_merchant(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

fn check_merchant(claim: Option<MerchantClaim<'_>>) -> Result<(), Violation> {
    match claim {
        Some(c) if !same_merchant(c.expected, c.named) => Err(Rule::Merchant.violation(format!(
            "this checkout is with {}, but the mandate names {:?}",
            c.expected, c.named
        ))),
        _ => Ok(()),
    }
}

fn check_line_quantities(config: &GuardrailConfig, lines: &[LineItem]) -> Result<(), Violation> {
    let max = config.max_line_quantity;
    match lines.iter().find(|l| l.quantity == 0 || l.quantity > max) {
        Some(l) => Err(Rule::LineQuantity.violation(format!(
            "the quantity of {} is {}; a line may hold 1 to {max} units",
            l.sku, l.quantity
        ))),
        None => Ok(()),
    }
}

/// Pairs every line with the catalog's view of its variant. A variant the
/// catalog did not return, or returns under another SKU, is not sold any
/// more as the line describes it.
fn match_catalog<'a>(
    lines: &'a [LineItem],
    catalog: &'a [CatalogItem],
) -> Result<Vec<Matched<'a>>, Violation> {
    lines
        .iter()
        .map(|line| {
            catalog
                .iter()
                .find(|c| c.variant_id == line.variant_id && c.sku == line.sku)
                .map(|catalog| Matched { line, catalog })
                .ok_or_else(|| {
                    Rule::UnknownVariant.violation(format!(
                        "{} is no longer sold; remove it from the cart and search again",
                        line.sku
                    ))
                })
        })
        .collect()
}

fn check_currency(input: &GuardrailInput<'_>, matched: &[Matched<'_>]) -> Result<(), Violation> {
    let want = input.currency;
    let mut amounts: Vec<(String, Money)> = Vec::new();
    for m in matched {
        amounts.push((format!("price of {} in the cart", m.line.sku), m.line.unit_price));
        amounts.push((format!("catalog price of {}", m.line.sku), m.catalog.unit_price));
    }
    let adj = input.adjustments;
    amounts.push(("discount".into(), adj.discount));
    amounts.push(("shipping amount".into(), adj.fulfillment));
    amounts.push(("tax".into(), adj.tax));
    if let Some(cart) = input.claimed_cart {
        for l in &cart.lines {
            amounts.push((format!("signed price of {}", l.sku), l.line_total));
        }
        amounts.push(("signed cart total".into(), cart.total));
    }
    if let Some(max) = input.intent_max {
        amounts.push(("authorised maximum".into(), max));
    }
    if let Some(paid) = input.payment_amount {
        amounts.push(("payment".into(), paid));
    }
    amounts.push(("recent spending".into(), input.spent_in_window));
    match amounts.into_iter().find(|(_, m)| m.currency() != want) {
        Some((what, m)) => Err(Rule::Currency.violation(format!(
            "this checkout is in {want}, but the {what} is in {}",
            m.currency()
        ))),
        None => Ok(()),
    }
}

/// The distance between two amounts, without overflow.
fn distance(a: Money, b: Money) -> i128 {
    (i128::from(a.minor()) - i128::from(b.minor())).abs()
}

fn check_prices(config: &GuardrailConfig, matched: &[Matched<'_>]) -> Result<(), Violation> {
    for m in matched {
        let (claimed, truth) = (m.line.unit_price, m.catalog.unit_price);
        if distance(claimed, truth) > config.unit_tolerance(truth) {
            return Err(Rule::PriceDrift.violation(format!(
                "the price of {} is now {truth}, not {claimed} as the cart says",
                m.line.sku
            )));
        }
    }
    Ok(())
}

/// Rebuilds the lines at catalog prices and recomputes the totals around
/// the session's adjustments, with checked arithmetic throughout.
fn reprice(
    currency: Currency,
    matched: &[Matched<'_>],
    adjustments: Adjustments,
) -> Result<Repriced, Violation> {
    let lines: Vec<LineItem> = matched
        .iter()
        .map(|m| LineItem { unit_price: m.catalog.unit_price, ..m.line.clone() })
        .collect();
    let totals = Totals::compute(
        currency,
        &lines,
        adjustments.discount,
        adjustments.fulfillment,
        adjustments.tax,
    )
    .map_err(|e| {
        // An overflow is the expected failure. The currency rule ran
        // before, so the only other one is a positive discount, which a
        // session never holds; it keeps the domain's own code and words.
        let message = match e.code() {
            ErrorCode::MoneyOverflow => "the order total is too large".to_owned(),
            _ => e.message().to_owned(),
        };
        let mut v = Rule::Totals.violation(message);
        v.code = e.code();
        v
    })?;
    Ok(Repriced { lines, totals })
}

/// Per SKU: units, catalog amount and tolerance, summed over the lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SkuSum {
    units: u64,
    amount: i128,
    tolerance: i128,
}

fn check_claimed_cart(
    config: &GuardrailConfig,
    matched: &[Matched<'_>],
    cart: &ClaimedCart,
    totals: &Totals,
) -> Result<(), Violation> {
    let mut checkout: BTreeMap<&Sku, SkuSum> = BTreeMap::new();
    for m in matched {
        let units = u64::from(m.line.quantity);
        let s = checkout.entry(&m.line.sku).or_default();
        s.units += units;
        s.amount += i128::from(m.catalog.unit_price.minor()) * i128::from(units);
        s.tolerance += config.unit_tolerance(m.catalog.unit_price) * i128::from(units);
    }
    let mut signed: BTreeMap<&Sku, (u64, i128)> = BTreeMap::new();
    for l in &cart.lines {
        let s = signed.entry(&l.sku).or_default();
        s.0 += u64::from(l.quantity);
        s.1 += i128::from(l.line_total.minor());
    }
    // The same SKUs in the same quantities, both ways round.
    for (sku, s) in &checkout {
        let signed_units = signed.get(sku).map_or(0, |v| v.0);
        if signed_units != s.units {
            return Err(Rule::CartLines.violation(format!(
                "the signed cart has {signed_units} of {sku}, but the checkout has {}",
                s.units
            )));
        }
    }
    if let Some((sku, (units, _))) = signed.iter().find(|(sku, _)| !checkout.contains_key(*sku)) {
        return Err(Rule::CartLines.violation(format!(
            "the signed cart has {units} of {sku}, which the checkout does not hold"
        )));
    }
    let currency = totals.total.currency();
    for (sku, s) in &checkout {
        let claimed = signed.get(sku).map_or(0, |v| v.1);
        if (claimed - s.amount).abs() > s.tolerance {
            return Err(Rule::CartPrice.violation(format!(
                "the signed cart prices {} of {sku} at {}, but they cost {} now",
                s.units,
                money_or_text(claimed, currency),
                money_or_text(s.amount, currency),
            )));
        }
    }
    let tolerance: i128 = checkout.values().map(|s| s.tolerance).sum();
    if distance(cart.total, totals.total) > tolerance {
        return Err(Rule::CartTotal.violation(format!(
            "the signed cart total is {}, but the checkout total is {}",
            cart.total, totals.total
        )));
    }
    Ok(())
}

/// Formats a wide sum as money when it fits, which it does for any real
/// cart; the text fallback keeps the message honest if it does not.
fn money_or_text(minor: i128, currency: Currency) -> String {
    match i64::try_from(minor) {
        Ok(m) => Money::new(m, currency).to_string(),
        Err(_) => format!("{currency} (an amount too large to show)"),
    }
}

/// Stock is counted per SKU, so two lines of one SKU draw on one count.
fn check_stock(matched: &[Matched<'_>]) -> Result<(), Violation> {
    let mut wanted: BTreeMap<&Sku, (u64, u32)> = BTreeMap::new();
    for m in matched {
        let w = wanted.entry(&m.line.sku).or_insert((0, m.catalog.available));
        w.0 += u64::from(m.line.quantity);
        w.1 = w.1.min(m.catalog.available);
    }
    match wanted.into_iter().find(|(_, (want, have))| *want > u64::from(*have)) {
        Some((sku, (want, 0))) => {
            Err(Rule::Stock.violation(format!("{sku} is out of stock ({want} requested)")))
        }
        Some((sku, (want, have))) => {
            Err(Rule::Stock.violation(format!("only {have} of {sku} left, but {want} requested")))
        }
        None => Ok(()),
    }
}

fn check_order_total(config: &GuardrailConfig, total: Money) -> Result<(), Violation> {
    match config.max_order_total_minor {
        Some(max) if total.minor() > max => Err(Rule::OrderTotal.violation(format!(
            "the order total of {total} is above this store's limit of {} per order",
            Money::new(max, total.currency())
        ))),
        _ => Ok(()),
    }
}

fn check_intent(intent_max: Option<Money>, total: Money) -> Result<(), Violation> {
    match intent_max {
        Some(max) if total.minor() > max.minor() => Err(Rule::IntentMax.violation(format!(
            "the order total of {total} is above the {max} the buyer authorised"
        ))),
        _ => Ok(()),
    }
}

/// A window in the largest whole unit that divides it, for messages.
fn window_words(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn check_velocity(config: &GuardrailConfig, spent: Money, total: Money) -> Result<(), Violation> {
    let Some(limit) = config.velocity else {
        return Ok(());
    };
    // Summed wide: a sum beyond i64 is simply over any limit, not an error.
    let projected = i128::from(spent.minor()) + i128::from(total.minor());
    if projected <= i128::from(limit.max_amount_minor) {
        return Ok(());
    }
    Err(Rule::Velocity.violation(format!(
        "this order of {total} would bring the agent's spending to {}, above the limit of {} per {}",
        money_or_text(projected, total.currency()),
        Money::new(limit.max_amount_minor, total.currency()),
        window_words(limit.window_secs)
    )))
}

fn check_payment(payment: Option<Money>, total: Money) -> Result<(), Violation> {
    match payment {
        Some(paid) if paid != total => Err(Rule::PaymentAmount
            .violation(format!("the payment of {paid} does not match the order total of {total}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CheckoutId, ProductId};
    use std::collections::HashSet;
    use time::OffsetDateTime;
    use CheckoutStatus::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::usd())
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap())
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn line(id: &str, quantity: u32, unit: Money) -> LineItem {
        LineItem {
            id: format!("li_{id}"),
            variant_id: VariantId::parse(&format!("v-{id}")).unwrap(),
            product_id: ProductId::parse(&format!("p-{id}")).unwrap(),
            sku: sku(&format!("SKU-{id}")),
            title: format!("Item {id}"),
            quantity,
            unit_price: unit,
            requires_shipping: true,
        }
    }

    fn item(id: &str, unit: Money, available: u32) -> CatalogItem {
        CatalogItem {
            variant_id: VariantId::parse(&format!("v-{id}")).unwrap(),
            sku: sku(&format!("SKU-{id}")),
            unit_price: unit,
            available,
        }
    }

    fn claimed(id: &str, quantity: u32, line_total: Money) -> ClaimedLine {
        ClaimedLine { sku: sku(&format!("SKU-{id}")), quantity, line_total }
    }

    fn ready() -> Transition {
        Transition { from: ReadyForComplete, to: CompleteInProgress }
    }

    fn input<'a>(lines: &'a [LineItem], catalog: &'a [CatalogItem]) -> GuardrailInput<'a> {
        GuardrailInput {
            currency: Currency::usd(),
            lines,
            catalog,
            adjustments: Adjustments::none(Currency::usd()),
            claimed_cart: None,
            intent_max: None,
            payment_amount: None,
            merchant: None,
            spent_in_window: usd(0),
            transition: ready(),
        }
    }

    fn tolerant(minor: i64, bps: u32) -> GuardrailConfig {
        GuardrailConfig {
            price_tolerance_minor: minor,
            price_tolerance_bps: bps,
            ..GuardrailConfig::default()
        }
    }

    /// The rule a result failed, or `None` when it passed.
    fn rule_of<T>(r: Result<T, Violation>) -> Option<Rule> {
        r.err().map(|v| v.rule)
    }

    #[test]
    fn rules_have_stable_codes_and_unique_labels() {
        let mut labels = HashSet::new();
        for rule in Rule::ALL {
            assert!(labels.insert(rule.metric_label()), "{rule:?}");
            let label = rule.metric_label();
            assert!(label.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{label}");
        }
        let table = [
            (Rule::Transition, "illegal_transition"),
            (Rule::Merchant, "merchant_not_allowed"),
            (Rule::LineQuantity, "quantity_limit_exceeded"),
            (Rule::UnknownVariant, "price_mismatch"),
            (Rule::Currency, "currency_mismatch"),
            (Rule::PriceDrift, "price_mismatch"),
            (Rule::Totals, "money_overflow"),
            (Rule::CartLines, "mandate_scope_mismatch"),
            (Rule::CartPrice, "price_mismatch"),
            (Rule::CartTotal, "price_mismatch"),
            (Rule::Stock, "insufficient_stock"),
            (Rule::OrderTotal, "order_total_limit_exceeded"),
            (Rule::IntentMax, "amount_exceeds_intent"),
            (Rule::Velocity, "velocity_limit_exceeded"),
            (Rule::PaymentAmount, "payment_amount_mismatch"),
        ];
        assert_eq!(table.len(), Rule::ALL.len());
        for ((rule, code), in_order) in table.into_iter().zip(Rule::ALL) {
            assert_eq!(rule, in_order, "the table follows evaluation order");
            assert_eq!(rule.code().as_str(), code, "{rule:?}");
        }
    }

    #[test]
    fn config_defaults_and_parsing() {
        let empty: GuardrailConfig = toml::from_str("").unwrap();
        assert_eq!(empty, GuardrailConfig::default());
        assert_eq!(empty.max_line_quantity, 100);
        assert!(empty.validate().is_ok());
        let full: GuardrailConfig = toml::from_str(
            "price_tolerance_minor = 5\nprice_tolerance_bps = 100\nmax_order_total_minor = 50000\n\
             max_line_quantity = 10\n[velocity]\nmax_amount_minor = 100000\nwindow_secs = 86400\n",
        )
        .unwrap();
        assert_eq!(full.price_tolerance_bps, 100);
        assert_eq!(
            full.velocity,
            Some(VelocityLimit { max_amount_minor: 100_000, window_secs: 86_400 })
        );
        assert!(full.validate().is_ok());
        assert!(toml::from_str::<GuardrailConfig>("price_tolerance = 1").is_err());
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let base = GuardrailConfig::default;
        let velocity = |max, window| GuardrailConfig {
            velocity: Some(VelocityLimit { max_amount_minor: max, window_secs: window }),
            ..base()
        };
        let cases = [
            (GuardrailConfig { price_tolerance_minor: -1, ..base() }, "price_tolerance_minor"),
            (GuardrailConfig { price_tolerance_bps: 10_001, ..base() }, "price_tolerance_bps"),
            (GuardrailConfig { max_order_total_minor: Some(0), ..base() }, "max_order_total_minor"),
            (GuardrailConfig { max_line_quantity: 0, ..base() }, "max_line_quantity"),
            (velocity(0, 60), "velocity.max_amount_minor"),
            (velocity(100, 0), "velocity.window_secs"),
        ];
        for (config, setting) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput);
            assert!(err.message().contains(setting), "{setting}: {}", err.message());
        }
        assert!(GuardrailConfig { price_tolerance_bps: 10_000, ..base() }.validate().is_ok());
    }

    #[test]
    fn transition_rule() {
        let cases = [
            (ReadyForComplete, CompleteInProgress, true),
            (Incomplete, ReadyForComplete, true),
            (Incomplete, CompleteInProgress, false),
            (Completed, CompleteInProgress, false),
            (Canceled, ReadyForComplete, false),
            (CompleteInProgress, CompleteInProgress, false),
        ];
        for (from, to, ok) in cases {
            let got = check_transition(Transition { from, to });
            assert_eq!(got.is_ok(), ok, "{from:?} -> {to:?}");
            if let Err(v) = got {
                assert_eq!(v.code, ErrorCode::IllegalTransition);
                assert!(v.message.contains(from.as_str()), "{}", v.message);
            }
        }
    }

    #[test]
    fn merchant_rule() {
        let cases = [
            (None, true),
            (Some(("https://shop.example", "https://shop.example")), true),
            (Some(("https://shop.example", "https://Shop.Example/")), true),
            (Some(("https://shop.example", "https://evil.example")), false),
            (Some(("https://shop.example", "")), false),
            (Some(("", "")), false),
            (Some(("https://shop.example", "https://shop.example.evil")), false),
        ];
        for (claim, ok) in cases {
            let claim = claim.map(|(expected, named)| MerchantClaim { expected, named });
            let got = check_merchant(claim);
            assert_eq!(got.is_ok(), ok, "{claim:?}");
            if let Err(v) = got {
                assert_eq!(v.code, ErrorCode::MerchantNotAllowed);
            }
        }
    }

    #[test]
    fn line_quantity_rule() {
        let config = GuardrailConfig { max_line_quantity: 5, ..GuardrailConfig::default() };
        let cases = [(vec![1, 5], true), (vec![6], false), (vec![1, 0], false), (vec![], true)];
        for (quantities, ok) in cases {
            let lines: Vec<_> = quantities
                .iter()
                .enumerate()
                .map(|(i, q)| line(&i.to_string(), *q, usd(100)))
                .collect();
            let got = check_line_quantities(&config, &lines);
            assert_eq!(got.is_ok(), ok, "{quantities:?}");
            if let Err(v) = got {
                assert_eq!(v.code, ErrorCode::QuantityLimitExceeded);
                assert!(v.message.contains("1 to 5"), "{}", v.message);
            }
        }
    }

    #[test]
    fn unknown_variant_rule() {
        let lines = [line("a", 1, usd(100)), line("b", 1, usd(100))];
        let renamed = CatalogItem { sku: sku("SKU-other"), ..item("b", usd(100), 5) };
        let cases: [(Vec<CatalogItem>, bool); 4] = [
            (vec![item("a", usd(100), 5), item("b", usd(100), 5)], true),
            (vec![item("b", usd(100), 5), item("a", usd(100), 5), item("z", usd(1), 1)], true),
            (vec![item("a", usd(100), 5)], false),
            (vec![item("a", usd(100), 5), renamed], false),
        ];
        for (catalog, ok) in cases {
            let got = match_catalog(&lines, &catalog);
            assert_eq!(got.is_ok(), ok, "{catalog:?}");
            if let Err(v) = got {
                assert_eq!((v.code, v.metric_label), (ErrorCode::PriceMismatch, "unknown_variant"));
                assert!(v.message.contains("SKU-b"), "{}", v.message);
            }
        }
    }

    #[test]
    fn currency_rule() {
        let lines = [line("a", 1, usd(100))];
        let catalog = [item("a", usd(100), 5)];
        let cart_eur = ClaimedCart { lines: vec![claimed("a", 1, eur(100))], total: usd(100) };
        let total_eur = ClaimedCart { lines: vec![claimed("a", 1, usd(100))], total: eur(100) };
        let eur_lines = [line("a", 1, eur(100))];
        let eur_catalog = [item("a", eur(100), 5)];
        type Edit = fn(&mut GuardrailInput<'_>);
        let cases: [(&str, Edit, Option<&str>); 9] = [
            ("all usd", |_| {}, None),
            ("line", |i| i.lines = &[], None),
            ("intent", |i| i.intent_max = Some(eur(1)), Some("authorised maximum")),
            ("payment", |i| i.payment_amount = Some(eur(100)), Some("payment")),
            ("spend", |i| i.spent_in_window = eur(0), Some("recent spending")),
            ("tax", |i| i.adjustments.tax = eur(0), Some("tax")),
            ("checkout", |i| i.currency = Currency::parse("EUR").unwrap(), Some("price of SKU-a")),
            ("shipping", |i| i.adjustments.fulfillment = eur(0), Some("shipping")),
            ("discount", |i| i.adjustments.discount = eur(0), Some("discount")),
        ];
        for (name, edit, want) in cases {
            let mut inp = input(&lines, &catalog);
            edit(&mut inp);
            let matched = match_catalog(inp.lines, inp.catalog).unwrap();
            let got = check_currency(&inp, &matched);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(v), Some(what)) => {
                    assert_eq!(v.code, ErrorCode::CurrencyMismatch, "{name}");
                    assert!(v.message.contains(what), "{name}: {}", v.message);
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        // Mismatches that need borrowed data of their own.
        type Claim<'a> = (&'a [LineItem], &'a [CatalogItem], Option<&'a ClaimedCart>, &'a str);
        let claims: [Claim<'_>; 4] = [
            (&eur_lines, &catalog, None, "price of SKU-a in the cart"),
            (&lines, &eur_catalog, None, "catalog price of SKU-a"),
            (&lines, &catalog, Some(&cart_eur), "signed price of SKU-a"),
            (&lines, &catalog, Some(&total_eur), "signed cart total"),
        ];
        for (lines, catalog, cart, what) in claims {
            let mut inp = input(lines, catalog);
            inp.claimed_cart = cart;
            let matched = match_catalog(inp.lines, inp.catalog).unwrap();
            let v = check_currency(&inp, &matched).unwrap_err();
            assert_eq!(v.code, ErrorCode::CurrencyMismatch, "{what}");
            assert!(v.message.contains(what), "{what}: {}", v.message);
        }
    }

    #[test]
    fn price_rule_with_tolerances() {
        // (tolerance minor, tolerance bps, claimed, catalog, passes)
        let cases = [
            (0, 0, 1000, 1000, true),
            (0, 0, 999, 1000, false),
            (0, 0, 1001, 1000, false),
            (5, 0, 995, 1000, true),
            (5, 0, 1005, 1000, true),
            (5, 0, 994, 1000, false),
            // 1 % of 1000 is 10.
            (0, 100, 990, 1000, true),
            (0, 100, 1010, 1000, true),
            (0, 100, 989, 1000, false),
            // 1 % of 1999 is 19.99, rounded down to 19.
            (0, 100, 1980, 1999, true),
            (0, 100, 1979, 1999, false),
            // The larger of the two applies.
            (3, 100, 990, 1000, true),
            (30, 100, 970, 1000, true),
            (30, 100, 969, 1000, false),
            // Extreme amounts do not overflow the distance.
            (0, 10_000, i64::MIN, i64::MAX, false),
            (0, 0, 0, 0, true),
        ];
        for (minor, bps, claimed, truth, ok) in cases {
            let lines = [line("a", 1, usd(claimed))];
            let catalog = [item("a", usd(truth), 1)];
            let matched = match_catalog(&lines, &catalog).unwrap();
            let got = check_prices(&tolerant(minor, bps), &matched);
            assert_eq!(got.is_ok(), ok, "tol {minor}/{bps}bps claimed {claimed} catalog {truth}");
            if let Err(v) = got {
                assert_eq!((v.code, v.metric_label), (ErrorCode::PriceMismatch, "price_drift"));
            }
        }
        let lines = [line("a", 1, usd(999))];
        let catalog = [item("a", usd(1250), 1)];
        let matched = match_catalog(&lines, &catalog).unwrap();
        let v = check_prices(&GuardrailConfig::default(), &matched).unwrap_err();
        assert_eq!(v.message, "the price of SKU-a is now USD 12.50, not USD 9.99 as the cart says");
    }

    #[test]
    fn repricing_uses_catalog_prices_and_keeps_adjustments() {
        let lines = [line("a", 2, usd(1000)), line("b", 3, usd(250))];
        let catalog = [item("a", usd(1010), 9), item("b", usd(245), 9)];
        let matched = match_catalog(&lines, &catalog).unwrap();
        let adj = Adjustments { discount: usd(-100), fulfillment: usd(500), tax: usd(80) };
        let r = reprice(Currency::usd(), &matched, adj).unwrap();
        let units: Vec<i64> = r.lines.iter().map(|l| l.unit_price.minor()).collect();
        assert_eq!(units, vec![1010, 245]);
        assert_eq!(r.lines[0].id, "li_a");
        // 2×1010 + 3×245 = 2755; − 100 + 500 + 80 = 3235.
        assert_eq!((r.totals.subtotal.minor(), r.totals.total.minor()), (2755, 3235));

        let cases = [
            (vec![(1, i64::MAX)], false),
            (vec![(2, i64::MAX / 2 + 1)], false),
            (vec![(1, i64::MAX), (1, 1)], false),
            (vec![(1, 1), (1, 1)], true),
        ];
        for (specs, ok) in cases {
            let lines: Vec<_> = specs
                .iter()
                .enumerate()
                .map(|(i, (q, p))| line(&i.to_string(), *q, usd(*p)))
                .collect();
            let catalog: Vec<_> = specs
                .iter()
                .enumerate()
                .map(|(i, (_, p))| item(&i.to_string(), usd(*p), 9))
                .collect();
            let matched = match_catalog(&lines, &catalog).unwrap();
            let adj = Adjustments { fulfillment: usd(1), ..Adjustments::none(Currency::usd()) };
            let got = reprice(Currency::usd(), &matched, adj);
            assert_eq!(got.is_ok(), ok, "{specs:?}");
            if let Err(v) = got {
                assert_eq!((v.code, v.metric_label), (ErrorCode::MoneyOverflow, "totals"));
            }
        }
    }

    #[test]
    fn claimed_cart_rules() {
        let lines = [line("a", 2, usd(1000)), line("b", 1, usd(500))];
        let catalog = [item("a", usd(1000), 9), item("b", usd(500), 9)];
        let matched = match_catalog(&lines, &catalog).unwrap();
        let totals =
            reprice(Currency::usd(), &matched, Adjustments::none(Currency::usd())).unwrap().totals;
        let good = || vec![claimed("a", 2, usd(2000)), claimed("b", 1, usd(500))];
        // (config, claimed lines, claimed total, expected rule)
        let cases: Vec<(GuardrailConfig, Vec<ClaimedLine>, i64, Option<Rule>)> = vec![
            (GuardrailConfig::default(), good(), 2500, None),
            // Split lines of one SKU add up.
            (
                GuardrailConfig::default(),
                vec![
                    claimed("b", 1, usd(500)),
                    claimed("a", 1, usd(1000)),
                    claimed("a", 1, usd(1000)),
                ],
                2500,
                None,
            ),
            (
                GuardrailConfig::default(),
                vec![claimed("a", 2, usd(2000))],
                2000,
                Some(Rule::CartLines),
            ),
            (
                GuardrailConfig::default(),
                vec![claimed("a", 3, usd(3000)), claimed("b", 1, usd(500))],
                3500,
                Some(Rule::CartLines),
            ),
            (
                GuardrailConfig::default(),
                [good(), vec![claimed("c", 1, usd(1))]].concat(),
                2501,
                Some(Rule::CartLines),
            ),
            (
                GuardrailConfig::default(),
                vec![claimed("a", 2, usd(1998)), claimed("b", 1, usd(500))],
                2498,
                Some(Rule::CartPrice),
            ),
            // 1 minor unit per unit of tolerance: a 2-unit line may be 2 off.
            (
                tolerant(1, 0),
                vec![claimed("a", 2, usd(1998)), claimed("b", 1, usd(500))],
                2498,
                None,
            ),
            (
                tolerant(1, 0),
                vec![claimed("a", 2, usd(1997)), claimed("b", 1, usd(500))],
                2497,
                Some(Rule::CartPrice),
            ),
            (GuardrailConfig::default(), good(), 2400, Some(Rule::CartTotal)),
            (GuardrailConfig::default(), good(), 2501, Some(Rule::CartTotal)),
            (tolerant(1, 0), good(), 2503, None),
            (tolerant(1, 0), good(), 2504, Some(Rule::CartTotal)),
        ];
        for (config, claimed_lines, total, want) in cases {
            let cart = ClaimedCart { lines: claimed_lines, total: usd(total) };
            let got = check_claimed_cart(&config, &matched, &cart, &totals);
            assert_eq!(rule_of(got), want, "{cart:?}");
        }
        let cart = ClaimedCart { lines: good(), total: usd(2000) };
        let v =
            check_claimed_cart(&GuardrailConfig::default(), &matched, &cart, &totals).unwrap_err();
        assert_eq!(
            v.message,
            "the signed cart total is USD 20.00, but the checkout total is USD 25.00"
        );
    }

    #[test]
    fn stock_rule() {
        // (quantities per line with their SKU id, stock per SKU id, passes)
        type Units<'a> = &'a [(&'a str, u32)];
        let cases: [(Units<'_>, Units<'_>, bool); 6] = [
            (&[("a", 2)], &[("a", 2)], true),
            (&[("a", 3)], &[("a", 2)], false),
            (&[("a", 1)], &[("a", 0)], false),
            (&[("a", 1), ("b", 5)], &[("a", 1), ("b", 9)], true),
            (&[("a", 1), ("b", 10)], &[("a", 1), ("b", 9)], false),
            (&[], &[("a", 0)], true),
        ];
        for (wanted, stock, ok) in cases {
            let lines: Vec<_> = wanted.iter().map(|(id, q)| line(id, *q, usd(1))).collect();
            let catalog: Vec<_> = stock.iter().map(|(id, n)| item(id, usd(1), *n)).collect();
            let matched = match_catalog(&lines, &catalog).unwrap();
            let want = (!ok).then_some(Rule::Stock);
            assert_eq!(rule_of(check_stock(&matched)), want, "{wanted:?} from {stock:?}");
        }
        let lines = [line("a", 1, usd(1))];
        let catalog = [item("a", usd(1), 0)];
        let matched = match_catalog(&lines, &catalog).unwrap();
        let v = check_stock(&matched).unwrap_err();
        assert_eq!(v.message, "SKU-a is out of stock (1 requested)");

        // Two lines of one SKU share its stock.
        let mut second = line("a", 2, usd(1));
        second.id = "li_a2".into();
        let lines = [line("a", 2, usd(1)), second];
        let catalog = [item("a", usd(1), 3)];
        let matched = match_catalog(&lines, &catalog).unwrap();
        let v = check_stock(&matched).unwrap_err();
        assert_eq!(v.code, ErrorCode::InsufficientStock);
        assert_eq!(v.message, "only 3 of SKU-a left, but 4 requested");
    }

    #[test]
    fn order_total_rule() {
        let cases = [(None, 1_000_000, true), (Some(5000), 5000, true), (Some(5000), 5001, false)];
        for (max, total, ok) in cases {
            let config =
                GuardrailConfig { max_order_total_minor: max, ..GuardrailConfig::default() };
            let got = check_order_total(&config, usd(total));
            assert_eq!(got.is_ok(), ok, "{max:?} {total}");
            if let Err(v) = got {
                assert_eq!(v.code, ErrorCode::OrderTotalLimitExceeded);
                assert!(v.message.contains("USD 50.00"), "{}", v.message);
            }
        }
    }

    #[test]
    fn intent_rule() {
        let cases =
            [(None, 10, true), (Some(10), 10, true), (Some(10), 11, false), (Some(0), 0, true)];
        for (max, total, ok) in cases {
            let got = check_intent(max.map(usd), usd(total));
            assert_eq!(got.is_ok(), ok, "{max:?} {total}");
            if let Err(v) = got {
                assert_eq!(v.code, ErrorCode::AmountExceedsIntent);
                assert_eq!(
                    v.message,
                    "the order total of USD 0.11 is above the USD 0.10 the buyer authorised"
                );
            }
        }
    }

    #[test]
    fn velocity_rule() {
        let limit = |max| GuardrailConfig {
            velocity: Some(VelocityLimit { max_amount_minor: max, window_secs: 86_400 }),
            ..GuardrailConfig::default()
        };
        // (config, spent, total, expected rule)
        let cases = [
            (GuardrailConfig::default(), i64::MAX, 1, None),
            (limit(10_000), 0, 10_000, None),
            (limit(10_000), 4_000, 6_000, None),
            (limit(10_000), 4_000, 6_001, Some(Rule::Velocity)),
            (limit(10_000), 10_001, 0, Some(Rule::Velocity)),
            // A sum beyond i64 is still just over the limit.
            (limit(10_000), i64::MAX, 1, Some(Rule::Velocity)),
        ];
        for (config, spent, total, want) in cases {
            let got = check_velocity(&config, usd(spent), usd(total));
            assert_eq!(rule_of(got), want, "{spent} + {total}");
        }
        let v = check_velocity(&limit(10_000), usd(4_000), usd(6_001)).unwrap_err();
        assert_eq!(
            v.message,
            "this order of USD 60.01 would bring the agent's spending to USD 100.01, \
             above the limit of USD 100.00 per 1 day"
        );
        let windows =
            [(86_400, "1 day"), (7_200, "2 hours"), (90, "90 seconds"), (120, "2 minutes")];
        for (secs, words) in windows {
            assert_eq!(window_words(secs), words);
        }
    }

    #[test]
    fn payment_rule() {
        let cases = [(None, true), (Some(2500), true), (Some(2499), false), (Some(2501), false)];
        for (paid, ok) in cases {
            let got = check_payment(paid.map(usd), usd(2500));
            assert_eq!(got.is_ok(), ok, "{paid:?}");
            if let Err(v) = got {
                assert_eq!(v.code, ErrorCode::PaymentAmountMismatch);
            }
        }
    }

    #[test]
    fn check_reports_the_first_violation_in_rule_order() {
        let lines = [line("a", 2, usd(1000))];
        let catalog = [item("a", usd(1000), 1)];
        let config = GuardrailConfig { max_order_total_minor: Some(1500), ..Default::default() };
        let mut inp = input(&lines, &catalog);
        inp.intent_max = Some(usd(1000));
        inp.payment_amount = Some(usd(1));
        // Stock, order total, intent and payment all fail; stock comes first.
        assert_eq!(rule_of(config.check(&inp)), Some(Rule::Stock));
        inp.transition = Transition { from: Completed, to: CompleteInProgress };
        assert_eq!(rule_of(config.check(&inp)), Some(Rule::Transition));

        let plenty = [item("a", usd(1000), 9)];
        let mut inp = input(&lines, &plenty);
        inp.intent_max = Some(usd(1000));
        inp.payment_amount = Some(usd(1));
        assert_eq!(rule_of(config.check(&inp)), Some(Rule::OrderTotal));
        assert_eq!(rule_of(GuardrailConfig::default().check(&inp)), Some(Rule::IntentMax));
        inp.intent_max = None;
        assert_eq!(rule_of(GuardrailConfig::default().check(&inp)), Some(Rule::PaymentAmount));
    }

    #[test]
    fn a_clean_checkout_passes_and_is_repriced() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let session = CheckoutSession::new(
            CheckoutId::from_uuid(uuid::Uuid::nil()),
            Currency::usd(),
            vec![line("a", 2, usd(1000)), line("b", 1, usd(499))],
            None,
            now,
            CheckoutSession::DEFAULT_TTL,
        )
        .unwrap();
        let session = session.transition(ReadyForComplete, now).unwrap();
        // The catalog moved by a cent on one line, within a 1 % tolerance.
        let catalog = [item("a", usd(1001), 5), item("b", usd(499), 1)];
        let cart = ClaimedCart {
            lines: vec![claimed("a", 2, usd(2000)), claimed("b", 1, usd(499))],
            total: usd(2499),
        };
        let config = GuardrailConfig {
            price_tolerance_bps: 100,
            max_order_total_minor: Some(10_000),
            velocity: Some(VelocityLimit { max_amount_minor: 50_000, window_secs: 3_600 }),
            ..GuardrailConfig::default()
        };
        let mut inp = GuardrailInput::new(&session, &catalog, CompleteInProgress, usd(40_000));
        inp.claimed_cart = Some(&cart);
        inp.intent_max = Some(usd(3_000));
        inp.payment_amount = Some(usd(2_501));
        inp.merchant = Some(MerchantClaim {
            expected: "https://shop.example",
            named: "https://shop.example/",
        });
        let repriced = config.check(&inp).unwrap();
        assert_eq!(repriced.totals.total, usd(2_501));
        assert_eq!(repriced.lines[0].unit_price, usd(1001));

        // The payment was signed for the stale total: tolerated as a claim,
        // but the charge is the catalog's total.
        inp.payment_amount = Some(usd(2_499));
        let err: Error = config.check(&inp).unwrap_err().into();
        assert_eq!(err.code(), ErrorCode::PaymentAmountMismatch);
        assert_eq!(
            err.message(),
            "the payment of USD 24.99 does not match the order total of USD 25.01"
        );
    }

    #[test]
    fn violations_convert_into_domain_errors() {
        for rule in Rule::ALL {
            let v = rule.violation(format!("because {}", rule.metric_label()));
            assert_eq!(v.to_string(), format!("{}: because {}", rule.code(), rule.metric_label()));
            let e: Error = v.clone().into();
            assert_eq!((e.code(), e.message()), (v.code, v.message.as_str()));
            assert!(!e.retryable(), "{rule:?}");
        }
    }
}
