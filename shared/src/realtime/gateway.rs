//! [`ConnectionsApi`]: posting frames to, and closing, WebSocket connections through API
//! Gateway's `@connections` management API, with the real `aws-sdk-apigatewaymanagement` client.
//!
//! Every post first takes a token from a per-process [`TokenBucket`] (API Gateway throttles
//! `@connections` per account, shared by every function), and a throttled post
//! (`LimitExceededException`) is retried with exponential backoff and jitter. The SDK's own retries
//! are off, so each attempt is counted here exactly once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;

use crate::config::{ConfigError, ConnectionsSettings, Env, RealtimeSettings};

/// The result of posting one frame to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Sent,
    /// `GoneException` (410): the connection is closed; remove it.
    Gone,
    /// `PayloadTooLargeException` (413): send a smaller frame.
    TooLarge,
    /// Throttled after every retry, forbidden, timed out or unreachable.
    Failed(String),
}

/// The `@connections` client. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionsApi {
    client: Client,
    bucket: Arc<TokenBucket>,
    retries: u32,
}

impl std::fmt::Debug for ConnectionsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsApi").finish_non_exhaustive()
    }
}

impl ConnectionsApi {
    /// A client for [`ConnectionsSettings`] (read by `config`: the endpoint and the identity).
    pub fn connect(connections: &ConnectionsSettings, settings: &RealtimeSettings) -> Self {
        Self::new(
            &connections.endpoint,
            connections.aws.credentials(),
            connections.aws.region.clone(),
            settings,
        )
    }

    /// [`Self::connect`] with [`ConnectionsSettings`] read from `env` (tests and tools).
    pub fn from_env(env: &Env, settings: &RealtimeSettings) -> Result<Self, ConfigError> {
        Ok(Self::connect(
            &ConnectionsSettings::from_env(env, settings)?,
            settings,
        ))
    }

    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        region: String,
        settings: &RealtimeSettings,
    ) -> Self {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .endpoint_url(endpoint)
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(settings.post_timeout)
                    .build(),
            )
            .http_client(crate::aws::aws_https_client())
            .build();
        ConnectionsApi {
            client: Client::from_conf(config),
            bucket: Arc::new(TokenBucket::new(settings.post_rate, settings.post_burst)),
            retries: settings.post_retries,
        }
    }

    /// Posts one frame; retries throttling with backoff.
    pub async fn post(&self, connection_id: &str, data: &[u8]) -> PostOutcome {
        let mut attempt = 0;
        loop {
            self.bucket.acquire().await;
            let result = self
                .client
                .post_to_connection()
                .connection_id(connection_id)
                .data(Blob::new(data))
                .send()
                .await;
            let error = match result {
                Ok(_) => return PostOutcome::Sent,
                Err(SdkError::ServiceError(e)) => {
                    let e = e.into_err();
                    if e.is_gone_exception() {
                        return PostOutcome::Gone;
                    }
                    if e.is_payload_too_large_exception() {
                        return PostOutcome::TooLarge;
                    }
                    if !e.is_limit_exceeded_exception() || attempt >= self.retries {
                        return PostOutcome::Failed(format!("{e}"));
                    }
                    e
                }
                Err(other) => return PostOutcome::Failed(describe(&other)),
            };
            attempt += 1;
            tracing::debug!(connection = connection_id, attempt, error = %error, "throttled; backing off");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Closes a connection (`DELETE @connections/{id}`). A connection that is already gone counts
    /// as closed.
    pub async fn close(&self, connection_id: &str) -> Result<(), String> {
        self.bucket.acquire().await;
        match self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_gone_exception() => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }
}

fn describe<E: std::error::Error + 'static, R: std::fmt::Debug>(e: &SdkError<E, R>) -> String {
    crate::error::chain(e)
}

/// Exponential backoff with full jitter: a random wait in `[0, 50 ms × 2^attempt]`, capped at 2 s.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = 50u64.saturating_mul(1 << attempt.min(10)).min(2_000);
    Duration::from_millis(rand::random::<u64>() % (ceiling + 1))
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token, waiting for it when the bucket is empty.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens =
                    (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bucket_allows_its_burst_then_its_rate() {
        let bucket = TokenBucket::new(100, 10);
        let start = Instant::now();
        for _ in 0..15 {
            bucket.acquire().await;
        }
        // The 5 tokens beyond the burst come at 100/s: at least 50 ms (less a refill margin).
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 0..20 {
            assert!(backoff(attempt) <= Duration::from_millis(2_000));
        }
        assert!(backoff(1) <= Duration::from_millis(100));
    }
}
