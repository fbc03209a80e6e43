//! The hook's decision: a pure function of the policy and the checks' results.

use safeship::policy::TrafficHookPolicy;
use serde::{Deserialize, Serialize};

use crate::checks::Run;
use crate::deployment::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookStatus {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: HookStatus,
    pub reason: String,
}

impl Verdict {
    pub fn failed(reason: impl Into<String>) -> Self {
        Verdict {
            status: HookStatus::Failed,
            reason: reason.into(),
        }
    }
}

/// The verdict when there is nothing to run: no checks means `Failed`, unless the group's
/// policy explicitly allows unchecked deployments. `None`: there are checks to run.
pub fn without_checks(target: &Target, policy: Option<&TrafficHookPolicy>) -> Option<Verdict> {
    let count = policy.map_or(0, TrafficHookPolicy::check_count);
    if count > 0 {
        return None;
    }
    let group = format!("{}/{}", target.application, target.deployment_group);
    Some(if policy.is_some_and(|p| p.allow_unchecked) {
        Verdict {
            status: HookStatus::Succeeded,
            reason: format!("no smoke checks configured for {group}; allowed by allow-unchecked"),
        }
    } else {
        Verdict::failed(format!(
            "no smoke checks configured for {group} (set traffic-hook checks, or allow-unchecked)"
        ))
    })
}

/// `Succeeded` only when every check finished and passed; otherwise the reason names the
/// checks that timed out and each failing expectation.
pub fn from_run(run: &Run) -> Verdict {
    let mut reasons = Vec::new();
    if !run.timed_out.is_empty() {
        let waiting = if run.waiting.is_empty() {
            String::new()
        } else {
            format!(" ({})", run.waiting)
        };
        reasons.push(format!("timed out: {}{waiting}", run.timed_out.join(", ")));
    }
    for r in run.results.iter().filter(|r| !r.passed) {
        reasons.push(format!(
            "{}: {}",
            r.name,
            r.detail.as_deref().unwrap_or("failed")
        ));
    }
    if reasons.is_empty() {
        Verdict {
            status: HookStatus::Succeeded,
            reason: format!("all {} checks passed", run.results.len()),
        }
    } else {
        Verdict::failed(reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::guard::CheckResult;

    fn target() -> Target {
        Target {
            deployment_id: "d-1".into(),
            application: "checkout".into(),
            deployment_group: "checkout-prod".into(),
            compute_platform: None,
            target_version: None,
            lambda_function: None,
            description: None,
        }
    }

    fn result(name: &str, passed: bool, detail: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            passed,
            duration_ms: 1,
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn no_checks_fail_unless_allowed() {
        let v = without_checks(&target(), None).unwrap();
        assert_eq!(v.status, HookStatus::Failed);
        assert!(v.reason.contains("checkout/checkout-prod"), "{}", v.reason);
        let allowed = TrafficHookPolicy {
            allow_unchecked: true,
            ..Default::default()
        };
        let v = without_checks(&target(), Some(&allowed)).unwrap();
        assert_eq!(v.status, HookStatus::Succeeded);
    }

    #[test]
    fn configured_checks_are_run() {
        let policy = TrafficHookPolicy {
            alarm_checks: Some(safeship::policy::AlarmCheck {
                alarms: vec!["a".into()],
                insufficient_data_fails: false,
            }),
            ..Default::default()
        };
        assert_eq!(without_checks(&target(), Some(&policy)), None);
    }

    #[test]
    fn all_passed_succeeds() {
        let run = Run {
            results: vec![result("health", true, "ok"), result("alarms", true, "ok")],
            timed_out: vec![],
            waiting: String::new(),
        };
        assert_eq!(from_run(&run).status, HookStatus::Succeeded);
    }

    #[test]
    fn failures_and_timeouts_are_all_named() {
        let run = Run {
            results: vec![
                result("health", false, "/version is \"3\", expected \"4\""),
                result("alarms", true, "ok"),
            ],
            timed_out: vec!["slow-page".into()],
            waiting: "waiting on cloudwatch:DescribeAlarms for 4.8 s".into(),
        };
        let v = from_run(&run);
        assert_eq!(v.status, HookStatus::Failed);
        assert_eq!(
            v.reason,
            "timed out: slow-page (waiting on cloudwatch:DescribeAlarms for 4.8 s); health: /version is \"3\", expected \"4\""
        );
    }
}
