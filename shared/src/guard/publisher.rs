//! Publishing guard events to EventBridge.
//!
//! Every string of an event is scrubbed (`telemetry::scrub`) before it leaves (guard events reach Slack and email,
//! which the log redaction does not cover), and every event that could not be published is
//! counted in the `GuardEventsUnpublished` metric, which the stack alarms on: the audit trail and
//! the notifications depend on these events.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::metrics::{document_with_total, MetricsSink};
use crate::telemetry::scrub;

use super::{GuardEvent, GUARD_DETAIL_TYPE, GUARD_SOURCE};

/// The namespace of the publisher's metric.
pub const METRICS_NAMESPACE: &str = "Safeship/Guard";
/// The metric counting guard events that could not be published (dimension `Guard`).
pub const UNPUBLISHED_METRIC: &str = "GuardEventsUnpublished";

/// Publishes guard events to one EventBridge bus.
#[derive(Debug, Clone)]
pub struct GuardPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    metrics: MetricsSink,
}

impl GuardPublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        GuardPublisher {
            client,
            bus: bus.into(),
            metrics: MetricsSink::default(),
        }
    }

    /// Where the unpublished-event metric goes ([`MetricsSink::default`] unless given).
    #[must_use]
    pub fn with_metrics(mut self, metrics: MetricsSink) -> Self {
        self.metrics = metrics;
        self
    }

    /// Puts `event` on the bus, its strings redacted. A failure is counted in
    /// [`UNPUBLISHED_METRIC`] and returned: the caller decides whether the event was the only
    /// record (then the invocation fails and is retried) or news only.
    pub async fn publish(&self, event: &GuardEvent) -> Result<()> {
        let sent = self.put(event).await;
        if let Err(e) = &sent {
            tracing::error!(guard_event = %event.id, error = %e, "guard event not published");
            let guard = serde_json::to_value(event.guard).unwrap_or(Value::Null);
            self.metrics.emit(&[document_with_total(
                METRICS_NAMESPACE,
                chrono::Utc::now().timestamp_millis(),
                &[("Guard", guard.as_str().unwrap_or("unknown"))],
                &[(UNPUBLISHED_METRIC, "Count", json!(1))],
            )]);
        }
        sent
    }

    async fn put(&self, event: &GuardEvent) -> Result<()> {
        let mut detail = serde_json::to_value(event).expect("guard events always serialise");
        scrub_text(&mut detail);
        let detail = detail.to_string();
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(GUARD_SOURCE)
            .detail_type(GUARD_DETAIL_TYPE)
            .detail(detail)
            .time(aws_smithy_types::DateTime::from_millis(
                event.time.timestamp_millis(),
            ))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| Error::aws("events:PutEvents", format!("bus {}", self.bus), e))?;
        // PutEvents reports per-entry failures in a 200 response; a silent drop would lose the event.
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| {
                    e.error_code()
                        .map(|c| format!("{c}: {}", e.error_message().unwrap_or("")))
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::unexpected(
                "events:PutEvents",
                format!("bus {}", self.bus),
                format!("entry for guard event {} rejected: {why}", event.id),
            ));
        }
        tracing::info!(guard_event = %event.id, kind = event.outcome.kind(), bus = %self.bus, "guard event published");
        Ok(())
    }
}

/// The top-level fields that name things (the notifier claims each event by its `id`): never
/// scrubbed, since a name like `…:refresh_token:0` would otherwise lose its identity. Free text
/// (reasons, details, checks) is all under `outcome`.
const NAMES: [&str; 6] = [
    "id",
    "time",
    "guard",
    "application",
    "deployment-group",
    "deployment-id",
];

/// Scrubs every string of a guard event but its [`NAMES`].
fn scrub_text(event: &mut Value) {
    match event {
        Value::Object(fields) => fields
            .iter_mut()
            .filter(|(name, _)| !NAMES.contains(&name.as_str()))
            .for_each(|(_, value)| scrub_strings(value)),
        other => scrub_strings(other),
    }
}

/// Scrubs every string in `value` (keys are the format's own names, never secret).
fn scrub_strings(value: &mut Value) {
    match value {
        Value::String(s) => *s = scrub(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_strings),
        Value::Object(fields) => fields.values_mut().for_each(scrub_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_identity() {
        let mut v = json!({
            "id": "integrity:db:2026-11-20T03:00:00Z:public.refresh_token:0",
            "outcome": {"kind": "integrity-anomaly", "detail": "token: abc123"},
        });
        scrub_text(&mut v);
        assert_eq!(
            v["id"],
            "integrity:db:2026-11-20T03:00:00Z:public.refresh_token:0"
        );
        assert_eq!(v["outcome"]["kind"], "integrity-anomaly");
        assert!(!v.to_string().contains("abc123"), "{v}");
    }

    #[test]
    fn every_string_is_redacted_and_the_rest_kept() {
        let mut v = json!({
            "reason": "GET https://ops:hunter2@checkout.internal/health?token=abc123 answered 500",
            "checks": [{"detail": "password=swordfish"}],
            "count": 3,
        });
        scrub_strings(&mut v);
        let text = v.to_string();
        for secret in ["hunter2", "abc123", "swordfish"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(v["count"], 3);
        assert!(text.contains("checkout.internal/health"), "{text}");
    }
}
