//! Configuration, read from the environment in exactly one place.
//!
//! Each function's `main` reads the settings groups it needs once, at cold start. `REDIS_URL`,
//! `KAFKA_BROKERS` and the JWT settings have no defaults: without them a function refuses to start
//! with a [`ConfigError`] that names the variable. Every other setting has a default suitable for
//! local use, listed in `docs/configuration.md`.
//!
//! One file per component: [`env`] (the reader and its error), [`redis`], [`kafka`], [`aws`]
//! (reads [`AwsSettings`]), [`trigger`], [`jwt`], [`inbox`], [`outbox`], [`realtime`],
//! [`analytics`], [`senders`] (the off-app senders), [`webhooks`] (outbound webhooks), [`telemetry`] (logs and metrics), [`tenant_limits`] (per-tenant limits and quota). Every public type is re-exported here, so
//! `shared::config::X` is the path to use.

pub mod analytics;
pub mod aws;
pub mod env;
pub mod inbox;
pub mod jwt;
pub mod kafka;
pub mod outbox;
pub mod realtime;
pub mod redis;
pub mod reference;
pub mod scheduler;
pub mod senders;
pub mod shedding;
pub mod telemetry;
pub mod tenant_limits;
pub mod trigger;
pub mod webhooks;

pub use self::analytics::AnalyticsSettings;
pub use self::env::{ConfigError, Env};
pub use self::inbox::{InboxSettings, RateLimit};
pub use self::jwt::{JwtSettings, TenantClaim};
pub use self::kafka::{KafkaAuth, KafkaSettings};
pub use self::outbox::OutboxSettings;
pub use self::realtime::{ConnectionsSettings, RealtimeSettings, CONNECTIONS_DEFAULT_REGION};
pub use self::redis::RedisSettings;
pub use self::scheduler::SchedulerSettings;
pub use self::senders::{
    ApnsSettings, EmailProvider, EmailSettings, FcmSettings, SendSettings, SenderSettings,
    SmsProvider, SmsSettings, VapidSettings,
};
pub use self::shedding::SheddingSettings;
pub use self::telemetry::TelemetrySettings;
pub use self::tenant_limits::{TenantLimits, TenantOverrides};
pub use self::trigger::TriggerSettings;
pub use self::webhooks::WebhookSettings;
pub use crate::aws::AwsSettings;

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
}
