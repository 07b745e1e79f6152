//! Typed settings, layered: built-in defaults, then an optional TOML file,
//! then `AGENTGATE_*` environment variables (nested keys with `__`, e.g.
//! `AGENTGATE_FEES__BPS=75`), then command-line flags. Everything is checked
//! once at startup and a bad value stops the process with a message that
//! names the setting.
//!
//! Secrets (signing keys, API tokens, webhook secrets) are `SecretString`:
//! they deserialize, but they cannot be printed with `{:?}` or serialized,
//! so they cannot leak into logs or responses by accident.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::{Currency, Error, Result};
use crate::policy::{FeePolicy, GuardrailConfig};
use crate::ucp::pricing::{DiscountConfig, ShippingConfig};

/// A policy page shown to buyers at checkout (UCP `link.json`): terms,
/// privacy, refunds and the like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLink {
    /// Well-known values: `privacy_policy`, `terms_of_service`,
    /// `refund_policy`, `shipping_policy`, `faq`.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Which backend holds the durable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded SQLite database in `data_dir` (the default).
    Sqlite,
    /// An Amazon DynamoDB table (`[dynamodb]`), for the serverless
    /// deployment. Needs a build with the `aws` feature.
    Dynamodb,
}

/// Where the DynamoDB store lives (`[dynamodb]`, or
/// `AGENTGATE_DYNAMODB__TABLE` and friends). Read only when `store =
/// "dynamodb"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamoSettings {
    /// The table name (the SAM template passes its generated name).
    pub table: String,
    /// An endpoint override for a local stand-in such as `moto_server`;
    /// unset in AWS. An override means a local emulator, so when no
    /// `AWS_ACCESS_KEY_ID` is set dummy credentials are used with it.
    pub endpoint_url: Option<String>,
    /// The AWS region; unset means the SDK's usual sources (`AWS_REGION`,
    /// which Lambda always sets, then the profile).
    pub region: Option<String>,
}

impl Default for DynamoSettings {
    fn default() -> Self {
        Self { table: "agentgate".into(), endpoint_url: None, region: None }
    }
}

impl DynamoSettings {
    fn validate(&self) -> Result<()> {
        // DynamoDB's own rule for table names, checked here so a typo stops
        // the process at startup rather than failing the first request.
        let name_ok = (3..=255).contains(&self.table.len())
            && self.table.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !name_ok {
            return Err(bad(
                "dynamodb.table",
                "must be 3-255 characters of letters, digits, '_', '-' and '.'",
            ));
        }
        if let Some(u) = &self.endpoint_url {
            let parsed = url::Url::parse(u).map_err(|e| bad("dynamodb.endpoint_url", e))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(bad("dynamodb.endpoint_url", "must be an http(s) URL with a host"));
            }
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(bad("dynamodb.region", "must not be empty when set"));
        }
        Ok(())
    }
}

/// Which payment processor takes the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentsKind {
    /// Deterministic test tokens; no money moves (`adapters::payments::sandbox`).
    Sandbox,
    /// Stripe PaymentIntents (`adapters::payments::stripe`).
    Stripe,
}

/// Which commerce backend holds the catalog and takes the orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The SQLite catalog and store in the data dir (the default).
    #[default]
    Embedded,
    /// A Shopify shop: catalog and carts through the Storefront API, the
    /// buyer pays on Shopify's checkout (`[shopify]`, `docs/backends.md`).
    Shopify,
}

/// The Shopify backend (`[shopify]`), before checking. Tokens are not
/// here: they come from the environment only (`AGENTGATE_SHOPIFY_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopifyConfig {
    /// The shop, `acme` or `acme.myshopify.com` (or a custom domain).
    pub store_domain: Option<String>,
    /// The pinned Shopify API version (`YYYY-MM`).
    pub api_version: String,
    /// Overrides the shop URL; tests point it at a local server.
    pub api_base: Option<String>,
    /// Seconds a catalog read is served from memory; 0 turns caching off.
    pub cache_ttl_secs: u64,
    /// Catalog reads kept in memory at most.
    pub cache_max_entries: usize,
    /// Seconds one Shopify call may take, connecting included.
    pub timeout_secs: u64,
    /// Retries after a 429, a 5xx, `THROTTLED` or a network failure.
    pub max_retries: u32,
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        Self {
            store_domain: None,
            api_version: "2025-10".into(),
            api_base: None,
            cache_ttl_secs: 30,
            cache_max_entries: 1024,
            timeout_secs: 10,
            max_retries: 3,
        }
    }
}

/// The Shopify backend, checked.
#[derive(Debug, Clone)]
pub struct ShopifySettings {
    pub api_base: url::Url,
    pub api_version: String,
    pub storefront_token: SecretString,
    pub admin_token: Option<SecretString>,
    pub webhook_secret: Option<SecretString>,
    pub cache_ttl: std::time::Duration,
    pub cache_max_entries: usize,
    pub timeout: std::time::Duration,
    pub max_retries: u32,
}

/// How confirmation notifications leave the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifySender {
    /// Written to the log, for development and for merchants who mail
    /// from their own systems.
    Log,
    /// Posted to a transactional email API (Resend-style JSON).
    Http,
}

/// Confirmation notifications (`[notify]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub sender: NotifySender,
    /// The email API endpoint that takes `{from, to, subject, text}`;
    /// required with `sender = "http"`.
    pub url: Option<String>,
    /// The email API key, sent as a bearer token
    /// (`AGENTGATE_NOTIFY__API_KEY`); required with `sender = "http"`.
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// The sender address of confirmations.
    pub from: String,
    /// Where buyers reach the merchant, printed in every confirmation.
    pub support_email: String,
    pub support_url: Option<String>,
    pub timeout_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            sender: NotifySender::Log,
            url: None,
            api_key: None,
            from: "orders@localhost".into(),
            support_email: "support@localhost".into(),
            support_url: None,
            timeout_secs: 10,
        }
    }
}

impl NotifyConfig {
    fn validate(&self) -> Result<()> {
        if self.sender == NotifySender::Http {
            let ok =
                self.url.as_deref().and_then(|u| url::Url::parse(u).ok()).is_some_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                });
            if !ok {
                return Err(bad("notify.url", "sender = \"http\" needs an http(s) URL"));
            }
            if self.api_key.is_none() {
                return Err(bad("notify.api_key", "sender = \"http\" needs an API key"));
            }
        }
        for (name, value) in
            [("notify.from", &self.from), ("notify.support_email", &self.support_email)]
        {
            if !value.contains('@') || value.trim() != value {
                return Err(bad(name, "must be an email address"));
            }
        }
        if !(1..=120).contains(&self.timeout_secs) {
            return Err(bad("notify.timeout_secs", "must be between 1 and 120"));
        }
        Ok(())
    }
}

/// The delivery worker of the outbox (`[outbox]`): order webhooks and
/// confirmation notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Deliveries tried before a message is dead-lettered.
    pub max_attempts: u32,
    /// The first retry waits this long; each next one twice as long.
    pub backoff_base_ms: u64,
    /// No retry waits longer than this.
    pub backoff_max_secs: u64,
    /// How often the worker looks for due messages.
    pub poll_interval_ms: u64,
    /// How long a claimed message belongs to its worker. A worker that
    /// dies holding one gives it up when this runs out.
    pub lease_secs: u64,
    /// Messages claimed per look.
    pub batch: u32,
    /// Budget of one webhook POST.
    pub webhook_timeout_secs: u64,
    /// Milliseconds the worker waits after startup before its first look.
    /// Zero in production; the crash test uses it to kill the process
    /// between a commit and the delivery it caused.
    pub start_delay_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff_base_ms: 1000,
            backoff_max_secs: 3600,
            poll_interval_ms: 1000,
            lease_secs: 60,
            batch: 16,
            webhook_timeout_secs: 10,
            start_delay_ms: 0,
        }
    }
}

impl OutboxConfig {
    fn validate(&self) -> Result<()> {
        let checks: [(&str, u64, u64, u64); 7] = [
            ("outbox.max_attempts", u64::from(self.max_attempts), 1, 100),
            ("outbox.backoff_base_ms", self.backoff_base_ms, 1, 3_600_000),
            ("outbox.backoff_max_secs", self.backoff_max_secs, 1, 7 * 24 * 3600),
            ("outbox.poll_interval_ms", self.poll_interval_ms, 10, 600_000),
            ("outbox.lease_secs", self.lease_secs, 1, 3600),
            ("outbox.batch", u64::from(self.batch), 1, 1000),
            ("outbox.webhook_timeout_secs", self.webhook_timeout_secs, 1, 120),
        ];
        for (name, value, lo, hi) in checks {
            if !(lo..=hi).contains(&value) {
                return Err(bad(name, format!("must be between {lo} and {hi}")));
            }
        }
        // A lease shorter than one delivery would let a second worker take
        // a message its first worker is still sending.
        if self.lease_secs <= self.webhook_timeout_secs {
            return Err(bad(
                "outbox.lease_secs",
                "must be longer than outbox.webhook_timeout_secs",
            ));
        }
        if self.start_delay_ms > 600_000 {
            return Err(bad("outbox.start_delay_ms", "must be at most 600000"));
        }
        Ok(())
    }
}

/// One budget of the rate limiter: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBudget {
    /// Calls per minute a caller may sustain.
    pub per_minute: u32,
    /// Calls a caller may make at once after being idle.
    pub burst: u32,
}

/// Per-caller budgets by tool class (`[rate_limits]`). Writes that move
/// money are the stricter budgets: a runaway agent should exhaust its
/// checkout budget long before it can hurt the merchant, while browsing
/// stays cheap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Off only for load tests and benchmarks.
    pub enabled: bool,
    /// Catalog searches, lookups, order reads.
    pub catalog: RateBudget,
    /// Cart creation and changes.
    pub cart: RateBudget,
    /// Checkout creation, update and cancellation.
    pub checkout_write: RateBudget,
    /// Checkout completion (payment).
    pub checkout_complete: RateBudget,
    /// How many distinct callers the limiter remembers before it forgets
    /// the idle ones; bounds the memory a flood of new identities can take.
    pub max_tracked_callers: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            catalog: RateBudget { per_minute: 1200, burst: 300 },
            cart: RateBudget { per_minute: 600, burst: 120 },
            checkout_write: RateBudget { per_minute: 120, burst: 60 },
            checkout_complete: RateBudget { per_minute: 30, burst: 20 },
            max_tracked_callers: 100_000,
        }
    }
}

impl RateLimits {
    fn validate(&self) -> Result<()> {
        let budgets = [
            ("rate_limits.catalog", self.catalog),
            ("rate_limits.cart", self.cart),
            ("rate_limits.checkout_write", self.checkout_write),
            ("rate_limits.checkout_complete", self.checkout_complete),
        ];
        for (name, b) in budgets {
            if b.per_minute == 0 || b.burst == 0 {
                return Err(bad(name, "per_minute and burst must be at least 1"));
            }
        }
        if !(1..=10_000_000).contains(&self.max_tracked_callers) {
            return Err(bad("rate_limits.max_tracked_callers", "must be between 1 and 10000000"));
        }
        Ok(())
    }
}

/// Whether the auth tiers apply (`auth.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Local use: every shopping operation is open to anonymous callers;
    /// operator tools still need the `admin` scope.
    #[default]
    Open,
    /// The tiers apply: anonymous browses and builds carts, an API key or
    /// a signed agent opens checkouts, a scoped token pays and reads orders.
    Enforced,
}

/// Bearer tokens and their issuer (`[auth]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The OAuth authorization server whose tokens are accepted (`iss`).
    pub issuer: Option<String>,
    /// Where the issuer's public keys are; required with `issuer`.
    pub jwks_url: Option<String>,
    /// The audience tokens must name; defaults to the public base URL.
    pub audience: Option<String>,
    /// How long fetched issuer keys are trusted before a refetch.
    pub jwks_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Open,
            issuer: None,
            jwks_url: None,
            audience: None,
            jwks_ttl_secs: 300,
        }
    }
}

/// One API key (`[[api_keys]]`). Only the SHA-256 of the key is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and rate limits; never the key.
    pub id: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// The caller subject the key acts as; defaults to `api-key:<id>`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Scopes the key grants, e.g. `["admin"]` for an operator key.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl AuthConfig {
    fn validate(&self, api_keys: &[ApiKeyConfig]) -> Result<()> {
        if self.issuer.is_some() != self.jwks_url.is_some() {
            return Err(bad("auth.jwks_url", "auth.issuer and auth.jwks_url go together"));
        }
        if let Some(u) = &self.jwks_url {
            let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(bad("auth.jwks_url", "must be an http(s) URL"));
            }
        }
        if !(1..=86_400).contains(&self.jwks_ttl_secs) {
            return Err(bad("auth.jwks_ttl_secs", "must be between 1 and 86400"));
        }
        for k in api_keys {
            let hex_ok = k.sha256.len() == 64 && k.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok {
                return Err(bad("api_keys.sha256", format!("key {} needs 64 hex digits", k.id)));
            }
        }
        Ok(())
    }
}

/// Stripe, checked (see the `stripe_*` settings).
#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub api_base: url::Url,
    pub secret_key: Option<SecretString>,
    pub webhook_secret: Option<SecretString>,
    pub api_version: Option<String>,
    pub timeout: std::time::Duration,
    pub max_retries: u32,
    pub webhook_tolerance: std::time::Duration,
}

/// The settings as they arrive from files and the environment, before
/// checking. Defaults live in [`RawSettings::default`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub public_base_url: Option<String>,
    pub log_format: LogFormat,
    pub merchant_name: String,
    pub currency: String,
    /// Catalog imported at first start when the store holds no products.
    pub catalog_file: Option<PathBuf>,
    /// A PEM or JWK file with the merchant's ES256 signing key.
    pub signing_key_file: Option<PathBuf>,
    /// The signing key itself (PEM or JWK text), usually from the
    /// environment (`AGENTGATE_SIGNING_KEY`) filled by a secrets manager.
    #[serde(skip_serializing)]
    pub signing_key: Option<SecretString>,
    pub cart_ttl_secs: u64,
    pub checkout_ttl_secs: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a request may run before it is answered with `timeout`.
    pub request_timeout_secs: u64,
    /// FOR TESTS ONLY; never on in production. Lets the platform-profile
    /// fetcher reach loopback and private addresses over plain HTTP, so
    /// tests can serve profiles from a local server. It relaxes only the
    /// address and https rules: redirects, the size cap and the timeout
    /// still apply. On, it opens the gateway to SSRF against its own
    /// network.
    pub allow_private_profile_hosts: bool,
    /// Whether completing a checkout needs the AP2 mandate chain. Off by
    /// default so the UCP REST sandbox flow (a payment token, no mandates)
    /// works out of the box; the MCP `execute_checkout` tool always sends
    /// mandates, and mandates that are sent are always verified.
    pub require_mandates: bool,
    /// Whether the UCP profile offers the AP2 mandate extension
    /// (`dev.ucp.shopping.ap2_mandate`, AP2 v0.2). A platform that
    /// negotiates it gets `ap2.merchant_authorization` on every checkout
    /// response, and its checkouts complete only with v0.2 mandates. On by
    /// default; platforms that do not declare the extension are unaffected.
    pub ap2_mandate_extension: bool,
    /// A JWKS file of agent platform keys the merchant trusts without
    /// fetching a profile (for platforms without a reachable profile, or to
    /// pin keys). Loaded and checked at startup.
    pub trusted_agent_jwks_file: Option<PathBuf>,
    /// The checkout guardrail (`[guardrail]`).
    pub guardrail: GuardrailConfig,
    /// The platform fee (`[fees]`).
    pub fees: FeePolicy,
    /// `Host` header values the MCP endpoints (`/mcp`, `/ucp/mcp`) accept,
    /// as host names or `host:port`. A request naming any other host is a
    /// possible DNS-rebinding attack and gets 403. Loopback by default; the
    /// host of `public_base_url` is always added.
    pub mcp_allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the MCP endpoints, as
    /// `scheme://host[:port]` (`:*` for any port). A request carrying any
    /// other `Origin` gets 403; requests without `Origin` (non-browser
    /// agents) pass. Loopback by default; the origin of `public_base_url`
    /// is always added.
    pub mcp_allowed_origins: Vec<String>,
    /// The store policies agents read before buying (`[policies]`).
    pub policies: StorePolicies,
    /// Shipping rates and pickup (`[shipping]`).
    pub shipping: ShippingConfig,
    /// Discount codes (`[discounts]`).
    pub discounts: DiscountConfig,
    /// Policy links every checkout shows (`[[policy_links]]`). Empty means
    /// terms, privacy and refund pages under `public_base_url`.
    pub policy_links: Vec<PolicyLink>,
    /// The durable store: `sqlite` (default) or `dynamodb`.
    pub store: StoreKind,
    /// The DynamoDB table, when `store = "dynamodb"` (`[dynamodb]`).
    pub dynamodb: DynamoSettings,
    /// The payment processor: `sandbox` (default) or `stripe`.
    pub payments: PaymentsKind,
    /// Stripe's API base URL. The default is Stripe's; tests point it at a
    /// local server.
    pub stripe_api_base: String,
    /// Stripe's secret API key (`AGENTGATE_STRIPE_SECRET_KEY`), required
    /// with `payments = "stripe"`.
    #[serde(skip_serializing)]
    pub stripe_secret_key: Option<SecretString>,
    /// The signing secret of the Stripe webhook endpoint
    /// (`AGENTGATE_STRIPE_WEBHOOK_SECRET`, `whsec_…`). Without it
    /// `POST /webhooks/stripe` refuses every event.
    #[serde(skip_serializing)]
    pub stripe_webhook_secret: Option<SecretString>,
    /// Pins the Stripe API version (`Stripe-Version`); unset, the
    /// account's default applies.
    pub stripe_api_version: Option<String>,
    /// Seconds one Stripe call may take, connecting included.
    pub stripe_timeout_secs: u64,
    /// Retries of a Stripe call after a rate limit, a server error or a
    /// network failure, with exponential backoff and jitter.
    pub stripe_max_retries: u32,
    /// How old a Stripe webhook's signed timestamp may be, in seconds.
    pub stripe_webhook_tolerance_secs: u64,
    /// The delivery worker of order webhooks and notifications (`[outbox]`).
    pub outbox: OutboxConfig,
    /// Confirmation notifications (`[notify]`).
    pub notify: NotifyConfig,
    /// The commerce backend: `embedded` (default) or `shopify`.
    pub backend: BackendKind,
    /// The Shopify backend (`[shopify]`).
    pub shopify: ShopifyConfig,
    /// The Storefront API token (`AGENTGATE_SHOPIFY_STOREFRONT_TOKEN`),
    /// required with `backend = "shopify"`.
    #[serde(skip_serializing)]
    pub shopify_storefront_token: Option<SecretString>,
    /// The Admin API token (`AGENTGATE_SHOPIFY_ADMIN_TOKEN`) for order
    /// reads; without it orders are tracked from webhooks only.
    #[serde(skip_serializing)]
    pub shopify_admin_token: Option<SecretString>,
    /// The webhook signing secret (`AGENTGATE_SHOPIFY_WEBHOOK_SECRET`);
    /// without it `POST /webhooks/shopify` refuses every delivery.
    #[serde(skip_serializing)]
    pub shopify_webhook_secret: Option<SecretString>,
    /// Per-caller rate limits by tool class.
    pub rate_limits: RateLimits,
    /// Auth tiers, token issuer (`[auth]`).
    pub auth: AuthConfig,
    /// API keys (`[[api_keys]]`), stored as SHA-256 hashes.
    pub api_keys: Vec<ApiKeyConfig>,
}

/// Store policies shown to agents (the MCP policies resource and the
/// buying prompt), so a model can answer "can I return this?" from the
/// merchant's own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorePolicies {
    pub returns: String,
    pub shipping: String,
}

impl Default for StorePolicies {
    fn default() -> Self {
        Self {
            returns: "Unused items can be returned within 30 days of delivery for a full refund \
                      to the original payment method."
                .into(),
            shipping: "Orders ship within 2 business days. Standard shipping is free; tracking \
                       is added to the order once it ships."
                .into(),
        }
    }
}

/// The loopback host names the MCP endpoints accept by default.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The loopback browser origins the MCP endpoints accept by default (any
/// port, plain http: local tools such as the MCP Inspector).
pub const LOOPBACK_ORIGINS: [&str; 3] =
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            public_base_url: None,
            log_format: LogFormat::Human,
            merchant_name: "Agentgate Demo Store".into(),
            currency: "USD".into(),
            catalog_file: None,
            signing_key_file: None,
            signing_key: None,
            cart_ttl_secs: 24 * 3600,
            checkout_ttl_secs: 6 * 3600,
            max_body_bytes: 256 * 1024,
            request_timeout_secs: 30,
            allow_private_profile_hosts: false,
            require_mandates: false,
            ap2_mandate_extension: true,
            trusted_agent_jwks_file: None,
            guardrail: GuardrailConfig::default(),
            fees: FeePolicy::default(),
            mcp_allowed_hosts: LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            mcp_allowed_origins: LOOPBACK_ORIGINS.iter().map(|o| (*o).to_owned()).collect(),
            policies: StorePolicies::default(),
            shipping: ShippingConfig::default(),
            discounts: DiscountConfig::default(),
            policy_links: Vec::new(),
            store: StoreKind::Sqlite,
            dynamodb: DynamoSettings::default(),
            payments: PaymentsKind::Sandbox,
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_version: None,
            stripe_timeout_secs: 20,
            stripe_max_retries: 3,
            stripe_webhook_tolerance_secs: 300,
            outbox: OutboxConfig::default(),
            notify: NotifyConfig::default(),
            backend: BackendKind::Embedded,
            shopify: ShopifyConfig::default(),
            shopify_storefront_token: None,
            shopify_admin_token: None,
            shopify_webhook_secret: None,
            rate_limits: RateLimits::default(),
            auth: AuthConfig::default(),
            api_keys: Vec::new(),
        }
    }
}

/// Checked settings. Construct with [`Settings::load`] or
/// [`Settings::from_raw`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The externally visible base URL, without a trailing slash.
    pub public_base_url: String,
    pub log_format: LogFormat,
    pub merchant_name: String,
    pub currency: Currency,
    pub catalog_file: Option<PathBuf>,
    pub signing_key_file: Option<PathBuf>,
    pub signing_key: Option<SecretString>,
    pub cart_ttl: time::Duration,
    pub checkout_ttl: time::Duration,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    /// See [`RawSettings::allow_private_profile_hosts`]: tests only.
    pub allow_private_profile_hosts: bool,
    /// See [`RawSettings::require_mandates`].
    pub require_mandates: bool,
    /// See [`RawSettings::ap2_mandate_extension`].
    pub ap2_mandate_extension: bool,
    /// See [`RawSettings::trusted_agent_jwks_file`].
    pub trusted_agent_jwks_file: Option<PathBuf>,
    pub guardrail: GuardrailConfig,
    pub fees: FeePolicy,
    /// See [`RawSettings::mcp_allowed_hosts`]; includes the public host.
    pub mcp_allowed_hosts: Vec<String>,
    /// See [`RawSettings::mcp_allowed_origins`]; includes the public origin.
    pub mcp_allowed_origins: Vec<String>,
    pub policies: StorePolicies,
    pub shipping: ShippingConfig,
    pub discounts: DiscountConfig,
    /// The policy links of every checkout, defaults filled in.
    pub policy_links: Vec<PolicyLink>,
    pub store: StoreKind,
    pub dynamodb: DynamoSettings,
    pub payments: PaymentsKind,
    pub stripe: StripeSettings,
    pub outbox: OutboxConfig,
    pub notify: NotifyConfig,
    pub backend: BackendKind,
    /// Present when a Storefront token is configured (always with
    /// `backend = "shopify"`).
    pub shopify: Option<ShopifySettings>,
    pub rate_limits: RateLimits,
    /// Auth tiers, token issuer (`[auth]`).
    pub auth: AuthConfig,
    /// API keys (`[[api_keys]]`), stored as SHA-256 hashes.
    pub api_keys: Vec<ApiKeyConfig>,
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// The top-level setting names, taken from the settings type itself so the
/// list cannot drift from the fields.
fn setting_names() -> Vec<String> {
    let mut names: Vec<String> = match serde_json::to_value(RawSettings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    // Secrets are never serialised, so they are named here.
    for secret in [
        "signing_key",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "shopify_storefront_token",
        "shopify_admin_token",
        "shopify_webhook_secret",
    ] {
        names.push(secret.to_owned());
    }
    names
}

fn bad(setting: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("setting `{setting}`: {why}"))
}

fn stripe_settings(raw: &RawSettings) -> Result<StripeSettings> {
    let api_base = url::Url::parse(&raw.stripe_api_base)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| bad("stripe_api_base", "must be an http(s) URL with a host"))?;
    if raw.payments == PaymentsKind::Stripe && raw.stripe_secret_key.is_none() {
        return Err(bad(
            "stripe_secret_key",
            "payments = \"stripe\" needs the secret key (AGENTGATE_STRIPE_SECRET_KEY)",
        ));
    }
    if !(1..=120).contains(&raw.stripe_timeout_secs) {
        return Err(bad("stripe_timeout_secs", "must be between 1 and 120"));
    }
    if raw.stripe_max_retries > 10 {
        return Err(bad("stripe_max_retries", "must be at most 10"));
    }
    if !(1..=3600).contains(&raw.stripe_webhook_tolerance_secs) {
        return Err(bad("stripe_webhook_tolerance_secs", "must be between 1 and 3600"));
    }
    Ok(StripeSettings {
        api_base,
        secret_key: raw.stripe_secret_key.clone(),
        webhook_secret: raw.stripe_webhook_secret.clone(),
        api_version: raw.stripe_api_version.clone(),
        timeout: std::time::Duration::from_secs(raw.stripe_timeout_secs),
        max_retries: raw.stripe_max_retries,
        webhook_tolerance: std::time::Duration::from_secs(raw.stripe_webhook_tolerance_secs),
    })
}

fn shopify_settings(raw: &RawSettings) -> Result<Option<ShopifySettings>> {
    let c = &raw.shopify;
    let Some(token) = raw.shopify_storefront_token.clone() else {
        if raw.backend == BackendKind::Shopify {
            return Err(bad(
                "shopify_storefront_token",
                "backend = \"shopify\" needs the Storefront token (AGENTGATE_SHOPIFY_STOREFRONT_TOKEN)",
            ));
        }
        return Ok(None);
    };
    let version_ok = c.api_version.len() == 7
        && c.api_version.bytes().enumerate().all(|(i, b)| {
            if i == 4 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !version_ok {
        return Err(bad("shopify.api_version", "must be a Shopify API version like 2025-10"));
    }
    let api_base = match (&c.api_base, &c.store_domain) {
        (Some(base), _) => {
            let u = url::Url::parse(base).map_err(|e| bad("shopify.api_base", e))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(bad("shopify.api_base", "must be an http(s) URL with a host"));
            }
            let s = u.as_str().trim_end_matches('/').to_owned() + "/";
            url::Url::parse(&s).map_err(|e| bad("shopify.api_base", e))?
        }
        (None, Some(domain)) => crate::adapters::shopify::ShopifyOptions::shop_url(domain)
            .map_err(|e| bad("shopify.store_domain", e.message()))?,
        (None, None) => {
            return Err(bad("shopify.store_domain", "names the shop ({shop}.myshopify.com)"))
        }
    };
    if !(1..=120).contains(&c.timeout_secs) {
        return Err(bad("shopify.timeout_secs", "must be between 1 and 120"));
    }
    if c.max_retries > 10 {
        return Err(bad("shopify.max_retries", "must be at most 10"));
    }
    if c.cache_ttl_secs > 3600 {
        return Err(bad("shopify.cache_ttl_secs", "must be at most 3600"));
    }
    if c.cache_max_entries > 100_000 {
        return Err(bad("shopify.cache_max_entries", "must be at most 100000"));
    }
    Ok(Some(ShopifySettings {
        api_base,
        api_version: c.api_version.clone(),
        storefront_token: token,
        admin_token: raw.shopify_admin_token.clone(),
        webhook_secret: raw.shopify_webhook_secret.clone(),
        cache_ttl: std::time::Duration::from_secs(c.cache_ttl_secs),
        cache_max_entries: c.cache_max_entries,
        timeout: std::time::Duration::from_secs(c.timeout_secs),
        max_retries: c.max_retries,
    }))
}

impl Settings {
    /// Loads defaults, then `config_file` (if given; it must exist), then the
    /// environment, then `overrides`, and checks the result.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(bad("config", format!("file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only variables that name a setting are read: other tools share the
        // prefix (`AGENTGATE_CONFIG` names the file, the test harness sets
        // `AGENTGATE_SPECS_DIR`, `AGENTGATE_PYTHON`, `AGENTGATE_BIN`). The
        // TOML file, by contrast, refuses unknown keys, so a typo there is
        // caught.
        let known = setting_names();
        fig = fig
            .merge(Env::prefixed("AGENTGATE_").split("__").filter(move |key| {
                let top = key.as_str().split('.').next().unwrap_or_default();
                known.iter().any(|k| k.eq_ignore_ascii_case(top))
            }))
            .merge(Serialized::defaults(overrides));
        let raw: RawSettings = fig.extract().map_err(|e| {
            // figment errors name the key and the source (file or env var)
            // but never echo the value, so secrets stay out of the message.
            Error::invalid(format!("invalid settings: {}", e.to_string().replace('\n', "; ")))
        })?;
        Self::from_raw(raw)
    }

    pub fn from_raw(raw: RawSettings) -> Result<Self> {
        let stripe = stripe_settings(&raw)?;
        let shopify = shopify_settings(&raw)?;
        let listen: SocketAddr = raw.listen.parse().map_err(|e| {
            bad("listen", format!("{:?} is not an IP:port address ({e})", raw.listen))
        })?;
        let public_base_url = match raw.public_base_url {
            Some(u) => {
                let parsed = url::Url::parse(&u).map_err(|e| bad("public_base_url", e))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(bad("public_base_url", "must be an http(s) URL with a host"));
                }
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(bad("public_base_url", "must not carry a query or fragment"));
                }
                u.trim_end_matches('/').to_owned()
            }
            None => format!("http://{listen}"),
        };
        if raw.merchant_name.trim().is_empty() {
            return Err(bad("merchant_name", "must not be empty"));
        }
        let currency = Currency::parse(&raw.currency).map_err(|e| bad("currency", e.message()))?;
        let ttl = |name: &str, secs: u64| -> Result<time::Duration> {
            if !(60..=30 * 24 * 3600).contains(&secs) {
                return Err(bad(name, "must be between 60 seconds and 30 days"));
            }
            Ok(time::Duration::seconds(secs as i64))
        };
        if !(1024..=16 * 1024 * 1024).contains(&raw.max_body_bytes) {
            return Err(bad("max_body_bytes", "must be between 1 KiB and 16 MiB"));
        }
        if !(1..=300).contains(&raw.request_timeout_secs) {
            return Err(bad("request_timeout_secs", "must be between 1 and 300"));
        }
        raw.guardrail.validate()?;
        raw.fees.validate()?;
        let (mcp_allowed_hosts, mcp_allowed_origins) =
            mcp_allowlists(&public_base_url, raw.mcp_allowed_hosts, raw.mcp_allowed_origins)?;
        if raw.policies.returns.trim().is_empty() || raw.policies.shipping.trim().is_empty() {
            return Err(bad("policies", "returns and shipping must not be empty"));
        }
        raw.shipping.validate()?;
        raw.discounts.validate()?;
        raw.outbox.validate()?;
        raw.notify.validate()?;
        raw.rate_limits.validate()?;
        raw.auth.validate(&raw.api_keys)?;
        let policy_links = if raw.policy_links.is_empty() {
            // UCP requires `links` on every checkout (checkout.json); these
            // defaults keep a fresh install compliant until real pages exist.
            [
                ("terms_of_service", "terms", "Terms of service"),
                ("privacy_policy", "privacy", "Privacy policy"),
                ("refund_policy", "refunds", "Refund policy"),
            ]
            .into_iter()
            .map(|(kind, page, title)| PolicyLink {
                kind: kind.to_owned(),
                url: format!("{public_base_url}/policies/{page}"),
                title: Some(title.to_owned()),
            })
            .collect()
        } else {
            for (i, l) in raw.policy_links.iter().enumerate() {
                let ok =
                    url::Url::parse(&l.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok || l.kind.trim().is_empty() {
                    return Err(bad(
                        &format!("policy_links[{i}]"),
                        "needs a type and an absolute http(s) url",
                    ));
                }
            }
            raw.policy_links
        };
        if raw.store == StoreKind::Dynamodb {
            raw.dynamodb.validate()?;
        }
        Ok(Self {
            listen,
            data_dir: raw.data_dir,
            public_base_url,
            log_format: raw.log_format,
            merchant_name: raw.merchant_name,
            currency,
            catalog_file: raw.catalog_file,
            signing_key_file: raw.signing_key_file,
            signing_key: raw.signing_key,
            cart_ttl: ttl("cart_ttl_secs", raw.cart_ttl_secs)?,
            checkout_ttl: ttl("checkout_ttl_secs", raw.checkout_ttl_secs)?,
            max_body_bytes: raw.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(raw.request_timeout_secs),
            allow_private_profile_hosts: raw.allow_private_profile_hosts,
            require_mandates: raw.require_mandates,
            ap2_mandate_extension: raw.ap2_mandate_extension,
            trusted_agent_jwks_file: raw.trusted_agent_jwks_file,
            guardrail: raw.guardrail,
            fees: raw.fees,
            mcp_allowed_hosts,
            mcp_allowed_origins,
            policies: raw.policies,
            shipping: raw.shipping,
            discounts: raw.discounts,
            policy_links,
            store: raw.store,
            dynamodb: raw.dynamodb,
            payments: raw.payments,
            stripe,
            outbox: raw.outbox,
            notify: raw.notify,
            backend: raw.backend,
            shopify,
            rate_limits: raw.rate_limits,
            auth: raw.auth,
            api_keys: raw.api_keys,
        })
    }

    /// Settings for tests: defaults with the given data dir.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let raw = RawSettings { data_dir: data_dir.to_owned(), ..RawSettings::default() };
        // The defaults are valid by construction (a test below proves it).
        match Self::from_raw(raw) {
            Ok(s) => s,
            Err(e) => panic!("default settings are invalid: {e}"),
        }
    }
}

/// Checks the MCP Host and Origin allowlists and adds the host and origin
/// of `public_base_url`, so a deployment behind its public name works
/// without repeating it. The host list is therefore never empty, which
/// matters because the MCP transport reads an empty list as "any host".
fn mcp_allowlists(
    public_base_url: &str,
    mut hosts: Vec<String>,
    mut origins: Vec<String>,
) -> Result<(Vec<String>, Vec<String>)> {
    for host in &hosts {
        let ok = !host.is_empty()
            && !host.contains("://")
            && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
        if !ok {
            return Err(bad("mcp_allowed_hosts", format!("{host:?} is not a host or host:port")));
        }
    }
    for origin in &origins {
        let ok = origin == "null"
            || url::Url::parse(&origin.replace(":*", ""))
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
        if !ok || origin.ends_with('/') {
            return Err(bad(
                "mcp_allowed_origins",
                format!("{origin:?} is not an origin like https://host[:port] or http://host:*"),
            ));
        }
    }
    if let Ok(public) = url::Url::parse(public_base_url) {
        if let Some(host) = public.host_str() {
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
                hosts.push(host);
            }
        }
        let origin = public.origin().ascii_serialization();
        if origin != "null" && !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok((hosts, origins))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_are_valid_and_local() {
        let s = Settings::from_raw(RawSettings::default()).unwrap();
        assert!(s.listen.ip().is_loopback(), "bind to loopback by default");
        assert_eq!(s.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(s.checkout_ttl, time::Duration::hours(6));
        assert!(!s.allow_private_profile_hosts, "SSRF protection is on by default");
        assert_eq!(s.mcp_allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
        assert!(s.mcp_allowed_origins.iter().all(|o| o.starts_with("http://")));
        assert!(s.mcp_allowed_origins.contains(&"http://127.0.0.1:8080".to_owned()));
        let kinds: Vec<&str> = s.policy_links.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["terms_of_service", "privacy_policy", "refund_policy"]);
        assert!(s.policy_links.iter().all(|l| l.url.starts_with("http://127.0.0.1:8080/")));
        assert!(s.discounts.rule("welcome10").is_some(), "a demo code ships by default");
    }

    #[test]
    fn the_public_host_joins_the_mcp_allowlists() {
        let raw = RawSettings {
            public_base_url: Some("https://shop.example.com/".into()),
            ..Default::default()
        };
        let s = Settings::from_raw(raw).unwrap();
        assert!(s.mcp_allowed_hosts.contains(&"shop.example.com".to_owned()));
        assert!(s.mcp_allowed_origins.contains(&"https://shop.example.com".to_owned()));
        assert!(s.mcp_allowed_hosts.contains(&"localhost".to_owned()), "loopback stays");
    }

    #[test]
    fn pricing_sections_load_from_toml() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                r#"
[shipping]
rates = [{ id = "ca-post", title = "Canada Post", countries = ["CA"], amount_minor = 900, free_over_minor = 10000 }]

[[discounts.codes]]
code = "SPRING"
title = "Spring sale"
kind = "percentage"
value = 15
expires_at = "2030-04-01T00:00:00Z"
applies_to = { categories = ["apparel"] }

[[policy_links]]
type = "terms_of_service"
url = "https://shop.example/terms"
"#,
            )?;
            let s = Settings::load(Some(Path::new("shop.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(s.shipping.rates.len(), 1);
            assert!(s.shipping.pickup.is_some(), "an unset table keeps its default");
            let rule = s.discounts.rule("spring").ok_or("SPRING missing")?;
            assert_eq!(rule.value, 15);
            assert!(rule.expires_at.is_some());
            assert_eq!(s.policy_links.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_setting() {
        let strict_fees = FeePolicy { bps: 10_001, ..FeePolicy::default() };
        let cases: Vec<(RawSettings, &str)> = vec![
            (RawSettings { listen: "nope".into(), ..Default::default() }, "listen"),
            (RawSettings { currency: "ZZZ".into(), ..Default::default() }, "currency"),
            (
                RawSettings { public_base_url: Some("ftp://x".into()), ..Default::default() },
                "public_base_url",
            ),
            (RawSettings { checkout_ttl_secs: 1, ..Default::default() }, "checkout_ttl_secs"),
            (RawSettings { max_body_bytes: 1, ..Default::default() }, "max_body_bytes"),
            (RawSettings { merchant_name: " ".into(), ..Default::default() }, "merchant_name"),
            (RawSettings { fees: strict_fees, ..Default::default() }, "fees.bps"),
            (
                RawSettings { mcp_allowed_hosts: vec!["http://x".into()], ..Default::default() },
                "mcp_allowed_hosts",
            ),
            (
                RawSettings {
                    mcp_allowed_origins: vec!["example.com".into()],
                    ..Default::default()
                },
                "mcp_allowed_origins",
            ),
            (
                RawSettings {
                    policies: StorePolicies { returns: " ".into(), ..Default::default() },
                    ..Default::default()
                },
                "policies",
            ),
            (
                RawSettings { payments: PaymentsKind::Stripe, ..Default::default() },
                "stripe_secret_key",
            ),
            (
                RawSettings { stripe_api_base: "api.stripe.com".into(), ..Default::default() },
                "stripe_api_base",
            ),
            (
                RawSettings {
                    outbox: OutboxConfig { lease_secs: 5, ..Default::default() },
                    ..Default::default()
                },
                "outbox.lease_secs",
            ),
            (
                RawSettings {
                    notify: NotifyConfig { sender: NotifySender::Http, ..Default::default() },
                    ..Default::default()
                },
                "notify.url",
            ),
            (
                RawSettings {
                    shipping: {
                        let mut bad_id = ShippingConfig::default();
                        bad_id.rates[0].id = "a b".into();
                        bad_id
                    },
                    ..Default::default()
                },
                "shipping.rates[0]",
            ),
            (
                RawSettings {
                    policy_links: vec![PolicyLink {
                        kind: "terms_of_service".into(),
                        url: "not a url".into(),
                        title: None,
                    }],
                    ..Default::default()
                },
                "policy_links[0]",
            ),
            (
                RawSettings {
                    store: StoreKind::Dynamodb,
                    dynamodb: DynamoSettings { table: "a b".into(), ..Default::default() },
                    ..Default::default()
                },
                "dynamodb.table",
            ),
            (
                RawSettings {
                    store: StoreKind::Dynamodb,
                    dynamodb: DynamoSettings {
                        endpoint_url: Some("localhost:8000".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "dynamodb.endpoint_url",
            ),
        ];
        for (raw, name) in cases {
            let err = Settings::from_raw(raw).unwrap_err();
            assert!(err.message().contains(name), "{name}: {}", err.message());
        }
    }

    #[test]
    fn layers_apply_in_order_and_secrets_do_not_print() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "agentgate.toml",
                "merchant_name = \"File Shop\"\nlisten = \"127.0.0.1:9000\"\n",
            )?;
            jail.set_env("AGENTGATE_LISTEN", "127.0.0.1:9100");
            jail.set_env("AGENTGATE_SIGNING_KEY", "super-secret-value");
            jail.set_env("AGENTGATE_SOME_TOOL_PATH", "/not/a/setting");
            let overrides = Overrides { data_dir: Some("/tmp/x".into()), ..Default::default() };
            let s = Settings::load(Some(Path::new("agentgate.toml")), &overrides)
                .map_err(|e| e.to_string())?;
            assert_eq!(s.merchant_name, "File Shop");
            assert_eq!(s.listen.port(), 9100, "env beats file");
            assert_eq!(s.data_dir, PathBuf::from("/tmp/x"), "flags beat env");
            let key = s.signing_key.as_ref().map(|k| k.expose_secret().to_owned());
            assert_eq!(key.as_deref(), Some("super-secret-value"));
            assert!(!format!("{s:?}").contains("super-secret-value"));
            Ok(())
        });
    }

    /// The store and its table come from the environment the way the SAM
    /// template sets them.
    #[test]
    fn the_store_is_chosen_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.store, StoreKind::Sqlite, "SQLite unless told otherwise");
            jail.set_env("AGENTGATE_STORE", "dynamodb");
            jail.set_env("AGENTGATE_DYNAMODB__TABLE", "shop-prod");
            jail.set_env("AGENTGATE_DYNAMODB__ENDPOINT_URL", "http://127.0.0.1:5000");
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.store, StoreKind::Dynamodb);
            assert_eq!(s.dynamodb.table, "shop-prod");
            assert_eq!(s.dynamodb.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
            assert_eq!(s.dynamodb.region, None);
            jail.set_env("AGENTGATE_STORE", "postgres");
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            // The message names the setting and the choices.
            let message = err.message().to_lowercase();
            assert!(message.contains("store") && message.contains("dynamodb"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn stripe_and_email_secrets_come_from_the_environment_and_do_not_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("AGENTGATE_PAYMENTS", "stripe");
            jail.set_env("AGENTGATE_STRIPE_SECRET_KEY", "sk_test_secret_1");
            jail.set_env("AGENTGATE_STRIPE_WEBHOOK_SECRET", "whsec_secret_2");
            jail.set_env("AGENTGATE_NOTIFY__SENDER", "http");
            jail.set_env("AGENTGATE_NOTIFY__URL", "https://mail.example/emails");
            jail.set_env("AGENTGATE_NOTIFY__API_KEY", "re_secret_3");
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.payments, PaymentsKind::Stripe);
            let default_base = RawSettings::default().stripe_api_base;
            assert_eq!(s.stripe.api_base.as_str().trim_end_matches('/'), default_base);
            let key = s.stripe.secret_key.as_ref().map(|k| k.expose_secret().to_owned());
            assert_eq!(key.as_deref(), Some("sk_test_secret_1"));
            let hook = s.stripe.webhook_secret.as_ref().map(|k| k.expose_secret().to_owned());
            assert_eq!(hook.as_deref(), Some("whsec_secret_2"));
            assert_eq!(s.notify.sender, NotifySender::Http);
            let shown = format!("{s:?}");
            for secret in ["sk_test_secret_1", "whsec_secret_2", "re_secret_3"] {
                assert!(!shown.contains(secret), "{secret} printed");
            }
            Ok(())
        });
    }

    #[test]
    fn shopify_backend_reads_tokens_from_the_environment_and_checks_the_table() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                "backend = \"shopify\"\n[shopify]\nstore_domain = \"acme\"\ncache_ttl_secs = 5\n",
            )?;
            // Without the Storefront token the shopify backend cannot start.
            let err =
                Settings::load(Some(Path::new("shop.toml")), &Overrides::default()).unwrap_err();
            assert!(
                err.message().contains("AGENTGATE_SHOPIFY_STOREFRONT_TOKEN"),
                "{}",
                err.message()
            );
            jail.set_env("AGENTGATE_SHOPIFY_STOREFRONT_TOKEN", "sf_secret_1");
            jail.set_env("AGENTGATE_SHOPIFY_ADMIN_TOKEN", "shpat_secret_2");
            jail.set_env("AGENTGATE_SHOPIFY_WEBHOOK_SECRET", "hook_secret_3");
            let s = Settings::load(Some(Path::new("shop.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(s.backend, BackendKind::Shopify);
            let shop = s.shopify.as_ref().expect("shopify settings");
            assert_eq!(shop.api_base.as_str(), "https://acme.myshopify.com/");
            assert_eq!(shop.api_version, "2025-10");
            assert_eq!(shop.cache_ttl, std::time::Duration::from_secs(5));
            assert_eq!(shop.storefront_token.expose_secret(), "sf_secret_1");
            let shown = format!("{s:?}");
            for secret in ["sf_secret_1", "shpat_secret_2", "hook_secret_3"] {
                assert!(!shown.contains(secret), "{secret} printed");
            }
            Ok(())
        });
        let cases = [
            (ShopifyConfig { api_version: "latest".into(), ..Default::default() }, "api_version"),
            (ShopifyConfig { store_domain: None, ..Default::default() }, "store_domain"),
            (
                ShopifyConfig {
                    store_domain: Some("acme".into()),
                    api_base: Some("ftp://x".into()),
                    ..Default::default()
                },
                "api_base",
            ),
            (
                ShopifyConfig {
                    store_domain: Some("acme".into()),
                    timeout_secs: 0,
                    ..Default::default()
                },
                "timeout_secs",
            ),
        ];
        for (shopify, field) in cases {
            let raw = RawSettings {
                backend: BackendKind::Shopify,
                shopify,
                shopify_storefront_token: Some(SecretString::from("t")),
                ..Default::default()
            };
            let err = Settings::from_raw(raw).unwrap_err();
            assert!(err.message().contains(field), "{field}: {}", err.message());
        }
    }

    #[test]
    fn unknown_keys_and_missing_files_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "merchnt_name = \"typo\"\n")?;
            let err =
                Settings::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            assert!(err.message().contains("merchnt_name"), "{}", err.message());
            let err =
                Settings::load(Some(Path::new("missing.toml")), &Overrides::default()).unwrap_err();
            assert!(err.message().contains("does not exist"));
            Ok(())
        });
    }
}
