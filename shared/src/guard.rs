//! Guard events: one typed record of what a guard rail decided and did, published to EventBridge
//! (source `safeship`) so the notifier reacts to them like to any other event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{AlarmKind, AlarmState};
use crate::policy::Severity;

pub const GUARD_SOURCE: &str = "safeship";
pub const GUARD_DETAIL_TYPE: &str = "Safeship Guard Event";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guard {
    TrafficHook,
    AlarmRollback,
    PredeploySnapshot,
    DeployNotify,
    IntegrityCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GuardEvent {
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
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    tag = "kind",
    deny_unknown_fields
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
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::HookPassed { .. } => "hook-passed",
            Outcome::HookFailed { .. } => "hook-failed",
            Outcome::RollbackPerformed { .. } => "rollback-performed",
            Outcome::NothingToRollBack { .. } => "nothing-to-roll-back",
            Outcome::FlagsSwitchedOff { .. } => "flags-switched-off",
            Outcome::SnapshotStarted { .. } => "snapshot-started",
            Outcome::SnapshotAvailable { .. } => "snapshot-available",
            Outcome::SnapshotFailed { .. } => "snapshot-failed",
            Outcome::SnapshotsPruned { .. } => "snapshots-pruned",
            Outcome::SnapshotQuotaWarning { .. } => "snapshot-quota-warning",
            Outcome::IntegrityAnomaly { .. } => "integrity-anomaly",
            Outcome::IntegrityRunFailed { .. } => "integrity-run-failed",
        }
    }

    /// How much it matters to people; notification routing filters on this.
    pub fn severity(&self) -> Severity {
        match self {
            Outcome::HookPassed { .. }
            | Outcome::SnapshotStarted { .. }
            | Outcome::SnapshotAvailable { .. }
            | Outcome::SnapshotsPruned { .. } => Severity::Info,
            Outcome::NothingToRollBack { .. } | Outcome::SnapshotQuotaWarning { .. } => {
                Severity::Warning
            }
            Outcome::HookFailed { .. }
            | Outcome::RollbackPerformed { .. }
            | Outcome::FlagsSwitchedOff { .. }
            | Outcome::SnapshotFailed { .. }
            | Outcome::IntegrityRunFailed { .. } => Severity::Failure,
            Outcome::IntegrityAnomaly { severity, .. } => *severity,
        }
    }
}

fn failure() -> Severity {
    Severity::Failure
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub duration_ms: u64,
    /// The failing expectation, or a note (e.g. latency figures).
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ActionResult {
    /// e.g. `stop-deployment d-123`, `redeploy revision of d-100`, `flags off checkout-flags/release-flags`.
    pub action: String,
    pub succeeded: bool,
    #[serde(default)]
    pub detail: Option<String>,
}

/// Publishes guard events to one EventBridge bus.
#[derive(Debug, Clone)]
pub struct GuardPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl GuardPublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        GuardPublisher {
            client,
            bus: bus.into(),
        }
    }

    pub async fn publish(&self, event: &GuardEvent) -> Result<()> {
        let detail = serde_json::to_string(event).expect("guard events always serialise");
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(GUARD_SOURCE)
            .detail_type(GUARD_DETAIL_TYPE)
            .detail(detail)
            .time(aws_smithy_types::DateTime::from_millis(
                event.time.timestamp_millis(),
            ))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| Error::aws("events:PutEvents", format!("bus {}", self.bus), e))?;
        // PutEvents reports per-entry failures in a 200 response; a silent drop would lose the event.
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| {
                    e.error_code()
                        .map(|c| format!("{c}: {}", e.error_message().unwrap_or("")))
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::unexpected(
                "events:PutEvents",
                format!("bus {}", self.bus),
                format!("entry for guard event {} rejected: {why}", event.id),
            ));
        }
        tracing::info!(guard_event = %event.id, kind = event.outcome.kind(), bus = %self.bus, "guard event published");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_with_kind_tag() {
        let ev = GuardEvent {
            id: "traffic-hook:h-1".into(),
            time: "2026-11-20T10:00:00Z".parse().unwrap(),
            guard: Guard::TrafficHook,
            application: Some("checkout".into()),
            deployment_group: Some("checkout-prod".into()),
            deployment_id: Some("d-1".into()),
            dry_run: false,
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
