//! `safeship integrity run`: the nightly check on demand, with the function's own code; a run
//! of its own (not the night's: its key is this run's time), recorded in the history like any.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use safeship::env::Env;
use safeship::metrics::MetricsSink;
use serde_json::Value;

use crate::{parse_duration, Error, Exit, Outcome};

#[derive(Debug, Args)]
pub struct IntegrityArgs {
    /// Only this database (a key of the policy's `databases` with an `integrity` section).
    #[arg(long)]
    database: Option<String>,
    /// The longest the run may take.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    timeout: Duration,
}

pub async fn run(env: &Env, args: IntegrityArgs) -> Result<Outcome, Error> {
    let mut deps = integrity_check::Deps::from_env(env).await?;
    // EMF documents reach CloudWatch only from Lambda's log: here they would be noise on stdout.
    deps.metrics = MetricsSink::memory().0;
    if let Some(only) = &args.database {
        let mut policy = (*deps.common.policy).clone();
        let checked: Vec<String> = policy
            .databases
            .iter()
            .filter(|(_, db)| db.integrity.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        if !checked.contains(only) {
            return Err(Error::Usage(format!(
                "--database {only}: not a database the policy checks (checked: {})",
                checked.join(", ")
            )));
        }
        for (name, db) in &mut policy.databases {
            if name != only {
                db.integrity = None;
            }
        }
        deps.common.policy = Arc::new(policy);
    }
    let now = chrono::Utc::now();
    let key = format!("safeship-cli@{}", now.to_rfc3339());
    let answer =
        integrity_check::run(&deps, &key, now, tokio::time::Instant::now() + args.timeout).await?;
    let runs = answer["runs"].as_array().cloned().unwrap_or_default();
    let clean = runs.iter().all(|r| r["status"] == "clean");
    Ok(Outcome {
        exit: if clean { Exit::Ok } else { Exit::Refused },
        summary: render(&runs),
        json: answer,
    })
}

/// One block per database: its status and counts, then each finding and each failed check.
fn render(runs: &[Value]) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    let mut out = Vec::new();
    if runs.is_empty() {
        out.push("no database in the policy has an integrity section".to_owned());
    }
    for run in runs {
        out.push(format!(
            "{}: {} ({} tables, {} findings{})",
            text(&run["database"]),
            text(&run["status"]),
            count(&run["tables"]),
            count(&run["findings"]),
            if run["baseline"] == true {
                "; the first run: a baseline"
            } else {
                ""
            }
        ));
        for f in run["findings"].as_array().into_iter().flatten() {
            let column = f["column"]
                .as_str()
                .map(|c| format!(".{c}"))
                .unwrap_or_default();
            out.push(format!(
                "  {} {}{column}: {}",
                text(&f["severity"]),
                text(&f["table"]),
                text(&f["description"])
            ));
        }
        for f in run["failed"].as_array().into_iter().flatten() {
            out.push(format!(
                "  FAILED {}: {}",
                text(&f["check"]),
                text(&f["error"])
            ));
        }
        for d in run["deployments-since"].as_array().into_iter().flatten() {
            out.push(format!(
                "  deployed since the last run: {} ({}/{})",
                text(&d["id"]),
                text(&d["application"]),
                text(&d["deployment-group"])
            ));
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_is_one_block_with_its_findings_worst_first_as_the_report_orders_them() {
        let runs = [
            json!({"database": "checkout-db", "status": "anomalies", "baseline": false,
            "tables": [{}, {}], "findings": [
                {"table": "s.orders", "description": "rows fell 50% (from 100 to 50)", "severity": "failure"},
                {"table": "s.customers", "column": "email", "description": "null rate 20%", "severity": "warning"}],
            "failed": [], "deployments-since": [{"id": "d-1", "application": "checkout", "deployment-group": "checkout-prod"}]}),
        ];
        assert_eq!(
            render(&runs),
            "checkout-db: anomalies (2 tables, 2 findings)\n  failure s.orders: rows fell 50% (from 100 to 50)\n  warning s.customers.email: null rate 20%\n  deployed since the last run: d-1 (checkout/checkout-prod)"
        );
    }
}
