//! `scripts/bench` (integrity part): the integrity check's scan against PostgreSQL's own.
//!
//! In the local PostgreSQL (schema `safeship_bench`, built once and kept: drop it with
//! `DROP SCHEMA safeship_bench CASCADE`), a 10-million-row table with four nullable columns and
//! twenty 250,000-row tables. Measured, medians of 5 after one warming pass:
//! - the direct one-pass query in `psql` (`\timing`): PostgreSQL's own scan, the floor;
//! - the naive way in `psql`: one query per check (the row count, then one per column);
//! - the integrity check on the big table, through the library exactly as the Lambda runs it
//!   (secret and history in moto): the table's scan, and the whole run;
//! - the estimate mode on the same table (`reltuples` plus a `TABLESAMPLE SYSTEM` sample);
//! - the twenty tables with one connection and with four.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use integrity_check::metrics::MetricsSink;
use integrity_check::{Deps, IntegrityConfig};
use safeship_testkit::emulators::{common_with_policy, database_url, moto_endpoint, sdk_config};
use safeship_testkit::integrity::{admin, create_history_table, database_secret, policy, postgres};
use serde_json::{json, Value};
use tokio::time::Instant;

const RUNS: usize = 5;
const SCHEMA: &str = "safeship_bench";
const BIG_ROWS: i64 = 10_000_000;
const SMALL_TABLES: usize = 20;
const SMALL_ROWS: i64 = 250_000;
const COLUMNS: [&str; 4] = ["a", "b", "c", "d"];

fn one_pass_sql(table: &str) -> String {
    let nulls: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!(", count(*) FILTER (WHERE \"{c}\" IS NULL)"))
        .collect();
    format!(
        "SELECT count(*){} FROM \"{SCHEMA}\".\"{table}\"",
        nulls.concat()
    )
}

fn filler(table: &str, rows: i64) -> String {
    format!(
        "CREATE TABLE {SCHEMA}.{table} (id bigint, a int, b text, c timestamptz, d int);
         INSERT INTO {SCHEMA}.{table}
           SELECT g, CASE WHEN g % 100 = 0 THEN NULL ELSE g END,
                  CASE WHEN g % 10 = 0 THEN NULL ELSE 'item-' || g END,
                  CASE WHEN g % 2 = 0 THEN NULL ELSE now() END,
                  CASE WHEN g % 1000 = 0 THEN NULL ELSE g % 7 END
           FROM generate_series(1, {rows}) g;"
    )
}

/// Runs `sql`, with PostgreSQL's own message on failure.
async fn execute(db: &tokio_postgres::Client, sql: &str) -> anyhow::Result<()> {
    db.batch_execute(sql)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {sql}", integrity_check::connect::describe(&e)))
}

/// Builds the tables unless a previous run left them complete.
async fn ensure_tables(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    let present: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind = 'r'",
            &[&SCHEMA],
        )
        .await?
        .get(0);
    if present == (SMALL_TABLES + 1) as i64 {
        let rows: i64 = db
            .query_one(&format!("SELECT count(*) FROM {SCHEMA}.big"), &[])
            .await?
            .get(0);
        if rows == BIG_ROWS {
            eprintln!("[bench] reusing the tables in schema {SCHEMA}");
            return Ok(());
        }
    }
    eprintln!("[bench] building {BIG_ROWS} rows and {SMALL_TABLES} × {SMALL_ROWS} rows in schema {SCHEMA} (once)");
    execute(
        db,
        &format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};"),
    )
    .await?;
    let tables = std::iter::once(("big".to_string(), BIG_ROWS))
        .chain((1..=SMALL_TABLES).map(|i| (format!("t{i:02}"), SMALL_ROWS)));
    for (table, rows) in tables {
        execute(db, &filler(&table, rows)).await?;
        // VACUUM runs outside a transaction: a statement of its own. It sets the visibility map
        // and reltuples, as autovacuum would have on a real table.
        execute(db, &format!("VACUUM ANALYZE {SCHEMA}.{table}")).await?;
    }
    Ok(())
}

/// `psql` running `statements` in one session with `\timing`: each statement's time, ms.
fn psql_times(statements: &[String]) -> anyhow::Result<Vec<f64>> {
    let mut cmd = Command::new("psql");
    cmd.arg(database_url())
        .args(["-X", "-q", "-A", "-t", "-c", "\\timing on"]);
    for s in statements {
        cmd.args(["-c", s]);
    }
    let out = cmd.output().context("running psql")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Time: "))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    if times.len() != statements.len() {
        bail!(
            "psql printed {} timings for {} statements: {text}",
            times.len(),
            statements.len()
        );
    }
    Ok(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Bench {
    deps: Deps,
}

impl Bench {
    async fn new(integrity: &str) -> Bench {
        let sdk = sdk_config(&moto_endpoint()).await;
        let arn = database_secret(&sdk, &postgres().user).await;
        let doc = policy(&format!(
            "      connection: {{secret-arn: {arn}, sslmode: disable}}\n{integrity}"
        ));
        let common = common_with_policy(&sdk, &doc).await;
        let table = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
        Bench {
            deps: Deps::new(
                common,
                IntegrityConfig {
                    table,
                    ca_file: None,
                    margin: Duration::from_secs(1),
                    history_days: 1,
                },
                MetricsSink::Memory(Default::default()),
            ),
        }
    }

    /// One run: (the big table's scan in ms, the whole run in ms).
    async fn run(&self, n: usize) -> anyhow::Result<(f64, f64, Value)> {
        let policy = self.deps.common.policy.databases["checkout-db"]
            .integrity
            .clone()
            .context("an integrity section")?;
        let at = chrono::Utc::now() + chrono::Duration::seconds(n as i64);
        let started = Instant::now();
        let report = integrity_check::check_database(
            &self.deps,
            "checkout-db",
            &policy,
            at,
            Instant::now() + Duration::from_secs(600),
        )
        .await?;
        let whole = started.elapsed().as_secs_f64() * 1000.0;
        if report.error.is_some() || !report.failed.is_empty() {
            bail!("the run did not count everything: {:?}", report.problems());
        }
        let big = report
            .tables
            .iter()
            .find(|t| t.table == format!("{SCHEMA}.big"))
            .map_or(0.0, |t| t.duration_ms as f64);
        Ok((big, whole, serde_json::to_value(&report)?))
    }

    async fn medians(&self) -> anyhow::Result<(f64, f64, Value)> {
        self.run(0).await?; // warming
        let mut scans = Vec::new();
        let mut wholes = Vec::new();
        let mut last = Value::Null;
        for n in 1..=RUNS {
            let (scan, whole, report) = self.run(n).await?;
            scans.push(scan);
            wholes.push(whole);
            last = report;
        }
        Ok((median(scans), median(wholes), last))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = admin().await;
    ensure_tables(&db).await?;

    let one_pass = one_pass_sql("big");
    let mut naive = vec![format!("SELECT count(*) FROM \"{SCHEMA}\".\"big\"")];
    naive.extend(
        COLUMNS
            .iter()
            .map(|c| format!("SELECT count(*) FROM \"{SCHEMA}\".\"big\" WHERE \"{c}\" IS NULL")),
    );
    psql_times(std::slice::from_ref(&one_pass))?; // warming
    let mut direct = Vec::new();
    let mut per_check = Vec::new();
    for _ in 0..RUNS {
        direct.push(psql_times(std::slice::from_ref(&one_pass))?[0]);
        per_check.push(psql_times(&naive)?.iter().sum());
    }
    let (direct, per_check) = (median(direct), median(per_check));
    eprintln!("[bench] psql: done");

    let rules = format!(
        "      tables:\n        {SCHEMA}.big: {{not-null: [d], max-null-rate: {{a: 0.5, b: 0.5, c: 0.9}}}}\n"
    );
    let exact = Bench::new(&format!("{rules}      estimate-above-rows: 100000000\n")).await;
    let (check_scan, check_whole, exact_report) = exact.medians().await?;
    eprintln!("[bench] exact check: done");
    let estimate = Bench::new(&format!(
        "{rules}      estimate-above-rows: 1000000\n      sample-rows: 100000\n"
    ))
    .await;
    let (estimate_scan, estimate_whole, estimate_report) = estimate.medians().await?;
    eprintln!("[bench] estimate: done");
    let swept = |concurrency: usize| {
        format!(
            "      schemas: [{SCHEMA}]\n      exclude: [{SCHEMA}.big]\n      concurrency: {concurrency}\n"
        )
    };
    let sequential = Bench::new(&swept(1)).await;
    let (_, sequential_whole, _) = sequential.medians().await?;
    let concurrent = Bench::new(&swept(4)).await;
    let (_, concurrent_whole, _) = concurrent.medians().await?;
    eprintln!("[bench] 20 tables: done");

    let big = &exact_report["tables"][0];
    let sampled = &estimate_report["tables"][0];
    println!("\nintegrity check, {BIG_ROWS} rows × 4 nullable columns; medians of {RUNS} (ms)\n");
    println!("{:<58} {:>10} {:>10}", "", "ms", "ratio");
    let row = |what: &str, ms: f64, ratio: String| println!("{what:<58} {ms:>10.1} {ratio:>10}");
    row("psql: one-pass query (the floor)", direct, "1.00".into());
    row(
        "psql: one query per check (5 queries)",
        per_check,
        format!("{:.2}", per_check / direct),
    );
    row(
        "integrity check: the table's scan",
        check_scan,
        format!("{:.3}", check_scan / direct),
    );
    row(
        "integrity check: the whole run (secret, connect, history…)",
        check_whole,
        format!("{:.3}", check_whole / direct),
    );
    row(
        "  one query per check ÷ the check's scan",
        per_check / check_scan,
        String::new(),
    );
    row(
        &format!(
            "estimate: the table's sample ({} rows)",
            sampled["sample-rows"]
        ),
        estimate_scan,
        format!("{:.1}%", estimate_scan / check_scan * 100.0),
    );
    row(
        "estimate: the whole run",
        estimate_whole,
        format!("{:.1}%", estimate_whole / check_whole * 100.0),
    );
    row(
        &format!("{SMALL_TABLES} tables × {SMALL_ROWS} rows, one connection"),
        sequential_whole,
        "1.00".into(),
    );
    row(
        &format!("{SMALL_TABLES} tables × {SMALL_ROWS} rows, four connections"),
        concurrent_whole,
        format!("{:.2}", concurrent_whole / sequential_whole),
    );
    println!(
        "\nexact count {} rows; estimate {} rows, null rate of b {:.4} (exact {:.4})",
        big["rows"],
        sampled["rows"],
        sampled["nulls"]["b"].as_f64().unwrap_or(0.0) / sampled["rows"].as_f64().unwrap_or(1.0),
        big["nulls"]["b"].as_f64().unwrap_or(0.0) / big["rows"].as_f64().unwrap_or(1.0),
    );
    let figures = json!({
        "rows": BIG_ROWS,
        "psql_one_pass_ms": direct,
        "psql_one_query_per_check_ms": per_check,
        "check_scan_ms": check_scan,
        "check_whole_run_ms": check_whole,
        "check_scan_over_one_pass": check_scan / direct,
        "one_query_per_check_over_check_scan": per_check / check_scan,
        "estimate_scan_ms": estimate_scan,
        "estimate_over_exact_scan": estimate_scan / check_scan,
        "estimate_sample_rows": sampled["sample-rows"],
        "tables_20_sequential_ms": sequential_whole,
        "tables_20_concurrent_4_ms": concurrent_whole,
    });
    let out = std::env::var("SAFESHIP_BENCH_INTEGRITY_OUT")
        .unwrap_or_else(|_| "bench-integrity.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)?;
    println!("figures written to {out}");
    Ok(())
}
