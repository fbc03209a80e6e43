//! A CodeDeploy lifecycle hook: snapshot the group's database, wait (across continuations when
//! need be), then report the hook's status.

use std::time::Duration;

use chrono::{DateTime, Utc};
use safeship::event::LifecycleHook;
use safeship::policy::SnapshotFailureMode;
use safeship::runtime::answer_once;

use crate::continuation::{hand_over, Continuation};
use crate::events::publish_failed;
use crate::job::{take_and_wait, Job};
use crate::{Deps, Error, HookStatus, SnapshotAnswer, SnapshotStatus};

/// A lifecycle hook: snapshot the group's database, then report; once per hook execution.
pub(crate) async fn start_hook(
    deps: &Deps,
    hook: &LifecycleHook,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let key = format!("hook:{}", hook.lifecycle_event_hook_execution_id);
    let once = deps
        .common
        .idempotency
        .once(&key, || async {
            let info = match safeship::aws::codedeploy::get_deployment(
                &deps.codedeploy,
                &hook.deployment_id,
            )
            .await
            {
                Ok(info) => info,
                Err(e) => {
                    // The hook must report: without its group there is no snapshot, so Failed.
                    report(deps, hook, false).await?;
                    return Ok(SnapshotAnswer {
                        database: String::new(),
                        snapshot_id: None,
                        status: SnapshotStatus::Failed,
                        detail: Some(format!("could not look up the deployment: {e}")),
                        hook_status: Some(HookStatus::Failed),
                        pruned: vec![],
                        duplicate: false,
                    });
                }
            };
            let git_sha = info
                .revision
                .as_ref()
                .and_then(|r| r.git_hub_location.as_ref())
                .and_then(|g| g.commit_id.clone());
            let application = info.application_name.unwrap_or_default();
            let group = info.deployment_group_name.unwrap_or_default();
            let state = Continuation {
                deployment_id: hook.deployment_id.clone(),
                lifecycle_event_hook_execution_id: hook.lifecycle_event_hook_execution_id.clone(),
                application,
                deployment_group: group,
                database: String::new(),
                snapshot_id: String::new(),
                started_at: Utc::now(),
                attempt: 0,
                git_sha,
            };
            hook_step(deps, state, deadline).await
        })
        .await?;
    Ok(answer_once(once))
}

/// One invocation's share of a hook: take or find the snapshot, wait, then report — or hand the
/// wait to a continuation when this invocation's time is up.
pub(crate) async fn hook_step(
    deps: &Deps,
    mut state: Continuation,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let hook = LifecycleHook {
        deployment_id: state.deployment_id.clone(),
        lifecycle_event_hook_execution_id: state.lifecycle_event_hook_execution_id.clone(),
    };
    let group_name = format!("{}/{}", state.application, state.deployment_group);
    let Some(snapshot_policy) = deps
        .common
        .policy
        .group(&state.application, &state.deployment_group)
        .and_then(|g| g.policy.snapshot.clone())
    else {
        // A hook wired to a group the policy does not cover: fail closed, and say why.
        report(deps, &hook, false).await?;
        let e = Error::NoSnapshotPolicy { group: group_name };
        return Ok(SnapshotAnswer {
            database: String::new(),
            snapshot_id: None,
            status: SnapshotStatus::Failed,
            detail: Some(e.to_string()),
            hook_status: Some(HookStatus::Failed),
            pruned: vec![],
            duplicate: false,
        });
    };
    state.database = snapshot_policy.database.clone();
    let job = Job {
        database: state.database.clone(),
        reason: format!(
            "{} lifecycle hook of deployment {}",
            group_name, state.deployment_id
        ),
        deployment_id: Some(state.deployment_id.clone()),
        application: Some(state.application.clone()),
        git_sha: state.git_sha.clone(),
    };
    // This invocation waits until its own deadline or the end of the hook's whole budget,
    // whichever comes first, so the hook reports within CodeDeploy's limit.
    let (wait_until, budget_binds) = hook_wait_deadline(
        deadline,
        state.started_at,
        Utc::now(),
        deps.settings.hook_budget,
    );
    let mut answer = match take_and_wait(deps, &job, wait_until).await {
        Ok(answer) => answer,
        Err(e) => SnapshotAnswer {
            database: job.database.clone(),
            snapshot_id: None,
            status: SnapshotStatus::Failed,
            detail: Some(e.to_string()),
            hook_status: None,
            pruned: vec![],
            duplicate: false,
        },
    };
    let succeeded = match answer.status {
        SnapshotStatus::Available => true,
        SnapshotStatus::Creating if !budget_binds => {
            state.snapshot_id = answer.snapshot_id.clone().unwrap_or_default();
            state.attempt += 1;
            match hand_over(deps, &state).await {
                Ok(()) => {
                    answer.status = SnapshotStatus::Continued;
                    answer.detail = Some(format!(
                        "still creating; continuation {} waits on",
                        state.attempt
                    ));
                    return Ok(answer);
                }
                // Nobody would be left to report: the hook reports now.
                Err(e) => {
                    tracing::error!(error = %e, "could not hand the wait over to a continuation");
                    answer.detail = Some(e.to_string());
                    publish_failed(deps, &job, &answer).await;
                    false
                }
            }
        }
        SnapshotStatus::Creating => {
            answer.detail = Some(format!(
                "still creating after {} s, the hook's whole budget",
                deps.settings.hook_budget.as_secs()
            ));
            publish_failed(deps, &job, &answer).await;
            false
        }
        _ => false,
    };
    let report_success = succeeded || snapshot_policy.on_failure == SnapshotFailureMode::Warn;
    if !succeeded && report_success {
        tracing::warn!(group = %group_name, detail = ?answer.detail,
            "snapshot failed; the policy says warn, so the deployment goes on");
    }
    report(deps, &hook, report_success).await?;
    answer.hook_status = Some(if report_success {
        HookStatus::Succeeded
    } else {
        HookStatus::Failed
    });
    Ok(answer)
}

/// How long one invocation of a hook may wait: until `deadline` (the invocation's, less the
/// margin) or until the hook's budget, counted from `started_at`, is spent — whichever is first.
/// The flag says the budget is what ends the wait: no continuation may follow.
pub(crate) fn hook_wait_deadline(
    deadline: tokio::time::Instant,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    budget: Duration,
) -> (tokio::time::Instant, bool) {
    let spent = (now - started_at).to_std().unwrap_or_default();
    let budget_end = tokio::time::Instant::now() + budget.saturating_sub(spent);
    if budget_end <= deadline {
        (budget_end, true)
    } else {
        (deadline, false)
    }
}

async fn report(deps: &Deps, hook: &LifecycleHook, succeeded: bool) -> Result<(), Error> {
    safeship::aws::codedeploy::report_hook_status(
        &deps.codedeploy,
        &hook.deployment_id,
        &hook.lifecycle_event_hook_execution_id,
        succeeded,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_wait_ends_at_its_budget_or_the_invocation_deadline_whichever_is_first() {
        let now = Utc::now();
        let budget = Duration::from_secs(3_000);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        // Early in the hook: the invocation's deadline ends the wait, a continuation may follow.
        let (until, binds) = hook_wait_deadline(deadline, now, now, budget);
        assert_eq!((until, binds), (deadline, false));
        // Ten seconds of budget left: the budget ends the wait, long before the deadline.
        let started = now - chrono::Duration::seconds(2_990);
        let before = tokio::time::Instant::now();
        let (until, binds) = hook_wait_deadline(deadline, started, now, budget);
        let after = tokio::time::Instant::now();
        assert!(binds);
        let ten = Duration::from_secs(10);
        assert!(until >= before + ten && until <= after + ten);
        // Budget already spent: no wait at all.
        let started = now - chrono::Duration::seconds(4_000);
        let (until, binds) = hook_wait_deadline(deadline, started, now, budget);
        assert!(binds && until <= tokio::time::Instant::now());
    }
}
