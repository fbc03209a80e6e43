//! Snapshots (insta) of what each kind of event looks like on Slack (Block Kit) and by email.
//! A change to a message shows up as a reviewable diff of these files.

use chrono::{DateTime, Utc};
use deploy_notify::{message, render};
use safeship::event::{AlarmKind, AlarmState, DeploymentState, DeploymentStateChange};
use safeship::guard::{
    ActionResult, AlarmSummary, CheckResult, Guard, GuardEvent, IntegrityFinding, Outcome,
};
use safeship::policy::Severity;

fn at() -> DateTime<Utc> {
    "2026-11-20T10:12:40.123Z".parse().unwrap()
}

fn alarm() -> AlarmSummary {
    AlarmSummary {
        name: "checkout-prod-5xx-rate".into(),
        arn: Some("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:checkout-prod-5xx-rate".into()),
        kind: AlarmKind::Metric,
        state: AlarmState::Alarm,
        reason: "Threshold Crossed: 1 out of the last 1 datapoints [48.0 (20/11/26 10:11:00)] was greater than the threshold (25.0)".into(),
        state_changed_at: at(),
    }
}

fn check(name: &str, passed: bool, detail: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        passed,
        duration_ms: 42,
        detail: Some(detail.into()),
    }
}

fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome::HookPassed {
            lifecycle_event: Some("BeforeAllowTraffic".into()),
            checks: vec![check("health", true, "20 requests, p50 3 ms, p95 9 ms")],
        },
        Outcome::HookFailed {
            lifecycle_event: Some("BeforeAllowTraffic".into()),
            reason: "health: /version is \"3\", expected \"4\" (request 1)".into(),
            checks: vec![
                check("health", false, "/version is \"3\", expected \"4\" (request 1)"),
                check("alarms", true, "1 alarm(s) not in ALARM"),
            ],
        },
        Outcome::RollbackPerformed {
            alarm: alarm(),
            actions: vec![
                ActionResult {
                    action: "stop-deployment d-ABCDEF123 (with rollback)".into(),
                    succeeded: true,
                    detail: Some("stop requested with rollback: Pending".into()),
                },
                ActionResult {
                    action: "flags off checkout-flags/prod/release-flags: new-checkout-flow".into(),
                    succeeded: false,
                    detail: Some("appconfig:StartDeployment ... failed: AccessDenied".into()),
                },
            ],
        },
        Outcome::NothingToRollBack {
            alarm: alarm(),
            reason: "no deployment in flight; the last success d-OLD finished more than the 60-minute bake window before the alarm".into(),
        },
        Outcome::FlagsSwitchedOff {
            alarm: alarm(),
            profile: "checkout-flags/prod/release-flags".into(),
            flags: vec!["new-checkout-flow".into()],
            version: Some(7),
        },
        Outcome::FlagsSwitchedByHand {
            profile: "checkout-flags/prod/release-flags".into(),
            flags: vec!["new-checkout-flow".into()],
            enabled: true,
            version: Some(3),
            by: "alice".into(),
        },
        Outcome::SnapshotStarted {
            database: "checkout-db".into(),
            snapshot_id: "safeship-checkout-db-d-abcdef123".into(),
        },
        Outcome::SnapshotAvailable {
            database: "checkout-db".into(),
            snapshot_id: "safeship-checkout-db-d-abcdef123".into(),
            duration_ms: 184_000,
        },
        Outcome::SnapshotFailed {
            database: "checkout-db".into(),
            snapshot_id: Some("safeship-checkout-db-d-abcdef123".into()),
            error: "rds:CreateDBSnapshot on DB instance checkout-prod-db failed: SnapshotQuotaExceeded".into(),
        },
        Outcome::SnapshotsPruned {
            database: "checkout-db".into(),
            snapshot_ids: vec!["safeship-checkout-db-d-old000001".into()],
        },
        Outcome::SnapshotQuotaWarning {
            manual_snapshots: 92,
            quota: 100,
        },
        Outcome::IntegrityAnomaly {
            database: "checkout-db".into(),
            table: "orders".into(),
            column: Some("customer_id".into()),
            description: "null rate 4.1% over the 1% bound".into(),
            since_deployments: vec!["d-ABCDEF123".into()],
            severity: Severity::Failure,
        },
        Outcome::IntegrityAnomaly {
            database: "checkout-db".into(),
            table: "public.orders".into(),
            column: None,
            description: "rows grew 80.0% since the last run (1000 → 1800), over the 50% bound".into(),
            since_deployments: vec![],
            severity: Severity::Warning,
        },
        Outcome::IntegrityFindings {
            database: "checkout-db".into(),
            findings: vec![
                IntegrityFinding {
                    table: "public.orders".into(),
                    column: None,
                    description: "rows fell 5.0% since the last run (2000 → 1900), over the 1% bound".into(),
                    severity: Severity::Failure,
                },
                IntegrityFinding {
                    table: "public.orders".into(),
                    column: Some("customer_id".into()),
                    description: "customer_id holds 12 NULL(s), where none may be".into(),
                    severity: Severity::Failure,
                },
                IntegrityFinding {
                    table: "orphaned_order_items".into(),
                    column: None,
                    description: "found 40 row(s), where none may be".into(),
                    severity: Severity::Warning,
                },
            ],
            more: 2,
            since_deployments: vec!["d-ABCDEF123".into()],
            problems: Some("public.events: statement timeout".into()),
        },
        Outcome::IntegrityRunFailed {
            database: "checkout-db".into(),
            error: "connecting to checkout-prod-db:5432: connection refused".into(),
        },
    ]
}

#[test]
fn every_guard_event_kind_on_slack_and_by_email() {
    for outcome in outcomes() {
        // An integrity anomaly of warning severity reads differently: its own snapshot.
        let kind = match &outcome {
            Outcome::IntegrityAnomaly {
                severity: Severity::Warning,
                ..
            } => "integrity-warning",
            other => other.kind(),
        };
        let event = GuardEvent {
            version: safeship::guard::GUARD_EVENT_VERSION,
            id: format!("test:{kind}"),
            time: at(),
            guard: Guard::AlarmRollback,
            application: Some("checkout".into()),
            deployment_group: Some("checkout-prod".into()),
            deployment_id: Some("d-ABCDEF123".into()),
            dry_run: false,
            outcome,
            account: None,
            region: None,
        };
        let m = message::from_guard(&event, Some("prod"), "eu-west-1");
        insta::assert_json_snapshot!(format!("slack-{kind}"), render::slack(&m));
        insta::assert_snapshot!(
            format!("email-{kind}"),
            format!(
                "Subject: {}\n\n{}",
                render::email_subject(&m),
                render::email_body(&m)
            )
        );
    }
}

#[test]
fn every_deployment_state_on_slack() {
    for state in [
        DeploymentState::Start,
        DeploymentState::Ready,
        DeploymentState::Success,
        DeploymentState::Stop,
        DeploymentState::Failure,
    ] {
        let change = DeploymentStateChange {
            application: "checkout".into(),
            deployment_group: "checkout-prod".into(),
            deployment_id: "d-ABCDEF123".into(),
            state,
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
            time: Some(at()),
        };
        let m = message::from_deployment(&change, Some("prod"), "us-east-1");
        insta::assert_json_snapshot!(
            format!(
                "slack-deployment-{}",
                message::state_name(state).to_lowercase()
            ),
            render::slack(&m)
        );
    }
}
