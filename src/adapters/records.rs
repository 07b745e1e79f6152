//! Storage records: the serde shapes in which store adapters persist domain
//! values, and the only way stored JSON turns back into domain values.
//!
//! Domain types derive `Serialize` for the edges but never `Deserialize`, so
//! nothing unparsed gets in. A store reads one of these records and converts
//! it with `TryFrom`, which re-parses every id and currency through its
//! constructor and rebuilds entities through their `restore` constructors.
//! A record that does not parse is corrupt data: the conversion logs the
//! detail and answers `internal`, because retrying cannot fix it.
//!
//! The records know no backend. The SQLite store keeps them as JSON in a
//! `body` column; the DynamoDB store can keep the same JSON in an attribute.
//! Each top-level record carries [`SCHEMA_VERSION`] so a later build can
//! migrate old shapes, and an older build refuses shapes it does not know.
//!
//! This module also holds [`check_commit`], the backend-independent
//! validation of a [`CheckoutCommit`] that every store runs before writing.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::cart::{CartLine, CartStatus};
use crate::domain::checkout::{
    AppliedDiscount, Buyer, CheckoutStatus, FulfillmentSelection, LineItem, Message, MessageType,
    PaymentSelection, PostalAddress, Severity, Totals,
};
use crate::domain::order::{
    Delivery, DeliveryMethod, Fulfillment, FulfillmentLine, FulfillmentStatus, LedgerKind,
    OrderEventKind, OrderLine, OrderStatus, OrderWebhook, PaymentRecord,
};
use crate::domain::{
    Cart, CartId, CheckoutId, CheckoutSession, Currency, Error, ErrorCode, LedgerEntry, Money,
    Order, OrderEvent, OrderId, ProductId, Result, Sku, VariantId,
};
use crate::ports::{CheckoutCommit, OutboxMessage};

/// The record shape version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Wraps a failure to rebuild a domain value from a record. The detail
/// (which field, which value) goes to the log only.
fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::internal(format!("corrupt stored {what}: {detail}"))
}

fn check_schema(what: &str, schema: u32) -> Result<()> {
    if schema == 0 || schema > SCHEMA_VERSION {
        return Err(corrupt(
            what,
            format_args!("schema version {schema} is unknown to this build (<= {SCHEMA_VERSION})"),
        ));
    }
    Ok(())
}

/// Parses a JSON body into a record, mapping failure to a corrupt-data
/// error that names the kind of record but not the content.
pub fn from_json<T: for<'de> Deserialize<'de>>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| corrupt(what, e))
}

/// Serialises a record. This fails only on values JSON cannot hold (a
/// timestamp outside years 0–9999), which is a bug upstream, not bad input.
pub fn to_json<T: Serialize>(what: &str, record: &T) -> Result<String> {
    serde_json::to_string(record)
        .map_err(|e| Error::internal(format!("cannot serialise {what}: {e}")))
}

/// `Money` as `{"amount": <minor units>, "currency": "USD"}`, the same shape
/// the domain serialises to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyRecord {
    pub amount: i64,
    pub currency: String,
}

impl From<&Money> for MoneyRecord {
    fn from(m: &Money) -> Self {
        Self { amount: m.minor(), currency: m.currency().code().to_owned() }
    }
}

impl MoneyRecord {
    fn to_domain(&self, what: &str) -> Result<Money> {
        let currency = Currency::parse(&self.currency).map_err(|e| corrupt(what, e))?;
        Ok(Money::new(self.amount, currency))
    }
}

fn currency(what: &str, code: &str) -> Result<Currency> {
    Currency::parse(code).map_err(|e| corrupt(what, e))
}

// Small parsers that turn a domain `invalid_input` into corrupt-data errors:
// a bad id in storage is our fault, not the caller's.
fn sku(what: &str, raw: &str) -> Result<Sku> {
    Sku::parse(raw).map_err(|e| corrupt(what, e))
}
fn variant(what: &str, raw: &str) -> Result<VariantId> {
    VariantId::parse(raw).map_err(|e| corrupt(what, e))
}
fn product(what: &str, raw: &str) -> Result<ProductId> {
    ProductId::parse(raw).map_err(|e| corrupt(what, e))
}
fn cart_id(what: &str, raw: &str) -> Result<CartId> {
    CartId::parse(raw).map_err(|e| corrupt(what, e))
}
fn checkout_id(what: &str, raw: &str) -> Result<CheckoutId> {
    CheckoutId::parse(raw).map_err(|e| corrupt(what, e))
}
fn order_id(what: &str, raw: &str) -> Result<OrderId> {
    OrderId::parse(raw).map_err(|e| corrupt(what, e))
}

// ---------------------------------------------------------------- carts

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLineRecord {
    pub variant_id: String,
    pub product_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: MoneyRecord,
    pub requires_shipping: bool,
}

impl From<&CartLine> for CartLineRecord {
    fn from(l: &CartLine) -> Self {
        Self {
            variant_id: l.variant_id.as_str().to_owned(),
            product_id: l.product_id.as_str().to_owned(),
            sku: l.sku.as_str().to_owned(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price: (&l.unit_price).into(),
            requires_shipping: l.requires_shipping,
        }
    }
}

impl TryFrom<CartLineRecord> for CartLine {
    type Error = Error;

    fn try_from(r: CartLineRecord) -> Result<Self> {
        const W: &str = "cart line";
        Ok(CartLine {
            variant_id: variant(W, &r.variant_id)?,
            product_id: product(W, &r.product_id)?,
            sku: sku(W, &r.sku)?,
            title: r.title,
            quantity: r.quantity,
            unit_price: r.unit_price.to_domain(W)?,
            requires_shipping: r.requires_shipping,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartRecord {
    pub schema: u32,
    pub id: String,
    pub currency: String,
    pub lines: Vec<CartLineRecord>,
    pub status: String,
    pub owner: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<&Cart> for CartRecord {
    fn from(c: &Cart) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            id: c.id.as_str().to_owned(),
            currency: c.currency.code().to_owned(),
            lines: c.lines.iter().map(Into::into).collect(),
            status: c.status().as_str().to_owned(),
            owner: c.owner.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            expires_at: c.expires_at,
        }
    }
}

impl TryFrom<CartRecord> for Cart {
    type Error = Error;

    fn try_from(r: CartRecord) -> Result<Self> {
        const W: &str = "cart";
        check_schema(W, r.schema)?;
        Ok(Cart::restore(
            cart_id(W, &r.id)?,
            currency(W, &r.currency)?,
            r.lines.into_iter().map(CartLine::try_from).collect::<Result<_>>()?,
            CartStatus::parse(&r.status).map_err(|e| corrupt(W, e))?,
            r.owner,
            r.created_at,
            r.updated_at,
            r.expires_at,
        ))
    }
}

// ------------------------------------------------------------ checkouts

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItemRecord {
    pub id: String,
    pub variant_id: String,
    pub product_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: MoneyRecord,
    pub requires_shipping: bool,
}

impl From<&LineItem> for LineItemRecord {
    fn from(l: &LineItem) -> Self {
        Self {
            id: l.id.clone(),
            variant_id: l.variant_id.as_str().to_owned(),
            product_id: l.product_id.as_str().to_owned(),
            sku: l.sku.as_str().to_owned(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price: (&l.unit_price).into(),
            requires_shipping: l.requires_shipping,
        }
    }
}

impl TryFrom<LineItemRecord> for LineItem {
    type Error = Error;

    fn try_from(r: LineItemRecord) -> Result<Self> {
        const W: &str = "line item";
        Ok(LineItem {
            id: r.id,
            variant_id: variant(W, &r.variant_id)?,
            product_id: product(W, &r.product_id)?,
            sku: sku(W, &r.sku)?,
            title: r.title,
            quantity: r.quantity,
            unit_price: r.unit_price.to_domain(W)?,
            requires_shipping: r.requires_shipping,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerRecord {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
}

impl From<&Buyer> for BuyerRecord {
    fn from(b: &Buyer) -> Self {
        Self {
            email: b.email.clone(),
            first_name: b.first_name.clone(),
            last_name: b.last_name.clone(),
            phone_number: b.phone_number.clone(),
        }
    }
}

impl From<BuyerRecord> for Buyer {
    fn from(r: BuyerRecord) -> Self {
        Buyer {
            email: r.email,
            first_name: r.first_name,
            last_name: r.last_name,
            phone_number: r.phone_number,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostalAddressRecord {
    pub name: Option<String>,
    pub street_address: String,
    pub extended_address: Option<String>,
    pub address_locality: String,
    pub address_region: Option<String>,
    pub postal_code: String,
    pub address_country: String,
}

impl From<&PostalAddress> for PostalAddressRecord {
    fn from(a: &PostalAddress) -> Self {
        Self {
            name: a.name.clone(),
            street_address: a.street_address.clone(),
            extended_address: a.extended_address.clone(),
            address_locality: a.address_locality.clone(),
            address_region: a.address_region.clone(),
            postal_code: a.postal_code.clone(),
            address_country: a.address_country.clone(),
        }
    }
}

impl From<PostalAddressRecord> for PostalAddress {
    fn from(r: PostalAddressRecord) -> Self {
        PostalAddress {
            name: r.name,
            street_address: r.street_address,
            extended_address: r.extended_address,
            address_locality: r.address_locality,
            address_region: r.address_region,
            postal_code: r.postal_code,
            address_country: r.address_country,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentSelectionRecord {
    pub address: Option<PostalAddressRecord>,
    pub option_id: Option<String>,
    pub option_title: Option<String>,
    pub amount: Option<MoneyRecord>,
}

impl From<&FulfillmentSelection> for FulfillmentSelectionRecord {
    fn from(f: &FulfillmentSelection) -> Self {
        Self {
            address: f.address.as_ref().map(Into::into),
            option_id: f.option_id.clone(),
            option_title: f.option_title.clone(),
            amount: f.amount.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<FulfillmentSelectionRecord> for FulfillmentSelection {
    type Error = Error;

    fn try_from(r: FulfillmentSelectionRecord) -> Result<Self> {
        Ok(FulfillmentSelection {
            address: r.address.map(Into::into),
            option_id: r.option_id,
            option_title: r.option_title,
            amount: r.amount.map(|m| m.to_domain("fulfillment selection")).transpose()?,
        })
    }
}

/// The payment selection including its processor token. The domain type
/// skips the token when serialised for an edge, so the store cannot reuse
/// that shape: without the token a completion after a restart could not
/// charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSelectionRecord {
    pub handler_id: String,
    pub instrument_type: String,
    pub token: Option<String>,
}

impl From<&PaymentSelection> for PaymentSelectionRecord {
    fn from(p: &PaymentSelection) -> Self {
        Self {
            handler_id: p.handler_id.clone(),
            instrument_type: p.instrument_type.clone(),
            token: p.token.clone(),
        }
    }
}

impl From<PaymentSelectionRecord> for PaymentSelection {
    fn from(r: PaymentSelectionRecord) -> Self {
        PaymentSelection {
            handler_id: r.handler_id,
            instrument_type: r.instrument_type,
            token: r.token,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDiscountRecord {
    pub code: String,
    pub title: String,
    pub amount: MoneyRecord,
    pub line_ids: Vec<String>,
}

impl From<&AppliedDiscount> for AppliedDiscountRecord {
    fn from(d: &AppliedDiscount) -> Self {
        Self {
            code: d.code.clone(),
            title: d.title.clone(),
            amount: (&d.amount).into(),
            line_ids: d.line_ids.clone(),
        }
    }
}

impl TryFrom<AppliedDiscountRecord> for AppliedDiscount {
    type Error = Error;

    fn try_from(r: AppliedDiscountRecord) -> Result<Self> {
        Ok(AppliedDiscount {
            code: r.code,
            title: r.title,
            amount: r.amount.to_domain("applied discount")?,
            line_ids: r.line_ids,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalsRecord {
    pub subtotal: MoneyRecord,
    pub discount: MoneyRecord,
    pub fulfillment: MoneyRecord,
    pub tax: MoneyRecord,
    pub total: MoneyRecord,
}

impl From<&Totals> for TotalsRecord {
    fn from(t: &Totals) -> Self {
        Self {
            subtotal: (&t.subtotal).into(),
            discount: (&t.discount).into(),
            fulfillment: (&t.fulfillment).into(),
            tax: (&t.tax).into(),
            total: (&t.total).into(),
        }
    }
}

impl TryFrom<TotalsRecord> for Totals {
    type Error = Error;

    fn try_from(r: TotalsRecord) -> Result<Self> {
        const W: &str = "totals";
        // Stored totals are taken as they were computed, not recomputed: a
        // session shows what the buyer was shown, even if pricing rules
        // change between the write and the read.
        Ok(Totals {
            subtotal: r.subtotal.to_domain(W)?,
            discount: r.discount.to_domain(W)?,
            fulfillment: r.fulfillment.to_domain(W)?,
            tax: r.tax.to_domain(W)?,
            total: r.total.to_domain(W)?,
        })
    }
}

/// Mirrors [`MessageType`]; the exhaustive matches below make a new domain
/// variant a compile error here instead of a silent data loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageTypeRecord {
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityRecord {
    Recoverable,
    RequiresBuyerInput,
    RequiresBuyerReview,
    Unrecoverable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    #[serde(rename = "type")]
    pub kind: MessageTypeRecord,
    pub code: String,
    pub content: String,
    pub severity: Option<SeverityRecord>,
    pub path: Option<String>,
}

impl From<&Message> for MessageRecord {
    fn from(m: &Message) -> Self {
        Self {
            kind: match m.kind {
                MessageType::Error => MessageTypeRecord::Error,
                MessageType::Warning => MessageTypeRecord::Warning,
                MessageType::Info => MessageTypeRecord::Info,
            },
            code: m.code.clone(),
            content: m.content.clone(),
            severity: m.severity.map(|s| match s {
                Severity::Recoverable => SeverityRecord::Recoverable,
                Severity::RequiresBuyerInput => SeverityRecord::RequiresBuyerInput,
                Severity::RequiresBuyerReview => SeverityRecord::RequiresBuyerReview,
                Severity::Unrecoverable => SeverityRecord::Unrecoverable,
            }),
            path: m.path.clone(),
        }
    }
}

impl From<MessageRecord> for Message {
    fn from(r: MessageRecord) -> Self {
        Message {
            kind: match r.kind {
                MessageTypeRecord::Error => MessageType::Error,
                MessageTypeRecord::Warning => MessageType::Warning,
                MessageTypeRecord::Info => MessageType::Info,
            },
            code: r.code,
            content: r.content,
            severity: r.severity.map(|s| match s {
                SeverityRecord::Recoverable => Severity::Recoverable,
                SeverityRecord::RequiresBuyerInput => Severity::RequiresBuyerInput,
                SeverityRecord::RequiresBuyerReview => Severity::RequiresBuyerReview,
                SeverityRecord::Unrecoverable => Severity::Unrecoverable,
            }),
            path: r.path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRecord {
    pub schema: u32,
    pub id: String,
    pub cart_id: Option<String>,
    pub currency: String,
    pub line_items: Vec<LineItemRecord>,
    pub status: String,
    pub buyer: BuyerRecord,
    pub fulfillment: FulfillmentSelectionRecord,
    pub discount_codes: Vec<String>,
    pub applied_discounts: Vec<AppliedDiscountRecord>,
    pub payment: Option<PaymentSelectionRecord>,
    pub totals: TotalsRecord,
    pub messages: Vec<MessageRecord>,
    pub continue_url: Option<String>,
    pub order_id: Option<String>,
    pub owner: Option<String>,
    pub ucp_version: Option<String>,
    pub capabilities: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<&CheckoutSession> for CheckoutRecord {
    fn from(s: &CheckoutSession) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            id: s.id.as_str().to_owned(),
            cart_id: s.cart_id.as_ref().map(|c| c.as_str().to_owned()),
            currency: s.currency.code().to_owned(),
            line_items: s.line_items.iter().map(Into::into).collect(),
            status: s.status().as_str().to_owned(),
            buyer: (&s.buyer).into(),
            fulfillment: (&s.fulfillment).into(),
            discount_codes: s.discount_codes.clone(),
            applied_discounts: s.applied_discounts.iter().map(Into::into).collect(),
            payment: s.payment.as_ref().map(Into::into),
            totals: (&s.totals).into(),
            messages: s.messages.iter().map(Into::into).collect(),
            continue_url: s.continue_url.clone(),
            order_id: s.order_id.as_ref().map(|o| o.as_str().to_owned()),
            owner: s.owner.clone(),
            ucp_version: s.ucp_version.clone(),
            capabilities: s.capabilities.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            expires_at: s.expires_at,
        }
    }
}

impl TryFrom<CheckoutRecord> for CheckoutSession {
    type Error = Error;

    fn try_from(r: CheckoutRecord) -> Result<Self> {
        const W: &str = "checkout session";
        check_schema(W, r.schema)?;
        let id = checkout_id(W, &r.id)?;
        let cur = currency(W, &r.currency)?;
        let status = CheckoutStatus::parse(&r.status).map_err(|e| corrupt(W, e))?;
        // `new` is the only way to build a session outside its module; it is
        // given no lines (so it computes nothing that could fail) and every
        // field it set is then overwritten with the stored value.
        let mut s =
            CheckoutSession::new(id, cur, Vec::new(), r.owner, r.created_at, time::Duration::ZERO)
                .map_err(|e| corrupt(W, e))?;
        s.cart_id = r.cart_id.map(|c| cart_id(W, &c)).transpose()?;
        s.line_items = r.line_items.into_iter().map(LineItem::try_from).collect::<Result<_>>()?;
        s.buyer = r.buyer.into();
        s.fulfillment = r.fulfillment.try_into()?;
        s.discount_codes = r.discount_codes;
        s.applied_discounts = r
            .applied_discounts
            .into_iter()
            .map(AppliedDiscount::try_from)
            .collect::<Result<_>>()?;
        s.payment = r.payment.map(Into::into);
        s.totals = r.totals.try_into()?;
        s.messages = r.messages.into_iter().map(Into::into).collect();
        s.continue_url = r.continue_url;
        s.order_id = r.order_id.map(|o| order_id(W, &o)).transpose()?;
        s.ucp_version = r.ucp_version;
        s.capabilities = r.capabilities;
        s.created_at = r.created_at;
        s.updated_at = r.updated_at;
        s.expires_at = r.expires_at;
        Ok(CheckoutSession::restore(s, status))
    }
}

// --------------------------------------------------------------- orders

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineRecord {
    pub variant_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: MoneyRecord,
    pub line_total: MoneyRecord,
}

impl From<&OrderLine> for OrderLineRecord {
    fn from(l: &OrderLine) -> Self {
        Self {
            variant_id: l.variant_id.as_str().to_owned(),
            sku: l.sku.as_str().to_owned(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price: (&l.unit_price).into(),
            line_total: (&l.line_total).into(),
        }
    }
}

impl TryFrom<OrderLineRecord> for OrderLine {
    type Error = Error;

    fn try_from(r: OrderLineRecord) -> Result<Self> {
        const W: &str = "order line";
        Ok(OrderLine {
            variant_id: variant(W, &r.variant_id)?,
            sku: sku(W, &r.sku)?,
            title: r.title,
            quantity: r.quantity,
            unit_price: r.unit_price.to_domain(W)?,
            line_total: r.line_total.to_domain(W)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatusRecord {
    Pending,
    Shipped,
    Delivered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentRecord {
    pub id: String,
    pub status: FulfillmentStatusRecord,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    /// `(line position, units)`; absent in records written before lines
    /// were tracked, which shipped the whole order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<(u32, u32)>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<&Fulfillment> for FulfillmentRecord {
    fn from(f: &Fulfillment) -> Self {
        Self {
            id: f.id.clone(),
            status: match f.status {
                FulfillmentStatus::Pending => FulfillmentStatusRecord::Pending,
                FulfillmentStatus::Shipped => FulfillmentStatusRecord::Shipped,
                FulfillmentStatus::Delivered => FulfillmentStatusRecord::Delivered,
            },
            carrier: f.carrier.clone(),
            tracking_number: f.tracking_number.clone(),
            tracking_url: f.tracking_url.clone(),
            lines: f
                .lines
                .iter()
                .map(|l| (u32::try_from(l.line).unwrap_or(u32::MAX), l.quantity))
                .collect(),
            updated_at: f.updated_at,
        }
    }
}

impl From<FulfillmentRecord> for Fulfillment {
    fn from(r: FulfillmentRecord) -> Self {
        Fulfillment {
            id: r.id,
            status: match r.status {
                FulfillmentStatusRecord::Pending => FulfillmentStatus::Pending,
                FulfillmentStatusRecord::Shipped => FulfillmentStatus::Shipped,
                FulfillmentStatusRecord::Delivered => FulfillmentStatus::Delivered,
            },
            carrier: r.carrier,
            tracking_number: r.tracking_number,
            tracking_url: r.tracking_url,
            lines: r
                .lines
                .into_iter()
                .map(|(line, quantity)| FulfillmentLine { line: line as usize, quantity })
                .collect(),
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub method: String,
    pub destination: Option<PostalAddressRecord>,
    pub description: Option<String>,
}

impl From<&Delivery> for DeliveryRecord {
    fn from(d: &Delivery) -> Self {
        Self {
            method: d.method.as_str().to_owned(),
            destination: d.destination.as_ref().map(Into::into),
            description: d.description.clone(),
        }
    }
}

impl TryFrom<DeliveryRecord> for Delivery {
    type Error = Error;

    fn try_from(r: DeliveryRecord) -> Result<Self> {
        Ok(Delivery {
            method: DeliveryMethod::parse(&r.method).map_err(|e| corrupt("order delivery", e))?,
            destination: r.destination.map(Into::into),
            description: r.description,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWebhookRecord {
    pub url: String,
    pub ucp_version: String,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecordRecord {
    pub processor: String,
    pub reference: String,
    pub amount: MoneyRecord,
}

impl From<&PaymentRecord> for PaymentRecordRecord {
    fn from(p: &PaymentRecord) -> Self {
        Self {
            processor: p.processor.clone(),
            reference: p.reference.clone(),
            amount: (&p.amount).into(),
        }
    }
}

impl TryFrom<PaymentRecordRecord> for PaymentRecord {
    type Error = Error;

    fn try_from(r: PaymentRecordRecord) -> Result<Self> {
        Ok(PaymentRecord {
            processor: r.processor,
            reference: r.reference,
            amount: r.amount.to_domain("payment record")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub schema: u32,
    pub id: String,
    pub checkout_id: String,
    pub status: String,
    pub owner: Option<String>,
    pub buyer_email: Option<String>,
    pub lines: Vec<OrderLineRecord>,
    pub totals: TotalsRecord,
    pub fee: MoneyRecord,
    pub payment: PaymentRecordRecord,
    pub fulfillments: Vec<FulfillmentRecord>,
    /// Absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<OrderWebhookRecord>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<&Order> for OrderRecord {
    fn from(o: &Order) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            id: o.id.as_str().to_owned(),
            checkout_id: o.checkout_id.as_str().to_owned(),
            status: o.status().as_str().to_owned(),
            owner: o.owner.clone(),
            buyer_email: o.buyer_email.clone(),
            lines: o.lines.iter().map(Into::into).collect(),
            totals: (&o.totals).into(),
            fee: (&o.fee).into(),
            payment: (&o.payment).into(),
            fulfillments: o.fulfillments.iter().map(Into::into).collect(),
            delivery: o.delivery.as_ref().map(Into::into),
            webhook: o.webhook.as_ref().map(|w| OrderWebhookRecord {
                url: w.url.clone(),
                ucp_version: w.ucp_version.clone(),
                capabilities: w.capabilities.clone(),
            }),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

impl TryFrom<OrderRecord> for Order {
    type Error = Error;

    fn try_from(r: OrderRecord) -> Result<Self> {
        const W: &str = "order";
        check_schema(W, r.schema)?;
        let status = OrderStatus::parse(&r.status).map_err(|e| corrupt(W, e))?;
        let mut o = Order::new(
            order_id(W, &r.id)?,
            checkout_id(W, &r.checkout_id)?,
            status,
            r.owner,
            r.buyer_email,
            r.lines.into_iter().map(OrderLine::try_from).collect::<Result<_>>()?,
            r.totals.try_into()?,
            r.fee.to_domain(W)?,
            r.payment.try_into()?,
            r.created_at,
        );
        o.fulfillments = r.fulfillments.into_iter().map(Into::into).collect();
        o.delivery = r.delivery.map(Delivery::try_from).transpose()?;
        o.webhook = r.webhook.map(|w| OrderWebhook {
            url: w.url,
            ucp_version: w.ucp_version,
            capabilities: w.capabilities,
        });
        o.updated_at = r.updated_at;
        Ok(Order::restore(o, status))
    }
}

// --------------------------------------------------------- order events

/// Mirrors [`OrderEventKind`], internally tagged like the domain's
/// serialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEventKindRecord {
    StatusChanged { from: Option<String>, to: String },
    Fulfillment { fulfillment: FulfillmentRecord },
    Refund { amount: MoneyRecord, reference: String },
    Note { text: String },
}

impl From<&OrderEventKind> for OrderEventKindRecord {
    fn from(k: &OrderEventKind) -> Self {
        match k {
            OrderEventKind::StatusChanged { from, to } => Self::StatusChanged {
                from: from.map(|s| s.as_str().to_owned()),
                to: to.as_str().to_owned(),
            },
            OrderEventKind::Fulfillment { fulfillment } => {
                Self::Fulfillment { fulfillment: fulfillment.into() }
            }
            OrderEventKind::Refund { amount, reference } => {
                Self::Refund { amount: amount.into(), reference: reference.clone() }
            }
            OrderEventKind::Note { text } => Self::Note { text: text.clone() },
        }
    }
}

impl TryFrom<OrderEventKindRecord> for OrderEventKind {
    type Error = Error;

    fn try_from(r: OrderEventKindRecord) -> Result<Self> {
        const W: &str = "order event";
        let status = |s: &str| OrderStatus::parse(s).map_err(|e| corrupt(W, e));
        Ok(match r {
            OrderEventKindRecord::StatusChanged { from, to } => OrderEventKind::StatusChanged {
                from: from.as_deref().map(status).transpose()?,
                to: status(&to)?,
            },
            OrderEventKindRecord::Fulfillment { fulfillment } => {
                OrderEventKind::Fulfillment { fulfillment: fulfillment.into() }
            }
            OrderEventKindRecord::Refund { amount, reference } => {
                OrderEventKind::Refund { amount: amount.to_domain(W)?, reference }
            }
            OrderEventKindRecord::Note { text } => OrderEventKind::Note { text },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEventRecord {
    pub schema: u32,
    pub order_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: OrderEventKindRecord,
    pub actor: String,
    pub reason: String,
    pub trace_id: String,
}

impl From<&OrderEvent> for OrderEventRecord {
    fn from(e: &OrderEvent) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            order_id: e.order_id.as_str().to_owned(),
            at: e.at,
            kind: (&e.kind).into(),
            actor: e.actor.clone(),
            reason: e.reason.clone(),
            trace_id: e.trace_id.clone(),
        }
    }
}

impl TryFrom<OrderEventRecord> for OrderEvent {
    type Error = Error;

    fn try_from(r: OrderEventRecord) -> Result<Self> {
        const W: &str = "order event";
        check_schema(W, r.schema)?;
        Ok(OrderEvent {
            order_id: order_id(W, &r.order_id)?,
            at: r.at,
            kind: r.kind.try_into()?,
            actor: r.actor,
            reason: r.reason,
            trace_id: r.trace_id,
        })
    }
}

// --------------------------------------------------------------- ledger

/// A fee ledger entry. Gross and fee share one currency (a ledger entry in
/// two currencies cannot be summed or filtered), so the record holds the
/// currency once and the amounts as plain minor units; a store can then
/// index every field as a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub schema: u32,
    pub id: String,
    pub order_id: String,
    pub kind: String,
    pub currency: String,
    pub gross: i64,
    pub fee: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl TryFrom<&LedgerEntry> for LedgerRecord {
    type Error = Error;

    /// Refuses an entry whose gross and fee are in different currencies,
    /// with `currency_mismatch`: the caller built it wrong.
    fn try_from(e: &LedgerEntry) -> Result<Self> {
        if e.gross.currency() != e.fee.currency() {
            return Err(Error::new(
                ErrorCode::CurrencyMismatch,
                format!(
                    "a ledger entry's gross ({}) and fee ({}) must share a currency",
                    e.gross.currency(),
                    e.fee.currency()
                ),
            ));
        }
        Ok(Self {
            schema: SCHEMA_VERSION,
            id: e.id.clone(),
            order_id: e.order_id.as_str().to_owned(),
            kind: e.kind.as_str().to_owned(),
            currency: e.gross.currency().code().to_owned(),
            gross: e.gross.minor(),
            fee: e.fee.minor(),
            at: e.at,
        })
    }
}

impl TryFrom<LedgerRecord> for LedgerEntry {
    type Error = Error;

    fn try_from(r: LedgerRecord) -> Result<Self> {
        const W: &str = "ledger entry";
        check_schema(W, r.schema)?;
        let cur = currency(W, &r.currency)?;
        Ok(LedgerEntry {
            id: r.id,
            order_id: order_id(W, &r.order_id)?,
            kind: LedgerKind::parse(&r.kind).map_err(|e| corrupt(W, e))?,
            gross: Money::new(r.gross, cur),
            fee: Money::new(r.fee, cur),
            at: r.at,
        })
    }
}

// --------------------------------------------------------------- commit

/// The checks every store runs on a [`CheckoutCommit`] before touching
/// storage, so all backends refuse the same malformed commits with the same
/// codes:
/// - the session must already be `completed` (`illegal_transition`);
/// - the order must belong to the session, and every event to the order
///   (`invalid_input`);
/// - the ledger entry must be for the order and in one currency
///   (`invalid_input`, `currency_mismatch`).
pub fn check_commit(commit: &CheckoutCommit) -> Result<()> {
    if commit.session.status() != CheckoutStatus::Completed {
        return Err(Error::new(
            ErrorCode::IllegalTransition,
            format!(
                "a checkout is committed in status completed, not {}",
                commit.session.status().as_str()
            ),
        ));
    }
    if commit.order.checkout_id != commit.session.id {
        return Err(Error::invalid("the order belongs to another checkout"));
    }
    check_events(&commit.order.id, &commit.events)?;
    if commit.ledger.order_id != commit.order.id {
        return Err(Error::invalid("the ledger entry belongs to another order"));
    }
    LedgerRecord::try_from(&commit.ledger)?;
    check_outbox(Some(&commit.order.id), &commit.outbox)?;
    Ok(())
}

/// Outbox messages a store is asked to write: each with an id unique in
/// the batch, a destination, a JSON payload, and (when `order` is given)
/// about that order.
pub fn check_outbox(order: Option<&OrderId>, messages: &[OutboxMessage]) -> Result<()> {
    let mut ids = std::collections::HashSet::new();
    for m in messages {
        if m.id.is_empty() || m.id.len() > 200 || !ids.insert(m.id.as_str()) {
            return Err(Error::invalid("outbox messages need distinct ids of 1 to 200 bytes"));
        }
        if m.destination.is_empty() {
            return Err(Error::invalid(format!("outbox message {} has no destination", m.id)));
        }
        if serde_json::from_str::<serde_json::Value>(&m.payload).is_err() {
            return Err(Error::invalid(format!("outbox message {} is not JSON", m.id)));
        }
        if let (Some(order), Some(about)) = (order, &m.order_id) {
            if order != about {
                return Err(Error::invalid(format!(
                    "outbox message {} is about another order",
                    m.id
                )));
            }
        }
    }
    Ok(())
}

/// Every event written with an order must be about that order.
pub fn check_events(order: &OrderId, events: &[OrderEvent]) -> Result<()> {
    if let Some(e) = events.iter().find(|e| &e.order_id != order) {
        return Err(Error::invalid(format!(
            "an event for order {} cannot be written with order {order}",
            e.order_id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout::{MessageType, Severity};
    use crate::domain::order::FulfillmentStatus;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::usd())
    }

    fn full_session() -> CheckoutSession {
        let mut s = CheckoutSession::new(
            CheckoutId::parse("chk_full").unwrap(),
            Currency::usd(),
            vec![LineItem {
                id: "li_1".into(),
                variant_id: VariantId::parse("gid://shopify/ProductVariant/1").unwrap(),
                product_id: ProductId::parse("p1").unwrap(),
                sku: Sku::parse("SKU-1").unwrap(),
                title: "Mug".into(),
                quantity: 2,
                unit_price: usd(1250),
                requires_shipping: true,
            }],
            Some("agent-1".into()),
            at(1_800_000_000),
            CheckoutSession::DEFAULT_TTL,
        )
        .unwrap();
        s.cart_id = Some(CartId::parse("cart_abc").unwrap());
        s.buyer = Buyer {
            email: Some("a@b.example".into()),
            first_name: Some("Ada".into()),
            last_name: Some("L".into()),
            phone_number: Some("+1 555".into()),
        };
        s.fulfillment = FulfillmentSelection {
            address: Some(PostalAddress {
                name: Some("Ada".into()),
                street_address: "1 Main St".into(),
                extended_address: Some("Apt 2".into()),
                address_locality: "Town".into(),
                address_region: Some("CA".into()),
                postal_code: "94000".into(),
                address_country: "US".into(),
            }),
            option_id: Some("std".into()),
            option_title: Some("Standard".into()),
            amount: Some(usd(500)),
        };
        s.discount_codes = vec!["TEN".into()];
        s.applied_discounts = vec![AppliedDiscount {
            code: "TEN".into(),
            title: "Ten off".into(),
            amount: usd(-250),
            line_ids: vec!["li_1".into()],
        }];
        s.payment = Some(PaymentSelection {
            handler_id: "sandbox".into(),
            instrument_type: "card".into(),
            token: Some("tok_secret".into()),
        });
        s.messages = vec![Message {
            kind: MessageType::Warning,
            code: "low_stock".into(),
            content: "only 2 left".into(),
            severity: Some(Severity::RequiresBuyerReview),
            path: Some("$.line_items[0]".into()),
        }];
        s.continue_url = Some("https://shop.example/c".into());
        s.order_id = Some(OrderId::parse("ord_1").unwrap());
        s.ucp_version = Some("2026-04-08".into());
        s.capabilities = vec!["dev.ucp.shopping.checkout".into()];
        s.transition(CheckoutStatus::ReadyForComplete, at(1_800_000_100)).unwrap()
    }

    #[test]
    fn a_checkout_round_trips_through_json_with_its_token() {
        let s = full_session();
        let json = to_json("checkout", &CheckoutRecord::from(&s)).unwrap();
        assert!(json.contains("tok_secret"), "the store must keep the payment token");
        let back: CheckoutSession =
            from_json::<CheckoutRecord>("checkout", &json).unwrap().try_into().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.status(), CheckoutStatus::ReadyForComplete);
    }

    #[test]
    fn orders_events_and_ledger_round_trip() {
        let totals = Totals::compute(Currency::usd(), &[], usd(0), usd(0), usd(0)).unwrap();
        let mut order = Order::new(
            OrderId::parse("ord_1").unwrap(),
            CheckoutId::parse("chk_1").unwrap(),
            OrderStatus::Paid,
            None,
            Some("a@b.example".into()),
            vec![],
            totals,
            usd(30),
            PaymentRecord { processor: "sandbox".into(), reference: "ch_1".into(), amount: usd(0) },
            at(1_800_000_000),
        );
        let fulfillment = Fulfillment {
            id: "f1".into(),
            status: FulfillmentStatus::Shipped,
            carrier: Some("UPS".into()),
            tracking_number: None,
            tracking_url: Some("https://t.example/1".into()),
            lines: vec![FulfillmentLine { line: 0, quantity: 2 }],
            updated_at: at(1_800_000_500),
        };
        order.fulfillments.push(fulfillment.clone());
        let back: Order = OrderRecord::from(&order).try_into().unwrap();
        assert_eq!(back, order);
        // Delivery and the platform's webhook survive too; a record written
        // before they existed reads with neither.
        order.delivery = Some(Delivery {
            method: DeliveryMethod::Pickup,
            destination: None,
            description: Some("Store pickup".into()),
        });
        order.webhook = Some(OrderWebhook {
            url: "https://agent.example/hooks".into(),
            ucp_version: "2026-04-08".into(),
            capabilities: vec!["dev.ucp.shopping.order".into()],
        });
        let back: Order = OrderRecord::from(&order).try_into().unwrap();
        assert_eq!(back, order);
        let mut old = serde_json::to_value(OrderRecord::from(&order)).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("delivery");
        fields.remove("webhook");
        let back: Order =
            from_json::<OrderRecord>("order", &old.to_string()).unwrap().try_into().unwrap();
        assert_eq!((back.delivery, back.webhook), (None, None));

        let kinds = [
            OrderEventKind::StatusChanged { from: None, to: OrderStatus::Paid },
            OrderEventKind::StatusChanged {
                from: Some(OrderStatus::Paid),
                to: OrderStatus::Fulfilled,
            },
            OrderEventKind::Fulfillment { fulfillment },
            OrderEventKind::Refund { amount: usd(100), reference: "re_1".into() },
            OrderEventKind::Note { text: "hi".into() },
        ];
        for kind in kinds {
            let event = OrderEvent {
                order_id: order.id.clone(),
                at: at(1_800_000_001),
                kind,
                actor: "ops".into(),
                reason: "why".into(),
                trace_id: "t".into(),
            };
            let json = to_json("event", &OrderEventRecord::from(&event)).unwrap();
            let back: OrderEvent =
                from_json::<OrderEventRecord>("event", &json).unwrap().try_into().unwrap();
            assert_eq!(back, event);
        }

        let entry = LedgerEntry {
            id: "led_1".into(),
            order_id: order.id.clone(),
            kind: LedgerKind::Reversal,
            gross: usd(-1000),
            fee: usd(-30),
            at: at(1_800_000_002),
        };
        let back: LedgerEntry = LedgerRecord::try_from(&entry).unwrap().try_into().unwrap();
        assert_eq!(back, entry);
        let mixed = LedgerEntry { fee: Money::new(1, Currency::parse("EUR").unwrap()), ..entry };
        assert_eq!(LedgerRecord::try_from(&mixed).unwrap_err().code(), ErrorCode::CurrencyMismatch);
    }

    /// Stored JSON that is damaged in any way becomes an `internal` error,
    /// never a panic and never a caller-facing `invalid_input`.
    #[test]
    fn corrupt_records_are_internal_errors() {
        let good = serde_json::to_value(CheckoutRecord::from(&full_session())).unwrap();
        let cases: &[(&str, serde_json::Value)] =
            &[("future schema", serde_json::json!(99)), ("zero schema", serde_json::json!(0))];
        for (name, schema) in cases {
            let mut v = good.clone();
            v["schema"] = schema.clone();
            let r: CheckoutRecord = serde_json::from_value(v).unwrap();
            let err = CheckoutSession::try_from(r).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Internal, "{name}");
        }
        let edits: &[(&str, &str, serde_json::Value)] = &[
            ("bad id", "id", serde_json::json!("ord_wrongkind")),
            ("bad currency", "currency", serde_json::json!("ZZZ")),
            ("bad status", "status", serde_json::json!("done")),
            ("bad cart id", "cart_id", serde_json::json!("chk_x")),
        ];
        for (name, field, value) in edits {
            let mut v = good.clone();
            v[*field] = value.clone();
            let r: CheckoutRecord = serde_json::from_value(v).unwrap();
            let err = CheckoutSession::try_from(r).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Internal, "{name}");
        }
        for junk in ["", "{", "[]", "{\"schema\":1}", "null"] {
            let err = from_json::<CheckoutRecord>("checkout", junk).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Internal, "{junk:?}");
        }
    }

    #[test]
    fn carts_round_trip() {
        let mut cart = Cart::new(
            CartId::parse("cart_1").unwrap(),
            Currency::parse("JPY").unwrap(),
            Some("me".into()),
            at(1_800_000_000),
            time::Duration::hours(1),
        );
        cart.add(
            CartLine {
                variant_id: VariantId::parse("v1").unwrap(),
                product_id: ProductId::parse("p1").unwrap(),
                sku: Sku::parse("s1").unwrap(),
                title: "Tea".into(),
                quantity: 3,
                unit_price: Money::new(500, Currency::parse("JPY").unwrap()),
                requires_shipping: false,
            },
            at(1_800_000_001),
        )
        .unwrap();
        cart.cancel(at(1_800_000_002)).unwrap();
        let back: Cart = CartRecord::from(&cart).try_into().unwrap();
        assert_eq!(back, cart);
        assert_eq!(back.status(), CartStatus::Canceled);
    }

    #[test]
    fn events_for_another_order_are_refused() {
        let event = |id: &str| OrderEvent {
            order_id: OrderId::parse(id).unwrap(),
            at: at(0),
            kind: OrderEventKind::Note { text: String::new() },
            actor: String::new(),
            reason: String::new(),
            trace_id: String::new(),
        };
        let order = OrderId::parse("ord_a").unwrap();
        assert!(check_events(&order, &[]).is_ok());
        assert!(check_events(&order, &[event("ord_a")]).is_ok());
        let err = check_events(&order, &[event("ord_a"), event("ord_b")]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
    }
}
