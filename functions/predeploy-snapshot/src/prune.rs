//! After an available snapshot: retention (the pure decisions are in `retention`) and the
//! manual-snapshot quota warning.

use safeship::guard::Outcome;
use safeship::idempotency::Once;
use safeship::policy::DatabasePolicy;
use tokio::time::{timeout_at, Instant};

use crate::events::Announcements;
use crate::job::{retention_days, Job};
use crate::{rds, retention, Deps, Error};

/// What pruning after a snapshot did: the ids deleted, and why it did not finish, if it did not.
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    pub(crate) ids: Vec<String>,
    pub(crate) unfinished: Option<String>,
}

/// Retention and the quota warning, each RDS call ended by `deadline`. Problems here never fail
/// a snapshot — it is there, and the deployment may go on — but they are not recorded as done
/// either: the answer says what is left, and a repeat of the request (or the next snapshot)
/// lists again and prunes the rest.
///
/// The deletions are once-only per snapshot (`prune:<snapshot id>`), recording what was
/// deleted: RDS keeps no list of it, so a repeat (a retry after the `snapshots-pruned` event
/// could not be published) announces the recorded ids again instead of finding nothing to prune.
/// Only a pass that listed the snapshots and deleted every one past retention is recorded
/// (a failed listing was once recorded as "nothing to prune", and its repeat pruned nothing).
pub(crate) async fn prune(
    deps: &Deps,
    job: &Job,
    db: &DatabasePolicy,
    snapshot_id: &str,
    deadline: Instant,
    events: &mut Announcements,
) -> Pruned {
    // What an unfinished pass deleted before it stopped: announced, though not recorded.
    let mut partly = Vec::new();
    let mut pruned = match deps
        .common
        .idempotency
        .once(&format!("prune:{snapshot_id}"), || async {
            delete_old(deps, db, deadline)
                .await
                .map_err(|(ids, problem)| {
                    partly = ids;
                    Error::Prune {
                        database: job.database.clone(),
                        problem,
                    }
                })
        })
        .await
    {
        Ok(Once::Ran(ids) | Once::AlreadyDone(ids)) => Pruned {
            ids,
            unfinished: None,
        },
        Err(e) => {
            tracing::error!(error = %e, "pruning after this snapshot did not finish: a repeat, or the next snapshot, prunes the rest");
            Pruned {
                ids: std::mem::take(&mut partly),
                unfinished: Some(e.to_string()),
            }
        }
    };
    let pruned_ids = std::mem::take(&mut pruned.ids);
    if !pruned_ids.is_empty() {
        events.add(
            job,
            snapshot_id,
            Outcome::SnapshotsPruned {
                database: job.database.clone(),
                snapshot_ids: pruned_ids.clone(),
            },
        );
    }
    pruned.ids = pruned_ids;
    let quota = deps.settings.quota_for(db.kind);
    match timeout_at(deadline, rds::account_manual_count(&deps.rds, db.kind)).await {
        Ok(Ok(count))
            if retention::nears_quota(count, quota, db.snapshot.quota_warning_percent) =>
        {
            tracing::warn!(count, quota, kind = ?db.kind, "manual snapshots near the RDS quota");
            events.add(
                job,
                snapshot_id,
                Outcome::SnapshotQuotaWarning {
                    manual_snapshots: count,
                    quota,
                },
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "counting manual snapshots for the quota"),
        Err(_) => {
            tracing::warn!("counting manual snapshots for the quota: no answer before the deadline")
        }
    }
    pruned
}

/// Deletes safeship's snapshots of the database past retention; the ids deleted, or those
/// deleted before it stopped and why it stopped (a listing or a deletion that failed, or the
/// deadline).
async fn delete_old(
    deps: &Deps,
    db: &DatabasePolicy,
    deadline: Instant,
) -> Result<Vec<String>, (Vec<String>, String)> {
    let owned = match timeout_at(deadline, rds::owned(&deps.rds, db)).await {
        Ok(Ok(owned)) => owned,
        Ok(Err(e)) => return Err((vec![], format!("listing the snapshots to prune: {e}"))),
        Err(_) => {
            return Err((
                vec![],
                "listing the snapshots to prune: no answer before the invocation's deadline".into(),
            ))
        }
    };
    let mut pruned = Vec::new();
    let old = retention::to_prune(
        &owned,
        (deps.clock)(),
        retention_days(db),
        db.snapshot.keep_newest,
    );
    let mut problems = Vec::new();
    for id in old {
        match timeout_at(deadline, rds::delete(&deps.rds, db, &id)).await {
            Ok(Ok(())) => pruned.push(id),
            Ok(Err(e)) => problems.push(format!("deleting {id}: {e}")),
            Err(_) => {
                problems.push(format!(
                    "deleting {id}: no answer before the invocation's deadline"
                ));
                break;
            }
        }
    }
    if problems.is_empty() {
        Ok(pruned)
    } else {
        Err((pruned, problems.join("; ")))
    }
}
