//! Deployment notifications: CodeDeploy state changes and safeship's guard events, to the
//! channels the policy routes them to.
//!
//! Foundation stage: this decides the routing (a pure function of policy, application and
//! severity) and reports it. Posting to Slack and publishing email land in their own issue; until
//! then no message is sent.

use lambda_runtime::LambdaEvent;
use safeship::config::Env;
use safeship::event::{DeploymentState, EventError, Inbound};
use safeship::lambda::{accept, Common};
use safeship::policy::{Channel, NotificationPolicy, Severity};
use serde_json::{json, Value};

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

pub fn deployment_severity(state: DeploymentState) -> Severity {
    match state {
        DeploymentState::Start | DeploymentState::Ready | DeploymentState::Success => {
            Severity::Info
        }
        DeploymentState::Stop => Severity::Warning,
        DeploymentState::Failure => Severity::Failure,
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
    let (application, severity, what) = match &normalised.event {
        Inbound::DeploymentStateChange(d) => (
            Some(d.application.clone()),
            deployment_severity(d.state),
            format!("deployment {} {:?}", d.deployment_id, d.state),
        ),
        Inbound::Guard(g) => (
            g.application.clone(),
            g.outcome.severity(),
            format!(
                "{} {}",
                g.outcome.kind(),
                g.deployment_id.as_deref().unwrap_or("")
            ),
        ),
        _ => unreachable!("accept keeps deployment and guard events only"),
    };
    let routed = channels(
        &deps.common.policy.notifications,
        application.as_deref(),
        severity,
    );
    tracing::info!(%what, ?severity, ?routed, "notification routed");
    Ok(json!({"event": what, "severity": severity, "channels": routed, "sent": []}))
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
