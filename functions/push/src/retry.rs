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
use shared::store::StoredSubscription;

use crate::job::{ChannelResult, Job};
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
        channels: vec![channel],
        hop: job.hop + 1,
        only,
        silent,
        reason: why.to_owned(),
        step: job.step,
    }
}

/// Aggregates the user's endpoints into the PUSH outcome: `sent` if any accepted; else
/// `deferred` if any was throttled; else `failed` (`gone` if every one was gone). Throttled
/// endpoints are retried; after a `sent`, silently.
pub(crate) fn push_result(
    job: &Job,
    deliveries: Vec<(&StoredSubscription, Delivery)>,
    max_deferrals: u32,
) -> ChannelResult {
    let mut sent = 0;
    let mut gone = Vec::new();
    let mut throttled: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut first_failure: Option<&'static str> = None;
    for (stored, delivery) in deliveries {
        match delivery {
            Delivery::Sent => sent += 1,
            Delivery::Gone { .. } => gone.push(stored.clone()),
            Delivery::Later { at } => throttled.push((stored.subscription.id.clone(), at)),
            Delivery::Failed { reason, detail } | Delivery::Unavailable { reason, detail } => {
                tracing::warn!(
                    user = job.notification.user_id,
                    endpoint = stored.subscription.id,
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
    } else {
        status(OutcomeStatus::Failed, Some(reason::GONE))
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
}
