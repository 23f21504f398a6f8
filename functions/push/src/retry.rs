//! The deferral policy: what a throttled send or a quiet-hours gate becomes, as a next trip
//! through the retry schedule ([`next_hop`]), and how the PUSH outcome of several endpoints is
//! decided ([`push_result`]). Pure: the job schedules what these return.
//!
//! Deferrals are bounded (`PUSH_MAX_DEFERRALS`), so a provider that always throttles ends in
//! `failed`. After a PUSH `sent`, the endpoints that were throttled are retried silently: the
//! channel's outcome is already recorded.

use chrono::{DateTime, Utc};
use shared::model::{Channel, OutcomeStatus};
use shared::protocol::outcome::reason;

use crate::job::{ChannelResult, Job, PushTarget};
use crate::senders::Delivery;

/// A throttled send: deferred to `at`, or failed after too many deferrals.
pub(crate) fn later(
    job: &Job,
    channel: Channel,
    only: Option<Vec<String>>,
    at: DateTime<Utc>,
    silent: bool,
    max_deferrals: u32,
) -> ChannelResult {
    let outcome = |s, w| (!job.silent).then_some((s, w));
    if job.hop >= max_deferrals {
        return ChannelResult {
            outcome: outcome(OutcomeStatus::Failed, Some(reason::RATE_LIMITED)),
            status: "failed".into(),
            ..ChannelResult::default()
        };
    }
    ChannelResult {
        outcome: if silent {
            None
        } else {
            outcome(OutcomeStatus::Deferred, Some(reason::RATE_LIMITED))
        },
        status: if silent {
            "silent".into()
        } else {
            "deferred".into()
        },
        retry: Some((next_hop(job, channel, only, silent, "rate-limited"), at)),
        ..ChannelResult::default()
    }
}

/// The job's next trip through the retry schedule, for one channel.
pub(crate) fn next_hop(
    job: &Job,
    channel: Channel,
    only: Option<Vec<String>>,
    silent: bool,
    why: &str,
) -> Job {
    Job {
        notification: job.notification.clone(),
        tenant: job.tenant.clone(),
        channels: vec![channel],
        hop: job.hop + 1,
        only,
        silent,
        reason: why.to_owned(),
        step: job.step,
    }
}

/// Aggregates the user's targets (subscriptions and devices) into the PUSH outcome: `sent` if
/// any accepted; else `deferred` if any was throttled; else `failed` with the first failure's
/// reason; else `failed`/`gone` if any was gone; else (every target on a platform without a
/// provider, `None`) `suppressed`/`no-provider`. Throttled targets, and only they, are retried
/// ([`Job::only`]): a target that accepted it is never sent it again. After a `sent`, silently.
pub(crate) fn push_result(
    job: &Job,
    deliveries: Vec<(PushTarget, Option<Delivery>)>,
    max_deferrals: u32,
) -> ChannelResult {
    let mut sent = 0;
    let mut gone = Vec::new();
    let mut throttled: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut first_failure: Option<&'static str> = None;
    for (target, delivery) in deliveries {
        let Some(delivery) = delivery else {
            tracing::debug!(
                user = job.notification.user_id,
                target = target.id(),
                "no provider for the target's platform: skipped"
            );
            continue;
        };
        match delivery {
            Delivery::Sent => sent += 1,
            Delivery::Gone { .. } => gone.push(target),
            Delivery::Later { at } => throttled.push((target.id().to_owned(), at)),
            Delivery::Failed { reason, detail } | Delivery::Unavailable { reason, detail } => {
                tracing::warn!(
                    user = job.notification.user_id,
                    target = target.id(),
                    reason,
                    %detail,
                    "push failed"
                );
                first_failure.get_or_insert(reason);
            }
        }
    }
    let status = |s, w| ChannelResult::settled(job, s, w);
    let mut r = if !throttled.is_empty() {
        let at = throttled
            .iter()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or_else(Utc::now);
        let ids = throttled.into_iter().map(|(id, _)| id).collect();
        let silent = job.silent || sent > 0;
        let mut r = later(job, Channel::Push, Some(ids), at, silent, max_deferrals);
        if sent > 0 && !job.silent {
            r.outcome = Some((OutcomeStatus::Sent, None));
            r.status = "sent".into();
        }
        r
    } else if sent > 0 {
        status(OutcomeStatus::Sent, None)
    } else if let Some(why) = first_failure {
        status(OutcomeStatus::Failed, Some(why))
    } else if !gone.is_empty() {
        status(OutcomeStatus::Failed, Some(reason::GONE))
    } else {
        status(OutcomeStatus::Suppressed, Some(reason::NO_PROVIDER))
    };
    r.gone = gone;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::model::Notification;

    #[test]
    fn retry_entries_name_their_notification_channel_and_hop() {
        let n: Notification = serde_json::from_value(serde_json::json!({
            "id": "n1", "seq": 1, "userId": "u", "type": "t", "title": "x", "body": "",
            "data": {}, "channels": ["IN_APP", "SMS", "PUSH"], "priority": "normal",
            "read": false, "seen": false, "archived": false, "createdAt": "2026-01-10T12:00:00Z"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let job = Job::from_notification(&n).unwrap_or_else(|| panic!("a job"));
        assert_eq!(job.channels, [Channel::Push, Channel::Sms]);
        let next = next_hop(
            &job,
            Channel::Push,
            Some(vec!["s1".into()]),
            false,
            "rate-limited",
        );
        assert_eq!(next.entry_id(), "n1|PUSH|1");
        let text = serde_json::to_string(&next).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Job>(&text).ok(), Some(next));
    }

    fn device(id: &str) -> PushTarget {
        let raw = format!(
            r#"{{"id":"{id}","platform":"android","token":"t","createdAt":"2026-01-10T12:00:00Z"}}"#
        );
        PushTarget::Device(shared::store::StoredDevice {
            device: serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}")),
            raw,
        })
    }

    /// The PUSH aggregate over targets, a platform without a provider (`None`) among them.
    #[test]
    fn the_push_outcome_aggregates_every_target_and_skips_those_without_a_provider() {
        let n: Notification = serde_json::from_value(serde_json::json!({
            "id": "n1", "seq": 1, "userId": "u", "type": "t", "title": "x", "body": "",
            "data": {}, "channels": ["PUSH"], "priority": "normal",
            "read": false, "seen": false, "archived": false, "createdAt": "2026-01-10T12:00:00Z"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let job = Job::from_notification(&n).unwrap_or_else(|| panic!("a job"));
        let gone = || {
            Some(Delivery::Gone {
                detail: shared::redact::Redacted::new("404 UNREGISTERED"),
            })
        };
        let outcome = |d: Vec<(PushTarget, Option<Delivery>)>| {
            let r = push_result(&job, d, 3);
            (r.outcome, r.gone.len(), r.retry.map(|(j, _)| j.only))
        };
        // Every target skipped: suppressed, nothing removed.
        assert_eq!(
            outcome(vec![(device("ios"), None)]),
            (
                Some((OutcomeStatus::Suppressed, Some(reason::NO_PROVIDER))),
                0,
                None
            )
        );
        // One sent, one gone, one skipped: sent, the gone one removed.
        assert_eq!(
            outcome(vec![
                (device("a"), Some(Delivery::Sent)),
                (device("b"), gone()),
                (device("ios"), None)
            ]),
            (Some((OutcomeStatus::Sent, None)), 1, None)
        );
        // Gone and skipped: failed/gone.
        assert_eq!(
            outcome(vec![(device("b"), gone()), (device("ios"), None)]),
            (Some((OutcomeStatus::Failed, Some(reason::GONE))), 1, None)
        );
        // One sent, one throttled: sent, and only the throttled one is retried.
        let at = Utc::now();
        assert_eq!(
            outcome(vec![
                (device("a"), Some(Delivery::Sent)),
                (device("slow"), Some(Delivery::Later { at }))
            ]),
            (
                Some((OutcomeStatus::Sent, None)),
                0,
                Some(Some(vec!["slow".to_owned()]))
            )
        );
    }
}
