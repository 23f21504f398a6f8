//! The delivery-outcome event: the one JSON shape of every record on `notification-delivery`,
//! keyed by notification id. One record per attempt outcome per channel, in the one vocabulary of
//! `DESIGN.md` §3 ([`OutcomeStatus`] with a `reason`).
//!
//! ```json
//! {"v":1,"id":"<uuidv7>","notificationId":"…","userId":"alice","notificationType":"comment",
//!  "channel":"IN_APP","status":"suppressed","reason":"no-connection",
//!  "at":"2026-11-29T12:00:00.004Z","latencyMs":4}
//! ```
//!
//! EMAIL and SMS outcomes also name the provider that answered (`"provider":"smtp"`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Channel, Notification, OutcomeStatus};
use crate::tenant::Tenant;

use super::envelope::ENVELOPE_VERSION;

/// Reasons, defined once. `status` says what happened; `reason` says why.
pub mod reason {
    /// IN_APP: the user had no open connection (the inbox still holds it; `sync` brings it).
    pub const NO_CONNECTION: &str = "no-connection";
    /// IN_APP: every connection was gone.
    pub const GONE: &str = "gone";
    /// The gateway or provider refused or was unreachable.
    pub const ERROR: &str = "error";
    pub const OPTED_OUT: &str = "opted-out";
    pub const QUIET_HOURS: &str = "quiet-hours";
    pub const NOT_CONFIGURED: &str = "not-configured";
    pub const PROVIDER_4XX: &str = "provider-4xx";
    pub const PROVIDER_5XX: &str = "provider-5xx";
    /// PUSH: the user has no (unexpired) Web Push subscription and no device.
    pub const NO_SUBSCRIPTION: &str = "no-subscription";
    /// PUSH: the user's only targets are on platforms this deployment has no provider for (an
    /// iOS device without APNs settings, a subscription without VAPID).
    pub const NO_PROVIDER: &str = "no-provider";
    /// EMAIL / SMS: the user has no email address / phone number on record.
    pub const NO_CONTACT: &str = "no-contact";
    /// The provider answered 429 with a `Retry-After` too long to wait inline: `deferred` to
    /// the retry schedule (or `failed` after too many deferrals).
    pub const RATE_LIMITED: &str = "rate-limited";
    /// The notification's `expiresAt` passed before it could be sent (e.g. during quiet hours).
    pub const EXPIRED: &str = "expired";
    /// A user-supplied URL answered with a redirect, which is never followed
    /// ([`crate::egress`]).
    pub const REDIRECT_REFUSED: &str = "redirect-refused";
    /// A user-supplied URL, or an address its host resolved to, is outside the outbound policy
    /// ([`crate::egress`]): not https, loopback, private, link-local, …
    pub const ENDPOINT_REFUSED: &str = "endpoint-refused";
    /// An escalation step sent it: the notification was still unread (or unseen) when the step
    /// came due ([`crate::escalation`]).
    pub const ESCALATED: &str = "escalated";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOutcome {
    pub v: u32,
    /// UUIDv7 of this event.
    pub id: String,
    pub notification_id: String,
    pub user_id: String,
    /// The user's tenant; absent for the default tenant (and in records from before tenants).
    #[serde(default, skip_serializing_if = "crate::tenant::is_default")]
    pub tenant: Tenant,
    pub notification_type: String,
    pub channel: Channel,
    pub status: OutcomeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    /// From the notification's creation to this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// EMAIL / SMS: the provider that answered the send (`ses`, `smtp`, `twilio`,
    /// `twilio-fallback`): the one that sent it, or the last one a failed send reached.
    /// Absent when no provider was called (a gate, every breaker open) and on other channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The notification's `seq` in its user's inbox: a consumer tells by it whether the
    /// notification is from before the user's erase (`store/erase.rs`). Absent in records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl DeliveryOutcome {
    /// An outcome for `notification` on `channel`, now.
    pub fn new(
        notification: &Notification,
        channel: Channel,
        status: OutcomeStatus,
        reason: Option<&str>,
    ) -> Self {
        Self::at(notification, channel, status, reason, Utc::now())
    }

    /// An outcome for `notification` on `channel` that happened `at`. A send is stamped when it
    /// was handed over, not when the provider's answer came back: a client can see, read and
    /// click a frame before `@connections` answers the post, and the funnel must still show
    /// `sent` first.
    pub fn at(
        notification: &Notification,
        channel: Channel,
        status: OutcomeStatus,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Self {
        let latency_ms = (at - notification.created_at).num_milliseconds().max(0) as u64;
        DeliveryOutcome {
            v: ENVELOPE_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            notification_id: notification.id.clone(),
            user_id: notification.user_id.clone(),
            tenant: Tenant::default_tenant(),
            notification_type: notification.kind.clone(),
            channel,
            status,
            reason: reason.map(str::to_owned),
            at,
            latency_ms: Some(latency_ms),
            provider: None,
            seq: (notification.seq > 0).then_some(notification.seq),
        }
    }

    /// The same outcome, of `tenant`'s user.
    pub fn in_tenant(mut self, tenant: &Tenant) -> Self {
        self.tenant = tenant.clone();
        self
    }

    /// The same outcome, naming the provider that answered the send.
    pub fn with_provider(mut self, provider: Option<&str>) -> Self {
        self.provider = provider.map(str::to_owned);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
