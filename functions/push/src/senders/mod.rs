//! The push function's adapters, and the one policy that acts on their outcomes
//! ([`SendPolicy::deliver`]). The contract they implement ([`Adapter`]) and the one
//! classification of a provider's answer ([`Outcome`]) are [`shared::adapter`]'s, shared with the
//! webhooks function.
//!
//! **One call, one classified answer.** [`Adapter::send`] makes one attempt at one address and
//! maps the provider's answer, whatever its protocol, into an [`Outcome`]:
//!
//! | outcome | meaning | what [`SendPolicy::deliver`] does |
//! |---|---|---|
//! | `sent` | the provider accepted it | [`Delivery::Sent`] |
//! | `gone` | the address is dead | [`Delivery::Gone`]: remove it |
//! | `retry-after(d)` | throttled, try again after `d` | sleep and retry when `d` ≤ `PUSH_INLINE_WAIT_MAX_MS` and attempts remain, else [`Delivery::Later`] (the retry schedule) |
//! | `transient` | 5xx, SMTP 4yz, timeout, no connection | retry with doubling backoff, at most `PUSH_RETRY_ATTEMPTS` attempts in all, then [`Delivery::Failed`] |
//! | `too-large` | the message is over the provider's limit | resend once in the message's trimmed form ([`Trim`]); without one, or too large again, `failed`/`provider-4xx` |
//! | `rejected` | refused for good (bad credentials, a bad request, a redirect, a refused endpoint) | [`Delivery::Failed`] with its reason, no retry |
//!
//! Every adapter finishes a call within `PUSH_TIMEOUT_MS` (a provider that holds the request
//! longer is `transient`). A send is at least once: a provider that accepted a message whose
//! answer was lost gets it again. A failure's `detail` is [`Redacted`]: provider text echoes
//! addresses. The push function's channel and retry logic see only [`Delivery`], which only
//! [`SendPolicy::deliver`] makes, from outcomes only.
//!
//! A channel with a list of providers (email, SMS) sends through [`SendPolicy::deliver_first`]:
//! ordered failover, each provider guarded by its circuit breaker in Redis
//! ([`shared::store::breaker`]).
//!
//! A redirect (3xx) is never followed: `rejected`/`redirect-refused`. A request the outbound
//! policy refused ([`shared::egress`]) is `rejected`/`endpoint-refused`, without a request.
//!
//! - [`webpush`]: Web Push with VAPID (RFC 8292) and aes128gcm (RFC 8291);
//! - [`email`]: SMTP (lettre, rustls), text + HTML, RFC 8058 one-click unsubscribe headers;
//! - [`ses`]: Amazon SES v2 `SendEmail` with the same message as raw content;
//! - [`sms`]: an HTTP API in Twilio's Messages shape;
//! - [`fcm`]: Firebase Cloud Messaging HTTP v1 (Android devices), OAuth 2 from a service account;
//! - [`apns`]: the Apple Push Notification service over HTTP/2 (iOS devices), ES256 provider tokens.
//!
//! `tests/tests/senders_conformance.rs` runs the same scripted provider answers against every
//! adapter, each against a local fake of its provider.

pub mod apns;
pub mod email;
pub mod fcm;
pub mod ses;
pub mod sms;
pub mod webpush;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::config::SendSettings;
use shared::metrics::MetricSet;
use shared::protocol::outcome::reason;
use shared::redact::Redacted;
use shared::store::{Admission, ProviderBreaker};
use tokio::sync::Semaphore;

/// The contract and the HTTP classification live in [`shared::adapter`], shared with the
/// webhooks function's adapter.
pub use shared::adapter::{
    http_call, provider_text, retry_after, Adapter, HttpAnswer, Outcome, Trim,
};

/// What one send came to after [`SendPolicy::deliver`]'s retries: all the channel logic sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The provider is throttling: try again at `at` (the retry schedule).
    Later {
        at: DateTime<Utc>,
    },
    /// The address is dead; remove it.
    Gone {
        detail: Redacted,
    },
    /// Refused for good (`rejected`, or `too-large` with nothing smaller to send). `reason` is
    /// one of the outcome vocabulary's ([`reason`]); `detail` is for the log, redacted.
    Failed {
        reason: &'static str,
        detail: Redacted,
    },
    /// Still `transient` after the inline retries: recorded `failed` like [`Delivery::Failed`],
    /// but another provider may still take it ([`SendPolicy::deliver_first`]).
    Unavailable {
        reason: &'static str,
        detail: Redacted,
    },
}

impl Delivery {
    /// Of the failover kind: the provider is unavailable or still throttling, so another may
    /// take it, and it counts against the provider's circuit breaker.
    pub fn fails_over(&self) -> bool {
        matches!(self, Delivery::Unavailable { .. } | Delivery::Later { .. })
    }

    /// A failure; `detail` (provider text, an error chain) is redacted here.
    pub fn failed(reason: &'static str, detail: impl AsRef<str>) -> Self {
        Delivery::Failed {
            reason,
            detail: Redacted::new(detail),
        }
    }
}

/// The inline retry policy, the process-wide limit on requests in flight, and the providers'
/// circuit breakers (shared by every instance, in Redis) that a failover chain consults.
#[derive(Debug, Clone)]
pub struct SendPolicy {
    pub settings: SendSettings,
    permits: Arc<Semaphore>,
    breaker: Option<ProviderBreaker>,
}

impl SendPolicy {
    /// A policy without circuit breakers ([`SendPolicy::with_breaker`] adds them).
    pub fn new(settings: SendSettings) -> Self {
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        SendPolicy {
            settings,
            permits,
            breaker: None,
        }
    }

    /// The same policy, its failover chains ([`SendPolicy::deliver_first`]) guarded by `breaker`.
    pub fn with_breaker(mut self, breaker: ProviderBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// May `provider` be called? A breaker that cannot be read is taken as closed: it is
    /// advice, and a Redis failure must not stop a send.
    async fn admit(&self, provider: &'static str) -> Admission {
        let Some(breaker) = &self.breaker else {
            return Admission::Call;
        };
        breaker.admit(provider).await.unwrap_or_else(|e| {
            tracing::warn!(provider, error = %e, "provider breaker unreadable: calling");
            Admission::Call
        })
    }

    /// Records what a call to `provider` came to in its breaker; an opening is logged and
    /// counted (`ProviderBreakerOpened`, the alarm's metric).
    async fn record(&self, provider: &'static str, delivery: &Delivery) {
        let Some(breaker) = &self.breaker else {
            return;
        };
        let failed = delivery.fails_over();
        match breaker.record(provider, failed).await {
            Ok(true) => {
                tracing::warn!(provider, outcome = ?delivery, "provider breaker opened");
                MetricSet::new().count("ProviderBreakerOpened", 1).emit();
                MetricSet::new()
                    .dimension("Provider", provider)
                    .count("ProviderBreakerOpened", 1)
                    .emit();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(provider, error = %e, "provider breaker not updated"),
        }
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

    /// Sends `message` to `to` through `adapter`, acting on each [`Outcome`] as the contract's
    /// table says (module docs): the one place that retries, sleeps, trims or gives up.
    pub async fn deliver<A: Adapter + ?Sized>(
        &self,
        adapter: &A,
        to: &A::To,
        message: &A::Message,
    ) -> Delivery {
        let attempts = self.settings.attempts.max(1);
        let mut trimmed: Option<A::Message> = None;
        let mut resent_trimmed = false;
        let mut attempt = 1;
        loop {
            let outcome = {
                // Hold a permit only while the call is in flight, never while sleeping.
                let _permit = self.permits.acquire().await;
                adapter.send(to, trimmed.as_ref().unwrap_or(message)).await
            };
            let wait = match outcome {
                Outcome::Sent => return Delivery::Sent,
                Outcome::Gone { detail } => return Delivery::Gone { detail },
                Outcome::Rejected { reason, detail } => return Delivery::Failed { reason, detail },
                Outcome::TooLarge => {
                    if !resent_trimmed {
                        resent_trimmed = true;
                        if let Some(smaller) = message.trimmed() {
                            trimmed = Some(smaller);
                            continue;
                        }
                    }
                    return Delivery::failed(
                        reason::PROVIDER_4XX,
                        format!(
                            "{}: too large, and no smaller form left",
                            adapter.provider()
                        ),
                    );
                }
                Outcome::RetryAfter(wait) => {
                    if wait > self.settings.inline_wait_max || attempt >= attempts {
                        let wait =
                            chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                        return Delivery::Later {
                            at: Utc::now() + wait,
                        };
                    }
                    wait
                }
                Outcome::Transient { reason, detail } => {
                    if attempt >= attempts {
                        return Delivery::Unavailable { reason, detail };
                    }
                    self.backoff(attempt)
                }
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Sends through the first of `adapters` (a channel's providers in order of preference) and
    /// fails over to the next only when one is unavailable ([`Delivery::Unavailable`]: still
    /// transient after the inline retries) or still throttling after them
    /// ([`Delivery::Later`]); never after `sent`, `gone` or a refusal. A provider whose circuit
    /// breaker is open is skipped without a request; each call's result goes into its breaker.
    /// Each provider is tried at most once per call, and the caller records the call once per
    /// (notification, channel) (the send ledger), so a chain is never replayed for a
    /// redelivered record. What the chain came to: the answer that stopped it, except that an
    /// exhausted chain which met a throttling provider is `Later` (the retry schedule tries the
    /// chain again), and a chain whose every provider was skipped is `Later` when the first
    /// breaker half-opens; and the provider that answered it (`None` when none was called).
    pub async fn deliver_first<T, M>(
        &self,
        adapters: &[Box<dyn Adapter<To = T, Message = M>>],
        to: &T,
        message: &M,
    ) -> (Delivery, Option<&'static str>)
    where
        T: ?Sized + Sync,
        M: Trim + Send + Sync,
    {
        let mut throttled: Option<(Delivery, Option<&'static str>)> = None;
        let mut last: Option<(Delivery, Option<&'static str>)> = None;
        let mut skipped: Option<Duration> = None;
        for (i, adapter) in adapters.iter().enumerate() {
            let provider = adapter.provider();
            if let Admission::Skip { retry_in } = self.admit(provider).await {
                tracing::info!(provider, ?retry_in, "provider breaker open: skipped");
                skipped = Some(skipped.map_or(retry_in, |s| s.min(retry_in)));
                continue;
            }
            let delivery = self.deliver(adapter.as_ref(), to, message).await;
            self.record(provider, &delivery).await;
            if !delivery.fails_over() {
                return (delivery, Some(provider));
            }
            if let Some(next) = adapters.get(i + 1) {
                tracing::info!(
                    provider,
                    next = next.provider(),
                    outcome = ?delivery,
                    "failing over"
                );
            }
            if matches!(delivery, Delivery::Later { .. }) && throttled.is_none() {
                throttled = Some((delivery.clone(), Some(provider)));
            }
            last = Some((delivery, Some(provider)));
        }
        match (last, throttled, skipped) {
            (Some((Delivery::Unavailable { .. }, _)), Some(later), _) => later,
            (Some(last), _, _) => last,
            (None, _, Some(wait)) => {
                let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                (
                    Delivery::Later {
                        at: Utc::now() + wait,
                    },
                    None,
                )
            }
            (None, _, None) => (
                Delivery::failed(reason::NOT_CONFIGURED, "no provider"),
                None,
            ),
        }
    }
}

pub(crate) use shared::error::chain as error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use shared::config::{Env, SenderSettings};

    /// An adapter that answers from a script, and records the messages it was given: the
    /// policy's side of the contract, tested apart from any provider.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: Mutex<Vec<Outcome>>,
        sent: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct Text(String, bool);

    impl Trim for Text {
        fn trimmed(&self) -> Option<Self> {
            self.1.then(|| Text(format!("{}…", &self.0[..1]), false))
        }
    }

    impl Adapter for Scripted {
        type To = str;
        type Message = Text;
        fn provider(&self) -> &'static str {
            "scripted"
        }
        fn send<'a>(&'a self, _: &'a str, message: &'a Text) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                if let Ok(mut s) = self.sent.lock() {
                    s.push(message.0.clone());
                }
                let next = self
                    .answers
                    .lock()
                    .ok()
                    .and_then(|mut a| (!a.is_empty()).then(|| a.remove(0)));
                next.unwrap_or(Outcome::Sent)
            })
        }
    }

    fn policy() -> SendPolicy {
        let env = Env::from_pairs([
            ("PUSH_RETRY_ATTEMPTS", "3"),
            ("PUSH_RETRY_BACKOFF_MS", "1"),
            ("PUSH_INLINE_WAIT_MAX_MS", "1000"),
        ]);
        let settings = SenderSettings::from_env(&env).unwrap_or_else(|e| panic!("{e}"));
        SendPolicy::new(settings.send)
    }

    async fn run(answers: Vec<Outcome>, trimmable: bool) -> (Delivery, Vec<String>) {
        let adapter = Scripted {
            answers: Mutex::new(answers),
            ..Scripted::default()
        };
        let d = policy()
            .deliver(&adapter, "to", &Text("long".into(), trimmable))
            .await;
        let sent = adapter.sent.lock().map(|s| s.clone()).unwrap_or_default();
        (d, sent)
    }

    #[tokio::test]
    async fn the_policy_acts_on_each_outcome_as_the_contract_says() {
        let busy = || Outcome::transient(reason::PROVIDER_5XX, "503");
        // Transient: retried, at most PUSH_RETRY_ATTEMPTS calls, then failed with its reason.
        let (d, sent) = run(vec![busy(), busy()], false).await;
        assert_eq!((d, sent.len()), (Delivery::Sent, 3));
        let (d, sent) = run(vec![busy(), busy(), busy(), busy()], false).await;
        assert_eq!(sent.len(), 3);
        assert!(
            matches!(d, Delivery::Unavailable { reason, .. } if reason == reason::PROVIDER_5XX)
        );
        // Gone and rejected: final after one call.
        assert_eq!(
            run(vec![Outcome::gone("410")], false).await,
            (
                Delivery::Gone {
                    detail: Redacted::new("410")
                },
                vec!["long".into()]
            )
        );
        let (d, sent) = run(vec![Outcome::rejected(reason::PROVIDER_4XX, "401")], false).await;
        assert!(matches!(d, Delivery::Failed { reason, .. } if reason == reason::PROVIDER_4XX));
        assert_eq!(sent.len(), 1);
        // A short Retry-After is waited for inline; a long one goes to the schedule.
        let short = Outcome::RetryAfter(Duration::from_millis(5));
        assert_eq!(run(vec![short], false).await.0, Delivery::Sent);
        let before = Utc::now();
        let (d, sent) = run(vec![Outcome::RetryAfter(Duration::from_secs(120))], false).await;
        assert_eq!(sent.len(), 1);
        assert!(
            matches!(d, Delivery::Later { at } if at >= before + chrono::Duration::seconds(120)),
            "{d:?}"
        );
        // Too large: resent once trimmed; too large again, or nothing to trim, is failed.
        let (d, sent) = run(vec![Outcome::TooLarge], true).await;
        assert_eq!(
            (d, sent),
            (Delivery::Sent, vec!["long".into(), "l…".into()])
        );
        let (d, sent) = run(vec![Outcome::TooLarge, Outcome::TooLarge], true).await;
        assert_eq!(sent.len(), 2);
        assert!(matches!(d, Delivery::Failed { reason, .. } if reason == reason::PROVIDER_4XX));
        let (d, sent) = run(vec![Outcome::TooLarge], false).await;
        assert_eq!(sent.len(), 1);
        assert!(matches!(d, Delivery::Failed { reason, .. } if reason == reason::PROVIDER_4XX));
    }
}
