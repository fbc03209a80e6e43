//! The snapshot section: which database a deployment group snapshots first, and the databases'
//! snapshot retention.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IntegrityPolicy;
use crate::model::Environment;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupSnapshotPolicy {
    /// A key of the policy's `databases`.
    pub database: String,
    /// `block` (default): no snapshot, no deployment. `warn`: report and let it go on.
    #[serde(default)]
    pub on_failure: SnapshotFailureMode,
    /// For a Lambda deployment, whose `PreTraffic` hook takes one function: once the snapshot
    /// is available (or failed under `warn`), the snapshot hook hands the hook execution to the
    /// traffic hook (`SAFESHIP_TRAFFIC_HOOK_FUNCTION`), which runs this group's smoke checks and
    /// reports. One report: the snapshot hook reports itself only when it does not hand over.
    #[serde(default)]
    pub then_traffic_hook: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotFailureMode {
    #[default]
    Block,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseKind {
    /// An RDS DB instance (`CreateDBSnapshot`).
    Instance,
    /// An Aurora cluster (`CreateDBClusterSnapshot`).
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SnapshotRetention {
    #[serde(default = "default_snapshot_prefix")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = MAX_PREFIX_LEN), regex(pattern = r"^[A-Za-z][A-Za-z0-9-]*$")))]
    pub prefix: String,
    /// Days to keep safeship's snapshots; default by environment (7 dev/staging, 30 prod).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_RETENTION_DAYS)))]
    pub retention_days: Option<u32>,
    /// Always keep this many of the newest, whatever their age.
    #[serde(default = "default_keep_newest")]
    #[cfg_attr(feature = "schema", schemars(range(max = MAX_KEEP_NEWEST)))]
    pub keep_newest: u32,
    /// Warn when the account's manual snapshots reach this share of the quota (percent).
    #[serde(default = "default_quota_warning_percent")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 100)))]
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
        if prefix.len() > MAX_PREFIX_LEN {
            problems.push(format!(
                "{at}.prefix: must be at most {MAX_PREFIX_LEN} characters (the snapshot identifier holds 63), found {}",
                prefix.len()
            ));
        }
        if let Some(days) = self.retention_days {
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                problems.push(format!(
                    "{at}.retention-days: must be 1..={MAX_RETENTION_DAYS} (10 years), found {days}"
                ));
            }
        }
        if self.keep_newest > MAX_KEEP_NEWEST {
            problems.push(format!(
                "{at}.keep-newest: must be 0..={MAX_KEEP_NEWEST}, found {}",
                self.keep_newest
            ));
        }
        if !(1..=100).contains(&self.quota_warning_percent) {
            problems.push(format!(
                "{at}.quota-warning-percent: must be 1..=100, found {}",
                self.quota_warning_percent
            ));
        }
    }
}

/// Ten years: no real retention is longer, and date arithmetic stays far inside chrono's range
/// (about 96 million days overflowed it, and the snapshot hook panicked).
pub const MAX_RETENTION_DAYS: u32 = 3_650;
/// RDS's manual snapshot quota is 100 per region by default; a raised quota stays in the
/// thousands.
pub const MAX_KEEP_NEWEST: u32 = 1_000;
/// The identifier is at most 63 characters and also names the database and the deployment.
pub const MAX_PREFIX_LEN: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_problems(section: &str) -> String {
        let doc = format!(
            "version: 1
databases:
  db:
    kind: instance
    identifier: db
    environment: prod
    snapshot: {section}
"
        );
        match super::super::Policy::parse(&doc, "inline") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_snapshot_number_has_an_upper_bound_named_with_the_field() {
        let err = snapshot_problems(
            "{retention-days: 96000000, keep-newest: 4294967295, quota-warning-percent: 101, prefix: abcdefghijklmnopqrstuvwxyz}",
        );
        for expected in [
            "databases.db.snapshot.retention-days: must be 1..=3650 (10 years), found 96000000",
            "databases.db.snapshot.keep-newest: must be 0..=1000, found 4294967295",
            "databases.db.snapshot.quota-warning-percent: must be 1..=100, found 101",
            "databases.db.snapshot.prefix: must be at most 20 characters",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        assert!(
            snapshot_problems("{retention-days: 0}").contains("retention-days: must be 1..=3650")
        );
        // The bounds themselves pass.
        assert_eq!(
            snapshot_problems(
                "{retention-days: 3650, keep-newest: 1000, quota-warning-percent: 100}"
            ),
            ""
        );
    }

    #[test]
    fn retention_defaults_by_environment() {
        assert_eq!(Environment::Prod.default_retention_days(), 30);
        assert_eq!(Environment::Staging.default_retention_days(), 7);
        assert_eq!(Environment::Dev.default_retention_days(), 7);
    }
}
