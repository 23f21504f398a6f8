//! What the function builds once per cold start: the clients and the configured senders.

use shared::store::TenantScoped;
use shared::tenant::Tenant;
use std::sync::Arc;
use std::time::Duration;

use shared::bus::EventBus;
use shared::config::{
    ConfigError, EmailProvider, Env, KafkaSettings, RedisSettings, SenderSettings,
};
use shared::egress::EgressPolicy;
use shared::error::StartupError;
use shared::store::{
    ContactBook, DeviceBook, EscalationBook, KeySpace, ProviderBreaker, PushLedger, RedisConn,
};

use shared::addresses::PushSubscription;

use crate::payload::RenderedEmail;
use crate::senders::apns::{Apns, ApnsMessage};
use crate::senders::email::Email;
use crate::senders::fcm::{Fcm, FcmMessage};
use crate::senders::ses::Ses;
use crate::senders::sms::{Sms, SmsBody};
use crate::senders::webpush::{PushMessage, Vapid, WebPush};
use crate::senders::{Adapter, SendPolicy};

/// An adapter for PUSH: a user's push subscription, and what a push carries.
pub type PushAdapter = dyn Adapter<To = PushSubscription, Message = PushMessage>;
/// An adapter for EMAIL: an address, and the rendered message.
pub type EmailAdapter = dyn Adapter<To = str, Message = RenderedEmail>;
/// An adapter for SMS: an E.164 number, and one segment of text.
pub type SmsAdapter = dyn Adapter<To = str, Message = SmsBody>;
/// An adapter for android devices: an FCM registration token, and the FCM message.
pub type FcmAdapter = dyn Adapter<To = str, Message = FcmMessage>;
/// An adapter for ios devices: an APNs device token, and the APNs push.
pub type ApnsAdapter = dyn Adapter<To = str, Message = ApnsMessage>;

/// The configured adapters of each off-app channel (none where the channel's settings are
/// absent; email's and SMS's in failover order, `EMAIL_PROVIDERS`, `SMS_PROVIDERS`), and the one policy every send goes
/// through ([`SendPolicy::deliver`], [`SendPolicy::deliver_first`]).
#[derive(Debug)]
pub struct Senders {
    pub push: Option<Box<PushAdapter>>,
    pub email: Vec<Box<EmailAdapter>>,
    pub sms: Vec<Box<SmsAdapter>>,
    pub fcm: Option<Box<FcmAdapter>>,
    pub apns: Option<Box<ApnsAdapter>>,
    pub policy: SendPolicy,
}

impl Senders {
    /// Is any adapter of PUSH's targets configured (Web Push for subscriptions, FCM for android
    /// devices)? Else the channel is `suppressed`/`not-configured`.
    pub fn push_configured(&self) -> bool {
        self.push.is_some() || self.fcm.is_some() || self.apns.is_some()
    }
}

/// Built once per cold start. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Deps {
    pub bus: EventBus,
    pub contacts: ContactBook,
    pub devices: DeviceBook,
    pub ledger: PushLedger,
    pub escalations: EscalationBook,
    pub senders: Arc<Senders>,
    pub settings: Arc<SenderSettings>,
}

impl Deps {
    /// The same dependencies acting on `tenant`'s keys: what a job, plan or badge update of a
    /// record (or retry entry) of `tenant` runs with.
    pub fn for_tenant(&self, tenant: &Tenant) -> Deps {
        Deps {
            bus: self.bus.clone(),
            contacts: self.contacts.for_tenant(tenant),
            devices: self.devices.for_tenant(tenant),
            ledger: self.ledger.for_tenant(tenant),
            escalations: self.escalations.for_tenant(tenant),
            senders: self.senders.clone(),
            settings: self.settings.clone(),
        }
    }

    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let channels = SenderSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let bus = EventBus::connect(&kafka).await?;
        let deps = Self::new(conn, KeySpace::new(redis.key_prefix), bus, channels)?;
        tracing::info!(
            push = deps.senders.push.as_ref().map(|a| a.provider()),
            email = ?deps
                .senders
                .email
                .iter()
                .map(|a| a.provider())
                .collect::<Vec<_>>(),
            sms = ?deps
                .senders
                .sms
                .iter()
                .map(|a| a.provider())
                .collect::<Vec<_>>(),
            fcm = deps.senders.fcm.as_ref().map(|a| a.provider()),
            apns = deps.senders.apns.as_ref().map(|a| a.provider()),
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
        let policy = SendPolicy::new(settings.send.clone()).with_breaker(ProviderBreaker::new(
            conn.clone(),
            keys.clone(),
            settings.send.breaker_failures,
            settings.send.breaker_cooldown,
        ));
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
        let timeout = settings.send.timeout;
        let push: Option<Box<PushAdapter>> = match &settings.vapid {
            Some(v) => Some(Box::new(WebPush::new(
                Vapid::from_settings(v)?,
                egress.client(builder()).map_err(invalid)?,
                timeout,
                egress,
            ))),
            None => None,
        };
        let client = builder().build().map_err(invalid)?;
        let mut email: Vec<Box<EmailAdapter>> = Vec::new();
        for provider in settings.email.iter().flat_map(|e| &e.providers) {
            let from = settings.email.as_ref().map_or("", |e| e.from.as_str());
            email.push(match provider {
                EmailProvider::Smtp { url } => Box::new(Email::new(url, from, timeout)?),
                EmailProvider::Ses { aws, endpoint } => {
                    Box::new(Ses::new(aws, endpoint.as_deref(), from, timeout)?)
                }
            });
        }
        let fcm: Option<Box<FcmAdapter>> = match &settings.fcm {
            Some(f) => Some(Box::new(Fcm::new(f, client.clone(), timeout).map_err(
                |e| ConfigError::Invalid {
                    var: "FCM_SERVICE_ACCOUNT",
                    value: "***".into(),
                    reason: e.to_string(),
                },
            )?)),
            None => None,
        };
        // APNs speaks HTTP/2 only: a client of its own.
        let apns: Option<Box<ApnsAdapter>> = match &settings.apns {
            Some(a) => Some(Box::new(Apns::new(a, timeout).map_err(|e| {
                ConfigError::Invalid {
                    var: e.var,
                    value: "***".into(),
                    reason: e.reason,
                }
            })?)),
            None => None,
        };
        let sms: Vec<Box<SmsAdapter>> = settings
            .sms
            .iter()
            .map(|p| Box::new(Sms::provider(p.clone(), client.clone(), timeout)) as Box<SmsAdapter>)
            .collect();
        Ok(Deps {
            bus,
            contacts: ContactBook::new(conn.clone(), keys.clone()),
            devices: DeviceBook::new(conn.clone(), keys.clone()),
            escalations: EscalationBook::new(conn.clone(), keys.clone()),
            ledger: PushLedger::new(conn, keys),
            senders: Arc::new(Senders {
                push,
                email,
                sms,
                fcm,
                apns,
                policy,
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
    fn sms_providers_are_tried_in_the_order_named_each_with_its_own_settings() {
        let twilio = [
            ("SMS_API_URL", "https://api.twilio.com/"),
            ("SMS_ACCOUNT_SID", "AC1"),
            ("SMS_AUTH_TOKEN", "t1"),
            ("SMS_FROM", "+1555"),
        ];
        let fallback = [
            ("SMS_FALLBACK_API_URL", "https://sms.example.com"),
            ("SMS_FALLBACK_ACCOUNT_SID", "AC2"),
            ("SMS_FALLBACK_AUTH_TOKEN", "t2"),
            ("SMS_FALLBACK_FROM", "+1666"),
        ];
        let names = |pairs: &[(&str, &str)]| -> Result<Vec<&'static str>, ConfigError> {
            Ok(settings(pairs)?.sms.iter().map(|p| p.name).collect())
        };
        let both: Vec<_> = twilio.iter().chain(&fallback).copied().collect();
        // Without SMS_PROVIDERS: each provider whose settings are there, `twilio` first.
        assert_eq!(names(&twilio), Ok(vec!["twilio"]));
        assert_eq!(names(&both), Ok(vec!["twilio", "twilio-fallback"]));
        let mut reversed = both.clone();
        reversed.push(("SMS_PROVIDERS", "twilio-fallback,twilio"));
        assert_eq!(names(&reversed), Ok(vec!["twilio-fallback", "twilio"]));
        let s = settings(&reversed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.sms[0].api.account_sid, "AC2");
        assert_eq!(s.sms[1].api.api_url, "https://api.twilio.com");
        // A named provider needs its settings; unknown or repeated names stop the cold start.
        let mut missing = twilio.to_vec();
        missing.push(("SMS_PROVIDERS", "twilio,twilio-fallback"));
        assert_eq!(
            names(&missing),
            Err(ConfigError::Missing("SMS_FALLBACK_API_URL"))
        );
        for bad in ["twilio,twilio", "vonage", " , "] {
            let mut v = both.clone();
            v.push(("SMS_PROVIDERS", bad));
            assert!(
                matches!(
                    names(&v),
                    Err(ConfigError::Invalid {
                        var: "SMS_PROVIDERS",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn half_a_channel_stops_the_cold_start_naming_the_missing_variable() {
        let none = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.vapid.is_none() && none.email.is_none() && none.sms.is_empty());
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
        // EMAIL_PROVIDERS: each named provider configured, known, named once.
        let mut ses = full.clone();
        ses.retain(|(k, _)| *k != "SMTP_URL");
        ses.push(("EMAIL_PROVIDERS", "ses, smtp"));
        assert_eq!(
            settings(&ses).err(),
            Some(ConfigError::Missing("AWS_ACCESS_KEY_ID"))
        );
        ses.extend([
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        assert_eq!(settings(&ses).err(), Some(ConfigError::Missing("SMTP_URL")));
        ses.push(("SMTP_URL", "smtp://127.0.0.1:2525"));
        let s = settings(&ses).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = s
            .email
            .iter()
            .flat_map(|e| e.providers.iter().map(|p| p.name()))
            .collect();
        assert_eq!(names, ["ses", "smtp"]);
        for bad in ["ses,ses", "sendgrid", " , "] {
            let mut v = ses.clone();
            v.retain(|(k, _)| *k != "EMAIL_PROVIDERS");
            v.push(("EMAIL_PROVIDERS", bad));
            assert!(
                matches!(
                    settings(&v),
                    Err(ConfigError::Invalid {
                        var: "EMAIL_PROVIDERS",
                        ..
                    })
                ),
                "{bad}"
            );
        }
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
