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
",
        url = listeners.url
    );
    let mut common = common_with_policy(&sdk, &policy).await;
    let inbox = GuardInbox::create(&sdk).await;
    common.guard = inbox.publisher();
    let codedeploy = MockServer::start().await;
    let deps = Deps {
        common,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy.uri()).await),
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
        // Only what ECS reads: the status and its reason.
        let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["hookStatus", "reason"], "{answer}");
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
