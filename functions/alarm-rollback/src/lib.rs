//! Alarm-to-rollback: a CloudWatch alarm going to `ALARM` undoes the change that caused it.
//!
//! Foundation stage: this decides which deployment groups an alarm transition concerns (a pure
//! function of the policy and the event) and reports that decision. Stopping deployments and
//! switching flags off land in their own issue; until then no AWS resource is changed.

use std::collections::BTreeMap;

use lambda_runtime::LambdaEvent;
use safeship::config::Env;
use safeship::event::{AlarmState, AlarmStateChange, EventError, Inbound};
use safeship::lambda::{accept, Common};
use safeship::policy::Policy;
use serde::Serialize;
use serde_json::Value;

pub const FUNCTION: &str = "alarm-rollback";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Event(#[from] EventError),
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        safeship::lambda::diagnostic(FUNCTION, &e)
    }
}

pub struct Deps {
    pub common: Common,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        Ok(Deps {
            common: Common::load(env).await?,
        })
    }
}

/// What an alarm transition asks of us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Nothing to do, and why.
    Ignore { reason: String },
    /// Roll back these `application/deployment-group`s.
    RollBack { groups: Vec<String> },
}

/// Which groups an alarm transition rolls back. `alarm_tags` are the alarm's tags where looked up.
pub fn decide(
    policy: &Policy,
    alarm: &AlarmStateChange,
    alarm_tags: &BTreeMap<String, String>,
) -> Decision {
    let mapped: Vec<_> = policy
        .groups_for_alarm(&alarm.alarm_name, alarm_tags)
        .collect();
    if mapped.is_empty() {
        return Decision::Ignore {
            reason: format!(
                "alarm {} is mapped to no deployment group",
                alarm.alarm_name
            ),
        };
    }
    let acting: Vec<String> = mapped
        .iter()
        .filter(|g| match alarm.state {
            AlarmState::Alarm => true,
            AlarmState::InsufficientData => g
                .policy
                .rollback
                .as_ref()
                .is_some_and(|r| r.act_on_insufficient_data),
            AlarmState::Ok => false,
        })
        .map(|g| format!("{}/{}", g.application, g.deployment_group))
        .collect();
    if acting.is_empty() {
        Decision::Ignore {
            reason: format!(
                "alarm {} went to {:?}, which rolls nothing back",
                alarm.alarm_name, alarm.state
            ),
        }
    } else {
        Decision::RollBack { groups: acting }
    }
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let normalised = accept(FUNCTION, &event.payload, |e| {
        matches!(e, Inbound::AlarmStateChange(_))
    })?;
    let Inbound::AlarmStateChange(alarm) = &normalised.event else {
        unreachable!("accept keeps alarm state changes only")
    };
    let decision = decide(&deps.common.policy, alarm, &BTreeMap::new());
    tracing::info!(alarm = %alarm.alarm_name, transition = %alarm.transition_key(), ?decision, "alarm evaluated");
    Ok(serde_json::json!({
        "alarm": alarm.alarm_name,
        "transition": alarm.transition_key(),
        "outcome": decision,
        "performed": [],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::event::{normalise, AlarmKind};

    const POLICY: &str = include_str!("../../../examples/policy.yaml");

    fn alarm(name: &str, state: AlarmState) -> AlarmStateChange {
        AlarmStateChange {
            alarm_name: name.into(),
            alarm_arn: None,
            account: None,
            region: None,
            kind: AlarmKind::Metric,
            state,
            previous_state: None,
            reason: String::new(),
            state_changed_at: chrono_now(),
        }
    }

    fn chrono_now() -> safeship::event::DateTimeUtc {
        safeship::event::parse_time("t", "t", "2026-11-20T10:00:00Z").unwrap()
    }

    #[test]
    fn alarm_state_rolls_back_the_mapped_group() {
        let p = Policy::parse(POLICY, "example").unwrap();
        assert_eq!(
            decide(
                &p,
                &alarm("checkout-prod-5xx-rate", AlarmState::Alarm),
                &BTreeMap::new()
            ),
            Decision::RollBack {
                groups: vec!["checkout/checkout-prod".into()]
            }
        );
    }

    #[test]
    fn ok_insufficient_data_and_unmapped_are_ignored() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let none = BTreeMap::new();
        assert!(matches!(
            decide(&p, &alarm("checkout-prod-5xx-rate", AlarmState::Ok), &none),
            Decision::Ignore { .. }
        ));
        assert!(matches!(
            decide(
                &p,
                &alarm("checkout-prod-5xx-rate", AlarmState::InsufficientData),
                &none
            ),
            Decision::Ignore { .. }
        ));
        let Decision::Ignore { reason } =
            decide(&p, &alarm("billing-errors", AlarmState::Alarm), &none)
        else {
            panic!("unmapped alarm acted on")
        };
        assert!(reason.contains("mapped to no deployment group"), "{reason}");
    }

    #[test]
    fn sample_events_decide_as_expected() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let raw = include_str!("../../../events/alarm-eventbridge-metric.json");
        let Inbound::AlarmStateChange(a) = normalise(&serde_json::from_str(raw).unwrap())
            .unwrap()
            .event
        else {
            panic!("not an alarm")
        };
        assert!(matches!(
            decide(&p, &a, &BTreeMap::new()),
            Decision::RollBack { .. }
        ));
    }
}
