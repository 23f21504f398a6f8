//! Cold start: logs, configuration, clients; then drain the due-set on every scheduled
//! invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::config::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = scheduler::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        scheduler::handle(deps, event)
    }))
    .await
}
