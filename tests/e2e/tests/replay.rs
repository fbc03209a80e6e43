//! Replay (issue 18, part 1): every sample in `events/` delivered to its function three times in
//! a row, three times at once, and interleaved with the other samples, through the real
//! binaries in a whole emulated installation (`safeship_testkit::world`). The side effects are
//! counted where they landed (hook reports, stops, deployments, flag versions and deployments,
//! snapshots created and deleted, emails, guard events, Slack posts) and must each be exactly
//! what one delivery does; what one delivery does is written out per sample below, so a sample
//! that silently does nothing fails too.
//!
//! A sample is delivered as AWS would deliver it to this world: its deployment id is the world's
//! deployment in flight and its times are now (an alarm's transition a moment ago); everything
//! else is the sample's. Each delivery of one sample is the same event, as a redelivery is.

use std::time::Duration;

use safeship_testkit::effects::Effects;
use safeship_testkit::emulators::{sample_event, unique};
use safeship_testkit::runtime::Answer;
use safeship_testkit::world::{World, DEADLINE, FUNCTIONS};
use serde_json::{json, Value};

/// One sample and the function its trigger delivers it to.
struct Case {
    function: &'static str,
    sample: &'static str,
    /// What one delivery does in a fresh world with one deployment in flight.
    once: Effects,
}

const NOTHING: Effects = Effects {
    hook_reports: 0,
    stops: 0,
    deployments_created: 0,
    flag_versions: 0,
    flag_deployments: 0,
    snapshots_created: 0,
    snapshots_deleted: 0,
    emails: 0,
    guard_events: 0,
    slack_posts: 0,
};

fn cases() -> Vec<Case> {
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
            function: "traffic-hook",
            sample: "codedeploy-lifecycle-before-allow-traffic.json",
            once: hook,
        },
        Case {
            function: "traffic-hook",
            sample: "codedeploy-lifecycle-after-allow-traffic.json",
            once: hook,
        },
        // The pre-deploy snapshot as a lifecycle hook of its own: snapshot, then report. (A
        // group hooks one of the two; in the interleaved world both answer the sample's hook.)
        Case {
            function: "predeploy-snapshot",
            sample: "codedeploy-lifecycle-before-allow-traffic.json",
            once: Effects {
                hook_reports: 1,
                ..snapshot
            },
        },
        Case {
            function: "predeploy-snapshot",
            sample: "codedeploy-deployment-start.json",
            once: snapshot,
        },
        Case {
            function: "predeploy-snapshot",
            sample: "predeploy-snapshot-direct.json",
            once: snapshot,
        },
        Case {
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
            function: "alarm-rollback",
            sample,
            once,
        });
    }
    for (sample, once) in [
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
            function: "deploy-notify",
            sample,
            once,
        });
    }
    cases
}

/// A world with deployment `d` of checkout/checkout-prod in flight, and its alarms as the
/// account holds them.
async fn world() -> (World, String) {
    let world = World::build(&unique("replay-db"))
        .await
        .expect("the world is set up");
    let d = world.deploy("4").await.expect("a deployment in flight");
    (world, d)
}

/// `sample` as AWS would deliver it at `now` to a world whose deployment in flight is `d`. The
/// samples of one alarm are one transition (its state changed at `now`, after the deployment
/// began), told by EventBridge, SNS and the alarm's Lambda action.
fn delivered(sample: &str, d: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
    let time = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let changed_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut event = sample_event(sample);
    if event.get("LifecycleEventHookExecutionId").is_some() {
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

/// A redelivery is what Lambda does with an error; `InProgressElsewhere` says another delivery
/// is at work, so the event comes again later. Delivers `event` until it is answered with a
/// response, and returns how many deliveries that took.
async fn deliver_until_answered(world: &World, function: &str, event: &Value) -> usize {
    for attempt in 1..=60 {
        match world.invoke(function, event.clone()).await {
            Answer::Response(_) => return attempt,
            Answer::Error { error_type, .. } if error_type.ends_with(".InProgressElsewhere") => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            other => panic!("{function}: a redelivery failed: {other:?}"),
        }
    }
    panic!("{function}: still in progress elsewhere after 60 redeliveries")
}

#[tokio::test]
async fn each_sample_delivered_three_times_in_a_row_acts_once() {
    let mut deliveries = 0;
    let cases = cases();
    for case in &cases {
        let (mut world, d) = world().await;
        world.start(case.function, 1).await.unwrap();
        let event = delivered(case.sample, &d, chrono::Utc::now());
        let first = world.invoke(case.function, event.clone()).await;
        let Answer::Response(_) = &first else {
            panic!("{} {}: {first:?}", case.function, case.sample)
        };
        let once = world.effects().await;
        assert_eq!(
            once, case.once,
            "{} {}: one delivery did {once}, not {} ({first:?})",
            case.function, case.sample, case.once
        );
        for n in 2..=3 {
            let again = world.invoke(case.function, event.clone()).await;
            assert!(
                matches!(again, Answer::Response(_)),
                "{} {}: delivery {n}: {again:?}",
                case.function,
                case.sample
            );
        }
        deliveries += 3;
        let thrice = world.effects().await;
        assert_eq!(
            thrice, once,
            "{} {}: three deliveries in a row did {thrice}, one does {once}",
            case.function, case.sample
        );
    }
    println!(
        "replay in a row: {deliveries} deliveries of {} samples, each acting once",
        cases.len()
    );
}

#[tokio::test]
async fn each_sample_delivered_three_times_at_once_acts_once() {
    let mut deliveries = 0;
    let cases = cases();
    for case in &cases {
        let (mut world, d) = world().await;
        // Three environments of the function, as Lambda runs concurrent invocations.
        world.start(case.function, 3).await.unwrap();
        let event = delivered(case.sample, &d, chrono::Utc::now());
        let (a, b, c) = tokio::join!(
            deliver_until_answered(&world, case.function, &event),
            deliver_until_answered(&world, case.function, &event),
            deliver_until_answered(&world, case.function, &event),
        );
        deliveries += a + b + c;
        let effects = world.effects().await;
        assert_eq!(
            effects, case.once,
            "{} {}: three deliveries at once did {effects}, one does {}",
            case.function, case.sample, case.once
        );
    }
    println!(
        "replay at once: {deliveries} deliveries (redeliveries included) of {} samples, each acting once",
        cases.len()
    );
}

#[tokio::test]
async fn all_samples_interleaved_three_times_act_as_each_delivered_once() {
    let cases = cases();
    // Each sample three times, in an order that mixes them (a fixed permutation, so a failure
    // can be replayed): a sample's redeliveries arrive after the others have changed the world.
    let mut order: Vec<usize> = (0..cases.len() * 3).map(|i| i % cases.len()).collect();
    let mut state = 0x2545_f491_u64;
    for i in (1..order.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        order.swap(i, (state >> 33) as usize % (i + 1));
    }
    let mut first_seen = Vec::new();
    for &i in &order {
        if !first_seen.contains(&i) {
            first_seen.push(i);
        }
    }

    let (interleaved, published) = run_in_one_world(&cases, &order).await;
    let (each_once, published_once) = run_in_one_world(&cases, &first_seen).await;
    assert_eq!(
        interleaved, each_once,
        "all samples three times, interleaved, did {interleaved}; each once does {each_once}\n\
         guard events interleaved: {published:#?}\neach once: {published_once:#?}"
    );
    // The samples together do something of every kind a delivery can.
    assert!(
        each_once.hook_reports == 3
            && each_once.stops == 1
            && each_once.snapshots_created >= 1
            && each_once.slack_posts == 5,
        "each sample once did {each_once}"
    );
    println!(
        "replay interleaved: {} deliveries of {} samples did {interleaved}, as each once does",
        order.len(),
        cases.len()
    );
}

/// Delivers `cases[i]` for each `i` of `order`, in one world with every function running, and
/// returns what they did and the guard events published.
async fn run_in_one_world(cases: &[Case], order: &[usize]) -> (Effects, Vec<String>) {
    let (mut world, d) = world().await;
    for name in FUNCTIONS {
        world.start(name, 1).await.unwrap();
    }
    let now = chrono::Utc::now();
    let events: Vec<Value> = cases.iter().map(|c| delivered(c.sample, &d, now)).collect();
    for &i in order {
        let case = &cases[i];
        let answer = world
            .function(case.function)
            .runtime
            .invoke(events[i].clone(), DEADLINE)
            .await;
        assert!(
            matches!(answer, Answer::Response(_)),
            "{} {}: {answer:?}",
            case.function,
            case.sample
        );
    }
    (world.effects().await, world.guard_events_published())
}
