//! The guard events' history the notifier keeps (`deploy_notify::history`), read back for
//! `safeship status`: a group's latest events, newest first.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Error;

/// One recorded guard event, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Recorded {
    pub time: String,
    pub kind: String,
    pub severity: String,
    pub deployment_id: Option<String>,
    /// What the notifier's message said, in a line (already scrubbed).
    pub headline: String,
    pub id: String,
}

/// The latest `limit` events of `partition` in `table`, newest first.
pub async fn latest(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    partition: &str,
    limit: i32,
) -> Result<Vec<Recorded>, Error> {
    let out = ddb
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(partition.to_owned()))
        .scan_index_forward(false)
        .limit(limit)
        .send()
        .await
        .map_err(|e| {
            safeship::Error::aws(
                "dynamodb:Query",
                format!("guard history table {table} ({partition})"),
                e,
            )
        })?;
    let text = |item: &HashMap<String, AttributeValue>, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    Ok(out
        .items()
        .iter()
        .map(|item| Recorded {
            time: text(item, "time"),
            kind: text(item, "kind"),
            severity: text(item, "severity"),
            deployment_id: item
                .get("deployment_id")
                .and_then(|v| v.as_s().ok())
                .cloned(),
            headline: text(item, "headline"),
            id: text(item, "id"),
        })
        .collect())
}

/// An event's time as `status` prints it.
pub fn short_time(time: &str) -> String {
    DateTime::parse_from_rfc3339(time).map_or_else(
        |_| time.to_owned(),
        |t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%SZ")
                .to_string()
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_status_prints_them() {
        assert_eq!(
            super::short_time("2026-12-03T08:00:00.123Z"),
            "2026-12-03 08:00:00Z"
        );
        assert_eq!(super::short_time("yesterday"), "yesterday");
    }
}
