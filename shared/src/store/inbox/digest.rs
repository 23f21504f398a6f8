//! Digest items in the inbox ([`crate::digest`]): a create with a digest either opens a new item
//! for its (user, key) or adds its event to the item that key has open.
//!
//! Each key's open item is recorded in the user's `digests` hash as a token
//! `<itemId>|<closesMs>|<count>`. The decision is taken here, the write in one script that first
//! checks the token is still the one read (optimistic concurrency): `create.lua` for a new item,
//! `digest_update.lua` for an update, which also checks the item was not read, archived, deleted
//! or evicted in between. A script that finds the token moved writes nothing and answers
//! `stale`; the create then looks again. So concurrent events for one key all land in one item,
//! each counted once, and every update is its own `NOTIFICATION_UPDATED` change.

use chrono::{DateTime, TimeZone, Utc};
use redis::{AsyncCommands, Value};

use crate::digest::DigestItem;
use crate::model::{Counts, Flags, FlagsPatch, Notification};
use crate::protocol::{Envelope, Event};

use super::reply::{int, parse_doc, state_bits, text, to_json};
use super::{refused, CreateOutcome, InboxStore, RequestArgs};
use crate::store::record::{parse_counts, Change};
use crate::store::{scripts, StoreError};

/// How often a create looks again when other events keep moving the item under it.
const ATTEMPTS: usize = 32;
/// State bits (`prelude.lua`) that close an item early: read (now or ever) and archived.
const CLOSED_BITS: u8 = 1 | 16 | 4;

/// A key's open item, as its token records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) id: String,
    pub(super) closes_ms: i64,
    pub(super) count: u64,
}

impl Token {
    pub(super) fn encode(&self) -> String {
        format!("{}|{}|{}", self.id, self.closes_ms, self.count)
    }

    fn decode(raw: &str) -> Option<Token> {
        let mut parts = raw.split('|');
        Some(Token {
            id: parts.next()?.to_owned(),
            closes_ms: parts.next()?.parse().ok()?,
            count: parts.next()?.parse().ok()?,
        })
    }
}

/// A new item's condition: the key's token is still `seen` ('' = none); it becomes `token`.
pub(super) struct Guard {
    pub(super) key: String,
    pub(super) seen: String,
    pub(super) token: Token,
}

impl InboxStore {
    /// Creates `notification` (which carries a digest) as a new item, or adds it to its key's
    /// open item.
    pub(super) async fn join_digest(
        &self,
        notification: Notification,
        request: &RequestArgs<'_>,
        now: DateTime<Utc>,
    ) -> Result<CreateOutcome, StoreError> {
        let Some(digest) = notification.digest.clone() else {
            return Err(StoreError::Corrupt("not a digest item".into()));
        };
        let keys = self.keys.user(&notification.user_id);
        for _ in 0..ATTEMPTS {
            let seen: Option<String> = self.conn.clone().hget(keys.digests(), &digest.key).await?;
            let open = seen.as_deref().and_then(Token::decode);
            if let Some(open) = open.filter(|t| t.closes_ms > now.timestamp_millis()) {
                let (doc, state): (Option<String>, Option<String>) = redis::pipe()
                    .hget(keys.docs(), &open.id)
                    .hget(keys.flags(), &open.id)
                    .query_async(&mut self.conn.clone())
                    .await?;
                if let (Some(doc), Some(state)) = (doc, state) {
                    let bits = state_bits(&state)?;
                    if bits & CLOSED_BITS == 0 {
                        let item = parse_doc(&doc, Flags::from_bits(bits))?;
                        if let Some(outcome) = self
                            .add_to_item(item, &notification, &open, &digest.key, request, now)
                            .await?
                        {
                            return Ok(outcome);
                        }
                        continue;
                    }
                }
            }
            let guard = Guard {
                key: digest.key.clone(),
                seen: seen.unwrap_or_default(),
                token: Token {
                    id: notification.id.clone(),
                    closes_ms: digest.closes_at().timestamp_millis(),
                    count: 1,
                },
            };
            if let Some(outcome) = self
                .insert(notification.clone(), request, now, Some(&guard))
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(StoreError::Corrupt(format!(
            "digest {:?} kept changing over {ATTEMPTS} attempts",
            digest.key
        )))
    }

    /// `event`'s title, body and data added to the open `item` (`None`: the item moved on).
    async fn add_to_item(
        &self,
        mut item: Notification,
        event: &Notification,
        open: &Token,
        key: &str,
        request: &RequestArgs<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let Some(digest) = item.digest.as_mut() else {
            return Err(StoreError::Corrupt(format!(
                "item {} has no digest",
                item.id
            )));
        };
        let at = event.created_at;
        digest.add(
            DigestItem {
                title: event.title.clone(),
                body: event.body.clone(),
                data: event.data.clone(),
            },
            at,
        );
        let digest = digest.clone();
        let token = Token {
            count: digest.count,
            ..open.clone()
        };
        // Stored as every document is: seq 0 (the store prefixes the item's seq), flags false.
        let stored = to_json(&Notification {
            seq: 0,
            read: false,
            seen: false,
            archived: false,
            ..item.clone()
        });
        let mut envelope = Envelope::new(
            &item.user_id,
            Event::NotificationUpdated {
                id: item.id.clone(),
                changes: FlagsPatch::default(),
                first: None,
                counts: Counts::default(),
                digest: Some(Box::new(digest)),
            },
        )
        .in_tenant(self.keys.tenant());
        envelope.occurred_at = Utc
            .timestamp_millis_opt(at.timestamp_millis())
            .single()
            .unwrap_or(at);
        let keys = self.keys.user(&item.user_id);
        let reply: Vec<Value> = scripts::DIGEST_UPDATE
            .key(&keys.inbox()[..])
            .key(&request.idem_key)
            .key(keys.rate())
            .key(keys.digests())
            .arg(&item.id)
            .arg(&stored)
            .arg(to_json(&envelope))
            .arg(request.body_hash)
            .arg(self.settings.idempotency_ttl.as_millis() as u64)
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .arg(request.header)
            .arg(&request.interval_ms)
            .arg(request.burst)
            .arg(key)
            .arg(open.encode())
            .arg(token.encode())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match text(&reply, 0)?.as_str() {
            "updated" => {
                let (seq, counts) = (int(&reply, 1)?, parse_counts(&text(&reply, 2)?)?);
                envelope.stamp(seq, counts);
                Ok(Some(CreateOutcome::Created {
                    notification: item,
                    change: Change {
                        envelope,
                        idempotency_key: request.claim.map(|c| c.key.clone()),
                        written_at_ms: now.timestamp_millis(),
                    },
                }))
            }
            other => refused(other, &reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let t = Token {
            id: "0190-a".into(),
            closes_ms: 1_700_000_000_000,
            count: 7,
        };
        assert_eq!(Token::decode(&t.encode()), Some(t));
        assert_eq!(Token::decode("x|y|1"), None);
    }
}
