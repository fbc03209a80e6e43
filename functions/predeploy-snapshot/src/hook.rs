//! A CodeDeploy lifecycle hook: snapshot the group's database, wait (across continuations when
//! need be), then report the hook's status — or, under `then-traffic-hook`, hand the hook to the
//! traffic hook, which reports after its checks (see [`crate::handoff`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use safeship::event::LifecycleHook;
use safeship::policy::SnapshotFailureMode;
use safeship::runtime::answer_once;

use tokio::time::Instant;

use crate::continuation::{hand_over, Continuation};
use crate::events::Announcements;
use crate::handoff::hand_to_traffic_hook;
use crate::job::{take, Job};
use crate::{Deps, Error, HookStatus, SnapshotAnswer, SnapshotStatus};

/// A lifecycle hook: snapshot the group's database, then report; once per hook execution.
///
/// A crash (or Lambda's timeout) at any point is resumed by the next delivery (Lambda retries
/// the asynchronous invocation; the dead invocation's claim ends with its deadline): the retry
/// runs the step again from the start, finds the snapshot the dead attempt created by its
/// identifier (derived from the deployment) and goes on waiting for it; a report CodeDeploy
/// already holds is not sent twice.
pub(crate) async fn start_hook(
    deps: &Deps,
    hook: &LifecycleHook,
    deadline: Instant,
) -> Result<SnapshotAnswer, Error> {
    let key = format!("hook:{}", hook.lifecycle_event_hook_execution_id);
    let started = std::sync::atomic::AtomicBool::new(false);
    // The claim may take until `deadline` (the invocation's less the margin), no longer: a
    // store that does not answer, or refuses, leaves the margin to report Failed (found by the
    // fault matrix: the hook stayed silent).
    let claimed = &started;
    let once = deps
        .common
        .idempotency
        .once_claiming_by(&key, Some(deadline), |held| async move {
            claimed.store(true, std::sync::atomic::Ordering::Relaxed);
            let looked_up = tokio::time::timeout_at(
                deadline,
                safeship::aws::codedeploy::get_deployment(&deps.codedeploy, &hook.deployment_id),
            )
            .await
            .unwrap_or_else(|_| {
                Err(safeship::Error::unexpected(
                    "codedeploy:GetDeployment",
                    format!("deployment {}", hook.deployment_id),
                    "no answer before the invocation's deadline",
                ))
            });
            let info = match looked_up {
                Ok(info) => info,
                Err(e) => {
                    // The hook must report: without its group there is no snapshot, so Failed.
                    report(deps, hook, false, deadline).await?;
                    return Ok(SnapshotAnswer {
                        database: String::new(),
                        snapshot_id: None,
                        status: SnapshotStatus::Failed,
                        detail: Some(format!("could not look up the deployment: {e}")),
                        hook_status: Some(HookStatus::Failed),
                        pruned: vec![],
                        handed_to: None,
                        duplicate: false,
                    });
                }
            };
            // safeship's own revert is never held: reported at once, no snapshot (the
            // reverted deployment's pre-deploy snapshot stands).
            if let Some(reason) = safeship::revert::passed_as_revert(info.description.as_deref()) {
                report(deps, hook, true, deadline).await?;
                tracing::info!(deployment = %hook.deployment_id, %reason, "the snapshot hook passes a revert at once");
                return Ok(SnapshotAnswer {
                    database: String::new(),
                    snapshot_id: None,
                    status: SnapshotStatus::NotHeld,
                    detail: Some(format!("no snapshot: {reason}")),
                    hook_status: Some(HookStatus::Succeeded),
                    pruned: vec![],
                    handed_to: None,
                    duplicate: false,
                });
            }
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
                // The hook's first claim, not this delivery's: a retry after a crash goes on
                // with what is left of the budget instead of starting it again.
                started_at: held.since,
                attempt: 0,
                git_sha,
            };
            // Boxed: the step's future is large, and a test's thread stack is small.
            Box::pin(hook_step(deps, state, deadline)).await
        })
        .await;
    match once {
        Ok(once) => Ok(answer_once(once)),
        // The claim itself failed (not held elsewhere): nothing ran, so nothing reported.
        // Silence is the one wrong answer: fail closed, then fail so the error is seen.
        Err(Error::Safeship(
            store_error @ (safeship::Error::Aws { .. } | safeship::Error::Unexpected { .. }),
        )) if !started.load(std::sync::atomic::Ordering::Relaxed) => {
            tracing::error!(error = %store_error, "the hook's claim failed: reporting Failed");
            report(deps, hook, false, deadline).await?;
            Err(Error::Safeship(store_error))
        }
        Err(e) => Err(e),
    }
}

/// One invocation's share of a hook: take or find the snapshot, wait, then report — or hand the
/// wait to a continuation when this invocation's time is up. Every call ends by the
/// invocation's deadline: the wait and its RDS calls by `deadline` (the deadline less the
/// margin), the hand-over in the first half of the margin, the report and the guard events in
/// the rest.
///
/// The hook is never left silent: a continuation that cannot be sent (refused, or no answer in
/// time) reports `Failed` now; an invocation that dies is delivered again and resumes (see
/// [`start_hook`]); the guard events are published after the report, and one that is the only
/// record and cannot be published fails the invocation (after the report) so that the retry
/// publishes it.
pub(crate) async fn hook_step(
    deps: &Deps,
    mut state: Continuation,
    deadline: Instant,
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
        report(deps, &hook, false, deadline).await?;
        let e = Error::NoSnapshotPolicy { group: group_name };
        return Ok(SnapshotAnswer {
            database: String::new(),
            snapshot_id: None,
            status: SnapshotStatus::Failed,
            detail: Some(e.to_string()),
            hook_status: Some(HookStatus::Failed),
            pruned: vec![],
            handed_to: None,
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
        request_id: None,
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
    let mut events = Announcements::default();
    let mut answer = match Box::pin(take(deps, &job, wait_until, &mut events)).await {
        Ok(answer) => answer,
        Err(e) => crate::job::answer(&job, None, SnapshotStatus::Failed, Some(e.to_string())),
    };
    let succeeded = match answer.status {
        SnapshotStatus::Available => true,
        SnapshotStatus::DryRun => {
            tracing::warn!(group = %group_name, "dry run: no snapshot taken; the hook reports Succeeded so the deployment is not held");
            true
        }
        SnapshotStatus::Creating if !budget_binds => {
            state.snapshot_id = answer.snapshot_id.clone().unwrap_or_default();
            state.attempt += 1;
            let hand_over_by = deadline + deps.settings.margin / 2;
            let handed = match tokio::time::timeout_at(hand_over_by, hand_over(deps, &state)).await
            {
                Ok(handed) => handed,
                Err(_) => Err(Error::Continue {
                    snapshot_id: state.snapshot_id.clone(),
                    function: deps
                        .settings
                        .function_name
                        .clone()
                        .unwrap_or_else(|| crate::FUNCTION.to_owned()),
                    problem: "no answer before the invocation's deadline".into(),
                }),
            };
            match handed {
                Ok(()) => {
                    answer.status = SnapshotStatus::Continued;
                    answer.detail = Some(format!(
                        "still creating; continuation {} waits on",
                        state.attempt
                    ));
                    // The continuation reports; the events so far are published now.
                    events
                        .publish(deps, deadline + deps.settings.margin)
                        .await?;
                    return Ok(answer);
                }
                // Nobody would be left to report: the hook reports now.
                Err(e) => {
                    tracing::error!(error = %e, "could not hand the wait over to a continuation");
                    answer.detail = Some(e.to_string());
                    events.failed(&job, &answer);
                    false
                }
            }
        }
        SnapshotStatus::Creating => {
            answer.detail = Some(format!(
                "still creating after {} s, the hook's whole budget",
                deps.settings.hook_budget.as_secs()
            ));
            events.failed(&job, &answer);
            false
        }
        _ => false,
    };
    let report_success = succeeded || snapshot_policy.on_failure == SnapshotFailureMode::Warn;
    if !succeeded && report_success {
        tracing::warn!(group = %group_name, detail = ?answer.detail,
            "snapshot failed; the policy says warn, so the deployment goes on");
    }
    if report_success && snapshot_policy.then_traffic_hook {
        // The traffic hook reports; a hand-over that does not happen in the first half of the
        // margin leaves nobody to report, so this hook reports Failed: the checks did not run.
        let hand_over_by = deadline + deps.settings.margin / 2;
        let handed = tokio::time::timeout_at(hand_over_by, hand_to_traffic_hook(deps, &hook))
            .await
            .unwrap_or_else(|_| {
                Err(Error::HandOver {
                    hook_execution: hook.lifecycle_event_hook_execution_id.clone(),
                    function: deps
                        .settings
                        .traffic_hook_function
                        .clone()
                        .unwrap_or_default(),
                    problem: "no answer before the invocation's deadline".into(),
                })
            });
        match handed {
            Ok(function) => {
                answer.handed_to = Some(function);
                events
                    .publish(deps, deadline + deps.settings.margin)
                    .await?;
                return Ok(answer);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not hand the hook to the traffic hook; reporting Failed");
                answer.detail = Some(match answer.detail.take() {
                    Some(before) => format!("{before}; {e}"),
                    None => e.to_string(),
                });
                Box::pin(report(deps, &hook, false, deadline)).await?;
                answer.hook_status = Some(HookStatus::Failed);
                events
                    .publish(deps, deadline + deps.settings.margin)
                    .await?;
                return Ok(answer);
            }
        }
    }
    Box::pin(report(deps, &hook, report_success, deadline)).await?;
    answer.hook_status = Some(if report_success {
        HookStatus::Succeeded
    } else {
        HookStatus::Failed
    });
    // After the report, so CodeDeploy hears first; an event that is the only record and cannot
    // be published fails the invocation, and the retry (the report already held) publishes it.
    events
        .publish(deps, deadline + deps.settings.margin)
        .await?;
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

/// Reports the hook's status within what is left of the invocation (`deadline` is its deadline
/// less the margin): at most two thirds of the time to the real deadline, so the guard events
/// still fit.
async fn report(
    deps: &Deps,
    hook: &LifecycleHook,
    succeeded: bool,
    deadline: Instant,
) -> Result<(), Error> {
    let left = (deadline + deps.settings.margin).saturating_duration_since(Instant::now());
    let budget = (left * 2 / 3).max(Duration::from_millis(500));
    safeship::aws::codedeploy::report_hook_status_within(
        &deps.codedeploy,
        &hook.deployment_id,
        &hook.lifecycle_event_hook_execution_id,
        succeeded,
        budget,
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
