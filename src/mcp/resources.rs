//! MCP resources: read-only documents an agent (or the user, through the
//! client) can attach as context: the inventory snapshot, the category tree,
//! the store policies, the UCP profile and, through a template, the
//! caller's own orders.
//!
//! Resources are read with protocol errors, not tool results: an unknown
//! URI or an order the caller may not see is `resource not found`, the same
//! answer either way, so a probe cannot tell them apart.

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use rmcp::ErrorData;
use serde_json::{json, Value};

use super::views::{OrderView, ProductView};
use super::Edge;
use crate::domain::{Error, ErrorCode, OrderId};
use crate::gateway::Caller;
use crate::ports::SearchQuery;

pub const INVENTORY: &str = "agentgate://inventory";
pub const CATEGORIES: &str = "agentgate://categories";
pub const POLICIES: &str = "agentgate://policies";
pub const UCP_PROFILE: &str = "agentgate://ucp-profile";
pub const ORDER_TEMPLATE: &str = "agentgate://orders/{order_id}";
const ORDER_PREFIX: &str = "agentgate://orders/";

/// The inventory snapshot stops here; an agent that needs more searches
/// with scout_inventory.
const SNAPSHOT_MAX_PRODUCTS: usize = 200;
const SNAPSHOT_PAGE: u32 = 50;
const JSON: &str = "application/json";

pub fn list() -> Vec<Resource> {
    vec![
        Resource::new(INVENTORY, "inventory")
            .with_title("Inventory snapshot")
            .with_description(
                "Every product with its variants, current prices (minor units) and stock \
                 state, up to 200 products. Prices change: quote them from scout_inventory \
                 or manage_cart at the time of purchase.",
            )
            .with_mime_type(JSON),
        Resource::new(CATEGORIES, "categories")
            .with_title("Category tree")
            .with_description("The store's categories with product counts, for filtering.")
            .with_mime_type(JSON),
        Resource::new(POLICIES, "policies")
            .with_title("Store policies")
            .with_description("Returns and shipping policies, in the merchant's words.")
            .with_mime_type(JSON),
        Resource::new(UCP_PROFILE, "ucp-profile")
            .with_title("UCP business profile")
            .with_description(
                "The merchant's Universal Commerce Protocol profile (as served at \
                 /.well-known/ucp): versions, capabilities, payment handlers, signing keys.",
            )
            .with_mime_type(JSON),
    ]
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![ResourceTemplate::new(ORDER_TEMPLATE, "order")
        .with_title("One of your orders")
        .with_description(
            "Status, lines, totals, fulfillment and tracking of an order you placed \
             (order ids start with ord_).",
        )
        .with_mime_type(JSON)]
}

fn protocol_error(e: Error, uri: &str) -> ErrorData {
    match e.code() {
        ErrorCode::NotFound => ErrorData::resource_not_found(
            format!("resource {uri} not found"),
            Some(json!({ "uri": uri })),
        ),
        ErrorCode::InvalidInput => ErrorData::invalid_params(e.message().to_owned(), None),
        _ => ErrorData::internal_error(
            e.message().to_owned(),
            Some(json!({ "code": e.code().as_str(), "retryable": e.retryable() })),
        ),
    }
}

fn document(uri: &str, value: &Value) -> ReadResourceResult {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type(JSON)])
}

/// Reads one resource for `caller`.
pub async fn read(
    edge: &Edge,
    caller: &Caller,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let value = match uri {
        INVENTORY => inventory(edge).await,
        CATEGORIES => edge.gateway.categories().await.map(|tree| json!({ "categories": tree })),
        POLICIES => Ok(policies(edge)),
        UCP_PROFILE => Ok(edge.ucp_profile.as_ref().clone()),
        _ => match uri.strip_prefix(ORDER_PREFIX) {
            Some(id) if !id.is_empty() => order(edge, caller, id).await,
            _ => Err(Error::not_found(format!("no resource {uri}"))),
        },
    };
    value.map(|v| document(uri, &v)).map_err(|e| protocol_error(e, uri))
}

async fn inventory(edge: &Edge) -> crate::domain::Result<Value> {
    let mut products = Vec::new();
    let mut cursor = None;
    let truncated = loop {
        let query =
            SearchQuery { limit: SNAPSHOT_PAGE, cursor: cursor.take(), ..Default::default() };
        let page = edge.gateway.search(&query).await?;
        products.extend(page.products.iter().map(ProductView::from));
        match page.next_cursor {
            Some(next) if products.len() < SNAPSHOT_MAX_PRODUCTS => cursor = Some(next),
            Some(_) => break true,
            None => break false,
        }
    };
    products.truncate(SNAPSHOT_MAX_PRODUCTS);
    Ok(json!({
        "currency": edge.gateway.settings().currency.code(),
        "products": products,
        "truncated": truncated,
    }))
}

fn policies(edge: &Edge) -> Value {
    let s = edge.gateway.settings();
    json!({
        "merchant": s.merchant_name,
        "currency": s.currency.code(),
        "returns": s.policies.returns,
        "shipping": s.policies.shipping,
    })
}

async fn order(edge: &Edge, caller: &Caller, id: &str) -> crate::domain::Result<Value> {
    // A malformed id reads like a missing order: both are "not found".
    let id = OrderId::parse(id).map_err(|_| Error::not_found(format!("no order {id}")))?;
    let view = edge.gateway.get_order(caller, &id).await?;
    serde_json::to_value(OrderView::from(&view)).map_err(Error::internal)
}
