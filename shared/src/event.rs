//! The event model: whatever arrives — an EventBridge envelope, an SNS-wrapped message, a direct
//! invocation by CodeDeploy or by a CloudWatch alarm action — becomes one typed [`Inbound`].
//!
//! Normalising is pure and has no side effect, so a malformed or unknown event is rejected with a
//! message naming the field before any guard rail can act on it.

use chrono::{DateTime, FixedOffset, Utc};

/// The timestamp type of every event (re-exported so functions need no chrono dependency).
pub type DateTimeUtc = DateTime<Utc>;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::guard::{GuardEvent, GUARD_DETAIL_TYPE, GUARD_SOURCE};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event has a recognised shape but a field is missing or wrong.
    #[error("{shape}: field {field}: {problem}")]
    Malformed {
        shape: &'static str,
        field: String,
        problem: String,
    },
    /// Nothing about the event matches a shape safeship accepts.
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    /// A recognised event that this function does not act on.
    #[error("{function} does not handle {kind} events")]
    NotHandled {
        function: &'static str,
        kind: &'static str,
    },
}

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
    /// A CloudWatch alarm changing state (EventBridge, SNS, or a Lambda alarm action).
    AlarmStateChange(AlarmStateChange),
    /// EventBridge "CodeDeploy Deployment State-change Notification".
    DeploymentStateChange(DeploymentStateChange),
    /// One of safeship's own guard events, from its EventBridge bus.
    Guard(Box<GuardEvent>),
    /// EventBridge "Scheduled Event".
    Scheduled(Scheduled),
}

impl Inbound {
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::LifecycleHook(_) => "lifecycle-hook",
            Inbound::AlarmStateChange(_) => "alarm-state-change",
            Inbound::DeploymentStateChange(_) => "deployment-state-change",
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    /// The state as CloudWatch names it (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
    pub fn name(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    fn parse(shape: &'static str, field: &str, raw: &str) -> Result<Self, EventError> {
        match raw {
            "OK" => Ok(AlarmState::Ok),
            "ALARM" => Ok(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Ok(AlarmState::InsufficientData),
            other => Err(malformed(
                shape,
                field,
                format!("expected OK, ALARM or INSUFFICIENT_DATA, found {other:?}"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    Metric,
    MetricMath,
    Composite,
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
}

impl AlarmStateChange {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentState {
    Start,
    Success,
    Failure,
    Stop,
    Ready,
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
        let event = Inbound::LifecycleHook(LifecycleHook {
            deployment_id: string_at(payload, SHAPE_HOOK, "DeploymentId")?,
            lifecycle_event_hook_execution_id: string_at(
                payload,
                SHAPE_HOOK,
                "LifecycleEventHookExecutionId",
            )?,
        });
        return Ok(Normalised {
            delivery: Delivery::Direct,
            event,
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
        "not an EventBridge event, SNS event, CodeDeploy lifecycle hook or CloudWatch alarm action (top-level keys: {})",
        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
    )))
}

fn normalise_eventbridge(payload: &Value) -> Result<Normalised, EventError> {
    let source = string_at(payload, SHAPE_EB, "source")?;
    let detail_type = string_at(payload, SHAPE_EB, "detail-type")?;
    let id = string_at(payload, SHAPE_EB, "id")?;
    let event = match (source.as_str(), detail_type.as_str()) {
        ("aws.cloudwatch", "CloudWatch Alarm State Change") => {
            Inbound::AlarmStateChange(alarm_from_eventbridge(payload)?)
        }
        ("aws.codedeploy", "CodeDeploy Deployment State-change Notification") => {
            Inbound::DeploymentStateChange(deployment_from_eventbridge(payload)?)
        }
        ("aws.events", "Scheduled Event") => Inbound::Scheduled(Scheduled {
            rules: optional_string_list(payload, "resources"),
            time: optional_time(payload, SHAPE_EB, "time")?,
        }),
        (GUARD_SOURCE, GUARD_DETAIL_TYPE) => {
            let detail = payload
                .get("detail")
                .ok_or_else(|| malformed(SHAPE_EB_GUARD, "detail", "missing"))?;
            let guard: GuardEvent = serde_json::from_value(detail.clone())
                .map_err(|e| malformed(SHAPE_EB_GUARD, "detail", e.to_string()))?;
            Inbound::Guard(Box::new(guard))
        }
        _ => {
            return Err(EventError::Unrecognised(format!(
                "EventBridge event with source {source:?} and detail-type {detail_type:?} is not one safeship handles"
            )))
        }
    };
    Ok(Normalised {
        delivery: Delivery::EventBridge { id },
        event,
    })
}

fn normalise_sns(payload: &Value) -> Result<Normalised, EventError> {
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(SHAPE_SNS, "Records", "expected an array"))?;
    // SNS invokes Lambda with exactly one record; anything else is not an SNS delivery.
    let [record] = records.as_slice() else {
        return Err(malformed(
            SHAPE_SNS,
            "Records",
            format!("expected exactly one record, found {}", records.len()),
        ));
    };
    let source = record
        .get("EventSource")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if source != "aws:sns" {
        return Err(EventError::Unrecognised(format!(
            "Records[0].EventSource is {source:?}; only SNS records (aws:sns) are accepted"
        )));
    }
    let sns = record
        .get("Sns")
        .ok_or_else(|| malformed(SHAPE_SNS, "Records[0].Sns", "missing"))?;
    let message_id = string_at(sns, SHAPE_SNS, "MessageId")?;
    let topic_arn = string_at(sns, SHAPE_SNS, "TopicArn")?;
    let text = string_at(sns, SHAPE_SNS, "Message")?;
    let message: Value = serde_json::from_str(&text).map_err(|e| {
        malformed(
            SHAPE_SNS,
            "Records[0].Sns.Message",
            format!("not JSON: {e}"),
        )
    })?;
    let event = if message.get("AlarmName").is_some() {
        Inbound::AlarmStateChange(alarm_from_sns(&message)?)
    } else if message.get("detail-type").is_some() {
        // An EventBridge rule may target an SNS topic; the event inside is the real one.
        normalise_eventbridge(&message)?.event
    } else {
        return Err(malformed(
            SHAPE_SNS,
            "Records[0].Sns.Message",
            "is neither a CloudWatch alarm notification (no AlarmName) nor an EventBridge event",
        ));
    };
    Ok(Normalised {
        delivery: Delivery::Sns {
            message_id,
            topic_arn,
        },
        event,
    })
}

fn alarm_from_eventbridge(payload: &Value) -> Result<AlarmStateChange, EventError> {
    let s = SHAPE_EB_ALARM;
    let detail = payload
        .get("detail")
        .ok_or_else(|| malformed(s, "detail", "missing"))?;
    let alarm_arn = payload
        .get("resources")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .map(str::to_owned);
    alarm_from_camel_case(
        s,
        detail,
        "detail",
        alarm_arn,
        optional_str(payload, "account"),
        optional_str(payload, "region"),
    )
}

fn alarm_from_lambda_action(payload: &Value) -> Result<AlarmStateChange, EventError> {
    let s = SHAPE_ALARM_ACTION;
    let source = string_at(payload, s, "source")?;
    if source != "aws.cloudwatch" {
        return Err(malformed(
            s,
            "source",
            format!("expected aws.cloudwatch, found {source:?}"),
        ));
    }
    let alarm_arn = string_at(payload, s, "alarmArn")?;
    let data = payload.get("alarmData").expect("checked by the caller");
    alarm_from_camel_case(
        s,
        data,
        "alarmData",
        Some(alarm_arn),
        optional_str(payload, "accountId"),
        optional_str(payload, "region"),
    )
}

/// EventBridge's `detail` and a Lambda alarm action's `alarmData` share one camelCase shape.
fn alarm_from_camel_case(
    s: &'static str,
    data: &Value,
    at: &str,
    alarm_arn: Option<String>,
    account: Option<String>,
    region: Option<String>,
) -> Result<AlarmStateChange, EventError> {
    let field = |name: &str| format!("{at}.{name}");
    let alarm_name =
        string_at(data, s, "alarmName").map_err(|_| malformed(s, field("alarmName"), "missing"))?;
    let state = data
        .get("state")
        .ok_or_else(|| malformed(s, field("state"), "missing"))?;
    let value = state
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(s, field("state.value"), "missing"))?;
    let previous_state = match data
        .get("previousState")
        .and_then(|p| p.get("value"))
        .and_then(Value::as_str)
    {
        Some(raw) => Some(AlarmState::parse(s, &field("previousState.value"), raw)?),
        None => None,
    };
    let timestamp = state
        .get("timestamp")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(s, field("state.timestamp"), "missing"))?;
    let configuration = data.get("configuration");
    let kind = if configuration.and_then(|c| c.get("alarmRule")).is_some() {
        AlarmKind::Composite
    } else if configuration
        .and_then(|c| c.get("metrics"))
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m.get("expression").is_some()))
    {
        AlarmKind::MetricMath
    } else {
        AlarmKind::Metric
    };
    let region = region.or_else(|| alarm_arn.as_deref().and_then(region_of_arn));
    Ok(AlarmStateChange {
        alarm_name,
        state: AlarmState::parse(s, &field("state.value"), value)?,
        previous_state,
        reason: state
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        state_changed_at: parse_time(s, &field("state.timestamp"), timestamp)?,
        kind,
        alarm_arn,
        account,
        region,
    })
}

fn alarm_from_sns(message: &Value) -> Result<AlarmStateChange, EventError> {
    let s = SHAPE_SNS_ALARM;
    let alarm_arn = optional_str(message, "AlarmArn");
    let kind = if message.get("AlarmRule").is_some() {
        AlarmKind::Composite
    } else if message
        .get("Trigger")
        .and_then(|t| t.get("Metrics"))
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m.get("Expression").is_some()))
    {
        AlarmKind::MetricMath
    } else {
        AlarmKind::Metric
    };
    let previous_state = match optional_str(message, "OldStateValue") {
        Some(raw) => Some(AlarmState::parse(s, "OldStateValue", &raw)?),
        None => None,
    };
    Ok(AlarmStateChange {
        alarm_name: string_at(message, s, "AlarmName")?,
        state: AlarmState::parse(s, "NewStateValue", &string_at(message, s, "NewStateValue")?)?,
        previous_state,
        reason: optional_str(message, "NewStateReason").unwrap_or_default(),
        state_changed_at: parse_time(
            s,
            "StateChangeTime",
            &string_at(message, s, "StateChangeTime")?,
        )?,
        kind,
        // SNS gives the region's long name ("EU (Ireland)"); the ARN has the code.
        region: alarm_arn.as_deref().and_then(region_of_arn),
        account: optional_str(message, "AWSAccountId"),
        alarm_arn,
    })
}

fn deployment_from_eventbridge(payload: &Value) -> Result<DeploymentStateChange, EventError> {
    let s = SHAPE_EB_DEPLOY;
    let detail = payload
        .get("detail")
        .ok_or_else(|| malformed(s, "detail", "missing"))?;
    let field = |name: &str| -> Result<String, EventError> {
        string_at(detail, s, name)
            .map_err(|_| malformed(s, format!("detail.{name}"), "missing or not a string"))
    };
    let raw_state = field("state")?;
    let state = serde_json::from_value(Value::String(raw_state.clone())).map_err(|_| {
        malformed(
            s,
            "detail.state",
            format!("expected START, SUCCESS, FAILURE, STOP or READY, found {raw_state:?}"),
        )
    })?;
    Ok(DeploymentStateChange {
        application: field("application")?,
        deployment_group: field("deploymentGroup")?,
        deployment_id: field("deploymentId")?,
        state,
        region: optional_str(detail, "region").or_else(|| optional_str(payload, "region")),
        account: optional_str(payload, "account"),
        time: optional_time(payload, s, "time")?,
    })
}

/// CloudWatch writes `2019-10-02T17:04:40.985+0000` (no colon in the offset), which RFC 3339
/// parsers refuse; EventBridge's envelope uses RFC 3339 proper. Accept both.
pub fn parse_time(
    shape: &'static str,
    field: &str,
    raw: &str,
) -> Result<DateTime<Utc>, EventError> {
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::<FixedOffset>::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| malformed(shape, field, format!("not a timestamp ({raw:?}): {e}")))
}

fn region_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

fn malformed(
    shape: &'static str,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> EventError {
    EventError::Malformed {
        shape,
        field: field.into(),
        problem: problem.into(),
    }
}

fn string_at(v: &Value, shape: &'static str, key: &str) -> Result<String, EventError> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(malformed(shape, key, "is empty")),
        Some(other) => Err(malformed(
            shape,
            key,
            format!("expected a string, found {}", json_type(other)),
        )),
        None => Err(malformed(shape, key, "missing")),
    }
}

fn optional_str(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn optional_string_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn optional_time(
    v: &Value,
    shape: &'static str,
    key: &str,
) -> Result<Option<DateTime<Utc>>, EventError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(|raw| parse_time(shape, key, raw))
        .transpose()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
        };
        assert_eq!(
            base.transition_key(),
            "arn:aws:cloudwatch:eu-west-1:1:alarm:a@2026-11-20T10:00:00.000Z"
        );
    }
}
