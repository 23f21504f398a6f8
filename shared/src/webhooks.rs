//! Outbound webhooks, shared by the api function (registration) and the webhooks function
//! (delivery): the event types a webhook can subscribe to, the registration rules, the secret,
//! the message every attempt sends, and its signature.
//!
//! Contracts:
//! - a webhook's URL passes the outbound policy ([`crate::egress`]): `https`, no credentials, no
//!   loopback unless `WEBHOOK_ALLOW_LOOPBACK`, no reserved address, as a literal or after
//!   resolving its host. The webhooks function's client checks the addresses again at each send;
//! - the secret is `whsec_` and the base64 of [`SECRET_BYTES`] random bytes (Standard Webhooks);
//!   it is shown once, in the answer to the registration, and never listed;
//! - a message is signed per Standard Webhooks: `webhook-id` (the message id, the same on every
//!   attempt and replay), `webhook-timestamp` (Unix seconds of the attempt) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` keyed with the
//!   secret's decoded bytes;
//! - a message's id is the Kafka event's id with the webhook event type (one envelope can make
//!   two messages: first seen and first read), so a redelivered record makes the same id.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::egress::{EgressPolicy, Refused};
use crate::error::FieldError;
use crate::model::{Notification, OutcomeStatus};
use crate::protocol::{DeliveryOutcome, Envelope, Event};

/// Most webhooks a deployment (later: a tenant) may register.
pub const MAX_WEBHOOKS: usize = 50;
/// Random bytes in a secret (Standard Webhooks asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;
/// The prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// How long a registration waits for its host to resolve (well inside the api's 10 s).
pub const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a webhook can subscribe to, and where each comes from:
///
/// | event | Kafka topic | record |
/// |---|---|---|
/// | `notification.created` | `notification-events` | `NOTIFICATION_CREATED` |
/// | `delivery.sent` / `.failed` / `.suppressed` | `notification-delivery` | a delivery outcome with that status (`deferred` is not an event) |
/// | `notification.seen` / `.read` | `notification-analytics` | `NOTIFICATION_UPDATED` with the first `seen` / `read` |
/// | `notification.clicked` | `notification-analytics` | `NOTIFICATION_CLICKED` (the first click) |
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum WebhookEventType {
    #[serde(rename = "notification.created")]
    NotificationCreated,
    #[serde(rename = "delivery.sent")]
    DeliverySent,
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    #[serde(rename = "delivery.suppressed")]
    DeliverySuppressed,
    #[serde(rename = "notification.seen")]
    NotificationSeen,
    #[serde(rename = "notification.read")]
    NotificationRead,
    #[serde(rename = "notification.clicked")]
    NotificationClicked,
}

impl WebhookEventType {
    pub const ALL: [WebhookEventType; 7] = [
        WebhookEventType::NotificationCreated,
        WebhookEventType::DeliverySent,
        WebhookEventType::DeliveryFailed,
        WebhookEventType::DeliverySuppressed,
        WebhookEventType::NotificationSeen,
        WebhookEventType::NotificationRead,
        WebhookEventType::NotificationClicked,
    ];

    /// The wire name, as in `"type"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::NotificationCreated => "notification.created",
            WebhookEventType::DeliverySent => "delivery.sent",
            WebhookEventType::DeliveryFailed => "delivery.failed",
            WebhookEventType::DeliverySuppressed => "delivery.suppressed",
            WebhookEventType::NotificationSeen => "notification.seen",
            WebhookEventType::NotificationRead => "notification.read",
            WebhookEventType::NotificationClicked => "notification.clicked",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where to POST the events: `https://…` with a public host.
    pub url: String,
    /// The event types to receive, at least one.
    pub events: Vec<String>,
}

/// A registered webhook as stored (with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// A webhook as listed: no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub created_at: DateTime<Utc>,
}

/// The answer to a registration: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    /// `whsec_<base64>`: verify each request's `webhook-signature` with it. Shown only here.
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: w.created_at,
        }
    }
}

impl From<&Webhook> for WebhookCreated {
    fn from(w: &Webhook) -> Self {
        WebhookCreated {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            secret: w.secret.clone(),
            created_at: w.created_at,
        }
    }
}

impl Webhook {
    /// A new webhook from a request, with a new id and secret; every broken rule is a field
    /// error. Resolves the URL's host (every address must be public), so it waits on DNS.
    pub async fn from_request(
        request: &WebhookRequest,
        policy: EgressPolicy,
        now: DateTime<Utc>,
    ) -> Result<Webhook, Vec<FieldError>> {
        let mut errors = Vec::new();
        let url = match policy.check_url(&request.url) {
            Ok(url) => Some(url),
            Err(why) => {
                errors.push(FieldError::new("url", format!("the endpoint {why}")));
                None
            }
        };
        if let Some(host) = url.as_ref().and_then(|u| u.domain()) {
            let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, policy.resolve(host)).await;
            let refusal = match resolved {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(match e.downcast_ref::<Refused>() {
                    Some(why) => format!("the endpoint {why}"),
                    None => format!("the endpoint's host {host} does not resolve"),
                }),
                Err(_) => Some(format!(
                    "the endpoint's host {host} did not resolve in time"
                )),
            };
            if let Some(message) = refusal {
                errors.push(FieldError::new("url", message));
            }
        }
        let mut events = Vec::new();
        if request.events.is_empty() {
            errors.push(FieldError::new("events", "must name at least one event"));
        }
        for (i, name) in request.events.iter().enumerate() {
            match WebhookEventType::parse(name) {
                Some(t) if !events.contains(&t) => events.push(t),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    format!("events[{i}]"),
                    format!(
                        "{name:?} is not an event; one of {}",
                        WebhookEventType::ALL
                            .map(WebhookEventType::as_str)
                            .join(", ")
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        events.sort();
        Ok(Webhook {
            id: uuid::Uuid::now_v7().to_string(),
            url: url.map(|u| u.to_string()).unwrap_or_default(),
            events,
            secret: new_secret(),
            created_at: now,
        })
    }

    pub fn wants(&self, kind: WebhookEventType) -> bool {
        self.events.contains(&kind)
    }
}

/// `whsec_` and the base64 of [`SECRET_BYTES`] random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// Why a secret cannot sign.
#[derive(Debug, thiserror::Error)]
#[error("the webhook secret is not whsec_<base64>")]
pub struct BadSecret;

/// The `webhook-signature` value of one attempt: `v1,<base64 HMAC-SHA256>` of
/// `<id>.<timestamp>.<body>` keyed with the secret's decoded bytes.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered,
    /// Failed; tried again at `nextAttemptAt`.
    Retrying,
    /// Failed, and the retry schedule is over: a dead letter until a replay.
    DeadLettered,
}

/// One attempt to deliver a message to a webhook (`GET /v1/webhooks/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// The message's `webhook-id`.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: WebhookEventType,
    #[serde(rename = "notificationId")]
    pub notification_id: String,
    /// 1 for the first attempt; a replay starts again at 1.
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    #[serde(
        default,
        rename = "statusCode",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_code: Option<u16>,
    /// Why the attempt failed, besides a non-2xx status: `redirect-refused` (a 3xx, never
    /// followed), `endpoint-refused` (the URL or an address it resolves to is outside the
    /// outbound policy), `timeout`, `connect`, `bad-secret` (a stored secret that cannot sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub result: AttemptResult,
    /// When the attempt started.
    pub at: DateTime<Utc>,
    #[serde(rename = "durationMs")]
    pub duration_ms: u64,
    #[serde(
        default,
        rename = "nextAttemptAt",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One event for webhooks: what every attempt and replay sends, unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// `webhook-id`: `<Kafka event id>.<event type>`.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WebhookEventType,
    /// Messages of one notification are sent in order.
    pub notification_id: String,
    /// When the event happened (the replay window is on this).
    pub at: DateTime<Utc>,
    /// The request body: `{"type", "timestamp", "data"}` (Standard Webhooks' payload shape).
    pub body: String,
}

/// A message is sent as it was made, on every attempt and replay (its signature covers the
/// body): it has no smaller form, so a receiver's 413 (`too-large`) ends it as failed.
impl crate::adapter::Trim for WebhookMessage {
    fn trimmed(&self) -> Option<Self> {
        None
    }
}

/// `data` of the notification events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Engagement<'a> {
    notification_id: &'a str,
    user_id: &'a str,
    at: DateTime<Utc>,
}

impl WebhookMessage {
    fn new(
        source_id: &str,
        kind: WebhookEventType,
        notification_id: &str,
        at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        let body = serde_json::json!({"type": kind.as_str(), "timestamp": at, "data": data});
        WebhookMessage {
            id: format!("{source_id}.{}", kind.as_str()),
            kind,
            notification_id: notification_id.to_owned(),
            at,
            body: body.to_string(),
        }
    }

    /// The messages of an envelope: `notification.created` (from `notification-events`), and the
    /// first seen, read and click (from `notification-analytics`). Other envelopes make none,
    /// among them `ALL_READ`, which names no notification.
    pub fn from_envelope(envelope: &Envelope) -> Vec<WebhookMessage> {
        let engagement = |kind, id: &str| {
            let data = Engagement {
                notification_id: id,
                user_id: &envelope.user_id,
                at: envelope.occurred_at,
            };
            let data = serde_json::to_value(data).unwrap_or_default();
            WebhookMessage::new(&envelope.id, kind, id, envelope.occurred_at, data)
        };
        match &envelope.event {
            Event::NotificationCreated { notification, .. } => {
                vec![Self::created(&envelope.id, notification, envelope)]
            }
            Event::NotificationUpdated {
                id, changes, first, ..
            } => {
                let (seen, read) = match first {
                    Some(first) => (first.seen, first.read),
                    None => (changes.seen == Some(true), changes.read == Some(true)),
                };
                let mut out = Vec::new();
                if seen {
                    out.push(engagement(WebhookEventType::NotificationSeen, id));
                }
                if read {
                    out.push(engagement(WebhookEventType::NotificationRead, id));
                }
                out
            }
            Event::NotificationClicked { id, first } if *first != Some(false) => {
                vec![engagement(WebhookEventType::NotificationClicked, id)]
            }
            _ => Vec::new(),
        }
    }

    fn created(source_id: &str, notification: &Notification, envelope: &Envelope) -> Self {
        let data = serde_json::to_value(notification).unwrap_or_default();
        WebhookMessage::new(
            source_id,
            WebhookEventType::NotificationCreated,
            &notification.id,
            envelope.occurred_at,
            data,
        )
    }

    /// The message of a delivery outcome: `sent`, `failed` and `suppressed` are events;
    /// `deferred` (a later outcome follows it) is not.
    pub fn from_outcome(outcome: &DeliveryOutcome) -> Option<WebhookMessage> {
        let kind = match outcome.status {
            OutcomeStatus::Sent => WebhookEventType::DeliverySent,
            OutcomeStatus::Failed => WebhookEventType::DeliveryFailed,
            OutcomeStatus::Suppressed => WebhookEventType::DeliverySuppressed,
            _ => return None,
        };
        let mut data = serde_json::to_value(outcome).unwrap_or_default();
        if let Some(fields) = data.as_object_mut() {
            // The envelope's schema version and event id say nothing to a receiver.
            fields.remove("v");
            fields.remove("id");
        }
        Some(WebhookMessage::new(
            &outcome.id,
            kind,
            &outcome.notification_id,
            outcome.at,
            data,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and its reference libraries' tests).
    #[test]
    fn signs_like_the_standard_webhooks_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1614265330, body).ok().as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert!(signature("whsec_!!", id, 1, body).is_err());
    }

    #[tokio::test]
    async fn registration_names_each_broken_field() {
        let now = Utc::now();
        let strict = EgressPolicy::new(false);
        let bad = WebhookRequest {
            url: "http://hooks.example.com/x".into(),
            events: vec!["delivery.sent".into(), "notification.exploded".into()],
        };
        let errors = Webhook::from_request(&bad, strict, now)
            .await
            .err()
            .unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["url", "events[1]"]);
        for url in [
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://localhost/",
        ] {
            let r = WebhookRequest {
                url: url.into(),
                events: vec!["delivery.sent".into()],
            };
            assert!(
                Webhook::from_request(&r, strict, now).await.is_err(),
                "{url}"
            );
        }
        let ok = WebhookRequest {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["delivery.sent".into(), "notification.created".into()],
        };
        let hook = Webhook::from_request(&ok, EgressPolicy::new(true), now).await;
        let hook = hook.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            hook.events,
            [
                WebhookEventType::NotificationCreated,
                WebhookEventType::DeliverySent
            ]
        );
        let raw = hook.secret.strip_prefix(SECRET_PREFIX).unwrap_or_default();
        assert_eq!(
            STANDARD.decode(raw).map(|b| b.len()).ok(),
            Some(SECRET_BYTES)
        );
    }
}
