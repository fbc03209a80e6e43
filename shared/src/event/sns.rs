//! SNS deliveries: a CloudWatch alarm notification, or an EventBridge event a rule sent to a topic.

use serde_json::Value;

use super::alarm::parse_alarm_state;
use super::eventbridge::normalise_eventbridge;
use super::fields::{
    malformed, optional_str, parse_time, quoted, region_of_arn, region_of_long_name, string_at,
};
use super::{
    AlarmKind, AlarmStateChange, Delivery, EventError, Inbound, Normalised, SHAPE_SNS,
    SHAPE_SNS_ALARM,
};

pub(super) fn normalise_sns(payload: &Value) -> Result<Normalised, EventError> {
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
            "Records[0].EventSource is {}; only SNS records (aws:sns) are accepted",
            quoted(source)
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

fn alarm_from_sns(message: &Value) -> Result<AlarmStateChange, EventError> {
    let s = SHAPE_SNS_ALARM;
    let alarm_name = string_at(message, s, "AlarmName")?;
    let account = optional_str(message, "AWSAccountId");
    // Without `AlarmArn` the ARN is built from the account, the region and the name, so the
    // transition has the key it has on EventBridge (whose `resources` always hold the ARN).
    let alarm_arn = optional_str(message, "AlarmArn").or_else(|| {
        let (region, partition) = region_of_long_name(&optional_str(message, "Region")?)?;
        Some(format!(
            "arn:{partition}:cloudwatch:{region}:{}:alarm:{alarm_name}",
            account.as_deref()?
        ))
    });
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
        Some(raw) => Some(parse_alarm_state(s, "OldStateValue", &raw)?),
        None => None,
    };
    Ok(AlarmStateChange {
        alarm_name,
        state: parse_alarm_state(s, "NewStateValue", &string_at(message, s, "NewStateValue")?)?,
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
        account,
        alarm_arn,
        // CloudWatch does not send a muted or suppressed transition's actions at all.
        muted: None,
        suppressed: None,
    })
}
