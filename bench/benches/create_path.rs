//! The create path: `POST /v1/notifications` through `api::handle`, in process, on a real Redis
//! and a real Kafka-protocol broker. Each create is a full request: event parsing, both rate-limit
//! checks, the create script, and the publish to Kafka awaited until the broker acknowledges.
//!
//! Two passes after a warm-up: `sequential` (one create at a time: latency without queueing) and
//! `concurrent` (many tasks at once: throughput, and latency under load). Each pass also prints
//! CPU per create, split into this process's request threads (the `api` handler and the bench's
//! own loop), librdkafka's threads (producer and mock broker), and Redis (`INFO cpu`), and the
//! Redis commands per create (`INFO commandstats`): figures a busy machine does not distort the
//! way it distorts latency.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench create_path
//! ```
//!
//! Settings (environment): `BENCH_CREATES` (20,000), `BENCH_CONCURRENCY` (32), `BENCH_SEQUENTIAL`
//! (2,000), `BENCH_RECIPIENTS` (1,000 distinct users), `BENCH_KEYED` (set: every create sends an
//! `Idempotency-Key`); `KAFKA_BROKERS` for a real Kafka instead of librdkafka's mock cluster.
//! Without `REDIS_URL` it prints `SKIPPED` and exits, like the tests.
//! Everything it writes is under a fresh key prefix, deleted at the end.

use std::collections::BTreeMap;
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

/// Whether each create carries an `Idempotency-Key` (`BENCH_KEYED` set): the sender's claim
/// joins the path.
fn keyed() -> bool {
    std::env::var_os("BENCH_KEYED").is_some()
}

/// The API Gateway event for create number `i`, rendered before the clock starts.
fn create_event(i: usize, recipients: usize) -> String {
    let body = json!({
        "userId": format!("bench-user-{}", i % recipients),
        "type": "bench.create",
        "title": format!("Benchmark notification #{i}"),
        "body": "Measuring the create path end to end.",
        "data": {"i": i},
    });
    let call = Call::post("/v1/notifications").service(SENDER).json(&body);
    let call = if keyed() {
        call.header("idempotency-key", &format!("bench-{i}"))
    } else {
        call
    };
    call.event().to_string()
}

/// CPU seconds so far: this process's request threads, its librdkafka threads (`rdk:*`), Redis;
/// and the reads Redis has served (`total_reads_processed`: one per wake-up on a connection, what
/// a round trip costs it in system calls, and a count the machine's load does not distort).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    requests: f64,
    kafka: f64,
    redis: f64,
    redis_reads: f64,
}

async fn cpu_now(env: &TestEnv) -> Cpu {
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut env.conn.clone())
        .await
        .unwrap_or_default();
    let mut cpu = Cpu {
        redis: herald_bench::cpu::redis_cpu(&env.conn).await.as_secs_f64(),
        redis_reads: stats
            .lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0),
        ..Cpu::default()
    };
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if let Some(t) = herald_bench::cpu::parse(&stat) {
            if t.comm.starts_with("rdk:") {
                cpu.kafka += t.cpu;
            } else {
                cpu.requests += t.cpu;
            }
        }
    }
    cpu
}

/// `INFO commandstats` as command → (calls, µs); commands inside scripts count too.
async fn command_stats(env: &TestEnv) -> BTreeMap<String, (u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut env.conn.clone())
        .await
        .unwrap_or_default();
    let field = |fields: &str, name: &str| {
        fields
            .split(',')
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .map(|(cmd, fields)| {
            (
                cmd.to_owned(),
                (field(fields, "calls="), field(fields, "usec=")),
            )
        })
        .collect()
}

/// CPU per create over a pass, and the Redis commands each create ran.
fn cpu_report(
    name: &str,
    creates: usize,
    before: (Cpu, BTreeMap<String, (u64, u64)>),
    after: (Cpu, BTreeMap<String, (u64, u64)>),
) -> String {
    let per = |a: f64, b: f64| (a - b) * 1e6 / creates.max(1) as f64;
    let (c0, c1) = (before.0, after.0);
    let mut out = format!(
        "{name:<12} CPU per create: {:>6.0} µs requests (api::handle + bench loop), {:>6.0} µs librdkafka (producer + mock broker), {:>6.0} µs redis, {:.2} redis reads\n",
        per(c1.requests, c0.requests),
        per(c1.kafka, c0.kafka),
        per(c1.redis, c0.redis),
        per(c1.redis_reads, c0.redis_reads) / 1e6,
    );
    let mut rows: Vec<(String, f64, f64)> = after
        .1
        .iter()
        .filter_map(|(cmd, (calls, usec))| {
            let (c0, u0) = before.1.get(cmd).copied().unwrap_or((0, 0));
            let calls = calls.saturating_sub(c0) as f64 / creates.max(1) as f64;
            let usec = usec.saturating_sub(u0) as f64 / creates.max(1) as f64;
            (calls >= 0.01).then(|| (cmd.clone(), calls, usec))
        })
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    out.push_str("             redis commands per create (calls, µs; inside scripts too):");
    for (cmd, calls, usec) in rows {
        out.push_str(&format!(" {cmd} {calls:.2}/{usec:.1}"));
    }
    out.push('\n');
    out
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
    let mut cpu = String::new();
    let mut passes = Vec::new();
    for (name, total, tasks, offset) in [
        ("sequential", sequential, 1, warm_up),
        ("concurrent", creates, concurrency, warm_up + sequential),
    ] {
        let before = (cpu_now(&env).await, command_stats(&env).await);
        passes.push(run_pass(name, &deps, total, tasks, recipients, offset).await);
        let after = (cpu_now(&env).await, command_stats(&env).await);
        cpu.push_str(&cpu_report(name, total, before, after));
    }
    print!("{}", table("creates", &passes));
    print!("\n{cpu}");

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
