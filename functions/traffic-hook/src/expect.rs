//! Expectations on a response: pure functions of data, shared by the HTTP and Lambda checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// What a policy's `{{…}}` placeholders stand for in this deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    pub deployment_id: String,
    /// Lambda `TargetVersion`, ECS task definition, GitHub commit or S3 object version.
    pub target_version: Option<String>,
}

impl Placeholders {
    /// Replaces `{{deployment-id}}` and `{{target-version}}`; an unknown target version is an
    /// error because comparing against an empty string would pass or fail for the wrong reason.
    pub fn fill(&self, template: &str) -> Result<String, String> {
        let mut text = template.replace("{{deployment-id}}", &self.deployment_id);
        if text.contains("{{target-version}}") {
            let Some(version) = &self.target_version else {
                return Err(
                    "{{target-version}} is used but the deployment's revision names no version"
                        .into(),
                );
            };
            text = text.replace("{{target-version}}", version);
        }
        Ok(text)
    }
}

/// Checks every `pointer → expected` pair against `body`; the error names the first that fails.
/// A string expectation also matches a number or boolean with the same text (`"4"` ~ `4`),
/// because versions are written both ways.
pub fn check_json(
    body: &Value,
    expectations: &BTreeMap<String, Value>,
    placeholders: &Placeholders,
) -> Result<(), String> {
    for (pointer, expected) in expectations {
        let expected = match expected {
            Value::String(s) => Value::String(placeholders.fill(s)?),
            other => other.clone(),
        };
        let Some(actual) = body.pointer(pointer) else {
            return Err(format!("{pointer} is missing, expected {expected}"));
        };
        let same = actual == &expected
            || match (&expected, actual) {
                (Value::String(e), Value::Number(_) | Value::Bool(_)) => {
                    serde_json::from_str::<Value>(e).is_ok_and(|v| &v == actual)
                }
                _ => false,
            };
        if !same {
            // The answer and the guard event are read by people: a value under a secret-looking
            // name is not shown (nor is the expected one, which would tell it by difference).
            if secret_looking(pointer) {
                return Err(format!(
                    "{pointer} is not the expected value (values under this name are not shown)"
                ));
            }
            return Err(format!("{pointer} is {actual}, expected {expected}"));
        }
    }
    Ok(())
}

/// Whether a JSON pointer's last segment names something secret (`/auth/token`, `/apiKey`).
fn secret_looking(pointer: &str) -> bool {
    let last = pointer
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace(['-', '_'], "");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "apikey",
        "credential",
        "session",
        "cookie",
    ]
    .iter()
    .any(|word| last.contains(word))
}

/// Parses a response body for JSON expectations; a body that is not JSON fails them all.
pub fn parse_body(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
        format!("body is not JSON ({e}): {shown:?}")
    })
}

/// Latency figures over a check's requests (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub p50: Duration,
    pub p95: Duration,
}

pub fn latency(samples: &[Duration]) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
    Some(Latency {
        p50: rank(50),
        p95: rank(95),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(version: Option<&str>) -> Placeholders {
        Placeholders {
            deployment_id: "d-ABC".into(),
            target_version: version.map(str::to_owned),
        }
    }

    fn expect(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn matching_body_passes_with_placeholders_filled() {
        let body = json!({"version": "4", "db": "ok", "build": {"deployment": "d-ABC"}});
        let e = expect(&[
            ("/version", json!("{{target-version}}")),
            ("/db", json!("ok")),
            ("/build/deployment", json!("{{deployment-id}}")),
        ]);
        assert_eq!(check_json(&body, &e, &vars(Some("4"))), Ok(()));
    }

    #[test]
    fn the_first_failing_expectation_is_named() {
        let body = json!({"version": "3", "db": "ok"});
        let e = expect(&[
            ("/db", json!("ok")),
            ("/version", json!("{{target-version}}")),
        ]);
        assert_eq!(
            check_json(&body, &e, &vars(Some("4"))),
            Err(r#"/version is "3", expected "4""#.into())
        );
        let e = expect(&[("/cache", json!("warm"))]);
        assert_eq!(
            check_json(&body, &e, &vars(None)),
            Err(r#"/cache is missing, expected "warm""#.into())
        );
    }

    #[test]
    fn string_expectation_matches_a_number_with_the_same_text() {
        let e = expect(&[("/version", json!("{{target-version}}"))]);
        assert_eq!(
            check_json(&json!({"version": 4}), &e, &vars(Some("4"))),
            Ok(())
        );
        assert!(check_json(&json!({"version": 5}), &e, &vars(Some("4"))).is_err());
        // but a number expectation does not match a string
        let e = expect(&[("/n", json!(1))]);
        assert!(check_json(&json!({"n": "1"}), &e, &vars(None)).is_err());
    }

    #[test]
    fn a_value_under_a_secret_looking_name_is_not_shown() {
        let body = json!({"auth": {"access_token": "tok-123"}, "version": "3"});
        let e = expect(&[("/auth/access_token", json!("expected-tok"))]);
        assert_eq!(
            check_json(&body, &e, &vars(None)),
            Err("/auth/access_token is not the expected value (values under this name are not shown)".into())
        );
        let e = expect(&[("/version", json!("4"))]);
        assert_eq!(
            check_json(&body, &e, &vars(None)),
            Err(r#"/version is "3", expected "4""#.into())
        );
    }

    #[test]
    fn unknown_target_version_is_a_failure_not_a_match() {
        let e = expect(&[("/version", json!("{{target-version}}"))]);
        let err = check_json(&json!({"version": ""}), &e, &vars(None)).unwrap_err();
        assert!(err.contains("names no version"), "{err}");
    }

    #[test]
    fn non_json_body_is_reported_with_its_start() {
        let err = parse_body(b"<html>502 Bad Gateway</html>").unwrap_err();
        assert!(err.contains("502 Bad Gateway"), "{err}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<_> = (1..=20).map(ms).collect();
        let l = latency(&samples).unwrap();
        assert_eq!((l.p50, l.p95), (ms(10), ms(19)));
        let one = latency(&[ms(7)]).unwrap();
        assert_eq!((one.p50, one.p95), (ms(7), ms(7)));
        assert_eq!(latency(&[]), None);
    }
}
