//! Change-log records: how a committed change is stored, and how it is read back as the envelope
//! to publish or to send to a client.
//!
//! Layout (written by `append_change` in `prelude.lua`):
//! `<seq>\n<countsJSON>\n<patchJSON>\n<idempotencyKey>\n<writtenMs>\n<envelopeJSON>`.
//! The envelope is written before the script runs, so it holds seq 0 and empty counts; the script
//! supplies those (and, for updates, the changed fields), and [`Change::from_record`] stamps them in.

use serde::Deserialize;

use crate::model::{Counts, FlagsPatch};
use crate::protocol::envelope::FirstEngagement;
use crate::protocol::{Envelope, Event};

use super::StoreError;

/// A change the store has committed. Publish it to Kafka, then mark it published; until then the
/// outbox relay owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub envelope: Envelope,
    /// The `Idempotency-Key` of the request that caused it, sent as a Kafka header.
    pub idempotency_key: Option<String>,
    /// When Redis committed it (Redis clock, ms since the epoch).
    pub written_at_ms: i64,
}

impl Change {
    pub fn seq(&self) -> u64 {
        self.envelope.seq
    }

    pub(crate) fn from_record(record: &str) -> Result<Change, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("change record: {what}"));
        let mut parts = record.splitn(6, '\n');
        let mut next = |what: &str| parts.next().ok_or_else(|| corrupt(what));
        let seq: u64 = next("seq")?.parse().map_err(|_| corrupt("seq"))?;
        let counts = parse_counts(next("counts")?)?;
        let patch = next("patch")?;
        let idempotency_key = Some(next("idempotency key")?)
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        let written_at_ms = next("written at")?
            .parse()
            .map_err(|_| corrupt("written at"))?;
        let mut envelope =
            Envelope::decode(next("envelope")?.as_bytes()).map_err(|e| corrupt(&e.to_string()))?;
        if let Event::NotificationUpdated { changes, first, .. } = &mut envelope.event {
            (*changes, *first) = parse_stored_patch(patch)?;
        }
        envelope.stamp(seq, counts);
        Ok(Change {
            envelope,
            idempotency_key,
            written_at_ms,
        })
    }
}

/// The patch of an update as `update.lua` stores it: the changed flags and, under `first`, the
/// engagement that happened for the first time (absent in records written before it existed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPatch {
    #[serde(default)]
    read: Option<bool>,
    #[serde(default)]
    seen: Option<bool>,
    #[serde(default)]
    archived: Option<bool>,
    #[serde(default)]
    first: Option<FirstEngagement>,
}

pub(crate) fn parse_stored_patch(
    json: &str,
) -> Result<(FlagsPatch, Option<FirstEngagement>), StoreError> {
    let p: StoredPatch = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("patch {json:?}: {e}")))?;
    let changes = FlagsPatch {
        read: p.read,
        seen: p.seen,
        archived: p.archived,
    };
    Ok((changes, p.first))
}

/// Parses counts as `counts_json` in `prelude.lua` writes them.
pub(crate) fn parse_counts(json: &str) -> Result<Counts, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("counts {json:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_stamped_with_seq_counts_and_patch() {
        let env = Envelope::new(
            "alice",
            Event::NotificationUpdated {
                id: "n1".into(),
                changes: FlagsPatch::default(),
                first: None,
                counts: Counts::default(),
                digest: None,
            },
        );
        let record = format!(
            "9\n{}\n{}\nkey-1\n1700000000000\n{}",
            r#"{"unread":2,"unseen":1,"total":3,"byType":{"x":2},"version":9}"#,
            r#"{"read":true,"first":{"read":true}}"#,
            String::from_utf8(env.encode()).unwrap_or_default()
        );
        let change = Change::from_record(&record).ok();
        let change = change.as_ref();
        assert_eq!(change.map(Change::seq), Some(9));
        assert_eq!(
            change.and_then(|c| c.idempotency_key.as_deref()),
            Some("key-1")
        );
        match change.map(|c| &c.envelope.event) {
            Some(Event::NotificationUpdated {
                changes,
                first,
                counts,
                ..
            }) => {
                assert_eq!(changes.read, Some(true));
                assert_eq!(
                    *first,
                    Some(FirstEngagement {
                        read: true,
                        seen: false
                    })
                );
                assert_eq!(
                    (counts.unread, counts.version, counts.by_type.get("x")),
                    (2, 9, Some(&2))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Change::from_record("garbage").is_err());
    }
}
