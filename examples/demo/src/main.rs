//! `scripts/demo`: a deployment story replayed through the real function binaries, each running
//! under a local Lambda Runtime API, with AWS emulated by moto (and wiremock for the CodeDeploy
//! operations moto lacks). Prints a timeline of what each guard rail saw and did.

mod stage;
mod timeline;

use anyhow::Context as _;
use safeship_testkit::checkout;
use safeship_testkit::emulators::{sample_event, unique};
use safeship_testkit::integrity::{admin, DAMAGE};
use serde_json::json;

use crate::stage::Stage;
use crate::timeline::{
    describe_alarm_rollback, describe_freshness, describe_hook, describe_integrity,
    describe_notification, describe_snapshot, show,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stage = Stage::build().await?;
    night_before(&stage).await;
    deployment_start(&stage).await;
    bad_migration(&stage).await?;
    let canary = healthy_hook(&stage).await?;
    alarm_storm(&stage, &canary).await;
    failing_hook(&stage).await?;
    failure_notification(&stage).await;
    next_night(&stage).await;
    bad_input(&stage).await;

    let reports = stage
        .codedeploy
        .received_requests()
        .await
        .unwrap_or_default()
        .len();
    println!("\nCodeDeploy (wiremock) received {reports} request(s) in all.");
    Ok(())
}

/// 0. The night before: the nightly check counts the checkout database (the baseline).
async fn night_before(stage: &Stage) {
    stage
        .t
        .line("eventbridge", "nightly schedule fires (2026-11-20 03:00)");
    show(
        &stage.t,
        "integrity-check",
        stage
            .invoke("integrity-check", sample_event("scheduled-event.json"))
            .await,
        describe_integrity,
    );
}

/// 1. CodeDeploy starts the deployment: the notifier tells of it, the database is snapshotted,
///    and the migration step asks the freshness gate before it runs.
async fn deployment_start(stage: &Stage) {
    let t = &stage.t;
    let start = sample_event("codedeploy-deployment-start.json");
    t.line(
        "codedeploy",
        "deployment d-ABCDEF123 of checkout/checkout-prod: START",
    );
    show(
        t,
        "deploy-notify",
        stage.invoke("deploy-notify", start.clone()).await,
        describe_notification,
    );
    show(
        t,
        "predeploy-snapshot",
        stage.invoke("predeploy-snapshot", start).await,
        describe_snapshot,
    );
    // The migration step asks the freshness gate before it runs.
    show(
        t,
        "predeploy-snapshot",
        stage
            .invoke(
                "predeploy-snapshot",
                json!({"fresh": {"database": "checkout-db", "max-age-minutes": 60}}),
            )
            .await,
        describe_freshness,
    );
}

/// Migration 042 runs, and does damage nobody notices during the deployment.
async fn bad_migration(stage: &Stage) -> anyhow::Result<()> {
    stage.t.line(
        "migration 042",
        "deletes 5% of the orders, blanks some customer ids, orphans their items",
    );
    admin()
        .await
        .batch_execute(&DAMAGE.replace("@s", &stage.shop))
        .await
        .context("running the bad migration")
}

/// 2. The BeforeAllowTraffic hook of a healthy version passes; traffic shifts to the canary.
///    Returns the canary's deployment id.
async fn healthy_hook(stage: &Stage) -> anyhow::Result<String> {
    run_hook(stage, "4", "healthy version 4").await
}

/// 3. The canary's 5xx alarm fires, by EventBridge and (the same transition) by SNS; an
///    unmapped composite alarm fires; then the 5xx alarm recovers. The rollback stops the
///    canary's deployment and switches the flags off.
async fn alarm_storm(stage: &Stage, canary: &str) {
    let t = &stage.t;
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
            t,
            "alarm-rollback",
            stage.invoke("alarm-rollback", event).await,
            describe_alarm_rollback,
        );
    }
    show_codedeploy_received(stage, "StopDeployment").await;
    if let Some(v2) = stage.flag_version(2).await {
        t.detail(format!(
            "AppConfig hosted version 2 values: {}",
            v2["values"]
        ));
    }
    t.detail(format!("canary {canary} stopped with rollback"));
}

/// 4. The next deployment claims version 5, but the service still answers 4: the hook fails it.
async fn failing_hook(stage: &Stage) -> anyhow::Result<()> {
    run_hook(stage, "5", "version 5, but the service still answers 4").await?;
    show_codedeploy_received(stage, "PutLifecycleEventHookExecutionStatus").await;
    Ok(())
}

/// 4. The deployment fails; the notifier routes it.
async fn failure_notification(stage: &Stage) {
    stage
        .t
        .line("codedeploy", "deployment d-ABCDEF123: FAILURE");
    show(
        &stage.t,
        "deploy-notify",
        stage
            .invoke(
                "deploy-notify",
                sample_event("codedeploy-deployment-failure.json"),
            )
            .await,
        describe_notification,
    );
}

/// 5. The next night the check catches the migration's damage and names the deployment; the
///    notifier tells of each guard event it published.
async fn next_night(stage: &Stage) {
    let t = &stage.t;
    stage.inbox.envelopes().await; // what earlier steps published has been told already
    let mut next_night = sample_event("scheduled-event.json");
    next_night["id"] = json!("6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    next_night["time"] = json!("2026-11-21T03:00:00Z");
    t.line("eventbridge", "nightly schedule fires (2026-11-21 03:00)");
    show(
        t,
        "integrity-check",
        stage.invoke("integrity-check", next_night).await,
        describe_integrity,
    );
    for envelope in stage.inbox.envelopes().await {
        show(
            t,
            "deploy-notify",
            stage.invoke("deploy-notify", envelope).await,
            describe_notification,
        );
    }
}

/// 6. Bad input: rejected with the field named, nothing done.
async fn bad_input(stage: &Stage) {
    let t = &stage.t;
    t.line(
        "someone",
        "sends alarm-rollback a hook event without its hook id",
    );
    show(
        t,
        "alarm-rollback",
        stage
            .invoke("alarm-rollback", json!({"DeploymentId": "d-ABCDEF123"}))
            .await,
        |b| b.to_string(),
    );
    show(
        t,
        "predeploy-snapshot",
        stage
            .invoke(
                "predeploy-snapshot",
                json!({"database": "orders-db", "reason": "migration"}),
            )
            .await,
        |b| b.to_string(),
    );
}

/// A Lambda deployment to `target_version` in moto, and its BeforeAllowTraffic hook run through
/// the traffic-hook binary. Returns the deployment id.
async fn run_hook(stage: &Stage, target_version: &str, story: &str) -> anyhow::Result<String> {
    let deployment_id = checkout::lambda_deployment(&stage.codedeploy_moto, target_version).await?;
    let mut hook = sample_event("codedeploy-lifecycle-before-allow-traffic.json");
    hook["DeploymentId"] = json!(deployment_id);
    hook["LifecycleEventHookExecutionId"] = json!(unique("hook-execution"));
    stage.t.line(
        "codedeploy",
        format!("deployment {deployment_id} ({story}): invokes the BeforeAllowTraffic hook"),
    );
    show(
        &stage.t,
        "traffic-hook",
        stage.invoke("traffic-hook", hook).await,
        describe_hook,
    );
    Ok(deployment_id)
}

/// Every request of `operation` CodeDeploy (wiremock) has received so far, with its body.
async fn show_codedeploy_received(stage: &Stage, operation: &str) {
    for request in stage
        .codedeploy
        .received_requests()
        .await
        .unwrap_or_default()
    {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        if target.ends_with(operation) {
            stage.t.detail(format!(
                "CodeDeploy received {operation} {}",
                String::from_utf8_lossy(&request.body)
            ));
        }
    }
}
