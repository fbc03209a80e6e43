//! What a bake-window revert deploys: pure functions of the two deployments' revisions.
//!
//! - **Lambda**: a Lambda AppSpec names the alias and the two versions *as they were* at its
//!   deployment (`CurrentVersion` → `TargetVersion`). Replaying an earlier deployment's AppSpec
//!   would ask CodeDeploy to move the alias from a version it no longer points at. The revert is
//!   the *reverted* deployment's AppSpec with the two versions swapped: the alias goes from the
//!   reverted deployment's target version (live now) back to its current version (live before).
//!   Hooks and every other key are kept.
//! - **ECS**: an ECS AppSpec names the task definition to run; the earlier deployment's AppSpec
//!   names the task definition that was live before the reverted one, so it is deployed again.
//! - **EC2/on-premises** (`Server`): the revision is the application bundle (S3 or GitHub);
//!   the earlier deployment's bundle is deployed again.

use serde_json::Value;

/// What to deploy for a revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RevertRevision {
    /// The reverted deployment's Lambda AppSpec with its versions swapped (new content).
    SwappedLambdaAppSpec(String),
    /// The earlier deployment's revision, as it is.
    Earlier,
}

/// `CurrentVersion` and `TargetVersion` of every `AWS::Lambda::Function` resource swapped, as
/// JSON (which CodeDeploy takes as AppSpec content, like YAML). `None` when the AppSpec names no
/// Lambda function (not a Lambda AppSpec); an error when it does but a version is missing.
pub(crate) fn swap_lambda_versions(content: &str) -> Result<Option<String>, String> {
    let mut spec: Value = serde_yaml_ng::from_str(content)
        .map_err(|e| format!("the AppSpec is neither YAML nor JSON: {e}"))?;
    let Some(resources) = spec.get_mut("Resources").and_then(Value::as_array_mut) else {
        return Ok(None);
    };
    let mut swapped = 0;
    for resource in resources.iter_mut().filter_map(Value::as_object_mut) {
        for (name, body) in resource.iter_mut() {
            if body.get("Type").and_then(Value::as_str) != Some("AWS::Lambda::Function") {
                continue;
            }
            let properties = body
                .get_mut("Properties")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| format!("resource {name} has no Properties"))?;
            let (Some(current), Some(target)) = (
                properties.get("CurrentVersion").cloned(),
                properties.get("TargetVersion").cloned(),
            ) else {
                return Err(format!(
                    "resource {name} does not name both CurrentVersion and TargetVersion"
                ));
            };
            properties.insert("CurrentVersion".into(), target);
            properties.insert("TargetVersion".into(), current);
            swapped += 1;
        }
    }
    if swapped == 0 {
        return Ok(None);
    }
    Ok(Some(
        serde_json::to_string(&spec).expect("an AppSpec serialises"),
    ))
}

/// The revert's revision, given the platform and the reverted deployment's AppSpec content (for
/// an AppSpec revision: `AppSpecContent` or `String`).
pub(crate) fn revert_revision(
    platform: Option<&str>,
    reverted_appspec: Option<&str>,
) -> Result<RevertRevision, String> {
    match (platform, reverted_appspec) {
        (Some("ECS" | "Server"), _) => Ok(RevertRevision::Earlier),
        (Some("Lambda"), None) => Err(
            "the reverted Lambda deployment's AppSpec is not inline (AppSpecContent or String): \
             a revert needs its versions"
                .into(),
        ),
        (Some("Lambda"), Some(content)) => match swap_lambda_versions(content)? {
            Some(swapped) => Ok(RevertRevision::SwappedLambdaAppSpec(swapped)),
            None => Err("the reverted Lambda deployment's AppSpec names no Lambda function".into()),
        },
        // Platform not given: a Lambda AppSpec says so itself.
        (_, Some(content)) => Ok(swap_lambda_versions(content)?.map_or(
            RevertRevision::Earlier,
            RevertRevision::SwappedLambdaAppSpec,
        )),
        (_, None) => Ok(RevertRevision::Earlier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What CodeDeploy holds for a release of version 4 over 3, as SAM writes it.
    const RELEASE_4: &str = "version: 0.0\nResources:\n  - api:\n      Type: AWS::Lambda::Function\n      Properties: {Name: checkout-api, Alias: live, CurrentVersion: \"3\", TargetVersion: \"4\"}\nHooks:\n  - BeforeAllowTraffic: safeship-traffic-hook\n";

    #[test]
    fn a_lambda_revert_moves_the_alias_from_the_target_back_to_the_current_version() {
        let RevertRevision::SwappedLambdaAppSpec(content) =
            revert_revision(Some("Lambda"), Some(RELEASE_4)).unwrap()
        else {
            panic!("not swapped")
        };
        let spec: Value = serde_json::from_str(&content).unwrap();
        assert_eq!(
            spec,
            json!({
                "version": 0.0,
                "Resources": [{"api": {"Type": "AWS::Lambda::Function", "Properties": {
                    "Name": "checkout-api", "Alias": "live",
                    "CurrentVersion": "4", "TargetVersion": "3"}}}],
                "Hooks": [{"BeforeAllowTraffic": "safeship-traffic-hook"}]
            })
        );
        // JSON AppSpecs too; numbers stay numbers.
        let json_spec = r#"{"version":0.0,"Resources":[{"f":{"Type":"AWS::Lambda::Function","Properties":{"Name":"f","Alias":"live","CurrentVersion":7,"TargetVersion":8}}}]}"#;
        let Some(swapped) = swap_lambda_versions(json_spec).unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_str(&swapped).unwrap();
        assert_eq!(v["Resources"][0]["f"]["Properties"]["CurrentVersion"], 8);
        assert_eq!(v["Resources"][0]["f"]["Properties"]["TargetVersion"], 7);
    }

    #[test]
    fn ecs_and_ec2_reverts_deploy_the_earlier_revision() {
        let ecs = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:12\n        LoadBalancerInfo: {ContainerName: app, ContainerPort: 8080}\n";
        assert_eq!(
            revert_revision(Some("ECS"), Some(ecs)).unwrap(),
            RevertRevision::Earlier
        );
        assert_eq!(
            revert_revision(Some("Server"), None).unwrap(),
            RevertRevision::Earlier
        );
        // Platform unknown: an ECS AppSpec is not a Lambda one.
        assert_eq!(
            revert_revision(None, Some(ecs)).unwrap(),
            RevertRevision::Earlier
        );
    }

    #[test]
    fn a_lambda_appspec_without_its_versions_is_an_error_naming_the_resource() {
        let broken = "Resources:\n  - api:\n      Type: AWS::Lambda::Function\n      Properties: {Name: f, Alias: live, TargetVersion: \"4\"}\n";
        assert_eq!(
            revert_revision(Some("Lambda"), Some(broken)).unwrap_err(),
            "resource api does not name both CurrentVersion and TargetVersion"
        );
        assert!(revert_revision(Some("Lambda"), None).is_err());
    }
}
