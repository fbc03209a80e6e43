//! One AWS configuration per cold start, shared by every client a function builds.
//!
//! Endpoints come only from the SDK's own settings (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), so the code that runs against moto locally is the code that
//! runs in production.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::env::Env;

pub mod codedeploy;
pub mod in_flight;
use crate::error::Result;
use crate::tls::TlsRoots;

/// Attempts per call, first one included: throttling and 5xx are retried with jittered backoff.
pub const MAX_ATTEMPTS: u32 = 4;

/// The SDK configuration a function's cold start builds; its HTTPS client trusts the roots
/// `SAFESHIP_TLS_ROOTS` chooses (see [`crate::tls`]).
///
/// In Lambda the execution role's credentials and the region are in the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`): taken from
/// there directly, the default chains (profile files, web identity with its STS client, IMDS) are
/// not built at all. Without them, the default chains apply.
pub async fn load_sdk_config(env: &Env) -> Result<SdkConfig> {
    let mut loader = sdk_config_loader();
    if let Some(region) = env.optional("AWS_REGION") {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let (Some(key), Some(secret)) = (
        env.optional("AWS_ACCESS_KEY_ID"),
        env.optional("AWS_SECRET_ACCESS_KEY"),
    ) {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            key,
            secret,
            env.optional("AWS_SESSION_TOKEN").map(str::to_owned),
            None,
            "environment",
        ));
    }
    Ok(loader
        .http_client(crate::tls::aws_https_client(TlsRoots::from_env(env)?))
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

/// An SDK timestamp as the rest of safeship holds time.
#[must_use]
pub fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<crate::model::DateTimeUtc> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
