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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_bench::quantile;
use herald_tests::stack::{Stack, FUNCTIONS};
use rand::Rng;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A positive integer from the environment, or `default`.
fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name}={v:?} is not a positive integer")),
    }
}

/// What one run does.
#[derive(Debug, Clone)]
struct Settings {
    measuring: bool,
    clients: usize,
    rate: u64,
    seconds: u64,
    window_ms: u64,
    senders: usize,
    max_instances: u64,
    connect_concurrency: usize,
    drain: Duration,
    out: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        // `cargo bench` passes `--bench`; without it this is a smoke run, not a measurement.
        let measuring = std::env::args().any(|a| a == "--bench");
        let full = |full: u64, smoke: u64| if measuring { full } else { smoke };
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
            measuring,
            clients: setting("BENCH_CLIENTS", full(1_000, 20)) as usize,
            rate: setting("BENCH_RATE", full(1_000, 50)),
            seconds: setting("BENCH_SECONDS", full(10, 2)),
            window_ms,
            senders: setting("BENCH_SENDERS", 20) as usize,
            max_instances: setting("BENCH_MAX_INSTANCES", 4),
            connect_concurrency: setting("BENCH_CONNECT_CONCURRENCY", 16) as usize,
            drain: Duration::from_secs(setting("BENCH_DRAIN_SECS", 30)),
            out,
        }
    }
}

/// Why the bench cannot run here, if it cannot: no Redis, or the function binaries are missing
/// from this binary's profile folder (`cargo build --profile local --bins` puts them there).
fn missing() -> Option<String> {
    if std::env::var("REDIS_URL").map_or(true, |u| u.is_empty()) {
        return Some("REDIS_URL is not set (scripts/bench starts Redis and sets it)".into());
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // <target>/<profile>/deps/<bench binary>
    let dir = exe.parent().and_then(|p| p.parent())?.to_path_buf();
    FUNCTIONS.iter().find(|f| !dir.join(f).is_file()).map(|f| {
        format!(
            "{}/{f} is missing: build the functions with this profile first \
             (cargo build --profile local --bins; scripts/bench does)",
            dir.display()
        )
    })
}

/// What happened to each notification, as nanoseconds since `epoch` (0 = not yet), written by
/// the sender's tasks and the clients' readers without a lock.
struct Ledger {
    epoch: Instant,
    scheduled: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
    answered: Vec<AtomicU64>,
    received: Vec<AtomicU64>,
    /// HTTP status of the create; 0 until answered, 1 for a transport error.
    status: Vec<AtomicU16>,
    /// Frames for an index that had already arrived (the client drops them by `seq`).
    duplicates: AtomicUsize,
    /// Frames carrying no index of this run.
    strangers: AtomicUsize,
    /// Connections the server closed while the bench ran.
    closed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

const TRANSPORT_ERROR: u16 = 1;

impl Ledger {
    fn new(len: usize) -> Ledger {
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Ledger {
            epoch: Instant::now(),
            scheduled: zeros(len),
            sent: zeros(len),
            answered: zeros(len),
            received: zeros(len),
            status: (0..len).map(|_| AtomicU16::new(0)).collect(),
            duplicates: AtomicUsize::new(0),
            strangers: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Nanoseconds since the epoch, never 0 (0 means "not yet").
    fn stamp(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.epoch).as_nanos() as u64).max(1)
    }

    fn receive(&self, index: u64, at: Instant) {
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.received.get(i))
        else {
            self.strangers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slot
            .compare_exchange(0, self.stamp(at), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn error(&self, text: String) {
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(text);
        }
    }

    fn at(v: &AtomicU64) -> Option<u64> {
        Some(v.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }
}

/// Reads one client's frames until the connection ends, stamping each `notification.created`.
async fn read_frames(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    ledger: Arc<Ledger>,
) {
    while let Some(message) = socket.next().await {
        let at = Instant::now();
        match message {
            Ok(Message::Text(text)) => {
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    ledger.strangers.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if frame["type"] != "notification.created" {
                    continue;
                }
                match frame["notification"]["data"]["e2e"].as_u64() {
                    Some(index) => ledger.receive(index, at),
                    None => {
                        ledger.strangers.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    ledger.closed.fetch_add(1, Ordering::Relaxed);
}

/// Opens every client's WebSocket, `connect_concurrency` handshakes at a time, each with its
/// reader task, and prints how long that took.
async fn connect_clients(stack: &Stack, users: &[String], s: &Settings, ledger: &Arc<Ledger>) {
    let urls: Vec<String> = users
        .iter()
        .map(|u| stack.ws_url(&stack.token(u, &[], Duration::from_secs(3600))))
        .collect();
    let started = Instant::now();
    let handshakes: Vec<Duration> = futures::stream::iter(urls)
        .map(|url| async move {
            let t = Instant::now();
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((socket, _)) => (socket, t.elapsed()),
                Err(e) => panic!("WebSocket connect: {e}"),
            }
        })
        .buffer_unordered(s.connect_concurrency)
        .map(|(socket, took)| {
            tokio::spawn(read_frames(socket, ledger.clone()));
            took
        })
        .collect()
        .await;
    let wall = started.elapsed();
    let mut sorted = handshakes;
    sorted.sort_unstable();
    println!(
        "connected  {} clients in {:.1} s ({:.0}/s; handshake incl. $connect p50 {:.1} ms, p99 {:.1} ms)",
        sorted.len(),
        wall.as_secs_f64(),
        sorted.len() as f64 / wall.as_secs_f64(),
        ms(quantile(&sorted, 0.5)),
        ms(quantile(&sorted, 0.99)),
    );
}

/// Sends notifications `range` at `rate` per second on a fixed schedule; returns once every
/// request has been answered (or failed).
async fn send(
    http: &reqwest::Client,
    url: &str,
    tokens: &[String],
    users: &[String],
    range: std::ops::Range<usize>,
    rate: u64,
    ledger: &Arc<Ledger>,
) {
    let mut rng = rand::thread_rng();
    // Bodies are rendered before the clock starts, so the schedule only spawns requests.
    let requests: Vec<(usize, String, String)> = range
        .clone()
        .map(|i| {
            let user = &users[rng.gen_range(0..users.len())];
            let body = json!({
                "userId": user,
                "type": "bench.e2e",
                "title": format!("End-to-end #{i}"),
                "body": "Measuring POST to frame.",
                "channels": ["IN_APP"],
                "data": {"e2e": i},
            });
            (i, tokens[i % tokens.len()].clone(), body.to_string())
        })
        .collect();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut inflight = Vec::with_capacity(requests.len());
    for (n, (i, token, body)) in requests.into_iter().enumerate() {
        let due = start + period.mul_f64(n as f64);
        tokio::time::sleep_until(due).await;
        ledger.scheduled[i].store(ledger.stamp(due.into_std()), Ordering::Relaxed);
        let (http, url, ledger) = (http.clone(), url.to_owned(), ledger.clone());
        inflight.push(tokio::spawn(async move {
            ledger.sent[i].store(ledger.stamp(Instant::now()), Ordering::Relaxed);
            let response = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            ledger.answered[i].store(ledger.stamp(Instant::now()), Ordering::Relaxed);
            let status = match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    if status != 201 {
                        let text = r.text().await.unwrap_or_default();
                        ledger.error(format!("#{i}: {status} {text}"));
                    }
                    status
                }
                Err(e) => {
                    ledger.error(format!("#{i}: {e}"));
                    TRANSPORT_ERROR
                }
            };
            ledger.status[i].store(status, Ordering::Relaxed);
        }));
    }
    for task in futures::future::join_all(inflight).await {
        task.unwrap_or_else(|e| panic!("a request task failed: {e}"));
    }
}

/// Waits until every `201` of `range` has its frame, or `drain` passes; returns how long it took.
async fn await_frames(ledger: &Ledger, range: std::ops::Range<usize>, drain: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < drain {
        let pending = range.clone().any(|i| {
            ledger.status[i].load(Ordering::Relaxed) == 201
                && Ledger::at(&ledger.received[i]).is_none()
        });
        if !pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The process id of the Redis server at `url` (`INFO server`), to account its CPU time.
async fn redis_pid(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time by process (and, for this process, by thread group), from `/proc`.
mod cpu {
    use std::collections::BTreeMap;

    /// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
    const TICKS: f64 = 100.0;

    /// `(comm, ppid, utime + stime ticks)` of a `/proc/<pid>/stat` or `task/<tid>/stat` text.
    fn parse(stat: &str) -> Option<(String, u32, u64)> {
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let comm = stat.get(open + 1..close)?.to_owned();
        let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
        let ppid = rest.get(1)?.parse().ok()?;
        let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        Some((comm, ppid, ticks))
    }

    /// CPU seconds so far, by label, plus the machine's busy and total CPU seconds.
    #[derive(Debug, Clone, Default)]
    pub struct Snapshot {
        pub by_label: BTreeMap<String, f64>,
        pub instances: BTreeMap<String, usize>,
        pub machine_busy: f64,
        pub machine_total: f64,
    }

    /// This process's threads are labelled by name: the main thread and the bench runtime's
    /// threads (`bench-*`) are the load generator; everything else here is devstack (its runtime,
    /// the embedded broker, librdkafka's threads).
    /// Child processes are labelled by name (the function binaries), and `redis` is the bench's
    /// Redis server (other Redis servers on the machine count as other processes).
    pub fn snapshot(redis: Option<u32>) -> Snapshot {
        let mut s = Snapshot::default();
        let me = std::process::id();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                let main = task.file_name().to_str().and_then(|n| n.parse().ok()) == Some(me);
                if let Some((comm, _, ticks)) = parse(&text) {
                    let label = if main || comm.starts_with("bench-") {
                        "bench: clients + sender (this process)"
                    } else if comm.starts_with("rdk:") || comm.starts_with("devstack-kafka") {
                        "devstack: embedded Kafka + its consumers (librdkafka)"
                    } else {
                        "devstack: gateways, runtime API, mappings"
                    };
                    *s.by_label.entry(label.into()).or_default() += ticks as f64 / TICKS;
                }
            }
        }
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(p.path().join("stat")) else {
                    continue;
                };
                let Some((comm, ppid, ticks)) = parse(&text) else {
                    continue;
                };
                let label = if ppid == me {
                    *s.instances.entry(comm.clone()).or_default() += 1;
                    format!("function {comm} (all instances)")
                } else if Some(pid) == redis {
                    "redis-server (REDIS_URL)".to_owned()
                } else {
                    continue;
                };
                *s.by_label.entry(label).or_default() += ticks as f64 / TICKS;
            }
        }
        if let Some(line) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
        {
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let total: f64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
            s.machine_total = total / TICKS;
            s.machine_busy = (total - idle) / TICKS;
        }
        s
    }

    /// What each label used between two snapshots, as a share of one core, busiest first;
    /// `other` is the machine's busy time that none of the labels account for.
    pub fn report(before: &Snapshot, after: &Snapshot, wall: f64, cores: usize) -> String {
        let mut rows: Vec<(String, f64)> = after
            .by_label
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v - before.by_label.get(k).copied().unwrap_or(0.0),
                )
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ours: f64 = rows.iter().map(|r| r.1).sum();
        let busy = after.machine_busy - before.machine_busy;
        let total = after.machine_total - before.machine_total;
        let mut out = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "cpu        {cores} cores; machine busy {:.0}% of all cores over the {wall:.1} s window",
            if total > 0.0 { 100.0 * busy / total } else { 0.0 }
        );
        for (label, secs) in rows {
            let _ = writeln!(out, "  {:>5.0}% of a core  {label}", 100.0 * secs / wall);
        }
        let _ = writeln!(
            out,
            "  {:>5.0}% of a core  other processes on the machine",
            100.0 * (busy - ours).max(0.0) / wall
        );
        out
    }
}

fn main() {
    let s = Settings::from_env();
    if let Some(why) = missing() {
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
    let warm_up = (s.rate as usize).max(10);
    let total = (s.rate * s.seconds) as usize;
    let measured = warm_up..warm_up + total;
    let ledger = Arc::new(Ledger::new(warm_up + total));

    let mode = if s.measuring {
        ""
    } else {
        " (smoke run; `cargo bench` measures)"
    };
    println!("Herald end to end: POST /v1/notifications -> notification.created frame at the client, through devstack{mode}");
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

    connect_clients(stack, &users, s, &ledger).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let url = stack.http_url("/v1/notifications");

    send(
        &http,
        &url,
        &tokens,
        &users,
        0..warm_up,
        (s.rate / 2).max(1),
        &ledger,
    )
    .await;
    await_frames(&ledger, 0..warm_up, s.drain).await;

    let redis_pid = redis_pid(&stack.redis_url).await;
    let before = cpu::snapshot(redis_pid);
    let t0 = Instant::now();
    send(
        &http,
        &url,
        &tokens,
        &users,
        measured.clone(),
        s.rate,
        &ledger,
    )
    .await;
    let sent_wall = t0.elapsed();
    let drained = await_frames(&ledger, measured.clone(), s.drain).await;
    let window_wall = t0.elapsed();
    let after = cpu::snapshot(redis_pid);

    let summary = Summary::of(&ledger, measured.clone());
    summary.print(s, sent_wall, drained);
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

    match write_csv(&ledger, measured, s) {
        Ok(n) => println!("\nwrote {n} latencies to {}", s.out.display()),
        Err(e) => println!("\ncould not write {}: {e}", s.out.display()),
    }
}

/// The measured figures of one run.
struct Summary {
    /// POST start to frame: the figure.
    latencies: Vec<Duration>,
    /// POST start to its `201`: the create through the HTTP API.
    created: Vec<Duration>,
    /// `201` to frame: Kafka, the trigger, `delivery` and `@connections` (0 when the frame came
    /// first, which it may: the api answers after Kafka's acknowledgement, delivery needs no more).
    after_201: Vec<Duration>,
    /// POST start minus its scheduled instant: how far the load generator fell behind.
    lag: Vec<Duration>,
    first_send: u64,
    last_send: u64,
    statuses: BTreeMap<u16, usize>,
    lost: usize,
    without_201: usize,
}

impl Summary {
    fn of(ledger: &Ledger, range: std::ops::Range<usize>) -> Summary {
        let mut s = Summary {
            latencies: Vec::with_capacity(range.len()),
            created: Vec::with_capacity(range.len()),
            after_201: Vec::with_capacity(range.len()),
            lag: Vec::with_capacity(range.len()),
            first_send: u64::MAX,
            last_send: 0,
            statuses: BTreeMap::new(),
            lost: 0,
            without_201: 0,
        };
        let between = |a: u64, b: u64| Duration::from_nanos(b.saturating_sub(a));
        for i in range {
            let status = ledger.status[i].load(Ordering::Relaxed);
            *s.statuses.entry(status).or_default() += 1;
            let Some(sent) = Ledger::at(&ledger.sent[i]) else {
                continue;
            };
            s.first_send = s.first_send.min(sent);
            s.last_send = s.last_send.max(sent);
            if let Some(scheduled) = Ledger::at(&ledger.scheduled[i]) {
                s.lag.push(between(scheduled, sent));
            }
            let answered = Ledger::at(&ledger.answered[i]).filter(|_| status == 201);
            if let Some(answered) = answered {
                s.created.push(between(sent, answered));
            }
            match (Ledger::at(&ledger.received[i]), answered) {
                (Some(received), answered) => {
                    s.latencies.push(between(sent, received));
                    match answered {
                        Some(answered) => s.after_201.push(between(answered, received)),
                        None => s.without_201 += 1,
                    }
                }
                (None, Some(_)) => s.lost += 1,
                (None, None) => {}
            }
        }
        for v in [
            &mut s.latencies,
            &mut s.created,
            &mut s.after_201,
            &mut s.lag,
        ] {
            v.sort_unstable();
        }
        s
    }

    fn print(&self, s: &Settings, sent_wall: Duration, drained: Duration) {
        let sends = self.lag.len();
        let span = Duration::from_nanos(self.last_send.saturating_sub(self.first_send));
        let achieved = if span.is_zero() {
            0.0
        } else {
            (sends.saturating_sub(1)) as f64 / span.as_secs_f64()
        };
        let mut statuses = String::new();
        for (status, n) in &self.statuses {
            let name = match *status {
                0 => "unanswered".to_owned(),
                TRANSPORT_ERROR => "transport error".to_owned(),
                s => s.to_string(),
            };
            let sep = if statuses.is_empty() { "" } else { ", " };
            let _ = write!(statuses, "{sep}{name}: {n}");
        }
        println!(
            "sent       {sends} POSTs at {achieved:.0}/s achieved (target {}/s), the last answered {:.1} s after the first was sent; generator lag p99 {:.1} ms, max {:.1} ms",
            s.rate,
            sent_wall.as_secs_f64(),
            ms(quantile(&self.lag, 0.99)),
            ms(self.lag.last().copied().unwrap_or_default()),
        );
        println!("answers    {statuses}");
        println!(
            "frames     {} received; lost (201, no frame within {} s): {}; frame without a 201: {}; last frame {:.1} s after the last answer",
            self.latencies.len(),
            s.drain.as_secs(),
            self.lost,
            self.without_201,
            drained.as_secs_f64()
        );
        println!();
        println!(
            "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9}",
            format!("window {} ms", s.window_ms),
            "n",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        for (name, v) in [
            ("POST -> frame", &self.latencies),
            ("  POST -> 201", &self.created),
            ("  201 -> frame", &self.after_201),
        ] {
            println!(
                "{name:<24} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                v.len(),
                ms(quantile(v, 0.50)),
                ms(quantile(v, 0.90)),
                ms(quantile(v, 0.99)),
                ms(v.last().copied().unwrap_or_default()),
            );
        }
        println!();
    }
}

/// One row per measured notification that arrived: when its POST started (ms since the first
/// one), how long its `201` took (empty without one) and its end-to-end latency;
/// `bench/plot/latency.py` reads these.
fn write_csv(
    ledger: &Ledger,
    range: std::ops::Range<usize>,
    s: &Settings,
) -> std::io::Result<usize> {
    let first = range
        .clone()
        .filter_map(|i| Ledger::at(&ledger.sent[i]))
        .min()
        .unwrap_or_default();
    let mut out = format!(
        "# window_ms={} clients={} rate={} seconds={} max_instances={}\nindex,sent_ms,created_ms,latency_ms\n",
        s.window_ms, s.clients, s.rate, s.seconds, s.max_instances
    );
    let millis = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
    let mut rows = 0;
    for i in range {
        let (Some(sent), Some(received)) =
            (Ledger::at(&ledger.sent[i]), Ledger::at(&ledger.received[i]))
        else {
            continue;
        };
        let created = Ledger::at(&ledger.answered[i])
            .filter(|_| ledger.status[i].load(Ordering::Relaxed) == 201)
            .map(|a| format!("{:.3}", millis(sent, a)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{i},{:.3},{created},{:.3}",
            millis(first, sent),
            millis(sent, received)
        );
        rows += 1;
    }
    if let Some(dir) = s.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&s.out, out)?;
    Ok(rows)
}
