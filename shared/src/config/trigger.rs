//! [`TriggerSettings`]: how a Kafka-triggered function answers a batch with failed records.

use super::{ConfigError, Env};

/// How a Kafka-triggered function answers a batch with failed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    /// `KAFKA_REPORT_BATCH_ITEM_FAILURES` (default `true`): the event-source mapping has
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`, so failed records are reported in a
    /// partial batch response. `false` (the template's setting when the mapping has no error
    /// controls): any failed record fails the invocation, so Lambda retries the whole batch
    /// instead of committing it; handlers are idempotent, so the retry is safe.
    pub report_batch_item_failures: bool,
}

impl TriggerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(TriggerSettings {
            report_batch_item_failures: env.bool("KAFKA_REPORT_BATCH_ITEM_FAILURES")?,
        })
    }
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            report_batch_item_failures: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_mode_defaults_to_partial_batch_responses() {
        let s = TriggerSettings::from_env(&Env::from_pairs::<&str, &str>([]));
        assert_eq!(s.ok(), Some(TriggerSettings::default()));
        let s = TriggerSettings::from_env(&Env::from_pairs([(
            "KAFKA_REPORT_BATCH_ITEM_FAILURES",
            "false",
        )]));
        assert_eq!(s.map(|s| s.report_batch_item_failures).ok(), Some(false));
    }
}
