//! [`TelemetrySettings`]: the log format and filter, and the function name metrics carry.

use super::Env;

/// How logs are written and which function metrics are attributed to. Never fails: an unknown
/// `LOG_FORMAT` means JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `LOG_FORMAT=text` (any case): human-readable lines instead of JSON.
    pub text_logs: bool,
    /// `RUST_LOG`: the log filter; unset, `info`.
    pub log_filter: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda; devstack sets the binary's name): the metrics'
    /// `FunctionName` dimension; unset, `local`.
    pub function_name: String,
}

impl TelemetrySettings {
    pub fn from_env(env: &Env) -> Self {
        TelemetrySettings {
            text_logs: env
                .optional("LOG_FORMAT")
                .is_some_and(|f| f.eq_ignore_ascii_case("text")),
            log_filter: env.optional("RUST_LOG"),
            function_name: env.string_or("AWS_LAMBDA_FUNCTION_NAME", "local"),
        }
    }
}
