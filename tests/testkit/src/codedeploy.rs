//! CodeDeploy and CloudWatch as the tests, the demo and the benchmark set them up in moto.

use anyhow::Context as _;
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use aws_sdk_codedeploy::types::{
    AppSpecContent, ComputePlatform, RevisionLocation, RevisionLocationType,
};

use crate::emulators::unique;

/// A fresh application and deployment group (unique names), as `(application, group)`.
pub async fn fresh_group(
    client: &aws_sdk_codedeploy::Client,
    platform: ComputePlatform,
) -> (String, String) {
    let app = unique("checkout");
    let group = unique("checkout-prod");
    named_group(client, &app, &group, platform).await;
    (app, group)
}

/// An application and deployment group of these names (in the client's account and region).
pub async fn named_group(
    client: &aws_sdk_codedeploy::Client,
    app: &str,
    group: &str,
    platform: ComputePlatform,
) {
    client
        .create_application()
        .application_name(app)
        .compute_platform(platform)
        .send()
        .await
        .expect("moto CreateApplication");
    client
        .create_deployment_group()
        .application_name(app)
        .deployment_group_name(group)
        .service_role_arn("arn:aws:iam::123456789012:role/codedeploy")
        .send()
        .await
        .expect("moto CreateDeploymentGroup");
}

/// The AppSpec of a Lambda deployment shifting `checkout-api`'s `live` alias from 3 to `target`.
pub fn lambda_appspec(target_version: &str) -> String {
    format!(
        "version: 0.0\nResources:\n  - api:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: checkout-api\n        Alias: live\n        CurrentVersion: \"3\"\n        TargetVersion: \"{target_version}\"\n"
    )
}

/// A deployment of `appspec` (moto keeps it `Created`: in flight) and its id.
pub async fn deployment(
    client: &aws_sdk_codedeploy::Client,
    application: &str,
    group: &str,
    appspec: &str,
) -> anyhow::Result<String> {
    let out = client
        .create_deployment()
        .application_name(application)
        .deployment_group_name(group)
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(AppSpecContent::builder().content(appspec).build())
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_codedeploy::error::DisplayErrorContext(e)))
        .context("moto CreateDeployment")?;
    out.deployment_id
        .context("moto CreateDeployment returned no deploymentId")
}

/// `PutMetricAlarm` of an alarm on target 5xx responses (more than 5 in a minute), to send.
pub fn target_5xx_alarm(
    client: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder {
    client
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
}

/// A metric alarm on target 5xx responses, set to `state`.
pub async fn metric_alarm(
    client: &aws_sdk_cloudwatch::Client,
    name: &str,
    state: StateValue,
    reason: &str,
) -> anyhow::Result<()> {
    target_5xx_alarm(client, name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_cloudwatch::error::DisplayErrorContext(e)))
        .context("moto PutMetricAlarm")?;
    client
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason(reason)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_cloudwatch::error::DisplayErrorContext(e)))
        .context("moto SetAlarmState")?;
    Ok(())
}

/// The bodies of the requests for `operation` (e.g. `StopDeployment`) a wiremock CodeDeploy has
/// received so far, in order.
pub async fn received(mock: &wiremock::MockServer, operation: &str) -> Vec<serde_json::Value> {
    let target = format!("CodeDeploy_20141006.{operation}");
    mock.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.headers
                .get("x-amz-target")
                .is_some_and(|v| v.to_str().unwrap_or_default() == target)
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null))
        .collect()
}
