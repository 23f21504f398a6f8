//! GCRA rate limits in Redis: per sender (creates) and per user (the user's own mutations and
//! WebSocket actions), each one script call (`gcra.lua`). A denied request consumes nothing. The
//! limiter owns its limits (from [`crate::config::InboxSettings`]); callers only say who.
//!
//! The per-recipient limit of creates is the one exception: it runs inside the create's own
//! script ([`crate::store::InboxStore::create_within`] with [`RateLimiter::per_recipient`], the
//! same algorithm from `gcra_lib.lua`), saving a round trip and a script call per create; and so
//! does the per-sender limit of a request with an `Idempotency-Key`, inside the claim's script
//! ([`crate::store::InboxStore::claim_request`] with [`RateLimiter::per_sender`]).
//!
//! Tenants: [`RateLimiter::for_tenant`] is the limiter of one tenant — its keys
//! ([`KeySpace::for_tenant`]) and its limits ([`InboxSettings::limits_of`], `TENANT_LIMITS`).
//! Its quota of creates ([`RateLimiter::charge_creates`]) is one GCRA key per tenant, charged one
//! per notification a request asks for, before anything is written; what the request then does
//! not create (a recipient over its own limit, a replay) is given back
//! ([`RateLimiter::refund_creates`]), so the quota counts what was created.

use std::sync::Arc;
use std::time::Duration;

use super::{keys::KeySpace, scripts, RedisConn, StoreError};
use crate::config::{InboxSettings, RateLimit};
use crate::tenant::Tenant;

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
    /// The tenant's quota of creates; `None` is unlimited.
    creates: Option<RateLimit>,
    /// Where every tenant's limits come from ([`RateLimiter::for_tenant`]).
    settings: Arc<InboxSettings>,
}

impl RateLimiter {
    /// The limiter of `keys`' tenant (the default tenant's for an unscoped [`KeySpace`]).
    pub fn new(conn: RedisConn, keys: KeySpace, limits: &InboxSettings) -> Self {
        let own = limits.limits_of(keys.tenant());
        RateLimiter {
            conn,
            keys,
            per_sender: own.per_sender,
            per_recipient: own.per_recipient,
            per_user_mutation: own.per_user_mutation,
            creates: own.creates,
            settings: Arc::new(limits.clone()),
        }
    }

    /// The limiter of `tenant`: its keys and its limits (its own from `TENANT_LIMITS`, else the
    /// deployment's). Cheap: a few copies and the key prefix.
    pub fn for_tenant(&self, tenant: &Tenant) -> RateLimiter {
        let own = self.settings.limits_of(tenant);
        RateLimiter {
            conn: self.conn.clone(),
            keys: self.keys.for_tenant(tenant),
            per_sender: own.per_sender,
            per_recipient: own.per_recipient,
            per_user_mutation: own.per_user_mutation,
            creates: own.creates,
            settings: self.settings.clone(),
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

    /// The tenant whose keys and limits these are.
    pub fn tenant(&self) -> Tenant {
        self.keys.tenant().clone()
    }

    /// The tenant's quota of creates, `None` when unlimited.
    pub fn creates_quota(&self) -> Option<RateLimit> {
        self.creates
    }

    /// Charges `creates` notifications to the tenant's quota, all or none: allowed without a
    /// Redis call when the tenant has no quota. A request larger than the whole quota is never
    /// allowed (the caller can tell by [`RateLimiter::creates_quota`]'s burst).
    pub async fn charge_creates(&self, creates: u32) -> Result<RateDecision, StoreError> {
        match self.creates {
            None => Ok(RateDecision::Allowed),
            Some(quota) => self.check(self.keys.tenant_creates(), quota, creates).await,
        }
    }

    /// Gives back `creates` of an allowed [`RateLimiter::charge_creates`]: notifications the
    /// request was charged for and did not create.
    pub async fn refund_creates(&self, creates: u32) -> Result<(), StoreError> {
        match self.creates {
            Some(quota) if creates > 0 => {
                self.refund(self.keys.tenant_creates(), quota, creates)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Gives back the one request [`RateLimiter::check_sender`] (or the claim's script) charged
    /// `sender`, when the tenant's quota refused it.
    pub async fn refund_sender(&self, sender: &str) -> Result<(), StoreError> {
        self.refund(self.keys.sender_rate(sender), self.per_sender, 1)
            .await
    }

    async fn refund(&self, key: String, limit: RateLimit, cost: u32) -> Result<(), StoreError> {
        let _: i64 = scripts::GCRA_REFUND
            .key(key)
            .arg(limit.emission_interval().as_secs_f64() * 1000.0)
            .arg(cost)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
