//! The embedded SQLite adapters: the durable store and the FTS5 catalog,
//! sharing one database file in the data dir.

pub mod db;

pub use db::Db;
