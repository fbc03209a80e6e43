//! Which deployment groups an alarm transition concerns: pure functions of the policy and the
//! alarm (its name, tags and state).

use std::collections::BTreeMap;

use safeship::event::{AlarmState, AlarmStateChange};
use safeship::policy::{Deployer, GroupRef, Policy, Site};
use serde::Serialize;

/// What an alarm transition asks of us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Nothing to do, and why.
    Ignore { reason: String },
    /// Roll back these `application/deployment-group`s.
    RollBack { groups: Vec<String> },
    /// These groups would be rolled back, but CloudWatch held the transition's actions back (an
    /// alarm mute rule, or a composite alarm's actions suppressor): nothing is done, and the
    /// guard events say why (`reason`, "ignored: muted by …").
    HeldBack { groups: Vec<String>, reason: String },
}

/// A group as decisions, reports and idempotency keys name it: `application/deployment-group`.
/// An ECS service is `ecs:<cluster>/<service>`, so it never shares a name (nor a once-only key)
/// with a CodeDeploy group of the same two names.
pub(crate) fn group_name(group: &GroupRef<'_>) -> String {
    match group.deployer {
        Deployer::CodeDeploy => format!("{}/{}", group.application, group.deployment_group),
        Deployer::Ecs => format!("ecs:{}/{}", group.application, group.deployment_group),
    }
}

/// Whether some group of the policy maps alarms by tag.
#[cfg(test)]
fn matches_by_tag(policy: &Policy) -> bool {
    policy.groups_mapping_by_tag().next().is_some()
}

/// Whether the alarm's tags could change the decision, so they must be looked up first: only
/// when a group that acts on the alarm's new state maps alarms by tag and does not already map
/// this one by name or prefix. An `OK` transition, or one no tag-mapping group acts on, is
/// decided without any AWS call.
pub(crate) fn needs_tags(policy: &Policy, site: &Site<'_>, alarm: &AlarmStateChange) -> bool {
    let by_name: Vec<String> = policy
        .groups_for_alarm(&alarm.alarm_name, &BTreeMap::new())
        .map(|g| group_name(&g))
        .collect();
    policy.groups_mapping_by_tag().any(|g| {
        g.is_at(policy, site) && acts_on(alarm.state, &g) && !by_name.contains(&group_name(&g))
    })
}

/// Whether an alarm in `state` rolls `group` back: `ALARM` always, `INSUFFICIENT_DATA` where the
/// group asks for it, `OK` never.
fn acts_on(state: AlarmState, group: &GroupRef<'_>) -> bool {
    match state {
        AlarmState::Alarm => true,
        AlarmState::InsufficientData => group
            .policy
            .rollback
            .as_ref()
            .is_some_and(|r| r.act_on_insufficient_data),
        AlarmState::Ok => false,
    }
}

/// The groups at `site` that the alarm maps to, in policy order.
pub(crate) fn mapped_at<'a>(
    policy: &'a Policy,
    site: &Site<'_>,
    alarm: &AlarmStateChange,
    alarm_tags: &BTreeMap<String, String>,
) -> Vec<GroupRef<'a>> {
    policy
        .groups_for_alarm(&alarm.alarm_name, alarm_tags)
        .filter(|g| g.is_at(policy, site))
        .collect()
}

/// Which groups at `site` (where the alarm is) an alarm transition rolls back. `alarm_tags`
/// are the alarm's tags where looked up.
pub(crate) fn decide(
    policy: &Policy,
    site: &Site<'_>,
    alarm: &AlarmStateChange,
    alarm_tags: &BTreeMap<String, String>,
) -> Decision {
    let mapped = mapped_at(policy, site, alarm, alarm_tags);
    if mapped.is_empty() {
        let somewhere = policy
            .groups_for_alarm(&alarm.alarm_name, alarm_tags)
            .next()
            .is_some();
        return Decision::Ignore {
            reason: if somewhere {
                format!(
                    "alarm {} is mapped to no deployment group in {}",
                    alarm.alarm_name,
                    site.describe()
                )
            } else {
                format!(
                    "alarm {} is mapped to no deployment group",
                    alarm.alarm_name
                )
            },
        };
    }
    let acting: Vec<String> = mapped
        .iter()
        .filter(|g| acts_on(alarm.state, g))
        .map(group_name)
        .collect();
    if acting.is_empty() {
        return Decision::Ignore {
            reason: format!(
                "alarm {} went to {:?}, which rolls nothing back",
                alarm.alarm_name, alarm.state
            ),
        };
    }
    // CloudWatch performs none of a muted or suppressed transition's actions; EventBridge still
    // delivers it, and safeship honours the mute as the alarm's own actions do.
    match alarm.actions_held_back() {
        Some(reason) => Decision::HeldBack {
            groups: acting,
            reason,
        },
        None => Decision::RollBack { groups: acting },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::event::{normalise, AlarmKind, Inbound};

    const POLICY: &str = include_str!("../../../examples/policy.yaml");

    fn alarm(name: &str, state: AlarmState) -> AlarmStateChange {
        AlarmStateChange {
            alarm_name: name.into(),
            alarm_arn: None,
            account: None,
            region: None,
            kind: AlarmKind::Metric,
            state,
            previous_state: None,
            reason: String::new(),
            state_changed_at: chrono_now(),
            muted: None,
            suppressed: None,
        }
    }

    fn chrono_now() -> safeship::event::DateTimeUtc {
        safeship::event::parse_time("t", "t", "2026-11-20T10:00:00Z").unwrap()
    }

    #[test]
    fn alarm_state_rolls_back_the_mapped_group() {
        let p = Policy::parse(POLICY, "example").unwrap();
        assert_eq!(
            decide(
                &p,
                &Site::Hub,
                &alarm("checkout-prod-5xx-rate", AlarmState::Alarm),
                &BTreeMap::new()
            ),
            Decision::RollBack {
                groups: vec!["checkout/checkout-prod".into()]
            }
        );
    }

    #[test]
    fn ok_insufficient_data_and_unmapped_are_ignored() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let none = BTreeMap::new();
        assert!(matches!(
            decide(
                &p,
                &Site::Hub,
                &alarm("checkout-prod-5xx-rate", AlarmState::Ok),
                &none
            ),
            Decision::Ignore { .. }
        ));
        assert!(matches!(
            decide(
                &p,
                &Site::Hub,
                &alarm("checkout-prod-5xx-rate", AlarmState::InsufficientData),
                &none
            ),
            Decision::Ignore { .. }
        ));
        let Decision::Ignore { reason } = decide(
            &p,
            &Site::Hub,
            &alarm("billing-errors", AlarmState::Alarm),
            &none,
        ) else {
            panic!("unmapped alarm acted on")
        };
        assert!(reason.contains("mapped to no deployment group"), "{reason}");
    }

    #[test]
    fn alarms_match_by_prefix_and_by_tag() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let rolled_back = Decision::RollBack {
            groups: vec!["checkout/checkout-prod".into()],
        };
        let none = BTreeMap::new();
        let latency = alarm("checkout-prod-latency-p99", AlarmState::Alarm);
        assert_eq!(decide(&p, &Site::Hub, &latency, &none), rolled_back);
        let tagged = alarm("some-other-alarm", AlarmState::Alarm);
        assert!(matches!(
            decide(&p, &Site::Hub, &tagged, &none),
            Decision::Ignore { .. }
        ));
        let tags = BTreeMap::from([("safeship:rollback".into(), "checkout-prod".into())]);
        assert_eq!(decide(&p, &Site::Hub, &tagged, &tags), rolled_back);
    }

    #[test]
    fn tags_are_looked_up_only_for_a_policy_matching_by_tag() {
        assert!(matches_by_tag(&Policy::parse(POLICY, "example").unwrap()));
        let by_name = POLICY.replace(
            "            - tag: {key: \"safeship:rollback\", value: checkout-prod}\n",
            "",
        );
        assert_ne!(by_name, POLICY);
        assert!(!matches_by_tag(
            &Policy::parse(&by_name, "example").unwrap()
        ));
    }

    #[test]
    fn a_muted_or_suppressed_transition_is_held_back_for_the_groups_it_would_roll_back() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let none = BTreeMap::new();
        let mut muted = alarm("checkout-prod-5xx-rate", AlarmState::Alarm);
        muted.muted = Some(safeship::event::Mute {
            rule_arn: "arn:aws:cloudwatch:eu-west-1:1:alarm-mute-rule:window".into(),
            window_start: None,
            window_end: None,
        });
        assert_eq!(
            decide(&p, &Site::Hub, &muted, &none),
            Decision::HeldBack {
                groups: vec!["checkout/checkout-prod".into()],
                reason: "ignored: muted by window (arn:aws:cloudwatch:eu-west-1:1:alarm-mute-rule:window)".into()
            }
        );
        let mut suppressed = alarm("checkout-prod-5xx-rate", AlarmState::Alarm);
        suppressed.suppressed = Some(safeship::event::Suppression {
            by: "Alarm".into(),
            reason: "Actions suppressed by checkout-prod-maintenance".into(),
            suppressor: Some("checkout-prod-maintenance".into()),
        });
        let Decision::HeldBack { reason, .. } = decide(&p, &Site::Hub, &suppressed, &none) else {
            panic!("a suppressed transition acted")
        };
        assert_eq!(
            reason,
            "ignored: actions suppressed by checkout-prod-maintenance: Actions suppressed by checkout-prod-maintenance"
        );
        // A muted OK transition is just an OK transition.
        let mut ok = muted.clone();
        ok.state = AlarmState::Ok;
        assert!(matches!(
            decide(&p, &Site::Hub, &ok, &none),
            Decision::Ignore { .. }
        ));
    }

    #[test]
    fn tags_are_needed_only_where_they_could_change_the_decision() {
        let p = Policy::parse(POLICY, "example").unwrap();
        // Mapped by name already: the tag matcher cannot add the group again.
        assert!(!needs_tags(
            &p,
            &Site::Hub,
            &alarm("checkout-prod-5xx-rate", AlarmState::Alarm)
        ));
        // OK rolls nothing back whatever the tags; INSUFFICIENT_DATA neither, here.
        assert!(!needs_tags(
            &p,
            &Site::Hub,
            &alarm("some-other-alarm", AlarmState::Ok)
        ));
        assert!(!needs_tags(
            &p,
            &Site::Hub,
            &alarm("some-other-alarm", AlarmState::InsufficientData)
        ));
        // ALARM for an alarm no name maps: only its tags can say.
        assert!(needs_tags(
            &p,
            &Site::Hub,
            &alarm("some-other-alarm", AlarmState::Alarm)
        ));
    }

    #[test]
    fn groups_are_named_application_slash_group() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let names: Vec<_> = p.groups().map(|g| group_name(&g)).collect();
        assert!(
            names.contains(&"checkout/checkout-prod".to_owned()),
            "{names:?}"
        );
    }

    #[test]
    fn sample_events_decide_as_expected() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let raw = include_str!("../../../events/alarm-eventbridge-metric.json");
        let Inbound::AlarmStateChange(a) = normalise(&serde_json::from_str(raw).unwrap())
            .unwrap()
            .event
        else {
            panic!("not an alarm")
        };
        assert!(matches!(
            decide(&p, &Site::Hub, &a, &BTreeMap::new()),
            Decision::RollBack { .. }
        ));
    }
}
