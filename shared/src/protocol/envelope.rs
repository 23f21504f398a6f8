//! The event envelope: the one JSON shape of every record on `notification-events` and
//! `notification-analytics`, of every entry in a user's change log, and of every change that
//! `GET /v1/changes` and the WebSocket `sync` return.
//!
//! ```json
//! {"v":1,"id":"<uuidv7>","type":"NOTIFICATION_CREATED","userId":"alice","seq":42,
//!  "occurredAt":"2026-11-29T12:00:00Z","payload":{"notification":{..},"counts":{..}}}
//! ```
//!
//! `tenant` names the user's tenant; it is absent for the default tenant (and in every record
//! written before tenants), so a consumer reads a record without it as the default tenant's.
//!
//! Contract: `seq` is the user's sequence number assigned atomically with the change in Redis, so
//! consumers order a user's changes by it and drop any `seq` they have already applied. Every
//! state-changing payload carries the user's exact counts at that `seq`. The `Idempotency-Key` of
//! the request that caused a change travels as the Kafka header [`IDEMPOTENCY_KEY_HEADER`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::digest::Digest;
use crate::model::{Counts, FlagsPatch, Notification};
use crate::tenant::Tenant;

/// The schema version this code writes and reads. A consumer skips (and counts) any other.
pub const ENVELOPE_VERSION: u32 = 1;
/// The Kafka header that carries the creating request's `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub v: u32,
    /// UUIDv7 of this event.
    pub id: String,
    pub user_id: String,
    /// The user's tenant; absent for the default tenant.
    #[serde(default, skip_serializing_if = "crate::tenant::is_default")]
    #[schema(value_type = Option<String>, pattern = "^[a-z0-9._-]{1,64}$")]
    pub tenant: Tenant,
    pub seq: u64,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened. Serialised as `"type": "<NAME>", "payload": {..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(
    tag = "type",
    content = "payload",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    NotificationCreated {
        notification: Notification,
        counts: Counts,
    },
    /// `changes` holds only the flags that changed, with their new values; `first`, which of
    /// them happened to this notification for the first time (absent in records written before
    /// it existed). A digest item that collected one more event carries its new `digest`
    /// (and no flag changes).
    NotificationUpdated {
        id: String,
        changes: FlagsPatch,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first: Option<FirstEngagement>,
        counts: Counts,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<Box<Digest>>,
    },
    NotificationDeleted {
        id: String,
        counts: Counts,
    },
    /// Every notification with a lower `seq` (of `notificationType`, when given) is now read.
    AllRead {
        // Named here as `rename_all_fields` would: the OpenAPI schema (utoipa) reads only this.
        #[serde(
            default,
            rename = "notificationType",
            skip_serializing_if = "Option::is_none"
        )]
        notification_type: Option<String>,
        counts: Counts,
    },
    /// An interaction, recorded for analytics; it changes no inbox state and no `seq`. `first`:
    /// the notification's first click (absent in records written before it existed).
    NotificationClicked {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first: Option<bool>,
    },
}

/// The engagement a change made for the first time in its notification's life: what analytics
/// counts, so a notification read, marked unread and read again is read once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirstEngagement {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
}

/// Why bytes from Kafka or the change log are not a usable envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a JSON envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown envelope version {0}")]
    Version(u32),
}

impl Envelope {
    /// A new event for `user_id` of the default tenant ([`Envelope::in_tenant`] names another);
    /// `seq` and counts are filled in by the store, which assigns them.
    pub fn new(user_id: &str, event: Event) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            tenant: Tenant::default_tenant(),
            seq: 0,
            occurred_at: Utc::now(),
            event,
        }
    }

    /// The same event, of `tenant`'s user.
    pub fn in_tenant(mut self, tenant: &Tenant) -> Self {
        self.tenant = tenant.clone();
        self
    }

    /// Parses an envelope and checks its version: another version is [`EnvelopeError::Version`]
    /// whether or not the rest reads as this version's shape.
    ///
    /// One pass in the usual case (every record a consumer reads): the version is read from the
    /// parsed envelope, and the bytes are read again for `v` alone only when they do not parse.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(envelope) if envelope.v == ENVELOPE_VERSION => Ok(envelope),
            Ok(envelope) => Err(EnvelopeError::Version(envelope.v)),
            Err(e) => match serde_json::from_slice::<Version>(bytes) {
                Ok(Version { v }) if v != ENVELOPE_VERSION => Err(EnvelopeError::Version(v)),
                _ => Err(EnvelopeError::Json(e)),
            },
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The wire name of the event type, as in `"type"`.
    pub fn type_name(&self) -> &'static str {
        match self.event {
            Event::NotificationCreated { .. } => "NOTIFICATION_CREATED",
            Event::NotificationUpdated { .. } => "NOTIFICATION_UPDATED",
            Event::NotificationDeleted { .. } => "NOTIFICATION_DELETED",
            Event::AllRead { .. } => "ALL_READ",
            Event::NotificationClicked { .. } => "NOTIFICATION_CLICKED",
        }
    }

    /// The counts this event carries, if it changes state.
    pub fn counts(&self) -> Option<&Counts> {
        match &self.event {
            Event::NotificationCreated { counts, .. }
            | Event::NotificationUpdated { counts, .. }
            | Event::NotificationDeleted { counts, .. }
            | Event::AllRead { counts, .. } => Some(counts),
            Event::NotificationClicked { .. } => None,
        }
    }

    /// Stamps the `seq` and counts the store assigned (and the notification's own `seq`).
    pub fn stamp(&mut self, seq: u64, new_counts: Counts) {
        self.seq = seq;
        match &mut self.event {
            Event::NotificationCreated {
                notification,
                counts,
            } => {
                notification.seq = seq;
                *counts = new_counts;
            }
            Event::NotificationUpdated { counts, .. }
            | Event::NotificationDeleted { counts, .. }
            | Event::AllRead { counts, .. } => *counts = new_counts,
            Event::NotificationClicked { .. } => {}
        }
    }

    /// May this change have moved the user's unread count other than by a new notification (a
    /// read or unread mark, an archive or unarchive, a delete, a mark-all-read)? Such changes
    /// bring the user's phones a silent badge update. A delete does not say whether what it
    /// removed was unread, so every delete counts.
    pub fn changes_unread(&self) -> bool {
        match &self.event {
            Event::NotificationUpdated { changes, .. } => {
                changes.read.is_some() || changes.archived.is_some()
            }
            Event::NotificationDeleted { .. } | Event::AllRead { .. } => true,
            Event::NotificationCreated { .. } | Event::NotificationClicked { .. } => false,
        }
    }

    /// Does this event also go to `notification-analytics` (engagement: read, seen, click)? A
    /// change whose engagement is not a first one does not: analytics would count nothing.
    pub fn is_engagement(&self) -> bool {
        match &self.event {
            Event::NotificationUpdated {
                first: Some(first), ..
            } => first.read || first.seen,
            Event::NotificationUpdated { changes, .. } => {
                changes.read == Some(true) || changes.seen == Some(true)
            }
            Event::NotificationClicked { first, .. } => *first != Some(false),
            Event::AllRead { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shape_is_flat_type_and_payload() {
        let mut e = Envelope::new(
            "alice",
            Event::NotificationDeleted {
                id: "n1".into(),
                counts: Counts::default(),
            },
        );
        e.stamp(
            7,
            Counts {
                unread: 1,
                version: 7,
                ..Default::default()
            },
        );
        let json: serde_json::Value = serde_json::from_slice(&e.encode()).unwrap_or_default();
        assert_eq!(json["type"], "NOTIFICATION_DELETED");
        assert_eq!(json["userId"], "alice");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["v"], 1);
        assert_eq!(json["payload"]["id"], "n1");
        assert_eq!(json["payload"]["counts"]["unread"], 1);
        assert_eq!(json["payload"]["counts"]["byType"], serde_json::json!({}));
        let back = Envelope::decode(&e.encode()).ok();
        assert_eq!(back.as_ref(), Some(&e));
    }

    #[test]
    fn the_changes_that_may_move_the_unread_count_are_reads_archives_deletes_and_mark_all_read() {
        let event = |e: Event| Envelope::new("alice", e);
        let updated = |changes: FlagsPatch| Event::NotificationUpdated {
            id: "n1".into(),
            changes,
            first: None,
            counts: Counts::default(),
            digest: None,
        };
        for (patch, moves) in [
            (r#"{"read": true}"#, true),
            (r#"{"read": false}"#, true),
            (r#"{"archived": true}"#, true),
            (r#"{"seen": true}"#, false),
        ] {
            let changes: FlagsPatch = serde_json::from_str(patch).unwrap_or_default();
            assert_eq!(event(updated(changes)).changes_unread(), moves, "{patch}");
        }
        let deleted = Event::NotificationDeleted {
            id: "n1".into(),
            counts: Counts::default(),
        };
        let all_read = Event::AllRead {
            notification_type: None,
            counts: Counts::default(),
        };
        let clicked = Event::NotificationClicked {
            id: "n1".into(),
            first: None,
        };
        assert!(event(deleted).changes_unread() && event(all_read).changes_unread());
        assert!(!event(clicked).changes_unread());
    }

    #[test]
    fn unknown_versions_are_refused() {
        let raw = br#"{"v":2,"id":"x","userId":"a","seq":1,"occurredAt":"2026-01-01T00:00:00Z","type":"X","payload":{}}"#;
        assert!(matches!(
            Envelope::decode(raw),
            Err(EnvelopeError::Version(2))
        ));
        // Another version is refused whether or not the rest reads as this version's shape.
        let same_shape = br#"{"v":2,"id":"x","userId":"a","seq":1,"occurredAt":"2026-01-01T00:00:00Z","type":"NOTIFICATION_DELETED","payload":{"id":"n","counts":{"total":0,"unseen":0,"unread":0,"byType":{},"version":0}}}"#;
        assert!(matches!(
            Envelope::decode(same_shape),
            Err(EnvelopeError::Version(2))
        ));
        assert!(matches!(
            Envelope::decode(b"nope"),
            Err(EnvelopeError::Json(_))
        ));
    }
}
