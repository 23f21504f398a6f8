//! Routing on method and path. The router is independent of API Gateway's route keys, so the
//! same function serves per-route integrations and a catch-all alike.

pub mod analytics;
pub mod changes;
pub mod devices;
pub mod health;
pub mod notifications;
pub mod preferences;
pub mod push;
mod quota;
pub mod scheduled;
pub mod topics;
pub mod users;
pub mod webhooks;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::error::ApiError;
use shared::store::{whole_seconds, RateDecision};

use crate::{asyncapi, http, openapi, Deps};

/// 429 when `user` is over their limit of mutations (every route that changes the caller's own
/// inbox, preferences or subscriptions calls this once, before any write).
pub(crate) async fn enforce_mutation_limit(deps: &Deps, user: &str) -> Result<(), ApiError> {
    match deps
        .limiter
        .check_user_mutation(user)
        .await
        .map_err(http::store_error)?
    {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited { retry_after } => {
            Err(rate_limited(retry_after, "too many changes from this user"))
        }
    }
}

/// 429 with `Retry-After` in whole seconds: `what` says which limit.
pub(crate) fn rate_limited(retry_after: std::time::Duration, what: &str) -> ApiError {
    let secs = whole_seconds(retry_after);
    ApiError::RateLimited {
        retry_after_secs: secs,
        detail: format!("{what}; retry after {secs} s"),
    }
}

/// Dispatches one request.
pub async fn route(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method();
    match (segments.as_slice(), method) {
        (["health"], &Method::GET) => Ok(health::liveness().await),
        (["v1", "health"], &Method::GET) => health::readiness(deps, req).await,
        (["openapi.json"], &Method::GET) => Ok(http::json(StatusCode::OK, openapi::document())),
        (["asyncapi.json"], &Method::GET) => Ok(http::json(StatusCode::OK, asyncapi::document())),
        (["v1", "notifications"], &Method::POST) => notifications::create(deps, req).await,
        (["v1", "notifications"], &Method::GET) => notifications::list(deps, req).await,
        (["v1", "notifications", "batch"], &Method::POST) => {
            notifications::create_batch(deps, req).await
        }
        (["v1", "notifications", "counts"], &Method::GET) => notifications::counts(deps, req).await,
        (["v1", "notifications", "mark-all-read"], &Method::POST) => {
            notifications::mark_all_read(deps, req).await
        }
        (["v1", "notifications", id, "deliveries"], &Method::GET) => {
            analytics::deliveries(deps, req, id).await
        }
        (["v1", "notifications", id, "click"], &Method::POST) => {
            analytics::click(deps, req, id).await
        }
        (["v1", "analytics"], &Method::GET) => analytics::report(deps, req).await,
        (["v1", "notifications", id], &Method::GET) => notifications::get(deps, req, id).await,
        (["v1", "notifications", id], &Method::PATCH) => notifications::patch(deps, req, id).await,
        (["v1", "notifications", id], &Method::DELETE) => {
            notifications::delete(deps, req, id).await
        }
        (["v1", "scheduled", "cancel"], &Method::POST) => scheduled::cancel_by_key(deps, req).await,
        (["v1", "scheduled", id], &Method::GET) => scheduled::get(deps, req, id).await,
        (["v1", "scheduled", id], &Method::DELETE) => scheduled::cancel(deps, req, id).await,
        (["v1", "changes"], &Method::GET) => changes::changes(deps, req).await,
        (["v1", "preferences"], &Method::GET) => preferences::get(deps, req).await,
        (["v1", "preferences"], &Method::PUT) => preferences::put(deps, req).await,
        (["v1", "push-subscriptions"], &Method::POST) => push::subscribe(deps, req).await,
        (["v1", "push-subscriptions"], &Method::GET) => push::list(deps, req).await,
        (["v1", "push-subscriptions", id], &Method::DELETE) => {
            push::unsubscribe(deps, req, id).await
        }
        (["v1", "devices"], &Method::POST) => devices::register(deps, req).await,
        (["v1", "devices"], &Method::GET) => devices::list(deps, req).await,
        (["v1", "devices", id], &Method::DELETE) => devices::remove(deps, req, id).await,
        (["v1", "push", "vapid-public-key"], &Method::GET) => {
            push::vapid_public_key(deps, req).await
        }
        (["v1", "users", user_id, "contacts"], &Method::PUT) => {
            push::put_contacts(deps, req, user_id).await
        }
        (["v1", "users", user_id], &Method::DELETE) => users::erase(deps, req, user_id).await,
        (["v1", "users", user_id, "export"], &Method::GET) => {
            users::export_user(deps, req, user_id).await
        }
        (["v1", "me", "export"], &Method::GET) => users::export_me(deps, req).await,
        (["v1", "webhooks"], &Method::POST) => webhooks::register(deps, req).await,
        (["v1", "webhooks"], &Method::GET) => webhooks::list(deps, req).await,
        (["v1", "webhooks", id], &Method::DELETE) => webhooks::remove(deps, req, id).await,
        (["v1", "webhooks", id, "deliveries"], &Method::GET) => {
            webhooks::deliveries(deps, req, id).await
        }
        (["v1", "webhooks", id, "replay"], &Method::POST) => webhooks::replay(deps, req, id).await,
        (["v1", "unsubscribe"], &Method::POST) => push::one_click_unsubscribe(deps, req).await,
        (["v1", "unsubscribe"], &Method::GET) => push::unsubscribe_page(deps, req).await,
        (["v1", "topics", key], &Method::PUT) => topics::put(deps, req, key).await,
        (["v1", "topics", key], &Method::GET) => topics::get(deps, req, key).await,
        (["v1", "topics", key], &Method::DELETE) => topics::delete(deps, req, key).await,
        (["v1", "topics", key, "subscribers"], &Method::POST) => {
            topics::subscribe(deps, req, key).await
        }
        (["v1", "topics", key, "subscribers"], &Method::DELETE) => {
            topics::unsubscribe(deps, req, key).await
        }
        (["v1", "topics", key, "subscribers"], &Method::GET) => {
            topics::subscribers(deps, req, key).await
        }
        (["v1", "topics", key, "notifications"], &Method::POST) => {
            topics::broadcast(deps, req, key).await
        }
        (["v1", "broadcasts", id], &Method::GET) => topics::get_broadcast(deps, req, id).await,
        (["v1", "broadcasts", id, "cancel"], &Method::POST) => topics::cancel(deps, req, id).await,
        (["v1", "me", "topics"], &Method::GET) => topics::mine(deps, req).await,
        _ => Err(ApiError::NotFound),
    }
}
