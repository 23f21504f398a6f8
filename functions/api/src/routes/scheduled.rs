//! Send later: a create with `sendAt` (single or batch) stores a job per recipient and answers
//! `202`; `/v1/scheduled` reads and cancels the caller's jobs. Only the sender that scheduled a
//! job sees it (anyone else's is 404), with the `notifications:write` scope. The recipient sees
//! nothing until the job fires (`shared::schedule`, `docs/scheduling.md`).

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::auth::SCOPE_WRITE;
use shared::error::{ApiError, FieldError, Problem};
use shared::schedule::{self, Reason, ScheduleInfo, Scheduling, When};
use shared::store::{AddOutcome, NewNotification, ScheduledJob, ScheduledState, ScheduledStatus};
use utoipa::ToSchema;

use super::notifications::{admit, enforce_sender_limit, REPLAYED_HEADER};
use super::quota;
use crate::http::{self, store_error};
use crate::Deps;

/// A scheduled send, as `202`, `GET` and `DELETE` answer it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledResponse {
    /// The notification's id once sent.
    pub id: String,
    pub status: ScheduledState,
    #[serde(rename = "sendAt")]
    pub send_at: DateTime<Utc>,
    /// Why an optimal send chose `sendAt` (in the `202` of `sendAt: "optimal"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// One recipient's scheduled send in a batch's `202`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledBatchItem {
    pub id: String,
    #[serde(rename = "userId")]
    pub user_id: String,
    pub status: ScheduledState,
    #[serde(rename = "sendAt")]
    pub send_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// A batch create with `sendAt`: one job per recipient, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledBatchResponse {
    pub items: Vec<ScheduledBatchItem>,
}

/// The body of `POST /v1/scheduled/cancel`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelByKeyRequest {
    /// The `cancelKey` the creates carried.
    #[serde(rename = "cancelKey")]
    pub cancel_key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelByKeyResponse {
    /// The ids of the sends cancelled now (those already sent or cancelled are not listed).
    pub cancelled: Vec<String>,
}

impl ScheduledResponse {
    fn of(status: ScheduledStatus) -> Self {
        ScheduledResponse {
            id: status.id,
            status: status.state,
            send_at: status.send_at,
            reason: None,
        }
    }
}

/// A create with `sendAt`, validated: its recipients, its notification, when, and whether it
/// came to the single create (else the batch).
pub(crate) struct ScheduledCreate {
    pub(crate) recipients: Vec<String>,
    pub(crate) new: NewNotification,
    pub(crate) scheduling: Scheduling,
    pub(crate) single: bool,
}

/// The recipients' jobs of a create with `sendAt`, after the create's own checks: the sender's
/// limit and `Idempotency-Key` claim as for any create, then one job per recipient (a retry with
/// the same key and body answers the jobs the first attempt stored). `Single` answers one
/// [`ScheduledResponse`], a batch a [`ScheduledBatchResponse`].
pub(crate) async fn schedule(
    deps: &Deps,
    sender: &str,
    key: Option<&str>,
    body: &[u8],
    create: ScheduledCreate,
) -> Result<Response<Body>, ApiError> {
    let ScheduledCreate {
        recipients,
        new,
        scheduling,
        single,
    } = create;
    let derive = |k: &str| {
        if single {
            k.to_owned()
        } else {
            format!("batch:{k}")
        }
    };
    let admission = admit(deps, key, sender, body, derive);
    let (claimed, charged) = quota::charge(deps, sender, recipients.len(), admission).await?;
    let share = claimed.as_ref().map(|c| c.recipient.key.clone());
    let ttl = deps.store.settings().idempotency_ttl;
    let results: Vec<Result<(ScheduledBatchItem, bool), ApiError>> = stream::iter(recipients)
        .map(|recipient| {
            let mut new = new.clone();
            new.user_id = recipient.clone();
            let (scheduling, share) = (&scheduling, share.as_deref());
            async move {
                let choice = moment(deps, &recipient, scheduling.when).await?;
                let job = ScheduledJob {
                    id: uuid::Uuid::now_v7().to_string(),
                    sender: sender.to_owned(),
                    tenant: deps.schedules.tenant().clone(),
                    send_at: choice.send_at,
                    cancel_key: scheduling.cancel_key.clone(),
                    schedule: choice.info.clone(),
                    notification: new,
                };
                let outcome = deps
                    .schedules
                    .add(&job, share, ttl)
                    .await
                    .map_err(store_error)?;
                Ok(match outcome {
                    AddOutcome::Scheduled => (
                        ScheduledBatchItem {
                            id: job.id,
                            user_id: recipient,
                            status: ScheduledState::Scheduled,
                            send_at: job.send_at,
                            reason: choice.info.map(|i| i.reason),
                        },
                        false,
                    ),
                    AddOutcome::Replayed(status) => (
                        ScheduledBatchItem {
                            id: status.id,
                            user_id: recipient,
                            status: status.state,
                            send_at: status.send_at,
                            reason: None,
                        },
                        true,
                    ),
                })
            }
        })
        .buffered(32)
        .collect()
        .await;
    let scheduled = results
        .iter()
        .filter(|r| matches!(r, Ok((_, false))))
        .count();
    charged.settle(scheduled).await;
    let mut items = Vec::with_capacity(results.len());
    let mut replayed = true;
    for result in results {
        let (item, was_replayed) = result?;
        replayed &= was_replayed;
        items.push(item);
    }
    let mut resp = match items.pop().filter(|_| single && items.is_empty()) {
        Some(item) => {
            let mut resp = http::json(
                StatusCode::ACCEPTED,
                &ScheduledResponse {
                    id: item.id.clone(),
                    status: item.status,
                    send_at: item.send_at,
                    reason: item.reason,
                },
            );
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/scheduled/{}", item.id)) {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            resp
        }
        None => http::json(StatusCode::ACCEPTED, &ScheduledBatchResponse { items }),
    };
    if replayed {
        resp.headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// When one recipient's send goes out, and the optimal choice to show.
struct Moment {
    send_at: DateTime<Utc>,
    info: Option<ScheduleInfo>,
}

async fn moment(deps: &Deps, recipient: &str, when: When) -> Result<Moment, ApiError> {
    match when {
        When::At(send_at) => Ok(Moment {
            send_at,
            info: None,
        }),
        When::Optimal { within } => {
            let (own, global) = deps
                .engagement
                .histograms(recipient)
                .await
                .map_err(store_error)?;
            let info = schedule::choose(&own, &global, Utc::now(), within);
            Ok(Moment {
                send_at: info.send_at,
                info: Some(info),
            })
        }
    }
}

/// A send the caller scheduled.
#[utoipa::path(get, path = "/v1/scheduled/{id}", tag = "scheduled", params(("id" = String, Path)),
    responses(
        (status = 200, body = ScheduledResponse),
        (status = 404, description = "No such scheduled send of this sender", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn get(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims_with_scope(req, SCOPE_WRITE)?;
    match deps
        .schedules
        .status(&claims.sub, id)
        .await
        .map_err(store_error)?
    {
        Some(status) => Ok(http::json(StatusCode::OK, &ScheduledResponse::of(status))),
        None => Err(ApiError::NotFound),
    }
}

/// Cancel a send the caller scheduled. Answers its status after the call: `cancelled`, or `sent`
/// when it is too late (already sent, or being sent now); cancelling twice answers `cancelled`.
#[utoipa::path(delete, path = "/v1/scheduled/{id}", tag = "scheduled", params(("id" = String, Path)),
    responses(
        (status = 200, description = "`cancelled`, or `sent` when it was too late", body = ScheduledResponse),
        (status = 404, description = "No such scheduled send of this sender", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn cancel(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims_with_scope(req, SCOPE_WRITE)?;
    enforce_sender_limit(deps, &claims.sub).await?;
    let status = deps
        .schedules
        .cancel(&claims.sub, id, Utc::now().timestamp_millis())
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    let mut answer = ScheduledResponse::of(status.clone());
    if status.state == ScheduledState::Scheduled && !status.cancellable {
        answer.status = ScheduledState::Sent; // claimed: it is being sent now
    }
    Ok(http::json(StatusCode::OK, &answer))
}

/// Cancel every pending send the caller created with this `cancelKey`.
#[utoipa::path(post, path = "/v1/scheduled/cancel", tag = "scheduled", request_body = CancelByKeyRequest,
    responses(
        (status = 200, body = CancelByKeyResponse),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn cancel_by_key(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims_with_scope(req, SCOPE_WRITE)?;
    let body: CancelByKeyRequest = http::json_body(req, 1024)?;
    if body.cancel_key.is_empty() || body.cancel_key.len() > schedule::CANCEL_KEY_MAX_BYTES {
        return Err(ApiError::validation(vec![FieldError::new(
            "cancelKey",
            format!("must be 1–{} bytes", schedule::CANCEL_KEY_MAX_BYTES),
        )]));
    }
    enforce_sender_limit(deps, &claims.sub).await?;
    let cancelled = deps
        .schedules
        .cancel_by_key(&claims.sub, &body.cancel_key, Utc::now().timestamp_millis())
        .await
        .map_err(store_error)?;
    Ok(http::json(
        StatusCode::OK,
        &CancelByKeyResponse { cancelled },
    ))
}
