//! The adapter contract every off-app sender implements ([`Adapter`]), the one classification of
//! a provider's answer ([`Outcome`]), and what an HTTP adapter needs to classify one
//! ([`http_call`], [`HttpAnswer::classify`], [`retry_after`]).
//!
//! **One call, one classified answer.** [`Adapter::send`] makes one attempt at one address and
//! maps the provider's answer, whatever its protocol, into an [`Outcome`]: `sent`, `gone` (the
//! address is dead: remove it), `retry-after(d)`, `transient`, `too-large` (resend once in the
//! message's [`Trim`]med form, when it has one) or `rejected`. What acts on an outcome is the
//! caller's: the push function's `SendPolicy` (inline retries, trimming, failover) and the
//! webhooks function's retry schedule both decide from the outcome alone.
//!
//! Every adapter finishes a call within its configured timeout (a provider that holds the
//! request longer is `transient`). A failure's `detail` is [`Redacted`]: provider text echoes
//! addresses. A redirect (3xx) is never followed: `rejected`/`redirect-refused`. A request the
//! outbound policy refused ([`crate::egress`]) is `rejected`/`endpoint-refused`.
//!
//! Adapters: Web Push, SMTP, SES, Twilio SMS, FCM and APNs (`functions/push/src/senders`) and the
//! outbound webhook (`functions/webhooks/src/send.rs`). `tests/tests/senders_conformance.rs`
//! runs the same scripted provider answers against every one, each against a local fake.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::egress;
use crate::error::chain as error_chain;
use crate::protocol::outcome::reason;
use crate::redact::{redact, Redacted};

/// What one call to a provider came to, classified the same way for every provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the message.
    Sent,
    /// The address is dead (a push subscription gone, a mailbox or number that does not exist):
    /// remove it, do not retry. `detail` is the provider's answer, for the log.
    Gone { detail: Redacted },
    /// Throttled: the provider asked for this wait (`Retry-After`; 60 s when it named none).
    RetryAfter(Duration),
    /// May succeed if tried again: 5xx, SMTP 4yz, a timeout, no connection.
    Transient {
        reason: &'static str,
        detail: Redacted,
    },
    /// The message is over the provider's size limit: send it again trimmed.
    TooLarge,
    /// Refused for good: bad credentials, a bad request or address, a redirect, a refused
    /// endpoint.
    Rejected {
        reason: &'static str,
        detail: Redacted,
    },
}

impl Outcome {
    pub fn transient(reason: &'static str, detail: impl AsRef<str>) -> Self {
        Outcome::Transient {
            reason,
            detail: Redacted::new(detail),
        }
    }

    pub fn gone(detail: impl AsRef<str>) -> Self {
        Outcome::Gone {
            detail: Redacted::new(detail),
        }
    }

    pub fn rejected(reason: &'static str, detail: impl AsRef<str>) -> Self {
        Outcome::Rejected {
            reason,
            detail: Redacted::new(detail),
        }
    }

    /// Its name in the contract: `sent`, `gone`, `retry-after`, `transient`, `too-large`,
    /// `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Gone { .. } => "gone",
            Outcome::RetryAfter(_) => "retry-after",
            Outcome::Transient { .. } => "transient",
            Outcome::TooLarge => "too-large",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// A message that may have a smaller form to send after a `too-large`.
pub trait Trim: Sized {
    /// The trimmed form, or `None` when this is already as small as it gets.
    fn trimmed(&self) -> Option<Self>;
}

/// One provider of one off-app channel.
///
/// Contract: [`send`](Adapter::send) makes one attempt to hand `message` to the provider for
/// `to`, finishes within the configured timeout, and classifies the answer ([`Outcome`]). It
/// never retries, sleeps or trims on its own: that is its caller's, from the outcome alone.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// The address: a push subscription, an email address, a phone number, a webhook.
    type To: ?Sized + Sync;
    type Message: Trim + Send + Sync;

    /// The provider's name, for logs and circuit breakers (`webpush`, `smtp`, `twilio`,
    /// `webhook`).
    fn provider(&self) -> &'static str;

    fn send<'a>(&'a self, to: &'a Self::To, message: &'a Self::Message) -> BoxFuture<'a, Outcome>;
}

/// An HTTP provider's answer, read whole: what adapters classify.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// `Location` of a 3xx.
    pub location: Option<String>,
    /// The body, redacted and cut ([`provider_text`]), for a failure's detail.
    pub text: String,
    /// The body as JSON, when it is JSON (error codes in provider bodies).
    pub json: Option<serde_json::Value>,
}

/// Sends `request` once within `timeout`: the answer, or the outcome when there is none
/// ([`unanswered`]).
pub async fn http_call(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<HttpAnswer, Outcome> {
    match request.timeout(timeout).send().await {
        Ok(response) => Ok(HttpAnswer::read(response).await),
        Err(e) => Err(unanswered(&e)),
    }
}

/// A request that got no answer: a refusal of the outbound policy is
/// `rejected`/`endpoint-refused` (no request was made); a timeout or no connection is
/// `transient`/`error`.
pub fn unanswered(e: &reqwest::Error) -> Outcome {
    if let Some(why) = egress::refusal(e) {
        return Outcome::rejected(reason::ENDPOINT_REFUSED, format!("endpoint {why}"));
    }
    Outcome::transient(reason::ERROR, error_chain(e))
}

impl HttpAnswer {
    /// Reads `response`: its status and headers, and the body of a non-2xx (for the detail).
    pub async fn read(response: reqwest::Response) -> HttpAnswer {
        let status = response.status().as_u16();
        let headers = response.headers();
        let retry_after = retry_after(headers, Utc::now());
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        // A body that does not arrive in time is no answer: the status alone still classifies it.
        let body = if response.status().is_success() {
            String::new()
        } else {
            response.text().await.unwrap_or_default()
        };
        HttpAnswer {
            status,
            retry_after,
            location,
            json: serde_json::from_str(&body).ok(),
            text: provider_text(&body),
        }
    }

    /// What the answer means for any HTTP provider: 2xx `sent`; 3xx `rejected`/`redirect-refused`
    /// (never followed); 413 `too-large`; 429 `retry-after` (60 s without a `Retry-After`);
    /// 5xx `transient`/`provider-5xx`; any other 4xx (401/403 bad credentials included)
    /// `rejected`/`provider-4xx`. An adapter whose provider gives some answers a meaning of its
    /// own (Web Push's 404/410) matches those first.
    pub fn classify(&self) -> Outcome {
        let status = self.status;
        match status {
            200..=299 => Outcome::Sent,
            300..=399 => Outcome::rejected(
                reason::REDIRECT_REFUSED,
                format!(
                    "{status} redirect to {} not followed",
                    self.location.as_deref().unwrap_or("nowhere")
                ),
            ),
            413 => Outcome::TooLarge,
            429 => Outcome::RetryAfter(self.retry_after.unwrap_or(Duration::from_secs(60))),
            500..=599 => {
                Outcome::transient(reason::PROVIDER_5XX, format!("{status} {}", self.text))
            }
            _ => Outcome::rejected(reason::PROVIDER_4XX, format!("{status} {}", self.text)),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// What of a provider's answer body goes into a failure's detail: redacted, then cut to 200
/// characters (in that order: a cut address would not be recognised).
pub fn provider_text(body: &str) -> String {
    truncate(&redact(body), 200).to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn answer(status: u16, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            retry_after: None,
            location: None,
            json: serde_json::from_str(body).ok(),
            text: provider_text(body),
        }
    }

    #[test]
    fn redirects_are_rejected_with_their_reason() {
        let mut redirected = answer(307, "");
        redirected.location = Some("http://10.0.3.7/latest/meta-data".into());
        assert_eq!(
            redirected.classify(),
            Outcome::rejected(
                reason::REDIRECT_REFUSED,
                "307 redirect to http://10.0.3.7/… not followed"
            )
        );
    }

    /// Provider text reaches the log only through a failure's `detail`, which is redacted.
    #[test]
    fn a_failures_detail_never_carries_the_address_the_provider_echoed() {
        let body = r#"{"code":21211,"message":"The 'To' number +447700900123 is not a valid phone number.","more_info":"ada@example.com"}"#;
        let Outcome::Rejected { detail, .. } = answer(400, body).classify() else {
            panic!("a 400 is rejected");
        };
        let logged = detail.to_string();
        assert!(
            logged.starts_with("400 ") && logged.contains("21211"),
            "{logged}"
        );
        assert!(
            !logged.contains("447700900123") && !logged.contains("ada@"),
            "{logged}"
        );
        // An address straddling the cut leaves nothing of itself behind.
        let long = format!("{} bob@example.com", "x".repeat(195));
        assert!(!provider_text(&long).contains("bob"));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 29 Nov 2026 12:01:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
