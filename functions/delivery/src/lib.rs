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
//!    for PUSH, EMAIL or SMS or carries escalation steps, routes the envelope to
//!    `push-notifications` (preferences and quiet hours are applied there, in `push`, so every
//!    suppression is recorded); a change that moved the unread count (read, unread, archive,
//!    delete, mark-all-read) goes there too, for the silent badge update of the user's phones;
//! 4. once those records are acknowledged, marks the `seq` delivered for the user.
//!
//! A user is the record's (tenant, userId): every claim, connection and mark is in the record's
//! tenant's keys, and the outputs carry its `tenant`.
//!
//! Claim, then act: before step 2, each user's records of the batch are claimed in one atomic
//! step that also reads which seqs are already delivered and the user's connections (one round
//! trip per user per batch, [`ConnectionRegistry::claim_delivery`]). The claim is a lease that
//! runs to this invocation's deadline; step 4 releases it.
//!
//! Erased users: a record whose `seq` is at or below its user's erase marker (from before the
//! erase, `docs/privacy.md`) reads as delivered in the claim, so it posts and produces nothing.
//!
//! Redelivery: a record whose `seq` is marked delivered is skipped, so a redelivered batch posts
//! no frame and emits no outcome twice, whether it comes after the first delivery or *at the same
//! time* (a second invocation finds the claim held, waits for it to be released, then finds the
//! seqs delivered). A claim held past [`CLAIM_WAIT`] (its claimer crashed, or is slow) sends the
//! user's records back for retry; the lease expires by itself, so they are delivered then. (A
//! crash between the acknowledgement and the mark can repeat one record's outputs; clients drop
//! the repeated frame by its `seq`.)
//!
//! Failures: a poison record (no value, bad base64, bad JSON, unknown `v`) is logged, counted and
//! skipped, never blocking its partition. A transient failure (Redis, or Kafka not acknowledging
//! the outputs) stops that user's later records and reports the partition from the first failed
//! offset ([`BatchResponse`]); records after it that did complete are skipped on the retry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
use shared::store::TenantScoped;
use shared::store::{
    Connection, ConnectionRegistry, DeliveryClaim, KeySpace, RedisConn, StoreError,
};
use shared::tenant::Tenant;
use shared::trigger::{self, BatchResponse, Counters, PartitionBatch, Report};

/// How long an invocation waits for another one's claim on a user before sending the user's
/// records back for retry. A concurrent duplicate releases its claim within one fan-out; only a
/// crashed claimer holds it longer (to its deadline).
pub const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// The lease of [`deliver_batch`], which has no invocation deadline: the function's timeout.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// How often a waiting invocation looks at a held claim again.
const CLAIM_POLL: Duration = Duration::from_millis(20);

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
    /// At `info` only when something went wrong or was repeated: the figures of every batch are
    /// in its metrics line already, and a second line per invocation (hundreds per second) cost
    /// this function and the log pipeline measurable CPU. `debug` shows every batch.
    fn log(&self) {
        let notable =
            self.poison + self.retried + self.failed_posts + self.gone + self.redelivered > 0;
        macro_rules! batch_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    records = self.records,
                    delivered = self.delivered,
                    frames_sent = self.frames_sent,
                    gone = self.gone,
                    failed_posts = self.failed_posts,
                    redelivered = self.redelivered,
                    poison = self.poison,
                    retried = self.retried,
                    "delivery batch"
                )
            };
        }
        if notable {
            batch_line!(tracing::Level::INFO);
        } else {
            batch_line!(tracing::Level::DEBUG);
        }
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
    let (response, stats) =
        deliver_batch_leased(deps, &event.payload, lease_until(event.context.deadline)).await;
    Ok(trigger::finish(&stats, response, &deps.trigger)?)
}

/// The claim lease for an invocation ending at `deadline_ms` (ms since the epoch, as the Runtime
/// API says): until then, when Lambda ends the invocation. [`DEFAULT_LEASE`] if it is unknown.
fn lease_until(deadline_ms: u64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match deadline_ms.checked_sub(now_ms) {
        Some(left) if left > 0 => Duration::from_millis(left),
        _ => DEFAULT_LEASE,
    }
}

/// This invocation's claim on the users it delivers to: a token no other invocation has, and how
/// long a claim lasts.
struct Claimant {
    token: String,
    lease: Duration,
}

/// A record handled up to its outputs, which still need Kafka's acknowledgement.
struct Handled {
    offset: i64,
    user_id: TenantUser,
    seq: u64,
    outputs: Vec<OutgoingRecord>,
}

/// One partition's result: handled records, the users claimed, and the first offset to retry
/// from.
#[derive(Default)]
struct PartitionResult {
    handled: Vec<Handled>,
    claimed: Vec<TenantUser>,
    retry_from: Option<i64>,
    stats: BatchStats,
}

/// A user: the pair (tenant, userId), from the record's envelope. Two tenants' same user id are
/// two users, with their own claims and connections.
type TenantUser = (Tenant, String);

/// Delivers every record of `event` and says which partitions to retry from where, with claims
/// of [`DEFAULT_LEASE`].
pub async fn deliver_batch(deps: &Deps, event: &KafkaEvent) -> (BatchResponse, BatchStats) {
    deliver_batch_leased(deps, event, DEFAULT_LEASE).await
}

/// [`deliver_batch`] with claims that last `lease`.
pub async fn deliver_batch_leased(
    deps: &Deps,
    event: &KafkaEvent,
    lease: Duration,
) -> (BatchResponse, BatchStats) {
    let claimant = Claimant {
        token: format!("{:032x}", rand::random::<u128>()),
        lease,
    };
    let claimant = &claimant;
    let batches = trigger::partitions(event);
    let mut results: Vec<(&str, PartitionResult)> = join_all(
        batches
            .iter()
            .map(|b| async move { (b.key, deliver_partition(deps, claimant, b).await) }),
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
    let mut delivered: BTreeMap<TenantUser, Vec<u64>> = BTreeMap::new();
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
                delivered.entry(h.user_id.clone()).or_default().push(h.seq);
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
    // Record what was delivered and release every claim, all at once.
    let registry = deps.fanout.registry();
    let claimed = results.iter().flat_map(|(_, r)| &r.claimed);
    join_all(claimed.map(|user| {
        let seqs = delivered.get(user).map_or(&[][..], Vec::as_slice);
        stats.delivered += seqs.len();
        let (tenant, user_id) = user;
        async move {
            // Not recording only means a retried record is delivered again (clients drop it by
            // seq), and the claim lasts to its lease.
            if let Err(e) = registry
                .for_tenant(tenant)
                .finish_delivery(user_id, seqs, &claimant.token)
                .await
            {
                tracing::warn!(user = user_id, error = %e, "could not mark seqs delivered");
            }
        }
    }))
    .await;
    (response, stats)
}

/// One partition: its users concurrently, each user's records in order.
async fn deliver_partition(
    deps: &Deps,
    claimant: &Claimant,
    batch: &PartitionBatch<'_>,
) -> PartitionResult {
    let mut result = PartitionResult::default();
    result.stats.records = batch.records.len();
    let mut by_user: BTreeMap<TenantUser, Vec<(&KafkaRecord, Envelope, Frame)>> = BTreeMap::new();
    for record in &batch.records {
        match trigger::envelope(record) {
            // An event without a frame has nothing to deliver.
            Ok(envelope) => {
                if let Some(frame) = Frame::from_envelope(&envelope) {
                    by_user
                        .entry((envelope.tenant.clone(), envelope.user_id.clone()))
                        .or_default()
                        .push((record, envelope, frame));
                }
            }
            Err(why) => {
                result.stats.poison += 1;
                batch.log_poison(record, &why);
            }
        }
    }
    let users = join_all(
        by_user
            .into_iter()
            .map(|(user_id, records)| deliver_user(deps, claimant, user_id, records)),
    )
    .await;
    for user in users {
        result.handled.extend(user.handled);
        result.stats.merge(&user.stats);
        result.claimed.extend(user.claimed);
        if let Some(offset) = user.retry_from {
            result.retry_from = Some(result.retry_from.map_or(offset, |o| o.min(offset)));
        }
    }
    result
}

/// One user's records of a partition.
struct UserResult {
    handled: Vec<Handled>,
    stats: BatchStats,
    /// The user, if this invocation took its claim (to release after the acknowledgements).
    claimed: Option<TenantUser>,
    retry_from: Option<i64>,
}

/// Claims the user's records, then posts each one not yet delivered, in order.
async fn deliver_user(
    deps: &Deps,
    claimant: &Claimant,
    (tenant, user_id): TenantUser,
    records: Vec<(&KafkaRecord, Envelope, Frame)>,
) -> UserResult {
    let fanout = deps.fanout.for_tenant(&tenant);
    let mut result = UserResult {
        handled: Vec::new(),
        stats: BatchStats::default(),
        claimed: None,
        retry_from: None,
    };
    let Some(first_offset) = records.first().map(|(r, _, _)| r.offset) else {
        return result;
    };
    let seqs: Vec<u64> = records.iter().map(|(_, e, _)| e.seq).collect();
    let (delivered, connections) = match claim(fanout.registry(), claimant, &user_id, &seqs).await {
        Ok(Some(claimed)) => claimed,
        Ok(None) => {
            tracing::warn!(
                offset = first_offset,
                user = user_id,
                "another invocation holds the user's claim; retrying from this record"
            );
            result.stats.retried += records.len();
            result.retry_from = Some(first_offset);
            return result;
        }
        Err(e) => {
            tracing::warn!(offset = first_offset, user = user_id, error = %e, "transient failure; retrying from this record");
            result.stats.retried += records.len();
            result.retry_from = Some(first_offset);
            return result;
        }
    };
    for ((record, envelope, frame), already) in records.iter().zip(delivered) {
        if already {
            result.stats.redelivered += 1;
            continue;
        }
        let handled = deliver_one(
            &fanout,
            &connections,
            record,
            envelope,
            frame,
            &mut result.stats,
        )
        .await;
        result.handled.push(handled);
    }
    result.claimed = Some((tenant, user_id));
    result
}

/// The user's claim for `seqs`, waiting up to [`CLAIM_WAIT`] while another invocation holds it:
/// which seqs are already delivered, and the user's connections. `None`: still held.
async fn claim(
    registry: &ConnectionRegistry,
    claimant: &Claimant,
    user_id: &str,
    seqs: &[u64],
) -> Result<Option<(Vec<bool>, Vec<Connection>)>, StoreError> {
    let give_up = Instant::now() + CLAIM_WAIT;
    loop {
        match registry
            .claim_delivery(user_id, seqs, &claimant.token, claimant.lease)
            .await?
        {
            DeliveryClaim::Claimed {
                delivered,
                connections,
            } => return Ok(Some((delivered, connections))),
            DeliveryClaim::Held { expires_in } => {
                if Instant::now() >= give_up {
                    return Ok(None);
                }
                tokio::time::sleep(CLAIM_POLL.min(expires_in).max(Duration::from_millis(1))).await;
            }
        }
    }
}

/// Posts one change's frame to the user's connections and builds its outputs.
async fn deliver_one(
    fanout: &Fanout,
    connections: &[Connection],
    record: &KafkaRecord,
    envelope: &Envelope,
    frame: &Frame,
    stats: &mut BatchStats,
) -> Handled {
    let user_id = &envelope.user_id;
    let posted_at = chrono::Utc::now();
    let report = fanout.send(user_id, connections, frame).await;
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
    Handled {
        offset: record.offset,
        user_id: (envelope.tenant.clone(), user_id.clone()),
        seq: envelope.seq,
        outputs: outputs(record, envelope, &report, posted_at),
    }
}

/// The records a delivered change produces: a new notification's IN_APP outcome, and its
/// off-app channels' routing to `push-notifications`; a change that moved the unread count
/// otherwise ([`Envelope::changes_unread`]) goes to `push-notifications` too, for the user's
/// phones' badge.
fn outputs(
    record: &KafkaRecord,
    envelope: &Envelope,
    report: &FanoutReport,
    posted_at: chrono::DateTime<chrono::Utc>,
) -> Vec<OutgoingRecord> {
    let Event::NotificationCreated { notification, .. } = &envelope.event else {
        return if envelope.changes_unread() {
            vec![to_push(record, envelope)]
        } else {
            Vec::new()
        };
    };
    let (status, why) = in_app_outcome(report);
    let outcome = DeliveryOutcome::at(notification, Channel::InApp, status, why, posted_at)
        .in_tenant(&envelope.tenant);
    let mut out = vec![OutgoingRecord {
        topic: Topic::NotificationDelivery,
        key: notification.id.clone(),
        payload: outcome.encode(),
        headers: Vec::new(),
    }];
    if notification.needs_push() {
        out.push(to_push(record, envelope));
    }
    out
}

/// The change routed to `push-notifications`, keyed by user (so `push` sees a user's changes in
/// order), with the creating request's `Idempotency-Key`.
fn to_push(record: &KafkaRecord, envelope: &Envelope) -> OutgoingRecord {
    OutgoingRecord {
        topic: Topic::PushNotifications,
        key: envelope.user_id.clone(),
        payload: envelope.encode(),
        headers: trigger::header(record, IDEMPOTENCY_KEY_HEADER)
            .map(|k| vec![(IDEMPOTENCY_KEY_HEADER.to_owned(), k)])
            .unwrap_or_default(),
    }
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
