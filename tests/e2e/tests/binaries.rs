//! The real release-shaped function binaries, run as Lambda runs them: against a local Runtime
//! API, configured only through environment variables, with the SDK pointed at the emulators by
//! `AWS_ENDPOINT_URL` (moto) and `AWS_ENDPOINT_URL_CODEDEPLOY` (wiremock, for what moto lacks).

use std::time::Duration;

use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sample_event,
    sdk_config, unique, REGION,
};
use safeship_testkit::runtime::{Answer, LocalRuntime};
use serde_json::json;
use wiremock::matchers::{body_json, header};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn function_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let table = unique("idem");
    create_idempotency_table(
        &aws_sdk_dynamodb::Client::new(&sdk_config(&moto_endpoint()).await),
        &table,
    )
    .await;
    let mut env: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL".into(), moto_endpoint()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("SAFESHIP_POLICY".into(), example_policy()),
        ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test]
async fn traffic_hook_binary_reports_to_codedeploy_and_rejects_malformed_events() {
    let codedeploy_mock = MockServer::start().await;
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus"))
        .and(body_json(json!({
            "deploymentId": "d-ABCDEF123",
            "lifecycleEventHookExecutionId": sample_event("codedeploy-lifecycle-before-allow-traffic.json")["LifecycleEventHookExecutionId"],
            "status": "Failed"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&codedeploy_mock)
        .await;
    let runtime = LocalRuntime::start().await;
    let env = function_env(&[("AWS_ENDPOINT_URL_CODEDEPLOY", &codedeploy_mock.uri())]).await;
    let _process = runtime.spawn_function(&function_binary("traffic-hook"), "traffic-hook", &env);
    runtime
        .ready(Duration::from_secs(20))
        .await
        .expect("traffic-hook started");

    let answer = runtime
        .invoke(
            sample_event("codedeploy-lifecycle-before-allow-traffic.json"),
            Duration::from_secs(30),
        )
        .await;
    let Answer::Response(body) = answer else {
        panic!("hook failed to answer: {answer:?}")
    };
    assert_eq!(body["status"], "Failed");

    let answer = runtime
        .invoke(
            json!({"DeploymentId": "d-ABCDEF123"}),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        answer,
        Answer::Error {
            error_type: "safeship.traffic-hook.Event".into(),
            error_message:
                "CodeDeploy lifecycle hook event: field LifecycleEventHookExecutionId: missing"
                    .into(),
        }
    );
    // wiremock verifies on drop that exactly one report arrived: none for the malformed event.
}

#[tokio::test]
async fn a_function_without_its_configuration_stops_at_cold_start_naming_the_variable() {
    let runtime = LocalRuntime::start().await;
    let env = vec![
        ("SAFESHIP_POLICY".to_string(), example_policy()),
        ("AWS_REGION".to_string(), REGION.to_string()),
    ];
    let mut process =
        runtime.spawn_function(&function_binary("alarm-rollback"), "alarm-rollback", &env);
    let status = tokio::time::timeout(Duration::from_secs(20), process.wait())
        .await
        .expect("the process exits")
        .unwrap();
    assert!(!status.success());
    let text = runtime.output_after_exit().await;
    assert!(
        text.contains("SAFESHIP_IDEMPOTENCY_TABLE: is required but not set"),
        "{text}"
    );
}

#[tokio::test]
async fn alarm_rollback_binary_decides_from_each_alarm_shape() {
    // A dry run: the binary reads CodeDeploy (moto: nothing in flight) and the flag profile
    // (moto, listed by wiremock), and reports what it would do without changing anything.
    let sdk = sdk_config(&moto_endpoint()).await;
    let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
    let appconfig_mock = MockServer::start().await;
    flags.mount_version_list(&appconfig_mock).await;
    let appconfig = appconfig::split_endpoint(&moto_endpoint(), &appconfig_mock).await;
    let runtime = LocalRuntime::start().await;
    let env = function_env(&[
        ("SAFESHIP_POLICY", &flags.into_policy(&example_policy())),
        ("SAFESHIP_DRY_RUN", "true"),
        ("AWS_ENDPOINT_URL_APPCONFIG", &appconfig.uri()),
    ])
    .await;
    let _process =
        runtime.spawn_function(&function_binary("alarm-rollback"), "alarm-rollback", &env);
    runtime
        .ready(Duration::from_secs(20))
        .await
        .expect("alarm-rollback started");
    for sample in ["alarm-eventbridge-metric.json", "alarm-sns-metric.json"] {
        let Answer::Response(body) = runtime
            .invoke(sample_event(sample), Duration::from_secs(30))
            .await
        else {
            panic!("{sample}: no response")
        };
        assert_eq!(body["outcome"]["decision"], "roll-back", "{sample}: {body}");
        assert_eq!(
            body["outcome"]["groups"],
            json!(["checkout/checkout-prod"]),
            "{sample}"
        );
        assert_eq!(body["dry-run"], true);
        let details: Vec<&str> = body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["detail"].as_str())
            .collect();
        assert!(
            details
                .iter()
                .any(|d| d.starts_with("dry run: would switch off [new-checkout-flow]")),
            "{body}"
        );
    }
    assert_eq!(
        flags.hosted_version(&sdk, 2).await,
        None,
        "a dry run writes nothing"
    );
    let Answer::Response(body) = runtime
        .invoke(
            sample_event("alarm-eventbridge-ok.json"),
            Duration::from_secs(30),
        )
        .await
    else {
        panic!("no response to the OK transition")
    };
    assert_eq!(body["outcome"]["decision"], "ignore", "{body}");
}
