//! The senders, one per provider kind (Web Push, SMTP, SMS), each behind the same small contract.
//!
//! Contract of every `send`: it returns once the provider has *accepted* the message
//! ([`Delivery::Sent`]: push service 201, SMTP 250, SMS API 2xx), refused it for good, or asked
//! for a wait longer than may be slept inline ([`Delivery::Later`]). Transient failures (5xx,
//! timeouts, refused connections, SMTP 4yz) are retried inline a bounded number of times with
//! doubling backoff; a short `Retry-After` (at most `PUSH_INLINE_WAIT_MAX_MS`) is slept. A send is
//! at least once: a provider that accepted a message whose answer was lost gets it again.
//!
//! A redirect (3xx) is never followed: it is a failed send, `redirect-refused`. A request the
//! outbound policy refused ([`shared::egress`]) is a failed send, `endpoint-refused`, without
//! retries. A failure's `detail` is [`Redacted`]: provider text echoes addresses.
//!
//! - [`webpush`]: Web Push with VAPID (RFC 8292) and aes128gcm (RFC 8291);
//! - [`email`]: SMTP (lettre, rustls), text + HTML, RFC 8058 one-click unsubscribe headers;
//! - [`sms`]: an HTTP API in Twilio's Messages shape.

pub mod email;
pub mod sms;
pub mod webpush;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::config::SendSettings;
use shared::egress;
use shared::protocol::outcome::reason;
use shared::redact::{redact, Redacted};
use tokio::sync::Semaphore;

/// What one send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The provider is throttling: try again at `at` (the retry schedule).
    Later {
        at: DateTime<Utc>,
    },
    /// Web Push: the subscription no longer exists (404/410); remove it.
    Gone,
    /// Refused for good, or still failing after the inline retries. `reason` is one of the
    /// outcome vocabulary's ([`reason`]); `detail` is for the log, redacted.
    Failed {
        reason: &'static str,
        detail: Redacted,
    },
}

impl Delivery {
    /// A failure; `detail` (provider text, an error chain) is redacted here.
    pub fn failed(reason: &'static str, detail: impl AsRef<str>) -> Self {
        Delivery::Failed {
            reason,
            detail: Redacted::new(detail),
        }
    }
}

/// What an HTTP provider answered, after the inline retries.
#[derive(Debug)]
pub enum HttpOutcome {
    /// 2xx.
    Accepted(u16),
    /// A 4xx other than 429, for the caller to interpret (404/410 gone, 413 too large, …).
    Refused(u16, String),
    /// 429 with a wait too long to sleep here.
    Throttled(Duration),
    /// A 3xx, not followed: the status and the `Location` it named.
    Redirected(u16, String),
    /// The outbound policy refused the address the URL's host resolved to.
    EndpointRefused(egress::Refused),
    /// 5xx, timeout or no connection, every attempt.
    Unavailable(Delivery),
}

impl HttpOutcome {
    /// What the answer means for any HTTP provider: 2xx sent, another 4xx `failed` with
    /// `provider-4xx`, a long 429 wait `Later`, 5xx as the retries left it. A sender that gives
    /// some statuses a meaning of its own (Web Push's 404/410 and 413) matches those first.
    pub fn delivery(self) -> Delivery {
        match self {
            HttpOutcome::Accepted(_) => Delivery::Sent,
            HttpOutcome::Refused(status, text) => {
                Delivery::failed(reason::PROVIDER_4XX, format!("{status} {text}"))
            }
            HttpOutcome::Throttled(wait) => Delivery::Later {
                at: Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero()),
            },
            HttpOutcome::Redirected(status, location) => Delivery::failed(
                reason::REDIRECT_REFUSED,
                format!("{status} redirect to {location} not followed"),
            ),
            HttpOutcome::EndpointRefused(why) => {
                Delivery::failed(reason::ENDPOINT_REFUSED, format!("endpoint {why}"))
            }
            HttpOutcome::Unavailable(d) => d,
        }
    }
}

/// The inline retry policy, and the process-wide limit on requests in flight.
#[derive(Debug, Clone)]
pub struct SendPolicy {
    pub settings: SendSettings,
    permits: Arc<Semaphore>,
}

impl SendPolicy {
    pub fn new(settings: SendSettings) -> Self {
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        SendPolicy { settings, permits }
    }

    /// Backoff before attempt `n + 1` (n ≥ 1): base × 2^(n-1), with up to 20% jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff.as_millis() as u64;
        let ms = base.saturating_mul(1 << (attempt.saturating_sub(1)).min(10));
        let jitter = if ms >= 5 {
            rand::random::<u64>() % (ms / 5)
        } else {
            0
        };
        Duration::from_millis(ms + jitter)
    }

    /// Sends the request `build` makes, retrying transient failures inline. `build` is called
    /// once per attempt.
    pub async fn http(&self, build: impl Fn() -> reqwest::RequestBuilder) -> HttpOutcome {
        let attempts = self.settings.attempts.max(1);
        let mut last = Delivery::failed(reason::ERROR, "not attempted");
        for attempt in 1..=attempts {
            let response = {
                // Hold a permit only while the request is in flight, never while sleeping.
                let _permit = self.permits.acquire().await;
                build().timeout(self.settings.timeout).send().await
            };
            let wait = match response {
                Ok(r) if r.status().is_success() => {
                    return HttpOutcome::Accepted(r.status().as_u16())
                }
                Ok(r) if r.status().is_redirection() => {
                    let location = r
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .unwrap_or("nowhere");
                    return HttpOutcome::Redirected(r.status().as_u16(), location.to_owned());
                }
                Ok(r) if r.status().as_u16() == 429 => {
                    let wait =
                        retry_after(r.headers(), Utc::now()).unwrap_or(Duration::from_secs(60));
                    if wait > self.settings.inline_wait_max || attempt == attempts {
                        return HttpOutcome::Throttled(wait);
                    }
                    last = Delivery::failed(reason::RATE_LIMITED, "429");
                    wait
                }
                Ok(r) if r.status().is_server_error() => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    last = Delivery::failed(
                        reason::PROVIDER_5XX,
                        format!("{status} {}", provider_text(&text)),
                    );
                    self.backoff(attempt)
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    return HttpOutcome::Refused(status, provider_text(&text));
                }
                Err(e) => {
                    if let Some(why) = egress::refusal(&e) {
                        return HttpOutcome::EndpointRefused(why.clone());
                    }
                    last = Delivery::failed(reason::ERROR, error_chain(&e));
                    self.backoff(attempt)
                }
            };
            if attempt < attempts {
                tokio::time::sleep(wait).await;
            }
        }
        HttpOutcome::Unavailable(last)
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
fn provider_text(body: &str) -> String {
    truncate(&redact(body), 200).to_owned()
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub(crate) use shared::error::chain as error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn redirects_and_refused_addresses_are_final_failures_with_their_reason() {
        let redirected = HttpOutcome::Redirected(307, "http://10.0.3.7/latest/meta-data".into());
        assert_eq!(
            redirected.delivery(),
            Delivery::failed(
                reason::REDIRECT_REFUSED,
                "307 redirect to http://10.0.3.7/… not followed"
            )
        );
        let refused = HttpOutcome::EndpointRefused(egress::Refused::Loopback).delivery();
        assert!(
            matches!(refused, Delivery::Failed { reason, .. } if reason == reason::ENDPOINT_REFUSED)
        );
    }

    /// Provider text reaches the log only through a failure's `detail`, which is redacted.
    #[test]
    fn a_failures_detail_never_carries_the_address_the_provider_echoed() {
        let body = r#"{"code":21211,"message":"The 'To' number +447700900123 is not a valid phone number.","more_info":"ada@example.com"}"#;
        let Delivery::Failed { detail, .. } = HttpOutcome::Refused(400, body.to_owned()).delivery()
        else {
            panic!("a 400 is a failure");
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
