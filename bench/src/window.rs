//! One measured window against a running [`Server`]: a fleet of clients connected once, then
//! windows at a rate (or idle), each with its latency summary and the CPU every process used,
//! read from `/proc` before and after (send time plus the drain until the last frame).
//!
//! CPU figures are per message sent in the window: every server process summed (for Herald:
//! devstack, each function binary over its instances, redis-server), and the bench process
//! (clients and sender) apart, since on AWS it would be other machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpu::{self, BENCH};
use crate::fleet::{self, Ledger};
use crate::load::{self, Target};
use crate::report::Summary;
use crate::server::Server;

/// A server with its client fleet connected, and the ledger every window writes into.
pub struct Run<'a> {
    pub server: &'a Server,
    users: Vec<String>,
    ledger: Arc<Ledger>,
    http: reqwest::Client,
    target: Target,
    next: usize,
    pub drain: Duration,
    pub cores: usize,
}

/// What one window measured.
pub struct Window {
    pub name: String,
    pub rate: f64,
    pub summary: Summary,
    /// Seconds from the first send to the last frame (or the drain limit).
    pub wall: f64,
    pub sent_wall: Duration,
    pub drained: Duration,
    /// The drain limit: an accepted message with no frame by then is lost.
    pub drain: Duration,
    /// CPU seconds by label (root label, binary name, [`BENCH`]), busiest first.
    pub cpu: Vec<(String, f64)>,
    pub machine_busy: f64,
    /// Context switches of every server thread over the window, by label
    /// ([`cpu::Snapshot::switches`]).
    pub switches: BTreeMap<String, u64>,
}

impl<'a> Run<'a> {
    /// Connects `clients` users to `server`; the ledger holds `capacity` messages in all.
    pub async fn connect(
        server: &'a Server,
        clients: usize,
        senders: usize,
        capacity: usize,
        concurrency: usize,
        drain: Duration,
    ) -> Run<'a> {
        let run_id = std::process::id();
        let users: Vec<String> = (0..clients).map(|i| format!("b{run_id}u{i}")).collect();
        let ledger = Arc::new(Ledger::new(capacity, server.accepted));
        let fleet_clients = users.iter().map(|u| server.client(u)).collect();
        let connected = fleet::connect(fleet_clients, server.protocol, concurrency, &ledger).await;
        println!("{}: {}", server.name, connected.line());
        Run {
            server,
            users,
            ledger,
            http: load::http_client(),
            target: server.target(senders),
            next: 0,
            drain,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Sends at `rate` for `seconds` and waits for the frames; `None` when the ledger is full.
    pub async fn window(&mut self, name: &str, rate: f64, seconds: f64) -> Option<Window> {
        let count = (rate * seconds).round().max(1.0) as usize;
        if self.next + count > self.ledger.len() {
            println!("{name}: the ledger is full (raise BENCH_LEDGER); skipped");
            return None;
        }
        let range = self.next..self.next + count;
        self.next += count;
        let roots = self.server.roots();
        let before = cpu::trees(&roots);
        let t0 = Instant::now();
        load::send(
            &self.http,
            &self.target,
            &self.users,
            range.clone(),
            rate,
            &self.ledger,
        )
        .await;
        let sent_wall = t0.elapsed();
        let drained = self.ledger.await_frames(range.clone(), self.drain).await;
        let wall = t0.elapsed().as_secs_f64();
        let after = cpu::trees(&roots);
        Some(Window {
            name: name.to_owned(),
            rate,
            summary: Summary::of(&self.ledger, range),
            wall,
            sent_wall,
            drained,
            drain: self.drain,
            cpu: after.delta(&before),
            machine_busy: after.machine_busy - before.machine_busy,
            switches: after.switches_since(&before),
        })
    }

    /// CPU by label over `seconds` with the clients connected and nothing sent.
    pub async fn idle(&self, seconds: f64) -> Window {
        let roots = self.server.roots();
        let before = cpu::trees(&roots);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let wall = t0.elapsed().as_secs_f64();
        let after = cpu::trees(&roots);
        Window {
            name: "idle".into(),
            rate: 0.0,
            summary: Summary::default(),
            wall,
            sent_wall: Duration::ZERO,
            drained: Duration::ZERO,
            drain: self.drain,
            cpu: after.delta(&before),
            machine_busy: after.machine_busy - before.machine_busy,
            switches: after.switches_since(&before),
        }
    }

    /// Duplicates, strangers, closed connections and the first error, so far.
    pub fn anomalies(&self) -> String {
        let l = &self.ledger;
        let mut out = format!(
            "also       {} duplicate frames, {} frames of no message of this run, {} connections closed by the server",
            l.duplicates.load(Ordering::Relaxed),
            l.strangers.load(Ordering::Relaxed),
            l.closed.load(Ordering::Relaxed),
        );
        if let Some(e) = l.first_error.lock().ok().and_then(|e| e.clone()) {
            let _ = write!(out, "\nfirst error: {e}");
        }
        out
    }
}

impl Window {
    /// CPU seconds of one label (0 if it used none).
    pub fn cpu_of(&self, label: &str) -> f64 {
        self.cpu
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0.0, |(_, s)| *s)
    }

    /// CPU seconds of every server process (everything but the bench process).
    pub fn server_cpu(&self) -> f64 {
        self.cpu
            .iter()
            .filter(|(l, _)| l != BENCH)
            .map(|(_, s)| s)
            .sum()
    }

    /// Messages sent in the window (at least 1, to divide by).
    pub fn sends(&self) -> f64 {
        self.summary.sends().max(1) as f64
    }

    /// Server CPU per message sent, in ms.
    pub fn cpu_per_message_ms(&self) -> f64 {
        1e3 * self.server_cpu() / self.sends()
    }

    /// Nothing lost and p99 within `limit`.
    pub fn holds(&self, limit: Duration) -> bool {
        self.summary.failed() == 0 && self.summary.sends() > 0 && self.summary.p(0.99) <= limit
    }

    /// The latency report (when anything was sent) and the CPU split: each label's share of a
    /// core and, under load, its CPU per message.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.summary.sends() > 0 {
            let limits = (self.sent_wall, self.drained, self.drain);
            out.push_str(&self.summary.text(self.rate, limits, &self.name));
        }
        let per = self.rate > 0.0;
        let _ = writeln!(
            out,
            "cpu over {:.1} s (machine busy {:.0}% of a core){}",
            self.wall,
            100.0 * self.machine_busy / self.wall,
            if per {
                "; per message = CPU / messages sent"
            } else {
                ""
            }
        );
        for (label, secs) in &self.cpu {
            let share = 100.0 * secs / self.wall;
            if per {
                let each = 1e3 * secs / self.sends();
                let _ = writeln!(
                    out,
                    "  {share:>6.1}% of a core  {each:>7.3} ms/message  {label}"
                );
            } else {
                let _ = writeln!(out, "  {share:>6.1}% of a core  {label}");
            }
        }
        let server = self.server_cpu();
        let _ = writeln!(
            out,
            "  {:>6.1}% of a core  {:>7.3} ms/message  all server processes (bench excluded)",
            100.0 * server / self.wall,
            if per {
                1e3 * server / self.sends()
            } else {
                0.0
            },
        );
        // Wake-ups per message (per second when idle), busiest first, then the total.
        let unit = if per {
            self.sends()
        } else {
            self.wall.max(1e-9)
        };
        let mut by_label: Vec<(&String, &u64)> = self.switches.iter().collect();
        by_label.sort_by(|a, b| b.1.cmp(a.1));
        let split: Vec<String> = by_label
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(label, n)| format!("{label} {:.1}", **n as f64 / unit))
            .collect();
        let _ = writeln!(
            out,
            "wake-ups   {:.1} context switches of server threads per {} ({}; each about one hop's receiving end, `scripts/bench floor` prices one)",
            self.all_switches() as f64 / unit,
            if per { "message" } else { "second" },
            split.join(", "),
        );
        out
    }

    /// Context switches of every server thread over the window.
    pub fn all_switches(&self) -> u64 {
        self.switches.values().sum()
    }

    /// Context switches of one label's threads over the window (0 if none).
    pub fn switches_of(&self, label: &str) -> u64 {
        self.switches.get(label).copied().unwrap_or(0)
    }
}
