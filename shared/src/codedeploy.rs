//! The CodeDeploy calls two guard rails make: a lifecycle hook's status report (the traffic hook,
//! the pre-deploy snapshot) and the deployment a hook belongs to.

use aws_sdk_codedeploy::types::{DeploymentInfo, LifecycleEventStatus};

use crate::error::{Error, Result};
use crate::event::LifecycleHook;

/// `GetDeployment`: the deployment's application, group, revision and platform.
pub async fn get_deployment(
    client: &aws_sdk_codedeploy::Client,
    deployment_id: &str,
) -> Result<DeploymentInfo> {
    let resource = || format!("deployment {deployment_id}");
    let out = client
        .get_deployment()
        .deployment_id(deployment_id)
        .send()
        .await
        .map_err(|e| Error::aws("codedeploy:GetDeployment", resource(), e))?;
    out.deployment_info.ok_or_else(|| {
        Error::unexpected(
            "codedeploy:GetDeployment",
            resource(),
            "the answer holds no deploymentInfo",
        )
    })
}

/// `PutLifecycleEventHookExecutionStatus`; throttling and 5xx are retried by the SDK's standard
/// retry (see [`crate::aws`]). A hook execution CodeDeploy already counts as completed (an
/// earlier delivery's status arrived) is not an error: that status stands.
pub async fn report_hook_status(
    client: &aws_sdk_codedeploy::Client,
    hook: &LifecycleHook,
    succeeded: bool,
) -> Result<()> {
    let status = if succeeded {
        LifecycleEventStatus::Succeeded
    } else {
        LifecycleEventStatus::Failed
    };
    let sent = client
        .put_lifecycle_event_hook_execution_status()
        .deployment_id(&hook.deployment_id)
        .lifecycle_event_hook_execution_id(&hook.lifecycle_event_hook_execution_id)
        .status(status)
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_lifecycle_event_already_completed_exception()) =>
        {
            tracing::warn!(deployment = %hook.deployment_id,
                "CodeDeploy already holds a status for this hook execution; not reporting again");
            Ok(())
        }
        Err(e) => Err(Error::aws(
            "codedeploy:PutLifecycleEventHookExecutionStatus",
            format!("deployment {}", hook.deployment_id),
            e,
        )),
    }
}
