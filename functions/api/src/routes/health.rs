//! `GET /health`: can this function reach Redis and Kafka, and how fast. No auth. `503` when
//! Redis (the store of record) is unreachable; Kafka down is `degraded` but `200`, because
//! creates still succeed then (the outbox relay publishes later).

use std::time::{Duration, Instant};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{http, Deps};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, `degraded` (Kafka unreachable) or `down` (Redis unreachable).
    pub status: String,
    pub redis: Check,
    pub kafka: Check,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub ok: bool,
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn check(result: Result<Duration, String>, started: Instant) -> Check {
    let latency_ms = (result
        .as_ref()
        .map_or_else(|_| started.elapsed(), |d| *d)
        .as_secs_f64()
        * 1e6)
        .round()
        / 1e3;
    Check {
        ok: result.is_ok(),
        latency_ms,
        error: result.err(),
    }
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(deps: &Deps) -> Response<Body> {
    let redis_probe = async {
        let started = Instant::now();
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut deps.store.conn()).await;
        (
            pong.map(|_| started.elapsed()).map_err(|e| e.to_string()),
            started,
        )
    };
    let kafka_probe = async {
        let started = Instant::now();
        (
            deps.publisher
                .bus()
                .health(Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string()),
            started,
        )
    };
    let ((redis, rs), (kafka, ks)) = tokio::join!(redis_probe, kafka_probe);
    let (redis, kafka) = (check(redis, rs), check(kafka, ks));
    let (status, code) = match (redis.ok, kafka.ok) {
        (true, true) => ("ok", StatusCode::OK),
        (true, false) => ("degraded", StatusCode::OK),
        (false, _) => ("down", StatusCode::SERVICE_UNAVAILABLE),
    };
    http::json(
        code,
        &Health {
            status: status.into(),
            redis,
            kafka,
        },
    )
}
