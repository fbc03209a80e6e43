//! `safeship invoke`: one function's handler on an event file, in this process, with the
//! function's own cold start (its environment variables) and a Lambda-like deadline.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use lambda_runtime::{Context, LambdaEvent};
use safeship::env::Env;
use serde_json::Value;

use crate::{parse_duration, Error, Exit, Function, Outcome};

#[derive(Debug, Args)]
pub struct InvokeArgs {
    #[arg(value_enum)]
    function: Function,
    /// The event, as JSON (the samples are in events/).
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// The invocation's deadline, from now (Lambda's longest is 15m).
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    timeout: Duration,
}

pub async fn run(env: &Env, args: InvokeArgs) -> Result<Outcome, Error> {
    let text = std::fs::read_to_string(&args.event).map_err(|source| Error::Read {
        path: args.event.clone(),
        source,
    })?;
    let payload: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("--event {}: not JSON: {e}", args.event.display())))?;
    let mut context = Context::default();
    context.deadline = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
        + u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX);
    context.request_id = format!("safeship-cli-{}", std::process::id());
    let event = LambdaEvent::new(payload, context);
    let answer = match args.function {
        Function::TrafficHook => {
            let deps = traffic_hook::Deps::from_env(env).await?;
            serde_json::to_value(traffic_hook::handler(&deps, event).await?)
        }
        Function::AlarmRollback => {
            let deps = alarm_rollback::Deps::from_env(env).await?;
            serde_json::to_value(alarm_rollback::handler(&deps, event).await?)
        }
        Function::PredeploySnapshot => {
            let deps = predeploy_snapshot::Deps::from_env(env).await?;
            serde_json::to_value(predeploy_snapshot::handler(&deps, event).await?)
        }
        Function::DeployNotify => {
            let deps = deploy_notify::Deps::from_env(env).await?;
            Ok(deploy_notify::handler(&deps, event).await?)
        }
        Function::IntegrityCheck => {
            let mut deps = integrity_check::Deps::from_env(env).await?;
            // EMF on stdout feeds CloudWatch only in Lambda; here it would corrupt the answer.
            deps.metrics = safeship::metrics::MetricsSink::memory().0;
            Ok(integrity_check::handler(&deps, event).await?)
        }
    }
    .expect("an answer serialises");
    Ok(Outcome {
        exit: Exit::Ok,
        summary: serde_json::to_string_pretty(&answer).expect("JSON prints"),
        json: answer,
    })
}
