//! `safeship rollback` and `safeship flags` as a person runs them: moto holds CodeDeploy's
//! deployment and AppConfig's hosted versions; wiremock takes, and asserts, what moto lacks
//! (CodeDeploy `StopDeployment`; AppConfig's version listing, `ListDeployments`,
//! `StartDeployment`).

use std::process::Output;

use aws_sdk_codedeploy::types::ComputePlatform;
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{
    create_idempotency_table, moto_endpoint, sdk_config, unique, REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct World {
    _dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    policy: std::path::PathBuf,
    app: String,
    group: String,
    deployment: String,
    flags: FlagProfile,
    sdk: aws_config::SdkConfig,
    codedeploy_mock: MockServer,
    appconfig_mock: MockServer,
    /// The bus the CLI publishes its guard events to, read back.
    inbox: GuardInbox,
    _splits: (SplitEndpoint, SplitEndpoint),
}

async fn world() -> World {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
    let codedeploy_moto = aws_sdk_codedeploy::Client::new(&sdk);
    let (app, group) = codedeploy::fresh_group(&codedeploy_moto, ComputePlatform::Lambda).await;
    let deployment = codedeploy::deployment(&codedeploy_moto, &app, &group, "version: 0.0")
        .await
        .expect("moto CreateDeployment");
    let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
    let codedeploy_mock = MockServer::start().await;
    let codedeploy_split =
        SplitEndpoint::json_operations(&moto, &codedeploy_mock.uri(), &["StopDeployment"]).await;
    let appconfig_mock = MockServer::start().await;
    let appconfig_split = appconfig::split_endpoint(&moto, &appconfig_mock).await;
    flags.mount_version_list(&appconfig_mock).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1
applications:
  {app}:
    deployment-groups:
      {group}:
        environment: prod
        rollback:
          alarms: [{{name: {group}-5xx}}]
          feature-flags:
            - {{application: {}, environment: prod-env, profile: {}, flags: [new-checkout-flow]}}
",
            flags.application, flags.profile
        ),
    )
    .unwrap();
    let table = unique("cli-idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
    let inbox = GuardInbox::create(&sdk).await;
    let env = [
        ("AWS_ENDPOINT_URL", moto.clone()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY", codedeploy_split.uri()),
        ("AWS_ENDPOINT_URL_APPCONFIG", appconfig_split.uri()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("SAFESHIP_IDEMPOTENCY_TABLE", table),
        ("SAFESHIP_EVENT_BUS", inbox.bus.clone()),
        ("USER", "alice".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    World {
        _dir: dir,
        env,
        policy,
        app,
        group,
        deployment,
        flags,
        sdk,
        codedeploy_mock,
        appconfig_mock,
        inbox,
        _splits: (codedeploy_split, appconfig_split),
    }
}

impl World {
    /// `safeship flags <state> … <flag>` on this world's profile.
    async fn switch_flags(&self, state: &str, flag: &str) -> Output {
        self.run(&[
            "flags",
            state,
            "--application",
            &self.flags.application,
            "--environment",
            "prod-env",
            "--profile",
            &self.flags.profile,
            flag,
        ])
        .await
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_safeship"))
            .arg("--policy")
            .arg(&self.policy)
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("safeship runs")
    }

    async fn expect_stop(&self, times: u64) {
        Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
            .and(body_json(
                json!({"deploymentId": self.deployment, "autoRollbackEnabled": true}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/x-amz-json-1.1")
                    .set_body_json(json!({"status": "Pending", "statusMessage": "Stop requested"})),
            )
            .expect(times)
            .mount(&self.codedeploy_mock)
            .await;
    }

    async fn expect_flag_deployment(&self, version: &str, times: u64) {
        Mock::given(method("POST"))
            .and(path(format!(
                "/applications/{}/environments/prod-env/deployments",
                self.flags.application
            )))
            .and(body_partial_json(json!({
                "ConfigurationProfileId": self.flags.profile,
                "ConfigurationVersion": version,
                "DeploymentStrategyId": "AppConfig.AllAtOnce",
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "ApplicationId": self.flags.application, "EnvironmentId": "prod-env",
                "ConfigurationProfileId": self.flags.profile, "ConfigurationVersion": version,
                "DeploymentStrategyId": "AppConfig.AllAtOnce", "DeploymentNumber": 7,
                "State": "DEPLOYING"
            })))
            .expect(times)
            .mount(&self.appconfig_mock)
            .await;
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn rollback_stops_the_deployment_and_switches_the_flags_off_once_then_flags_on_after_the_fix()
{
    let w = world().await;
    w.expect_stop(1).await;
    w.expect_flag_deployment("2", 1).await;
    let out = w
        .run(&[
            "rollback",
            "--application",
            &w.app,
            "--group",
            &w.group,
            "--reason",
            "5xx after deploy",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.starts_with("ACTION"), "{said}");
    assert!(
        said.contains(&format!(
            "stop-deployment {} (with rollback)  ok",
            w.deployment
        )),
        "{said}"
    );
    let off = w
        .flags
        .hosted_version(&w.sdk, 2)
        .await
        .expect("version 2 written");
    assert_eq!(off["values"]["new-checkout-flow"]["enabled"], false);

    // Asked again (or an alarm meanwhile): the stop is not repeated, and says it was done.
    w.flags.mount_versions(&w.appconfig_mock, 2).await;
    w.flags.mount_deployed(&w.appconfig_mock, "2").await;
    let again = w
        .run(&[
            "--json",
            "rollback",
            "--application",
            &w.app,
            "--group",
            &w.group,
        ])
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    let stop = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"].as_str().unwrap().starts_with("stop-deployment"))
        .unwrap();
    assert!(
        stop["detail"].as_str().unwrap().contains("earlier"),
        "{stop}"
    );

    // After the fix: the flag back on, in version 3 built on 2, deployed.
    w.expect_flag_deployment("3", 1).await;
    let on = w.switch_flags("on", "new-checkout-flow").await;
    assert_eq!(on.status.code(), Some(0), "{}", text(&on));
    assert!(
        text(&on).starts_with("switched on: new-checkout-flow"),
        "{}",
        text(&on)
    );
    let v3 = w
        .flags
        .hosted_version(&w.sdk, 3)
        .await
        .expect("version 3 written");
    assert_eq!(v3["values"]["new-checkout-flow"]["enabled"], true);
    assert_eq!(v3["flags"], off["flags"]);
    // People are told, about the group whose rollback names these flags.
    let told: Vec<_> = w
        .inbox
        .events()
        .await
        .into_iter()
        .filter(|e| e.outcome.kind() == "flags-switched-by-hand")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].deployment_group.as_deref(), Some(w.group.as_str()));
    assert!(
        matches!(&told[0].outcome,
            safeship::guard::Outcome::FlagsSwitchedByHand { enabled: true, version: Some(3), by, flags, .. }
                if by == "alice" && flags == &["new-checkout-flow"]),
        "{told:?}"
    );
    w.codedeploy_mock.verify().await;
    w.appconfig_mock.verify().await;
}

#[tokio::test]
async fn a_dry_run_rollback_changes_nothing_and_an_unknown_group_or_flag_is_a_usage_error() {
    let w = world().await;
    w.expect_stop(0).await;
    w.expect_flag_deployment("2", 0).await;
    let out = w
        .run(&[
            "rollback",
            "--application",
            &w.app,
            "--group",
            &w.group,
            "--dry-run",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("dry run: nothing was changed"),
        "{}",
        text(&out)
    );
    assert_eq!(w.flags.hosted_version(&w.sdk, 2).await, None);

    let out = w
        .run(&["rollback", "--application", &w.app, "--group", "nope"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not a deployment group of the policy"),
        "{}",
        text(&out)
    );

    let out = w.switch_flags("off", "no-such-flag").await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no-such-flag not defined"),
        "{}",
        text(&out)
    );
    w.codedeploy_mock.verify().await;
    w.appconfig_mock.verify().await;
}

#[tokio::test]
async fn status_shows_the_deployment_in_flight_and_the_groups_guard_rails() {
    let w = world().await;
    let out = w.run(&["status", "--application", &w.app]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.starts_with(&format!("{}/{} (prod)\n", w.app, w.group)),
        "{said}"
    );
    assert!(
        said.contains(&format!("  deploying: {} (Created, created ", w.deployment)),
        "{said}"
    );
    assert!(
        said.contains(&format!("rollback on alarm {}-5xx", w.group)),
        "{said}"
    );
    assert!(
        said.contains("hooks report Failed: no smoke checks"),
        "{said}"
    );

    let out = w
        .run(&[
            "--json",
            "status",
            "--application",
            &w.app,
            "--group",
            &w.group,
        ])
        .await;
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer["groups"][0]["in-flight"][0]["id"],
        w.deployment.as_str()
    );

    let out = w.run(&["status", "--application", &w.app]).await;
    assert!(
        text(&out).contains(
            "latest guard events: not kept here (SAFESHIP_GUARD_HISTORY_TABLE is not set"
        ),
        "{}",
        text(&out)
    );

    let out = w.run(&["status", "--application", "nope"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the policy guards no group of application nope"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn status_shows_each_groups_latest_guard_events_newest_first() {
    let mut w = world().await;
    let ddb = aws_sdk_dynamodb::Client::new(&w.sdk);
    let table = safeship_testkit::integrity::create_history_table(&ddb).await;
    w.env
        .push(("SAFESHIP_GUARD_HISTORY_TABLE".into(), table.clone()));
    let out = w.run(&["status", "--application", &w.app]).await;
    assert!(
        text(&out).contains("  latest guard events: none recorded"),
        "{}",
        text(&out)
    );
    for (i, (kind, headline)) in [
        ("hook-passed", "Smoke checks passed"),
        ("rollback-performed", "Rolled back after an alarm"),
    ]
    .into_iter()
    .enumerate()
    {
        let outcome = match kind {
            "hook-passed" => safeship::guard::Outcome::HookPassed {
                lifecycle_event: None,
                checks: vec![],
            },
            _ => safeship::guard::Outcome::NothingToRollBack {
                alarm: safeship::guard::AlarmSummary {
                    name: "a".into(),
                    arn: None,
                    kind: safeship::model::AlarmKind::Metric,
                    state: safeship::model::AlarmState::Alarm,
                    reason: "r".into(),
                    state_changed_at: chrono::Utc::now(),
                },
                reason: "r".into(),
            },
        };
        let event = safeship::guard::GuardEvent {
            version: 1,
            id: format!("e-{i}"),
            time: format!("2026-12-03T08:0{i}:00Z").parse().unwrap(),
            guard: safeship::guard::Guard::TrafficHook,
            application: Some(w.app.clone()),
            deployment_group: Some(w.group.clone()),
            deployment_id: Some(w.deployment.clone()),
            dry_run: false,
            outcome,
            account: None,
            region: None,
        };
        deploy_notify::history::record(&ddb, &table, &event, headline)
            .await
            .unwrap();
    }
    let out = w.run(&["status", "--application", &w.app]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let expected = format!(
        "  latest guard events:\n    2026-12-03 08:01:00Z  nothing-to-roll-back   Rolled back after an alarm ({d})\n    2026-12-03 08:00:00Z  hook-passed            Smoke checks passed ({d})",
        d = w.deployment
    );
    assert!(said.contains(&expected), "{said}");
    let json_out = w
        .run(&["--json", "status", "--application", &w.app, "--events", "1"])
        .await;
    let answer: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let latest = answer["groups"][0]["latest-guard-events"]
        .as_array()
        .unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0]["id"], "e-1");
}

#[tokio::test]
async fn flags_switched_whose_guard_event_cannot_be_published_say_so_and_exit_3() {
    let mut w = world().await;
    // The bus is gone: EventBridge refuses the event.
    for (k, v) in &mut w.env {
        if k == "SAFESHIP_EVENT_BUS" {
            *v = unique("no-such-bus");
        }
    }
    w.expect_flag_deployment("2", 1).await;
    let out = w.switch_flags("off", "new-checkout-flow").await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        said.starts_with("switched off: new-checkout-flow"),
        "{said}"
    );
    assert!(
        said.contains("but its guard event could not be published, so no one was notified"),
        "{said}"
    );
    // The switch stands.
    let off = w
        .flags
        .hosted_version(&w.sdk, 2)
        .await
        .expect("version 2 written");
    assert_eq!(off["values"]["new-checkout-flow"]["enabled"], false);
    w.appconfig_mock.verify().await;
}
