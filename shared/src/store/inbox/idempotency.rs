//! `Idempotency-Key`: one key names one request of one sender, whatever its recipients.
//!
//! A create with a key runs in two steps:
//! 1. [`InboxStore::claim_request`], before anything is written and after the sender's rate
//!    limit (same script): the sender's record
//!    (`{s:<sender>}:idem:<hash(key)>`, its own slot) takes the request's hash (body, and so its
//!    recipients) if the key is new; the same hash again is a retry; another hash is a conflict,
//!    and the request must write nothing.
//! 2. One create per recipient, each with its own record in the recipient's slot
//!    ([`IdempotencyClaim`], claimed inside the create script): a recipient already served by an
//!    earlier attempt replays its notification, one not yet served is created. So a retry of a
//!    request that failed half-way completes what is missing and answers as a complete first
//!    attempt would have, with the same ids and seqs, and concurrent retries create each
//!    recipient's notification once.
//!
//! Both records live for `IDEMPOTENCY_TTL`. The sender's is written first, so it also expires
//! first, by at most the first request's duration: only a different request reusing the key at
//! that very moment could meet a recipient's record after writing others (its create then
//! answers `Conflict` for that recipient).

use redis::{AsyncCommands, Value};

use crate::config::RateLimit;
use crate::model::Flags;

use super::super::{scripts, StoreError};
use super::reply::{int, parse_doc, text};
use super::{CreateOutcome, IdempotencyClaim, InboxStore};

/// What the sender's claim of a key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClaim {
    /// The key was new: this request owns it.
    First,
    /// The same request (same hash) claimed the key before: complete and replay it.
    Retry,
    /// A different request claimed the key: write nothing (422).
    Conflict,
    /// The sender is over its rate limit: nothing consumed, nothing claimed.
    Limited { retry_after: std::time::Duration },
}

impl InboxStore {
    /// Claims `key` for `sender`'s request whose hash is `request_hash` (step 1 above), within
    /// the sender's rate `limit` (checked first, in the same script on the sender's slot, so an
    /// idempotent request costs no separate rate-limit round trip).
    pub async fn claim_request(
        &self,
        sender: &str,
        key: &str,
        request_hash: &str,
        limit: RateLimit,
    ) -> Result<RequestClaim, StoreError> {
        let reply: Vec<Value> = scripts::CLAIM_REQUEST
            .key(self.keys.sender_idempotency(sender, key))
            .key(self.keys.sender_rate(sender))
            .arg(request_hash)
            .arg(self.settings.idempotency_ttl.as_millis() as u64)
            .arg(limit.emission_interval().as_secs_f64() * 1000.0)
            .arg(limit.burst)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match text(&reply, 0)?.as_str() {
            "first" => Ok(RequestClaim::First),
            "retry" => Ok(RequestClaim::Retry),
            "conflict" => Ok(RequestClaim::Conflict),
            "limited" => Ok(RequestClaim::Limited {
                retry_after: std::time::Duration::from_millis(int(&reply, 1)?.max(1)),
            }),
            other => Err(StoreError::Corrupt(format!(
                "claim-request replied {other}"
            ))),
        }
    }

    /// What an earlier attempt of a retried request did for `user`: `Replayed` with the original
    /// notification, `Conflict` if the recipient's record belongs to another request, `None` if
    /// nothing was created for `user` yet. A read, so a retry can answer a served recipient
    /// before anything that would refuse a new create (a rate limit); the create script still
    /// decides atomically for the rest.
    pub async fn replayed(
        &self,
        sender: &str,
        user: &str,
        claim: &IdempotencyClaim,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let record: Option<String> = self
            .conn
            .clone()
            .get(self.keys.user(user).idempotency(sender, &claim.key))
            .await?;
        let Some(record) = record else {
            return Ok(None);
        };
        match record.split_once('\n') {
            Some((hash, original)) if hash == claim.body_hash => Ok(Some(CreateOutcome::Replayed(
                parse_doc(original, Flags::default())?,
            ))),
            Some(_) => Ok(Some(CreateOutcome::Conflict)),
            None => Err(StoreError::Corrupt(
                "idempotency record without a hash".into(),
            )),
        }
    }

    /// Records that `user` is skipped by the request `claim` names (a broadcast to a user who
    /// muted its topic), unless the user's record already exists: the first decision for a
    /// recipient stands, so a retry of a create after a skip answers `Conflict` (skipped) and a
    /// skip after a create answers `Replayed` (created). `None` when this call recorded the skip.
    pub async fn record_skip(
        &self,
        sender: &str,
        user: &str,
        claim: &IdempotencyClaim,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let record = format!("{}\n0\n{{}}", skip_hash(&claim.body_hash));
        let previous: Option<String> = redis::cmd("SET")
            .arg(self.keys.user(user).idempotency(sender, &claim.key))
            .arg(record)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(self.settings.idempotency_ttl.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(previous) = previous else {
            return Ok(None);
        };
        match previous.split_once('\n') {
            Some((hash, original)) if hash == claim.body_hash => Ok(Some(CreateOutcome::Replayed(
                parse_doc(original, Flags::default())?,
            ))),
            Some(_) => Ok(Some(CreateOutcome::Conflict)),
            None => Err(StoreError::Corrupt(
                "idempotency record without a hash".into(),
            )),
        }
    }
}

/// The hash a skip record holds for the request hashed `body_hash`: never a request's own hash.
fn skip_hash(body_hash: &str) -> String {
    format!("skip:{body_hash}")
}
