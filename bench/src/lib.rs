//! # Herald's benchmarks
//!
//! The benches in `benches/` run Herald's handlers in process against a real Redis (`REDIS_URL`)
//! and a real Kafka-protocol broker (`KAFKA_BROKERS`, or librdkafka's in-process mock cluster),
//! through the test harness (`herald-tests`), so they measure the same code and the same round
//! trips a Lambda invocation makes, minus the Lambda runtime API.
//!
//! - `create_path`: `POST /v1/notifications` through `api::handle`, one at a time and from many
//!   concurrent tasks (`scripts/bench` runs it next to a `redis-benchmark` ceiling).
//!
//! This library holds what benches share: latency summaries and the result table.

use std::fmt::Write as _;
use std::time::Duration;

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

fn ms(d: Duration) -> f64 {
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
