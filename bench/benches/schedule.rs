//! Lateness of scheduled sends (issue 14): `BENCH_SCHEDULED` notifications (10,000) with `sendAt`
//! spread evenly over `BENCH_SPREAD_SECS` (60), through devstack (the real template, the `api`,
//! `scheduler`, `delivery` and `ws` binaries, the embedded broker), each to one of
//! `BENCH_CLIENTS` (200) connected WebSocket users. Lateness is the instant the
//! `notification.created` frame arrives at the client minus its `sendAt`.
//!
//! ```text
//! cargo build --profile local --bins
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --profile local -p herald-bench --bench schedule
//! ```
//!
//! `scripts/bench schedule` does all of it on a private Redis.
//!
//! 1. Starts devstack and connects the clients.
//! 2. Invokes `scheduler` once through the Invoke API: the template's `rate(1 minute)` schedule
//!    first fires a minute after devstack starts (as EventBridge does), and this run covers that
//!    first minute; the schedule's runs take over, overlapping it (which the leases make safe).
//! 3. Schedules every notification (`POST /v1/notifications` with `sendAt`, 32 at a time, from
//!    `BENCH_SENDERS` service tokens), the first `sendAt` `BENCH_LEAD_SECS` (40) ahead so all are
//!    scheduled before the first is due (a `202` after its own `sendAt` is counted and reported).
//! 4. Waits for every frame (`BENCH_DRAIN_SECS`, 30, after the last `sendAt`), then prints p50,
//!    p99 and max lateness, with lost (no frame) and duplicated frames. It asserts no time.
//!
//! Clocks: `sendAt` is wall-clock time and the frame's arrival a monotonic instant; both are
//! converted through one (wall, instant) pair taken at the start, on this one machine.
//! Everything shares the machine (clients, devstack, the functions, Redis): the figures say what
//! this machine does. Without `--bench` it is a smoke run at a small scale.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use herald_bench::fleet::{self, Client, Ledger, Protocol};
use herald_bench::{measuring, mode_note, ms, quantile, setting};
use herald_tests::stack::{http_client, Stack, FUNCTIONS};
use serde_json::json;

fn main() {
    let full = |full: usize, smoke: usize| if measuring() { full } else { smoke };
    let total = setting("BENCH_SCHEDULED", full(10_000, 50));
    let clients = setting("BENCH_CLIENTS", full(200, 5));
    let spread = Duration::from_secs(setting("BENCH_SPREAD_SECS", full(60, 5)) as u64);
    let lead = Duration::from_secs(setting("BENCH_LEAD_SECS", full(40, 10)) as u64);
    let drain = Duration::from_secs(setting("BENCH_DRAIN_SECS", 30) as u64);
    let senders = setting("BENCH_SENDERS", 20);
    if let Some(why) = herald_bench::devstack_missing(&FUNCTIONS) {
        herald_tests::skip(&why);
        return;
    }
    let stack: &'static Stack = Box::leak(Box::new(Stack::start(&[("KAFKA_BROKERS", "")])));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    println!(
        "scheduled-send lateness: {total} notifications over {} s to {clients} clients{}",
        spread.as_secs(),
        mode_note()
    );
    runtime.block_on(run(stack, total, clients, spread, lead, drain, senders));
}

async fn run(
    stack: &'static Stack,
    total: usize,
    clients: usize,
    spread: Duration,
    lead: Duration,
    drain: Duration,
    senders: usize,
) {
    let ledger = Arc::new(Ledger::new(total, 202));
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let users: Vec<String> = (0..clients).map(|i| format!("sched-{tag}-{i}")).collect();
    let fleet: Vec<Client> = users
        .iter()
        .map(|u| Client {
            url: stack.ws_url(&stack.token(u, &[], Duration::from_secs(3600))),
            token: None,
        })
        .collect();
    let connected = fleet::connect(fleet, Protocol::Herald, 16, &ledger).await;
    println!("{}", connected.line());

    // Not `Stack::invoke`: its client gives up after 60 s, the run's own length.
    let invoke_url = format!(
        "http://{}/2015-03-31/functions/scheduler/invocations",
        stack.invoke
    );
    let first_run = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .unwrap_or_default();
        let event = json!({"detail-type": "Scheduled Event"});
        if let Err(e) = client.post(invoke_url).json(&event).send().await {
            println!("the first scheduler run failed: {e}");
        }
    });

    let tokens: Vec<String> = (0..senders)
        .map(|i| {
            stack.token(
                &format!("sched-sender-{i}"),
                &["notifications:write"],
                Duration::from_secs(3600),
            )
        })
        .collect();
    let (wall0, instant0) = (Utc::now(), Instant::now());
    let first_due = wall0 + chrono::Duration::from_std(lead).unwrap_or_default();
    let step = spread.as_secs_f64() / total as f64;
    let http = http_client();
    let url = stack.http_url("/v1/notifications");
    let scheduling = Instant::now();
    let after_due = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    stream::iter(0..total)
        .for_each_concurrent(32, |i| {
            let (http, url, ledger) = (&http, &url, &ledger);
            let (tokens, users, after_due) = (&tokens, &users, &after_due);
            async move {
                let offset = Duration::from_secs_f64(step * i as f64);
                let send_at = first_due + chrono::Duration::from_std(offset).unwrap_or_default();
                let due = instant0 + lead + offset;
                ledger.scheduled[i].store(ledger.stamp(due), Ordering::Relaxed);
                let body = json!({"userId": users[i % users.len()], "type": "reminder",
                    "title": "scheduled", "body": "", "data": {"e2e": i},
                    "sendAt": send_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
                let status = match http
                    .post(url.as_str())
                    .bearer_auth(&tokens[i % tokens.len()])
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => {
                        ledger.error(format!("POST: {e}"));
                        fleet::TRANSPORT_ERROR
                    }
                };
                if Instant::now() > due {
                    after_due.fetch_add(1, Ordering::Relaxed);
                }
                ledger.status[i].store(status, Ordering::Relaxed);
            }
        })
        .await;
    println!(
        "scheduled {total} in {:.1} s ({} answered after their sendAt)",
        scheduling.elapsed().as_secs_f64(),
        after_due.load(Ordering::Relaxed)
    );

    let last_due = instant0 + lead + spread;
    let waited = ledger
        .await_frames(
            0..total,
            last_due.saturating_duration_since(Instant::now()) + drain,
        )
        .await;
    let mut late = Vec::with_capacity(total);
    let (mut refused, mut lost, mut early) = (0, 0, 0);
    for i in 0..total {
        if ledger.status[i].load(Ordering::Relaxed) != 202 {
            refused += 1;
            continue;
        }
        let (Some(due), Some(got)) = (
            Ledger::at(&ledger.scheduled[i]),
            Ledger::at(&ledger.received[i]),
        ) else {
            lost += 1;
            continue;
        };
        if got < due {
            early += 1;
        }
        late.push(Duration::from_nanos(got.saturating_sub(due)));
    }
    late.sort_unstable();
    println!(
        "lateness (frame at the client − sendAt): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} frames",
        ms(quantile(&late, 0.5)),
        ms(quantile(&late, 0.99)),
        ms(late.last().copied().unwrap_or_default()),
        late.len()
    );
    println!(
        "refused {refused}, lost {lost}, early {early}, duplicated {} (waited {:.1} s for frames)",
        ledger.duplicates.load(Ordering::Relaxed),
        waited.as_secs_f64()
    );
    if let Ok(Some(e)) = ledger.first_error.lock().map(|e| e.clone()) {
        println!("first error: {e}");
    }
    first_run.abort();
}
