//! Order webhooks to agent platforms: [`WebhookSender`] over HTTPS with
//! reqwest, hardened like the profile fetcher, because the URL comes from
//! a platform's profile and every post is a request made on its behalf.
//!
//! Rules: HTTPS only and public addresses only (the host is resolved here,
//! every address checked with [`is_public`], and the connection pinned to
//! those addresses so a changed DNS answer is never used); no proxy; no
//! redirects (a 3xx is an answer, and the worker retries it); one time
//! budget for the whole post. `allow_private_hosts` (the test-only setting
//! `allow_private_profile_hosts`) relaxes the address and HTTPS rules so
//! tests can run a local receiver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use url::{Host, Url};

use crate::adapters::profile_fetcher::is_public;
use crate::domain::{Error, ErrorCode, Result};
use crate::ports::{WebhookResponse, WebhookSender};

/// Posts webhooks. See the module docs for the rules.
pub struct HttpWebhookSender {
    allow_private_hosts: bool,
    timeout: Duration,
}

fn refused(why: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, why)
}

impl HttpWebhookSender {
    pub fn new(allow_private_hosts: bool, timeout: Duration) -> Self {
        Self { allow_private_hosts, timeout }
    }

    /// The addresses to pin the connection to (`None` for an IP literal,
    /// checked the same way).
    async fn vetted(&self, url: &Url) -> Result<Option<(String, Vec<SocketAddr>)>> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private_hosts => {}
            _ => return Err(refused("webhook URLs must be https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("webhook URLs must not carry credentials"));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let (host, ips): (Option<String>, Vec<IpAddr>) = match url.host() {
            Some(Host::Ipv4(ip)) => (None, vec![IpAddr::V4(ip)]),
            Some(Host::Ipv6(ip)) => (None, vec![IpAddr::V6(ip)]),
            Some(Host::Domain(name)) => {
                let found = tokio::net::lookup_host((name, port)).await.map_err(|_| {
                    Error::new(ErrorCode::UpstreamUnavailable, "the webhook host does not resolve")
                })?;
                (Some(name.to_owned()), found.map(|a| a.ip()).collect())
            }
            None => return Err(refused("the webhook URL has no host")),
        };
        if ips.is_empty() {
            return Err(Error::new(
                ErrorCode::UpstreamUnavailable,
                "the webhook host has no address",
            ));
        }
        if !self.allow_private_hosts && ips.iter().any(|ip| !is_public(*ip)) {
            tracing::warn!(url = %url, "refused an order webhook to a non-public address");
            return Err(refused("the webhook host is not on a public address"));
        }
        Ok(host.map(|h| (h, ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())))
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(
        &self,
        url: &Url,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<WebhookResponse> {
        let pinned = self.vetted(url).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .https_only(!self.allow_private_hosts)
            .user_agent(concat!("agentgate/", env!("CARGO_PKG_VERSION")));
        if let Some((host, addrs)) = &pinned {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        let client = builder.build().map_err(Error::internal)?;
        let mut req = client.post(url.clone()).body(body.to_vec());
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_timeout() { "timed out" } else { "could not be reached" };
            Error::new(ErrorCode::UpstreamUnavailable, format!("the webhook endpoint {why}"))
        })?;
        Ok(WebhookResponse { status: resp.status().as_u16() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_https_to_public_addresses_unless_testing() {
        let strict = HttpWebhookSender::new(false, Duration::from_secs(1));
        let cases = [
            "http://hooks.example/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://10.0.0.8/x",
            "https://user:pw@hooks.example/x",
            "ftp://hooks.example/x",
        ];
        for url in cases {
            let err = strict.post(&Url::parse(url).unwrap(), &[], b"{}").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidInput, "{url}");
        }
        let lax = HttpWebhookSender::new(true, Duration::from_secs(1));
        assert!(lax.vetted(&Url::parse("http://127.0.0.1:9/x").unwrap()).await.is_ok());
    }
}
