//! EventBridge envelopes: alarm state changes, CodeDeploy deployment state changes, schedules and
//! safeship's own guard events.

use serde_json::Value;

use super::alarm::alarm_from_eventbridge;
use super::fields::{malformed, optional_str, optional_string_list, optional_time, string_at};
use super::{
    Delivery, DeploymentStateChange, EventError, Inbound, Normalised, Scheduled, SHAPE_EB,
    SHAPE_EB_DEPLOY, SHAPE_EB_GUARD,
};
use crate::guard::{GuardEvent, GUARD_DETAIL_TYPE, GUARD_SOURCE};

pub(super) fn normalise_eventbridge(payload: &Value) -> Result<Normalised, EventError> {
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
