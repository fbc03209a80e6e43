//! CloudWatch alarm state changes in the camelCase shape EventBridge's `detail` and a Lambda
//! alarm action's `alarmData` share.

use serde_json::Value;

use super::fields::{malformed, optional_str, parse_time, quoted, region_of_arn, string_at};
use super::{
    AlarmKind, AlarmState, AlarmStateChange, EventError, Mute, Suppression, SHAPE_ALARM_ACTION,
    SHAPE_EB_ALARM,
};

/// A state as CloudWatch names it, or an error naming the field.
pub(super) fn parse_alarm_state(
    shape: &'static str,
    field: &str,
    raw: &str,
) -> Result<AlarmState, EventError> {
    AlarmState::from_name(raw).ok_or_else(|| {
        malformed(
            shape,
            field,
            format!(
                "expected OK, ALARM or INSUFFICIENT_DATA, found {}",
                quoted(raw)
            ),
        )
    })
}

pub(super) fn alarm_from_eventbridge(payload: &Value) -> Result<AlarmStateChange, EventError> {
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

pub(super) fn alarm_from_lambda_action(payload: &Value) -> Result<AlarmStateChange, EventError> {
    let s = SHAPE_ALARM_ACTION;
    let source = string_at(payload, s, "source")?;
    if source != "aws.cloudwatch" {
        return Err(malformed(
            s,
            "source",
            format!("expected aws.cloudwatch, found {}", quoted(&source)),
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
        Some(raw) => Some(parse_alarm_state(s, &field("previousState.value"), raw)?),
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
    // An alarm mute rule: `muteDetail.mutedByArn` names it when it muted this transition.
    let muted = data.get("muteDetail").and_then(|m| {
        Some(Mute {
            rule_arn: optional_str(m, "mutedByArn")?,
            window_start: optional_str(m, "muteWindowStart"),
            window_end: optional_str(m, "muteWindowEnd"),
        })
    });
    // A composite alarm's actions suppressor: on the new `state` when it held this one back.
    let suppressed = optional_str(state, "actionsSuppressedBy").map(|by| Suppression {
        reason: optional_str(state, "actionsSuppressedReason").unwrap_or_else(|| by.clone()),
        suppressor: configuration.and_then(|c| optional_str(c, "actionsSuppressor")),
        by,
    });
    Ok(AlarmStateChange {
        alarm_name,
        state: parse_alarm_state(s, &field("state.value"), value)?,
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
        muted,
        suppressed,
    })
}
