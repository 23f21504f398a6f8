//! The Lambda Invoke API, `POST /2015-03-31/functions/{name}/invocations`, so that
//! `cargo lambda invoke --data-file events/x.json api` and
//! `aws lambda invoke --endpoint-url http://127.0.0.1:9000 --function-name api` reach devstack.
//!
//! `{name}` is the binary name (a full ARN or a `:qualifier` suffix is accepted). Invocation types:
//! `RequestResponse` (default) answers 200 with the payload, or 200 with
//! `X-Amz-Function-Error: Unhandled` and Lambda's error document; `Event` answers 202 at once;
//! `DryRun` answers 204. An unknown function is a 404 `ResourceNotFoundException`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{InvokeError, Lambda, MAX_PAYLOAD};

pub fn router(lambda: Lambda) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .layer(DefaultBodyLimit::max(2 * MAX_PAYLOAD))
        .with_state(lambda)
}

/// `api`, `api:$LATEST`, `arn:aws:lambda:us-east-1:000000000000:function:api[:qualifier]` → `api`.
fn function_name(raw: &str) -> &str {
    let name = raw
        .split_once("function:")
        .map(|(_, rest)| rest)
        .unwrap_or(raw);
    name.split(':').next().unwrap_or(name)
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "Message": message, "message": message });
    (
        status,
        [
            ("x-amzn-errortype", kind),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn invoke(
    State(lambda): State<Lambda>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = function_name(&raw).to_owned();
    if !lambda.has(&name) {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {raw}"),
        );
    }
    if body.len() > MAX_PAYLOAD {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            &InvokeError::TooLarge(body.len()).to_string(),
        );
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match kind {
        "DryRun" => {
            return (StatusCode::NO_CONTENT, [("x-amzn-requestid", request_id)]).into_response()
        }
        "Event" => {
            let id = request_id.clone();
            tokio::spawn(async move {
                if let Err(e) = lambda.invoke_with_id(&name, body, id.clone()).await {
                    tracing::warn!(function = %name, request_id = %id, "asynchronous invocation failed: {e}");
                }
            });
            return (StatusCode::ACCEPTED, [("x-amzn-requestid", request_id)]).into_response();
        }
        "RequestResponse" => {}
        other => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("unknown invocation type {other}"),
            )
        }
    }
    match lambda.invoke_with_id(&name, body, request_id.clone()).await {
        Ok(payload) => (
            StatusCode::OK,
            [
                ("x-amzn-requestid", request_id.as_str()),
                ("x-amz-executed-version", "$LATEST"),
                ("content-type", "application/json"),
            ],
            payload,
        )
            .into_response(),
        Err(InvokeError::NotFound(_)) => aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {raw}"),
        ),
        Err(InvokeError::Spawn { reason, .. }) => {
            aws_error(StatusCode::BAD_GATEWAY, "ServiceException", &reason)
        }
        Err(e) => {
            let body = e.to_lambda_json(&request_id).to_string();
            (
                StatusCode::OK,
                [
                    ("x-amzn-requestid", request_id.as_str()),
                    ("x-amz-executed-version", "$LATEST"),
                    ("x-amz-function-error", "Unhandled"),
                    ("content-type", "application/json"),
                ],
                body,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn names_arns_and_qualifiers_resolve_to_the_binary() {
        assert_eq!(function_name("api"), "api");
        assert_eq!(function_name("api:$LATEST"), "api");
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:000000000000:function:outbox-relay:1"),
            "outbox-relay"
        );
    }
}
