//! Digests: a burst of events for one (user, key) collapsed into one inbox item.
//!
//! Contract (the inbox side is `store/inbox/digest.rs` and `digest_update.lua`; the off-app side
//! is the `push` function's retry schedule):
//! - a create with `digest: {key, window}` (window from [`WINDOW_MIN`] to [`WINDOW_MAX`]) opens a
//!   new item for (user, key) when none is open; an item is open from its first event until
//!   `firstAt + window`, and stops being open as soon as it is read, archived or deleted (a read
//!   resets nothing retroactively: the next event opens a new item);
//! - a later event while the item is open updates it in place ([`Digest`]: `count`, `lastAt`, the
//!   last [`ITEMS_KEPT`] events), as one `NOTIFICATION_UPDATED` change with its own `seq`; the
//!   unread count goes up once per item, not per event;
//! - the off-app channels send once, when the window closes, rendering the count and the items
//!   ([`Digest::summary`]); quiet hours defer that send like any other;
//! - `priority: urgent` bypasses the digest: the notification is an ordinary one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::escalation::parse_duration;
use crate::limits::{first_forbidden_char, GROUP_KEY_MAX_BYTES};

/// The shortest and longest digest windows.
pub const WINDOW_MIN: Duration = Duration::from_secs(10);
pub const WINDOW_MAX: Duration = Duration::from_secs(86_400);
/// How many of the latest events an item keeps.
pub const ITEMS_KEPT: usize = 5;

/// A create's `digest`: which item the event goes to, and for how long that item collects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestRequest {
    /// 1–128 bytes, chosen by the sender (for example `comments:post-42`).
    pub key: String,
    /// `10s` to `24h`: a whole number and `s`, `m`, `h` or `d`.
    #[schema(example = "10m")]
    pub window: String,
}

impl DigestRequest {
    /// `window` as a duration (valid requests only: [`DigestRequest::check`] refused the others).
    pub fn window(&self) -> Duration {
        parse_duration(&self.window).unwrap_or(WINDOW_MIN)
    }

    /// Every problem with it, each naming its field.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.key.is_empty()
            || self.key.len() > GROUP_KEY_MAX_BYTES
            || first_forbidden_char(&self.key, false).is_some()
        {
            errors.push(FieldError::new(
                "digest.key",
                format!(
                    "must be 1–{GROUP_KEY_MAX_BYTES} bytes without control characters or line/paragraph separators"
                ),
            ));
        }
        match parse_duration(&self.window) {
            Some(w) if (WINDOW_MIN..=WINDOW_MAX).contains(&w) => {}
            _ => errors.push(FieldError::new(
                "digest.window",
                format!(
                    "{:?} must be a duration from 10s to 24h (a whole number and s, m, h or d)",
                    self.window
                ),
            )),
        }
        errors
    }
}

/// One event of a digest, as the item keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigestItem {
    pub title: String,
    pub body: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A digest item's collected events, as the notification carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub key: String,
    pub window: String,
    /// Events collected so far (the first included).
    pub count: u64,
    #[serde(rename = "firstAt")]
    pub first_at: DateTime<Utc>,
    #[serde(rename = "lastAt")]
    pub last_at: DateTime<Utc>,
    /// The last 5 events, oldest first.
    pub items: Vec<DigestItem>,
}

impl Digest {
    /// The item's first event.
    pub fn open(request: &DigestRequest, item: DigestItem, at: DateTime<Utc>) -> Self {
        Digest {
            key: request.key.clone(),
            window: request.window.clone(),
            count: 1,
            first_at: at,
            last_at: at,
            items: vec![item],
        }
    }

    /// One more event.
    pub fn add(&mut self, item: DigestItem, at: DateTime<Utc>) {
        self.count += 1;
        self.last_at = at;
        self.items.push(item);
        let over = self.items.len().saturating_sub(ITEMS_KEPT);
        self.items.drain(..over);
    }

    /// When the item stops collecting and its off-app channels send.
    pub fn closes_at(&self) -> DateTime<Utc> {
        let window = parse_duration(&self.window).unwrap_or(WINDOW_MIN);
        self.first_at + chrono::Duration::from_std(window).unwrap_or_default()
    }

    /// The text the off-app channels send: the count, then the kept events, latest last.
    pub fn summary(&self) -> String {
        let mut text = format!("{} updates", self.count);
        if self.count as usize > self.items.len() {
            text.push_str(&format!(", the last {}", self.items.len()));
        }
        text.push(':');
        for item in &self.items {
            text.push_str("\n- ");
            text.push_str(&item.title);
            if !item.body.is_empty() {
                text.push_str(": ");
                text.push_str(&item.body);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: u64) -> DigestItem {
        DigestItem {
            title: format!("t{i}"),
            body: format!("b{i}"),
            data: serde_json::json!({"i": i}),
        }
    }

    #[test]
    fn windows_out_of_range_and_bad_keys_name_their_field() {
        let check = |key: &str, window: &str| -> Vec<String> {
            DigestRequest {
                key: key.into(),
                window: window.into(),
            }
            .check()
            .into_iter()
            .map(|e| e.field)
            .collect()
        };
        assert!(check("k", "10s").is_empty());
        assert!(check("k", "24h").is_empty());
        assert!(check("k", "1d").is_empty());
        assert_eq!(check("k", "9s"), ["digest.window"]);
        assert_eq!(check("k", "25h"), ["digest.window"]);
        assert_eq!(check("", "soon"), ["digest.key", "digest.window"]);
    }

    #[test]
    fn an_item_keeps_the_count_and_the_last_five_events() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let request = DigestRequest {
            key: "k".into(),
            window: "1m".into(),
        };
        let mut d = Digest::open(&request, item(1), at);
        for i in 2..=50 {
            d.add(item(i), at + chrono::Duration::seconds(i as i64));
        }
        assert_eq!(d.count, 50);
        assert_eq!(d.items.first(), Some(&item(46)));
        assert_eq!(d.items.len(), ITEMS_KEPT);
        assert_eq!(d.closes_at(), at + chrono::Duration::minutes(1));
        assert!(d
            .summary()
            .starts_with("50 updates, the last 5:\n- t46: b46"));
    }
}
