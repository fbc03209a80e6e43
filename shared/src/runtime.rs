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
use crate::members::{MemberAccess, MemberRoles};
use crate::policy::{Hub, Policy};

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
    /// The hub's own account and region, to tell its events from a member account's.
    pub hub: Hub,
    /// The configuration to act in a member account with (see [`crate::members`]).
    pub members: Arc<MemberAccess>,
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
        let hub = Hub {
            account: config.hub_account.clone(),
            region: sdk.region().map(ToString::to_string),
        };
        if policy.guards_members() {
            if hub.account.is_none() {
                return Err(crate::Error::config(
                    "SAFESHIP_HUB_ACCOUNT",
                    "the policy names member accounts: set the stack's own account id, to tell the hub's events from theirs",
                ));
            }
            if config.member_external_id.is_none() {
                return Err(crate::Error::config(
                    "SAFESHIP_MEMBER_EXTERNAL_ID",
                    "the policy names member accounts: set the external id their member roles require",
                ));
            }
        }
        let members = Arc::new(MemberAccess::new(
            sdk.clone(),
            MemberRoles {
                role_name: config.member_role_name.clone(),
                external_id: config.member_external_id.clone().unwrap_or_default(),
            },
            function,
        ));
        Ok(Common {
            hub,
            members,
            idempotency: IdempotencyStore::new(
                crate::aws_client!(aws_sdk_dynamodb, &sdk),
                &config.idempotency_table,
                function,
            ),
            guard: GuardPublisher::new(
                crate::aws_client!(aws_sdk_eventbridge, &sdk),
                &config.event_bus,
            ),
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
    run_with(function, ColdStartFailure::Exit, from_env, handler)
}

/// As [`run`], for a function CodeDeploy invokes as a lifecycle hook (traffic-hook,
/// predeploy-snapshot). A hook that never reports holds its deployment for an hour, so a failed
/// cold start (an invalid or unreadable policy, a missing variable, an unreachable SSM) does not
/// end the process: it logs the cause once and runs a degraded loop that reports `Failed` for
/// every lifecycle hook event it receives (with a CodeDeploy client built from the standard AWS
/// variables alone) and answers every event with an error naming the cause.
pub fn run_hook_function<D, E, R>(
    function: &'static str,
    from_env: impl AsyncFnOnce(&Env) -> std::result::Result<D, E>,
    handler: impl AsyncFn(&D, LambdaEvent<Value>) -> std::result::Result<R, E>,
) -> std::result::Result<(), lambda_runtime::Error>
where
    E: Failure,
    R: Serialize,
{
    run_with(function, ColdStartFailure::ReportHooks, from_env, handler)
}

/// What a failed cold start leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColdStartFailure {
    /// The process ends with the cause (Lambda records an init error and starts again).
    Exit,
    /// The degraded loop of [`run_hook_function`].
    ReportHooks,
}

fn run_with<D, E, R>(
    function: &'static str,
    on_failure: ColdStartFailure,
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
        let deps = match from_env(&env).await {
            Ok(deps) => deps,
            Err(e) => {
                tracing::error!(error = %e, kind = e.kind(), "cold start of {function} failed");
                return match on_failure {
                    ColdStartFailure::Exit => Err(format!("cold start of {function}: {e}").into()),
                    ColdStartFailure::ReportHooks => degraded(function, &env, &e).await,
                };
            }
        };
        let (deps, handler) = (&deps, &handler);
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: LambdaEvent<Value>| async move {
                // Claims taken while handling this event end with its deadline; the calls an
                // earlier invocation left cut off are not this one's.
                crate::aws::in_flight::forget_all();
                let deadline = event.context.deadline;
                crate::idempotency::within_invocation(deadline, handler(deps, event))
                    .await
                    .map_err(|e| diagnostic(function, &e))
            },
        ))
        .await
    })
}

/// The most a degraded hook function's report may take (less when the invocation has less).
const DEGRADED_REPORT_BUDGET: Duration = Duration::from_secs(10);

/// The runtime loop of a hook function whose cold start failed with `cause`: each lifecycle
/// hook event is reported `Failed`, and every event is answered with an error naming the cause
/// (`errorType` `safeship.<function>.<the cause's kind>`). The cause is logged once, by the
/// caller; each event logs only what became of its report.
async fn degraded(
    function: &'static str,
    env: &Env,
    cause: &dyn Failure,
) -> std::result::Result<(), lambda_runtime::Error> {
    let cause = DegradedCause {
        error_type: format!("safeship.{function}.{}", cause.kind()),
        message: crate::telemetry::redact(&format!("cold start of {function} failed: {cause}"))
            .into_owned(),
    };
    let codedeploy = degraded_codedeploy(function, env).await;
    tracing::warn!(
        "{function} runs degraded: every lifecycle hook event is reported Failed and every event answered with the cold start's error"
    );
    let (cause, codedeploy) = (&cause, &codedeploy);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Value>| async move {
            let message = answer_degraded(cause, codedeploy.as_ref(), &event).await;
            Err::<Value, Diagnostic>(Diagnostic {
                error_type: cause.error_type.clone(),
                error_message: message,
            })
        },
    ))
    .await
}

/// The degraded loop's CodeDeploy client, from the standard AWS variables (region, credentials,
/// endpoints). The one safeship variable the SDK configuration reads, `SAFESHIP_TLS_ROOTS`, may
/// be the cold start's very problem: then the bundled roots serve. An error says why there is
/// no client at all.
async fn degraded_codedeploy(
    function: &'static str,
    env: &Env,
) -> std::result::Result<aws_sdk_codedeploy::Client, String> {
    let sdk = match crate::aws::load_sdk_config(env).await {
        Ok(sdk) => Ok(sdk),
        Err(first) => {
            let plain = Env::from_pairs(
                std::env::vars().filter(|(name, _)| name != crate::tls::TLS_ROOTS_VAR),
            );
            crate::aws::load_sdk_config(&plain)
                .await
                .map_err(|e| format!("{first}; with the bundled roots: {e}"))
        }
    };
    match sdk {
        Ok(sdk) => Ok(crate::aws_client!(aws_sdk_codedeploy, &sdk)),
        Err(e) => {
            tracing::error!(error = %e, "{function}: no CodeDeploy client either; hook events cannot be reported");
            Err(e)
        }
    }
}

/// Why a degraded function cannot work: its error type and message (redacted).
struct DegradedCause {
    error_type: String,
    message: String,
}

/// Reports `Failed` for a lifecycle hook event; the answer's message: the cause, and what became
/// of the report.
async fn answer_degraded(
    cause: &DegradedCause,
    codedeploy: std::result::Result<&aws_sdk_codedeploy::Client, &String>,
    event: &LambdaEvent<Value>,
) -> String {
    let Some(hook) = lifecycle_hook(&event.payload) else {
        tracing::warn!(
            "an event that is not a lifecycle hook event, answered with the cold start's error"
        );
        return format!("{}; nothing was done", cause.message);
    };
    let (deployment, execution) = (&hook.deployment_id, &hook.lifecycle_event_hook_execution_id);
    let client = match codedeploy {
        Ok(client) => client,
        Err(problem) => {
            tracing::error!(deployment = %deployment, "a hook event could not be reported Failed: no CodeDeploy client");
            return format!(
                "{}; reporting Failed for deployment {deployment} was impossible too: no CodeDeploy client ({problem})",
                cause.message
            );
        }
    };
    let budget = degraded_report_budget(event.context.deadline, SystemTime::now());
    match crate::aws::codedeploy::report_hook_status_within(client, deployment, execution, false, budget).await {
        Ok(crate::aws::codedeploy::Reported::Now) => {
            tracing::warn!(deployment = %deployment, "hook reported Failed: the function could not start");
            format!(
                "{}; reported Failed to CodeDeploy for deployment {deployment} (hook execution {execution})",
                cause.message
            )
        }
        Ok(crate::aws::codedeploy::Reported::Before) => format!(
            "{}; CodeDeploy already held a status for deployment {deployment} (hook execution {execution}), not reported again",
            cause.message
        ),
        Err(e) => {
            tracing::error!(deployment = %deployment, error = %e, "a hook event could not be reported Failed");
            format!("{}; reporting Failed failed too: {e}", cause.message)
        }
    }
}

/// The hook the payload names: a CodeDeploy lifecycle hook event, or a hook function's own
/// continuation of one (`{"safeship-continuation": {"deployment-id",
/// "lifecycle-event-hook-execution-id", …}}`, ARCHITECTURE's wire contracts), whose hook is as
/// silent as the first if a failed cold start drops it.
fn lifecycle_hook(payload: &Value) -> Option<crate::event::LifecycleHook> {
    if let Some(state) = payload.get("safeship-continuation") {
        let field = |name: &str| state.get(name).and_then(Value::as_str).map(str::to_owned);
        return Some(crate::event::LifecycleHook {
            deployment_id: field("deployment-id")?,
            lifecycle_event_hook_execution_id: field("lifecycle-event-hook-execution-id")?,
        });
    }
    match normalise(payload).ok()?.event {
        Inbound::LifecycleHook(hook) => Some(hook),
        _ => None,
    }
}

/// A degraded report's budget: the invocation's time less a tenth for the answer, at most
/// [`DEGRADED_REPORT_BUDGET`].
fn degraded_report_budget(deadline_ms: u64, now: SystemTime) -> Duration {
    let left = time_left(deadline_ms, now);
    (left - left / 10).min(DEGRADED_REPORT_BUDGET)
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

/// The range of every function's margin variable (`SAFESHIP_*_MARGIN_MS`), in milliseconds: at
/// least a second, well above the half second before the deadline at which the idempotency
/// store stops once-only work, so a function's own end always comes first.
pub const MARGIN_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=60_000;

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
    fn a_degraded_report_fits_in_the_invocation_and_its_cap() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            degraded_report_budget(1_000_000 + 5_000, now),
            Duration::from_millis(4_500)
        );
        assert_eq!(
            degraded_report_budget(1_000_000 + 60_000, now),
            DEGRADED_REPORT_BUDGET
        );
        assert_eq!(degraded_report_budget(0, now), DEGRADED_REPORT_BUDGET);
        assert_eq!(degraded_report_budget(999_000, now), Duration::ZERO);
    }

    #[test]
    fn only_lifecycle_hook_events_are_reported_by_a_degraded_hook() {
        let hook = lifecycle_hook(
            &serde_json::json!({"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "h-1"}),
        )
        .unwrap();
        assert_eq!(
            (
                hook.deployment_id.as_str(),
                hook.lifecycle_event_hook_execution_id.as_str()
            ),
            ("d-1", "h-1")
        );
        assert_eq!(
            lifecycle_hook(&serde_json::json!({"DeploymentId": "d-1"})),
            None
        );
        assert_eq!(
            lifecycle_hook(&serde_json::json!({"database": "orders"})),
            None
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
    fn a_continuation_names_the_hook_it_continues() {
        let hook = lifecycle_hook(&serde_json::json!({"safeship-continuation": {
            "deployment-id": "d-1", "lifecycle-event-hook-execution-id": "h-1",
            "database": "db", "attempt": 2}}))
        .expect("a continuation's hook");
        assert_eq!(hook.deployment_id, "d-1");
        assert_eq!(hook.lifecycle_event_hook_execution_id, "h-1");
        assert!(lifecycle_hook(&serde_json::json!({"safeship-continuation": {}})).is_none());
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
