//! The notifications section: which channels hear which guard events.
//!
//! # Routing rule
//!
//! A route takes an event when the event's severity reaches the route's `min-severity` and
//! - the route lists no `applications` (it hears everything), or
//! - the event names an application and the route lists it.
//!
//! So an event without an application (a guard event about a database, the snapshot quota, an
//! alarm mapped to no deployment group) reaches the routes that list no applications, never an
//! application-scoped one: such a route promised its audience one application's news, and the
//! event does not say it is that application's. When no route takes an event,
//! [`NotificationPolicy::route`] says why, so the notifier answers and logs that it was dropped
//! rather than dropping it silently.

use serde::{Deserialize, Serialize};

use crate::model::Severity;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotificationPolicy {
    pub routes: Vec<NotificationRoute>,
}

impl Default for NotificationPolicy {
    /// Slack hears everything; email only failures and rollbacks.
    fn default() -> Self {
        NotificationPolicy {
            routes: vec![
                NotificationRoute {
                    channel: Channel::Slack,
                    min_severity: Severity::Info,
                    applications: Vec::new(),
                },
                NotificationRoute {
                    channel: Channel::Email,
                    min_severity: Severity::Failure,
                    applications: Vec::new(),
                },
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotificationRoute {
    pub channel: Channel,
    #[serde(default)]
    pub min_severity: Severity,
    /// Only these CodeDeploy applications; empty means all, events without an application too.
    #[serde(default)]
    pub applications: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Slack,
    Email,
}

/// Where one event goes: each channel once, in the order the routes name them; when none,
/// why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub channels: Vec<Channel>,
    /// Set when `channels` is empty: why no route took the event.
    pub dropped: Option<String>,
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Failure => "failure",
    }
}

impl NotificationRoute {
    /// Whether this route takes an event of `application` (if it names one) and `severity`:
    /// the rule in this module's documentation.
    #[must_use]
    pub fn takes(&self, application: Option<&str>, severity: Severity) -> bool {
        let app_matches = self.applications.is_empty()
            || application.is_some_and(|a| self.applications.iter().any(|r| r == a));
        app_matches && severity >= self.min_severity
    }
}

impl NotificationPolicy {
    /// The channels an event of this severity for this application goes to, each once; when
    /// none, why.
    #[must_use]
    pub fn route(&self, application: Option<&str>, severity: Severity) -> Routing {
        let mut channels = Vec::new();
        for route in &self.routes {
            if route.takes(application, severity) && !channels.contains(&route.channel) {
                channels.push(route.channel);
            }
        }
        let dropped = channels.is_empty().then(|| {
            let severe_enough: Vec<&NotificationRoute> = self
                .routes
                .iter()
                .filter(|r| severity >= r.min_severity)
                .collect();
            let level = severity_name(severity);
            if severe_enough.is_empty() {
                format!("no route takes {level} events")
            } else {
                let scoped: Vec<&str> = severe_enough
                    .iter()
                    .flat_map(|r| r.applications.iter().map(String::as_str))
                    .collect();
                match application {
                    None => format!(
                        "the event names no application and every route that takes {level} \
                         events is scoped to applications ({}); a route without applications \
                         would hear it",
                        scoped.join(", ")
                    ),
                    Some(a) => format!(
                        "no route that takes {level} events lists application {a} (they list {})",
                        scoped.join(", ")
                    ),
                }
            }
        });
        Routing { channels, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(routes: serde_json::Value) -> NotificationPolicy {
        serde_json::from_value(serde_json::json!({ "routes": routes })).unwrap()
    }

    #[test]
    fn default_routes_send_failures_everywhere_and_info_to_slack() {
        let p = NotificationPolicy::default();
        assert_eq!(
            p.route(Some("checkout"), Severity::Info).channels,
            [Channel::Slack]
        );
        assert_eq!(
            p.route(Some("checkout"), Severity::Failure).channels,
            [Channel::Slack, Channel::Email]
        );
        assert_eq!(
            p.route(None, Severity::Failure).channels,
            [Channel::Slack, Channel::Email]
        );
    }

    #[test]
    fn routes_filter_by_application() {
        let p = policy(serde_json::json!([
            {"channel": "email", "min-severity": "warning", "applications": ["checkout"]}
        ]));
        assert_eq!(
            p.route(Some("checkout"), Severity::Warning),
            Routing {
                channels: vec![Channel::Email],
                dropped: None
            }
        );
        assert_eq!(
            p.route(Some("billing"), Severity::Failure)
                .dropped
                .as_deref(),
            Some(
                "no route that takes failure events lists application billing (they list checkout)"
            )
        );
        assert_eq!(
            p.route(Some("checkout"), Severity::Info).dropped.as_deref(),
            Some("no route takes info events")
        );
    }

    #[test]
    fn events_without_an_application_reach_the_unscoped_routes_only() {
        let p = policy(serde_json::json!([
            {"channel": "email", "min-severity": "failure", "applications": ["checkout"]},
            {"channel": "slack", "min-severity": "warning"}
        ]));
        assert_eq!(p.route(None, Severity::Failure).channels, [Channel::Slack]);
        assert_eq!(
            p.route(Some("checkout"), Severity::Failure).channels,
            [Channel::Email, Channel::Slack]
        );
        let scoped_only = policy(serde_json::json!([
            {"channel": "email", "min-severity": "failure", "applications": ["checkout", "billing"]}
        ]));
        let routing = scoped_only.route(None, Severity::Failure);
        assert!(routing.channels.is_empty());
        assert_eq!(
            routing.dropped.as_deref(),
            Some("the event names no application and every route that takes failure events is scoped to applications (checkout, billing); a route without applications would hear it")
        );
    }
}
