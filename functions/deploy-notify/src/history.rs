//! The guard events' history: EventBridge keeps none a person can query, and the notifier sees
//! every guard event, so it records each one it handles (`SAFESHIP_GUARD_HISTORY_TABLE`, keys
//! `pk`/`sk`) for `safeship status` to read back, newest first (the CLI's `history` reads; this
//! crate only writes, so the function's role only puts).
//!
//! One item per event: `pk` `group#<application>/<group>` (or `database#<database>`, or
//! `safeship` for events about neither), `sk` `<time>#<event id>`; so a repeated delivery writes
//! the same item again, and a group's latest events are one `Query`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};
use safeship::guard::{GuardEvent, Outcome};

use crate::Error;

/// How long an event stays in the history (DynamoDB's TTL removes it after).
pub const KEPT_DAYS: i64 = 30;

/// Whose history an event belongs to.
pub fn partition(event: &GuardEvent) -> String {
    match (&event.application, &event.deployment_group) {
        (Some(app), Some(group)) => group_partition(app, group),
        _ => match &event.outcome {
            Outcome::SnapshotStarted { database, .. }
            | Outcome::SnapshotAvailable { database, .. }
            | Outcome::SnapshotFailed { database, .. }
            | Outcome::SnapshotsPruned { database, .. }
            | Outcome::IntegrityAnomaly { database, .. }
            | Outcome::IntegrityFindings { database, .. }
            | Outcome::IntegrityRunFailed { database, .. } => format!("database#{database}"),
            _ => "safeship".to_owned(),
        },
    }
}

/// The partition of a deployment group's events.
pub fn group_partition(application: &str, group: &str) -> String {
    format!("group#{application}/{group}")
}

/// Records `event` (with the `headline` its message had) in `table`.
pub async fn record(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    event: &GuardEvent,
    headline: &str,
) -> Result<(), Error> {
    let time = event.time.to_rfc3339_opts(SecondsFormat::Millis, true);
    let expires = (Utc::now() + chrono::Duration::days(KEPT_DAYS)).timestamp();
    let mut item = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(partition(event))),
        (
            "sk".to_owned(),
            AttributeValue::S(format!("{time}#{}", event.id)),
        ),
        ("time".to_owned(), AttributeValue::S(time)),
        ("id".to_owned(), AttributeValue::S(event.id.clone())),
        (
            "kind".to_owned(),
            AttributeValue::S(event.outcome.kind().to_owned()),
        ),
        (
            "severity".to_owned(),
            AttributeValue::S(format!("{:?}", event.outcome.severity()).to_lowercase()),
        ),
        (
            "headline".to_owned(),
            AttributeValue::S(headline.to_owned()),
        ),
        (
            "expires_at".to_owned(),
            AttributeValue::N(expires.to_string()),
        ),
    ]);
    if let Some(d) = &event.deployment_id {
        item.insert("deployment_id".to_owned(), AttributeValue::S(d.clone()));
    }
    ddb.put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| {
            safeship::Error::aws(
                "dynamodb:PutItem",
                format!("guard history table {table} (event {})", event.id),
                e,
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::guard::Guard;

    fn event(app: Option<&str>, outcome: Outcome) -> GuardEvent {
        GuardEvent {
            version: 1,
            id: "e-1".into(),
            time: "2026-12-03T08:00:00Z".parse().unwrap(),
            guard: Guard::IntegrityCheck,
            application: app.map(str::to_owned),
            deployment_group: app.map(|_| "checkout-prod".to_owned()),
            deployment_id: None,
            dry_run: false,
            outcome,
            account: None,
            region: None,
        }
    }

    #[test]
    fn an_event_belongs_to_its_group_else_its_database_else_safeship() {
        let failed = Outcome::IntegrityRunFailed {
            database: "checkout-db".into(),
            error: "x".into(),
        };
        assert_eq!(
            partition(&event(Some("checkout"), failed.clone())),
            "group#checkout/checkout-prod"
        );
        assert_eq!(partition(&event(None, failed)), "database#checkout-db");
        let quota = Outcome::SnapshotQuotaWarning {
            manual_snapshots: 1,
            quota: 2,
        };
        assert_eq!(partition(&event(None, quota)), "safeship");
    }
}
