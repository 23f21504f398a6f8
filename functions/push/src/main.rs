//! Cold start: logs, configuration, clients and senders; then one Kafka batch (or one drain of
//! the retry schedule) per invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = push::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<_>| {
        push::handle(deps, event)
    }))
    .await
}
