//! The AWS calls in flight in this process, so that work stopped at its deadline can say which
//! call it was waiting on ("waiting on codedeploy:StopDeployment for 2.9 s"), not only that it
//! did not finish. Every SDK client safeship builds carries [`Tracker`] (`aws_client!`);
//! Lambda runs one invocation at a time per process, so the calls in flight are this
//! invocation's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// The calls started and not finished: (id, `service:Operation`, since).
static IN_FLIGHT: Mutex<Vec<(u64, String, Instant)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// This call's place in [`IN_FLIGHT`], kept in the call's config bag.
#[derive(Debug, Clone, Copy)]
struct Ticket(u64);

impl Storable for Ticket {
    type Storer = StoreReplace<Self>;
}

/// The interceptor every safeship SDK client carries.
#[derive(Debug, Default)]
pub struct Tracker;

impl Intercept for Tracker {
    fn name(&self) -> &'static str {
        "safeship-in-flight"
    }

    // Not `read_before_execution`: a client's interceptors run that before the operation's
    // configuration (its `Metadata`) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map_or_else(
            || "an AWS operation".to_owned(),
            // As IAM names it: `secretsmanager:GetSecretValue`, not `Secrets Manager:…`.
            |m| {
                format!(
                    "{}:{}",
                    m.service().to_lowercase().replace(' ', ""),
                    m.name()
                )
            },
        );
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut calls) = IN_FLIGHT.lock() {
            calls.push((id, name, Instant::now()));
        }
        cfg.interceptor_state().store_put(Ticket(id));
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Ticket(id)) = cfg.load::<Ticket>().copied() {
            if let Ok(mut calls) = IN_FLIGHT.lock() {
                calls.retain(|(call, _, _)| *call != id);
            }
        }
        Ok(())
    }
}

/// Forgets calls a dropped future left behind (a call cut off at a deadline never finishes):
/// at the start of each invocation.
pub fn forget_all() {
    if let Ok(mut calls) = IN_FLIGHT.lock() {
        calls.clear();
    }
}

/// The calls in flight, oldest first, as "waiting on codedeploy:StopDeployment for 2.9 s"; empty
/// when none is.
#[must_use]
pub fn waiting() -> String {
    let Ok(calls) = IN_FLIGHT.lock() else {
        return String::new();
    };
    if calls.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = calls
        .iter()
        .map(|(_, name, since)| format!("{name} for {:.1} s", since.elapsed().as_secs_f64()))
        .collect();
    format!("waiting on {}", listed.join(", "))
}

/// An SDK client from `sdk` that carries [`Tracker`]: `aws_client!(aws_sdk_codedeploy, &sdk)`.
#[macro_export]
macro_rules! aws_client {
    ($sdk_lib:ident, $sdk:expr) => {
        $sdk_lib::Client::from_conf(
            $sdk_lib::config::Builder::from($sdk)
                .interceptor($crate::aws::in_flight::Tracker)
                .build(),
        )
    };
}
