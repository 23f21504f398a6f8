//! A person's data, for privacy law: `DELETE /v1/users/{id}` erases it, and
//! `GET /v1/users/{id}/export` (scope `users:admin`) and `GET /v1/me/export` (the user's own
//! token) return it. What an erase deletes and how late records are kept from bringing it back:
//! [`shared::store::erase`]; the model: `docs/privacy.md`.
//!
//! The export is one JSON document per page: every section on every page, with `notifications`
//! (and their `deliveries`) paged like `GET /v1/notifications` (newest first, at most
//! [`limits::LIST_MAX_LIMIT`] and [`limits::PAGE_MAX_BYTES`] per page; `nextCursor` continues).
//! Credentials are not exported: push subscriptions without their keys, devices without their
//! tokens (as `GET /v1/push-subscriptions` and `GET /v1/devices` show them). Herald cannot tell
//! an unknown user from one with nothing stored, so an unknown user's export is an empty one.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::addresses::{Contacts, PushSubscriptionView};
use shared::auth::SCOPE_USERS_ADMIN;
use shared::devices::DeviceView;
use shared::error::{ApiError, FieldError, Problem};
use shared::limits;
use shared::model::{Counts, Notification, Preferences};
use shared::store::analytics::HistoryEntry;
use shared::store::ListQuery;
use utoipa::ToSchema;

use crate::http::{self, store_error};
use crate::Deps;

/// The answer to an erase.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EraseReceipt {
    pub user_id: String,
    pub erased_at: DateTime<Utc>,
    /// How many open WebSocket connections were closed.
    pub connections_closed: usize,
}

/// One open WebSocket connection of the user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionExport {
    pub id: String,
    pub connected_at: Option<DateTime<Utc>>,
}

/// What `push` did for one of the user's notifications on one channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendExport {
    pub notification_id: String,
    pub channel: String,
    /// `sent`, `failed`, `suppressed`, `deferred`, or `silent` (a retry with no outcome of its own).
    pub status: String,
    /// 0 for the first try, n for the n-th trip through the retry schedule.
    pub hop: u32,
}

/// Everything Herald stores about one user (one page of it: see `nextCursor`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserExport {
    pub user_id: String,
    pub exported_at: DateTime<Utc>,
    pub counts: Counts,
    pub preferences: Preferences,
    pub contacts: Contacts,
    pub push_subscriptions: Vec<PushSubscriptionView>,
    pub devices: Vec<DeviceView>,
    pub connections: Vec<ConnectionExport>,
    /// This page of the inbox, archived ones included, with their read, seen and archived state.
    pub notifications: Vec<Notification>,
    /// The outcome history of each of this page's notifications that has one, by id.
    pub deliveries: BTreeMap<String, Vec<HistoryEntry>>,
    /// What `push` recorded for the user's notifications (the last 3 days).
    pub sends: Vec<SendExport>,
    /// Sends waiting on the retry schedule (quiet hours, a provider's `Retry-After`), as stored.
    pub scheduled_retries: Vec<serde_json::Value>,
    /// The next page of `notifications` (the other sections repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Erase everything Herald stores about a user and close their open WebSocket connections.
/// Analytics counters (aggregates without a user) stay. A record from before the erase that
/// arrives later brings nothing back; a notification created afterwards starts a new inbox.
/// Erasing an unknown or already erased user is accepted too: there is nothing (more) to erase.
#[utoipa::path(delete, path = "/v1/users/{userId}", tag = "users",
    params(("userId" = String, Path, description = "The user to erase (percent-encoded)")),
    responses(
        (status = 202, description = "Erased", body = EraseReceipt),
        (status = 403, description = "The token lacks the scope `users:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid user id", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["users:admin"])))]
pub async fn erase(deps: &Deps, req: &Request, user_id: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_USERS_ADMIN)?;
    let user_id = path_user_id(user_id)?;
    let erased = deps.eraser.erase(&user_id).await.map_err(store_error)?;
    // Memberships live in the topics' slots (`topics.rs`), outside the user's: removed here, after
    // the slot, so a retried erase finishes them.
    deps.topics
        .forget_user(&user_id)
        .await
        .map_err(store_error)?;
    let mut closed = 0;
    if let Some(sockets) = &deps.sockets {
        // The registry entries are gone already, so a socket that cannot be closed now receives
        // nothing, and its next action finds no session and closes it.
        for id in &erased.connections {
            match sockets.close(id).await {
                Ok(()) => closed += 1,
                Err(e) => tracing::warn!(connection = id, error = e, "could not close a socket"),
            }
        }
    }
    Ok(http::json(
        StatusCode::ACCEPTED,
        &EraseReceipt {
            user_id,
            erased_at: Utc::now(),
            connections_closed: closed,
        },
    ))
}

/// Everything Herald stores about a user, one page of notifications at a time.
#[utoipa::path(get, path = "/v1/users/{userId}/export", tag = "users",
    params(("userId" = String, Path, description = "The user (percent-encoded)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses(
        (status = 200, body = UserExport),
        (status = 400, description = "A malformed cursor", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the scope `users:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid user id", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["users:admin"])))]
pub async fn export_user(
    deps: &Deps,
    req: &Request,
    user_id: &str,
) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_USERS_ADMIN)?;
    let user_id = path_user_id(user_id)?;
    export(deps, req, user_id).await
}

/// Everything Herald stores about the caller, one page of notifications at a time.
#[utoipa::path(get, path = "/v1/me/export", tag = "users",
    params(("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses(
        (status = 200, body = UserExport),
        (status = 400, description = "A malformed cursor", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn export_me(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    export(deps, req, claims.sub).await
}

fn path_user_id(raw: &str) -> Result<String, ApiError> {
    // The raw path is percent-encoded (`auth0%7C123` for `auth0|123`).
    match super::push::percent_decode(raw) {
        Some(id) if limits::valid_user_id(&id) => Ok(id),
        _ => Err(ApiError::validation(vec![FieldError::new(
            "userId",
            "is not a valid user id",
        )])),
    }
}

async fn export(deps: &Deps, req: &Request, user_id: String) -> Result<Response<Body>, ApiError> {
    let before_seq = http::query(req, "cursor")
        .map(http::decode_cursor)
        .transpose()?;
    let user = user_id.as_str();
    let query = ListQuery {
        archived: None,
        before_seq,
        limit: limits::LIST_MAX_LIMIT,
        ..ListQuery::default()
    };
    let (page, counts, preferences, contacts, subscriptions, devices, connections, ledger) =
        futures::try_join!(
            deps.store.list(user, &query),
            deps.store.counts(user),
            deps.store.preferences(user),
            deps.contacts.contacts(user),
            deps.contacts.subscriptions(user),
            deps.devices.devices(user),
            deps.registry.connections(user),
            deps.ledger.user_records(user),
        )
        .map_err(store_error)?;
    let histories =
        futures::future::try_join_all(page.items.iter().map(|n| deps.analytics.history(&n.id)))
            .await
            .map_err(store_error)?;
    let deliveries = page
        .items
        .iter()
        .zip(histories)
        .filter_map(|(n, h)| Some((n.id.clone(), h?.entries)))
        .collect();
    let (sends, retries) = ledger;
    let export = UserExport {
        exported_at: Utc::now(),
        counts,
        preferences,
        contacts,
        push_subscriptions: subscriptions
            .iter()
            .map(|s| PushSubscriptionView::from(&s.subscription))
            .collect(),
        devices: devices
            .iter()
            .map(|d| DeviceView::from(&d.device))
            .collect(),
        connections: connections
            .into_iter()
            .map(|c| ConnectionExport {
                connected_at: Utc.timestamp_millis_opt(c.connected_at_ms).single(),
                id: c.id,
            })
            .collect(),
        deliveries,
        sends: sends
            .into_iter()
            .map(|(field, record)| {
                let (id, channel) = field.rsplit_once('|').unwrap_or((field.as_str(), ""));
                SendExport {
                    notification_id: id.to_owned(),
                    channel: channel.to_owned(),
                    status: record.status,
                    hop: record.hop,
                }
            })
            .collect(),
        scheduled_retries: retries
            .into_iter()
            .map(|(_, raw)| serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)))
            .collect(),
        next_cursor: page.next_before_seq.map(http::encode_cursor),
        notifications: page.items,
        user_id,
    };
    Ok(http::json(StatusCode::OK, &export))
}
