//! A Kafka record's webhook messages ([`WebhookMessage`]), by topic: the table in the crate's
//! documentation. A record that is not what its topic carries is poison.

use aws_lambda_events::event::kafka::KafkaRecord;
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::tenant::Tenant;
use shared::trigger::{self, PoisonEnvelope, PoisonRecord};
use shared::webhooks::{WebhookEventType, WebhookMessage};

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

/// The webhook events a record of `topic` can make (the table in the crate's documentation):
/// a record of a topic whose events no registered webhook wants is not decoded at all.
pub fn kinds(topic: Topic) -> &'static [WebhookEventType] {
    match topic {
        Topic::NotificationEvents => &[WebhookEventType::NotificationCreated],
        Topic::NotificationAnalytics => &[
            WebhookEventType::NotificationSeen,
            WebhookEventType::NotificationRead,
            WebhookEventType::NotificationClicked,
        ],
        Topic::NotificationDelivery => &[
            WebhookEventType::DeliverySent,
            WebhookEventType::DeliveryFailed,
            WebhookEventType::DeliverySuppressed,
        ],
        _ => &[],
    }
}

/// The tenant of `record` and its messages (none for records webhooks do not report), given the
/// deployment's topic suffix. The messages go to that tenant's webhooks only.
pub fn messages(
    record: &KafkaRecord,
    suffix: &str,
) -> Result<(Tenant, Vec<WebhookMessage>), Poison> {
    let topic = record.topic.as_deref().unwrap_or_default();
    match Topic::from_name(topic, suffix) {
        // An engagement change is on both envelope topics with one id: it is taken from
        // `notification-analytics`, which carries only first engagements.
        Some(Topic::NotificationEvents) => {
            let envelope: Envelope = trigger::envelope(record)?;
            let messages = match envelope.event {
                Event::NotificationCreated { .. } => WebhookMessage::from_envelope(&envelope),
                _ => Vec::new(),
            };
            Ok((envelope.tenant, messages))
        }
        Some(Topic::NotificationAnalytics) => {
            let envelope: Envelope = trigger::envelope(record)?;
            let messages = WebhookMessage::from_envelope(&envelope);
            Ok((envelope.tenant, messages))
        }
        Some(Topic::NotificationDelivery) => {
            let outcome: DeliveryOutcome = serde_json::from_slice(&trigger::value(record)?)?;
            let messages = WebhookMessage::from_outcome(&outcome).into_iter().collect();
            Ok((outcome.tenant, messages))
        }
        _ => Err(Poison::Topic(topic.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde_json::json;
    use shared::model::{Channel, Counts, FlagsPatch, OutcomeStatus};
    use shared::protocol::envelope::FirstEngagement;

    fn record(topic: &str, value: &[u8]) -> KafkaRecord {
        serde_json::from_value(json!({"topic": topic, "partition": 0, "offset": 1,
            "timestamp": 0, "timestampType": "CREATE_TIME", "key": null,
            "value": STANDARD.encode(value), "headers": []}))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn notification() -> shared::model::Notification {
        serde_json::from_value(
            json!({"id": "n1", "seq": 1, "userId": "alice", "type": "comment",
            "title": "t", "body": "b", "data": {}, "channels": ["IN_APP"], "priority": "normal",
            "read": false, "seen": false, "archived": false,
            "createdAt": "2026-12-06T06:00:00Z"}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The messages of a default tenant's record.
    fn only(record: &KafkaRecord, suffix: &str) -> Result<Vec<WebhookMessage>, Poison> {
        let (tenant, messages) = messages(record, suffix)?;
        assert!(tenant.is_default());
        Ok(messages)
    }

    fn kinds(messages: &[WebhookMessage]) -> Vec<WebhookEventType> {
        messages.iter().map(|m| m.kind).collect()
    }

    #[test]
    fn each_topic_gives_its_events() {
        let created = Envelope::new(
            "alice",
            Event::NotificationCreated {
                notification: notification(),
                counts: Counts::default(),
            },
        );
        let m = only(&record("notification-events.t", &created.encode()), ".t").unwrap_or_default();
        assert_eq!(kinds(&m), [WebhookEventType::NotificationCreated]);
        assert_eq!(m[0].notification_id, "n1");
        assert_eq!(m[0].id, format!("{}.notification.created", created.id));
        let body: serde_json::Value = serde_json::from_str(&m[0].body).unwrap_or_default();
        assert_eq!(body["type"], "notification.created");
        assert_eq!(body["data"]["userId"], "alice");

        let read = Envelope::new(
            "alice",
            Event::NotificationUpdated {
                id: "n1".into(),
                changes: FlagsPatch {
                    read: Some(true),
                    ..FlagsPatch::default()
                },
                first: Some(FirstEngagement {
                    seen: true,
                    read: true,
                }),
                counts: Counts::default(),
                digest: None,
            },
        );
        let m = only(&record("notification-analytics", &read.encode()), "").unwrap_or_default();
        assert_eq!(
            kinds(&m),
            [
                WebhookEventType::NotificationSeen,
                WebhookEventType::NotificationRead
            ]
        );
        assert_ne!(m[0].id, m[1].id);
        // The same change on notification-events is taken from notification-analytics only.
        let on_events = only(&record("notification-events", &read.encode()), "");
        assert!(on_events.is_ok_and(|m| m.is_empty()));
        let all_read = Envelope::new(
            "alice",
            Event::AllRead {
                notification_type: None,
                counts: Counts::default(),
            },
        );
        let none = only(&record("notification-analytics", &all_read.encode()), "");
        assert!(
            none.is_ok_and(|m| m.is_empty()),
            "ALL_READ names no notification"
        );

        let n = notification();
        let failed = DeliveryOutcome::new(&n, Channel::Email, OutcomeStatus::Failed, Some("error"));
        let m = only(&record("notification-delivery", &failed.encode()), "").unwrap_or_default();
        assert_eq!(kinds(&m), [WebhookEventType::DeliveryFailed]);
        let body: serde_json::Value = serde_json::from_str(&m[0].body).unwrap_or_default();
        assert_eq!(body["data"]["reason"], "error");
        assert_eq!(body["data"]["channel"], "EMAIL");
        assert!(body["data"].get("v").is_none());
        let deferred = DeliveryOutcome::new(&n, Channel::Email, OutcomeStatus::Deferred, None);
        let none = only(&record("notification-delivery", &deferred.encode()), "");
        assert!(
            none.is_ok_and(|m| m.is_empty()),
            "a deferral is not an event"
        );
    }

    #[test]
    fn a_tenants_record_makes_messages_for_that_tenant() {
        let acme = Tenant::parse("acme").unwrap_or_default();
        let mut created = Envelope::new(
            "alice",
            Event::NotificationCreated {
                notification: notification(),
                counts: Counts::default(),
            },
        );
        created.tenant = acme.clone();
        let decoded = messages(&record("notification-events", &created.encode()), "");
        assert!(
            decoded.is_ok_and(|(tenant, m)| tenant == acme && m.len() == 1),
            "the message keeps its record's tenant"
        );
        let mut failed = DeliveryOutcome::new(
            &notification(),
            Channel::Email,
            OutcomeStatus::Failed,
            Some("error"),
        );
        failed.tenant = acme.clone();
        let decoded = messages(&record("notification-delivery", &failed.encode()), "");
        assert!(decoded.is_ok_and(|(tenant, m)| tenant == acme && m.len() == 1));
    }

    #[test]
    fn records_that_are_not_what_their_topic_carries_are_poison() {
        assert!(matches!(
            only(&record("push-notifications", b"{}"), ""),
            Err(Poison::Topic(_))
        ));
        assert!(matches!(
            only(&record("notification-delivery", b"{}"), ""),
            Err(Poison::Outcome(_))
        ));
        assert!(matches!(
            only(&record("notification-events", b"nope"), ""),
            Err(Poison::Envelope(_))
        ));
    }
}
