//! Kafka event-source mappings, as Lambda's Kafka pollers run them.
//!
//! Contract (per mapping = one consumer group, `ConsumerGroupId`):
//! - a batch is cut at `BatchSize` records, at 6 MB, or when `MaximumBatchingWindowInSeconds` has
//!   passed since its first record (`DEVSTACK_BATCH_WINDOW_MS` overrides the window);
//! - the function receives a `KafkaEvent`: records grouped under `"<topic>-<partition>"`, in offset
//!   order, base64 key and value, headers as `[{name: [signed bytes]}]`;
//! - offsets are committed only after the function succeeded; nothing is committed before;
//! - a failed invocation (error, crash, timeout) retries the *same* batch with backoff, which
//!   blocks its partitions, until it succeeds or `MaximumRetryAttempts` is exhausted;
//! - with `ReportBatchItemFailures`, `{"batchItemFailures":[{"itemIdentifier":{"partition":
//!   "<topic>-<p>","offset":N}}]}` commits what precedes N and resumes that partition at N; an
//!   identifier naming no record of the batch fails the whole batch, as in Lambda;
//! - once retries are exhausted the failed records go to the on-failure destination, locally the
//!   topic `<topic>-dlq` (with `x-devstack-*` headers saying why), and are committed.
//!
//! The decision after each invocation is `super::plan`'s; this file polls, invokes and carries
//! it out.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::plan::{plan, Attempts, Outcome, PartitionKey, Span, Step};
use crate::lambda::Lambda;
use crate::template::{KafkaEventSource, KafkaSourceKind, StartingPosition};

/// Largest payload Lambda hands a function.
const MAX_BATCH_BYTES: usize = 6 * 1024 * 1024;

/// One mapping, ready to run.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub function: String,
    pub source: KafkaEventSource,
    pub brokers: String,
    pub batching_window: Duration,
    /// It batches for [`PROMPT_WINDOW`] or less and its topics are on the embedded broker's
    /// prompt broker, which ends its held fetches soon after a record arrives (`super::mock_log`;
    /// only fetches that ask to wait 400 ms or more, so a windowed mapping of the same topic
    /// keeps its whole wait).
    pub prompt: bool,
}

/// A mapping that batches for this long or less wants each record at once: its topics go on the
/// prompt broker when there is one, and otherwise it asks every this often.
pub const PROMPT_WINDOW: Duration = Duration::from_millis(20);

/// The on-failure topic for records of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}-dlq")
}

fn signed(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|b| i8::from_ne_bytes([*b])).collect()
}

/// Builds the `KafkaEvent` Lambda would send for `batch`.
pub fn kafka_event(source: &KafkaEventSource, brokers: &str, batch: &[OwnedMessage]) -> Value {
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in batch {
        let headers: Vec<Value> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| json!({ h.key: signed(h.value.unwrap_or_default()) }))
                    .collect()
            })
            .unwrap_or_default();
        let (timestamp, kind) = match m.timestamp() {
            Timestamp::CreateTime(t) => (t, "CREATE_TIME"),
            Timestamp::LogAppendTime(t) => (t, "LOG_APPEND_TIME"),
            Timestamp::NotAvailable => (-1, "NO_TIMESTAMP_TYPE"),
        };
        let mut r = json!({
            "topic": m.topic(),
            "partition": m.partition(),
            "offset": m.offset(),
            "timestamp": timestamp,
            "timestampType": kind,
            "headers": headers,
        });
        if let Some(obj) = r.as_object_mut() {
            if let Some(k) = m.key() {
                obj.insert("key".into(), STANDARD.encode(k).into());
            }
            if let Some(v) = m.payload() {
                obj.insert("value".into(), STANDARD.encode(v).into());
            }
        }
        records
            .entry(format!("{}-{}", m.topic(), m.partition()))
            .or_default()
            .push(r);
    }
    match &source.kind {
        KafkaSourceKind::Msk { stream_arn } => {
            json!({ "eventSource": "aws:kafka", "eventSourceArn": stream_arn, "bootstrapServers": brokers, "records": records })
        }
        KafkaSourceKind::SelfManaged => {
            json!({ "eventSource": "SelfManagedKafka", "bootstrapServers": brokers, "records": records })
        }
    }
}

/// Reads a `ReportBatchItemFailures` answer. `Err` when it names no record of the batch or is
/// malformed (Lambda then treats the whole batch as failed).
fn item_failures(
    body: &[u8],
    batch: &[OwnedMessage],
) -> Result<BTreeMap<PartitionKey, i64>, String> {
    let mut out = BTreeMap::new();
    if body.is_empty() {
        return Ok(out);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    let Some(list) = v.get("batchItemFailures") else {
        return Ok(out);
    };
    let Some(list) = list.as_array() else {
        return if list.is_null() {
            Ok(out)
        } else {
            Err("batchItemFailures is not a list".into())
        };
    };
    for item in list {
        let id = item
            .get("itemIdentifier")
            .ok_or("an item has no itemIdentifier")?;
        let part = id
            .get("partition")
            .and_then(Value::as_str)
            .ok_or("itemIdentifier.partition is missing")?;
        let offset = id
            .get("offset")
            .and_then(|o| {
                o.as_i64()
                    .or_else(|| o.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or("itemIdentifier.offset is missing")?;
        let m = batch
            .iter()
            .find(|m| format!("{}-{}", m.topic(), m.partition()) == part && m.offset() == offset)
            .ok_or_else(|| format!("itemIdentifier {part}@{offset} is not in the batch"))?;
        let key = (m.topic().to_owned(), m.partition());
        let e = out.entry(key).or_insert(offset);
        *e = (*e).min(offset);
    }
    Ok(out)
}

/// The first and last offsets of each partition's records in `batch`.
fn spans(batch: &[OwnedMessage]) -> BTreeMap<PartitionKey, Span> {
    let mut spans: BTreeMap<PartitionKey, Span> = BTreeMap::new();
    for m in batch {
        let span = spans
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(Span {
                first: m.offset(),
                last: m.offset(),
            });
        span.first = span.first.min(m.offset());
        span.last = span.last.max(m.offset());
    }
    spans
}

impl Mapping {
    fn consumer(&self) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
        let reset = match self.source.starting_position {
            StartingPosition::TrimHorizon => "earliest",
            StartingPosition::Latest => "latest",
        };
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.source.consumer_group_id)
            .set("client.id", format!("devstack-{}", self.function))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            // A retried batch may block for a long time; the group must not evict us meanwhile.
            .set("max.poll.interval.ms", "86400000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "2000")
            .set("fetch.wait.max.ms", self.fetch_wait_ms().to_string())
            .create()
    }

    /// librdkafka's mock broker holds an empty fetch for the whole `fetch.wait.max.ms` (500 ms by
    /// default) instead of answering when a record arrives, so the wait is both the latency a
    /// record can gain before its batch starts and how often an idle consumer asks. On the prompt
    /// broker a record ends the wait, so such a mapping keeps librdkafka's 500 ms. Elsewhere, a
    /// mapping that batches for [`PROMPT_WINDOW`] or less (delivery, window 0, when devstack runs
    /// in-process without the prompt broker) asks every 20 ms, as Lambda's pollers add no such
    /// delay; one that batches for longer anyway (analytics, push: 1 s) asks at most every
    /// 250 ms, which costs its records nothing their window does not already cost and cuts the
    /// idle stack's fetches by three quarters.
    fn fetch_wait_ms(&self) -> u128 {
        if self.prompt {
            return 500;
        }
        self.batching_window
            .as_millis()
            .clamp(PROMPT_WINDOW.as_millis(), 250)
    }

    /// The producer for the on-failure topic, or `None` (logged) if it cannot be made.
    fn dead_letter_producer(&self, label: &str) -> Option<FutureProducer> {
        match ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "0")
            .create()
        {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(mapping = %label, "no producer for the on-failure topic: {e}");
                None
            }
        }
    }

    /// Runs until `stop` is set. Errors talking to Kafka are logged and retried.
    pub async fn run(self, lambda: Lambda, mut stop: watch::Receiver<bool>) {
        let label = format!("{}:{}", self.function, self.source.name);
        let consumer = match self.consumer() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(mapping = %label, "cannot create the consumer: {e}");
                return;
            }
        };
        let topics: Vec<&str> = self.source.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            tracing::error!(mapping = %label, "cannot subscribe to {topics:?}: {e}");
            return;
        }
        // The on-failure producer is made when a batch is first dead-lettered: an idle producer
        // costs its polling thread's wake-ups, and most mappings never dead-letter.
        let producer: OnceLock<Option<FutureProducer>> = OnceLock::new();
        tracing::info!(mapping = %label, group = %self.source.consumer_group_id, topics = ?topics, batch_size = self.source.batch_size, "Kafka event-source mapping started");
        let mut attempts = Attempts::new();
        loop {
            let first = tokio::select! {
                m = consumer.recv() => m,
                _ = crate::lambda::stopped_flag(&mut stop) => return,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(mapping = %label, "poll failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut bytes = first.payload().map_or(0, <[u8]>::len);
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.batching_window;
            while batch.len() < self.source.batch_size && bytes < MAX_BATCH_BYTES {
                // Biased: records already fetched join the batch before an expired window ends
                // it, so with window 0 a burst becomes one invocation (what Lambda's poller hands
                // over), not one invocation per record.
                tokio::select! {
                    biased;
                    m = consumer.recv() => match m {
                        Ok(m) => {
                            bytes += m.payload().map_or(0, <[u8]>::len);
                            batch.push(m.detach());
                        }
                        Err(e) => {
                            // Hand over what is in hand; a failing poll never spins here.
                            tracing::warn!(mapping = %label, "poll failed: {e}");
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = crate::lambda::stopped_flag(&mut stop) => return,
                }
            }
            let backoff = self
                .deliver(&lambda, &consumer, &producer, &batch, &mut attempts, &label)
                .await;
            if let Some(wait) = backoff {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::lambda::stopped_flag(&mut stop) => return,
                }
            }
        }
    }

    /// Invokes the function with `batch`, then carries out the `plan`: commits what succeeded,
    /// rewinds what must be retried, sends what exhausted its retries to the destination.
    /// Returns the backoff to wait before the retry, if any.
    async fn deliver(
        &self,
        lambda: &Lambda,
        consumer: &StreamConsumer,
        producer: &OnceLock<Option<FutureProducer>>,
        batch: &[OwnedMessage],
        attempts: &mut Attempts,
        label: &str,
    ) -> Option<Duration> {
        let outcome = self.invoke(lambda, batch).await;
        let plan = plan(
            &outcome,
            &spans(batch),
            attempts,
            self.source.maximum_retry_attempts,
        );
        let reason = outcome.reason();
        let mut commit = TopicPartitionList::new();
        for (key, step) in plan.steps {
            let (topic, partition) = (&key.0, key.1);
            let at = format!("{topic}-{partition}");
            match step {
                Step::Commit { next } => {
                    attempts.remove(&key);
                    let _ = commit.add_partition_offset(topic, partition, Offset::Offset(next));
                }
                Step::DeadLetter {
                    failed_at,
                    failures,
                    next,
                } => {
                    let failed: Vec<&OwnedMessage> = batch
                        .iter()
                        .filter(|m| {
                            m.topic() == topic
                                && m.partition() == partition
                                && m.offset() >= failed_at
                        })
                        .collect();
                    tracing::warn!(mapping = %label, partition = %at, offset = failed_at, records = failed.len(), "retries exhausted after {failures} failures: {reason}");
                    self.send_to_destination(producer, &failed, &reason, label)
                        .await;
                    attempts.remove(&key);
                    let _ = commit.add_partition_offset(topic, partition, Offset::Offset(next));
                }
                Step::Retry {
                    failed_at,
                    attempt,
                    commit: done,
                    ..
                } => {
                    tracing::warn!(mapping = %label, partition = %at, offset = failed_at, attempt, "batch failed, will retry: {reason}");
                    if let Some(done) = done {
                        let _ = commit.add_partition_offset(topic, partition, Offset::Offset(done));
                    }
                    if let Err(e) = consumer.seek(
                        topic,
                        partition,
                        Offset::Offset(failed_at),
                        Duration::from_secs(5),
                    ) {
                        tracing::error!(mapping = %label, "cannot rewind {at} to {failed_at}: {e}");
                    }
                    attempts.insert(key.clone(), (failed_at, attempt));
                }
            }
        }
        if commit.count() > 0 {
            // A synchronous commit blocks its thread until the coordinator answers: with the
            // broker down, for up to a minute. Let the runtime move its other tasks (the
            // gateways) off this thread meanwhile, or a few mappings stall all of devstack.
            let result = tokio::task::block_in_place(|| consumer.commit(&commit, CommitMode::Sync));
            if let Err(e) = result {
                tracing::error!(mapping = %label, "commit failed (the records will be delivered again): {e}");
            }
        }
        plan.backoff
    }

    /// Invokes the function with `batch` and reads its answer (`batchItemFailures` when the
    /// mapping has `ReportBatchItemFailures`).
    async fn invoke(&self, lambda: &Lambda, batch: &[OwnedMessage]) -> Outcome {
        let event = kafka_event(&self.source, &self.brokers, batch);
        match lambda
            .invoke(&self.function, Bytes::from(event.to_string()))
            .await
        {
            Ok(body) if self.source.report_batch_item_failures => match item_failures(&body, batch)
            {
                Ok(f) if f.is_empty() => Outcome::Success,
                Ok(f) => Outcome::Partial(f),
                Err(e) => Outcome::Failed(format!("invalid batchItemFailures: {e}")),
            },
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    async fn send_to_destination(
        &self,
        producer: &OnceLock<Option<FutureProducer>>,
        records: &[&OwnedMessage],
        reason: &str,
        label: &str,
    ) {
        let producer = self.source.on_failure.as_ref().and_then(|_| {
            producer
                .get_or_init(|| self.dead_letter_producer(label))
                .as_ref()
        });
        let Some(producer) = producer else {
            tracing::warn!(mapping = %label, "no on-failure destination: {} records dropped", records.len());
            return;
        };
        for m in records {
            let topic = dlq_topic(m.topic());
            let source = format!("{}-{}@{}", m.topic(), m.partition(), m.offset());
            let mut headers = OwnedHeaders::new();
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    headers = headers.insert(Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
            headers = headers
                .insert(Header {
                    key: "x-devstack-source",
                    value: Some(source.as_bytes()),
                })
                .insert(Header {
                    key: "x-devstack-function",
                    value: Some(self.function.as_bytes()),
                })
                .insert(Header {
                    key: "x-devstack-error",
                    value: Some(reason.as_bytes()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).headers(headers);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
                tracing::error!(mapping = %label, "cannot write {source} to {topic}: {e}");
            }
        }
    }
}
