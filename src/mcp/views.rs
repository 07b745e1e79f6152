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
#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema)]
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

// ---- checkout -----------------------------------------------------------------

#[derive(Debug, Serialize, JsonSchema)]
pub struct CapabilityView {
    /// Reverse-DNS capability name, e.g. dev.ucp.shopping.checkout.
    pub name: String,
    pub version: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckoutLineView {
    pub line_id: String,
    pub variant_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    /// The catalog's current unit price.
    pub unit_price: Amount,
    pub line_total: Amount,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AddressView {
    pub name: Option<String>,
    pub street: String,
    pub street2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FulfillmentOptionView {
    /// Pass as fulfillment_option_id to choose it.
    pub id: String,
    /// shipping or pickup.
    pub method: String,
    pub title: String,
    pub description: Option<String>,
    pub amount: Amount,
    /// Whether the checkout has this option selected.
    pub selected: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiscountView {
    pub code: String,
    pub title: String,
    /// Negative.
    pub amount: Amount,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MessageView {
    /// error, warning or info.
    pub r#type: String,
    /// A stable code, e.g. missing, out_of_stock, discount_code_invalid.
    pub code: String,
    pub content: String,
    /// For errors: recoverable, requires_buyer_input, requires_buyer_review
    /// or unrecoverable.
    pub severity: Option<String>,
    /// JSONPath of the field concerned, e.g. $.buyer.email.
    pub path: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckoutSummary {
    pub checkout_id: String,
    pub cart_id: Option<String>,
    /// incomplete, requires_escalation, ready_for_complete,
    /// complete_in_progress, completed or canceled.
    pub status: String,
    pub currency: String,
    pub lines: Vec<CheckoutLineView>,
    /// Subtotal, shipping, discount, tax and the total the buyer pays.
    pub totals: TotalsView,
    pub buyer_email: Option<String>,
    pub ship_to: Option<AddressView>,
    /// The options for the chosen method and address; empty until an
    /// address (or pickup) is given.
    pub fulfillment_options: Vec<FulfillmentOptionView>,
    pub discounts: Vec<DiscountView>,
    /// Problems and notes about the checkout (out of stock, a refused code).
    pub messages: Vec<MessageView>,
    /// JSONPaths of what is still needed before the checkout can complete,
    /// e.g. $.buyer.email, $.fulfillment.destination; empty when ready.
    pub missing: Vec<String>,
    /// Where the buyer must go when the status is requires_escalation.
    pub continue_url: Option<String>,
    /// RFC 3339; the session cannot be completed after this.
    pub expires_at: String,
}

fn message_view(m: &crate::domain::checkout::Message) -> MessageView {
    use crate::domain::checkout::{MessageType, Severity};
    MessageView {
        r#type: match m.kind {
            MessageType::Error => "error",
            MessageType::Warning => "warning",
            MessageType::Info => "info",
        }
        .to_owned(),
        code: m.code.clone(),
        content: m.content.clone(),
        severity: m.severity.map(|s| {
            match s {
                Severity::Recoverable => "recoverable",
                Severity::RequiresBuyerInput => "requires_buyer_input",
                Severity::RequiresBuyerReview => "requires_buyer_review",
                Severity::Unrecoverable => "unrecoverable",
            }
            .to_owned()
        }),
        path: m.path.clone(),
    }
}

impl CheckoutSummary {
    pub fn new(view: &crate::gateway::CheckoutView<'_>) -> Result<Self, ToolError> {
        let s = view.session;
        let lines = s
            .line_items
            .iter()
            .map(|l| {
                Ok(CheckoutLineView {
                    line_id: l.id.clone(),
                    variant_id: l.variant_id.to_string(),
                    sku: l.sku.to_string(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total()?.into(),
                })
            })
            .collect::<crate::domain::Result<Vec<_>>>()?;
        let ship_to = s.fulfillment.address.as_ref().map(|a| AddressView {
            name: a.name.clone(),
            street: a.street_address.clone(),
            street2: a.extended_address.clone(),
            city: a.address_locality.clone(),
            region: a.address_region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.address_country.clone(),
        });
        Ok(Self {
            checkout_id: s.id.to_string(),
            cart_id: s.cart_id.as_ref().map(ToString::to_string),
            status: s.status().as_str().to_owned(),
            currency: s.currency.code().to_owned(),
            lines,
            totals: (&s.totals).into(),
            buyer_email: s.buyer.email.clone(),
            ship_to,
            fulfillment_options: view
                .fulfillment_options
                .iter()
                .map(|o| FulfillmentOptionView {
                    id: o.id.clone(),
                    method: o.kind.as_str().to_owned(),
                    title: o.title.clone(),
                    description: o.description.clone(),
                    amount: o.amount.into(),
                    selected: s.fulfillment.option_id.as_deref() == Some(o.id.as_str()),
                })
                .collect(),
            discounts: s
                .applied_discounts
                .iter()
                .map(|d| DiscountView {
                    code: d.code.clone(),
                    title: d.title.clone(),
                    amount: d.amount.into(),
                })
                .collect(),
            messages: s.messages.iter().map(message_view).collect(),
            missing: crate::gateway::missing_fields(s),
            continue_url: s.continue_url.clone(),
            expires_at: rfc3339(s.expires_at),
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CartMandateView {
    /// The merchant-signed AP2 cart mandate (compact JWS). Pass it to
    /// execute_checkout unchanged, and sign the payment mandate over it.
    pub token: String,
    pub checkout_id: String,
    /// The exact amount the payment mandate must carry.
    pub total: Amount,
    /// RFC 3339; sign the payment mandate and execute before this.
    pub expires_at: String,
}

/// The merchant as an AP2 v0.2 payment mandate's payee names it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PayeeView {
    pub id: String,
    pub name: String,
    pub website: Option<String>,
}

/// What an agent needs to sign AP2 v0.2 mandates for a checkout locked to
/// the dev.ucp.shopping.ap2_mandate extension: the merchant's signature
/// over the checkout as it stands, and the values both mandates bind.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Ap2CheckoutView {
    /// The AP2 version these mandates follow: 0.2.
    pub ap2_version: String,
    /// The merchant's checkout JWT (compact JWS, ES256; its payload is the
    /// checkout). Put it unchanged as checkout_jwt in the closed checkout
    /// mandate (vct mandate.checkout.1).
    pub checkout_jwt: String,
    /// base64url(SHA-256(checkout_jwt)): the checkout mandate's
    /// checkout_hash and the payment mandate's transaction_id.
    pub checkout_hash: String,
    /// The aud of both mandate presentations (the merchant's base URL).
    pub aud: String,
    /// The nonce of both mandate presentations (the checkout_hash).
    pub nonce: String,
    /// The payee the closed payment mandate (vct mandate.payment.1) names.
    pub payee: PayeeView,
    /// The exact payment_amount of the payment mandate.
    pub payment_amount: Amount,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NegotiatedTerms {
    /// The UCP version agreed with the agent's platform.
    pub ucp_version: String,
    /// The capabilities both sides support, at the agreed versions.
    pub capabilities: Vec<CapabilityView>,
    pub checkout: CheckoutSummary,
    /// Present once the checkout is ready_for_complete and an
    /// intent_mandate was given.
    pub cart_mandate: Option<CartMandateView>,
    /// Why no cart mandate was issued although an intent was given (the
    /// intent's budget is too small, its signature is unknown...).
    pub cart_mandate_error: Option<ToolError>,
    /// Present once a checkout locked to AP2 v0.2 (capability
    /// dev.ucp.shopping.ap2_mandate) is ready_for_complete: sign a v0.2
    /// checkout mandate and payment mandate over it instead of the v0.1
    /// intent, cart and payment mandates. Re-read after any change to the
    /// checkout; mandates over an older state are refused.
    pub ap2_checkout: Option<Ap2CheckoutView>,
    /// What to do next, in one sentence.
    pub next_step: String,
}

/// The answer of execute_checkout. Stored under the idempotency key and
/// replayed as is, so it also derives `Deserialize`.
#[derive(Debug, Serialize, serde::Deserialize, JsonSchema)]
pub struct CheckoutResult {
    pub order_id: String,
    pub checkout_id: String,
    /// The order's status, paid after a successful checkout.
    pub status: String,
    /// What was charged to the buyer.
    pub charged: Amount,
    /// The platform fee the merchant pays on this order (not charged to the
    /// buyer).
    pub fee: Amount,
    /// The merchant-signed receipt (compact JWS, typ receipt+jwt); verify it
    /// with the merchant's JWKS at /.well-known/jwks.json.
    pub receipt: String,
    /// The processor's reference for the charge.
    pub payment_reference: String,
    /// Quote this when asking the merchant about the order.
    pub trace_id: String,
    /// True when this answer is the replay of an earlier call with the same
    /// idempotency_key: nothing was charged again.
    #[serde(default)]
    pub replayed: bool,
}

impl From<&crate::gateway::Completion> for CheckoutResult {
    fn from(c: &crate::gateway::Completion) -> Self {
        Self {
            order_id: c.order.id.to_string(),
            checkout_id: c.session.id.to_string(),
            status: c.order.status().as_str().to_owned(),
            charged: c.order.payment.amount.into(),
            fee: c.fee.into(),
            receipt: c.receipt.clone(),
            payment_reference: c.order.payment.reference.clone(),
            trace_id: c.trace_id.clone(),
            replayed: false,
        }
    }
}
