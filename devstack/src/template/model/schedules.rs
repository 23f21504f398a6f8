//! `Schedule`/`ScheduleV2` events: only `rate(...)` expressions; a disabled schedule is none.

use std::time::Duration;

use serde_json::{Map, Value};

use super::Schedule;
use crate::template::TemplateError;

pub(super) fn schedule(
    name: &str,
    p: &Map<String, Value>,
    at: &str,
) -> Result<Option<Schedule>, TemplateError> {
    let enabled = match p.get("Enabled") {
        Some(Value::Bool(b)) => *b,
        _ => !matches!(p.get("State").and_then(Value::as_str), Some("DISABLED")),
    };
    if !enabled {
        return Ok(None);
    }
    let expr = p
        .get("Schedule")
        .or_else(|| p.get("ScheduleExpression"))
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(at, "Schedule is missing"))?;
    let every = parse_rate(expr).ok_or_else(|| {
        TemplateError::unsupported(at, format!("the schedule {expr:?} (only rate(N unit))"))
    })?;
    let input = match p.get("Input").and_then(Value::as_str) {
        Some(s) => Some(
            serde_json::from_str(s)
                .map_err(|e| TemplateError::invalid(at, format!("Input is not JSON: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(Schedule {
        name: name.to_owned(),
        every,
        expression: expr.to_owned(),
        input,
    }))
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(2 hours)`, `rate(1 day)`.
pub fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}
