//! # The outbox relay
//!
//! A scheduled function (EventBridge, every minute) that publishes every inbox change Kafka has
//! not acknowledged, in each user's `seq` order, and clears the user's dirty mark when that is
//! provably safe. All of the logic lives in [`shared::outbox::Relay`]; this crate wires it to
//! Lambda.
//!
//! Idempotent: a second run right after a successful one publishes nothing. Concurrent runs are
//! serialised by a lease in Redis (the loser returns `ran: false`).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use shared::config::{Env, InboxSettings, KafkaSettings, OutboxSettings, RedisSettings};
use shared::error::StartupError;
use shared::outbox::{Publisher, Relay, RelayReport};
use shared::store::{InboxStore, KeySpace, RedisConn};

impl From<RelayError> for lambda_runtime::Diagnostic {
    fn from(e: RelayError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "StoreError".into(),
            error_message: e.to_string(),
        }
    }
}

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub relay: Relay,
}

/// Why a run failed (a cold start fails with a [`StartupError`], as every function's does).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] shared::store::StoreError),
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
            OutboxSettings::from_env(env)?,
            bus,
        ))
    }

    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        inbox: InboxSettings,
        outbox: OutboxSettings,
        bus: shared::bus::EventBus,
    ) -> Self {
        let store = InboxStore::new(conn, keys, inbox);
        let publisher = Publisher::new(bus, store.clone());
        Deps {
            relay: Relay::new(publisher, store, outbox),
        }
    }
}

/// One scheduled run. The event's content is not used: every run relays everything due.
pub async fn handle(
    deps: &Deps,
    _event: LambdaEvent<EventBridgeEvent>,
) -> Result<RelayReport, RelayError> {
    let report = deps.relay.run_once().await?;
    shared::trigger::report(&report);
    Ok(report)
}
