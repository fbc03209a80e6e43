//! The integrity run's CloudWatch metrics, as EMF documents (`safeship::metrics`): one JSON
//! document per line on stdout, without a `PutMetricData` call on the run's critical path.

use serde_json::{json, Value};

pub use safeship::metrics::MetricsSink;

use crate::report::Report;

pub const NAMESPACE: &str = "Safeship/Integrity";

fn document(
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, Value)],
) -> String {
    safeship::metrics::document(NAMESPACE, timestamp_ms, dimensions, metrics)
}

/// The run's metrics: per table `RowCount`, per table and column `NullCount`, per query
/// `QueryValue`, and per database the run's `Anomalies`, `Warnings`, `ConfigurationErrors`,
/// `FailedChecks`, `UnfinishedChecks`, `RunFailed` and `RunDuration`.
pub fn documents(report: &Report) -> Vec<String> {
    let ts = report.run_at.timestamp_millis();
    let db = report.database.as_str();
    let mut lines = Vec::new();
    for t in &report.tables {
        lines.push(document(
            ts,
            &[("Database", db), ("Table", &t.table)],
            &[("RowCount", "Count", json!(t.rows))],
        ));
        for (column, nulls) in &t.nulls {
            lines.push(document(
                ts,
                &[("Database", db), ("Table", &t.table), ("Column", column)],
                &[("NullCount", "Count", json!(nulls))],
            ));
        }
    }
    for q in &report.queries {
        lines.push(document(
            ts,
            &[("Database", db), ("Query", &q.name)],
            &[("QueryValue", "Count", json!(q.value))],
        ));
    }
    let failures = report
        .findings
        .iter()
        .filter(|f| f.severity == safeship::policy::Severity::Failure)
        .count();
    lines.push(document(
        ts,
        &[("Database", db)],
        &[
            ("Anomalies", "Count", json!(failures)),
            ("Warnings", "Count", json!(report.findings.len() - failures)),
            (
                "ConfigurationErrors",
                "Count",
                json!(report.configuration_errors.len()),
            ),
            ("FailedChecks", "Count", json!(report.failed.len())),
            ("UnfinishedChecks", "Count", json!(report.unfinished.len())),
            (
                "RunFailed",
                "Count",
                json!(u8::from(report.error.is_some())),
            ),
            ("RunDuration", "Milliseconds", json!(report.duration_ms)),
        ],
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Report, TableCount};

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let mut report = Report::failed(
            "checkout-db",
            "2026-11-20T03:00:00Z".parse().unwrap(),
            12,
            "x".into(),
        );
        report.error = None;
        report.tables.push(TableCount {
            table: "public.orders".into(),
            rows: 1000,
            estimated: false,
            sample_rows: None,
            nulls: [("customer_id".to_string(), 3)].into(),
            duration_ms: 4,
            previous_rows: None,
        });
        let docs: Vec<Value> = documents(&report)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[0],
            json!({
                "_aws": {"Timestamp": 1_795_143_600_000_i64, "CloudWatchMetrics": [{
                    "Namespace": "Safeship/Integrity",
                    "Dimensions": [["Database", "Table"]],
                    "Metrics": [{"Name": "RowCount", "Unit": "Count"}]}]},
                "Database": "checkout-db", "Table": "public.orders", "RowCount": 1000
            })
        );
        assert_eq!(docs[1]["NullCount"], 3);
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Database", "Table", "Column"]])
        );
        assert_eq!(docs[2]["RunFailed"], 0);
        assert_eq!(docs[2]["Anomalies"], 0);
    }
}
