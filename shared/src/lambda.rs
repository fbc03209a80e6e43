//! What every function's cold start builds: config, one SDK configuration, the policy, the
//! idempotency store and the guard-event publisher — once, outside the handler.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::config::{CommonConfig, Env};
use crate::error::Result;
use crate::event::{normalise, EventError, Inbound, Normalised};
use crate::guard::GuardPublisher;
use crate::idempotency::IdempotencyStore;
use crate::policy::Policy;

#[derive(Debug, Clone)]
pub struct Common {
    pub config: CommonConfig,
    pub sdk: SdkConfig,
    pub policy: Arc<Policy>,
    pub idempotency: IdempotencyStore,
    pub guard: GuardPublisher,
}

impl Common {
    /// Reads and validates everything a cold start needs; any problem stops the start with a
    /// message naming the variable, the policy field, or the AWS call that failed.
    pub async fn load(env: &Env) -> Result<Common> {
        let config = CommonConfig::from_env(env)?;
        let sdk = crate::aws::load_sdk_config(env).await?;
        let policy = Policy::load(&config.policy_source, &sdk).await?;
        tracing::info!(
            policy = %config.policy_source.describe(),
            groups = policy.groups().count(),
            "policy loaded"
        );
        Ok(Common {
            idempotency: IdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                &config.idempotency_table,
            ),
            guard: GuardPublisher::new(aws_sdk_eventbridge::Client::new(&sdk), &config.event_bus),
            policy: Arc::new(policy),
            config,
            sdk,
        })
    }
}

/// Normalises the payload and keeps it only if `accepts` says this function handles its kind.
pub fn accept(
    function: &'static str,
    payload: &serde_json::Value,
    accepts: impl Fn(&Inbound) -> bool,
) -> std::result::Result<Normalised, EventError> {
    let normalised = normalise(payload)?;
    if accepts(&normalised.event) {
        Ok(normalised)
    } else {
        Err(EventError::NotHandled {
            function,
            kind: normalised.event.kind(),
        })
    }
}

/// The error Lambda reports for a failed invocation: typed by function, with the full message
/// (which already names what was attempted on which resource).
pub fn diagnostic(function: &str, error: &dyn std::error::Error) -> lambda_runtime::Diagnostic {
    tracing::error!(error = %error, "invocation failed");
    lambda_runtime::Diagnostic {
        error_type: format!("safeship.{function}"),
        error_message: error.to_string(),
    }
}
