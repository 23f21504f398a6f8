//! Calling the api handler the way API Gateway does: each call is rendered as a real HTTP API
//! payload-2.0 event (the same JSON shape as the files in `events/`) and parsed by `lambda_http`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::Body;
use serde_json::{json, Map, Value};

/// One HTTP call, built step by step.
#[derive(Debug, Clone)]
pub struct Call {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Map<String, Value>,
    body: Option<(String, bool)>,
    claims: Option<Map<String, Value>>,
}

/// The handler's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// The fields named in a problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Call {
    pub fn new(method: &str, path: &str) -> Self {
        Call {
            method: method.into(),
            path: path.into(),
            query: vec![],
            headers: Map::new(),
            body: None,
            claims: None,
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }
    pub fn patch(path: &str) -> Self {
        Self::new("PATCH", path)
    }
    pub fn put(path: &str) -> Self {
        Self::new("PUT", path)
    }
    pub fn delete(path: &str) -> Self {
        Self::new("DELETE", path)
    }

    /// As the user `sub`, with no scopes.
    pub fn user(mut self, sub: &str) -> Self {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(sub));
        claims.insert("iss".into(), json!("https://issuer.test"));
        claims.insert("exp".into(), json!("4102444800"));
        self.claims = Some(claims);
        self
    }

    /// In tenant `tenant` (the `tenant` claim, `TENANT_CLAIM`'s default), after `user`/`service`.
    pub fn tenant(self, tenant: &str) -> Self {
        self.claim("tenant", tenant)
    }

    /// As a service `sub` holding `notifications:write`.
    pub fn service(self, sub: &str) -> Self {
        self.user(sub).scope("notifications:write")
    }

    pub fn scope(mut self, scope: &str) -> Self {
        if let Some(c) = self.claims.as_mut() {
            let joined = match c.get("scope").and_then(Value::as_str) {
                Some(s) => format!("{s} {scope}"),
                None => scope.to_owned(),
            };
            c.insert("scope".into(), json!(joined));
        }
        self
    }

    /// With one more claim (`tenant`, say), as the authorizer passes every claim on.
    pub fn claim(mut self, name: &str, value: &str) -> Self {
        if let Some(c) = self.claims.as_mut() {
            c.insert(name.into(), json!(value));
        }
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), json!(value));
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn json(self, value: &Value) -> Self {
        self.raw_json(&value.to_string())
    }

    /// A body sent as-is with `Content-Type: application/json`.
    pub fn raw_json(mut self, text: &str) -> Self {
        self.headers
            .insert("content-type".into(), json!("application/json"));
        self.body = Some((text.to_owned(), false));
        self
    }

    /// Bytes sent base64-encoded, as API Gateway does for binary bodies.
    pub fn bytes(mut self, content_type: &str, bytes: &[u8]) -> Self {
        self.headers
            .insert("content-type".into(), json!(content_type));
        self.body = Some((STANDARD.encode(bytes), true));
        self
    }

    /// The API Gateway HTTP API (payload 2.0) event for this call.
    pub fn event(&self) -> Value {
        let raw_query = self
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut params = Map::new();
        for (k, v) in &self.query {
            params.insert(k.clone(), json!(v));
        }
        let mut context = json!({
            "accountId": "123456789012", "apiId": "herald", "domainName": "herald.test", "domainPrefix": "herald",
            "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "herald-tests"},
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
            "time": "29/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_000_000_000u64
        });
        if let Some(claims) = &self.claims {
            let scopes: Vec<&str> = claims
                .get("scope")
                .and_then(Value::as_str)
                .map(|s| s.split(' ').collect())
                .unwrap_or_default();
            context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": scopes}});
        }
        let mut event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": self.path, "rawQueryString": raw_query,
            "headers": self.headers, "requestContext": context, "isBase64Encoded": false
        });
        if !params.is_empty() {
            event["queryStringParameters"] = Value::Object(params);
        }
        if let Some((body, b64)) = &self.body {
            event["body"] = json!(body);
            event["isBase64Encoded"] = json!(b64);
        }
        event
    }

    /// Sends the call through `api::handle`.
    pub async fn send(&self, deps: &api::Deps) -> Reply {
        let request = match lambda_http::request::from_str(&self.event().to_string()) {
            Ok(r) => r,
            Err(e) => panic!("building the request event: {e}"),
        };
        let response = match api::handle(deps, request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = match response.into_body() {
            Body::Text(t) => t.into_bytes(),
            Body::Binary(b) => b,
            _ => vec![],
        };
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
