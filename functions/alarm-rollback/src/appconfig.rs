//! The AppConfig side: the latest hosted version of a feature-flag profile, a new version with
//! flags off, and its deployment.

use aws_sdk_appconfig::primitives::Blob;
use aws_sdk_appconfig::Client;
use safeship::policy::FeatureFlagTarget;
use serde_json::Value;

use crate::flags::{switch_off, Switch};
use crate::Error;

fn profile(t: &FeatureFlagTarget) -> String {
    format!("application {} profile {}", t.application, t.profile)
}

/// Reads the latest hosted version and computes the switch (nothing is written).
pub(crate) async fn read_switch(
    client: &Client,
    target: &FeatureFlagTarget,
) -> Result<(i32, Switch), Error> {
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
    let Some(version) = latest else {
        return Err(Error::Flags {
            profile: profile(target),
            problem: "has no hosted configuration version".into(),
        });
    };
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
    let bytes = out.content.map(Blob::into_inner).unwrap_or_default();
    let document: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Flags {
        profile: format!("{} version {version}", profile(target)),
        problem: format!("is not JSON: {e}"),
    })?;
    let switch = switch_off(&document, &target.flags).map_err(|problem| Error::Flags {
        profile: format!("{} version {version}", profile(target)),
        problem,
    })?;
    Ok((version, switch))
}

/// Creates the new hosted version (guarded by the version it was derived from) and deploys it.
pub(crate) async fn write_and_deploy(
    client: &Client,
    target: &FeatureFlagTarget,
    derived_from: i32,
    document: &Value,
    description: &str,
) -> Result<(i32, i32), Error> {
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
    let version = created.version_number;
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
    Ok((version, deployment.deployment_number))
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
