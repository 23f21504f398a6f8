//! [`Eraser`]: erasing everything Herald stores about one user (`DELETE /v1/users/{id}`), and
//! the **erase epoch** that keeps a record from before the erase from bringing any of it back.
//!
//! ## What an erase deletes
//! - every fixed-name key of the user's slot ([`UserKeys::erasable`], the key table's
//!   `USER_KEY_SUFFIXES`) and the user's idempotency records (found through their index), in one
//!   atomic script (`lua/erase.lua`), which writes the erase marker in the same step;
//! - outside the slot: the user's `{c:<id>}` connection records and `{dev:<id>}:owner` records
//!   that still name the user, the `{push}:due` members of the user's retry entries, and the
//!   outcome histories (`{n:<id>}:outcomes`) of the user's notifications, each replaced by a
//!   tombstone ([`ERASED_HISTORY_FIELD`]) that lives as long as the marker.
//!
//! The outside records are found by reading the slot first ('peek'), cleaned, then the slot is
//! erased and what it held by then is cleaned again: a crash anywhere leaves a state that the
//! retried erase (it is idempotent) completes. Closing the user's open sockets is the caller's
//! (`@connections` DELETE, with the connection ids [`Erased`] returns). Analytics counters are
//! aggregates without a user and stay.
//!
//! ## The erase epoch
//! The marker `{u:<id>}:erased` holds `<seq>|<erasedMs>`: the user's last `seq` at the erase.
//! A create after the erase starts a new life whose `seq`s continue above it (`lua/create.lua`),
//! so every record of the old life (a `NOTIFICATION_CREATED` still in Kafka, a delivery outcome,
//! a retry entry) carries a `seq` at or below the marker's, and every writer of per-user data
//! checks it **in the same script as its write**: `delivery`'s claim and finish, `push`'s send
//! records and retry entries, `analytics`' history admission. A record without a `seq` (outcome
//! records written before they carried one, clicks) is compared by time with `erasedMs`.
//! The marker lives [`ERASE_MARKER_TTL`], longer than every horizon a late record can come from:
//! Kafka's retention (24 h), the outbox's unpublished changes (published within minutes), the
//! retry schedule (7 days) and the send records (3 days).
//!
//! The outbox relay needs no check: it publishes the user's unpublished changes from the change
//! log, which the erase deletes, so nothing of the old life is republished; a change it read just
//! before the erase is published with its old `seq` and dropped by the consumers.

use std::time::Duration;

use chrono::Utc;
use redis::Value;

use super::analytics::AnalyticsStore;
use super::keys::KeySpace;
use super::ledger::member;
use super::scripts::{COMPARE_AND_DEL, ERASE};
use super::{RedisConn, StoreError};

/// How long an erase marker is kept: past every horizon a record of the old life can arrive
/// from (see the module's header).
pub const ERASE_MARKER_TTL: Duration = Duration::from_secs(30 * 86_400);
/// The field that marks an outcome history as erased (a tombstone: no entry field starts with
/// `!`).
pub const ERASED_HISTORY_FIELD: &str = "!erased";

/// The `seq` of an erase marker's text (0: no marker, or unreadable).
pub fn marker_seq(raw: Option<&str>) -> u64 {
    raw.and_then(|m| m.split('|').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The erase time (ms) of an erase marker's text (0: no marker, or unreadable).
pub fn marker_time_ms(raw: Option<&str>) -> i64 {
    raw.and_then(|m| m.split('|').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What an erase found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// The user's last `seq`, now the erase marker's.
    pub seq: u64,
    /// The connections the user had open: the caller closes them.
    pub connections: Vec<String>,
    pub devices: Vec<String>,
    /// The notifications whose outcome histories were erased.
    pub notifications: Vec<String>,
    /// The retry entries removed from the schedule.
    pub retries: Vec<String>,
}

/// Erases users. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Eraser {
    conn: RedisConn,
    keys: KeySpace,
    analytics: AnalyticsStore,
}

impl Eraser {
    pub(crate) fn keys_mut(&mut self) -> &mut KeySpace {
        &mut self.keys
    }

    /// [`crate::store::TenantScoped::for_tenant`]: the user's keys and the analytics both `tenant`'s.
    pub(crate) fn scoped(&self, tenant: &crate::tenant::Tenant) -> Self {
        use crate::store::TenantScoped;
        Eraser {
            conn: self.conn.clone(),
            keys: self.keys.for_tenant(tenant),
            analytics: self.analytics.for_tenant(tenant),
        }
    }

    pub fn new(conn: RedisConn, keys: KeySpace, analytics: AnalyticsStore) -> Self {
        Eraser {
            conn,
            keys,
            analytics,
        }
    }

    /// Erases everything stored about `user_id` and writes its erase marker. Idempotent: an
    /// unknown user, or one erased already, gets a marker and loses nothing else.
    pub async fn erase(&self, user_id: &str) -> Result<Erased, StoreError> {
        let seen = self.run(user_id, false).await?;
        self.clean_outside(user_id, &seen).await?;
        let erased = self.run(user_id, true).await?;
        self.clean_outside(user_id, &erased).await?;
        Ok(erased)
    }

    /// The erase marker's `seq` (0: never erased, or the marker has expired).
    pub async fn erased_seq(&self, user_id: &str) -> Result<u64, StoreError> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.keys.user(user_id).erased())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(marker_seq(raw.as_deref()))
    }

    /// `lua/erase.lua`, reading only or erasing.
    async fn run(&self, user_id: &str, erase: bool) -> Result<Erased, StoreError> {
        let user = self.keys.user(user_id);
        let mut invocation = ERASE.key(user.erased());
        for key in [
            user.meta(),
            user.all(),
            user.conns(),
            user.devices(),
            user.sends(),
            user.retry(),
            user.histories(),
            user.idempotency_index(),
        ] {
            invocation.key(key);
        }
        for key in user.erasable() {
            invocation.key(key);
        }
        let reply: Vec<Value> = invocation
            .arg(if erase { "erase" } else { "peek" })
            .arg(ERASE_MARKER_TTL.as_millis() as u64)
            .arg(Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let corrupt = || StoreError::Corrupt("the erase script answered an unknown shape".into());
        let mut reply = reply.into_iter();
        let mut next = || reply.next().ok_or_else(corrupt);
        let seq: i64 = parse(next()?)?;
        Ok(Erased {
            seq: seq.max(0) as u64,
            connections: parse(next()?)?,
            devices: parse(next()?)?,
            notifications: parse(next()?)?,
            retries: parse(next()?)?,
        })
    }

    /// The user's records outside the slot: connections, device owners (only those that still
    /// name the user: a token may have moved to someone else), retry schedule members, outcome
    /// histories.
    async fn clean_outside(&self, user_id: &str, found: &Erased) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        for id in &found.connections {
            let _: i64 = COMPARE_AND_DEL
                .key(self.keys.connection(id))
                .arg(user_id)
                .invoke_async(&mut conn)
                .await?;
        }
        for id in &found.devices {
            let _: i64 = COMPARE_AND_DEL
                .key(self.keys.device_owner(id))
                .arg(user_id)
                .invoke_async(&mut conn)
                .await?;
        }
        for id in &found.retries {
            let _: i64 = redis::cmd("ZREM")
                .arg(self.keys.push_due())
                .arg(member(self.keys.tenant(), user_id, id))
                .query_async(&mut conn)
                .await?;
        }
        for id in &found.notifications {
            self.analytics.erase_history(id).await?;
        }
        Ok(())
    }
}

fn parse<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_as_its_seq() {
        assert_eq!(marker_seq(Some("42|1764000000000")), 42);
        assert_eq!(marker_seq(Some("junk")), 0);
        assert_eq!(marker_seq(None), 0);
        assert_eq!(marker_time_ms(Some("42|1764000000000")), 1_764_000_000_000);
        assert_eq!(marker_time_ms(Some("junk")), 0);
    }
}
