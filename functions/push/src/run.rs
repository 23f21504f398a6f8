//! Running a job ([`crate::job::Job`]): [`run_job`] reads the user's view, runs each channel not
//! already handled ([`crate::channel`]), schedules the retries and writes the send records;
//! [`produce`] and [`acknowledge`] then publish the outcomes of finished jobs and mark them
//! acknowledged.
//!
//! Everything a job touches is in its user's Redis slot.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use shared::bus::OutgoingRecord;
use shared::model::Channel;
use shared::protocol::outcome::reason;
use shared::protocol::{DeliveryOutcome, Topic};
use shared::store::{PushLedger, SendRecord, StoreError, TenantScoped};
use shared::tenant::Tenant;

use crate::channel::run_channel;
use crate::job::{Job, PushTarget};
use crate::{Deps, Stats};

/// Jobs (a notification's channels for one user) handled at once per batch or drain round.
pub(crate) const JOB_CONCURRENCY: usize = 64;

/// A job's results: the outcome records to produce, the send records to acknowledge once they
/// are, and counts.
#[derive(Debug, Default)]
pub(crate) struct JobDone {
    /// The notification's user: every key the job touched is in their slot.
    pub(crate) user: String,
    pub(crate) tenant: Tenant,
    pub(crate) outputs: Vec<OutgoingRecord>,
    pub(crate) acks: Vec<(String, u32)>,
    pub(crate) stats: Stats,
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
pub(crate) async fn run_job(
    deps: &Deps,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<JobDone, StoreError> {
    let scoped;
    let deps = if job.tenant.is_default() {
        deps
    } else {
        scoped = deps.for_tenant(&job.tenant);
        &scoped
    };
    let n = &job.notification;
    let user = &n.user_id;
    let fields: Vec<String> = job
        .channels
        .iter()
        .map(|c| PushLedger::field(&job.send_key(), *c))
        .collect();
    let mut view = deps.ledger.view(user, &fields).await?;
    let mut done = JobDone {
        user: user.clone(),
        tenant: job.tenant.clone(),
        ..JobDone::default()
    };
    if n.seq <= view.erased_seq {
        // A notification from before the user's erase: nothing is sent, recorded or emitted.
        done.stats.erased += 1;
        return Ok(done);
    }

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
    if todo.contains(&Channel::Push) && !view.devices.is_empty() {
        // Only the devices whose token the user still holds (a token that moved to another user
        // may leave a stale copy here: see `DeviceBook`).
        view.devices = deps
            .devices
            .owned(user, std::mem::take(&mut view.devices))
            .await?;
    }
    let view = view;
    let results = join_all(
        todo.iter()
            .map(|c| async { (*c, run_channel(deps, job, *c, &view, now).await) }),
    )
    .await;

    let mut gone = 0;
    for (_, r) in &results {
        for target in &r.gone {
            let removed = match target {
                PushTarget::Subscription(s) => deps.contacts.remove_gone(user, s).await,
                PushTarget::Device(d) => deps.devices.remove_stored(user, d).await,
            };
            match removed {
                Ok(true) => gone += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(user, target = target.id(), error = %e, "could not remove a gone target")
                }
            }
        }
    }
    done.stats.gone += gone;
    // Retries before records: a crash in between redoes the job, and scheduling is idempotent.
    for (_, r) in &results {
        if let Some((retry, at)) = &r.retry {
            let entry = serde_json::to_string(retry).unwrap_or_default();
            deps.ledger
                .schedule(
                    user,
                    n.seq,
                    &retry.entry_id(),
                    &entry,
                    at.timestamp_millis(),
                )
                .await?;
        }
    }
    let mut records = Vec::new();
    for (channel, r) in &results {
        let field = PushLedger::field(&job.send_key(), *channel);
        let pending = r.outcome.map(|(status, why)| {
            // An escalation step's outcomes say so, unless a gate gave its own reason.
            let why = why.or(job.step.map(|_| reason::ESCALATED));
            done.stats.count(status);
            let outcome = DeliveryOutcome::new(n, *channel, status, why)
                .with_provider(r.provider)
                .in_tenant(&job.tenant);
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
        .record(user, n.seq, &records, Utc::now().timestamp_millis())
        .await?;
    Ok(done)
}

/// Produces every job's outputs; per job, whether all of its outputs were acknowledged.
pub(crate) async fn produce(deps: &Deps, done: &[&JobDone]) -> Vec<bool> {
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

/// Marks the acknowledged outcomes' send records acknowledged, per user (tenant, userId).
pub(crate) async fn acknowledge(deps: &Deps, acks: BTreeMap<(&Tenant, &str), Vec<(String, u32)>>) {
    for ((tenant, user), fields) in acks {
        if let Err(e) = deps
            .ledger
            .for_tenant(tenant)
            .acknowledge(user, &fields)
            .await
        {
            // The pending copies stay; only a redelivery would re-emit them.
            tracing::warn!(user, error = %e, "could not acknowledge send records");
        }
    }
}
