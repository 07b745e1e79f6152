//! Orders through Shopify's Admin REST API (`X-Shopify-Access-Token`):
//! an order by id with its financial and fulfillment status and its
//! fulfillments' tracking. Needs the `read_orders` and `read_fulfillments`
//! scopes. Nothing here writes to the shop.

use serde_json::Value;
use url::Url;

use super::client::{upstream, ShopifyClient};
use super::{parse_amount, ShopifyOptions};
use crate::domain::{Currency, Error, Money, Result};

/// One fulfillment (a shipment) of a Shopify order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyFulfillment {
    pub id: i64,
    /// `pending`, `open`, `success`, `cancelled`, `error`, `failure`.
    pub status: String,
    pub tracking_company: Option<String>,
    pub tracking_numbers: Vec<String>,
    pub tracking_urls: Vec<String>,
    /// RFC 3339, as Shopify sent it.
    pub created_at: Option<String>,
}

/// A Shopify order as the gateway reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyOrder {
    pub id: i64,
    /// The shop's order name (`#1001`).
    pub name: String,
    /// `pending`, `authorized`, `paid`, `partially_refunded`, `refunded`, `voided`…
    pub financial_status: Option<String>,
    /// `null` (unfulfilled), `partial`, `fulfilled`.
    pub fulfillment_status: Option<String>,
    pub cancelled: bool,
    pub total: Money,
    pub fulfillments: Vec<ShopifyFulfillment>,
}

/// The Admin API client.
pub struct ShopifyAdmin {
    client: ShopifyClient,
    options: ShopifyOptions,
}

impl ShopifyAdmin {
    /// `None` when no Admin token is configured.
    pub fn new(options: &ShopifyOptions) -> Result<Option<Self>> {
        let Some(token) = options.admin_token.clone() else { return Ok(None) };
        let client = ShopifyClient::new(
            "X-Shopify-Access-Token",
            token,
            options.timeout,
            options.retry.clone(),
        )?;
        Ok(Some(Self { client, options: options.clone() }))
    }

    fn order_url(&self, id: i64) -> Result<Url> {
        self.options.admin_url(&format!("orders/{id}.json"))
    }

    /// The order with numeric id (or `gid://shopify/Order/<id>`), `None`
    /// when the shop has no such order.
    pub async fn order(&self, id: &str) -> Result<Option<ShopifyOrder>> {
        let numeric = id.strip_prefix("gid://shopify/Order/").unwrap_or(id);
        let n: i64 = numeric
            .parse()
            .map_err(|_| Error::invalid(format!("{id:?} is not a Shopify order id")))?;
        let Some(doc) = self.client.get_json(&self.order_url(n)?).await? else { return Ok(None) };
        let order = doc.get("order").ok_or_else(|| upstream("an order answer has no order"))?;
        parse_order(order).map(Some)
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn opt_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// Reads an Admin REST order (also the body of `orders/*` webhooks).
pub fn parse_order(order: &Value) -> Result<ShopifyOrder> {
    let id =
        order.get("id").and_then(Value::as_i64).ok_or_else(|| upstream("an order has no id"))?;
    let currency =
        Currency::parse(order.get("currency").and_then(Value::as_str).unwrap_or_default())
            .map_err(|_| upstream("an order has no valid currency"))?;
    let total = order.get("total_price").and_then(Value::as_str).unwrap_or("0");
    let total =
        Money::new(parse_amount(total, currency).map_err(|e| upstream(e.message()))?, currency);
    let fulfillments = order
        .get("fulfillments")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parse_fulfillment).collect::<Result<Vec<_>>>())
        .transpose()?
        .unwrap_or_default();
    Ok(ShopifyOrder {
        id,
        name: opt_str(order, "name").unwrap_or_default(),
        financial_status: opt_str(order, "financial_status"),
        fulfillment_status: opt_str(order, "fulfillment_status"),
        cancelled: order.get("cancelled_at").is_some_and(|c| !c.is_null()),
        total,
        fulfillments,
    })
}

/// Reads an Admin REST fulfillment (also the body of `fulfillments/*`
/// webhooks).
pub fn parse_fulfillment(f: &Value) -> Result<ShopifyFulfillment> {
    let id =
        f.get("id").and_then(Value::as_i64).ok_or_else(|| upstream("a fulfillment has no id"))?;
    let mut numbers = strings(f.get("tracking_numbers"));
    if numbers.is_empty() {
        numbers.extend(opt_str(f, "tracking_number"));
    }
    let mut urls = strings(f.get("tracking_urls"));
    if urls.is_empty() {
        urls.extend(opt_str(f, "tracking_url"));
    }
    Ok(ShopifyFulfillment {
        id,
        status: opt_str(f, "status").unwrap_or_default(),
        tracking_company: opt_str(f, "tracking_company"),
        tracking_numbers: numbers,
        tracking_urls: urls,
        created_at: opt_str(f, "created_at"),
    })
}
