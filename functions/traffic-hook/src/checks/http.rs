//! HTTP checks against the new version (for ECS blue/green: the test listener).

use std::time::{Duration, Instant};

use safeship::policy::HttpCheck;

use crate::expect::{check_json, latency, parse_body, Placeholders};

/// Sends the check's requests one after another (so their latencies are comparable), applying the
/// status and body expectations to every answer, then the p95 budget to all of them.
pub async fn run(
    client: reqwest::Client,
    check: HttpCheck,
    vars: Placeholders,
) -> Result<String, String> {
    let method = reqwest::Method::from_bytes(check.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", check.method))?;
    let url = vars.fill(&check.url)?;
    let mut headers = Vec::with_capacity(check.headers.len());
    for (name, value) in &check.headers {
        headers.push((name.clone(), vars.fill(value)?));
    }
    let body = check.body.as_deref().map(|b| vars.fill(b)).transpose()?;

    // The policy bounds `requests` (at most 1000, at validation); never trust it for an
    // allocation all the same.
    let mut samples = Vec::with_capacity(check.requests.min(1_000) as usize);
    for attempt in 1..=check.requests {
        let mut request = client.request(method.clone(), &url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| format!("request {attempt} to {url} failed: {}", describe(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading answer {attempt} from {url}: {}", describe(&e)))?;
        samples.push(started.elapsed());
        if status != check.expect_status {
            return Err(format!(
                "{} {url} answered {status}, expected {} (request {attempt})",
                check.method, check.expect_status
            ));
        }
        if !check.expect_json.is_empty() {
            let json = parse_body(&bytes)?;
            check_json(&json, &check.expect_json, &vars)
                .map_err(|failure| format!("{failure} (request {attempt})"))?;
        }
    }
    judge_latency(&samples, check.p95_budget_ms)
}

/// `Ok` with the figures, or `Err` when p95 is over the budget.
pub fn judge_latency(samples: &[Duration], p95_budget_ms: Option<u64>) -> Result<String, String> {
    let Some(l) = latency(samples) else {
        return Ok("no requests sent".into());
    };
    let figures = format!(
        "{} requests, p50 {} ms, p95 {} ms",
        samples.len(),
        l.p50.as_millis(),
        l.p95.as_millis()
    );
    match p95_budget_ms {
        Some(budget) if l.p95 > Duration::from_millis(budget) => {
            Err(format!("p95 over the {budget} ms budget: {figures}"))
        }
        _ => Ok(figures),
    }
}

/// reqwest's top-level message hides the cause (`error sending request`); keep the chain.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // The URL is the policy's own, but never print credentials someone put in it.
    safeship::telemetry::scrub(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_within_budget_reports_figures() {
        let samples: Vec<_> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(
            judge_latency(&samples, Some(50)),
            Ok("20 requests, p50 10 ms, p95 19 ms".into())
        );
    }

    #[test]
    fn p95_over_budget_fails_with_the_figures() {
        let mut samples = vec![Duration::from_millis(10); 18];
        samples.extend([Duration::from_millis(400), Duration::from_millis(500)]);
        let err = judge_latency(&samples, Some(300)).unwrap_err();
        assert_eq!(
            err,
            "p95 over the 300 ms budget: 20 requests, p50 10 ms, p95 400 ms"
        );
    }
}
