//! # Herald's shared core
//!
//! Everything the functions share, organised by concern:
//!
//! - [`model`]: notifications, channels, priorities, counts, preferences, delivery outcomes;
//! - [`protocol`]: the Kafka topic table and the event envelope (defined once);
//! - [`limits`]: the API's size and count limits (defined once);
//! - [`store`]: the Redis store of record (inbox, counts, change log, preferences, rate limits);
//! - [`bus`]: the idempotent Kafka producer and topic creation;
//! - [`outbox`]: publishing committed changes, and the relay that guarantees they reach Kafka;
//! - [`auth`]: caller identity (API Gateway claims, JWKS verification);
//! - [`config`]: settings from the environment, read in one place;
//! - [`error`]: RFC 9457 problem+json errors;
//! - [`telemetry`]: structured JSON logs.

pub mod auth;
pub mod bus;
pub mod config;
pub mod error;
pub mod limits;
pub mod model;
pub mod outbox;
pub mod protocol;
pub mod store;
pub mod telemetry;
