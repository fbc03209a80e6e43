//! The event model: whatever arrives — an EventBridge envelope, an SNS-wrapped message, a direct
//! invocation by CodeDeploy or by a CloudWatch alarm action — becomes one typed [`Inbound`].
//!
//! Normalising is pure and has no side effect, so a malformed or unknown event is rejected with a
//! message naming the field before any guard rail can act on it.

use aws_lambda_events::event::codedeploy::CodeDeployLifecycleEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod alarm;
mod ecs;
mod eventbridge;
mod fields;
mod sns;

use alarm::alarm_from_lambda_action;
pub use ecs::{
    ecs_hook_of, is_ecs_hook, EcsAnswer, EcsDeploymentState, EcsDeploymentStateChange,
    EcsHookStatus, EcsLifecycleHook, EcsStage, Listener,
};
use eventbridge::normalise_eventbridge;
pub use fields::parse_time;
use fields::{json_type, malformed, string_at};
use sns::normalise_sns;

pub use crate::error::EventError;
use crate::guard::GuardEvent;
pub use crate::model::{AlarmKind, AlarmState, DateTimeUtc, DeploymentState};

/// How the event reached us; the delivery id is the transport's, not the event's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "via")]
pub enum Delivery {
    Direct,
    EventBridge {
        id: String,
    },
    Sns {
        message_id: String,
        topic_arn: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalised {
    pub delivery: Delivery,
    pub event: Inbound,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Inbound {
    /// CodeDeploy invoking a lifecycle hook function.
    LifecycleHook(LifecycleHook),
    /// Amazon ECS invoking a lifecycle hook of a service deployment (it answers by return value).
    EcsLifecycleHook(Box<EcsLifecycleHook>),
    /// A CloudWatch alarm changing state (EventBridge, SNS, or a Lambda alarm action).
    AlarmStateChange(AlarmStateChange),
    /// EventBridge "CodeDeploy Deployment State-change Notification".
    DeploymentStateChange(DeploymentStateChange),
    /// EventBridge "ECS Deployment State Change" (a service Amazon ECS deploys itself).
    EcsDeploymentStateChange(EcsDeploymentStateChange),
    /// One of safeship's own guard events, from its EventBridge bus.
    Guard(Box<GuardEvent>),
    /// EventBridge "Scheduled Event".
    Scheduled(Scheduled),
}

impl Inbound {
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::LifecycleHook(_) => "lifecycle-hook",
            Inbound::EcsLifecycleHook(_) => "ecs-lifecycle-hook",
            Inbound::AlarmStateChange(_) => "alarm-state-change",
            Inbound::DeploymentStateChange(_) => "deployment-state-change",
            Inbound::EcsDeploymentStateChange(_) => "ecs-deployment-state-change",
            Inbound::Guard(_) => "guard",
            Inbound::Scheduled(_) => "scheduled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LifecycleHook {
    pub deployment_id: String,
    pub lifecycle_event_hook_execution_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AlarmStateChange {
    pub alarm_name: String,
    pub alarm_arn: Option<String>,
    pub account: Option<String>,
    /// The region code (e.g. `eu-west-1`), from the ARN where the message gives only a long name.
    pub region: Option<String>,
    pub kind: AlarmKind,
    pub state: AlarmState,
    pub previous_state: Option<AlarmState>,
    pub reason: String,
    pub state_changed_at: DateTime<Utc>,
    /// An alarm mute rule muted this transition's actions (EventBridge `detail.muteDetail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted: Option<Mute>,
    /// A composite alarm's actions suppressor held this transition's actions back
    /// (`state.actionsSuppressedBy` / `actionsSuppressedReason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
}

/// The alarm mute rule that muted a transition's actions (EventBridge `detail.muteDetail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mute {
    /// `mutedByArn`: the mute rule's ARN.
    pub rule_arn: String,
    /// `muteWindowStart` / `muteWindowEnd`, as CloudWatch wrote them.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
}

impl Mute {
    /// The mute rule's name: the last part of its ARN (`…:alarm-mute-rule:<name>`).
    #[must_use]
    pub fn rule(&self) -> &str {
        self.rule_arn.rsplit(':').next().unwrap_or(&self.rule_arn)
    }
}

/// Why a composite alarm's actions were suppressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Suppression {
    /// `actionsSuppressedBy`: `Alarm`, `WaitPeriod` or `ExtensionPeriod`.
    pub by: String,
    /// `actionsSuppressedReason`.
    pub reason: String,
    /// The suppressor alarm (`configuration.actionsSuppressor`), when the event names it.
    pub suppressor: Option<String>,
}

impl AlarmStateChange {
    /// Why CloudWatch itself held this transition's actions back (a mute rule, or a composite
    /// alarm's actions suppressor), in the words the guard event uses; `None` when it did not.
    #[must_use]
    pub fn actions_held_back(&self) -> Option<String> {
        if let Some(mute) = &self.muted {
            let window = match (&mute.window_start, &mute.window_end) {
                (Some(start), Some(end)) => format!(" (mute window {start} to {end})"),
                (None, Some(end)) => format!(" (mute window until {end})"),
                _ => String::new(),
            };
            return Some(format!(
                "ignored: muted by {} ({}){window}",
                mute.rule(),
                mute.rule_arn
            ));
        }
        self.suppressed.as_ref().map(|s| {
            format!(
                "ignored: actions suppressed by {}: {}",
                s.suppressor.as_deref().unwrap_or(s.by.as_str()),
                s.reason
            )
        })
    }

    /// One transition's identity, the same however often and by whichever route it is delivered.
    pub fn transition_key(&self) -> String {
        format!(
            "{}@{}",
            self.alarm_arn.as_deref().unwrap_or(&self.alarm_name),
            self.state_changed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeploymentStateChange {
    pub application: String,
    pub deployment_group: String,
    pub deployment_id: String,
    pub state: DeploymentState,
    pub region: Option<String>,
    pub account: Option<String>,
    pub time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Scheduled {
    pub rules: Vec<String>,
    pub time: Option<DateTime<Utc>>,
}

const SHAPE_HOOK: &str = "CodeDeploy lifecycle hook event";
const SHAPE_EB: &str = "EventBridge event";
const SHAPE_EB_ALARM: &str = "EventBridge CloudWatch Alarm State Change";
const SHAPE_EB_DEPLOY: &str = "EventBridge CodeDeploy Deployment State-change Notification";
const SHAPE_EB_GUARD: &str = "EventBridge safeship guard event";
const SHAPE_SNS: &str = "SNS event";
const SHAPE_SNS_ALARM: &str = "SNS CloudWatch alarm notification";
const SHAPE_ALARM_ACTION: &str = "CloudWatch Lambda alarm action";

/// Normalises a raw Lambda payload into a typed event.
pub fn normalise(payload: &Value) -> Result<Normalised, EventError> {
    let Some(obj) = payload.as_object() else {
        return Err(EventError::Unrecognised(format!(
            "expected a JSON object, found {}",
            json_type(payload)
        )));
    };
    if obj.contains_key("Records") {
        return normalise_sns(payload);
    }
    if obj.contains_key("detail-type") {
        return normalise_eventbridge(payload);
    }
    if obj.contains_key("DeploymentId") || obj.contains_key("LifecycleEventHookExecutionId") {
        // Each id is checked first so a missing one is named; then AWS's own type reads it.
        string_at(payload, SHAPE_HOOK, "DeploymentId")?;
        string_at(payload, SHAPE_HOOK, "LifecycleEventHookExecutionId")?;
        let hook = CodeDeployLifecycleEvent::deserialize(payload)
            .map_err(|e| malformed(SHAPE_HOOK, "payload", e.to_string()))?;
        let event = Inbound::LifecycleHook(LifecycleHook {
            deployment_id: hook.deployment_id,
            lifecycle_event_hook_execution_id: hook.lifecycle_event_hook_execution_id,
        });
        return Ok(Normalised {
            delivery: Delivery::Direct,
            event,
        });
    }
    if ecs::looks_like(obj) {
        return Ok(Normalised {
            delivery: Delivery::Direct,
            event: Inbound::EcsLifecycleHook(Box::new(ecs::parse(payload)?)),
        });
    }
    if obj.contains_key("alarmData") {
        return Ok(Normalised {
            delivery: Delivery::Direct,
            event: Inbound::AlarmStateChange(alarm_from_lambda_action(payload)?),
        });
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    Err(EventError::Unrecognised(format!(
        "not an EventBridge event, SNS event, CodeDeploy or ECS lifecycle hook or CloudWatch alarm action (top-level keys: {})",
        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifecycle_hook_missing_id_names_the_field() {
        let err = normalise(&json!({"DeploymentId": "d-1"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CodeDeploy lifecycle hook event: field LifecycleEventHookExecutionId: missing"
        );
        let err = normalise(&json!({"DeploymentId": 7, "LifecycleEventHookExecutionId": "h"}))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("DeploymentId: expected a string, found a number"),
            "{err}"
        );
    }

    #[test]
    fn unknown_shapes_are_named() {
        let err = normalise(&json!({"hello": 1, "abc": 2}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("top-level keys: abc, hello"), "{err}");
        let err = normalise(&json!([1])).unwrap_err().to_string();
        assert!(
            err.contains("expected a JSON object, found an array"),
            "{err}"
        );
        let err = normalise(
            &json!({"id": "1", "source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"aws.s3\"") && err.contains("Object Created"),
            "{err}"
        );
    }

    #[test]
    fn cloudwatch_timestamps_without_offset_colon_parse() {
        let t = parse_time("x", "y", "2019-10-02T17:04:40.985+0000").unwrap();
        assert_eq!(t.to_rfc3339(), "2019-10-02T17:04:40.985+00:00");
        assert!(parse_time("x", "y", "yesterday").is_err());
    }

    #[test]
    fn sns_with_two_records_is_rejected() {
        let rec = json!({"EventSource": "aws:sns", "Sns": {}});
        let err = normalise(&json!({"Records": [rec.clone(), rec]}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected exactly one record, found 2"),
            "{err}"
        );
    }

    #[test]
    fn sns_message_that_is_not_an_alarm_is_rejected() {
        let ev = json!({"Records": [{"EventSource": "aws:sns", "Sns": {
            "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:1:t", "Message": "{\"hello\":1}"}}]});
        let err = normalise(&ev).unwrap_err().to_string();
        assert!(
            err.contains("Message: is neither a CloudWatch alarm notification"),
            "{err}"
        );
    }

    #[test]
    fn unknown_alarm_state_is_named() {
        let ev = json!({"id": "1", "source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
            "resources": ["arn:aws:cloudwatch:eu-west-1:1:alarm:a"],
            "detail": {"alarmName": "a", "state": {"value": "PANIC", "timestamp": "2026-11-20T10:00:00.000+0000"}}});
        let err = normalise(&ev).unwrap_err().to_string();
        assert!(
            err.contains(
                "detail.state.value: expected OK, ALARM or INSUFFICIENT_DATA, found \"PANIC\""
            ),
            "{err}"
        );
    }

    #[test]
    fn transition_key_is_the_same_across_routes() {
        let base = AlarmStateChange {
            alarm_name: "a".into(),
            alarm_arn: Some("arn:aws:cloudwatch:eu-west-1:1:alarm:a".into()),
            account: None,
            region: None,
            kind: AlarmKind::Metric,
            state: AlarmState::Alarm,
            previous_state: None,
            reason: String::new(),
            state_changed_at: parse_time("x", "y", "2026-11-20T10:00:00.000+0000").unwrap(),
            muted: None,
            suppressed: None,
        };
        assert_eq!(
            base.transition_key(),
            "arn:aws:cloudwatch:eu-west-1:1:alarm:a@2026-11-20T10:00:00.000Z"
        );
    }
}
