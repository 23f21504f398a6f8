//! `Schedule` events: each `rate(...)` schedule invokes its function with an EventBridge
//! "Scheduled Event" (or the event's `Input`), first one period after start, as EventBridge does.
//! A failed invocation is logged; the next tick runs as planned.

use std::time::Duration;

use axum::body::Bytes;
use serde_json::json;

use crate::lambda::Lambda;
use crate::template::Schedule;

/// Runs `schedule` for `function` until `stop` is set.
pub async fn run(
    lambda: Lambda,
    function: String,
    schedule: Schedule,
    region: String,
    account: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + schedule.every, schedule.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = crate::lambda::stopped_flag(&mut stop) => return,
        }
        let rule = format!(
            "arn:aws:events:{region}:{account}:rule/{function}-{}",
            schedule.name
        );
        let event = schedule.input.clone().unwrap_or_else(|| {
            json!({
                "version": "0",
                "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": account,
                "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "region": region,
                "resources": [rule],
                "detail": {},
            })
        });
        match lambda
            .invoke(&function, Bytes::from(event.to_string()))
            .await
        {
            Ok(_) => {
                tracing::debug!(function = %function, schedule = %schedule.expression, "scheduled invocation done")
            }
            Err(e) => {
                tracing::warn!(function = %function, schedule = %schedule.expression, "scheduled invocation failed: {e}")
            }
        }
    }
}

/// How often a schedule fires, for display.
pub fn describe(every: Duration) -> String {
    format!("every {}s", every.as_secs())
}
