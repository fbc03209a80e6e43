//! The mutating steps of a rollback, each carried out once per idempotency key however often
//! the transition is delivered, and what each step reports.

use std::future::Future;

use safeship::guard::ActionResult;
use safeship::idempotency::Once;

use crate::{Deps, Error};

/// One step's result, and whether it ran in this invocation (not an earlier delivery's).
pub(crate) struct Step {
    pub(crate) result: ActionResult,
    pub(crate) ran: bool,
    /// Not done because another live invocation holds it (it will do it, or its retry will).
    pub(crate) held_elsewhere: bool,
}

impl Step {
    fn new(action: &str, succeeded: bool, detail: String, ran: bool) -> Step {
        Step {
            result: ActionResult {
                action: action.to_owned(),
                succeeded,
                detail: Some(detail),
            },
            ran,
            held_elsewhere: false,
        }
    }

    /// Carried out now.
    pub(crate) fn done(action: &str, detail: String) -> Step {
        Step::new(action, true, detail, true)
    }

    /// Carried out by another transition (`by`: an alarm's, or a person's request), which
    /// announces it; `detail` is what it reported.
    pub(crate) fn done_by(action: &str, detail: &str, by: &str) -> Step {
        Step::new(action, true, format!("{detail} (by {by})"), false)
    }

    /// Carried out by an earlier delivery of the transition; `detail` is what it reported.
    pub(crate) fn done_earlier(action: &str, detail: &str) -> Step {
        Step::new(
            action,
            true,
            format!("{detail} (by an earlier delivery)"),
            false,
        )
    }

    /// Not carried out, and rightly so (a dry run, nothing to do): `detail` says why.
    pub(crate) fn not_run(action: &str, detail: String) -> Step {
        Step::new(action, true, detail, false)
    }

    /// A dry run's step: not performed.
    pub(crate) fn dry(action: &str) -> Step {
        Step::not_run(action, "dry run: not performed".into())
    }

    /// The step failed (and is logged), or another live delivery of the transition holds it: a
    /// retry of the transition tries it again.
    pub(crate) fn failed(action: &str, error: &Error) -> Step {
        let held_elsewhere = matches!(
            error,
            Error::Safeship(safeship::Error::InProgressElsewhere { .. })
        );
        if held_elsewhere {
            tracing::warn!(action, error = %error, "another live invocation holds this action");
        } else {
            tracing::error!(action, error = %error, "rollback action failed");
        }
        Step {
            held_elsewhere,
            ..Step::new(action, false, error.to_string(), false)
        }
    }
}

/// A mutating step, once per key; `work` returns the step's detail.
pub(crate) async fn run_step<F, Fut>(deps: &Deps, key: String, action: &str, work: F) -> Step
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, Error>>,
{
    match once(deps, key, work).await {
        Ok(Once::Ran(detail)) => Step::done(action, detail),
        Ok(Once::AlreadyDone(detail)) => Step::done_earlier(action, &detail),
        Err(e) => Step::failed(action, &e),
    }
}

/// `work` once per key: its stored result when an earlier delivery did it.
pub(crate) async fn once<T, F, Fut>(deps: &Deps, key: String, work: F) -> Result<Once<T>, Error>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    deps.common.idempotency.once(&key, work).await
}
