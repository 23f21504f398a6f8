//! # Real-time delivery
//!
//! A Kafka-triggered function on `notification-events` (MSK or self-managed Kafka: the event has
//! the same shape). For each record, in partition order and each user's `seq` order, it:
//!
//! 1. turns the envelope into its frame ([`Frame::from_envelope`]);
//! 2. posts it to every open connection of the user ([`Fanout`]: concurrently, within the
//!    process's limit and token bucket; gone connections are pruned, expired tokens closed,
//!    oversized frames sent compact);
//! 3. for a new notification, emits its IN_APP outcome to `notification-delivery`
//!    (`sent`, or `suppressed`/`no-connection`, or `failed`/`gone` or `error`) and, when it asks
//!    for PUSH, EMAIL or SMS, routes the envelope to `push-notifications` (preferences and quiet
//!    hours are applied there, in `push`, so every suppression is recorded);
//! 4. once those records are acknowledged, marks the `seq` delivered for the user.
//!
//! Redelivery: a record whose `seq` is marked delivered is skipped, so a redelivered batch posts
//! no frame and emits no outcome twice. (A crash between the acknowledgement and the mark can
//! repeat one record's outputs; clients drop the repeated frame by its `seq`.)
//!
//! Failures: a poison record (no value, bad base64, bad JSON, unknown `v`) is logged, counted and
//! skipped, never blocking its partition. A transient failure (Redis, or Kafka not acknowledging
//! the outputs) stops that user's later records and reports the partition from the first failed
//! offset ([`BatchResponse`]); records after it that did complete are skipped on the retry.

use std::collections::BTreeMap;

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use futures::future::join_all;
use lambda_runtime::LambdaEvent;
use shared::bus::{EventBus, OutgoingRecord};
use shared::config::{Env, KafkaSettings, RedisSettings, TriggerSettings};
use shared::error::StartupError;
use shared::metrics::MetricSet;
use shared::model::{Channel, OutcomeStatus};
use shared::protocol::outcome::reason;
use shared::protocol::{DeliveryOutcome, Envelope, Event, Frame, Topic, IDEMPOTENCY_KEY_HEADER};
use shared::realtime::{Fanout, FanoutReport};
use shared::store::{KeySpace, RedisConn, StoreError};
use shared::trigger::{self, BatchResponse, Counters, PartitionBatch, Report};

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub fanout: Fanout,
    pub bus: EventBus,
    /// Whether the mapping reads partial batch responses (else a failure fails the invocation).
    pub trigger: TriggerSettings,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let fanout = Fanout::from_env(env, conn, KeySpace::new(redis.key_prefix))?;
        Ok(Deps {
            fanout,
            bus: EventBus::connect(&kafka).await?,
            trigger: TriggerSettings::from_env(env)?,
        })
    }
}

/// What one batch did, for the log line (and the tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub records: usize,
    pub poison: usize,
    /// Records skipped because their `seq` was already delivered.
    pub redelivered: usize,
    pub delivered: usize,
    pub frames_sent: usize,
    pub gone: usize,
    pub failed_posts: usize,
    /// Records left for Lambda to retry.
    pub retried: usize,
}

shared::counters!(BatchStats {
    records,
    poison,
    redelivered,
    delivered,
    frames_sent,
    gone,
    failed_posts,
    retried
});

impl Report for BatchStats {
    fn log(&self) {
        tracing::info!(
            records = self.records,
            delivered = self.delivered,
            frames_sent = self.frames_sent,
            gone = self.gone,
            failed_posts = self.failed_posts,
            redelivered = self.redelivered,
            poison = self.poison,
            retried = self.retried,
            "delivery batch"
        );
    }

    /// The batch's figures, and the IN_APP `Sends` by outcome (`shared::metrics`).
    fn metrics(&self) -> Vec<MetricSet> {
        let mut sets = vec![MetricSet::new()
            .count("Records", self.records)
            .count("PoisonRecords", self.poison)
            .count("Redelivered", self.redelivered)
            .count("RecordsRetried", self.retried)
            .count("FramesSent", self.frames_sent)
            .count("ConnectionsGone", self.gone)
            .count("PostsFailed", self.failed_posts)];
        for (outcome, n) in [
            ("sent", self.frames_sent),
            ("failed", self.gone + self.failed_posts),
        ] {
            if n > 0 {
                sets.push(
                    MetricSet::new()
                        .dimension("Channel", "IN_APP")
                        .dimension("Outcome", outcome)
                        .count("Sends", n),
                );
            }
        }
        sets
    }
}

/// One Kafka batch. Never fails as a whole: transient failures become item failures.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<KafkaEvent>,
) -> Result<BatchResponse, lambda_runtime::Error> {
    let (response, stats) = deliver_batch(deps, &event.payload).await;
    Ok(trigger::finish(&stats, response, &deps.trigger)?)
}

/// A record handled up to its outputs, which still need Kafka's acknowledgement.
struct Handled {
    offset: i64,
    user_id: String,
    seq: u64,
    outputs: Vec<OutgoingRecord>,
}

/// One partition's result: handled records, and the first offset to retry from.
#[derive(Default)]
struct PartitionResult {
    handled: Vec<Handled>,
    retry_from: Option<i64>,
    stats: BatchStats,
}

/// Delivers every record of `event` and says which partitions to retry from where.
pub async fn deliver_batch(deps: &Deps, event: &KafkaEvent) -> (BatchResponse, BatchStats) {
    let batches = trigger::partitions(event);
    let mut results: Vec<(&str, PartitionResult)> = join_all(
        batches
            .iter()
            .map(|b| async move { (b.key, deliver_partition(deps, b).await) }),
    )
    .await;

    // Produce every output at once, and await every acknowledgement.
    let outputs: Vec<OutgoingRecord> = results
        .iter()
        .flat_map(|(_, r)| r.handled.iter().flat_map(|h| h.outputs.iter().cloned()))
        .collect();
    let mut acks = deps.bus.send(&outputs).await.into_iter();

    let mut stats = BatchStats::default();
    let mut response = BatchResponse::default();
    let mut delivered: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (partition, result) in &mut results {
        for h in &result.handled {
            // Take exactly this record's acknowledgements (no short-circuit).
            let acked = h
                .outputs
                .iter()
                .map(|_| acks.next().is_some_and(|r| r.is_ok()))
                .filter(|ok| !ok)
                .count()
                == 0;
            if acked {
                delivered.entry(&h.user_id).or_default().push(h.seq);
            } else {
                tracing::warn!(
                    partition,
                    offset = h.offset,
                    "kafka did not acknowledge the outputs; retrying the record"
                );
                result.retry_from = Some(result.retry_from.map_or(h.offset, |o| o.min(h.offset)));
            }
        }
        if let Some(offset) = result.retry_from {
            response.fail_from(partition, offset);
        }
        stats.merge(&result.stats);
    }
    for (user_id, seqs) in delivered {
        stats.delivered += seqs.len();
        // Not marking only means a retried record is delivered again (clients drop it by seq).
        if let Err(e) = deps.fanout.registry().mark_delivered(user_id, &seqs).await {
            tracing::warn!(user = user_id, error = %e, "could not mark seqs delivered");
        }
    }
    (response, stats)
}

/// One partition: its users concurrently, each user's records in order.
async fn deliver_partition(deps: &Deps, batch: &PartitionBatch<'_>) -> PartitionResult {
    let mut result = PartitionResult::default();
    result.stats.records = batch.records.len();
    let mut by_user: BTreeMap<String, Vec<(&KafkaRecord, Envelope)>> = BTreeMap::new();
    for record in &batch.records {
        match trigger::envelope(record) {
            Ok(envelope) => by_user
                .entry(envelope.user_id.clone())
                .or_default()
                .push((record, envelope)),
            Err(why) => {
                result.stats.poison += 1;
                batch.log_poison(record, &why);
            }
        }
    }
    let users = join_all(by_user.into_values().map(|records| async move {
        let mut done = Vec::new();
        let mut stats = BatchStats::default();
        for (i, (record, envelope)) in records.iter().enumerate() {
            match deliver_one(deps, record, envelope, &mut stats).await {
                Ok(Some(handled)) => done.push(handled),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(offset = record.offset, user = envelope.user_id, error = %e, "transient failure; retrying from this record");
                    stats.retried += records.len() - i;
                    return (done, stats, Some(record.offset));
                }
            }
        }
        (done, stats, None)
    }))
    .await;
    for (done, stats, failed_at) in users {
        result.handled.extend(done);
        result.stats.merge(&stats);
        if let Some(offset) = failed_at {
            result.retry_from = Some(result.retry_from.map_or(offset, |o| o.min(offset)));
        }
    }
    result
}

/// Posts one change's frame and builds its outputs. `None`: nothing to do (already delivered, or
/// an event without a frame).
async fn deliver_one(
    deps: &Deps,
    record: &KafkaRecord,
    envelope: &Envelope,
    stats: &mut BatchStats,
) -> Result<Option<Handled>, StoreError> {
    let Some(frame) = Frame::from_envelope(envelope) else {
        return Ok(None);
    };
    let user_id = &envelope.user_id;
    let view = deps
        .fanout
        .registry()
        .delivery_view(user_id, envelope.seq)
        .await?;
    if view.already_delivered {
        stats.redelivered += 1;
        return Ok(None);
    }
    let posted_at = chrono::Utc::now();
    let report = deps.fanout.send(user_id, &view.connections, &frame).await;
    stats.frames_sent += report.sent;
    stats.gone += report.gone;
    stats.failed_posts += report.failed;
    if let Some(error) = &report.first_error {
        tracing::warn!(
            user = user_id,
            seq = envelope.seq,
            error,
            "posting to a connection failed"
        );
    }
    Ok(Some(Handled {
        offset: record.offset,
        user_id: user_id.clone(),
        seq: envelope.seq,
        outputs: outputs(record, envelope, &report, posted_at),
    }))
}

/// The records a delivered change produces: a new notification's IN_APP outcome, and its
/// off-app channels' routing to `push-notifications`.
fn outputs(
    record: &KafkaRecord,
    envelope: &Envelope,
    report: &FanoutReport,
    posted_at: chrono::DateTime<chrono::Utc>,
) -> Vec<OutgoingRecord> {
    let Event::NotificationCreated { notification, .. } = &envelope.event else {
        return Vec::new();
    };
    let (status, why) = in_app_outcome(report);
    let outcome = DeliveryOutcome::at(notification, Channel::InApp, status, why, posted_at);
    let mut out = vec![OutgoingRecord {
        topic: Topic::NotificationDelivery,
        key: notification.id.clone(),
        payload: outcome.encode(),
        headers: Vec::new(),
    }];
    if notification.channels.iter().any(|c| *c != Channel::InApp) {
        out.push(OutgoingRecord {
            topic: Topic::PushNotifications,
            key: envelope.user_id.clone(),
            payload: envelope.encode(),
            headers: trigger::header(record, IDEMPOTENCY_KEY_HEADER)
                .map(|k| vec![(IDEMPOTENCY_KEY_HEADER.to_owned(), k)])
                .unwrap_or_default(),
        });
    }
    out
}

/// The IN_APP outcome of one fan-out, in the outcome vocabulary.
pub fn in_app_outcome(report: &FanoutReport) -> (OutcomeStatus, Option<&'static str>) {
    if report.sent > 0 {
        (OutcomeStatus::Sent, None)
    } else if report.failed > 0 {
        (OutcomeStatus::Failed, Some(reason::ERROR))
    } else if report.gone > 0 {
        (OutcomeStatus::Failed, Some(reason::GONE))
    } else {
        (OutcomeStatus::Suppressed, Some(reason::NO_CONNECTION))
    }
}
