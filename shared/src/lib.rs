//! `safeship`: what every safeship guard rail shares, in layers (each uses only those above it):
//!
//! 1. [`model`], [`error`]: plain data and the crate's error type;
//! 2. [`env`](mod@env): environment variables, read once;
//! 3. [`tls`], [`telemetry`], [`metrics`]: trusted roots, logs (secrets redacted), EMF metrics;
//! 4. [`config`], [`aws`]: the settings every function reads; one SDK configuration per cold
//!    start, and the CodeDeploy calls several guard rails make;
//! 5. [`guard`]: guard events (a versioned, tolerant wire format) and their publisher;
//! 6. [`event`]: normalising EventBridge, SNS and direct invocations into typed events;
//! 7. [`idempotency`]: each side effect once per event (DynamoDB);
//! 8. [`policy`]: the policy document, strictly validated; [`revert`]: safeship's own reverts,
//!    which the hooks never hold;
//! 9. [`runtime`]: how a function runs in Lambda: cold start, invocation deadline, errors.
//!
//! `tests/layers.rs` checks that no module uses one below it.

pub mod aws;
pub mod config;
pub mod env;
pub mod error;
pub mod event;
pub mod guard;
pub mod idempotency;
pub mod members;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod revert;
pub mod runtime;
pub mod telemetry;
pub mod tls;

pub use error::{Error, Result};
