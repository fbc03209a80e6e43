//! Notifications end to end: a local Slack webhook (recording bodies, answering 200, 429 with
//! Retry-After, 500, 404 `channel_not_found`), the webhook URL in moto's Secrets Manager, email
//! through moto SNS to an SQS subscription (what an email subscriber would get), and moto
//! DynamoDB for "once per channel".

use safeship_e2e::emulators::{sample_event, unique, ACCOUNT, REGION};
use safeship_e2e::notify::world;
use serde_json::{json, Value};

#[tokio::test]
async fn a_failure_goes_to_slack_and_email_once_each() {
    let w = world().await;
    let failure = sample_event("codedeploy-deployment-failure.json");
    let answer = w.deliver(failure.clone()).await.unwrap();
    assert_eq!(answer["channels"], json!(["slack", "email"]));
    assert_eq!(answer["duplicate"], false);

    let posted = w.channels.slack.received();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0]["text"],
        "Deployment failed · checkout/checkout-prod · d-ABCDEF123"
    );
    assert_eq!(
        posted[0]["blocks"][0]["text"]["text"],
        ":x: Deployment failed"
    );
    let emails = w.channels.emails().await;
    assert_eq!(emails.len(), 1);
    assert_eq!(
        emails[0]["Subject"],
        "[safeship] Deployment failed - checkout/checkout-prod - d-ABCDEF123"
    );
    let body = emails[0]["Message"].as_str().unwrap();
    assert!(body.contains("Environment: prod\n"), "{body}");
    assert!(body.contains("https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-ABCDEF123?region=eu-west-1"));

    // EventBridge delivers it again: nothing is sent twice.
    let again = w.deliver(failure).await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(w.channels.slack.received().len(), 1);
    assert!(w.channels.emails().await.is_empty());
}

#[tokio::test]
async fn routing_by_severity_sends_a_start_to_slack_only() {
    let w = world().await;
    let answer = w
        .deliver(sample_event("codedeploy-deployment-start.json"))
        .await
        .unwrap();
    assert_eq!(answer["channels"], json!(["slack"]));
    assert_eq!(w.channels.slack.received().len(), 1);
    assert!(w.channels.emails().await.is_empty());
}

#[tokio::test]
async fn slack_down_still_sends_email_and_the_retry_does_not_repeat_it() {
    let w = world().await;
    w.channels.slack.answer(500, None, "internal_error", 4);
    let failure = sample_event("codedeploy-deployment-failure.json");
    let err = w.deliver(failure.clone()).await.unwrap_err();
    assert!(
        err.contains(
            "posting to Slack channel #deploys: gave up after 4 attempts: Slack answered 500"
        ),
        "{err}"
    );
    assert!(
        !err.contains(&w.channels.slack.url) && !err.contains("XXXXSECRETXXXX"),
        "{err}"
    );
    assert_eq!(
        w.channels.emails().await.len(),
        1,
        "email went out although Slack was down"
    );

    // Lambda retries the event; Slack is back.
    let answer = w.deliver(failure).await.unwrap();
    assert_eq!(answer["sent"].as_array().unwrap().len(), 1);
    assert_eq!(w.channels.slack.received().len(), 5);
    assert!(w.channels.emails().await.is_empty(), "email not repeated");
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_and_posts_once() {
    let w = world().await;
    w.channels.slack.answer(429, Some(1), "rate_limited", 1);
    let answer = w
        .deliver(sample_event("codedeploy-deployment-start.json"))
        .await
        .unwrap();
    assert_eq!(answer["sent"].as_array().unwrap().len(), 1);
    assert_eq!(w.channels.slack.received().len(), 2);
}

#[tokio::test]
async fn a_refused_channel_is_an_error_naming_it_not_the_url() {
    let w = world().await;
    w.channels.slack.answer(404, None, "channel_not_found", 1);
    let err = w
        .deliver(sample_event("codedeploy-deployment-start.json"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Deployment started · checkout/checkout-prod · d-ABCDEF123: 1 of 1 channels failed: posting to Slack channel #deploys: Slack refused the message (404): channel_not_found"
    );
    assert_eq!(w.channels.slack.received().len(), 1, "a 4xx is not retried");
}

#[tokio::test]
async fn each_guard_event_kind_renders_for_slack_and_email() {
    let w = world().await;
    let guard = |outcome: Value| {
        json!({
            "version": "0", "id": unique("eb"), "detail-type": "Safeship Guard Event",
            "source": "safeship", "account": ACCOUNT, "time": "2026-11-20T10:12:45Z",
            "region": REGION, "resources": [],
            "detail": {"id": unique("guard"), "time": "2026-11-20T10:12:45Z", "guard": "alarm-rollback",
                       "application": "checkout", "deployment-group": "checkout-prod",
                       "deployment-id": "d-ABCDEF123", "dry-run": false, "outcome": outcome}
        })
    };
    let alarm = json!({"name": "checkout-prod-5xx-rate", "kind": "metric", "state": "ALARM",
        "reason": "Threshold Crossed", "state-changed-at": "2026-11-20T10:12:40.123Z"});
    let cases = [
        (
            json!({"kind": "rollback-performed", "alarm": alarm, "actions": [
            {"action": "stop-deployment d-ABCDEF123 (with rollback)", "succeeded": true, "detail": "Pending"}]}),
            ":rewind: Rolled back after an alarm",
        ),
        (
            json!({"kind": "hook-failed", "lifecycle-event": "BeforeAllowTraffic",
            "reason": "health: /version is \"3\", expected \"4\"", "checks": []}),
            ":red_circle: Smoke checks failed: traffic not shifted",
        ),
        (
            json!({"kind": "snapshot-failed", "database": "checkout-db", "snapshot-id": null,
            "error": "SnapshotQuotaExceeded"}),
            ":x: Snapshot of checkout-db failed: no destructive deploy",
        ),
        (
            json!({"kind": "integrity-anomaly", "database": "checkout-db", "table": "orders",
            "column": null, "description": "row count fell 4.2%", "since-deployments": ["d-ABCDEF123"]}),
            ":mag: Integrity anomaly in checkout-db.orders",
        ),
    ];
    for (i, (outcome, header)) in cases.into_iter().enumerate() {
        w.deliver(guard(outcome)).await.unwrap();
        let posted = w.channels.slack.received();
        assert_eq!(posted.len(), i + 1);
        assert_eq!(posted[i]["blocks"][0]["text"]["text"], header);
    }
    // every one of these is a failure: each also went by email
    assert_eq!(w.channels.emails().await.len(), 4);
}

#[tokio::test]
async fn other_detail_types_are_ignored_and_malformed_events_rejected_without_a_message() {
    let w = world().await;
    let answer = w
        .deliver(sample_event("alarm-eventbridge-metric.json"))
        .await
        .unwrap();
    assert!(
        answer["ignored"].as_str().unwrap().contains("alarm"),
        "{answer}"
    );
    let mut other = sample_event("codedeploy-deployment-start.json");
    other["detail-type"] = json!("CodeDeploy Instance State-change Notification");
    let answer = w.deliver(other).await.unwrap();
    assert!(answer["ignored"].as_str().is_some(), "{answer}");

    let mut malformed = sample_event("codedeploy-deployment-failure.json");
    malformed["detail"]
        .as_object_mut()
        .unwrap()
        .remove("deploymentId");
    let err = w.deliver(malformed).await.unwrap_err();
    assert!(err.contains("deploymentId"), "{err}");
    assert!(w.channels.slack.received().is_empty());
    assert!(w.channels.emails().await.is_empty());
}
