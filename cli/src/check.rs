//! `safeship check`: a group's smoke checks now, with the traffic hook's own code; nothing is
//! reported to CodeDeploy.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use safeship::env::Env;
use serde_json::json;
use traffic_hook::{HookStatus, Target};

use crate::snapshot::table;
use crate::{parse_duration, Error, Exit, Outcome};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The CodeDeploy application, as the policy names it.
    #[arg(long)]
    application: String,
    /// The deployment group, as the policy names it.
    #[arg(long)]
    group: String,
    /// The version under test, for checks that expect `{{target-version}}`.
    #[arg(long)]
    version: Option<String>,
    /// For Lambda checks: the function whose version is under test.
    #[arg(long)]
    function: Option<String>,
    /// Check another address than the policy's: FROM=TO replaces a URL prefix (repeatable).
    #[arg(long = "url-override", value_name = "FROM=TO", value_parser = parse_override)]
    url_overrides: Vec<(String, String)>,
    /// The longest the checks may take.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    timeout: Duration,
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_owned(), to.to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not FROM=TO (a URL prefix and its replacement)"
        )),
    }
}

pub async fn run(env: &Env, args: CheckArgs) -> Result<Outcome, Error> {
    let mut deps = traffic_hook::Deps::from_env(env).await?;
    if deps
        .common
        .policy
        .group(&args.application, &args.group)
        .is_none()
    {
        return Err(Error::Usage(format!(
            "{}/{} is not a deployment group of the policy",
            args.application, args.group
        )));
    }
    if !args.url_overrides.is_empty() {
        let mut policy = (*deps.common.policy).clone();
        let hook = policy
            .applications
            .get_mut(&args.application)
            .and_then(|a| a.deployment_groups.get_mut(&args.group))
            .and_then(|g| g.traffic_hook.as_mut());
        let mut replaced = 0;
        for check in hook.into_iter().flat_map(|h| h.http_checks.iter_mut()) {
            for (from, to) in &args.url_overrides {
                if let Some(rest) = check.url.strip_prefix(from.as_str()) {
                    check.url = format!("{to}{rest}");
                    replaced += 1;
                    break;
                }
            }
        }
        if replaced == 0 {
            return Err(Error::Usage(
                "--url-override: no HTTP check's URL starts with any FROM given".into(),
            ));
        }
        deps.common.policy = Arc::new(policy);
    }
    let target = Target {
        deployment_id: "(safeship check)".into(),
        application: args.application.clone(),
        deployment_group: args.group.clone(),
        compute_platform: None,
        target_version: args.version,
        lambda_function: args.function,
        description: None,
    };
    let (verdict, results) =
        traffic_hook::check_now(&deps, &target, tokio::time::Instant::now() + args.timeout).await;
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                if r.passed { "pass" } else { "FAIL" }.to_owned(),
                format!("{} ms", r.duration_ms),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let status = match verdict.status {
        HookStatus::Succeeded => "passed",
        HookStatus::Failed => "FAILED",
    };
    let mut summary = format!(
        "{}/{}: {status}: {}",
        args.application, args.group, verdict.reason
    );
    if !rows.is_empty() {
        summary = format!(
            "{}\n{summary}",
            table(&["CHECK", "RESULT", "TIME", "DETAIL"], &rows)
        );
    }
    Ok(Outcome {
        exit: match verdict.status {
            HookStatus::Succeeded => Exit::Ok,
            HookStatus::Failed => Exit::Refused,
        },
        summary,
        json: json!({
            "application": args.application, "deployment-group": args.group,
            "status": verdict.status, "reason": verdict.reason, "checks": results,
        }),
    })
}
