//! The latency summary of one measured window of a [`Ledger`]: POST → frame (the figure), POST →
//! answer, answer → frame, the generator's lag, the answers by status, and what was lost (an
//! accepted message whose frame never came within the drain time, reported, never hidden). Also
//! the per-message CSV that `bench/plot/latency.py` draws.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::fleet::{Ledger, TRANSPORT_ERROR};
use crate::{ms, quantile};

/// The measured figures of one window.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// POST start to frame: the figure.
    pub latencies: Vec<Duration>,
    /// POST start to its accepted answer.
    pub created: Vec<Duration>,
    /// Answer to frame (0 when the frame came first, which it may).
    pub after_answer: Vec<Duration>,
    /// POST start minus its scheduled instant: how far the load generator fell behind.
    pub lag: Vec<Duration>,
    pub first_send: u64,
    pub last_send: u64,
    pub statuses: BTreeMap<u16, usize>,
    /// Accepted, and no frame within the drain time.
    pub lost: usize,
    /// A frame whose request was not accepted.
    pub without_answer: usize,
}

impl Summary {
    pub fn of(ledger: &Ledger, range: Range<usize>) -> Summary {
        let mut s = Summary {
            first_send: u64::MAX,
            ..Summary::default()
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
            let answered = Ledger::at(&ledger.answered[i]).filter(|_| status == ledger.accepted);
            if let Some(answered) = answered {
                s.created.push(between(sent, answered));
            }
            match (Ledger::at(&ledger.received[i]), answered) {
                (Some(received), answered) => {
                    s.latencies.push(between(sent, received));
                    match answered {
                        Some(answered) => s.after_answer.push(between(answered, received)),
                        None => s.without_answer += 1,
                    }
                }
                (None, Some(_)) => s.lost += 1,
                (None, None) => {}
            }
        }
        for v in [
            &mut s.latencies,
            &mut s.created,
            &mut s.after_answer,
            &mut s.lag,
        ] {
            v.sort_unstable();
        }
        s
    }

    /// Messages sent in the window.
    pub fn sends(&self) -> usize {
        self.lag.len()
    }

    /// Sends per second actually achieved between the first and the last send.
    pub fn achieved(&self) -> f64 {
        let span = Duration::from_nanos(self.last_send.saturating_sub(self.first_send));
        if span.is_zero() {
            0.0
        } else {
            self.sends().saturating_sub(1) as f64 / span.as_secs_f64()
        }
    }

    /// Messages that were sent but not accepted, or accepted and never arrived.
    pub fn failed(&self) -> usize {
        self.sends().saturating_sub(self.latencies.len()) + self.without_answer
    }

    pub fn p(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// The counts and the latency table; `title` heads the table's first column. `sent_wall`:
    /// first send to last answer; `drained`: last answer to last frame; `drain`: the limit.
    pub fn text(
        &self,
        rate: f64,
        (sent_wall, drained, drain): (Duration, Duration, Duration),
        title: &str,
    ) -> String {
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
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sent       {} POSTs at {:.0}/s achieved (target {rate:.0}/s), the last answered {:.1} s after the first was sent; generator lag p99 {:.1} ms, max {:.1} ms",
            self.sends(),
            self.achieved(),
            sent_wall.as_secs_f64(),
            ms(quantile(&self.lag, 0.99)),
            ms(self.lag.last().copied().unwrap_or_default()),
        );
        let _ = writeln!(out, "answers    {statuses}");
        let _ = writeln!(
            out,
            "frames     {} received; lost (accepted, no frame within {} s): {}; frame without an accepted answer: {}; last frame {:.1} s after the last answer",
            self.latencies.len(),
            drain.as_secs(),
            self.lost,
            self.without_answer,
            drained.as_secs_f64(),
        );
        let _ = writeln!(
            out,
            "\n{title:<24} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (name, v) in [
            ("POST -> frame", &self.latencies),
            ("  POST -> answer", &self.created),
            ("  answer -> frame", &self.after_answer),
        ] {
            let _ = writeln!(
                out,
                "{name:<24} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                v.len(),
                ms(quantile(v, 0.50)),
                ms(quantile(v, 0.90)),
                ms(quantile(v, 0.99)),
                ms(v.last().copied().unwrap_or_default()),
            );
        }
        out
    }
}

/// Writes one row per message of `range` that arrived: when its POST started (ms since the first
/// one), how long its accepted answer took (empty without one) and its end-to-end latency, under
/// a `# <comment>` line. Returns the rows written.
pub fn write_csv(
    ledger: &Ledger,
    range: Range<usize>,
    comment: &str,
    path: &Path,
) -> std::io::Result<usize> {
    let first = range
        .clone()
        .filter_map(|i| Ledger::at(&ledger.sent[i]))
        .min()
        .unwrap_or_default();
    let mut out = format!("# {comment}\nindex,sent_ms,created_ms,latency_ms\n");
    let millis = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
    let mut rows = 0;
    for i in range {
        let (Some(sent), Some(received)) =
            (Ledger::at(&ledger.sent[i]), Ledger::at(&ledger.received[i]))
        else {
            continue;
        };
        let created = Ledger::at(&ledger.answered[i])
            .filter(|_| ledger.status[i].load(Ordering::Relaxed) == ledger.accepted)
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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, out)?;
    Ok(rows)
}
