//! The notifications section: which channels hear which guard events.

use serde::{Deserialize, Serialize};

use crate::model::Severity;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotificationRoute {
    pub channel: Channel,
    #[serde(default)]
    pub min_severity: Severity,
    /// Only these CodeDeploy applications; empty means all.
    #[serde(default)]
    pub applications: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Slack,
    Email,
}
