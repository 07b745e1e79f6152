//! Adapters: implementations of the ports in `ports.rs`. Each knows one
//! outside system (SQLite, a payment processor, a key file) and nothing of
//! the transports.

pub mod catalog_import;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod keyfile;
pub mod notify;
pub mod payments;
pub mod profile_fetcher;
pub mod records;
pub mod shopify;
pub mod sqlite;
pub mod webhooks;
