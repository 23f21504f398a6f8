//! # Outbound webhooks
//!
//! A Kafka-triggered function with three triggers, one per input topic (a mapping reads one
//! topic, with its own consumer group), that POSTs each event to every webhook registered for its
//! type; the same function runs every minute to drain the retry schedule ([`drain_due`]).
//!
//! | topic | records | webhook events |
//! |---|---|---|
//! | `notification-events` | `NOTIFICATION_CREATED` | `notification.created` |
//! | `notification-delivery` | delivery outcomes | `delivery.sent`, `delivery.failed`, `delivery.suppressed` |
//! | `notification-analytics` | first seen / read, first click | `notification.seen`, `notification.read`, `notification.clicked` |
//!
//! For each record ([`decode`]), each message it makes and each webhook of the record's tenant
//! that wants it ([`Registry`]: another tenant's webhooks never get it), the message is queued in
//! the webhook's ledger behind its notification's waiting messages
//! ([`shared::store::WebhookStore`]). The run that queued into an empty queue sends it now, then
//! whatever queued behind it ([`queue`]), concurrently across notifications.
//!
//! **Guarantees.**
//! - *At least once*: a message is in Redis before it is sent. Each attempt is classified by the
//!   one adapter contract ([`send::WebhookSender`], [`shared::adapter::Outcome`]) and the
//!   outcome alone decides what follows ([`queue::next_step`]): a `transient` failure (5xx,
//!   timeout, no connection) or a `retry-after` (429, its `Retry-After` honoured) is retried on
//!   the schedule (doubling delays from `WEBHOOK_RETRY_BASE_MS`, for up to
//!   `WEBHOOK_RETRY_WINDOW_MS`, 24 h), then dead-lettered; a `rejected` answer (3xx, other 4xx)
//!   or `too-large` (413) is dead-lettered at once; dead letters are replayed by
//!   `POST /v1/webhooks/{id}/replay`. A crash between the receiver's answer and the ledger write
//!   sends it again.
//! - *Gone*: a 410 removes the webhook with its delivery state (Standard Webhooks: the receiver
//!   wants no more; the sender disables the endpoint). Registering it again resumes.
//! - *Not twice*: a redelivered Kafka record finds its message in the ledger and sends nothing;
//!   only a due retry (or a replay) sends a message again.
//! - *In order per notification*: a notification's messages go one at a time in the order the
//!   function received them; a later one waits behind an earlier one that is retrying. Messages
//!   from different topics are ordered as they arrive here (a `delivery.sent` can precede its
//!   `notification.created` when the delivery topic is consumed first).
//! - *Outbound policy*: every request goes through [`shared::egress::EgressPolicy`] (https only,
//!   checked addresses after DNS, no redirects, no proxy); a refused URL or a 3xx is `rejected`
//!   (dead-lettered).
//!
//! **Failures.** A receiver's failure is never the batch's: it becomes a retry. Poison records
//! are logged and skipped. A Redis failure while queueing reports the record's partition from
//! that offset; a Redis failure while sending leaves the queue to the schedule (its lease ends
//! and a drain takes it over).
//!
//! ## Map
//!
//! - [`decode`]: a Kafka record's messages;
//! - [`send`]: the webhook adapter: one signed attempt, its answer classified;
//! - [`queue`]: working a notification's queue: send, record, then retry, dead-letter or remove
//!   the webhook, as the outcome says;
//! - [`batch`]: the Kafka batch ([`process_batch`]); [`drain`]: the schedule ([`drain_due`]).

pub mod batch;
pub mod decode;
pub mod drain;
pub mod queue;
pub mod send;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::kafka::KafkaEvent;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use shared::config::{Env, RedisSettings, TriggerSettings, WebhookSettings};
use shared::error::StartupError;
use shared::store::{KeySpace, RedisConn, StoreError, TenantScoped, WebhookStore};
use shared::tenant::Tenant;
use shared::trigger::{self, Report};
use shared::webhooks::Webhook;

pub use batch::process_batch;
pub use drain::drain_due;
pub use send::WebhookSender;

/// How long a run owns a queue it works (longer than the function's timeout): after it, a drain
/// takes the queue over.
pub const QUEUE_LEASE: Duration = Duration::from_secs(300);
/// Queues (notifications) worked at once.
pub const QUEUE_CONCURRENCY: usize = 16;

/// One tenant's webhooks, with the store of that tenant's delivery state.
#[derive(Debug, Clone)]
pub struct Registry {
    pub store: WebhookStore,
    pub hooks: Vec<Webhook>,
}

/// The webhooks of every tenant that has some (the default tenant's, and those of the tenants in
/// `{wh}:tenants`), by tenant.
pub async fn registries(deps: &Deps) -> Result<BTreeMap<Tenant, Registry>, StoreError> {
    let mut all = BTreeMap::new();
    for tenant in deps.store.tenants().await? {
        let store = deps.store.for_tenant(&tenant);
        let hooks = store.list().await?;
        if !hooks.is_empty() {
            all.insert(tenant, Registry { store, hooks });
        }
    }
    Ok(all)
}

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The default tenant's; [`registries`] scopes it to each tenant.
    pub store: WebhookStore,
    pub settings: WebhookSettings,
    /// The webhook adapter: the outbound policy's client, with the attempt timeout.
    pub sender: WebhookSender,
    /// Whether the mappings read partial batch responses (else a failure fails the invocation).
    pub trigger: TriggerSettings,
}

/// Why a cold start failed.
#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("the outbound HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, ColdStartError> {
        let redis = RedisSettings::from_env(env).map_err(StartupError::from)?;
        let settings = WebhookSettings::from_env(env).map_err(StartupError::from)?;
        let conn = RedisConn::connect(&redis)
            .await
            .map_err(StartupError::from)?;
        let mut deps = Deps::new(
            WebhookStore::new(conn, KeySpace::new(redis.key_prefix)),
            settings,
        )?;
        deps.trigger = TriggerSettings::from_env(env).map_err(StartupError::from)?;
        Ok(deps)
    }

    /// With a mapping that reads partial batch responses (tests).
    pub fn new(store: WebhookStore, settings: WebhookSettings) -> Result<Self, ColdStartError> {
        let sender = WebhookSender::new(settings.egress(), settings.timeout)?;
        Ok(Deps {
            store,
            settings,
            sender,
            trigger: TriggerSettings::default(),
        })
    }
}

/// What a batch or a drain did, for the log line (and the tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub records: usize,
    pub poison: usize,
    /// Messages queued for a webhook.
    pub queued: usize,
    /// Messages a webhook's ledger knew already (redelivered records): not sent again.
    pub redelivered: usize,
    pub delivered: usize,
    /// Failed attempts put on the retry schedule.
    pub retrying: usize,
    pub dead_lettered: usize,
    /// Webhooks removed because their receiver answered 410 Gone.
    pub removed: usize,
    /// Queues left to the schedule because of a Redis failure.
    pub interrupted: usize,
}

shared::counters!(Stats {
    records,
    poison,
    queued,
    redelivered,
    delivered,
    retrying,
    dead_lettered,
    removed,
    interrupted
});

struct BatchRun<'a>(&'a Stats);
struct DrainRun<'a>(&'a Stats);

impl Report for BatchRun<'_> {
    fn log(&self) {
        let stats = self.0;
        tracing::info!(?stats, "webhooks batch");
    }
}

impl Report for DrainRun<'_> {
    fn log(&self) {
        let stats = self.0;
        tracing::info!(?stats, "webhooks retry drain");
    }
}

/// The Lambda handler: a Kafka batch from one of the three topics (an event with an
/// `eventSource`), or the scheduled drain of the retry schedule (any other event: an EventBridge
/// event reads as a [`KafkaEvent`] with no source and no records). A drain answers its [`Stats`].
///
/// The event is read once, straight into a [`KafkaEvent`], not first into a JSON tree: that
/// second pass cost more CPU than the rest of a batch when no webhook is registered.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<KafkaEvent>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let kafka = event.payload;
    if kafka.event_source.is_some() {
        let (response, stats) = process_batch(deps, &kafka, Utc::now()).await;
        let response = trigger::finish(&BatchRun(&stats), response, &deps.trigger)?;
        Ok(serde_json::to_value(response)?)
    } else {
        let stats = drain_due(deps, Utc::now()).await;
        trigger::report(&DrainRun(&stats));
        Ok(serde_json::to_value(stats)?)
    }
}
