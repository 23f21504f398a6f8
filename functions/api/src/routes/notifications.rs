//! `/v1/notifications`: create (single and batch), list, get, patch, delete, mark-all-read and
//! counts. User routes act only on the caller's own inbox (`sub`); only create names another user,
//! and it requires the `notifications:write` scope.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::auth::{Claims, SCOPE_WRITE};
use shared::error::{ApiError, FieldError, Problem};
use shared::limits::{self, BATCH_BODY_MAX_BYTES, NOTIFICATION_MAX_BYTES};
use shared::model::{Counts, FlagsPatch, Notification};
use shared::store::inbox::{IdempotencyClaim, MarkAllRead, RequestClaim};
use shared::store::{
    CreateOutcome, ListQuery, Marked, NewNotification, RateDecision, StatusFilter, UpdateOutcome,
};
use utoipa::ToSchema;

use super::{quota, rate_limited, scheduled};
use crate::http::{self, store_error};
use crate::validate::{self, CreateRequest, Shape};
use crate::Deps;

/// Header set on a `201` that replays an earlier request with the same Idempotency-Key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A page of the inbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    pub items: Vec<Notification>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The result of a batch create. Compact whatever the notification's size, so the answer stays
/// small for 1,000 recipients: the notification itself is the request's, as each recipient's
/// inbox shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// One entry per recipient that received the notification, in request order.
    pub items: Vec<BatchItem>,
    /// Recipients that were skipped, with the reason (only `rate-limited`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// One recipient's notification in a batch answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    pub id: String,
    /// Its seq in the recipient's inbox.
    pub seq: u64,
    pub user_id: String,
}

impl BatchItem {
    fn of(n: &Notification) -> Self {
        BatchItem {
            id: n.id.clone(),
            seq: n.seq,
            user_id: n.user_id.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub user_id: String,
    pub reason: String,
    pub retry_after: u64,
}

/// Optional body of mark-all-read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkAllReadRequest {
    /// Only notifications of this type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkAllReadResponse {
    /// How many notifications became read.
    pub updated: u64,
    pub counts: Counts,
}

/// The request's `Idempotency-Key`, if it sent one.
pub(crate) fn idempotency_key(req: &Request) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= limits::IDEMPOTENCY_KEY_MAX_BYTES)
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1–255 visible ASCII characters".into(),
                vec![FieldError::new("Idempotency-Key", "invalid header value")],
            )
        })
}

/// An idempotent request once its key is claimed for the sender: whether an earlier attempt
/// claimed it, and the claim each recipient's create records (the key derived by `derive`).
pub(crate) struct Claimed {
    retry: bool,
    pub(crate) recipient: IdempotencyClaim,
}

/// Admits `sender`'s request before anything is written: 429 when the sender is over its limit
/// (one request, whatever the batch size); with an `Idempotency-Key`, claims it for the sender in
/// the same script (see `shared::store::inbox::idempotency`), 422 when the key was used with
/// another body (and so possibly other recipients). `None` without a key.
pub(crate) async fn admit(
    deps: &Deps,
    key: Option<&str>,
    sender: &str,
    body: &[u8],
    derive: impl Fn(&str) -> String,
) -> Result<Option<Claimed>, ApiError> {
    let Some(key) = key else {
        enforce_sender_limit(deps, sender).await?;
        return Ok(None);
    };
    let request_hash = hex::encode(Sha256::digest(body));
    let retry = match deps
        .store
        .claim_request(sender, key, &request_hash, deps.limiter.per_sender())
        .await
        .map_err(store_error)?
    {
        RequestClaim::First => false,
        RequestClaim::Retry => true,
        RequestClaim::Conflict => return Err(idempotency_conflict()),
        RequestClaim::Limited { retry_after } => return Err(sender_limited(retry_after)),
    };
    Ok(Some(Claimed {
        retry,
        recipient: IdempotencyClaim {
            key: derive(key),
            body_hash: request_hash,
        },
    }))
}

/// Creates the `marked` notification for its recipient under `claimed`. A retry first replays
/// what an earlier attempt created, so a recipient it served is answered whatever its rate limit
/// is now.
async fn create_for(
    deps: &Deps,
    sender: &str,
    marked: Marked,
    claimed: Option<&Claimed>,
) -> Result<CreateOutcome, ApiError> {
    if let Some(claimed) = claimed.filter(|c| c.retry) {
        if let Some(outcome) = deps
            .store
            .replayed(sender, marked.user_id(), &claimed.recipient)
            .await
            .map_err(store_error)?
        {
            return Ok(outcome);
        }
    }
    let limit = Some(deps.limiter.per_recipient());
    deps.store
        .create_within(marked, sender, claimed.map(|c| &c.recipient), limit)
        .await
        .map_err(store_error)
}

/// [`admit`] and the recipient's outbox mark
/// ([`shared::store::InboxStore::mark_for_create`]) at once, in one Redis round trip: both must
/// pass before the create, neither depends on the other. A request refused here leaves a mark
/// that the outbox relay clears, finding nothing to publish.
async fn admit_and_mark(
    deps: &Deps,
    key: Option<&str>,
    sender: &str,
    body: &[u8],
    new: NewNotification,
) -> Result<(Marked, Option<Claimed>), ApiError> {
    let (admitted, marked) = futures::join!(
        admit(deps, key, sender, body, str::to_owned),
        deps.store.mark_for_create(new)
    );
    let claimed = admitted?;
    Ok((marked.map_err(store_error)?, claimed))
}

/// 429 when `sender` is over its per-sender limit (a request without an `Idempotency-Key`).
pub(crate) async fn enforce_sender_limit(deps: &Deps, sender: &str) -> Result<(), ApiError> {
    match deps
        .limiter
        .check_sender(sender)
        .await
        .map_err(store_error)?
    {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited { retry_after } => Err(sender_limited(retry_after)),
    }
}

fn sender_limited(retry_after: Duration) -> ApiError {
    rate_limited(retry_after, "this sender is over its rate limit")
}

pub(crate) fn too_large_notification(n: &Notification) -> Result<(), ApiError> {
    let size = serde_json::to_vec(n).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > NOTIFICATION_MAX_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the notification is {size} bytes; at most {NOTIFICATION_MAX_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// Builds the stored shape before writing, to enforce the total size up front (the largest
/// `seq`, so the check holds whatever seq the store assigns).
pub(crate) fn preview(recipient: &str, new: &shared::store::NewNotification) -> Notification {
    let mut new = new.clone();
    new.user_id = recipient.to_owned();
    new.into_notification(uuid::Uuid::nil().to_string(), u64::MAX, chrono::Utc::now())
}

/// A create request as both create routes read it: the caller's claims (scope
/// `notifications:write`), the raw body (the idempotency claim digests it) and the parsed
/// request, once the body is JSON of at most `max_bytes`.
fn read_create_request(
    req: &Request,
    max_bytes: usize,
) -> Result<(Claims, &[u8], CreateRequest), ApiError> {
    let claims = http::claims_with_scope(req, SCOPE_WRITE)?;
    let bytes = http::body_bytes(req);
    http::check_json_body(req, bytes, max_bytes)?;
    Ok((claims, bytes, http::parse_json(bytes)?))
}

/// Create a notification.
#[utoipa::path(post, path = "/v1/notifications", tag = "notifications",
    request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Names this request for 24 h: a retry with the same body replays the original 201 (`Idempotent-Replayed: true`); the same key with a different body (another `userId` included) is 422 and writes nothing")),
    responses(
        (status = 201, description = "Created (or replayed)", body = Notification),
        (status = 202, description = "Scheduled (`sendAt`): invisible to the recipient until sent", body = super::scheduled::ScheduledResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over a rate limit (`rate-limited`) or the tenant's quota of creates (`quota-exceeded`): nothing was written; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is nearly full (or restarting): nothing was written; retry after `Retry-After`", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn create(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let (claims, bytes, request) = read_create_request(req, NOTIFICATION_MAX_BYTES)?;
    let (recipients, mut new, scheduling) =
        validate::check_with_schedule(request, Shape::Single).map_err(ApiError::validation)?;
    new.user_id = recipients.first().cloned().unwrap_or_default();
    too_large_notification(&preview(&new.user_id, &new))?;
    let key = idempotency_key(req)?;
    deps.memory.admit_create().await?;
    if let Some(scheduling) = scheduling {
        let create = scheduled::ScheduledCreate {
            recipients,
            new,
            scheduling,
            single: true,
        };
        return scheduled::schedule(deps, &claims.sub, key, bytes, create).await;
    }
    let admission = admit_and_mark(deps, key, &claims.sub, bytes, new);
    let ((marked, claimed), charged) = quota::charge(deps, &claims.sub, 1, admission).await?;
    let outcome = create_for(deps, &claims.sub, marked, claimed.as_ref()).await;
    charged
        .settle(usize::from(matches!(
            outcome,
            Ok(CreateOutcome::Created { .. })
        )))
        .await;
    match outcome? {
        CreateOutcome::Limited { retry_after } => Err(rate_limited(
            retry_after,
            "this recipient is over its rate limit",
        )),
        CreateOutcome::Created {
            notification,
            change,
        } => {
            deps.publisher
                .publish_or_defer(std::slice::from_ref(&change))
                .await;
            let mut resp = http::json(StatusCode::CREATED, &notification);
            if let Ok(location) =
                HeaderValue::from_str(&format!("/v1/notifications/{}", notification.id))
            {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            Ok(resp)
        }
        CreateOutcome::Replayed(notification) => {
            let mut resp = http::json(StatusCode::CREATED, &notification);
            resp.headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            Ok(resp)
        }
        CreateOutcome::Conflict => Err(idempotency_conflict()),
    }
}

fn idempotency_conflict() -> ApiError {
    ApiError::Unprocessable(
        "this Idempotency-Key was already used with a different request body".into(),
        vec![FieldError::new(
            "Idempotency-Key",
            "reused with a different body",
        )],
    )
}

/// Create the same notification for up to 1,000 recipients.
#[utoipa::path(post, path = "/v1/notifications/batch", tag = "notifications",
    request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Names this request for 24 h: a retry with the same body completes the recipients an earlier attempt missed and answers every one as first created (`Idempotent-Replayed: true` when nothing was left to create); a different body is 422 and writes nothing")),
    responses(
        (status = 201, description = "Created for every recipient not skipped", body = BatchResponse),
        (status = 202, description = "Scheduled (`sendAt`) for every recipient", body = super::scheduled::ScheduledBatchResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large or more than 1,000 recipients", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over a rate limit (`rate-limited`) or the tenant's quota of creates (`quota-exceeded`): nothing was written; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is nearly full (or restarting): nothing was written; retry after `Retry-After`", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn create_batch(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let (claims, bytes, request) = read_create_request(req, BATCH_BODY_MAX_BYTES)?;
    if let Some(n) = request
        .user_ids
        .as_ref()
        .map(Vec::len)
        .filter(|n| *n > validate::MAX_RECIPIENTS)
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch names {n} recipients; at most {} are allowed",
            validate::MAX_RECIPIENTS
        )));
    }
    let (recipients, new, scheduling) =
        validate::check_with_schedule(request, Shape::Batch).map_err(ApiError::validation)?;
    if let Some(longest) = recipients.iter().max_by_key(|r| r.len()) {
        too_large_notification(&preview(longest, &new))?;
    }
    let key = idempotency_key(req)?;
    deps.memory.admit_create().await?;
    if let Some(scheduling) = scheduling {
        let create = scheduled::ScheduledCreate {
            recipients,
            new,
            scheduling,
            single: false,
        };
        return scheduled::schedule(deps, &claims.sub, key, bytes, create).await;
    }
    let admission = admit(deps, key, &claims.sub, bytes, |k| format!("batch:{k}"));
    let (claimed, charged) = quota::charge(deps, &claims.sub, recipients.len(), admission).await?;
    let claimed = claimed.as_ref();
    let results: Vec<Result<CreateOutcome, ApiError>> = stream::iter(recipients.clone())
        .map(|recipient: String| {
            let mut new = new.clone();
            new.user_id = recipient;
            async {
                let marked = deps.store.mark_for_create(new).await.map_err(store_error)?;
                create_for(deps, &claims.sub, marked, claimed).await
            }
        })
        .buffered(32)
        .collect()
        .await;
    let mut response = BatchResponse {
        items: Vec::with_capacity(recipients.len()),
        skipped: vec![],
    };
    // Every committed change is published, even when another recipient failed: the failure is
    // answered after (a retry with the same key then completes the rest).
    let (mut changes, mut failure) = (Vec::new(), None);
    for (recipient, result) in recipients.iter().zip(results) {
        match result {
            Ok(CreateOutcome::Created {
                notification,
                change,
            }) => {
                response.items.push(BatchItem::of(&notification));
                changes.push(change);
            }
            Ok(CreateOutcome::Replayed(notification)) => {
                response.items.push(BatchItem::of(&notification))
            }
            Ok(CreateOutcome::Conflict) => {
                failure.get_or_insert_with(idempotency_conflict);
            }
            Ok(CreateOutcome::Limited { retry_after }) => response.skipped.push(Skipped {
                user_id: recipient.clone(),
                reason: "rate-limited".into(),
                retry_after: shared::store::whole_seconds(retry_after),
            }),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    charged.settle(changes.len()).await;
    deps.publisher.publish_or_defer(&changes).await;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if response.items.is_empty() {
        return Err(rate_limited(
            deps.limiter.per_recipient().emission_interval(),
            "every recipient is over its rate limit",
        ));
    }
    let mut resp = http::json(StatusCode::CREATED, &response);
    if changes.is_empty() {
        // Every recipient was served by an earlier attempt: this request wrote nothing.
        resp.headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// List the caller's inbox, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "inbox",
    params(
        ("status" = Option<String>, Query, description = "`all` (default), `read` or `unread`"),
        ("type" = Option<String>, Query, description = "Only this type"),
        ("archived" = Option<String>, Query, description = "`false` (default), `true` or `all`"),
        ("limit" = Option<usize>, Query, description = "1–100, default 20"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses((status = 200, body = ListResponse), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn list(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let bad = |field: &str, msg: &str| {
        ApiError::BadRequest(
            format!("`{field}` {msg}"),
            vec![FieldError::new(field, msg)],
        )
    };
    let status = match http::query(req, "status") {
        None | Some("all") => StatusFilter::Any,
        Some("read") => StatusFilter::Read,
        Some("unread") => StatusFilter::Unread,
        Some(_) => return Err(bad("status", "must be all, read or unread")),
    };
    let archived = match http::query(req, "archived") {
        None | Some("false") => Some(false),
        Some("true") => Some(true),
        Some("all") => None,
        Some(_) => return Err(bad("archived", "must be true, false or all")),
    };
    let kind = http::query(req, "type").map(str::to_owned);
    if kind.as_deref().is_some_and(|k| !limits::valid_type(k)) {
        return Err(bad("type", "is not a valid notification type"));
    }
    let limit = http::query_limit(req, limits::LIST_DEFAULT_LIMIT, limits::LIST_MAX_LIMIT)?;
    let before_seq = http::query(req, "cursor")
        .map(http::decode_cursor)
        .transpose()?;
    let page = deps
        .store
        .list(
            &claims.sub,
            &ListQuery {
                status,
                archived,
                kind,
                before_seq,
                limit,
            },
        )
        .await
        .map_err(store_error)?;
    Ok(http::json(
        StatusCode::OK,
        &ListResponse {
            items: page.items,
            next_cursor: page.next_before_seq.map(http::encode_cursor),
        },
    ))
}

/// One of the caller's notifications (404 for anyone else's).
#[utoipa::path(get, path = "/v1/notifications/{id}", tag = "inbox", params(("id" = String, Path)),
    responses((status = 200, body = Notification), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn get(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    match deps.store.get(&claims.sub, id).await.map_err(store_error)? {
        Some(n) => Ok(http::json(StatusCode::OK, &n)),
        None => Err(ApiError::NotFound),
    }
}

/// Mark read / seen / archived (or undo). Reading also marks seen.
#[utoipa::path(patch, path = "/v1/notifications/{id}", tag = "inbox", params(("id" = String, Path)), request_body = FlagsPatch,
    responses((status = 200, body = Notification), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn patch(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    let patch: FlagsPatch = http::json_body(req, 1024)?;
    if patch.is_empty() {
        return Err(ApiError::validation(vec![FieldError::new(
            "body",
            "set at least one of read, seen, archived",
        )]));
    }
    match deps
        .store
        .update(&claims.sub, id, patch)
        .await
        .map_err(store_error)?
    {
        UpdateOutcome::Missing => Err(ApiError::NotFound),
        UpdateOutcome::Unchanged(n) => Ok(http::json(StatusCode::OK, &n)),
        UpdateOutcome::Updated {
            notification,
            change,
        } => {
            deps.publisher
                .publish_or_defer(std::slice::from_ref(&change))
                .await;
            Ok(http::json(StatusCode::OK, &notification))
        }
    }
}

/// Delete one of the caller's notifications.
#[utoipa::path(delete, path = "/v1/notifications/{id}", tag = "inbox", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn delete(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    match deps
        .store
        .delete(&claims.sub, id)
        .await
        .map_err(store_error)?
    {
        None => Err(ApiError::NotFound),
        Some(change) => {
            deps.publisher
                .publish_or_defer(std::slice::from_ref(&change))
                .await;
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
    }
}

/// Mark every unread notification read, optionally of one type (body `{type}` or `?type=`).
#[utoipa::path(post, path = "/v1/notifications/mark-all-read", tag = "inbox", request_body(content = Option<MarkAllReadRequest>),
    params(("type" = Option<String>, Query, description = "Only this type")),
    responses((status = 200, body = MarkAllReadResponse), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, description = "Over the user's mutation limit", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn mark_all_read(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    super::enforce_mutation_limit(deps, &claims.sub).await?;
    let body: MarkAllReadRequest = if http::body_bytes(req).is_empty() {
        MarkAllReadRequest::default()
    } else {
        http::json_body(req, 1024)?
    };
    let query_kind = http::query(req, "type");
    if query_kind.is_some_and(|k| !limits::valid_type(k)) {
        return Err(ApiError::BadRequest(
            "`type` is not a valid notification type".into(),
            vec![FieldError::new("type", "is not a valid notification type")],
        ));
    }
    let kind = body.kind.or_else(|| query_kind.map(str::to_owned));
    if kind.as_deref().is_some_and(|k| !limits::valid_type(k)) {
        return Err(ApiError::validation(vec![FieldError::new(
            "type",
            "is not a valid notification type",
        )]));
    }
    let MarkAllRead {
        counts,
        changed,
        change,
    } = deps
        .store
        .mark_all_read(&claims.sub, kind.as_deref())
        .await
        .map_err(store_error)?;
    if let Some(change) = change {
        deps.publisher
            .publish_or_defer(std::slice::from_ref(&change))
            .await;
    }
    Ok(http::json(
        StatusCode::OK,
        &MarkAllReadResponse {
            updated: changed,
            counts,
        },
    ))
}

/// The caller's exact counts.
#[utoipa::path(get, path = "/v1/notifications/counts", tag = "inbox",
    responses((status = 200, body = Counts)), security(("jwt" = [])))]
pub async fn counts(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    Ok(http::json(
        StatusCode::OK,
        &deps.store.counts(&claims.sub).await.map_err(store_error)?,
    ))
}
