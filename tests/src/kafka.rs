//! The broker the tests use, and reading back what was produced.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use shared::config::KafkaSettings;
use shared::protocol::topics::TOPICS;

enum MockRequest {
    CreateTopics(Vec<(String, i32)>, mpsc::Sender<()>),
}

struct Mock {
    brokers: String,
    requests: mpsc::Sender<MockRequest>,
}

/// librdkafka's mock cluster lives on its own thread for the whole test binary (it is not
/// `Send`); topic creation goes through a channel because it has no CreateTopics support.
fn mock() -> &'static std::sync::Mutex<Mock> {
    static MOCK: OnceLock<std::sync::Mutex<Mock>> = OnceLock::new();
    MOCK.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<MockRequest>();
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let cluster = match MockCluster::new(1) {
                Ok(c) => c,
                Err(e) => panic!("mock cluster: {e}"),
            };
            let _ = ready_tx.send(cluster.bootstrap_servers());
            for MockRequest::CreateTopics(topics, done) in rx {
                for (name, partitions) in topics {
                    if let Err(e) = cluster.create_topic(&name, partitions, 1) {
                        panic!("mock create_topic {name}: {e}");
                    }
                }
                let _ = done.send(());
            }
        });
        let brokers = ready_rx.recv().unwrap_or_default();
        std::sync::Mutex::new(Mock {
            brokers,
            requests: tx,
        })
    })
}

fn external() -> Option<String> {
    std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
}

/// `KAFKA_BROKERS`, or the in-process mock cluster's address.
pub fn brokers() -> String {
    external().unwrap_or_else(|| mock().lock().map(|m| m.brokers.clone()).unwrap_or_default())
}

/// Which broker this run uses, for messages.
pub fn broker_kind() -> &'static str {
    if external().is_some() {
        "external Kafka"
    } else {
        "librdkafka mock cluster"
    }
}

/// Creates the four topics with this environment's suffix, from the shared topic table.
pub async fn create_topics(settings: &KafkaSettings) {
    if external().is_some() {
        if let Err(e) = shared::bus::ensure_topics(settings, 1).await {
            panic!("creating topics on {}: {e}", settings.brokers);
        }
        return;
    }
    let topics = TOPICS
        .iter()
        .map(|s| (s.topic.name_with(&settings.topic_suffix), s.partitions))
        .collect();
    let (done_tx, done_rx) = mpsc::channel();
    if let Ok(m) = mock().lock() {
        let _ = m.requests.send(MockRequest::CreateTopics(topics, done_tx));
    }
    let _ =
        tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(10))).await;
}

/// A record read back from the broker.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, Vec<u8>>,
}

impl Consumed {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_default()
    }
}

/// Reads `topic` from the beginning until `expected` records arrived or `wait` passed, then keeps
/// reading for `linger` more to catch any extra (duplicate) record.
pub async fn consume(
    settings: &KafkaSettings,
    topic: &str,
    expected: usize,
    wait: Duration,
    linger: Duration,
) -> Vec<Consumed> {
    let consumer: StreamConsumer = match shared::bus::client_config(settings)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => panic!("consumer: {e}"),
    };
    // Assign every partition from the beginning rather than joining a group: no rebalance wait.
    let partitions = TOPICS
        .iter()
        .find(|s| topic.starts_with(s.name))
        .map_or(1, |s| s.partitions);
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        if let Err(e) = assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning) {
            panic!("assign {topic}/{p}: {e}");
        }
    }
    if let Err(e) = consumer.assign(&assignment) {
        panic!("assign {topic}: {e}");
    }
    let mut out = Vec::new();
    let started = Instant::now();
    let mut deadline = started + wait;
    let mut lingering = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            if lingering || out.len() >= expected {
                break;
            }
            break;
        }
        match tokio::time::timeout(deadline - now, consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                });
                if out.len() >= expected && !lingering {
                    lingering = true;
                    deadline = Instant::now() + linger;
                }
            }
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Err(_) => {}
        }
    }
    out
}
