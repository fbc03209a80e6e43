//! Pre-deploy RDS snapshot: before migrations, a snapshot of the deployment's database, waited
//! for until it is `available`. No fresh snapshot, no destructive deploy: a hook reports
//! `Succeeded` only once the snapshot is usable (the policy may downgrade a failure to a warning).
//!
//! Triggers, one code path: a CodeDeploy lifecycle hook (`BeforeInstall` / `BeforeAllowTraffic`),
//! a pipeline's direct invocation, and the deployment's `START` event. A wait that outlives the
//! invocation continues in an asynchronous invocation of this same function, carrying its state.
//! A group with `snapshot.then-traffic-hook` hands its hook to the traffic hook once the snapshot
//! is made, so one Lambda `PreTraffic` hook snapshots, then checks, and reports once.

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::runtime::{invocation_deadline, Answer, Common, Failure};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod continuation;
mod ecs;
mod events;
mod freshness;
mod handoff;
mod hook;
mod job;
mod naming;
mod prune;
mod rds;
mod request;
mod retention;
mod settings;

pub use job::{take_and_wait, Job};
pub use retention::OwnedSnapshot;
pub use settings::SnapshotSettings;

pub const FUNCTION: &str = "predeploy-snapshot";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error("direct invocation: {0}")]
    Request(String),
    #[error("database {database:?} is not in the policy's databases (known: {known})")]
    UnknownDatabase { database: String, known: String },
    #[error("deployment group {group} has no snapshot section in the policy")]
    NoSnapshotPolicy { group: String },
    #[error("handing hook execution {hook_execution} to the traffic hook: lambda:Invoke of {function} failed: {problem}")]
    HandOver {
        hook_execution: String,
        function: String,
        problem: String,
    },
    #[error("continuing the wait for snapshot {snapshot_id}: lambda:Invoke of {function} failed: {problem}")]
    Continue {
        snapshot_id: String,
        function: String,
        problem: String,
    },
    #[error("pruning {database}'s snapshots past retention did not finish: {problem}")]
    Prune { database: String, problem: String },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Request(_) => "Request",
            Error::UnknownDatabase { .. } => "UnknownDatabase",
            Error::NoSnapshotPolicy { .. } => "NoSnapshotPolicy",
            Error::Continue { .. } => "Continue",
            Error::HandOver { .. } => "HandOver",
            Error::Prune { .. } => "Prune",
        }
    }
}

impl Answer for SnapshotAnswer {
    fn repeated(mut self) -> Self {
        self.duplicate = true;
        self
    }
}

/// The time, injectable so retention can be tested against snapshots made "days ago".
pub type Clock = std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct Deps {
    pub common: Common,
    pub rds: aws_sdk_rds::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub lambda: aws_sdk_lambda::Client,
    /// For ECS hooks: the target revision's task definition, when the service has a revert note.
    pub ecs: aws_sdk_ecs::Client,
    pub settings: SnapshotSettings,
    pub clock: Clock,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let settings = SnapshotSettings::from_env(env)?;
        let common = Common::load(FUNCTION, env).await?;
        settings.check_against(&common.policy)?;
        Ok(Deps {
            rds: safeship::aws_client!(aws_sdk_rds, &common.sdk),
            codedeploy: safeship::aws_client!(aws_sdk_codedeploy, &common.sdk),
            lambda: safeship::aws_client!(aws_sdk_lambda, &common.sdk),
            ecs: safeship::aws_client!(aws_sdk_ecs, &common.sdk),
            common,
            settings,
            clock: std::sync::Arc::new(Utc::now),
        })
    }
}

/// How a snapshot stands, as an invocation answers it (the JSON strings are the wire format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotStatus {
    #[serde(rename = "available")]
    Available,
    #[serde(rename = "creating")]
    Creating,
    #[serde(rename = "failed")]
    Failed,
    /// A hook's wait goes on in a continuation.
    #[serde(rename = "continued")]
    Continued,
    /// Freshness: an available snapshot newer than the limit exists.
    #[serde(rename = "fresh")]
    Fresh,
    /// Freshness: none newer than the limit.
    #[serde(rename = "stale")]
    Stale,
    /// A `START` event of a group without a snapshot section.
    #[serde(rename = "none configured")]
    NoneConfigured,
    /// The hook of safeship's own revert: passed at once, no snapshot (a revert is never held;
    /// the reverted deployment's pre-deploy snapshot stands).
    #[serde(rename = "not held")]
    NotHeld,
    /// Under `SAFESHIP_DRY_RUN`: nothing was created or deleted; the detail says what would be.
    #[serde(rename = "dry run")]
    DryRun,
}

/// What a hook reported to CodeDeploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookStatus {
    Succeeded,
    Failed,
}

/// What an invocation answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotAnswer {
    pub database: String,
    pub snapshot_id: Option<String>,
    /// How the snapshot stands.
    pub status: SnapshotStatus,
    #[serde(default)]
    pub detail: Option<String>,
    /// For hooks: what was reported to CodeDeploy (`None` while a continuation waits on).
    #[serde(default)]
    pub hook_status: Option<HookStatus>,
    #[serde(default)]
    pub pruned: Vec<String>,
    /// For hooks under `then-traffic-hook`: the traffic hook the hook execution was handed to;
    /// it reports (`hook-status` stays `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_to: Option<String>,
    #[serde(default)]
    pub duplicate: bool,
}

/// What the function returns: the snapshot's answer, or — to ECS, which reads it — the gate's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SnapshotReply {
    Snapshot(SnapshotAnswer),
    Ecs(safeship::event::EcsAnswer),
}

/// One invocation: an ECS lifecycle hook (the snapshot gate, answered by return value) or
/// anything [`snapshot_handler`] takes.
pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<SnapshotReply, Error> {
    if safeship::event::is_ecs_hook(&event.payload) {
        let deadline = invocation_deadline(event.context.deadline, deps.settings.margin);
        return Ok(SnapshotReply::Ecs(
            ecs::gate(deps, &event.payload, deadline).await,
        ));
    }
    snapshot_handler(deps, event)
        .await
        .map(SnapshotReply::Snapshot)
}

/// A CodeDeploy lifecycle hook, a deployment's `START`, a continuation or a pipeline's request.
pub async fn snapshot_handler(
    deps: &Deps,
    event: LambdaEvent<Value>,
) -> Result<SnapshotAnswer, Error> {
    let deadline = invocation_deadline(event.context.deadline, deps.settings.margin);
    request::dispatch(deps, &event.payload, deadline).await
}

/// The freshness gate, as a pipeline's direct invocation answers it (`fresh` or `stale`).
pub async fn fresh(
    deps: &Deps,
    database: &str,
    max_age_minutes: u32,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let request = request::FreshnessRequest {
        database: database.to_owned(),
        max_age_minutes,
    };
    freshness::freshness(deps, &request, deadline).await
}

/// The database's snapshots that safeship made (tagged `safeship:deployment-id`), newest first.
pub async fn owned_snapshots(deps: &Deps, database: &str) -> Result<Vec<OwnedSnapshot>, Error> {
    let db = job::resolve_database(&deps.common.policy, database)?;
    let mut owned = rds::owned(&deps.rds, db).await?;
    owned.sort_by_key(|s| std::cmp::Reverse(s.created));
    Ok(owned)
}

/// What pruning by hand found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pruned {
    /// Deleted (or, in a dry run, to be deleted).
    pub pruned: Vec<String>,
    /// `<snapshot id>: <error>` for each deletion RDS refused.
    pub failed: Vec<String>,
    pub dry_run: bool,
}

/// Retention by hand (the CLI's `snapshot prune`): the same rule as after each snapshot (older
/// than the retention, beyond the newest `keep-newest`, only safeship's own), every failure
/// reported rather than logged.
pub async fn prune_now(deps: &Deps, database: &str, dry_run: bool) -> Result<Pruned, Error> {
    let db = job::resolve_database(&deps.common.policy, database)?;
    let owned = rds::owned(&deps.rds, db).await?;
    let old = retention::to_prune(
        &owned,
        (deps.clock)(),
        job::retention_days(db),
        db.snapshot.keep_newest,
    );
    let mut done = Pruned {
        pruned: vec![],
        failed: vec![],
        dry_run,
    };
    for id in old {
        if dry_run {
            done.pruned.push(id);
            continue;
        }
        match rds::delete(&deps.rds, db, &id).await {
            Ok(()) => done.pruned.push(id),
            Err(e) => done.failed.push(format!("{id}: {e}")),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_keep_their_wire_strings() {
        let cases = [
            (SnapshotStatus::Available, "available"),
            (SnapshotStatus::Creating, "creating"),
            (SnapshotStatus::Failed, "failed"),
            (SnapshotStatus::Continued, "continued"),
            (SnapshotStatus::Fresh, "fresh"),
            (SnapshotStatus::Stale, "stale"),
            (SnapshotStatus::NoneConfigured, "none configured"),
            (SnapshotStatus::DryRun, "dry run"),
        ];
        for (status, wire) in cases {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(wire));
            assert_eq!(
                serde_json::from_value::<SnapshotStatus>(json!(wire)).unwrap(),
                status
            );
        }
        for (status, wire) in [
            (HookStatus::Succeeded, "Succeeded"),
            (HookStatus::Failed, "Failed"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(wire));
        }
        let answer = SnapshotAnswer {
            database: "db".into(),
            snapshot_id: None,
            status: SnapshotStatus::NoneConfigured,
            detail: None,
            hook_status: Some(HookStatus::Succeeded),
            pruned: vec![],
            handed_to: None,
            duplicate: false,
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"database":"db","snapshot-id":null,"status":"none configured","detail":null,"hook-status":"Succeeded","pruned":[],"duplicate":false}"#
        );
    }
}
