//! The open-loop sender: messages `range` at `rate` per second on a fixed schedule, each to a
//! random user, each carrying its index in `data.e2e`. A send never waits for an earlier one's
//! answer (open loop), so a slow server shows as latency and queueing, never as a lower rate.
//! Bodies are rendered before the clock starts; the schedule only spawns requests.
//!
//! Each request is stamped in the [`Ledger`]: scheduled, sent (just before the POST), answered,
//! and its HTTP status. An accepted status whose body is an error (Centrifugo's API answers `200`
//! with `{"error":…}`) is recorded as `500`, so it never counts as accepted.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::fleet::{Ledger, TRANSPORT_ERROR};

/// Where the messages go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST /v1/notifications` with a service token, `tokens` used in turn (so no sender
    /// reaches the api's per-sender limit).
    Herald { url: String, tokens: Vec<String> },
    /// `POST /api/publish` with `X-API-Key`, to the user's personal channel `#<user>`.
    Centrifugo { url: String, api_key: String },
}

impl Target {
    fn request(&self, http: &reqwest::Client, i: usize, user: &str) -> reqwest::RequestBuilder {
        match self {
            Target::Herald { url, tokens } => {
                let body = json!({
                    "userId": user,
                    "type": "bench.e2e",
                    "title": format!("End-to-end #{i}"),
                    "body": "Measuring POST to frame.",
                    "channels": ["IN_APP"],
                    "data": {"e2e": i},
                });
                http.post(url)
                    .bearer_auth(&tokens[i % tokens.len()])
                    .header("content-type", "application/json")
                    .body(body.to_string())
            }
            Target::Centrifugo { url, api_key } => {
                let body = json!({
                    "channel": format!("#{user}"),
                    "data": {"title": format!("End-to-end #{i}"), "body": "Measuring POST to frame.", "e2e": i},
                });
                http.post(url)
                    .header("x-api-key", api_key)
                    .header("content-type", "application/json")
                    .body(body.to_string())
            }
        }
    }
}

/// An HTTP client for the sender: a pool large enough for every request in flight.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

/// Sends messages `range` at `rate` per second to random `users`; returns once every request
/// has been answered (or failed).
pub async fn send(
    http: &reqwest::Client,
    target: &Target,
    users: &[String],
    range: Range<usize>,
    rate: f64,
    ledger: &Arc<Ledger>,
) {
    let mut rng = rand::thread_rng();
    let requests: Vec<(usize, reqwest::RequestBuilder)> = range
        .map(|i| {
            let user = &users[rng.gen_range(0..users.len())];
            (i, target.request(http, i, user))
        })
        .collect();
    let error_in_body = matches!(target, Target::Centrifugo { .. });
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = tokio::time::Instant::now();
    let mut inflight = Vec::with_capacity(requests.len());
    for (n, (i, request)) in requests.into_iter().enumerate() {
        let due = start + period.mul_f64(n as f64);
        tokio::time::sleep_until(due).await;
        ledger.scheduled[i].store(ledger.stamp(due.into_std()), Ordering::Relaxed);
        let ledger = ledger.clone();
        inflight.push(tokio::spawn(async move {
            ledger.sent[i].store(ledger.stamp(Instant::now()), Ordering::Relaxed);
            let response = request.send().await;
            ledger.answered[i].store(ledger.stamp(Instant::now()), Ordering::Relaxed);
            let status = match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if status != ledger.accepted {
                        ledger.error(format!("#{i}: {status} {text}"));
                        status
                    } else if error_in_body && text.contains("\"error\"") {
                        ledger.error(format!("#{i}: {status} {text}"));
                        500
                    } else {
                        status
                    }
                }
                Err(e) => {
                    ledger.error(format!("#{i}: {e}"));
                    TRANSPORT_ERROR
                }
            };
            ledger.status[i].store(status, Ordering::Relaxed);
        }));
    }
    for task in futures::future::join_all(inflight).await {
        task.unwrap_or_else(|e| panic!("a request task failed: {e}"));
    }
}
