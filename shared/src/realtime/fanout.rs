//! [`Fanout`]: one frame to every open connection of a user.
//!
//! Contract, per connection:
//! - past API Gateway's 2-hour cap (its `$disconnect` was lost): removed, not posted to;
//! - its token has expired: closed (`DELETE @connections/{id}`) and removed, not posted to;
//! - `GoneException`: that connection, and only that one, is removed, unless it connected less
//!   than `CONNECT_GRACE` ago: then it is still completing its handshake and is kept;
//! - a frame over 32 KB is never posted: the compact frame (ids and counts only) goes instead, and
//!   also after a `PayloadTooLargeException`;
//! - throttling is retried inside [`ConnectionsApi::post`]; any other failure is reported.
//!
//! Posts run concurrently, at most `WS_POST_CONCURRENCY` in flight per process across all users.

use std::sync::Arc;

use chrono::Utc;
use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::protocol::{Frame, FRAME_MAX_BYTES};
use crate::store::{Connection, ConnectionRegistry, StoreError, TenantScoped};

use super::gateway::{ConnectionsApi, PostOutcome};

/// What happened to one frame across a user's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutReport {
    /// Connections the frame was posted to.
    pub sent: usize,
    /// Connections found gone (and removed).
    pub gone: usize,
    /// Connections that answered `GoneException` inside their handshake grace: kept, not posted.
    pub connecting: usize,
    /// Connections closed because their token expired, or dropped as stale.
    pub closed: usize,
    /// Connections the post failed for; the first error.
    pub failed: usize,
    pub first_error: Option<String>,
    /// The compact form was sent to at least one connection.
    pub compacted: bool,
}

impl FanoutReport {
    /// Connections the user had when the frame arrived.
    pub fn connections(&self) -> usize {
        self.sent + self.gone + self.connecting + self.closed + self.failed
    }
}

/// Posts frames to a user's connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fanout {
    registry: ConnectionRegistry,
    api: ConnectionsApi,
    in_flight: Arc<Semaphore>,
}

enum One {
    Sent { compacted: bool },
    Gone,
    Connecting,
    Closed,
    Failed(String),
}

impl Fanout {
    pub fn new(registry: ConnectionRegistry, api: ConnectionsApi, concurrency: usize) -> Self {
        Fanout {
            registry,
            api,
            in_flight: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    pub fn registry(&self) -> &ConnectionRegistry {
        &self.registry
    }

    pub fn api(&self) -> &ConnectionsApi {
        &self.api
    }

    /// Posts `frame` to every connection of the user (of the fan-out's tenant:
    /// [`TenantScoped::for_tenant`]), reading them from the registry.
    pub async fn send_to_user(
        &self,
        user_id: &str,
        frame: &Frame,
    ) -> Result<FanoutReport, StoreError> {
        let connections = self.registry.connections(user_id).await?;
        Ok(self.send(user_id, &connections, frame).await)
    }

    /// Posts `frame` to these connections of the user.
    pub async fn send(
        &self,
        user_id: &str,
        connections: &[Connection],
        frame: &Frame,
    ) -> FanoutReport {
        let encoded = frame.encode();
        let (bytes, compacted) = if encoded.len() <= FRAME_MAX_BYTES {
            (encoded, false)
        } else {
            (frame.compact().encode(), true)
        };
        let now = Utc::now().timestamp_millis();
        let results = join_all(
            connections
                .iter()
                .map(|c| self.send_one(user_id, c, frame, (&bytes, compacted), now)),
        )
        .await;
        let mut report = FanoutReport::default();
        for result in results {
            match result {
                One::Sent { compacted } => {
                    report.sent += 1;
                    report.compacted |= compacted;
                }
                One::Gone => report.gone += 1,
                One::Connecting => report.connecting += 1,
                One::Closed => report.closed += 1,
                One::Failed(e) => {
                    report.failed += 1;
                    report.first_error.get_or_insert(e);
                }
            }
        }
        report
    }

    async fn send_one(
        &self,
        user_id: &str,
        connection: &Connection,
        frame: &Frame,
        (bytes, mut compacted): (&[u8], bool),
        now_ms: i64,
    ) -> One {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return One::Failed("fan-out is shutting down".into());
        };
        let id = connection.id.as_str();
        if connection.stale(now_ms) {
            self.forget(user_id, id).await;
            return One::Closed;
        }
        if connection.token_expired(now_ms) {
            if let Err(e) = self.api.close(id).await {
                tracing::warn!(connection = id, error = %e, "closing an expired connection failed");
            }
            self.forget(user_id, id).await;
            return One::Closed;
        }
        let mut outcome = self.api.post(id, bytes).await;
        if outcome == PostOutcome::TooLarge && !compacted {
            compacted = true;
            outcome = self.api.post(id, &frame.compact().encode()).await;
        }
        match outcome {
            PostOutcome::Sent => One::Sent { compacted },
            PostOutcome::Gone if connection.connecting(now_ms) => One::Connecting,
            PostOutcome::Gone => {
                self.forget(user_id, id).await;
                One::Gone
            }
            PostOutcome::TooLarge => One::Failed("frame too large even compacted".into()),
            PostOutcome::Failed(e) => One::Failed(e),
        }
    }

    /// Removes a connection from the registry; a failure only delays that to its TTL.
    async fn forget(&self, user_id: &str, connection_id: &str) {
        if let Err(e) = self.registry.remove(user_id, connection_id).await {
            tracing::warn!(connection = connection_id, error = %e, "removing a connection failed");
        }
    }
}

/// The fan-out's registry names the tenant's connections.
impl TenantScoped for Fanout {
    fn key_space(&mut self) -> &mut crate::store::KeySpace {
        self.registry.key_space()
    }
}
