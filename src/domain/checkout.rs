//! The UCP checkout session and its state machine.
//!
//! The six statuses and their legal moves come from UCP 2026-04-08
//! (`checkout.json`, "status"): `incomplete` and `requires_escalation` move
//! into each other; `ready_for_complete` → `complete_in_progress` →
//! `completed`; `canceled` is reachable from every non-terminal status;
//! `completed` and `canceled` are terminal. A move is made by
//! [`CheckoutSession::transition`], which consumes the session and returns it
//! in the new status, or refuses with `illegal_transition`.

use serde::Serialize;
use time::OffsetDateTime;

use super::error::{Error, ErrorCode, Result};
use super::ids::{CartId, CheckoutId, OrderId, ProductId, Sku, VariantId};
use super::money::{Currency, Money};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    Incomplete,
    RequiresEscalation,
    ReadyForComplete,
    CompleteInProgress,
    Completed,
    Canceled,
}

impl CheckoutStatus {
    pub const ALL: [CheckoutStatus; 6] = [
        Self::Incomplete,
        Self::RequiresEscalation,
        Self::ReadyForComplete,
        Self::CompleteInProgress,
        Self::Completed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::RequiresEscalation => "requires_escalation",
            Self::ReadyForComplete => "ready_for_complete",
            Self::CompleteInProgress => "complete_in_progress",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown checkout status {s:?}")))
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Canceled)
    }

    /// Whether a session may move from `self` to `to`.
    ///
    /// Staying in an editable status (an update that changes details but not
    /// the status) counts as legal; staying in `complete_in_progress` or a
    /// terminal status does not, because nothing may edit those sessions.
    pub fn can_transition_to(self, to: CheckoutStatus) -> bool {
        use CheckoutStatus::*;
        match (self, to) {
            (Completed | Canceled, _) => false,
            (_, Canceled) => true,
            (Incomplete, Incomplete | RequiresEscalation | ReadyForComplete) => true,
            (RequiresEscalation, Incomplete | RequiresEscalation | ReadyForComplete) => true,
            (
                ReadyForComplete,
                Incomplete | RequiresEscalation | ReadyForComplete | CompleteInProgress,
            ) => true,
            // A completion that fails at the payment step goes back to where
            // the buyer can act: ready again (a retryable failure) or
            // escalation (the processor needs the buyer).
            (CompleteInProgress, Completed | ReadyForComplete | RequiresEscalation) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineItem {
    /// Stable id of the line within the session (`li_1`, `li_2`, …).
    pub id: String,
    pub variant_id: VariantId,
    pub product_id: ProductId,
    pub sku: Sku,
    pub title: String,
    pub quantity: u32,
    /// The catalog's price when the session was last priced.
    pub unit_price: Money,
    pub requires_shipping: bool,
}

impl LineItem {
    pub fn line_total(&self) -> Result<Money> {
        self.unit_price.checked_mul(self.quantity)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Buyer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PostalAddress {
    pub name: Option<String>,
    pub street_address: String,
    pub extended_address: Option<String>,
    pub address_locality: String,
    pub address_region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub address_country: String,
}

/// The buyer's fulfillment choice: where, and which option.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FulfillmentSelection {
    pub address: Option<PostalAddress>,
    pub option_id: Option<String>,
    pub option_title: Option<String>,
    pub amount: Option<Money>,
}

/// The payment instrument the platform supplied. The credential itself is a
/// token from the processor, never card data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentSelection {
    pub handler_id: String,
    pub instrument_type: String,
    #[serde(skip)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedDiscount {
    pub code: String,
    pub title: String,
    /// Negative, as UCP totals require.
    pub amount: Money,
    /// The line ids the discount was allocated to.
    pub line_ids: Vec<String>,
}

/// The totals a session shows. UCP requires exactly one subtotal and one
/// total; discounts are negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub subtotal: Money,
    pub discount: Money,
    pub fulfillment: Money,
    pub tax: Money,
    pub total: Money,
}

impl Totals {
    pub fn zero(currency: Currency) -> Self {
        let z = Money::zero(currency);
        Self { subtotal: z, discount: z, fulfillment: z, tax: z, total: z }
    }

    /// Computes totals from lines and adjustments; `discount` must be ≤ 0 and
    /// the total never drops below zero.
    pub fn compute(
        currency: Currency,
        lines: &[LineItem],
        discount: Money,
        fulfillment: Money,
        tax: Money,
    ) -> Result<Self> {
        if discount.minor() > 0 {
            return Err(Error::invalid("a discount must be negative"));
        }
        let line_totals = lines.iter().map(LineItem::line_total).collect::<Result<Vec<_>>>()?;
        let subtotal = Money::sum(currency, line_totals)?;
        // A discount larger than the subtotal is capped: the buyer never gets
        // paid for buying.
        let discount = if subtotal.checked_add(discount)?.is_negative() {
            subtotal.checked_neg()?
        } else {
            discount
        };
        let total = subtotal.checked_add(discount)?.checked_add(fulfillment)?.checked_add(tax)?;
        Ok(Self { subtotal, discount, fulfillment, tax, total })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Error,
    Warning,
    Info,
}

/// UCP message severities for errors (UCP 2026-04-08 `message_error.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Recoverable,
    RequiresBuyerInput,
    RequiresBuyerReview,
    Unrecoverable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub code: String,
    pub content: String,
    pub severity: Option<Severity>,
    /// JSONPath to the field concerned, e.g. `$.buyer.email`.
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckoutSession {
    pub id: CheckoutId,
    pub cart_id: Option<CartId>,
    pub currency: Currency,
    pub line_items: Vec<LineItem>,
    status: CheckoutStatus,
    pub buyer: Buyer,
    pub fulfillment: FulfillmentSelection,
    pub discount_codes: Vec<String>,
    pub applied_discounts: Vec<AppliedDiscount>,
    pub payment: Option<PaymentSelection>,
    pub totals: Totals,
    pub messages: Vec<Message>,
    pub continue_url: Option<String>,
    pub order_id: Option<OrderId>,
    /// The caller identity that owns the session.
    pub owner: Option<String>,
    /// The UCP version negotiated with the platform, and the active
    /// capabilities, recorded so later calls answer in the same shape.
    pub ucp_version: Option<String>,
    pub capabilities: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl CheckoutSession {
    /// UCP's default session lifetime.
    pub const DEFAULT_TTL: time::Duration = time::Duration::hours(6);

    pub fn new(
        id: CheckoutId,
        currency: Currency,
        line_items: Vec<LineItem>,
        owner: Option<String>,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Result<Self> {
        let totals = Totals::compute(
            currency,
            &line_items,
            Money::zero(currency),
            Money::zero(currency),
            Money::zero(currency),
        )?;
        Ok(Self {
            id,
            cart_id: None,
            currency,
            line_items,
            status: CheckoutStatus::Incomplete,
            buyer: Buyer::default(),
            fulfillment: FulfillmentSelection::default(),
            discount_codes: Vec::new(),
            applied_discounts: Vec::new(),
            payment: None,
            totals,
            messages: Vec::new(),
            continue_url: None,
            order_id: None,
            owner,
            ucp_version: None,
            capabilities: Vec::new(),
            created_at: now,
            updated_at: now,
            expires_at: now + ttl,
        })
    }

    /// Rebuilds a session read back from a store, with its saved status.
    /// Only store adapters call this.
    pub fn restore(mut fresh: CheckoutSession, status: CheckoutStatus) -> Self {
        fresh.status = status;
        fresh
    }

    pub fn status(&self) -> CheckoutStatus {
        self.status
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at && !self.status.is_terminal()
    }

    /// Moves the session to `to`, consuming it. UCP requires `continue_url`
    /// whenever the status is `requires_escalation`.
    pub fn transition(mut self, to: CheckoutStatus, now: OffsetDateTime) -> Result<Self> {
        if !self.status.can_transition_to(to) {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!("a checkout cannot move from {} to {}", self.status.as_str(), to.as_str()),
            ));
        }
        if to == CheckoutStatus::RequiresEscalation && self.continue_url.is_none() {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                "requires_escalation needs a continue_url",
            ));
        }
        self.status = to;
        self.updated_at = now;
        Ok(self)
    }

    /// Fails unless the session may still be edited.
    pub fn ensure_editable(&self, now: OffsetDateTime) -> Result<()> {
        if self.status.is_terminal() || self.status == CheckoutStatus::CompleteInProgress {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!("a {} checkout cannot be changed", self.status.as_str()),
            ));
        }
        if self.is_expired(now) {
            return Err(Error::new(ErrorCode::SessionExpired, "the checkout session has expired"));
        }
        Ok(())
    }

    /// Physical goods need a fulfillment choice.
    pub fn requires_fulfillment(&self) -> bool {
        self.line_items.iter().any(|l| l.requires_shipping)
    }

    /// What is still missing before the session can be completed, as UCP
    /// messages (`requires_buyer_input`). Empty means ready.
    pub fn missing_for_completion(&self) -> Vec<Message> {
        let mut missing = Vec::new();
        let mut need = |code: &str, content: &str, path: &str| {
            missing.push(Message {
                kind: MessageType::Error,
                code: code.to_owned(),
                content: content.to_owned(),
                severity: Some(Severity::RequiresBuyerInput),
                path: Some(path.to_owned()),
            })
        };
        if self.line_items.is_empty() {
            need("missing", "the checkout has no items", "$.line_items");
        }
        if self.buyer.email.is_none() {
            need("missing", "a buyer email is required", "$.buyer.email");
        }
        if self.requires_fulfillment() {
            if self.fulfillment.address.is_none() {
                need("missing", "a shipping address is required", "$.fulfillment.destination");
            }
            if self.fulfillment.option_id.is_none() {
                need("missing", "a fulfillment option must be selected", "$.fulfillment.option");
            }
        }
        if self.payment.is_none() {
            need("missing", "a payment instrument is required", "$.payment.instruments");
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckoutStatus::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn session() -> CheckoutSession {
        CheckoutSession::new(
            CheckoutId::from_uuid(uuid::Uuid::nil()),
            Currency::usd(),
            vec![],
            None,
            now(),
            CheckoutSession::DEFAULT_TTL,
        )
        .unwrap()
    }

    /// All 36 from/to pairs. `true` marks the legal moves.
    #[test]
    fn transition_table_covers_every_pair() {
        let table: [(CheckoutStatus, [bool; 6]); 6] = [
            //                     inc    esc    ready  prog   done   cancel
            (Incomplete, [true, true, true, false, false, true]),
            (RequiresEscalation, [true, true, true, false, false, true]),
            (ReadyForComplete, [true, true, true, true, false, true]),
            (CompleteInProgress, [false, true, true, false, true, true]),
            (Completed, [false, false, false, false, false, false]),
            (Canceled, [false, false, false, false, false, false]),
        ];
        let mut checked = 0;
        for (from, row) in table {
            for (to, legal) in CheckoutStatus::ALL.into_iter().zip(row) {
                assert_eq!(from.can_transition_to(to), legal, "{from:?} -> {to:?}");
                let mut s = CheckoutSession::restore(session(), from);
                s.continue_url = Some("https://shop.example/continue".into());
                let moved = s.transition(to, now());
                assert_eq!(moved.is_ok(), legal, "{from:?} -> {to:?}");
                if let Err(e) = moved {
                    assert_eq!(e.code(), ErrorCode::IllegalTransition);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }

    #[test]
    fn escalation_needs_a_continue_url() {
        let err = session().transition(RequiresEscalation, now()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::IllegalTransition);
    }

    #[test]
    fn status_strings_round_trip() {
        for st in CheckoutStatus::ALL {
            assert_eq!(CheckoutStatus::parse(st.as_str()).unwrap(), st);
        }
        assert!(CheckoutStatus::parse("done").is_err());
    }

    #[test]
    fn totals_cap_discounts_and_refuse_positive_ones() {
        let usd = Currency::usd();
        let line = LineItem {
            id: "li_1".into(),
            variant_id: VariantId::parse("v").unwrap(),
            product_id: ProductId::parse("p").unwrap(),
            sku: Sku::parse("s").unwrap(),
            title: "t".into(),
            quantity: 2,
            unit_price: Money::new(1000, usd),
            requires_shipping: true,
        };
        let t = Totals::compute(
            usd,
            &[line.clone()],
            Money::new(-500, usd),
            Money::new(300, usd),
            Money::zero(usd),
        )
        .unwrap();
        assert_eq!((t.subtotal.minor(), t.discount.minor(), t.total.minor()), (2000, -500, 1800));
        let capped = Totals::compute(
            usd,
            &[line.clone()],
            Money::new(-9000, usd),
            Money::zero(usd),
            Money::zero(usd),
        )
        .unwrap();
        assert_eq!((capped.discount.minor(), capped.total.minor()), (-2000, 0));
        assert!(Totals::compute(
            usd,
            &[line],
            Money::new(1, usd),
            Money::zero(usd),
            Money::zero(usd)
        )
        .is_err());
    }

    #[test]
    fn missing_fields_are_reported_until_ready() {
        let mut s = session();
        assert!(!s.missing_for_completion().is_empty());
        s.line_items.push(LineItem {
            id: "li_1".into(),
            variant_id: VariantId::parse("v").unwrap(),
            product_id: ProductId::parse("p").unwrap(),
            sku: Sku::parse("s").unwrap(),
            title: "t".into(),
            quantity: 1,
            unit_price: Money::new(1, Currency::usd()),
            requires_shipping: false,
        });
        s.buyer.email = Some("a@b.example".into());
        let codes: Vec<_> = s.missing_for_completion().into_iter().filter_map(|m| m.path).collect();
        assert_eq!(codes, vec!["$.payment.instruments"]);
        s.payment = Some(PaymentSelection {
            handler_id: "sandbox".into(),
            instrument_type: "card".into(),
            token: None,
        });
        assert!(s.missing_for_completion().is_empty());
    }
}
