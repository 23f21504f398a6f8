//! # Herald's benchmarks
//!
//! Most benches in `benches/` run Herald's handlers in process against a real Redis (`REDIS_URL`)
//! and a real Kafka-protocol broker (`KAFKA_BROKERS`, or librdkafka's in-process mock cluster),
//! through the test harness (`herald-tests`), so they measure the same code and the same round
//! trips a Lambda invocation makes, minus the Lambda runtime API.
//!
//! - `create_path`: `POST /v1/notifications` through `api::handle`, one at a time and from many
//!   concurrent tasks (`scripts/bench` runs it next to a `redis-benchmark` ceiling).
//!
//! - `analytics`, `push`: one function's Kafka handler, in process.
//! - `e2e_latency`: POST to WebSocket frame through devstack, in process, with a client fleet.
//! - `stack_cpu`: devstack as a separate process (and Centrifugo as the peer), CPU per process
//!   and latency per notification (`scripts/bench cpu`, `scripts/bench peer`).
//!
//! This library holds what benches share:
//! - here: settings from the environment, whether devstack can run, the smoke/measure switch,
//!   latency quantiles, the pass table and deleting a run's keys;
//! - [`cpu`]: CPU time from `/proc` (processes, their trees, this process's threads) and Redis's;
//! - [`fleet`]: many WebSocket clients, one user each, stamping the frames they receive;
//! - [`load`]: the open-loop sender that stamps each request;
//! - [`redis_cost`]: where a Redis server's CPU goes over a window (`INFO`, the slow log);
//! - [`report`]: the latency summary of a run, printed and written as CSV;
//! - [`server`]: Herald (the `devstack` binary) or Centrifugo as separate processes;
//! - [`window`]: one measured window against a server: latency, and CPU by process.

pub mod cpu;
pub mod fleet;
pub mod load;
pub mod redis_cost;
pub mod report;
pub mod server;
pub mod window;

use std::fmt::Write as _;
use std::time::Duration;

/// Why a bench that runs devstack cannot run here, if it cannot: no Redis, or one of `functions`
/// (the binaries devstack runs) is missing from this bench binary's profile folder (`cargo build
/// --profile local --bins` puts them there).
pub fn devstack_missing(functions: &[&str]) -> Option<String> {
    if std::env::var("REDIS_URL").map_or(true, |u| u.is_empty()) {
        return Some("REDIS_URL is not set (scripts/bench starts Redis and sets it)".into());
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // <target>/<profile>/deps/<bench binary>
    let dir = exe.parent().and_then(|p| p.parent())?.to_path_buf();
    functions.iter().find(|f| !dir.join(f).is_file()).map(|f| {
        format!(
            "{}/{f} is missing: build the functions with this profile first \
                 (cargo build --profile local --bins; scripts/bench does)",
            dir.display()
        )
    })
}

/// A positive integer from the environment, or `default`; panics on anything else, so a typo in
/// a setting never silently measures the default.
pub fn setting(name: &str, default: usize) -> usize {
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

/// Is this a measurement? `cargo bench` passes `--bench`; without it (`cargo test --benches`,
/// `--all-targets`) a bench is a smoke run at a small scale that proves it still works.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` when measuring, else 1/100 of it (at least 10): the smoke scale.
pub fn scale(full: usize) -> usize {
    if measuring() {
        full
    } else {
        (full / 100).max(10)
    }
}

/// The note a bench's title line carries on a smoke run.
pub fn mode_note() -> &'static str {
    if measuring() {
        ""
    } else {
        " (smoke run; `cargo bench` measures)"
    }
}

/// Deletes every key matching `pattern` (SCAN + UNLINK, 1,000 at a time); returns how many. On
/// a cluster SCAN sees one node only, so callers skip it there.
pub async fn delete_matching<C: redis::aio::ConnectionLike + Clone>(
    conn: &C,
    pattern: &str,
) -> usize {
    let mut conn = conn.clone();
    let (mut cursor, mut deleted) = (0u64, 0usize);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SCAN {pattern}: {e}"));
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("UNLINK: {e}"));
            deleted += n;
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
    }
}

/// One measured pass: every request's latency, the pass's wall-clock time and how many requests
/// did not get the expected answer.
#[derive(Debug, Clone)]
pub struct Pass {
    pub name: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub latencies: Vec<Duration>,
    pub wall: Duration,
    pub errors: usize,
}

/// The figures the table shows for a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Completed requests per second of wall-clock time.
    pub per_second: f64,
}

impl Pass {
    pub fn summary(&self) -> Summary {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let wall = self.wall.as_secs_f64();
        Summary {
            count: sorted.len(),
            p50: quantile(&sorted, 0.50),
            p90: quantile(&sorted, 0.90),
            p99: quantile(&sorted, 0.99),
            max: sorted.last().copied().unwrap_or_default(),
            per_second: if wall > 0.0 {
                sorted.len() as f64 / wall
            } else {
                0.0
            },
        }
    }
}

/// The `q`-quantile (`0 < q ≤ 1`) of ascending samples by nearest rank: the smallest sample that
/// at least a `q` share of all samples do not exceed. Zero for no samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The passes as an aligned text table, `what` naming the request (`creates`).
pub fn table(what: &str, passes: &[Pass]) -> String {
    let mut out = String::new();
    let per_second = format!("{what}/s");
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "pass", what, "tasks", "p50 ms", "p90 ms", "p99 ms", "max ms", per_second, "errors"
    );
    for pass in passes {
        let s = pass.summary();
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>11.0} {:>7}",
            pass.name,
            s.count,
            pass.concurrency,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            s.per_second,
            pass.errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(range: std::ops::RangeInclusive<u64>) -> Vec<Duration> {
        range.map(Duration::from_millis).collect()
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples = millis(1..=100);
        let at = |q| quantile(&samples, q).as_millis();
        assert_eq!((at(0.5), at(0.9), at(0.99), at(1.0)), (50, 90, 99, 100));
        assert_eq!(quantile(&millis(7..=7), 0.99), Duration::from_millis(7));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn a_pass_reports_throughput_over_its_wall_time() {
        let pass = Pass {
            name: "p".into(),
            concurrency: 4,
            latencies: millis(1..=10),
            wall: Duration::from_millis(500),
            errors: 0,
        };
        let s = pass.summary();
        assert_eq!(
            (s.count, s.max, s.per_second),
            (10, Duration::from_millis(10), 20.0)
        );
        assert!(table("creates", &[pass])
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("p ")));
    }
}
