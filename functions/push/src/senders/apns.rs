//! iOS devices through the Apple Push Notification service, HTTP/2 with token-based auth:
//! `POST {APNS_ENDPOINT}/3/device/<device token>` with `authorization: bearer <provider token>`.
//!
//! **Credentials.** The provider token is an ES256 JWT signed with the `.p8` key
//! (`APNS_PRIVATE_KEY`): header `{alg: ES256, kid: APNS_KEY_ID}`, claims
//! `{iss: APNS_TEAM_ID, iat}`. Apple refuses a token older than an hour
//! (`ExpiredProviderToken`) and one replaced more often than every 20 minutes
//! (`TooManyProviderTokenUpdates`), so one token is reused per process for
//! [`TOKEN_REFRESH_AFTER`] (50 minutes), then signed anew; it is dropped at once when APNs
//! answers 403 `ExpiredProviderToken` or `InvalidProviderToken`.
//!
//! **Connection.** One HTTP/2 connection over TLS (rustls, ALPN `h2` only), its streams
//! multiplexed; the public CA roots, plus `APNS_CA_CERT` when set (a local fake's self-signed
//! certificate, never in production).
//!
//! **Message** ([`ApnsMessage`]). A notification is an `alert` push:
//! `{aps: {alert: {title, body}, badge, sound?, thread-id?}, id, actionUrl?, data?}` with
//! `sound: "default"` unless its priority is `low`, `thread-id` its `groupKey`, and `data` the
//! notification's data object; headers `apns-push-type: alert`, `apns-topic: APNS_TOPIC`,
//! `apns-collapse-id: <notification id>`, `apns-priority` 10 (5 for `low`),
//! `apns-expiration` now + TTL in UNIX seconds (`0`, deliver now or never, for a zero TTL). A badge
//! update ([`ApnsMessage::badge_update`]) is a silent `background` push,
//! `{aps: {content-available: 1, badge}}`, priority 5 (Apple refuses 10 for background pushes),
//! kept for [`BADGE_UPDATE_TTL`]. APNs refuses a payload over 4,096 bytes: such a message is
//! `too-large` without a request; its trimmed form ([`Trim`]) keeps `aps` and `id`, drops
//! `actionUrl` and `data`, and cuts the body to 256 bytes with an ellipsis (less if the
//! payload is still over the limit).
//!
//! Answers ([`Outcome`]; Apple's `{"reason": …}` bodies): 200 `sent`; 410 (`Unregistered`,
//! `ExpiredToken`, with the `timestamp` the token went stale), and 400 `BadDeviceToken` `gone`;
//! 400 `DeviceTokenNotForTopic` `rejected`/`provider-4xx` (the token is another app's, or
//! `APNS_TOPIC` is wrong: a configuration error must not remove every iOS device); 413 `PayloadTooLarge` `too-large`; 429 (`TooManyRequests`,
//! `TooManyProviderTokenUpdates`) `retry-after` (60 s without a `Retry-After`); 500/503 with a
//! `Retry-After` `retry-after`, without one `transient`/`provider-5xx`; 400 `IdleTimeout`
//! `transient`/`error`; timeouts and no connection `transient`/`error`; 403 (bad credentials:
//! `InvalidProviderToken`, `ExpiredProviderToken`, `MissingProviderToken`, `Forbidden`…) and any
//! other 4xx `rejected`/`provider-4xx`.
//!
//! Beware: a wrong `APNS_ENDPOINT` (production versus sandbox tokens) makes APNs answer
//! `BadDeviceToken` for every device, which removes them (Apple's documented meaning of that
//! reason, which the issue asks to honour).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shared::config::ApnsSettings;
use shared::model::{Notification, Priority};
use shared::protocol::outcome::reason;

use super::{http_call, Adapter, HttpAnswer, Outcome, Trim};

/// APNs' limit on a notification's payload, in bytes.
pub const APNS_PAYLOAD_MAX_BYTES: usize = 4096;
/// How long one provider token is reused: under Apple's hour, over its 20-minute minimum.
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);
/// How long APNs keeps a badge update for a phone that is offline.
pub const BADGE_UPDATE_TTL: Duration = Duration::from_secs(3600);
/// The longest body a trimmed alert keeps, in bytes (before its ellipsis).
pub const TRIMMED_BODY_MAX_BYTES: usize = 256;
/// The longest `apns-collapse-id` APNs accepts, in bytes.
const COLLAPSE_ID_MAX_BYTES: usize = 64;

/// The claims of a provider token.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderTokenClaims {
    pub iss: String,
    pub iat: i64,
}

/// A bad APNs setting: the key is not a P-256 PKCS#8 PEM, or `APNS_CA_CERT` is no certificate.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ApnsConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// `apns-push-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushType {
    /// Shown to the user.
    Alert,
    /// Silent: wakes the app, changes the badge.
    Background,
}

impl PushType {
    pub fn header(self) -> &'static str {
        match self {
            PushType::Alert => "alert",
            PushType::Background => "background",
        }
    }
}

/// One APNs push, before it is addressed to a device token.
#[derive(Debug, Clone, PartialEq)]
pub struct ApnsMessage {
    payload: Value,
    /// `payload` serialised: the request body.
    bytes: Vec<u8>,
    push_type: PushType,
    priority: u8,
    collapse_id: Option<String>,
    ttl: Duration,
    trimmed: bool,
}

impl ApnsMessage {
    /// The alert push of notification `n`, setting the app's badge to `badge` (the user's exact
    /// unread count), kept by APNs for `ttl` at most.
    pub fn of(n: &Notification, badge: u32, ttl: Duration) -> Self {
        let mut aps = json!({"alert": {"title": n.title, "body": n.body}, "badge": badge});
        if n.priority != Priority::Low {
            aps["sound"] = "default".into();
        }
        if let Some(thread) = &n.group_key {
            aps["thread-id"] = thread.clone().into();
        }
        let mut payload = json!({"aps": aps, "id": n.id});
        if let Some(url) = &n.action_url {
            payload["actionUrl"] = url.clone().into();
        }
        if n.data.as_object().is_some_and(|m| !m.is_empty()) {
            payload["data"] = n.data.clone();
        }
        let priority = match n.priority {
            Priority::Low => 5,
            Priority::Normal | Priority::High | Priority::Urgent => 10,
        };
        Self::new(
            payload,
            PushType::Alert,
            priority,
            (n.id.len() <= COLLAPSE_ID_MAX_BYTES).then(|| n.id.clone()),
            ttl,
        )
    }

    /// A silent push that sets the app's badge to `badge`: `content-available`, no alert.
    pub fn badge_update(badge: u32) -> Self {
        Self::new(
            json!({"aps": {"content-available": 1, "badge": badge}}),
            PushType::Background,
            5,
            None,
            BADGE_UPDATE_TTL,
        )
    }

    fn new(
        payload: Value,
        push_type: PushType,
        priority: u8,
        collapse_id: Option<String>,
        ttl: Duration,
    ) -> Self {
        ApnsMessage {
            bytes: payload.to_string().into_bytes(),
            payload,
            push_type,
            priority,
            collapse_id,
            ttl,
            trimmed: false,
        }
    }

    /// The JSON payload APNs delivers to the app.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The bytes APNs counts against its limit: the whole payload.
    pub fn payload_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn push_type(&self) -> PushType {
        self.push_type
    }

    /// `apns-priority`: 10 (at once) or 5 (when the phone's power allows).
    pub fn priority(&self) -> u8 {
        self.priority
    }
}

impl Trim for ApnsMessage {
    /// `aps` and `id`, the body cut to [`TRIMMED_BODY_MAX_BYTES`] (a lock screen shows less) and
    /// further while the payload is over APNs' limit: the app fetches the rest. `None` for a badge
    /// update, a trimmed message, or one this would not make smaller.
    fn trimmed(&self) -> Option<Self> {
        if self.trimmed || self.push_type == PushType::Background {
            return None;
        }
        let body = self.payload["aps"]["alert"]["body"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let mut payload = json!({"aps": self.payload["aps"], "id": self.payload["id"]});
        let mut keep = body.len().min(TRIMMED_BODY_MAX_BYTES);
        loop {
            let cut = &body[..floor_char_boundary(&body, keep)];
            payload["aps"]["alert"]["body"] = if !cut.is_empty() && cut.len() < body.len() {
                format!("{cut}…").into()
            } else {
                cut.into()
            };
            let size = payload.to_string().len();
            if size <= APNS_PAYLOAD_MAX_BYTES || cut.is_empty() {
                break;
            }
            // At least the overshoot goes (escapes make a byte of text cost up to six).
            keep = cut.len().saturating_sub(size - APNS_PAYLOAD_MAX_BYTES);
        }
        let mut trimmed = Self::new(
            payload,
            self.push_type,
            self.priority,
            self.collapse_id.clone(),
            self.ttl,
        );
        trimmed.trimmed = true;
        (trimmed.bytes.len() < self.bytes.len()).then_some(trimmed)
    }
}

/// The largest char boundary of `s` at or before `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

struct ProviderToken {
    jwt: String,
    signed_at: Instant,
}

/// The APNs adapter. Its address is the device token (64 hex characters).
pub struct Apns {
    base_url: String,
    topic: String,
    team_id: String,
    key_id: String,
    key: EncodingKey,
    client: reqwest::Client,
    timeout: Duration,
    token: Mutex<Option<ProviderToken>>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns")
            .field("base_url", &self.base_url)
            .field("topic", &self.topic)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Apns {
    /// The adapter for `settings`, with its own HTTP/2 client (`timeout` also bounds connecting).
    /// Fails on a key that cannot sign or an `APNS_CA_CERT` that is no PEM certificate.
    pub fn new(settings: &ApnsSettings, timeout: Duration) -> Result<Self, ApnsConfigError> {
        let key = EncodingKey::from_ec_pem(settings.private_key.as_bytes()).map_err(|e| {
            ApnsConfigError {
                var: "APNS_PRIVATE_KEY",
                reason: format!("not a P-256 key in PEM (the .p8 file): {e}"),
            }
        })?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .http2_prior_knowledge()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &settings.ca_cert {
            let not_pem = |why: String| ApnsConfigError {
                var: "APNS_CA_CERT",
                reason: format!("not a PEM certificate: {why}"),
            };
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| not_pem(e.to_string()))?;
            if certs.is_empty() {
                return Err(not_pem("no CERTIFICATE block".into()));
            }
            for ca in certs {
                builder = builder.add_root_certificate(ca);
            }
        }
        let client = builder.build().map_err(|e| ApnsConfigError {
            var: "APNS_CA_CERT",
            reason: e.to_string(),
        })?;
        let apns = Apns {
            base_url: settings.endpoint.clone(),
            topic: settings.topic.clone(),
            team_id: settings.team_id.clone(),
            key_id: settings.key_id.clone(),
            key,
            client,
            timeout,
            token: Mutex::new(None),
        };
        // A key that parses but cannot sign stops the cold start, not the first send.
        apns.sign().map_err(|e| ApnsConfigError {
            var: "APNS_PRIVATE_KEY",
            reason: format!("cannot sign with it: {e}"),
        })?;
        Ok(apns)
    }

    fn sign(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = ProviderTokenClaims {
            iss: self.team_id.clone(),
            iat: chrono::Utc::now().timestamp(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }

    /// The provider token to send with at `now`: the cached one while younger than
    /// [`TOKEN_REFRESH_AFTER`], else a new one.
    fn provider_token(&self, now: Instant) -> Result<String, Outcome> {
        let mut cached = self
            .token
            .lock()
            .map_err(|_| Outcome::transient(reason::ERROR, "provider token lock poisoned"))?;
        if let Some(token) = cached
            .as_ref()
            .filter(|t| now.saturating_duration_since(t.signed_at) < TOKEN_REFRESH_AFTER)
        {
            return Ok(token.jwt.clone());
        }
        let jwt = self.sign().map_err(|e| {
            Outcome::rejected(reason::ERROR, format!("signing the provider token: {e}"))
        })?;
        *cached = Some(ProviderToken {
            jwt: jwt.clone(),
            signed_at: now,
        });
        Ok(jwt)
    }

    fn drop_token(&self) {
        if let Ok(mut cached) = self.token.lock() {
            *cached = None;
        }
    }

    async fn push(&self, device: &str, message: &ApnsMessage) -> Outcome {
        if message.payload_bytes() > APNS_PAYLOAD_MAX_BYTES {
            return Outcome::TooLarge;
        }
        let jwt = match self.provider_token(Instant::now()) {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let expiration = if message.ttl.is_zero() {
            0
        } else {
            chrono::Utc::now().timestamp() + i64::try_from(message.ttl.as_secs()).unwrap_or(0)
        };
        let mut request = self
            .client
            .post(format!("{}/3/device/{device}", self.base_url))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-push-type", message.push_type.header())
            .header("apns-topic", &self.topic)
            .header("apns-priority", message.priority.to_string())
            .header("apns-expiration", expiration.to_string())
            .header("content-type", "application/json")
            .body(message.bytes.clone());
        if let Some(id) = &message.collapse_id {
            request = request.header("apns-collapse-id", id);
        }
        let answer = match http_call(request, self.timeout).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let outcome = classify(&answer);
        if answer.status == 403
            && matches!(
                apns_reason(&answer),
                "ExpiredProviderToken" | "InvalidProviderToken"
            )
        {
            // The next send signs a new one.
            self.drop_token();
        }
        outcome
    }
}

/// The `reason` of an APNs error body.
fn apns_reason(answer: &HttpAnswer) -> &str {
    answer
        .json
        .as_ref()
        .and_then(|j| j["reason"].as_str())
        .unwrap_or("")
}

/// APNs' answer in the contract (module docs).
fn classify(answer: &HttpAnswer) -> Outcome {
    let detail = || format!("{} {}", answer.status, answer.text);
    match (answer.status, apns_reason(answer)) {
        (410, _) | (400, "BadDeviceToken") => Outcome::gone(detail()),
        (400, "IdleTimeout") => Outcome::transient(reason::ERROR, detail()),
        (500 | 503, _) if answer.retry_after.is_some() => {
            Outcome::RetryAfter(answer.retry_after.unwrap_or_default())
        }
        _ => answer.classify(),
    }
}

impl Adapter for Apns {
    type To = str;
    type Message = ApnsMessage;

    fn provider(&self) -> &'static str {
        "apns"
    }

    fn send<'a>(&'a self, device: &'a str, message: &'a ApnsMessage) -> BoxFuture<'a, Outcome> {
        Box::pin(self.push(device, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    fn notification(body: &str, priority: &str) -> Notification {
        serde_json::from_value(json!({
            "id": "n-1", "seq": 1, "userId": "ada", "type": "comment", "title": "Hello",
            "body": body, "data": {"k": "x".repeat(600)}, "actionUrl": "https://app.example/n/1",
            "groupKey": "thread-7", "channels": ["PUSH"], "priority": priority,
            "read": false, "seen": false, "archived": false, "createdAt": chrono::Utc::now()
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn adapter() -> Apns {
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng)
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|e| panic!("{e}"));
        let settings = ApnsSettings {
            key_id: "KEYID12345".into(),
            team_id: "TEAMID1234".into(),
            private_key: key.to_string(),
            topic: "com.example.app".into(),
            endpoint: "https://127.0.0.1:1".into(),
            ca_cert: None,
        };
        Apns::new(&settings, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_provider_token_is_reused_until_it_is_due_then_signed_anew() {
        let apns = adapter();
        let start = Instant::now();
        let first = apns.provider_token(start);
        assert!(first.is_ok());
        let signed_at = || {
            apns.token
                .lock()
                .ok()
                .and_then(|t| t.as_ref().map(|t| t.signed_at))
        };
        assert_eq!(
            apns.provider_token(start + TOKEN_REFRESH_AFTER - Duration::from_secs(1)),
            first
        );
        assert_eq!(signed_at(), Some(start), "reused");
        let later = start + TOKEN_REFRESH_AFTER;
        assert!(apns.provider_token(later).is_ok());
        assert_eq!(signed_at(), Some(later), "signed anew at 50 minutes");
        apns.drop_token();
        assert_eq!(signed_at(), None);
    }

    #[test]
    fn a_bad_key_stops_the_cold_start() {
        let mut settings = ApnsSettings {
            key_id: "K".into(),
            team_id: "T".into(),
            private_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            topic: "com.example.app".into(),
            endpoint: "https://127.0.0.1:1".into(),
            ca_cert: None,
        };
        let err = Apns::new(&settings, Duration::from_secs(1)).map(|_| ());
        assert!(matches!(
            err,
            Err(ApnsConfigError {
                var: "APNS_PRIVATE_KEY",
                ..
            })
        ));
        settings.private_key = String::from_utf8_lossy(
            p256::SecretKey::random(&mut rand::rngs::OsRng)
                .to_pkcs8_pem(LineEnding::LF)
                .unwrap_or_else(|e| panic!("{e}"))
                .as_bytes(),
        )
        .into_owned();
        settings.ca_cert = Some("not a certificate".into());
        let err = Apns::new(&settings, Duration::from_secs(1)).map(|_| ());
        assert!(
            matches!(
                err,
                Err(ApnsConfigError {
                    var: "APNS_CA_CERT",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn priority_and_push_type_follow_the_notification() {
        let normal = ApnsMessage::of(&notification("b", "normal"), 3, Duration::from_secs(60));
        assert_eq!(
            (normal.push_type(), normal.priority()),
            (PushType::Alert, 10)
        );
        assert_eq!(
            normal.payload()["aps"],
            json!({"alert": {"title": "Hello", "body": "b"}, "badge": 3, "sound": "default",
                "thread-id": "thread-7"})
        );
        assert_eq!(normal.payload()["actionUrl"], "https://app.example/n/1");
        let low = ApnsMessage::of(&notification("b", "low"), 0, Duration::from_secs(60));
        assert_eq!(low.priority(), 5);
        assert!(low.payload()["aps"].get("sound").is_none());
        let badge = ApnsMessage::badge_update(4);
        assert_eq!(
            (badge.push_type(), badge.priority()),
            (PushType::Background, 5)
        );
        assert_eq!(
            badge.payload(),
            &json!({"aps": {"content-available": 1, "badge": 4}})
        );
        assert_eq!(badge.trimmed(), None);
    }

    #[test]
    fn the_trimmed_form_fits_and_keeps_the_alert() {
        // Escaped characters cost more than their bytes; multi-byte ones must not be split.
        let body = format!("{}{}", "\"é".repeat(1500), "z".repeat(2000));
        let n = ApnsMessage::of(&notification(&body, "high"), 9, Duration::from_secs(60));
        assert!(n.payload_bytes() > APNS_PAYLOAD_MAX_BYTES);
        let Some(t) = n.trimmed() else {
            panic!("a notification has a trimmed form");
        };
        assert!(
            t.payload_bytes() <= APNS_PAYLOAD_MAX_BYTES,
            "{}",
            t.payload_bytes()
        );
        let p = t.payload();
        assert_eq!(p["id"], "n-1");
        assert!(p.get("data").is_none() && p.get("actionUrl").is_none());
        assert_eq!(p["aps"]["badge"], 9);
        assert_eq!(p["aps"]["alert"]["title"], "Hello");
        let cut = p["aps"]["alert"]["body"].as_str().unwrap_or_default();
        assert!(cut.ends_with('…') && body.starts_with(cut.trim_end_matches('…')));
        assert!(cut.len() <= TRIMMED_BODY_MAX_BYTES + '…'.len_utf8());
        assert_eq!(t.trimmed(), None, "trimmed once");
        // A title over the limit by itself leaves no body.
        let mut long = notification("short", "normal");
        long.title = "t".repeat(APNS_PAYLOAD_MAX_BYTES);
        let t = ApnsMessage::of(&long, 1, Duration::from_secs(60)).trimmed();
        assert_eq!(
            t.map(|t| t.payload()["aps"]["alert"]["body"].clone()),
            Some(json!(""))
        );
        // Nothing to drop and a short body: no smaller form.
        let mut small = notification("short", "normal");
        small.data = json!({});
        small.action_url = None;
        assert_eq!(
            ApnsMessage::of(&small, 1, Duration::from_secs(60)).trimmed(),
            None
        );
    }
}
