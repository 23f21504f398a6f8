//! Cold start: logs, configuration, clients; then relay on every scheduled invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

// One invocation at a time: a current-thread runtime keeps the handler, the Redis connection's
// driver and the Runtime API client on one thread, with no cross-thread wake-ups per request
// (as in analytics; measured with `scripts/bench cpu`). librdkafka's own threads still run, and
// complete the delivery futures through wakers, which a current-thread runtime accepts.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = outbox_relay::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<_>| {
        outbox_relay::handle(deps, event)
    }))
    .await
}
