//! [`ConnectionsApi`]: posting frames to, and closing, WebSocket connections through API
//! Gateway's `@connections` management API: `POST` / `DELETE {endpoint}/@connections/{id}`, signed
//! with SigV4 (service `execute-api`), exactly the requests `aws-sdk-apigatewaymanagement` sends.
//!
//! The requests are made here, on one pooled HTTP client (keep-alive: one reused connection per
//! endpoint in the usual case), and signed with `aws-sigv4` directly rather than through the SDK:
//! the SDK's per-call orchestration (interceptors, endpoint resolution, retry classification,
//! identity caches) cost more CPU than the post itself (measured with `scripts/bench cpu`, see
//! README). The wire format and the answers' meaning are the SDK's.
//!
//! Every post first takes a token from a per-process [`TokenBucket`] (API Gateway throttles
//! `@connections` per account, shared by every function), and a throttled post
//! (`LimitExceededException`, 429) is retried with exponential backoff and jitter. Nothing else is
//! retried, so each attempt is counted here exactly once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::config::{ConfigError, ConnectionsSettings, Env, RealtimeSettings};

/// The SigV4 service name of API Gateway's management API.
const SIGNING_NAME: &str = "execute-api";

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
    http: reqwest::Client,
    /// `{endpoint}/@connections/` (the endpoint includes the stage).
    base: Arc<str>,
    identity: Identity,
    region: Arc<str>,
    bucket: Arc<TokenBucket>,
    retries: u32,
}

impl std::fmt::Debug for ConnectionsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// How one request ended: an HTTP status with API Gateway's error type, or no answer.
enum Answer {
    Status(reqwest::StatusCode, String),
    NoAnswer(String),
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
        let http = reqwest::Client::builder()
            .timeout(settings.post_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        ConnectionsApi {
            http,
            base: format!("{}/@connections/", endpoint.trim_end_matches('/')).into(),
            identity: credentials.into(),
            region: region.into(),
            bucket: Arc::new(TokenBucket::new(settings.post_rate, settings.post_burst)),
            retries: settings.post_retries,
        }
    }

    /// Posts one frame; retries throttling with backoff.
    pub async fn post(&self, connection_id: &str, data: &[u8]) -> PostOutcome {
        let mut attempt = 0;
        loop {
            self.bucket.acquire().await;
            let error = match self.send("POST", connection_id, data).await {
                Answer::Status(status, _) if status.is_success() => return PostOutcome::Sent,
                Answer::Status(status, kind) => {
                    if status == reqwest::StatusCode::GONE || kind == "GoneException" {
                        return PostOutcome::Gone;
                    }
                    if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE
                        || kind == "PayloadTooLargeException"
                    {
                        return PostOutcome::TooLarge;
                    }
                    let throttled = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || kind == "LimitExceededException";
                    let error = format!("{status} {kind}");
                    if !throttled || attempt >= self.retries {
                        return PostOutcome::Failed(error);
                    }
                    error
                }
                Answer::NoAnswer(e) => return PostOutcome::Failed(e),
            };
            attempt += 1;
            tracing::debug!(
                connection = connection_id,
                attempt,
                error,
                "throttled; backing off"
            );
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Closes a connection (`DELETE @connections/{id}`). A connection that is already gone counts
    /// as closed.
    pub async fn close(&self, connection_id: &str) -> Result<(), String> {
        self.bucket.acquire().await;
        match self.send("DELETE", connection_id, &[]).await {
            Answer::Status(status, _) if status.is_success() => Ok(()),
            Answer::Status(status, kind)
                if status == reqwest::StatusCode::GONE || kind == "GoneException" =>
            {
                Ok(())
            }
            Answer::Status(status, kind) => Err(format!("{status} {kind}")),
            Answer::NoAnswer(e) => Err(e),
        }
    }

    /// One signed request to `@connections/{id}`.
    async fn send(&self, method: &str, connection_id: &str, body: &[u8]) -> Answer {
        let url = format!("{}{}", self.base, encode_label(connection_id));
        let mut request = match http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(body.to_vec())
        {
            Ok(r) => r,
            Err(e) => return Answer::NoAnswer(format!("request: {e}")),
        };
        if let Err(e) = self.sign(&mut request) {
            return Answer::NoAnswer(format!("signing: {e}"));
        }
        let request = match reqwest::Request::try_from(request) {
            Ok(r) => r,
            Err(e) => return Answer::NoAnswer(crate::error::chain(&e)),
        };
        match self.http.execute(request).await {
            Ok(response) => {
                let kind = response
                    .headers()
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    // The type may carry a suffix after ':' (`GoneException:http://...`).
                    .map(|v| v.split(':').next().unwrap_or(v).to_owned())
                    .unwrap_or_default();
                Answer::Status(response.status(), kind)
            }
            Err(e) => Answer::NoAnswer(crate::error::chain(&e)),
        }
    }

    /// Adds the SigV4 headers (`authorization`, `x-amz-date`, and the session token if any).
    fn sign(
        &self,
        request: &mut http::Request<Vec<u8>>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(request.body()),
        )?;
        let (instructions, _signature) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

/// A connection id as one path segment: every byte but the unreserved ones percent-encoded, as
/// the SDK encodes its `{ConnectionId}` label (ids end in `=`).
fn encode_label(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 6);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn connection_ids_are_one_encoded_path_segment() {
        assert_eq!(encode_label("L0SM9cOFvHcCIhw="), "L0SM9cOFvHcCIhw%3D");
        assert_eq!(encode_label("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 0..20 {
            assert!(backoff(attempt) <= Duration::from_millis(2_000));
        }
        assert!(backoff(1) <= Duration::from_millis(100));
    }
}
