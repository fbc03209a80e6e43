//! Publishing guard events to EventBridge.

use crate::error::{Error, Result};

use super::{GuardEvent, GUARD_DETAIL_TYPE, GUARD_SOURCE};

/// Publishes guard events to one EventBridge bus.
#[derive(Debug, Clone)]
pub struct GuardPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl GuardPublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        GuardPublisher {
            client,
            bus: bus.into(),
        }
    }

    pub async fn publish(&self, event: &GuardEvent) -> Result<()> {
        let detail = serde_json::to_string(event).expect("guard events always serialise");
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
