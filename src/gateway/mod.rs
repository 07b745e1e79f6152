//! The gateway facade: one method per use case.
//!
//! Every transport (MCP tools, the UCP MCP binding, UCP REST, the CLI demo)
//! calls these methods and nothing below them, so a use case exists exactly
//! once. The gateway owns the ports and the pure core; it decides nothing
//! about wire formats.

pub mod access;
pub mod auth;
pub mod carts;
pub mod checkout;
mod complete;
mod external;
pub mod idempotency;
pub mod lookup;
mod mandates;
mod negotiation;
pub mod operator;
mod orders;
mod outbox;
mod payments;
pub mod rate_limit;

pub use complete::{
    CompleteRequest, Completion, MandateChain, Mandates, MandatesV02, ReceiptClaims,
    RenderResponse, RECEIPT_TYP,
};
pub use external::{external_order_id, ExternalEffect};
pub use mandates::{CartMandate, SignedCheckout, CART_MANDATE_TTL};
pub use orders::{OrderActor, OrderView, ShipmentInput};
pub use outbox::{
    backoff, OutboxWorker, SIGNATURE_HEADER, WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER,
};
pub use payments::{EventEffect, PaymentEvent, PaymentEventKind};

use std::sync::Arc;

use crate::ap2::{KeyRing, PublicKeySet};
use crate::domain::{
    Cart, CartId, CartLine, CategoryNode, Error, ErrorCode, Product, ProductId, Result, VariantId,
};
use crate::ports::{
    Catalog, Clock, Payments, ProfileFetcher, SearchPage, SearchQuery, Store, Versioned,
};
use crate::settings::Settings;

pub use carts::CartOutcome;
pub use checkout::{
    missing_fields, CheckoutContext, CheckoutInput, CheckoutOutcome, CheckoutView,
    FulfillmentInput, ItemInput, LinesInput,
};
pub use idempotency::{Disposition, IdempotencyKey, IdempotentResponse};
pub use lookup::{Lookup, LookupHit, Match};

/// How a caller proved who it is; more proof unlocks more operations (see
/// [`access::Operation::requirement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Nothing proven.
    Anonymous,
    /// A UCP platform whose profile the gateway fetched and negotiated with.
    Signed,
    /// A configured API key.
    ApiKey,
    /// A bearer token from the configured issuer.
    Token,
}

/// Who is calling, as established by the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// A stable identity for ownership checks and rate limits.
    pub subject: Option<String>,
    pub tier: Tier,
    /// Scopes granted by the token or API key.
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self { subject: None, tier: Tier::Anonymous, scopes: Vec::new() }
    }

    /// An identified caller with no scopes (a negotiated platform).
    pub fn subject(subject: impl Into<String>) -> Self {
        Self { subject: Some(subject.into()), tier: Tier::Signed, scopes: Vec::new() }
    }

    /// A caller known only by an identity it claims and nobody verified
    /// (a platform profile URL named over the UCP MCP binding): the claim
    /// scopes what it creates, so one platform cannot read another's
    /// sessions, but it earns no tier.
    pub fn claimed(subject: impl Into<String>) -> Self {
        Self { subject: Some(subject.into()), tier: Tier::Anonymous, scopes: Vec::new() }
    }

    /// A caller authenticated at `tier` with `scopes`.
    pub fn authenticated(subject: impl Into<String>, tier: Tier, scopes: Vec<String>) -> Self {
        Self { subject: Some(subject.into()), tier, scopes }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether this caller may see a resource owned by `owner`. Resources
    /// created anonymously are reachable by anyone holding their id (the
    /// unguessable id is the capability); owned ones only by their owner.
    pub fn may_access(&self, owner: &Option<String>) -> bool {
        match owner {
            None => true,
            Some(o) => self.subject.as_deref() == Some(o.as_str()),
        }
    }
}

/// The answer of `/health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub store: &'static str,
    pub version: &'static str,
}

/// How many times a read-modify-write is retried when another writer got
/// there first. Each retry re-reads and re-applies the change, so the
/// outcome is as if the calls had been serial.
const CAS_ATTEMPTS: usize = 5;

/// A change to a cart requested by an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartChange {
    Add { variant: VariantId, quantity: u32 },
    SetQuantity { variant: VariantId, quantity: u32 },
    Remove { variant: VariantId },
    Clear,
}

pub struct Gateway {
    settings: Arc<Settings>,
    keys: Arc<KeyRing>,
    store: Arc<dyn Store>,
    catalog: Arc<dyn Catalog>,
    payments: Arc<dyn Payments>,
    profiles: Arc<dyn ProfileFetcher>,
    clock: Arc<dyn Clock>,
    /// Agent platform keys the merchant configured (`trusted_agent_jwks_file`).
    trusted_agent_keys: PublicKeySet,
    /// The backend's own checkout, when it takes the payment (Shopify).
    external_checkout: Option<Arc<dyn crate::ports::ExternalCheckout>>,
    /// Where that backend keeps the orders its checkout takes (Shopify's
    /// Admin API), read to keep local orders in step.
    external_orders: Option<Arc<dyn crate::ports::ExternalOrders>>,
    /// Per-caller budgets by tool class, shared by every transport.
    rate_limiter: rate_limit::RateLimiter,
    /// API keys and the token issuer.
    authenticator: auth::Authenticator,
    /// The business offer without and with the AP2 mandate extension,
    /// built on first use (see `negotiation.rs`).
    offers: std::sync::OnceLock<[crate::ucp::negotiate::Offer; 2]>,
}

impl Gateway {
    pub fn new(
        settings: Arc<Settings>,
        keys: Arc<KeyRing>,
        store: Arc<dyn Store>,
        catalog: Arc<dyn Catalog>,
        payments: Arc<dyn Payments>,
        profiles: Arc<dyn ProfileFetcher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let rate_limiter = rate_limit::RateLimiter::new(&settings.rate_limits);
        let authenticator = auth::Authenticator::new(&settings);
        Self {
            rate_limiter,
            authenticator,
            settings,
            keys,
            store,
            catalog,
            payments,
            profiles,
            clock,
            trusted_agent_keys: PublicKeySet::new(),
            external_checkout: None,
            external_orders: None,
            offers: std::sync::OnceLock::new(),
        }
    }

    /// Hands completions to a backend's own checkout (see
    /// [`ExternalCheckout`](crate::ports::ExternalCheckout)).
    pub fn with_external_checkout(
        mut self,
        external: Arc<dyn crate::ports::ExternalCheckout>,
    ) -> Self {
        self.external_checkout = Some(external);
        self
    }

    /// Adds the agent platform keys the merchant trusts without a profile
    /// fetch (loaded by bootstrap from `trusted_agent_jwks_file`).
    pub fn with_trusted_agent_keys(mut self, keys: PublicKeySet) -> Self {
        self.trusted_agent_keys = keys;
        self
    }

    /// Spends one call of `class` from the budget of `key` (the caller's
    /// identity), or answers `rate_limited` with a `retry_after`.
    pub fn rate_limit(&self, class: rate_limit::ToolClass, key: &str) -> Result<()> {
        self.rate_limiter.check(class, key)
    }

    /// The caller a presented API key or bearer token proves.
    pub async fn authenticate(&self, credential: &str) -> Result<Caller> {
        self.authenticator.authenticate(credential).await
    }

    /// Whether `caller` may run `op` under the configured auth mode.
    pub fn authorize(&self, caller: &Caller, op: access::Operation) -> Result<()> {
        access::authorize(caller, op, self.settings.auth.mode)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The merchant key ring (signing cart mandates, JWKS).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn payments(&self) -> &Arc<dyn Payments> {
        &self.payments
    }

    /// Fetches agent platform profiles (UCP negotiation, agent keys).
    pub fn profiles(&self) -> &Arc<dyn ProfileFetcher> {
        &self.profiles
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub async fn health(&self) -> Health {
        let store = match self.store.health().await {
            Ok(()) => "ok",
            Err(_) => "unavailable",
        };
        Health {
            status: if store == "ok" { "ok" } else { "degraded" },
            store,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    // ---- Catalog ----------------------------------------------------------

    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.catalog.search(query).await
    }

    pub async fn product(&self, id: &ProductId) -> Result<Product> {
        self.catalog
            .product(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("product {id} does not exist")))
    }

    pub async fn categories(&self) -> Result<Vec<CategoryNode>> {
        self.catalog.categories().await
    }

    /// Looks up a variant and returns the cart line for `quantity` units at
    /// the catalog's current price.
    async fn priced_line(&self, variant: &VariantId, quantity: u32) -> Result<CartLine> {
        let (product, vid) = self
            .catalog
            .variant(variant)
            .await?
            .ok_or_else(|| Error::not_found(format!("variant {variant} does not exist")))?;
        let v = product
            .variant(&vid)
            .ok_or_else(|| Error::not_found(format!("variant {variant} does not exist")))?;
        let title = if v.title.is_empty() || product.variants.len() == 1 {
            product.title.clone()
        } else {
            format!("{} — {}", product.title, v.title)
        };
        Ok(CartLine {
            variant_id: v.id.clone(),
            product_id: product.id.clone(),
            sku: v.sku.clone(),
            title,
            quantity,
            unit_price: v.price,
            requires_shipping: v.requires_shipping,
        })
    }

    // ---- Carts --------------------------------------------------------------

    /// Creates a cart, optionally with initial lines, priced from the
    /// catalog.
    pub async fn create_cart(&self, caller: &Caller, lines: &[(VariantId, u32)]) -> Result<Cart> {
        let now = self.now();
        let mut cart = Cart::new(
            CartId::from_uuid(uuid::Uuid::now_v7()),
            self.settings.currency,
            caller.subject.clone(),
            now,
            self.settings.cart_ttl,
        );
        for (variant, quantity) in lines {
            let line = self.priced_line(variant, *quantity).await?;
            cart.add(line, now)?;
        }
        self.store.insert_cart(&cart).await?;
        Ok(cart)
    }

    async fn load_cart(&self, caller: &Caller, id: &CartId) -> Result<Versioned<Cart>> {
        let found = self.store.get_cart(id).await?;
        match found {
            Some(v) if caller.may_access(&v.value.owner) => Ok(v),
            // Someone else's cart reads as absent: never confirm it exists.
            _ => Err(Error::not_found(format!("cart {id} does not exist"))),
        }
    }

    /// Returns the cart with every line re-priced from the catalog.
    pub async fn get_cart(&self, caller: &Caller, id: &CartId) -> Result<Cart> {
        let mut cart = self.load_cart(caller, id).await?.value;
        self.reprice(&mut cart).await?;
        Ok(cart)
    }

    async fn reprice(&self, cart: &mut Cart) -> Result<()> {
        for line in &mut cart.lines {
            // A variant that vanished from the catalog keeps its last price;
            // checkout refuses it later with a clear message.
            if let Ok(fresh) = self.priced_line(&line.variant_id, line.quantity).await {
                line.unit_price = fresh.unit_price;
                line.title = fresh.title;
            }
        }
        Ok(())
    }

    /// Applies `change` with compare-and-set, retrying on concurrent edits.
    pub async fn update_cart(
        &self,
        caller: &Caller,
        id: &CartId,
        change: CartChange,
    ) -> Result<Cart> {
        // Price lookups happen once, outside the retry loop.
        let priced = match &change {
            CartChange::Add { variant, quantity } => {
                Some(self.priced_line(variant, *quantity).await?)
            }
            _ => None,
        };
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { value: mut cart, version } = self.load_cart(caller, id).await?;
            let now = self.now();
            match &change {
                CartChange::Add { .. } => {
                    if let Some(line) = priced.clone() {
                        cart.add(line, now)?;
                    }
                }
                CartChange::SetQuantity { variant, quantity } => {
                    cart.set_quantity(variant, *quantity, now)?
                }
                CartChange::Remove { variant } => cart.remove(variant, now)?,
                CartChange::Clear => cart.clear(now)?,
            }
            match self.store.update_cart(&cart, version).await {
                Ok(_) => {
                    self.reprice(&mut cart).await?;
                    return Ok(cart);
                }
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::VersionConflict, "the cart is being changed concurrently; retry"))
    }

    pub async fn cancel_cart(&self, caller: &Caller, id: &CartId) -> Result<Cart> {
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { value: mut cart, version } = self.load_cart(caller, id).await?;
            cart.cancel(self.now())?;
            match self.store.update_cart(&cart, version).await {
                Ok(_) => return Ok(cart),
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(ErrorCode::VersionConflict, "the cart is being changed concurrently; retry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_rules() {
        let alice = Caller::subject("alice");
        assert!(alice.may_access(&None));
        assert!(alice.may_access(&Some("alice".into())));
        assert!(!alice.may_access(&Some("bob".into())));
        assert!(!Caller::anonymous().may_access(&Some("bob".into())));
    }
}
