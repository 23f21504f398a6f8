//! [`AnalyticsStore`]: the analytics counters, the unique-recipient estimates and each
//! notification's outcome history.
//!
//! Guarantees (the argument is in `docs/architecture.md`, "Analytics"):
//! - **Counters count each Kafka record exactly once**, with no key per event. They are sharded by
//!   Kafka topic-partition; a shard's day hashes and its offset watermark share one hash slot
//!   (`{an:<cluster>:<topic>:<partition>}`), and one script per partition batch ([`AnalyticsStore::count`])
//!   skips offsets at or below the watermark, adds the rest and moves the watermark, atomically.
//!   A redelivered batch, or any replay of a partition from an older offset, changes nothing.
//!   The same batch run by two invocations *at the same time* (a consumer-group rebalance) is
//!   counted once too: the script is the claim and the count in one atomic step (it reads the
//!   watermark, adds what is above it and moves it past the batch with nothing in between), so
//!   whichever runs second finds the batch claimed and adds nothing. No lease is needed: there is
//!   no gap between claiming and counting for a crash to fall into. The outcome histories and
//!   the recipients below are idempotent, so their concurrent repeats change nothing.
//! - **Unique recipients** are a HyperLogLog per UTC day. PFADD is idempotent, so redelivery
//!   cannot inflate them; they are estimates (standard error 0.81%).
//! - **Outcome histories** hold the *first* outcome of each channel × status (`IN_APP/sent`,
//!   `EMAIL/failed`, `IN_APP/read`, …), written with HSETNX: a redelivered record finds its field
//!   taken and changes nothing, and a history has at most 4 × 7 entries by construction. A repeat
//!   (a second click, a retried send that fails again) keeps the first one's time; the counters
//!   count every one.
//! - Nothing grows without bound: day hashes, HyperLogLogs and watermarks expire after the
//!   retention period without writes, histories after their TTL.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::{join_all, try_join_all};
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::erase::{ERASED_HISTORY_FIELD, ERASE_MARKER_TTL};
use super::keys::KeySpace;
use super::{scripts, RedisConn, StoreError};
use crate::config::AnalyticsSettings;
use crate::model::{Channel, OutcomeStatus};
use crate::tenant::Tenant;

/// What one counter counts: records of one notification type, on one channel, with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub kind: String,
    pub channel: Channel,
    pub status: OutcomeStatus,
}

/// The hash field of a counter: `<type>|<channel>|<outcome>` (types never contain `|`), the
/// default tenant's (as before tenants), or `<tenant>/<type>|<channel>|<outcome>` (no type
/// contains `/`): a tenant's counts are its own, in the same shard hashes.
fn counter_field(tenant: &Tenant, kind: &str, channel: Channel, status: OutcomeStatus) -> String {
    if tenant.is_default() {
        format!("{kind}|{}|{}", channel.as_str(), status.as_str())
    } else {
        format!("{tenant}/{kind}|{}|{}", channel.as_str(), status.as_str())
    }
}

/// The tenant and counter of a hash field ([`counter_field`]); `None` for a corrupt field.
fn parse_counter_field(field: &str) -> Option<(Tenant, CounterKey)> {
    match field.split_once('/') {
        Some((tenant, counter)) => Some((Tenant::parse(tenant)?, CounterKey::parse(counter)?)),
        None => Some((Tenant::default_tenant(), CounterKey::parse(field)?)),
    }
}

impl CounterKey {
    #[cfg(test)]
    fn field(&self) -> String {
        counter_field(
            &Tenant::default_tenant(),
            &self.kind,
            self.channel,
            self.status,
        )
    }

    fn parse(field: &str) -> Option<Self> {
        let mut parts = field.rsplitn(3, '|');
        let status = OutcomeStatus::from_name(parts.next()?)?;
        let channel = Channel::from_name(parts.next()?)?;
        Some(CounterKey {
            kind: parts.next()?.to_owned(),
            channel,
            status,
        })
    }
}

/// One counted outcome: a counter (type × channel × outcome) on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tally<'a> {
    /// The tenant of the record's user: its counters are the tenant's.
    pub tenant: &'a Tenant,
    pub day: NaiveDate,
    pub kind: &'a str,
    pub channel: Channel,
    pub status: OutcomeStatus,
}

/// One Kafka partition's batch, as the counters see it.
#[derive(Debug, Clone, Default)]
pub struct ShardBatch<'a> {
    /// `<cluster>:<topic>:<partition>` (see [`KeySpace::analytics_shard`]).
    pub shard: String,
    /// The last offset the batch covers (records without tallies included).
    pub last_offset: i64,
    /// The records with something to count, in offset order.
    pub records: Vec<(i64, Vec<Tally<'a>>)>,
}

/// What [`AnalyticsStore::count`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Records counted now (the others were at or below the watermark).
    pub counted: u64,
    /// The watermark before this batch (-1: none).
    pub watermark_before: i64,
}

/// One entry of a notification's outcome history: a delivery outcome or an engagement signal
/// (the first of its channel × status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub channel: Channel,
    pub status: OutcomeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it happened (the outcome's `at`, the engagement event's `occurredAt`).
    pub at: DateTime<Utc>,
    /// From the notification's creation to this outcome (delivery outcomes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// EMAIL and SMS outcomes: the provider that answered the send (`ses`, `smtp`, `twilio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl HistoryEntry {
    /// Its field in the history hash: one per channel × status.
    fn field(&self) -> String {
        format!("{}/{}", self.channel.as_str(), self.status.as_str())
    }

    /// Funnel order among entries at the same instant: delivery, seen, read, clicked.
    fn stage(&self) -> u8 {
        match self.status {
            OutcomeStatus::Seen => 1,
            OutcomeStatus::Read => 2,
            OutcomeStatus::Clicked => 3,
            _ => 0,
        }
    }
}

/// An entry as stored: with the notification's user (who may read the history) and, when the
/// writer knew it, its type. Every entry carries both, so one HSETNX per entry is the whole write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEntry {
    #[serde(flatten)]
    entry: HistoryEntry,
    user_id: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

/// [`StoredEntry`] as written, borrowing (one is written per record).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredEntryRef<'a> {
    #[serde(flatten)]
    entry: &'a HistoryEntry,
    user_id: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// A notification's recorded history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub user_id: String,
    pub kind: Option<String>,
    /// By time, then funnel order (reading marks seen at the same instant: seen comes first).
    pub entries: Vec<HistoryEntry>,
}

/// One day of counters, summed over every shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayCounters {
    pub day: NaiveDate,
    pub counts: BTreeMap<CounterKey, u64>,
    /// Estimated unique recipients of the day (every type and channel).
    pub unique_recipients: u64,
}

/// One notification's entries for [`AnalyticsStore::append_histories`].
#[derive(Debug, Clone)]
pub struct HistoryWrite<'a> {
    pub notification_id: &'a str,
    pub user_id: &'a str,
    /// The user's tenant: the history and the erase check are in its keys.
    pub tenant: &'a Tenant,
    /// Recorded with each entry; `None` when the caller does not know it.
    pub kind: Option<&'a str>,
    /// In the order they happened: the first of each channel × status is kept.
    pub entries: Vec<&'a HistoryEntry>,
    /// A `seq` of the notification's life, when the records carry one: the write is dropped if
    /// the user was erased after it (`erase.rs`).
    pub seq: Option<u64>,
    /// The earliest record's time (ms): compared with the erase time when there is no `seq`.
    pub at_ms: i64,
}

fn parse<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AnalyticsStore {
    conn: RedisConn,
    pub(super) keys: KeySpace,
    settings: AnalyticsSettings,
}

/// `YYYY-MM-DD`, the day part of every day key.
pub fn day_name(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

impl AnalyticsStore {
    pub fn new(conn: RedisConn, keys: KeySpace, settings: AnalyticsSettings) -> Self {
        AnalyticsStore {
            conn,
            keys,
            settings,
        }
    }

    /// The engagement histograms on the same connection (fed by the analytics function).
    pub fn engagement(&self) -> super::EngagementStore {
        super::EngagementStore::new(self.conn.clone(), self.keys.clone())
    }

    pub fn settings(&self) -> &AnalyticsSettings {
        &self.settings
    }

    fn retention_secs(&self) -> u64 {
        self.settings.retention.as_secs().max(1)
    }

    /// Counts one partition's batch exactly once: one script, one round trip (two for a batch
    /// that straddles the watermark; see `lua/analytics_count.lua`).
    pub async fn count(&self, batch: &ShardBatch<'_>) -> Result<Counted, StoreError> {
        let shard = self.keys.analytics_shard(&batch.shard);
        // The batch's counts summed per (day, field): all the script needs unless the batch
        // straddles the watermark.
        let mut sums: BTreeMap<Tally<'_>, u64> = BTreeMap::new();
        for (_, tallies) in &batch.records {
            for t in tallies {
                *sums.entry(*t).or_default() += 1;
            }
        }
        let mut days: Vec<NaiveDate> = sums.keys().map(|t| t.day).collect();
        days.dedup();
        let day_index = |day: &NaiveDate| days.binary_search(day).unwrap_or_default();
        let first = batch
            .records
            .first()
            .map_or(batch.last_offset + 1, |(offset, _)| *offset);
        let mut invocation = scripts::ANALYTICS_COUNT.key(shard.watermark());
        for day in &days {
            invocation.key(shard.day(&day_name(*day)));
        }
        invocation
            .arg(self.retention_secs())
            .arg(batch.last_offset)
            .arg(first)
            .arg(batch.records.len())
            .arg(sums.len());
        for (t, n) in &sums {
            invocation
                .arg(day_index(&t.day))
                .arg(counter_field(t.tenant, t.kind, t.channel, t.status))
                .arg(*n);
        }
        let (counted, watermark_before): (i64, i64) =
            invocation.invoke_async(&mut self.conn.clone()).await?;
        if counted >= 0 {
            return Ok(Counted {
                counted: counted as u64,
                watermark_before,
            });
        }
        // The batch straddles the watermark (resumed from an offset the watermark has passed):
        // the script needs each record's counts to skip the counted ones.
        for (offset, tallies) in &batch.records {
            invocation.arg(*offset).arg(tallies.len());
            for t in tallies {
                invocation
                    .arg(day_index(&t.day))
                    .arg(counter_field(t.tenant, t.kind, t.channel, t.status));
            }
        }
        let (counted, watermark_before): (i64, i64) =
            invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(Counted {
            counted: u64::try_from(counted)
                .map_err(|_| StoreError::Corrupt("the count script wants detail twice".into()))?,
            watermark_before,
        })
    }

    /// Registers the shards a batch touched and adds its recipients to their days' estimates
    /// (this store's tenant's). Both are idempotent, so a retried batch may repeat this freely.
    /// One atomic pipeline on the `{an}` slot: a tenant's store (whose recipients are in its own
    /// `{<tenant>/an}` slot) is given no shards; the default tenant's registers them.
    pub async fn add_recipients(
        &self,
        shards: &[String],
        recipients: &BTreeMap<NaiveDate, BTreeSet<&str>>,
    ) -> Result<(), StoreError> {
        if shards.is_empty() && recipients.is_empty() {
            return Ok(());
        }
        let ttl = self.retention_secs() as i64;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !shards.is_empty() {
            pipe.sadd(self.keys.analytics_shards(), shards).ignore();
        }
        for (day, users) in recipients {
            let key = self.keys.analytics_recipients(&day_name(*day));
            let users: Vec<&str> = users.iter().copied().collect();
            pipe.pfadd(&key, users).ignore();
            pipe.expire(&key, ttl).ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Records each write's entries (in the order they happened) in its notification's history,
    /// each unless its channel × status is already there. Idempotent. Two steps, each one round
    /// trip for the whole batch (see [`Self::run_pipelines`]): in each user's slot, the erase
    /// check and the index an erase finds the history by (`lua/history_admit.lua`); then, for the
    /// writes admitted, the entries, unless an erase left its tombstone there
    /// (`lua/history_append.lua`). Returns, per write, how many entries were new (0 for a write
    /// dropped as older than its user's erase).
    pub async fn append_histories(
        &self,
        writes: &[HistoryWrite<'_>],
    ) -> Vec<Result<u64, StoreError>> {
        let ttl = self.settings.history_ttl.as_secs().max(1) as i64;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let admit = |i: usize, cmd: &mut redis::Pipeline| {
            let w = &writes[i];
            let user = self.keys.for_tenant(w.tenant).user(w.user_id);
            cmd.arg(2)
                .arg(user.erased())
                .arg(user.histories())
                .arg(w.notification_id)
                .arg(w.seq.map_or_else(String::new, |s| s.to_string()))
                .arg(w.at_ms)
                .arg(now_ms)
                .arg(ttl * 1000);
        };
        let admitted: Vec<Result<bool, StoreError>> = self
            .run_script_pipelines(
                &scripts::HISTORY_ADMIT,
                scripts::HISTORY_ADMIT_SOURCE,
                writes.len(),
                admit,
            )
            .await
            .into_iter()
            .map(|replies| Ok(matches!(replies?.first(), Some(Value::Int(1)))))
            .collect();
        let todo: Vec<usize> = admitted
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a, Ok(true)))
            .map(|(i, _)| i)
            .collect();
        let append = |j: usize, cmd: &mut redis::Pipeline| {
            let w = &writes[todo[j]];
            cmd.arg(1)
                .arg(
                    self.keys
                        .for_tenant(w.tenant)
                        .notification_outcomes(w.notification_id),
                )
                .arg(ERASED_HISTORY_FIELD)
                .arg(ttl);
            for entry in &w.entries {
                let stored = StoredEntryRef {
                    entry,
                    user_id: w.user_id,
                    kind: w.kind,
                };
                cmd.arg(entry.field())
                    .arg(serde_json::to_string(&stored).unwrap_or_default());
            }
        };
        let mut appended = self
            .run_script_pipelines(
                &scripts::HISTORY_APPEND,
                scripts::HISTORY_APPEND_SOURCE,
                todo.len(),
                append,
            )
            .await
            .into_iter();
        admitted
            .into_iter()
            .map(|admitted| match admitted? {
                false => Ok(0),
                true => match appended.next() {
                    Some(replies) => match replies?.first() {
                        Some(Value::Int(n)) => Ok((*n).max(0) as u64),
                        _ => Err(StoreError::Corrupt(
                            "a history append answered no count".into(),
                        )),
                    },
                    None => Err(StoreError::Corrupt("a history append is missing".into())),
                },
            })
            .collect()
    }

    /// Replaces a notification's outcome history with the tombstone an erase leaves: the
    /// history is gone, and a late write finds the tombstone and adds nothing. It lives as long
    /// as the erase marker, past every late record.
    pub async fn erase_history(&self, notification_id: &str) -> Result<(), StoreError> {
        let key = self.keys.notification_outcomes(notification_id);
        let ttl = ERASE_MARKER_TTL.as_secs() as i64;
        let () = redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset(&key, ERASED_HISTORY_FIELD, "1")
            .ignore()
            .expire(&key, ttl)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The types of some notifications of each user, from the inboxes (`None`: not in the
    /// inbox). One round trip (see [`Self::run_pipelines`]).
    pub async fn inbox_types(
        &self,
        wanted: &[(&str, Vec<&str>)],
    ) -> Vec<Result<Vec<Option<String>>, StoreError>> {
        let build = |i: usize, pipe: &mut redis::Pipeline| {
            let (user, ids) = &wanted[i];
            pipe.cmd("HMGET").arg(self.keys.user(user).flags()).arg(ids);
        };
        self.run_pipelines(wanted.len(), build)
            .await
            .into_iter()
            .zip(wanted)
            .map(|(replies, (_, ids))| {
                let states: Vec<Option<String>> =
                    parse(replies?.into_iter().next().unwrap_or(Value::Nil))?;
                if states.len() != ids.len() {
                    return Err(StoreError::Corrupt("HMGET answered the wrong count".into()));
                }
                Ok(states
                    .into_iter()
                    .map(|s| {
                        s.as_deref()
                            .and_then(super::inbox::state_type)
                            .map(str::to_owned)
                    })
                    .collect())
            })
            .collect()
    }

    /// Notifications' types as their histories recorded them (from a delivery outcome).
    pub async fn history_types(&self, ids: &[&str]) -> Vec<Result<Option<String>, StoreError>> {
        let build = |i: usize, pipe: &mut redis::Pipeline| {
            pipe.hvals(self.keys.notification_outcomes(ids[i]));
        };
        self.run_pipelines(ids.len(), build)
            .await
            .into_iter()
            .map(|replies| {
                let values: Vec<String> = parse(replies?.into_iter().next().unwrap_or(Value::Nil))?;
                Ok(values
                    .iter()
                    .filter_map(|v| serde_json::from_str::<StoredEntry>(v).ok())
                    .find_map(|e| e.kind))
            })
            .collect()
    }

    /// [`Self::run_pipelines`] of one script call each (`args(i, pipe)` adds its key count, keys
    /// and arguments to the call): sent as `EVALSHA`, so Redis does not hash the source on every call; the
    /// calls a server answered `NOSCRIPT` (restarted, or its cache flushed) go again as `EVAL`,
    /// which also caches the script there. Only for scripts that are safe to send twice: a
    /// `NOSCRIPT` call ran nothing.
    async fn run_script_pipelines(
        &self,
        script: &redis::Script,
        source: &str,
        count: usize,
        args: impl Fn(usize, &mut redis::Pipeline),
    ) -> Vec<Result<Vec<Value>, StoreError>> {
        let by_hash = |i: usize, pipe: &mut redis::Pipeline| {
            args(i, pipe.cmd("EVALSHA").arg(script.get_hash()));
        };
        let mut replies = self.run_pipelines(count, by_hash).await;
        let missing: Vec<usize> = (0..count)
            .filter(|&i| {
                matches!(&replies[i], Err(StoreError::Redis(e)) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
            })
            .collect();
        if missing.is_empty() {
            return replies;
        }
        let by_source = |j: usize, pipe: &mut redis::Pipeline| {
            args(missing[j], pipe.cmd("EVAL").arg(source));
        };
        let again = self.run_pipelines(missing.len(), by_source).await;
        for (i, reply) in missing.iter().zip(again) {
            replies[*i] = reply;
        }
        replies
    }

    /// Runs `count` pipelines that each stay in one hash slot (`build(i, pipe)` adds the
    /// commands of the `i`-th), and answers each one's replies, or its first error. On one Redis
    /// they go as one pipeline: one round trip, however many there are. On a cluster each goes
    /// on its own (a pipeline must stay in one slot there), all at once over the multiplexed
    /// connections.
    async fn run_pipelines(
        &self,
        count: usize,
        build: impl Fn(usize, &mut redis::Pipeline),
    ) -> Vec<Result<Vec<Value>, StoreError>> {
        if count == 0 {
            return Vec::new();
        }
        if let RedisConn::Cluster(_) = &self.conn {
            let pipes: Vec<redis::Pipeline> = (0..count)
                .map(|i| {
                    let mut pipe = redis::pipe();
                    build(i, &mut pipe);
                    pipe
                })
                .collect();
            return join_all(pipes.iter().map(|p| async move {
                Ok(p.query_async::<Vec<Value>>(&mut self.conn.clone()).await?)
            }))
            .await;
        }
        let mut all = redis::pipe();
        all.ignore_errors();
        let mut lengths = Vec::with_capacity(count);
        for i in 0..count {
            let before = all.len();
            build(i, &mut all);
            lengths.push(all.len() - before);
        }
        let replies: Vec<redis::RedisResult<Value>> =
            match all.query_async(&mut self.conn.clone()).await {
                Ok(replies) => replies,
                Err(e) => return lengths.iter().map(|_| Err(e.clone().into())).collect(),
            };
        let mut replies = replies.into_iter();
        lengths
            .into_iter()
            .map(|n| {
                let mine: Vec<redis::RedisResult<Value>> = replies.by_ref().take(n).collect();
                if mine.len() < n {
                    return Err(StoreError::Corrupt("a pipeline reply is missing".into()));
                }
                Ok(mine
                    .into_iter()
                    .collect::<redis::RedisResult<Vec<Value>>>()?)
            })
            .collect()
    }

    /// A notification's history, or `None` if nothing was recorded for it (or it was erased).
    pub async fn history(&self, notification_id: &str) -> Result<Option<History>, StoreError> {
        let fields: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.notification_outcomes(notification_id))
            .await?;
        let mut stored = Vec::with_capacity(fields.len());
        for (field, value) in fields.iter().filter(|(f, _)| *f != ERASED_HISTORY_FIELD) {
            let entry: StoredEntry = serde_json::from_str(value)
                .map_err(|e| StoreError::Corrupt(format!("history entry {field}: {e}")))?;
            stored.push(entry);
        }
        let Some(user_id) = stored.first().map(|e| e.user_id.clone()) else {
            return Ok(None);
        };
        let kind = stored.iter().find_map(|e| e.kind.clone());
        let mut entries: Vec<HistoryEntry> = stored.into_iter().map(|e| e.entry).collect();
        entries.sort_by(|a, b| {
            (a.at, a.stage(), a.channel, a.status).cmp(&(b.at, b.stage(), b.channel, b.status))
        });
        Ok(Some(History {
            user_id,
            kind,
            entries,
        }))
    }

    /// Every shard ever counted.
    pub async fn shards(&self) -> Result<Vec<String>, StoreError> {
        let mut shards: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.analytics_shards())
            .await?;
        shards.sort();
        Ok(shards)
    }

    /// This store's tenant's counters of every day in `from..=to`, summed over every shard (one
    /// atomic pipeline per shard, concurrently), with each day's unique recipients.
    pub async fn days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<(Vec<DayCounters>, u64), StoreError> {
        let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
        let names: Vec<String> = days.iter().map(|d| day_name(*d)).collect();
        let shards = self.shards().await?;
        let per_shard = try_join_all(shards.iter().map(|shard| {
            let keys = self.keys.analytics_shard(shard);
            let names = &names;
            async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for name in names {
                    pipe.hgetall(keys.day(name));
                }
                let maps: Vec<HashMap<String, u64>> =
                    pipe.query_async(&mut self.conn.clone()).await?;
                Ok::<_, StoreError>(maps)
            }
        }));
        let (per_shard, (unique, total_unique)) =
            futures::try_join!(per_shard, self.unique_recipients(&names))?;
        let mut out: Vec<DayCounters> = days
            .iter()
            .zip(unique)
            .map(|(day, unique_recipients)| DayCounters {
                day: *day,
                counts: BTreeMap::new(),
                unique_recipients,
            })
            .collect();
        for maps in per_shard {
            for (day, map) in out.iter_mut().zip(maps) {
                for (field, n) in map {
                    match parse_counter_field(&field) {
                        Some((tenant, key)) if tenant == *self.keys.tenant() => {
                            *day.counts.entry(key).or_default() += n
                        }
                        Some(_) => {}
                        None => {
                            return Err(StoreError::Corrupt(format!("counter field {field:?}")))
                        }
                    }
                }
            }
        }
        Ok((out, total_unique))
    }

    /// Each day's unique recipients, and the range's (the union, not the sum).
    async fn unique_recipients(&self, names: &[String]) -> Result<(Vec<u64>, u64), StoreError> {
        if names.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let keys: Vec<String> = names
            .iter()
            .map(|n| self.keys.analytics_recipients(n))
            .collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in &keys {
            pipe.pfcount(key);
        }
        pipe.pfcount(&keys);
        let mut counts: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        let total = counts.pop().unwrap_or_default();
        Ok((counts, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_fields_round_trip() {
        let key = CounterKey {
            kind: "comment.reply".into(),
            channel: Channel::InApp,
            status: OutcomeStatus::Clicked,
        };
        assert_eq!(key.field(), "comment.reply|IN_APP|clicked");
        assert_eq!(CounterKey::parse(&key.field()), Some(key.clone()));
        let acme = Tenant::parse("acme").unwrap_or_default();
        let field = counter_field(&acme, &key.kind, key.channel, key.status);
        assert_eq!(field, "acme/comment.reply|IN_APP|clicked");
        assert_eq!(parse_counter_field(&field), Some((acme, key.clone())));
        assert_eq!(
            parse_counter_field(&key.field()),
            Some((Tenant::default_tenant(), key))
        );
        assert_eq!(CounterKey::parse("x|CARRIER_PIGEON|sent"), None);
        assert_eq!(CounterKey::parse("sent"), None);
    }
}
