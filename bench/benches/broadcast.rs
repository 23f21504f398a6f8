//! Topics at scale (issue 13), through devstack (the real template, the `api` and `broadcast`
//! binaries, the embedded broker), as `scripts/dev` runs them:
//!
//! 1. subscribes `BENCH_SUBSCRIBERS` (100,000) users to one topic, 1,000 per call, 8 calls at
//!    once, and prints the seconds it took (target: at most 10 s);
//! 2. prints Redis's memory per membership: the `INFO memory` delta across the subscribe, and
//!    the sum of `MEMORY USAGE` of the topic's keys (target: at most 100 bytes);
//! 3. broadcasts to the topic and polls the broadcast until it is `done`, then prints
//!    recipients per second in the fan-out (created / seconds from the 202 to `done`; target: at
//!    least 5,000/s) and the final counts (`created` must be the subscriber count);
//! 4. prints, for the fan-out's window, each process's CPU (share of a core, and µs per
//!    recipient: the figure that hardly depends on the machine's load) and Redis's busiest
//!    commands per recipient (`INFO commandstats`, reset at the broadcast).
//!
//! ```text
//! cargo build --profile local --bins
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench broadcast
//! ```
//!
//! `scripts/bench broadcast` does all of it on a private Redis. It asserts no time. Without
//! `--bench` it is a smoke run at 1/100 scale. Everything shares the machine.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use herald_bench::{cpu, mode_note, scale};
use herald_tests::stack::{http_client, Stack, FUNCTIONS};
use serde_json::{json, Value};
use shared::store::keys::TOPIC_BUCKETS;
use shared::store::KeySpace;

fn main() {
    let subscribers = scale(herald_bench::setting("BENCH_SUBSCRIBERS", 100_000));
    if let Some(why) = herald_bench::devstack_missing(&FUNCTIONS) {
        herald_tests::skip(&why);
        return;
    }
    let stack = Stack::start(&[("KAFKA_BROKERS", "")]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(run(&stack, subscribers));
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// Over 100 lines on purpose: one run reads as its three measurements in order.
async fn run(stack: &Stack, subscribers: usize) {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let topic = format!("bench-{run_id}");
    let token = stack.token(
        "bench-service",
        &["notifications:write"],
        Duration::from_secs(3600),
    );
    let http = http_client();
    let client = redis::Client::open(stack.redis_url.as_str()).unwrap_or_else(|e| panic!("{e}"));
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis: {e}"));
    println!("Herald topics at scale, through devstack{}", mode_note());
    println!("  topic    {topic}, {subscribers} subscribers (user ids `u<run>-<n>`, 17 bytes)");
    println!(
        "  kafka    embedded (librdkafka mock cluster) at {}",
        stack.kafka_brokers
    );
    println!("  redis    {}", stack.redis_url);
    println!("  machine  shared with other work (2 cores, busy): figures vary run to run");

    let put = http
        .put(stack.http_url(&format!("/v1/topics/{topic}")))
        .bearer_auth(&token)
        .json(&json!({"name": "Benchmark"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT topic: {e}"));
    assert_eq!(put.status().as_u16(), 201);

    // 1. Subscribe.
    let ids: Vec<String> = (0..subscribers)
        .map(|i| format!("u{run_id}-{i:07}"))
        .collect();
    let before = used_memory(&mut redis).await;
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(ids.chunks(1_000))
        .map(|chunk| {
            let request = http
                .post(stack.http_url(&format!("/v1/topics/{topic}/subscribers")))
                .bearer_auth(&token)
                .json(&json!({ "userIds": chunk }));
            async move { request.send().await.map_or(0, |r| r.status().as_u16()) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let subscribe_secs = started.elapsed().as_secs_f64();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a subscribe call failed"
    );
    let after = used_memory(&mut redis).await;

    // 2. Memory per membership.
    let keys = KeySpace::new("").topic(&topic);
    let mut usage: i64 = 0;
    for key in std::iter::once(keys.meta()).chain((0..TOPIC_BUCKETS).map(|b| keys.members(b))) {
        let bytes: Option<i64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut redis)
            .await
            .unwrap_or(None);
        usage += bytes.unwrap_or(0);
    }
    let n = subscribers as f64;
    println!();
    println!(
        "subscribe   {subscribers} users in {subscribe_secs:.2} s ({:.0} memberships/s; target ≤ 10 s)",
        n / subscribe_secs
    );
    println!(
        "memory      {:.1} bytes per membership by INFO used_memory delta, {:.1} by MEMORY USAGE of the topic's {} keys (target ≤ 100)",
        (after - before) as f64 / n,
        usage as f64 / n,
        TOPIC_BUCKETS + 1
    );

    // 3. Broadcast.
    let redis_pid = cpu::redis_pid(&stack.redis_url).await;
    let _: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut redis)
        .await;
    let cpu_before = cpu::in_process(redis_pid);
    let started = Instant::now();
    let accepted: Value = http
        .post(stack.http_url(&format!("/v1/topics/{topic}/notifications")))
        .bearer_auth(&token)
        .json(&json!({"type": "bench.broadcast", "title": "To everyone", "body": "hello"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("broadcast: {e}"))
        .json()
        .await
        .unwrap_or_default();
    let id = accepted["broadcastId"]
        .as_str()
        .unwrap_or_else(|| panic!("no broadcastId: {accepted}"))
        .to_owned();
    let state = loop {
        let state: Value = http
            .get(stack.http_url(&format!("/v1/broadcasts/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET broadcast: {e}"))
            .json()
            .await
            .unwrap_or_default();
        if state["status"] == "done" || state["status"] == "cancelled" {
            break state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1_800),
            "the broadcast is still {state} after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fanout_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu::in_process(redis_pid);
    let created = state["created"].as_u64().unwrap_or(0);
    println!(
        "broadcast   {created} recipients in {fanout_secs:.2} s from the 202 to done: {:.0} recipients/s (target ≥ 5,000/s)",
        created as f64 / fanout_secs
    );
    println!("            final state {state}");
    print!(
        "{}",
        cpu::report(&cpu_before, &cpu_after, fanout_secs, num_cores())
    );
    print_cpu_per_recipient(&cpu_before, &cpu_after, created);
    print_commandstats(&mut redis, created).await;
    assert_eq!(state["status"], "done");
    assert_eq!(created, subscribers as u64, "every subscriber gets one");
}

/// CPU time per recipient of each process over the fan-out (µs): unlike rates, it hardly
/// depends on how busy the machine is, so it is the figure to compare between runs.
fn print_cpu_per_recipient(before: &cpu::Snapshot, after: &cpu::Snapshot, recipients: u64) {
    let per = recipients.max(1) as f64;
    let rows = after.delta(before);
    let total: f64 = rows.iter().map(|r| r.1).sum();
    println!(
        "cpu/recip  {:.0} µs of CPU per recipient, all of this run's processes:",
        1e6 * total / per
    );
    for (label, secs) in rows.iter().filter(|r| r.1 > 0.0) {
        println!("  {:>6.1} µs  {label}", 1e6 * secs / per);
    }
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Redis's busiest commands since the broadcast started (`INFO commandstats`, reset before it):
/// calls and server time per recipient, so a change in round trips or script cost shows.
async fn print_commandstats(redis: &mut redis::aio::MultiplexedConnection, recipients: u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap_or_default();
    let field = |stats: &str, name: &str| -> f64 {
        stats
            .split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let mut rows: Vec<(String, f64, f64)> = info
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .map(|(cmd, stats)| (cmd.to_owned(), field(stats, "calls"), field(stats, "usec")))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let per = recipients.max(1) as f64;
    // A script's own commands are counted too (and their time is inside the script's).
    println!("redis      commands per recipient (all clients; inside scripts too), busiest first:");
    for (cmd, calls, usec) in rows.iter().take(10) {
        println!(
            "  {cmd:<12} {:>6.2} calls/recipient  {:>6.1} µs/recipient",
            calls / per,
            usec / per
        );
    }
}
