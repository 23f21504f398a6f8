//! # Off-app delivery: Web Push, phones (FCM), email, SMS
//!
//! A Kafka-triggered function on `push-notifications` (MSK or self-managed Kafka: the event has
//! the same shape), where `delivery` routes every new notification that asks for PUSH, EMAIL or
//! SMS, and every change that moves a user's unread count (the phones' silent badge update,
//! [`badge`]), keyed by user. The same function also runs on a schedule (every minute) to drain the
//! retry schedule ([`drain_due`]). For each notification and each of its off-app channels it:
//!
//! 1. applies the gates, here and only here, so every suppression is recorded
//!    ([`gates`]): the channel configured (`suppressed`/`not-configured`), the notification not
//!    expired, the user's preference for type × channel (`suppressed`/`opted-out`), quiet hours in
//!    the user's timezone (`deferred`/`quiet-hours`, sent when the window ends), an address to
//!    send to (`no-subscription`, `no-contact`). `urgent` notifications bypass preferences and
//!    quiet hours;
//! 2. sends ([`senders`]): to every Web Push subscription and device of the user concurrently
//!    (each through its platform's adapter, [`devices`]; a phone's push carries the user's unread
//!    count as its badge), or the one email address or phone number, through the channel's
//!    adapter and the one send policy. A subscription or device that is gone is removed, that one
//!    only;
//! 3. records one [`DeliveryOutcome`](shared::protocol::DeliveryOutcome) per channel and attempt outcome on `notification-delivery`:
//!    `sent` (for PUSH: at least one of the user's targets accepted it), `failed`,
//!    `suppressed` or `deferred` with its reason; a deferral is followed by the outcome of the
//!    deferred send.
//!
//! **Waiting.** Backoff between inline retries is short (hundreds of ms), and a `Retry-After` of
//! at most `PUSH_INLINE_WAIT_MAX_MS` is slept inline. Anything longer (a long `Retry-After`,
//! quiet hours) is put on the retry schedule in Redis ([`shared::store::PushLedger`]) and
//! handled by a later scheduled run. A batch never sleeps long.
//!
//! **Redelivery.** What was done for each (notification, channel) is recorded in the user's slot
//! after the send ([`shared::store::SendRecord`], with the hop: 0 from Kafka, n after n trips
//! through the schedule). A redelivered record, or a retry drained twice, finds its record and
//! sends nothing again; an outcome whose Kafka acknowledgement was lost is re-emitted from the
//! record. The at-least-once window is between a provider accepting a message and the record
//! being written (a crash or a Redis failure there): the redelivered record sends it again.
//!
//! **Erased users.** A notification at or below its user's erase marker (from before the erase,
//! `docs/privacy.md`) is dropped: nothing sent, recorded or scheduled; the record and schedule
//! scripts check the marker again with their writes.
//!
//! **Failures.** One failing provider or endpoint never fails the batch: it becomes that channel's
//! `failed` outcome. Poison records are logged and skipped. Only infrastructure errors — Redis
//! unreachable, Kafka not acknowledging the outcomes — report the record's partition from that
//! offset ([`BatchResponse`](shared::trigger::BatchResponse)); records after it that completed are skipped on the retry by their
//! send records.
//!
//! ## Map
//!
//! - [`deps`]: what a cold start builds ([`Deps`], the [`Senders`]);
//! - [`batch`]: the Kafka batch ([`process_batch`]);
//! - [`drain`]: the scheduled drain of the retry schedule ([`drain_due`]);
//! - [`digest`]: a digest item's single send when its window closes;
//! - [`escalate`]: escalation steps, timers on the retry schedule decided when they come due;
//! - [`job`]: one send job, a notification's off-app channels for its user ([`Job`]), and what
//!   each channel came to;
//! - [`run`]: running a job: the user's view, the channels, the send records, the outcomes;
//! - [`channel`]: one channel of a job: the gates, then the send;
//! - [`retry`]: the deferral policy (throttling, quiet hours, the PUSH aggregate);
//! - [`devices`]: what goes to a phone and the per-platform dispatch;
//! - [`badge`]: the silent badge updates, coalesced per user;
//! - [`gates`], [`payload`]: the gates, and what is sent;
//! - [`senders`]: the adapter contract every provider implements, the one send policy that acts
//!   on its classified outcomes, and the adapters (Web Push, SMTP, SES, SMS, FCM);
//! - [`stats`]: what a batch or a drain did ([`Stats`]).

pub(crate) mod badge;
pub mod batch;
pub(crate) mod channel;
pub mod deps;
pub(crate) mod devices;
pub(crate) mod digest;
pub mod drain;
pub(crate) mod escalate;
pub mod gates;
pub mod job;
pub mod payload;
pub(crate) mod retry;
pub(crate) mod run;
pub mod senders;
pub mod stats;

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use shared::trigger;

pub use batch::process_batch;
pub use channel::unsubscribe_url;
pub use deps::{Deps, Senders};
pub use drain::drain_due;
pub use job::Job;
pub use stats::Stats;

/// The Lambda handler: a Kafka batch from `push-notifications`, or the scheduled drain of the
/// retry schedule (an EventBridge event). Never fails as a whole.
///
/// Both arrive as one [`KafkaEvent`], read from the invocation's bytes in one pass: a batch names
/// its `eventSource`; the schedule's event has none (its own fields are not read), so it drains.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<KafkaEvent>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let kafka = event.payload;
    if kafka.event_source.is_some() {
        let (response, stats) = process_batch(deps, &kafka, Utc::now()).await;
        // Always the partial batch response: push's Deps read no `TriggerSettings`.
        trigger::report(&stats::BatchRun(&stats));
        Ok(serde_json::to_value(response)?)
    } else {
        let stats = drain_due(deps, Utc::now()).await;
        trigger::report(&stats::DrainRun(&stats));
        Ok(serde_json::to_value(stats)?)
    }
}
