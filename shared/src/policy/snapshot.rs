//! The snapshot section: which database a deployment group snapshots first, and the databases'
//! snapshot retention.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IntegrityPolicy;
use crate::model::Environment;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupSnapshotPolicy {
    /// A key of the policy's `databases`.
    pub database: String,
    /// `block` (default): no snapshot, no deployment. `warn`: report and let it go on.
    #[serde(default)]
    pub on_failure: SnapshotFailureMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotFailureMode {
    #[default]
    Block,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseKind {
    /// An RDS DB instance (`CreateDBSnapshot`).
    Instance,
    /// An Aurora cluster (`CreateDBClusterSnapshot`).
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DatabasePolicy {
    pub kind: DatabaseKind,
    /// The DB instance or cluster identifier.
    pub identifier: String,
    pub environment: Environment,
    #[serde(default)]
    pub snapshot: SnapshotRetention,
    /// The nightly integrity check of this database; absent: not checked.
    #[serde(default)]
    pub integrity: Option<IntegrityPolicy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SnapshotRetention {
    #[serde(default = "default_snapshot_prefix")]
    pub prefix: String,
    /// Days to keep safeship's snapshots; default by environment (7 dev/staging, 30 prod).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Always keep this many of the newest, whatever their age.
    #[serde(default = "default_keep_newest")]
    pub keep_newest: u32,
    /// Warn when the account's manual snapshots reach this share of the quota (percent).
    #[serde(default = "default_quota_warning_percent")]
    pub quota_warning_percent: u32,
}

impl Default for SnapshotRetention {
    fn default() -> Self {
        SnapshotRetention {
            prefix: default_snapshot_prefix(),
            retention_days: None,
            keep_newest: default_keep_newest(),
            quota_warning_percent: default_quota_warning_percent(),
        }
    }
}

fn default_snapshot_prefix() -> String {
    "safeship".into()
}
fn default_keep_newest() -> u32 {
    3
}
fn default_quota_warning_percent() -> u32 {
    90
}

impl GroupSnapshotPolicy {
    /// The section's problems; `at` names the deployment group.
    pub(super) fn problems(
        &self,
        at: &str,
        databases: &BTreeMap<String, DatabasePolicy>,
        problems: &mut Vec<String>,
    ) {
        if !databases.contains_key(&self.database) {
            problems.push(format!(
                "{at}.snapshot.database: {:?} is not a key of databases",
                self.database
            ));
        }
    }
}

impl SnapshotRetention {
    /// The section's problems; `at` names the section (`databases.<name>.snapshot`).
    pub(super) fn problems(&self, at: &str, problems: &mut Vec<String>) {
        let prefix = &self.prefix;
        if prefix.is_empty()
            || !prefix.starts_with(|c: char| c.is_ascii_alphabetic())
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            problems.push(format!(
                "{at}.prefix: must start with a letter and hold only letters, digits and hyphens, found {prefix:?}"
            ));
        }
        if self.retention_days == Some(0) {
            problems.push(format!("{at}.retention-days: must be at least 1"));
        }
        if !(1..=100).contains(&self.quota_warning_percent) {
            problems.push(format!("{at}.quota-warning-percent: must be 1..=100"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_defaults_by_environment() {
        assert_eq!(Environment::Prod.default_retention_days(), 30);
        assert_eq!(Environment::Staging.default_retention_days(), 7);
        assert_eq!(Environment::Dev.default_retention_days(), 7);
    }
}
