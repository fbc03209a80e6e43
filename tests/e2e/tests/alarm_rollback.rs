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
use safeship::event::{normalise, Inbound};
use safeship::guard::Outcome;
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{
    common_with_policy, moto_endpoint, sample_event, sdk_config, unique,
};
use safeship_testkit::guard_inbox::GuardInbox;
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
        _splits: (codedeploy_split, appconfig_split),
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
        Mock::given(method("POST"))
            .and(path(format!(
                "/applications/{}/environments/prod-env/deployments",
                flags.application
            )))
            .and(body_partial_json(json!({
                "ConfigurationProfileId": flags.profile,
                "ConfigurationVersion": version,
                "DeploymentStrategyId": "AppConfig.AllAtOnce",
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "ApplicationId": flags.application, "EnvironmentId": "prod-env",
                "ConfigurationProfileId": flags.profile, "ConfigurationVersion": version,
                "DeploymentStrategyId": "AppConfig.AllAtOnce", "DeploymentNumber": 7,
                "State": "DEPLOYING"
            })))
            .expect(times)
            .mount(&self.appconfig_mock)
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

fn old_revision() -> Value {
    json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0\nResources:\n  - api:\n      Type: AWS::Lambda::Function\n      Properties: {Name: checkout-api, Alias: live, CurrentVersion: \"4\", TargetVersion: \"3\"}\n"}})
}

#[tokio::test]
async fn a_deployment_that_succeeded_inside_the_bake_window_is_reverted() {
    let mut w = world(Setup {
        codedeploy_all_mocked: true,
        ..DEFAULT
    })
    .await;
    let inbox = w.guard_inbox().await;
    history(&w, 10, Some("release 4 (checkout-api)")).await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.GetDeployment"))
        .and(body_json(json!({"deploymentId": "d-OLD0000001"})))
        .respond_with(json_11(json!({"deploymentInfo": {
            "deploymentId": "d-OLD0000001", "applicationName": w.app,
            "deploymentGroupName": w.group, "status": "Succeeded", "revision": old_revision()}})))
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.CreateDeployment"))
        .and(body_json(json!({
            "applicationName": w.app,
            "deploymentGroupName": w.group,
            "revision": old_revision(),
            "description": format!("safeship: alarm {ALARM} reverts d-NEW0000001 to the revision of d-OLD0000001"),
        })))
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
