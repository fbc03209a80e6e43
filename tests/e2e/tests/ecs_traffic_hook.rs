//! The traffic hook for ECS native deployments (issue 19): the ECS hook payloads of `events/`
//! given to the handler, a real HTTP server as the test and production listeners, moto's
//! CloudWatch alarms, and guard events read back from a real bus. ECS reads the function's
//! answer; there is no report call, so nothing is asked of CodeDeploy (its endpoint is a mock
//! that must receive nothing).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use axum::routing::get;
use axum::{Json, Router};
use lambda_runtime::{Context, LambdaEvent};
use safeship::guard::Outcome;
use safeship_testkit::ecs::{note_revert_of_checkout_api, serve_target_revision, TARGET_REVISION};
use safeship_testkit::emulators::{
    common_with_policy, moto_endpoint, sample_event, sdk_config, unique,
};
use safeship_testkit::guard_inbox::GuardInbox;
use serde_json::{json, Value};
use traffic_hook::checks::CheckClients;
use traffic_hook::{Deps, HookReply, HookSettings};
use wiremock::MockServer;

/// The two listeners of the service: the test one reaches the new revision, the production one
/// `production` (the new revision once traffic shifts, or the old one that is failing). Each
/// counts the requests it gets.
struct Listeners {
    url: String,
    test_hits: Arc<AtomicUsize>,
    production_hits: Arc<AtomicUsize>,
}

async fn listeners(production_status: u16) -> Listeners {
    let (test_hits, production_hits) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (t, p) = (test_hits.clone(), production_hits.clone());
    let app = Router::new()
        .route(
            "/test/health",
            get(move || {
                t.fetch_add(1, Ordering::SeqCst);
                async { Json(json!({"version": "9313423515462893900", "db": "ok"})) }
            }),
        )
        .route(
            "/production/health",
            get(move || {
                p.fetch_add(1, Ordering::SeqCst);
                async move {
                    (
                        axum::http::StatusCode::from_u16(production_status).unwrap(),
                        Json(json!({"version": "9313423515462893900", "db": "ok"})),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Listeners {
        url: format!("http://{addr}"),
        test_hits,
        production_hits,
    }
}

struct World {
    deps: Deps,
    inbox: GuardInbox,
    listeners: Listeners,
    alarm: String,
    codedeploy: MockServer,
}

/// `checkout/checkout-api` under ECS, its checks: `health` on both listeners (the target
/// revision's id as `{{target-version}}`) and one alarm.
async fn world(production_status: u16) -> World {
    world_with(production_status, "").await
}

/// As [`world`], with `extra` lines (indented 6) in the service's `traffic-hook` section.
async fn world_with(production_status: u16, extra: &str) -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    let listeners = listeners(production_status).await;
    let alarm = unique("checkout-api-5xx");
    aws_sdk_cloudwatch::Client::new(&sdk)
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    let policy = format!(
        "version: 1
ecs-services:
  checkout/checkout-api:
    environment: prod
    traffic-hook:
      http-checks:
        - name: health
          url: {url}/test/health
          production-url: {url}/production/health
          expect-json: {{/version: \"{{{{target-version}}}}\", /db: ok}}
          requests: 3
      alarm-checks:
        alarms: [{alarm}]
{extra}",
        url = listeners.url
    );
    let mut common = common_with_policy(&sdk, &policy).await;
    let inbox = GuardInbox::create(&sdk).await;
    common.guard = inbox.publisher();
    let codedeploy = MockServer::start().await;
    let deps = Deps {
        common,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy.uri()).await),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&moto_endpoint()).await),
        checks: CheckClients {
            http: traffic_hook::http_client(&safeship::env::Env::from_pairs::<&str, &str>([]))
                .unwrap(),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        },
        settings: HookSettings {
            report_margin: Duration::from_millis(1_000),
            lifecycle_event: None,
        },
    };
    World {
        deps,
        inbox,
        listeners,
        alarm,
        codedeploy,
    }
}

impl World {
    /// The handler as Lambda invokes it for ECS: the answer ECS reads.
    async fn invoke(&self, payload: Value) -> Value {
        let mut context = Context::default();
        context.deadline = u64::try_from(chrono::Utc::now().timestamp_millis() + 20_000).unwrap();
        let reply = traffic_hook::handler(&self.deps, LambdaEvent::new(payload, context))
            .await
            .expect("an ECS hook is always answered");
        assert!(matches!(reply, HookReply::Ecs(_)), "{reply:?}");
        let answer = serde_json::to_value(&reply).unwrap();
        // Only what ECS reads: the status and its reason; with IN_PROGRESS, when to come back
        // and what to bring.
        let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        if answer["hookStatus"] == "IN_PROGRESS" {
            assert_eq!(
                keys,
                ["callBackDelay", "hookDetails", "hookStatus", "reason"],
                "{answer}"
            );
        } else {
            assert_eq!(keys, ["hookStatus", "reason"], "{answer}");
        }
        answer
    }

    fn hits(&self) -> (usize, usize) {
        (
            self.listeners.test_hits.load(Ordering::SeqCst),
            self.listeners.production_hits.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test]
async fn each_stage_checks_the_listener_its_traffic_goes_through() {
    let w = world(200).await;
    // Before the new revision takes traffic: the alarms only.
    let answer = w
        .invoke(sample_event("ecs-lifecycle-pre-scale-up.json"))
        .await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    assert_eq!(w.hits(), (0, 0));
    // Test traffic: the test listener, the target revision's id as its version.
    let answer = w
        .invoke(sample_event("ecs-lifecycle-post-test-traffic-shift.json"))
        .await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    assert_eq!(w.hits(), (3, 0));
    // The production shift: the production listener.
    let answer = w
        .invoke(sample_event("ecs-lifecycle-production-traffic-shift.json"))
        .await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    assert_eq!(w.hits(), (3, 3));
    // Each stage is news once: a guard event per stage, named by it, about the service.
    let events = w.inbox.events().await;
    let mut stages: Vec<Option<String>> = events
        .iter()
        .map(|e| match &e.outcome {
            Outcome::HookPassed {
                lifecycle_event, ..
            } => lifecycle_event.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    stages.sort();
    assert_eq!(
        stages,
        [
            Some("POST_TEST_TRAFFIC_SHIFT".into()),
            Some("PRE_SCALE_UP".into()),
            Some("PRODUCTION_TRAFFIC_SHIFT".into())
        ]
    );
    for e in &events {
        assert_eq!(
            (e.application.as_deref(), e.deployment_group.as_deref()),
            (Some("checkout"), Some("checkout-api"))
        );
        assert!(e.deployment_id.as_deref().is_some_and(
            |d| d.ends_with("service-deployment/checkout/checkout-api/EZe5RNVLH6PPzHXINuP28")
        ));
    }
    // ECS reads the answer: nothing was reported anywhere.
    assert!(w.codedeploy.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_production_listener_or_an_alarm_answers_failed_naming_it() {
    let w = world(503).await;
    let answer = w
        .invoke(sample_event("ecs-lifecycle-production-traffic-shift.json"))
        .await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("PRODUCTION_TRAFFIC_SHIFT: ")
            && reason.contains("health")
            && reason.contains("503"),
        "{reason}"
    );
    // The test listener is fine, but the alarm goes off: the next stage fails on it.
    aws_sdk_cloudwatch::Client::new(&w.deps.common.sdk)
        .set_alarm_state()
        .alarm_name(&w.alarm)
        .state_value(StateValue::Alarm)
        .state_reason("5xx over threshold")
        .send()
        .await
        .unwrap();
    let answer = w
        .invoke(sample_event("ecs-lifecycle-pre-scale-up.json"))
        .await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains(&w.alarm),
        "{answer}"
    );
    let failed = w.inbox.events().await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed
        .iter()
        .all(|e| matches!(e.outcome, Outcome::HookFailed { .. })));
}

#[tokio::test]
async fn a_rollback_is_never_held_even_when_the_checks_would_fail() {
    let w = world(503).await;
    let answer = w
        .invoke(sample_event(
            "ecs-lifecycle-production-traffic-shift-rollback.json",
        ))
        .await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("rollback"),
        "{answer}"
    );
    assert_eq!(w.hits(), (0, 0), "nothing was checked");
}

#[tokio::test]
async fn a_malformed_payload_or_an_unknown_service_answers_failed_naming_the_problem() {
    let w = world(200).await;
    let mut wrong_stage = sample_event("ecs-lifecycle-production-traffic-shift.json");
    wrong_stage["lifecycleStage"] = json!("ROLLBACK");
    let mut no_details = sample_event("ecs-lifecycle-pre-scale-up.json");
    no_details
        .as_object_mut()
        .unwrap()
        .remove("executionDetails");
    let mut other_service = sample_event("ecs-lifecycle-pre-scale-up.json");
    other_service["executionDetails"]["serviceArn"] =
        json!("arn:aws:ecs:eu-west-1:123456789012:service/checkout/payments-api");
    // The old, flat form of the docs: no envelope, so no stage and no execution.
    let flat =
        sample_event("ecs-lifecycle-production-traffic-shift.json")["executionDetails"].clone();
    let mut flat_with_stage = flat.clone();
    flat_with_stage["lifecycleStage"] = json!("PRODUCTION_TRAFFIC_SHIFT");
    for (payload, named) in [
        (wrong_stage, "lifecycleStage: \"ROLLBACK\" is not a stage"),
        (no_details, "executionDetails: missing"),
        (other_service, "ECS service checkout/payments-api is not in the policy's ecs-services (known: checkout/checkout-api)"),
        (flat_with_stage, "executionId: missing"),
    ] {
        let answer = w.invoke(payload).await;
        assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
        assert!(answer["reason"].as_str().unwrap().contains(named), "{answer}");
    }
    assert_eq!(w.hits(), (0, 0), "nothing was checked");
    // A payload of neither kind is no ECS hook: the CodeDeploy path names what it lacks.
    let err = traffic_hook::handler(&w.deps, LambdaEvent::new(flat, Context::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("serviceArn") || err.contains("top-level keys"),
        "{err}"
    );
}

#[tokio::test]
async fn a_repeated_invocation_checks_again_and_is_announced_once() {
    let w = world(200).await;
    let payload = sample_event("ecs-lifecycle-post-test-traffic-shift.json");
    for _ in 0..2 {
        let answer = w.invoke(payload.clone()).await;
        assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    }
    // ECS asking again wants a fresh answer: the checks ran twice; the guard event has one id.
    assert_eq!(w.hits(), (6, 0));
    let ids: std::collections::BTreeSet<String> =
        w.inbox.events().await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

/// The hook at `POST_PRODUCTION_TRAFFIC_SHIFT` (ECS sends no weights there), with `hook_details`
/// as ECS passes them: the service definition's merged with the previous answer's.
fn post_production(hook_details: Value) -> Value {
    let mut payload = sample_event("ecs-lifecycle-production-traffic-shift.json");
    payload["lifecycleStage"] = json!("POST_PRODUCTION_TRAFFIC_SHIFT");
    payload["executionId"] = json!("5f40ed04-7e54-437d-b95d-98bc872fec49");
    payload["executionDetails"]["productionTrafficWeights"] = json!({});
    let mut details = json!({"team": "checkout"});
    for (k, v) in hook_details.as_object().unwrap() {
        details[k] = v.clone();
    }
    payload["hookDetails"] = details;
    payload
}

#[tokio::test]
async fn a_soak_watches_the_alarms_by_in_progress_answers_until_one_goes_off() {
    let w = world_with(200, "      soak: {minutes: 1, every-seconds: 10}\n").await;
    // The production shift's checks pass: the soak begins, its end carried in hookDetails.
    let first = w.invoke(post_production(json!({}))).await;
    assert_eq!(first["hookStatus"], "IN_PROGRESS", "{first}");
    assert_eq!(first["callBackDelay"], 10);
    let until = first["hookDetails"]["safeship-soak-until"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    let ahead = end.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((55..=61).contains(&ahead), "the soak ends in {ahead} s");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("soaking 1 minutes"),
        "{first}"
    );
    assert_eq!(w.hits(), (0, 3), "the production listener was checked");

    // ECS comes back with it: one look at the alarms, still OK.
    let again = w
        .invoke(post_production(first["hookDetails"].clone()))
        .await;
    assert_eq!(again["hookStatus"], "IN_PROGRESS", "{again}");
    assert_eq!(again["hookDetails"]["safeship-soak-until"], until.as_str());
    assert!(again["callBackDelay"].as_u64().unwrap() <= 10);
    assert_eq!(w.hits(), (0, 3), "a look of the soak is the alarms only");
    assert!(
        w.inbox.events().await.is_empty(),
        "a soak is news when it ends"
    );

    // The alarm goes off mid-way: the next look fails the stage, naming it.
    aws_sdk_cloudwatch::Client::new(&w.deps.common.sdk)
        .set_alarm_state()
        .alarm_name(&w.alarm)
        .state_value(StateValue::Alarm)
        .state_reason("5xx over threshold")
        .send()
        .await
        .unwrap();
    let failed = w
        .invoke(post_production(again["hookDetails"].clone()))
        .await;
    assert_eq!(failed["hookStatus"], "FAILED", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("POST_PRODUCTION_TRAFFIC_SHIFT: the soak ended ")
            && reason.contains(&w.alarm),
        "{reason}"
    );
    let events = w.inbox.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0].outcome, Outcome::HookFailed { .. }));
}

#[tokio::test]
async fn a_soak_that_ran_its_time_succeeds_and_a_damaged_one_fails_naming_it() {
    let w = world_with(200, "      soak: {minutes: 1}\n").await;
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let done = w
        .invoke(post_production(json!({"safeship-soak-until": past})))
        .await;
    assert_eq!(done["hookStatus"], "SUCCEEDED", "{done}");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("soaked 1 minutes: the alarms stayed OK"),
        "{done}"
    );
    let damaged = w
        .invoke(post_production(json!({"safeship-soak-until": "tomorrow"})))
        .await;
    assert_eq!(damaged["hookStatus"], "FAILED", "{damaged}");
    assert!(
        damaged["reason"]
            .as_str()
            .unwrap()
            .contains("hookDetails.safeship-soak-until is not a time"),
        "{damaged}"
    );
    // Soaking is for the stage after the production shift only: the shift itself answers.
    let shift = w
        .invoke(sample_event("ecs-lifecycle-production-traffic-shift.json"))
        .await;
    assert_eq!(shift["hookStatus"], "SUCCEEDED", "{shift}");
}

const OLD_REVISION: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/1920498462936580504";

/// A step of a canary or linear production shift: the documented envelope at `stage` with the
/// target revision at `percent` of production traffic. AWS documents no payload of these
/// strategies; their steps are this envelope with other weights (`PRE_PRODUCTION_TRAFFIC_SHIFT`
/// before each step, `PRODUCTION_TRAFFIC_SHIFT` at it).
fn shift_step(execution: &str, stage: &str, percent: f64) -> Value {
    let mut payload = sample_event("ecs-lifecycle-production-traffic-shift.json");
    payload["executionId"] = json!(execution);
    payload["lifecycleStage"] = json!(stage);
    payload["executionDetails"]["productionTrafficWeights"] =
        json!({TARGET_REVISION: percent, OLD_REVISION: 100.0 - percent});
    payload
}

/// The steps of a shift through `percents` (each step's `PRE_PRODUCTION_TRAFFIC_SHIFT` at the
/// weights before it, then its `PRODUCTION_TRAFFIC_SHIFT`), all in one execution id per stage
/// as ECS gives them.
fn shift_steps(percents: &[f64]) -> Vec<Value> {
    let mut steps = Vec::new();
    let mut before = 0.0;
    for &percent in percents {
        steps.push(shift_step(
            "6b0f4a1e-0c1f-4c55-9d0b-5b1f4c3e2a10",
            "PRE_PRODUCTION_TRAFFIC_SHIFT",
            before,
        ));
        steps.push(shift_step(
            "9d2c7e3b-8a4f-4d6e-b1c2-3f4e5d6c7b80",
            "PRODUCTION_TRAFFIC_SHIFT",
            percent,
        ));
        before = percent;
    }
    steps
}

#[tokio::test]
async fn a_canary_and_a_linear_shift_are_checked_at_every_step_each_step_news_once() {
    for (strategy, percents) in [
        ("CANARY 10 %", vec![10.0, 100.0]),
        ("LINEAR 25 %", vec![25.0, 50.0, 75.0, 100.0]),
    ] {
        let w = world(200).await;
        let steps = shift_steps(&percents);
        for step in &steps {
            let answer = w.invoke(step.clone()).await;
            assert_eq!(answer["hookStatus"], "SUCCEEDED", "{strategy}: {answer}");
        }
        // Every step checked the production listener (3 requests each), never the test one.
        assert_eq!(w.hits(), (0, 3 * steps.len()), "{strategy}");
        // A repeat of one step checks again but is no news.
        w.invoke(steps[1].clone()).await;
        let events = w.inbox.events().await;
        let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            steps.len(),
            "{strategy}: one event per step: {ids:?}"
        );
        assert!(
            events
                .iter()
                .all(|e| matches!(e.outcome, Outcome::HookPassed { .. })),
            "{strategy}"
        );
    }
}

#[tokio::test]
async fn an_alarm_mid_way_through_a_linear_shift_fails_that_step_and_the_rollback_passes() {
    let w = world(200).await;
    let steps = shift_steps(&[25.0, 50.0, 75.0, 100.0]);
    for step in &steps[..3] {
        assert_eq!(w.invoke(step.clone()).await["hookStatus"], "SUCCEEDED");
    }
    // At 25 % the 5xx alarm goes off: the next step's check fails, naming it.
    aws_sdk_cloudwatch::Client::new(&w.deps.common.sdk)
        .set_alarm_state()
        .alarm_name(&w.alarm)
        .state_value(StateValue::Alarm)
        .state_reason("5xx over threshold")
        .send()
        .await
        .unwrap();
    let answer = w.invoke(steps[3].clone()).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("PRODUCTION_TRAFFIC_SHIFT: ") && reason.contains(&w.alarm),
        "{reason}"
    );
    // ECS rolls back: the traffic goes back to the old revision, which is never held.
    let rollback = shift_step(
        "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "PRODUCTION_TRAFFIC_SHIFT",
        0.0,
    );
    let answer = w.invoke(rollback).await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("rollback"),
        "{answer}"
    );
}

#[tokio::test]
async fn safeships_revert_is_never_held_though_its_alarm_still_fires_and_a_release_is() {
    let mut w = world(200).await;
    aws_sdk_cloudwatch::Client::new(&w.deps.common.sdk)
        .set_alarm_state()
        .alarm_name(&w.alarm)
        .state_value(StateValue::Alarm)
        .state_reason("5xx over threshold")
        .send()
        .await
        .unwrap();
    // alarm-rollback noted its revert to checkout:11 before it updated the service.
    let store = w.deps.common.idempotency.clone();
    note_revert_of_checkout_api(&store, CHECKOUT_11).await;
    let revisions = MockServer::start().await;
    serve_target_revision(&revisions, CHECKOUT_11).await;
    w.deps.ecs =
        aws_sdk_ecs::Client::new(&safeship_testkit::emulators::sdk_config(&revisions.uri()).await);
    for sample in [
        "ecs-lifecycle-pre-scale-up.json",
        "ecs-lifecycle-post-test-traffic-shift.json",
        "ecs-lifecycle-production-traffic-shift.json",
    ] {
        let answer = w.invoke(sample_event(sample)).await;
        assert_eq!(answer["hookStatus"], "SUCCEEDED", "{sample}: {answer}");
        assert!(
            answer["reason"]
                .as_str()
                .unwrap()
                .contains("safeship's revert of"),
            "{answer}"
        );
    }
    assert_eq!(w.hits(), (0, 0), "no check ran on the revert");
    // A note of another task definition: the target revision is a release, checked as ever.
    note_revert_of_checkout_api(&store, CHECKOUT_12).await;
    let answer = w
        .invoke(sample_event("ecs-lifecycle-post-test-traffic-shift.json"))
        .await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains(&w.alarm),
        "{answer}"
    );
}

const CHECKOUT_11: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:11";
const CHECKOUT_12: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:12";

#[tokio::test]
async fn every_one_of_the_eight_stages_is_answered_checking_its_own_listener() {
    let w = world(200).await;
    // (stage, listener hit: none, test or production)
    let stages = [
        ("RECONCILE_SERVICE", (0, 0)),
        ("PRE_SCALE_UP", (0, 0)),
        ("POST_SCALE_UP", (0, 0)),
        ("TEST_TRAFFIC_SHIFT", (1, 0)),
        ("POST_TEST_TRAFFIC_SHIFT", (1, 0)),
        ("PRE_PRODUCTION_TRAFFIC_SHIFT", (0, 1)),
        ("PRODUCTION_TRAFFIC_SHIFT", (0, 1)),
        ("POST_PRODUCTION_TRAFFIC_SHIFT", (0, 1)),
    ];
    for (stage, (test, production)) in stages {
        let before = w.hits();
        let mut payload = sample_event("ecs-lifecycle-production-traffic-shift.json");
        payload["lifecycleStage"] = json!(stage);
        payload["executionId"] = json!(unique("exec"));
        // The new revision takes all the traffic its stage shifts (never a rollback).
        let all_to_target = json!({TARGET_REVISION: 100.0, OLD_REVISION: 0.0});
        payload["executionDetails"]["testTrafficWeights"] = all_to_target.clone();
        payload["executionDetails"]["productionTrafficWeights"] = all_to_target;
        let answer = w.invoke(payload).await;
        assert_eq!(answer["hookStatus"], "SUCCEEDED", "{stage}: {answer}");
        assert!(
            answer["reason"].as_str().unwrap().starts_with(stage),
            "{stage}: {answer}"
        );
        let after = w.hits();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (3 * test, 3 * production),
            "{stage}: requests to the (test, production) listener"
        );
    }
    let events = w.inbox.events().await;
    assert_eq!(events.len(), 8, "one guard event per stage");
}
