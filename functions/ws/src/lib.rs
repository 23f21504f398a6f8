//! # The WebSocket routes
//!
//! One function behind every route of the WebSocket API (route selection
//! `$request.body.action`):
//!
//! - `$connect` verifies the JWT in `?token=` (signature against the issuer's JWKS, `iss`, `aud`,
//!   `exp`, `nbf`, a subject that is a valid user id: [`JwksVerifier::verify`]) and registers the
//!   connection for its subject in its tenant (the `TENANT_CLAIM` claim; the connection's key
//!   records the tenant); anything else answers 401 and API Gateway refuses the handshake;
//! - `$disconnect` unregisters it;
//! - the actions of [`Action`] (`sync`, `markRead`, `markSeen`, `markAllRead`, `archive`, `click`,
//!   `ping`), and `$default` for anything else, which gets an `error` frame.
//!
//! Every action acts on the connection's tenant's keys ([`Deps::for_tenant`]), and first checks
//! the connection's session: a connection that is no longer registered,
//! or whose token has expired (the expiry stored at `$connect`), gets an `error` frame
//! `unauthorized` and is closed (`DELETE @connections/{id}`); the action does not run. Then every
//! action but `ping` takes one from the user's mutation limit (shared with the HTTP API's
//! mutations, `RATE_USER_MUTATION_*`): over it, an `error` frame `rate-limited` with `retryAfter`
//! (seconds), the action does not run, and the connection stays open.
//!
//! Replies go out through `@connections` (PostToConnection): a route's return value reaches the
//! client only on a two-way route. Mutations use the same store operations as the HTTP API and
//! publish the same events; their effect reaches every device of the user (this one included)
//! through `delivery`, or through the publisher's fallback when Kafka is down. A refused frame
//! gets an `error` frame and the connection stays open.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::LambdaEvent;
use shared::auth::JwksVerifier;
use shared::bus::EventBus;
use shared::config::{Env, InboxSettings, JwtSettings, KafkaSettings, RedisSettings};
use shared::error::StartupError;
use shared::limits;
use shared::model::FlagsPatch;
use shared::outbox::Publisher;
use shared::protocol::frames::{sync_pages, ErrorCode};
use shared::protocol::{Action, Frame, FRAME_MAX_BYTES};
use shared::realtime::Fanout;
use shared::store::inbox::MarkAllRead;
use shared::store::TenantScoped;
use shared::store::{
    whole_seconds, ChangesPage, Connection, InboxStore, KeySpace, RateDecision, RateLimiter,
    RedisConn, StoreError, UpdateOutcome,
};
use shared::tenant::Tenant;

/// How many changes one store read of a `sync` fetches.
const SYNC_READ: usize = 200;

/// Built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: InboxStore,
    pub publisher: Publisher,
    pub fanout: Fanout,
    pub verifier: JwksVerifier,
    pub limiter: RateLimiter,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let keys = KeySpace::new(redis.key_prefix);
        let fanout = Fanout::from_env(env, conn.clone(), keys.clone())?;
        let inbox = InboxSettings::from_env(env)?;
        let limiter = RateLimiter::new(conn.clone(), keys.clone(), &inbox);
        let store = InboxStore::new(conn, keys, inbox);
        let publisher = Publisher::new(EventBus::connect(&kafka).await?, store.clone())
            .with_fallback(fanout.clone());
        Ok(Deps {
            store,
            publisher,
            fanout,
            verifier: JwksVerifier::new(JwtSettings::from_env(env)?),
            limiter,
        })
    }

    /// The same dependencies acting on `tenant`'s keys (a connection's tenant, from `$connect`).
    pub fn for_tenant(&self, tenant: &Tenant) -> Deps {
        Deps {
            store: self.store.for_tenant(tenant),
            publisher: self.publisher.clone(),
            fanout: self.fanout.for_tenant(tenant),
            verifier: self.verifier.clone(),
            limiter: self.limiter.for_tenant(tenant),
        }
    }
}

fn status(code: i64) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = code;
    response
}

/// One route event. Answers 200 except for a refused `$connect` (401), or 500 when Redis is down
/// at `$connect` (the client retries).
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, lambda_runtime::Error> {
    let request = event.payload;
    let ctx = &request.request_context;
    let connection_id = ctx.connection_id.clone().unwrap_or_default();
    let route = ctx.route_key.as_deref().unwrap_or("$default");
    Ok(match route {
        "$connect" => connect(deps, &request, &connection_id).await,
        "$disconnect" => {
            if let Err(e) = deps.fanout.registry().unregister(&connection_id).await {
                // The registry entries expire by themselves; the next delivery prunes it as gone.
                tracing::warn!(connection = connection_id, error = %e, "unregistering failed");
            }
            status(200)
        }
        _ => {
            message(deps, &request, &connection_id).await;
            status(200)
        }
    })
}

async fn connect(
    deps: &Deps,
    request: &ApiGatewayWebsocketProxyRequest,
    connection_id: &str,
) -> ApiGatewayProxyResponse {
    let token = request
        .query_string_parameters
        .first("token")
        .unwrap_or_default();
    let claims = match deps.verifier.verify(token).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::info!(connection = connection_id, reason = %e, "refused a connection");
            return status(401);
        }
    };
    let connection = Connection {
        id: connection_id.to_owned(),
        connected_at_ms: request.request_context.connected_at,
        token_expires_ms: claims.exp.map_or(i64::MAX, |exp| exp as i64 * 1000),
    };
    match deps
        .fanout
        .registry()
        .for_tenant(&claims.tenant)
        .register(&claims.sub, &connection)
        .await
    {
        Ok(()) => {
            tracing::debug!(connection = connection_id, user = claims.sub, "connected");
            status(200)
        }
        Err(e) => {
            tracing::error!(connection = connection_id, error = %e, "registering failed");
            status(500)
        }
    }
}

/// Posts a reply to the connection. A connection that is gone needs no reply.
async fn reply(deps: &Deps, connection_id: &str, frame: &Frame) {
    let outcome = deps.fanout.api().post(connection_id, &frame.encode()).await;
    if let shared::realtime::PostOutcome::Failed(e) = outcome {
        tracing::warn!(connection = connection_id, error = %e, "reply failed");
    }
}

async fn message(deps: &Deps, request: &ApiGatewayWebsocketProxyRequest, connection_id: &str) {
    let body = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        let frame = Frame::error(ErrorCode::BadFrame, "frames are JSON text", None);
        return reply(deps, connection_id, &frame).await;
    }
    if body.len() > FRAME_MAX_BYTES {
        let frame = Frame::error(
            ErrorCode::BadFrame,
            format!("a frame is at most {FRAME_MAX_BYTES} bytes"),
            None,
        );
        return reply(deps, connection_id, &frame).await;
    }
    let action = match Action::parse(body) {
        Ok(action) => action,
        Err(error) => return reply(deps, connection_id, &error).await,
    };
    let registry = deps.fanout.registry();
    let (tenant, user) = match registry.session(connection_id).await {
        Ok(Some((tenant, user, connection)))
            if !connection.token_expired(chrono::Utc::now().timestamp_millis()) =>
        {
            (tenant, user)
        }
        Ok(Some((tenant, user, _))) => {
            let registry = registry.for_tenant(&tenant);
            let why = "your token has expired; reconnect with a fresh one";
            refuse(deps, connection_id, action.name(), why).await;
            // $disconnect unregisters it too; this makes sure no delivery posts to it meanwhile.
            if let Err(e) = registry.remove(&user, connection_id).await {
                tracing::warn!(connection = connection_id, error = %e, "unregistering failed");
            }
            return;
        }
        Ok(None) => {
            let why = "this connection is not registered (its token expired?); reconnect";
            return refuse(deps, connection_id, action.name(), why).await;
        }
        Err(e) => return unavailable(deps, connection_id, action.name(), &e).await,
    };
    // Every action acts on the connection's tenant's keys.
    let scoped;
    let deps = if tenant.is_default() {
        deps
    } else {
        scoped = deps.for_tenant(&tenant);
        &scoped
    };
    let name = action.name();
    if !matches!(action, Action::Ping {}) {
        match deps.limiter.check_user_mutation(&user).await {
            Ok(RateDecision::Allowed) => {}
            Ok(RateDecision::Limited { retry_after }) => {
                let frame = Frame::rate_limited(name, whole_seconds(retry_after));
                return reply(deps, connection_id, &frame).await;
            }
            Err(e) => return unavailable(deps, connection_id, name, &e).await,
        }
    }
    if let Err(e) = act(deps, connection_id, &user, action).await {
        unavailable(deps, connection_id, name, &e).await;
    }
}

/// Answers `unauthorized` and closes the connection: the client must reconnect with a valid token.
async fn refuse(deps: &Deps, connection_id: &str, action: &str, why: &str) {
    let frame = Frame::error(ErrorCode::Unauthorized, why, Some(action));
    reply(deps, connection_id, &frame).await;
    if let Err(e) = deps.fanout.api().close(connection_id).await {
        tracing::warn!(connection = connection_id, error = %e, "closing failed");
    }
}

async fn unavailable(deps: &Deps, connection_id: &str, action: &str, error: &StoreError) {
    tracing::error!(
        connection = connection_id,
        action,
        error = %error,
        "action failed"
    );
    let frame = Frame::error(
        ErrorCode::Unavailable,
        "the store is unavailable; retry",
        Some(action),
    );
    reply(deps, connection_id, &frame).await;
}

fn not_found(action: &Action, id: &str) -> Frame {
    Frame::error(
        ErrorCode::NotFound,
        format!("no notification {id} in your inbox"),
        Some(action.name()),
    )
}

/// Runs one action for `user` on behalf of `connection_id`.
async fn act(
    deps: &Deps,
    connection_id: &str,
    user: &str,
    action: Action,
) -> Result<(), StoreError> {
    let patch = |read, seen, archived| FlagsPatch {
        read,
        seen,
        archived,
    };
    let (read, archived) = (patch(Some(true), None, None), patch(None, None, Some(true)));
    match &action {
        Action::Ping {} => reply(deps, connection_id, &Frame::Pong {}).await,
        Action::Sync { since } => sync(deps, connection_id, user, *since).await?,
        Action::MarkRead { id } => update(deps, connection_id, user, &action, id, read).await?,
        Action::Archive { id } => update(deps, connection_id, user, &action, id, archived).await?,
        Action::MarkSeen { ids } => {
            let mut changes = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match deps
                    .store
                    .update(user, id, patch(None, Some(true), None))
                    .await?
                {
                    UpdateOutcome::Updated { change, .. } => changes.push(change),
                    UpdateOutcome::Unchanged(_) => {}
                    UpdateOutcome::Missing => missing.push(id.as_str()),
                }
            }
            deps.publisher.publish_or_defer(&changes).await;
            if !missing.is_empty() {
                reply(
                    deps,
                    connection_id,
                    &not_found(&action, &missing.join(", ")),
                )
                .await;
            }
        }
        Action::MarkAllRead { notification_type } => {
            if notification_type
                .as_deref()
                .is_some_and(|t| !limits::valid_type(t))
            {
                let frame = Frame::error(
                    ErrorCode::Invalid,
                    "type is not a valid notification type",
                    Some(action.name()),
                );
                reply(deps, connection_id, &frame).await;
                return Ok(());
            }
            let MarkAllRead { change, .. } = deps
                .store
                .mark_all_read(user, notification_type.as_deref())
                .await?;
            deps.publisher.publish_or_defer(change.as_slice()).await;
        }
        Action::Click { id } => {
            let Some(first) = deps.store.record_click(user, id).await? else {
                reply(deps, connection_id, &not_found(&action, id)).await;
                return Ok(());
            };
            if let Err(e) = deps
                .publisher
                .record_click(deps.store.tenant(), user, id, first)
                .await
            {
                tracing::warn!(user, id, error = %e, "click not recorded: kafka unavailable");
                let frame = Frame::error(
                    ErrorCode::Unavailable,
                    "the click could not be recorded; retry",
                    Some(action.name()),
                );
                reply(deps, connection_id, &frame).await;
            }
        }
    }
    Ok(())
}

async fn update(
    deps: &Deps,
    connection_id: &str,
    user: &str,
    action: &Action,
    id: &str,
    patch: FlagsPatch,
) -> Result<(), StoreError> {
    match deps.store.update(user, id, patch).await? {
        UpdateOutcome::Updated { change, .. } => {
            deps.publisher
                .publish_or_defer(std::slice::from_ref(&change))
                .await
        }
        UpdateOutcome::Unchanged(_) => {}
        UpdateOutcome::Missing => reply(deps, connection_id, &not_found(action, id)).await,
    }
    Ok(())
}

/// Every change after `since`, as `sync.result` pages of at most 32 KB, or `resync`.
async fn sync(deps: &Deps, connection_id: &str, user: &str, since: u64) -> Result<(), StoreError> {
    let mut since = since;
    // The log holds at most CHANGE_LOG_CAP changes (plus unpublished ones): bounded.
    let max_reads = deps.store.settings().change_log_cap as usize / SYNC_READ + 2;
    for read in 0..max_reads {
        match deps.store.changes(user, since, SYNC_READ).await? {
            ChangesPage::Resync { head } => {
                reply(deps, connection_id, &Frame::Resync { head }).await;
                return Ok(());
            }
            ChangesPage::Changes {
                changes,
                up_to,
                head,
            } => {
                let more = up_to < head && !changes.is_empty() && read + 1 < max_reads;
                let frames = changes.iter().filter_map(Frame::from_envelope).collect();
                for page in sync_pages(since, frames, !more) {
                    if let shared::realtime::PostOutcome::Gone =
                        deps.fanout.api().post(connection_id, &page).await
                    {
                        return Ok(());
                    }
                }
                if !more {
                    return Ok(());
                }
                since = up_to;
            }
        }
    }
    Ok(())
}
