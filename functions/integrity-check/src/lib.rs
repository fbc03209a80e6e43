//! Nightly integrity-count check, started by an EventBridge schedule.
//!
//! Foundation stage: this accepts the scheduled event and reports which databases the policy
//! names. Connecting, counting and comparing with the baseline land in their own issue; until
//! then no database is queried.

use lambda_runtime::LambdaEvent;
use safeship::config::Env;
use safeship::event::{EventError, Inbound};
use safeship::lambda::{accept, Common};
use serde_json::{json, Value};

pub const FUNCTION: &str = "integrity-check";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Event(#[from] EventError),
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

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let normalised = accept(FUNCTION, &event.payload, |e| {
        matches!(e, Inbound::Scheduled(_))
    })?;
    let Inbound::Scheduled(tick) = normalised.event else {
        unreachable!("accept keeps scheduled events only")
    };
    let databases: Vec<&String> = deps.common.policy.databases.keys().collect();
    tracing::info!(rules = ?tick.rules, ?databases, "scheduled integrity run received");
    Ok(json!({"rules": tick.rules, "databases": databases, "checked": []}))
}
