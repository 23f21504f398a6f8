//! `/v1/topics`, `/v1/broadcasts` and `/v1/me/topics`: topics, their subscribers, and
//! broadcasts to them (see `docs/topics.md`).
//!
//! Every topic and broadcast route needs the scope `notifications:write`; `GET /v1/me/topics`
//! takes any user token and lists the caller's own topics. Every input is checked before
//! anything is written, and each write is one script on the topic's (or broadcast's) slot: a
//! refused call writes nothing. A broadcast is accepted (202) once its state is stored and its
//! chunk records are acknowledged by Kafka; the `broadcast` function fans it out. A broadcast
//! with `sendAt` is accepted once its state (`scheduled`) and its start job in the scheduler's
//! due-set are stored; the scheduler produces its chunks at `sendAt`.

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::auth::SCOPE_WRITE;
use shared::error::{ApiError, FieldError, Problem};
use shared::limits::{self, TOPIC_IDS_BODY_MAX_BYTES, TOPIC_MAX_IDS_PER_CALL};
use shared::protocol::BroadcastChunk;
use shared::schedule::{Scheduling, When};
use shared::store::topics::{SubscriberCursor, Topic};
use shared::store::{Broadcast, BroadcastStart, BroadcastStatus};
use utoipa::ToSchema;

use super::notifications::{admit, idempotency_key, preview, too_large_notification};
use super::quota;
use crate::http::{self, store_error};
use crate::validate::{self, CreateRequest, Shape};
use crate::Deps;

/// The body of `PUT /v1/topics/{key}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicRequest {
    /// A display name, at most 200 characters; omitted keeps the current one.
    #[serde(default)]
    pub name: Option<String>,
}

/// A topic.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicView {
    pub key: String,
    pub name: Option<String>,
    /// The exact number of members.
    pub subscribers: u64,
}

impl From<Topic> for TopicView {
    fn from(t: Topic) -> Self {
        TopicView {
            key: t.key,
            name: t.name,
            subscribers: t.subscribers,
        }
    }
}

/// The body of subscribe and unsubscribe.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscribersRequest {
    /// 1–1,000 user ids; duplicates count once.
    pub user_ids: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddedResponse {
    /// How many of the ids were not members before.
    pub added: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemovedResponse {
    /// How many of the ids were members.
    pub removed: u64,
}

/// A page of a topic's members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribersPage {
    pub items: Vec<String>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One of the caller's topics.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MyTopic {
    pub key: String,
    pub name: Option<String>,
    /// Whether the caller muted it (`topics` in the preferences).
    pub muted: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyTopicsResponse {
    pub items: Vec<MyTopic>,
}

/// The answer to a broadcast.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastAccepted {
    pub broadcast_id: String,
    pub topic: String,
    pub status: BroadcastStatus,
    /// When a scheduled broadcast starts (absent for an immediate one).
    #[serde(rename = "sendAt", default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
}

/// A broadcast's progress. Exact: each recipient counts once, in one of `created` (their
/// notification exists), `skipped` (they muted the topic) or `failed`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BroadcastView {
    pub id: String,
    pub topic: String,
    pub status: BroadcastStatus,
    /// When a scheduled broadcast starts (absent for an immediate one).
    #[serde(rename = "sendAt", default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    /// The topic's subscriber count when the broadcast was accepted (a scheduled one: when it
    /// started; until then, when it was accepted).
    pub targeted: u64,
    pub created: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl From<Broadcast> for BroadcastView {
    fn from(b: Broadcast) -> Self {
        BroadcastView {
            id: b.id,
            topic: b.topic,
            status: b.status,
            send_at: b.send_at,
            targeted: b.targeted,
            created: b.created,
            skipped: b.skipped,
            failed: b.failed,
        }
    }
}

/// The topic key of a path (percent-encoded: `course%3Acs101` is `course:cs101`), or 422 naming
/// `key`.
fn topic_key(raw: &str) -> Result<String, ApiError> {
    let key = super::push::percent_decode(raw).unwrap_or_default();
    if limits::valid_topic_key(&key) {
        Ok(key)
    } else {
        Err(ApiError::validation(vec![FieldError::new(
            "key",
            format!(
                "must be 1–{} of letters, digits, `.`, `_`, `:` and `-`",
                limits::TOPIC_KEY_MAX_BYTES
            ),
        )]))
    }
}

/// The user ids of a subscribe or unsubscribe body: 413 over 1,000, 422 naming each bad one.
fn read_user_ids(req: &Request) -> Result<Vec<String>, ApiError> {
    let body: SubscribersRequest = http::json_body(req, TOPIC_IDS_BODY_MAX_BYTES)?;
    let n = body.user_ids.len();
    if n > TOPIC_MAX_IDS_PER_CALL {
        return Err(ApiError::PayloadTooLarge(format!(
            "the call names {n} user ids; at most {TOPIC_MAX_IDS_PER_CALL} are allowed"
        )));
    }
    if n == 0 {
        return Err(ApiError::validation(vec![FieldError::new(
            "userIds",
            "must name at least one user",
        )]));
    }
    let errors: Vec<FieldError> = body
        .user_ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !limits::valid_user_id(id))
        .map(|(i, _)| FieldError::new(format!("userIds[{i}]"), "is not a valid user id"))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut ids = body.user_ids;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Create a topic (201) or rename it (200).
#[utoipa::path(put, path = "/v1/topics/{key}", tag = "topics", params(("key" = String, Path)),
    request_body(content = Option<TopicRequest>),
    responses(
        (status = 200, description = "Updated", body = TopicView),
        (status = 201, description = "Created", body = TopicView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn put(deps: &Deps, req: &Request, key: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let key = &topic_key(key)?;
    // The body is optional: none, or JSON `null`, is `{}`.
    let bytes = http::body_bytes(req);
    let body: TopicRequest = if bytes.is_empty() || bytes.trim_ascii() == b"null" {
        TopicRequest::default()
    } else {
        http::json_body(req, 4 * 1024)?
    };
    if let Some(name) = &body.name {
        if name.chars().count() > limits::TOPIC_NAME_MAX_CHARS
            || limits::first_forbidden_char(name, false).is_some()
        {
            return Err(ApiError::validation(vec![FieldError::new(
                "name",
                format!(
                    "at most {} characters, without control characters",
                    limits::TOPIC_NAME_MAX_CHARS
                ),
            )]));
        }
    }
    let created = deps
        .topics
        .put(key, body.name.as_deref())
        .await
        .map_err(store_error)?;
    let topic = deps
        .topics
        .get(key)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(http::json(status, &TopicView::from(topic)))
}

/// A topic with its exact subscriber count.
#[utoipa::path(get, path = "/v1/topics/{key}", tag = "topics", params(("key" = String, Path)),
    responses((status = 200, body = TopicView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn get(deps: &Deps, req: &Request, key: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let topic = deps
        .topics
        .get(&topic_key(key)?)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(StatusCode::OK, &TopicView::from(topic)))
}

/// Delete a topic and its memberships (broadcasts already accepted keep going, to no one).
#[utoipa::path(delete, path = "/v1/topics/{key}", tag = "topics", params(("key" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn delete(deps: &Deps, req: &Request, key: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    if deps
        .topics
        .delete(&topic_key(key)?)
        .await
        .map_err(store_error)?
    {
        Ok(http::empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::NotFound)
    }
}

/// Add up to 1,000 users to a topic (all or nothing).
#[utoipa::path(post, path = "/v1/topics/{key}/subscribers", tag = "topics", params(("key" = String, Path)),
    request_body = SubscribersRequest,
    responses((status = 200, body = AddedResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such topic; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than 1,000 user ids", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn subscribe(deps: &Deps, req: &Request, key: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let key = &topic_key(key)?;
    let ids = read_user_ids(req)?;
    let added = deps
        .topics
        .subscribe(key, &ids)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(StatusCode::OK, &AddedResponse { added }))
}

/// Remove up to 1,000 users from a topic.
#[utoipa::path(delete, path = "/v1/topics/{key}/subscribers", tag = "topics", params(("key" = String, Path)),
    request_body = SubscribersRequest,
    responses((status = 200, body = RemovedResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such topic; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than 1,000 user ids", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn unsubscribe(
    deps: &Deps,
    req: &Request,
    key: &str,
) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let key = &topic_key(key)?;
    let ids = read_user_ids(req)?;
    let removed = deps
        .topics
        .unsubscribe(key, &ids)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(StatusCode::OK, &RemovedResponse { removed }))
}

/// A subscriber cursor, opaque to clients: `<bucket>`, or `<bucket>.<the last member, hex>`. Plain
/// enough for the OpenAPI document to state its whole shape (a member is printable ASCII).
pub const SUBSCRIBER_CURSOR_PATTERN: &str = "^[0-9]{1,4}(?:\\.(?:[2-7][0-9a-f]){1,128})?$";

fn encode_subscriber_cursor(cursor: &SubscriberCursor) -> String {
    match &cursor.after {
        Some(after) => format!("{}.{}", cursor.bucket, hex::encode(after)),
        None => cursor.bucket.to_string(),
    }
}

/// A bucket past the last is a cursor past the end (an empty page).
fn decode_subscriber_cursor(cursor: &str) -> Result<SubscriberCursor, ApiError> {
    let (bucket, after) = cursor.split_once('.').unwrap_or((cursor, ""));
    let parsed = (|| {
        let bucket = bucket.parse().ok()?;
        let after = match after {
            "" => None,
            hex_text => Some(String::from_utf8(hex::decode(hex_text).ok()?).ok()?),
        };
        Some(SubscriberCursor { bucket, after })
    })();
    parsed.ok_or_else(|| {
        ApiError::BadRequest(
            "`cursor` is not a cursor this API issued".into(),
            vec![FieldError::new("cursor", "invalid cursor")],
        )
    })
}

/// A page of a topic's members (in a stable order: a member present throughout appears exactly
/// once over the pages).
#[utoipa::path(get, path = "/v1/topics/{key}/subscribers", tag = "topics",
    params(("key" = String, Path),
        ("limit" = Option<usize>, Query, description = "1–1,000, default 100"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses((status = 200, body = SubscribersPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn subscribers(
    deps: &Deps,
    req: &Request,
    key: &str,
) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let key = &topic_key(key)?;
    let limit = http::query_limit(
        req,
        limits::SUBSCRIBERS_DEFAULT_LIMIT,
        limits::SUBSCRIBERS_MAX_LIMIT,
    )?;
    let cursor = http::query(req, "cursor")
        .map(decode_subscriber_cursor)
        .transpose()?;
    let page = deps
        .topics
        .subscribers(key, limit, cursor)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(
        StatusCode::OK,
        &SubscribersPage {
            items: page.items,
            next_cursor: page.next.as_ref().map(encode_subscriber_cursor),
        },
    ))
}

/// The caller's topics, with whether they muted each.
#[utoipa::path(get, path = "/v1/me/topics", tag = "topics",
    responses((status = 200, body = MyTopicsResponse),
        (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn mine(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let (topics, prefs) = futures::join!(
        deps.topics.topics_of(&claims.sub),
        deps.store.preferences(&claims.sub)
    );
    let prefs = prefs.map_err(store_error)?;
    let items = topics
        .map_err(store_error)?
        .into_iter()
        .map(|t| MyTopic {
            muted: prefs.mutes_topic(&t.key),
            key: t.key,
            name: t.name,
        })
        .collect();
    Ok(http::json(StatusCode::OK, &MyTopicsResponse { items }))
}

/// The body of a broadcast: the create body without `userId`/`userIds`, plus `maxPerSecond`.
/// Documented as the create request's schema (`openapi.rs` adds `maxPerSecond`).
struct BroadcastRequest {
    request: CreateRequest,
    max_per_second: Option<u32>,
}

fn read_broadcast_request(bytes: &[u8]) -> Result<BroadcastRequest, ApiError> {
    let mut body: serde_json::Value = http::parse_json(bytes)?;
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    };
    for field in ["userId", "userIds"] {
        if object.contains_key(field) {
            return Err(ApiError::validation(vec![FieldError::new(
                field,
                "a broadcast goes to the topic's subscribers: name no recipient",
            )]));
        }
    }
    let max_per_second = match object.remove("maxPerSecond") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=u64::from(limits::BROADCAST_MAX_PER_SECOND)).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::validation(vec![FieldError::new(
                        "maxPerSecond",
                        format!(
                            "must be an integer from 1 to {}",
                            limits::BROADCAST_MAX_PER_SECOND
                        ),
                    )])
                })?,
        ),
    };
    // The longest possible recipient, so the size check holds for every subscriber.
    object.insert(
        "userId".into(),
        "x".repeat(limits::USER_ID_MAX_BYTES).into(),
    );
    let request: CreateRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::validation(vec![FieldError::new("body", e.to_string())]))?;
    Ok(BroadcastRequest {
        request,
        max_per_second,
    })
}

/// The moment of a broadcast's `sendAt`, checked by [`validate::check_with_schedule`] like a
/// create's. A broadcast has one moment for every subscriber: `"optimal"` (a per-recipient
/// choice) and `cancelKey` (a broadcast is cancelled by its id) are refused, naming the field.
fn broadcast_moment(scheduling: Option<Scheduling>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(scheduling) = scheduling else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    if scheduling.cancel_key.is_some() {
        errors.push(FieldError::new(
            "cancelKey",
            "a broadcast is cancelled by its id: POST /v1/broadcasts/{id}/cancel",
        ));
    }
    let at = match scheduling.when {
        When::At(at) => Some(at),
        When::Optimal { .. } => {
            errors.push(FieldError::new(
                "sendAt",
                "\"optimal\" chooses a moment per recipient, and a broadcast starts once for \
                 every subscriber: give an RFC 3339 date-time, or send to each user with \
                 POST /v1/notifications",
            ));
            None
        }
    };
    if errors.is_empty() {
        Ok(at)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// The broadcast id: derived from the sender and its `Idempotency-Key`, so a retry names the
/// same broadcast; random without a key.
fn broadcast_id(sender: &str, key: Option<&str>) -> String {
    match key {
        None => uuid::Uuid::now_v7().to_string(),
        Some(key) => {
            let digest = Sha256::new()
                .chain_update("broadcast")
                .chain_update([0u8])
                .chain_update(sender)
                .chain_update([0u8])
                .chain_update(key)
                .finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string()
        }
    }
}

/// Broadcast a notification to every subscriber of a topic.
#[utoipa::path(post, path = "/v1/topics/{key}/notifications", tag = "topics",
    params(("key" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Names this broadcast for 24 h: a retry with the same body answers the same broadcast; a different body is 422 and writes nothing")),
    request_body(content = CreateRequest, description = "The create body without `userId`/`userIds`, plus an optional `maxPerSecond` (1–100,000): at most that many recipients a second. With `sendAt` (an RFC 3339 date-time, in the future, at most 30 days ahead; not `\"optimal\"`, and no `cancelKey`) the broadcast is `scheduled` and starts at that moment, to the topic's subscribers then"),
    responses(
        (status = 202, description = "Accepted: the fan-out runs in the background (`queued`), or starts at `sendAt` (`scheduled`)", body = BroadcastAccepted),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such topic; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the sender's rate limit (`rate-limited`) or the tenant's quota of creates (`quota-exceeded`, a broadcast counts one): nothing was accepted; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is nearly full, or Kafka did not take the broadcast: nothing was accepted; retry after `Retry-After`", body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn broadcast(deps: &Deps, req: &Request, key: &str) -> Result<Response<Body>, ApiError> {
    let claims = http::claims_with_scope(req, SCOPE_WRITE)?;
    let key = &topic_key(key)?;
    let bytes = http::body_bytes(req);
    http::check_json_body(req, bytes, limits::NOTIFICATION_MAX_BYTES)?;
    let BroadcastRequest {
        request,
        max_per_second,
    } = read_broadcast_request(bytes)?;
    let (recipients, notification, scheduling) =
        validate::check_with_schedule(request, Shape::Single).map_err(ApiError::validation)?;
    let send_at = broadcast_moment(scheduling)?;
    let longest = recipients.into_iter().next().unwrap_or_default();
    too_large_notification(&preview(&longest, &notification))?;
    let idempotency = idempotency_key(req)?;
    deps.memory.admit_create().await?;
    let admission = admit(deps, idempotency, &claims.sub, bytes, str::to_owned);
    let (_, charged) = quota::charge(deps, &claims.sub, 1, admission).await?;
    let id = broadcast_id(&claims.sub, idempotency);
    let stored = deps
        .topics
        .create_broadcast(
            &id,
            key,
            &claims.sub,
            &notification,
            max_per_second,
            send_at,
        )
        .await
        .map_err(store_error);
    charged
        .settle(usize::from(matches!(stored, Ok(Some((_, true))))))
        .await;
    let (stored, created) = stored?.ok_or(ApiError::NotFound)?;
    // A scheduled broadcast's start job, stored again on a retry (a crash may have come between
    // the two writes; a start that ran already finds the broadcast started).
    if stored.status == BroadcastStatus::Scheduled {
        if let Some(send_at) = stored.send_at {
            let start = BroadcastStart {
                broadcast_id: id.clone(),
                sender: claims.sub.clone(),
                tenant: claims.tenant.clone(),
                send_at,
            };
            if let Err(e) = deps.schedules.add_broadcast_start(&start).await {
                if created {
                    deps.topics
                        .discard_broadcast(&id)
                        .await
                        .map_err(store_error)?;
                }
                return Err(store_error(e));
            }
        }
    }
    // A retry of a broadcast still queued may follow a crash before its chunks were produced:
    // produce them again (a chunk runs once per recipient however often it arrives). A
    // scheduled one's chunks are the scheduler's to produce, at `sendAt`.
    if stored.status != BroadcastStatus::Scheduled
        && (created || stored.status == BroadcastStatus::Queued)
    {
        let sent = deps
            .publisher
            .bus()
            .send(&BroadcastChunk::all_records(&claims.tenant, &id))
            .await;
        if let Some(Err(e)) = sent.into_iter().find(Result::is_err) {
            tracing::warn!(error = %e, broadcast = %id, "kafka did not take the broadcast's chunks");
            if created {
                deps.topics
                    .discard_broadcast(&id)
                    .await
                    .map_err(store_error)?;
            }
            return Err(ApiError::Unavailable(
                "Kafka did not accept the broadcast; nothing was sent".into(),
            ));
        }
    }
    let mut resp = http::json(
        StatusCode::ACCEPTED,
        &BroadcastAccepted {
            broadcast_id: id.clone(),
            topic: stored.topic,
            status: stored.status,
            send_at: stored.send_at,
        },
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/broadcasts/{id}")) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// A broadcast's status and exact progress.
#[utoipa::path(get, path = "/v1/broadcasts/{id}", tag = "topics", params(("id" = String, Path)),
    responses((status = 200, body = BroadcastView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn get_broadcast(
    deps: &Deps,
    req: &Request,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let id = broadcast_path_id(id)?;
    let b = deps
        .topics
        .broadcast(id)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(StatusCode::OK, &BroadcastView::from(b)))
}

/// Cancel a broadcast: recipients not yet reached get nothing (a done broadcast stays done); a
/// scheduled one never starts.
#[utoipa::path(post, path = "/v1/broadcasts/{id}/cancel", tag = "topics", params(("id" = String, Path)),
    responses((status = 200, body = BroadcastView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = ["notifications:write"])))]
pub async fn cancel(deps: &Deps, req: &Request, id: &str) -> Result<Response<Body>, ApiError> {
    http::claims_with_scope(req, SCOPE_WRITE)?;
    let id = broadcast_path_id(id)?;
    let b = deps
        .topics
        .cancel(id)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(StatusCode::OK, &BroadcastView::from(b)))
}

/// Broadcast ids are UUIDs: anything else names no broadcast.
fn broadcast_path_id(id: &str) -> Result<&str, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|_| id)
        .map_err(|_| ApiError::NotFound)
}
