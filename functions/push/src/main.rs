//! Cold start: logs, configuration, clients and senders; then one Kafka batch (or one drain of
//! the retry schedule) per invocation.

use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};
use shared::config::Env;

// `lambda_runtime::run` would also wrap every invocation in an info span carrying the request
// id, which the JSON log layer formats into a string whether or not the invocation logs anything
// (as in `api` and `delivery`); the runtime runs without it.
#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = push::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    Runtime::new(service_fn(move |event: LambdaEvent<_>| {
        push::handle(deps, event)
    }))
    .run()
    .await
}
