//! Escalation steps in `push` ([`shared::escalation`]): planned when the created notification
//! arrives from Kafka, decided when their timer comes due.
//!
//! The timer is the retry schedule itself: each step is a [`Job`] on it (its own entry id and
//! send records, see [`Job::send_key`]) due at `createdAt + after`. When a drain claims a step's
//! first trip, [`admit`] decides it once, atomically against the inbox state
//! ([`shared::store::EscalationBook::decide`]): a read on any device, mark-all-read, archive or
//! delete before that moment cancels it, and the cancellation is recorded. A fired step runs as
//! any job (gates, quiet hours, outcomes with reason `escalated`); its send records keep a
//! redelivered create, or a drain that runs the timer again, from sending twice.

use chrono::{DateTime, Utc};
use shared::model::Notification;
use shared::store::{EscalationBook, StepDecision, StoreError};

use crate::job::Job;
use crate::Deps;

/// Records `n`'s steps as pending, then puts each one's timer on the retry schedule. Both are
/// idempotent: a redelivered create changes nothing.
pub(crate) async fn plan(deps: &Deps, n: &Notification) -> Result<(), StoreError> {
    let Some(steps) = &n.escalate else {
        return Ok(());
    };
    // Records first: a timer always finds its step.
    deps.escalations.plan(n).await?;
    for (i, step) in steps.iter().enumerate() {
        let job = Job::escalation(n, i as u8 + 1, &step.channels);
        let entry = serde_json::to_string(&job).unwrap_or_default();
        let due = EscalationBook::due_at(n, step);
        deps.ledger
            .schedule(
                &n.user_id,
                n.seq,
                &job.entry_id(),
                &entry,
                due.timestamp_millis(),
            )
            .await?;
    }
    Ok(())
}

/// May this drained job run? Only an escalation step's first trip is decided here; every other
/// job may.
pub(crate) async fn admit(deps: &Deps, job: &Job, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let (Some(step), 0) = (job.step, job.hop) else {
        return Ok(true);
    };
    let n = &job.notification;
    let Some(spec) = n
        .escalate
        .as_ref()
        .and_then(|s| s.get(usize::from(step).saturating_sub(1)))
    else {
        return Ok(false);
    };
    match deps
        .escalations
        .decide(&n.user_id, &n.id, step, spec, now)
        .await?
    {
        StepDecision::Fire => Ok(true),
        StepDecision::Cancelled { reason } => {
            tracing::debug!(
                user = n.user_id,
                id = n.id,
                step,
                reason,
                "escalation cancelled"
            );
            Ok(false)
        }
    }
}
