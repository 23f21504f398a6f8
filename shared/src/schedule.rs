//! Scheduled sends: `sendAt` (a moment, or `"optimal"` within a window) on create, the choice of
//! the best moment from engagement histograms, and the firing of due schedules.
//!
//! Design and AWS counterpart: `docs/scheduling.md`. In short:
//! - a create with `sendAt` stores a job ([`ScheduledJob`]) and answers `202`; the job is
//!   invisible to the recipient (no inbox item, no count, no frame) until it fires;
//! - the due-set in Redis is the source of truth ([`crate::store::ScheduleStore`]); a ticker
//!   ([`Scheduler::run_until`], the `scheduler` function, invoked every minute) drains it for its
//!   minute, polling every `SCHEDULER_POLL_MS`;
//! - firing is exactly once: a job is claimed with a lease (a crashed firing comes due again when
//!   the lease ends), created in the inbox under its fixed notification id with an idempotency
//!   record (`scheduled:<id>`, so a second firing replays instead of creating), published through
//!   the outbox like every create ([`crate::outbox::Publisher`]), then marked sent;
//! - a scheduled broadcast is one job of the same due-set ([`BroadcastStart`]): firing it starts
//!   the broadcast (`scheduled` → `queued`, one idempotent script on the broadcast) and produces
//!   its chunk records, exactly as an immediate broadcast's `202` does; a start that runs twice
//!   finds the broadcast started (or still `queued`: then it produces the chunks again, which the
//!   fan-out runs once per recipient however often they arrive), and a cancelled one is skipped.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::SchedulerSettings;
use crate::error::FieldError;
use crate::outbox::Publisher;
use crate::protocol::BroadcastChunk;
use crate::store::inbox::IdempotencyClaim;
use crate::store::{
    BroadcastStart, BroadcastStatus, CreateOutcome, DueJob, InboxStore, ScheduleStore,
    ScheduledJob, StoreError, TopicStore,
};
use crate::trigger::Counters;

/// The furthest ahead a `sendAt` may be.
pub const MAX_AHEAD: chrono::Duration = chrono::Duration::days(30);
/// The longest `within` of `sendAt: "optimal"`, and its default.
pub const WITHIN_MAX: chrono::Duration = chrono::Duration::days(7);
pub const WITHIN_DEFAULT: chrono::Duration = chrono::Duration::hours(24);
/// A histogram with fewer events than this is not trusted: fall back to the next one.
pub const MIN_EVENTS: u64 = 20;
/// The longest `cancelKey`, in bytes.
pub const CANCEL_KEY_MAX_BYTES: usize = 128;
/// Hours in a week: the histogram's buckets (Monday 00:00 UTC is bucket 0).
pub const HOURS_PER_WEEK: usize = 168;
/// An hour is good enough to send in when it weighs at least this share of the window's
/// heaviest hour (the earliest such hour wins).
pub const PEAK_SHARE: f64 = 0.5;
/// The half-life of an engagement event's weight in the histogram.
pub const HALF_LIFE: chrono::Duration = chrono::Duration::days(14);

/// Why an optimal send was scheduled when it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The recipient's own histogram (at least [`MIN_EVENTS`] reads and clicks).
    UserHistogram,
    /// Every user's histogram (the recipient had too few events).
    GlobalHistogram,
    /// No histogram had enough events: sent now.
    NoData,
}

/// The moment an optimal send chose, and why; shown on the notification as `schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    pub send_at: DateTime<Utc>,
    pub reason: Reason,
}

/// When a create asked to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(DateTime<Utc>),
    /// The best moment between now and now + `within`.
    Optimal {
        within: chrono::Duration,
    },
}

/// The scheduling fields of a create, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduling {
    pub when: When,
    pub cancel_key: Option<String>,
}

/// Checks a create's `sendAt`, `within` and `cancelKey` at `now`. `Ok(None)`: send now (no
/// `sendAt`). Every violation names its field.
pub fn check(
    send_at: Option<&str>,
    within: Option<&str>,
    cancel_key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Scheduling>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let when = match send_at {
        None => None,
        Some("optimal") => match within.map(parse_duration) {
            None => Some(When::Optimal {
                within: WITHIN_DEFAULT,
            }),
            Some(Some(d)) if d > chrono::Duration::zero() && d <= WITHIN_MAX => {
                Some(When::Optimal { within: d })
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "within",
                    "must be a duration like 90m, 24h or 7d (s, m, h or d), above 0 and at most 7d",
                ));
                None
            }
        },
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Err(_) => {
                errors.push(FieldError::new(
                    "sendAt",
                    "must be an RFC 3339 date-time or \"optimal\"",
                ));
                None
            }
            Ok(at) => {
                let at = at.with_timezone(&Utc);
                if at <= now {
                    errors.push(FieldError::new("sendAt", "must be in the future"));
                } else if at > now + MAX_AHEAD {
                    errors.push(FieldError::new("sendAt", "must be at most 30 days ahead"));
                }
                Some(When::At(at))
            }
        },
    };
    if within.is_some() && send_at != Some("optimal") {
        errors.push(FieldError::new("within", "only with sendAt: \"optimal\""));
    }
    if let Some(key) = cancel_key {
        if send_at.is_none() {
            errors.push(FieldError::new("cancelKey", "only with sendAt"));
        } else if key.is_empty()
            || key.len() > CANCEL_KEY_MAX_BYTES
            || crate::limits::first_forbidden_char(key, false).is_some()
        {
            errors.push(FieldError::new(
                "cancelKey",
                format!(
                    "must be 1–{CANCEL_KEY_MAX_BYTES} bytes without control characters or \
                     line/paragraph separators"
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(when.map(|when| Scheduling {
        when,
        cancel_key: cancel_key.map(str::to_owned),
    }))
}

/// `<n><unit>` with unit `s`, `m`, `h` or `d`; `None` when malformed or absurdly large.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let unit = text.chars().last()?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    match unit {
        's' => Some(chrono::Duration::seconds(n)),
        'm' => Some(chrono::Duration::minutes(n)),
        'h' => Some(chrono::Duration::hours(n)),
        'd' => Some(chrono::Duration::days(n)),
        _ => None,
    }
}

/// The hour of the week of `at` in UTC: 0 is Monday 00:00–01:00.
pub fn hour_of_week(at: DateTime<Utc>) -> usize {
    at.weekday().num_days_from_monday() as usize * 24 + at.hour() as usize
}

/// The weight an engagement event at `at` adds to its bucket: forward decay,
/// `2^((at − epoch) / HALF_LIFE)`, so an event counts twice as much as one a half-life older
/// and the stored weights never need rewriting (only their ratios matter). Doubles hold this
/// for centuries past the epoch.
pub fn event_weight(at: DateTime<Utc>) -> f64 {
    let epoch = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single();
    let since = epoch.map_or(0, |e| (at - e).num_seconds()) as f64;
    (since / HALF_LIFE.num_seconds() as f64).exp2()
}

/// One engagement histogram: decayed weight per hour of the week, and how many events fed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub weights: Vec<f64>,
    pub events: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            weights: vec![0.0; HOURS_PER_WEEK],
            events: 0,
        }
    }
}

impl Histogram {
    /// Adds one event at `at` (what the store does in Redis; for backtests and tests).
    pub fn add(&mut self, at: DateTime<Utc>) {
        self.weights[hour_of_week(at)] += event_weight(at);
        self.events += 1;
    }

    /// The earliest moment in `[now, now + within]` whose hour of the week weighs at least
    /// [`PEAK_SHARE`] of the heaviest one there: `now` itself or the start of a later hour;
    /// `None` when every candidate weighs 0. Not the heaviest hour itself: a user who reads in
    /// the morning and, a little more, in the evening is better served at the next morning than
    /// at the evening (the backtest measures both the wait in the inbox and the total wait).
    pub fn best_moment(
        &self,
        now: DateTime<Utc>,
        within: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        let end = now + within;
        let hour_start = now
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        let candidates = std::iter::once(now).chain(
            (1..)
                .map(|k| hour_start + chrono::Duration::hours(k))
                .take_while(|t| *t <= end),
        );
        let weighed: Vec<(DateTime<Utc>, f64)> = candidates
            .map(|at| {
                let weight = self.weights.get(hour_of_week(at)).copied().unwrap_or(0.0);
                (at, weight)
            })
            .collect();
        let heaviest = weighed.iter().map(|(_, w)| *w).fold(0.0, f64::max);
        if heaviest <= 0.0 {
            return None;
        }
        weighed
            .into_iter()
            .find(|(_, w)| *w >= heaviest * PEAK_SHARE)
            .map(|(at, _)| at)
    }
}

/// Chooses when to send within `within` of `now`: the recipient's histogram when it has
/// [`MIN_EVENTS`], else the global one (the seam for a tenant's histogram, once tenants exist,
/// is between the two), else now.
pub fn choose(
    user: &Histogram,
    global: &Histogram,
    now: DateTime<Utc>,
    within: chrono::Duration,
) -> ScheduleInfo {
    let pick = |h: &Histogram, reason| {
        (h.events >= MIN_EVENTS)
            .then(|| h.best_moment(now, within))
            .flatten()
            .map(|send_at| ScheduleInfo { send_at, reason })
    };
    pick(user, Reason::UserHistogram)
        .or_else(|| pick(global, Reason::GlobalHistogram))
        .unwrap_or(ScheduleInfo {
            send_at: now,
            reason: Reason::NoData,
        })
}

/// What one firing round or run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FireReport {
    /// Jobs claimed.
    pub claimed: usize,
    /// Notifications created (a job fired again after a crash replays instead).
    pub created: usize,
    /// Jobs whose notification already existed (fired before, not marked sent).
    pub replayed: usize,
    /// Jobs left for their lease to end (a Redis failure).
    pub failed: usize,
    /// Jobs dropped because their recipient was erased after they were scheduled.
    pub erased: usize,
    /// Scheduled broadcasts started now (their chunk records produced).
    pub broadcasts_started: usize,
    /// Broadcast starts that found their broadcast cancelled, gone, or started already.
    pub broadcasts_skipped: usize,
}

crate::counters!(FireReport {
    claimed,
    created,
    replayed,
    erased,
    failed,
    broadcasts_started,
    broadcasts_skipped
});

impl crate::trigger::Report for FireReport {
    fn log(&self) {
        tracing::info!(
            claimed = self.claimed,
            created = self.created,
            replayed = self.replayed,
            failed = self.failed,
            broadcasts_started = self.broadcasts_started,
            broadcasts_skipped = self.broadcasts_skipped,
            "scheduler run"
        );
    }

    fn metrics(&self) -> Vec<crate::metrics::MetricSet> {
        vec![crate::metrics::MetricSet::new()
            .count("ScheduledFired", self.created)
            .count("ScheduledReplayed", self.replayed)
            .count("ScheduledFailed", self.failed)
            .count("ScheduledBroadcastsStarted", self.broadcasts_started)]
    }
}

/// Fires due schedules. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inbox: InboxStore,
    schedules: ScheduleStore,
    topics: TopicStore,
    publisher: Publisher,
    settings: SchedulerSettings,
}

/// Why a scheduled broadcast did not start (it is tried again after its lease).
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka did not take the broadcast's chunks")]
    Kafka(#[source] crate::bus::BusError),
}

/// Jobs claimed per round, and fired concurrently within a round.
const ROUND: usize = 500;
const CONCURRENCY: usize = 32;

impl Scheduler {
    pub fn new(
        inbox: InboxStore,
        schedules: ScheduleStore,
        topics: TopicStore,
        publisher: Publisher,
        settings: SchedulerSettings,
    ) -> Self {
        Scheduler {
            inbox,
            schedules,
            topics,
            publisher,
            settings,
        }
    }

    /// The same scheduler acting on `tenant`'s keys: what firing one of `tenant`'s jobs runs
    /// with (the due-set is global; each job names its tenant).
    fn for_tenant(&self, tenant: &crate::tenant::Tenant) -> Scheduler {
        use crate::store::TenantScoped;
        Scheduler {
            inbox: self.inbox.for_tenant(tenant),
            schedules: self.schedules.for_tenant(tenant),
            topics: self.topics.for_tenant(tenant),
            publisher: self.publisher.clone(),
            settings: self.settings,
        }
    }

    /// One round: claims up to [`ROUND`] jobs due at `now` (each leased for `SCHEDULER_LEASE_MS`),
    /// creates each one's notification under its fixed id, publishes the changes and marks the
    /// jobs sent. A job whose create failed keeps its lease and comes due again after it; one
    /// fired before (its create committed, its finish did not) replays and is marked sent. A
    /// broadcast start among them starts its broadcast (`start_broadcast`).
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<FireReport, StoreError> {
        let jobs = self
            .schedules
            .claim_due(now.timestamp_millis(), self.settings.lease, ROUND)
            .await?;
        let mut report = FireReport {
            claimed: jobs.len(),
            ..FireReport::default()
        };
        let mut notifications = Vec::new();
        let mut starts = Vec::new();
        for job in jobs {
            match job {
                DueJob::Notification(job) => notifications.push(job),
                DueJob::BroadcastStart(start) => starts.push(start),
            }
        }
        let fired: Vec<(ScheduledJob, Result<Option<CreateOutcome>, StoreError>)> =
            stream::iter(notifications)
                .map(|job| async move {
                    let outcome = self.create(&job).await;
                    (job, outcome)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut changes = Vec::new();
        let mut done = Vec::new();
        for (job, outcome) in fired {
            match outcome {
                Ok(None) => {
                    report.erased += 1;
                    done.push(DueJob::Notification(job));
                }
                Ok(Some(CreateOutcome::Created { change, .. })) => {
                    report.created += 1;
                    changes.push(change);
                    done.push(DueJob::Notification(job));
                }
                Ok(Some(CreateOutcome::Replayed(_))) => {
                    report.replayed += 1;
                    done.push(DueJob::Notification(job));
                }
                Ok(other) => {
                    // The record under `scheduled:<id>` belongs to nothing else, and no limit is
                    // passed: neither can happen. Leave the job to its lease and say so.
                    tracing::error!(
                        id = job.id,
                        ?other,
                        "scheduled create answered unexpectedly"
                    );
                    report.failed += 1;
                }
                Err(e) => {
                    tracing::warn!(id = job.id, error = %e, "scheduled create failed; it comes due again after its lease");
                    report.failed += 1;
                }
            }
        }
        for start in starts {
            match self.start_broadcast(&start).await {
                Ok(true) => report.broadcasts_started += 1,
                Ok(false) => report.broadcasts_skipped += 1,
                Err(e) => {
                    tracing::warn!(broadcast = start.broadcast_id, error = %e, "a scheduled broadcast did not start; it comes due again after its lease");
                    report.failed += 1;
                    continue;
                }
            }
            done.push(DueJob::BroadcastStart(start));
        }
        self.publisher.publish_or_defer(&changes).await;
        for job in &done {
            if let Err(e) = self.schedules.finish(job, now.timestamp_millis()).await {
                tracing::warn!(id = job.id(), error = %e, "could not mark a fired job sent; it replays after its lease");
            }
        }
        Ok(report)
    }

    /// The job's notification, created in its recipient's inbox like any create (outbox mark
    /// first), under its fixed id and the idempotency record `scheduled:<id>`; `None` when the
    /// recipient was erased after the send was scheduled.
    async fn create(&self, job: &ScheduledJob) -> Result<Option<CreateOutcome>, StoreError> {
        if job.tenant != *self.inbox.tenant() {
            return Box::pin(self.for_tenant(&job.tenant).create(job)).await;
        }
        // A send scheduled before its recipient was erased is dropped, not created in the new
        // inbox (the id is a UUIDv7: its time is when the send was scheduled). Checked just
        // before the create, not in its script: an erase landing between the two lets this one
        // send through (docs/privacy.md).
        let scheduled_ms = uuid::Uuid::parse_str(&job.id)
            .ok()
            .and_then(|u| u.get_timestamp())
            .map_or(i64::MAX, |t| {
                let (secs, nanos) = t.to_unix();
                (secs as i64) * 1000 + i64::from(nanos / 1_000_000)
            });
        if scheduled_ms <= self.inbox.erased_at_ms(&job.notification.user_id).await? {
            return Ok(None);
        }
        let marked = self.inbox.mark_for_create(job.notification.clone()).await?;
        let claim = IdempotencyClaim {
            key: format!("scheduled:{}", job.id),
            body_hash: job.id.clone(),
        };
        self.inbox
            .create_with_id(
                marked,
                job.id.clone(),
                job.schedule.clone(),
                &job.sender,
                Some(&claim),
                None,
            )
            .await
            .map(Some)
    }

    /// Starts a scheduled broadcast: `scheduled` → `queued` (idempotent), then, while it is
    /// `queued`, produces its chunk records as an immediate broadcast's `202` does. True when
    /// it produced them; false when the broadcast was cancelled, is gone, or is already running
    /// or done. An error (Redis, or Kafka not taking the records) leaves the job to its lease.
    async fn start_broadcast(&self, start: &BroadcastStart) -> Result<bool, StartError> {
        if start.tenant != *self.inbox.tenant() {
            return Box::pin(self.for_tenant(&start.tenant).start_broadcast(start)).await;
        }
        let id = start.broadcast_id.as_str();
        if self.topics.start_scheduled(id).await? != Some(BroadcastStatus::Queued) {
            return Ok(false);
        }
        let sent = self
            .publisher
            .bus()
            .send(&BroadcastChunk::all_records(&start.tenant, id))
            .await;
        if let Some(Err(e)) = sent.into_iter().find(Result::is_err) {
            return Err(StartError::Kafka(e));
        }
        Ok(true)
    }

    /// Fires due jobs until `until`: a full round goes on at once, otherwise the next round
    /// waits `SCHEDULER_POLL_MS` (less when the next job is due sooner). A failed round is
    /// logged and retried at the next poll.
    pub async fn run_until(&self, until: Instant) -> FireReport {
        let mut total = FireReport::default();
        loop {
            let round = match self.fire_due(Utc::now()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the due-set");
                    FireReport::default()
                }
            };
            let full = round.claimed == ROUND;
            total.merge(&round);
            let now = Instant::now();
            if now >= until {
                return total;
            }
            if full {
                continue;
            }
            let mut wait = self.settings.poll.min(until - now);
            if let Ok(Some(next_ms)) = self.schedules.next_due().await {
                let ahead = next_ms - Utc::now().timestamp_millis();
                wait = wait.min(Duration::from_millis(ahead.max(0) as u64));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn fields(r: Result<Option<Scheduling>, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn send_at_must_be_future_within_30_days_and_within_a_bounded_duration() {
        let now = at("2026-12-06T06:00:00Z");
        let ok = check(Some("2026-12-06T08:00:00+01:00"), None, None, now);
        assert_eq!(fields(ok), Vec::<String>::new());
        assert_eq!(
            fields(check(Some("2026-12-06T07:00:00+01:00"), None, None, now)),
            ["sendAt"],
            "06:00Z is not after now"
        );
        assert_eq!(
            fields(check(Some("2026-12-06T05:59:00Z"), None, None, now)),
            ["sendAt"]
        );
        assert_eq!(
            fields(check(Some("2027-01-06T06:00:01Z"), None, None, now)),
            ["sendAt"]
        );
        assert_eq!(fields(check(Some("tomorrow"), None, None, now)), ["sendAt"]);
        for bad in ["0h", "8d", "24", "h", "1w", "-1h", "99999999999h"] {
            assert_eq!(
                fields(check(Some("optimal"), Some(bad), None, now)),
                ["within"],
                "{bad}"
            );
        }
        assert_eq!(
            fields(check(Some("2026-12-07T00:00:00Z"), Some("1h"), None, now)),
            ["within"]
        );
        assert_eq!(fields(check(None, None, Some("k"), now)), ["cancelKey"]);
        assert_eq!(
            check(Some("optimal"), Some("7d"), Some("k"), now),
            Ok(Some(Scheduling {
                when: When::Optimal {
                    within: chrono::Duration::days(7)
                },
                cancel_key: Some("k".into())
            }))
        );
        assert_eq!(check(None, None, None, now), Ok(None));
    }

    #[test]
    fn the_best_moment_is_the_heaviest_hour_in_the_window_else_a_fallback() {
        // Saturday 2026-12-05 is hour-of-week 5*24.
        let now = at("2026-12-05T08:20:00Z");
        let mut user = Histogram::default();
        for week in 0..25 {
            user.add(at("2026-10-03T19:10:00Z") + chrono::Duration::weeks(week));
        }
        let chosen = choose(
            &user,
            &Histogram::default(),
            now,
            chrono::Duration::hours(24),
        );
        assert_eq!(
            chosen,
            ScheduleInfo {
                send_at: at("2026-12-05T19:00:00Z"),
                reason: Reason::UserHistogram
            }
        );
        // Outside the window: the histogram has nothing to say, so it is "now".
        let short = choose(
            &user,
            &Histogram::default(),
            now,
            chrono::Duration::hours(2),
        );
        assert_eq!(short.send_at, now);

        let mut few = Histogram::default();
        few.add(at("2026-12-05T10:00:00Z"));
        let mut global = Histogram::default();
        for _ in 0..MIN_EVENTS {
            global.add(at("2026-11-28T12:30:00Z"));
        }
        assert_eq!(
            choose(&few, &global, now, chrono::Duration::hours(24)),
            ScheduleInfo {
                send_at: at("2026-12-05T12:00:00Z"),
                reason: Reason::GlobalHistogram
            }
        );
        assert_eq!(
            choose(&few, &few, now, chrono::Duration::hours(24)),
            ScheduleInfo {
                send_at: now,
                reason: Reason::NoData
            }
        );
    }

    #[test]
    fn recent_events_outweigh_old_ones() {
        let old = at("2026-06-01T12:00:00Z");
        assert!((event_weight(old + HALF_LIFE) / event_weight(old) - 2.0).abs() < 1e-9);
    }
}
