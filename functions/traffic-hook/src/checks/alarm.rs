//! Alarm checks: none of the listed CloudWatch alarms (metric or composite) is in `ALARM`.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
use safeship::policy::AlarmCheck;

pub const NAME: &str = "alarms";
/// One `DescribeAlarms` call; the SDK's own timeouts and retries sit inside this bound.
pub const TIMEOUT_MS: u64 = 20_000;

pub async fn run(client: aws_sdk_cloudwatch::Client, check: AlarmCheck) -> Result<String, String> {
    let mut found = BTreeMap::new();
    // DescribeAlarms takes at most 100 names per call.
    for names in check.alarms.chunks(100) {
        let mut pages = client
            .describe_alarms()
            .set_alarm_names(Some(names.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                format!(
                    "cloudwatch:DescribeAlarms {names:?} failed: {}",
                    aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                )
            })?;
            for a in page.metric_alarms() {
                if let (Some(name), Some(state)) = (&a.alarm_name, &a.state_value) {
                    found.insert(name.clone(), (state.clone(), a.state_reason.clone()));
                }
            }
            for a in page.composite_alarms() {
                if let (Some(name), Some(state)) = (&a.alarm_name, &a.state_value) {
                    found.insert(name.clone(), (state.clone(), a.state_reason.clone()));
                }
            }
        }
    }
    judge_alarms(&check, &found)
}

/// The decision, from what `DescribeAlarms` returned: alarm name → (state, reason).
pub fn judge_alarms(
    check: &AlarmCheck,
    found: &BTreeMap<String, (StateValue, Option<String>)>,
) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut insufficient = Vec::new();
    for name in &check.alarms {
        match found.get(name) {
            None => problems.push(format!("alarm {name} does not exist")),
            Some((StateValue::Alarm, reason)) => problems.push(format!(
                "alarm {name} is in ALARM: {}",
                reason.as_deref().unwrap_or("no reason given")
            )),
            Some((StateValue::InsufficientData, _)) if check.insufficient_data_fails => {
                problems.push(format!("alarm {name} is in INSUFFICIENT_DATA"))
            }
            Some((StateValue::InsufficientData, _)) => insufficient.push(name.as_str()),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut note = format!("{} alarm(s) not in ALARM", check.alarms.len());
    if !insufficient.is_empty() {
        note.push_str(&format!(
            " ({} in INSUFFICIENT_DATA, allowed)",
            insufficient.join(", ")
        ));
    }
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(insufficient_data_fails: bool) -> AlarmCheck {
        AlarmCheck {
            alarms: vec!["5xx".into(), "latency".into()],
            insufficient_data_fails,
        }
    }

    fn states(pairs: &[(&str, StateValue)]) -> BTreeMap<String, (StateValue, Option<String>)> {
        pairs
            .iter()
            .map(|(n, s)| (n.to_string(), (s.clone(), Some("Threshold Crossed".into()))))
            .collect()
    }

    #[test]
    fn all_ok_passes() {
        let found = states(&[("5xx", StateValue::Ok), ("latency", StateValue::Ok)]);
        assert_eq!(
            judge_alarms(&check(false), &found),
            Ok("2 alarm(s) not in ALARM".into())
        );
    }

    #[test]
    fn an_alarm_in_alarm_fails_with_its_reason() {
        let found = states(&[("5xx", StateValue::Alarm), ("latency", StateValue::Ok)]);
        assert_eq!(
            judge_alarms(&check(false), &found),
            Err("alarm 5xx is in ALARM: Threshold Crossed".into())
        );
    }

    #[test]
    fn insufficient_data_fails_only_when_the_policy_says_so() {
        let found = states(&[
            ("5xx", StateValue::InsufficientData),
            ("latency", StateValue::Ok),
        ]);
        assert!(judge_alarms(&check(false), &found)
            .unwrap()
            .contains("5xx in INSUFFICIENT_DATA, allowed"));
        assert_eq!(
            judge_alarms(&check(true), &found),
            Err("alarm 5xx is in INSUFFICIENT_DATA".into())
        );
    }

    #[test]
    fn a_missing_alarm_is_a_failure() {
        let found = states(&[("5xx", StateValue::Ok)]);
        assert_eq!(
            judge_alarms(&check(false), &found),
            Err("alarm latency does not exist".into())
        );
    }
}
