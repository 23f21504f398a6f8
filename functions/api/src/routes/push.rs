//! Off-app channels, the user's side and the service's side:
//!
//! - `POST/GET /v1/push-subscriptions`, `DELETE /v1/push-subscriptions/{id}`: the caller's Web
//!   Push subscriptions (the browser's `PushSubscription` JSON; rules in [`shared::addresses`]);
//! - `GET /v1/push/vapid-public-key`: the application server key browsers subscribe with;
//! - `PUT /v1/users/{userId}/contacts` (scope `notifications:write`): a user's email and phone;
//! - `GET/POST /v1/unsubscribe?token=…`: the one-click unsubscribe link of every email
//!   (RFC 8058). No authorizer: the signed token is the authority, and it can only turn one
//!   type's EMAIL off. `GET` only shows a confirmation form (link scanners prefetch with GET);
//!   `POST` (what mail clients send, body `List-Unsubscribe=One-Click`) unsubscribes.

use chrono::Utc;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::addresses::{
    Contacts, PushSubscription, PushSubscriptionRequest, PushSubscriptionView, UnsubscribeToken,
    MAX_PUSH_SUBSCRIPTIONS,
};
use shared::auth::SCOPE_WRITE;
use shared::error::{ApiError, FieldError, Problem};
use shared::limits;
use shared::model::Channel;
use shared::store::{SubscribeOutcome, TenantScoped};
use utoipa::ToSchema;

use crate::http::{self, store_error};
use crate::Deps;

/// Largest body accepted by the subscription and contact routes.
const BODY_MAX_BYTES: usize = 4 * 1024;

/// The caller's subscriptions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<PushSubscriptionView>,
}

/// The VAPID application server key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidPublicKey {
    /// 65-byte uncompressed P-256 key, base64url: pass it as `applicationServerKey` to
    /// `pushManager.subscribe`.
    pub public_key: String,
}

/// What a one-click unsubscribe turned off.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unsubscribed {
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: Channel,
    pub enabled: bool,
}

/// Register this browser for Web Push (or replace its keys).
#[utoipa::path(post, path = "/v1/push-subscriptions", tag = "push",
    request_body = PushSubscriptionRequest,
    responses(
        (status = 201, description = "Registered", body = PushSubscriptionView),
        (status = 200, description = "This endpoint was registered already; its keys were replaced", body = PushSubscriptionView),
        (status = 422, description = "Not https (or loopback where not allowed), bad key lengths, or already 10 subscriptions", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn subscribe(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    let body: PushSubscriptionRequest =
        http::json_body_with_structs(req, BODY_MAX_BYTES, &["keys"])?;
    let subscription =
        PushSubscription::from_request(&body, deps.channels.allow_loopback, Utc::now())
            .map_err(ApiError::validation)?;
    let outcome = deps
        .contacts
        .subscribe(&claims.sub, &subscription, MAX_PUSH_SUBSCRIPTIONS)
        .await
        .map_err(store_error)?;
    let view = PushSubscriptionView::from(&subscription);
    let status = match outcome {
        SubscribeOutcome::Created => StatusCode::CREATED,
        SubscribeOutcome::Replaced => StatusCode::OK,
        SubscribeOutcome::TooMany => {
            return Err(ApiError::Unprocessable(
                format!(
                "at most {MAX_PUSH_SUBSCRIPTIONS} push subscriptions per user; delete one first"
            ),
                vec![FieldError::new(
                    "endpoint",
                    format!(
                        "would be subscription number {}",
                        MAX_PUSH_SUBSCRIPTIONS + 1
                    ),
                )],
            ))
        }
    };
    let mut resp = http::json(status, &view);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/push-subscriptions/{}", view.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// The caller's Web Push subscriptions, oldest first.
#[utoipa::path(get, path = "/v1/push-subscriptions", tag = "push",
    responses((status = 200, body = SubscriptionList)), security(("jwt" = [])))]
pub async fn list(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let items = deps
        .contacts
        .subscriptions(&claims.sub)
        .await
        .map_err(store_error)?
        .iter()
        .map(|s| PushSubscriptionView::from(&s.subscription))
        .collect();
    Ok(http::json(StatusCode::OK, &SubscriptionList { items }))
}

/// Remove one of the caller's subscriptions.
#[utoipa::path(delete, path = "/v1/push-subscriptions/{id}", tag = "push", params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn unsubscribe(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    if deps
        .contacts
        .unsubscribe(&claims.sub, id)
        .await
        .map_err(store_error)?
    {
        Ok(http::empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::NotFound)
    }
}

/// The VAPID application server key (404 where Web Push is not configured).
#[utoipa::path(get, path = "/v1/push/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidPublicKey), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn vapid_public_key(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    http::claims(req)?;
    let key = deps
        .channels
        .vapid_public_key
        .clone()
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(
        StatusCode::OK,
        &VapidPublicKey { public_key: key },
    ))
}

/// Set a user's email address and phone number (a service route). Absent or empty fields are
/// removed.
#[utoipa::path(put, path = "/v1/users/{userId}/contacts", tag = "push",
    params(("userId" = String, Path)), request_body = Contacts,
    responses((status = 200, body = Contacts), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an email address / not E.164", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn put_contacts(
    deps: &Deps,
    req: &Request,
    user_id: &str,
) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    // The raw path is percent-encoded (`auth0%7C123` for `auth0|123`).
    let decoded = percent_decode(user_id);
    let user_id = decoded.as_deref().unwrap_or_default();
    if !limits::valid_user_id(user_id) {
        return Err(ApiError::validation(vec![FieldError::new(
            "userId",
            "is not a valid user id",
        )]));
    }
    let contacts: Contacts = http::json_body(req, BODY_MAX_BYTES)?;
    let contacts = contacts.validated().map_err(ApiError::validation)?;
    deps.contacts
        .set_contacts(user_id, &contacts)
        .await
        .map_err(store_error)?;
    Ok(http::json(StatusCode::OK, &contacts))
}

fn unsubscribe_token(deps: &Deps, req: &Request) -> Result<UnsubscribeToken, ApiError> {
    // Without a secret no link was ever signed here.
    let secret = deps
        .channels
        .unsubscribe_secret
        .as_deref()
        .ok_or(ApiError::NotFound)?;
    let token = http::query(req, "token").ok_or_else(|| {
        ApiError::BadRequest(
            "`token` is required".into(),
            vec![FieldError::new("token", "is missing")],
        )
    })?;
    UnsubscribeToken::verify(token, secret.as_bytes()).map_err(|e| {
        ApiError::BadRequest(
            "this unsubscribe link is not valid".into(),
            vec![FieldError::new("token", e.to_string())],
        )
    })
}

/// One-click unsubscribe (RFC 8058): turns the link's notification type off for EMAIL, for the
/// link's user in the link's tenant (the request carries no token but the link's).
#[utoipa::path(post, path = "/v1/unsubscribe", tag = "push",
    params(("token" = String, Query, description = "The signed token from the email's List-Unsubscribe link")),
    responses((status = 200, body = Unsubscribed), (status = 400, description = "Missing, malformed or forged token", body = Problem, content_type = "application/problem+json")))]
pub async fn one_click_unsubscribe(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let token = unsubscribe_token(deps, req)?;
    deps.contacts
        .for_tenant(&token.tenant)
        .opt_out(&token.user_id, &token.kind, Channel::Email)
        .await
        .map_err(store_error)?;
    tracing::info!(
        user = token.user_id,
        kind = token.kind,
        tenant = %token.tenant,
        "one-click unsubscribe"
    );
    Ok(http::json(
        StatusCode::OK,
        &Unsubscribed {
            kind: token.kind,
            channel: Channel::Email,
            enabled: false,
        },
    ))
}

/// The page a person reaches by following the link: it changes nothing, and offers the button
/// that POSTs.
#[utoipa::path(get, path = "/v1/unsubscribe", tag = "push",
    params(("token" = String, Query)),
    responses((status = 200, description = "An HTML confirmation form", content_type = "text/html"),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn unsubscribe_page(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let token = unsubscribe_token(deps, req)?;
    let raw = http::query(req, "token").unwrap_or_default();
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <form method=post action=\"?token={}\"><input type=hidden name=List-Unsubscribe value=One-Click>\
         <p>Stop emails about <b>{}</b>?</p><button>Unsubscribe</button></form>",
        html_escape(raw),
        html_escape(&token.kind)
    );
    let mut resp = Response::new(Body::Text(page));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(resp)
}

/// `%XX` sequences decoded; `None` if one is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_user_ids_are_percent_decoded() {
        assert_eq!(percent_decode("auth0%7C123").as_deref(), Some("auth0|123"));
        assert_eq!(percent_decode("alice").as_deref(), Some("alice"));
        assert_eq!(percent_decode("bad%7"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }
}
