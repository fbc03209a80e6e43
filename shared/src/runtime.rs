//! The one way a safeship function runs in Lambda: telemetry, the cold start (configuration,
//! clients and policy built once, outside the handler), the runtime loop, and what every
//! invocation shares: accepting the event kinds a function handles, its deadline, and the error
//! Lambda records for a failed invocation.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use crate::config::CommonConfig;
use crate::env::Env;
use crate::error::Result;
use crate::event::{normalise, Delivery, EventError, Inbound};
use crate::guard::GuardPublisher;
use crate::idempotency::{IdempotencyStore, Once};
use crate::policy::Policy;

/// What every function's cold start builds: configuration, one SDK configuration, the policy,
/// the idempotency store and the guard-event publisher.
#[derive(Debug, Clone)]
pub struct Common {
    /// The settings every guard rail reads.
    pub config: CommonConfig,
    /// The SDK configuration every client of this cold start is built from.
    pub sdk: SdkConfig,
    /// The validated policy.
    pub policy: Arc<Policy>,
    /// Once-only work, keyed under this function's name.
    pub idempotency: IdempotencyStore,
    /// Where guard events go.
    pub guard: GuardPublisher,
}

impl Common {
    /// Reads and validates everything a cold start of `function` needs; any problem stops the
    /// start with a message naming the variable, the policy field, or the AWS call that failed.
    pub async fn load(function: &'static str, env: &Env) -> Result<Common> {
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
                function,
            ),
            guard: GuardPublisher::new(aws_sdk_eventbridge::Client::new(&sdk), &config.event_bus),
            policy: Arc::new(policy),
            config,
            sdk,
        })
    }
}

/// An error a function returns from an invocation: besides its message (which says what was
/// attempted on which resource), a stable name per variant for Lambda's `errorType`.
pub trait Failure: std::error::Error {
    /// The variant's name, e.g. `Event`, `Aws`, `Report`; stable across releases, so alarms and
    /// log queries can match on it.
    fn kind(&self) -> &'static str;
}

impl Failure for crate::Error {
    fn kind(&self) -> &'static str {
        crate::Error::kind(self)
    }
}

/// The error Lambda records for a failed invocation: `errorType` `safeship.<function>.<kind>`,
/// `errorMessage` the whole message.
pub fn diagnostic(function: &str, error: &dyn Failure) -> Diagnostic {
    tracing::error!(error = %error, kind = error.kind(), "invocation failed");
    Diagnostic {
        error_type: format!("safeship.{function}.{}", error.kind()),
        error_message: error.to_string(),
    }
}

/// Runs `function` as a Lambda function: logging, then `from_env` once (a failure stops the cold
/// start with its message), then every event through `handler` with the dependencies built.
///
/// One thread: Lambda hands over one event at a time and gives a small function a fraction of a
/// vCPU, so worker threads would only add start-up and cross-thread wake-ups.
pub fn run<D, E, R>(
    function: &'static str,
    from_env: impl AsyncFnOnce(&Env) -> std::result::Result<D, E>,
    handler: impl AsyncFn(&D, LambdaEvent<Value>) -> std::result::Result<R, E>,
) -> std::result::Result<(), lambda_runtime::Error>
where
    E: Failure,
    R: Serialize,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The environment is read once, for the logs and the cold start alike.
        let env = Env::from_process();
        crate::telemetry::init(&env);
        let deps = from_env(&env).await.map_err(|e| {
            tracing::error!(error = %e, "cold start of {function} failed");
            format!("cold start of {function}: {e}")
        })?;
        let (deps, handler) = (&deps, &handler);
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: LambdaEvent<Value>| async move {
                // Claims taken while handling this event end with its deadline.
                let deadline = event.context.deadline;
                crate::idempotency::within_invocation(deadline, handler(deps, event))
                    .await
                    .map_err(|e| diagnostic(function, &e))
            },
        ))
        .await
    })
}

/// An event this function handles, with how it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted<T> {
    /// How the event reached the function.
    pub delivery: Delivery,
    /// The part of the event the function acts on.
    pub event: T,
}

/// Normalises the payload and keeps it if `pick` takes its kind; any other kind is
/// [`EventError::NotHandled`], before any side effect.
pub fn accept<T>(
    function: &'static str,
    payload: &Value,
    pick: impl FnOnce(Inbound) -> Option<T>,
) -> Result<Accepted<T>> {
    let normalised = normalise(payload)?;
    let kind = normalised.event.kind();
    match pick(normalised.event) {
        Some(event) => Ok(Accepted {
            delivery: normalised.delivery,
            event,
        }),
        None => Err(EventError::NotHandled { function, kind }.into()),
    }
}

pub use crate::model::LONGEST_RUN;

/// The instant by which an invocation's own work must be done: its deadline less `margin`, the
/// time kept back to report or hand over. A deadline of 0 means none was given (a direct call
/// from a terminal or a test): the invocation then has Lambda's longest run, 15 minutes. A
/// deadline already inside the margin leaves no time, not a panic.
#[must_use]
pub fn invocation_deadline(deadline_ms: u64, margin: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + time_left(deadline_ms, SystemTime::now()).saturating_sub(margin)
}

fn time_left(deadline_ms: u64, now: SystemTime) -> Duration {
    if deadline_ms == 0 {
        return LONGEST_RUN;
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// An invocation's answer that can be given again to a repeated delivery.
pub trait Answer: Sized {
    /// This answer, marked as given to a delivery that repeated one already handled.
    #[must_use]
    fn repeated(self) -> Self;
}

/// The answer for a once-only piece of work: what this delivery did, or (marked repeated) what
/// an earlier one recorded.
pub fn answer_once<T: Answer>(once: Once<T>) -> T {
    match once {
        Once::Ran(answer) => answer,
        Once::AlreadyDone(answer) => {
            tracing::info!("duplicate delivery: answering what an earlier delivery recorded");
            answer.repeated()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_deadline_rule() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(time_left(1_000_000 + 30_000, now), Duration::from_secs(30));
        // Past deadlines leave nothing; none given leaves Lambda's longest run.
        assert_eq!(time_left(999_000, now), Duration::ZERO);
        assert_eq!(time_left(0, now), LONGEST_RUN);
        let before = tokio::time::Instant::now();
        let far = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 30_000;
        let d = invocation_deadline(far, Duration::from_secs(5));
        let left = d - before;
        assert!(
            left > Duration::from_secs(24) && left < Duration::from_millis(25_100),
            "{left:?}"
        );
        assert!(
            invocation_deadline(far - 29_000, Duration::from_secs(5))
                <= tokio::time::Instant::now()
        );
    }

    #[test]
    fn accept_names_the_kind_it_does_not_handle() {
        let payload =
            serde_json::json!({"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "h"});
        let err = accept("alarm-rollback", &payload, |e| match e {
            Inbound::AlarmStateChange(a) => Some(a),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "alarm-rollback does not handle lifecycle-hook events"
        );
        let hook = accept("traffic-hook", &payload, |e| match e {
            Inbound::LifecycleHook(h) => Some(h),
            _ => None,
        })
        .unwrap();
        assert_eq!(hook.delivery, Delivery::Direct);
        assert_eq!(hook.event.deployment_id, "d-1");
    }

    #[test]
    fn diagnostics_are_typed_by_function_and_variant() {
        let d = diagnostic(
            "traffic-hook",
            &crate::Error::config("X", "is required but not set"),
        );
        assert_eq!(d.error_type, "safeship.traffic-hook.Config");
        assert!(d.error_message.contains("X"), "{}", d.error_message);
    }
}
