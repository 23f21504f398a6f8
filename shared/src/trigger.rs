//! Kafka-triggered functions: reading a [`KafkaEvent`] (MSK or self-managed, the same shape) and
//! answering with a partial batch response.
//!
//! Contract (Lambda's event-source mapping, `FunctionResponseTypes: [ReportBatchItemFailures]`):
//! records arrive grouped by `"<topic>-<partition>"`, in offset order within a partition. A
//! handler processes each partition in order and, when a record fails for a transient reason,
//! reports that record's offset: Lambda resumes that partition *from* it, so every later record of
//! the partition is retried too (and must be idempotent). Without the response type, an error
//! retries the whole batch, which the same idempotency makes safe.
//!
//! Every triggered run ends the same way: its counters, added up over partitions, jobs or
//! rounds ([`Counters`], implemented with [`counters!`](crate::counters!)), make one log line and
//! one set of EMF metrics ([`Report`], [`report`]); a Kafka batch then answers Lambda ([`finish`]).

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The records of one topic-partition, in offset order.
#[derive(Debug)]
pub struct PartitionBatch<'a> {
    /// `"<topic>-<partition>"`, as the event keys it and as `itemIdentifier.partition` wants it.
    pub key: &'a str,
    pub records: Vec<&'a KafkaRecord>,
}

/// Splits an event into its partitions, each sorted by offset.
pub fn partitions(event: &KafkaEvent) -> Vec<PartitionBatch<'_>> {
    let mut batches: Vec<PartitionBatch<'_>> = event
        .records
        .iter()
        .map(|(key, records)| {
            let mut records: Vec<&KafkaRecord> = records.iter().collect();
            records.sort_by_key(|r| r.offset);
            PartitionBatch { key, records }
        })
        .collect();
    batches.sort_by(|a, b| a.key.cmp(b.key));
    batches
}

impl PartitionBatch<'_> {
    /// Logs one of this partition's records as poison (`metric=PoisonRecords`): the one log line
    /// every Kafka handler writes for a record it skips. The caller counts it.
    pub fn log_poison(&self, record: &KafkaRecord, why: &dyn std::fmt::Display) {
        tracing::error!(
            partition = self.key,
            offset = record.offset,
            error = %why,
            metric = "PoisonRecords",
            "skipping a poison record"
        );
    }
}

/// Why a record cannot be processed at all (a poison record: log it, count it, skip it).
#[derive(Debug, thiserror::Error)]
pub enum PoisonRecord {
    #[error("record has no value")]
    NoValue,
    #[error("value is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// A record that is not a usable envelope: the poison records of the envelope topics.
#[derive(Debug, thiserror::Error)]
pub enum PoisonEnvelope {
    #[error(transparent)]
    Record(#[from] PoisonRecord),
    #[error(transparent)]
    Envelope(#[from] crate::protocol::envelope::EnvelopeError),
}

/// The record's value as an envelope (`notification-events`, `push-notifications`).
pub fn envelope(record: &KafkaRecord) -> Result<crate::protocol::Envelope, PoisonEnvelope> {
    Ok(crate::protocol::Envelope::decode(&value(record)?)?)
}

/// The record's value, decoded from base64.
pub fn value(record: &KafkaRecord) -> Result<Vec<u8>, PoisonRecord> {
    let raw = record.value.as_deref().ok_or(PoisonRecord::NoValue)?;
    Ok(STANDARD.decode(raw)?)
}

/// A record header's bytes (Lambda sends them as signed bytes).
pub fn header(record: &KafkaRecord, name: &str) -> Option<Vec<u8>> {
    record
        .headers
        .iter()
        .find_map(|h| h.get(name))
        .map(|bytes| bytes.iter().map(|b| *b as u8).collect())
}

/// The partial batch response (`aws_lambda_events` has no type for Kafka's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    pub item_identifier: ItemIdentifier,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdentifier {
    pub partition: String,
    pub offset: i64,
}

/// A batch with failed records, under a mapping without `ReportBatchItemFailures`: failing the
/// invocation is the only way to have Lambda retry it rather than commit it.
#[derive(Debug, thiserror::Error)]
#[error("{failed} partition(s) of the batch failed; failing the invocation so Lambda retries the whole batch")]
pub struct RetryWholeBatch {
    pub failed: usize,
}

impl BatchResponse {
    /// What the handler returns: this response when the mapping reads partial batch responses
    /// (`settings.report_batch_item_failures`); otherwise success when nothing failed, and
    /// [`RetryWholeBatch`] when something did.
    pub fn into_result(
        self,
        settings: &crate::config::TriggerSettings,
    ) -> Result<BatchResponse, RetryWholeBatch> {
        if settings.report_batch_item_failures || self.batch_item_failures.is_empty() {
            Ok(self)
        } else {
            Err(RetryWholeBatch {
                failed: self.batch_item_failures.len(),
            })
        }
    }

    /// Retry `partition` from `offset` on.
    pub fn fail_from(&mut self, partition: &str, offset: i64) {
        self.batch_item_failures.push(ItemFailure {
            item_identifier: ItemIdentifier {
                partition: partition.to_owned(),
                offset,
            },
        });
    }
}

/// Counters that add up: a partition's, a job's or a round's into the run's.
pub trait Counters: Default {
    /// Adds every counter of `other` to this one's.
    fn merge(&mut self, other: &Self);
}

/// Implements [`Counters`] for a struct by adding up the fields named, which must be every
/// counter of the struct (numbers).
#[macro_export]
macro_rules! counters {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::trigger::Counters for $ty {
            fn merge(&mut self, other: &Self) {
                $(self.$field += other.$field;)+
            }
        }
    };
}

/// What a run reports when it ends. The log line's field names and the metric names are read by
/// the tests, the dashboards and the template's alarms: keep them stable.
pub trait Report {
    /// Writes the run's one log line.
    fn log(&self);
    /// The run's metrics, one [`MetricSet`](crate::metrics::MetricSet) per set of dimensions;
    /// none by default.
    fn metrics(&self) -> Vec<crate::metrics::MetricSet> {
        Vec::new()
    }
}

/// The log-and-metrics step every run (Kafka batch or scheduled run) ends with.
pub fn report(run: &impl Report) {
    run.log();
    crate::metrics::emit_all(run.metrics());
}

/// Ends a Kafka batch: reports it, then answers Lambda ([`BatchResponse::into_result`]).
pub fn finish(
    run: &impl Report,
    response: BatchResponse,
    settings: &crate::config::TriggerSettings,
) -> Result<BatchResponse, RetryWholeBatch> {
    report(run);
    response.into_result(settings)
}

/// Where to retry a partition from: its lowest failed offset, if any.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetryFrom(pub Option<i64>);

impl RetryFrom {
    /// Records a failure at `offset`; the retry starts at the lowest one.
    pub fn fail(&mut self, offset: i64) {
        self.0 = Some(self.0.map_or(offset, |o| o.min(offset)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_come_sorted_and_headers_unsigned() {
        let event: KafkaEvent = serde_json::from_value(serde_json::json!({
            "eventSource": "SelfManagedKafka",
            "records": {"t-0": [
                {"topic":"t","partition":0,"offset":7,"timestamp":0,"timestampType":"CREATE_TIME","key":null,"value":"aGk=","headers":[{"k":[-1, 104]}]},
                {"topic":"t","partition":0,"offset":5,"timestamp":0,"timestampType":"CREATE_TIME","key":null,"value":"!!","headers":[]}
            ]}
        }))
        .unwrap_or_default();
        let parts = partitions(&event);
        assert_eq!(parts.len(), 1);
        let offsets: Vec<i64> = parts[0].records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![5, 7]);
        assert!(matches!(
            value(parts[0].records[0]),
            Err(PoisonRecord::Base64(_))
        ));
        assert_eq!(value(parts[0].records[1]).ok(), Some(b"hi".to_vec()));
        assert_eq!(header(parts[0].records[1], "k"), Some(vec![255, 104]));
        let mut r = BatchResponse::default();
        r.fail_from("t-0", 5);
        assert_eq!(
            serde_json::to_value(&r).ok(),
            Some(
                serde_json::json!({"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":5}}]})
            )
        );
    }

    #[derive(Debug, Default, PartialEq)]
    struct Tally {
        records: usize,
        counted: u64,
    }
    crate::counters!(Tally { records, counted });

    #[test]
    fn counters_add_up_field_by_field() {
        let mut total = Tally::default();
        total.merge(&Tally {
            records: 2,
            counted: 1,
        });
        total.merge(&Tally {
            records: 3,
            counted: 4,
        });
        assert_eq!(
            total,
            Tally {
                records: 5,
                counted: 5
            }
        );
    }

    #[test]
    fn without_partial_responses_a_failure_fails_the_invocation() {
        use crate::config::TriggerSettings;
        let whole = TriggerSettings {
            report_batch_item_failures: false,
        };
        let mut failed = BatchResponse::default();
        failed.fail_from("t-0", 5);
        failed.fail_from("t-1", 9);
        assert_eq!(
            failed.clone().into_result(&TriggerSettings::default()).ok(),
            Some(failed.clone()),
            "reported as item failures"
        );
        assert_eq!(failed.into_result(&whole).err().map(|e| e.failed), Some(2));
        assert_eq!(
            BatchResponse::default().into_result(&whole).ok(),
            Some(BatchResponse::default()),
            "a clean batch succeeds in both modes"
        );
    }
}
