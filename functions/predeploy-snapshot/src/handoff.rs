//! The hand-over to the traffic hook: a Lambda deployment's `PreTraffic` hook takes one
//! function, so a group that wants both the snapshot and the smoke checks before traffic points
//! `PreTraffic` at this function and sets `snapshot.then-traffic-hook`. Once the snapshot is
//! available, this function invokes the traffic hook asynchronously with the very event
//! CodeDeploy sent (`DeploymentId`, `LifecycleEventHookExecutionId`); the traffic hook runs the
//! group's checks and reports. One report, in order: snapshot, then checks.
//!
//! Never silent and never twice. A hand-over Lambda refuses, or that gets no answer in time,
//! reports `Failed` here at once (the checks cannot run, so the new version is unchecked). A
//! crash after Lambda took the hand-over repeats it on the retry: the traffic hook handles each
//! hook execution once (its own idempotency key), so it reports once. What Lambda gives up on
//! after its retries lands in the traffic hook's dead-letter queue, which is alarmed.

use safeship::event::LifecycleHook;

use crate::{Deps, Error};

/// Invokes the traffic hook asynchronously with `hook`, as CodeDeploy would have.
pub(crate) async fn hand_to_traffic_hook(
    deps: &Deps,
    hook: &LifecycleHook,
) -> Result<String, Error> {
    let function = deps.settings.traffic_hook_function.clone().ok_or_else(|| {
        // Checked at cold start (SnapshotSettings::check_against); kept as an error, not a panic.
        Error::HandOver {
            hook_execution: hook.lifecycle_event_hook_execution_id.clone(),
            function: "(unset)".into(),
            problem: "SAFESHIP_TRAFFIC_HOOK_FUNCTION is not set".into(),
        }
    })?;
    let payload = serde_json::json!({
        "DeploymentId": hook.deployment_id,
        "LifecycleEventHookExecutionId": hook.lifecycle_event_hook_execution_id,
    });
    invoke_async(deps, &function, &payload)
        .await
        .map_err(|problem| Error::HandOver {
            hook_execution: hook.lifecycle_event_hook_execution_id.clone(),
            function: function.clone(),
            problem,
        })?;
    tracing::info!(deployment = %hook.deployment_id, function = %function,
        "snapshot done: the hook goes to the traffic hook, which runs the checks and reports");
    Ok(function)
}

/// An asynchronous (`Event`) invocation of `function` with `payload`: the hand-over's and the
/// continuation's one way to pass work on. The error is Lambda's, in full.
pub(crate) async fn invoke_async(
    deps: &Deps,
    function: &str,
    payload: &serde_json::Value,
) -> Result<(), String> {
    deps.lambda
        .invoke()
        .function_name(function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            serde_json::to_vec(payload).expect("JSON serialises"),
        ))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(&e).to_string())
}
