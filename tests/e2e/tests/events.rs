//! Every sample in `events/` round-trips: parse → normalise → the expected variant, and each
//! sample is covered here (a new sample without a case fails).

use safeship::event::{
    normalise, AlarmKind, AlarmState, Delivery, DeploymentState, EcsDeploymentState, EcsStage,
    Inbound,
};
use safeship_testkit::emulators::{events_dir, sample_event};

#[derive(Debug)]
enum Expect {
    Hook,
    /// An ECS hook at this stage; whether its traffic is going back (a rollback).
    EcsHook(EcsStage, bool),
    /// An ECS deployment state change, and whether it is a rollback.
    EcsDeployment(EcsDeploymentState, bool),
    Alarm(AlarmKind, AlarmState, &'static str),
    Deployment(DeploymentState),
    Scheduled,
}

const CASES: &[(&str, Expect, &str)] = &[
    (
        "ecs-deployment-in-progress.json",
        Expect::EcsDeployment(EcsDeploymentState::InProgress, false),
        "eventbridge",
    ),
    (
        "ecs-deployment-rollback.json",
        Expect::EcsDeployment(EcsDeploymentState::InProgress, true),
        "eventbridge",
    ),
    (
        "ecs-deployment-completed.json",
        Expect::EcsDeployment(EcsDeploymentState::Completed, false),
        "eventbridge",
    ),
    (
        "ecs-deployment-failed.json",
        Expect::EcsDeployment(EcsDeploymentState::Failed, false),
        "eventbridge",
    ),
    (
        "ecs-lifecycle-pre-scale-up.json",
        Expect::EcsHook(EcsStage::PreScaleUp, false),
        "direct",
    ),
    (
        "ecs-lifecycle-post-test-traffic-shift.json",
        Expect::EcsHook(EcsStage::PostTestTrafficShift, false),
        "direct",
    ),
    (
        "ecs-lifecycle-production-traffic-shift.json",
        Expect::EcsHook(EcsStage::ProductionTrafficShift, false),
        "direct",
    ),
    (
        "ecs-lifecycle-production-traffic-shift-rollback.json",
        Expect::EcsHook(EcsStage::ProductionTrafficShift, true),
        "direct",
    ),
    (
        "codedeploy-lifecycle-before-allow-traffic.json",
        Expect::Hook,
        "direct",
    ),
    (
        "codedeploy-lifecycle-after-allow-traffic.json",
        Expect::Hook,
        "direct",
    ),
    (
        "alarm-eventbridge-metric.json",
        Expect::Alarm(
            AlarmKind::Metric,
            AlarmState::Alarm,
            "checkout-prod-5xx-rate",
        ),
        "eventbridge",
    ),
    (
        "alarm-eventbridge-metric-math.json",
        Expect::Alarm(
            AlarmKind::MetricMath,
            AlarmState::Alarm,
            "checkout-prod-error-ratio",
        ),
        "eventbridge",
    ),
    (
        "alarm-eventbridge-composite.json",
        Expect::Alarm(
            AlarmKind::Composite,
            AlarmState::Alarm,
            "checkout-prod-health",
        ),
        "eventbridge",
    ),
    (
        "alarm-eventbridge-muted.json",
        Expect::Alarm(
            AlarmKind::Metric,
            AlarmState::Alarm,
            "checkout-prod-5xx-rate",
        ),
        "eventbridge",
    ),
    (
        "alarm-eventbridge-ok.json",
        Expect::Alarm(AlarmKind::Metric, AlarmState::Ok, "checkout-prod-5xx-rate"),
        "eventbridge",
    ),
    (
        "alarm-sns-metric.json",
        Expect::Alarm(
            AlarmKind::Metric,
            AlarmState::Alarm,
            "checkout-prod-5xx-rate",
        ),
        "sns",
    ),
    (
        "alarm-sns-composite.json",
        Expect::Alarm(
            AlarmKind::Composite,
            AlarmState::Alarm,
            "checkout-prod-health",
        ),
        "sns",
    ),
    (
        "alarm-lambda-action.json",
        Expect::Alarm(
            AlarmKind::Metric,
            AlarmState::Alarm,
            "checkout-prod-5xx-rate",
        ),
        "direct",
    ),
    (
        "codedeploy-deployment-start.json",
        Expect::Deployment(DeploymentState::Start),
        "eventbridge",
    ),
    (
        "codedeploy-deployment-success.json",
        Expect::Deployment(DeploymentState::Success),
        "eventbridge",
    ),
    (
        "codedeploy-deployment-failure.json",
        Expect::Deployment(DeploymentState::Failure),
        "eventbridge",
    ),
    (
        "codedeploy-deployment-stop.json",
        Expect::Deployment(DeploymentState::Stop),
        "eventbridge",
    ),
    (
        "codedeploy-deployment-ready.json",
        Expect::Deployment(DeploymentState::Ready),
        "eventbridge",
    ),
    ("scheduled-event.json", Expect::Scheduled, "eventbridge"),
];

/// Samples that are not events safeship normalises (a direct invocation of one function).
const FUNCTION_PAYLOADS: &[&str] = &["predeploy-snapshot-direct.json"];

#[test]
fn every_sample_normalises_to_its_variant() {
    for (file, expect, via) in CASES {
        let normalised = normalise(&sample_event(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let delivered = match normalised.delivery {
            Delivery::Direct => "direct",
            Delivery::EventBridge { .. } => "eventbridge",
            Delivery::Sns { .. } => "sns",
        };
        assert_eq!(delivered, *via, "{file}");
        match (expect, &normalised.event) {
            (Expect::Hook, Inbound::LifecycleHook(h)) => {
                assert_eq!(h.deployment_id, "d-ABCDEF123", "{file}");
                assert!(!h.lifecycle_event_hook_execution_id.is_empty(), "{file}");
            }
            (Expect::Alarm(kind, state, name), Inbound::AlarmStateChange(a)) => {
                assert_eq!(
                    (&a.kind, &a.state, a.alarm_name.as_str()),
                    (kind, state, *name),
                    "{file}"
                );
                assert_eq!(a.region.as_deref(), Some("eu-west-1"), "{file}");
                assert!(
                    a.alarm_arn
                        .as_deref()
                        .is_some_and(|arn| arn.ends_with(name)),
                    "{file}: {:?}",
                    a.alarm_arn
                );
            }
            (Expect::Deployment(state), Inbound::DeploymentStateChange(d)) => {
                assert_eq!(d.state, *state, "{file}");
                assert_eq!(
                    (d.application.as_str(), d.deployment_group.as_str()),
                    ("checkout", "checkout-prod"),
                    "{file}"
                );
                assert_eq!(d.deployment_id, "d-ABCDEF123", "{file}");
            }
            (Expect::Scheduled, Inbound::Scheduled(s)) => assert!(!s.rules.is_empty(), "{file}"),
            (Expect::EcsDeployment(state, rollback), Inbound::EcsDeploymentStateChange(d)) => {
                assert_eq!((d.state, d.rolling_back), (*state, *rollback), "{file}");
                assert_eq!(
                    (d.cluster.as_str(), d.service.as_str()),
                    ("checkout", "checkout-api"),
                    "{file}"
                );
                assert_eq!(d.deployment_id, "ecs-svc/2749301756081365290", "{file}");
                assert_eq!(d.region, "eu-west-1", "{file}");
            }
            (Expect::EcsHook(stage, rollback), Inbound::EcsLifecycleHook(h)) => {
                assert_eq!((h.stage, h.is_rollback()), (*stage, *rollback), "{file}");
                assert_eq!(h.service_key(), "checkout/checkout-api", "{file}");
                assert_eq!(h.region, "eu-west-1", "{file}");
                assert!(
                    h.service_deployment_arn.ends_with("/EZe5RNVLH6PPzHXINuP28"),
                    "{file}"
                );
            }
            (expect, got) => panic!("{file}: expected {expect:?}, got {got:?}"),
        }
        // Normalising is deterministic: the same delivery twice gives the same event.
        assert_eq!(
            normalise(&sample_event(file)).unwrap(),
            normalised,
            "{file}"
        );
    }
}

#[test]
fn the_same_transition_has_one_key_whichever_route_delivers_it() {
    let key = |file: &str| match normalise(&sample_event(file)).unwrap().event {
        Inbound::AlarmStateChange(a) => a.transition_key(),
        other => panic!("{file}: {other:?}"),
    };
    assert_eq!(
        key("alarm-eventbridge-metric.json"),
        key("alarm-sns-metric.json")
    );
}

fn alarm(event: &serde_json::Value) -> safeship::event::AlarmStateChange {
    match normalise(event).unwrap().event {
        Inbound::AlarmStateChange(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_sns_alarm_without_its_arn_has_the_key_of_the_same_transition_on_eventbridge() {
    let mut sns = sample_event("alarm-sns-metric.json");
    let mut message: serde_json::Value =
        serde_json::from_str(sns["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    message.as_object_mut().unwrap().remove("AlarmArn");
    sns["Records"][0]["Sns"]["Message"] = serde_json::json!(message.to_string());
    let without_arn = alarm(&sns);
    let eventbridge = alarm(&sample_event("alarm-eventbridge-metric.json"));
    assert_eq!(without_arn.transition_key(), eventbridge.transition_key());
    assert_eq!(without_arn.alarm_arn, eventbridge.alarm_arn);
    assert_eq!(without_arn.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn a_muted_transition_names_its_mute_rule() {
    let muted = alarm(&sample_event("alarm-eventbridge-muted.json"));
    let mute = muted.muted.as_ref().expect("muteDetail read");
    assert_eq!(mute.rule(), "checkout-prod-maintenance-window");
    assert_eq!(
        muted.actions_held_back().as_deref(),
        Some(
            "ignored: muted by checkout-prod-maintenance-window \
             (arn:aws:cloudwatch:eu-west-1:123456789012:alarm-mute-rule:checkout-prod-maintenance-window) \
             (mute window 2026-11-20T10:00:00.000+0000 to 2026-11-20T11:00:00.000+0000)"
        )
    );
    // The same transition muted or not: one key.
    assert_eq!(
        muted.transition_key(),
        alarm(&sample_event("alarm-eventbridge-metric.json")).transition_key()
    );
    assert_eq!(
        alarm(&sample_event("alarm-eventbridge-metric.json")).actions_held_back(),
        None
    );
}

#[test]
fn a_composite_alarm_with_suppressed_actions_names_its_suppressor() {
    let composite = alarm(&sample_event("alarm-eventbridge-composite.json"));
    assert_eq!(
        composite.actions_held_back().as_deref(),
        Some("ignored: actions suppressed by checkout-prod-maintenance: Actions suppressed by WaitPeriod")
    );
    // By SNS the actions ran: CloudWatch sends nothing while they are suppressed.
    assert_eq!(
        alarm(&sample_event("alarm-sns-composite.json")).actions_held_back(),
        None
    );
}

#[test]
fn every_sample_file_has_a_case() {
    let mut files: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    for f in &files {
        assert!(
            CASES.iter().any(|(c, _, _)| c == f) || FUNCTION_PAYLOADS.contains(&f.as_str()),
            "events/{f} has no round-trip case"
        );
    }
}
