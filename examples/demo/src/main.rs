//! `scripts/demo`: a deployment story replayed through the real function binaries, each running
//! under a local Lambda Runtime API, with AWS emulated by moto (and wiremock for the CodeDeploy
//! operations moto lacks). Prints a timeline of what each guard rail saw and did.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_ssm::types::ParameterType;
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::checkout;
use safeship_testkit::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sample_event,
    sdk_config, unique, REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::integrity::{
    admin, checkout_schema, create_history_table, database_secret, local_integrity,
    mount_completed_deployments, postgres, DAMAGE,
};
use safeship_testkit::runtime::{Answer, LocalRuntime};
use safeship_testkit::slack::Channels;
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
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

    // The service under smoke test: it answers as version 4.
    let service = checkout::serve_health("4").await;

    // The feature flags the rollback switches off: a profile in moto (AppConfig's version
    // listing and StartDeployment, which moto lacks, by wiremock).
    let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
    let appconfig_mock = MockServer::start().await;
    flags.mount_version_list(&appconfig_mock).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"DeploymentNumber": 1, "State": "DEPLOYING", "ConfigurationVersion": "2"}),
        ))
        .mount(&appconfig_mock)
        .await;
    let appconfig_split = appconfig::split_endpoint(&moto, &appconfig_mock).await;

    // Where notifications land: a local Slack webhook and an SNS email topic read through SQS.
    let channels = Channels::create(&sdk).await;

    // The checkout database, in the local PostgreSQL (a schema of its own), as the nightly check
    // sees it; CodeDeploy's record of the day's deployment for the check (wiremock: moto's
    // deployments never complete).
    let shop = checkout_schema().await;
    let integrity_codedeploy = MockServer::start().await;
    mount_completed_deployments(
        &integrity_codedeploy,
        &[(
            "d-ABCDEF123",
            "Succeeded",
            "2026-11-20T10:21:47Z".parse().expect("a time"),
        )],
    )
    .await;
    let history = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
    // Guard events land on a bus of their own, read back for the notifier.
    let inbox = GuardInbox::create(&sdk).await;

    // The account as an installation of safeship leaves it.
    let table = unique("safeship-idempotency");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
    let parameter = format!("/{}/policy", unique("safeship"));
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&parameter)
        .value(flags.into_policy(&local_integrity(
            &example_policy().replace("http://127.0.0.1:8081", &service),
            &shop,
            &database_secret(&sdk, &postgres().user).await,
        )))
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
    Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "Pending", "statusMessage": "Stop requested; rolling back"}),
        ))
        .mount(&codedeploy)
        .await;
    // One CodeDeploy endpoint: the report to wiremock, GetDeployment & co. to moto.
    let codedeploy_split = SplitEndpoint::json_operations(
        &moto,
        &codedeploy.uri(),
        &["PutLifecycleEventHookExecutionStatus", "StopDeployment"],
    )
    .await;
    let codedeploy_moto = aws_sdk_codedeploy::Client::new(&sdk);
    checkout::register_in_codedeploy(&codedeploy_moto).await?;
    checkout::create_database(&aws_sdk_rds::Client::new(&sdk)).await?;
    checkout::quiet_alarm(
        &aws_sdk_cloudwatch::Client::new(&sdk),
        "checkout-prod-5xx-rate",
    )
    .await?;

    // Lambda's Invoke for the hook's Lambda check (moto runs function code only in Docker).
    let lambda = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/checkout-api/invocations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .mount(&lambda)
        .await;

    let mut env: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL".into(), moto.clone()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY".into(), codedeploy_split.uri()),
        ("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.uri()),
        ("AWS_ENDPOINT_URL_APPCONFIG".into(), appconfig_split.uri()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_LAMBDA_LOG_LEVEL".into(), "WARN".into()),
        ("SAFESHIP_POLICY_SSM_PARAMETER".into(), parameter.clone()),
        ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table.clone()),
    ];
    env.push(("SAFESHIP_INTEGRITY_TABLE".into(), history.clone()));
    env.push(("SAFESHIP_EVENT_BUS".into(), inbox.bus.clone()));
    env.extend(channels.env());
    let mut functions = Vec::new();
    for name in FUNCTIONS {
        let runtime = LocalRuntime::start().await;
        let started = Instant::now();
        let mut env = env.clone();
        if name == "integrity-check" {
            env.push((
                "AWS_ENDPOINT_URL_CODEDEPLOY".into(),
                integrity_codedeploy.uri(),
            ));
        }
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

    // 0. The night before: the nightly check counts the checkout database (the baseline).
    t.line("eventbridge", "nightly schedule fires (2026-11-20 03:00)");
    show(
        &t,
        "integrity-check",
        invoke("integrity-check", sample_event("scheduled-event.json")).await,
        describe_integrity,
    );

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
        describe_notification,
    );
    show(
        &t,
        "predeploy-snapshot",
        invoke("predeploy-snapshot", start).await,
        |b| {
            format!(
                "database {}: snapshot {} {}{}",
                b["database"].as_str().unwrap_or("?"),
                b["snapshot-id"].as_str().unwrap_or("-"),
                b["status"].as_str().unwrap_or("?"),
                b["detail"]
                    .as_str()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )
        },
    );
    // The migration step asks the freshness gate before it runs.
    show(
        &t,
        "predeploy-snapshot",
        invoke(
            "predeploy-snapshot",
            json!({"fresh": {"database": "checkout-db", "max-age-minutes": 60}}),
        )
        .await,
        |b| {
            format!(
                "freshness gate for migration 042: {} — {}",
                b["status"].as_str().unwrap_or("?"),
                b["detail"].as_str().unwrap_or("")
            )
        },
    );

    // Migration 042 runs, and does damage nobody notices during the deployment.
    t.line(
        "migration 042",
        "deletes 5% of the orders, blanks some customer ids, orphans their items",
    );
    admin()
        .await
        .batch_execute(&DAMAGE.replace("@s", &shop))
        .await
        .context("running the bad migration")?;

    // 2. The BeforeAllowTraffic hook of a healthy version passes; traffic shifts to the canary.
    let canary = run_hook(&t, &codedeploy_moto, "4", "healthy version 4", &invoke).await?;

    // 3. The canary's 5xx alarm fires, by EventBridge and (the same transition) by SNS; an
    //    unmapped composite alarm fires; then the 5xx alarm recovers.
    for (sample, how) in [
        ("alarm-eventbridge-metric.json", "EventBridge"),
        ("alarm-sns-metric.json", "SNS (the same transition again)"),
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
                if o["decision"] != "roll-back" {
                    return format!(
                        "{}: ignored — {}",
                        b["alarm"],
                        o["reason"].as_str().unwrap_or("")
                    );
                }
                if b["duplicate"] == true {
                    return format!("{}: already handled — nothing done twice", b["alarm"]);
                }
                let actions: Vec<String> = b["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        format!(
                            "{} → {}",
                            a["action"].as_str().unwrap_or("?"),
                            a["detail"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                format!(
                    "{}: rolled back {}\n{:>31}{}",
                    b["alarm"],
                    o["groups"],
                    "",
                    actions.join(&format!("\n{:>31}", ""))
                )
            },
        );
    }
    for request in codedeploy.received_requests().await.unwrap_or_default() {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        if target.ends_with("StopDeployment") {
            t.detail(format!(
                "CodeDeploy received StopDeployment {}",
                String::from_utf8_lossy(&request.body)
            ));
        }
    }
    if let Some(v2) = flags.hosted_version(&sdk, 2).await {
        t.detail(format!(
            "AppConfig hosted version 2 values: {}",
            v2["values"]
        ));
    }
    t.detail(format!("canary {canary} stopped with rollback"));

    // 4. The next deployment claims version 5, but the service still answers 4: the hook fails it.
    run_hook(
        &t,
        &codedeploy_moto,
        "5",
        "version 5, but the service still answers 4",
        &invoke,
    )
    .await?;
    for request in codedeploy.received_requests().await.unwrap_or_default() {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        if target.ends_with("PutLifecycleEventHookExecutionStatus") {
            t.detail(format!(
                "CodeDeploy received PutLifecycleEventHookExecutionStatus {}",
                String::from_utf8_lossy(&request.body)
            ));
        }
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
        describe_notification,
    );

    // 5. The next night the check catches the migration's damage and names the deployment.
    inbox.envelopes().await; // what earlier steps published has been told already
    let mut next_night = sample_event("scheduled-event.json");
    next_night["id"] = json!("6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    next_night["time"] = json!("2026-11-21T03:00:00Z");
    t.line("eventbridge", "nightly schedule fires (2026-11-21 03:00)");
    show(
        &t,
        "integrity-check",
        invoke("integrity-check", next_night).await,
        describe_integrity,
    );
    for envelope in inbox.envelopes().await {
        show(
            &t,
            "deploy-notify",
            invoke("deploy-notify", envelope).await,
            describe_notification,
        );
    }

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
    println!("\nCodeDeploy (wiremock) received {reports} request(s) in all.");
    Ok(())
}

/// A run report in a line or a few: what was counted, and what is wrong.
fn describe_integrity(b: &Value) -> String {
    let Some(run) = b["runs"].get(0) else {
        return b.to_string();
    };
    let mut lines = vec![format!(
        "{}: {} — {} table(s), {} quer(ies) in {} ms{}",
        run["database"].as_str().unwrap_or("?"),
        run["status"].as_str().unwrap_or("?"),
        run["tables"].as_array().map_or(0, Vec::len),
        run["queries"].as_array().map_or(0, Vec::len),
        run["duration-ms"],
        if run["baseline"] == true {
            " (the baseline)"
        } else {
            ""
        }
    )];
    if let Some(since) = run["deployments-since"]
        .as_array()
        .filter(|d| !d.is_empty())
    {
        let ids: Vec<&str> = since.iter().filter_map(|d| d["id"].as_str()).collect();
        lines.push(format!("since deployment(s) {}", ids.join(", ")));
    }
    for f in run["findings"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{} {}{}: {}",
            f["severity"].as_str().unwrap_or("?"),
            f["table"].as_str().unwrap_or("?"),
            f["column"]
                .as_str()
                .map(|c| format!(".{c}"))
                .unwrap_or_default(),
            f["description"].as_str().unwrap_or("")
        ));
    }
    lines.join(&format!("\n{:>31}", ""))
}

/// A notification as its channels show it: Slack's header and fallback text, the email subject.
fn describe_notification(b: &Value) -> String {
    let mut lines = vec![format!("{} → {}", b["severity"], b["channels"])];
    let slack = &b["preview"]["slack"];
    lines.push(format!(
        "Slack:  {} | {}",
        slack["blocks"][0]["text"]["text"].as_str().unwrap_or(""),
        slack["text"].as_str().unwrap_or("")
    ));
    if b["channels"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c == "email"))
    {
        lines.push(format!(
            "email:  {}",
            b["preview"]["email"]["subject"].as_str().unwrap_or("")
        ));
    }
    lines.join(&format!("\n{:>31}", ""))
}

fn show(t: &Timeline, who: &str, answer: Answer, describe: impl Fn(&Value) -> String) {
    match answer {
        Answer::Response(body) => t.line(who, describe(&body)),
        Answer::Error { error_message, .. } => t.line(who, format!("rejected: {error_message}")),
    }
}

/// A Lambda deployment to `target_version` in moto, and its BeforeAllowTraffic hook run through
/// the traffic-hook binary. Returns the deployment id.
async fn run_hook<F, Fut>(
    t: &Timeline,
    codedeploy: &aws_sdk_codedeploy::Client,
    target_version: &str,
    story: &str,
    invoke: &F,
) -> anyhow::Result<String>
where
    F: Fn(&str, Value) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let deployment_id = checkout::lambda_deployment(codedeploy, target_version).await?;
    let mut hook = sample_event("codedeploy-lifecycle-before-allow-traffic.json");
    hook["DeploymentId"] = json!(deployment_id);
    hook["LifecycleEventHookExecutionId"] = json!(unique("hook-execution"));
    t.line(
        "codedeploy",
        format!("deployment {deployment_id} ({story}): invokes the BeforeAllowTraffic hook"),
    );
    show(t, "traffic-hook", invoke("traffic-hook", hook).await, |b| {
        let checks: Vec<String> = b["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {} in {} ms ({})",
                    c["name"].as_str().unwrap_or("?"),
                    if c["passed"] == json!(true) {
                        "passed"
                    } else {
                        "FAILED"
                    },
                    c["duration-ms"],
                    c["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        format!(
            "reported {} — {}\n{:>31}{}",
            b["status"],
            b["reason"].as_str().unwrap_or(""),
            "",
            checks.join(&format!("\n{:>31}", ""))
        )
    });
    Ok(deployment_id)
}
