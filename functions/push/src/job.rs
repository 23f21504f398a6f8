//! One send job: a notification's off-app channels for its user, from Kafka (hop 0) or from the
//! retry schedule (hop n) ([`Job`]), and what each channel of it came to ([`ChannelResult`]).
//! Plain data: running a job is [`crate::run`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::model::{Channel, Notification, OutcomeStatus};
use shared::store::{StoredDevice, StoredSubscription};
use shared::tenant::Tenant;

/// One trip of a notification's off-app channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub notification: Notification,
    /// The user's tenant (from the record's envelope); absent for the default tenant.
    #[serde(default, skip_serializing_if = "shared::tenant::is_default")]
    pub tenant: Tenant,
    pub channels: Vec<Channel>,
    /// 0 from Kafka; n on the n-th trip through the retry schedule.
    pub hop: u32,
    /// A PUSH retry: only these targets (subscription and device ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// Emit no outcome (the channel's outcome was already recorded: a retry of the endpoints
    /// that were throttled while others accepted).
    #[serde(default)]
    pub silent: bool,
    /// Why it was scheduled (logs).
    #[serde(default)]
    pub reason: String,
    /// The escalation step (1-based) this trip sends; `None` for the notification's own
    /// channels. A step's sends have their own records (see [`Job::send_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u8>,
}

impl Job {
    /// The job a new notification asks for; `None` when it asks for no off-app channel.
    pub(crate) fn from_notification(n: &Notification) -> Option<Job> {
        let channels: Vec<Channel> = Channel::ALL
            .into_iter()
            .filter(|c| *c != Channel::InApp && n.channels.contains(c))
            .collect();
        (!channels.is_empty()).then(|| Job {
            notification: n.clone(),
            tenant: Tenant::default_tenant(),
            channels,
            hop: 0,
            only: None,
            silent: false,
            reason: String::new(),
            step: None,
        })
    }

    /// The first trip of escalation step `step` (1-based) of `n`: its channels, decided when
    /// it comes due ([`crate::escalate`]).
    pub(crate) fn escalation(n: &Notification, step: u8, channels: &[Channel]) -> Job {
        Job {
            notification: n.clone(),
            tenant: Tenant::default_tenant(),
            channels: channels.to_vec(),
            hop: 0,
            only: None,
            silent: false,
            reason: "escalation".into(),
            step: Some(step),
        }
    }

    /// What its send records are keyed by, with the channel: the notification id, or
    /// `<notification>#<step>` for an escalation step, so a step's EMAIL is recorded apart from
    /// the notification's own.
    pub(crate) fn send_key(&self) -> String {
        match self.step {
            Some(step) => format!("{}#{step}", self.notification.id),
            None => self.notification.id.clone(),
        }
    }

    /// Its id on the retry schedule: `<send key>|<channel>|<hop>`.
    pub(crate) fn entry_id(&self) -> String {
        let channel = self.channels.first().map_or("", |c| c.as_str());
        format!("{}|{channel}|{}", self.send_key(), self.hop)
    }
}

/// What one channel of a job came to.
#[derive(Debug, Default)]
pub(crate) struct ChannelResult {
    /// The outcome to emit; `None` for a silent job.
    pub(crate) outcome: Option<(OutcomeStatus, Option<&'static str>)>,
    /// Status for the send record (`silent` when no outcome is emitted).
    pub(crate) status: String,
    /// The next trip through the retry schedule, and when.
    pub(crate) retry: Option<(Job, DateTime<Utc>)>,
    /// Targets to remove (their provider said they are gone, or they expired).
    pub(crate) gone: Vec<PushTarget>,
    /// EMAIL / SMS: the provider that answered the send, named in the outcome.
    pub(crate) provider: Option<&'static str>,
}

/// One target of the PUSH channel: a Web Push subscription or a device, as stored (what a
/// compare-and-delete of a gone one compares).
#[derive(Debug, Clone)]
pub(crate) enum PushTarget {
    Subscription(StoredSubscription),
    Device(StoredDevice),
}

impl PushTarget {
    /// Its id, as a PUSH retry names it ([`Job::only`]).
    pub(crate) fn id(&self) -> &str {
        match self {
            PushTarget::Subscription(s) => &s.subscription.id,
            PushTarget::Device(d) => &d.device.id,
        }
    }
}

impl ChannelResult {
    /// The channel came to `status` (no outcome, and the record status `silent`, for a silent
    /// job).
    pub(crate) fn settled(job: &Job, status: OutcomeStatus, why: Option<&'static str>) -> Self {
        ChannelResult {
            outcome: (!job.silent).then_some((status, why)),
            status: if job.silent {
                "silent".into()
            } else {
                status.as_str().into()
            },
            ..ChannelResult::default()
        }
    }
}
