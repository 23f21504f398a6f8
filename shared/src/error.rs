//! Errors as clients see them: RFC 9457 `application/problem+json`.
//!
//! Every HTTP failure is a [`Problem`]: a stable `type` URI per kind of failure, a human `title`,
//! the `status`, a `detail` specific to this occurrence and, on validation failures, `errors` with
//! one entry per offending field. Internal causes are logged, never sent to the client.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field: `field` is a JSON path into the request (`channels[1]`, `quietHours.start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (429 and 503); also sent as the `Retry-After` header.
    #[serde(
        default,
        rename = "retryAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<u64>,
}

/// Everything an HTTP route can answer besides success. Each variant is one problem `type`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, not UTF-8, or a query parameter cannot be parsed.
    #[error("{0}")]
    BadRequest(String, Vec<FieldError>),
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// The change log no longer reaches back to the requested `since`: refetch the inbox.
    #[error("{0}")]
    ResyncRequired(String),
    /// An `If-Match` that no longer matches the stored version: refetch, then retry.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed JSON that breaks a rule: field errors, an Idempotency-Key reused with another body.
    #[error("{0}")]
    Unprocessable(String, Vec<FieldError>),
    #[error("rate limit exceeded, retry after {retry_after_secs} s")]
    RateLimited {
        retry_after_secs: u64,
        detail: String,
    },
    /// The caller's tenant is over its quota of creates (`TENANT_CREATES_PER_MINUTE`); nothing
    /// was written.
    #[error("tenant quota exceeded, retry after {retry_after_secs} s")]
    QuotaExceeded {
        retry_after_secs: u64,
        detail: String,
    },
    /// A dependency failed; the cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A dependency is unavailable for a while (unreachable, restarting, failing over): retry
    /// after [`UNAVAILABLE_RETRY_AFTER_SECS`].
    #[error("{0}")]
    Unavailable(String),
}

const TYPE_BASE: &str = "https://herald.dev/problems/";

/// The `Retry-After` of every 503: long enough for a client not to hammer a Redis that is
/// loading its AOF or failing over, short enough that a blip costs little.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        ApiError::Unprocessable(detail, errors)
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(..) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound => 404,
            ApiError::ResyncRequired(_) => 410,
            ApiError::PreconditionFailed(_) => 412,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Unprocessable(..) => 422,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(..) => ("bad-request", "Bad request"),
            ApiError::Unauthorized => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::NotFound => ("not-found", "Not found"),
            ApiError::ResyncRequired(_) => (
                "resync-required",
                "Change log no longer covers this position",
            ),
            ApiError::PreconditionFailed(_) => ("precondition-failed", "Precondition failed"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::Unprocessable(..) => ("validation", "Request is invalid"),
            ApiError::RateLimited { .. } => ("rate-limited", "Too many requests"),
            ApiError::QuotaExceeded { .. } => ("quota-exceeded", "Tenant quota exceeded"),
            ApiError::Internal(_) => ("internal", "Internal error"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
        }
    }

    /// The problem document for this error. Internal causes stay out of it.
    pub fn to_problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let (detail, errors, retry_after) = match self {
            ApiError::BadRequest(d, e) | ApiError::Unprocessable(d, e) => {
                (d.clone(), e.clone(), None)
            }
            ApiError::RateLimited {
                retry_after_secs,
                detail,
            }
            | ApiError::QuotaExceeded {
                retry_after_secs,
                detail,
            } => (detail.clone(), vec![], Some(*retry_after_secs)),
            ApiError::Unavailable(detail) => {
                (detail.clone(), vec![], Some(UNAVAILABLE_RETRY_AFTER_SECS))
            }
            ApiError::Internal(_) => (
                "the request could not be completed; it is safe to retry".to_owned(),
                vec![],
                None,
            ),
            other => (other.to_string(), vec![], None),
        };
        Problem {
            kind: format!("{TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: self.status(),
            detail,
            errors,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_client() {
        let e = ApiError::internal(std::io::Error::other("redis at 10.0.0.7 refused"));
        let p = e.to_problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("10.0.0.7"));
    }

    #[test]
    fn validation_problems_name_their_fields() {
        let p = ApiError::validation(vec![FieldError::new("title", "too long")]).to_problem();
        assert_eq!(p.status, 422);
        assert_eq!(p.kind, "https://herald.dev/problems/validation");
        assert_eq!(p.detail, "title: too long");
        assert_eq!(p.errors.len(), 1);
    }
}

/// Why a function cannot start (its cold start fails, and Lambda reports it as an init error).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Kafka(#[from] crate::bus::BusError),
}

/// An error with its sources, `outer: inner: innermost`, for logs and outcome details.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
