//! The CodeDeploy side of a rollback: reading a group's deployments, stopping, redeploying.

use aws_sdk_codedeploy::types::{AppSpecContent, RevisionLocation, RevisionLocationType};
use aws_sdk_codedeploy::Client;
use chrono::{DateTime, Utc};
use safeship::event::AlarmStateChange;

use crate::plan::{InFlight, Succeeded, IN_FLIGHT};
use crate::revert::{revert_revision, RevertRevision};
use crate::Error;
use safeship::revert::revert_description;

/// Deployments of the group still in flight, with what says whether each is itself a rollback.
pub(crate) async fn in_flight(
    client: &Client,
    application: &str,
    group: &str,
) -> Result<Vec<InFlight>, Error> {
    let found =
        safeship::aws::codedeploy::deployments(client, application, group, &IN_FLIGHT, None)
            .await?;
    Ok(found
        .into_iter()
        .map(|d| InFlight {
            codedeploy_rollback: d.is_codedeploy_rollback().then(|| d.rolls_back.clone()),
            id: d.id,
            description: d.description,
        })
        .collect())
}

/// How far before the alarm the last success may have been created and still have finished
/// inside a bake window: the window plus CodeDeploy's longest deployment (blue/green waits of
/// up to two days for the replacement to be ready and two before the original ends, and an
/// hour per hook).
pub(crate) fn recent_enough(bake_window: chrono::Duration) -> chrono::Duration {
    bake_window + chrono::Duration::days(7)
}

/// The group's last two succeeded deployments with their times, looking back from the alarm:
/// the one a bake-window revert would undo, and the one it would bring back. A long-lived
/// group's whole history is not read (`ListDeployments` by creation time, window by window).
pub(crate) async fn succeeded(
    client: &Client,
    application: &str,
    group: &str,
    alarm_at: DateTime<Utc>,
    bake_window: chrono::Duration,
) -> Result<Vec<Succeeded>, Error> {
    let found = safeship::aws::codedeploy::latest_deployments(
        client,
        application,
        group,
        &["Succeeded"],
        2,
        alarm_at,
        recent_enough(bake_window),
    )
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

/// What a stop says of a deployment that had completed: the rollback then looks at how it ended.
pub(crate) const ALREADY_COMPLETED: &str = "already completed; nothing to stop";

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
            Ok(ALREADY_COMPLETED.into())
        }
        Err(e) => Err(Error::from(safeship::Error::aws(
            "codedeploy:StopDeployment",
            format!("deployment {deployment_id}"),
            e,
        ))),
    }
}

/// A deployment the revert created in an earlier, interrupted attempt (same description, created
/// since the alarm's transition): resuming, it is the revert, and none is created again.
async fn earlier_revert(
    client: &Client,
    application: &str,
    group: &str,
    description: &str,
    since: DateTime<Utc>,
) -> Result<Option<String>, Error> {
    let found = safeship::aws::codedeploy::deployments(
        client,
        application,
        group,
        &[],
        Some(since - chrono::Duration::minutes(1)),
    )
    .await?;
    Ok(found
        .into_iter()
        .find(|d| d.description.as_deref() == Some(description))
        .map(|d| d.id))
}

/// The revert of `reverted` (a deployment inside the bake window) to what was live before it, the
/// state of `revision_of` (see [`crate::revert`] for what that is per platform). Safe to resume:
/// a revert an interrupted attempt already created is found, not created twice.
pub(crate) async fn redeploy(
    client: &Client,
    application: &str,
    group: &str,
    reverted: &str,
    revision_of: &str,
    alarm: &AlarmStateChange,
) -> Result<String, Error> {
    let description = revert_description(&alarm.alarm_name, reverted, revision_of);
    if let Some(id) = earlier_revert(
        client,
        application,
        group,
        &description,
        alarm.state_changed_at,
    )
    .await?
    {
        tracing::info!(deployment = %id, "the revert was created by an earlier attempt");
        return Ok(id);
    }
    let reverted_info = safeship::aws::codedeploy::get_deployment(client, reverted).await?;
    let reverted_revision = reverted_info.revision.as_ref();
    let inline = reverted_revision.and_then(|r| {
        r.app_spec_content()
            .and_then(|c| c.content())
            .or_else(|| r.string().and_then(|c| c.content()))
    });
    let platform = reverted_info.compute_platform.as_ref().map(|p| p.as_str());
    let choice = revert_revision(platform, inline).map_err(|problem| {
        Error::Safeship(safeship::Error::unexpected(
            "codedeploy:GetDeployment",
            format!("deployment {reverted}"),
            problem,
        ))
    })?;
    let revision = match choice {
        RevertRevision::SwappedLambdaAppSpec(content) => RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().content(content).build())
            .build(),
        RevertRevision::Earlier => safeship::aws::codedeploy::get_deployment(client, revision_of)
            .await?
            .revision
            .ok_or_else(|| {
                Error::Safeship(safeship::Error::unexpected(
                    "codedeploy:GetDeployment",
                    format!("deployment {revision_of}"),
                    "names no revision to redeploy",
                ))
            })?,
    };
    let out = client
        .create_deployment()
        .application_name(application)
        .deployment_group_name(group)
        .revision(revision)
        .description(description)
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
