//! The platform-profile fetcher: [`ProfileFetcher`] over HTTPS with
//! reqwest, hardened against server-side request forgery.
//!
//! The URL comes from the `UCP-Agent` header of an unauthenticated request,
//! so every fetch is a request the gateway makes on an attacker's behalf.
//! The rules, from UCP 2026-04-08 overview "Profile Requirements" plus the
//! usual SSRF defences:
//!
//! - HTTPS only, no credentials in the URL.
//! - Public addresses only. The host is resolved here, every address is
//!   checked ([`is_public`]), and the request is pinned to exactly those
//!   addresses (`resolve_to_addrs`), so a DNS answer that changes between
//!   the check and the connection (rebinding) is never used. IP literals
//!   are checked the same way. No proxy is used, since a proxy would
//!   resolve the name itself.
//! - No redirects: a 3xx is `profile_unreachable`.
//! - A total time budget (3 s by default) covering DNS, connect, headers
//!   and body.
//! - A body cap (128 KiB by default) enforced while streaming, whatever
//!   `Content-Length` says; over it is `profile_malformed`.
//! - Responses cached per URL for their `max-age`, clamped to
//!   [60 s, 1 h]; `no-store` or no header means 60 s (Fetching rule 4
//!   sets the 60 s floor). The cache holds a bounded number of entries and
//!   evicts the oldest, so unknown platforms cannot grow it without bound.
//!
//! `allow_private_hosts` (setting `allow_private_profile_hosts`) relaxes the
//! address and HTTPS rules so tests can use a local server. It must never
//! be on in production.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;
use url::{Host, Url};

use crate::domain::{Error, ErrorCode, Result};
use crate::ports::{Clock, ProfileFetcher};
use crate::settings::Settings;
use crate::ucp::negotiate::{profile_url, SchemeRule};

/// Shortest time a profile stays cached.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time a profile stays cached, whatever the origin asks.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Limits of the fetcher. The defaults are the production values.
#[derive(Debug, Clone)]
pub struct FetcherOptions {
    /// Tests only: allow loopback and private addresses, and plain HTTP.
    pub allow_private_hosts: bool,
    /// Budget for the whole fetch: DNS, connect, headers and body.
    pub timeout: Duration,
    /// Largest body accepted, counted as it streams in.
    pub max_body_bytes: usize,
    /// Most profiles kept in the cache.
    pub cache_capacity: usize,
}

impl Default for FetcherOptions {
    fn default() -> Self {
        Self {
            allow_private_hosts: false,
            timeout: Duration::from_secs(3),
            max_body_bytes: 128 * 1024,
            cache_capacity: 1000,
        }
    }
}

/// Fetches platform profiles over HTTPS. See the module docs for the rules.
pub struct HttpProfileFetcher {
    options: FetcherOptions,
    clock: Arc<dyn Clock>,
    cache: Mutex<Cache>,
}

impl HttpProfileFetcher {
    pub fn new(options: FetcherOptions, clock: Arc<dyn Clock>) -> Self {
        if options.allow_private_hosts {
            tracing::warn!(
                "allow_private_profile_hosts is on: platform profiles may be fetched from private \
                 addresses over plain HTTP; this is for tests only"
            );
        }
        let cache = Mutex::new(Cache::new(options.cache_capacity));
        Self { options, clock, cache }
    }

    /// The production limits, with the test-only address rule taken from
    /// the settings.
    pub fn from_settings(settings: &Settings, clock: Arc<dyn Clock>) -> Self {
        let options = FetcherOptions {
            allow_private_hosts: settings.allow_private_profile_hosts,
            ..FetcherOptions::default()
        };
        Self::new(options, clock)
    }

    fn scheme_rule(&self) -> SchemeRule {
        if self.options.allow_private_hosts {
            SchemeRule::AllowHttpForTests
        } else {
            SchemeRule::HttpsOnly
        }
    }

    /// Resolves the host and checks every address; returns the addresses to
    /// pin the connection to, or `None` for an IP literal (which reqwest
    /// connects to as is, after the same check).
    async fn vetted_addresses(&self, url: &Url) -> Result<Option<(String, Vec<SocketAddr>)>> {
        let port = url.port_or_known_default().unwrap_or(443);
        let (host, addrs) = match url.host() {
            Some(Host::Ipv4(ip)) => (None, vec![IpAddr::V4(ip)]),
            Some(Host::Ipv6(ip)) => (None, vec![IpAddr::V6(ip)]),
            Some(Host::Domain(name)) => {
                let found = tokio::net::lookup_host((name, port)).await.map_err(|e| {
                    tracing::info!(host = name, error = %e, "platform profile host does not resolve");
                    Error::new(ErrorCode::InvalidProfileUrl, format!("the profile host {name} does not resolve"))
                })?;
                (Some(name.to_owned()), found.map(|a| a.ip()).collect())
            }
            None => {
                return Err(Error::new(ErrorCode::InvalidProfileUrl, "the profile URL has no host"))
            }
        };
        if addrs.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidProfileUrl,
                "the profile host has no addresses",
            ));
        }
        // One non-public address refuses the host: a name that mixes public
        // and private answers is an attack or a mistake either way.
        if !self.options.allow_private_hosts {
            if let Some(bad) = addrs.iter().find(|ip| !is_public(**ip)) {
                tracing::warn!(url = %url, address = %bad, "refused a platform profile on a non-public address");
                return Err(Error::new(
                    ErrorCode::InvalidProfileUrl,
                    "the profile host is not on a public address",
                ));
            }
        }
        Ok(host.map(|h| (h, addrs.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())))
    }

    async fn fetch_uncached(&self, url: &Url) -> Result<(Value, Option<String>)> {
        let pinned = self.vetted_addresses(url).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.options.timeout)
            .connect_timeout(self.options.timeout)
            .https_only(!self.options.allow_private_hosts)
            .user_agent(concat!("agentgate/", env!("CARGO_PKG_VERSION")));
        if let Some((host, addrs)) = &pinned {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        let client = builder.build().map_err(Error::internal)?;
        let mut resp = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable_error(url, &e))?;
        let status = resp.status();
        if status.is_redirection() {
            // Profile endpoints must not redirect ("Hosting" rule 2), and
            // following one would reopen every check above.
            return Err(Error::new(
                ErrorCode::ProfileUnreachable,
                format!("the platform profile answered {status}; redirects are not followed"),
            ));
        }
        if !status.is_success() {
            return Err(Error::new(
                ErrorCode::ProfileUnreachable,
                format!("the platform profile answered {status}"),
            ));
        }
        let cache_control = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cap = self.options.max_body_bytes;
        let too_large = || {
            Error::new(
                ErrorCode::ProfileMalformed,
                format!("the platform profile is over {cap} bytes"),
            )
        };
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        // Count while streaming: a chunked body has no length, and a
        // declared length is only a claim.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable_error(url, &e))? {
            if body.len() + chunk.len() > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => Ok((v, cache_control)),
            Ok(_) => Err(Error::new(
                ErrorCode::ProfileMalformed,
                "the platform profile is not a JSON object",
            )),
            Err(_) => {
                Err(Error::new(ErrorCode::ProfileMalformed, "the platform profile is not JSON"))
            }
        }
    }
}

fn unreachable_error(url: &Url, e: &reqwest::Error) -> Error {
    tracing::info!(url = %url, error = %e, "platform profile fetch failed");
    let why = if e.is_timeout() { "timed out" } else { "could not be fetched" };
    Error::new(ErrorCode::ProfileUnreachable, format!("the platform profile {why}"))
}

#[async_trait]
impl ProfileFetcher for HttpProfileFetcher {
    async fn fetch(&self, url: &Url) -> Result<Value> {
        let url = profile_url(url.as_str(), self.scheme_rule())?;
        let key = url.as_str().to_owned();
        let now = self.clock.now();
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key, now)) {
            return Ok(hit);
        }
        let fetched = tokio::time::timeout(self.options.timeout, self.fetch_uncached(&url)).await;
        let (value, cache_control) = match fetched {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::new(
                    ErrorCode::ProfileUnreachable,
                    "the platform profile timed out",
                ))
            }
        };
        let ttl = cache_ttl(cache_control.as_deref());
        let expires_at = self.clock.now() + ttl;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, value.clone(), expires_at, now);
        }
        Ok(value)
    }
}

/// How long to keep a profile, from its `Cache-Control`: `max-age`
/// clamped to [[`MIN_TTL`], [`MAX_TTL`]]; the floor when the header is
/// absent, has no `max-age`, or says `no-store`, `no-cache` or `private`
/// (which a profile must not say, "Hosting" rule 3, and which the floor
/// overrides, "Fetching" rule 4).
pub fn cache_ttl(cache_control: Option<&str>) -> Duration {
    let Some(header) = cache_control else { return MIN_TTL };
    let mut max_age = None;
    for directive in header.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if matches!(directive.as_str(), "no-store" | "no-cache" | "private") {
            return MIN_TTL;
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.map(Duration::from_secs).unwrap_or(MIN_TTL).clamp(MIN_TTL, MAX_TTL)
}

/// Whether an address is on the public internet. Refused: unspecified,
/// "this network", private (RFC 1918), shared CGNAT (RFC 6598), loopback,
/// link-local, IETF protocol assignments, documentation, benchmarking,
/// multicast, reserved and broadcast for IPv4; unspecified, loopback,
/// unique-local, link-local, site-local, multicast, documentation, discard
/// and the IETF protocol assignments (Teredo, ORCHID) for IPv6; and IPv6
/// forms that embed an IPv4 address (v4-mapped, v4-compatible, NAT64,
/// 6to4) when the embedded address is refused.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", including 0.0.0.0
        || a == 10 // private
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation (TEST-NET-1)
        || (a == 192 && b == 88 && c == 99) // deprecated 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation (TEST-NET-2)
        || (a == 203 && b == 0 && c == 113) // documentation (TEST-NET-3)
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        // ::/96: unspecified, loopback and the deprecated v4-compatible
        // form; none of them is a reachable public host.
        return false;
    }
    if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix (RFC 6052).
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        // 6to4 (RFC 3056) carries the IPv4 address in bits 16..48.
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    let refused = (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast ff00::/8
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20 (RFC 9637)
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] < 0x0200); // IETF protocol assignments 2001::/23: Teredo, ORCHID, ...
    !refused
}

/// The profile cache: bounded, keyed by URL, evicting the oldest insertion
/// once full (after dropping whatever has already expired).
struct Cache {
    entries: HashMap<String, Entry>,
    capacity: usize,
    next_seq: u64,
}

struct Entry {
    value: Value,
    expires_at: OffsetDateTime,
    seq: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), capacity: capacity.max(1), next_seq: 0 }
    }

    fn get(&self, key: &str, now: OffsetDateTime) -> Option<Value> {
        self.entries.get(key).filter(|e| e.expires_at > now).map(|e| e.value.clone())
    }

    fn insert(
        &mut self,
        key: String,
        value: Value,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.expires_at > now);
            if self.entries.len() >= self.capacity {
                let oldest = self.entries.iter().min_by_key(|(_, e)| e.seq).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.next_seq += 1;
        self.entries.insert(key, Entry { value, expires_at, seq: self.next_seq });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// A clock the test moves by hand.
    struct ManualClock(Mutex<OffsetDateTime>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(time::macros::datetime!(2026-05-01 12:00 UTC))))
        }
        fn advance(&self, d: Duration) {
            if let Ok(mut t) = self.0.lock() {
                *t += d;
            }
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            self.0.lock().map(|t| *t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        }
    }

    fn fetcher(allow_private: bool) -> (HttpProfileFetcher, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let options = FetcherOptions {
            allow_private_hosts: allow_private,
            timeout: Duration::from_millis(500),
            ..FetcherOptions::default()
        };
        (HttpProfileFetcher::new(options, clock.clone()), clock)
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn profile() -> Value {
        json!({"ucp": {"version": "2026-04-08", "capabilities": {}}})
    }

    async fn code_of(f: &HttpProfileFetcher, u: &str) -> ErrorCode {
        match f.fetch(&url(u)).await {
            Ok(v) => panic!("{u}: expected an error, got {v}"),
            Err(e) => e.code(),
        }
    }

    #[tokio::test]
    async fn refuses_plain_http_without_the_test_flag() {
        let (f, _) = fetcher(false);
        for u in ["http://agent.example/profile.json", "ftp://agent.example/p"] {
            assert_eq!(code_of(&f, u).await, ErrorCode::InvalidProfileUrl, "{u}");
        }
    }

    #[tokio::test]
    async fn refuses_every_non_public_address_class() {
        let (f, _) = fetcher(false);
        let cases = [
            ("unspecified v4", "https://0.0.0.0/p"),
            ("this network", "https://0.1.2.3/p"),
            ("private 10/8", "https://10.0.0.1/p"),
            ("private 172.16/12", "https://172.16.5.4/p"),
            ("private 172.31", "https://172.31.255.254/p"),
            ("private 192.168/16", "https://192.168.1.1/p"),
            ("CGNAT 100.64/10", "https://100.64.0.1/p"),
            ("CGNAT upper end", "https://100.127.255.254/p"),
            ("loopback", "https://127.0.0.1/p"),
            ("loopback elsewhere in 127/8", "https://127.8.9.10/p"),
            ("loopback as one decimal number", "https://2130706433/p"),
            ("loopback in hex and short form", "https://0x7f.1/p"),
            ("link-local (cloud metadata)", "https://169.254.169.254/latest/meta-data"),
            ("IETF protocol assignments", "https://192.0.0.8/p"),
            ("documentation TEST-NET-1", "https://192.0.2.1/p"),
            ("documentation TEST-NET-2", "https://198.51.100.7/p"),
            ("documentation TEST-NET-3", "https://203.0.113.9/p"),
            ("benchmarking", "https://198.18.0.1/p"),
            ("multicast v4", "https://224.0.0.1/p"),
            ("reserved", "https://240.0.0.1/p"),
            ("broadcast", "https://255.255.255.255/p"),
            ("unspecified v6", "https://[::]/p"),
            ("loopback v6", "https://[::1]/p"),
            ("v4-mapped loopback", "https://[::ffff:127.0.0.1]/p"),
            ("v4-mapped private", "https://[::ffff:10.0.0.1]/p"),
            ("v4-mapped metadata", "https://[::ffff:169.254.169.254]/p"),
            ("v4-compatible", "https://[::10.0.0.1]/p"),
            ("NAT64 of a private address", "https://[64:ff9b::a00:1]/p"),
            ("6to4 of loopback", "https://[2002:7f00:1::1]/p"),
            ("unique local fc00::/7", "https://[fc00::1]/p"),
            ("unique local fd", "https://[fd12:3456::1]/p"),
            ("link-local v6", "https://[fe80::1]/p"),
            ("site-local v6", "https://[fec0::1]/p"),
            ("multicast v6", "https://[ff02::1]/p"),
            ("documentation v6", "https://[2001:db8::1]/p"),
            ("documentation 3fff::/20", "https://[3fff::1]/p"),
            ("Teredo", "https://[2001::1]/p"),
            ("discard-only", "https://[100::1]/p"),
        ];
        for (name, u) in cases {
            let started = Instant::now();
            assert_eq!(code_of(&f, u).await, ErrorCode::InvalidProfileUrl, "{name}: {u}");
            // Refused before any connection attempt, not after a timeout.
            assert!(started.elapsed() < Duration::from_millis(400), "{name}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip}");
        }
    }

    #[tokio::test]
    async fn refuses_names_that_resolve_to_loopback() {
        let (f, _) = fetcher(false);
        assert_eq!(
            code_of(&f, "https://localhost/profile.json").await,
            ErrorCode::InvalidProfileUrl
        );
        assert_eq!(
            code_of(&f, "https://localhost:8443/profile.json").await,
            ErrorCode::InvalidProfileUrl
        );
        assert_eq!(code_of(&f, "https://localhost./p").await, ErrorCode::InvalidProfileUrl);
    }

    #[tokio::test]
    async fn refuses_credentials_in_the_url() {
        let (f, _) = fetcher(true);
        assert_eq!(code_of(&f, "http://user:pw@127.0.0.1:1/p").await, ErrorCode::InvalidProfileUrl);
    }

    #[tokio::test]
    async fn fetches_from_a_local_server_with_the_test_flag_by_ip_and_by_name() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/profile.json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(profile()))
            .mount(&server)
            .await;
        let (f, _) = fetcher(true);
        let by_ip = format!("{}/profile.json", server.uri());
        assert_eq!(f.fetch(&url(&by_ip)).await.unwrap(), profile());
        // By name: resolved here and pinned to the vetted addresses.
        let port = server.address().port();
        let by_name = format!("http://localhost:{port}/profile.json");
        assert_eq!(f.fetch(&url(&by_name)).await.unwrap(), profile());
        // Without the flag the same server is refused before any request.
        let (strict, _) = fetcher(false);
        assert_eq!(code_of(&strict, &by_ip).await, ErrorCode::InvalidProfileUrl);
    }

    #[tokio::test]
    async fn status_and_body_table() {
        let server = MockServer::start().await;
        let big = json!({"ucp": {"version": "2026-04-08"}, "pad": "x".repeat(129 * 1024)});
        let cases: Vec<(&str, ResponseTemplate, ErrorCode)> = vec![
            (
                "/redirect",
                ResponseTemplate::new(302)
                    .insert_header("Location", format!("{}/target", server.uri())),
                ErrorCode::ProfileUnreachable,
            ),
            (
                "/moved",
                ResponseTemplate::new(301).insert_header("Location", "https://8.8.8.8/"),
                ErrorCode::ProfileUnreachable,
            ),
            ("/missing", ResponseTemplate::new(404), ErrorCode::ProfileUnreachable),
            ("/broken", ResponseTemplate::new(500), ErrorCode::ProfileUnreachable),
            ("/unavailable", ResponseTemplate::new(503), ErrorCode::ProfileUnreachable),
            (
                "/html",
                ResponseTemplate::new(200).set_body_string("<html>hi</html>"),
                ErrorCode::ProfileMalformed,
            ),
            ("/empty", ResponseTemplate::new(200), ErrorCode::ProfileMalformed),
            (
                "/array",
                ResponseTemplate::new(200).set_body_json(json!([1, 2])),
                ErrorCode::ProfileMalformed,
            ),
            ("/big", ResponseTemplate::new(200).set_body_json(big), ErrorCode::ProfileMalformed),
        ];
        for (p, template, _) in &cases {
            Mock::given(method("GET"))
                .and(path(*p))
                .respond_with(template.clone())
                .mount(&server)
                .await;
        }
        // A followed redirect would show up here.
        Mock::given(path("/target"))
            .respond_with(ResponseTemplate::new(200).set_body_json(profile()))
            .expect(0)
            .mount(&server)
            .await;
        let (f, _) = fetcher(true);
        for (p, _, want) in &cases {
            let u = format!("{}{p}", server.uri());
            assert_eq!(code_of(&f, &u).await, *want, "{p}");
        }
        server.verify().await;
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(profile())
                    .set_delay(Duration::from_secs(5)),
            )
            .mount(&server)
            .await;
        let (f, _) = fetcher(true);
        let started = Instant::now();
        assert_eq!(
            code_of(&f, &format!("{}/slow", server.uri())).await,
            ErrorCode::ProfileUnreachable
        );
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let (f, _) = fetcher(true);
        assert_eq!(
            code_of(&f, &format!("http://127.0.0.1:{port}/p")).await,
            ErrorCode::ProfileUnreachable
        );
    }

    /// A server that answers one request with `head` and then streams
    /// `chunk` forever (or stalls when it is empty), to show the cap and the
    /// timeout hold whatever the headers claim.
    async fn raw_server(head: &'static str, chunk: Vec<u8>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                if chunk.is_empty() {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                if sock.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn endless_chunked_body_stops_at_the_cap() {
        const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024)).into_bytes();
        let port = raw_server(HEAD, chunk).await;
        let (f, _) = fetcher(true);
        let started = Instant::now();
        assert_eq!(
            code_of(&f, &format!("http://127.0.0.1:{port}/p")).await,
            ErrorCode::ProfileMalformed
        );
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "stopped by the cap, not the timeout"
        );
    }

    #[tokio::test]
    async fn lying_content_length_cannot_stall_past_the_timeout() {
        const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"ucp\":";
        let port = raw_server(HEAD, Vec::new()).await;
        let (f, _) = fetcher(true);
        let started = Instant::now();
        assert_eq!(
            code_of(&f, &format!("http://127.0.0.1:{port}/p")).await,
            ErrorCode::ProfileUnreachable
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn ttl_table() {
        let cases = [
            (None, 60),
            (Some("public, max-age=300"), 300),
            (Some("max-age=10"), 60),
            (Some("public, max-age=86400"), 3600),
            (Some("no-store"), 60),
            (Some("public, max-age=600, no-cache"), 60),
            (Some("private, max-age=600"), 60),
            (Some("public"), 60),
            (Some("max-age=abc"), 60),
            (Some("Max-Age=120"), 120),
            (Some("max-age=\"120\""), 120),
        ];
        for (header, secs) in cases {
            assert_eq!(cache_ttl(header), Duration::from_secs(secs), "{header:?}");
        }
    }

    #[tokio::test]
    async fn cache_serves_until_max_age_then_refetches() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/cached"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(profile())
                    .insert_header("Cache-Control", "public, max-age=120"),
            )
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/nostore"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(profile())
                    .insert_header("Cache-Control", "no-store"),
            )
            .expect(2)
            .mount(&server)
            .await;
        let (f, clock) = fetcher(true);
        let cached = url(&format!("{}/cached", server.uri()));
        let nostore = url(&format!("{}/nostore", server.uri()));
        for _ in 0..3 {
            f.fetch(&cached).await.unwrap();
            f.fetch(&nostore).await.unwrap();
        }
        clock.advance(Duration::from_secs(61)); // past the 60 s floor of no-store
        f.fetch(&cached).await.unwrap();
        f.fetch(&nostore).await.unwrap();
        clock.advance(Duration::from_secs(60)); // 121 s: past max-age=120
        f.fetch(&cached).await.unwrap();
        server.verify().await;
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .expect(2)
            .mount(&server)
            .await;
        let (f, _) = fetcher(true);
        let u = format!("{}/flaky", server.uri());
        for _ in 0..2 {
            assert_eq!(code_of(&f, &u).await, ErrorCode::ProfileUnreachable);
        }
        server.verify().await;
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_oldest() {
        let t0 = time::macros::datetime!(2026-05-01 12:00 UTC);
        let later = t0 + time::Duration::minutes(5);
        let mut c = Cache::new(2);
        c.insert("a".into(), json!(1), later, t0);
        c.insert("b".into(), json!(2), later, t0);
        c.insert("c".into(), json!(3), later, t0);
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.get("a", t0), None, "the oldest went first");
        assert_eq!(c.get("c", t0), Some(json!(3)));
        // Refreshing a key does not evict anything.
        c.insert("b".into(), json!(22), later, t0);
        assert_eq!((c.get("b", t0), c.get("c", t0)), (Some(json!(22)), Some(json!(3))));
        // Expired entries go before live ones, whatever their age.
        let mut c = Cache::new(2);
        c.insert("old-live".into(), json!(1), later, t0);
        c.insert("young-expired".into(), json!(2), t0 + time::Duration::seconds(1), t0);
        c.insert("new".into(), json!(3), later, t0 + time::Duration::seconds(2));
        assert_eq!(c.get("old-live", t0), Some(json!(1)));
        assert_eq!(c.get("new", t0), Some(json!(3)));
        // An entry reads as absent from its expiry on.
        assert_eq!(c.get("new", later), None);
    }
}
