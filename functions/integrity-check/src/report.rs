//! The run report: what was counted, what is wrong, and what happened since the last run. It is
//! returned, stored with the history, and the source of the metrics and guard events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableCount {
    /// `schema.table`.
    pub table: String,
    /// Exact, or the planner's estimate when `estimated`.
    pub rows: i64,
    pub estimated: bool,
    /// Rows the estimate's sample read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rows: Option<i64>,
    /// NULLs per counted column (scaled from the sample when `estimated`).
    pub nulls: BTreeMap<String, i64>,
    pub duration_ms: u64,
    /// The table's row count at the previous run that counted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rows: Option<i64>,
}

impl TableCount {
    pub fn null_rate(&self, column: &str) -> f64 {
        let nulls = self.nulls.get(column).copied().unwrap_or(0);
        if self.rows <= 0 {
            0.0
        } else {
            nulls as f64 / self.rows as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QueryResult {
    pub name: String,
    pub value: i64,
    pub duration_ms: u64,
}

/// Something that is wrong (or, at `warning`, unusual) in the data: the same record the run's
/// guard event carries.
pub use safeship::guard::IntegrityFinding as Finding;

/// A check that ran but could not be finished (statement timeout, lost connection, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailedCheck {
    pub check: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeploymentSince {
    pub id: String,
    pub application: String,
    pub deployment_group: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Everything counted, nothing wrong.
    Clean,
    /// Everything counted; some findings.
    Anomalies,
    /// Some checks could not be done (configuration errors, timeouts, deadline).
    Incomplete,
    /// Nothing could be counted: no connection, or no catalog.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub database: String,
    pub run_at: DateTime<Utc>,
    pub status: RunStatus,
    pub duration_ms: u64,
    /// The previous run that counted something; none on the first run (this one is the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_run_at: Option<DateTime<Utc>>,
    pub baseline: bool,
    /// Deployments of the database's groups that completed since the previous run.
    pub deployments_since: Vec<DeploymentSince>,
    pub tables: Vec<TableCount>,
    pub queries: Vec<QueryResult>,
    pub findings: Vec<Finding>,
    pub configuration_errors: Vec<String>,
    pub failed: Vec<FailedCheck>,
    /// Checks the run's deadline cut off.
    pub unfinished: Vec<String>,
    /// Why nothing could be counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn failed(
        database: &str,
        run_at: DateTime<Utc>,
        duration_ms: u64,
        error: String,
    ) -> Report {
        Report {
            database: database.to_owned(),
            run_at,
            status: RunStatus::Failed,
            duration_ms,
            previous_run_at: None,
            baseline: false,
            deployments_since: Vec::new(),
            tables: Vec::new(),
            queries: Vec::new(),
            findings: Vec::new(),
            configuration_errors: Vec::new(),
            failed: Vec::new(),
            unfinished: Vec::new(),
            error: Some(error),
        }
    }

    /// The status that follows from the contents.
    pub fn settle(&mut self) {
        self.status = if self.error.is_some() {
            RunStatus::Failed
        } else if !(self.configuration_errors.is_empty()
            && self.failed.is_empty()
            && self.unfinished.is_empty())
        {
            RunStatus::Incomplete
        } else if !self.findings.is_empty() {
            RunStatus::Anomalies
        } else {
            RunStatus::Clean
        };
    }

    /// Everything that kept the run from checking all it should, in one line, or `None`.
    pub fn problems(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(clipped(e, PROBLEM_CHARS * LISTED_PROBLEMS));
        }
        let mut parts: Vec<String> = Vec::new();
        listed(
            &mut parts,
            self.configuration_errors
                .iter()
                .map(|e| format!("configuration: {e}")),
            "configuration errors",
        );
        listed(
            &mut parts,
            self.failed
                .iter()
                .map(|f| format!("{}: {}", f.check, f.error)),
            "failed checks",
        );
        if !self.unfinished.is_empty() {
            let mut names = Vec::new();
            listed(&mut names, self.unfinished.iter().cloned(), "more");
            parts.push(format!(
                "not finished before the deadline: {}",
                names.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// What a duplicate delivery gets back, and what the idempotency record keeps.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "database": self.database,
            "run-at": self.run_at,
            "status": self.status,
            "tables": self.tables.len(),
            "findings": self.findings.len(),
            "problems": self.problems(),
        })
    }
}

/// Problems of one kind a run's text lists by name; the rest are counted. The text goes into a
/// guard event (EventBridge takes 256 KB) and the run's idempotency record (DynamoDB, 400 KB):
/// a database of thousands of tables that all time out must still fit in both.
pub const LISTED_PROBLEMS: usize = 20;

/// How much of one problem's text is kept.
pub const PROBLEM_CHARS: usize = 300;

/// Appends the first [`LISTED_PROBLEMS`] of `items`, each clipped, then "and N more `what`".
fn listed(parts: &mut Vec<String>, items: impl ExactSizeIterator<Item = String>, what: &str) {
    let total = items.len();
    parts.extend(
        items
            .take(LISTED_PROBLEMS)
            .map(|item| clipped(&item, PROBLEM_CHARS)),
    );
    if total > LISTED_PROBLEMS {
        parts.push(format!("and {} more {what}", total - LISTED_PROBLEMS));
    }
}

pub(crate) fn clipped(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
