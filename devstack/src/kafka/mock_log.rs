//! The embedded broker's log upkeep: `mock_log.c` (compiled by build.rs against the private
//! headers of the librdkafka rdkafka-sys builds) coalesces, once a second on the mock's own
//! thread, the message sets every consumer group has committed into chunks of up to 64 KB.
//!
//! Guarantee: no record is added, dropped, reordered or renumbered; what changes is how many
//! fetches and list steps the mock needs to reach an offset. Without it, the mock walks its
//! one-set-per-record log from the oldest record on every fetch (up to 100,000 per partition),
//! so the embedded broker got slower the longer it ran, and stayed slow after an overload.

#![allow(unsafe_code)]

use rdkafka::bindings::{rd_kafka_handle_mock_cluster, rd_kafka_mock_cluster_t, rd_kafka_t};

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
