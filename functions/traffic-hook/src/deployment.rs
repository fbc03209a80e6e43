//! What the hook learns about its deployment from `GetDeployment`.

use aws_sdk_codedeploy::types::{DeploymentInfo, RevisionLocation, RevisionLocationType};
use serde_json::Value;

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub deployment_id: String,
    pub application: String,
    pub deployment_group: String,
    pub compute_platform: Option<String>,
    /// What the new version is called: see [`target_version`].
    pub target_version: Option<String>,
    /// For Lambda deployments: the function the AppSpec shifts traffic on.
    pub lambda_function: Option<String>,
    /// The deployment's description (safeship's reverts are known by theirs).
    pub description: Option<String>,
}

pub async fn look_up(
    codedeploy: &aws_sdk_codedeploy::Client,
    deployment_id: &str,
) -> Result<Target, Error> {
    let info = safeship::aws::codedeploy::get_deployment(codedeploy, deployment_id).await?;
    target(deployment_id, &info)
}

fn target(deployment_id: &str, info: &DeploymentInfo) -> Result<Target, Error> {
    let missing = |field: &str| {
        safeship::Error::unexpected(
            "codedeploy:GetDeployment",
            format!("deployment {deployment_id}"),
            format!("the answer names no {field}"),
        )
    };
    let appspec = info.revision.as_ref().and_then(appspec_document);
    Ok(Target {
        deployment_id: deployment_id.to_owned(),
        application: info
            .application_name
            .clone()
            .ok_or_else(|| missing("applicationName"))?,
        deployment_group: info
            .deployment_group_name
            .clone()
            .ok_or_else(|| missing("deploymentGroupName"))?,
        compute_platform: info
            .compute_platform
            .as_ref()
            .map(|p| p.as_str().to_owned()),
        target_version: info.revision.as_ref().and_then(|r| {
            appspec
                .as_ref()
                .and_then(appspec_target_version)
                .or_else(|| location_version(r))
        }),
        description: info.description.clone(),
        lambda_function: appspec.as_ref().and_then(|a| {
            appspec_properties(a)
                .find(|p| p.get("TargetVersion").is_some())
                .and_then(|p| p.get("Name"))
                .and_then(scalar_text)
        }),
    })
}

/// The AppSpec a Lambda or ECS deployment carries inline (`AppSpecContent`), as YAML or JSON.
fn appspec_document(revision: &RevisionLocation) -> Option<Value> {
    if revision.revision_type.as_ref()? != &RevisionLocationType::AppSpecContent {
        return None;
    }
    let content = revision.app_spec_content.as_ref()?.content.as_deref()?;
    serde_yaml_ng::from_str(content).ok()
}

fn appspec_properties(appspec: &Value) -> impl Iterator<Item = &Value> {
    appspec
        .get("Resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|resource| resource.values())
        .filter_map(|r| r.get("Properties"))
}

/// Lambda: `TargetVersion`; ECS: the `TaskDefinition` the new task set runs.
fn appspec_target_version(appspec: &Value) -> Option<String> {
    appspec_properties(appspec).find_map(|p| {
        p.get("TargetVersion")
            .or_else(|| p.get("TaskDefinition"))
            .and_then(scalar_text)
    })
}

/// EC2/on-premises revisions: the GitHub commit or the S3 object version.
fn location_version(revision: &RevisionLocation) -> Option<String> {
    match revision.revision_type.as_ref()? {
        RevisionLocationType::GitHub => revision.git_hub_location.as_ref()?.commit_id.clone(),
        RevisionLocationType::S3 => {
            let s3 = revision.s3_location.as_ref()?;
            s3.version.clone().or_else(|| s3.e_tag.clone())
        }
        _ => None,
    }
}

/// AppSpec versions are written as numbers or strings (`TargetVersion: 4` or `"4"`).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codedeploy::types::{AppSpecContent, ComputePlatform, GitHubLocation};

    fn info(revision: RevisionLocation) -> DeploymentInfo {
        DeploymentInfo::builder()
            .application_name("checkout")
            .deployment_group_name("checkout-prod")
            .compute_platform(ComputePlatform::Lambda)
            .revision(revision)
            .build()
    }

    #[test]
    fn lambda_appspec_gives_function_and_target_version() {
        let yaml = "version: 0.0\nResources:\n  - api:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: checkout-api\n        Alias: live\n        CurrentVersion: 3\n        TargetVersion: 4\n";
        let rev = RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().content(yaml).build())
            .build();
        let t = target("d-1", &info(rev)).unwrap();
        assert_eq!(t.target_version.as_deref(), Some("4"));
        assert_eq!(t.lambda_function.as_deref(), Some("checkout-api"));
        assert_eq!(t.compute_platform.as_deref(), Some("Lambda"));
    }

    #[test]
    fn ecs_appspec_gives_the_task_definition() {
        let json = r#"{"version":0.0,"Resources":[{"TargetService":{"Type":"AWS::ECS::Service","Properties":{"TaskDefinition":"arn:aws:ecs:eu-west-1:111122223333:task-definition/checkout:42","LoadBalancerInfo":{"ContainerName":"web","ContainerPort":8080}}}}]}"#;
        let rev = RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().content(json).build())
            .build();
        let t = target("d-1", &info(rev)).unwrap();
        assert_eq!(
            t.target_version.as_deref(),
            Some("arn:aws:ecs:eu-west-1:111122223333:task-definition/checkout:42")
        );
        assert_eq!(t.lambda_function, None);
    }

    #[test]
    fn github_revision_gives_the_commit() {
        let rev = RevisionLocation::builder()
            .revision_type(RevisionLocationType::GitHub)
            .git_hub_location(
                GitHubLocation::builder()
                    .repository("acme/checkout")
                    .commit_id("9f8e7d6")
                    .build(),
            )
            .build();
        assert_eq!(
            target("d-1", &info(rev)).unwrap().target_version.as_deref(),
            Some("9f8e7d6")
        );
    }

    #[test]
    fn missing_group_is_an_error_naming_the_field() {
        let info = DeploymentInfo::builder()
            .application_name("checkout")
            .build();
        let err = target("d-1", &info).unwrap_err().to_string();
        assert!(
            err.contains("deploymentGroupName") && err.contains("d-1"),
            "{err}"
        );
    }
}
