//! The notifier as its tests build it: the real `deploy-notify` dependencies pointed at moto and a
//! local Slack webhook, with a policy that sends everything to Slack and failures by email.

use deploy_notify::deliver::Slack;
use deploy_notify::Deps;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

use crate::emulators::{common_with_policy, moto_endpoint, sdk_config};
use crate::slack::Channels;

pub struct World {
    pub deps: Deps,
    pub channels: Channels,
}

pub async fn world() -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    let channels = Channels::create(&sdk).await;
    let policy = "version: 1
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
    let deps = Deps {
        common: common_with_policy(&sdk, policy).await,
        slack: Some(Slack::new(
            reqwest::Client::new(),
            aws_sdk_secretsmanager::Client::new(&sdk),
            &channels.secret_arn,
            "#deploys",
        )),
        sns: aws_sdk_sns::Client::new(&sdk),
        email_topic: Some(channels.topic_arn.clone()),
    };
    World { deps, channels }
}

impl World {
    pub async fn deliver(&self, event: Value) -> Result<Value, String> {
        deploy_notify::handler(&self.deps, LambdaEvent::new(event, Context::default()))
            .await
            .map_err(|e| e.to_string())
    }
}
