//! Digest items in `push` ([`shared::digest`]): a digest item's off-app channels send once, when
//! its window closes, rendering what the item collected by then.
//!
//! The new item's `notification.created` (the only change of a digest that reaches `push`; its
//! updates change the inbox only) puts its job on the retry schedule, due when the window closes,
//! instead of running it. When the drain claims it, [`at_close`] reads the item as it is then and
//! renders its count and events ([`shared::digest::Digest::summary`]) as the body; the job then
//! runs as any other: gates, quiet hours (which defer it), send records (which keep a
//! redelivered create from sending it twice). `urgent` notifications never carry a digest.

use chrono::{DateTime, Utc};
use shared::model::Notification;
use shared::store::StoreError;

use crate::job::Job;
use crate::Deps;

/// The job of a new digest item, and when it is due: `None` for any other notification.
pub(crate) fn close(n: &Notification) -> Option<(Job, DateTime<Utc>)> {
    let closes = n.digest.as_ref()?.closes_at();
    let mut job = Job::from_notification(n)?;
    job.reason = "digest".into();
    Some((job, closes))
}

/// Puts `n`'s close on the retry schedule, if it is a digest item asking for off-app channels.
pub(crate) async fn plan(deps: &Deps, n: &Notification) -> Result<(), StoreError> {
    let Some((job, due)) = close(n) else {
        return Ok(());
    };
    let entry = serde_json::to_string(&job).unwrap_or_default();
    deps.ledger
        .schedule(
            &n.user_id,
            n.seq,
            &job.entry_id(),
            &entry,
            due.timestamp_millis(),
        )
        .await
}

/// A drained job, ready to run: a digest item's close carries the item as it is now, rendered;
/// `None` when the item is gone (deleted, evicted). Every other job is returned as it is.
pub(crate) async fn at_close(deps: &Deps, mut job: Job) -> Result<Option<Job>, StoreError> {
    if job.hop > 0 || job.step.is_some() || job.notification.digest.is_none() {
        return Ok(Some(job));
    }
    let n = &job.notification;
    let Some(mut current) = deps.ledger.notification(&n.user_id, &n.id).await? else {
        return Ok(None);
    };
    if let Some(d) = &current.digest {
        current.body = d.summary();
    }
    job.notification = current;
    Ok(Some(job))
}
