//! Cold start: logs, configuration, clients; then serve requests.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = api::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    run(service_fn(move |req: Request| api::handle(deps, req))).await
}
