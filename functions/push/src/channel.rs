//! One channel of a job: the gates, then the send, and what it came to
//! ([`ChannelResult`](crate::job::ChannelResult)).
//!
//! Pure of Redis and Kafka: the run of a job ([`crate::run`]) reads the user's view before and writes
//! the results after.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{join, join_all};
use shared::addresses::UnsubscribeToken;
use shared::config::SenderSettings;
use shared::model::{Channel, Notification, OutcomeStatus};
use shared::protocol::outcome::reason;
use shared::redact::Redacted;
use shared::store::{ChannelView, StoredDevice, StoredSubscription};
use shared::tenant::Tenant;

use crate::devices::{self, send_to_device, via, DeviceMessage};
use crate::gates::{self, Gate};
use crate::job::{ChannelResult, Job, PushTarget};
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
        Channel::Push => deps.senders.push_configured(),
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
        Channel::Push => return send_push(deps, job, view, now).await,
        Channel::Email => {
            let Some(to) = &view.contacts.email else {
                return result(OutcomeStatus::Suppressed, Some(reason::NO_CONTACT));
            };
            let url = unsubscribe_url(&deps.settings, n, &job.tenant);
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

/// PUSH past its gates: every live subscription and every device the job targets,
/// concurrently, each through its platform's adapter; expired subscriptions are removed without
/// a send. `view.devices` holds the devices the user owns ([`crate::run`] checked the index).
async fn send_push(
    deps: &Deps,
    job: &Job,
    view: &ChannelView,
    now: DateTime<Utc>,
) -> ChannelResult {
    let n = &job.notification;
    let send = &deps.settings.send;
    let targeted = |id: &str| job.only.as_ref().is_none_or(|o| o.iter().any(|t| t == id));
    let (expired, live): (Vec<&StoredSubscription>, Vec<_>) = view
        .subscriptions
        .iter()
        .filter(|s| targeted(&s.subscription.id))
        .partition(|s| s.subscription.expired(now));
    let phones: Vec<&StoredDevice> = view
        .devices
        .iter()
        .filter(|d| targeted(&d.device.id))
        .collect();
    let expired = expired
        .into_iter()
        .map(|s| PushTarget::Subscription(s.clone()));
    if live.is_empty() && phones.is_empty() {
        let mut r = ChannelResult::settled(
            job,
            OutcomeStatus::Suppressed,
            Some(reason::NO_SUBSCRIPTION),
        );
        r.gone = expired.collect();
        return r;
    }
    let ttl = push_ttl(n, now, send.ttl);
    let web = PushMessage::new(&payload::PushPayload::of(n), n.priority, ttl);
    // The badge is exact: `view.unread` is the inbox's `unread` (`{u:<id>}:meta`), which every
    // inbox script moves in the same step as the change it counts, read when this job started,
    // after the create (delivery routes a notification here only once its create is committed).
    // So it is the user's unread count at the latest seq, this notification included unless it
    // was read already; a change after the read brings the phones a badge update of its own
    // ([`crate::badge`]).
    let phone = DeviceMessage::Notification {
        n,
        badge: devices::badge(view.unread),
        ttl,
    };
    let senders = &deps.senders;
    let (web_sends, phone_sends) = join(
        join_all(live.iter().map(|s| async {
            let delivery = via(
                &senders.policy,
                senders.push.as_deref(),
                &s.subscription,
                &web,
            );
            (PushTarget::Subscription((*s).clone()), delivery.await)
        })),
        join_all(phones.iter().map(|d| async {
            let delivery = send_to_device(senders, &d.device, &phone).await;
            (PushTarget::Device((*d).clone()), delivery)
        })),
    )
    .await;
    let deliveries = web_sends.into_iter().chain(phone_sends).collect();
    let mut r = push_result(job, deliveries, send.max_deferrals);
    r.gone.extend(expired);
    r
}

/// The push `TTL`: the configured one, cut short by the notification's expiry.
fn push_ttl(n: &Notification, now: DateTime<Utc>, ttl: Duration) -> Duration {
    match n.expires_at {
        Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(ttl),
        None => ttl,
    }
}

/// The one-click unsubscribe link for `n`'s type, for its user of `tenant` (settings guarantee
/// both parts with email).
pub fn unsubscribe_url(settings: &SenderSettings, n: &Notification, tenant: &Tenant) -> String {
    let token = UnsubscribeToken {
        user_id: n.user_id.clone(),
        kind: n.kind.clone(),
        tenant: tenant.clone(),
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
