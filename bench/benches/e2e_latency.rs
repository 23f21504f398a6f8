//! End-to-end latency: from the start of `POST /v1/notifications` to the `notification.created`
//! frame at the recipient's WebSocket, through devstack (the real `template.yaml`, the real
//! function binaries, the HTTP and WebSocket gateways, the Kafka trigger on `notification-events`
//! and its batching window), with many clients connected and an open-loop load.
//!
//! ```text
//! cargo build --profile local --bins
//! REDIS_URL=redis://127.0.0.1:6379 BENCH_BATCH_WINDOW_MS=500 \
//!     cargo bench --profile local -p herald-bench --bench e2e_latency
//! ```
//!
//! `scripts/bench e2e` does all of it, at a 0 ms and a 500 ms window, and draws the plot.
//!
//! 1. Starts devstack in process with the embedded Kafka broker, against `REDIS_URL`, with
//!    `BENCH_BATCH_WINDOW_MS` as `DEVSTACK_BATCH_WINDOW_MS`: it overrides the delivery trigger's
//!    `MaximumBatchingWindowInSeconds` (and, as devstack applies it to every Kafka trigger,
//!    the `analytics` and `push` triggers' windows, which carry little traffic here).
//! 2. Connects `BENCH_CLIENTS` WebSockets, one user each, at most `BENCH_CONNECT_CONCURRENCY`
//!    handshakes at a time (each `$connect` is an invocation of the `ws` function).
//! 3. Warms up (instances, consumer group, connection pools), then sends `BENCH_RATE`
//!    notifications per second for `BENCH_SECONDS` on a fixed schedule (open loop: a send never
//!    waits for an earlier response), each to a random connected user, from `BENCH_SENDERS`
//!    service tokens so no sender reaches the api's per-sender limit.
//! 4. Latency is the receive instant of the frame minus the instant its POST started; frames are
//!    matched by the index the body carries in `data.e2e`, so nothing waits for the `201`.
//!
//! It prints the figures, the counts (a `201` whose frame never came within `BENCH_DRAIN_SECS`
//! is *lost*, and is reported, never hidden) and where the CPU went during the measured window,
//! and writes every latency to `BENCH_OUT` as CSV. It asserts no time. Without `--bench`
//! (`cargo test --benches`) it is a smoke run at a small scale.
//!
//! Everything shares the machine: this process (clients, sender, devstack and the embedded
//! broker), the function instances and Redis. The figures say what this machine does, not AWS.
//! The fleet, the sender, the CPU accounting and the report live in `bench/src` (`herald_bench`);
//! `stack_cpu` drives the same fleet against devstack run as a separate process.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_bench::fleet::{self, Client, Ledger, Protocol};
use herald_bench::load::{self, Target};
use herald_bench::report::{write_csv, Summary};
use herald_bench::{cpu, measuring, mode_note, setting};
use herald_tests::stack::{Stack, FUNCTIONS};

/// What one run does.
#[derive(Debug, Clone)]
struct Settings {
    clients: usize,
    rate: usize,
    seconds: usize,
    window_ms: u64,
    senders: usize,
    max_instances: usize,
    connect_concurrency: usize,
    drain: Duration,
    out: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let full = |full: usize, smoke: usize| if measuring() { full } else { smoke };
        let window_ms = match std::env::var("BENCH_BATCH_WINDOW_MS") {
            Err(_) => 0,
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("BENCH_BATCH_WINDOW_MS={v:?} is not a number of ms")),
        };
        let out = std::env::var_os("BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("target"));
                target.join("bench").join(format!("e2e-{window_ms}ms.csv"))
            });
        Settings {
            clients: setting("BENCH_CLIENTS", full(1_000, 20)),
            rate: setting("BENCH_RATE", full(1_000, 50)),
            seconds: setting("BENCH_SECONDS", full(10, 2)),
            window_ms,
            senders: setting("BENCH_SENDERS", 20),
            max_instances: setting("BENCH_MAX_INSTANCES", 4),
            connect_concurrency: setting("BENCH_CONNECT_CONCURRENCY", 16),
            drain: Duration::from_secs(setting("BENCH_DRAIN_SECS", 30) as u64),
            out,
        }
    }
}

fn main() {
    let s = Settings::from_env();
    if let Some(why) = herald_bench::devstack_missing(&FUNCTIONS) {
        herald_tests::skip(&why);
        return;
    }
    let max_instances = s.max_instances.to_string();
    let window = s.window_ms.to_string();
    let mut env = vec![
        ("KAFKA_BROKERS", ""),
        ("DEVSTACK_BATCH_WINDOW_MS", window.as_str()),
        ("DEVSTACK_MAX_INSTANCES", max_instances.as_str()),
    ];
    // The functions log at `warn` (the harness's default); e.g. `delivery=info` shows each batch.
    let function_log = std::env::var("BENCH_FUNCTION_LOG").unwrap_or_default();
    if !function_log.is_empty() {
        env.push(("RUST_LOG", function_log.as_str()));
    }
    let stack = Stack::start(&env);
    // Named threads, so the CPU report tells the load generator from devstack (same process).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(run(&stack, &s));
}

// Over 100 lines on purpose: one run reads as its phases in order (connect, warm up, send,
// drain, report), each a few lines sharing the same fleet and counters.
async fn run(stack: &Stack, s: &Settings) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let users: Vec<String> = (0..s.clients)
        .map(|i| format!("e2e-{run_id}-u{i}"))
        .collect();
    let tokens: Vec<String> = (0..s.senders)
        .map(|j| {
            stack.token(
                &format!("e2e-{run_id}-svc{j}"),
                &["notifications:write"],
                Duration::from_secs(3600),
            )
        })
        .collect();
    let warm_up = s.rate.max(10);
    let total = s.rate * s.seconds;
    let measured = warm_up..warm_up + total;
    let ledger = Arc::new(Ledger::new(warm_up + total, 201));

    println!("Herald end to end: POST /v1/notifications -> notification.created frame at the client, through devstack{}", mode_note());
    println!(
        "  devstack   template.yaml; delivery trigger BatchSize 100, batching window {} ms; at most {} instances per function",
        s.window_ms, s.max_instances
    );
    println!(
        "  kafka      embedded (librdkafka mock cluster, in this process) at {}",
        stack.kafka_brokers
    );
    println!("  redis      {}", stack.redis_url);
    println!(
        "  load       {} clients (one user each); {warm_up} warm-up sends at {}/s, then {}/s for {} s = {total} notifications, open loop, random recipient, {} senders (≤ {:.0}/s each)",
        s.clients,
        (s.rate / 2).max(1),
        s.rate,
        s.seconds,
        s.senders,
        s.rate as f64 / s.senders as f64
    );
    println!(
        "  host       {cores} CPUs, shared by everything above (clients, devstack, functions, Redis, Kafka mock)"
    );
    println!();

    let clients = users
        .iter()
        .map(|u| Client {
            url: stack.ws_url(&stack.token(u, &[], Duration::from_secs(3600))),
            token: None,
        })
        .collect();
    let connected = fleet::connect(clients, Protocol::Herald, s.connect_concurrency, &ledger).await;
    println!("{} (incl. $connect)", connected.line());
    let http = load::http_client();
    let target = Target::Herald {
        url: stack.http_url("/v1/notifications"),
        tokens,
    };

    let warm_rate = (s.rate / 2).max(1) as f64;
    load::send(&http, &target, &users, 0..warm_up, warm_rate, &ledger).await;
    ledger.await_frames(0..warm_up, s.drain).await;

    let redis_pid = cpu::redis_pid(&stack.redis_url).await;
    let before = cpu::in_process(redis_pid);
    let t0 = Instant::now();
    load::send(
        &http,
        &target,
        &users,
        measured.clone(),
        s.rate as f64,
        &ledger,
    )
    .await;
    let sent_wall = t0.elapsed();
    let drained = ledger.await_frames(measured.clone(), s.drain).await;
    let window_wall = t0.elapsed();
    let after = cpu::in_process(redis_pid);

    let summary = Summary::of(&ledger, measured.clone());
    let title = format!("window {} ms", s.window_ms);
    println!(
        "{}",
        summary.text(s.rate as f64, (sent_wall, drained, s.drain), &title)
    );
    println!(
        "also       {} duplicate frames, {} frames of no notification of this run, {} connections closed by the server",
        ledger.duplicates.load(Ordering::Relaxed),
        ledger.strangers.load(Ordering::Relaxed),
        ledger.closed.load(Ordering::Relaxed),
    );
    print!(
        "{}",
        cpu::report(&before, &after, window_wall.as_secs_f64(), cores)
    );
    let instances: Vec<String> = after
        .instances
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    println!("instances  {}", instances.join(", "));
    if let Some(e) = ledger.first_error.lock().ok().and_then(|e| e.clone()) {
        println!("first error: {e}");
    }

    let comment = format!(
        "window_ms={} clients={} rate={} seconds={} max_instances={}",
        s.window_ms, s.clients, s.rate, s.seconds, s.max_instances
    );
    match write_csv(&ledger, measured, &comment, &s.out) {
        Ok(n) => println!("\nwrote {n} latencies to {}", s.out.display()),
        Err(e) => println!("\ncould not write {}: {e}", s.out.display()),
    }
}
