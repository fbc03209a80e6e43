//! Baselines and history in DynamoDB (`SAFESHIP_INTEGRITY_TABLE`: partition key `pk`, sort key
//! `sk`, both strings; TTL attribute `expires_at`).
//!
//! - `<database>#table#<schema.table>` / `<run time>`: one table's count at one run (rows, whether
//!   estimated, NULLs per column). A `Query` newest-first with a `Limit` reads exactly the history
//!   the comparison needs, however many tables there are.
//! - `<database>#run` / `<run time>`: the run's report (JSON), for people and for "since when".
//!
//! DynamoDB rather than S3: every function already links its SDK (the package-size budget), the
//! run time as sort key makes a redelivered run overwrite its own items instead of adding more,
//! and TTL prunes old history without a job of ours.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::anomaly::TablePoint;
use crate::report::{Report, TableCount};
use crate::Error;

/// DynamoDB refuses items over 400 KB; a report bigger than this is stored without its tables
/// (each table's count is in its own item anyway).
const MAX_REPORT_BYTES: usize = 350_000;

#[derive(Debug, Clone)]
pub struct HistoryStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: chrono::Duration,
}

fn sort_key(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn run_key(database: &str) -> String {
    format!("{database}#run")
}

fn table_key(database: &str, table: &str) -> String {
    format!("{database}#table#{table}")
}

impl HistoryStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, days: u32) -> Self {
        HistoryStore {
            client,
            table: table.into(),
            retention: chrono::Duration::days(i64::from(days)),
        }
    }

    /// The newest run before `before` that counted something.
    pub async fn previous_run(
        &self,
        database: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk < :before")
            .expression_attribute_values(":pk", AttributeValue::S(run_key(database)))
            .expression_attribute_values(":before", AttributeValue::S(sort_key(before)))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| {
                Error::from(safeship::Error::aws(
                    "dynamodb:Query (previous run)",
                    format!("table {}", self.table),
                    e,
                ))
            })?;
        Ok(out
            .items
            .unwrap_or_default()
            .first()
            .and_then(|item| item.get("sk"))
            .and_then(|v| v.as_s().ok())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    /// A table's earlier counts before `before`, newest first, at most `limit`.
    pub async fn table_history(
        &self,
        database: &str,
        table: &str,
        before: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<TablePoint>, Error> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk < :before")
            .expression_attribute_values(":pk", AttributeValue::S(table_key(database, table)))
            .expression_attribute_values(":before", AttributeValue::S(sort_key(before)))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| {
                Error::from(safeship::Error::aws(
                    "dynamodb:Query (table history)",
                    format!("table {}", self.table),
                    e,
                ))
            })?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(point)
            .collect())
    }

    /// Stores this run: every counted table's item and the report. Writing the same run again
    /// overwrites the same items.
    pub async fn record(&self, report: &Report) -> Result<(), Error> {
        // Checked: a run time at the end of chrono's calendar keeps its history to that end.
        let expires_at = report
            .run_at
            .checked_add_signed(self.retention)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let expires = AttributeValue::N(expires_at.timestamp().to_string());
        let sk = AttributeValue::S(sort_key(report.run_at));
        let mut requests: Vec<WriteRequest> = report
            .tables
            .iter()
            .map(|t| {
                let mut item = table_item(t);
                item.insert(
                    "pk".into(),
                    AttributeValue::S(table_key(&report.database, &t.table)),
                );
                item.insert("sk".into(), sk.clone());
                item.insert("expires_at".into(), expires.clone());
                put(item)
            })
            .collect();
        let mut text = serde_json::to_string(report).expect("reports serialise");
        if text.len() > MAX_REPORT_BYTES {
            let mut trimmed = report.clone();
            trimmed.tables.clear();
            text = serde_json::to_string(&trimmed).expect("reports serialise");
        }
        requests.push(put(HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S(run_key(&report.database)),
            ),
            ("sk".to_owned(), sk.clone()),
            ("report".to_owned(), AttributeValue::S(text)),
            ("expires_at".to_owned(), expires.clone()),
        ])));
        for chunk in requests.chunks(25) {
            self.write_all(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// `BatchWriteItem`, resending what DynamoDB leaves unprocessed (it does under throttling).
    async fn write_all(&self, mut requests: Vec<WriteRequest>) -> Result<(), Error> {
        let mut pause = Duration::from_millis(50);
        for _ in 0..6 {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| {
                    Error::from(safeship::Error::aws(
                        "dynamodb:BatchWriteItem",
                        format!("table {}", self.table),
                        e,
                    ))
                })?;
            requests = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        Err(Error::Safeship(safeship::Error::unexpected(
            "dynamodb:BatchWriteItem",
            format!("table {}", self.table),
            format!(
                "{} item(s) still unprocessed after 6 attempts",
                requests.len()
            ),
        )))
    }
}

fn put(item: HashMap<String, AttributeValue>) -> WriteRequest {
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("an item is set"),
        )
        .build()
}

fn table_item(t: &TableCount) -> HashMap<String, AttributeValue> {
    let nulls: HashMap<String, AttributeValue> = t
        .nulls
        .iter()
        .map(|(c, n)| (c.clone(), AttributeValue::N(n.to_string())))
        .collect();
    HashMap::from([
        ("rows".to_owned(), AttributeValue::N(t.rows.to_string())),
        ("estimated".to_owned(), AttributeValue::Bool(t.estimated)),
        ("nulls".to_owned(), AttributeValue::M(nulls)),
    ])
}

fn point(item: &HashMap<String, AttributeValue>) -> Option<TablePoint> {
    let at = DateTime::parse_from_rfc3339(item.get("sk")?.as_s().ok()?)
        .ok()?
        .with_timezone(&Utc);
    Some(TablePoint {
        at,
        rows: item.get("rows")?.as_n().ok()?.parse().ok()?,
        estimated: item
            .get("estimated")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}
