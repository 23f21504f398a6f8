//! Payload format 2.0, both ways: the `APIGatewayV2HTTPRequest` a route's function receives
//! ([`build_event`]) and how its answer becomes the HTTP response ([`map_response`]).
//!
//! Contract, as API Gateway: headers are lower-cased with repeated values comma-joined, `cookie`
//! headers become `cookies`, repeated query parameters are comma-joined, a body that is not text
//! (by its content type) or not UTF-8 is base64 with `isBase64Encoded`; JWT claims are passed as
//! strings. An answer without `statusCode` is a 200 with the answer as its JSON body.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::percent::decode_url_component;
use crate::template::{HttpApi, HttpRoute};

/// API Gateway's view of a query string: values of repeated names joined with commas.
fn query_parameters(raw: &str) -> Map<String, Value> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode_url_component(k, false))
            .or_default()
            .push(decode_url_component(v, false));
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
pub(super) fn claims_as_strings(claims: &Map<String, Value>) -> Map<String, Value> {
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

/// The request's headers by name (values in order) and its cookies, which payload 2.0 passes apart.
fn headers_and_cookies(raw: &HeaderMap) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in raw {
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
    (headers, cookies)
}

/// The event a route's function receives for one request.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_event(
    account_id: &str,
    api: &HttpApi,
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
    let (headers, cookies) = headers_and_cookies(&parts.headers);
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
            "accountId": account_id,
            "apiId": api.logical_id.to_ascii_lowercase(),
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
pub(super) fn map_response(out: &[u8]) -> Option<Response> {
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
    fn repeated_query_parameters_are_comma_joined() {
        let q = query_parameters("a=1&b=x%20y&a=2");
        assert_eq!(q.get("a"), Some(&json!("1,2")));
        assert_eq!(q.get("b"), Some(&json!("x y")));
    }
}
