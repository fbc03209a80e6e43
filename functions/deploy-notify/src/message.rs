//! What a notification says, whatever the channel: built from a CodeDeploy state change or a
//! guard event, then rendered as Slack Block Kit or as an email. Pure functions of data.

use safeship::event::{AlarmState, AlarmStateChange, DeploymentState, DeploymentStateChange};
use safeship::guard::{GuardEvent, Outcome};
use safeship::policy::Severity;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub severity: Severity,
    pub emoji: &'static str,
    /// e.g. `Deployment failed`, `Rolled back after an alarm`.
    pub headline: String,
    pub application: Option<String>,
    pub deployment_group: Option<String>,
    pub deployment_id: Option<String>,
    pub environment: Option<String>,
    /// What set it off: the CodeDeploy state change, the alarm, the hook.
    pub trigger: String,
    /// The why: the alarm's reason, the failing expectation, the RDS error.
    pub reason: Option<String>,
    /// Further facts, one line each (actions taken, pruned snapshots, …).
    pub details: Vec<String>,
    pub snapshot_id: Option<String>,
    /// The member account and region, for a hub guarding an organisation: `payments-prod
    /// (111122223333), eu-west-1`. None at the hub's own account.
    pub account: Option<String>,
    pub links: Vec<Link>,
    pub dry_run: bool,
}

/// Where the AWS console lives for a region (China and GovCloud have their own domains).
fn console(region: &str) -> String {
    if region.starts_with("cn-") {
        "https://console.amazonaws.cn".into()
    } else if region.starts_with("us-gov-") {
        "https://console.amazonaws-us-gov.com".into()
    } else {
        format!("https://{region}.console.aws.amazon.com")
    }
}

pub fn deployment_link(region: &str, deployment_id: &str) -> Link {
    Link {
        label: format!("Deployment {deployment_id}"),
        url: format!(
            "{}/codesuite/codedeploy/deployments/{deployment_id}?region={region}",
            console(region)
        ),
    }
}

pub fn alarm_link(region: &str, alarm_name: &str) -> Link {
    Link {
        label: format!("Alarm {alarm_name}"),
        url: format!(
            "{}/cloudwatch/home?region={region}#alarmsV2:alarm/{}",
            console(region),
            percent_encode(alarm_name)
        ),
    }
}

/// Percent-encoding for a URL fragment: unreserved characters stay, the rest are escaped.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn deployment_severity(state: DeploymentState) -> Severity {
    match state {
        DeploymentState::Start | DeploymentState::Ready | DeploymentState::Success => {
            Severity::Info
        }
        DeploymentState::Stop => Severity::Warning,
        DeploymentState::Failure => Severity::Failure,
    }
}

pub fn from_deployment(
    d: &DeploymentStateChange,
    environment: Option<&str>,
    region: &str,
) -> Message {
    let (emoji, headline) = match d.state {
        DeploymentState::Start => (":rocket:", "Deployment started"),
        DeploymentState::Ready => (":hourglass_flowing_sand:", "Deployment ready for traffic"),
        DeploymentState::Success => (":white_check_mark:", "Deployment succeeded"),
        DeploymentState::Stop => (":octagonal_sign:", "Deployment stopped"),
        DeploymentState::Failure => (":x:", "Deployment failed"),
    };
    let region = d.region.as_deref().unwrap_or(region);
    Message {
        severity: deployment_severity(d.state),
        emoji,
        headline: headline.into(),
        application: Some(d.application.clone()),
        deployment_group: Some(d.deployment_group.clone()),
        deployment_id: Some(d.deployment_id.clone()),
        environment: environment.map(str::to_owned),
        trigger: format!("CodeDeploy state change {}", state_name(d.state)),
        reason: None,
        details: vec![],
        snapshot_id: None,
        account: None,
        links: vec![deployment_link(region, &d.deployment_id)],
        dry_run: false,
    }
}

/// A service's deployments in the ECS console. The pattern is the console's own (AWS documents
/// only the way there by clicks).
pub fn ecs_deployments_link(region: &str, cluster: &str, service: &str) -> Link {
    Link {
        label: format!("Deployments of {cluster}/{service}"),
        url: format!(
            "{}/ecs/v2/clusters/{}/services/{}/deployments?region={region}",
            console(region),
            percent_encode(cluster),
            percent_encode(service)
        ),
    }
}

/// An ECS service deployment's state change: in progress (or rolling back, in the reason's
/// words), completed, failed.
pub fn from_ecs_deployment(
    d: &safeship::event::EcsDeploymentStateChange,
    environment: Option<&str>,
) -> Message {
    use safeship::event::EcsDeploymentState;
    let (severity, emoji, headline) = match (d.state, d.rolling_back) {
        (EcsDeploymentState::InProgress, true) => {
            (Severity::Warning, ":rewind:", "ECS deployment rolling back")
        }
        (EcsDeploymentState::InProgress, false) => {
            (Severity::Info, ":rocket:", "ECS deployment started")
        }
        (EcsDeploymentState::Completed, _) => (
            Severity::Info,
            ":white_check_mark:",
            "ECS deployment completed",
        ),
        (EcsDeploymentState::Failed, _) => (Severity::Failure, ":x:", "ECS deployment failed"),
    };
    Message {
        severity,
        emoji,
        headline: headline.into(),
        application: Some(d.cluster.clone()),
        deployment_group: Some(d.service.clone()),
        deployment_id: Some(d.deployment_id.clone()),
        environment: environment.map(str::to_owned),
        trigger: format!("ECS Deployment State Change {}", d.state.event_name()),
        reason: d.reason.clone(),
        details: vec![],
        snapshot_id: None,
        account: None,
        links: vec![ecs_deployments_link(&d.region, &d.cluster, &d.service)],
        dry_run: false,
    }
}

/// CodeDeploy's account of a failed or stopped deployment: the error (code and message) as the
/// reason, the automatic rollback as a detail.
pub fn deployment_reason(
    info: &aws_sdk_codedeploy::types::DeploymentInfo,
) -> (Option<String>, Vec<String>) {
    let reason =
        info.error_information()
            .map(|e| match (e.code().map(|c| c.as_str()), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(message)) => message.to_owned(),
                (None, None) => "CodeDeploy gave no reason".to_owned(),
            });
    let mut details = Vec::new();
    if let Some(r) = info.rollback_info() {
        match (r.rollback_deployment_id(), r.rollback_message()) {
            (Some(id), Some(msg)) => details.push(format!("rollback {id}: {msg}")),
            (Some(id), None) => details.push(format!("rolled back by deployment {id}")),
            (None, Some(msg)) => details.push(format!("rollback: {msg}")),
            (None, None) => {}
        }
    }
    (reason, details)
}

/// One of safeship's own alarms (its functions' errors, throttles and duration, its dead-letter
/// queues, guard events not published) changing state: the operators of safeship, not of a
/// deployment, are told. `ALARM` is a failure of the guard rails themselves.
pub fn from_own_alarm(alarm: &AlarmStateChange, region: &str) -> Message {
    let (severity, emoji, headline) = match alarm.state {
        AlarmState::Alarm => (
            Severity::Failure,
            ":rotating_light:",
            "safeship itself is failing",
        ),
        AlarmState::InsufficientData => (
            Severity::Warning,
            ":grey_question:",
            "safeship's own alarm lacks data",
        ),
        AlarmState::Ok => (
            Severity::Info,
            ":white_check_mark:",
            "safeship's own alarm is OK again",
        ),
    };
    Message {
        severity,
        emoji,
        headline: headline.into(),
        application: None,
        deployment_group: None,
        deployment_id: None,
        environment: None,
        trigger: format!(
            "safeship's alarm {} went to {}",
            alarm.alarm_name,
            alarm.state.name()
        ),
        reason: Some(alarm.reason.clone()),
        details: vec![],
        snapshot_id: None,
        account: None,
        links: vec![alarm_link(
            alarm.region.as_deref().unwrap_or(region),
            &alarm.alarm_name,
        )],
        dry_run: false,
    }
}

pub fn from_guard(g: &GuardEvent, environment: Option<&str>, region: &str) -> Message {
    let mut m = Message {
        severity: g.outcome.severity(),
        emoji: ":shield:",
        headline: String::new(),
        application: g.application.clone(),
        deployment_group: g.deployment_group.clone(),
        deployment_id: g.deployment_id.clone(),
        environment: environment.map(str::to_owned),
        trigger: String::new(),
        reason: None,
        details: vec![],
        snapshot_id: None,
        account: None,
        links: g
            .deployment_id
            .iter()
            .map(|d| deployment_link(region, d))
            .collect(),
        dry_run: g.dry_run,
    };
    let alarm_trigger = |m: &mut Message, alarm: &safeship::guard::AlarmSummary| {
        m.trigger = format!("alarm {} went to {}", alarm.name, alarm.state.name());
        m.reason = Some(alarm.reason.clone());
        m.links.push(alarm_link(region, &alarm.name));
    };
    match &g.outcome {
        Outcome::HookPassed {
            lifecycle_event,
            checks,
        } => {
            m.emoji = ":large_green_circle:";
            m.headline = "Smoke checks passed".into();
            m.trigger = hook_trigger(lifecycle_event.as_deref());
            m.details = checks.iter().map(check_line).collect();
        }
        Outcome::HookFailed {
            lifecycle_event,
            reason,
            checks,
        } => {
            m.emoji = ":red_circle:";
            m.headline = "Smoke checks failed: traffic not shifted".into();
            m.trigger = hook_trigger(lifecycle_event.as_deref());
            m.reason = Some(reason.clone());
            m.details = checks.iter().map(check_line).collect();
        }
        Outcome::RollbackPerformed { alarm, actions } => {
            m.emoji = ":rewind:";
            m.headline = "Rolled back after an alarm".into();
            alarm_trigger(&mut m, alarm);
            m.details = actions
                .iter()
                .map(|a| {
                    format!(
                        "{} {}{}",
                        if a.succeeded { "✓" } else { "✗" },
                        a.action,
                        a.detail
                            .as_deref()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
        }
        Outcome::NothingToRollBack { alarm, reason } => {
            m.emoji = ":warning:";
            m.headline = "Alarm fired, nothing to roll back".into();
            alarm_trigger(&mut m, alarm);
            m.details = vec![reason.clone()];
        }
        Outcome::FlagsSwitchedOff {
            alarm,
            profile,
            flags,
            version,
        } => {
            m.emoji = ":triangular_flag_on_post:";
            m.headline = "Feature flags switched off".into();
            alarm_trigger(&mut m, alarm);
            m.details = vec![format!(
                "{} off in {profile}{}",
                flags.join(", "),
                version
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default()
            )];
        }
        Outcome::FlagsSwitchedByHand {
            profile,
            flags,
            enabled,
            version,
            by,
        } => {
            let state = if *enabled { "on" } else { "off" };
            m.emoji = if *enabled {
                ":large_green_circle:"
            } else {
                ":triangular_flag_on_post:"
            };
            m.headline = format!("Feature flags switched {state} by {by}");
            m.trigger = format!("safeship flags {state}, from a terminal");
            m.details = vec![format!(
                "{} {state} in {profile}{}",
                flags.join(", "),
                version
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default()
            )];
        }
        Outcome::SnapshotStarted {
            database,
            snapshot_id,
        } => {
            m.emoji = ":camera:";
            m.headline = format!("Snapshot of {database} started");
            m.trigger = "pre-deploy snapshot".into();
            m.snapshot_id = Some(snapshot_id.clone());
        }
        Outcome::SnapshotAvailable {
            database,
            snapshot_id,
            duration_ms,
        } => {
            m.emoji = ":floppy_disk:";
            m.headline = format!("Snapshot of {database} available");
            m.trigger = "pre-deploy snapshot".into();
            m.snapshot_id = Some(snapshot_id.clone());
            m.details = vec![format!("took {:.1} s", *duration_ms as f64 / 1000.0)];
        }
        Outcome::SnapshotFailed {
            database,
            snapshot_id,
            error,
        } => {
            m.emoji = ":x:";
            m.headline = format!("Snapshot of {database} failed: no destructive deploy");
            m.trigger = "pre-deploy snapshot".into();
            m.snapshot_id = snapshot_id.clone();
            m.reason = Some(error.clone());
        }
        Outcome::SnapshotsPruned {
            database,
            snapshot_ids,
        } => {
            m.emoji = ":broom:";
            m.headline = format!("Old snapshots of {database} pruned");
            m.trigger = "snapshot retention".into();
            m.details = snapshot_ids.clone();
        }
        Outcome::SnapshotQuotaWarning {
            manual_snapshots,
            quota,
        } => {
            m.emoji = ":warning:";
            m.headline = "Manual snapshots near the RDS quota".into();
            m.trigger = "snapshot retention".into();
            m.details = vec![format!(
                "{manual_snapshots} of {quota} manual snapshots used"
            )];
        }
        Outcome::IntegrityAnomaly {
            database,
            table,
            column,
            description,
            since_deployments,
            severity,
        } => {
            let warning = *severity < Severity::Failure;
            m.emoji = if warning { ":warning:" } else { ":mag:" };
            m.headline = format!(
                "Integrity {} in {database}.{table}{}",
                if warning { "warning" } else { "anomaly" },
                column
                    .as_deref()
                    .map(|c| format!(".{c}"))
                    .unwrap_or_default()
            );
            m.trigger = "nightly integrity check".into();
            m.reason = Some(description.clone());
            if !since_deployments.is_empty() {
                m.details = vec![format!(
                    "since deployment(s) {}",
                    since_deployments.join(", ")
                )];
            }
        }
        Outcome::IntegrityFindings {
            database,
            findings,
            more,
            since_deployments,
            problems,
        } => {
            let total = findings.len() + *more as usize;
            let warnings_only = findings.iter().all(|f| f.severity < Severity::Failure);
            m.emoji = if warnings_only && problems.is_none() {
                ":warning:"
            } else {
                ":mag:"
            };
            m.headline = format!(
                "Integrity check of {database}: {total} {}",
                if total == 1 { "finding" } else { "findings" }
            );
            m.trigger = "nightly integrity check".into();
            if !since_deployments.is_empty() {
                m.reason = Some(format!(
                    "{} {} completed since the last run",
                    if since_deployments.len() == 1 {
                        "deployment"
                    } else {
                        "deployments"
                    },
                    since_deployments.join(", ")
                ));
            }
            // Worst first, as the run listed them.
            m.details = findings.iter().map(finding_line).collect();
            if *more > 0 {
                m.details.push(format!("… and {more} more"));
            }
            if let Some(p) = problems {
                m.details.push(format!("not checked: {p}"));
            }
        }
        Outcome::IntegrityRunFailed { database, error } => {
            m.emoji = ":x:";
            m.headline = format!("Integrity check of {database} could not run");
            m.trigger = "nightly integrity check".into();
            m.reason = Some(error.clone());
        }
        // The handler ignores these before building a message; were one built, it says so.
        Outcome::Unknown => {
            m.emoji = ":grey_question:";
            m.headline = format!("A guard event of an unknown kind ({})", g.id);
        }
    }
    m
}

/// The state as CodeDeploy names it in its events.
pub fn state_name(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::Start => "START",
        DeploymentState::Success => "SUCCESS",
        DeploymentState::Failure => "FAILURE",
        DeploymentState::Stop => "STOP",
        DeploymentState::Ready => "READY",
    }
}

fn hook_trigger(lifecycle_event: Option<&str>) -> String {
    format!("{} hook", lifecycle_event.unwrap_or("traffic"))
}

fn finding_line(f: &safeship::guard::IntegrityFinding) -> String {
    format!(
        "{} {}{}: {}",
        if f.severity < Severity::Failure {
            "⚠"
        } else {
            "✗"
        },
        f.table,
        f.column
            .as_deref()
            .map(|c| format!(".{c}"))
            .unwrap_or_default(),
        f.description
    )
}

fn check_line(c: &safeship::guard::CheckResult) -> String {
    format!(
        "{} {} ({} ms){}",
        if c.passed { "✓" } else { "✗" },
        c.name,
        c.duration_ms,
        c.detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_links_follow_the_region_and_partition() {
        assert_eq!(
            deployment_link("eu-west-1", "d-1").url,
            "https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-1?region=eu-west-1"
        );
        assert!(deployment_link("cn-north-1", "d-1")
            .url
            .starts_with("https://console.amazonaws.cn/"));
        assert_eq!(
            alarm_link("us-east-1", "checkout 5xx/rate").url,
            "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/checkout%205xx%2Frate"
        );
    }
}
