//! The Shopify backend: the catalog and carts through the Storefront API,
//! orders through the Admin API, and Shopify's webhooks.
//!
//! This module owns everything that knows Shopify's wire shapes and turns
//! them into domain types; it knows nothing of MCP, UCP or HTTP routing. A
//! shop is reached at `https://{shop}.myshopify.com` by default (settings
//! `[shopify] store_domain`); tests point `api_base` at a local server.

pub mod admin;
pub mod client;
pub mod storefront;
pub mod webhooks;

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use admin::ShopifyAdmin;
pub use client::{RetryPolicy, ShopifyClient};
pub use storefront::ShopifyStorefront;

use crate::domain::{Currency, Error, Result};

/// Everything the Shopify adapters need, built from settings.
#[derive(Clone)]
pub struct ShopifyOptions {
    /// The shop's base URL, `https://{shop}.myshopify.com` in production.
    pub api_base: Url,
    /// The pinned API version (`2025-10`), used in every path.
    pub api_version: String,
    pub storefront_token: SecretString,
    /// Needed for order reads (`read_orders`, `read_fulfillments`).
    pub admin_token: Option<SecretString>,
    /// The shop's currency: prices in other currencies are refused.
    pub currency: Currency,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How long a catalog read is served from memory.
    pub cache_ttl: Duration,
    /// How many catalog reads the cache keeps at most.
    pub cache_max_entries: usize,
}

impl std::fmt::Debug for ShopifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyOptions")
            .field("api_base", &self.api_base.as_str())
            .field("api_version", &self.api_version)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

impl ShopifyOptions {
    /// The options the settings name, or `None` when no Storefront token is
    /// configured.
    pub fn from_settings(settings: &crate::settings::Settings) -> Option<Self> {
        let s = settings.shopify.as_ref()?;
        Some(Self {
            api_base: s.api_base.clone(),
            api_version: s.api_version.clone(),
            storefront_token: s.storefront_token.clone(),
            admin_token: s.admin_token.clone(),
            currency: settings.currency,
            timeout: s.timeout,
            retry: RetryPolicy { max_retries: s.max_retries, ..RetryPolicy::default() },
            cache_ttl: s.cache_ttl,
            cache_max_entries: s.cache_max_entries,
        })
    }

    /// `{api_base}/api/{version}/graphql.json`.
    pub fn storefront_url(&self) -> Result<Url> {
        self.api_base
            .join(&format!("api/{}/graphql.json", self.api_version))
            .map_err(Error::internal)
    }

    /// `{api_base}/admin/api/{version}/{path}`.
    pub fn admin_url(&self, path: &str) -> Result<Url> {
        self.api_base
            .join(&format!("admin/api/{}/{path}", self.api_version))
            .map_err(Error::internal)
    }

    /// The default shop URL for a store domain or shop name: a bare name
    /// `acme` becomes `https://acme.myshopify.com/`.
    pub fn shop_url(store_domain: &str) -> Result<Url> {
        let d = store_domain.trim().trim_end_matches('/');
        let host = if d.contains('.') { d.to_owned() } else { format!("{d}.myshopify.com") };
        let host = host.strip_prefix("https://").unwrap_or(&host).to_owned();
        Url::parse(&format!("https://{host}/")).map_err(|_| {
            Error::invalid(format!("store domain {store_domain:?} is not a host name"))
        })
    }
}

/// Splits a decimal string (`"29.99"`) into integer minor units of
/// `currency`, exponent-aware. Extra fractional digits are accepted only
/// when they are zeros (`"5.000"` USD), never rounded.
pub fn parse_amount(amount: &str, currency: Currency) -> Result<i64> {
    let bad =
        || crate::domain::Error::invalid(format!("shopify sent a malformed amount {amount:?}"));
    let s = amount.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let exp = usize::from(currency.exponent());
    let (kept, rest) = if frac.len() > exp { frac.split_at(exp) } else { (frac, "") };
    if rest.bytes().any(|b| b != b'0') {
        return Err(bad());
    }
    let mut digits = String::with_capacity(int.len() + exp);
    digits.push_str(int);
    digits.push_str(kept);
    for _ in kept.len()..exp {
        digits.push('0');
    }
    let v: i64 = digits.parse().map_err(|_| bad())?;
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_exponent() {
        let cases = [
            ("29.99", "USD", Some(2999)),
            ("29.9", "USD", Some(2990)),
            ("29", "USD", Some(2900)),
            ("5.000", "USD", Some(500)),
            ("1500.0", "JPY", Some(1500)),
            ("1.234", "KWD", Some(1234)),
            ("-2.50", "EUR", Some(-250)),
            ("1.005", "USD", None),
            ("", "USD", None),
            ("1e3", "USD", None),
            (".5", "USD", None),
            ("99999999999999999999", "USD", None),
        ];
        for (raw, cur, want) in cases {
            let got = parse_amount(raw, Currency::parse(cur).unwrap()).ok();
            assert_eq!(got, want, "{raw} {cur}");
        }
    }

    #[test]
    fn shop_urls_default_to_myshopify() {
        assert_eq!(
            ShopifyOptions::shop_url("acme").unwrap().as_str(),
            "https://acme.myshopify.com/"
        );
        assert_eq!(
            ShopifyOptions::shop_url("shop.example.com").unwrap().as_str(),
            "https://shop.example.com/"
        );
        assert!(ShopifyOptions::shop_url("bad host").is_err());
    }
}
