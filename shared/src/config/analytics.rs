//! [`AnalyticsSettings`]: retention of the analytics counters and outcome histories, and how
//! the counter shards name the Kafka cluster.

use std::time::Duration;

use super::{ConfigError, Env};

/// The analytics counters and per-notification outcome histories (`analytics` writes them, the
/// api function reads them).
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// How long a day's counters, unique-recipient estimate and partition watermarks live after
    /// their last write.
    pub retention: Duration,
    /// How long a notification's outcome history lives after its last entry.
    pub history_ttl: Duration,
    /// The deployment's topic suffix (`KAFKA_TOPIC_SUFFIX`, as [`KafkaSettings`] reads it), to
    /// tell the two input topics apart; `analytics` needs no broker of its own.
    pub topic_suffix: String,
    /// Names the Kafka cluster in every counter shard's key (`ANALYTICS_CLUSTER_ID`). Unset, the
    /// function derives it from the trigger event (the MSK cluster ARN, or the self-managed
    /// bootstrap list), so a new cluster, whose offsets restart at 0, never meets an old
    /// cluster's watermarks. Set it to keep the shards when the bootstrap list changes.
    pub cluster_id: Option<String>,
}

impl AnalyticsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AnalyticsSettings {
            retention: Duration::from_secs(
                env.positive::<u64>("ANALYTICS_RETENTION_DAYS")? * 86_400,
            ),
            history_ttl: Duration::from_secs(
                env.positive::<u64>("ANALYTICS_HISTORY_TTL_DAYS")? * 86_400,
            ),
            topic_suffix: env.string_or("KAFKA_TOPIC_SUFFIX", ""),
            cluster_id: match env.optional("ANALYTICS_CLUSTER_ID") {
                Some(id)
                    if id.len() > 64
                        || !id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
                {
                    return Err(ConfigError::Invalid {
                        var: "ANALYTICS_CLUSTER_ID",
                        value: id,
                        reason: "use at most 64 letters, digits, `.`, `_` or `-`".into(),
                    })
                }
                id => id,
            },
        })
    }
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        match AnalyticsSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}
