//! [`RealtimeSettings`]: how functions post frames to WebSocket connections (`@connections`), and
//! [`ConnectionsSettings`]: the endpoint and identity the `@connections` client signs with.

use std::time::Duration;

use super::{ConfigError, Env};
use crate::aws::AwsSettings;

/// How functions post frames to WebSocket connections (`@connections`).
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// The `@connections` endpoint: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`
    /// (the template passes it), or devstack's. Without it nothing is posted: the api function
    /// then has no Kafka-down fallback, and `ws` / `delivery` refuse to start.
    pub connections_url: Option<String>,
    /// Most posts in flight at once, per process.
    pub post_concurrency: usize,
    /// Posts per second per process (token bucket), and the bucket's burst. API Gateway throttles
    /// `@connections` per account, so every process keeps well under its share.
    pub post_rate: u32,
    pub post_burst: u32,
    /// How often a throttled (`LimitExceededException`) post is retried, with backoff.
    pub post_retries: u32,
    /// How long one post may take before it counts as failed.
    pub post_timeout: Duration,
}

impl RealtimeSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(RealtimeSettings {
            connections_url: env.optional("CONNECTIONS_URL").filter(|u| !u.is_empty()),
            post_concurrency: env.positive("WS_POST_CONCURRENCY")?,
            post_rate: env.positive("WS_POST_RATE")?,
            post_burst: env.positive("WS_POST_BURST")?,
            post_retries: env.parse("WS_POST_RETRIES")?,
            post_timeout: Duration::from_millis(env.positive("WS_POST_TIMEOUT_MS")?),
        })
    }

    /// The `@connections` endpoint, for functions that cannot work without it.
    pub fn require_connections_url(&self) -> Result<&str, ConfigError> {
        self.connections_url
            .as_deref()
            .ok_or(ConfigError::Missing("CONNECTIONS_URL"))
    }
}

/// What the `@connections` client signs with: the endpoint and the function's AWS identity.
/// Unlike [`AwsSettings::from_env`], `AWS_REGION` falls back to [`CONNECTIONS_DEFAULT_REGION`]:
/// the endpoint URL already names the region, so a missing one is harmless here.
#[derive(Debug, Clone)]
pub struct ConnectionsSettings {
    /// `CONNECTIONS_URL`.
    pub endpoint: String,
    pub aws: AwsSettings,
}

/// The region `@connections` calls are signed for when `AWS_REGION` is unset.
pub const CONNECTIONS_DEFAULT_REGION: &str = "us-east-1";

impl ConnectionsSettings {
    /// Needs `CONNECTIONS_URL` (from `realtime`), `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`,
    /// in that order; `AWS_SESSION_TOKEN` and `AWS_REGION` are optional.
    pub fn from_env(env: &Env, realtime: &RealtimeSettings) -> Result<Self, ConfigError> {
        let endpoint = realtime.require_connections_url()?.to_owned();
        Ok(ConnectionsSettings {
            endpoint,
            aws: AwsSettings {
                access_key_id: env.required("AWS_ACCESS_KEY_ID")?,
                secret_access_key: env.required("AWS_SECRET_ACCESS_KEY")?,
                session_token: env.optional("AWS_SESSION_TOKEN"),
                region: env.string_or("AWS_REGION", CONNECTIONS_DEFAULT_REGION),
            },
        })
    }
}
