//! [`ConnectionRegistry`]: which WebSocket connections each user has open, and the per-user
//! record of which changes `delivery` has fully handled.
//!
//! A user's connections are one hash in the user's slot, so listing them for a delivery is one
//! read. Each connection also has a small key of its own naming its user, because `$disconnect`
//! knows only the connection id. Both expire shortly after API Gateway's 2-hour connection cap,
//! so a connection whose `$disconnect` was lost cannot linger; entries older than the cap are
//! also skipped (and removed) when read. The connection's own key is global (API Gateway's ids
//! are unique) and names the user as a [`crate::tenant::member`]: its tenant comes with it.
//!
//! ## Delivering a user's records exactly once: claim, act, record
//!
//! `delivery` may run the same records twice *at the same time* (two invocations around a
//! consumer-group rebalance), not only one after the other. So before it posts anything for a
//! user it takes the user's claim ([`ConnectionRegistry::claim_delivery`]): one script that, in
//! one atomic step, refuses if another invocation holds the claim, else takes it and answers
//! which of the batch's seqs are already delivered and the user's connections. The claimer posts
//! and produces, then records the handled seqs and releases the claim in one more atomic step
//! ([`ConnectionRegistry::finish_delivery`]). An invocation that finds the claim held waits for
//! it, then sees the seqs delivered and skips them: one frame per connection, one outcome.
//!
//! The claim is a **lease**, so a claimer that crashes cannot lose a frame: the claim expires by
//! itself, and the retried batch (Lambda retries a failed invocation) takes it then and delivers
//! what was not recorded. The lease runs to the claimer's own deadline (`delivery` passes its
//! invocation's deadline), because Lambda ends the invocation there: a live claimer never
//! outlives its claim, so a claim cannot pass to a second invocation while the first can still
//! post. The price is latency after a crash: its records wait until the dead claimer's deadline.
//! A crash after the posts but before the record repeats those frames once (clients drop a
//! repeated `seq`); no outcome of a record is lost either way.

use std::time::Duration;

use redis::{AsyncCommands, Value};

use super::keys::KeySpace;
use super::{scripts, RedisConn, StoreError, TenantScoped};
use crate::tenant::{member, parse_member, Tenant};

/// API Gateway closes every WebSocket connection after 2 hours.
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// How long connection entries outlive the cap: covers clock skew and a late `$disconnect`.
/// How long a connection may still be completing its handshake. API Gateway registers the
/// connection only once `$connect` has answered (its integration timeout is 29 s), and `$connect`
/// writes the registry entry before answering, so a post inside this window is a `GoneException`
/// for a connection that is about to exist. Such a connection is kept, not pruned; its client's
/// `sync` on connect brings what it missed.
pub const CONNECT_GRACE: Duration = Duration::from_secs(30);
const CONNECTION_TTL: Duration = Duration::from_secs(2 * 3600 + 300);
/// How many handled seqs `delivery` remembers per user, and for how long without new ones. Kafka
/// redelivers a failed batch within minutes, so both are ample.
const DELIVERED_KEEP: isize = 2_000;
const DELIVERED_TTL: Duration = Duration::from_secs(24 * 3600);

/// One open connection of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub connected_at_ms: i64,
    /// When the token it connected with expires (ms since the epoch); it is closed at its next
    /// delivery or action after that.
    pub token_expires_ms: i64,
}

impl Connection {
    pub fn token_expired(&self, now_ms: i64) -> bool {
        self.token_expires_ms <= now_ms
    }

    /// Still inside [`CONNECT_GRACE`]: a `GoneException` may only mean `$connect` has not answered.
    pub fn connecting(&self, now_ms: i64) -> bool {
        now_ms - self.connected_at_ms < CONNECT_GRACE.as_millis() as i64
    }

    /// Past API Gateway's cap: the connection cannot be open any more.
    pub fn stale(&self, now_ms: i64) -> bool {
        now_ms - self.connected_at_ms > CONNECTION_MAX_AGE.as_millis() as i64
    }
}

/// The answer to [`ConnectionRegistry::claim_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryClaim {
    /// This invocation holds the user's claim now.
    Claimed {
        /// Per seq asked about, in order: `delivery` already handled it (a redelivered record).
        delivered: Vec<bool>,
        /// The user's connections.
        connections: Vec<Connection>,
    },
    /// Another invocation holds it, for at most this long.
    Held { expires_in: Duration },
}

/// The registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionRegistry {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl ConnectionRegistry {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        ConnectionRegistry { conn, keys }
    }

    /// Registers an open connection (`$connect`).
    pub async fn register(&self, user_id: &str, connection: &Connection) -> Result<(), StoreError> {
        let user = self.keys.user(user_id);
        let ttl = CONNECTION_TTL.as_secs();
        let mut conn = self.conn.clone();
        // Two slots: the user's, and the connection's own. The user's entry goes first, so a
        // crash in between leaves an entry that the next delivery prunes as gone.
        let _: () = redis::pipe()
            .atomic()
            .hset(
                user.conns(),
                &connection.id,
                format!(
                    "{}|{}",
                    connection.connected_at_ms, connection.token_expires_ms
                ),
            )
            .ignore()
            .expire(user.conns(), ttl as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        let _: () = conn
            .set_ex(
                self.keys.connection(&connection.id),
                member(self.keys.tenant(), user_id),
                ttl,
            )
            .await?;
        Ok(())
    }

    /// Removes a connection by id alone (`$disconnect`), in its user's tenant; returns its user,
    /// if it was known.
    pub async fn unregister(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let value: Option<String> = conn.get_del(self.keys.connection(connection_id)).await?;
        let Some((tenant, user_id)) = value.as_deref().and_then(parse_member) else {
            return Ok(None);
        };
        self.for_tenant(&tenant)
            .remove(user_id, connection_id)
            .await?;
        Ok(Some(user_id.to_owned()))
    }

    /// Removes one connection of a user (gone, expired or stale).
    pub async fn remove(&self, user_id: &str, connection_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .hdel(self.keys.user(user_id).conns(), connection_id)
            .await?;
        let _: i64 = conn.del(self.keys.connection(connection_id)).await?;
        Ok(())
    }

    /// The tenant and user of a connection, while it is registered (whatever this registry's
    /// tenant: connection ids are global).
    pub async fn user_of(
        &self,
        connection_id: &str,
    ) -> Result<Option<(Tenant, String)>, StoreError> {
        let value: Option<String> = self
            .conn
            .clone()
            .get(self.keys.connection(connection_id))
            .await?;
        Ok(value
            .as_deref()
            .and_then(parse_member)
            .map(|(tenant, user)| (tenant, user.to_owned())))
    }

    /// The tenant and user of a connection and its entry (with its token's expiry), while both
    /// are registered: an entry `delivery` pruned, or one whose `$disconnect` ran, is `None`.
    pub async fn session(
        &self,
        connection_id: &str,
    ) -> Result<Option<(Tenant, String, Connection)>, StoreError> {
        let Some((tenant, user_id)) = self.user_of(connection_id).await? else {
            return Ok(None);
        };
        let value: Option<String> = self
            .conn
            .clone()
            .hget(
                self.keys.for_tenant(&tenant).user(&user_id).conns(),
                connection_id,
            )
            .await?;
        Ok(value.map(|value| {
            let connection = parse_connection(connection_id.to_owned(), &value);
            (tenant, user_id, connection)
        }))
    }

    /// The user's connections.
    pub async fn connections(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        let raw: Vec<(String, String)> = self
            .conn
            .clone()
            .hgetall(self.keys.user(user_id).conns())
            .await?;
        Ok(parse_connections(raw))
    }

    /// Takes the user's delivery claim for `token` (or renews it) for `lease`, unless another
    /// token holds it; with it, which of `seqs` are already delivered and the user's
    /// connections. One atomic script, one round trip. See the module's header.
    pub async fn claim_delivery(
        &self,
        user_id: &str,
        seqs: &[u64],
        token: &str,
        lease: Duration,
    ) -> Result<DeliveryClaim, StoreError> {
        let user = self.keys.user(user_id);
        let mut invocation = scripts::DELIVERY_CLAIM.key(user.delivering());
        invocation
            .key(user.delivered())
            .key(user.conns())
            .key(user.erased())
            .arg(token)
            .arg(lease.as_millis().max(1) as u64)
            .arg(seqs);
        let reply: Vec<Value> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let corrupt = || StoreError::Corrupt("the delivery claim answered an unknown shape".into());
        let mut reply = reply.into_iter();
        let claimed: i64 = parse(reply.next().ok_or_else(corrupt)?)?;
        if claimed == 0 {
            let ms: i64 = parse(reply.next().ok_or_else(corrupt)?)?;
            return Ok(DeliveryClaim::Held {
                expires_in: Duration::from_millis(ms.max(0) as u64),
            });
        }
        let delivered: Vec<i64> = parse(reply.next().ok_or_else(corrupt)?)?;
        if delivered.len() != seqs.len() {
            return Err(corrupt());
        }
        let raw: Vec<(String, String)> = parse(reply.next().ok_or_else(corrupt)?)?;
        Ok(DeliveryClaim::Claimed {
            delivered: delivered.into_iter().map(|d| d == 1).collect(),
            connections: parse_connections(raw),
        })
    }

    /// Records that `delivery` fully handled these seqs of the user (after its frames were posted
    /// and its outcome events acknowledged), keeping the newest [`DELIVERED_KEEP`], and releases
    /// the claim if `token` still holds it. One atomic script.
    pub async fn finish_delivery(
        &self,
        user_id: &str,
        seqs: &[u64],
        token: &str,
    ) -> Result<(), StoreError> {
        let user = self.keys.user(user_id);
        let mut invocation = scripts::DELIVERY_FINISH.key(user.delivering());
        invocation
            .key(user.delivered())
            .key(user.erased())
            .arg(token)
            .arg(DELIVERED_KEEP)
            .arg(DELIVERED_TTL.as_secs())
            .arg(seqs);
        let _released: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}

fn parse<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_connections(raw: Vec<(String, String)>) -> Vec<Connection> {
    raw.into_iter()
        .map(|(id, value)| parse_connection(id, &value))
        .collect()
}

/// `connected_at_ms|token_expires_ms`; an unreadable part reads as 0 (stale, expired).
fn parse_connection(id: String, value: &str) -> Connection {
    let mut parts = value.split('|').map(|p| p.parse::<i64>().unwrap_or(0));
    Connection {
        id,
        connected_at_ms: parts.next().unwrap_or(0),
        token_expires_ms: parts.next().unwrap_or(0),
    }
}
