//! The embedded SQLite adapters: the durable store and the FTS5 catalog,
//! sharing one database file in the data dir.

pub mod catalog;
pub mod db;

pub use catalog::SqliteCatalog;
pub use db::Db;
