//! Notifications end to end: a local Slack webhook (recording bodies, answering 200, 429 with
//! Retry-After, 500, 404 `channel_not_found`), the webhook URL in moto's Secrets Manager, email
//! through moto SNS to an SQS subscription (what an email subscriber would get), and moto
//! DynamoDB for "once per channel".

use safeship_testkit::emulators::{sample_event, unique, ACCOUNT, REGION};
use safeship_testkit::notify::world;
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
    let started = std::time::Instant::now();
    let answer = w
        .deliver(sample_event("codedeploy-deployment-start.json"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was honoured, not retried at once"
    );
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
        (
            json!({"kind": "flags-switched-off", "alarm": alarm, "profile": "checkout-flags/prod/release-flags",
            "flags": ["new-checkout-flow"], "version": 7}),
            ":triangular_flag_on_post: Feature flags switched off",
        ),
        (
            json!({"kind": "integrity-run-failed", "database": "checkout-db",
            "error": "database checkout-db: connecting: connection refused"}),
            ":x: Integrity check of checkout-db could not run",
        ),
        // below: warnings and information, which the policy sends to Slack only
        (
            json!({"kind": "nothing-to-roll-back", "alarm": alarm, "reason": "no deployment in flight"}),
            ":warning: Alarm fired, nothing to roll back",
        ),
        (
            json!({"kind": "snapshot-quota-warning", "manual-snapshots": 92, "quota": 100}),
            ":warning: Manual snapshots near the RDS quota",
        ),
        (
            json!({"kind": "integrity-anomaly", "database": "checkout-db", "table": "orders",
            "column": null, "description": "rows grew 80%", "since-deployments": [], "severity": "warning"}),
            ":warning: Integrity warning in checkout-db.orders",
        ),
        (
            json!({"kind": "hook-passed", "lifecycle-event": "AfterAllowTraffic", "checks": []}),
            ":large_green_circle: Smoke checks passed",
        ),
        (
            json!({"kind": "snapshot-started", "database": "checkout-db", "snapshot-id": "safeship-checkout-db-d-abcdef123"}),
            ":camera: Snapshot of checkout-db started",
        ),
        (
            json!({"kind": "snapshot-available", "database": "checkout-db",
            "snapshot-id": "safeship-checkout-db-d-abcdef123", "duration-ms": 184000}),
            ":floppy_disk: Snapshot of checkout-db available",
        ),
        (
            json!({"kind": "snapshots-pruned", "database": "checkout-db", "snapshot-ids": ["safeship-checkout-db-d-old"]}),
            ":broom: Old snapshots of checkout-db pruned",
        ),
    ];
    for (i, (outcome, header)) in cases.into_iter().enumerate() {
        w.deliver(guard(outcome)).await.unwrap();
        let posted = w.channels.slack.received();
        assert_eq!(posted.len(), i + 1);
        assert_eq!(posted[i]["blocks"][0]["text"]["text"], header);
    }
    // the six failures also went by email; warnings and information did not
    let subjects: Vec<String> = w
        .channels
        .emails()
        .await
        .iter()
        .map(|e| e["Subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects.len(), 6, "{subjects:?}");
    assert!(
        subjects.iter().all(|s| s.len() < 100 && s.is_ascii()),
        "{subjects:?}"
    );
}

#[tokio::test]
async fn each_codedeploy_state_is_routed_by_its_severity_and_failures_say_why() {
    let w = world().await;
    for (sample, slack_header, by_email) in [
        (
            "codedeploy-deployment-start.json",
            ":rocket: Deployment started",
            false,
        ),
        (
            "codedeploy-deployment-ready.json",
            ":hourglass_flowing_sand: Deployment ready for traffic",
            false,
        ),
        (
            "codedeploy-deployment-success.json",
            ":white_check_mark: Deployment succeeded",
            false,
        ),
        (
            "codedeploy-deployment-stop.json",
            ":octagonal_sign: Deployment stopped",
            false,
        ),
        (
            "codedeploy-deployment-failure.json",
            ":x: Deployment failed",
            true,
        ),
    ] {
        let answer = w.deliver(sample_event(sample)).await.unwrap();
        let posted = w.channels.slack.received();
        assert_eq!(
            posted.last().unwrap()["blocks"][0]["text"]["text"],
            slack_header,
            "{sample}: {answer}"
        );
        assert_eq!(
            w.channels.emails().await.len(),
            usize::from(by_email),
            "{sample}"
        );
    }
    // FAILURE and STOP carry CodeDeploy's own reason and the rollback; the others asked nothing
    let posted = w.channels.slack.received();
    for i in [3, 4] {
        let blocks = posted[i]["blocks"].to_string();
        assert!(
            blocks.contains("HEALTH_CONSTRAINTS: The overall deployment failed"),
            "{blocks}"
        );
        assert!(
            blocks.contains("rollback d-ROLLBACK1: Automatic rollback triggered"),
            "{blocks}"
        );
    }
    let asked = w.codedeploy.received_requests().await.unwrap();
    assert_eq!(asked.len(), 2, "GetDeployment for STOP and FAILURE only");
}

#[tokio::test]
async fn an_unreadable_reason_does_not_hold_the_failure_notice_back() {
    let w = world().await;
    let mut failure = sample_event("codedeploy-deployment-failure.json");
    // a deployment CodeDeploy (wiremock) does not know: GetDeployment answers 404
    failure["detail"]["deploymentId"] = json!("d-UNKNOWN99");
    let answer = w.deliver(failure).await.unwrap();
    assert_eq!(answer["channels"], json!(["slack", "email"]));
    let body = w.channels.emails().await[0]["Message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains("CodeDeploy's reason could not be read: codedeploy:GetDeployment on deployment d-UNKNOWN99 failed"), "{body}");
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

#[tokio::test]
async fn the_webhook_secret_is_read_once_per_cold_start() {
    use deploy_notify::deliver::Slack;
    use safeship_testkit::emulators::{moto_endpoint, sdk_config};
    use safeship_testkit::split::SplitEndpoint;

    let mut w = world().await;
    // Secrets Manager behind a recording endpoint, so every GetSecretValue is seen.
    let recording = SplitEndpoint::recording(&moto_endpoint()).await;
    let sdk = sdk_config(&recording.uri()).await;
    w.deps.slack = Some(Slack::new(
        reqwest::Client::new(),
        aws_sdk_secretsmanager::Client::new(&sdk),
        &w.channels.secret_arn,
        "#deploys",
    ));
    for sample in [
        "codedeploy-deployment-start.json",
        "codedeploy-deployment-ready.json",
        "codedeploy-deployment-success.json",
    ] {
        w.deliver(sample_event(sample)).await.unwrap();
    }
    assert_eq!(w.channels.slack.received().len(), 3);
    let reads: Vec<String> = recording
        .waits()
        .into_iter()
        .map(|wait| wait.operation)
        .filter(|op| op.contains("GetSecretValue"))
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
}
