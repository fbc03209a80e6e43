use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use safeship::config::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    safeship::telemetry::init();
    let deps = traffic_hook::Deps::from_env(&Env::from_process())
        .await
        .context("cold start of traffic-hook")?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        traffic_hook::handler(&deps, event)
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
