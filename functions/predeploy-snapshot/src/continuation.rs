//! The self-invocation continuation: a hook's wait that outlives one invocation goes on in an
//! asynchronous invocation of this same function, carrying its state.
//!
//! A continuation is never lost silently. The hand-over happens within the invocation's margin
//! (bounded, see `hook_step`): when Lambda refuses it or does not answer in time, the hook
//! reports `Failed` (or `Succeeded` with a warning under `on-failure: warn`) at once. Once
//! accepted, the continuation is an asynchronous invocation that Lambda delivers again after a
//! crash, a timeout or an error; each delivery re-runs the step from the start under the key
//! `hook:<execution id>:continuation:<attempt>` (a dead delivery's claim ends with its deadline),
//! finds the snapshot by its identifier and waits on, so the hook reports at the latest when the
//! hook's budget ends. What Lambda gives up on after its retries goes to the function's
//! on-failure destination (the stack's to configure and alarm on).

use chrono::{DateTime, Utc};
use safeship::runtime::answer_once;
use serde::{Deserialize, Serialize};

use crate::hook::hook_step;
use crate::{Deps, Error, SnapshotAnswer, FUNCTION};

/// The state a continuation carries: the hook to report and the snapshot being waited for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Continuation {
    pub(crate) deployment_id: String,
    pub(crate) lifecycle_event_hook_execution_id: String,
    pub(crate) application: String,
    pub(crate) deployment_group: String,
    pub(crate) database: String,
    pub(crate) snapshot_id: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) attempt: u32,
    /// The revision's commit, when CodeDeploy knows it (GitHub revisions).
    #[serde(default)]
    pub(crate) git_sha: Option<String>,
}

/// A continuation: keep waiting for the hook's snapshot; once per attempt.
pub(crate) async fn continue_hook(
    deps: &Deps,
    state: Continuation,
    deadline: tokio::time::Instant,
) -> Result<SnapshotAnswer, Error> {
    let key = format!(
        "hook:{}:continuation:{}",
        state.lifecycle_event_hook_execution_id, state.attempt
    );
    let once = deps
        .common
        .idempotency
        .once(&key, || Box::pin(hook_step(deps, state.clone(), deadline)))
        .await?;
    Ok(answer_once(once))
}

/// Invokes this function asynchronously with the continuation's state.
pub(crate) async fn hand_over(deps: &Deps, state: &Continuation) -> Result<(), Error> {
    let function = deps
        .settings
        .function_name
        .clone()
        .unwrap_or_else(|| FUNCTION.to_owned());
    let payload = serde_json::json!({ "safeship-continuation": state });
    crate::handoff::invoke_async(deps, &function, &payload)
        .await
        .map_err(|problem| Error::Continue {
            snapshot_id: state.snapshot_id.clone(),
            function,
            problem,
        })?;
    tracing::info!(snapshot = %state.snapshot_id, attempt = state.attempt, "the wait continues in a new invocation");
    Ok(())
}
