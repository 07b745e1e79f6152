//! Stripe behind the `Payments` port: PaymentIntents over Stripe's REST API
//! with reqwest (rustls), form-encoded as Stripe expects.
//!
//! | port call     | Stripe                                                      |
//! |---------------|-------------------------------------------------------------|
//! | `charge`      | `POST /v1/payment_intents` with `confirm=true`              |
//! | `find_charge` | `GET /v1/payment_intents` (list, newest first), matched on  |
//! |               | `metadata[charge_key]`                                      |
//! | `capture`     | `GET /v1/payment_intents/{id}`, then `POST …/{id}/capture`   |
//! |               | when the buyer's approval left it `requires_capture`        |
//! | `refund`      | `POST /v1/refunds` with `payment_intent` and `amount`        |
//! | `status`      | `GET /v1/payment_intents/{id}?expand[]=latest_charge`        |
//!
//! The processor token is the payment mandate's
//! `payment_response.details.token` (or the instrument's token without
//! mandates): a Shared Payment Token (`spt_…`, sent as
//! `shared_payment_granted_token`) or a PaymentMethod (`pm_…`, sent as
//! `payment_method`). Every PaymentIntent carries `metadata[order_id]`,
//! `metadata[checkout_id]` and `metadata[charge_key]` (the pipeline's
//! idempotency key), which is how webhooks and `find_charge` tie it back.
//!
//! Exactly once: every POST carries the caller's key as `Idempotency-Key`,
//! and a retry sends the very same key and body, so Stripe replays its
//! first answer instead of charging again. Retries happen on 429, on 5xx
//! and on network errors (connect, timeout), at most `max_retries` times,
//! with exponential backoff and full jitter; `Stripe-Should-Retry: false`
//! stops them and `true` allows one on other statuses (a 409 lock).
//!
//! Outcomes: `succeeded` is `Succeeded`; `requires_action` with a
//! `redirect_to_url` is `RequiresAction` (the charge sets a `return_url`,
//! so 3-D Secure redirects); a `card_error` (HTTP 402) or a
//! `requires_payment_method` after a failed attempt is `Declined` with the
//! `decline_code` (or the error `code`); `processing` is an error, so the
//! pipeline leaves the checkout for recovery rather than guess.
//!
//! `find_charge` reads Stripe's list endpoint, which is consistent right
//! after a write (the search endpoint is not). It scans the PaymentIntents
//! created since the attempt began: the pipeline's keys end in the order id,
//! a UUIDv7 whose timestamp bounds the scan; other keys scan a day. A scan
//! that runs out of pages without an answer is an error, never "nothing
//! was charged".
//!
//! The secret key is a [`SecretString`], sent only in the `Authorization`
//! header (marked sensitive), and never in a log line or an error.

use std::time::Duration;

use async_trait::async_trait;
use rand_core::RngCore;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::OffsetDateTime;
use url::Url;

use crate::domain::{Error, ErrorCode, Result};
use crate::ports::{
    CaptureRequest, ChargeOutcome, ChargeRequest, PaymentStatus, Payments, RefundRequest,
};
use crate::settings::Settings;

/// PaymentIntents per list page (Stripe's maximum).
const PAGE: u32 = 100;
/// Pages `find_charge` reads before it gives up and says "unknown".
const MAX_PAGES: u32 = 10;
/// How far before an attempt's order id the scan starts, for clock skew
/// between the gateway and Stripe.
const SCAN_SLACK: time::Duration = time::Duration::minutes(10);
/// The scan window when the key carries no time.
const SCAN_DEFAULT: time::Duration = time::Duration::days(1);

/// The limits and addresses of the adapter.
#[derive(Clone)]
pub struct StripeOptions {
    /// `https://api.stripe.com` in production.
    pub api_base: Url,
    pub secret_key: SecretString,
    /// `Stripe-Version`, when pinned.
    pub api_version: Option<String>,
    /// Budget of one HTTP call, connecting included.
    pub timeout: Duration,
    /// Retries after the first try.
    pub max_retries: u32,
    /// The first retry waits up to this long; each next one up to twice as
    /// long (full jitter), never more than `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Where Stripe sends the buyer back after 3-D Secure.
    pub return_url: String,
}

impl std::fmt::Debug for StripeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeOptions")
            .field("api_base", &self.api_base.as_str())
            .field("secret_key", &"<redacted>")
            .field("api_version", &self.api_version)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl StripeOptions {
    /// The options from checked settings; `None` without a secret key.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let s = &settings.stripe;
        Some(Self {
            api_base: s.api_base.clone(),
            secret_key: s.secret_key.clone()?,
            api_version: s.api_version.clone(),
            timeout: s.timeout,
            max_retries: s.max_retries,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(8),
            return_url: format!("{}/payments/return", settings.public_base_url),
        })
    }
}

/// The Stripe processor.
pub struct StripePayments {
    http: reqwest::Client,
    options: StripeOptions,
}

/// An answer from Stripe after retries: a 2xx body, or Stripe's error.
enum Reply {
    Ok(Value),
    Failed { status: StatusCode, error: StripeError },
}

/// Stripe's `error` object, the fields this adapter reads.
#[derive(Debug, Default)]
struct StripeError {
    kind: String,
    code: Option<String>,
    decline_code: Option<String>,
    message: String,
    /// The PaymentIntent a failed confirmation left behind, if any.
    payment_intent: Option<Value>,
}

impl StripeError {
    fn parse(body: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(body) else { return Self::default() };
        let e = &v["error"];
        let text = |k: &str| e[k].as_str().map(str::to_owned);
        Self {
            kind: text("type").unwrap_or_default(),
            code: text("code"),
            decline_code: text("decline_code"),
            message: text("message").unwrap_or_default(),
            payment_intent: e.get("payment_intent").filter(|p| p.is_object()).cloned(),
        }
    }

    /// The decline reason a buyer-facing message can carry.
    fn decline_reason(&self) -> String {
        self.decline_code
            .clone()
            .or_else(|| self.code.clone())
            .unwrap_or_else(|| "card_declined".into())
    }
}

fn upstream(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::UpstreamUnavailable, format!("stripe: {what}"))
}

impl StripePayments {
    pub fn new(options: StripeOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            // Stripe's API never redirects; one would be a misconfiguration
            // that must not carry the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agentgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the Stripe client: {e}")))?;
        Ok(Self { http, options })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.options.api_base.join(path).map_err(Error::internal)
    }

    fn headers(&self, idempotency_key: Option<&str>) -> Result<HeaderMap> {
        let mut h = HeaderMap::new();
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.options.secret_key.expose_secret()))
                .map_err(|_| Error::internal("the Stripe secret key is not a valid header"))?;
        auth.set_sensitive(true);
        h.insert(AUTHORIZATION, auth);
        if let Some(v) = &self.options.api_version {
            h.insert("stripe-version", HeaderValue::from_str(v).map_err(Error::internal)?);
        }
        if let Some(k) = idempotency_key {
            h.insert(
                "idempotency-key",
                HeaderValue::from_str(k)
                    .map_err(|_| Error::invalid("an idempotency key must be printable ASCII"))?,
            );
        }
        Ok(h)
    }

    /// The wait before retry `n` (1-based): full jitter over an exponential
    /// ceiling.
    fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .options
            .backoff_base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.options.backoff_cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand_core::OsRng.next_u64() % (millis + 1))
    }

    /// One call with retries. A POST carries `idempotency_key` on every
    /// try, and the same form, so Stripe answers a repeat with its first
    /// answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        form: Option<&[(String, String)]>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let body = form.map(|f| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(f.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .finish()
        });
        let headers = self.headers(idempotency_key)?;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let mut req = self.http.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(b) = &body {
                req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(b.clone());
            }
            let retries_left = tries <= self.options.max_retries;
            // Every path that ends the call returns; what is left is a
            // failure that another try may cure.
            let failure = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let should_retry = resp
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.eq_ignore_ascii_case("true"));
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let retry = match should_retry {
                        Some(explicit) => explicit && !status.is_success(),
                        None => transient,
                    };
                    match resp.bytes().await {
                        Ok(_) if retry && retries_left => {
                            upstream(format!("{path} answered {}", status.as_u16()))
                        }
                        Ok(bytes) if status.is_success() => {
                            let v = serde_json::from_slice(&bytes).map_err(|e| {
                                upstream(format!("{path} answered invalid JSON: {e}"))
                            })?;
                            return Ok(Reply::Ok(v));
                        }
                        Ok(bytes) => {
                            return Ok(Reply::Failed { status, error: StripeError::parse(&bytes) })
                        }
                        Err(e) => upstream(format!("reading {path}: {e}")),
                    }
                }
                Err(e) => upstream(format!(
                    "{path}: {}",
                    if e.is_timeout() { "timed out" } else { "network error" }
                )),
            };
            if !retries_left {
                return Err(failure);
            }
            tracing::warn!(path, try_no = tries, error = %failure, "stripe call failed; retrying with the same idempotency key");
            tokio::time::sleep(self.backoff(tries)).await;
        }
    }

    /// An answer that is not a business outcome, as an error.
    fn failure(path: &str, status: StatusCode, error: &StripeError) -> Error {
        tracing::warn!(path, status = status.as_u16(), kind = %error.kind, code = ?error.code, message = %error.message, "stripe refused a call");
        let code = error.code.as_deref().unwrap_or(error.kind.as_str());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Error::internal("stripe refused the API key (check stripe_secret_key)")
            }
            StatusCode::NOT_FOUND => Error::not_found(format!("stripe: no such object ({code})")),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                upstream(format!("answered {} after retries", s.as_u16()))
            }
            _ => Error::new(
                ErrorCode::PaymentFailed,
                format!("the payment processor refused the request ({code})"),
            ),
        }
    }

    async fn get_intent(&self, id: &str, expand: &[&str]) -> Result<Option<Value>> {
        let path = format!("/v1/payment_intents/{}", path_segment(id)?);
        let query: Vec<(&str, String)> =
            expand.iter().map(|e| ("expand[]", (*e).to_owned())).collect();
        match self.call(Method::GET, &path, &query, None, None).await? {
            Reply::Ok(v) => Ok(Some(v)),
            Reply::Failed { status: StatusCode::NOT_FOUND, .. } => Ok(None),
            Reply::Failed { status, error } => Err(Self::failure(&path, status, &error)),
        }
    }

    /// The window `find_charge` scans: from the attempt's order id (a
    /// UUIDv7 at the end of the pipeline's keys) or a day back.
    fn scan_start(key: &str, now: OffsetDateTime) -> i64 {
        let born = key
            .rsplit(':')
            .next()
            .and_then(|last| last.rsplit('_').next())
            .and_then(|hex| uuid::Uuid::parse_str(hex).ok())
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, _) = ts.to_unix();
                i64::try_from(secs).unwrap_or(i64::MAX)
            })
            .filter(|secs| *secs <= now.unix_timestamp());
        match born {
            Some(secs) => secs - SCAN_SLACK.whole_seconds(),
            None => (now - SCAN_DEFAULT).unix_timestamp(),
        }
    }
}

/// A path segment from a reference a caller handed in: Stripe ids are
/// letters, digits and underscores, and nothing else may reach the URL.
fn path_segment(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(Error::not_found("no such payment"))
    }
}

/// The port's view of a PaymentIntent; `None` for one never confirmed.
fn outcome_of(pi: &Value) -> Result<Option<ChargeOutcome>> {
    let id = pi["id"].as_str().ok_or_else(|| upstream("a PaymentIntent without an id"))?;
    let reference = id.to_owned();
    let declined = |fallback: &str| {
        let e = &pi["last_payment_error"];
        let reason = e["decline_code"]
            .as_str()
            .or_else(|| e["code"].as_str())
            .unwrap_or(fallback)
            .to_owned();
        ChargeOutcome::Declined { reason }
    };
    match pi["status"].as_str().unwrap_or_default() {
        "succeeded" => Ok(Some(ChargeOutcome::Succeeded { reference })),
        "requires_action" => {
            let url = pi["next_action"]["redirect_to_url"]["url"].as_str();
            Ok(Some(match url {
                Some(u) => ChargeOutcome::RequiresAction { reference, continue_url: u.to_owned() },
                // An action only Stripe's client SDKs can perform: no agent
                // can send a buyer to it, so it cannot complete here.
                None => ChargeOutcome::Declined { reason: "authentication_required".into() },
            }))
        }
        "requires_payment_method" if pi["last_payment_error"].is_object() => {
            Ok(Some(declined("card_declined")))
        }
        "canceled" => Ok(Some(declined("canceled"))),
        // Created but never confirmed: no money was asked for.
        "requires_payment_method" | "requires_confirmation" => Ok(None),
        "processing" => Err(upstream("the payment is still processing; retry later")),
        other => Err(upstream(format!("unexpected PaymentIntent status {other:?}"))),
    }
}

fn amount_of(pi: &Value) -> Option<i64> {
    pi["amount"].as_i64()
}

#[async_trait]
impl Payments for StripePayments {
    fn name(&self) -> &str {
        "stripe"
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome> {
        if req.amount.minor() <= 0 {
            return Err(Error::invalid("a charge must be for a positive amount"));
        }
        let token = req.token.trim();
        if token.is_empty() {
            return Err(Error::invalid("no payment token to charge"));
        }
        let mut form = vec![
            ("amount".to_owned(), req.amount.minor().to_string()),
            ("currency".to_owned(), req.amount.currency().code().to_ascii_lowercase()),
            ("confirm".to_owned(), "true".to_owned()),
            ("payment_method_types[]".to_owned(), "card".to_owned()),
            ("return_url".to_owned(), self.options.return_url.clone()),
            ("metadata[order_id]".to_owned(), req.order_id.to_string()),
            ("metadata[checkout_id]".to_owned(), req.checkout_id.to_string()),
            ("metadata[charge_key]".to_owned(), req.idempotency_key.clone()),
        ];
        // A Shared Payment Token is granted to the merchant by the agent's
        // platform; anything else is a PaymentMethod id.
        let field = if token.starts_with("spt_") {
            "shared_payment_granted_token"
        } else {
            "payment_method"
        };
        form.push((field.to_owned(), token.to_owned()));
        let path = "/v1/payment_intents";
        let pi = match self
            .call(Method::POST, path, &[], Some(&form), Some(&req.idempotency_key))
            .await?
        {
            Reply::Ok(pi) => pi,
            Reply::Failed { error, .. } if error.kind == "card_error" => {
                return Ok(ChargeOutcome::Declined { reason: error.decline_reason() })
            }
            Reply::Failed { status, error } => {
                // A failed confirmation may still describe the intent.
                if let Some(pi) = &error.payment_intent {
                    if let Ok(Some(outcome @ ChargeOutcome::Declined { .. })) = outcome_of(pi) {
                        return Ok(outcome);
                    }
                }
                return Err(Self::failure(path, status, &error));
            }
        };
        if pi["status"] == "requires_capture" {
            // The account captures manually; this charge is meant to
            // complete now, so capture it under a key derived from the
            // charge's.
            let capture = CaptureRequest {
                idempotency_key: format!("{}:capture", req.idempotency_key),
                reference: pi["id"].as_str().unwrap_or_default().to_owned(),
                amount: req.amount,
            };
            return self.capture(&capture).await;
        }
        outcome_of(&pi)?.ok_or_else(|| upstream("the PaymentIntent was not confirmed"))
    }

    async fn find_charge(&self, idempotency_key: &str) -> Result<Option<ChargeOutcome>> {
        let since = Self::scan_start(idempotency_key, OffsetDateTime::now_utc());
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("limit", PAGE.to_string()), ("created[gte]", since.to_string())];
            if let Some(a) = &after {
                query.push(("starting_after", a.clone()));
            }
            let page =
                match self.call(Method::GET, "/v1/payment_intents", &query, None, None).await? {
                    Reply::Ok(v) => v,
                    Reply::Failed { status, error } => {
                        return Err(Self::failure("/v1/payment_intents", status, &error))
                    }
                };
            let data = page["data"].as_array().cloned().unwrap_or_default();
            if let Some(pi) = data.iter().find(|pi| pi["metadata"]["charge_key"] == idempotency_key)
            {
                if pi["status"] == "requires_capture" {
                    // Approved by the buyer and waiting: to the pipeline, a
                    // payment to capture.
                    let reference = pi["id"].as_str().unwrap_or_default().to_owned();
                    let continue_url = self.options.return_url.clone();
                    return Ok(Some(ChargeOutcome::RequiresAction { reference, continue_url }));
                }
                return outcome_of(pi);
            }
            if page["has_more"] != true {
                return Ok(None);
            }
            after = data.last().and_then(|pi| pi["id"].as_str()).map(str::to_owned);
            if after.is_none() {
                return Ok(None);
            }
        }
        Err(upstream(format!(
            "more than {} PaymentIntents since the attempt; cannot tell whether it was charged",
            PAGE * MAX_PAGES
        )))
    }

    async fn capture(&self, req: &CaptureRequest) -> Result<ChargeOutcome> {
        let pi = self
            .get_intent(&req.reference, &[])
            .await?
            .ok_or_else(|| Error::not_found(format!("stripe has no payment {}", req.reference)))?;
        if amount_of(&pi) != Some(req.amount.minor()) {
            return Err(Error::invalid("a capture must be for the amount that was authorised"));
        }
        if pi["status"] != "requires_capture" {
            return outcome_of(&pi)?.ok_or_else(|| {
                upstream("the PaymentIntent was never confirmed; nothing to capture")
            });
        }
        let path = format!("/v1/payment_intents/{}/capture", path_segment(&req.reference)?);
        match self.call(Method::POST, &path, &[], Some(&[]), Some(&req.idempotency_key)).await? {
            Reply::Ok(pi) => {
                outcome_of(&pi)?.ok_or_else(|| upstream("the capture left no payment"))
            }
            Reply::Failed { error, .. } if error.kind == "card_error" => {
                Ok(ChargeOutcome::Declined { reason: error.decline_reason() })
            }
            Reply::Failed { status, error } => Err(Self::failure(&path, status, &error)),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String> {
        if req.amount.minor() <= 0 {
            return Err(Error::invalid("a refund must be for a positive amount"));
        }
        let form = vec![
            ("payment_intent".to_owned(), path_segment(&req.charge_reference)?.to_owned()),
            ("amount".to_owned(), req.amount.minor().to_string()),
            ("metadata[reason]".to_owned(), req.reason.clone()),
            ("metadata[refund_key]".to_owned(), req.idempotency_key.clone()),
        ];
        let path = "/v1/refunds";
        match self.call(Method::POST, path, &[], Some(&form), Some(&req.idempotency_key)).await? {
            Reply::Ok(refund) => {
                let id = refund["id"].as_str().ok_or_else(|| upstream("a refund without an id"))?;
                match refund["status"].as_str() {
                    Some("failed" | "canceled") => Err(Error::new(
                        ErrorCode::PaymentFailed,
                        format!(
                            "stripe refund {id} {}",
                            refund["status"].as_str().unwrap_or("failed")
                        ),
                    )),
                    _ => Ok(id.to_owned()),
                }
            }
            Reply::Failed { status, error } => Err(Self::failure(path, status, &error)),
        }
    }

    async fn status(&self, reference: &str) -> Result<PaymentStatus> {
        let Ok(id) = path_segment(reference) else { return Ok(PaymentStatus::Unknown) };
        let Some(pi) = self.get_intent(id, &["latest_charge"]).await? else {
            return Ok(PaymentStatus::Unknown);
        };
        if pi["latest_charge"]["refunded"] == true {
            return Ok(PaymentStatus::Refunded);
        }
        Ok(match pi["status"].as_str().unwrap_or_default() {
            "succeeded" => PaymentStatus::Succeeded,
            "requires_action" => PaymentStatus::RequiresAction,
            "requires_capture" => PaymentStatus::Authorized,
            "requires_payment_method" | "canceled" => PaymentStatus::Failed,
            _ => PaymentStatus::Unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intents_map_to_outcomes() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"id": "pi_1", "status": "succeeded"}), "succeeded"),
            (
                json!({"id": "pi_1", "status": "requires_action",
                       "next_action": {"type": "redirect_to_url", "redirect_to_url": {"url": "https://hooks.example/3ds"}}}),
                "action https://hooks.example/3ds",
            ),
            (
                json!({"id": "pi_1", "status": "requires_action", "next_action": {"type": "use_stripe_sdk"}}),
                "declined authentication_required",
            ),
            (
                json!({"id": "pi_1", "status": "requires_payment_method",
                       "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}}),
                "declined insufficient_funds",
            ),
            (json!({"id": "pi_1", "status": "requires_payment_method"}), "none"),
            (json!({"id": "pi_1", "status": "requires_confirmation"}), "none"),
            (json!({"id": "pi_1", "status": "canceled"}), "declined canceled"),
            (json!({"id": "pi_1", "status": "processing"}), "error"),
            (json!({"status": "succeeded"}), "error"),
        ];
        for (pi, want) in cases {
            let got = match outcome_of(&pi) {
                Ok(Some(ChargeOutcome::Succeeded { .. })) => "succeeded".to_owned(),
                Ok(Some(ChargeOutcome::RequiresAction { continue_url, .. })) => {
                    format!("action {continue_url}")
                }
                Ok(Some(ChargeOutcome::Declined { reason })) => format!("declined {reason}"),
                Ok(None) => "none".to_owned(),
                Err(_) => "error".to_owned(),
            };
            assert_eq!(got, want, "{pi}");
        }
    }

    #[test]
    fn the_scan_starts_at_the_attempt() {
        let now = OffsetDateTime::now_utc();
        let order = uuid::Uuid::now_v7();
        let key = format!("chk_x:charge:ord_{}", order.simple());
        let start = StripePayments::scan_start(&key, now);
        assert!((now.unix_timestamp() - start - SCAN_SLACK.whole_seconds()).abs() <= 2);
        let day = StripePayments::scan_start("some-other-key", now);
        assert_eq!(day, (now - SCAN_DEFAULT).unix_timestamp());
    }

    #[test]
    fn references_are_path_safe() {
        for (r, ok) in [("pi_3Abc", true), ("", false), ("pi/../x", false), ("pi 1", false)] {
            assert_eq!(path_segment(r).is_ok(), ok, "{r}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let o = StripeOptions {
            api_base: Url::parse("https://stripe.test").unwrap(),
            secret_key: SecretString::from("sk_test_hidden"),
            api_version: None,
            timeout: Duration::from_secs(1),
            max_retries: 0,
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(1),
            return_url: "https://shop/payments/return".into(),
        };
        assert!(!format!("{o:?}").contains("sk_test_hidden"));
    }
}
