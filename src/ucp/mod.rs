//! UCP: the Universal Commerce Protocol's business side. Pure: profile
//! documents, negotiation and wire types, with no HTTP or storage.

pub mod profile;

/// The primary protocol version this gateway speaks.
pub const VERSION: &str = "2026-04-08";
