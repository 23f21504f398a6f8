//! Working one notification's queue for one webhook, from a head this run owns: send it, record
//! the attempt, and act on its outcome ([`next_step`]): on success (or dead-lettering) go on with the
//! next message; on a failure with retries left, hand the queue to the schedule and stop; on
//! `gone`, remove the webhook.

use std::time::Duration;

use chrono::Utc;
use shared::adapter::Outcome;
use shared::config::WebhookSettings;
use shared::store::{LedgerEntry, LedgerState, StoreError, WebhookStore};
use shared::webhooks::{AttemptResult, DeliveryAttempt, Webhook};

use crate::{Deps, Stats, QUEUE_LEASE};

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered: the next message of the queue goes.
    Delivered,
    /// Try this message again after this delay; the queue waits behind it.
    RetryIn(Duration),
    /// Failed for good: a dead letter (until a replay); the next message goes.
    DeadLetter,
    /// The receiver is gone (410): the webhook is removed.
    Remove,
}

/// What failed attempt `attempt` (1 for the first) of a message leads to, from its outcome
/// alone:
/// - `sent` → delivered; `gone` → the webhook is removed (Standard Webhooks: a 410 asks the
///   sender to disable the endpoint and stop sending);
/// - `rejected` (a 3xx, another 4xx, a refused endpoint) and `too-large` (a message has no
///   smaller form) → dead-lettered at once: trying again would get the same answer;
/// - `transient` → the schedule's next delay (doubling from `WEBHOOK_RETRY_BASE_MS`);
///   `retry-after(d)` → the schedule's delay, or `d` when longer (at most the schedule's
///   longest delay, 6 h, so a receiver cannot park a queue for longer);
/// - either, once the schedule is over (`WEBHOOK_RETRY_WINDOW_MS`) → dead-lettered.
pub fn next_step(settings: &WebhookSettings, outcome: &Outcome, attempt: u32) -> Next {
    match outcome {
        Outcome::Sent => Next::Delivered,
        Outcome::Gone { .. } => Next::Remove,
        Outcome::Rejected { .. } | Outcome::TooLarge => Next::DeadLetter,
        Outcome::Transient { .. } => settings
            .retry_after(attempt)
            .map_or(Next::DeadLetter, Next::RetryIn),
        Outcome::RetryAfter(wait) => settings
            .retry_after(attempt)
            .map_or(Next::DeadLetter, |scheduled| {
                Next::RetryIn(scheduled.max((*wait).min(settings.retry_max_delay)))
            }),
    }
}

/// Sends `head` and what follows it in `notification_id`'s queue of `hook`, a webhook of
/// `store`'s tenant, until the queue is empty or a message waits for its retry. A Redis failure
/// stops the work (the queue's lease runs out and a drain takes over); it is returned so the
/// caller can count it.
pub async fn work(
    deps: &Deps,
    store: &WebhookStore,
    hook: &Webhook,
    notification_id: &str,
    head: String,
) -> Result<Stats, StoreError> {
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
        let attempt = deps.sender.attempt(hook, &message).await;
        let mut record = DeliveryAttempt {
            event_id: message.id.clone(),
            kind: message.kind,
            notification_id: notification_id.to_owned(),
            attempt: number,
            status_code: attempt.status_code,
            error: attempt.error.clone(),
            result: AttemptResult::Delivered,
            at: attempt.at,
            duration_ms: attempt.duration_ms,
            next_attempt_at: None,
        };
        let final_state = match next_step(&deps.settings, &attempt.outcome, number) {
            Next::Delivered => {
                stats.delivered += 1;
                LedgerState::Sent
            }
            Next::RetryIn(delay) => {
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
            }
            Next::DeadLetter => {
                record.result = AttemptResult::DeadLettered;
                stats.dead_lettered += 1;
                tracing::warn!(
                    webhook = hook.id,
                    message = message.id,
                    attempts = number,
                    outcome = ?attempt.outcome,
                    "webhook message dead-lettered"
                );
                LedgerState::Dead
            }
            Next::Remove => {
                // With its delivery state: nothing of it is sent again.
                store.remove(&hook.id).await?;
                stats.removed += 1;
                tracing::warn!(
                    webhook = hook.id,
                    outcome = ?attempt.outcome,
                    "webhook receiver answered 410 Gone: webhook removed"
                );
                return Ok(stats);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::outcome::reason;

    #[test]
    fn each_outcome_leads_where_the_contract_says() {
        let settings = WebhookSettings::default();
        let first = settings.retry_after(1).unwrap_or_default();
        assert_eq!(next_step(&settings, &Outcome::Sent, 1), Next::Delivered);
        assert_eq!(next_step(&settings, &Outcome::gone("410"), 1), Next::Remove);
        for refused in [
            Outcome::rejected(reason::PROVIDER_4XX, "400"),
            Outcome::rejected(reason::REDIRECT_REFUSED, "302"),
            Outcome::TooLarge,
        ] {
            assert_eq!(
                next_step(&settings, &refused, 1),
                Next::DeadLetter,
                "{refused:?}"
            );
        }
        let busy = Outcome::transient(reason::PROVIDER_5XX, "503");
        assert_eq!(next_step(&settings, &busy, 1), Next::RetryIn(first));
        // A Retry-After longer than the schedule's delay is honoured, up to the longest delay.
        let asked = first + Duration::from_secs(600);
        assert_eq!(
            next_step(&settings, &Outcome::RetryAfter(asked), 1),
            Next::RetryIn(asked)
        );
        assert_eq!(
            next_step(&settings, &Outcome::RetryAfter(Duration::ZERO), 1),
            Next::RetryIn(first)
        );
        assert_eq!(
            next_step(
                &settings,
                &Outcome::RetryAfter(Duration::from_secs(86_400 * 365)),
                1
            ),
            Next::RetryIn(settings.retry_max_delay)
        );
        // After the schedule, both are dead letters.
        let over = (1..)
            .find(|n| settings.retry_after(*n).is_none())
            .unwrap_or(u32::MAX);
        assert_eq!(next_step(&settings, &busy, over), Next::DeadLetter);
        assert_eq!(
            next_step(&settings, &Outcome::RetryAfter(asked), over),
            Next::DeadLetter
        );
    }
}
