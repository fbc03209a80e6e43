//! After an available snapshot: retention (the pure decisions are in `retention`) and the
//! manual-snapshot quota warning.

use safeship::guard::Outcome;
use safeship::idempotency::Once;
use safeship::policy::DatabasePolicy;
use tokio::time::{timeout_at, Instant};

use crate::events::Announcements;
use crate::job::{retention_days, Job};
use crate::{rds, retention, Deps};

/// Retention and the quota warning, each RDS call ended by `deadline`. Problems here are logged:
/// they never fail a snapshot (the next snapshot prunes what this one could not).
///
/// The deletions are once-only per snapshot (`prune:<snapshot id>`), recording what was
/// deleted: RDS keeps no list of it, so a repeat (a retry after the `snapshots-pruned` event
/// could not be published) announces the recorded ids again instead of finding nothing to prune.
pub(crate) async fn prune(
    deps: &Deps,
    job: &Job,
    db: &DatabasePolicy,
    snapshot_id: &str,
    deadline: Instant,
    events: &mut Announcements,
) -> Vec<String> {
    let pruned = match deps
        .common
        .idempotency
        .once(&format!("prune:{snapshot_id}"), || async {
            Ok::<_, safeship::Error>(delete_old(deps, db, deadline).await)
        })
        .await
    {
        Ok(Once::Ran(ids) | Once::AlreadyDone(ids)) => ids,
        Err(e) => {
            tracing::error!(error = %e, "pruning after this snapshot: skipped");
            Vec::new()
        }
    };
    if !pruned.is_empty() {
        events.add(
            job,
            snapshot_id,
            Outcome::SnapshotsPruned {
                database: job.database.clone(),
                snapshot_ids: pruned.clone(),
            },
        );
    }
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

/// Deletes safeship's snapshots of the database past retention; the ids deleted.
async fn delete_old(deps: &Deps, db: &DatabasePolicy, deadline: Instant) -> Vec<String> {
    let owned = match timeout_at(deadline, rds::owned(&deps.rds, db)).await {
        Ok(Ok(owned)) => owned,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "listing safeship's snapshots for retention");
            return vec![];
        }
        Err(_) => {
            tracing::warn!("listing safeship's snapshots for retention: no answer before the deadline; the next snapshot prunes");
            return vec![];
        }
    };
    let mut pruned = Vec::new();
    let old = retention::to_prune(
        &owned,
        (deps.clock)(),
        retention_days(db),
        db.snapshot.keep_newest,
    );
    for id in old {
        match timeout_at(deadline, rds::delete(&deps.rds, db, &id)).await {
            Ok(Ok(())) => pruned.push(id),
            Ok(Err(e)) => tracing::error!(error = %e, "pruning an old snapshot"),
            Err(_) => {
                tracing::warn!(snapshot = %id, "pruning stopped at the deadline; the next snapshot prunes the rest");
                break;
            }
        }
    }
    pruned
}
