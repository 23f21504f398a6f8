//! Decoding: what one record contributes ([`Item`]), per the mapping in the crate's header, or
//! why it is poison ([`Poison`]).

use aws_lambda_events::event::kafka::KafkaRecord;
use chrono::NaiveDate;
use shared::model::{Channel, OutcomeStatus};
use shared::protocol::envelope::{EnvelopeError, ENVELOPE_VERSION};
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::store::analytics::{HistoryEntry, Tally};
use shared::tenant::Tenant;
use shared::trigger;

use crate::UNKNOWN_TYPE;

/// What one record contributes.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) offset: i64,
    pub(crate) user_id: String,
    /// The user's tenant (the record's; the default tenant's for a record without one).
    pub(crate) tenant: Tenant,
    pub(crate) notification_id: String,
    /// The notification type, once known.
    pub(crate) kind: Option<String>,
    /// Whether `kind` is worth recording in the history (from the record or the inbox).
    pub(crate) kind_is_authoritative: bool,
    /// An engagement event (its type must be looked up; its user is not a "recipient").
    pub(crate) engagement: bool,
    pub(crate) day: NaiveDate,
    pub(crate) entries: Vec<HistoryEntry>,
    /// A `seq` of the notification's life (its own, or a change's): what the erase check
    /// compares (`None`: the record carries none, and its time is compared).
    pub(crate) seq: Option<u64>,
    /// The record's time, ms.
    pub(crate) at_ms: i64,
}

impl Item {
    pub(crate) fn tallies(&self) -> Vec<Tally<'_>> {
        let kind = self.kind.as_deref().unwrap_or(UNKNOWN_TYPE);
        self.entries
            .iter()
            .map(|e| Tally {
                tenant: &self.tenant,
                day: self.day,
                kind,
                channel: e.channel,
                status: e.status,
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Poison {
    #[error(transparent)]
    Record(#[from] trigger::PoisonRecord),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("not a delivery outcome: {0}")]
    Outcome(#[source] serde_json::Error),
    #[error("unknown delivery outcome version {0}")]
    OutcomeVersion(u32),
    #[error("topic {0:?} is not an analytics input")]
    Topic(String),
}

/// The item a record contributes, `None` when it counts nothing.
pub(crate) fn decode(topic: Topic, record: &KafkaRecord) -> Result<Option<Item>, Poison> {
    let bytes = trigger::value(record)?;
    if topic == Topic::NotificationDelivery {
        let outcome: DeliveryOutcome = serde_json::from_slice(&bytes).map_err(Poison::Outcome)?;
        if outcome.v != ENVELOPE_VERSION {
            return Err(Poison::OutcomeVersion(outcome.v));
        }
        let entry = HistoryEntry {
            channel: outcome.channel,
            status: outcome.status,
            reason: outcome.reason,
            at: outcome.at,
            latency_ms: outcome.latency_ms,
            provider: outcome.provider,
        };
        return Ok(Some(Item {
            offset: record.offset,
            user_id: outcome.user_id,
            tenant: outcome.tenant,
            notification_id: outcome.notification_id,
            kind: Some(outcome.notification_type),
            kind_is_authoritative: true,
            engagement: false,
            day: outcome.at.date_naive(),
            entries: vec![entry],
            seq: outcome.seq,
            at_ms: outcome.at.timestamp_millis(),
        }));
    }
    let envelope = Envelope::decode(&bytes)?;
    let (id, statuses): (&str, Vec<OutcomeStatus>) = match &envelope.event {
        Event::NotificationUpdated {
            id, changes, first, ..
        } => {
            // Only the first seen / read of a notification counts; a record without `first`
            // (written before it existed) counts what it changed.
            let (seen, read) = match first {
                Some(first) => (first.seen, first.read),
                None => (changes.seen == Some(true), changes.read == Some(true)),
            };
            let mut statuses = Vec::new();
            if seen {
                statuses.push(OutcomeStatus::Seen);
            }
            if read {
                statuses.push(OutcomeStatus::Read);
            }
            (id, statuses)
        }
        Event::NotificationClicked { id, first } => match first {
            Some(false) => return Ok(None),
            _ => (id, vec![OutcomeStatus::Clicked]),
        },
        Event::AllRead { .. }
        | Event::NotificationCreated { .. }
        | Event::NotificationDeleted { .. } => return Ok(None),
    };
    if statuses.is_empty() {
        return Ok(None);
    }
    let entries = statuses
        .into_iter()
        .map(|status| HistoryEntry {
            channel: Channel::InApp,
            status,
            reason: None,
            at: envelope.occurred_at,
            latency_ms: None,
            provider: None,
        })
        .collect();
    Ok(Some(Item {
        offset: record.offset,
        user_id: envelope.user_id.clone(),
        tenant: envelope.tenant.clone(),
        notification_id: id.to_owned(),
        kind: None,
        kind_is_authoritative: false,
        engagement: true,
        day: envelope.occurred_at.date_naive(),
        entries,
        // A click changes no seq (its envelope's is 0).
        seq: (envelope.seq > 0).then_some(envelope.seq),
        at_ms: envelope.occurred_at.timestamp_millis(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn record(topic: &str, value: &[u8]) -> KafkaRecord {
        serde_json::from_value(serde_json::json!({
            "topic": topic, "partition": 0, "offset": 7, "timestamp": 0,
            "timestampType": "CREATE_TIME", "key": null,
            "value": base64::engine::general_purpose::STANDARD.encode(value), "headers": []
        }))
        .unwrap_or_default()
    }

    #[test]
    fn reading_an_unseen_notification_counts_seen_and_read_under_in_app() {
        let raw = br#"{"v":1,"id":"e1","userId":"alice","seq":3,"occurredAt":"2026-11-29T23:59:59Z","type":"NOTIFICATION_UPDATED","payload":{"id":"n1","changes":{"read":true,"seen":true},"counts":{"unread":0,"unseen":0,"total":1,"byType":{},"version":3}}}"#;
        let item = decode(
            Topic::NotificationAnalytics,
            &record("notification-analytics", raw),
        )
        .ok()
        .flatten();
        let item = item.unwrap_or_else(|| panic!("an engagement item"));
        let statuses: Vec<(Channel, OutcomeStatus)> =
            item.entries.iter().map(|e| (e.channel, e.status)).collect();
        assert_eq!(
            statuses,
            [
                (Channel::InApp, OutcomeStatus::Seen),
                (Channel::InApp, OutcomeStatus::Read)
            ]
        );
        assert_eq!(item.day.to_string(), "2026-11-29");
        assert!(item.engagement && item.kind.is_none());
    }

    #[test]
    fn all_read_and_non_engagement_changes_count_nothing() {
        let all_read = br#"{"v":1,"id":"e2","userId":"alice","seq":4,"occurredAt":"2026-11-29T12:00:00Z","type":"ALL_READ","payload":{"counts":{"unread":0,"unseen":0,"total":1,"byType":{},"version":4}}}"#;
        let archived = br#"{"v":1,"id":"e3","userId":"alice","seq":5,"occurredAt":"2026-11-29T12:00:00Z","type":"NOTIFICATION_UPDATED","payload":{"id":"n1","changes":{"archived":true},"counts":{"unread":0,"unseen":0,"total":0,"byType":{},"version":5}}}"#;
        for raw in [&all_read[..], &archived[..]] {
            assert!(matches!(
                decode(
                    Topic::NotificationAnalytics,
                    &record("notification-analytics", raw)
                ),
                Ok(None)
            ));
        }
        assert!(matches!(
            decode(
                Topic::NotificationDelivery,
                &record("notification-delivery", b"{}")
            ),
            Err(Poison::Outcome(_))
        ));
    }
}
