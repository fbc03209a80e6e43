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

use chrono::Utc;
use safeship::event::{normalise, EcsLifecycleHook, Inbound, Listener};
use safeship::guard::{CheckResult, Guard, GuardEvent, Outcome};
use safeship::policy::TrafficHookPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::deployment::Target;
use crate::verdict::{self, HookStatus, Verdict};
use crate::{checks, Deadlines, Deps, FUNCTION};

/// What ECS reads back: `hookStatus`, and `reason` (ECS's troubleshooting guide shows it beside
/// the status). `callBackDelay` and `hookDetails` go with `IN_PROGRESS` only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsAnswer {
    #[serde(rename = "hookStatus")]
    pub hook_status: EcsHookStatus,
    pub reason: String,
    /// Seconds until ECS invokes the hook again (with `IN_PROGRESS`).
    #[serde(
        rename = "callBackDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub call_back_delay: Option<u32>,
    /// What ECS passes back on the next invocation (with `IN_PROGRESS`).
    #[serde(rename = "hookDetails", default, skip_serializing_if = "Map::is_empty")]
    pub hook_details: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EcsHookStatus {
    Succeeded,
    Failed,
    InProgress,
}

impl EcsAnswer {
    fn of(verdict: &Verdict) -> EcsAnswer {
        EcsAnswer {
            hook_status: match verdict.status {
                HookStatus::Succeeded => EcsHookStatus::Succeeded,
                HookStatus::Failed => EcsHookStatus::Failed,
            },
            reason: verdict.reason.clone(),
            call_back_delay: None,
            hook_details: Map::new(),
        }
    }
}

/// Whether a payload is ECS's (its envelope's own keys): it is then answered, never an error.
#[must_use]
pub fn is_ecs_hook(payload: &Value) -> bool {
    payload
        .as_object()
        .is_some_and(|o| o.contains_key("executionDetails") || o.contains_key("lifecycleStage"))
}

/// One ECS hook invocation, answered: the checks of its stage, or `FAILED` naming what is wrong.
pub async fn answer(deps: &Deps, payload: &Value, deadlines: Deadlines) -> EcsAnswer {
    let hook = match normalise(payload).map(|n| n.event) {
        Ok(Inbound::EcsLifecycleHook(hook)) => hook,
        Ok(other) => {
            return failed(format!(
                "expected an ECS lifecycle hook event, got a {} event",
                other.kind()
            ))
        }
        Err(e) => return failed(format!("the hook's payload cannot be read: {e}")),
    };
    let (verdict, results) = decide(deps, &hook, deadlines.checks).await;
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
    EcsAnswer::of(&verdict)
}

fn failed(reason: String) -> EcsAnswer {
    tracing::warn!(%reason, "ECS hook answers FAILED");
    EcsAnswer::of(&Verdict::failed(safeship::telemetry::scrub(&reason)))
}

/// The verdict for the hook's stage, and the checks' results.
async fn decide(
    deps: &Deps,
    hook: &EcsLifecycleHook,
    deadline: tokio::time::Instant,
) -> (Verdict, Vec<CheckResult>) {
    let policy = &deps.common.policy;
    let Some(service) = policy.ecs_service(&hook.cluster, &hook.service) else {
        let known: Vec<&String> = policy.ecs_services.keys().collect();
        return (
            Verdict::failed(format!(
                "ECS service {} is not in the policy's ecs-services (known: {})",
                hook.service_key(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
            vec![],
        );
    };
    if hook.is_rollback() {
        return (
            Verdict {
                status: HookStatus::Succeeded,
                reason: format!(
                    "{}: traffic is going back to the old revision (a rollback), which is never held",
                    hook.stage.name()
                ),
            },
            vec![],
        );
    }
    let target = target_of(hook);
    let full = service.policy.traffic_hook.as_ref();
    if let Some(verdict) = verdict::without_checks(&target, full) {
        return (verdict, vec![]);
    }
    let stage_checks = for_stage(full.expect("checked above"), hook.stage.listener());
    if stage_checks.check_count() == 0 {
        return (
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
    (verdict, run.results)
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
    let lifecycle_event = Some(hook.stage.name().to_owned());
    let checks = results.to_vec();
    let outcome = match verdict.status {
        HookStatus::Succeeded => Outcome::HookPassed {
            lifecycle_event,
            checks,
        },
        HookStatus::Failed => Outcome::HookFailed {
            lifecycle_event,
            reason: verdict.reason.clone(),
            checks,
        },
    };
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
        let answer = EcsAnswer::of(&Verdict::failed("health: answered 500"));
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"hookStatus": "FAILED", "reason": "health: answered 500"})
        );
    }
}
