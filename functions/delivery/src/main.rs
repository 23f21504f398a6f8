//! Cold start: logs, configuration, clients; then one Kafka batch per invocation.

use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};
use shared::config::Env;

// One invocation at a time: a current-thread runtime keeps the handler, the Redis connection's
// driver and the Runtime API client on one thread, with no cross-thread wake-ups per request
// (as in analytics; measured with `scripts/bench cpu`). librdkafka's own threads still run, and
// complete the delivery futures through wakers, which a current-thread runtime accepts.
//
// `lambda_runtime::run` would also wrap every invocation in an info span carrying the request
// id, which the JSON log layer formats into a string whether or not the batch logs anything (as
// in `api`, measured with `perf` under `scripts/bench cpu`). The runtime runs without it; the
// batch's lines say what they are about (user, offset, partition) themselves.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(&shared::config::TelemetrySettings::from_env(&Env::process()));
    let deps = delivery::Deps::from_env(&Env::process().with_secrets().await?).await?;
    let deps = &deps;
    Runtime::new(service_fn(move |event: LambdaEvent<_>| {
        delivery::handle(deps, event)
    }))
    .run()
    .await
}
