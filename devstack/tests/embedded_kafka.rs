//! The embedded broker's additions (`devstack/src/kafka/mock_log.c`):
//! - its log upkeep: once every group has committed past them, the mock's one-record message
//!   sets are coalesced into chunks. A group resuming from its commit and a new group reading from
//!   the start must still get every record once, in offset order, with its own offset and
//!   payload; and the new group needs a few fetches for the coalesced records instead of one per
//!   record (the mock answers one message set per partition per fetch);
//! - its prompt broker, where a record ends the wait of a held fetch.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use devstack::kafka::KafkaService;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::Message;

const TOPIC: &str = "mock-log-upkeep";

async fn produce(brokers: &str, range: std::ops::Range<i64>) {
    // Each record acknowledged before the next, as Herald's producers send them: one message set
    // each.
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    for i in range {
        let payload = format!("record-{i}");
        p.send(
            FutureRecord::to(TOPIC).key("k").payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// Counts the Fetch requests its consumer has sent, from librdkafka's statistics.
#[derive(Clone, Default)]
struct Fetches(Arc<AtomicI64>);

impl ClientContext for Fetches {
    fn stats(&self, stats: Statistics) {
        let sent: i64 = stats
            .brokers
            .values()
            .filter_map(|b| b.req.get("Fetch"))
            .sum();
        self.0.store(sent, Ordering::Relaxed);
    }
}

impl ConsumerContext for Fetches {}

fn consumer(brokers: &str, group: &str) -> (BaseConsumer<Fetches>, Fetches) {
    let fetches = Fetches::default();
    let c: BaseConsumer<Fetches> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "100")
        .create_with_context(fetches.clone())
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    c.subscribe(&[TOPIC])
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    (c, fetches)
}

/// Polls `c` until it has `n` records (or 60 s pass), as (offset, payload).
fn read(c: &BaseConsumer<Fetches>, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            got.push((m.offset(), payload));
        }
    }
    got
}

/// Whatever `c` receives within `wait`.
fn read_for(c: &BaseConsumer<Fetches>, wait: Duration) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            got.push((m.offset(), String::new()));
        }
    }
    got
}

fn expected(range: std::ops::Range<i64>) -> Vec<(i64, String)> {
    range.map(|i| (i, format!("record-{i}"))).collect()
}

#[test]
fn coalesced_records_reach_a_resuming_group_and_a_new_one_once_each_in_order() {
    let kafka = KafkaService::embedded().unwrap_or_else(|e| panic!("embedded Kafka: {e}"));
    let brokers = kafka.brokers().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime
        .block_on(kafka.create_topic(TOPIC, 1))
        .unwrap_or_else(|e| panic!("topic: {e}"));

    runtime.block_on(produce(&brokers, 0..300));
    let (first, _) = consumer(&brokers, "mock-log-first");
    assert_eq!(read(&first, 300), expected(0..300));
    first
        .commit_consumer_state(CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit: {e}"));
    drop(first);
    // The upkeep runs once a second; two passes have run after this.
    std::thread::sleep(Duration::from_millis(2500));
    runtime.block_on(produce(&brokers, 300..310));

    let (resumed, _) = consumer(&brokers, "mock-log-first");
    assert_eq!(read(&resumed, 10), expected(300..310));
    let (new, fetches) = consumer(&brokers, "mock-log-new");
    assert_eq!(read(&new, 310), expected(0..310));
    // Nothing more arrives for either.
    assert_eq!(read_for(&resumed, Duration::from_secs(1)), vec![]);
    assert_eq!(read_for(&new, Duration::from_secs(1)), vec![]);
    // One fetch per record without the upkeep; the 300 coalesced records fit one 64 KB chunk.
    let sent = fetches.0.load(Ordering::Relaxed);
    assert!(
        (1..100).contains(&sent),
        "the new group sent {sent} fetches for 310 records"
    );
    drop((resumed, new));
    kafka.stop();
}

/// The prompt broker (linked into devstack's own binary and tests): a record appended to one of
/// its topics ends the wait of a held fetch within 20 ms of the fetch's start, where the mock would
/// otherwise hold it for the consumer's whole `fetch.wait.max.ms` (20 s here).
#[test]
fn a_record_on_a_prompt_topic_ends_a_held_fetch() {
    const PROMPT: &str = "mock-log-prompt";
    assert!(
        devstack::kafka::mock_log_answers_promptly(),
        "devstack's tests are linked with the wrap (build.rs)"
    );
    let mut kafka = KafkaService::embedded().unwrap_or_else(|e| panic!("embedded Kafka: {e}"));
    let brokers = kafka.brokers().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        kafka
            .create_topic(PROMPT, 1)
            .await
            .unwrap_or_else(|e| panic!("topic: {e}"));
        kafka
            .answer_promptly(PROMPT)
            .await
            .unwrap_or_else(|e| panic!("prompt: {e}"));
    });
    assert!(kafka.answers_promptly(PROMPT));
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "mock-log-prompt")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20000")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    c.subscribe(&[PROMPT])
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let send = |value: &str| {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"));
        runtime
            .block_on(p.send(
                FutureRecord::to(PROMPT).key("k").payload(value),
                Duration::from_secs(10),
            ))
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    };
    let next = |wait: Duration| {
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                return Some(m.offset());
            }
        }
        None
    };
    // The first record proves the consumer is assigned and fetching; its next fetch is then held.
    send("first");
    assert_eq!(next(Duration::from_secs(60)), Some(0));
    std::thread::sleep(Duration::from_secs(1));
    send("second");
    // Without the prompt broker it would come when the 20 s wait ends.
    assert_eq!(next(Duration::from_secs(10)), Some(1));
    drop(c);
    kafka.stop();
}
