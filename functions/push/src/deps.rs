//! What the function builds once per cold start: the clients and the configured senders.

use std::sync::Arc;
use std::time::Duration;

use shared::bus::EventBus;
use shared::config::{ConfigError, Env, KafkaSettings, RedisSettings, SenderSettings};
use shared::egress::EgressPolicy;
use shared::error::StartupError;
use shared::store::{ContactBook, KeySpace, PushLedger, RedisConn};

use crate::senders::email::Email;
use crate::senders::sms::Sms;
use crate::senders::webpush::{Vapid, WebPush};
use crate::senders::SendPolicy;

/// The configured senders; `None` where the channel's settings are absent.
#[derive(Debug, Default)]
pub struct Senders {
    pub webpush: Option<WebPush>,
    pub email: Option<Email>,
    pub sms: Option<Sms>,
}

/// Built once per cold start. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Deps {
    pub bus: EventBus,
    pub contacts: ContactBook,
    pub ledger: PushLedger,
    pub senders: Arc<Senders>,
    pub settings: Arc<SenderSettings>,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let channels = SenderSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let bus = EventBus::connect(&kafka).await?;
        let deps = Self::new(conn, KeySpace::new(redis.key_prefix), bus, channels)?;
        tracing::info!(
            webpush = deps.senders.webpush.is_some(),
            email = deps.senders.email.is_some(),
            sms = deps.senders.sms.is_some(),
            "channels configured"
        );
        Ok(deps)
    }

    /// Builds the senders the settings configure.
    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        bus: EventBus,
        settings: SenderSettings,
    ) -> Result<Self, ConfigError> {
        let policy = SendPolicy::new(settings.send.clone());
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(settings.send.timeout)
                .pool_idle_timeout(Duration::from_secs(50))
        };
        let invalid = |e: reqwest::Error| ConfigError::Invalid {
            var: "PUSH_TIMEOUT_MS",
            value: format!("{:?}", settings.send.timeout),
            reason: e.to_string(),
        };
        // Push endpoints are user-supplied: their client is the outbound policy's. The SMS API's
        // URL is the operator's (`SMS_API_URL`), reached with an ordinary client.
        let egress = EgressPolicy::new(settings.allow_loopback);
        let webpush = match &settings.vapid {
            Some(v) => Some(WebPush::new(
                Vapid::from_settings(v)?,
                egress.client(builder()).map_err(invalid)?,
                policy.clone(),
                egress,
            )),
            None => None,
        };
        let client = builder().build().map_err(invalid)?;
        let email = match &settings.email {
            Some(e) => Some(Email::new(e, policy.clone())?),
            None => None,
        };
        let sms = settings
            .sms
            .clone()
            .map(|s| Sms::new(s, client.clone(), policy.clone()));
        Ok(Deps {
            bus,
            contacts: ContactBook::new(conn.clone(), keys.clone()),
            ledger: PushLedger::new(conn, keys),
            senders: Arc::new(Senders {
                webpush,
                email,
                sms,
            }),
            settings: Arc::new(settings),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<SenderSettings, ConfigError> {
        SenderSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn half_a_channel_stops_the_cold_start_naming_the_missing_variable() {
        let none = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.vapid.is_none() && none.email.is_none() && none.sms.is_none());
        assert_eq!(
            settings(&[("VAPID_PRIVATE_KEY", "x")]).err(),
            Some(ConfigError::Missing("VAPID_SUBJECT"))
        );
        assert!(matches!(
            settings(&[
                ("VAPID_PRIVATE_KEY", "x"),
                ("VAPID_SUBJECT", "ops@example.com")
            ]),
            Err(ConfigError::Invalid {
                var: "VAPID_SUBJECT",
                ..
            })
        ));
        assert_eq!(
            settings(&[
                ("SMS_API_URL", "https://api.twilio.com"),
                ("SMS_FROM", "+1555")
            ])
            .err(),
            Some(ConfigError::Missing("SMS_ACCOUNT_SID"))
        );
        // Email needs a working one-click unsubscribe.
        let email = [
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
            ("EMAIL_FROM", "a@b.co"),
        ];
        assert_eq!(
            settings(&email).err(),
            Some(ConfigError::Missing("UNSUBSCRIBE_SECRET"))
        );
        let mut full = email.to_vec();
        full.push(("UNSUBSCRIBE_SECRET", "0123456789abcdef"));
        full.push(("PUBLIC_API_URL", "https://api.example.com/"));
        let s = settings(&full).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.public_api_url.as_deref(), Some("https://api.example.com"));
        // The password never shows.
        let s = settings(&[
            ("SMTP_URL", "smtps://me:hunter2@smtp.example.com:465"),
            ("EMAIL_FROM", "a@b.co"),
            ("UNSUBSCRIBE_SECRET", "0123456789abcdef"),
            ("PUBLIC_API_URL", "https://api.example.com"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{s:?}").contains("hunter2"));
        // A bad VAPID key is refused at cold start, naming the variable.
        let bad = settings(&[
            ("VAPID_PRIVATE_KEY", "AAAA"),
            ("VAPID_SUBJECT", "mailto:a@b.co"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            bad.vapid.as_ref().map(Vapid::from_settings),
            Some(Err(ConfigError::Invalid {
                var: "VAPID_PRIVATE_KEY",
                ..
            }))
        ));
    }
}
