//! `safeship status`: for each group the policy guards, what is deploying now, the last
//! success (and whether it is still inside the bake window an alarm would revert it in), and
//! which guard rails watch it, and its latest guard events (from the history the notifier
//! keeps, `SAFESHIP_GUARD_HISTORY_TABLE`).

use clap::Args;
use safeship::env::Env;
use serde_json::json;

use crate::policy::{explained, GroupExplained};
use crate::{Error, Exit, Outcome};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this CodeDeploy application.
    #[arg(long)]
    application: Option<String>,
    /// Only this deployment group (with --application).
    #[arg(long, requires = "application")]
    group: Option<String>,
    /// How many of each group's latest guard events to show.
    #[arg(long, default_value_t = LATEST, value_parser = clap::value_parser!(i32).range(0..=100))]
    events: i32,
}

/// How many guard events `status` shows per group unless told.
const LATEST: i32 = 5;

/// The guard rails on one line: what would act, and on what.
pub fn guarded_by(g: &GroupExplained) -> String {
    let mut parts = Vec::new();
    match &g.unchecked {
        None => parts.push(format!("{} smoke checks", g.smoke_checks.len())),
        Some(why) => parts.push(why.clone()),
    }
    if !g.rollback_alarms.is_empty() {
        parts.push(format!("rollback on {}", g.rollback_alarms.join(", ")));
    }
    if !g.feature_flags.is_empty() {
        parts.push(format!("flags {}", g.feature_flags.join("; ")));
    }
    if let Some(s) = &g.snapshot {
        parts.push(format!("snapshot of {s}"));
    }
    if !g.integrity.is_empty() {
        parts.push(format!("integrity of {}", g.integrity.join(", ")));
    }
    parts.join("; ")
}

pub async fn run(env: &Env, args: StatusArgs) -> Result<Outcome, Error> {
    let common = safeship::runtime::Common::load("safeship-cli", env).await?;
    let codedeploy = safeship::aws_client!(aws_sdk_codedeploy, &common.sdk);
    let history = env.optional("SAFESHIP_GUARD_HISTORY_TABLE").map(|t| {
        (
            safeship::aws_client!(aws_sdk_dynamodb, &common.sdk),
            t.to_owned(),
        )
    });
    let groups: Vec<GroupExplained> = explained(&common.policy)
        .into_iter()
        .filter(|g| {
            args.application
                .as_ref()
                .is_none_or(|a| &g.application == a)
        })
        .filter(|g| args.group.as_ref().is_none_or(|d| &g.deployment_group == d))
        .collect();
    if groups.is_empty() {
        return Err(Error::Usage(format!(
            "the policy guards no group{}{}",
            args.application
                .as_ref()
                .map(|a| format!(" of application {a}"))
                .unwrap_or_default(),
            args.group
                .as_ref()
                .map(|g| format!(" named {g}"))
                .unwrap_or_default()
        )));
    }
    let now = chrono::Utc::now();
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for g in &groups {
        let (app, group) = (g.application.as_str(), g.deployment_group.as_str());
        let flying = safeship::aws::codedeploy::deployments(
            &codedeploy,
            app,
            group,
            &alarm_rollback::IN_FLIGHT,
            None,
        )
        .await?;
        let day_ago = now - chrono::Duration::hours(24);
        let mut succeeded = safeship::aws::codedeploy::deployments(
            &codedeploy,
            app,
            group,
            &["Succeeded"],
            Some(day_ago),
        )
        .await?;
        succeeded.sort_by_key(|d| std::cmp::Reverse(d.complete_time));
        lines.push(format!("{app}/{group} ({})", g.environment));
        if flying.is_empty() {
            lines.push("  deploying: nothing in flight".into());
        }
        for d in &flying {
            let started = d
                .create_time
                .map(|t| format!(", created {}", t.format("%Y-%m-%d %H:%M:%SZ")))
                .unwrap_or_default();
            lines.push(format!("  deploying: {} ({}{started})", d.id, d.status));
        }
        let last = succeeded.first();
        if let Some(d) = last {
            let finished = d.complete_time.unwrap_or(now);
            let baking = g
                .bake_window_minutes
                .filter(|m| now - finished < chrono::Duration::minutes(i64::from(*m)));
            lines.push(format!(
                "  last success: {} at {}{}",
                d.id,
                finished.format("%Y-%m-%d %H:%M:%SZ"),
                baking
                    .map(|m| format!(" (inside the {m}-min bake window: an alarm reverts it)"))
                    .unwrap_or_default()
            ));
        }
        lines.push(format!("  guarded by: {}", guarded_by(g)));
        let events = match &history {
            Some((ddb, table)) if args.events > 0 => {
                crate::history::latest(
                    ddb,
                    table,
                    &deploy_notify::history::group_partition(app, group),
                    args.events,
                )
                .await?
            }
            _ => Vec::new(),
        };
        match (&history, events.is_empty()) {
            (None, _) => lines.push(
                "  latest guard events: not kept here (SAFESHIP_GUARD_HISTORY_TABLE is not set; the stack's GuardHistoryTable output names it)".into(),
            ),
            (Some(_), true) => lines.push("  latest guard events: none recorded".into()),
            (Some(_), false) => {
                lines.push("  latest guard events:".into());
                for e in &events {
                    lines.push(format!(
                        "    {}  {:<22} {}{}",
                        crate::history::short_time(&e.time),
                        e.kind,
                        e.headline,
                        e.deployment_id
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        out.push(json!({
            "latest-guard-events": events,
            "application": app, "deployment-group": group, "environment": g.environment,
            "in-flight": flying.iter().map(|d| json!({"id": d.id, "status": d.status, "created": d.create_time})).collect::<Vec<_>>(),
            "last-success": last.map(|d| json!({"id": d.id, "completed": d.complete_time})),
            "guard-rails": g,
        }));
    }
    Ok(Outcome {
        exit: Exit::Ok,
        summary: lines.join("\n"),
        json: json!({"groups": out}),
    })
}
