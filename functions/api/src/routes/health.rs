//! Health, in two answers:
//!
//! - `GET /health` (public, no token): liveness. Always `200 {"status": "ok"}` once the function
//!   runs; it touches no dependency and reveals nothing, so anyone may poll it.
//! - `GET /v1/health` (scope `health:read`): readiness. Can this function reach Redis and Kafka,
//!   and how fast. `503` when Redis (the store of record) is unreachable; Kafka down is
//!   `degraded` but `200`, because creates still succeed then (the outbox relay publishes later).
//!   A failed check says only `unreachable`; its cause goes to the log. The Kafka check (a
//!   metadata request) is cached for [`KAFKA_CHECK_TTL`], so polling it costs the cluster
//!   nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::auth::SCOPE_HEALTH;
use shared::error::ApiError;
use tokio::sync::Mutex;
use utoipa::ToSchema;

use crate::{http, Deps};

/// How long one Kafka check answers for every readiness request.
pub const KAFKA_CHECK_TTL: Duration = Duration::from_secs(10);
/// How long a check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The liveness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

/// The readiness answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, `degraded` (Kafka unreachable) or `down` (Redis unreachable).
    pub status: String,
    pub redis: Check,
    pub kafka: Check,
}

/// One dependency's check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub ok: bool,
    pub latency_ms: f64,
    /// `unreachable` when the check failed (the cause is logged, never returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the check ran: a cached Kafka check keeps its time.
    pub checked_at: DateTime<Utc>,
}

impl Check {
    fn from_probe<E: std::fmt::Display>(
        dependency: &str,
        result: Result<Duration, E>,
        started: Instant,
    ) -> Check {
        let latency = match &result {
            Ok(d) => *d,
            Err(_) => started.elapsed(),
        };
        if let Err(e) = &result {
            tracing::warn!(dependency, error = %e, "health check failed");
        }
        Check {
            ok: result.is_ok(),
            latency_ms: (latency.as_secs_f64() * 1e6).round() / 1e3,
            error: result.err().map(|_| "unreachable".to_owned()),
            checked_at: Utc::now(),
        }
    }
}

/// The last Kafka check, reused for its TTL. One check runs at a time; callers that arrive
/// meanwhile wait for it and share its result.
#[derive(Debug, Clone)]
pub struct KafkaCheckCache {
    ttl: Duration,
    last: Arc<Mutex<Option<(Instant, Check)>>>,
}

impl KafkaCheckCache {
    pub fn new(ttl: Duration) -> Self {
        KafkaCheckCache {
            ttl,
            last: Arc::new(Mutex::new(None)),
        }
    }

    async fn get(&self, deps: &Deps) -> Check {
        let mut last = self.last.lock().await;
        if let Some((at, check)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return check.clone();
            }
        }
        let started = Instant::now();
        let result = deps.publisher.bus().health(CHECK_TIMEOUT).await;
        let check = Check::from_probe("kafka", result, started);
        *last = Some((Instant::now(), check.clone()));
        check
    }
}

impl Default for KafkaCheckCache {
    fn default() -> Self {
        Self::new(KAFKA_CHECK_TTL)
    }
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The function runs; nothing else is checked or told", body = Liveness)))]
pub async fn liveness() -> Response<Body> {
    http::json(
        StatusCode::OK,
        &Liveness {
            status: "ok".into(),
        },
    )
}

#[utoipa::path(get, path = "/v1/health", tag = "operations",
    responses(
        (status = 200, description = "Redis reachable; `degraded` when Kafka is not", body = Health),
        (status = 401, body = shared::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `health:read`", body = shared::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unreachable", body = Health)),
    security(("jwt" = ["health:read"])))]
pub async fn readiness(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_HEALTH)?;
    let redis_probe = async {
        let started = Instant::now();
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut deps.store.conn()).await;
        Check::from_probe("redis", pong.map(|_| started.elapsed()), started)
    };
    let (redis, kafka) = tokio::join!(redis_probe, deps.kafka_check.get(deps));
    let (status, code) = match (redis.ok, kafka.ok) {
        (true, true) => ("ok", StatusCode::OK),
        (true, false) => ("degraded", StatusCode::OK),
        (false, _) => ("down", StatusCode::SERVICE_UNAVAILABLE),
    };
    Ok(http::json(
        code,
        &Health {
            status: status.into(),
            redis,
            kafka,
        },
    ))
}
