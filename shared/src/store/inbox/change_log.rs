//! The change log's reads and acknowledgements: changes after a seq (a WebSocket `sync`), the
//! unpublished changes (the outbox relay), and marking changes published.

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use redis::{AsyncCommands, Value};

use crate::limits::PAGE_MAX_BYTES;

use super::super::record::Change;
use super::super::{scripts, StoreError};
use super::reply::{int, text};
use super::{ChangesPage, InboxStore};

impl InboxStore {
    /// The changes after `since`, oldest first: at most `limit` and, past the first, at most
    /// [`PAGE_MAX_BYTES`] of them as stored. Continue from the last one's seq.
    pub async fn changes(
        &self,
        user_id: &str,
        since: u64,
        limit: usize,
    ) -> Result<ChangesPage, StoreError> {
        let keys = self.keys.user(user_id);
        let reply: Vec<Value> = scripts::CHANGES
            .key(&keys.inbox()[..])
            .arg(since)
            .arg(limit)
            .arg(PAGE_MAX_BYTES)
            .arg(self.eviction_template(user_id))
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let head = int(&reply, 1)?;
        match text(&reply, 0)?.as_str() {
            "resync" => {
                self.after_evictions(user_id, int(&reply, 2)?).await?;
                Ok(ChangesPage::Resync { head })
            }
            "ok" => {
                self.after_evictions(user_id, int(&reply, 3)?).await?;
                let records = match reply.get(2) {
                    Some(Value::Array(records)) => records.as_slice(),
                    _ => &[],
                };
                let changes = (0..records.len())
                    .map(|i| Ok(Change::from_record(&text(records, i)?)?.envelope))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let up_to = changes.last().map_or(since, |c| c.seq);
                Ok(ChangesPage::Changes {
                    changes,
                    up_to,
                    head,
                })
            }
            other => Err(StoreError::Corrupt(format!("changes replied {other}"))),
        }
    }

    /// The user's unpublished changes, lowest seq first, and Redis's clock (ms) when read.
    pub async fn pending(
        &self,
        user_id: &str,
        max: usize,
    ) -> Result<(i64, Vec<Change>), StoreError> {
        let keys = self.keys.user(user_id);
        let reply: Vec<Value> = scripts::PENDING
            .key(&keys.inbox()[..])
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let now = int(&reply, 0)? as i64;
        let changes = (1..reply.len())
            .map(|i| Change::from_record(&text(&reply, i)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((now, changes))
    }

    /// Records that Kafka acknowledged these changes; the log may trim them from now on.
    pub async fn mark_published(&self, user_id: &str, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .conn
            .clone()
            .zrem(self.keys.user(user_id).unpub(), seqs)
            .await?;
        Ok(())
    }

    /// [`InboxStore::mark_published`] of many users (each with its seqs): on a single Redis one
    /// script call per [`MARK_PUBLISHED_GROUP`] users, on a Redis Cluster one call per user;
    /// the calls run concurrently.
    pub async fn mark_published_many(
        &self,
        marks: &[(String, Vec<u64>)],
    ) -> Result<(), StoreError> {
        let calls: Vec<BoxFuture<'_, Result<(), StoreError>>> = if self.conn.is_cluster() {
            marks
                .iter()
                .map(|(user, seqs)| self.mark_published(user, seqs).boxed())
                .collect()
        } else {
            marks
                .chunks(MARK_PUBLISHED_GROUP)
                .map(|group| {
                    let mut invocation = scripts::MARK_PUBLISHED_MANY.prepare_invoke();
                    for (user, seqs) in group.iter().filter(|(_, seqs)| !seqs.is_empty()) {
                        invocation
                            .key(self.keys.user(user).unpub())
                            .arg(seqs.len())
                            .arg(seqs);
                    }
                    let mut conn = self.conn.clone();
                    async move {
                        let _: i64 = invocation.invoke_async(&mut conn).await?;
                        Ok(())
                    }
                    .boxed()
                })
                .collect()
        };
        let results: Vec<Result<(), StoreError>> =
            stream::iter(calls).buffer_unordered(32).collect().await;
        results.into_iter().collect()
    }
}

/// Most users in one `mark_published_many.lua` call.
pub const MARK_PUBLISHED_GROUP: usize = 100;
