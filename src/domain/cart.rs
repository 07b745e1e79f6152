//! Carts: what an agent assembles before checkout.
//!
//! A cart holds re-priceable lines; its prices are the catalog's at the time
//! of the last change and are re-read at checkout, never trusted from an
//! agent. Lines merge by variant, quantities are bounded, and one cart has
//! one currency.

use serde::Serialize;
use time::OffsetDateTime;

use super::error::{Error, ErrorCode, Result};
use super::ids::{CartId, ProductId, Sku, VariantId};
use super::money::{Currency, Money};

/// Hard limits that keep a cart within what one atomic store commit can
/// hold (DynamoDB transactions take at most 100 items).
pub const MAX_LINES: usize = 50;
pub const MAX_LINE_QUANTITY: u32 = 999;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartLine {
    pub variant_id: VariantId,
    pub product_id: ProductId,
    pub sku: Sku,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub requires_shipping: bool,
}

impl CartLine {
    pub fn line_total(&self) -> Result<Money> {
        self.unit_price.checked_mul(self.quantity)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CartStatus {
    Active,
    Canceled,
}

impl CartStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "canceled" => Ok(Self::Canceled),
            other => Err(Error::invalid(format!("unknown cart status {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cart {
    pub id: CartId,
    pub currency: Currency,
    pub lines: Vec<CartLine>,
    status: CartStatus,
    /// The caller identity that created the cart, when known.
    pub owner: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Cart {
    pub fn new(
        id: CartId,
        currency: Currency,
        owner: Option<String>,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Self {
        Self {
            id,
            currency,
            lines: Vec::new(),
            status: CartStatus::Active,
            owner,
            created_at: now,
            updated_at: now,
            expires_at: now + ttl,
        }
    }

    /// Rebuilds a cart read back from a store. Only store adapters call this.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: CartId,
        currency: Currency,
        lines: Vec<CartLine>,
        status: CartStatus,
        owner: Option<String>,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Self {
        Self { id, currency, lines, status, owner, created_at, updated_at, expires_at }
    }

    pub fn status(&self) -> CartStatus {
        self.status
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }

    fn ensure_active(&self, now: OffsetDateTime) -> Result<()> {
        if self.status != CartStatus::Active {
            return Err(Error::new(ErrorCode::IllegalTransition, "the cart is canceled"));
        }
        if self.is_expired(now) {
            return Err(Error::new(ErrorCode::SessionExpired, "the cart has expired"));
        }
        Ok(())
    }

    fn check_quantity(quantity: u32) -> Result<()> {
        if quantity == 0 || quantity > MAX_LINE_QUANTITY {
            return Err(Error::new(
                ErrorCode::QuantityLimitExceeded,
                format!("quantity must be between 1 and {MAX_LINE_QUANTITY}"),
            ));
        }
        Ok(())
    }

    /// Adds `line.quantity` units; an existing line for the same variant
    /// grows instead of being duplicated, and takes the new price.
    pub fn add(&mut self, line: CartLine, now: OffsetDateTime) -> Result<()> {
        self.ensure_active(now)?;
        Self::check_quantity(line.quantity)?;
        if line.unit_price.currency() != self.currency {
            return Err(Error::new(
                ErrorCode::CurrencyMismatch,
                format!(
                    "the cart is in {}, the item is priced in {}",
                    self.currency,
                    line.unit_price.currency()
                ),
            ));
        }
        if let Some(existing) = self.lines.iter_mut().find(|l| l.variant_id == line.variant_id) {
            let quantity = existing.quantity.saturating_add(line.quantity);
            Self::check_quantity(quantity)?;
            *existing = CartLine { quantity, ..line };
        } else {
            if self.lines.len() >= MAX_LINES {
                return Err(Error::new(
                    ErrorCode::QuantityLimitExceeded,
                    format!("a cart holds at most {MAX_LINES} lines"),
                ));
            }
            self.lines.push(line);
        }
        self.updated_at = now;
        Ok(())
    }

    /// Sets the quantity of a line; zero removes it.
    pub fn set_quantity(
        &mut self,
        variant: &VariantId,
        quantity: u32,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.ensure_active(now)?;
        if quantity == 0 {
            return self.remove(variant, now);
        }
        Self::check_quantity(quantity)?;
        let line = self
            .lines
            .iter_mut()
            .find(|l| &l.variant_id == variant)
            .ok_or_else(|| Error::not_found(format!("variant {variant} is not in the cart")))?;
        line.quantity = quantity;
        self.updated_at = now;
        Ok(())
    }

    pub fn remove(&mut self, variant: &VariantId, now: OffsetDateTime) -> Result<()> {
        self.ensure_active(now)?;
        let before = self.lines.len();
        self.lines.retain(|l| &l.variant_id != variant);
        if self.lines.len() == before {
            return Err(Error::not_found(format!("variant {variant} is not in the cart")));
        }
        self.updated_at = now;
        Ok(())
    }

    pub fn clear(&mut self, now: OffsetDateTime) -> Result<()> {
        self.ensure_active(now)?;
        self.lines.clear();
        self.updated_at = now;
        Ok(())
    }

    pub fn cancel(&mut self, now: OffsetDateTime) -> Result<()> {
        if self.status == CartStatus::Canceled {
            return Err(Error::new(ErrorCode::IllegalTransition, "the cart is already canceled"));
        }
        self.status = CartStatus::Canceled;
        self.updated_at = now;
        Ok(())
    }

    pub fn subtotal(&self) -> Result<Money> {
        let totals = self.lines.iter().map(CartLine::line_total).collect::<Result<Vec<_>>>()?;
        Money::sum(self.currency, totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn line(variant: &str, qty: u32, price: i64) -> CartLine {
        CartLine {
            variant_id: VariantId::parse(variant).unwrap(),
            product_id: ProductId::parse("p1").unwrap(),
            sku: Sku::parse(variant).unwrap(),
            title: "Thing".into(),
            quantity: qty,
            unit_price: Money::new(price, Currency::usd()),
            requires_shipping: true,
        }
    }

    fn cart() -> Cart {
        Cart::new(
            CartId::from_uuid(uuid::Uuid::nil()),
            Currency::usd(),
            None,
            now(),
            time::Duration::hours(1),
        )
    }

    #[test]
    fn lines_merge_and_total() {
        let mut c = cart();
        c.add(line("v1", 2, 500), now()).unwrap();
        c.add(line("v1", 1, 500), now()).unwrap();
        c.add(line("v2", 1, 250), now()).unwrap();
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.lines[0].quantity, 3);
        assert_eq!(c.subtotal().unwrap().minor(), 1750);
        c.set_quantity(&VariantId::parse("v1").unwrap(), 0, now()).unwrap();
        assert_eq!(c.subtotal().unwrap().minor(), 250);
    }

    #[test]
    fn limits_and_state_are_enforced() {
        let mut c = cart();
        assert_eq!(
            c.add(line("v1", 0, 1), now()).unwrap_err().code(),
            ErrorCode::QuantityLimitExceeded
        );
        assert_eq!(
            c.add(line("v1", MAX_LINE_QUANTITY + 1, 1), now()).unwrap_err().code(),
            ErrorCode::QuantityLimitExceeded
        );
        let mut eur = line("v3", 1, 1);
        eur.unit_price = Money::new(1, Currency::parse("EUR").unwrap());
        assert_eq!(c.add(eur, now()).unwrap_err().code(), ErrorCode::CurrencyMismatch);
        assert_eq!(
            c.remove(&VariantId::parse("nope").unwrap(), now()).unwrap_err().code(),
            ErrorCode::NotFound
        );
        let later = now() + time::Duration::hours(2);
        assert_eq!(c.add(line("v1", 1, 1), later).unwrap_err().code(), ErrorCode::SessionExpired);
        c.cancel(now()).unwrap();
        assert_eq!(
            c.add(line("v1", 1, 1), now()).unwrap_err().code(),
            ErrorCode::IllegalTransition
        );
    }

    #[test]
    fn overflowing_totals_are_errors() {
        let mut c = cart();
        c.add(line("v1", 999, i64::MAX / 2), now()).unwrap();
        assert_eq!(c.subtotal().unwrap_err().code(), ErrorCode::MoneyOverflow);
    }
}
