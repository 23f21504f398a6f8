//! Web Push sends per second against a local push endpoint (a minimal HTTP/1.1 server on
//! 127.0.0.1 that reads each request and answers `201`, like a push service accepting it).
//!
//! Three passes after a warm-up:
//! - `sender`: the Web Push sender alone, `BENCH_PUSH_SENDS` sends from `PUSH_CONCURRENCY` tasks:
//!   aes128gcm encryption (a fresh ECDH key and salt per message), the VAPID header (its JWT
//!   cached per origin), the HTTP POST and the answer;
//! - `ses`: the Amazon SES adapter alone against the same endpoint (as `SES_ENDPOINT`), a quarter
//!   as many sends: the MIME message, the SDK's SigV4 signing, the POST and the answer;
//! - `handler`: the push function's Kafka handler, `push::process_batch`, on batches of
//!   `BENCH_PUSH_BATCH` records (one notification, one subscription per user): the user's view
//!   from Redis, the gates, the send, the send record, and the outcome produced to Kafka and
//!   acknowledged. Latency is per batch; the rate is sends per second.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench push
//! ```
//!
//! Settings: `BENCH_PUSH_SENDS` (20,000), `BENCH_PUSH_NOTIFICATIONS` (5,000), `BENCH_PUSH_BATCH`
//! (100), `PUSH_CONCURRENCY` (64); `KAFKA_BROKERS` for a real Kafka. Without `REDIS_URL` it prints
//! `SKIPPED` and exits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use futures::stream::{self, StreamExt};
use herald_bench::{setting, table, Pass};
use herald_tests::TestEnv;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use push::senders::webpush::PushMessage;
use serde_json::{json, Value};
use shared::addresses::{PushKeys, PushSubscription, PushSubscriptionRequest};
use shared::config::{Env, SenderSettings};
use shared::model::{Channel, Notification, Priority};
use shared::store::{ContactBook, CreateOutcome, NewNotification};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A push service that accepts everything: reads each request fully, answers 201, keeps the
/// connection. Returns its base URL and a counter of requests.
async fn endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut line = String::new();
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    seen.fetch_add(1, Ordering::Relaxed);
                    let ok = b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
                    if write.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

/// A browser's subscription keys (a real P-256 point and a random auth secret).
fn browser_keys() -> PushKeys {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point = secret.public_key().to_encoded_point(false);
    PushKeys {
        p256dh: URL_SAFE_NO_PAD.encode(point.as_bytes()),
        auth: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
    }
}

fn subscription(endpoint: &str) -> PushSubscription {
    let req = PushSubscriptionRequest {
        endpoint: endpoint.to_owned(),
        expiration_time: None,
        keys: browser_keys(),
    };
    PushSubscription::from_request(&req, true, chrono::Utc::now())
        .unwrap_or_else(|e| panic!("subscription: {e:?}"))
}

fn notification(i: usize) -> Notification {
    serde_json::from_value(json!({
        "id": format!("bench-{i}"), "seq": 1, "userId": format!("bench-user-{i}"), "type": "bench.push",
        "title": format!("Benchmark push #{i}"), "body": "Measuring Web Push sends.", "data": {"i": i},
        "channels": ["PUSH"], "priority": "normal", "read": false, "seen": false, "archived": false,
        "createdAt": chrono::Utc::now()
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn kafka_batch(envelopes: &[Vec<u8>], first_offset: usize) -> KafkaEvent {
    let records: Vec<Value> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"topic": "push-notifications", "partition": 0, "offset": first_offset + i, "timestamp": 0,
                   "timestampType": "CREATE_TIME", "key": null, "value": STANDARD.encode(e), "headers": []})
        })
        .collect();
    serde_json::from_value(
        json!({"eventSource": "SelfManagedKafka", "records": {"push-notifications-0": records}}),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

// Over 100 lines on purpose: the two passes (the sender alone, then the handler) and their
// report read in order, sharing one environment and one endpoint.
#[tokio::main]
async fn main() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let sends = setting("BENCH_PUSH_SENDS", 20_000);
    let notifications = setting("BENCH_PUSH_NOTIFICATIONS", 5_000);
    let batch_size = setting("BENCH_PUSH_BATCH", 100);
    let concurrency = setting("PUSH_CONCURRENCY", 64);
    let (url, received) = endpoint().await;
    let vapid = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let settings = SenderSettings::from_env(&Env::from_pairs([
        ("VAPID_SUBJECT", "mailto:bench@herald.test".to_owned()),
        (
            "VAPID_PRIVATE_KEY",
            URL_SAFE_NO_PAD.encode(vapid.to_bytes()),
        ),
        ("PUSH_ALLOW_LOOPBACK", "true".to_owned()),
        ("PUSH_CONCURRENCY", concurrency.to_string()),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let deps = push::Deps::new(env.conn.clone(), env.keys.clone(), env.bus(), settings)
        .unwrap_or_else(|e| panic!("{e}"));
    let Some(webpush) = deps.senders.push.as_deref() else {
        panic!("web push is not configured");
    };
    println!(
        "Web Push to a local endpoint ({url}), {} Kafka, {concurrency} sends in flight",
        herald_tests::kafka::broker_kind()
    );

    // --- sender ---
    let subs: Vec<PushSubscription> = (0..256)
        .map(|i| subscription(&format!("{url}/push/{i}")))
        .collect();
    let ttl = Duration::from_secs(3600);
    let messages: Vec<PushMessage> = (0..256)
        .map(|i| {
            let payload = push::payload::PushPayload::of(&notification(i));
            PushMessage::new(&payload, Priority::Normal, ttl)
        })
        .collect();
    let policy = &deps.senders.policy;
    let send = |i: usize| {
        let (sub, message) = (&subs[i % subs.len()], &messages[i % messages.len()]);
        async move {
            let t = Instant::now();
            let d = policy.deliver(webpush, sub, message).await;
            (t.elapsed(), d == push::senders::Delivery::Sent)
        }
    };
    // Warm-up: connections, JWT cache.
    stream::iter(0..500)
        .map(send)
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = stream::iter(0..sends)
        .map(send)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let sender = Pass {
        name: "sender".into(),
        concurrency,
        wall: started.elapsed(),
        errors: results.iter().filter(|(_, ok)| !ok).count(),
        latencies: results.into_iter().map(|(d, _)| d).collect(),
    };

    // --- SES adapter ---
    let aws = shared::config::AwsSettings {
        access_key_id: "AKIDBENCH".into(),
        secret_access_key: "bench-secret".into(),
        session_token: None,
        region: "eu-west-1".into(),
    };
    let ses = push::senders::ses::Ses::new(
        &aws,
        Some(&url),
        "Herald <bench@herald.test>",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mail = push::payload::email(
        &notification(0),
        "https://api.herald.test/v1/unsubscribe?token=bench",
    );
    let send_mail = |_: usize| async {
        let t = Instant::now();
        let d = policy.deliver(&ses, "bench@example.com", &mail).await;
        (t.elapsed(), d == push::senders::Delivery::Sent)
    };
    stream::iter(0..200)
        .map(send_mail)
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = stream::iter(0..(sends / 4).max(1))
        .map(send_mail)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ses_pass = Pass {
        name: "ses".into(),
        concurrency,
        wall: started.elapsed(),
        errors: results.iter().filter(|(_, ok)| !ok).count(),
        latencies: results.into_iter().map(|(d, _)| d).collect(),
    };

    // --- handler ---
    let store = env.store(TestEnv::unlimited());
    let contacts = ContactBook::new(env.conn.clone(), env.keys.clone());
    let mut envelopes = Vec::with_capacity(notifications);
    for i in 0..notifications {
        let user = format!("bench-push-{i}");
        contacts
            .subscribe(&user, &subscription(&format!("{url}/push/u{i}")), 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let new = NewNotification {
            user_id: user,
            kind: "bench.push".into(),
            title: format!("Benchmark push #{i}"),
            body: "Measuring the push handler.".into(),
            data: json!({"i": i}),
            channels: vec![Channel::Push],
            priority: Priority::Normal,
            action_url: None,
            group_key: None,
            expires_at: None,
            escalate: None,
            digest: None,
        };
        match store.create("bench", new, None).await {
            Ok(CreateOutcome::Created { change, .. }) => envelopes.push(change.envelope.encode()),
            other => panic!("create: {other:?}"),
        }
    }
    let batches: Vec<KafkaEvent> = envelopes
        .chunks(batch_size)
        .enumerate()
        .map(|(b, chunk)| kafka_batch(chunk, b * batch_size))
        .collect();
    let before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for event in &batches {
        let t = Instant::now();
        let (response, stats) = push::process_batch(&deps, event, chrono::Utc::now()).await;
        latencies.push(t.elapsed());
        errors += response.batch_item_failures.len() + stats.failed + stats.retried;
    }
    let wall = started.elapsed();
    let delivered = received.load(Ordering::Relaxed) - before;
    let handler = Pass {
        name: "handler".into(),
        concurrency: batch_size,
        latencies,
        wall,
        errors,
    };
    println!();
    println!("{}", table("sends", &[sender, ses_pass]));
    println!("{}", table("batches", std::slice::from_ref(&handler)));
    println!(
        "handler: {delivered} pushes in {:.2} s = {:.0} sends/s ({batch_size} records per batch; latency columns are per batch)",
        wall.as_secs_f64(),
        delivered as f64 / wall.as_secs_f64()
    );
    // Clean up this run's keys.
    let mut conn = env.conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", env.redis.key_prefix))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        for k in chunk {
            let _: Result<i64, _> = redis::cmd("DEL").arg(k).query_async(&mut conn).await;
        }
    }
}
