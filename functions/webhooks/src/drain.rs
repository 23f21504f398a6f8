//! The scheduled drain of the retry schedule: for every webhook of every tenant ([`registries`]),
//! the queues due now are claimed (a lease, so a concurrent drain skips them) and worked from
//! their heads.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use shared::trigger::Counters;

use crate::{queue, registries, Deps, Stats, QUEUE_CONCURRENCY, QUEUE_LEASE};

/// Queues claimed per webhook and round, and the time a drain may start new rounds for.
const DRAIN_ROUND: usize = 100;
const DRAIN_BUDGET: Duration = Duration::from_secs(20);

/// Works every queue due at `now`. A queue whose work hits a Redis failure keeps its claim and
/// comes due again when the lease ends.
pub async fn drain_due(deps: &Deps, now: DateTime<Utc>) -> Stats {
    let mut stats = Stats::default();
    let started = std::time::Instant::now();
    let registries = match registries(deps).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the webhook registries");
            return stats;
        }
    };
    let hooks = registries
        .values()
        .flat_map(|r| r.hooks.iter().map(move |hook| (&r.store, hook)));
    for (store, hook) in hooks {
        loop {
            let claimed = match store
                .claim_due(&hook.id, now.timestamp_millis(), QUEUE_LEASE, DRAIN_ROUND)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(webhook = hook.id, error = %e, "cannot read the retry schedule");
                    break;
                }
            };
            let count = claimed.len();
            let worked: Vec<Stats> = stream::iter(claimed)
                .map(|notification| async move {
                    let result = match store.head(&hook.id, &notification).await {
                        Ok(Some(head)) => queue::work(deps, store, hook, &notification, head).await,
                        Ok(None) => store
                            .forget_due(&hook.id, &notification)
                            .await
                            .map(|()| Stats::default()),
                        Err(e) => Err(e),
                    };
                    result.unwrap_or_else(|e| {
                        tracing::warn!(webhook = hook.id, error = %e, "webhook queue interrupted; it comes due again after its lease");
                        Stats {
                            interrupted: 1,
                            ..Stats::default()
                        }
                    })
                })
                .buffer_unordered(QUEUE_CONCURRENCY)
                .collect()
                .await;
            for s in &worked {
                stats.merge(s);
            }
            if count < DRAIN_ROUND || started.elapsed() > DRAIN_BUDGET {
                break;
            }
        }
    }
    stats
}
