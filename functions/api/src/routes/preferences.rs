//! `GET/PUT /v1/preferences`: the caller's channel switches per type and quiet hours.
//!
//! Both answer an `ETag` (a digest of the stored preferences: every change, a one-click
//! unsubscribe included, changes it). `PUT` with `If-Match` writes only if the preferences are
//! still the ones that tag names, else 412 `precondition-failed` and nothing changes; `PUT`
//! without `If-Match` replaces them whatever they are (optional, so older clients keep working).

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::error::{ApiError, FieldError, Problem};
use shared::limits;
use shared::model::Preferences;

use crate::http::{self, store_error};
use crate::Deps;

fn with_etag(mut response: Response<Body>, etag: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The entity tags `If-Match` names: `None` without the header or with `*` (whatever is stored
/// matches: preferences always exist, as defaults until first written).
fn if_match(req: &Request) -> Result<Option<Vec<&str>>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        ApiError::BadRequest(
            "If-Match must be a list of entity tags".into(),
            vec![FieldError::new("If-Match", "invalid header value")],
        )
    })?;
    let tags: Vec<&str> = value.split(',').map(str::trim).collect();
    Ok((!tags.contains(&"*")).then_some(tags))
}

#[utoipa::path(get, path = "/v1/preferences", tag = "preferences",
    responses((status = 200, body = Preferences, headers(("ETag" = String, description = "Send as If-Match with PUT")))),
    security(("jwt" = [])))]
pub async fn get(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let (prefs, etag) = deps
        .store
        .preferences_with_etag(&claims.sub)
        .await
        .map_err(store_error)?;
    Ok(with_etag(http::json(StatusCode::OK, &prefs), &etag))
}

/// Replace the caller's preferences.
#[utoipa::path(put, path = "/v1/preferences", tag = "preferences", request_body = Preferences,
    params(("If-Match" = Option<String>, Header, description = "The ETag of the copy this one replaces; 412 if they changed since (optional: without it the write is unconditional)")),
    responses((status = 200, body = Preferences, headers(("ETag" = String))),
        (status = 412, description = "The preferences changed since the If-Match copy; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn put(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
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
    for key in prefs.topics.keys() {
        if !limits::valid_topic_key(key) {
            errors.push(FieldError::new(
                format!("topics.{key}"),
                "is not a valid topic key",
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
    let expected = if_match(req)?;
    let etag = deps
        .store
        .set_preferences_if_match(&claims.sub, &prefs, expected.as_deref())
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::PreconditionFailed(
                "the preferences changed since the copy If-Match names; GET them and retry".into(),
            )
        })?;
    Ok(with_etag(http::json(StatusCode::OK, &prefs), &etag))
}
