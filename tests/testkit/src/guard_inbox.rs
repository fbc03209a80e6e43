//! Where a test reads the guard events a function published: a fresh EventBridge bus in moto
//! with a rule (`source: safeship`) that routes to an SQS queue.

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::Target;
use safeship::event::{normalise, Inbound};
use safeship::guard::{GuardEvent, GuardPublisher};

use crate::emulators::{unique, ACCOUNT, REGION};

pub struct GuardInbox {
    pub bus: String,
    queue_url: String,
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
}

impl GuardInbox {
    pub async fn create(sdk: &SdkConfig) -> GuardInbox {
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let bus = unique("bus");
        let queue = unique("guard");
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .expect("moto CreateEventBus");
        let queue_url = sqs
            .create_queue()
            .queue_name(&queue)
            .send()
            .await
            .expect("moto CreateQueue")
            .queue_url
            .expect("a queue URL");
        let rule = unique("rule");
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(r#"{"source": ["safeship"]}"#)
            .send()
            .await
            .expect("moto PutRule");
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(
                Target::builder()
                    .id("queue")
                    .arn(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"))
                    .build()
                    .expect("a target"),
            )
            .send()
            .await
            .expect("moto PutTargets");
        GuardInbox {
            bus,
            queue_url,
            events,
            sqs,
        }
    }

    /// A publisher to this inbox's bus.
    pub fn publisher(&self) -> GuardPublisher {
        GuardPublisher::new(self.events.clone(), &self.bus)
    }

    /// The raw EventBridge envelopes delivered so far.
    pub async fn envelopes(&self) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("moto ReceiveMessage");
            let messages = received.messages();
            if messages.is_empty() {
                return found;
            }
            for m in messages {
                found.push(serde_json::from_str(m.body().unwrap_or("null")).expect("JSON body"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("moto DeleteMessage");
            }
        }
    }

    /// The guard events delivered so far, normalised as the notifier sees them.
    pub async fn events(&self) -> Vec<GuardEvent> {
        self.envelopes()
            .await
            .iter()
            .map(
                |e| match normalise(e).expect("a guard event normalises").event {
                    Inbound::Guard(g) => *g,
                    other => panic!("not a guard event: {other:?}"),
                },
            )
            .collect()
    }
}
