//! The two checkout tools: `negotiate_terms` opens (or updates) a UCP
//! checkout session for a cart and, once it is ready, returns what the
//! agent signs its AP2 mandates over: for a session locked to AP2 v0.2 (the
//! platform negotiated `dev.ucp.shopping.ap2_mandate`) the merchant's
//! checkout JWT, otherwise, given the user's intent mandate, the
//! merchant-signed v0.1 cart mandate; `execute_checkout` runs the
//! completion pipeline with either generation of mandates, exactly once per
//! idempotency key.
//!
//! Inputs stay flat: an address is six plain fields, not an object, so a
//! model fills it as easily as it reads it back.

use std::sync::Arc;

use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router, Json};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::error::ToolError;
use super::schema::flat_input;
use super::views::{
    Ap2CheckoutView, CapabilityView, CartMandateView, CheckoutResult, CheckoutSummary,
    NegotiatedTerms, PayeeView,
};
use super::GatewayServer;
use crate::ap2::sdjwt::MAX_PRESENTATION_BYTES;
use crate::domain::checkout::{Buyer, PaymentSelection, PostalAddress};
use crate::domain::{CartId, CheckoutId, CheckoutSession, CheckoutStatus, Error, ErrorCode};
use crate::gateway::idempotency::fingerprint;
use crate::gateway::{
    Caller, CheckoutContext, CheckoutInput, CheckoutOutcome, CompleteRequest, Completion,
    Disposition, FulfillmentInput, Gateway, IdempotencyKey, ItemInput, LinesInput, MandateChain,
    Mandates, MandatesV02, RenderResponse,
};
use crate::ports::StoredResponse;
use crate::ucp::pricing::MethodKind;
use crate::ucp::profile::{AP2_MANDATE, CHECKOUT};

/// The idempotency scope of the MCP tools: keys used here never collide
/// with keys a platform uses over UCP REST.
const TRANSPORT: &str = "mcp";

/// The longest free-text field accepted (names, streets, emails).
const MAX_FIELD: usize = 200;
/// A compact JWS is a few kilobytes; anything far larger is not a v0.1
/// mandate. A v0.2 mandate (an SD-JWT chain) may be up to
/// [`MAX_PRESENTATION_BYTES`].
const MAX_MANDATE: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum FulfillmentMethod {
    Shipping,
    Pickup,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct NegotiateTermsArgs {
    /// The cart to check out (from manage_cart).
    pub cart_id: String,
    /// The checkout_id a previous negotiate_terms call returned, to update
    /// that checkout (adding an address, choosing shipping, re-reading the
    /// cart) instead of opening a new one.
    pub checkout_id: Option<String>,
    /// The URL of your agent platform's UCP profile (https). It decides the
    /// negotiated capabilities, and its signing_keys verify your mandates.
    pub agent_profile_url: Option<String>,
    /// The buyer's email; receipts and order updates go there.
    pub buyer_email: Option<String>,
    pub buyer_first_name: Option<String>,
    pub buyer_last_name: Option<String>,
    pub buyer_phone: Option<String>,
    /// shipping (default when an address is given) or pickup (the store's
    /// pickup point; no address needed).
    pub fulfillment_method: Option<FulfillmentMethod>,
    /// Recipient name for the shipping address.
    pub ship_to_name: Option<String>,
    /// Street and number. The address needs street, city, postal code and
    /// country.
    pub ship_to_street: Option<String>,
    /// Apartment, suite, floor.
    pub ship_to_street2: Option<String>,
    pub ship_to_city: Option<String>,
    /// State, province or region, e.g. CA.
    pub ship_to_region: Option<String>,
    pub ship_to_postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. US.
    pub ship_to_country: Option<String>,
    /// One of the fulfillment_options ids a previous answer listed.
    pub fulfillment_option_id: Option<String>,
    /// A discount code the user gave you; an empty string removes codes.
    pub discount_code: Option<String>,
    /// The user-signed AP2 v0.1 intent mandate (compact JWS). With it, a
    /// ready checkout comes back with the merchant-signed cart mandate bound
    /// to this intent. Not used for a checkout locked to AP2 v0.2 (the
    /// answer then carries ap2_checkout instead).
    pub intent_mandate: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct ExecuteCheckoutArgs {
    /// The checkout_id from negotiate_terms; it must be ready_for_complete.
    pub checkout_id: String,
    /// AP2 v0.2 only: the checkout mandate (SD-JWT presentation ending in a
    /// closed mandate.checkout.1 over ap2_checkout.checkout_jwt from
    /// negotiate_terms). Send it when negotiate_terms returned ap2_checkout;
    /// then leave intent_mandate and cart_mandate out.
    pub checkout_mandate: Option<String>,
    /// AP2 v0.1 only: the user-signed intent mandate (compact JWS), the same
    /// one given to negotiate_terms.
    pub intent_mandate: Option<String>,
    /// AP2 v0.1 only: the merchant-signed cart mandate from negotiate_terms,
    /// unchanged.
    pub cart_mandate: Option<String>,
    /// Always required. With checkout_mandate: the AP2 v0.2 payment mandate
    /// (SD-JWT presentation ending in a closed mandate.payment.1 whose
    /// transaction_id is ap2_checkout.checkout_hash). Otherwise: the AP2
    /// v0.1 payment mandate (compact JWS) signed over the cart mandate for
    /// exactly its total, carrying the payment token.
    pub payment_mandate: String,
    /// A fresh unique key (e.g. a UUID) for this purchase. On a retry after
    /// a timeout or a retryable error, send the same key with the same
    /// arguments: the first result comes back and nothing is charged twice.
    /// The same key with different arguments is refused.
    pub idempotency_key: String,
    /// Your platform's UCP profile URL, if your mandate keys are published
    /// there (as given to negotiate_terms).
    pub agent_profile_url: Option<String>,
}

fn text(raw: &Option<String>, name: &str) -> Result<Option<String>, ToolError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > MAX_FIELD || v.chars().any(char::is_control) => {
            Err(ToolError::invalid(format!("{name} must be at most {MAX_FIELD} plain characters")))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn mandate(raw: &str, name: &str) -> Result<String, ToolError> {
    let token = raw.trim();
    if token.is_empty() || token.len() > MAX_MANDATE {
        return Err(ToolError::new(
            ErrorCode::MandateMalformed,
            format!("{name} must be a compact JWS of at most {MAX_MANDATE} bytes"),
        ));
    }
    Ok(token.to_owned())
}

/// An AP2 v0.2 mandate: an SD-JWT presentation, kept byte for byte (its
/// key binding hashes it) but for surrounding whitespace.
fn presentation(raw: &str, name: &str) -> Result<String, ToolError> {
    let token = raw.trim();
    if token.is_empty() || token.len() > MAX_PRESENTATION_BYTES {
        return Err(ToolError::new(
            ErrorCode::MandateMalformed,
            format!(
                "{name} must be an AP2 v0.2 SD-JWT presentation of at most \
                 {MAX_PRESENTATION_BYTES} bytes"
            ),
        ));
    }
    Ok(token.to_owned())
}

/// A mandate argument that was given: not absent, not blank.
fn given(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().filter(|v| !v.trim().is_empty())
}

impl ExecuteCheckoutArgs {
    /// The mandates of the call, in the generation its arguments name:
    /// `checkout_mandate` makes it AP2 v0.2, otherwise it is a v0.1 chain.
    /// A mix, or a v0.1 chain with a part missing, is `mandate_malformed`.
    fn mandates(&self) -> Result<Mandates, ToolError> {
        let intent = given(&self.intent_mandate);
        let cart = given(&self.cart_mandate);
        match (given(&self.checkout_mandate), intent, cart) {
            (Some(checkout), None, None) => Ok(Mandates::V02(MandatesV02 {
                checkout: presentation(checkout, "checkout_mandate")?,
                payment: presentation(&self.payment_mandate, "payment_mandate")?,
            })),
            (Some(_), _, _) => Err(ToolError::new(
                ErrorCode::MandateMalformed,
                "checkout_mandate is AP2 v0.2: send it with the v0.2 payment_mandate only, \
                 without intent_mandate and cart_mandate (those belong to AP2 v0.1)",
            )),
            (None, Some(intent), Some(cart)) => Ok(Mandates::V01(MandateChain {
                intent: mandate(intent, "intent_mandate")?,
                cart: mandate(cart, "cart_mandate")?,
                payment: mandate(&self.payment_mandate, "payment_mandate")?,
            })),
            (None, intent, cart) => {
                let missing: Vec<&str> = [("intent_mandate", intent), ("cart_mandate", cart)]
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(n, _)| *n)
                    .collect();
                Err(ToolError::new(
                    ErrorCode::MandateMalformed,
                    format!(
                        "missing {}: send checkout_mandate and payment_mandate (AP2 v0.2, when \
                         negotiate_terms returned ap2_checkout), or intent_mandate, \
                         cart_mandate and payment_mandate (AP2 v0.1)",
                        missing.join(" and ")
                    ),
                ))
            }
        }
    }
}

fn profile_url(gw: &Gateway, raw: &Option<String>) -> Result<Option<url::Url>, ToolError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => Ok(Some(gw.profile_url(raw)?)),
    }
}

impl NegotiateTermsArgs {
    /// The buyer fields given, laid over `current`; `None` when none was.
    fn buyer(&self, current: &Buyer) -> Result<Option<Buyer>, ToolError> {
        let email = text(&self.buyer_email, "buyer_email")?;
        if let Some(e) = &email {
            let ok = e.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !e.contains(char::is_whitespace)
            });
            if !ok {
                return Err(ToolError::invalid("buyer_email is not an email address"));
            }
        }
        let first = text(&self.buyer_first_name, "buyer_first_name")?;
        let last = text(&self.buyer_last_name, "buyer_last_name")?;
        let phone = text(&self.buyer_phone, "buyer_phone")?;
        if email.is_none() && first.is_none() && last.is_none() && phone.is_none() {
            return Ok(None);
        }
        let mut buyer = current.clone();
        buyer.email = email.or(buyer.email);
        buyer.first_name = first.or(buyer.first_name);
        buyer.last_name = last.or(buyer.last_name);
        buyer.phone_number = phone.or(buyer.phone_number);
        Ok(Some(buyer))
    }

    /// The shipping address, when any part of it was given; all of street,
    /// city, postal code and country are then required.
    fn address(&self) -> Result<Option<PostalAddress>, ToolError> {
        let name = text(&self.ship_to_name, "ship_to_name")?;
        let street = text(&self.ship_to_street, "ship_to_street")?;
        let street2 = text(&self.ship_to_street2, "ship_to_street2")?;
        let city = text(&self.ship_to_city, "ship_to_city")?;
        let region = text(&self.ship_to_region, "ship_to_region")?;
        let postal = text(&self.ship_to_postal_code, "ship_to_postal_code")?;
        let country = text(&self.ship_to_country, "ship_to_country")?;
        let any = [&name, &street, &street2, &city, &region, &postal, &country]
            .iter()
            .any(|f| f.is_some());
        if !any {
            return Ok(None);
        }
        let missing: Vec<&str> = [
            ("ship_to_street", &street),
            ("ship_to_city", &city),
            ("ship_to_postal_code", &postal),
            ("ship_to_country", &country),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
        if !missing.is_empty() {
            return Err(ToolError::invalid(format!(
                "a shipping address also needs {}",
                missing.join(", ")
            )));
        }
        let country = country.unwrap_or_default().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ToolError::invalid(
                "ship_to_country must be a two-letter ISO 3166-1 code such as US",
            ));
        }
        Ok(Some(PostalAddress {
            name,
            street_address: street.unwrap_or_default(),
            extended_address: street2,
            address_locality: city.unwrap_or_default(),
            address_region: region,
            postal_code: postal.unwrap_or_default(),
            address_country: country,
        }))
    }

    /// The fulfillment change asked for, against the session as it stands
    /// (`current`, none on create): a new address keeps the chosen option
    /// only if the option is named again.
    fn fulfillment(
        &self,
        current: Option<&CheckoutSession>,
    ) -> Result<Option<FulfillmentInput>, ToolError> {
        let address = self.address()?;
        let option = text(&self.fulfillment_option_id, "fulfillment_option_id")?;
        match self.fulfillment_method {
            Some(FulfillmentMethod::Pickup) => {
                if address.is_some() {
                    return Err(ToolError::invalid("pickup takes no shipping address"));
                }
                return Ok(Some(FulfillmentInput {
                    method: MethodKind::Pickup,
                    destination: None,
                    option_id: None,
                }));
            }
            Some(FulfillmentMethod::Shipping) | None => {}
        }
        if address.is_none() && option.is_none() && self.fulfillment_method.is_none() {
            return Ok(None);
        }
        let destination = address.or_else(|| current.and_then(|s| s.fulfillment.address.clone()));
        Ok(Some(FulfillmentInput { method: MethodKind::Shipping, destination, option_id: option }))
    }

    fn discount_codes(&self) -> Result<Option<Vec<String>>, ToolError> {
        match self.discount_code.as_deref().map(str::trim) {
            None => Ok(None),
            Some("") => Ok(Some(Vec::new())),
            Some(_) => Ok(text(&self.discount_code, "discount_code")?.map(|c| vec![c])),
        }
    }
}

/// What an agent signs AP2 v0.2 mandates over, for a session locked to the
/// extension: the merchant's checkout JWT of the session as it stands (the
/// same one completion checks the checkout mandate against).
fn ap2_checkout(gw: &Gateway, session: &CheckoutSession) -> Result<Ap2CheckoutView, ToolError> {
    let signed = gw.signed_checkout(session)?;
    let merchant = gw.ap2_merchant();
    let hash = signed.authorization.checkout_hash;
    Ok(Ap2CheckoutView {
        ap2_version: "0.2".to_owned(),
        checkout_jwt: signed.authorization.checkout_jwt,
        checkout_hash: hash.clone(),
        aud: gw.settings().public_base_url.clone(),
        nonce: hash,
        payee: PayeeView { id: merchant.id, name: merchant.name, website: merchant.website },
        payment_amount: session.totals.total.into(),
    })
}

/// Paying with AP2 mandates means a card through this merchant's processor;
/// the token itself arrives in the payment mandate.
fn mandate_payment(gw: &Gateway) -> PaymentSelection {
    PaymentSelection {
        handler_id: gw.payments().name().to_owned(),
        instrument_type: "card".to_owned(),
        token: None,
    }
}

fn rejected(messages: &[crate::domain::checkout::Message]) -> ToolError {
    let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    ToolError::invalid(format!("the cart cannot be checked out: {}", text.join("; ")))
}

fn next_step(terms: &NegotiatedTerms, intent_given: bool) -> String {
    let c = &terms.checkout;
    let total = &c.totals.total.display;
    match c.status.as_str() {
        "ready_for_complete" if terms.ap2_checkout.is_some() => format!(
            "This checkout is locked to AP2 v0.2 (dev.ucp.shopping.ap2_mandate): no v0.1 intent \
             or cart mandate. Show the user the items and the total {total}, and get an \
             explicit yes. Then sign a v0.2 checkout mandate (mandate.checkout.1 with \
             ap2_checkout.checkout_jwt and checkout_hash) and a v0.2 payment mandate \
             (mandate.payment.1 with transaction_id = checkout_hash, payment_amount {total}, \
             payee ap2_checkout.payee), both presented with ap2_checkout.aud and nonce, and \
             call execute_checkout with checkout_id {}, checkout_mandate, payment_mandate and \
             a fresh idempotency_key. Any change to the checkout needs a new negotiate_terms \
             and new mandates.",
            c.checkout_id
        ),
        "ready_for_complete" => match (&terms.cart_mandate, &terms.cart_mandate_error) {
            (Some(m), _) => format!(
                "Show the user the items and the total {total}, and get an explicit yes. Then \
                 have the payment mandate signed over cart_mandate.token for exactly {}, and call \
                 execute_checkout with checkout_id {}, the three mandates and a fresh \
                 idempotency_key.",
                m.total.display, c.checkout_id
            ),
            (None, Some(e)) => format!(
                "The merchant would not sign a cart mandate ({}: {}). Fix that (for example a \
                 new intent mandate whose max_amount covers {total}) and call negotiate_terms \
                 again with checkout_id {}.",
                e.code, e.message, c.checkout_id
            ),
            (None, None) if !intent_given => format!(
                "The checkout is ready: the total is {total}. Show the user the items and the \
                 total and get an explicit yes; then call negotiate_terms again with checkout_id \
                 {} and the user's signed intent_mandate to get the cart mandate.",
                c.checkout_id
            ),
            (None, None) => format!("The checkout is ready: the total is {total}."),
        },
        "incomplete" if !c.missing.is_empty() => format!(
            "Ask the user for what is missing ({}) and call negotiate_terms again with \
             checkout_id {} and the answers.",
            c.missing.join(", "),
            c.checkout_id
        ),
        "incomplete" => format!(
            "Resolve the error messages (for example change the cart with manage_cart), then \
             call negotiate_terms again with checkout_id {}.",
            c.checkout_id
        ),
        "requires_escalation" => {
            "The buyer has to finish at continue_url; give them the link.".to_owned()
        }
        "completed" => "This checkout is already completed; use track_order.".to_owned(),
        other => format!("The checkout is {other}; start again with a new cart if needed."),
    }
}

#[tool_router(router = checkout_router, vis = "pub(crate)")]
impl GatewayServer {
    #[tool(
        name = "negotiate_terms",
        title = "Open a checkout and agree the terms",
        description = "Turn a cart into a checkout and agree the terms with the merchant. The \
first call (cart_id, optionally agent_profile_url, buyer and shipping details) runs UCP \
capability negotiation and opens a checkout; later calls pass the returned checkout_id to add \
what is missing. Every answer has the checkout's status, lines, totals (shipping, discount, \
tax, total; all from the merchant, never computed by you), fulfillment options, messages and \
the list of missing fields, plus next_step. Ask the user for missing details; do not invent \
them. When the checkout is ready_for_complete and you pass the user's intent_mandate, the \
answer includes the merchant-signed cart_mandate to pay against (AP2 v0.1). When the platform \
profile at agent_profile_url declares dev.ucp.shopping.ap2_mandate, the checkout is locked to AP2 \
v0.2: a ready answer includes ap2_checkout (the merchant's checkout_jwt, checkout_hash, aud, \
nonce, payee and amount) to sign a v0.2 checkout mandate and payment mandate over, and no cart \
mandate is issued. Nothing is charged here.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    pub async fn negotiate_terms(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<NegotiateTermsArgs>,
    ) -> Result<Json<NegotiatedTerms>, ToolError> {
        let gw = self.gateway();
        let cart_id = CartId::parse(args.cart_id.trim())?;
        let profile = profile_url(gw, &args.agent_profile_url)?;
        let intent = match &args.intent_mandate {
            Some(raw) if !raw.trim().is_empty() => Some(mandate(raw, "intent_mandate")?),
            _ => None,
        };
        // Checkouts opened for a platform that declares the AP2 mandate
        // extension are locked to AP2 v0.2.
        let negotiated = gw.negotiate_with_ap2(profile.as_ref()).await?;
        if !negotiated.is_active(CHECKOUT) {
            return Err(ToolError::new(
                ErrorCode::VersionUnsupported,
                "the agent platform's profile and this merchant share no checkout capability",
            ));
        }
        let ctx = CheckoutContext {
            ucp_version: negotiated.version().to_owned(),
            capabilities: negotiated.capabilities().iter().map(|c| c.name.clone()).collect(),
        };
        let outcome = match args.checkout_id.as_deref().map(str::trim) {
            None | Some("") => {
                let input = CheckoutInput {
                    lines: LinesInput::Cart(cart_id.clone()),
                    buyer: args.buyer(&Buyer::default())?,
                    fulfillment: args.fulfillment(None)?,
                    discount_codes: args.discount_codes()?,
                    payment: Some(mandate_payment(gw)),
                };
                gw.create_checkout(&caller, &ctx, input).await?
            }
            Some(raw) => {
                let id = CheckoutId::parse(raw)?;
                let current = gw.get_checkout(&caller, &id).await?;
                if current.cart_id.as_ref() != Some(&cart_id) {
                    return Err(ToolError::invalid(format!(
                        "checkout {id} was not opened for cart {cart_id}"
                    )));
                }
                // The checkout follows the cart: changes made with
                // manage_cart since the last call are picked up here.
                let cart = gw.get_cart(&caller, &cart_id).await?;
                let items = cart
                    .lines
                    .iter()
                    .map(|l| ItemInput { variant: l.variant_id.clone(), quantity: l.quantity })
                    .collect();
                let input = CheckoutInput {
                    lines: LinesInput::Items(items),
                    buyer: args.buyer(&current.buyer)?,
                    fulfillment: args.fulfillment(Some(&current))?,
                    discount_codes: args.discount_codes()?,
                    payment: current.payment.is_none().then(|| mandate_payment(gw)),
                };
                gw.update_checkout(&caller, &id, input).await?
            }
        };
        let session = match outcome {
            CheckoutOutcome::Session(s) => s,
            CheckoutOutcome::Rejected(messages) => return Err(rejected(&messages)),
        };
        let locked = session.capabilities.iter().any(|c| c == AP2_MANDATE);
        let ready = session.status() == CheckoutStatus::ReadyForComplete;
        let ap2_checkout = if locked && ready { Some(ap2_checkout(gw, &session)?) } else { None };
        let (cart_mandate, cart_mandate_error) = match (&intent, ready && !locked) {
            (Some(intent), true) => {
                match gw.issue_cart_mandate(&caller, &session.id, intent, profile.as_ref()).await {
                    Ok(m) => (
                        Some(CartMandateView {
                            token: m.token,
                            checkout_id: m.checkout_id.to_string(),
                            total: m.total.into(),
                            expires_at: super::views::rfc3339(m.expires_at),
                        }),
                        None,
                    ),
                    Err(e) => (None, Some(ToolError::from(e))),
                }
            }
            _ => (None, None),
        };
        let mut terms = NegotiatedTerms {
            ucp_version: negotiated.version().to_owned(),
            capabilities: negotiated
                .capabilities()
                .iter()
                .map(|c| CapabilityView { name: c.name.clone(), version: c.version.clone() })
                .collect(),
            checkout: CheckoutSummary::new(&gw.checkout_view(&session))?,
            cart_mandate,
            cart_mandate_error,
            ap2_checkout,
            next_step: String::new(),
        };
        terms.next_step = next_step(&terms, intent.is_some());
        Ok(Json(terms))
    }

    #[tool(
        name = "execute_checkout",
        title = "Pay and place the order",
        description = "Complete a ready checkout: the merchant verifies the AP2 mandates, \
re-prices every line from its catalog, applies its spending guardrails, charges \
the payment and commits the order. This moves real money: call it only after the user has seen \
the items and the exact total and said yes. Use a fresh idempotency_key per purchase; if the \
call times out or fails with retryable=true, retry with the SAME idempotency_key and the SAME \
arguments, which returns the first result without charging again (changed arguments under a \
used key are refused with idempotency_conflict). Returns the order id, the amount charged, the \
platform fee and the merchant-signed receipt. Send ONE of two mandate forms. AP2 v0.2, when \
negotiate_terms reported the dev.ucp.shopping.ap2_mandate capability and returned \
ap2_checkout: checkout_mandate (SD-JWT, closed mandate.checkout.1 over ap2_checkout.checkout_jwt) \
and payment_mandate (SD-JWT, closed mandate.payment.1 with transaction_id = \
ap2_checkout.checkout_hash), both with aud and nonce from ap2_checkout, and no intent_mandate or \
cart_mandate. AP2 v0.1 otherwise: intent_mandate (signed by the user), cart_mandate (from \
negotiate_terms, unchanged) and payment_mandate (compact JWS for exactly the cart total), and no \
checkout_mandate. A wrong combination is refused with mandate_malformed; a v0.1 chain on a \
checkout locked to v0.2 with mandate_required.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn execute_checkout(
        &self,
        Extension(caller): Extension<Caller>,
        Parameters(args): Parameters<ExecuteCheckoutArgs>,
    ) -> Result<Json<CheckoutResult>, ToolError> {
        let gw = self.gateway();
        let id = CheckoutId::parse(args.checkout_id.trim())?;
        let key = IdempotencyKey::parse(args.idempotency_key.trim())?;
        let profile = profile_url(gw, &args.agent_profile_url)?;
        let mandates = args.mandates()?;
        // The fingerprint covers what the call asks for, never the
        // JSON-RPC envelope (its id changes on every retry) nor the key.
        let profile_str = profile.as_ref().map(url::Url::as_str);
        let asked = match &mandates {
            Mandates::V01(chain) => json!({
                "intent_mandate": chain.intent,
                "cart_mandate": chain.cart,
                "payment_mandate": chain.payment,
                "agent_profile_url": profile_str,
            }),
            Mandates::V02(m) => json!({
                "checkout_mandate": m.checkout,
                "payment_mandate": m.payment,
                "agent_profile_url": profile_str,
            }),
        };
        let fp = fingerprint("execute_checkout", Some(id.as_str()), &asked)?;
        let render: RenderResponse = Arc::new(|c: &Completion| success(c));
        let (who, which) = (&caller, &id);
        let done = gw
            .idempotent(TRANSPORT, &caller, &key, &fp, |held| async move {
                let request = CompleteRequest {
                    mandates: Some(mandates),
                    agent_profile_url: profile,
                    idempotency_key: held,
                    render: Some(Arc::clone(&render)),
                    ..CompleteRequest::default()
                };
                match gw.complete_checkout(who, which, request).await {
                    Ok(c) => match success(&c) {
                        Ok(response) => (response, Disposition::Keep),
                        Err(e) => (failure(&e), Disposition::Keep),
                    },
                    // A declined card was tried: the same request must not
                    // try it again.
                    Err(e) if e.code() == ErrorCode::PaymentDeclined => {
                        (failure(&e), Disposition::Keep)
                    }
                    // Nothing happened (or the pipeline rolled back): the
                    // key is free for a corrected retry.
                    Err(e) => (failure(&e), Disposition::Release),
                }
            })
            .await?;
        if done.response.status == 200 {
            let mut result: CheckoutResult = serde_json::from_slice(&done.response.body)
                .map_err(|e| ToolError::from(Error::internal(e)))?;
            result.replayed = done.replayed;
            Ok(Json(result))
        } else {
            let error: ToolError = serde_json::from_slice(&done.response.body)
                .map_err(|e| ToolError::from(Error::internal(e)))?;
            Err(error)
        }
    }
}

/// The stored answer of a completed checkout.
fn success(c: &Completion) -> crate::domain::Result<StoredResponse> {
    let body = serde_json::to_vec(&CheckoutResult::from(c)).map_err(Error::internal)?;
    Ok(StoredResponse { status: 200, body })
}

/// The stored answer of a failed one: the tool error body, with the HTTP
/// status of its code so the record reads the same as a REST one.
fn failure(e: &Error) -> StoredResponse {
    StoredResponse {
        status: e.code().http_status(),
        body: serde_json::to_vec(&ToolError::from(e.clone())).unwrap_or_default(),
    }
}
