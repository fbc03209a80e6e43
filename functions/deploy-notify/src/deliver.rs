//! Delivering a message: Slack's incoming webhook (URL from Secrets Manager, cached, never
//! printed) and email through an SNS topic.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::Error;

/// At most this many attempts at one Slack post (429 and 5xx are retried).
const SLACK_ATTEMPTS: u32 = 4;
/// A `Retry-After` longer than this is not waited for: the invocation fails and is retried.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct Slack {
    client: reqwest::Client,
    secrets: aws_sdk_secretsmanager::Client,
    secret_arn: String,
    /// How errors name the destination: a channel name, never the URL.
    pub channel: String,
    url: OnceCell<SecretString>,
}

impl Slack {
    pub fn new(
        client: reqwest::Client,
        secrets: aws_sdk_secretsmanager::Client,
        secret_arn: impl Into<String>,
        channel: impl Into<String>,
    ) -> Self {
        Slack {
            client,
            secrets,
            secret_arn: secret_arn.into(),
            channel: channel.into(),
            url: OnceCell::new(),
        }
    }

    /// The webhook URL, read once per cold start. The secret is the URL itself or JSON with a
    /// `webhook_url` key.
    async fn url(&self) -> Result<&SecretString, Error> {
        self.url
            .get_or_try_init(|| async {
                let out = self
                    .secrets
                    .get_secret_value()
                    .secret_id(&self.secret_arn)
                    .send()
                    .await
                    .map_err(|e| {
                        safeship::Error::aws(
                            "secretsmanager:GetSecretValue",
                            format!("Slack webhook secret {}", self.secret_arn),
                            e,
                        )
                    })?;
                let text = out.secret_string.unwrap_or_default();
                let url = match serde_json::from_str::<Value>(&text) {
                    Ok(v) => v["webhook_url"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::Slack {
                            channel: self.channel.clone(),
                            problem: format!(
                                "secret {} is JSON without a webhook_url key",
                                self.secret_arn
                            ),
                        })?,
                    Err(_) => text.trim().to_owned(),
                };
                Ok::<_, Error>(SecretString::from(url))
            })
            .await
    }

    /// Posts the Block Kit payload. 429 waits `Retry-After`; 5xx and network errors back off;
    /// any other refusal is an error naming the channel and Slack's reason, not the URL.
    pub async fn post(&self, payload: &Value) -> Result<(), Error> {
        let url = self.url().await?;
        let mut pause = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=SLACK_ATTEMPTS {
            let sent = self
                .client
                .post(url.expose_secret())
                .json(payload)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().as_u16() == 429 => {
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(pause, Duration::from_secs);
                    last = format!("rate limited (429, Retry-After {} s)", wait.as_secs());
                    if wait > MAX_RETRY_AFTER {
                        break;
                    }
                    tracing::warn!(channel = %self.channel, attempt, wait_s = wait.as_secs(), "Slack rate limit");
                    tokio::time::sleep(wait).await;
                }
                Ok(r) if r.status().is_server_error() => {
                    last = format!("Slack answered {}", r.status().as_u16());
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let reason = r.text().await.unwrap_or_default();
                    return Err(Error::Slack {
                        channel: self.channel.clone(),
                        problem: format!("Slack refused the message ({status}): {}", reason.trim()),
                    });
                }
                Err(e) => {
                    // reqwest's message carries the URL: keep only the kind of failure.
                    last = if e.is_timeout() {
                        "timed out".into()
                    } else if e.is_connect() {
                        "could not connect".into()
                    } else {
                        "request failed".into()
                    };
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        Err(Error::Slack {
            channel: self.channel.clone(),
            problem: format!("gave up after {SLACK_ATTEMPTS} attempts: {last}"),
        })
    }
}

/// Email subscribers of an SNS topic.
pub async fn email(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    subject: &str,
    body: &str,
) -> Result<String, Error> {
    let out = sns
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(body)
        .send()
        .await
        .map_err(|e| safeship::Error::aws("sns:Publish", format!("email topic {topic_arn}"), e))?;
    Ok(out.message_id.unwrap_or_default())
}
