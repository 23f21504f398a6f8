//! [`InboxSettings`]: the inbox's caps, retention and idempotency window, the GCRA
//! [`RateLimit`]s per recipient, per sender and per user (mutations and WebSocket actions), the
//! quota of creates per tenant, and the tenants with limits of their own
//! ([`super::tenant_limits`], which reads the limits).

use std::sync::Arc;
use std::time::Duration;

use super::tenant_limits::{TenantLimits, TenantOverrides};
use super::{ConfigError, Env};
use crate::tenant::Tenant;

/// One GCRA limit: `burst` requests at once, refilled at `per_period` per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_period: u32,
    pub period: Duration,
}

impl RateLimit {
    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.per_period.max(1)
    }
}

/// The inbox's rules: caps, retention, idempotency and rate limits.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// Most notifications kept per user; the oldest are evicted beyond it.
    pub inbox_cap: u32,
    /// Most changes kept in a user's change log (unpublished changes are always kept).
    pub change_log_cap: u32,
    /// Notifications older than this are purged, and an idle user's inbox expires after it.
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    pub per_recipient: RateLimit,
    pub per_sender: RateLimit,
    /// Every mutation a user makes (HTTP) and every WebSocket action but `ping`, together.
    pub per_user_mutation: RateLimit,
    /// Each tenant's quota of creates (`TENANT_CREATES_PER_MINUTE`); `None` is unlimited.
    pub creates_per_tenant: Option<RateLimit>,
    /// The tenants with limits of their own (`TENANT_LIMITS`), resolved against the deployment's
    /// settings at cold start: changing the fields above later does not reach them.
    pub tenant_overrides: Arc<TenantOverrides>,
}

impl InboxSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let limits = TenantLimits::from_env(env)?;
        Ok(InboxSettings {
            inbox_cap: env.positive("INBOX_CAP")?,
            change_log_cap: env.positive("CHANGE_LOG_CAP")?,
            retention: Duration::from_secs(env.positive::<u64>("RETENTION_DAYS")? * 86_400),
            idempotency_ttl: Duration::from_secs(env.positive("IDEMPOTENCY_TTL_SECONDS")?),
            per_recipient: limits.per_recipient,
            per_sender: limits.per_sender,
            per_user_mutation: limits.per_user_mutation,
            creates_per_tenant: limits.creates,
            tenant_overrides: Arc::new(TenantOverrides::from_env(env, &limits)?),
        })
    }

    /// The limits `tenant` works under: its own from `TENANT_LIMITS`, else the deployment's.
    pub fn limits_of(&self, tenant: &Tenant) -> TenantLimits {
        match self.tenant_overrides.get(tenant) {
            Some(own) => *own,
            None => TenantLimits {
                per_recipient: self.per_recipient,
                per_sender: self.per_sender,
                per_user_mutation: self.per_user_mutation,
                creates: self.creates_per_tenant,
            },
        }
    }
}

impl Default for InboxSettings {
    fn default() -> Self {
        // The same defaults as an empty environment.
        match InboxSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_normal_traffic() {
        let s = InboxSettings::default();
        assert_eq!(
            (s.per_recipient.burst, s.per_recipient.per_period),
            (200, 100)
        );
        assert_eq!(
            s.per_recipient.emission_interval(),
            Duration::from_millis(600)
        );
        assert_eq!((s.per_sender.burst, s.per_sender.per_period), (500, 100));
        assert_eq!(
            (s.per_user_mutation.burst, s.per_user_mutation.per_period),
            (60, 600)
        );
        assert_eq!(s.idempotency_ttl, Duration::from_secs(86_400));
    }
}
