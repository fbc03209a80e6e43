//! Guard events about snapshots: gathered while a job runs, published at its end (a hook's after
//! its report, so CodeDeploy hears first).
//!
//! Some events are the only record of what happened: `snapshot-available` (the snapshot a
//! migration may rely on), `snapshot-failed` (why a deployment was blocked or warned) and
//! `snapshots-pruned` (RDS keeps no list of what was deleted). When one of those cannot be
//! published the invocation fails, so Lambda (or the pipeline) delivers it again, and the retry
//! publishes the same event under the same id (ids are stable per snapshot and kind, so the
//! notifier recognises a re-publish). `snapshot-started` and `snapshot-quota-warning` are
//! informational: a failure to publish them is logged (and counted by the publisher's metric).

use chrono::Utc;
use safeship::guard::{Guard, GuardEvent, Outcome};

use crate::job::Job;
use crate::{Deps, Error, SnapshotAnswer, FUNCTION};

/// The guard events one invocation owes, in the order they happened.
#[derive(Debug, Default)]
pub(crate) struct Announcements(Vec<GuardEvent>);

impl Announcements {
    /// The event of `outcome` about `snapshot_id` (the identifier keys the event: stable across
    /// a retry, distinct per snapshot).
    pub(crate) fn add(&mut self, job: &Job, snapshot_id: &str, outcome: Outcome) {
        self.0.push(GuardEvent {
            version: safeship::guard::GUARD_EVENT_VERSION,
            id: format!(
                "{FUNCTION}:{}:{snapshot_id}:{}",
                job.database,
                outcome.kind()
            ),
            time: Utc::now(),
            guard: Guard::PredeploySnapshot,
            application: job.application.clone(),
            deployment_group: None,
            deployment_id: job.deployment_id.clone(),
            dry_run: false,
            outcome,
            account: None,
            region: None,
        });
    }

    /// The `snapshot-failed` event of a failed answer, with its error.
    pub(crate) fn failed(&mut self, job: &Job, answer: &SnapshotAnswer) {
        let id = answer.snapshot_id.clone().unwrap_or_default();
        self.add(
            job,
            &id,
            Outcome::SnapshotFailed {
                database: job.database.clone(),
                snapshot_id: answer.snapshot_id.clone(),
                error: answer.detail.clone().unwrap_or_default(),
            },
        );
    }

    /// Publishes every event, each by `by` at the latest. A required event that could not be
    /// published is an error (after the others were tried); an informational one is logged.
    pub(crate) async fn publish(self, deps: &Deps, by: tokio::time::Instant) -> Result<(), Error> {
        let mut first_error = None;
        for event in self.0 {
            let sent = match tokio::time::timeout_at(by, deps.common.guard.publish(&event)).await {
                Ok(sent) => sent,
                Err(_) => Err(safeship::Error::unexpected(
                    "events:PutEvents",
                    format!("guard event {}", event.id),
                    "no answer before the invocation's deadline",
                )),
            };
            let Err(e) = sent else { continue };
            if required(&event.outcome) {
                tracing::error!(error = %e, guard_event = %event.id,
                    "could not publish a snapshot guard event that is the only record: failing so it is retried");
                first_error.get_or_insert(e);
            } else {
                tracing::error!(error = %e, guard_event = %event.id, "could not publish an informational snapshot guard event");
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Whether the event is the only record of what happened (see the module's documentation).
pub(crate) fn required(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::SnapshotAvailable { .. }
            | Outcome::SnapshotFailed { .. }
            | Outcome::SnapshotsPruned { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_records_are_required_and_the_rest_informational() {
        let db = || "db".to_string();
        assert!(required(&Outcome::SnapshotAvailable {
            database: db(),
            snapshot_id: "s".into(),
            duration_ms: 1
        }));
        assert!(required(&Outcome::SnapshotsPruned {
            database: db(),
            snapshot_ids: vec![]
        }));
        assert!(!required(&Outcome::SnapshotStarted {
            database: db(),
            snapshot_id: "s".into()
        }));
        assert!(!required(&Outcome::SnapshotQuotaWarning {
            manual_snapshots: 1,
            quota: 1
        }));
    }
}
