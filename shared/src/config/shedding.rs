//! [`SheddingSettings`]: when the api stops accepting creates so that Redis never fills up.

use super::{ConfigError, Env};

/// When creates are shed (see `functions/api/src/shedding.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SheddingSettings {
    /// Creates answer 503 once Redis's `used_memory` reaches this percentage of `maxmemory`
    /// (1–100). Without a `maxmemory` nothing is shed.
    pub memory_percent: u8,
}

impl Default for SheddingSettings {
    fn default() -> Self {
        // The same defaults as an empty environment.
        match SheddingSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}

impl SheddingSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let memory_percent: u8 = env.positive("REDIS_SHED_MEMORY_PERCENT")?;
        if memory_percent > 100 {
            return Err(ConfigError::Invalid {
                var: "REDIS_SHED_MEMORY_PERCENT",
                value: memory_percent.to_string(),
                reason: "a percentage: 1 to 100".into(),
            });
        }
        Ok(SheddingSettings { memory_percent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_references_and_out_of_range_is_refused() {
        let read = |v: &str| {
            SheddingSettings::from_env(&Env::from_pairs([("REDIS_SHED_MEMORY_PERCENT", v)]))
        };
        assert_eq!(SheddingSettings::default().memory_percent, 90);
        assert_eq!(read("75").ok().map(|s| s.memory_percent), Some(75));
        assert!(read("0").is_err());
        assert!(read("101").is_err());
        assert!(read("ninety").is_err());
    }
}
