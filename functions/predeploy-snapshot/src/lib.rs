//! Pre-deploy RDS snapshot: before migrations, a snapshot of the deployment's database, waited
//! for until it is `available`. No fresh snapshot, no destructive deploy: a hook reports
//! `Succeeded` only once the snapshot is usable (the policy may downgrade a failure to a warning).
//!
//! Triggers, one code path: a CodeDeploy lifecycle hook (`BeforeInstall` / `BeforeAllowTraffic`),
//! a pipeline's direct invocation, and the deployment's `START` event. A wait that outlives the
//! invocation continues in an asynchronous invocation of this same function, carrying its state.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::{DeploymentState, EventError, Inbound, LifecycleHook};
use safeship::guard::{Guard, GuardEvent, Outcome};
use safeship::policy::{DatabasePolicy, Policy, SnapshotFailureMode};
use safeship::runtime::{accept, answer_once, invocation_deadline, Answer, Common, Failure};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod naming;
pub mod rds;
pub mod retention;

pub const FUNCTION: &str = "predeploy-snapshot";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("direct invocation: {0}")]
    Request(String),
    #[error("database {database:?} is not in the policy's databases (known: {known})")]
    UnknownDatabase { database: String, known: String },
    #[error("deployment group {group} has no snapshot section in the policy")]
    NoSnapshotPolicy { group: String },
    #[error("continuing the wait for snapshot {snapshot_id}: lambda:Invoke of {function} failed: {problem}")]
    Continue {
        snapshot_id: String,
        function: String,
        problem: String,
    },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Event(e) => e.kind(),
            Error::Request(_) => "Request",
            Error::UnknownDatabase { .. } => "UnknownDatabase",
            Error::NoSnapshotPolicy { .. } => "NoSnapshotPolicy",
            Error::Continue { .. } => "Continue",
        }
    }
}

impl Answer for SnapshotAnswer {
    fn repeated(mut self) -> Self {
        self.duplicate = true;
        self
    }
}

/// The function's own settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// The account's manual snapshot quota (RDS default: 100 per region).
    pub quota: u32,
    /// How long a hook may wait in all, across continuations (CodeDeploy gives a hook an hour).
    pub hook_budget: Duration,
    /// Kept back from each invocation's deadline to hand over to a continuation or report.
    pub margin: Duration,
    /// This function's own name, to invoke itself for a continuation (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: Option<String>,
    /// First wait between status polls; it doubles up to 20 s.
    pub first_poll: Duration,
}

impl SnapshotSettings {
    pub fn from_env(env: &Env) -> Result<Self, safeship::Error> {
        let budget_s: u64 = env.parse_or("SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS", 3_000)?;
        if !(60..=3_500).contains(&budget_s) {
            return Err(safeship::Error::config(
                "SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS",
                format!(
                    "must be 60..=3500 (CodeDeploy waits an hour for a hook), found {budget_s}"
                ),
            ));
        }
        Ok(SnapshotSettings {
            quota: env.parse_or("SAFESHIP_RDS_SNAPSHOT_QUOTA", 100)?,
            hook_budget: Duration::from_secs(budget_s),
            margin: Duration::from_millis(env.parse_or("SAFESHIP_SNAPSHOT_MARGIN_MS", 5_000)?),
            function_name: env.optional("AWS_LAMBDA_FUNCTION_NAME").map(str::to_owned),
            first_poll: Duration::from_millis(env.parse_or("SAFESHIP_SNAPSHOT_POLL_MS", 2_000)?),
        })
    }
}

/// The time, injectable so retention can be tested against snapshots made "days ago".
pub type Clock = std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct Deps {
    pub common: Common,
    pub rds: aws_sdk_rds::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub settings: SnapshotSettings,
    pub clock: Clock,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let settings = SnapshotSettings::from_env(env)?;
        let common = Common::load(FUNCTION, env).await?;
        Ok(Deps {
            rds: aws_sdk_rds::Client::new(&common.sdk),
            codedeploy: aws_sdk_codedeploy::Client::new(&common.sdk),
            lambda: aws_sdk_lambda::Client::new(&common.sdk),
            common,
            settings,
            clock: std::sync::Arc::new(Utc::now),
        })
    }
}

/// A pipeline's direct invocation: take a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    pub database: String,
    pub reason: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
}

/// A pipeline's direct invocation: is there an `available` snapshot newer than this?
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FreshnessRequest {
    pub database: String,
    pub max_age_minutes: u32,
}

/// The state a continuation carries: the hook to report and the snapshot being waited for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Continuation {
    pub deployment_id: String,
    pub lifecycle_event_hook_execution_id: String,
    pub application: String,
    pub deployment_group: String,
    pub database: String,
    pub snapshot_id: String,
    pub started_at: DateTime<Utc>,
    pub attempt: u32,
    /// The revision's commit, when CodeDeploy knows it (GitHub revisions).
    #[serde(default)]
    pub git_sha: Option<String>,
}

/// What an invocation answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotAnswer {
    pub database: String,
    pub snapshot_id: Option<String>,
    /// `available`, `creating`, `failed`, `continued`, `fresh`, `stale`, `none configured`.
    pub status: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// For hooks: what was reported to CodeDeploy (`None` while a continuation waits on).
    #[serde(default)]
    pub hook_status: Option<String>,
    #[serde(default)]
    pub pruned: Vec<String>,
    #[serde(default)]
    pub duplicate: bool,
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<SnapshotAnswer, Error> {
    let deadline = invocation_deadline(event.context.deadline, deps.settings.margin);
    let payload = &event.payload;
    if let Some(state) = payload.get("safeship-continuation") {
        let state: Continuation = serde_json::from_value(state.clone())
            .map_err(|e| Error::Request(format!("continuation state: {e}")))?;
        return continue_hook(deps, state, deadline).await;
    }
    if let Some(fresh) = payload.get("fresh") {
        let request: FreshnessRequest = serde_json::from_value(fresh.clone())
            .map_err(|e| Error::Request(format!("fresh: {e}")))?;
        return freshness(deps, &request).await;
    }
    if payload.get("database").is_some() {
        let request: SnapshotRequest =
            serde_json::from_value(payload.clone()).map_err(|e| Error::Request(e.to_string()))?;
        let deployment = request.deployment_id.clone();
        let job = Job {
            database: request.database,
            reason: request.reason,
            deployment_id: deployment,
            application: None,
            git_sha: None,
        };
        return take_and_wait(deps, &job, deadline).await;
    }
    let accepted = accept(FUNCTION, payload, |e| match e {
        Inbound::LifecycleHook(hook) => Some(Trigger::Hook(hook)),
        Inbound::DeploymentStateChange(d) if d.state == DeploymentState::Start => {
            Some(Trigger::Start(d))
        }
        _ => None,
    })?;
    match accepted.event {
        Trigger::Hook(hook) => start_hook(deps, &hook, deadline).await,
        Trigger::Start(d) => {
            let group = format!("{}/{}", d.application, d.deployment_group);
            let Some(snapshot) = deps
                .common
                .policy
                .group(&d.application, &d.deployment_group)
                .and_then(|g| g.policy.snapshot.as_ref())
            else {
                tracing::info!(%group, "no snapshot configured for this group");
                return Ok(SnapshotAnswer {
                    database: String::new(),
                    snapshot_id: None,
                    status: "none configured".into(),
                    detail: Some(format!("{group} has no snapshot section")),
                    hook_status: None,
                    pruned: vec![],
                    duplicate: false,
                });
            };
            let job = Job {
                database: snapshot.database.clone(),
                reason: format!("deployment {} of {group} started", d.deployment_id),
                deployment_id: Some(d.deployment_id),
                application: Some(d.application),
                git_sha: None,
            };
            take_and_wait(deps, &job, deadline).await
        }
    }
}

/// The events that start a snapshot.
enum Trigger {
    Hook(LifecycleHook),
    Start(safeship::event::DeploymentStateChange),
}

/// The policy's database entry for a name, or an error listing the known ones.
pub fn resolve_database<'a>(
    policy: &'a Policy,
    database: &str,
) -> Result<&'a DatabasePolicy, Error> {
    policy
        .databases
        .get(database)
        .ok_or_else(|| Error::UnknownDatabase {
            database: database.to_owned(),
            known: policy
                .databases
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One snapshot to take.
#[derive(Debug, Clone)]
pub struct Job {
    pub database: String,
    pub reason: String,
    pub deployment_id: Option<String>,
    pub application: Option<String>,
    pub git_sha: Option<String>,
}

impl Job {
    fn snapshot_id(&self, db: &DatabasePolicy) -> String {
        // Without a deployment, one snapshot per database per minute: a pipeline's retry of the
        // same step finds the one it just made.
        let deployment = self
            .deployment_id
            .clone()
            .unwrap_or_else(|| format!("manual-{}", Utc::now().format("%Y%m%d%H%M")));
        naming::snapshot_identifier(&db.snapshot.prefix, &self.database, &deployment)
    }

    fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (
                rds::DEPLOYMENT_TAG.to_owned(),
                self.deployment_id.clone().unwrap_or_else(|| "none".into()),
            ),
            ("safeship:reason".to_owned(), tag_value(&self.reason)),
        ];
        if let Some(app) = &self.application {
            tags.push(("safeship:application".to_owned(), tag_value(app)));
        }
        if let Some(sha) = &self.git_sha {
            tags.push(("safeship:git-sha".to_owned(), tag_value(sha)));
        }
        tags
    }
}

/// RDS tag values: at most 256 characters.
fn tag_value(text: &str) -> String {
    text.chars().take(256).collect()
}

/// Creates (or finds) the snapshot and waits for it within `deadline`; prunes and checks the
/// quota once it is available.
pub async fn take_and_wait(
    deps: &Deps,
    job: &Job,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let db = resolve_database(&deps.common.policy, &job.database)?;
    let id = job.snapshot_id(db);
    let started = tokio::time::Instant::now();
    let created = match rds::create(&deps.rds, db, &id, &job.tags()).await {
        Ok(created) => created,
        Err(e) => return Ok(failed(deps, job, id, e.to_string()).await),
    };
    let snapshot = match created {
        rds::Created::Started(s) => {
            tracing::info!(snapshot = %s.id, database = %job.database, "snapshot started");
            publish(
                deps,
                job,
                Outcome::SnapshotStarted {
                    database: job.database.clone(),
                    snapshot_id: s.id.clone(),
                },
            )
            .await;
            s
        }
        rds::Created::Existing(s) => {
            tracing::info!(snapshot = %s.id, status = %s.status, "snapshot already exists: an earlier trigger made it");
            s
        }
    };
    let waited = match wait(deps, db, snapshot, deadline).await {
        Ok(waited) => waited,
        // The snapshot was started but its state can no longer be read (throttling beyond the
        // SDK's retries, the snapshot gone): a failed snapshot, with the error, never silence.
        Err(e) => {
            let error = format!("waiting for snapshot {id}: {e}");
            tracing::error!(snapshot = %id, error = %e, "the wait for the snapshot failed");
            return Ok(failed(deps, job, id, error).await);
        }
    };
    settle(deps, job, db, waited, started.elapsed()).await
}

/// A snapshot that failed: the answer saying so, and the guard event with the error.
async fn failed(deps: &Deps, job: &Job, id: String, error: String) -> SnapshotAnswer {
    let failed = answer(job, Some(id), "failed", Some(error));
    publish_failed(deps, job, &failed).await;
    failed
}

/// Polls with backoff until the snapshot is `available`, fails, or the deadline comes; the last
/// poll is at the deadline itself.
async fn wait(
    deps: &Deps,
    db: &DatabasePolicy,
    mut snapshot: rds::Snapshot,
    deadline: tokio::time::Instant,
) -> Result<rds::Snapshot, Error> {
    let mut pause = deps.settings.first_poll;
    while snapshot.status == "creating" || snapshot.status == "pending" {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(20));
        snapshot = rds::status(&deps.rds, db, &snapshot.id)
            .await?
            .ok_or_else(|| {
                Error::Safeship(safeship::Error::unexpected(
                    "rds:DescribeDBSnapshots",
                    format!("snapshot {}", snapshot.id),
                    "the snapshot disappeared while being made",
                ))
            })?;
    }
    Ok(snapshot)
}

/// After the wait: guard events, retention and the quota for an available snapshot.
async fn settle(
    deps: &Deps,
    job: &Job,
    db: &DatabasePolicy,
    snapshot: rds::Snapshot,
    took: Duration,
) -> Result<SnapshotAnswer, Error> {
    match snapshot.status.as_str() {
        "available" => {
            publish(
                deps,
                job,
                Outcome::SnapshotAvailable {
                    database: job.database.clone(),
                    snapshot_id: snapshot.id.clone(),
                    duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                },
            )
            .await;
            let pruned = prune(deps, job, db).await;
            let mut a = answer(job, Some(snapshot.id), "available", None);
            a.pruned = pruned;
            Ok(a)
        }
        "creating" | "pending" => Ok(answer(
            job,
            Some(snapshot.id),
            "creating",
            Some("not available yet: invoke again with the same request to keep waiting".into()),
        )),
        other => {
            let error = format!("snapshot {} is {other}", snapshot.id);
            publish(
                deps,
                job,
                Outcome::SnapshotFailed {
                    database: job.database.clone(),
                    snapshot_id: Some(snapshot.id.clone()),
                    error: error.clone(),
                },
            )
            .await;
            Ok(answer(job, Some(snapshot.id), "failed", Some(error)))
        }
    }
}

/// Retention and the quota warning. Problems here are logged: they never fail a snapshot.
async fn prune(deps: &Deps, job: &Job, db: &DatabasePolicy) -> Vec<String> {
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

fn answer(
    job: &Job,
    snapshot_id: Option<String>,
    status: &str,
    detail: Option<String>,
) -> SnapshotAnswer {
    SnapshotAnswer {
        database: job.database.clone(),
        snapshot_id,
        status: status.into(),
        detail,
        hook_status: None,
        pruned: vec![],
        duplicate: false,
    }
}

/// The freshness gate: an `available` snapshot of the database newer than the limit?
async fn freshness(deps: &Deps, request: &FreshnessRequest) -> Result<SnapshotAnswer, Error> {
    let db = resolve_database(&deps.common.policy, &request.database)?;
    let owned = rds::owned(&deps.rds, db).await?;
    let max_age = chrono::Duration::minutes(i64::from(request.max_age_minutes));
    let found = retention::fresh(&owned, (deps.clock)(), max_age);
    Ok(SnapshotAnswer {
        database: request.database.clone(),
        snapshot_id: found.map(|s| s.id.clone()),
        status: if found.is_some() { "fresh" } else { "stale" }.into(),
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
        duplicate: false,
    })
}

/// A lifecycle hook: snapshot the group's database, then report; once per hook execution.
async fn start_hook(
    deps: &Deps,
    hook: &LifecycleHook,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let key = format!("hook:{}", hook.lifecycle_event_hook_execution_id);
    let once = deps
        .common
        .idempotency
        .once(&key, || async {
            let info = match safeship::aws::codedeploy::get_deployment(
                &deps.codedeploy,
                &hook.deployment_id,
            )
            .await
            {
                Ok(info) => info,
                Err(e) => {
                    // The hook must report: without its group there is no snapshot, so Failed.
                    report(deps, hook, false).await?;
                    return Ok(SnapshotAnswer {
                        database: String::new(),
                        snapshot_id: None,
                        status: "failed".into(),
                        detail: Some(format!("could not look up the deployment: {e}")),
                        hook_status: Some("Failed".into()),
                        pruned: vec![],
                        duplicate: false,
                    });
                }
            };
            let git_sha = info
                .revision
                .as_ref()
                .and_then(|r| r.git_hub_location.as_ref())
                .and_then(|g| g.commit_id.clone());
            let application = info.application_name.unwrap_or_default();
            let group = info.deployment_group_name.unwrap_or_default();
            let state = Continuation {
                deployment_id: hook.deployment_id.clone(),
                lifecycle_event_hook_execution_id: hook.lifecycle_event_hook_execution_id.clone(),
                application,
                deployment_group: group,
                database: String::new(),
                snapshot_id: String::new(),
                started_at: Utc::now(),
                attempt: 0,
                git_sha,
            };
            hook_step(deps, state, deadline).await
        })
        .await?;
    Ok(answer_once(once, || SnapshotAnswer {
        database: String::new(),
        snapshot_id: None,
        status: "in progress elsewhere".into(),
        detail: None,
        hook_status: None,
        pruned: vec![],
        duplicate: false,
    }))
}

/// A continuation: keep waiting for the hook's snapshot; once per attempt.
async fn continue_hook(
    deps: &Deps,
    state: Continuation,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let key = format!(
        "hook:{}:continuation:{}",
        state.lifecycle_event_hook_execution_id, state.attempt
    );
    let once = deps
        .common
        .idempotency
        .once(&key, || hook_step(deps, state.clone(), deadline))
        .await?;
    Ok(answer_once(once, || SnapshotAnswer {
        database: state.database,
        snapshot_id: Some(state.snapshot_id),
        status: "in progress elsewhere".into(),
        detail: None,
        hook_status: None,
        pruned: vec![],
        duplicate: false,
    }))
}

/// One invocation's share of a hook: take or find the snapshot, wait, then report — or hand the
/// wait to a continuation when this invocation's time is up.
async fn hook_step(
    deps: &Deps,
    mut state: Continuation,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let hook = LifecycleHook {
        deployment_id: state.deployment_id.clone(),
        lifecycle_event_hook_execution_id: state.lifecycle_event_hook_execution_id.clone(),
    };
    let group_name = format!("{}/{}", state.application, state.deployment_group);
    let Some(snapshot_policy) = deps
        .common
        .policy
        .group(&state.application, &state.deployment_group)
        .and_then(|g| g.policy.snapshot.clone())
    else {
        // A hook wired to a group the policy does not cover: fail closed, and say why.
        report(deps, &hook, false).await?;
        let e = Error::NoSnapshotPolicy { group: group_name };
        return Ok(SnapshotAnswer {
            database: String::new(),
            snapshot_id: None,
            status: "failed".into(),
            detail: Some(e.to_string()),
            hook_status: Some("Failed".into()),
            pruned: vec![],
            duplicate: false,
        });
    };
    state.database = snapshot_policy.database.clone();
    let job = Job {
        database: state.database.clone(),
        reason: format!(
            "{} lifecycle hook of deployment {}",
            group_name, state.deployment_id
        ),
        deployment_id: Some(state.deployment_id.clone()),
        application: Some(state.application.clone()),
        git_sha: state.git_sha.clone(),
    };
    // This invocation waits until its own deadline or the end of the hook's whole budget,
    // whichever comes first, so the hook reports within CodeDeploy's limit.
    let (wait_until, budget_binds) = hook_wait_deadline(
        deadline,
        state.started_at,
        Utc::now(),
        deps.settings.hook_budget,
    );
    let mut answer = match take_and_wait(deps, &job, wait_until).await {
        Ok(answer) => answer,
        Err(e) => SnapshotAnswer {
            database: job.database.clone(),
            snapshot_id: None,
            status: "failed".into(),
            detail: Some(e.to_string()),
            hook_status: None,
            pruned: vec![],
            duplicate: false,
        },
    };
    let succeeded = match answer.status.as_str() {
        "available" => true,
        "creating" if !budget_binds => {
            state.snapshot_id = answer.snapshot_id.clone().unwrap_or_default();
            state.attempt += 1;
            match hand_over(deps, &state).await {
                Ok(()) => {
                    answer.status = "continued".into();
                    answer.detail = Some(format!(
                        "still creating; continuation {} waits on",
                        state.attempt
                    ));
                    return Ok(answer);
                }
                // Nobody would be left to report: the hook reports now.
                Err(e) => {
                    tracing::error!(error = %e, "could not hand the wait over to a continuation");
                    answer.detail = Some(e.to_string());
                    publish_failed(deps, &job, &answer).await;
                    false
                }
            }
        }
        "creating" => {
            answer.detail = Some(format!(
                "still creating after {} s, the hook's whole budget",
                deps.settings.hook_budget.as_secs()
            ));
            publish_failed(deps, &job, &answer).await;
            false
        }
        _ => false,
    };
    let report_success = succeeded || snapshot_policy.on_failure == SnapshotFailureMode::Warn;
    if !succeeded && report_success {
        tracing::warn!(group = %group_name, detail = ?answer.detail,
            "snapshot failed; the policy says warn, so the deployment goes on");
    }
    report(deps, &hook, report_success).await?;
    answer.hook_status = Some(
        if report_success {
            "Succeeded"
        } else {
            "Failed"
        }
        .into(),
    );
    Ok(answer)
}

/// How long one invocation of a hook may wait: until `deadline` (the invocation's, less the
/// margin) or until the hook's budget, counted from `started_at`, is spent — whichever is first.
/// The flag says the budget is what ends the wait: no continuation may follow.
pub fn hook_wait_deadline(
    deadline: tokio::time::Instant,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    budget: Duration,
) -> (tokio::time::Instant, bool) {
    let spent = (now - started_at).to_std().unwrap_or_default();
    let budget_end = tokio::time::Instant::now() + budget.saturating_sub(spent);
    if budget_end <= deadline {
        (budget_end, true)
    } else {
        (deadline, false)
    }
}

/// Invokes this function asynchronously with the continuation's state.
async fn hand_over(deps: &Deps, state: &Continuation) -> Result<(), Error> {
    let function = deps
        .settings
        .function_name
        .clone()
        .unwrap_or_else(|| FUNCTION.to_owned());
    let payload = serde_json::json!({ "safeship-continuation": state });
    deps.lambda
        .invoke()
        .function_name(&function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            serde_json::to_vec(&payload).expect("JSON serialises"),
        ))
        .send()
        .await
        .map_err(|e| Error::Continue {
            snapshot_id: state.snapshot_id.clone(),
            function,
            problem: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
        })?;
    tracing::info!(snapshot = %state.snapshot_id, attempt = state.attempt, "the wait continues in a new invocation");
    Ok(())
}

async fn report(deps: &Deps, hook: &LifecycleHook, succeeded: bool) -> Result<(), Error> {
    safeship::aws::codedeploy::report_hook_status(
        &deps.codedeploy,
        &hook.deployment_id,
        &hook.lifecycle_event_hook_execution_id,
        succeeded,
    )
    .await?;
    Ok(())
}

/// The guard event of a failed snapshot, with the answer's error.
async fn publish_failed(deps: &Deps, job: &Job, answer: &SnapshotAnswer) {
    publish(
        deps,
        job,
        Outcome::SnapshotFailed {
            database: job.database.clone(),
            snapshot_id: answer.snapshot_id.clone(),
            error: answer.detail.clone().unwrap_or_default(),
        },
    )
    .await;
}

async fn publish(deps: &Deps, job: &Job, outcome: Outcome) {
    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: format!(
            "{FUNCTION}:{}:{}:{}",
            job.database,
            job.deployment_id.as_deref().unwrap_or("direct"),
            outcome.kind()
        ),
        time: Utc::now(),
        guard: Guard::PredeploySnapshot,
        application: job.application.clone(),
        deployment_group: None,
        deployment_id: job.deployment_id.clone(),
        dry_run: false,
        outcome,
    };
    if let Err(e) = deps.common.guard.publish(&event).await {
        tracing::error!(error = %e, "could not publish a snapshot guard event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_database_lists_the_known_ones() {
        let p = Policy::parse(include_str!("../../../examples/policy.yaml"), "example").unwrap();
        let err = resolve_database(&p, "orders-db").unwrap_err().to_string();
        assert_eq!(
            err,
            "database \"orders-db\" is not in the policy's databases (known: checkout-db)"
        );
        assert_eq!(
            resolve_database(&p, "checkout-db").unwrap().identifier,
            "checkout-prod-db"
        );
    }

    #[test]
    fn request_rejects_unknown_fields() {
        let err = serde_json::from_value::<SnapshotRequest>(
            json!({"database": "a", "reason": "b", "extra": 1}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn a_hooks_wait_ends_at_its_budget_or_the_invocation_deadline_whichever_is_first() {
        let now = Utc::now();
        let budget = Duration::from_secs(3_000);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        // Early in the hook: the invocation's deadline ends the wait, a continuation may follow.
        let (until, binds) = hook_wait_deadline(deadline, now, now, budget);
        assert_eq!((until, binds), (deadline, false));
        // Ten seconds of budget left: the budget ends the wait, long before the deadline.
        let started = now - chrono::Duration::seconds(2_990);
        let before = tokio::time::Instant::now();
        let (until, binds) = hook_wait_deadline(deadline, started, now, budget);
        let after = tokio::time::Instant::now();
        assert!(binds);
        let ten = Duration::from_secs(10);
        assert!(until >= before + ten && until <= after + ten);
        // Budget already spent: no wait at all.
        let started = now - chrono::Duration::seconds(4_000);
        let (until, binds) = hook_wait_deadline(deadline, started, now, budget);
        assert!(binds && until <= tokio::time::Instant::now());
    }

    #[test]
    fn settings_name_a_bad_budget() {
        let err = SnapshotSettings::from_env(&Env::from_pairs([(
            "SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS",
            "7200",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS"),
            "{err}"
        );
    }
}
