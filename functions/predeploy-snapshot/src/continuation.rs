//! The self-invocation continuation: a hook's wait that outlives one invocation goes on in an
//! asynchronous invocation of this same function, carrying its state.

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
        .once(&key, || hook_step(deps, state.clone(), deadline))
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
    deps.lambda
        .invoke()
        .function_name(&function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            serde_json::to_vec(&payload).expect("JSON serialises"),
        ))
        .send()
        .await
        .map_err(|e| Error::Continue {
            snapshot_id: state.snapshot_id.clone(),
            function,
            problem: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
        })?;
    tracing::info!(snapshot = %state.snapshot_id, attempt = state.attempt, "the wait continues in a new invocation");
    Ok(())
}
