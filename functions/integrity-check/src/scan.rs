//! Counting: the checks run on a bounded set of connections, biggest first, each bounded by
//! `statement_timeout` and the whole by the run's deadline. A check that fails (timeout, lost
//! connection) is reported and the others go on; whatever the deadline cuts off is named.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use safeship::policy::ZeroQuery;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

use crate::connect::{describe, Target};
use crate::plan::{ScanMode, TableScan};
use crate::report::{FailedCheck, QueryResult, TableCount};

#[derive(Debug, Clone)]
pub enum Check {
    Table(TableScan),
    Query(ZeroQuery),
}

impl Check {
    pub fn name(&self) -> String {
        match self {
            Check::Table(t) => t.qualified(),
            Check::Query(q) => q.name.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Counted {
    pub tables: Vec<TableCount>,
    pub queries: Vec<QueryResult>,
    pub failed: Vec<FailedCheck>,
    /// Zero-count queries the database refused as written (syntax, unknown relation, rights).
    pub configuration_errors: Vec<String>,
    pub unfinished: Vec<String>,
}

struct Shared {
    queue: Mutex<VecDeque<Check>>,
    /// What each worker is counting right now, for the deadline's report.
    running: Mutex<BTreeMap<usize, String>>,
    counted: Mutex<Counted>,
    /// Why workers could not (re)connect, if none could.
    connect_errors: Mutex<Vec<String>>,
}

const DEADLINE_GRACE: Duration = Duration::from_millis(500);

pub struct Settings {
    pub concurrency: usize,
    pub statement_timeout: Duration,
    pub deadline: Instant,
}

/// Runs every check; `first` is an open connection to reuse as the first worker's.
pub async fn run(
    target: &Target,
    database: &str,
    first: tokio_postgres::Client,
    checks: Vec<Check>,
    settings: &Settings,
) -> Counted {
    let workers = settings.concurrency.clamp(1, checks.len().max(1));
    let shared = Shared {
        queue: Mutex::new(checks.into()),
        running: Mutex::new(BTreeMap::new()),
        counted: Mutex::new(Counted::default()),
        connect_errors: Mutex::new(Vec::new()),
    };
    let mut first = Some(first);
    let all = futures_util::future::join_all(
        (0..workers).map(|w| worker(w, first.take(), target, database, &shared, settings)),
    );
    let in_time = tokio::time::timeout_at(settings.deadline, all)
        .await
        .is_ok();
    let Shared {
        queue,
        running,
        counted,
        connect_errors,
    } = shared;
    let mut counted = counted
        .into_inner()
        .expect("no worker panics holding the lock");
    let left: Vec<String> = queue
        .into_inner()
        .expect("no worker panics holding the lock")
        .iter()
        .map(Check::name)
        .collect();
    if in_time {
        // Everything left is left because no worker had a connection.
        let why = connect_errors
            .into_inner()
            .expect("no worker panics holding the lock")
            .join("; ");
        counted
            .failed
            .extend(left.into_iter().map(|check| FailedCheck {
                check,
                error: format!("no connection to count it: {why}"),
            }));
    } else {
        counted.unfinished.extend(
            running
                .into_inner()
                .expect("no worker panics holding the lock")
                .into_values(),
        );
        counted.unfinished.extend(left);
    }
    counted
}

async fn worker(
    id: usize,
    given: Option<tokio_postgres::Client>,
    target: &Target,
    database: &str,
    shared: &Shared,
    settings: &Settings,
) {
    let mut client = match given {
        Some(c) => c,
        None => match target.connect(database, settings.statement_timeout).await {
            Ok(c) => c,
            Err(e) => {
                shared.connect_errors.lock().unwrap().push(e.to_string());
                return;
            }
        },
    };
    // The statement timeout in force on this connection.
    let mut timeout = settings.statement_timeout;
    loop {
        let Some(check) = shared.queue.lock().unwrap().pop_front() else {
            return;
        };
        let name = check.name();
        shared.running.lock().unwrap().insert(id, name.clone());
        // No statement may outlive the run by much: near the deadline the timeout shrinks with
        // it, a little past it, so the deadline (which names what it cut off) comes first.
        let left = settings.deadline.saturating_duration_since(Instant::now()) + DEADLINE_GRACE;
        let wanted = settings.statement_timeout.min(left);
        if wanted != timeout {
            let set = format!("SET statement_timeout = {}", wanted.as_millis());
            if client.batch_execute(&set).await.is_ok() {
                timeout = wanted;
            }
        }
        let started = Instant::now();
        let outcome = execute(&client, &check).await;
        let elapsed = started.elapsed();
        shared.running.lock().unwrap().remove(&id);
        let mut lost = false;
        {
            let mut counted = shared.counted.lock().unwrap();
            match (outcome, check) {
                (Ok(Row::Counts(row)), Check::Table(scan)) => {
                    counted.tables.push(table_count(&scan, &row, elapsed))
                }
                (Ok(Row::Value(value)), Check::Query(q)) => counted.queries.push(QueryResult {
                    name: q.name,
                    value,
                    duration_ms: millis(elapsed),
                }),
                (Ok(_), _) => unreachable!("execute answers each check with its own kind of row"),
                (Err(e), check) => {
                    lost = e.is_lost() || client.is_closed();
                    match classify(&e, &check, timeout) {
                        Problem::Configuration(text) => counted.configuration_errors.push(text),
                        Problem::Failed(error) => {
                            counted.failed.push(FailedCheck { check: name, error })
                        }
                    }
                }
            }
        }
        if lost {
            // One lost connection costs one check: the worker reconnects for the rest.
            match target.connect(database, settings.statement_timeout).await {
                Ok(c) => {
                    client = c;
                    timeout = settings.statement_timeout;
                }
                Err(e) => {
                    shared.connect_errors.lock().unwrap().push(e.to_string());
                    return;
                }
            }
        }
    }
}

enum Row {
    Counts(Vec<i64>),
    Value(i64),
}

async fn execute(client: &tokio_postgres::Client, check: &Check) -> Result<Row, CheckError> {
    match check {
        Check::Table(scan) => {
            let row = client.query_one(&scan.sql(), &[]).await?;
            let counts = (0..row.len())
                .map(|i| row.try_get::<_, i64>(i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Row::Counts(counts))
        }
        Check::Query(q) => {
            let rows = client.query(&q.sql, &[]).await?;
            let value = match rows.as_slice() {
                [row] if row.len() == 1 => row
                    .try_get::<_, i64>(0)
                    .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
                    .map_err(|_| {
                        CheckError::Shape("its column is not an integer (bigint or int)".into())
                    })?,
                [row] => {
                    return Err(CheckError::Shape(format!(
                        "it returned {} columns; it must return one",
                        row.len()
                    )))
                }
                rows => {
                    return Err(CheckError::Shape(format!(
                        "it returned {} rows; it must return one",
                        rows.len()
                    )))
                }
            };
            Ok(Row::Value(value))
        }
    }
}

#[derive(Debug)]
enum CheckError {
    Postgres(tokio_postgres::Error),
    Shape(String),
}

impl From<tokio_postgres::Error> for CheckError {
    fn from(e: tokio_postgres::Error) -> Self {
        CheckError::Postgres(e)
    }
}

impl CheckError {
    /// The connection is gone: closed, or the server is terminating it (class 57P: an
    /// administrator, a crash or a shutdown).
    fn is_lost(&self) -> bool {
        matches!(self, CheckError::Postgres(e)
            if e.is_closed() || e.code().is_some_and(|c| c.code().starts_with("57P")))
    }
}

enum Problem {
    Configuration(String),
    Failed(String),
}

fn classify(e: &CheckError, check: &Check, timeout: Duration) -> Problem {
    let e = match e {
        CheckError::Shape(problem) => {
            return Problem::Configuration(format!("queries.{}: {problem}", check.name()))
        }
        CheckError::Postgres(e) => e,
    };
    if e.code() == Some(&SqlState::QUERY_CANCELED) {
        return Problem::Failed(format!(
            "statement timeout: not counted within {} ms",
            timeout.as_millis()
        ));
    }
    if e.is_closed() || e.code().is_some_and(|c| c.code().starts_with("57P")) {
        return Problem::Failed(format!("connection lost while counting: {}", describe(e)));
    }
    // Class 42 (syntax error or access rule violation): the rule is wrong, not the data.
    let config = e.code().is_some_and(|c| c.code().starts_with("42"));
    match (config, check) {
        (true, Check::Query(q)) => {
            Problem::Configuration(format!("queries.{}: {}", q.name, describe(e)))
        }
        (true, Check::Table(t)) => {
            Problem::Configuration(format!("tables.{}: {}", t.qualified(), describe(e)))
        }
        (false, _) => Problem::Failed(describe(e)),
    }
}

fn table_count(scan: &TableScan, row: &[i64], elapsed: Duration) -> TableCount {
    let counted = row[0];
    let nulls = scan.columns.iter().zip(&row[1..]);
    match scan.mode {
        ScanMode::Exact => TableCount {
            table: scan.qualified(),
            rows: counted,
            estimated: false,
            sample_rows: None,
            nulls: nulls.map(|(c, n)| (c.clone(), *n)).collect(),
            duration_ms: millis(elapsed),
            previous_rows: None,
        },
        ScanMode::Estimate { reltuples, .. } => {
            let rows = reltuples.round() as i64;
            TableCount {
                table: scan.qualified(),
                rows,
                estimated: true,
                sample_rows: Some(counted),
                nulls: nulls
                    .map(|(c, n)| (c.clone(), scale(*n, counted, rows)))
                    .collect(),
                duration_ms: millis(elapsed),
                previous_rows: None,
            }
        }
    }
}

/// NULLs in the sample scaled to the table; a NULL seen in the sample never scales to zero.
fn scale(sample_nulls: i64, sample_rows: i64, rows: i64) -> i64 {
    if sample_nulls == 0 || sample_rows == 0 {
        return 0;
    }
    ((sample_nulls as f64 / sample_rows as f64) * rows as f64)
        .round()
        .max(1.0) as i64
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_scale_the_sample_to_the_table() {
        let scan = TableScan {
            schema: "public".into(),
            name: "events".into(),
            columns: vec!["kind".into(), "actor".into()],
            mode: ScanMode::Estimate {
                reltuples: 10_000_000.0,
                sample_percent: 1.0,
            },
            size_hint: 1e7,
        };
        let c = table_count(&scan, &[100_000, 2_500, 1], Duration::from_millis(9));
        assert_eq!(
            (c.rows, c.estimated, c.sample_rows),
            (10_000_000, true, Some(100_000))
        );
        assert_eq!(c.nulls["kind"], 250_000);
        assert_eq!(c.nulls["actor"], 100);
        assert_eq!(
            scale(1, 1_000_000, 10),
            1,
            "a NULL seen is never scaled away"
        );
        assert_eq!(scale(0, 10, 10), 0);
    }
}
