//! Pre-deploy RDS snapshot: before migrations, a snapshot of the deployment's database.
//!
//! Foundation stage: this resolves which database a trigger concerns (a direct invocation naming
//! it, or a deployment's `START` via the group's policy) and rejects unknown databases before any
//! RDS call. Taking, waiting for and pruning snapshots land in their own issue; until then no RDS
//! resource is touched and the answer says no snapshot was taken.

use lambda_runtime::LambdaEvent;
use safeship::config::Env;
use safeship::event::{DeploymentState, EventError, Inbound};
use safeship::lambda::{accept, Common};
use safeship::policy::Policy;
use serde::Deserialize;
use serde_json::{json, Value};

pub const FUNCTION: &str = "predeploy-snapshot";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("direct invocation: {0}")]
    Request(String),
    #[error("database {database:?} is not in the policy's databases (known: {known})")]
    UnknownDatabase { database: String, known: String },
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        safeship::lambda::diagnostic(FUNCTION, &e)
    }
}

pub struct Deps {
    pub common: Common,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        Ok(Deps {
            common: Common::load(env).await?,
        })
    }
}

/// A pipeline's direct invocation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    pub database: String,
    pub reason: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
}

/// The policy's database entry for a name, or an error listing the known ones.
pub fn resolve_database<'a>(
    policy: &'a Policy,
    database: &str,
) -> Result<&'a safeship::policy::DatabasePolicy, Error> {
    policy
        .databases
        .get(database)
        .ok_or_else(|| Error::UnknownDatabase {
            database: database.to_owned(),
            known: policy
                .databases
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let policy = &deps.common.policy;
    let (database, deployment_id) = if event.payload.get("database").is_some() {
        let request: SnapshotRequest = serde_json::from_value(event.payload.clone())
            .map_err(|e| Error::Request(e.to_string()))?;
        (request.database, request.deployment_id)
    } else {
        let normalised = accept(
            FUNCTION,
            &event.payload,
            |e| matches!(e, Inbound::DeploymentStateChange(d) if d.state == DeploymentState::Start),
        )?;
        let Inbound::DeploymentStateChange(d) = normalised.event else {
            unreachable!("accept keeps deployment starts only")
        };
        let Some(snapshot) = policy
            .group(&d.application, &d.deployment_group)
            .and_then(|g| g.policy.snapshot.as_ref())
        else {
            return Ok(
                json!({"deployment-id": d.deployment_id, "snapshot": "none configured for this group"}),
            );
        };
        (snapshot.database.clone(), Some(d.deployment_id))
    };
    let db = resolve_database(policy, &database)?;
    tracing::info!(%database, identifier = %db.identifier, "snapshot trigger resolved");
    Ok(json!({
        "database": database,
        "identifier": db.identifier,
        "kind": db.kind,
        "deployment-id": deployment_id,
        "snapshot": "not taken: this safeship version resolves triggers only",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_database_lists_the_known_ones() {
        let p = Policy::parse(include_str!("../../../examples/policy.yaml"), "example").unwrap();
        let err = resolve_database(&p, "orders-db").unwrap_err().to_string();
        assert_eq!(
            err,
            "database \"orders-db\" is not in the policy's databases (known: checkout-db)"
        );
        assert_eq!(
            resolve_database(&p, "checkout-db").unwrap().identifier,
            "checkout-prod-db"
        );
    }

    #[test]
    fn request_rejects_unknown_fields() {
        let err = serde_json::from_value::<SnapshotRequest>(
            json!({"database": "a", "reason": "b", "extra": 1}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
