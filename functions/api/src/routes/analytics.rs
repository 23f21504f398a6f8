//! Analytics over HTTP:
//!
//! - `GET /v1/analytics` (scope `analytics:read`): daily series and totals of the outcome
//!   counters, summed over every Kafka-partition shard, optionally for one type and one channel;
//! - `GET /v1/notifications/{id}/deliveries`: one notification's outcome history across channels
//!   (its funnel) and its escalation steps, for its owner and for services holding
//!   `notifications:write`;
//! - `POST /v1/notifications/{id}/click`: records a click on one of the caller's notifications.
//!
//! The counters are written by the `analytics` function, so they trail Kafka by its batching
//! delay.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::auth::{SCOPE_ANALYTICS, SCOPE_WRITE};
use shared::error::{ApiError, FieldError, Problem};
use shared::escalation::StepReport;
use shared::limits;
use shared::model::{Channel, OutcomeStatus};
use shared::store::analytics::{day_name, HistoryEntry};
use utoipa::ToSchema;

use crate::http::{self, store_error};
use crate::Deps;

/// Days `GET /v1/analytics` covers when `from` is not given (ending at `to`).
pub const DEFAULT_DAYS: i64 = 7;
/// The longest range one request may ask for, in days.
pub const MAX_DAYS: i64 = 366;
/// The type engagement is counted under when its notification was gone before it was counted
/// (the analytics function's `UNKNOWN_TYPE`); accepted as a `type` filter.
const UNKNOWN_TYPE: &str = "(unknown)";

/// How many records had each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeCounts {
    pub sent: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub deferred: u64,
    pub seen: u64,
    pub read: u64,
    pub clicked: u64,
}

impl OutcomeCounts {
    fn add(&mut self, status: OutcomeStatus, n: u64) {
        let slot = match status {
            OutcomeStatus::Sent => &mut self.sent,
            OutcomeStatus::Failed => &mut self.failed,
            OutcomeStatus::Suppressed => &mut self.suppressed,
            OutcomeStatus::Deferred => &mut self.deferred,
            OutcomeStatus::Seen => &mut self.seen,
            OutcomeStatus::Read => &mut self.read,
            OutcomeStatus::Clicked => &mut self.clicked,
        };
        *slot += n;
    }
}

/// One UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaySeries {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub outcomes: OutcomeCounts,
    /// Per channel (`IN_APP`, `PUSH`, `EMAIL`, `SMS`); engagement is counted under `IN_APP`.
    pub by_channel: BTreeMap<String, OutcomeCounts>,
    /// Estimated distinct users with at least one delivery outcome that day (HyperLogLog,
    /// about 0.8% standard error). Not narrowed by `type` or `channel`.
    pub unique_recipients: u64,
}

/// The whole range.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsTotals {
    pub outcomes: OutcomeCounts,
    pub by_channel: BTreeMap<String, OutcomeCounts>,
    pub by_type: BTreeMap<String, OutcomeCounts>,
    /// Estimated distinct recipients over the whole range (the union, not the sum of the days).
    pub unique_recipients: u64,
}

/// The answer of `GET /v1/analytics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsReport {
    pub from: String,
    pub to: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Every day of the range, oldest first (days without records are zeros).
    pub days: Vec<DaySeries>,
    pub totals: AnalyticsTotals,
}

/// The answer of `GET /v1/notifications/{id}/deliveries`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveriesResponse {
    pub notification_id: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Every recorded outcome and engagement, oldest first (at one instant: delivery, seen,
    /// read, clicked). Empty until the first outcome is counted.
    pub deliveries: Vec<HistoryEntry>,
    /// Its escalation steps, in order, each `pending`, `fired` or `cancelled` (absent when it
    /// has none). A fired step's outcomes are in `deliveries` with reason `escalated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalation: Vec<StepReport>,
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::BadRequest(
        format!("`{field}` {message}"),
        vec![FieldError::new(field, message)],
    )
}

fn date(req: &Request, name: &str) -> Result<Option<NaiveDate>, ApiError> {
    http::query(req, name)
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .filter(|_| v.len() == 10)
                .ok_or_else(|| bad(name, format!("must be a date as YYYY-MM-DD, got {v:?}")))
        })
        .transpose()
}

/// Daily outcome counters and unique recipients.
///
/// Over 100 lines: the query checks (every bad parameter collected into one 400) followed by one
/// pass that filters the stored counters and sums them per day, channel and type; the route reads
/// best as that one sequence.
#[utoipa::path(get, path = "/v1/analytics", tag = "analytics",
    params(
        ("from" = Option<String>, Query, description = "First day, `YYYY-MM-DD` (UTC); default: 6 days before `to`"),
        ("to" = Option<String>, Query, description = "Last day, `YYYY-MM-DD` (UTC); default: today. At most 366 days in all"),
        ("type" = Option<String>, Query, description = "Only this notification type"),
        ("channel" = Option<String>, Query, description = "Only this channel: IN_APP, PUSH, EMAIL or SMS")),
    responses(
        (status = 200, body = AnalyticsReport),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["analytics:read"])))]
pub async fn report(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_ANALYTICS)?;
    let mut errors = Vec::new();
    let mut check = |r: Result<Option<NaiveDate>, ApiError>| match r {
        Ok(d) => d,
        Err(ApiError::BadRequest(_, e)) => {
            errors.extend(e);
            None
        }
        Err(_) => None,
    };
    let (from, to) = (check(date(req, "from")), check(date(req, "to")));
    let kind = http::query(req, "type").map(str::to_owned);
    if kind
        .as_deref()
        .is_some_and(|k| !limits::valid_type(k) && k != UNKNOWN_TYPE)
    {
        errors.push(FieldError::new("type", "is not a valid notification type"));
    }
    let channel = match http::query(req, "channel") {
        None => None,
        Some(c) => match Channel::from_name(c) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError::new(
                    "channel",
                    format!("must be one of IN_APP, PUSH, EMAIL, SMS; got {c:?}"),
                ));
                None
            }
        },
    };
    let to = to.unwrap_or_else(|| Utc::now().date_naive());
    let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    if errors.is_empty() {
        if from > to {
            errors.push(FieldError::new("from", "must not be after `to`"));
        } else if (to - from).num_days() + 1 > MAX_DAYS {
            errors.push(FieldError::new(
                "from",
                format!("the range spans more than {MAX_DAYS} days"),
            ));
        }
    }
    if !errors.is_empty() {
        let detail = match errors.as_slice() {
            [one] => format!("`{}` {}", one.field, one.message),
            many => format!("{} query parameters are invalid", many.len()),
        };
        return Err(ApiError::BadRequest(detail, errors));
    }

    let (days, unique_total) = deps.analytics.days(from, to).await.map_err(store_error)?;
    let mut totals = AnalyticsTotals {
        outcomes: OutcomeCounts::default(),
        by_channel: BTreeMap::new(),
        by_type: BTreeMap::new(),
        unique_recipients: unique_total,
    };
    let series = days
        .into_iter()
        .map(|day| {
            let mut outcomes = OutcomeCounts::default();
            let mut by_channel: BTreeMap<String, OutcomeCounts> = BTreeMap::new();
            for (key, n) in &day.counts {
                if kind.as_deref().is_some_and(|k| k != key.kind)
                    || channel.is_some_and(|c| c != key.channel)
                {
                    continue;
                }
                outcomes.add(key.status, *n);
                by_channel
                    .entry(key.channel.as_str().to_owned())
                    .or_default()
                    .add(key.status, *n);
                totals.outcomes.add(key.status, *n);
                totals
                    .by_channel
                    .entry(key.channel.as_str().to_owned())
                    .or_default()
                    .add(key.status, *n);
                totals
                    .by_type
                    .entry(key.kind.clone())
                    .or_default()
                    .add(key.status, *n);
            }
            DaySeries {
                date: day_name(day.day),
                outcomes,
                by_channel,
                unique_recipients: day.unique_recipients,
            }
        })
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &AnalyticsReport {
            from: day_name(from),
            to: day_name(to),
            kind,
            channel,
            days: series,
            totals,
        },
    ))
}

/// One notification's outcomes across channels, with timestamps: its funnel.
#[utoipa::path(get, path = "/v1/notifications/{id}/deliveries", tag = "analytics",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = DeliveriesResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's notification (services with `notifications:write`: nothing recorded for it)", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = []), ("jwt" = ["notifications:write"])))]
pub async fn deliveries(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    if !plausible_id(id) {
        return Err(ApiError::NotFound);
    }
    let history = deps.analytics.history(id).await.map_err(store_error)?;
    let (user, kind, entries) = match history {
        Some(h) if h.user_id == claims.sub || claims.has_scope(SCOPE_WRITE) => {
            (h.user_id, h.kind, h.entries)
        }
        Some(_) => return Err(ApiError::NotFound),
        // Nothing counted yet: the owner sees an empty funnel, everyone else 404.
        None => match deps.store.get(&claims.sub, id).await.map_err(store_error)? {
            Some(n) => (claims.sub.clone(), Some(n.kind), Vec::new()),
            None => return Err(ApiError::NotFound),
        },
    };
    let escalation = deps
        .escalations
        .report(&user, id)
        .await
        .map_err(store_error)?;
    Ok(http::json(
        StatusCode::OK,
        &DeliveriesResponse {
            notification_id: id.to_owned(),
            kind,
            deliveries: entries,
            escalation,
        },
    ))
}

/// Record a click on one of the caller's notifications (its first click is counted as `clicked`
/// on `IN_APP`; later ones are accepted and not counted).
#[utoipa::path(post, path = "/v1/notifications/{id}/click", tag = "analytics",
    params(("id" = String, Path)),
    responses(
        (status = 202, description = "Recorded on notification-analytics; counted shortly"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Kafka did not acknowledge; retry", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn click(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    let Some(first) = deps
        .store
        .record_click(&claims.sub, id)
        .await
        .map_err(store_error)?
    else {
        return Err(ApiError::NotFound);
    };
    if let Err(e) = deps
        .publisher
        .record_click(&claims.tenant, &claims.sub, id, first)
        .await
    {
        tracing::warn!(id, error = %e, "click not recorded: kafka unavailable");
        return Err(ApiError::Unavailable(
            "the click could not be recorded; retry shortly".into(),
        ));
    }
    Ok(http::empty(StatusCode::ACCEPTED))
}

/// Ids are UUIDs; anything that could not be one (or would break a key's hash tag) is 404.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
