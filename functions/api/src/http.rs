//! Request parsing and response building shared by every route: content type, size and UTF-8
//! checks, JSON with field-level errors, query parameters, opaque cursors, problem responses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::auth::Claims;
use shared::error::{ApiError, FieldError, PROBLEM_CONTENT_TYPE};

/// The caller's verified claims, or 401: what [`crate::handle`] read from the authorizer's claims
/// (with the deployment's `TENANT_CLAIM`) and put in the request's extensions.
pub fn claims(req: &Request) -> Result<Claims, ApiError> {
    req.extensions()
        .get::<Claims>()
        .cloned()
        .ok_or(ApiError::Unauthorized)
}

/// The caller's claims if they hold `scope`; 401 without claims, 403 without the scope.
pub fn claims_with_scope(req: &Request, scope: &str) -> Result<Claims, ApiError> {
    let claims = claims(req)?;
    if claims.has_scope(scope) {
        Ok(claims)
    } else {
        Err(ApiError::Forbidden(format!(
            "this route requires the scope `{scope}`"
        )))
    }
}

/// The raw body bytes (API Gateway base64 bodies are already decoded by `lambda_http`).
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Parses a JSON body: checks the media type (415), the size (413), UTF-8 and syntax (400), then
/// the shape (422, with the path of the offending field).
pub fn json_body<T: DeserializeOwned>(req: &Request, max_bytes: usize) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    check_json_body(req, bytes, max_bytes)?;
    parse_json(bytes)
}

/// [`json_body`] for a body whose members `structs` are structs: serde would read each from an
/// array of its fields, and the API takes objects only (an array there is 422).
pub fn json_body_with_structs<T: DeserializeOwned>(
    req: &Request,
    max_bytes: usize,
    structs: &[&str],
) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    check_json_body(req, bytes, max_bytes)?;
    if let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(bytes) {
        let errors: Vec<FieldError> = structs
            .iter()
            .filter(|name| body.get(**name).is_some_and(serde_json::Value::is_array))
            .map(|name| FieldError::new(*name, "must be a JSON object"))
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
    }
    parse_json(bytes)
}

/// The media-type, size and UTF-8 checks of [`json_body`], for routes that keep the raw bytes.
pub fn check_json_body(req: &Request, bytes: &[u8], max_bytes: usize) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json"
        && !(essence.starts_with("application/") && essence.ends_with("+json"))
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: application/json, got {content_type:?}"
        )));
    }
    if bytes.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "the body is {} bytes; at most {max_bytes} are accepted",
            bytes.len()
        )));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::BadRequest(
            format!(
                "the body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
            vec![],
        ));
    }
    Ok(())
}

/// Deserialises JSON, reporting syntax errors as 400 and shape errors as 422 with the field path.
/// Every body is a JSON object: serde would read a struct from an array of its fields in order.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().starts_with(b"[") {
        return Err(ApiError::validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    // The common case, a body that fits, takes one plain pass; only a refused body is read again
    // to name the offending field (serde_path_to_error tracks the path of every value it visits,
    // a cost every create paid). serde_path_to_error only observes, so both passes accept and
    // refuse the same bodies (neither checks for trailing bytes after the value).
    if let Ok(value) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => {
                ApiError::BadRequest(format!("the body is not valid JSON: {inner}"), vec![])
            }
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::validation(vec![FieldError::new(
                    field,
                    strip_position(&inner.to_string()),
                )])
            }
        }
    })
}

/// serde_json appends " at line L column C"; for a field error the path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// One query parameter (the first value, as API Gateway joins repeated values with commas).
pub fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .filter(|v| !v.is_empty())
}

/// A numeric query parameter, or 400 naming it.
pub fn query_number<T: std::str::FromStr>(
    req: &Request,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match query(req, name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::BadRequest(
                format!("`{name}` must be a non-negative integer"),
                vec![FieldError::new(
                    name,
                    format!("{v:?} is not a non-negative integer"),
                )],
            )
        }),
    }
}

/// A page-size query parameter within `1..=max`, or `default`.
pub fn query_limit(req: &Request, default: usize, max: usize) -> Result<usize, ApiError> {
    match query_number::<usize>(req, "limit")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(
            format!("`limit` must be between 1 and {max}"),
            vec![FieldError::new("limit", format!("{n} is out of range"))],
        )),
    }
}

const CURSOR_PREFIX: &str = "v1:";

/// Encodes a list position as an opaque cursor.
pub fn encode_cursor(before_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{before_seq}"))
}

/// Decodes a cursor made by [`encode_cursor`], or 400.
pub fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(CURSOR_PREFIX).and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "`cursor` is not a cursor this API issued".into(),
                vec![FieldError::new("cursor", "invalid cursor")],
            )
        })
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_default();
    let mut resp = Response::new(Body::Text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    resp
}

/// The problem+json response for an error (with `Retry-After` on 429).
pub fn problem(error: &ApiError) -> Response<Body> {
    let problem = error.to_problem();
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(status, &problem);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    if let Some(secs) = problem.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Maps a store failure: a transient one ([`shared::store::redis_transient`]: unreachable,
/// loading its AOF, failing over, ...) is 503 with `Retry-After`; anything else 500.
pub fn store_error(e: shared::store::StoreError) -> ApiError {
    if e.is_transient() {
        tracing::warn!(error = %e, "store unavailable");
        ApiError::Unavailable("the inbox store is unavailable; retry shortly".into())
    } else {
        ApiError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_that_is_loading_or_failing_over_is_503_with_retry_after() {
        let transient: [redis::RedisError; 3] = [
            (
                redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading),
                "loading",
            )
                .into(),
            (
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "failover",
            )
                .into(),
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        ];
        for e in transient {
            let what = e.to_string();
            let response = problem(&store_error(shared::store::StoreError::Redis(e)));
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
            assert!(
                retry_after.is_some_and(|s| s >= 1),
                "{what}: no Retry-After"
            );
            assert_eq!(
                response.headers().get(header::CONTENT_TYPE),
                Some(&HeaderValue::from_static(PROBLEM_CONTENT_TYPE))
            );
        }
        let wrong_type: redis::RedisError =
            (redis::ErrorKind::UnexpectedReturnType, "wrong type").into();
        let response = problem(&store_error(shared::store::StoreError::Redis(wrong_type)));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).ok(), Some(42));
        assert!(decode_cursor("not-a-cursor").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v2:5")).is_err());
    }
}
