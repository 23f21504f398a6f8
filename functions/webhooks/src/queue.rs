//! Working one notification's queue for one webhook, from a head this run owns: send it, record
//! the attempt, and on success (or dead-lettering) go on with the next message; on a failure
//! with retries left, hand the queue to the schedule and stop.

use chrono::Utc;
use shared::store::{LedgerEntry, LedgerState, StoreError};
use shared::webhooks::{AttemptResult, DeliveryAttempt, Webhook};

use crate::send::attempt;
use crate::{Deps, Stats, QUEUE_LEASE};

/// Sends `head` and what follows it in `notification_id`'s queue, until the queue is empty or
/// a message waits for its retry. A Redis failure stops the work (the queue's lease runs out and
/// a drain takes over); it is returned so the caller can count it.
pub async fn work(
    deps: &Deps,
    hook: &Webhook,
    notification_id: &str,
    head: String,
) -> Result<Stats, StoreError> {
    let store = &deps.store;
    let mut stats = Stats::default();
    let mut head = head;
    loop {
        let entry = store
            .ledger_entry(&hook.id, &head)
            .await?
            .unwrap_or(LedgerEntry {
                state: LedgerState::Queued,
                attempts: 0,
            });
        let message = match store.message(&hook.id, &head).await? {
            Some(m) if entry.state == LedgerState::Queued => m,
            // Pruned, or finished by someone else: it only leaves the queue.
            _ => {
                let next = store
                    .complete(
                        &hook.id,
                        notification_id,
                        &head,
                        entry,
                        Utc::now().timestamp_millis(),
                        QUEUE_LEASE,
                    )
                    .await?;
                match next {
                    Some(n) => {
                        head = n;
                        continue;
                    }
                    None => return Ok(stats),
                }
            }
        };
        let number = entry.attempts + 1;
        let outcome = attempt(deps, hook, &message).await;
        let mut record = DeliveryAttempt {
            event_id: message.id.clone(),
            kind: message.kind,
            notification_id: notification_id.to_owned(),
            attempt: number,
            status_code: outcome.status_code,
            error: outcome.error.clone(),
            result: AttemptResult::Delivered,
            at: outcome.at,
            duration_ms: outcome.duration_ms,
            next_attempt_at: None,
        };
        let final_state = if outcome.delivered {
            stats.delivered += 1;
            LedgerState::Sent
        } else if let Some(delay) = deps.settings.retry_after(number) {
            let due = Utc::now() + delay;
            store
                .reschedule(
                    &hook.id,
                    notification_id,
                    &head,
                    number,
                    due.timestamp_millis(),
                )
                .await?;
            record.result = AttemptResult::Retrying;
            record.next_attempt_at = Some(due);
            stats.retrying += 1;
            store.record_attempt(&hook.id, &record).await?;
            return Ok(stats);
        } else {
            record.result = AttemptResult::DeadLettered;
            stats.dead_lettered += 1;
            tracing::warn!(
                webhook = hook.id,
                message = message.id,
                attempts = number,
                "webhook message dead-lettered"
            );
            LedgerState::Dead
        };
        let next = store
            .complete(
                &hook.id,
                notification_id,
                &head,
                LedgerEntry {
                    state: final_state,
                    attempts: number,
                },
                Utc::now().timestamp_millis(),
                QUEUE_LEASE,
            )
            .await?;
        store.record_attempt(&hook.id, &record).await?;
        match next {
            Some(n) => head = n,
            None => return Ok(stats),
        }
    }
}
