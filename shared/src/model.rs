//! Plain data every layer names: alarm and deployment states, severities, environments. Nothing
//! here depends on another module of the crate, so the event model, the guard events and the
//! policy can all use it without depending on each other.

use serde::{Deserialize, Serialize};

/// Lambda's longest run: the time an invocation is given when its context carries no deadline.
pub const LONGEST_RUN: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The timestamp type of every event and record.
pub type DateTimeUtc = chrono::DateTime<chrono::Utc>;

/// A CloudWatch alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    /// `OK`.
    Ok,
    /// `ALARM`.
    Alarm,
    /// `INSUFFICIENT_DATA`.
    InsufficientData,
}

impl AlarmState {
    /// The state as CloudWatch names it (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    /// The state CloudWatch names `raw`, if any.
    #[must_use]
    pub fn from_name(raw: &str) -> Option<Self> {
        match raw {
            "OK" => Some(AlarmState::Ok),
            "ALARM" => Some(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }
}

/// What kind of alarm changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    /// One metric against a threshold.
    Metric,
    /// A metric-math expression against a threshold.
    MetricMath,
    /// A rule over other alarms.
    Composite,
}

/// A CodeDeploy deployment's state, as its EventBridge notifications name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentState {
    /// `START`.
    Start,
    /// `SUCCESS`.
    Success,
    /// `FAILURE`.
    Failure,
    /// `STOP`.
    Stop,
    /// `READY` (blue/green: waiting for traffic to be rerouted).
    Ready,
}

/// How much an event matters to people, lowest first (ordering is used by routing).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, Serialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// For the record.
    #[default]
    Info,
    /// Someone should look.
    Warning,
    /// Something failed or was undone.
    Failure,
}

/// The environment a deployment group or database belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Environment {
    /// Development.
    Dev,
    /// Staging.
    Staging,
    /// Production.
    Prod,
}

impl Environment {
    /// Snapshot retention when the database's policy names none.
    #[must_use]
    pub fn default_retention_days(self) -> u32 {
        match self {
            Environment::Dev | Environment::Staging => 7,
            Environment::Prod => 30,
        }
    }
}
