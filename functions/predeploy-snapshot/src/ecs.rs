//! The snapshot gate for ECS native deployments: wired to a service's `PRE_SCALE_UP` lifecycle
//! hook, it snapshots the service's database before the new revision starts and answers ECS by
//! return value. While the snapshot is being made the answer is `IN_PROGRESS` (ECS invokes the
//! hook again after `callBackDelay`), carrying the gate's first start in `hookDetails` so the
//! whole wait stays within `SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS`; no continuation is needed.
//! The snapshot's name comes from the service deployment, so every invocation of the gate finds
//! the one snapshot; naming, tags, retention and the quota warning are the CodeDeploy hook's.

use chrono::{DateTime, Utc};
use safeship::event::{EcsAnswer, EcsLifecycleHook};
use safeship::policy::SnapshotFailureMode;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::events::Announcements;
use crate::hook::hook_wait_deadline;
use crate::job::{take, Job};
use crate::{Deps, SnapshotStatus};

/// The `hookDetails` key holding when the gate first ran (RFC 3339), passed back by ECS.
pub const GATE_STARTED: &str = "safeship-snapshot-started";

/// Seconds between looks while the snapshot is being made.
pub const CALL_BACK_SECONDS: u32 = 30;

/// One invocation of the gate, answered: `SUCCEEDED` once the snapshot is available,
/// `IN_PROGRESS` while it is made, `FAILED` naming the problem (or, under `on-failure: warn`,
/// `SUCCEEDED` saying so). Never an error: ECS rolls back on one, without a reason.
pub(crate) async fn gate(deps: &Deps, payload: &Value, deadline: Instant) -> EcsAnswer {
    let hook = match safeship::event::ecs_hook_of(payload) {
        Ok(hook) => hook,
        Err(problem) => return refuse(problem),
    };
    if let Some(reason) = hook.passed_as_rollback() {
        return EcsAnswer::succeeded(reason);
    }
    if let Some(reason) =
        safeship::revert::ecs_revert_within(&deps.common.idempotency, &deps.ecs, &hook, deadline)
            .await
    {
        tracing::info!(service = %hook.service_key(), %reason, "the snapshot gate passes a revert at once");
        return EcsAnswer::succeeded(format!("{}: no snapshot: {reason}", hook.stage.name()));
    }
    let Some(snapshot) = deps
        .common
        .policy
        .ecs_service(&hook.cluster, &hook.service)
        .and_then(|s| s.policy.snapshot.clone())
    else {
        return refuse(format!(
            "ECS service {} has no snapshot section in the policy's ecs-services",
            hook.service_key()
        ));
    };
    let started = match started_at(&hook) {
        Ok(started) => started,
        Err(problem) => return refuse(problem),
    };
    let job = Job {
        database: snapshot.database.clone(),
        reason: format!(
            "{} hook of ECS service deployment {} of {}",
            hook.stage.name(),
            deployment_of(&hook),
            hook.service_key()
        ),
        deployment_id: Some(deployment_of(&hook).to_owned()),
        request_id: None,
        application: Some(hook.service_key()),
        git_sha: None,
    };
    let (wait_until, budget_binds) =
        hook_wait_deadline(deadline, started, Utc::now(), deps.settings.hook_budget);
    let mut events = Announcements::default();
    let answer = match Box::pin(take(deps, &job, wait_until, &mut events)).await {
        Ok(answer) => answer,
        Err(e) => crate::job::answer(&job, None, SnapshotStatus::Failed, Some(e.to_string())),
    };
    let id = answer.snapshot_id.clone().unwrap_or_default();
    let reply = match answer.status {
        SnapshotStatus::Available => EcsAnswer::succeeded(format!(
            "{}: snapshot {id} of {} is available",
            hook.stage.name(),
            job.database
        )),
        SnapshotStatus::DryRun => {
            tracing::warn!(service = %hook.service_key(), "dry run: no snapshot taken; the gate answers SUCCEEDED so the deployment is not held");
            EcsAnswer::succeeded(format!(
                "{}: dry run, no snapshot taken: {}",
                hook.stage.name(),
                answer.detail.clone().unwrap_or_default()
            ))
        }
        SnapshotStatus::Creating if !budget_binds => {
            let mut details = Map::new();
            details.insert(
                GATE_STARTED.into(),
                Value::String(started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
            EcsAnswer::in_progress(
                format!("{}: snapshot {id} is still being made", hook.stage.name()),
                CALL_BACK_SECONDS,
                details,
            )
        }
        _ => {
            let problem = match answer.status {
                SnapshotStatus::Creating => format!(
                    "snapshot {id} still creating after {} s, the gate's whole budget",
                    deps.settings.hook_budget.as_secs()
                ),
                _ => answer
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("the snapshot is {:?}", answer.status)),
            };
            if answer.status == SnapshotStatus::Creating {
                let mut failed = answer.clone();
                failed.detail = Some(problem.clone());
                events.failed(&job, &failed);
            }
            if snapshot.on_failure == SnapshotFailureMode::Warn {
                tracing::warn!(service = %hook.service_key(), %problem, "snapshot failed; the policy says warn, so the deployment goes on");
                EcsAnswer::succeeded(format!(
                    "{}: no snapshot ({problem}); on-failure is warn, so the deployment goes on",
                    hook.stage.name()
                ))
            } else {
                EcsAnswer::failed(format!("{}: no snapshot: {problem}", hook.stage.name()))
            }
        }
    };
    // The answer is ECS's record; the guard events are news. One that cannot be published is
    // logged, never an error (an error would roll the deployment back).
    if let Err(e) = events.publish(deps, deadline + deps.settings.margin).await {
        tracing::error!(service = %hook.service_key(), error = %e, "could not publish the snapshot gate's guard events; the answer stands");
    }
    reply
}

fn refuse(reason: String) -> EcsAnswer {
    tracing::warn!(%reason, "the ECS snapshot gate answers FAILED");
    EcsAnswer::failed(safeship::telemetry::scrub(&reason))
}

/// The service deployment's own id: the last part of its ARN (`…/<cluster>/<service>/<id>`).
fn deployment_of(hook: &EcsLifecycleHook) -> &str {
    hook.service_deployment_arn
        .rsplit('/')
        .next()
        .unwrap_or(&hook.service_deployment_arn)
}

/// When the gate first ran for this hook: from the `hookDetails` its earlier answer left, else now.
fn started_at(hook: &EcsLifecycleHook) -> Result<DateTime<Utc>, String> {
    match hook.hook_details.get(GATE_STARTED) {
        None => Ok(Utc::now()),
        Some(raw) => raw
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| {
                format!(
                    "{}: hookDetails.{GATE_STARTED} is not a time (RFC 3339), found {raw}",
                    hook.stage.name()
                )
            }),
    }
}
