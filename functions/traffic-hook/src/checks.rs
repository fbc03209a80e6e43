//! Running a group's smoke checks: concurrently, each within its own timeout, all within the
//! hook's deadline; a panic in one check is that check's failure, not the hook's silence.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use safeship::guard::CheckResult;
use safeship::policy::TrafficHookPolicy;
use tokio::task::JoinSet;

use crate::deployment::Target;
use crate::expect::Placeholders;

mod alarm;
mod http;
mod lambda;

/// The clients the checks use, built once per cold start.
#[derive(Debug, Clone)]
pub struct CheckClients {
    pub http: reqwest::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

pub type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// One planned check: its name and the work, not yet started.
pub struct Planned {
    pub name: String,
    pub work: CheckFuture,
}

/// Every check the policy lists for this deployment, each bounded by its own timeout.
pub fn plan(policy: &TrafficHookPolicy, target: &Target, clients: &CheckClients) -> Vec<Planned> {
    let vars = Placeholders {
        deployment_id: target.deployment_id.clone(),
        target_version: target.target_version.clone(),
    };
    let mut planned = Vec::new();
    for check in &policy.http_checks {
        let work = http::run(clients.http.clone(), check.clone(), vars.clone());
        planned.push(bounded(&check.name, check.timeout_ms, work));
    }
    for check in &policy.lambda_checks {
        let qualifier = lambda::qualifier(check, target);
        let work = lambda::run(
            clients.lambda.clone(),
            check.clone(),
            qualifier,
            vars.clone(),
        );
        planned.push(bounded(&check.name, check.timeout_ms, work));
    }
    if let Some(check) = &policy.alarm_checks {
        let work = alarm::run(clients.cloudwatch.clone(), check.clone());
        planned.push(bounded(alarm::NAME, alarm::TIMEOUT_MS, work));
    }
    planned
}

/// A check's work returns `Ok(note)` or `Err(the failing expectation)`.
fn bounded(
    name: &str,
    timeout_ms: u64,
    work: impl Future<Output = Result<String, String>> + Send + 'static,
) -> Planned {
    let owned = name.to_owned();
    Planned {
        name: name.to_owned(),
        work: Box::pin(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(Duration::from_millis(timeout_ms), work).await;
            let (passed, detail) = match outcome {
                Ok(Ok(note)) => (true, note),
                Ok(Err(failure)) => (false, failure),
                Err(_) => (false, format!("timed out after {timeout_ms} ms")),
            };
            // The detail goes to the answer, the guard event and from there to people: no URL
            // credentials, query values or secret-looking values in it.
            let detail = safeship::telemetry::scrub(&detail);
            CheckResult {
                name: owned,
                passed,
                duration_ms: elapsed_ms(started),
                detail: Some(detail),
            }
        }),
    }
}

/// What the run produced by the deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Finished checks, in plan order.
    pub results: Vec<CheckResult>,
    /// Checks still running at the deadline, cancelled.
    pub timed_out: Vec<String>,
    /// What they were waiting on then (the AWS calls in flight, "waiting on
    /// cloudwatch:DescribeAlarms for 4.8 s"); empty when none.
    pub waiting: String,
}

/// Runs all checks at once; at `deadline` the unfinished ones are cancelled and named.
pub async fn run_until(planned: Vec<Planned>, deadline: tokio::time::Instant) -> Run {
    let order: Vec<String> = planned.iter().map(|p| p.name.clone()).collect();
    let started = Instant::now();
    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for p in planned {
        let handle = set.spawn(p.work);
        names.insert(handle.id(), p.name);
    }
    let mut results = Vec::new();
    let mut waiting = String::new();
    loop {
        match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
            Ok(None) => break,
            Ok(Some(Ok((id, result)))) => {
                names.remove(&id);
                results.push(result);
            }
            Ok(Some(Err(join_error))) => {
                let name = names.remove(&join_error.id()).unwrap_or_default();
                let detail = if join_error.is_panic() {
                    let message = panic_message(join_error.into_panic());
                    format!("panicked: {}", safeship::telemetry::scrub(&message))
                } else {
                    "cancelled".to_owned()
                };
                tracing::error!(check = %name, %detail, "check did not finish normally");
                results.push(CheckResult {
                    name,
                    passed: false,
                    duration_ms: elapsed_ms(started),
                    detail: Some(detail),
                });
            }
            Err(_deadline) => {
                // Before the abort: what the checks still running wait on names the cause.
                waiting = safeship::aws::in_flight::waiting();
                set.abort_all();
                break;
            }
        }
    }
    let position = |name: &str| order.iter().position(|n| n == name);
    results.sort_by_key(|r| position(&r.name));
    let mut timed_out: Vec<String> = names.into_values().collect();
    timed_out.sort_by_key(|n| position(n));
    Run {
        results,
        timed_out,
        waiting,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(name: &str, work: impl Future<Output = CheckResult> + Send + 'static) -> Planned {
        Planned {
            name: name.into(),
            work: Box::pin(work),
        }
    }

    fn result(name: &str, passed: bool) -> CheckResult {
        CheckResult {
            name: name.into(),
            passed,
            duration_ms: 0,
            detail: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn finished_checks_come_back_in_plan_order_and_hung_ones_are_named() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let run = run_until(
            vec![
                planned("slow", async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    result("slow", true)
                }),
                planned("hung", std::future::pending()),
                planned("fast", async { result("fast", false) }),
            ],
            deadline,
        )
        .await;
        let names: Vec<_> = run.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["slow", "fast"]);
        assert_eq!(run.timed_out, ["hung"]);
    }

    #[tokio::test]
    async fn a_panicking_check_is_a_failed_check() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let run = run_until(
            vec![planned("boom", async { panic!("index out of bounds") })],
            deadline,
        )
        .await;
        assert_eq!(run.results.len(), 1);
        assert!(!run.results[0].passed);
        assert_eq!(run.results[0].name, "boom");
        assert_eq!(
            run.results[0].detail.as_deref(),
            Some("panicked: index out of bounds")
        );
    }

    #[tokio::test]
    async fn a_checks_detail_is_redacted_where_it_is_built() {
        let p = bounded("health", 1_000, async {
            Err("GET https://svc:pa55@h/health?token=s3cr3t answered 500: {\"password\":\"hunter2\"}".to_owned())
        });
        let detail = p.work.await.detail.unwrap();
        assert_eq!(
            detail,
            "GET https://***@h/health?token=[redacted] answered 500: {\"password\":\"[redacted]\"}"
        );
        let run = run_until(
            vec![planned("boom", async {
                panic!("bad url https://h/x?key=s3cr3t")
            })],
            tokio::time::Instant::now() + Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            run.results[0].detail.as_deref(),
            Some("panicked: bad url https://h/x?key=***")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_over_its_own_timeout_fails_with_the_timeout() {
        let p = bounded("health", 200, std::future::pending());
        let r = p.work.await;
        assert!(!r.passed);
        assert_eq!(r.detail.as_deref(), Some("timed out after 200 ms"));
    }
}
