//! One attempt: the message's body POSTed to the webhook's URL with the Standard Webhooks
//! headers, through the outbound policy's client ([`shared::egress`]).

use std::time::Instant;

use chrono::{DateTime, Utc};
use shared::egress::refusal;
use shared::protocol::outcome::reason;
use shared::webhooks::{signature, Webhook, WebhookMessage};

use crate::Deps;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub delivered: bool,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed without a 2xx: [`reason::REDIRECT_REFUSED`],
    /// [`reason::ENDPOINT_REFUSED`], `timeout`, `connect`, `bad-secret`, or absent for a plain
    /// non-2xx answer.
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
}

/// Sends `message` to `hook` once. A 2xx is delivered; anything else (a 3xx included: redirects
/// are never followed) is a failed attempt.
pub async fn attempt(deps: &Deps, hook: &Webhook, message: &WebhookMessage) -> AttemptOutcome {
    let at = Utc::now();
    let started = Instant::now();
    let (status_code, error) = post(deps, hook, message, at).await;
    AttemptOutcome {
        delivered: status_code.is_some_and(|s| (200..300).contains(&s)),
        status_code,
        error,
        at,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

async fn post(
    deps: &Deps,
    hook: &Webhook,
    message: &WebhookMessage,
    at: DateTime<Utc>,
) -> (Option<u16>, Option<String>) {
    // Checked again at each send: the policy may be stricter than when it was registered.
    let url = match deps.settings.egress().check_url(&hook.url) {
        Ok(url) => url,
        Err(_) => return (None, Some(reason::ENDPOINT_REFUSED.to_owned())),
    };
    let timestamp = at.timestamp();
    let Ok(signed) = signature(
        &hook.secret,
        &message.id,
        timestamp,
        message.body.as_bytes(),
    ) else {
        return (None, Some("bad-secret".to_owned()));
    };
    let response = deps
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
        Ok(r) if r.status().is_redirection() => (
            Some(r.status().as_u16()),
            Some(reason::REDIRECT_REFUSED.to_owned()),
        ),
        Ok(r) => (Some(r.status().as_u16()), None),
        Err(e) if refusal(&e).is_some() => (None, Some(reason::ENDPOINT_REFUSED.to_owned())),
        Err(e) if e.is_timeout() => (None, Some("timeout".to_owned())),
        Err(e) => {
            tracing::debug!(webhook = hook.id, error = %shared::error::chain(&e), "webhook attempt failed");
            (None, Some("connect".to_owned()))
        }
    }
}
