//! Do each side effect once, however often EventBridge or SNS deliver the event.
//!
//! A DynamoDB table (partition key `pk`, string; TTL attribute `expires_at`) holds one item per
//! key. A delivery claims the key with a conditional `PutItem`: the winner works and records the
//! outcome as `COMPLETED`; a later delivery gets that outcome back.
//!
//! The claim is a short lease (`lease_until_ms`), renewed while the work runs and never past the
//! claiming invocation's own deadline. A claim whose lease has run out belongs to an invocation
//! that died (a crash, a timeout): the next delivery takes it over and does the work. A claim
//! whose lease is live belongs to an invocation still working: that is
//! [`Error::InProgressElsewhere`], an error, so Lambda delivers again later — never a success
//! that did nothing. (A fixed 15-minute lease made Lambda's retries, after about 1 and 3
//! minutes, answer "in progress" for a dead invocation.)

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// How long a claim holds without renewal: a dead invocation's claim is free this long after it
/// died, well inside Lambda's first retry (about a minute).
pub const LEASE: Duration = Duration::from_secs(30);

/// What a store call leaves of the invocation's time, to answer.
const STORE_SLACK: Duration = Duration::from_millis(250);

tokio::task_local! {
    /// The running invocation's deadline; claims made inside it never outlast it.
    static INVOCATION_DEADLINE: SystemTime;
}

/// Runs `work` as (part of) the invocation whose deadline is `deadline_ms` (milliseconds since
/// the epoch, as Lambda's context gives it; 0 means none): every claim made inside ends by then.
pub async fn within_invocation<F: Future>(deadline_ms: u64, work: F) -> F::Output {
    let deadline = if deadline_ms == 0 {
        SystemTime::now() + crate::model::LONGEST_RUN
    } else {
        SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms)
    };
    INVOCATION_DEADLINE.scope(deadline, work).await
}

#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The owning function's name: every item's key is `<function>#<key>`, so functions sharing
    /// a table never share a key.
    function: String,
    /// How long a claim holds before it must be renewed (see [`LEASE`]).
    lease: Duration,
    /// How long a record is kept (DynamoDB TTL deletes it after).
    retention: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This delivery owns the key under `owner`: do the work, then `complete` it (or `release`
    /// on failure). `held.taken_over`: a delivery that died held it before (its lease ran out),
    /// so some of the work may be done already; `held.since`: when the first of them claimed it.
    Acquired { owner: String, held: Held },
    /// An earlier delivery finished; this is the outcome it recorded.
    Completed(serde_json::Value),
    /// Another live delivery holds the key until its lease ends.
    InProgress { lease_until: DateTime<Utc> },
}

/// What the delivery that owns a key knows of the deliveries before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// A delivery that died held the key before: some of the work may be done already.
    pub taken_over: bool,
    /// When the key was first claimed: this delivery's claim, or the first dead delivery's.
    /// Kept across takeovers, so work with a budget (a hook's wait) counts from its real start.
    pub since: DateTime<Utc>,
}

/// What [`IdempotencyStore::once`] did. (Work another live invocation holds is an error,
/// [`Error::InProgressElsewhere`].)
#[derive(Debug, Clone, PartialEq)]
pub enum Once<T> {
    /// The work ran in this delivery.
    Ran(T),
    /// An earlier delivery ran it; its recorded outcome.
    AlreadyDone(T),
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
            lease: LEASE,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// A shorter (or longer) lease than [`LEASE`]; renewals come at a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The end of a lease taken or renewed now: `lease` from now, but never past the
    /// invocation's deadline (after it the invocation is gone).
    fn lease_end(&self, now: SystemTime) -> SystemTime {
        let end = now + self.lease;
        INVOCATION_DEADLINE
            .try_with(|deadline| end.min(*deadline))
            .unwrap_or(end)
    }

    /// Claims `key`: acquired (a fresh key, or one whose holder's lease ran out), completed, or
    /// held by a live invocation.
    pub async fn claim(&self, key: &str) -> Result<Claim> {
        // The holder may release between our put and our read: then the key is free, claim again.
        for _ in 0..3 {
            if let Some(claim) = self.try_claim(key).await? {
                return Ok(claim);
            }
        }
        Err(Error::unexpected(
            "dynamodb:PutItem (claim)",
            self.resource(key),
            "the claim kept changing hands between put and read",
        ))
    }

    async fn try_claim(&self, key: &str) -> Result<Option<Claim>> {
        let now = SystemTime::now();
        let owner = uuid::Uuid::new_v4().to_string();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.item_key(key)))
            .item("status", AttributeValue::S(IN_PROGRESS.into()))
            .item("owner", AttributeValue::S(owner.clone()))
            .item("lease_until_ms", millis(self.lease_end(now)))
            .item("first_claimed_ms", millis(now))
            .item("expires_at", seconds(now + self.retention))
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :in_progress AND lease_until_ms < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":now", millis(now))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(out) => {
                // The item replaced, if any, was a dead delivery's claim (the condition).
                let old = out.attributes.filter(|old| !old.is_empty());
                let first = old
                    .as_ref()
                    .and_then(|old| old.get("first_claimed_ms"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_millis);
                let since = match first {
                    Some(first) => {
                        self.keep_first_claim(key, &owner, first).await;
                        first
                    }
                    None => DateTime::<Utc>::from(now),
                };
                Ok(Some(Claim::Acquired {
                    owner,
                    held: Held {
                        taken_over: old.is_some(),
                        since,
                    },
                }))
            }
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

    /// Writes the dead delivery's first-claim time back onto `owner`'s claim (the put replaced
    /// it), so a later takeover still counts from it. Best effort: this delivery knows the time
    /// already; a failure only costs a takeover after this one the older start.
    async fn keep_first_claim(&self, key: &str, owner: &str, first: DateTime<Utc>) {
        let kept = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.item_key(key)))
            .update_expression("SET first_claimed_ms = :first")
            .condition_expression("#status = :in_progress AND #owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .expression_attribute_values(
                ":first",
                AttributeValue::N(first.timestamp_millis().to_string()),
            )
            .send()
            .await;
        if let Err(e) = kept {
            tracing::warn!(key = %self.item_key(key), error = %Error::aws("dynamodb:UpdateItem (keep first claim)", self.resource(key), e),
                "could not keep the first claim's time on the taken-over claim");
        }
    }

    /// Extends `owner`'s lease; `false` when the claim is no longer `owner`'s (it lapsed and
    /// another delivery took it over).
    pub async fn renew(&self, key: &str, owner: &str) -> Result<bool> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.item_key(key)))
            .update_expression("SET lease_until_ms = :until")
            .condition_expression("#status = :in_progress AND #owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .expression_attribute_values(":until", millis(self.lease_end(SystemTime::now())))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::aws(
                "dynamodb:UpdateItem (renew claim)",
                self.resource(key),
                e,
            )),
        }
    }

    /// Records the outcome; later deliveries get it back from `claim`.
    pub async fn complete(&self, key: &str, outcome: &serde_json::Value) -> Result<()> {
        let now = Utc::now();
        let expires = SystemTime::now() + self.retention;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.item_key(key)))
            .item("status", AttributeValue::S(COMPLETED.into()))
            .item("outcome", AttributeValue::S(outcome.to_string()))
            .item("completed_at", AttributeValue::S(now.to_rfc3339()))
            .item("expires_at", seconds(expires))
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb:PutItem (complete)", self.resource(key), e))?;
        Ok(())
    }

    /// Gives `owner`'s in-progress claim back after a failure, so the retry can do the work.
    pub async fn release(&self, key: &str, owner: &str) -> Result<()> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.item_key(key)))
            .condition_expression("#status = :in_progress AND #owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Completed, gone, or taken over: nothing of ours to release.
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

    /// Runs `work` once per key. Its error — or its panic — releases the claim (so a retry
    /// runs it again) and is returned; its value is recorded and returned to every later
    /// delivery. While it runs, the claim is renewed; if the claim is lost all the same (the
    /// store was unreachable for a whole lease and another delivery took over), the work is
    /// stopped with [`Error::ClaimLost`] rather than done twice.
    pub async fn once<T, E, F, Fut>(&self, key: &str, work: F) -> std::result::Result<Once<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.once_resuming(key, |_| work()).await
    }

    /// As [`Self::once`], telling `work` whether it resumes after a delivery that died holding
    /// the key (`taken_over`: some of the work may be done already; work that cannot be
    /// repeated blind, such as a message, looks first) and since when the key is held.
    pub async fn once_resuming<T, E, F, Fut>(
        &self,
        key: &str,
        work: F,
    ) -> std::result::Result<Once<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce(Held) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.once_claiming_by(key, None, work).await
    }

    /// As [`Self::once_resuming`], with the claim given up at `claim_by` (an error, as a store
    /// without an answer is): a hook keeps the time after it to report, whatever the store does.
    pub async fn once_claiming_by<T, E, F, Fut>(
        &self,
        key: &str,
        claim_by: Option<tokio::time::Instant>,
        work: F,
    ) -> std::result::Result<Once<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce(Held) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let claim = self.in_time("dynamodb:PutItem (claim)", key, self.claim(key));
        let claim = match claim_by {
            Some(by) => tokio::time::timeout_at(by, claim)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Aws {
                        action: "dynamodb:PutItem (claim)",
                        resource: self.resource(key),
                        code: None,
                        message: "no answer in the time the claim may take".into(),
                    })
                }),
            None => claim.await,
        };
        let owner = match claim? {
            Claim::Completed(recorded) => {
                let value = serde_json::from_value(recorded).map_err(|e| {
                    Error::unexpected(
                        "dynamodb:GetItem",
                        self.resource(key),
                        format!("recorded outcome: {e}"),
                    )
                })?;
                return Ok(Once::AlreadyDone(value));
            }
            Claim::InProgress { lease_until } => {
                tracing::warn!(key = %self.item_key(key), %lease_until,
                    "another live invocation holds this work: failing this delivery so it is retried");
                return Err(Error::InProgressElsewhere {
                    resource: self.resource(key),
                    held_until: lease_until,
                }
                .into());
            }
            Claim::Acquired { owner, held } => {
                if held.taken_over {
                    tracing::warn!(key = %self.item_key(key), since = %held.since,
                        "resuming work a delivery that died had claimed: some of it may be done");
                }
                (owner, held)
            }
        };
        let (owner, held) = owner;
        let outcome = self
            .holding(key, &owner, AssertUnwindSafe(work(held)).catch_unwind())
            .await?;
        let failure = match outcome {
            None => Error::Unfinished {
                resource: self.resource(key),
                waiting: crate::aws::in_flight::waiting(),
            }
            .into(),
            Some(Ok(Ok(value))) => {
                let recorded = serde_json::to_value(&value).expect("outcomes serialise to JSON");
                self.in_time(
                    "dynamodb:PutItem (complete)",
                    key,
                    self.complete(key, &recorded),
                )
                .await?;
                return Ok(Once::Ran(value));
            }
            Some(Ok(Err(e))) => e,
            Some(Err(panic)) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(key = %self.item_key(key), %message, "once-only work panicked");
                Error::Panicked {
                    resource: self.resource(key),
                    message,
                }
                .into()
            }
        };
        let released = self.in_time(
            "dynamodb:DeleteItem (release)",
            key,
            self.release(key, &owner),
        );
        if let Err(release) = released.await {
            tracing::error!(error = %release, key, "could not release the idempotency claim");
        }
        Err(failure)
    }

    /// `call` cut off shortly before the invocation's deadline: a hanging table must not keep
    /// the invocation from answering (its claim then lapses and the retry takes over).
    async fn in_time<T>(
        &self,
        action: &'static str,
        key: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let Ok(deadline) = INVOCATION_DEADLINE.try_with(|d| *d) else {
            return call.await;
        };
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(STORE_SLACK);
        tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
            Err(Error::Aws {
                action,
                resource: self.resource(key),
                code: None,
                message: "no answer before the invocation's deadline".into(),
            })
        })
    }

    /// Drives `work` to its end while renewing `owner`'s lease every third of it. A renewal
    /// that fails is tried again at the next one (the lease still runs); a claim found taken
    /// over stops the work. Work still running shortly before the invocation's deadline is
    /// stopped (`None`), so the invocation can still answer.
    async fn holding<W: Future>(
        &self,
        key: &str,
        owner: &str,
        work: W,
    ) -> Result<Option<W::Output>> {
        let every = (self.lease / 3).max(Duration::from_millis(10));
        let cut_off = INVOCATION_DEADLINE.try_with(|deadline| {
            tokio::time::Instant::now()
                + deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(STORE_SLACK * 2)
        });
        let cut_off = async move {
            match cut_off {
                Ok(at) => tokio::time::sleep_until(at).await,
                Err(_) => std::future::pending().await,
            }
        };
        // The renewals are a future of their own, raced with the work and the cut-off: a slow
        // renewal never holds the work up, nor keeps the cut-off from firing.
        let lost = async {
            let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                renewals.tick().await;
                match tokio::time::timeout(every, self.renew(key, owner)).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => return,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not renew the claim; trying again");
                    }
                    Err(_) => {
                        tracing::warn!(key = %self.item_key(key), "renewing the claim timed out; trying again");
                    }
                }
            }
        };
        tokio::select! {
            done = work => Ok(Some(done)),
            () = cut_off => {
                tracing::error!(key = %self.item_key(key), "once-only work still running at the invocation's deadline: stopped");
                Ok(None)
            }
            () = lost => {
                tracing::error!(key = %self.item_key(key), "the claim was taken over: stopping this invocation's work");
                Err(Error::ClaimLost { resource: self.resource(key) })
            }
        }
    }

    /// The key's record; `None` when there is none (released since).
    async fn current(&self, key: &str) -> Result<Option<Claim>> {
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
            return Ok(None);
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
                Ok(Some(Claim::Completed(outcome)))
            }
            Some(IN_PROGRESS) => {
                let ms = item
                    .get("lease_until_ms")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or_default();
                Ok(Some(Claim::InProgress {
                    lease_until: DateTime::from_timestamp_millis(ms).unwrap_or_default(),
                }))
            }
            other => Err(Error::unexpected(
                "dynamodb:GetItem",
                self.resource(key),
                format!("status is {other:?}, expected {IN_PROGRESS} or {COMPLETED}"),
            )),
        }
    }

    /// The same table under another namespace than the function's own: records several
    /// functions read and write (safeship's revert notes).
    #[must_use]
    pub fn namespace(&self, name: &str) -> IdempotencyStore {
        IdempotencyStore {
            function: name.to_owned(),
            ..self.clone()
        }
    }

    /// The outcome recorded under `key`, if it is completed; `None` when there is none or it is
    /// still being worked on.
    pub async fn recorded(&self, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(match self.current(key).await? {
            Some(Claim::Completed(outcome)) => Some(outcome),
            _ => None,
        })
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

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

fn millis(t: SystemTime) -> AttributeValue {
    AttributeValue::N(since_epoch(t).as_millis().to_string())
}

fn seconds(t: SystemTime) -> AttributeValue {
    AttributeValue::N(since_epoch(t).as_secs().to_string())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
