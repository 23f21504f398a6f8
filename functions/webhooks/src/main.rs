//! Cold start: logs, configuration, the Redis connection and the outbound client; then one Kafka
//! batch (or one drain of the retry schedule) per invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

// One invocation at a time: a current-thread runtime keeps the handler, the Redis connection's
// driver, the outbound client and the Runtime API client on one thread, with no cross-thread
// wake-ups per invocation (as in delivery and analytics; measured with `scripts/bench cpu`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = webhooks::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<_>| {
        webhooks::handle(deps, event)
    }))
    .await
}
