//! Is this count an anomaly? Decided on data alone: this run's count, the table's history and
//! the policy's rules and bounds.

use chrono::{DateTime, Utc};
use safeship::policy::{Severity, TableRules};

use crate::report::{Finding, QueryResult, TableCount};

/// One earlier count of a table (newest first in a history).
#[derive(Debug, Clone, PartialEq)]
pub struct TablePoint {
    pub at: DateTime<Utc>,
    pub rows: i64,
    pub estimated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// A drop of more than this (percent) since the previous count is an anomaly.
    pub max_drop_percent: f64,
    /// Growth of more than this (percent) is a warning.
    pub max_growth_percent: f64,
}

/// Runs of history needed before the deviation test applies.
pub const MIN_HISTORY_FOR_DEVIATION: usize = 7;

/// The findings for one table: its rules, its change since the previous count, and, with enough
/// history, a change far outside its usual day-to-day change.
pub fn table_findings(
    now: &TableCount,
    history: &[TablePoint],
    rules: Option<&TableRules>,
    bounds: Bounds,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let estimate_note = |what: &str| {
        if now.estimated {
            format!(
                "{what} (estimated from a sample of {} rows)",
                now.sample_rows.unwrap_or(0)
            )
        } else {
            what.to_owned()
        }
    };
    let finding = |column: Option<&str>, description: String, severity| Finding {
        table: now.table.clone(),
        column: column.map(str::to_owned),
        description,
        severity,
    };
    if let Some(rules) = rules {
        for column in &rules.not_null {
            let nulls = now.nulls.get(column).copied().unwrap_or(0);
            if nulls > 0 {
                findings.push(finding(
                    Some(column),
                    estimate_note(&format!(
                        "{column} holds {nulls} NULL(s) ({:.2}% of {} rows); it must hold none",
                        now.null_rate(column) * 100.0,
                        now.rows
                    )),
                    Severity::Failure,
                ));
            }
        }
        for (column, bound) in &rules.max_null_rate {
            let rate = now.null_rate(column);
            if rate > *bound {
                findings.push(finding(
                    Some(column),
                    estimate_note(&format!(
                        "{column} is {:.2}% NULL, over the {:.2}% bound",
                        rate * 100.0,
                        bound * 100.0
                    )),
                    Severity::Failure,
                ));
            }
        }
    }

    let Some(previous) = history.first() else {
        return findings;
    };
    let estimated = if now.estimated || previous.estimated {
        " (estimated counts)"
    } else {
        ""
    };
    let change = now.rows - previous.rows;
    if previous.rows > 0 {
        let percent = change as f64 / previous.rows as f64 * 100.0;
        if -percent > bounds.max_drop_percent {
            findings.push(finding(
                None,
                format!(
                    "rows fell {:.1}% since the last run ({} → {}), over the {}% bound{estimated}",
                    -percent, previous.rows, now.rows, bounds.max_drop_percent
                ),
                Severity::Failure,
            ));
            return findings;
        }
        if percent > bounds.max_growth_percent {
            findings.push(finding(
                None,
                format!(
                    "rows grew {percent:.1}% since the last run ({} → {}), over the {}% bound{estimated}",
                    previous.rows, now.rows, bounds.max_growth_percent
                ),
                Severity::Warning,
            ));
            return findings;
        }
    }
    if let Some(f) = deviation(now, history) {
        findings.push(f);
    }
    findings
}

/// With at least [`MIN_HISTORY_FOR_DEVIATION`] earlier counts: is today's change beyond three
/// standard deviations of the recent changes? Fewer rows than usual (lost rows, or ingestion that
/// stopped) is an anomaly; more is a warning. The deviation is at least 0.1% of the table (and at
/// least one row), so a table that changes by exactly the same amount every day is not flagged for
/// a handful of rows.
fn deviation(now: &TableCount, history: &[TablePoint]) -> Option<Finding> {
    if history.len() < MIN_HISTORY_FOR_DEVIATION {
        return None;
    }
    let deltas: Vec<f64> = history
        .windows(2)
        .map(|w| (w[0].rows - w[1].rows) as f64)
        .collect();
    let n = deltas.len() as f64;
    let mean = deltas.iter().sum::<f64>() / n;
    let variance = deltas.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let floor = (history[0].rows.abs() as f64 * 0.001).max(1.0);
    let sigma = variance.sqrt().max(floor);
    let change = (now.rows - history[0].rows) as f64;
    let distance = (change - mean) / sigma;
    if distance.abs() <= 3.0 {
        return None;
    }
    let (severity, direction) = if distance < 0.0 {
        (Severity::Failure, "below")
    } else {
        (Severity::Warning, "above")
    };
    Some(Finding {
        table: now.table.clone(),
        column: None,
        description: format!(
            "rows changed by {change:+} since the last run; the last {} runs changed by {mean:+.0} ± {sigma:.0} a run: {:.1}σ {direction}",
            deltas.len(),
            distance.abs()
        ),
        severity,
    })
}

/// A zero-count query that returned anything else.
pub fn query_finding(result: &QueryResult) -> Option<Finding> {
    (result.value != 0).then(|| Finding {
        table: result.name.clone(),
        column: None,
        description: format!(
            "{} returned {}; it must return 0",
            result.name, result.value
        ),
        severity: Severity::Failure,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_drop_percent: 1.0,
        max_growth_percent: 50.0,
    };

    fn count(rows: i64, nulls: &[(&str, i64)]) -> TableCount {
        TableCount {
            table: "public.orders".into(),
            rows,
            estimated: false,
            sample_rows: None,
            nulls: nulls.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            duration_ms: 1,
            previous_rows: None,
        }
    }

    /// Counts of consecutive nights, oldest first; returned newest first as histories are.
    fn history(rows: &[i64]) -> Vec<TablePoint> {
        let start: DateTime<Utc> = "2026-11-01T03:00:00Z".parse().unwrap();
        let mut h: Vec<TablePoint> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| TablePoint {
                at: start + chrono::Duration::days(i as i64),
                rows: *r,
                estimated: false,
            })
            .collect();
        h.reverse();
        h
    }

    fn rules(not_null: &[&str], rates: &[(&str, f64)]) -> TableRules {
        TableRules {
            not_null: not_null.iter().map(|c| c.to_string()).collect(),
            max_null_rate: rates
                .iter()
                .map(|(c, r)| (c.to_string(), *r))
                .collect::<BTreeMap<_, _>>(),
            exact: false,
        }
    }

    #[test]
    fn the_first_run_only_checks_the_rules() {
        assert!(table_findings(&count(100, &[]), &[], None, BOUNDS).is_empty());
    }

    #[test]
    fn a_drop_over_the_bound_is_an_anomaly_and_growth_a_warning() {
        let f = table_findings(&count(9_500, &[]), &history(&[10_000]), None, BOUNDS);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Failure);
        assert_eq!(
            f[0].description,
            "rows fell 5.0% since the last run (10000 → 9500), over the 1% bound"
        );
        // 1% exactly is within bounds
        assert!(table_findings(&count(9_900, &[]), &history(&[10_000]), None, BOUNDS).is_empty());
        let f = table_findings(&count(18_000, &[]), &history(&[10_000]), None, BOUNDS);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].description.starts_with("rows grew 80.0%"),
            "{}",
            f[0].description
        );
    }

    #[test]
    fn nulls_in_a_required_column_and_rates_over_their_bound() {
        let r = rules(&["customer_id"], &[("shipped_at", 0.5)]);
        let f = table_findings(
            &count(1000, &[("customer_id", 20), ("shipped_at", 600)]),
            &[],
            Some(&r),
            BOUNDS,
        );
        let described: Vec<_> = f
            .iter()
            .map(|f| (f.column.clone().unwrap(), f.description.clone()))
            .collect();
        assert_eq!(
            described,
            [
                (
                    "customer_id".to_string(),
                    "customer_id holds 20 NULL(s) (2.00% of 1000 rows); it must hold none"
                        .to_string()
                ),
                (
                    "shipped_at".to_string(),
                    "shipped_at is 60.00% NULL, over the 50.00% bound".to_string()
                ),
            ]
        );
        let clean = table_findings(
            &count(1000, &[("customer_id", 0), ("shipped_at", 500)]),
            &[],
            Some(&r),
            BOUNDS,
        );
        assert!(clean.is_empty(), "{clean:?}");
    }

    #[test]
    fn estimates_say_so() {
        let mut c = count(10_000_000, &[("customer_id", 300)]);
        c.estimated = true;
        c.sample_rows = Some(100_000);
        let f = table_findings(&c, &[], Some(&rules(&["customer_id"], &[])), BOUNDS);
        assert!(
            f[0].description
                .ends_with("(estimated from a sample of 100000 rows)"),
            "{}",
            f[0].description
        );
    }

    #[test]
    fn a_change_far_outside_the_usual_one_is_flagged_once_history_is_long_enough() {
        // grows ~1000 a night with some noise
        let steady = [10_000, 11_010, 11_990, 13_000, 14_020, 14_980, 16_000];
        let h = history(&steady);
        // a normal night
        assert!(table_findings(&count(17_010, &[]), &h, None, BOUNDS).is_empty());
        // ingestion stopped: +0 instead of ~+1000, within the 1% drop bound
        let f = table_findings(&count(16_000, &[]), &h, None, BOUNDS);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Failure);
        assert!(f[0].description.contains("σ below"), "{}", f[0].description);
        // a surge well above the usual, within the 50% growth bound
        let f = table_findings(&count(19_000, &[]), &h, None, BOUNDS);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].description.contains("σ above"), "{}", f[0].description);
        // six nights are not enough history
        assert!(table_findings(&count(16_000, &[]), &h[..6], None, BOUNDS).is_empty());
    }

    #[test]
    fn a_perfectly_regular_table_is_not_flagged_for_a_few_rows() {
        let h = history(&[
            100_000, 101_000, 102_000, 103_000, 104_000, 105_000, 106_000,
        ]);
        assert!(table_findings(&count(107_050, &[]), &h, None, BOUNDS).is_empty());
        assert_eq!(
            table_findings(&count(106_000, &[]), &h, None, BOUNDS).len(),
            1
        );
    }

    #[test]
    fn zero_queries_must_return_zero() {
        let r = QueryResult {
            name: "orphaned-order-items".into(),
            value: 3,
            duration_ms: 2,
        };
        assert_eq!(
            query_finding(&r).unwrap().description,
            "orphaned-order-items returned 3; it must return 0"
        );
        assert!(query_finding(&QueryResult { value: 0, ..r }).is_none());
    }
}
