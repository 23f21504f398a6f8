//! Creates across a Kafka outage (issue 12, item 16): an open-loop sender drives `BENCH_RATE`
//! creates per second through devstack (the real template, the `api` binaries, 4 instances, the
//! embedded broker) for `BENCH_BEFORE_SECS` with the broker up, `BENCH_DOWN_SECS` with it down
//! (the mock cluster's broker-down control: connections dropped and refused) and
//! `BENCH_AFTER_SECS` up again. It prints each phase's create latency (POST to answer: p50, p99,
//! max) and then checks the outcome:
//!
//! - *lost*: a `201` whose notification is not in its recipient's inbox, or that never reached
//!   `notification-events` after the relay ran;
//! - *doubled*: a recipient with more than one notification (each create has its own
//!   recipient), or a notification on `notification-events` more than once (consumers would drop
//!   the repeat by `seq`; counted all the same).
//!
//! ```text
//! cargo build --profile local --bins
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench kafka_outage
//! ```
//!
//! `scripts/bench outage` does all of it on a private Redis. It asserts no time. Without `--bench`
//! (`cargo test --benches`) it is a smoke run at a small scale. Everything shares the machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use herald_bench::{measuring, mode_note, setting};
use herald_tests::stack::{http_client, Stack, FUNCTIONS};
use serde_json::{json, Value};

/// The relay's grace period for this run: longer than any create of the run takes, and short, so
/// the check after the run need not wait the template's 15 s.
const GRACE_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Phase {
    Before,
    Down,
    After,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Before => "broker up",
            Phase::Down => "broker down",
            Phase::After => "broker back",
        }
    }
}

/// One create's outcome.
#[derive(Debug, Clone)]
struct Answer {
    phase: Phase,
    user: String,
    status: u16,
    latency: Duration,
    id: Option<String>,
}

fn main() {
    let full = |full: usize, smoke: usize| if measuring() { full } else { smoke };
    let rate = setting("BENCH_RATE", full(50, 20));
    let secs = [
        setting("BENCH_BEFORE_SECS", full(10, 2)),
        setting("BENCH_DOWN_SECS", full(10, 2)),
        setting("BENCH_AFTER_SECS", full(10, 2)),
    ];
    let senders = setting("BENCH_SENDERS", 5);
    let max_instances = setting("BENCH_MAX_INSTANCES", 4).to_string();
    if let Some(why) = herald_bench::devstack_missing(&FUNCTIONS) {
        herald_tests::skip(&why);
        return;
    }
    let grace = GRACE_MS.to_string();
    let stack = Stack::start(&[
        ("KAFKA_BROKERS", ""),
        ("DEVSTACK_MAX_INSTANCES", max_instances.as_str()),
        ("OUTBOX_GRACE_MS", grace.as_str()),
    ]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(run(&stack, rate, secs, senders, &max_instances));
}

// Over 100 lines on purpose: one run reads as its phases in order (send across the outage,
// relay, check the inbox and the topic, report).
async fn run(stack: &Stack, rate: usize, secs: [usize; 3], senders: usize, instances: &str) {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let tokens: Vec<String> = (0..senders)
        .map(|j| {
            stack.token(
                &format!("outage-{run_id}-svc{j}"),
                &["notifications:write"],
                Duration::from_secs(3600),
            )
        })
        .collect();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let counts: Vec<usize> = secs.iter().map(|s| s * rate).collect();
    let total: usize = counts.iter().sum();
    println!(
        "Herald creates across a Kafka outage, through devstack{}",
        mode_note()
    );
    println!(
        "  load     {rate} creates/s open loop, one new recipient each, {senders} senders: {} s broker up, {} s down, {} s back up ({total} creates); {instances} api instances",
        secs[0], secs[1], secs[2]
    );
    println!(
        "  kafka    embedded (librdkafka mock cluster) at {}; down = broker_down on each of its brokers",
        stack.kafka_brokers
    );
    println!("  redis    {}", stack.redis_url);

    let http = http_client();
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let mut tasks = Vec::with_capacity(total);
    let start = tokio::time::Instant::now();
    let mut phase = Phase::Before;
    for i in 0..total {
        let next = if i >= counts[0] + counts[1] {
            Phase::After
        } else if i >= counts[0] {
            Phase::Down
        } else {
            Phase::Before
        };
        tokio::time::sleep_until(start + period * i as u32).await;
        if next != phase {
            stack.kafka_down(next == Phase::Down).await;
            phase = next;
        }
        let user = format!("outage-{run_id}-u{i}");
        let request = http
            .post(stack.http_url("/v1/notifications"))
            .bearer_auth(&tokens[i % tokens.len()])
            .json(
                &json!({"userId": user, "type": "comment", "title": format!("n{i}"), "body": ""}),
            );
        let answers = answers.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (status, body) = match request.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.json::<Value>().await.unwrap_or_default())
                }
                Err(_) => (0, Value::Null),
            };
            let latency = sent.elapsed();
            let id = body["id"].as_str().map(str::to_owned);
            if let Ok(mut a) = answers.lock() {
                a.push(Answer {
                    phase,
                    user,
                    status,
                    latency,
                    id,
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let answers: Vec<Answer> = answers.lock().map(|a| a.clone()).unwrap_or_default();

    println!();
    println!("phase         creates   201   other   p50        p99        max");
    for p in [Phase::Before, Phase::Down, Phase::After] {
        print_latencies(p.name(), answers.iter().filter(|a| a.phase == p));
    }
    print_latencies("all", answers.iter());

    // The relay: wait out its grace, then run it until a run finds nothing left (devstack's own
    // schedule may hold the lease, or run first).
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 1_000)).await;
    let schedule: Value = serde_json::from_str(include_str!(
        "../../events/eventbridge-outbox-relay-schedule.json"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut relayed = 0;
    for _ in 0..20 {
        let report = stack.invoke("outbox-relay", &schedule).await;
        relayed += report["published"].as_u64().unwrap_or(0);
        if report["ran"] == true && report["backlog"] == 0 && report["failed"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    let inbox_sizes: Vec<usize> = stream::iter(created.iter().map(|a| a.user.clone()))
        .map(|user| async move {
            let page = stack.get(&user, "/v1/notifications?limit=10").await;
            page["items"].as_array().map_or(0, Vec::len)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let inbox_lost = inbox_sizes.iter().filter(|n| **n == 0).count();
    let inbox_doubled = inbox_sizes.iter().filter(|n| **n > 1).count();

    let kafka = shared::config::KafkaSettings::from_env(&shared::config::Env::from_pairs([(
        "KAFKA_BROKERS",
        stack.kafka_brokers.as_str(),
    )]))
    .unwrap_or_else(|e| panic!("kafka settings: {e}"));
    let topic = shared::protocol::Topic::NotificationEvents.name_with(&kafka.topic_suffix);
    let records = herald_tests::kafka::consume(
        &kafka,
        &topic,
        created.len() + 1,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await;
    let prefix = format!("outage-{run_id}-");
    let mut on_topic: HashMap<String, usize> = HashMap::new();
    for r in records.iter().filter(|r| r.key.starts_with(&prefix)) {
        let event = r.json();
        if event["type"] == "NOTIFICATION_CREATED" {
            if let Some(id) = event["payload"]["notification"]["id"].as_str() {
                *on_topic.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let ids = created.iter().filter_map(|a| a.id.as_deref());
    let topic_lost = ids.clone().filter(|id| !on_topic.contains_key(*id)).count();
    let topic_doubled = ids
        .filter(|id| on_topic.get(*id).is_some_and(|n| *n > 1))
        .count();

    println!();
    println!("relay      {relayed} changes published after the outage");
    println!(
        "inbox      {} creates answered 201: {inbox_lost} lost, {inbox_doubled} doubled",
        created.len()
    );
    println!(
        "kafka      {} of them on {topic}: {topic_lost} lost, {topic_doubled} doubled",
        created.len() - topic_lost
    );
}

/// One row: counts and p50 / p99 / max of the answers' latencies.
fn print_latencies<'a>(name: &str, answers: impl Iterator<Item = &'a Answer>) {
    let answers: Vec<&Answer> = answers.collect();
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let ok = answers.iter().filter(|a| a.status == 201).count();
    println!(
        "{name:<13} {:>7} {ok:>5} {:>7}   {:<10} {:<10} {:<10}",
        answers.len(),
        answers.len() - ok,
        format!("{:.1?}", at(0.50)),
        format!("{:.1?}", at(0.99)),
        format!("{:.1?}", latencies.last().copied().unwrap_or_default()),
    );
}
