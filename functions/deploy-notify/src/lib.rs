//! Deployment notifications: CodeDeploy state changes and safeship's guard events, to the
//! channels the policy routes them to.
//!
//! In this version the routing and the messages are built (pure functions of the event, the
//! policy and the region: [`message`], [`render`]) and returned as a preview; delivering them to
//! Slack and SNS is not built yet, so nothing is sent.

use lambda_runtime::LambdaEvent;
use safeship::config::Env;
use safeship::event::{EventError, Inbound};
use safeship::lambda::{accept, Common};
use safeship::policy::{Channel, NotificationPolicy, Severity};
use serde_json::{json, Value};

pub mod message;
pub mod render;

pub use message::deployment_severity;

pub const FUNCTION: &str = "deploy-notify";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Event(#[from] EventError),
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        safeship::lambda::diagnostic(FUNCTION, &e)
    }
}

pub struct Deps {
    pub common: Common,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        Ok(Deps {
            common: Common::load(env).await?,
        })
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
    let normalised = accept(FUNCTION, &event.payload, |e| {
        matches!(e, Inbound::DeploymentStateChange(_) | Inbound::Guard(_))
    })?;
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
    let message = match &normalised.event {
        Inbound::DeploymentStateChange(d) => message::from_deployment(
            d,
            environment(Some(&d.application), Some(&d.deployment_group)).as_deref(),
            &region,
        ),
        Inbound::Guard(g) => message::from_guard(
            g,
            environment(g.application.as_deref(), g.deployment_group.as_deref()).as_deref(),
            &region,
        ),
        _ => unreachable!("accept keeps deployment and guard events only"),
    };
    let routed = channels(
        &policy.notifications,
        message.application.as_deref(),
        message.severity,
    );
    let what = render::summary(&message);
    tracing::info!(%what, severity = ?message.severity, ?routed, "notification routed");
    Ok(json!({
        "event": what,
        "severity": message.severity,
        "channels": routed,
        "preview": {
            "slack": render::slack(&message),
            "email": {"subject": render::email_subject(&message), "body": render::email_body(&message)},
        },
        "sent": [],
    }))
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
