//! # Herald's shared core
//!
//! Everything the functions share, organised by concern:
//!
//! - [`model`]: notifications, channels, priorities, counts, preferences, delivery outcomes;
//! - [`protocol`]: the Kafka topic table and the event envelope (defined once);
//! - [`escalation`], [`digest`]: the timed workflows a create may ask for (escalation when
//!   unread, digests), their limits and shapes;
//! - [`limits`]: the API's size and count limits (defined once);
//! - [`store`]: the Redis store of record (inbox, counts, change log, preferences, rate limits);
//!   every Lua script is registered in `store/scripts.rs`;
//! - [`bus`]: the idempotent Kafka producer and topic creation;
//! - [`addresses`]: where a user is reached off-app: push subscriptions, contacts and one-click
//!   unsubscribe tokens (the channel itself is [`model::Channel`]);
//! - [`egress`]: the outbound policy for requests to user-supplied URLs (https, public addresses
//!   after DNS resolution, no redirects) and the one client that enforces it;
//! - [`aws`]: the function's AWS identity, the one HTTPS client of every AWS SDK client, MSK
//!   cluster ARNs (reads nothing; `config` builds the settings);
//! - [`msk`]: Amazon MSK: IAM authentication (OAUTHBEARER tokens) and bootstrap brokers from a
//!   cluster ARN;
//! - [`outbox`]: publishing committed changes, and the relay that guarantees they reach Kafka;
//! - [`schedule`]: scheduled sends (`sendAt`), the best moment to send, and firing due ones;
//! - [`realtime`]: posting frames to a user's WebSocket connections (`@connections`);
//! - [`auth`]: caller identity (API Gateway claims, JWKS verification);
//! - [`tenant`]: the tenant a caller, a record or a worker-set member belongs to;
//! - [`config`]: settings from the environment, read in one place, one file per component
//!   (`config/`), every type re-exported as `shared::config::X`;
//! - [`secrets`]: settings whose values live in Secrets Manager, resolved at cold start;
//! - [`error`]: RFC 9457 problem+json errors;
//! - [`telemetry`]: structured JSON logs;
//! - [`redact`]: personal data and secrets out of log lines (provider text, addresses);
//! - [`metrics`]: CloudWatch metrics as Embedded Metric Format lines;
//! - [`adapter`]: the contract every off-app sender implements and the one classification of a
//!   provider's answer;
//! - [`trigger`]: Kafka-triggered functions' events and partial batch responses;
//! - [`webhooks`]: outbound webhooks: event types, registration rules, secrets, messages and
//!   their Standard Webhooks signature.

pub mod adapter;
pub mod addresses;
pub mod auth;
pub mod aws;
pub mod bus;
pub mod config;
pub mod devices;
pub mod digest;
pub mod egress;
pub mod error;
pub mod escalation;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod msk;
pub mod outbox;
pub mod protocol;
pub mod realtime;
pub mod redact;
pub mod schedule;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod trigger;
pub mod webhooks;
