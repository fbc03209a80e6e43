//! Deployment notifications: CodeDeploy state changes and safeship's guard events, to the
//! channels the policy routes them to.
//!
//! The routing and the messages are pure functions of the event, the policy and the region
//! ([`message`], [`render`]); [`deliver`] posts to Slack and publishes to SNS. Each channel is
//! claimed separately in the idempotency table, so a duplicate delivery sends nothing and a retry
//! after one channel failed does not repeat the one that succeeded.

use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::DeploymentStateChange;
use safeship::event::{DeploymentState, EventError, Inbound};
use safeship::guard::GuardEvent;
use safeship::guard::Outcome;
use safeship::idempotency::Once;
use safeship::policy::{Channel, NotificationPolicy, Severity};
use safeship::runtime::{accept, Common, Failure};
use serde_json::{json, Value};

pub mod deliver;
pub mod message;
pub mod render;

pub use message::deployment_severity;

pub const FUNCTION: &str = "deploy-notify";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error("posting to Slack channel {channel}: {problem}")]
    Slack { channel: String, problem: String },
    #[error("{event}: {} of {total} channels failed: {}", failed.len(), failed.join("; "))]
    ChannelsFailed {
        event: String,
        total: usize,
        failed: Vec<String>,
    },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Slack { .. } => "Slack",
            Error::ChannelsFailed { .. } => "ChannelsFailed",
        }
    }
}

/// What the notifier announces.
enum Notifiable {
    Deployment(DeploymentStateChange),
    Guard(Box<GuardEvent>),
}

pub struct Deps {
    pub common: Common,
    /// Set when the policy routes anything to Slack.
    pub slack: Option<deliver::Slack>,
    pub sns: aws_sdk_sns::Client,
    /// Set when the policy routes anything to email.
    pub email_topic: Option<String>,
    /// Why a deployment failed or stopped (`GetDeployment`'s error and rollback information).
    pub codedeploy: aws_sdk_codedeploy::Client,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let common = Common::load(FUNCTION, env).await?;
        let routes = &common.policy.notifications.routes;
        let routed = |c: Channel| routes.iter().any(|r| r.channel == c);
        let slack = if routed(Channel::Slack) {
            let arn = env.required("SAFESHIP_SLACK_WEBHOOK_SECRET_ARN")?;
            let client = safeship::tls::web_client(
                env,
                concat!("safeship-deploy-notify/", env!("CARGO_PKG_VERSION")),
            )?;
            Some(deliver::Slack::new(
                client,
                aws_sdk_secretsmanager::Client::new(&common.sdk),
                arn,
                env.optional("SAFESHIP_SLACK_CHANNEL").unwrap_or("slack"),
            ))
        } else {
            None
        };
        let email_topic = if routed(Channel::Email) {
            Some(env.required("SAFESHIP_EMAIL_TOPIC_ARN")?.to_owned())
        } else {
            None
        };
        Ok(Deps {
            sns: aws_sdk_sns::Client::new(&common.sdk),
            codedeploy: aws_sdk_codedeploy::Client::new(&common.sdk),
            common,
            slack,
            email_topic,
        })
    }
}

/// The event says only that a deployment failed or stopped; CodeDeploy's `GetDeployment` says why.
/// A notification is never held back for this: if the call fails, the message says so.
async fn add_deployment_reason(deps: &Deps, deployment_id: &str, m: &mut message::Message) {
    match safeship::aws::codedeploy::get_deployment(&deps.codedeploy, deployment_id).await {
        Ok(info) => {
            let (reason, details) = message::deployment_reason(&info);
            m.reason = reason;
            m.details.extend(details);
        }
        Err(e) => {
            tracing::warn!(deployment = deployment_id, error = %e, "could not read why the deployment ended");
            m.details
                .push(format!("CodeDeploy's reason could not be read: {e}"));
        }
    }
}

/// The channels an event of this severity for this application goes to, each once.
pub fn channels(
    policy: &NotificationPolicy,
    application: Option<&str>,
    severity: Severity,
) -> Vec<Channel> {
    let mut out = Vec::new();
    for route in &policy.routes {
        let app_matches = route.applications.is_empty()
            || application.is_some_and(|a| route.applications.iter().any(|r| r == a));
        if app_matches && severity >= route.min_severity && !out.contains(&route.channel) {
            out.push(route.channel);
        }
    }
    out
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let accepted = match accept(FUNCTION, &event.payload, |e| match e {
        Inbound::DeploymentStateChange(d) => Some(Notifiable::Deployment(d)),
        Inbound::Guard(g) => Some(Notifiable::Guard(g)),
        _ => None,
    }) {
        Ok(accepted) => accepted.event,
        // Another EventBridge detail-type on the bus is not ours to announce: a log line, no error.
        Err(safeship::Error::Event(
            e @ (EventError::Unrecognised(_) | EventError::NotHandled { .. }),
        )) if event.payload.get("detail-type").is_some() => {
            tracing::info!(reason = %e, "not a notification: ignored");
            return Ok(json!({"ignored": e.to_string()}));
        }
        Err(e) => return Err(e.into()),
    };
    // A guard event of a kind a newer safeship writes: announcing it wrongly is worse than not.
    if let Notifiable::Guard(g) = &accepted {
        if g.outcome == Outcome::Unknown {
            tracing::warn!(guard_event = %g.id, version = g.version,
                "a guard event of a kind this notifier does not know: ignored");
            return Ok(
                json!({"ignored": format!("guard event {} is of a kind this notifier does not know", g.id)}),
            );
        }
    }
    let region = deps
        .common
        .sdk
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
    let policy = &deps.common.policy;
    let environment = |app: Option<&str>, group: Option<&str>| {
        app.zip(group)
            .and_then(|(a, g)| policy.group(a, g))
            .map(|g| format!("{:?}", g.policy.environment).to_lowercase())
    };
    let message = match &accepted {
        Notifiable::Deployment(d) => {
            let mut m = message::from_deployment(
                d,
                environment(Some(&d.application), Some(&d.deployment_group)).as_deref(),
                &region,
            );
            if matches!(d.state, DeploymentState::Failure | DeploymentState::Stop) {
                add_deployment_reason(deps, &d.deployment_id, &mut m).await;
            }
            m
        }
        Notifiable::Guard(g) => message::from_guard(
            g,
            environment(g.application.as_deref(), g.deployment_group.as_deref()).as_deref(),
            &region,
        ),
    };
    let routed = channels(
        &policy.notifications,
        message.application.as_deref(),
        message.severity,
    );
    let what = render::summary(&message);
    // One notification per event: the same deployment state, or the same guard event, however
    // often and by whichever route it arrives.
    let event_key = match &accepted {
        Notifiable::Deployment(d) => {
            format!("{}:{}", d.deployment_id, message::state_name(d.state))
        }
        Notifiable::Guard(g) => g.id.clone(),
    };
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    let mut duplicate = !routed.is_empty();
    for channel in &routed {
        let key = format!("{event_key}:{channel:?}").to_lowercase();
        let once = deps
            .common
            .idempotency
            .once(&key, || send(deps, *channel, &message))
            .await;
        match once {
            Ok(Once::Ran(detail)) => {
                duplicate = false;
                sent.push(json!({"channel": channel, "detail": detail}));
            }
            Ok(Once::AlreadyDone(_)) => {}
            Err(e) => {
                duplicate = false;
                tracing::error!(?channel, error = %e, "a channel failed");
                failed.push(e.to_string());
            }
        }
    }
    tracing::info!(%what, severity = ?message.severity, ?routed, sent = sent.len(), duplicate, "notification handled");
    if !failed.is_empty() {
        return Err(Error::ChannelsFailed {
            event: what,
            total: routed.len(),
            failed,
        });
    }
    Ok(json!({
        "event": what,
        "severity": message.severity,
        "channels": routed,
        "sent": sent,
        "duplicate": duplicate,
        "preview": {
            "slack": render::slack(&message),
            "email": {"subject": render::email_subject(&message), "body": render::email_body(&message)},
        },
    }))
}

async fn send(deps: &Deps, channel: Channel, message: &message::Message) -> Result<String, Error> {
    match channel {
        Channel::Slack => {
            let slack = deps.slack.as_ref().ok_or_else(|| {
                safeship::Error::config(
                    "SAFESHIP_SLACK_WEBHOOK_SECRET_ARN",
                    "is required when the policy routes to Slack",
                )
            })?;
            slack.post(&render::slack(message)).await?;
            Ok(format!("posted to {}", slack.channel))
        }
        Channel::Email => {
            let topic = deps.email_topic.as_deref().ok_or_else(|| {
                safeship::Error::config(
                    "SAFESHIP_EMAIL_TOPIC_ARN",
                    "is required when the policy routes to email",
                )
            })?;
            let id = deliver::email(
                &deps.sns,
                topic,
                &render::email_subject(message),
                &render::email_body(message),
            )
            .await?;
            Ok(format!("published as SNS message {id}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_send_failures_everywhere_and_info_to_slack() {
        let p = NotificationPolicy::default();
        assert_eq!(
            channels(&p, Some("checkout"), Severity::Info),
            [Channel::Slack]
        );
        assert_eq!(
            channels(&p, Some("checkout"), Severity::Failure),
            [Channel::Slack, Channel::Email]
        );
    }

    #[test]
    fn routes_filter_by_application() {
        let p: NotificationPolicy = serde_json::from_value(json!({"routes": [
            {"channel": "email", "min-severity": "warning", "applications": ["checkout"]}
        ]}))
        .unwrap();
        assert_eq!(
            channels(&p, Some("checkout"), Severity::Warning),
            [Channel::Email]
        );
        assert!(channels(&p, Some("billing"), Severity::Failure).is_empty());
        assert!(channels(&p, None, Severity::Failure).is_empty());
    }
}
