//! `safeship rollback` and `safeship flags`: alarm-rollback's own steps, asked for by a person.

use clap::{Args, Subcommand};
use safeship::env::Env;
use serde_json::json;

use crate::snapshot::table;
use crate::{Error, Exit, Outcome};

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The CodeDeploy application, as the policy names it.
    #[arg(long)]
    application: String,
    /// The deployment group, as the policy names it.
    #[arg(long)]
    group: String,
    /// The member account the group is deployed in (id or alias), for a hub guarding an
    /// organisation; with --region.
    #[arg(long, requires = "region")]
    account: Option<String>,
    /// The member account's region the group is deployed in.
    #[arg(long, requires = "account")]
    region: Option<String>,
    /// Why: kept in the guard events and the revert's description.
    #[arg(long, default_value = "rollback requested by hand")]
    reason: String,
    /// Say what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Switch feature flags off (what an alarm does).
    #[command(
        after_help = "Example:\n  safeship flags off --application checkout-flags --environment prod --profile release-flags new-checkout-flow"
    )]
    Off(FlagArgs),
    /// Switch feature flags back on, after the fix.
    #[command(
        after_help = "Example:\n  safeship flags on --application checkout-flags --environment prod --profile release-flags new-checkout-flow"
    )]
    On(FlagArgs),
}

#[derive(Debug, Args)]
pub struct FlagArgs {
    /// The AppConfig application (id).
    #[arg(long)]
    application: String,
    /// The AppConfig environment (id).
    #[arg(long)]
    environment: String,
    /// The feature-flag configuration profile (id).
    #[arg(long)]
    profile: String,
    /// The deployment strategy of the new version.
    #[arg(long, default_value = "AppConfig.AllAtOnce")]
    strategy: String,
    /// The flags.
    #[arg(required = true)]
    flags: Vec<String>,
}

/// Who is asking: `$USER`, as the guard events and AppConfig's descriptions name them.
fn requested_by(env: &Env) -> String {
    env.optional("USER").unwrap_or("an operator").to_owned()
}

pub async fn rollback(env: &Env, args: RollbackArgs) -> Result<Outcome, Error> {
    let env = if args.dry_run {
        env.with("SAFESHIP_DRY_RUN", "true")
    } else {
        env.clone()
    };
    let deps = alarm_rollback::Deps::from_env(&env).await?;
    // An alias is as good as the id at a terminal.
    let at = match (&args.account, &args.region) {
        (Some(account), Some(region)) => Some(safeship::policy::Place {
            account: deps
                .common
                .policy
                .member_account(account)
                .map_or_else(|| account.clone(), |(id, _)| id.to_owned()),
            region: region.clone(),
        }),
        _ => None,
    };
    let report = alarm_rollback::roll_back_by_hand(
        &deps,
        &args.application,
        &args.group,
        at.as_ref(),
        &requested_by(&env),
        &args.reason,
    )
    .await?;
    let rows: Vec<[String; 3]> = report
        .actions
        .iter()
        .map(|a| {
            [
                a.action.clone(),
                if a.succeeded { "ok" } else { "FAILED" }.to_owned(),
                a.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut summary = table(&["ACTION", "RESULT", "DETAIL"], &rows);
    if report.dry_run {
        summary.push_str("\ndry run: nothing was changed");
    }
    Ok(Outcome {
        exit: Exit::Ok,
        summary,
        json: serde_json::to_value(&report).expect("a report serialises"),
    })
}

pub async fn flags(env: &Env, command: FlagsCommand) -> Result<Outcome, Error> {
    let (args, enabled) = match command {
        FlagsCommand::Off(args) => (args, false),
        FlagsCommand::On(args) => (args, true),
    };
    let target = safeship::policy::FeatureFlagTarget {
        application: args.application,
        environment: args.environment,
        profile: args.profile,
        flags: args.flags,
        strategy: args.strategy,
    };
    let deps = alarm_rollback::Deps::from_env(env).await?;
    let set = alarm_rollback::set_flags(&deps, &target, enabled, &requested_by(env)).await?;
    let state = if enabled { "on" } else { "off" };
    let summary = if set.switched.is_empty() {
        format!("flags {}: {}", target.flags.join(", "), set.detail)
    } else {
        format!(
            "switched {state}: {} — {}",
            set.switched.join(", "),
            set.detail
        )
    };
    // The switch stands; that nobody was told is an AWS error to see, not a silent success.
    let (exit, summary) = match &set.unannounced {
        Some(why) => (
            Exit::Remote,
            format!("{summary}\nbut its guard event could not be published, so no one was notified: {why}"),
        ),
        None => (Exit::Ok, summary),
    };
    Ok(Outcome {
        exit,
        summary,
        json: json!({"state": state, "result": set}),
    })
}
