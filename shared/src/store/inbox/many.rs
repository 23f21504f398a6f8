//! A broadcast's creates, many recipients per script call: [`InboxStore::create_groups`] splits a
//! slice's recipients into groups one script may touch (on a Redis Cluster, one slot's; on a
//! single Redis, any), and [`InboxStore::create_many`] creates a group's notifications in one
//! `create_many.lua` call, which runs `create.lua` itself once per recipient. So each recipient
//! gets exactly what [`InboxStore::create_within`] gives (no rate limit): its idempotency record
//! claimed in the same step as the write, the erase epoch, retention and the cap, its seq, exact
//! counts and its change, marked unpublished. Notifications that join a digest are not taken
//! (their create reads the digest's open item first, `digest.rs`).

use chrono::Utc;
use redis::Value;

use super::super::{scripts, StoreError};
use super::reply::to_json;
use super::{
    create_outcome, stale_without_digest, whole_millis, CreateOutcome, IdempotencyClaim,
    InboxStore, Marked, RequestArgs,
};

/// Most recipients in one `create_many.lua` call: the call blocks Redis while it runs (about
/// 50 µs per recipient), so a group stays a few milliseconds long.
pub const GROUP_MAX: usize = 50;

impl InboxStore {
    /// Splits `marked` into groups for [`InboxStore::create_many`], in order, at most
    /// [`GROUP_MAX`] each: on a single Redis, consecutive recipients; on a Redis Cluster, one
    /// recipient each (a user's keys share one slot; two users rarely do).
    pub fn create_groups(&self, marked: Vec<Marked>) -> Vec<Vec<Marked>> {
        let size = if self.conn.is_cluster() { 1 } else { GROUP_MAX };
        let mut groups = Vec::with_capacity(marked.len().div_ceil(size));
        let mut rest = marked.into_iter().peekable();
        while rest.peek().is_some() {
            groups.push(rest.by_ref().take(size).collect());
        }
        groups
    }

    /// Creates `group`'s notifications, each under `sender`'s `claim` on its recipient's
    /// idempotency record, in one script call (see the module header): one outcome per
    /// notification, in order. The call as a whole fails for a Redis error (a transient one, or
    /// a script error: the recipients before the failing one may be written, and a retry
    /// replays them). A notification that joins a digest is refused ([`StoreError::Corrupt`]):
    /// create it with [`InboxStore::create_within`].
    pub async fn create_many(
        &self,
        group: &[Marked],
        sender: &str,
        claim: &IdempotencyClaim,
    ) -> Result<Vec<Result<CreateOutcome, StoreError>>, StoreError> {
        if group.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let created_at = whole_millis(now);
        let mut invocation = scripts::CREATE_MANY.prepare_invoke();
        invocation
            .arg(&claim.body_hash)
            .arg(self.settings.idempotency_ttl.as_millis() as u64)
            .arg(created_at.timestamp_millis())
            .arg(self.settings.inbox_cap)
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .arg(&claim.key);
        let mut envelopes = Vec::with_capacity(group.len());
        for Marked(new) in group {
            let id = uuid::Uuid::now_v7().to_string();
            let notification = new.clone().into_notification(id, 0, created_at);
            if notification.digest.is_some() {
                return Err(StoreError::Corrupt(
                    "create_many: a notification that joins a digest".into(),
                ));
            }
            let request = RequestArgs::new(&self.keys, &new.user_id, sender, Some(claim), None);
            let keys = self.keys.user(&new.user_id);
            let envelope = self.created_envelope(&notification);
            invocation
                .key(&keys.inbox()[..])
                .key(&request.idem_key)
                .key(keys.erased())
                .key(keys.idempotency_index())
                .arg(&notification.id)
                .arg(&notification.kind)
                .arg(to_json(&notification))
                .arg(to_json(&envelope))
                .arg(
                    notification
                        .expires_at
                        .map_or_else(String::new, |at| at.timestamp_millis().to_string()),
                );
            envelopes.push(envelope);
        }
        let replies: Vec<Value> = invocation.invoke_async(&mut self.conn.clone()).await?;
        if replies.len() != envelopes.len() {
            return Err(StoreError::Corrupt(format!(
                "create_many replied {} outcomes for {} recipients",
                replies.len(),
                envelopes.len()
            )));
        }
        Ok(replies
            .into_iter()
            .zip(envelopes)
            .map(|(reply, envelope)| {
                let Value::Array(reply) = reply else {
                    return Err(StoreError::Corrupt(format!(
                        "create_many replied {reply:?}"
                    )));
                };
                create_outcome(&reply, envelope, Some(claim), now)?.ok_or_else(stale_without_digest)
            })
            .collect())
    }
}
