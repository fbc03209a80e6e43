//! The traffic hook: CodeDeploy invokes it at `BeforeAllowTraffic` / `AfterAllowTraffic` and waits
//! for `PutLifecycleEventHookExecutionStatus`. It looks the deployment up, runs the group's smoke
//! checks within its own deadline, and reports exactly once — whatever happens, because a silent
//! hook blocks a deployment for an hour.

use std::time::Duration;

use chrono::Utc;
use lambda_runtime::LambdaEvent;
use safeship::aws::codedeploy::Reported;
use safeship::env::Env;
use safeship::event::{EventError, Inbound, LifecycleHook};
use safeship::guard::{CheckResult, Guard, GuardEvent, Outcome};
use safeship::runtime::{accept, answer_once, invocation_deadline, Answer, Common, Failure};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod checks;
mod deployment;
pub mod ecs;
mod expect;
mod verdict;

pub use deployment::Target;
pub use verdict::{HookStatus, Verdict};

use checks::CheckClients;

pub const FUNCTION: &str = "traffic-hook";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    /// The one failure the hook cannot absorb: CodeDeploy did not take the status.
    #[error("reporting {status:?} for deployment {deployment_id} failed: {source}")]
    Report {
        status: HookStatus,
        deployment_id: String,
        source: safeship::Error,
    },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Report { .. } => "Report",
        }
    }
}

/// The hook's own settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// Time kept back from the Lambda deadline for reporting (with its retries).
    pub report_margin: Duration,
    /// Which lifecycle event this function is wired to (`BeforeAllowTraffic`, …): CodeDeploy's
    /// payload does not say, so the template sets it; it only labels guard events.
    pub lifecycle_event: Option<String>,
}

impl HookSettings {
    pub fn from_env(env: &Env) -> Result<Self, safeship::Error> {
        Ok(HookSettings {
            report_margin: env.millis_in(
                "SAFESHIP_HOOK_REPORT_MARGIN_MS",
                5_000,
                safeship::runtime::MARGIN_RANGE_MS,
            )?,
            lifecycle_event: env.optional("SAFESHIP_LIFECYCLE_EVENT").map(str::to_owned),
        })
    }
}

pub struct Deps {
    pub common: Common,
    pub codedeploy: aws_sdk_codedeploy::Client,
    /// For ECS hooks: the target revision's task definition, when the service has a revert note.
    pub ecs: aws_sdk_ecs::Client,
    pub checks: CheckClients,
    pub settings: HookSettings,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let settings = HookSettings::from_env(env)?;
        let common = Common::load(FUNCTION, env).await?;
        let checks = CheckClients {
            http: http_client(env)?,
            lambda: safeship::aws_client!(aws_sdk_lambda, &common.sdk),
            cloudwatch: safeship::aws_client!(aws_sdk_cloudwatch, &common.sdk),
        };
        Ok(Deps {
            codedeploy: safeship::aws_client!(aws_sdk_codedeploy, &common.sdk),
            ecs: safeship::aws_client!(aws_sdk_ecs, &common.sdk),
            common,
            checks,
            settings,
        })
    }
}

/// The smoke checks' HTTP client; checks bound their own time, so no client-wide timeout.
pub fn http_client(env: &Env) -> Result<reqwest::Client, Error> {
    Ok(safeship::tls::web_client(
        env,
        concat!("safeship-traffic-hook/", env!("CARGO_PKG_VERSION")),
    )?)
}

/// What the invocation returns (and what a redelivery of the same hook execution gets back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HookAnswer {
    pub deployment_id: String,
    pub lifecycle_event_hook_execution_id: String,
    pub status: AnswerStatus,
    pub reason: String,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// This delivery repeated one already handled: nothing was reported again.
    #[serde(default)]
    pub duplicate: bool,
    /// CodeDeploy already held a status for this hook execution (an earlier attempt reported,
    /// then died before recording it): that status stands, not necessarily this `status`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported_before: bool,
    /// The guard event (the notifications, the audit trail) could not be published: why. The
    /// report reached CodeDeploy all the same; the hook's record is the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_event_error: Option<String>,
}

/// What the hook did about this delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerStatus {
    /// `Succeeded` was reported to CodeDeploy.
    Succeeded,
    /// `Failed` was reported to CodeDeploy.
    Failed,
}

impl From<HookStatus> for AnswerStatus {
    fn from(status: HookStatus) -> Self {
        match status {
            HookStatus::Succeeded => AnswerStatus::Succeeded,
            HookStatus::Failed => AnswerStatus::Failed,
        }
    }
}

impl Answer for HookAnswer {
    fn repeated(mut self) -> Self {
        self.duplicate = true;
        self
    }
}

/// What the function returns: to CodeDeploy's hooks the hook's record (CodeDeploy reads the
/// report, not this), to ECS's the answer it acts on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HookReply {
    CodeDeploy(HookAnswer),
    Ecs(safeship::event::EcsAnswer),
}

/// One invocation: by ECS (answered, `FAILED` naming the problem when anything is wrong) or by
/// CodeDeploy (reported, see [`codedeploy_handler`]).
pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<HookReply, Error> {
    if safeship::event::is_ecs_hook(&event.payload) {
        let deadlines =
            Deadlines::for_invocation(event.context.deadline, deps.settings.report_margin);
        return Ok(HookReply::Ecs(
            ecs::answer(deps, &event.payload, deadlines).await,
        ));
    }
    codedeploy_handler(deps, event)
        .await
        .map(HookReply::CodeDeploy)
}

/// A CodeDeploy lifecycle hook invocation: checked and reported once.
pub async fn codedeploy_handler(
    deps: &Deps,
    event: LambdaEvent<Value>,
) -> Result<HookAnswer, Error> {
    // An empty object is what a hand-made test invocation sends: this function takes hooks only,
    // so name what a hook needs (the shared model calls it unrecognised, listing no keys).
    if event.payload.as_object().is_some_and(|o| o.is_empty()) {
        return Err(Error::Safeship(safeship::Error::Event(
            EventError::Malformed {
                shape: "CodeDeploy lifecycle hook event",
                field: "DeploymentId and LifecycleEventHookExecutionId".into(),
                problem: "missing (the payload is an empty object)".into(),
            },
        )));
    }
    let hook = accept(FUNCTION, &event.payload, |e| match e {
        Inbound::LifecycleHook(hook) => Some(hook),
        _ => None,
    })?
    .event;
    let deadlines = Deadlines::for_invocation(event.context.deadline, deps.settings.report_margin);
    run_hook(deps, &hook, deadlines).await
}

/// When each part of an invocation must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The checks: by the Lambda deadline less the report margin.
    pub checks: tokio::time::Instant,
    /// The report and the guard event: by the Lambda deadline less a fifth of the margin, the
    /// time kept to record the outcome and answer.
    pub report: tokio::time::Instant,
    /// The report's whole budget, all its attempts included: the margin.
    pub report_budget: Duration,
}

impl Deadlines {
    /// The deadlines of an invocation whose Lambda deadline is `deadline_ms` (0: none given).
    #[must_use]
    pub fn for_invocation(deadline_ms: u64, margin: Duration) -> Self {
        Deadlines {
            checks: invocation_deadline(deadline_ms, margin),
            report: invocation_deadline(deadline_ms, margin / 5),
            report_budget: margin,
        }
    }

    /// The checks by `checks`, then the margin for the rest (a direct call, a test).
    #[must_use]
    pub fn after_checks(checks: tokio::time::Instant, margin: Duration) -> Self {
        Deadlines {
            checks,
            report: checks + (margin - margin / 5),
            report_budget: margin,
        }
    }

    /// The time a report starting at `now` may take: the margin, and never past `report`.
    #[must_use]
    pub fn report_budget(&self, now: tokio::time::Instant) -> Duration {
        self.report_budget
            .min(self.report.saturating_duration_since(now))
    }
}

/// Handles one hook execution once: a redelivery returns the first answer without reporting.
pub async fn run_hook(
    deps: &Deps,
    hook: &LifecycleHook,
    deadlines: Deadlines,
) -> Result<HookAnswer, Error> {
    let key = &hook.lifecycle_event_hook_execution_id;
    // Set once CodeDeploy has taken this delivery's status: from then on nothing may report again.
    let reported = std::sync::OnceLock::new();
    // The claim may take until the checks' deadline, no longer: a store that does not answer
    // must leave the margin to report (found by the fault matrix: a hanging claim ate it).
    let once = deps
        .common
        .idempotency
        .once_claiming_by(key, Some(deadlines.checks), |_| async {
            let answer = check_and_report(deps, hook, deadlines).await?;
            let _ = reported.set(answer.clone());
            Ok(answer)
        })
        .await;
    match once {
        Ok(once) => Ok(answer_once(once)),
        // Another live invocation is handling this hook execution and will report: fail this
        // delivery so Lambda delivers it again later (by then it is done, or its claim free).
        // The same when this invocation's claim was taken over: the other one reports.
        Err(Error::Safeship(
            e @ (safeship::Error::InProgressElsewhere { .. } | safeship::Error::ClaimLost { .. }),
        )) => Err(Error::Safeship(e)),
        // The status was reported, then recording it failed: the reported outcome stands. A
        // second, different status is the other wrong answer. (The claim stays in progress
        // until its lease runs out, so a redelivery meanwhile does not run the checks again.)
        Err(Error::Safeship(store_error)) if reported.get().is_some() => {
            let answer = reported.into_inner().expect("checked above");
            tracing::error!(deployment = %hook.deployment_id, status = ?answer.status, error = %store_error,
                "the hook's status was reported, but recording it for redeliveries failed; the reported outcome stands");
            Ok(answer)
        }
        // The idempotency store failed before anything was reported (the claim itself). Silence
        // is the one wrong answer: fail closed. (CodeDeploy itself refuses a second status for a
        // completed hook execution.)
        Err(Error::Safeship(store_error)) => {
            let verdict = Verdict::failed(safeship::telemetry::scrub(&format!(
                "safeship could not record this hook execution, failing closed: {store_error}"
            )));
            let reported = report(&deps.codedeploy, hook, verdict.status, &deadlines).await?;
            tracing::error!(deployment = %hook.deployment_id, reason = %verdict.reason, "hook reported Failed");
            let mut answer = answer(hook, &verdict, vec![]);
            answer.reported_before = reported == Reported::Before;
            Ok(answer)
        }
        Err(other) => Err(other),
    }
}

async fn check_and_report(
    deps: &Deps,
    hook: &LifecycleHook,
    deadlines: Deadlines,
) -> Result<HookAnswer, Error> {
    let deadline = deadlines.checks;
    let looked_up = tokio::time::timeout_at(
        deadline,
        deployment::look_up(&deps.codedeploy, &hook.deployment_id),
    )
    .await;
    let (target, verdict, results) = match looked_up {
        Err(_) => (
            None,
            Verdict::failed("timed out looking up the deployment (codedeploy:GetDeployment)"),
            vec![],
        ),
        Ok(Err(e)) => (
            None,
            Verdict::failed(safeship::telemetry::scrub(&format!(
                "could not look up the deployment: {e}"
            ))),
            vec![],
        ),
        Ok(Ok(target)) => {
            // safeship's own revert is never held (see safeship::revert).
            if let Some(reason) = safeship::revert::passed_as_revert(target.description.as_deref())
            {
                let verdict = Verdict {
                    status: HookStatus::Succeeded,
                    reason,
                };
                (Some(target), verdict, vec![])
            } else {
                let (verdict, results) = decide(deps, &target, deadline).await;
                (Some(target), verdict, results)
            }
        }
    };
    let reported = report(&deps.codedeploy, hook, verdict.status, &deadlines).await?;
    match (reported, verdict.status) {
        (Reported::Before, status) => {
            tracing::warn!(deployment = %hook.deployment_id, reason = %verdict.reason, decided = ?status,
                "an earlier attempt had reported this hook execution; its status stands")
        }
        (Reported::Now, HookStatus::Succeeded) => {
            tracing::info!(deployment = %hook.deployment_id, reason = %verdict.reason, "hook reported Succeeded")
        }
        (Reported::Now, HookStatus::Failed) => {
            tracing::warn!(deployment = %hook.deployment_id, reason = %verdict.reason, "hook reported Failed")
        }
    }
    // The guard event is news, the report is the record: a guard event not published by the
    // report deadline is said in the answer (and logged), not a second report.
    let published = tokio::time::timeout_at(
        deadlines.report,
        publish(deps, hook, target.as_ref(), &verdict, &results),
    )
    .await
    .unwrap_or_else(|_| Err("PutEvents did not answer by the hook's deadline".to_owned()));
    let mut answer = answer(hook, &verdict, results);
    answer.reported_before = reported == Reported::Before;
    if let Err(e) = published {
        tracing::error!(deployment = %hook.deployment_id, error = %e,
            "could not publish the hook's guard event; the report reached CodeDeploy");
        answer.guard_event_error = Some(format!(
            "the guard event was not published (the report reached CodeDeploy): {e}"
        ));
    }
    Ok(answer)
}

/// Finds the group's checks and runs them; an unchecked group is decided without running.
/// The group's smoke checks now, as a hook would run them for `target`, outside CodeDeploy (the
/// operator's `safeship check`): nothing is reported and no guard event is published.
pub async fn check_now(
    deps: &Deps,
    target: &Target,
    deadline: tokio::time::Instant,
) -> (Verdict, Vec<CheckResult>) {
    decide(deps, target, deadline).await
}

async fn decide(
    deps: &Deps,
    target: &Target,
    deadline: tokio::time::Instant,
) -> (Verdict, Vec<CheckResult>) {
    let policy = deps
        .common
        .policy
        .group(&target.application, &target.deployment_group)
        .and_then(|g| g.policy.traffic_hook.as_ref());
    if let Some(verdict) = verdict::without_checks(target, policy) {
        if verdict.status == HookStatus::Succeeded {
            tracing::warn!(application = %target.application, group = %target.deployment_group,
                "UNCHECKED DEPLOYMENT: no smoke checks configured and allow-unchecked is set; reporting Succeeded");
        }
        return (verdict, vec![]);
    }
    let policy = policy.expect("without_checks returns None only for a group with checks");
    let run = checks::run_until(checks::plan(policy, target, &deps.checks), deadline).await;
    (verdict::from_run(&run), run.results)
}

fn answer(hook: &LifecycleHook, verdict: &Verdict, checks: Vec<CheckResult>) -> HookAnswer {
    HookAnswer {
        deployment_id: hook.deployment_id.clone(),
        lifecycle_event_hook_execution_id: hook.lifecycle_event_hook_execution_id.clone(),
        status: verdict.status.into(),
        reason: verdict.reason.clone(),
        checks,
        duplicate: false,
        reported_before: false,
        guard_event_error: None,
    }
}

/// The guard event is news for people, not part of the hook's contract: a failure to publish is
/// said in the answer and logged, never turned into a second report.
async fn publish(
    deps: &Deps,
    hook: &LifecycleHook,
    target: Option<&Target>,
    verdict: &Verdict,
    results: &[CheckResult],
) -> Result<(), String> {
    let outcome = hook_outcome(deps.settings.lifecycle_event.clone(), verdict, results);
    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: format!("{FUNCTION}:{}", hook.lifecycle_event_hook_execution_id),
        time: Utc::now(),
        guard: Guard::TrafficHook,
        application: target.map(|t| t.application.clone()),
        deployment_group: target.map(|t| t.deployment_group.clone()),
        deployment_id: Some(hook.deployment_id.clone()),
        dry_run: false,
        outcome,
        account: None,
        region: None,
    };
    deps.common
        .guard
        .publish(&event)
        .await
        .map_err(|e| e.to_string())
}

/// The guard event's outcome of a verdict at `lifecycle_event`, with every check's result.
pub(crate) fn hook_outcome(
    lifecycle_event: Option<String>,
    verdict: &Verdict,
    results: &[CheckResult],
) -> Outcome {
    let checks = results.to_vec();
    match verdict.status {
        HookStatus::Succeeded => Outcome::HookPassed {
            lifecycle_event,
            checks,
        },
        HookStatus::Failed => Outcome::HookFailed {
            lifecycle_event,
            reason: verdict.reason.clone(),
            checks,
        },
    }
}

/// Reports the hook's status within the report's budget (all attempts inside it); a failure to
/// deliver it is the one error the hook returns. `Reported::Before`: CodeDeploy already held a
/// status from an earlier attempt, which stands.
pub async fn report(
    codedeploy: &aws_sdk_codedeploy::Client,
    hook: &LifecycleHook,
    status: HookStatus,
    deadlines: &Deadlines,
) -> Result<Reported, Error> {
    let budget = deadlines.report_budget(tokio::time::Instant::now());
    safeship::aws::codedeploy::report_hook_status_within(
        codedeploy,
        &hook.deployment_id,
        &hook.lifecycle_event_hook_execution_id,
        status == HookStatus::Succeeded,
        budget,
    )
    .await
    .map_err(|source| {
        tracing::error!(error = %source, "the hook's status did not reach CodeDeploy");
        Error::Report {
            status,
            deployment_id: hook.deployment_id.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gets_the_margin_and_never_runs_past_its_deadline() {
        let now = tokio::time::Instant::now();
        let margin = Duration::from_secs(2);
        let d = Deadlines::after_checks(now + Duration::from_secs(6), margin);
        assert_eq!(d.report - d.checks, Duration::from_millis(1_600));
        // Checks done early: the whole margin, no more.
        assert_eq!(d.report_budget(now), margin);
        // Checks ended at their deadline: what is left to the report deadline.
        assert_eq!(d.report_budget(d.checks), Duration::from_millis(1_600));
        assert_eq!(d.report_budget(d.report + margin), Duration::ZERO);
        // A Lambda deadline 8 s away with a 2 s margin: checks by 6 s, report by 7.6 s.
        let far = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 8_000;
        let d = Deadlines::for_invocation(far, margin);
        assert!(d.report - d.checks > Duration::from_millis(1_500));
        assert!(d.report - d.checks < Duration::from_millis(1_610));
        assert_eq!(d.report_budget, margin);
    }

    #[test]
    fn settings_name_a_bad_margin() {
        let env = Env::from_pairs([("SAFESHIP_HOOK_REPORT_MARGIN_MS", "5")]);
        let err = HookSettings::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("SAFESHIP_HOOK_REPORT_MARGIN_MS"), "{err}");
        let ok = HookSettings::from_env(&Env::from_pairs([(
            "SAFESHIP_LIFECYCLE_EVENT",
            "AfterAllowTraffic",
        )]))
        .unwrap();
        assert_eq!(ok.report_margin, Duration::from_secs(5));
        assert_eq!(ok.lifecycle_event.as_deref(), Some("AfterAllowTraffic"));
    }
}
