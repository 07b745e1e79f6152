//! The embedded catalog: products and variants in SQLite, searched through
//! an FTS5 full-text index, implementing the [`Catalog`] port.
//!
//! This module owns the catalog tables (`products`, `variants`,
//! `product_tags`, `products_fts`), search, cursor pagination and the bulk
//! import. It does not own stock: quantities live in the shared `stock`
//! table that the store decrements at checkout, and every read here joins
//! it, so a search never shows a count the checkout would disagree with.
//! Import writes that table only to set the file's starting quantities.
//!
//! Search semantics, in one place:
//! - Text is split into words (letters and digits); nothing the caller types
//!   is ever FTS5 syntax. Every word must match (stemmed, with prefix
//!   matching on the last one); if no product matches them all, the first
//!   page falls back to products matching any word, ranked by relevance, and
//!   the cursor remembers which of the two it was.
//! - Common function words ("the", "for", "with" …) are dropped; text with
//!   no searchable word left lists like empty text.
//! - Relevance is BM25 with the title weighted highest, then tags, category
//!   and description; ties go to the product's row key. A search without
//!   text lists by product id, or, with a category filter, by category path
//!   and then id. Every order is total and survives re-imports, so pages
//!   never overlap or skip.
//! - Filters select products, and a product always comes back whole, with
//!   all its variants: it matches the price and stock filters when one of its
//!   variants is within the price bounds *and* (with `in_stock_only`) has
//!   stock. The agent then sees the options and their current stock, rather
//!   than a product that changes shape with the filter.
//! - Price bounds compare minor units; an import has one currency (see
//!   `catalog_import`), so the comparison means what it says.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::types::Value;
use rusqlite::{params, Connection, ErrorCode as SqliteCode, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::db::{Db, Migration};
use crate::adapters::catalog_import;
use crate::domain::{
    CategoryNode, Currency, Error, Money, Product, ProductId, Result, Sku, Variant, VariantId,
};
use crate::ports::{Catalog, SearchPage, SearchQuery};

/// Page size when the caller asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// No page is larger, whatever the caller asks: it bounds the work one
/// request can cause and the size of one answer.
pub const MAX_PAGE_SIZE: u32 = 50;
/// Longer search text is refused rather than cut, so the caller knows.
pub const MAX_TEXT_CHARS: usize = 500;
/// Words past this many are ignored; they add cost and rarely precision.
const MAX_TERMS: usize = 16;
/// Longer "words" (base64 blobs, pasted hashes) cannot match a product.
const MAX_TERM_CHARS: usize = 64;
const MAX_FILTER_TAGS: usize = 16;
const MAX_CURSOR_CHARS: usize = 600;
/// Search builds one SQL shape per combination of filters present (a few
/// dozen in practice), and each is worth keeping prepared.
const STATEMENT_CACHE: usize = 128;

/// BM25 column weights, in the column order of `products_fts`: a word in the
/// title says far more about a product than the same word in a description.
/// `filter_keys` weighs nothing: it narrows, it must not rank.
const BM25: &str = "bm25(products_fts, 10.0, 1.0, 4.0, 2.0, 0.0)";

/// The catalog schema, in steps: `100_catalog` as first shipped,
/// `101_catalog_filter_keys`, which reshapes it for faster filtered search,
/// and `102_catalog_generation`, a counter every change to a product row
/// bumps (by trigger, so an import from another process counts too), which
/// tells the [`RankCache`] when its rankings are stale.
/// A database gets the steps it has not applied on its next open, and a
/// new one applies them all in turn, so there is one path to the schema.
///
/// `products_fts` is an *external-content* FTS5 table over `products`, kept
/// in step by triggers. The text is stored once (in `products`), the index
/// can be rebuilt from it (`INSERT INTO products_fts(products_fts)
/// VALUES('rebuild')`), and because the triggers delete index entries with
/// the row's own old values, the index cannot drift from the rows the way
/// it can when application code maintains it. A contentless table would
/// need the same triggers and could not be rebuilt.
///
/// Tags are kept twice on purpose: as a JSON array in `products.tags`, in the
/// merchant's order, for display and for the full-text index; and as rows of
/// `product_tags` for the exact, case-insensitive tag filter, which the
/// full-text index (stemmed, split on `-`) cannot answer.
///
/// `filter_keys` holds one opaque token per category on the product's path
/// and per tag (see [`filter_key`]), so a text search with those filters
/// can let the index intersect its lists instead of ranking every match
/// and checking its row. `category_key` is the path plus `/`, so a
/// category and everything below it are one contiguous index range.
pub const MIGRATIONS: &[Migration] = &[
    (
        "100_catalog",
    "CREATE TABLE products (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        handle TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        category TEXT NOT NULL COLLATE NOCASE,
        tags TEXT NOT NULL,
        image_url TEXT
    ) STRICT;
    CREATE INDEX products_category ON products (category);

    CREATE TABLE variants (
        id TEXT PRIMARY KEY,
        product_pk INTEGER NOT NULL REFERENCES products (pk) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        sku TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        price INTEGER NOT NULL CHECK (price >= 0),
        currency TEXT NOT NULL,
        requires_shipping INTEGER NOT NULL CHECK (requires_shipping IN (0, 1))
    ) STRICT;
    CREATE INDEX variants_product ON variants (product_pk, position);

    CREATE TABLE product_tags (
        tag TEXT NOT NULL COLLATE NOCASE,
        product_pk INTEGER NOT NULL REFERENCES products (pk) ON DELETE CASCADE,
        PRIMARY KEY (tag, product_pk)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX product_tags_product ON product_tags (product_pk);

    CREATE VIRTUAL TABLE products_fts USING fts5 (
        title, description, tags, category,
        content = 'products', content_rowid = 'pk',
        tokenize = 'porter unicode61 remove_diacritics 2',
        prefix = '2 3'
    );
    CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
        INSERT INTO products_fts (rowid, title, description, tags, category)
        VALUES (new.pk, new.title, new.description, new.tags, new.category);
    END;
    CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
        INSERT INTO products_fts (products_fts, rowid, title, description, tags, category)
        VALUES ('delete', old.pk, old.title, old.description, old.tags, old.category);
    END;
    CREATE TRIGGER products_fts_update AFTER UPDATE ON products BEGIN
        INSERT INTO products_fts (products_fts, rowid, title, description, tags, category)
        VALUES ('delete', old.pk, old.title, old.description, old.tags, old.category);
        INSERT INTO products_fts (rowid, title, description, tags, category)
        VALUES (new.pk, new.title, new.description, new.tags, new.category);
    END;",
    ),
    (
        "101_catalog_filter_keys",
        "DROP TRIGGER products_fts_insert;
        DROP TRIGGER products_fts_delete;
        DROP TRIGGER products_fts_update;
        DROP TABLE products_fts;
        DROP INDEX products_category;
        DROP INDEX variants_product;

        -- Imports lower-case category paths from now on; rows imported
        -- before get the same (lower() folds ASCII only, like the import).
        UPDATE products SET category = lower(category);
        ALTER TABLE products ADD COLUMN filter_keys TEXT NOT NULL DEFAULT '';
        ALTER TABLE products ADD COLUMN category_key TEXT COLLATE BINARY
            GENERATED ALWAYS AS (category || '/') VIRTUAL;
        CREATE INDEX products_listing ON products (category_key, id);
        -- Covers the price and stock filters, which probe it per product.
        CREATE INDEX variants_product ON variants (product_pk, price, sku);
        CREATE INDEX variants_price ON variants (price, product_pk);

        -- The keys of rows already there, exactly as filter_keys() builds
        -- them: 'zc' and the hex of each category prefix, then 'zt' and the
        -- hex of each lower-cased tag, in that order.
        CREATE TEMP TABLE catalog_keys AS
            WITH RECURSIVE cut (pk, path, i) AS (
                SELECT pk, category, 1 FROM products
                UNION ALL
                SELECT pk, path, i + 1 FROM cut WHERE i <= length(path)
            )
            SELECT pk, 'zc' || hex(substr(path, 1, i - 1)) AS key, i AS ord FROM cut
            WHERE i > length(path) OR substr(path, i, 1) = '/'
            UNION ALL
            SELECT p.pk, 'zt' || hex(lower(t.value)), 100000 + t.key
            FROM products p, json_each(p.tags) t;
        UPDATE products SET filter_keys = (
            SELECT group_concat(key, ' ') FROM (
                SELECT key FROM temp.catalog_keys k WHERE k.pk = products.pk ORDER BY ord
            )
        );
        DROP TABLE temp.catalog_keys;

        CREATE VIRTUAL TABLE products_fts USING fts5 (
            title, description, tags, category, filter_keys,
            content = 'products', content_rowid = 'pk',
            tokenize = 'porter unicode61 remove_diacritics 2',
            prefix = '2 3'
        );
        CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
            INSERT INTO products_fts (rowid, title, description, tags, category, filter_keys)
            VALUES (new.pk, new.title, new.description, new.tags, new.category, new.filter_keys);
        END;
        CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
            INSERT INTO products_fts (products_fts, rowid, title, description, tags, category, filter_keys)
            VALUES ('delete', old.pk, old.title, old.description, old.tags, old.category, old.filter_keys);
        END;
        CREATE TRIGGER products_fts_update AFTER UPDATE ON products BEGIN
            INSERT INTO products_fts (products_fts, rowid, title, description, tags, category, filter_keys)
            VALUES ('delete', old.pk, old.title, old.description, old.tags, old.category, old.filter_keys);
            INSERT INTO products_fts (rowid, title, description, tags, category, filter_keys)
            VALUES (new.pk, new.title, new.description, new.tags, new.category, new.filter_keys);
        END;
        INSERT INTO products_fts (products_fts) VALUES ('rebuild');",
    ),
    (
        "102_catalog_generation",
        "CREATE TABLE catalog_generation (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            n INTEGER NOT NULL
        ) STRICT;
        INSERT INTO catalog_generation (id, n) VALUES (1, 0);
        CREATE TRIGGER products_generation_insert AFTER INSERT ON products BEGIN
            UPDATE catalog_generation SET n = n + 1;
        END;
        CREATE TRIGGER products_generation_update AFTER UPDATE ON products BEGIN
            UPDATE catalog_generation SET n = n + 1;
        END;
        CREATE TRIGGER products_generation_delete AFTER DELETE ON products BEGIN
            UPDATE catalog_generation SET n = n + 1;
        END;",
    ),
];

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Products in the import (created or updated).
    pub products: usize,
    pub variants: usize,
    /// Distinct category paths in the import.
    pub categories: usize,
    /// Products in the import with no variant in stock.
    pub sold_out: usize,
    /// Products in the catalog after the import, including earlier ones.
    pub catalog_products: u64,
}

/// The FTS5 catalog on the shared SQLite database.
#[derive(Clone)]
pub struct SqliteCatalog {
    db: Arc<Db>,
    ranks: Arc<RankCache>,
}

impl SqliteCatalog {
    /// Wraps a database opened with [`MIGRATIONS`] (and the stock migration).
    pub fn new(db: Arc<Db>) -> Self {
        Self { db, ranks: Arc::new(RankCache::default()) }
    }

    /// Adds or updates `products` in one transaction.
    ///
    /// Products are matched by id: a known product is updated in place (its
    /// variants and tags replaced by the imported ones), a new one is
    /// created, and products missing from the import are left alone. Each
    /// variant's stock is set to the imported quantity. Importing the same
    /// products twice leaves the catalog as one import did.
    pub async fn import(&self, products: Vec<Product>) -> Result<ImportReport> {
        catalog_import::validate(&products)?;
        let mut categories: Vec<&str> = products.iter().map(|p| p.category.as_str()).collect();
        categories.sort_unstable();
        categories.dedup();
        let mut report = ImportReport {
            products: products.len(),
            variants: products.iter().map(|p| p.variants.len()).sum(),
            categories: categories.len(),
            sold_out: products.iter().filter(|p| p.variants.iter().all(|v| v.stock == 0)).count(),
            catalog_products: 0,
        };
        // Alone, in its own transaction: the import is large, and inside the
        // writer's batch transaction it would be a savepoint, for which
        // SQLite keeps the old copy of every page it changes.
        report.catalog_products =
            self.db.write_alone(move |conn| import_all(conn, &products)).await?;
        Ok(report)
    }
}

/// Maps a constraint violation to an input error worded by `message`, and
/// anything else to a store error.
fn constraint_or_store(err: rusqlite::Error, message: impl FnOnce() -> String) -> Error {
    match err.sqlite_error_code() {
        Some(SqliteCode::ConstraintViolation) => Error::invalid(message()),
        _ => Error::store(err),
    }
}

/// The import transaction; returns the catalog's product count afterwards.
fn import_all(conn: &mut Connection, products: &[Product]) -> Result<u64> {
    // A bulk import touches pages all over the indexes; SQLite's default
    // 2 MiB page cache makes it spill and re-read them. The writer gets a
    // larger cache for the import and its usual one back afterwards.
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).map_err(Error::store)?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{IMPORT_CACHE_KIB}"))
        .map_err(Error::store)?;
    let result = import_tx(conn, products);
    let restored = conn.execute_batch(&format!("PRAGMA cache_size = {cache}"));
    let count = result?;
    restored.map_err(Error::store)?;
    // Fresh statistics help the planner with the listing and filter
    // queries; stale ones only cost speed, so a failure is ignored.
    let _ = conn.execute_batch("PRAGMA optimize");
    Ok(count)
}

/// Page cache for the import's writer, in KiB.
const IMPORT_CACHE_KIB: i64 = 128 * 1024;

/// Products per upsert statement. FTS5 writes its pending index data out
/// at every statement boundary inside a transaction, so one statement per
/// product builds the index from tiny segments and takes four times as
/// long; a chunk per statement keeps the parameter a bounded size.
const IMPORT_CHUNK: usize = 2_000;

/// The import transaction; returns the catalog's product count afterwards.
fn import_tx(conn: &mut Connection, products: &[Product]) -> Result<u64> {
    let tx = conn.transaction().map_err(Error::store)?;
    {
        // An upsert that leaves unchanged rows untouched, so a re-import does
        // not churn the full-text index (the triggers fire on real changes).
        let mut upsert = tx
            .prepare(
                "INSERT INTO products (id, handle, title, description, category, tags, image_url, filter_keys)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3,
                        value ->> 4, value ->> 5, value ->> 6, value ->> 7
                 FROM json_each(?1) WHERE true
                 ON CONFLICT (id) DO UPDATE SET
                    handle = excluded.handle, title = excluded.title,
                    description = excluded.description, category = excluded.category,
                    tags = excluded.tags, image_url = excluded.image_url,
                    filter_keys = excluded.filter_keys
                 WHERE products.handle IS NOT excluded.handle
                    OR products.title IS NOT excluded.title
                    OR products.description IS NOT excluded.description
                    OR products.category IS NOT excluded.category
                    OR products.tags IS NOT excluded.tags
                    OR products.image_url IS NOT excluded.image_url
                    OR products.filter_keys IS NOT excluded.filter_keys",
            )
            .map_err(Error::store)?;
        // Names a product of the chunk whose handle another product holds.
        let mut handle_owner = tx
            .prepare(
                "SELECT j.value ->> 0, j.value ->> 1, p.id FROM json_each(?1) AS j
                 JOIN products p ON p.handle = j.value ->> 1 AND p.id <> j.value ->> 0
                 LIMIT 1",
            )
            .map_err(Error::store)?;
        for chunk in products.chunks(IMPORT_CHUNK) {
            let mut rows = Vec::with_capacity(chunk.len());
            for p in chunk {
                let tags = serde_json::to_string(&p.tags).map_err(Error::internal)?;
                rows.push(serde_json::json!([
                    p.id.as_str(),
                    p.handle,
                    p.title,
                    p.description,
                    p.category,
                    tags,
                    p.image_url,
                    filter_keys(p)
                ]));
            }
            let rows = serde_json::Value::Array(rows).to_string();
            if let Err(e) = upsert.execute([&rows]) {
                let owner: Option<(String, String, String)> = handle_owner
                    .query_row([&rows], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .ok()
                    .flatten();
                return Err(match owner {
                    Some((id, handle, other)) => Error::invalid(format!(
                        "product {id:?}: handle {handle:?} is already used by product {other:?}"
                    )),
                    None => constraint_or_store(e, || "a product conflicts with another".into()),
                });
            }
        }
        let mut pk_of =
            tx.prepare("SELECT pk FROM products WHERE id = ?1").map_err(Error::store)?;
        let mut clear_variants =
            tx.prepare("DELETE FROM variants WHERE product_pk = ?1").map_err(Error::store)?;
        let mut clear_tags =
            tx.prepare("DELETE FROM product_tags WHERE product_pk = ?1").map_err(Error::store)?;
        // The old variants of every imported product go before any new one
        // is written, so that a variant or SKU moving between two products
        // of the same import does not collide with its old self.
        let mut pks = Vec::with_capacity(products.len());
        for p in products {
            let pk: i64 = pk_of.query_row([p.id.as_str()], |r| r.get(0)).map_err(Error::store)?;
            clear_variants.execute([pk]).map_err(Error::store)?;
            clear_tags.execute([pk]).map_err(Error::store)?;
            pks.push(pk);
        }
        let mut insert_variant = tx
            .prepare(
                "INSERT INTO variants (id, product_pk, position, sku, title, price, currency, requires_shipping)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(Error::store)?;
        let mut owner = tx
            .prepare(
                "SELECT p.id FROM variants v JOIN products p ON p.pk = v.product_pk
                 WHERE v.id = ?1 OR v.sku = ?2 LIMIT 1",
            )
            .map_err(Error::store)?;
        // Tags that differ only in ASCII case are one tag to the filter.
        let mut insert_tag = tx
            .prepare("INSERT OR IGNORE INTO product_tags (tag, product_pk) VALUES (?1, ?2)")
            .map_err(Error::store)?;
        let mut set_stock = tx
            .prepare(
                "INSERT INTO stock (sku, quantity) VALUES (?1, ?2)
                 ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity",
            )
            .map_err(Error::store)?;
        for (p, pk) in products.iter().zip(&pks) {
            for (position, v) in p.variants.iter().enumerate() {
                insert_variant
                    .execute(params![
                        v.id.as_str(),
                        pk,
                        position as i64,
                        v.sku.as_str(),
                        v.title,
                        v.price.minor(),
                        v.price.currency().code(),
                        v.requires_shipping
                    ])
                    .map_err(|e| {
                        constraint_or_store(e, || {
                            let other: Option<String> = owner
                                .query_row([v.id.as_str(), v.sku.as_str()], |r| r.get(0))
                                .optional()
                                .ok()
                                .flatten();
                            format!(
                                "product {:?}: variant {:?} (sku {:?}) already belongs to product {:?}",
                                p.id.as_str(),
                                v.id.as_str(),
                                v.sku.as_str(),
                                other.unwrap_or_default()
                            )
                        })
                    })?;
                set_stock.execute(params![v.sku.as_str(), v.stock]).map_err(Error::store)?;
            }
            for tag in &p.tags {
                insert_tag.execute(params![tag, pk]).map_err(Error::store)?;
            }
        }
    }
    // Merging the index's segments into one b-tree makes every later query
    // read fewer pages; it is cheap next to the import itself.
    tx.execute("INSERT INTO products_fts (products_fts) VALUES ('optimize')", [])
        .map_err(Error::store)?;
    let count: i64 =
        tx.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0)).map_err(Error::store)?;
    tx.commit().map_err(Error::store)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Whether a text search had to settle for products matching any word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    All,
    Any,
}

/// Words too common to narrow a search, dropped from the text: "a tent for
/// the beach" looks for tent and beach, and text of nothing else lists like
/// empty text. Ranking every product whose description says "the" costs
/// tens of milliseconds at 100k products and tells the buyer nothing.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "any", "at", "by", "for", "from", "i", "in", "into", "is", "it", "me", "my",
    "of", "on", "or", "some", "that", "the", "this", "to", "with",
];

/// A search reduced to its meaning: two queries with the same plan return
/// the same products in the same order.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// Lower-cased words of the text, deduplicated, in order.
    terms: Vec<String>,
    /// Lower-cased, without leading or trailing `/`.
    category: Option<String>,
    /// Lower-cased (ASCII), deduplicated, sorted.
    tags: Vec<String>,
    price: Option<(i64, i64)>,
    in_stock: bool,
    limit: usize,
}

impl Plan {
    fn from_query(q: &SearchQuery) -> Result<Plan> {
        if q.text.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::invalid(format!(
                "search text must be at most {MAX_TEXT_CHARS} characters"
            )));
        }
        let mut terms: Vec<String> = Vec::new();
        for word in q.text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() || word.chars().count() > MAX_TERM_CHARS {
                continue;
            }
            let word = word.to_lowercase();
            if !terms.contains(&word) {
                terms.push(word);
            }
        }
        terms.retain(|t| !STOP_WORDS.contains(&t.as_str()));
        terms.truncate(MAX_TERMS);
        let category = q
            .category
            .as_deref()
            .map(|c| {
                let parts: Vec<&str> =
                    c.trim().trim_matches('/').split('/').map(str::trim).collect();
                parts.join("/").to_ascii_lowercase()
            })
            .filter(|c| !c.is_empty());
        if category.as_ref().is_some_and(|c| c.chars().count() > catalog_import::MAX_CATEGORY_CHARS)
        {
            return Err(Error::invalid("category filter is too long"));
        }
        let mut tags: Vec<String> = Vec::new();
        for tag in q.tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            let tag = tag.to_ascii_lowercase();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if tags.len() > MAX_FILTER_TAGS {
            return Err(Error::invalid(format!("at most {MAX_FILTER_TAGS} tags can be required")));
        }
        tags.sort_unstable();
        let price = match (q.price_min, q.price_max) {
            (None, None) => None,
            (lo, hi) => {
                let (lo, hi) = (lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX));
                if lo > hi {
                    return Err(Error::invalid("price_min must not be greater than price_max"));
                }
                Some((lo, hi))
            }
        };
        let limit = match q.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as usize;
        Ok(Plan { terms, category, tags, price, in_stock: q.in_stock_only, limit })
    }

    fn has_filters(&self) -> bool {
        self.category.is_some() || !self.tags.is_empty() || self.price.is_some() || self.in_stock
    }

    /// A canonical text of everything that decides the result order; the
    /// page size is left out, so a caller may change it between pages.
    fn fingerprint(&self) -> String {
        serde_json::json!([self.terms, self.category, self.tags, self.price, self.in_stock])
            .to_string()
    }

    /// The FTS5 query for the words, or `None` to list without text.
    ///
    /// Each word is a quoted FTS5 string. The words contain only letters and
    /// digits (see [`Plan::from_query`]), so no quote can end a string early
    /// and operators (`OR`, `NEAR`, `*`, `^`, `-`, `:`) inside quotes are
    /// just text. The last word also matches as a prefix, for text typed
    /// as the user goes; a one-letter prefix would match half the index,
    /// so it is left exact.
    ///
    /// The category and tag filters are added as their `filter_keys`
    /// tokens. The exact filters still run on the rows, but the index now
    /// intersects lists instead of ranking every text match and checking its
    /// row: "leather" within a small category ranks that category's leather
    /// goods, not all of them.
    fn match_expr(&self, mode: Mode) -> Option<String> {
        let last = self.terms.len().checked_sub(1)?;
        let words: Vec<String> = self
            .terms
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i == last && t.chars().count() > 1 {
                    format!("\"{t}\"*")
                } else {
                    format!("\"{t}\"")
                }
            })
            .collect();
        let mut expr = format!(
            "({})",
            words.join(match mode {
                Mode::All => " AND ",
                Mode::Any => " OR ",
            })
        );
        if let Some(category) = &self.category {
            expr.push_str(&format!(" AND filter_keys : \"{}\"", filter_key('c', category)));
        }
        for tag in &self.tags {
            expr.push_str(&format!(" AND filter_keys : \"{}\"", filter_key('t', tag)));
        }
        Some(expr)
    }

    /// Appends the filters as conditions on `products p`.
    fn push_filters(&self, sql: &mut Sql) {
        if let Some(category) = &self.category {
            // `category_key` is the path plus `/`, so a category and all it
            // contains are one key range: `home/` up to `home0` (`0` follows
            // `/` in ASCII), which an index walks in order.
            let lo = sql.bind(format!("{category}/"));
            let hi = sql.bind(format!("{category}0"));
            sql.push(&format!(" AND p.category_key >= {lo} AND p.category_key < {hi}"));
        }
        // One probe of the (tag, product) key per tag: cheap per product,
        // and it lets a listing stop as soon as its page is full.
        for tag in &self.tags {
            let tag = sql.bind(tag.clone());
            sql.push(&format!(
                " AND EXISTS (SELECT 1 FROM product_tags t WHERE t.tag = {tag} AND t.product_pk = p.pk)"
            ));
        }
        if self.price.is_some() || self.in_stock {
            sql.push(" AND EXISTS (SELECT 1 FROM variants v");
            if self.in_stock {
                sql.push(" JOIN stock s ON s.sku = v.sku AND s.quantity > 0");
            }
            sql.push(" WHERE v.product_pk = p.pk");
            if let Some((lo, hi)) = self.price {
                let lo = sql.bind(lo);
                let hi = sql.bind(hi);
                sql.push(&format!(" AND v.price >= {lo} AND v.price <= {hi}"));
            }
            sql.push(")");
        }
    }
}

/// The `filter_keys` token for a category path (`kind` `c`) or a tag
/// (`t`), both already lower-cased: `z`, the kind, and the value's bytes in
/// hex. Letters and digits only, so the tokenizer keeps it whole; the
/// stemmer may trim it, but the same way here and in a query, so a
/// product's token always matches its filter's. Migration
/// `101_catalog_filter_keys` builds the same tokens in SQL.
fn filter_key(kind: char, value: &str) -> String {
    use std::fmt::Write;
    let mut key = String::with_capacity(2 + 2 * value.len());
    key.push('z');
    key.push(kind);
    for b in value.bytes() {
        // Writing to a String cannot fail.
        let _ = write!(key, "{b:02X}");
    }
    key
}

/// The `filter_keys` text of a product: every category on its path (so a
/// filter on `home` finds `home/kitchen`) and every tag.
fn filter_keys(p: &Product) -> String {
    let mut keys = Vec::with_capacity(p.tags.len() + 3);
    let mut end = 0;
    for part in p.category.split('/') {
        end += part.len();
        keys.push(filter_key('c', &p.category[..end]));
        end += 1;
    }
    keys.extend(p.tags.iter().map(|t| filter_key('t', &t.to_ascii_lowercase())));
    keys.join(" ")
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    /// A text search orders by relevance, then by the product's row key
    /// (stable across re-imports, which update rows in place). Ordering
    /// ties by product id instead would mean reading every matching
    /// product row just to sort, five times the cost at 100k products.
    Ranked { mode: Mode, score: f64, pk: i64 },
    /// A listing without text orders by product id, or, under a category
    /// filter, by category path and then id; `key` is the path then.
    Listed { key: String, id: String },
}

/// The cursor as sent to clients: base64url of this JSON. `c` binds the
/// position to the query's fingerprint, so a cursor from another query, or
/// one edited by hand, is refused instead of paging through the wrong list.
/// It is a check, not a secret: a forged cursor could only move within the
/// caller's own results.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorWire {
    v: u8,
    /// Present for text searches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<Mode>,
    /// The score's bits: a float printed and parsed as decimal may come
    /// back one unit off, and the position must compare exactly.
    #[serde(default)]
    s: u64,
    #[serde(default)]
    pk: i64,
    #[serde(default)]
    k: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    c: String,
}

const CURSOR_VERSION: u8 = 1;

impl CursorWire {
    fn from_position(pos: &Position) -> Self {
        match pos {
            Position::Ranked { mode, score, pk } => CursorWire {
                v: CURSOR_VERSION,
                m: Some(*mode),
                s: score.to_bits(),
                pk: *pk,
                ..CursorWire::default()
            },
            Position::Listed { key, id } => CursorWire {
                v: CURSOR_VERSION,
                k: key.clone(),
                id: id.clone(),
                ..CursorWire::default()
            },
        }
    }

    fn position(&self) -> Option<Position> {
        match self.m {
            Some(mode) => {
                let score = f64::from_bits(self.s);
                score.is_finite().then_some(Position::Ranked { mode, score, pk: self.pk })
            }
            None => Some(Position::Listed { key: self.k.clone(), id: self.id.clone() }),
        }
    }

    /// The check over the query and every field but `c` itself.
    fn check(&self, plan: &Plan) -> String {
        let text = serde_json::json!([
            "agentgate.catalog.cursor",
            plan.fingerprint(),
            self.v,
            self.m,
            self.s,
            self.pk,
            self.k,
            self.id
        ])
        .to_string();
        let digest = Sha256::digest(text.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn encode_cursor(plan: &Plan, pos: &Position) -> Result<String> {
    let mut wire = CursorWire::from_position(pos);
    wire.c = wire.check(plan);
    let json = serde_json::to_vec(&wire).map_err(Error::internal)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor(raw: &str, plan: &Plan) -> Result<Position> {
    let malformed = || Error::invalid("cursor is malformed; start the search again without one");
    if raw.len() > MAX_CURSOR_CHARS {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| malformed())?;
    let wire: CursorWire = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if wire.v != CURSOR_VERSION {
        return Err(malformed());
    }
    let pos = wire.position().ok_or_else(malformed)?;
    if wire.check(plan) != wire.c {
        return Err(Error::invalid(
            "cursor belongs to a different search; repeat the search that produced it",
        ));
    }
    Ok(pos)
}

/// SQL text with its parameters, numbered as they are added.
#[derive(Default)]
struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn query_map<T>(
        &self,
        conn: &Connection,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = conn.prepare_cached(&self.text).map_err(Error::store)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(self.values.iter()), f)
            .map_err(Error::store)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Error::store)
    }
}

/// A listing without text. It orders by product id, or, with a category
/// filter, by category path and then id, so that the category's index
/// range is walked in order and the query stops once the page is full.
/// When a tag or price filter is selective enough, the listing starts from
/// that filter's index instead (see [`driver`]); the order is the same.
fn listed(
    conn: &Connection,
    plan: &Plan,
    after: Option<(String, String)>,
) -> Result<Vec<(i64, Position)>> {
    listed_from(conn, plan, after, driver(conn, plan)?)
}

fn listed_from(
    conn: &Connection,
    plan: &Plan,
    after: Option<(String, String)>,
    driver: Option<Driver>,
) -> Result<Vec<(i64, Position)>> {
    let by_category = plan.category.is_some();
    let key = if by_category { "p.category_key" } else { "''" };
    let mut sql = Sql::default();
    sql.push(&format!("SELECT p.pk, {key}, p.id FROM "));
    // CROSS JOIN keeps the driving set as the outer loop: SQLite never
    // reorders the two sides of a CROSS JOIN.
    match driver {
        Some(Driver::Tag(tag)) => {
            let tag = sql.bind(tag);
            sql.push(&format!(
                "(SELECT product_pk AS pk FROM product_tags WHERE tag = {tag}) AS d
                 CROSS JOIN products p ON p.pk = d.pk"
            ));
        }
        Some(Driver::Price(lo, hi)) => {
            let lo = sql.bind(lo);
            let hi = sql.bind(hi);
            sql.push(&format!(
                "(SELECT DISTINCT product_pk AS pk FROM variants
                  WHERE price >= {lo} AND price <= {hi}) AS d
                 CROSS JOIN products p ON p.pk = d.pk"
            ));
        }
        None => sql.push("products p"),
    }
    sql.push(" WHERE 1");
    if let Some((after_key, after_id)) = after {
        let after_id = sql.bind(after_id);
        if by_category {
            let after_key = sql.bind(after_key);
            sql.push(&format!(" AND (p.category_key, p.id) > ({after_key}, {after_id})"));
        } else {
            sql.push(&format!(" AND p.id > {after_id}"));
        }
    }
    plan.push_filters(&mut sql);
    let limit = sql.bind((plan.limit + 1) as i64);
    let order = if by_category { "p.category_key, p.id" } else { "p.id" };
    sql.push(&format!(" ORDER BY {order} LIMIT {limit}"));
    sql.query_map(conn, |r| Ok((r.get(0)?, Position::Listed { key: r.get(1)?, id: r.get(2)? })))
}

/// A filter a listing can start from.
#[derive(Debug, Clone, PartialEq)]
enum Driver {
    Tag(String),
    Price(i64, i64),
}

/// Counting stops here: a filter this common is never worth starting from.
const DRIVER_PROBE: i64 = 4_096;

/// Whether a listing should start from its most selective tag or price
/// filter rather than walk the listing order.
///
/// Walking stops after a page's worth of matches, so it reads about
/// `page / selectivity` rows: next to nothing for common filters, most of
/// the catalog for rare ones (a rare tag, a narrow price band). Starting
/// from a filter reads every product it selects and sorts them. Bounded
/// counts on the tag and price indexes estimate both, assuming the filters
/// are independent, and the cheaper one wins. The estimate costs a few
/// index probes and is only made when such a filter is present.
fn driver(conn: &Connection, plan: &Plan) -> Result<Option<Driver>> {
    if plan.tags.is_empty() && plan.price.is_none() {
        return Ok(None);
    }
    let count = |sql: &str, values: Vec<Value>| -> Result<i64> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(values), |r| r.get(0)))
            .map_err(Error::store)
    };
    // The largest row key bounds the product count and costs one probe.
    let total = count("SELECT COALESCE(MAX(pk), 0) FROM products", Vec::new())?.max(1);
    let mut candidates: Vec<(Driver, i64)> = Vec::new();
    for tag in &plan.tags {
        let n = count(
            "SELECT COUNT(*) FROM (SELECT 1 FROM product_tags WHERE tag = ?1 LIMIT ?2)",
            vec![tag.clone().into(), DRIVER_PROBE.into()],
        )?;
        candidates.push((Driver::Tag(tag.clone()), n));
    }
    if let Some((lo, hi)) = plan.price {
        let n = count(
            "SELECT COUNT(*) FROM (SELECT 1 FROM variants WHERE price >= ?1 AND price <= ?2 LIMIT ?3)",
            vec![lo.into(), hi.into(), DRIVER_PROBE.into()],
        )?;
        candidates.push((Driver::Price(lo, hi), n));
    }
    let selectivity: f64 =
        candidates.iter().map(|(_, n)| (*n as f64 / total as f64).min(1.0)).product();
    let walk = ((plan.limit + 1) as f64 / selectivity.max(f64::MIN_POSITIVE)).min(total as f64);
    let best = candidates.into_iter().min_by_key(|(_, n)| *n);
    Ok(match best {
        // A started-from row costs a lookup and a sort slot, a walked row an
        // index step and a probe or two: a few walked rows per started one.
        Some((driver, n)) if n < DRIVER_PROBE && (n as f64) * 3.0 < walk => Some(driver),
        _ => None,
    })
}

/// Ranked candidates kept per full-text expression: the first
/// [`RANK_CACHE_ROWS`] are enough for the first pages of almost every
/// search; a walk past them runs the query again. The unit tests keep
/// fewer, so that their searches cross that boundary too.
#[cfg(not(test))]
const RANK_CACHE_ROWS: usize = 1024;
#[cfg(test)]
const RANK_CACHE_ROWS: usize = 40;
/// Expressions kept; past this the cache starts over.
const RANK_CACHE_EXPRESSIONS: usize = 512;

/// The first ranked matches of one expression, in `(score, rowid)` order.
struct RankedList {
    rows: Vec<(i64, f64)>,
    /// Whether `rows` holds every match, not only the first ones.
    complete: bool,
}

/// BM25 ranking is most of the cost of a text search (it scores every
/// match to find the best few), and its answer depends only on the text of
/// the products. So the ranked list of each full-text expression is kept,
/// under the catalog generation it was computed at; a search reads the
/// generation in its own snapshot and only uses a list of that generation.
/// Filters (stock, price, tags, category) are still checked against the
/// rows on every search, so stock is never served stale.
#[derive(Default)]
pub struct RankCache {
    inner: std::sync::Mutex<RankCacheInner>,
}

#[derive(Default)]
struct RankCacheInner {
    generation: i64,
    lists: HashMap<String, Arc<RankedList>>,
}

impl RankCache {
    fn get(&self, generation: i64, expr: &str) -> Option<Arc<RankedList>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.generation == generation).then(|| inner.lists.get(expr).cloned()).flatten()
    }

    fn put(&self, generation: i64, expr: String, list: Arc<RankedList>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.generation != generation || inner.lists.len() >= RANK_CACHE_EXPRESSIONS {
            // A newer catalog, or a full cache: start over. An older
            // generation's list (a reader on an old snapshot) replaces the
            // newer ones only until the next search of the newer one.
            inner.lists.clear();
            inner.generation = generation;
        }
        inner.lists.insert(expr, list);
    }
}

/// The catalog generation in the current snapshot (see [`RankCache`]).
fn generation(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT n FROM catalog_generation WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(Error::store)
}

/// The first [`RANK_CACHE_ROWS`] matches of `expr` in rank order, from the
/// cache or from the index.
fn ranked_list(conn: &Connection, ranks: &RankCache, expr: &str) -> Result<Arc<RankedList>> {
    let generation = generation(conn)?;
    if let Some(list) = ranks.get(generation, expr) {
        return Ok(list);
    }
    let sql = format!(
        "SELECT rowid, {BM25} AS score FROM products_fts WHERE products_fts MATCH ?1
         ORDER BY score, rowid LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(Error::store)?;
    let rows = stmt
        .query_map(params![expr, (RANK_CACHE_ROWS + 1) as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(Error::store)?
        .collect::<rusqlite::Result<Vec<(i64, f64)>>>()
        .map_err(Error::store)?;
    let complete = rows.len() <= RANK_CACHE_ROWS;
    let mut rows = rows;
    rows.truncate(RANK_CACHE_ROWS);
    let list = Arc::new(RankedList { rows, complete });
    ranks.put(generation, expr.to_owned(), Arc::clone(&list));
    Ok(list)
}

/// [`ranked`] from the cached list, or `None` when the page cannot be
/// told from the cached prefix alone (the walk would run past it).
fn ranked_cached(
    conn: &Connection,
    ranks: &RankCache,
    plan: &Plan,
    mode: Mode,
    after: Option<(f64, i64)>,
) -> Result<Option<Vec<(i64, Position)>>> {
    let Some(expr) = plan.match_expr(mode) else {
        return Ok(Some(Vec::new()));
    };
    let list = ranked_list(conn, ranks, &expr)?;
    let want = plan.limit + 1;
    // The first row strictly after the cursor in (score, rowid) order, as
    // the SQL `(score, rowid) > (?, ?)` picks it.
    let start = match after {
        None => 0,
        Some((score, pk)) => {
            list.rows.partition_point(|&(p, s)| s < score || (s == score && p <= pk))
        }
    };
    let rest = &list.rows[start..];
    let position = |(pk, score): (i64, f64)| (pk, Position::Ranked { mode, score, pk });
    if !plan.has_filters() {
        if rest.len() < want && !list.complete {
            return Ok(None);
        }
        return Ok(Some(rest.iter().take(want).copied().map(position).collect()));
    }
    // The same batches as the uncached walk, checked against the rows.
    let mut found = Vec::with_capacity(want);
    let mut batch_size = want * 2;
    let mut i = 0;
    while i < rest.len() {
        let batch = &rest[i..(i + batch_size).min(rest.len())];
        i += batch.len();
        let passing = passing_filters(conn, plan, batch)?;
        for &(pk, score) in batch {
            if passing.contains(&pk) && found.len() < want {
                found.push(position((pk, score)));
            }
        }
        if found.len() >= want {
            return Ok(Some(found));
        }
        batch_size = (batch_size * 4).min(2_048);
    }
    Ok(list.complete.then_some(found))
}

/// A text search through the cache when it can answer, else the index.
fn ranked_page(
    conn: &Connection,
    ranks: &RankCache,
    plan: &Plan,
    mode: Mode,
    after: Option<(f64, i64)>,
) -> Result<Vec<(i64, Position)>> {
    match ranked_cached(conn, ranks, plan, mode, after)? {
        Some(hits) => Ok(hits),
        None => ranked(conn, plan, mode, after),
    }
}

/// A text search: products ranked by BM25 in the full-text index alone,
/// and only then, for filters, checked against their rows in batches.
///
/// Ranking has to score every match, but reading each match's product row
/// as well would double the cost; so rows are read only for candidates in
/// rank order until a page's worth pass the filters.
fn ranked(
    conn: &Connection,
    plan: &Plan,
    mode: Mode,
    after: Option<(f64, i64)>,
) -> Result<Vec<(i64, Position)>> {
    let Some(expr) = plan.match_expr(mode) else {
        return Ok(Vec::new());
    };
    let want = plan.limit + 1;
    let mut sql = Sql::default();
    sql.push(&format!("SELECT rowid, {BM25} AS score FROM products_fts WHERE products_fts MATCH "));
    let m = sql.bind(expr);
    sql.push(&m);
    if let Some((score, pk)) = after {
        let score = sql.bind(score);
        let pk = sql.bind(pk);
        sql.push(&format!(" AND (score, rowid) > ({score}, {pk})"));
    }
    sql.push(" ORDER BY score, rowid");
    if !plan.has_filters() {
        let limit = sql.bind(want as i64);
        sql.push(&format!(" LIMIT {limit}"));
        return sql.query_map(conn, |r| {
            let score = r.get(1)?;
            Ok((r.get(0)?, Position::Ranked { mode, score, pk: r.get(0)? }))
        });
    }
    let mut stmt = conn.prepare_cached(&sql.text).map_err(Error::store)?;
    let mut rows =
        stmt.query(rusqlite::params_from_iter(sql.values.iter())).map_err(Error::store)?;
    let mut found = Vec::with_capacity(want);
    let mut batch: Vec<(i64, f64)> = Vec::new();
    let mut batch_size = want * 2;
    loop {
        let row = rows.next().map_err(Error::store)?;
        let done = row.is_none();
        if let Some(r) = row {
            batch.push((r.get(0).map_err(Error::store)?, r.get(1).map_err(Error::store)?));
        }
        if batch.len() >= batch_size || (done && !batch.is_empty()) {
            let passing = passing_filters(conn, plan, &batch)?;
            for (pk, score) in batch.drain(..) {
                if passing.contains(&pk) && found.len() < want {
                    found.push((pk, Position::Ranked { mode, score, pk }));
                }
            }
            if found.len() >= want {
                break;
            }
            batch_size = (batch_size * 4).min(2_048);
        }
        if done {
            break;
        }
    }
    Ok(found)
}

/// Which of the candidates pass the plan's filters.
fn passing_filters(
    conn: &Connection,
    plan: &Plan,
    candidates: &[(i64, f64)],
) -> Result<std::collections::HashSet<i64>> {
    let mut sql = Sql::default();
    let pks: Vec<i64> = candidates.iter().map(|c| c.0).collect();
    let list = sql.bind(serde_json::json!(pks).to_string());
    if plan.category.is_some() {
        sql.push(&format!(
            "SELECT p.pk FROM products p WHERE p.pk IN (SELECT value FROM json_each({list}))"
        ));
    } else {
        // Tag, price and stock filters need only the row key, so the
        // candidates stand in for `products p` and no product row is read.
        sql.push(&format!(
            "SELECT p.pk FROM (SELECT value AS pk FROM json_each({list})) AS p WHERE 1"
        ));
    }
    plan.push_filters(&mut sql);
    Ok(sql.query_map(conn, |r| r.get(0))?.into_iter().collect())
}

/// Rows were validated on import, so one that fails to parse means the
/// database was changed behind the catalog's back.
fn corrupt(detail: impl std::fmt::Display) -> Error {
    Error::internal(format!("catalog row does not parse: {detail}"))
}

/// The variants, with current stock, of the given products: one query for
/// a whole page, never one per product.
fn load_variants(conn: &Connection, list: &str) -> Result<HashMap<i64, Vec<Variant>>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.product_pk, v.id, v.sku, v.title, v.price, v.currency, v.requires_shipping,
                    COALESCE(s.quantity, 0)
             FROM variants v LEFT JOIN stock s ON s.sku = v.sku
             WHERE v.product_pk IN (SELECT value FROM json_each(?1))
             ORDER BY v.product_pk, v.position",
        )
        .map_err(Error::store)?;
    let mut rows = stmt.query([list]).map_err(Error::store)?;
    let mut out: HashMap<i64, Vec<Variant>> = HashMap::new();
    while let Some(r) = rows.next().map_err(Error::store)? {
        let pk: i64 = r.get(0).map_err(Error::store)?;
        let id: String = r.get(1).map_err(Error::store)?;
        let sku: String = r.get(2).map_err(Error::store)?;
        let currency: String = r.get(5).map_err(Error::store)?;
        let quantity: i64 = r.get(7).map_err(Error::store)?;
        let price = Money::new(
            r.get(4).map_err(Error::store)?,
            Currency::parse(&currency).map_err(corrupt)?,
        );
        let variant = Variant {
            id: VariantId::parse(&id).map_err(corrupt)?,
            sku: Sku::parse(&sku).map_err(corrupt)?,
            title: r.get(3).map_err(Error::store)?,
            price,
            // The stock table allows counts past u32; show the most we can.
            stock: u32::try_from(quantity.max(0)).unwrap_or(u32::MAX),
            requires_shipping: r.get(6).map_err(Error::store)?,
        };
        out.entry(pk).or_default().push(variant);
    }
    Ok(out)
}

/// The products with these row keys, in this order, with their variants:
/// two queries however many products.
fn load_products(conn: &Connection, pks: &[i64]) -> Result<Vec<Product>> {
    if pks.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::json!(pks).to_string();
    let mut stmt = conn
        .prepare_cached(
            "SELECT pk, id, handle, title, description, category, tags, image_url
             FROM products WHERE pk IN (SELECT value FROM json_each(?1))",
        )
        .map_err(Error::store)?;
    let mut rows = stmt.query([&list]).map_err(Error::store)?;
    let mut found: HashMap<i64, Product> = HashMap::with_capacity(pks.len());
    let mut variants = load_variants(conn, &list)?;
    while let Some(r) = rows.next().map_err(Error::store)? {
        let pk: i64 = r.get(0).map_err(Error::store)?;
        let id: String = r.get(1).map_err(Error::store)?;
        let tags: String = r.get(6).map_err(Error::store)?;
        let product = Product {
            id: ProductId::parse(&id).map_err(corrupt)?,
            handle: r.get(2).map_err(Error::store)?,
            title: r.get(3).map_err(Error::store)?,
            description: r.get(4).map_err(Error::store)?,
            category: r.get(5).map_err(Error::store)?,
            tags: serde_json::from_str(&tags).map_err(corrupt)?,
            image_url: r.get(7).map_err(Error::store)?,
            variants: variants.remove(&pk).unwrap_or_default(),
        };
        found.insert(pk, product);
    }
    Ok(pks.iter().filter_map(|pk| found.remove(pk)).collect())
}

fn search_page(
    conn: &Connection,
    ranks: &RankCache,
    plan: &Plan,
    after: Option<Position>,
) -> Result<SearchPage> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // One read transaction, so the page and its variants come from the same
    // snapshot even if an import commits in between.
    let tx = conn.unchecked_transaction().map_err(Error::store)?;
    let mut hits = match (plan.terms.is_empty(), after) {
        (true, None) => listed(conn, plan, None)?,
        (true, Some(Position::Listed { key, id })) => listed(conn, plan, Some((key, id)))?,
        (false, None) => {
            let hits = ranked_page(conn, ranks, plan, Mode::All, None)?;
            if hits.is_empty() && plan.terms.len() > 1 {
                ranked_page(conn, ranks, plan, Mode::Any, None)?
            } else {
                hits
            }
        }
        (false, Some(Position::Ranked { mode, score, pk })) => {
            ranked_page(conn, ranks, plan, mode, Some((score, pk)))?
        }
        // The fingerprint check makes these unreachable: a cursor carries
        // the kind of search that issued it.
        (_, Some(_)) => return Err(Error::invalid("cursor does not fit this search")),
    };
    let more = hits.len() > plan.limit;
    hits.truncate(plan.limit);
    let next_cursor = match hits.last() {
        Some((_, pos)) if more => Some(encode_cursor(plan, pos)?),
        _ => None,
    };
    let pks: Vec<i64> = hits.iter().map(|(pk, _)| *pk).collect();
    let products = load_products(conn, &pks)?;
    tx.finish().map_err(Error::store)?;
    Ok(SearchPage { products, next_cursor })
}

/// The product found by one of the `BY_*` queries (a unique key to a
/// product row key and, for variant lookups, the variant id), with its
/// variants, read in one snapshot.
fn lookup(
    conn: &Connection,
    sql: &'static str,
    value: &str,
) -> Result<Option<(Product, Option<String>)>> {
    let tx = conn.unchecked_transaction().map_err(Error::store)?;
    let found: Option<(i64, Option<String>)> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([value], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(Error::store)?;
    let out = match found {
        Some((pk, variant)) => load_products(conn, &[pk])?.pop().map(|p| (p, variant)),
        None => None,
    };
    tx.finish().map_err(Error::store)?;
    Ok(out)
}

const BY_ID: &str = "SELECT pk, NULL FROM products WHERE id = ?1";
const BY_HANDLE: &str = "SELECT pk, NULL FROM products WHERE handle = ?1";
const BY_VARIANT: &str = "SELECT product_pk, id FROM variants WHERE id = ?1";
const BY_SKU: &str = "SELECT product_pk, id FROM variants WHERE sku = ?1";

fn with_variant(found: Option<(Product, Option<String>)>) -> Result<Option<(Product, VariantId)>> {
    match found {
        Some((product, Some(variant))) => {
            Ok(Some((product, VariantId::parse(&variant).map_err(corrupt)?)))
        }
        _ => Ok(None),
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let plan = Plan::from_query(query)?;
        let after = query.cursor.as_deref().map(|c| decode_cursor(c, &plan)).transpose()?;
        let ranks = Arc::clone(&self.ranks);
        self.db.read(move |conn| search_page(conn, &ranks, &plan, after)).await
    }

    async fn product(&self, id: &ProductId) -> Result<Option<Product>> {
        let id = id.as_str().to_owned();
        Ok(self.db.read(move |conn| lookup(conn, BY_ID, &id)).await?.map(|(p, _)| p))
    }

    async fn product_by_handle(&self, handle: &str) -> Result<Option<Product>> {
        let handle = handle.to_owned();
        Ok(self.db.read(move |conn| lookup(conn, BY_HANDLE, &handle)).await?.map(|(p, _)| p))
    }

    async fn variant(&self, id: &VariantId) -> Result<Option<(Product, VariantId)>> {
        let id = id.as_str().to_owned();
        with_variant(self.db.read(move |conn| lookup(conn, BY_VARIANT, &id)).await?)
    }

    async fn by_sku(&self, sku: &Sku) -> Result<Option<(Product, VariantId)>> {
        let sku = sku.as_str().to_owned();
        with_variant(self.db.read(move |conn| lookup(conn, BY_SKU, &sku)).await?)
    }

    async fn categories(&self) -> Result<Vec<CategoryNode>> {
        self.db
            .read(|conn| {
                // Grouping by the indexed key reads the index alone.
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT category_key, COUNT(*) FROM products GROUP BY category_key",
                    )
                    .map_err(Error::store)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(Error::store)?;
                let mut paths = Vec::new();
                for row in rows {
                    let (key, count) = row.map_err(Error::store)?;
                    let path = key.strip_suffix('/').unwrap_or(&key).to_owned();
                    paths.push((path, u64::try_from(count).unwrap_or(0)));
                }
                Ok(CategoryNode::build_tree(&paths))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::adapters::sqlite::db::STOCK_MIGRATION;
    use crate::domain::ErrorCode;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Arc<Db>,
        catalog: SqliteCatalog,
    }

    fn migrations() -> Vec<Migration> {
        crate::adapters::sqlite::migrations()
    }

    fn open() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("catalog.db"), &migrations()).unwrap();
        Fixture { _dir: dir, catalog: SqliteCatalog::new(Arc::clone(&db)), db }
    }

    fn demo_products() -> Vec<Product> {
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/catalog.json")).unwrap();
        catalog_import::from_json(&bytes).unwrap()
    }

    async fn demo() -> Fixture {
        let f = open();
        f.catalog.import(demo_products()).await.unwrap();
        f
    }

    fn text(t: &str) -> SearchQuery {
        SearchQuery { text: t.to_owned(), ..SearchQuery::default() }
    }

    async fn exec(f: &Fixture, sql: &'static str, params: Vec<&'static str>) {
        f.db.write(move |c| {
            c.execute(sql, rusqlite::params_from_iter(params)).map(|_| ()).map_err(Error::store)
        })
        .await
        .unwrap();
    }

    /// Every product id the query yields, following cursors to the end.
    async fn walk(c: &SqliteCatalog, mut q: SearchQuery) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..1_000 {
            let page = c.search(&q).await.unwrap();
            assert!(page.products.len() <= q.limit.max(1) as usize || q.limit == 0);
            out.extend(page.products.iter().map(|p| p.id.as_str().to_owned()));
            match page.next_cursor {
                Some(cursor) => q.cursor = Some(cursor),
                None => return out,
            }
        }
        panic!("pagination did not end");
    }

    fn set(ids: &[String]) -> HashSet<String> {
        ids.iter().cloned().collect()
    }

    /// The ids of demo products satisfying `pred`, as the oracle for filters.
    fn demo_where(pred: impl Fn(&Product) -> bool) -> HashSet<String> {
        demo_products().iter().filter(|p| pred(p)).map(|p| p.id.as_str().to_owned()).collect()
    }

    #[tokio::test]
    async fn import_reports_the_demo_catalog() {
        let f = open();
        let report = f.catalog.import(demo_products()).await.unwrap();
        assert_eq!(
            report,
            ImportReport {
                products: 77,
                variants: 157,
                categories: 19,
                sold_out: 4,
                catalog_products: 77
            }
        );
    }

    #[tokio::test]
    async fn a_distinctive_word_puts_its_product_first() {
        let f = demo().await;
        let cases = [
            ("espresso", "p-dual-boiler-espresso-machine"),
            ("chelsea", "p-leather-chelsea-boot"),
            ("Lighthouse", "p-the-lighthouse-keepers-daughter"),
            ("hammock", "p-parachute-nylon-hammock"),
            ("sourdough", "p-the-patient-loaf"),
            ("dutch oven", "p-enameled-dutch-oven"),
            ("noise cancelling headphones", "p-noise-cancelling-headphones"),
            // Stemming: the title says "Headphones".
            ("headphone", "p-noise-cancelling-headphones"),
            // Prefix matching on the last word.
            ("turntab", "p-belt-drive-turntable"),
            ("jigsaw puzz", "p-alpine-lake-jigsaw-puzzle"),
            // A title word outranks the same word in descriptions.
            ("doorbell", "p-video-doorbell"),
            ("gift card", "p-digital-gift-card"),
        ];
        for (q, want) in cases {
            let page = f.catalog.search(&text(q)).await.unwrap();
            let first = page.products.first().map(|p| p.id.as_str());
            assert_eq!(first, Some(want), "{q:?}");
        }
    }

    #[tokio::test]
    async fn all_words_must_match_unless_none_does() {
        let f = demo().await;
        // "wool" matches several products; with "slipper" only one has both.
        let both = walk(&f.catalog, text("wool slipper")).await;
        assert_eq!(both, vec!["p-felted-wool-slipper"]);
        // No product is both a tent and a unicorn, so the search falls back
        // to either word, and the cursor keeps paging in that mode.
        let q = SearchQuery { limit: 1, ..text("unicorn tent") };
        let page = f.catalog.search(&q).await.unwrap();
        assert_eq!(page.products[0].id.as_str(), "p-two-person-backpacking-tent");
        let all = walk(&f.catalog, q).await;
        assert_eq!(all, walk(&f.catalog, text("tent")).await);
    }

    #[tokio::test]
    async fn category_filter_covers_the_subtree() {
        let f = demo().await;
        let cases = [
            ("apparel", demo_where(|p| p.category.starts_with("apparel/"))),
            ("apparel/shoes", demo_where(|p| p.category == "apparel/shoes")),
            (" /Apparel/Shoes/ ", demo_where(|p| p.category == "apparel/shoes")),
            ("gift-cards", demo_where(|p| p.category == "gift-cards")),
            ("app", HashSet::new()),
            ("apparel/shoes/boots", HashSet::new()),
        ];
        for (category, want) in cases {
            let q = SearchQuery { category: Some(category.into()), limit: 7, ..Default::default() };
            let got = walk(&f.catalog, q).await;
            assert_eq!(set(&got), want, "{category:?}");
            assert_eq!(got.len(), want.len(), "{category:?}: duplicates");
        }
        assert_eq!(demo_where(|p| p.category.starts_with("apparel/")).len(), 18);
        // Text and category together.
        let q = SearchQuery { category: Some("books".into()), ..text("hiking") };
        let got = walk(&f.catalog, q).await;
        assert_eq!(got, vec!["p-pacific-crest-field-guide"]);
    }

    #[tokio::test]
    async fn every_tag_must_be_present_exactly() {
        let f = demo().await;
        let has = |p: &Product, t: &str| p.tags.iter().any(|x| x.eq_ignore_ascii_case(t));
        let cases: Vec<(Vec<&str>, HashSet<String>)> = vec![
            (vec!["waterproof"], demo_where(|p| has(p, "waterproof"))),
            (vec!["WATERPROOF"], demo_where(|p| has(p, "waterproof"))),
            (
                vec!["camping", "ultralight"],
                demo_where(|p| has(p, "camping") && has(p, "ultralight")),
            ),
            (vec!["cotton", "linen"], HashSet::new()),
            (vec!["usb"], HashSet::new()),
            (vec!["usb-c", " ", "usb-c"], demo_where(|p| has(p, "usb-c"))),
        ];
        for (tags, want) in cases {
            assert!(tags.len() == 1 || !want.is_empty() || tags.contains(&"linen"));
            let q = SearchQuery {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            };
            assert_eq!(set(&walk(&f.catalog, q).await), want, "{tags:?}");
        }
    }

    #[tokio::test]
    async fn price_bounds_are_inclusive_and_checked() {
        let f = demo().await;
        let within = |lo: i64, hi: i64| {
            demo_where(move |p| p.variants.iter().any(|v| (lo..=hi).contains(&v.price.minor())))
        };
        let cases = [
            (Some(5_800), Some(5_800), within(5_800, 5_800)),
            (None, Some(999), within(0, 999)),
            (Some(50_000), None, within(50_000, i64::MAX)),
            (Some(0), Some(i64::MAX), within(0, i64::MAX)),
            (Some(-5), Some(0), HashSet::new()),
        ];
        for (lo, hi, want) in cases {
            let q = SearchQuery { price_min: lo, price_max: hi, limit: 50, ..Default::default() };
            let got = walk(&f.catalog, q).await;
            assert_eq!(set(&got), want, "{lo:?}..{hi:?}");
        }
        assert!(within(5_800, 5_800).contains("p-linen-camp-shirt"));
        let q = SearchQuery { price_min: Some(1_000), price_max: Some(999), ..Default::default() };
        assert_eq!(f.catalog.search(&q).await.unwrap_err().code(), ErrorCode::InvalidInput);
    }

    #[tokio::test]
    async fn in_stock_reads_the_shared_stock_table() {
        let f = demo().await;
        let in_stock = SearchQuery { in_stock_only: true, ..Default::default() };
        let got = set(&walk(&f.catalog, in_stock.clone()).await);
        assert_eq!(got, demo_where(|p| p.variants.iter().any(|v| v.stock > 0)));
        assert_eq!(got.len(), 73);
        // A checkout sells the last chef's knife: the store decrements stock.
        exec(&f, "UPDATE stock SET quantity = 0 WHERE sku = ?1", vec!["CHEFS-KNIFE-STANDARD"])
            .await;
        let got = set(&walk(&f.catalog, in_stock.clone()).await);
        assert!(!got.contains("p-chefs-knife"));
        assert_eq!(got.len(), 72);
        let knife =
            f.catalog.product(&ProductId::parse("p-chefs-knife").unwrap()).await.unwrap().unwrap();
        assert_eq!(knife.variants[0].stock, 0);
        // The same variant must be in range and in stock: only the copper
        // kettle costs 95.00, and it is now sold out.
        exec(&f, "UPDATE stock SET quantity = 0 WHERE sku = ?1", vec!["GOOSENECK-KETTLE-COPPER"])
            .await;
        let q = SearchQuery { price_min: Some(9_500), price_max: Some(9_500), ..text("kettle") };
        assert_eq!(walk(&f.catalog, q.clone()).await, vec!["p-gooseneck-kettle"]);
        let q = SearchQuery { in_stock_only: true, ..q };
        assert!(walk(&f.catalog, q).await.is_empty());
    }

    #[tokio::test]
    async fn pages_cover_everything_once_in_a_stable_order() {
        let f = demo().await;
        let queries = [
            SearchQuery::default(),
            text("cotton"),
            // Falls back to any word: many results with tied and close scores.
            text("shirt kettle tent lantern coffee"),
            SearchQuery { category: Some("apparel".into()), ..Default::default() },
            SearchQuery {
                category: Some("home".into()),
                in_stock_only: true,
                ..Default::default()
            },
        ];
        for q in queries {
            let whole = walk(&f.catalog, SearchQuery { limit: 50, ..q.clone() }).await;
            assert!(!whole.is_empty(), "{q:?}");
            for limit in [1, 3, 7] {
                let paged = walk(&f.catalog, SearchQuery { limit, ..q.clone() }).await;
                assert_eq!(paged, whole, "{q:?} limit {limit}");
            }
            assert_eq!(set(&whole).len(), whole.len(), "{q:?}: duplicates");
        }
        assert_eq!(
            walk(&f.catalog, SearchQuery { limit: 9, ..Default::default() }).await.len(),
            77
        );
    }

    #[tokio::test]
    async fn listings_order_by_id_or_by_category_path() {
        let f = demo().await;
        let all = walk(&f.catalog, SearchQuery { limit: 13, ..Default::default() }).await;
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        let home = SearchQuery { category: Some("home".into()), limit: 4, ..Default::default() };
        let got = walk(&f.catalog, home).await;
        let mut want: Vec<(String, String)> = demo_products()
            .into_iter()
            .filter(|p| p.category.starts_with("home/"))
            .map(|p| (p.category, p.id.as_str().to_owned()))
            .collect();
        want.sort();
        assert_eq!(got, want.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
    }

    /// A listing may start from a tag or price index or walk the listing
    /// order (see `driver`); every start must give the same pages.
    #[tokio::test]
    async fn listing_strategies_agree() {
        let f = demo().await;
        let has = |p: &Product, t: &str| p.tags.iter().any(|x| x.eq_ignore_ascii_case(t));
        let priced = |p: &Product, lo: i64, hi: i64| {
            p.variants.iter().any(|v| (lo..=hi).contains(&v.price.minor()))
        };
        let cases: Vec<(SearchQuery, HashSet<String>)> = vec![
            (
                SearchQuery { tags: vec!["gift".into()], ..Default::default() },
                demo_where(|p| has(p, "gift")),
            ),
            (
                SearchQuery { tags: vec!["gift".into(), "wool".into()], ..Default::default() },
                demo_where(|p| has(p, "gift") && has(p, "wool")),
            ),
            (
                SearchQuery {
                    price_min: Some(2_000),
                    price_max: Some(5_000),
                    ..Default::default()
                },
                demo_where(|p| priced(p, 2_000, 5_000)),
            ),
            (
                SearchQuery {
                    category: Some("home".into()),
                    tags: vec!["coffee".into()],
                    price_max: Some(9_000),
                    ..Default::default()
                },
                demo_where(|p| {
                    p.category.starts_with("home/") && has(p, "coffee") && priced(p, 0, 9_000)
                }),
            ),
        ];
        for (q, want) in cases {
            let plan = Plan::from_query(&SearchQuery { limit: 2, ..q.clone() }).unwrap();
            let mut drivers = vec![None, Some(Driver::Price(0, i64::MAX))];
            drivers.extend(plan.tags.iter().map(|t| Some(Driver::Tag(t.clone()))));
            if let Some((lo, hi)) = plan.price {
                drivers.push(Some(Driver::Price(lo, hi)));
            }
            let mut runs = Vec::new();
            for driver in drivers {
                let plan = plan.clone();
                let ids =
                    f.db.read(move |conn| {
                        let mut ids = Vec::new();
                        let mut after = None;
                        for _ in 0..100 {
                            let mut hits = listed_from(conn, &plan, after.clone(), driver.clone())?;
                            let more = hits.len() > plan.limit;
                            hits.truncate(plan.limit);
                            for (pk, pos) in hits {
                                let Position::Listed { key, id } = pos else { panic!("{pk}") };
                                ids.push(id.clone());
                                after = Some((key, id));
                            }
                            if !more {
                                return Ok(ids);
                            }
                        }
                        panic!("pagination did not end");
                    })
                    .await
                    .unwrap();
                runs.push(ids);
            }
            assert!(!want.is_empty(), "{q:?}");
            assert_eq!(set(&runs[0]), want, "{q:?}");
            for run in &runs {
                assert_eq!(run, &runs[0], "{q:?}");
            }
            assert_eq!(walk(&f.catalog, q.clone()).await, runs[0], "{q:?}");
        }
    }

    /// Category and tag filters also narrow the full-text query; that must
    /// never change which products a text search returns.
    #[tokio::test]
    async fn filters_on_text_search_are_exact() {
        let f = demo().await;
        let has = |p: &Product, t: &str| p.tags.iter().any(|x| x.eq_ignore_ascii_case(t));
        let filters: Vec<(SearchQuery, HashSet<String>)> = vec![
            (
                SearchQuery { category: Some("home".into()), ..Default::default() },
                demo_where(|p| p.category.starts_with("home/")),
            ),
            (
                SearchQuery { category: Some("Outdoors/Camping".into()), ..Default::default() },
                demo_where(|p| p.category == "outdoors/camping"),
            ),
            (
                SearchQuery { tags: vec!["Usb-C".into()], ..Default::default() },
                demo_where(|p| has(p, "usb-c")),
            ),
            (
                SearchQuery {
                    category: Some("electronics".into()),
                    tags: vec!["wireless".into()],
                    ..Default::default()
                },
                demo_where(|p| p.category.starts_with("electronics/") && has(p, "wireless")),
            ),
            (
                SearchQuery { in_stock_only: true, price_max: Some(5_000), ..Default::default() },
                demo_where(|p| p.variants.iter().any(|v| v.stock > 0 && v.price.minor() <= 5_000)),
            ),
        ];
        for words in ["wool", "coffee", "rechargeable", "cotton socks", "gift", "bluetooth speaker"]
        {
            let unfiltered = set(&walk(&f.catalog, text(words)).await);
            for (filter, allowed) in &filters {
                let q = SearchQuery { text: words.to_owned(), limit: 3, ..filter.clone() };
                let got = walk(&f.catalog, q).await;
                let want: HashSet<String> = unfiltered.intersection(allowed).cloned().collect();
                // An empty intersection may fall back to any word; skip it.
                if !want.is_empty() {
                    assert_eq!(set(&got), want, "{words:?} with {filter:?}");
                }
            }
        }
    }

    #[tokio::test]
    async fn common_words_do_not_search() {
        let f = demo().await;
        let cases = [
            ("a tent for the trip", "tent trip"),
            ("THE hammock", "hammock"),
            ("the", ""),
            ("with and or", ""),
        ];
        for (q, same_as) in cases {
            assert_eq!(
                walk(&f.catalog, text(q)).await,
                walk(&f.catalog, text(same_as)).await,
                "{q}"
            );
        }
    }

    #[tokio::test]
    async fn page_size_defaults_and_caps() {
        let f = demo().await;
        for (limit, want) in
            [(0, DEFAULT_PAGE_SIZE), (1, 1), (50, 50), (51, 50), (u32::MAX, MAX_PAGE_SIZE)]
        {
            let page =
                f.catalog.search(&SearchQuery { limit, ..Default::default() }).await.unwrap();
            assert_eq!(page.products.len(), want as usize, "limit {limit}");
            assert!(page.next_cursor.is_some());
        }
    }

    #[tokio::test]
    async fn foreign_and_tampered_cursors_are_refused() {
        let f = demo().await;
        let q = SearchQuery { limit: 2, ..text("cotton") };
        let cursor = f.catalog.search(&q).await.unwrap().next_cursor.unwrap();
        // The same query with another page size may keep the cursor.
        let ok = SearchQuery { limit: 5, cursor: Some(cursor.clone()), ..q.clone() };
        assert!(f.catalog.search(&ok).await.is_ok());
        let mut flipped = cursor.clone().into_bytes();
        let mid = flipped.len() / 2;
        flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
        let json = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let forged = {
            let mut wire: CursorWire =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&cursor).unwrap()).unwrap();
            wire.id = "p-zzz".into();
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap())
        };
        let listing = SearchQuery { limit: 2, ..Default::default() };
        let listing_cursor = f.catalog.search(&listing).await.unwrap().next_cursor.unwrap();
        let cases: Vec<(&str, SearchQuery, String)> = vec![
            ("other text", text("linen"), cursor.clone()),
            ("text cursor on a listing", listing.clone(), cursor.clone()),
            ("other filter", SearchQuery { in_stock_only: true, ..q.clone() }, cursor.clone()),
            ("flipped byte", q.clone(), String::from_utf8(flipped).unwrap()),
            ("forged position", q.clone(), forged),
            ("not base64", q.clone(), "!!!".into()),
            ("not json", q.clone(), json("hello")),
            ("wrong shape", q.clone(), json(r#"{"v":1}"#)),
            ("huge", q.clone(), "A".repeat(10_000)),
            ("listing cursor", q.clone(), listing_cursor),
            ("empty", q.clone(), String::new()),
        ];
        for (name, query, cursor) in cases {
            let query = SearchQuery { cursor: Some(cursor), ..query };
            let err = f.catalog.search(&query).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{name}: {err}");
        }
    }

    /// Inputs that are FTS5 or SQL syntax, or just awkward, must search as
    /// plain words: never a syntax error, never a panic.
    #[tokio::test]
    async fn hostile_text_is_only_ever_words() {
        let f = demo().await;
        let long_words = "shirt ".repeat(80);
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            ("quoted or", r#""foo" OR bar*"#.into(), None),
            ("near", "NEAR(".into(), None),
            ("near group", "NEAR(linen shirt, 2)".into(), Some("p-linen-camp-shirt")),
            ("unmatched quote", "\"linen".into(), Some("p-linen-camp-shirt")),
            ("lone quote", "\"".into(), None),
            ("minus", "-".into(), None),
            ("caret", "^linen".into(), Some("p-linen-camp-shirt")),
            ("column filter", "title:espresso".into(), Some("p-dual-boiler-espresso-machine")),
            ("column set", "{title description}: kettle".into(), Some("p-gooseneck-kettle")),
            ("operators only", "AND OR NOT".into(), None),
            ("star", "*".into(), None),
            ("parens", "((((".into(), None),
            ("sql", "'; DROP TABLE products; --".into(), None),
            ("nul", "linen\0shirt".into(), Some("p-linen-camp-shirt")),
            ("emoji", "🏕️ tent 🔥".into(), Some("p-two-person-backpacking-tent")),
            ("diacritics", "CAFÉ crème hammock".into(), Some("p-parachute-nylon-hammock")),
            ("many words", long_words.clone(), Some("p-linen-camp-shirt")),
            ("one huge word", "x".repeat(400), None),
        ];
        for (name, t, first) in cases {
            let page = f.catalog.search(&text(&t)).await;
            let page = page.unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(want) = first {
                let ids: Vec<_> = page.products.iter().map(|p| p.id.as_str()).collect();
                assert!(ids.contains(&want), "{name}: {ids:?}");
            }
        }
        let err = f.catalog.search(&text(&"a".repeat(MAX_TEXT_CHARS + 1))).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
        // The table survived the SQL-looking input.
        assert_eq!(walk(&f.catalog, SearchQuery::default()).await.len(), 77);
    }

    #[test]
    fn arbitrary_text_never_errors_except_as_invalid_input() {
        use proptest::prelude::*;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let f = rt.block_on(demo());
        let syntax = "[a-zA-Z0-9 \"*^():+\\-{}.,'\\\\]{0,40}";
        let strategy =
            prop_oneof![any::<String>(), proptest::string::string_regex(syntax).unwrap()];
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        // Filters take arbitrary text too: they are bound as values and
        // hashed into index tokens, never spliced into a query.
        let filter = proptest::option::of(prop_oneof![
            any::<String>(),
            Just("home".to_owned()),
            Just("apparel/shoes".to_owned())
        ]);
        let inputs = (strategy, filter.clone(), filter, any::<bool>(), 0u32..60);
        runner
            .run(&inputs, |(t, category, tag, in_stock_only, limit)| {
                let q = SearchQuery {
                    text: t,
                    category,
                    tags: tag.into_iter().collect(),
                    in_stock_only,
                    limit,
                    ..SearchQuery::default()
                };
                match rt.block_on(f.catalog.search(&q)) {
                    Ok(page) => prop_assert!(page.products.len() <= MAX_PAGE_SIZE as usize),
                    Err(e) => prop_assert_eq!(e.code(), ErrorCode::InvalidInput, "{}", e),
                }
                Ok(())
            })
            .unwrap();
    }

    #[tokio::test]
    async fn invalid_queries_are_refused() {
        let f = demo().await;
        let cases = [
            ("text too long", text(&"word ".repeat(200))),
            (
                "too many tags",
                SearchQuery {
                    tags: (0..17).map(|i| format!("t{i}")).collect(),
                    ..Default::default()
                },
            ),
            (
                "category too long",
                SearchQuery { category: Some("a".repeat(201)), ..Default::default() },
            ),
            (
                "inverted price",
                SearchQuery { price_min: Some(2), price_max: Some(1), ..Default::default() },
            ),
        ];
        for (name, q) in cases {
            let err = f.catalog.search(&q).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{name}");
        }
    }

    #[tokio::test]
    async fn lookups_return_the_whole_product_with_stock() {
        let f = demo().await;
        let pid = |s: &str| ProductId::parse(s).unwrap();
        let vid = |s: &str| VariantId::parse(s).unwrap();
        let sku = |s: &str| Sku::parse(s).unwrap();
        let by_id = f.catalog.product(&pid("p-oxford-button-down")).await.unwrap().unwrap();
        assert_eq!(by_id.title, "Oxford Button-Down Shirt");
        assert_eq!(by_id.variants.len(), 4);
        assert_eq!(by_id.variants[3].title, "Blue / L", "variants keep the file's order");
        assert_eq!(by_id.variants[3].stock, 2);
        assert_eq!(by_id.tags, vec!["cotton", "office", "classic"]);
        let by_handle = f.catalog.product_by_handle("oxford-button-down").await.unwrap();
        let (by_variant, v) =
            f.catalog.variant(&vid("v-oxford-button-down-blue-m")).await.unwrap().unwrap();
        assert_eq!(v, vid("v-oxford-button-down-blue-m"));
        let (by_sku, v) =
            f.catalog.by_sku(&sku("OXFORD-BUTTON-DOWN-WHITE-L")).await.unwrap().unwrap();
        assert_eq!(v, vid("v-oxford-button-down-white-l"));
        for (name, found) in
            [("handle", by_handle), ("variant", Some(by_variant)), ("sku", Some(by_sku))]
        {
            assert_eq!(found.as_ref(), Some(&by_id), "{name}");
        }
        assert!(f.catalog.product(&pid("p-nope")).await.unwrap().is_none());
        assert!(f.catalog.product_by_handle("nope").await.unwrap().is_none());
        assert!(f.catalog.variant(&vid("v-nope")).await.unwrap().is_none());
        assert!(f.catalog.by_sku(&sku("NOPE")).await.unwrap().is_none());
        // The e-book of a printed book ships nothing.
        let (book, v) = f.catalog.by_sku(&sku("SALT-AND-STATIC-E-BOOK")).await.unwrap().unwrap();
        assert!(!book.variant(&v).unwrap().requires_shipping);
    }

    #[tokio::test]
    async fn categories_form_a_counted_tree() {
        let f = demo().await;
        let tree = f.catalog.categories().await.unwrap();
        let total: u64 = tree.iter().map(|n| n.product_count).sum();
        assert_eq!(total, 77);
        let names: Vec<_> = tree.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "apparel",
                "beauty",
                "books",
                "electronics",
                "gift-cards",
                "home",
                "outdoors",
                "sports",
                "toys"
            ]
        );
        let apparel = &tree[0];
        assert_eq!(apparel.product_count, 18);
        let shoes = apparel.children.iter().find(|c| c.name == "shoes").unwrap();
        assert_eq!((shoes.path.as_str(), shoes.product_count), ("apparel/shoes", 5));
        for node in &tree {
            let children: u64 = node.children.iter().map(|c| c.product_count).sum();
            assert!(node.children.is_empty() || children == node.product_count, "{}", node.name);
        }
    }

    async fn snapshot(f: &Fixture) -> (Vec<Product>, Vec<CategoryNode>, usize) {
        let mut products = Vec::new();
        for id in walk(&f.catalog, SearchQuery::default()).await {
            products
                .push(f.catalog.product(&ProductId::parse(&id).unwrap()).await.unwrap().unwrap());
        }
        let hits = walk(&f.catalog, text("cotton")).await.len();
        (products, f.catalog.categories().await.unwrap(), hits)
    }

    async fn fts_integrity(f: &Fixture) {
        exec(f, "INSERT INTO products_fts (products_fts) VALUES ('integrity-check')", vec![]).await;
    }

    /// A database filled under the first schema (`100_catalog` only, mixed
    /// case categories as the first import kept them) upgrades in place on
    /// its next open, and filtered search finds its rows.
    #[tokio::test]
    async fn upgrades_a_database_from_the_first_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Db::open(&path, &[STOCK_MIGRATION, MIGRATIONS[0]]).unwrap();
        old.write(|c| {
            c.execute_batch(
                r#"INSERT INTO products (id, handle, title, description, category, tags, image_url)
                   VALUES ('p-old', 'old-kettle', 'Copper Kettle', 'A kettle.', 'Home/Kitchen',
                           '["Gift","copper"]', NULL);
                   INSERT INTO variants
                       (id, product_pk, position, sku, title, price, currency, requires_shipping)
                   VALUES ('v-old', 1, 0, 'OLD-1', 'One', 4200, 'USD', 1);
                   INSERT INTO product_tags (tag, product_pk) VALUES ('Gift', 1), ('copper', 1);
                   INSERT INTO stock (sku, quantity) VALUES ('OLD-1', 3);"#,
            )
            .map_err(Error::store)
        })
        .await
        .unwrap();
        drop(old);
        let db = Db::open(&path, &migrations()).unwrap();
        let f = Fixture { catalog: SqliteCatalog::new(Arc::clone(&db)), db, _dir: dir };
        let stored: (String, String) =
            f.db.read(|c| {
                c.query_row("SELECT category, filter_keys FROM products", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(Error::store)
            })
            .await
            .unwrap();
        let product =
            f.catalog.product(&ProductId::parse("p-old").unwrap()).await.unwrap().unwrap();
        assert_eq!(stored, ("home/kitchen".to_owned(), filter_keys(&product)));
        assert_eq!(product.variants[0].stock, 3);
        let q = SearchQuery {
            category: Some("home".into()),
            tags: vec!["GIFT".into()],
            ..text("kettle")
        };
        assert_eq!(walk(&f.catalog, q).await, vec!["p-old"]);
        fts_integrity(&f).await;
        f.catalog.import(vec![product]).await.unwrap();
        fts_integrity(&f).await;
        assert_eq!(walk(&f.catalog, text("copper kettle")).await, vec!["p-old"]);
    }

    #[tokio::test]
    async fn reimport_is_idempotent() {
        let f = demo().await;
        let before = snapshot(&f).await;
        let report = f.catalog.import(demo_products()).await.unwrap();
        assert_eq!(report.catalog_products, 77);
        assert_eq!(snapshot(&f).await, before);
        fts_integrity(&f).await;
    }

    #[tokio::test]
    async fn reimport_updates_text_variants_tags_and_stock() {
        let f = demo().await;
        let mut products = demo_products();
        let skillet = products.iter_mut().find(|p| p.id.as_str() == "p-cast-iron-skillet").unwrap();
        skillet.title = "Carbon Steel Wok".into();
        skillet.tags = vec!["wok".into()];
        skillet.variants.truncate(1);
        skillet.variants[0].stock = 99;
        f.catalog.import(products).await.unwrap();
        fts_integrity(&f).await;
        let ids = |q| async { walk(&f.catalog, q).await };
        assert_eq!(ids(text("wok")).await, vec!["p-cast-iron-skillet"]);
        // The old title and tag are gone from the index (the description stays).
        let cast_iron = ids(text("cast iron")).await;
        assert!(cast_iron.contains(&"p-enameled-dutch-oven".to_owned()));
        assert!(!cast_iron.contains(&"p-cast-iron-skillet".to_owned()));
        let tagged = SearchQuery { tags: vec!["cast-iron".into()], ..Default::default() };
        assert!(ids(tagged).await.is_empty());
        let p = f
            .catalog
            .product(&ProductId::parse("p-cast-iron-skillet").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.variants.len(), 1);
        assert_eq!(p.variants[0].stock, 99);
        let gone = VariantId::parse("v-cast-iron-skillet-12-inch").unwrap();
        assert!(f.catalog.variant(&gone).await.unwrap().is_none());
    }

    /// The cached ranking gives exactly the pages the index gives, page by
    /// page, with and without filters, within and past the cached prefix.
    #[tokio::test]
    async fn cached_rankings_match_the_index() {
        let f = open();
        f.catalog.import(catalog_import::synthetic_catalog(3_000, 7)).await.unwrap();
        let queries = vec![
            SearchQuery { limit: 50, ..text("shirt") },
            SearchQuery { limit: 50, ..text("linen") },
            SearchQuery { limit: 7, ..text("cotton shirt") },
            SearchQuery { limit: 50, in_stock_only: true, ..text("shirt") },
            SearchQuery {
                limit: 20,
                price_min: Some(0),
                price_max: Some(5_000),
                ..text("flannel")
            },
            SearchQuery { limit: 10, tags: vec!["gift".into()], ..text("card") },
        ];
        for q in queries {
            let plan = Plan::from_query(&q).unwrap();
            let (mut after, mut pages, mut total) = (None, 0, 0);
            loop {
                let p = plan.clone();
                let (cached, direct) =
                    f.db.read(move |conn| {
                        let ranks = RankCache::default();
                        let cached = ranked_page(conn, &ranks, &p, Mode::All, after)?;
                        Ok((cached, ranked(conn, &p, Mode::All, after)?))
                    })
                    .await
                    .unwrap();
                assert_eq!(cached, direct, "{q:?} page {pages}");
                total += direct.len().min(plan.limit);
                pages += 1;
                match direct.get(plan.limit) {
                    Some(_) => match direct[plan.limit - 1].1 {
                        Position::Ranked { score, pk, .. } => after = Some((score, pk)),
                        _ => unreachable!("a ranked search gives ranked positions"),
                    },
                    None => break,
                }
            }
            assert!(total > 0, "{q:?} finds something");
        }
    }

    /// A ranking is not reused once a product changes, even when the change
    /// comes through another handle on the database (another process).
    #[tokio::test]
    async fn a_changed_catalog_is_ranked_afresh() {
        let f = demo().await;
        assert!(walk(&f.catalog, text("wok")).await.is_empty());
        let mut products = demo_products();
        let skillet = products.iter_mut().find(|p| p.id.as_str() == "p-cast-iron-skillet").unwrap();
        skillet.title = "Carbon Steel Wok".into();
        SqliteCatalog::new(Arc::clone(&f.db)).import(products).await.unwrap();
        assert_eq!(walk(&f.catalog, text("wok")).await, vec!["p-cast-iron-skillet"]);
    }

    #[tokio::test]
    async fn conflicts_with_existing_products_roll_back() {
        let f = demo().await;
        let before = snapshot(&f).await;
        let mut stolen_handle = synthetic(1);
        stolen_handle[0].handle = "linen-camp-shirt".into();
        let mut stolen_sku = synthetic(1);
        stolen_sku[0].variants[0].sku = Sku::parse("LINEN-CAMP-SHIRT-M").unwrap();
        let mut stolen_variant = synthetic(1);
        stolen_variant[0].variants[0].id = VariantId::parse("v-linen-camp-shirt-m").unwrap();
        let cases = [
            ("handle", stolen_handle, "already used by product \"p-linen-camp-shirt\""),
            ("sku", stolen_sku, "p-linen-camp-shirt"),
            ("variant id", stolen_variant, "p-linen-camp-shirt"),
        ];
        for (name, products, want) in cases {
            let err = f.catalog.import(products).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{name}");
            assert!(err.message().contains(want), "{name}: {err}");
        }
        assert_eq!(snapshot(&f).await, before);
    }

    fn synthetic(n: usize) -> Vec<Product> {
        catalog_import::synthetic_catalog(n, 42)
    }

    #[tokio::test]
    async fn import_refuses_invalid_products_built_in_code() {
        let f = open();
        let mut products = synthetic(3);
        products[1].title = " ".into();
        let err = f.catalog.import(products).await.unwrap_err();
        assert!(err.message().contains("product #2"), "{err}");
        let mut products = synthetic(3);
        products[2].id = products[0].id.clone();
        assert!(f
            .catalog
            .import(products)
            .await
            .unwrap_err()
            .message()
            .contains("duplicate product id"));
        assert!(walk(&f.catalog, SearchQuery::default()).await.is_empty());
    }

    #[tokio::test]
    async fn csv_sample_imports_and_searches() {
        let f = demo().await;
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/catalog-sample.csv"))
                .unwrap();
        let report = f.catalog.import(catalog_import::from_csv(&bytes).unwrap()).await.unwrap();
        assert_eq!(report.catalog_products, 77 + report.products as u64);
        let page = f.catalog.search(&text("audiobook")).await.unwrap();
        let book = &page.products[0];
        assert_eq!(book.id.as_str(), "p-csv-audiobook");
        assert!(!book.variants[0].requires_shipping);
        let hat = f.catalog.product_by_handle("waxed-rain-hat").await.unwrap().unwrap();
        assert_eq!(hat.variants.iter().map(|v| v.stock).collect::<Vec<_>>(), vec![12, 4]);
        let stationery = SearchQuery { category: Some("books".into()), ..Default::default() };
        assert!(walk(&f.catalog, stationery).await.contains(&"p-csv-field-notes".to_owned()));
    }
}
