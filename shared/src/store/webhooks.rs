//! [`WebhookStore`]: the webhook registry and each webhook's delivery state (keys in
//! [`super::keys`]: `{wh}:hooks` and the `{wh:<id>}` slot), per tenant ([`super::TenantScoped`]).
//!
//! **Tenants.** Each tenant has its own registry and delivery state; the global `{wh}:tenants`
//! names every tenant other than the default that registered a webhook ([`WebhookStore::tenants`]),
//! so the `webhooks` function finds each tenant's registry and retry schedules. A deployment
//! without tenants never writes it: its keys are those from before tenants.
//!
//! A message travels: enqueued (ledger `queued|0`, behind its notification's waiting messages) →
//! sent as the queue's head → `sent|n`, or retried at a scheduled time (`queued|n`, the head
//! stays, so later messages of the notification wait) → after the schedule, `dead|n` (the dead
//! letter). A replay queues `sent` and `dead` messages again.
//!
//! Guarantees:
//! - **once per (webhook, message)** unless a retry is due: the ledger entry is created with the
//!   message, atomically with queueing it, and a message the ledger knows is never queued again
//!   except by a replay;
//! - **one sender per queue**: whoever queues into an empty queue owns it, with a lease in the
//!   schedule (`due`); a failed send hands it to the schedule at the retry time; a drain claims
//!   due queues with a lease. A queue is non-empty exactly while its notification is in `due`;
//! - **in order per notification**: only a queue's head is sent, and it leaves the queue only when
//!   sent or dead-lettered.

use std::time::Duration;

use redis::AsyncCommands;

use super::keys::KeySpace;
use super::scripts::{
    PUSH_CLAIM_DUE as CLAIM_DUE, WEBHOOK_COMPLETE, WEBHOOK_ENQUEUE, WEBHOOK_REQUEUE,
};
use super::{RedisConn, StoreError};
use crate::tenant::Tenant;
use crate::webhooks::{DeliveryAttempt, Webhook, WebhookMessage};

/// Attempts kept per webhook for `GET /v1/webhooks/{id}/deliveries`.
pub const ATTEMPTS_KEPT: isize = 100;

/// What queueing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The ledger knew it: a redelivery. Nothing to send.
    Known,
    /// Behind another message of its notification; that queue's owner sends it.
    Waiting,
    /// First in its queue: the caller owns the queue and sends it now.
    Owner,
}

/// A message's ledger entry: its state and the attempts made since it was (re)queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    pub state: LedgerState,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    Queued,
    Sent,
    Dead,
}

impl LedgerEntry {
    fn encode(&self) -> String {
        let state = match self.state {
            LedgerState::Queued => "queued",
            LedgerState::Sent => "sent",
            LedgerState::Dead => "dead",
        };
        format!("{state}|{}", self.attempts)
    }

    fn decode(text: &str) -> Option<Self> {
        let (state, attempts) = text.split_once('|')?;
        let state = match state {
            "queued" => LedgerState::Queued,
            "sent" => LedgerState::Sent,
            "dead" => LedgerState::Dead,
            _ => return None,
        };
        Some(LedgerEntry {
            state,
            attempts: attempts.parse().ok()?,
        })
    }
}

/// The registry and the delivery state of every webhook.
#[derive(Debug, Clone)]
pub struct WebhookStore {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl WebhookStore {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        WebhookStore { conn, keys }
    }

    /// The tenant whose webhooks this works.
    pub fn tenant(&self) -> &Tenant {
        self.keys.tenant()
    }

    /// Registers `hook` unless `max` webhooks exist already (returns `false` then). A tenant
    /// other than the default is put in `{wh}:tenants` first, so a registered webhook's tenant is
    /// always there.
    pub async fn register(&self, hook: &Webhook, max: usize) -> Result<bool, StoreError> {
        let registry = self.keys.webhooks();
        let count: usize = self.conn.clone().hlen(&registry).await?;
        if count >= max {
            return Ok(false);
        }
        let tenant = self.keys.tenant();
        if !tenant.is_default() {
            let _: i64 = self
                .conn
                .clone()
                .sadd(self.keys.webhook_tenants(), tenant.as_str())
                .await?;
        }
        let json = serde_json::to_string(hook).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: i64 = self.conn.clone().hset(&registry, &hook.id, json).await?;
        Ok(true)
    }

    /// Every tenant that may have webhooks: the default, then those in `{wh}:tenants` (a name
    /// that is not a valid tenant is skipped).
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let names: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.webhook_tenants())
            .await?;
        let mut tenants: Vec<Tenant> = names.iter().filter_map(|n| Tenant::parse(n)).collect();
        tenants.retain(|t| !t.is_default());
        tenants.sort();
        tenants.insert(0, Tenant::default_tenant());
        Ok(tenants)
    }

    /// Every webhook, oldest first.
    pub async fn list(&self) -> Result<Vec<Webhook>, StoreError> {
        let all: Vec<String> = self.conn.clone().hvals(self.keys.webhooks()).await?;
        let mut hooks = all
            .iter()
            .map(|j| serde_json::from_str(j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<Vec<Webhook>, _>>()?;
        hooks.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(hooks)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        let json: Option<String> = self.conn.clone().hget(self.keys.webhooks(), id).await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Removes a webhook and its delivery state; `false` if there was no such webhook. A send in
    /// flight may still finish.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let removed: i64 = self.conn.clone().hdel(self.keys.webhooks(), id).await?;
        if removed == 0 {
            return Ok(false);
        }
        let keys = self.keys.webhook(id);
        let waiting: Vec<String> = self.conn.clone().zrange(keys.due(), 0, -1).await?;
        let mut doomed = vec![
            keys.ledger(),
            keys.messages(),
            keys.log(),
            keys.due(),
            keys.attempts(),
        ];
        doomed.extend(waiting.iter().map(|n| keys.queue(n)));
        // One key per command: the queue keys share the slot, but a cluster client routes
        // multi-key commands by their first key only.
        let mut pipe = redis::pipe();
        for key in &doomed {
            pipe.del(key).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(true)
    }

    /// Puts `message` in `hook`'s ledger and queue (see [`Enqueued`]). `now_ms + lease` ends the
    /// caller's ownership of a queue it was first in. Sent and dead-lettered messages older than
    /// `retention` (by event time) are pruned a few at a time, with their ledger entries.
    pub async fn enqueue(
        &self,
        hook: &str,
        message: &WebhookMessage,
        now_ms: i64,
        lease: Duration,
        retention: Duration,
    ) -> Result<Enqueued, StoreError> {
        let keys = self.keys.webhook(hook);
        let json =
            serde_json::to_string(message).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result: i64 = WEBHOOK_ENQUEUE
            .key(keys.ledger())
            .key(keys.messages())
            .key(keys.log())
            .key(keys.due())
            .key(keys.queue(&message.notification_id))
            .arg(&message.id)
            .arg(json)
            .arg(message.at.timestamp_millis())
            .arg(&message.notification_id)
            .arg(now_ms + lease.as_millis() as i64)
            .arg(now_ms - retention.as_millis() as i64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match result {
            -1 => Enqueued::Known,
            1 => Enqueued::Owner,
            _ => Enqueued::Waiting,
        })
    }

    /// A stored message, if it is still kept.
    pub async fn message(
        &self,
        hook: &str,
        message_id: &str,
    ) -> Result<Option<WebhookMessage>, StoreError> {
        let json: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.webhook(hook).messages(), message_id)
            .await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn ledger_entry(
        &self,
        hook: &str,
        message_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let text: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.webhook(hook).ledger(), message_id)
            .await?;
        Ok(text.as_deref().and_then(LedgerEntry::decode))
    }

    /// The first waiting message of a notification's queue.
    pub async fn head(
        &self,
        hook: &str,
        notification_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .clone()
            .lindex(self.keys.webhook(hook).queue(notification_id), 0)
            .await?)
    }

    /// The head `message_id` was sent (or dead-lettered): records `entry`, removes it from the
    /// queue and returns the next message of the notification, which the caller now sends
    /// (its lease runs to `now_ms + lease`).
    pub async fn complete(
        &self,
        hook: &str,
        notification_id: &str,
        message_id: &str,
        entry: LedgerEntry,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<String>, StoreError> {
        let keys = self.keys.webhook(hook);
        Ok(WEBHOOK_COMPLETE
            .key(keys.ledger())
            .key(keys.queue(notification_id))
            .key(keys.due())
            .arg(message_id)
            .arg(entry.encode())
            .arg(notification_id)
            .arg(now_ms + lease.as_millis() as i64)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// The head failed `attempts` times and is tried again at `due_ms`; its queue waits until
    /// then (the schedule owns it).
    pub async fn reschedule(
        &self,
        hook: &str,
        notification_id: &str,
        message_id: &str,
        attempts: u32,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let keys = self.keys.webhook(hook);
        let entry = LedgerEntry {
            state: LedgerState::Queued,
            attempts,
        };
        let _: () = redis::pipe()
            .atomic()
            .hset(keys.ledger(), message_id, entry.encode())
            .ignore()
            .zadd(keys.due(), notification_id, due_ms)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Claims up to `limit` of `hook`'s queues due at `now_ms`, for `lease`; returns their
    /// notification ids.
    pub async fn claim_due(
        &self,
        hook: &str,
        now_ms: i64,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(CLAIM_DUE
            .key(self.keys.webhook(hook).due())
            .arg(now_ms)
            .arg(lease.as_millis() as i64)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Drops a schedule entry whose queue is empty (a queue emptied by a webhook's removal race).
    pub async fn forget_due(&self, hook: &str, notification_id: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .zrem(self.keys.webhook(hook).due(), notification_id)
            .await?;
        Ok(())
    }

    /// Records one attempt (the latest [`ATTEMPTS_KEPT`] are kept).
    pub async fn record_attempt(
        &self,
        hook: &str,
        attempt: &DeliveryAttempt,
    ) -> Result<(), StoreError> {
        let key = self.keys.webhook(hook).attempts();
        let json =
            serde_json::to_string(attempt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: () = redis::pipe()
            .atomic()
            .lpush(&key, json)
            .ignore()
            .ltrim(&key, 0, ATTEMPTS_KEPT - 1)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The latest attempts, newest first. Unreadable entries are skipped.
    pub async fn attempts(&self, hook: &str) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let all: Vec<String> = self
            .conn
            .clone()
            .lrange(self.keys.webhook(hook).attempts(), 0, ATTEMPTS_KEPT - 1)
            .await?;
        Ok(all
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect())
    }

    /// Queues again every kept message of `hook` whose event time is in `[from_ms, to_ms]` and
    /// that was sent or dead-lettered, in event-time order, due at `now_ms`. Returns how many.
    pub async fn replay(
        &self,
        hook: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let keys = self.keys.webhook(hook);
        let ids: Vec<String> = self
            .conn
            .clone()
            .zrangebyscore(keys.log(), from_ms, to_ms)
            .await?;
        let mut queued = 0;
        for id in ids {
            let Some(message) = self.message(hook, &id).await? else {
                continue;
            };
            let again: i64 = WEBHOOK_REQUEUE
                .key(keys.ledger())
                .key(keys.due())
                .key(keys.queue(&message.notification_id))
                .arg(&id)
                .arg(&message.notification_id)
                .arg(now_ms)
                .invoke_async(&mut self.conn.clone())
                .await?;
            queued += again as usize;
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_entries_round_trip() {
        for entry in [
            LedgerEntry {
                state: LedgerState::Queued,
                attempts: 0,
            },
            LedgerEntry {
                state: LedgerState::Dead,
                attempts: 13,
            },
        ] {
            assert_eq!(LedgerEntry::decode(&entry.encode()), Some(entry));
        }
        assert_eq!(LedgerEntry::decode("lost|1"), None);
    }
}
