//! UCP wire types: serde structs for what goes over the wire in each
//! protocol version, converted from and into the one domain model.
//!
//! Responses are built from domain values (`From`/builder functions over
//! [`CheckoutView`], [`Cart`], [`Order`], [`Product`]); requests
//! deserialize into plain structs that keep every field optional, and
//! convert into domain input with `TryFrom`, where each id goes through its
//! constructor and each refusal is `invalid_input` naming the field. Domain
//! types never derive `Deserialize`, so nothing unparsed gets in.
//!
//! [`v2026_04_08`] is the primary version; [`v2026_01_11`] renders the same
//! domain in the first release's shape and lists every difference it
//! handles. This module holds what both share on the wire.
//!
//! Pure: no HTTP, no store. The `ucp` member of a response is built here
//! from the negotiated version and capability names ([`ucp_meta`]).

pub mod v2026_01_11;
pub mod v2026_04_08;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ap2::sdjwt;
use crate::domain::checkout::{
    Buyer, Message, MessageType, PaymentSelection, PostalAddress, Severity,
};
use crate::domain::{Error, ErrorCode, LineItem, Money, Result};
use crate::gateway::{CheckoutView, MandateChain, Mandates, MandatesV02};
use crate::settings::PolicyLink;
use crate::ucp::pricing::{self, FulfillmentOption, MethodKind};
use crate::ucp::profile::{handler_name, AP2_MANDATE, CART, DISCOUNT, FULFILLMENT};
use crate::ucp::{VERSION, VERSION_2026_01_11};

/// The wire shapes this gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireVersion {
    V2026_04_08,
    V2026_01_11,
}

impl WireVersion {
    /// The shape for a negotiated protocol version. Versions other than
    /// the two spoken never get this far (negotiation refuses them), so
    /// anything unknown gets the primary shape.
    pub fn of(version: &str) -> Self {
        if version == VERSION_2026_01_11 {
            Self::V2026_01_11
        } else {
            Self::V2026_04_08
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2026_04_08 => VERSION,
            Self::V2026_01_11 => VERSION_2026_01_11,
        }
    }
}

/// The `ucp` member of a response: the version and the capabilities
/// active for it, each at the protocol version (every capability this
/// gateway offers is versioned with its protocol). 2026-04-08 lists them as
/// a registry keyed by name; 2026-01-11 as an array of `{name, version}`
/// (`ucp.json`, `response_checkout`). A checkout in 2026-04-08 also names
/// the payment handler in use (`response_checkout_schema` requires
/// `payment_handlers`).
pub fn ucp_meta(version: WireVersion, capabilities: &[String], handler: Option<&str>) -> Value {
    let v = version.as_str();
    match version {
        WireVersion::V2026_01_11 => json!({
            "version": v,
            "capabilities": capabilities
                .iter()
                .map(|c| json!({"name": c, "version": v}))
                .collect::<Vec<_>>(),
        }),
        WireVersion::V2026_04_08 => {
            let registry: Map<String, Value> =
                capabilities.iter().map(|c| (c.clone(), json!([{ "version": v }]))).collect();
            let mut meta = json!({"version": v, "capabilities": registry});
            if let Some(h) = handler {
                meta["payment_handlers"] = json!({ handler_name(h): [{ "id": h, "version": v }] });
            }
            meta
        }
    }
}

/// A UCP `error_response` (2026-04-08 `types/error_response.json`): no
/// resource, only messages. 2026-01-11 has no such schema; the same shape
/// is used with that version's number, so a platform of either version
/// can read it.
pub fn error_response(
    version: WireVersion,
    messages: &[Message],
    continue_url: Option<&str>,
) -> Value {
    let mut body = json!({
        "ucp": {"version": version.as_str(), "status": "error"},
        "messages": messages.iter().map(|m| WireMessage::new(m, version)).collect::<Vec<_>>(),
    });
    if let Some(url) = continue_url {
        body["continue_url"] = json!(url);
    }
    body
}

/// The message of a failed request, for an `error_response`: the error's
/// stable code, and a severity saying whether retrying can help.
pub fn error_message(err: &Error) -> Message {
    let severity = if err.retryable() { Severity::Recoverable } else { Severity::Unrecoverable };
    Message {
        kind: MessageType::Error,
        code: err.code().as_str().to_owned(),
        content: err.message().to_owned(),
        severity: Some(severity),
        path: None,
    }
}

/// A message (`types/message.json`: error, warning or info).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl WireMessage {
    pub fn new(m: &Message, version: WireVersion) -> Self {
        let kind = match m.kind {
            MessageType::Error => "error",
            MessageType::Warning => "warning",
            MessageType::Info => "info",
        };
        // Errors must carry a severity; warnings and info have none.
        let severity = match m.kind {
            MessageType::Error => {
                Some(severity(m.severity.unwrap_or(Severity::Recoverable), version))
            }
            _ => None,
        };
        Self {
            kind,
            code: Some(m.code.clone()).filter(|c| !c.is_empty()),
            content: m.content.clone(),
            severity,
            path: m.path.clone(),
        }
    }
}

/// 2026-01-11 has no `unrecoverable` (`message_error.json`); its nearest
/// is `requires_buyer_review`, which also stops the checkout until a
/// person acts.
fn severity(s: Severity, version: WireVersion) -> &'static str {
    match (s, version) {
        (Severity::Recoverable, _) => "recoverable",
        (Severity::RequiresBuyerInput, _) => "requires_buyer_input",
        (Severity::RequiresBuyerReview, _) => "requires_buyer_review",
        (Severity::Unrecoverable, WireVersion::V2026_04_08) => "unrecoverable",
        (Severity::Unrecoverable, WireVersion::V2026_01_11) => "requires_buyer_review",
    }
}

/// One `total` entry. Amounts are signed integers in minor units; which
/// sign a discount takes is the version's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_text: Option<String>,
    pub amount: i64,
}

impl Total {
    pub fn new(kind: &'static str, text: &str, amount: i64) -> Self {
        Self { kind, display_text: Some(text.to_owned()), amount }
    }
}

/// `types/item.json`: the variant, its title and unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub id: String,
    pub title: String,
    pub price: i64,
}

/// `types/line_item.json`, with the line's own subtotal and total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireLineItem {
    pub id: String,
    pub item: Item,
    pub quantity: u32,
    pub totals: Vec<Total>,
}

impl WireLineItem {
    pub fn new(id: &str, variant: &str, title: &str, unit_price: Money, quantity: u32) -> Self {
        let total = unit_price.minor().saturating_mul(i64::from(quantity));
        Self {
            id: id.to_owned(),
            item: Item {
                id: variant.to_owned(),
                title: title.to_owned(),
                price: unit_price.minor(),
            },
            quantity,
            totals: vec![
                Total::new("subtotal", "Subtotal", total),
                Total::new("total", "Total", total),
            ],
        }
    }
}

impl From<&LineItem> for WireLineItem {
    fn from(l: &LineItem) -> Self {
        Self::new(&l.id, l.variant_id.as_str(), &l.title, l.unit_price, l.quantity)
    }
}

/// `types/link.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl From<&PolicyLink> for Link {
    fn from(l: &PolicyLink) -> Self {
        Self { kind: l.kind.clone(), url: l.url.clone(), title: l.title.clone() }
    }
}

/// `types/buyer.json`, fields the gateway keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WireBuyer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

impl WireBuyer {
    /// `None` for a buyer with nothing known, which is omitted.
    pub fn of(b: &Buyer) -> Option<Self> {
        let w = Self {
            first_name: b.first_name.clone(),
            last_name: b.last_name.clone(),
            email: b.email.clone(),
            phone_number: b.phone_number.clone(),
        };
        (w != Self::default()).then_some(w)
    }
}

/// `types/order_confirmation.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderConfirmation {
    pub id: String,
    pub permalink_url: String,
}

/// The permalink of an order: where the buyer can see it.
/// The order of a completed session. A session in progress or escalated
/// carries its attempt's order id too, but no order exists for it yet.
pub fn completed_order(s: &crate::domain::CheckoutSession) -> Option<&crate::domain::OrderId> {
    s.order_id.as_ref().filter(|_| s.status() == crate::domain::CheckoutStatus::Completed)
}

pub fn order_permalink(public_base_url: &str, order_id: &str) -> String {
    format!("{public_base_url}/orders/{order_id}")
}

// ---- Fulfillment (identical in both versions on the response side) ----

/// `types/postal_address.json`, plus `id` as a shipping destination.
/// 2026-04-08 names the contact with `first_name`/`last_name`, 2026-01-11
/// with `full_name`; the domain keeps one `name`, split at its last space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WireAddress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub street_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_address: Option<String>,
    pub address_locality: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_region: Option<String>,
    pub postal_code: String,
    pub address_country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
}

impl WireAddress {
    pub fn new(a: &PostalAddress, id: Option<&str>, version: WireVersion) -> Self {
        let (first_name, last_name, full_name) = match (&a.name, version) {
            (None, _) => (None, None, None),
            (Some(n), WireVersion::V2026_01_11) => (None, None, Some(n.clone())),
            (Some(n), WireVersion::V2026_04_08) => match n.trim().rsplit_once(' ') {
                Some((first, last)) => (Some(first.trim().to_owned()), Some(last.to_owned()), None),
                None => (Some(n.trim().to_owned()), None, None),
            },
        };
        Self {
            id: id.map(str::to_owned),
            street_address: a.street_address.clone(),
            extended_address: a.extended_address.clone(),
            address_locality: a.address_locality.clone(),
            address_region: a.address_region.clone(),
            postal_code: a.postal_code.clone(),
            address_country: a.address_country.clone(),
            first_name,
            last_name,
            full_name,
        }
    }
}

/// A fulfillment destination (`types/fulfillment_destination.json`).
///
/// Pickup locations are rendered as an address with an id, not as a
/// `retail_location` (`{id, name, address}`): the destination is a `oneOf`
/// of the two, and since a postal address has no required fields and
/// allows extra ones, every retail location also matches the shipping
/// branch and fails the `oneOf`. The location's name is in the option
/// title instead.
pub type Destination = WireAddress;

/// `types/fulfillment_option.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireOption {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub totals: Vec<Total>,
}

impl From<&FulfillmentOption> for WireOption {
    fn from(o: &FulfillmentOption) -> Self {
        let amount = o.amount.minor();
        Self {
            id: o.id.clone(),
            title: o.title.clone(),
            description: o.description.clone(),
            totals: vec![
                Total::new("fulfillment", &o.title, amount),
                Total::new("total", "Total", amount),
            ],
        }
    }
}

/// `types/fulfillment_group.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub id: String,
    pub line_item_ids: Vec<String>,
    pub options: Vec<WireOption>,
    pub selected_option_id: Option<String>,
}

/// `types/fulfillment_method.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Method {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub line_item_ids: Vec<String>,
    pub destinations: Vec<Destination>,
    pub selected_destination_id: Option<String>,
    pub groups: Vec<Group>,
}

/// `types/fulfillment_available_method.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AvailableMethod {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub line_item_ids: Vec<String>,
}

/// `types/fulfillment.json`: the chosen method, if any, and the methods
/// the lines could use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fulfillment {
    pub methods: Vec<Method>,
    pub available_methods: Vec<AvailableMethod>,
}

/// The id of the one destination a session has.
pub const DESTINATION_ID: &str = "dest_1";
/// The id of the one group a session has.
pub const GROUP_ID: &str = "group_1";

/// The fulfillment part of a checkout. A session has one method: its id
/// is the method type (`shipping`, `pickup`), so an update that names the
/// method by id alone (2026-01-11 omits `type` on update) still says which.
pub fn fulfillment(view: &CheckoutView<'_>, version: WireVersion) -> Option<Fulfillment> {
    let s = view.session;
    let lines: Vec<String> =
        s.line_items.iter().filter(|l| l.requires_shipping).map(|l| l.id.clone()).collect();
    if lines.is_empty() {
        return None;
    }
    let mut available = vec![AvailableMethod { kind: "shipping", line_item_ids: lines.clone() }];
    if view.pickup.is_some() {
        available.push(AvailableMethod { kind: "pickup", line_item_ids: lines.clone() });
    }
    let methods = match (view.method(), &s.fulfillment.address) {
        (Some(kind), address) => {
            let destinations = match (kind, view.pickup, address) {
                (MethodKind::Pickup, Some(p), _) => {
                    vec![WireAddress::new(&pickup_address(p), Some(&p.id), version)]
                }
                (_, _, Some(a)) => vec![WireAddress::new(a, Some(DESTINATION_ID), version)],
                _ => Vec::new(),
            };
            let selected_destination = match (kind, view.pickup) {
                (MethodKind::Pickup, Some(p)) => Some(p.id.clone()),
                _ if !destinations.is_empty() => Some(DESTINATION_ID.to_owned()),
                _ => None,
            };
            let groups = if destinations.is_empty() {
                Vec::new()
            } else {
                vec![Group {
                    id: GROUP_ID.to_owned(),
                    line_item_ids: lines.clone(),
                    options: view.fulfillment_options.iter().map(WireOption::from).collect(),
                    selected_option_id: s.fulfillment.option_id.clone(),
                }]
            };
            vec![Method {
                id: kind.as_str().to_owned(),
                kind: kind.as_str(),
                line_item_ids: lines,
                destinations,
                selected_destination_id: selected_destination,
                groups,
            }]
        }
        (None, _) => Vec::new(),
    };
    Some(Fulfillment { methods, available_methods: available })
}

fn pickup_address(p: &pricing::PickupLocation) -> PostalAddress {
    PostalAddress {
        name: None,
        street_address: p.street_address.clone(),
        extended_address: None,
        address_locality: p.address_locality.clone(),
        address_region: p.address_region.clone(),
        postal_code: p.postal_code.clone(),
        address_country: p.address_country.clone(),
    }
}

// ---- Discounts ----

/// `discount.json` `allocation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub path: String,
    pub amount: i64,
}

/// `discount.json` `applied_discount`. Amounts are positive here, unlike
/// the negative discount entry of the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedDiscount {
    pub code: String,
    pub title: String,
    pub amount: i64,
    pub automatic: bool,
    pub method: &'static str,
    pub priority: u32,
    pub allocations: Vec<Allocation>,
}

/// `discount.json` `discounts_object`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discounts {
    pub codes: Vec<String>,
    pub applied: Vec<AppliedDiscount>,
}

/// The discounts part of a checkout: the codes as sent, and each applied
/// one with its split across lines (`$.line_items[i]` paths).
pub fn discounts(view: &CheckoutView<'_>) -> Discounts {
    let s = view.session;
    let totals: Vec<(&str, i64)> = s
        .line_items
        .iter()
        .map(|l| (l.id.as_str(), l.unit_price.minor().saturating_mul(i64::from(l.quantity))))
        .collect();
    let splits = pricing::allocations(&totals, &s.applied_discounts);
    let applied = s
        .applied_discounts
        .iter()
        .zip(splits)
        .enumerate()
        .map(|(i, (d, split))| AppliedDiscount {
            code: d.code.clone(),
            title: d.title.clone(),
            amount: d.amount.minor().saturating_neg(),
            automatic: false,
            method: "across",
            priority: u32::try_from(i + 1).unwrap_or(u32::MAX),
            allocations: split
                .into_iter()
                .filter_map(|(id, amount)| {
                    let index = s.line_items.iter().position(|l| l.id == id)?;
                    Some(Allocation { path: format!("$.line_items[{index}]"), amount })
                })
                .collect(),
        })
        .collect();
    Discounts { codes: s.discount_codes.clone(), applied }
}

/// Whether a session's checkout lists capability `name`.
pub fn has(view: &CheckoutView<'_>, name: &str) -> bool {
    view.session.capabilities.iter().any(|c| c == name)
}

/// Capability names used by the renderers.
pub const EXT_FULFILLMENT: &str = FULFILLMENT;
pub const EXT_DISCOUNT: &str = DISCOUNT;
pub const EXT_CART: &str = CART;
pub const EXT_AP2: &str = AP2_MANDATE;

// ---- Totals ----

/// How a version writes a discount in totals: 2026-04-08 as a negative
/// amount (`total.json`: discounts have `exclusiveMaximum: 0`), 2026-01-11
/// as a positive one that is subtracted (its `total.json` has `minimum: 0`
/// on every amount: "sums subtotal - discount + fulfillment + tax + fee").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountSign {
    Negative,
    Positive,
}

/// The totals array: one subtotal and one total (`totals.json` requires
/// exactly one of each), a discount entry when there is a discount, a
/// fulfillment entry once an option is chosen (even when free), and tax
/// only when there is some.
pub fn totals(
    t: &crate::domain::Totals,
    fulfillment_title: Option<&str>,
    sign: DiscountSign,
) -> Vec<Total> {
    let mut out = vec![Total::new("subtotal", "Subtotal", t.subtotal.minor())];
    if t.discount.minor() != 0 {
        let amount = match sign {
            DiscountSign::Negative => t.discount.minor(),
            DiscountSign::Positive => t.discount.minor().saturating_neg(),
        };
        out.push(Total::new("discount", "Discount", amount));
    }
    if let Some(title) = fulfillment_title {
        out.push(Total::new("fulfillment", title, t.fulfillment.minor()));
    }
    if t.tax.minor() != 0 {
        out.push(Total::new("tax", "Tax", t.tax.minor()));
    }
    out.push(Total::new("total", "Total", t.total.minor()));
    out
}

/// RFC 3339, or nothing for a time that has no RFC 3339 form (past 9999).
pub fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// What a `complete` request carries, in either version, for the
/// completion pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    /// The instrument and its processor token (no token when the
    /// credential carried an AP2 v0.2 payment mandate instead).
    pub payment: Option<PaymentSelection>,
    /// The AP2 mandates, when sent.
    pub mandates: Option<Mandates>,
}

/// The `ap2` object of a complete request, in both versions.
///
/// AP2 v0.2 (the UCP extension, `ap2_mandate.json`): `checkout_mandate`,
/// with the payment mandate in the selected instrument's
/// `credential.token`, which is then not a processor token. AP2 v0.1 (this
/// gateway's chain, `docs/mandates.md`): `intent_mandate`, `cart_mandate`
/// and `payment_mandate`, all three. One generation per request: a mix is
/// refused rather than half-read, so a platform never believes something
/// was checked that was not.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ap2Request {
    pub checkout_mandate: Option<String>,
    pub intent_mandate: Option<String>,
    pub cart_mandate: Option<String>,
    pub payment_mandate: Option<String>,
}

/// The longest compact JWS accepted as a v0.1 mandate.
const MAX_MANDATE_LEN: usize = 16 * 1024;

impl Ap2Request {
    /// The mandates this object carries, if any. For v0.2 the payment
    /// mandate is taken out of `payment`'s token.
    pub fn mandates(&self, payment: &mut Option<PaymentSelection>) -> Result<Option<Mandates>> {
        let v01 = [&self.intent_mandate, &self.cart_mandate, &self.payment_mandate];
        if let Some(checkout) = &self.checkout_mandate {
            if v01.iter().any(|m| m.is_some()) {
                return Err(Error::invalid(
                    "ap2: send either checkout_mandate (AP2 v0.2) or the intent, cart and \
                     payment mandates (AP2 v0.1), not both",
                ));
            }
            let token = payment.as_mut().and_then(|p| p.token.take());
            let Some(payment_mandate) = token else {
                return Err(Error::new(
                    ErrorCode::MandateRequired,
                    "ap2.checkout_mandate needs its payment mandate as the selected \
                     instrument's credential.token",
                ));
            };
            if checkout.is_empty() || checkout.len() > sdjwt::MAX_PRESENTATION_BYTES {
                return Err(Error::invalid(format!(
                    "ap2.checkout_mandate must be 1 to {} bytes",
                    sdjwt::MAX_PRESENTATION_BYTES
                )));
            }
            return Ok(Some(Mandates::V02(MandatesV02 {
                checkout: checkout.clone(),
                payment: payment_mandate,
            })));
        }
        if v01.iter().all(|m| m.is_none()) {
            return Ok(None);
        }
        let part = |name: &str, v: &Option<String>| match v {
            Some(s) if !s.is_empty() && s.len() <= MAX_MANDATE_LEN => Ok(s.clone()),
            Some(_) => {
                Err(Error::invalid(format!("ap2.{name} must be 1 to {MAX_MANDATE_LEN} bytes")))
            }
            None => Err(Error::invalid(format!(
                "ap2.{name} is missing: a chain has all three mandates"
            ))),
        };
        Ok(Some(Mandates::V01(MandateChain {
            intent: part("intent_mandate", &self.intent_mandate)?,
            cart: part("cart_mandate", &self.cart_mandate)?,
            payment: part("payment_mandate", &self.payment_mandate)?,
        })))
    }
}

// ---- Requests shared by both versions ----

/// The longest free-text field accepted from a platform (names, streets).
const MAX_TEXT: usize = 512;

fn text(field: &str, v: &Option<String>) -> Result<Option<String>> {
    match v {
        Some(s) if s.len() > MAX_TEXT => {
            Err(Error::invalid(format!("{field} is longer than {MAX_TEXT} bytes")))
        }
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => Ok(Some(s.trim().to_owned())),
        None => Ok(None),
    }
}

fn required_text(field: &str, v: &Option<String>) -> Result<String> {
    text(field, v)?.ok_or_else(|| Error::invalid(format!("{field} is required")))
}

/// `types/line_item.json` in a request: the item id and a quantity.
#[derive(Debug, Clone, Deserialize)]
pub struct LineItemRequest {
    pub item: ItemRef,
    pub quantity: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemRef {
    pub id: String,
}

/// Line items of a request as (variant, quantity), the field named on
/// refusal. Quantities must be at least 1 (`line_item.json` `minimum: 1`);
/// the upper bound is the gateway's.
pub fn items(field: &str, lines: &[LineItemRequest]) -> Result<Vec<crate::gateway::ItemInput>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let variant = crate::domain::VariantId::parse(&l.item.id)
                .map_err(|e| Error::invalid(format!("{field}[{i}].item.id: {}", e.message())))?;
            let quantity = u32::try_from(l.quantity).ok().filter(|q| *q >= 1).ok_or_else(|| {
                Error::invalid(format!("{field}[{i}].quantity must be at least 1"))
            })?;
            Ok(crate::gateway::ItemInput { variant, quantity })
        })
        .collect()
}

/// `types/buyer.json` in a request (both versions; `full_name` is
/// 2026-01-11's and is split into first and last name).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuyerRequest {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
}

impl TryFrom<&BuyerRequest> for Buyer {
    type Error = Error;

    fn try_from(b: &BuyerRequest) -> Result<Self> {
        let email = text("buyer.email", &b.email)?;
        if let Some(e) = &email {
            let ok = e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
            if !ok {
                return Err(Error::invalid("buyer.email is not an email address"));
            }
        }
        let (mut first, mut last) =
            (text("buyer.first_name", &b.first_name)?, text("buyer.last_name", &b.last_name)?);
        // "if first_name or last_name fields are present they take
        // precedence" (2026-01-11 buyer.json, full_name).
        if first.is_none() && last.is_none() {
            if let Some(full) = text("buyer.full_name", &b.full_name)? {
                match full.rsplit_once(' ') {
                    Some((f, l)) => (first, last) = (Some(f.trim().to_owned()), Some(l.to_owned())),
                    None => first = Some(full),
                }
            }
        }
        Ok(Buyer {
            email,
            first_name: first,
            last_name: last,
            phone_number: text("buyer.phone_number", &b.phone_number)?,
        })
    }
}

/// A destination in a request: a postal address (pickup destinations
/// are the business's, so only their id matters).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DestinationRequest {
    pub id: Option<String>,
    pub street_address: Option<String>,
    pub extended_address: Option<String>,
    pub address_locality: Option<String>,
    pub address_region: Option<String>,
    pub postal_code: Option<String>,
    pub address_country: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub full_name: Option<String>,
}

impl DestinationRequest {
    fn address(&self, at: &str) -> Result<PostalAddress> {
        let f = |name: &str| format!("{at}.{name}");
        let country =
            required_text(&f("address_country"), &self.address_country)?.to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::invalid(format!(
                "{} must be an ISO 3166-1 alpha-2 code such as \"US\"",
                f("address_country")
            )));
        }
        let name = match (
            text(&f("first_name"), &self.first_name)?,
            text(&f("last_name"), &self.last_name)?,
        ) {
            (Some(a), Some(b)) => Some(format!("{a} {b}")),
            (Some(a), None) | (None, Some(a)) => Some(a),
            (None, None) => text(&f("full_name"), &self.full_name)?,
        };
        Ok(PostalAddress {
            name,
            street_address: required_text(&f("street_address"), &self.street_address)?,
            extended_address: text(&f("extended_address"), &self.extended_address)?,
            address_locality: required_text(&f("address_locality"), &self.address_locality)?,
            address_region: text(&f("address_region"), &self.address_region)?,
            postal_code: required_text(&f("postal_code"), &self.postal_code)?,
            address_country: country,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupRequest {
    pub id: Option<String>,
    pub selected_option_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MethodRequest {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub destinations: Vec<DestinationRequest>,
    pub selected_destination_id: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupRequest>,
}

/// `types/fulfillment.json` in a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FulfillmentRequest {
    #[serde(default)]
    pub methods: Vec<MethodRequest>,
}

impl FulfillmentRequest {
    /// The buyer's choice. One method per checkout: the type comes from
    /// `type`, else from the method id (the ids this gateway hands out
    /// are the types). The destination is the selected one, else the
    /// first; the option is the first group's selection.
    pub fn to_input(&self) -> Result<Option<crate::gateway::FulfillmentInput>> {
        let Some(m) = self.methods.first() else { return Ok(None) };
        if self.methods.len() > 1 {
            return Err(Error::invalid(
                "fulfillment.methods: this business takes one method per checkout",
            ));
        }
        let at = "fulfillment.methods[0]";
        let kind = match m.kind.as_deref().or(m.id.as_deref()) {
            Some("pickup") => MethodKind::Pickup,
            Some("shipping") | None => MethodKind::Shipping,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{at}.type must be shipping or pickup, not {other:?}"
                )))
            }
        };
        let option_id = m.groups.first().and_then(|g| g.selected_option_id.clone());
        let destination = match kind {
            MethodKind::Pickup => None,
            MethodKind::Shipping => {
                let chosen = m
                    .destinations
                    .iter()
                    .position(|d| d.id.is_some() && d.id == m.selected_destination_id)
                    .unwrap_or(0);
                match m.destinations.get(chosen) {
                    Some(d) => Some(d.address(&format!("{at}.destinations[{chosen}]"))?),
                    None => None,
                }
            }
        };
        Ok(Some(crate::gateway::FulfillmentInput { method: kind, destination, option_id }))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DiscountsRequest {
    pub codes: Option<Vec<String>>,
}

impl DiscountsRequest {
    /// The codes, bounded: a few codes is a checkout, hundreds is abuse.
    pub fn codes(&self) -> Result<Option<Vec<String>>> {
        let Some(codes) = &self.codes else { return Ok(None) };
        if codes.len() > 10 {
            return Err(Error::invalid("discounts.codes holds at most 10 codes"));
        }
        for (i, c) in codes.iter().enumerate() {
            if c.is_empty() || c.len() > 64 {
                return Err(Error::invalid(format!(
                    "discounts.codes[{i}] must be 1 to 64 characters"
                )));
            }
        }
        Ok(Some(codes.clone()))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CredentialRequest {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub token: Option<String>,
}

/// `types/payment_instrument.json` in a request (both versions).
#[derive(Debug, Clone, Deserialize)]
pub struct InstrumentRequest {
    pub id: Option<String>,
    pub handler_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub credential: Option<CredentialRequest>,
    pub selected: Option<bool>,
}

/// The longest credential token accepted: an AP2 v0.2 payment mandate
/// travels there (ap2-mandates, "Mandate Structure"), and it is an SD-JWT
/// chain, not a short processor token.
const MAX_CREDENTIAL_TOKEN: usize = sdjwt::MAX_PRESENTATION_BYTES;

impl InstrumentRequest {
    pub fn to_selection(&self, at: &str) -> Result<PaymentSelection> {
        let token = match self.credential.as_ref().and_then(|c| c.token.as_ref()) {
            Some(t) if t.is_empty() || t.len() > MAX_CREDENTIAL_TOKEN => {
                return Err(Error::invalid(format!(
                    "{at}.credential.token must be 1 to {MAX_CREDENTIAL_TOKEN} bytes"
                )))
            }
            t => t.cloned(),
        };
        if self.handler_id.is_empty() || self.handler_id.len() > 128 || self.kind.len() > 64 {
            return Err(Error::invalid(format!(
                "{at}: handler_id and type are required and short"
            )));
        }
        Ok(PaymentSelection {
            handler_id: self.handler_id.clone(),
            instrument_type: self.kind.clone(),
            token,
        })
    }
}

/// The instrument the platform selected among several: the one marked
/// `selected` (2026-04-08), else the one named by `selected_id`
/// (2026-01-11 `selected_instrument_id`), else the first.
pub fn selected_instrument(
    instruments: &[InstrumentRequest],
    selected_id: Option<&str>,
) -> Result<Option<PaymentSelection>> {
    let index = instruments
        .iter()
        .position(|i| i.selected == Some(true))
        .or_else(|| {
            instruments.iter().position(|i| selected_id.is_some() && i.id.as_deref() == selected_id)
        })
        .unwrap_or(0);
    match instruments.get(index) {
        Some(i) => Ok(Some(i.to_selection(&format!("payment.instruments[{index}]"))?)),
        None => Ok(None),
    }
}

/// A checkout as JSON in the shape of `version`, without `ap2`: what the
/// merchant's AP2 authorization signs.
pub fn checkout_json(view: &CheckoutView<'_>, version: WireVersion) -> Result<Value> {
    match version {
        WireVersion::V2026_04_08 => serde_json::to_value(v2026_04_08::Checkout::from(view)),
        WireVersion::V2026_01_11 => serde_json::to_value(v2026_01_11::Checkout::from(view)),
    }
    .map_err(Error::internal)
}

/// A response body as bytes. Serialising these types cannot fail (no maps
/// with non-string keys, no failing `Serialize`), but a failure would still
/// be an internal error rather than a panic.
pub fn to_body<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(Error::internal)
}

/// Maps a deserialisation failure of a request body to `invalid_input`,
/// naming the field serde names.
pub fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T> {
    serde_json::from_value(body)
        .map_err(|e| Error::new(ErrorCode::InvalidInput, format!("invalid request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucp_meta_per_version() {
        let caps = vec!["dev.ucp.shopping.checkout".to_owned()];
        assert_eq!(
            ucp_meta(WireVersion::V2026_04_08, &caps, Some("sandbox")),
            json!({"version": "2026-04-08",
                   "capabilities": {"dev.ucp.shopping.checkout": [{"version": "2026-04-08"}]},
                   "payment_handlers": {"dev.agentgate.payments.sandbox": [{"id": "sandbox", "version": "2026-04-08"}]}})
        );
        assert_eq!(
            ucp_meta(WireVersion::V2026_01_11, &caps, Some("sandbox")),
            json!({"version": "2026-01-11",
                   "capabilities": [{"name": "dev.ucp.shopping.checkout", "version": "2026-01-11"}]})
        );
    }

    #[test]
    fn severities_per_version() {
        let m = Message {
            kind: MessageType::Error,
            code: "x".into(),
            content: "c".into(),
            severity: Some(Severity::Unrecoverable),
            path: None,
        };
        assert_eq!(WireMessage::new(&m, WireVersion::V2026_04_08).severity, Some("unrecoverable"));
        assert_eq!(
            WireMessage::new(&m, WireVersion::V2026_01_11).severity,
            Some("requires_buyer_review")
        );
        let w = Message { kind: MessageType::Warning, severity: None, ..m };
        assert_eq!(WireMessage::new(&w, WireVersion::V2026_04_08).severity, None);
    }

    #[test]
    fn request_fields_are_checked_and_named() {
        let bad_items: Vec<(Value, &str)> = vec![
            (json!([{"item": {"id": "a b"}, "quantity": 1}]), "line_items[0].item.id"),
            (json!([{"item": {"id": "v"}, "quantity": 0}]), "line_items[0].quantity"),
            (json!([{"item": {"id": "v"}, "quantity": -3}]), "line_items[0].quantity"),
        ];
        for (v, field) in bad_items {
            let lines: Vec<LineItemRequest> = serde_json::from_value(v).unwrap();
            let err = items("line_items", &lines).unwrap_err();
            assert!(err.message().contains(field), "{}", err.message());
        }
        let buyer = |v: Value| Buyer::try_from(&serde_json::from_value::<BuyerRequest>(v).unwrap());
        assert!(buyer(json!({"email": "nope"})).is_err());
        let b = buyer(json!({"full_name": "Ada King Lovelace", "email": "a@b.example"})).unwrap();
        assert_eq!(
            (b.first_name.as_deref(), b.last_name.as_deref()),
            (Some("Ada King"), Some("Lovelace"))
        );
        let f: FulfillmentRequest = serde_json::from_value(json!({"methods": [{"type": "shipping",
            "destinations": [{"street_address": "1 A St", "address_locality": "X", "postal_code": "1",
                              "address_country": "USA"}]}]}))
        .unwrap();
        assert!(f.to_input().unwrap_err().message().contains("destinations[0].address_country"));
        let f: FulfillmentRequest =
            serde_json::from_value(json!({"methods": [{"id": "pickup"}]})).unwrap();
        assert_eq!(f.to_input().unwrap().unwrap().method, MethodKind::Pickup);
    }

    #[test]
    fn the_selected_instrument_wins() {
        let list: Vec<InstrumentRequest> = serde_json::from_value(json!([
            {"id": "a", "handler_id": "sandbox", "type": "card", "credential": {"type": "token", "token": "t1"}},
            {"id": "b", "handler_id": "sandbox", "type": "card", "credential": {"type": "token", "token": "t2"}, "selected": true},
        ]))
        .unwrap();
        assert_eq!(selected_instrument(&list, None).unwrap().unwrap().token.as_deref(), Some("t2"));
        assert_eq!(
            selected_instrument(&list[..1], Some("a")).unwrap().unwrap().token.as_deref(),
            Some("t1")
        );
        assert_eq!(selected_instrument(&[], None).unwrap(), None);
    }
}
