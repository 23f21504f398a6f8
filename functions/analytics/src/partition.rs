//! One partition of a batch: decode its records, find the engagement types, then write its
//! histories, its counts and its recipients concurrently.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use shared::config::AnalyticsSettings;
use shared::model::OutcomeStatus;
use shared::protocol::Topic;
use shared::store::analytics::{HistoryWrite, ShardBatch};
use shared::store::TenantScoped;
use shared::tenant::Tenant;
use shared::trigger::{PartitionBatch, RetryFrom};

use crate::decode::{decode, Item, Poison};
use crate::types::resolve_types;
use crate::{BatchStats, Deps};

/// One partition: decode, find the engagement types, then write its histories, its counts and
/// its recipients concurrently.
pub(crate) async fn count_partition(
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
    let mut items = decode_records(batch, topic, &topic_name, &mut stats);
    // Not an input topic: every record was poison; nothing to count or retry.
    if topic.is_none() {
        return (stats, retry);
    }

    resolve_types(deps, &mut items, &mut retry).await;

    let shard = format!("{cluster}:{topic_name}:{partition}");
    let shard_batch = shard_batch(batch, &items, shard, retry.0);

    // Histories, one per notification (all of a notification's records share a partition).
    let by_notification = by_notification(&items);
    let groups: Vec<&Vec<&Item>> = by_notification.values().collect();
    let writes: Vec<HistoryWrite<'_>> = by_notification
        .iter()
        .map(|(id, group)| HistoryWrite {
            notification_id: id,
            user_id: &group[0].user_id,
            tenant: &group[0].tenant,
            kind: group
                .iter()
                .find(|i| i.kind_is_authoritative)
                .and_then(|i| i.kind.as_deref()),
            entries: group.iter().flat_map(|i| &i.entries).collect(),
            seq: group.iter().filter_map(|i| i.seq).min(),
            at_ms: group.iter().map(|i| i.at_ms).min().unwrap_or_default(),
        })
        .collect();
    let recipients = recipients(&items);
    let registered: Vec<String> = shard_batch.iter().map(|b| b.shard.clone()).collect();

    let count = async {
        match &shard_batch {
            Some(b) => Some(deps.store.count(b).await),
            None => None,
        }
    };
    // Each tenant's recipients in its own slot; the shards are registered with the default's.
    let recipients_written = async {
        let mut registered = Some(registered);
        for (tenant, recipients) in &recipients {
            let shards = match tenant.is_default() {
                true => registered.take().unwrap_or_default(),
                false => Vec::new(),
            };
            deps.store
                .for_tenant(tenant)
                .add_recipients(&shards, recipients)
                .await?;
        }
        match registered {
            Some(shards) => deps.store.add_recipients(&shards, &BTreeMap::new()).await,
            None => Ok(()),
        }
    };
    let (histories, counted, recipients_written) = futures::join!(
        deps.store.append_histories(&writes),
        count,
        recipients_written
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
            if c.counted == b.records.len() as u64 {
                feed_histograms(deps, &items, retry.0).await;
            }
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

/// Adds every read and click below `cut` to the engagement histograms that time
/// `sendAt: "optimal"` (`shared::schedule`). Only for a batch counted for the first time, so a
/// redelivery adds nothing (a batch partly counted before adds nothing either: a few samples
/// fewer, never one twice). A failed write is logged and skipped: the histograms are estimates.
async fn feed_histograms(deps: &Deps, items: &[Item], cut: Option<i64>) {
    let engagement = deps.store.engagement();
    for item in items
        .iter()
        .filter(|i| i.engagement && cut.is_none_or(|cut| i.offset < cut))
    {
        let Some(entry) = item
            .entries
            .iter()
            .find(|e| matches!(e.status, OutcomeStatus::Read | OutcomeStatus::Clicked))
        else {
            continue;
        };
        let recorded = engagement
            .for_tenant(&item.tenant)
            .record(&item.user_id, entry.at)
            .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not add to an engagement histogram");
        }
    }
}

/// The items whose type is known, per notification.
fn by_notification(items: &[Item]) -> BTreeMap<&str, Vec<&Item>> {
    let mut groups: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in items.iter().filter(|i| i.kind.is_some()) {
        groups.entry(&item.notification_id).or_default().push(item);
    }
    groups
}

/// Recipients: the users of delivery outcomes, per tenant and day.
fn recipients(items: &[Item]) -> BTreeMap<&Tenant, BTreeMap<NaiveDate, BTreeSet<&str>>> {
    let mut recipients: BTreeMap<&Tenant, BTreeMap<NaiveDate, BTreeSet<&str>>> = BTreeMap::new();
    for item in items.iter().filter(|i| !i.engagement) {
        recipients
            .entry(&item.tenant)
            .or_default()
            .entry(item.day)
            .or_default()
            .insert(&item.user_id);
    }
    recipients
}

/// What the partition's shard counts: its records up to `cut`, the first record whose type
/// could not be resolved (all of them without one); `None` when that leaves none.
fn shard_batch<'a>(
    batch: &PartitionBatch<'_>,
    items: &'a [Item],
    shard: String,
    cut: Option<i64>,
) -> Option<ShardBatch<'a>> {
    let below_cut = |offset: i64| cut.is_none_or(|cut| offset < cut);
    batch
        .records
        .iter()
        .map(|r| r.offset)
        .filter(|o| below_cut(*o))
        .max()
        .map(|last_offset| ShardBatch {
            shard,
            last_offset,
            records: items
                .iter()
                .filter(|i| below_cut(i.offset))
                .map(|i| (i.offset, i.tallies()))
                .collect(),
        })
}

/// Every record's item; poison records logged (`metric=PoisonRecords`) and counted, records with
/// nothing to count counted as ignored. `topic` is `None` when the partition's topic is not an
/// input: then every record is poison.
fn decode_records(
    batch: &PartitionBatch<'_>,
    topic: Option<Topic>,
    topic_name: &str,
    stats: &mut BatchStats,
) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::with_capacity(batch.records.len());
    for record in &batch.records {
        stats.records += 1;
        let decoded = match topic {
            Some(topic) => decode(topic, record),
            None => Err(Poison::Topic(topic_name.to_owned())),
        };
        match decoded {
            Ok(Some(item)) => items.push(item),
            Ok(None) => stats.ignored += 1,
            Err(why) => {
                stats.poison += 1;
                batch.log_poison(record, &why);
            }
        }
    }
    items
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
