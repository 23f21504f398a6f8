//! The Kafka side: an idempotent producer (acks=all) created once per process, and topic creation
//! from the topic table.
//!
//! Contract: [`EventBus::send`] enqueues every record at once and waits for every acknowledgement
//! before returning, because Lambda freezes the process (and librdkafka's threads) between
//! invocations. Records to the same partition keep their order (idempotence).
//!
//! Acknowledgements arrive through librdkafka's delivery reports, served by one thread per bus
//! that blocks in whole-second polls ([`DeliveryReports`]). rdkafka's `FutureProducer` polls
//! every 100 ms instead and spins through the sub-millisecond rest of each poll, which cost an
//! idle process about 0.7% of a core per producer (measured with `scripts/bench cpu`).
//!
//! Outages ([`Reachability`]): once the producer knows the cluster is unreachable,
//! [`EventBus::send`] stops producing and answers [`BusError::Unreachable`] at once, and sends
//! already waiting give up, so a request never waits the produce deadline for a cluster known to
//! be gone; the outbox keeps the changes (see `outbox.rs`). It knows when librdkafka reports a
//! broker connection failing (or all brokers down) while sends wait, when a record fails or times
//! out for a transport reason, or when a metadata probe gets no answer. A probe starts when a
//! connection fails while nothing waits (it may be an idle connection the broker closed), and
//! when a send has waited [`STALL_PROBE_AFTER`] (not every outage is reported). The probe thread
//! fetches metadata at once, then with backoff ([`PROBE_FIRST`] doubling to [`PROBE_MAX`]) while
//! nothing answers; the first answer returns the bus to the normal path. So the first send of an
//! outage waits at most about `STALL_PROBE_AFTER` + [`PROBE_TIMEOUT`], and later ones not at all.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext, OAuthToken};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{oneshot, watch};

use crate::config::KafkaSettings;
use crate::msk::{BootstrapError, KafkaContext};
use crate::protocol::topics::{Topic, TOPICS};

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRecord {
    pub topic: Topic,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("kafka is unreachable: not produced, the outbox keeps the change")]
    Unreachable,
    #[error("kafka health check panicked")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("no Kafka brokers: KAFKA_MSK_CLUSTER_ARN is set without KAFKA_BROKERS, so build the bus with EventBus::connect, which looks them up")]
    Unresolved,
}

/// Where one record's acknowledgement goes: its partition and offset, or the error.
type Acknowledgement = oneshot::Sender<Result<Delivered, KafkaError>>;

/// First wait, and longest wait, between two metadata probes while the cluster is unreachable.
pub const PROBE_FIRST: Duration = Duration::from_millis(100);
pub const PROBE_MAX: Duration = Duration::from_secs(2);
/// How long one probe waits for a metadata answer: a healthy cluster answers in milliseconds.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A send still waiting for acknowledgements this long starts a probe (see [`EventBus::send`]).
pub const STALL_PROBE_AFTER: Duration = Duration::from_millis(200);

/// Whether the cluster is known to be unreachable, shared by the producer's context (which hears
/// librdkafka's errors and delivery reports), every [`EventBus`] clone and the probe thread.
#[derive(Debug)]
struct Reachability {
    /// True while unreachable; a watch, so that waiting sends give up the moment it turns true.
    down: watch::Sender<bool>,
    /// A probe thread is running (at most one).
    probing: AtomicBool,
    /// A connection failed while no send waited: the delivery-report thread starts a probe.
    suspect: AtomicBool,
    /// Sends waiting for acknowledgements now.
    waiting: AtomicUsize,
    /// Sends answered [`BusError::Unreachable`] without producing.
    skipped: AtomicU64,
}

impl Reachability {
    fn new() -> Self {
        Reachability {
            down: watch::Sender::new(false),
            probing: AtomicBool::new(false),
            suspect: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    fn mark_down(&self, why: &dyn std::fmt::Display) {
        if !self.down.send_replace(true) {
            tracing::warn!(
                %why,
                metric = "KafkaUnreachable",
                "kafka unreachable: requests stop waiting for it; the outbox relay will publish"
            );
            crate::metrics::MetricSet::new()
                .count("KafkaUnreachable", 1)
                .emit();
        }
    }

    fn mark_up(&self) {
        if self.down.send_replace(false) {
            tracing::info!("kafka reachable again: back to producing");
        }
    }
}

/// Counts a send in [`Reachability::waiting`] while it lives (also if its future is dropped).
struct Waiting<'a>(&'a Reachability);

impl<'a> Waiting<'a> {
    fn new(reachability: &'a Reachability) -> Self {
        reachability.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(reachability)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a failed record says the cluster cannot be reached (rather than rejecting the record).
fn is_transport_failure(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::RequestTimedOut
        )
    )
}

/// The producer's context: MSK IAM tokens (through [`KafkaContext`]) and delivery reports, each
/// completing the record's [`Acknowledgement`]; librdkafka's errors and failed reports update
/// [`Reachability`].
struct DeliveryReports {
    inner: KafkaContext,
    reachability: Arc<Reachability>,
}

impl ClientContext for DeliveryReports {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool =
        <KafkaContext as ClientContext>::ENABLE_REFRESH_OAUTH_TOKEN;

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.inner.generate_oauth_token(oauthbearer_config)
    }

    /// A broker connection failing while sends wait means they will not be acknowledged in time:
    /// unreachable at once (a probe brings it back within a metadata round trip if another
    /// broker answers). While nothing waits, it may be an idle connection the broker closed: the
    /// probe decides.
    fn error(&self, error: KafkaError, reason: &str) {
        let connection_failed = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        );
        if !connection_failed {
            tracing::warn!(%error, reason, "librdkafka");
        } else if self.reachability.waiting.load(Ordering::Acquire) > 0 {
            self.reachability
                .mark_down(&format_args!("{error}: {reason}"));
        } else {
            tracing::debug!(%error, reason, "kafka connection failed; probing");
            self.reachability.suspect.store(true, Ordering::Release);
        }
    }
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = Box<Acknowledgement>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(m) => Ok(Delivered {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => {
                if is_transport_failure(e) {
                    self.reachability.mark_down(e);
                }
                Err(e.clone())
            }
        };
        // The sender gave up (its deadline passed): nobody is left to tell.
        let _ = ack.send(outcome);
    }
}

type Inner = BaseProducer<DeliveryReports>;

/// The producer. Cheap to clone; the delivery-report thread ends within a second of the last
/// clone being dropped.
#[derive(Clone)]
pub struct EventBus {
    producer: Arc<Inner>,
    reachability: Arc<Reachability>,
    settings: KafkaSettings,
}

/// Serves delivery reports, errors (and MSK token refreshes) while the producer lives, and starts
/// the probe when an error marked the cluster unreachable. A poll blocks for up to a second and
/// returns as soon as an event arrives, so acknowledgements are not delayed; an idle process
/// wakes once a second.
fn serve_delivery_reports(producer: Weak<Inner>, reachability: Arc<Reachability>) {
    while let Some(p) = producer.upgrade() {
        p.poll(Duration::from_secs(1));
        if reachability.is_down() || reachability.suspect.swap(false, Ordering::AcqRel) {
            start_probe(Arc::downgrade(&p), reachability.clone());
        }
    }
}

/// Starts the probe thread unless one runs: it fetches metadata at once, marking the cluster
/// unreachable while nothing answers and retrying with backoff, and reachable at the first
/// answer. Ends early when the producer is dropped.
fn start_probe(producer: Weak<Inner>, reachability: Arc<Reachability>) {
    if reachability.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let probe = move || loop {
        let mut wait = PROBE_FIRST;
        loop {
            let Some(p) = producer.upgrade() else {
                reachability.probing.store(false, Ordering::Release);
                return;
            };
            let answered = p.client().fetch_metadata(None, PROBE_TIMEOUT).is_ok();
            drop(p);
            if answered {
                reachability.mark_up();
                break;
            }
            reachability.mark_down(&"no broker answered a metadata request");
            std::thread::sleep(wait);
            wait = (wait * 2).min(PROBE_MAX);
        }
        reachability.probing.store(false, Ordering::Release);
        // Marked down again after the loop's last look and before `probing` was released: the
        // marker saw a probe running and started none, so this one goes on.
        if !reachability.is_down() || reachability.probing.swap(true, Ordering::AcqRel) {
            return;
        }
    };
    if std::thread::Builder::new()
        .name("kafka probe".into())
        .spawn(probe)
        .is_err()
    {
        tracing::warn!("no thread for the kafka probe; the next error tries again");
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("brokers", &self.settings.brokers)
            .finish()
    }
}

/// Client properties shared by every Kafka client Herald makes (producers, admin, consumers).
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", "herald");
    for (k, v) in &settings.client_properties {
        config.set(k, v);
    }
    config
}

impl EventBus {
    /// The producer, after looking up the brokers of `KAFKA_MSK_CLUSTER_ARN` when no
    /// `KAFKA_BROKERS` were given (one `GetBootstrapBrokers` call, at cold start).
    pub async fn connect(settings: &KafkaSettings) -> Result<Self, BusError> {
        if settings.brokers.is_empty() && settings.msk_cluster_arn.is_some() {
            let brokers = crate::msk::bootstrap_brokers(settings, None).await?;
            tracing::info!(brokers, "bootstrap brokers from MSK");
            return Self::new(&KafkaSettings {
                brokers,
                ..settings.clone()
            });
        }
        Self::new(settings)
    }

    /// The producer for `settings.brokers` (with MSK IAM tokens when configured).
    pub fn new(settings: &KafkaSettings) -> Result<Self, BusError> {
        if settings.brokers.is_empty() {
            return Err(BusError::Unresolved);
        }
        let reachability = Arc::new(Reachability::new());
        let timeout_ms = settings.produce_timeout.as_millis().to_string();
        let producer: Inner = client_config(settings)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", settings.linger_ms.to_string())
            .set("message.timeout.ms", &timeout_ms)
            .set("socket.connection.setup.timeout.ms", &timeout_ms)
            // librdkafka's reconnect backoff grows to 10 s by default; a cluster back after an
            // outage is then seen (by the probe too) only at the next attempt.
            .set("reconnect.backoff.max.ms", "1000")
            .create_with_context(DeliveryReports {
                inner: KafkaContext::new(settings),
                reachability: reachability.clone(),
            })?;
        let producer = Arc::new(producer);
        let reports = Arc::downgrade(&producer);
        let reports_reachability = reachability.clone();
        std::thread::Builder::new()
            .name("kafka delivery reports".into())
            .spawn(move || serve_delivery_reports(reports, reports_reachability))
            .map_err(|_| {
                BusError::Kafka(KafkaError::ClientCreation(
                    "no thread for delivery reports".into(),
                ))
            })?;
        Ok(EventBus {
            producer,
            reachability,
            settings: settings.clone(),
        })
    }

    pub fn topic_name(&self, topic: Topic) -> String {
        topic.name_with(&self.settings.topic_suffix)
    }

    /// True while the cluster is known to be unreachable (sends answer at once, unproduced).
    pub fn is_unreachable(&self) -> bool {
        self.reachability.is_down()
    }

    /// How many sends this producer answered [`BusError::Unreachable`] without producing.
    pub fn skipped_sends(&self) -> u64 {
        self.reachability.skipped.load(Ordering::Relaxed)
    }

    /// Produces every record and waits for each acknowledgement. The result for record `i` is at
    /// index `i`. Never takes much longer than the configured produce timeout, and returns at
    /// once, producing nothing, while the cluster is known to be unreachable.
    pub async fn send(&self, records: &[OutgoingRecord]) -> Vec<Result<Delivered, BusError>> {
        let mut gone = self.reachability.down.subscribe();
        if *gone.borrow_and_update() {
            self.reachability.skipped.fetch_add(1, Ordering::Relaxed);
            return records.iter().map(|_| Err(BusError::Unreachable)).collect();
        }
        let _waiting = Waiting::new(&self.reachability);
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let topic = self.topic_name(r.topic);
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let (ack, acknowledged) = oneshot::channel();
            let record = BaseRecord::with_opaque_to(&topic, Box::new(ack))
                .key(&r.key)
                .payload(&r.payload)
                .headers(headers);
            pending.push(
                self.producer
                    .send(record)
                    .map(|()| acknowledged)
                    .map_err(|(e, _)| BusError::Kafka(e)),
            );
        }
        // librdkafka checks message timeouts about once a second, so its own timeout can overrun by
        // up to a second; the deadline here is exact. A record still queued at the deadline may
        // yet be delivered: it is reported as failed, stays unpublished, and the relay sends it
        // again (at least once; consumers drop a seq they already applied). The same holds for a
        // record abandoned because the cluster became unreachable while it waited.
        let deadline = tokio::time::Instant::now() + self.settings.produce_timeout;
        let acknowledgements = async {
            let mut results = Vec::with_capacity(pending.len());
            for p in pending {
                results.push(self.acknowledgement(p, deadline, &mut gone).await);
            }
            results
        };
        // Not every outage is reported while a send waits (a connection that dropped while idle
        // may fail silently): a send still waiting after STALL_PROBE_AFTER has the probe check.
        let stalled = async {
            tokio::time::sleep(STALL_PROBE_AFTER).await;
            start_probe(Arc::downgrade(&self.producer), self.reachability.clone());
            std::future::pending().await
        };
        tokio::select! {
            results = acknowledgements => results,
            never = stalled => never,
        }
    }

    /// Waits for one record's acknowledgement until `deadline`, or until the cluster is marked
    /// unreachable.
    async fn acknowledgement(
        &self,
        produced: Result<oneshot::Receiver<Result<Delivered, KafkaError>>, BusError>,
        deadline: tokio::time::Instant,
        gone: &mut watch::Receiver<bool>,
    ) -> Result<Delivered, BusError> {
        match produced {
            Err(e) => Err(e),
            Ok(acknowledged) => tokio::select! {
                acked = tokio::time::timeout_at(deadline, acknowledged) => match acked {
                    Ok(Ok(Ok(d))) => Ok(d),
                    Ok(Ok(Err(e))) => Err(BusError::Kafka(e)),
                    Ok(Err(_)) => Err(BusError::Kafka(KafkaError::Canceled)),
                    Err(_) => {
                        let timeout = BusError::Timeout(self.settings.produce_timeout);
                        self.reachability.mark_down(&timeout);
                        start_probe(Arc::downgrade(&self.producer), self.reachability.clone());
                        Err(timeout)
                    }
                },
                _ = gone.wait_for(|down| *down) => Err(BusError::Unreachable),
            },
        }
    }

    /// Round trip to the cluster (a metadata request); the latency if it answered.
    pub async fn health(&self, timeout: Duration) -> Result<Duration, BusError> {
        let producer = self.producer.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await??;
        Ok(started.elapsed())
    }
}

/// Creates Herald's topics (with this deployment's suffix) from the topic table, with their
/// partitions and retention. Topics that already exist are left as they are.
pub async fn ensure_topics(settings: &KafkaSettings, replication: i32) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
    let names: Vec<String> = TOPICS
        .iter()
        .map(|s| s.topic.name_with(&settings.topic_suffix))
        .collect();
    let retention: Vec<String> = TOPICS.iter().map(|s| s.retention_ms.to_string()).collect();
    let new: Vec<NewTopic> = TOPICS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            NewTopic::new(
                &names[i],
                s.partitions,
                TopicReplication::Fixed(replication),
            )
            .set("retention.ms", &retention[i])
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(BusError::Kafka(KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}
