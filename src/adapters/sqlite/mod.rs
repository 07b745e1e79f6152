//! The embedded SQLite adapters: the durable store and the FTS5 catalog,
//! sharing one database file in the data dir.

pub mod catalog;
pub mod db;
pub mod store;

pub use catalog::SqliteCatalog;
pub use db::{Db, Migration};
pub use store::SqliteStore;

/// Every migration of the embedded database, in the order they apply: the
/// shared stock table first, then each adapter's tables. Add a new
/// adapter's migrations here, never in front of ones already shipped.
pub fn migrations() -> Vec<Migration> {
    let mut all = vec![db::STOCK_MIGRATION];
    all.extend_from_slice(store::MIGRATIONS);
    all.extend_from_slice(catalog::MIGRATIONS);
    all
}
