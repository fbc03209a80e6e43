//! The rollback section: which alarms roll a deployment group back, and what else is undone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Which alarms roll this group back.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub alarms: Vec<AlarmMatcher>,
    /// Also act when an alarm goes to `INSUFFICIENT_DATA`.
    #[serde(default)]
    pub act_on_insufficient_data: bool,
    /// A deployment that succeeded this recently is reverted too (1..=1440).
    #[serde(default = "default_bake_window_minutes")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1440)))]
    pub bake_window_minutes: u32,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub feature_flags: Vec<FeatureFlagTarget>,
}

/// One way of naming alarms: exactly one of `name`, `prefix`, `tag`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(try_from = "AlarmMatcherKeys", into = "AlarmMatcherKeys")]
pub enum AlarmMatcher {
    Name(String),
    Prefix(String),
    Tag { key: String, value: String },
}

/// The document's form of [`AlarmMatcher`]: a map with one of three keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(
    feature = "schema",
    schemars(extend("minProperties" = 1, "maxProperties" = 1))
)]
struct AlarmMatcherKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<TagMatcher>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TagMatcher {
    key: String,
    value: String,
}

impl TryFrom<AlarmMatcherKeys> for AlarmMatcher {
    type Error = String;
    fn try_from(keys: AlarmMatcherKeys) -> Result<Self, String> {
        match keys {
            AlarmMatcherKeys {
                name: Some(n),
                prefix: None,
                tag: None,
            } if !n.is_empty() => Ok(AlarmMatcher::Name(n)),
            AlarmMatcherKeys {
                name: None,
                prefix: Some(p),
                tag: None,
            } if !p.is_empty() => Ok(AlarmMatcher::Prefix(p)),
            AlarmMatcherKeys {
                name: None,
                prefix: None,
                tag: Some(t),
            } => Ok(AlarmMatcher::Tag {
                key: t.key,
                value: t.value,
            }),
            _ => Err(
                "an alarm matcher takes exactly one non-empty key of name, prefix or tag".into(),
            ),
        }
    }
}

impl From<AlarmMatcher> for AlarmMatcherKeys {
    fn from(m: AlarmMatcher) -> Self {
        match m {
            AlarmMatcher::Name(n) => AlarmMatcherKeys {
                name: Some(n),
                ..Default::default()
            },
            AlarmMatcher::Prefix(p) => AlarmMatcherKeys {
                prefix: Some(p),
                ..Default::default()
            },
            AlarmMatcher::Tag { key, value } => AlarmMatcherKeys {
                tag: Some(TagMatcher { key, value }),
                ..Default::default()
            },
        }
    }
}

impl AlarmMatcher {
    /// Whether an alarm with this name and these tags is meant. Tags are only known when the
    /// caller looked them up; a tag matcher never matches without them.
    pub fn matches(&self, alarm_name: &str, tags: &BTreeMap<String, String>) -> bool {
        match self {
            AlarmMatcher::Name(n) => n == alarm_name,
            AlarmMatcher::Prefix(p) => alarm_name.starts_with(p.as_str()),
            AlarmMatcher::Tag { key, value } => tags.get(key) == Some(value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FeatureFlagTarget {
    /// AppConfig application id.
    pub application: String,
    /// AppConfig environment id.
    pub environment: String,
    /// Feature-flag configuration profile id.
    pub profile: String,
    /// Flag keys to switch off.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub flags: Vec<String>,
    #[serde(default = "default_appconfig_strategy")]
    pub strategy: String,
}

fn default_bake_window_minutes() -> u32 {
    60
}
fn default_appconfig_strategy() -> String {
    "AppConfig.AllAtOnce".into()
}

impl RollbackPolicy {
    /// The section's problems; `at` names the deployment group.
    pub(super) fn problems(&self, at: &str, problems: &mut Vec<String>) {
        if self.alarms.is_empty() {
            problems.push(format!(
                "{at}.rollback.alarms: list at least one alarm matcher"
            ));
        }
        if !(1..=1440).contains(&self.bake_window_minutes) {
            problems.push(format!(
                "{at}.rollback.bake-window-minutes: must be 1..=1440 (24 h), found {}",
                self.bake_window_minutes
            ));
        }
        for (i, f) in self.feature_flags.iter().enumerate() {
            if f.flags.is_empty() {
                problems.push(format!(
                    "{at}.rollback.feature-flags[{i}].flags: list at least one flag"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Policy;

    const EXAMPLE: &str = include_str!("../../../examples/policy.yaml");

    #[test]
    fn alarm_matchers_by_name_prefix_and_tag() {
        let p = Policy::parse(EXAMPLE, "example").unwrap();
        let none = BTreeMap::new();
        let names = |alarm: &str, tags: &BTreeMap<String, String>| {
            p.groups_for_alarm(alarm, tags)
                .map(|g| format!("{}/{}", g.application, g.deployment_group))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("checkout-prod-5xx-rate", &none),
            ["checkout/checkout-prod"]
        );
        assert_eq!(
            names("checkout-prod-latency-p99", &none),
            ["checkout/checkout-prod"]
        );
        assert!(names("billing-5xx", &none).is_empty());
        let tags = BTreeMap::from([("safeship:rollback".to_string(), "checkout-prod".to_string())]);
        assert_eq!(names("anything", &tags), ["checkout/checkout-prod"]);
    }
}
