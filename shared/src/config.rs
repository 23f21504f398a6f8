//! Configuration, read from the environment in exactly one place.
//!
//! Each function's `main` reads the settings groups it needs once, at cold start. `REDIS_URL`,
//! `KAFKA_BROKERS` and the JWT settings have no defaults: without them a function refuses to start
//! with a [`ConfigError`] that names the variable. Every other setting has a default suitable for
//! local use, listed in `docs/configuration.md`.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// A setting that is missing or unusable. The message always names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; it has no default")]
    Missing(&'static str),
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Where settings come from: the process environment, or a fixed map (tests, devstack).
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_owned)
            .ok_or(ConfigError::Missing(var))
    }

    pub fn optional(&self, var: &'static str) -> Option<String> {
        self.get(var).map(str::to_owned)
    }

    pub fn string_or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_owned()
    }

    pub fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                var,
                value: v.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn bool_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                var,
                value: v.to_owned(),
                reason: "expected true or false".into(),
            }),
        }
    }

    fn positive<T: PartialOrd + Default + FromStr>(
        &self,
        var: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.parse_or(var, default)?;
        if v > T::default() {
            Ok(v)
        } else {
            Err(ConfigError::Invalid {
                var,
                value: self.get(var).unwrap_or_default().to_owned(),
                reason: "must be greater than 0".into(),
            })
        }
    }
}

/// How to reach Redis, and how keys are named.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://`, `rediss://` (TLS), with optional `user:password@`.
    pub url: String,
    /// `REDIS_CLUSTER=true` for Redis Cluster (ElastiCache / MemoryDB cluster mode).
    pub cluster: bool,
    /// Prepended to every key; lets tests and several deployments share one server.
    pub key_prefix: String,
}

impl RedisSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.required("REDIS_URL")?;
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://"))
        {
            return Err(ConfigError::Invalid {
                var: "REDIS_URL",
                value: url,
                reason: "expected redis:// or rediss://".into(),
            });
        }
        Ok(RedisSettings {
            url,
            cluster: env.bool_or("REDIS_CLUSTER", false)?,
            key_prefix: env.string_or("REDIS_KEY_PREFIX", ""),
        })
    }
}

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` bootstrap list.
    pub brokers: String,
    /// Appended to every topic name (empty in production; unique per test).
    pub topic_suffix: String,
    /// `linger.ms`: 0 sends at once, which is what a request-scoped Lambda wants.
    pub linger_ms: u32,
    /// How long a produce may wait for the broker before the request gives up on Kafka and leaves
    /// the change to the outbox relay. Keeps a create under 2 s with the broker down.
    pub produce_timeout: Duration,
    /// Extra librdkafka properties (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, ...).
    pub client_properties: Vec<(String, String)>,
}

impl KafkaSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut client_properties = Vec::new();
        for (var, prop) in [
            ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
            ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
            ("KAFKA_SASL_USERNAME", "sasl.username"),
            ("KAFKA_SASL_PASSWORD", "sasl.password"),
            ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
        ] {
            if let Some(v) = env.optional(var) {
                client_properties.push((prop.to_owned(), v));
            }
        }
        Ok(KafkaSettings {
            brokers: env.required("KAFKA_BROKERS")?,
            topic_suffix: env.string_or("KAFKA_TOPIC_SUFFIX", ""),
            linger_ms: env.parse_or("KAFKA_LINGER_MS", 0)?,
            produce_timeout: Duration::from_millis(
                env.positive("KAFKA_PRODUCE_TIMEOUT_MS", 1_500u64)?,
            ),
            client_properties,
        })
    }
}

/// How to verify tokens (the callers that verify JWTs themselves: `ws`; the HTTP API trusts API
/// Gateway's JWT authorizer). No defaults: a function that needs them refuses to start without.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
}

impl JwtSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(JwtSettings {
            issuer: env.required("JWT_ISSUER")?,
            audience: env.required("JWT_AUDIENCE")?,
            jwks_url: env.required("JWKS_URL")?,
        })
    }
}

/// One GCRA limit: `burst` requests at once, refilled at `per_period` per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_period: u32,
    pub period: Duration,
}

impl RateLimit {
    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.per_period.max(1)
    }
}

/// The inbox's rules: caps, retention, idempotency and rate limits.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// Most notifications kept per user; the oldest are evicted beyond it.
    pub inbox_cap: u32,
    /// Most changes kept in a user's change log (unpublished changes are always kept).
    pub change_log_cap: u32,
    /// Notifications older than this are purged, and an idle user's inbox expires after it.
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    pub per_recipient: RateLimit,
    pub per_sender: RateLimit,
}

impl InboxSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(InboxSettings {
            inbox_cap: env.positive("INBOX_CAP", 1_000)?,
            change_log_cap: env.positive("CHANGE_LOG_CAP", 1_000)?,
            retention: Duration::from_secs(env.positive("RETENTION_DAYS", 90u64)? * 86_400),
            idempotency_ttl: Duration::from_secs(
                env.positive("IDEMPOTENCY_TTL_SECONDS", 86_400u64)?,
            ),
            per_recipient: RateLimit {
                burst: env.positive("RATE_RECIPIENT_BURST", 200)?,
                per_period: env.positive("RATE_RECIPIENT_PER_MINUTE", 100)?,
                period: Duration::from_secs(60),
            },
            per_sender: RateLimit {
                burst: env.positive("RATE_SENDER_BURST", 500)?,
                per_period: env.positive("RATE_SENDER_PER_SECOND", 100)?,
                period: Duration::from_secs(1),
            },
        })
    }
}

impl Default for InboxSettings {
    fn default() -> Self {
        // The same defaults as an empty environment.
        match InboxSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}

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
            grace: Duration::from_millis(env.parse_or("OUTBOX_GRACE_MS", 15_000u64)?),
            concurrency: env.positive("OUTBOX_CONCURRENCY", 16usize)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_settings_name_the_variable() {
        let env = Env::from_pairs([("KAFKA_BROKERS", "b:9092"), ("KAFKA_LINGER_MS", "soon")]);
        let e = RedisSettings::from_env(&env).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("REDIS_URL is not set; it has no default".into())
        );
        let e = KafkaSettings::from_env(&env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("KAFKA_LINGER_MS=\"soon\" is invalid"), "{e}");
        let e = JwtSettings::from_env(&env).err();
        assert_eq!(e, Some(ConfigError::Missing("JWT_ISSUER")));
        let env = Env::from_pairs([("INBOX_CAP", "0")]);
        assert!(matches!(
            InboxSettings::from_env(&env),
            Err(ConfigError::Invalid {
                var: "INBOX_CAP",
                ..
            })
        ));
    }

    #[test]
    fn defaults_allow_normal_traffic() {
        let s = InboxSettings::default();
        assert_eq!(
            (s.per_recipient.burst, s.per_recipient.per_period),
            (200, 100)
        );
        assert_eq!(
            s.per_recipient.emission_interval(),
            Duration::from_millis(600)
        );
        assert_eq!((s.per_sender.burst, s.per_sender.per_period), (500, 100));
        assert_eq!(s.idempotency_ttl, Duration::from_secs(86_400));
    }
}
