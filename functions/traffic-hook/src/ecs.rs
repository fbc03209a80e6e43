//! ECS native deployments (deployment controller `ECS`: blue/green, canary, linear): ECS invokes
//! the hook at a lifecycle stage and reads its return value — there is no report call, and an
//! answer ECS cannot read, or a function error, rolls the deployment back. So every payload that
//! looks like an ECS hook gets an answer, `FAILED` with the reason when anything is wrong.
//!
//! At the test traffic stages the service's HTTP and Lambda checks run against `url` (the test
//! listener), from the production shift on against `production-url` (default `url`); alarm
//! checks run at every stage. Before the new revision takes traffic (`RECONCILE_SERVICE`,
//! `PRE_SCALE_UP`, `POST_SCALE_UP`) only the alarms are checked. A rollback's own invocation
//! (traffic going back to the old revision) is never held.
//!
//! A `soak` keeps watching the alarms after the production shift: at
//! `POST_PRODUCTION_TRAFFIC_SHIFT`, once the checks pass, the answer is `IN_PROGRESS` with
//! `callBackDelay` and the soak's end in `hookDetails`; ECS invokes the hook again with it, each
//! invocation one look at the alarms (so none runs past its own deadline), until the end
//! (`SUCCEEDED`) or an alarm (`FAILED`).

use chrono::{DateTime, Utc};
use safeship::event::EcsStage;
use safeship::event::{EcsAnswer, EcsLifecycleHook, Listener};
use safeship::guard::{CheckResult, Guard, GuardEvent};
use safeship::policy::{Soak, TrafficHookPolicy};
use serde_json::{Map, Value};

use crate::deployment::Target;
use crate::verdict::{self, HookStatus, Verdict};
use crate::{checks, Deadlines, Deps, FUNCTION};

/// ECS's answer for a verdict.
fn answer_of(verdict: &Verdict) -> EcsAnswer {
    match verdict.status {
        HookStatus::Succeeded => EcsAnswer::succeeded(verdict.reason.clone()),
        HookStatus::Failed => EcsAnswer::failed(verdict.reason.clone()),
    }
}

/// One ECS hook invocation, answered: the checks of its stage, or `FAILED` naming what is wrong.
pub async fn answer(deps: &Deps, payload: &Value, deadlines: Deadlines) -> EcsAnswer {
    let hook = match safeship::event::ecs_hook_of(payload) {
        Ok(hook) => hook,
        Err(problem) => return failed(problem),
    };
    let (verdict, results) = match decide(deps, &hook, deadlines.checks).await {
        Decided::Final(verdict, results) => (verdict, results),
        // A look of the soak: said in the log, not news until it ends.
        Decided::Soaking(answer) => {
            tracing::info!(service = %hook.service_key(), reason = %answer.reason, "ECS hook answers IN_PROGRESS");
            return answer;
        }
    };
    match verdict.status {
        HookStatus::Succeeded => {
            tracing::info!(service = %hook.service_key(), stage = hook.stage.name(), reason = %verdict.reason, "ECS hook answers SUCCEEDED")
        }
        HookStatus::Failed => {
            tracing::warn!(service = %hook.service_key(), stage = hook.stage.name(), reason = %verdict.reason, "ECS hook answers FAILED")
        }
    }
    // The guard event is news; the answer is the hook's contract. One that cannot be published
    // by the report deadline is logged, and the answer stands.
    let published =
        tokio::time::timeout_at(deadlines.report, publish(deps, &hook, &verdict, &results))
            .await
            .unwrap_or_else(|_| Err("PutEvents did not answer by the hook's deadline".to_owned()));
    if let Err(e) = published {
        tracing::error!(service = %hook.service_key(), error = %e, "could not publish the ECS hook's guard event; the answer stands");
    }
    answer_of(&verdict)
}

fn failed(reason: String) -> EcsAnswer {
    tracing::warn!(%reason, "ECS hook answers FAILED");
    answer_of(&Verdict::failed(safeship::telemetry::scrub(&reason)))
}

/// What a hook invocation comes to.
enum Decided {
    /// The stage's verdict, and the checks' results.
    Final(Verdict, Vec<CheckResult>),
    /// The soak goes on: the `IN_PROGRESS` answer.
    Soaking(EcsAnswer),
}

/// The `hookDetails` key holding the soak's end (RFC 3339), passed back by ECS.
pub const SOAK_UNTIL: &str = "safeship-soak-until";

/// The verdict for the hook's stage, or the soak's next look.
async fn decide(deps: &Deps, hook: &EcsLifecycleHook, deadline: tokio::time::Instant) -> Decided {
    let policy = &deps.common.policy;
    let Some(service) = policy.ecs_service(&hook.cluster, &hook.service) else {
        let known: Vec<&str> = policy.ecs_services.keys().map(String::as_str).collect();
        return Decided::Final(
            Verdict::failed(format!(
                "ECS service {} is not in the policy's ecs-services (known: {})",
                hook.service_key(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )),
            vec![],
        );
    };
    if let Some(reason) = hook.passed_as_rollback() {
        return Decided::Final(
            Verdict {
                status: HookStatus::Succeeded,
                reason,
            },
            vec![],
        );
    }
    if let Some(reason) =
        safeship::revert::ecs_revert_within(&deps.common.idempotency, &deps.ecs, hook, deadline)
            .await
    {
        return Decided::Final(
            Verdict {
                status: HookStatus::Succeeded,
                reason: format!("{}: {reason}", hook.stage.name()),
            },
            vec![],
        );
    }
    let target = target_of(hook);
    let full = service.policy.traffic_hook.as_ref();
    if let Some(verdict) = verdict::without_checks(&target, full) {
        return Decided::Final(verdict, vec![]);
    }
    let full = full.expect("without_checks returns None only with checks");
    let soak = full
        .soak
        .filter(|_| hook.stage == EcsStage::PostProductionTrafficShift);
    if let (Some(soak), Some(until)) = (soak, hook.hook_details.get(SOAK_UNTIL)) {
        return soak_look(deps, hook, full, soak, until, &target, deadline).await;
    }
    let stage_checks = for_stage(full, hook.stage.listener());
    if stage_checks.check_count() == 0 {
        return Decided::Final(
            Verdict {
                status: HookStatus::Succeeded,
                reason: format!(
                    "{}: no traffic reaches the new revision yet, and no alarm checks: nothing to check",
                    hook.stage.name()
                ),
            },
            vec![],
        );
    }
    let run = checks::run_until(checks::plan(&stage_checks, &target, &deps.checks), deadline).await;
    let mut verdict = verdict::from_run(&run);
    verdict.reason = format!("{}: {}", hook.stage.name(), verdict.reason);
    match soak {
        // The checks passed after the production shift: the soak begins.
        Some(soak) if verdict.status == HookStatus::Succeeded => {
            let until = Utc::now() + chrono::Duration::minutes(i64::from(soak.minutes));
            Decided::Soaking(soaking(
                soak,
                until,
                format!(
                    "{}; soaking {} minutes: watching the alarms until {}",
                    verdict.reason,
                    soak.minutes,
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ))
        }
        _ => Decided::Final(verdict, run.results),
    }
}

/// One look of the soak: the alarm checks, then the end, a failure, or the next look.
async fn soak_look(
    deps: &Deps,
    hook: &EcsLifecycleHook,
    policy: &TrafficHookPolicy,
    soak: Soak,
    until: &Value,
    target: &Target,
    deadline: tokio::time::Instant,
) -> Decided {
    let Some(until) = until
        .as_str()
        .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
        .map(|u| u.with_timezone(&Utc))
    else {
        return Decided::Final(
            Verdict::failed(format!(
                "{}: hookDetails.{SOAK_UNTIL} is not a time (RFC 3339), found {until}",
                hook.stage.name()
            )),
            vec![],
        );
    };
    let alarms = for_stage(policy, None);
    let run = checks::run_until(checks::plan(&alarms, target, &deps.checks), deadline).await;
    let verdict = verdict::from_run(&run);
    if verdict.status == HookStatus::Failed {
        return Decided::Final(
            Verdict::failed(format!(
                "{}: the soak ended {} before its end: {}",
                hook.stage.name(),
                time_left(until),
                verdict.reason
            )),
            run.results,
        );
    }
    if Utc::now() >= until {
        return Decided::Final(
            Verdict {
                status: HookStatus::Succeeded,
                reason: format!(
                    "{}: soaked {} minutes: the alarms stayed OK",
                    hook.stage.name(),
                    soak.minutes
                ),
            },
            run.results,
        );
    }
    Decided::Soaking(soaking(
        soak,
        until,
        format!(
            "{}: soaking, the alarms OK; {} to go",
            hook.stage.name(),
            time_left(until)
        ),
    ))
}

/// The `IN_PROGRESS` answer of a soak that ends at `until`: the next look after `every-seconds`,
/// or at the end if that is sooner.
fn soaking(soak: Soak, until: DateTime<Utc>, reason: String) -> EcsAnswer {
    let left = (until - Utc::now()).num_seconds().max(1);
    let delay = u32::try_from(left)
        .unwrap_or(u32::MAX)
        .min(soak.every_seconds);
    let mut hook_details = Map::new();
    hook_details.insert(
        SOAK_UNTIL.into(),
        Value::String(until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    EcsAnswer::in_progress(reason, delay, hook_details)
}

fn time_left(until: DateTime<Utc>) -> String {
    let seconds = (until - Utc::now()).num_seconds().max(0);
    format!("{}m{:02}s", seconds / 60, seconds % 60)
}

/// What the checks know of an ECS deployment: the service deployment as the deployment, the
/// cluster and service as the application and group, the target revision's id as its version.
fn target_of(hook: &EcsLifecycleHook) -> Target {
    Target {
        deployment_id: hook.service_deployment_arn.clone(),
        application: hook.cluster.clone(),
        deployment_group: hook.service.clone(),
        compute_platform: Some("ECS".into()),
        target_version: hook
            .target_revision_arn
            .rsplit('/')
            .next()
            .map(str::to_owned),
        lambda_function: None,
        description: None,
    }
}

/// The checks that apply at a stage whose traffic goes through `listener`: all of them, the
/// HTTP checks pointed at that listener's URL; with no listener (no traffic reaches the new
/// revision yet), the alarms only.
#[must_use]
pub fn for_stage(policy: &TrafficHookPolicy, listener: Option<Listener>) -> TrafficHookPolicy {
    let mut at_stage = policy.clone();
    match listener {
        None => {
            at_stage.http_checks.clear();
            at_stage.lambda_checks.clear();
        }
        Some(Listener::Test) => {}
        Some(Listener::Production) => {
            for check in &mut at_stage.http_checks {
                if let Some(production) = check.production_url.clone() {
                    check.url = production;
                }
            }
        }
    }
    at_stage
}

async fn publish(
    deps: &Deps,
    hook: &EcsLifecycleHook,
    verdict: &Verdict,
    results: &[CheckResult],
) -> Result<(), String> {
    let outcome = crate::hook_outcome(Some(hook.stage.name().to_owned()), verdict, results);
    // Keyed by the execution and the traffic it saw: a canary's steps are each news, a repeat
    // of one step is the same event (the notifier keys on the id).
    let weights: Vec<String> = hook
        .production_traffic_weights
        .iter()
        .chain(&hook.test_traffic_weights)
        .map(|(arn, w)| format!("{}={w}", arn.rsplit('/').next().unwrap_or(arn)))
        .collect();
    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: format!(
            "{FUNCTION}:ecs:{}:{}:{}",
            hook.execution_id,
            hook.stage.name(),
            weights.join(",")
        ),
        time: Utc::now(),
        guard: Guard::TrafficHook,
        application: Some(hook.cluster.clone()),
        deployment_group: Some(hook.service.clone()),
        deployment_id: Some(hook.service_deployment_arn.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::policy::{AlarmCheck, HttpCheck};

    fn policy() -> TrafficHookPolicy {
        let check: HttpCheck = serde_json::from_value(serde_json::json!(
            {"name": "health", "url": "http://test/health", "production-url": "http://prod/health"}
        ))
        .unwrap();
        let alarms: AlarmCheck =
            serde_json::from_value(serde_json::json!({"alarms": ["checkout-5xx"]})).unwrap();
        TrafficHookPolicy {
            allow_unchecked: false,
            http_checks: vec![check],
            lambda_checks: vec![],
            alarm_checks: Some(alarms),
            soak: None,
        }
    }

    #[test]
    fn each_stage_checks_what_its_traffic_goes_through() {
        let p = policy();
        let test = for_stage(&p, Some(Listener::Test));
        assert_eq!(test.http_checks[0].url, "http://test/health");
        let production = for_stage(&p, Some(Listener::Production));
        assert_eq!(production.http_checks[0].url, "http://prod/health");
        let before_traffic = for_stage(&p, None);
        assert!(before_traffic.http_checks.is_empty());
        assert!(before_traffic.alarm_checks.is_some());
        // Without a production URL the one URL serves both.
        let mut one = p.clone();
        one.http_checks[0].production_url = None;
        assert_eq!(
            for_stage(&one, Some(Listener::Production)).http_checks[0].url,
            "http://test/health"
        );
    }

    #[test]
    fn the_answer_is_what_ecs_reads() {
        let answer = answer_of(&Verdict::failed("health: answered 500"));
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"hookStatus": "FAILED", "reason": "health: answered 500"})
        );
    }
}
