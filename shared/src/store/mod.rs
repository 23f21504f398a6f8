//! The Redis store of record: inboxes, counts, change logs, preferences, the outbox's dirty-user
//! index, the rate limiters, the registry of open WebSocket connections and the analytics
//! counters ([`analytics`]), and for the off-app channels the users' contacts and push
//! subscriptions ([`contacts`]) and what `push` did and must retry ([`ledger`]).
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
mod conn;
pub mod connections;
pub mod contacts;
pub mod inbox;
pub mod keys;
pub mod ledger;
pub mod outbox_index;
pub mod ratelimit;
mod record;
mod scripts;

pub use analytics::AnalyticsStore;
pub use conn::RedisConn;
pub use connections::{Connection, ConnectionRegistry, DeliveryView};
pub use contacts::{ContactBook, StoredSubscription, SubscribeOutcome};
pub use inbox::{
    ChangesPage, CreateOutcome, InboxStore, ListQuery, NewNotification, Page, StatusFilter,
    UpdateOutcome,
};
pub use keys::KeySpace;
pub use ledger::{ChannelView, DueEntry, PushLedger, SendRecord};
pub use outbox_index::OutboxIndex;
pub use ratelimit::{RateDecision, RateLimiter};
pub use record::Change;

/// A store operation that failed for an infrastructure reason (retry later), or because stored
/// data could not be read back (a bug or tampering).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
