//! Cold start: logs, configuration, the Redis connection; then one Kafka batch per invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

// One invocation at a time: a current-thread runtime keeps the handler and the Redis connection's
// driver on one thread, with no cross-thread wake-ups (measured faster in `bench/benches/analytics.rs`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = analytics::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<_>| {
        analytics::handle(deps, event)
    }))
    .await
}
