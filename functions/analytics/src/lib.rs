//! # Analytics
//!
//! A Kafka-triggered function (MSK or self-managed Kafka: the event has the same shape) with two
//! triggers, one per topic, because an event-source mapping reads exactly one topic and every
//! mapping needs its own consumer group:
//!
//! - `notification-delivery`: one [`DeliveryOutcome`] per channel attempt (`delivery`, `push`);
//! - `notification-analytics`: engagement envelopes (`api`, `ws`).
//!
//! For each partition of a batch (partitions run concurrently, so one partition's records are
//! decoded while another's writes are in flight) it:
//!
//! 1. decodes every record into what it counts (the mapping below); a poison record (no value, bad
//!    base64, bad JSON, unknown `v`, a topic that is not an input) is logged with
//!    `metric=PoisonRecords`, counted and skipped, never blocking its partition;
//! 2. finds the notification type of each engagement event, whose envelope carries only the id:
//!    from the user's inbox, else from the notification's outcome history, else
//!    [`UNKNOWN_TYPE`] (a notification deleted before its engagement was counted);
//! 3. then, concurrently:
//!    - counts the partition's records with one script on its shard ([`AnalyticsStore::count`]:
//!      exactly once, by the shard's offset watermark);
//!    - records each record's outcomes in its notification's outcome history (the first of each
//!      channel × status; idempotent);
//!    - registers the shard and adds each delivery outcome's user to the day's unique
//!      recipients (HyperLogLog; idempotent);
//! 4. adds each read and click to its user's and the global hour-of-week engagement histogram
//!    (what `sendAt: "optimal"` reads; `shared::schedule`), only when the shard counted the
//!    whole batch for the first time, so a redelivery adds nothing.
//!
//! A shard is named `<cluster>:<topic>:<partition>` ([`cluster_id`]): offsets only compare
//! within one Kafka cluster.
//!
//! | record | counter (channel, outcome) and history entry |
//! |---|---|
//! | `DeliveryOutcome` | its `channel`, its `status` (with `reason`, `at`, `latencyMs`) |
//! | `NOTIFICATION_UPDATED` with `first.seen` / `first.read` | `IN_APP`, `seen` / `read` (reading a notification never seen gives both) |
//! | `NOTIFICATION_CLICKED` with `first` | `IN_APP`, `clicked` |
//! | `ALL_READ` | nothing: it names no notification (see below) |
//! | any other envelope | nothing |
//!
//! Engagement counts under `IN_APP`: seeing, reading and clicking happen in the inbox (HTTP or
//! WebSocket), so the IN_APP funnel is `sent → seen → read → clicked` for one notification and
//! for the counters alike, each step counted once per notification: the inbox scripts mark the
//! first seen, read and click of a notification (`first`, from its never-cleared "ever" bits), so
//! toggling read/unread 500 times counts one `read`; a record written before `first` existed
//! counts what it changed. `ALL_READ` is skipped: it says "everything before this `seq` is read"
//! without naming a notification or how many changed, so counting it would mix a bulk action into
//! the per-notification `read` count and could not be put in any notification's history. Each
//! day is the UTC day of the record's own time (`at`, `occurredAt`), so a redelivery counts into
//! the same day.
//!
//! Erased users: a history write for a notification from before its user's erase
//! (`docs/privacy.md`) is dropped; the counters, aggregates without a user, count it as usual.
//!
//! Failures: a Redis failure while resolving types stops that partition's counting before the
//! record concerned and reports the partition from it; a failed history write reports the
//! partition from its record; a failed count or recipients write reports the partition from its
//! first record. Lambda resumes there
//! (`ReportBatchItemFailures`, or the whole batch without it); the watermark skips what was
//! counted and the histories ignore entries they hold, so nothing is counted twice.
//!
//! ## Map
//!
//! - this file: [`Deps`], [`BatchStats`], [`handle`] and [`count_batch`];
//! - `partition`: one partition's counting, and [`cluster_id`];
//! - `decode`: what a record contributes, or why it is poison;
//! - `types`: the notification type of engagement events.

mod decode;
mod partition;
mod types;

use aws_lambda_events::event::kafka::KafkaEvent;
use futures::future::join_all;
use lambda_runtime::LambdaEvent;
use shared::config::{AnalyticsSettings, Env, RedisSettings, TriggerSettings};
use shared::error::StartupError;
use shared::metrics::MetricSet;
use shared::store::{AnalyticsStore, KeySpace, RedisConn};
use shared::trigger::{self, BatchResponse, Counters, Report};

pub use partition::cluster_id;
use partition::count_partition;

/// The type counted for an engagement event whose notification is in neither the inbox nor its
/// outcome history any more. Not a valid notification type, so it never mixes with a real one.
pub const UNKNOWN_TYPE: &str = "(unknown)";

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: AnalyticsStore,
    /// Whether the mapping reads partial batch responses (else a failure fails the invocation).
    pub trigger: TriggerSettings,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let settings = AnalyticsSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        Ok(Deps {
            store: AnalyticsStore::new(conn, KeySpace::new(redis.key_prefix), settings),
            trigger: TriggerSettings::from_env(env)?,
        })
    }

    /// With a mapping that reads partial batch responses (tests, benches).
    pub fn new(store: AnalyticsStore) -> Self {
        Deps {
            store,
            trigger: TriggerSettings::default(),
        }
    }
}

/// What one batch did, for the log line (and the tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub records: usize,
    pub poison: usize,
    /// Records with nothing to count (`ALL_READ`, changes that are not engagement).
    pub ignored: usize,
    /// Records counted by this invocation.
    pub counted: u64,
    /// Records with counts that their partition's watermark had already passed (redelivered).
    pub already_counted: u64,
    /// History entries added (a redelivered record, or a repeat of a channel × status, adds
    /// none).
    pub history_added: u64,
    /// Partitions left for Lambda to retry.
    pub retried_partitions: usize,
}

shared::counters!(BatchStats {
    records,
    poison,
    ignored,
    counted,
    already_counted,
    history_added,
    retried_partitions
});

impl Report for BatchStats {
    fn log(&self) {
        tracing::info!(
            records = self.records,
            counted = self.counted,
            already_counted = self.already_counted,
            history_added = self.history_added,
            ignored = self.ignored,
            poison = self.poison,
            retried_partitions = self.retried_partitions,
            "analytics batch"
        );
    }

    /// The batch's figures as CloudWatch metrics (`shared::metrics`).
    fn metrics(&self) -> Vec<MetricSet> {
        vec![MetricSet::new()
            .count("Records", self.records)
            .count("PoisonRecords", self.poison)
            .count("RecordsCounted", self.counted as usize)
            .count("Redelivered", self.already_counted as usize)
            .count("PartitionsRetried", self.retried_partitions)]
    }
}

/// One Kafka batch. Never fails as a whole: transient failures become item failures.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<KafkaEvent>,
) -> Result<BatchResponse, lambda_runtime::Error> {
    let (response, stats) = count_batch(deps, &event.payload).await;
    Ok(trigger::finish(&stats, response, &deps.trigger)?)
}

/// Counts every record of `event` and says which partitions to retry from where.
///
/// Partitions are independent (a notification's outcomes share a partition, and so do a user's
/// engagement events), so they run concurrently: while one partition's writes are in flight,
/// the next one's records are decoded, and this process's work overlaps Redis's.
pub async fn count_batch(deps: &Deps, event: &KafkaEvent) -> (BatchResponse, BatchStats) {
    let batches = trigger::partitions(event);
    let cluster = cluster_id(deps.store.settings(), event);
    let results = join_all(
        batches
            .iter()
            .enumerate()
            .map(|(i, batch)| count_partition(deps, batch, &cluster, i > 0)),
    )
    .await;
    let mut stats = BatchStats::default();
    let mut response = BatchResponse::default();
    for (batch, (s, retry)) in batches.iter().zip(results) {
        stats.merge(&s);
        if let Some(offset) = retry.0 {
            response.fail_from(batch.key, offset);
            stats.retried_partitions += 1;
        }
    }
    (response, stats)
}
