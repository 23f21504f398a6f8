//! The user's phones: what goes to a device ([`DeviceMessage`]: a notification with the user's
//! unread count as its badge, or a silent badge update) and the per-platform dispatch
//! ([`send_to_device`]), through the platform's adapter and the one send policy.
//!
//! A platform whose adapter this deployment has not configured is skipped (`None`): the PUSH
//! aggregate counts it as neither sent nor failed, and a channel whose every target was skipped
//! is `suppressed`/`no-provider` ([`crate::retry::push_result`]).

use std::time::Duration;

use shared::devices::{Device, Platform};
use shared::model::Notification;

use crate::senders::apns::ApnsMessage;
use crate::senders::fcm::FcmMessage;
use crate::senders::{Adapter, Delivery, SendPolicy};
use crate::Senders;

/// What goes to a phone.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeviceMessage<'a> {
    /// A notification, kept by the provider for `ttl` at most, with the user's unread count.
    Notification {
        n: &'a Notification,
        badge: u32,
        ttl: Duration,
    },
    /// A silent update of the badge to the user's unread count.
    Badge(u32),
}

impl DeviceMessage<'_> {
    fn fcm(&self) -> FcmMessage {
        match *self {
            DeviceMessage::Notification { n, badge, ttl } => FcmMessage::of(n, ttl, badge),
            DeviceMessage::Badge(badge) => FcmMessage::badge_update(badge),
        }
    }

    fn apns(&self) -> ApnsMessage {
        match *self {
            DeviceMessage::Notification { n, badge, ttl } => ApnsMessage::of(n, badge, ttl),
            DeviceMessage::Badge(badge) => ApnsMessage::badge_update(badge),
        }
    }
}

/// One send of `message` to `device` through the adapter of its platform; `None` when this
/// deployment has none for it.
pub(crate) async fn send_to_device(
    senders: &Senders,
    device: &Device,
    message: &DeviceMessage<'_>,
) -> Option<Delivery> {
    let (policy, token) = (&senders.policy, device.token.as_str());
    match device.platform {
        Platform::Android => via(policy, senders.fcm.as_deref(), token, &message.fcm()).await,
        Platform::Ios => via(policy, senders.apns.as_deref(), token, &message.apns()).await,
    }
}

/// `message` to `to` through `adapter`, if there is one.
pub(crate) async fn via<A: Adapter + ?Sized>(
    policy: &SendPolicy,
    adapter: Option<&A>,
    to: &A::To,
    message: &A::Message,
) -> Option<Delivery> {
    Some(policy.deliver(adapter?, to, message).await)
}

/// A badge from an unread count (a count past `u32::MAX` shows as that).
pub(crate) fn badge(unread: u64) -> u32 {
    u32::try_from(unread).unwrap_or(u32::MAX)
}
