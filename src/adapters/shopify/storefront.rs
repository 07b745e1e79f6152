//! The catalog and carts through Shopify's Storefront GraphQL API,
//! implementing the [`Catalog`] port.
//!
//! Semantics mirror the embedded catalog (`adapters::sqlite::catalog`) where
//! Shopify allows:
//! - Text is split into words (letters and digits) so nothing the caller
//!   types becomes Shopify search syntax; filters become search terms
//!   (`product_type:`, `tag:`, `variants.price:`, `available_for_sale:`).
//! - A product comes back whole with all its variants.
//! - The cursor is opaque: base64url of Shopify's `endCursor` bound to the
//!   query's fingerprint, so a cursor from another search is refused.
//! - Ids are Shopify GIDs, kept as they are (`gid://shopify/ProductVariant/1`).
//!   A variant's SKU is the merchant's SKU when it is a valid id and
//!   otherwise the variant's GID, so every variant has a unique SKU.
//! - The category is the product type, lower-cased.
//! - Stock is `quantityAvailable` when the token may read inventory;
//!   without it a variant for sale counts as [`UNKNOWN_STOCK`] units.
//!
//! Reads are cached for `cache_ttl` (bounded entries); cart mutations are
//! never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::client::{upstream, ShopifyClient};
use super::{parse_amount, ShopifyOptions};
use crate::domain::{
    CategoryNode, Currency, Error, ErrorCode, Money, Product, ProductId, Result, Sku, Variant,
    VariantId,
};
use crate::ports::{Catalog, SearchPage, SearchQuery};

/// Page size when the caller asks for 0 (as the embedded catalog).
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Largest page (as the embedded catalog).
pub const MAX_PAGE_SIZE: u32 = 50;
const MAX_TEXT_CHARS: usize = 500;
const MAX_CURSOR_CHARS: usize = 1200;
/// The count shown for a variant on sale whose inventory the token cannot
/// read: enough to pass the guardrail's stock check, and Shopify's own
/// checkout decides in the end.
pub const UNKNOWN_STOCK: u32 = 100;

const PRODUCT_FIELDS: &str =
    "fragment P on Product { id handle title description productType tags \
featuredImage { url } variants(first: 100) { nodes { id sku title availableForSale \
quantityAvailable requiresShipping price { amount currencyCode } } } }";

/// The catalog and cart adapter.
pub struct ShopifyStorefront {
    client: ShopifyClient,
    url: Url,
    currency: Currency,
    cache: Cache,
}

/// A small TTL cache of GraphQL answers, keyed by query and variables.
struct Cache {
    ttl: std::time::Duration,
    max: usize,
    map: Mutex<HashMap<String, (Instant, Value)>>,
}

impl Cache {
    fn get(&self, key: &str) -> Option<Value> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().ok()?;
        map.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: Value) {
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if map.len() >= self.max {
            // Still full of live entries: drop the oldest one.
            if let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key, (Instant::now(), value));
    }
}

/// A Shopify cart as the gateway uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyCart {
    pub id: String,
    /// Where the buyer pays, on Shopify's checkout.
    pub checkout_url: String,
    /// `(line id, variant id, quantity)`.
    pub lines: Vec<(String, VariantId, u32)>,
    pub total: Option<Money>,
    /// Non-fatal notes from Shopify (`warnings`), for the agent.
    pub warnings: Vec<String>,
}

/// A line to add: a variant and a quantity.
#[derive(Debug, Clone)]
pub struct CartLineInput {
    pub variant: VariantId,
    pub quantity: u32,
}

/// The buyer's identity for `cartBuyerIdentityUpdate`.
#[derive(Debug, Clone, Default)]
pub struct BuyerIdentity {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub country_code: Option<String>,
}

const CART_FIELDS: &str =
    "fragment C on Cart { id checkoutUrl cost { totalAmount { amount currencyCode } } \
lines(first: 100) { nodes { id quantity merchandise { ... on ProductVariant { id } } } } }";

impl ShopifyStorefront {
    pub fn new(options: &ShopifyOptions) -> Result<Self> {
        let client = ShopifyClient::new(
            "X-Shopify-Storefront-Access-Token",
            options.storefront_token.clone(),
            options.timeout,
            options.retry.clone(),
        )?;
        Ok(Self {
            client,
            url: options.storefront_url()?,
            currency: options.currency,
            cache: Cache {
                ttl: options.cache_ttl,
                max: options.cache_max_entries,
                map: Mutex::new(HashMap::new()),
            },
        })
    }

    /// A read, served from the cache when fresh.
    async fn read(&self, query: &str, variables: Value) -> Result<Value> {
        let key = format!("{query}\u{0}{variables}");
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let data = self.client.graphql(&self.url, query, variables).await?;
        self.cache.put(key, data.clone());
        Ok(data)
    }

    fn product_from(&self, node: &Value) -> Result<Product> {
        let s = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let id = ProductId::parse(&s("id")).map_err(|_| upstream("a product has an invalid id"))?;
        let mut variants = Vec::new();
        let nodes =
            node.pointer("/variants/nodes").and_then(Value::as_array).cloned().unwrap_or_default();
        for v in &nodes {
            variants.push(self.variant_from(v)?);
        }
        Ok(Product {
            id,
            handle: s("handle"),
            title: s("title"),
            description: s("description"),
            category: s("productType").trim().trim_matches('/').to_ascii_lowercase(),
            tags: node
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter().filter_map(Value::as_str).map(|t| t.to_ascii_lowercase()).collect()
                })
                .unwrap_or_default(),
            image_url: node
                .pointer("/featuredImage/url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            variants,
        })
    }

    fn variant_from(&self, v: &Value) -> Result<Variant> {
        let gid = v.get("id").and_then(Value::as_str).unwrap_or_default();
        let id = VariantId::parse(gid).map_err(|_| upstream("a variant has an invalid id"))?;
        let sku = v
            .get("sku")
            .and_then(Value::as_str)
            .and_then(|s| Sku::parse(s.trim()).ok())
            .map_or_else(|| Sku::parse(gid), Ok)
            .map_err(|_| upstream("a variant has an invalid id"))?;
        let code = v.pointer("/price/currencyCode").and_then(Value::as_str).unwrap_or_default();
        let currency =
            Currency::parse(code).map_err(|_| upstream("a price has no valid currency"))?;
        if currency != self.currency {
            return Err(upstream(format!(
                "a price is in {currency}, but the gateway is set up for {}",
                self.currency
            )));
        }
        let amount = v.pointer("/price/amount").and_then(Value::as_str).unwrap_or_default();
        let minor = parse_amount(amount, currency).map_err(|e| upstream(e.message()))?;
        let for_sale = v.get("availableForSale").and_then(Value::as_bool).unwrap_or(false);
        let stock = match v.get("quantityAvailable").and_then(Value::as_i64) {
            _ if !for_sale => 0,
            Some(q) => u32::try_from(q.max(0)).unwrap_or(u32::MAX),
            None => UNKNOWN_STOCK,
        };
        Ok(Variant {
            id,
            sku,
            title: v.get("title").and_then(Value::as_str).unwrap_or_default().to_owned(),
            price: Money::new(minor, currency),
            stock,
            requires_shipping: v.get("requiresShipping").and_then(Value::as_bool).unwrap_or(true),
        })
    }

    fn products_from(&self, nodes: Option<&Value>) -> Result<Vec<Product>> {
        nodes
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|n| self.product_from(n)).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Runs a cart mutation and reads its `cart`, `userErrors` and
    /// `warnings`. A user error fails the call with a code chosen from
    /// Shopify's error code; warnings travel with the cart.
    async fn cart_mutation(
        &self,
        field: &str,
        query: &str,
        variables: Value,
    ) -> Result<ShopifyCart> {
        let data = self.client.graphql(&self.url, query, variables).await?;
        let payload =
            data.get(field).ok_or_else(|| upstream(format!("{field} answered nothing")))?;
        if let Some(err) =
            payload.get("userErrors").and_then(Value::as_array).and_then(|a| a.first())
        {
            return Err(user_error(err));
        }
        let cart = payload
            .get("cart")
            .filter(|c| !c.is_null())
            .ok_or_else(|| upstream(format!("{field} returned no cart")))?;
        let mut out = self.cart_from(cart)?;
        out.warnings = payload
            .get("warnings")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.get("message").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(out)
    }

    fn cart_from(&self, cart: &Value) -> Result<ShopifyCart> {
        let id =
            cart.get("id").and_then(Value::as_str).ok_or_else(|| upstream("a cart has no id"))?;
        let checkout_url = cart
            .get("checkoutUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| upstream("a cart has no checkoutUrl"))?;
        Url::parse(checkout_url).map_err(|_| upstream("a cart's checkoutUrl is not a URL"))?;
        let mut lines = Vec::new();
        for l in cart.pointer("/lines/nodes").and_then(Value::as_array).cloned().unwrap_or_default()
        {
            let line_id = l.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let variant = l.pointer("/merchandise/id").and_then(Value::as_str).unwrap_or_default();
            let variant =
                VariantId::parse(variant).map_err(|_| upstream("a cart line has no variant"))?;
            let q = l.get("quantity").and_then(Value::as_u64).unwrap_or(0);
            lines.push((line_id, variant, u32::try_from(q).unwrap_or(u32::MAX)));
        }
        let total = match cart.pointer("/cost/totalAmount") {
            Some(t) => {
                let cur = Currency::parse(
                    t.get("currencyCode").and_then(Value::as_str).unwrap_or_default(),
                )
                .map_err(|_| upstream("a cart total has no valid currency"))?;
                let amount = t.get("amount").and_then(Value::as_str).unwrap_or_default();
                Some(Money::new(parse_amount(amount, cur).map_err(|e| upstream(e.message()))?, cur))
            }
            None => None,
        };
        Ok(ShopifyCart {
            id: id.to_owned(),
            checkout_url: checkout_url.to_owned(),
            lines,
            total,
            warnings: Vec::new(),
        })
    }

    /// `attributes` are cart attributes; Shopify copies them onto the order
    /// (`note_attributes`), which is how an order names its checkout.
    pub async fn cart_create(
        &self,
        lines: &[CartLineInput],
        buyer: Option<&BuyerIdentity>,
        attributes: &[(&str, String)],
    ) -> Result<ShopifyCart> {
        let q = format!("mutation($input: CartInput!) {{ cartCreate(input: $input) {{ cart {{ ...C }} userErrors {{ field message code }} warnings {{ code message }} }} }} {CART_FIELDS}");
        let mut input = json!({"lines": line_inputs(lines)});
        if !attributes.is_empty() {
            input["attributes"] =
                attributes.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        }
        if let Some(b) = buyer {
            input["buyerIdentity"] = buyer_json(b);
        }
        self.cart_mutation("cartCreate", &q, json!({"input": input})).await
    }

    pub async fn cart_lines_add(
        &self,
        cart_id: &str,
        lines: &[CartLineInput],
    ) -> Result<ShopifyCart> {
        let q = format!("mutation($cartId: ID!, $lines: [CartLineInput!]!) {{ cartLinesAdd(cartId: $cartId, lines: $lines) {{ cart {{ ...C }} userErrors {{ field message code }} warnings {{ code message }} }} }} {CART_FIELDS}");
        self.cart_mutation(
            "cartLinesAdd",
            &q,
            json!({"cartId": cart_id, "lines": line_inputs(lines)}),
        )
        .await
    }

    /// Sets quantities of existing lines: `(line id, quantity)`.
    pub async fn cart_lines_update(
        &self,
        cart_id: &str,
        lines: &[(String, u32)],
    ) -> Result<ShopifyCart> {
        let q = format!("mutation($cartId: ID!, $lines: [CartLineUpdateInput!]!) {{ cartLinesUpdate(cartId: $cartId, lines: $lines) {{ cart {{ ...C }} userErrors {{ field message code }} warnings {{ code message }} }} }} {CART_FIELDS}");
        let lines: Vec<Value> =
            lines.iter().map(|(id, qty)| json!({"id": id, "quantity": qty})).collect();
        self.cart_mutation("cartLinesUpdate", &q, json!({"cartId": cart_id, "lines": lines})).await
    }

    pub async fn cart_lines_remove(
        &self,
        cart_id: &str,
        line_ids: &[String],
    ) -> Result<ShopifyCart> {
        let q = format!("mutation($cartId: ID!, $lineIds: [ID!]!) {{ cartLinesRemove(cartId: $cartId, lineIds: $lineIds) {{ cart {{ ...C }} userErrors {{ field message code }} warnings {{ code message }} }} }} {CART_FIELDS}");
        self.cart_mutation("cartLinesRemove", &q, json!({"cartId": cart_id, "lineIds": line_ids}))
            .await
    }

    pub async fn cart_buyer_identity_update(
        &self,
        cart_id: &str,
        buyer: &BuyerIdentity,
    ) -> Result<ShopifyCart> {
        let q = format!("mutation($cartId: ID!, $buyerIdentity: CartBuyerIdentityInput!) {{ cartBuyerIdentityUpdate(cartId: $cartId, buyerIdentity: $buyerIdentity) {{ cart {{ ...C }} userErrors {{ field message code }} warnings {{ code message }} }} }} {CART_FIELDS}");
        self.cart_mutation(
            "cartBuyerIdentityUpdate",
            &q,
            json!({"cartId": cart_id, "buyerIdentity": buyer_json(buyer)}),
        )
        .await
    }
}

/// The cart attribute naming the gateway's checkout on the Shopify order.
pub const CHECKOUT_ATTRIBUTE: &str = "agentgate_checkout_id";

#[async_trait]
impl crate::ports::ExternalCheckout for ShopifyStorefront {
    async fn continue_url(&self, session: &crate::domain::CheckoutSession) -> Result<String> {
        let lines: Vec<CartLineInput> = session
            .line_items
            .iter()
            .map(|l| CartLineInput { variant: l.variant_id.clone(), quantity: l.quantity })
            .collect();
        let buyer = BuyerIdentity { email: session.buyer.email.clone(), ..Default::default() };
        let attributes = [(CHECKOUT_ATTRIBUTE, session.id.to_string())];
        let cart = self.cart_create(&lines, Some(&buyer), &attributes).await?;
        for w in &cart.warnings {
            tracing::info!(checkout = %session.id, warning = %w, "shopify cart warning");
        }
        Ok(cart.checkout_url)
    }
}

fn line_inputs(lines: &[CartLineInput]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| json!({"merchandiseId": l.variant.as_str(), "quantity": l.quantity}))
        .collect()
}

fn buyer_json(b: &BuyerIdentity) -> Value {
    let mut v = json!({});
    if let Some(e) = &b.email {
        v["email"] = json!(e);
    }
    if let Some(p) = &b.phone {
        v["phone"] = json!(p);
    }
    if let Some(c) = &b.country_code {
        v["countryCode"] = json!(c);
    }
    v
}

/// A `userErrors` entry as an error the agent can act on. The code decides
/// the error code; the message is Shopify's (it is written for buyers).
pub(crate) fn user_error(err: &Value) -> Error {
    let message =
        err.get("message").and_then(Value::as_str).unwrap_or("the store refused the change");
    let code = match err.get("code").and_then(Value::as_str).unwrap_or_default() {
        "MERCHANDISE_NOT_FOUND" | "INVALID_MERCHANDISE_LINE" | "LINE_NOT_FOUND" => {
            ErrorCode::NotFound
        }
        "MERCHANDISE_OUT_OF_STOCK" | "MERCHANDISE_NOT_ENOUGH_STOCK" => ErrorCode::InsufficientStock,
        "MAXIMUM_EXCEEDED" | "LESS_THAN" | "GREATER_THAN_OR_EQUAL_TO" => {
            ErrorCode::QuantityLimitExceeded
        }
        _ => ErrorCode::InvalidInput,
    };
    Error::new(code, format!("shopify: {message}"))
}

/// The Shopify search string for a query; words only, so nothing the caller
/// types is search syntax.
fn search_string(q: &SearchQuery, currency: Currency) -> Result<(String, bool)> {
    if q.text.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::invalid(format!(
            "search text must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let words: Vec<String> = q
        .text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= 64)
        .map(str::to_lowercase)
        .take(16)
        .collect();
    let has_text = !words.is_empty();
    let mut parts = words;
    let quoted = |s: &str| -> String {
        let clean: String = s.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
        format!("\"{clean}\"")
    };
    if let Some(cat) =
        q.category.as_deref().map(|c| c.trim().trim_matches('/')).filter(|c| !c.is_empty())
    {
        parts.push(format!("product_type:{}", quoted(cat)));
    }
    let mut tags: Vec<String> =
        q.tags.iter().map(|t| t.trim().to_ascii_lowercase()).filter(|t| !t.is_empty()).collect();
    tags.sort_unstable();
    tags.dedup();
    if tags.len() > 16 {
        return Err(Error::invalid("at most 16 tags can be required"));
    }
    for t in tags {
        parts.push(format!("tag:{}", quoted(&t)));
    }
    if let (Some(lo), Some(hi)) = (q.price_min, q.price_max) {
        if lo > hi {
            return Err(Error::invalid("price_min must not be greater than price_max"));
        }
    }
    if let Some(lo) = q.price_min {
        parts.push(format!("variants.price:>={}", Money::new(lo, currency).decimal()));
    }
    if let Some(hi) = q.price_max {
        parts.push(format!("variants.price:<={}", Money::new(hi, currency).decimal()));
    }
    if q.in_stock_only {
        parts.push("available_for_sale:true".into());
    }
    Ok((parts.join(" AND "), has_text))
}

fn cursor_check(search: &str, after: &str) -> String {
    let digest =
        Sha256::digest(json!(["agentgate.shopify.cursor", search, after]).to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_cursor(search: &str, after: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(json!({"v": 1, "a": after, "c": cursor_check(search, after)}).to_string())
}

fn decode_cursor(raw: &str, search: &str) -> Result<String> {
    let malformed = || Error::invalid("cursor is malformed; start the search again without one");
    if raw.len() > MAX_CURSOR_CHARS {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| malformed())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if v.get("v").and_then(Value::as_u64) != Some(1) {
        return Err(malformed());
    }
    let after = v.get("a").and_then(Value::as_str).ok_or_else(malformed)?;
    let check = v.get("c").and_then(Value::as_str).ok_or_else(malformed)?;
    if check != cursor_check(search, after) {
        return Err(Error::invalid(
            "cursor belongs to a different search; repeat the search that produced it",
        ));
    }
    Ok(after.to_owned())
}

#[async_trait]
impl Catalog for ShopifyStorefront {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let (search, has_text) = search_string(query, self.currency)?;
        let after = query.cursor.as_deref().map(|c| decode_cursor(c, &search)).transpose()?;
        let first = match query.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // Relevance for text, a stable id order for listings, so pages
        // never overlap or skip.
        let sort = if has_text { "RELEVANCE" } else { "ID" };
        let q = format!(
            "query($first: Int!, $after: String, $query: String) {{ products(first: $first, after: $after, query: $query, sortKey: {sort}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ ...P }} }} }} {PRODUCT_FIELDS}"
        );
        let search_var = if search.is_empty() { Value::Null } else { json!(search) };
        let data =
            self.read(&q, json!({"first": first, "after": after, "query": search_var})).await?;
        let conn = data.get("products").ok_or_else(|| upstream("products answered nothing"))?;
        let products = self.products_from(conn.get("nodes"))?;
        let more = conn.pointer("/pageInfo/hasNextPage").and_then(Value::as_bool).unwrap_or(false);
        let next_cursor = match conn.pointer("/pageInfo/endCursor").and_then(Value::as_str) {
            Some(end) if more => Some(encode_cursor(&search, end)),
            _ => None,
        };
        Ok(SearchPage { products, next_cursor })
    }

    async fn product(&self, id: &ProductId) -> Result<Option<Product>> {
        if !id.as_str().starts_with("gid://shopify/Product/") {
            return Ok(None);
        }
        let q = format!("query($id: ID!) {{ product(id: $id) {{ ...P }} }} {PRODUCT_FIELDS}");
        let data = self.read(&q, json!({"id": id.as_str()})).await?;
        match data.get("product") {
            Some(p) if !p.is_null() => Ok(Some(self.product_from(p)?)),
            _ => Ok(None),
        }
    }

    async fn product_by_handle(&self, handle: &str) -> Result<Option<Product>> {
        let q = format!(
            "query($handle: String!) {{ product(handle: $handle) {{ ...P }} }} {PRODUCT_FIELDS}"
        );
        let data = self.read(&q, json!({"handle": handle})).await?;
        match data.get("product") {
            Some(p) if !p.is_null() => Ok(Some(self.product_from(p)?)),
            _ => Ok(None),
        }
    }

    async fn variant(&self, id: &VariantId) -> Result<Option<(Product, VariantId)>> {
        if !id.as_str().starts_with("gid://shopify/ProductVariant/") {
            return Ok(None);
        }
        let q = format!("query($id: ID!) {{ node(id: $id) {{ ... on ProductVariant {{ id product {{ ...P }} }} }} }} {PRODUCT_FIELDS}");
        let data = self.read(&q, json!({"id": id.as_str()})).await?;
        match data.pointer("/node/product") {
            Some(p) if !p.is_null() => {
                let product = self.product_from(p)?;
                Ok(product.variant(id).is_some().then(|| (product, id.clone())))
            }
            _ => Ok(None),
        }
    }

    async fn by_sku(&self, sku: &Sku) -> Result<Option<(Product, VariantId)>> {
        if sku.as_str().starts_with("gid://shopify/ProductVariant/") {
            return self.variant(&VariantId::parse(sku.as_str())?).await;
        }
        let q = format!("query($query: String) {{ products(first: 5, query: $query) {{ nodes {{ ...P }} }} }} {PRODUCT_FIELDS}");
        let data = self.read(&q, json!({"query": format!("sku:\"{}\"", sku.as_str())})).await?;
        for p in self.products_from(data.pointer("/products/nodes"))? {
            if let Some(v) = p.variants.iter().find(|v| &v.sku == sku) {
                let id = v.id.clone();
                return Ok(Some((p, id)));
            }
        }
        Ok(None)
    }

    async fn categories(&self) -> Result<Vec<CategoryNode>> {
        // Shopify lists product types without counts; the tree has the
        // paths, with counts of zero.
        let q = "query { productTypes(first: 250) { nodes } }";
        let data = self.read(q, json!({})).await?;
        let paths: Vec<(String, u64)> = data
            .pointer("/productTypes/nodes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|t| t.trim().trim_matches('/').to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .map(|t| (t, 0))
                    .collect()
            })
            .unwrap_or_default();
        Ok(CategoryNode::build_tree(&paths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_strings_carry_no_caller_syntax() {
        let q = SearchQuery {
            text: "red OR* \"shoes\" tag:x".into(),
            category: Some("Apparel/Shoes\"".into()),
            tags: vec!["Sale".into(), "sale".into()],
            price_min: Some(1000),
            price_max: Some(2550),
            in_stock_only: true,
            ..Default::default()
        };
        let (s, text) = search_string(&q, Currency::usd()).unwrap();
        assert!(text);
        assert_eq!(
            s,
            "red AND or AND shoes AND tag AND x AND product_type:\"Apparel/Shoes\" AND tag:\"sale\" AND variants.price:>=10.00 AND variants.price:<=25.50 AND available_for_sale:true"
        );
        let bad = SearchQuery { price_min: Some(5), price_max: Some(4), ..Default::default() };
        assert!(search_string(&bad, Currency::usd()).is_err());
    }

    #[test]
    fn cursors_are_bound_to_their_search() {
        let c = encode_cursor("shoes", "eyJsYXN0X2lkIjo3fQ==");
        assert_eq!(decode_cursor(&c, "shoes").unwrap(), "eyJsYXN0X2lkIjo3fQ==");
        assert_eq!(decode_cursor(&c, "hats").unwrap_err().code(), ErrorCode::InvalidInput);
        assert!(decode_cursor("!!!", "shoes").is_err());
    }

    #[test]
    fn user_errors_pick_a_code() {
        let cases = [
            ("MERCHANDISE_NOT_FOUND", ErrorCode::NotFound),
            ("MERCHANDISE_NOT_ENOUGH_STOCK", ErrorCode::InsufficientStock),
            ("MAXIMUM_EXCEEDED", ErrorCode::QuantityLimitExceeded),
            ("INVALID", ErrorCode::InvalidInput),
        ];
        for (code, want) in cases {
            let e = user_error(&json!({"code": code, "message": "m", "field": ["lines"]}));
            assert_eq!(e.code(), want, "{code}");
        }
    }
}
