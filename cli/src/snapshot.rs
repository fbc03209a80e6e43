//! `safeship snapshot create|list|fresh`: the pre-deploy snapshot's own code, by hand.

use std::time::Duration;

use clap::Args;
use predeploy_snapshot::{Deps, Job, SnapshotAnswer, SnapshotStatus};
use safeship::env::Env;
use serde_json::json;
use tokio::time::Instant;

use crate::{parse_duration, Error, Exit, Outcome, SnapshotCommand};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A key of the policy's `databases`.
    #[arg(long)]
    database: String,
    /// Why (kept as the snapshot's `safeship:reason` tag).
    #[arg(long)]
    reason: String,
    /// The deployment it guards: the snapshot is named after it, so a repeat finds it.
    #[arg(long)]
    deployment_id: Option<String>,
    /// Your own id for this request (a pipeline run): a repeat with it continues the same snapshot.
    #[arg(long)]
    request_id: Option<String>,
    /// Wait until the snapshot is available (or failed), with a progress indicator.
    #[arg(long)]
    wait: bool,
    /// The longest wait, with --wait.
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    timeout: Duration,
}

pub async fn run(env: &Env, command: SnapshotCommand, json: bool) -> Result<Outcome, Error> {
    let deps = Deps::from_env(env).await?;
    match command {
        SnapshotCommand::Create(args) => create(&deps, args, json).await,
        SnapshotCommand::List { database } => list(&deps, &database).await,
        SnapshotCommand::Fresh { database, max_age } => fresh(&deps, &database, max_age).await,
        SnapshotCommand::Prune { database, dry_run } => prune(&deps, &database, dry_run).await,
        SnapshotCommand::Restore {
            database,
            to,
            snapshot,
        } => restore(&deps, &database, &to, snapshot.as_deref()).await,
    }
}

async fn prune(deps: &Deps, database: &str, dry_run: bool) -> Result<Outcome, Error> {
    let done = predeploy_snapshot::prune_now(deps, database, dry_run).await?;
    let verb = if dry_run { "would prune" } else { "pruned" };
    let mut summary = if done.pruned.is_empty() {
        format!("{database}: nothing past its retention")
    } else {
        format!("{database}: {verb} {}", done.pruned.join(", "))
    };
    for f in &done.failed {
        summary.push_str(&format!(
            "
FAILED {f}"
        ));
    }
    Ok(Outcome {
        exit: if done.failed.is_empty() {
            Exit::Ok
        } else {
            Exit::Remote
        },
        summary,
        json: serde_json::to_value(&done).expect("serialises"),
    })
}

async fn restore(
    deps: &Deps,
    database: &str,
    to: &str,
    snapshot: Option<&str>,
) -> Result<Outcome, Error> {
    let db = deps.common.policy.databases.get(database).ok_or_else(|| {
        Error::Usage(format!(
            "--database {database}: not in the policy's databases (known: {})",
            deps.common
                .policy
                .databases
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let owned = predeploy_snapshot::owned_snapshots(deps, database).await?;
    let chosen = crate::restore::choose(&owned, snapshot)?;
    let restored = crate::restore::restore(&deps.rds, db, chosen, to).await?;
    let mut summary = format!(
        "restoring {} (deployment {}) into {} {}: {}",
        restored.snapshot_id, restored.deployment, restored.kind, restored.target, restored.status
    );
    if db.kind == safeship::policy::DatabaseKind::Cluster {
        summary.push_str("
a restored Aurora cluster has no instance yet: add one (rds create-db-instance --db-cluster-identifier …) to connect");
    }
    Ok(Outcome {
        exit: Exit::Ok,
        summary,
        json: serde_json::to_value(&restored).expect("serialises"),
    })
}

async fn create(deps: &Deps, args: CreateArgs, json: bool) -> Result<Outcome, Error> {
    let job = Job {
        database: args.database,
        reason: args.reason,
        deployment_id: args.deployment_id,
        request_id: args.request_id,
        application: None,
        git_sha: None,
    };
    // Without --wait: start it (or find it) and answer at once with how it stands.
    let wait = if args.wait {
        args.timeout
    } else {
        Duration::from_secs(5)
    };
    let progress = spinner(json, &format!("snapshot of {} …", job.database));
    let answer = predeploy_snapshot::take_and_wait(deps, &job, Instant::now() + wait).await;
    progress.finish_and_clear();
    let answer = answer?;
    let exit = match answer.status {
        SnapshotStatus::Failed => Exit::Refused,
        // --wait and still creating at the timeout: the wait failed, the snapshot goes on.
        SnapshotStatus::Creating if args.wait => Exit::Refused,
        _ => Exit::Ok,
    };
    Ok(Outcome {
        exit,
        summary: summary(&answer),
        json: serde_json::to_value(&answer).expect("an answer serialises"),
    })
}

fn summary(a: &SnapshotAnswer) -> String {
    let status = serde_json::to_value(a.status).expect("a status serialises");
    let mut text = format!(
        "{}: snapshot {} is {}",
        a.database,
        a.snapshot_id.as_deref().unwrap_or("(none)"),
        status.as_str().unwrap_or_default()
    );
    if let Some(detail) = &a.detail {
        text.push_str(&format!(" ({detail})"));
    }
    if !a.pruned.is_empty() {
        text.push_str(&format!("\npruned: {}", a.pruned.join(", ")));
    }
    text
}

async fn list(deps: &Deps, database: &str) -> Result<Outcome, Error> {
    let owned = predeploy_snapshot::owned_snapshots(deps, database).await?;
    let rows: Vec<[String; 4]> = owned
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.status.clone(),
                s.created
                    .map(|c| c.format("%Y-%m-%d %H:%M:%SZ").to_string())
                    .unwrap_or_else(|| "-".into()),
                s.deployment.clone(),
            ]
        })
        .collect();
    Ok(Outcome {
        exit: Exit::Ok,
        summary: if rows.is_empty() {
            format!("{database}: no snapshot of safeship's")
        } else {
            table(&["SNAPSHOT", "STATUS", "CREATED", "DEPLOYMENT"], &rows)
        },
        json: json!({"database": database, "snapshots": owned.iter().map(|s| json!({
            "id": s.id, "status": s.status, "created": s.created, "deployment": s.deployment,
        })).collect::<Vec<_>>()}),
    })
}

async fn fresh(deps: &Deps, database: &str, max_age: Duration) -> Result<Outcome, Error> {
    let minutes = u32::try_from(max_age.as_secs().div_ceil(60)).unwrap_or(u32::MAX);
    if minutes == 0 {
        return Err(Error::Usage("--max-age: must be at least 1m".into()));
    }
    let answer = predeploy_snapshot::fresh(
        deps,
        database,
        minutes,
        Instant::now() + Duration::from_secs(60),
    )
    .await?;
    Ok(Outcome {
        exit: if answer.status == SnapshotStatus::Fresh {
            Exit::Ok
        } else {
            Exit::Refused
        },
        summary: summary(&answer),
        json: serde_json::to_value(&answer).expect("an answer serialises"),
    })
}

/// A spinner on stderr; hidden for --json and when stderr is not a terminal.
pub(crate) fn spinner(json: bool, message: &str) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Columns padded to their widest cell.
pub(crate) fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_each_column_to_its_widest_cell() {
        let rows = [
            ["safeship-db-d-1".to_owned(), "available".to_owned()],
            ["s".to_owned(), "creating".to_owned()],
        ];
        assert_eq!(
            table(&["SNAPSHOT", "STATUS"], &rows),
            "SNAPSHOT         STATUS\nsafeship-db-d-1  available\ns                creating"
        );
    }
}
