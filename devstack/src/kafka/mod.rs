//! Kafka for the functions, and the event-source mappings that feed them.
//!
//! - [`KafkaService::embedded`]: librdkafka's mock cluster, a real Kafka-protocol broker, kept on a
//!   dedicated thread (it is not `Send`). Herald's topics are created from
//!   `shared::protocol::topics::TOPICS` with `create_topic` (the mock has no CreateTopics call).
//!   Its data lives in memory only.
//! - [`KafkaService::external`]: `KAFKA_BROKERS`; topics are ensured with `shared::bus::ensure_topics`.
//! - [`mapping`]: one consumer group per `MSK` / `SelfManagedKafka` event, as Lambda's pollers;
//!   `plan` decides, without I/O, what each invocation's outcome means for every partition
//!   (commit, retry from an offset, dead-letter).

pub mod mapping;
mod mock_log;

pub use mock_log::answers_promptly as mock_log_answers_promptly;
mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use shared::protocol::topics::TOPICS;

#[derive(Debug, thiserror::Error)]
pub enum KafkaServiceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka topics: {0}")]
    Bus(#[from] shared::bus::BusError),
    #[error("kafka settings: {0}")]
    Config(#[from] shared::config::ConfigError),
    #[error("the embedded Kafka broker stopped")]
    EmbeddedGone,
    #[error("only the embedded Kafka broker can be taken down")]
    NotEmbedded,
}

/// The embedded cluster's broker that leads every partition, except the prompt topics'.
const BROKER_ID: i32 = 1;
/// The embedded cluster's broker that answers a held fetch as soon as a record arrives
/// (`PROMPT_BROKER_ID` in mock_log.c): it leads only the topics of no-window mappings.
const PROMPT_BROKER_ID: i32 = 2;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: std_mpsc::Sender<Result<(), KafkaError>>,
    },
    /// Moves every partition of a topic to `broker`.
    Lead {
        topic: String,
        broker: i32,
        reply: std_mpsc::Sender<Result<(), KafkaError>>,
    },
    /// Takes the brokers down (`true`) or brings them back, as a fault for tests.
    SetDown {
        down: bool,
        reply: std_mpsc::Sender<Result<(), KafkaError>>,
    },
    Stop,
}

/// The Kafka the functions and mappings use.
pub struct KafkaService {
    brokers: String,
    embedded: Option<(std_mpsc::Sender<Command>, JoinHandle<()>)>,
    /// Topics on the prompt broker.
    prompt_topics: BTreeSet<String>,
}

impl std::fmt::Debug for KafkaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaService")
            .field("brokers", &self.brokers)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

impl KafkaService {
    /// Starts the in-process mock cluster with Herald's topics: broker 1 leads every partition;
    /// broker 2 leads the topics given to [`KafkaService::answer_promptly`].
    pub fn embedded() -> Result<KafkaService, KafkaServiceError> {
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<String, KafkaError>>();
        let (tx, rx) = std_mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("devstack-kafka".into())
            .spawn(move || {
                // The cluster belongs to this client (as `MockCluster::new` makes it), which
                // also gives the raw handle `mock_log` needs.
                let owner: BaseProducer = match ClientConfig::new()
                    .set("test.mock.num.brokers", PROMPT_BROKER_ID.to_string())
                    .create()
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let Some(cluster) = owner.client().mock_cluster() else {
                    let _ = ready_tx.send(Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail)));
                    return;
                };
                mock_log::coalesce_committed(owner.client().native_ptr());
                // The mock spreads a new topic's partitions over its brokers; they all go to
                // BROKER_ID, so only the prompt topics' consumers fetch from the prompt broker.
                let create = |name: &str, count: i32| {
                    cluster.create_topic(name, count, 1)?;
                    mock_log::lead(&owner, name, 0..count, BROKER_ID)
                };
                let mut counts: BTreeMap<String, i32> = BTreeMap::new();
                for spec in TOPICS {
                    if let Err(e) = create(spec.name, spec.partitions) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    counts.insert(spec.name.to_owned(), spec.partitions);
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let created = create(&name, partitions);
                            if created.is_ok() {
                                counts.entry(name).or_insert(partitions);
                            }
                            let _ = reply.send(created);
                        }
                        Command::Lead {
                            topic,
                            broker,
                            reply,
                        } => {
                            let count = counts.get(&topic).copied().unwrap_or(1);
                            let _ = reply.send(mock_log::lead(&owner, &topic, 0..count, broker));
                        }
                        Command::SetDown { down, reply } => {
                            let _ = reply.send((BROKER_ID..=PROMPT_BROKER_ID).try_for_each(|id| {
                                if down {
                                    cluster.broker_down(id)
                                } else {
                                    cluster.broker_up(id)
                                }
                            }));
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|_| KafkaServiceError::EmbeddedGone)?;
        let brokers = ready_rx
            .recv()
            .map_err(|_| KafkaServiceError::EmbeddedGone)??;
        tracing::info!("embedded Kafka (librdkafka mock cluster) at {brokers}");
        Ok(KafkaService {
            brokers,
            embedded: Some((tx, thread)),
            prompt_topics: BTreeSet::new(),
        })
    }

    /// Uses the broker at `brokers`, creating Herald's topics there if they are missing.
    pub async fn external(brokers: String) -> Result<KafkaService, KafkaServiceError> {
        let settings = shared::config::KafkaSettings::from_env(&shared::config::Env::from_pairs(
            [("KAFKA_BROKERS", brokers.as_str())],
        ))?;
        shared::bus::ensure_topics(&settings, 1).await?;
        Ok(KafkaService {
            brokers,
            embedded: None,
            prompt_topics: BTreeSet::new(),
        })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Creates a topic if it does not exist (mapping topics outside Herald's table, DLQ topics).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaServiceError> {
        match &self.embedded {
            Some((tx, _)) => {
                let (reply, answer) = std_mpsc::channel();
                tx.send(Command::CreateTopic {
                    name: name.to_owned(),
                    partitions,
                    reply,
                })
                .map_err(|_| KafkaServiceError::EmbeddedGone)?;
                let answer = tokio::task::spawn_blocking(move || {
                    answer.recv_timeout(Duration::from_secs(10))
                })
                .await
                .map_err(|_| KafkaServiceError::EmbeddedGone)?
                .map_err(|_| KafkaServiceError::EmbeddedGone)?;
                match answer {
                    Ok(()) | Err(KafkaError::AdminOp(RDKafkaErrorCode::TopicAlreadyExists)) => {
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .create()?;
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                for r in admin.create_topics([&topic], &opts).await? {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((_, code)) => return Err(KafkaError::AdminOp(code).into()),
                    }
                }
                Ok(())
            }
        }
    }

    /// Puts `topic` (already created) on the embedded cluster's prompt broker, which answers a
    /// held fetch as soon as a record arrives, if this binary has it (`mock_log`): the topics of
    /// mappings that want each record at once. Nothing for an external broker, which answers
    /// promptly anyway.
    pub async fn answer_promptly(&mut self, topic: &str) -> Result<(), KafkaServiceError> {
        let Some((tx, _)) = &self.embedded else {
            return Ok(());
        };
        if !mock_log::answers_promptly() {
            return Ok(());
        }
        let (reply, answer) = std_mpsc::channel();
        tx.send(Command::Lead {
            topic: topic.to_owned(),
            broker: PROMPT_BROKER_ID,
            reply,
        })
        .map_err(|_| KafkaServiceError::EmbeddedGone)?;
        tokio::task::spawn_blocking(move || answer.recv_timeout(Duration::from_secs(10)))
            .await
            .map_err(|_| KafkaServiceError::EmbeddedGone)?
            .map_err(|_| KafkaServiceError::EmbeddedGone)??;
        self.prompt_topics.insert(topic.to_owned());
        Ok(())
    }

    /// Whether `topic` is on the prompt broker ([`KafkaService::answer_promptly`]).
    pub fn answers_promptly(&self, topic: &str) -> bool {
        self.prompt_topics.contains(topic)
    }

    /// Takes the embedded broker down, or brings it back (its data survives): the "Kafka is
    /// down" fault. An external broker cannot be controlled from here.
    pub async fn set_down(&self, down: bool) -> Result<(), KafkaServiceError> {
        let Some((tx, _)) = &self.embedded else {
            return Err(KafkaServiceError::NotEmbedded);
        };
        let (reply, answer) = std_mpsc::channel();
        tx.send(Command::SetDown { down, reply })
            .map_err(|_| KafkaServiceError::EmbeddedGone)?;
        tokio::task::spawn_blocking(move || answer.recv_timeout(Duration::from_secs(10)))
            .await
            .map_err(|_| KafkaServiceError::EmbeddedGone)?
            .map_err(|_| KafkaServiceError::EmbeddedGone)??;
        Ok(())
    }

    /// Stops the embedded broker (its data is gone); nothing for an external one.
    pub fn stop(self) {
        if let Some((tx, thread)) = self.embedded {
            let _ = tx.send(Command::Stop);
            let _ = thread.join();
        }
    }
}
