//! EventBridge envelopes: alarm state changes, CodeDeploy deployment state changes, schedules and
//! safeship's own guard events.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::Deserialize;
use serde_json::Value;

use super::alarm::alarm_from_eventbridge;
use super::fields::{malformed, optional_str, quoted, string_at};
use super::{
    Delivery, DeploymentStateChange, EventError, Inbound, Normalised, Scheduled, SHAPE_EB,
    SHAPE_EB_DEPLOY, SHAPE_EB_GUARD,
};
use crate::guard::{GuardEvent, GUARD_DETAIL_TYPE, GUARD_SOURCE};

/// The envelope is read with `aws_lambda_events`' `EventBridgeEvent` (it reads every sample in
/// `events/`); the fields every handled event needs are checked first, so a missing one is named.
pub(super) fn normalise_eventbridge(payload: &Value) -> Result<Normalised, EventError> {
    let source = string_at(payload, SHAPE_EB, "source")?;
    let detail_type = string_at(payload, SHAPE_EB, "detail-type")?;
    let id = string_at(payload, SHAPE_EB, "id")?;
    if payload.get("detail").is_none() {
        return Err(malformed(SHAPE_EB, "detail", "missing"));
    }
    let envelope = EventBridgeEvent::<Value>::deserialize(payload)
        .map_err(|e| malformed(SHAPE_EB, "envelope", e.to_string()))?;
    let event = match (source.as_str(), detail_type.as_str()) {
        ("aws.cloudwatch", "CloudWatch Alarm State Change") => {
            Inbound::AlarmStateChange(alarm_from_eventbridge(payload)?)
        }
        ("aws.codedeploy", "CodeDeploy Deployment State-change Notification") => {
            Inbound::DeploymentStateChange(deployment_from_eventbridge(&envelope)?)
        }
        ("aws.ecs", "ECS Deployment State Change") => {
            Inbound::EcsDeploymentStateChange(super::ecs::deployment_from_eventbridge(payload)?)
        }
        ("aws.events", "Scheduled Event") => Inbound::Scheduled(Scheduled {
            rules: envelope.resources.unwrap_or_default(),
            time: envelope.time,
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
                "EventBridge event with source {} and detail-type {} is not one safeship handles",
                quoted(&source),
                quoted(&detail_type)
            )))
        }
    };
    Ok(Normalised {
        delivery: Delivery::EventBridge { id },
        event,
    })
}

fn deployment_from_eventbridge(
    envelope: &EventBridgeEvent<Value>,
) -> Result<DeploymentStateChange, EventError> {
    let s = SHAPE_EB_DEPLOY;
    let detail = Some(&envelope.detail)
        .filter(|d| !d.is_null())
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
            format!(
                "expected START, SUCCESS, FAILURE, STOP or READY, found {}",
                quoted(&raw_state)
            ),
        )
    })?;
    Ok(DeploymentStateChange {
        application: field("application")?,
        deployment_group: field("deploymentGroup")?,
        deployment_id: field("deploymentId")?,
        state,
        region: optional_str(detail, "region").or_else(|| envelope.region.clone()),
        account: envelope.account.clone(),
        time: envelope.time,
    })
}
