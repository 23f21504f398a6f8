//! GCRA rate limits in Redis: per sender (creates) and per user (the user's own mutations and
//! WebSocket actions), each one script call (`gcra.lua`). A denied request consumes nothing. The
//! limiter owns its limits (from [`crate::config::InboxSettings`]); callers only say who.
//!
//! The per-recipient limit of creates is the one exception: it runs inside the create's own
//! script ([`crate::store::InboxStore::create_within`] with [`RateLimiter::per_recipient`], the
//! same algorithm from `gcra_lib.lua`), saving a round trip and a script call per create; and so
//! does the per-sender limit of a request with an `Idempotency-Key`, inside the claim's script
//! ([`crate::store::InboxStore::claim_request`] with [`RateLimiter::per_sender`]).

use std::time::Duration;

use super::{keys::KeySpace, scripts, RedisConn, StoreError};
use crate::config::{InboxSettings, RateLimit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after: Duration },
}

/// Whole seconds to wait, at least 1: what `Retry-After` and a frame's `retryAfter` say.
pub fn whole_seconds(retry_after: Duration) -> u64 {
    retry_after.as_secs_f64().ceil().max(1.0) as u64
}

#[derive(Debug, Clone)]
pub struct RateLimiter {
    conn: RedisConn,
    pub(super) keys: KeySpace,
    per_sender: RateLimit,
    per_recipient: RateLimit,
    per_user_mutation: RateLimit,
}

impl RateLimiter {
    pub fn new(conn: RedisConn, keys: KeySpace, limits: &InboxSettings) -> Self {
        RateLimiter {
            conn,
            keys,
            per_sender: limits.per_sender,
            per_recipient: limits.per_recipient,
            per_user_mutation: limits.per_user_mutation,
        }
    }

    /// The limit per sender, for [`crate::store::InboxStore::claim_request`] (an idempotent
    /// request's limit, checked in the claim's own script).
    pub fn per_sender(&self) -> RateLimit {
        self.per_sender
    }

    /// The limit per recipient, for [`crate::store::InboxStore::create_within`] (and a skipped
    /// recipient's `retryAfter`).
    pub fn per_recipient(&self) -> RateLimit {
        self.per_recipient
    }

    async fn check(
        &self,
        key: String,
        limit: RateLimit,
        cost: u32,
    ) -> Result<RateDecision, StoreError> {
        let (allowed, retry_ms): (i64, i64) = scripts::GCRA
            .key(key)
            .arg(limit.emission_interval().as_secs_f64() * 1000.0)
            .arg(limit.burst)
            .arg(cost)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if allowed == 1 {
            RateDecision::Allowed
        } else {
            RateDecision::Limited {
                retry_after: Duration::from_millis(retry_ms.max(1) as u64),
            }
        })
    }

    /// One request from `sender`.
    pub async fn check_sender(&self, sender: &str) -> Result<RateDecision, StoreError> {
        self.check(self.keys.sender_rate(sender), self.per_sender, 1)
            .await
    }

    /// One mutation or WebSocket action by `user` on their own inbox, preferences or
    /// subscriptions. Its own bucket: notifications arriving never use up the user's own.
    pub async fn check_user_mutation(&self, user: &str) -> Result<RateDecision, StoreError> {
        self.check(
            self.keys.user(user).mutation_rate(),
            self.per_user_mutation,
            1,
        )
        .await
    }
}
