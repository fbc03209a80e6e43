//! Guard events about snapshots.

use chrono::Utc;
use safeship::guard::{Guard, GuardEvent, Outcome};

use crate::job::Job;
use crate::{Deps, SnapshotAnswer, FUNCTION};

/// The guard event of a failed snapshot, with the answer's error.
pub(crate) async fn publish_failed(deps: &Deps, job: &Job, answer: &SnapshotAnswer) {
    publish(
        deps,
        job,
        Outcome::SnapshotFailed {
            database: job.database.clone(),
            snapshot_id: answer.snapshot_id.clone(),
            error: answer.detail.clone().unwrap_or_default(),
        },
    )
    .await;
}

pub(crate) async fn publish(deps: &Deps, job: &Job, outcome: Outcome) {
    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: format!(
            "{FUNCTION}:{}:{}:{}",
            job.database,
            job.deployment_id.as_deref().unwrap_or("direct"),
            outcome.kind()
        ),
        time: Utc::now(),
        guard: Guard::PredeploySnapshot,
        application: job.application.clone(),
        deployment_group: None,
        deployment_id: job.deployment_id.clone(),
        dry_run: false,
        outcome,
    };
    if let Err(e) = deps.common.guard.publish(&event).await {
        tracing::error!(error = %e, "could not publish a snapshot guard event");
    }
}
