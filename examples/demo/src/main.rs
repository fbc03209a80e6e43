//! `scripts/demo`: one deployment day of checkout/checkout-prod, told through the real function
//! binaries (each under a local Lambda Runtime API) and the operator's CLI, with AWS emulated by
//! moto (and wiremock for the operations moto lacks). Every act checks its outcome at the
//! emulators; the demo exits non-zero when the story does not happen.
//!
//! 1. Deployment 1 (version 4): START → the snapshot, the migration's freshness gate, the hook
//!    passes, SUCCESS.
//! 2. Deployment 2 (version 5, which never came up): its hook fails and CodeDeploy is told.
//! 3. Deployment 3 (version 6, migration 042): the hook passes, the 5xx alarm fires in the bake,
//!    the deployment is stopped with rollback and the flags switched off, once, though the alarm
//!    arrives twice.
//! 4. The night: the integrity check finds the rows migration 042 deleted, one message.
//! 5. The operator: `safeship status`, `safeship snapshot restore`, `safeship flags on`.
//! 6. ECS deploys checkout/checkout-api itself: blue/green through the snapshot gate and the
//!    traffic hook; then a canary failed at 10 % by its alarm, and ECS's rollback passed.

mod stage;
mod timeline;

use anyhow::{ensure, Context as _};
use safeship_testkit::checkout;
use safeship_testkit::codedeploy::metric_alarm;
use safeship_testkit::emulators::{manual_snapshot_ids, sample_event, unique};
use safeship_testkit::integrity::{admin, DAMAGE};
use safeship_testkit::runtime::Answer;
use serde_json::{json, Value};

use crate::stage::{Stage, INSTANCE};
use crate::timeline::{
    describe_alarm_rollback, describe_freshness, describe_hook, describe_integrity,
    describe_notification, describe_snapshot, show,
};

const ALARM: &str = "checkout-prod-5xx-rate";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stage = Stage::build().await?;
    let started = std::time::Instant::now();
    night_before(&stage).await?;
    let first = healthy_deployment(&stage).await?;
    let second = broken_deployment(&stage).await?;
    let third = deployment_tripping_the_alarm(&stage).await?;
    let restored = next_night_and_the_operator(&stage, &[&first, &second, &third]).await?;
    ecs_native_deployments(&stage).await?;
    bad_input(&stage).await?;
    println!(
        "\nThe story happened as told ({:.1} s): {first} succeeded, {second} failed its hook, {third} was stopped by its alarm; \
         the damage was found and the operator restored the pre-deploy snapshot into {restored} and switched the flags back on; \
         ECS's blue/green deployment of checkout-api passed its snapshot gate and hooks, and its canary was failed at 10 %.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The night before: the nightly check counts the checkout database (the baseline).
async fn night_before(stage: &Stage) -> anyhow::Result<()> {
    stage.t.act("The night before");
    stage.t.line("eventbridge", "the nightly schedule fires");
    let answer = stage
        .invoke("integrity-check", schedule_event())
        .await
        .ok()?;
    stage.t.line("integrity-check", describe_integrity(&answer));
    ensure!(
        answer["runs"][0]["status"] == "clean",
        "the baseline run is not clean: {answer}"
    );
    Ok(())
}

/// Deployment 1 ships version 4: snapshot, gate, hook, success.
async fn healthy_deployment(stage: &Stage) -> anyhow::Result<String> {
    let d = start(stage, "4", "version 4").await?;
    stage
        .t
        .line("migration 041", "adds an index; the gate let it run");
    admin()
        .await
        .batch_execute(
            &"CREATE INDEX IF NOT EXISTS orders_customer ON @s.orders (customer_id)"
                .replace("@s", &stage.shop),
        )
        .await
        .context("running migration 041")?;
    stage.service.answer_as("4");
    hook(stage, &d, "Succeeded").await?;
    finish(stage, &d, "Succeeded", "SUCCESS").await?;
    Ok(d)
}

/// Deployment 2 claims version 5, but version 5 never came up: the service still answers 4.
async fn broken_deployment(stage: &Stage) -> anyhow::Result<String> {
    let d = start(stage, "5", "version 5").await?;
    stage.t.line(
        "checkout",
        "version 5 crashed at start: the service still answers 4",
    );
    hook(stage, &d, "Failed").await?;
    finish(stage, &d, "Failed", "FAILURE").await?;
    Ok(d)
}

/// Deployment 3 ships version 6 and migration 042; the hook passes, then the 5xx alarm fires in
/// the bake. The deployment is stopped with rollback and the flags switched off, once, though the
/// alarm arrives twice (EventBridge, then SNS).
async fn deployment_tripping_the_alarm(stage: &Stage) -> anyhow::Result<String> {
    let slack_before = stage.channels.slack.received().len();
    let d = start(stage, "6", "version 6 and migration 042").await?;
    stage.t.line(
        "migration 042",
        "deletes 5% of the orders and blanks some customer ids; nobody notices yet",
    );
    admin()
        .await
        .batch_execute(&DAMAGE.replace("@s", &stage.shop))
        .await
        .context("running migration 042")?;
    stage.service.answer_as("6");
    hook(stage, &d, "Succeeded").await?;

    stage.t.line(
        "checkout",
        "traffic on version 6; 5xx responses climb during the bake",
    );
    metric_alarm(
        &aws_sdk_cloudwatch::Client::new(&stage.sdk),
        ALARM,
        aws_sdk_cloudwatch::types::StateValue::Alarm,
        "Threshold Crossed: 48 target 5xx responses in a minute",
    )
    .await?;
    let changed_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    for (event, how) in [
        (alarm_by_eventbridge(&changed_at), "EventBridge"),
        (
            alarm_by_sns(&changed_at)?,
            "SNS (the same transition again)",
        ),
    ] {
        stage
            .t
            .line("cloudwatch", format!("{ALARM} → ALARM, delivered by {how}"));
        let answer = stage.invoke("alarm-rollback", event).await.ok()?;
        stage
            .t
            .line("alarm-rollback", describe_alarm_rollback(&answer));
    }
    let stops = stage.received("StopDeployment").await;
    ensure!(
        stops == [json!({"deploymentId": d, "autoRollbackEnabled": true})],
        "CodeDeploy was to be asked once to stop {d} with rollback; it received {stops:?}"
    );
    stage
        .t
        .detail(format!("CodeDeploy received StopDeployment {}", stops[0]));
    let off = stage
        .flag_version(2)
        .await
        .context("the flags switched off: AppConfig has no hosted version 2")?;
    ensure!(
        off["values"]["new-checkout-flow"]["enabled"] == false,
        "new-checkout-flow is still on in version 2: {off}"
    );
    stage.t.detail(format!(
        "AppConfig hosted version 2: new-checkout-flow {}, one-click-pay {}",
        off["values"]["new-checkout-flow"], off["values"]["one-click-pay"]
    ));
    relay_guard_events(stage).await?;
    finish(stage, &d, "Stopped", "STOP").await?;
    // AppConfig (wiremock) now serves the version the rollback wrote.
    stage.flags.mount_versions(&stage.appconfig, 2).await;
    stage
        .flags
        .mount_deployed_in(&stage.appconfig, "prod", "2")
        .await;

    people_read(stage, slack_before).await?;
    Ok(d)
}

/// The next night the check finds migration 042's damage and names the deployments since; then
/// the operator looks, restores the pre-deploy snapshot and switches the flags back on. Returns
/// the restored instance.
async fn next_night_and_the_operator(
    stage: &Stage,
    deployments: &[&str],
) -> anyhow::Result<String> {
    stage.t.act("The next night");
    stage.t.line("eventbridge", "the nightly schedule fires");
    let answer = stage
        .invoke("integrity-check", schedule_event())
        .await
        .ok()?;
    stage.t.line("integrity-check", describe_integrity(&answer));
    let run = &answer["runs"][0];
    ensure!(
        run["status"] == "anomalies",
        "the damage was not found: {answer}"
    );
    let since: Vec<&str> = run["deployments-since"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    ensure!(
        deployments.iter().all(|d| since.contains(d)),
        "the run names deployments {since:?}, not {deployments:?}"
    );
    let slack_before = stage.channels.slack.received().len();
    let told = relay_guard_events(stage).await?;
    ensure!(told == 1, "the run was to be one message; it was {told}");
    let posted = stage.channels.slack.received();
    let header = posted
        .get(slack_before)
        .map(|m| m["blocks"][0]["text"]["text"].clone());
    ensure!(
        header
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|h| h.starts_with(":mag: Integrity check of checkout-db")),
        "Slack did not get the run's message: {header:?}"
    );

    stage.t.act("The operator, from a terminal");
    let (code, said) = cli(stage, &["status", "--application", "checkout"]).await?;
    ensure!(code == 0, "safeship status exited {code}: {said}");
    ensure!(
        said.contains(deployments[0]),
        "safeship status does not name the last success {}: {said}",
        deployments[0]
    );
    ensure!(
        said.contains("latest guard events:") && said.contains("rollback-performed"),
        "safeship status does not show the rollback among the latest guard events: {said}"
    );

    let restored = unique("checkout-db-restored");
    let (code, said) = cli(
        stage,
        &[
            "snapshot",
            "restore",
            "--database",
            "checkout-db",
            "--to",
            &restored,
        ],
    )
    .await?;
    ensure!(code == 0, "safeship snapshot restore exited {code}: {said}");
    let snapshot_of_third = snapshot_of(stage, deployments[2]).await?;
    ensure!(
        said.contains(&snapshot_of_third),
        "the restore was to use {snapshot_of_third}, taken before migration 042: {said}"
    );
    let instance = aws_sdk_rds::Client::new(&stage.sdk)
        .describe_db_instances()
        .db_instance_identifier(&restored)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_rds::error::DisplayErrorContext(e)))
        .context("moto DescribeDBInstances of the restored instance")?;
    ensure!(
        instance.db_instances().len() == 1,
        "RDS has no instance {restored}"
    );

    let (code, said) = cli(
        stage,
        &[
            "flags",
            "on",
            "--application",
            &stage.flags.application,
            "--environment",
            "prod",
            "--profile",
            &stage.flags.profile,
            "new-checkout-flow",
        ],
    )
    .await?;
    ensure!(code == 0, "safeship flags on exited {code}: {said}");
    let on = stage
        .flag_version(3)
        .await
        .context("flags on wrote no hosted version 3")?;
    ensure!(
        on["values"]["new-checkout-flow"]["enabled"] == true,
        "new-checkout-flow is not on in version 3: {on}"
    );
    stage.t.detail(format!(
        "AppConfig hosted version 3: new-checkout-flow {}",
        on["values"]["new-checkout-flow"]
    ));
    // The switch by hand is a guard event like any other: the team is told who did it.
    let slack_before = stage.channels.slack.received().len();
    relay_guard_events(stage).await?;
    let told = stage.channels.slack.received();
    ensure!(
        told[slack_before..]
            .iter()
            .any(|m| m["blocks"][0]["text"]["text"]
                .as_str()
                .is_some_and(|h| h.contains("Feature flags switched on by"))),
        "nobody was told the flags were switched back on"
    );
    Ok(restored)
}

/// A service deployment of checkout/checkout-api, new to this run (a reused moto keeps the
/// snapshots of earlier runs, and the gate names its snapshot after the service deployment).
fn ecs_service_deployment(kind: &str) -> String {
    format!(
        "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/{}",
        unique(kind)
    )
}

/// An ECS hook payload from `sample` at `stage`, with the target revision at `percent` of
/// production traffic (the other revision the rest), for `deployment` (its ARN).
fn ecs_step(sample: &str, deployment: Option<&str>, stage: &str, percent: f64) -> Value {
    let mut payload = sample_event(sample);
    payload["lifecycleStage"] = json!(stage);
    payload["executionId"] = json!(unique("ecs-hook"));
    if let Some(arn) = deployment {
        payload["resourceArn"] = json!(arn);
    }
    let target = payload["executionDetails"]["targetServiceRevisionArn"].clone();
    let old = "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/1920498462936580504";
    payload["executionDetails"]["productionTrafficWeights"] =
        json!({target.as_str().unwrap_or_default(): percent, old: 100.0 - percent});
    payload
}

/// ECS invokes `function` with `payload` as a lifecycle hook and reads its answer; IN_PROGRESS
/// brings ECS back with the answer's `hookDetails` (at once here). Returns the final answer.
async fn ecs_hook(stage: &Stage, function: &str, mut payload: Value) -> anyhow::Result<Value> {
    let hook_stage = payload["lifecycleStage"].as_str().unwrap_or("?").to_owned();
    stage
        .t
        .line("ecs", format!("invokes the {hook_stage} hook ({function})"));
    for _ in 0..10 {
        let answer = stage.invoke(function, payload.clone()).await.ok()?;
        stage.t.line(
            function,
            format!(
                "{}: {}",
                answer["hookStatus"].as_str().unwrap_or("?"),
                answer["reason"].as_str().unwrap_or("")
            ),
        );
        if answer["hookStatus"] != "IN_PROGRESS" {
            return Ok(answer);
        }
        payload["hookDetails"] = answer["hookDetails"].clone();
    }
    anyhow::bail!("{function} answered IN_PROGRESS ten times at {hook_stage}")
}

/// ECS deploys checkout/checkout-api itself (deployment controller ECS): a blue/green deployment
/// through the snapshot gate and the traffic hook, announced; then a canary whose 5xx alarm goes
/// off at 10 %, failed by the hook before the next step, and ECS's rollback passed at once.
async fn ecs_native_deployments(stage: &Stage) -> anyhow::Result<()> {
    stage
        .t
        .act("ECS: checkout/checkout-api, deployed by ECS itself (blue/green, then canary)");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&stage.sdk);
    metric_alarm(
        &cloudwatch,
        ALARM,
        aws_sdk_cloudwatch::types::StateValue::Ok,
        "Threshold Crossed: back under the threshold after the rollback",
    )
    .await?;
    stage.service.answer_as("6");
    let slack_before = stage.channels.slack.received().len();
    notify(stage, sample_event("ecs-deployment-in-progress.json")).await?;
    let snapshots_before =
        manual_snapshot_ids(&aws_sdk_rds::Client::new(&stage.sdk), INSTANCE).await;
    let blue_green = ecs_service_deployment("bluegreen");
    let blue_green_id = blue_green
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let of_blue_green = |sample: &str| {
        let mut payload = sample_event(sample);
        payload["resourceArn"] = json!(blue_green);
        payload
    };
    let gate = ecs_hook(
        stage,
        "predeploy-snapshot",
        of_blue_green("ecs-lifecycle-pre-scale-up.json"),
    )
    .await?;
    ensure!(
        gate["hookStatus"] == "SUCCEEDED",
        "the snapshot gate answered {gate}"
    );
    let snapshots = manual_snapshot_ids(&aws_sdk_rds::Client::new(&stage.sdk), INSTANCE).await;
    let taken: Vec<&String> = snapshots
        .iter()
        .filter(|s| !snapshots_before.contains(s))
        .collect();
    ensure!(
        taken.len() == 1 && taken[0].to_lowercase().contains(&blue_green_id),
        "the gate was to take one snapshot named after {blue_green}; RDS has {taken:?} new"
    );
    stage
        .t
        .detail(format!("RDS snapshot {} (available)", taken[0]));
    for sample in [
        "ecs-lifecycle-post-test-traffic-shift.json",
        "ecs-lifecycle-production-traffic-shift.json",
    ] {
        let answer = ecs_hook(stage, "traffic-hook", of_blue_green(sample)).await?;
        ensure!(answer["hookStatus"] == "SUCCEEDED", "{sample}: {answer}");
    }
    notify(stage, sample_event("ecs-deployment-completed.json")).await?;

    stage.t.line(
        "ecs",
        "a canary deployment: 10 % of production traffic, then the rest",
    );
    let canary_deployment = ecs_service_deployment("canary");
    let canary = |hook_stage: &str, percent: f64| {
        ecs_step(
            "ecs-lifecycle-production-traffic-shift.json",
            Some(&canary_deployment),
            hook_stage,
            percent,
        )
    };
    for (hook_stage, percent) in [
        ("PRE_PRODUCTION_TRAFFIC_SHIFT", 0.0),
        ("PRODUCTION_TRAFFIC_SHIFT", 10.0),
    ] {
        let answer = ecs_hook(stage, "traffic-hook", canary(hook_stage, percent)).await?;
        ensure!(
            answer["hookStatus"] == "SUCCEEDED",
            "{hook_stage} at {percent} %: {answer}"
        );
    }
    stage
        .t
        .line("checkout", "at 10 %, the canary's 5xx responses climb");
    metric_alarm(
        &cloudwatch,
        ALARM,
        aws_sdk_cloudwatch::types::StateValue::Alarm,
        "Threshold Crossed: 31 target 5xx responses in a minute",
    )
    .await?;
    let answer = ecs_hook(
        stage,
        "traffic-hook",
        canary("PRE_PRODUCTION_TRAFFIC_SHIFT", 10.0),
    )
    .await?;
    ensure!(
        answer["hookStatus"] == "FAILED"
            && answer["reason"].as_str().is_some_and(|r| r.contains(ALARM)),
        "the canary's next step was to fail on {ALARM}: {answer}"
    );
    stage.t.line(
        "ecs",
        "rolls the canary back: the traffic returns to the old revision",
    );
    let answer = ecs_hook(
        stage,
        "traffic-hook",
        canary("PRODUCTION_TRAFFIC_SHIFT", 0.0),
    )
    .await?;
    ensure!(
        answer["hookStatus"] == "SUCCEEDED",
        "a rollback's invocation is never held: {answer}"
    );
    // The canary's own deployment (the sample's id is the blue/green one's).
    let mut rolling_back = sample_event("ecs-deployment-rollback.json");
    rolling_back["detail"]["deploymentId"] = json!("ecs-svc/1029384756102938475");
    notify(stage, rolling_back).await?;
    let events = relay_guard_events(stage).await?;
    // Snapshot started and available; the test and production shifts passed; the canary's
    // steps at 0 % and 10 % passed, its next one failed; the rollback's invocation passed.
    ensure!(
        events == 8,
        "eight guard events were to tell the ECS act (the snapshot's two, six hook answers); found {events}"
    );
    let told = stage.channels.slack.received();
    let headers: Vec<String> = told[slack_before..]
        .iter()
        .filter_map(|m| m["blocks"][0]["text"]["text"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        headers.iter().any(|h| h.contains("ECS deployment")) && headers.len() >= 4,
        "the team was to hear of the ECS deployments: {headers:?}"
    );
    stage.t.detail(format!("Slack: {}", headers.join(" | ")));
    metric_alarm(
        &cloudwatch,
        ALARM,
        aws_sdk_cloudwatch::types::StateValue::Ok,
        "Threshold Crossed: back under the threshold after the canary's rollback",
    )
    .await?;
    Ok(())
}

/// Bad input: rejected with the field named, nothing done.
async fn bad_input(stage: &Stage) -> anyhow::Result<()> {
    stage.t.act("Bad input");
    let stops = stage.received("StopDeployment").await.len();
    stage.t.line(
        "someone",
        "sends alarm-rollback a hook event without its hook id",
    );
    let answer = stage
        .invoke("alarm-rollback", json!({"DeploymentId": "d-ABCDEF123"}))
        .await;
    show(&stage.t, "alarm-rollback", &answer, |b| b.to_string());
    ensure!(
        answer.ok().is_err() && stage.received("StopDeployment").await.len() == stops,
        "a malformed event was answered or acted on"
    );
    Ok(())
}

/// A deployment of `version` created in CodeDeploy (moto), and its START as CodeDeploy tells it:
/// the notifier announces it, the snapshot is taken (checked in RDS), and the migration's
/// freshness gate passes.
async fn start(stage: &Stage, version: &str, story: &str) -> anyhow::Result<String> {
    let d = checkout::lambda_deployment(&stage.codedeploy_moto, version).await?;
    stage.ledger.track(&d);
    stage.t.act(&format!("Deployment {d}: {story}"));
    stage.t.line("codedeploy", format!("{d}: START"));
    let event = state_change(&d, "START");
    notify(stage, event.clone()).await?;
    let snapshot = stage.invoke("predeploy-snapshot", event).await.ok()?;
    stage
        .t
        .line("predeploy-snapshot", describe_snapshot(&snapshot));
    let id = snapshot_of(stage, &d).await?;
    ensure!(
        snapshot["snapshot-id"] == id.as_str(),
        "the snapshot taken ({}) is not RDS's {id}",
        snapshot["snapshot-id"]
    );
    let gate = stage
        .invoke(
            "predeploy-snapshot",
            json!({"fresh": {"database": "checkout-db", "max-age-minutes": 30}}),
        )
        .await
        .ok()?;
    stage
        .t
        .line("predeploy-snapshot", describe_freshness(&gate));
    ensure!(
        gate["status"] == "fresh",
        "the freshness gate refused: {gate}"
    );
    relay_guard_events(stage).await?;
    Ok(d)
}

/// Deployment `d`'s BeforeAllowTraffic hook through the traffic hook; CodeDeploy (wiremock) is
/// to receive one report for it, saying `expected`.
async fn hook(stage: &Stage, d: &str, expected: &str) -> anyhow::Result<()> {
    let execution = unique("hook-execution");
    let mut event = sample_event("codedeploy-lifecycle-before-allow-traffic.json");
    event["DeploymentId"] = json!(d);
    event["LifecycleEventHookExecutionId"] = json!(execution);
    stage.t.line(
        "codedeploy",
        format!("{d}: invokes the BeforeAllowTraffic hook"),
    );
    let answer = stage.invoke("traffic-hook", event).await;
    show(&stage.t, "traffic-hook", &answer, describe_hook);
    let reports: Vec<Value> = stage
        .received("PutLifecycleEventHookExecutionStatus")
        .await
        .into_iter()
        .filter(|r| r["lifecycleEventHookExecutionId"] == execution.as_str())
        .collect();
    ensure!(
        reports.len() == 1 && reports[0]["deploymentId"] == d,
        "CodeDeploy was to receive one report for {d}'s hook; it received {reports:?}"
    );
    stage.t.detail(format!(
        "CodeDeploy received PutLifecycleEventHookExecutionStatus {}",
        reports[0]
    ));
    ensure!(
        reports[0]["status"] == expected,
        "deployment {d}'s hook reported {}, not {expected}",
        reports[0]
    );
    relay_guard_events(stage).await?;
    Ok(())
}

/// Deployment `d` ends as `status`, and CodeDeploy tells of it (`state`).
async fn finish(stage: &Stage, d: &str, status: &str, state: &str) -> anyhow::Result<()> {
    stage.ledger.finish(d, status);
    stage.t.line("codedeploy", format!("{d}: {state}"));
    notify(stage, state_change(d, state)).await
}

/// The notifier, given `event` as its EventBridge rule would.
async fn notify(stage: &Stage, event: Value) -> anyhow::Result<()> {
    let answer = stage.invoke("deploy-notify", event).await;
    show(&stage.t, "deploy-notify", &answer, describe_notification);
    answer.ok().map(|_| ())
}

/// What the guard rails published since the last relay, handed to the notifier as the bus's
/// rule would. Returns how many.
async fn relay_guard_events(stage: &Stage) -> anyhow::Result<usize> {
    let envelopes = stage.inbox.envelopes().await;
    for envelope in &envelopes {
        notify(stage, envelope.clone()).await?;
    }
    Ok(envelopes.len())
}

/// The incident as people read it: the Slack messages since `slack_before` (the deployment's
/// thread: its START opens it, the rest reply, failures shown in the channel too), and the
/// emails.
async fn people_read(stage: &Stage, slack_before: usize) -> anyhow::Result<()> {
    let posted = stage.channels.slack.received();
    let incident = &posted[slack_before.min(posted.len())..];
    ensure!(incident.len() > 1, "nobody was told of the rollback");
    let parent = &incident[0];
    ensure!(
        parent.get("thread_ts").is_none()
            && incident[1..].iter().all(|m| m["thread_ts"].is_string()),
        "the deployment's messages are not one thread: {incident:?}"
    );
    println!("\n  #deploys on Slack, as the team sees the incident: one thread for the deployment");
    for message in incident {
        let marker = match (
            message["thread_ts"].is_string(),
            message["reply_broadcast"] == true,
        ) {
            (false, _) => "●",
            (true, false) => "  ↳",
            (true, true) => "  ↳ (also sent to the channel)",
        };
        println!(
            "    {marker} {}",
            slack_text(message).replace(
                '\n',
                &format!("\n    {:width$}", "", width = marker.chars().count() + 1)
            )
        );
    }
    let emails = stage.channels.emails().await;
    println!("  email (failures only):");
    for email in &emails {
        println!("    Subject: {}", email["Subject"].as_str().unwrap_or("?"));
    }
    println!();
    Ok(())
}

/// A Block Kit message as Slack shows it: the header, then each section and context, plainly.
fn slack_text(message: &Value) -> String {
    let mut lines = Vec::new();
    for block in message["blocks"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("header") | Some("section") => {
                if let Some(text) = block["text"]["text"].as_str() {
                    lines.extend(text.lines().map(str::to_owned));
                }
            }
            Some("context") => {
                let parts: Vec<&str> = block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["text"].as_str())
                    .collect();
                lines.push(parts.join("  "));
            }
            _ => {}
        }
    }
    lines.join("\n")
}

/// The safeship CLI, its command line and output printed as in a terminal.
async fn cli(stage: &Stage, args: &[&str]) -> anyhow::Result<(i32, String)> {
    println!("  $ safeship {}", args.join(" "));
    let (code, said) = stage.cli(args).await?;
    for line in said.lines() {
        println!("    {line}");
    }
    println!("    (exit {code})");
    Ok((code, said))
}

/// The pre-deploy snapshot RDS (moto) holds for deployment `d`.
async fn snapshot_of(stage: &Stage, d: &str) -> anyhow::Result<String> {
    let ids = manual_snapshot_ids(&aws_sdk_rds::Client::new(&stage.sdk), INSTANCE).await;
    let wanted = d.to_lowercase();
    ids.into_iter()
        .find(|id| id.contains(&wanted))
        .with_context(|| format!("RDS holds no snapshot of {INSTANCE} for {d}"))
}

/// A CodeDeploy state change of deployment `d`, now, as EventBridge delivers it.
fn state_change(d: &str, state: &str) -> Value {
    let mut event = sample_event("codedeploy-deployment-start.json");
    event["id"] = json!(unique("codedeploy-event"));
    event["time"] = json!(now());
    event["detail"]["deploymentId"] = json!(d);
    event["detail"]["state"] = json!(state);
    event
}

/// The nightly schedule, firing now.
fn schedule_event() -> Value {
    let mut event = sample_event("scheduled-event.json");
    event["id"] = json!(unique("schedule"));
    event["time"] = json!(now());
    event
}

/// The alarm's transition to ALARM at `changed_at`, by EventBridge.
fn alarm_by_eventbridge(changed_at: &str) -> Value {
    let mut event = sample_event("alarm-eventbridge-metric.json");
    event["id"] = json!(unique("alarm-event"));
    event["time"] = json!(now());
    event["detail"]["state"]["timestamp"] = json!(changed_at);
    event
}

/// The same transition by SNS (the alarm's action on its topic).
fn alarm_by_sns(changed_at: &str) -> anyhow::Result<Value> {
    let mut event = sample_event("alarm-sns-metric.json");
    let sns = &mut event["Records"][0]["Sns"];
    let mut message: Value = serde_json::from_str(sns["Message"].as_str().unwrap_or("{}"))
        .context("the SNS sample's Message")?;
    message["StateChangeTime"] = json!(changed_at);
    sns["Message"] = json!(message.to_string());
    sns["MessageId"] = json!(unique("sns-message"));
    Ok(event)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An answer the story needs: the function's response, or an error saying what it answered.
trait Needed {
    fn ok(self) -> anyhow::Result<Value>;
}

impl Needed for Answer {
    fn ok(self) -> anyhow::Result<Value> {
        match self {
            Answer::Response(body) => Ok(body),
            Answer::Error {
                error_type,
                error_message,
            } => Err(anyhow::anyhow!("{error_type}: {error_message}")),
        }
    }
}
