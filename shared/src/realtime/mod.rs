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

use crate::config::{ConfigError, Env, RealtimeSettings};
use crate::store::{ConnectionRegistry, KeySpace, RedisConn};

impl Fanout {
    /// The fan-out a function builds at cold start from `CONNECTIONS_URL` and the `WS_POST_*`
    /// settings.
    pub fn from_env(env: &Env, conn: RedisConn, keys: KeySpace) -> Result<Fanout, ConfigError> {
        let settings = RealtimeSettings::from_env(env)?;
        let api = ConnectionsApi::from_env(env, &settings)?;
        Ok(Fanout::new(
            ConnectionRegistry::new(conn, keys),
            api,
            settings.post_concurrency,
        ))
    }
}
