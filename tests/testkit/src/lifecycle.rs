//! Deployments that finish. moto keeps every CodeDeploy deployment `Created` forever, so a story
//! of several deployments (one succeeds, one fails its hook, one is stopped by an alarm) would
//! show all of them in flight at once. The ledger plays the part of CodeDeploy that moto lacks:
//! the story marks a deployment succeeded, failed or stopped, and CodeDeploy's reads through the
//! ledger's endpoint say so. Everything else (the deployments themselves, their revisions, the
//! time filter) is moto's.
//!
//! What the ledger changes, on the way through the split endpoint:
//! - `ListDeployments`: only the story's deployments (those it [`DeploymentLedger::track`]s),
//!   filtered by their status here against the request's `includeOnlyStatuses`; so deployments an
//!   earlier run left in a reused moto are not part of this story;
//! - `GetDeployment`, `BatchGetDeployments`: a tracked deployment's `status`, and its
//!   `completeTime` once finished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::Value;

use crate::split::{Adjust, SplitEndpoint};

#[derive(Debug, Clone)]
struct Tracked {
    status: String,
    /// Epoch seconds, as CodeDeploy's JSON carries times.
    complete_time: Option<f64>,
}

/// The story's deployments and where each one stands.
#[derive(Clone, Default)]
pub struct DeploymentLedger {
    deployments: Arc<Mutex<HashMap<String, Tracked>>>,
}

impl DeploymentLedger {
    /// `id` is part of the story, in flight (`InProgress`).
    pub fn track(&self, id: &str) {
        self.deployments.lock().unwrap().insert(
            id.to_owned(),
            Tracked {
                status: "InProgress".into(),
                complete_time: None,
            },
        );
    }

    /// `id` completed now as `status` (`Succeeded`, `Failed` or `Stopped`).
    pub fn finish(&self, id: &str, status: &str) {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        self.deployments.lock().unwrap().insert(
            id.to_owned(),
            Tracked {
                status: status.to_owned(),
                complete_time: Some(now),
            },
        );
    }

    pub fn status(&self, id: &str) -> Option<String> {
        self.deployments
            .lock()
            .unwrap()
            .get(id)
            .map(|t| t.status.clone())
    }

    /// One CodeDeploy endpoint for the story: `mocked` operations to `mock` (wiremock), the rest
    /// to moto through this ledger.
    pub async fn endpoint(
        &self,
        moto: &str,
        mock: &str,
        mocked: &'static [&'static str],
    ) -> SplitEndpoint {
        SplitEndpoint::json_operations_adjusted(moto, mock, mocked, Arc::new(self.clone())).await
    }

    fn amend(&self, info: &mut Value) {
        let Some(id) = info["deploymentId"].as_str() else {
            return;
        };
        if let Some(t) = self.deployments.lock().unwrap().get(id) {
            info["status"] = Value::from(t.status.clone());
            if let Some(at) = t.complete_time {
                info["completeTime"] = Value::from(at);
            }
        }
    }
}

/// CodeDeploy's hook reports and stops (which moto lacks) as CodeDeploy answers them, for
/// wiremock: a hook execution takes one report, a later one is
/// `LifecycleEventAlreadyCompletedException`; a stop ends the deployment (`Stopped` in the
/// ledger), and a stop of a deployment that has completed is
/// `DeploymentAlreadyCompletedException`. So a retry that reports or stops again meets what it
/// would meet in AWS.
#[derive(Clone)]
pub struct Completions {
    ledger: DeploymentLedger,
    reported: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Completions {
    pub fn new(ledger: &DeploymentLedger) -> Completions {
        Completions {
            ledger: ledger.clone(),
            reported: Arc::default(),
        }
    }
}

fn codedeploy_error(kind: &str, message: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(400)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(serde_json::json!({"__type": kind, "message": message}))
}

impl wiremock::Respond for Completions {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let ok = |answer: Value| {
            wiremock::ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(answer)
        };
        match target.rsplit('.').next().unwrap_or_default() {
            "PutLifecycleEventHookExecutionStatus" => {
                let id = body["lifecycleEventHookExecutionId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if self.reported.lock().unwrap().insert(id.clone()) {
                    ok(serde_json::json!({"lifecycleEventHookExecutionId": id}))
                } else {
                    codedeploy_error(
                        "LifecycleEventAlreadyCompletedException",
                        "The lifecycle event is already completed.",
                    )
                }
            }
            "StopDeployment" => {
                let id = body["deploymentId"].as_str().unwrap_or_default();
                let completed = self
                    .ledger
                    .status(id)
                    .is_some_and(|s| matches!(s.as_str(), "Succeeded" | "Failed" | "Stopped"));
                if completed {
                    codedeploy_error(
                        "DeploymentAlreadyCompletedException",
                        &format!("The deployment {id} has already completed."),
                    )
                } else {
                    self.ledger.finish(id, "Stopped");
                    ok(
                        serde_json::json!({"status": "Pending", "statusMessage": "Stop requested; rolling back"}),
                    )
                }
            }
            other => codedeploy_error(
                "UnsupportedActionForDeploymentTypeException",
                &format!("{other} is not emulated here"),
            ),
        }
    }
}

impl Adjust for DeploymentLedger {
    fn request(&self, operation: &str, body: Bytes) -> Bytes {
        if operation != "ListDeployments" {
            return body;
        }
        // moto would filter by its own status (`Created`); the ledger filters instead.
        let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        if let Some(fields) = request.as_object_mut() {
            fields.remove("includeOnlyStatuses");
        }
        Bytes::from(serde_json::to_vec(&request).expect("JSON serialises"))
    }

    fn response(&self, operation: &str, request: &[u8], body: Bytes) -> Bytes {
        let Ok(mut answer) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        match operation {
            "ListDeployments" => {
                let wanted: Vec<String> = serde_json::from_slice::<Value>(request)
                    .ok()
                    .and_then(|r| serde_json::from_value(r["includeOnlyStatuses"].clone()).ok())
                    .unwrap_or_default();
                let deployments = self.deployments.lock().unwrap();
                if let Some(ids) = answer["deployments"].as_array_mut() {
                    ids.retain(|id| {
                        id.as_str()
                            .and_then(|id| deployments.get(id))
                            .is_some_and(|t| wanted.is_empty() || wanted.contains(&t.status))
                    });
                }
            }
            "GetDeployment" => self.amend(&mut answer["deploymentInfo"]),
            "BatchGetDeployments" => {
                if let Some(infos) = answer["deploymentsInfo"].as_array_mut() {
                    infos.iter_mut().for_each(|info| self.amend(info));
                }
            }
            _ => return body,
        }
        Bytes::from(serde_json::to_vec(&answer).expect("JSON serialises"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_only_the_storys_deployments_by_their_status_here() {
        let ledger = DeploymentLedger::default();
        ledger.track("d-1");
        ledger.track("d-2");
        ledger.finish("d-1", "Succeeded");
        let asked = json!({"applicationName": "a", "deploymentGroupName": "g",
            "includeOnlyStatuses": ["Created", "InProgress"]});
        let sent = ledger.request("ListDeployments", Bytes::from(asked.to_string()));
        let sent: Value = serde_json::from_slice(&sent).unwrap();
        assert!(sent.get("includeOnlyStatuses").is_none(), "{sent}");
        let moto = json!({"deployments": ["d-0", "d-1", "d-2"]});
        let answered = ledger.response(
            "ListDeployments",
            asked.to_string().as_bytes(),
            Bytes::from(moto.to_string()),
        );
        let answered: Value = serde_json::from_slice(&answered).unwrap();
        assert_eq!(answered["deployments"], json!(["d-2"]));
    }

    #[test]
    fn a_finished_deployment_reads_as_finished() {
        let ledger = DeploymentLedger::default();
        ledger.track("d-1");
        ledger.finish("d-1", "Stopped");
        let moto = json!({"deploymentInfo": {"deploymentId": "d-1", "status": "Created"}});
        let answered = ledger.response("GetDeployment", b"{}", Bytes::from(moto.to_string()));
        let answered: Value = serde_json::from_slice(&answered).unwrap();
        assert_eq!(answered["deploymentInfo"]["status"], "Stopped");
        assert!(answered["deploymentInfo"]["completeTime"].is_f64());
        assert_eq!(ledger.status("d-1").as_deref(), Some("Stopped"));
    }
}
