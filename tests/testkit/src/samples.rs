//! The samples in `events/` as the reliability suite delivers them (issue 18): each with the
//! function its trigger delivers it to and what one delivery does in a fresh [`World`] with
//! one deployment in flight, written out so that a sample that silently does nothing fails.
//!
//! A sample is delivered as AWS would deliver it to that world: its deployment id is the
//! world's deployment in flight and its times are now; everything else is the sample's.

use std::time::Duration;

use serde_json::{json, Value};

use crate::effects::Effects;
use crate::emulators::{sample_event, unique};
use crate::runtime::Answer;
use crate::world::World;

/// One sample and the function its trigger delivers it to.
pub struct Case {
    /// How the world's notifier reaches Slack.
    pub slack: SlackMode,
    pub function: &'static str,
    pub sample: &'static str,
    /// What one delivery does in a fresh world with one deployment in flight.
    pub once: Effects,
}

const NOTHING: Effects = Effects::NONE;

/// How a world's notifier reaches Slack: with a bot token through the Web API (messages can be
/// read back, and a deployment's are one thread), or by an incoming webhook (neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    Bot,
    Webhook,
}

/// The notifier's cases again, in a world whose Slack is an incoming webhook (the crash suite
/// and the fault matrix walk both ways in).
pub fn webhook_cases() -> Vec<Case> {
    cases()
        .into_iter()
        .filter(|c| {
            c.function == "deploy-notify"
                && matches!(
                    c.sample,
                    "codedeploy-deployment-start.json" | "codedeploy-deployment-failure.json"
                )
        })
        .map(|c| Case {
            slack: SlackMode::Webhook,
            ..c
        })
        .collect()
}

pub fn cases() -> Vec<Case> {
    // The hook's verdict is a guard event too.
    let hook = Effects {
        hook_reports: 1,
        guard_events: 1,
        ..NOTHING
    };
    // The deployment stopped and the flags switched off, each announced.
    let rollback = Effects {
        stops: 1,
        flag_versions: 1,
        flag_deployments: 1,
        guard_events: 2,
        ..NOTHING
    };
    // snapshot-started and snapshot-available.
    let snapshot = Effects {
        snapshots_created: 1,
        guard_events: 2,
        ..NOTHING
    };
    let mut cases = vec![
        Case {
            slack: SlackMode::Bot,
            function: "traffic-hook",
            sample: "codedeploy-lifecycle-before-allow-traffic.json",
            once: hook,
        },
        Case {
            slack: SlackMode::Bot,
            function: "traffic-hook",
            sample: "codedeploy-lifecycle-after-allow-traffic.json",
            once: hook,
        },
        // The pre-deploy snapshot as a lifecycle hook of its own: snapshot, then report. (A
        // group hooks one of the two; in the interleaved world both answer the sample's hook.)
        Case {
            slack: SlackMode::Bot,
            function: "predeploy-snapshot",
            sample: "codedeploy-lifecycle-before-allow-traffic.json",
            once: Effects {
                hook_reports: 1,
                ..snapshot
            },
        },
        Case {
            slack: SlackMode::Bot,
            function: "predeploy-snapshot",
            sample: "codedeploy-deployment-start.json",
            once: snapshot,
        },
        Case {
            slack: SlackMode::Bot,
            function: "predeploy-snapshot",
            sample: "predeploy-snapshot-direct.json",
            once: snapshot,
        },
        Case {
            slack: SlackMode::Bot,
            function: "integrity-check",
            sample: "scheduled-event.json",
            once: NOTHING,
        },
    ];
    for (sample, once) in [
        ("alarm-eventbridge-metric.json", rollback),
        ("alarm-eventbridge-metric-math.json", rollback),
        ("alarm-sns-metric.json", rollback),
        ("alarm-lambda-action.json", rollback),
        // Actions suppressed (its suppressor's wait period) and back to OK: nothing is rolled
        // back. Muted by a mute rule: nothing is rolled back, and the hold-back is announced.
        ("alarm-eventbridge-composite.json", NOTHING),
        ("alarm-sns-composite.json", NOTHING),
        (
            "alarm-eventbridge-muted.json",
            Effects {
                guard_events: 1,
                ..NOTHING
            },
        ),
        ("alarm-eventbridge-ok.json", NOTHING),
    ] {
        cases.push(Case {
            slack: SlackMode::Bot,
            function: "alarm-rollback",
            sample,
            once,
        });
    }
    // ECS invokes the hooks itself (no report): the traffic hook's verdict and the snapshot gate
    // are guard events; the checks and the snapshot are those of `ecs-services` in the policy.
    for sample in [
        "ecs-lifecycle-pre-scale-up.json",
        "ecs-lifecycle-post-test-traffic-shift.json",
        "ecs-lifecycle-production-traffic-shift.json",
        "ecs-lifecycle-production-traffic-shift-rollback.json",
    ] {
        cases.push(Case {
            slack: SlackMode::Bot,
            function: "traffic-hook",
            sample,
            once: Effects {
                guard_events: 1,
                ..NOTHING
            },
        });
    }
    cases.push(Case {
        slack: SlackMode::Bot,
        function: "predeploy-snapshot",
        sample: "ecs-lifecycle-pre-scale-up.json",
        once: snapshot,
    });
    for (sample, once) in [
        ("ecs-deployment-in-progress.json", 1, 0),
        ("ecs-deployment-rollback.json", 1, 0),
        ("ecs-deployment-completed.json", 1, 0),
        ("ecs-deployment-failed.json", 1, 1),
        ("codedeploy-deployment-start.json", 1, 0),
        ("codedeploy-deployment-ready.json", 1, 0),
        ("codedeploy-deployment-success.json", 1, 0),
        ("codedeploy-deployment-failure.json", 1, 1),
        // A stop is a warning: Slack only (email takes failures).
        ("codedeploy-deployment-stop.json", 1, 0),
    ]
    .map(|(sample, slack, email)| {
        (
            sample,
            Effects {
                slack_posts: slack,
                emails: email,
                ..NOTHING
            },
        )
    }) {
        cases.push(Case {
            slack: SlackMode::Bot,
            function: "deploy-notify",
            sample,
            once,
        });
    }
    cases
}

/// The id of the ECS service deployment of a world whose CodeDeploy deployment in flight is `d`
/// (ECS ids are letters and digits).
pub fn ecs_deployment_of(d: &str) -> String {
    d.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// `sample` as AWS would deliver it at `now` to a world whose deployment in flight is `d`. The
/// samples of one alarm are one transition (its state changed at `now`, after the deployment
/// began), told by EventBridge, SNS and the alarm's Lambda action.
pub fn delivered(sample: &str, d: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
    let time = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let changed_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut event = sample_event(sample);
    if event.get("executionDetails").is_some() {
        // ECS's service deployment of this world: its own id, so its snapshot is its own.
        let arn = event["resourceArn"].as_str().unwrap_or_default().to_owned();
        let (base, _) = arn.rsplit_once('/').unwrap_or((&arn, ""));
        event["resourceArn"] = json!(format!("{base}/{}", ecs_deployment_of(d)));
    } else if event.get("LifecycleEventHookExecutionId").is_some() {
        event["DeploymentId"] = json!(d);
    } else if event.get("deployment_id").is_some() {
        event["deployment_id"] = json!(d);
    } else if let Some(records) = event.get_mut("Records") {
        let sns = &mut records[0]["Sns"];
        sns["Timestamp"] = json!(changed_at);
        let mut message: Value =
            serde_json::from_str(sns["Message"].as_str().expect("an SNS Message")).unwrap();
        message["StateChangeTime"] = json!(changed_at);
        sns["Message"] = json!(message.to_string());
    } else if event.get("alarmData").is_some() {
        event["time"] = json!(changed_at);
        event["alarmData"]["state"]["timestamp"] = json!(changed_at);
    } else {
        event["time"] = json!(time);
        if event["detail"].get("deploymentId").is_some() {
            event["detail"]["deploymentId"] = json!(d);
        }
        if event["detail"]["state"].get("timestamp").is_some() {
            event["detail"]["state"]["timestamp"] = json!(changed_at);
        }
    }
    event
}

/// A world with deployment `d` of checkout/checkout-prod in flight, and its alarms as the
/// account holds them.
pub async fn world() -> (World, String) {
    world_for_slack(SlackMode::Bot).await
}

/// [`world`] with the notifier's Slack an incoming webhook.
pub async fn world_for_webhook() -> (World, String) {
    world_for_slack(SlackMode::Webhook).await
}

/// [`world`] for `case` (its Slack reached as the case says).
pub async fn world_for(case: &Case) -> (World, String) {
    world_for_slack(case.slack).await
}

async fn world_for_slack(slack: SlackMode) -> (World, String) {
    let world = World::build_with(&unique("replay-db"), slack == SlackMode::Webhook)
        .await
        .expect("the world is set up");
    let d = world.deploy("4").await.expect("a deployment in flight");
    (world, d)
}

/// A redelivery is what Lambda does with an error; `InProgressElsewhere` says another delivery
/// is at work, so the event comes again later. Delivers `event` until it is answered with a
/// response, and returns how many deliveries that took and the response.
pub async fn deliver_until_answered(
    world: &World,
    function: &str,
    event: &Value,
) -> (usize, Value) {
    for attempt in 1..=60 {
        match world.invoke(function, event.clone()).await {
            Answer::Response(body) => return (attempt, body),
            Answer::Error { error_type, .. } if error_type.ends_with(".InProgressElsewhere") => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            other => panic!("{function}: a redelivery failed: {other:?}"),
        }
    }
    panic!("{function}: still in progress elsewhere after 60 redeliveries")
}

/// A short deadline for an invocation (one to be killed, or to meet a fault that never answers):
/// a little more than the margin the
/// function keeps before its deadline (the integrity check's is 10 s, the snapshot's 5 s, the
/// others' 3 s at most).
pub fn short_deadline(function: &str) -> Duration {
    match function {
        "integrity-check" => Duration::from_secs(13),
        "predeploy-snapshot" => Duration::from_secs(9),
        _ => Duration::from_secs(6),
    }
}
