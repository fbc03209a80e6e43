//! The integrity check's section: how to reach a database and what its nightly check counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Policy;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IntegrityPolicy {
    pub connection: DbConnection,
    /// Every ordinary table of these schemas is counted (besides those in `tables`).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// `schema.table` names left out of the `schemas` sweep.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Tables by `schema.table` (a bare name means `public`), with their column rules.
    #[serde(default, deserialize_with = "super::unique::keys")]
    pub tables: BTreeMap<String, TableRules>,
    /// Counts that must be 0, e.g. orphaned foreign keys.
    #[serde(default)]
    pub queries: Vec<ZeroQuery>,
    /// Above this many rows (by the planner's `reltuples`), a table is estimated instead of
    /// counted: `reltuples` for rows, a `TABLESAMPLE SYSTEM` sample for null rates.
    #[serde(default = "default_estimate_above_rows")]
    #[cfg_attr(feature = "schema", schemars(range(max = MAX_ESTIMATE_ABOVE_ROWS)))]
    pub estimate_above_rows: u64,
    /// How many rows the estimate's sample aims at.
    #[serde(default = "default_sample_rows")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_SAMPLE_ROWS)))]
    pub sample_rows: u64,
    /// A drop of more than this share of rows since the last run is an anomaly (percent).
    #[serde(default = "default_max_drop_percent")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 100.0)))]
    pub max_drop_percent: f64,
    /// Growth of more than this share since the last run is a warning (percent).
    #[serde(default = "default_max_growth_percent")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = MAX_GROWTH_PERCENT)))]
    pub max_growth_percent: f64,
    /// Connections counting tables at once.
    #[serde(default = "default_integrity_concurrency")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 32)))]
    pub concurrency: u32,
    /// PostgreSQL's `statement_timeout` for each count.
    #[serde(default = "default_statement_timeout_ms")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 900_000)))]
    pub statement_timeout_ms: u64,
    /// `application/deployment-group` whose deployments the report ties changes to; default:
    /// the groups whose `snapshot.database` is this database.
    #[serde(default)]
    pub deployment_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DbConnection {
    /// Host name; may come from the secret instead.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub port: Option<u16>,
    #[serde(default)]
    pub dbname: Option<String>,
    /// A Secrets Manager secret in RDS's JSON shape (`username`, `password`, and optionally
    /// `host`, `port`, `dbname`).
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// Sign in with an IAM authentication token as this database user instead of a secret.
    #[serde(default)]
    pub iam_user: Option<String>,
    #[serde(default)]
    pub sslmode: SslMode,
    /// PEM file of the CA certificates that `verify-full` trusts (the RDS CA bundle packaged
    /// with the function); default: the file `SAFESHIP_DB_CA_FILE` names.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// As libpq names them: `disable` (plain text), `require` (TLS, certificate not verified),
/// `verify-full` (TLS, certificate and host name verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Require,
    #[default]
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TableRules {
    /// Columns that must hold no NULL.
    #[serde(default)]
    pub not_null: Vec<String>,
    /// Columns whose share of NULLs must stay at or under a bound (0.0..=1.0).
    #[serde(default, deserialize_with = "super::unique::keys")]
    pub max_null_rate: BTreeMap<String, f64>,
    /// Always count exactly, whatever the size.
    #[serde(default)]
    pub exact: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ZeroQuery {
    pub name: String,
    /// A query returning one row with one integer column, which must be 0.
    pub sql: String,
}

fn default_estimate_above_rows() -> u64 {
    50_000_000
}
fn default_sample_rows() -> u64 {
    100_000
}
fn default_max_drop_percent() -> f64 {
    1.0
}
fn default_max_growth_percent() -> f64 {
    50.0
}
fn default_integrity_concurrency() -> u32 {
    4
}
fn default_statement_timeout_ms() -> u64 {
    120_000
}

/// Upper bounds no real policy reaches (each number of the section has one).
pub const MAX_GROWTH_PERCENT: f64 = 10_000.0;
pub const MAX_ESTIMATE_ABOVE_ROWS: u64 = 1_000_000_000_000;
pub const MAX_SAMPLE_ROWS: u64 = 100_000_000;

impl IntegrityPolicy {
    /// The section's problems; `at` names the section (`databases.<name>.integrity`). `policy`
    /// is the whole document, which `deployment-groups` must name groups of.
    pub(super) fn problems(&self, at: &str, policy: &Policy, problems: &mut Vec<String>) {
        let p = self;
        let c = &p.connection;
        match (&c.secret_arn, &c.iam_user) {
            (Some(_), Some(_)) => problems.push(format!(
                "{at}.connection: set one of secret-arn or iam-user, not both"
            )),
            (None, None) => problems.push(format!(
                "{at}.connection: set secret-arn (RDS secret) or iam-user (IAM authentication)"
            )),
            (None, Some(_)) if c.host.is_none() => problems.push(format!(
                "{at}.connection.host: IAM authentication needs the host (the token is signed for it)"
            )),
            _ => {}
        }
        if c.iam_user.is_some() && c.sslmode == SslMode::Disable {
            problems.push(format!(
                "{at}.connection.sslmode: IAM authentication requires TLS (require or verify-full)"
            ));
        }
        if p.schemas.is_empty() && p.tables.is_empty() && p.queries.is_empty() {
            problems.push(format!(
                "{at}: name something to check: schemas, tables or queries"
            ));
        }
        for (table, rules) in &p.tables {
            for (column, rate) in &rules.max_null_rate {
                if !(0.0..=1.0).contains(rate) {
                    problems.push(format!(
                        "{at}.tables.{table}.max-null-rate.{column}: must be 0.0..=1.0, found {rate}"
                    ));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, q) in p.queries.iter().enumerate() {
            if !names.insert(q.name.as_str()) {
                problems.push(format!(
                    "{at}.queries[{i}].name: {:?} is used twice",
                    q.name
                ));
            }
            if q.sql.trim().is_empty() {
                problems.push(format!("{at}.queries[{i}].sql: empty"));
            }
        }
        if c.port == Some(0) {
            problems.push(format!("{at}.connection.port: must be 1..=65535, found 0"));
        }
        if !(0.0..=100.0).contains(&p.max_drop_percent) {
            problems.push(format!(
                "{at}.max-drop-percent: must be 0..=100, found {}",
                p.max_drop_percent
            ));
        }
        if !(0.0..=MAX_GROWTH_PERCENT).contains(&p.max_growth_percent) {
            problems.push(format!(
                "{at}.max-growth-percent: must be 0..={MAX_GROWTH_PERCENT} (a hundredfold), found {}",
                p.max_growth_percent
            ));
        }
        if p.estimate_above_rows > MAX_ESTIMATE_ABOVE_ROWS {
            problems.push(format!(
                "{at}.estimate-above-rows: must be 0..={MAX_ESTIMATE_ABOVE_ROWS} (a trillion), found {}",
                p.estimate_above_rows
            ));
        }
        if !(1..=32).contains(&p.concurrency) {
            problems.push(format!(
                "{at}.concurrency: must be 1..=32, found {}",
                p.concurrency
            ));
        }
        if !(1..=MAX_SAMPLE_ROWS).contains(&p.sample_rows) {
            problems.push(format!(
                "{at}.sample-rows: must be 1..={MAX_SAMPLE_ROWS}, found {}",
                p.sample_rows
            ));
        }
        if !(1..=900_000).contains(&p.statement_timeout_ms) {
            problems.push(format!(
                "{at}.statement-timeout-ms: must be 1..=900000, found {}",
                p.statement_timeout_ms
            ));
        }
        for g in &p.deployment_groups {
            let found = g
                .split_once('/')
                .and_then(|(app, group)| policy.group(app, group));
            if found.is_none() {
                problems.push(format!(
                    "{at}.deployment-groups: {g:?} is not an application/deployment-group of this policy"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/policy.yaml");

    #[test]
    fn the_example_integrity_section_is_valid_and_tied_to_the_snapshot_groups() {
        let p = Policy::parse(EXAMPLE, "examples/policy.yaml").unwrap();
        let integrity = p.databases["checkout-db"].integrity.as_ref().unwrap();
        assert_eq!(integrity.connection.sslmode, SslMode::VerifyFull);
        assert_eq!(integrity.max_drop_percent, 1.0);
        assert_eq!(integrity.tables["public.orders"].not_null.len(), 2);
        let groups: Vec<_> = p
            .integrity_groups("checkout-db")
            .iter()
            .map(|g| format!("{}/{}", g.application, g.deployment_group))
            .collect();
        assert_eq!(groups, ["checkout/checkout-prod"]);
    }

    #[test]
    fn integrity_sections_are_checked() {
        let doc = r#"
version: 1
databases:
  db:
    kind: instance
    identifier: db
    environment: prod
    integrity:
      connection: {iam-user: reader, sslmode: disable}
      tables: {orders: {max-null-rate: {c: 1.5}}}
      queries: [{name: q, sql: "select 0"}, {name: q, sql: " "}]
      concurrency: 0
      deployment-groups: [nowhere/none]
"#;
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        for expected in [
            "databases.db.integrity.connection.host: IAM authentication needs the host",
            "connection.sslmode: IAM authentication requires TLS",
            "tables.orders.max-null-rate.c: must be 0.0..=1.0, found 1.5",
            "queries[1].name: \"q\" is used twice",
            "queries[1].sql: empty",
            "concurrency: must be 1..=32, found 0",
            "deployment-groups: \"nowhere/none\" is not an application/deployment-group",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        let huge = doc
            .replace("concurrency: 0", "concurrency: 4294967295\n      statement-timeout-ms: 18446744073709551615\n      sample-rows: 18446744073709551615\n      estimate-above-rows: 18446744073709551615\n      max-drop-percent: 250\n      max-growth-percent: .nan")
            .replace("{iam-user: reader, sslmode: disable}", "{iam-user: reader, host: h, port: 0}");
        let err = Policy::parse(&huge, "inline").unwrap_err().to_string();
        for expected in [
            "integrity.concurrency: must be 1..=32, found 4294967295",
            "integrity.statement-timeout-ms: must be 1..=900000, found 18446744073709551615",
            "integrity.sample-rows: must be 1..=100000000, found 18446744073709551615",
            "integrity.estimate-above-rows: must be 0..=1000000000000 (a trillion), found 18446744073709551615",
            "integrity.max-drop-percent: must be 0..=100, found 250",
            "integrity.max-growth-percent: must be 0..=10000 (a hundredfold), found NaN",
            "integrity.connection.port: must be 1..=65535, found 0",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        let neither = doc.replace("{iam-user: reader, sslmode: disable}", "{host: h}");
        let err = Policy::parse(&neither, "inline").unwrap_err().to_string();
        assert!(
            err.contains("set secret-arn (RDS secret) or iam-user"),
            "{err}"
        );
    }
}
