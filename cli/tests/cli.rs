//! The `safeship` binary as a person runs it: its exit codes, its output and its calls, against
//! moto (RDS, DynamoDB, EventBridge), a real HTTP service for the smoke checks, and a wiremock
//! endpoint that must see no call at all when the command line is wrong.

use std::path::{Path, PathBuf};
use std::process::Output;

use axum::routing::get;
use axum::{Json, Router};
use safeship_testkit::emulators::{
    create_db_instance, create_idempotency_table, manual_snapshot_ids, moto_endpoint, sdk_config,
    unique, REGION,
};
use serde_json::{json, Value};

/// A temporary policy file and the environment the binary runs with (moto's, a fresh table).
struct Terminal {
    _dir: tempfile::TempDir,
    policy: PathBuf,
    env: Vec<(String, String)>,
}

async fn terminal(policy_text: &str) -> Terminal {
    terminal_at(policy_text, &moto_endpoint()).await
}

async fn terminal_at(policy_text: &str, endpoint: &str) -> Terminal {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_text).unwrap();
    let table = unique("cli-idem");
    if endpoint == moto_endpoint() {
        let sdk = sdk_config(endpoint).await;
        create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
    }
    let env = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("SAFESHIP_IDEMPOTENCY_TABLE", table.as_str()),
        ("SAFESHIP_EVENT_BUS", "default"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    Terminal {
        _dir: dir,
        policy,
        env,
    }
}

impl Terminal {
    /// Runs `safeship` with `args` (the policy given by --policy), no stdin, like CI.
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_safeship"));
        command
            .arg("--policy")
            .arg(&self.policy)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().cloned())
            .stdin(std::process::Stdio::null());
        command.output().await.expect("safeship runs")
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A policy with a database backed by a fresh moto DB instance (and one never snapshotted), and
/// a group whose smoke check names an address the tests override.
async fn policy_with_database() -> (String, String) {
    let sdk = sdk_config(&moto_endpoint()).await;
    let identifier = unique("cli-db");
    create_db_instance(&aws_sdk_rds::Client::new(&sdk), &identifier)
        .await
        .expect("moto CreateDBInstance");
    let policy = format!(
        "version: 1
applications:
  orders:
    deployment-groups:
      orders-prod:
        environment: prod
        traffic-hook:
          http-checks:
            - name: health
              url: http://orders.internal/health
              expect-status: 200
              expect-json: {{/version: \"{{{{target-version}}}}\"}}
              timeout-ms: 2000
        snapshot: {{database: orders-db}}
databases:
  orders-db:
    kind: instance
    identifier: {identifier}
    environment: prod
  empty-db:
    kind: instance
    identifier: {identifier}-never-snapshotted
    environment: prod
"
    );
    (policy, identifier)
}

/// The version under test: `/health` answers version 7.
async fn service() -> String {
    let app = Router::new().route("/health", get(|| async { Json(json!({"version": "7"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn policy_check_passes_a_valid_policy_and_fails_an_invalid_one_naming_the_problem() {
    let t = terminal("version: 1\napplications: {}\n").await;
    let out = t
        .run(&[
            "policy",
            "check",
            example("examples/policy.yaml").to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("valid (1 application, 1 deployment group, 1 database)"));

    let bad = t._dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: prod\n        rollbak: {}\n",
    )
    .unwrap();
    let out = t
        .run(&["--json", "policy", "check", bad.to_str().unwrap()])
        .await;
    assert_eq!(code(&out), 1);
    let answer = json_out(&out);
    assert_eq!(answer["valid"], false);
    assert!(
        answer["error"].as_str().unwrap().contains("rollbak"),
        "{answer}"
    );

    let out = t.run(&["policy", "check", "/nowhere/policy.yaml"]).await;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("reading /nowhere/policy.yaml"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn policy_explain_says_what_each_group_gets() {
    let t = terminal("version: 1\napplications: {}\n").await;
    let out = t
        .run(&[
            "policy",
            "explain",
            example("examples/checkout-service/policy.yaml")
                .to_str()
                .unwrap(),
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("traffic hooks: lambda ping: invoke checkout-service-CheckoutApi-EXAMPLE"),
        "{text}"
    );
    assert!(
        text.contains("then the traffic hook checks and reports"),
        "{text}"
    );
}

#[tokio::test]
async fn policy_explain_shows_an_ecs_service_with_its_listeners_soak_and_gate() {
    let t = terminal("version: 1\napplications: {}\n").await;
    let out = t
        .run(&[
            "policy",
            "explain",
            example("examples/ecs-service/policy.yaml")
                .to_str()
                .unwrap(),
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for said in [
        "ECS service checkout-ecs-Cluster-EXAMPLE/checkout-api (prod)",
        "http health: GET http://internal-checkout-alb.example:8443/health (production listener http://internal-checkout-alb.example/health)",
        "soak: the alarms watched 10 min after the production shift, every 60 s",
        "snapshot before deploying: checkout-db (no snapshot, no deployment)",
    ] {
        assert!(text.contains(said), "{said} not in {text}");
    }
}

#[tokio::test]
async fn a_usage_error_exits_2_naming_the_argument_and_calls_nothing() {
    let aws = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(500))
        .expect(0)
        .mount(&aws)
        .await;
    let t = terminal_at("version: 1\napplications: {}\n", &aws.uri()).await;
    for (args, named) in [
        (
            &["snapshot", "fresh", "--database", "d", "--max-age", "soon"][..],
            "--max-age",
        ),
        (&["snapshot", "create", "--database", "d"][..], "--reason"),
        (
            &[
                "check",
                "--application",
                "a",
                "--group",
                "g",
                "--url-override",
                "nothing",
            ][..],
            "--url-override",
        ),
        (&["snapshot", "destroy"][..], "destroy"),
    ] {
        let out = t.run(args).await;
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
    // --help has an example on every subcommand.
    for sub in [
        &["snapshot", "create"][..],
        &["snapshot", "fresh"],
        &["check"],
        &["policy", "explain"],
        &["invoke"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = t.run(&args).await;
        assert_eq!(code(&out), 0);
        assert!(
            stdout(&out).contains("Example:\n  safeship "),
            "{sub:?}: {}",
            stdout(&out)
        );
    }
    aws.verify().await;
}

#[tokio::test]
async fn snapshot_create_wait_then_list_then_the_freshness_gate() {
    let (policy, identifier) = policy_with_database().await;
    let t = terminal(&policy).await;
    let deployment = unique("d").replace('-', "").to_uppercase();
    let out = t
        .run(&[
            "--json",
            "snapshot",
            "create",
            "--database",
            "orders-db",
            "--reason",
            "migration 042",
            "--deployment-id",
            &deployment,
            "--wait",
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let created = json_out(&out);
    assert_eq!(created["status"], "available", "{created}");
    let id = created["snapshot-id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("safeship-orders-db-"), "{id}");

    // The snapshot is in RDS.
    let sdk = sdk_config(&moto_endpoint()).await;
    assert_eq!(
        manual_snapshot_ids(&aws_sdk_rds::Client::new(&sdk), &identifier).await,
        vec![id.clone()]
    );

    let out = t
        .run(&["snapshot", "list", "--database", "orders-db"])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("SNAPSHOT"), "{text}");
    assert!(
        text.contains(&id) && text.contains("available") && text.contains(&deployment),
        "{text}"
    );

    let out = t
        .run(&[
            "snapshot",
            "fresh",
            "--database",
            "orders-db",
            "--max-age",
            "30m",
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("is fresh"), "{}", stdout(&out));
    // A database with no snapshot: the gate refuses, exit 1.
    let out = t
        .run(&[
            "snapshot",
            "fresh",
            "--database",
            "empty-db",
            "--max-age",
            "30m",
        ])
        .await;
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("is stale"), "{}", stdout(&out));
    // Not a policy database: a usage error naming the known ones.
    let out = t.run(&["snapshot", "list", "--database", "orders"]).await;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("known: empty-db, orders-db"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn an_unreachable_aws_exits_3_naming_the_call() {
    let (policy, _) = policy_with_database().await;
    let mut t = terminal(&policy).await;
    for (k, v) in &mut t.env {
        if k == "AWS_ENDPOINT_URL" {
            *v = "http://127.0.0.1:9".into();
        }
    }
    let out = t
        .run(&["snapshot", "list", "--database", "orders-db"])
        .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("rds:DescribeDB"), "{}", stderr(&out));
}

#[tokio::test]
async fn check_runs_the_groups_smoke_checks_now_against_an_overridden_address() {
    let service = service().await;
    let (policy, _) = policy_with_database().await;
    let t = terminal(&policy).await;
    let over = format!("http://orders.internal={service}");
    let out = t
        .run(&[
            "check",
            "--application",
            "orders",
            "--group",
            "orders-prod",
            "--version",
            "7",
            "--url-override",
            &over,
        ])
        .await;
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("health")
            && text.contains("pass")
            && text.contains("orders/orders-prod: passed"),
        "{text}"
    );

    // The wrong version: the check fails, exit 1, and says what it expected.
    let out = t
        .run(&[
            "--json",
            "check",
            "--application",
            "orders",
            "--group",
            "orders-prod",
            "--version",
            "8",
            "--url-override",
            &over,
        ])
        .await;
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let answer = json_out(&out);
    assert_eq!(answer["status"], "Failed");
    assert_eq!(answer["checks"][0]["passed"], false);

    let out = t
        .run(&["check", "--application", "orders", "--group", "nope"])
        .await;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("orders/nope is not a deployment group"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn invoke_runs_a_functions_handler_on_an_event_file() {
    let (policy, _) = policy_with_database().await;
    let t = terminal(&policy).await;
    let event = t._dir.path().join("fresh.json");
    std::fs::write(
        &event,
        r#"{"fresh": {"database": "empty-db", "max-age-minutes": 60}}"#,
    )
    .unwrap();
    let out = t
        .run(&[
            "invoke",
            "predeploy-snapshot",
            "--event",
            event.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_out(&out)["status"], "stale");
    // A malformed event: the function's own error, exit 2.
    std::fs::write(&event, r#"{"fresh": {"database": "empty-db"}}"#).unwrap();
    let out = t
        .run(&[
            "invoke",
            "predeploy-snapshot",
            "--event",
            event.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("max-age-minutes"), "{}", stderr(&out));
}

#[tokio::test]
async fn completions_are_printed_for_a_shell() {
    let t = terminal("version: 1\napplications: {}\n").await;
    let out = t.run(&["completions", "bash"]).await;
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("_safeship()"), "{}", stdout(&out));
}

#[tokio::test]
async fn restore_puts_the_newest_pre_deploy_snapshot_into_a_new_instance_and_prune_keeps_fresh_ones(
) {
    let (policy, _) = policy_with_database().await;
    let t = terminal(&policy).await;
    // Nothing to restore yet: said, exit 2, nothing created.
    let target = unique("restored").to_lowercase();
    let out = t
        .run(&[
            "snapshot",
            "restore",
            "--database",
            "orders-db",
            "--to",
            &target,
        ])
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no available snapshot"),
        "{}",
        stderr(&out)
    );

    let out = t
        .run(&[
            "--json",
            "snapshot",
            "create",
            "--database",
            "orders-db",
            "--reason",
            "drill",
            "--request-id",
            &unique("run"),
            "--wait",
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snapshot = json_out(&out)["snapshot-id"].as_str().unwrap().to_owned();

    let out = t
        .run(&[
            "snapshot",
            "restore",
            "--database",
            "orders-db",
            "--to",
            &target,
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "restoring {snapshot} (deployment none) into DB instance {target}"
        )),
        "{}",
        stdout(&out)
    );
    let sdk = sdk_config(&moto_endpoint()).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let restored = rds
        .describe_db_instances()
        .db_instance_identifier(&target)
        .send()
        .await
        .expect("the restored instance exists");
    let arn = restored.db_instances()[0]
        .db_instance_arn()
        .unwrap()
        .to_owned();
    let tags = rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_list()
            .iter()
            .any(|t| t.key() == Some("safeship:restored-from")
                && t.value() == Some(snapshot.as_str()))
    );

    // A snapshot made just now is within retention: prune keeps it (and says so).
    let out = t
        .run(&["snapshot", "prune", "--database", "orders-db"])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "orders-db: nothing past its retention");
    let out = t
        .run(&["snapshot", "list", "--database", "orders-db"])
        .await;
    assert!(stdout(&out).contains(&snapshot));
}
