//! The ECS side of a rollback, for services Amazon ECS deploys itself (deployment controller
//! `ECS`): which service deployments are in flight (`ListServiceDeployments`) and stopping one
//! with rollback (`StopServiceDeployment`, `stopType` `ROLLBACK`: ECS shifts the traffic back to
//! the previous service revision).

use aws_sdk_ecs::types::{ServiceDeploymentStatus, StopServiceDeploymentStopType};
use aws_sdk_ecs::Client;

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

/// One ongoing service deployment: its ARN and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ongoing {
    pub(crate) arn: String,
    pub(crate) status: String,
}

/// The service's ongoing service deployments (every page).
pub(crate) async fn ongoing(
    client: &Client,
    cluster: &str,
    service: &str,
) -> Result<Vec<Ongoing>, Error> {
    // The SDK has no paginator for this operation: the pages are followed by `nextToken`.
    let mut found = Vec::new();
    let mut next_token = None;
    loop {
        let page = client
            .list_service_deployments()
            .cluster(cluster)
            .service(service)
            .set_status(Some(ONGOING.to_vec()))
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| {
                Error::from(safeship::Error::aws(
                    "ecs:ListServiceDeployments",
                    format!("service {cluster}/{service}"),
                    aws_sdk_ecs::Error::from(e),
                ))
            })?;
        found.extend(
            page.service_deployments
                .unwrap_or_default()
                .into_iter()
                .filter_map(|d| {
                    Some(Ongoing {
                        arn: d.service_deployment_arn?,
                        status: d.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
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

/// What a rollback of the service does: stop each deployment in flight with rollback; nothing
/// when only a stop or a rollback is under way (a rollback is never stopped), or nothing is in
/// flight (reverting a deployment that finished inside the bake window is not built for ECS).
pub(crate) fn plan(ongoing: &[Ongoing]) -> CodePlan {
    let mut deployments: Vec<String> = ongoing
        .iter()
        .filter(|d| matches!(d.status.as_str(), "PENDING" | "IN_PROGRESS"))
        .map(|d| d.arn.clone())
        .collect();
    deployments.sort();
    deployments.dedup();
    if !deployments.is_empty() {
        return CodePlan::Stop { deployments };
    }
    match ongoing.first() {
        Some(d) => CodePlan::Nothing {
            reason: format!(
                "service deployment {} is {} already: a stop or a rollback is never stopped",
                d.arn, d.status
            ),
        },
        None => CodePlan::Nothing {
            reason: "no service deployment in flight (reverting one that finished inside the bake window is not built for ECS yet)".into(),
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
            Error::from(safeship::Error::aws(
                "ecs:StopServiceDeployment",
                format!("service deployment {service_deployment_arn}"),
                aws_sdk_ecs::Error::from(e),
            ))
        })?;
    Ok("stop requested with rollback: ECS shifts the traffic back to the previous revision".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(arn: &str, status: &str) -> Ongoing {
        Ongoing {
            arn: arn.into(),
            status: status.into(),
        }
    }

    #[test]
    fn deployments_in_flight_are_stopped_and_a_rollback_never_is() {
        assert_eq!(
            plan(&[d("b", "IN_PROGRESS"), d("a", "PENDING"), d("a", "PENDING")]),
            CodePlan::Stop {
                deployments: vec!["a".into(), "b".into()]
            }
        );
        let CodePlan::Nothing { reason } = plan(&[d("r", "ROLLBACK_IN_PROGRESS")]) else {
            panic!("a rollback is never stopped")
        };
        assert!(reason.contains("r is ROLLBACK_IN_PROGRESS"), "{reason}");
        assert!(matches!(plan(&[]), CodePlan::Nothing { .. }));
    }
}
