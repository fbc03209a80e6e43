//! `scripts/demo`: a deployment story replayed through the real function binaries, each running
//! under a local Lambda Runtime API, with AWS emulated by moto (and wiremock for the CodeDeploy
//! operations moto lacks). Prints a timeline of what each guard rail saw and did.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_ssm::types::ParameterType;
use safeship_e2e::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sample_event,
    sdk_config, unique, REGION,
};
use safeship_e2e::runtime::{Answer, LocalRuntime};
use serde_json::{json, Value};
use wiremock::matchers::header;
use wiremock::{Mock, MockServer, ResponseTemplate};

const FUNCTIONS: [&str; 5] = [
    "traffic-hook",
    "alarm-rollback",
    "predeploy-snapshot",
    "deploy-notify",
    "integrity-check",
];

struct Function {
    name: &'static str,
    runtime: LocalRuntime,
    _process: tokio::process::Child,
}

struct Timeline {
    start: Instant,
}

impl Timeline {
    fn line(&self, who: &str, what: impl std::fmt::Display) {
        println!(
            "[{:>7.3}s] {who:<18} {what}",
            self.start.elapsed().as_secs_f64()
        );
    }
    fn detail(&self, what: impl std::fmt::Display) {
        println!("{:>29} {what}", "");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let t = Timeline {
        start: Instant::now(),
    };
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
    println!("safeship demo: one deployment of checkout/checkout-prod, through the real function binaries");
    println!("AWS emulated by moto at {moto}; CodeDeploy's hook and stop operations by wiremock\n");

    // The account as an installation of safeship leaves it.
    let table = unique("safeship-idempotency");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
    let parameter = format!("/{}/policy", unique("safeship"));
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&parameter)
        .value(example_policy())
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .context("storing the policy in SSM")?;
    t.line(
        "setup",
        format!("policy in SSM {parameter}, idempotency table {table}"),
    );

    let codedeploy = MockServer::start().await;
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
    .mount(&codedeploy)
    .await;

    let env: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL".into(), moto.clone()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY".into(), codedeploy.uri()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_LAMBDA_LOG_LEVEL".into(), "WARN".into()),
        ("SAFESHIP_POLICY_SSM_PARAMETER".into(), parameter.clone()),
        ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table.clone()),
    ];
    let mut functions = Vec::new();
    for name in FUNCTIONS {
        let runtime = LocalRuntime::start().await;
        let started = Instant::now();
        let process = runtime.spawn_function(&function_binary(name), name, &env);
        match runtime.ready(Duration::from_secs(30)).await {
            Ok(at) => t.line(
                name,
                format!("cold start {} ms", at.duration_since(started).as_millis()),
            ),
            Err(e) => bail!("{name} did not start: {e:?}"),
        }
        functions.push(Function {
            name,
            runtime,
            _process: process,
        });
    }
    let invoke = |name: &str, event: Value| {
        let f = functions
            .iter()
            .find(|f| f.name == name)
            .expect("known function");
        async move { f.runtime.invoke(event, Duration::from_secs(30)).await }
    };
    println!();

    // 1. CodeDeploy starts the deployment.
    let start = sample_event("codedeploy-deployment-start.json");
    t.line(
        "codedeploy",
        "deployment d-ABCDEF123 of checkout/checkout-prod: START",
    );
    show(
        &t,
        "deploy-notify",
        invoke("deploy-notify", start.clone()).await,
        |b| {
            format!(
                "routed {} ({}) to {}",
                b["event"], b["severity"], b["channels"]
            )
        },
    );
    show(
        &t,
        "predeploy-snapshot",
        invoke("predeploy-snapshot", start).await,
        |b| {
            format!(
                "database {} ({} {}): {}",
                b["database"], b["kind"], b["identifier"], b["snapshot"]
            )
        },
    );

    // 2. The BeforeAllowTraffic hook.
    let hook = sample_event("codedeploy-lifecycle-before-allow-traffic.json");
    t.line("codedeploy", "invokes the BeforeAllowTraffic hook");
    show(
        &t,
        "traffic-hook",
        invoke("traffic-hook", hook).await,
        |b| format!("reported {} — {}", b["status"], b["reason"]),
    );
    for request in codedeploy.received_requests().await.unwrap_or_default() {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        t.detail(format!(
            "CodeDeploy received {} {}",
            target.trim_start_matches("CodeDeploy_20141006."),
            String::from_utf8_lossy(&request.body)
        ));
    }

    // 3. The 5xx alarm fires, by EventBridge and (the same transition) by SNS; then recovers.
    for (sample, how) in [
        ("alarm-eventbridge-metric.json", "EventBridge"),
        ("alarm-sns-metric.json", "SNS"),
        (
            "alarm-eventbridge-composite.json",
            "EventBridge (composite)",
        ),
        ("alarm-eventbridge-ok.json", "EventBridge"),
    ] {
        let event = sample_event(sample);
        t.line("cloudwatch", format!("alarm state change via {how}"));
        show(
            &t,
            "alarm-rollback",
            invoke("alarm-rollback", event).await,
            |b| {
                let o = &b["outcome"];
                match o["decision"].as_str() {
                    Some("roll-back") => format!(
                        "{}: roll back {} (actions land with the rollback issue)",
                        b["alarm"], o["groups"]
                    ),
                    _ => format!("{}: ignored — {}", b["alarm"], o["reason"]),
                }
            },
        );
    }

    // 4. The deployment fails; the notifier routes it.
    t.line("codedeploy", "deployment d-ABCDEF123: FAILURE");
    show(
        &t,
        "deploy-notify",
        invoke(
            "deploy-notify",
            sample_event("codedeploy-deployment-failure.json"),
        )
        .await,
        |b| {
            format!(
                "routed {} ({}) to {}",
                b["event"], b["severity"], b["channels"]
            )
        },
    );

    // 5. The nightly schedule.
    t.line("eventbridge", "nightly schedule fires");
    show(
        &t,
        "integrity-check",
        invoke("integrity-check", sample_event("scheduled-event.json")).await,
        |b| format!("databases in policy: {}", b["databases"]),
    );

    // 6. Bad input: rejected with the field named, nothing done.
    t.line(
        "someone",
        "sends alarm-rollback a hook event without its hook id",
    );
    show(
        &t,
        "alarm-rollback",
        invoke("alarm-rollback", json!({"DeploymentId": "d-ABCDEF123"})).await,
        |b| b.to_string(),
    );
    show(
        &t,
        "predeploy-snapshot",
        invoke(
            "predeploy-snapshot",
            json!({"database": "orders-db", "reason": "migration"}),
        )
        .await,
        |b| b.to_string(),
    );

    let reports = codedeploy
        .received_requests()
        .await
        .unwrap_or_default()
        .len();
    println!(
        "\nCodeDeploy received {reports} request(s) in all; no other AWS resource was changed."
    );
    Ok(())
}

fn show(t: &Timeline, who: &str, answer: Answer, describe: impl Fn(&Value) -> String) {
    match answer {
        Answer::Response(body) => t.line(who, describe(&body)),
        Answer::Error { error_message, .. } => t.line(who, format!("rejected: {error_message}")),
    }
}
