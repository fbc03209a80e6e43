//! Nightly integrity-count check, started by an EventBridge schedule.
//!
//! For every database whose policy has an `integrity` section: connect (RDS secret or IAM token,
//! TLS by `sslmode`), read the catalog, count each table in one pass (rows and the NULLs of every
//! ruled column; large tables estimated), run the zero-count queries, compare with the table's
//! history, and tie what changed to the deployments that completed since the previous run.
//! Out go EMF metrics, the stored and returned report, and a guard event per finding and per run
//! that could not check everything (a run that cannot connect is itself an alert).

pub mod anomaly;
pub mod connect;
pub mod history;
pub mod metrics;
mod plan;
pub mod report;
mod scan;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::{Delivery, Inbound};
use safeship::guard::{Guard, GuardEvent, Outcome};
use safeship::idempotency::Once;
use safeship::policy::IntegrityPolicy;
use safeship::runtime::{accept, invocation_deadline, Common, Failure};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::anomaly::{Bounds, TablePoint};
use crate::history::HistoryStore;
use crate::metrics::MetricsSink;
use crate::plan::{explicit_tables, TableInfo};
use crate::report::{DeploymentSince, Report};
use crate::scan::{Check, Settings};

pub const FUNCTION: &str = "integrity-check";

/// Earlier counts read per table: enough for the deviation test over the last month.
const HISTORY_RUNS: i32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    /// A database step failed; `problem` carries PostgreSQL's own words, never a password.
    #[error("database {database}: {action}: {problem}")]
    Database {
        action: &'static str,
        database: String,
        problem: String,
    },
}

impl Error {
    pub fn database(
        action: &'static str,
        database: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Database {
            action,
            database: database.into(),
            problem: problem.into(),
        }
    }
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Database { .. } => "Database",
        }
    }
}

/// The longest history kept: ten years.
pub const MAX_HISTORY_DAYS: u32 = 3_650;

/// The integrity check's own settings.
#[derive(Debug, Clone)]
pub struct IntegrityConfig {
    /// `SAFESHIP_INTEGRITY_TABLE`: the history table (see [`history`]).
    pub table: String,
    /// `SAFESHIP_DB_CA_FILE`: the CA bundle `verify-full` trusts when the policy names none.
    pub ca_file: Option<PathBuf>,
    /// `SAFESHIP_INTEGRITY_MARGIN_MS`: time kept back from the Lambda deadline to store the
    /// history, emit metrics and publish guard events (default 10000).
    pub margin: Duration,
    /// `SAFESHIP_INTEGRITY_HISTORY_DAYS`: how long history is kept (default 400).
    pub history_days: u32,
}

impl IntegrityConfig {
    pub fn from_env(env: &Env) -> Result<Self, Error> {
        let history_days = env.parse_or("SAFESHIP_INTEGRITY_HISTORY_DAYS", 400u32)?;
        if !(1..=MAX_HISTORY_DAYS).contains(&history_days) {
            return Err(safeship::Error::config(
                "SAFESHIP_INTEGRITY_HISTORY_DAYS",
                format!("must be 1..={MAX_HISTORY_DAYS} (10 years), found {history_days}"),
            )
            .into());
        }
        Ok(IntegrityConfig {
            table: env.required("SAFESHIP_INTEGRITY_TABLE")?.to_owned(),
            ca_file: env.optional("SAFESHIP_DB_CA_FILE").map(PathBuf::from),
            margin: env.millis_in(
                "SAFESHIP_INTEGRITY_MARGIN_MS",
                10_000,
                safeship::runtime::MARGIN_RANGE_MS,
            )?,
            history_days,
        })
    }
}

pub struct Deps {
    pub common: Common,
    pub config: IntegrityConfig,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub history: HistoryStore,
    pub metrics: MetricsSink,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let config = IntegrityConfig::from_env(env)?;
        let common = Common::load(FUNCTION, env).await?;
        Ok(Deps::new(common, config, MetricsSink::default()))
    }

    pub fn new(common: Common, config: IntegrityConfig, metrics: MetricsSink) -> Deps {
        let sdk = &common.sdk;
        Deps {
            secrets: safeship::aws_client!(aws_sdk_secretsmanager, sdk),
            codedeploy: safeship::aws_client!(aws_sdk_codedeploy, sdk),
            history: HistoryStore::new(
                safeship::aws_client!(aws_sdk_dynamodb, sdk),
                &config.table,
                config.history_days,
            ),
            metrics,
            config,
            common,
        }
    }
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let accepted = accept(FUNCTION, &event.payload, |e| match e {
        Inbound::Scheduled(tick) => Some(tick),
        _ => None,
    })?;
    let tick = accepted.event;
    let run_at = tick.time.unwrap_or_else(Utc::now);
    // EventBridge redelivers with the same id: that id is the run's identity.
    let key = match &accepted.delivery {
        Delivery::EventBridge { id } => id.clone(),
        _ => run_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    let deadline = invocation_deadline(event.context.deadline, deps.config.margin);
    run(deps, &key, run_at, deadline).await
}

/// Databases checked at once: they are independent (one slow database must not starve the
/// rest of the run's time), and each holds up to its policy's `concurrency` connections.
pub const DATABASES_AT_ONCE: usize = 4;

/// Checks every database the policy gives an `integrity` section, each once per `key`, up to
/// [`DATABASES_AT_ONCE`] at a time, every one under the same deadline. A database whose run
/// failed to be recorded or announced fails the invocation (so Lambda retries it) after the
/// others have finished; their runs are recorded and a retry answers them as done.
pub async fn run(
    deps: &Deps,
    key: &str,
    run_at: DateTime<Utc>,
    deadline: Instant,
) -> Result<Value, Error> {
    let policy = deps.common.policy.clone();
    let databases: Vec<(&String, &IntegrityPolicy)> = policy
        .databases
        .iter()
        .filter_map(|(name, db)| db.integrity.as_ref().map(|i| (name, i)))
        .collect();
    if databases.is_empty() {
        tracing::warn!("no database in the policy has an integrity section: nothing to check");
    }
    let outcomes: Vec<(&String, Result<Value, Error>)> = stream::iter(databases)
        .map(|(name, integrity)| async move {
            (
                name,
                one_database(deps, name, integrity, key, run_at, deadline).await,
            )
        })
        .buffered(DATABASES_AT_ONCE)
        .collect()
        .await;
    let mut runs = Vec::new();
    let mut first_error = None;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(run) => runs.push(run),
            Err(e) => {
                tracing::error!(database = %name, error = %e, kind = e.kind(),
                    "the integrity run of this database is not finished: the invocation fails so it is retried");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(json!({"runs": runs})),
    }
}

/// What one database's once-only run records: the summary a repeated delivery answers, and the
/// guard events the run must publish. The events are published in a once-only step of their
/// own, so when EventBridge cannot take them the invocation fails and the retry publishes the
/// same events (same ids) without counting again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Recorded {
    Run {
        summary: Value,
        events: Vec<GuardEvent>,
    },
    /// What a release before the events were recorded kept: the summary alone.
    Summary(Value),
}

async fn one_database(
    deps: &Deps,
    name: &str,
    integrity: &IntegrityPolicy,
    key: &str,
    run_at: DateTime<Utc>,
    deadline: Instant,
) -> Result<Value, Error> {
    let once_key = format!("{name}#{key}");
    // The idempotency record keeps the summary; this delivery answers the whole report.
    let mut full = None;
    let outcome = deps
        .common
        .idempotency
        .once(&once_key, || async {
            let report = check_database(deps, name, integrity, run_at, deadline).await?;
            let recorded = Recorded::Run {
                summary: report.summary(),
                events: guard_events(&report),
            };
            full = Some(report);
            Ok::<_, Error>(recorded)
        })
        .await?;
    let (recorded, repeated) = match outcome {
        Once::Ran(r) => (r, false),
        Once::AlreadyDone(r) => (r, true),
    };
    // The metrics go out once the run is recorded, from the delivery that counted: a run whose
    // record failed is counted again by its retry, and had it emitted already, CloudWatch would
    // hold both counts (a failed history write doubled every
    // count). Their timestamp is the run's, so the one window left — a process killed
    // between the record and this line — loses the night's datapoints, never doubles them.
    if let Some(report) = &full {
        deps.metrics.emit(&metrics::documents(report));
    }
    let (summary, events) = match recorded {
        Recorded::Run { summary, events } => (summary, events),
        Recorded::Summary(summary) => (summary, Vec::new()),
    };
    // The findings and the failed run are announced only by these events: each one is
    // published, or the invocation fails and is retried.
    let published = deps
        .common
        .idempotency
        .once(&format!("{once_key}:events"), || async {
            for event in &events {
                deps.common.guard.publish(event).await?;
            }
            Ok::<_, Error>(events.len())
        })
        .await?;
    if let (true, Once::Ran(n)) = (repeated, &published) {
        tracing::info!(
            database = name,
            events = n,
            "published the guard events an earlier delivery could not"
        );
    }
    Ok(match (repeated, full) {
        (false, Some(report)) => serde_json::to_value(&report).expect("reports serialise"),
        (_, _) => json!({"duplicate": true, "report": summary}),
    })
}

/// One database's run, start to finish, every database step ended by `deadline`. Database
/// failures end up in the report (the caller publishes its guard events); only failures to
/// store the history are errors, so the invocation is retried.
pub async fn check_database(
    deps: &Deps,
    database: &str,
    policy: &IntegrityPolicy,
    run_at: DateTime<Utc>,
    deadline: Instant,
) -> Result<Report, Error> {
    let started = Instant::now();
    let statement_timeout = Duration::from_millis(policy.statement_timeout_ms);
    // Every step that waits on the database (or for its credentials) ends by the deadline: a
    // server that accepts and never answers is a failed run named by its step, not a hang.
    let connected = async {
        let target = by_deadline(
            deadline,
            database,
            "reading the credentials",
            String::new(),
            connect::target(
                database,
                &policy.connection,
                deps.config.ca_file.as_deref(),
                &deps.secrets,
                &deps.common.sdk,
            ),
        )
        .await?;
        let client = by_deadline(
            deadline,
            database,
            "connecting",
            format!("{}: ", target.describe()),
            target.connect(database, statement_timeout),
        )
        .await?;
        let catalog = by_deadline(
            deadline,
            database,
            "reading the catalog",
            format!("{}: ", target.describe()),
            catalog(&client, database, policy),
        )
        .await?;
        Ok::<_, Error>((target, client, catalog))
    }
    .await;
    let (target, client, catalog) = match connected {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(database, error = %e, "integrity run failed");
            let report = Report::failed(database, run_at, millis(started), e.to_string());
            return Ok(report);
        }
    };

    let (scans, configuration_errors) = plan::plan(policy, &catalog);
    let checks: Vec<Check> = policy
        .queries
        .iter()
        .cloned()
        .map(Check::Query)
        .chain(scans.iter().cloned().map(Check::Table))
        .collect();
    let settings = Settings {
        concurrency: policy.concurrency as usize,
        statement_timeout,
        deadline,
    };
    // The history and the deployments are read while the tables are counted.
    let tables: Vec<String> = scans.iter().map(|s| s.qualified()).collect();
    let (counted, past) = tokio::join!(
        scan::run(&target, database, client, checks, &settings),
        async {
            tokio::time::timeout_at(deadline, past(deps, database, &tables, run_at))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Safeship(safeship::Error::unexpected(
                        "dynamodb:Query (history) and codedeploy:ListDeployments",
                        format!("database {database}"),
                        "no answer before the run's deadline",
                    )))
                })
        },
    );
    let (previous_run_at, histories, deployments_since) = past?;

    let bounds = Bounds {
        max_drop_percent: policy.max_drop_percent,
        max_growth_percent: policy.max_growth_percent,
    };
    let mut report = Report {
        database: database.to_owned(),
        run_at,
        status: report::RunStatus::Clean,
        duration_ms: 0,
        previous_run_at,
        baseline: previous_run_at.is_none(),
        deployments_since,
        tables: Vec::new(),
        queries: counted.queries,
        findings: Vec::new(),
        configuration_errors: [configuration_errors, counted.configuration_errors].concat(),
        failed: counted.failed,
        unfinished: counted.unfinished,
        error: None,
    };
    let mut tables = counted.tables;
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    for mut count in tables {
        let history: &[TablePoint] = histories
            .iter()
            .find(|(t, _)| *t == count.table)
            .map(|(_, h)| h.as_slice())
            .unwrap_or_default();
        count.previous_rows = history.first().map(|p| p.rows);
        let rules = policy
            .tables
            .iter()
            .find(|(name, _)| {
                let (s, n) = plan::split_qualified(name);
                format!("{s}.{n}") == count.table
            })
            .map(|(_, r)| r);
        report
            .findings
            .extend(anomaly::table_findings(&count, history, rules, bounds));
        report.tables.push(count);
    }
    report.queries.sort_by(|a, b| a.name.cmp(&b.name));
    report
        .findings
        .extend(report.queries.iter().filter_map(anomaly::query_finding));
    report.duration_ms = millis(started);
    report.settle();

    if !report.tables.is_empty() || !report.queries.is_empty() {
        deps.history.record(&report).await?;
    }
    tracing::info!(
        database,
        status = ?report.status,
        tables = report.tables.len(),
        findings = report.findings.len(),
        duration_ms = report.duration_ms,
        "integrity run finished"
    );
    Ok(report)
}

/// The catalog entries of every table the policy may count: the swept schemas' ordinary,
/// partitioned and materialised tables (partitions are counted through their parent) and the
/// tables named explicitly.
async fn catalog(
    client: &tokio_postgres::Client,
    database: &str,
    policy: &IntegrityPolicy,
) -> Result<Vec<TableInfo>, Error> {
    const SQL: &str = "SELECT n.nspname::text, c.relname::text, c.reltuples::float8,
            coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm')
          AND ((n.nspname = ANY($1) AND NOT c.relispartition)
               OR n.nspname || '.' || c.relname = ANY($2))";
    let explicit = explicit_tables(policy);
    let rows = client
        .query(SQL, &[&policy.schemas, &explicit])
        .await
        .map_err(|e| Error::database("reading the catalog", database, connect::describe(&e)))?;
    Ok(rows
        .iter()
        .map(|r| TableInfo {
            schema: r.get(0),
            name: r.get(1),
            reltuples: r.get(2),
            columns: r.get(3),
        })
        .collect())
}

type Past = (
    Option<DateTime<Utc>>,
    Vec<(String, Vec<TablePoint>)>,
    Vec<DeploymentSince>,
);

/// The previous run, each table's history and the deployments completed since the previous run.
async fn past(
    deps: &Deps,
    database: &str,
    tables: &[String],
    run_at: DateTime<Utc>,
) -> Result<Past, Error> {
    let previous = deps.history.previous_run(database, run_at).await?;
    let histories = stream::iter(tables.iter().cloned())
        .map(|table| async move {
            let h = deps
                .history
                .table_history(database, &table, run_at, HISTORY_RUNS + 1)
                .await?;
            Ok::<_, Error>((table, h))
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let deployments = match previous {
        Some(since) => deployments_since(deps, database, since, run_at).await?,
        None => Vec::new(),
    };
    Ok((previous, histories, deployments))
}

async fn deployments_since(
    deps: &Deps,
    database: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<DeploymentSince>, Error> {
    let mut found = Vec::new();
    for group in deps.common.policy.integrity_groups(database) {
        // A deployment that completed since the last run was created at most a day before it.
        let listed = safeship::aws::codedeploy::deployments(
            &deps.codedeploy,
            group.application,
            group.deployment_group,
            &["Succeeded", "Failed", "Stopped"],
            Some(since - chrono::Duration::days(1)),
        )
        .await?;
        found.extend(
            listed
                .into_iter()
                .filter(|d| d.complete_time.is_some_and(|t| t > since && t <= until))
                .map(|d| DeploymentSince {
                    id: d.id,
                    application: group.application.to_owned(),
                    deployment_group: group.deployment_group.to_owned(),
                    status: d.status,
                    completed_at: d.complete_time,
                }),
        );
    }
    found.sort_by_key(|d| d.completed_at);
    Ok(found)
}

fn guard_event(report: &Report, id: String, outcome: Outcome) -> GuardEvent {
    // With exactly one deployment since, the event names it; with several, the outcome lists them.
    let single = match report.deployments_since.as_slice() {
        [d] => Some(d),
        _ => None,
    };
    GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id,
        time: report.run_at,
        guard: Guard::IntegrityCheck,
        application: single.map(|d| d.application.clone()),
        deployment_group: single.map(|d| d.deployment_group.clone()),
        deployment_id: single.map(|d| d.id.clone()),
        dry_run: false,
        outcome,
        account: None,
        region: None,
    }
}

/// `step` of `database`'s run, ended by `deadline`: its own error, or one naming the step that
/// had no answer in time (`at` says where, e.g. `host:port/dbname: `).
async fn by_deadline<T>(
    deadline: Instant,
    database: &str,
    step: &'static str,
    at: String,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let started = Instant::now();
    match tokio::time::timeout_at(deadline, work).await {
        Ok(done) => done,
        Err(_) => Err(Error::database(
            step,
            database,
            format!(
                "{at}no answer before the run's deadline ({} ms){}",
                millis(started),
                match safeship::aws::in_flight::waiting() {
                    // An AWS call (the credentials' secret) is what did not answer.
                    w if !w.is_empty() => format!(" ({w})"),
                    _ => "; the database accepted the connection but did not answer in time".into(),
                }
            ),
        )),
    }
}

/// At most this many findings are listed in a run's event (the worst ones); the rest are
/// counted. Each is a line of text, so the event stays far inside EventBridge's 256 KB.
const LISTED_FINDINGS: usize = 50;

/// The run's guard event: one `integrity-findings` listing what the run found, worst first, and
/// what kept it from checking everything; or, with nothing found but something unchecked, one
/// `integrity-run-failed`. One run, one message. Its id is stable per run, so a re-publish is
/// recognised.
fn guard_events(report: &Report) -> Vec<GuardEvent> {
    let run = report.run_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let problems = report.problems();
    if report.findings.is_empty() {
        return problems
            .map(|error| {
                let outcome = Outcome::IntegrityRunFailed {
                    database: report.database.clone(),
                    error,
                };
                let id = format!("integrity:{}:{run}:run", report.database);
                guard_event(report, id, outcome)
            })
            .into_iter()
            .collect();
    }
    let mut findings = report.findings.clone();
    // Stable: findings of one severity keep the order the run found them in.
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let more = u32::try_from(findings.len().saturating_sub(LISTED_FINDINGS)).unwrap_or(u32::MAX);
    findings.truncate(LISTED_FINDINGS);
    // A finding names its table, column or query: short, but bounded all the same (the event's
    // size must not depend on what a catalog holds).
    for finding in &mut findings {
        finding.description = report::clipped(&finding.description, report::PROBLEM_CHARS * 2);
    }
    let outcome = Outcome::IntegrityFindings {
        database: report.database.clone(),
        findings,
        more,
        since_deployments: report
            .deployments_since
            .iter()
            .map(|d| d.id.clone())
            .collect(),
        problems,
    };
    let id = format!("integrity:{}:{run}:findings", report.database);
    vec![guard_event(report, id, outcome)]
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Finding;
    use safeship::policy::Severity;

    fn finding(table: &str, severity: Severity) -> Finding {
        Finding {
            table: table.into(),
            column: None,
            description: format!("{table} is off"),
            severity,
        }
    }

    #[test]
    fn a_night_of_thousands_of_problems_fits_its_record_and_its_guard_event() {
        let at: DateTime<Utc> = "2026-11-20T03:00:00Z".parse().unwrap();
        let mut report = Report::failed("checkout-db", at, 5, String::new());
        report.error = None;
        let long = "x".repeat(2_000);
        report.findings = (0..400)
            .map(|i| Finding {
                description: format!("{i}: {long}"),
                ..finding(&format!("public.t{i}"), Severity::Failure)
            })
            .collect();
        report.failed = (0..5_000)
            .map(|i| crate::report::FailedCheck {
                check: format!("public.table_with_a_long_name_{i}"),
                error: format!("canceling statement due to statement timeout {long}"),
            })
            .collect();
        report.unfinished = (0..10_000)
            .map(|i| format!("public.unfinished_table_{i}"))
            .collect();
        report.configuration_errors = (0..3_000)
            .map(|i| format!("table public.gone_{i} is not in the database"))
            .collect();
        let recorded = Recorded::Run {
            summary: report.summary(),
            events: guard_events(&report),
        };
        let record = serde_json::to_string(&recorded).unwrap().len();
        // DynamoDB's item limit is 400 KB; the record is far inside it.
        assert!(record < 100_000, "the run's record is {record} bytes");
        let Recorded::Run { events, .. } = recorded else {
            unreachable!()
        };
        for event in &events {
            let size = serde_json::to_string(event).unwrap().len();
            assert!(size < 200_000, "{} is {size} bytes", event.id);
        }
        let problems = report.problems().unwrap();
        assert!(
            problems.contains("and 4980 more failed checks")
                && problems.contains("and 9980 more")
                && problems.contains("and 2980 more configuration errors"),
            "what is not listed is counted: {}",
            &problems[problems.len().saturating_sub(400)..]
        );
    }

    #[test]
    fn a_run_is_one_guard_event_listing_its_findings_worst_first_with_its_problems() {
        let at: DateTime<Utc> = "2026-11-20T03:00:00Z".parse().unwrap();
        let mut report = Report::failed("checkout-db", at, 5, String::new());
        report.error = None;
        report.findings = vec![
            finding("public.customers", Severity::Warning),
            finding("public.orders", Severity::Failure),
            finding("public.items", Severity::Warning),
            finding("public.payments", Severity::Failure),
        ];
        report.unfinished.push("public.events".into());
        let events = guard_events(&report);
        assert_eq!(events.len(), 1, "one run, one event: {events:?}");
        assert_eq!(
            events[0].id,
            "integrity:checkout-db:2026-11-20T03:00:00Z:findings"
        );
        assert_eq!(
            guard_events(&report),
            events,
            "the same run, the same event"
        );
        let Outcome::IntegrityFindings {
            findings,
            more,
            problems,
            ..
        } = &events[0].outcome
        else {
            panic!("{events:?}")
        };
        let order: Vec<&str> = findings.iter().map(|f| f.table.as_str()).collect();
        assert_eq!(
            order,
            [
                "public.orders",
                "public.payments",
                "public.customers",
                "public.items"
            ],
            "failures first, each severity in the order found"
        );
        assert_eq!(*more, 0);
        assert_eq!(
            problems.as_deref(),
            Some("not finished before the deadline: public.events")
        );
        assert_eq!(events[0].outcome.severity(), Severity::Failure);

        // Nothing found but something unchecked: the run's failure alone.
        let mut unfinished = report.clone();
        unfinished.findings.clear();
        let failed = guard_events(&unfinished);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].id,
            "integrity:checkout-db:2026-11-20T03:00:00Z:run"
        );
        assert!(matches!(&failed[0].outcome,
            Outcome::IntegrityRunFailed { error, .. } if error == "not finished before the deadline: public.events"));

        // Clean: nothing to tell.
        let mut clean = unfinished.clone();
        clean.unfinished.clear();
        assert!(guard_events(&clean).is_empty());
    }

    #[test]
    fn a_run_with_very_many_findings_lists_the_worst_and_counts_the_rest() {
        let at: DateTime<Utc> = "2026-11-20T03:00:00Z".parse().unwrap();
        let mut report = Report::failed("checkout-db", at, 5, String::new());
        report.error = None;
        report.findings = (0..400)
            .map(|i| {
                finding(
                    &format!("public.t{i}"),
                    if i == 399 {
                        Severity::Failure
                    } else {
                        Severity::Warning
                    },
                )
            })
            .collect();
        let events = guard_events(&report);
        let Outcome::IntegrityFindings { findings, more, .. } = &events[0].outcome else {
            panic!("{events:?}")
        };
        assert_eq!(findings.len(), LISTED_FINDINGS);
        assert_eq!(
            findings[0].table, "public.t399",
            "the failure is listed first"
        );
        assert_eq!(*more, 400 - LISTED_FINDINGS as u32);
        let size = serde_json::to_vec(&events[0]).unwrap().len();
        assert!(size < 64 * 1024, "{size} bytes");
    }

    #[test]
    fn what_the_idempotency_record_keeps_reads_back() {
        let at: DateTime<Utc> = "2026-11-20T03:00:00Z".parse().unwrap();
        let mut report = Report::failed("checkout-db", at, 5, String::new());
        report.error = None;
        report
            .findings
            .push(finding("public.orders", Severity::Failure));
        let events = guard_events(&report);
        // What the idempotency record keeps reads back, and an older record (the summary
        // alone) still reads.
        let recorded = Recorded::Run {
            summary: report.summary(),
            events: events.clone(),
        };
        let back: Recorded =
            serde_json::from_value(serde_json::to_value(&recorded).unwrap()).unwrap();
        assert!(matches!(back, Recorded::Run { events: e, .. } if e == events));
        let old: Recorded = serde_json::from_value(report.summary()).unwrap();
        assert!(matches!(old, Recorded::Summary(_)));
    }
}
