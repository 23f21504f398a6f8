//! Real-time delivery to WebSocket clients through API Gateway's `@connections` API:
//!
//! - [`gateway`]: the `@connections` client (post, close), with a per-process token bucket and
//!   backoff for throttling;
//! - [`fanout`]: one frame to every open connection of a user, pruning gone and expired ones.
//!
//! The connection registry itself is Redis data: [`crate::store::ConnectionRegistry`]. The frames
//! are [`crate::protocol::frames`]. `docs/realtime.md` describes the whole path.

pub mod fanout;
pub mod gateway;

pub use fanout::{Fanout, FanoutReport};
pub use gateway::{ConnectionsApi, PostOutcome, TokenBucket};

use crate::config::{ConfigError, ConnectionsSettings, Env, RealtimeSettings};
use crate::store::{ConnectionRegistry, KeySpace, RedisConn};

impl Fanout {
    /// The fan-out a function builds at cold start from its settings (`CONNECTIONS_URL`, the
    /// `WS_POST_*` settings and the AWS identity).
    pub fn connect(
        settings: &RealtimeSettings,
        connections: &ConnectionsSettings,
        conn: RedisConn,
        keys: KeySpace,
    ) -> Fanout {
        Fanout::new(
            ConnectionRegistry::new(conn, keys),
            ConnectionsApi::connect(connections, settings),
            settings.post_concurrency,
        )
    }

    /// [`Self::connect`] with both settings groups read from `env` by `config`.
    pub fn from_env(env: &Env, conn: RedisConn, keys: KeySpace) -> Result<Fanout, ConfigError> {
        let settings = RealtimeSettings::from_env(env)?;
        let connections = ConnectionsSettings::from_env(env, &settings)?;
        Ok(Fanout::connect(&settings, &connections, conn, keys))
    }
}
