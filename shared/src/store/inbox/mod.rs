//! [`InboxStore`]: one user's inbox, counts, change log and preferences.
//!
//! Every method takes the user id it acts for and touches only that user's keys: isolation
//! between users is structural. Mutations return the committed [`Change`] for the caller to
//! publish (see [`crate::outbox::Publisher`]).
//!
//! Split by job: this file holds the types and the user-facing reads and writes;
//! `change_log.rs` the change log (resume and the outbox relay); `idempotency.rs` the
//! `Idempotency-Key` claims (the one record outside the user's slot: the sender's claim, in the
//! sender's); `digest.rs` digest items (a create that opens one, or updates the open one);
//! `reply.rs` the decoding of the scripts' replies.
//!
//! Pages ([`InboxStore::list`], [`InboxStore::changes`]) are bounded by count and by
//! [`crate::limits::PAGE_MAX_BYTES`] of stored items, and always hold at least one item when
//! there is one: the cursor continues exactly after the last item returned.

use chrono::{DateTime, TimeZone, Utc};
use redis::{AsyncCommands, Value};

use crate::config::{InboxSettings, RateLimit};
use crate::digest::{Digest, DigestItem, DigestRequest};
use crate::escalation::EscalationStep;
use crate::limits::PAGE_MAX_BYTES;
use crate::model::{Channel, Counts, Flags, FlagsPatch, Notification, Preferences, Priority};
use crate::protocol::{Envelope, Event};

use super::keys::{KeySpace, UserKeys};
use super::outbox_index::OutboxIndex;
use super::record::{parse_counts, parse_stored_patch, Change};
use super::{scripts, RedisConn, StoreError};

mod change_log;
mod digest;
mod idempotency;
mod many;
mod reply;

pub use idempotency::RequestClaim;

use reply::{int, state_bits, text, to_json};
pub(crate) use reply::{parse_doc, state_type};

/// A validated notification to create (stored as JSON inside a scheduled job and as a
/// broadcast's template).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewNotification {
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub channels: Vec<Channel>,
    pub priority: Priority,
    pub action_url: Option<String>,
    pub group_key: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Escalation steps ([`crate::escalation`]).
    pub escalate: Option<Vec<EscalationStep>>,
    /// The digest it joins ([`crate::digest`]); ignored for `urgent` ones, which bypass digests.
    pub digest: Option<DigestRequest>,
}

impl NewNotification {
    /// The notification as stored: unread, unseen, not archived. The one constructor, for the
    /// store and for callers that need its shape before writing (the API's size check).
    pub fn into_notification(
        self,
        id: String,
        seq: u64,
        created_at: DateTime<Utc>,
    ) -> Notification {
        let digest = self
            .digest
            .as_ref()
            .filter(|_| self.priority != Priority::Urgent)
            .map(|d| {
                let item = DigestItem {
                    title: self.title.clone(),
                    body: self.body.clone(),
                    data: self.data.clone(),
                };
                Digest::open(d, item, created_at)
            });
        Notification {
            id,
            seq,
            user_id: self.user_id,
            kind: self.kind,
            title: self.title,
            body: self.body,
            data: self.data,
            channels: self.channels,
            priority: self.priority,
            action_url: self.action_url,
            group_key: self.group_key,
            expires_at: self.expires_at,
            read: false,
            seen: false,
            archived: false,
            created_at,
            escalate: self.escalate,
            digest,
            schedule: None,
        }
    }
}

/// A notification whose recipient is marked in the outbox's dirty index
/// ([`InboxStore::mark_for_create`]): the only way into [`InboxStore::create_within`], so no
/// create commits before its mark.
#[derive(Debug)]
pub struct Marked(NewNotification);

impl Marked {
    pub fn user_id(&self) -> &str {
        &self.0.user_id
    }
}

/// A recipient's share of an idempotent request (see `idempotency.rs`): the key it is recorded
/// under (the header's, or one derived from it per request shape), and the request's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    pub body_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// Written. For an event that joined a digest's open item: that item, as updated, and its
    /// `NOTIFICATION_UPDATED` change.
    Created {
        notification: Notification,
        change: Change,
    },
    /// The same key with the same body was seen before: the original notification, as created.
    Replayed(Notification),
    /// The same key was used with a different body.
    Conflict,
    /// The recipient is over its rate limit ([`InboxStore::create_within`]): nothing written.
    Limited { retry_after: std::time::Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    Missing,
    /// Nothing to change: no seq assigned, nothing to publish.
    Unchanged(Notification),
    Updated {
        notification: Notification,
        change: Change,
    },
}

/// Which notifications a list returns, by read state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusFilter {
    #[default]
    Any,
    Read,
    Unread,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub status: StatusFilter,
    /// `Some(false)` (the default of the HTTP API) hides archived ones; `None` shows both.
    pub archived: Option<bool>,
    pub kind: Option<String>,
    /// Return notifications with a seq below this one (the previous page's last).
    pub before_seq: Option<u64>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Notification>,
    /// The seq to continue below, when there are more.
    pub next_before_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangesPage {
    /// The log no longer reaches back to the requested position: refetch the inbox.
    Resync { head: u64 },
    /// Changes after `since`, oldest first; `up_to` is the last one's seq (or `since`).
    Changes {
        changes: Vec<Envelope>,
        up_to: u64,
        head: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarkAllRead {
    pub counts: Counts,
    /// How many notifications changed.
    pub changed: u64,
    pub change: Option<Change>,
}

/// What `create.lua` and `digest_update.lua` answer when they write nothing: a replay, a
/// conflict, a limited create, or (`None`) a stale digest item.
fn refused(answer: &str, reply: &[Value]) -> Result<Option<CreateOutcome>, StoreError> {
    match answer {
        "replay" => Ok(Some(CreateOutcome::Replayed(parse_doc(
            &text(reply, 1)?,
            Flags::default(),
        )?))),
        "conflict" => Ok(Some(CreateOutcome::Conflict)),
        "limited" => Ok(Some(CreateOutcome::Limited {
            retry_after: std::time::Duration::from_millis(int(reply, 1)?.max(1)),
        })),
        "stale" => Ok(None),
        other => Err(StoreError::Corrupt(format!("create replied {other}"))),
    }
}

/// What `create.lua` answered (`reply`) for the notification `envelope` creates (unstamped):
/// `None` for a stale digest item.
fn create_outcome(
    reply: &[Value],
    mut envelope: Envelope,
    claim: Option<&IdempotencyClaim>,
    now: DateTime<Utc>,
) -> Result<Option<CreateOutcome>, StoreError> {
    match text(reply, 0)?.as_str() {
        "created" => {
            let (seq, counts) = (int(reply, 1)?, parse_counts(&text(reply, 2)?)?);
            envelope.stamp(seq, counts);
            let Event::NotificationCreated { notification, .. } = &envelope.event else {
                return Err(StoreError::Corrupt(
                    "created a change that is no create".into(),
                ));
            };
            let notification = notification.clone();
            let change = Change {
                envelope,
                idempotency_key: claim.map(|c| c.key.clone()),
                written_at_ms: now.timestamp_millis(),
            };
            Ok(Some(CreateOutcome::Created {
                notification,
                change,
            }))
        }
        other => refused(other, reply),
    }
}

/// A create request's share of the scripts' arguments: the idempotency record and the
/// recipient's rate limit.
struct RequestArgs<'a> {
    claim: Option<&'a IdempotencyClaim>,
    idem_key: String,
    body_hash: &'a str,
    header: &'a str,
    interval_ms: String,
    burst: u32,
}

impl<'a> RequestArgs<'a> {
    fn new(
        keys: &KeySpace,
        user_id: &str,
        sender: &str,
        claim: Option<&'a IdempotencyClaim>,
        limit: Option<RateLimit>,
    ) -> Self {
        let keys = keys.user(user_id);
        let (idem_key, body_hash, header) = match claim {
            Some(c) => (
                keys.idempotency(sender, &c.key),
                c.body_hash.as_str(),
                c.key.as_str(),
            ),
            None => (keys.idempotency(sender, ""), "", ""),
        };
        let (interval_ms, burst) = limit.map_or((String::new(), 0), |l| {
            (
                (l.emission_interval().as_secs_f64() * 1000.0).to_string(),
                l.burst,
            )
        });
        RequestArgs {
            claim,
            idem_key,
            body_hash,
            header,
            interval_ms,
            burst,
        }
    }
}

/// The entity tag of stored preferences (`raw`: the stored text, `None` when none are stored):
/// a digest of the text, quoted, so every change (a PUT, a one-click unsubscribe) changes it.
fn preferences_etag(raw: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(raw.unwrap_or("").as_bytes());
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// The inbox store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InboxStore {
    conn: RedisConn,
    keys: KeySpace,
    settings: InboxSettings,
    outbox: OutboxIndex,
}

impl InboxStore {
    pub fn new(conn: RedisConn, keys: KeySpace, settings: InboxSettings) -> Self {
        let outbox = OutboxIndex::new(conn.clone(), keys.clone());
        InboxStore {
            conn,
            keys,
            settings,
            outbox,
        }
    }

    pub fn settings(&self) -> &InboxSettings {
        &self.settings
    }

    pub(crate) fn keys_mut(&mut self) -> &mut KeySpace {
        &mut self.keys
    }

    /// [`crate::store::TenantScoped::for_tenant`]: the inbox and its outbox index both `tenant`'s.
    pub(crate) fn scoped(&self, tenant: &crate::tenant::Tenant) -> Self {
        use crate::store::TenantScoped;
        InboxStore {
            conn: self.conn.clone(),
            keys: self.keys.for_tenant(tenant),
            settings: self.settings.clone(),
            outbox: self.outbox.for_tenant(tenant),
        }
    }

    /// The tenant whose inboxes this names.
    pub fn tenant(&self) -> &crate::tenant::Tenant {
        self.keys.tenant()
    }

    pub fn outbox(&self) -> &OutboxIndex {
        &self.outbox
    }

    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// When `user_id` was last erased (ms; 0: never): what a request made before then (a
    /// scheduled send) must not bring back (`erase.rs`).
    pub async fn erased_at_ms(&self, user_id: &str) -> Result<i64, StoreError> {
        let raw: Option<String> = self
            .conn
            .clone()
            .get(self.keys.user(user_id).erased())
            .await?;
        Ok(super::erase::marker_time_ms(raw.as_deref()))
    }

    fn retention_ms(&self) -> u64 {
        self.settings.retention.as_millis() as u64
    }

    fn log_cap(&self) -> u32 {
        self.settings.change_log_cap
    }

    /// Creates a notification. With a claim, the recipient's record is claimed in the same script
    /// as the write: a concurrent retry either creates or replays, never both. The sender's claim
    /// ([`InboxStore::claim_request`]) comes first.
    pub async fn create(
        &self,
        sender: &str,
        new: NewNotification,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let marked = self.mark_for_create(new).await?;
        self.create_within(marked, sender, claim, None).await
    }

    /// Marks the recipient of `new` in the outbox's dirty index (`outbox.rs`, step 1), which
    /// every create needs before it commits. Its own call so that a caller can overlap it with
    /// checks of its own (the API's per-sender limit): if the caller then creates nothing, the
    /// relay finds nothing to publish and clears the mark.
    pub async fn mark_for_create(&self, new: NewNotification) -> Result<Marked, StoreError> {
        self.outbox.mark_dirty(&new.user_id).await?;
        Ok(Marked(new))
    }

    /// [`InboxStore::mark_for_create`] of many notifications in one call (a broadcast's slice).
    pub async fn mark_many_for_create(
        &self,
        news: Vec<NewNotification>,
    ) -> Result<Vec<Marked>, StoreError> {
        let users: Vec<&str> = news.iter().map(|n| n.user_id.as_str()).collect();
        self.outbox.mark_dirty_many(&users).await?;
        Ok(news.into_iter().map(Marked).collect())
    }

    /// [`InboxStore::create`] of a [`Marked`] notification, within the recipient's rate `limit`
    /// (its key is the user's `rate`), checked in the create's own script, after the claim (a
    /// replay or a conflict consumes nothing) and before anything is written:
    /// [`CreateOutcome::Limited`] when over it.
    pub async fn create_within(
        &self,
        marked: Marked,
        sender: &str,
        claim: Option<&IdempotencyClaim>,
        limit: Option<RateLimit>,
    ) -> Result<CreateOutcome, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.create_with_id(marked, id, None, sender, claim, limit)
            .await
    }

    /// [`InboxStore::create_within`] under a given notification `id` (a scheduled send's, fixed
    /// when it was scheduled), showing `schedule` when an optimal send chose the moment.
    pub async fn create_with_id(
        &self,
        marked: Marked,
        id: String,
        schedule: Option<crate::schedule::ScheduleInfo>,
        sender: &str,
        claim: Option<&IdempotencyClaim>,
        limit: Option<RateLimit>,
    ) -> Result<CreateOutcome, StoreError> {
        let Marked(new) = marked;
        let now = Utc::now();
        let created_at = whole_millis(now);
        let mut notification = new.into_notification(id, 0, created_at);
        notification.schedule = schedule;
        let request = RequestArgs::new(&self.keys, &notification.user_id, sender, claim, limit);
        if notification.digest.is_some() {
            return self.join_digest(notification, &request, now).await;
        }
        self.insert(notification, &request, now, None)
            .await?
            .ok_or_else(stale_without_digest)
    }

    /// The `NOTIFICATION_CREATED` envelope of `notification` in this store's tenant, stamped
    /// with its creation time; the create script fills in its `seq` and counts.
    pub(crate) fn created_envelope(&self, notification: &Notification) -> Envelope {
        let mut envelope = Envelope::new(
            &notification.user_id,
            Event::NotificationCreated {
                notification: notification.clone(),
                counts: Counts::default(),
            },
        )
        .in_tenant(self.keys.tenant());
        envelope.occurred_at = notification.created_at;
        envelope
    }

    /// Writes a new notification (`create.lua`); with a digest `guard`, only if the digest's open
    /// item is still the one the caller saw (`None` otherwise: nothing written).
    async fn insert(
        &self,
        notification: Notification,
        request: &RequestArgs<'_>,
        now: DateTime<Utc>,
        guard: Option<&digest::Guard>,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let created_at = notification.created_at;
        let claim = request.claim;
        let doc = to_json(&notification);
        let envelope = self.created_envelope(&notification);
        let keys = self.keys.user(&notification.user_id);
        let reply: Vec<Value> = scripts::CREATE
            .key(&keys.inbox()[..])
            .key(&request.idem_key)
            .key(keys.rate())
            .key(keys.erased())
            .key(keys.idempotency_index())
            .key(keys.digests())
            .arg(&notification.id)
            .arg(&notification.kind)
            .arg(&doc)
            .arg(to_json(&envelope))
            .arg(request.body_hash)
            .arg(self.settings.idempotency_ttl.as_millis() as u64)
            .arg(created_at.timestamp_millis())
            .arg(self.settings.inbox_cap)
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .arg(request.header)
            .arg(
                notification
                    .expires_at
                    .map_or_else(String::new, |at| at.timestamp_millis().to_string()),
            )
            .arg(&request.interval_ms)
            .arg(request.burst)
            .arg(guard.map_or("", |g| g.key.as_str()))
            .arg(guard.map_or("", |g| g.seen.as_str()))
            .arg(guard.map_or(String::new(), |g| g.token.encode()))
            .invoke_async(&mut self.conn.clone())
            .await?;
        create_outcome(&reply, envelope, claim, now)
    }

    /// One notification of this user (`None` once it has expired).
    pub async fn get(&self, user_id: &str, id: &str) -> Result<Option<Notification>, StoreError> {
        let reply: Vec<Value> = scripts::GET
            .key(&self.keys.user(user_id).inbox()[..])
            .arg(id)
            .arg(self.eviction_template(user_id))
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.after_evictions(user_id, int(&reply, 0)?).await?;
        if reply.len() < 3 {
            return Ok(None);
        }
        let state = text(&reply, 2)?;
        Ok(Some(parse_doc(
            &text(&reply, 1)?,
            Flags::from_bits(state_bits(&state)?),
        )?))
    }

    /// One page of the inbox, newest first: at most `query.limit` notifications and, past the
    /// first, at most [`PAGE_MAX_BYTES`] of them as stored.
    pub async fn list(&self, user_id: &str, query: &ListQuery) -> Result<Page, StoreError> {
        let keys = self.keys.user(user_id);
        let status = match query.status {
            StatusFilter::Any => "any",
            StatusFilter::Read => "read",
            StatusFilter::Unread => "unread",
        };
        let archived = match query.archived {
            None => "any",
            Some(true) => "true",
            Some(false) => "false",
        };
        let cursor = query
            .before_seq
            .map_or_else(|| "+inf".to_owned(), |s| s.to_string());
        let min_created = Utc::now().timestamp_millis() - self.retention_ms() as i64;
        let reply: Vec<Value> = scripts::LIST
            .key(&keys.inbox()[..])
            .arg(status)
            .arg(archived)
            .arg(query.kind.as_deref().unwrap_or(""))
            .arg(cursor)
            .arg(query.limit)
            .arg(min_created)
            .arg(PAGE_MAX_BYTES)
            .arg(self.eviction_template(user_id))
            .arg(self.log_cap())
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.after_evictions(user_id, int(&reply, 1)?).await?;
        let more = int(&reply, 0)? == 1;
        let mut items = Vec::with_capacity(reply.len() / 2);
        for i in (2..reply.len()).step_by(2) {
            let bits = int(&reply, i + 1)? as u8;
            items.push(parse_doc(&text(&reply, i)?, Flags::from_bits(bits))?);
        }
        let next_before_seq = if more {
            items.last().map(|n| n.seq)
        } else {
            None
        };
        Ok(Page {
            items,
            next_before_seq,
        })
    }

    /// Applies a flags patch. Reading implies seen. Unchanged flags produce no change.
    pub async fn update(
        &self,
        user_id: &str,
        id: &str,
        patch: FlagsPatch,
    ) -> Result<UpdateOutcome, StoreError> {
        let (set, clear) = patch.masks();
        let event = Event::NotificationUpdated {
            id: id.to_owned(),
            changes: FlagsPatch::default(),
            first: None,
            counts: Counts::default(),
            digest: None,
        };
        let (mut envelope, reply) = self
            .append_change(user_id, event, &scripts::UPDATE, |script| {
                script.arg(id).arg(set).arg(clear);
            })
            .await?;
        match text(&reply, 0)?.as_str() {
            "missing" => Ok(UpdateOutcome::Missing),
            "unchanged" => Ok(UpdateOutcome::Unchanged(parse_doc(
                &text(&reply, 1)?,
                Flags::from_bits(int(&reply, 2)? as u8),
            )?)),
            "updated" => {
                let (seq, counts) = (int(&reply, 1)?, parse_counts(&text(&reply, 2)?)?);
                let notification =
                    parse_doc(&text(&reply, 3)?, Flags::from_bits(int(&reply, 4)? as u8))?;
                let (changes, first) = parse_stored_patch(&text(&reply, 5)?)?;
                if let Event::NotificationUpdated {
                    changes: c,
                    first: f,
                    ..
                } = &mut envelope.event
                {
                    (*c, *f) = (changes, first);
                }
                envelope.stamp(seq, counts);
                Ok(UpdateOutcome::Updated {
                    notification,
                    change: self.committed(envelope),
                })
            }
            other => Err(StoreError::Corrupt(format!("update replied {other}"))),
        }
    }

    /// Deletes a notification. `None` if this user has no such notification.
    pub async fn delete(&self, user_id: &str, id: &str) -> Result<Option<Change>, StoreError> {
        let event = Event::NotificationDeleted {
            id: id.to_owned(),
            counts: Counts::default(),
        };
        let (mut envelope, reply) = self
            .append_change(user_id, event, &scripts::DELETE, |script| {
                script.arg(id);
            })
            .await?;
        match text(&reply, 0)?.as_str() {
            "missing" => Ok(None),
            "deleted" => {
                envelope.stamp(int(&reply, 1)?, parse_counts(&text(&reply, 2)?)?);
                Ok(Some(self.committed(envelope)))
            }
            other => Err(StoreError::Corrupt(format!("delete replied {other}"))),
        }
    }

    /// Marks every unread notification (of `kind`, if given) read.
    pub async fn mark_all_read(
        &self,
        user_id: &str,
        kind: Option<&str>,
    ) -> Result<MarkAllRead, StoreError> {
        let event = Event::AllRead {
            notification_type: kind.map(str::to_owned),
            counts: Counts::default(),
        };
        let (mut envelope, reply) = self
            .append_change(user_id, event, &scripts::MARK_ALL_READ, |script| {
                script.arg(kind.unwrap_or(""));
            })
            .await?;
        match text(&reply, 0)?.as_str() {
            "unchanged" => Ok(MarkAllRead {
                counts: parse_counts(&text(&reply, 1)?)?,
                changed: 0,
                change: None,
            }),
            "updated" => {
                let counts = parse_counts(&text(&reply, 2)?)?;
                envelope.stamp(int(&reply, 1)?, counts.clone());
                Ok(MarkAllRead {
                    counts,
                    changed: int(&reply, 3)?,
                    change: Some(self.committed(envelope)),
                })
            }
            other => Err(StoreError::Corrupt(format!(
                "mark-all-read replied {other}"
            ))),
        }
    }

    /// Records a click on one of the user's notifications. `None` if the user has no such
    /// notification, else whether it is the notification's first click (what analytics counts).
    pub async fn record_click(&self, user_id: &str, id: &str) -> Result<Option<bool>, StoreError> {
        let reply: Vec<Value> = scripts::CLICK
            .key(&self.keys.user(user_id).inbox()[..])
            .arg(id)
            .arg(self.eviction_template(user_id))
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match text(&reply, 0)?.as_str() {
            "missing" => {
                self.after_evictions(user_id, int(&reply, 1)?).await?;
                Ok(None)
            }
            "clicked" => {
                self.after_evictions(user_id, int(&reply, 2)?).await?;
                Ok(Some(int(&reply, 1)? == 1))
            }
            other => Err(StoreError::Corrupt(format!("click replied {other}"))),
        }
    }

    /// The user's exact counts (expired notifications evicted first), at the version (seq) they
    /// are valid for.
    pub async fn counts(&self, user_id: &str) -> Result<Counts, StoreError> {
        let reply: Vec<Value> = scripts::COUNTS
            .key(&self.keys.user(user_id).inbox()[..])
            .arg(self.eviction_template(user_id))
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.after_evictions(user_id, int(&reply, 0)?).await?;
        parse_counts(&text(&reply, 1)?)
    }

    pub async fn preferences(&self, user_id: &str) -> Result<Preferences, StoreError> {
        Ok(self.preferences_with_etag(user_id).await?.0)
    }

    /// The stored preferences and their entity tag ([`preferences_etag`]).
    pub async fn preferences_with_etag(
        &self,
        user_id: &str,
    ) -> Result<(Preferences, String), StoreError> {
        let raw: Option<String> = self
            .conn
            .clone()
            .get(self.keys.user(user_id).prefs())
            .await?;
        let prefs = match &raw {
            None => Preferences::default(),
            Some(raw) => serde_json::from_str(raw)
                .map_err(|e| StoreError::Corrupt(format!("preferences: {e}")))?,
        };
        Ok((prefs, preferences_etag(raw.as_deref())))
    }

    /// Replaces the preferences if their entity tag is still one of `if_match` (`None`: whatever
    /// they are). Compare-and-set on the stored text, so a write in between (a one-click
    /// unsubscribe) is never undone by a stale copy. Returns the new entity tag, or `None` when
    /// `if_match` is stale and nothing was written.
    pub async fn set_preferences_if_match(
        &self,
        user_id: &str,
        prefs: &Preferences,
        if_match: Option<&[&str]>,
    ) -> Result<Option<String>, StoreError> {
        let key = self.keys.user(user_id).prefs();
        let new = to_json(prefs);
        let mut conn = self.conn.clone();
        let Some(expected) = if_match else {
            let _: () = conn.set(&key, &new).await?;
            return Ok(Some(preferences_etag(Some(&new))));
        };
        let current: Option<String> = conn.get(&key).await?;
        if !expected.contains(&preferences_etag(current.as_deref()).as_str()) {
            return Ok(None);
        }
        let set: i64 = scripts::COMPARE_AND_SET
            .key(&key)
            .arg(current.as_deref().unwrap_or(""))
            .arg(&new)
            .invoke_async(&mut conn)
            .await?;
        Ok((set == 1).then(|| preferences_etag(Some(&new))))
    }

    /// Replaces the preferences, whatever they are.
    pub async fn set_preferences(
        &self,
        user_id: &str,
        prefs: &Preferences,
    ) -> Result<(), StoreError> {
        self.set_preferences_if_match(user_id, prefs, None).await?;
        Ok(())
    }

    /// Keys of one user, for tests and tools that inspect the raw layout.
    pub fn user_keys(&self, user_id: &str) -> UserKeys {
        self.keys.user(user_id)
    }

    /// Runs one of the scripts that change a user's existing notifications and append `event`
    /// to their change log (update, delete, mark-all-read). The user is marked dirty in the
    /// outbox before the write, as for every write. The script gets the inbox key, the arguments
    /// `args` adds, then the envelope, the log cap and the retention. Returns the envelope,
    /// unstamped (the caller stamps it from the reply), and the reply.
    async fn append_change(
        &self,
        user_id: &str,
        event: Event,
        script: &redis::Script,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<(Envelope, Vec<Value>), StoreError> {
        let keys = self.keys.user(user_id);
        let envelope = Envelope::new(user_id, event).in_tenant(self.keys.tenant());
        self.outbox.mark_dirty(user_id).await?;
        let mut invocation = script.key(&keys.inbox()[..]);
        args(&mut invocation);
        let reply: Vec<Value> = invocation
            .arg(to_json(&envelope))
            .arg(self.log_cap())
            .arg(self.retention_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((envelope, reply))
    }

    /// What the scripts that may evict expired notifications build each eviction's
    /// `NOTIFICATION_DELETED` envelope from: an empty one of this user, at this time.
    fn eviction_template(&self, user_id: &str) -> String {
        to_json(
            &Envelope::new(
                user_id,
                Event::NotificationDeleted {
                    id: String::new(),
                    counts: Counts::default(),
                },
            )
            .in_tenant(self.keys.tenant()),
        )
    }

    /// After a read that evicted expired notifications: their deletes wait in the log, so the
    /// user is marked dirty for the outbox relay to publish them. (Writes mark the user dirty
    /// before they run, which covers their evictions.)
    async fn after_evictions(&self, user_id: &str, evicted: u64) -> Result<(), StoreError> {
        if evicted > 0 {
            self.outbox.mark_dirty(user_id).await?;
        }
        Ok(())
    }

    fn committed(&self, envelope: Envelope) -> Change {
        Change {
            envelope,
            idempotency_key: None,
            written_at_ms: Utc::now().timestamp_millis(),
        }
    }
}

/// `at` cut to whole milliseconds: a notification's `createdAt` as it is stored and sent.
pub(super) fn whole_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at.timestamp_millis())
        .single()
        .unwrap_or(at)
}

/// The create script answered `stale`, which only a create joining a digest can.
pub(super) fn stale_without_digest() -> StoreError {
    StoreError::Corrupt("create replied stale without a digest".into())
}
