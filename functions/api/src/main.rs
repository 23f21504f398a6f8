//! Cold start: logs, configuration, clients; then serve requests.

use lambda_http::lambda_runtime::Runtime;
use lambda_http::{service_fn, Adapter, Error, Request};
use shared::config::Env;

// One invocation at a time: a current-thread runtime keeps the handler, the Redis connection's
// driver and the Runtime API client on one thread, with no cross-thread wake-ups per request
// (as in analytics; measured with `scripts/bench cpu`). librdkafka's own threads still run, and
// complete the delivery futures through wakers, which a current-thread runtime accepts.
//
// `lambda_http::run` would also wrap every invocation in an info span carrying the request id,
// which the JSON log layer formats into a string whether or not the request logs anything
// (a few percent of the process's CPU per create, measured with `perf` under `scripts/bench
// cpu`). The runtime runs without it; the one per-request log line that matters, a failed
// request, names the request id itself (`api::handle`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = api::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    Runtime::new(Adapter::from(service_fn(move |req: Request| {
        api::handle(deps, req)
    })))
    .run()
    .await
}
