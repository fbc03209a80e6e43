//! Replay (issue 18, part 1): every sample in `events/` delivered to its function three times in
//! a row, three times at once, and interleaved with the other samples, through the real
//! binaries in a whole emulated installation (`safeship_testkit::world`). The side effects are
//! counted where they landed (hook reports, stops, deployments, flag versions and deployments,
//! snapshots created and deleted, emails, guard events, Slack posts) and must each be exactly
//! what one delivery does, which `safeship_testkit::samples` writes out per sample (so a sample
//! that silently does nothing fails too). Each delivery of one sample is the same event, as a
//! redelivery is.

use safeship_testkit::codedeploy::metric_alarm;
use safeship_testkit::effects::Effects;
use safeship_testkit::runtime::Answer;
use safeship_testkit::samples::{cases, deliver_until_answered, delivered, world, Case};
use safeship_testkit::world::{DEADLINE, FUNCTIONS};
use serde_json::Value;

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
        deliveries += a.0 + b.0 + c.0;
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
    // The samples together do something of every kind a delivery can. (Two hook executions:
    // the one both hook functions answer takes one report, as CodeDeploy takes it.)
    assert!(
        each_once.hook_reports == 2
            && each_once.stops == 1
            && each_once.snapshots_created >= 1
            // Five CodeDeploy state changes and four of an ECS service deployment.
            && each_once.slack_posts == 9,
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

#[tokio::test]
async fn a_hook_and_an_alarm_for_one_deployment_at_once_agree() {
    // Issue 18, part 6: the deployment's BeforeAllowTraffic hook and its 5xx alarm arrive at
    // the same moment. Whichever runs first, CodeDeploy is told the hook failed (the hook's
    // alarm check reads the alarm in ALARM), once; the deployment is stopped once and the flags
    // switched off once; and delivering both again changes nothing.
    let (mut world, d) = world().await;
    world.start("traffic-hook", 1).await.unwrap();
    world.start("alarm-rollback", 1).await.unwrap();
    metric_alarm(
        &aws_sdk_cloudwatch::Client::new(&world.sdk),
        "checkout-prod-5xx-rate",
        aws_sdk_cloudwatch::types::StateValue::Alarm,
        "Threshold Crossed: 48 target 5xx responses in a minute",
    )
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let hook = delivered("codedeploy-lifecycle-before-allow-traffic.json", &d, now);
    let alarm = delivered("alarm-eventbridge-metric.json", &d, now);
    for round in 1..=2 {
        let ((_, hook_answer), (_, alarm_answer)) = tokio::join!(
            deliver_until_answered(&world, "traffic-hook", &hook),
            deliver_until_answered(&world, "alarm-rollback", &alarm),
        );
        assert_eq!(
            hook_answer["status"], "Failed",
            "round {round}: {hook_answer}"
        );
        assert_eq!(
            alarm_answer["outcome"]["decision"], "roll-back",
            "round {round}: {alarm_answer}"
        );
    }
    let effects = world.effects().await;
    assert_eq!(
        (
            effects.hook_reports,
            effects.stops,
            effects.flag_versions,
            effects.flag_deployments
        ),
        (1, 1, 1, 1),
        "{effects}"
    );
    let reports = world.received("PutLifecycleEventHookExecutionStatus").await;
    assert!(
        reports.iter().all(|r| r["status"] == "Failed"),
        "CodeDeploy was told something else: {reports:?}"
    );
    assert_eq!(world.ledger.status(&d).as_deref(), Some("Stopped"));
}
