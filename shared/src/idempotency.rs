//! Do each side effect once, however often EventBridge or SNS deliver the event.
//!
//! A DynamoDB table (partition key `pk`, string; TTL attribute `expires_at`) holds one item per
//! key. A delivery claims the key with a conditional `PutItem` (`attribute_not_exists(pk)`): the
//! winner works and records the outcome as `COMPLETED`; a later delivery gets that outcome back.
//! A claim left `IN_PROGRESS` by a crashed invocation can be taken over once its lease expires,
//! so a lost worker never blocks the retry for good.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The owning function's name: every item's key is `<function>#<key>`, so functions sharing
    /// a table never share a key.
    function: String,
    /// How long an in-progress claim holds before another delivery may take it over.
    lease: Duration,
    /// How long a record is kept (DynamoDB TTL deletes it after).
    retention: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This delivery owns the key: do the work, then `complete` it (or `release` on failure).
    Acquired,
    /// An earlier delivery finished; this is the outcome it recorded.
    Completed(serde_json::Value),
    /// Another delivery holds the key right now.
    InProgress { lease_until: DateTime<Utc> },
}

/// What [`IdempotencyStore::once`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Once<T> {
    /// The work ran in this delivery.
    Ran(T),
    /// An earlier delivery ran it; its recorded outcome.
    AlreadyDone(T),
    /// Another delivery is running it now; nothing was done here.
    InProgressElsewhere,
}

impl IdempotencyStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        function: impl Into<String>,
    ) -> Self {
        IdempotencyStore {
            client,
            table: table.into(),
            function: function.into(),
            lease: Duration::from_secs(15 * 60),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// The lease should outlast the longest invocation (Lambda's limit is 15 minutes).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub async fn claim(&self, key: &str) -> Result<Claim> {
        let now = Utc::now();
        let lease_until = now + self.lease;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.item_key(key)))
            .item("status", AttributeValue::S(IN_PROGRESS.into()))
            .item("lease_until", number(lease_until.timestamp()))
            .item("expires_at", number((now + self.retention).timestamp()))
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :in_progress AND lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":now", number(now.timestamp()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Acquired),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                self.current(key).await
            }
            Err(e) => Err(Error::aws(
                "dynamodb:PutItem (claim)",
                self.resource(key),
                e,
            )),
        }
    }

    /// Records the outcome; later deliveries get it back from `claim`.
    pub async fn complete(&self, key: &str, outcome: &serde_json::Value) -> Result<()> {
        let now = Utc::now();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.item_key(key)))
            .item("status", AttributeValue::S(COMPLETED.into()))
            .item("outcome", AttributeValue::S(outcome.to_string()))
            .item("completed_at", AttributeValue::S(now.to_rfc3339()))
            .item("expires_at", number((now + self.retention).timestamp()))
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb:PutItem (complete)", self.resource(key), e))?;
        Ok(())
    }

    /// Gives an in-progress claim back after a failure, so the retry can do the work.
    pub async fn release(&self, key: &str) -> Result<()> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.item_key(key)))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Already completed or gone: nothing of ours to release.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::aws(
                "dynamodb:DeleteItem (release)",
                self.resource(key),
                e,
            )),
        }
    }

    /// Runs `work` once per key. Its error releases the claim (so a retry runs it again) and is
    /// returned; its value is recorded and returned to every later delivery.
    pub async fn once<T, E, F, Fut>(&self, key: &str, work: F) -> std::result::Result<Once<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        match self.claim(key).await? {
            Claim::Completed(recorded) => {
                let value = serde_json::from_value(recorded).map_err(|e| {
                    Error::unexpected(
                        "dynamodb:GetItem",
                        self.resource(key),
                        format!("recorded outcome: {e}"),
                    )
                })?;
                Ok(Once::AlreadyDone(value))
            }
            Claim::InProgress { .. } => Ok(Once::InProgressElsewhere),
            Claim::Acquired => match work().await {
                Ok(value) => {
                    let recorded =
                        serde_json::to_value(&value).expect("outcomes serialise to JSON");
                    self.complete(key, &recorded).await?;
                    Ok(Once::Ran(value))
                }
                Err(e) => {
                    if let Err(release) = self.release(key).await {
                        tracing::error!(error = %release, key, "could not release the idempotency claim");
                    }
                    Err(e)
                }
            },
        }
    }

    async fn current(&self, key: &str) -> Result<Claim> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.item_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb:GetItem", self.resource(key), e))?;
        let Some(item) = out.item else {
            // Released between our put and this read: the other delivery failed and will retry.
            return Ok(Claim::InProgress {
                lease_until: Utc::now(),
            });
        };
        match text(&item, "status") {
            Some(COMPLETED) => {
                let raw = text(&item, "outcome").unwrap_or("null");
                let outcome = serde_json::from_str(raw).map_err(|e| {
                    Error::unexpected(
                        "dynamodb:GetItem",
                        self.resource(key),
                        format!("outcome is not JSON: {e}"),
                    )
                })?;
                Ok(Claim::Completed(outcome))
            }
            Some(IN_PROGRESS) => {
                let secs = item
                    .get("lease_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or_default();
                Ok(Claim::InProgress {
                    lease_until: DateTime::from_timestamp(secs, 0).unwrap_or_default(),
                })
            }
            other => Err(Error::unexpected(
                "dynamodb:GetItem",
                self.resource(key),
                format!("status is {other:?}, expected {IN_PROGRESS} or {COMPLETED}"),
            )),
        }
    }

    /// The item's partition key: the function's name, then the caller's key.
    #[must_use]
    pub fn item_key(&self, key: &str) -> String {
        format!("{}#{key}", self.function)
    }

    fn resource(&self, key: &str) -> String {
        format!("table {} key {}", self.table, self.item_key(key))
    }
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
