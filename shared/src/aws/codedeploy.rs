//! The CodeDeploy calls several guard rails make: a lifecycle hook's status report (the traffic
//! hook, the pre-deploy snapshot), the deployment a hook belongs to, and a group's deployments
//! (alarm-to-rollback, the integrity check).

use std::time::Duration;

use aws_sdk_codedeploy::types::{DeploymentInfo, DeploymentStatus, LifecycleEventStatus};
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

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

/// What became of a hook status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// CodeDeploy took this status now.
    Now,
    /// CodeDeploy already held a status for this hook execution (an earlier attempt's report
    /// arrived, `LifecycleEventAlreadyCompletedException`): that status stands, provably reported
    /// before; nothing was reported again.
    Before,
}

/// `PutLifecycleEventHookExecutionStatus`, with `budget` the whole time the report may take
/// (a hook's report has only its margin): every attempt (the SDK's standard retry on throttling
/// and 5xx) and its timeout fit inside it (operation timeout `budget`, attempt
/// timeout a third of it), and the whole call is cut off at `budget` besides. A report out of
/// time is an error naming the operation and the deployment. A hook execution CodeDeploy already
/// counts as completed (an earlier delivery's status arrived) is not an error: that status
/// stands ([`Reported::Before`]).
pub async fn report_hook_status_within(
    client: &aws_sdk_codedeploy::Client,
    deployment_id: &str,
    hook_execution_id: &str,
    succeeded: bool,
    budget: Duration,
) -> Result<Reported> {
    const ACTION: &str = "codedeploy:PutLifecycleEventHookExecutionStatus";
    let resource = || format!("deployment {deployment_id} (hook execution {hook_execution_id})");
    let status = if succeeded {
        LifecycleEventStatus::Succeeded
    } else {
        LifecycleEventStatus::Failed
    };
    let timeouts = report_timeouts(budget);
    let sent = tokio::time::timeout(
        budget,
        client
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(deployment_id)
            .lifecycle_event_hook_execution_id(hook_execution_id)
            .status(status)
            .customize()
            .config_override(
                aws_sdk_codedeploy::config::Builder::default().timeout_config(timeouts),
            )
            .send(),
    )
    .await;
    match sent {
        Err(_elapsed) => Err(Error::Aws {
            action: ACTION,
            resource: resource(),
            code: None,
            message: format!(
                "no answer within the report's budget of {} ms",
                budget.as_millis()
            ),
        }),
        Ok(Ok(_)) => Ok(Reported::Now),
        Ok(Err(e))
            if e.as_service_error()
                .is_some_and(|s| s.is_lifecycle_event_already_completed_exception()) =>
        {
            tracing::warn!(deployment = %deployment_id,
                "CodeDeploy already holds a status for this hook execution; not reporting again");
            Ok(Reported::Before)
        }
        Ok(Err(e)) => Err(Error::aws(ACTION, resource(), e)),
    }
}

/// The SDK timeouts that fit a report into `budget`: the whole operation (every attempt and the
/// backoff between them) in `budget`, each attempt in a third of it (at most 10 s), the connect
/// in at most 3 s of that.
#[must_use]
pub fn report_timeouts(budget: Duration) -> aws_smithy_types::timeout::TimeoutConfig {
    let attempt = (budget / 3).min(Duration::from_secs(10));
    aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(3)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(budget)
        .build()
}

/// One deployment of a group, as `BatchGetDeployments` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSummary {
    pub id: String,
    /// CodeDeploy's status (`Succeeded`, `Failed`, `Stopped`, `InProgress`, ...).
    pub status: String,
    pub create_time: Option<DateTime<Utc>>,
    pub complete_time: Option<DateTime<Utc>>,
    /// The deployment's description (safeship's own reverts say so in theirs).
    pub description: Option<String>,
    /// Who created it: `user`, `autoscaling`, `codeDeployRollback`, `autoRollback`, ...
    pub creator: Option<String>,
    /// For a rollback deployment, the deployment whose failure or stop it rolls back
    /// (`rollbackInfo.rollbackTriggeringDeploymentId`).
    pub rolls_back: Option<String>,
}

impl DeploymentSummary {
    /// CodeDeploy's own rollback of another deployment (automatic, or asked for with a stop).
    #[must_use]
    pub fn is_codedeploy_rollback(&self) -> bool {
        matches!(
            self.creator.as_deref(),
            Some("autoRollback" | "codeDeployRollback")
        ) || self.rolls_back.is_some()
    }
}

/// `ListDeployments` of a group (every page), only those in `statuses` (all when empty) and, when
/// given, created after `created_after`.
pub async fn list_deployment_ids(
    client: &aws_sdk_codedeploy::Client,
    application: &str,
    group: &str,
    statuses: &[&str],
    created_after: Option<DateTime<Utc>>,
) -> Result<Vec<String>> {
    list_created_within(client, application, group, statuses, (created_after, None)).await
}

/// `ListDeployments` of a group (every page) in `statuses`, created within `window` (start, end;
/// either open).
async fn list_created_within(
    client: &aws_sdk_codedeploy::Client,
    application: &str,
    group: &str,
    statuses: &[&str],
    window: Window,
) -> Result<Vec<String>> {
    let mut request = client
        .list_deployments()
        .application_name(application)
        .deployment_group_name(group);
    for s in statuses {
        request = request.include_only_statuses(DeploymentStatus::from(*s));
    }
    if window != (None, None) {
        let at = |t: DateTime<Utc>| aws_smithy_types::DateTime::from_millis(t.timestamp_millis());
        request = request.create_time_range(
            aws_sdk_codedeploy::types::TimeRange::builder()
                .set_start(window.0.map(at))
                .set_end(window.1.map(at))
                .build(),
        );
    }
    let mut pages = request.into_paginator().send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws(
                "codedeploy:ListDeployments",
                format!("{application}/{group} ({})", statuses.join(",")),
                aws_sdk_codedeploy::Error::from(e),
            )
        })?;
        ids.extend(page.deployments.unwrap_or_default());
    }
    Ok(ids)
}

/// A span of creation times: (start, end), either open.
pub type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The windows [`latest_deployments`] looks in, newest first: the `recent` span before `at`
/// (and anything created since), then the month, the year before it, then all earlier time.
/// Adjacent windows share their boundary, so a deployment created on it is in both (and kept
/// once).
#[must_use]
pub fn lookback_windows(at: DateTime<Utc>, recent: chrono::Duration) -> Vec<Window> {
    let first = at - recent;
    let month = first - chrono::Duration::days(30);
    let year = month - chrono::Duration::days(365);
    vec![
        (Some(first), None),
        (Some(month), Some(first)),
        (Some(year), Some(month)),
        (None, Some(year)),
    ]
}

/// The group's newest `wanted` deployments in `statuses` (or all there are, when fewer), newest
/// first, looking back from `at` window by window ([`lookback_windows`]) instead of listing a
/// long-lived group's whole history. A group runs one deployment at a time, so creation order
/// is completion order.
pub async fn latest_deployments(
    client: &aws_sdk_codedeploy::Client,
    application: &str,
    group: &str,
    statuses: &[&str],
    wanted: usize,
    at: DateTime<Utc>,
    recent: chrono::Duration,
) -> Result<Vec<DeploymentSummary>> {
    let mut found: Vec<DeploymentSummary> = Vec::new();
    for window in lookback_windows(at, recent) {
        let ids = list_created_within(client, application, group, statuses, window).await?;
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| !found.iter().any(|d| &d.id == id))
            .collect();
        let mut older = described(client, application, group, ids).await?;
        older.sort_by_key(|d| std::cmp::Reverse(d.create_time));
        found.extend(older);
        if found.len() >= wanted {
            break;
        }
    }
    found.truncate(wanted);
    Ok(found)
}

/// The group's deployments in `statuses` (created after `created_after`, when given), with their
/// times (`BatchGetDeployments`, 25 at a time).
pub async fn deployments(
    client: &aws_sdk_codedeploy::Client,
    application: &str,
    group: &str,
    statuses: &[&str],
    created_after: Option<DateTime<Utc>>,
) -> Result<Vec<DeploymentSummary>> {
    let ids = list_deployment_ids(client, application, group, statuses, created_after).await?;
    described(client, application, group, ids).await
}

/// `BatchGetDeployments` of `ids`, 25 at a time.
async fn described(
    client: &aws_sdk_codedeploy::Client,
    application: &str,
    group: &str,
    ids: Vec<String>,
) -> Result<Vec<DeploymentSummary>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(25) {
        let out = client
            .batch_get_deployments()
            .set_deployment_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "codedeploy:BatchGetDeployments",
                    format!("{application}/{group}"),
                    aws_sdk_codedeploy::Error::from(e),
                )
            })?;
        for d in out.deployments_info.unwrap_or_default() {
            if let Some(id) = d.deployment_id {
                found.push(DeploymentSummary {
                    id,
                    status: d.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    create_time: d.create_time.as_ref().and_then(super::to_chrono),
                    complete_time: d.complete_time.as_ref().and_then(super::to_chrono),
                    creator: d.creator.map(|c| c.as_str().to_owned()),
                    rolls_back: d
                        .rollback_info
                        .and_then(|r| r.rollback_triggering_deployment_id)
                        .filter(|id| !id.is_empty()),
                    description: d.description,
                });
            }
        }
    }
    Ok(found)
}
