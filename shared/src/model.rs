//! The domain model: notifications, channels, priorities, counts, preferences and delivery
//! outcomes. These are the shapes every function and client agrees on; the JSON field names are
//! part of the public contract (camelCase on the wire).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::digest::Digest;
use crate::escalation::EscalationStep;

/// Where a notification can be delivered. `IN_APP` is the inbox itself (always stored); the others
/// are sent by the `push` function, subject to preferences and quiet hours.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    InApp,
    Push,
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::InApp, Channel::Push, Channel::Email, Channel::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "IN_APP",
            Channel::Push => "PUSH",
            Channel::Email => "EMAIL",
            Channel::Sms => "SMS",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// How important a notification is. `urgent` bypasses opt-outs and quiet hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

/// A stored notification, as the API returns it and as `NOTIFICATION_CREATED` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// UUIDv7, so ids sort by creation time.
    pub id: String,
    /// The recipient's per-user sequence number at creation.
    pub seq: u64,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub channels: Vec<Channel>,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub read: bool,
    pub seen: bool,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    /// Escalation steps the sender asked for ([`crate::escalation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Vec<EscalationStep>>,
    /// A digest item's collected events ([`crate::digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The moment `sendAt: "optimal"` chose and why (only on such notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::ScheduleInfo>,
}

impl Notification {
    /// Does the `push` function have work for it: an off-app channel, or escalation steps?
    pub fn needs_push(&self) -> bool {
        self.channels.iter().any(|c| *c != Channel::InApp) || self.escalate.is_some()
    }
}

/// The state flags of a notification, the only part of it that ever changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub read: bool,
    pub seen: bool,
    pub archived: bool,
}

impl Flags {
    pub const READ: u8 = 1;
    pub const SEEN: u8 = 2;
    pub const ARCHIVED: u8 = 4;

    pub fn from_bits(bits: u8) -> Self {
        Flags {
            read: bits & Self::READ != 0,
            seen: bits & Self::SEEN != 0,
            archived: bits & Self::ARCHIVED != 0,
        }
    }
}

/// A change to a notification's flags. Absent fields are left as they are. On the wire this is the
/// body of `PATCH /v1/notifications/{id}`, and the `changes` of `NOTIFICATION_UPDATED` (which then
/// holds only the fields that really changed, with their new values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
}

impl FlagsPatch {
    pub fn is_empty(&self) -> bool {
        self.read.is_none() && self.seen.is_none() && self.archived.is_none()
    }

    /// The bits to set and the bits to clear. Reading a notification also marks it seen.
    pub fn masks(&self) -> (u8, u8) {
        let (mut set, mut clear) = (0u8, 0u8);
        match self.read {
            Some(true) => set |= Flags::READ | Flags::SEEN,
            Some(false) => clear |= Flags::READ,
            None => {}
        }
        match self.seen {
            Some(true) => set |= Flags::SEEN,
            Some(false) if self.read != Some(true) => clear |= Flags::SEEN,
            _ => {}
        }
        match self.archived {
            Some(true) => set |= Flags::ARCHIVED,
            Some(false) => clear |= Flags::ARCHIVED,
            None => {}
        }
        (set, clear)
    }

    /// The fields that differ between two flag states, with their new values.
    pub fn between(old: Flags, new: Flags) -> Self {
        let diff = |a: bool, b: bool| (a != b).then_some(b);
        FlagsPatch {
            read: diff(old.read, new.read),
            seen: diff(old.seen, new.seen),
            archived: diff(old.archived, new.archived),
        }
    }
}

/// A user's exact inbox counts, valid at `version` (the user's `seq` when they were computed).
/// Archived notifications count in none of them. `byType` holds unread counts per type (types with
/// no unread notification are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub unread: u64,
    pub unseen: u64,
    pub total: u64,
    pub by_type: BTreeMap<String, u64>,
    pub version: u64,
}

/// Channel switches: absent means allowed.
pub type ChannelSwitches = BTreeMap<Channel, bool>;

/// A user's delivery preferences, per type × channel, plus quiet hours for PUSH, EMAIL and SMS.
/// A type entry overrides the default channel by channel; absent means allowed. IN_APP always
/// stores, whatever the preferences say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    #[serde(default)]
    pub default: ChannelSwitches,
    #[serde(default)]
    pub types: BTreeMap<String, ChannelSwitches>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Topic key → `false` to mute that topic: its broadcasts skip this user (counted in the
    /// broadcast's `skipped`). Absent or `true`: not muted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, bool>,
}

impl Preferences {
    /// Has the user muted the topic `key`?
    pub fn mutes_topic(&self, key: &str) -> bool {
        self.topics.get(key) == Some(&false)
    }

    /// Does the user accept `channel` for notifications of type `kind`?
    pub fn allows(&self, kind: &str, channel: Channel) -> bool {
        if channel == Channel::InApp {
            return true;
        }
        self.types
            .get(kind)
            .and_then(|t| t.get(&channel))
            .or_else(|| self.default.get(&channel))
            .copied()
            .unwrap_or(true)
    }
}

/// A daily window, in the user's timezone, during which PUSH, EMAIL and SMS are deferred to the
/// window's end. `start > end` spans midnight (for example 22:00–07:00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, 24-hour clock.
    pub start: String,
    /// `HH:MM`, 24-hour clock.
    pub end: String,
    /// IANA timezone name, for example `Europe/Paris`.
    pub timezone: String,
}

/// Why a [`QuietHours`] value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuietHoursError {
    #[error("`{0}` is not a time of day in HH:MM form")]
    Time(String),
    #[error("`{0}` is not an IANA timezone name")]
    Timezone(String),
    #[error("start and end are the same time")]
    Empty,
}

impl QuietHours {
    fn parse_time(s: &str) -> Result<NaiveTime, QuietHoursError> {
        if s.len() != 5 {
            return Err(QuietHoursError::Time(s.to_owned()));
        }
        NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| QuietHoursError::Time(s.to_owned()))
    }

    /// Checks the times and the timezone.
    pub fn validate(&self) -> Result<(), QuietHoursError> {
        let (start, end) = (Self::parse_time(&self.start)?, Self::parse_time(&self.end)?);
        self.timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| QuietHoursError::Timezone(self.timezone.clone()))?;
        if start == end {
            return Err(QuietHoursError::Empty);
        }
        Ok(())
    }

    /// If `at` falls inside the window, the instant the window ends; otherwise `None`.
    pub fn defer_until(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, QuietHoursError> {
        self.validate()?;
        let (start, end) = (Self::parse_time(&self.start)?, Self::parse_time(&self.end)?);
        let tz: chrono_tz::Tz = self
            .timezone
            .parse()
            .map_err(|_| QuietHoursError::Timezone(self.timezone.clone()))?;
        let local = at.with_timezone(&tz);
        let now = local.time();
        let inside = if start < end {
            now >= start && now < end
        } else {
            now >= start || now < end
        };
        if !inside {
            return Ok(None);
        }
        let mut day = local.date_naive();
        if start > end && now >= start {
            day = day.succ_opt().unwrap_or(day);
        }
        // A DST gap can swallow `end`; the earliest valid instant after it is good enough.
        let local_end = day.and_time(end);
        let resolved = tz.from_local_datetime(&local_end).earliest().or_else(|| {
            tz.from_local_datetime(&(local_end + chrono::Duration::hours(1)))
                .earliest()
        });
        Ok(resolved.map(|t| t.with_timezone(&Utc)))
    }
}

/// The outcome of one delivery attempt on one channel, or an engagement signal. One vocabulary
/// everywhere (`DESIGN.md` §3): "sent" means the channel accepted the message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeStatus {
    Sent,
    Failed,
    Suppressed,
    Deferred,
    Seen,
    Read,
    Clicked,
}

impl OutcomeStatus {
    /// Every status, delivery outcomes first, then engagement in funnel order.
    pub const ALL: [OutcomeStatus; 7] = [
        OutcomeStatus::Sent,
        OutcomeStatus::Failed,
        OutcomeStatus::Suppressed,
        OutcomeStatus::Deferred,
        OutcomeStatus::Seen,
        OutcomeStatus::Read,
        OutcomeStatus::Clicked,
    ];

    /// The wire name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Sent => "sent",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Suppressed => "suppressed",
            OutcomeStatus::Deferred => "deferred",
            OutcomeStatus::Seen => "seen",
            OutcomeStatus::Read => "read",
            OutcomeStatus::Clicked => "clicked",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn a_type_entry_overrides_the_default_channel_by_channel() {
        let prefs: Preferences = serde_json::from_value(serde_json::json!({
            "default": {"EMAIL": false},
            "types": {"digest": {"EMAIL": true, "SMS": false}}
        }))
        .unwrap_or_default();
        assert!(!prefs.allows("comment", Channel::Email));
        assert!(prefs.allows("digest", Channel::Email));
        assert!(!prefs.allows("digest", Channel::Sms));
        assert!(prefs.allows("comment", Channel::Push));
        assert!(prefs.allows("digest", Channel::InApp));
    }

    #[test]
    fn quiet_hours_across_midnight_defer_to_the_local_end() {
        let q = QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            timezone: "Europe/Paris".into(),
        };
        // 23:30 in Paris (UTC+1 in January) → 07:00 next day Paris = 06:00 UTC.
        assert_eq!(
            q.defer_until(at("2026-01-10T22:30:00Z")),
            Ok(Some(at("2026-01-11T06:00:00Z")))
        );
        // 05:00 Paris → 07:00 the same day.
        assert_eq!(
            q.defer_until(at("2026-01-11T04:00:00Z")),
            Ok(Some(at("2026-01-11T06:00:00Z")))
        );
        assert_eq!(q.defer_until(at("2026-01-11T12:00:00Z")), Ok(None));
    }

    #[test]
    fn quiet_hours_are_validated() {
        let bad = |s: &str, e: &str, tz: &str| {
            QuietHours {
                start: s.into(),
                end: e.into(),
                timezone: tz.into(),
            }
            .validate()
        };
        assert_eq!(
            bad("9:00", "10:00", "UTC"),
            Err(QuietHoursError::Time("9:00".into()))
        );
        assert_eq!(
            bad("25:00", "10:00", "UTC"),
            Err(QuietHoursError::Time("25:00".into()))
        );
        assert_eq!(
            bad("09:00", "10:00", "Mars/Base"),
            Err(QuietHoursError::Timezone("Mars/Base".into()))
        );
        assert_eq!(bad("09:00", "09:00", "UTC"), Err(QuietHoursError::Empty));
        assert_eq!(bad("09:00", "10:00", "America/New_York"), Ok(()));
    }

    #[test]
    fn reading_marks_seen_and_patches_report_only_real_changes() {
        let p = FlagsPatch {
            read: Some(true),
            ..Default::default()
        };
        assert_eq!(p.masks(), (Flags::READ | Flags::SEEN, 0));
        let old = Flags {
            read: false,
            seen: true,
            archived: false,
        };
        let new = Flags {
            read: true,
            seen: true,
            archived: false,
        };
        assert_eq!(
            FlagsPatch::between(old, new),
            FlagsPatch {
                read: Some(true),
                ..Default::default()
            }
        );
    }
}
