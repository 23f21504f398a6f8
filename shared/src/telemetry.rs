//! Structured logs. One JSON object per line (CloudWatch Logs Insights reads the fields), or
//! human-readable text with `LOG_FORMAT=text`. Level from `RUST_LOG` (default `info`): a level or
//! `target=level` directives, filtered by target only ([`Targets`]: no regex engine in the
//! binary); a value that does not parse means `info`. The settings come from
//! [`TelemetrySettings`] (read by `config`).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetrySettings;

/// Installs the global subscriber and names the function in metrics
/// ([`crate::metrics::set_function_name`]). Call once, first thing in `main`.
pub fn init(settings: &TelemetrySettings) {
    crate::metrics::set_function_name(&settings.function_name);
    let filter = settings
        .log_filter
        .as_deref()
        .and_then(|f| f.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let text = settings.text_logs;
    let subscriber = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    // Lambda adds its own timestamps to each line; keeping ours costs a few bytes and keeps local
    // logs readable.
    let _ = if text {
        subscriber.with(layer.with_ansi(false)).try_init()
    } else {
        subscriber
            .with(layer.json().flatten_event(true).with_current_span(false))
            .try_init()
    };
}
