//! UCP 2026-01-11 wire shapes: the first release, rendered from the same
//! domain for platforms that negotiate it. Every difference from
//! 2026-04-08 that this gateway handles:
//!
//! 1. `ucp` lists capabilities as an array of `{name, version}`, not a
//!    registry, and carries no `payment_handlers` or `status`
//!    (`ucp.json` `response_checkout`).
//! 2. `payment` is required on a checkout and holds `handlers`, full
//!    handler declarations (`types/payment_handler.json`); handlers moved
//!    to `ucp.payment_handlers` later. Instruments are not echoed: a
//!    2026-01-11 instrument must be a card with `brand` and `last_digits`,
//!    which the gateway never holds (it keeps a processor token only).
//! 3. Totals amounts are all non-negative (`total.json` `minimum: 0`), so
//!    the discount is a positive amount to subtract, and `type` is a
//!    closed enum.
//! 4. Error severities have no `unrecoverable`; it is sent as
//!    `requires_buyer_review`.
//! 5. There is no `error_response` schema; errors use the 2026-04-08 shape
//!    with this version's number.
//! 6. `complete` takes `{payment_data: <instrument>, risk_signals?}`
//!    instead of a checkout body with `payment.instruments`; with the AP2
//!    extension it adds `ap2.checkout_mandate`, and the payment mandate is
//!    `payment_data.credential.token`.
//! 7. Buyers and addresses name people with `full_name`; requests may use
//!    it (split at the last space) and responses send addresses with it.
//! 8. `payment.selected_instrument_id` picks the instrument in requests.
//! 9. Fulfillment updates name the method by `id` and omit `type`; the
//!    method ids this gateway hands out are the types, so both work.
//! 10. Discounts extend only checkout (not cart), and applied discounts
//!     have no `provisional` or `eligibility` (never sent anyway).
//! 11. Orders have no `currency`, no `quantity.original`, no `removed`
//!     line status, and non-negative totals.
//! 12. The REST binding has only checkout operations; cart, catalog and
//!     order requests from a 2026-01-11 platform are answered with
//!     `capabilities_incompatible` by the HTTP layer, except orders, which
//!     render in the 2026-01-11 `order.json` shape.
//! 13. `order_confirmation` has no `label` (never sent anyway).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::v2026_04_08::CheckoutRequest as CheckoutRequest0408;
use super::{
    completed_order, discounts, fulfillment, has, order_permalink, rfc3339, selected_instrument,
    totals, ucp_meta, Ap2Request, BuyerRequest, CompletionRequest, DiscountSign, Discounts,
    DiscountsRequest, Fulfillment, FulfillmentRequest, InstrumentRequest, LineItemRequest, Link,
    OrderConfirmation, Total, WireBuyer, WireLineItem, WireMessage, WireVersion, EXT_AP2,
    EXT_DISCOUNT, EXT_FULFILLMENT,
};
use crate::domain::{Error, Result};
use crate::gateway::{CheckoutInput, CheckoutView};
use crate::ucp::profile::handler_name;

const V: WireVersion = WireVersion::V2026_01_11;

/// `shopping/checkout.json` of 2026-01-11 with its fulfillment and
/// discount extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkout {
    pub ucp: Value,
    pub id: String,
    pub line_items: Vec<WireLineItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer: Option<WireBuyer>,
    pub status: &'static str,
    pub currency: String,
    pub totals: Vec<Total>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<WireMessage>,
    pub links: Vec<Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continue_url: Option<String>,
    pub payment: Payment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderConfirmation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<Fulfillment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discounts: Option<Discounts>,
    /// The merchant (AP2 `types/checkout.json`), only with the AP2
    /// extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant: Option<crate::ap2::v02::Merchant>,
}

/// `shopping/payment.json` of 2026-01-11: the handlers on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub handlers: Vec<Value>,
}

/// The one handler, declared as 2026-01-11 wants it (the same entry as the
/// 2026-01-11 business profile's `payment.handlers`).
pub fn handler(processor: &str, public_base_url: &str) -> Value {
    json!({
        "id": processor,
        "name": handler_name(processor),
        "version": V.as_str(),
        "spec": format!("{public_base_url}/docs/payments/{processor}"),
        "config_schema": format!("{public_base_url}/schemas/payments/{processor}.json"),
        "instrument_schemas": ["https://ucp.dev/schemas/shopping/types/card_payment_instrument.json"],
        "config": {},
    })
}

impl From<&CheckoutView<'_>> for Checkout {
    fn from(view: &CheckoutView<'_>) -> Self {
        let s = view.session;
        let fulfillment_title =
            s.fulfillment.option_title.as_deref().filter(|_| s.fulfillment.amount.is_some());
        Self {
            ucp: ucp_meta(V, &s.capabilities, None),
            id: s.id.to_string(),
            line_items: s.line_items.iter().map(WireLineItem::from).collect(),
            buyer: WireBuyer::of(&s.buyer),
            status: s.status().as_str(),
            currency: s.currency.code().to_owned(),
            totals: totals(&s.totals, fulfillment_title, DiscountSign::Positive),
            messages: s.messages.iter().map(|m| WireMessage::new(m, V)).collect(),
            links: view.links.iter().map(Link::from).collect(),
            expires_at: rfc3339(s.expires_at),
            continue_url: s.continue_url.clone(),
            payment: Payment {
                handlers: vec![handler(view.payment_handler, view.public_base_url)],
            },
            // Only a completed session has an order; before that the id
            // names the attempt in progress or waiting for the buyer.
            order: completed_order(s).map(|o| OrderConfirmation {
                id: o.to_string(),
                permalink_url: order_permalink(view.public_base_url, o.as_str()),
            }),
            fulfillment: if has(view, EXT_FULFILLMENT) { fulfillment(view, V) } else { None },
            discounts: has(view, EXT_DISCOUNT).then(|| discounts(view)),
            merchant: has(view, EXT_AP2).then(|| view.ap2_merchant.clone()),
        }
    }
}

/// `payment.json` of 2026-01-11 in a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PaymentRequest {
    #[serde(default)]
    pub instruments: Vec<InstrumentRequest>,
    pub selected_instrument_id: Option<String>,
}

/// A 2026-01-11 create or update body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CheckoutRequest {
    pub line_items: Option<Vec<LineItemRequest>>,
    pub buyer: Option<BuyerRequest>,
    pub fulfillment: Option<FulfillmentRequest>,
    pub discounts: Option<DiscountsRequest>,
    pub payment: Option<PaymentRequest>,
}

impl CheckoutRequest {
    /// The same fields as 2026-04-08 but for the payment, which picks
    /// its instrument with `selected_instrument_id`.
    fn as_0408(&self) -> CheckoutRequest0408 {
        CheckoutRequest0408 {
            line_items: self.line_items.clone(),
            buyer: self.buyer.clone(),
            fulfillment: self.fulfillment.clone(),
            discounts: self.discounts.clone(),
            payment: None,
            cart_id: None,
        }
    }

    fn payment(&self) -> Result<Option<crate::domain::checkout::PaymentSelection>> {
        match &self.payment {
            Some(p) => selected_instrument(&p.instruments, p.selected_instrument_id.as_deref()),
            None => Ok(None),
        }
    }

    pub fn create_input(&self, capabilities: &[String]) -> Result<CheckoutInput> {
        let mut input = self.as_0408().create_input(capabilities)?;
        input.payment = self.payment()?;
        Ok(input)
    }

    pub fn update_input(&self, capabilities: &[String]) -> Result<CheckoutInput> {
        let mut input = self.as_0408().update_input(capabilities)?;
        input.payment = self.payment()?;
        Ok(input)
    }
}

/// The 2026-01-11 complete body (`payment_data.json` plus risk signals).
/// With the AP2 extension it also carries `ap2` (`ap2_mandate.json`
/// `complete_request_with_ap2`), and the payment mandate travels as
/// `payment_data.credential.token`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompleteRequest {
    pub payment_data: Option<InstrumentRequest>,
    pub ap2: Option<Ap2Request>,
}

impl TryFrom<&CompleteRequest> for CompletionRequest {
    type Error = Error;

    fn try_from(r: &CompleteRequest) -> Result<Self> {
        let mut payment = match &r.payment_data {
            Some(i) => Some(i.to_selection("payment_data")?),
            None => None,
        };
        let mandates = match &r.ap2 {
            Some(a) => a.mandates(&mut payment)?,
            None => None,
        };
        Ok(CompletionRequest { payment, mandates })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_instrument_id_picks_the_instrument() {
        let body: CheckoutRequest = serde_json::from_value(json!({
            "line_items": [{"item": {"id": "v-1"}, "quantity": 1}],
            "buyer": {"full_name": "Ada Lovelace"},
            "payment": {"selected_instrument_id": "b", "instruments": [
                {"id": "a", "handler_id": "sandbox", "type": "card", "brand": "visa", "last_digits": "1111",
                 "credential": {"type": "token", "token": "t1"}},
                {"id": "b", "handler_id": "sandbox", "type": "card", "brand": "visa", "last_digits": "4242",
                 "credential": {"type": "token", "token": "t2"}},
            ]},
        }))
        .unwrap();
        let input = body.update_input(&[]).unwrap();
        assert_eq!(input.payment.unwrap().token.as_deref(), Some("t2"));
        assert_eq!(input.buyer.unwrap().last_name.as_deref(), Some("Lovelace"));
        let complete: CompleteRequest = serde_json::from_value(json!({"payment_data":
            {"id": "a", "handler_id": "sandbox", "type": "card", "brand": "visa", "last_digits": "1111",
             "credential": {"type": "token", "token": "success_token"}}}))
        .unwrap();
        let c = CompletionRequest::try_from(&complete).unwrap();
        assert_eq!(c.payment.unwrap().token.as_deref(), Some("success_token"));
    }
}
