//! One snapshot: take (or find) it, wait for it within a deadline, settle what the wait found.

use std::time::Duration;

use safeship::guard::Outcome;
use safeship::policy::{DatabaseKind, DatabasePolicy, Policy};
use tokio::time::{timeout_at, Instant};

use crate::events::Announcements;
use crate::prune::prune;
use crate::{naming, rds, retention, Deps, Error, SnapshotAnswer, SnapshotStatus};

/// The policy's database entry for a name, or an error listing the known ones.
pub(crate) fn resolve_database<'a>(
    policy: &'a Policy,
    database: &str,
) -> Result<&'a DatabasePolicy, Error> {
    policy
        .databases
        .get(database)
        .ok_or_else(|| Error::UnknownDatabase {
            database: database.to_owned(),
            known: policy
                .databases
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One snapshot to take.
#[derive(Debug, Clone)]
pub struct Job {
    pub database: String,
    pub reason: String,
    pub deployment_id: Option<String>,
    /// A direct request's own id (e.g. the pipeline run's), stable across its "invoke again":
    /// the snapshot is keyed by it when no deployment is named.
    pub request_id: Option<String>,
    pub application: Option<String>,
    pub git_sha: Option<String>,
}

impl Job {
    fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (
                rds::DEPLOYMENT_TAG.to_owned(),
                self.deployment_id.clone().unwrap_or_else(|| "none".into()),
            ),
            ("safeship:reason".to_owned(), tag_value(&self.reason)),
        ];
        if let Some(request) = &self.request_id {
            tags.push(("safeship:request-id".to_owned(), tag_value(request)));
        }
        if let Some(app) = &self.application {
            tags.push(("safeship:application".to_owned(), tag_value(app)));
        }
        if let Some(sha) = &self.git_sha {
            tags.push(("safeship:git-sha".to_owned(), tag_value(sha)));
        }
        tags
    }
}

/// RDS tag values: at most 256 characters.
fn tag_value(text: &str) -> String {
    text.chars().take(256).collect()
}

/// The snapshot identifier of `job`, stable across its repeats: from the deployment, else from
/// the request's own id, else the database's direct snapshot still being made since the last
/// [`retention::DIRECT_WINDOW_MINUTES`] (a new one when there is none). The error says why the
/// direct snapshot to continue could not be looked for.
async fn snapshot_id(
    deps: &Deps,
    job: &Job,
    db: &DatabasePolicy,
    deadline: Instant,
) -> Result<String, String> {
    let prefix = &db.snapshot.prefix;
    if let Some(deployment) = &job.deployment_id {
        return Ok(naming::snapshot_identifier(
            prefix,
            &job.database,
            deployment,
        ));
    }
    if let Some(request) = &job.request_id {
        return Ok(naming::snapshot_identifier(
            prefix,
            &job.database,
            &format!("request-{request}"),
        ));
    }
    let owned = match timeout_at(deadline, rds::owned(&deps.rds, db)).await {
        Ok(Ok(owned)) => owned,
        Ok(Err(e)) => return Err(format!("looking for the direct snapshot to continue: {e}")),
        Err(_) => {
            return Err(
                "looking for the direct snapshot to continue: no answer from RDS before the invocation's deadline"
                    .into(),
            )
        }
    };
    let now = (deps.clock)();
    Ok(match retention::direct_to_continue(&owned, now) {
        Some(s) => {
            tracing::info!(snapshot = %s.id, "a direct request without ids continues the database's direct snapshot still being made");
            s.id.clone()
        }
        None => naming::snapshot_identifier(
            prefix,
            &job.database,
            &format!("direct-{}", now.format("%Y%m%d%H%M%S")),
        ),
    })
}

/// Creates (or finds) the snapshot and waits for it within `deadline`; prunes and checks the
/// quota once it is available; then publishes its guard events (see [`crate::events`]: an
/// event that is the only record and cannot be published is an error, so the request is
/// repeated and the event published again).
pub async fn take_and_wait(
    deps: &Deps,
    job: &Job,
    deadline: Instant,
) -> Result<SnapshotAnswer, Error> {
    let mut events = Announcements::default();
    let answer = Box::pin(take(deps, job, deadline, &mut events)).await?;
    events
        .publish(deps, deadline + deps.settings.margin)
        .await?;
    Ok(answer)
}

/// As [`take_and_wait`], leaving the guard events in `events` for the caller to publish (a hook
/// reports first). Every RDS call ends by `deadline`: a call without an answer by then leaves
/// the snapshot `creating` as far as this invocation knows (a repeat or a continuation asks
/// again), never a wait past the deadline.
pub(crate) async fn take(
    deps: &Deps,
    job: &Job,
    deadline: Instant,
    events: &mut Announcements,
) -> Result<SnapshotAnswer, Error> {
    let db = resolve_database(&deps.common.policy, &job.database)?;
    let id = match snapshot_id(deps, job, db, deadline).await {
        Ok(id) => id,
        Err(problem) => return Ok(failed(job, None, problem, events)),
    };
    if deps.common.config.dry_run {
        return Ok(dry_run(deps, job, db, id, deadline).await);
    }
    let started = Instant::now();
    let created = match timeout_at(deadline, rds::create(&deps.rds, db, &id, &job.tags())).await {
        Ok(Ok(created)) => created,
        Ok(Err(e)) => return Ok(failed(job, Some(id), e.to_string(), events)),
        Err(_) => {
            tracing::warn!(snapshot = %id, "CreateDB(Cluster)Snapshot had no answer before the deadline");
            return Ok(answer(
                job,
                Some(id),
                SnapshotStatus::Creating,
                Some(format!("{} had no answer before the invocation's deadline; invoke again with the same request (it finds the snapshot if RDS made it)", rds::create_action(db))),
            ));
        }
    };
    let snapshot = match created {
        rds::Created::Started(s) => {
            tracing::info!(snapshot = %s.id, database = %job.database, "snapshot started");
            s
        }
        // A dead attempt may have started it without living to say so: the start is said again
        // under its stable id, which the notifier recognises when it was said (found by the
        // crash suite: killed right after CreateDBSnapshot, the start went untold).
        rds::Created::Existing(s) => {
            tracing::info!(snapshot = %s.id, status = %s.status, "snapshot already exists: an earlier trigger (or a dead attempt) made it");
            s
        }
    };
    events.add(
        job,
        &snapshot.id,
        Outcome::SnapshotStarted {
            database: job.database.clone(),
            snapshot_id: snapshot.id.clone(),
        },
    );
    let waited = match wait(deps, db, snapshot, deadline).await {
        Ok(waited) => waited,
        // The snapshot was started but its state can no longer be read (throttling beyond the
        // SDK's retries, the snapshot gone): a failed snapshot, with the error, never silence.
        Err(e) => {
            let error = format!("waiting for snapshot {id}: {e}");
            tracing::error!(snapshot = %id, error = %e, "the wait for the snapshot failed");
            return Ok(failed(job, Some(id), error, events));
        }
    };
    Ok(Box::pin(settle(
        deps,
        job,
        db,
        waited,
        started.elapsed(),
        deadline,
        events,
    ))
    .await)
}

/// Under `SAFESHIP_DRY_RUN`: what would be done, with nothing created or deleted.
async fn dry_run(
    deps: &Deps,
    job: &Job,
    db: &DatabasePolicy,
    id: String,
    deadline: Instant,
) -> SnapshotAnswer {
    let kind = match db.kind {
        DatabaseKind::Instance => "DB instance",
        DatabaseKind::Cluster => "DB cluster",
    };
    let prune = match timeout_at(deadline, rds::owned(&deps.rds, db)).await {
        Ok(Ok(owned)) => {
            let would = retention::to_prune(
                &owned,
                (deps.clock)(),
                retention_days(db),
                db.snapshot.keep_newest,
            );
            if would.is_empty() {
                "; no snapshot of safeship's is old enough to prune".to_owned()
            } else {
                format!(", then prune {}", would.join(", "))
            }
        }
        Ok(Err(e)) => format!("; what it would prune is unknown ({e})"),
        Err(_) => {
            "; what it would prune is unknown (no answer from RDS before the deadline)".into()
        }
    };
    tracing::info!(snapshot = %id, "dry run: no snapshot taken, none pruned");
    answer(
        job,
        Some(id.clone()),
        SnapshotStatus::DryRun,
        Some(format!(
            "dry run (SAFESHIP_DRY_RUN): would snapshot {kind} {} as {id}{prune}; nothing was created or deleted",
            db.identifier
        )),
    )
}

pub(crate) fn retention_days(db: &DatabasePolicy) -> u32 {
    db.snapshot
        .retention_days
        .unwrap_or_else(|| db.environment.default_retention_days())
}

/// A snapshot that failed: the answer saying so, and the guard event with the error.
fn failed(
    job: &Job,
    id: Option<String>,
    error: String,
    events: &mut Announcements,
) -> SnapshotAnswer {
    let failed = answer(job, id, SnapshotStatus::Failed, Some(error));
    events.failed(job, &failed);
    failed
}

/// Polls with backoff until the snapshot is `available`, fails, or the deadline comes; the last
/// poll is at the deadline itself, and a poll without an answer by the deadline ends the wait
/// with the status last seen.
async fn wait(
    deps: &Deps,
    db: &DatabasePolicy,
    mut snapshot: rds::Snapshot,
    deadline: Instant,
) -> Result<rds::Snapshot, Error> {
    let mut pause = deps.settings.first_poll;
    while snapshot.status == "creating" || snapshot.status == "pending" {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(20));
        let Ok(polled) = timeout_at(deadline, rds::status(&deps.rds, db, &snapshot.id)).await
        else {
            tracing::warn!(snapshot = %snapshot.id, "the status poll had no answer before the deadline");
            break;
        };
        snapshot = polled?.ok_or_else(|| {
            Error::Safeship(safeship::Error::unexpected(
                "rds:DescribeDBSnapshots",
                format!("snapshot {}", snapshot.id),
                "the snapshot disappeared while being made",
            ))
        })?;
    }
    Ok(snapshot)
}

/// After the wait: guard events, retention and the quota for an available snapshot.
async fn settle(
    deps: &Deps,
    job: &Job,
    db: &DatabasePolicy,
    snapshot: rds::Snapshot,
    took: Duration,
    deadline: Instant,
    events: &mut Announcements,
) -> SnapshotAnswer {
    match snapshot.status.as_str() {
        "available" => {
            events.add(
                job,
                &snapshot.id,
                Outcome::SnapshotAvailable {
                    database: job.database.clone(),
                    snapshot_id: snapshot.id.clone(),
                    duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                },
            );
            let pruned = Box::pin(prune(deps, job, db, &snapshot.id, deadline, events)).await;
            let detail = pruned.unfinished.map(|problem| {
                format!("available; pruning did not finish ({problem}): invoke again, or the next snapshot prunes the rest")
            });
            let mut a = answer(job, Some(snapshot.id), SnapshotStatus::Available, detail);
            a.pruned = pruned.ids;
            a
        }
        "creating" | "pending" => answer(
            job,
            Some(snapshot.id),
            SnapshotStatus::Creating,
            Some("not available yet: invoke again with the same request to keep waiting".into()),
        ),
        other => {
            let error = format!("snapshot {} is {other}", snapshot.id);
            failed(job, Some(snapshot.id), error, events)
        }
    }
}

pub(crate) fn answer(
    job: &Job,
    snapshot_id: Option<String>,
    status: SnapshotStatus,
    detail: Option<String>,
) -> SnapshotAnswer {
    SnapshotAnswer {
        database: job.database.clone(),
        snapshot_id,
        status,
        detail,
        hook_status: None,
        pruned: vec![],
        handed_to: None,
        duplicate: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_database_lists_the_known_ones() {
        let p = Policy::parse(include_str!("../../../examples/policy.yaml"), "example").unwrap();
        let err = resolve_database(&p, "orders-db").unwrap_err().to_string();
        assert_eq!(
            err,
            "database \"orders-db\" is not in the policy's databases (known: checkout-db)"
        );
        assert_eq!(
            resolve_database(&p, "checkout-db").unwrap().identifier,
            "checkout-prod-db"
        );
    }
}
