//! The CodeDeploy side of a rollback: reading a group's deployments, stopping, redeploying.

use aws_sdk_codedeploy::Client;

use crate::plan::{Succeeded, IN_FLIGHT, REVERT_DESCRIPTION_PREFIX};
use crate::Error;

/// Deployments of the group still in flight.
pub(crate) async fn in_flight(
    client: &Client,
    application: &str,
    group: &str,
) -> Result<Vec<String>, Error> {
    Ok(
        safeship::aws::codedeploy::list_deployment_ids(
            client,
            application,
            group,
            &IN_FLIGHT,
            None,
        )
        .await?,
    )
}

/// The group's succeeded deployments with their times.
pub(crate) async fn succeeded(
    client: &Client,
    application: &str,
    group: &str,
) -> Result<Vec<Succeeded>, Error> {
    let found =
        safeship::aws::codedeploy::deployments(client, application, group, &["Succeeded"], None)
            .await?;
    Ok(found
        .into_iter()
        .map(|d| Succeeded {
            id: d.id,
            create_time: d.create_time,
            complete_time: d.complete_time,
            description: d.description,
        })
        .collect())
}

/// `StopDeployment` with automatic rollback. A deployment that already completed (stopped,
/// rolled back or finished meanwhile) is not an error.
pub(crate) async fn stop(client: &Client, deployment_id: &str) -> Result<String, Error> {
    match client
        .stop_deployment()
        .deployment_id(deployment_id)
        .auto_rollback_enabled(true)
        .send()
        .await
    {
        Ok(out) => Ok(format!(
            "stop requested with rollback: {}{}",
            out.status
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            out.status_message
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_deployment_already_completed_exception()) =>
        {
            Ok("already completed; nothing to stop".into())
        }
        Err(e) => Err(Error::from(safeship::Error::aws(
            "codedeploy:StopDeployment",
            format!("deployment {deployment_id}"),
            e,
        ))),
    }
}

/// A new deployment of the revision `revision_of` deployed, reverting `reverted`.
pub(crate) async fn redeploy(
    client: &Client,
    application: &str,
    group: &str,
    reverted: &str,
    revision_of: &str,
    alarm_name: &str,
) -> Result<String, Error> {
    let earlier = client
        .get_deployment()
        .deployment_id(revision_of)
        .send()
        .await
        .map_err(|e| {
            Error::from(safeship::Error::aws(
                "codedeploy:GetDeployment",
                format!("deployment {revision_of}"),
                e,
            ))
        })?;
    let revision = earlier
        .deployment_info
        .and_then(|d| d.revision)
        .ok_or_else(|| {
            Error::Safeship(safeship::Error::unexpected(
                "codedeploy:GetDeployment",
                format!("deployment {revision_of}"),
                "names no revision to redeploy",
            ))
        })?;
    let out = client
        .create_deployment()
        .application_name(application)
        .deployment_group_name(group)
        .revision(revision)
        .description(format!(
            "{REVERT_DESCRIPTION_PREFIX}{alarm_name} reverts {reverted} to the revision of {revision_of}"
        ))
        .send()
        .await
        .map_err(|e| {
            Error::from(safeship::Error::aws(
                "codedeploy:CreateDeployment",
                format!("{application}/{group}"),
                e,
            ))
        })?;
    Ok(out.deployment_id.unwrap_or_default())
}
