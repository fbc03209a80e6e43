//! The ECS side of a rollback, for services Amazon ECS deploys itself (deployment controller
//! `ECS`):
//!
//! - **in flight**: which service deployments are under way (`ListServiceDeployments`), and
//!   stopping one with rollback (`StopServiceDeployment`, `stopType` `ROLLBACK`: ECS shifts the
//!   traffic back to the previous service revision);
//! - **finished inside the bake window**: ECS has no rollback for a service deployment that
//!   completed, so the revert is an `UpdateService` to the task definition its source revision
//!   ran (the revision live before it), which ECS deploys as a new service deployment. The
//!   service's other settings stay as they are now.
//!
//! Which is which is decided by [`plan`], a pure function of the described deployments.

use aws_sdk_ecs::types::{CreatedAt, ServiceDeploymentStatus, StopServiceDeploymentStopType};
use aws_sdk_ecs::Client;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

use crate::plan::CodePlan;
use crate::Error;

/// The statuses of a service deployment that a rollback acts on, or that is one.
const ONGOING: [ServiceDeploymentStatus; 5] = [
    ServiceDeploymentStatus::Pending,
    ServiceDeploymentStatus::InProgress,
    ServiceDeploymentStatus::StopRequested,
    ServiceDeploymentStatus::RollbackRequested,
    ServiceDeploymentStatus::RollbackInProgress,
];

/// How long before the bake window a deployment that finished inside it may have been created:
/// ECS deployments with bake time, soak hooks and snapshot gates run for hours, never for a day.
pub(crate) const LONGEST_DEPLOYMENT: Duration = Duration::hours(24);

/// `DescribeServiceDeployments` and `DescribeServiceRevisions` take at most 20 ARNs a call.
const DESCRIBE_BATCH: usize = 20;

/// One service deployment: what `ListServiceDeployments` says of it, and (once described) the
/// task definitions it deploys from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceDeployment {
    pub(crate) arn: String,
    pub(crate) status: String,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// The task definitions of its source revisions (what ran before it); empty until described.
    pub(crate) from: Vec<String>,
    /// The task definition of its target revision; `None` until described.
    pub(crate) to: Option<String>,
}

impl ServiceDeployment {
    fn active(&self) -> bool {
        matches!(self.status.as_str(), "PENDING" | "IN_PROGRESS")
    }
}

fn ecs_error<E>(action: &'static str, resource: String, e: aws_sdk_ecs::error::SdkError<E>) -> Error
where
    aws_sdk_ecs::Error: From<aws_sdk_ecs::error::SdkError<E>>,
{
    Error::from(safeship::Error::aws(
        action,
        resource,
        aws_sdk_ecs::Error::from(e),
    ))
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The service's ongoing service deployments (every page).
pub(crate) async fn ongoing(
    client: &Client,
    cluster: &str,
    service: &str,
) -> Result<Vec<ServiceDeployment>, Error> {
    list(client, cluster, service, ONGOING.to_vec(), None).await
}

/// The service's successful service deployments created since `created_after` (every page).
pub(crate) async fn succeeded(
    client: &Client,
    cluster: &str,
    service: &str,
    created_after: DateTime<Utc>,
) -> Result<Vec<ServiceDeployment>, Error> {
    let after = aws_smithy_types::DateTime::from_secs(created_after.timestamp());
    list(
        client,
        cluster,
        service,
        vec![ServiceDeploymentStatus::Successful],
        Some(CreatedAt::builder().after(after).build()),
    )
    .await
}

async fn list(
    client: &Client,
    cluster: &str,
    service: &str,
    status: Vec<ServiceDeploymentStatus>,
    created_at: Option<CreatedAt>,
) -> Result<Vec<ServiceDeployment>, Error> {
    // The SDK has no paginator for this operation: the pages are followed by `nextToken`.
    let mut found = Vec::new();
    let mut next_token = None;
    loop {
        let page = client
            .list_service_deployments()
            .cluster(cluster)
            .service(service)
            .set_status(Some(status.clone()))
            .set_created_at(created_at.clone())
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| {
                ecs_error(
                    "ecs:ListServiceDeployments",
                    format!("service {cluster}/{service}"),
                    e,
                )
            })?;
        found.extend(
            page.service_deployments
                .unwrap_or_default()
                .into_iter()
                .filter_map(|d| {
                    Some(ServiceDeployment {
                        arn: d.service_deployment_arn?,
                        status: d.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                        finished_at: d.finished_at.as_ref().and_then(to_chrono),
                        from: Vec::new(),
                        to: None,
                    })
                }),
        );
        match page.next_token {
            Some(token) if !token.is_empty() => next_token = Some(token),
            _ => break,
        }
    }
    Ok(found)
}

/// The successes newest first by completion (those without a completion time last).
fn by_finish(succeeded: &[ServiceDeployment]) -> Vec<&ServiceDeployment> {
    let mut sorted: Vec<&ServiceDeployment> = succeeded.iter().collect();
    sorted.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then(a.arn.cmp(&b.arn)));
    sorted
}

/// Which deployments [`plan`] needs described: those in flight (is one of them a return to what
/// ran before the last success?) and the last two successes (what ran before the last one, and
/// whether it is itself a return to what ran before the one before it). Nothing when there is
/// nothing to compare or nothing to revert.
pub(crate) fn to_describe(
    ongoing: &[ServiceDeployment],
    succeeded: &[ServiceDeployment],
    alarm_at: DateTime<Utc>,
    bake_window: Duration,
) -> Vec<String> {
    let successes = by_finish(succeeded);
    let Some(last) = successes.first() else {
        return vec![];
    };
    let active: Vec<&ServiceDeployment> = ongoing.iter().filter(|d| d.active()).collect();
    let inside_window = last
        .finished_at
        .is_some_and(|f| alarm_at - f <= bake_window);
    if active.is_empty() && (!ongoing.is_empty() || !inside_window) {
        return vec![];
    }
    let mut arns: Vec<String> = active.iter().map(|d| d.arn.clone()).collect();
    arns.extend(successes.iter().take(2).map(|d| d.arn.clone()));
    arns
}

/// Fills in `from` and `to` of the deployments named in `arns`
/// (`DescribeServiceDeployments`, then `DescribeServiceRevisions` for their revisions).
pub(crate) async fn describe(
    client: &Client,
    arns: &[String],
    deployments: &mut [&mut ServiceDeployment],
) -> Result<(), Error> {
    if arns.is_empty() {
        return Ok(());
    }
    // Revision ARNs of each deployment: (sources, target).
    let mut revisions: BTreeMap<String, (Vec<String>, Option<String>)> = BTreeMap::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let answer = client
            .describe_service_deployments()
            .set_service_deployment_arns(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| {
                ecs_error(
                    "ecs:DescribeServiceDeployments",
                    format!("service deployments {}", batch.join(", ")),
                    e,
                )
            })?;
        if let Some(failure) = answer.failures.as_deref().and_then(<[_]>::first) {
            return Err(safeship::Error::unexpected(
                "ecs:DescribeServiceDeployments",
                failure.arn.clone().unwrap_or_else(|| batch.join(", ")),
                format!(
                    "not described: {}",
                    failure.reason.as_deref().unwrap_or("no reason given")
                ),
            )
            .into());
        }
        for d in answer.service_deployments.unwrap_or_default() {
            let Some(arn) = d.service_deployment_arn else {
                continue;
            };
            let sources = d
                .source_service_revisions
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.arn)
                .collect();
            let target = d.target_service_revision.and_then(|r| r.arn);
            revisions.insert(arn, (sources, target));
        }
    }
    let mut wanted: Vec<String> = revisions
        .values()
        .flat_map(|(s, t)| s.iter().chain(t))
        .cloned()
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut task_definitions: BTreeMap<String, String> = BTreeMap::new();
    for batch in wanted.chunks(DESCRIBE_BATCH) {
        let answer = client
            .describe_service_revisions()
            .set_service_revision_arns(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| {
                ecs_error(
                    "ecs:DescribeServiceRevisions",
                    format!("service revisions {}", batch.join(", ")),
                    e,
                )
            })?;
        for r in answer.service_revisions.unwrap_or_default() {
            if let (Some(arn), Some(task_definition)) = (r.service_revision_arn, r.task_definition)
            {
                task_definitions.insert(arn, task_definition);
            }
        }
    }
    let task_definition = |revision: &String| {
        task_definitions.get(revision).cloned().ok_or_else(|| {
            Error::from(safeship::Error::unexpected(
                "ecs:DescribeServiceRevisions",
                format!("service revision {revision}"),
                "the answer names no task definition for it",
            ))
        })
    };
    for d in deployments.iter_mut() {
        let Some((sources, target)) = revisions.get(&d.arn) else {
            if arns.contains(&d.arn) {
                return Err(safeship::Error::unexpected(
                    "ecs:DescribeServiceDeployments",
                    format!("service deployment {}", d.arn),
                    "the answer does not describe it",
                )
                .into());
            }
            continue;
        };
        d.from = sources
            .iter()
            .map(task_definition)
            .collect::<Result<_, _>>()?;
        d.to = target.as_ref().map(task_definition).transpose()?;
    }
    Ok(())
}

/// What a rollback of the service does, given its ongoing deployments and its successes (the
/// ones [`to_describe`] names described):
///
/// - deployments in flight are stopped with rollback — except one that returns the service to
///   the task definition that ran before the last success (safeship's revert, or a person's):
///   a rollback is never stopped, nor is a stop or a rollback ECS has under way;
/// - nothing in flight: the last success is reverted (to the task definition it replaced) when
///   it finished within `bake_window` of the alarm, or after it, and is not itself a return to
///   what ran before the one before it (reverting that would bring back what it removed).
pub(crate) fn plan(
    ongoing: &[ServiceDeployment],
    succeeded: &[ServiceDeployment],
    alarm_at: DateTime<Utc>,
    bake_window: Duration,
) -> CodePlan {
    let successes = by_finish(succeeded);
    let last = successes.first().copied();
    let returns_before_last = |d: &ServiceDeployment| -> Option<String> {
        let last = last?;
        let to = d.to.as_ref()?;
        last.from.contains(to).then(|| {
            format!(
                "{} returns the service to {to}, which ran before {}",
                d.arn, last.arn
            )
        })
    };
    let (undoing, mut to_stop): (Vec<&ServiceDeployment>, Vec<&ServiceDeployment>) = ongoing
        .iter()
        .filter(|d| d.active())
        .partition(|d| returns_before_last(d).is_some());
    if !to_stop.is_empty() {
        to_stop.sort_by(|a, b| a.arn.cmp(&b.arn));
        let mut deployments: Vec<String> = to_stop.iter().map(|d| d.arn.clone()).collect();
        deployments.dedup();
        return CodePlan::Stop { deployments };
    }
    if let Some(d) = undoing.first() {
        return CodePlan::Nothing {
            reason: format!(
                "only a rollback is in flight ({}): a rollback is never stopped",
                returns_before_last(d).unwrap_or_default()
            ),
        };
    }
    if let Some(d) = ongoing.first() {
        return CodePlan::Nothing {
            reason: format!(
                "service deployment {} is {} already: a stop or a rollback is never stopped",
                d.arn, d.status
            ),
        };
    }
    let minutes = bake_window.num_minutes();
    let Some(last) = last else {
        return CodePlan::Nothing {
            reason: format!(
                "no service deployment in flight and none succeeded in the {} hours before the {minutes}-minute bake window",
                LONGEST_DEPLOYMENT.num_hours()
            ),
        };
    };
    let Some(finished) = last.finished_at else {
        return CodePlan::Nothing {
            reason: format!(
                "the last successful service deployment {} has no completion time",
                last.arn
            ),
        };
    };
    if alarm_at - finished > bake_window {
        return CodePlan::Nothing {
            reason: format!(
                "no service deployment in flight; the last success {} finished at {} — more than the {minutes}-minute bake window before the alarm",
                last.arn,
                finished.to_rfc3339()
            ),
        };
    }
    if let Some(previous) = successes.get(1) {
        if let Some(to) = last.to.as_ref().filter(|to| previous.from.contains(to)) {
            return CodePlan::Nothing {
                reason: format!(
                    "no service deployment in flight; the last success {} already returned the service to {to}, which ran before {}: reverting it would bring back what it removed",
                    last.arn, previous.arn
                ),
            };
        }
    }
    let mut from: Vec<&String> = last
        .from
        .iter()
        .filter(|t| Some(*t) != last.to.as_ref())
        .collect();
    from.sort();
    from.dedup();
    match from.as_slice() {
        [task_definition] => CodePlan::RevertService {
            reverted: last.arn.clone(),
            task_definition: (*task_definition).clone(),
        },
        [] => CodePlan::Nothing {
            reason: format!(
                "{} finished within the {minutes}-minute bake window, but no earlier task definition ran before it to return to",
                last.arn
            ),
        },
        several => CodePlan::Nothing {
            reason: format!(
                "{} finished within the {minutes}-minute bake window, but it replaced several task definitions ({}): which one to return to is a person's call",
                last.arn,
                several.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
    }
}

/// `StopServiceDeployment` with `stopType` `ROLLBACK`.
pub(crate) async fn stop(client: &Client, service_deployment_arn: &str) -> Result<String, Error> {
    client
        .stop_service_deployment()
        .service_deployment_arn(service_deployment_arn)
        .stop_type(StopServiceDeploymentStopType::Rollback)
        .send()
        .await
        .map_err(|e| {
            ecs_error(
                "ecs:StopServiceDeployment",
                format!("service deployment {service_deployment_arn}"),
                e,
            )
        })?;
    Ok("stop requested with rollback: ECS shifts the traffic back to the previous revision".into())
}

/// `UpdateService` to `task_definition`: ECS deploys it as a new service deployment, through the
/// service's own strategy and lifecycle hooks. Safe to resume: a service already on it (an
/// interrupted delivery updated it before it could record so) is not updated again.
pub(crate) async fn revert(
    client: &Client,
    cluster: &str,
    service: &str,
    task_definition: &str,
) -> Result<String, Error> {
    let described = client
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| {
            ecs_error(
                "ecs:DescribeServices",
                format!("service {cluster}/{service}"),
                e,
            )
        })?;
    let Some(current) = described.services.unwrap_or_default().into_iter().next() else {
        return Err(safeship::Error::unexpected(
            "ecs:DescribeServices",
            format!("service {cluster}/{service}"),
            "no such service",
        )
        .into());
    };
    if current.task_definition.as_deref() == Some(task_definition) {
        return Ok(format!(
            "service already on {task_definition} (updated by an interrupted delivery): not updated again"
        ));
    }
    let answer = client
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| {
            ecs_error(
                "ecs:UpdateService",
                format!("service {cluster}/{service} (to {task_definition})"),
                e,
            )
        })?;
    let now = answer
        .service
        .as_ref()
        .and_then(|s| s.task_definition.as_deref());
    if now != Some(task_definition) {
        return Err(safeship::Error::unexpected(
            "ecs:UpdateService",
            format!("service {cluster}/{service}"),
            format!(
                "asked for {task_definition}, the service answers {}",
                now.unwrap_or("no task definition")
            ),
        )
        .into());
    }
    let deployment = answer
        .service
        .and_then(|s| s.current_service_deployment)
        .map_or_else(
            || "a new service deployment".to_owned(),
            |arn| format!("service deployment {arn}"),
        );
    Ok(format!(
        "service updated to {task_definition}: ECS deploys it as {deployment}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:11";
    const B: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:12";
    const C: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:13";

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(minute)
    }

    fn d(arn: &str, status: &str) -> ServiceDeployment {
        ServiceDeployment {
            arn: arn.into(),
            status: status.into(),
            finished_at: None,
            from: vec![],
            to: None,
        }
    }

    /// A deployment from `from` to `to` that finished at `minute`.
    fn went(arn: &str, minute: i64, from: &str, to: &str) -> ServiceDeployment {
        ServiceDeployment {
            finished_at: Some(at(minute)),
            from: vec![from.into()],
            to: Some(to.into()),
            ..d(arn, "SUCCESSFUL")
        }
    }

    fn going(arn: &str, from: &str, to: &str) -> ServiceDeployment {
        ServiceDeployment {
            from: vec![from.into()],
            to: Some(to.into()),
            ..d(arn, "IN_PROGRESS")
        }
    }

    const WINDOW: Duration = Duration::minutes(60);

    #[test]
    fn deployments_in_flight_are_stopped_and_a_rollback_never_is() {
        assert_eq!(
            plan(
                &[d("b", "IN_PROGRESS"), d("a", "PENDING"), d("a", "PENDING")],
                &[],
                at(0),
                WINDOW
            ),
            CodePlan::Stop {
                deployments: vec!["a".into(), "b".into()]
            }
        );
        let CodePlan::Nothing { reason } =
            plan(&[d("r", "ROLLBACK_IN_PROGRESS")], &[], at(0), WINDOW)
        else {
            panic!("a rollback is never stopped")
        };
        assert!(reason.contains("r is ROLLBACK_IN_PROGRESS"), "{reason}");
    }

    #[test]
    fn a_success_inside_the_bake_window_is_reverted_to_the_task_definition_it_replaced() {
        let succeeded = [went("old", -300, C, A), went("new", -20, A, B)];
        assert_eq!(
            plan(&[], &succeeded, at(0), WINDOW),
            CodePlan::RevertService {
                reverted: "new".into(),
                task_definition: A.into()
            }
        );
        // Caught mid-flight: it finished after the alarm.
        assert!(matches!(
            plan(&[], &[went("new", 3, A, B)], at(0), WINDOW),
            CodePlan::RevertService { .. }
        ));
        // Outside the window: nothing, saying when it finished.
        let CodePlan::Nothing { reason } = plan(&[], &[went("new", -61, A, B)], at(0), WINDOW)
        else {
            panic!("outside the window")
        };
        assert!(
            reason.contains("more than the 60-minute bake window"),
            "{reason}"
        );
        let CodePlan::Nothing { reason } = plan(&[], &[], at(0), WINDOW) else {
            panic!()
        };
        assert!(reason.contains("none succeeded"), "{reason}");
    }

    #[test]
    fn a_revert_is_never_stopped_nor_reverted() {
        // safeship's revert of `new` (B → A) in flight: a second alarm leaves it alone.
        let succeeded = [went("old", -300, C, A), went("new", -20, A, B)];
        let CodePlan::Nothing { reason } =
            plan(&[going("revert", B, A)], &succeeded, at(0), WINDOW)
        else {
            panic!("the revert was stopped")
        };
        assert!(
            reason.contains("only a rollback is in flight")
                && reason.contains("revert returns the service to"),
            "{reason}"
        );
        // A new release in flight beside it is stopped.
        assert_eq!(
            plan(
                &[going("revert", B, A), going("next", B, C)],
                &succeeded,
                at(0),
                WINDOW
            ),
            CodePlan::Stop {
                deployments: vec!["next".into()]
            }
        );
        // The revert finished: reverting it would bring B back.
        let done = [
            went("old", -300, C, A),
            went("new", -20, A, B),
            went("revert", -5, B, A),
        ];
        let CodePlan::Nothing { reason } = plan(&[], &done, at(0), WINDOW) else {
            panic!("the revert was reverted")
        };
        assert!(
            reason.contains("already returned the service to"),
            "{reason}"
        );
    }

    #[test]
    fn a_success_with_no_single_earlier_task_definition_is_left_to_a_person() {
        let first = ServiceDeployment {
            from: vec![],
            ..went("first", -10, A, B)
        };
        let CodePlan::Nothing { reason } = plan(&[], &[first], at(0), WINDOW) else {
            panic!()
        };
        assert!(reason.contains("no earlier task definition"), "{reason}");
        let several = ServiceDeployment {
            from: vec![A.into(), C.into()],
            ..went("mixed", -10, A, B)
        };
        let CodePlan::Nothing { reason } = plan(&[], &[several], at(0), WINDOW) else {
            panic!()
        };
        assert!(reason.contains("a person's call"), "{reason}");
        // Forced again on the same task definition: nothing else ran before it.
        let CodePlan::Nothing { .. } = plan(&[], &[went("same", -10, B, B)], at(0), WINDOW) else {
            panic!()
        };
    }

    #[test]
    fn only_what_the_plan_compares_is_described() {
        let succeeded = [
            d("s1", "SUCCESSFUL"),
            went("s2", -300, C, A),
            went("s3", -20, A, B),
        ];
        // Nothing in flight, the last success inside the window: the last two successes.
        assert_eq!(
            to_describe(&[], &succeeded, at(0), WINDOW),
            vec!["s3", "s2"]
        );
        // Outside the window, or only a rollback ECS runs: nothing to describe.
        assert!(to_describe(&[], &succeeded, at(200), WINDOW).is_empty());
        assert!(
            to_describe(&[d("r", "ROLLBACK_IN_PROGRESS")], &succeeded, at(0), WINDOW).is_empty()
        );
        // In flight: it and the last two successes.
        assert_eq!(
            to_describe(&[d("f", "IN_PROGRESS")], &succeeded, at(200), WINDOW),
            vec!["f", "s3", "s2"]
        );
        assert!(to_describe(&[d("f", "IN_PROGRESS")], &[], at(0), WINDOW).is_empty());
    }
}
