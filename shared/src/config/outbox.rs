//! [`OutboxSettings`]: the outbox relay's timing.

use std::time::Duration;

use super::{ConfigError, Env};

/// The outbox relay's timing.
#[derive(Debug, Clone, Copy)]
pub struct OutboxSettings {
    /// Longer than any API request can take (the api function's timeout). The relay leaves changes
    /// younger than this to the request that wrote them, so a produce in flight is not doubled.
    pub grace: Duration,
    /// Most users relayed concurrently.
    pub concurrency: usize,
}

impl OutboxSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(OutboxSettings {
            grace: Duration::from_millis(env.parse("OUTBOX_GRACE_MS")?),
            concurrency: env.positive("OUTBOX_CONCURRENCY")?,
        })
    }
}
