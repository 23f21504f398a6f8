//! Cold start: logs, configuration, the Redis connection and the outbound client; then one Kafka
//! batch (or one drain of the retry schedule) per invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = webhooks::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<_>| {
        webhooks::handle(deps, event)
    }))
    .await
}
