//! API Gateway WebSocket API and its `@connections` management API, on one port.
//!
//! - `GET /<stage>` upgrades to a WebSocket. When the template has a `$connect` route, its function
//!   is invoked first (headers and query string included); the socket opens only if it answers
//!   status 200, otherwise the client gets that status. The connection exists (is postable) only
//!   after the upgrade, so posting to it from `$connect` is a 410, as in AWS.
//! - Each message is routed by `RouteSelectionExpression` (`$request.body.<field>`) to its route,
//!   else to `$default`; with neither, the client gets `{"message":"Forbidden",...}`. A route
//!   with a route response (two-way) sends the function's body back; other replies go through
//!   `@connections`. A function error sends `{"message":"Internal server error",...}`.
//! - Limits: frames over 32 KB or messages over 128 KB close the socket with 1009; no data in
//!   either direction for the idle timeout (10 min) or a connection older than the maximum
//!   lifetime (2 h) closes it with 1001. `$disconnect` is invoked, best effort, after any close.
//! - `POST|GET|DELETE /<stage>/@connections/{id}`: post a frame (text if UTF-8, else binary; at
//!   most 128 KB), describe, or close a connection; an unknown id is 410 `GoneException`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use rand::RngCore;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::lambda::Lambda;
use crate::template::WebSocketApi;

/// API Gateway's WebSocket limits.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub frame_bytes: usize,
    pub message_bytes: usize,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            frame_bytes: 32 * 1024,
            message_bytes: 128 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(7200),
        }
    }
}

enum Outbound {
    Frame(Message),
    Close(u16, &'static str),
}

struct Connection {
    tx: mpsc::UnboundedSender<Outbound>,
    connected_at: DateTime<Utc>,
    source_ip: String,
    user_agent: String,
    last_active: Arc<Mutex<(Instant, DateTime<Utc>)>>,
}

/// What a [`WsGateway`] serves, and the request context it gives the functions.
pub struct WsSettings {
    /// The template's WebSocket API, if it has one.
    pub api: Option<WebSocketApi>,
    pub lambda: Lambda,
    pub stage: String,
    pub limits: WsLimits,
    /// `requestContext.domainName` and the `Host` header: the address clients connect to.
    pub domain: String,
    pub account_id: String,
}

/// The WebSocket API as devstack serves it.
pub struct WsGateway {
    settings: WsSettings,
    connections: Mutex<HashMap<String, Connection>>,
}

impl WsGateway {
    pub fn new(settings: WsSettings) -> Arc<WsGateway> {
        Arc::new(WsGateway {
            settings,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.connections.lock().map(|c| c.len()).unwrap_or_default()
    }
}

pub fn router(gw: Arc<WsGateway>) -> Router {
    Router::new()
        .route("/{stage}", get(connect))
        .route(
            "/{stage}/@connections/{id}",
            post(post_to_connection)
                .get(get_connection)
                .delete(delete_connection),
        )
        .with_state(gw)
}

/// 16 characters ending in `=`, like API Gateway's connection ids.
fn connection_id() -> String {
    let mut bytes = [0u8; 11];
    rand::thread_rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes).replace('+', "x").replace('/', "y")
}

fn aws_time(t: DateTime<Utc>) -> String {
    t.format("%d/%b/%Y:%H:%M:%S %z").to_string()
}

fn management_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", kind),
            ("content-type", "application/json"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

struct ConnInfo {
    id: String,
    connected_at: DateTime<Utc>,
    source_ip: String,
    user_agent: String,
}

impl WsGateway {
    fn context(
        &self,
        info: &ConnInfo,
        route_key: &str,
        event_type: &str,
        request_id: &str,
    ) -> Value {
        let now = Utc::now();
        let mut ctx = json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": aws_time(now),
            "messageDirection": "IN",
            "stage": self.settings.stage,
            "connectedAt": info.connected_at.timestamp_millis(),
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
            "requestId": request_id,
            "domainName": self.settings.domain,
            "connectionId": info.id,
            "apiId": self.settings.api.as_ref().map(|a| a.logical_id.to_ascii_lowercase()).unwrap_or_default(),
            "accountId": self.settings.account_id,
        });
        if event_type == "MESSAGE" {
            if let Some(o) = ctx.as_object_mut() {
                o.insert(
                    "messageId".into(),
                    uuid::Uuid::new_v4().simple().to_string().into(),
                );
            }
        }
        ctx
    }

    fn function_for(&self, route_key: &str) -> Option<(String, bool)> {
        self.settings
            .api
            .as_ref()?
            .route(route_key)
            .map(|r| (r.function.clone(), r.two_way))
    }

    /// The route a message selects: its action's route, else `$default`.
    fn select_route(&self, body: &str) -> Option<String> {
        let api = self.settings.api.as_ref()?;
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let selected = parsed.and_then(|v| {
            let mut cur = &v;
            for part in api.route_selection_field.split('.') {
                cur = cur.get(part)?;
            }
            cur.as_str().map(str::to_owned)
        });
        match selected {
            Some(key) if !key.starts_with('$') && api.route(&key).is_some() => Some(key),
            _ => api.route("$default").map(|_| "$default".to_owned()),
        }
    }
}

async fn connect(
    State(gw): State<Arc<WsGateway>>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if stage != gw.settings.stage {
        return message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let info = ConnInfo {
        id: connection_id(),
        connected_at: Utc::now(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    };

    if let Some((function, _)) = gw.function_for("$connect") {
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = connect_event(&gw, &info, &headers, query.as_deref(), &request_id);
        match gw
            .settings
            .lambda
            .invoke_with_id(&function, Bytes::from(event.to_string()), request_id)
            .await
        {
            Ok(out) => {
                let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
                let status = v.get("statusCode").and_then(Value::as_u64).unwrap_or(200);
                if status != 200 {
                    let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
                        .unwrap_or(StatusCode::FORBIDDEN);
                    let body = v
                        .get("body")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_default();
                    return (status, body).into_response();
                }
            }
            Err(e) => {
                tracing::warn!("$connect failed: {e}");
                return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
            }
        }
    }

    // As in AWS, the connection exists once `$connect` has answered 200: register it before
    // the 101 goes out, so a post racing the handshake is queued, not answered 410.
    let (tx, rx) = mpsc::unbounded_channel();
    let last_active = Arc::new(Mutex::new((Instant::now(), Utc::now())));
    if let Ok(mut c) = gw.connections.lock() {
        c.insert(
            info.id.clone(),
            Connection {
                tx: tx.clone(),
                connected_at: info.connected_at,
                source_ip: info.source_ip.clone(),
                user_agent: info.user_agent.clone(),
                last_active: last_active.clone(),
            },
        );
    }
    let limits = gw.settings.limits;
    let (failed_gw, failed_id) = (gw.clone(), info.id.clone());
    upgrade
        .max_frame_size(limits.frame_bytes)
        .max_message_size(limits.message_bytes)
        .on_failed_upgrade(move |_| {
            if let Ok(mut c) = failed_gw.connections.lock() {
                c.remove(&failed_id);
            }
        })
        .on_upgrade(move |socket| session(gw, socket, info, tx, rx, last_active))
}

/// The `$connect` event: the handshake's headers and query string, single- and multi-valued.
fn connect_event(
    gw: &WsGateway,
    info: &ConnInfo,
    headers: &HeaderMap,
    query: Option<&str>,
    request_id: &str,
) -> Value {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        single.insert(k.as_str().to_owned(), Value::String(v.clone()));
        if let Some(Value::Array(a)) = multi.get_mut(k.as_str()) {
            a.push(Value::String(v));
        } else {
            multi.insert(k.as_str().to_owned(), json!([v]));
        }
    }
    let mut event = json!({
        "headers": single,
        "multiValueHeaders": multi,
        "requestContext": gw.context(info, "$connect", "CONNECT", request_id),
        "isBase64Encoded": false,
    });
    if let (Some(q), Some(obj)) = (query.filter(|q| !q.is_empty()), event.as_object_mut()) {
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (
                crate::percent::decode_url_component(k, true),
                crate::percent::decode_url_component(v, true),
            );
            single.insert(k.clone(), Value::String(v.clone()));
            if let Some(Value::Array(a)) = multi.get_mut(&k) {
                a.push(Value::String(v));
            } else {
                multi.insert(k, json!([v]));
            }
        }
        obj.insert("queryStringParameters".into(), Value::Object(single));
        obj.insert(
            "multiValueQueryStringParameters".into(),
            Value::Object(multi),
        );
    }
    event
}

async fn session(
    gw: Arc<WsGateway>,
    socket: WebSocket,
    info: ConnInfo,
    tx: mpsc::UnboundedSender<Outbound>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    last_active: Arc<Mutex<(Instant, DateTime<Utc>)>>,
) {
    let (mut sink, mut stream) = socket.split();
    let touch = || {
        if let Ok(mut l) = last_active.lock() {
            *l = (Instant::now(), Utc::now());
        }
    };
    let info = Arc::new(info);
    let idle_timeout = gw.settings.limits.idle_timeout;
    let idle_at = || {
        last_active
            .lock()
            .map(|l| l.0)
            .unwrap_or_else(|_| Instant::now())
            + idle_timeout
    };
    // Both timers are made once: a frame only touches `last_active`, and the idle timer, when it
    // fires, checks it and sleeps again if there was activity meanwhile (no timer work per frame).
    let lifetime = tokio::time::sleep(gw.settings.limits.max_lifetime);
    let idle = tokio::time::sleep_until(idle_at());
    tokio::pin!(lifetime, idle);
    let (status, reason): (u16, String) = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    touch();
                    tokio::spawn(dispatch(gw.clone(), info.clone(), t.as_str().to_owned(), false, tx.clone()));
                }
                Some(Ok(Message::Binary(b))) => {
                    touch();
                    tokio::spawn(dispatch(gw.clone(), info.clone(), STANDARD.encode(&b), true, tx.clone()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => break (frame.as_ref().map_or(1005, |f| f.code), "Client closed the connection".into()),
                None => break (1006, "Connection lost".into()),
                Some(Err(e)) => {
                    let text = e.to_string();
                    if text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big") {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: 1009, reason: "Message too big".into() }))).await;
                        break (1009, "Message too big".into());
                    }
                    break (1006, format!("Protocol error: {text}"));
                }
            },
            out = rx.recv() => match out {
                Some(Outbound::Frame(m)) => {
                    touch();
                    if sink.send(m).await.is_err() {
                        break (1006, "Connection lost".into());
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break (code, reason.into());
                }
                None => break (1001, "Going away".into()),
            },
            _ = &mut idle => {
                let at = idle_at();
                if at > Instant::now() {
                    idle.as_mut().reset(at);
                    continue;
                }
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "Going away".into() }))).await;
                break (1001, "Idle timeout".into());
            }
            _ = &mut lifetime => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "Going away".into() }))).await;
                break (1001, "Maximum connection duration".into());
            }
        }
    };
    let _ = sink.close().await;
    if let Ok(mut c) = gw.connections.lock() {
        c.remove(&info.id);
    }
    if let Some((function, _)) = gw.function_for("$disconnect") {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut ctx = gw.context(&info, "$disconnect", "DISCONNECT", &request_id);
        if let Some(o) = ctx.as_object_mut() {
            o.insert("disconnectStatusCode".into(), status.into());
            o.insert("disconnectReason".into(), reason.into());
        }
        let event = json!({ "headers": { "Host": gw.settings.domain }, "requestContext": ctx, "isBase64Encoded": false });
        if let Err(e) = gw
            .settings
            .lambda
            .invoke_with_id(&function, Bytes::from(event.to_string()), request_id)
            .await
        {
            tracing::warn!(connection = %info.id, "$disconnect failed: {e}");
        }
    }
}

async fn dispatch(
    gw: Arc<WsGateway>,
    info: Arc<ConnInfo>,
    body: String,
    binary: bool,
    tx: mpsc::UnboundedSender<Outbound>,
) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let route = if binary {
        gw.settings
            .api
            .as_ref()
            .and_then(|a| a.route("$default"))
            .map(|_| "$default".to_owned())
    } else {
        gw.select_route(&body)
    };
    let error = |text: &str| {
        let m = json!({ "message": text, "connectionId": info.id, "requestId": request_id })
            .to_string();
        let _ = tx.send(Outbound::Frame(Message::Text(m.into())));
    };
    let Some(route) = route else {
        return error("Forbidden");
    };
    let Some((function, two_way)) = gw.function_for(&route) else {
        return error("Forbidden");
    };
    let event = json!({ "requestContext": gw.context(&info, &route, "MESSAGE", &request_id), "body": body, "isBase64Encoded": binary });
    match gw
        .settings
        .lambda
        .invoke_with_id(
            &function,
            Bytes::from(event.to_string()),
            request_id.clone(),
        )
        .await
    {
        Ok(out) if two_way => {
            let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
            let reply = match v.get("body") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None if v.get("statusCode").is_some() => None,
                _ => Some(String::from_utf8_lossy(&out).into_owned()),
            };
            if let Some(r) = reply {
                let _ = tx.send(Outbound::Frame(Message::Text(r.into())));
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(connection = %info.id, route = %route, "integration failed: {e}");
            error("Internal server error");
        }
    }
}

fn check_stage(gw: &WsGateway, stage: &str) -> Option<Response> {
    (stage != gw.settings.stage)
        .then(|| management_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden"))
}

fn gone(id: &str) -> Response {
    management_error(
        StatusCode::GONE,
        "GoneException",
        &format!("Connection {id} is gone"),
    )
}

async fn post_to_connection(
    State(gw): State<Arc<WsGateway>>,
    Path((stage, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Some(r) = check_stage(&gw, &stage) {
        return r;
    }
    if body.len() > gw.settings.limits.message_bytes {
        return management_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Payload too large",
        );
    }
    let tx = gw
        .connections
        .lock()
        .ok()
        .and_then(|c| c.get(&id).map(|c| c.tx.clone()));
    let Some(tx) = tx else { return gone(&id) };
    let frame = match std::str::from_utf8(&body) {
        Ok(text) => Message::Text(text.into()),
        Err(_) => Message::Binary(body),
    };
    if tx.send(Outbound::Frame(frame)).is_err() {
        return gone(&id);
    }
    StatusCode::OK.into_response()
}

async fn get_connection(
    State(gw): State<Arc<WsGateway>>,
    Path((stage, id)): Path<(String, String)>,
) -> Response {
    if let Some(r) = check_stage(&gw, &stage) {
        return r;
    }
    let described = gw.connections.lock().ok().and_then(|c| {
        c.get(&id).map(|c| {
            let last = c.last_active.lock().map(|l| l.1).unwrap_or(c.connected_at);
            json!({
                "connectedAt": c.connected_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "identity": { "sourceIp": c.source_ip, "userAgent": c.user_agent },
                "lastActiveAt": last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
        })
    });
    match described {
        Some(d) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            d.to_string(),
        )
            .into_response(),
        None => gone(&id),
    }
}

async fn delete_connection(
    State(gw): State<Arc<WsGateway>>,
    Path((stage, id)): Path<(String, String)>,
) -> Response {
    if let Some(r) = check_stage(&gw, &stage) {
        return r;
    }
    let conn = gw.connections.lock().ok().and_then(|mut c| c.remove(&id));
    match conn {
        Some(c) => {
            let _ = c.tx.send(Outbound::Close(1000, "Goodbye"));
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(&id),
    }
}
