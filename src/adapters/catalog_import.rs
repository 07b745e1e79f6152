//! Catalog import: a merchant's product list, read from JSON or CSV and
//! turned into domain [`Product`]s, plus a deterministic synthetic catalog
//! for benches and load tests.
//!
//! This module owns the import file formats and every rule a record must
//! pass before it reaches the catalog. It knows nothing of SQLite: the
//! embedded catalog (`adapters::sqlite::catalog`) stores what this returns.
//!
//! # JSON
//!
//! One object with an optional default `currency` (ISO 4217, `USD` when
//! absent) and a `products` array. Prices are integer minor units (cents
//! for USD), never decimals, so no amount passes through floating point.
//!
//! ```json
//! { "currency": "USD",
//!   "products": [
//!     { "id": "p-linen-shirt", "handle": "linen-shirt", "title": "Linen Shirt",
//!       "description": "…", "category": "apparel/shirts", "tags": ["linen"],
//!       "image_url": null,
//!       "variants": [
//!         { "id": "v-linen-shirt-m", "sku": "LIN-SHIRT-M", "title": "M",
//!           "price": 5900, "stock": 12, "requires_shipping": true } ] } ] }
//! ```
//!
//! A variant may name its own `currency`; `stock` defaults to 0 and
//! `requires_shipping` to `true`. Unknown fields are refused so that a typo
//! (`"pirce"`) fails loudly instead of importing a free product.
//!
//! # CSV
//!
//! One row per variant, with a header row naming the columns `product_id,
//! handle, title, description, category, tags, variant_id, sku,
//! variant_title, price, currency, stock, requires_shipping` and an optional
//! `image_url`. Tags are `;`-separated. Rows of one product share its
//! `product_id`; their product columns must agree (or be left empty on the
//! later rows).
//!
//! # Rules
//!
//! Ids and SKUs go through their domain constructors; handles are lowercase
//! URL-safe slugs; category paths are lower-cased; titles are non-empty;
//! prices are not negative; all the prices of one import share one currency
//! (price filters compare minor units, which only means something within
//! one currency); and product ids, handles, variant ids and SKUs are unique
//! across the import. An error names the offending record (JSON) or line
//! (CSV).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::domain::{Currency, Error, Money, Product, ProductId, Result, Sku, Variant, VariantId};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
pub const MAX_HANDLE_CHARS: usize = 128;
pub const MAX_CATEGORY_CHARS: usize = 200;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_TAGS: usize = 32;
pub const MAX_VARIANTS: usize = 100;
pub const MAX_URL_CHARS: usize = 2_048;

/// The import file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogFormat {
    Json,
    Csv,
}

impl CatalogFormat {
    /// The format a file's extension announces, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }
}

/// Parses an import file's bytes in the given format.
pub fn parse(bytes: &[u8], format: CatalogFormat) -> Result<Vec<Product>> {
    match format {
        CatalogFormat::Json => from_json(bytes),
        CatalogFormat::Csv => from_csv(bytes),
    }
}

/// The top level of a JSON catalog file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// The currency of variants that do not name one; `USD` when absent.
    #[serde(default)]
    pub currency: Option<String>,
    pub products: Vec<ProductRecord>,
}

/// One product as written in an import file, before any check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRecord {
    pub id: String,
    pub handle: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    pub variants: Vec<VariantRecord>,
}

/// One variant as written in an import file, before any check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantRecord {
    pub id: String,
    pub sku: String,
    pub title: String,
    /// Minor units. Signed on the wire so a negative price is reported as
    /// such rather than as a type error.
    pub price: i64,
    /// Falls back to the file's default currency.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub stock: i64,
    #[serde(default = "default_requires_shipping")]
    pub requires_shipping: bool,
}

fn default_requires_shipping() -> bool {
    true
}

/// Re-labels an error with where it happened, keeping its code.
fn locate(err: Error, place: &str) -> Error {
    Error::new(err.code(), format!("{place}: {}", err.message()))
}

impl TryFrom<VariantRecord> for Variant {
    type Error = Error;

    fn try_from(r: VariantRecord) -> Result<Variant> {
        let id = VariantId::parse(r.id.trim())?;
        let sku = Sku::parse(r.sku.trim())?;
        let title = r.title.trim().to_owned();
        let code = r.currency.as_deref().ok_or_else(|| Error::invalid("currency is missing"))?;
        let currency = Currency::parse(code)?;
        if r.price < 0 {
            return Err(Error::invalid(format!("price {} must not be negative", r.price)));
        }
        let stock = u32::try_from(r.stock).map_err(|_| {
            Error::invalid(format!("stock {} must be between 0 and {}", r.stock, u32::MAX))
        })?;
        let variant = Variant {
            id,
            sku,
            title,
            price: Money::new(r.price, currency),
            stock,
            requires_shipping: r.requires_shipping,
        };
        check_variant(&variant)?;
        Ok(variant)
    }
}

impl TryFrom<ProductRecord> for Product {
    type Error = Error;

    fn try_from(r: ProductRecord) -> Result<Product> {
        let id = ProductId::parse(r.id.trim())?;
        let mut variants = Vec::with_capacity(r.variants.len());
        for (i, v) in r.variants.into_iter().enumerate() {
            let place = format!("variant #{} ({:?})", i + 1, v.sku);
            variants.push(Variant::try_from(v).map_err(|e| locate(e, &place))?);
        }
        let product = Product {
            id,
            handle: r.handle.trim().to_owned(),
            title: r.title.trim().to_owned(),
            description: r.description.trim().to_owned(),
            category: normalise_category(&r.category),
            tags: normalise_tags(r.tags.iter().map(String::as_str)),
            image_url: r.image_url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()),
            variants,
        };
        check_product(&product)?;
        Ok(product)
    }
}

/// `" Apparel / Shoes/ "` becomes `"apparel/shoes"`. A category path is an
/// identifier that agents filter on, so one spelling per path keeps
/// `Apparel` and `apparel` from splitting the tree. Empty segments are kept
/// (as empty strings) so that [`check_product`] can refuse `a//b`.
fn normalise_category(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches('/');
    let parts: Vec<&str> = trimmed.split('/').map(str::trim).collect();
    parts.join("/").to_ascii_lowercase()
}

/// Trims tags, drops empty ones and repeats (ASCII case-insensitively, the
/// way the catalog compares tags), keeping the merchant's order.
fn normalise_tags<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw.map(str::trim).filter(|t| !t.is_empty()) {
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.to_owned());
        }
    }
    tags
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn check_variant(v: &Variant) -> Result<()> {
    if v.title.is_empty() {
        return Err(Error::invalid("variant title must not be empty"));
    }
    if v.title.chars().count() > MAX_TITLE_CHARS || has_control(&v.title) {
        return Err(Error::invalid(format!(
            "variant title must be at most {MAX_TITLE_CHARS} printable characters"
        )));
    }
    if v.price.is_negative() {
        return Err(Error::invalid(format!("price {} must not be negative", v.price.minor())));
    }
    Ok(())
}

/// The rules every product must pass, whatever it was read from. The SQLite
/// catalog runs them again on import, since products can also be built in
/// code (the synthetic generator, a future admin tool).
pub fn check_product(p: &Product) -> Result<()> {
    let handle_ok = !p.handle.is_empty()
        && p.handle.len() <= MAX_HANDLE_CHARS
        && p.handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !handle_ok {
        return Err(Error::invalid(format!(
            "handle {:?} must be 1 to {MAX_HANDLE_CHARS} characters of a-z, 0-9, - and _",
            p.handle
        )));
    }
    if p.title.trim().is_empty() {
        return Err(Error::invalid("title must not be empty"));
    }
    if p.title.chars().count() > MAX_TITLE_CHARS || has_control(&p.title) {
        return Err(Error::invalid(format!(
            "title must be at most {MAX_TITLE_CHARS} printable characters"
        )));
    }
    // Descriptions may hold line breaks, so only their length is bounded.
    if p.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if p.category.is_empty()
        || p.category.chars().count() > MAX_CATEGORY_CHARS
        || has_control(&p.category)
        || p.category.bytes().any(|b| b.is_ascii_uppercase())
        || p.category.split('/').any(|s| s.trim().is_empty() || s.trim() != s)
    {
        return Err(Error::invalid(format!(
            "category {:?} must be a lower-case path like \"apparel/shoes\" of non-empty parts, at most {MAX_CATEGORY_CHARS} characters",
            p.category
        )));
    }
    if p.tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!("at most {MAX_TAGS} tags are allowed")));
    }
    for tag in &p.tags {
        if tag.trim().is_empty()
            || tag.trim() != tag
            || tag.chars().count() > MAX_TAG_CHARS
            || has_control(tag)
        {
            return Err(Error::invalid(format!(
                "tag {tag:?} must be 1 to {MAX_TAG_CHARS} printable characters"
            )));
        }
    }
    if let Some(url) = &p.image_url {
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok
            || url.len() > MAX_URL_CHARS
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid(format!("image_url {url:?} must be an http(s) URL")));
        }
    }
    if p.variants.is_empty() || p.variants.len() > MAX_VARIANTS {
        return Err(Error::invalid(format!("a product needs 1 to {MAX_VARIANTS} variants")));
    }
    for (i, v) in p.variants.iter().enumerate() {
        check_variant(v)
            .map_err(|e| locate(e, &format!("variant #{} ({:?})", i + 1, v.sku.as_str())))?;
    }
    Ok(())
}

/// Checks the rules that span records: unique product ids, handles, variant
/// ids and SKUs, and one currency. `place(product, variant)` names a record
/// for the error message, so JSON errors can say "product #4" and CSV
/// errors "line 12".
fn check_across(
    products: &[Product],
    place: &dyn Fn(usize, Option<usize>) -> String,
) -> Result<()> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(products.len());
    let mut handles: HashMap<&str, usize> = HashMap::with_capacity(products.len());
    let mut variant_ids: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut skus: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut currency: Option<Currency> = None;
    for (pi, p) in products.iter().enumerate() {
        if let Some(first) = ids.insert(p.id.as_str(), pi) {
            return Err(Error::invalid(format!(
                "{}: duplicate product id {:?} (also at {})",
                place(pi, None),
                p.id.as_str(),
                place(first, None)
            )));
        }
        if let Some(first) = handles.insert(p.handle.as_str(), pi) {
            return Err(Error::invalid(format!(
                "{}: duplicate handle {:?} (also at {})",
                place(pi, None),
                p.handle,
                place(first, None)
            )));
        }
        for (vi, v) in p.variants.iter().enumerate() {
            if let Some((fp, fv)) = variant_ids.insert(v.id.as_str(), (pi, vi)) {
                return Err(Error::invalid(format!(
                    "{}: duplicate variant id {:?} (also at {})",
                    place(pi, Some(vi)),
                    v.id.as_str(),
                    place(fp, Some(fv))
                )));
            }
            if let Some((fp, fv)) = skus.insert(v.sku.as_str(), (pi, vi)) {
                return Err(Error::invalid(format!(
                    "{}: duplicate sku {:?} (also at {})",
                    place(pi, Some(vi)),
                    v.sku.as_str(),
                    place(fp, Some(fv))
                )));
            }
            let c = v.price.currency();
            match currency {
                None => currency = Some(c),
                Some(first) if first != c => {
                    return Err(Error::invalid(format!(
                        "{}: currency {c} differs from {first} used before; one import has one currency",
                        place(pi, Some(vi))
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn default_place(products: &[Product]) -> impl Fn(usize, Option<usize>) -> String + '_ {
    move |pi, vi| {
        let p = &products[pi];
        match vi {
            None => format!("product #{} ({:?})", pi + 1, p.id.as_str()),
            Some(vi) => format!(
                "product #{} ({:?}) variant #{} ({:?})",
                pi + 1,
                p.id.as_str(),
                vi + 1,
                p.variants[vi].sku.as_str()
            ),
        }
    }
}

/// Checks a whole catalog built in code: every product's own rules and the
/// rules across products.
pub fn validate(products: &[Product]) -> Result<()> {
    let place = default_place(products);
    for (i, p) in products.iter().enumerate() {
        check_product(p).map_err(|e| locate(e, &place(i, None)))?;
    }
    check_across(products, &place)
}

/// Reads the JSON catalog format (see the module docs).
pub fn from_json(bytes: &[u8]) -> Result<Vec<Product>> {
    let file: CatalogFile =
        serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("catalog JSON: {e}")))?;
    let default_currency = file.currency.unwrap_or_else(|| "USD".to_owned());
    let mut products = Vec::with_capacity(file.products.len());
    for (i, mut record) in file.products.into_iter().enumerate() {
        let place = format!("product #{} ({:?})", i + 1, record.id);
        for v in &mut record.variants {
            v.currency.get_or_insert_with(|| default_currency.clone());
        }
        products.push(Product::try_from(record).map_err(|e| locate(e, &place))?);
    }
    check_across(&products, &default_place(&products))?;
    Ok(products)
}

/// One CSV row: a variant with its product's columns repeated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    product_id: String,
    handle: String,
    title: String,
    #[serde(default)]
    description: String,
    category: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    image_url: String,
    variant_id: String,
    sku: String,
    variant_title: String,
    // Numbers and flags arrive as text so that a bad value is reported in
    // our words, with the line, instead of as a deserializer type error.
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    stock: String,
    #[serde(default)]
    requires_shipping: String,
}

fn parse_int(field: &str, raw: &str) -> Result<i64> {
    raw.trim().parse::<i64>().map_err(|_| {
        Error::invalid(format!("{field} {raw:?} must be a whole number (minor units for prices)"))
    })
}

fn parse_flag(raw: &str) -> Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(Error::invalid(format!("requires_shipping {other:?} must be true or false"))),
    }
}

impl CsvRow {
    fn variant(&self) -> Result<VariantRecord> {
        let currency = self.currency.trim();
        Ok(VariantRecord {
            id: self.variant_id.clone(),
            sku: self.sku.clone(),
            title: self.variant_title.clone(),
            price: parse_int("price", &self.price)?,
            currency: Some(if currency.is_empty() {
                "USD".to_owned()
            } else {
                currency.to_owned()
            }),
            stock: if self.stock.trim().is_empty() { 0 } else { parse_int("stock", &self.stock)? },
            requires_shipping: parse_flag(&self.requires_shipping)?,
        })
    }
}

/// A product being assembled from its CSV rows.
struct CsvProduct {
    record: ProductRecord,
    /// The line of the row that introduced the product.
    line: u64,
    /// The line of each variant's row.
    variant_lines: Vec<u64>,
}

/// Later rows of a product may repeat its columns or leave them empty, but
/// not contradict the first row.
fn agree(field: &str, first: &str, later: &str, first_line: u64) -> Result<()> {
    let later = later.trim();
    if later.is_empty() || later == first.trim() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{field} {later:?} differs from {:?} given for this product on line {first_line}",
        first.trim()
    )))
}

/// Reads the CSV catalog format (see the module docs).
pub fn from_csv(bytes: &[u8]) -> Result<Vec<Product>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let headers =
        reader.headers().map_err(|e| Error::invalid(format!("catalog CSV header: {e}")))?.clone();
    let mut order: Vec<CsvProduct> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::invalid(format!("catalog CSV: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let at = |e: Error| locate(e, &format!("line {line}"));
        let row: CsvRow =
            record.deserialize(Some(&headers)).map_err(|e| at(Error::invalid(format!("{e}"))))?;
        let variant = row.variant().map_err(at)?;
        // Check the variant here, where its line is known; the product's
        // conversion below would only know its position in the product.
        Variant::try_from(variant.clone()).map_err(at)?;
        let key = row.product_id.trim().to_owned();
        match by_id.get(&key) {
            Some(&i) => {
                let p = &mut order[i];
                let first = &p.record;
                agree("handle", &first.handle, &row.handle, p.line).map_err(at)?;
                agree("title", &first.title, &row.title, p.line).map_err(at)?;
                agree("description", &first.description, &row.description, p.line).map_err(at)?;
                agree("category", &first.category, &row.category, p.line).map_err(at)?;
                let tags = normalise_tags(row.tags.split(';')).join(";");
                let first_tags = normalise_tags(first.tags.iter().map(String::as_str)).join(";");
                agree("tags", &first_tags, &tags, p.line).map_err(at)?;
                agree(
                    "image_url",
                    first.image_url.as_deref().unwrap_or(""),
                    &row.image_url,
                    p.line,
                )
                .map_err(at)?;
                p.record.variants.push(variant);
                p.variant_lines.push(line);
            }
            None => {
                by_id.insert(key, order.len());
                let image_url = Some(row.image_url.trim().to_owned()).filter(|u| !u.is_empty());
                order.push(CsvProduct {
                    record: ProductRecord {
                        id: row.product_id,
                        handle: row.handle,
                        title: row.title,
                        description: row.description,
                        category: row.category,
                        tags: row.tags.split(';').map(|t| t.trim().to_owned()).collect(),
                        image_url,
                        variants: vec![variant],
                    },
                    line,
                    variant_lines: vec![line],
                });
            }
        }
    }
    let mut products = Vec::with_capacity(order.len());
    let mut lines = Vec::with_capacity(order.len());
    for p in order {
        let place = format!("line {} (product {:?})", p.line, p.record.id.trim());
        products.push(Product::try_from(p.record).map_err(|e| locate(e, &place))?);
        lines.push((p.line, p.variant_lines));
    }
    let place = |pi: usize, vi: Option<usize>| {
        let (line, variant_lines) = &lines[pi];
        let line = vi.and_then(|vi| variant_lines.get(vi)).unwrap_or(line);
        format!("line {line}")
    };
    check_across(&products, &place)?;
    Ok(products)
}

/// xorshift64* (Vigna, 2016): a few lines, fast, and fully determined by the
/// seed. The synthetic catalog only needs variety, not statistical quality,
/// and a fixed sequence means benches on two machines measure the same data.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // The state must never be zero (it would stay zero); mixing in a
        // constant also spreads small seeds like 0, 1, 2 apart.
        let s = seed ^ 0x9E37_79B9_7F4A_7C15;
        Self(if s == 0 { 0x9E37_79B9_7F4A_7C15 } else { s })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`). The modulo bias is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A product family for the synthetic catalog: where it sits, what it is
/// called, what it costs and how it varies.
struct Family {
    category: &'static str,
    nouns: &'static [&'static str],
    materials: &'static [&'static str],
    /// Price range in cents.
    price: (i64, i64),
    options: &'static [&'static str],
    tags: &'static [&'static str],
    feature: &'static str,
    shipping: bool,
}

const SIZES: &[&str] = &["XS", "S", "M", "L", "XL"];
const SHOE_SIZES: &[&str] = &["7", "8", "9", "10", "11", "12"];
const COLOURS: &[&str] = &["Black", "White", "Navy", "Olive", "Sand", "Rust", "Slate", "Forest"];
const BED_SIZES: &[&str] = &["Twin", "Full", "Queen", "King"];
const FORMATS: &[&str] = &["Paperback", "Hardcover", "E-book"];
const AMOUNTS: &[&str] = &["$25", "$50", "$100"];

const FAMILIES: &[Family] = &[
    Family {
        category: "apparel/shirts",
        nouns: &["Shirt", "Tee", "Henley", "Polo", "Flannel", "Overshirt"],
        materials: &["Cotton", "Linen", "Merino", "Oxford", "Chambray", "Jersey"],
        price: (1_500, 9_500),
        options: SIZES,
        tags: &["cotton", "casual", "breathable", "layering", "organic"],
        feature: "It is cut for an easy fit and softens with every wash",
        shipping: true,
    },
    Family {
        category: "apparel/shoes",
        nouns: &["Sneaker", "Runner", "Loafer", "Chelsea Boot", "Sandal", "Trail Shoe"],
        materials: &["Leather", "Suede", "Canvas", "Knit", "Recycled Mesh"],
        price: (4_000, 24_000),
        options: SHOE_SIZES,
        tags: &["running", "waterproof", "vegan", "leather", "everyday"],
        feature: "A cushioned footbed and a grippy rubber sole carry it through long days",
        shipping: true,
    },
    Family {
        category: "apparel/outerwear",
        nouns: &["Jacket", "Parka", "Vest", "Raincoat", "Fleece", "Anorak"],
        materials: &["Waxed Cotton", "Down", "Softshell", "Nylon", "Wool"],
        price: (6_000, 38_000),
        options: SIZES,
        tags: &["waterproof", "insulated", "packable", "windproof", "winter"],
        feature: "Taped seams and a storm flap keep the weather on the outside",
        shipping: true,
    },
    Family {
        category: "home/kitchen",
        nouns: &[
            "Skillet",
            "Chef Knife",
            "Kettle",
            "Mixing Bowls",
            "Cutting Board",
            "French Press",
        ],
        materials: &["Cast Iron", "Stainless Steel", "Ceramic", "Walnut", "Bamboo", "Enamel"],
        price: (1_200, 26_000),
        options: COLOURS,
        tags: &["cookware", "dishwasher-safe", "gift", "induction", "handmade"],
        feature: "It heats evenly and cleans up in a minute",
        shipping: true,
    },
    Family {
        category: "home/bedding",
        nouns: &["Duvet Cover", "Sheet Set", "Pillow", "Throw Blanket", "Quilt"],
        materials: &["Percale", "Sateen", "Linen", "Flannel", "Bamboo Lyocell"],
        price: (3_000, 32_000),
        options: BED_SIZES,
        tags: &["bedroom", "organic", "hypoallergenic", "cooling", "gift"],
        feature: "Breathable weave keeps it cool in summer and cosy in winter",
        shipping: true,
    },
    Family {
        category: "electronics/audio",
        nouns: &["Headphones", "Earbuds", "Bluetooth Speaker", "Soundbar", "Turntable"],
        materials: &["Wireless", "Noise-Cancelling", "Studio", "Portable", "Hi-Fi"],
        price: (2_500, 59_900),
        options: COLOURS,
        tags: &["wireless", "bluetooth", "noise-cancelling", "portable", "gift"],
        feature: "Balanced sound and a battery that lasts the whole trip",
        shipping: true,
    },
    Family {
        category: "electronics/accessories",
        nouns: &["Charger", "USB-C Cable", "Power Bank", "Laptop Stand", "Phone Case", "Keyboard"],
        materials: &["Aluminium", "Braided", "Compact", "Magnetic", "Fast-Charging"],
        price: (900, 15_000),
        options: COLOURS,
        tags: &["usb-c", "travel", "fast-charging", "desk", "gift"],
        feature: "Small enough for a pocket and tough enough for daily use",
        shipping: true,
    },
    Family {
        category: "outdoors/camping",
        nouns: &["Tent", "Sleeping Bag", "Camp Stove", "Lantern", "Hammock", "Camp Chair"],
        materials: &["Ultralight", "Two-Person", "Four-Season", "Ripstop", "Solar"],
        price: (2_000, 49_000),
        options: COLOURS,
        tags: &["camping", "ultralight", "backpacking", "waterproof", "family"],
        feature: "It packs down small and sets up in minutes",
        shipping: true,
    },
    Family {
        category: "outdoors/hiking",
        nouns: &["Daypack", "Trekking Poles", "Water Filter", "Headlamp", "Gaiters"],
        materials: &["Carbon", "Lightweight", "Rechargeable", "Trail", "Alpine"],
        price: (1_500, 18_000),
        options: COLOURS,
        tags: &["hiking", "lightweight", "trail", "backpacking", "rechargeable"],
        feature: "Trail-tested and light enough to forget it is there",
        shipping: true,
    },
    Family {
        category: "books/fiction",
        nouns: &["Novel", "Mystery", "Thriller", "Short Stories", "Saga"],
        materials: &["Coastal", "Midnight", "Northern", "Forgotten", "Summer"],
        price: (499, 3_200),
        options: FORMATS,
        tags: &["fiction", "bestseller", "book-club", "mystery", "paperback"],
        feature: "A page-turner readers finish in a weekend",
        shipping: true,
    },
    Family {
        category: "beauty/skincare",
        nouns: &["Moisturizer", "Serum", "Cleanser", "Sunscreen", "Face Oil", "Lip Balm"],
        materials: &["Hydrating", "Vitamin C", "Gentle", "Mineral", "Rosehip"],
        price: (600, 8_500),
        options: &["30 ml", "50 ml", "100 ml"],
        tags: &["vegan", "fragrance-free", "spf", "sensitive-skin", "cruelty-free"],
        feature: "Dermatologist tested and gentle enough for every day",
        shipping: true,
    },
    Family {
        category: "toys/games",
        nouns: &["Puzzle", "Board Game", "Building Set", "Card Game", "Plush Toy"],
        materials: &["1000-Piece", "Family", "Cooperative", "Wooden", "Strategy"],
        price: (800, 12_000),
        options: &["Standard", "Deluxe"],
        tags: &["family", "kids", "gift", "strategy", "wooden"],
        feature: "Easy to learn, and it gets better with every round",
        shipping: true,
    },
    Family {
        category: "gift-cards",
        nouns: &["Gift Card", "E-Gift Card"],
        materials: &["Digital", "Birthday", "Holiday", "Thank-You"],
        price: (2_500, 2_500),
        options: AMOUNTS,
        tags: &["gift", "digital", "instant-delivery"],
        feature: "Delivered by email within minutes and never expires",
        shipping: false,
    },
];

const BRANDS: &[&str] = &[
    "Northwind",
    "Fernhill",
    "Bluecrest",
    "Halden",
    "Kestrel",
    "Marlowe",
    "Oakridge",
    "Riverstone",
    "Saltmarsh",
    "Tidewater",
    "Westvale",
    "Yarrow",
    "Zephyr",
    "Alder",
    "Birchwood",
    "Copperline",
    "Driftwood",
    "Emberly",
    "Foxglove",
    "Granite Peak",
    "Harbor Lane",
    "Ironbark",
    "Juniper",
    "Larkspur",
    "Meadowlark",
    "Nettle",
    "Orchard",
    "Quill",
    "Redwood",
    "Sable",
    "Thistle",
    "Wren",
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Everyday",
    "Heritage",
    "Compact",
    "Premium",
    "Essential",
    "Weekend",
    "Urban",
    "Coastal",
    "Studio",
    "Modern",
    "Vintage",
    "Signature",
    "Field",
    "Original",
    "Explorer",
];

const EXTRA_TAGS: &[&str] = &["new", "sale", "bestseller", "eco", "limited"];

/// Turns a title into a handle-safe slug.
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// `n` realistic-looking products, the same ones for the same `seed`.
///
/// Products spread over thirteen families (apparel, home, electronics,
/// outdoors, books, beauty, toys, gift cards) with 32 brands, so a brand or
/// noun search matches a few percent of the catalog, much like a real shop.
/// About one product in twenty is sold out, one variant in ten is low on
/// stock, and gift cards are digital. Ids are `syn-<n>` and SKUs
/// `SYN<n>-<k>`, so they never collide with a hand-written catalog.
pub fn synthetic_catalog(n: usize, seed: u64) -> Vec<Product> {
    let mut rng = XorShift::new(seed);
    let usd = Currency::usd();
    let mut products = Vec::with_capacity(n);
    for i in 0..n {
        let family = &FAMILIES[rng.below(FAMILIES.len())];
        let brand = rng.pick(BRANDS);
        let adjective = rng.pick(ADJECTIVES);
        let material = rng.pick(family.materials);
        let noun = rng.pick(family.nouns);
        let title = format!("{brand} {adjective} {material} {noun}");
        let description = format!(
            "The {} {} from {brand}, made in {}. {}. Part of the {} collection.",
            adjective.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase(),
            family.feature,
            family.category.replace('/', " "),
        );
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..2 + rng.below(3) {
            let tag = rng.pick(family.tags).to_owned();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if rng.chance(30) {
            tags.push(rng.pick(EXTRA_TAGS).to_owned());
        }
        let (lo, hi) = family.price;
        // Prices end in 99 or 00 cents, like shelf prices.
        let base = lo + (rng.next() % ((hi - lo) as u64 + 1)) as i64;
        let base = (base / 100) * 100 + if rng.chance(70) { 99 } else { 0 };
        let sold_out = rng.chance(5);
        let count = 1 + rng.below(family.options.len().min(4));
        let start = rng.below(family.options.len());
        let mut variants = Vec::with_capacity(count);
        for k in 0..count {
            let option = family.options[(start + k) % family.options.len()];
            let price = match option {
                "$25" => 2_500,
                "$50" => 5_000,
                "$100" => 10_000,
                "Hardcover" | "Deluxe" | "100 ml" | "King" => base + base / 3,
                "E-book" => (base / 2).max(299),
                _ => base,
            };
            let stock = if sold_out {
                0
            } else if rng.chance(10) {
                1 + rng.below(5) as u32
            } else {
                6 + rng.below(245) as u32
            };
            // Ids and SKUs are built from digits and fixed prefixes, which
            // the id constructors always accept, so `expect` cannot fire.
            variants.push(Variant {
                id: VariantId::parse(&format!("syn-{i}-v{k}")).expect("valid variant id"),
                sku: Sku::parse(&format!("SYN{i:07}-{k}")).expect("valid sku"),
                title: option.to_owned(),
                price: Money::new(price, usd),
                stock,
                requires_shipping: family.shipping && option != "E-book",
            });
        }
        products.push(Product {
            id: ProductId::parse(&format!("syn-{i}")).expect("valid product id"),
            handle: format!("{}-{i}", slug(&title)),
            title,
            description,
            category: family.category.to_owned(),
            tags,
            image_url: None,
            variants,
        });
    }
    products
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ErrorCode;

    const MINIMAL: &str = r#"{"products":[{"id":"p1","handle":"mug","title":"Mug","category":"home/kitchen",
        "variants":[{"id":"v1","sku":"MUG-1","title":"Blue","price":1200,"stock":3}]}]}"#;

    fn demo_bytes() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/catalog.json")).unwrap()
    }

    #[test]
    fn minimal_json_gets_defaults() {
        let products = from_json(MINIMAL.as_bytes()).unwrap();
        assert_eq!(products.len(), 1);
        let v = &products[0].variants[0];
        assert_eq!(v.price, Money::new(1200, Currency::usd()));
        assert!(v.requires_shipping);
        assert_eq!(v.stock, 3);
        assert_eq!(products[0].description, "");
    }

    #[test]
    fn demo_catalog_parses_and_has_what_the_demo_needs() {
        let products = from_json(&demo_bytes()).unwrap();
        assert!(products.len() >= 60, "{} products", products.len());
        let categories: std::collections::HashSet<_> =
            products.iter().map(|p| &p.category).collect();
        assert!(categories.len() >= 10);
        assert!(categories.iter().any(|c| c.contains('/')));
        let sold_out = products.iter().filter(|p| p.variants.iter().all(|v| v.stock == 0)).count();
        assert!(sold_out >= 3, "{sold_out} sold out");
        let low = products
            .iter()
            .flat_map(|p| &p.variants)
            .filter(|v| (1..=5).contains(&v.stock))
            .count();
        assert!(low >= 3, "{low} low-stock variants");
        assert!(products.iter().flat_map(|p| &p.variants).any(|v| !v.requires_shipping));
        let prices: Vec<i64> =
            products.iter().flat_map(|p| &p.variants).map(|v| v.price.minor()).collect();
        assert!(prices.iter().any(|&p| p < 1_000));
        assert!(prices.iter().any(|&p| p > 30_000));
        assert!(products
            .iter()
            .all(|p| p.variants.iter().all(|v| v.price.currency() == Currency::usd())));
    }

    /// Each case edits the minimal catalog and names what the error must say.
    #[test]
    fn json_validation_errors_name_the_record() {
        let cases: &[(&str, &str, &str, ErrorCode)] = &[
            ("negative price", r#""price":1200"#, r#""price":-1"#, ErrorCode::InvalidInput),
            ("empty title", r#""title":"Mug""#, r#""title":"  ""#, ErrorCode::InvalidInput),
            ("bad sku", r#""sku":"MUG-1""#, r#""sku":"MUG 1""#, ErrorCode::InvalidInput),
            ("bad id", r#""id":"p1""#, r#""id":"p 1""#, ErrorCode::InvalidInput),
            (
                "bad handle",
                r#""handle":"mug""#,
                r#""handle":"Mug Handle""#,
                ErrorCode::InvalidInput,
            ),
            (
                "bad currency",
                r#""stock":3"#,
                r#""stock":3,"currency":"ZZZ""#,
                ErrorCode::InvalidCurrency,
            ),
            ("negative stock", r#""stock":3"#, r#""stock":-3"#, ErrorCode::InvalidInput),
            (
                "empty category part",
                r#""home/kitchen""#,
                r#""home//kitchen""#,
                ErrorCode::InvalidInput,
            ),
            (
                "no variants",
                r#"[{"id":"v1","sku":"MUG-1","title":"Blue","price":1200,"stock":3}]"#,
                "[]",
                ErrorCode::InvalidInput,
            ),
            ("unknown field", r#""stock":3"#, r#""stock":3,"pirce":5"#, ErrorCode::InvalidInput),
            (
                "image scheme",
                r#""category""#,
                r#""image_url":"javascript:alert(1)","category""#,
                ErrorCode::InvalidInput,
            ),
        ];
        for (name, from, to, code) in cases {
            assert!(MINIMAL.contains(from), "{name}: fixture lacks {from}");
            let input = MINIMAL.replacen(from, to, 1);
            let err = from_json(input.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{name}: {err}");
            if *name != "unknown field" {
                assert!(err.message().contains("product #1"), "{name}: {err}");
            }
        }
    }

    #[test]
    fn json_duplicates_are_refused_with_both_places() {
        let second = r#"{"id":"p2","handle":"cup","title":"Cup","category":"home","variants":[{"id":"v2","sku":"CUP-1","title":"Red","price":900}]}"#;
        let cases = [
            ("product id", r#""id":"p2""#, r#""id":"p1""#, "duplicate product id"),
            ("handle", r#""handle":"cup""#, r#""handle":"mug""#, "duplicate handle"),
            ("variant id", r#""id":"v2""#, r#""id":"v1""#, "duplicate variant id"),
            ("sku", r#""sku":"CUP-1""#, r#""sku":"MUG-1""#, "duplicate sku"),
            ("currency", r#""price":900"#, r#""price":900,"currency":"EUR""#, "one currency"),
        ];
        for (name, from, to, want) in cases {
            let edited = second.replacen(from, to, 1);
            let input = MINIMAL.replacen("}]}]}", &format!("}}]}},{edited}]}}"), 1);
            let err = from_json(input.as_bytes()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{name}");
            assert!(err.message().contains(want), "{name}: {err}");
            assert!(err.message().contains("product #2"), "{name}: {err}");
            if name != "currency" {
                assert!(err.message().contains("also at product #1"), "{name}: {err}");
            }
        }
    }

    const CSV_HEADER: &str = "product_id,handle,title,description,category,tags,variant_id,sku,variant_title,price,currency,stock,requires_shipping\n";

    #[test]
    fn csv_groups_rows_into_products() {
        let csv = format!(
            "{CSV_HEADER}\
             p1,mug,Mug,A mug,home/kitchen,ceramic;gift,v1,MUG-S,Small,1200,USD,3,true\n\
             p2,card,Gift Card,,gift-cards,gift,v3,GC-25,$25,2500,,,false\n\
             p1,,,,,,v2,MUG-L,Large,1500,usd,0,yes\n"
        );
        let products = from_csv(csv.as_bytes()).unwrap();
        assert_eq!(products.len(), 2);
        assert_eq!(products[0].variants.len(), 2);
        assert_eq!(products[0].tags, vec!["ceramic", "gift"]);
        assert_eq!(products[0].variants[1].price.minor(), 1500);
        assert!(!products[1].variants[0].requires_shipping);
        assert_eq!(products[1].variants[0].stock, 0);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let good = "p1,mug,Mug,A mug,home,,v1,MUG-S,Small,1200,USD,3,true\n";
        let cases = [
            ("decimal price", "p2,cup,Cup,,home,,v2,CUP,One,12.50,USD,1,true\n", "line 3", "price"),
            (
                "negative price",
                "p2,cup,Cup,,home,,v2,CUP,One,-5,USD,1,true\n",
                "line 3",
                "negative",
            ),
            (
                "duplicate sku",
                "p2,cup,Cup,,home,,v2,MUG-S,One,5,USD,1,true\n",
                "line 3",
                "duplicate sku",
            ),
            (
                "duplicate handle",
                "p2,mug,Cup,,home,,v2,CUP,One,5,USD,1,true\n",
                "line 3",
                "duplicate handle",
            ),
            ("contradiction", "p1,mug,Cup,,home,,v2,CUP,One,5,USD,1,true\n", "line 3", "differs"),
            (
                "bad flag",
                "p2,cup,Cup,,home,,v2,CUP,One,5,USD,1,maybe\n",
                "line 3",
                "requires_shipping",
            ),
            ("missing column", "p2,cup,Cup\n", "", "CSV"),
            ("empty title", "p2,cup,,,home,,v2,CUP,One,5,USD,1,true\n", "line 3", "title"),
        ];
        for (name, row, want_line, want) in cases {
            let csv = format!("{CSV_HEADER}{good}{row}");
            let err = from_csv(csv.as_bytes()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{name}");
            assert!(err.message().contains(want_line), "{name}: {err}");
            assert!(err.message().contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn sample_csv_parses() {
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/catalog-sample.csv"))
                .unwrap();
        let products = from_csv(&bytes).unwrap();
        assert!(products.len() >= 3);
        assert!(products.iter().any(|p| p.variants.len() > 1));
    }

    #[test]
    fn formats_follow_the_extension() {
        let cases = [
            ("a/catalog.json", Some(CatalogFormat::Json)),
            ("CATALOG.CSV", Some(CatalogFormat::Csv)),
            ("catalog.txt", None),
            ("catalog", None),
        ];
        for (path, want) in cases {
            assert_eq!(CatalogFormat::from_path(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn synthetic_catalog_is_deterministic_and_valid() {
        let a = synthetic_catalog(500, 7);
        assert_eq!(a, synthetic_catalog(500, 7));
        assert_ne!(a, synthetic_catalog(500, 8));
        validate(&a).unwrap();
        let sold_out = a.iter().filter(|p| p.variants.iter().all(|v| v.stock == 0)).count();
        assert!((5..=60).contains(&sold_out), "{sold_out} sold out of 500");
        assert!(a.iter().any(|p| p.variants.iter().any(|v| !v.requires_shipping)));
        let families: std::collections::HashSet<_> =
            a.iter().map(|p| p.category.as_str()).collect();
        assert_eq!(families.len(), FAMILIES.len());
    }

    #[test]
    fn categories_and_tags_are_normalised() {
        let input = MINIMAL.replacen(r#""home/kitchen""#, r#"" /Home / Kitchen/ ""#, 1).replacen(
            r#""category""#,
            r#""tags":[" Gift ","gift","","Mug"],"category""#,
            1,
        );
        let products = from_json(input.as_bytes()).unwrap();
        assert_eq!(products[0].category, "home/kitchen");
        assert_eq!(products[0].tags, vec!["Gift", "Mug"]);
    }

    #[test]
    fn validate_catches_what_code_can_build() {
        let mut products = synthetic_catalog(3, 1);
        products[2].variants[0].price = Money::new(-1, Currency::usd());
        let err = validate(&products).unwrap_err();
        assert!(err.message().contains("product #3"), "{err}");
        let mut products = synthetic_catalog(3, 1);
        products[1].handle = products[0].handle.clone();
        assert!(validate(&products).unwrap_err().message().contains("duplicate handle"));
        let mut products = synthetic_catalog(3, 1);
        products[0].category = "Home/Kitchen".into();
        let err = validate(&products).unwrap_err();
        assert!(err.message().contains("lower-case"), "{err}");
    }
}
