//! The create path: `POST /v1/notifications` through `api::handle`, in process, on a real Redis
//! and a real Kafka-protocol broker. Each create is a full request: event parsing, both rate-limit
//! checks, the create script, and the publish to Kafka awaited until the broker acknowledges.
//!
//! Two passes after a warm-up: `sequential` (one create at a time: latency without queueing) and
//! `concurrent` (many tasks at once: throughput, and latency under load).
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench create_path
//! ```
//!
//! Settings (environment): `BENCH_CREATES` (20,000), `BENCH_CONCURRENCY` (32), `BENCH_SEQUENTIAL`
//! (2,000), `BENCH_RECIPIENTS` (1,000 distinct users); `KAFKA_BROKERS` for a real Kafka instead of
//! librdkafka's mock cluster. Without `REDIS_URL` it prints `SKIPPED` and exits, like the tests.
//! Everything it writes is under a fresh key prefix, deleted at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use herald_bench::{delete_matching, mode_note, scale, setting, table, Pass};
use herald_tests::kafka::broker_kind;
use herald_tests::{Call, TestEnv};
use lambda_http::http::StatusCode;
use lambda_http::request::from_str as parse_event;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

const SENDER: &str = "svc-bench";

/// The API Gateway event for create number `i`, rendered before the clock starts.
fn create_event(i: usize, recipients: usize) -> String {
    let body = json!({
        "userId": format!("bench-user-{}", i % recipients),
        "type": "bench.create",
        "title": format!("Benchmark notification #{i}"),
        "body": "Measuring the create path end to end.",
        "data": {"i": i},
    });
    Call::post("/v1/notifications")
        .service(SENDER)
        .json(&body)
        .event()
        .to_string()
}

/// `total` creates from `concurrency` tasks that each take the next index until none is left.
async fn run_pass(
    name: &str,
    deps: &api::Deps,
    total: usize,
    concurrency: usize,
    recipients: usize,
    offset: usize,
) -> Pass {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (deps, next) = (deps.clone(), next.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, None);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let event = create_event(offset + i, recipients);
                    let t = Instant::now();
                    let request = parse_event(&event)
                        .unwrap_or_else(|e| panic!("the harness built an unparsable event: {e}"));
                    let response = match api::handle(&deps, request).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    latencies.push(t.elapsed());
                    if response.status() != StatusCode::CREATED {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{} {:?}", response.status(), response.body())
                        });
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut pass = Pass {
        name: name.into(),
        concurrency,
        latencies: Vec::with_capacity(total),
        wall: Duration::ZERO,
        errors: 0,
    };
    for worker in futures::future::join_all(workers).await {
        let (latencies, errors, first_error) =
            worker.unwrap_or_else(|e| panic!("a bench task failed: {e}"));
        pass.latencies.extend(latencies);
        pass.errors += errors;
        if let Some(e) = first_error {
            eprintln!("{name}: a create failed: {e}");
        }
    }
    pass.wall = started.elapsed();
    pass
}

/// Deletes every key under the run's prefix (single Redis only: SCAN sees one cluster node).
async fn delete_keys(env: &TestEnv) -> Option<usize> {
    if env.redis.cluster {
        return None;
    }
    Some(delete_matching(&env.conn, &format!("{}*", env.redis.key_prefix)).await)
}

#[tokio::main]
async fn main() {
    let creates = setting("BENCH_CREATES", scale(20_000));
    let concurrency = setting("BENCH_CONCURRENCY", 32);
    let sequential = setting("BENCH_SEQUENTIAL", scale(2_000));
    let warm_up = scale(200);
    let recipients = setting("BENCH_RECIPIENTS", 1_000);
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());

    println!(
        "Herald create path: POST /v1/notifications through api::handle, in process{}",
        mode_note()
    );
    println!(
        "  redis    {} (key prefix {})",
        env.redis.url, env.redis.key_prefix
    );
    println!(
        "  kafka    {} at {} (linger.ms {})",
        broker_kind(),
        env.kafka.brokers,
        env.kafka.linger_ms
    );
    println!("  load     {warm_up} warm-up, then {sequential} one at a time, then {creates} from {concurrency} concurrent tasks; {recipients} recipients");
    println!(
        "  host     {} CPUs available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();

    run_pass("warm-up", &deps, warm_up, 8, recipients, 0).await;
    let passes = [
        run_pass("sequential", &deps, sequential, 1, recipients, warm_up).await,
        run_pass(
            "concurrent",
            &deps,
            creates,
            concurrency,
            recipients,
            warm_up + sequential,
        )
        .await,
    ];
    print!("{}", table("creates", &passes));

    // Every create awaited Kafka's acknowledgement; anything the relay still finds was not acked.
    let event = LambdaEvent::new(EventBridgeEvent::default(), Context::default());
    match outbox_relay::handle(&env.relay(), event).await {
        Ok(report) => println!("\noutbox relay afterwards: {} changes Kafka had not acknowledged in the request (0 = all were)", report.published),
        Err(e) => println!("\noutbox relay afterwards failed: {e}"),
    }
    match delete_keys(&env).await {
        Some(n) => println!("cleaned up: {n} keys under {}", env.redis.key_prefix),
        None => println!(
            "left in place (Redis Cluster): keys under {}",
            env.redis.key_prefix
        ),
    }
    if passes.iter().any(|p| p.errors > 0) {
        eprintln!("some creates did not answer 201; the figures above are not a clean run");
        std::process::exit(1);
    }
}
