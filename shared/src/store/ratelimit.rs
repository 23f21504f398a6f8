//! GCRA rate limits in Redis, per recipient and per sender. A denied request consumes nothing.

use std::time::Duration;

use super::{keys::KeySpace, scripts, RedisConn, StoreError};
use crate::config::RateLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after: Duration },
}

#[derive(Debug, Clone)]
pub struct RateLimiter {
    conn: RedisConn,
    keys: KeySpace,
}

impl RateLimiter {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        RateLimiter { conn, keys }
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
    pub async fn check_sender(
        &self,
        sender: &str,
        limit: RateLimit,
    ) -> Result<RateDecision, StoreError> {
        self.check(self.keys.sender_rate(sender), limit, 1).await
    }

    /// One notification to `recipient`.
    pub async fn check_recipient(
        &self,
        recipient: &str,
        limit: RateLimit,
    ) -> Result<RateDecision, StoreError> {
        self.check(self.keys.user(recipient).rate(), limit, 1).await
    }
}
