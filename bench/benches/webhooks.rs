//! Webhook messages per second against a local receiver (`herald_tests::provider::Provider` on
//! 127.0.0.1, answering 200 to everything), through the webhooks function's Kafka handler,
//! `webhooks::process_batch`, on batches of `BENCH_WEBHOOK_BATCH` `NOTIFICATION_CREATED` records,
//! one notification each, for one webhook: the registry read, the ledger and queue script, the
//! signature, the POST through the outbound policy's client, the completion script and the
//! attempt record. Latency is per batch; the rate is messages delivered per second.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench webhooks
//! ```
//!
//! Settings: `BENCH_WEBHOOK_MESSAGES` (5,000), `BENCH_WEBHOOK_BATCH` (100). Without `REDIS_URL` it
//! prints `SKIPPED` and exits. Without `--bench` (`cargo test --benches`) it is a smoke run at a
//! hundredth of the scale.

use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_bench::{delete_matching, mode_note, scale, setting, table, Pass};
use herald_tests::provider::{answer, Provider};
use herald_tests::TestEnv;
use serde_json::{json, Value};
use shared::config::{Env, WebhookSettings};
use shared::model::{Counts, Notification};
use shared::protocol::{Envelope, Event};
use shared::store::WebhookStore;
use shared::webhooks::{Webhook, WebhookEventType};

fn notification(i: usize) -> Notification {
    serde_json::from_value(json!({"id": uuid::Uuid::now_v7().to_string(), "seq": i + 1,
        "userId": format!("bench-webhook-{}", i % 100), "type": "bench.webhook",
        "title": format!("Benchmark webhook #{i}"), "body": "Measuring the webhooks handler.",
        "data": {"i": i}, "channels": ["IN_APP"], "priority": "normal",
        "read": false, "seen": false, "archived": false, "createdAt": chrono::Utc::now()}))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn kafka_batch(envelopes: &[Vec<u8>], first_offset: usize) -> KafkaEvent {
    let records: Vec<Value> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"topic": "notification-events", "partition": 0, "offset": first_offset + i,
                   "timestamp": 0, "timestampType": "CREATE_TIME", "key": null,
                   "value": STANDARD.encode(e), "headers": []})
        })
        .collect();
    serde_json::from_value(
        json!({"eventSource": "SelfManagedKafka", "records": {"notification-events-0": records}}),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::main]
async fn main() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let messages = scale(setting("BENCH_WEBHOOK_MESSAGES", 5_000));
    let batch_size = setting("BENCH_WEBHOOK_BATCH", 100);
    let receiver = Provider::start().await;
    receiver.always("/hook", answer(200));
    let settings =
        WebhookSettings::from_env(&Env::from_pairs([("WEBHOOK_ALLOW_LOOPBACK", "true")]))
            .unwrap_or_else(|e| panic!("{e}"));
    let store = WebhookStore::new(env.conn.clone(), env.keys.clone());
    let deps = webhooks::Deps::new(store.clone(), settings).unwrap_or_else(|e| panic!("{e}"));
    let hook = Webhook {
        id: "bench".into(),
        url: format!("{}/hook", receiver.url),
        events: WebhookEventType::ALL.to_vec(),
        secret: shared::webhooks::new_secret(),
        created_at: chrono::Utc::now(),
    };
    store
        .register(&hook, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "webhooks: {messages} messages in batches of {batch_size}, one webhook{}",
        mode_note()
    );
    let envelopes: Vec<Vec<u8>> = (0..messages)
        .map(|i| {
            let n = notification(i);
            Envelope::new(
                &n.user_id.clone(),
                Event::NotificationCreated {
                    notification: n,
                    counts: Counts::default(),
                },
            )
            .encode()
        })
        .collect();
    let batches: Vec<KafkaEvent> = envelopes
        .chunks(batch_size)
        .enumerate()
        .map(|(b, chunk)| kafka_batch(chunk, b * batch_size))
        .collect();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::with_capacity(batches.len());
    let mut errors = 0;
    let mut delivered = 0;
    for event in &batches {
        let t = Instant::now();
        let (response, stats) = webhooks::process_batch(&deps, event, chrono::Utc::now()).await;
        latencies.push(t.elapsed());
        errors += response.batch_item_failures.len() + stats.retrying + stats.interrupted;
        delivered += stats.delivered;
    }
    let wall = started.elapsed();
    let handler = Pass {
        name: "handler".into(),
        concurrency: batch_size,
        latencies,
        wall,
        errors,
    };
    println!("{}", table("batches", std::slice::from_ref(&handler)));
    println!(
        "handler: {delivered} messages delivered in {:.2} s = {:.0} messages/s (latency columns are per batch)",
        wall.as_secs_f64(),
        delivered as f64 / wall.as_secs_f64()
    );
    assert_eq!(delivered, messages, "every message delivered once");
    store.remove("bench").await.unwrap_or_default();
    delete_matching(&env.conn, &format!("{}*", env.redis.key_prefix)).await;
}
