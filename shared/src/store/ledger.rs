//! [`PushLedger`]: what the `push` function did for each (notification, channel), and the retry
//! schedule of sends that must wait (quiet hours, a long `Retry-After`).
//!
//! **Send records** (`{u:<id>}:sends`, one field per `<notificationId>|<CHANNEL>`): each holds
//! the *hop* it was written at (0 for the record from Kafka, n for the n-th trip through the
//! retry schedule), the status, and the outcome event until Kafka has acknowledged it. `push`
//! handles a (notification, channel) at hop h only if no record of hop ≥ h exists, so:
//! - a redelivered Kafka record, or a retry entry drained twice, sends nothing again and emits no
//!   second outcome;
//! - an outcome whose acknowledgement was lost is re-emitted from the record (same event id),
//!   not re-derived by sending again.
//!
//! Records are pruned after 3 days, longer than the topic's retention (24 h) plus the longest
//! deferral (quiet hours, < 24 h).
//!
//! **Retry schedule**: one index `{push}:due` (member `<userId>\n<entryId>[ <tenant>]`, score = due time in
//! ms) and the entries themselves in the user's slot (`{u:<id>}:retry`). The entry is written
//! first, the index second; a drain *claims* due members by moving their score a lease ahead
//! ([`PushLedger::claim_due`]), and removes entry and member only after handling them, so a crashed
//! drain's entries come due again when the lease ends. Entry ids are deterministic per
//! (notification, channel, hop), so scheduling the same retry twice keeps one entry.
//!
//! **Badge window** (`{u:<id>}:badge`, [`PushLedger::open_badge_window`]): the user's phones get
//! at most one silent badge update per window; an update asked for while the window is open is
//! put on the retry schedule for the window's end (one entry per user).

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;

use crate::addresses::Contacts;
use crate::model::{Channel, Flags, Notification, Preferences};

use super::contacts::{parse_contacts, parse_subscriptions, StoredSubscription};
use super::devices::{parse_devices, StoredDevice};
use super::inbox::parse_doc;
use super::keys::KeySpace;
use super::scripts::{
    PUSH_ACKNOWLEDGE as ACKNOWLEDGE, PUSH_CLAIM_DUE as CLAIM_DUE, PUSH_RECORD as RECORD,
    PUSH_SCHEDULE,
};
use super::{RedisConn, StoreError};
use crate::tenant::{parse_member, Tenant};

/// How long send records are kept.
pub const SENDS_KEEP: Duration = Duration::from_secs(3 * 86_400);
/// How long retry entries live without a write (a safety net; drains remove them).
const RETRY_TTL: Duration = Duration::from_secs(7 * 86_400);

/// What `push` recorded for one (notification, channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub hop: u32,
    /// The outcome status at that hop (`sent`, `failed`, `suppressed`, `deferred`), or `silent`
    /// for a retry that emits no outcome of its own.
    pub status: String,
    /// The outcome event, while Kafka has not acknowledged it.
    pub pending_outcome: Option<String>,
}

impl SendRecord {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.hop,
            self.status,
            self.pending_outcome.as_deref().unwrap_or("")
        )
    }

    fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, '|');
        let hop = parts.next()?.parse().ok()?;
        let status = parts.next()?.to_owned();
        let pending = parts.next().unwrap_or("");
        Some(SendRecord {
            hop,
            status,
            pending_outcome: (!pending.is_empty()).then(|| pending.to_owned()),
        })
    }
}

/// Everything `push` needs about one user, read in one round trip.
#[derive(Debug, Clone, Default)]
pub struct ChannelView {
    pub preferences: Preferences,
    pub contacts: Contacts,
    pub subscriptions: Vec<StoredSubscription>,
    /// The user's devices as stored (not yet checked against the token index:
    /// [`DeviceBook::owned`](super::DeviceBook::owned)).
    pub devices: Vec<StoredDevice>,
    /// The user's unread count (`{u:<id>}:meta` `unread`) when the view was read: the badge.
    pub unread: u64,
    /// Send records by field ([`PushLedger::field`]), for the fields asked for.
    pub records: HashMap<String, SendRecord>,
    /// The user's last seq when they were erased (0: never): a notification at or below it is
    /// from before the erase, and `push` does nothing for it (`erase.rs`).
    pub erased_seq: u64,
}

/// erase marker, prefs, contacts, subscriptions, devices, unread.
type ViewHead = (
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Option<u64>,
);
/// The same and the send records.
type ViewReply = (
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Option<u64>,
    Vec<Option<String>>,
);

/// A user's send records (by field) and retry entries' texts (by entry id).
pub type UserRecords = (Vec<(String, SendRecord)>, Vec<(String, String)>);

/// A claimed retry-schedule member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    /// The user's tenant (the member's suffix; none before tenants: the default tenant).
    pub tenant: Tenant,
    pub user_id: String,
    pub entry_id: String,
    member: String,
}

/// The ledger. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PushLedger {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl PushLedger {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        PushLedger { conn, keys }
    }

    /// The send-record field of a (notification, channel).
    pub fn field(notification_id: &str, channel: Channel) -> String {
        format!("{notification_id}|{}", channel.as_str())
    }

    /// Preferences, contacts, subscriptions, devices, the unread count and the send records of
    /// `fields`: one round trip.
    pub async fn view(&self, user_id: &str, fields: &[String]) -> Result<ChannelView, StoreError> {
        let user = self.keys.user(user_id);
        let mut pipe = redis::pipe();
        pipe.get(user.erased())
            .get(user.prefs())
            .get(user.contacts())
            .hgetall(user.push_subscriptions())
            .hgetall(user.devices())
            .hget(user.meta(), "unread");
        if !fields.is_empty() {
            pipe.cmd("HMGET").arg(user.sends()).arg(fields);
        }
        let mut conn = self.conn.clone();
        let (erased, prefs, contacts, subs, devices, unread, records) = if fields.is_empty() {
            let (e, p, c, s, d, u): ViewHead = pipe.query_async(&mut conn).await?;
            (e, p, c, s, d, u, Vec::new())
        } else {
            let r: ViewReply = pipe.query_async(&mut conn).await?;
            r
        };
        let preferences = match prefs {
            None => Preferences::default(),
            Some(raw) => serde_json::from_str(&raw)
                .map_err(|e| StoreError::Corrupt(format!("preferences: {e}")))?,
        };
        let records = fields
            .iter()
            .zip(records)
            .filter_map(|(f, raw)| Some((f.clone(), SendRecord::decode(&raw?)?)))
            .collect();
        Ok(ChannelView {
            erased_seq: super::erase::marker_seq(erased.as_deref()),
            preferences,
            contacts: parse_contacts(contacts.as_deref())?,
            subscriptions: parse_subscriptions(user_id, subs),
            devices: parse_devices(user_id, devices),
            unread: unread.unwrap_or(0),
            records,
        })
    }

    /// A notification as the inbox holds it now (flags not applied), or `None` once it is gone:
    /// what a digest item's close renders.
    pub async fn notification(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<Notification>, StoreError> {
        let doc: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.user(user_id).docs(), id)
            .await?;
        doc.map(|d| parse_doc(&d, Flags::default())).transpose()
    }

    /// Writes the send records of the user's notification of `seq` (a record never replaces one
    /// of a later hop) and prunes old ones; writes nothing if the user was erased after that
    /// notification (checked in the same script, `erase.rs`).
    pub async fn record(
        &self,
        user_id: &str,
        seq: u64,
        records: &[(String, SendRecord)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let user = self.keys.user(user_id);
        let mut invocation = RECORD.key(user.sends());
        invocation
            .key(user.sends_at())
            .key(user.erased())
            .arg(now_ms)
            .arg(SENDS_KEEP.as_millis() as i64)
            .arg(SENDS_KEEP.as_secs() as i64 + 3_600)
            .arg(seq);
        for (field, record) in records {
            invocation.arg(field).arg(record.encode());
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Kafka acknowledged these records' outcomes: drop the copies kept for re-emission.
    pub async fn acknowledge(
        &self,
        user_id: &str,
        fields: &[(String, u32)],
    ) -> Result<(), StoreError> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut invocation = ACKNOWLEDGE.key(self.keys.user(user_id).sends());
        for (field, hop) in fields {
            invocation.arg(field).arg(hop);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// The `seq` of an entry about the user's state now rather than one notification (a badge
    /// update): after any erase, so [`schedule`](Self::schedule) always writes it.
    pub const CURRENT_STATE: u64 = u64::MAX;

    /// Puts an entry for the user's notification of `seq` on the retry schedule, due at `due_ms`
    /// (entry first, then the index); nothing if the user was erased after that notification
    /// (checked with the entry's write, `erase.rs`).
    pub async fn schedule(
        &self,
        user_id: &str,
        seq: u64,
        entry_id: &str,
        entry: &str,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let user = self.keys.user(user_id);
        let written: i64 = PUSH_SCHEDULE
            .key(user.retry())
            .key(user.erased())
            .arg(entry_id)
            .arg(entry)
            .arg(RETRY_TTL.as_secs() as i64)
            .arg(seq)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if written == 0 {
            return Ok(());
        }
        let _: i64 = self
            .conn
            .clone()
            .zadd(
                self.keys.push_due(),
                member(self.keys.tenant(), user_id, entry_id),
                due_ms,
            )
            .await?;
        Ok(())
    }

    /// Claims up to `limit` entries due at `now_ms` for `lease`.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DueEntry>, StoreError> {
        let members: Vec<String> = CLAIM_DUE
            .key(self.keys.push_due())
            .arg(now_ms)
            .arg(lease.as_millis() as i64)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                let (tenant, id) = parse_member(&m)?;
                let (user, entry) = id.split_once('\n')?;
                Some(DueEntry {
                    tenant: tenant.clone(),
                    user_id: user.to_owned(),
                    entry_id: entry.to_owned(),
                    member: m.clone(),
                })
            })
            .collect())
    }

    /// A scheduled entry's text, if it still exists.
    pub async fn entry(&self, due: &DueEntry) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .clone()
            .hget(
                self.keys.for_tenant(&due.tenant).user(&due.user_id).retry(),
                &due.entry_id,
            )
            .await?)
    }

    /// Removes a handled entry: the entry, then its index member.
    pub async fn finish(&self, due: &DueEntry) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .hdel(
                self.keys.for_tenant(&due.tenant).user(&due.user_id).retry(),
                &due.entry_id,
            )
            .await?;
        let _: i64 = self
            .conn
            .clone()
            .zrem(self.keys.push_due(), &due.member)
            .await?;
        Ok(())
    }

    /// Opens the user's badge window (`{u:<id>}:badge`, `SET NX PX`: the window is Redis's own
    /// expiry, so every instance sees the same one) unless one is open. `None`: opened, send the
    /// badge update now; else how long the open window has left, when the trailing update is due.
    pub async fn open_badge_window(
        &self,
        user_id: &str,
        window: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        let key = self.keys.user(user_id).badge();
        let (opened, left_ms): (Option<String>, i64) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis() as u64)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(match opened {
            Some(_) => None,
            // Expired in between (-2): due now.
            None => Some(Duration::from_millis(left_ms.max(0) as u64)),
        })
    }

    /// Every send record of the user (by field, [`PushLedger::field`]) and every retry entry's
    /// text (by entry id): what the user's export shows of the ledger.
    pub async fn user_records(&self, user_id: &str) -> Result<UserRecords, StoreError> {
        let user = self.keys.user(user_id);
        type Fields = Vec<(String, String)>;
        let (sends, retries): (Fields, Fields) = redis::pipe()
            .hgetall(user.sends())
            .hgetall(user.retry())
            .query_async(&mut self.conn.clone())
            .await?;
        let sends = sends
            .into_iter()
            .filter_map(|(field, raw)| Some((field, SendRecord::decode(&raw)?)))
            .collect();
        Ok((sends, retries))
    }

    /// Every scheduled member with its due time (ms), earliest first (tests, tools).
    pub async fn scheduled(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let all: Vec<(String, f64)> = self
            .conn
            .clone()
            .zrange_withscores(self.keys.push_due(), 0, -1)
            .await?;
        Ok(all.into_iter().map(|(m, s)| (m, s as i64)).collect())
    }
}

/// The `{push}:due` member of a user's retry entry: `<userId>\n<entryId>`, with the tenant's
/// suffix ([`crate::tenant::member`]) outside the default tenant.
pub(crate) fn member(tenant: &Tenant, user_id: &str, entry_id: &str) -> String {
    crate::tenant::member(tenant, &format!("{user_id}\n{entry_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_records_round_trip_with_and_without_a_pending_outcome() {
        let r = SendRecord {
            hop: 2,
            status: "deferred".into(),
            pending_outcome: Some(r#"{"a":"x|y"}"#.into()),
        };
        assert_eq!(SendRecord::decode(&r.encode()), Some(r));
        let acked = SendRecord {
            hop: 0,
            status: "sent".into(),
            pending_outcome: None,
        };
        assert_eq!(SendRecord::decode("0|sent|"), Some(acked));
        assert_eq!(SendRecord::decode("x|sent|"), None);
    }
}
