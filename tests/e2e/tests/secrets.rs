//! Secrets (issue 18, part 5): every function run through its error paths with sentinel
//! secrets in a whole emulated installation (`safeship_testkit::world`): the Slack bot token
//! (refused by Slack), the database password (the database unreachable), and a token in a smoke
//! check's header and in its URL (the service unreachable). Logged at TRACE, everything the
//! functions wrote, every answer they gave, every guard event they published and every message
//! they sent is scanned: no sentinel appears anywhere. A second test walks the rollback's and the
//! snapshot's error paths (each AWS call they depend on denied, in a world of its own) and a
//! notifier whose Slack is an incoming webhook that refuses, its URL a sentinel of its own.

use aws_sdk_ssm::types::ParameterType;
use safeship_testkit::samples::{delivered, world, world_for_webhook};
use safeship_testkit::slack::BOT_TOKEN;
use safeship_testkit::split::Fault;
use safeship_testkit::world::FUNCTIONS;
use serde_json::Value;

/// The smoke check's header token and URL token, and the database password: values no code
/// path has a reason to print.
const HEADER_TOKEN: &str = "s3nt1nel-header-4b7e1d";
const URL_TOKEN: &str = "s3nt1nel-url-9c2a6f";
const DB_PASSWORD: &str = "s3nt1nel-dbpass-e81f07";

#[tokio::test]
async fn no_secret_appears_in_logs_errors_guard_events_or_messages() {
    let (mut world, d) = world().await;
    // The smoke check carries a token in a header and in its URL, and its service is down
    // (nothing listens on port 9); the database is unreachable (port 9 again).
    let policy = with_check_tokens(&world, "http://127.0.0.1:9").await;
    let policy = replace_port(&policy, 9);
    store_policy(&world, &policy).await;
    // The database's secret holds the sentinel password.
    let secret_arn = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-arn: "))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .expect("the policy names the database secret");
    let secrets = aws_sdk_secretsmanager::Client::new(&world.sdk);
    let current: Value = serde_json::from_str(
        &secrets
            .get_secret_value()
            .secret_id(&secret_arn)
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap(),
    )
    .unwrap();
    let mut with_sentinel = current.clone();
    with_sentinel["password"] = Value::from(DB_PASSWORD);
    secrets
        .put_secret_value()
        .secret_id(&secret_arn)
        .secret_string(with_sentinel.to_string())
        .send()
        .await
        .unwrap();
    // Slack refuses the bot token (as it does a revoked one).
    world
        .channels
        .slack
        .answer(200, None, r#"{"ok":false,"error":"invalid_auth"}"#, 50);
    world
        .env
        .push(("AWS_LAMBDA_LOG_LEVEL".into(), "trace".into()));
    for name in FUNCTIONS {
        world.start(name, 1).await.unwrap();
    }

    let now = chrono::Utc::now();
    let mut answers = Vec::new();
    for (function, sample) in [
        (
            "traffic-hook",
            "codedeploy-lifecycle-before-allow-traffic.json",
        ),
        ("deploy-notify", "codedeploy-deployment-failure.json"),
        ("deploy-notify", "codedeploy-deployment-start.json"),
        ("integrity-check", "scheduled-event.json"),
        ("alarm-rollback", "alarm-eventbridge-metric.json"),
        ("predeploy-snapshot", "predeploy-snapshot-direct.json"),
    ] {
        let answer = world.invoke(function, delivered(sample, &d, now)).await;
        answers.push(format!("{function} {sample}: {answer:?}"));
    }
    // The notifier handed the guard events the others published (where their errors are told).
    let envelopes = world.inbox.envelopes().await;
    for envelope in &envelopes {
        let answer = world.invoke("deploy-notify", envelope.clone()).await;
        answers.push(format!("deploy-notify guard event: {answer:?}"));
    }
    // The error paths were walked: the hook failed on its check, the notifier on Slack, the
    // integrity run on the database.
    let said = answers.join("\n");
    assert!(
        said.contains("\"status\": String(\"Failed\")"),
        "the hook did not fail: {said}"
    );
    assert!(
        said.contains("invalid_auth"),
        "Slack did not refuse: {said}"
    );
    assert!(
        world
            .guard_events_published()
            .iter()
            .any(|id| id.starts_with("integrity:") && id.ends_with(":run")),
        "the integrity run did not fail: {:?}",
        world.guard_events_published()
    );

    let mut places: Vec<(String, String)> = vec![("answers".into(), said)];
    places.push(("guard events".into(), format!("{envelopes:?}")));
    places.push((
        "Slack messages".into(),
        format!("{:?}", world.channels.slack.received()),
    ));
    places.push((
        "emails".into(),
        format!("{:?}", world.channels.emails().await),
    ));
    places.push(("calls to AWS".into(), world.calls_sent()));
    for name in FUNCTIONS {
        places.push((
            format!("{name}'s logs"),
            world.stop_and_read_output(name).await,
        ));
    }
    for (place, text) in &places {
        println!("secrets: {place}: {} bytes", text.len());
        // Past the runtime's 4 MiB a function's output is no longer kept, and so not scanned.
        assert!(
            text.len() < 4 << 20,
            "{place} was cut off at {} bytes",
            text.len()
        );
    }
    // The error paths printed what they were about: the check's target (its token stripped),
    // the database's address, the Slack channel.
    for (expected, why) in [
        ("127.0.0.1:9", "the smoke check's target"),
        ("#deploys", "the Slack channel"),
    ] {
        assert!(
            places.iter().any(|(_, text)| text.contains(expected)),
            "nothing names {why} ({expected})"
        );
    }
    let logs: usize = places.iter().map(|(_, text)| text.len()).sum();
    assert!(
        logs > 10_000,
        "too little was captured to mean anything: {logs} bytes"
    );
    assert_none_appears(&places, &[HEADER_TOKEN, URL_TOKEN, DB_PASSWORD, BOT_TOKEN]);
    println!("secrets: {logs} bytes of logs, answers, guard events, messages and calls scanned for 4 sentinels: none found");
}

/// The policy's database `port:` set to `port`.
fn replace_port(policy: &str, port: u16) -> String {
    policy
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("port: ") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}port: {port}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Panics naming the first sentinel found in a place, with what is around it.
fn assert_none_appears(places: &[(String, String)], sentinels: &[&str]) {
    for (place, text) in places {
        for sentinel in sentinels {
            if let Some(at) = text.find(sentinel) {
                let around: String = text[..at]
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .chain(text[at..].chars().take(100))
                    .collect();
                panic!("{sentinel} appears in {place}: …{around}…");
            }
        }
    }
}

/// The Slack incoming webhook's URL is a secret of its own (whoever has it posts to the
/// channel): the world's is `…/services/T000/B000/XXXXSECRETXXXX`.
const WEBHOOK_SECRET: &str = "XXXXSECRETXXXX";

/// The error paths of the rollback and the snapshot, and a notifier whose Slack is an incoming
/// webhook that refuses: each AWS call they depend on denied, each in a world of its own, with
/// the smoke check's tokens in the policy every function reads and the webhook's URL in the
/// notifier's secret.
#[tokio::test]
async fn no_secret_appears_on_the_rollbacks_the_snapshots_or_a_webhooks_error_paths() {
    let paths = [
        (
            "alarm-rollback",
            "alarm-eventbridge-metric.json",
            "ListDeployments",
            "ListDeployments",
        ),
        (
            "alarm-rollback",
            "alarm-eventbridge-metric.json",
            "StopDeployment",
            "StopDeployment",
        ),
        (
            "alarm-rollback",
            "alarm-eventbridge-metric.json",
            "POST hostedconfigurationversions",
            "CreateHostedConfigurationVersion",
        ),
        (
            "alarm-rollback",
            "alarm-eventbridge-metric.json",
            "PutEvents",
            "PutEvents",
        ),
        (
            "predeploy-snapshot",
            "codedeploy-lifecycle-before-allow-traffic.json",
            "GetDeployment",
            "GetDeployment",
        ),
        (
            "predeploy-snapshot",
            "predeploy-snapshot-direct.json",
            "CreateDBSnapshot",
            "CreateDBSnapshot",
        ),
        (
            "predeploy-snapshot",
            "predeploy-snapshot-direct.json",
            "PutEvents",
            "PutEvents",
        ),
        // The webhook refuses in every world; here the email is denied too.
        (
            "deploy-notify",
            "codedeploy-deployment-failure.json",
            "Publish",
            "invalid_token",
        ),
    ];
    let mut scanned = 0;
    for (function, sample, operation, named) in paths {
        let places = error_path(function, sample, operation).await;
        let said = &places[0].1;
        assert!(
            said.contains(named),
            "{function} {sample} with {operation} denied did not fail naming {named}: {said}"
        );
        for (place, text) in &places {
            // Past the runtime's 4 MiB a function's output is no longer kept, and so not scanned.
            assert!(
                text.len() < 4 << 20,
                "{place} was cut off at {} bytes",
                text.len()
            );
        }
        scanned += places.iter().map(|(_, text)| text.len()).sum::<usize>();
        assert_none_appears(&places, &[HEADER_TOKEN, URL_TOKEN, WEBHOOK_SECRET]);
    }
    assert!(
        scanned > 50_000,
        "too little was captured to mean anything: {scanned} bytes"
    );
    println!(
        "secrets, error paths: {} paths, {scanned} bytes scanned for 3 sentinels: none found",
        paths.len()
    );
}

/// One error path: `function` given `sample` with `operation` denied on every call, logged at
/// TRACE; then the notifier handed the guard events it published. Everything said, published,
/// sent and logged, by place (the answers first).
async fn error_path(
    function: &'static str,
    sample: &str,
    operation: &str,
) -> Vec<(String, String)> {
    let (mut world, d) = world_for_webhook().await;
    with_check_tokens(&world, &world.smoke_target_url()).await;
    // The webhook refuses every post, as Slack does a revoked one.
    world.channels.slack.answer(403, None, "invalid_token", 50);
    world
        .env
        .push(("AWS_LAMBDA_LOG_LEVEL".into(), "trace".into()));
    world.start(function, 1).await.unwrap();
    if function != "deploy-notify" {
        world.start("deploy-notify", 1).await.unwrap();
    }
    world.arm_fault(operation, Fault::AccessDenied, None);
    let answer = world
        .invoke(function, delivered(sample, &d, chrono::Utc::now()))
        .await;
    let mut said = vec![format!(
        "{function} {sample}, {operation} denied: {answer:?}"
    )];
    world.arm_fault("none", Fault::AccessDenied, None);
    let envelopes = world.inbox.envelopes().await;
    for envelope in &envelopes {
        let answer = world.invoke("deploy-notify", envelope.clone()).await;
        said.push(format!("deploy-notify guard event: {answer:?}"));
    }
    let mut places = vec![
        ("answers".to_owned(), said.join("\n")),
        ("guard events".into(), format!("{envelopes:?}")),
        (
            "emails".into(),
            format!("{:?}", world.channels.emails().await),
        ),
        (
            "Slack posts".into(),
            format!("{:?}", world.channels.slack.received()),
        ),
        ("calls to AWS".into(), world.calls_sent()),
    ];
    places.push((
        format!("{function}'s logs"),
        world.stop_and_read_output(function).await,
    ));
    if function != "deploy-notify" {
        places.push((
            "deploy-notify's logs".into(),
            world.stop_and_read_output("deploy-notify").await,
        ));
    }
    places
}

/// The world's policy with the smoke check's tokens in: one in a header, one in its URL, which
/// points at `target` (the service, or where nothing listens). Stored, and returned.
async fn with_check_tokens(world: &safeship_testkit::world::World, target: &str) -> String {
    let policy = aws_sdk_ssm::Client::new(&world.sdk)
        .get_parameter()
        .name(&world.parameter)
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .and_then(|p| p.value)
        .unwrap()
        .replace(
            &format!("url: {}/health", world.smoke_target_url()),
            &format!("url: {target}/health?access_token={URL_TOKEN}"),
        )
        .replace(
            "headers: {x-safeship-check: \"1\"}",
            &format!(
                "headers: {{x-safeship-check: \"1\", authorization: \"Bearer {HEADER_TOKEN}\"}}"
            ),
        );
    assert!(
        policy.contains(URL_TOKEN) && policy.contains(HEADER_TOKEN),
        "{policy}"
    );
    store_policy(world, &policy).await;
    policy
}

async fn store_policy(world: &safeship_testkit::world::World, policy: &str) {
    aws_sdk_ssm::Client::new(&world.sdk)
        .put_parameter()
        .name(&world.parameter)
        .value(policy)
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}
