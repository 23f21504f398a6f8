//! CPU time from `/proc` (Linux): what each process, each process tree, and each of this
//! process's threads has used so far (utime + stime), and the machine's busy time. A figure is
//! always the difference of two snapshots around a measured window; nothing here samples.
//!
//! Clock ticks are `USER_HZ` (100 per second on Linux), so a figure is exact to 10 ms per
//! process: measure windows of seconds, not milliseconds. A process that exits inside the window
//! takes its ticks with it (its parent's `cutime` is not counted): the servers measured here
//! keep their processes for the whole window.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// One process or thread as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    /// utime + stime, in seconds.
    pub cpu: f64,
}

/// Parses a `/proc/<pid>/stat` (or `task/<tid>/stat`) text; `comm` may hold spaces and `)`.
pub fn parse(stat: &str) -> Option<Stat> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let pid = stat.get(..open)?.trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(Stat {
        pid,
        comm,
        ppid,
        cpu: ticks as f64 / TICKS,
    })
}

/// Every process on the machine now.
pub fn processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|p| {
            p.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
        .filter_map(|text| parse(&text))
        .collect()
}

/// This process's CPU time so far.
pub fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    Duration::from_secs_f64(parse(&stat).map_or(0.0, |s| s.cpu))
}

/// Redis's CPU time so far, as Redis reports it (`INFO cpu`: used_cpu_user + used_cpu_sys).
pub async fn redis_cpu<C: redis::aio::ConnectionLike + Clone>(conn: &C) -> Duration {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn.clone())
        .await
        .unwrap_or_default();
    let secs: f64 = info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(secs)
}

/// The process id of the Redis server at `url` (`INFO server`).
pub async fn redis_pid(url: &str) -> Option<u32> {
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

/// CPU seconds so far, by label, plus the machine's busy and total CPU seconds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub by_label: BTreeMap<String, f64>,
    /// Processes per label (function instances), where a label covers several.
    pub instances: BTreeMap<String, usize>,
    pub machine_busy: f64,
    pub machine_total: f64,
    /// Context switches so far of every thread of the server processes (not this process), by
    /// the same labels as the CPU: how often a server thread went to sleep and was woken, each
    /// about one hop's receiving end.
    pub switches: BTreeMap<String, u64>,
}

/// Context switches so far (voluntary and not) of every thread of process `pid`; 0 if it is gone.
pub fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

impl Snapshot {
    fn add(&mut self, label: impl Into<String>, secs: f64) {
        *self.by_label.entry(label.into()).or_default() += secs;
    }

    fn machine(mut self) -> Snapshot {
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
            self.machine_total = total / TICKS;
            self.machine_busy = (total - idle) / TICKS;
        }
        self
    }

    /// CPU seconds of `label` between `before` and this snapshot.
    pub fn since(&self, before: &Snapshot, label: &str) -> f64 {
        self.by_label.get(label).copied().unwrap_or(0.0)
            - before.by_label.get(label).copied().unwrap_or(0.0)
    }

    /// Every label's context switches between `before` and this snapshot.
    pub fn switches_since(&self, before: &Snapshot) -> BTreeMap<String, u64> {
        self.switches
            .iter()
            .map(|(label, n)| {
                let was = before.switches.get(label).copied().unwrap_or(0);
                (label.clone(), n.saturating_sub(was))
            })
            .collect()
    }

    /// Every label's CPU seconds between `before` and this snapshot, busiest first.
    pub fn delta(&self, before: &Snapshot) -> Vec<(String, f64)> {
        let mut rows: Vec<(String, f64)> = self
            .by_label
            .keys()
            .map(|k| (k.clone(), self.since(before, k)))
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows
    }
}

/// Label of this process in [`trees`] snapshots: the load generator and its clients.
pub const BENCH: &str = "bench (clients + sender, this process)";

/// Every process of each tree in `roots` (a root pid and its descendants), labelled: the root by
/// its given label, a descendant by its `comm` (a function binary's name, `redis-server`), summed
/// over instances; and this process as [`BENCH`]. A process under two roots counts once, under
/// the first.
pub fn trees(roots: &[(&str, u32)]) -> Snapshot {
    let all = processes();
    let parent: BTreeMap<u32, u32> = all.iter().map(|p| (p.pid, p.ppid)).collect();
    let root_of = |mut pid: u32| -> Option<usize> {
        for _ in 0..64 {
            if let Some(i) = roots.iter().position(|(_, r)| *r == pid) {
                return Some(i);
            }
            pid = *parent.get(&pid)?;
        }
        None
    };
    let me = std::process::id();
    let mut s = Snapshot::default();
    for p in &all {
        if p.pid == me {
            s.add(BENCH, p.cpu);
            continue;
        }
        let Some(i) = root_of(p.pid) else { continue };
        let label = if p.pid == roots[i].1 {
            roots[i].0.to_owned()
        } else {
            *s.instances.entry(p.comm.clone()).or_default() += 1;
            p.comm.clone()
        };
        *s.switches.entry(label.clone()).or_default() += switches(p.pid);
        s.add(label, p.cpu);
    }
    s.machine()
}

/// For a devstack running inside this process: its threads are labelled by name (the main thread
/// and the bench runtime's `bench-*` threads are the load generator; `rdk:*` and
/// `devstack-kafka*` the embedded broker and its consumers; the rest devstack), child processes
/// by name (the function binaries, summed over instances), and `redis` is the run's Redis.
pub fn in_process(redis: Option<u32>) -> Snapshot {
    let mut s = Snapshot::default();
    let me = std::process::id();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let main = task.file_name().to_str().and_then(|n| n.parse().ok()) == Some(me);
            if let Some(t) = parse(&text) {
                let label = if main || t.comm.starts_with("bench-") {
                    "bench: clients + sender (this process)"
                } else if t.comm.starts_with("rdk:") || t.comm.starts_with("devstack-kafka") {
                    "devstack: embedded Kafka + its consumers (librdkafka)"
                } else {
                    "devstack: gateways, runtime API, mappings"
                };
                s.add(label, t.cpu);
            }
        }
    }
    for p in processes() {
        if p.pid == me {
            continue;
        }
        if p.ppid == me {
            *s.instances.entry(p.comm.clone()).or_default() += 1;
            s.add(format!("function {} (all instances)", p.comm), p.cpu);
        } else if Some(p.pid) == redis {
            s.add("redis-server (REDIS_URL)", p.cpu);
        }
    }
    s.machine()
}

/// What each label used between two snapshots, as a share of one core, busiest first; `other`
/// is the machine's busy time that none of the labels account for.
pub fn report(before: &Snapshot, after: &Snapshot, wall: f64, cores: usize) -> String {
    let rows = after.delta(before);
    let ours: f64 = rows.iter().map(|r| r.1).sum();
    let busy = after.machine_busy - before.machine_busy;
    let total = after.machine_total - before.machine_total;
    let mut out = String::new();
    let _ =
        writeln!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_comm_parses() {
        let line = "4242 (rdk:main (x)) S 17 1 1 0 -1 4194560 0 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(
            parse(line),
            Some(Stat {
                pid: 4242,
                comm: "rdk:main (x)".into(),
                ppid: 17,
                cpu: 3.0
            })
        );
    }

    #[test]
    fn this_process_is_found_and_counted_as_the_bench() {
        let me = std::process::id();
        assert!(processes().iter().any(|p| p.pid == me));
        assert!(trees(&[]).by_label.contains_key(BENCH));
    }

    #[test]
    fn a_thread_that_slept_counts_its_wake_up() {
        let me = std::process::id();
        let before = switches(me);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(switches(me) > before, "a sleep is a context switch");
        assert_eq!(
            switches(u32::MAX),
            0,
            "a process that does not exist has none"
        );
    }
}
