//! # Off-app delivery: Web Push, email, SMS
//!
//! A Kafka-triggered function on `push-notifications` (MSK or self-managed Kafka: the event has
//! the same shape), where `delivery` routes every new notification that asks for PUSH, EMAIL or
//! SMS, keyed by user. The same function also runs on a schedule (every minute) to drain the
//! retry schedule ([`drain_due`]). For each notification and each of its off-app channels it:
//!
//! 1. applies the gates, here and only here, so every suppression is recorded
//!    ([`gates`]): the channel configured (`suppressed`/`not-configured`), the notification not
//!    expired, the user's preference for type × channel (`suppressed`/`opted-out`), quiet hours in
//!    the user's timezone (`deferred`/`quiet-hours`, sent when the window ends), an address to
//!    send to (`no-subscription`, `no-contact`). `urgent` notifications bypass preferences and
//!    quiet hours;
//! 2. sends ([`channels`]): to every Web Push subscription of the user concurrently, or the one
//!    email address or phone number. A subscription that is gone (404/410) is removed, that one
//!    only;
//! 3. records one [`DeliveryOutcome`] per channel and attempt outcome on `notification-delivery`:
//!    `sent` (for PUSH: at least one of the user's endpoints accepted it), `failed`,
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
//! **Failures.** One failing provider or endpoint never fails the batch: it becomes that channel's
//! `failed` outcome. Poison records are logged and skipped. Only infrastructure errors — Redis
//! unreachable, Kafka not acknowledging the outcomes — report the record's partition from that
//! offset ([`BatchResponse`]); records after it that completed are skipped on the retry by their
//! send records.

pub mod channels;
pub mod gates;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use shared::addresses::UnsubscribeToken;
use shared::bus::{EventBus, OutgoingRecord};
use shared::config::{ConfigError, Env, KafkaSettings, RedisSettings, SenderSettings};
use shared::error::StartupError;
use shared::model::{Channel, Notification, OutcomeStatus};
use shared::protocol::outcome::reason;
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::store::{
    ChannelView, ContactBook, DueEntry, KeySpace, PushLedger, RedisConn, SendRecord, StoreError,
    StoredSubscription,
};
use shared::trigger::{self, BatchResponse};

use channels::email::Email;
use channels::sms::Sms;
use channels::webpush::{Vapid, WebPush};
use channels::{Delivery, SendPolicy};
use gates::Gate;

/// How long a drain's claim on a retry entry lasts (longer than the function's timeout).
const DRAIN_LEASE: Duration = Duration::from_secs(300);
/// Entries claimed per round of a drain, and the time a drain may start new rounds for.
const DRAIN_ROUND: usize = 200;
const DRAIN_BUDGET: Duration = Duration::from_secs(20);
/// Jobs (a notification's channels for one user) handled at once per batch.
const JOB_CONCURRENCY: usize = 64;

/// The configured senders; `None` where the channel's settings are absent.
#[derive(Debug, Default)]
pub struct Senders {
    pub webpush: Option<WebPush>,
    pub email: Option<Email>,
    pub sms: Option<Sms>,
}

/// Built once per cold start. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Deps {
    pub bus: EventBus,
    pub contacts: ContactBook,
    pub ledger: PushLedger,
    pub senders: Arc<Senders>,
    pub settings: Arc<SenderSettings>,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let channels = SenderSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let bus = EventBus::connect(&kafka).await?;
        let deps = Self::new(conn, KeySpace::new(redis.key_prefix), bus, channels)?;
        tracing::info!(
            webpush = deps.senders.webpush.is_some(),
            email = deps.senders.email.is_some(),
            sms = deps.senders.sms.is_some(),
            "channels configured"
        );
        Ok(deps)
    }

    /// Builds the senders the settings configure.
    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        bus: EventBus,
        settings: SenderSettings,
    ) -> Result<Self, ConfigError> {
        let policy = SendPolicy::new(settings.send.clone());
        let client = reqwest::Client::builder()
            .connect_timeout(settings.send.timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| ConfigError::Invalid {
                var: "PUSH_TIMEOUT_MS",
                value: format!("{:?}", settings.send.timeout),
                reason: e.to_string(),
            })?;
        let webpush = match &settings.vapid {
            Some(v) => Some(WebPush::new(
                Vapid::from_settings(v)?,
                client.clone(),
                policy.clone(),
                settings.allow_loopback,
            )),
            None => None,
        };
        let email = match &settings.email {
            Some(e) => Some(Email::new(e, policy.clone())?),
            None => None,
        };
        let sms = settings
            .sms
            .clone()
            .map(|s| Sms::new(s, client.clone(), policy.clone()));
        Ok(Deps {
            bus,
            contacts: ContactBook::new(conn.clone(), keys.clone()),
            ledger: PushLedger::new(conn, keys),
            senders: Arc::new(Senders {
                webpush,
                email,
                sms,
            }),
            settings: Arc::new(settings),
        })
    }
}

/// What a batch or a drain did, for the log line (and the tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub records: usize,
    pub poison: usize,
    /// Records that were not a new notification (nothing to send).
    pub ignored: usize,
    /// (notification, channel) pairs skipped because they were already handled.
    pub redelivered: usize,
    pub sent: usize,
    pub failed: usize,
    pub suppressed: usize,
    pub deferred: usize,
    /// Subscriptions removed because the push service said they are gone.
    pub gone: usize,
    /// Records (or retry entries) left for a later try because of an infrastructure error.
    pub retried: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.records += o.records;
        self.poison += o.poison;
        self.ignored += o.ignored;
        self.redelivered += o.redelivered;
        self.sent += o.sent;
        self.failed += o.failed;
        self.suppressed += o.suppressed;
        self.deferred += o.deferred;
        self.gone += o.gone;
        self.retried += o.retried;
    }

    fn count(&mut self, status: OutcomeStatus) {
        match status {
            OutcomeStatus::Sent => self.sent += 1,
            OutcomeStatus::Failed => self.failed += 1,
            OutcomeStatus::Suppressed => self.suppressed += 1,
            OutcomeStatus::Deferred => self.deferred += 1,
            _ => {}
        }
    }
}

/// The Lambda handler: a Kafka batch from `push-notifications`, or the scheduled drain of the
/// retry schedule (an EventBridge event). Never fails as a whole.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let payload = event.payload;
    if payload.get("records").is_some() && payload.get("eventSource").is_some() {
        let kafka: KafkaEvent = serde_json::from_value(payload)?;
        let (response, stats) = process_batch(deps, &kafka, Utc::now()).await;
        tracing::info!(?stats, "push batch");
        Ok(serde_json::to_value(response)?)
    } else {
        let stats = drain_due(deps, Utc::now()).await;
        tracing::info!(?stats, "push retry drain");
        Ok(serde_json::to_value(stats)?)
    }
}

/// One trip of a notification's off-app channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub notification: Notification,
    pub channels: Vec<Channel>,
    /// 0 from Kafka; n on the n-th trip through the retry schedule.
    pub hop: u32,
    /// A PUSH retry: only these subscription ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// Emit no outcome (the channel's outcome was already recorded: a retry of the endpoints
    /// that were throttled while others accepted).
    #[serde(default)]
    pub silent: bool,
    /// Why it was scheduled (logs).
    #[serde(default)]
    pub reason: String,
}

impl Job {
    fn from_notification(n: &Notification) -> Option<Job> {
        let channels: Vec<Channel> = Channel::ALL
            .into_iter()
            .filter(|c| *c != Channel::InApp && n.channels.contains(c))
            .collect();
        (!channels.is_empty()).then(|| Job {
            notification: n.clone(),
            channels,
            hop: 0,
            only: None,
            silent: false,
            reason: String::new(),
        })
    }

    fn entry_id(&self) -> String {
        let channel = self.channels.first().map_or("", |c| c.as_str());
        format!("{}|{channel}|{}", self.notification.id, self.hop)
    }
}

/// A job's results: the outcome records to produce, the send records to acknowledge once they
/// are, and counts.
#[derive(Debug, Default)]
struct JobDone {
    /// The notification's user: every key the job touched is in their slot.
    user: String,
    outputs: Vec<OutgoingRecord>,
    acks: Vec<(String, u32)>,
    stats: Stats,
}

/// What one channel of a job came to.
#[derive(Debug, Default)]
struct ChannelResult {
    outcome: Option<(OutcomeStatus, Option<&'static str>)>,
    /// Status for the send record (`silent` when no outcome is emitted).
    status: String,
    retry: Option<(Job, DateTime<Utc>)>,
    gone: Vec<StoredSubscription>,
}

fn outcome_record(outcome: &DeliveryOutcome) -> OutgoingRecord {
    OutgoingRecord {
        topic: Topic::NotificationDelivery,
        key: outcome.notification_id.clone(),
        payload: outcome.encode(),
        headers: Vec::new(),
    }
}

/// Runs one job for its user: view, gates, sends, retry schedule, send records.
async fn run_job(deps: &Deps, job: &Job, now: DateTime<Utc>) -> Result<JobDone, StoreError> {
    let n = &job.notification;
    let user = &n.user_id;
    let fields: Vec<String> = job
        .channels
        .iter()
        .map(|c| PushLedger::field(&n.id, *c))
        .collect();
    let view = deps.ledger.view(user, &fields).await?;
    let mut done = JobDone {
        user: user.clone(),
        ..JobDone::default()
    };

    let mut todo = Vec::new();
    for (channel, field) in job.channels.iter().zip(&fields) {
        match view.records.get(field) {
            Some(record) if record.hop >= job.hop => {
                done.stats.redelivered += 1;
                if let Some(pending) = &record.pending_outcome {
                    // Produced before, never acknowledged: the same event again.
                    done.outputs.push(OutgoingRecord {
                        topic: Topic::NotificationDelivery,
                        key: n.id.clone(),
                        payload: pending.clone().into_bytes(),
                        headers: Vec::new(),
                    });
                    done.acks.push((field.clone(), record.hop));
                }
            }
            _ => todo.push(*channel),
        }
    }
    let results = join_all(
        todo.iter()
            .map(|c| async { (*c, run_channel(deps, job, *c, &view, now).await) }),
    )
    .await;

    let mut gone = 0;
    for (_, r) in &results {
        for stored in &r.gone {
            match deps.contacts.remove_gone(user, stored).await {
                Ok(true) => gone += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(user, error = %e, "could not remove a gone subscription"),
            }
        }
    }
    done.stats.gone += gone;
    // Retries before records: a crash in between redoes the job, and scheduling is idempotent.
    for (_, r) in &results {
        if let Some((retry, at)) = &r.retry {
            let entry = serde_json::to_string(retry).unwrap_or_default();
            deps.ledger
                .schedule(user, &retry.entry_id(), &entry, at.timestamp_millis())
                .await?;
        }
    }
    let mut records = Vec::new();
    for (channel, r) in &results {
        let field = PushLedger::field(&n.id, *channel);
        let pending = r.outcome.map(|(status, why)| {
            done.stats.count(status);
            let outcome = DeliveryOutcome::new(n, *channel, status, why);
            done.outputs.push(outcome_record(&outcome));
            done.acks.push((field.clone(), job.hop));
            String::from_utf8(outcome.encode()).unwrap_or_default()
        });
        records.push((
            field,
            SendRecord {
                hop: job.hop,
                status: r.status.clone(),
                pending_outcome: pending,
            },
        ));
    }
    deps.ledger
        .record(user, &records, Utc::now().timestamp_millis())
        .await?;
    Ok(done)
}

/// Gates, then the send, for one channel of a job.
async fn run_channel(
    deps: &Deps,
    job: &Job,
    channel: Channel,
    view: &ChannelView,
    now: DateTime<Utc>,
) -> ChannelResult {
    let n = &job.notification;
    let configured = match channel {
        Channel::Push => deps.senders.webpush.is_some(),
        Channel::Email => deps.senders.email.is_some(),
        Channel::Sms => deps.senders.sms.is_some(),
        Channel::InApp => false,
    };
    let result = |status: OutcomeStatus, why: Option<&'static str>| ChannelResult {
        outcome: (!job.silent).then_some((status, why)),
        status: if job.silent {
            "silent".into()
        } else {
            status_name(status).into()
        },
        ..ChannelResult::default()
    };
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
    let send = &deps.settings.send;
    let delivery = match channel {
        Channel::Push => {
            let Some(webpush) = &senders.webpush else {
                return result(OutcomeStatus::Suppressed, Some(reason::NOT_CONFIGURED));
            };
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
                let mut r = result(OutcomeStatus::Suppressed, Some(reason::NO_SUBSCRIPTION));
                r.gone = expired.into_iter().cloned().collect();
                return r;
            }
            let payload = payload::PushPayload::of(n);
            let ttl = push_ttl(n, now, send.ttl);
            let deliveries = join_all(live.iter().map(|s| async {
                (
                    *s,
                    webpush
                        .send(&s.subscription, &payload, n.priority, ttl)
                        .await,
                )
            }))
            .await;
            let mut r = push_result(job, deliveries, send.max_deferrals);
            r.gone.extend(expired.into_iter().cloned());
            return r;
        }
        Channel::Email => {
            let (Some(email), Some(to)) = (&senders.email, &view.contacts.email) else {
                return result(OutcomeStatus::Suppressed, Some(reason::NO_CONTACT));
            };
            let url = unsubscribe_url(&deps.settings, n);
            email.send(to, &payload::email(n, &url)).await
        }
        Channel::Sms => {
            let (Some(sms), Some(to)) = (&senders.sms, &view.contacts.phone) else {
                return result(OutcomeStatus::Suppressed, Some(reason::NO_CONTACT));
            };
            sms.send(to, &payload::sms_text(n)).await
        }
        Channel::InApp => return ChannelResult::default(),
    };
    match delivery {
        Delivery::Sent => result(OutcomeStatus::Sent, None),
        Delivery::Failed { reason, detail } => {
            tracing::warn!(
                user = n.user_id,
                id = n.id,
                channel = channel.as_str(),
                reason,
                detail,
                "send failed"
            );
            result(OutcomeStatus::Failed, Some(reason))
        }
        Delivery::Gone => result(OutcomeStatus::Failed, Some(reason::GONE)),
        Delivery::Later { at } => later(job, channel, None, at, job.silent, send.max_deferrals),
    }
}

/// A throttled send: deferred to `at`, or failed after too many deferrals.
/// Deferrals are bounded (`PUSH_MAX_DEFERRALS`), so a provider that always throttles ends in
/// `failed`.
fn later(
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
        gone: Vec::new(),
    }
}

fn next_hop(
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
    }
}

/// Aggregates the user's endpoints into the PUSH outcome: `sent` if any accepted; else
/// `deferred` if any was throttled; else `failed` (`gone` if every one was gone). Throttled
/// endpoints are retried; after a `sent`, silently.
fn push_result(
    job: &Job,
    deliveries: Vec<(&StoredSubscription, Delivery)>,
    max_deferrals: u32,
) -> ChannelResult {
    let mut sent = 0;
    let mut gone = Vec::new();
    let mut later: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut first_failure: Option<&'static str> = None;
    for (stored, delivery) in deliveries {
        match delivery {
            Delivery::Sent => sent += 1,
            Delivery::Gone => gone.push(stored.clone()),
            Delivery::Later { at } => later.push((stored.subscription.id.clone(), at)),
            Delivery::Failed { reason, detail } => {
                tracing::warn!(
                    user = job.notification.user_id,
                    endpoint = stored.subscription.id,
                    reason,
                    detail,
                    "push failed"
                );
                first_failure.get_or_insert(reason);
            }
        }
    }
    let status = |s: OutcomeStatus, w: Option<&'static str>| ChannelResult {
        outcome: (!job.silent).then_some((s, w)),
        status: if job.silent {
            "silent".into()
        } else {
            status_name(s).into()
        },
        ..ChannelResult::default()
    };
    let mut r = if !later.is_empty() {
        let at = later
            .iter()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or_else(Utc::now);
        let ids = later.into_iter().map(|(id, _)| id).collect();
        let silent = job.silent || sent > 0;
        let mut r = self::later(job, Channel::Push, Some(ids), at, silent, max_deferrals);
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

fn status_name(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Sent => "sent",
        OutcomeStatus::Failed => "failed",
        OutcomeStatus::Suppressed => "suppressed",
        OutcomeStatus::Deferred => "deferred",
        OutcomeStatus::Seen => "seen",
        OutcomeStatus::Read => "read",
        OutcomeStatus::Clicked => "clicked",
    }
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

/// Handles every record of `event` (as if at `now`) and says which partitions to retry from
/// where.
pub async fn process_batch(
    deps: &Deps,
    event: &KafkaEvent,
    now: DateTime<Utc>,
) -> (BatchResponse, Stats) {
    let mut stats = Stats::default();
    let mut jobs: Vec<(String, i64, Job)> = Vec::new();
    for batch in trigger::partitions(event) {
        for record in &batch.records {
            stats.records += 1;
            match trigger::envelope(record) {
                Ok(Envelope {
                    event: Event::NotificationCreated { notification, .. },
                    ..
                }) => match Job::from_notification(&notification) {
                    Some(job) => jobs.push((batch.key.to_owned(), record.offset, job)),
                    None => stats.ignored += 1,
                },
                Ok(_) => stats.ignored += 1,
                Err(why) => {
                    stats.poison += 1;
                    tracing::error!(partition = batch.key, offset = record.offset, error = %why, metric = "PoisonRecords", "skipping a poison record");
                }
            }
        }
    }
    let results: Vec<(String, i64, Result<JobDone, StoreError>)> = stream::iter(jobs)
        .map(|(partition, offset, job)| async move {
            let done = run_job(deps, &job, now).await;
            (partition, offset, done)
        })
        .buffer_unordered(JOB_CONCURRENCY)
        .collect()
        .await;
    let mut retry_from: BTreeMap<String, i64> = BTreeMap::new();
    let mut fail = |partition: &str, offset: i64| {
        let e = retry_from.entry(partition.to_owned()).or_insert(offset);
        *e = (*e).min(offset);
    };
    let mut finished: Vec<(String, i64, JobDone)> = Vec::new();
    for (partition, offset, result) in results {
        match result {
            Ok(done) => finished.push((partition, offset, done)),
            Err(e) => {
                tracing::warn!(partition, offset, error = %e, "infrastructure failure; retrying from this record");
                stats.retried += 1;
                fail(&partition, offset);
            }
        }
    }
    let acked = produce(
        deps,
        &finished.iter().map(|(_, _, d)| d).collect::<Vec<_>>(),
    )
    .await;
    let mut acks: BTreeMap<&str, Vec<(String, u32)>> = BTreeMap::new();
    for ((partition, offset, done), ok) in finished.iter().zip(acked) {
        stats.add(&done.stats);
        if ok {
            acks.entry(done.user.as_str())
                .or_default()
                .extend(done.acks.iter().cloned());
        } else {
            tracing::warn!(
                partition,
                offset,
                "kafka did not acknowledge the outcomes; retrying the record"
            );
            stats.retried += 1;
            fail(partition, *offset);
        }
    }
    acknowledge(deps, acks).await;
    let mut response = BatchResponse::default();
    for (partition, offset) in retry_from {
        response.fail_from(&partition, offset);
    }
    (response, stats)
}

/// Produces every job's outputs; per job, whether all of its outputs were acknowledged.
async fn produce(deps: &Deps, done: &[&JobDone]) -> Vec<bool> {
    let outputs: Vec<OutgoingRecord> = done
        .iter()
        .flat_map(|d| d.outputs.iter().cloned())
        .collect();
    let mut acks = deps.bus.send(&outputs).await.into_iter();
    done.iter()
        .map(|d| {
            d.outputs
                .iter()
                .map(|_| acks.next().is_some_and(|r| r.is_ok()))
                .filter(|ok| !ok)
                .count()
                == 0
        })
        .collect()
}

async fn acknowledge(deps: &Deps, acks: BTreeMap<&str, Vec<(String, u32)>>) {
    for (user, fields) in acks {
        if let Err(e) = deps.ledger.acknowledge(user, &fields).await {
            // The pending copies stay; only a redelivery would re-emit them.
            tracing::warn!(user, error = %e, "could not acknowledge send records");
        }
    }
}

/// Handles the retry-schedule entries due at `now`: claims them (a lease, so a concurrent drain
/// skips them), runs each, produces the outcomes, and removes the entries that completed. An
/// entry whose run hit an infrastructure error keeps its claim and comes due again when the
/// lease ends.
pub async fn drain_due(deps: &Deps, now: DateTime<Utc>) -> Stats {
    let mut stats = Stats::default();
    let started = std::time::Instant::now();
    loop {
        let claimed = match deps
            .ledger
            .claim_due(now.timestamp_millis(), DRAIN_LEASE, DRAIN_ROUND)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the retry schedule");
                break;
            }
        };
        let count = claimed.len();
        let results: Vec<(DueEntry, Option<Result<JobDone, StoreError>>)> = stream::iter(claimed)
            .map(|due| async move {
                let job = match deps.ledger.entry(&due).await {
                    Ok(Some(text)) => match serde_json::from_str::<Job>(&text) {
                        Ok(job) => job,
                        Err(e) => {
                            tracing::error!(entry = due.entry_id, error = %e, "dropping an unreadable retry entry");
                            return (due, None);
                        }
                    },
                    Ok(None) => return (due, None),
                    Err(e) => return (due, Some(Err(e))),
                };
                let done = run_job(deps, &job, now).await;
                (due, Some(done))
            })
            .buffer_unordered(JOB_CONCURRENCY)
            .collect()
            .await;
        let mut finished = Vec::new();
        for (due, result) in results {
            stats.records += 1;
            match result {
                None => {
                    if let Err(e) = deps.ledger.finish(&due).await {
                        tracing::warn!(error = %e, "could not remove a retry entry");
                    }
                }
                Some(Ok(done)) => finished.push((due, done)),
                Some(Err(e)) => {
                    tracing::warn!(entry = due.entry_id, error = %e, "retry entry failed; it comes due again after its lease");
                    stats.retried += 1;
                }
            }
        }
        let acked = produce(deps, &finished.iter().map(|(_, d)| d).collect::<Vec<_>>()).await;
        let mut acks: BTreeMap<&str, Vec<(String, u32)>> = BTreeMap::new();
        for ((due, done), ok) in finished.iter().zip(acked) {
            stats.add(&done.stats);
            if ok {
                acks.entry(&due.user_id)
                    .or_default()
                    .extend(done.acks.iter().cloned());
                if let Err(e) = deps.ledger.finish(due).await {
                    tracing::warn!(error = %e, "could not remove a retry entry");
                }
            } else {
                stats.retried += 1;
            }
        }
        acknowledge(deps, acks).await;
        if count < DRAIN_ROUND || started.elapsed() > DRAIN_BUDGET {
            break;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<SenderSettings, ConfigError> {
        SenderSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn half_a_channel_stops_the_cold_start_naming_the_missing_variable() {
        let none = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.vapid.is_none() && none.email.is_none() && none.sms.is_none());
        assert_eq!(
            settings(&[("VAPID_PRIVATE_KEY", "x")]).err(),
            Some(ConfigError::Missing("VAPID_SUBJECT"))
        );
        assert!(matches!(
            settings(&[
                ("VAPID_PRIVATE_KEY", "x"),
                ("VAPID_SUBJECT", "ops@example.com")
            ]),
            Err(ConfigError::Invalid {
                var: "VAPID_SUBJECT",
                ..
            })
        ));
        assert_eq!(
            settings(&[
                ("SMS_API_URL", "https://api.twilio.com"),
                ("SMS_FROM", "+1555")
            ])
            .err(),
            Some(ConfigError::Missing("SMS_ACCOUNT_SID"))
        );
        // Email needs a working one-click unsubscribe.
        let email = [
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
            ("EMAIL_FROM", "a@b.co"),
        ];
        assert_eq!(
            settings(&email).err(),
            Some(ConfigError::Missing("UNSUBSCRIBE_SECRET"))
        );
        let mut full = email.to_vec();
        full.push(("UNSUBSCRIBE_SECRET", "0123456789abcdef"));
        full.push(("PUBLIC_API_URL", "https://api.example.com/"));
        let s = settings(&full).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.public_api_url.as_deref(), Some("https://api.example.com"));
        // The password never shows.
        let s = settings(&[
            ("SMTP_URL", "smtps://me:hunter2@smtp.example.com:465"),
            ("EMAIL_FROM", "a@b.co"),
            ("UNSUBSCRIBE_SECRET", "0123456789abcdef"),
            ("PUBLIC_API_URL", "https://api.example.com"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{s:?}").contains("hunter2"));
        // A bad VAPID key is refused at cold start, naming the variable.
        let bad = settings(&[
            ("VAPID_PRIVATE_KEY", "AAAA"),
            ("VAPID_SUBJECT", "mailto:a@b.co"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            bad.vapid.as_ref().map(Vapid::from_settings),
            Some(Err(ConfigError::Invalid {
                var: "VAPID_PRIVATE_KEY",
                ..
            }))
        ));
    }

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
