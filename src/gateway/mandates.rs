//! AP2 on the gateway side: whose keys verify an agent's mandates, the cart
//! mandate the merchant signs over a ready checkout, and mandate-id replay
//! protection through the store.
//!
//! The mandate formats and the verifier live in `ap2/` (pure); this module
//! only gathers what they need from the ports (the agent's platform profile,
//! the session, the catalog) and hands it over. It knows nothing of MCP or
//! HTTP: the `negotiate_terms` tool and the REST binding call
//! [`Gateway::issue_cart_mandate`] and return its token.
//!
//! # Where an agent's keys come from
//!
//! From two places only, never from a token about itself (the JWS rules
//! already refuse `jwk`, `jku`, `x5c` and friends in a header):
//! - the agent platform's UCP profile, fetched by URL through the SSRF-safe
//!   [`ProfileFetcher`](crate::ports::ProfileFetcher): `signing_keys`, or
//!   `keys` as UCP 2026-08-25 renames it;
//! - the JWKS the merchant configured (`trusted_agent_jwks_file`).
//!
//! Both sets are merged; a profile key whose `kid` a trusted key already
//! holds is ignored, so a profile can never replace a key the merchant
//! pinned. No key at all is `agent_missing_key`.

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use url::Url;

use super::{complete, Caller, Gateway};
use crate::ap2::mandates::{
    DisplayItem, PaymentDetails, PaymentMethodData, PaymentRequest, PaymentTotal,
};
use crate::ap2::v02::{self, Merchant, MerchantAuthorization};
use crate::ap2::{
    self, Amount, CartClaims, CartContents, CartMandateRequest, MandateIdReserver, PublicKeySet,
    VerifyPolicy,
};
use crate::domain::{CheckoutId, CheckoutSession, CheckoutStatus, Error, ErrorCode, Money, Result};
use crate::policy::{GuardrailInput, Repriced};
use crate::ports::Store;
use crate::ucp::profile::AP2_MANDATE;
use crate::ucp::wire::{self, WireVersion};

/// How long a cart mandate stays valid: long enough for the user (or the
/// agent's `cnf` key) to sign the payment mandate, short enough that the
/// prices it fixes are still the catalog's. `docs/mandates.md` documents
/// the same 15 minutes.
pub const CART_MANDATE_TTL: Duration = Duration::minutes(15);

/// A cart mandate the merchant signed over a ready checkout.
#[derive(Debug, Clone)]
pub struct CartMandate {
    /// The compact JWS to hand to the agent, byte for byte.
    pub token: String,
    pub checkout_id: CheckoutId,
    /// The total the payment mandate must carry exactly.
    pub total: Money,
    pub expires_at: OffsetDateTime,
    /// The signed claims, for transports that show the cart.
    pub claims: CartClaims,
}

/// A session's checkout as the merchant signs it for AP2 v0.2.
#[derive(Debug, Clone)]
pub struct SignedCheckout {
    /// The checkout in the shape of the session's UCP version, without
    /// `ap2`: exactly what the signature covers.
    pub checkout: Value,
    pub authorization: MerchantAuthorization,
}

impl Gateway {
    /// The merchant as AP2 mandates name it: its base URL is its id and its
    /// website, and its configured name is its name. A payment mandate's
    /// `payee` must be this.
    pub fn ap2_merchant(&self) -> Merchant {
        Merchant {
            id: self.settings.public_base_url.clone(),
            name: self.settings.merchant_name.clone(),
            website: Some(self.settings.public_base_url.clone()),
        }
    }

    /// The checkout of `session` and the merchant's signature over it with
    /// the active key. ES256 signing is deterministic (RFC 6979) and the
    /// checkout is JCS, so the same state always gives the same checkout
    /// JWT: what a response handed out is what completion expects back.
    pub fn signed_checkout(&self, session: &CheckoutSession) -> Result<SignedCheckout> {
        let view = self.checkout_view(session);
        let checkout = wire::checkout_json(&view, session_version(session))?;
        let authorization = v02::authorize_checkout(self.keys.signer(), &checkout)?;
        Ok(SignedCheckout { checkout, authorization })
    }

    /// The checkout response body of `session`. A session locked to the
    /// AP2 extension carries `ap2.merchant_authorization` in every
    /// response ("Activation and Session Locking", ap2-mandates).
    pub fn checkout_document(&self, session: &CheckoutSession) -> Result<Value> {
        if !session.capabilities.iter().any(|c| c == AP2_MANDATE) {
            return wire::checkout_json(&self.checkout_view(session), session_version(session));
        }
        let SignedCheckout { mut checkout, authorization } = self.signed_checkout(session)?;
        checkout["ap2"] = json!({ "merchant_authorization": authorization.detached });
        Ok(checkout)
    }

    /// The public keys that may sign an agent's intent (and payment)
    /// mandates: the configured trusted keys, plus the `signing_keys` of the
    /// platform profile at `profile` when one is named. See the module docs.
    pub async fn agent_keys(&self, profile: Option<&Url>) -> Result<PublicKeySet> {
        let mut keys = self.trusted_agent_keys.clone();
        if let Some(url) = profile {
            let doc = self.profiles.fetch(url).await?;
            let published = doc.get("signing_keys").or_else(|| doc.get("keys"));
            if let Some(published) = published {
                let set = PublicKeySet::from_jwks_value(published).map_err(|e| {
                    Error::new(
                        ErrorCode::ProfileMalformed,
                        format!(
                            "the platform profile's signing keys are unusable: {}",
                            e.message()
                        ),
                    )
                })?;
                let now = self.now();
                for key in set.keys() {
                    // A pinned key wins over whatever a profile publishes
                    // under the same kid.
                    if keys.find(key.kid(), now).is_err() {
                        keys.insert(key.clone(), None)?;
                    }
                }
            }
        }
        if keys.is_empty() {
            return Err(Error::new(
                ErrorCode::AgentMissingKey,
                "no signing key is known for this agent: name a platform profile that publishes \
                 signing_keys, or ask the merchant to trust the platform's JWKS",
            ));
        }
        Ok(keys)
    }

    /// Signs the AP2 cart mandate for a `ready_for_complete` checkout, over
    /// the intent mandate the agent presents.
    ///
    /// The intent is verified first (signature against the agent's keys,
    /// claims, lifetime), then the checkout runs through the guardrail
    /// exactly as completion will run it, with the intent's maximum: the
    /// merchant never signs a cart it would refuse to charge. The cart
    /// carries the catalog's prices, one product line per session line and
    /// shipping, discount and tax as lines without a SKU, so its items add up
    /// to its total.
    pub async fn issue_cart_mandate(
        &self,
        caller: &Caller,
        checkout_id: &CheckoutId,
        intent_mandate: &str,
        agent_profile_url: Option<&Url>,
    ) -> Result<CartMandate> {
        let session = complete::load_session(self, caller, checkout_id).await?.value;
        let now = self.now();
        if session.status() != CheckoutStatus::ReadyForComplete {
            return Err(Error::new(
                ErrorCode::IllegalTransition,
                format!(
                    "a cart mandate is issued for a ready_for_complete checkout; this one is {}",
                    session.status().as_str()
                ),
            ));
        }
        if session.is_expired(now) {
            return Err(Error::new(ErrorCode::SessionExpired, "the checkout session has expired"));
        }
        let keys = self.agent_keys(agent_profile_url).await?;
        let intent = ap2::verify_intent(intent_mandate, &keys, now, &VerifyPolicy::default())?;

        let catalog = complete::catalog_view(self, &session).await?;
        let spent = complete::spent_in_window(self, caller, session.currency, now).await?;
        let mut input =
            GuardrailInput::new(&session, &catalog, CheckoutStatus::CompleteInProgress, spent);
        input.intent_max = Some(intent.max_amount());
        let repriced = complete::guardrail(self, &input)?;

        let contents = cart_contents(
            &session,
            &repriced,
            &self.settings.merchant_name,
            intent.claims().user_cart_confirmation_required,
        );
        // The mandate never outlives the session it pays for.
        let ttl = CART_MANDATE_TTL.min(session.expires_at - now);
        let (token, claims) = ap2::sign_cart_mandate(
            self.keys.signer(),
            CartMandateRequest {
                merchant_base_url: &self.settings.public_base_url,
                checkout_id,
                contents,
                intent_mandate,
                ttl,
            },
            now,
            &mut rand_core::OsRng,
        )?;
        Ok(CartMandate {
            token,
            checkout_id: checkout_id.clone(),
            total: repriced.totals.total,
            expires_at: OffsetDateTime::from_unix_timestamp(claims.exp)
                .map_err(|_| Error::internal("cart mandate exp out of range"))?,
            claims,
        })
    }
}

/// The UCP wire shape a session answers in: the version it was created
/// under.
fn session_version(session: &CheckoutSession) -> WireVersion {
    WireVersion::of(session.ucp_version.as_deref().unwrap_or(crate::ucp::VERSION))
}

/// AP2 `CartContents` for `session` at the re-priced amounts. The cart's id
/// is the session's cart (or the checkout itself when it came without one);
/// the payment details id is the checkout id, which the payment mandate's
/// `payment_details_id` must repeat. `cart_expiry` is set by the signer.
pub(super) fn cart_contents(
    session: &CheckoutSession,
    repriced: &Repriced,
    merchant_name: &str,
    user_cart_confirmation_required: bool,
) -> CartContents {
    let mut items: Vec<DisplayItem> = repriced
        .lines
        .iter()
        .map(|line| DisplayItem {
            label: line.title.clone(),
            // The guardrail computed every line total while re-pricing, so
            // this cannot fail; the fallback only keeps the function total.
            amount: line.line_total().unwrap_or_else(|_| Money::zero(session.currency)).into(),
            sku: Some(line.sku.as_str().to_owned()),
            quantity: Some(line.quantity),
        })
        .collect();
    let totals = &repriced.totals;
    let shipping_label =
        session.fulfillment.option_title.clone().unwrap_or_else(|| "Shipping".to_owned());
    for (label, amount) in [
        (shipping_label, totals.fulfillment),
        ("Discount".to_owned(), totals.discount),
        ("Tax".to_owned(), totals.tax),
    ] {
        if amount.minor() != 0 {
            items.push(DisplayItem { label, amount: amount.into(), sku: None, quantity: None });
        }
    }
    let details_id = session.id.as_str().to_owned();
    CartContents {
        id: session.cart_id.as_ref().map_or_else(|| details_id.clone(), |c| c.as_str().to_owned()),
        user_cart_confirmation_required,
        payment_request: PaymentRequest {
            method_data: vec![PaymentMethodData {
                supported_methods: "CARD".to_owned(),
                data: None,
            }],
            details: PaymentDetails {
                id: details_id,
                display_items: items,
                total: PaymentTotal {
                    label: "Total".to_owned(),
                    amount: Amount::from(totals.total),
                },
            },
        },
        cart_expiry: String::new(),
        merchant_name: merchant_name.to_owned(),
    }
}

/// Reserves mandate ids through [`Store::reserve_mandate_id`]
/// (put-if-absent), so a mandate pays once across every gateway instance
/// that shares the store.
pub(super) struct StoreReserver<'a>(pub &'a dyn Store);

#[async_trait::async_trait]
impl MandateIdReserver for StoreReserver<'_> {
    async fn reserve(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool> {
        self.0.reserve_mandate_id(id, keep_until).await
    }

    async fn reserve_in_order(&self, ids: &[ap2::verify::MandateId]) -> Result<usize> {
        let ids: Vec<(&str, OffsetDateTime)> =
            ids.iter().map(|m| (m.id.as_str(), m.keep_until)).collect();
        self.0.reserve_mandate_ids(&ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout::Totals;
    use crate::domain::{Currency, LineItem, ProductId, Sku, VariantId};

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::usd())
    }

    fn line(sku: &str, quantity: u32, unit: i64) -> LineItem {
        LineItem {
            id: format!("li_{sku}"),
            variant_id: VariantId::parse(&format!("v-{sku}")).unwrap(),
            product_id: ProductId::parse(&format!("p-{sku}")).unwrap(),
            sku: Sku::parse(sku).unwrap(),
            title: format!("Item {sku}"),
            quantity,
            unit_price: usd(unit),
            requires_shipping: true,
        }
    }

    /// Whatever the adjustments, the cart's items add up to its total and
    /// only product lines carry a SKU: `CartContents::summary` (what the
    /// verifier runs) accepts every case.
    #[test]
    fn cart_items_add_up_to_the_total() {
        let cases: &[(&str, i64, i64, i64, usize)] = &[
            ("no adjustments", 0, 0, 0, 2),
            ("shipping only", 0, 500, 0, 3),
            ("discount, shipping and tax", -700, 500, 120, 5),
            ("a discount larger than the goods is capped", -99_999, 0, 0, 3),
        ];
        for (name, discount, shipping, tax, items) in cases {
            let lines = vec![line("A-1", 2, 1500), line("B-2", 1, 999)];
            let session = CheckoutSession::new(
                CheckoutId::from_uuid(uuid::Uuid::nil()),
                Currency::usd(),
                lines.clone(),
                None,
                OffsetDateTime::UNIX_EPOCH,
                Duration::hours(1),
            )
            .unwrap();
            let totals =
                Totals::compute(Currency::usd(), &lines, usd(*discount), usd(*shipping), usd(*tax))
                    .unwrap();
            let repriced = Repriced { lines, totals };
            let contents = cart_contents(&session, &repriced, "Shop", true);
            let details = &contents.payment_request.details;
            assert_eq!(details.display_items.len(), *items, "{name}");
            assert_eq!(details.id, session.id.as_str(), "{name}");
            let summary = contents.summary().unwrap();
            assert_eq!(summary.total, totals.total, "{name}");
            assert_eq!(summary.lines.len(), 2, "{name}: only product lines have a SKU");
            assert_eq!(summary.lines[0].line_total, usd(3000), "{name}: line totals, not units");
        }
    }
}
