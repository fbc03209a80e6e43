//! `safeship notify test` against a local Slack webhook (its URL in moto's Secrets Manager) and
//! email through moto SNS to an SQS subscription.

use safeship_testkit::emulators::{moto_endpoint, sdk_config, REGION};
use safeship_testkit::slack::Channels;

#[tokio::test]
async fn a_test_message_reaches_slack_and_email_and_a_refusing_slack_exits_3() {
    let moto = moto_endpoint();
    let channels = Channels::create(&sdk_config(&moto).await).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\napplications: {}\nnotifications:\n  routes:\n    - {channel: slack, min-severity: info}\n    - {channel: email, min-severity: failure}\n",
    )
    .unwrap();
    let run = || async {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_safeship"))
            .arg("--policy")
            .arg(&policy)
            .args(["notify", "test"])
            .env_clear()
            .envs(channels.env())
            .envs([
                ("AWS_ENDPOINT_URL", moto.as_str()),
                ("AWS_REGION", REGION),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("SAFESHIP_IDEMPOTENCY_TABLE", "unused-by-a-test-message"),
                ("USER", "alice"),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("safeship runs")
    };
    let out = run().await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("slack: posted to #deploys")
            && said.contains("email: published as SNS message"),
        "{said}"
    );
    let posted = channels.slack.received();
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0].to_string().contains("safeship test message"),
        "{}",
        posted[0]
    );
    assert!(posted[0].to_string().contains("by alice"), "{}", posted[0]);
    let emails = channels.emails().await;
    assert_eq!(emails.len(), 1);
    // The webhook URL is never printed.
    assert!(!said.contains(&channels.slack.url));

    // Slack refuses (404 channel_not_found): the email still goes, the exit is 3.
    channels.slack.answer(404, None, "channel_not_found", 10);
    let out = run().await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("slack: FAILED") && said.contains("channel_not_found"),
        "{said}"
    );
    assert!(!said.contains(&channels.slack.url), "{said}");
    assert_eq!(channels.emails().await.len(), 1);
}
