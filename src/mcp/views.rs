//! The tools' outputs: what a model reads back. Every type here derives
//! `JsonSchema`, which becomes the tool's `outputSchema`, and converts from
//! domain values; none of them is ever deserialized.
//!
//! Amounts are integers in minor units with their ISO 4217 currency, plus a
//! `*_display` string where a model is likely to quote the amount, so it
//! never has to place a decimal point itself.

use schemars::JsonSchema;
use serde::Serialize;

use super::error::ToolError;
use crate::domain::{Cart, Money, Product, StockState};

#[derive(Debug, Serialize, JsonSchema)]
pub struct InventoryPage {
    /// Matching products, best match first. Each comes whole, with all its
    /// variants and their current prices and stock.
    pub products: Vec<ProductView>,
    /// Pass this as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductView {
    pub product_id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub image_url: Option<String>,
    /// The purchasable options. Carts and checkouts take a `variant_id`.
    pub variants: Vec<VariantView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VariantView {
    /// The id to put in a cart.
    pub variant_id: String,
    pub sku: String,
    /// The option name, such as a size or colour; empty for single-variant
    /// products.
    pub title: String,
    /// Current unit price in minor units (cents for USD).
    pub price: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The price as people read it, e.g. "USD 58.00".
    pub price_display: String,
    pub stock_state: StockView,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockView {
    InStock,
    LowStock,
    OutOfStock,
}

impl From<StockState> for StockView {
    fn from(s: StockState) -> Self {
        match s {
            StockState::InStock => Self::InStock,
            StockState::LowStock => Self::LowStock,
            StockState::OutOfStock => Self::OutOfStock,
        }
    }
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        Self {
            product_id: p.id.to_string(),
            title: p.title.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            tags: p.tags.clone(),
            image_url: p.image_url.clone(),
            variants: p
                .variants
                .iter()
                .map(|v| VariantView {
                    variant_id: v.id.to_string(),
                    sku: v.sku.to_string(),
                    title: v.title.clone(),
                    price: v.price.minor(),
                    currency: v.price.currency().code().to_owned(),
                    price_display: v.price.to_string(),
                    stock_state: v.stock_state().into(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CartView {
    pub cart_id: String,
    /// `active` or `canceled`.
    pub status: String,
    /// ISO 4217 currency code of every amount in the cart.
    pub currency: String,
    /// The lines, re-priced from the catalog on every read.
    pub lines: Vec<CartLineView>,
    /// Sum of the line totals in minor units, before shipping, tax and
    /// discounts (negotiate_terms computes those).
    pub subtotal: i64,
    /// The subtotal as people read it, e.g. "USD 116.00".
    pub subtotal_display: String,
    /// Total units across all lines.
    pub item_count: u64,
    /// RFC 3339 time after which the cart can no longer be changed.
    pub expires_at: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CartLineView {
    pub variant_id: String,
    pub product_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    /// Current unit price in minor units.
    pub unit_price: i64,
    /// unit_price × quantity, in minor units.
    pub line_total: i64,
}

impl TryFrom<&Cart> for CartView {
    type Error = ToolError;

    fn try_from(cart: &Cart) -> Result<Self, ToolError> {
        let lines = cart
            .lines
            .iter()
            .map(|l| {
                Ok(CartLineView {
                    variant_id: l.variant_id.to_string(),
                    product_id: l.product_id.to_string(),
                    sku: l.sku.to_string(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.minor(),
                    line_total: l.line_total()?.minor(),
                })
            })
            .collect::<crate::domain::Result<Vec<_>>>()?;
        let subtotal: Money = cart.subtotal()?;
        Ok(Self {
            cart_id: cart.id.to_string(),
            status: cart.status().as_str().to_owned(),
            currency: cart.currency.code().to_owned(),
            item_count: cart.lines.iter().map(|l| u64::from(l.quantity)).sum(),
            subtotal: subtotal.minor(),
            subtotal_display: subtotal.to_string(),
            lines,
            expires_at: rfc3339(cart.expires_at),
        })
    }
}

/// Formats a timestamp for output; a time outside RFC 3339's range cannot
/// come from the gateway's own clock, so it degrades to an empty string
/// rather than failing the call.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}


/// An amount as a tool shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Amount {
    /// Minor units (cents for USD); discounts are negative.
    pub amount: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// As people read it, e.g. "USD 58.00".
    pub display: String,
}

impl From<Money> for Amount {
    fn from(m: Money) -> Self {
        Self { amount: m.minor(), currency: m.currency().code().to_owned(), display: m.to_string() }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TotalsView {
    /// The lines before anything else.
    pub subtotal: Amount,
    /// Shipping or pickup.
    pub fulfillment: Amount,
    /// Zero or negative.
    pub discount: Amount,
    pub tax: Amount,
    /// What the buyer pays.
    pub total: Amount,
}

impl From<&crate::domain::Totals> for TotalsView {
    fn from(t: &crate::domain::Totals) -> Self {
        Self {
            subtotal: t.subtotal.into(),
            fulfillment: t.fulfillment.into(),
            discount: t.discount.into(),
            tax: t.tax.into(),
            total: t.total.into(),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderView {
    pub order_id: String,
    pub checkout_id: String,
    /// created, paid, partially_fulfilled, fulfilled, delivered, canceled or
    /// refunded.
    pub status: String,
    pub lines: Vec<OrderLineView>,
    pub totals: TotalsView,
    /// What was charged, and by which processor.
    pub payment: PaymentView,
    /// Shipments, with carrier and tracking once shipped.
    pub fulfillments: Vec<FulfillmentView>,
    /// What happened to the order, oldest first.
    pub events: Vec<EventView>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderLineView {
    pub variant_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Amount,
    pub line_total: Amount,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PaymentView {
    pub processor: String,
    /// The processor's reference for the charge.
    pub reference: String,
    pub amount: Amount,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FulfillmentView {
    /// pending, shipped or delivered.
    pub status: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EventView {
    /// RFC 3339.
    pub at: String,
    /// status_changed, fulfillment, refund or note.
    pub kind: String,
    /// The event in one sentence.
    pub description: String,
}

fn fulfillment_status(s: crate::domain::order::FulfillmentStatus) -> &'static str {
    use crate::domain::order::FulfillmentStatus::*;
    match s {
        Pending => "pending",
        Shipped => "shipped",
        Delivered => "delivered",
    }
}

fn fulfillment_view(f: &crate::domain::order::Fulfillment) -> FulfillmentView {
    FulfillmentView {
        status: fulfillment_status(f.status).to_owned(),
        carrier: f.carrier.clone(),
        tracking_number: f.tracking_number.clone(),
        tracking_url: f.tracking_url.clone(),
        updated_at: rfc3339(f.updated_at),
    }
}

fn event_view(e: &crate::domain::OrderEvent) -> EventView {
    use crate::domain::OrderEventKind as K;
    let (kind, description) = match &e.kind {
        K::StatusChanged { from: None, to } => {
            ("status_changed", format!("order {} ({})", to.as_str(), e.reason))
        }
        K::StatusChanged { from: Some(from), to } => (
            "status_changed",
            format!("status changed from {} to {} ({})", from.as_str(), to.as_str(), e.reason),
        ),
        K::Fulfillment { fulfillment: f } => {
            let mut text = format!("shipment {}", fulfillment_status(f.status));
            if let Some(carrier) = &f.carrier {
                text.push_str(&format!(" with {carrier}"));
            }
            if let Some(number) = &f.tracking_number {
                text.push_str(&format!(", tracking number {number}"));
            }
            ("fulfillment", text)
        }
        K::Refund { amount, .. } => ("refund", format!("refunded {amount} ({})", e.reason)),
        K::Note { text } => ("note", text.clone()),
    };
    EventView { at: rfc3339(e.at), kind: kind.to_owned(), description }
}

impl From<&crate::gateway::OrderView> for OrderView {
    fn from(v: &crate::gateway::OrderView) -> Self {
        let o = &v.order;
        Self {
            order_id: o.id.to_string(),
            checkout_id: o.checkout_id.to_string(),
            status: o.status().as_str().to_owned(),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLineView {
                    variant_id: l.variant_id.to_string(),
                    sku: l.sku.to_string(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total.into(),
                })
                .collect(),
            totals: (&o.totals).into(),
            payment: PaymentView {
                processor: o.payment.processor.clone(),
                reference: o.payment.reference.clone(),
                amount: o.payment.amount.into(),
            },
            fulfillments: o.fulfillments.iter().map(fulfillment_view).collect(),
            events: v.events.iter().map(event_view).collect(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}
