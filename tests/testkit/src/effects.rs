//! What safeship's functions did to the world, counted where it landed: the calls the emulated
//! endpoints answered with success, and the messages the Slack server took. The reliability
//! suite compares these counts between one delivery of an event and several.

use std::fmt;

use serde_json::Value;

use crate::split::Wait;

/// Side effects a person or a deployment would notice, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// CodeDeploy `PutLifecycleEventHookExecutionStatus`.
    pub hook_reports: usize,
    /// CodeDeploy `StopDeployment`.
    pub stops: usize,
    /// CodeDeploy `CreateDeployment` (a revert inside the bake window).
    pub deployments_created: usize,
    /// AppConfig `CreateHostedConfigurationVersion` (flags switched).
    pub flag_versions: usize,
    /// AppConfig `StartDeployment` (a flag version rolled out).
    pub flag_deployments: usize,
    /// RDS `CreateDBSnapshot` / `CreateDBClusterSnapshot`.
    pub snapshots_created: usize,
    /// RDS `DeleteDBSnapshot` / `DeleteDBClusterSnapshot` (pruned).
    pub snapshots_deleted: usize,
    /// SNS `Publish` (email).
    pub emails: usize,
    /// Guard events published (`PutEvents` entries), counted once per guard event id: a
    /// re-publish under the same id is the same event (EventBridge delivers at least once, so
    /// every consumer, the notifier too, keys on the id).
    pub guard_events: usize,
    /// Messages the Slack server took.
    pub slack_posts: usize,
}

impl Effects {
    /// Nothing at all.
    pub const NONE: Effects = Effects {
        hook_reports: 0,
        stops: 0,
        deployments_created: 0,
        flag_versions: 0,
        flag_deployments: 0,
        snapshots_created: 0,
        snapshots_deleted: 0,
        emails: 0,
        guard_events: 0,
        slack_posts: 0,
    };

    /// Counts `calls` (as recorded by split endpoints) and the messages Slack received.
    pub fn of(calls: &[Wait], slack: &[Value]) -> Effects {
        let mut e = Effects {
            slack_posts: slack.len(),
            ..Effects::default()
        };
        let mut guard_ids = std::collections::HashSet::new();
        for call in calls.iter().filter(|c| c.succeeded()) {
            let op = call.operation.as_str();
            match call.name() {
                "PutLifecycleEventHookExecutionStatus" => e.hook_reports += 1,
                "StopDeployment" => e.stops += 1,
                "CreateDeployment" => e.deployments_created += 1,
                "CreateDBSnapshot" | "CreateDBClusterSnapshot" => e.snapshots_created += 1,
                "DeleteDBSnapshot" | "DeleteDBClusterSnapshot" => e.snapshots_deleted += 1,
                "Publish" => e.emails += 1,
                "PutEvents" => guard_ids.extend(guard_event_ids(&call.request)),
                _ if op.starts_with("POST ") && op.ends_with("/hostedconfigurationversions") => {
                    e.flag_versions += 1
                }
                _ if op.starts_with("POST /applications/")
                    && op.contains("/environments/")
                    && op.ends_with("/deployments") =>
                {
                    e.flag_deployments += 1
                }
                _ => {}
            }
        }
        e.guard_events = guard_ids.len();
        e
    }

    /// What happened between `before` and now (`self`).
    pub fn since(&self, before: &Effects) -> Effects {
        Effects {
            hook_reports: self.hook_reports - before.hook_reports,
            stops: self.stops - before.stops,
            deployments_created: self.deployments_created - before.deployments_created,
            flag_versions: self.flag_versions - before.flag_versions,
            flag_deployments: self.flag_deployments - before.flag_deployments,
            snapshots_created: self.snapshots_created - before.snapshots_created,
            snapshots_deleted: self.snapshots_deleted - before.snapshots_deleted,
            emails: self.emails - before.emails,
            guard_events: self.guard_events - before.guard_events,
            slack_posts: self.slack_posts - before.slack_posts,
        }
    }

    fn counts(&self) -> [(&'static str, usize); 10] {
        [
            ("hook reports", self.hook_reports),
            ("stops", self.stops),
            ("deployments created", self.deployments_created),
            ("flag versions", self.flag_versions),
            ("flag deployments", self.flag_deployments),
            ("snapshots created", self.snapshots_created),
            ("snapshots deleted", self.snapshots_deleted),
            ("emails", self.emails),
            ("guard events", self.guard_events),
            ("slack posts", self.slack_posts),
        ]
    }

    /// Everything counted together (for the suite's totals).
    pub fn total(&self) -> usize {
        self.counts().iter().map(|(_, n)| n).sum()
    }
}

/// The guard event ids of a `PutEvents` request body's entries (each entry's `Detail` is the
/// guard event's JSON); an entry without one is keyed by its whole text.
pub fn guard_event_ids(body: &[u8]) -> Vec<String> {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let entries = request["Entries"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            entry["Detail"]
                .as_str()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|d| d["id"].as_str().map(str::to_owned))
                .unwrap_or_else(|| entry.to_string())
        })
        .collect()
}

impl fmt::Display for Effects {
    /// The kinds that happened, e.g. `1 hook reports, 2 guard events`; `nothing` if none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        if done.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&done.join(", "))
        }
    }
}
