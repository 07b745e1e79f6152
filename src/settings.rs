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
}

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
            shipping: ShippingConfig::default(),
            discounts: DiscountConfig::default(),
            policy_links: Vec::new(),
            store: StoreKind::Sqlite,
            dynamodb: DynamoSettings::default(),
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
    pub shipping: ShippingConfig,
    pub discounts: DiscountConfig,
    /// The policy links of every checkout, defaults filled in.
    pub policy_links: Vec<PolicyLink>,
    pub store: StoreKind,
    pub dynamodb: DynamoSettings,
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
    names.push("signing_key".to_owned());
    names
}

fn bad(setting: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("setting `{setting}`: {why}"))
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
        raw.shipping.validate()?;
        raw.discounts.validate()?;
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
            shipping: raw.shipping,
            discounts: raw.discounts,
            policy_links,
            store: raw.store,
            dynamodb: raw.dynamodb,
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
        let kinds: Vec<&str> = s.policy_links.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["terms_of_service", "privacy_policy", "refund_policy"]);
        assert!(s.policy_links.iter().all(|l| l.url.starts_with("http://127.0.0.1:8080/")));
        assert!(s.discounts.rule("welcome10").is_some(), "a demo code ships by default");
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
