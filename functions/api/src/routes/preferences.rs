//! `GET/PUT /v1/preferences`: the caller's channel switches per type and quiet hours.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use shared::error::{ApiError, FieldError, Problem};
use shared::limits;
use shared::model::Preferences;

use crate::http::{self, store_error};
use crate::Deps;

#[utoipa::path(get, path = "/v1/preferences", tag = "preferences",
    responses((status = 200, body = Preferences)), security(("jwt" = [])))]
pub async fn get(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    Ok(http::json(
        StatusCode::OK,
        &deps
            .store
            .preferences(&claims.sub)
            .await
            .map_err(store_error)?,
    ))
}

/// Replace the caller's preferences.
#[utoipa::path(put, path = "/v1/preferences", tag = "preferences", request_body = Preferences,
    responses((status = 200, body = Preferences), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn put(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let prefs: Preferences =
        http::json_body_with_structs(req, limits::PREFERENCES_MAX_BYTES, &["quietHours"])?;
    let mut errors = Vec::new();
    for kind in prefs.types.keys() {
        if !limits::valid_type(kind) {
            errors.push(FieldError::new(
                format!("types.{kind}"),
                "is not a valid notification type",
            ));
        }
    }
    if let Some(q) = &prefs.quiet_hours {
        if let Err(e) = q.validate() {
            errors.push(FieldError::new("quietHours", e.to_string()));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    deps.store
        .set_preferences(&claims.sub, &prefs)
        .await
        .map_err(store_error)?;
    Ok(http::json(StatusCode::OK, &prefs))
}
