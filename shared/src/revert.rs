//! safeship's own reverts, as the hooks recognise them. A revert (alarm-rollback's redeploy of
//! what ran before a deployment that finished inside its bake window) goes through the same
//! lifecycle hooks as any deployment; while the alarm that called for it is still in `ALARM` the
//! hooks' alarm checks would fail it, and CodeDeploy or ECS would undo the revert — keeping the
//! change the alarm blames. So a revert is never held: its hooks pass at once, saying why, as a
//! rollback's do.
//!
//! - **CodeDeploy**: the revert's description names it ([`revert_description`], [`is_revert`]).
//! - **ECS**: `UpdateService` takes no description, so alarm-rollback leaves a note in the
//!   shared table *before* it updates the service ([`note_ecs_revert`]: the task definition it
//!   returns to), and a hook whose target revision runs that task definition, within a day of
//!   the note, is the revert's ([`ecs_revert_of`]).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::EcsLifecycleHook;
use crate::idempotency::IdempotencyStore;

/// How a revert safeship creates describes itself in CodeDeploy.
pub const REVERT_DESCRIPTION_PREFIX: &str = "safeship: alarm ";

/// `safeship: alarm <name> reverts <d-new> to the revision of <d-old>`.
#[must_use]
pub fn revert_description(alarm_name: &str, reverted: &str, revision_of: &str) -> String {
    format!("{REVERT_DESCRIPTION_PREFIX}{alarm_name} reverts {reverted} to the revision of {revision_of}")
}

/// Whether a CodeDeploy deployment's description is the one safeship gives its reverts.
#[must_use]
pub fn is_revert(description: &str) -> bool {
    description.starts_with(REVERT_DESCRIPTION_PREFIX) && description.contains(" reverts ")
}

/// Why a CodeDeploy hook of the deployment described so passes at once, when it is a revert.
#[must_use]
pub fn passed_as_revert(description: Option<&str>) -> Option<String> {
    description.filter(|d| is_revert(d)).map(|d| {
        format!("safeship's revert (\"{d}\"), which is never held: holding it would keep the change the alarm blames")
    })
}

/// The namespace of the notes in the shared table (every function reads and writes them).
const NOTES: &str = "safeship-reverts";

/// How long after its note an ECS revert's hooks may come: a deployment never runs a day.
const NOTE_HOLDS: Duration = Duration::hours(24);

/// What alarm-rollback notes before an ECS revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsRevertNote {
    /// The task definition the service returns to.
    pub task_definition: String,
    /// The service deployment reverted.
    pub reverted: String,
    pub alarm: String,
    pub noted_at: DateTime<Utc>,
}

fn note_key(cluster: &str, service: &str) -> String {
    format!("ecs-revert:{cluster}/{service}")
}

/// Notes the revert of `cluster/service` (the latest note of a service replaces the one before).
pub async fn note_ecs_revert(
    store: &IdempotencyStore,
    cluster: &str,
    service: &str,
    note: &EcsRevertNote,
) -> Result<()> {
    let outcome = serde_json::to_value(note).expect("a note serialises");
    store
        .namespace(NOTES)
        .complete(&note_key(cluster, service), &outcome)
        .await
}

/// The latest revert note of `cluster/service`, if any.
pub async fn ecs_revert_note(
    store: &IdempotencyStore,
    cluster: &str,
    service: &str,
) -> Result<Option<EcsRevertNote>> {
    let key = note_key(cluster, service);
    let Some(recorded) = store.namespace(NOTES).recorded(&key).await? else {
        return Ok(None);
    };
    serde_json::from_value(recorded).map(Some).map_err(|e| {
        Error::unexpected(
            "dynamodb:GetItem",
            format!("note {key}"),
            format!("not an ECS revert note: {e}"),
        )
    })
}

/// Whether the hook's target revision is the one the service's note names, now: the reason its
/// hook passes at once, when it is.
#[must_use]
pub fn note_covers(
    note: &EcsRevertNote,
    target_task_definition: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let age = now - note.noted_at;
    (note.task_definition == target_task_definition && age <= NOTE_HOLDS && age >= -Duration::minutes(5))
        .then(|| {
            format!(
                "safeship's revert of {} to {} (alarm {}), which is never held: holding it would keep the change the alarm blames",
                note.reverted, note.task_definition, note.alarm
            )
        })
}

/// How long a hook asks whether it is safeship's revert, at most: a store or an ECS that does not
/// answer must not eat the hook's own time (found by the fault matrix: a hanging `GetItem` left
/// the snapshot gate none to take its snapshot).
pub const LOOKUP_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// [`ecs_revert_of`] within [`LOOKUP_TIME`] (and `deadline`). Not knowing — the note or the
/// revision unreadable, or no answer in time — is `None`, logged: the hook then checks (or
/// gates) it as any deployment, never skips a check on a guess.
pub async fn ecs_revert_within(
    store: &IdempotencyStore,
    ecs: &aws_sdk_ecs::Client,
    hook: &EcsLifecycleHook,
    deadline: tokio::time::Instant,
) -> Option<String> {
    let by = deadline.min(tokio::time::Instant::now() + LOOKUP_TIME);
    match tokio::time::timeout_at(by, ecs_revert_of(store, ecs, hook)).await {
        Ok(Ok(reason)) => reason,
        Ok(Err(e)) => {
            tracing::warn!(service = %hook.service_key(), error = %e, "could not tell whether this is safeship's revert; treating it as any deployment");
            None
        }
        Err(_) => {
            tracing::warn!(service = %hook.service_key(), "no answer in time on whether this is safeship's revert; treating it as any deployment");
            None
        }
    }
}

/// Whether an ECS hook invocation belongs to safeship's revert of its service: the reason its
/// hook passes at once, or `None`. Reads the service's note (one `GetItem`) and, only when there
/// is one, the target revision's task definition (`ecs:DescribeServiceRevisions`).
pub async fn ecs_revert_of(
    store: &IdempotencyStore,
    ecs: &aws_sdk_ecs::Client,
    hook: &EcsLifecycleHook,
) -> Result<Option<String>> {
    let Some(note) = ecs_revert_note(store, &hook.cluster, &hook.service).await? else {
        return Ok(None);
    };
    if Utc::now() - note.noted_at > NOTE_HOLDS {
        return Ok(None);
    }
    let revision = &hook.target_revision_arn;
    let described = ecs
        .describe_service_revisions()
        .service_revision_arns(revision)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "ecs:DescribeServiceRevisions",
                format!("service revision {revision}"),
                aws_sdk_ecs::Error::from(e),
            )
        })?;
    let task_definition = described
        .service_revisions
        .unwrap_or_default()
        .into_iter()
        .find_map(|r| r.task_definition)
        .ok_or_else(|| {
            Error::unexpected(
                "ecs:DescribeServiceRevisions",
                format!("service revision {revision}"),
                "the answer names no task definition",
            )
        })?;
    Ok(note_covers(&note, &task_definition, Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_codedeploy_revert_is_known_by_its_description() {
        let d = revert_description("checkout-prod-5xx-rate", "d-NEW", "d-OLD");
        assert_eq!(
            d,
            "safeship: alarm checkout-prod-5xx-rate reverts d-NEW to the revision of d-OLD"
        );
        assert!(is_revert(&d));
        assert!(passed_as_revert(Some(&d)).is_some_and(|r| r.contains("never held")));
        assert!(!is_revert("safeship: alarm x switched flags off"));
        assert_eq!(passed_as_revert(Some("release 4.2")), None);
        assert_eq!(passed_as_revert(None), None);
    }

    #[test]
    fn an_ecs_note_covers_its_task_definition_for_a_day() {
        let now = Utc::now();
        let note = EcsRevertNote {
            task_definition: "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:11"
                .into(),
            reverted: "arn:aws:ecs:eu-west-1:123456789012:service-deployment/c/s/x".into(),
            alarm: "checkout-prod-5xx-rate".into(),
            noted_at: now - Duration::minutes(3),
        };
        let reason = note_covers(&note, &note.task_definition, now).unwrap();
        assert!(
            reason.contains("task-definition/checkout:11")
                && reason.contains("checkout-prod-5xx-rate"),
            "{reason}"
        );
        // Another task definition, or a note over a day old, is an ordinary deployment.
        assert_eq!(
            note_covers(
                &note,
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:12",
                now
            ),
            None
        );
        assert_eq!(
            note_covers(&note, &note.task_definition, now + Duration::hours(25)),
            None
        );
    }
}
