//! The Kafka batch from `push-notifications`: one job per new notification that asks for an
//! off-app channel, run concurrently (its escalation steps planned, [`crate::escalate`]; a
//! digest item's channels planned for when its window closes instead, [`crate::digest`]), and
//! one badge update per user whose unread count a change moved ([`crate::badge`]); the outcomes
//! produced at once; a record whose job, plan or badge update hit an infrastructure error, or
//! whose outcomes Kafka did not acknowledge, is retried from its offset.

use std::collections::BTreeMap;

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use shared::model::Notification;
use shared::protocol::{Envelope, Event};
use shared::store::StoreError;
use shared::tenant::Tenant;
use shared::trigger::{self, BatchResponse};

use crate::badge::update_badge;
use crate::job::Job;
use crate::run::{acknowledge, produce, run_job, JobDone, JOB_CONCURRENCY};
use crate::{digest, escalate};
use shared::trigger::Counters;

use crate::{Deps, Stats};

/// Handles every record of `event` (as if at `now`) and says which partitions to retry from
/// where.
pub async fn process_batch(
    deps: &Deps,
    event: &KafkaEvent,
    now: DateTime<Utc>,
) -> (BatchResponse, Stats) {
    let mut stats = Stats::default();
    let mut jobs: Vec<(String, i64, Job)> = Vec::new();
    let mut plans: Vec<(String, i64, Tenant, Notification)> = Vec::new();
    // The users (tenant, userId) whose badge a change moved, each with the records that asked
    // (one update each).
    let mut badges: BTreeMap<(Tenant, String), Vec<(String, i64)>> = BTreeMap::new();
    for batch in trigger::partitions(event) {
        for record in &batch.records {
            stats.records += 1;
            match trigger::envelope(record) {
                Ok(Envelope {
                    event: Event::NotificationCreated { notification, .. },
                    tenant,
                    ..
                }) => {
                    // Escalation steps and a digest item's close are planned; the rest runs now.
                    let planned = notification.escalate.is_some() || notification.digest.is_some();
                    match Job::from_notification(&notification) {
                        Some(_) if notification.digest.is_some() => {}
                        Some(job) => jobs.push((
                            batch.key.to_owned(),
                            record.offset,
                            Job {
                                tenant: tenant.clone(),
                                ..job
                            },
                        )),
                        None if planned => {}
                        None => stats.ignored += 1,
                    }
                    if planned {
                        plans.push((batch.key.to_owned(), record.offset, tenant, notification));
                    }
                }
                Ok(envelope) if envelope.changes_unread() => badges
                    .entry((envelope.tenant, envelope.user_id))
                    .or_default()
                    .push((batch.key.to_owned(), record.offset)),
                Ok(_) => stats.ignored += 1,
                Err(why) => {
                    stats.poison += 1;
                    batch.log_poison(record, &why);
                }
            }
        }
    }
    let planned: Vec<(String, i64, Result<(), StoreError>)> = stream::iter(plans)
        .map(|(partition, offset, tenant, n)| async move {
            let deps = &deps.for_tenant(&tenant);
            let planned = match escalate::plan(deps, &n).await {
                Ok(()) => digest::plan(deps, &n).await,
                Err(e) => Err(e),
            };
            (partition, offset, planned)
        })
        .buffer_unordered(JOB_CONCURRENCY)
        .collect()
        .await;
    let results: Vec<(String, i64, Result<JobDone, StoreError>)> = stream::iter(jobs)
        .map(|(partition, offset, job)| async move {
            let done = run_job(deps, &job, now).await;
            (partition, offset, done)
        })
        .buffer_unordered(JOB_CONCURRENCY)
        .collect()
        .await;
    let badged = stream::iter(badges)
        .map(|((tenant, user), records)| async move {
            let done = update_badge(&deps.for_tenant(&tenant), &user).await;
            (user, records, done)
        })
        .buffer_unordered(JOB_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut retry_from: BTreeMap<String, i64> = BTreeMap::new();
    let mut fail = |partition: &str, offset: i64| {
        let e = retry_from.entry(partition.to_owned()).or_insert(offset);
        *e = (*e).min(offset);
    };
    for (partition, offset, result) in planned {
        if let Err(e) = result {
            tracing::warn!(partition, offset, error = %e, "could not plan the escalation; retrying from this record");
            stats.retried += 1;
            fail(&partition, offset);
        }
    }
    for (user, records, done) in badged {
        match done {
            Ok(done) => stats.count_badge(&done),
            Err(e) => {
                tracing::warn!(user, error = %e, "infrastructure failure on a badge update; retrying its records");
                stats.retried += records.len();
                for (partition, offset) in records {
                    fail(&partition, offset);
                }
            }
        }
    }
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
    let mut acks: BTreeMap<(&Tenant, &str), Vec<(String, u32)>> = BTreeMap::new();
    for ((partition, offset, done), ok) in finished.iter().zip(acked) {
        stats.merge(&done.stats);
        if ok {
            acks.entry((&done.tenant, done.user.as_str()))
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
