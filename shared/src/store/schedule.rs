//! [`ScheduleStore`]: scheduled jobs and their due-set, the source of truth of every send later;
//! [`EngagementStore`]: the hour-of-week engagement histograms that choose the best moment.
//!
//! A job lives in the `{sched}` slot (so every step is one script on one slot): its JSON in
//! `jobs`, its state in `state` (`scheduled` → `firing` → `sent`, or `scheduled` → `cancelled`),
//! its due time in `due`. Contracts:
//! - [`ScheduleStore::claim_due`] leases: a claimed job's due score moves to the lease's end, so
//!   a concurrent drain skips it and a crashed one's job comes due again;
//! - cancelling succeeds only while the job is `scheduled`: once claimed it will be sent;
//! - a settled (sent or cancelled) job keeps a small record (`{sender, sendAt}`) for
//!   [`SETTLED_KEEP`], for `GET /v1/scheduled/{id}`, then is removed by a later settle.
//!
//! A job either creates one notification ([`ScheduledJob`]) or starts a scheduled broadcast
//! ([`BroadcastStart`], under the id `broadcast:<broadcastId>`): one due-set and one claim for
//! both. A broadcast start is not a send of `/v1/scheduled`: those routes do not see it (the
//! broadcast's own status, in its slot, is what `GET /v1/broadcasts/{id}` shows and its cancel
//! changes).
//!
//! One slot holds every pending job: at 10,000 jobs a minute that is far from a Redis node's
//! limits; sharding the due-set (`{sched:<n>}`) is the seam if it ever is.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::schedule::{event_weight, hour_of_week, Histogram, ScheduleInfo, HOURS_PER_WEEK};

use super::inbox::NewNotification;
use super::keys::KeySpace;
use super::{scripts, RedisConn, StoreError};
use crate::tenant::Tenant;

/// How long a settled job's record answers `GET /v1/scheduled/{id}`.
pub const SETTLED_KEEP: Duration = Duration::from_secs(7 * 86_400);
/// How long a cancel-key set lives after its last job was added (beyond the 30 days a job may
/// wait).
const CANCEL_KEY_TTL: Duration = Duration::from_secs(31 * 86_400);
/// How long an engagement histogram lives without an event.
const ENGAGEMENT_TTL: Duration = Duration::from_secs(180 * 86_400);

/// A scheduled notification, as stored until it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledJob {
    /// The id the `202` answered, and the notification's id once sent.
    pub id: String,
    pub sender: String,
    /// The sender's (and recipient's) tenant; absent for the default tenant.
    #[serde(default, skip_serializing_if = "crate::tenant::is_default")]
    pub tenant: Tenant,
    pub send_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_key: Option<String>,
    /// The optimal choice, shown on the notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
    pub notification: NewNotification,
}

/// The job that starts a scheduled broadcast at its `sendAt`. What to send and whether it was
/// cancelled live in the broadcast's own state ([`crate::store::TopicStore`]), not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastStart {
    pub broadcast_id: String,
    pub sender: String,
    /// The broadcast's tenant; absent for the default tenant.
    #[serde(default, skip_serializing_if = "crate::tenant::is_default")]
    pub tenant: Tenant,
    pub send_at: DateTime<Utc>,
}

/// The prefix of a broadcast start's job id (a notification's job id is a bare UUID).
const BROADCAST_JOB_PREFIX: &str = "broadcast:";

impl BroadcastStart {
    /// Its id in the due-set: one per broadcast, so adding it again replaces it. A tenant's
    /// carries the tenant ([`crate::tenant::member`]): two tenants' broadcast ids may coincide.
    pub fn job_id(&self) -> String {
        crate::tenant::member(
            &self.tenant,
            &format!("{BROADCAST_JOB_PREFIX}{}", self.broadcast_id),
        )
    }
}

/// A claimed job: what firing it does.
#[derive(Debug, Clone, PartialEq)]
pub enum DueJob {
    Notification(ScheduledJob),
    BroadcastStart(BroadcastStart),
}

impl DueJob {
    /// Its id in the due-set.
    pub fn id(&self) -> String {
        match self {
            DueJob::Notification(job) => job.id.clone(),
            DueJob::BroadcastStart(start) => start.job_id(),
        }
    }

    /// The tenant whose keys firing it touches.
    pub fn tenant(&self) -> &Tenant {
        match self {
            DueJob::Notification(job) => &job.tenant,
            DueJob::BroadcastStart(start) => &start.tenant,
        }
    }
}

/// What a settled job keeps, and what a read needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobSummary {
    sender: String,
    #[serde(default, skip_serializing_if = "crate::tenant::is_default")]
    tenant: Tenant,
    send_at: DateTime<Utc>,
}

/// A job's state as senders see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduledState {
    /// Not sent yet (including while it is being sent).
    Scheduled,
    Sent,
    Cancelled,
}

/// One job as `GET /v1/scheduled/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledStatus {
    pub id: String,
    pub state: ScheduledState,
    pub send_at: DateTime<Utc>,
    /// Whether it can still be cancelled (`scheduled`, not yet claimed).
    pub cancellable: bool,
}

/// What [`ScheduleStore::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Scheduled,
    /// The Idempotency-Key named an earlier job for this recipient: its status.
    Replayed(ScheduledStatus),
}

/// The scheduled jobs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ScheduleStore {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

fn state_of(text: &str) -> Option<(ScheduledState, bool)> {
    match text {
        "scheduled" => Some((ScheduledState::Scheduled, true)),
        "firing" => Some((ScheduledState::Scheduled, false)),
        "sent" => Some((ScheduledState::Sent, false)),
        "cancelled" => Some((ScheduledState::Cancelled, false)),
        _ => None,
    }
}

fn summary(id: &str, job: &str) -> Result<JobSummary, StoreError> {
    serde_json::from_str(job).map_err(|e| StoreError::Corrupt(format!("scheduled job {id}: {e}")))
}

fn json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl ScheduleStore {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        ScheduleStore { conn, keys }
    }

    /// The tenant whose jobs this store adds and reads.
    pub fn tenant(&self) -> &Tenant {
        self.keys.tenant()
    }

    /// Stores `job`, due at its `send_at`. With `idempotency` (the recipient's share of the
    /// request's `Idempotency-Key`), a second add for the same (sender, key, recipient) stores
    /// nothing and answers the first job.
    pub async fn add(
        &self,
        job: &ScheduledJob,
        idempotency: Option<&str>,
        idempotency_ttl: Duration,
    ) -> Result<AddOutcome, StoreError> {
        let k = &self.keys;
        let user = &job.notification.user_id;
        let reply: Vec<String> = scripts::SCHEDULE_ADD
            .key(k.schedule_due())
            .key(k.schedule_jobs())
            .key(k.schedule_state())
            .key(k.schedule_cancel_key(&job.sender, job.cancel_key.as_deref().unwrap_or("")))
            .key(k.schedule_idempotency(&job.sender, idempotency.unwrap_or(""), user))
            .arg(&job.id)
            .arg(job.send_at.timestamp_millis())
            .arg(json(job))
            .arg(if job.cancel_key.is_some() { "1" } else { "" })
            .arg(if idempotency.is_some() { "1" } else { "" })
            .arg(idempotency_ttl.as_millis() as u64)
            .arg(CANCEL_KEY_TTL.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let text = |i: usize| -> Result<String, StoreError> {
            reply
                .get(i)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("schedule-add reply".into()))
        };
        match text(0)?.as_str() {
            "scheduled" => Ok(AddOutcome::Scheduled),
            "replay" => {
                let (id, state, stored) = (text(1)?, text(2)?, text(3)?);
                let (state, cancellable) = state_of(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("scheduled job state {state}")))?;
                Ok(AddOutcome::Replayed(ScheduledStatus {
                    send_at: summary(&id, &stored)?.send_at,
                    id,
                    state,
                    cancellable,
                }))
            }
            other => Err(StoreError::Corrupt(format!("schedule-add replied {other}"))),
        }
    }

    /// Stores the job starting a scheduled broadcast, due at its `send_at`. Adding it again (a
    /// retried request) replaces it: a start that already ran finds the broadcast started and
    /// changes nothing.
    pub async fn add_broadcast_start(&self, start: &BroadcastStart) -> Result<(), StoreError> {
        let k = &self.keys;
        let _: Vec<String> = scripts::SCHEDULE_ADD
            .key(k.schedule_due())
            .key(k.schedule_jobs())
            .key(k.schedule_state())
            // No cancel key and no Idempotency-Key share: the script leaves these two alone (the
            // api's broadcast id already names a retried request).
            .key(k.schedule_cancel_key(&start.sender, ""))
            .key(k.schedule_idempotency(&start.sender, "", ""))
            .arg(start.job_id())
            .arg(start.send_at.timestamp_millis())
            .arg(json(start))
            .arg("")
            .arg("")
            .arg(0)
            .arg(CANCEL_KEY_TTL.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The job `id` if `sender` scheduled it (`None` for another sender's, as for none, and for
    /// a broadcast start, which is not a scheduled send).
    pub async fn status(
        &self,
        sender: &str,
        id: &str,
    ) -> Result<Option<ScheduledStatus>, StoreError> {
        if id.starts_with(BROADCAST_JOB_PREFIX) {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let (job, state): (Option<String>, Option<String>) = redis::pipe()
            .hget(self.keys.schedule_jobs(), id)
            .hget(self.keys.schedule_state(), id)
            .query_async(&mut conn)
            .await?;
        let (Some(job), Some(state)) = (job, state) else {
            return Ok(None);
        };
        let stored = summary(id, &job)?;
        let Some((state, cancellable)) = state_of(&state) else {
            return Err(StoreError::Corrupt(format!("scheduled job state {state}")));
        };
        // The due-set is global: another tenant's job (even of a sender of the same name) is
        // not this store's.
        let own = stored.sender == sender && stored.tenant == *self.keys.tenant();
        Ok(own.then(|| ScheduledStatus {
            id: id.to_owned(),
            state,
            send_at: stored.send_at,
            cancellable,
        }))
    }

    /// Cancels `sender`'s job `id` if it is still `scheduled`. `None` when there is no such job
    /// of this sender; otherwise its status after the call (`sent`, or `scheduled` while being
    /// sent, when it was too late).
    pub async fn cancel(
        &self,
        sender: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<ScheduledStatus>, StoreError> {
        let Some(status) = self.status(sender, id).await? else {
            return Ok(None);
        };
        let cancel_key = self.cancel_key_of(id).await?;
        let states = self
            .settle(
                "cancelled",
                now_ms,
                &[(id, &status.send_at, sender)],
                self.keys
                    .schedule_cancel_key(sender, cancel_key.as_deref().unwrap_or("")),
            )
            .await?;
        let (state, cancellable) = states
            .first()
            .and_then(|s| state_of(s))
            .unwrap_or((status.state, false));
        Ok(Some(ScheduledStatus {
            state,
            cancellable,
            ..status
        }))
    }

    /// The cancel key of a pending job (settled jobs no longer keep it).
    async fn cancel_key_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        let job: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.schedule_jobs(), id)
            .await?;
        Ok(job
            .and_then(|j| serde_json::from_str::<ScheduledJob>(&j).ok())
            .and_then(|j| j.cancel_key))
    }

    /// Cancels every job of `sender` created with `cancel_key` that is still `scheduled`;
    /// returns their ids.
    pub async fn cancel_by_key(
        &self,
        sender: &str,
        cancel_key: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let set = self.keys.schedule_cancel_key(sender, cancel_key);
        let ids: Vec<String> = self.conn.clone().smembers(&set).await?;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let jobs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.schedule_jobs())
            .arg(&ids)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut pending = Vec::new();
        for (id, job) in ids.iter().zip(jobs) {
            if let Some(s) = job.and_then(|j| summary(id, &j).ok()) {
                pending.push((id.as_str(), s.send_at));
            }
        }
        let entries: Vec<(&str, &DateTime<Utc>, &str)> =
            pending.iter().map(|(id, at)| (*id, at, sender)).collect();
        let states = self.settle("cancelled", now_ms, &entries, set).await?;
        Ok(pending
            .iter()
            .zip(states)
            .filter(|(_, s)| s == "cancelled")
            .map(|((id, _), _)| (*id).to_owned())
            .collect())
    }

    /// Claims up to `limit` jobs due at `now_ms` for `lease`. A job that cannot be read back is
    /// logged and dropped from the due-set.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DueJob>, StoreError> {
        let flat: Vec<String> = scripts::SCHEDULE_CLAIM
            .key(self.keys.schedule_due())
            .key(self.keys.schedule_jobs())
            .key(self.keys.schedule_state())
            .arg(now_ms)
            .arg(lease.as_millis() as u64)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut jobs = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let parsed = if pair[0].starts_with(BROADCAST_JOB_PREFIX) {
                serde_json::from_str(&pair[1]).map(DueJob::BroadcastStart)
            } else {
                serde_json::from_str(&pair[1]).map(DueJob::Notification)
            };
            match parsed {
                Ok(job) => jobs.push(job),
                Err(e) => {
                    tracing::error!(id = pair[0], error = %e, "dropping an unreadable scheduled job");
                    let _: Result<(), _> = self
                        .conn
                        .clone()
                        .zrem(self.keys.schedule_due(), &pair[0])
                        .await;
                }
            }
        }
        Ok(jobs)
    }

    /// Marks a fired job sent (its notification exists, or its broadcast started), in its
    /// tenant.
    pub async fn finish(&self, job: &DueJob, now_ms: i64) -> Result<(), StoreError> {
        if job.tenant() != self.keys.tenant() {
            use crate::store::TenantScoped;
            return Box::pin(self.for_tenant(job.tenant()).finish(job, now_ms)).await;
        }
        let (send_at, sender, cancel_key) = match job {
            DueJob::Notification(j) => {
                (&j.send_at, &j.sender, j.cancel_key.as_deref().unwrap_or(""))
            }
            DueJob::BroadcastStart(b) => (&b.send_at, &b.sender, ""),
        };
        let id = job.id();
        self.settle(
            "sent",
            now_ms,
            &[(&id, send_at, sender)],
            self.keys.schedule_cancel_key(sender, cancel_key),
        )
        .await
        .map(drop)
    }

    /// The due time of the earliest job (claimed ones included: their lease's end), if any.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let first: Vec<(String, f64)> = self
            .conn
            .clone()
            .zrange_withscores(self.keys.schedule_due(), 0, 0)
            .await?;
        Ok(first.first().map(|(_, score)| *score as i64))
    }

    /// How many jobs are pending (scheduled or being fired).
    pub async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self.conn.clone().zcard(self.keys.schedule_due()).await?)
    }

    async fn settle(
        &self,
        to: &str,
        now_ms: i64,
        jobs: &[(&str, &DateTime<Utc>, &str)],
        cancel_key_set: String,
    ) -> Result<Vec<String>, StoreError> {
        let mut invocation = scripts::SCHEDULE_SETTLE.prepare_invoke();
        invocation
            .key(self.keys.schedule_due())
            .key(self.keys.schedule_jobs())
            .key(self.keys.schedule_state())
            .key(self.keys.schedule_done())
            .key(cancel_key_set)
            .arg(to)
            .arg(now_ms)
            .arg(SETTLED_KEEP.as_millis() as u64);
        for (id, send_at, sender) in jobs {
            invocation.arg(*id).arg(json(&JobSummary {
                sender: (*sender).to_owned(),
                tenant: self.keys.tenant().clone(),
                send_at: **send_at,
            }));
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }
}

/// The engagement histograms: per user (`{u:<id>}:engage`) and for everyone (`{engage}:global`);
/// a tenant's would sit between the two. Fields `h<hour of week>` hold decayed weights
/// ([`event_weight`]), `n` the number of events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngagementStore {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl EngagementStore {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        EngagementStore { conn, keys }
    }

    /// Adds one read or click by `user` at `at` to the user's and the global histogram (two
    /// slots, so two atomic steps; not transactional between them). The user's is checked
    /// against the erase marker in its own script: an event from before an erase adds nothing
    /// to the erased user's (`erase.rs`); the global one is an aggregate and keeps it.
    pub async fn record(&self, user: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let field = format!("h{}", hour_of_week(at));
        let weight = event_weight(at);
        let ttl = ENGAGEMENT_TTL.as_secs() as i64;
        let keys = self.keys.user(user);
        let _: i64 = scripts::ENGAGEMENT_RECORD
            .key(keys.engagement())
            .key(keys.erased())
            .arg(&field)
            .arg(weight)
            .arg(ttl)
            .arg(at.timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let key = self.keys.engagement_global();
        let _: () = redis::pipe()
            .atomic()
            .hincr(&key, &field, weight)
            .ignore()
            .hincr(&key, "n", 1)
            .ignore()
            .expire(&key, ttl)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The user's histogram and the global one.
    pub async fn histograms(&self, user: &str) -> Result<(Histogram, Histogram), StoreError> {
        let mut conn = self.conn.clone();
        let own: HashMap<String, String> = conn.hgetall(self.keys.user(user).engagement()).await?;
        let global: HashMap<String, String> = conn.hgetall(self.keys.engagement_global()).await?;
        Ok((parse_histogram(&own), parse_histogram(&global)))
    }
}

fn parse_histogram(fields: &HashMap<String, String>) -> Histogram {
    let mut h = Histogram::default();
    for (field, value) in fields {
        if field == "n" {
            h.events = value.parse().unwrap_or(0);
        } else if let Some(hour) = field
            .strip_prefix('h')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < HOURS_PER_WEEK)
        {
            h.weights[hour] = value.parse().unwrap_or(0.0);
        }
    }
    h
}
