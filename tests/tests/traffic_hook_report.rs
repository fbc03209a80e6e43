//! The traffic hook's report to CodeDeploy.
//!
//! moto does not serve `PutLifecycleEventHookExecutionStatus` (it answers HTTP 500), so CodeDeploy
//! is emulated here by wiremock, which asserts the exact wire request: the JSON 1.1 target header
//! and the body fields. Everything else the hook reads comes from moto.

use lambda_runtime::{Context, LambdaEvent};
use safeship::event::LifecycleHook;
use safeship_e2e::emulators::{common, moto_endpoint, sdk_config};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TARGET: &str = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus";

fn hook() -> LifecycleHook {
    LifecycleHook {
        deployment_id: "d-ABCDEF123".into(),
        lifecycle_event_hook_execution_id: "h-before-1".into(),
    }
}

fn expected_body() -> serde_json::Value {
    json!({"deploymentId": "d-ABCDEF123", "lifecycleEventHookExecutionId": "h-before-1", "status": "Failed"})
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(json!({"lifecycleEventHookExecutionId": "h-before-1"}))
}

#[tokio::test]
async fn reports_exactly_once_with_the_exact_request() {
    let codedeploy_mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", TARGET))
        .and(header("content-type", "application/x-amz-json-1.1"))
        .and(body_json(expected_body()))
        .respond_with(accepted())
        .expect(1)
        .mount(&codedeploy_mock)
        .await;
    let codedeploy = aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy_mock.uri()).await);
    let answer = traffic_hook::run_hook(&codedeploy, &hook()).await.unwrap();
    assert_eq!(answer["status"], "Failed");
    assert!(answer["reason"]
        .as_str()
        .unwrap()
        .contains("failing closed"));
}

#[tokio::test]
async fn throttled_twice_then_accepted_is_one_status() {
    let codedeploy_mock = MockServer::start().await;
    Mock::given(header("x-amz-target", TARGET))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(
                    json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
                ),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&codedeploy_mock)
        .await;
    Mock::given(header("x-amz-target", TARGET))
        .and(body_json(expected_body()))
        .respond_with(accepted())
        .expect(1)
        .mount(&codedeploy_mock)
        .await;
    let codedeploy = aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy_mock.uri()).await);
    traffic_hook::report(
        &codedeploy,
        &hook(),
        aws_sdk_codedeploy::types::LifecycleEventStatus::Failed,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_report_that_keeps_failing_is_an_error_naming_the_deployment() {
    let codedeploy_mock = MockServer::start().await;
    Mock::given(header("x-amz-target", TARGET))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(
                    json!({"__type": "DeploymentAlreadyCompletedException", "message": "done"}),
                ),
        )
        .expect(1) // a modelled client error is not retried
        .mount(&codedeploy_mock)
        .await;
    let codedeploy = aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy_mock.uri()).await);
    let err = traffic_hook::run_hook(&codedeploy, &hook())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "codedeploy:PutLifecycleEventHookExecutionStatus on deployment d-ABCDEF123 failed"
        ),
        "{err}"
    );
    assert!(err.contains("DeploymentAlreadyCompletedException"), "{err}");
}

#[tokio::test]
async fn a_malformed_event_makes_no_call_and_names_the_field() {
    let codedeploy_mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .expect(0)
        .mount(&codedeploy_mock)
        .await;
    let sdk = sdk_config(&moto_endpoint()).await;
    let deps = traffic_hook::Deps {
        common: common(&sdk).await,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&codedeploy_mock.uri()).await),
    };
    let event = LambdaEvent::new(json!({"DeploymentId": "d-ABCDEF123"}), Context::default());
    let err = traffic_hook::handler(&deps, event)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "CodeDeploy lifecycle hook event: field LifecycleEventHookExecutionId: missing"
    );
}
