//! Guard events through moto's EventBridge: published with PutEvents, routed by a rule to an SQS
//! queue, read back and normalised as the notifier would see them.

use aws_sdk_eventbridge::types::Target;
use safeship::event::{normalise, Delivery, Inbound};
use safeship::guard::{CheckResult, Guard, GuardEvent, GuardPublisher, Outcome};
use safeship_e2e::emulators::{moto_endpoint, sdk_config, unique, ACCOUNT, REGION};

#[tokio::test]
async fn a_published_guard_event_reaches_a_rule_target_and_normalises_back() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = unique("bus");
    let queue = unique("guard");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let rule = unique("rule");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(r#"{"source": ["safeship"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            Target::builder()
                .id("queue")
                .arn(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let event = GuardEvent {
        id: "traffic-hook:h-1".into(),
        time: "2026-11-20T10:00:00Z".parse().unwrap(),
        guard: Guard::TrafficHook,
        application: Some("checkout".into()),
        deployment_group: Some("checkout-prod".into()),
        deployment_id: Some("d-ABCDEF123".into()),
        dry_run: false,
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
    GuardPublisher::new(events.clone(), &bus)
        .publish(&event)
        .await
        .unwrap();

    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "exactly one guard event delivered");
    let envelope: serde_json::Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(envelope["source"], "safeship");
    assert_eq!(envelope["detail-type"], "Safeship Guard Event");
    let normalised = normalise(&envelope).unwrap();
    assert!(matches!(normalised.delivery, Delivery::EventBridge { .. }));
    let Inbound::Guard(back) = normalised.event else {
        panic!("not a guard event: {:?}", normalised.event)
    };
    assert_eq!(*back, event);
}

#[tokio::test]
async fn publishing_to_a_missing_bus_is_an_error_naming_the_bus() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let publisher = GuardPublisher::new(aws_sdk_eventbridge::Client::new(&sdk), "no-such-bus");
    let event = GuardEvent {
        id: "x".into(),
        time: chrono::Utc::now(),
        guard: Guard::IntegrityCheck,
        application: None,
        deployment_group: None,
        deployment_id: None,
        dry_run: false,
        outcome: Outcome::IntegrityRunFailed {
            database: "checkout-db".into(),
            error: "connection refused".into(),
        },
    };
    let err = publisher.publish(&event).await.unwrap_err().to_string();
    assert!(err.contains("no-such-bus"), "{err}");
}
