//! A Kafka record's webhook messages ([`WebhookMessage`]), by topic: the table in the crate's
//! documentation. A record that is not what its topic carries is poison.

use aws_lambda_events::event::kafka::KafkaRecord;
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::trigger::{self, PoisonEnvelope, PoisonRecord};
use shared::webhooks::WebhookMessage;

/// Why a record makes no messages and never will.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error(transparent)]
    Envelope(#[from] PoisonEnvelope),
    #[error(transparent)]
    Record(#[from] PoisonRecord),
    #[error("not a delivery outcome: {0}")]
    Outcome(#[from] serde_json::Error),
    #[error("topic {0:?} is not a webhooks input")]
    Topic(String),
}

/// The messages of `record` (none for records webhooks do not report), given the deployment's
/// topic suffix.
pub fn messages(record: &KafkaRecord, suffix: &str) -> Result<Vec<WebhookMessage>, Poison> {
    let topic = record.topic.as_deref().unwrap_or_default();
    match Topic::from_name(topic, suffix) {
        // An engagement change is on both envelope topics with one id: it is taken from
        // `notification-analytics`, which carries only first engagements.
        Some(Topic::NotificationEvents) => {
            let envelope: Envelope = trigger::envelope(record)?;
            Ok(match envelope.event {
                Event::NotificationCreated { .. } => WebhookMessage::from_envelope(&envelope),
                _ => Vec::new(),
            })
        }
        Some(Topic::NotificationAnalytics) => {
            let envelope: Envelope = trigger::envelope(record)?;
            Ok(WebhookMessage::from_envelope(&envelope))
        }
        Some(Topic::NotificationDelivery) => {
            let outcome: DeliveryOutcome = serde_json::from_slice(&trigger::value(record)?)?;
            Ok(WebhookMessage::from_outcome(&outcome).into_iter().collect())
        }
        _ => Err(Poison::Topic(topic.to_owned())),
    }
}
