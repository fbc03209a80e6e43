//! `safeship`: what every safeship guard rail shares.
//!
//! - [`config`]: typed settings from environment variables, read once at cold start;
//! - [`policy`]: the policy document, strictly validated;
//! - [`aws`]: the one SDK configuration per cold start;
//! - [`codedeploy`]: a lifecycle hook's report and its deployment;
//! - [`event`]: normalising EventBridge, SNS and direct invocations into typed events;
//! - [`guard`]: guard events, published to EventBridge for the notifier;
//! - [`idempotency`]: do each side effect once per event (DynamoDB);
//! - [`telemetry`]: JSON logs in Lambda, text in a terminal, secrets redacted;
//! - [`tls`]: which certificate authorities the HTTPS clients trust;
//! - [`lambda`]: the adapter every function's `main` shares.

pub mod aws;
pub mod codedeploy;
pub mod config;
pub mod error;
pub mod event;
pub mod guard;
pub mod idempotency;
pub mod lambda;
pub mod policy;
pub mod telemetry;
pub mod tls;

pub use error::{Error, Result};
