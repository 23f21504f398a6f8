//! API Gateway HTTP API, payload format 2.0.
//!
//! Contract, as API Gateway:
//! - a request matches the most specific route (literal segments beat `{param}`, which beats
//!   `{proxy+}`; an exact method beats `ANY`), then `$default`; no match is a 404
//!   `{"message":"Not Found"}`;
//! - a JWT route needs a valid token (signature, `exp`, `iss`, `aud`) in its identity header, else
//!   401 `{"message":"Unauthorized"}`; a route with AuthorizationScopes needs one of them in the
//!   token's `scope`/`scp`, else 403 `{"message":"Forbidden"}`;
//! - the function receives an `APIGatewayV2HTTPRequest` (version 2.0) whose
//!   `requestContext.authorizer.jwt.claims` holds the token's claims as strings;
//! - its answer is mapped back (statusCode, headers, multiValueHeaders, cookies, body,
//!   isBase64Encoded); an answer without `statusCode` is a 200 with the answer as JSON body;
//!   a function error is a 500 `{"message":"Internal Server Error"}`, a timeout a 503;
//! - CORS preflights are answered by the gateway when the API has a CorsConfiguration, and CORS
//!   headers are added to responses for allowed origins.
//!
//! The issuer's `/.well-known/openid-configuration` and `/.well-known/jwks.json` are served here
//! too, because the issuer URL is this server's; so are the files of devstack's demo page
//! ([`crate::web`]), for what no route matches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::jwt::Issuer;
use crate::lambda::{InvokeError, Lambda};
use crate::template::{Cors, HttpApi, HttpRoute, RouteAuth};
use crate::web::Site;

/// Largest request body API Gateway accepts for an HTTP API.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// The HTTP API as devstack serves it.
pub struct HttpGateway {
    pub api: HttpApi,
    pub lambda: Lambda,
    pub issuer: Arc<Issuer>,
    pub account_id: String,
    /// Files served (GET/HEAD) where no route matches, instead of the 404; devstack's demo page.
    pub site: Option<Site>,
}

pub fn router(gateway: Arc<HttpGateway>) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(g): State<Arc<HttpGateway>>| async move { Json(g.issuer.discovery()) }),
        )
        .route(
            "/.well-known/jwks.json",
            get(|State(g): State<Arc<HttpGateway>>| async move { Json(g.issuer.jwks()) }),
        )
        .fallback(handle)
        .with_state(gateway)
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

/// One path segment pattern.
enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
    Greedy(&'a str),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    path.trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(greedy) => Segment::Greedy(greedy),
                    None => Segment::Param(name),
                },
                None => Segment::Literal(s),
            },
        )
        .collect()
}

/// Matches `path` against a route path; on success the path parameters and a specificity score.
/// Path parameters and a specificity score (no greedy segment, literal segments, named segments).
type PathMatch = (BTreeMap<String, String>, (usize, usize, usize));

fn match_path(pattern: &str, path: &str) -> Option<PathMatch> {
    let pat = segments(pattern);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut params = BTreeMap::new();
    let (mut literals, mut named) = (0, 0);
    for (i, seg) in pat.iter().enumerate() {
        match seg {
            Segment::Greedy(name) => {
                let rest = parts.get(i..).filter(|r| r.iter().any(|s| !s.is_empty()))?;
                params.insert((*name).to_owned(), percent_decode(&rest.join("/")));
                return Some((params, (0, literals, named)));
            }
            Segment::Literal(l) => {
                if parts.get(i) != Some(l) {
                    return None;
                }
                literals += 1;
            }
            Segment::Param(name) => {
                let v = parts.get(i).filter(|v| !v.is_empty())?;
                params.insert((*name).to_owned(), percent_decode(v));
                named += 1;
            }
        }
    }
    (parts.len() == pat.len()).then_some((params, (1, literals, named)))
}

impl HttpGateway {
    fn route(&self, method: &str, path: &str) -> Option<(&HttpRoute, BTreeMap<String, String>)> {
        type Scored<'a> = (
            &'a HttpRoute,
            BTreeMap<String, String>,
            (usize, usize, usize, usize),
        );
        let mut best: Option<Scored<'_>> = None;
        for r in &self.api.routes {
            if r.path == "$default" || !(r.method == method || r.method == "ANY") {
                continue;
            }
            if let Some((params, (exact, lit, named))) = match_path(&r.path, path) {
                let score = (exact, lit, named, usize::from(r.method != "ANY"));
                if best.as_ref().is_none_or(|b| score > b.2) {
                    best = Some((r, params, score));
                }
            }
        }
        best.map(|(r, p, _)| (r, p)).or_else(|| {
            self.api
                .routes
                .iter()
                .find(|r| r.path == "$default")
                .map(|r| (r, BTreeMap::new()))
        })
    }
}

fn percent_decode(s: &str) -> String {
    decode_url_component(s, false)
}

/// Decodes `%XX` escapes (invalid ones are kept as they are); with `plus_is_space`, also `+` as a
/// space, as in form-encoded query strings. Shared by the HTTP and WebSocket gateways.
pub(crate) fn decode_url_component(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && bytes[i] == b'+' {
            b' '
        } else {
            bytes[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// API Gateway's view of a query string: values of repeated names joined with commas.
fn query_parameters(raw: &str) -> Map<String, Value> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    out.into_iter()
        .map(|(k, v)| (k, Value::String(v.join(","))))
        .collect()
}

fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type.map(|c| c.to_ascii_lowercase()) else {
        return true;
    };
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.starts_with("application/x-www-form-urlencoded")
        || ct.starts_with("application/graphql")
}

/// Claims as API Gateway passes them: every value a string, arrays flattened to `[a b]`.
fn claims_as_strings(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => {
                    format!(
                        "[{}]",
                        items
                            .iter()
                            .map(|i| i
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| i.to_string()))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
                other => other.to_string(),
            };
            (k.clone(), Value::String(s))
        })
        .collect()
}

fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    out
}

fn cors_headers(cors: &Cors, origin: Option<&str>, preflight: bool) -> Vec<(String, String)> {
    let Some(origin) = origin else {
        return Vec::new();
    };
    let allowed = cors.allow_origins.iter().any(|o| o == "*" || o == origin);
    if !allowed {
        return Vec::new();
    }
    let mut h = vec![(
        "access-control-allow-origin".to_owned(),
        if cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials {
            "*".to_owned()
        } else {
            origin.to_owned()
        },
    )];
    if cors.allow_credentials {
        h.push(("access-control-allow-credentials".into(), "true".into()));
    }
    if preflight {
        if !cors.allow_methods.is_empty() {
            h.push((
                "access-control-allow-methods".into(),
                cors.allow_methods.join(","),
            ));
        }
        if !cors.allow_headers.is_empty() {
            h.push((
                "access-control-allow-headers".into(),
                cors.allow_headers.join(","),
            ));
        }
        if let Some(age) = cors.max_age {
            h.push(("access-control-max-age".into(), age.to_string()));
        }
    } else if !cors.expose_headers.is_empty() {
        h.push((
            "access-control-expose-headers".into(),
            cors.expose_headers.join(","),
        ));
    }
    h
}

async fn handle(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    dispatch(&gw, peer, req).await
}

/// Answers one request exactly as the HTTP API does (CORS, routing, authorizer, integration).
/// devstack's own endpoints call the template's routes through it, as a client would.
pub async fn dispatch(gw: &HttpGateway, peer: SocketAddr, req: Request<Body>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = serve(gw, peer, req, &request_id).await;
    if let Some(cors) = &gw.api.cors {
        for (k, v) in cors_headers(cors, origin.as_deref(), false) {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                response.headers_mut().entry(k).or_insert(v);
            }
        }
    }
    if let Ok(v) = HeaderValue::try_from(request_id) {
        response.headers_mut().insert("apigw-requestid", v);
    }
    response
}

async fn serve(
    gw: &HttpGateway,
    peer: SocketAddr,
    req: Request<Body>,
    request_id: &str,
) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let raw_path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    let headers = &parts.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());

    if let Some(cors) = &gw.api.cors {
        if parts.method == Method::OPTIONS && header("access-control-request-method").is_some() {
            let mut r = StatusCode::NO_CONTENT.into_response();
            for (k, v) in cors_headers(cors, header("origin"), true) {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    r.headers_mut().insert(k, v);
                }
            }
            return r;
        }
    }

    let Some((route, path_params)) = gw.route(&method, &raw_path) else {
        // Routes win; what none of them matches may be a file of the demo page.
        if let Some(site) = &gw.site {
            if let Some(file) = site.serve(&parts.method, &raw_path).await {
                return file;
            }
        }
        return message(StatusCode::NOT_FOUND, "Not Found");
    };

    let mut authorizer = Value::Null;
    if let RouteAuth::Jwt {
        authorizer: name,
        scopes,
    } = &route.auth
    {
        let Some(config) = gw.api.authorizers.get(name) else {
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        };
        let raw = header(&config.header).unwrap_or_default().trim();
        let token = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim();
        if token.is_empty() {
            return message(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        let claims = match gw.issuer.verify(token, &config.issuer, &config.audience) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(route = %route.route_key(), "token refused: {e}");
                return message(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
        };
        let granted = token_scopes(&claims);
        if !scopes.is_empty() && !scopes.iter().any(|s| granted.contains(s)) {
            return message(StatusCode::FORBIDDEN, "Forbidden");
        }
        let scopes_value = if scopes.is_empty() {
            Value::Null
        } else {
            json!(granted)
        };
        authorizer =
            json!({ "jwt": { "claims": claims_as_strings(&claims), "scopes": scopes_value } });
    }

    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };

    let event = build_event(
        gw,
        &parts,
        &raw_path,
        &raw_query,
        route,
        path_params,
        authorizer,
        &body,
        peer,
        request_id,
    );
    let payload = Bytes::from(event.to_string());
    match gw
        .lambda
        .invoke_with_id(&route.function, payload, request_id.to_owned())
        .await
    {
        Ok(out) => map_response(&out)
            .unwrap_or_else(|| message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")),
        Err(InvokeError::Timeout(_)) => {
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(e) => {
            tracing::warn!(route = %route.route_key(), "integration failed: {e}");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_event(
    gw: &HttpGateway,
    parts: &axum::http::request::Parts,
    raw_path: &str,
    raw_query: &str,
    route: &HttpRoute,
    path_params: BTreeMap<String, String>,
    authorizer: Value,
    body: &[u8],
    peer: SocketAddr,
    request_id: &str,
) -> Value {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name.as_str() == "cookie" {
            cookies.extend(
                v.split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
        } else {
            headers.entry(name.as_str().to_owned()).or_default().push(v);
        }
    }
    let host = headers
        .get("host")
        .and_then(|h| h.first())
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let user_agent = headers
        .get("user-agent")
        .and_then(|h| h.first())
        .cloned()
        .unwrap_or_default();
    let content_type = headers.get("content-type").and_then(|h| h.first()).cloned();
    let headers: Map<String, Value> = headers
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.join(","))))
        .collect();
    let now = chrono::Utc::now();

    let mut event = json!({
        "version": "2.0",
        "routeKey": route.route_key(),
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": gw.account_id,
            "apiId": gw.api.logical_id.to_ascii_lowercase(),
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or_default(),
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": format!("{:?}", parts.version),
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route.route_key(),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    let Some(obj) = event.as_object_mut() else {
        return event;
    };
    if !cookies.is_empty() {
        obj.insert("cookies".into(), json!(cookies));
    }
    if !raw_query.is_empty() {
        obj.insert(
            "queryStringParameters".into(),
            Value::Object(query_parameters(raw_query)),
        );
    }
    if !path_params.is_empty() {
        obj.insert("pathParameters".into(), json!(path_params));
    }
    if !authorizer.is_null() {
        if let Some(ctx) = obj.get_mut("requestContext").and_then(Value::as_object_mut) {
            ctx.insert("authorizer".into(), authorizer);
        }
    }
    if !body.is_empty() {
        match std::str::from_utf8(body)
            .ok()
            .filter(|_| is_text(content_type.as_deref()))
        {
            Some(text) => {
                obj.insert("body".into(), Value::String(text.to_owned()));
            }
            None => {
                obj.insert("body".into(), Value::String(STANDARD.encode(body)));
                obj.insert("isBase64Encoded".into(), Value::Bool(true));
            }
        }
    }
    event
}

/// Maps a function's answer back to HTTP; `None` if it is malformed.
fn map_response(out: &[u8]) -> Option<Response> {
    let value: Value = serde_json::from_slice(out).ok()?;
    let Some(status) = value.get("statusCode") else {
        // Payload 2.0's inference: anything without statusCode is a 200 JSON body.
        return Some(
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                out.to_vec(),
            )
                .into_response(),
        );
    };
    let status = StatusCode::from_u16(u16::try_from(status.as_u64()?).ok()?).ok()?;
    let mut headers = HeaderMap::new();
    if let Some(h) = value.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                headers.insert(k, v);
            }
        }
    }
    if let Some(h) = value.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vs) in h {
            for v in vs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v))
                {
                    headers.append(k, v);
                }
            }
        }
    }
    for c in value
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Ok(v) = HeaderValue::try_from(c) {
            headers.append("set-cookie", v);
        }
    }
    let body = match value.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s))
            if value.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) =>
        {
            STANDARD.decode(s).ok()?
        }
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    if !headers.contains_key("content-type") && !body.is_empty() {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    Some((status, headers, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_beat_parameters_and_greedy_paths() {
        let (p, exact) =
            match_path("/v1/notifications/{id}", "/v1/notifications/abc").unwrap_or_default();
        assert_eq!(p.get("id").map(String::as_str), Some("abc"));
        let (_, counts) =
            match_path("/v1/notifications/counts", "/v1/notifications/counts").unwrap_or_default();
        assert!(counts > exact);
        assert!(match_path("/v1/notifications/{id}", "/v1/notifications").is_none());
        let (g, _) = match_path("/files/{proxy+}", "/files/a/b%20c").unwrap_or_default();
        assert_eq!(g.get("proxy").map(String::as_str), Some("a/b c"));
    }

    #[test]
    fn repeated_query_parameters_are_comma_joined() {
        let q = query_parameters("a=1&b=x%20y&a=2");
        assert_eq!(q.get("a"), Some(&json!("1,2")));
        assert_eq!(q.get("b"), Some(&json!("x y")));
    }
}
