//! # devstack: Herald's AWS on one machine
//!
//! One process that plays the AWS services Herald runs on, wired from `template.yaml`:
//!
//! - [`template`]: reads the SAM template (intrinsics included) into a resolved [`template::Stack`];
//! - [`lambda`]: runs each function's real binary against a local Lambda Runtime API, on demand and
//!   concurrently, and serves the Lambda Invoke API;
//! - [`http_gateway`]: API Gateway HTTP API (payload 2.0) with its JWT authorizer and CORS;
//! - [`jwt`]: the local token issuer (key pair, discovery, JWKS, signed development tokens);
//! - [`token`]: the `token` command (a development token, of a tenant with `--tenant`);
//! - [`push_keys`]: the VAPID key pair and unsubscribe key the off-app channels use locally;
//! - [`ws_gateway`]: API Gateway WebSocket API (route selection, `$connect`/`$disconnect`, limits)
//!   and its `@connections` management API;
//! - [`kafka`]: the embedded broker (librdkafka's mock cluster) or an external one, and the Kafka
//!   event-source mappings that feed functions;
//! - [`redis`]: an external Redis, or a `redis-server` launched with AOF in the data folder;
//! - [`schedule`]: `rate(...)` schedules;
//! - [`site`]: the demo page's files (the `web/` folder), served where no HTTP route matches;
//! - [`demo`]: the demo page's session and send endpoints, on the HTTP port (they call the HTTP API
//!   through [`http_gateway::dispatch`], as a client would);
//! - [`config`]: devstack's own settings (flags and `DEVSTACK_*` variables), read in one place;
//! - [`stack`]: starts all of the above in order and stops them on Ctrl-C.

pub mod config;
pub mod demo;
pub mod http_gateway;
pub mod jwt;
pub mod kafka;
pub mod lambda;
mod percent;
pub mod push_keys;
pub mod redis;
pub mod schedule;
mod secret_file;
pub mod site;
pub mod stack;
pub mod template;
pub mod token;
pub mod ws_gateway;
