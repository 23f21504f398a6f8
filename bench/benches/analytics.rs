//! The analytics function: Kafka batches through `analytics::count_batch`, in process, on a real
//! Redis. One invocation at a time, as one Lambda process runs them, so the figure is analytics
//! records per second *per process*.
//!
//! The records are what a day of traffic produces per notification: its IN_APP outcome (80%
//! `sent`, 20% `suppressed`), an EMAIL outcome for half of them, a PUSH outcome for 30%
//! (`sent`, `failed` or `deferred`), a read (seen + read, one envelope) for 60% and a click for
//! 20%: about 2.6 records per notification, on `notification-delivery` (3 partitions) and
//! `notification-analytics` (2 partitions), batched by topic as two event-source mappings do.
//! The notifications exist in their users' inboxes, so engagement finds its type there.
//!
//! Passes, each on the same records with the analytics keys deleted in between: batches of 100
//! (Lambda's default), 500 (the template's) and 1,000, then the 500 pass delivered again (every
//! record already counted: the redelivery path).
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench analytics
//! ```
//!
//! Settings (environment): `BENCH_NOTIFICATIONS` (40,000), `BENCH_USERS` (4,000). Without
//! `REDIS_URL` it prints `SKIPPED` and exits, like the tests. Everything it writes is under a fresh
//! key prefix, deleted at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::stream::{self, StreamExt};
use herald_bench::cpu::{own_cpu, redis_cpu};
use herald_bench::{delete_matching, mode_note, ms, quantile, scale, setting};
use herald_tests::TestEnv;
use serde_json::{json, Value};
use shared::config::AnalyticsSettings;
use shared::model::{Channel, FlagsPatch, Notification, OutcomeStatus, Priority};
use shared::protocol::envelope::FirstEngagement;
use shared::protocol::outcome::reason;
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::store::{AnalyticsStore, CreateOutcome, NewNotification};

/// The records of one topic, each with its partition, in production order.
#[derive(Default)]
struct Records {
    delivery: Vec<(i64, Vec<u8>)>,
    engagement: Vec<(i64, Vec<u8>)>,
}

async fn create_notifications(env: &TestEnv, count: usize, users: usize) -> Vec<Notification> {
    let store = env.store(TestEnv::unlimited());
    stream::iter(0..count)
        .map(|i| {
            let store = store.clone();
            async move {
                let new = NewNotification {
                    user_id: format!("bench-user-{}", i % users),
                    kind: ["comment", "invoice.paid", "digest", "security.alert"][i % 4].into(),
                    title: format!("Benchmark notification #{i}"),
                    body: String::new(),
                    data: json!({}),
                    channels: vec![Channel::InApp],
                    priority: Priority::Normal,
                    action_url: None,
                    group_key: None,
                    expires_at: None,
                    escalate: None,
                    digest: None,
                };
                match store.create("svc-bench", new, None).await {
                    Ok(CreateOutcome::Created { notification, .. }) => notification,
                    other => panic!("create: {other:?}"),
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// A day of records for `notifications` (deterministic: the same run makes the same records).
fn records(notifications: &[Notification]) -> Records {
    let mut out = Records::default();
    let partition = |id: &str, n: i64| (id.bytes().map(i64::from).sum::<i64>()) % n;
    for (i, n) in notifications.iter().enumerate() {
        let dp = partition(&n.id, 3);
        let mut outcome = |channel, status, why| {
            let o = DeliveryOutcome::new(n, channel, status, why);
            out.delivery.push((dp, o.encode()));
        };
        if i % 5 == 0 {
            outcome(
                Channel::InApp,
                OutcomeStatus::Suppressed,
                Some(reason::NO_CONNECTION),
            );
        } else {
            outcome(Channel::InApp, OutcomeStatus::Sent, None);
        }
        if i % 2 == 0 {
            outcome(Channel::Email, OutcomeStatus::Sent, None);
        }
        match i % 10 {
            0 => outcome(Channel::Push, OutcomeStatus::Sent, None),
            3 => outcome(
                Channel::Push,
                OutcomeStatus::Failed,
                Some(reason::PROVIDER_5XX),
            ),
            7 => outcome(
                Channel::Push,
                OutcomeStatus::Deferred,
                Some(reason::QUIET_HOURS),
            ),
            _ => {}
        }
        let ep = partition(&n.user_id, 2);
        if i % 5 < 3 {
            let read = Envelope::new(
                &n.user_id,
                Event::NotificationUpdated {
                    id: n.id.clone(),
                    changes: FlagsPatch {
                        read: Some(true),
                        seen: Some(true),
                        archived: None,
                    },
                    first: Some(FirstEngagement {
                        seen: true,
                        read: true,
                    }),
                    counts: Default::default(),
                    digest: None,
                },
            );
            out.engagement.push((ep, read.encode()));
        }
        if i % 5 == 1 {
            let click = Envelope::new(
                &n.user_id,
                Event::NotificationClicked {
                    id: n.id.clone(),
                    first: Some(true),
                },
            );
            out.engagement.push((ep, click.encode()));
        }
    }
    out
}

/// Lambda-shaped events of `size` records each, one topic per event, offsets per partition.
fn batches(topic: &str, records: &[(i64, Vec<u8>)], size: usize) -> Vec<KafkaEvent> {
    let mut next_offset: BTreeMap<i64, i64> = BTreeMap::new();
    records
        .chunks(size)
        .map(|chunk| {
            let mut grouped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (p, bytes) in chunk {
                let offset = next_offset.entry(*p).or_insert(0);
                grouped.entry(format!("{topic}-{p}")).or_default().push(json!({
                    "topic": topic, "partition": p, "offset": *offset, "timestamp": 0,
                    "timestampType": "CREATE_TIME", "key": null, "value": STANDARD.encode(bytes), "headers": []
                }));
                *offset += 1;
            }
            serde_json::from_value(json!({
                "eventSource": "SelfManagedKafka",
                "bootstrapServers": "bench:9092",
                "records": grouped
            }))
            .unwrap_or_else(|e| panic!("event: {e}"))
        })
        .collect()
}

/// Deletes the analytics keys (counters, estimates, histories) under the run's prefix, so the
/// next pass starts from nothing; the inboxes stay.
async fn reset_analytics(env: &TestEnv) {
    for pattern in ["{an", "{n:"] {
        delete_matching(&env.conn, &format!("{}{pattern}*", env.redis.key_prefix)).await;
    }
}

struct PassResult {
    name: String,
    batch: usize,
    records: usize,
    counted: u64,
    latencies: Vec<Duration>,
    wall: Duration,
    retried: usize,
    /// CPU time of this process (the function's share) and of Redis during the pass.
    own_cpu: Duration,
    redis_cpu: Duration,
}

/// Every batch through `count_batch`, one at a time, delivery and engagement interleaved.
async fn run_pass(
    name: &str,
    env: &TestEnv,
    deps: &analytics::Deps,
    events: &[KafkaEvent],
    batch: usize,
) -> PassResult {
    let mut result = PassResult {
        name: name.into(),
        batch,
        records: 0,
        counted: 0,
        latencies: Vec::with_capacity(events.len()),
        wall: Duration::ZERO,
        retried: 0,
        own_cpu: Duration::ZERO,
        redis_cpu: Duration::ZERO,
    };
    let (cpu0, redis0) = (own_cpu(), redis_cpu(&env.conn).await);
    let started = Instant::now();
    for event in events {
        let t = Instant::now();
        let (response, stats) = analytics::count_batch(deps, event).await;
        result.latencies.push(t.elapsed());
        result.records += stats.records;
        result.counted += stats.counted;
        result.retried += response.batch_item_failures.len();
    }
    result.wall = started.elapsed();
    result.own_cpu = own_cpu().saturating_sub(cpu0);
    result.redis_cpu = redis_cpu(&env.conn).await.saturating_sub(redis0);
    result
}

/// Delivery and engagement batches alternately, as two mappings feeding one process would.
fn interleave(a: Vec<KafkaEvent>, b: Vec<KafkaEvent>) -> Vec<KafkaEvent> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

// The same runtime as the function's `main`: one thread, one invocation at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count = setting("BENCH_NOTIFICATIONS", scale(40_000));
    let users = setting("BENCH_USERS", scale(4_000));
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = analytics::Deps::new(AnalyticsStore::new(
        env.conn.clone(),
        env.keys.clone(),
        AnalyticsSettings::default(),
    ));
    println!("Herald analytics: Kafka batches through analytics::count_batch, in process, one invocation at a time{}", mode_note());
    println!(
        "  redis    {} (key prefix {})",
        env.redis.url, env.redis.key_prefix
    );
    println!(
        "  host     {} CPUs available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let t = Instant::now();
    let notifications = create_notifications(&env, count, users).await;
    let records = records(&notifications);
    let total = records.delivery.len() + records.engagement.len();
    println!(
        "  load     {count} notifications for {users} users (created in {:.1} s), {} delivery outcomes + {} engagement records = {total}",
        t.elapsed().as_secs_f64(),
        records.delivery.len(),
        records.engagement.len()
    );
    println!();

    let delivery = Topic::NotificationDelivery.name();
    let engagement = Topic::NotificationAnalytics.name();
    let events = |size: usize| {
        interleave(
            batches(delivery, &records.delivery, size),
            batches(engagement, &records.engagement, size),
        )
    };
    // Warm-up: the scripts loaded, the connection established, the allocator warm.
    let warm = events(100);
    run_pass("warm-up", &env, &deps, &warm[..warm.len().min(20)], 100).await;
    reset_analytics(&env).await;

    let mut results = Vec::new();
    for size in [100, 500, 1_000] {
        let evs = events(size);
        results.push(run_pass(&format!("batch {size}"), &env, &deps, &evs, size).await);
        if size == 500 {
            results.push(run_pass("redelivered", &env, &deps, &evs, size).await);
        }
        reset_analytics(&env).await;
    }

    println!(
        "{:<12} {:>6} {:>8} {:>8} {:>8} {:>13} {:>13} {:>11} {:>14} {:>16} {:>8}",
        "pass",
        "batch",
        "records",
        "counted",
        "batches",
        "p50 ms/batch",
        "p99 ms/batch",
        "records/s",
        "own µs/record",
        "redis µs/record",
        "retried"
    );
    for r in &results {
        let mut sorted = r.latencies.clone();
        sorted.sort_unstable();
        let per_record = |d: Duration| d.as_secs_f64() * 1e6 / r.records.max(1) as f64;
        println!(
            "{:<12} {:>6} {:>8} {:>8} {:>8} {:>13.2} {:>13.2} {:>11.0} {:>14.1} {:>16.1} {:>8}",
            r.name,
            r.batch,
            r.records,
            r.counted,
            sorted.len(),
            ms(quantile(&sorted, 0.50)),
            ms(quantile(&sorted, 0.99)),
            r.records as f64 / r.wall.as_secs_f64().max(1e-9),
            per_record(r.own_cpu),
            per_record(r.redis_cpu),
            r.retried
        );
    }
    println!();
    println!("records/s: wall clock, one invocation at a time (what one Lambda process does).");
    println!("own / redis µs/record: CPU this process / the Redis server spent per record; on a");
    println!("quiet machine 1e6 / (own + redis) bounds records/s.");
    let deleted = delete_matching(&env.conn, &format!("{}*", env.redis.key_prefix)).await;
    println!();
    println!("deleted {deleted} keys under {}", env.redis.key_prefix);
}
