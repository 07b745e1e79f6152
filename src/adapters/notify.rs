//! Buyer notifications behind the [`Notifier`] port.
//!
//! [`LogNotifier`], the default, writes each confirmation to the log (the
//! recipient masked), for development and for merchants who mail from
//! their own systems. [`HttpEmailNotifier`] posts it to a transactional
//! email API in the Resend style: `POST <url>` with `Authorization: Bearer
//! <api key>`, `Idempotency-Key: <outbox message id>` and the JSON
//! `{"from", "to": [..], "subject", "text"}`. A 2xx is sent; anything else
//! is an error the outbox retries, and the idempotency key keeps a retry
//! from mailing twice where the API honours it.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::{Error, ErrorCode, Result};
use crate::ports::{Notification, Notifier};
use crate::settings::NotifyConfig;

/// `buyer@example.com` as `b***@example.com`: enough to tell messages
/// apart in a log, not enough to harvest addresses from it.
pub fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((user, domain)) => {
            let first = user.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Logs notifications instead of sending them.
#[derive(Debug, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn send(&self, key: &str, n: &Notification) -> Result<()> {
        tracing::info!(
            notification = key,
            order = %n.order_id,
            to = %mask_email(&n.to),
            subject = %n.subject,
            text = %n.text,
            "order confirmation (log sender)"
        );
        Ok(())
    }
}

/// Posts notifications to an email API.
pub struct HttpEmailNotifier {
    client: reqwest::Client,
    url: Url,
    api_key: SecretString,
    from: String,
}

impl HttpEmailNotifier {
    pub fn new(url: Url, api_key: SecretString, from: String, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agentgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::internal)?;
        Ok(Self { client, url, api_key, from })
    }

    /// From checked settings; `None` unless `sender = "http"`.
    pub fn from_config(config: &NotifyConfig) -> Result<Option<Self>> {
        if config.sender != crate::settings::NotifySender::Http {
            return Ok(None);
        }
        let url = config
            .url
            .as_deref()
            .and_then(|u| Url::parse(u).ok())
            .ok_or_else(|| Error::invalid("notify.url is required with sender = \"http\""))?;
        let key = config
            .api_key
            .clone()
            .ok_or_else(|| Error::invalid("notify.api_key is required with sender = \"http\""))?;
        let timeout = Duration::from_secs(config.timeout_secs);
        Self::new(url, key, config.from.clone(), timeout).map(Some)
    }
}

#[async_trait]
impl Notifier for HttpEmailNotifier {
    async fn send(&self, key: &str, n: &Notification) -> Result<()> {
        let body = serde_json::json!({
            "from": self.from,
            "to": [n.to],
            "subject": n.subject,
            "text": n.text,
        });
        let mut auth = reqwest::header::HeaderValue::from_str(&format!(
            "Bearer {}",
            self.api_key.expose_secret()
        ))
        .map_err(|_| Error::internal("the notify API key is not a valid header"))?;
        auth.set_sensitive(true);
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() { "timed out" } else { "could not be reached" };
                Error::new(ErrorCode::UpstreamUnavailable, format!("the email API {why}"))
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Error::new(ErrorCode::UpstreamUnavailable, format!("the email API answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_in_logs() {
        let cases = [
            ("buyer@example.com", "b***@example.com"),
            ("@example.com", "***@example.com"),
            ("not-an-address", "***"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_email(input), want);
        }
    }
}
