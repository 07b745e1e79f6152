//! UCP 2026-04-08 wire shapes (the primary version): checkout, cart,
//! catalog search and lookup, order, and their requests, following
//! `services/shopping/rest.openapi.json` and the schemas it names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    completed_order, discounts, fulfillment, has, items, order_permalink, rfc3339,
    selected_instrument, totals, ucp_meta, Ap2Request, BuyerRequest, CompletionRequest,
    DiscountSign, Discounts, DiscountsRequest, Fulfillment, FulfillmentRequest, InstrumentRequest,
    Item, LineItemRequest, Link, OrderConfirmation, Total, WireBuyer, WireLineItem, WireMessage,
    WireVersion, EXT_AP2, EXT_CART, EXT_DISCOUNT, EXT_FULFILLMENT,
};
use crate::domain::checkout::Buyer;
use crate::domain::{
    Cart, CartId, Error, Money, Order, OrderEvent, OrderStatus, Product, Result, StockState,
    Variant,
};
use crate::gateway::{CheckoutInput, CheckoutView, ItemInput, LinesInput};
use crate::ports::{SearchPage, SearchQuery};

const V: WireVersion = WireVersion::V2026_04_08;

// ---- Checkout ---------------------------------------------------------------

/// `shopping/checkout.json` with the fulfillment, discount and cart
/// extensions, each present only when negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkout {
    pub ucp: Value,
    pub id: String,
    pub line_items: Vec<WireLineItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer: Option<WireBuyer>,
    pub status: &'static str,
    pub currency: String,
    pub totals: Vec<Total>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<WireMessage>,
    pub links: Vec<Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continue_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<Payment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderConfirmation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<Fulfillment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discounts: Option<Discounts>,
    /// The merchant (AP2 `types/checkout.json`), only with the AP2
    /// extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant: Option<crate::ap2::v02::Merchant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_id: Option<String>,
}

/// `shopping/payment.json`: the selected instrument. The credential is
/// never echoed (`token_credential.json`: the token is omitted in
/// responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub instruments: Vec<Instrument>,
}

/// A selected instrument. The session keeps the handler, type and token,
/// not the platform's instrument id, so the id shown is the gateway's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instrument {
    pub id: &'static str,
    pub handler_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub selected: bool,
}

/// The instrument id the gateway shows for a session's one instrument.
pub const INSTRUMENT_ID: &str = "instrument_1";

impl From<&CheckoutView<'_>> for Checkout {
    fn from(view: &CheckoutView<'_>) -> Self {
        let s = view.session;
        let fulfillment_title =
            s.fulfillment.option_title.as_deref().filter(|_| s.fulfillment.amount.is_some());
        Self {
            ucp: ucp_meta(V, &s.capabilities, Some(view.payment_handler)),
            id: s.id.to_string(),
            line_items: s.line_items.iter().map(WireLineItem::from).collect(),
            buyer: WireBuyer::of(&s.buyer),
            status: s.status().as_str(),
            currency: s.currency.code().to_owned(),
            totals: totals(&s.totals, fulfillment_title, DiscountSign::Negative),
            messages: s.messages.iter().map(|m| WireMessage::new(m, V)).collect(),
            links: view.links.iter().map(Link::from).collect(),
            expires_at: rfc3339(s.expires_at),
            continue_url: s.continue_url.clone(),
            payment: s.payment.as_ref().map(|p| Payment {
                instruments: vec![Instrument {
                    id: INSTRUMENT_ID,
                    handler_id: p.handler_id.clone(),
                    kind: p.instrument_type.clone(),
                    selected: true,
                }],
            }),
            // Only a completed session has an order; before that the id
            // names the attempt in progress or waiting for the buyer.
            order: completed_order(s).map(|o| OrderConfirmation {
                id: o.to_string(),
                permalink_url: order_permalink(view.public_base_url, o.as_str()),
            }),
            fulfillment: if has(view, EXT_FULFILLMENT) { fulfillment(view, V) } else { None },
            discounts: has(view, EXT_DISCOUNT).then(|| discounts(view)),
            merchant: has(view, EXT_AP2).then(|| view.ap2_merchant.clone()),
            // Set only when the cart capability was active at creation.
            cart_id: s.cart_id.as_ref().map(|c| c.to_string()),
        }
    }
}

/// `payment.json` in a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PaymentRequest {
    #[serde(default)]
    pub instruments: Vec<InstrumentRequest>,
}

/// A create or update body (`checkout.json` resolved for the request).
/// Fields of extensions that were not negotiated are ignored, like any
/// unknown field.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CheckoutRequest {
    pub line_items: Option<Vec<LineItemRequest>>,
    pub buyer: Option<BuyerRequest>,
    pub fulfillment: Option<FulfillmentRequest>,
    pub discounts: Option<DiscountsRequest>,
    pub payment: Option<PaymentRequest>,
    pub cart_id: Option<String>,
}

impl CheckoutRequest {
    /// The domain input of a create. `capabilities` are all the negotiated
    /// ones, not only those a checkout response lists: the cart capability
    /// decides whether `cart_id` counts. With the cart capability a `cart_id` supplies the lines, and
    /// the body's lines are ignored ("Business MUST use cart contents",
    /// `cart.json`).
    pub fn create_input(&self, capabilities: &[String]) -> Result<CheckoutInput> {
        let lines = match (&self.cart_id, capabilities.iter().any(|c| c == EXT_CART)) {
            (Some(id), true) => LinesInput::Cart(
                CartId::parse(id)
                    .map_err(|e| Error::invalid(format!("cart_id: {}", e.message())))?,
            ),
            _ => LinesInput::Items(self.lines()?),
        };
        self.input(lines, capabilities)
    }

    /// The domain input of an update: lines are required and replace the
    /// session's; other fields replace theirs when present.
    pub fn update_input(&self, capabilities: &[String]) -> Result<CheckoutInput> {
        if self.line_items.is_none() {
            return Err(Error::invalid("line_items is required on update (a full replacement)"));
        }
        self.input(LinesInput::Items(self.lines()?), capabilities)
    }

    fn lines(&self) -> Result<Vec<ItemInput>> {
        items("line_items", self.line_items.as_deref().unwrap_or_default())
    }

    fn input(&self, lines: LinesInput, capabilities: &[String]) -> Result<CheckoutInput> {
        let active = |name: &str| capabilities.iter().any(|c| c == name);
        Ok(CheckoutInput {
            lines,
            buyer: self.buyer.as_ref().map(Buyer::try_from).transpose()?,
            fulfillment: match (&self.fulfillment, active(EXT_FULFILLMENT)) {
                (Some(f), true) => f.to_input()?,
                _ => None,
            },
            discount_codes: match (&self.discounts, active(EXT_DISCOUNT)) {
                (Some(d), true) => d.codes()?,
                _ => None,
            },
            payment: match &self.payment {
                Some(p) => selected_instrument(&p.instruments, None)?,
                None => None,
            },
        })
    }
}

/// A complete body: `checkout.json` for `complete` requires `payment`.
/// Mandates: see [`Ap2Request`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompleteRequest {
    pub payment: Option<PaymentRequest>,
    pub ap2: Option<Ap2Request>,
}

impl TryFrom<&CompleteRequest> for CompletionRequest {
    type Error = Error;

    fn try_from(r: &CompleteRequest) -> Result<Self> {
        let mut payment = match &r.payment {
            Some(p) => selected_instrument(&p.instruments, None)?,
            None => None,
        };
        let mandates = match &r.ap2 {
            Some(a) => a.mandates(&mut payment)?,
            None => None,
        };
        Ok(CompletionRequest { payment, mandates })
    }
}

// ---- Cart -------------------------------------------------------------------

/// `shopping/cart.json`. Carts carry estimates only: no fulfillment or
/// payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireCart {
    pub ucp: Value,
    pub id: String,
    pub line_items: Vec<WireLineItem>,
    pub currency: String,
    pub totals: Vec<Total>,
    pub links: Vec<Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The id of a cart's `i`th line: carts merge lines by variant, so the
/// position is stable between reads.
pub fn cart_line_id(i: usize) -> String {
    format!("li_{}", i + 1)
}

impl WireCart {
    pub fn new(cart: &Cart, ucp: Value, links: &[crate::settings::PolicyLink]) -> Self {
        let line_items: Vec<WireLineItem> = cart
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                WireLineItem::new(
                    &cart_line_id(i),
                    l.variant_id.as_str(),
                    &l.title,
                    l.unit_price,
                    l.quantity,
                )
            })
            .collect();
        let subtotal: i64 =
            line_items.iter().filter_map(|l| l.totals.first()).map(|t| t.amount).sum();
        Self {
            ucp,
            id: cart.id.to_string(),
            line_items,
            currency: cart.currency.code().to_owned(),
            totals: vec![
                Total::new("subtotal", "Subtotal", subtotal),
                Total::new("total", "Estimated total", subtotal),
            ],
            links: links.iter().map(Link::from).collect(),
            expires_at: rfc3339(cart.expires_at),
        }
    }
}

/// A cart create or update body: the lines (required, a full replacement
/// on update). Buyer and context are accepted and ignored: a cart is an
/// estimate, and the checkout asks for the buyer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CartRequest {
    pub line_items: Option<Vec<LineItemRequest>>,
}

impl CartRequest {
    pub fn lines(&self) -> Result<Vec<ItemInput>> {
        match &self.line_items {
            Some(l) => items("line_items", l),
            None => Err(Error::invalid("line_items is required")),
        }
    }
}

// ---- Catalog ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

impl From<Money> for Price {
    fn from(m: Money) -> Self {
        Self { amount: m.minor().max(0), currency: m.currency().code().to_owned() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceRange {
    pub min: Price,
    pub max: Price,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Description {
    pub plain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Category {
    pub value: String,
    pub taxonomy: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Media {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub available: bool,
    pub status: &'static str,
}

/// `types/input_correlation.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputCorrelation {
    pub id: String,
    #[serde(rename = "match")]
    pub kind: &'static str,
}

/// `types/variant.json`; `inputs` only in lookup answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireVariant {
    pub id: String,
    pub sku: String,
    pub title: String,
    pub description: Description,
    pub price: Price,
    pub availability: Availability,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputCorrelation>,
}

impl WireVariant {
    pub fn new(product: &Product, v: &Variant) -> Self {
        let title = if v.title.is_empty() { product.title.clone() } else { v.title.clone() };
        let status = match v.stock_state() {
            StockState::OutOfStock => "out_of_stock",
            StockState::InStock | StockState::LowStock => "in_stock",
        };
        Self {
            id: v.id.to_string(),
            sku: v.sku.to_string(),
            description: Description { plain: format!("{} — {}", product.title, title) },
            title,
            price: v.price.into(),
            availability: Availability { available: v.stock > 0, status },
            inputs: Vec::new(),
        }
    }
}

/// `types/product.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireProduct {
    pub id: String,
    pub handle: String,
    pub title: String,
    pub description: Description,
    pub categories: Vec<Category>,
    pub price_range: PriceRange,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    pub variants: Vec<WireVariant>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl WireProduct {
    /// `None` for a product without variants, which UCP cannot show
    /// (`variants` has `minItems: 1`).
    pub fn new(p: &Product) -> Option<Self> {
        Self::with_variants(p, p.variants.iter().map(|v| WireVariant::new(p, v)).collect())
    }

    pub fn with_variants(p: &Product, variants: Vec<WireVariant>) -> Option<Self> {
        let min = p.variants.iter().map(|v| v.price).min_by_key(Money::minor)?;
        let max = p.variants.iter().map(|v| v.price).max_by_key(Money::minor)?;
        if variants.is_empty() {
            return None;
        }
        Some(Self {
            id: p.id.to_string(),
            handle: p.handle.clone(),
            title: p.title.clone(),
            description: Description {
                plain: if p.description.is_empty() {
                    p.title.clone()
                } else {
                    p.description.clone()
                },
            },
            categories: vec![Category { value: p.category.clone(), taxonomy: "merchant" }],
            price_range: PriceRange { min: min.into(), max: max.into() },
            media: p.image_url.iter().map(|u| Media { kind: "image", url: u.clone() }).collect(),
            variants,
            tags: p.tags.clone(),
        })
    }
}

/// `catalog_search.json` `search_request`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchRequest {
    pub query: Option<String>,
    pub filters: Option<SearchFilters>,
    pub pagination: Option<PaginationRequest>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchFilters {
    pub categories: Option<Vec<String>>,
    pub price: Option<PriceFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PriceFilter {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PaginationRequest {
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// The default page size (`pagination.json`: `default: 10`) and the most
/// one page holds.
const DEFAULT_LIMIT: u32 = 10;
const MAX_LIMIT: u32 = 50;

impl TryFrom<&SearchRequest> for SearchQuery {
    type Error = Error;

    fn try_from(r: &SearchRequest) -> Result<Self> {
        let text = r.query.clone().unwrap_or_default();
        if text.len() > 512 {
            return Err(Error::invalid("query is longer than 512 bytes"));
        }
        let filters = r.filters.clone().unwrap_or_default();
        let categories = filters.categories.unwrap_or_default();
        // The catalog filters on one category subtree.
        if categories.len() > 1 {
            return Err(Error::invalid(
                "filters.categories: this business filters on one category at a time",
            ));
        }
        let price = filters.price.unwrap_or_default();
        if price.min.is_some_and(|m| m < 0) || price.max.is_some_and(|m| m < 0) {
            return Err(Error::invalid("filters.price amounts must not be negative"));
        }
        let pagination = r.pagination.clone().unwrap_or_default();
        let limit = match pagination.limit {
            None => DEFAULT_LIMIT,
            Some(l) if l >= 1 => u32::try_from(l).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            Some(_) => return Err(Error::invalid("pagination.limit must be at least 1")),
        };
        Ok(SearchQuery {
            text,
            category: categories.into_iter().next(),
            tags: Vec::new(),
            price_min: price.min,
            price_max: price.max,
            in_stock_only: false,
            limit,
            cursor: pagination.cursor,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaginationResponse {
    pub has_next_page: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `catalog_search.json` `search_response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchResponse {
    pub ucp: Value,
    pub products: Vec<WireProduct>,
    pub pagination: PaginationResponse,
}

impl SearchResponse {
    pub fn new(page: &SearchPage, ucp: Value) -> Self {
        Self {
            ucp,
            products: page.products.iter().filter_map(WireProduct::new).collect(),
            pagination: PaginationResponse {
                has_next_page: page.next_cursor.is_some(),
                cursor: page.next_cursor.clone(),
            },
        }
    }
}

/// `catalog_lookup.json` `lookup_request`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LookupRequest {
    #[serde(default)]
    pub ids: Vec<String>,
}

/// The most ids one lookup takes.
pub const MAX_LOOKUP_IDS: usize = 50;

impl LookupRequest {
    pub fn ids(&self) -> Result<&[String]> {
        if self.ids.is_empty() || self.ids.len() > MAX_LOOKUP_IDS {
            return Err(Error::invalid(format!("ids must hold 1 to {MAX_LOOKUP_IDS} identifiers")));
        }
        Ok(&self.ids)
    }
}

/// `catalog_lookup.json` `lookup_response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupResponse {
    pub ucp: Value,
    pub products: Vec<WireProduct>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<WireMessage>,
}

impl LookupResponse {
    /// Renders a gateway lookup: each hit with the variants it matched and
    /// how each requested id correlated, and an info message for every id
    /// (by its position in `ids`) that matched nothing. REST and the UCP
    /// MCP binding both answer with this.
    pub fn from_lookup(
        lookup: &crate::gateway::Lookup,
        ids: &[String],
        ucp: Value,
        version: WireVersion,
    ) -> Self {
        let products = lookup
            .hits
            .iter()
            .filter_map(|hit| {
                let variants = hit
                    .variants
                    .iter()
                    .filter_map(|(vid, inputs)| {
                        let mut w = WireVariant::new(&hit.product, hit.product.variant(vid)?);
                        w.inputs = inputs
                            .iter()
                            .map(|(id, how)| InputCorrelation {
                                id: id.clone(),
                                kind: how.as_str(),
                            })
                            .collect();
                        Some(w)
                    })
                    .collect();
                WireProduct::with_variants(&hit.product, variants)
            })
            .collect();
        let messages = lookup
            .not_found
            .iter()
            .map(|&i| {
                let m = crate::domain::checkout::Message {
                    kind: crate::domain::checkout::MessageType::Info,
                    code: "not_found".into(),
                    content: format!(
                        "nothing matches {:?}",
                        ids.get(i).map(String::as_str).unwrap_or_default()
                    ),
                    severity: None,
                    path: Some(format!("$.ids[{i}]")),
                };
                WireMessage::new(&m, version)
            })
            .collect();
        Self { ucp, products, messages }
    }
}

/// `catalog_lookup.json` `get_product_request`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductRequest {
    pub id: String,
}

/// `catalog_lookup.json` `get_product_response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductResponse {
    pub ucp: Value,
    pub product: WireProduct,
}

// ---- Order ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderQuantity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<u32>,
    pub total: u32,
    pub fulfilled: u32,
}

/// `types/order_line_item.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLineItem {
    pub id: String,
    pub item: Item,
    pub quantity: OrderQuantity,
    pub totals: Vec<Total>,
    pub status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLine {
    pub id: String,
    pub quantity: u32,
}

/// `types/fulfillment_event.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FulfillmentEvent {
    pub id: String,
    pub occurred_at: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub line_items: Vec<EventLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
}

/// `types/expectation.json`: how and where the order is to arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub id: String,
    pub line_items: Vec<EventLine>,
    pub method_type: &'static str,
    pub destination: super::WireAddress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderFulfillment {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<Expectation>,
    pub events: Vec<FulfillmentEvent>,
}

/// `types/adjustment.json`: a refund or a cancellation. 2026-04-08 gives
/// the money as signed `totals` (negative: returned to the buyer),
/// 2026-01-11 as a plain `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adjustment {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub occurred_at: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Vec<Total>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `shopping/order.json`. `currency` is 2026-04-08's; 2026-01-11 renders
/// without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireOrder {
    pub ucp: Value,
    pub id: String,
    pub checkout_id: String,
    pub permalink_url: String,
    pub line_items: Vec<OrderLineItem>,
    pub fulfillment: OrderFulfillment,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adjustments: Vec<Adjustment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub totals: Vec<Total>,
}

/// The id of an order's `i`th line.
pub fn order_line_id(i: usize) -> String {
    format!("li_{}", i + 1)
}

/// The position of the line `li_<n>` in the order, if it names one.
pub fn order_line_index(id: &str) -> Option<usize> {
    let n: usize = id.strip_prefix("li_")?.parse().ok()?;
    n.checked_sub(1)
}

/// Renders an order in `version`'s shape, with what its audit trail says
/// happened after checkout: each shipment is a `shipped` event for the
/// lines it holds (and a `delivered` one once delivered), refunds and a
/// cancellation are adjustments, and every line counts what has shipped.
pub fn order(
    o: &Order,
    events: &[OrderEvent],
    ucp: Value,
    public_base_url: &str,
    version: WireVersion,
) -> WireOrder {
    use crate::domain::order::FulfillmentStatus;
    use crate::domain::OrderEventKind;
    let canceled = o.status() == OrderStatus::Canceled;
    let line_items = o
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let total = if canceled { 0 } else { l.quantity };
            let fulfilled = o.shipped(i).min(total);
            // 2026-01-11 has no `removed` status nor `original` quantity.
            let status = match (canceled, version) {
                (true, WireVersion::V2026_04_08) => "removed",
                _ if total > 0 && fulfilled == total => "fulfilled",
                _ if fulfilled > 0 => "partial",
                _ => "processing",
            };
            OrderLineItem {
                id: order_line_id(i),
                item: Item {
                    id: l.variant_id.to_string(),
                    title: l.title.clone(),
                    price: l.unit_price.minor(),
                },
                quantity: OrderQuantity {
                    original: (version == WireVersion::V2026_04_08).then_some(l.quantity),
                    total,
                    fulfilled,
                },
                totals: vec![
                    Total::new("subtotal", "Subtotal", l.line_total.minor()),
                    Total::new("total", "Total", l.line_total.minor()),
                ],
                status,
            }
        })
        .collect();
    let lines_of = |f: &crate::domain::order::Fulfillment| -> Vec<EventLine> {
        if f.lines.is_empty() {
            // A shipment recorded before lines were: the whole order.
            o.lines
                .iter()
                .enumerate()
                .map(|(i, l)| EventLine { id: order_line_id(i), quantity: l.quantity })
                .collect()
        } else {
            f.lines
                .iter()
                .map(|fl| EventLine { id: order_line_id(fl.line), quantity: fl.quantity })
                .collect()
        }
    };
    let shipped_at = |id: &str| {
        events.iter().find_map(|e| match &e.kind {
            OrderEventKind::Fulfillment { fulfillment } if fulfillment.id == id => Some(e.at),
            _ => None,
        })
    };
    let mut fulfillment_events = Vec::new();
    for f in &o.fulfillments {
        if f.status == FulfillmentStatus::Pending {
            continue;
        }
        let shipped = shipped_at(&f.id).unwrap_or(f.updated_at);
        let event = |id: String, at, kind| -> Option<FulfillmentEvent> {
            Some(FulfillmentEvent {
                id,
                occurred_at: rfc3339(at)?,
                kind,
                line_items: lines_of(f),
                tracking_number: f.tracking_number.clone(),
                tracking_url: f.tracking_url.clone(),
                carrier: f.carrier.clone(),
            })
        };
        fulfillment_events.extend(event(f.id.clone(), shipped, "shipped"));
        if f.status == FulfillmentStatus::Delivered {
            fulfillment_events.extend(event(
                format!("{}-delivered", f.id),
                f.updated_at,
                "delivered",
            ));
        }
    }
    let expectations = o
        .delivery
        .as_ref()
        .and_then(|d| {
            let destination = d.destination.as_ref()?;
            Some(Expectation {
                id: "exp_1".to_owned(),
                line_items: o
                    .lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| EventLine { id: order_line_id(i), quantity: l.quantity })
                    .collect(),
                method_type: d.method.as_str(),
                destination: super::WireAddress::new(destination, None, version),
                description: d.description.clone(),
            })
        })
        .filter(|_| !canceled)
        .into_iter()
        .collect();
    let mut adjustments = Vec::new();
    for (n, e) in events.iter().enumerate() {
        let Some(occurred_at) = rfc3339(e.at) else { continue };
        let (kind, money, id) = match &e.kind {
            OrderEventKind::Refund { amount, reference } => {
                ("refund", Some(amount.minor()), reference.clone())
            }
            OrderEventKind::StatusChanged { to: OrderStatus::Canceled, .. } => {
                ("cancellation", None, format!("adj_cancel_{n}"))
            }
            _ => continue,
        };
        let (totals, amount) = match (money, version) {
            (None, _) => (None, None),
            (Some(m), WireVersion::V2026_04_08) => {
                (Some(vec![Total::new("total", "Refunded", -m)]), None)
            }
            (Some(m), WireVersion::V2026_01_11) => (None, Some(m)),
        };
        let description = (!e.reason.is_empty()).then(|| e.reason.clone());
        adjustments.push(Adjustment {
            id,
            kind,
            occurred_at,
            status: "completed",
            totals,
            amount,
            description,
        });
    }
    let sign = match version {
        WireVersion::V2026_04_08 => DiscountSign::Negative,
        WireVersion::V2026_01_11 => DiscountSign::Positive,
    };
    let shipping = (o.totals.fulfillment.minor() > 0).then_some("Shipping");
    WireOrder {
        ucp,
        id: o.id.to_string(),
        checkout_id: o.checkout_id.to_string(),
        permalink_url: order_permalink(public_base_url, o.id.as_str()),
        line_items,
        fulfillment: OrderFulfillment { expectations, events: fulfillment_events },
        adjustments,
        currency: (version == WireVersion::V2026_04_08)
            .then(|| o.totals.total.currency().code().to_owned()),
        totals: totals(&o.totals, shipping, sign),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn extension_fields_count_only_when_negotiated() {
        let body: CheckoutRequest = serde_json::from_value(json!({
            "line_items": [{"item": {"id": "v-1"}, "quantity": 2}],
            "discounts": {"codes": ["SAVE5"]},
            "fulfillment": {"methods": [{"type": "pickup"}]},
            "cart_id": "cart_abc",
        }))
        .unwrap();
        let bare = body.create_input(&caps(&["dev.ucp.shopping.checkout"])).unwrap();
        assert!(matches!(bare.lines, LinesInput::Items(ref i) if i.len() == 1));
        assert_eq!((bare.discount_codes, bare.fulfillment), (None, None));
        let all = body
            .create_input(&caps(&[
                "dev.ucp.shopping.checkout",
                EXT_CART,
                EXT_DISCOUNT,
                EXT_FULFILLMENT,
            ]))
            .unwrap();
        assert!(matches!(all.lines, LinesInput::Cart(_)), "cart contents win");
        assert_eq!(all.discount_codes, Some(vec!["SAVE5".to_owned()]));
        assert!(all.fulfillment.is_some());
    }

    #[test]
    fn updates_need_lines_and_searches_are_bounded() {
        let err = CheckoutRequest::default().update_input(&[]).unwrap_err();
        assert!(err.message().contains("line_items"));
        let search = |v: serde_json::Value| {
            SearchQuery::try_from(&serde_json::from_value::<SearchRequest>(v).unwrap())
        };
        assert_eq!(search(json!({})).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(search(json!({"pagination": {"limit": 1000}})).unwrap().limit, MAX_LIMIT);
        assert!(search(json!({"pagination": {"limit": 0}})).is_err());
        assert!(search(json!({"filters": {"categories": ["a", "b"]}})).is_err());
        assert!(search(json!({"filters": {"price": {"min": -1}}})).is_err());
        let q = search(json!({"query": "linen", "filters": {"categories": ["apparel"], "price": {"max": 5000}}})).unwrap();
        assert_eq!(
            (q.text.as_str(), q.category.as_deref(), q.price_max),
            ("linen", Some("apparel"), Some(5000))
        );
    }
}
