//! # The notification HTTP API
//!
//! One Lambda function behind API Gateway's HTTP API (payload format 2.0). API Gateway's JWT
//! authorizer verifies the token and checks per-route scopes; this function reads the verified
//! claims ([`shared::auth::Claims`]), checks them again, routes on method and path, and answers
//! JSON, or `application/problem+json` on every error.
//!
//! - [`routes`]: one module per resource (notifications, changes, preferences, health);
//! - [`http`]: request parsing and response building shared by the routes;
//! - [`validate`]: turning a create request into a [`shared::store::NewNotification`];
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the route annotations and types.
//!
//! Every committed change is published before the handler returns ([`shared::outbox::Publisher`]);
//! if Kafka does not acknowledge in time the request still succeeds and the outbox relay
//! publishes the change later.

pub mod http;
pub mod openapi;
pub mod routes;
pub mod validate;

use lambda_http::{Body, Request, Response};
use shared::config::{Env, InboxSettings, KafkaSettings, RedisSettings};
use shared::error::ApiError;
use shared::outbox::Publisher;
use shared::store::{InboxStore, KeySpace, RateLimiter, RedisConn};

/// Everything a request needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: InboxStore,
    pub publisher: Publisher,
    pub limiter: RateLimiter,
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] shared::config::ConfigError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Kafka(#[from] shared::bus::BusError),
}

impl Deps {
    /// Reads the configuration and connects. Fails, naming the variable, on missing settings.
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let inbox = InboxSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let keys = KeySpace::new(redis.key_prefix.clone());
        let bus = shared::bus::EventBus::new(&kafka)?;
        Ok(Self::new(conn, keys, inbox, bus))
    }

    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        inbox: InboxSettings,
        bus: shared::bus::EventBus,
    ) -> Self {
        let store = InboxStore::new(conn.clone(), keys.clone(), inbox);
        let publisher = Publisher::new(bus, store.clone());
        let limiter = RateLimiter::new(conn, keys);
        Deps {
            store,
            publisher,
            limiter,
        }
    }
}

/// The Lambda handler: routes the request and turns every error into problem+json.
pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, std::convert::Infallible> {
    let response = match routes::route(deps, &req).await {
        Ok(response) => response,
        Err(error) => {
            match &error {
                ApiError::Internal(cause) => {
                    tracing::error!(error = %cause, method = %req.method(), path = req.uri().path(), "request failed")
                }
                ApiError::Unavailable(detail) => tracing::warn!(detail, "dependency unavailable"),
                _ => tracing::debug!(%error, "request refused"),
            }
            http::problem(&error)
        }
    };
    Ok(response)
}
