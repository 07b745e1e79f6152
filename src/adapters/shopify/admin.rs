//! Orders through Shopify's Admin REST API (`X-Shopify-Access-Token`):
//! an order by id with its financial and fulfillment status and its
//! fulfillments' tracking. Needs the `read_orders` and `read_fulfillments`
//! scopes. Nothing here writes to the shop.

use serde_json::Value;
use url::Url;

use super::client::{upstream, ShopifyClient};
use super::storefront::CHECKOUT_ATTRIBUTE;
use super::{parse_amount, ShopifyOptions};
use crate::domain::{CheckoutId, Currency, Error, Money, Result, VariantId};
use crate::ports::{ExternalFinancialStatus, ExternalFulfillment, ExternalOrder, ExternalOrders};

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
    /// `(numeric variant id, units)` of the shipped line items.
    pub lines: Vec<(i64, u32)>,
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
    /// The gateway checkout, from the cart attribute Shopify copied onto
    /// the order's `note_attributes` ([`CHECKOUT_ATTRIBUTE`]).
    pub checkout_id: Option<String>,
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
        checkout_id: order
            .get("note_attributes")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter().find(|n| n.get("name").and_then(Value::as_str) == Some(CHECKOUT_ATTRIBUTE))
            })
            .and_then(|n| opt_str(n, "value")),
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
        lines: f
            .get("line_items")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        let variant = l.get("variant_id").and_then(Value::as_i64)?;
                        let units = l.get("quantity").and_then(Value::as_u64)?;
                        Some((variant, u32::try_from(units).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl ShopifyFulfillment {
    /// The shipment as the gateway reconciles it.
    pub fn to_external(&self) -> ExternalFulfillment {
        let first = |v: &[String]| v.first().filter(|s| !s.trim().is_empty()).cloned();
        ExternalFulfillment {
            id: self.id.to_string(),
            // `pending` and `open` shipments are on their way to `success`;
            // `cancelled`, `error` and `failure` never ship.
            active: matches!(self.status.as_str(), "pending" | "open" | "success" | ""),
            carrier: self.tracking_company.clone().filter(|c| !c.trim().is_empty()),
            tracking_number: first(&self.tracking_numbers),
            tracking_url: first(&self.tracking_urls),
            lines: self
                .lines
                .iter()
                .filter_map(|(variant, units)| {
                    let gid = format!("gid://shopify/ProductVariant/{variant}");
                    VariantId::parse(&gid).ok().map(|v| (v, *units))
                })
                .collect(),
        }
    }
}

impl ShopifyOrder {
    /// The order as the gateway reconciles it. A checkout attribute that is
    /// not a gateway checkout id reads as no link.
    pub fn to_external(&self) -> ExternalOrder {
        let financial = match self.financial_status.as_deref() {
            Some("paid") => ExternalFinancialStatus::Paid,
            Some("partially_refunded") => ExternalFinancialStatus::PartiallyRefunded,
            Some("refunded") => ExternalFinancialStatus::Refunded,
            Some("voided") => ExternalFinancialStatus::Voided,
            _ => ExternalFinancialStatus::Unpaid,
        };
        ExternalOrder {
            reference: self.id.to_string(),
            name: self.name.clone(),
            checkout_id: self.checkout_id.as_deref().and_then(|c| CheckoutId::parse(c).ok()),
            financial,
            cancelled: self.cancelled,
            total: self.total,
            fulfillments: self.fulfillments.iter().map(ShopifyFulfillment::to_external).collect(),
        }
    }
}

#[async_trait::async_trait]
impl ExternalOrders for ShopifyAdmin {
    fn source(&self) -> &'static str {
        SOURCE
    }

    async fn order(&self, reference: &str) -> Result<Option<ExternalOrder>> {
        Ok(ShopifyAdmin::order(self, reference).await?.map(|o| o.to_external()))
    }
}

/// The processor name of orders paid on Shopify's checkout.
pub const SOURCE: &str = "shopify";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_carry_their_checkout_and_shipments() {
        let order = json!({
            "id": 7, "name": "#1007", "currency": "USD", "total_price": "10.00",
            "financial_status": "paid", "cancelled_at": null,
            "note_attributes": [{"name": "gift", "value": "no"},
                                {"name": CHECKOUT_ATTRIBUTE, "value": "chk_abc"}],
            "fulfillments": [
                {"id": 1, "status": "success", "tracking_company": "UPS",
                 "tracking_numbers": ["1Z"], "tracking_urls": ["https://ups.example/1Z"],
                 "line_items": [{"id": 9, "variant_id": 42, "quantity": 2}]},
                {"id": 2, "status": "cancelled", "tracking_number": "X"}
            ]
        });
        let ext = parse_order(&order).unwrap().to_external();
        assert_eq!(ext.checkout_id.unwrap().as_str(), "chk_abc");
        assert_eq!(ext.financial, ExternalFinancialStatus::Paid);
        assert_eq!(ext.total.minor(), 1000);
        let f = &ext.fulfillments[0];
        assert!(f.active);
        assert_eq!(f.tracking_number.as_deref(), Some("1Z"));
        assert_eq!(
            f.lines,
            vec![(VariantId::parse("gid://shopify/ProductVariant/42").unwrap(), 2)]
        );
        assert!(!ext.fulfillments[1].active);
        assert_eq!(ext.fulfillments[1].tracking_number.as_deref(), Some("X"));

        let mut unlinked = order.clone();
        unlinked["note_attributes"] = json!([{"name": CHECKOUT_ATTRIBUTE, "value": "not an id"}]);
        unlinked["financial_status"] = json!("authorized");
        let ext = parse_order(&unlinked).unwrap().to_external();
        assert_eq!(ext.checkout_id, None);
        assert_eq!(ext.financial, ExternalFinancialStatus::Unpaid);
    }
}
