//! The notifier as its tests build it: the real `deploy-notify` dependencies pointed at moto and a
//! local Slack webhook, with a policy that sends everything to Slack and failures by email.

use deploy_notify::deliver::Slack;
use deploy_notify::Deps;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::emulators::{common_with_policy, moto_endpoint, sdk_config};
use crate::slack::Channels;

pub struct World {
    pub deps: Deps,
    pub channels: Channels,
    /// CodeDeploy's `GetDeployment` for the sample deployment `d-ABCDEF123`, which failed health
    /// constraints and was rolled back (wiremock: moto's deployments never fail).
    pub codedeploy: MockServer,
}

/// What `GetDeployment` says of the samples' failed deployment.
pub const FAILURE_REASON: &str =
    "HEALTH_CONSTRAINTS: The overall deployment failed because too many individual instances failed deployment";

/// The tests' policy: the checkout application, everything to Slack, failures by email.
pub const POLICY: &str = "version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
notifications:
  routes:
    - {channel: slack, min-severity: info}
    - {channel: email, min-severity: failure}
";

pub async fn world() -> World {
    world_with_policy(POLICY).await
}

/// The notifier posting to Slack's Web API with a bot token: a deployment's messages threaded.
pub async fn threaded_world() -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    world_with(POLICY, Channels::create_with_bot(&sdk).await).await
}

/// The notifier with another policy (its routes, say).
pub async fn world_with_policy(policy: &str) -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    world_with(policy, Channels::create(&sdk).await).await
}

async fn world_with(policy: &str, channels: Channels) -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    let codedeploy = MockServer::start().await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.GetDeployment"))
        .and(body_json(json!({"deploymentId": "d-ABCDEF123"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"deploymentInfo": {
            "applicationName": "checkout",
            "deploymentGroupName": "checkout-prod",
            "deploymentId": "d-ABCDEF123",
            "status": "Failed",
            "errorInformation": {
                "code": "HEALTH_CONSTRAINTS",
                "message": "The overall deployment failed because too many individual instances failed deployment"
            },
            "rollbackInfo": {
                "rollbackDeploymentId": "d-ROLLBACK1",
                "rollbackMessage": "Automatic rollback triggered by a deployment failure"
            }
        }})))
        .mount(&codedeploy)
        .await;
    let deps = Deps {
        codedeploy: aws_sdk_codedeploy::Client::from_conf(
            aws_sdk_codedeploy::Config::from(&sdk)
                .to_builder()
                .endpoint_url(codedeploy.uri())
                .build(),
        ),
        common: common_with_policy(&sdk, policy).await,
        slack: Some(
            Slack::new(
                reqwest::Client::new(),
                aws_sdk_secretsmanager::Client::new(&sdk),
                &channels.secret_arn,
                "#deploys",
            )
            .with_api(&channels.slack.api_url()),
        ),
        sns: aws_sdk_sns::Client::new(&sdk),
        email_topic: Some(channels.topic_arn.clone()),
        margin: deploy_notify::DEFAULT_MARGIN,
        own_alarm_prefix: None,
        history: None,
    };
    World {
        deps,
        channels,
        codedeploy,
    }
}

impl World {
    /// One delivery without a deadline (a direct call: Lambda's longest run).
    pub async fn deliver(&self, event: Value) -> Result<Value, String> {
        deploy_notify::handler(&self.deps, LambdaEvent::new(event, Context::default()))
            .await
            .map_err(|e| e.to_string())
    }

    /// One delivery as Lambda makes it: with a deadline `within` from now, its claims bounded
    /// by it. The error is the function's (its kind and message).
    pub async fn deliver_within(
        &self,
        event: Value,
        within: std::time::Duration,
    ) -> Result<Value, deploy_notify::Error> {
        let deadline_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
            + u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        let mut context = Context::default();
        context.deadline = deadline_ms;
        safeship::idempotency::within_invocation(
            deadline_ms,
            deploy_notify::handler(&self.deps, LambdaEvent::new(event, context)),
        )
        .await
    }
}
