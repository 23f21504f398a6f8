//! Where a Redis server's CPU goes over a window, from its own counters (`INFO all`) read before
//! and after, divided by the notifications sent in it (or by its seconds when idle):
//! - its CPU, on the main thread and on the background threads (the AOF's `fsync`);
//! - the event loop's reads and writes (about one each per round trip), connections opened, bytes
//!   in and out, and the bytes appended to the AOF;
//! - each command's calls and µs (`INFO commandstats`; a command a script runs is counted in its
//!   own row and inside the script's);
//! - with the slow log switched to log everything for the window ([`SlowLog`]), each top-level
//!   command and each script by name (`EVALSHA` by its SHA-1 in the catalog the caller gives,
//!   `shared::store::script_catalog()`), with calls and µs.
//!
//! The slow log costs Redis a little per command, so the figures of a window that uses it are a
//! little higher; the instrument asks for it explicitly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use redis::aio::MultiplexedConnection;
use redis::Value;

/// A Redis server's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Command name → (calls, µs).
    pub commands: BTreeMap<String, (u64, u64)>,
    /// Every numeric `INFO` field.
    pub fields: BTreeMap<String, f64>,
    /// `appendfsync`, as configured.
    pub appendfsync: String,
}

/// The URL of the `redis-server` in the process tree under `root` (devstack's own): Redis shows
/// its address in its process title (`redis-server 127.0.0.1:PORT`), or its arguments hold
/// `--port PORT`.
pub fn url_in_tree(root: u32) -> Option<String> {
    let all = crate::cpu::processes();
    let parent: BTreeMap<u32, u32> = all.iter().map(|p| (p.pid, p.ppid)).collect();
    let under_root = |mut pid: u32| {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match parent.get(&pid) {
                Some(p) => pid = *p,
                None => return false,
            }
        }
        false
    };
    let pid = all
        .iter()
        .find(|p| p.comm == "redis-server" && under_root(p.pid))?
        .pid;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let words: Vec<&str> = text.split_whitespace().collect();
    let port = match words.iter().position(|w| *w == "--port") {
        Some(i) => words.get(i + 1)?.to_string(),
        None => words.iter().find_map(|w| w.rsplit_once(':'))?.1.to_owned(),
    };
    Some(format!("redis://127.0.0.1:{}", port.parse::<u16>().ok()?))
}

/// A connection to `url`, for reading counters.
pub async fn connect(url: &str) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    // The slow log of a window can be a reply of tens of megabytes.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(120)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()
}

/// The counters now.
pub async fn counters(conn: &MultiplexedConnection) -> Counters {
    let mut conn = conn.clone();
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let appendfsync: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let mut c = Counters {
        appendfsync: appendfsync.get(1).cloned().unwrap_or_default(),
        ..Counters::default()
    };
    for line in info.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        if let Some(command) = key.strip_prefix("cmdstat_") {
            let field = |name: &str| {
                value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            c.commands
                .insert(command.to_owned(), (field("calls"), field("usec")));
        } else if let Some(keys) = value
            .strip_prefix("keys=")
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            c.fields.insert(format!("{key}_keys"), keys);
        } else if let Ok(v) = value.parse::<f64>() {
            c.fields.insert(key.to_owned(), v);
        }
    }
    c
}

/// The report between two snapshots: per notification when `notifications` > 0, else per
/// second of `seconds`. `scripts`: the slow log's split ([`SlowLog::take`]), when taken.
pub fn report(
    before: &Counters,
    after: &Counters,
    notifications: usize,
    seconds: f64,
    scripts: Option<&[Logged]>,
) -> String {
    let (per, unit) = if notifications > 0 {
        (notifications as f64, "notification")
    } else {
        (seconds.max(1e-9), "second")
    };
    let d = |k: &str| {
        after.fields.get(k).copied().unwrap_or(0.0) - before.fields.get(k).copied().unwrap_or(0.0)
    };
    let us = |secs: f64| 1e6 * secs / per;
    let cpu = d("used_cpu_sys") + d("used_cpu_user");
    let main = d("used_cpu_sys_main_thread") + d("used_cpu_user_main_thread");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "redis      per {unit}: {:.0} µs CPU ({:.0} sys, {:.0} user; main thread {:.0}, background threads {:.0})",
        us(cpu),
        us(d("used_cpu_sys")),
        us(d("used_cpu_user")),
        us(main),
        us(cpu - main),
    );
    let _ = writeln!(
        out,
        "           {:.1} commands, {:.1} reads and {:.1} writes by the event loop (~ round trips), {:.2} connections opened, {:.0} B in, {:.0} B out",
        d("total_commands_processed") / per,
        d("total_reads_processed") / per,
        d("total_writes_processed") / per,
        d("total_connections_received") / per,
        d("total_net_input_bytes") / per,
        d("total_net_output_bytes") / per,
    );
    let _ = writeln!(
        out,
        "           AOF: appendfsync {}, {:.0} B appended, {:.0} rewrites, {:.0} delayed fsyncs; {:.1} keys expired",
        if after.appendfsync.is_empty() { "?" } else { &after.appendfsync },
        d("aof_current_size") / per,
        d("aof_rewrites").max(d("total_forks")),
        d("aof_delayed_fsync"),
        d("expired_keys") / per,
    );
    let at_end = |k: &str| after.fields.get(k).copied().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "           at the end: {:.0} scripts cached, Lua heap {:.0} kB, {:.0} keys, {:.0} clients",
        at_end("number_of_cached_scripts"),
        at_end("used_memory_lua") / 1024.0,
        at_end("db0_keys"),
        at_end("connected_clients"),
    );
    let mut rows: Vec<(&str, f64, f64)> = after
        .commands
        .iter()
        .map(|(name, (calls, usec))| {
            let (c0, u0) = before.commands.get(name).copied().unwrap_or((0, 0));
            (
                name.as_str(),
                calls.saturating_sub(c0) as f64,
                usec.saturating_sub(u0) as f64,
            )
        })
        .filter(|r| r.1 > 0.0)
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10} {:>9}   (INFO commandstats; a script's commands count in their row and in the script's)",
        "command",
        format!("calls/{}", &unit[..5]),
        format!("µs/{}", &unit[..5]),
        "µs/call"
    );
    for (name, calls, usec) in rows {
        let _ = writeln!(
            out,
            "  {name:<28} {:>10.2} {:>10.1} {:>9.2}",
            calls / per,
            usec / per,
            usec / calls.max(1.0)
        );
    }
    if let Some(logged) = scripts {
        let mut by: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for l in logged {
            let e = by.entry(l.name.as_str()).or_default();
            e.0 += 1.0;
            e.1 += l.usec as f64;
        }
        let mut rows: Vec<(&str, (f64, f64))> = by.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let total: f64 = rows.iter().map(|r| r.1 .1).sum();
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>9}   (slow log: top-level commands and scripts; {:.1} µs/{} in all)",
            "top-level command or script",
            format!("calls/{}", &unit[..5]),
            format!("µs/{}", &unit[..5]),
            "µs/call",
            total / per,
            &unit[..5]
        );
        for (name, (calls, usec)) in rows {
            let _ = writeln!(
                out,
                "  {name:<28} {:>10.2} {:>10.1} {:>9.2}",
                calls / per,
                usec / per,
                usec / calls.max(1.0)
            );
        }
    }
    out
}

/// One top-level command the slow log timed: its name (a script's catalog name) and µs.
#[derive(Debug, Clone)]
pub struct Logged {
    pub name: String,
    pub usec: u64,
}

/// The slow log switched to log every command for a window, then put back.
pub struct SlowLog {
    conn: MultiplexedConnection,
    /// sha → name of each script (every one is sent as `EVALSHA`).
    shas: BTreeMap<String, String>,
    saved: Vec<(String, String)>,
}

impl SlowLog {
    /// Empties the slow log and makes it log every command (up to a million); `scripts`: each
    /// script's (name, SHA-1).
    pub async fn start(
        conn: &MultiplexedConnection,
        scripts: impl IntoIterator<Item = (String, String)>,
    ) -> SlowLog {
        let mut conn = conn.clone();
        let mut saved = Vec::new();
        for (key, value) in [
            ("slowlog-log-slower-than", "0"),
            ("slowlog-max-len", "1000000"),
        ] {
            let old: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if let Some(old) = old.get(1) {
                saved.push((key.to_owned(), old.clone()));
            }
            let _: Result<(), _> = redis::cmd("CONFIG")
                .arg("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut conn)
                .await;
        }
        let _: Result<(), _> = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut conn)
            .await;
        let shas = scripts.into_iter().map(|(name, sha)| (sha, name)).collect();
        SlowLog { conn, shas, saved }
    }

    /// Everything logged since [`SlowLog::start`], named; the settings are put back and the log
    /// emptied.
    pub async fn take(mut self) -> Vec<Logged> {
        let entries: Value = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .query_async(&mut self.conn)
            .await
            .unwrap_or(Value::Nil);
        for (key, value) in &self.saved {
            let _: Result<(), _> = redis::cmd("CONFIG")
                .arg("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut self.conn)
                .await;
        }
        let _: Result<(), _> = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut self.conn)
            .await;
        let Value::Array(entries) = entries else {
            return Vec::new();
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        };
        entries
            .iter()
            .filter_map(|e| {
                let Value::Array(fields) = e else { return None };
                let usec = match fields.get(2)? {
                    Value::Int(n) => u64::try_from(*n).ok()?,
                    _ => return None,
                };
                let Value::Array(args) = fields.get(3)? else {
                    return None;
                };
                // A command a script ran is logged too, by a client with no address.
                let client = fields.get(4).map(text).unwrap_or_default();
                if client.is_empty() || client.starts_with('?') {
                    return None;
                }
                let command = text(args.first()?).to_lowercase();
                let arg = args.get(1).map(text).unwrap_or_default();
                let name = match command.as_str() {
                    "evalsha" | "evalsha_ro" => self
                        .shas
                        .get(&arg)
                        .map_or_else(|| format!("evalsha {arg}"), |n| format!("script {n}")),
                    // Only a script's fallback after `NOSCRIPT` goes by source.
                    "eval" | "eval_ro" => "eval".to_owned(),
                    _ => command,
                };
                Some(Logged { name, usec })
            })
            .collect()
    }
}
