//! Support for safeship's end-to-end tests and its local demo: the emulators (moto, wiremock,
//! PostgreSQL) and a local Lambda Runtime API that runs the real function binaries.

pub mod appconfig;
pub mod checkout;
pub mod codedeploy;
pub mod ecs;
pub mod effects;
pub mod emulators;
pub mod guard_inbox;
pub mod integrity;
pub mod lifecycle;
pub mod notify;
pub mod org;
pub mod pg_proxy;
pub mod runtime;
pub mod samples;
pub mod slack;
pub mod split;
pub mod world;
