//! devstack's demo endpoints, next to the demo page ([`crate::site`]) on the HTTP API's port. None
//! of this exists in AWS: it is how a developer sees Herald's inbox working in a browser.
//!
//! - `GET /_devstack/demo/session[?user=ID]` → `{userId, token, httpUrl, wsUrl, expiresIn}`: a
//!   one-hour user token (no scopes) from devstack's issuer, for `ID` or a random `demo-xxxxxxxx`.
//! - `POST /_devstack/demo/send` with that token as `Authorization: Bearer` and
//!   `{title?, body?, type?, channels?}`: devstack verifies the token with its own key, mints a
//!   one-minute service token with scope `notifications:write`, and sends
//!   `POST /v1/notifications {userId: <sub>, ...}` through the HTTP API (route, authorizer, api
//!   function) exactly as a service would; the answer is the API's. So the browser never holds
//!   a token that may write, and can only notify itself. Without a valid token: 401.
//! - `POST /_devstack/demo/broadcast` with that token and `{title?, body?, type?}`: the same
//!   service token creates the topic [`DEMO_TOPIC`] (if missing), subscribes the caller, and
//!   broadcasts to the topic (`POST /v1/topics/demo/notifications`); the answer is the API's
//!   202. The notification reaches the page through the `broadcast` function, Kafka, `delivery`
//!   and the WebSocket, as any subscriber's would.
//!
//! Layering: this module calls the gateway ([`http_gateway::dispatch`]); the gateway knows nothing
//! of it (the stack merges both routers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http_gateway::{self, HttpGateway};
use crate::jwt::Issuer;
use crate::percent::decode_url_component;

/// Lifetime of a demo session's user token.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Lifetime of the service token minted for one `send`.
const SERVICE_TTL: Duration = Duration::from_secs(60);
/// The `sub` of the service token: the sender the API's per-sender rate limit counts.
pub const DEMO_SENDER: &str = "devstack-demo";
const WRITE_SCOPE: &str = "notifications:write";
/// The topic the demo page broadcasts to (every demo user who broadcasts joins it).
pub const DEMO_TOPIC: &str = "demo";
/// Largest `send` body accepted.
const SEND_MAX_BODY: usize = 16 * 1024;

/// What the demo endpoints need.
pub struct Demo {
    pub gateway: Arc<HttpGateway>,
    pub issuer: Arc<Issuer>,
    pub http_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub ws_stage: String,
}

pub fn demo_router(demo: Arc<Demo>) -> Router {
    Router::new()
        .route("/_devstack/demo/session", get(session))
        .route("/_devstack/demo/send", post(send))
        .route("/_devstack/demo/broadcast", post(broadcast))
        .with_state(demo)
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "message": text })),
    )
        .into_response()
}

/// The host name the browser used, when it names this machine: the URLs handed back use it, so
/// a page opened at `localhost` talks to `localhost` (same origin, no CORS).
fn loopback_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let is_loopback = name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    is_loopback.then(|| name.to_owned())
}

/// The value of `name` in a query string, decoded.
fn query_value(raw: Option<&str>, name: &str) -> Option<String> {
    raw?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_url_component(k, true) == name).then(|| decode_url_component(v, true))
    })
}

async fn session(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let user = match query_value(query.as_deref(), "user").filter(|u| !u.is_empty()) {
        Some(u) if shared::limits::valid_user_id(&u) => u,
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "user must be 1-128 printable ASCII characters without spaces or braces",
            )
        }
        None => format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
    };
    let token = match demo.issuer.token(&user, &[], SESSION_TTL) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("demo session token: {e}");
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let host = loopback_host(&headers);
    let url = |scheme: &str, addr: SocketAddr, path: &str| match &host {
        Some(h) => format!("{scheme}://{h}:{}{path}", addr.port()),
        None => format!("{scheme}://{addr}{path}"),
    };
    let http_url = url("http", demo.http_addr, "");
    let ws_url = url("ws", demo.ws_addr, &format!("/{}", demo.ws_stage));
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "userId": user,
            "token": token,
            "httpUrl": http_url,
            "wsUrl": ws_url,
            "expiresIn": SESSION_TTL.as_secs(),
        })),
    )
        .into_response()
}

/// The form's fields; absent or blank ones take the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    title: Option<String>,
    body: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    channels: Option<Vec<String>>,
    /// Send later: passed on as the create's `sendAt` (a date-time or `optimal`).
    #[serde(rename = "sendAt")]
    send_at: Option<String>,
}

/// The demo user a request's bearer token names (devstack's own issuer), or `None`.
fn demo_user(demo: &Demo, headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    let audience = std::slice::from_ref(&demo.issuer.audience);
    let claims = demo
        .issuer
        .verify(bearer, &demo.issuer.issuer, audience)
        .ok()?;
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The form of a `send` or `broadcast`, once read: 400/413 answers otherwise.
async fn read_form(body: Body) -> Result<SendRequest, Response> {
    let bytes = axum::body::to_bytes(body, SEND_MAX_BODY)
        .await
        .map_err(|_| message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(SendRequest::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        message(
            StatusCode::BAD_REQUEST,
            &format!("expected {{title?, body?, type?, channels?, sendAt?}}: {e}"),
        )
    })
}

/// The notification fields of a form, with the defaults.
fn notification_fields(form: SendRequest) -> Value {
    let or = |v: Option<String>, default: &str| {
        v.filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let mut fields = json!({
        "type": or(form.kind, "demo.test"),
        "title": or(form.title, "Test notification"),
        "body": or(form.body, "Sent from the devstack demo page."),
    });
    if let Some(channels) = form.channels.filter(|c| !c.is_empty()) {
        fields["channels"] = json!(channels);
    }
    if let Some(send_at) = form.send_at.filter(|s| !s.is_empty()) {
        fields["sendAt"] = json!(send_at);
    }
    fields
}

/// Calls the HTTP API as the demo's service (a fresh one-minute `notifications:write` token),
/// through the gateway exactly as a service would; the answer is the API's.
async fn call_as_service(
    demo: &Demo,
    peer: SocketAddr,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: &Value,
) -> Response {
    let service = match demo
        .issuer
        .token(DEMO_SENDER, &[WRITE_SCOPE.to_owned()], SERVICE_TTL)
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("demo service token: {e}");
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let mut request = Request::new(Body::from(body.to_string()));
    *request.method_mut() = method;
    match axum::http::Uri::try_from(path) {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
    let h = request.headers_mut();
    if let Ok(v) = HeaderValue::try_from(format!("Bearer {service}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for name in [header::HOST, header::USER_AGENT] {
        if let Some(value) = headers.get(&name) {
            h.insert(name, value.clone());
        }
    }
    http_gateway::dispatch(&demo.gateway, peer, request).await
}

async fn send(
    State(demo): State<Arc<Demo>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(user) = demo_user(&demo, &parts.headers) else {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let mut create = notification_fields(form);
    create["userId"] = json!(user);
    call_as_service(
        &demo,
        peer,
        &parts.headers,
        Method::POST,
        "/v1/notifications",
        &create,
    )
    .await
}

/// Joins the caller to [`DEMO_TOPIC`] (creating it) and broadcasts to the topic.
async fn broadcast(
    State(demo): State<Arc<Demo>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(user) = demo_user(&demo, &parts.headers) else {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let topic = format!("/v1/topics/{DEMO_TOPIC}");
    let steps = [
        (Method::PUT, topic.clone(), json!({"name": "devstack demo"})),
        (
            Method::POST,
            format!("{topic}/subscribers"),
            json!({"userIds": [user]}),
        ),
    ];
    for (method, path, body) in steps {
        let answer = call_as_service(&demo, peer, &parts.headers, method, &path, &body).await;
        if !answer.status().is_success() {
            return answer;
        }
    }
    let path = format!("{topic}/notifications");
    let fields = notification_fields(form);
    call_as_service(&demo, peer, &parts.headers, Method::POST, &path, &fields).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_host_only_when_it_is_this_machine() {
        let headers = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::HOST,
                HeaderValue::from_str(host).unwrap_or_else(|e| panic!("{e}")),
            );
            h
        };
        assert_eq!(
            loopback_host(&headers("localhost:3000")).as_deref(),
            Some("localhost")
        );
        assert_eq!(
            loopback_host(&headers("127.0.0.1:3000")).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            loopback_host(&headers("[::1]:3000")).as_deref(),
            Some("[::1]")
        );
        assert_eq!(loopback_host(&headers("evil.example:3000")), None);
        assert_eq!(loopback_host(&HeaderMap::new()), None);
    }
}
