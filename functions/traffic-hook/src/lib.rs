//! The traffic hook: CodeDeploy invokes it at `BeforeAllowTraffic` / `AfterAllowTraffic` and waits
//! for `PutLifecycleEventHookExecutionStatus`.
//!
//! Foundation stage: the smoke-check runner lands in its own issue. Until then the hook fails
//! closed — it reports `Failed` with the reason, at once — because a hook that stays silent blocks
//! the deployment for an hour, and one that says `Succeeded` unchecked lets a broken version in.

use aws_sdk_codedeploy::types::LifecycleEventStatus;
use lambda_runtime::LambdaEvent;
use safeship::config::Env;
use safeship::event::{EventError, Inbound, LifecycleHook};
use safeship::lambda::{accept, Common};
use serde_json::{json, Value};

pub const FUNCTION: &str = "traffic-hook";

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
    pub codedeploy: aws_sdk_codedeploy::Client,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let common = Common::load(env).await?;
        let codedeploy = aws_sdk_codedeploy::Client::new(&common.sdk);
        Ok(Deps { common, codedeploy })
    }
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let normalised = accept(FUNCTION, &event.payload, |e| {
        matches!(e, Inbound::LifecycleHook(_))
    })?;
    let Inbound::LifecycleHook(hook) = normalised.event else {
        unreachable!("accept keeps lifecycle hooks only")
    };
    run_hook(&deps.codedeploy, &hook).await
}

/// Reports the hook's status. Until the check runner exists every hook fails closed.
pub async fn run_hook(
    codedeploy: &aws_sdk_codedeploy::Client,
    hook: &LifecycleHook,
) -> Result<Value, Error> {
    let reason = "smoke checks are not built into this safeship version yet; failing closed";
    report(codedeploy, hook, LifecycleEventStatus::Failed).await?;
    tracing::warn!(deployment = %hook.deployment_id, reason, "hook reported Failed");
    Ok(json!({
        "deployment-id": hook.deployment_id,
        "status": "Failed",
        "reason": reason,
    }))
}

/// `PutLifecycleEventHookExecutionStatus`; throttling and 5xx are retried by the SDK's standard
/// retry (see `safeship::aws`).
pub async fn report(
    codedeploy: &aws_sdk_codedeploy::Client,
    hook: &LifecycleHook,
    status: LifecycleEventStatus,
) -> Result<(), Error> {
    codedeploy
        .put_lifecycle_event_hook_execution_status()
        .deployment_id(&hook.deployment_id)
        .lifecycle_event_hook_execution_id(&hook.lifecycle_event_hook_execution_id)
        .status(status)
        .send()
        .await
        .map_err(|e| {
            safeship::Error::aws(
                "codedeploy:PutLifecycleEventHookExecutionStatus",
                format!("deployment {}", hook.deployment_id),
                e,
            )
        })?;
    Ok(())
}
