//! Kafka event-source mappings against the embedded broker (librdkafka's mock cluster, a real
//! Kafka-protocol server): retries of the same batch, nothing committed before success, partial
//! batch responses, BatchSize cuts, and the on-failure topic.

mod common;

use std::time::Duration;

use common::{bounded, stack};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &stack().brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"))
}

async fn produce(topic: &str, values: &[&str]) {
    let p = producer();
    for v in values {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "h",
            value: Some(&[0xffu8, 1][..]),
        });
        p.send(
            FutureRecord::to(topic)
                .key("k")
                .payload(*v)
                .headers(headers),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// Batches the fixture function has seen so far: each a list of (offset, value).
fn batches(function: &str) -> Vec<Vec<(i64, String)>> {
    let path = stack().fixture_dir.join(format!("{function}.jsonl"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Vec<Value>>(l).ok())
        .map(|b| {
            b.iter()
                .map(|r| {
                    (
                        r["offset"].as_i64().unwrap_or(-1),
                        r["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

async fn wait_for_batches(function: &str, n: usize) -> Vec<Vec<(i64, String)>> {
    for _ in 0..200 {
        let b = batches(function);
        if b.len() >= n {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    batches(function)
}

/// The group's committed offset for partition 0 of `topic` (None: nothing committed).
fn committed(group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack().brokers)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
    match got.find_partition(topic, 0)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

#[tokio::test]
async fn a_failed_batch_is_retried_whole_and_committed_only_after_success() {
    bounded(90, async {
        produce("dt-retry", &["sleep:1500", "fail-once:retry-1", "c"]).await;
        // The first attempt sleeps 1.5 s before failing: nothing may be committed meanwhile.
        for _ in 0..100 {
            if std::fs::metadata(stack().fixture_dir.join("fixture-kafka-retry.jsonl")).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            committed("dt-retry-group", "dt-retry"),
            None,
            "committed before the function answered"
        );
        let seen = wait_for_batches("fixture-kafka-retry", 2).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            seen[0].iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(seen[1], seen[0], "the retry carries the same batch");
        let mut committed_at = None;
        for _ in 0..50 {
            committed_at = committed("dt-retry-group", "dt-retry");
            if committed_at == Some(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(committed_at, Some(3));
        // Records carry signed-byte headers.
        let text = std::fs::read_to_string(stack().fixture_dir.join("fixture-kafka-retry.jsonl"))
            .unwrap_or_default();
        let batch: Vec<Value> = text
            .lines()
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        assert_eq!(
            batch.first().map(|r| r["headers"].clone()),
            Some(serde_json::json!([{ "h": [-1, 1] }]))
        );
    })
    .await;
}

#[tokio::test]
async fn batches_are_cut_at_batch_size() {
    bounded(90, async {
        // fixture-kafka-batch: BatchSize 3, a 2 s window.
        produce("dt-batch", &["1", "2", "3", "4", "5", "6", "7"]).await;
        let seen = wait_for_batches("fixture-kafka-batch", 3).await;
        let sizes: Vec<usize> = seen.iter().map(Vec::len).collect();
        assert_eq!(
            sizes[..3],
            [3, 3, 1],
            "BatchSize 3 cuts 7 records into 3 + 3 + 1: {seen:?}"
        );
        assert_eq!(committed("dt-batch-group", "dt-batch"), Some(7));
    })
    .await;
}

#[tokio::test]
async fn reported_item_failures_resume_at_the_failed_offset() {
    bounded(90, async {
        produce(
            "dt-partial",
            &["p0", "p1", "item-fail-once:partial-1", "p3"],
        )
        .await;
        let seen = wait_for_batches("fixture-kafka-partial", 2).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            seen[0].iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(
            seen[1].iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            [2, 3],
            "resumes at the reported offset"
        );
        let mut at = None;
        for _ in 0..50 {
            at = committed("dt-partial-group", "dt-partial");
            if at == Some(4) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(at, Some(4));
    })
    .await;
}

#[tokio::test]
async fn exhausted_retries_go_to_the_on_failure_topic() {
    bounded(90, async {
        produce("dt-dlq", &["fail-always"]).await;
        // MaximumRetryAttempts 1: the first attempt and one retry, then the DLQ.
        let seen = wait_for_batches("fixture-kafka-dlq", 2).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &stack().brokers)
            .set("group.id", format!("dlq-reader-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        consumer
            .subscribe(&["dt-dlq-dlq"])
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        let msg = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing in dt-dlq-dlq"));
        let msg = msg.unwrap_or_else(|e| panic!("recv: {e}"));
        use rdkafka::message::{Headers, Message};
        assert_eq!(msg.payload(), Some(&b"fail-always"[..]));
        let headers: Vec<String> = msg
            .headers()
            .map(|h| h.iter().map(|h| h.key.to_owned()).collect())
            .unwrap_or_default();
        assert!(
            headers.contains(&"x-devstack-error".to_owned()) && headers.contains(&"h".to_owned()),
            "{headers:?}"
        );
        // Committed past the record: no third attempt.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(batches("fixture-kafka-dlq").len(), 2);
        assert_eq!(committed("dt-dlq-group", "dt-dlq"), Some(1));
    })
    .await;
}
