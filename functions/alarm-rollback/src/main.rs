use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use safeship::config::Env;

// One thread: Lambda hands over one event at a time and gives a small function a fraction of a
// vCPU, so worker threads would only add start-up and cross-thread wake-ups.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    safeship::telemetry::init();
    let deps = alarm_rollback::Deps::from_env(&Env::from_process())
        .await
        .context("cold start of alarm-rollback")?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        alarm_rollback::handler(&deps, event)
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
