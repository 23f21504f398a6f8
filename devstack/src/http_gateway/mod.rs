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
//! - Lambda's payload limits hold as behind AWS: an event over 6,291,456 bytes (the request body
//!   with everything the 2.0 event adds) never reaches the function and is a 413
//!   `{"message":"Request Entity Too Large"}`; a function answer over 6,291,556 bytes is a 502
//!   `{"message":"Internal Server Error"}` (the integration failed; the function's work stands);
//! - CORS preflights are answered by the gateway when the API has a CorsConfiguration, and CORS
//!   headers are added to responses for allowed origins.
//!
//! The issuer's `/.well-known/openid-configuration` and `/.well-known/jwks.json` are served here
//! too, because the issuer URL is this server's; so are the files of devstack's demo page
//! ([`crate::site`]), for what no route matches.
//!
//! Inside: [`routes`] picks the route, [`payload`] builds the 2.0 event and maps the answer back;
//! this file runs the request through CORS, routing, the authorizer and the integration.

mod payload;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::jwt::Issuer;
use crate::lambda::{InvokeError, Lambda};
use crate::site::Site;
use crate::template::{Cors, HttpApi, HttpRoute, RouteAuth};

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

/// [`dispatch`] but for the response headers it adds: preflight, routing (then the demo page's
/// files), the authorizer, the integration.
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

    let Some((route, path_params)) = routes::select(&gw.api, &method, &raw_path) else {
        // Routes win; what none of them matches may be a file of the demo page.
        if let Some(site) = &gw.site {
            if let Some(file) = site.serve(&parts.method, &raw_path).await {
                return file;
            }
        }
        return message(StatusCode::NOT_FOUND, "Not Found");
    };

    let authorizer = match &route.auth {
        RouteAuth::None => Value::Null,
        RouteAuth::Jwt { authorizer, scopes } => {
            match authorize(gw, route, authorizer, scopes, headers) {
                Ok(context) => context,
                Err((status, text)) => return message(status, text),
            }
        }
    };

    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };

    let event = payload::build_event(
        &gw.account_id,
        &gw.api,
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
    match gw
        .lambda
        .invoke_with_id(
            &route.function,
            Bytes::from(event.to_string()),
            request_id.to_owned(),
        )
        .await
    {
        Ok(out) => payload::map_response(&out)
            .unwrap_or_else(|| message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")),
        Err(InvokeError::Timeout(_)) => {
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(InvokeError::TooLarge(_)) => {
            message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
        Err(e @ InvokeError::ResponseTooLarge(_)) => {
            tracing::warn!(route = %route.route_key(), "integration failed: {e}");
            message(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
        Err(e) => {
            tracing::warn!(route = %route.route_key(), "integration failed: {e}");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// Runs the route's JWT authorizer `name` over the request: the `authorizer` context the event
/// carries, or the status and message the gateway refuses it with (401 without a valid token,
/// 403 without a required scope).
fn authorize(
    gw: &HttpGateway,
    route: &HttpRoute,
    name: &str,
    scopes: &[String],
    headers: &HeaderMap,
) -> Result<Value, (StatusCode, &'static str)> {
    let Some(config) = gw.api.authorizers.get(name) else {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"));
    };
    let raw = headers
        .get(config.header.as_str())
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    if token.is_empty() {
        return Err((StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let claims = match gw.issuer.verify(token, &config.issuer, &config.audience) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(route = %route.route_key(), "token refused: {e}");
            return Err((StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
    };
    let granted = token_scopes(&claims);
    if !scopes.is_empty() && !scopes.iter().any(|s| granted.contains(s)) {
        return Err((StatusCode::FORBIDDEN, "Forbidden"));
    }
    let scopes_value = if scopes.is_empty() {
        Value::Null
    } else {
        json!(granted)
    };
    Ok(json!({ "jwt": { "claims": payload::claims_as_strings(&claims), "scopes": scopes_value } }))
}
