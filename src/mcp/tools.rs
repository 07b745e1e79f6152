//! The gateway tools at `/mcp` (and on stdio): the five calls a buying agent
//! needs, shaped for a model rather than for a protocol.
//!
//! Each tool is a thin adapter: it parses its flat arguments into domain
//! values, calls one [`Gateway`](crate::gateway::Gateway) use case, and
//! turns the answer into an output type with a JSON Schema (`outputSchema`
//! plus `structuredContent` and a text mirror). Mistakes in the arguments
//! and business failures come back as [`ToolError`] results, never as
//! protocol errors, and nothing a client sends can panic.
//!
//! The descriptions are part of the safety design: they tell the model
//! where prices come from, when to ask the user, and how to retry.

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router, Json};
use schemars::JsonSchema;
use serde::Deserialize;

use super::error::ToolError;
use super::schema::flat_input;
use super::views::{CartView, InventoryPage, OrderView, ProductView};
use super::GatewayServer;
use crate::domain::cart::MAX_LINE_QUANTITY;
use crate::domain::{Cart, CartId, CheckoutId, OrderId, VariantId};
use crate::gateway::{Caller, CartChange};
use crate::ports::SearchQuery;

/// Results per page when the agent does not say.
const DEFAULT_LIMIT: u32 = 10;
/// The most results one page returns.
const MAX_LIMIT: u32 = 50;

// ---- scout_inventory ---------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct ScoutInventoryArgs {
    /// Free-text search over titles, tags, categories and descriptions, e.g.
    /// "linen shirt". Leave out to list everything that matches the filters.
    pub query: Option<String>,
    /// A category path such as "apparel" or "apparel/shirts"; matches the
    /// category and everything below it.
    pub category: Option<String>,
    /// Tags that must all be present, e.g. ["linen", "summer"].
    pub tags: Option<Vec<String>>,
    /// Lowest variant price to include, in minor units of the store currency
    /// (cents for USD: 2500 means 25.00).
    #[schemars(range(min = 0))]
    pub price_min: Option<i64>,
    /// Highest variant price to include, in minor units (cents for USD).
    #[schemars(range(min = 0))]
    pub price_max: Option<i64>,
    /// Only return products with at least one variant in stock.
    pub in_stock_only: Option<bool>,
    /// Page size, 1 to 50 (default 10).
    #[schemars(range(min = 1, max = 50))]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page, to get the next one.
    pub cursor: Option<String>,
}

impl ScoutInventoryArgs {
    fn into_query(self) -> Result<SearchQuery, ToolError> {
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => n as u32,
            Some(_) => return Err(ToolError::invalid(format!("limit must be 1 to {MAX_LIMIT}"))),
        };
        for (name, bound) in [("price_min", self.price_min), ("price_max", self.price_max)] {
            if bound.is_some_and(|p| p < 0) {
                return Err(ToolError::invalid(format!("{name} must not be negative")));
            }
        }
        if let (Some(lo), Some(hi)) = (self.price_min, self.price_max) {
            if lo > hi {
                return Err(ToolError::invalid("price_min must not exceed price_max"));
            }
        }
        Ok(SearchQuery {
            text: self.query.unwrap_or_default().trim().to_owned(),
            category: self.category.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()),
            tags: self.tags.unwrap_or_default(),
            price_min: self.price_min,
            price_max: self.price_max,
            in_stock_only: self.in_stock_only.unwrap_or(false),
            limit,
            cursor: self.cursor.filter(|c| !c.is_empty()),
        })
    }
}

// ---- manage_cart -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum CartAction {
    Create,
    Add,
    Update,
    Remove,
    Get,
    Clear,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct ManageCartArgs {
    /// create: a new cart (optionally with a first item); add: add units of a
    /// variant; update: set a line's quantity (0 removes it); remove: drop a
    /// line; get: read the cart; clear: empty it.
    pub action: CartAction,
    /// The cart to act on (from a previous `create`). Required for every
    /// action except `create`.
    pub cart_id: Option<String>,
    /// A `variant_id` from scout_inventory. Required for add, update and
    /// remove; optional for create.
    pub variant_id: Option<String>,
    /// Units, 1 to 999 (default 1 for create and add); for update, 0 to 999.
    #[schemars(range(min = 0, max = 999))]
    pub quantity: Option<i64>,
}

fn required<'a>(value: &'a Option<String>, name: &str, action: &str) -> Result<&'a str, ToolError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ToolError::invalid(format!("{name} is required for action {action}")))
}

fn quantity(raw: Option<i64>, min: i64) -> Result<u32, ToolError> {
    let q = raw.unwrap_or(1);
    if !(min..=i64::from(MAX_LINE_QUANTITY)).contains(&q) {
        return Err(ToolError::new(
            crate::domain::ErrorCode::QuantityLimitExceeded,
            format!("quantity must be between {min} and {MAX_LINE_QUANTITY}"),
        ));
    }
    Ok(q as u32)
}

// ---- track_order ---------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct TrackOrderArgs {
    /// The order id execute_checkout returned (starts with ord_).
    pub order_id: Option<String>,
    /// Instead of order_id: the checkout the buyer paid on the store's own
    /// checkout (after execute_checkout answered payment_requires_action),
    /// whose order id you never received.
    pub checkout_id: Option<String>,
}

// ---- the tools -------------------------------------------------------------------

#[tool_router(router = tool_router, vis = "pub(crate)")]
impl GatewayServer {
    #[tool(
        name = "scout_inventory",
        title = "Search the store's inventory",
        description = "Search this store's catalog. Returns products with their variants: each \
variant has a variant_id (what carts take), a price in minor units (cents for USD) with its \
currency, and a stock_state. These are the only trustworthy prices: never invent or remember a \
price, and quote prices to the user from this tool (or manage_cart) only. Use query for free \
text, category/tags/price_min/price_max/in_stock_only to filter, and pass next_cursor back as \
cursor for more results. Read-only; safe to call as often as needed.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn scout_inventory(
        &self,
        Parameters(args): Parameters<ScoutInventoryArgs>,
    ) -> Result<Json<InventoryPage>, ToolError> {
        let query = args.into_query()?;
        let page = self.gateway().search(&query).await?;
        Ok(Json(InventoryPage {
            products: page.products.iter().map(ProductView::from).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    #[tool(
        name = "manage_cart",
        title = "Create and change a cart",
        description = "Create a cart and change its contents. action=create starts a cart \
(optionally with variant_id and quantity) and returns its cart_id; add, update (quantity 0 \
removes the line), remove, get and clear act on cart_id. Every answer re-prices each line from \
the catalog and returns the lines and subtotal in minor units; show these to the user rather \
than computing totals yourself. A cart reserves nothing and charges nothing: stock is checked \
and taken only at execute_checkout. Next step: negotiate_terms with the cart_id.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    pub async fn manage_cart(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<ManageCartArgs>,
    ) -> Result<Json<CartView>, ToolError> {
        let cart = self.run_cart_action(&caller, args).await?;
        Ok(Json(CartView::try_from(&cart)?))
    }

    #[tool(
        name = "track_order",
        title = "Track an order",
        description = "Look up one of your orders by order_id (from execute_checkout), or by \
checkout_id once the buyer has paid on the store's own checkout (execute_checkout answered \
payment_requires_action with a link): its status, lines, totals, the payment, shipments with \
carrier and tracking number, and every event so far. Only orders placed by the same caller are visible; any other id reads as not_found. \
Read-only; report what it returns and do not speculate beyond it.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn track_order(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<TrackOrderArgs>,
    ) -> Result<Json<OrderView>, ToolError> {
        let given = |v: &Option<String>| {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        let view = match (given(&args.order_id), given(&args.checkout_id)) {
            (Some(order), None) => {
                self.gateway().get_order(&caller, &OrderId::parse(&order)?).await?
            }
            (None, Some(checkout)) => {
                let id = CheckoutId::parse(&checkout)?;
                self.gateway().order_of_checkout(&caller, &id).await?
            }
            _ => return Err(ToolError::invalid("give exactly one of order_id and checkout_id")),
        };
        Ok(Json(OrderView::from(&view)))
    }
}

impl GatewayServer {
    async fn run_cart_action(
        &self,
        caller: &Caller,
        args: ManageCartArgs,
    ) -> Result<Cart, ToolError> {
        let gateway = self.gateway();
        let action = match args.action {
            CartAction::Create => "create",
            CartAction::Add => "add",
            CartAction::Update => "update",
            CartAction::Remove => "remove",
            CartAction::Get => "get",
            CartAction::Clear => "clear",
        };
        if let CartAction::Create = args.action {
            if args.cart_id.is_some() {
                return Err(ToolError::invalid("create makes a new cart; leave cart_id out"));
            }
            let lines = match args.variant_id.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => {
                    vec![(VariantId::parse(v)?, quantity(args.quantity, 1)?)]
                }
                _ if args.quantity.is_some() => {
                    return Err(ToolError::invalid("quantity needs a variant_id"));
                }
                _ => Vec::new(),
            };
            return Ok(gateway.create_cart(caller, &lines).await?);
        }
        let cart_id = CartId::parse(required(&args.cart_id, "cart_id", action)?)?;
        let variant = || -> Result<VariantId, ToolError> {
            Ok(VariantId::parse(required(&args.variant_id, "variant_id", action)?)?)
        };
        let change = match args.action {
            CartAction::Get => return Ok(gateway.get_cart(caller, &cart_id).await?),
            CartAction::Add => {
                CartChange::Add { variant: variant()?, quantity: quantity(args.quantity, 1)? }
            }
            CartAction::Update => {
                let variant = variant()?;
                if args.quantity.is_none() {
                    return Err(ToolError::invalid("quantity is required for action update"));
                }
                match quantity(args.quantity, 0)? {
                    0 => CartChange::Remove { variant },
                    quantity => CartChange::SetQuantity { variant, quantity },
                }
            }
            CartAction::Remove => CartChange::Remove { variant: variant()? },
            CartAction::Clear => CartChange::Clear,
            CartAction::Create => return Err(ToolError::invalid("unreachable action")),
        };
        Ok(gateway.update_cart(caller, &cart_id, change).await?)
    }
}
