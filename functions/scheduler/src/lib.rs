//! # The scheduler
//!
//! A scheduled function (EventBridge, every minute) that fires scheduled sends: each invocation
//! drains the Redis due-set for `SCHEDULER_RUN_SECONDS` (its schedule's period), looking every
//! `SCHEDULER_POLL_MS` at most, so a send goes out within about that of its `sendAt` although
//! the function runs once a minute. All of the logic lives in [`shared::schedule::Scheduler`];
//! this crate wires it to Lambda. Design and costs: `docs/scheduling.md`.
//!
//! It also starts scheduled broadcasts (their chunk records go to `broadcast-chunks`, which the
//! `broadcast` function fans out).
//!
//! Exactly once: overlapping invocations, a crash and Lambda's retry of a failed invocation are
//! all safe, since every job is claimed with a lease and created under its fixed id with an
//! idempotency record (see [`shared::schedule`]).

use std::time::Instant;

use lambda_runtime::LambdaEvent;
use shared::config::{Env, InboxSettings, KafkaSettings, RedisSettings, SchedulerSettings};
use shared::error::StartupError;
use shared::outbox::Publisher;
use shared::schedule::{FireReport, Scheduler};
use shared::store::{InboxStore, KeySpace, RedisConn, ScheduleStore, TopicStore};

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub scheduler: Scheduler,
    pub settings: SchedulerSettings,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let bus = shared::bus::EventBus::connect(&kafka).await?;
        Ok(Self::new(
            conn,
            KeySpace::new(redis.key_prefix),
            InboxSettings::from_env(env)?,
            SchedulerSettings::from_env(env)?,
            bus,
        ))
    }

    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        inbox: InboxSettings,
        settings: SchedulerSettings,
        bus: shared::bus::EventBus,
    ) -> Self {
        let store = InboxStore::new(conn.clone(), keys.clone(), inbox);
        let publisher = Publisher::new(bus, store.clone());
        let schedules = ScheduleStore::new(conn.clone(), keys.clone());
        let topics = TopicStore::new(conn, keys);
        Deps {
            scheduler: Scheduler::new(store, schedules, topics, publisher, settings),
            settings,
        }
    }
}

/// One scheduled run: drains the due-set until `SCHEDULER_RUN_SECONDS` after it started. The
/// event's content is not used. Never fails: a round that fails is retried at the next poll,
/// and a job it claimed comes due again after its lease.
pub async fn handle(
    deps: &Deps,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<FireReport, std::convert::Infallible> {
    let report = deps
        .scheduler
        .run_until(Instant::now() + deps.settings.run)
        .await;
    shared::trigger::report(&report);
    Ok(report)
}
