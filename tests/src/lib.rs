//! # Herald's test harness
//!
//! Integration and end-to-end tests run against a real Redis (`REDIS_URL`; Redis Cluster with
//! `REDIS_CLUSTER=true`, read by [`RedisSettings::from_env`] as the functions read it) and a real
//! Kafka-protocol broker: Apache Kafka when `KAFKA_BROKERS` is set, otherwise librdkafka's
//! in-process mock cluster (one per test binary, on its own thread).
//!
//! Each [`TestEnv`] gets a unique Redis key prefix and Kafka topic suffix, so tests run in
//! parallel without seeing each other. Without `REDIS_URL` a test prints `SKIPPED: <why>` and
//! returns, unless `HERALD_REQUIRE_SERVICES=1` (set by `scripts/test`), which turns the missing
//! service into a failure: Rust's harness has no "skipped" state, and a silent early return would
//! count as a pass.
//!
//! Stand-ins for what Herald talks to outside AWS, each a real server on this machine:
//! - [`capture`]: an `@connections` endpoint that records posts;
//! - [`provider`]: a scripted push service or SMS API;
//! - [`fcm`], [`apns`]: Firebase Cloud Messaging and APNs (HTTP/2 over TLS), checking credentials;
//! - [`smtp_sink`]: an SMTP server (aiosmtpd);
//! - [`browser`]: a Web Push subscriber that decrypts and checks VAPID independently.
//!
//! [`stack`] runs devstack for the end-to-end tests; [`workflow`] the api, push and ws functions
//! in process for the timed workflows (escalation, digests); [`kafka`] picks the broker and reads topics
//! back; [`http`] calls the api function in process; [`logs`] captures what code logs; [`frames`]
//! holds every WebSocket frame a test receives to `/asyncapi.json`.

pub mod apns;
pub mod browser;
pub mod capture;
pub mod fcm;
pub mod frames;
pub mod http;
pub mod kafka;
pub mod logs;
pub mod provider;
pub mod smtp_sink;
pub mod stack;
pub mod workflow;

use std::time::Duration;

use shared::bus::EventBus;
use shared::config::{
    ConfigError, Env, InboxSettings, KafkaSettings, OutboxSettings, RedisSettings,
};
use shared::model::{Channel, Notification, Priority};
use shared::protocol::{Envelope, Topic};
use shared::store::{CreateOutcome, InboxStore, KeySpace, NewNotification, RedisConn};

pub use http::{Call, Reply};
pub use kafka::Consumed;

/// How long [`TestEnv::consume`] waits for the records it expects: generous, since it only
/// matters when a test is failing or the machine is loaded.
pub const CONSUME_WAIT: Duration = Duration::from_secs(30);
/// How long [`TestEnv::consume`] keeps reading after the expected records, to catch a duplicate.
pub const CONSUME_LINGER: Duration = Duration::from_millis(500);

/// A notification as [`TestEnv::seed_notification`] committed it: the stored notification and
/// the `notification.created` envelope its outbox entry carries (what `delivery` routes).
#[derive(Debug, Clone)]
pub struct Seeded {
    pub notification: Notification,
    pub envelope: Envelope,
}

/// A plain in-app notification for `user` (type `comment`, title `t`, empty body and data), for
/// tests to adjust with struct update syntax before [`TestEnv::seed_notification`].
pub fn new_notification(user: &str) -> NewNotification {
    NewNotification {
        user_id: user.into(),
        kind: "comment".into(),
        title: "t".into(),
        body: String::new(),
        data: serde_json::json!({}),
        channels: vec![Channel::InApp],
        priority: Priority::Normal,
        action_url: None,
        group_key: None,
        expires_at: None,
        escalate: None,
        digest: None,
    }
}

/// Is a missing service a failure (under `scripts/test`)?
pub fn services_required() -> bool {
    std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (or, under `HERALD_REQUIRE_SERVICES=1`, fails) a test that lacks a service.
/// Polls `done` every 100 ms until it holds or `within` passes; whether it held. For waits on
/// work the machine does at its own pace: the deadline is a generous bound, the condition ends it.
pub async fn eventually<F, Fut>(within: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = std::time::Instant::now() + within;
    loop {
        if done().await {
            return true;
        }
        if std::time::Instant::now() > give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn skip(why: &str) {
    assert!(!services_required(), "HERALD_REQUIRE_SERVICES=1 but {why}");
    eprintln!("SKIPPED: {why}");
}

/// One test's private slice of Redis and Kafka.
pub struct TestEnv {
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub conn: RedisConn,
    pub keys: KeySpace,
}

impl TestEnv {
    /// A fresh environment, or `None` (after [`skip`]) when Redis is not configured.
    pub async fn new() -> Option<TestEnv> {
        // The functions' own reading of REDIS_URL / REDIS_CLUSTER, so the cluster tier
        // (REDIS_CLUSTER=true, a seed list, a password) takes the production path.
        let mut redis = match RedisSettings::from_env(&Env::process()) {
            Ok(redis) => redis,
            Err(ConfigError::Missing(_)) => {
                skip("REDIS_URL is not set (scripts/test starts Redis and sets it)");
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tag = &id[..12];
        redis.key_prefix = format!("t{tag}:");
        let kafka = KafkaSettings {
            brokers: kafka::brokers(),
            topic_suffix: format!(".t{tag}"),
            linger_ms: 0,
            produce_timeout: Duration::from_millis(1_500),
            client_properties: vec![],
            msk_cluster_arn: None,
            auth: shared::config::KafkaAuth::None,
            aws: None,
        };
        kafka::create_topics(&kafka).await;
        let conn = match RedisConn::connect(&redis).await {
            Ok(c) => c,
            Err(e) => panic!("REDIS_URL is set but Redis is unreachable: {e}"),
        };
        let keys = KeySpace::new(redis.key_prefix.clone());
        Some(TestEnv {
            redis,
            kafka,
            conn,
            keys,
        })
    }

    pub fn bus(&self) -> EventBus {
        match EventBus::new(&self.kafka) {
            Ok(b) => b,
            Err(e) => panic!("producer: {e}"),
        }
    }

    /// A producer aimed at a port nothing listens on: Kafka "down".
    pub fn dead_bus(&self) -> EventBus {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok();
        let port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or(9, |a| a.port());
        drop(listener);
        let settings = KafkaSettings {
            brokers: format!("127.0.0.1:{port}"),
            ..self.kafka.clone()
        };
        match EventBus::new(&settings) {
            Ok(b) => b,
            Err(e) => panic!("producer: {e}"),
        }
    }

    /// Creates `new` from service `svc` through the real store (Lua script, outbox, counts),
    /// with [`TestEnv::unlimited`] limits; panics unless it was created.
    pub async fn seed_notification(&self, new: NewNotification) -> Seeded {
        match self.store(Self::unlimited()).create("svc", new, None).await {
            Ok(CreateOutcome::Created {
                notification,
                change,
            }) => Seeded {
                notification,
                envelope: change.envelope,
            },
            other => panic!("create: {other:?}"),
        }
    }

    /// Reads this environment's `topic` from the real broker, from the beginning, until `n`
    /// records arrived (or [`CONSUME_WAIT`] passed), then [`CONSUME_LINGER`] more to catch extras.
    pub async fn consume(&self, topic: Topic, n: usize) -> Vec<Consumed> {
        kafka::consume(
            &self.kafka,
            &topic.name_with(&self.kafka.topic_suffix),
            n,
            CONSUME_WAIT,
            CONSUME_LINGER,
        )
        .await
    }

    pub fn store(&self, inbox: InboxSettings) -> InboxStore {
        InboxStore::new(self.conn.clone(), self.keys.clone(), inbox)
    }

    /// The api function's dependencies with default settings.
    pub fn api(&self) -> api::Deps {
        self.api_with(InboxSettings::default(), self.bus())
    }

    pub fn api_with(&self, inbox: InboxSettings, bus: EventBus) -> api::Deps {
        api::Deps::new(self.conn.clone(), self.keys.clone(), inbox, bus)
    }

    /// The relay with no grace period (tests don't wait for in-flight requests).
    pub fn relay(&self) -> outbox_relay::Deps {
        let outbox = OutboxSettings {
            grace: Duration::ZERO,
            concurrency: 4,
        };
        outbox_relay::Deps::new(
            self.conn.clone(),
            self.keys.clone(),
            InboxSettings::default(),
            outbox,
            self.bus(),
        )
    }

    /// Inbox settings with generous rate limits, for tests that create a lot.
    pub fn unlimited() -> InboxSettings {
        let mut s = InboxSettings::default();
        s.per_recipient.burst = 1_000_000;
        s.per_sender.burst = 1_000_000;
        s.per_user_mutation.burst = 1_000_000;
        s
    }

    /// Every key under this test's prefix, on every node: on a cluster KEYS goes to every
    /// master and the answers are joined, where SCAN would walk one node chosen at random.
    pub async fn keys(&self) -> Vec<String> {
        let pattern = format!("{}*", self.redis.key_prefix);
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap_or_else(|e| panic!("KEYS {pattern}: {e}"));
        keys.sort();
        keys
    }
}
