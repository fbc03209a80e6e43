//! The CodeDeploy side of a rollback: reading a group's deployments, stopping, redeploying.

use aws_sdk_codedeploy::types::DeploymentStatus;
use aws_sdk_codedeploy::Client;
use chrono::{DateTime, Utc};

use crate::plan::{Succeeded, IN_FLIGHT};
use crate::Error;

fn aws(action: &'static str, resource: String, e: impl Into<aws_sdk_codedeploy::Error>) -> Error {
    let e: aws_sdk_codedeploy::Error = e.into();
    Error::Safeship(safeship::Error::aws(action, resource, e))
}

async fn list(
    client: &Client,
    application: &str,
    group: &str,
    statuses: &[&str],
) -> Result<Vec<String>, Error> {
    let mut request = client
        .list_deployments()
        .application_name(application)
        .deployment_group_name(group);
    for s in statuses {
        request = request.include_only_statuses(DeploymentStatus::from(*s));
    }
    let mut pages = request.into_paginator().send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            aws(
                "codedeploy:ListDeployments",
                format!("{application}/{group} ({})", statuses.join(",")),
                e,
            )
        })?;
        ids.extend(page.deployments.unwrap_or_default());
    }
    Ok(ids)
}

/// Deployments of the group still in flight.
pub async fn in_flight(
    client: &Client,
    application: &str,
    group: &str,
) -> Result<Vec<String>, Error> {
    list(client, application, group, &IN_FLIGHT).await
}

/// The group's succeeded deployments with their times (`BatchGetDeployments`, 25 at a time).
pub async fn succeeded(
    client: &Client,
    application: &str,
    group: &str,
) -> Result<Vec<Succeeded>, Error> {
    let ids = list(client, application, group, &["Succeeded"]).await?;
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(25) {
        let out = client
            .batch_get_deployments()
            .set_deployment_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| {
                aws(
                    "codedeploy:BatchGetDeployments",
                    format!("{application}/{group}"),
                    e,
                )
            })?;
        for d in out.deployments_info.unwrap_or_default() {
            if let Some(id) = d.deployment_id {
                found.push(Succeeded {
                    id,
                    create_time: d.create_time.and_then(time),
                    complete_time: d.complete_time.and_then(time),
                });
            }
        }
    }
    Ok(found)
}

fn time(t: aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// `StopDeployment` with automatic rollback. A deployment that already completed (stopped,
/// rolled back or finished meanwhile) is not an error.
pub async fn stop(client: &Client, deployment_id: &str) -> Result<String, Error> {
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
        Err(e) => Err(aws(
            "codedeploy:StopDeployment",
            format!("deployment {deployment_id}"),
            e,
        )),
    }
}

/// A new deployment of the revision `revision_of` deployed, reverting `reverted`.
pub async fn redeploy(
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
            aws(
                "codedeploy:GetDeployment",
                format!("deployment {revision_of}"),
                e,
            )
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
            "safeship: alarm {alarm_name} reverts {reverted} to the revision of {revision_of}"
        ))
        .send()
        .await
        .map_err(|e| {
            aws(
                "codedeploy:CreateDeployment",
                format!("{application}/{group}"),
                e,
            )
        })?;
    Ok(out.deployment_id.unwrap_or_default())
}
