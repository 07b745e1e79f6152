//! Fulfillment rates and discount codes: the pricing rules behind the UCP
//! fulfillment extension (`fulfillment.json`) and discount extension
//! (`discount.json`), as pure functions of their configuration.
//!
//! This module owns the `[shipping]` and `[discounts]` settings sections,
//! their validation, and the arithmetic: which options a destination gets
//! and at what price, which codes apply to which lines and for how much,
//! and how a discount is split across lines (the `allocations` of an
//! applied discount). It reads no clock, store or catalog: the gateway
//! passes the time, the usage counts and each line's category in.
//!
//! Rules, each decided once here:
//! - A shipping rate serves the countries it lists; a rate listing `*`
//!   serves every country that no other rate names. "Free over" compares
//!   against the merchandise subtotal before discounts, so a discount code
//!   never takes free shipping away.
//! - Pickup, when configured, is always free and needs no buyer address.
//! - Codes are case-insensitive ("Discount codes to apply. Case-insensitive",
//!   `discount.json` `discounts_object.codes`) and are applied in the order
//!   given. Each is computed on the lines it targets; a later code never
//!   takes more than what earlier ones left, so the total discount never
//!   exceeds the subtotal.
//! - A percentage is rounded down to the minor unit: the buyer never gets
//!   more than advertised, and never a fraction of a cent.
//! - A refused code is a warning message, not an error: the checkout stays
//!   usable without it. Codes follow the discount capability's rejection
//!   codes (`discount_code_invalid`, `discount_code_expired`,
//!   `discount_code_already_applied`) plus freeform ones where none fits.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::checkout::{AppliedDiscount, Message, MessageType};
use crate::domain::{Currency, Error, Money, Result};

/// The longest id or code accepted in configuration or from an agent.
const MAX_ID_LEN: usize = 64;

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn bad(setting: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("setting `{setting}`: {why}"))
}

// ---- Shipping ---------------------------------------------------------------

/// The `[shipping]` settings section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingConfig {
    /// The shipping rate table (`[[shipping.rates]]`).
    pub rates: Vec<ShippingRate>,
    /// In-store pickup (`[shipping.pickup]`).
    pub pickup: Option<PickupLocation>,
    /// Offer pickup. A switch rather than removing the table, because a
    /// settings layer can override a value but cannot delete one.
    pub pickup_enabled: bool,
}

/// One shipping option for a set of destination countries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingRate {
    /// The option id agents select (`selected_option_id`).
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ISO 3166-1 alpha-2 codes, or `*` for every country no other rate
    /// names.
    pub countries: Vec<String>,
    /// The price in minor units of the shop currency.
    pub amount_minor: i64,
    /// Free when the merchandise subtotal reaches this many minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_over_minor: Option<i64>,
}

/// Where pickup orders are collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickupLocation {
    /// The option id of pickup, and the id of the location.
    pub id: String,
    pub name: String,
    pub street_address: String,
    pub address_locality: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_region: Option<String>,
    pub postal_code: String,
    pub address_country: String,
}

impl Default for ShippingConfig {
    fn default() -> Self {
        let rate = |id: &str, title: &str, description: &str, countries: &[&str], amount, free| {
            ShippingRate {
                id: id.into(),
                title: title.into(),
                description: Some(description.into()),
                countries: countries.iter().map(|c| (*c).to_owned()).collect(),
                amount_minor: amount,
                free_over_minor: free,
            }
        };
        Self {
            rates: vec![
                rate(
                    "us-standard",
                    "Standard shipping",
                    "Arrives in 3-5 business days; free over $50",
                    &["US"],
                    599,
                    Some(5000),
                ),
                rate(
                    "us-express",
                    "Express shipping",
                    "Arrives in 1-2 business days",
                    &["US"],
                    1499,
                    None,
                ),
                rate(
                    "intl-standard",
                    "International shipping",
                    "Arrives in 7-14 business days",
                    &["*"],
                    2499,
                    None,
                ),
            ],
            pickup: Some(PickupLocation {
                id: "pickup".into(),
                name: "Agentgate Demo Store".into(),
                street_address: "1 Market Street".into(),
                address_locality: "San Francisco".into(),
                address_region: Some("CA".into()),
                postal_code: "94105".into(),
                address_country: "US".into(),
            }),
            pickup_enabled: true,
        }
    }
}

/// How an option is fulfilled (UCP `fulfillment_method.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    Shipping,
    Pickup,
}

impl MethodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shipping => "shipping",
            Self::Pickup => "pickup",
        }
    }
}

/// One priced fulfillment option, as offered to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfillmentOption {
    pub id: String,
    pub kind: MethodKind,
    pub title: String,
    pub description: Option<String>,
    pub amount: Money,
}

fn is_country(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

impl ShippingConfig {
    /// Checks the section once at startup.
    pub fn validate(&self) -> Result<()> {
        let mut ids = HashSet::new();
        for (i, r) in self.rates.iter().enumerate() {
            let at = format!("shipping.rates[{i}]");
            if !valid_id(&r.id) {
                return Err(bad(&at, "id must be 1-64 letters, digits, - or _"));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(bad(&at, format!("duplicate id {:?}", r.id)));
            }
            if r.title.trim().is_empty() {
                return Err(bad(&at, "title must not be empty"));
            }
            if r.countries.is_empty() || !r.countries.iter().all(|c| c == "*" || is_country(c)) {
                return Err(bad(
                    &at,
                    "countries must be ISO 3166-1 alpha-2 codes (\"US\") or \"*\"",
                ));
            }
            if r.amount_minor < 0 || r.free_over_minor.is_some_and(|f| f < 0) {
                return Err(bad(&at, "amounts must not be negative"));
            }
        }
        if let Some(p) = &self.pickup {
            if !valid_id(&p.id) || ids.contains(p.id.as_str()) {
                return Err(bad("shipping.pickup", "id must be a valid id unused by any rate"));
            }
            if p.name.trim().is_empty() || !is_country(&p.address_country) {
                return Err(bad("shipping.pickup", "needs a name and an alpha-2 address_country"));
            }
        }
        Ok(())
    }

    /// The shipping options for `country`, priced for a merchandise
    /// subtotal of `merchandise`. Rates naming the country win; only when
    /// none does are the `*` rates offered.
    pub fn shipping_options(&self, country: &str, merchandise: Money) -> Vec<FulfillmentOption> {
        let country = country.trim().to_ascii_uppercase();
        let named: Vec<&ShippingRate> =
            self.rates.iter().filter(|r| r.countries.contains(&country)).collect();
        let chosen = if named.is_empty() {
            self.rates.iter().filter(|r| r.countries.iter().any(|c| c == "*")).collect()
        } else {
            named
        };
        let currency = merchandise.currency();
        chosen
            .into_iter()
            .map(|r| {
                let free = r.free_over_minor.is_some_and(|t| merchandise.minor() >= t);
                FulfillmentOption {
                    id: r.id.clone(),
                    kind: MethodKind::Shipping,
                    title: r.title.clone(),
                    description: r.description.clone(),
                    amount: Money::new(if free { 0 } else { r.amount_minor }, currency),
                }
            })
            .collect()
    }

    /// The pickup option, free, when pickup is configured.
    pub fn pickup_option(&self, currency: Currency) -> Option<FulfillmentOption> {
        self.pickup.as_ref().filter(|_| self.pickup_enabled).map(|p| FulfillmentOption {
            id: p.id.clone(),
            kind: MethodKind::Pickup,
            title: format!("Pickup at {}", p.name),
            description: Some(format!(
                "{}, {} {}",
                p.street_address, p.address_locality, p.postal_code
            )),
            amount: Money::zero(currency),
        })
    }

    /// Whether `option_id` names the pickup option.
    pub fn is_pickup(&self, option_id: &str) -> bool {
        self.pickup_enabled && self.pickup.as_ref().is_some_and(|p| p.id == option_id)
    }
}

// ---- Discounts --------------------------------------------------------------

/// The `[discounts]` settings section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscountConfig {
    /// The codes (`[[discounts.codes]]`).
    pub codes: Vec<DiscountRule>,
}

/// What a code takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscountKind {
    /// `value` percent of the targeted lines (1 to 100).
    Percentage,
    /// `value` minor units off the targeted lines.
    FixedAmount,
}

/// Which lines a code applies to. Both lists empty means every line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppliesTo {
    /// Category paths; a line matches its category or any parent of it
    /// (`apparel` matches `apparel/shirts`).
    pub categories: Vec<String>,
    /// SKUs, matched exactly.
    pub skus: Vec<String>,
}

impl AppliesTo {
    fn is_all(&self) -> bool {
        self.categories.is_empty() && self.skus.is_empty()
    }

    fn matches(&self, line: &DiscountLine<'_>) -> bool {
        if self.is_all() {
            return true;
        }
        let in_category = self.categories.iter().any(|c| {
            let c = c.trim_end_matches('/');
            line.category == c
                || line.category.strip_prefix(c).is_some_and(|rest| rest.starts_with('/'))
        });
        in_category || self.skus.iter().any(|s| s == line.sku)
    }
}

/// One configured discount code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountRule {
    /// The code agents send; matched case-insensitively.
    pub code: String,
    /// The name shown for the applied discount.
    pub title: String,
    pub kind: DiscountKind,
    /// Percent for `percentage`, minor units for `fixed_amount`.
    pub value: i64,
    /// The merchandise subtotal (minor units) below which the code does
    /// not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_subtotal_minor: Option<i64>,
    /// RFC 3339; from this instant on the code is refused.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// How many completed checkouts may use the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_limit: Option<u64>,
    #[serde(default)]
    pub applies_to: AppliesTo,
}

impl Default for DiscountConfig {
    fn default() -> Self {
        Self {
            codes: vec![
                DiscountRule {
                    code: "WELCOME10".into(),
                    title: "10% off your order".into(),
                    kind: DiscountKind::Percentage,
                    value: 10,
                    min_subtotal_minor: None,
                    expires_at: None,
                    usage_limit: None,
                    applies_to: AppliesTo::default(),
                },
                DiscountRule {
                    code: "SAVE5".into(),
                    title: "$5 off orders over $30".into(),
                    kind: DiscountKind::FixedAmount,
                    value: 500,
                    min_subtotal_minor: Some(3000),
                    expires_at: None,
                    usage_limit: None,
                    applies_to: AppliesTo::default(),
                },
            ],
        }
    }
}

/// Normalises a code for comparison: trimmed and upper case.
pub fn normalise_code(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

impl DiscountConfig {
    /// Checks the section once at startup.
    pub fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for (i, r) in self.codes.iter().enumerate() {
            let at = format!("discounts.codes[{i}]");
            if !valid_id(&r.code) {
                return Err(bad(&at, "code must be 1-64 letters, digits, - or _"));
            }
            if !seen.insert(normalise_code(&r.code)) {
                return Err(bad(&at, format!("duplicate code {:?} (codes ignore case)", r.code)));
            }
            if r.title.trim().is_empty() {
                return Err(bad(&at, "title must not be empty"));
            }
            match r.kind {
                DiscountKind::Percentage if !(1..=100).contains(&r.value) => {
                    return Err(bad(&at, "a percentage value must be 1 to 100"))
                }
                DiscountKind::FixedAmount if r.value <= 0 => {
                    return Err(bad(&at, "a fixed_amount value must be positive minor units"))
                }
                _ => {}
            }
            if r.min_subtotal_minor.is_some_and(|m| m < 0) {
                return Err(bad(&at, "min_subtotal_minor must not be negative"));
            }
            if r.usage_limit == Some(0) {
                return Err(bad(&at, "usage_limit must be at least 1 (remove the code instead)"));
            }
        }
        Ok(())
    }

    /// The rule for a code, ignoring case.
    pub fn rule(&self, code: &str) -> Option<&DiscountRule> {
        let code = normalise_code(code);
        self.codes.iter().find(|r| normalise_code(&r.code) == code)
    }

    /// Applies `codes` to `lines` at `now`. `uses` holds, per normalised
    /// code, how many completed checkouts used it; a code with a usage
    /// limit but no count is refused, because a limit that cannot be
    /// checked must not be assumed unreached.
    pub fn apply(
        &self,
        codes: &[String],
        lines: &[DiscountLine<'_>],
        currency: Currency,
        now: OffsetDateTime,
        uses: &BTreeMap<String, u64>,
    ) -> Result<DiscountOutcome> {
        let merchandise: i64 = lines.iter().try_fold(0i64, |acc, l| {
            acc.checked_add(l.total).ok_or_else(|| Error::invalid("subtotal overflows"))
        })?;
        // What is left to discount on each line after earlier codes.
        let mut left: Vec<i64> = lines.iter().map(|l| l.total.max(0)).collect();
        let mut outcome = DiscountOutcome {
            applied: Vec::new(),
            messages: Vec::new(),
            total: Money::zero(currency),
        };
        let mut seen = HashSet::new();
        for (i, raw) in codes.iter().enumerate() {
            let code = normalise_code(raw);
            let path = format!("$.discounts.codes[{i}]");
            let mut refuse = |code_name: &str, content: String| {
                outcome.messages.push(Message {
                    kind: MessageType::Warning,
                    code: code_name.to_owned(),
                    content,
                    severity: None,
                    path: Some(path.clone()),
                });
            };
            if !seen.insert(code.clone()) {
                refuse(
                    "discount_code_already_applied",
                    format!("the code {code} is already applied"),
                );
                continue;
            }
            let Some(rule) = self.rule(&code) else {
                refuse("discount_code_invalid", format!("the code {code} is not valid"));
                continue;
            };
            if rule.expires_at.is_some_and(|at| now >= at) {
                refuse("discount_code_expired", format!("the code {code} has expired"));
                continue;
            }
            if let Some(min) = rule.min_subtotal_minor {
                if merchandise < min {
                    let min = Money::new(min, currency);
                    refuse(
                        "discount_code_minimum_not_met",
                        format!("the code {code} needs a subtotal of at least {min}"),
                    );
                    continue;
                }
            }
            if let Some(limit) = rule.usage_limit {
                match uses.get(&code) {
                    Some(used) if *used < limit => {}
                    Some(_) => {
                        refuse(
                            "discount_code_usage_limit_reached",
                            format!("the code {code} has been used up"),
                        );
                        continue;
                    }
                    None => {
                        refuse(
                            "discount_code_unavailable",
                            format!("the code {code} cannot be checked right now; try again"),
                        );
                        continue;
                    }
                }
            }
            let targets: Vec<usize> =
                (0..lines.len()).filter(|&j| rule.applies_to.matches(&lines[j])).collect();
            let base: i64 = targets.iter().map(|&j| lines[j].total.max(0)).sum();
            // Only lines with something left take part, and all of them are
            // listed, even one whose rounded share is zero: `allocations`
            // replays the split from exactly this list.
            let live: Vec<usize> = targets.into_iter().filter(|&j| left[j] > 0).collect();
            let room: i64 = live.iter().map(|&j| left[j]).sum();
            if live.is_empty() || base == 0 || room == 0 {
                refuse(
                    "discount_code_not_applicable",
                    format!("the code {code} does not apply to any item in this checkout"),
                );
                continue;
            }
            let wanted = match rule.kind {
                // Rounded down: i128 keeps the product exact.
                DiscountKind::Percentage => {
                    i64::try_from(i128::from(base) * i128::from(rule.value) / 100)
                        .map_err(|_| Error::invalid("discount overflows"))?
                }
                DiscountKind::FixedAmount => rule.value,
            };
            let amount = wanted.min(room);
            if amount <= 0 {
                continue;
            }
            // Split by what is left on each targeted line, then take it off.
            let weights: Vec<i64> = live.iter().map(|&j| left[j]).collect();
            let split = allocate(amount, &weights);
            for (&j, part) in live.iter().zip(&split) {
                left[j] -= part;
            }
            let line_ids = live.iter().map(|&j| lines[j].line_id.to_owned()).collect();
            let money = Money::new(amount, currency);
            outcome.total = outcome.total.checked_sub(money)?;
            outcome.applied.push(AppliedDiscount {
                code: code.clone(),
                title: rule.title.clone(),
                amount: money.checked_neg()?,
                line_ids,
            });
        }
        Ok(outcome)
    }
}

/// A line as discounts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscountLine<'a> {
    pub line_id: &'a str,
    pub sku: &'a str,
    /// The product's category path (`apparel/shirts`).
    pub category: &'a str,
    /// Unit price times quantity, in minor units.
    pub total: i64,
}

/// The result of applying codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscountOutcome {
    /// Applied discounts, amounts negative as session totals require.
    pub applied: Vec<AppliedDiscount>,
    /// Warnings for refused codes.
    pub messages: Vec<Message>,
    /// The sum of the applied amounts (zero or negative).
    pub total: Money,
}

/// How each applied discount splits across its lines, replayed from the
/// line totals (`(line id, unit price × quantity)`) and the discounts in the
/// order they were applied, exactly as [`DiscountConfig::apply`] split
/// them. Amounts are positive minor units, as `allocation.amount` is
/// (`discount.json`).
pub fn allocations(
    line_totals: &[(&str, i64)],
    applied: &[AppliedDiscount],
) -> Vec<Vec<(String, i64)>> {
    let mut left: BTreeMap<&str, i64> =
        line_totals.iter().map(|(id, total)| (*id, (*total).max(0))).collect();
    applied
        .iter()
        .map(|d| {
            let weights: Vec<i64> =
                d.line_ids.iter().map(|id| left.get(id.as_str()).copied().unwrap_or(0)).collect();
            let amount = d.amount.minor().checked_neg().unwrap_or(0).max(0);
            let split = allocate(amount, &weights);
            d.line_ids
                .iter()
                .zip(split)
                .map(|(id, part)| {
                    if let Some(l) = left.get_mut(id.as_str()) {
                        *l -= part;
                    }
                    (id.clone(), part)
                })
                .collect()
        })
        .collect()
}

/// Splits `amount` across `weights` in proportion, in whole minor units,
/// so the parts sum to `amount` exactly: each part is rounded down and the
/// units left over go to the largest remainders, ties to the earlier
/// weight (Hamilton's method). Zero or negative weights get nothing unless
/// every weight is, when the first takes all. Used both to take a discount
/// off lines and to render its `allocations`, so the two always agree.
pub fn allocate(amount: i64, weights: &[i64]) -> Vec<i64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let positive: Vec<i128> = weights.iter().map(|w| i128::from((*w).max(0))).collect();
    let sum: i128 = positive.iter().sum();
    if sum == 0 {
        let mut out = vec![0; weights.len()];
        out[0] = amount;
        return out;
    }
    let amount128 = i128::from(amount);
    let mut parts: Vec<i128> = positive.iter().map(|w| amount128 * w / sum).collect();
    let mut rest = amount128 - parts.iter().sum::<i128>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; the sort is stable, so ties keep their order.
    order.sort_by_key(|&i| std::cmp::Reverse(amount128 * positive[i] % sum));
    for &i in order.iter().cycle().take(weights.len() * 2) {
        if rest <= 0 {
            break;
        }
        if positive[i] > 0 {
            parts[i] += 1;
            rest -= 1;
        }
    }
    // Each part is at most `amount`, so it fits back into i64.
    parts.into_iter().map(|p| i64::try_from(p).unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::usd())
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        ShippingConfig::default().validate().unwrap();
        DiscountConfig::default().validate().unwrap();
    }

    #[test]
    fn shipping_table() {
        let cfg = ShippingConfig::default();
        type Case<'a> = (&'a str, i64, &'a [(&'a str, i64)]);
        let cases: &[Case<'_>] = &[
            ("US", 4999, &[("us-standard", 599), ("us-express", 1499)]),
            ("us", 5000, &[("us-standard", 0), ("us-express", 1499)]),
            ("DE", 100_000, &[("intl-standard", 2499)]),
            ("", 100, &[("intl-standard", 2499)]),
        ];
        for (country, subtotal, want) in cases {
            let got: Vec<(String, i64)> = cfg
                .shipping_options(country, usd(*subtotal))
                .into_iter()
                .map(|o| (o.id, o.amount.minor()))
                .collect();
            let want: Vec<(String, i64)> =
                want.iter().map(|(i, a)| ((*i).to_owned(), *a)).collect();
            assert_eq!(got, want, "{country} {subtotal}");
        }
        let pickup = cfg.pickup_option(Currency::usd()).unwrap();
        assert_eq!((pickup.kind, pickup.amount.minor()), (MethodKind::Pickup, 0));
        assert!(cfg.is_pickup("pickup") && !cfg.is_pickup("us-standard"));
        let no_wildcard =
            ShippingConfig { rates: cfg.rates[..2].to_vec(), pickup: None, pickup_enabled: true };
        assert!(no_wildcard.pickup_option(Currency::usd()).is_none());
        let off = ShippingConfig { pickup_enabled: false, ..cfg.clone() };
        assert!(off.pickup_option(Currency::usd()).is_none() && !off.is_pickup("pickup"));
        assert!(no_wildcard.shipping_options("FR", usd(1)).is_empty());
    }

    #[test]
    fn bad_shipping_settings_are_refused() {
        let base = ShippingConfig::default();
        let mut cases: Vec<(&str, ShippingConfig)> = Vec::new();
        let mut c = base.clone();
        c.rates[1].id = c.rates[0].id.clone();
        cases.push(("duplicate id", c));
        let mut c = base.clone();
        c.rates[0].countries = vec!["USA".into()];
        cases.push(("alpha-3 country", c));
        let mut c = base.clone();
        c.rates[0].amount_minor = -1;
        cases.push(("negative amount", c));
        let mut c = base.clone();
        c.rates[0].id = "has space".into();
        cases.push(("bad id", c));
        let mut c = base.clone();
        if let Some(p) = c.pickup.as_mut() {
            p.id = "us-express".into();
        }
        cases.push(("pickup id taken", c));
        for (name, cfg) in cases {
            assert!(cfg.validate().is_err(), "{name}");
        }
    }

    fn line<'a>(id: &'a str, sku: &'a str, category: &'a str, total: i64) -> DiscountLine<'a> {
        DiscountLine { line_id: id, sku, category, total }
    }

    fn rule(code: &str, kind: DiscountKind, value: i64) -> DiscountRule {
        DiscountRule {
            code: code.into(),
            title: code.into(),
            kind,
            value,
            min_subtotal_minor: None,
            expires_at: None,
            usage_limit: None,
            applies_to: AppliesTo::default(),
        }
    }

    #[test]
    fn discount_table() {
        let mut shirts = rule("SHIRTS20", DiscountKind::Percentage, 20);
        shirts.applies_to.categories = vec!["apparel".into()];
        let mut sku = rule("MUG1", DiscountKind::FixedAmount, 100);
        sku.applies_to.skus = vec!["MUG".into()];
        let mut old = rule("OLD", DiscountKind::Percentage, 50);
        old.expires_at = Some(now());
        let mut limited = rule("LIMITED", DiscountKind::FixedAmount, 100);
        limited.usage_limit = Some(2);
        let mut big = rule("BIG", DiscountKind::FixedAmount, 1_000_000);
        big.min_subtotal_minor = Some(1000);
        let cfg = DiscountConfig {
            codes: vec![
                rule("WELCOME10", DiscountKind::Percentage, 10),
                rule("SAVE5", DiscountKind::FixedAmount, 500),
                shirts,
                sku,
                old,
                limited,
                big,
            ],
        };
        cfg.validate().unwrap();
        let lines = [
            line("li_1", "SHIRT", "apparel/shirts", 5800),
            line("li_2", "MUG", "home/kitchen", 1601),
        ];
        let mut uses = BTreeMap::new();
        uses.insert("LIMITED".to_owned(), 2u64);
        type Case<'a> = (&'a [&'a str], i64, &'a [(&'a str, i64, &'a [&'a str])], &'a [&'a str]);
        let cases: Vec<Case<'_>> = vec![
            // 10% of 7401 is 740.1, rounded down.
            (&["welcome10"], -740, &[("WELCOME10", -740, &["li_1", "li_2"])], &[]),
            (
                &["SAVE5", " save5 "],
                -500,
                &[("SAVE5", -500, &["li_1", "li_2"])],
                &["discount_code_already_applied"],
            ),
            (&["SHIRTS20"], -1160, &[("SHIRTS20", -1160, &["li_1"])], &[]),
            (&["MUG1"], -100, &[("MUG1", -100, &["li_2"])], &[]),
            (&["OLD"], 0, &[], &["discount_code_expired"]),
            (&["NOPE"], 0, &[], &["discount_code_invalid"]),
            (&["LIMITED"], 0, &[], &["discount_code_usage_limit_reached"]),
            // Capped at what is left: the subtotal.
            (
                &["WELCOME10", "BIG"],
                -7401,
                &[("WELCOME10", -740, &["li_1", "li_2"]), ("BIG", -6661, &["li_1", "li_2"])],
                &[],
            ),
        ];
        for (codes, total, applied, warnings) in cases {
            let codes: Vec<String> = codes.iter().map(|c| (*c).to_owned()).collect();
            let out = cfg.apply(&codes, &lines, Currency::usd(), now(), &uses).unwrap();
            assert_eq!(out.total.minor(), total, "{codes:?}");
            let got: Vec<(String, i64, Vec<String>)> = out
                .applied
                .iter()
                .map(|a| (a.code.clone(), a.amount.minor(), a.line_ids.clone()))
                .collect();
            let want: Vec<(String, i64, Vec<String>)> = applied
                .iter()
                .map(|(c, a, l)| ((*c).to_owned(), *a, l.iter().map(|s| (*s).to_owned()).collect()))
                .collect();
            assert_eq!(got, want, "{codes:?}");
            let got: Vec<&str> = out.messages.iter().map(|m| m.code.as_str()).collect();
            assert_eq!(got, warnings.to_vec(), "{codes:?}");
            assert!(out.messages.iter().all(|m| m.kind == MessageType::Warning));
        }
    }

    #[test]
    fn limits_and_minimums() {
        let mut limited = rule("LIMITED", DiscountKind::FixedAmount, 100);
        limited.usage_limit = Some(2);
        let mut min = rule("MIN", DiscountKind::FixedAmount, 100);
        min.min_subtotal_minor = Some(3000);
        let cfg = DiscountConfig { codes: vec![limited, min] };
        let lines = [line("li_1", "A", "x", 2999)];
        let codes = |c: &str| vec![c.to_owned()];
        let apply = |c: &str, uses: &BTreeMap<String, u64>| {
            cfg.apply(&codes(c), &lines, Currency::usd(), now(), uses).unwrap()
        };
        let none = BTreeMap::new();
        let one: BTreeMap<String, u64> = [("LIMITED".to_owned(), 1)].into();
        assert_eq!(apply("LIMITED", &one).total.minor(), -100);
        assert_eq!(apply("LIMITED", &none).messages[0].code, "discount_code_unavailable");
        assert_eq!(apply("MIN", &none).messages[0].code, "discount_code_minimum_not_met");
    }

    #[test]
    fn bad_discount_settings_are_refused() {
        let cases = [
            ("percent over 100", rule("A", DiscountKind::Percentage, 101)),
            ("zero percent", rule("A", DiscountKind::Percentage, 0)),
            ("negative amount", rule("A", DiscountKind::FixedAmount, -1)),
            ("bad code", rule("A B", DiscountKind::FixedAmount, 1)),
        ];
        for (name, r) in cases {
            assert!(DiscountConfig { codes: vec![r] }.validate().is_err(), "{name}");
        }
        let dup = DiscountConfig {
            codes: vec![
                rule("A", DiscountKind::FixedAmount, 1),
                rule("a", DiscountKind::FixedAmount, 1),
            ],
        };
        assert!(dup.validate().is_err(), "codes ignore case");
    }

    #[test]
    fn allocations_replay_the_split() {
        let cfg = DiscountConfig {
            codes: vec![
                rule("TEN", DiscountKind::Percentage, 10),
                rule("ODD", DiscountKind::FixedAmount, 333),
            ],
        };
        let lines =
            [line("li_1", "A", "x", 5800), line("li_2", "B", "y", 1601), line("li_3", "C", "z", 1)];
        let codes = vec!["TEN".to_owned(), "ODD".to_owned()];
        let out = cfg.apply(&codes, &lines, Currency::usd(), now(), &BTreeMap::new()).unwrap();
        let totals: Vec<(&str, i64)> = lines.iter().map(|l| (l.line_id, l.total)).collect();
        let replay = allocations(&totals, &out.applied);
        for (d, parts) in out.applied.iter().zip(&replay) {
            assert_eq!(parts.iter().map(|(_, a)| a).sum::<i64>(), -d.amount.minor());
            let ids: Vec<&String> = parts.iter().map(|(id, _)| id).collect();
            assert_eq!(ids, d.line_ids.iter().collect::<Vec<_>>());
        }
        // The 1-cent line takes part with a zero share of 10 %.
        assert_eq!(replay[0], vec![("li_1".into(), 580), ("li_2".into(), 160), ("li_3".into(), 0)]);
    }

    #[test]
    fn allocation_table() {
        let cases: &[(i64, &[i64], &[i64])] = &[
            (100, &[1, 1], &[50, 50]),
            (101, &[1, 1], &[51, 50]),
            (10, &[1, 2, 3], &[2, 3, 5]),
            (7, &[0, 5], &[0, 7]),
            (7, &[0, 0], &[7, 0]),
            (0, &[3, 4], &[0, 0]),
            (740, &[5800, 1601], &[580, 160]),
        ];
        for (amount, weights, want) in cases {
            let got = allocate(*amount, weights);
            assert_eq!(got, want.to_vec(), "{amount} over {weights:?}");
            assert_eq!(got.iter().sum::<i64>(), *amount);
        }
        assert!(allocate(5, &[]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn allocations_sum_exactly(amount in 0i64..10_000_000, weights in proptest::collection::vec(0i64..1_000_000, 1..8)) {
            let parts = allocate(amount, &weights);
            proptest::prop_assert_eq!(parts.iter().sum::<i64>(), amount);
            proptest::prop_assert!(parts.iter().all(|p| *p >= 0));
        }
    }
}
