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
//!      recipients (HyperLogLog; idempotent).
//!
//! A shard is named `<cluster>:<topic>:<partition>` ([`cluster_id`]): offsets only compare
//! within one Kafka cluster.
//!
//! | record | counter (channel, outcome) and history entry |
//! |---|---|
//! | `DeliveryOutcome` | its `channel`, its `status` (with `reason`, `at`, `latencyMs`) |
//! | `NOTIFICATION_UPDATED` with `seen: true` / `read: true` | `IN_APP`, `seen` / `read` (reading an unseen notification gives both) |
//! | `NOTIFICATION_CLICKED` | `IN_APP`, `clicked` |
//! | `ALL_READ` | nothing: it names no notification (see below) |
//! | any other envelope | nothing |
//!
//! Engagement counts under `IN_APP`: seeing, reading and clicking happen in the inbox (HTTP or
//! WebSocket), so the IN_APP funnel is `sent → seen → read → clicked` for one notification and
//! for the counters alike. `ALL_READ` is skipped: it says "everything before this `seq` is read"
//! without naming a notification or how many changed, so counting it would mix a bulk action into
//! the per-notification `read` count and could not be put in any notification's history. Each
//! day is the UTC day of the record's own time (`at`, `occurredAt`), so a redelivery counts into
//! the same day.
//!
//! Failures: a Redis failure while resolving types stops that partition's counting before the
//! record concerned and reports the partition from it; a failed history write reports the
//! partition from its record; a failed count or recipients write reports the partition from its
//! first record. Lambda resumes there
//! (`ReportBatchItemFailures`, or the whole batch without it); the watermark skips what was
//! counted and the histories ignore entries they hold, so nothing is counted twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use chrono::NaiveDate;
use futures::future::join_all;
use lambda_runtime::LambdaEvent;
use sha2::{Digest, Sha256};
use shared::config::{AnalyticsSettings, Env, RedisSettings, TriggerSettings};
use shared::error::StartupError;
use shared::metrics::MetricSet;
use shared::model::{Channel, OutcomeStatus};
use shared::protocol::envelope::{EnvelopeError, ENVELOPE_VERSION};
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::store::analytics::{HistoryEntry, HistoryWrite, ShardBatch, Tally};
use shared::store::{AnalyticsStore, KeySpace, RedisConn};
use shared::trigger::{self, BatchResponse, Counters, PartitionBatch, Report};

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

/// What one record contributes.
#[derive(Debug)]
struct Item {
    offset: i64,
    user_id: String,
    notification_id: String,
    /// The notification type, once known.
    kind: Option<String>,
    /// Whether `kind` is worth recording in the history (from the record or the inbox).
    kind_is_authoritative: bool,
    /// An engagement event (its type must be looked up; its user is not a "recipient").
    engagement: bool,
    day: NaiveDate,
    entries: Vec<HistoryEntry>,
}

impl Item {
    fn tallies(&self) -> Vec<Tally<'_>> {
        let kind = self.kind.as_deref().unwrap_or(UNKNOWN_TYPE);
        self.entries
            .iter()
            .map(|e| Tally {
                day: self.day,
                kind,
                channel: e.channel,
                status: e.status,
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum Poison {
    #[error(transparent)]
    Record(#[from] trigger::PoisonRecord),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("not a delivery outcome: {0}")]
    Outcome(#[source] serde_json::Error),
    #[error("unknown delivery outcome version {0}")]
    OutcomeVersion(u32),
    #[error("topic {0:?} is not an analytics input")]
    Topic(String),
}

/// Where to retry a partition from: its lowest failed offset, if any.
#[derive(Debug, Default)]
struct RetryFrom(Option<i64>);

impl RetryFrom {
    fn fail(&mut self, offset: i64) {
        self.0 = Some(self.0.map_or(offset, |o| o.min(offset)));
    }
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

/// One partition: decode, find the engagement types, then write its histories, its counts and
/// its recipients concurrently.
async fn count_partition(
    deps: &Deps,
    batch: &PartitionBatch<'_>,
    cluster: &str,
    yield_first: bool,
) -> (BatchStats, RetryFrom) {
    if yield_first {
        // Let the previous partition's requests go out before this one's CPU work.
        tokio::task::yield_now().await;
    }
    let suffix = &deps.store.settings().topic_suffix;
    let mut stats = BatchStats::default();
    let mut retry = RetryFrom::default();
    let topic_name = batch
        .records
        .first()
        .and_then(|r| r.topic.clone())
        .unwrap_or_else(|| topic_of_key(batch));
    let topic = Topic::from_name(&topic_name, suffix).filter(|t| {
        matches!(
            t,
            Topic::NotificationDelivery | Topic::NotificationAnalytics
        )
    });
    let partition = batch.records.first().map_or(0, |r| r.partition);
    let mut items: Vec<Item> = Vec::with_capacity(batch.records.len());
    for record in &batch.records {
        stats.records += 1;
        let decoded = match topic {
            Some(topic) => decode(topic, record),
            None => Err(Poison::Topic(topic_name.clone())),
        };
        match decoded {
            Ok(Some(item)) => items.push(item),
            Ok(None) => stats.ignored += 1,
            Err(why) => {
                stats.poison += 1;
                tracing::error!(
                    partition = batch.key,
                    offset = record.offset,
                    error = %why,
                    metric = "PoisonRecords",
                    "skipping a poison record"
                );
            }
        }
    }
    // Not an input topic: every record was poison; nothing to count or retry.
    if topic.is_none() {
        return (stats, retry);
    }

    resolve_types(deps, &mut items, &mut retry).await;

    // The partition is counted up to its first record whose type could not be resolved.
    let cut = retry.0;
    let below_cut = |offset: i64| cut.is_none_or(|cut| offset < cut);
    let shard_batch = batch
        .records
        .iter()
        .map(|r| r.offset)
        .filter(|o| below_cut(*o))
        .max()
        .map(|last_offset| ShardBatch {
            shard: format!("{cluster}:{topic_name}:{partition}"),
            last_offset,
            records: items
                .iter()
                .filter(|i| below_cut(i.offset))
                .map(|i| (i.offset, i.tallies()))
                .collect(),
        });

    // Histories, one per notification (all of a notification's records share a partition).
    let mut by_notification: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in items.iter().filter(|i| i.kind.is_some()) {
        by_notification
            .entry(&item.notification_id)
            .or_default()
            .push(item);
    }
    let groups: Vec<&Vec<&Item>> = by_notification.values().collect();
    let writes: Vec<HistoryWrite<'_>> = by_notification
        .iter()
        .map(|(id, group)| HistoryWrite {
            notification_id: id,
            user_id: &group[0].user_id,
            kind: group
                .iter()
                .find(|i| i.kind_is_authoritative)
                .and_then(|i| i.kind.as_deref()),
            entries: group.iter().flat_map(|i| &i.entries).collect(),
        })
        .collect();
    // Recipients: the users of delivery outcomes, per day.
    let mut recipients: BTreeMap<NaiveDate, BTreeSet<&str>> = BTreeMap::new();
    for item in items.iter().filter(|i| !i.engagement) {
        recipients
            .entry(item.day)
            .or_default()
            .insert(&item.user_id);
    }
    let registered: Vec<String> = shard_batch.iter().map(|b| b.shard.clone()).collect();

    let count = async {
        match &shard_batch {
            Some(b) => Some(deps.store.count(b).await),
            None => None,
        }
    };
    let (histories, counted, recipients_written) = futures::join!(
        deps.store.append_histories(&writes),
        count,
        deps.store.add_recipients(&registered, &recipients)
    );

    for (group, result) in groups.into_iter().zip(histories) {
        match result {
            Ok(added) => stats.history_added += added,
            Err(e) => {
                for item in group {
                    tracing::warn!(partition = batch.key, offset = item.offset, error = %e, "history write failed; retrying from this record");
                    retry.fail(item.offset);
                }
            }
        }
    }
    let first = batch.records.first().map(|r| r.offset);
    match (counted, &shard_batch) {
        (Some(Ok(c)), Some(b)) => {
            stats.counted += c.counted;
            stats.already_counted += b.records.len() as u64 - c.counted;
        }
        (Some(Err(e)), _) => {
            tracing::warn!(partition = batch.key, error = %e, "counting failed; retrying the partition");
            first.into_iter().for_each(|o| retry.fail(o));
        }
        _ => {}
    }
    if let Err(e) = recipients_written {
        tracing::warn!(partition = batch.key, error = %e, "recording recipients failed; retrying the partition");
        first.into_iter().for_each(|o| retry.fail(o));
    }
    (stats, retry)
}

/// The Kafka cluster's name in shard keys: `ANALYTICS_CLUSTER_ID`, else a digest of the MSK
/// cluster ARN or the self-managed bootstrap list. A partition's offsets are only comparable
/// within one cluster: a new cluster (devstack's embedded broker on every start) restarts them
/// at 0, and must not meet the old cluster's watermarks.
pub fn cluster_id(settings: &AnalyticsSettings, event: &KafkaEvent) -> String {
    if let Some(id) = &settings.cluster_id {
        return id.clone();
    }
    let source = event
        .event_source_arn
        .as_deref()
        .or(event.bootstrap_servers.as_deref())
        .unwrap_or_default();
    hex::encode(&Sha256::digest(source.as_bytes())[..6])
}

/// `"<topic>-<partition>"` → `<topic>` (when a record does not name its topic).
fn topic_of_key(batch: &PartitionBatch<'_>) -> String {
    batch
        .key
        .rsplit_once('-')
        .map_or(batch.key, |(topic, _)| topic)
        .to_owned()
}

/// The item a record contributes, `None` when it counts nothing.
fn decode(topic: Topic, record: &KafkaRecord) -> Result<Option<Item>, Poison> {
    let bytes = trigger::value(record)?;
    if topic == Topic::NotificationDelivery {
        let outcome: DeliveryOutcome = serde_json::from_slice(&bytes).map_err(Poison::Outcome)?;
        if outcome.v != ENVELOPE_VERSION {
            return Err(Poison::OutcomeVersion(outcome.v));
        }
        let entry = HistoryEntry {
            channel: outcome.channel,
            status: outcome.status,
            reason: outcome.reason,
            at: outcome.at,
            latency_ms: outcome.latency_ms,
        };
        return Ok(Some(Item {
            offset: record.offset,
            user_id: outcome.user_id,
            notification_id: outcome.notification_id,
            kind: Some(outcome.notification_type),
            kind_is_authoritative: true,
            engagement: false,
            day: outcome.at.date_naive(),
            entries: vec![entry],
        }));
    }
    let envelope = Envelope::decode(&bytes)?;
    let (id, statuses): (&str, Vec<OutcomeStatus>) = match &envelope.event {
        Event::NotificationUpdated { id, changes, .. } => {
            let mut statuses = Vec::new();
            if changes.seen == Some(true) {
                statuses.push(OutcomeStatus::Seen);
            }
            if changes.read == Some(true) {
                statuses.push(OutcomeStatus::Read);
            }
            (id, statuses)
        }
        Event::NotificationClicked { id } => (id, vec![OutcomeStatus::Clicked]),
        Event::AllRead { .. }
        | Event::NotificationCreated { .. }
        | Event::NotificationDeleted { .. } => return Ok(None),
    };
    if statuses.is_empty() {
        return Ok(None);
    }
    let entries = statuses
        .into_iter()
        .map(|status| HistoryEntry {
            channel: Channel::InApp,
            status,
            reason: None,
            at: envelope.occurred_at,
            latency_ms: None,
        })
        .collect();
    Ok(Some(Item {
        offset: record.offset,
        user_id: envelope.user_id.clone(),
        notification_id: id.to_owned(),
        kind: None,
        kind_is_authoritative: false,
        engagement: true,
        day: envelope.occurred_at.date_naive(),
        entries,
    }))
}

/// Fills in the type of every engagement item: the inbox (one HMGET per user), else the outcome
/// history, else [`UNKNOWN_TYPE`]; two round trips at most. An item whose lookup failed keeps
/// `None`, and its partition is retried from it.
async fn resolve_types(deps: &Deps, items: &mut [Item], retry: &mut RetryFrom) {
    /// What a lookup found: the type and whether it came from the inbox, `None` when neither the
    /// inbox nor the history knows it; `Err` when Redis failed.
    type Found = Result<Option<(String, bool)>, ()>;
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in items.iter().filter(|i| i.engagement) {
        wanted
            .entry(item.user_id.clone())
            .or_default()
            .insert(item.notification_id.clone());
    }
    if wanted.is_empty() {
        return;
    }
    let lookups: Vec<(&str, Vec<&str>)> = wanted
        .iter()
        .map(|(user, ids)| (user.as_str(), ids.iter().map(String::as_str).collect()))
        .collect();
    let mut found: HashMap<(&str, &str), Found> = HashMap::new();
    let mut missing: BTreeSet<&str> = BTreeSet::new();
    for ((user, ids), types) in lookups.iter().zip(deps.store.inbox_types(&lookups).await) {
        match types {
            Ok(types) => {
                for (id, kind) in ids.iter().zip(types) {
                    if kind.is_none() {
                        missing.insert(id);
                    }
                    found.insert((user, id), Ok(kind.map(|k| (k, true))));
                }
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "looking up notification types failed");
                for id in ids {
                    found.insert((user, id), Err(()));
                }
            }
        }
    }
    let missing: Vec<&str> = missing.into_iter().collect();
    let mut recorded: HashMap<&str, Found> = HashMap::new();
    for (id, kind) in missing.iter().zip(deps.store.history_types(&missing).await) {
        let kind = kind.map_err(|e| {
            tracing::warn!(id, error = %e, "looking up a notification type failed");
        });
        recorded.insert(id, kind.map(|k| k.map(|k| (k, false))));
    }
    for item in items.iter_mut().filter(|i| i.engagement) {
        let key = (item.user_id.as_str(), item.notification_id.as_str());
        let result = match found.get(&key) {
            Some(Ok(None)) => recorded.get(key.1).cloned().unwrap_or(Err(())),
            Some(other) => other.clone(),
            None => Err(()),
        };
        match result {
            Ok(Some((kind, from_inbox))) => {
                item.kind = Some(kind);
                item.kind_is_authoritative = from_inbox;
            }
            Ok(None) => item.kind = Some(UNKNOWN_TYPE.to_owned()),
            Err(()) => retry.fail(item.offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn record(topic: &str, value: &[u8]) -> KafkaRecord {
        serde_json::from_value(serde_json::json!({
            "topic": topic, "partition": 0, "offset": 7, "timestamp": 0,
            "timestampType": "CREATE_TIME", "key": null,
            "value": base64::engine::general_purpose::STANDARD.encode(value), "headers": []
        }))
        .unwrap_or_default()
    }

    #[test]
    fn reading_an_unseen_notification_counts_seen_and_read_under_in_app() {
        let raw = br#"{"v":1,"id":"e1","userId":"alice","seq":3,"occurredAt":"2026-11-29T23:59:59Z","type":"NOTIFICATION_UPDATED","payload":{"id":"n1","changes":{"read":true,"seen":true},"counts":{"unread":0,"unseen":0,"total":1,"byType":{},"version":3}}}"#;
        let item = decode(
            Topic::NotificationAnalytics,
            &record("notification-analytics", raw),
        )
        .ok()
        .flatten();
        let item = item.unwrap_or_else(|| panic!("an engagement item"));
        let statuses: Vec<(Channel, OutcomeStatus)> =
            item.entries.iter().map(|e| (e.channel, e.status)).collect();
        assert_eq!(
            statuses,
            [
                (Channel::InApp, OutcomeStatus::Seen),
                (Channel::InApp, OutcomeStatus::Read)
            ]
        );
        assert_eq!(item.day.to_string(), "2026-11-29");
        assert!(item.engagement && item.kind.is_none());
    }

    #[test]
    fn all_read_and_non_engagement_changes_count_nothing() {
        let all_read = br#"{"v":1,"id":"e2","userId":"alice","seq":4,"occurredAt":"2026-11-29T12:00:00Z","type":"ALL_READ","payload":{"counts":{"unread":0,"unseen":0,"total":1,"byType":{},"version":4}}}"#;
        let archived = br#"{"v":1,"id":"e3","userId":"alice","seq":5,"occurredAt":"2026-11-29T12:00:00Z","type":"NOTIFICATION_UPDATED","payload":{"id":"n1","changes":{"archived":true},"counts":{"unread":0,"unseen":0,"total":0,"byType":{},"version":5}}}"#;
        for raw in [&all_read[..], &archived[..]] {
            assert!(matches!(
                decode(
                    Topic::NotificationAnalytics,
                    &record("notification-analytics", raw)
                ),
                Ok(None)
            ));
        }
        assert!(matches!(
            decode(
                Topic::NotificationDelivery,
                &record("notification-delivery", b"{}")
            ),
            Err(Poison::Outcome(_))
        ));
    }
}
