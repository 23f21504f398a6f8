//! [`ConnectionRegistry`]: which WebSocket connections each user has open, and the per-user
//! record of which changes `delivery` has fully handled.
//!
//! A user's connections are one hash in the user's slot, so listing them for a delivery is one
//! read. Each connection also has a small key of its own naming its user, because `$disconnect`
//! knows only the connection id. Both expire shortly after API Gateway's 2-hour connection cap,
//! so a connection whose `$disconnect` was lost cannot linger; entries older than the cap are
//! also skipped (and removed) when read.

use std::time::Duration;

use redis::AsyncCommands;

use super::keys::KeySpace;
use super::{RedisConn, StoreError};

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

/// What `delivery` needs to know about a user before handling one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    /// `delivery` already handled this seq (a redelivered record).
    pub already_delivered: bool,
    pub connections: Vec<Connection>,
}

/// The registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionRegistry {
    conn: RedisConn,
    keys: KeySpace,
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
            .set_ex(self.keys.connection(&connection.id), user_id, ttl)
            .await?;
        Ok(())
    }

    /// Removes a connection by id alone (`$disconnect`); returns its user, if it was known.
    pub async fn unregister(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let user: Option<String> = conn.get_del(self.keys.connection(connection_id)).await?;
        if let Some(user_id) = &user {
            self.remove(user_id, connection_id).await?;
        }
        Ok(user)
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

    /// The user of a connection, while it is registered.
    pub async fn user_of(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .clone()
            .get(self.keys.connection(connection_id))
            .await?)
    }

    /// The user of a connection and its entry (with its token's expiry), while both are
    /// registered: an entry `delivery` pruned, or one whose `$disconnect` ran, is `None`.
    pub async fn session(
        &self,
        connection_id: &str,
    ) -> Result<Option<(String, Connection)>, StoreError> {
        let Some(user_id) = self.user_of(connection_id).await? else {
            return Ok(None);
        };
        let value: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.user(&user_id).conns(), connection_id)
            .await?;
        Ok(value.map(|value| {
            let connection = parse_connection(connection_id.to_owned(), &value);
            (user_id, connection)
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

    /// One round trip: has `delivery` already handled `seq` of this user, and the user's
    /// connections.
    pub async fn delivery_view(&self, user_id: &str, seq: u64) -> Result<DeliveryView, StoreError> {
        let user = self.keys.user(user_id);
        let (score, raw): (Option<f64>, Vec<(String, String)>) = redis::pipe()
            .zscore(user.delivered(), seq)
            .hgetall(user.conns())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(DeliveryView {
            already_delivered: score.is_some(),
            connections: parse_connections(raw),
        })
    }

    /// Records that `delivery` fully handled these seqs of the user (after its frames were posted
    /// and its outcome events acknowledged), keeping the newest [`DELIVERED_KEEP`].
    pub async fn mark_delivered(&self, user_id: &str, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let user = self.keys.user(user_id);
        let members: Vec<(u64, u64)> = seqs.iter().map(|s| (*s, *s)).collect();
        let _: () = redis::pipe()
            .atomic()
            .zadd_multiple(user.delivered(), &members)
            .ignore()
            .zremrangebyrank(user.delivered(), 0, -(DELIVERED_KEEP + 1))
            .ignore()
            .expire(user.delivered(), DELIVERED_TTL.as_secs() as i64)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
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
