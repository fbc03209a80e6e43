//! The AppConfig side: the version of a feature-flag profile its environment serves, a new
//! version with flags off, and its deployment.

use aws_sdk_appconfig::primitives::Blob;
use aws_sdk_appconfig::Client;
use safeship::policy::FeatureFlagTarget;
use serde_json::Value;

use crate::flags::{switch_to, Switch};
use crate::Error;

fn profile(t: &FeatureFlagTarget) -> String {
    format!("application {} profile {}", t.application, t.profile)
}

/// One deployment of an environment, as `ListDeployments` / `GetDeployment` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvDeployment {
    pub(crate) number: i32,
    /// `None` until read with `GetDeployment` (older answers of `ListDeployments` lack it).
    pub(crate) profile: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) state: Option<String>,
}

/// States in which a deployment's version is not what the environment serves (it is being, or
/// was, rolled back to the one before).
const NOT_SERVED: [&str; 3] = ["ROLLING_BACK", "ROLLED_BACK", "REVERTED"];

/// The version of `profile` the environment serves or is deploying: the newest deployment of the
/// profile that was not rolled back. `Err(number)` when deployment `number` may be it but does
/// not say which profile it deploys (read it with `GetDeployment` and ask again).
pub(crate) fn deployed_version(
    deployments: &[EnvDeployment],
    profile: &str,
) -> Result<Option<i32>, i32> {
    let mut newest_first: Vec<&EnvDeployment> = deployments.iter().collect();
    newest_first.sort_by_key(|d| std::cmp::Reverse(d.number));
    for d in newest_first {
        match d.profile.as_deref() {
            None => return Err(d.number),
            Some(p) if p != profile => continue,
            Some(_) => {}
        }
        if d.state.as_deref().is_some_and(|s| NOT_SERVED.contains(&s)) {
            continue;
        }
        if let Some(version) = d.version.as_deref().and_then(|v| v.parse().ok()) {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// The version of the target's profile its environment serves (or is deploying), if any.
///
/// AppConfig lists an environment's deployments newest first (descending deployment number),
/// so the pages are read only until the answer is known: a long-lived environment's whole
/// history is not.
async fn read_deployed(client: &Client, target: &FeatureFlagTarget) -> Result<Option<i32>, Error> {
    let resource = || format!("{} environment {}", profile(target), target.environment);
    let mut pages = client
        .list_deployments()
        .application_id(&target.application)
        .environment_id(&target.environment)
        .into_paginator()
        .send();
    let mut deployments = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::from(safeship::Error::aws(
                "appconfig:ListDeployments",
                resource(),
                e,
            ))
        })?;
        deployments.extend(
            page.items
                .unwrap_or_default()
                .into_iter()
                .map(|d| EnvDeployment {
                    number: d.deployment_number,
                    profile: d.configuration_profile_id,
                    version: d.configuration_version,
                    state: d.state.map(|s| s.as_str().to_owned()),
                }),
        );
        if let Some(version) = decided(client, target, &mut deployments).await? {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// The served version among `deployments` (the newest so far), asking `GetDeployment` of each
/// that does not say its profile until the answer is known; `None` when none of them serves the
/// profile (an older page may).
async fn decided(
    client: &Client,
    target: &FeatureFlagTarget,
    deployments: &mut [EnvDeployment],
) -> Result<Option<i32>, Error> {
    let resource = || format!("{} environment {}", profile(target), target.environment);
    loop {
        match deployed_version(deployments, &target.profile) {
            Ok(version) => return Ok(version),
            Err(number) => {
                let out = client
                    .get_deployment()
                    .application_id(&target.application)
                    .environment_id(&target.environment)
                    .deployment_number(number)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::from(safeship::Error::aws(
                            "appconfig:GetDeployment",
                            format!("{} deployment {number}", resource()),
                            e,
                        ))
                    })?;
                let d = deployments
                    .iter_mut()
                    .find(|d| d.number == number)
                    .expect("the deployment asked about is listed");
                // A deployment of no profile cannot be this profile's.
                d.profile = Some(out.configuration_profile_id.unwrap_or_default());
                d.version = out.configuration_version.or(d.version.take());
                d.state = out.state.map(|s| s.as_str().to_owned()).or(d.state.take());
            }
        }
    }
}

/// The latest hosted version's number.
async fn latest_version(client: &Client, target: &FeatureFlagTarget) -> Result<i32, Error> {
    let mut pages = client
        .list_hosted_configuration_versions()
        .application_id(&target.application)
        .configuration_profile_id(&target.profile)
        .into_paginator()
        .send();
    let mut latest = None;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::from(safeship::Error::aws(
                "appconfig:ListHostedConfigurationVersions",
                profile(target),
                e,
            ))
        })?;
        for item in page.items.unwrap_or_default() {
            latest = latest.max(Some(item.version_number));
        }
    }
    latest.ok_or_else(|| Error::Flags {
        profile: profile(target),
        problem: "has no hosted configuration version".into(),
    })
}

/// Hosted version `version`'s document, with the switch computed on it, and the version's
/// description.
async fn switch_of(
    client: &Client,
    target: &FeatureFlagTarget,
    version: i32,
    enabled: bool,
) -> Result<(Switch, Option<String>), Error> {
    let out = client
        .get_hosted_configuration_version()
        .application_id(&target.application)
        .configuration_profile_id(&target.profile)
        .version_number(version)
        .send()
        .await
        .map_err(|e| {
            Error::from(safeship::Error::aws(
                "appconfig:GetHostedConfigurationVersion",
                format!("{} version {version}", profile(target)),
                e,
            ))
        })?;
    let description = out.description;
    let bytes = out.content.map(Blob::into_inner).unwrap_or_default();
    let document: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Flags {
        profile: format!("{} version {version}", profile(target)),
        problem: format!("is not JSON: {e}"),
    })?;
    let switch = switch_to(&document, &target.flags, enabled).map_err(|problem| Error::Flags {
        profile: format!("{} version {version}", profile(target)),
        problem,
    })?;
    Ok((switch, description))
}

/// What switching a target's flags off takes, read from AppConfig (nothing is written).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlagPlan {
    /// The version whose flags were judged: the one deployed in the environment, or (none
    /// deployed) the latest hosted one.
    pub(crate) judged: i32,
    /// Whether `judged` is the deployed version.
    pub(crate) deployed: bool,
    /// The latest hosted version (the base of a new one).
    pub(crate) latest: i32,
    /// The flags to switch off and those already off, in `judged`.
    pub(crate) switch: Switch,
    /// `judged`'s description (who wrote it, and why).
    pub(crate) judged_description: Option<String>,
    /// What to do: nothing (`switch.document` is `None`), write `switch`'s document as a new
    /// version over `latest` and deploy it, or deploy `latest` as it is (it already has the
    /// flags off: an interrupted attempt wrote it and did not deploy it).
    pub(crate) deploy_latest_as_is: bool,
}

/// Compares the flags with what the environment *serves* (`ListDeployments`): a version written
/// by an attempt whose `StartDeployment` failed has the flags off but is not deployed, and the
/// retry must still deploy one. Without any deployment of the profile, the latest hosted version
/// is what counts.
pub(crate) async fn read_switch(
    client: &Client,
    target: &FeatureFlagTarget,
    enabled: bool,
) -> Result<FlagPlan, Error> {
    let latest = latest_version(client, target).await?;
    let deployed = read_deployed(client, target).await?;
    let judged = deployed.unwrap_or(latest);
    let (switch, judged_description) = switch_of(client, target, judged, enabled).await?;
    let mut plan = FlagPlan {
        judged,
        deployed: deployed.is_some(),
        latest,
        switch,
        judged_description,
        deploy_latest_as_is: false,
    };
    if plan.switch.document.is_some() && judged != latest {
        // Build on the latest hosted version (a concurrent edit is kept, as before); if it has
        // the flags off already, it is deployed as it is.
        let (on_latest, _) = switch_of(client, target, latest, enabled).await?;
        match on_latest.document {
            Some(document) => plan.switch.document = Some(document),
            None => plan.deploy_latest_as_is = true,
        }
    }
    Ok(plan)
}

/// Creates a new hosted version (guarded by the version it was derived from).
pub(crate) async fn write(
    client: &Client,
    target: &FeatureFlagTarget,
    derived_from: i32,
    document: &Value,
    description: &str,
) -> Result<i32, Error> {
    let created = client
        .create_hosted_configuration_version()
        .application_id(&target.application)
        .configuration_profile_id(&target.profile)
        .content_type("application/json")
        .content(Blob::new(
            serde_json::to_vec(document).expect("JSON serialises"),
        ))
        .latest_version_number(derived_from)
        .description(truncate(description, 1024))
        .send()
        .await
        .map_err(|e| {
            Error::from(safeship::Error::aws(
                "appconfig:CreateHostedConfigurationVersion",
                profile(target),
                e,
            ))
        })?;
    Ok(created.version_number)
}

/// `StartDeployment` of hosted version `version` to the target's environment: its number.
pub(crate) async fn deploy(
    client: &Client,
    target: &FeatureFlagTarget,
    version: i32,
    description: &str,
) -> Result<i32, Error> {
    let deployment = client
        .start_deployment()
        .application_id(&target.application)
        .environment_id(&target.environment)
        .configuration_profile_id(&target.profile)
        .configuration_version(version.to_string())
        .deployment_strategy_id(&target.strategy)
        .description(truncate(description, 1024))
        .send()
        .await
        .map_err(|e| {
            Error::from(safeship::Error::aws(
                "appconfig:StartDeployment",
                format!(
                    "{} version {version} to environment {}",
                    profile(target),
                    target.environment
                ),
                e,
            ))
        })?;
    Ok(deployment.deployment_number)
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(number: i32, profile: Option<&str>, version: &str, state: &str) -> EnvDeployment {
        EnvDeployment {
            number,
            profile: profile.map(str::to_owned),
            version: Some(version.into()),
            state: Some(state.into()),
        }
    }

    #[test]
    fn the_deployed_version_is_the_newest_of_the_profile_not_rolled_back() {
        let history = [
            d(1, Some("p"), "1", "COMPLETE"),
            d(2, Some("other"), "9", "COMPLETE"),
            d(3, Some("p"), "2", "ROLLED_BACK"),
        ];
        assert_eq!(deployed_version(&history, "p"), Ok(Some(1)));
        let mut deploying = history.to_vec();
        deploying.push(d(4, Some("p"), "3", "DEPLOYING"));
        assert_eq!(deployed_version(&deploying, "p"), Ok(Some(3)));
        assert_eq!(deployed_version(&[], "p"), Ok(None));
        assert_eq!(deployed_version(&history[1..2], "p"), Ok(None));
    }

    #[test]
    fn a_deployment_that_does_not_name_its_profile_is_asked_about() {
        let history = [
            d(1, Some("p"), "1", "COMPLETE"),
            d(2, None, "2", "COMPLETE"),
        ];
        assert_eq!(deployed_version(&history, "p"), Err(2));
    }
}
