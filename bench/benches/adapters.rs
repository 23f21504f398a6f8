//! Sends per second and CPU per send of each off-app adapter against its local fake (the same
//! fakes the conformance suite uses, `herald-tests`), through `SendPolicy::deliver` as the push
//! function sends:
//! - `webpush`: aes128gcm encryption, the VAPID header, HTTP/1.1 to a scripted push service;
//! - `sms`: the Twilio-shaped form POST;
//! - `ses`: the SES v2 `SendEmail` (MIME, SigV4) to an SES-shaped fake;
//! - `fcm`: FCM HTTP v1 with its cached OAuth 2 access token, to the FCM fake;
//! - `apns`: HTTP/2 over TLS with the cached ES256 provider token, to the APNs fake (which
//!   verifies every token's signature).
//!
//! The fakes run on a runtime of their own whose threads are named `fake-*`, the adapters on the
//! `bench-*` runtime, so CPU per send is split by thread (`/proc/self/task`): the adapter's side
//! (this process minus the fakes' threads: the adapter, its HTTP client, TLS, the policy) and the
//! fake's. Each pass warms up (connections, tokens) before it is measured; every send must come
//! back `sent`.
//!
//! ```text
//! cargo bench --profile local -p herald-bench --bench adapters     # scripts/bench adapters
//! ```
//!
//! Settings: `BENCH_ADAPTER_SENDS` (10,000 per adapter; SES a quarter of it), `PUSH_CONCURRENCY`
//! (64 sends in flight), `BENCH_ADAPTERS` (a comma-separated subset, all by default). Needs no
//! Redis or Kafka.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use herald_bench::{cpu, mode_note, scale, setting, table, Pass};
use herald_tests::apns::{self, ApnsFake};
use herald_tests::browser::{vapid_keys, Browser};
use herald_tests::fcm::{FcmFake, CLIENT_EMAIL};
use herald_tests::provider::{answer, ses, Provider};
use push::senders::apns::{Apns, ApnsMessage};
use push::senders::fcm::{Fcm, FcmMessage};
use push::senders::ses::Ses;
use push::senders::sms::{Sms, SmsBody};
use push::senders::webpush::{PushMessage, Vapid, WebPush};
use push::senders::{Adapter, Delivery, SendPolicy};
use serde_json::json;
use shared::addresses::{PushSubscription, PushSubscriptionRequest};
use shared::config::{AwsSettings, Env, SenderSettings, SmsSettings, VapidSettings};
use shared::egress::EgressPolicy;
use shared::model::{Notification, Priority};

/// The adapters measured, in order.
const ADAPTERS: [&str; 5] = ["webpush", "sms", "ses", "fcm", "apns"];

const TIMEOUT: Duration = Duration::from_secs(10);

/// CPU seconds so far of this process's threads, split into the fakes' (`fake-*`) and the rest.
fn thread_cpu() -> (f64, f64) {
    let (mut fakes, mut rest) = (0.0, 0.0);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Some(t) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|text| cpu::parse(&text))
            else {
                continue;
            };
            if t.comm.starts_with("fake-") {
                fakes += t.cpu;
            } else {
                rest += t.cpu;
            }
        }
    }
    (fakes, rest)
}

/// One measured pass and the CPU it used: (adapter side, fake side) in seconds.
struct Measured {
    pass: Pass,
    adapter_cpu: f64,
    fake_cpu: f64,
}

/// `sends` deliveries of `message` to `to` through `adapter`, `concurrency` in flight, after a
/// warm-up of a tenth as many.
async fn measure<A: Adapter + ?Sized>(
    name: &str,
    policy: &SendPolicy,
    adapter: &A,
    to: &A::To,
    message: &A::Message,
    sends: usize,
    concurrency: usize,
) -> Measured {
    let send = |_: usize| async {
        let t = Instant::now();
        let d = policy.deliver(adapter, to, message).await;
        (t.elapsed(), d)
    };
    let warm: Vec<(Duration, Delivery)> = stream::iter(0..(sends / 10).max(10))
        .map(send)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    if let Some((_, d)) = warm.iter().find(|(_, d)| *d != Delivery::Sent) {
        panic!("{name}: the warm-up was not sent: {d:?}");
    }
    let (fake_before, rest_before) = thread_cpu();
    let started = Instant::now();
    let results: Vec<(Duration, Delivery)> = stream::iter(0..sends)
        .map(send)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let (fake_after, rest_after) = thread_cpu();
    Measured {
        pass: Pass {
            name: name.into(),
            concurrency,
            wall,
            errors: results.iter().filter(|(_, d)| *d != Delivery::Sent).count(),
            latencies: results.into_iter().map(|(l, _)| l).collect(),
        },
        adapter_cpu: rest_after - rest_before,
        fake_cpu: fake_after - fake_before,
    }
}

fn notification() -> Notification {
    serde_json::from_value(json!({
        "id": "0193a0c4-7c1e-7000-8000-00000000be0c", "seq": 1, "userId": "bench-user",
        "type": "bench.adapters", "title": "Benchmark push",
        "body": "Measuring an adapter against its local fake.", "data": {"i": 1},
        "channels": ["PUSH", "EMAIL", "SMS"], "priority": "normal", "read": false, "seen": false,
        "archived": false, "createdAt": chrono::Utc::now()
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The fakes, started on the `fake-*` runtime.
struct Fakes {
    service: Provider,
    browser: Browser,
    sms: Provider,
    ses: Provider,
    fcm: FcmFake,
    apns: ApnsFake,
}

async fn start_fakes() -> Fakes {
    let service = Provider::start().await;
    let sms = Provider::start().await;
    sms.otherwise(answer(201).json(json!({"sid": "SMbench", "status": "queued"})));
    let ses = Provider::start().await;
    ses.otherwise(ses::sent());
    let fcm = FcmFake::start().await;
    fcm.provider.otherwise(herald_tests::fcm::sent("bench"));
    Fakes {
        service,
        browser: Browser::new(),
        sms,
        ses,
        fcm,
        apns: ApnsFake::start().await,
    }
}

async fn run(fakes: &Fakes, only: &[String], sends: usize, concurrency: usize) -> Vec<Measured> {
    let env = Env::from_pairs([("PUSH_CONCURRENCY", concurrency.to_string())]);
    let policy = SendPolicy::new(
        SenderSettings::from_env(&env)
            .unwrap_or_else(|e| panic!("{e}"))
            .send,
    );
    let n = notification();
    let mut out = Vec::new();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("webpush") {
        let vapid = Vapid::from_settings(&VapidSettings {
            subject: "mailto:bench@herald.test".into(),
            private_key: vapid_keys().0,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let egress = EgressPolicy::new(true);
        let client = egress
            .client(reqwest::Client::builder())
            .unwrap_or_else(|e| panic!("{e}"));
        let adapter = WebPush::new(vapid, client, TIMEOUT, egress);
        let request: PushSubscriptionRequest = serde_json::from_value(
            fakes
                .browser
                .subscription(&format!("{}/push/bench", fakes.service.url)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let sub = PushSubscription::from_request(&request, true, chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let message = PushMessage::new(
            &push::payload::PushPayload::of(&n),
            Priority::Normal,
            Duration::from_secs(3600),
        );
        out.push(
            measure(
                "webpush",
                &policy,
                &adapter,
                &sub,
                &message,
                sends,
                concurrency,
            )
            .await,
        );
    }
    if wanted("sms") {
        let adapter = Sms::new(
            SmsSettings {
                api_url: fakes.sms.url.clone(),
                account_sid: "ACbench".into(),
                auth_token: "token".into(),
                from: "+15005550006".into(),
            },
            reqwest::Client::new(),
            TIMEOUT,
        );
        let body = SmsBody(push::payload::sms_text(&n));
        out.push(
            measure(
                "sms",
                &policy,
                &adapter,
                "+447700900123",
                &body,
                sends,
                concurrency,
            )
            .await,
        );
    }
    if wanted("ses") {
        let aws = AwsSettings {
            access_key_id: "AKIDBENCH".into(),
            secret_access_key: "bench-secret".into(),
            session_token: None,
            region: "eu-west-1".into(),
        };
        let adapter = Ses::new(
            &aws,
            Some(&fakes.ses.url),
            "Herald <bench@herald.test>",
            TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mail = push::payload::email(&n, "https://api.herald.test/v1/unsubscribe?token=bench");
        let ses_sends = (sends / 4).max(10);
        out.push(
            measure(
                "ses",
                &policy,
                &adapter,
                "ada@example.com",
                &mail,
                ses_sends,
                concurrency,
            )
            .await,
        );
    }
    if wanted("fcm") {
        let adapter = Fcm::new(
            &fakes.fcm.settings("bench", CLIENT_EMAIL),
            reqwest::Client::new(),
            TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let message = FcmMessage::of(&n, Duration::from_secs(3600), 1);
        let token = "cXwR4jG7QnS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx6r1aJc7rWx8S9dUPhGvPxTqRmPqkZfFTsFbJ0PjGGVY3XHn1OqHQUhJLkJQq4_S2QpZPjPXYGmQ9hWQa6LvTvTr0Lw8A5M3Rv";
        out.push(
            measure(
                "fcm",
                &policy,
                &adapter,
                token,
                &message,
                sends,
                concurrency,
            )
            .await,
        );
    }
    if wanted("apns") {
        let adapter = Apns::new(&fakes.apns.settings(), TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        let message = ApnsMessage::of(&n, 1, Duration::from_secs(3600));
        let device = apns::device_token(0xbe);
        out.push(
            measure(
                "apns",
                &policy,
                &adapter,
                &device,
                &message,
                sends,
                concurrency,
            )
            .await,
        );
    }
    out
}

fn main() {
    let sends = scale(setting("BENCH_ADAPTER_SENDS", 10_000));
    let concurrency = setting("PUSH_CONCURRENCY", 64);
    let only: Vec<String> = std::env::var("BENCH_ADAPTERS")
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    if let Some(unknown) = only.iter().find(|a| !ADAPTERS.contains(&a.as_str())) {
        panic!(
            "BENCH_ADAPTERS: unknown adapter {unknown} ({})",
            ADAPTERS.join(", ")
        );
    }
    let runtime = |name: &'static str, workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{name} runtime: {e}"))
    };
    let fake_runtime = runtime("fake-runtime", 1);
    let bench_runtime = runtime("bench-runtime", 2);
    let fakes = fake_runtime.block_on(start_fakes());
    println!(
        "Adapters against their local fakes, {concurrency} sends in flight, {sends} sends each (SES {}){}",
        (sends / 4).max(10),
        mode_note()
    );
    let measured = bench_runtime.block_on(run(&fakes, &only, sends, concurrency));
    let passes: Vec<Pass> = measured.iter().map(|m| m.pass.clone()).collect();
    println!();
    println!("{}", table("sends", &passes));
    println!(
        "{:<12} {:>22} {:>19}",
        "pass", "adapter CPU µs/send", "fake CPU µs/send"
    );
    for m in &measured {
        let count = m.pass.latencies.len().max(1) as f64;
        println!(
            "{:<12} {:>22.0} {:>19.0}",
            m.pass.name,
            m.adapter_cpu * 1e6 / count,
            m.fake_cpu * 1e6 / count
        );
    }
    println!(
        "\nadapter CPU: this process minus the fakes' threads (the adapter, its HTTP client and TLS, the send policy); \
         /proc ticks are 10 ms, so a pass of under a few seconds is coarse"
    );
    drop(fakes);
    fake_runtime.shutdown_background();
}
