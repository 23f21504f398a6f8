//! [`WebhookSettings`]: who webhooks may reach, how long one attempt may take, and the retry
//! schedule (`api` checks registrations with the same policy; the `webhooks` function sends).

use std::time::Duration;

use super::{ConfigError, Env};
use crate::egress::EgressPolicy;

/// The webhooks' outbound policy, timeout and retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `WEBHOOK_ALLOW_LOOPBACK`: webhook URLs may name loopback hosts, over http too (devstack,
    /// tests). Never in a deployment.
    pub allow_loopback: bool,
    /// `WEBHOOK_TIMEOUT_MS`: one attempt's time limit (connect to last byte).
    pub timeout: Duration,
    /// `WEBHOOK_RETRY_BASE_MS`: the delay after the first failed attempt; each later one doubles,
    /// up to [`WebhookSettings::retry_max_delay`].
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_max_delay: Duration,
    /// `WEBHOOK_RETRY_WINDOW_MS`: a message whose scheduled delays would add up to more than this
    /// goes to the dead letters instead of being retried again.
    pub retry_window: Duration,
    /// `WEBHOOK_RETENTION_HOURS`: how long sent and dead-lettered messages are kept for replays
    /// (and their ledger entries against redeliveries).
    pub retention: Duration,
    /// The deployment's topic suffix (`KAFKA_TOPIC_SUFFIX`, as [`super::KafkaSettings`] reads
    /// it), to tell the three input topics apart.
    pub topic_suffix: String,
}

impl WebhookSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(WebhookSettings {
            allow_loopback: env.bool("WEBHOOK_ALLOW_LOOPBACK")?,
            timeout: Duration::from_millis(env.positive("WEBHOOK_TIMEOUT_MS")?),
            retry_base: Duration::from_millis(env.positive("WEBHOOK_RETRY_BASE_MS")?),
            retry_max_delay: Duration::from_secs(6 * 3600),
            retry_window: Duration::from_millis(env.parse("WEBHOOK_RETRY_WINDOW_MS")?),
            retention: Duration::from_secs(3600 * env.positive::<u64>("WEBHOOK_RETENTION_HOURS")?),
            topic_suffix: env.string_or("KAFKA_TOPIC_SUFFIX", ""),
        })
    }

    pub fn egress(&self) -> EgressPolicy {
        EgressPolicy::new(self.allow_loopback)
    }

    /// The delay after failed attempt `attempt` (1 for the first): the base doubled
    /// `attempt - 1` times, capped.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.retry_base
            .saturating_mul(factor)
            .min(self.retry_max_delay)
    }

    /// When to try again after failed attempt `attempt`, or `None` when the schedule is over:
    /// the delays so far, this one included, would pass the window. Counted on the schedule, not
    /// on the clock, so a slow or late drain never shortens it.
    pub fn retry_after(&self, attempt: u32) -> Option<Duration> {
        let scheduled: Duration = (1..=attempt).map(|a| self.delay_after(a)).sum();
        (scheduled <= self.retry_window).then(|| self.delay_after(attempt))
    }
}

impl Default for WebhookSettings {
    /// The reference's defaults (the fallback repeats them only for the type's sake: reading an
    /// empty environment cannot fail, `config_reference_gives_every_reader_its_default`).
    fn default() -> Self {
        WebhookSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap_or(WebhookSettings {
            allow_loopback: false,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(30),
            retry_max_delay: Duration::from_secs(6 * 3600),
            retry_window: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            topic_suffix: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_backs_off_for_up_to_a_day() {
        let s = WebhookSettings::default();
        let delays: Vec<u64> = (1..=20)
            .map_while(|a| s.retry_after(a))
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(delays[..3], [30, 60, 120]);
        assert_eq!(delays.last(), Some(&(6 * 3600)));
        let total: u64 = delays.iter().sum();
        assert!(total <= 24 * 3600 && total > 18 * 3600, "{total}");
        let quick = WebhookSettings {
            retry_base: Duration::from_millis(1),
            retry_window: Duration::from_millis(2),
            ..s.clone()
        };
        assert_eq!(quick.retry_after(1), Some(Duration::from_millis(1)));
        assert_eq!(quick.retry_after(2), None, "1 + 2 ms pass the window");
    }
}
