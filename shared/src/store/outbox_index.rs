//! The outbox's dirty-user index: which users may have changes that Kafka has not acknowledged.
//! Marked before every user mutation; cleared only by the relay, only when it is provably safe
//! (see `clear_dirty.lua`). A user whose publish failed is postponed (its score moved later,
//! never earlier), so users that keep failing cannot fill the front of the relay's oldest-first
//! scan.
//!
//! The index is global; its members name the user with [`crate::tenant::member`] (`<userId>`,
//! or `<userId> <tenant>`), so the index scoped to a tenant marks and clears that tenant's users.

use redis::AsyncCommands;

use super::{keys::KeySpace, scripts, RedisConn, StoreError};
use crate::tenant::member;

#[derive(Debug, Clone)]
pub struct OutboxIndex {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl OutboxIndex {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        OutboxIndex { conn, keys }
    }

    /// Marks `user_id`, scored by Redis's clock. Call before the user's transaction.
    pub async fn mark_dirty(&self, user_id: &str) -> Result<(), StoreError> {
        let _: i64 = scripts::MARK_DIRTY
            .key(self.keys.outbox_dirty())
            .arg(member(self.keys.tenant(), user_id))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Marks every one of `user_ids` in one call ([`OutboxIndex::mark_dirty`] for a fan-out).
    pub async fn mark_dirty_many(&self, user_ids: &[&str]) -> Result<(), StoreError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let members: Vec<String> = user_ids
            .iter()
            .map(|user| member(self.keys.tenant(), user))
            .collect();
        let _: i64 = scripts::MARK_DIRTY
            .key(self.keys.outbox_dirty())
            .arg(members)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Up to `limit` marked users of every tenant with their mark scores, oldest mark first: the
    /// members, each read with [`crate::tenant::parse_member`].
    pub async fn dirty_users(&self, limit: usize) -> Result<Vec<(String, f64)>, StoreError> {
        let users: Vec<(String, f64)> = self
            .conn
            .clone()
            .zrange_withscores(self.keys.outbox_dirty(), 0, limit as isize - 1)
            .await?;
        Ok(users)
    }

    /// Clears the mark if its score is still `score` and `score <= cutoff_ms` (Redis clock).
    pub async fn clear_dirty(
        &self,
        user_id: &str,
        score: f64,
        cutoff_ms: i64,
    ) -> Result<bool, StoreError> {
        let cleared: i64 = scripts::CLEAR_DIRTY
            .key(self.keys.outbox_dirty())
            .arg(member(self.keys.tenant(), user_id))
            .arg(format!("{score:.0}"))
            .arg(cutoff_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(cleared == 1)
    }

    /// Moves a still-marked `user_id` to `backoff_ms` after now (Redis clock), unless it already
    /// sorts later. Returns true if it moved.
    pub async fn postpone(&self, user_id: &str, backoff_ms: u64) -> Result<bool, StoreError> {
        let moved: i64 = scripts::POSTPONE_DIRTY
            .key(self.keys.outbox_dirty())
            .arg(member(self.keys.tenant(), user_id))
            .arg(backoff_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(moved == 1)
    }

    /// Takes the relay lease for `ttl_ms` (one relay at a time). Returns the lease token if taken.
    pub async fn acquire_lease(&self, ttl_ms: u64) -> Result<Option<String>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.keys.outbox_lease())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken.map(|_| token))
    }

    /// Releases the lease if this token still holds it.
    pub async fn release_lease(&self, token: &str) -> Result<(), StoreError> {
        let _: i64 = scripts::RELEASE_LEASE
            .key(self.keys.outbox_lease())
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
