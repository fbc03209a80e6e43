//! The traffic hook end to end: a real deployment in moto, real HTTP servers as the version under
//! test, moto CloudWatch alarms, and CodeDeploy's report asserted by wiremock.
//!
//! Emulated by wiremock, and why:
//! - CodeDeploy `PutLifecycleEventHookExecutionStatus`: moto does not serve it (HTTP 500). A split
//!   endpoint sends it to wiremock and every other CodeDeploy call (`GetDeployment`) to moto.
//! - Lambda `Invoke`: moto runs function code only inside Docker; wiremock answers as Lambda does
//!   (payload, `X-Amz-Function-Error`, `X-Amz-Executed-Version`) and asserts the request
//!   (function, `Qualifier`, payload).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_codedeploy::types::ComputePlatform;
use axum::routing::get;
use axum::{Json, Router};
use lambda_runtime::{Context, LambdaEvent};
use safeship::event::LifecycleHook;
use safeship::guard::Outcome;
use safeship_testkit::codedeploy;
use safeship_testkit::emulators::{common_with_policy, moto_endpoint, sdk_config, unique};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use traffic_hook::checks::CheckClients;
use traffic_hook::AnswerStatus;
use traffic_hook::{Deadlines, Deps, HookSettings};
use wiremock::matchers::{body_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PUT_STATUS: &str = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus";

/// The version under test: healthy, the old version, slow, broken, hanging, or hanging up.
async fn target_service() -> String {
    let app = Router::new()
        .route(
            "/health",
            get(|| async { Json(json!({"version": "4", "db": "ok"})) }),
        )
        .route(
            "/old/health",
            get(|| async { Json(json!({"version": "3", "db": "ok"})) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Json(json!({"version": "4", "db": "ok"}))
            }),
        )
        .route(
            "/error",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/leak",
            get(|| async { "<html>session expired; token=tok-SECRET-5</html>" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server that accepts connections and closes them without answering.
async fn hang_up_service() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        }
    });
    format!("http://{addr}")
}

struct World {
    deployment_id: String,
    codedeploy_mock: MockServer,
    lambda_mock: MockServer,
    _split: SplitEndpoint,
    deps: Deps,
}

/// A Lambda deployment (`checkout-api` 3 → 4) of a fresh application in moto, and the hook's
/// dependencies wired to moto, the split CodeDeploy endpoint and the Lambda mock.
/// `traffic_hook` is the group's `traffic-hook:` policy section (YAML, indented 8).
async fn world(traffic_hook: &str) -> World {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
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

    let policy = format!(
        "version: 1\napplications:\n  {app}:\n    deployment-groups:\n      {group}:\n        environment: prod\n{traffic_hook}"
    );
    let codedeploy_mock = MockServer::start().await;
    let split = SplitEndpoint::json_operations(
        &moto,
        &codedeploy_mock.uri(),
        &["PutLifecycleEventHookExecutionStatus"],
    )
    .await;
    let lambda_mock = MockServer::start().await;
    let deps = Deps {
        common: common_with_policy(&sdk, &policy).await,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&split.uri()).await),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&moto_endpoint()).await),
        checks: CheckClients {
            http: traffic_hook::http_client(&safeship::env::Env::from_pairs::<&str, &str>([]))
                .unwrap(),
            lambda: aws_sdk_lambda::Client::new(&sdk_config(&lambda_mock.uri()).await),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        },
        settings: HookSettings {
            report_margin: Duration::from_millis(1_000),
            lifecycle_event: Some("BeforeAllowTraffic".into()),
        },
    };
    World {
        deployment_id,
        codedeploy_mock,
        lambda_mock,
        _split: split,
        deps,
    }
}

impl World {
    fn hook(&self) -> LifecycleHook {
        LifecycleHook {
            deployment_id: self.deployment_id.clone(),
            lifecycle_event_hook_execution_id: unique("hook-exec"),
        }
    }

    /// CodeDeploy (wiremock) takes exactly `times` reports of `status` for `hook`.
    async fn expect_report(&self, hook: &LifecycleHook, status: &str, times: u64) {
        Mock::given(method("POST"))
            .and(path("/"))
            .and(header("x-amz-target", PUT_STATUS))
            .and(header("content-type", "application/x-amz-json-1.1"))
            .and(body_json(json!({
                "deploymentId": hook.deployment_id,
                "lifecycleEventHookExecutionId": hook.lifecycle_event_hook_execution_id,
                "status": status,
            })))
            .respond_with(accepted(hook))
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

    async fn run(&self, hook: &LifecycleHook) -> traffic_hook::HookAnswer {
        traffic_hook::run_hook(&self.deps, hook, self.deadlines(Duration::from_secs(20)))
            .await
            .expect("the hook answers")
    }

    /// The checks within `checks`, then the report margin.
    fn deadlines(&self, checks: Duration) -> Deadlines {
        Deadlines::after_checks(
            tokio::time::Instant::now() + checks,
            self.deps.settings.report_margin,
        )
    }
}

/// A metric alarm in moto, set to `state`.
async fn alarm(state: StateValue) -> String {
    let name = unique("checkout-5xx");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk_config(&moto_endpoint()).await);
    codedeploy::metric_alarm(
        &cloudwatch,
        &name,
        state,
        "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).",
    )
    .await
    .expect("a moto alarm");
    name
}

fn accepted(hook: &LifecycleHook) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(
            json!({"lifecycleEventHookExecutionId": hook.lifecycle_event_hook_execution_id}),
        )
}

fn http_check(name: &str, url: &str, extra: &str) -> String {
    format!(
        "          - name: {name}\n            url: {url}\n            expect-json:\n              /version: \"{{{{target-version}}}}\"\n              /db: ok\n{extra}"
    )
}

#[tokio::test]
async fn all_checks_pass_and_the_hook_reports_succeeded_once() {
    let service = target_service().await;
    let alarm = alarm(StateValue::Ok).await;
    let mut w = world(&format!(
        "        traffic-hook:\n          http-checks:\n{}          lambda-checks:\n            - name: ping\n              function: checkout-api\n              payload: {{ping: true}}\n              expect-json: {{/status: ok}}\n          alarm-checks:\n            alarms: [{alarm}]\n",
        http_check(
            "health",
            &format!("{service}/health"),
            "            requests: 5\n            p95-budget-ms: 2000\n"
        )
    ))
    .await;
    let inbox = GuardInbox::create(&sdk_config(&moto_endpoint()).await).await;
    w.deps.common.guard = inbox.publisher();

    Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/checkout-api/invocations"))
        .and(query_param("Qualifier", "4"))
        .and(body_json(json!({"ping": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-amz-executed-version", "4")
                .set_body_json(json!({"status": "ok"})),
        )
        .expect(1)
        .mount(&w.lambda_mock)
        .await;
    let hook = w.hook();
    w.expect_report(&hook, "Succeeded", 1).await;

    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Succeeded, "{answer:?}");
    assert_eq!(answer.reason, "all 3 checks passed");
    let names: Vec<_> = answer.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["health", "ping", "alarms"]);
    assert!(
        answer.checks[0]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("5 requests, p50 "),
        "{:?}",
        answer.checks[0]
    );
    assert!(answer.checks.iter().all(|c| c.passed));
    assert_eq!(w.reports().await.len(), 1);

    // The notifier hears of it: one guard event with every check.
    let events = inbox.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].id,
        format!("traffic-hook:{}", hook.lifecycle_event_hook_execution_id)
    );
    assert_eq!(
        events[0].deployment_id.as_deref(),
        Some(w.deployment_id.as_str())
    );
    let Outcome::HookPassed {
        lifecycle_event,
        checks,
    } = &events[0].outcome
    else {
        panic!("{:?}", events[0].outcome)
    };
    assert_eq!(lifecycle_event.as_deref(), Some("BeforeAllowTraffic"));
    assert_eq!(checks, &answer.checks);
}

#[tokio::test]
async fn a_wrong_version_fails_naming_the_expectation() {
    let service = target_service().await;
    let w = world(&format!(
        "        traffic-hook:\n          http-checks:\n{}",
        http_check("health", &format!("{service}/old/health"), "")
    ))
    .await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Failed);
    assert_eq!(
        answer.reason,
        r#"health: /version is "3", expected "4" (request 1)"#
    );
}

#[tokio::test]
async fn a_broken_or_hung_up_target_fails_each_check_by_name() {
    let service = target_service().await;
    let hang_up = hang_up_service().await;
    let w = world(&format!(
        "        traffic-hook:\n          http-checks:\n            - name: errors\n              url: {service}/error\n            - name: hangs-up\n              url: {hang_up}/health\n            - name: slow\n              url: {service}/slow\n              requests: 3\n              p95-budget-ms: 50\n"
    ))
    .await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Failed);
    let detail = |name: &str| {
        answer
            .checks
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.detail.clone())
            .unwrap()
    };
    assert!(
        detail("errors").contains("answered 500, expected 200"),
        "{}",
        detail("errors")
    );
    assert!(
        detail("hangs-up").contains("request 1 to ") && detail("hangs-up").contains("failed"),
        "{}",
        detail("hangs-up")
    );
    assert!(
        detail("slow").starts_with("p95 over the 50 ms budget: 3 requests"),
        "{}",
        detail("slow")
    );
    assert!(answer.reason.contains("errors: ") && answer.reason.contains("slow: "));
}

#[tokio::test]
async fn a_hung_target_is_reported_failed_before_the_lambda_deadline() {
    let service = target_service().await;
    // The check's own timeout (60 s) is far beyond the invocation: only the hook's deadline
    // (the Lambda deadline less the 1 s report margin) can end it.
    let w = world(&format!(
        "        traffic-hook:\n          http-checks:\n            - name: hangs\n              url: {service}/hang\n              timeout-ms: 60000\n"
    ))
    .await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let lambda_deadline_ms = now_ms + 3_000;
    let mut context = Context::default();
    context.deadline = lambda_deadline_ms;
    let payload = json!({
        "DeploymentId": hook.deployment_id,
        "LifecycleEventHookExecutionId": hook.lifecycle_event_hook_execution_id,
    });
    let answer = traffic_hook::codedeploy_handler(&w.deps, LambdaEvent::new(payload, context))
        .await
        .unwrap();
    let returned_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(answer.status, AnswerStatus::Failed);
    assert_eq!(answer.reason, "timed out: hangs");
    assert_eq!(w.reports().await.len(), 1, "the report reached CodeDeploy");
    assert!(
        returned_ms < lambda_deadline_ms,
        "reported {} ms after the Lambda deadline",
        returned_ms - lambda_deadline_ms
    );
}

#[tokio::test]
async fn an_alarm_in_alarm_fails_the_hook() {
    let firing = alarm(StateValue::Alarm).await;
    let quiet = alarm(StateValue::InsufficientData).await;
    let w = world(&format!(
        "        traffic-hook:\n          alarm-checks:\n            alarms: [{firing}, {quiet}]\n"
    ))
    .await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Failed);
    assert_eq!(
        answer.reason,
        format!("alarms: alarm {firing} is in ALARM: Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).")
    );
}

#[tokio::test]
async fn a_lambda_function_error_fails_the_check() {
    let w = world(
        "        traffic-hook:\n          lambda-checks:\n            - name: ping\n              function: checkout-api\n",
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/checkout-api/invocations"))
        .and(query_param("Qualifier", "4"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-amz-function-error", "Unhandled")
                .set_body_json(
                    json!({"errorType": "TypeError", "errorMessage": "db is undefined"}),
                ),
        )
        .expect(1)
        .mount(&w.lambda_mock)
        .await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert!(
        answer
            .reason
            .starts_with("ping: checkout-api:4 returned a function error (Unhandled): "),
        "{}",
        answer.reason
    );
    assert!(answer.reason.contains("db is undefined"));
}

#[tokio::test]
async fn no_checks_configured_fails_unless_allowed() {
    let w = world("").await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert!(
        answer.reason.starts_with("no smoke checks configured for"),
        "{}",
        answer.reason
    );

    let w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    let hook = w.hook();
    w.expect_report(&hook, "Succeeded", 1).await;
    assert_eq!(w.run(&hook).await.status, AnswerStatus::Succeeded);
}

#[tokio::test]
async fn a_duplicate_delivery_reports_once_and_returns_the_first_answer() {
    let service = target_service().await;
    let w = world(&format!(
        "        traffic-hook:\n          http-checks:\n{}",
        http_check("health", &format!("{service}/health"), "")
    ))
    .await;
    let hook = w.hook();
    w.expect_report(&hook, "Succeeded", 1).await;
    let first = w.run(&hook).await;
    let second = w.run(&hook).await;
    assert_eq!(first.status, AnswerStatus::Succeeded);
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(
        (second.status, &second.checks),
        (AnswerStatus::Succeeded, &first.checks)
    );
    assert_eq!(w.reports().await.len(), 1);
}

#[tokio::test]
async fn throttled_twice_then_accepted_is_one_status() {
    let w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    let hook = w.hook();
    Mock::given(header("x-amz-target", PUT_STATUS))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(
                    json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
                ),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&w.codedeploy_mock)
        .await;
    w.expect_report(&hook, "Succeeded", 1).await;
    assert_eq!(w.run(&hook).await.status, AnswerStatus::Succeeded);
}

#[tokio::test]
async fn a_report_that_cannot_be_delivered_is_an_error_and_a_retry_reports() {
    let w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    let hook = w.hook();
    // Four 503s exhaust the SDK's standard retry (4 attempts): the invocation fails, loudly.
    Mock::given(header("x-amz-target", PUT_STATUS))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(4)
        .expect(4)
        .mount(&w.codedeploy_mock)
        .await;
    let err = traffic_hook::run_hook(&w.deps, &hook, w.deadlines(Duration::from_secs(30)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "reporting Succeeded for deployment {} failed: codedeploy:PutLifecycleEventHookExecutionStatus on deployment {}",
            hook.deployment_id, hook.deployment_id
        )),
        "{err}"
    );
    // Lambda's retry of the same event runs again (the claim was released) and gets through.
    w.expect_report(&hook, "Succeeded", 1).await;
    let retried = w.run(&hook).await;
    assert_eq!(retried.status, AnswerStatus::Succeeded);
    assert!(!retried.duplicate);
}

#[tokio::test]
async fn an_unknown_deployment_is_reported_failed() {
    let w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    let hook = LifecycleHook {
        deployment_id: "d-NOSUCH000".into(),
        lifecycle_event_hook_execution_id: unique("hook-exec"),
    };
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert!(
        answer
            .reason
            .starts_with("could not look up the deployment: codedeploy:GetDeployment on deployment d-NOSUCH000 failed"),
        "{}",
        answer.reason
    );
}

#[tokio::test]
async fn without_its_idempotency_table_the_hook_still_reports_failed() {
    let mut w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    w.deps.common.idempotency = safeship::idempotency::IdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&sdk_config(&moto_endpoint()).await),
        "no-such-table",
        "test",
    );
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert!(
        answer
            .reason
            .starts_with("safeship could not record this hook execution, failing closed: "),
        "{}",
        answer.reason
    );
}

#[tokio::test]
async fn a_failure_to_record_the_outcome_after_reporting_keeps_the_reported_status() {
    let mut w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    // DynamoDB (wiremock, JSON 1.0): the claim is taken, recording the outcome is refused.
    let ddb_mock = MockServer::start().await;
    Mock::given(header("x-amz-target", "DynamoDB_20120810.PutItem"))
        .and(body_string_contains("COMPLETED"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_json(json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
                    "message": "not authorized to perform: dynamodb:PutItem",
                })),
        )
        .expect(1)
        .mount(&ddb_mock)
        .await;
    Mock::given(header("x-amz-target", "DynamoDB_20120810.PutItem"))
        .and(body_string_contains("attribute_not_exists(pk)"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_json(json!({})),
        )
        .expect(1)
        .mount(&ddb_mock)
        .await;
    w.deps.common.idempotency = safeship::idempotency::IdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&sdk_config(&ddb_mock.uri()).await),
        "idempotency",
        "test",
    );
    let hook = w.hook();
    w.expect_report(&hook, "Succeeded", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Succeeded, "{answer:?}");
    assert!(!answer.duplicate);
    assert!(
        answer.reason.starts_with("no smoke checks configured"),
        "{}",
        answer.reason
    );
    // One report, the first: no second, different status.
    let reports = w.reports().await;
    assert_eq!(
        reports,
        [json!({
            "deploymentId": hook.deployment_id,
            "lifecycleEventHookExecutionId": hook.lifecycle_event_hook_execution_id,
            "status": "Succeeded",
        })]
    );
    ddb_mock.verify().await;
    // The claim was never released (no DeleteItem): a redelivery does not run the checks again.
    let operations: Vec<String> = ddb_mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.headers.get("x-amz-target"))
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        operations,
        ["DynamoDB_20120810.PutItem", "DynamoDB_20120810.PutItem"]
    );
}

#[tokio::test]
async fn a_malformed_event_makes_no_call_and_names_the_field() {
    let w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    let event = LambdaEvent::new(json!({"DeploymentId": w.deployment_id}), Context::default());
    let err = traffic_hook::codedeploy_handler(&w.deps, event)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "CodeDeploy lifecycle hook event: field LifecycleEventHookExecutionId: missing"
    );
    // An empty payload (a hand-made test invocation) names both ids.
    let err =
        traffic_hook::codedeploy_handler(&w.deps, LambdaEvent::new(json!({}), Context::default()))
            .await
            .unwrap_err()
            .to_string();
    assert_eq!(
        err,
        "CodeDeploy lifecycle hook event: field DeploymentId and LifecycleEventHookExecutionId: missing (the payload is an empty object)"
    );
    assert!(w.reports().await.is_empty());
    assert!(w
        .lambda_mock
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test]
async fn a_status_codedeploy_already_holds_is_provably_reported_before() {
    // An earlier attempt reported, then died before recording it: CodeDeploy refuses the retry's
    // status with LifecycleEventAlreadyCompletedException. That status stands; the retry says so
    // and succeeds, so Lambda stops retrying.
    let w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    let hook = w.hook();
    Mock::given(method("POST"))
        .and(header("x-amz-target", PUT_STATUS))
        .and(body_json(json!({
            "deploymentId": hook.deployment_id,
            "lifecycleEventHookExecutionId": hook.lifecycle_event_hook_execution_id,
            "status": "Succeeded",
        })))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({
                    "__type": "LifecycleEventAlreadyCompletedException",
                    "message": "The lifecycle event is already completed",
                })),
        )
        .expect(1)
        .mount(&w.codedeploy_mock)
        .await;
    let answer = w.run(&hook).await;
    assert!(answer.reported_before, "{answer:?}");
    assert!(!answer.duplicate);
    assert_eq!(
        w.reports().await.len(),
        1,
        "one attempt, no retry of a refused status"
    );
}

#[tokio::test]
async fn tokens_in_check_urls_snippets_and_function_errors_never_reach_the_guard_event() {
    let service = target_service().await;
    let host = service.trim_start_matches("http://");
    let mut w = world(&format!(
        "        traffic-hook:\n          http-checks:\n            - name: errors\n              url: http://deployer:pa55w0rd-XYZ@{host}/error?token=tok-SECRET-1&v=4\n            - name: not-json\n              url: {service}/leak?api_key=key-SECRET-2\n              expect-json: {{/version: \"{{{{target-version}}}}\"}}\n          lambda-checks:\n            - name: ping\n              function: checkout-api\n"
    ))
    .await;
    let inbox = GuardInbox::create(&sdk_config(&moto_endpoint()).await).await;
    w.deps.common.guard = inbox.publisher();
    Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/checkout-api/invocations"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-amz-function-error", "Unhandled")
                .set_body_json(json!({
                    "errorType": "Error",
                    "errorMessage": "cannot reach postgres://app:pw-SECRET-3@db.internal/app",
                    "stackTrace": ["at connect (DB_PASSWORD=pw-SECRET-4)"],
                })),
        )
        .expect(1)
        .mount(&w.lambda_mock)
        .await;
    let hook = w.hook();
    w.expect_report(&hook, "Failed", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Failed, "{answer:?}");
    let envelopes = inbox.envelopes().await;
    assert_eq!(envelopes.len(), 1, "{envelopes:?}");
    let published = envelopes[0].to_string();
    let answered = serde_json::to_string(&answer).unwrap();
    for secret in [
        "pa55w0rd-XYZ",
        "tok-SECRET-1",
        "key-SECRET-2",
        "tok-SECRET-5",
        "pw-SECRET-3",
        "pw-SECRET-4",
    ] {
        assert!(
            !published.contains(secret),
            "{secret} in the guard event: {published}"
        );
        assert!(
            !answered.contains(secret),
            "{secret} in the answer: {answered}"
        );
    }
    // What was checked is still said.
    let errors = answer.checks.iter().find(|c| c.name == "errors").unwrap();
    assert_eq!(
        errors.detail.as_deref(),
        Some(format!("GET http://***@{host}/error?token=[redacted]&v=*** answered 500, expected 200 (request 1)").as_str())
    );
    assert!(answer.reason.contains("ping: checkout-api:4 returned a function error (Unhandled): Error: cannot reach postgres://"), "{}", answer.reason);
}

#[tokio::test]
async fn a_guard_event_that_cannot_be_published_is_said_in_the_answer() {
    let mut w = world("        traffic-hook:\n          allow-unchecked: true\n").await;
    // EventBridge refuses the event (a bus that does not exist).
    w.deps.common.guard = safeship::guard::GuardPublisher::new(
        aws_sdk_eventbridge::Client::new(&sdk_config(&moto_endpoint()).await),
        unique("no-such-bus"),
    );
    let hook = w.hook();
    w.expect_report(&hook, "Succeeded", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(
        answer.status,
        AnswerStatus::Succeeded,
        "the report is the record"
    );
    let said = answer.guard_event_error.as_deref().unwrap_or_default();
    assert!(
        said.starts_with("the guard event was not published (the report reached CodeDeploy): "),
        "{answer:?}"
    );
}

#[tokio::test]
async fn safeships_revert_is_never_held_though_the_alarm_that_called_for_it_still_fires() {
    let firing = alarm(StateValue::Alarm).await;
    let w = world(&format!(
        "        traffic-hook:\n          alarm-checks:\n            alarms: [{firing}]\n"
    ))
    .await;
    // alarm-rollback's revert of the group's deployment: a deployment its description names.
    let moto = aws_sdk_codedeploy::Client::new(&sdk_config(&moto_endpoint()).await);
    let released = moto
        .get_deployment()
        .deployment_id(&w.deployment_id)
        .send()
        .await
        .unwrap()
        .deployment_info
        .unwrap();
    let description =
        safeship::revert::revert_description(&firing, &w.deployment_id, "d-EARLIER01");
    let revert = moto
        .create_deployment()
        .application_name(released.application_name.unwrap())
        .deployment_group_name(released.deployment_group_name.unwrap())
        .description(&description)
        .revision(released.revision.unwrap())
        .send()
        .await
        .unwrap()
        .deployment_id
        .unwrap();
    let hook = LifecycleHook {
        deployment_id: revert,
        lifecycle_event_hook_execution_id: unique("hook-exec"),
    };
    w.expect_report(&hook, "Succeeded", 1).await;
    let answer = w.run(&hook).await;
    assert_eq!(answer.status, AnswerStatus::Succeeded, "{answer:?}");
    assert!(
        answer.reason.contains("never held") && answer.reason.contains(&description),
        "{}",
        answer.reason
    );
    assert!(
        answer.checks.is_empty(),
        "no check ran: {:?}",
        answer.checks
    );
    // The release itself, under the same alarm, is failed as ever.
    let release_hook = w.hook();
    w.expect_report(&release_hook, "Failed", 1).await;
    assert_eq!(w.run(&release_hook).await.status, AnswerStatus::Failed);
}
