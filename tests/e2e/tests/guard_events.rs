//! Guard events through moto's EventBridge: published with PutEvents, routed by a rule to an SQS
//! queue, read back and normalised as the notifier would see them.

use safeship::event::{normalise, Delivery, Inbound};
use safeship::guard::{CheckResult, Guard, GuardEvent, GuardPublisher, Outcome};
use safeship_testkit::emulators::{moto_endpoint, sdk_config};
use safeship_testkit::guard_inbox::GuardInbox;

#[tokio::test]
async fn a_published_guard_event_reaches_a_rule_target_and_normalises_back() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let inbox = GuardInbox::create(&sdk).await;

    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: "traffic-hook:h-1".into(),
        time: "2026-11-20T10:00:00Z".parse().unwrap(),
        guard: Guard::TrafficHook,
        application: Some("checkout".into()),
        deployment_group: Some("checkout-prod".into()),
        deployment_id: Some("d-ABCDEF123".into()),
        dry_run: false,
        account: None,
        region: None,
        outcome: Outcome::HookFailed {
            lifecycle_event: Some("BeforeAllowTraffic".into()),
            reason: "health: /version expected \"v2\", found \"v1\"".into(),
            checks: vec![CheckResult {
                name: "health".into(),
                passed: false,
                duration_ms: 14,
                detail: Some("/version expected \"v2\", found \"v1\"".into()),
            }],
        },
    };
    inbox.publisher().publish(&event).await.unwrap();

    let envelopes = inbox.envelopes().await;
    assert_eq!(envelopes.len(), 1, "exactly one guard event delivered");
    let envelope = &envelopes[0];
    assert_eq!(envelope["source"], "safeship");
    assert_eq!(envelope["detail-type"], "Safeship Guard Event");
    let normalised = normalise(envelope).unwrap();
    assert!(matches!(normalised.delivery, Delivery::EventBridge { .. }));
    let Inbound::Guard(back) = normalised.event else {
        panic!("not a guard event: {:?}", normalised.event)
    };
    assert_eq!(*back, event);
}

#[tokio::test]
async fn publishing_to_a_missing_bus_is_an_error_naming_the_bus() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let (metrics, emitted) = safeship::metrics::MetricsSink::memory();
    let publisher = GuardPublisher::new(aws_sdk_eventbridge::Client::new(&sdk), "no-such-bus")
        .with_metrics(metrics);
    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: "x".into(),
        time: chrono::Utc::now(),
        guard: Guard::IntegrityCheck,
        application: None,
        deployment_group: None,
        deployment_id: None,
        dry_run: false,
        account: None,
        region: None,
        outcome: Outcome::IntegrityRunFailed {
            database: "checkout-db".into(),
            error: "connection refused".into(),
        },
    };
    let err = publisher.publish(&event).await.unwrap_err().to_string();
    assert!(err.contains("no-such-bus"), "{err}");
    // Counted where the stack's alarm looks: one GuardEventsUnpublished for the integrity guard.
    let emitted = emitted.lock().unwrap().clone();
    assert_eq!(emitted.len(), 1, "{emitted:?}");
    let doc: serde_json::Value = serde_json::from_str(&emitted[0]).unwrap();
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Safeship/Guard"
    );
    assert_eq!(doc["Guard"], "integrity-check");
    // ... and without dimensions, the one series the stack's alarm watches.
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Guard"], []])
    );
    assert_eq!(doc["GuardEventsUnpublished"], 1);
}

#[tokio::test]
async fn a_secret_in_a_guard_event_never_leaves_the_publisher() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let inbox = GuardInbox::create(&sdk).await;
    let event = GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: "traffic-hook:h-secret".into(),
        time: chrono::Utc::now(),
        guard: Guard::TrafficHook,
        application: Some("checkout".into()),
        deployment_group: Some("checkout-prod".into()),
        deployment_id: Some("d-1".into()),
        dry_run: false,
        account: None,
        region: None,
        outcome: Outcome::HookFailed {
            lifecycle_event: None,
            reason: "GET https://ops:hunter2@checkout.internal/health?token=abc123 answered 500"
                .into(),
            checks: vec![],
        },
    };
    inbox.publisher().publish(&event).await.unwrap();
    let envelopes = inbox.envelopes().await;
    let text = envelopes[0]["detail"].to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("abc123"),
        "{text}"
    );
    assert!(text.contains("checkout.internal/health"), "{text}");
}
