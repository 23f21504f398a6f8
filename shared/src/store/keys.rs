//! The key schema, defined once.
//!
//! | key | type | what |
//! |---|---|---|
//! | `<p>{u:<id>}:meta` | hash | `seq`, `unread`, `unseen`, `total`, `t:<type>` (unread per type), `exp` (the earliest `expiresAt` not yet evicted, ms) |
//! | `<p>{u:<id>}:docs` | hash | notification id → `<seq>\n<notification JSON>` |
//! | `<p>{u:<id>}:flags` | hash | notification id → `<bits>|<createdMs>|<type>[|<expiresMs>]` (bits: see `prelude.lua`) |
//! | `<p>{u:<id>}:all` | zset | notification ids by seq |
//! | `<p>{u:<id>}:unread` | zset | unread notification ids by seq |
//! | `<p>{u:<id>}:log` | zset | change records by seq (capped; see `record.rs`) |
//! | `<p>{u:<id>}:unpub` | zset | seqs of changes not yet acknowledged by Kafka |
//! | `<p>{u:<id>}:idem:<hash>` | string | a recipient's share of an idempotent create: `<request hash>\n<seq>\n<notification JSON>`, 24 h |
//! | `<p>{u:<id>}:idems` | zset | the user's `idem:<hash>` keys by expiry (ms), so an erase finds them without `KEYS`/`SCAN` |
//! | `<p>{u:<id>}:histories` | zset | ids of the user's notifications with an outcome history (`{n:<id>}:outcomes`), by last write (ms), so an erase finds them |
//! | `<p>{u:<id>}:erased` | string | the erase marker: `<seq>|<erasedMs>`, the user's last `seq` when erased; records of a `seq` at or below it are dropped (see `erase.rs`); kept `ERASE_MARKER_TTL` |
//! | `<p>{u:<id>}:prefs` | string | preferences JSON (never expires) |
//! | `<p>{u:<id>}:rate` | string | per-recipient GCRA state |
//! | `<p>{u:<id>}:mutrate` | string | per-user GCRA state of the user's own mutations and WebSocket actions |
//! | `<p>{u:<id>}:conns` | hash | open WebSocket connection id → `<connectedMs>|<tokenExpiresMs>` |
//! | `<p>{u:<id>}:delivered` | zset | seqs `delivery` has fully handled (capped), so a redelivered record is skipped |
//! | `<p>{u:<id>}:delivering` | string | the claim token of the `delivery` invocation handling the user's records now (a lease, see `connections.rs`) |
//! | `<p>{u:<id>}:pushsubs` | hash | Web Push subscription id → subscription JSON (at most 10; never expires) |
//! | `<p>{u:<id>}:devices` | hash | device id → device JSON (platform, token, appId; at most 20; never expires) |
//! | `<p>{dev:<deviceId>}:owner` | string | the user who holds the device (its token) now: a token is on one user at a time (see `devices.rs`) |
//! | `<p>{u:<id>}:contacts` | string | `{email, phone}` JSON (never expires) |
//! | `<p>{u:<id>}:sends` | hash | `<notificationId>|<CHANNEL>` → `<hop>|<status>|<unacknowledged outcome>`: what `push` did (see `ledger.rs`) |
//! | `<p>{u:<id>}:sends:at` | zset | the same fields by record time, to prune `sends` (3 days) |
//! | `<p>{u:<id>}:badge` | string | the user's badge window: set (`NX`, 2 s `PX`) when a silent badge update goes to the user's phones; while it exists, the next update waits on the retry schedule (see `ledger.rs`) |
//! | `<p>{u:<id>}:retry` | hash | retry-schedule entry id → entry JSON (a deferred or throttled send) |
//! | `<p>{u:<id>}:digests` | hash | digest key → `<itemId>|<closesMs>|<count>`: the item each digest key last opened, and the token an update must match (see `inbox/digest.rs`); expires with the inbox |
//! | `<p>{u:<id>}:escalations` | hash | `<notificationId>#<step>` → `<status>|<decidedMs>|<reason>|<dueMs>|<step JSON>`: each escalation step, `pending` until `push` decides it `fired` or `cancelled` (see `escalations.rs`); expires 10 days after its last write |
//! | `<p>{push}:due` | zset | `<userId>\n<entryId>` (a [member](crate::tenant::member): ` <tenant>` appended outside the default tenant) by due time (ms): the retry schedule `push` drains |
//! | `<p>{breaker:<provider>}` | hash | a provider's circuit breaker, shared by every `push` instance: `failures`, `openedAt` (ms), `trialUntil` (ms); expires a while after its last failure (see `breaker.rs`) |
//! | `<p>{t:<key>}` | hash | a topic: `name`, `subscribers` (exact count), `createdAt` (ms); exists while the topic does (never expires) |
//! | `<p>{t:<key>}:m:<bucket>` | hash | one of the topic's [`TOPIC_BUCKETS`] membership buckets: userId → `""`, the user in bucket [`topic_bucket`]`(userId)` (small hashes stay listpacks: see `docs/topics.md`) |
//! | `<p>{topics}` | set | every topic key (what `GET /v1/me/topics` and erasing a user walk) |
//! | `<p>{b:<id>}` | hash | a broadcast: `topic`, `sender`, `status`, `targeted`, `created`, `skipped`, `failed`, `chunks`, `committed`, `maxPerSecond`, `notification` (the template JSON), `createdAt`, `sendAt` (scheduled ones); 7 days (past `sendAt` when scheduled) |
//! | `<p>{b:<id>}:chunks` | set | the broadcast's chunks whose counts are committed (each counted once); 7 days |
//! | `<p>{b:<id>}:rate` | string | the broadcast's `maxPerSecond` GCRA state |
//! | `<p>{c:<connectionId>}` | string | the user of a WebSocket connection, as a [member](crate::tenant::member) (`<userId>`, or `<userId> <tenant>`), for `$disconnect` and the WebSocket actions; global |
//! | `<p>{s:<id>}:rate` | string | per-sender GCRA state |
//! | `<p>{quota}:creates` | string | the tenant's quota of creates per minute: GCRA state (`TENANT_CREATES_PER_MINUTE`, see `ratelimit.rs`); one key per tenant (`{<tenant>/quota}:creates`) |
//! | `<p>{s:<id>}:idem:<hash>` | string | the sender's claim of an `Idempotency-Key`: the hash of the request it was first sent with, 24 h |
//! | `<p>{u:<id>}:engage` | hash | the user's engagement histogram: `h<hour of week>` → decayed weight, `n` → events (see `schedule.rs`); 180 days without an event |
//! | `<p>{engage}:global` | hash | the same for every user together |
//! | `<p>{sched}:due` | zset | scheduled job ids by due time (ms); a claimed job's score is its lease's end; a scheduled broadcast's start is the job `broadcast:<broadcastId>` |
//! | `<p>{sched}:jobs` | hash | job id → job JSON (sender, sendAt, cancelKey, the notification; a broadcast start: sender, sendAt, broadcastId; `tenant` outside the default tenant); once settled, `{sender, sendAt}` |
//! | `<p>{sched}:state` | hash | job id → `scheduled`, `firing`, `sent` or `cancelled` |
//! | `<p>{sched}:done` | zset | settled job ids by settle time, to remove them after 7 days |
//! | `<p>{sched}:ck:<hash>` | set | the pending job ids of one (sender, `cancelKey`) |
//! | `<p>{sched}:idem:<hash>` | string | the job id of one (sender, Idempotency-Key, recipient), 24 h |
//! | `<p>{outbox}:dirty` | zset | users with possibly unpublished changes ([members](crate::tenant::member): `<userId>[ <tenant>]`), by mark time |
//! | `<p>{outbox}:lease` | string | the relay's lease (one relay at a time) |
//! | `<p>{an:<shard>}:wm` | string | analytics: the highest offset of the shard's partition already counted; `<shard>` is `<cluster>:<topic>:<partition>` |
//! | `<p>{an:<shard>}:d:<YYYY-MM-DD>` | hash | analytics: `<type>|<channel>|<outcome>` (the default tenant's) or `<tenant>/<type>|<channel>|<outcome>` → count, for that partition's records of that day (UTC) |
//! | `<p>{an}:shards` | set | analytics: every shard ever counted (what the api sums) |
//! | `<p>{an}:recipients:<YYYY-MM-DD>` | HyperLogLog | analytics: unique recipients of that day |
//! | `<p>{n:<notificationId>}:outcomes` | hash | a notification's outcome history: `<CHANNEL>/<status>` → the first such outcome's entry JSON, with the notification's user and type (at most 28 fields); after its user's erase, only the tombstone field `!erased` (see `erase.rs`) |
//! | `<p>{wh}:hooks` | hash | webhook id → webhook JSON (url, events, secret, createdAt): the tenant's registry |
//! | `<p>{wh}:tenants` | set | global: every tenant other than the default that ever registered a webhook (added on register, never removed), which the `webhooks` function reads to find each tenant's registry and retry schedules; absent in a deployment without tenants |
//! | `<p>{wh:<id>}:ledger` | hash | message id → `<state>|<attempts>` (`queued`, `sent`, `dead`): what the webhook got of each message, so a redelivered record sends nothing again; `dead` is the dead letter |
//! | `<p>{wh:<id>}:messages` | hash | message id → message JSON (its body, type, notification, time): what every attempt and replay sends |
//! | `<p>{wh:<id>}:log` | zset | message ids by event time (ms): the replay window; entries older than `WEBHOOK_RETENTION_HOURS` (7 days) that are not queued are pruned with their ledger entry and message |
//! | `<p>{wh:<id>}:q:<notificationId>` | list | the notification's messages waiting, in order; the head is being sent or waits for its retry |
//! | `<p>{wh:<id>}:due` | zset | notification ids with a waiting queue, by when to work it (ms): the retry schedule the `webhooks` function drains (a lease while a run works it) |
//! | `<p>{wh:<id>}:attempts` | list | the latest 100 attempts' JSON, newest first (`GET /v1/webhooks/{id}/deliveries`) |
//!
//! Every fixed-name key of a user's slot is listed in [`USER_KEY_SUFFIXES`] and erased by
//! [`UserKeys::erasable`] (a test fails when a `UserKeys` method names a key missing from it).
//!
//! A broadcast's per-recipient record is the recipient's idempotency record
//! (`{u:<id>}:idem:<hash>`, with the key `broadcast:<broadcastId>`): a skipped (muted) recipient's
//! holds `skip:<broadcastId>` as its hash. Topic memberships live in the topic's slot, not the
//! user's: erasing a user walks `{topics}` ([`crate::store::TopicStore::forget_user`]).
//!
//! **Tenants.** The table names the default tenant's keys. [`KeySpace::for_tenant`] names another
//! tenant's: every tenant-owned tag `{<kind>:<id>}` (`u`, `dev`, `s`, `t`, `b`, `n`, `wh`) becomes
//! `{<tenant>/<kind>:<id>}`, and `{topics}`, `{engage}`, `{an}` (recipients) and `{wh}` (hooks) become
//! `{<tenant>/topics}` …: `{acme/u:bob}:meta`, `{acme/t:math}` (but `{wh}:tenants`, the index of
//! tenants with webhooks, is global). No kind contains `/` and no
//! tenant contains `/` or `:`, so no two tenants' keys coincide, and the default tenant's keys are
//! those of a deployment without tenants (no migration). The global keys (`{c:…}`, `{outbox}`,
//! `{push}`, `{sched}`, `{breaker:…}`, `{an:<shard>}`, `{an}:shards`) stay global and carry the
//! tenant in what they hold (see `crate::tenant`); a `{sched}:ck:`/`:idem:` digest includes the
//! tenant. See `docs/tenants.md`.
//!
//! `<p>` is `REDIS_KEY_PREFIX`. The inbox keys (meta … unpub) expire together after the retention
//! period without writes. The analytics keys expire after `ANALYTICS_RETENTION_DAYS` without
//! writes (`{an}:shards` never: it holds one member per partition), a notification's outcome
//! history after `ANALYTICS_HISTORY_TTL_DAYS`. A webhook's keys never expire; deleting the webhook
//! deletes them.

use sha2::{Digest, Sha256};

use crate::tenant::Tenant;

/// Names every key; holds the deployment's prefix and the tenant whose keys it names.
#[derive(Debug, Clone, Default)]
pub struct KeySpace {
    prefix: String,
    /// `<tenant>/`, put before the kind of every tenant-owned tag; empty for the default tenant,
    /// whose keys are those of a deployment without tenants.
    scope: String,
    tenant: Tenant,
}

/// The keys of one user's slot.
#[derive(Debug, Clone)]
pub struct UserKeys {
    tag: String,
}

impl KeySpace {
    /// The default tenant's keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        KeySpace {
            prefix: prefix.into(),
            scope: String::new(),
            tenant: Tenant::default_tenant(),
        }
    }

    /// The same deployment's keys of `tenant`: every tenant-owned tag `{<kind>:<id>}` becomes
    /// `{<tenant>/<kind>:<id>}` (`{topics}` becomes `{<tenant>/topics}`), so two tenants never
    /// share a key or a slot; the default tenant's are unchanged. Unambiguous: no kind contains
    /// `/`, and a tenant contains neither `/` nor `:`. The global keys (connections, worker sets,
    /// breakers, analytics shards) stay global; what they hold carries the tenant.
    pub fn for_tenant(&self, tenant: &Tenant) -> KeySpace {
        KeySpace {
            prefix: self.prefix.clone(),
            scope: if tenant.is_default() {
                String::new()
            } else {
                format!("{tenant}/")
            },
            tenant: tenant.clone(),
        }
    }

    /// The tenant whose keys this names.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The tag `{<scope><kind>:<id>}` of a tenant-owned slot, with the prefix.
    fn owned(&self, kind: &str, id: &str) -> String {
        format!("{}{{{}{}:{}}}", self.prefix, self.scope, kind, id)
    }

    /// Feeds the tenant to a digest that names a key in a global slot: nothing for the default
    /// tenant (its digests are unchanged), else the tenant and a byte no id contains.
    fn digest_scope(&self, digest: Sha256) -> Sha256 {
        if self.tenant.is_default() {
            digest
        } else {
            digest
                .chain_update(self.tenant.as_str())
                .chain_update([0xffu8])
        }
    }

    pub fn user(&self, user_id: &str) -> UserKeys {
        UserKeys {
            tag: self.owned("u", user_id),
        }
    }

    /// Who holds the device `device_id` now, in the device's own slot (its id is derived from its
    /// token).
    pub fn device_owner(&self, device_id: &str) -> String {
        format!("{}:owner", self.owned("dev", device_id))
    }

    pub fn sender_rate(&self, sender: &str) -> String {
        format!("{}:rate", self.owned("s", sender))
    }

    /// The tenant's quota of creates (GCRA state): one key per tenant, in a slot of its own.
    pub fn tenant_creates(&self) -> String {
        format!("{}{{{}quota}}:creates", self.prefix, self.scope)
    }

    /// The sender's claim of an `Idempotency-Key`, in the sender's slot: one record per key
    /// whatever the recipients, so a key names one request. Hashed so any header value makes a
    /// safe key name.
    pub fn sender_idempotency(&self, sender: &str, key: &str) -> String {
        let digest = Sha256::digest(key);
        format!(
            "{}:idem:{}",
            self.owned("s", sender),
            hex::encode(&digest[..16])
        )
    }

    /// The keys of one topic's slot.
    pub fn topic(&self, key: &str) -> TopicKeys {
        TopicKeys {
            tag: self.owned("t", key),
        }
    }

    /// Every topic key.
    pub fn topic_registry(&self) -> String {
        format!("{}{{{}topics}}", self.prefix, self.scope)
    }

    /// The keys of one broadcast's slot.
    pub fn broadcast(&self, id: &str) -> BroadcastKeys {
        BroadcastKeys {
            tag: self.owned("b", id),
        }
    }

    /// The tenant and user of a WebSocket connection; its own slot, since only the id is known at
    /// `$disconnect`. Global: connection ids are unique across tenants.
    pub fn connection(&self, connection_id: &str) -> String {
        format!("{}{{c:{}}}", self.prefix, connection_id)
    }

    pub fn outbox_dirty(&self) -> String {
        format!("{}{{outbox}}:dirty", self.prefix)
    }

    pub fn outbox_lease(&self) -> String {
        format!("{}{{outbox}}:lease", self.prefix)
    }

    /// Scheduled sends: every key in the `{sched}` slot, so each step is one script.
    pub fn schedule_due(&self) -> String {
        format!("{}{{sched}}:due", self.prefix)
    }

    pub fn schedule_jobs(&self) -> String {
        format!("{}{{sched}}:jobs", self.prefix)
    }

    pub fn schedule_state(&self) -> String {
        format!("{}{{sched}}:state", self.prefix)
    }

    pub fn schedule_done(&self) -> String {
        format!("{}{{sched}}:done", self.prefix)
    }

    /// The pending jobs `sender` created with `cancel_key` (hashed: any text makes a safe name).
    pub fn schedule_cancel_key(&self, sender: &str, cancel_key: &str) -> String {
        let digest = self
            .digest_scope(Sha256::new())
            .chain_update(sender)
            .chain_update([0u8])
            .chain_update(cancel_key)
            .finalize();
        format!("{}{{sched}}:ck:{}", self.prefix, hex::encode(&digest[..16]))
    }

    /// The job one recipient got from `sender`'s request with the Idempotency-Key share `key`.
    pub fn schedule_idempotency(&self, sender: &str, key: &str, recipient: &str) -> String {
        let digest = self
            .digest_scope(Sha256::new())
            .chain_update(sender)
            .chain_update([0u8])
            .chain_update(key)
            .chain_update([0u8])
            .chain_update(recipient)
            .finalize();
        format!(
            "{}{{sched}}:idem:{}",
            self.prefix,
            hex::encode(&digest[..16])
        )
    }

    /// Every user's engagement histogram together (the tenant's users').
    pub fn engagement_global(&self) -> String {
        format!("{}{{{}engage}}:global", self.prefix, self.scope)
    }

    /// The retry schedule of the off-app channels (one index; the entries live in user slots).
    pub fn push_due(&self) -> String {
        format!("{}{{push}}:due", self.prefix)
    }

    /// The circuit breaker of one off-app provider (`ses`, `smtp`, `twilio`, …).
    pub fn provider_breaker(&self, provider: &str) -> String {
        format!("{}{{breaker:{}}}", self.prefix, provider)
    }

    /// The analytics counters of one Kafka topic-partition (`<cluster>:<topic>:<partition>`):
    /// its watermark and day hashes share one slot, so one script checks and moves the watermark
    /// with the counts.
    pub fn analytics_shard(&self, shard: &str) -> ShardKeys {
        ShardKeys {
            tag: format!("{}{{an:{}}}", self.prefix, shard),
        }
    }

    /// Every shard ever counted.
    pub fn analytics_shards(&self) -> String {
        format!("{}{{an}}:shards", self.prefix)
    }

    /// The tenant's unique recipients of one UTC day (`YYYY-MM-DD`); every day in the tenant's
    /// `{an}` slot, so one PFCOUNT unites a range.
    pub fn analytics_recipients(&self, day: &str) -> String {
        format!("{}{{{}an}}:recipients:{}", self.prefix, self.scope, day)
    }

    /// The tenant's webhook registry.
    pub fn webhooks(&self) -> String {
        format!("{}{{{}wh}}:hooks", self.prefix, self.scope)
    }

    /// The global index of the tenants (other than the default) that registered a webhook: the
    /// same key whatever the tenant this names.
    pub fn webhook_tenants(&self) -> String {
        format!("{}{{wh}}:tenants", self.prefix)
    }

    /// The delivery state of one webhook, all in its own slot so one script moves a message
    /// through its ledger, its notification's queue and the retry schedule together.
    pub fn webhook(&self, webhook_id: &str) -> WebhookKeys {
        WebhookKeys {
            tag: self.owned("wh", webhook_id),
        }
    }

    /// A notification's outcome history; its own slot, since delivery outcomes and engagement
    /// reach it from different topics and the api reads it by notification id alone.
    pub fn notification_outcomes(&self, notification_id: &str) -> String {
        format!("{}:outcomes", self.owned("n", notification_id))
    }
}

/// How many membership buckets a topic has. Fixed: a user's bucket never moves, so a page of
/// buckets is a stable page of members. 1,024 keeps a 100,000-member topic's buckets under 128
/// members each (Redis's `hash-max-listpack-entries` default), the compact encoding.
pub const TOPIC_BUCKETS: u16 = 1024;

/// The membership bucket of `user_id` in every topic.
pub fn topic_bucket(user_id: &str) -> u16 {
    let digest = Sha256::digest(user_id);
    u16::from_be_bytes([digest[0], digest[1]]) % TOPIC_BUCKETS
}

/// The keys of one topic.
#[derive(Debug, Clone)]
pub struct TopicKeys {
    tag: String,
}

impl TopicKeys {
    /// The topic's own hash (name, subscriber count).
    pub fn meta(&self) -> String {
        self.tag.clone()
    }

    /// Membership bucket `bucket` (`0..TOPIC_BUCKETS`).
    pub fn members(&self, bucket: u16) -> String {
        format!("{}:m:{}", self.tag, bucket)
    }
}

/// The keys of one broadcast.
#[derive(Debug, Clone)]
pub struct BroadcastKeys {
    tag: String,
}

impl BroadcastKeys {
    pub fn state(&self) -> String {
        self.tag.clone()
    }
    pub fn chunks(&self) -> String {
        format!("{}:chunks", self.tag)
    }
    pub fn rate(&self) -> String {
        format!("{}:rate", self.tag)
    }
}

/// The keys of one analytics shard (one Kafka topic-partition).
#[derive(Debug, Clone)]
pub struct ShardKeys {
    tag: String,
}

impl ShardKeys {
    pub fn watermark(&self) -> String {
        format!("{}:wm", self.tag)
    }

    /// The counters of one UTC day (`YYYY-MM-DD`).
    pub fn day(&self, day: &str) -> String {
        format!("{}:d:{}", self.tag, day)
    }
}

/// The inbox keys, in the order `prelude.lua` expects.
const INBOX_SUFFIXES: [&str; 7] = ["meta", "docs", "flags", "all", "unread", "log", "unpub"];

/// The erase marker's suffix: the one fixed-name user key an erase keeps.
const ERASED_SUFFIX: &str = "erased";

/// Every fixed-name key of a user's slot but the erase marker: what an erase deletes. **A new
/// per-user key is one line here** (and its row in the table above); the unit test
/// `every_user_key_is_erasable` fails until it is.
pub const USER_KEY_SUFFIXES: &[&str] = &[
    "meta",
    "docs",
    "flags",
    "all",
    "unread",
    "log",
    "unpub",
    "idems",
    "histories",
    "prefs",
    "rate",
    "mutrate",
    "conns",
    "delivered",
    "delivering",
    "pushsubs",
    "contacts",
    "devices",
    "sends",
    "sends:at",
    "retry",
    "badge",
    "escalations",
    "digests",
    "engage",
];

/// The keys of one webhook's delivery state.
#[derive(Debug, Clone)]
pub struct WebhookKeys {
    tag: String,
}

impl WebhookKeys {
    pub fn ledger(&self) -> String {
        format!("{}:ledger", self.tag)
    }
    pub fn messages(&self) -> String {
        format!("{}:messages", self.tag)
    }
    pub fn log(&self) -> String {
        format!("{}:log", self.tag)
    }
    pub fn due(&self) -> String {
        format!("{}:due", self.tag)
    }
    pub fn attempts(&self) -> String {
        format!("{}:attempts", self.tag)
    }
    /// The waiting messages of one notification.
    pub fn queue(&self, notification_id: &str) -> String {
        format!("{}:q:{}", self.tag, notification_id)
    }
}

impl UserKeys {
    fn key(&self, suffix: &str) -> String {
        format!("{}:{}", self.tag, suffix)
    }

    /// The seven keys every inbox script receives first, in the order `prelude.lua` expects.
    pub fn inbox(&self) -> [String; 7] {
        INBOX_SUFFIXES.map(|s| self.key(s))
    }

    /// Every fixed-name key holding this user's data, which an erase deletes: the
    /// [`USER_KEY_SUFFIXES`]. Not in it: the erase marker ([`UserKeys::erased`]) and the
    /// `idem:<hash>` records, found through [`UserKeys::idempotency_index`].
    pub fn erasable(&self) -> Vec<String> {
        USER_KEY_SUFFIXES.iter().map(|s| self.key(s)).collect()
    }

    /// The erase marker (`<seq>|<erasedMs>`): outlives the erase, so late records are dropped.
    pub fn erased(&self) -> String {
        self.key(ERASED_SUFFIX)
    }

    /// The user's `idem:<hash>` keys by expiry (ms).
    pub fn idempotency_index(&self) -> String {
        self.key("idems")
    }

    /// The ids of the user's notifications with an outcome history.
    pub fn histories(&self) -> String {
        self.key("histories")
    }

    pub fn meta(&self) -> String {
        self.key("meta")
    }
    pub fn docs(&self) -> String {
        self.key("docs")
    }
    pub fn flags(&self) -> String {
        self.key("flags")
    }
    pub fn all(&self) -> String {
        self.key("all")
    }
    pub fn unpub(&self) -> String {
        self.key("unpub")
    }
    pub fn prefs(&self) -> String {
        self.key("prefs")
    }
    pub fn rate(&self) -> String {
        self.key("rate")
    }
    pub fn mutation_rate(&self) -> String {
        self.key("mutrate")
    }
    pub fn conns(&self) -> String {
        self.key("conns")
    }
    pub fn delivered(&self) -> String {
        self.key("delivered")
    }
    pub fn delivering(&self) -> String {
        self.key("delivering")
    }
    pub fn push_subscriptions(&self) -> String {
        self.key("pushsubs")
    }
    pub fn contacts(&self) -> String {
        self.key("contacts")
    }
    pub fn devices(&self) -> String {
        self.key("devices")
    }
    pub fn sends(&self) -> String {
        self.key("sends")
    }
    pub fn sends_at(&self) -> String {
        self.key("sends:at")
    }
    /// The digest items the user's digest keys opened (`inbox/digest.rs`).
    pub fn digests(&self) -> String {
        self.key("digests")
    }
    /// Escalation steps of the user's notifications (`escalations.rs`).
    pub fn escalations(&self) -> String {
        self.key("escalations")
    }
    pub fn retry(&self) -> String {
        self.key("retry")
    }
    pub fn badge(&self) -> String {
        self.key("badge")
    }
    /// The user's hour-of-week engagement histogram (`schedule.rs`).
    pub fn engagement(&self) -> String {
        self.key("engage")
    }

    /// This recipient's share of the idempotent request `key` sent by `sender` (the sender's claim
    /// is [`KeySpace::sender_idempotency`]): scoped per sender, hashed so any header value makes a
    /// safe key name.
    pub fn idempotency(&self, sender: &str, key: &str) -> String {
        let digest = Sha256::new()
            .chain_update(sender)
            .chain_update([0u8])
            .chain_update(key)
            .finalize();
        self.key(&format!("idem:{}", hex::encode(&digest[..16])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_of_a_users_keys_share_one_hash_tag() {
        let k = KeySpace::new("t1:").user("alice");
        let keys: Vec<String> = k
            .inbox()
            .into_iter()
            .chain([
                k.prefs(),
                k.rate(),
                k.mutation_rate(),
                k.conns(),
                k.delivered(),
                k.delivering(),
                k.push_subscriptions(),
                k.contacts(),
                k.devices(),
                k.sends(),
                k.sends_at(),
                k.retry(),
                k.badge(),
                k.engagement(),
                k.idempotency("svc", "k1"),
                k.idempotency_index(),
                k.histories(),
                k.erased(),
            ])
            .collect();
        for key in keys {
            assert!(key.starts_with("t1:{u:alice}:"), "{key}");
        }
        assert_ne!(k.idempotency("svc", "k1"), k.idempotency("other", "k1"));
    }

    /// Every `self.key("<suffix>")` in this file's `UserKeys` is erased (or is the marker): a
    /// per-user key added without its line in `USER_KEY_SUFFIXES` fails here.
    #[test]
    fn every_user_key_is_erasable() {
        let source = include_str!("keys.rs");
        let user_keys = source
            .split("impl UserKeys {")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .unwrap_or_default();
        let named: Vec<&str> = user_keys
            .split("self.key(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(named.len() >= 10, "found {named:?}");
        for suffix in named {
            assert!(
                USER_KEY_SUFFIXES.contains(&suffix),
                "UserKeys names `{suffix}`: add it to USER_KEY_SUFFIXES (and to the export)"
            );
        }
        for suffix in INBOX_SUFFIXES {
            assert!(USER_KEY_SUFFIXES.contains(&suffix), "{suffix}");
        }
        let k = KeySpace::new("t1:").user("alice");
        assert!(!k.erasable().contains(&k.erased()));
        assert!(k.erasable().contains(&k.idempotency_index()));
    }

    #[test]
    fn a_topic_and_a_broadcast_each_keep_their_keys_in_one_slot() {
        let keys = KeySpace::new("t1:");
        let topic = keys.topic("course:cs101");
        assert_eq!(topic.meta(), "t1:{t:course:cs101}");
        assert_eq!(topic.members(7), "t1:{t:course:cs101}:m:7");
        let b = keys.broadcast("b1");
        for key in [b.state(), b.chunks(), b.rate()] {
            assert!(key.starts_with("t1:{b:b1}"), "{key}");
        }
        assert!(topic_bucket("alice") < TOPIC_BUCKETS);
        assert_eq!(topic_bucket("alice"), topic_bucket("alice"));
    }

    #[test]
    fn a_senders_idempotency_claim_lives_in_the_senders_slot() {
        let keys = KeySpace::new("t1:");
        let claim = keys.sender_idempotency("svc", "order-42");
        assert!(claim.starts_with("t1:{s:svc}:idem:"), "{claim}");
        assert_ne!(claim, keys.sender_idempotency("svc", "order-43"));
        assert_ne!(claim, keys.sender_idempotency("other", "order-42"));
    }

    #[test]
    fn a_webhooks_delivery_state_shares_its_slot() {
        let keys = KeySpace::new("t1:");
        assert_eq!(keys.webhooks(), "t1:{wh}:hooks");
        let acme = keys.for_tenant(&Tenant::parse("acme").unwrap_or_default());
        assert_eq!(acme.webhooks(), "t1:{acme/wh}:hooks");
        assert_eq!(acme.webhook_tenants(), keys.webhook_tenants());
        let hook = keys.webhook("h1");
        for key in [
            hook.ledger(),
            hook.messages(),
            hook.log(),
            hook.due(),
            hook.attempts(),
            hook.queue("n1"),
        ] {
            assert!(key.starts_with("t1:{wh:h1}:"), "{key}");
        }
    }

    #[test]
    fn a_tenants_keys_carry_the_tenant_in_every_owned_tag_and_the_defaults_are_unchanged() {
        let base = KeySpace::new("t1:");
        let default = base.for_tenant(&Tenant::default_tenant());
        assert_eq!(default.user("bob").meta(), "t1:{u:bob}:meta");
        assert_eq!(
            default.schedule_cancel_key("svc", "k"),
            base.schedule_cancel_key("svc", "k")
        );
        let acme = base.for_tenant(&Tenant::parse("acme").unwrap_or_default());
        assert_eq!(acme.tenant().as_str(), "acme");
        assert_eq!(acme.user("bob").meta(), "t1:{acme/u:bob}:meta");
        assert_eq!(acme.topic("math").meta(), "t1:{acme/t:math}");
        assert_eq!(acme.topic_registry(), "t1:{acme/topics}");
        assert_eq!(acme.broadcast("b1").state(), "t1:{acme/b:b1}");
        assert_eq!(acme.sender_rate("svc"), "t1:{acme/s:svc}:rate");
        assert!(acme
            .sender_idempotency("svc", "k")
            .starts_with("t1:{acme/s:svc}:idem:"));
        assert_eq!(acme.device_owner("d1"), "t1:{acme/dev:d1}:owner");
        assert_eq!(acme.notification_outcomes("n1"), "t1:{acme/n:n1}:outcomes");
        assert_eq!(acme.webhooks(), "t1:{acme/wh}:hooks");
        assert_eq!(acme.webhook("h1").log(), "t1:{acme/wh:h1}:log");
        assert_eq!(acme.engagement_global(), "t1:{acme/engage}:global");
        assert_eq!(acme.analytics_recipients("d"), "t1:{acme/an}:recipients:d");
        // Global keys stay global; what they hold carries the tenant.
        assert_eq!(acme.connection("c1"), base.connection("c1"));
        assert_eq!(acme.outbox_dirty(), base.outbox_dirty());
        assert_eq!(acme.push_due(), base.push_due());
        assert_eq!(acme.schedule_jobs(), base.schedule_jobs());
        assert_eq!(acme.analytics_shards(), base.analytics_shards());
        // In the global `{sched}` slot, a tenant's digests differ from the default tenant's,
        // even for a default-tenant sender whose name spells the tenant.
        assert_ne!(
            acme.schedule_cancel_key("svc", "k"),
            base.schedule_cancel_key("svc", "k")
        );
        assert_ne!(
            acme.schedule_idempotency("svc", "k", "bob"),
            base.schedule_idempotency("acme/svc", "k", "bob")
        );
        // Scoping a scoped key space replaces its tenant.
        assert_eq!(
            acme.for_tenant(&Tenant::default()).user("bob").meta(),
            "t1:{u:bob}:meta"
        );
    }

    #[test]
    fn an_analytics_shard_keeps_its_watermark_with_its_counters() {
        let keys = KeySpace::new("t1:");
        let shard = keys.analytics_shard("c1:notification-delivery:2");
        assert_eq!(shard.watermark(), "t1:{an:c1:notification-delivery:2}:wm");
        assert_eq!(
            shard.day("2026-11-29"),
            "t1:{an:c1:notification-delivery:2}:d:2026-11-29"
        );
        assert_eq!(
            keys.analytics_recipients("2026-11-29"),
            "t1:{an}:recipients:2026-11-29"
        );
        assert_eq!(keys.analytics_shards(), "t1:{an}:shards");
    }
}
