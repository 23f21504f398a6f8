//! One channel of a job: the gates, then the send, and what it came to
//! ([`ChannelResult`](crate::job::ChannelResult)).
//!
//! Pure of Redis and Kafka: the run of a job ([`crate::run`]) reads the user's view before and writes
//! the results after.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use shared::addresses::UnsubscribeToken;
use shared::config::SenderSettings;
use shared::model::{Channel, Notification, OutcomeStatus};
use shared::protocol::outcome::reason;
use shared::redact::Redacted;
use shared::store::{ChannelView, StoredSubscription};

use crate::deps::PushAdapter;
use crate::gates::{self, Gate};
use crate::job::{ChannelResult, Job};
use crate::payload;
use crate::retry::{later, next_hop, push_result};
use crate::senders::sms::SmsBody;
use crate::senders::webpush::PushMessage;
use crate::senders::Delivery;
use crate::Deps;

/// Gates, then the send, for one channel of a job.
pub(crate) async fn run_channel(
    deps: &Deps,
    job: &Job,
    channel: Channel,
    view: &ChannelView,
    now: DateTime<Utc>,
) -> ChannelResult {
    let n = &job.notification;
    let configured = match channel {
        Channel::Push => deps.senders.push.is_some(),
        Channel::Email => !deps.senders.email.is_empty(),
        Channel::Sms => !deps.senders.sms.is_empty(),
        Channel::InApp => false,
    };
    let result = |status, why| ChannelResult::settled(job, status, why);
    match gates::check(n, channel, configured, &view.preferences, now) {
        Gate::Pass => {}
        Gate::Suppress(why) => return result(OutcomeStatus::Suppressed, Some(why)),
        Gate::Defer(until) => {
            let mut r = result(OutcomeStatus::Deferred, Some(reason::QUIET_HOURS));
            r.retry = Some((
                next_hop(job, channel, job.only.clone(), job.silent, "quiet-hours"),
                until,
            ));
            return r;
        }
    }
    let senders = &deps.senders;
    let (delivery, provider) = match channel {
        Channel::Push => {
            let Some(adapter) = &senders.push else {
                return result(OutcomeStatus::Suppressed, Some(reason::NOT_CONFIGURED));
            };
            return send_push(deps, &**adapter, job, view, now).await;
        }
        Channel::Email => {
            let Some(to) = &view.contacts.email else {
                return result(OutcomeStatus::Suppressed, Some(reason::NO_CONTACT));
            };
            let url = unsubscribe_url(&deps.settings, n);
            let mail = payload::email(n, &url);
            let (delivery, provider) = senders
                .policy
                .deliver_first(&senders.email, to, &mail)
                .await;
            tracing::debug!(user = n.user_id, id = n.id, ?provider, "email answered");
            (delivery, provider)
        }
        Channel::Sms => {
            let Some(to) = &view.contacts.phone else {
                return result(OutcomeStatus::Suppressed, Some(reason::NO_CONTACT));
            };
            let text = SmsBody(payload::sms_text(n));
            let (delivery, provider) = senders.policy.deliver_first(&senders.sms, to, &text).await;
            tracing::debug!(user = n.user_id, id = n.id, ?provider, "sms answered");
            (delivery, provider)
        }
        Channel::InApp => return ChannelResult::default(),
    };
    let failed = |reason: &'static str, detail: &Redacted| {
        tracing::warn!(
            user = n.user_id,
            id = n.id,
            channel = channel.as_str(),
            reason,
            %detail,
            "send failed"
        );
        result(OutcomeStatus::Failed, Some(reason))
    };
    let mut settled = match delivery {
        Delivery::Sent => result(OutcomeStatus::Sent, None),
        // A dead mailbox or number: recorded, not retried. The contact stays on record (the
        // owner's service set it); removing it is left to that service.
        Delivery::Gone { detail } => failed(reason::GONE, &detail),
        Delivery::Failed { reason, detail } | Delivery::Unavailable { reason, detail } => {
            failed(reason, &detail)
        }
        Delivery::Later { at } => later(
            job,
            channel,
            None,
            at,
            job.silent,
            deps.settings.send.max_deferrals,
        ),
    };
    settled.provider = provider;
    settled
}

/// PUSH past its gates: every live subscription the job targets, concurrently; expired ones are
/// removed without a send.
async fn send_push(
    deps: &Deps,
    adapter: &PushAdapter,
    job: &Job,
    view: &ChannelView,
    now: DateTime<Utc>,
) -> ChannelResult {
    let n = &job.notification;
    let send = &deps.settings.send;
    let targets: Vec<&StoredSubscription> = view
        .subscriptions
        .iter()
        .filter(|s| {
            job.only
                .as_ref()
                .is_none_or(|o| o.contains(&s.subscription.id))
        })
        .collect();
    let (expired, live): (Vec<_>, Vec<_>) = targets
        .into_iter()
        .partition(|s| s.subscription.expired(now));
    if live.is_empty() {
        let mut r = ChannelResult::settled(
            job,
            OutcomeStatus::Suppressed,
            Some(reason::NO_SUBSCRIPTION),
        );
        r.gone = expired.into_iter().cloned().collect();
        return r;
    }
    let message = PushMessage::new(
        &payload::PushPayload::of(n),
        n.priority,
        push_ttl(n, now, send.ttl),
    );
    let policy = &deps.senders.policy;
    let deliveries = join_all(
        live.iter()
            .map(|s| async { (*s, policy.deliver(adapter, &s.subscription, &message).await) }),
    )
    .await;
    let mut r = push_result(job, deliveries, send.max_deferrals);
    r.gone.extend(expired.into_iter().cloned());
    r
}

/// The push `TTL`: the configured one, cut short by the notification's expiry.
fn push_ttl(n: &Notification, now: DateTime<Utc>, ttl: Duration) -> Duration {
    match n.expires_at {
        Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(ttl),
        None => ttl,
    }
}

/// The one-click unsubscribe link for `n`'s type (settings guarantee both parts with email).
pub fn unsubscribe_url(settings: &SenderSettings, n: &Notification) -> String {
    let token = UnsubscribeToken {
        user_id: n.user_id.clone(),
        kind: n.kind.clone(),
    }
    .sign(
        settings
            .unsubscribe_secret
            .as_deref()
            .unwrap_or("")
            .as_bytes(),
    );
    format!(
        "{}/v1/unsubscribe?token={token}",
        settings.public_api_url.as_deref().unwrap_or("")
    )
}
