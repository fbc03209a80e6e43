//! After an available snapshot: retention (the pure decisions are in `retention`) and the
//! manual-snapshot quota warning.

use safeship::guard::Outcome;
use safeship::policy::DatabasePolicy;

use crate::events::publish;
use crate::job::Job;
use crate::{rds, retention, Deps};

/// Retention and the quota warning. Problems here are logged: they never fail a snapshot.
pub(crate) async fn prune(deps: &Deps, job: &Job, db: &DatabasePolicy) -> Vec<String> {
    let retention = db
        .snapshot
        .retention_days
        .unwrap_or_else(|| db.environment.default_retention_days());
    let owned = match rds::owned(&deps.rds, db).await {
        Ok(owned) => owned,
        Err(e) => {
            tracing::error!(error = %e, "listing safeship's snapshots for retention");
            return vec![];
        }
    };
    let mut pruned = Vec::new();
    for id in retention::to_prune(&owned, (deps.clock)(), retention, db.snapshot.keep_newest) {
        match rds::delete(&deps.rds, db, &id).await {
            Ok(()) => pruned.push(id),
            Err(e) => tracing::error!(error = %e, "pruning an old snapshot"),
        }
    }
    if !pruned.is_empty() {
        publish(
            deps,
            job,
            Outcome::SnapshotsPruned {
                database: job.database.clone(),
                snapshot_ids: pruned.clone(),
            },
        )
        .await;
    }
    match rds::account_manual_count(&deps.rds).await {
        Ok(count)
            if retention::nears_quota(
                count,
                deps.settings.quota,
                db.snapshot.quota_warning_percent,
            ) =>
        {
            tracing::warn!(
                count,
                quota = deps.settings.quota,
                "manual snapshots near the RDS quota"
            );
            publish(
                deps,
                job,
                Outcome::SnapshotQuotaWarning {
                    manual_snapshots: count,
                    quota: deps.settings.quota,
                },
            )
            .await;
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "counting manual snapshots for the quota"),
    }
    pruned
}
