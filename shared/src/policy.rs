//! The policy document: per CodeDeploy application and deployment group, what each guard rail does.
//!
//! One YAML (or JSON, which is YAML too) document, validated strictly at cold start: unknown keys
//! are errors, references between sections must resolve, and numbers must be in range. A policy
//! that loads is one every guard rail can act on without further checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::PolicySource;
use crate::error::{Error, Result};
pub use crate::model::{Environment, Severity};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    /// Schema version; only `1` exists.
    pub version: u32,
    /// CodeDeploy applications by name.
    #[serde(default)]
    pub applications: BTreeMap<String, ApplicationPolicy>,
    /// Databases by a name the policy chooses (referenced by groups and direct invocations).
    #[serde(default)]
    pub databases: BTreeMap<String, DatabasePolicy>,
    #[serde(default)]
    pub notifications: NotificationPolicy,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApplicationPolicy {
    /// Deployment groups by name.
    pub deployment_groups: BTreeMap<String, GroupPolicy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupPolicy {
    pub environment: Environment,
    #[serde(default)]
    pub traffic_hook: Option<TrafficHookPolicy>,
    #[serde(default)]
    pub rollback: Option<RollbackPolicy>,
    #[serde(default)]
    pub snapshot: Option<GroupSnapshotPolicy>,
}

// ---- traffic hook ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrafficHookPolicy {
    /// A group with no checks fails its hooks unless this is set.
    #[serde(default)]
    pub allow_unchecked: bool,
    #[serde(default)]
    pub http_checks: Vec<HttpCheck>,
    #[serde(default)]
    pub lambda_checks: Vec<LambdaCheck>,
    #[serde(default)]
    pub alarm_checks: Option<AlarmCheck>,
}

impl TrafficHookPolicy {
    pub fn check_count(&self) -> usize {
        self.http_checks.len() + self.lambda_checks.len() + usize::from(self.alarm_checks.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HttpCheck {
    pub name: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// For ECS blue/green, the test listener's URL.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// JSON pointer → expected value. The string `{{target-version}}` stands for the
    /// deployment's target revision version.
    #[serde(default)]
    pub expect_json: BTreeMap<String, serde_json::Value>,
    /// How many requests to send (the latency budget applies to their p95).
    #[serde(default = "default_requests")]
    pub requests: u32,
    #[serde(default)]
    pub p95_budget_ms: Option<u64>,
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LambdaCheck {
    pub name: String,
    /// The function's name or ARN.
    pub function: String,
    /// The version or alias to invoke. Default: the deployment's target version when `function`
    /// is the function being deployed, else unqualified (`$LATEST`).
    #[serde(default)]
    pub qualifier: Option<String>,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub expect_json: BTreeMap<String, serde_json::Value>,
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlarmCheck {
    pub alarms: Vec<String>,
    /// `INSUFFICIENT_DATA` counts as a failure only when this is set.
    #[serde(default)]
    pub insufficient_data_fails: bool,
}

// ---- rollback ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Which alarms roll this group back.
    pub alarms: Vec<AlarmMatcher>,
    /// Also act when an alarm goes to `INSUFFICIENT_DATA`.
    #[serde(default)]
    pub act_on_insufficient_data: bool,
    /// A deployment that succeeded this recently is reverted too (1..=1440).
    #[serde(default = "default_bake_window_minutes")]
    pub bake_window_minutes: u32,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub feature_flags: Vec<FeatureFlagTarget>,
}

/// One way of naming alarms: exactly one of `name`, `prefix`, `tag`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "AlarmMatcherKeys", into = "AlarmMatcherKeys")]
pub enum AlarmMatcher {
    Name(String),
    Prefix(String),
    Tag { key: String, value: String },
}

/// The document's form of [`AlarmMatcher`]: a map with one of three keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct AlarmMatcherKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<TagMatcher>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TagMatcher {
    key: String,
    value: String,
}

impl TryFrom<AlarmMatcherKeys> for AlarmMatcher {
    type Error = String;
    fn try_from(keys: AlarmMatcherKeys) -> Result<Self, String> {
        match keys {
            AlarmMatcherKeys {
                name: Some(n),
                prefix: None,
                tag: None,
            } if !n.is_empty() => Ok(AlarmMatcher::Name(n)),
            AlarmMatcherKeys {
                name: None,
                prefix: Some(p),
                tag: None,
            } if !p.is_empty() => Ok(AlarmMatcher::Prefix(p)),
            AlarmMatcherKeys {
                name: None,
                prefix: None,
                tag: Some(t),
            } => Ok(AlarmMatcher::Tag {
                key: t.key,
                value: t.value,
            }),
            _ => Err(
                "an alarm matcher takes exactly one non-empty key of name, prefix or tag".into(),
            ),
        }
    }
}

impl From<AlarmMatcher> for AlarmMatcherKeys {
    fn from(m: AlarmMatcher) -> Self {
        match m {
            AlarmMatcher::Name(n) => AlarmMatcherKeys {
                name: Some(n),
                ..Default::default()
            },
            AlarmMatcher::Prefix(p) => AlarmMatcherKeys {
                prefix: Some(p),
                ..Default::default()
            },
            AlarmMatcher::Tag { key, value } => AlarmMatcherKeys {
                tag: Some(TagMatcher { key, value }),
                ..Default::default()
            },
        }
    }
}

impl AlarmMatcher {
    /// Whether an alarm with this name and these tags is meant. Tags are only known when the
    /// caller looked them up; a tag matcher never matches without them.
    pub fn matches(&self, alarm_name: &str, tags: &BTreeMap<String, String>) -> bool {
        match self {
            AlarmMatcher::Name(n) => n == alarm_name,
            AlarmMatcher::Prefix(p) => alarm_name.starts_with(p.as_str()),
            AlarmMatcher::Tag { key, value } => tags.get(key) == Some(value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FeatureFlagTarget {
    /// AppConfig application id.
    pub application: String,
    /// AppConfig environment id.
    pub environment: String,
    /// Feature-flag configuration profile id.
    pub profile: String,
    /// Flag keys to switch off.
    pub flags: Vec<String>,
    #[serde(default = "default_appconfig_strategy")]
    pub strategy: String,
}

// ---- snapshots ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupSnapshotPolicy {
    /// A key of the policy's `databases`.
    pub database: String,
    /// `block` (default): no snapshot, no deployment. `warn`: report and let it go on.
    #[serde(default)]
    pub on_failure: SnapshotFailureMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotFailureMode {
    #[default]
    Block,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseKind {
    /// An RDS DB instance (`CreateDBSnapshot`).
    Instance,
    /// An Aurora cluster (`CreateDBClusterSnapshot`).
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DatabasePolicy {
    pub kind: DatabaseKind,
    /// The DB instance or cluster identifier.
    pub identifier: String,
    pub environment: Environment,
    #[serde(default)]
    pub snapshot: SnapshotRetention,
    /// The nightly integrity check of this database; absent: not checked.
    #[serde(default)]
    pub integrity: Option<IntegrityPolicy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SnapshotRetention {
    #[serde(default = "default_snapshot_prefix")]
    pub prefix: String,
    /// Days to keep safeship's snapshots; default by environment (7 dev/staging, 30 prod).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Always keep this many of the newest, whatever their age.
    #[serde(default = "default_keep_newest")]
    pub keep_newest: u32,
    /// Warn when the account's manual snapshots reach this share of the quota (percent).
    #[serde(default = "default_quota_warning_percent")]
    pub quota_warning_percent: u32,
}

impl Default for SnapshotRetention {
    fn default() -> Self {
        SnapshotRetention {
            prefix: default_snapshot_prefix(),
            retention_days: None,
            keep_newest: default_keep_newest(),
            quota_warning_percent: default_quota_warning_percent(),
        }
    }
}

// ---- integrity check ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    #[serde(default)]
    pub tables: BTreeMap<String, TableRules>,
    /// Counts that must be 0, e.g. orphaned foreign keys.
    #[serde(default)]
    pub queries: Vec<ZeroQuery>,
    /// Above this many rows (by the planner's `reltuples`), a table is estimated instead of
    /// counted: `reltuples` for rows, a `TABLESAMPLE SYSTEM` sample for null rates.
    #[serde(default = "default_estimate_above_rows")]
    pub estimate_above_rows: u64,
    /// How many rows the estimate's sample aims at.
    #[serde(default = "default_sample_rows")]
    pub sample_rows: u64,
    /// A drop of more than this share of rows since the last run is an anomaly (percent).
    #[serde(default = "default_max_drop_percent")]
    pub max_drop_percent: f64,
    /// Growth of more than this share since the last run is a warning (percent).
    #[serde(default = "default_max_growth_percent")]
    pub max_growth_percent: f64,
    /// Connections counting tables at once.
    #[serde(default = "default_integrity_concurrency")]
    pub concurrency: u32,
    /// PostgreSQL's `statement_timeout` for each count.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// `application/deployment-group` whose deployments the report ties changes to; default:
    /// the groups whose `snapshot.database` is this database.
    #[serde(default)]
    pub deployment_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DbConnection {
    /// Host name; may come from the secret instead.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
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
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Require,
    #[default]
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TableRules {
    /// Columns that must hold no NULL.
    #[serde(default)]
    pub not_null: Vec<String>,
    /// Columns whose share of NULLs must stay at or under a bound (0.0..=1.0).
    #[serde(default)]
    pub max_null_rate: BTreeMap<String, f64>,
    /// Always count exactly, whatever the size.
    #[serde(default)]
    pub exact: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ZeroQuery {
    pub name: String,
    /// A query returning one row with one integer column, which must be 0.
    pub sql: String,
}

// ---- notifications -----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotificationPolicy {
    pub routes: Vec<NotificationRoute>,
}

impl Default for NotificationPolicy {
    /// Slack hears everything; email only failures and rollbacks.
    fn default() -> Self {
        NotificationPolicy {
            routes: vec![
                NotificationRoute {
                    channel: Channel::Slack,
                    min_severity: Severity::Info,
                    applications: Vec::new(),
                },
                NotificationRoute {
                    channel: Channel::Email,
                    min_severity: Severity::Failure,
                    applications: Vec::new(),
                },
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotificationRoute {
    pub channel: Channel,
    #[serde(default)]
    pub min_severity: Severity,
    /// Only these CodeDeploy applications; empty means all.
    #[serde(default)]
    pub applications: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Slack,
    Email,
}

fn default_method() -> String {
    "GET".into()
}
fn default_expect_status() -> u16 {
    200
}
fn default_requests() -> u32 {
    1
}
fn default_check_timeout_ms() -> u64 {
    10_000
}
fn default_bake_window_minutes() -> u32 {
    60
}
fn default_appconfig_strategy() -> String {
    "AppConfig.AllAtOnce".into()
}
fn default_snapshot_prefix() -> String {
    "safeship".into()
}
fn default_keep_newest() -> u32 {
    3
}
fn default_quota_warning_percent() -> u32 {
    90
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

/// A deployment group's policy with the names it is filed under.
#[derive(Debug, Clone, Copy)]
pub struct GroupRef<'a> {
    pub application: &'a str,
    pub deployment_group: &'a str,
    pub policy: &'a GroupPolicy,
}

impl Policy {
    /// Parses and validates a document; `origin` names where it came from, for messages.
    pub fn parse(document: &str, origin: &str) -> Result<Policy> {
        let policy: Policy =
            serde_yaml_ng::from_str(document).map_err(|e| Error::policy(origin, e.to_string()))?;
        let problems = policy.problems();
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(Error::policy(origin, problems.join("; ")))
        }
    }

    /// Reads the document from its source (a file, inline, or SSM with decryption) and parses it.
    /// The SSM client is built only for an SSM source: a client costs a cold start about as much
    /// as parsing the whole policy.
    pub async fn load(source: &PolicySource, sdk: &aws_config::SdkConfig) -> Result<Policy> {
        let origin = source.describe();
        let document = match source {
            PolicySource::Inline(doc) => doc.clone(),
            PolicySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::policy(&origin, format!("cannot read the file: {e}")))?,
            PolicySource::SsmParameter(name) => aws_sdk_ssm::Client::new(sdk)
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| Error::aws("ssm:GetParameter", name, e))?
                .parameter
                .and_then(|p| p.value)
                .ok_or_else(|| {
                    Error::unexpected("ssm:GetParameter", name, "the parameter has no value")
                })?,
        };
        Policy::parse(&document, &origin)
    }

    pub fn group(&self, application: &str, deployment_group: &str) -> Option<GroupRef<'_>> {
        let (application, app) = self.applications.get_key_value(application)?;
        let (deployment_group, policy) = app.deployment_groups.get_key_value(deployment_group)?;
        Some(GroupRef {
            application,
            deployment_group,
            policy,
        })
    }

    pub fn groups(&self) -> impl Iterator<Item = GroupRef<'_>> {
        self.applications.iter().flat_map(|(application, app)| {
            app.deployment_groups
                .iter()
                .map(move |(deployment_group, policy)| GroupRef {
                    application,
                    deployment_group,
                    policy,
                })
        })
    }

    /// The groups whose rollback section names this alarm.
    pub fn groups_for_alarm<'a>(
        &'a self,
        alarm_name: &'a str,
        alarm_tags: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = GroupRef<'a>> + 'a {
        self.groups().filter(move |g| {
            g.policy
                .rollback
                .as_ref()
                .is_some_and(|r| r.alarms.iter().any(|m| m.matches(alarm_name, alarm_tags)))
        })
    }

    /// Every rule the schema cannot express, as one message per problem, naming where it is.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.version != 1 {
            problems.push(format!(
                "version: only 1 is supported, found {}",
                self.version
            ));
        }
        for g in self.groups() {
            let at = format!(
                "applications.{}.deployment-groups.{}",
                g.application, g.deployment_group
            );
            if let Some(hook) = &g.policy.traffic_hook {
                for (i, c) in hook.http_checks.iter().enumerate() {
                    let at = format!("{at}.traffic-hook.http-checks[{i}]");
                    if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                        problems.push(format!(
                            "{at}.url: must start with http:// or https://, found {:?}",
                            c.url
                        ));
                    }
                    if c.requests == 0 {
                        problems.push(format!("{at}.requests: must be at least 1"));
                    }
                    if !(100..=599).contains(&c.expect_status) {
                        problems.push(format!(
                            "{at}.expect-status: {} is not an HTTP status",
                            c.expect_status
                        ));
                    }
                    check_pointers(&at, &c.expect_json, &mut problems);
                    check_timeout(&at, c.timeout_ms, &mut problems);
                }
                for (i, c) in hook.lambda_checks.iter().enumerate() {
                    let at = format!("{at}.traffic-hook.lambda-checks[{i}]");
                    check_pointers(&at, &c.expect_json, &mut problems);
                    check_timeout(&at, c.timeout_ms, &mut problems);
                }
                if hook
                    .alarm_checks
                    .as_ref()
                    .is_some_and(|a| a.alarms.is_empty())
                {
                    problems.push(format!(
                        "{at}.traffic-hook.alarm-checks.alarms: list at least one alarm"
                    ));
                }
            }
            if let Some(r) = &g.policy.rollback {
                if r.alarms.is_empty() {
                    problems.push(format!(
                        "{at}.rollback.alarms: list at least one alarm matcher"
                    ));
                }
                if !(1..=1440).contains(&r.bake_window_minutes) {
                    problems.push(format!(
                        "{at}.rollback.bake-window-minutes: must be 1..=1440 (24 h), found {}",
                        r.bake_window_minutes
                    ));
                }
                for (i, f) in r.feature_flags.iter().enumerate() {
                    if f.flags.is_empty() {
                        problems.push(format!(
                            "{at}.rollback.feature-flags[{i}].flags: list at least one flag"
                        ));
                    }
                }
            }
            if let Some(s) = &g.policy.snapshot {
                if !self.databases.contains_key(&s.database) {
                    problems.push(format!(
                        "{at}.snapshot.database: {:?} is not a key of databases",
                        s.database
                    ));
                }
            }
        }
        for (name, db) in &self.databases {
            let at = format!("databases.{name}.snapshot");
            let prefix = &db.snapshot.prefix;
            if prefix.is_empty()
                || !prefix.starts_with(|c: char| c.is_ascii_alphabetic())
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                problems.push(format!(
                    "{at}.prefix: must start with a letter and hold only letters, digits and hyphens, found {prefix:?}"
                ));
            }
            if db.snapshot.retention_days == Some(0) {
                problems.push(format!("{at}.retention-days: must be at least 1"));
            }
            if !(1..=100).contains(&db.snapshot.quota_warning_percent) {
                problems.push(format!("{at}.quota-warning-percent: must be 1..=100"));
            }
            if let Some(integrity) = &db.integrity {
                self.integrity_problems(
                    &format!("databases.{name}.integrity"),
                    integrity,
                    &mut problems,
                );
            }
        }
        problems
    }

    fn integrity_problems(&self, at: &str, p: &IntegrityPolicy, problems: &mut Vec<String>) {
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
        if !(0.0..=100.0).contains(&p.max_drop_percent) {
            problems.push(format!("{at}.max-drop-percent: must be 0..=100"));
        }
        if p.max_growth_percent.is_nan() || p.max_growth_percent < 0.0 {
            problems.push(format!("{at}.max-growth-percent: must be at least 0"));
        }
        if !(1..=32).contains(&p.concurrency) {
            problems.push(format!(
                "{at}.concurrency: must be 1..=32, found {}",
                p.concurrency
            ));
        }
        if p.sample_rows == 0 {
            problems.push(format!("{at}.sample-rows: must be at least 1"));
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
                .and_then(|(app, group)| self.group(app, group));
            if found.is_none() {
                problems.push(format!(
                    "{at}.deployment-groups: {g:?} is not an application/deployment-group of this policy"
                ));
            }
        }
    }

    /// The groups whose deployments the integrity check of `database` ties changes to.
    pub fn integrity_groups<'a>(&'a self, database: &str) -> Vec<GroupRef<'a>> {
        let Some(integrity) = self
            .databases
            .get(database)
            .and_then(|d| d.integrity.as_ref())
        else {
            return Vec::new();
        };
        if integrity.deployment_groups.is_empty() {
            self.groups()
                .filter(|g| {
                    g.policy
                        .snapshot
                        .as_ref()
                        .is_some_and(|s| s.database == database)
                })
                .collect()
        } else {
            integrity
                .deployment_groups
                .iter()
                .filter_map(|g| g.split_once('/'))
                .filter_map(|(app, group)| self.group(app, group))
                .collect()
        }
    }
}

fn check_pointers(
    at: &str,
    expect: &BTreeMap<String, serde_json::Value>,
    problems: &mut Vec<String>,
) {
    for pointer in expect.keys() {
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            problems.push(format!(
                "{at}.expect-json: {pointer:?} is not a JSON pointer (starts with /)"
            ));
        }
    }
}

fn check_timeout(at: &str, timeout_ms: u64, problems: &mut Vec<String>) {
    // CodeDeploy waits at most an hour for a hook; a check longer than a Lambda run is a mistake.
    if !(1..=900_000).contains(&timeout_ms) {
        problems.push(format!(
            "{at}.timeout-ms: must be 1..=900000, found {timeout_ms}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/policy.yaml");

    #[test]
    fn example_policy_is_valid_and_complete() {
        let p = Policy::parse(EXAMPLE, "examples/policy.yaml").unwrap();
        let g = p.group("checkout", "checkout-prod").expect("group");
        assert_eq!(g.policy.environment, Environment::Prod);
        let hook = g.policy.traffic_hook.as_ref().unwrap();
        assert!(hook.check_count() >= 2);
        let rb = g.policy.rollback.as_ref().unwrap();
        assert_eq!(rb.bake_window_minutes, 60);
        assert_eq!(rb.feature_flags[0].strategy, "AppConfig.AllAtOnce");
        assert!(p
            .databases
            .contains_key(&g.policy.snapshot.as_ref().unwrap().database));
    }

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
        let neither = doc.replace("{iam-user: reader, sslmode: disable}", "{host: h}");
        let err = Policy::parse(&neither, "inline").unwrap_err().to_string();
        assert!(
            err.contains("set secret-arn (RDS secret) or iam-user"),
            "{err}"
        );
    }

    #[test]
    fn json_documents_parse_too() {
        let p = Policy::parse(r#"{"version": 1, "applications": {}}"#, "inline").unwrap();
        assert!(p.applications.is_empty());
        assert_eq!(p.notifications, NotificationPolicy::default());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let doc = "version: 1\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: prod\n        rollbak: {}\n";
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(err.contains("rollbak"), "{err}");
    }

    #[test]
    fn cross_references_and_ranges_are_checked() {
        let doc = r#"
version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
        traffic-hook: {}
        rollback:
          alarms: [{prefix: checkout-}]
          bake-window-minutes: 2000
        snapshot: {database: nowhere}
"#;
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(
            err.contains("bake-window-minutes: must be 1..=1440"),
            "{err}"
        );
        assert!(
            err.contains("snapshot.database: \"nowhere\" is not a key of databases"),
            "{err}"
        );
        let two = "version: 1\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: dev\n        rollback: {alarms: [{name: x, prefix: y}]}\n";
        let err = Policy::parse(two, "inline").unwrap_err().to_string();
        assert!(
            err.contains("rollback.alarms: an alarm matcher takes exactly one"),
            "{err}"
        );
    }

    #[test]
    fn alarm_matchers_by_name_prefix_and_tag() {
        let p = Policy::parse(EXAMPLE, "example").unwrap();
        let none = BTreeMap::new();
        let names = |alarm: &str, tags: &BTreeMap<String, String>| {
            p.groups_for_alarm(alarm, tags)
                .map(|g| format!("{}/{}", g.application, g.deployment_group))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("checkout-prod-5xx-rate", &none),
            ["checkout/checkout-prod"]
        );
        assert_eq!(
            names("checkout-prod-latency-p99", &none),
            ["checkout/checkout-prod"]
        );
        assert!(names("billing-5xx", &none).is_empty());
        let tags = BTreeMap::from([("safeship:rollback".to_string(), "checkout-prod".to_string())]);
        assert_eq!(names("anything", &tags), ["checkout/checkout-prod"]);
    }

    #[test]
    fn retention_defaults_by_environment() {
        assert_eq!(Environment::Prod.default_retention_days(), 30);
        assert_eq!(Environment::Staging.default_retention_days(), 7);
        assert_eq!(Environment::Dev.default_retention_days(), 7);
    }
}
