//! Amazon ECS invoking a Lambda lifecycle hook of a service deployment (deployment controller
//! `ECS`, strategy `BLUE_GREEN`, `CANARY` or `LINEAR`).
//!
//! The payload is an envelope (Amazon ECS Developer Guide, "Lambda hooks for Amazon ECS service
//! deployments"): `executionId`, `lifecycleStage`, `resourceArn` (the service deployment),
//! `executionDetails` (`serviceArn`, `targetServiceRevisionArn`, `testTrafficWeights`,
//! `productionTrafficWeights`) and, when the service definition or the previous `IN_PROGRESS`
//! answer gave one, `hookDetails`. The function answers with its return value; there is no
//! report call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fields::{json_type, malformed, quoted, string_at};
use super::EventError;

pub(super) const SHAPE_ECS_HOOK: &str = "ECS lifecycle hook event";

/// The stages of an ECS service deployment at which a Lambda hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EcsStage {
    ReconcileService,
    PreScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    PreProductionTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
}

impl EcsStage {
    pub const ALL: [EcsStage; 8] = [
        EcsStage::ReconcileService,
        EcsStage::PreScaleUp,
        EcsStage::PostScaleUp,
        EcsStage::TestTrafficShift,
        EcsStage::PostTestTrafficShift,
        EcsStage::PreProductionTrafficShift,
        EcsStage::ProductionTrafficShift,
        EcsStage::PostProductionTrafficShift,
    ];

    /// The name ECS uses (`POST_TEST_TRAFFIC_SHIFT`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EcsStage::ReconcileService => "RECONCILE_SERVICE",
            EcsStage::PreScaleUp => "PRE_SCALE_UP",
            EcsStage::PostScaleUp => "POST_SCALE_UP",
            EcsStage::TestTrafficShift => "TEST_TRAFFIC_SHIFT",
            EcsStage::PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
            EcsStage::PreProductionTrafficShift => "PRE_PRODUCTION_TRAFFIC_SHIFT",
            EcsStage::ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
            EcsStage::PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
        }
    }

    fn parse(raw: &str) -> Option<EcsStage> {
        EcsStage::ALL.into_iter().find(|s| s.name() == raw)
    }

    /// Which listener carries the traffic a check at this stage should see: the test listener
    /// once test traffic reaches the new revision, production from the production shift on;
    /// none before the new revision takes any traffic.
    #[must_use]
    pub fn listener(self) -> Option<Listener> {
        match self {
            EcsStage::ReconcileService | EcsStage::PreScaleUp | EcsStage::PostScaleUp => None,
            EcsStage::TestTrafficShift | EcsStage::PostTestTrafficShift => Some(Listener::Test),
            EcsStage::PreProductionTrafficShift
            | EcsStage::ProductionTrafficShift
            | EcsStage::PostProductionTrafficShift => Some(Listener::Production),
        }
    }
}

/// The load balancer listener a stage's traffic goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Listener {
    Test,
    Production,
}

/// One invocation of a hook by ECS.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EcsLifecycleHook {
    /// `executionId`: this hook execution.
    pub execution_id: String,
    pub stage: EcsStage,
    /// `resourceArn`: the service deployment
    /// (`arn:aws:ecs:<region>:<account>:service-deployment/<cluster>/<service>/<id>`).
    pub service_deployment_arn: String,
    pub service_arn: String,
    /// The cluster and the service, from `serviceArn` (`…:service/<cluster>/<service>`).
    pub cluster: String,
    pub service: String,
    pub region: String,
    pub account: String,
    /// `targetServiceRevisionArn`: the new (green) revision.
    pub target_revision_arn: String,
    /// Revision ARN → percentage of test / production traffic.
    pub test_traffic_weights: BTreeMap<String, f64>,
    pub production_traffic_weights: BTreeMap<String, f64>,
    /// `hookDetails`: what the service definition gives, merged with what the previous
    /// `IN_PROGRESS` answer of this hook returned.
    pub hook_details: Map<String, Value>,
}

impl EcsLifecycleHook {
    /// ECS re-invokes the traffic-shift hooks when it rolls a deployment back, with the traffic
    /// going back to the old revision: the target has 0 % and another revision 100 % (Amazon ECS
    /// Developer Guide, "Lifecycle hooks during rollback"). Only at the shift stages: before a
    /// production shift the target has 0 % too.
    #[must_use]
    pub fn is_rollback(&self) -> bool {
        let weights = match self.stage {
            EcsStage::ProductionTrafficShift => &self.production_traffic_weights,
            EcsStage::TestTrafficShift => &self.test_traffic_weights,
            _ => return false,
        };
        let target = weights.get(&self.target_revision_arn).copied();
        target == Some(0.0)
            && weights
                .iter()
                .any(|(arn, w)| *arn != self.target_revision_arn && *w >= 100.0)
    }

    /// Why a rollback's own invocation passes (`SUCCEEDED`, never held), when it is one.
    #[must_use]
    pub fn passed_as_rollback(&self) -> Option<String> {
        self.is_rollback().then(|| {
            format!(
                "{}: traffic is going back to the old revision (a rollback), which is never held",
                self.stage.name()
            )
        })
    }

    /// The service's key in the policy's `ecs-services`: `<cluster>/<service>`.
    #[must_use]
    pub fn service_key(&self) -> String {
        format!("{}/{}", self.cluster, self.service)
    }
}

/// What ECS reads back: `hookStatus`, and `reason` (ECS's troubleshooting guide shows it beside
/// the status). `callBackDelay` and `hookDetails` go with `IN_PROGRESS` only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsAnswer {
    #[serde(rename = "hookStatus")]
    pub hook_status: EcsHookStatus,
    pub reason: String,
    /// Seconds until ECS invokes the hook again (with `IN_PROGRESS`).
    #[serde(
        rename = "callBackDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub call_back_delay: Option<u32>,
    /// What ECS passes back on the next invocation (with `IN_PROGRESS`).
    #[serde(rename = "hookDetails", default, skip_serializing_if = "Map::is_empty")]
    pub hook_details: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EcsHookStatus {
    Succeeded,
    Failed,
    InProgress,
}

impl EcsAnswer {
    #[must_use]
    pub fn succeeded(reason: impl Into<String>) -> EcsAnswer {
        EcsAnswer::finally(EcsHookStatus::Succeeded, reason.into())
    }

    #[must_use]
    pub fn failed(reason: impl Into<String>) -> EcsAnswer {
        EcsAnswer::finally(EcsHookStatus::Failed, reason.into())
    }

    /// Not done yet: ECS invokes the hook again after `call_back_delay` seconds, passing
    /// `hook_details` back.
    #[must_use]
    pub fn in_progress(
        reason: impl Into<String>,
        call_back_delay: u32,
        hook_details: Map<String, Value>,
    ) -> EcsAnswer {
        EcsAnswer {
            hook_status: EcsHookStatus::InProgress,
            reason: reason.into(),
            call_back_delay: Some(call_back_delay),
            hook_details,
        }
    }

    fn finally(hook_status: EcsHookStatus, reason: String) -> EcsAnswer {
        EcsAnswer {
            hook_status,
            reason,
            call_back_delay: None,
            hook_details: Map::new(),
        }
    }
}

/// The ECS hook a payload carries, or why it cannot be read: the reason a `FAILED` answer gives.
pub fn ecs_hook_of(payload: &Value) -> Result<Box<EcsLifecycleHook>, String> {
    match super::normalise(payload).map(|n| n.event) {
        Ok(super::Inbound::EcsLifecycleHook(hook)) => Ok(hook),
        Ok(other) => Err(format!(
            "expected an ECS lifecycle hook event, got a {} event",
            other.kind()
        )),
        Err(e) => Err(format!("the hook's payload cannot be read: {e}")),
    }
}

/// Whether a payload is (meant to be) an ECS hook invocation: its envelope's own keys. Such a
/// payload is answered, never an error: an error also rolls the deployment back, without a reason.
#[must_use]
pub fn is_ecs_hook(payload: &Value) -> bool {
    payload.as_object().is_some_and(looks_like)
}

pub(super) fn looks_like(obj: &Map<String, Value>) -> bool {
    obj.contains_key("executionDetails") || obj.contains_key("lifecycleStage")
}

pub(super) fn parse(payload: &Value) -> Result<EcsLifecycleHook, EventError> {
    let s = SHAPE_ECS_HOOK;
    let execution_id = string_at(payload, s, "executionId")?;
    let raw_stage = string_at(payload, s, "lifecycleStage")?;
    let stage = EcsStage::parse(&raw_stage).ok_or_else(|| {
        malformed(
            s,
            "lifecycleStage",
            format!(
                "{} is not a stage ECS invokes hooks at ({})",
                quoted(&raw_stage),
                EcsStage::ALL.map(EcsStage::name).join(", ")
            ),
        )
    })?;
    let service_deployment_arn = string_at(payload, s, "resourceArn")?;
    let details = payload
        .get("executionDetails")
        .ok_or_else(|| malformed(s, "executionDetails", "missing"))?;
    if !details.is_object() {
        return Err(malformed(
            s,
            "executionDetails",
            format!("expected an object, found {}", json_type(details)),
        ));
    }
    let field = |name: &str| format!("executionDetails.{name}");
    let service_arn =
        string_at(details, s, "serviceArn").map_err(|e| rename(e, &field("serviceArn")))?;
    let (region, account, cluster, service) = service_of(&service_arn)
        .ok_or_else(|| {
            malformed(
                s,
                field("serviceArn"),
                format!(
                    "{} is not a service ARN (arn:aws:ecs:<region>:<account>:service/<cluster>/<service>)",
                    quoted(&service_arn)
                ),
            )
        })?;
    let target_revision_arn = string_at(details, s, "targetServiceRevisionArn")
        .map_err(|e| rename(e, &field("targetServiceRevisionArn")))?;
    let test_traffic_weights =
        weights(details, &field("testTrafficWeights"), "testTrafficWeights")?;
    let production_traffic_weights = weights(
        details,
        &field("productionTrafficWeights"),
        "productionTrafficWeights",
    )?;
    let hook_details = match payload.get("hookDetails") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(malformed(
                s,
                "hookDetails",
                format!("expected an object, found {}", json_type(other)),
            ))
        }
    };
    Ok(EcsLifecycleHook {
        execution_id,
        stage,
        service_deployment_arn,
        service_arn,
        cluster,
        service,
        region,
        account,
        target_revision_arn,
        test_traffic_weights,
        production_traffic_weights,
        hook_details,
    })
}

/// An error about `executionDetails`' field, named by its full path.
fn rename(e: EventError, path: &str) -> EventError {
    match e {
        EventError::Malformed { shape, problem, .. } => malformed(shape, path, problem),
        other => other,
    }
}

/// A weights map: revision ARN → a percentage 0..=100. Absent is empty (ECS sends `{}` at the
/// stages without traffic of that kind).
fn weights(details: &Value, path: &str, key: &str) -> Result<BTreeMap<String, f64>, EventError> {
    let s = SHAPE_ECS_HOOK;
    match details.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(arn, w)| match w.as_f64() {
                Some(w) if (0.0..=100.0).contains(&w) => Ok((arn.clone(), w)),
                Some(w) => Err(malformed(
                    s,
                    format!("{path}.{}", quoted(arn)),
                    format!("{w} is not a percentage"),
                )),
                None => Err(malformed(
                    s,
                    format!("{path}.{}", quoted(arn)),
                    format!("expected a number, found {}", json_type(w)),
                )),
            })
            .collect(),
        Some(other) => Err(malformed(
            s,
            path,
            format!("expected an object, found {}", json_type(other)),
        )),
    }
}

/// `arn:<partition>:ecs:<region>:<account>:service/<cluster>/<service>` → its parts.
fn service_of(arn: &str) -> Option<(String, String, String, String)> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, ecs, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if ecs != "ecs" || region.is_empty() || account.is_empty() {
        return None;
    }
    let mut path = resource.split('/');
    let (kind, cluster, service) = (path.next()?, path.next()?, path.next()?);
    if kind != "service" || cluster.is_empty() || service.is_empty() || path.next().is_some() {
        return None;
    }
    Some((
        region.to_owned(),
        account.to_owned(),
        cluster.to_owned(),
        service.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(stage: &str, target: f64) -> Value {
        let green = "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/9313423515462893900";
        let blue = "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/1920498462936580504";
        json!({
            "executionId": "f4fcae0f-9bec-41c6-ba87-0eaa0cef8af5",
            "lifecycleStage": stage,
            "resourceArn": "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/EZe5RNVLH6PPzHXINuP28",
            "executionDetails": {
                "serviceArn": "arn:aws:ecs:eu-west-1:123456789012:service/checkout/checkout-api",
                "targetServiceRevisionArn": green,
                "testTrafficWeights": {},
                "productionTrafficWeights": {green: target, blue: 100.0 - target}
            }
        })
    }

    #[test]
    fn the_envelope_is_read_with_its_service_and_weights() {
        let hook = parse(&sample("PRODUCTION_TRAFFIC_SHIFT", 100.0)).unwrap();
        assert_eq!(hook.stage, EcsStage::ProductionTrafficShift);
        assert_eq!(
            (hook.cluster.as_str(), hook.service.as_str()),
            ("checkout", "checkout-api")
        );
        assert_eq!(hook.service_key(), "checkout/checkout-api");
        assert_eq!(
            (hook.region.as_str(), hook.account.as_str()),
            ("eu-west-1", "123456789012")
        );
        assert!(!hook.is_rollback());
        assert!(hook.hook_details.is_empty());
        assert_eq!(hook.stage.listener(), Some(Listener::Production));
    }

    #[test]
    fn traffic_going_back_to_the_old_revision_at_a_shift_is_a_rollback() {
        assert!(parse(&sample("PRODUCTION_TRAFFIC_SHIFT", 0.0))
            .unwrap()
            .is_rollback());
        // Before the production shift the target has no traffic yet: not a rollback.
        assert!(!parse(&sample("PRE_PRODUCTION_TRAFFIC_SHIFT", 0.0))
            .unwrap()
            .is_rollback());
        // A canary step is a shift, not a rollback.
        assert!(!parse(&sample("PRODUCTION_TRAFFIC_SHIFT", 5.0))
            .unwrap()
            .is_rollback());
    }

    #[test]
    fn each_wrong_field_is_named() {
        let cases: Vec<(Value, &str)> = vec![
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v["lifecycleStage"] = json!("ROLLBACK"); v }, "lifecycleStage: \"ROLLBACK\" is not a stage"),
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v.as_object_mut().unwrap().remove("executionId"); v }, "executionId: missing"),
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v["executionDetails"]["serviceArn"] = json!("arn:aws:ecs:eu-west-1:1:cluster/x"); v }, "executionDetails.serviceArn: \"arn:aws:ecs:eu-west-1:1:cluster/x\" is not a service ARN"),
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v["executionDetails"]["productionTrafficWeights"] = json!([1]); v }, "executionDetails.productionTrafficWeights: expected an object, found an array"),
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v["executionDetails"]["testTrafficWeights"] = json!({"r": 150}); v }, "150 is not a percentage"),
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v["hookDetails"] = json!("x"); v }, "hookDetails: expected an object, found a string"),
            ({ let mut v = sample("PRE_SCALE_UP", 0.0); v["executionDetails"] = json!(1); v }, "executionDetails: expected an object, found a number"),
        ];
        for (payload, expected) in cases {
            let err = parse(&payload).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}

pub(super) const SHAPE_EB_ECS_DEPLOY: &str = "EventBridge ECS Deployment State Change";

/// How an ECS service deployment stands, as `ECS Deployment State Change` says (`eventName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EcsDeploymentState {
    /// `SERVICE_DEPLOYMENT_IN_PROGRESS`: a deployment, or a rollback (its `reason` says which).
    InProgress,
    /// `SERVICE_DEPLOYMENT_COMPLETED`: the service reached a steady state.
    Completed,
    /// `SERVICE_DEPLOYMENT_FAILED`.
    Failed,
}

impl EcsDeploymentState {
    #[must_use]
    pub fn event_name(self) -> &'static str {
        match self {
            EcsDeploymentState::InProgress => "SERVICE_DEPLOYMENT_IN_PROGRESS",
            EcsDeploymentState::Completed => "SERVICE_DEPLOYMENT_COMPLETED",
            EcsDeploymentState::Failed => "SERVICE_DEPLOYMENT_FAILED",
        }
    }
}

/// EventBridge `ECS Deployment State Change` (Amazon ECS Developer Guide, "Amazon ECS service
/// deployment state change events"): the service is the event's resource, the deployment its
/// `deploymentId` (`ecs-svc/…`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EcsDeploymentStateChange {
    pub cluster: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub deployment_id: String,
    pub state: EcsDeploymentState,
    /// `detail.reason`, e.g. `ECS deployment circuit breaker: rolling back to deploymentId …`.
    pub reason: Option<String>,
    /// A rollback in progress: ECS says so only in the reason's words.
    pub rolling_back: bool,
}

pub(super) fn deployment_from_eventbridge(
    payload: &Value,
) -> Result<EcsDeploymentStateChange, EventError> {
    let s = SHAPE_EB_ECS_DEPLOY;
    let detail = payload
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| malformed(s, "detail", "missing or not an object"))?;
    let raw = string_at(detail, s, "eventName").map_err(|e| rename(e, "detail.eventName"))?;
    let state = match raw.as_str() {
        "SERVICE_DEPLOYMENT_IN_PROGRESS" => EcsDeploymentState::InProgress,
        "SERVICE_DEPLOYMENT_COMPLETED" => EcsDeploymentState::Completed,
        "SERVICE_DEPLOYMENT_FAILED" => EcsDeploymentState::Failed,
        _ => {
            return Err(malformed(
                s,
                "detail.eventName",
                format!(
                    "expected SERVICE_DEPLOYMENT_IN_PROGRESS, _COMPLETED or _FAILED, found {}",
                    quoted(&raw)
                ),
            ))
        }
    };
    let deployment_id =
        string_at(detail, s, "deploymentId").map_err(|e| rename(e, "detail.deploymentId"))?;
    let service_arn = payload
        .get("resources")
        .and_then(Value::as_array)
        .and_then(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .find(|a| service_of(a).is_some())
        })
        .ok_or_else(|| {
            malformed(
                s,
                "resources",
                "names no service ARN (arn:aws:ecs:<region>:<account>:service/<cluster>/<service>)",
            )
        })?
        .to_owned();
    let (region, account, cluster, service) = service_of(&service_arn).expect("found above");
    let reason = detail
        .get("reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .map(super::fields::capped_text);
    let rolling_back = reason
        .as_deref()
        .is_some_and(|r| r.to_lowercase().contains("rolling back"));
    Ok(EcsDeploymentStateChange {
        cluster,
        service,
        region,
        account,
        deployment_id,
        state,
        reason,
        rolling_back,
    })
}
