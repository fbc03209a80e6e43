//! The traffic hook's section: the checks a deployment group's hooks run before traffic shifts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validate::{check_pointers, check_timeout};

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// ECS services: after the production traffic shift (`POST_PRODUCTION_TRAFFIC_SHIFT`), keep
    /// watching the alarm checks this long before the deployment may finish, each look a hook
    /// invocation of its own (`IN_PROGRESS` with `callBackDelay`).
    #[serde(default)]
    pub soak: Option<Soak>,
}

/// A watch of the alarms after the production shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Soak {
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1440)))]
    pub minutes: u32,
    /// How often to look (seconds between invocations).
    #[serde(default = "default_soak_every")]
    #[cfg_attr(feature = "schema", schemars(range(min = 10, max = 900)))]
    pub every_seconds: u32,
}

fn default_soak_every() -> u32 {
    60
}

impl TrafficHookPolicy {
    pub fn check_count(&self) -> usize {
        self.http_checks.len() + self.lambda_checks.len() + usize::from(self.alarm_checks.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HttpCheck {
    pub name: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// For ECS blue/green, the test listener's URL.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^https?://")))]
    pub url: String,
    /// ECS services: the production listener's URL, checked from the production traffic shift
    /// on (default: `url`). `url` is checked at the test traffic stages.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^https?://")))]
    pub production_url: Option<String>,
    #[serde(default, deserialize_with = "super::unique::keys")]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_expect_status")]
    #[cfg_attr(feature = "schema", schemars(range(min = 100, max = 599)))]
    pub expect_status: u16,
    /// JSON pointer → expected value. The string `{{target-version}}` stands for the
    /// deployment's target revision version.
    #[serde(default, deserialize_with = "super::unique::keys")]
    pub expect_json: BTreeMap<String, serde_json::Value>,
    /// How many requests to send (the latency budget applies to their p95).
    #[serde(default = "default_requests")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_REQUESTS)))]
    pub requests: u32,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_P95_BUDGET_MS)))]
    pub p95_budget_ms: Option<u64>,
    #[serde(default = "default_check_timeout_ms")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 900_000)))]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    #[serde(default, deserialize_with = "super::unique::keys")]
    pub expect_json: BTreeMap<String, serde_json::Value>,
    #[serde(default = "default_check_timeout_ms")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 900_000)))]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// The most requests one HTTP check sends (one after another, within the hook's deadline).
pub const MAX_REQUESTS: u32 = 1_000;
/// The largest p95 budget: a Lambda run (a budget beyond what a check can wait for is a typo).
pub const MAX_P95_BUDGET_MS: u64 = 900_000;
/// The most checks of one kind, and alarms, a group's hook may list.
pub const MAX_CHECKS: usize = 100;

impl TrafficHookPolicy {
    /// The section's problems; `at` names the deployment group. Every number has an upper bound
    /// a real policy never reaches, so a typo (`requests: 4294967295`) is refused here rather
    /// than crashing the hook (a 64 GB allocation) when a deployment needs it.
    pub(super) fn problems(&self, at: &str, problems: &mut Vec<String>) {
        for (i, c) in self.http_checks.iter().enumerate() {
            let at = format!("{at}.traffic-hook.http-checks[{i}]");
            for (field, url) in [
                ("url", Some(&c.url)),
                ("production-url", c.production_url.as_ref()),
            ] {
                if let Some(url) =
                    url.filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
                {
                    problems.push(format!(
                        "{at}.{field}: must start with http:// or https://, found {url:?}"
                    ));
                }
            }
            if !(1..=MAX_REQUESTS).contains(&c.requests) {
                problems.push(format!(
                    "{at}.requests: must be 1..={MAX_REQUESTS}, found {}",
                    c.requests
                ));
            }
            if let Some(budget) = c.p95_budget_ms {
                if !(1..=MAX_P95_BUDGET_MS).contains(&budget) {
                    problems.push(format!(
                        "{at}.p95-budget-ms: must be 1..={MAX_P95_BUDGET_MS}, found {budget}"
                    ));
                }
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
        if let Some(soak) = self.soak {
            if !(1..=1440).contains(&soak.minutes) {
                problems.push(format!(
                    "{at}.traffic-hook.soak.minutes: must be 1..=1440 (ECS gives a stage 24 h), found {}",
                    soak.minutes
                ));
            }
            if !(10..=900).contains(&soak.every_seconds) {
                problems.push(format!(
                    "{at}.traffic-hook.soak.every-seconds: must be 10..=900, found {}",
                    soak.every_seconds
                ));
            }
            if self.alarm_checks.is_none() {
                problems.push(format!(
                    "{at}.traffic-hook.soak: a soak watches the alarm checks; the section has none"
                ));
            }
            if !at.starts_with("ecs-services.") {
                problems.push(format!(
                    "{at}.traffic-hook.soak: only ECS services soak (ECS invokes the hook again; a CodeDeploy hook reports once)"
                ));
            }
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
        let counts = [
            ("http-checks", self.http_checks.len()),
            ("lambda-checks", self.lambda_checks.len()),
            (
                "alarm-checks.alarms",
                self.alarm_checks.as_ref().map_or(0, |a| a.alarms.len()),
            ),
        ];
        for (field, count) in counts {
            if count > MAX_CHECKS {
                problems.push(format!(
                    "{at}.traffic-hook.{field}: at most {MAX_CHECKS} entries, found {count}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Policy;

    fn problems(section: &str) -> String {
        let doc = format!(
            "version: 1\napplications:\n  checkout:\n    deployment-groups:\n      prod:\n        environment: prod\n        traffic-hook:\n{section}"
        );
        match Policy::parse(&doc, "inline") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn http_check(extra: &str) -> String {
        format!("          http-checks:\n            - name: health\n              url: https://h/health\n{extra}")
    }

    #[test]
    fn requests_beyond_the_bound_are_refused_naming_the_field_and_the_bound() {
        let err = problems(&http_check("              requests: 4294967295\n"));
        assert!(
            err.contains("applications.checkout.deployment-groups.prod.traffic-hook.http-checks[0].requests: must be 1..=1000, found 4294967295"),
            "{err}"
        );
        let err = problems(&http_check("              requests: 0\n"));
        assert!(err.contains("requests: must be 1..=1000, found 0"), "{err}");
        assert_eq!(problems(&http_check("              requests: 1000\n")), "");
    }

    #[test]
    fn every_other_number_has_its_bound() {
        let err = problems(&http_check(
            "              p95-budget-ms: 18446744073709551615\n",
        ));
        assert!(
            err.contains(
                "http-checks[0].p95-budget-ms: must be 1..=900000, found 18446744073709551615"
            ),
            "{err}"
        );
        let err = problems(&http_check("              timeout-ms: 3600000\n"));
        assert!(
            err.contains("http-checks[0].timeout-ms: must be 1..=900000, found 3600000"),
            "{err}"
        );
        let err = problems(&http_check("              expect-status: 65535\n"));
        assert!(
            err.contains("http-checks[0].expect-status: 65535 is not an HTTP status"),
            "{err}"
        );
        let err = problems("          lambda-checks:\n            - name: ping\n              function: f\n              timeout-ms: 0\n");
        assert!(
            err.contains("lambda-checks[0].timeout-ms: must be 1..=900000, found 0"),
            "{err}"
        );
        let alarms: Vec<String> = (0..101).map(|i| format!("a{i}")).collect();
        let err = problems(&format!(
            "          alarm-checks:\n            alarms: [{}]\n",
            alarms.join(", ")
        ));
        assert!(
            err.contains("traffic-hook.alarm-checks.alarms: at most 100 entries, found 101"),
            "{err}"
        );
        assert_eq!(
            problems(&http_check(
                "              p95-budget-ms: 900000\n              timeout-ms: 900000\n"
            )),
            ""
        );
    }
}
