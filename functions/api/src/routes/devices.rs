//! The caller's phones: `POST/GET /v1/devices`, `DELETE /v1/devices/{id}`. The token rules are
//! [`shared::devices`]; where they are stored and how a token moves to its newest owner,
//! [`shared::store::devices`]. Like the push subscription routes: user token, and every change
//! counts against the per-user mutation limit.

use chrono::Utc;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::devices::{Device, DeviceRequest, DeviceView, MAX_DEVICES};
use shared::error::{ApiError, FieldError, Problem};
use shared::store::RegisterOutcome;
use utoipa::ToSchema;

use crate::http::{self, store_error};
use crate::Deps;

/// Largest body accepted (an FCM token is at most 4,096 characters).
const BODY_MAX_BYTES: usize = 8 * 1024;

/// The caller's devices.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub items: Vec<DeviceView>,
}

/// Register this phone for native push (iOS through APNs, Android through FCM).
#[utoipa::path(post, path = "/v1/devices", tag = "devices",
    request_body = DeviceRequest,
    responses(
        (status = 201, description = "Registered (a token another user held is theirs no more)", body = DeviceView),
        (status = 200, description = "The caller had registered this token already; its entry was replaced", body = DeviceView),
        (status = 422, description = "Unknown platform, a token of the wrong shape, a bad appId, or already 20 devices", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn register(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    let body: DeviceRequest = http::json_body(req, BODY_MAX_BYTES)?;
    let device = Device::from_request(&body, Utc::now()).map_err(ApiError::validation)?;
    let outcome = deps
        .devices
        .register(&claims.sub, &device, MAX_DEVICES)
        .await
        .map_err(store_error)?;
    let status = match outcome {
        RegisterOutcome::Created => StatusCode::CREATED,
        RegisterOutcome::Replaced => StatusCode::OK,
        RegisterOutcome::TooMany => {
            return Err(ApiError::Unprocessable(
                format!("at most {MAX_DEVICES} devices per user; delete one first"),
                vec![FieldError::new(
                    "token",
                    format!("would be device number {}", MAX_DEVICES + 1),
                )],
            ))
        }
    };
    let view = DeviceView::from(&device);
    let mut resp = http::json(status, &view);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/devices/{}", view.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// The caller's devices, oldest first (tokens are not shown).
#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    responses((status = 200, body = DeviceList)), security(("jwt" = [])))]
pub async fn list(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let items = deps
        .devices
        .devices(&claims.sub)
        .await
        .map_err(store_error)?
        .iter()
        .map(|d| DeviceView::from(&d.device))
        .collect();
    Ok(http::json(StatusCode::OK, &DeviceList { items }))
}

/// Remove one of the caller's devices.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn remove(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    if deps
        .devices
        .remove(&claims.sub, id)
        .await
        .map_err(store_error)?
    {
        Ok(http::empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::NotFound)
    }
}
