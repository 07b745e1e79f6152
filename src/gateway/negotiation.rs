//! UCP capability negotiation as a use case: which protocol version and
//! capabilities a platform and this business share.
//!
//! The algorithm is pure (`ucp::negotiate`); this module adds what needs
//! the ports and settings: the business offer rendered from settings, the
//! SSRF-safe fetch of the platform's profile, and the answer for a caller
//! that names no profile (the business's own full capability set at the
//! current version, so such a caller gets every capability rather than
//! none). The MCP tools call it; the UCP REST binding negotiates the same
//! way from its `UCP-Agent` header.

use serde_json::{json, Map, Value};
use url::Url;

use super::Gateway;
use crate::domain::{Error, Result};
use crate::ucp::negotiate::{self, Negotiated, Offer, SchemeRule};
use crate::ucp::profile::{business_offer, ProfileInput, AP2_MANDATE};
use crate::ucp::VERSION;

impl Gateway {
    /// What this business offers, from the same table its profile is
    /// rendered from, without the AP2 mandate extension (see
    /// [`Gateway::negotiate_with_ap2`]).
    pub fn ucp_offer(&self) -> Offer {
        self.offer(false).clone()
    }

    /// The offer with the AP2 mandate extension when the
    /// `ap2_mandate_extension` setting allows it, as the UCP REST binding
    /// negotiates.
    pub fn ucp_offer_with_ap2(&self) -> &Offer {
        self.offer(true)
    }

    /// The offer, with the AP2 mandate extension when `ap2` is asked for
    /// and the `ap2_mandate_extension` setting allows it.
    ///
    /// Both offers depend only on the settings and the payment processor,
    /// which are fixed for the life of the gateway, so each is built once
    /// and kept rather than rebuilt on every negotiation.
    fn offer(&self, ap2: bool) -> &Offer {
        let build = |ap2: bool| {
            business_offer(&ProfileInput {
                public_base_url: &self.settings.public_base_url,
                signing_keys: Vec::new(),
                payment_processors: vec![self.payments.name()],
                ap2_mandate: ap2 && self.settings.ap2_mandate_extension,
            })
        };
        let [plain, with_ap2] = self.offers.get_or_init(|| [build(false), build(true)]);
        if ap2 {
            with_ap2
        } else {
            plain
        }
    }

    /// Parses a platform profile URL as this deployment allows it: HTTPS
    /// only, unless the test-only `allow_private_profile_hosts` is on.
    pub fn profile_url(&self, raw: &str) -> Result<Url> {
        let rule = if self.settings.allow_private_profile_hosts {
            SchemeRule::AllowHttpForTests
        } else {
            SchemeRule::HttpsOnly
        };
        negotiate::profile_url(raw, rule)
    }

    /// Negotiates with the platform whose profile is at `profile`, fetched
    /// through the profile fetcher; without one, with the business's own
    /// capability set. The AP2 mandate extension is not offered: use
    /// [`Gateway::negotiate_with_ap2`] where the transport hands the
    /// merchant's checkout authorization to the agent and takes v0.2
    /// mandates back.
    pub async fn negotiate(&self, profile: Option<&Url>) -> Result<Negotiated> {
        self.negotiate_offering(profile, false).await
    }

    /// [`Gateway::negotiate`], also offering the AP2 mandate extension
    /// (`dev.ucp.shopping.ap2_mandate`, when the `ap2_mandate_extension`
    /// setting is on). A platform whose profile declares it gets it, and
    /// the checkouts it opens are locked to AP2 v0.2 mandates. It is a
    /// commitment the platform makes, so it is never assumed for a caller
    /// that names no profile.
    pub async fn negotiate_with_ap2(&self, profile: Option<&Url>) -> Result<Negotiated> {
        self.negotiate_offering(profile, true).await
    }

    async fn negotiate_offering(&self, profile: Option<&Url>, ap2: bool) -> Result<Negotiated> {
        let offer = self.offer(ap2);
        match profile {
            Some(url) => {
                let doc = self.profiles.fetch(url).await?;
                negotiate::negotiate(offer, url.clone(), &doc)
            }
            None => {
                let own = format!("{}/.well-known/ucp", self.settings.public_base_url);
                let url = Url::parse(&own).map_err(Error::internal)?;
                let capabilities: Map<String, Value> = offer
                    .capabilities(VERSION)
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| c.name != AP2_MANDATE)
                    .map(|c| (c.name.clone(), json!([{ "version": c.version }])))
                    .collect();
                let profile = json!({"ucp": {"version": VERSION, "capabilities": capabilities}});
                negotiate::negotiate(offer, url, &profile)
            }
        }
    }
}
