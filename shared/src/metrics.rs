//! CloudWatch metrics in the Embedded Metric Format: one JSON document per line on stdout, which
//! CloudWatch Logs turns into metrics without a `PutMetricData` call on an invocation's path.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

/// Where the documents go: stdout in Lambda (CloudWatch Logs reads them there), stderr from a
/// terminal (so a script reading the CLI's `--json` gets only the answer), memory in tests.
#[derive(Debug, Clone)]
pub enum MetricsSink {
    Stdout,
    Stderr,
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Default for MetricsSink {
    /// Stdout under a Lambda runtime (`AWS_LAMBDA_RUNTIME_API` set), else stderr.
    fn default() -> Self {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            MetricsSink::Stdout
        } else {
            MetricsSink::Stderr
        }
    }
}

impl MetricsSink {
    /// A sink that keeps the documents, and the handle to read them.
    #[must_use]
    pub fn memory() -> (MetricsSink, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (MetricsSink::Memory(seen.clone()), seen)
    }

    pub fn emit(&self, lines: &[String]) {
        match self {
            MetricsSink::Stdout => {
                use std::io::Write;
                // One lock for all lines: no log line lands inside a document.
                let mut out = std::io::stdout().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            MetricsSink::Stderr => {
                use std::io::Write;
                let mut out = std::io::stderr().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            MetricsSink::Memory(seen) => seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(lines.iter().cloned()),
        }
    }
}

/// One EMF document: `metrics` as (name, unit, value) under `namespace`, with `dimensions` as
/// (name, value) forming one dimension set.
#[must_use]
pub fn document(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, Value)],
) -> String {
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    document_in_sets(namespace, timestamp_ms, dimensions, &[&names], metrics)
}

/// As [`document`], and the same metrics without dimensions too: one series an alarm can watch
/// whatever the dimension values are.
#[must_use]
pub fn document_with_total(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, Value)],
) -> String {
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    document_in_sets(namespace, timestamp_ms, dimensions, &[&names, &[]], metrics)
}

fn document_in_sets(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    sets: &[&[&str]],
    metrics: &[(&str, &str, Value)],
) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": sets,
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), json!(v));
    }
    for (name, _, value) in metrics {
        root.insert((*name).into(), value.clone());
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_names_its_metric_and_dimensions() {
        let doc: Value = serde_json::from_str(&document(
            "Safeship/Guard",
            1_000,
            &[("Guard", "traffic-hook")],
            &[("GuardEventsUnpublished", "Count", json!(1))],
        ))
        .unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Safeship/Guard"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Guard"]])
        );
        assert_eq!(doc["Guard"], "traffic-hook");
        assert_eq!(doc["GuardEventsUnpublished"], 1);
        let doc: Value = serde_json::from_str(&document_with_total(
            "Safeship/Guard",
            1_000,
            &[("Guard", "traffic-hook")],
            &[("GuardEventsUnpublished", "Count", json!(1))],
        ))
        .unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Guard"], []])
        );
    }
}
