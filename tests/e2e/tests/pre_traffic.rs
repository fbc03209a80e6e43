//! One `PreTraffic` hook for a Lambda deployment, which takes one function: the snapshot hook
//! takes the snapshot, then hands the hook execution to the traffic hook, which runs the smoke
//! checks and reports. One report, in order.
//!
//! Real parts: moto's RDS (the instance and its snapshot) and CodeDeploy (the deployment), a real
//! HTTP server as the version under test. wiremock takes what moto lacks and asserts it exactly:
//! CodeDeploy's `PutLifecycleEventHookExecutionStatus`, and Lambda's asynchronous `Invoke` of
//! the traffic hook (moto runs function code only in Docker); the test delivers the invoked
//! payload to the traffic hook as Lambda would.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_codedeploy::types::ComputePlatform;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use predeploy_snapshot::{HookStatus, SnapshotSettings, SnapshotStatus};
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{
    common_with_policy, create_db_instance, manual_snapshot_ids, moto_endpoint, sdk_config, unique,
};
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use traffic_hook::checks::CheckClients;
use traffic_hook::{AnswerStatus, HookSettings};
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TRAFFIC_HOOK: &str = "CodeDeployHook_safeship-traffic";
const PUT_STATUS: &str = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus";

struct World {
    policy: String,
    sdk: aws_config::SdkConfig,
    deployment_id: String,
    codedeploy_mock: MockServer,
    lambda_mock: MockServer,
    split: SplitEndpoint,
    snapshot: predeploy_snapshot::Deps,
    traffic: traffic_hook::Deps,
    rds: aws_sdk_rds::Client,
    identifier: String,
}

/// The version under test: healthy at `/health`, answering the deployment's target version.
async fn version_under_test() -> String {
    let app = Router::new().route("/health", get(|| async { Json(json!({"version": "4"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A Lambda deployment (3 → 4) of a fresh group whose policy snapshots `database` first and
/// then hands over (`on_failure`: `block` or `warn`); `instance_exists`: whether moto has the
/// DB instance (without it, the snapshot fails).
async fn world(on_failure: &str, instance_exists: bool) -> World {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let identifier = unique("orders-db");
    if instance_exists {
        create_db_instance(&rds, &identifier)
            .await
            .expect("moto CreateDBInstance");
    }
    let codedeploy_moto = aws_sdk_codedeploy::Client::new(&sdk);
    let (app, group) = codedeploy::fresh_group(&codedeploy_moto, ComputePlatform::Lambda).await;
    let deployment_id = codedeploy::deployment(
        &codedeploy_moto,
        &app,
        &group,
        &codedeploy::lambda_appspec("4"),
    )
    .await
    .expect("moto CreateDeployment");
    let service = version_under_test().await;
    let policy = format!(
        "version: 1
applications:
  {app}:
    deployment-groups:
      {group}:
        environment: prod
        traffic-hook:
          http-checks:
            - name: health
              url: {service}/health
              expect-status: 200
              expect-json: {{/version: \"{{{{target-version}}}}\"}}
              timeout-ms: 2000
        snapshot: {{database: orders-db, on-failure: {on_failure}, then-traffic-hook: true}}
databases:
  orders-db:
    kind: instance
    identifier: {identifier}
    environment: prod
"
    );
    let codedeploy_mock = MockServer::start().await;
    let split = SplitEndpoint::json_operations(
        &moto,
        &codedeploy_mock.uri(),
        &["PutLifecycleEventHookExecutionStatus"],
    )
    .await;
    let lambda_mock = MockServer::start().await;
    let snapshot = snapshot_deps(&sdk, &policy, &split, &lambda_mock).await;
    let traffic = traffic_hook::Deps {
        common: common_with_policy(&sdk, &policy).await,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&split.uri()).await),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&moto_endpoint()).await),
        checks: CheckClients {
            http: traffic_hook::http_client(&safeship::env::Env::from_pairs::<&str, &str>([]))
                .unwrap(),
            // The checks here are HTTP only: no Lambda check may be invoked.
            lambda: aws_sdk_lambda::Client::new(&sdk_config("http://127.0.0.1:9").await),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        },
        settings: HookSettings {
            report_margin: Duration::from_millis(1_000),
            lifecycle_event: Some("BeforeAllowTraffic".into()),
        },
    };
    World {
        policy,
        sdk,
        deployment_id,
        codedeploy_mock,
        lambda_mock,
        split,
        snapshot,
        traffic,
        rds,
        identifier,
    }
}

/// The snapshot hook's dependencies, with an idempotency table of their own: a second set is
/// the retry of a process that died after the hand-over and before recording it.
async fn snapshot_deps(
    sdk: &aws_config::SdkConfig,
    policy: &str,
    split: &SplitEndpoint,
    lambda_mock: &MockServer,
) -> predeploy_snapshot::Deps {
    let settings = SnapshotSettings {
        quota: 1_000_000,
        cluster_quota: 1_000_000,
        hook_budget: Duration::from_secs(3000),
        margin: Duration::from_millis(500),
        function_name: None,
        first_poll: Duration::from_millis(50),
        traffic_hook_function: Some(TRAFFIC_HOOK.into()),
    };
    let common = common_with_policy(sdk, policy).await;
    settings
        .check_against(&common.policy)
        .expect("the traffic hook is named");
    predeploy_snapshot::Deps {
        common,
        rds: aws_sdk_rds::Client::new(sdk),
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&split.uri()).await),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&moto_endpoint()).await),
        lambda: aws_sdk_lambda::Client::new(&sdk_config(&lambda_mock.uri()).await),
        settings,
        clock: Arc::new(Utc::now),
    }
}

fn context_with(ms_left: i64) -> Context {
    let mut context = Context::default();
    context.deadline = u64::try_from(Utc::now().timestamp_millis() + ms_left).unwrap();
    context
}

impl World {
    fn hook_event(&self, execution: &str) -> Value {
        json!({"DeploymentId": self.deployment_id, "LifecycleEventHookExecutionId": execution})
    }

    /// CodeDeploy (wiremock) takes exactly `times` reports of `status` for `execution`.
    async fn expect_report(&self, execution: &str, status: &str, times: u64) {
        Mock::given(header("x-amz-target", PUT_STATUS))
            .and(body_json(json!({
                "deploymentId": self.deployment_id,
                "lifecycleEventHookExecutionId": execution,
                "status": status,
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"lifecycleEventHookExecutionId": execution})),
            )
            .expect(times)
            .mount(&self.codedeploy_mock)
            .await;
    }

    /// Lambda (wiremock) takes the asynchronous invocation of the traffic hook, `times` times,
    /// answering `status`.
    async fn expect_hand_over(
        &self,
        execution: &str,
        status: u16,
        times: impl Into<wiremock::Times>,
    ) {
        Mock::given(method("POST"))
            .and(path(format!(
                "/2015-03-31/functions/{TRAFFIC_HOOK}/invocations"
            )))
            .and(header("x-amz-invocation-type", "Event"))
            .and(body_json(self.hook_event(execution)))
            .respond_with(if status == 202 {
                ResponseTemplate::new(202)
            } else {
                ResponseTemplate::new(status)
                    .insert_header("x-amzn-ErrorType", "TooManyRequestsException")
                    .set_body_json(json!({"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "message": "Rate Exceeded."}))
            })
            .expect(times)
            .mount(&self.lambda_mock)
            .await;
    }

    async fn snapshot_hook(
        &self,
        deps: &predeploy_snapshot::Deps,
        execution: &str,
        ms_left: i64,
    ) -> predeploy_snapshot::SnapshotAnswer {
        predeploy_snapshot::snapshot_handler(
            deps,
            LambdaEvent::new(self.hook_event(execution), context_with(ms_left)),
        )
        .await
        .expect("the snapshot hook answers")
    }

    /// What Lambda delivers to the traffic hook: the payload the snapshot hook handed over.
    async fn delivered(&self) -> Vec<Value> {
        self.lambda_mock
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    async fn traffic_hook(&self, payload: Value) -> traffic_hook::HookAnswer {
        traffic_hook::codedeploy_handler(
            &self.traffic,
            LambdaEvent::new(payload, context_with(20_000)),
        )
        .await
        .expect("the traffic hook answers")
    }

    async fn manual_snapshots(&self) -> Vec<String> {
        manual_snapshot_ids(&self.rds, &self.identifier).await
    }
}

#[tokio::test]
async fn one_pre_traffic_hook_snapshots_then_hands_over_and_the_checks_report_once() {
    let w = world("block", true).await;
    let execution = unique("pre-traffic");
    w.expect_hand_over(&execution, 202, 1).await;
    // One report in all: the traffic hook's, after its checks.
    w.expect_report(&execution, "Succeeded", 1).await;
    w.expect_report(&execution, "Failed", 0).await;

    let answer = w.snapshot_hook(&w.snapshot, &execution, 20_000).await;
    assert_eq!(answer.status, SnapshotStatus::Available, "{answer:?}");
    assert_eq!(answer.handed_to.as_deref(), Some(TRAFFIC_HOOK));
    assert_eq!(
        answer.hook_status, None,
        "the snapshot hook itself reports nothing"
    );
    let snapshot = answer.snapshot_id.clone().unwrap();
    assert_eq!(w.manual_snapshots().await, vec![snapshot.clone()]);
    // Snapshot first: nothing was reported before the hand-over.
    assert!(
        w.codedeploy_mock
            .received_requests()
            .await
            .unwrap()
            .is_empty(),
        "the snapshot hook reported"
    );

    let delivered = w.delivered().await;
    assert_eq!(delivered, vec![w.hook_event(&execution)]);
    let checked = w.traffic_hook(delivered[0].clone()).await;
    assert_eq!(checked.status, AnswerStatus::Succeeded, "{checked:?}");
    assert_eq!(checked.checks.len(), 1);
    assert_eq!(checked.checks[0].name, "health");

    // CodeDeploy redelivers the hook to the snapshot hook: the record answers, nothing repeats.
    let again = w.snapshot_hook(&w.snapshot, &execution, 20_000).await;
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.handed_to.as_deref(), Some(TRAFFIC_HOOK));
    assert_eq!(w.delivered().await.len(), 1);
}

#[tokio::test]
async fn a_snapshot_hook_that_died_after_handing_over_hands_over_again_and_the_checks_still_report_once(
) {
    let w = world("block", true).await;
    let execution = unique("pre-traffic");
    w.expect_hand_over(&execution, 202, 2).await;
    w.expect_report(&execution, "Succeeded", 1).await;
    w.expect_report(&execution, "Failed", 0).await;

    let first = w.snapshot_hook(&w.snapshot, &execution, 20_000).await;
    assert_eq!(first.handed_to.as_deref(), Some(TRAFFIC_HOOK), "{first:?}");
    // The first process died before recording its hand-over: the retry knows nothing of it
    // (its own idempotency record), finds the snapshot by its identifier and hands over again.
    let retry_deps = snapshot_deps(&w.sdk, &w.policy, &w.split, &w.lambda_mock).await;
    let retry = w.snapshot_hook(&retry_deps, &execution, 20_000).await;
    assert!(!retry.duplicate);
    assert_eq!(
        retry.snapshot_id, first.snapshot_id,
        "the same snapshot, not a second"
    );
    assert_eq!(w.manual_snapshots().await.len(), 1);

    // Both hand-overs reach the traffic hook; it checks and reports once.
    let delivered = w.delivered().await;
    assert_eq!(delivered.len(), 2);
    let checked = w.traffic_hook(delivered[0].clone()).await;
    assert_eq!(checked.status, AnswerStatus::Succeeded, "{checked:?}");
    let repeated = w.traffic_hook(delivered[1].clone()).await;
    assert!(repeated.duplicate, "{repeated:?}");
}

#[tokio::test]
async fn a_failed_snapshot_is_reported_by_the_snapshot_hook_and_hands_nothing_over_unless_warn() {
    // block: no snapshot, no deployment; the checks never run.
    let w = world("block", false).await;
    let execution = unique("pre-traffic");
    w.expect_hand_over(&execution, 202, 0).await;
    w.expect_report(&execution, "Failed", 1).await;
    w.expect_report(&execution, "Succeeded", 0).await;
    let answer = w.snapshot_hook(&w.snapshot, &execution, 20_000).await;
    assert_eq!(answer.status, SnapshotStatus::Failed, "{answer:?}");
    assert_eq!(answer.hook_status, Some(HookStatus::Failed));
    assert_eq!(answer.handed_to, None);
    assert!(
        answer
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains(&w.identifier),
        "{answer:?}"
    );

    // warn: the deployment goes on without the snapshot, but not without its checks.
    let w = world("warn", false).await;
    let execution = unique("pre-traffic");
    w.expect_hand_over(&execution, 202, 1).await;
    w.expect_report(&execution, "Failed", 0).await;
    w.expect_report(&execution, "Succeeded", 1).await;
    let answer = w.snapshot_hook(&w.snapshot, &execution, 20_000).await;
    assert_eq!(answer.status, SnapshotStatus::Failed, "{answer:?}");
    assert_eq!(answer.handed_to.as_deref(), Some(TRAFFIC_HOOK));
    let checked = w.traffic_hook(w.delivered().await[0].clone()).await;
    assert_eq!(checked.status, AnswerStatus::Succeeded, "{checked:?}");
}

#[tokio::test]
async fn a_hand_over_lambda_refuses_or_never_answers_reports_failed_at_once() {
    // Refused (throttled past the SDK's retries): nobody would run the checks, so Failed now.
    let w = world("block", true).await;
    let execution = unique("pre-traffic");
    w.expect_hand_over(&execution, 429, 1..).await;
    w.expect_report(&execution, "Failed", 1).await;
    w.expect_report(&execution, "Succeeded", 0).await;
    let answer = w.snapshot_hook(&w.snapshot, &execution, 20_000).await;
    assert_eq!(
        answer.status,
        SnapshotStatus::Available,
        "the snapshot itself is made"
    );
    assert_eq!(answer.hook_status, Some(HookStatus::Failed), "{answer:?}");
    assert_eq!(answer.handed_to, None);
    let detail = answer.detail.unwrap();
    assert!(
        detail.contains(&format!(
            "handing hook execution {execution} to the traffic hook"
        )) && detail.contains(TRAFFIC_HOOK)
            && detail.contains("TooManyRequestsException"),
        "{detail}"
    );

    // No answer at all: the hand-over is cut off within the margin and the hook still reports
    // Failed before the invocation's deadline.
    let w = world("block", true).await;
    let execution = unique("pre-traffic");
    Mock::given(any())
        .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(60)))
        .mount(&w.lambda_mock)
        .await;
    w.expect_report(&execution, "Failed", 1).await;
    w.expect_report(&execution, "Succeeded", 0).await;
    let started = tokio::time::Instant::now();
    let answer = w.snapshot_hook(&w.snapshot, &execution, 4_000).await;
    assert!(
        started.elapsed() < Duration::from_millis(4_000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.hook_status, Some(HookStatus::Failed), "{answer:?}");
    assert!(answer
        .detail
        .unwrap()
        .contains("no answer before the invocation's deadline"));
}
