//! The traffic hook (and the pre-deploy snapshot's cold start) as the real binaries, when things
//! go wrong around them: the process killed mid-check and the event delivered again, a second
//! delivery while the first is still working, a report endpoint that never answers, and a cold
//! start that fails. Whatever happens, CodeDeploy gets exactly one status, before the deadline.
//!
//! Emulated by wiremock, and why: CodeDeploy `PutLifecycleEventHookExecutionStatus` (moto does
//! not serve it) behind the split endpoint, so `GetDeployment` still reaches moto's real
//! deployment; EventBridge `PutEvents` where it must hang.

use std::time::{Duration, Instant};

use aws_sdk_codedeploy::types::ComputePlatform;
use axum::routing::get;
use axum::Router;
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{
    create_idempotency_table, function_binary, moto_endpoint, sample_event, sdk_config, unique,
    REGION,
};
use safeship_testkit::runtime::{Answer, LocalRuntime};
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use tokio::process::Child;
use tokio::sync::mpsc;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PUT_STATUS: &str = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus";

/// A deployment in moto, its hook event, and CodeDeploy for the binary: moto through a split
/// endpoint that sends the report to wiremock.
struct World {
    deployment_id: String,
    hook_execution_id: String,
    application: String,
    group: String,
    codedeploy_mock: MockServer,
    split: SplitEndpoint,
}

impl World {
    async fn new() -> World {
        let moto = moto_endpoint();
        let client = aws_sdk_codedeploy::Client::new(&sdk_config(&moto).await);
        let (application, group) = codedeploy::fresh_group(&client, ComputePlatform::Lambda).await;
        let deployment_id = codedeploy::deployment(
            &client,
            &application,
            &group,
            &codedeploy::lambda_appspec("4"),
        )
        .await
        .expect("moto CreateDeployment");
        let codedeploy_mock = MockServer::start().await;
        let split = SplitEndpoint::json_operations(
            &moto,
            &codedeploy_mock.uri(),
            &["PutLifecycleEventHookExecutionStatus"],
        )
        .await;
        World {
            deployment_id,
            hook_execution_id: unique("hook-exec"),
            application,
            group,
            codedeploy_mock,
            split,
        }
    }

    fn event(&self) -> Value {
        json!({
            "DeploymentId": self.deployment_id,
            "LifecycleEventHookExecutionId": self.hook_execution_id,
        })
    }

    fn report_body(&self, status: &str) -> Value {
        json!({
            "deploymentId": self.deployment_id,
            "lifecycleEventHookExecutionId": self.hook_execution_id,
            "status": status,
        })
    }

    /// CodeDeploy (wiremock) takes exactly `times` reports of `status` for this hook.
    async fn expect_report(&self, status: &str, times: u64) {
        Mock::given(method("POST"))
            .and(path("/"))
            .and(header("x-amz-target", PUT_STATUS))
            .and(body_json(self.report_body(status)))
            .respond_with(accepted(&self.hook_execution_id))
            .expect(times)
            .mount(&self.codedeploy_mock)
            .await;
    }

    async fn reports(&self) -> Vec<Value> {
        safeship_testkit::codedeploy::received(
            &self.codedeploy_mock,
            "PutLifecycleEventHookExecutionStatus",
        )
        .await
    }

    /// A policy with this group's `traffic-hook:` section (YAML, indented 8).
    fn policy(&self, traffic_hook: &str) -> String {
        format!(
            "version: 1\napplications:\n  {}:\n    deployment-groups:\n      {}:\n        environment: prod\n{traffic_hook}",
            self.application, self.group
        )
    }

    /// The binary's environment: moto for everything, the split endpoint for CodeDeploy, a
    /// fresh idempotency table, and `extra` (which may override any of them).
    async fn env(&self, policy: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let table = unique("idem");
        create_idempotency_table(
            &aws_sdk_dynamodb::Client::new(&sdk_config(&moto_endpoint()).await),
            &table,
        )
        .await;
        let mut env = base_env();
        env.extend([
            ("AWS_ENDPOINT_URL_CODEDEPLOY".to_string(), self.split.uri()),
            ("SAFESHIP_POLICY".into(), policy.to_owned()),
            ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table),
        ]);
        override_env(&mut env, extra);
        env
    }
}

fn base_env() -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), moto_endpoint()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
    ]
}

fn override_env(env: &mut Vec<(String, String)>, extra: &[(&str, &str)]) {
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
}

fn accepted(hook_execution_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(json!({"lifecycleEventHookExecutionId": hook_execution_id}))
}

/// The version under test hangs forever on `/hang`; each request that arrives is signalled.
async fn hanging_service() -> (String, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hang",
        get(move || {
            let _ = tx.send(());
            std::future::pending::<&'static str>()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rx)
}

fn hanging_check(service: &str) -> String {
    format!(
        "        traffic-hook:\n          http-checks:\n            - name: hangs\n              url: {service}/hang\n              timeout-ms: 60000\n"
    )
}

const UNCHECKED: &str = "        traffic-hook:\n          allow-unchecked: true\n";

async fn start(runtime: &LocalRuntime, binary: &str, env: &[(String, String)]) -> Child {
    let since = Instant::now();
    let child = runtime.spawn_function(&function_binary(binary), binary, env);
    assert!(
        runtime
            .polled_since(since, 1, Duration::from_secs(20))
            .await,
        "{binary} did not start"
    );
    child
}

/// Delivers `payload` and, while it is being handled, waits for `until` and kills the process
/// (SIGKILL: no answer, no clean-up — as when Lambda ends an execution environment).
async fn kill_mid_invocation(
    runtime: &LocalRuntime,
    process: &mut Child,
    payload: Value,
    deadline: Duration,
    until: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        answer = runtime.invoke(payload, deadline) => panic!("answered before it was killed: {answer:?}"),
        () = until => {}
    }
    process.kill().await.expect("kill the function process");
}

#[tokio::test]
async fn a_hook_killed_mid_check_is_rerun_by_the_next_delivery_and_reports_once() {
    let w = World::new().await;
    let (service, mut hits) = hanging_service().await;
    let env = w
        .env(
            &w.policy(&hanging_check(&service)),
            &[("SAFESHIP_HOOK_REPORT_MARGIN_MS", "1000")],
        )
        .await;
    w.expect_report("Failed", 1).await;
    let runtime = LocalRuntime::start().await;

    let mut first = start(&runtime, "traffic-hook", &env).await;
    let first_deadline = Duration::from_secs(5);
    let handed = Instant::now();
    kill_mid_invocation(&runtime, &mut first, w.event(), first_deadline, async {
        hits.recv().await.expect("the check reached the service");
    })
    .await;
    assert!(w.reports().await.is_empty(), "the killed attempt reported");

    // Lambda's retry comes after the dead attempt's deadline: its claim has lapsed by then.
    tokio::time::sleep_until((handed + first_deadline + Duration::from_millis(300)).into()).await;
    let _second = start(&runtime, "traffic-hook", &env).await;
    let retry_deadline = Duration::from_secs(4);
    let (answer, timing) = runtime.invoke_timed(w.event(), retry_deadline).await;
    let Answer::Response(body) = answer else {
        panic!("the retry did not answer: {answer:?}")
    };
    assert_eq!(body["status"], "Failed", "{body}");
    assert_eq!(body["reason"], "timed out: hangs", "{body}");
    assert_eq!(body["duplicate"], false, "{body}");
    let timing = timing.expect("timed");
    assert!(timing.answered - timing.handed < retry_deadline);
    assert_eq!(w.reports().await, [w.report_body("Failed")]);
    w.codedeploy_mock.verify().await;
}

#[tokio::test]
async fn a_redelivery_while_the_first_delivery_works_is_an_error_not_an_answer() {
    let w = World::new().await;
    let (service, mut hits) = hanging_service().await;
    let env = w
        .env(
            &w.policy(&hanging_check(&service)),
            &[("SAFESHIP_HOOK_REPORT_MARGIN_MS", "1000")],
        )
        .await;
    w.expect_report("Failed", 1).await;
    let runtime = LocalRuntime::start().await;
    // Two execution environments of one function, as Lambda runs concurrent deliveries.
    let since = Instant::now();
    let _a = runtime.spawn_function(&function_binary("traffic-hook"), "traffic-hook", &env);
    let _b = runtime.spawn_function(&function_binary("traffic-hook"), "traffic-hook", &env);
    assert!(
        runtime
            .polled_since(since, 2, Duration::from_secs(20))
            .await,
        "both processes started"
    );

    let first = runtime.invoke(w.event(), Duration::from_secs(5));
    let second = async {
        hits.recv().await.expect("the first delivery's check runs");
        let answer = runtime.invoke(w.event(), Duration::from_secs(5)).await;
        (answer, w.reports().await.len())
    };
    let (first, (second, reports_when_second_answered)) = tokio::join!(first, second);
    let Answer::Error {
        error_type,
        error_message,
    } = second
    else {
        panic!("a live claim must be an error, got {second:?}")
    };
    assert_eq!(error_type, "safeship.traffic-hook.InProgressElsewhere");
    assert!(
        error_message.contains(&w.hook_execution_id)
            && error_message.contains("another invocation holds this work"),
        "{error_message}"
    );
    assert_eq!(
        reports_when_second_answered, 0,
        "the second answered while the first was still working"
    );
    let Answer::Response(body) = first else {
        panic!("the first delivery did not answer: {first:?}")
    };
    assert_eq!(body["status"], "Failed", "{body}");
    assert_eq!(w.reports().await, [w.report_body("Failed")]);
    w.codedeploy_mock.verify().await;
}

#[tokio::test]
async fn a_retry_after_the_dead_attempt_reported_is_answered_as_reported_before() {
    let w = World::new().await;
    // The first attempt reports, then hangs publishing its guard event and is killed there:
    // CodeDeploy holds its status, the idempotency record does not.
    let eventbridge_hangs = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(120)))
        .mount(&eventbridge_hangs)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", PUT_STATUS))
        .and(body_json(w.report_body("Succeeded")))
        .respond_with(accepted(&w.hook_execution_id))
        .up_to_n_times(1)
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", PUT_STATUS))
        .and(body_json(w.report_body("Succeeded")))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({
                    "__type": "LifecycleEventAlreadyCompletedException",
                    "message": format!("lifecycle event {} is already completed", w.hook_execution_id),
                })),
        )
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    let policy = w.policy(UNCHECKED);
    let env = w
        .env(&policy, &[("SAFESHIP_HOOK_REPORT_MARGIN_MS", "2000")])
        .await;
    let mut first_env = env.clone();
    override_env(
        &mut first_env,
        &[("AWS_ENDPOINT_URL_EVENTBRIDGE", &eventbridge_hangs.uri())],
    );
    let runtime = LocalRuntime::start().await;

    let mut first = start(&runtime, "traffic-hook", &first_env).await;
    let first_deadline = Duration::from_secs(5);
    let handed = Instant::now();
    kill_mid_invocation(&runtime, &mut first, w.event(), first_deadline, async {
        while eventbridge_hangs
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(w.reports().await.len(), 1, "the dead attempt had reported");

    tokio::time::sleep_until((handed + first_deadline + Duration::from_millis(300)).into()).await;
    let _second = start(&runtime, "traffic-hook", &env).await;
    let answer = runtime.invoke(w.event(), Duration::from_secs(5)).await;
    let Answer::Response(body) = answer else {
        panic!("the retry did not answer: {answer:?}")
    };
    assert_eq!(body["status"], "Succeeded", "{body}");
    assert_eq!(body["reported-before"], true, "{body}");
    assert_eq!(
        w.reports().await,
        [w.report_body("Succeeded"), w.report_body("Succeeded")]
    );
    w.codedeploy_mock.verify().await;
}

#[tokio::test]
async fn a_report_endpoint_that_hangs_is_an_error_before_the_deadline_naming_the_report() {
    let w = World::new().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", PUT_STATUS))
        .and(body_json(w.report_body("Succeeded")))
        .respond_with(accepted(&w.hook_execution_id).set_delay(Duration::from_secs(120)))
        .mount(&w.codedeploy_mock)
        .await;
    let env = w
        .env(
            &w.policy(UNCHECKED),
            &[("SAFESHIP_HOOK_REPORT_MARGIN_MS", "2000")],
        )
        .await;
    let runtime = LocalRuntime::start().await;
    let _process = start(&runtime, "traffic-hook", &env).await;
    let deadline = Duration::from_secs(8);
    let (answer, timing) = runtime.invoke_timed(w.event(), deadline).await;
    let Answer::Error {
        error_type,
        error_message,
    } = answer
    else {
        panic!("a report that never arrived must be an error: {answer:?}")
    };
    let timing = timing.expect("the function answered");
    assert!(
        timing.answered - timing.handed < deadline,
        "answered {:?} after it was handed the event, past its deadline of {deadline:?}",
        timing.answered - timing.handed
    );
    assert_eq!(error_type, "safeship.traffic-hook.Report");
    assert!(
        error_message.starts_with(&format!(
            "reporting Succeeded for deployment {} failed: codedeploy:PutLifecycleEventHookExecutionStatus on deployment {}",
            w.deployment_id, w.deployment_id
        )),
        "{error_message}"
    );
}

/// A hook function whose cold start fails with `env` answers the hook event with an error
/// naming `cause` and reports `Failed` exactly once; another event gets the error, no report.
async fn a_failed_cold_start_reports_failed(
    binary: &str,
    env: Vec<(String, String)>,
    w: &World,
    error_type: &str,
    cause: &str,
) {
    w.expect_report("Failed", 1).await;
    let runtime = LocalRuntime::start().await;
    let _process = start(&runtime, binary, &env).await;
    let answer = runtime.invoke(w.event(), Duration::from_secs(10)).await;
    let Answer::Error {
        error_type: got_type,
        error_message,
    } = answer
    else {
        panic!("{binary}: a failed cold start must answer an error: {answer:?}")
    };
    assert_eq!(got_type, error_type, "{error_message}");
    assert!(
        error_message.starts_with(&format!("cold start of {binary} failed: ")),
        "{error_message}"
    );
    assert!(error_message.contains(cause), "{error_message}");
    assert!(
        error_message.ends_with(&format!(
            "; reported Failed to CodeDeploy for deployment {} (hook execution {})",
            w.deployment_id, w.hook_execution_id
        )),
        "{error_message}"
    );
    assert_eq!(w.reports().await, [w.report_body("Failed")]);

    let answer = runtime
        .invoke(
            sample_event("alarm-eventbridge-metric.json"),
            Duration::from_secs(10),
        )
        .await;
    let Answer::Error { error_message, .. } = answer else {
        panic!("{binary}: {answer:?}")
    };
    assert!(
        error_message.contains(cause) && error_message.ends_with("; nothing was done"),
        "{error_message}"
    );
    assert_eq!(w.reports().await.len(), 1, "no report for a non-hook event");
    w.codedeploy_mock.verify().await;
}

#[tokio::test]
async fn a_hook_with_an_invalid_policy_still_reports_failed() {
    let w = World::new().await;
    let policy = w.policy(
        "        traffic-hook:\n          http-checks:\n            - name: health\n              url: https://h/health\n              requests: 4294967295\n",
    );
    let env = w.env(&policy, &[]).await;
    a_failed_cold_start_reports_failed(
        "traffic-hook",
        env,
        &w,
        "safeship.traffic-hook.Policy",
        "http-checks[0].requests: must be 1..=1000, found 4294967295",
    )
    .await;
}

#[tokio::test]
async fn a_hook_without_a_required_variable_still_reports_failed() {
    let w = World::new().await;
    let mut env = w.env(&w.policy(UNCHECKED), &[]).await;
    env.retain(|(k, _)| k != "SAFESHIP_IDEMPOTENCY_TABLE");
    a_failed_cold_start_reports_failed(
        "traffic-hook",
        env,
        &w,
        "safeship.traffic-hook.Config",
        "SAFESHIP_IDEMPOTENCY_TABLE: is required but not set",
    )
    .await;
}

#[tokio::test]
async fn a_hook_whose_ssm_policy_is_missing_still_reports_failed() {
    let w = World::new().await;
    let parameter = format!("/safeship/{}", unique("missing-policy"));
    let mut env = w.env(&w.policy(UNCHECKED), &[]).await;
    env.retain(|(k, _)| k != "SAFESHIP_POLICY");
    override_env(&mut env, &[("SAFESHIP_POLICY_SSM_PARAMETER", &parameter)]);
    a_failed_cold_start_reports_failed(
        "traffic-hook",
        env,
        &w,
        "safeship.traffic-hook.Aws",
        &format!("ssm:GetParameter on {parameter} failed"),
    )
    .await;
}

#[tokio::test]
async fn a_snapshot_hook_without_a_required_variable_still_reports_failed() {
    let w = World::new().await;
    let mut env = w.env(&w.policy(UNCHECKED), &[]).await;
    env.retain(|(k, _)| k != "SAFESHIP_IDEMPOTENCY_TABLE");
    a_failed_cold_start_reports_failed(
        "predeploy-snapshot",
        env,
        &w,
        "safeship.predeploy-snapshot.Config",
        "SAFESHIP_IDEMPOTENCY_TABLE: is required but not set",
    )
    .await;
}

#[tokio::test]
async fn a_hook_whose_tls_roots_setting_is_invalid_still_reports_failed_with_the_bundled_roots() {
    // The one setting the SDK configuration reads fails the cold start: the degraded client
    // falls back to the bundled roots and the report still goes out.
    let w = World::new().await;
    let env = w
        .env(
            &w.policy(UNCHECKED),
            &[("SAFESHIP_TLS_ROOTS", "everything")],
        )
        .await;
    a_failed_cold_start_reports_failed(
        "traffic-hook",
        env,
        &w,
        "safeship.traffic-hook.Config",
        "SAFESHIP_TLS_ROOTS: expected bundled or system, got \"everything\"",
    )
    .await;
}

#[tokio::test]
async fn a_snapshot_continuation_that_meets_a_failed_cold_start_still_reports_failed() {
    // The wait for a snapshot goes on in a continuation; if that invocation's cold start fails,
    // the hook it continues must not go silent either.
    let w = World::new().await;
    let mut env = w.env(&w.policy(UNCHECKED), &[]).await;
    env.retain(|(k, _)| k != "SAFESHIP_IDEMPOTENCY_TABLE");
    w.expect_report("Failed", 1).await;
    let runtime = LocalRuntime::start().await;
    let _process = start(&runtime, "predeploy-snapshot", &env).await;
    let continuation = serde_json::json!({"safeship-continuation": {
        "deployment-id": w.deployment_id, "lifecycle-event-hook-execution-id": w.hook_execution_id,
        "application": "checkout", "deployment-group": "checkout-prod", "database": "checkout-db",
        "snapshot-id": "safeship-checkout-db-d-1", "started-at": "2026-11-20T10:00:00Z", "attempt": 1
    }});
    let answer = runtime.invoke(continuation, Duration::from_secs(10)).await;
    let Answer::Error { error_message, .. } = answer else {
        panic!("a failed cold start must answer an error: {answer:?}")
    };
    assert!(
        error_message.contains("SAFESHIP_IDEMPOTENCY_TABLE")
            && error_message.contains("reported Failed to CodeDeploy"),
        "{error_message}"
    );
    assert_eq!(w.reports().await, [w.report_body("Failed")]);
}
