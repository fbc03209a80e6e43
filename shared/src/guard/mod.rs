//! Guard events: one typed record of what a guard rail decided and did, published to EventBridge
//! (source `safeship`) so the notifier reacts to them like to any other event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{AlarmKind, AlarmState, Severity};

mod publisher;
pub use publisher::{GuardPublisher, METRICS_NAMESPACE, UNPUBLISHED_METRIC};

/// The guard-event format this safeship writes. Readers ignore fields they do not know and read
/// an unknown outcome kind as [`Outcome::Unknown`], so a newer writer never breaks an older
/// notifier during a rollout.
pub const GUARD_EVENT_VERSION: u32 = 1;

pub const GUARD_SOURCE: &str = "safeship";
pub const GUARD_DETAIL_TYPE: &str = "Safeship Guard Event";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guard {
    TrafficHook,
    AlarmRollback,
    PredeploySnapshot,
    IntegrityCheck,
    /// A guard rail this reader does not know (a newer safeship wrote it).
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuardEvent {
    /// The format version ([`GUARD_EVENT_VERSION`]); events written before it existed are 1.
    #[serde(default = "first_version")]
    pub version: u32,
    /// Stable for one decision, so a re-published event can be recognised downstream.
    pub id: String,
    pub time: DateTime<Utc>,
    pub guard: Guard,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub deployment_group: Option<String>,
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// The action was only reported, not performed.
    #[serde(default)]
    pub dry_run: bool,
    /// The account and region the event concerns, where safeship acted for a member account of
    /// an organisation (absent: the hub's own, as before these fields existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    tag = "kind"
)]
pub enum Outcome {
    HookPassed {
        lifecycle_event: Option<String>,
        checks: Vec<CheckResult>,
    },
    HookFailed {
        lifecycle_event: Option<String>,
        reason: String,
        checks: Vec<CheckResult>,
    },
    RollbackPerformed {
        alarm: AlarmSummary,
        actions: Vec<ActionResult>,
    },
    NothingToRollBack {
        alarm: AlarmSummary,
        reason: String,
    },
    FlagsSwitchedOff {
        alarm: AlarmSummary,
        profile: String,
        flags: Vec<String>,
        version: Option<i32>,
    },
    /// Feature flags switched off or back on by a person (`safeship flags off|on`).
    FlagsSwitchedByHand {
        /// `application/environment/profile`.
        profile: String,
        flags: Vec<String>,
        enabled: bool,
        version: Option<i32>,
        by: String,
    },
    SnapshotStarted {
        database: String,
        snapshot_id: String,
    },
    SnapshotAvailable {
        database: String,
        snapshot_id: String,
        duration_ms: u64,
    },
    SnapshotFailed {
        database: String,
        snapshot_id: Option<String>,
        error: String,
    },
    SnapshotsPruned {
        database: String,
        snapshot_ids: Vec<String>,
    },
    SnapshotQuotaWarning {
        manual_snapshots: u32,
        quota: u32,
    },
    IntegrityAnomaly {
        database: String,
        /// `schema.table`, or the name of a zero-count query.
        table: String,
        column: Option<String>,
        description: String,
        /// Deployments of the database's groups that completed since the previous run.
        since_deployments: Vec<String>,
        /// `failure` for an anomaly (lost rows, NULLs where none may be), `warning` for unusual
        /// growth.
        #[serde(default = "failure")]
        severity: Severity,
    },
    IntegrityRunFailed {
        database: String,
        error: String,
    },
    /// One integrity run's findings, worst first: a run is one message, not one per finding.
    /// (`integrity-anomaly`, one event per finding, is what releases before it wrote; readers
    /// still read it.)
    IntegrityFindings {
        database: String,
        findings: Vec<IntegrityFinding>,
        /// Findings left out so the event stays far inside EventBridge's 256 KB entry limit.
        #[serde(default)]
        more: u32,
        /// Deployments of the database's groups that completed since the previous run.
        since_deployments: Vec<String>,
        /// What kept the run from checking everything, when something did.
        #[serde(default)]
        problems: Option<String>,
    },
    /// An outcome kind this reader does not know (a newer safeship wrote it).
    #[serde(other)]
    Unknown,
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::HookPassed { .. } => "hook-passed",
            Outcome::HookFailed { .. } => "hook-failed",
            Outcome::RollbackPerformed { .. } => "rollback-performed",
            Outcome::NothingToRollBack { .. } => "nothing-to-roll-back",
            Outcome::FlagsSwitchedOff { .. } => "flags-switched-off",
            Outcome::FlagsSwitchedByHand { .. } => "flags-switched-by-hand",
            Outcome::SnapshotStarted { .. } => "snapshot-started",
            Outcome::SnapshotAvailable { .. } => "snapshot-available",
            Outcome::SnapshotFailed { .. } => "snapshot-failed",
            Outcome::SnapshotsPruned { .. } => "snapshots-pruned",
            Outcome::SnapshotQuotaWarning { .. } => "snapshot-quota-warning",
            Outcome::IntegrityAnomaly { .. } => "integrity-anomaly",
            Outcome::IntegrityRunFailed { .. } => "integrity-run-failed",
            Outcome::IntegrityFindings { .. } => "integrity-findings",
            Outcome::Unknown => "unknown",
        }
    }

    /// How much it matters to people; notification routing filters on this.
    pub fn severity(&self) -> Severity {
        match self {
            Outcome::HookPassed { .. }
            | Outcome::SnapshotStarted { .. }
            | Outcome::SnapshotAvailable { .. }
            | Outcome::SnapshotsPruned { .. }
            | Outcome::Unknown => Severity::Info,
            Outcome::NothingToRollBack { .. } | Outcome::SnapshotQuotaWarning { .. } => {
                Severity::Warning
            }
            // Off by hand is someone acting on trouble; back on is the end of it.
            Outcome::FlagsSwitchedByHand { enabled: false, .. } => Severity::Warning,
            Outcome::FlagsSwitchedByHand { enabled: true, .. } => Severity::Info,
            Outcome::HookFailed { .. }
            | Outcome::RollbackPerformed { .. }
            | Outcome::FlagsSwitchedOff { .. }
            | Outcome::SnapshotFailed { .. }
            | Outcome::IntegrityRunFailed { .. } => Severity::Failure,
            Outcome::IntegrityAnomaly { severity, .. } => *severity,
            Outcome::IntegrityFindings {
                findings, problems, ..
            } => {
                let worst = findings.iter().map(|f| f.severity).max();
                if problems.is_some() {
                    Severity::Failure
                } else {
                    worst.unwrap_or(Severity::Info)
                }
            }
        }
    }
}

fn first_version() -> u32 {
    1
}

fn failure() -> Severity {
    Severity::Failure
}

/// One thing an integrity run found wrong (or, at `warning`, unusual).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IntegrityFinding {
    /// `schema.table`, or the name of a zero-count query.
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub description: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub duration_ms: u64,
    /// The failing expectation, or a note (e.g. latency figures).
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AlarmSummary {
    pub name: String,
    #[serde(default)]
    pub arn: Option<String>,
    pub kind: AlarmKind,
    pub state: AlarmState,
    pub reason: String,
    pub state_changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ActionResult {
    /// e.g. `stop-deployment d-123`, `redeploy revision of d-100`, `flags off checkout-flags/release-flags`.
    pub action: String,
    pub succeeded: bool,
    #[serde(default)]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_with_kind_tag() {
        let ev = GuardEvent {
            version: GUARD_EVENT_VERSION,
            id: "traffic-hook:h-1".into(),
            time: "2026-11-20T10:00:00Z".parse().unwrap(),
            guard: Guard::TrafficHook,
            application: Some("checkout".into()),
            deployment_group: Some("checkout-prod".into()),
            deployment_id: Some("d-1".into()),
            dry_run: false,
            account: None,
            region: None,
            outcome: Outcome::HookFailed {
                lifecycle_event: Some("BeforeAllowTraffic".into()),
                reason: "health: /version expected \"v2\", found \"v1\"".into(),
                checks: vec![CheckResult {
                    name: "health".into(),
                    passed: false,
                    duration_ms: 12,
                    detail: Some("/version expected \"v2\", found \"v1\"".into()),
                }],
            },
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["outcome"]["kind"], "hook-failed");
        assert_eq!(json["deployment-group"], "checkout-prod");
        let back: GuardEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.outcome.severity(), Severity::Failure);
    }
}

#[cfg(test)]
mod tolerant_reading {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_a_missing_version_is_1() {
        let ev: GuardEvent = serde_json::from_value(serde_json::json!({
            "id": "x", "time": "2026-11-20T10:00:00Z", "guard": "predeploy-snapshot",
            "added-later": {"a": 1},
            "outcome": {"kind": "snapshot-started", "database": "db", "snapshot-id": "s", "extra": true}
        }))
        .unwrap();
        assert_eq!(ev.version, 1);
        assert_eq!(
            ev.outcome,
            Outcome::SnapshotStarted {
                database: "db".into(),
                snapshot_id: "s".into()
            }
        );
    }

    #[test]
    fn an_unknown_kind_or_guard_reads_as_unknown() {
        let ev: GuardEvent = serde_json::from_value(serde_json::json!({
            "version": 2, "id": "x", "time": "2026-11-20T10:00:00Z", "guard": "cost-guard",
            "outcome": {"kind": "budget-exceeded", "by": 3}
        }))
        .unwrap();
        assert_eq!(ev.version, 2);
        assert_eq!(ev.guard, Guard::Unknown);
        assert_eq!(ev.outcome, Outcome::Unknown);
        assert_eq!(ev.outcome.kind(), "unknown");
    }
}
