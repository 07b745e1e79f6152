//! The DynamoDB adapter: the serverless implementation of the `Store`
//! port, on one table (`table` defines it, `item` names its items, `store`
//! implements the port, `retry` decides what may be sent again).
//!
//! This module knows the AWS SDK and nothing of HTTP or MCP. It is compiled
//! only with the `aws` feature.

pub mod item;
pub mod retry;
pub mod store;
pub mod table;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_smithy_http_client::tls;

pub use store::DynamoStore;
pub use table::{create_table, CreateOptions};

use crate::domain::{Error, Result};
use crate::settings::DynamoSettings;

/// The region used with an endpoint override when none is configured: a
/// local emulator accepts any.
const LOCAL_REGION: &str = "us-east-1";

/// Builds a DynamoDB client from settings.
///
/// HTTPS is rustls on ring (no system OpenSSL, no C crypto to cross-build).
/// The SDK's retries are off because the store retries itself, knowing
/// which calls are safe to resend (see `retry`). Timeouts are short: a
/// DynamoDB call takes milliseconds, and a stuck connection should fail
/// over to a new one well inside the request timeout.
///
/// Credentials come from the SDK's default chain (on Lambda, the
/// function's role through environment variables). With an endpoint
/// override, which means a local stand-in such as `moto_server`, and no
/// `AWS_ACCESS_KEY_ID` in the environment, fixed dummy credentials are used
/// instead, since emulators accept any.
pub async fn client(settings: &DynamoSettings) -> Result<aws_sdk_dynamodb::Client> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    let region_in_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .any(|v| std::env::var_os(v).is_some_and(|r| !r.is_empty()));
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    } else if settings.endpoint_url.is_some() && !region_in_env {
        loader = loader.region(Region::from_static(LOCAL_REGION));
    }
    // Otherwise the loader's own default chain finds the region; it must be
    // that chain and not one built here, which would lack the HTTP client
    // its instance-metadata step needs.
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "agentgate-local-endpoint",
            ));
        }
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(Error::invalid(
            "setting `dynamodb.region`: no AWS region is configured (set dynamodb.region or \
             AWS_REGION)",
        ));
    }
    Ok(aws_sdk_dynamodb::Client::new(&config))
}

/// Connects a [`DynamoStore`] on the configured table.
pub async fn connect(settings: &DynamoSettings) -> Result<DynamoStore> {
    Ok(DynamoStore::new(client(settings).await?, settings.table.clone()))
}
