//! The traffic hook's section: the checks a deployment group's hooks run before traffic shifts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validate::{check_pointers, check_timeout};

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

impl TrafficHookPolicy {
    /// The section's problems; `at` names the deployment group.
    pub(super) fn problems(&self, at: &str, problems: &mut Vec<String>) {
        for (i, c) in self.http_checks.iter().enumerate() {
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
            check_pointers(&at, &c.expect_json, problems);
            check_timeout(&at, c.timeout_ms, problems);
        }
        for (i, c) in self.lambda_checks.iter().enumerate() {
            let at = format!("{at}.traffic-hook.lambda-checks[{i}]");
            check_pointers(&at, &c.expect_json, problems);
            check_timeout(&at, c.timeout_ms, problems);
        }
        if self
            .alarm_checks
            .as_ref()
            .is_some_and(|a| a.alarms.is_empty())
        {
            problems.push(format!(
                "{at}.traffic-hook.alarm-checks.alarms: list at least one alarm"
            ));
        }
    }
}
