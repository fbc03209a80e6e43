//! The RDS side: create (or find) a snapshot of an instance or an Aurora cluster, read its
//! status, list safeship's own snapshots, delete one. Instance and cluster APIs differ only in
//! names; everything above this module sees one shape.

use aws_sdk_rds::types::Tag;
use aws_sdk_rds::Client;
use chrono::{DateTime, Utc};
use safeship::policy::{DatabaseKind, DatabasePolicy};

use crate::retention::OwnedSnapshot;
use crate::Error;

/// The tag that marks a snapshot as safeship's: only these are ever pruned.
pub const DEPLOYMENT_TAG: &str = "safeship:deployment-id";

/// A snapshot's state as RDS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub status: String,
    pub created: Option<DateTime<Utc>>,
}

/// What creating a snapshot led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new snapshot was started.
    Started(Snapshot),
    /// A snapshot with this identifier already exists: an earlier trigger made it.
    Existing(Snapshot),
}

pub async fn create(
    client: &Client,
    db: &DatabasePolicy,
    id: &str,
    tags: &[(String, String)],
) -> Result<Created, Error> {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let resource = format!("{} {} (snapshot {id})", kind_name(db), db.identifier);
    match db.kind {
        DatabaseKind::Instance => {
            let sent = client
                .create_db_snapshot()
                .db_snapshot_identifier(id)
                .db_instance_identifier(&db.identifier)
                .set_tags(Some(tags))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    let s = out.db_snapshot;
                    Ok(Created::Started(Snapshot {
                        id: id.to_owned(),
                        status: s
                            .as_ref()
                            .and_then(|s| s.status.clone())
                            .unwrap_or_else(|| "creating".into()),
                        created: s
                            .as_ref()
                            .and_then(|s| s.snapshot_create_time.as_ref())
                            .and_then(safeship::aws::to_chrono),
                    }))
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_db_snapshot_already_exists_fault()) =>
                {
                    let existing = status(client, db, id).await?;
                    Ok(Created::Existing(existing.ok_or_else(|| {
                        Error::Safeship(safeship::Error::unexpected(
                            "rds:DescribeDBSnapshots",
                            resource.clone(),
                            "CreateDBSnapshot said it exists, DescribeDBSnapshots does not find it",
                        ))
                    })?))
                }
                Err(e) => Err(Error::from(safeship::Error::aws(
                    "rds:CreateDBSnapshot",
                    resource,
                    e,
                ))),
            }
        }
        DatabaseKind::Cluster => {
            let sent = client
                .create_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(id)
                .db_cluster_identifier(&db.identifier)
                .set_tags(Some(tags))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    let s = out.db_cluster_snapshot;
                    Ok(Created::Started(Snapshot {
                        id: id.to_owned(),
                        status: s
                            .as_ref()
                            .and_then(|s| s.status.clone())
                            .unwrap_or_else(|| "creating".into()),
                        created: s
                            .as_ref()
                            .and_then(|s| s.snapshot_create_time.as_ref())
                            .and_then(safeship::aws::to_chrono),
                    }))
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_db_cluster_snapshot_already_exists_fault()) =>
                {
                    let existing = status(client, db, id).await?;
                    Ok(Created::Existing(existing.ok_or_else(|| {
                        Error::Safeship(safeship::Error::unexpected(
                            "rds:DescribeDBClusterSnapshots",
                            resource.clone(),
                            "CreateDBClusterSnapshot said it exists, the description does not find it",
                        ))
                    })?))
                }
                Err(e) => Err(Error::from(safeship::Error::aws(
                    "rds:CreateDBClusterSnapshot",
                    resource,
                    e,
                ))),
            }
        }
    }
}

/// The call that creates a snapshot of `db`, as errors name it.
pub fn create_action(db: &DatabasePolicy) -> &'static str {
    match db.kind {
        DatabaseKind::Instance => "rds:CreateDBSnapshot",
        DatabaseKind::Cluster => "rds:CreateDBClusterSnapshot",
    }
}

fn kind_name(db: &DatabasePolicy) -> &'static str {
    match db.kind {
        DatabaseKind::Instance => "DB instance",
        DatabaseKind::Cluster => "DB cluster",
    }
}

/// The snapshot's current state, or `None` if it does not exist.
pub async fn status(
    client: &Client,
    db: &DatabasePolicy,
    id: &str,
) -> Result<Option<Snapshot>, Error> {
    match db.kind {
        DatabaseKind::Instance => {
            match client
                .describe_db_snapshots()
                .db_snapshot_identifier(id)
                .send()
                .await
            {
                Ok(out) => Ok(out
                    .db_snapshots
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .map(|s| Snapshot {
                        id: id.to_owned(),
                        status: s.status.unwrap_or_default(),
                        created: s
                            .snapshot_create_time
                            .as_ref()
                            .and_then(safeship::aws::to_chrono),
                    })),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_db_snapshot_not_found_fault()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(Error::from(safeship::Error::aws(
                    "rds:DescribeDBSnapshots",
                    format!("snapshot {id}"),
                    e,
                ))),
            }
        }
        DatabaseKind::Cluster => {
            match client
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(id)
                .send()
                .await
            {
                Ok(out) => Ok(out
                    .db_cluster_snapshots
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .map(|s| Snapshot {
                        id: id.to_owned(),
                        status: s.status.unwrap_or_default(),
                        created: s
                            .snapshot_create_time
                            .as_ref()
                            .and_then(safeship::aws::to_chrono),
                    })),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_db_cluster_snapshot_not_found_fault()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(Error::from(safeship::Error::aws(
                    "rds:DescribeDBClusterSnapshots",
                    format!("cluster snapshot {id}"),
                    e,
                ))),
            }
        }
    }
}

/// The database's manual snapshots that safeship made (tagged [`DEPLOYMENT_TAG`]).
pub async fn owned(client: &Client, db: &DatabasePolicy) -> Result<Vec<OwnedSnapshot>, Error> {
    // Ours when tagged; the tag's value is the deployment (`none` for a direct request).
    let ours = |tags: &[Tag]| {
        tags.iter()
            .find(|t| t.key.as_deref() == Some(DEPLOYMENT_TAG))
            .map(|t| t.value.clone().unwrap_or_default())
    };
    let mut owned = Vec::new();
    match db.kind {
        DatabaseKind::Instance => {
            let mut pages = client
                .describe_db_snapshots()
                .db_instance_identifier(&db.identifier)
                .snapshot_type("manual")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    Error::from(safeship::Error::aws(
                        "rds:DescribeDBSnapshots",
                        format!("DB instance {}", db.identifier),
                        e,
                    ))
                })?;
                for s in page.db_snapshots.unwrap_or_default() {
                    if let Some(deployment) = ours(s.tag_list()) {
                        owned.push(OwnedSnapshot {
                            deployment,
                            id: s.db_snapshot_identifier.unwrap_or_default(),
                            created: s
                                .snapshot_create_time
                                .as_ref()
                                .and_then(safeship::aws::to_chrono),
                            status: s.status.unwrap_or_default(),
                        });
                    }
                }
            }
        }
        DatabaseKind::Cluster => {
            let mut pages = client
                .describe_db_cluster_snapshots()
                .db_cluster_identifier(&db.identifier)
                .snapshot_type("manual")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    Error::from(safeship::Error::aws(
                        "rds:DescribeDBClusterSnapshots",
                        format!("DB cluster {}", db.identifier),
                        e,
                    ))
                })?;
                for s in page.db_cluster_snapshots.unwrap_or_default() {
                    if let Some(deployment) = ours(s.tag_list()) {
                        owned.push(OwnedSnapshot {
                            deployment,
                            id: s.db_cluster_snapshot_identifier.unwrap_or_default(),
                            created: s
                                .snapshot_create_time
                                .as_ref()
                                .and_then(safeship::aws::to_chrono),
                            status: s.status.unwrap_or_default(),
                        });
                    }
                }
            }
        }
    }
    Ok(owned)
}

/// The account's manual snapshots in this region of the database's kind: RDS counts manual DB
/// instance snapshots and manual DB cluster snapshots against separate quotas.
pub async fn account_manual_count(client: &Client, kind: DatabaseKind) -> Result<u32, Error> {
    let mut count = 0u32;
    match kind {
        DatabaseKind::Instance => {
            let mut pages = client
                .describe_db_snapshots()
                .snapshot_type("manual")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    Error::from(safeship::Error::aws(
                        "rds:DescribeDBSnapshots",
                        "manual snapshots",
                        e,
                    ))
                })?;
                let n = page.db_snapshots.map_or(0, |v| v.len());
                count = count.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        DatabaseKind::Cluster => {
            let mut pages = client
                .describe_db_cluster_snapshots()
                .snapshot_type("manual")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    Error::from(safeship::Error::aws(
                        "rds:DescribeDBClusterSnapshots",
                        "manual cluster snapshots",
                        e,
                    ))
                })?;
                let n = page.db_cluster_snapshots.map_or(0, |v| v.len());
                count = count.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }
    Ok(count)
}

pub async fn delete(client: &Client, db: &DatabasePolicy, id: &str) -> Result<(), Error> {
    match db.kind {
        DatabaseKind::Instance => client
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::from(safeship::Error::aws(
                    "rds:DeleteDBSnapshot",
                    format!("snapshot {id}"),
                    e,
                ))
            }),
        DatabaseKind::Cluster => client
            .delete_db_cluster_snapshot()
            .db_cluster_snapshot_identifier(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::from(safeship::Error::aws(
                    "rds:DeleteDBClusterSnapshot",
                    format!("cluster snapshot {id}"),
                    e,
                ))
            }),
    }
}
