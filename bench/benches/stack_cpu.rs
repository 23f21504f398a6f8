//! Issue 11's instrument: what one notification costs end to end, in latency and in CPU, with
//! Herald run as `scripts/dev` runs it, and the same harness against Centrifugo for a peer ratio.
//!
//! ```text
//! scripts/bench cpu                          Herald alone, every phase
//! scripts/bench peer                         also Centrifugo v6.9.1 (built with `go install`),
//!                                            at the same rates, and the ratio table
//! BENCH_PHASES=idle,200 BENCH_CLIENTS=200 BENCH_SECONDS=5 scripts/bench cpu
//!                                            a quick run
//! ```
//!
//! By hand: `cargo build --profile local --bins` (devstack and the function binaries), then
//! `cargo bench --profile local -p herald-bench --bench stack_cpu`, with `CENTRIFUGO_BIN` set for
//! the peer run. No `REDIS_URL` is needed: devstack launches its own.
//!
//! How it measures:
//! 1. Starts the `devstack` binary of this profile as a separate process (`devstack serve`, the
//!    real `template.yaml` with its defaults, its own redis-server and embedded Kafka, the
//!    function binaries as its children) on free ports, with a fresh data folder.
//! 2. Connects `BENCH_CLIENTS` (1,000) WebSocket clients in this process, one user each.
//! 3. Warms up (cold starts, consumer group), then runs `BENCH_PHASES` in order:
//!    - `idle`: `BENCH_IDLE_SECS` (10) with the clients connected and nothing sent;
//!    - a number, e.g. `200`: that many notifications per second for `BENCH_SECONDS` (10), open
//!      loop, each to a random user; latency from just before the POST to the frame at the
//!      client, matched by the index in `data.e2e`, from `BENCH_SENDERS` (64) service tokens so
//!      no sender reaches the api's 100/s per-sender limit below 6,400/s;
//!    - `ramp`: `BENCH_RAMP_RATES` (200,300,500,750,1000,1500,2000,3000), `BENCH_RAMP_SECS` (10)
//!      each, up to the first rate where p99 > 100 ms or anything is lost; the highest rate that
//!      held is the capacity;
//!    - `recovery`: on a newly started stack (so the ramp's overload cannot leak into it), a
//!      fresh `BENCH_RECOVERY_RATE` (500) run, `BENCH_OVERLOAD_SECS` (30) at twice the capacity
//!      (the ramp's, else `BENCH_CAPACITY`, 500), the drain, then the same run again; it always
//!      runs last.
//! 4. Reads each process's utime + stime from `/proc` before and after every window (send time
//!    plus the drain until the last frame), summed over each server's process tree: devstack
//!    itself, each function binary over its instances, redis-server; the bench process (clients
//!    and sender) apart. It prints every window's latency and CPU split, then the issue's table.
//! 5. Around the `idle` and numeric windows it also reads devstack's Redis's own counters and
//!    prints where Redis's CPU went, per notification (per second when idle): CPU on its main and
//!    background threads, round trips, AOF bytes, each command's calls and µs
//!    (`INFO commandstats`); with `BENCH_REDIS_SCRIPTS=1`, also each top-level command and each
//!    script by name, from the slow log set to log every command for the window (which costs
//!    Redis a little: compare Redis's CPU figure between runs without it).
//! 6. With `CENTRIFUGO_BIN`: starts Centrifugo (in-memory engine, HTTP API key, HS256 connection
//!    JWTs, each connection subscribed by the server to its personal channel `#<user>`), runs the
//!    `idle` and numeric phases against it with the same fleet and sender (publish over
//!    `POST /api/publish`), and prints Herald/Centrifugo at each rate.
//!
//! A message that was accepted and whose frame never came within `BENCH_DRAIN_SECS` (30) is
//! lost, and reported. It asserts no time. Without `--bench` (`cargo test --benches`) it is a
//! smoke run: 20 clients, `idle,50` for 2 s each. Everything shares this machine's cores; the
//! figures say what this machine does, not AWS. The fleet, the sender, `/proc` accounting and the
//! servers live in `bench/src`.

use std::path::PathBuf;
use std::time::Duration;

use herald_bench::redis_cost;
use herald_bench::server::Server;
use herald_bench::window::{Run, Window};
use herald_bench::{measuring, mode_note, ms, setting};
use herald_tests::stack::FUNCTIONS;

/// The p99 a rate must keep to count as held by the ramp.
const P99_LIMIT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Rate(usize),
    Ramp,
    Recovery,
}

#[derive(Debug, Clone)]
struct Settings {
    phases: Vec<Phase>,
    clients: usize,
    seconds: f64,
    idle_secs: f64,
    ramp_rates: Vec<usize>,
    ramp_secs: f64,
    recovery_rate: usize,
    overload_secs: f64,
    capacity: usize,
    senders: usize,
    concurrency: usize,
    drain: Duration,
    centrifugo: Option<PathBuf>,
    redis_scripts: bool,
}

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned())
        .collect()
}

fn rate(name: &str, v: &str) -> usize {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or_else(|| panic!("{name}: {v:?} is not a rate per second"))
}

impl Settings {
    fn from_env() -> Settings {
        let full = |full: usize, smoke: usize| if measuring() { full } else { smoke };
        let phases = list(
            "BENCH_PHASES",
            if measuring() {
                "idle,200,ramp,recovery"
            } else {
                "idle,50"
            },
        )
        .iter()
        .map(|p| match p.as_str() {
            "idle" => Phase::Idle,
            "ramp" => Phase::Ramp,
            "recovery" => Phase::Recovery,
            n => Phase::Rate(rate("BENCH_PHASES", n)),
        })
        .collect();
        let ramp_rates = list("BENCH_RAMP_RATES", "200,300,500,750,1000,1500,2000,3000")
            .iter()
            .map(|r| rate("BENCH_RAMP_RATES", r))
            .collect();
        Settings {
            phases,
            clients: setting("BENCH_CLIENTS", full(1_000, 20)),
            seconds: setting("BENCH_SECONDS", full(10, 2)) as f64,
            idle_secs: setting("BENCH_IDLE_SECS", full(10, 2)) as f64,
            ramp_rates,
            ramp_secs: setting("BENCH_RAMP_SECS", 10) as f64,
            recovery_rate: setting("BENCH_RECOVERY_RATE", 500),
            overload_secs: setting("BENCH_OVERLOAD_SECS", 30) as f64,
            capacity: setting("BENCH_CAPACITY", 500),
            senders: setting("BENCH_SENDERS", 64),
            concurrency: setting("BENCH_CONNECT_CONCURRENCY", 16),
            drain: Duration::from_secs(setting("BENCH_DRAIN_SECS", 30) as u64),
            centrifugo: std::env::var_os("CENTRIFUGO_BIN")
                .filter(|b| !b.is_empty())
                .map(PathBuf::from),
            redis_scripts: std::env::var("BENCH_REDIS_SCRIPTS").is_ok_and(|v| v == "1"),
        }
    }

    /// Messages every phase may send, warm-up included: the ledger's size.
    fn capacity_needed(&self) -> usize {
        let top = self.ramp_rates.iter().max().copied().unwrap_or(0);
        let sends: f64 = self
            .phases
            .iter()
            .map(|p| match p {
                Phase::Idle => 0.0,
                Phase::Rate(r) => *r as f64 * self.seconds,
                Phase::Ramp => self.ramp_rates.iter().sum::<usize>() as f64 * self.ramp_secs,
                Phase::Recovery => {
                    2.0 * self.recovery_rate as f64 * self.seconds
                        + 2.0 * top.max(self.capacity) as f64 * self.overload_secs
                }
            })
            .sum();
        sends as usize + 1_000
    }
}

/// The folder of this profile's binaries (`<target>/<profile>`), and why it cannot run, if so.
fn bin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // <target>/<profile>/deps/<bench binary>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .ok_or("no profile folder")?;
    match std::iter::once("devstack")
        .chain(FUNCTIONS)
        .find(|f| !dir.join(f).is_file())
    {
        Some(f) => Err(format!(
            "{}/{f} is missing: build with this profile first (cargo build --profile local --bins; scripts/bench does)",
            dir.display()
        )),
        None => Ok(dir),
    }
}

fn main() {
    let s = Settings::from_env();
    let dir = match bin_dir() {
        Ok(dir) => dir,
        Err(why) => return herald_tests::skip(&why),
    };
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Herald end to end as `scripts/dev` runs it: CPU and latency per notification{}",
        mode_note()
    );
    println!(
        "  load     {} WebSocket clients (one user each) in this process; open loop, random recipient, {} senders; phases {:?}",
        s.clients, s.senders, s.phases
    );
    println!(
        "  host     {cores} CPUs, shared by the clients, the sender and every server process\n"
    );

    let start = || Server::herald(&dir, &root.join("template.yaml"), &root.join("web"), &[]);
    let herald = start();
    let mut results = runtime.block_on(herald_phases(&herald, &s));
    drop(herald);
    if s.phases.contains(&Phase::Recovery) {
        let herald = start();
        results.recovery = runtime.block_on(recovery(&herald, &s, results.capacity));
        drop(herald);
    }
    print!("{}", figures(&results));
    let Some(binary) = &s.centrifugo else { return };
    let centrifugo = Server::centrifugo(binary);
    let peer = runtime.block_on(peer_phases(&centrifugo, &s));
    drop(centrifugo);
    print!("{}", ratio_table(&results.rates, &peer));
}

/// What the Herald phases found, for the summary tables.
#[derive(Default)]
struct Results {
    idle: Option<Window>,
    rates: Vec<Window>,
    capacity: Option<usize>,
    recovery: Option<(Window, Window)>,
}

async fn warm_up(run: &mut Run<'_>) {
    // Cold starts, connection pools, the consumer group: not part of any window.
    let _ = run.window("warm-up", 50.0, 2.0).await;
    let _ = run.window("warm-up", 100.0, 2.0).await;
}

/// The client fleet connected to `server`, warmed up.
async fn connected<'a>(server: &'a Server, s: &Settings) -> Run<'a> {
    let mut run = Run::connect(
        server,
        s.clients,
        s.senders,
        s.capacity_needed(),
        s.concurrency,
        s.drain,
    )
    .await;
    warm_up(&mut run).await;
    run
}

/// Devstack's Redis's counters around a window ([`redis_cost`]), and its slow log when asked.
struct RedisWatch {
    conn: Option<redis::aio::MultiplexedConnection>,
    scripts: bool,
}

impl RedisWatch {
    async fn of(server: &Server, s: &Settings) -> RedisWatch {
        let url = server
            .roots()
            .first()
            .and_then(|(_, pid)| redis_cost::url_in_tree(*pid));
        let conn = match url {
            Some(url) => redis_cost::connect(&url).await,
            None => None,
        };
        if conn.is_none() {
            println!("(devstack's redis-server not found: no Redis breakdown)");
        }
        RedisWatch {
            conn,
            scripts: s.redis_scripts,
        }
    }

    async fn before(&self) -> Option<(redis_cost::Counters, Option<redis_cost::SlowLog>)> {
        let conn = self.conn.as_ref()?;
        let log = match self.scripts {
            true => {
                let catalog = shared::store::script_catalog()
                    .into_iter()
                    .map(|e| (e.name.to_owned(), e.sha));
                Some(redis_cost::SlowLog::start(conn, catalog).await)
            }
            false => None,
        };
        Some((redis_cost::counters(conn).await, log))
    }

    /// The breakdown since `before`, over `w`.
    async fn after(
        &self,
        before: Option<(redis_cost::Counters, Option<redis_cost::SlowLog>)>,
        w: &Window,
    ) {
        let (Some(conn), Some((before, log))) = (self.conn.as_ref(), before) else {
            return;
        };
        let after = redis_cost::counters(conn).await;
        let logged = match log {
            Some(log) => Some(log.take().await),
            None => None,
        };
        println!(
            "{}",
            redis_cost::report(
                &before,
                &after,
                w.summary.sends(),
                w.wall,
                logged.as_deref()
            )
        );
    }
}

async fn herald_phases(server: &Server, s: &Settings) -> Results {
    let mut run = connected(server, s).await;
    let watch = RedisWatch::of(server, s).await;
    let mut r = Results::default();
    for phase in &s.phases {
        match phase {
            Phase::Idle => {
                let before = watch.before().await;
                let w = run.idle(s.idle_secs).await;
                print_window("Herald idle", &w);
                watch.after(before, &w).await;
                r.idle = Some(w);
            }
            Phase::Rate(rate) => {
                let before = watch.before().await;
                if let Some(w) = run
                    .window(&format!("{rate}/s"), *rate as f64, s.seconds)
                    .await
                {
                    print_window(&format!("Herald {rate}/s"), &w);
                    watch.after(before, &w).await;
                    r.rates.push(w);
                }
            }
            Phase::Ramp => r.capacity = ramp(&mut run, s).await,
            Phase::Recovery => {}
        }
    }
    println!("{}\n", run.anomalies());
    r
}

async fn ramp(run: &mut Run<'_>, s: &Settings) -> Option<usize> {
    let mut held = None;
    for rate in &s.ramp_rates {
        let Some(w) = run
            .window(&format!("ramp {rate}/s"), *rate as f64, s.ramp_secs)
            .await
        else {
            break;
        };
        let holds = w.holds(P99_LIMIT);
        println!(
            "ramp {rate:>5}/s  p50 {:>8.1} ms  p99 {:>8.1} ms  lost or refused {:>6}  {:.3} ms CPU/message  {}",
            ms(w.summary.p(0.5)),
            ms(w.summary.p(0.99)),
            w.summary.failed(),
            w.cpu_per_message_ms(),
            if holds { "held" } else { "did not hold" }
        );
        if !holds {
            break;
        }
        held = Some(*rate);
    }
    match held {
        Some(rate) => {
            println!("capacity: {rate}/s (the highest rate with p99 ≤ 100 ms and nothing lost)\n")
        }
        None => println!("capacity: below the ramp's first rate\n"),
    }
    held
}

/// On a newly started `server`: fresh, overload at twice the capacity, right after.
async fn recovery(
    server: &Server,
    s: &Settings,
    capacity: Option<usize>,
) -> Option<(Window, Window)> {
    println!("== recovery, on a newly started devstack");
    let mut run = connected(server, s).await;
    let run = &mut run;
    let rate = s.recovery_rate as f64;
    let overload = 2 * capacity.unwrap_or(s.capacity);
    let fresh = run
        .window(&format!("fresh {rate}/s"), rate, s.seconds)
        .await?;
    print_window(&format!("Herald {rate}/s, fresh"), &fresh);
    let over = run
        .window(
            &format!("overload {overload}/s"),
            overload as f64,
            s.overload_secs,
        )
        .await?;
    print_window(
        &format!("Herald overload at {overload}/s (2x capacity)"),
        &over,
    );
    let after = run
        .window(&format!("after {rate}/s"), rate, s.seconds)
        .await?;
    print_window(
        &format!("Herald {rate}/s, right after the overload"),
        &after,
    );
    println!("{}\n", run.anomalies());
    Some((fresh, after))
}

async fn peer_phases(server: &Server, s: &Settings) -> Vec<Window> {
    let mut run = connected(server, s).await;
    let mut windows = Vec::new();
    for phase in &s.phases {
        match phase {
            Phase::Idle => print_window("Centrifugo idle", &run.idle(s.idle_secs).await),
            Phase::Rate(rate) => {
                if let Some(w) = run
                    .window(&format!("{rate}/s"), *rate as f64, s.seconds)
                    .await
                {
                    print_window(&format!("Centrifugo {rate}/s"), &w);
                    windows.push(w);
                }
            }
            Phase::Ramp | Phase::Recovery => {}
        }
    }
    println!("{}\n", run.anomalies());
    windows
}

fn print_window(title: &str, w: &Window) {
    println!("== {title}");
    println!("{}", w.text());
}

/// The issue's table: each figure as this run measured it, next to the figure before.
fn figures(r: &Results) -> String {
    let mut rows: Vec<(String, String, &str)> = Vec::new();
    if let Some(w) = r.rates.first() {
        let rate = w.rate;
        rows.push((
            format!("CPU per notification, every process summed, at {rate:.0}/s"),
            format!("{:.3} ms", w.cpu_per_message_ms()),
            "4.8 ms",
        ));
        rows.push((
            format!("POST -> frame at {rate:.0}/s, p50 / p99"),
            format!(
                "{:.1} / {:.1} ms",
                ms(w.summary.p(0.5)),
                ms(w.summary.p(0.99))
            ),
            "17.7 / 32.8 ms",
        ));
        rows.push((
            "lost or refused in that window".into(),
            w.summary.failed().to_string(),
            "0",
        ));
        let each =
            |label: &str, per: f64| format!("{:.0} µs", 1e6 * w.cpu_of(label) / per.max(1.0));
        rows.push((
            "Redis CPU per notification".into(),
            each("redis-server", w.sends()),
            "≈ 560 µs",
        ));
        let frames = w.summary.latencies.len() as f64;
        rows.push((
            "`api` CPU per create / `delivery` CPU per message".into(),
            format!("{} / {}", each("api", w.sends()), each("delivery", frames)),
            "≈ 1.2 ms / 0.8 ms",
        ));
        rows.push((
            "devstack's own CPU per notification".into(),
            each("devstack", w.sends()),
            "≈ 1.9 ms (40%)",
        ));
        rows.push((
            "context switches of server threads per notification".into(),
            format!("{:.1}", w.all_switches() as f64 / w.sends()),
            "not measured",
        ));
        rows.push((
            "… of `api` per create / of `delivery` per message".into(),
            format!(
                "{:.1} / {:.1}",
                w.switches_of("api") as f64 / w.sends(),
                w.switches_of("delivery") as f64 / frames
            ),
            "not measured",
        ));
    }
    if let Some(capacity) = r.capacity {
        rows.push((
            "highest rate with p99 ≤ 100 ms, nothing lost".into(),
            format!("{capacity}/s"),
            "200–500/s",
        ));
    }
    if let Some(w) = &r.idle {
        rows.push((
            "idle CPU of the whole stack".into(),
            format!("{:.1}% of a core", 100.0 * w.server_cpu() / w.wall),
            "11.8% of a core",
        ));
    }
    if let Some((fresh, after)) = &r.recovery {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        rows.push((
            "500/s after a 30 s overload vs fresh: p50, p99, CPU/message".into(),
            format!(
                "{:.2}x, {:.2}x, {:.2}x",
                ratio(after.summary.p(0.5), fresh.summary.p(0.5)),
                ratio(after.summary.p(0.99), fresh.summary.p(0.99)),
                after.cpu_per_message_ms() / fresh.cpu_per_message_ms().max(1e-9)
            ),
            "6x slower",
        ));
    }
    let mut out = String::from("== Issue 11's figures\n");
    out.push_str(&format!("{:<64} {:>24}   before\n", "figure", "this run"));
    for (figure, now, before) in rows {
        out.push_str(&format!("{figure:<64} {now:>24}   {before}\n"));
    }
    out.push('\n');
    out
}

/// Herald over Centrifugo at each rate both ran.
fn ratio_table(herald: &[Window], centrifugo: &[Window]) -> String {
    let mut out = String::from("== Herald / Centrifugo, same harness, same machine\n");
    out.push_str(&format!(
        "{:>7} {:>24} {:>24} {:>14} {:>14} {:>16}\n",
        "rate",
        "Centrifugo p50 / p99",
        "Herald p50 / p99",
        "CPU/msg C",
        "CPU/msg H",
        "ratio p50/p99/CPU"
    ));
    for h in herald {
        let Some(c) = centrifugo.iter().find(|c| c.rate == h.rate) else {
            continue;
        };
        let (hp50, hp99, cp50, cp99) = (
            h.summary.p(0.5),
            h.summary.p(0.99),
            c.summary.p(0.5),
            c.summary.p(0.99),
        );
        let lost = |w: &Window| match w.summary.failed() {
            0 => String::new(),
            n => format!(" ({n} lost)"),
        };
        out.push_str(&format!(
            "{:>5.0}/s {:>24} {:>24} {:>11.3} ms {:>11.3} ms {:>5.0}x/{:.0}x/{:.0}x\n",
            h.rate,
            format!("{:.2} / {:.2} ms{}", ms(cp50), ms(cp99), lost(c)),
            format!("{:.1} / {:.1} ms{}", ms(hp50), ms(hp99), lost(h)),
            c.cpu_per_message_ms(),
            h.cpu_per_message_ms(),
            ms(hp50) / ms(cp50).max(1e-6),
            ms(hp99) / ms(cp99).max(1e-6),
            h.cpu_per_message_ms() / c.cpu_per_message_ms().max(1e-6),
        ));
    }
    out
}
