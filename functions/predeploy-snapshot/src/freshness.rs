//! The freshness gate: is there an `available` snapshot of the database newer than a limit?

use crate::job::resolve_database;
use crate::request::FreshnessRequest;
use crate::{rds, retention, Deps, Error, SnapshotAnswer, SnapshotStatus};

/// The freshness gate: an `available` snapshot of the database newer than the limit?
pub(crate) async fn freshness(
    deps: &Deps,
    request: &FreshnessRequest,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let db = resolve_database(&deps.common.policy, &request.database)?;
    let owned = tokio::time::timeout_at(deadline, rds::owned(&deps.rds, db))
        .await
        .map_err(|_| {
            safeship::Error::unexpected(
                "rds:DescribeDB(Cluster)Snapshots",
                format!("{} (freshness)", db.identifier),
                "no answer before the invocation's deadline",
            )
        })??;
    let max_age = chrono::Duration::minutes(i64::from(request.max_age_minutes));
    let found = retention::fresh(&owned, (deps.clock)(), max_age);
    Ok(SnapshotAnswer {
        database: request.database.clone(),
        snapshot_id: found.map(|s| s.id.clone()),
        status: if found.is_some() {
            SnapshotStatus::Fresh
        } else {
            SnapshotStatus::Stale
        },
        detail: Some(match found {
            Some(s) => format!(
                "{} is available, taken {}",
                s.id,
                s.created.map(|c| c.to_rfc3339()).unwrap_or_default()
            ),
            None => format!(
                "no available snapshot newer than {} minutes",
                request.max_age_minutes
            ),
        }),
        hook_status: None,
        pruned: vec![],
        handed_to: None,
        duplicate: false,
    })
}
