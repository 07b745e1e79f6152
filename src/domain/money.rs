//! Money as integer minor units of an ISO 4217 currency.
//!
//! Amounts never pass through floating point. Arithmetic is checked: an
//! overflow or a currency mix is an error, never a wrap or a silent
//! conversion. Formatting honours the currency's exponent (2 for USD, 0 for
//! JPY, 3 for KWD).

use std::fmt;

use super::error::{Error, ErrorCode, Result};

/// An ISO 4217 currency, validated against the ISO table (via `iso_currency`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    /// Parses an alphabetic ISO 4217 code. Lower case is accepted and
    /// normalised (Stripe sends `usd`).
    pub fn parse(code: &str) -> Result<Self> {
        let upper = code.trim().to_ascii_uppercase();
        let iso = iso_currency::Currency::from_code(&upper).ok_or_else(|| {
            Error::new(ErrorCode::InvalidCurrency, format!("unknown ISO 4217 currency {code:?}"))
        })?;
        // Funds codes and metals (XAU, XDR…) have no minor unit; they are not
        // something a shop charges in.
        let exponent = iso.exponent().ok_or_else(|| {
            Error::new(ErrorCode::InvalidCurrency, format!("{upper} has no minor unit"))
        })?;
        let bytes = upper.as_bytes();
        Ok(Self { code: [bytes[0], bytes[1], bytes[2]], exponent: exponent as u8 })
    }

    pub fn code(&self) -> &str {
        // The bytes came from an upper-cased ISO code, so they are ASCII.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Number of minor-unit digits (2 for USD).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    pub fn usd() -> Self {
        Self { code: *b"USD", exponent: 2 }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of money: signed integer minor units plus a currency.
///
/// Negative amounts exist (discounts, refunds, ledger reversals); whether a
/// negative amount is acceptable is decided where it is used.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_negative(&self) -> bool {
        self.minor < 0
    }

    fn same_currency(&self, other: &Money) -> Result<()> {
        if self.currency != other.currency {
            return Err(Error::new(
                ErrorCode::CurrencyMismatch,
                format!("cannot combine {} with {}", self.currency, other.currency),
            ));
        }
        Ok(())
    }

    fn overflow() -> Error {
        Error::new(ErrorCode::MoneyOverflow, "amount is too large")
    }

    pub fn checked_add(self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        let minor = self.minor.checked_add(other.minor).ok_or_else(Self::overflow)?;
        Ok(Money { minor, ..self })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        let minor = self.minor.checked_sub(other.minor).ok_or_else(Self::overflow)?;
        Ok(Money { minor, ..self })
    }

    /// Unit price times a quantity.
    pub fn checked_mul(self, quantity: u32) -> Result<Money> {
        let minor = self.minor.checked_mul(i64::from(quantity)).ok_or_else(Self::overflow)?;
        Ok(Money { minor, ..self })
    }

    pub fn checked_neg(self) -> Result<Money> {
        let minor = self.minor.checked_neg().ok_or_else(Self::overflow)?;
        Ok(Money { minor, ..self })
    }

    /// Sums amounts that must share `currency`. An empty sum is zero.
    pub fn sum<I: IntoIterator<Item = Money>>(currency: Currency, items: I) -> Result<Money> {
        items.into_iter().try_fold(Money::zero(currency), Money::checked_add)
    }

    /// The amount as a decimal string with the currency's exponent, without
    /// the code: `1234` USD is `"12.34"`, `1234` JPY is `"1234"`.
    pub fn decimal(&self) -> String {
        let exp = u32::from(self.currency.exponent);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if exp == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(exp);
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = exp as usize)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency, self.decimal())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency, self.decimal())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// Serialised as `{"amount": <minor units>, "currency": "USD"}`, the shape
/// AP2 and the gateway's own tools use.
impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Money", 2)?;
        st.serialize_field("amount", &self.minor)?;
        st.serialize_field("currency", &self.currency)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn parses_and_normalises_codes() {
        assert_eq!(cur("usd").code(), "USD");
        assert_eq!(cur("JPY").exponent(), 0);
        assert_eq!(cur("KWD").exponent(), 3);
        for bad in ["", "US", "USDX", "ZZZ", "12$", "XAU"] {
            let err = Currency::parse(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidCurrency, "{bad}");
        }
    }

    #[test]
    fn formats_by_exponent() {
        let cases = [
            (1234, "USD", "USD 12.34"),
            (5, "USD", "USD 0.05"),
            (-250, "EUR", "EUR -2.50"),
            (1234, "JPY", "JPY 1234"),
            (1234, "KWD", "KWD 1.234"),
            (0, "USD", "USD 0.00"),
            (i64::MIN, "USD", "USD -92233720368547758.08"),
        ];
        for (minor, c, want) in cases {
            assert_eq!(Money::new(minor, cur(c)).to_string(), want);
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let usd = Currency::usd();
        let a = Money::new(i64::MAX, usd);
        assert_eq!(a.checked_add(Money::new(1, usd)).unwrap_err().code(), ErrorCode::MoneyOverflow);
        assert_eq!(a.checked_mul(2).unwrap_err().code(), ErrorCode::MoneyOverflow);
        assert_eq!(
            Money::new(i64::MIN, usd).checked_neg().unwrap_err().code(),
            ErrorCode::MoneyOverflow
        );
        assert_eq!(
            Money::new(1, usd).checked_add(Money::new(1, cur("EUR"))).unwrap_err().code(),
            ErrorCode::CurrencyMismatch
        );
        assert_eq!(Money::new(250, usd).checked_mul(3).unwrap().minor(), 750);
        assert_eq!(Money::new(250, usd).checked_sub(Money::new(300, usd)).unwrap().minor(), -50);
        let total = Money::sum(usd, [Money::new(1, usd), Money::new(2, usd)]).unwrap();
        assert_eq!(total.minor(), 3);
    }

    proptest::proptest! {
        #[test]
        fn add_then_sub_round_trips(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let usd = Currency::usd();
            let sum = Money::new(a, usd).checked_add(Money::new(b, usd)).unwrap();
            proptest::prop_assert_eq!(sum.checked_sub(Money::new(b, usd)).unwrap().minor(), a);
        }
    }
}
