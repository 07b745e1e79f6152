//! Checkout session use cases: create (from items or a cart), read, update
//! with full-replacement semantics, and cancel. Completion is the checkout
//! pipeline's (`complete.rs`).
//!
//! Every change ends in one recomputation ([`Gateway::recompute`]), so
//! whatever a transport shows is consistent however the session was
//! reached: prices re-read from the catalog (never the agent's), stock
//! checked, fulfillment options priced from the `[shipping]` table,
//! discount codes applied and allocated, totals computed, messages
//! rebuilt, and the status settled: `ready_for_complete` when nothing is
//! missing and no error message stands, `incomplete` otherwise.
//!
//! Business outcomes are messages on the session, not errors: an item out
//! of stock, a refused code or an undeliverable address leave a usable
//! session with a message (UCP 2026-04-08 `message_error.json`); only what
//! stops the request itself (an unknown session, an expired one, a
//! terminal one) is an [`Error`]. Items that do not exist cannot become
//! lines at all, so a request naming one is [`CheckoutOutcome::Rejected`]
//! with messages and nothing is written.
//!
//! Writes are compare-and-set with retry, like carts: each attempt re-reads
//! the session and re-applies the request, so concurrent updates behave as
//! if they had been serial.

use std::collections::BTreeMap;

use crate::domain::checkout::{
    Buyer, FulfillmentSelection, Message, MessageType, PaymentSelection, PostalAddress, Severity,
};
use crate::domain::{
    CartId, CheckoutId, CheckoutSession, CheckoutStatus, Error, ErrorCode, LineItem, Money,
    Product, Result, Totals, VariantId,
};
use crate::ports::Versioned;
use crate::settings::PolicyLink;
use crate::ucp::pricing::{
    normalise_code, DiscountLine, FulfillmentOption, MethodKind, PickupLocation,
};

use super::{Caller, Gateway, CAS_ATTEMPTS};

/// The most lines a checkout holds, as for carts: one atomic commit must
/// be able to take stock for all of them.
pub const MAX_CHECKOUT_LINES: usize = crate::domain::cart::MAX_LINES;

/// One requested item: a catalog variant and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInput {
    pub variant: VariantId,
    pub quantity: u32,
}

/// Where a checkout's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinesInput {
    Items(Vec<ItemInput>),
    /// The contents of a cart (UCP cart capability, `cart_id` on create:
    /// "Business MUST use cart contents"), re-priced from the catalog.
    Cart(CartId),
}

impl Default for LinesInput {
    fn default() -> Self {
        Self::Items(Vec::new())
    }
}

/// The buyer's fulfillment choice as requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfillmentInput {
    pub method: MethodKind,
    /// The shipping address; ignored for pickup, which goes to the
    /// configured location.
    pub destination: Option<PostalAddress>,
    /// The option chosen among those offered; for pickup the one location
    /// is chosen by choosing the method.
    pub option_id: Option<String>,
}

/// What a platform asks a checkout to hold. On create, `None` is "not
/// given"; on update it is "leave as is" (UCP 2026-04-08 REST
/// `update_checkout`: an omitted optional field leaves the session
/// unchanged, a given one replaces it entirely). Lines are always given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutInput {
    pub lines: LinesInput,
    pub buyer: Option<Buyer>,
    pub fulfillment: Option<FulfillmentInput>,
    /// Replaces the codes; an empty list clears them (`discount.json`).
    pub discount_codes: Option<Vec<String>>,
    pub payment: Option<PaymentSelection>,
}

/// The protocol a session was created under, kept on it so later calls
/// answer in the same shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutContext {
    pub ucp_version: String,
    /// Names of the capabilities active for the checkout.
    pub capabilities: Vec<String>,
}

/// The answer to a create or update.
// One value per request that is matched at once: boxing the session would
// cost an allocation and every caller a deref for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutOutcome {
    /// The session, written; business problems are among its messages.
    Session(CheckoutSession),
    /// Nothing was written: the request named items that cannot become
    /// lines. UCP answers this with an `error_response` carrying these
    /// messages.
    Rejected(Vec<Message>),
}

/// Everything a transport needs to render a session besides the session:
/// the priced fulfillment options, the pickup location, policy links and
/// the accepted payment handler. Computed from settings, so the wire layer
/// needs neither settings nor the gateway.
#[derive(Debug, Clone)]
pub struct CheckoutView<'a> {
    pub session: &'a CheckoutSession,
    /// Options for the session's current fulfillment method and address.
    pub fulfillment_options: Vec<FulfillmentOption>,
    /// The pickup location, when pickup is offered.
    pub pickup: Option<&'a PickupLocation>,
    pub links: &'a [PolicyLink],
    /// The payment processor's handler id (`sandbox`, `stripe`).
    pub payment_handler: &'a str,
    pub public_base_url: &'a str,
    /// The merchant as AP2 names it; rendered as `merchant` on checkouts
    /// locked to the AP2 extension, so the signed checkout says whom it
    /// pays.
    pub ap2_merchant: crate::ap2::v02::Merchant,
}

impl CheckoutView<'_> {
    /// How the session is fulfilled, when chosen.
    pub fn method(&self) -> Option<MethodKind> {
        method_of(self.session, self.pickup)
    }
}

pub(super) fn method_of(
    s: &CheckoutSession,
    pickup: Option<&PickupLocation>,
) -> Option<MethodKind> {
    match (&s.fulfillment.option_id, pickup) {
        (Some(id), Some(p)) if *id == p.id => Some(MethodKind::Pickup),
        _ if s.fulfillment.address.is_some() || s.fulfillment.option_id.is_some() => {
            Some(MethodKind::Shipping)
        }
        _ => None,
    }
}

/// What is still missing before `session` can complete, as JSONPaths into
/// the checkout (`$.buyer.email`, `$.payment.instruments`, ...). Empty when
/// nothing is. For the MCP `negotiate_terms` tool and the like.
pub fn missing_fields(session: &CheckoutSession) -> Vec<String> {
    session.missing_for_completion().into_iter().filter_map(|m| m.path).collect()
}

fn error_message(code: &str, content: String, severity: Severity, path: String) -> Message {
    Message {
        kind: MessageType::Error,
        code: code.to_owned(),
        content,
        severity: Some(severity),
        path: Some(path),
    }
}

fn expired(id: &CheckoutId) -> Error {
    Error::new(ErrorCode::SessionExpired, format!("checkout {id} has expired"))
}

/// The display title of a variant, as carts show it.
fn line_title(product: &Product, variant_title: &str) -> String {
    if variant_title.is_empty() || product.variants.len() == 1 {
        product.title.clone()
    } else {
        format!("{} — {}", product.title, variant_title)
    }
}

/// An item resolved against the catalog, before it gets a line id.
struct Resolved {
    line: LineItem,
}

/// The catalog's answers already read while serving one request, by
/// variant id: [`Gateway::recompute`] takes them instead of reading the same
/// products again a moment later. A create read each line's product twice,
/// which was a fifth of its work.
type Known = BTreeMap<VariantId, (Product, VariantId)>;

impl Gateway {
    /// The render context of `session` (see [`CheckoutView`]).
    pub fn checkout_view<'a>(&'a self, session: &'a CheckoutSession) -> CheckoutView<'a> {
        let shipping = &self.settings.shipping;
        let pickup = shipping.pickup.as_ref().filter(|_| shipping.pickup_enabled);
        let options = match method_of(session, pickup) {
            Some(MethodKind::Pickup) => {
                shipping.pickup_option(session.currency).into_iter().collect()
            }
            Some(MethodKind::Shipping) => match &session.fulfillment.address {
                Some(a) => shipping.shipping_options(&a.address_country, session.totals.subtotal),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        CheckoutView {
            session,
            fulfillment_options: options,
            pickup,
            links: &self.settings.policy_links,
            payment_handler: self.payments.name(),
            public_base_url: &self.settings.public_base_url,
            ap2_merchant: self.ap2_merchant(),
        }
    }

    /// Creates a checkout session owned by `caller`.
    pub async fn create_checkout(
        &self,
        caller: &Caller,
        ctx: &CheckoutContext,
        input: CheckoutInput,
    ) -> Result<CheckoutOutcome> {
        let (items, cart_id) = match &input.lines {
            LinesInput::Items(items) => (items.clone(), None),
            LinesInput::Cart(id) => (self.cart_items(caller, id).await?, Some(id.clone())),
        };
        let (resolved, known) = match self.resolve_items(&items, cart_id.is_some()).await? {
            Ok(r) => r,
            Err(messages) => return Ok(CheckoutOutcome::Rejected(messages)),
        };
        let now = self.now();
        let mut session = CheckoutSession::new(
            CheckoutId::from_uuid(uuid::Uuid::now_v7()),
            self.settings.currency,
            Vec::new(),
            caller.subject.clone(),
            now,
            self.settings.checkout_ttl,
        )?;
        session.cart_id = cart_id;
        session.ucp_version = Some(ctx.ucp_version.clone());
        session.capabilities = ctx.capabilities.clone();
        set_lines(&mut session, resolved);
        let pending = self.apply_input(&mut session, &input);
        let session = self.recompute(session, pending, &known).await?;
        self.store.insert_checkout(&session).await?;
        Ok(CheckoutOutcome::Session(session))
    }

    /// Reads a session. A read writes nothing: prices and stock are
    /// checked again by every update and by completion (the guardrail), and
    /// a read must not clobber what completion wrote (a declined payment's
    /// message, an escalation).
    pub async fn get_checkout(&self, caller: &Caller, id: &CheckoutId) -> Result<CheckoutSession> {
        let session = self.load_checkout(caller, id).await?.value;
        if session.is_expired(self.now()) {
            return Err(expired(id));
        }
        Ok(session)
    }

    /// Replaces the session's contents with `input` (UCP REST PUT): lines
    /// always, every other part when given.
    pub async fn update_checkout(
        &self,
        caller: &Caller,
        id: &CheckoutId,
        input: CheckoutInput,
    ) -> Result<CheckoutOutcome> {
        // Check access and state before reading the catalog for the lines.
        let current = self.load_checkout(caller, id).await?.value;
        current.ensure_editable(self.now()).map_err(|e| rename_expiry(e, id))?;
        let items = match &input.lines {
            LinesInput::Items(items) => items.clone(),
            LinesInput::Cart(_) => {
                return Err(Error::invalid("a checkout's cart is set when it is created"))
            }
        };
        let (resolved, known) = match self.resolve_items(&items, false).await? {
            Ok(r) => r,
            Err(messages) => return Ok(CheckoutOutcome::Rejected(messages)),
        };
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { value: mut session, version } = self.load_checkout(caller, id).await?;
            let now = self.now();
            session.ensure_editable(now).map_err(|e| rename_expiry(e, id))?;
            set_lines(&mut session, resolved.iter().map(|r| Resolved { line: r.line.clone() }));
            let mut pending = self.apply_input(&mut session, &input);
            if input.payment.is_none() {
                // The payment stays, and so does what was said about it.
                pending.extend(request_messages(&session));
            }
            session.updated_at = now;
            let session = self.recompute(session, pending, &known).await?;
            match self.store.update_checkout(&session, version).await {
                Ok(_) => return Ok(CheckoutOutcome::Session(session)),
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// Cancels a session that is not yet terminal.
    pub async fn cancel_checkout(
        &self,
        caller: &Caller,
        id: &CheckoutId,
    ) -> Result<CheckoutSession> {
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { value, version } = self.load_checkout(caller, id).await?;
            let session = value.transition(CheckoutStatus::Canceled, self.now())?;
            match self.store.update_checkout(&session, version).await {
                Ok(_) => return Ok(session),
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// Reads a session the caller may see. Someone else's reads as absent:
    /// an id never confirms that another platform's session exists.
    pub(crate) async fn load_checkout(
        &self,
        caller: &Caller,
        id: &CheckoutId,
    ) -> Result<Versioned<CheckoutSession>> {
        match self.store.get_checkout(id).await? {
            Some(v) if caller.may_access(&v.value.owner) => Ok(v),
            _ => Err(Error::not_found(format!("checkout {id} does not exist"))),
        }
    }

    /// The items of an active cart the caller may see.
    async fn cart_items(&self, caller: &Caller, id: &CartId) -> Result<Vec<ItemInput>> {
        let cart = self.load_cart(caller, id).await?.value;
        if cart.status() != crate::domain::CartStatus::Active {
            return Err(Error::new(ErrorCode::IllegalTransition, format!("cart {id} is canceled")));
        }
        if cart.is_expired(self.now()) {
            return Err(Error::new(ErrorCode::SessionExpired, format!("cart {id} has expired")));
        }
        Ok(cart
            .lines
            .iter()
            .map(|l| ItemInput { variant: l.variant_id.clone(), quantity: l.quantity })
            .collect())
    }

    /// Prices each requested item from the catalog. Repeated variants are
    /// merged. Items that do not exist come back as messages, one per
    /// item, with the path of the request field (`from_cart` paths point
    /// at the cart instead).
    async fn resolve_items(
        &self,
        items: &[ItemInput],
        from_cart: bool,
    ) -> Result<std::result::Result<(Vec<Resolved>, Known), Vec<Message>>> {
        let mut merged: Vec<ItemInput> = Vec::new();
        for item in items {
            if item.quantity == 0 || item.quantity > crate::domain::cart::MAX_LINE_QUANTITY {
                return Err(Error::new(
                    ErrorCode::QuantityLimitExceeded,
                    format!(
                        "quantity must be between 1 and {}",
                        crate::domain::cart::MAX_LINE_QUANTITY
                    ),
                ));
            }
            match merged.iter_mut().find(|m| m.variant == item.variant) {
                Some(m) => {
                    m.quantity = m.quantity.saturating_add(item.quantity);
                    if m.quantity > crate::domain::cart::MAX_LINE_QUANTITY {
                        return Err(Error::new(
                            ErrorCode::QuantityLimitExceeded,
                            format!("too many units of {}", item.variant),
                        ));
                    }
                }
                None => merged.push(item.clone()),
            }
            // Checked as lines grow, so a huge request costs no more than a
            // full checkout does.
            if merged.len() > MAX_CHECKOUT_LINES {
                return Err(Error::new(
                    ErrorCode::QuantityLimitExceeded,
                    format!("a checkout holds at most {MAX_CHECKOUT_LINES} lines"),
                ));
            }
        }
        let mut resolved = Vec::new();
        let mut known = Known::new();
        let mut missing = Vec::new();
        for (i, item) in merged.iter().enumerate() {
            let found = self.catalog.variant(&item.variant).await?;
            if let Some(f) = &found {
                known.insert(item.variant.clone(), f.clone());
            }
            let variant = found.as_ref().and_then(|(p, vid)| p.variant(vid).map(|v| (p, v)));
            match variant {
                Some((product, v)) => resolved.push(Resolved {
                    line: LineItem {
                        id: String::new(),
                        variant_id: v.id.clone(),
                        product_id: product.id.clone(),
                        sku: v.sku.clone(),
                        title: line_title(product, &v.title),
                        quantity: item.quantity,
                        unit_price: v.price,
                        requires_shipping: v.requires_shipping,
                    },
                }),
                None => {
                    let path = if from_cart {
                        "$.cart_id".to_owned()
                    } else {
                        format!("$.line_items[{i}].item.id")
                    };
                    missing.push(error_message(
                        "item_unavailable",
                        format!("item {} does not exist", item.variant),
                        Severity::Unrecoverable,
                        path,
                    ));
                }
            }
        }
        Ok(if missing.is_empty() { Ok((resolved, known)) } else { Err(missing) })
    }

    /// Applies the non-line parts of `input` to `session`. Returns messages
    /// about the request itself (a payment handler this gateway does not
    /// take), which the recomputation keeps.
    fn apply_input(&self, session: &mut CheckoutSession, input: &CheckoutInput) -> Vec<Message> {
        let mut said = Vec::new();
        if let Some(buyer) = &input.buyer {
            session.buyer = buyer.clone();
        }
        if let Some(f) = &input.fulfillment {
            session.fulfillment = match f.method {
                MethodKind::Pickup => match self.pickup_location() {
                    Some(p) => FulfillmentSelection {
                        address: Some(pickup_address(p)),
                        option_id: Some(p.id.clone()),
                        option_title: None,
                        amount: None,
                    },
                    None => {
                        said.push(error_message(
                            "fulfillment_method_unavailable",
                            "pickup is not offered".into(),
                            Severity::Recoverable,
                            "$.fulfillment.methods[0].type".into(),
                        ));
                        FulfillmentSelection::default()
                    }
                },
                MethodKind::Shipping => FulfillmentSelection {
                    address: f.destination.clone(),
                    option_id: f.option_id.clone(),
                    option_title: None,
                    amount: None,
                },
            };
        }
        if let Some(codes) = &input.discount_codes {
            session.discount_codes = codes.clone();
        }
        if let Some(p) = &input.payment {
            let ours = self.payments.name();
            if p.handler_id == ours && p.instrument_type == "card" {
                session.payment = Some(p.clone());
            } else {
                session.payment = None;
                said.push(error_message(
                    "payment_handler_unsupported",
                    format!(
                        "this business takes card instruments from handler {ours:?}, not a {:?} from {:?}",
                        p.instrument_type, p.handler_id
                    ),
                    Severity::Recoverable,
                    "$.payment.instruments[0]".into(),
                ));
            }
        }
        said
    }

    pub(super) fn pickup_location(&self) -> Option<&PickupLocation> {
        let shipping = &self.settings.shipping;
        shipping.pickup.as_ref().filter(|_| shipping.pickup_enabled)
    }

    /// Re-derives everything derived on `session` (see the module docs) and
    /// settles its status. `kept` are messages about the request to keep;
    /// `known` are catalog answers this request has already read.
    async fn recompute(
        &self,
        mut s: CheckoutSession,
        kept: Vec<Message>,
        known: &Known,
    ) -> Result<CheckoutSession> {
        let now = self.now();
        let mut messages: Vec<Message> = Vec::new();

        // Prices, titles and stock from the catalog.
        let mut categories: Vec<String> = Vec::with_capacity(s.line_items.len());
        for (i, line) in s.line_items.iter_mut().enumerate() {
            let found = match known.get(&line.variant_id) {
                Some(found) => Some(found.clone()),
                None => self.catalog.variant(&line.variant_id).await?,
            };
            let current = found.as_ref().and_then(|(p, vid)| p.variant(vid).map(|v| (p, v)));
            let path = format!("$.line_items[{i}]");
            match current {
                Some((product, v)) => {
                    line.unit_price = v.price;
                    line.title = line_title(product, &v.title);
                    line.requires_shipping = v.requires_shipping;
                    categories.push(product.category.clone());
                    if v.price.currency() != s.currency {
                        messages.push(error_message(
                            "item_unavailable",
                            format!("{} is not sold in {}", line.title, s.currency),
                            Severity::Recoverable,
                            path,
                        ));
                    } else if v.stock < line.quantity {
                        // Recoverable: the platform can lower the quantity
                        // or remove the line through the API.
                        let content = if v.stock == 0 {
                            format!("{} is out of stock", line.title)
                        } else {
                            format!("only {} of {} left", v.stock, line.title)
                        };
                        messages.push(error_message(
                            "out_of_stock",
                            content,
                            Severity::Recoverable,
                            path,
                        ));
                    }
                }
                None => {
                    categories.push(String::new());
                    messages.push(error_message(
                        "item_unavailable",
                        format!("{} is no longer sold", line.title),
                        Severity::Recoverable,
                        path,
                    ));
                }
            }
        }
        let merchandise = Money::sum(
            s.currency,
            s.line_items.iter().map(LineItem::line_total).collect::<Result<Vec<_>>>()?,
        )?;

        // Fulfillment: price the chosen option for the current address and
        // subtotal, or drop a choice that is no longer offered.
        let mut fulfillment_amount = Money::zero(s.currency);
        if !s.requires_fulfillment() {
            s.fulfillment.option_title = None;
            s.fulfillment.amount = None;
        } else {
            let pickup = self.pickup_location();
            let options: Vec<FulfillmentOption> = match method_of(&s, pickup) {
                Some(MethodKind::Pickup) => {
                    self.settings.shipping.pickup_option(s.currency).into_iter().collect()
                }
                _ => match &s.fulfillment.address {
                    Some(a) => {
                        self.settings.shipping.shipping_options(&a.address_country, merchandise)
                    }
                    None => Vec::new(),
                },
            };
            if let Some(a) = &s.fulfillment.address {
                if options.is_empty() {
                    messages.push(error_message(
                        "address_undeliverable",
                        format!("this business does not ship to {}", a.address_country),
                        Severity::Recoverable,
                        "$.fulfillment.methods[0].destinations[0]".into(),
                    ));
                }
            }
            match s.fulfillment.option_id.clone() {
                Some(chosen) => match options.iter().find(|o| o.id == chosen) {
                    Some(o) => {
                        s.fulfillment.option_title = Some(o.title.clone());
                        s.fulfillment.amount = Some(o.amount);
                        fulfillment_amount = o.amount;
                    }
                    None => {
                        s.fulfillment.option_id = None;
                        s.fulfillment.option_title = None;
                        s.fulfillment.amount = None;
                        messages.push(Message {
                            kind: MessageType::Warning,
                            code: "fulfillment_changed".into(),
                            content: format!(
                                "the fulfillment option {chosen:?} is not offered for this address; choose another"
                            ),
                            severity: None,
                            path: Some("$.fulfillment.methods[0].groups[0].selected_option_id".into()),
                        });
                    }
                },
                None => {
                    s.fulfillment.option_title = None;
                    s.fulfillment.amount = None;
                }
            }
        }

        // Discounts, on the re-priced lines.
        let mut uses = BTreeMap::new();
        for code in &s.discount_codes {
            let code = normalise_code(code);
            let limited =
                self.settings.discounts.rule(&code).is_some_and(|r| r.usage_limit.is_some());
            if limited && !uses.contains_key(&code) {
                match self.store.discount_uses(&code).await {
                    Ok(n) => {
                        uses.insert(code, n);
                    }
                    Err(e) => tracing::warn!(error = %e, "discount uses could not be counted"),
                }
            }
        }
        let line_totals =
            s.line_items.iter().map(LineItem::line_total).collect::<Result<Vec<_>>>()?;
        let discount_lines: Vec<DiscountLine<'_>> = s
            .line_items
            .iter()
            .zip(&categories)
            .zip(&line_totals)
            .map(|((l, category), total)| DiscountLine {
                line_id: &l.id,
                sku: l.sku.as_str(),
                category,
                total: total.minor(),
            })
            .collect();
        let discounts = self.settings.discounts.apply(
            &s.discount_codes,
            &discount_lines,
            s.currency,
            now,
            &uses,
        )?;
        s.applied_discounts = discounts.applied;
        messages.extend(discounts.messages);

        s.totals = Totals::compute(
            s.currency,
            &s.line_items,
            discounts.total,
            fulfillment_amount,
            Money::zero(s.currency),
        )?;

        messages.extend(kept);
        // What is missing is for the platform to supply through this API,
        // so it is `recoverable` ("platform can resolve by modifying inputs
        // and retrying via API", message_error.json); `requires_*`
        // severities would mean escalation to the buyer.
        messages.extend(s.missing_for_completion().into_iter().map(|mut m| {
            m.severity = Some(Severity::Recoverable);
            m
        }));
        let ready = !messages.iter().any(|m| m.kind == MessageType::Error);
        s.messages = messages;
        let target =
            if ready { CheckoutStatus::ReadyForComplete } else { CheckoutStatus::Incomplete };
        s.transition(target, now)
    }
}

/// The address of the pickup location, which becomes the destination.
fn pickup_address(p: &PickupLocation) -> PostalAddress {
    PostalAddress {
        name: Some(p.name.clone()),
        street_address: p.street_address.clone(),
        extended_address: None,
        address_locality: p.address_locality.clone(),
        address_region: p.address_region.clone(),
        postal_code: p.postal_code.clone(),
        address_country: p.address_country.clone(),
    }
}

/// Replaces the lines, keeping the id of every variant already present so
/// fulfillment groups and allocations keep pointing at the same lines.
fn set_lines(session: &mut CheckoutSession, resolved: impl IntoIterator<Item = Resolved>) {
    let old: Vec<(VariantId, String)> =
        session.line_items.iter().map(|l| (l.variant_id.clone(), l.id.clone())).collect();
    let mut next = session
        .line_items
        .iter()
        .filter_map(|l| l.id.strip_prefix("li_").and_then(|n| n.parse::<u64>().ok()))
        .max()
        .unwrap_or(0);
    session.line_items = resolved
        .into_iter()
        .map(|Resolved { mut line }| {
            line.id = match old.iter().find(|(v, _)| *v == line.variant_id) {
                Some((_, id)) => id.clone(),
                None => {
                    next += 1;
                    format!("li_{next}")
                }
            };
            line
        })
        .collect();
}

/// Messages that describe the request which last set the payment rather
/// than the session's state; recomputing cannot rebuild them.
fn request_messages(s: &CheckoutSession) -> Vec<Message> {
    s.messages.iter().filter(|m| m.code == "payment_handler_unsupported").cloned().collect()
}

/// `ensure_editable` says `session_expired` for an expired session; name
/// the session in the message.
fn rename_expiry(e: Error, id: &CheckoutId) -> Error {
    if e.code() == ErrorCode::SessionExpired {
        expired(id)
    } else {
        e
    }
}

fn busy() -> Error {
    Error::new(ErrorCode::VersionConflict, "the checkout is being changed concurrently; retry")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use time::OffsetDateTime;

    use super::*;
    use crate::ports::Clock;
    use crate::settings::Settings;

    struct ManualClock(Mutex<OffsetDateTime>);

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    async fn gateway() -> (Arc<Gateway>, Arc<ManualClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
        let app =
            crate::bootstrap::build_with_clock(Settings::for_data_dir(dir.path()), clock.clone())
                .await
                .unwrap();
        (app.gateway, clock, dir)
    }

    fn ctx() -> CheckoutContext {
        CheckoutContext { ucp_version: "2026-04-08".into(), capabilities: vec![] }
    }

    fn items(list: &[(&str, u32)]) -> LinesInput {
        LinesInput::Items(
            list.iter()
                .map(|(v, q)| ItemInput { variant: VariantId::parse(v).unwrap(), quantity: *q })
                .collect(),
        )
    }

    fn us_address() -> PostalAddress {
        PostalAddress {
            name: Some("Ada".into()),
            street_address: "1 Main St".into(),
            extended_address: None,
            address_locality: "Springfield".into(),
            address_region: Some("IL".into()),
            postal_code: "62701".into(),
            address_country: "US".into(),
        }
    }

    fn complete_input(lines: LinesInput) -> CheckoutInput {
        CheckoutInput {
            lines,
            buyer: Some(Buyer { email: Some("ada@example.com".into()), ..Buyer::default() }),
            fulfillment: Some(FulfillmentInput {
                method: MethodKind::Shipping,
                destination: Some(us_address()),
                option_id: Some("us-standard".into()),
            }),
            discount_codes: Some(vec!["welcome10".into()]),
            payment: Some(PaymentSelection {
                handler_id: "sandbox".into(),
                instrument_type: "card".into(),
                token: Some("success_token".into()),
            }),
        }
    }

    fn session(o: CheckoutOutcome) -> CheckoutSession {
        match o {
            CheckoutOutcome::Session(s) => s,
            CheckoutOutcome::Rejected(m) => panic!("rejected: {m:?}"),
        }
    }

    fn codes(s: &CheckoutSession) -> Vec<&str> {
        s.messages.iter().map(|m| m.code.as_str()).collect()
    }

    #[tokio::test]
    async fn a_complete_request_is_ready_with_catalog_prices() {
        let (gw, _, _dir) = gateway().await;
        let caller = Caller::subject("agent");
        // Two tees at 18.00: 36.00, 10 % off is 3.60, shipping 5.99 (under 50).
        let s = session(
            gw.create_checkout(
                &caller,
                &ctx(),
                complete_input(items(&[("v-organic-cotton-tee-black", 2)])),
            )
            .await
            .unwrap(),
        );
        assert_eq!(s.status(), CheckoutStatus::ReadyForComplete, "{:?}", s.messages);
        let t = s.totals;
        assert_eq!(
            (t.subtotal.minor(), t.discount.minor(), t.fulfillment.minor(), t.total.minor()),
            (3600, -360, 599, 3839)
        );
        assert_eq!(s.applied_discounts[0].line_ids, vec!["li_1"]);
        assert!(missing_fields(&s).is_empty());
        assert_eq!(gw.get_checkout(&caller, &s.id).await.unwrap(), s);
    }

    #[tokio::test]
    async fn what_is_missing_and_what_is_wrong_are_messages() {
        let (gw, _, _dir) = gateway().await;
        let caller = Caller::anonymous();
        type Case<'a> = (&'a str, CheckoutInput, &'a [&'a str]);
        let mut undeliverable = complete_input(items(&[("v-organic-cotton-tee-black", 1)]));
        if let Some(f) = undeliverable.fulfillment.as_mut() {
            f.destination.as_mut().unwrap().address_country = "FR".into();
        }
        let mut bad_handler = complete_input(items(&[("v-organic-cotton-tee-black", 1)]));
        bad_handler.payment.as_mut().unwrap().handler_id = "paypal".into();
        let cases: Vec<Case<'_>> = vec![
            (
                "nothing but items",
                CheckoutInput {
                    lines: items(&[("v-organic-cotton-tee-black", 1)]),
                    ..Default::default()
                },
                &["missing", "missing", "missing", "missing"],
            ),
            (
                "out of stock",
                complete_input(items(&[("v-flannel-overshirt-m", 1)])),
                &["out_of_stock"],
            ),
            (
                "more than the stock",
                complete_input(items(&[("v-leather-chelsea-boot-us-10", 2)])),
                &["out_of_stock"],
            ),
            // FR gets the international rate, so us-standard is dropped.
            ("option not offered there", undeliverable, &["fulfillment_changed", "missing"]),
            ("unknown handler", bad_handler, &["payment_handler_unsupported", "missing"]),
            (
                "digital goods need no shipping",
                CheckoutInput {
                    fulfillment: None,
                    ..complete_input(items(&[("v-salt-and-static-e-book", 1)]))
                },
                &[],
            ),
        ];
        for (name, input, want) in cases {
            let s = session(gw.create_checkout(&caller, &ctx(), input).await.unwrap());
            assert_eq!(codes(&s), want.to_vec(), "{name}");
            let ready = s.messages.iter().all(|m| m.kind != MessageType::Error);
            let want_status =
                if ready { CheckoutStatus::ReadyForComplete } else { CheckoutStatus::Incomplete };
            assert_eq!(s.status(), want_status, "{name}");
            for m in s.messages.iter().filter(|m| m.kind == MessageType::Error) {
                assert_eq!(m.severity, Some(Severity::Recoverable), "{name}: {m:?}");
            }
        }
    }

    #[tokio::test]
    async fn unknown_items_reject_the_request_and_write_nothing() {
        let (gw, _, _dir) = gateway().await;
        let out = gw
            .create_checkout(
                &Caller::anonymous(),
                &ctx(),
                CheckoutInput {
                    lines: items(&[("v-organic-cotton-tee-black", 1), ("v-nope", 1)]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let CheckoutOutcome::Rejected(messages) = out else { panic!("expected a rejection") };
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].path.as_deref(), Some("$.line_items[1].item.id"));
        assert_eq!(messages[0].severity, Some(Severity::Unrecoverable));
    }

    #[tokio::test]
    async fn updates_replace_keep_line_ids_and_respect_owners_and_expiry() {
        let (gw, clock, _dir) = gateway().await;
        let alice = Caller::subject("alice");
        let s = session(
            gw.create_checkout(
                &alice,
                &ctx(),
                complete_input(items(&[("v-organic-cotton-tee-black", 1)])),
            )
            .await
            .unwrap(),
        );
        // Replace lines; buyer, fulfillment and payment stay as they were.
        let update = CheckoutInput {
            lines: items(&[
                ("v-stoneware-coffee-mug-ocean-blue", 1),
                ("v-organic-cotton-tee-black", 3),
            ]),
            discount_codes: Some(vec![]),
            ..Default::default()
        };
        let u = session(gw.update_checkout(&alice, &s.id, update).await.unwrap());
        let ids: Vec<&str> = u.line_items.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["li_2", "li_1"]);
        assert!(u.applied_discounts.is_empty());
        assert_eq!(u.buyer, s.buyer);
        assert_eq!(u.totals.subtotal.minor(), 1600 + 3 * 1800);
        assert_eq!(u.totals.fulfillment.minor(), 0, "free over $50");
        assert_eq!(u.status(), CheckoutStatus::ReadyForComplete);

        let bob = Caller::subject("bob");
        for err in [
            gw.get_checkout(&bob, &s.id).await.unwrap_err(),
            gw.cancel_checkout(&bob, &s.id).await.unwrap_err(),
        ] {
            assert_eq!(err.code(), ErrorCode::NotFound);
        }

        *clock.0.lock().unwrap() += time::Duration::hours(7);
        let err = gw.get_checkout(&alice, &s.id).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::SessionExpired);
        let err = gw.update_checkout(&alice, &s.id, CheckoutInput::default()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::SessionExpired);
    }

    #[tokio::test]
    async fn carts_become_checkouts_and_cancel_is_final() {
        let (gw, _, _dir) = gateway().await;
        let caller = Caller::subject("agent");
        let variant = VariantId::parse("v-organic-cotton-tee-white").unwrap();
        let cart = gw.create_cart(&caller, &[(variant, 2)]).await.unwrap();
        let s = session(
            gw.create_checkout(
                &caller,
                &ctx(),
                CheckoutInput { lines: LinesInput::Cart(cart.id.clone()), ..Default::default() },
            )
            .await
            .unwrap(),
        );
        assert_eq!(s.cart_id.as_ref(), Some(&cart.id));
        assert_eq!(s.line_items[0].quantity, 2);
        let err = gw
            .create_checkout(
                &Caller::subject("other"),
                &ctx(),
                CheckoutInput { lines: LinesInput::Cart(cart.id.clone()), ..Default::default() },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound, "another caller's cart");

        let c = gw.cancel_checkout(&caller, &s.id).await.unwrap();
        assert_eq!(c.status(), CheckoutStatus::Canceled);
        let err = gw.cancel_checkout(&caller, &s.id).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::IllegalTransition);
        let err = gw.update_checkout(&caller, &s.id, CheckoutInput::default()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::IllegalTransition);
    }

    #[tokio::test]
    async fn pickup_is_free_and_needs_no_address() {
        let (gw, _, _dir) = gateway().await;
        let mut input = complete_input(items(&[("v-organic-cotton-tee-black", 1)]));
        input.fulfillment = Some(FulfillmentInput {
            method: MethodKind::Pickup,
            destination: None,
            option_id: None,
        });
        let s = session(gw.create_checkout(&Caller::anonymous(), &ctx(), input).await.unwrap());
        assert_eq!(s.status(), CheckoutStatus::ReadyForComplete, "{:?}", s.messages);
        assert_eq!(s.totals.fulfillment.minor(), 0);
        let view = gw.checkout_view(&s);
        assert_eq!(view.method(), Some(MethodKind::Pickup));
        assert_eq!(view.fulfillment_options.len(), 1);
    }
}
