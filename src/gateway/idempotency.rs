//! Idempotency keys for mutating requests, one implementation for every
//! transport (UCP REST now, the MCP tools later).
//!
//! A request carries a key; the gateway remembers the first response given
//! under it, per caller and transport, for [`RETENTION`], and:
//! - a repeat with the same key and the same fingerprint gets that response
//!   again, byte for byte, and causes no second effect;
//! - the same key with another fingerprint is `idempotency_conflict`
//!   (409): the key was reused for a different request (UCP and ACP both
//!   require this);
//! - a repeat while the first is still running waits briefly for it, then
//!   answers `idempotency_in_progress` (409, retryable), so two concurrent
//!   requests with one key have a single effect.
//!
//! The fingerprint is SHA-256 over the operation name, the resource id and
//! the RFC 8785 (JCS) canonical form of the arguments, never over transport
//! envelopes (a JSON-RPC `id`, headers), which change on every retry.
//!
//! Whether a response is kept is the operation's call ([`Disposition`]):
//! outcomes after an effect (a session written, a charge attempted, a
//! business result) are kept; failures before any effect (validation) give
//! the key back, so a corrected retry under the same key can run.
//!
//! Keys are scoped per caller: the stored key is a hash of transport,
//! caller subject and key, so one agent can neither replay nor block
//! another's response by guessing its key.

use std::future::Future;
use std::time::Duration as StdDuration;

use sha2::{Digest, Sha256};

use crate::domain::{Error, ErrorCode, Result};
use crate::ports::{IdempotencyBegin, IdempotencyState, StoredResponse};

use super::{Caller, Gateway};

/// How long a response stays replayable. UCP asks for at least 24 hours.
pub const RETENTION: time::Duration = time::Duration::hours(24);

/// The longest key accepted. Keys are usually UUIDs (36 characters); the
/// bound keeps stored keys and log lines small.
pub const MAX_KEY_LEN: usize = 255;

/// How often, and how many times, a duplicate looks again at a key whose
/// first request is still running, before it gives up with
/// `idempotency_in_progress`.
const POLL_INTERVAL: StdDuration = StdDuration::from_millis(25);
const POLLS: u32 = 120;

/// A validated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1 to [`MAX_KEY_LEN`] letters, digits and `-_.:` (UUIDs and
    /// the usual ULID or prefixed forms), nothing that could forge a log
    /// line or a header.
    pub fn parse(raw: &str) -> Result<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_KEY_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} letters, digits or - _ . :"
            )))
        }
    }

    /// The error for a request that needs a key and has none.
    pub fn required() -> Error {
        Error::new(
            ErrorCode::IdempotencyKeyRequired,
            "this operation needs an Idempotency-Key (a fresh UUID per logical request)",
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fingerprint of a request: hex SHA-256 over the JCS form of
/// `{"operation", "resource", "arguments"}`.
pub fn fingerprint(
    operation: &str,
    resource: Option<&str>,
    arguments: &serde_json::Value,
) -> Result<String> {
    let canonical = serde_jcs::to_vec(&serde_json::json!({
        "operation": operation,
        "resource": resource,
        "arguments": arguments,
    }))
    .map_err(|e| Error::invalid(format!("the request cannot be canonicalised: {e}")))?;
    Ok(hex(&Sha256::digest(canonical)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key as stored: scoped to the transport and the caller.
fn scoped(transport: &str, caller: &Caller, key: &IdempotencyKey) -> String {
    let mut h = Sha256::new();
    for part in [
        "agentgate/idempotency/v1",
        transport,
        caller.subject.as_deref().unwrap_or("\u{0}anonymous"),
        key.as_str(),
    ] {
        // Length-prefixed, so no two different tuples hash alike.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("idem_{}", hex(&h.finalize()))
}

/// What happens to the key once the operation has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Keep the response for replay: the operation had an effect or gave a
    /// business answer.
    Keep,
    /// Give the key back: nothing happened, a retry may run afresh.
    Release,
}

/// A response, and whether it is a replay of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub response: StoredResponse,
    pub replayed: bool,
}

/// Releases a held key if the operation never finished (a panic), so the
/// key does not stay blocked for a day.
struct Hold {
    store: std::sync::Arc<dyn crate::ports::Store>,
    key: String,
    done: bool,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (store, key) = (std::sync::Arc::clone(&self.store), std::mem::take(&mut self.key));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.idempotency_release(&key).await {
                    tracing::warn!(error = %e, "abandoned idempotency key could not be released");
                }
            });
        }
    }
}

impl Gateway {
    /// Runs `operation` at most once per (`transport`, caller, key):
    /// see the module docs. Errors are the idempotency outcomes
    /// (`idempotency_conflict`, `idempotency_in_progress`) and store
    /// failures; the operation's own failures are responses it renders.
    ///
    /// Callers that must not lose a response to a dropped connection run
    /// this on a spawned task, so the operation and its record always
    /// finish together.
    ///
    /// `operation` gets the key as stored, held in progress, for an
    /// operation that commits its response itself together with its effect
    /// (the checkout pipeline does, with the order); the record it wrote is
    /// then left as it is.
    pub async fn idempotent<F, Fut>(
        &self,
        transport: &str,
        caller: &Caller,
        key: &IdempotencyKey,
        fingerprint: &str,
        operation: F,
    ) -> Result<IdempotentResponse>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = (StoredResponse, Disposition)>,
    {
        let stored_key = scoped(transport, caller, key);
        let mut polls = 0;
        loop {
            let expires_at = self.now() + RETENTION;
            match self.store.idempotency_begin(&stored_key, fingerprint, expires_at).await? {
                IdempotencyBegin::Started => {
                    let mut hold = Hold {
                        store: std::sync::Arc::clone(&self.store),
                        key: stored_key,
                        done: false,
                    };
                    let (response, disposition) = operation(hold.key.clone()).await;
                    let settled = match disposition {
                        Disposition::Keep => {
                            self.store.idempotency_complete(&hold.key, &response).await
                        }
                        Disposition::Release => self.store.idempotency_release(&hold.key).await,
                    };
                    hold.done = true;
                    // Stored already: the operation committed it with its
                    // effect.
                    let settled = match settled {
                        Err(e) if e.code() == ErrorCode::AlreadyExists => Ok(()),
                        other => other,
                    };
                    if let Err(e) = settled {
                        // The effect happened; the key stays held (in
                        // progress) rather than be freed for a second one.
                        tracing::error!(error = %e, "idempotency record could not be settled");
                    }
                    return Ok(IdempotentResponse { response, replayed: false });
                }
                IdempotencyBegin::Existing(record) => {
                    if record.fingerprint != fingerprint {
                        return Err(conflict());
                    }
                    match record.state {
                        IdempotencyState::Completed(response) => {
                            return Ok(IdempotentResponse { response, replayed: true })
                        }
                        IdempotencyState::InProgress => {}
                    }
                }
            }
            // The first request still runs: watch it until it settles.
            loop {
                if polls >= POLLS {
                    return Err(Error::new(
                        ErrorCode::IdempotencyInProgress,
                        "a request with this Idempotency-Key is still being processed; retry shortly",
                    )
                    .with_retry_after(1));
                }
                polls += 1;
                tokio::time::sleep(POLL_INTERVAL).await;
                match self.store.idempotency_get(&stored_key).await? {
                    // Released (or expired): try to take the key.
                    None => break,
                    Some(r) if r.fingerprint != fingerprint => return Err(conflict()),
                    Some(r) => match r.state {
                        IdempotencyState::Completed(response) => {
                            return Ok(IdempotentResponse { response, replayed: true })
                        }
                        IdempotencyState::InProgress => continue,
                    },
                }
            }
        }
    }
}

fn conflict() -> Error {
    Error::new(
        ErrorCode::IdempotencyConflict,
        "this Idempotency-Key was already used for a different request",
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::settings::Settings;

    #[test]
    fn keys_table() {
        let long = "k".repeat(MAX_KEY_LEN);
        let too_long = "k".repeat(MAX_KEY_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("5f0c6e2a-8a47-4d0e-9f55-0c1b2e3d4f5a", true),
            ("order:42.retry_1", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("has space", false),
            ("new\nline", false),
            ("ünï", false),
        ];
        for (raw, ok) in cases {
            assert_eq!(IdempotencyKey::parse(raw).is_ok(), *ok, "{raw:?}");
        }
        assert_eq!(IdempotencyKey::required().code().http_status(), 400);
    }

    #[test]
    fn fingerprints_ignore_key_order_and_whitespace_but_not_content() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "a":[1,2],"b":1.0 }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a": [2, 1], "b": 1}"#).unwrap();
        let fp = |op, id, v| fingerprint(op, id, v).unwrap();
        assert_eq!(fp("create", None, &a), fp("create", None, &b));
        assert_ne!(fp("create", None, &a), fp("create", None, &c));
        assert_ne!(fp("create", None, &a), fp("update", None, &a));
        assert_ne!(fp("update", Some("chk_1"), &a), fp("update", Some("chk_2"), &a));
        assert_eq!(fp("create", None, &a).len(), 64);
    }

    #[test]
    fn scopes_separate_callers_and_transports() {
        let key = IdempotencyKey::parse("k1").unwrap();
        let alice = Caller::subject("alice");
        let s = scoped("rest", &alice, &key);
        assert_ne!(s, scoped("rest", &Caller::subject("bob"), &key));
        assert_ne!(s, scoped("mcp", &alice, &key));
        assert_ne!(s, scoped("rest", &Caller::anonymous(), &key));
        assert_eq!(s, scoped("rest", &alice, &key));
    }

    fn response(body: &str) -> StoredResponse {
        StoredResponse { status: 201, body: body.as_bytes().to_vec() }
    }

    #[tokio::test]
    async fn replays_conflicts_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let gw = crate::bootstrap::build(Settings::for_data_dir(dir.path())).await.unwrap().gateway;
        let caller = Caller::subject("agent");
        let key = IdempotencyKey::parse("key-1").unwrap();
        let runs = AtomicUsize::new(0);
        let run = |body: &'static str, d: Disposition| {
            let runs = &runs;
            move |_key: String| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                (response(body), d)
            }
        };
        let first =
            gw.idempotent("t", &caller, &key, "fp", run("one", Disposition::Keep)).await.unwrap();
        assert!(!first.replayed);
        let again =
            gw.idempotent("t", &caller, &key, "fp", run("two", Disposition::Keep)).await.unwrap();
        assert_eq!((again.replayed, again.response), (true, response("one")));
        let err = gw
            .idempotent("t", &caller, &key, "other", run("x", Disposition::Keep))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::IdempotencyConflict);
        // Another caller's identical key is a different key.
        let other = gw
            .idempotent("t", &Caller::subject("other"), &key, "fp", run("mine", Disposition::Keep))
            .await
            .unwrap();
        assert_eq!(other.response, response("mine"));
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        // A released key runs again.
        let k2 = IdempotencyKey::parse("key-2").unwrap();
        gw.idempotent("t", &caller, &k2, "fp", run("bad", Disposition::Release)).await.unwrap();
        let retry =
            gw.idempotent("t", &caller, &k2, "fp2", run("good", Disposition::Keep)).await.unwrap();
        assert_eq!((retry.replayed, retry.response), (false, response("good")));
    }

    #[tokio::test]
    async fn concurrent_duplicates_have_one_effect() {
        let dir = tempfile::tempdir().unwrap();
        let gw = crate::bootstrap::build(Settings::for_data_dir(dir.path())).await.unwrap().gateway;
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (gw, runs) = (Arc::clone(&gw), Arc::clone(&runs));
            tasks.push(tokio::spawn(async move {
                let key = IdempotencyKey::parse("same").unwrap();
                gw.idempotent("t", &Caller::anonymous(), &key, "fp", |_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(StdDuration::from_millis(100)).await;
                    (response("once"), Disposition::Keep)
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().response, response("once"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
