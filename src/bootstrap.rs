//! Wiring: builds the adapters and the gateway from settings, and runs the
//! HTTP server. This is the only place that knows which adapter implements
//! which port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::catalog_import::{self, CatalogFormat};
use crate::adapters::keyfile::{self, KeyMaterial, KeySource};
use crate::adapters::notify::{HttpEmailNotifier, LogNotifier};
use crate::adapters::payments::{SandboxPayments, StripeOptions, StripePayments};
use crate::adapters::profile_fetcher::HttpProfileFetcher;
use crate::adapters::shopify::{ShopifyAdmin, ShopifyOptions, ShopifyStorefront};
use crate::adapters::sqlite::{self, Db, SqliteCatalog, SqliteStore};
use crate::adapters::webhooks::HttpWebhookSender;
use crate::ap2::{KeyRing, PublicKeySet};
use crate::gateway::{Gateway, OutboxWorker};
use crate::http::{self, AppState};
use crate::ports::{Catalog, Clock, Notifier, Payments, SearchQuery, Store, SystemClock};
use crate::settings::{BackendKind, PaymentsKind, Settings, StoreKind};

/// The demo catalog shipped in the binary, imported on a first start when
/// no `catalog_file` is configured, so a fresh clone has something to sell.
const DEMO_CATALOG: &[u8] = include_bytes!("../profiles/catalog.json");

/// The name of the database file inside the data dir.
pub const DB_FILE: &str = "agentgate.db";

/// A built application: the HTTP state plus handles tests reach into.
pub struct App {
    pub state: AppState,
    pub gateway: Arc<Gateway>,
    /// The configured store: SQLite in the data dir, or DynamoDB.
    pub store: Arc<dyn Store>,
    /// The embedded catalog (empty, and unused by the gateway, with
    /// `backend = "shopify"`).
    pub catalog: Arc<SqliteCatalog>,
    /// The Shopify Storefront adapter, with `backend = "shopify"`.
    pub shopify: Option<Arc<ShopifyStorefront>>,
    /// The sandbox processor. It is the one in use unless `payments =
    /// "stripe"`; tests read its record of calls.
    pub payments: Arc<SandboxPayments>,
    /// The processor the gateway charges through (`payments` setting).
    pub processor: Arc<dyn Payments>,
    pub keys: Arc<KeyRing>,
    /// Delivers order webhooks and confirmations; `serve` runs it as a
    /// task, tests call `run_once`.
    pub outbox: OutboxWorker,
}

fn key_source(settings: &Settings) -> Option<KeySource> {
    let active = match (&settings.signing_key, &settings.signing_key_file) {
        (Some(text), _) => KeyMaterial::Text(text.clone()),
        (None, Some(path)) => KeyMaterial::File(path.clone()),
        (None, None) => return None,
    };
    Some(KeySource { active, retired: Vec::new() })
}

/// The catalog to import: the configured file, or the built-in demo.
fn catalog_source(settings: &Settings) -> anyhow::Result<(Vec<u8>, CatalogFormat, String)> {
    Ok(match &settings.catalog_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read catalog_file {}: {e}", path.display()))?;
            let format = CatalogFormat::from_path(path).ok_or_else(|| {
                anyhow::anyhow!("catalog_file {} must end in .json or .csv", path.display())
            })?;
            (bytes, format, path.display().to_string())
        }
        None => (DEMO_CATALOG.to_vec(), CatalogFormat::Json, "built-in demo catalog".to_owned()),
    })
}

/// Imports the configured catalog (or the demo) when the catalog is empty.
async fn seed_catalog(settings: &Settings, catalog: &SqliteCatalog) -> anyhow::Result<()> {
    let probe = SearchQuery { limit: 1, ..SearchQuery::default() };
    if !catalog.search(&probe).await?.products.is_empty() {
        return Ok(());
    }
    let (bytes, format, source) = catalog_source(settings)?;
    let products = catalog_import::parse(&bytes, format)?;
    let report = catalog.import(products).await?;
    tracing::info!(source = %source, report = ?report, "catalog imported on first start");
    Ok(())
}

/// Reads `trusted_agent_jwks_file`, so a missing or bad key set stops the
/// process at startup rather than failing every checkout.
fn load_trusted_agent_keys(settings: &Settings) -> anyhow::Result<PublicKeySet> {
    let Some(path) = &settings.trusted_agent_jwks_file else { return Ok(PublicKeySet::new()) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("cannot read trusted_agent_jwks_file {}: {e}", path.display())
    })?;
    let keys = PublicKeySet::from_jwks_json(&text).map_err(|e| {
        anyhow::anyhow!("trusted_agent_jwks_file {}: {}", path.display(), e.message())
    })?;
    if keys.is_empty() {
        anyhow::bail!("trusted_agent_jwks_file {} holds no EC P-256 key", path.display());
    }
    Ok(keys)
}

/// Builds the application from checked settings: opens (or creates) the
/// store in the data dir, imports the catalog on first start, and loads or
/// generates the merchant signing key.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    build_with_clock(settings, Arc::new(SystemClock)).await
}

/// [`build`] with an injected clock, for tests that move time.
pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let db = Db::open(&settings.data_dir.join(DB_FILE), &sqlite::migrations())?;
    let catalog = Arc::new(SqliteCatalog::new(Arc::clone(&db)));
    // The backend decides where the gateway reads the catalog; only the
    // embedded one is seeded.
    let shopify = match settings.backend {
        BackendKind::Embedded => {
            seed_catalog(&settings, &catalog).await?;
            None
        }
        BackendKind::Shopify => {
            let options = ShopifyOptions::from_settings(&settings).ok_or_else(|| {
                anyhow::anyhow!("backend = \"shopify\" needs AGENTGATE_SHOPIFY_STOREFRONT_TOKEN")
            })?;
            Some(Arc::new(ShopifyStorefront::new(&options)?))
        }
    };
    let catalog_port: Arc<dyn Catalog> = match &shopify {
        Some(s) => s.clone(),
        None => catalog.clone(),
    };
    let store: Arc<dyn Store> = match settings.store {
        StoreKind::Sqlite => Arc::new(SqliteStore::from_db(db).with_clock(Arc::clone(&clock))),
        StoreKind::Dynamodb => dynamodb_store(&settings, Arc::clone(&clock)).await?,
    };
    let keys = Arc::new(keyfile::load_or_generate(&settings.data_dir, key_source(&settings))?);
    let payments = Arc::new(SandboxPayments::new(settings.public_base_url.clone()));
    let processor: Arc<dyn Payments> = match settings.payments {
        PaymentsKind::Sandbox => payments.clone(),
        PaymentsKind::Stripe => {
            let options = StripeOptions::from_settings(&settings).ok_or_else(|| {
                anyhow::anyhow!("payments = \"stripe\" needs AGENTGATE_STRIPE_SECRET_KEY")
            })?;
            Arc::new(StripePayments::new(options)?)
        }
    };
    let jwks = keys.jwks(clock.now());
    let settings_for_fetcher = settings.clone();
    let trusted_agent_keys = load_trusted_agent_keys(&settings)?;
    let gateway = Arc::new(
        Gateway::new(
            Arc::new(settings),
            Arc::clone(&keys),
            store.clone(),
            catalog_port,
            processor.clone(),
            Arc::new(HttpProfileFetcher::from_settings(&settings_for_fetcher, Arc::clone(&clock))),
            clock,
        )
        .with_trusted_agent_keys(trusted_agent_keys),
    );
    // With Shopify, the buyer pays on Shopify's checkout: completions that
    // pass the guardrail escalate to the cart's checkout URL.
    // The Admin API, when its token is set, is where those orders are read
    // back from (lookups and shipment webhooks).
    let gateway = match &shopify {
        Some(s) => match Arc::try_unwrap(gateway) {
            Ok(g) => {
                let g = g.with_external_checkout(s.clone());
                let admin = ShopifyOptions::from_settings(g.settings())
                    .map(|o| ShopifyAdmin::new(&o))
                    .transpose()?
                    .flatten();
                Arc::new(match admin {
                    Some(admin) => g.with_external_orders(Arc::new(admin)),
                    None => g,
                })
            }
            Err(_) => anyhow::bail!("the gateway was shared before it was built"),
        },
        None => gateway,
    };
    let state = AppState::new(Arc::clone(&gateway), jwks);
    let outbox = outbox_worker(&gateway)?;
    Ok(App { state, gateway, store, catalog, shopify, payments, processor, keys, outbox })
}

/// The outbox worker with the senders the settings name.
fn outbox_worker(gateway: &Arc<Gateway>) -> anyhow::Result<OutboxWorker> {
    let settings = gateway.settings();
    let webhooks = Arc::new(HttpWebhookSender::new(
        settings.allow_private_profile_hosts,
        Duration::from_secs(settings.outbox.webhook_timeout_secs),
    ));
    let notifier: Arc<dyn Notifier> = match HttpEmailNotifier::from_config(&settings.notify)? {
        Some(http) => Arc::new(http),
        None => Arc::new(LogNotifier),
    };
    Ok(OutboxWorker::new(Arc::clone(gateway), webhooks, notifier))
}

/// Connects the DynamoDB store and seeds its stock from the catalog once.
///
/// The catalog itself stays in the embedded database (on Lambda, rebuilt in
/// `/tmp` at each cold start from the deployed catalog file); stock lives in
/// DynamoDB, where checkouts decrement it. Seeding writes each SKU's
/// catalog count only where DynamoDB has none yet, once per catalog
/// content, so a cold start never resets stock that has been sold.
#[cfg(feature = "aws")]
async fn dynamodb_store(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Store>> {
    use sha2::{Digest, Sha256};
    let store = crate::adapters::dynamodb::connect(&settings.dynamodb).await?.with_clock(clock);
    let (bytes, format, source) = catalog_source(settings)?;
    let digest = Sha256::digest(&bytes);
    let marker: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if !store.stock_seeded(&marker).await? {
        let stock: Vec<_> = catalog_import::parse(&bytes, format)?
            .iter()
            .flat_map(|p| p.variants.iter().map(|v| (v.sku.clone(), v.stock)))
            .collect();
        store.seed_stock(&marker, &stock).await?;
        tracing::info!(source = %source, skus = stock.len(), "DynamoDB stock seeded from the catalog");
    }
    Ok(Arc::new(store))
}

#[cfg(not(feature = "aws"))]
async fn dynamodb_store(
    _settings: &Settings,
    _clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!(
        "setting `store`: this build has no DynamoDB support (it was built without the `aws` \
         feature)"
    )
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let listen = settings.listen;
    let app = build(settings).await?;
    tracing::info!(processor = app.processor.name(), "payments");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        startup_ms = started.elapsed().as_millis() as u64,
        kid = app.keys.active_kid(),
        "agentgate listening"
    );
    // The outbox worker runs beside the server and stops with it.
    let (stop_worker, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(app.outbox.clone().run(stopped));
    let served = http::serve(listener, http::app(app.state), Duration::from_secs(10)).await;
    let _ = stop_worker.send(true);
    if tokio::time::timeout(Duration::from_secs(10), worker).await.is_err() {
        tracing::warn!("the outbox worker did not stop in time; undelivered messages stay pending");
    }
    served?;
    tracing::info!("agentgate stopped");
    Ok(())
}

/// Serves the MCP gateway tools on stdin/stdout until the client closes
/// the stream. Nothing but protocol messages reaches stdout: logging is on
/// stderr and nothing on this path prints.
pub async fn stdio(settings: Settings) -> anyhow::Result<()> {
    let app = build(settings).await?;
    tracing::info!(kid = app.keys.active_kid(), "agentgate MCP server on stdio");
    crate::mcp::transport::serve_stdio(app.state.mcp).await?;
    Ok(())
}
