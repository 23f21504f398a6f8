//! [`SchedulerSettings`]: how the `scheduler` function drains the due-set of scheduled sends.

use std::time::Duration;

use super::{ConfigError, Env};

/// The scheduler's timing (`docs/scheduling.md`).
#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    /// How long one invocation drains (its schedule's period, so the runs follow each other).
    pub run: Duration,
    /// The longest wait between two looks at the due-set: the lateness it adds at most.
    pub poll: Duration,
    /// How long a claimed job is left to its firing before another run may fire it (longer than
    /// any firing round takes).
    pub lease: Duration,
}

impl SchedulerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(SchedulerSettings {
            run: Duration::from_secs(env.positive("SCHEDULER_RUN_SECONDS")?),
            poll: Duration::from_millis(env.positive("SCHEDULER_POLL_MS")?),
            lease: Duration::from_millis(env.positive("SCHEDULER_LEASE_MS")?),
        })
    }
}
