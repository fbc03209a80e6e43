//! The operator's CLI: the guard rails from a terminal, through the same library code as the
//! Lambdas (each function crate's library), configured by the same environment variables plus
//! the standard AWS profile and region chain.
//!
//! Every command returns an [`Outcome`]: a summary for people, the same facts as JSON for
//! scripts (`--json`), and an [`Exit`] code. Usage errors are found before any AWS call.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use safeship::env::Env;
use safeship::runtime::Failure;
use serde_json::Value;

pub mod check;
pub mod exit;
pub mod history;
pub mod integrity;
pub mod invoke;
pub mod lambda;
pub mod notify;
pub mod policy;
pub mod restore;
pub mod rollback;
pub mod snapshot;
pub mod status;

pub use exit::Exit;

const EXIT_CODES: &str = "Exit codes: 0 ok; 1 a check failed or a gate refused; 2 a usage or configuration error (nothing was called); 3 an AWS or network error.";

/// The guard rails from a terminal: the same code the safeship Lambdas run.
#[derive(Debug, Parser)]
#[command(name = "safeship", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Print the result as JSON (for scripts) instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// The policy file to use instead of the environment's policy source
    /// (SAFESHIP_POLICY_FILE, SAFESHIP_POLICY, SAFESHIP_POLICY_SSM_PARAMETER or SAFESHIP_POLICY_APPCONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What is deploying now in each guarded group, its last success, and its guard rails.
    #[command(after_help = "Example:\n  safeship status --application checkout")]
    Status(status::StatusArgs),
    /// Validate a policy, or explain what each deployment group gets.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Pre-deploy snapshots: take one, list them, or gate a migration on a fresh one.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Stop or revert a group's deployment and switch its flags off, as an alarm would.
    #[command(
        after_help = "Example:\n  safeship rollback --application checkout --group checkout-prod --reason \"5xx after 42\" --dry-run"
    )]
    Rollback(rollback::RollbackArgs),
    /// Switch AppConfig feature flags off, or back on after the fix.
    #[command(subcommand)]
    Flags(rollback::FlagsCommand),
    /// Run a group's smoke checks now, outside CodeDeploy (nothing is reported to it).
    #[command(
        after_help = "Example:\n  safeship check --application checkout --group checkout-prod --version 42 \\\n    --url-override http://checkout.internal=http://localhost:8081"
    )]
    Check(check::CheckArgs),
    /// The nightly integrity check, now.
    #[command(subcommand)]
    Integrity(IntegrityCommand),
    /// Functions not deployed through CodeDeploy: point an alias back.
    #[command(subcommand)]
    Lambda(LambdaCommand),
    /// Notifications: a test message to every configured channel.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Run one function's handler on an event file, here, as Lambda would.
    #[command(
        after_help = "Example:\n  safeship invoke alarm-rollback --event events/alarm-eventbridge-metric.json"
    )]
    Invoke(invoke::InvokeArgs),
    /// Print shell completions.
    #[command(
        after_help = "Example:\n  safeship completions bash > /etc/bash_completion.d/safeship"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum IntegrityCommand {
    /// Count every checked table and compare with the last run: exit 1 on any finding.
    #[command(after_help = "Example:\n  safeship integrity run --database checkout-db")]
    Run(integrity::IntegrityArgs),
}

#[derive(Debug, Subcommand)]
pub enum LambdaCommand {
    /// Point the alias at the version before it (or --to-version); stops a weighted shift.
    #[command(
        after_help = "Example:\n  safeship lambda rollback --function checkout-api --alias live"
    )]
    Rollback(lambda::LambdaRollbackArgs),
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message to Slack and email, as configured: exit 3 if a channel fails.
    #[command(after_help = "Example:\n  safeship notify test")]
    Test,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: every problem, where it is. Exit 1 when invalid.
    #[command(after_help = "Example:\n  safeship policy check examples/policy.yaml")]
    Check { file: PathBuf },
    /// What each group gets: hooks, alarms that roll it back, flags, snapshot, integrity.
    #[command(after_help = "Example:\n  safeship policy explain examples/policy.yaml")]
    Explain { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of a policy database (and, with --wait, wait until it is available).
    #[command(
        after_help = "Example:\n  safeship snapshot create --database checkout-db --reason \"migration 042\" --wait"
    )]
    Create(snapshot::CreateArgs),
    /// The database's snapshots that safeship made, newest first.
    #[command(after_help = "Example:\n  safeship snapshot list --database checkout-db")]
    List {
        #[arg(long)]
        database: String,
    },
    /// Delete safeship's snapshots past the database's retention (never its newest keep-newest).
    #[command(after_help = "Example:\n  safeship snapshot prune --database checkout-db --dry-run")]
    Prune {
        #[arg(long)]
        database: String,
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore the newest available pre-deploy snapshot (or --snapshot) into a new instance or cluster.
    #[command(
        after_help = "Example:\n  safeship snapshot restore --database checkout-db --to checkout-restore-drill"
    )]
    Restore {
        #[arg(long)]
        database: String,
        /// The new DB instance (or cluster) identifier.
        #[arg(long, value_name = "NEW-ID")]
        to: String,
        /// A snapshot of safeship's to restore instead of the newest.
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// The migration gate: exit 0 when an available snapshot is newer than --max-age, else 1.
    #[command(
        after_help = "Example:\n  safeship snapshot fresh --database checkout-db --max-age 30m && run-migrations"
    )]
    Fresh {
        #[arg(long)]
        database: String,
        /// How old the newest available snapshot may be (e.g. 30m, 2h).
        #[arg(long, value_parser = parse_duration)]
        max_age: Duration,
    },
}

/// What the guard rail the function names would be, as `invoke` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Function {
    TrafficHook,
    AlarmRollback,
    PredeploySnapshot,
    DeployNotify,
    IntegrityCheck,
}

/// `30m`, `45s`, `2h`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 30m or 2h: {e}"))
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the user gave is wrong; nothing was called.
    #[error("{0}")]
    Usage(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Snapshot(#[from] predeploy_snapshot::Error),
    #[error(transparent)]
    Hook(#[from] traffic_hook::Error),
    #[error(transparent)]
    Rollback(#[from] alarm_rollback::Error),
    #[error(transparent)]
    Notify(#[from] deploy_notify::Error),
    #[error(transparent)]
    Integrity(#[from] integrity_check::Error),
}

impl Error {
    /// The exit code this error ends the command with.
    #[must_use]
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage(_) | Error::Read { .. } => Exit::Usage,
            Error::Safeship(e) => exit::for_kind(e.kind()),
            Error::Snapshot(e) => exit::for_kind(e.kind()),
            Error::Hook(e) => exit::for_kind(e.kind()),
            Error::Rollback(e) => exit::for_kind(e.kind()),
            Error::Notify(e) => exit::for_kind(e.kind()),
            Error::Integrity(e) => exit::for_kind(e.kind()),
        }
    }
}

/// What a command found or did: for people, for scripts, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub exit: Exit,
    pub summary: String,
    pub json: Value,
}

/// Parses, runs and prints; the exit code for the process.
pub fn main(cli: Cli) -> std::process::ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("safeship: starting the async runtime: {e}");
            return Exit::Remote.into();
        }
    };
    let json = cli.global.json;
    match runtime.block_on(run(cli)) {
        Ok(outcome) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome.json).expect("JSON prints")
                );
            } else if !outcome.summary.is_empty() {
                println!("{}", outcome.summary.trim_end());
            }
            outcome.exit.into()
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": e.to_string(), "exit": e.exit().code()})
                );
            }
            eprintln!("safeship: {e}");
            e.exit().into()
        }
    }
}

/// Logs to stderr, quiet unless RUST_LOG asks: the terminal shows results, not traces.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<Outcome, Error> {
    let env = environment(&cli.global)?;
    match cli.command {
        Command::Status(args) => status::run(&env, args).await,
        Command::Policy(PolicyCommand::Check { file }) => policy::check(&file),
        Command::Policy(PolicyCommand::Explain { file }) => policy::explain(&file),
        Command::Snapshot(command) => snapshot::run(&env, command, cli.global.json).await,
        Command::Check(args) => check::run(&env, args).await,
        Command::Rollback(args) => rollback::rollback(&env, args).await,
        Command::Flags(command) => rollback::flags(&env, command).await,
        Command::Invoke(args) => invoke::run(&env, args).await,
        Command::Integrity(IntegrityCommand::Run(args)) => integrity::run(&env, args).await,
        Command::Notify(NotifyCommand::Test) => notify::test(&env).await,
        Command::Lambda(LambdaCommand::Rollback(args)) => lambda::rollback(&env, args).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "safeship",
                &mut out,
            );
            Ok(Outcome {
                exit: Exit::Ok,
                summary: String::from_utf8_lossy(&out).into_owned(),
                json: Value::String(String::from_utf8_lossy(&out).into_owned()),
            })
        }
    }
}

/// The process environment, with `--policy` in place of any other policy source.
fn environment(global: &Global) -> Result<Env, Error> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if let Some(file) = &global.policy {
        if !file.is_file() {
            return Err(Error::Usage(format!(
                "--policy {}: no such file",
                file.display()
            )));
        }
        vars.retain(|(k, _)| !safeship::config::POLICY_SOURCE_VARS.contains(&k.as_str()));
        vars.push((
            safeship::config::POLICY_FILE_VAR.to_owned(),
            file.display().to_string(),
        ));
    }
    Ok(Env::from_pairs(vars))
}
