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
            json!({"kind": "integrity-findings", "database": "checkout-db", "findings": [
                {"table": "public.orders", "description": "rows fell 5.0%", "severity": "failure"},
                {"table": "public.customers", "description": "rows grew 80%", "severity": "warning"}],
            "more": 0, "since-deployments": ["d-ABCDEF123"], "problems": null}),
            ":mag: Integrity check of checkout-db: 2 findings",
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
    // the seven failures also went by email; warnings and information did not
    let subjects: Vec<String> = w
        .channels
        .emails()
        .await
        .iter()
        .map(|e| e["Subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects.len(), 7, "{subjects:?}");
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

// ---- the unhappy path (issue 15): time, retries, redaction, routing, claims ----------------

use std::time::{Duration, Instant};

use safeship::runtime::Failure;
use safeship_testkit::notify::world_with_policy;

/// The N of "N attempt(s)" in an error message.
fn attempts_named(err: &str) -> usize {
    let at = err
        .find(" attempt")
        .unwrap_or_else(|| panic!("no attempt count in {err}"));
    err[..at]
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no attempt count in {err}"))
}

#[tokio::test]
async fn a_webhook_that_never_answers_fails_before_the_deadline_and_is_not_posted_twice() {
    let w = world().await;
    w.channels.slack.hang(4);
    let started = Instant::now();
    let err = w
        .deliver_within(
            sample_event("codedeploy-deployment-start.json"),
            Duration::from_secs(6),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    // The default margin (3 s) is kept for recording the outcome and answering.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let text = err.to_string();
    assert!(text.contains("after the message was sent (1 attempt): Slack may have posted it, so it is not sent again in this invocation"), "{text}");
    assert_eq!(
        w.channels.slack.received().len(),
        1,
        "a request Slack may have taken is not repeated blind"
    );
    assert!(!text.contains("XXXXSECRETXXXX"), "{text}");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_time_left_fails_now_naming_the_wait() {
    let w = world().await;
    w.channels.slack.answer(429, Some(30), "rate_limited", 1);
    let start = sample_event("codedeploy-deployment-start.json");
    let started = Instant::now();
    let err = w
        .deliver_within(start.clone(), Duration::from_secs(20))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("rate limited (429): Slack asked to wait 30 s and"),
        "{err}"
    );
    assert_eq!(attempts_named(&err), 1, "{err}");
    assert_eq!(w.channels.slack.received().len(), 1);
    // Lambda's retry, later: the message goes out once.
    let answer = w.deliver(start).await.unwrap();
    assert_eq!(answer["duplicate"], false);
    assert_eq!(w.channels.slack.accepted(), 1);
}

#[tokio::test]
async fn retries_stop_at_the_deadline_and_the_error_counts_the_attempts_made() {
    let w = world().await;
    w.channels.slack.answer(500, None, "rollup_error", 10);
    let started = Instant::now();
    let err = w
        .deliver_within(
            sample_event("codedeploy-deployment-start.json"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2) + Duration::from_millis(500),
        "kept to the 2 s before the margin: {:?}",
        started.elapsed()
    );
    let made = w.channels.slack.received().len();
    assert_eq!(attempts_named(&err), made, "{err}");
    assert!((2..4).contains(&made), "{made} attempts in 2 s: {err}");
    assert!(err.contains("Slack answered 500: rollup_error"), "{err}");
}

#[tokio::test]
async fn an_unreachable_webhook_is_retried_and_the_error_says_so() {
    use deploy_notify::deliver::Slack;
    use safeship_testkit::emulators::{moto_endpoint, sdk_config};

    let mut w = world().await;
    // A port nobody listens on: nothing reaches Slack, so retrying is safe.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sdk = sdk_config(&moto_endpoint()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = secrets
        .create_secret()
        .name(unique("safeship/slack-closed"))
        .secret_string(format!(
            "http://127.0.0.1:{port}/services/T000/B000/XXXXSECRETXXXX"
        ))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    w.deps.slack = Some(Slack::new(reqwest::Client::new(), secrets, arn, "#deploys"));
    let err = w
        .deliver_within(
            sample_event("codedeploy-deployment-start.json"),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "posting to Slack channel #deploys: gave up after 4 attempts: could not connect"
        ),
        "{err}"
    );
    assert!(!err.contains("XXXXSECRETXXXX"), "{err}");
}

#[tokio::test]
async fn a_token_in_a_guard_event_reaches_neither_slack_nor_email() {
    let w = world().await;
    let event = json!({
        "version": "0", "id": unique("eb"), "detail-type": "Safeship Guard Event",
        "source": "safeship", "account": ACCOUNT, "time": "2026-11-20T10:12:45Z",
        "region": REGION, "resources": [],
        "detail": {"id": unique("guard"), "time": "2026-11-20T10:12:45Z", "guard": "traffic-hook",
            "application": "checkout", "deployment-group": "checkout-prod",
            "deployment-id": "d-ABCDEF123", "dry-run": false, "outcome": {
                "kind": "hook-failed", "lifecycle-event": "BeforeAllowTraffic",
                "reason": "GET https://api.example.com/health?version=4&token=tok-SEKRIT-1 answered 500",
                "checks": [{"name": "health", "passed": false, "duration-ms": 12,
                    "detail": "https://deploy:pw-SEKRIT-2@internal.example.com/v?X-Amz-Signature=SEKRIT-3 and https://ghp_SEKRIT4@github.com/org/repo"}]
            }}
    });
    let answer = w.deliver(event).await.unwrap();
    assert_eq!(answer["channels"], json!(["slack", "email"]));
    let posted = w.channels.slack.received();
    assert_eq!(posted.len(), 1);
    let slack = posted[0].to_string();
    let emails = w.channels.emails().await;
    assert_eq!(emails.len(), 1);
    let email = emails[0].to_string();
    for text in [&slack, &email, &answer.to_string()] {
        assert!(!text.contains("SEKRIT"), "{text}");
    }
    // What is not secret still says what happened: which URL, which query keys.
    assert!(
        slack.contains("https://api.example.com/health?version=***&amp;token=[redacted]"),
        "{slack}"
    );
    assert!(
        email.contains("https://***@internal.example.com/v?X-Amz-Signature=***"),
        "{email}"
    );
}

const SCOPED_EMAIL: &str = "version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
notifications:
  routes:
    - {channel: slack, min-severity: warning}
    - {channel: email, min-severity: failure, applications: [checkout]}
";

const SCOPED_ONLY: &str = "version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
notifications:
  routes:
    - {channel: email, min-severity: failure, applications: [checkout]}
";

fn integrity_run_failed_without_application() -> Value {
    json!({
        "version": "0", "id": unique("eb"), "detail-type": "Safeship Guard Event",
        "source": "safeship", "account": ACCOUNT, "time": "2026-11-20T02:00:05Z",
        "region": REGION, "resources": [],
        "detail": {"id": unique("guard"), "time": "2026-11-20T02:00:05Z", "guard": "integrity-check",
            "dry-run": false, "outcome": {"kind": "integrity-run-failed", "database": "checkout-db",
            "error": "database checkout-db: connecting: connection refused"}}
    })
}

#[tokio::test]
async fn an_event_without_an_application_reaches_the_routes_that_list_none() {
    let w = world_with_policy(SCOPED_EMAIL).await;
    let answer = w
        .deliver(integrity_run_failed_without_application())
        .await
        .unwrap();
    assert_eq!(answer["channels"], json!(["slack"]), "{answer}");
    assert_eq!(w.channels.slack.accepted(), 1);
    assert!(
        w.channels.emails().await.is_empty(),
        "the checkout-only route is not told"
    );
    // The same kind of event about checkout reaches both.
    let mut about_checkout = integrity_run_failed_without_application();
    about_checkout["detail"]["application"] = json!("checkout");
    let answer = w.deliver(about_checkout).await.unwrap();
    assert_eq!(answer["channels"], json!(["slack", "email"]), "{answer}");
}

#[tokio::test]
async fn an_event_no_route_takes_is_answered_as_dropped_saying_why() {
    let w = world_with_policy(SCOPED_ONLY).await;
    let answer = w
        .deliver(integrity_run_failed_without_application())
        .await
        .unwrap();
    assert_eq!(answer["channels"], json!([]), "{answer}");
    assert_eq!(
        answer["dropped"],
        "the event names no application and every route that takes failure events is scoped to applications (checkout); a route without applications would hear it"
    );
    assert!(w.channels.slack.received().is_empty());
    assert!(w.channels.emails().await.is_empty());
}

#[tokio::test]
async fn a_channel_another_live_invocation_holds_is_an_error_never_a_duplicate() {
    let w = world().await;
    let store = &w.deps.common.idempotency;
    // Another invocation is posting this START to Slack right now.
    let safeship::idempotency::Claim::Acquired { owner, .. } =
        store.claim("d-abcdef123:start:slack").await.unwrap()
    else {
        panic!("a fresh key is acquired")
    };
    let start = sample_event("codedeploy-deployment-start.json");
    let err = w
        .deliver_within(start.clone(), Duration::from_secs(20))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "InProgressElsewhere", "{err}");
    assert!(w.channels.slack.received().is_empty());

    // A FAILURE whose email went out and whose Slack post is held elsewhere: not a duplicate.
    let failure = sample_event("codedeploy-deployment-failure.json");
    w.channels.slack.answer(404, None, "channel_not_found", 1);
    w.deliver(failure.clone()).await.unwrap_err();
    assert_eq!(w.channels.emails().await.len(), 1);
    let safeship::idempotency::Claim::Acquired {
        owner: failure_owner,
        ..
    } = store.claim("d-abcdef123:failure:slack").await.unwrap()
    else {
        panic!("the failed post released its claim")
    };
    let err = w
        .deliver_within(failure.clone(), Duration::from_secs(20))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "InProgressElsewhere", "{err}");

    // The holders finish (here: give up); the next deliveries send, then answer duplicate.
    store
        .release("d-abcdef123:start:slack", &owner)
        .await
        .unwrap();
    store
        .release("d-abcdef123:failure:slack", &failure_owner)
        .await
        .unwrap();
    let answer = w.deliver(failure.clone()).await.unwrap();
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["sent"].as_array().unwrap().len(), 1, "{answer}");
    let again = w.deliver(failure).await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert!(w.channels.emails().await.is_empty(), "email not repeated");
    assert_eq!(w.deliver(start).await.unwrap()["duplicate"], false);
    assert_eq!(w.channels.slack.accepted(), 2);
}

// ---- the real binary under the local Runtime API ----------------------------------------------

mod binary {
    use std::time::{Duration, Instant};

    use safeship_testkit::emulators::{
        create_idempotency_table, function_binary, moto_endpoint, sample_event, sdk_config, unique,
        REGION,
    };
    use safeship_testkit::notify::POLICY;
    use safeship_testkit::runtime::{Answer, LocalRuntime};
    use safeship_testkit::slack::Channels;

    async fn channels_and_env() -> (Channels, Vec<(String, String)>) {
        let sdk = sdk_config(&moto_endpoint()).await;
        let channels = Channels::create(&sdk).await;
        let table = unique("idem");
        create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
        let mut env: Vec<(String, String)> = vec![
            ("AWS_ENDPOINT_URL".into(), moto_endpoint()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("SAFESHIP_POLICY".into(), POLICY.into()),
            ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table),
        ];
        env.extend(channels.env());
        (channels, env)
    }

    async fn started(env: &[(String, String)]) -> (LocalRuntime, tokio::process::Child) {
        let runtime = LocalRuntime::start().await;
        let process =
            runtime.spawn_function(&function_binary("deploy-notify"), "deploy-notify", env);
        runtime
            .ready(Duration::from_secs(20))
            .await
            .expect("deploy-notify started");
        (runtime, process)
    }

    #[tokio::test]
    async fn with_a_webhook_that_never_answers_the_binary_answers_before_its_deadline() {
        let (channels, env) = channels_and_env().await;
        channels.slack.hang(4);
        let (runtime, _process) = started(&env).await;
        let deadline = Duration::from_secs(8);
        let (answer, timing) = runtime
            .invoke_timed(sample_event("codedeploy-deployment-start.json"), deadline)
            .await;
        let timing = timing.expect("the function answered");
        let took = timing.answered - timing.handed;
        assert!(
            took < deadline,
            "answered {took:?} after it was handed the event"
        );
        let Answer::Error {
            error_type,
            error_message,
        } = answer
        else {
            panic!("a webhook that never answers is not a success: {answer:?}")
        };
        assert_eq!(error_type, "safeship.deploy-notify.ChannelsFailed");
        assert!(
            error_message.contains("Slack may have posted it"),
            "{error_message}"
        );
        assert_eq!(channels.slack.received().len(), 1);
    }

    #[tokio::test]
    async fn killed_during_a_retry_after_wait_the_redelivery_posts_the_message_exactly_once() {
        let (channels, env) = channels_and_env().await;
        channels.slack.answer(429, Some(3), "rate_limited", 1);
        let start = sample_event("codedeploy-deployment-start.json");
        let deadline = Duration::from_secs(8);

        let (runtime, mut process) = started(&env).await;
        let handed = Instant::now();
        let first = tokio::spawn({
            let start = start.clone();
            async move { runtime.invoke(start, deadline).await }
        });
        assert_eq!(
            channels
                .slack
                .wait_for_received(1, Duration::from_secs(5))
                .await,
            1
        );
        // Lambda's sandbox dies in the middle of the Retry-After wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        process.kill().await.expect("kill the function process");
        first.abort();
        assert_eq!(channels.slack.accepted(), 0);

        // A new sandbox. While the dead invocation's claim could still be live (its deadline
        // has not passed), the delivery is an error Lambda retries, never a "duplicate".
        let (runtime, _process) = started(&env).await;
        if handed.elapsed() < deadline - Duration::from_secs(1) {
            let early = runtime.invoke(start.clone(), deadline).await;
            let Answer::Error { error_type, .. } = &early else {
                panic!("a claim held until the dead invocation's deadline: {early:?}")
            };
            assert_eq!(error_type, "safeship.deploy-notify.InProgressElsewhere");
        }
        // Lambda's retry after the dead invocation's deadline takes the claim over and posts.
        let wait = (deadline + Duration::from_millis(500)).saturating_sub(handed.elapsed());
        tokio::time::sleep(wait).await;
        let answer = runtime.invoke(start.clone(), deadline).await;
        let Answer::Response(body) = &answer else {
            panic!("the redelivery posts: {answer:?}")
        };
        assert_eq!(body["duplicate"], false, "{body}");
        assert_eq!(channels.slack.accepted(), 1);
        // And once more: a duplicate, nothing posted.
        let again = runtime.invoke(start, deadline).await;
        let Answer::Response(body) = &again else {
            panic!("{again:?}")
        };
        assert_eq!(body["duplicate"], true, "{body}");
        assert_eq!(channels.slack.accepted(), 1);
        assert_eq!(channels.slack.received().len(), 2);
    }
}

#[tokio::test]
async fn a_codedeploy_that_never_answers_does_not_hold_the_failure_notice_past_its_time() {
    use wiremock::matchers::{body_json, header};
    use wiremock::{Mock, ResponseTemplate};

    let w = world().await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.GetDeployment"))
        .and(body_json(json!({"deploymentId": "d-SLOW00001"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(Duration::from_secs(120)),
        )
        .mount(&w.codedeploy)
        .await;
    let mut failure = sample_event("codedeploy-deployment-failure.json");
    failure["detail"]["deploymentId"] = json!("d-SLOW00001");
    let started = Instant::now();
    let answer = w
        .deliver_within(failure, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["sent"].as_array().unwrap().len(), 2, "{answer}");
    let body = w.channels.emails().await[0]["Message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains("CodeDeploy's reason could not be read: codedeploy:GetDeployment on deployment d-SLOW00001 gave no answer within "), "{body}");
}

#[tokio::test]
async fn the_notifier_publishes_no_guard_events_whether_it_sends_or_fails() {
    use safeship_testkit::emulators::{moto_endpoint, sdk_config};
    use safeship_testkit::guard_inbox::GuardInbox;

    let mut w = world().await;
    let inbox = GuardInbox::create(&sdk_config(&moto_endpoint()).await).await;
    w.deps.common.guard = inbox.publisher();
    w.deliver(sample_event("codedeploy-deployment-start.json"))
        .await
        .unwrap();
    w.channels.slack.answer(404, None, "channel_not_found", 1);
    w.deliver(sample_event("codedeploy-deployment-failure.json"))
        .await
        .unwrap_err();
    assert_eq!(w.channels.slack.received().len(), 2);
    assert!(inbox.envelopes().await.is_empty());
}

#[tokio::test]
async fn a_gateway_timeout_is_treated_as_maybe_posted_and_not_repeated() {
    let w = world().await;
    w.channels.slack.answer(504, None, "", 1);
    let err = w
        .deliver_within(
            sample_event("codedeploy-deployment-start.json"),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a gateway timeout (504) after the message was sent (1 attempt): Slack may have posted it"),
        "{err}"
    );
    assert_eq!(w.channels.slack.received().len(), 1);
}

/// A sample alarm event renamed as one of safeship's own (CloudFormation names them
/// `<stack>-<logical id>-<suffix>`).
fn own_alarm(sample: &str, name: &str) -> Value {
    let text = serde_json::to_string(&sample_event(sample)).unwrap();
    serde_json::from_str(&text.replace("checkout-prod-5xx-rate", name)).unwrap()
}

#[tokio::test]
async fn safeships_own_alarm_goes_to_slack_once_by_any_route_and_never_by_email() {
    let mut w = world().await;
    w.deps.own_alarm_prefix = Some("safeship-prod-".into());
    let name = "safeship-prod-TrafficHookErrorsAlarm-1A2B3C4D5E6F";
    let answer = w
        .deliver(own_alarm("alarm-eventbridge-metric.json", name))
        .await
        .unwrap();
    // A failure by severity, which the policy also emails: the alarm's action emails already.
    assert_eq!(answer["channels"], json!(["slack"]), "{answer}");
    let posted = w.channels.slack.received();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0]["blocks"][0]["text"]["text"],
        ":rotating_light: safeship itself is failing"
    );
    let text = posted[0].to_string();
    assert!(
        text.contains(&format!("safeship's alarm {name} went to ALARM"))
            && text.contains("Threshold Crossed"),
        "{text}"
    );
    assert!(w.channels.emails().await.is_empty());

    // The same transition by SNS (the alarm's other action), or redelivered: not posted again.
    let again = w
        .deliver(own_alarm("alarm-sns-metric.json", name))
        .await
        .unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(w.channels.slack.received().len(), 1);

    // Back to OK: a new transition, told for the record.
    let ok = w
        .deliver(own_alarm("alarm-eventbridge-ok.json", name))
        .await
        .unwrap();
    assert_eq!(ok["severity"], "info", "{ok}");
    assert_eq!(w.channels.slack.received().len(), 2);
}

#[tokio::test]
async fn an_alarm_not_safeships_own_is_ignored_without_a_message() {
    let mut w = world().await;
    w.deps.own_alarm_prefix = Some("safeship-prod-".into());
    // A team's alarm, and one of another safeship stack beside this one.
    for name in [
        "checkout-prod-5xx-rate",
        "safeship-staging-TrafficHookErrorsAlarm-XYZ",
    ] {
        let answer = w
            .deliver(own_alarm("alarm-eventbridge-metric.json", name))
            .await
            .unwrap();
        let why = answer["ignored"].as_str().unwrap();
        assert!(
            why.contains(name) && why.contains("safeship-prod-"),
            "{why}"
        );
    }
    assert!(w.channels.slack.received().is_empty());
    assert!(w.channels.emails().await.is_empty());
}

// ---- Slack's Web API with a bot token: a deployment's messages in one thread ------------------

mod threads {
    use safeship_testkit::emulators::{moto_endpoint, sample_event, sdk_config};
    use safeship_testkit::notify::threaded_world;
    use safeship_testkit::slack::BOT_TOKEN;
    use serde_json::{json, Value};

    fn guard(kind_and_fields: Value, deployment: Option<&str>) -> Value {
        json!({
            "version": "0", "id": safeship_testkit::emulators::unique("eb"),
            "detail-type": "Safeship Guard Event", "source": "safeship",
            "account": safeship_testkit::emulators::ACCOUNT, "time": "2026-11-20T10:12:45Z",
            "region": safeship_testkit::emulators::REGION, "resources": [],
            "detail": {"id": safeship_testkit::emulators::unique("guard"), "time": "2026-11-20T10:12:45Z",
                       "guard": "alarm-rollback", "application": "checkout",
                       "deployment-group": "checkout-prod", "deployment-id": deployment,
                       "dry-run": false, "outcome": kind_and_fields}
        })
    }

    fn rollback() -> Value {
        json!({"kind": "rollback-performed", "alarm": {"name": "checkout-prod-5xx-rate",
            "kind": "metric", "state": "ALARM", "reason": "Threshold Crossed",
            "state-changed-at": "2026-11-20T10:12:40.123Z"},
            "actions": [{"action": "stop-deployment d-ABCDEF123 (with rollback)", "succeeded": true}]})
    }

    #[tokio::test]
    async fn a_deployments_messages_are_one_thread_and_its_failures_also_reach_the_channel() {
        let w = threaded_world().await;
        let start = w
            .deliver(sample_event("codedeploy-deployment-start.json"))
            .await
            .unwrap();
        assert!(
            start["sent"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("opening deployment d-ABCDEF123's thread"),
            "{start}"
        );
        w.deliver(guard(
            json!({"kind": "hook-passed", "lifecycle-event": "BeforeAllowTraffic", "checks": []}),
            Some("d-ABCDEF123"),
        ))
        .await
        .unwrap();
        let rolled_back = w
            .deliver(guard(rollback(), Some("d-ABCDEF123")))
            .await
            .unwrap();
        assert!(
            rolled_back["sent"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["detail"]
                    == "posted to #deploys in deployment d-ABCDEF123's thread, and to the channel"),
            "{rolled_back}"
        );
        // Not about a deployment: a message of its own.
        w.deliver(guard(
            json!({"kind": "snapshot-quota-warning", "manual-snapshots": 92, "quota": 100}),
            None,
        ))
        .await
        .unwrap();

        let posted = w.channels.slack.received();
        assert_eq!(posted.len(), 4, "{posted:?}");
        assert!(
            posted.iter().all(|p| p["channel"] == "C0DEPLOYS1"),
            "{posted:?}"
        );
        let parent = w.channels.slack.posted_ts(0);
        let parent = parent.as_str();
        assert!(posted[0].get("thread_ts").is_none(), "{}", posted[0]);
        assert_eq!(
            posted[0]["blocks"][0]["text"]["text"],
            ":rocket: Deployment started"
        );
        assert_eq!(
            posted[1]["thread_ts"], parent,
            "the hook's pass replies in the thread"
        );
        assert!(posted[1].get("reply_broadcast").is_none(), "{}", posted[1]);
        assert_eq!(posted[2]["thread_ts"], parent);
        assert_eq!(
            posted[2]["reply_broadcast"], true,
            "a failure is shown in the channel too"
        );
        assert!(posted[3].get("thread_ts").is_none(), "{}", posted[3]);
        assert!(
            w.channels
                .slack
                .authorizations()
                .iter()
                .all(|a| *a == format!("Bearer {BOT_TOKEN}")),
            "{:?}",
            w.channels.slack.authorizations()
        );
        for answer in [&start, &rolled_back] {
            assert!(!answer.to_string().contains(BOT_TOKEN), "{answer}");
        }
    }

    #[tokio::test]
    async fn the_retry_of_the_event_that_opened_the_thread_does_not_post_it_again() {
        let w = threaded_world().await;
        let start = sample_event("codedeploy-deployment-start.json");
        w.deliver(start.clone()).await.unwrap();
        // The process died after the thread's record was written and before the START's own
        // record was: a retry takes the START's claim over, which is what its absence gives.
        let sdk = sdk_config(&moto_endpoint()).await;
        aws_sdk_dynamodb::Client::new(&sdk)
            .delete_item()
            .table_name(&w.deps.common.config.idempotency_table)
            .key(
                "pk",
                // The tests' store is the function `test`'s.
                aws_sdk_dynamodb::types::AttributeValue::S("test#d-abcdef123:start:slack".into()),
            )
            .send()
            .await
            .unwrap();
        let retry = w.deliver(start).await.unwrap();
        assert_eq!(
            retry["sent"][0]["detail"],
            "posted to #deploys as deployment d-ABCDEF123's first message by an earlier delivery",
            "{retry}"
        );
        assert_eq!(w.channels.slack.received().len(), 1, "posted once");

        // The next event of the deployment still replies in the thread.
        w.deliver(guard(rollback(), Some("d-ABCDEF123")))
            .await
            .unwrap();
        let posted = w.channels.slack.received();
        assert_eq!(posted.len(), 2);
        assert_eq!(
            posted[1]["thread_ts"],
            w.channels.slack.posted_ts(0).as_str()
        );
    }

    #[tokio::test]
    async fn a_refusal_in_the_web_apis_answer_is_an_error_naming_the_channel_never_the_token() {
        let w = threaded_world().await;
        w.channels
            .slack
            .answer(200, None, r#"{"ok":false,"error":"not_in_channel"}"#, 1);
        let err = w
            .deliver(sample_event("codedeploy-deployment-start.json"))
            .await
            .unwrap_err();
        assert!(
            err.ends_with("posting to Slack channel #deploys: Slack refused the message (200): not_in_channel"),
            "{err}"
        );
        assert!(!err.contains(BOT_TOKEN));
        assert_eq!(
            w.channels.slack.received().len(),
            1,
            "a refusal is not retried"
        );
        // The failed post opened no thread: the retry posts the START as the thread's first.
        w.deliver(sample_event("codedeploy-deployment-start.json"))
            .await
            .unwrap();
        let posted = w.channels.slack.received();
        assert_eq!(posted.len(), 2);
        assert!(posted[1].get("thread_ts").is_none());
        w.deliver(guard(rollback(), Some("d-ABCDEF123")))
            .await
            .unwrap();
        assert_eq!(
            w.channels.slack.received()[2]["thread_ts"],
            w.channels.slack.posted_ts(0).as_str(),
            "the thread is the message that was posted (the refused one never was)"
        );
    }
}

// ---- the guard events' history, for `safeship status` -----------------------------------------

mod history {
    use deploy_notify::history::group_partition;
    use deploy_notify::GuardHistory;
    use safeship_testkit::emulators::{moto_endpoint, sdk_config, unique, ACCOUNT, REGION};
    use safeship_testkit::integrity::create_history_table;
    use safeship_testkit::notify::world;
    use serde_json::{json, Value};

    /// One history item as DynamoDB holds it: (kind, severity, headline, deployment, time, id).
    type Item = (String, String, String, Option<String>, String, String);

    /// The partition's items, newest first, as `safeship status` reads them (a raw `Query`:
    /// the reader is the CLI's).
    async fn latest(
        ddb: &aws_sdk_dynamodb::Client,
        table: &str,
        pk: &str,
        limit: i32,
    ) -> Vec<Item> {
        let out = ddb
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
            )
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .unwrap();
        let s = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
                 k: &str| { i.get(k).and_then(|v| v.as_s().ok()).cloned() };
        out.items()
            .iter()
            .map(|i| {
                (
                    s(i, "kind").unwrap(),
                    s(i, "severity").unwrap(),
                    s(i, "headline").unwrap(),
                    s(i, "deployment_id"),
                    s(i, "time").unwrap(),
                    s(i, "id").unwrap(),
                )
            })
            .collect()
    }

    fn guard(id: &str, time: &str, outcome: Value) -> Value {
        json!({
            "version": "0", "id": unique("eb"), "detail-type": "Safeship Guard Event",
            "source": "safeship", "account": ACCOUNT, "time": time, "region": REGION,
            "resources": [],
            "detail": {"id": id, "time": time, "guard": "traffic-hook", "application": "checkout",
                       "deployment-group": "checkout-prod", "deployment-id": "d-ABCDEF123",
                       "dry-run": false, "outcome": outcome}
        })
    }

    #[tokio::test]
    async fn each_guard_event_handled_is_recorded_once_newest_first_for_its_group() {
        let mut w = world().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_config(&moto_endpoint()).await);
        let table = create_history_table(&ddb).await;
        w.deps.history = Some(GuardHistory {
            ddb: ddb.clone(),
            table: table.clone(),
        });
        let passed = guard(
            "traffic-hook:h-1",
            "2026-12-03T08:00:00Z",
            json!({"kind": "hook-passed", "lifecycle-event": "BeforeAllowTraffic", "checks": []}),
        );
        let failed = guard(
            "traffic-hook:h-2",
            "2026-12-03T08:05:00Z",
            json!({"kind": "hook-failed", "lifecycle-event": "BeforeAllowTraffic",
                   "reason": "health: /version is \"4\", expected \"5\"", "checks": []}),
        );
        w.deliver(passed.clone()).await.unwrap();
        w.deliver(failed).await.unwrap();
        // A redelivery answers duplicate and records the same item, not a second one.
        assert_eq!(w.deliver(passed).await.unwrap()["duplicate"], true);
        // A CodeDeploy state change is no guard event: not recorded.
        w.deliver(safeship_testkit::emulators::sample_event(
            "codedeploy-deployment-start.json",
        ))
        .await
        .unwrap();

        let events = latest(
            &ddb,
            &table,
            &group_partition("checkout", "checkout-prod"),
            10,
        )
        .await;
        let seen: Vec<(&str, &str, &str)> = events
            .iter()
            .map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "hook-failed",
                    "failure",
                    "Smoke checks failed: traffic not shifted"
                ),
                ("hook-passed", "info", "Smoke checks passed"),
            ],
            "{events:?}"
        );
        assert_eq!(events[0].3.as_deref(), Some("d-ABCDEF123"));
        assert_eq!(events[0].4, "2026-12-03T08:05:00.000Z");
        let one = latest(
            &ddb,
            &table,
            &group_partition("checkout", "checkout-prod"),
            1,
        )
        .await;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].5, "traffic-hook:h-2");
    }

    #[tokio::test]
    async fn a_history_table_that_refuses_fails_the_invocation_after_the_channels_and_the_retry_records_it(
    ) {
        let mut w = world().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_config(&moto_endpoint()).await);
        w.deps.history = Some(GuardHistory {
            ddb: ddb.clone(),
            table: unique("no-such-table"),
        });
        let event = guard(
            "traffic-hook:h-3",
            "2026-12-03T08:10:00Z",
            json!({"kind": "hook-passed", "lifecycle-event": "BeforeAllowTraffic", "checks": []}),
        );
        let err = w.deliver(event.clone()).await.unwrap_err();
        assert!(
            err.contains("dynamodb:PutItem on guard history table"),
            "{err}"
        );
        assert_eq!(
            w.channels.slack.received().len(),
            1,
            "the message went out first"
        );
        // The table is there now: the retry records it and posts nothing again.
        let table = create_history_table(&ddb).await;
        w.deps.history = Some(GuardHistory {
            ddb: ddb.clone(),
            table: table.clone(),
        });
        let retry = w.deliver(event).await.unwrap();
        assert_eq!(retry["duplicate"], true, "{retry}");
        assert_eq!(w.channels.slack.received().len(), 1);
        let events = latest(
            &ddb,
            &table,
            &group_partition("checkout", "checkout-prod"),
            5,
        )
        .await;
        assert_eq!(events.len(), 1);
    }
}

/// ECS's own deployments (issue 19): `ECS Deployment State Change` events of a service become
/// messages about the service, linking to its deployments in the console; a failure also goes by
/// email, a rollback is a warning, and each is sent once.
#[tokio::test]
async fn ecs_deployment_state_changes_are_announced_once_with_the_services_deployments() {
    let w = world().await;
    let failed = sample_event("ecs-deployment-failed.json");
    let answer = w.deliver(failed.clone()).await.unwrap();
    assert_eq!(answer["channels"], json!(["slack", "email"]), "{answer}");
    let posted = w.channels.slack.received();
    assert_eq!(
        posted[0]["text"],
        "ECS deployment failed · checkout/checkout-api · ecs-svc/2749301756081365290"
    );
    let emails = w.channels.emails().await;
    assert_eq!(emails.len(), 1);
    let body = emails[0]["Message"].as_str().unwrap();
    assert!(
        body.contains("https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/checkout/services/checkout-api/deployments?region=eu-west-1"),
        "{body}"
    );
    assert!(
        body.contains("ECS deployment circuit breaker: task failed to start."),
        "{body}"
    );
    assert_eq!(w.deliver(failed).await.unwrap()["duplicate"], true);

    // A rollback in progress is a warning, not the start of a deployment: Slack only.
    let rollback = w
        .deliver(sample_event("ecs-deployment-rollback.json"))
        .await
        .unwrap();
    assert_eq!(rollback["channels"], json!(["slack"]), "{rollback}");
    assert_eq!(
        w.channels.slack.received()[1]["text"],
        "ECS deployment rolling back · checkout/checkout-api · ecs-svc/2749301756081365290"
    );
    let started = w
        .deliver(sample_event("ecs-deployment-in-progress.json"))
        .await
        .unwrap();
    assert_eq!(
        started["duplicate"], false,
        "a start is not the rollback's repeat"
    );
    assert_eq!(w.channels.slack.received().len(), 3);
    assert!(w.channels.emails().await.is_empty());
}
