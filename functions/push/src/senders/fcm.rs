//! Android devices through Firebase Cloud Messaging, HTTP v1:
//! `POST {FCM_ENDPOINT}/v1/projects/{FCM_PROJECT_ID}/messages:send` with
//! `Authorization: Bearer <access token>`.
//!
//! **Credentials.** The access token comes from the service account key (`FCM_SERVICE_ACCOUNT`,
//! the key file's JSON): an RS256 JWT assertion (`iss` = `client_email`, `scope` =
//! `https://www.googleapis.com/auth/firebase.messaging`, `aud` = the token URL, one hour) is
//! exchanged at `FCM_TOKEN_URL` (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//! RFC 7523). The token is cached per process until [`TOKEN_RENEW_BEFORE`] before it expires,
//! and dropped when FCM answers 401.
//!
//! **Message.** `notification {title, body}`, `data {id, badge, actionUrl?, data?}` (FCM data
//! values are strings: `data` is the notification's JSON, `badge` the user's unread count),
//! `android {priority, ttl, collapse_key = id, notification {notification_count = badge}}`.
//! A silent badge update ([`FcmMessage::badge_update`]) is data only: `data {badge}`,
//! `android {priority NORMAL, collapse_key "badge"}`. FCM refuses a payload (notification and
//! data) over 4,096 bytes: such a message is `too-large` without a request, and its trimmed form
//! is `{id, badge}` with the title alone.
//!
//! Answers ([`Outcome`]): 200 `sent`; 404 `UNREGISTERED`, or 400 `INVALID_ARGUMENT` about the
//! token (a `message.token` field violation or "registration token" in its message) `gone`;
//! 400 "message is too big" `too-large`; 429, and 503 with a `Retry-After`, `retry-after`;
//! 5xx and timeouts `transient`; 401/403 (bad credentials, the project not allowed) and other 4xx
//! `rejected`/`provider-4xx`. A token endpoint that fails is `transient` on 5xx or no answer,
//! `rejected`/`provider-4xx` on a refusal (a revoked key).

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shared::config::FcmSettings;
use shared::model::{Notification, Priority};
use shared::protocol::outcome::reason;
use tokio::sync::Mutex;

use super::{http_call, Adapter, HttpAnswer, Outcome, Trim};

/// The OAuth 2 scope of FCM sends.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// FCM's limit on a message's payload (notification and data), in bytes.
pub const FCM_PAYLOAD_MAX_BYTES: usize = 4096;
/// A cached access token is renewed this long before it expires.
pub const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(300);
/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// The fields of a service account key file the adapter uses.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
}

/// The claims of the JWT assertion (RFC 7523 §3).
#[derive(Debug, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    3600
}

struct AccessToken {
    value: String,
    renew_at: Instant,
}

/// A bad `FCM_SERVICE_ACCOUNT`: not a key file's JSON, or its private key is not an RSA PEM.
#[derive(Debug, thiserror::Error)]
#[error("FCM_SERVICE_ACCOUNT: {0}")]
pub struct FcmKeyError(String);

/// The FCM adapter. Its address is the device's registration token.
pub struct Fcm {
    send_url: String,
    token_url: String,
    client_email: String,
    key: EncodingKey,
    key_id: Option<String>,
    client: reqwest::Client,
    timeout: Duration,
    token: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("send_url", &self.send_url)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// One FCM message, before it is addressed to a token.
#[derive(Debug, Clone, PartialEq)]
pub struct FcmMessage {
    /// `None`: a data-only (silent) message.
    notification: Option<Value>,
    data: Value,
    android: Value,
    trimmed: bool,
}

/// The collapse key of silent badge updates: a newer one replaces one FCM still holds.
pub const BADGE_COLLAPSE_KEY: &str = "badge";

impl FcmMessage {
    /// The message of notification `n`, kept by FCM for `ttl` at most, carrying the user's unread
    /// count `badge`: as the android notification's `notification_count` (what launchers show) and
    /// as `data.badge` (for apps that set the badge themselves).
    pub fn of(n: &Notification, ttl: Duration, badge: u32) -> Self {
        let mut data = json!({"id": n.id, "badge": badge.to_string()});
        if let Some(url) = &n.action_url {
            data["actionUrl"] = url.clone().into();
        }
        if !matches!(&n.data, Value::Null) && n.data.as_object().is_none_or(|m| !m.is_empty()) {
            data["data"] = n.data.to_string().into();
        }
        let priority = match n.priority {
            Priority::High | Priority::Urgent => "HIGH",
            Priority::Low | Priority::Normal => "NORMAL",
        };
        FcmMessage {
            notification: Some(json!({"title": n.title, "body": n.body})),
            data,
            android: json!({"priority": priority, "ttl": format!("{}s", ttl.as_secs()),
                "collapse_key": n.id, "notification": {"notification_count": badge}}),
            trimmed: false,
        }
    }

    /// A silent badge update: data only (`{badge}`, no notification block, so nothing is shown),
    /// collapsed under [`BADGE_COLLAPSE_KEY`].
    pub fn badge_update(badge: u32) -> Self {
        FcmMessage {
            notification: None,
            data: json!({"badge": badge.to_string()}),
            android: json!({"priority": "NORMAL", "collapse_key": BADGE_COLLAPSE_KEY}),
            trimmed: false,
        }
    }

    /// The bytes FCM counts against its limit: the notification and the data.
    pub fn payload_bytes(&self) -> usize {
        self.notification
            .as_ref()
            .map_or(0, |n| n.to_string().len())
            + self.data.to_string().len()
    }

    /// The `messages:send` body for `token`.
    pub fn body_for(&self, token: &str) -> Value {
        let mut message = json!({"token": token, "data": self.data, "android": self.android});
        if let Some(notification) = &self.notification {
            message["notification"] = notification.clone();
        }
        json!({ "message": message })
    }
}

impl Trim for FcmMessage {
    /// `{id, badge}` and the title: the app fetches the rest. A badge update is as small as it
    /// gets.
    fn trimmed(&self) -> Option<Self> {
        if self.trimmed {
            return None;
        }
        let notification = self.notification.as_ref()?;
        Some(FcmMessage {
            notification: Some(json!({"title": notification["title"]})),
            data: json!({"id": self.data["id"], "badge": self.data["badge"]}),
            android: self.android.clone(),
            trimmed: true,
        })
    }
}

impl Fcm {
    pub fn new(
        settings: &FcmSettings,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<Self, FcmKeyError> {
        let key: ServiceAccountKey = serde_json::from_str(&settings.service_account)
            .map_err(|e| FcmKeyError(format!("not a service account key file: {e}")))?;
        let encoding = EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| FcmKeyError(format!("private_key is not an RSA key in PEM: {e}")))?;
        Ok(Fcm {
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                settings.endpoint, settings.project_id
            ),
            token_url: settings.token_url.clone(),
            client_email: key.client_email,
            key: encoding,
            key_id: key.private_key_id,
            client,
            timeout,
            token: Mutex::new(None),
        })
    }

    /// The signed assertion exchanged for an access token.
    fn assertion(&self) -> Result<String, Outcome> {
        let iat = chrono::Utc::now().timestamp();
        let claims = AssertionClaims {
            iss: self.client_email.clone(),
            scope: FCM_SCOPE.into(),
            aud: self.token_url.clone(),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::rejected(reason::ERROR, format!("signing the assertion: {e}")))
    }

    /// The cached access token, or a new one from the token URL.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.value.clone());
        }
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let request = self.client.post(&self.token_url).form(&form);
        let started = Instant::now();
        let response = match request.timeout(self.timeout).send().await {
            Ok(r) => r,
            Err(e) => return Err(Outcome::transient(reason::ERROR, format!("token URL: {e}"))),
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let answer = HttpAnswer {
                status,
                retry_after: None,
                location: None,
                json: None,
                text: super::provider_text(&body),
            };
            return Err(match answer.classify() {
                // The token URL's own throttling is not the device's: retried like a 5xx.
                Outcome::RetryAfter(_) | Outcome::TooLarge => {
                    Outcome::transient(reason::PROVIDER_5XX, format!("token URL {status}"))
                }
                other => other,
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|e| {
            Outcome::transient(reason::ERROR, format!("token URL answer unreadable: {e}"))
        })?;
        let lifetime = Duration::from_secs(answer.expires_in);
        *cached = Some(AccessToken {
            value: answer.access_token.clone(),
            renew_at: started + lifetime.saturating_sub(TOKEN_RENEW_BEFORE),
        });
        Ok(answer.access_token)
    }

    async fn push(&self, token: &str, message: &FcmMessage) -> Outcome {
        if message.payload_bytes() > FCM_PAYLOAD_MAX_BYTES {
            return Outcome::TooLarge;
        }
        let bearer = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let request = self
            .client
            .post(&self.send_url)
            .bearer_auth(bearer)
            .json(&message.body_for(token));
        let answer = match http_call(request, self.timeout).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        if answer.status == 401 {
            // Revoked or expired early: the next send gets a new one.
            *self.token.lock().await = None;
        }
        classify(&answer)
    }
}

/// FCM's answer in the contract (module docs).
fn classify(answer: &HttpAnswer) -> Outcome {
    let error = answer.json.as_ref().map(|j| &j["error"]);
    let status = error.and_then(|e| e["status"].as_str()).unwrap_or("");
    let message = error
        .and_then(|e| e["message"].as_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let details = error
        .and_then(|e| e["details"].as_array())
        .cloned()
        .unwrap_or_default();
    let error_code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .unwrap_or("");
    let about_token = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["field"] == "message.token"))
    }) || message.contains("registration token");
    let detail = || format!("{} {}", answer.status, answer.text);
    match answer.status {
        404 if error_code == "UNREGISTERED" || status == "NOT_FOUND" => Outcome::gone(detail()),
        400 if message.contains("too big") => Outcome::TooLarge,
        400 if status == "INVALID_ARGUMENT" && about_token => Outcome::gone(detail()),
        503 if answer.retry_after.is_some() => {
            Outcome::RetryAfter(answer.retry_after.unwrap_or_default())
        }
        _ => answer.classify(),
    }
}

impl Adapter for Fcm {
    type To = str;
    type Message = FcmMessage;

    fn provider(&self) -> &'static str {
        "fcm"
    }

    fn send<'a>(&'a self, token: &'a str, message: &'a FcmMessage) -> BoxFuture<'a, Outcome> {
        Box::pin(self.push(token, message))
    }
}
