//! The platform fee: how much of an order's gross the platform takes, and
//! the ledger rules for recording and reversing it (step 5 of the checkout
//! pipeline in `DESIGN.md`).
//!
//! It owns the fee arithmetic, its one rounding rule, and the shape of fee
//! and reversal ledger entries. It must not know where entries are stored
//! or when they are written: the pipeline appends them through the store,
//! and passes ids and instants in.
//!
//! # The rounding rule
//!
//! Integer arithmetic only, with an `i128` intermediate so that no gross in
//! `i64` can overflow:
//!
//! ```text
//! raw = (gross × bps + 5 000) / 10 000      (round half up, in minor units)
//! fee = min(max(raw, minimum), cap, gross)
//! ```
//!
//! A gross of zero or less has a fee of zero, whatever the minimum. The
//! minimum and the cap are per currency, because a minor unit of JPY is not
//! a minor unit of USD. The fee is never above the gross: a minimum larger
//! than a tiny order takes the whole order, never more.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{Currency, Error, LedgerEntry, LedgerKind, Money, OrderId, Result};

/// 10 000 basis points is 100 %.
const BPS_DENOMINATOR: i128 = 10_000;

/// Fee settings, part of the gateway settings under `fees`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeePolicy {
    /// The fee rate in basis points of the gross (50 = 0.5 %).
    pub bps: u32,
    /// The smallest fee per currency, in minor units, keyed by ISO 4217 code.
    pub minimum_minor: BTreeMap<String, i64>,
    /// The largest fee per currency, in minor units, keyed by ISO 4217 code.
    pub cap_minor: BTreeMap<String, i64>,
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self { bps: 50, minimum_minor: BTreeMap::new(), cap_minor: BTreeMap::new() }
    }
}

fn bad_setting(setting: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("setting `fees.{setting}`: {why}"))
}

/// The amount for `currency` in a per-currency map. Keys are matched
/// ignoring ASCII case, because environment variables arrive lower-cased
/// (`AGENTGATE_FEES__MINIMUM_MINOR__USD` becomes `usd`).
fn amount_for(map: &BTreeMap<String, i64>, currency: Currency) -> Option<i64> {
    map.iter()
        .find(|(code, _)| code.trim().eq_ignore_ascii_case(currency.code()))
        .map(|(_, amount)| *amount)
}

/// Checks one per-currency map: known codes, each once, no negative amount.
fn validate_map(name: &str, map: &BTreeMap<String, i64>) -> Result<()> {
    let mut seen = HashSet::new();
    for (code, amount) in map {
        let currency = Currency::parse(code)
            .map_err(|e| bad_setting(&format!("{name}.{code}"), e.message()))?;
        if !seen.insert(currency) {
            return Err(bad_setting(name, format!("{currency} is given more than once")));
        }
        if *amount < 0 {
            return Err(bad_setting(&format!("{name}.{code}"), "must not be negative"));
        }
    }
    Ok(())
}

impl FeePolicy {
    /// Checks the policy once at startup; [`FeePolicy::fee_for`] checks it
    /// again, so a policy built in code cannot skip it either.
    pub fn validate(&self) -> Result<()> {
        if i128::from(self.bps) > BPS_DENOMINATOR {
            return Err(bad_setting(
                "bps",
                format!("must be at most 10000 (100%), got {}", self.bps),
            ));
        }
        validate_map("minimum_minor", &self.minimum_minor)?;
        validate_map("cap_minor", &self.cap_minor)?;
        for (code, minimum) in &self.minimum_minor {
            let currency =
                Currency::parse(code).map_err(|e| bad_setting("minimum_minor", e.message()))?;
            if let Some(cap) = amount_for(&self.cap_minor, currency) {
                if *minimum > cap {
                    return Err(bad_setting(
                        &format!("minimum_minor.{code}"),
                        format!("the minimum {minimum} is above the cap {cap}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The minimum fee configured for `currency`, if any.
    pub fn minimum_for(&self, currency: Currency) -> Option<Money> {
        amount_for(&self.minimum_minor, currency).map(|m| Money::new(m, currency))
    }

    /// The fee cap configured for `currency`, if any.
    pub fn cap_for(&self, currency: Currency) -> Option<Money> {
        amount_for(&self.cap_minor, currency).map(|m| Money::new(m, currency))
    }

    /// The platform fee on `gross`, by the rule in the module docs: round
    /// half up, then the minimum, then the cap, never above the gross and
    /// never negative. Fails only if the policy itself is invalid.
    pub fn fee_for(&self, gross: Money) -> Result<Money> {
        self.validate()?;
        let currency = gross.currency();
        if gross.minor() <= 0 {
            return Ok(Money::zero(currency));
        }
        let gross_minor = i128::from(gross.minor());
        let mut fee = (gross_minor * i128::from(self.bps) + BPS_DENOMINATOR / 2) / BPS_DENOMINATOR;
        if let Some(minimum) = amount_for(&self.minimum_minor, currency) {
            fee = fee.max(i128::from(minimum));
        }
        if let Some(cap) = amount_for(&self.cap_minor, currency) {
            fee = fee.min(i128::from(cap));
        }
        let fee = fee.clamp(0, gross_minor);
        // Clamped to a positive i64 just above, so the conversion holds.
        let minor = i64::try_from(fee).map_err(|_| Error::internal("fee outside the gross"))?;
        Ok(Money::new(minor, currency))
    }

    /// The ledger entry that records the fee earned on a completed order.
    pub fn fee_entry(
        &self,
        id: String,
        order_id: OrderId,
        gross: Money,
        at: OffsetDateTime,
    ) -> Result<LedgerEntry> {
        let fee = self.fee_for(gross)?;
        Ok(LedgerEntry { id, order_id, kind: LedgerKind::Fee, gross, fee, at })
    }
}

/// The entry that reverses `entry` when its order is refunded: the same
/// order, the gross and the fee negated, kind `Reversal`. Adding it to the
/// ledger brings the order's contribution back to zero. Only a fee entry
/// can be reversed; reversing a reversal would earn the fee a second time.
pub fn reversal(entry: &LedgerEntry, id: String, at: OffsetDateTime) -> Result<LedgerEntry> {
    if entry.kind != LedgerKind::Fee {
        return Err(Error::invalid(format!(
            "ledger entry {} is a {}, and only a fee can be reversed",
            entry.id,
            entry.kind.as_str()
        )));
    }
    Ok(LedgerEntry {
        id,
        order_id: entry.order_id.clone(),
        kind: LedgerKind::Reversal,
        gross: entry.gross.checked_neg()?,
        fee: entry.fee.checked_neg()?,
        at,
    })
}

/// The fees earned in `currency`: the plain sum of `fee` over the entries in
/// that currency (reversals carry negative fees). Entries in other
/// currencies are left out, since they cannot be added together.
pub fn ledger_total<'a>(
    currency: Currency,
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Result<Money> {
    Money::sum(
        currency,
        entries.into_iter().filter(|e| e.fee.currency() == currency).map(|e| e.fee),
    )
}

/// The fees earned, one total per currency that appears in `entries`.
pub fn ledger_totals<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Result<BTreeMap<Currency, Money>> {
    let mut totals: BTreeMap<Currency, Money> = BTreeMap::new();
    for e in entries {
        let currency = e.fee.currency();
        let running = totals.get(&currency).copied().unwrap_or(Money::zero(currency));
        totals.insert(currency, running.checked_add(e.fee)?);
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorCode;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::usd())
    }

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn order(n: usize) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n as u128 + 1))
    }

    fn policy(bps: u32, minimum: &[(&str, i64)], cap: &[(&str, i64)]) -> FeePolicy {
        let map = |pairs: &[(&str, i64)]| pairs.iter().map(|(c, a)| (c.to_string(), *a)).collect();
        FeePolicy { bps, minimum_minor: map(minimum), cap_minor: map(cap) }
    }

    #[test]
    fn defaults_and_parsing() {
        let empty: FeePolicy = toml::from_str("").unwrap();
        assert_eq!(empty, FeePolicy::default());
        assert_eq!(empty.bps, 50);
        assert!(empty.validate().is_ok());
        let full: FeePolicy = toml::from_str(
            "bps = 75\n[minimum_minor]\nUSD = 30\nJPY = 5\n[cap_minor]\nusd = 2000\n",
        )
        .unwrap();
        assert!(full.validate().is_ok());
        assert_eq!(full.minimum_for(cur("USD")), Some(usd(30)));
        assert_eq!(full.minimum_for(cur("JPY")), Some(Money::new(5, cur("JPY"))));
        assert_eq!(full.cap_for(cur("USD")), Some(usd(2000)));
        assert_eq!(full.cap_for(cur("EUR")), None);
        assert!(toml::from_str::<FeePolicy>("rate = 1").is_err());
        assert!(toml::from_str::<FeePolicy>("bps = -1").is_err());
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let cases = [
            (policy(10_001, &[], &[]), "fees.bps"),
            (policy(50, &[("USD", -1)], &[]), "fees.minimum_minor.USD"),
            (policy(50, &[], &[("EUR", -5)]), "fees.cap_minor.EUR"),
            (policy(50, &[("USD", 300)], &[("USD", 200)]), "fees.minimum_minor.USD"),
            (policy(50, &[("usd", 300)], &[("USD", 200)]), "fees.minimum_minor.usd"),
            (policy(50, &[("ZZZ", 1)], &[]), "fees.minimum_minor.ZZZ"),
            (policy(50, &[("USD", 1), ("usd", 2)], &[]), "fees.minimum_minor"),
        ];
        for (p, setting) in cases {
            let err = p.validate().unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{setting}");
            assert!(err.message().contains(setting), "{setting}: {}", err.message());
            // An invalid policy computes no fee at all.
            assert_eq!(p.fee_for(usd(1000)).unwrap_err().code(), ErrorCode::InvalidInput);
        }
        let fine = [
            policy(10_000, &[], &[]),
            policy(0, &[("USD", 0)], &[("USD", 0)]),
            policy(50, &[("USD", 200)], &[("USD", 200)]),
            policy(50, &[("USD", 300)], &[("EUR", 200)]),
        ];
        for p in fine {
            assert!(p.validate().is_ok(), "{p:?}");
        }
    }

    #[test]
    fn fee_table() {
        let plain = policy(50, &[], &[]);
        let min = policy(50, &[("USD", 30)], &[]);
        let capped = policy(50, &[("USD", 30)], &[("USD", 200)]);
        let lower = policy(50, &[("usd", 30)], &[]);
        // (policy, gross, currency, expected fee)
        let cases = [
            (&plain, 1000, "USD", 5),
            // 0.5 % of 100 is 0.5: half rounds up.
            (&plain, 100, "USD", 1),
            // 0.495 rounds down, 1.5 up, 2.5 up.
            (&plain, 99, "USD", 0),
            (&plain, 300, "USD", 2),
            (&plain, 500, "USD", 3),
            (&plain, 0, "USD", 0),
            (&plain, -5000, "USD", 0),
            (&plain, i64::MIN, "USD", 0),
            (&plain, i64::MAX, "USD", 46_116_860_184_273_879),
            (&min, 1000, "USD", 30),
            (&min, 100_000, "USD", 500),
            // Never above the gross, however large the minimum.
            (&min, 10, "USD", 10),
            (&min, 0, "USD", 0),
            // The minimum is for USD only.
            (&min, 1000, "EUR", 5),
            (&lower, 1000, "USD", 30),
            (&capped, 100_000, "USD", 200),
            (&capped, 40_000, "USD", 200),
            (&capped, 39_899, "USD", 199),
            (&policy(10_000, &[], &[]), 1234, "JPY", 1234),
            (&policy(10_000, &[], &[]), i64::MAX, "USD", i64::MAX),
            (&policy(0, &[], &[]), 1_000_000, "USD", 0),
            (&policy(0, &[("USD", 7)], &[]), 1_000_000, "USD", 7),
            (&policy(250, &[], &[]), 1_999, "KWD", 50),
        ];
        for (p, gross, code, want) in cases {
            let fee = p.fee_for(Money::new(gross, cur(code))).unwrap();
            assert_eq!(fee, Money::new(want, cur(code)), "{p:?} on {gross} {code}");
        }
    }

    #[test]
    fn entries_and_reversals() {
        let p = FeePolicy::default();
        let fee = p.fee_entry("led_1".into(), order(1), usd(10_000), at()).unwrap();
        assert_eq!((fee.kind, fee.fee, fee.gross), (LedgerKind::Fee, usd(50), usd(10_000)));
        let rev = reversal(&fee, "led_2".into(), at()).unwrap();
        assert_eq!(
            (rev.kind, rev.fee, rev.gross, &rev.order_id, rev.id.as_str()),
            (LedgerKind::Reversal, usd(-50), usd(-10_000), &fee.order_id, "led_2")
        );
        assert_eq!(ledger_total(Currency::usd(), [&fee, &rev]).unwrap(), usd(0));
        let twice = reversal(&rev, "led_3".into(), at()).unwrap_err();
        assert_eq!(twice.code(), ErrorCode::InvalidInput);
    }

    #[test]
    fn ledger_totals_are_per_currency() {
        let p = policy(100, &[], &[]);
        let jpy = cur("JPY");
        let entries = [
            p.fee_entry("a".into(), order(1), usd(10_000), at()).unwrap(),
            p.fee_entry("b".into(), order(2), Money::new(50_000, jpy), at()).unwrap(),
            p.fee_entry("c".into(), order(3), usd(2_000), at()).unwrap(),
        ];
        let rev = reversal(&entries[2], "d".into(), at()).unwrap();
        let all: Vec<_> = entries.iter().chain([&rev]).collect();
        assert_eq!(ledger_total(Currency::usd(), all.iter().copied()).unwrap(), usd(100));
        assert_eq!(ledger_total(jpy, all.iter().copied()).unwrap(), Money::new(500, jpy));
        assert_eq!(
            ledger_total(cur("EUR"), all.iter().copied()).unwrap(),
            Money::new(0, cur("EUR"))
        );
        let totals = ledger_totals(all.iter().copied()).unwrap();
        let want: BTreeMap<_, _> =
            [(Currency::usd(), usd(100)), (jpy, Money::new(500, jpy))].into_iter().collect();
        assert_eq!(totals, want);
        assert!(ledger_totals([]).unwrap().is_empty());
    }

    /// A valid policy: any rate, and for USD an optional minimum and an
    /// optional cap that is never below the minimum.
    fn any_policy() -> impl Strategy<Value = FeePolicy> {
        (
            0u32..=10_000,
            proptest::option::of(0i64..1_000_000),
            proptest::option::of(0i64..1_000_000),
        )
            .prop_map(|(bps, minimum, extra)| {
                let minimum: Vec<_> = minimum.into_iter().map(|m| ("USD", m)).collect();
                let base = minimum.first().map_or(0, |(_, m)| *m);
                let cap: Vec<_> = extra.into_iter().map(|e| ("USD", base + e)).collect();
                policy(bps, &minimum, &cap)
            })
    }

    /// Sometimes small amounts (where rounding and minimums bite), sometimes
    /// any amount at all.
    fn any_gross() -> impl Strategy<Value = i64> {
        prop_oneof![-1_000i64..100_000, any::<i64>()]
    }

    proptest! {
        #[test]
        fn fee_is_never_negative_nor_above_the_gross(p in any_policy(), gross in any_gross()) {
            let fee = p.fee_for(usd(gross)).unwrap();
            prop_assert!(fee.minor() >= 0);
            prop_assert!(fee.minor() <= gross.max(0));
            prop_assert_eq!(fee.currency(), Currency::usd());
        }

        #[test]
        fn fee_is_monotonic_in_the_gross(p in any_policy(), a in any_gross(), b in any_gross()) {
            let (low, high) = (a.min(b), a.max(b));
            let (f_low, f_high) = (p.fee_for(usd(low)).unwrap(), p.fee_for(usd(high)).unwrap());
            prop_assert!(f_low.minor() <= f_high.minor(), "fee({low}) = {f_low} > fee({high}) = {f_high}");
        }

        #[test]
        fn fee_of_zero_is_zero(p in any_policy()) {
            prop_assert_eq!(p.fee_for(usd(0)).unwrap(), usd(0));
        }

        /// Without a minimum or cap the fee is the nearest integer to
        /// gross × bps / 10 000, and an exact half goes up.
        #[test]
        fn rounding_is_to_the_nearest_half_up(bps in 0u32..=10_000, gross in 1i64..i64::MAX) {
            let fee = i128::from(policy(bps, &[], &[]).fee_for(usd(gross)).unwrap().minor());
            let exact = i128::from(gross) * i128::from(bps);
            // The fee is at most half a unit from the exact value; at exactly
            // half it lies above (rounded up), never below.
            let diff = fee * BPS_DENOMINATOR - exact;
            prop_assert!(diff > -BPS_DENOMINATOR / 2 && diff <= BPS_DENOMINATOR / 2, "diff {diff}");
        }

        /// Completions and refunds in any order: the ledger total per
        /// currency equals the fees of completed orders minus the fees of
        /// the refunded ones, computed without the ledger.
        #[test]
        fn ledger_total_is_fees_minus_reversals(
            p in any_policy(),
            ops in proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..10_000_000, any::<usize>()), 0..60),
        ) {
            let currencies = [Currency::usd(), cur("JPY")];
            let mut ledger: Vec<LedgerEntry> = Vec::new();
            // Per completed order: its fee entry and whether it was refunded.
            let mut orders: Vec<(LedgerEntry, bool)> = Vec::new();
            for (n, (complete, in_jpy, gross, pick)) in ops.into_iter().enumerate() {
                let open: Vec<usize> = (0..orders.len()).filter(|i| !orders[*i].1).collect();
                if complete || open.is_empty() {
                    let gross = Money::new(gross, currencies[usize::from(in_jpy)]);
                    let entry = p.fee_entry(format!("fee_{n}"), order(n), gross, at()).unwrap();
                    ledger.push(entry.clone());
                    orders.push((entry, false));
                } else {
                    let i = open[pick % open.len()];
                    ledger.push(reversal(&orders[i].0, format!("rev_{n}"), at()).unwrap());
                    orders[i].1 = true;
                }
            }
            for currency in currencies {
                let earned: i64 = orders.iter()
                    .filter(|(e, _)| e.fee.currency() == currency)
                    .map(|(e, _)| p.fee_for(e.gross).unwrap().minor())
                    .sum();
                let reversed: i64 = orders.iter()
                    .filter(|(e, refunded)| *refunded && e.fee.currency() == currency)
                    .map(|(e, _)| p.fee_for(e.gross).unwrap().minor())
                    .sum();
                let total = ledger_total(currency, &ledger).unwrap();
                prop_assert_eq!(total, Money::new(earned - reversed, currency));
                prop_assert!(!total.is_negative());
                let per_currency = ledger_totals(&ledger).unwrap();
                let shown = per_currency.get(&currency).copied().unwrap_or(Money::zero(currency));
                prop_assert_eq!(shown, total);
            }
        }
    }
}
