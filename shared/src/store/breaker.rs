//! A circuit breaker per off-app provider, in Redis, so every `push` instance shares it.
//!
//! Closed, it lets every call through and counts consecutive failures *of the failover kind*
//! (a provider unavailable after its inline retries — timeouts, 5xx, no connection — or still
//! throttling after them). After `PROVIDER_BREAKER_FAILURES` of them it opens: calls skip the
//! provider without a request. After `PROVIDER_BREAKER_COOLDOWN_MS` it half-opens: exactly one
//! caller, across all instances, makes a trial call (leased for [`TRIAL_LEASE`], so a crashed
//! trial does not keep it half-open); success closes it, failure opens it again for another
//! cool-down. Any answer that is not of the failover kind (`sent`, `gone`, a refusal) is
//! success: the provider is up.
//!
//! Each step is one Lua script (`breaker_admit.lua`, `breaker_record.lua`) timed by Redis's own
//! clock, so instances' clocks never disagree about a cool-down. The breaker is advice: callers
//! treat a Redis failure as *closed* (they call the provider) rather than fail the send.

use std::time::Duration;

use super::{keys::KeySpace, scripts, RedisConn, StoreError};

/// How long a half-open trial call holds the trial before another caller may try.
pub const TRIAL_LEASE: Duration = Duration::from_secs(60);

/// What [`ProviderBreaker::admit`] decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call the provider.
    Call,
    /// Half-open: this caller makes the one trial call; its [`ProviderBreaker::record`] decides.
    Trial,
    /// Open (or another caller's trial is in flight): skip the provider; it may be tried again
    /// in about this long.
    Skip { retry_in: Duration },
}

/// The breakers of a deployment's providers (one key each, `KeySpace::provider_breaker`).
#[derive(Debug, Clone)]
pub struct ProviderBreaker {
    conn: RedisConn,
    keys: KeySpace,
    failures: u32,
    cooldown: Duration,
}

impl ProviderBreaker {
    /// Opens after `failures` consecutive failures; half-opens `cooldown` after opening.
    pub fn new(conn: RedisConn, keys: KeySpace, failures: u32, cooldown: Duration) -> Self {
        ProviderBreaker {
            conn,
            keys,
            failures: failures.max(1),
            cooldown,
        }
    }

    /// May a call go to `provider` now?
    pub async fn admit(&self, provider: &str) -> Result<Admission, StoreError> {
        let (state, wait_ms): (i64, i64) = scripts::BREAKER_ADMIT
            .key(self.keys.provider_breaker(provider))
            .arg(self.cooldown.as_millis() as u64)
            .arg(TRIAL_LEASE.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match state {
            1 => Admission::Call,
            2 => Admission::Trial,
            _ => Admission::Skip {
                retry_in: Duration::from_millis(wait_ms.max(1) as u64),
            },
        })
    }

    /// Records what a call to `provider` came to: `failed` when it was of the failover kind.
    /// True when this call opened the breaker (or re-opened it after a failed trial).
    pub async fn record(&self, provider: &str, failed: bool) -> Result<bool, StoreError> {
        // The state outlives a cool-down and a trial lease, then expires: a provider that
        // failed once long ago starts again from zero.
        let ttl = (self.cooldown + TRIAL_LEASE) * 4;
        let opened: i64 = scripts::BREAKER_RECORD
            .key(self.keys.provider_breaker(provider))
            .arg(if failed { "fail" } else { "ok" })
            .arg(self.failures)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(opened == 1)
    }
}
