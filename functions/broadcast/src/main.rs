//! Cold start: logs, configuration, clients; then one Kafka batch per invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = broadcast::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<_>| {
        broadcast::handle(deps, event)
    }))
    .await
}
