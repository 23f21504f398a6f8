//! Load shedding before Redis fills up. Redis runs with `noeviction`, so a full Redis refuses
//! every write, for everyone; the change log of a long Kafka outage (which keeps every
//! unpublished change) is what can fill it. Before that happens, creates, which are what grows
//! Redis, answer `503` with `Retry-After` and write nothing (not even a rate-limit counter), once
//! `used_memory` reaches `REDIS_SHED_MEMORY_PERCENT` of `maxmemory`. Every other mutation still
//! runs, so users can keep reading, marking and deleting.
//!
//! The reading comes from `INFO memory` (on a cluster, every master's, and the fullest decides),
//! at most once per [`READING_FRESH_FOR`] per instance, so a create costs no extra round trip.
//! Without a `maxmemory`, or if `INFO` fails, nothing is shed (the create then meets Redis as it
//! is). Each shed create emits the `CreatesShed` metric, which the template alarms on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;
use shared::config::SheddingSettings;
use shared::error::ApiError;
use shared::store::RedisConn;

/// How long one `INFO memory` reading is used before the next create reads again.
pub const READING_FRESH_FOR: Duration = Duration::from_secs(1);

/// Decides whether a create may write, from a cached reading of Redis's memory. Cheap to clone;
/// clones share the reading.
#[derive(Debug, Clone)]
pub struct MemoryGate {
    conn: RedisConn,
    settings: SheddingSettings,
    last: Arc<Mutex<Option<Reading>>>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    /// `used_memory` as a percentage of `maxmemory`, of the fullest node; `None` without a limit.
    used_percent: Option<f64>,
}

impl MemoryGate {
    pub fn new(conn: RedisConn, settings: SheddingSettings) -> Self {
        MemoryGate {
            conn,
            settings,
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// `Ok` if a create may write; the 503 to answer if Redis is too full.
    pub async fn admit_create(&self) -> Result<(), ApiError> {
        let Some(used) = self.used_percent().await else {
            return Ok(());
        };
        let limit = f64::from(self.settings.memory_percent);
        if used < limit {
            return Ok(());
        }
        tracing::warn!(
            used_percent = used,
            limit_percent = limit,
            metric = "CreatesShed",
            "redis memory above the shedding threshold: create refused"
        );
        shared::metrics::MetricSet::new()
            .count("CreatesShed", 1)
            .emit();
        Err(ApiError::Unavailable(format!(
            "notification storage is {used:.0}% full (creates pause at {limit:.0}%); retry later"
        )))
    }

    /// The fullest node's `used_memory` / `maxmemory` in percent, from a reading at most
    /// [`READING_FRESH_FOR`] old.
    async fn used_percent(&self) -> Option<f64> {
        let cached = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cached.filter(|r| r.at.elapsed() < READING_FRESH_FOR) {
            return r.used_percent;
        }
        let used_percent = match redis::cmd("INFO")
            .arg("memory")
            .query_async::<Value>(&mut self.conn.clone())
            .await
        {
            Ok(reply) => fullest(&reply),
            Err(e) => {
                tracing::debug!(error = %e, "INFO memory failed; not shedding");
                None
            }
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Reading {
            at: Instant::now(),
            used_percent,
        });
        used_percent
    }
}

/// The highest `used_memory` / `maxmemory` (percent) among the `INFO` texts in `reply`: one text
/// from a single server, one per master (a map or an array) from a cluster.
fn fullest(reply: &Value) -> Option<f64> {
    let mut texts = Vec::new();
    collect_texts(reply, &mut texts);
    texts
        .iter()
        .filter_map(|t| used_percent(t))
        .max_by(f64::total_cmp)
}

fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => {
            items.iter().for_each(|i| collect_texts(i, out));
        }
        Value::Map(pairs) => pairs.iter().for_each(|(_, i)| collect_texts(i, out)),
        _ => {}
    }
}

/// `used_memory` as a percentage of `maxmemory` in one `INFO memory` text; `None` without a
/// limit (`maxmemory:0`) or without the fields.
fn used_percent(info: &str) -> Option<f64> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let max = field("maxmemory").filter(|m| *m > 0.0)?;
    Some(field("used_memory")? / max * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fullest_node_with_a_limit_decides() {
        let info = |used: u64, max: u64| {
            format!("# Memory\r\nused_memory:{used}\r\nused_memory_human:1M\r\nmaxmemory:{max}\r\nmaxmemory_policy:noeviction\r\n")
        };
        let single = Value::BulkString(info(450, 500).into_bytes());
        assert_eq!(fullest(&single), Some(90.0));
        let cluster = Value::Map(vec![
            (
                Value::SimpleString("a:1".into()),
                Value::BulkString(info(100, 1000).into_bytes()),
            ),
            (
                Value::SimpleString("b:2".into()),
                Value::BulkString(info(700, 1000).into_bytes()),
            ),
        ]);
        assert_eq!(fullest(&cluster), Some(70.0));
        assert_eq!(fullest(&Value::BulkString(info(450, 0).into_bytes())), None);
        assert_eq!(fullest(&Value::Nil), None);
    }
}
