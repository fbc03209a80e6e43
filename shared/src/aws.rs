//! One AWS configuration per cold start, shared by every client a function builds.
//!
//! Endpoints come only from the SDK's own settings (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), so the code that runs against moto locally is the code that
//! runs in production.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Env;
use crate::error::Result;
use crate::tls::TlsRoots;

/// Attempts per call, first one included: throttling and 5xx are retried with jittered backoff.
pub const MAX_ATTEMPTS: u32 = 4;

/// The SDK configuration a function's cold start builds; its HTTPS client trusts the roots
/// `SAFESHIP_TLS_ROOTS` chooses (see [`crate::tls`]).
pub async fn load_sdk_config(env: &Env) -> Result<SdkConfig> {
    let loader = sdk_config_loader();
    Ok(match TlsRoots::from_env(env)? {
        TlsRoots::Bundled => loader.http_client(crate::tls::aws_https_client()),
        TlsRoots::System => loader,
    }
    .load()
    .await)
}

/// The loader with safeship's retry and timeout settings; region, credentials and endpoints
/// come from the environment unless the caller (a test, the CLI) sets them on the loader.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(2)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
}
