//! The scheduled drain of the retry schedule: the entries due now are claimed (a lease, so a
//! concurrent drain skips them), run as jobs, and removed once their outcomes are acknowledged.
//! A user's trailing badge update ([`crate::badge`]) is removed first, then sent.
//! An escalation step's timer is decided first ([`crate::escalate::admit`]): a cancelled one is
//! removed without a run; a digest item's close reads the item as it is now
//! ([`crate::digest::at_close`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use shared::store::{DueEntry, StoreError};
use shared::tenant::Tenant;

use crate::badge::{update_badge, BADGE_ENTRY};
use crate::job::Job;
use crate::run::{acknowledge, produce, run_job, JobDone, JOB_CONCURRENCY};
use crate::{digest, escalate};
use shared::trigger::Counters;

use crate::{Deps, Stats};

/// How long a drain's claim on a retry entry lasts (longer than the function's timeout).
const DRAIN_LEASE: Duration = Duration::from_secs(300);
/// Entries claimed per round of a drain, and the time a drain may start new rounds for.
const DRAIN_ROUND: usize = 200;
const DRAIN_BUDGET: Duration = Duration::from_secs(20);

/// Handles the retry-schedule entries due at `now`: claims them (a lease, so a concurrent drain
/// skips them), runs each, produces the outcomes, and removes the entries that completed. An
/// entry whose run hit an infrastructure error keeps its claim and comes due again when the
/// lease ends.
pub async fn drain_due(deps: &Deps, now: DateTime<Utc>) -> Stats {
    let mut stats = Stats::default();
    let started = std::time::Instant::now();
    loop {
        let claimed = match deps
            .ledger
            .claim_due(now.timestamp_millis(), DRAIN_LEASE, DRAIN_ROUND)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the retry schedule");
                break;
            }
        };
        let count = claimed.len();
        let (badges, claimed): (Vec<DueEntry>, Vec<DueEntry>) =
            claimed.into_iter().partition(|d| d.entry_id == BADGE_ENTRY);
        for done in stream::iter(badges)
            .map(|due| drain_badge(deps, due))
            .buffer_unordered(JOB_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
        {
            stats.records += 1;
            match done {
                Some(done) => stats.count_badge(&done),
                None => stats.retried += 1,
            }
        }
        let results: Vec<(DueEntry, Option<Result<JobDone, StoreError>>)> = stream::iter(claimed)
            .map(|due| async move {
                // The entry's tenant is its member's: every step runs in its keys.
                let deps = &deps.for_tenant(&due.tenant);
                let job = match deps.ledger.entry(&due).await {
                    Ok(Some(text)) => match serde_json::from_str::<Job>(&text) {
                        Ok(job) => Job {
                            tenant: due.tenant.clone(),
                            ..job
                        },
                        Err(e) => {
                            tracing::error!(entry = due.entry_id, error = %e, "dropping an unreadable retry entry");
                            return (due, None);
                        }
                    },
                    Ok(None) => return (due, None),
                    Err(e) => return (due, Some(Err(e))),
                };
                match escalate::admit(deps, &job, now).await {
                    Ok(true) => {}
                    Ok(false) => return (due, None),
                    Err(e) => return (due, Some(Err(e))),
                }
                let job = match digest::at_close(deps, job).await {
                    Ok(Some(job)) => job,
                    Ok(None) => return (due, None),
                    Err(e) => return (due, Some(Err(e))),
                };
                let done = run_job(deps, &job, now).await;
                (due, Some(done))
            })
            .buffer_unordered(JOB_CONCURRENCY)
            .collect()
            .await;
        let mut finished = Vec::new();
        for (due, result) in results {
            stats.records += 1;
            match result {
                None => {
                    if let Err(e) = deps.ledger.finish(&due).await {
                        tracing::warn!(error = %e, "could not remove a retry entry");
                    }
                }
                Some(Ok(done)) => finished.push((due, done)),
                Some(Err(e)) => {
                    tracing::warn!(entry = due.entry_id, error = %e, "retry entry failed; it comes due again after its lease");
                    stats.retried += 1;
                }
            }
        }
        let acked = produce(deps, &finished.iter().map(|(_, d)| d).collect::<Vec<_>>()).await;
        let mut acks: BTreeMap<(&Tenant, &str), Vec<(String, u32)>> = BTreeMap::new();
        for ((due, done), ok) in finished.iter().zip(acked) {
            stats.merge(&done.stats);
            if ok {
                acks.entry((&due.tenant, &due.user_id))
                    .or_default()
                    .extend(done.acks.iter().cloned());
                if let Err(e) = deps.ledger.finish(due).await {
                    tracing::warn!(error = %e, "could not remove a retry entry");
                }
            } else {
                stats.retried += 1;
            }
        }
        acknowledge(deps, acks).await;
        if count < DRAIN_ROUND || started.elapsed() > DRAIN_BUDGET {
            break;
        }
    }
    stats
}

/// A claimed trailing badge update: removed first (a change after the removal schedules a fresh
/// one; see [`crate::badge`] for why none is lost), then sent. `None` on an infrastructure error:
/// an entry not removed comes due again after its lease; one removed is not retried.
async fn drain_badge(deps: &Deps, due: DueEntry) -> Option<crate::badge::BadgeDone> {
    if let Err(e) = deps.ledger.finish(&due).await {
        tracing::warn!(user = due.user_id, error = %e, "could not remove a badge entry; it comes due again after its lease");
        return None;
    }
    match update_badge(&deps.for_tenant(&due.tenant), &due.user_id).await {
        Ok(done) => Some(done),
        Err(e) => {
            tracing::warn!(user = due.user_id, error = %e, "badge update lost to an infrastructure error; the next change brings it");
            None
        }
    }
}
