//! [`TopicStore`]: topics, their members, and broadcasts' state and progress.
//!
//! A topic lives in its own slot (`{t:<key>}`): its hash (name, exact subscriber count) and
//! [`TOPIC_BUCKETS`] membership hashes, a user always in bucket [`topic_bucket`]`(user)`. Every
//! membership change is one script on that slot that moves the count with the members, so the
//! count is exact and a call on a missing topic writes nothing. Buckets keep a 100,000-member
//! topic in compact listpack hashes (about 20 bytes a membership, see `docs/topics.md`), and
//! they page the membership exactly: bucket by bucket, users in byte order inside a bucket.
//!
//! A broadcast lives in its own slot (`{b:<id>}`): its state and counters, the set of chunks
//! whose counts are committed, and its rate limit's state. The fan-out splits the buckets into
//! [`BROADCAST_CHUNKS`] chunks; [`TopicStore::commit_chunk`] adds a chunk's counts once, whatever
//! the number of runs of that chunk, so the counters are exact through redelivery.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::keys::{topic_bucket, KeySpace, TOPIC_BUCKETS};
use super::{scripts, RedisConn, StoreError};
use crate::store::NewNotification;

/// How many chunks a broadcast's fan-out has (one Kafka record each); each chunk covers
/// `TOPIC_BUCKETS / BROADCAST_CHUNKS` consecutive buckets.
pub const BROADCAST_CHUNKS: u16 = 32;
/// Buckets per chunk.
pub const BUCKETS_PER_CHUNK: u16 = TOPIC_BUCKETS / BROADCAST_CHUNKS;
/// How long a broadcast's state is kept.
pub const BROADCAST_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub key: String,
    pub name: Option<String>,
    pub subscribers: u64,
}

/// Where a page of subscribers continues: after `after` in bucket `bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberCursor {
    pub bucket: u16,
    pub after: Option<String>,
}

/// A page of a topic's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberPage {
    pub items: Vec<String>,
    pub next: Option<SubscriberCursor>,
}

/// A broadcast's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastStatus {
    /// Accepted with `sendAt`: nothing happens until the scheduler starts it (then `queued`).
    Scheduled,
    Queued,
    Running,
    Done,
    Cancelled,
}

impl BroadcastStatus {
    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "scheduled" => BroadcastStatus::Scheduled,
            "queued" => BroadcastStatus::Queued,
            "running" => BroadcastStatus::Running,
            "done" => BroadcastStatus::Done,
            "cancelled" => BroadcastStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("broadcast status {other}"))),
        })
    }
}

/// A broadcast's state: what to send, to which topic, and its exact progress. `targeted` is the
/// topic's subscriber count when the broadcast was accepted (a scheduled one: when it started);
/// `created + skipped + failed` reaches it when the broadcast is done and the membership did not
/// change meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub id: String,
    pub topic: String,
    pub sender: String,
    pub status: BroadcastStatus,
    pub targeted: u64,
    pub created: u64,
    pub skipped: u64,
    pub failed: u64,
    /// At most this many recipients a second (`None`: as fast as the fan-out goes).
    pub max_per_second: Option<u32>,
    /// When a scheduled broadcast starts (`None`: it started when accepted).
    pub send_at: Option<DateTime<Utc>>,
    /// The notification every recipient gets (its `user_id` is each recipient's).
    pub notification: NewNotification,
}

impl Broadcast {
    fn from_fields(id: &str, fields: HashMap<String, String>) -> Result<Option<Self>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |f: &str| {
            fields
                .get(f)
                .ok_or_else(|| StoreError::Corrupt(format!("broadcast without {f}")))
        };
        let number = |f: &str| -> Result<u64, StoreError> {
            fields.get(f).map_or(Ok(0), |v| {
                v.parse()
                    .map_err(|_| StoreError::Corrupt(format!("broadcast {f}: {v}")))
            })
        };
        Ok(Some(Broadcast {
            id: id.to_owned(),
            topic: get("topic")?.clone(),
            sender: get("sender")?.clone(),
            status: BroadcastStatus::parse(get("status")?)?,
            targeted: number("targeted")?,
            created: number("created")?,
            skipped: number("skipped")?,
            failed: number("failed")?,
            max_per_second: fields
                .get("maxPerSecond")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0),
            send_at: fields
                .get("sendAt")
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis),
            notification: serde_json::from_str(get("notification")?)
                .map_err(|e| StoreError::Corrupt(format!("broadcast notification: {e}")))?,
        }))
    }
}

/// What one chunk's run did, committed by [`TopicStore::commit_chunk`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    pub created: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// Topics, memberships and broadcasts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TopicStore {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl TopicStore {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        TopicStore { conn, keys }
    }

    /// Creates the topic `key` (true) or renames it (false; `name: None` keeps its name).
    pub async fn put(&self, key: &str, name: Option<&str>) -> Result<bool, StoreError> {
        let created: i64 = scripts::TOPIC_PUT
            .key(self.keys.topic(key).meta())
            .arg(if name.is_some() { "1" } else { "0" })
            .arg(name.unwrap_or(""))
            .arg(chrono::Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        // After the topic: a registry entry without its topic is skipped by every reader.
        let _: i64 = self
            .conn
            .clone()
            .sadd(self.keys.topic_registry(), key)
            .await?;
        Ok(created == 1)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Topic>, StoreError> {
        let fields: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.topic(key).meta())
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(Topic {
            key: key.to_owned(),
            name: fields.get("name").cloned(),
            subscribers: fields
                .get("subscribers")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// Deletes the topic and its memberships; false when it did not exist.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let topic = self.keys.topic(key);
        let mut script = scripts::TOPIC_DELETE.key(topic.meta());
        for bucket in 0..TOPIC_BUCKETS {
            script.key(topic.members(bucket));
        }
        let existed: i64 = script.invoke_async(&mut self.conn.clone()).await?;
        let _: i64 = self
            .conn
            .clone()
            .srem(self.keys.topic_registry(), key)
            .await?;
        Ok(existed == 1)
    }

    /// Adds `users` to the topic (already-members are no-ops): how many were added, `None` when
    /// the topic does not exist (nothing written). One script, so all or nothing.
    pub async fn subscribe(&self, key: &str, users: &[String]) -> Result<Option<u64>, StoreError> {
        self.change_members(key, users, "add").await
    }

    /// Removes `users` from the topic: how many were members, `None` when the topic does not
    /// exist.
    pub async fn unsubscribe(
        &self,
        key: &str,
        users: &[String],
    ) -> Result<Option<u64>, StoreError> {
        self.change_members(key, users, "remove").await
    }

    async fn change_members(
        &self,
        key: &str,
        users: &[String],
        op: &str,
    ) -> Result<Option<u64>, StoreError> {
        let topic = self.keys.topic(key);
        let mut script = scripts::TOPIC_MEMBERS.key(topic.meta());
        script.arg(op);
        for user in users {
            script.key(topic.members(topic_bucket(user))).arg(user);
        }
        let changed: i64 = script.invoke_async(&mut self.conn.clone()).await?;
        Ok(u64::try_from(changed).ok())
    }

    /// The members of the buckets `from..to`, each bucket in byte order, buckets in order.
    pub async fn members_of_buckets(
        &self,
        key: &str,
        buckets: std::ops::Range<u16>,
    ) -> Result<Vec<(u16, Vec<String>)>, StoreError> {
        let topic = self.keys.topic(key);
        let mut pipe = redis::pipe();
        for bucket in buckets.clone() {
            pipe.hkeys(topic.members(bucket));
        }
        let pages: Vec<Vec<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(buckets
            .zip(pages)
            .map(|(bucket, mut users)| {
                users.sort_unstable();
                (bucket, users)
            })
            .collect())
    }

    /// A page of at most `limit` members, from `cursor` on (`None`: from the start); `None` when
    /// the topic does not exist. Stable under concurrent changes: a member present throughout
    /// appears exactly once over the pages.
    pub async fn subscribers(
        &self,
        key: &str,
        limit: usize,
        cursor: Option<SubscriberCursor>,
    ) -> Result<Option<SubscriberPage>, StoreError> {
        /// Buckets read per round trip.
        const WINDOW: u16 = 64;
        if self.get(key).await?.is_none() {
            return Ok(None);
        }
        let mut cursor = cursor.unwrap_or(SubscriberCursor {
            bucket: 0,
            after: None,
        });
        let mut items = Vec::new();
        while cursor.bucket < TOPIC_BUCKETS {
            let end = (cursor.bucket + WINDOW).min(TOPIC_BUCKETS);
            for (bucket, users) in self.members_of_buckets(key, cursor.bucket..end).await? {
                let after = cursor.after.take().filter(|_| bucket == cursor.bucket);
                for user in users {
                    if after.as_ref().is_some_and(|a| user <= *a) {
                        continue;
                    }
                    if items.len() == limit {
                        let last = items.last().cloned();
                        return Ok(Some(SubscriberPage {
                            items,
                            next: Some(SubscriberCursor {
                                bucket: last.as_deref().map_or(bucket, topic_bucket),
                                after: last,
                            }),
                        }));
                    }
                    items.push(user);
                }
            }
            cursor.bucket = end;
        }
        Ok(Some(SubscriberPage { items, next: None }))
    }

    /// The topics `user` is a member of, by key, with their names. Walks every topic (one
    /// `HEXISTS` each, concurrently): a per-user index would cost a key per user, more memory
    /// than the membership itself (see `docs/topics.md`).
    pub async fn topics_of(&self, user: &str) -> Result<Vec<Topic>, StoreError> {
        let mut keys: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.topic_registry())
            .await?;
        keys.sort_unstable();
        let bucket = topic_bucket(user);
        let member: Vec<Result<Option<String>, StoreError>> = stream::iter(keys)
            .map(|key| async move {
                let mut conn = self.conn.clone();
                let yes: bool = conn
                    .hexists(self.keys.topic(&key).members(bucket), user)
                    .await?;
                Ok(yes.then_some(key))
            })
            .buffered(32)
            .collect()
            .await;
        let mut topics = Vec::new();
        for key in member {
            if let Some(key) = key? {
                if let Some(topic) = self.get(&key).await? {
                    topics.push(topic);
                }
            }
        }
        Ok(topics)
    }

    /// Removes `user` from every topic (erasing a user): how many memberships it had.
    pub async fn forget_user(&self, user: &str) -> Result<u64, StoreError> {
        let mut removed = 0;
        for topic in self.topics_of(user).await? {
            removed += self
                .unsubscribe(&topic.key, &[user.to_owned()])
                .await?
                .unwrap_or(0);
        }
        Ok(removed)
    }

    /// Records a broadcast to `topic`: `queued` with the topic's subscriber count as `targeted`,
    /// or, with `send_at`, `scheduled` (`targeted` is set when it starts, see
    /// [`TopicStore::start_scheduled`]) and kept [`BROADCAST_RETENTION`] past its `send_at`.
    /// `Ok(None)` when the topic does not exist (nothing written); `Ok(Some((broadcast, false)))`
    /// when a broadcast with this id already exists (a retry): the stored one, unchanged.
    pub async fn create_broadcast(
        &self,
        id: &str,
        topic: &str,
        sender: &str,
        notification: &NewNotification,
        max_per_second: Option<u32>,
        send_at: Option<DateTime<Utc>>,
    ) -> Result<Option<(Broadcast, bool)>, StoreError> {
        if let Some(existing) = self.broadcast(id).await? {
            return Ok(Some((existing, false)));
        }
        let Some(found) = self.get(topic).await? else {
            return Ok(None);
        };
        let template = serde_json::to_string(notification)
            .map_err(|e| StoreError::Corrupt(format!("broadcast notification: {e}")))?;
        let now = Utc::now();
        let waits_ms = send_at.map_or(0, |at| (at - now).num_milliseconds().max(0)) as u64;
        let mut fields = vec![
            ("topic", topic.to_owned()),
            ("sender", sender.to_owned()),
            (
                "status",
                if send_at.is_some() {
                    "scheduled"
                } else {
                    "queued"
                }
                .to_owned(),
            ),
            ("targeted", found.subscribers.to_string()),
            ("created", "0".to_owned()),
            ("skipped", "0".to_owned()),
            ("failed", "0".to_owned()),
            ("chunks", BROADCAST_CHUNKS.to_string()),
            ("committed", "0".to_owned()),
            ("maxPerSecond", max_per_second.unwrap_or(0).to_string()),
            ("notification", template),
            ("createdAt", now.timestamp_millis().to_string()),
        ];
        if let Some(at) = send_at {
            fields.push(("sendAt", at.timestamp_millis().to_string()));
        }
        let created: i64 = scripts::BROADCAST_CREATE
            .key(self.keys.broadcast(id).state())
            .arg(BROADCAST_RETENTION.as_millis() as u64 + waits_ms)
            .arg(&fields)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let stored = self
            .broadcast(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a broadcast vanished as it was created".into()))?;
        Ok(Some((stored, created == 1)))
    }

    /// Starts a scheduled broadcast: `scheduled` becomes `queued`, with the topic's subscriber
    /// count now as `targeted` (the membership is read when the fan-out runs). Idempotent: any
    /// other status is left as it is. The status after the call, `None` if it is gone.
    pub async fn start_scheduled(&self, id: &str) -> Result<Option<BroadcastStatus>, StoreError> {
        let Some(broadcast) = self.broadcast(id).await? else {
            return Ok(None);
        };
        if broadcast.status != BroadcastStatus::Scheduled {
            return Ok(Some(broadcast.status));
        }
        let targeted = self
            .get(&broadcast.topic)
            .await?
            .map_or(0, |t| t.subscribers);
        let status: Option<String> = scripts::BROADCAST_START
            .key(self.keys.broadcast(id).state())
            .arg(targeted)
            .invoke_async(&mut self.conn.clone())
            .await?;
        status.as_deref().map(BroadcastStatus::parse).transpose()
    }

    pub async fn broadcast(&self, id: &str) -> Result<Option<Broadcast>, StoreError> {
        let fields: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.broadcast(id).state())
            .await?;
        Broadcast::from_fields(id, fields)
    }

    /// Forgets a broadcast that was never announced (its chunk records could not be produced).
    pub async fn discard_broadcast(&self, id: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .del(self.keys.broadcast(id).state())
            .await?;
        Ok(())
    }

    /// A fan-out run starts: a queued broadcast becomes running. The broadcast, `None` if it is
    /// gone.
    pub async fn begin_chunk(&self, id: &str) -> Result<Option<Broadcast>, StoreError> {
        let fields: HashMap<String, String> = scripts::BROADCAST_BEGIN
            .key(self.keys.broadcast(id).state())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Broadcast::from_fields(id, fields)
    }

    /// The broadcast's status now (`None` if it is gone).
    pub async fn status(&self, id: &str) -> Result<Option<BroadcastStatus>, StoreError> {
        let status: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.broadcast(id).state(), "status")
            .await?;
        status.as_deref().map(BroadcastStatus::parse).transpose()
    }

    /// Adds `counts` for `chunk` unless that chunk was committed already (then nothing changes):
    /// whether this call committed it, and the status after.
    pub async fn commit_chunk(
        &self,
        id: &str,
        chunk: u16,
        counts: ChunkCounts,
    ) -> Result<(bool, Option<BroadcastStatus>), StoreError> {
        let keys = self.keys.broadcast(id);
        let (first, status): (i64, String) = scripts::BROADCAST_COMMIT
            .key(keys.state())
            .key(keys.chunks())
            .arg(chunk)
            .arg(counts.created)
            .arg(counts.skipped)
            .arg(counts.failed)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let status = match status.as_str() {
            "missing" => None,
            s => Some(BroadcastStatus::parse(s)?),
        };
        Ok((first == 1, status))
    }

    /// Cancels a scheduled, queued or running broadcast; the broadcast after (`None` if it does not exist).
    pub async fn cancel(&self, id: &str) -> Result<Option<Broadcast>, StoreError> {
        let fields: HashMap<String, String> = scripts::BROADCAST_CANCEL
            .key(self.keys.broadcast(id).state())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Broadcast::from_fields(id, fields)
    }

    /// Takes `cost` recipients from the broadcast's `max_per_second` budget (burst: one second's
    /// worth): how long to wait before trying again when it is spent.
    pub async fn take_rate(
        &self,
        id: &str,
        max_per_second: u32,
        cost: u32,
    ) -> Result<Option<Duration>, StoreError> {
        let (allowed, retry_ms): (i64, i64) = scripts::GCRA
            .key(self.keys.broadcast(id).rate())
            .arg(1000.0 / f64::from(max_per_second.max(1)))
            .arg(max_per_second.max(cost))
            .arg(cost)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((allowed != 1).then(|| Duration::from_millis(retry_ms.max(1) as u64)))
    }
}
