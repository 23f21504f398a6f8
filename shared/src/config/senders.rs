//! [`SenderSettings`]: the off-app senders (Web Push, email and SMS with their failover lists, FCM,
//! APNs),
//! one-click unsubscribe, and
//! how `push` sends. A sender whose settings are absent is *not configured*; half of its settings
//! stops the cold start. Secrets are masked in `Debug`.

use std::time::Duration;

use super::{ConfigError, Env};
use crate::aws::AwsSettings;

/// The off-app channels (`push` sends; `api` takes subscriptions, contacts and unsubscribes).
/// A channel whose settings are absent is *not configured*: its sends are recorded as
/// `suppressed` / `not-configured`, never silently dropped. Half a channel's settings is a
/// mistake and stops the cold start, naming the missing variable. Secrets are masked in `Debug`.
#[derive(Clone, Default)]
pub struct SenderSettings {
    /// `PUSH_ALLOW_LOOPBACK`: accept push endpoints on loopback hosts (devstack, tests). Never in
    /// production: a loopback endpoint would make the function POST to its own host.
    pub allow_loopback: bool,
    /// Web Push (VAPID, RFC 8292): `VAPID_SUBJECT` (`mailto:` or `https:` contact) and
    /// `VAPID_PRIVATE_KEY` (the raw P-256 scalar, base64url) for `push`.
    pub vapid: Option<VapidSettings>,
    /// `VAPID_PUBLIC_KEY`: the application server key browsers subscribe with (65 bytes,
    /// base64url), served by `GET /v1/push/vapid-public-key`.
    pub vapid_public_key: Option<String>,
    pub email: Option<EmailSettings>,
    /// SMS's providers in the order they are tried (`SMS_PROVIDERS`); empty: SMS not configured.
    pub sms: Vec<SmsProvider>,
    /// Firebase Cloud Messaging (the users' Android devices).
    pub fcm: Option<FcmSettings>,
    /// Apple Push Notification service (the users' iOS devices).
    pub apns: Option<ApnsSettings>,
    /// One-click unsubscribe (RFC 8058): `UNSUBSCRIBE_SECRET` signs the links (`push`) and checks
    /// them (`api`); `PUBLIC_API_URL` is the HTTP API's public base URL the links point to.
    pub unsubscribe_secret: Option<String>,
    pub public_api_url: Option<String>,
    pub send: SendSettings,
}

#[derive(Clone)]
pub struct VapidSettings {
    pub subject: String,
    pub private_key: String,
}

/// Email: `EMAIL_FROM`, the From address (`Name <addr@example.com>` or `addr@example.com`), and
/// the providers in the order they are tried (`EMAIL_PROVIDERS`, e.g. `ses,smtp`; without it,
/// `smtp` when `SMTP_URL` is set).
#[derive(Clone)]
pub struct EmailSettings {
    pub from: String,
    /// At least one; each configured. The send fails over along it ([`EmailProvider`]s in order).
    pub providers: Vec<EmailProvider>,
}

#[derive(Clone)]
pub enum EmailProvider {
    /// `SMTP_URL`: `smtp://host:port` (plain, e.g. a local relay), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host:465` (implicit TLS); credentials percent-encoded.
    Smtp { url: String },
    /// Amazon SES (v2 API) with the function's AWS identity and region; `SES_ENDPOINT` replaces
    /// the regional endpoint (a local SES in tests).
    Ses {
        aws: AwsSettings,
        endpoint: Option<String>,
    },
}

impl EmailProvider {
    /// Its name in `EMAIL_PROVIDERS`.
    pub fn name(&self) -> &'static str {
        match self {
            EmailProvider::Smtp { .. } => "smtp",
            EmailProvider::Ses { .. } => "ses",
        }
    }
}

/// One SMS provider of `SMS_PROVIDERS`: its name there (and in logs, breakers and outcomes) and
/// its API. Both are Twilio-shaped: `twilio` (`SMS_API_URL`, `SMS_ACCOUNT_SID`,
/// `SMS_AUTH_TOKEN`, `SMS_FROM`) and `twilio-fallback`, a second account or a second provider
/// with the same API (`SMS_FALLBACK_API_URL`, `SMS_FALLBACK_ACCOUNT_SID`,
/// `SMS_FALLBACK_AUTH_TOKEN`, `SMS_FALLBACK_FROM`).
#[derive(Clone)]
pub struct SmsProvider {
    pub name: &'static str,
    pub api: SmsSettings,
}

/// The SMS providers `SMS_PROVIDERS` may name, with the variables of each (in [`SmsSettings`]'s
/// order: URL, SID, token, From).
const SMS_PROVIDERS: [(&str, [&str; 4]); 2] = [
    (
        "twilio",
        [
            "SMS_API_URL",
            "SMS_ACCOUNT_SID",
            "SMS_AUTH_TOKEN",
            "SMS_FROM",
        ],
    ),
    (
        "twilio-fallback",
        [
            "SMS_FALLBACK_API_URL",
            "SMS_FALLBACK_ACCOUNT_SID",
            "SMS_FALLBACK_AUTH_TOKEN",
            "SMS_FALLBACK_FROM",
        ],
    ),
];

/// An SMS provider with Twilio's Messages API shape: `POST {SMS_API_URL}/2010-04-01/Accounts/
/// {SMS_ACCOUNT_SID}/Messages.json`, basic auth `SID:SMS_AUTH_TOKEN`, form `To`, `From`, `Body`.
#[derive(Clone)]
pub struct SmsSettings {
    pub api_url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
}

/// Firebase Cloud Messaging, HTTP v1: `POST {FCM_ENDPOINT}/v1/projects/{FCM_PROJECT_ID}/
/// messages:send` with an OAuth 2 access token got at `FCM_TOKEN_URL` for the service account
/// `FCM_SERVICE_ACCOUNT` (the key file's JSON: `client_email`, `private_key`).
#[derive(Clone)]
pub struct FcmSettings {
    pub project_id: String,
    pub service_account: String,
    /// No trailing slash.
    pub endpoint: String,
    pub token_url: String,
}

/// Google's FCM endpoint and OAuth 2 token URL, the defaults of `FCM_ENDPOINT` and
/// `FCM_TOKEN_URL`.
pub const FCM_DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";
pub const FCM_DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// Apple Push Notification service, HTTP/2 with token-based auth: `POST {APNS_ENDPOINT}/3/device/
/// <device token>` with an ES256 JWT signed by the `.p8` key `APNS_PRIVATE_KEY` (key id
/// `APNS_KEY_ID`, team `APNS_TEAM_ID`), for the app `APNS_TOPIC` (its bundle id).
#[derive(Clone)]
pub struct ApnsSettings {
    pub key_id: String,
    pub team_id: String,
    /// The `.p8` file's PEM (PKCS#8, P-256). A secret.
    pub private_key: String,
    pub topic: String,
    /// No trailing slash.
    pub endpoint: String,
    /// `APNS_CA_CERT`: one more certificate authority (PEM) the APNs client trusts besides the
    /// public roots. For a local APNs fake's self-signed certificate only; unset in production.
    pub ca_cert: Option<String>,
}

/// Apple's production endpoint, the default of `APNS_ENDPOINT` (development builds of an app get
/// sandbox tokens: `https://api.sandbox.push.apple.com`).
pub const APNS_DEFAULT_ENDPOINT: &str = "https://api.push.apple.com";

/// How `push` sends: bounded concurrency, bounded inline retries, and when a wait goes to the
/// retry schedule instead of being slept.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// `PUSH_CONCURRENCY`: sends in flight at once per process.
    pub concurrency: usize,
    /// `PUSH_TIMEOUT_MS`: one provider request's time limit.
    pub timeout: Duration,
    /// `PUSH_RETRY_ATTEMPTS`: attempts per send on 5xx/timeouts (the first included).
    pub attempts: u32,
    /// `PUSH_RETRY_BACKOFF_MS`: the first inline backoff; it doubles per attempt.
    pub backoff: Duration,
    /// `PUSH_INLINE_WAIT_MAX_MS`: the longest wait slept inline (a `Retry-After`); longer ones go
    /// to the retry schedule.
    pub inline_wait_max: Duration,
    /// `PUSH_TTL_SECONDS`: how long a push service keeps an undelivered message (`TTL` header).
    pub ttl: Duration,
    /// `PUSH_MAX_DEFERRALS`: how often one send may be deferred before it is recorded `failed`.
    pub max_deferrals: u32,
    /// `PROVIDER_BREAKER_FAILURES`: consecutive unavailable or still-throttling sends that open a
    /// provider's circuit breaker (`shared::store::breaker`).
    pub breaker_failures: u32,
    /// `PROVIDER_BREAKER_COOLDOWN_MS`: how long an open breaker skips its provider before one
    /// trial call.
    pub breaker_cooldown: Duration,
}

impl Default for SendSettings {
    fn default() -> Self {
        // The reference's defaults, as an empty environment gives them.
        match SenderSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s.send,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}

impl SenderSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // All of a group, or none of it.
        let group = |vars: &[&'static str]| -> Result<Option<Vec<String>>, ConfigError> {
            let values: Vec<Option<String>> = vars.iter().map(|v| env.optional(v)).collect();
            if values.iter().all(Option::is_none) {
                return Ok(None);
            }
            vars.iter()
                .zip(values)
                .map(|(var, v)| v.ok_or(ConfigError::Missing(var)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let vapid = group(&["VAPID_SUBJECT", "VAPID_PRIVATE_KEY"])?.map(|v| VapidSettings {
            subject: v[0].clone(),
            private_key: v[1].clone(),
        });
        if let Some(v) = &vapid {
            if !(v.subject.starts_with("mailto:") || v.subject.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    var: "VAPID_SUBJECT",
                    value: v.subject.clone(),
                    reason: "must be a mailto: or https: URL (RFC 8292 §2.1)".into(),
                });
            }
        }
        let email = email_settings(env)?;
        let sms = sms_providers(env, &group)?;
        let fcm = group(&["FCM_PROJECT_ID", "FCM_SERVICE_ACCOUNT"])?.map(|v| FcmSettings {
            project_id: v[0].clone(),
            service_account: v[1].clone(),
            endpoint: env
                .optional("FCM_ENDPOINT")
                .unwrap_or_else(|| FCM_DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_owned(),
            token_url: env
                .optional("FCM_TOKEN_URL")
                .unwrap_or_else(|| FCM_DEFAULT_TOKEN_URL.into()),
        });
        let apns = group(&[
            "APNS_KEY_ID",
            "APNS_TEAM_ID",
            "APNS_PRIVATE_KEY",
            "APNS_TOPIC",
        ])?
        .map(|v| ApnsSettings {
            key_id: v[0].clone(),
            team_id: v[1].clone(),
            private_key: v[2].clone(),
            topic: v[3].clone(),
            endpoint: env
                .optional("APNS_ENDPOINT")
                .unwrap_or_else(|| APNS_DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_owned(),
            ca_cert: env.optional("APNS_CA_CERT"),
        });
        let unsubscribe_secret = env.optional("UNSUBSCRIBE_SECRET");
        if unsubscribe_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid {
                var: "UNSUBSCRIBE_SECRET",
                value: "***".into(),
                reason: "must be at least 16 characters".into(),
            });
        }
        let public_api_url = env
            .optional("PUBLIC_API_URL")
            .map(|u| u.trim_end_matches('/').to_owned());
        // Mail without a working one-click unsubscribe is not sent at all (RFC 8058; bulk-sender
        // rules of the big mailbox providers).
        if email.is_some() {
            if unsubscribe_secret.is_none() {
                return Err(ConfigError::Missing("UNSUBSCRIBE_SECRET"));
            }
            if public_api_url.is_none() {
                return Err(ConfigError::Missing("PUBLIC_API_URL"));
            }
        }
        Ok(SenderSettings {
            allow_loopback: env.bool("PUSH_ALLOW_LOOPBACK")?,
            vapid,
            vapid_public_key: env.optional("VAPID_PUBLIC_KEY"),
            email,
            sms,
            fcm,
            apns,
            unsubscribe_secret,
            public_api_url,
            send: SendSettings {
                concurrency: env.positive("PUSH_CONCURRENCY")?,
                timeout: Duration::from_millis(env.positive("PUSH_TIMEOUT_MS")?),
                attempts: env.positive("PUSH_RETRY_ATTEMPTS")?,
                backoff: Duration::from_millis(env.parse("PUSH_RETRY_BACKOFF_MS")?),
                inline_wait_max: Duration::from_millis(env.parse("PUSH_INLINE_WAIT_MAX_MS")?),
                ttl: Duration::from_secs(env.parse("PUSH_TTL_SECONDS")?),
                max_deferrals: env.positive("PUSH_MAX_DEFERRALS")?,
                breaker_failures: env.positive("PROVIDER_BREAKER_FAILURES")?,
                breaker_cooldown: Duration::from_millis(
                    env.positive("PROVIDER_BREAKER_COOLDOWN_MS")?,
                ),
            },
        })
    }
}

/// Email's settings, or `None` when no provider is named and `SMTP_URL` and `EMAIL_FROM` are
/// both unset.
fn email_settings(env: &Env) -> Result<Option<EmailSettings>, ConfigError> {
    let names: Vec<String> = match env.optional("EMAIL_PROVIDERS") {
        Some(list) => list
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect(),
        None if env.optional("SMTP_URL").is_some() || env.optional("EMAIL_FROM").is_some() => {
            vec!["smtp".into()]
        }
        None => return Ok(None),
    };
    let invalid = |reason: String| ConfigError::Invalid {
        var: "EMAIL_PROVIDERS",
        value: names.join(","),
        reason,
    };
    if names.is_empty() {
        return Err(invalid("names no provider".into()));
    }
    let mut providers = Vec::new();
    for name in &names {
        let provider = match name.as_str() {
            "smtp" => {
                let url = env.required("SMTP_URL")?;
                if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                    return Err(ConfigError::Invalid {
                        var: "SMTP_URL",
                        value: redact_userinfo(&url),
                        reason: "expected smtp:// or smtps://".into(),
                    });
                }
                EmailProvider::Smtp { url }
            }
            "ses" => EmailProvider::Ses {
                aws: AwsSettings::from_env(env)?,
                endpoint: env.optional("SES_ENDPOINT"),
            },
            other => return Err(invalid(format!("unknown provider `{other}` (smtp, ses)"))),
        };
        if providers
            .iter()
            .any(|p: &EmailProvider| p.name() == provider.name())
        {
            return Err(invalid(format!("`{name}` named twice")));
        }
        providers.push(provider);
    }
    Ok(Some(EmailSettings {
        from: env.required("EMAIL_FROM")?,
        providers,
    }))
}

/// Reads a group of variables: all of them, none (`None`), or the first one missing.
type Group<'a> = dyn Fn(&[&'static str]) -> Result<Option<Vec<String>>, ConfigError> + 'a;

/// SMS's providers: those `SMS_PROVIDERS` names, in its order, each with all its variables;
/// without it, each provider whose variables are set (`twilio` first).
fn sms_providers(env: &Env, group: &Group) -> Result<Vec<SmsProvider>, ConfigError> {
    let provider = |name: &'static str, v: Vec<String>| SmsProvider {
        name,
        api: SmsSettings {
            api_url: v[0].trim_end_matches('/').to_owned(),
            account_sid: v[1].clone(),
            auth_token: v[2].clone(),
            from: v[3].clone(),
        },
    };
    let Some(list) = env.optional("SMS_PROVIDERS") else {
        let mut providers = Vec::new();
        for (name, vars) in SMS_PROVIDERS {
            if let Some(v) = group(&vars)? {
                providers.push(provider(name, v));
            }
        }
        return Ok(providers);
    };
    let invalid = |reason: String| ConfigError::Invalid {
        var: "SMS_PROVIDERS",
        value: list.clone(),
        reason,
    };
    let mut providers: Vec<SmsProvider> = Vec::new();
    for name in list.split(',').map(|n| n.trim().to_ascii_lowercase()) {
        if name.is_empty() {
            continue;
        }
        let Some((known, vars)) = SMS_PROVIDERS.iter().find(|(n, _)| *n == name) else {
            return Err(invalid(format!(
                "unknown provider `{name}` (twilio, twilio-fallback)"
            )));
        };
        if providers.iter().any(|p| p.name == *known) {
            return Err(invalid(format!("`{name}` named twice")));
        }
        let v = group(vars)?.ok_or(ConfigError::Missing(vars[0]))?;
        providers.push(provider(known, v));
    }
    if providers.is_empty() {
        return Err(invalid("names no provider".into()));
    }
    Ok(providers)
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl std::fmt::Debug for SenderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderSettings")
            .field("allow_loopback", &self.allow_loopback)
            .field(
                "vapid_subject",
                &self.vapid.as_ref().map(|v| v.subject.as_str()),
            )
            .field("vapid_public_key", &self.vapid_public_key)
            .field(
                "email_providers",
                &self.email.as_ref().map(|e| {
                    e.providers
                        .iter()
                        .map(|p| match p {
                            EmailProvider::Smtp { url } => redact_userinfo(url),
                            EmailProvider::Ses { endpoint, .. } => {
                                format!("ses {}", endpoint.as_deref().unwrap_or("(regional)"))
                            }
                        })
                        .collect::<Vec<_>>()
                }),
            )
            .field("email_from", &self.email.as_ref().map(|e| e.from.as_str()))
            .field(
                "sms_providers",
                &self
                    .sms
                    .iter()
                    .map(|p| format!("{} {}", p.name, p.api.api_url))
                    .collect::<Vec<_>>(),
            )
            .field(
                "fcm",
                &self
                    .fcm
                    .as_ref()
                    .map(|f| format!("{} at {}", f.project_id, f.endpoint)),
            )
            .field(
                "apns",
                &self.apns.as_ref().map(|a| {
                    format!(
                        "{} at {}{}",
                        a.topic,
                        a.endpoint,
                        if a.ca_cert.is_some() {
                            " (extra CA)"
                        } else {
                            ""
                        }
                    )
                }),
            )
            .field("public_api_url", &self.public_api_url)
            .field("send", &self.send)
            .finish_non_exhaustive()
    }
}
