//! Where a user is reached off-app, shared by the api function and the push function (the
//! channels PUSH, EMAIL, SMS themselves are [`crate::model::Channel`]):
//! a user's Web Push subscriptions and contact details, with the rules that make them
//! acceptable, and the signed one-click unsubscribe token. The senders themselves live in
//! `functions/push`.
//!
//! Contracts:
//! - a subscription's endpoint passes the outbound policy's URL check ([`crate::egress`]: `https`,
//!   no credentials, no loopback unless `PUSH_ALLOW_LOOPBACK`, no reserved IP literal in any of
//!   the forms the HTTP client would accept). The push function checks it again before each send
//!   and its client checks the addresses a host name resolves to;
//! - `p256dh` is a 65-byte uncompressed P-256 point on the curve and `auth` 16 bytes, both
//!   base64url (RFC 8291 §3);
//! - a subscription's id is derived from its endpoint, so subscribing the same browser again
//!   replaces its keys instead of adding a second entry;
//! - an [`UnsubscribeToken`] names one user and one notification type, is signed with HMAC-SHA256
//!   under `UNSUBSCRIBE_SECRET`, never expires (RFC 8058 links must keep working), and can only
//!   turn that type's EMAIL off.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::egress::EgressPolicy;
use crate::error::FieldError;
use crate::limits;
use crate::tenant::Tenant;

/// Most Web Push subscriptions one user may hold (one per browser profile and device).
pub const MAX_PUSH_SUBSCRIPTIONS: usize = 10;
/// Length of an uncompressed P-256 public key (`0x04 || x || y`).
pub const P256DH_BYTES: usize = 65;
/// Length of a subscription's authentication secret.
pub const AUTH_SECRET_BYTES: usize = 16;
/// Longest email address accepted (RFC 5321's path limit).
pub const EMAIL_MAX_BYTES: usize = 254;

/// The body of `POST /v1/push-subscriptions`: exactly what the browser's
/// `PushSubscription.toJSON()` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSubscriptionRequest {
    /// The push service's URL for this browser, `https://…`.
    pub endpoint: String,
    /// When the push service will expire the subscription, ms since the epoch; usually null.
    #[serde(default)]
    pub expiration_time: Option<f64>,
    pub keys: PushKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    /// The browser's P-256 public key: 65 bytes, uncompressed, base64url.
    pub p256dh: String,
    /// The authentication secret: 16 bytes, base64url.
    pub auth: String,
}

/// A stored subscription (keys decoded and checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscription {
    pub id: String,
    pub endpoint: String,
    /// base64url, unpadded, as stored and sent.
    pub p256dh: String,
    pub auth: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A subscription as `GET /v1/push-subscriptions` shows it (no keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscriptionView {
    pub id: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<&PushSubscription> for PushSubscriptionView {
    fn from(s: &PushSubscription) -> Self {
        PushSubscriptionView {
            id: s.id.clone(),
            endpoint: s.endpoint.clone(),
            expires_at: s.expires_at,
            created_at: s.created_at,
        }
    }
}

impl PushSubscription {
    /// The id of the subscription at `endpoint`: stable, so a re-subscribe replaces it.
    pub fn id_for(endpoint: &str) -> String {
        hex::encode(&Sha256::digest(endpoint.as_bytes())[..12])
    }

    /// Checks a browser's subscription and turns it into the stored form, or says which fields
    /// are wrong.
    pub fn from_request(
        req: &PushSubscriptionRequest,
        allow_loopback: bool,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(why) = EgressPolicy::new(allow_loopback).check_url(&req.endpoint) {
            errors.push(FieldError::new("endpoint", why.to_string()));
        }
        let p256dh = decode_b64url(&req.keys.p256dh);
        match &p256dh {
            Some(k) if k.len() == P256DH_BYTES && k[0] == 0x04 => {
                if p256::PublicKey::from_sec1_bytes(k).is_err() {
                    errors.push(FieldError::new("keys.p256dh", "is not a point on P-256"));
                }
            }
            Some(k) => errors.push(FieldError::new(
                "keys.p256dh",
                format!(
                    "must be a {P256DH_BYTES}-byte uncompressed P-256 key (0x04…), got {} bytes",
                    k.len()
                ),
            )),
            None => errors.push(FieldError::new("keys.p256dh", "is not base64url")),
        }
        let auth = decode_b64url(&req.keys.auth);
        match &auth {
            Some(a) if a.len() == AUTH_SECRET_BYTES => {}
            Some(a) => errors.push(FieldError::new(
                "keys.auth",
                format!("must be {AUTH_SECRET_BYTES} bytes, got {}", a.len()),
            )),
            None => errors.push(FieldError::new("keys.auth", "is not base64url")),
        }
        let expires_at = match req.expiration_time {
            None => None,
            Some(ms) if ms.is_finite() && ms > 0.0 => {
                let at = DateTime::<Utc>::from_timestamp_millis(ms as i64);
                match at {
                    Some(at) if at > now => Some(at),
                    _ => {
                        errors.push(FieldError::new("expirationTime", "is in the past"));
                        None
                    }
                }
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "expirationTime",
                    "must be milliseconds since the epoch",
                ));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PushSubscription {
            id: Self::id_for(&req.endpoint),
            endpoint: req.endpoint.clone(),
            p256dh: URL_SAFE_NO_PAD.encode(p256dh.unwrap_or_default()),
            auth: URL_SAFE_NO_PAD.encode(auth.unwrap_or_default()),
            expires_at,
            created_at: now,
        })
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// base64url with or without padding (browsers send it unpadded; some libraries pad).
pub fn decode_b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .ok()
}

/// Where the user can be reached by email and SMS. Absent means "not by that channel".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contacts {
    /// An email address, `local@domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An E.164 phone number, `+` and up to 15 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Contacts {
    /// Checks both fields; empty strings count as absent.
    pub fn validated(mut self) -> Result<Self, Vec<FieldError>> {
        self.email = self.email.filter(|e| !e.is_empty());
        self.phone = self.phone.filter(|p| !p.is_empty());
        let mut errors = Vec::new();
        if let Some(e) = &self.email {
            if let Err(why) = check_email(e) {
                errors.push(FieldError::new("email", why));
            }
        }
        if let Some(p) = &self.phone {
            if !is_e164(p) {
                errors.push(FieldError::new(
                    "phone",
                    "must be an E.164 number: + then 2 to 15 digits, no leading 0",
                ));
            }
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }
}

/// `+` then 2–15 digits, the first not 0 (ITU-T E.164).
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A practical email check (RFC 5321 shape, ASCII): `local@domain.tld`, no spaces, quotes or
/// control characters (nothing that could break a mail header), a domain of dot-separated labels.
pub fn check_email(email: &str) -> Result<(), &'static str> {
    if email.len() > EMAIL_MAX_BYTES {
        return Err("is longer than 254 bytes");
    }
    let (local, domain) = email.rsplit_once('@').ok_or("has no @")?;
    if local.is_empty() || local.len() > 64 {
        return Err("needs a local part of 1 to 64 characters before the @");
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err("has characters that are not allowed before the @");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !domain_ok {
        return Err("needs a domain like example.com after the @");
    }
    Ok(())
}

/// A one-click unsubscribe link's token: "turn EMAIL off for notifications of `kind`, for
/// `user_id` of `tenant`". Wire form: `base64url(payload) "." base64url(HMAC-SHA256)`, the payload
/// `v1\n<user>\n<type>` for the default tenant (the links signed before tenants) and
/// `v1\n<user>\n<type>\n<tenant>` for another: the tenant is signed with the rest, so a link opts
/// out its own tenant's user only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeToken {
    pub user_id: String,
    pub kind: String,
    pub tenant: Tenant,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
}

type HmacSha256 = Hmac<Sha256>;

impl UnsubscribeToken {
    fn mac(secret: &[u8], payload: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes any key length"),
        };
        mac.update(payload);
        mac
    }

    pub fn sign(&self, secret: &[u8]) -> String {
        let mut payload = format!("v1\n{}\n{}", self.user_id, self.kind);
        if !self.tenant.is_default() {
            payload = format!("{payload}\n{}", self.tenant);
        }
        let tag = Self::mac(secret, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks the signature (in constant time) and the fields.
    pub fn verify(token: &str, secret: &[u8]) -> Result<Self, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        Self::mac(secret, &payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.split('\n');
        let (Some("v1"), Some(user), Some(kind)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let tenant = match (parts.next(), parts.next()) {
            (None, _) => Tenant::default_tenant(),
            (Some(name), None) => Tenant::parse(name).ok_or(TokenError::Malformed)?,
            (Some(_), Some(_)) => return Err(TokenError::Malformed),
        };
        if !(limits::valid_user_id(user) && limits::valid_type(kind)) {
            return Err(TokenError::Malformed);
        }
        Ok(UnsubscribeToken {
            user_id: user.to_owned(),
            kind: kind.to_owned(),
            tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: &str, p256dh: &str, auth: &str) -> PushSubscriptionRequest {
        PushSubscriptionRequest {
            endpoint: endpoint.into(),
            expiration_time: None,
            keys: PushKeys {
                p256dh: p256dh.into(),
                auth: auth.into(),
            },
        }
    }

    // A real browser key (from RFC 8291's example).
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    fn fields(r: Result<PushSubscription, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn endpoints_must_be_https_and_public_unless_loopback_is_allowed() {
        let now = Utc::now();
        let ok =
            |e: &str, lb: bool| PushSubscription::from_request(&request(e, P256DH, AUTH), lb, now);
        assert!(ok("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert_eq!(fields(ok("http://push.example.com/x", false)), ["endpoint"]);
        assert_eq!(fields(ok("http://127.0.0.1:8080/x", false)), ["endpoint"]);
        assert!(ok("http://127.0.0.1:8080/x", true).is_ok());
        assert!(ok("http://localhost:8080/x", true).is_ok());
        assert!(ok("http://[::1]:8080/x", true).is_ok());
        for bad in [
            "https://10.0.0.7/x",
            "https://169.254.169.254/latest",
            "https://192.168.1.1/x",
            "https://[fd00::1]/x",
            "https://user:pw@push.example.com/x",
            "ftp://push.example.com/x",
            "/relative",
            "not a url",
        ] {
            assert_eq!(fields(ok(bad, true)), ["endpoint"], "{bad}");
        }
    }

    #[test]
    fn keys_are_checked_for_length_and_curve() {
        let now = Utc::now();
        let e = "https://push.example.com/x";
        let short = URL_SAFE_NO_PAD.encode([4u8; 33]);
        let off_curve = URL_SAFE_NO_PAD.encode([4u8; 65]);
        let long_auth = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let check = |p: &str, a: &str| {
            fields(PushSubscription::from_request(
                &request(e, p, a),
                false,
                now,
            ))
        };
        assert_eq!(check(&short, AUTH), ["keys.p256dh"]);
        assert_eq!(check(&off_curve, AUTH), ["keys.p256dh"]);
        assert_eq!(check("%%%", AUTH), ["keys.p256dh"]);
        assert_eq!(check(P256DH, &long_auth), ["keys.auth"]);
        let s = PushSubscription::from_request(&request(e, P256DH, AUTH), false, now)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.id, PushSubscription::id_for(e));
        assert_eq!(s.p256dh, P256DH);
    }

    #[test]
    fn contacts_need_a_plausible_email_and_an_e164_phone() {
        let c = |email: &str, phone: &str| {
            Contacts {
                email: Some(email.into()),
                phone: Some(phone.into()),
            }
            .validated()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect::<Vec<_>>()
        };
        assert!(c("ada@example.com", "+447700900123").is_empty());
        assert!(c("", "").is_empty());
        assert_eq!(c("ada@localhost", "+447700900123"), ["email"]);
        assert_eq!(c("ada example@x.com", "+1"), ["email", "phone"]);
        assert_eq!(
            c("a@b.com\r\nBcc: x@y.z", "07700900123"),
            ["email", "phone"]
        );
        assert_eq!(c("a@b.com", "+0123456"), ["phone"]);
        assert_eq!(c("a@b.com", "+1234567890123456"), ["phone"]);
    }

    #[test]
    fn unsubscribe_tokens_verify_only_with_their_secret() {
        let t = UnsubscribeToken {
            user_id: "alice".into(),
            kind: "invoice.paid".into(),
            tenant: Tenant::default_tenant(),
        };
        let signed = t.sign(b"secret-1");
        // The default tenant's wire form is the one from before tenants.
        let (payload, _) = signed.split_once('.').unwrap_or_default();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(payload).unwrap_or_default(),
            b"v1\nalice\ninvoice.paid"
        );
        assert_eq!(UnsubscribeToken::verify(&signed, b"secret-1"), Ok(t));
        assert_eq!(
            UnsubscribeToken::verify(&signed, b"secret-2"),
            Err(TokenError::BadSignature)
        );
        let (payload, tag) = signed.split_once('.').unwrap_or_default();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode("v1\nmallory\ninvoice.paid")
        );
        assert_eq!(
            UnsubscribeToken::verify(&forged, b"secret-1"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            UnsubscribeToken::verify(payload, b"secret-1"),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn an_unsubscribe_token_carries_its_tenant_under_the_signature() {
        let acme = UnsubscribeToken {
            user_id: "alice".into(),
            kind: "invoice.paid".into(),
            tenant: Tenant::parse("acme").unwrap_or_default(),
        };
        let signed = acme.sign(b"secret-1");
        assert_eq!(UnsubscribeToken::verify(&signed, b"secret-1"), Ok(acme));
        // Moving the signature to the default tenant's payload (or another tenant's) fails.
        let (_, tag) = signed.split_once('.').unwrap_or_default();
        for payload in ["v1\nalice\ninvoice.paid", "v1\nalice\ninvoice.paid\nglobex"] {
            let moved = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(payload));
            assert_eq!(
                UnsubscribeToken::verify(&moved, b"secret-1"),
                Err(TokenError::BadSignature)
            );
        }
    }
}
