//! The HTTP client every Shopify call goes through: one place for the
//! access-token headers, timeouts, and bounded retries with backoff on 429,
//! 5xx and GraphQL `THROTTLED`.
//!
//! It knows Shopify's transport rules (the cost-based throttle reported in
//! `extensions.cost.throttleStatus`, REST `Retry-After`) and nothing of
//! products or orders. Tokens are `SecretString`s, sent as sensitive header
//! values, and never formatted into a log line or an error.

use std::time::Duration;

use rand_core::RngCore;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::domain::{Error, ErrorCode, Result};

/// How long and how often to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first try (so `max_retries + 1` tries at most).
    pub max_retries: u32,
    /// The first backoff ceiling; doubled per retry up to `cap`.
    pub base: Duration,
    /// No wait is longer, whatever Shopify's `Retry-After` or throttle
    /// arithmetic asks: a request must answer within the gateway's timeout.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 3, base: Duration::from_millis(250), cap: Duration::from_secs(5) }
    }
}

pub(crate) fn upstream(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::UpstreamUnavailable, format!("shopify: {what}"))
}

/// A Shopify API client for one token header (Storefront or Admin).
#[derive(Clone)]
pub struct ShopifyClient {
    http: reqwest::Client,
    /// `X-Shopify-Storefront-Access-Token` or `X-Shopify-Access-Token`.
    token_header: &'static str,
    token: SecretString,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ShopifyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyClient").field("token_header", &self.token_header).finish()
    }
}

/// One try's result, before the retry decision.
enum Try {
    Done(Value),
    /// Worth another try, after at least this long (if Shopify said).
    Again(Error, Option<Duration>),
}

impl ShopifyClient {
    pub fn new(
        token_header: &'static str,
        token: SecretString,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Shopify's APIs do not redirect API calls; following one could
            // carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agentgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the Shopify client: {e}")))?;
        Ok(Self { http, token_header, token, retry })
    }

    fn headers(&self) -> Result<HeaderMap> {
        let mut h = HeaderMap::new();
        let mut v = HeaderValue::from_str(self.token.expose_secret())
            .map_err(|_| Error::internal("a Shopify access token is not a valid header value"))?;
        v.set_sensitive(true);
        h.insert(self.token_header, v);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(h)
    }

    /// The wait before retry `n` (1-based): full jitter over an exponential
    /// ceiling, or at least what Shopify asked for, never above the cap.
    fn backoff(&self, n: u32, asked: Option<Duration>) -> Duration {
        let ceiling = self
            .retry
            .base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.retry.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX).max(1);
        let jittered = Duration::from_millis(rand_core::OsRng.next_u64() % (millis + 1));
        jittered.max(asked.unwrap_or_default()).min(self.retry.cap)
    }

    /// A GraphQL call. Returns `data`; a `THROTTLED` answer, 429 and 5xx
    /// are retried (bounded), other top-level `errors` fail the call.
    /// `userErrors` inside `data` are the caller's to read.
    pub async fn graphql(&self, url: &Url, query: &str, variables: Value) -> Result<Value> {
        let body = serde_json::to_vec(&serde_json::json!({"query": query, "variables": variables}))
            .map_err(Error::internal)?;
        self.with_retries(url, |this| this.graphql_once(url, body.clone())).await
    }

    /// A REST GET (Admin API). `Ok(None)` for 404.
    pub async fn get_json(&self, url: &Url) -> Result<Option<Value>> {
        let out = self.with_retries(url, |this| this.get_once(url)).await?;
        Ok((!out.is_null()).then_some(out))
    }

    async fn with_retries<'a, F, Fut>(&'a self, url: &Url, mut once: F) -> Result<Value>
    where
        F: FnMut(&'a Self) -> Fut,
        Fut: std::future::Future<Output = Result<Try>>,
    {
        let mut tries = 0u32;
        loop {
            tries += 1;
            match once(self).await? {
                Try::Done(v) => return Ok(v),
                Try::Again(err, asked) => {
                    if tries > self.retry.max_retries {
                        return Err(err);
                    }
                    let wait = self.backoff(tries, asked);
                    tracing::warn!(path = url.path(), try_no = tries, wait_ms = wait.as_millis() as u64, error = %err, "shopify call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<std::result::Result<(StatusCode, HeaderMap, bytes::Bytes), Try>> {
        let path = url.path().to_owned();
        match req.headers(self.headers()?).send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => Ok(Ok((status, headers, b))),
                    Err(e) => Ok(Err(Try::Again(upstream(format!("reading {path}: {e}")), None))),
                }
            }
            Err(e) => Ok(Err(Try::Again(
                upstream(format!(
                    "{path}: {}",
                    if e.is_timeout() { "timed out" } else { "network error" }
                )),
                None,
            ))),
        }
    }

    /// Classifies a transport answer shared by GraphQL and REST: 429 and
    /// 5xx retry; 401/403 are a configuration fault (the token or scopes).
    fn transport(path: &str, status: StatusCode, headers: &HeaderMap) -> Option<Result<Try>> {
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Some(Ok(Try::Again(
                upstream(format!("{path} answered {}", status.as_u16())),
                retry_after(headers),
            )));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            tracing::error!(
                path,
                status = status.as_u16(),
                "shopify refused the access token; check the token and its scopes"
            );
            return Some(Err(upstream("the store refused the gateway's credentials")));
        }
        None
    }

    async fn graphql_once(&self, url: &Url, body: Vec<u8>) -> Result<Try> {
        let (status, headers, bytes) =
            match self.send(self.http.post(url.clone()).body(body), url).await? {
                Ok(r) => r,
                Err(again) => return Ok(again),
            };
        let path = url.path();
        if let Some(t) = Self::transport(path, status, &headers) {
            return t;
        }
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| upstream(format!("{path} answered invalid JSON: {e}")))?;
        if let Some(errors) = doc.get("errors").filter(|e| !e.is_null()) {
            let throttled = errors.as_array().is_some_and(|a| {
                a.iter().any(|e| {
                    e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED")
                })
            });
            if throttled {
                return Ok(Try::Again(
                    upstream("the store's API throttled the call"),
                    throttle_wait(&doc),
                ));
            }
            let first =
                errors.pointer("/0/message").and_then(Value::as_str).unwrap_or("unknown error");
            tracing::warn!(path, error = first, "shopify graphql errors");
            return Err(upstream(format!("the store's API refused the query: {first}")));
        }
        if !status.is_success() {
            return Err(upstream(format!("{path} answered {}", status.as_u16())));
        }
        match doc.get("data") {
            Some(d) if !d.is_null() => Ok(Try::Done(d.clone())),
            _ => Err(upstream(format!("{path} answered without data"))),
        }
    }

    async fn get_once(&self, url: &Url) -> Result<Try> {
        let (status, headers, bytes) = match self.send(self.http.get(url.clone()), url).await? {
            Ok(r) => r,
            Err(again) => return Ok(again),
        };
        let path = url.path();
        if let Some(t) = Self::transport(path, status, &headers) {
            return t;
        }
        if status == StatusCode::NOT_FOUND {
            return Ok(Try::Done(Value::Null));
        }
        if !status.is_success() {
            return Err(upstream(format!("{path} answered {}", status.as_u16())));
        }
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| upstream(format!("{path} answered invalid JSON: {e}")))?;
        Ok(Try::Done(doc))
    }
}

/// `Retry-After` in seconds (Shopify REST sends a decimal, `2.0`).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = raw.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// How long until the bucket holds the query's cost again, from
/// `extensions.cost`: (requested − available) / restoreRate seconds.
pub(crate) fn throttle_wait(doc: &Value) -> Option<Duration> {
    let cost = doc.pointer("/extensions/cost")?;
    let requested = cost.get("requestedQueryCost")?.as_f64()?;
    let status = cost.get("throttleStatus")?;
    let available = status.get("currentlyAvailable")?.as_f64()?;
    let rate = status.get("restoreRate")?.as_f64()?;
    // A NaN or non-positive rate gives no usable wait.
    if rate.is_nan() || rate <= 0.0 {
        return None;
    }
    let secs = ((requested - available) / rate).max(0.0);
    secs.is_finite().then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_wait_reads_the_cost_extension() {
        let doc = serde_json::json!({"extensions": {"cost": {
            "requestedQueryCost": 152,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 2, "restoreRate": 50.0}
        }}});
        assert_eq!(throttle_wait(&doc), Some(Duration::from_secs(3)));
        assert_eq!(throttle_wait(&serde_json::json!({})), None);
        let zero = serde_json::json!({"extensions": {"cost": {"requestedQueryCost": 1,
            "throttleStatus": {"currentlyAvailable": 0, "restoreRate": 0}}}});
        assert_eq!(throttle_wait(&zero), None);
    }

    #[test]
    fn retry_after_parses_decimals_and_refuses_junk() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2.0"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
    }
}
