//! Structured logs. One JSON object per line (CloudWatch Logs Insights reads the fields), or
//! human-readable text with `LOG_FORMAT=text`. Level from `RUST_LOG` (default `info`). The
//! settings come from [`TelemetrySettings`] (read by `config`).

use tracing_subscriber::EnvFilter;

use crate::config::TelemetrySettings;

/// Installs the global subscriber and names the function in metrics
/// ([`crate::metrics::set_function_name`]). Call once, first thing in `main`.
pub fn init(settings: &TelemetrySettings) {
    crate::metrics::set_function_name(&settings.function_name);
    let filter = settings
        .log_filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let text = settings.text_logs;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // Lambda adds its own timestamps to each line; keeping ours costs a few bytes and keeps local
    // logs readable.
    let _ = if text {
        builder.with_ansi(false).try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
}
