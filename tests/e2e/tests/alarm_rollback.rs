//! Alarm-to-rollback end to end, from the alarm samples in `events/`.
//!
//! moto serves CodeDeploy's applications, groups, deployments (`ListDeployments` of in-flight
//! ones) and AppConfig's applications, profiles and hosted configuration versions
//! (`Create`/`GetHostedConfigurationVersion`). wiremock stands in, asserting the exact request,
//! where moto cannot:
//! - CodeDeploy `StopDeployment` (moto: HTTP 500);
//! - CodeDeploy reads of *succeeded* deployments (`ListDeployments`, `BatchGetDeployments`,
//!   `GetDeployment`) and `CreateDeployment` in the bake-window cases: moto's deployments stay
//!   `Created` forever, so a deployment that succeeded ten minutes ago cannot exist there;
//! - AppConfig `ListHostedConfigurationVersions` (not in moto) and `StartDeployment` (moto: 404).
//!
//! Split endpoints (`tests/src/split.rs`) send each operation to the right one through one client.

use aws_sdk_codedeploy::types::ComputePlatform;
use safeship::event::{normalise, AlarmStateChange, Inbound};
use safeship::guard::Outcome;
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{
    common_with_policy, create_idempotency_table, function_binary, moto_endpoint, sample_event,
    sdk_config, unique, REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::runtime::{Answer, LocalRuntime};
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ALARM: &str = "checkout-prod-5xx-rate";

struct World {
    app: String,
    group: String,
    flags: FlagProfile,
    /// A second feature-flag target of the same group (`Setup::second_flag_target`).
    flags2: Option<FlagProfile>,
    sdk: aws_config::SdkConfig,
    codedeploy_mock: MockServer,
    appconfig_mock: MockServer,
    codedeploy_moto: aws_sdk_codedeploy::Client,
    _splits: (SplitEndpoint, SplitEndpoint),
    /// The endpoints a function binary of this world uses (CodeDeploy, AppConfig).
    endpoints: (String, String),
    policy: String,
    deps: alarm_rollback::Deps,
}

struct Setup {
    flags_on: bool,
    dry_run: bool,
    /// Every CodeDeploy operation to wiremock (the bake-window cases).
    codedeploy_all_mocked: bool,
    /// The group switches flags off in a second profile too.
    second_flag_target: bool,
}

const DEFAULT: Setup = Setup {
    flags_on: true,
    dry_run: false,
    codedeploy_all_mocked: false,
    second_flag_target: false,
};

async fn world(setup: Setup) -> World {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
    let codedeploy_moto = aws_sdk_codedeploy::Client::new(&sdk);
    let (app, group) = codedeploy::fresh_group(&codedeploy_moto, ComputePlatform::Lambda).await;

    let flags = FlagProfile::create(&sdk, &flags_document(setup.flags_on)).await;
    let (appconfig_app, profile) = (&flags.application, &flags.profile);
    let flags2 = if setup.second_flag_target {
        Some(FlagProfile::create(&sdk, &flags_document(setup.flags_on)).await)
    } else {
        None
    };
    let second_target = flags2.as_ref().map_or(String::new(), |f| {
        format!(
            "            - application: {}
              environment: prod-env
              profile: {}
              flags: [new-checkout-flow]
",
            f.application, f.profile
        )
    });

    let policy = format!(
        "version: 1
applications:
  {app}:
    deployment-groups:
      {group}:
        environment: prod
        rollback:
          alarms: [{{name: {ALARM}}}, {{tag: {{key: \"safeship:rollback\", value: {group}}}}}]
          bake-window-minutes: 60
          dry-run: {dry_run}
          feature-flags:
            - application: {appconfig_app}
              environment: prod-env
              profile: {profile}
              flags: [new-checkout-flow, one-click-pay]
{second_target}",
        dry_run = setup.dry_run
    );

    let codedeploy_mock = MockServer::start().await;
    let codedeploy_split = if setup.codedeploy_all_mocked {
        SplitEndpoint::start(&moto, &codedeploy_mock.uri(), |_| true).await
    } else {
        SplitEndpoint::json_operations(&moto, &codedeploy_mock.uri(), &["StopDeployment"]).await
    };
    let appconfig_mock = MockServer::start().await;
    let appconfig_split = appconfig::split_endpoint(&moto, &appconfig_mock).await;
    flags.mount_version_list(&appconfig_mock).await;
    if let Some(f) = &flags2 {
        f.mount_version_list(&appconfig_mock).await;
    }

    let deps = alarm_rollback::Deps {
        common: common_with_policy(&sdk, &policy).await,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy_split.uri()).await),
        appconfig: aws_sdk_appconfig::Client::new(&sdk_config(&appconfig_split.uri()).await),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk),
    };
    World {
        app,
        group,
        flags,
        flags2,
        sdk,
        codedeploy_mock,
        appconfig_mock,
        codedeploy_moto,
        endpoints: (codedeploy_split.uri(), appconfig_split.uri()),
        _splits: (codedeploy_split, appconfig_split),
        policy,
        deps,
    }
}

impl World {
    /// The guard events this world publishes from now on land in the returned inbox.
    async fn guard_inbox(&mut self) -> GuardInbox {
        let inbox = GuardInbox::create(&self.sdk).await;
        self.deps.common.guard = inbox.publisher();
        inbox
    }

    /// A deployment in moto: `Created`, so in flight.
    async fn in_flight_deployment(&self) -> String {
        codedeploy::deployment(
            &self.codedeploy_moto,
            &self.app,
            &self.group,
            "version: 0.0",
        )
        .await
        .expect("moto CreateDeployment")
    }

    async fn expect_stop(&self, deployment_id: &str, times: u64) {
        Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
            .and(body_json(
                json!({"deploymentId": deployment_id, "autoRollbackEnabled": true}),
            ))
            .respond_with(json_11(
                json!({"status": "Pending", "statusMessage": "Stop requested"}),
            ))
            .expect(times)
            .mount(&self.codedeploy_mock)
            .await;
    }

    /// AppConfig `StartDeployment` of hosted version `version`, `times` times.
    async fn expect_flag_deployment(&self, version: &str, times: u64) {
        self.expect_flag_deployment_of(&self.flags, version, times)
            .await;
    }

    /// AppConfig `StartDeployment` of hosted version `version` of `flags`, `times` times.
    async fn expect_flag_deployment_of(&self, flags: &FlagProfile, version: &str, times: u64) {
        flags
            .expect_deployment(&self.appconfig_mock, version, times)
            .await;
    }

    async fn hosted_version(&self, version: i32) -> Option<Value> {
        self.flags.hosted_version(&self.sdk, version).await
    }

    async fn deliver(&self, sample: &str) -> Result<alarm_rollback::RollbackReport, String> {
        let Inbound::AlarmStateChange(alarm) = normalise(&sample_event(sample)).unwrap().event
        else {
            panic!("{sample} is not an alarm")
        };
        alarm_rollback::handle_alarm(&self.deps, &alarm)
            .await
            .map_err(|e| e.to_string())
    }

    async fn requests_to(&self, mock: &MockServer, needle: &str) -> usize {
        mock.received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.url.path().contains(needle)
                    || r.headers
                        .get("x-amz-target")
                        .is_some_and(|v| v.to_str().unwrap_or_default().ends_with(needle))
            })
            .count()
    }
}

fn json_11(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(body)
}

#[tokio::test]
async fn an_alarm_stops_the_deployment_in_flight_and_switches_the_flags_off_once() {
    let mut w = world(DEFAULT).await;
    let inbox = w.guard_inbox().await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;

    // EventBridge first, then the same transition by SNS: one rollback.
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(!report.duplicate);
    let actions: Vec<_> = report.actions.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.contains(&format!("stop-deployment {deployment} (with rollback)").as_str()),
        "{actions:?}"
    );
    assert!(
        report.actions.iter().all(|a| a.succeeded),
        "{:?}",
        report.actions
    );

    // The notifier hears why: the alarm and each action, and the flags that went off.
    let events = inbox.events().await;
    let kinds: Vec<_> = events.iter().map(|e| e.outcome.kind()).collect();
    assert_eq!(
        kinds,
        ["flags-switched-off", "rollback-performed"],
        "{events:?}"
    );
    // Each event links to the deployment it stopped, and says it was not a dry run.
    for e in &events {
        assert_eq!(
            e.deployment_id.as_deref(),
            Some(deployment.as_str()),
            "{e:?}"
        );
        assert!(!e.dry_run, "{e:?}");
    }
    let Outcome::FlagsSwitchedOff { flags, version, .. } = &events[0].outcome else {
        unreachable!()
    };
    assert_eq!(flags, &["new-checkout-flow".to_string()]);
    assert_eq!(*version, Some(2));
    let Outcome::RollbackPerformed { alarm, actions } = &events[1].outcome else {
        unreachable!()
    };
    assert_eq!(alarm.name, ALARM);
    assert!(
        alarm.reason.starts_with("Threshold Crossed"),
        "{}",
        alarm.reason
    );
    assert_eq!(actions, &report.actions);

    let again = w.deliver("alarm-sns-metric.json").await.unwrap();
    assert!(again.duplicate, "{again:?}");
    assert!(
        inbox.events().await.is_empty(),
        "a duplicate tells no one again"
    );

    // Version 2: the listed flag that was on is off; every other flag and attribute intact.
    let mut expected = flags_document(true);
    expected["values"]["new-checkout-flow"]["enabled"] = json!(false);
    assert_eq!(w.hosted_version(2).await, Some(expected));
    assert_eq!(w.hosted_version(3).await, None, "one new version only");
}

#[tokio::test]
async fn ok_insufficient_data_and_unmapped_alarms_change_nothing() {
    let w = world(DEFAULT).await;
    w.in_flight_deployment().await;
    for sample in [
        "alarm-eventbridge-ok.json",
        "alarm-eventbridge-composite.json",
    ] {
        let report = w.deliver(sample).await.unwrap();
        assert!(
            matches!(report.outcome, alarm_rollback::Decision::Ignore { .. }),
            "{sample}: {report:?}"
        );
        assert!(report.actions.is_empty());
    }
    let mut insufficient = sample_event("alarm-eventbridge-metric.json");
    insufficient["detail"]["state"]["value"] = json!("INSUFFICIENT_DATA");
    let Inbound::AlarmStateChange(alarm) = normalise(&insufficient).unwrap().event else {
        panic!()
    };
    let report = alarm_rollback::handle_alarm(&w.deps, &alarm).await.unwrap();
    assert!(matches!(
        report.outcome,
        alarm_rollback::Decision::Ignore { .. }
    ));
    assert!(w
        .codedeploy_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
    assert!(w
        .appconfig_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(w.hosted_version(2).await, None);
}

#[tokio::test]
async fn a_flag_already_off_is_not_redeployed() {
    let w = world(Setup {
        flags_on: false,
        ..DEFAULT
    })
    .await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 0).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let flags = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("flags off"))
        .unwrap();
    assert!(
        flags
            .detail
            .as_deref()
            .unwrap()
            .starts_with("already off in version 1"),
        "{flags:?}"
    );
    assert_eq!(w.hosted_version(2).await, None);
}

#[tokio::test]
async fn dry_run_makes_no_mutating_call() {
    let mut w = world(Setup {
        dry_run: true,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 0).await;
    w.expect_flag_deployment("2", 0).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(report.dry_run);
    let stop = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("stop-deployment"))
        .unwrap();
    assert_eq!(stop.detail.as_deref(), Some("dry run: not performed"));
    let flags = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("flags off"))
        .unwrap();
    assert!(
        flags
            .detail
            .as_deref()
            .unwrap()
            .starts_with("dry run: would switch off [new-checkout-flow]"),
        "{flags:?}"
    );
    assert_eq!(w.hosted_version(2).await, None);

    // The guard event says dry-run: what would have been done, for the deployment it names.
    let events = inbox.events().await;
    let [event] = events.as_slice() else {
        panic!("one guard event expected: {events:?}")
    };
    assert!(event.dry_run, "{event:?}");
    assert_eq!(event.deployment_id.as_deref(), Some(deployment.as_str()));
    let Outcome::RollbackPerformed { actions, .. } = &event.outcome else {
        panic!("{event:?}")
    };
    assert_eq!(actions, &report.actions);
}

#[tokio::test]
async fn a_failed_stop_does_not_keep_the_flags_on_and_the_retry_redoes_only_the_stop() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({"__type": "AccessDeniedException", "message": "not authorized to perform: codedeploy:StopDeployment"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_flag_deployment("2", 1).await;
    let err = w
        .deliver("alarm-eventbridge-metric.json")
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!(
            "alarm {ALARM}: 1 of 2 rollback actions failed: stop-deployment {deployment} (with rollback): codedeploy:StopDeployment on deployment {deployment} failed"
        )),
        "{err}"
    );
    assert!(err.contains("AccessDeniedException"), "{err}");
    assert!(
        w.hosted_version(2).await.is_some(),
        "the flags went off anyway"
    );

    // The delivery is retried: the stop goes through, the flags are not switched again.
    w.expect_stop(&deployment, 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(
        report.actions.iter().all(|a| a.succeeded),
        "{:?}",
        report.actions
    );
    assert_eq!(w.hosted_version(3).await, None);
}

/// The bake-window cases' group: nothing in flight, and no revert created since the alarm by an
/// interrupted attempt (no statuses, a creation-time range), unless a test mounts one first.
async fn nothing_in_flight_nor_reverted(w: &World) {
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(
        json!({"applicationName": w.app, "deploymentGroupName": w.group,
            "includeOnlyStatuses": ["Created", "Queued", "InProgress", "Ready", "Baking"]}),
    ))
    .respond_with(json_11(json!({"deployments": []})))
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(
        json!({"applicationName": w.app, "deploymentGroupName": w.group, "createTimeRange": {}}),
    ))
    .respond_with(json_11(json!({"deployments": []})))
    .with_priority(10)
    .mount(&w.codedeploy_mock)
    .await;
}

/// The bake-window cases: CodeDeploy's history as the real service answers it.
/// The last success, `d-NEW0000001`, completed `last_completed_minutes_before_alarm` before the
/// alarm and is described as `last_description`.
async fn history(
    w: &World,
    last_completed_minutes_before_alarm: i64,
    last_description: Option<&str>,
) {
    let alarm_at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:12:40.123Z").unwrap();
    let epoch = |minutes_before: i64| {
        (alarm_at - chrono::Duration::minutes(minutes_before)).timestamp() as f64
    };
    nothing_in_flight_nor_reverted(w).await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(
        json!({"includeOnlyStatuses": ["Succeeded"]}),
    ))
    .respond_with(json_11(
        json!({"deployments": ["d-NEW0000001", "d-OLD0000001"]}),
    ))
    .mount(&w.codedeploy_mock)
    .await;
    let last = last_completed_minutes_before_alarm;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.BatchGetDeployments",
    ))
    .and(body_json(
        json!({"deploymentIds": ["d-NEW0000001", "d-OLD0000001"]}),
    ))
    .respond_with(json_11(json!({"deploymentsInfo": [
        {"deploymentId": "d-NEW0000001", "status": "Succeeded",
         "createTime": epoch(last + 10), "completeTime": epoch(last),
         "description": last_description},
        {"deploymentId": "d-OLD0000001", "status": "Succeeded",
         "createTime": epoch(3000), "completeTime": epoch(2990)}
    ]})))
    .mount(&w.codedeploy_mock)
    .await;
}

/// A Lambda AppSpec as CodeDeploy holds it for a release that moved `live` from `from` to `to`.
fn lambda_release(from: &str, to: &str) -> Value {
    json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": format!(
        "version: 0.0\nResources:\n  - api:\n      Type: AWS::Lambda::Function\n      Properties: {{Name: checkout-api, Alias: live, CurrentVersion: \"{from}\", TargetVersion: \"{to}\"}}\nHooks:\n  - BeforeAllowTraffic: safeship-traffic-hook\n"
    )}})
}

/// `GetDeployment` of `id` answers `revision` on `platform`, `times` times.
async fn get_deployment(w: &World, id: &str, platform: &str, revision: Value, times: u64) {
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.GetDeployment"))
        .and(body_json(json!({"deploymentId": id})))
        .respond_with(json_11(json!({"deploymentInfo": {
            "deploymentId": id, "applicationName": w.app, "deploymentGroupName": w.group,
            "status": "Succeeded", "computePlatform": platform, "revision": revision}})))
        .expect(times)
        .mount(&w.codedeploy_mock)
        .await;
}

/// The `CreateDeployment` requests received, parsed.
async fn create_deployments(w: &World) -> Vec<Value> {
    w.codedeploy_mock
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.headers.get("x-amz-target").and_then(|v| v.to_str().ok())
                == Some("CodeDeploy_20141006.CreateDeployment")
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_lambda_deployment_inside_the_bake_window_is_reverted_by_moving_the_alias_back() {
    let mut w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    history(&w, 10, Some("release 4 (checkout-api)")).await;
    // The history real CodeDeploy has: d-OLD moved `live` from 2 to 3, d-NEW from 3 to 4. The
    // alias is on 4 now; replaying d-OLD's AppSpec (2 → 3) would name a current version the
    // alias is not on. The revert moves it from 4 back to 3.
    get_deployment(&w, "d-NEW0000001", "Lambda", lambda_release("3", "4"), 1).await;
    get_deployment(&w, "d-OLD0000001", "Lambda", lambda_release("2", "3"), 0).await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.CreateDeployment",
    ))
    .respond_with(json_11(json!({"deploymentId": "d-REVERT0001"})))
    .expect(1)
    .mount(&w.codedeploy_mock)
    .await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let redeploy = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("redeploy"))
        .unwrap();
    assert_eq!(
        redeploy.action,
        "redeploy the revision of d-OLD0000001, reverting d-NEW0000001"
    );
    assert_eq!(
        redeploy.detail.as_deref(),
        Some("created deployment d-REVERT0001")
    );
    let [create] = create_deployments(&w).await.try_into().unwrap();
    assert_eq!(create["applicationName"], json!(w.app));
    assert_eq!(create["deploymentGroupName"], json!(w.group));
    assert_eq!(
        create["description"],
        json!(format!(
            "safeship: alarm {ALARM} reverts d-NEW0000001 to the revision of d-OLD0000001"
        ))
    );
    assert_eq!(create["revision"]["revisionType"], "AppSpecContent");
    // safeship writes the new AppSpec as JSON (CodeDeploy takes JSON or YAML).
    let content: Value = serde_json::from_str(
        create["revision"]["appSpecContent"]["content"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        content,
        json!({"version": 0.0, "Resources": [{"api": {"Type": "AWS::Lambda::Function",
            "Properties": {"Name": "checkout-api", "Alias": "live",
                           "CurrentVersion": "4", "TargetVersion": "3"}}}],
            "Hooks": [{"BeforeAllowTraffic": "safeship-traffic-hook"}]})
    );
    // The events link to the reverted deployment.
    let events = inbox.events().await;
    let mut kinds: Vec<_> = events.iter().map(|e| e.outcome.kind()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["flags-switched-off", "rollback-performed"],
        "{events:?}"
    );
    for e in &events {
        assert_eq!(e.deployment_id.as_deref(), Some("d-NEW0000001"), "{e:?}");
    }
    // A duplicate does not redeploy again (CreateDeployment expected once).
    assert!(w.deliver("alarm-sns-metric.json").await.unwrap().duplicate);
}

#[tokio::test]
async fn an_ecs_deployment_inside_the_bake_window_is_reverted_to_the_earlier_task_definition() {
    let w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    history(&w, 10, None).await;
    let ecs = |revision: u32| {
        json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": format!(
            "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:{revision}\n        LoadBalancerInfo: {{ContainerName: app, ContainerPort: 8080}}\n"
        )}})
    };
    // An ECS AppSpec names the task definition it deploys: d-OLD's is the one live before d-NEW.
    get_deployment(&w, "d-NEW0000001", "ECS", ecs(13), 1).await;
    get_deployment(&w, "d-OLD0000001", "ECS", ecs(12), 1).await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.CreateDeployment",
    ))
    .and(body_partial_json(json!({"revision": ecs(12)})))
    .respond_with(json_11(json!({"deploymentId": "d-REVERT0002"})))
    .expect(1)
    .mount(&w.codedeploy_mock)
    .await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(
        report
            .actions
            .iter()
            .any(|a| a.detail.as_deref() == Some("created deployment d-REVERT0002")),
        "{:?}",
        report.actions
    );
}

#[tokio::test]
async fn a_revert_an_interrupted_attempt_created_is_not_created_again() {
    let w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    // The attempt that created d-REVERT0003 died before recording it: the retry finds it by its
    // description among the group's deployments since the alarm, and creates none.
    let description =
        format!("safeship: alarm {ALARM} reverts d-NEW0000001 to the revision of d-OLD0000001");
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(json!({"createTimeRange": {}})))
    // The search by description lists every status; the history's reads list successes.
    .and(|r: &wiremock::Request| !String::from_utf8_lossy(&r.body).contains("includeOnlyStatuses"))
    .respond_with(json_11(json!({"deployments": ["d-REVERT0003"]})))
    .with_priority(1)
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.BatchGetDeployments",
    ))
    .and(body_json(json!({"deploymentIds": ["d-REVERT0003"]})))
    .respond_with(json_11(json!({"deploymentsInfo": [
        {"deploymentId": "d-REVERT0003", "status": "InProgress", "creator": "user",
         "description": description}]})))
    .mount(&w.codedeploy_mock)
    .await;
    history(&w, 10, None).await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.CreateDeployment",
    ))
    .respond_with(json_11(json!({"deploymentId": "d-TWICE"})))
    .expect(0)
    .mount(&w.codedeploy_mock)
    .await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let redeploy = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("redeploy"))
        .unwrap();
    assert_eq!(
        redeploy.detail.as_deref(),
        Some("created deployment d-REVERT0003")
    );
}

#[tokio::test]
async fn outside_the_bake_window_nothing_is_rolled_back() {
    let mut w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    history(&w, 90, None).await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let code = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("roll back"))
        .unwrap();
    assert!(
        code.detail
            .as_deref()
            .unwrap()
            .contains("more than the 60-minute bake window"),
        "{code:?}"
    );
    assert_eq!(
        w.requests_to(&w.codedeploy_mock, "CreateDeployment").await,
        0
    );

    // The group has flags, and they went off; the code was left alone, and the guard events
    // say both: why nothing was rolled back, and which flags went off. Nothing claims a rollback.
    let events = inbox.events().await;
    let mut kinds: Vec<_> = events.iter().map(|e| e.outcome.kind()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["flags-switched-off", "nothing-to-roll-back"],
        "{events:?}"
    );
    let nothing = events
        .iter()
        .find_map(|e| match &e.outcome {
            Outcome::NothingToRollBack { alarm, reason } => Some((alarm, reason)),
            _ => None,
        })
        .unwrap();
    assert_eq!(nothing.0.name, ALARM);
    assert!(
        nothing
            .1
            .starts_with("no deployment in flight; the last success d-NEW0000001 finished at ")
            && nothing
                .1
                .ends_with(" — more than the 60-minute bake window before the alarm"),
        "{}",
        nothing.1
    );
    assert!(events
        .iter()
        .all(|e| e.deployment_id.is_none() && !e.dry_run));
}

#[tokio::test]
async fn a_second_alarm_does_not_revert_safeships_own_revert() {
    let mut w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    // The last success is the revert an earlier transition created, five minutes ago.
    let revert =
        format!("safeship: alarm {ALARM} reverts d-BAD0000001 to the revision of d-OLD0000001");
    history(&w, 5, Some(&revert)).await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let code = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("roll back"))
        .unwrap();
    let why = format!(
        "no deployment in flight; the last success d-NEW0000001 is already safeship's revert (\"{revert}\"): reverting it would bring back the revision it removed"
    );
    assert_eq!(
        code.detail.as_deref(),
        Some(format!("nothing to roll back: {why}").as_str())
    );
    assert!(report
        .actions
        .iter()
        .all(|a| !a.action.starts_with("redeploy")));
    for op in ["GetDeployment", "CreateDeployment"] {
        assert_eq!(w.requests_to(&w.codedeploy_mock, op).await, 0, "{op}");
    }
    let events = inbox.events().await;
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::NothingToRollBack { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [why.as_str()], "{events:?}");
}

#[tokio::test]
async fn a_malformed_alarm_event_is_rejected_before_any_call() {
    let w = world(DEFAULT).await;
    let mut sns = sample_event("alarm-sns-metric.json");
    sns["Records"][0]["Sns"]["Message"] = json!("{\"AlarmName\": \"x\"}");
    let err = alarm_rollback::handler(
        &w.deps,
        lambda_runtime::LambdaEvent::new(sns, lambda_runtime::Context::default()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "SNS CloudWatch alarm notification: field NewStateValue: missing"
    );
    assert!(w
        .codedeploy_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
    assert!(w
        .appconfig_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_alarm_mapped_by_tag_rolls_back_its_group() {
    let w = world(DEFAULT).await;
    let name = unique("checkout-canary-errors");
    aws_sdk_cloudwatch::Client::new(&w.sdk)
        .put_metric_alarm()
        .alarm_name(&name)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .tags(
            aws_sdk_cloudwatch::types::Tag::builder()
                .key("safeship:rollback")
                .value(&w.group)
                .build(),
        )
        .send()
        .await
        .expect("moto PutMetricAlarm");
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    let mut event = sample_event("alarm-eventbridge-metric.json");
    event["detail"]["alarmName"] = json!(name);
    event["resources"][0] = json!(format!(
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name}"
    ));
    let Inbound::AlarmStateChange(alarm) = normalise(&event).unwrap().event else {
        panic!()
    };
    let report = alarm_rollback::handle_alarm(&w.deps, &alarm).await.unwrap();
    assert_eq!(
        report.outcome,
        alarm_rollback::Decision::RollBack {
            groups: vec![format!("{}/{}", w.app, w.group)]
        }
    );
}

#[tokio::test]
async fn a_deployment_already_completed_is_not_an_error() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({"__type": "DeploymentAlreadyCompletedException", "message": "The deployment is already completed"})),
        )
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let stop = report
        .actions
        .iter()
        .find(|a| a.action == format!("stop-deployment {deployment} (with rollback)"))
        .unwrap();
    assert!(stop.succeeded);
    assert_eq!(
        stop.detail.as_deref(),
        Some("already completed; nothing to stop")
    );
}

#[tokio::test]
async fn an_sns_alarm_without_its_time_names_that_field() {
    let w = world(DEFAULT).await;
    let mut sns = sample_event("alarm-sns-metric.json");
    let mut message: Value =
        serde_json::from_str(sns["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    message.as_object_mut().unwrap().remove("StateChangeTime");
    sns["Records"][0]["Sns"]["Message"] = json!(message.to_string());
    let err = alarm_rollback::handler(
        &w.deps,
        lambda_runtime::LambdaEvent::new(sns, lambda_runtime::Context::default()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "SNS CloudWatch alarm notification: field StateChangeTime: missing"
    );
    assert!(w
        .codedeploy_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn two_flag_targets_get_a_guard_event_each() {
    let mut w = world(Setup {
        second_flag_target: true,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    let second = w.flags2.take().unwrap();
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    w.expect_flag_deployment_of(&second, "2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert_eq!(
        report
            .actions
            .iter()
            .filter(|a| a.action.starts_with("flags off"))
            .count(),
        2,
        "{:?}",
        report.actions
    );

    // One `flags-switched-off` per profile, each with its own id: the notifier deduplicates by
    // id, so a shared one would swallow the second profile's news.
    let events = inbox.events().await;
    let transition = &report.transition;
    let group = format!("{}/{}", w.app, w.group);
    let mut switched: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::FlagsSwitchedOff { profile, .. } => Some((e.id.clone(), profile.clone())),
            _ => None,
        })
        .collect();
    switched.sort();
    let mut expected: Vec<_> = [&w.flags, &second]
        .iter()
        .map(|f| {
            let profile = format!("{}/prod-env/{}", f.application, f.profile);
            (
                format!("alarm-rollback:{transition}:{group}:flags-switched-off:{profile}"),
                profile,
            )
        })
        .collect();
    expected.sort();
    assert_eq!(switched, expected, "{events:?}");
    let mut ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "ids must be unique: {events:?}");
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(second.hosted_version(&w.sdk, 2).await.is_some());
}

#[tokio::test]
async fn several_deployments_in_flight_are_stopped_and_the_events_link_the_first() {
    let mut w = world(DEFAULT).await;
    let inbox = w.guard_inbox().await;
    let mut deployments = [
        w.in_flight_deployment().await,
        w.in_flight_deployment().await,
    ];
    deployments.sort();
    for d in &deployments {
        w.expect_stop(d, 1).await;
    }
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let events = inbox.events().await;
    let performed = events
        .iter()
        .find(|e| e.outcome.kind() == "rollback-performed")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(
        performed.deployment_id.as_deref(),
        Some(deployments[0].as_str())
    );
    let Outcome::RollbackPerformed { actions, .. } = &performed.outcome else {
        unreachable!()
    };
    let named: Vec<_> = actions
        .iter()
        .filter(|a| a.action.starts_with("stop-deployment"))
        .map(|a| a.action.clone())
        .collect();
    assert_eq!(
        named,
        deployments
            .iter()
            .map(|d| format!("stop-deployment {d} (with rollback)"))
            .collect::<Vec<_>>()
    );
    assert_eq!(actions, &report.actions);
}

/// The `nothing-to-roll-back` reasons among `events`.
fn nothing_reasons(events: &[safeship::guard::GuardEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::NothingToRollBack { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_muted_alarm_rolls_nothing_back_and_says_it_was_muted() {
    let mut w = world(DEFAULT).await;
    let inbox = w.guard_inbox().await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 0).await;
    w.expect_flag_deployment("2", 0).await;
    // The documented EventBridge event of a transition an alarm mute rule muted.
    let report = w.deliver("alarm-eventbridge-muted.json").await.unwrap();
    let alarm_rollback::Decision::HeldBack { groups, reason } = &report.outcome else {
        panic!("a muted alarm acted: {report:?}")
    };
    assert_eq!(groups, &[format!("{}/{}", w.app, w.group)]);
    assert!(
        reason.starts_with("ignored: muted by checkout-prod-maintenance-window "),
        "{reason}"
    );
    assert!(report.actions.is_empty(), "{report:?}");
    assert_eq!(w.hosted_version(2).await, None, "no flag switched off");
    assert_eq!(w.requests_to(&w.codedeploy_mock, "StopDeployment").await, 0);
    let events = inbox.events().await;
    assert_eq!(nothing_reasons(&events), [reason.as_str()], "{events:?}");
    assert_eq!(events.len(), 1, "{events:?}");
}

#[tokio::test]
async fn a_composite_alarm_whose_actions_are_suppressed_rolls_nothing_back() {
    let mut w = world(DEFAULT).await;
    let inbox = w.guard_inbox().await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 0).await;
    w.expect_flag_deployment("2", 0).await;
    // The documented composite sample (actions suppressed by its suppressor's wait period),
    // mapped to the group by name.
    let mut event = sample_event("alarm-eventbridge-composite.json");
    event["detail"]["alarmName"] = json!(ALARM);
    event["resources"][0] = json!(format!(
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM}"
    ));
    let Inbound::AlarmStateChange(alarm) = normalise(&event).unwrap().event else {
        panic!()
    };
    let report = alarm_rollback::handle_alarm(&w.deps, &alarm).await.unwrap();
    let alarm_rollback::Decision::HeldBack { reason, .. } = &report.outcome else {
        panic!("a suppressed alarm acted: {report:?}")
    };
    assert_eq!(
        reason,
        "ignored: actions suppressed by checkout-prod-maintenance: Actions suppressed by WaitPeriod"
    );
    assert_eq!(w.hosted_version(2).await, None);
    assert_eq!(nothing_reasons(&inbox.events().await), [reason.as_str()]);
}

#[tokio::test]
async fn a_second_alarm_never_stops_codedeploys_rollback_deployment() {
    // The flags are off already: this is about the code.
    let mut w = world(Setup {
        codedeploy_all_mocked: true,
        flags_on: false,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    // The first transition stopped d-BAD0000001 with rollback; CodeDeploy's rollback
    // deployment d-RB00000001 is in flight (BatchGetDeployments as CodeDeploy describes it).
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(
        json!({"includeOnlyStatuses": ["Created", "Queued", "InProgress", "Ready", "Baking"]}),
    ))
    .respond_with(json_11(json!({"deployments": ["d-RB00000001"]})))
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.BatchGetDeployments",
    ))
    .and(body_json(json!({"deploymentIds": ["d-RB00000001"]})))
    .respond_with(json_11(json!({"deploymentsInfo": [
        {"deploymentId": "d-RB00000001", "status": "InProgress", "creator": "codeDeployRollback",
         "rollbackInfo": {"rollbackTriggeringDeploymentId": "d-BAD0000001",
                          "rollbackMessage": "Rollback for deployment d-BAD0000001"}}]})))
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(json_11(json!({"status": "Pending"})))
        .expect(0)
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_flag_deployment("2", 0).await;
    // A second alarm (the metric-math one), and the first one flapping back into ALARM later.
    let mut flapping = sample_event("alarm-eventbridge-metric.json");
    flapping["detail"]["state"]["timestamp"] = json!("2026-11-20T10:15:40.123+0000");
    let second = sample_event("alarm-eventbridge-metric-math.json");
    let mut second_policy_alarm = second.clone();
    second_policy_alarm["detail"]["alarmName"] = json!(ALARM);
    for event in [flapping, second_policy_alarm] {
        let Inbound::AlarmStateChange(alarm) = normalise(&event).unwrap().event else {
            panic!()
        };
        let report = alarm_rollback::handle_alarm(&w.deps, &alarm).await.unwrap();
        let code = report
            .actions
            .iter()
            .find(|a| a.action.starts_with("roll back"))
            .unwrap_or_else(|| panic!("{report:?}"));
        assert_eq!(
            code.detail.as_deref(),
            Some(
                "nothing to roll back: only a rollback is in flight (d-RB00000001 is \
                 CodeDeploy's rollback of d-BAD0000001): a rollback is never stopped"
            )
        );
    }
    assert_eq!(nothing_reasons(&inbox.events().await).len(), 2);
}

#[tokio::test]
async fn a_second_alarm_never_stops_safeships_revert_in_flight() {
    let w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    let revert =
        format!("safeship: alarm {ALARM} reverts d-NEW0000001 to the revision of d-OLD0000001");
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(
        json!({"includeOnlyStatuses": ["Created", "Queued", "InProgress", "Ready", "Baking"]}),
    ))
    .respond_with(json_11(json!({"deployments": ["d-REVERT0001"]})))
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.BatchGetDeployments",
    ))
    .respond_with(json_11(json!({"deploymentsInfo": [
        {"deploymentId": "d-REVERT0001", "status": "InProgress", "creator": "user",
         "description": revert}]})))
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(json_11(json!({"status": "Pending"})))
        .expect(0)
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(
        report.actions.iter().all(|a| !a.action.starts_with("stop")),
        "{:?}",
        report.actions
    );
}

/// AppConfig's deployments of `flags` to `prod-env`: version `version`, deployment 1, complete.
/// `ListDeployments` does not name the profile here (older answers do not): `GetDeployment` does.
#[tokio::test]
async fn flags_written_but_not_deployed_are_deployed_by_the_retry() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.flags.mount_deployed(&w.appconfig_mock, "1").await;
    // AppConfig runs one deployment per environment at a time: the first StartDeployment is
    // refused (409 ConflictException), after version 2 (flags off) was written.
    Mock::given(method("POST"))
        .and(path(format!(
            "/applications/{}/environments/prod-env/deployments",
            w.flags.application
        )))
        .respond_with(
            ResponseTemplate::new(409)
                .insert_header("x-amzn-ErrorType", "ConflictException")
                .set_body_json(json!({"Message": "Deployment number 6 is already in progress for environment prod-env", "__type": "ConflictException"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&w.appconfig_mock)
        .await;
    let err = w
        .deliver("alarm-eventbridge-metric.json")
        .await
        .unwrap_err();
    assert!(err.contains("appconfig:StartDeployment"), "{err}");
    assert!(err.contains("ConflictException"), "{err}");
    let mut off = flags_document(true);
    off["values"]["new-checkout-flow"]["enabled"] = json!(false);
    assert_eq!(
        w.hosted_version(2).await,
        Some(off),
        "version 2 was written"
    );
    // AppConfig now lists both versions; the environment still serves version 1 (flags on).
    w.flags.mount_versions(&w.appconfig_mock, 2).await;
    // The retry deploys version 2, the flags-off version, and writes no third one.
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let flags = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("flags off"))
        .unwrap();
    assert!(flags.succeeded, "{flags:?}");
    assert!(
        flags
            .detail
            .as_deref()
            .unwrap()
            .starts_with("version 2 (already written with the flags off; 1 deployed) deployed"),
        "{flags:?}"
    );
    assert_eq!(w.hosted_version(3).await, None);
}

#[tokio::test]
async fn flags_already_off_in_the_deployed_version_are_not_deployed_again() {
    let w = world(Setup {
        flags_on: false,
        ..DEFAULT
    })
    .await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.flags.mount_deployed(&w.appconfig_mock, "1").await;
    w.expect_flag_deployment("2", 0).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let flags = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("flags off"))
        .unwrap();
    assert_eq!(
        flags.detail.as_deref(),
        Some("already off in version 1, the version deployed to prod-env: nothing deployed")
    );
}

#[tokio::test]
async fn a_rollback_that_succeeds_on_retry_is_announced_with_an_id_of_its_own() {
    let mut w = world(DEFAULT).await;
    let inbox = w.guard_inbox().await;
    let deployment = w.in_flight_deployment().await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(
                    json!({"__type": "AccessDeniedException", "message": "not authorized"}),
                ),
        )
        .up_to_n_times(1)
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_flag_deployment("2", 1).await;
    w.deliver("alarm-eventbridge-metric.json")
        .await
        .unwrap_err();
    let failed = inbox.events().await;
    w.expect_stop(&deployment, 1).await;
    w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let succeeded = inbox.events().await;
    let performed = |events: &[safeship::guard::GuardEvent]| {
        events
            .iter()
            .filter_map(|e| match &e.outcome {
                Outcome::RollbackPerformed { actions, .. } => Some((e.id.clone(), actions.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let [(failed_id, failed_actions)] = performed(&failed).try_into().unwrap();
    let [(ok_id, ok_actions)] = performed(&succeeded).try_into().unwrap();
    assert!(failed_actions.iter().any(|a| !a.succeeded));
    assert!(ok_actions.iter().all(|a| a.succeeded), "{ok_actions:?}");
    // The notifier deduplicates by id: the success must not share the failure's.
    assert_ne!(failed_id, ok_id);
    let group = format!("{}/{}", w.app, w.group);
    let transition = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:checkout-prod-5xx-rate@2026-11-20T10:12:40.123Z";
    assert_eq!(
        ok_id,
        format!("alarm-rollback:{transition}:{group}:rollback-performed")
    );
    assert!(
        failed_id.starts_with(&format!("{ok_id}:failed-")),
        "{failed_id}"
    );
}

#[tokio::test]
async fn a_rollback_whose_guard_event_could_not_be_published_fails_and_the_retry_publishes_it() {
    let mut w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    // A bus that does not exist: PutEvents fails.
    w.deps.common.guard = safeship::guard::GuardPublisher::new(
        aws_sdk_eventbridge::Client::new(&w.sdk),
        unique("no-such-bus"),
    );
    let err = w
        .deliver("alarm-eventbridge-metric.json")
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!(
            "alarm {ALARM}: could not publish 2 guard event(s) that are the only record of what was done"
        )),
        "{err}"
    );
    // Lambda retries: nothing is done again (StopDeployment and StartDeployment once), and both
    // events go out, with the ids the first attempt gave them.
    let inbox = w.guard_inbox().await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(!report.duplicate, "the retry announced: {report:?}");
    let events = inbox.events().await;
    let group = format!("{}/{}", w.app, w.group);
    let transition = &report.transition;
    let mut ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            format!(
                "alarm-rollback:{transition}:{group}:flags-switched-off:{}/prod-env/{}",
                w.flags.application, w.flags.profile
            ),
            format!("alarm-rollback:{transition}:{group}:rollback-performed"),
        ]
    );
    // And a third delivery tells no one again.
    assert!(w.deliver("alarm-sns-metric.json").await.unwrap().duplicate);
    assert!(inbox.events().await.is_empty());
    assert_eq!(w.hosted_version(3).await, None);
}

#[tokio::test]
async fn an_ok_or_name_mapped_alarm_is_decided_without_reading_its_tags() {
    let mut w = world(DEFAULT).await;
    // Every CloudWatch call of the function through a recording pass-through to moto.
    let cloudwatch = SplitEndpoint::recording(&moto_endpoint()).await;
    w.deps.cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk_config(&cloudwatch.uri()).await);
    let report = w.deliver("alarm-eventbridge-ok.json").await.unwrap();
    assert!(matches!(
        report.outcome,
        alarm_rollback::Decision::Ignore { .. }
    ));
    let mut insufficient = sample_event("alarm-eventbridge-metric.json");
    insufficient["detail"]["state"]["value"] = json!("INSUFFICIENT_DATA");
    insufficient["detail"]["alarmName"] = json!("billing-errors");
    let Inbound::AlarmStateChange(alarm) = normalise(&insufficient).unwrap().event else {
        panic!()
    };
    alarm_rollback::handle_alarm(&w.deps, &alarm).await.unwrap();
    assert_eq!(
        cloudwatch
            .waits()
            .iter()
            .map(|w| w.operation.clone())
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "no ListTagsForResource for a transition the tags cannot change"
    );
    // The policy maps by tag too: an ALARM of an alarm no name maps does need its tags.
    let mut unmapped = sample_event("alarm-eventbridge-metric.json");
    unmapped["detail"]["alarmName"] = json!("billing-errors");
    unmapped["resources"][0] =
        json!("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:billing-errors");
    let Inbound::AlarmStateChange(alarm) = normalise(&unmapped).unwrap().event else {
        panic!()
    };
    alarm_rollback::handle_alarm(&w.deps, &alarm).await.unwrap();
    assert_eq!(cloudwatch.waits().len(), 1);
}

#[tokio::test]
async fn an_sns_alarm_without_its_arn_is_the_same_transition_as_on_eventbridge() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    assert!(
        !w.deliver("alarm-eventbridge-metric.json")
            .await
            .unwrap()
            .duplicate
    );
    let mut sns = sample_event("alarm-sns-metric.json");
    let mut message: Value =
        serde_json::from_str(sns["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    message.as_object_mut().unwrap().remove("AlarmArn");
    sns["Records"][0]["Sns"]["Message"] = json!(message.to_string());
    let report = alarm_rollback::handler(
        &w.deps,
        lambda_runtime::LambdaEvent::new(sns, lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    assert!(report.duplicate, "{report:?}");
}

/// The environment a real alarm-rollback binary of `w` runs with: the world's policy and
/// endpoints, `table` for idempotency and `bus` for guard events.
fn binary_env(w: &World, table: &str, bus: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY", w.endpoints.0.clone()),
        ("AWS_ENDPOINT_URL_APPCONFIG", w.endpoints.1.clone()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("SAFESHIP_POLICY", w.policy.clone()),
        ("SAFESHIP_IDEMPOTENCY_TABLE", table.to_owned()),
        ("SAFESHIP_EVENT_BUS", bus.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn started(runtime: &LocalRuntime, env: &[(String, String)]) -> tokio::process::Child {
    let process = runtime.spawn_function(&function_binary("alarm-rollback"), "alarm-rollback", env);
    runtime
        .ready(std::time::Duration::from_secs(20))
        .await
        .expect("alarm-rollback started");
    process
}

#[tokio::test]
async fn a_rollback_killed_mid_stop_is_finished_once_by_the_retry_and_never_answered_duplicate() {
    use std::time::{Duration, Instant};
    let w = world(DEFAULT).await;
    let inbox = GuardInbox::create(&w.sdk).await;
    let table = unique("idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&w.sdk), &table).await;
    let env = binary_env(&w, &table, &inbox.bus);
    let deployment = w.in_flight_deployment().await;
    // The first StopDeployment hangs (CodeDeploy slow, or the process about to be killed) ...
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(json_11(json!({"status": "Pending"})).set_delay(Duration::from_secs(300)))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    // ... and exactly one more, the retry's, succeeds.
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    let event = sample_event("alarm-eventbridge-metric.json");

    let first_runtime = std::sync::Arc::new(LocalRuntime::start().await);
    let mut first = started(&first_runtime, &env).await;
    let deadline = Duration::from_secs(8);
    let invoked = Instant::now();
    let first_answer = tokio::spawn({
        let (runtime, event) = (first_runtime.clone(), event.clone());
        async move { runtime.invoke(event, deadline).await }
    });
    // Wait until the first invocation is inside StopDeployment.
    while w.requests_to(&w.codedeploy_mock, "StopDeployment").await == 0 {
        assert!(
            invoked.elapsed() < deadline,
            "the first invocation never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A delivery while the first is live: an error Lambda retries, never a `duplicate` success.
    let second_runtime = LocalRuntime::start().await;
    let _second = started(&second_runtime, &env).await;
    let answer = second_runtime
        .invoke(event.clone(), Duration::from_secs(30))
        .await;
    let Answer::Error {
        error_type,
        error_message,
    } = &answer
    else {
        panic!("a delivery while the first is live succeeded: {answer:?}")
    };
    assert_eq!(error_type, "safeship.alarm-rollback.InProgressElsewhere");
    assert!(
        error_message.contains(&format!("stop-deployment {deployment} (with rollback)")),
        "{error_message}"
    );

    // Lambda ends the first invocation at its deadline: the process dies mid-call.
    first.kill().await.expect("kill the first invocation");
    drop(first_answer);
    // Its claim ended with its deadline; the retry after it takes the work over and finishes it.
    tokio::time::sleep((deadline + Duration::from_millis(500)).saturating_sub(invoked.elapsed()))
        .await;
    let answer = second_runtime
        .invoke(event.clone(), Duration::from_secs(30))
        .await;
    let Answer::Response(report) = &answer else {
        panic!("the retry did not finish the rollback: {answer:?}")
    };
    assert_eq!(report["duplicate"], json!(false), "{report}");
    let actions = report["actions"].as_array().unwrap();
    assert!(
        actions.iter().all(|a| a["succeeded"] == json!(true)),
        "{report}"
    );
    // Done exactly once: one successful stop (wiremock verifies the counts on drop), one flag
    // version, and one `rollback-performed` that tells it.
    assert_eq!(w.requests_to(&w.codedeploy_mock, "StopDeployment").await, 2);
    assert_eq!(w.hosted_version(3).await, None);
    let events = inbox.events().await;
    let mut kinds: Vec<_> = events.iter().map(|e| e.outcome.kind()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["flags-switched-off", "rollback-performed"],
        "{events:?}"
    );
    // And the next delivery is a duplicate, answered from the record.
    let Answer::Response(again) = second_runtime.invoke(event, Duration::from_secs(30)).await
    else {
        panic!("no answer to the duplicate")
    };
    assert_eq!(again["duplicate"], json!(true), "{again}");
}

#[tokio::test]
async fn a_codedeploy_that_never_answers_still_gets_an_answer_before_the_deadline() {
    use std::time::Duration;
    let w = world(DEFAULT).await;
    let inbox = GuardInbox::create(&w.sdk).await;
    let table = unique("idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&w.sdk), &table).await;
    let env = binary_env(&w, &table, &inbox.bus);
    let deployment = w.in_flight_deployment().await;
    // StopDeployment never answers within the invocation (the SDK's own attempt timeout, 10 s,
    // is longer than the whole invocation).
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(json_11(json!({"status": "Pending"})).set_delay(Duration::from_secs(300)))
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_flag_deployment("2", 1).await;
    let answer = answered_in_time(&env, Duration::from_secs(6)).await;
    let Answer::Error {
        error_type,
        error_message,
    } = &answer
    else {
        panic!("a rollback whose stop never finished succeeded: {answer:?}")
    };
    assert_eq!(error_type, "safeship.alarm-rollback.ActionsFailed");
    assert!(
        error_message.contains(&format!("stop-deployment {deployment} (with rollback)"))
            && error_message.contains("did not finish before the invocation's deadline"),
        "{error_message}"
    );
}

#[tokio::test]
async fn an_appconfig_that_never_answers_still_gets_an_answer_before_the_deadline_and_the_code_is_stopped(
) {
    use std::time::Duration;
    let w = world(DEFAULT).await;
    let inbox = GuardInbox::create(&w.sdk).await;
    let table = unique("idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&w.sdk), &table).await;
    let env = binary_env(&w, &table, &inbox.bus);
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    // AppConfig's StartDeployment never answers within the invocation.
    Mock::given(method("POST"))
        .and(path(format!(
            "/applications/{}/environments/prod-env/deployments",
            w.flags.application
        )))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(300)))
        .with_priority(1)
        .mount(&w.appconfig_mock)
        .await;
    let answer = answered_in_time(&env, Duration::from_secs(6)).await;
    let Answer::Error {
        error_type,
        error_message,
    } = &answer
    else {
        panic!("a rollback whose flags never went off succeeded: {answer:?}")
    };
    assert_eq!(error_type, "safeship.alarm-rollback.ActionsFailed");
    assert!(
        error_message.contains("flags off")
            && error_message.contains("did not finish before the invocation's deadline"),
        "{error_message}"
    );
    // The code side did not wait on AppConfig: the stop went out (wiremock counts it on drop).
    assert_eq!(w.requests_to(&w.codedeploy_mock, "StopDeployment").await, 1);
}

#[tokio::test]
async fn a_dry_run_whose_appconfig_never_answers_still_answers_before_the_deadline() {
    // A dry run's reads run outside any once-only step: the handler's own bound answers.
    use std::time::Duration;
    let w = world(DEFAULT).await;
    let inbox = GuardInbox::create(&w.sdk).await;
    let table = unique("idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&w.sdk), &table).await;
    let mut env = binary_env(&w, &table, &inbox.bus);
    env.push(("SAFESHIP_DRY_RUN".into(), "true".into()));
    w.in_flight_deployment().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/applications/{}/configurationprofiles/{}/hostedconfigurationversions",
            w.flags.application, w.flags.profile
        )))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(300)))
        .with_priority(1)
        .mount(&w.appconfig_mock)
        .await;
    let answer = answered_in_time(&env, Duration::from_secs(5)).await;
    let Answer::Error { error_type, .. } = &answer else {
        panic!("a dry run that could not read the flags succeeded: {answer:?}")
    };
    assert_eq!(
        error_type, "safeship.alarm-rollback.Unfinished",
        "{answer:?}"
    );
    // Nothing was stopped under the dry run.
    assert_eq!(w.requests_to(&w.codedeploy_mock, "StopDeployment").await, 0);
}

/// The alarm sample delivered to a fresh alarm-rollback binary with `deadline`: its answer, which
/// must come before that deadline whatever hangs.
async fn answered_in_time(env: &[(String, String)], deadline: std::time::Duration) -> Answer {
    let runtime = LocalRuntime::start().await;
    let _process = started(&runtime, env).await;
    let invoked = std::time::Instant::now();
    let answer = runtime
        .invoke(sample_event("alarm-eventbridge-metric.json"), deadline)
        .await;
    assert!(
        invoked.elapsed() < deadline,
        "answered after its deadline: {:?}",
        invoked.elapsed()
    );
    answer
}

#[tokio::test]
async fn an_alarm_and_a_person_asking_for_the_same_rollback_stop_the_deployment_once() {
    // The alarm first, then a person at a terminal (`safeship rollback`); and the other way.
    for person_first in [false, true] {
        let mut w = world(DEFAULT).await;
        let inbox = w.guard_inbox().await;
        let deployment = w.in_flight_deployment().await;
        w.expect_stop(&deployment, 1).await;
        w.expect_flag_deployment("2", 1).await;
        let by_hand = || {
            alarm_rollback::roll_back_by_hand(
                &w.deps,
                &w.app,
                &w.group,
                None,
                "alice",
                "5xx after deploy",
            )
        };
        let stop = format!("stop-deployment {deployment} (with rollback)");
        let first = if person_first {
            by_hand().await.unwrap()
        } else {
            w.deliver("alarm-eventbridge-metric.json").await.unwrap()
        };
        // AppConfig now holds version 2, flags off, and serves it (the mock's listing says so).
        w.flags.mount_versions(&w.appconfig_mock, 2).await;
        w.flags.mount_deployed(&w.appconfig_mock, "2").await;
        let second = if person_first {
            w.deliver("alarm-eventbridge-metric.json").await.unwrap()
        } else {
            by_hand().await.unwrap()
        };
        let stopped = |r: &alarm_rollback::RollbackReport| {
            r.actions
                .iter()
                .find(|a| a.action == stop)
                .cloned()
                .unwrap()
        };
        assert!(stopped(&first).succeeded, "{first:?}");
        // The second request finds the stop done: said so, not done again (wiremock: once).
        let again = stopped(&second);
        assert!(again.succeeded, "{second:?}");
        assert!(
            again
                .detail
                .as_deref()
                .unwrap_or_default()
                .contains("earlier"),
            "{again:?}"
        );
        // The person's request is named in its guard events.
        let events = inbox.events().await;
        let by_person = events.iter().any(|e| match &e.outcome {
            Outcome::RollbackPerformed { alarm, .. } | Outcome::FlagsSwitchedOff { alarm, .. } => {
                alarm.name == "safeship rollback by alice"
                    && alarm.reason == "requested by alice from a terminal: 5xx after deploy"
            }
            _ => false,
        });
        assert!(by_person || !person_first, "{events:?}");
        w.codedeploy_mock.verify().await;
        w.appconfig_mock.verify().await;
    }
}

#[tokio::test]
async fn a_rollback_by_hand_of_a_group_without_a_rollback_section_is_refused_before_any_call() {
    let w = world(DEFAULT).await;
    let err = alarm_rollback::roll_back_by_hand(&w.deps, &w.app, "nowhere", None, "alice", "test")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "rolling back {}/nowhere: it is not a deployment group of the policy",
            w.app
        )
    );
    assert!(w
        .codedeploy_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
}

// ---- concurrency (issue 18, part 6) -------------------------------------------------------------

/// The sample's transition to ALARM at `at` (another transition of the same alarm).
fn alarm_at(at: &str) -> AlarmStateChange {
    let mut event = sample_event("alarm-eventbridge-metric.json");
    event["detail"]["state"]["timestamp"] = json!(at);
    let Inbound::AlarmStateChange(alarm) = normalise(&event).unwrap().event else {
        unreachable!()
    };
    alarm
}

#[tokio::test]
async fn two_alarms_for_one_group_at_once_stop_its_deployment_once() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    let first = alarm_at("2026-11-20T10:12:40.123+0000");
    let second = alarm_at("2026-11-20T10:12:41.456+0000");
    let (a, b) = tokio::join!(
        alarm_rollback::handle_alarm(&w.deps, &first),
        alarm_rollback::handle_alarm(&w.deps, &second)
    );
    // Each answer is the stop done now, the stop done earlier, or (while the other holds the
    // stop) an error Lambda retries: never a success without the stop having been made.
    let answered: Vec<_> = [a, b].into_iter().collect();
    for answer in &answered {
        if let Err(e) = answer {
            assert!(
                e.to_string().contains("in progress elsewhere")
                    || e.to_string().contains("InProgressElsewhere")
                    || e.to_string().contains("another"),
                "{e}"
            );
        }
    }
    // A retry of whichever was held finishes without stopping again.
    for (alarm, answer) in [(&first, &answered[0]), (&second, &answered[1])] {
        if answer.is_err() {
            alarm_rollback::handle_alarm(&w.deps, alarm).await.unwrap();
        }
    }
    assert_eq!(w.requests_to(&w.codedeploy_mock, "StopDeployment").await, 1);
    w.codedeploy_mock.verify().await;
    w.appconfig_mock.verify().await;
}

#[tokio::test]
async fn a_flapping_alarm_is_not_rolled_back_twice_nor_undone() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    w.expect_flag_deployment("2", 1).await;
    // ALARM, OK, ALARM within a minute.
    w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    // AppConfig now lists version 2 and is deploying it.
    w.flags.mount_versions(&w.appconfig_mock, 2).await;
    w.flags.mount_deployed(&w.appconfig_mock, "2").await;
    let ok = w.deliver("alarm-eventbridge-ok.json").await.unwrap();
    assert!(ok.actions.is_empty(), "OK changes nothing: {ok:?}");
    let again = alarm_rollback::handle_alarm(&w.deps, &alarm_at("2026-11-20T10:13:30.000+0000"))
        .await
        .unwrap();
    let stop = again
        .actions
        .iter()
        .find(|a| a.action.starts_with("stop-deployment"));
    assert!(
        stop.is_none_or(|s| s.detail.as_deref().is_some_and(|d| d.contains("earlier"))),
        "the second ALARM does not stop it again: {again:?}"
    );
    assert_eq!(w.requests_to(&w.codedeploy_mock, "StopDeployment").await, 1);
    // Nothing re-enabled the flags: no version switches them back on.
    for v in 2..=4 {
        if let Some(doc) = w.hosted_version(v).await {
            assert_eq!(
                doc["values"]["new-checkout-flow"]["enabled"], false,
                "version {v}: {doc}"
            );
        }
    }
    w.codedeploy_mock.verify().await;
    w.appconfig_mock.verify().await;
}

/// The deployment in flight when the alarm was planned succeeded before its stop reached
/// CodeDeploy: the change the alarm blames is live, so it is reverted (it was recorded as
/// "already completed" and left live before).
#[tokio::test]
async fn a_deployment_that_succeeded_before_its_stop_is_reverted_inside_the_bake_window() {
    let w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    // Planned: d-NEW in flight (the first listing only); then it is among the successes.
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.ListDeployments",
    ))
    .and(body_partial_json(
        json!({"applicationName": w.app, "deploymentGroupName": w.group,
            "includeOnlyStatuses": ["Created", "Queued", "InProgress", "Ready", "Baking"]}),
    ))
    .respond_with(json_11(json!({"deployments": ["d-NEW0000001"]})))
    .up_to_n_times(1)
    .with_priority(1)
    .mount(&w.codedeploy_mock)
    .await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.BatchGetDeployments",
    ))
    .and(body_json(json!({"deploymentIds": ["d-NEW0000001"]})))
    .respond_with(json_11(json!({"deploymentsInfo": [
            {"deploymentId": "d-NEW0000001", "status": "InProgress", "createTime": 1_763_633_000.0,
             "description": "release 4 (checkout-api)"}]})))
    .mount(&w.codedeploy_mock)
    .await;
    history(&w, 0, Some("release 4 (checkout-api)")).await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({"__type": "DeploymentAlreadyCompletedException",
                    "message": "The deployment d-NEW0000001 is already completed"})),
        )
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    get_deployment(&w, "d-NEW0000001", "Lambda", lambda_release("3", "4"), 1).await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.CreateDeployment",
    ))
    .respond_with(json_11(json!({"deploymentId": "d-REVERT0001"})))
    .expect(1)
    .mount(&w.codedeploy_mock)
    .await;
    w.expect_flag_deployment("2", 1).await;

    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let actions: Vec<(&str, Option<&str>)> = report
        .actions
        .iter()
        .map(|a| (a.action.as_str(), a.detail.as_deref()))
        .collect();
    assert!(
        actions.contains(&(
            "stop-deployment d-NEW0000001 (with rollback)",
            Some("already completed; nothing to stop")
        )),
        "{actions:?}"
    );
    assert!(
        actions.contains(&(
            "redeploy the revision of d-OLD0000001, reverting d-NEW0000001",
            Some("created deployment d-REVERT0001")
        )),
        "{actions:?}"
    );
    // A duplicate neither stops nor reverts again.
    assert!(w.deliver("alarm-sns-metric.json").await.unwrap().duplicate);
    w.codedeploy_mock.verify().await;
}

/// CodeDeploy's `ListDeployments` and `BatchGetDeployments` of a group with a long history:
/// succeeded deployments filtered by `createTimeRange` (epoch seconds, either end open), 100
/// ids a page with `nextToken`, oldest first (CodeDeploy promises no order).
struct LongHistory {
    /// (id, created, completed), epoch seconds.
    deployments: Vec<(String, f64, f64)>,
}

impl wiremock::Respond for LongHistory {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let target = request
            .headers
            .get("x-amz-target")
            .unwrap()
            .to_str()
            .unwrap();
        if target.ends_with(".BatchGetDeployments") {
            let ids = body["deploymentIds"].as_array().unwrap();
            assert!(ids.len() <= 25, "BatchGetDeployments takes 25 ids");
            let info: Vec<Value> = ids
                .iter()
                .filter_map(|id| {
                    self.deployments
                        .iter()
                        .find(|d| d.0 == id.as_str().unwrap())
                })
                .map(|(id, created, completed)| {
                    json!({"deploymentId": id, "status": "Succeeded",
                           "createTime": created, "completeTime": completed})
                })
                .collect();
            return json_11(json!({"deploymentsInfo": info}));
        }
        assert_eq!(body["includeOnlyStatuses"], json!(["Succeeded"]), "{body}");
        let range = &body["createTimeRange"];
        let within = |t: f64| {
            range["start"].as_f64().is_none_or(|s| t >= s)
                && range["end"].as_f64().is_none_or(|e| t <= e)
        };
        let ids: Vec<&str> = self
            .deployments
            .iter()
            .filter(|d| within(d.1))
            .map(|d| d.0.as_str())
            .collect();
        let from: usize = body["nextToken"].as_str().map_or(0, |t| t.parse().unwrap());
        let page = &ids[from.min(ids.len())..(from + 100).min(ids.len())];
        let mut answer = json!({"deployments": page});
        if from + 100 < ids.len() {
            answer["nextToken"] = json!((from + 100).to_string());
        }
        json_11(answer)
    }
}

/// A group that has deployed three times a day for two years: the bake-window revert reads the
/// weeks before the alarm, not the 2,190 deployments of its history (the old search paged
/// through all of them and described each, 25 at a time, before it could decide).
#[tokio::test]
async fn a_revert_in_a_long_lived_group_reads_the_recent_history_not_all_of_it() {
    let w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    let alarm_at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:12:40.123Z").unwrap();
    let epoch = |minutes_before: i64| {
        (alarm_at - chrono::Duration::minutes(minutes_before)).timestamp() as f64
    };
    // Every 8 hours for two years; the newest completed 10 minutes before the alarm.
    let deployments: Vec<(String, f64, f64)> = (0..2_190_i64)
        .rev()
        .map(|n| {
            let completed = 10 + n * 480;
            (
                format!("d-H{n:08}"),
                epoch(completed + 15),
                epoch(completed),
            )
        })
        .collect();
    nothing_in_flight_nor_reverted(&w).await;
    for operation in ["ListDeployments", "BatchGetDeployments"] {
        Mock::given(header(
            "x-amz-target",
            format!("CodeDeploy_20141006.{operation}").as_str(),
        ))
        .and(body_partial_json(if operation == "ListDeployments" {
            json!({"includeOnlyStatuses": ["Succeeded"]})
        } else {
            json!({})
        }))
        .respond_with(LongHistory {
            deployments: deployments.clone(),
        })
        .with_priority(1)
        .mount(&w.codedeploy_mock)
        .await;
    }
    get_deployment(&w, "d-H00000000", "Lambda", lambda_release("3", "4"), 1).await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.CreateDeployment",
    ))
    .respond_with(json_11(json!({"deploymentId": "d-REVERT0001"})))
    .expect(1)
    .mount(&w.codedeploy_mock)
    .await;
    w.expect_flag_deployment("2", 1).await;

    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let redeploy = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("redeploy"))
        .unwrap_or_else(|| panic!("{:?}", report.actions));
    assert_eq!(
        redeploy.action,
        "redeploy the revision of d-H00000001, reverting d-H00000000"
    );
    let calls = |operation: &'static str| {
        let mock = &w.codedeploy_mock;
        async move {
            mock.received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| {
                    r.headers.get("x-amz-target").unwrap().to_str().unwrap()
                        == format!("CodeDeploy_20141006.{operation}")
                        && (operation != "ListDeployments"
                            || String::from_utf8_lossy(&r.body).contains("\"Succeeded\""))
                })
                .count()
        }
    };
    // The bake window and a week before it: 22 deployments, one page, one batch.
    assert_eq!(
        calls("ListDeployments").await,
        1,
        "pages of succeeded deployments read"
    );
    assert_eq!(calls("BatchGetDeployments").await, 1, "batches described");
}

/// An environment AppConfig has deployed to 600 times, newest first (as `ListDeployments`
/// promises), 50 a page: the newest is this profile's version 1.
struct LongEnvironment {
    profile: String,
}

impl wiremock::Respond for LongEnvironment {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let from: i32 = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "next_token")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let items: Vec<Value> = (from..(from + 50).min(600))
            .map(|i| {
                let number = 600 - i;
                json!({"DeploymentNumber": number, "ConfigurationName": "release-flags",
                       "ConfigurationProfileId": if number == 600 { self.profile.as_str() } else { "other" },
                       "ConfigurationVersion": if number == 600 { "1" } else { "7" },
                       "DeploymentDurationInMinutes": 0, "GrowthType": "LINEAR",
                       "GrowthFactor": 100.0, "FinalBakeTimeInMinutes": 0,
                       "State": "COMPLETE", "PercentageComplete": 100.0})
            })
            .collect();
        let mut page = json!({"Items": items});
        if from + 50 < 600 {
            page["NextToken"] = json!((from + 50).to_string());
        }
        ResponseTemplate::new(200).set_body_json(page)
    }
}

#[tokio::test]
async fn the_served_flag_version_is_read_from_the_newest_deployments_not_the_whole_history() {
    let w = world(DEFAULT).await;
    let deployment = w.in_flight_deployment().await;
    w.expect_stop(&deployment, 1).await;
    let listing = format!(
        "/applications/{}/environments/prod-env/deployments",
        w.flags.application
    );
    Mock::given(method("GET"))
        .and(path(listing.as_str()))
        .respond_with(LongEnvironment {
            profile: w.flags.profile.clone(),
        })
        .with_priority(1)
        .mount(&w.appconfig_mock)
        .await;
    w.expect_flag_deployment("2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let flags = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("flags off"))
        .unwrap();
    assert!(flags.succeeded, "{flags:?}");
    let reads: Vec<String> = w
        .appconfig_mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path() == listing)
        .map(|r| r.url.query().unwrap_or_default().to_owned())
        .collect();
    // The served version is read to key the switch, then again inside it: each read stops at
    // the first page, which names it; the 11 older pages are never read.
    assert!(!reads.is_empty());
    assert!(
        reads.iter().all(|q| !q.contains("next_token")),
        "pages beyond the first were read: {reads:?}"
    );
}
