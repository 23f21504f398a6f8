//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON object per line on stdout, which
//! Lambda ships to CloudWatch Logs and CloudWatch turns into metrics, with no API call, no SDK and
//! no extra latency in the handler.
//!
//! Every metric is in the namespace [`NAMESPACE`] and carries the dimension `FunctionName`: the
//! Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`, the same value as the `AWS/Lambda`
//! namespace's own `FunctionName` dimension, so the template's alarms can `!Ref` the function;
//! devstack sets it to the binary's name; `local` elsewhere), read by `config`
//! (`TelemetrySettings`) and set at cold start by [`set_function_name`]. Callers add their own dimensions
//! (`Channel`, `Outcome`).
//!
//! The metrics Herald emits (every one a `Count`):
//!
//! | metric | dimensions | emitted by |
//! |---|---|---|
//! | `Sends` | `FunctionName`, `Channel`, `Outcome` | delivery (IN_APP: frames posted `sent`, failed or gone posts `failed`) |
//! | `FramesSent`, `ConnectionsGone`, `PostsFailed`, `PoisonRecords`, `Redelivered`, `RecordsRetried`, `Records` | `FunctionName` | delivery, per batch |
//! | `FallbackDeliveries` | `FunctionName` | whoever publishes with the Kafka-down fallback (api), per change posted straight to the sockets |
//! | `RelayBacklog`, `RelayPublished`, `RelayFailed`, `RelayUsersScanned` | `FunctionName` | outbox-relay, per run that held the lease |
//! | `ScheduledFired`, `ScheduledReplayed`, `ScheduledFailed` | `FunctionName` | scheduler, per run (`schedule.rs`) |
//! | `CreatesShed` | `FunctionName` | api, per create refused with 503 because Redis is nearly full (`REDIS_SHED_MEMORY_PERCENT`) |
//! | `KafkaUnreachable` | `FunctionName` | any producer (`bus.rs`), once per outage it notices: requests stop waiting for Kafka |
//! | `Records`, `PoisonRecords`, `RecordsCounted`, `Redelivered`, `PartitionsRetried` | `FunctionName` | analytics, per batch (`Redelivered`: records its watermark had already counted) |
//! | `ProviderBreakerOpened` | `FunctionName`; and `FunctionName`, `Provider` | push, when a provider's circuit breaker opens or re-opens after a failed trial (`store/breaker.rs`); the alarm watches the first |
//!
//! A line is written with one `write` of a whole line, so lines from concurrent tasks never
//! interleave. Lines are EMF only if they are valid JSON with the `_aws` member: [`MetricSet::line`]
//! is what the unit tests hold to that shape.

use std::sync::OnceLock;

use serde::Serialize;

/// The CloudWatch namespace of every Herald metric.
pub const NAMESPACE: &str = "Herald";

/// A CloudWatch unit (the ones Herald uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Metrics that share one set of dimension values: one EMF line.
#[derive(Debug, Clone)]
pub struct MetricSet {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, f64, Unit)>,
}

/// The function's name, set once at cold start.
static FUNCTION_NAME: OnceLock<String> = OnceLock::new();

/// Names this process's function in every [`MetricSet::new`] (`TelemetrySettings::function_name`,
/// set by [`crate::telemetry::init`]). The first call wins.
pub fn set_function_name(name: &str) {
    let _ = FUNCTION_NAME.set(name.to_owned());
}

/// The function's name, as the `FunctionName` dimension: `local` until it is set.
fn function_name() -> &'static str {
    FUNCTION_NAME.get().map_or("local", String::as_str)
}

impl MetricSet {
    /// A set with the `FunctionName` dimension of this process.
    pub fn new() -> Self {
        Self::for_function(function_name())
    }

    /// A set with an explicit `FunctionName` (tests).
    pub fn for_function(name: &str) -> Self {
        MetricSet {
            dimensions: vec![("FunctionName", name.to_owned())],
            values: Vec::new(),
        }
    }

    /// Adds a dimension (`Channel`, `Outcome`, ...). CloudWatch allows 30 per metric.
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Adds a `Count` metric.
    pub fn count(mut self, name: &'static str, n: usize) -> Self {
        self.values.push((name, n as f64, Unit::Count));
        self
    }

    /// Adds a metric with a unit.
    pub fn value(mut self, name: &'static str, v: f64, unit: Unit) -> Self {
        self.values.push((name, v, unit));
        self
    }

    /// The EMF line (no trailing newline) stamped `timestamp_ms` (Unix epoch, milliseconds).
    pub fn line(&self, timestamp_ms: i64) -> String {
        let mut line = Vec::with_capacity(256);
        self.write_line(&mut line, timestamp_ms);
        String::from_utf8(line).unwrap_or_default()
    }

    /// Appends the line to `out`, serialised straight from the set (no JSON tree in between:
    /// the consumers write a line or two for every batch).
    fn write_line(&self, out: &mut Vec<u8>, timestamp_ms: i64) {
        // Serialising strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(
            out,
            &Line {
                set: self,
                timestamp_ms,
            },
        );
    }

    /// Writes the line to stdout (where Lambda's log capture, and so CloudWatch, reads it).
    pub fn emit(self) {
        emit_all([self]);
    }
}

/// Writes each set's line to stdout in one write: a run's lines never interleave with another
/// task's, and a batch's metrics cost one system call. Sets with no metric write nothing.
pub fn emit_all(sets: impl IntoIterator<Item = MetricSet>) {
    use std::io::Write;
    let timestamp_ms = chrono::Utc::now().timestamp_millis();
    let mut lines = Vec::new();
    for set in sets {
        if set.values.is_empty() {
            continue;
        }
        set.write_line(&mut lines, timestamp_ms);
        lines.push(b'\n');
    }
    if !lines.is_empty() {
        let _ = std::io::stdout().lock().write_all(&lines);
    }
}

/// One set's EMF object: the `_aws` directive, then every dimension and every metric as a
/// top-level member (EMF's rule).
struct Line<'a> {
    set: &'a MetricSet,
    timestamp_ms: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    timestamp: i64,
    cloud_watch_metrics: [MetricDirective<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDirective<'a> {
    namespace: &'static str,
    dimensions: [Vec<&'static str>; 1],
    metrics: Vec<MetricName<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricName<'a> {
    name: &'a str,
    unit: &'static str,
}

impl Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let set = self.set;
        let mut root = s.serialize_map(None)?;
        root.serialize_entry(
            "_aws",
            &Directive {
                timestamp: self.timestamp_ms,
                cloud_watch_metrics: [MetricDirective {
                    namespace: NAMESPACE,
                    dimensions: [set.dimensions.iter().map(|(k, _)| *k).collect()],
                    metrics: set
                        .values
                        .iter()
                        .map(|(name, _, unit)| MetricName {
                            name,
                            unit: unit.as_str(),
                        })
                        .collect(),
                }],
            },
        )?;
        for (k, v) in &set.dimensions {
            root.serialize_entry(k, v)?;
        }
        for (name, v, _) in &set.values {
            root.serialize_entry(name, v)?;
        }
        root.end()
    }
}

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_line_is_embedded_metric_format() {
        let line = MetricSet::for_function("herald-DeliveryFunction-x1")
            .dimension("Channel", "IN_APP")
            .dimension("Outcome", "sent")
            .count("Sends", 3)
            .value("Latency", 1.5, Unit::Milliseconds)
            .line(1_700_000_000_123);
        assert!(!line.contains('\n'), "one line: {line}");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], json!(1_700_000_000_123_i64));
        assert_eq!(directive["Namespace"], json!("Herald"));
        assert_eq!(
            directive["Dimensions"],
            json!([["FunctionName", "Channel", "Outcome"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "Sends", "Unit": "Count"},
                {"Name": "Latency", "Unit": "Milliseconds"}
            ])
        );
        // Every dimension and every metric is a top-level member (EMF's rule).
        assert_eq!(v["FunctionName"], json!("herald-DeliveryFunction-x1"));
        assert_eq!(v["Channel"], json!("IN_APP"));
        assert_eq!(v["Outcome"], json!("sent"));
        assert_eq!(v["Sends"], json!(3.0));
        assert_eq!(v["Latency"], json!(1.5));
    }

    #[test]
    fn the_function_name_dimension_defaults_to_this_process() {
        let v: Value = serde_json::from_str(&MetricSet::new().count("RelayBacklog", 0).line(0))
            .unwrap_or_default();
        let name = v["FunctionName"].as_str().unwrap_or_default().to_owned();
        let expected = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "local".into());
        assert_eq!(name, expected);
        assert_eq!(v["RelayBacklog"], json!(0.0));
    }
}
