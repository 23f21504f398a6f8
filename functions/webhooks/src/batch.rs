//! A Kafka batch: every record's messages queued for the webhooks of the record's tenant that want
//! them, partition by partition in offset order; then the queues this batch was first in are
//! worked, concurrently.
//!
//! A partition of a topic whose events no registered webhook wants (every partition, while none
//! is registered) is counted and skipped without decoding its records: it would queue nothing,
//! and a poison record in it harms no one.

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use shared::protocol::Topic;
use shared::store::Enqueued;
use shared::trigger::{self, BatchResponse, Counters};
use shared::webhooks::{Webhook, WebhookEventType};

use crate::{decode, queue, registries, Deps, Registry, Stats, QUEUE_CONCURRENCY, QUEUE_LEASE};

/// Queues and sends the messages of `event`. A Redis failure while queueing reports the record's
/// partition from it (everything before it is queued; the retry finds those in the ledger).
pub async fn process_batch(
    deps: &Deps,
    event: &KafkaEvent,
    now: DateTime<Utc>,
) -> (BatchResponse, Stats) {
    let mut stats = Stats::default();
    let mut response = BatchResponse::default();
    let partitions = trigger::partitions(event);
    let registries = match registries(deps).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the webhook registry; retrying the batch");
            for p in &partitions {
                if let Some(first) = p.records.first() {
                    response.fail_from(p.key, first.offset);
                }
            }
            return (response, stats);
        }
    };
    let mut owned: Vec<(&Registry, &Webhook, String, String)> = Vec::new();
    for partition in &partitions {
        let topic = partition
            .records
            .first()
            .and_then(|r| r.topic.as_deref())
            .and_then(|t| Topic::from_name(t, &deps.settings.topic_suffix));
        if let Some(kinds) = topic.map(decode::kinds).filter(|k| !k.is_empty()) {
            let wanted = |k: &WebhookEventType| {
                registries
                    .values()
                    .any(|r| r.hooks.iter().any(|h| h.wants(*k)))
            };
            if !kinds.iter().any(wanted) {
                stats.records += partition.records.len();
                continue;
            }
        }
        'records: for record in &partition.records {
            stats.records += 1;
            let (registry, messages) = match decode::messages(record, &deps.settings.topic_suffix) {
                Ok((tenant, messages)) => match registries.get(&tenant) {
                    Some(registry) => (registry, messages),
                    None => continue,
                },
                Err(why) => {
                    partition.log_poison(record, &why);
                    stats.poison += 1;
                    continue;
                }
            };
            for message in &messages {
                for hook in registry.hooks.iter().filter(|h| h.wants(message.kind)) {
                    match registry
                        .store
                        .enqueue(
                            &hook.id,
                            message,
                            now.timestamp_millis(),
                            QUEUE_LEASE,
                            deps.settings.retention,
                        )
                        .await
                    {
                        Ok(Enqueued::Known) => stats.redelivered += 1,
                        Ok(Enqueued::Waiting) => stats.queued += 1,
                        Ok(Enqueued::Owner) => {
                            stats.queued += 1;
                            owned.push((
                                registry,
                                hook,
                                message.notification_id.clone(),
                                message.id.clone(),
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(partition = partition.key, offset = record.offset, error = %e, "cannot queue a webhook message; retrying the partition from it");
                            response.fail_from(partition.key, record.offset);
                            break 'records;
                        }
                    }
                }
            }
        }
    }
    let worked: Vec<Stats> = stream::iter(owned)
        .map(|(registry, hook, notification, head)| async move {
            match queue::work(deps, &registry.store, hook, &notification, head).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(webhook = hook.id, error = %e, "webhook queue interrupted; the retry schedule takes it over");
                    Stats {
                        interrupted: 1,
                        ..Stats::default()
                    }
                }
            }
        })
        .buffer_unordered(QUEUE_CONCURRENCY)
        .collect()
        .await;
    for s in &worked {
        stats.merge(s);
    }
    (response, stats)
}
