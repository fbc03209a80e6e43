//! Direct invocations (a pipeline's snapshot or freshness request) and the dispatch of every
//! payload the function takes: a continuation, a request, a lifecycle hook, a `START` event.

use safeship::event::{DeploymentState, DeploymentStateChange, Inbound, LifecycleHook};
use safeship::runtime::accept;
use serde::Deserialize;
use serde_json::Value;

use crate::continuation::{continue_hook, Continuation};
use crate::job::{take_and_wait, Job};
use crate::{freshness, hook, Deps, Error, SnapshotAnswer, SnapshotStatus, FUNCTION};

/// A pipeline's direct invocation: take a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotRequest {
    pub(crate) database: String,
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) deployment_id: Option<String>,
    /// The caller's own id for this request (e.g. its pipeline run), the same on every
    /// "invoke again": without a deployment, the snapshot is keyed by it.
    #[serde(default)]
    pub(crate) request_id: Option<String>,
}

/// A pipeline's direct invocation: is there an `available` snapshot newer than this?
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FreshnessRequest {
    pub(crate) database: String,
    pub(crate) max_age_minutes: u32,
}

/// The events that start a snapshot.
enum Trigger {
    Hook(LifecycleHook),
    Start(DeploymentStateChange),
}

/// Routes one invocation's payload to what it asks for.
pub(crate) async fn dispatch(
    deps: &Deps,
    payload: &Value,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    if let Some(state) = payload.get("safeship-continuation") {
        let state: Continuation = serde_json::from_value(state.clone())
            .map_err(|e| Error::Request(format!("continuation state: {e}")))?;
        return continue_hook(deps, state, deadline).await;
    }
    if let Some(fresh) = payload.get("fresh") {
        let request: FreshnessRequest = serde_json::from_value(fresh.clone())
            .map_err(|e| Error::Request(format!("fresh: {e}")))?;
        return freshness::freshness(deps, &request, deadline).await;
    }
    if payload.get("database").is_some() {
        let request: SnapshotRequest =
            serde_json::from_value(payload.clone()).map_err(|e| Error::Request(e.to_string()))?;
        let job = Job {
            database: request.database,
            reason: request.reason,
            deployment_id: request.deployment_id,
            request_id: request.request_id,
            application: None,
            git_sha: None,
        };
        return take_and_wait(deps, &job, deadline).await;
    }
    let accepted = accept(FUNCTION, payload, |e| match e {
        Inbound::LifecycleHook(hook) => Some(Trigger::Hook(hook)),
        Inbound::DeploymentStateChange(d) if d.state == DeploymentState::Start => {
            Some(Trigger::Start(d))
        }
        _ => None,
    })?;
    match accepted.event {
        Trigger::Hook(hook) => hook::start_hook(deps, &hook, deadline).await,
        Trigger::Start(d) => {
            let group = format!("{}/{}", d.application, d.deployment_group);
            let Some(snapshot) = deps
                .common
                .policy
                .group(&d.application, &d.deployment_group)
                .and_then(|g| g.policy.snapshot.as_ref())
            else {
                tracing::info!(%group, "no snapshot configured for this group");
                return Ok(SnapshotAnswer {
                    database: String::new(),
                    snapshot_id: None,
                    status: SnapshotStatus::NoneConfigured,
                    detail: Some(format!("{group} has no snapshot section")),
                    hook_status: None,
                    pruned: vec![],
                    handed_to: None,
                    duplicate: false,
                });
            };
            let job = Job {
                database: snapshot.database.clone(),
                reason: format!("deployment {} of {group} started", d.deployment_id),
                deployment_id: Some(d.deployment_id),
                request_id: None,
                application: Some(d.application),
                git_sha: None,
            };
            take_and_wait(deps, &job, deadline).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_rejects_unknown_fields() {
        let err = serde_json::from_value::<SnapshotRequest>(
            json!({"database": "a", "reason": "b", "extra": 1}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
