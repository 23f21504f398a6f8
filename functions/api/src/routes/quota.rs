//! The caller's tenant's quota of creates (`TENANT_CREATES_PER_MINUTE`, `TENANT_LIMITS`) at the
//! routes that create: every recipient of a create (single or batch, scheduled or not) counts
//! one, every accepted broadcast one.
//!
//! [`charge`] runs the quota's charge concurrently with the sender's admission (its rate limit
//! and `Idempotency-Key` claim), so a create keeps its round trips; both must pass, and the one
//! that passed is given back when the other refuses. A tenant without a quota costs nothing. The
//! route then [`Charged::settle`]s with what it created: replays, recipients over their own
//! limit and an unknown topic are given back. A request that fails after admission (Redis or
//! Kafka unavailable) keeps its charge: the quota may over-count a failure, never under-count a
//! create.

use std::future::Future;

use shared::error::ApiError;
use shared::store::{whole_seconds, RateDecision, RateLimiter};

use crate::http::store_error;
use crate::Deps;

/// What a request was charged, until it settles.
#[must_use = "settle with what the request created"]
pub(crate) struct Charged {
    limiter: RateLimiter,
    creates: u32,
}

impl Charged {
    /// Gives back what the request was charged beyond `created`. A refund that fails is logged:
    /// the quota then counts a little more than was created.
    pub(crate) async fn settle(self, created: usize) {
        let unused = self.creates.saturating_sub(created as u32);
        if let Err(e) = self.limiter.refund_creates(unused).await {
            tracing::warn!(error = %e, unused, "could not give back a tenant's unused quota");
        }
    }
}

/// Charges `creates` to the quota of `deps`'s tenant (the routes get [`Deps::for_tenant`] of the
/// caller's) while `admission` (the sender's) runs: 429
/// `quota-exceeded` when the tenant is over its quota, with the sender's charge given back; the
/// admission's own error, with the quota's charge given back, when it refuses.
pub(crate) async fn charge<T>(
    deps: &Deps,
    sender: &str,
    creates: usize,
    admission: impl Future<Output = Result<T, ApiError>>,
) -> Result<(T, Charged), ApiError> {
    let limiter = &deps.limiter;
    let creates = u32::try_from(creates).unwrap_or(u32::MAX);
    let (admitted, decision) = futures::join!(admission, limiter.charge_creates(creates));
    let decision = decision.map_err(store_error);
    let charged = || Charged {
        limiter: limiter.clone(),
        creates,
    };
    match (admitted, decision) {
        (Ok(admitted), Ok(RateDecision::Allowed)) => Ok((admitted, charged())),
        (Ok(_), Ok(RateDecision::Limited { retry_after })) => {
            give_back_sender(limiter, sender).await;
            Err(over_quota(limiter, creates, whole_seconds(retry_after)))
        }
        (Ok(_), Err(e)) => {
            give_back_sender(limiter, sender).await;
            Err(e)
        }
        (Err(e), Ok(RateDecision::Allowed)) => {
            charged().settle(0).await;
            Err(e)
        }
        (Err(e), _) => Err(e),
    }
}

/// Gives back the request the sender's admission charged (its `Idempotency-Key` claim, if any,
/// stays: a retry is then answered as the retry of a request that created nothing).
async fn give_back_sender(limiter: &RateLimiter, sender: &str) {
    if let Err(e) = limiter.refund_sender(sender).await {
        tracing::warn!(error = %e, "could not give back a sender's rate");
    }
}

/// 429 `quota-exceeded`, saying whose quota and, for a request larger than the whole quota, that
/// it never fits.
fn over_quota(limiter: &RateLimiter, creates: u32, retry_after_secs: u64) -> ApiError {
    let tenant = limiter.tenant();
    let per_minute = limiter.creates_quota().map_or(0, |q| q.per_period);
    match limiter.creates_quota().filter(|q| creates > q.burst) {
        Some(_) => ApiError::QuotaExceeded {
            retry_after_secs: 60,
            detail: format!(
                "this request creates {creates} notifications; tenant `{tenant}`'s quota allows at most {per_minute} per minute: send fewer recipients per request"
            ),
        },
        None => ApiError::QuotaExceeded {
            retry_after_secs,
            detail: format!(
                "tenant `{tenant}` is over its quota of {per_minute} creates per minute; nothing was created; retry after {retry_after_secs} s"
            ),
        },
    }
}
