//! The shared crate's one error type. Every variant says what was attempted and on which resource.

use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration variable is missing or malformed; `name` is the variable.
    #[error("configuration: environment variable {name}: {problem}")]
    Config { name: String, problem: String },

    /// An inbound event is malformed, or of a kind this function does not handle: nothing was done.
    #[error(transparent)]
    Event(#[from] EventError),

    /// The policy document could not be read, parsed or validated.
    #[error("policy from {origin}: {problem}")]
    Policy { origin: String, problem: String },

    /// An AWS call failed. `code` is the service's error code when it sent one
    /// (e.g. `ThrottlingException`, `ConditionalCheckFailedException`).
    #[error("{action} on {resource} failed: {message}")]
    Aws {
        action: &'static str,
        resource: String,
        code: Option<String>,
        message: String,
    },

    /// Another live invocation holds this once-only work: nothing was done here. An error, never
    /// a success, so Lambda retries the delivery after that invocation has finished or died.
    #[error("{resource}: another invocation holds this work until {held_until} (its lease); nothing was done here, retry after that")]
    InProgressElsewhere {
        resource: String,
        held_until: chrono::DateTime<chrono::Utc>,
    },

    /// This invocation's claim on once-only work lapsed and another took it over: this one
    /// stopped, so the work is not done twice.
    #[error("{resource}: this invocation's claim lapsed and another invocation took the work over; stopped here")]
    ClaimLost { resource: String },

    /// Once-only work was still running at the invocation's deadline and was stopped; its claim
    /// was released so a retry can finish it.
    #[error("{resource}: the work did not finish before the invocation's deadline{}; stopped, and its claim released for the retry", if waiting.is_empty() { String::new() } else { format!(" ({waiting})") })]
    Unfinished { resource: String, waiting: String },

    /// Once-only work panicked; its claim was released so a retry can do it.
    #[error("{resource}: the work panicked ({message}); its claim was released for the retry")]
    Panicked { resource: String, message: String },

    /// Data came back from AWS in a shape we cannot use.
    #[error("{action} on {resource}: unexpected response: {problem}")]
    Unexpected {
        action: &'static str,
        resource: String,
        problem: String,
    },
}

impl Error {
    pub fn config(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Config {
            name: name.into(),
            problem: problem.into(),
        }
    }

    pub fn policy(origin: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Policy {
            origin: origin.into(),
            problem: problem.into(),
        }
    }

    /// Wraps an SDK error with the operation and resource it concerned. The message carries the
    /// whole error chain (`DisplayErrorContext`), since the SDK's own `Display` says only "service error".
    pub fn aws<E>(action: &'static str, resource: impl Into<String>, err: E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Error::Aws {
            action,
            resource: resource.into(),
            code: err.code().map(str::to_owned),
            message: DisplayErrorContext(&err).to_string(),
        }
    }

    pub fn unexpected(
        action: &'static str,
        resource: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Unexpected {
            action,
            resource: resource.into(),
            problem: problem.into(),
        }
    }

    /// A stable name for the variant, for Lambda's `errorType` (see the runtime module).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } => "Config",
            Error::Event(_) => "Event",
            Error::Policy { .. } => "Policy",
            Error::Aws { .. } => "Aws",
            Error::Unexpected { .. } => "Unexpected",
            Error::InProgressElsewhere { .. } => "InProgressElsewhere",
            Error::ClaimLost { .. } => "ClaimLost",
            Error::Panicked { .. } => "Panicked",
            Error::Unfinished { .. } => "Unfinished",
        }
    }

    /// The AWS error code, if this is an AWS error that carried one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// What is wrong with an inbound event, named before any guard rail can act on it (the event
/// model produces these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event has a recognised shape but a field is missing or wrong.
    #[error("{shape}: field {field}: {problem}")]
    Malformed {
        shape: &'static str,
        field: String,
        problem: String,
    },
    /// Nothing about the event matches a shape safeship accepts.
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    /// A recognised event that this function does not act on.
    #[error("{function} does not handle {kind} events")]
    NotHandled {
        function: &'static str,
        kind: &'static str,
    },
}
