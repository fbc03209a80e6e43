//! `safeship snapshot restore`: the restore drill (and the real thing) — the latest pre-deploy
//! snapshot, or a named one, into a new DB instance or Aurora cluster. The CLI's own RDS calls:
//! no Lambda restores, so no function's role may.

use predeploy_snapshot::OwnedSnapshot;
use safeship::policy::{DatabaseKind, DatabasePolicy};
use serde::Serialize;

use crate::Error;

/// The snapshot to restore: the one named, else the newest available of safeship's.
pub fn choose<'a>(
    owned: &'a [OwnedSnapshot],
    named: Option<&str>,
) -> Result<&'a OwnedSnapshot, Error> {
    let available = |s: &&OwnedSnapshot| s.status == "available";
    match named {
        Some(id) => owned.iter().find(|s| s.id == id).ok_or_else(|| {
            Error::Usage(format!(
                "--snapshot {id}: not a snapshot of safeship's for this database (see `safeship snapshot list`)"
            ))
        }),
        None => owned
            .iter()
            .filter(available)
            .max_by_key(|s| s.created)
            .ok_or_else(|| Error::Usage("no available snapshot of safeship's to restore".into())),
    }
}

/// A restore RDS accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Restored {
    pub snapshot_id: String,
    pub deployment: String,
    pub target: String,
    /// `DB instance` or `DB cluster`.
    pub kind: &'static str,
    pub status: String,
}

/// Restores `snapshot` of `db` into a new `target`, tagged with where it came from.
pub async fn restore(
    rds: &aws_sdk_rds::Client,
    db: &DatabasePolicy,
    snapshot: &OwnedSnapshot,
    target: &str,
) -> Result<Restored, Error> {
    let tags = [aws_sdk_rds::types::Tag::builder()
        .key("safeship:restored-from")
        .value(&snapshot.id)
        .build()];
    let resource = || format!("snapshot {} into {target}", snapshot.id);
    match db.kind {
        DatabaseKind::Instance => {
            let out = rds
                .restore_db_instance_from_db_snapshot()
                .db_instance_identifier(target)
                .db_snapshot_identifier(&snapshot.id)
                .set_tags(Some(tags.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    Error::Safeship(safeship::Error::aws(
                        "rds:RestoreDBInstanceFromDBSnapshot",
                        resource(),
                        e,
                    ))
                })?;
            Ok(Restored {
                snapshot_id: snapshot.id.clone(),
                deployment: snapshot.deployment.clone(),
                target: target.to_owned(),
                kind: "DB instance",
                status: out
                    .db_instance
                    .and_then(|i| i.db_instance_status)
                    .unwrap_or_else(|| "creating".into()),
            })
        }
        DatabaseKind::Cluster => {
            // A cluster restore must name the engine: the snapshot's own.
            let described = rds
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(&snapshot.id)
                .send()
                .await
                .map_err(|e| {
                    Error::Safeship(safeship::Error::aws(
                        "rds:DescribeDBClusterSnapshots",
                        resource(),
                        e,
                    ))
                })?;
            let engine = described
                .db_cluster_snapshots()
                .first()
                .and_then(|s| s.engine.clone())
                .ok_or_else(|| {
                    Error::Safeship(safeship::Error::unexpected(
                        "rds:DescribeDBClusterSnapshots",
                        resource(),
                        "the snapshot names no engine",
                    ))
                })?;
            let out = rds
                .restore_db_cluster_from_snapshot()
                .db_cluster_identifier(target)
                .snapshot_identifier(&snapshot.id)
                .engine(engine)
                .set_tags(Some(tags.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    Error::Safeship(safeship::Error::aws(
                        "rds:RestoreDBClusterFromSnapshot",
                        resource(),
                        e,
                    ))
                })?;
            Ok(Restored {
                snapshot_id: snapshot.id.clone(),
                deployment: snapshot.deployment.clone(),
                target: target.to_owned(),
                kind: "DB cluster",
                status: out
                    .db_cluster
                    .and_then(|c| c.status)
                    .unwrap_or_else(|| "creating".into()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn snap(id: &str, hour: u32, status: &str) -> OwnedSnapshot {
        OwnedSnapshot {
            id: id.into(),
            deployment: format!("d-{id}"),
            created: Some(Utc.with_ymd_and_hms(2026, 12, 1, hour, 0, 0).unwrap()),
            status: status.into(),
        }
    }

    #[test]
    fn the_newest_available_snapshot_is_restored_unless_one_is_named() {
        let owned = [
            snap("a", 1, "available"),
            snap("b", 3, "creating"),
            snap("c", 2, "available"),
        ];
        assert_eq!(choose(&owned, None).unwrap().id, "c");
        assert_eq!(choose(&owned, Some("a")).unwrap().id, "a");
        assert!(choose(&owned, Some("z"))
            .unwrap_err()
            .to_string()
            .contains("--snapshot z"));
        assert!(choose(&[snap("b", 3, "creating")], None).is_err());
    }
}
