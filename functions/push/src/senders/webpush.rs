//! Web Push (RFC 8030) to a browser's push service: the payload encrypted with aes128gcm for the
//! subscription's keys (RFC 8291, `web-push-native`), and the request identified with VAPID
//! (RFC 8292): an ES256 JWT with `aud` = the endpoint's origin, `exp` 12 h ahead (at most 24 h is
//! allowed), `sub` = `VAPID_SUBJECT`, sent as `Authorization: vapid t=<jwt>, k=<public key>`.
//!
//! Provider answers ([`Outcome`]): 201/200/202 `sent`; 404/410 `gone` (that subscription only);
//! 413 `too-large` (resent once as `{id, title}`); 429 `retry-after`; 5xx and timeouts
//! `transient`; 401/403 (VAPID refused) and other 4xx `rejected`/`provider-4xx`; a 3xx is not
//! followed, `rejected`/`redirect-refused`.
//!
//! Endpoints are user-supplied URLs: every request goes through the outbound policy
//! ([`shared::egress`]), with the endpoint checked again before each send and the client's
//! resolver checking the addresses its host resolves to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use shared::addresses::{self, decode_b64url, PushSubscription};
use shared::config::{ConfigError, VapidSettings};
use shared::egress::EgressPolicy;
use shared::model::Priority;
use shared::protocol::outcome::reason;

use super::{http_call, Adapter, Outcome, Trim};
use crate::payload::PushPayload;

/// How long a VAPID JWT is valid (RFC 8292 allows up to 24 h), and how long before its expiry a
/// cached one is replaced.
const JWT_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const JWT_REFRESH_BEFORE: Duration = Duration::from_secs(3600);

/// The application server's identity: its P-256 key and contact.
pub struct Vapid {
    signing: SigningKey,
    /// 65-byte uncompressed public key, base64url: the `k=` parameter and what browsers subscribe
    /// with (`VAPID_PUBLIC_KEY` of the api function).
    pub public_key: String,
    pub subject: String,
    /// One JWT per audience (push service origin), reused until shortly before it expires.
    cache: Mutex<HashMap<String, (String, i64)>>,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Vapid {
    /// `VAPID_PRIVATE_KEY` is the raw 32-byte scalar in base64url (what `web-push
    /// generate-vapid-keys` prints), or a PKCS#8 / SEC1 PEM.
    pub fn from_settings(settings: &VapidSettings) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            var: "VAPID_PRIVATE_KEY",
            value: "***".into(),
            reason: reason.into(),
        };
        let key = settings.private_key.trim();
        let signing = if key.starts_with("-----BEGIN") {
            p256::SecretKey::from_pkcs8_pem(key)
                .or_else(|_| p256::SecretKey::from_sec1_pem(key))
                .map(SigningKey::from)
                .map_err(|_| invalid("not a P-256 private key in PEM"))?
        } else {
            let raw = decode_b64url(key).ok_or_else(|| invalid("not base64url"))?;
            SigningKey::from_slice(&raw).map_err(|_| invalid("not a 32-byte P-256 private key"))?
        };
        let point = signing.verifying_key().to_encoded_point(false);
        Ok(Vapid {
            public_key: URL_SAFE_NO_PAD.encode(point.as_bytes()),
            subject: settings.subject.clone(),
            signing,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A signed JWT for `audience` (RFC 7515 compact form, ES256 with the raw r‖s signature).
    fn sign_jwt(&self, audience: &str, exp: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": audience, "exp": exp, "sub": self.subject});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature: Signature = self.signing.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The `Authorization` header value for a push service at `audience` (its origin).
    pub fn authorization(&self, audience: &str, now: DateTime<Utc>) -> String {
        let now_s = now.timestamp();
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(audience)
                .filter(|(_, exp)| exp - now_s > JWT_REFRESH_BEFORE.as_secs() as i64)
                .map(|(t, _)| t.clone())
        });
        let token = cached.unwrap_or_else(|| {
            let exp = now_s + JWT_LIFETIME.as_secs() as i64;
            let token = self.sign_jwt(audience, exp);
            if let Ok(mut c) = self.cache.lock() {
                c.insert(audience.to_owned(), (token.clone(), exp));
            }
            token
        });
        format!("vapid t={token}, k={}", self.public_key)
    }
}

/// The Web Push adapter.
#[derive(Debug)]
pub struct WebPush {
    pub vapid: Vapid,
    /// Built by [`EgressPolicy::client`] for `egress`.
    client: reqwest::Client,
    timeout: Duration,
    egress: EgressPolicy,
}

/// RFC 8030 §5.3 `Urgency` from the notification's priority.
fn urgency(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High | Priority::Urgent => "high",
    }
}

/// What a Web Push carries: the plaintext payload, and how it is to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    pub body: Vec<u8>,
    /// `{id, title}`, sent after a `too-large`; `None` when `body` is already that.
    pub smaller: Option<Vec<u8>>,
    pub priority: Priority,
    /// `TTL`: how long the push service keeps it for an offline browser.
    pub ttl: Duration,
}

impl PushMessage {
    pub fn new(payload: &PushPayload, priority: Priority, ttl: Duration) -> Self {
        PushMessage {
            body: payload.full.clone(),
            smaller: (!payload.trimmed_only).then(|| payload.trimmed.clone()),
            priority,
            ttl,
        }
    }
}

impl Trim for PushMessage {
    fn trimmed(&self) -> Option<Self> {
        Some(PushMessage {
            body: self.smaller.clone()?,
            smaller: None,
            priority: self.priority,
            ttl: self.ttl,
        })
    }
}

impl WebPush {
    /// `client` must come from `egress.client(…)`: the policy's resolver and no redirects.
    pub fn new(
        vapid: Vapid,
        client: reqwest::Client,
        timeout: Duration,
        egress: EgressPolicy,
    ) -> Self {
        WebPush {
            vapid,
            client,
            timeout,
            egress,
        }
    }

    async fn push(&self, subscription: &PushSubscription, message: &PushMessage) -> Outcome {
        // Checked again here: the deployment's rules may have changed since it was stored.
        let url = match self.egress.check_url(&subscription.endpoint) {
            Ok(url) => url,
            Err(why) => {
                return Outcome::rejected(reason::ENDPOINT_REFUSED, format!("endpoint {why}"))
            }
        };
        let (Some(p256dh), Some(auth)) = (
            decode_b64url(&subscription.p256dh),
            decode_b64url(&subscription.auth),
        ) else {
            return Outcome::rejected(reason::ERROR, "stored keys are not base64url");
        };
        let Ok(ua_public) = web_push_native::p256::PublicKey::from_sec1_bytes(&p256dh) else {
            return Outcome::rejected(reason::ERROR, "stored p256dh is not a P-256 key");
        };
        let Ok(auth) = <[u8; addresses::AUTH_SECRET_BYTES]>::try_from(auth.as_slice()) else {
            return Outcome::rejected(reason::ERROR, "stored auth secret is not 16 bytes");
        };
        let auth = web_push_native::Auth::from(auth);
        let encrypted = match web_push_native::encrypt(message.body.clone(), &ua_public, &auth) {
            Ok(e) => e,
            Err(e) => return Outcome::rejected(reason::ERROR, format!("encrypt: {e}")),
        };
        // RFC 8292 §2: `aud` is the endpoint's origin (RFC 6454 serialisation).
        let audience = url.origin().ascii_serialization();
        let request = self
            .client
            .post(url)
            .header("TTL", message.ttl.as_secs().to_string())
            .header("Urgency", urgency(message.priority))
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header(
                "Authorization",
                self.vapid.authorization(&audience, Utc::now()),
            )
            .body(encrypted);
        match http_call(request, self.timeout).await {
            Ok(answer) if matches!(answer.status, 404 | 410) => {
                Outcome::gone(format!("{} {}", answer.status, answer.text))
            }
            Ok(answer) => answer.classify(),
            Err(outcome) => outcome,
        }
    }
}

impl Adapter for WebPush {
    type To = PushSubscription;
    type Message = PushMessage;

    fn provider(&self) -> &'static str {
        "webpush"
    }

    fn send<'a>(
        &'a self,
        to: &'a PushSubscription,
        message: &'a PushMessage,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.push(to, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn the_vapid_header_carries_a_verifiable_es256_jwt_for_the_origin() {
        let secret = SigningKey::random(&mut rand::rngs::OsRng);
        let vapid = Vapid::from_settings(&VapidSettings {
            subject: "mailto:ops@example.com".into(),
            private_key: URL_SAFE_NO_PAD.encode(secret.to_bytes()),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let now = Utc::now();
        let header = vapid.authorization("https://push.example.net", now);
        let rest = header.strip_prefix("vapid t=").unwrap_or_default();
        let (jwt, k) = rest.split_once(", k=").unwrap_or_default();
        assert_eq!(k, vapid.public_key);
        let (input, sig) = jwt.rsplit_once('.').unwrap_or_default();
        let key = VerifyingKey::from_sec1_bytes(&decode_b64url(k).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let sig = Signature::from_slice(&decode_b64url(sig).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(key.verify(input.as_bytes(), &sig).is_ok());
        let claims: serde_json::Value = serde_json::from_slice(
            &decode_b64url(input.split('.').nth(1).unwrap_or_default()).unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let exp = claims["exp"].as_i64().unwrap_or_default();
        assert!(exp > now.timestamp() && exp <= now.timestamp() + 24 * 3600);
        // Cached per audience.
        assert_eq!(vapid.authorization("https://push.example.net", now), header);
        assert_ne!(
            vapid.authorization("https://other.example.net", now),
            header
        );
    }
}
