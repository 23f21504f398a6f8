//! The Redis store of record: inboxes, counts, change logs, preferences, the outbox's dirty-user
//! index, the rate limiters, the registry of open WebSocket connections and the analytics
//! counters ([`analytics`]), and for the off-app channels the users' contacts and push
//! subscriptions ([`contacts`]), their phones ([`devices`]), what `push` did and must retry
//! ([`ledger`]), the escalation steps it decides ([`escalations`]) and its providers' circuit
//! breakers ([`breaker`]); erasing a user ([`erase`]); the webhook registry and each webhook's
//! delivery ledger, queues and retry schedule ([`webhooks`]); scheduled sends and the engagement
//! histograms that time them ([`schedule`]); topics, their members and
//! broadcasts ([`topics`]).
//!
//! Guarantees:
//! - every user mutation is one Lua script on the user's hash slot (`{u:<userId>}`), so it is
//!   atomic on a single Redis and on Redis Cluster alike;
//! - counts are exact, updated in the same script as every change, and versioned by the user's
//!   `seq`;
//! - every mutation appends its change to the user's capped change log, marked unpublished; the
//!   cap never trims an unpublished change;
//! - the user is marked in the outbox's dirty-user index *before* the mutation, so a crash between
//!   the two leaves only a harmless mark (see [`crate::outbox`]).

pub mod analytics;
pub mod breaker;
mod conn;
pub mod connections;
pub mod contacts;
pub mod devices;
pub mod erase;
pub mod escalations;
pub mod inbox;
pub mod keys;
pub mod ledger;
pub mod outbox_index;
pub mod ratelimit;
mod record;
pub mod schedule;
mod scripts;
pub mod topics;
pub mod webhooks;

pub use analytics::AnalyticsStore;
pub use breaker::{Admission, ProviderBreaker};
pub use conn::RedisConn;
pub use connections::{Connection, ConnectionRegistry, DeliveryClaim};
pub use contacts::{ContactBook, StoredSubscription, SubscribeOutcome};
pub use devices::{DeviceBook, RegisterOutcome, StoredDevice};
pub use erase::{Erased, Eraser};
pub use escalations::{EscalationBook, StepDecision};
pub use inbox::{
    ChangesPage, CreateOutcome, InboxStore, ListQuery, Marked, NewNotification, Page, StatusFilter,
    UpdateOutcome,
};
pub use keys::KeySpace;
pub use ledger::{ChannelView, DueEntry, PushLedger, SendRecord};
pub use outbox_index::OutboxIndex;
pub use ratelimit::{whole_seconds, RateDecision, RateLimiter};
pub use record::Change;
pub use schedule::{
    AddOutcome, BroadcastStart, DueJob, EngagementStore, ScheduleStore, ScheduledJob,
    ScheduledState, ScheduledStatus,
};
pub use scripts::{catalog as script_catalog, CatalogEntry as ScriptCatalogEntry};
pub use topics::{Broadcast, BroadcastStatus, ChunkCounts, TopicStore};
pub use webhooks::{Enqueued, LedgerEntry, LedgerState, WebhookStore};

/// A store that names one tenant's keys. [`TenantScoped::for_tenant`] is the same store (same
/// connection and settings) naming `tenant`'s keys instead: what a request handler builds from
/// its caller's claims, and a consumer from each record's `tenant`. Cheap (a few clones); a store
/// built with [`KeySpace::new`] is the default tenant's.
pub trait TenantScoped: Clone {
    fn key_space(&mut self) -> &mut KeySpace;

    fn for_tenant(&self, tenant: &crate::tenant::Tenant) -> Self {
        let mut scoped = self.clone();
        let keys = scoped.key_space();
        *keys = keys.for_tenant(tenant);
        scoped
    }
}

/// [`TenantScoped`] for stores whose only keys are their `keys` field.
macro_rules! tenant_scoped {
    ($($store:ty),* $(,)?) => {$(
        impl $crate::store::TenantScoped for $store {
            fn key_space(&mut self) -> &mut $crate::store::KeySpace {
                &mut self.keys
            }
        }
    )*};
}

tenant_scoped!(
    AnalyticsStore,
    ConnectionRegistry,
    ContactBook,
    DeviceBook,
    EscalationBook,
    PushLedger,
    OutboxIndex,
    RateLimiter,
    ScheduleStore,
    EngagementStore,
    TopicStore,
    WebhookStore,
);

impl TenantScoped for InboxStore {
    fn key_space(&mut self) -> &mut KeySpace {
        self.keys_mut()
    }

    fn for_tenant(&self, tenant: &crate::tenant::Tenant) -> Self {
        self.scoped(tenant)
    }
}

impl TenantScoped for Eraser {
    fn key_space(&mut self) -> &mut KeySpace {
        self.keys_mut()
    }

    fn for_tenant(&self, tenant: &crate::tenant::Tenant) -> Self {
        self.scoped(tenant)
    }
}

/// A store operation that failed for an infrastructure reason (retry later), or because stored
/// data could not be read back (a bug or tampering).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Does the failure pass by itself, so that the same request is worth retrying shortly?
    /// Callers answer 503 with `Retry-After` (HTTP) or an `unavailable` frame (WebSocket) for
    /// these, and 500 for the rest. See [`redis_transient`].
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Redis(e) => redis_transient(e),
            StoreError::Corrupt(_) => false,
        }
    }
}

/// Is this Redis failure one that passes without anyone changing the request or the data?
///
/// - the connection: refused, dropped, timed out, any I/O error, no connection to a cluster
///   node;
/// - the server, retryable by design: `LOADING` (a restart replaying its AOF), `TRYAGAIN`
///   (a slot migrating), `CLUSTERDOWN`, `MASTERDOWN`, and `READONLY` (a write that reached a
///   master demoted by a failover);
/// - a transaction or pipeline that failed because one of its commands met one of those.
///
/// Everything else (a wrong type, a script error, `NOPERM`, `OOM`) is not transient.
pub fn redis_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    let retryable = |kind: Option<ServerErrorKind>| {
        matches!(
            kind,
            Some(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
    };
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    match e.kind() {
        ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(kind) if retryable(Some(kind)) => true,
        // EXECABORT, or a pipeline whose first error is not one of ours: look at every error.
        _ => e
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, s)| retryable(s.kind()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a client gets for a RESP error reply, e.g. `-LOADING Redis is loading…`.
    fn reply(line: &str) -> redis::RedisError {
        match redis::parse_redis_value(format!("{line}\r\n").as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("{line} did not parse as an error reply: {other:?}"),
        }
    }

    #[test]
    fn conditions_that_pass_by_themselves_are_transient() {
        for line in [
            "-LOADING Redis is loading the dataset in memory",
            "-TRYAGAIN Multiple keys request during rehashing of slot",
            "-CLUSTERDOWN The cluster is down",
            "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "-READONLY You can't write against a read only replica.",
        ] {
            assert!(redis_transient(&reply(line)), "{line}");
            assert!(StoreError::Redis(reply(line)).is_transient(), "{line}");
        }
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::TimedOut,
        ] {
            let e = redis::RedisError::from(std::io::Error::from(kind));
            assert!(redis_transient(&e), "{kind:?}");
        }
        let no_node =
            redis::RedisError::from((redis::ErrorKind::ClusterConnectionNotFound, "no node"));
        assert!(redis_transient(&no_node));
    }

    #[test]
    fn mistakes_and_bad_data_are_not_transient() {
        for line in [
            "-ERR wrong number of arguments for 'get' command",
            "-WRONGTYPE Operation against a key holding the wrong kind of value",
            "-NOPERM this user has no permissions to run the 'flushall' command",
            "-OOM command not allowed when used memory > 'maxmemory'.",
            "-NOSCRIPT No matching script.",
        ] {
            assert!(!redis_transient(&reply(line)), "{line}");
        }
        assert!(!StoreError::Corrupt("bad json".into()).is_transient());
    }
}
