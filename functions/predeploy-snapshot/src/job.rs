//! One snapshot: take (or find) it, wait for it within a deadline, settle what the wait found.

use std::time::Duration;

use chrono::Utc;
use safeship::guard::Outcome;
use safeship::policy::{DatabasePolicy, Policy};

use crate::events::{publish, publish_failed};
use crate::prune::prune;
use crate::{naming, rds, Deps, Error, SnapshotAnswer, SnapshotStatus};

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
    pub application: Option<String>,
    pub git_sha: Option<String>,
}

impl Job {
    fn snapshot_id(&self, db: &DatabasePolicy) -> String {
        // Without a deployment, one snapshot per database per minute: a pipeline's retry of the
        // same step finds the one it just made.
        let deployment = self
            .deployment_id
            .clone()
            .unwrap_or_else(|| format!("manual-{}", Utc::now().format("%Y%m%d%H%M")));
        naming::snapshot_identifier(&db.snapshot.prefix, &self.database, &deployment)
    }

    fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (
                rds::DEPLOYMENT_TAG.to_owned(),
                self.deployment_id.clone().unwrap_or_else(|| "none".into()),
            ),
            ("safeship:reason".to_owned(), tag_value(&self.reason)),
        ];
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

/// Creates (or finds) the snapshot and waits for it within `deadline`; prunes and checks the
/// quota once it is available.
pub async fn take_and_wait(
    deps: &Deps,
    job: &Job,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let db = resolve_database(&deps.common.policy, &job.database)?;
    let id = job.snapshot_id(db);
    let started = tokio::time::Instant::now();
    let created = match rds::create(&deps.rds, db, &id, &job.tags()).await {
        Ok(created) => created,
        Err(e) => return Ok(failed(deps, job, id, e.to_string()).await),
    };
    let snapshot = match created {
        rds::Created::Started(s) => {
            tracing::info!(snapshot = %s.id, database = %job.database, "snapshot started");
            publish(
                deps,
                job,
                Outcome::SnapshotStarted {
                    database: job.database.clone(),
                    snapshot_id: s.id.clone(),
                },
            )
            .await;
            s
        }
        rds::Created::Existing(s) => {
            tracing::info!(snapshot = %s.id, status = %s.status, "snapshot already exists: an earlier trigger made it");
            s
        }
    };
    let waited = match wait(deps, db, snapshot, deadline).await {
        Ok(waited) => waited,
        // The snapshot was started but its state can no longer be read (throttling beyond the
        // SDK's retries, the snapshot gone): a failed snapshot, with the error, never silence.
        Err(e) => {
            let error = format!("waiting for snapshot {id}: {e}");
            tracing::error!(snapshot = %id, error = %e, "the wait for the snapshot failed");
            return Ok(failed(deps, job, id, error).await);
        }
    };
    settle(deps, job, db, waited, started.elapsed()).await
}

/// A snapshot that failed: the answer saying so, and the guard event with the error.
async fn failed(deps: &Deps, job: &Job, id: String, error: String) -> SnapshotAnswer {
    let failed = answer(job, Some(id), SnapshotStatus::Failed, Some(error));
    publish_failed(deps, job, &failed).await;
    failed
}

/// Polls with backoff until the snapshot is `available`, fails, or the deadline comes; the last
/// poll is at the deadline itself.
async fn wait(
    deps: &Deps,
    db: &DatabasePolicy,
    mut snapshot: rds::Snapshot,
    deadline: tokio::time::Instant,
) -> Result<rds::Snapshot, Error> {
    let mut pause = deps.settings.first_poll;
    while snapshot.status == "creating" || snapshot.status == "pending" {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(20));
        snapshot = rds::status(&deps.rds, db, &snapshot.id)
            .await?
            .ok_or_else(|| {
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
) -> Result<SnapshotAnswer, Error> {
    match snapshot.status.as_str() {
        "available" => {
            publish(
                deps,
                job,
                Outcome::SnapshotAvailable {
                    database: job.database.clone(),
                    snapshot_id: snapshot.id.clone(),
                    duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                },
            )
            .await;
            let pruned = prune(deps, job, db).await;
            let mut a = answer(job, Some(snapshot.id), SnapshotStatus::Available, None);
            a.pruned = pruned;
            Ok(a)
        }
        "creating" | "pending" => Ok(answer(
            job,
            Some(snapshot.id),
            SnapshotStatus::Creating,
            Some("not available yet: invoke again with the same request to keep waiting".into()),
        )),
        other => {
            let error = format!("snapshot {} is {other}", snapshot.id);
            publish(
                deps,
                job,
                Outcome::SnapshotFailed {
                    database: job.database.clone(),
                    snapshot_id: Some(snapshot.id.clone()),
                    error: error.clone(),
                },
            )
            .await;
            Ok(answer(
                job,
                Some(snapshot.id),
                SnapshotStatus::Failed,
                Some(error),
            ))
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
