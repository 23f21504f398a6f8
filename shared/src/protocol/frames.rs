//! The WebSocket protocol: every frame the server sends and every action a client may send,
//! defined once. `docs/realtime.md` explains the protocol; `web/herald-client.js` speaks it.
//!
//! Server to client, one JSON object per frame, each at most [`FRAME_MAX_BYTES`]:
//!
//! | `type` | fields | when |
//! |---|---|---|
//! | `notification.created` | `seq, id, notification?, counts` | a notification arrived; `notification` is absent in the compact form (fetch it over HTTP) |
//! | `notification.updated` | `seq, id, changes, counts, digest?` | read / seen / archived changed (`changes` holds only what changed), or a digest item collected one more event (`digest`, whose `items` are empty in the compact form: fetch the item over HTTP) |
//! | `notification.deleted` | `seq, id, counts` | a notification was deleted |
//! | `counts` | `seq, counts, allRead?` | counts changed without one notification changing (mark-all-read) |
//! | `sync.result` | `changes, upTo, more` | a page of the `sync` reply: `changes` are the frames above, oldest first |
//! | `resync` | `head` | `since` is older than the retained change log: refetch over HTTP |
//! | `pong` | | the reply to `ping` |
//! | `error` | `code, message, action?, retryAfter?` | a refused client frame; the connection stays open (`retryAfter`: seconds to wait, with code `rate-limited`) |
//!
//! Contract: every frame that changes state carries the user's `seq`. A client applies frames in
//! `seq` order: it drops a `seq` at or below the last one it applied, and a gap makes it `sync`
//! from the last one it applied.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::digest::Digest;
use crate::model::{Counts, FlagsPatch, Notification};
use crate::protocol::{Envelope, Event};

/// API Gateway's WebSocket frame limit (32 KB), in bytes: no frame is larger, in either direction.
pub const FRAME_MAX_BYTES: usize = 32 * 1024;

/// A frame the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Frame {
    #[serde(rename = "notification.created")]
    Created {
        seq: u64,
        id: String,
        /// Absent in the compact form, sent when the whole frame would exceed the frame limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notification: Option<Box<Notification>>,
        counts: Counts,
    },
    #[serde(rename = "notification.updated")]
    Updated {
        seq: u64,
        id: String,
        changes: FlagsPatch,
        counts: Counts,
        /// A digest item's new state, when it collected one more event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<Box<Digest>>,
    },
    #[serde(rename = "notification.deleted")]
    Deleted {
        seq: u64,
        id: String,
        counts: Counts,
    },
    #[serde(rename = "counts")]
    Counts {
        seq: u64,
        counts: Counts,
        /// Present when mark-all-read caused it: every notification with a lower `seq` (of
        /// `notificationType`, when given) is now read.
        #[serde(default, rename = "allRead", skip_serializing_if = "Option::is_none")]
        all_read: Option<AllRead>,
    },
    #[serde(rename = "sync.result")]
    SyncResult {
        /// `notification.created`, `notification.updated`, `notification.deleted` and `counts`
        /// frames, oldest first.
        #[schema(no_recursion)]
        changes: Vec<Frame>,
        /// The seq of the last change in this page (or the `since` asked for, when none).
        #[serde(rename = "upTo")] // as `rename_all_fields` says; utoipa reads only this
        up_to: u64,
        /// More pages follow.
        more: bool,
    },
    #[serde(rename = "resync")]
    Resync { head: u64 },
    #[serde(rename = "pong")]
    Pong {},
    #[serde(rename = "error")]
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
        /// Seconds to wait before sending another action (with [`ErrorCode::RateLimited`]).
        #[serde(
            default,
            rename = "retryAfter", // as `rename_all_fields` says; utoipa reads only this
            skip_serializing_if = "Option::is_none"
        )]
        retry_after: Option<u64>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllRead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_type: Option<String>,
}

/// Why a client frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not a JSON object with a string `action`.
    BadFrame,
    UnknownAction,
    /// A field is missing or has the wrong type or size.
    Invalid,
    /// No such notification in the caller's inbox.
    NotFound,
    /// A dependency (Redis) failed; retry later.
    Unavailable,
    /// The connection is no longer registered (its token expired or it was closed); reconnect.
    Unauthorized,
    /// The user is over their limit of actions; `retryAfter` says how long to wait. The action
    /// did not run.
    RateLimited,
}

impl Frame {
    /// The live frame for a change, or `None` for events that change no inbox state (clicks).
    pub fn from_envelope(envelope: &Envelope) -> Option<Frame> {
        let seq = envelope.seq;
        Some(match &envelope.event {
            Event::NotificationCreated {
                notification,
                counts,
            } => Frame::Created {
                seq,
                id: notification.id.clone(),
                notification: Some(Box::new(notification.clone())),
                counts: counts.clone(),
            },
            Event::NotificationUpdated {
                id,
                changes,
                counts,
                digest,
                ..
            } => Frame::Updated {
                seq,
                id: id.clone(),
                changes: *changes,
                counts: counts.clone(),
                digest: digest.clone(),
            },
            Event::NotificationDeleted { id, counts } => Frame::Deleted {
                seq,
                id: id.clone(),
                counts: counts.clone(),
            },
            Event::AllRead {
                notification_type,
                counts,
            } => Frame::Counts {
                seq,
                counts: counts.clone(),
                all_read: Some(AllRead {
                    notification_type: notification_type.clone(),
                }),
            },
            Event::NotificationClicked { .. } => return None,
        })
    }

    /// The same frame without the notification body: what a client receives when the full frame
    /// is over the limit. Other frames are already small and come back unchanged.
    pub fn compact(&self) -> Frame {
        match self {
            Frame::Created {
                seq, id, counts, ..
            } => Frame::Created {
                seq: *seq,
                id: id.clone(),
                notification: None,
                counts: counts.clone(),
            },
            // A digest item's update keeps its count and times; its events are fetched over HTTP.
            Frame::Updated {
                seq,
                id,
                changes,
                counts,
                digest: Some(digest),
            } => Frame::Updated {
                seq: *seq,
                id: id.clone(),
                changes: *changes,
                counts: counts.clone(),
                digest: Some(Box::new(Digest {
                    items: Vec::new(),
                    ..(**digest).clone()
                })),
            },
            other => other.clone(),
        }
    }

    /// The `seq` of a state-changing frame.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Frame::Created { seq, .. }
            | Frame::Updated { seq, .. }
            | Frame::Deleted { seq, .. }
            | Frame::Counts { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>, action: Option<&str>) -> Frame {
        Frame::Error {
            code,
            message: message.into(),
            action: action.map(str::to_owned),
            retry_after: None,
        }
    }

    /// The refusal of an action over the user's limit.
    pub fn rate_limited(action: &str, retry_after_secs: u64) -> Frame {
        Frame::Error {
            code: ErrorCode::RateLimited,
            message: format!("too many actions; retry after {retry_after_secs} s"),
            action: Some(action.to_owned()),
            retry_after: Some(retry_after_secs),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The encoded frame, compacted if it is over the limit.
    pub fn encode_within_limit(&self) -> Vec<u8> {
        let bytes = self.encode();
        if bytes.len() <= FRAME_MAX_BYTES {
            bytes
        } else {
            self.compact().encode()
        }
    }
}

/// Packs change frames into `sync.result` pages of at most [`FRAME_MAX_BYTES`] each, oldest first.
/// `since` is the position asked for; `last_is_final` says whether the final page ends the reply
/// (`more: false`). Each change is compacted if it alone would overflow a page.
pub fn sync_pages(since: u64, changes: Vec<Frame>, last_is_final: bool) -> Vec<Vec<u8>> {
    // `{"type":"sync.result","changes":[],"upTo":<u64>,"more":false}` plus separators.
    const ENVELOPE_BYTES: usize = 80;
    let budget = FRAME_MAX_BYTES - ENVELOPE_BYTES;
    let mut pages: Vec<Vec<Frame>> = Vec::new();
    let mut current: Vec<Frame> = Vec::new();
    let mut used = 0;
    for frame in changes {
        let mut size = frame.encode().len();
        let frame = if size > budget {
            let small = frame.compact();
            size = small.encode().len();
            small
        } else {
            frame
        };
        if used + size + 1 > budget && !current.is_empty() {
            pages.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size + 1;
        current.push(frame);
    }
    if !current.is_empty() || pages.is_empty() {
        pages.push(current);
    }
    let count = pages.len();
    let mut up_to = since;
    pages
        .into_iter()
        .enumerate()
        .map(|(i, changes)| {
            up_to = changes.iter().filter_map(Frame::seq).max().unwrap_or(up_to);
            Frame::SyncResult {
                changes,
                up_to,
                more: i + 1 < count || !last_is_final,
            }
            .encode()
        })
        .collect()
}

/// A client frame (route selection `$request.body.action`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Action {
    /// Send every change after `since` (`sync.result` pages, or `resync`).
    Sync {
        since: u64,
    },
    MarkRead {
        id: String,
    },
    MarkSeen {
        ids: Vec<String>,
    },
    MarkAllRead {
        #[serde(default, rename = "type")]
        notification_type: Option<String>,
    },
    Archive {
        id: String,
    },
    Click {
        id: String,
    },
    Ping {},
}

/// The most ids one `markSeen` may carry.
pub const MARK_SEEN_MAX_IDS: usize = 100;

impl Action {
    /// Parses a client frame; the error is the frame to send back.
    pub fn parse(body: &str) -> Result<Action, Frame> {
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|_| Frame::error(ErrorCode::BadFrame, "a frame is one JSON object", None))?;
        let name = value
            .get("action")
            .and_then(|a| a.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Frame::error(
                    ErrorCode::BadFrame,
                    "a frame needs a string \"action\"",
                    None,
                )
            })?;
        const KNOWN: [&str; 7] = [
            "sync",
            "markRead",
            "markSeen",
            "markAllRead",
            "archive",
            "click",
            "ping",
        ];
        if !KNOWN.contains(&name.as_str()) {
            return Err(Frame::error(
                ErrorCode::UnknownAction,
                format!("unknown action; known: {}", KNOWN.join(", ")),
                Some(&name),
            ));
        }
        let action: Action = serde_json::from_value(value)
            .map_err(|e| Frame::error(ErrorCode::Invalid, e.to_string(), Some(&name)))?;
        if let Action::MarkSeen { ids } = &action {
            if ids.is_empty() || ids.len() > MARK_SEEN_MAX_IDS {
                return Err(Frame::error(
                    ErrorCode::Invalid,
                    format!("ids must hold 1 to {MARK_SEEN_MAX_IDS} ids"),
                    Some(&name),
                ));
            }
        }
        Ok(action)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Sync { .. } => "sync",
            Action::MarkRead { .. } => "markRead",
            Action::MarkSeen { .. } => "markSeen",
            Action::MarkAllRead { .. } => "markAllRead",
            Action::Archive { .. } => "archive",
            Action::Click { .. } => "click",
            Action::Ping {} => "ping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counts(version: u64) -> Counts {
        Counts {
            unread: 1,
            version,
            ..Counts::default()
        }
    }

    #[test]
    fn a_compact_digest_update_keeps_the_count_and_drops_the_events() {
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let big = crate::digest::DigestItem {
            title: "t".into(),
            body: "b".repeat(10_000),
            data: serde_json::json!({}),
        };
        let request = crate::digest::DigestRequest {
            key: "k".into(),
            window: "1m".into(),
        };
        let mut digest = Digest::open(&request, big.clone(), at);
        for _ in 0..4 {
            digest.add(big.clone(), at);
        }
        let f = Frame::Updated {
            seq: 9,
            id: "n1".into(),
            changes: FlagsPatch::default(),
            counts: counts(9),
            digest: Some(Box::new(digest)),
        };
        let bytes = f.encode_within_limit();
        assert!(bytes.len() <= FRAME_MAX_BYTES);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(v["digest"]["count"], 5);
        assert_eq!(v["digest"]["items"], serde_json::json!([]));
    }

    #[test]
    fn frames_have_the_documented_wire_shape() {
        let f = Frame::Updated {
            seq: 5,
            id: "n1".into(),
            changes: FlagsPatch {
                read: Some(true),
                ..FlagsPatch::default()
            },
            counts: counts(5),
            digest: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&f.encode()).unwrap_or_default();
        assert_eq!(v["type"], "notification.updated");
        assert_eq!(v["seq"], 5);
        assert_eq!(v["changes"], json!({"read": true}));
        assert_eq!(v["counts"]["version"], 5);
        let c = Frame::Counts {
            seq: 6,
            counts: counts(6),
            all_read: Some(AllRead {
                notification_type: Some("comment".into()),
            }),
        };
        let v: serde_json::Value = serde_json::from_slice(&c.encode()).unwrap_or_default();
        assert_eq!(v["allRead"]["notificationType"], "comment");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&Frame::Pong {}.encode()).ok(),
            Some(json!({"type": "pong"}))
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&Frame::rate_limited("sync", 7).encode())
                .ok(),
            Some(
                json!({"type": "error", "code": "rate-limited", "action": "sync",
                "message": "too many actions; retry after 7 s", "retryAfter": 7})
            )
        );
    }

    #[test]
    fn actions_parse_and_refusals_say_why() {
        assert_eq!(
            Action::parse(r#"{"action":"sync","since":3}"#),
            Ok(Action::Sync { since: 3 })
        );
        assert_eq!(
            Action::parse(r#"{"action":"markAllRead","type":"comment"}"#),
            Ok(Action::MarkAllRead {
                notification_type: Some("comment".into())
            })
        );
        assert_eq!(Action::parse(r#"{"action":"ping"}"#), Ok(Action::Ping {}));
        let code = |body: &str| match Action::parse(body) {
            Err(Frame::Error { code, .. }) => Some(code),
            _ => None,
        };
        assert_eq!(code("not json"), Some(ErrorCode::BadFrame));
        assert_eq!(code(r#"{"x":1}"#), Some(ErrorCode::BadFrame));
        assert_eq!(
            code(r#"{"action":"dance"}"#),
            Some(ErrorCode::UnknownAction)
        );
        assert_eq!(code(r#"{"action":"sync"}"#), Some(ErrorCode::Invalid));
        assert_eq!(
            code(r#"{"action":"markSeen","ids":[]}"#),
            Some(ErrorCode::Invalid)
        );
    }

    #[test]
    fn sync_replies_are_paged_within_the_frame_limit() {
        let big = "x".repeat(3_000);
        let frames: Vec<Frame> = (1..=40)
            .map(|seq| Frame::Deleted {
                seq,
                id: big.clone(),
                counts: counts(seq),
            })
            .collect();
        let pages = sync_pages(0, frames, true);
        assert!(pages.len() > 1);
        let mut seen = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            assert!(page.len() <= FRAME_MAX_BYTES, "page {i} is {}", page.len());
            match serde_json::from_slice::<Frame>(page) {
                Ok(Frame::SyncResult {
                    changes,
                    up_to,
                    more,
                }) => {
                    assert_eq!(more, i + 1 < pages.len());
                    assert_eq!(Some(up_to), changes.last().and_then(Frame::seq));
                    seen.extend(changes.iter().filter_map(Frame::seq));
                }
                other => panic!("page {i}: {other:?}"),
            }
        }
        assert_eq!(seen, (1..=40).collect::<Vec<_>>());
        let empty = sync_pages(9, Vec::new(), true);
        assert_eq!(
            serde_json::from_slice::<Frame>(&empty[0]).ok(),
            Some(Frame::SyncResult {
                changes: vec![],
                up_to: 9,
                more: false
            })
        );
    }
}
