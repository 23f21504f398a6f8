//! The webhook adapter ([`WebhookSender`]): one attempt, the message's body POSTed to the
//! webhook's URL with the Standard Webhooks headers through the outbound policy's client
//! ([`shared::egress`]), the receiver's answer classified as every adapter's is
//! ([`shared::adapter::Outcome`]):
//!
//! | receiver's answer | outcome |
//! |---|---|
//! | 2xx | `sent` |
//! | 410 | `gone`: the receiver wants no more webhooks (Standard Webhooks: disable the endpoint) |
//! | 429, or a 5xx with a `Retry-After` | `retry-after(d)`: its `Retry-After` (60 s without one) |
//! | another 5xx, a timeout, no connection | `transient` (`provider-5xx`, `error`) |
//! | 413 | `too-large`: a message has no smaller form ([`shared::adapter::Trim`] is `None`) |
//! | 3xx | `rejected`/`redirect-refused`: never followed |
//! | any other 4xx (401/403 included) | `rejected`/`provider-4xx` |
//! | a URL or address outside the outbound policy | `rejected`/`endpoint-refused`, no request |
//!
//! What the function does with each outcome is [`crate::queue`]'s.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use shared::adapter::{unanswered, Adapter, HttpAnswer, Outcome};
use shared::egress::{refusal, EgressPolicy};
use shared::protocol::outcome::reason;
use shared::webhooks::{signature, Webhook, WebhookMessage};

/// Sends webhook messages: the outbound policy and its client, whose timeout bounds each attempt.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    egress: EgressPolicy,
    client: reqwest::Client,
}

/// What one attempt came to: its outcome, and what the deliveries log keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed without a status to tell: [`reason::REDIRECT_REFUSED`] (a 3xx),
    /// [`reason::ENDPOINT_REFUSED`], `timeout`, `connect`, `bad-secret`.
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
}

impl WebhookSender {
    /// A sender whose every request goes through `egress` (checked addresses, no redirects, no
    /// proxy) and gives up after `timeout`.
    pub fn new(egress: EgressPolicy, timeout: Duration) -> reqwest::Result<Self> {
        let client = egress.client(
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .user_agent("Herald-Webhooks/1"),
        )?;
        Ok(WebhookSender { egress, client })
    }

    /// Sends `message` to `hook` once, signed for this attempt's time.
    pub async fn attempt(&self, hook: &Webhook, message: &WebhookMessage) -> Attempt {
        let at = Utc::now();
        let started = Instant::now();
        let (outcome, status_code, error) = self.post(hook, message, at).await;
        Attempt {
            outcome,
            status_code,
            error: error.map(str::to_owned),
            at,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    async fn post(
        &self,
        hook: &Webhook,
        message: &WebhookMessage,
        at: DateTime<Utc>,
    ) -> (Outcome, Option<u16>, Option<&'static str>) {
        // Checked again at each send: the policy may be stricter than when it was registered.
        let url = match self.egress.check_url(&hook.url) {
            Ok(url) => url,
            Err(why) => {
                let outcome =
                    Outcome::rejected(reason::ENDPOINT_REFUSED, format!("endpoint {why}"));
                return (outcome, None, Some(reason::ENDPOINT_REFUSED));
            }
        };
        let timestamp = at.timestamp();
        let Ok(signed) = signature(
            &hook.secret,
            &message.id,
            timestamp,
            message.body.as_bytes(),
        ) else {
            let outcome = Outcome::rejected(reason::ERROR, "the webhook's secret cannot sign");
            return (outcome, None, Some("bad-secret"));
        };
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(message.body.clone())
            .send()
            .await;
        match response {
            Ok(response) => {
                let answer = HttpAnswer::read(response).await;
                let redirected = (300..400).contains(&answer.status);
                (
                    classify(&answer),
                    Some(answer.status),
                    redirected.then_some(reason::REDIRECT_REFUSED),
                )
            }
            Err(e) => {
                let error = if refusal(&e).is_some() {
                    reason::ENDPOINT_REFUSED
                } else if e.is_timeout() {
                    "timeout"
                } else {
                    "connect"
                };
                tracing::debug!(webhook = hook.id, error = %shared::error::chain(&e), "webhook attempt failed");
                (unanswered(&e), None, Some(error))
            }
        }
    }
}

/// The receiver's answer as an outcome (the module's table): as any HTTP provider's
/// ([`HttpAnswer::classify`]), except that a 410 is `gone` and a 5xx naming a `Retry-After` is
/// `retry-after` (Standard Webhooks asks senders to honour it, e.g. on a 503).
pub fn classify(answer: &HttpAnswer) -> Outcome {
    match (answer.status, answer.retry_after) {
        (410, _) => Outcome::gone(format!("410 {}", answer.text)),
        (500..=599, Some(wait)) => Outcome::RetryAfter(wait),
        _ => answer.classify(),
    }
}

impl Adapter for WebhookSender {
    type To = Webhook;
    type Message = WebhookMessage;

    fn provider(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(
        &'a self,
        hook: &'a Webhook,
        message: &'a WebhookMessage,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { self.attempt(hook, message).await.outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> HttpAnswer {
        HttpAnswer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            location: None,
            text: String::new(),
            json: None,
        }
    }

    #[test]
    fn a_receivers_answers_are_classified_as_the_contract_says() {
        let kinds: Vec<(u16, Option<u64>, &str)> = vec![
            (200, None, "sent"),
            (204, None, "sent"),
            (410, None, "gone"),
            (429, Some(7), "retry-after"),
            (503, Some(7), "retry-after"),
            (503, None, "transient"),
            (500, None, "transient"),
            (413, None, "too-large"),
            (302, None, "rejected"),
            (400, None, "rejected"),
            (401, None, "rejected"),
            (404, None, "rejected"),
        ];
        for (status, wait, kind) in kinds {
            let outcome = classify(&answer(status, wait));
            assert_eq!(outcome.kind(), kind, "{status}: {outcome:?}");
        }
        assert_eq!(
            classify(&answer(503, Some(7))),
            Outcome::RetryAfter(Duration::from_secs(7))
        );
        assert!(matches!(
            classify(&answer(302, None)),
            Outcome::Rejected { reason, .. } if reason == reason::REDIRECT_REFUSED
        ));
    }
}
