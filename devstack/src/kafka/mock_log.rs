//! The embedded broker's log upkeep: `mock_log.c` (compiled by build.rs against the private
//! headers of the librdkafka rdkafka-sys builds) coalesces, once a second on the mock's own
//! thread, the message sets every consumer group has committed into chunks of up to 64 KB.
//!
//! Guarantee: no record is added, dropped, reordered or renumbered; what changes is how many
//! fetches and list steps the mock needs to reach an offset. Without it, the mock walks its
//! one-set-per-record log from the oldest record on every fetch (up to 100,000 per partition),
//! so the embedded broker got slower the longer it ran, and stayed slow after an overload.
//!
//! It also makes broker 2 of the cluster the prompt broker: an append to one of its partitions
//! ends the fetches it holds that asked to wait 400 ms or more (20 ms after each began), as a
//! real broker answers when data arrives, instead of after the consumer's whole
//! `fetch.wait.max.ms` (see mock_log.c). devstack puts only the topics of its no-window mappings
//! there, and only those mappings ask to wait that long.

#![allow(unsafe_code)]

use std::ffi::CString;

use rdkafka::bindings::{
    rd_kafka_handle_mock_cluster, rd_kafka_mock_cluster_t, rd_kafka_mock_partition_set_leader,
    rd_kafka_t,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

extern "C" {
    fn devstack_mock_log_coalesce(mcluster: *mut rd_kafka_mock_cluster_t);
}

/// Starts the upkeep on the mock cluster owned by `client` (made with `test.mock.num.brokers`);
/// nothing if `client` owns none.
pub fn coalesce_committed(client: *mut rd_kafka_t) {
    // SAFETY: `client` is a live handle (the caller holds its owner); the cluster it returns lives
    // as long as that client, and `devstack_mock_log_coalesce` only adds a timer to the cluster's
    // own timer list (thread-safe in librdkafka), whose callback runs on the mock's thread.
    unsafe {
        let mcluster = rd_kafka_handle_mock_cluster(client);
        if !mcluster.is_null() {
            devstack_mock_log_coalesce(mcluster);
        }
    }
}

extern "C" {
    fn devstack_mock_answers_promptly() -> std::os::raw::c_int;
}

/// Whether this binary was linked with mock_log.c's wrap of the mock's log append (build.rs
/// links the devstack binary and devstack's own tests with it; crates that embed devstack as a
/// library are not), so the prompt broker answers held fetches as soon as a record arrives.
pub fn answers_promptly() -> bool {
    // SAFETY: reads whether a weak symbol was resolved; no arguments, no state.
    unsafe { devstack_mock_answers_promptly() != 0 }
}

/// Makes `broker` the leader of `partitions` of `topic` on the mock cluster owned by `owner`.
pub fn lead(
    owner: &BaseProducer,
    topic: &str,
    partitions: std::ops::Range<i32>,
    broker: i32,
) -> Result<(), KafkaError> {
    let name = CString::new(topic).map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
    for partition in partitions {
        // SAFETY: `owner` is live and owns the cluster; the call posts an operation to the mock's
        // thread and waits for it; `name` outlives the call.
        let err = unsafe {
            let mcluster = rd_kafka_handle_mock_cluster(owner.client().native_ptr());
            if mcluster.is_null() {
                return Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail));
            }
            rd_kafka_mock_partition_set_leader(mcluster, name.as_ptr(), partition, broker)
        };
        let code = RDKafkaErrorCode::from(err);
        if code != RDKafkaErrorCode::NoError {
            return Err(KafkaError::MockCluster(code));
        }
    }
    Ok(())
}
