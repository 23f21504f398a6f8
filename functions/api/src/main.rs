//! Cold start: logs, configuration, clients; then serve requests.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::Env;

// One invocation at a time: a current-thread runtime keeps the handler, the Redis connection's
// driver and the Runtime API client on one thread, with no cross-thread wake-ups per request
// (as in analytics; measured with `scripts/bench cpu`). librdkafka's own threads still run, and
// complete the delivery futures through wakers, which a current-thread runtime accepts.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = api::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |req: Request| api::handle(deps, req))).await
}
