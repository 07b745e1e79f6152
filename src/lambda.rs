//! The AWS Lambda entry point, `agentgate lambda`: the same router as
//! `serve` (`http::app`, so the same routes, layers and MCP endpoints),
//! driven by the Lambda Runtime API through `lambda_http` instead of a
//! socket.
//!
//! The application is built once per instance, during the cold start, and
//! every invocation the instance serves reuses it: the store client, the
//! key ring and the rendered discovery documents. Nothing in the router
//! may keep per-client state between requests (MCP runs stateless), since
//! consecutive requests of one client can land on different instances.
//!
//! The outbox (order webhooks, confirmations) has no background worker
//! here: Lambda freezes an instance between invocations, so a polling loop
//! would run only while a request happens to be in flight, and a delivery
//! frozen halfway would sit until its lease ran out. Instead every write
//! request (anything but GET, HEAD and OPTIONS) runs one delivery pass
//! after its response is built and before it is returned, bounded by
//! [`DELIVERY_BUDGET`]. The change that queued a message is committed by
//! then, so the message it caused usually leaves in the same invocation.
//! A retry whose backoff has not run out is delivered by a later write
//! request; a pass cut short by the budget leaves its messages leased, and
//! they are due again after the lease (delivery is at least once, with the
//! same `event_id`). See `docs/deploy.md` for what this means for an idle
//! shop.
//!
//! This module knows `lambda_http` and nothing else of AWS. It is compiled
//! only with the `aws` feature.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use tower::ServiceExt;

use crate::bootstrap;
use crate::gateway::OutboxWorker;
use crate::http;
use crate::settings::{Settings, StoreKind};

/// The most a write request's response waits for the outbox pass after
/// it. The API Gateway gives up at 30 s and the request itself may have
/// used most of that, so the pass is kept short; what it does not finish
/// is retried.
pub const DELIVERY_BUDGET: Duration = Duration::from_secs(5);

/// Whether a request may have changed something that queued a delivery.
fn is_write(method: &axum::http::Method) -> bool {
    use axum::http::Method;
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// One bounded outbox pass; failures are logged, never the caller's.
async fn deliver_due(outbox: &OutboxWorker) {
    match tokio::time::timeout(DELIVERY_BUDGET, outbox.run_once()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "outbox pass failed; a later request retries"),
        Err(_) => tracing::warn!(
            budget_ms = DELIVERY_BUDGET.as_millis() as u64,
            "outbox pass cut short; its messages are due again after their lease"
        ),
    }
}

/// Variables the Lambda runtime sets; `lambda_runtime` panics when one is
/// missing, so they are checked first for a clear error instead.
const RUNTIME_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Refuses settings that work on one machine but break on Lambda.
fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    if settings.store != StoreKind::Dynamodb {
        anyhow::bail!(
            "`agentgate lambda` needs store = \"dynamodb\" (AGENTGATE_STORE): a Lambda \
             instance's disk does not outlive the instance, so a SQLite store would lose orders"
        );
    }
    if settings.signing_key.is_none() && settings.signing_key_file.is_none() {
        anyhow::bail!(
            "`agentgate lambda` needs a signing key (AGENTGATE_SIGNING_KEY or signing_key_file): \
             a key generated at cold start would differ between instances, and agents would see \
             signatures they cannot verify"
        );
    }
    Ok(())
}

fn check_runtime_environment() -> anyhow::Result<()> {
    let missing: Vec<&str> =
        RUNTIME_VARIABLES.into_iter().filter(|v| std::env::var_os(v).is_none()).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "not running inside AWS Lambda: {} not set (use `agentgate serve` outside Lambda)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Builds the application and serves Lambda invocations until the runtime
/// stops the instance.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    check_runtime_environment()?;
    check_settings(&settings)?;
    let app = bootstrap::build(settings).await?;
    let kid = app.keys.active_kid().to_owned();
    let router = http::app(app.state);
    let outbox = app.outbox;
    let handler = tower::service_fn(move |request: lambda_http::Request| {
        let (router, outbox) = (router.clone(), outbox.clone());
        async move {
            let write = is_write(request.method());
            let response = router.oneshot(request).await?;
            if write {
                deliver_due(&outbox).await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        kid = %kid,
        "agentgate lambda ready"
    );
    lambda_http::run(handler).await.map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{DynamoSettings, RawSettings};

    #[test]
    fn only_writes_run_an_outbox_pass() {
        use axum::http::Method;
        for (method, write) in [
            (Method::GET, false),
            (Method::HEAD, false),
            (Method::OPTIONS, false),
            (Method::POST, true),
            (Method::PUT, true),
            (Method::PATCH, true),
            (Method::DELETE, true),
        ] {
            assert_eq!(is_write(&method), write, "{method}");
        }
    }

    #[test]
    fn settings_that_break_on_lambda_are_refused() {
        let key = Some(secrecy::SecretString::from("pem text".to_owned()));
        let cases = [
            (StoreKind::Sqlite, key.clone(), Some("store")),
            (StoreKind::Dynamodb, None, Some("signing key")),
            (StoreKind::Dynamodb, key, None),
        ];
        for (store, signing_key, problem) in cases {
            let raw = RawSettings {
                store,
                signing_key,
                dynamodb: DynamoSettings::default(),
                ..RawSettings::default()
            };
            let settings = Settings::from_raw(raw).unwrap();
            match (check_settings(&settings), problem) {
                (Ok(()), None) => {}
                (Err(e), Some(word)) => assert!(e.to_string().contains(word), "{e}"),
                (got, want) => panic!("{store:?}: got {got:?}, wanted a problem with {want:?}"),
            }
        }
    }
}
