//! Outbound webhooks, the operator's side (scope `webhooks:admin` on every route):
//!
//! - `POST /v1/webhooks`: register a URL for some event types; the answer holds the signing
//!   secret, shown only there (rules in [`shared::webhooks`]);
//! - `GET /v1/webhooks`, `DELETE /v1/webhooks/{id}`: list (no secrets) and remove;
//! - `GET /v1/webhooks/{id}/deliveries`: the latest attempts;
//! - `POST /v1/webhooks/{id}/replay`: queue again what was sent or dead-lettered in a window.
//!
//! The registry is the deployment's ([`shared::store::KeySpace::webhooks`]); with tenants it
//! would be the caller's tenant's.

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::auth::SCOPE_WEBHOOKS;
use shared::error::{ApiError, FieldError, Problem};
use shared::webhooks::{
    DeliveryAttempt, Webhook, WebhookCreated, WebhookRequest, WebhookView, MAX_WEBHOOKS,
};
use utoipa::ToSchema;

use crate::http::{self, store_error};
use crate::Deps;

/// Largest body accepted.
const BODY_MAX_BYTES: usize = 8 * 1024;

/// The registered webhooks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// A webhook's latest attempts, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttemptList {
    pub items: Vec<DeliveryAttempt>,
}

/// The body of `POST /v1/webhooks/{id}/replay`: a window of event times.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Events that happened at or after this time (RFC 3339)…
    pub from: DateTime<Utc>,
    /// …and at or before this one.
    pub to: DateTime<Utc>,
}

/// What a replay queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayQueued {
    /// Messages queued again (sent or dead-lettered ones; those still waiting are not counted).
    pub queued: usize,
}

/// Register a webhook.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body = WebhookRequest,
    responses(
        (status = 201, description = "Registered. The secret is shown only in this answer", body = WebhookCreated),
        (status = 422, description = "A URL that is not https, names or resolves to a non-public address, an unknown or no event, or already 50 webhooks", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["webhooks:admin"])))]
pub async fn register(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WEBHOOKS)?;
    let body: WebhookRequest = http::json_body(req, BODY_MAX_BYTES)?;
    let hook = Webhook::from_request(&body, deps.webhook_settings.egress(), Utc::now())
        .await
        .map_err(ApiError::validation)?;
    if !deps
        .webhooks
        .register(&hook, MAX_WEBHOOKS)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::Unprocessable(
            format!("at most {MAX_WEBHOOKS} webhooks; delete one first"),
            vec![FieldError::new(
                "url",
                format!("would be webhook number {}", MAX_WEBHOOKS + 1),
            )],
        ));
    }
    let mut resp = http::json(StatusCode::CREATED, &WebhookCreated::from(&hook));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/webhooks/{}", hook.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// The registered webhooks, oldest first, without their secrets.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)),
    security(("jwt" = ["webhooks:admin"])))]
pub async fn list(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WEBHOOKS)?;
    let items = deps
        .webhooks
        .list()
        .await
        .map_err(store_error)?
        .iter()
        .map(WebhookView::from)
        .collect();
    Ok(http::json(StatusCode::OK, &WebhookList { items }))
}

/// Remove a webhook, with its queued messages and its history.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["webhooks:admin"])))]
pub async fn remove(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WEBHOOKS)?;
    if deps.webhooks.remove(id).await.map_err(store_error)? {
        Ok(http::empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::NotFound)
    }
}

/// A webhook's latest delivery attempts (at most 100), newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryAttemptList), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["webhooks:admin"])))]
pub async fn deliveries(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WEBHOOKS)?;
    if deps.webhooks.get(id).await.map_err(store_error)?.is_none() {
        return Err(ApiError::NotFound);
    }
    let items = deps.webhooks.attempts(id).await.map_err(store_error)?;
    Ok(http::json(StatusCode::OK, &DeliveryAttemptList { items }))
}

/// Send again every event of the window that was delivered or dead-lettered (kept 7 days by
/// default, `WEBHOOK_RETENTION_HOURS`), in
/// order per notification, from a first attempt. Sending starts within a minute (the retry
/// schedule's next run).
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks", params(("id" = String, Path)),
    request_body = ReplayRequest,
    responses(
        (status = 202, description = "Queued again", body = ReplayQueued),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`to` is before `from`", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["webhooks:admin"])))]
pub async fn replay(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WEBHOOKS)?;
    let body: ReplayRequest = http::json_body(req, BODY_MAX_BYTES)?;
    if body.to < body.from {
        return Err(ApiError::validation(vec![FieldError::new(
            "to",
            "is before from",
        )]));
    }
    if deps.webhooks.get(id).await.map_err(store_error)?.is_none() {
        return Err(ApiError::NotFound);
    }
    let queued = deps
        .webhooks
        .replay(
            id,
            body.from.timestamp_millis(),
            body.to.timestamp_millis(),
            Utc::now().timestamp_millis(),
        )
        .await
        .map_err(store_error)?;
    Ok(http::json(StatusCode::ACCEPTED, &ReplayQueued { queued }))
}
