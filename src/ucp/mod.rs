//! UCP: the Universal Commerce Protocol's business side. Pure: profile
//! documents, negotiation and wire types, with no HTTP or storage.
//!
//! Two protocol versions are spoken. 2026-04-08 is the current one: its
//! profile is served at `/.well-known/ucp` and names the older one in
//! `supported_versions`. 2026-01-11 is the first release and differs on the
//! wire (capabilities as an array, handlers under `payment.handlers`); its
//! profile is a separate leaf document at `/.well-known/ucp/2026-01-11`.

pub mod negotiate;
pub mod pricing;
pub mod profile;
pub mod wire;

/// The primary protocol version this gateway speaks.
pub const VERSION: &str = "2026-04-08";

/// The first UCP release, still served for platforms that speak it.
pub const VERSION_2026_01_11: &str = "2026-01-11";

/// Every protocol version this gateway negotiates, newest first.
pub const SUPPORTED_VERSIONS: [&str; 2] = [VERSION, VERSION_2026_01_11];
