//! # Broadcast
//!
//! A Kafka-triggered function: each `broadcast-chunks` record ([`BroadcastChunk`]) names one
//! chunk of one broadcast's fan-out (a fixed range of the topic's membership buckets). For each
//! chunk it:
//!
//! 1. starts the broadcast (`queued` → `running`) and reads its template, sender and rate cap;
//! 2. reads the chunk's members (one pipelined read of its buckets);
//! 3. in slices of at most [`SLICE`] recipients (and of `maxPerSecond` when set), checking before
//!    each slice that the broadcast is not cancelled, and after it paying the broadcast's own rate
//!    limit (shared by every run) for the recipients it reached first:
//!    - marks the slice's users in the outbox's dirty index (one call), as every create does;
//!    - reads the slice's preferences (one `MGET`, split by slot on a cluster);
//!    - per recipient, concurrently: a recipient who muted the topic gets a skip record,
//!      everyone else the inbox create script, both on the recipient's idempotency record for
//!      the key `broadcast:<id>`: the first decision for a (broadcast, user) stands, and a later
//!      run finds it (a replay counts as created, a skip record as skipped);
//!    - publishes the slice's created notifications (the api's outbox path: unacknowledged ones
//!      stay for the outbox relay);
//! 4. commits the chunk's counts ([`TopicStore::commit_chunk`]): once per chunk, whatever the
//!    number of runs, so a redelivered batch, a crash and a retry, or two concurrent runs leave
//!    exact counters. The last chunk's commit makes the broadcast `done`.
//!
//! A cancelled broadcast's runs stop before their next slice and commit what they did: every
//! recipient not reached gets nothing. A chunk that fails for a transient reason (Redis
//! unreachable) is retried by Lambda from its record; a poison record is logged and skipped.

use std::time::Duration;

use aws_lambda_events::event::kafka::KafkaEvent;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use lambda_runtime::LambdaEvent;
use shared::config::{Env, InboxSettings, KafkaSettings, RedisSettings, TriggerSettings};
use shared::error::StartupError;
use shared::model::{Preferences, Priority};
use shared::outbox::Publisher;
use shared::protocol::BroadcastChunk;
use shared::store::inbox::{IdempotencyClaim, Marked};
use shared::store::TenantScoped;
use shared::store::{
    Broadcast, BroadcastStatus, Change, ChunkCounts, CreateOutcome, InboxStore, KeySpace,
    RedisConn, StoreError, TopicStore,
};
use shared::tenant::Tenant;
use shared::trigger::{self, BatchResponse, Report};

/// Most recipients handled between two checks for a cancel.
pub const SLICE: usize = 500;
/// Script calls in flight at once within a slice (a group's creates, or one muted recipient's
/// skip record).
const GROUPS_AT_ONCE: usize = 16;
/// Chunks of one batch fanned out at once.
pub const CHUNKS_AT_ONCE: usize = 8;

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: InboxStore,
    pub topics: TopicStore,
    pub publisher: Publisher,
    pub trigger: TriggerSettings,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let inbox = InboxSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let bus = shared::bus::EventBus::connect(&kafka).await?;
        let mut deps = Self::new(conn, KeySpace::new(redis.key_prefix), inbox, bus);
        deps.trigger = TriggerSettings::from_env(env)?;
        Ok(deps)
    }

    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        inbox: InboxSettings,
        bus: shared::bus::EventBus,
    ) -> Self {
        let store = InboxStore::new(conn.clone(), keys.clone(), inbox);
        Deps {
            topics: TopicStore::new(conn, keys),
            publisher: Publisher::new(bus, store.clone()),
            store,
            trigger: TriggerSettings::default(),
        }
    }

    /// The same dependencies acting on `tenant`'s keys (a chunk's tenant). The publisher
    /// publishes each change in its own tenant already.
    pub fn for_tenant(&self, tenant: &Tenant) -> Deps {
        Deps {
            store: self.store.for_tenant(tenant),
            topics: self.topics.for_tenant(tenant),
            ..self.clone()
        }
    }
}

/// What one batch did, for the log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub records: usize,
    pub poison: usize,
    pub created: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Chunks whose counts an earlier run had committed already.
    pub recommitted: usize,
    /// Records left for Lambda to retry.
    pub retried: usize,
}

shared::counters!(BatchStats {
    records,
    poison,
    created,
    skipped,
    failed,
    recommitted,
    retried
});

impl Report for BatchStats {
    fn log(&self) {
        tracing::info!(
            records = self.records,
            poison = self.poison,
            created = self.created,
            skipped = self.skipped,
            failed = self.failed,
            recommitted = self.recommitted,
            retried = self.retried,
            "broadcast batch"
        );
    }
}

/// The Lambda handler.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<KafkaEvent>,
) -> Result<BatchResponse, lambda_runtime::Error> {
    let (response, stats) = fan_out_batch(deps, &event.payload).await;
    Ok(trigger::finish(&stats, response, &deps.trigger)?)
}

/// Fans out every chunk of `event`, [`CHUNKS_AT_ONCE`] at a time whatever their partitions:
/// chunks are independent (no order between them; each is idempotent), so a partition need not
/// run them one by one. A partition with a transient failure is retried from its lowest failed
/// offset (the chunks after it run again, which changes nothing they did).
pub async fn fan_out_batch(deps: &Deps, event: &KafkaEvent) -> (BatchResponse, BatchStats) {
    let partitions = trigger::partitions(event);
    let records = partitions
        .iter()
        .flat_map(|batch| batch.records.iter().map(move |record| (batch, *record)));
    let results: Vec<(Option<(&str, i64)>, BatchStats)> = stream::iter(records)
        .map(|(batch, record)| async move {
            let mut stats = BatchStats {
                records: 1,
                ..BatchStats::default()
            };
            let chunk = match trigger::value(record) {
                Ok(bytes) => BroadcastChunk::decode(&bytes),
                Err(e) => {
                    batch.log_poison(record, &e);
                    stats.poison += 1;
                    return (None, stats);
                }
            };
            let Some(chunk) = chunk else {
                batch.log_poison(record, &"not a broadcast chunk");
                stats.poison += 1;
                return (None, stats);
            };
            match fan_out_chunk(deps, &chunk).await {
                Ok(run) => {
                    stats.created += run.counts.created;
                    stats.skipped += run.counts.skipped;
                    stats.failed += run.counts.failed;
                    stats.recommitted += usize::from(!run.committed);
                    (None, stats)
                }
                Err(e) => {
                    tracing::warn!(error = %e, broadcast = %chunk.broadcast_id, chunk = chunk.chunk, "chunk failed; Lambda retries it");
                    stats.retried += 1;
                    (Some((batch.key, record.offset)), stats)
                }
            }
        })
        .buffer_unordered(CHUNKS_AT_ONCE)
        .collect()
        .await;
    let mut retry: Vec<(&str, i64)> = Vec::new();
    let mut total = BatchStats::default();
    for (failed, stats) in results {
        if let Some((partition, offset)) = failed {
            match retry.iter_mut().find(|(p, _)| *p == partition) {
                Some(entry) => entry.1 = entry.1.min(offset),
                None => retry.push((partition, offset)),
            }
        }
        trigger::Counters::merge(&mut total, &stats);
    }
    let mut response = BatchResponse::default();
    for (partition, offset) in retry {
        response.fail_from(partition, offset);
    }
    (response, total)
}

/// What one run of a chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkRun {
    /// This run's outcomes (a recipient an earlier run served counts here too).
    pub counts: ChunkCounts,
    /// Whether this run's commit counted them (false: an earlier run of the chunk had).
    pub committed: bool,
}

/// One recipient's outcome.
enum Outcome {
    Created(Option<Change>),
    Skipped,
    Failed,
}

/// Runs one chunk (see the module header). Errors are transient: the chunk is worth retrying.
pub async fn fan_out_chunk(deps: &Deps, chunk: &BroadcastChunk) -> Result<ChunkRun, StoreError> {
    // The broadcast, its topic and its recipients are all the chunk's tenant's.
    let scoped;
    let deps = if chunk.tenant.is_default() {
        deps
    } else {
        scoped = deps.for_tenant(&chunk.tenant);
        &scoped
    };
    let id = chunk.broadcast_id.as_str();
    let Some(broadcast) = deps.topics.begin_chunk(id).await? else {
        // Discarded before it was accepted, or expired: nothing to do.
        return Ok(ChunkRun::default());
    };
    if broadcast.status == BroadcastStatus::Scheduled {
        // Not started: its chunks are produced when the scheduler starts it. Committing this
        // stray run would count the chunk as done before it ran.
        return Ok(ChunkRun::default());
    }
    let mut counts = ChunkCounts::default();
    if broadcast.status != BroadcastStatus::Cancelled {
        let members: Vec<String> = deps
            .topics
            .members_of_buckets(&broadcast.topic, chunk.buckets())
            .await?
            .into_iter()
            .flat_map(|(_, users)| users)
            .collect();
        let slice = broadcast
            .max_per_second
            .map_or(SLICE, |mps| (mps as usize).clamp(1, SLICE));
        for users in members.chunks(slice) {
            if deps.topics.status(id).await? != Some(BroadcastStatus::Running) {
                break;
            }
            let (slice_counts, new) = send_slice(deps, &broadcast, users).await?;
            // Paid after the slice, by the recipients it reached for the first time: a rerun
            // (a redelivered or timed-out chunk) goes past the ones already served at full
            // speed, so a slow broadcast's chunk always progresses.
            if let Some(mps) = broadcast.max_per_second {
                wait_for_budget(deps, id, mps, new).await?;
            }
            counts.created += slice_counts.created;
            counts.skipped += slice_counts.skipped;
            counts.failed += slice_counts.failed;
        }
    }
    let (committed, _) = deps.topics.commit_chunk(id, chunk.chunk, counts).await?;
    Ok(ChunkRun { counts, committed })
}

/// Waits until the broadcast's `max_per_second` budget has room for `cost` recipients.
async fn wait_for_budget(deps: &Deps, id: &str, mps: u32, cost: u32) -> Result<(), StoreError> {
    if cost == 0 {
        return Ok(());
    }
    while let Some(wait) = deps.topics.take_rate(id, mps, cost).await? {
        tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
    }
    Ok(())
}

/// Whether each of `users` muted `topic`, in order: their preferences in one `MGET` (a Redis
/// Cluster client splits it by slot). Unreadable preferences mute nothing: the notification is
/// stored as any create would store it.
async fn mutes_topic(deps: &Deps, topic: &str, users: &[String]) -> Result<Vec<bool>, StoreError> {
    let keys: Vec<String> = users
        .iter()
        .map(|user| deps.store.user_keys(user).prefs())
        .collect();
    let stored: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut deps.store.conn())
        .await?;
    Ok(stored
        .iter()
        .map(|raw| {
            raw.as_deref()
                .and_then(|raw| serde_json::from_str::<Preferences>(raw).ok())
                .is_some_and(|prefs| prefs.mutes_topic(topic))
        })
        .collect())
}

/// Whether the broadcast's notifications join a digest (an urgent one bypasses digests).
fn joins_digest(broadcast: &Broadcast) -> bool {
    let template = &broadcast.notification;
    template.digest.is_some() && template.priority != Priority::Urgent
}

/// Creates the notifications of `group` (one call: [`InboxStore::create_many`]; a single
/// notification that joins a digest: [`InboxStore::create_within`]). When the group's call fails
/// for a reason other than a transient one, each of its recipients is tried on its own, so one
/// bad recipient fails alone (those the call wrote replay as created).
async fn create_group(
    deps: &Deps,
    broadcast: &Broadcast,
    claim: &IdempotencyClaim,
    group: Vec<Marked>,
) -> Vec<Result<Outcome, StoreError>> {
    let sender = &broadcast.sender;
    // A notification that joins a digest is created on its own (`send_slice` makes its groups of
    // one): its create reads the digest's open item first.
    if !joins_digest(broadcast) {
        match deps.store.create_many(&group, sender, claim).await {
            Ok(outcomes) => {
                return group
                    .iter()
                    .zip(outcomes)
                    .map(|(marked, outcome)| outcome_of(broadcast, marked.user_id(), outcome))
                    .collect()
            }
            Err(e) if e.is_transient() => return vec![Err(e)],
            Err(e) => {
                tracing::error!(error = %e, broadcast = %broadcast.id, "a group of recipients failed; trying each");
            }
        }
    }
    let mut outcomes = Vec::with_capacity(group.len());
    for marked in group {
        let user = marked.user_id().to_owned();
        let outcome = deps
            .store
            .create_within(marked, sender, Some(claim), None)
            .await;
        outcomes.push(outcome_of(broadcast, &user, outcome));
    }
    outcomes
}

/// One recipient's outcome from its create or skip record; `Err` only for a transient failure.
fn outcome_of(
    broadcast: &Broadcast,
    user: &str,
    outcome: Result<CreateOutcome, StoreError>,
) -> Result<Outcome, StoreError> {
    Ok(match outcome {
        Ok(CreateOutcome::Created { change, .. }) => Outcome::Created(Some(change)),
        Ok(CreateOutcome::Replayed(_)) => Outcome::Created(None),
        // The recipient's record is a skip (this run's or an earlier one's).
        Ok(CreateOutcome::Conflict) => Outcome::Skipped,
        Ok(CreateOutcome::Limited { .. }) => Outcome::Failed,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            tracing::error!(error = %e, user, broadcast = %broadcast.id, "a recipient failed");
            Outcome::Failed
        }
    })
}

/// Sends the broadcast to `users`, publishes what it created, and counts; with how many of them
/// this call reached first (created or skipped now, not by an earlier run).
async fn send_slice(
    deps: &Deps,
    broadcast: &Broadcast,
    users: &[String],
) -> Result<(ChunkCounts, u32), StoreError> {
    let claim = IdempotencyClaim {
        key: format!("broadcast:{}", broadcast.id),
        body_hash: broadcast.id.clone(),
    };
    let news = users
        .iter()
        .map(|user| {
            let mut new = broadcast.notification.clone();
            new.user_id = user.clone();
            new
        })
        .collect();
    let marked = deps.store.mark_many_for_create(news).await?;
    let mutes = mutes_topic(deps, &broadcast.topic, users).await?;
    let (muted, to_create): (Vec<_>, Vec<_>) =
        marked.into_iter().zip(mutes).partition(|(_, muted)| *muted);
    let to_create: Vec<Marked> = to_create.into_iter().map(|(marked, _)| marked).collect();
    // A template that joins a digest is created one recipient at a time (its create reads the
    // digest's open item first); every other goes in groups, one script call each.
    let groups = if joins_digest(broadcast) {
        to_create.into_iter().map(|marked| vec![marked]).collect()
    } else {
        deps.store.create_groups(to_create)
    };
    // Built in loops, not stream closures: the fan-out's future must be `Send` for any lifetime.
    let mut calls: Vec<BoxFuture<'_, Vec<Result<Outcome, StoreError>>>> = Vec::new();
    for (marked, _) in muted {
        let claim = &claim;
        calls.push(
            async move {
                // `None`: this call recorded the skip, which reads as a conflict does.
                let outcome = deps
                    .store
                    .record_skip(&broadcast.sender, marked.user_id(), claim)
                    .await
                    .map(|earlier| earlier.unwrap_or(CreateOutcome::Conflict));
                vec![outcome_of(broadcast, marked.user_id(), outcome)]
            }
            .boxed(),
        );
    }
    for group in groups {
        calls.push(create_group(deps, broadcast, &claim, group).boxed());
    }
    let outcomes: Vec<Result<Outcome, StoreError>> = stream::iter(calls)
        .buffer_unordered(GROUPS_AT_ONCE)
        .flat_map(stream::iter)
        .collect()
        .await;
    let mut counts = ChunkCounts::default();
    let mut changes = Vec::new();
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok(Outcome::Created(change)) => {
                counts.created += 1;
                changes.extend(change);
            }
            Ok(Outcome::Skipped) => counts.skipped += 1,
            Ok(Outcome::Failed) => counts.failed += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // Every committed create is published (or left to the relay), even when another failed.
    deps.publisher.publish_or_defer(&changes).await;
    match first_error {
        Some(e) => Err(e),
        None => Ok((counts, changes.len() as u32)),
    }
}
