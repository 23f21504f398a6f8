//! The `broadcast-chunks` record: one chunk of one broadcast's fan-out. The api produces every
//! chunk of a broadcast when it accepts it; the `broadcast` function fans each chunk out.
//!
//! A chunk names buckets, not users: it is read from the topic's membership when it runs, so a
//! record stays small whatever the topic's size, and a redelivered or duplicated record runs the
//! same recipients again (each recipient's create is idempotent per broadcast, and the chunk's
//! counts are committed once).

use serde::{Deserialize, Serialize};

use crate::bus::OutgoingRecord;
use crate::store::topics::{BROADCAST_CHUNKS, BUCKETS_PER_CHUNK};
use crate::tenant::Tenant;

use super::Topic;

/// The record's schema version.
pub const BROADCAST_CHUNK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastChunk {
    pub v: u32,
    pub broadcast_id: String,
    /// The broadcast's tenant (its keys and its recipients'); absent for the default tenant.
    #[serde(default, skip_serializing_if = "crate::tenant::is_default")]
    pub tenant: Tenant,
    /// `0..BROADCAST_CHUNKS`.
    pub chunk: u16,
}

impl BroadcastChunk {
    /// Every chunk of `tenant`'s broadcast `id`, as records to produce.
    pub fn all_records(tenant: &Tenant, id: &str) -> Vec<OutgoingRecord> {
        (0..BROADCAST_CHUNKS)
            .map(|chunk| {
                let record = BroadcastChunk {
                    v: BROADCAST_CHUNK_VERSION,
                    broadcast_id: id.to_owned(),
                    tenant: tenant.clone(),
                    chunk,
                };
                OutgoingRecord {
                    topic: Topic::BroadcastChunks,
                    key: format!("{id}:{chunk}"),
                    payload: serde_json::to_vec(&record).unwrap_or_default(),
                    headers: vec![],
                }
            })
            .collect()
    }

    /// The membership buckets this chunk covers.
    pub fn buckets(&self) -> std::ops::Range<u16> {
        let start = self.chunk.min(BROADCAST_CHUNKS) * BUCKETS_PER_CHUNK;
        start..start + BUCKETS_PER_CHUNK
    }

    /// Decodes a record's value; `None` for anything else (a poison record).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(bytes)
            .ok()
            .filter(|c| c.v == BROADCAST_CHUNK_VERSION && c.chunk < BROADCAST_CHUNKS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::TOPIC_BUCKETS;

    #[test]
    fn the_chunks_cover_every_bucket_once() {
        let records = BroadcastChunk::all_records(&Tenant::default_tenant(), "b1");
        let mut covered = vec![0; TOPIC_BUCKETS as usize];
        for record in &records {
            let buckets = BroadcastChunk::decode(&record.payload).map(|c| c.buckets());
            assert!(buckets.is_some(), "{record:?}");
            for bucket in buckets.unwrap_or(0..0) {
                covered[bucket as usize] += 1;
            }
        }
        assert!(covered.iter().all(|n| *n == 1));
        assert_eq!(BroadcastChunk::decode(b"{}"), None);
    }
}
