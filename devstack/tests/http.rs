//! The HTTP API gateway with real HTTP clients: payload 2.0 events, the JWT authorizer's 401/403,
//! scopes, claims, CORS, unknown routes, Lambda's payload limits, and the issuer's discovery
//! documents.

mod common;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use common::{bounded, http, stack, token};
use serde_json::Value;

fn url(path: &str) -> String {
    format!("http://{}{path}", stack().http)
}

async fn event_of(resp: reqwest::Response) -> Value {
    let body: Value = resp.json().await.unwrap_or_default();
    body["event"].clone()
}

#[tokio::test]
async fn public_routes_get_a_payload_2_event() {
    bounded(60, async {
        let resp = http()
            .get(url("/public?a=1&b=two%20words&a=3"))
            .header("cookie", "c1=x; c2=y")
            .header("x-multi", "1")
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("x-fixture")
                .and_then(|v| v.to_str().ok()),
            Some("yes")
        );
        assert_eq!(
            resp.headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok()),
            Some("a=1; Path=/")
        );
        let event = event_of(resp).await;
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "GET /public");
        assert_eq!(event["rawQueryString"], "a=1&b=two%20words&a=3");
        assert_eq!(event["queryStringParameters"]["a"], "1,3");
        assert_eq!(event["queryStringParameters"]["b"], "two words");
        assert_eq!(event["cookies"], serde_json::json!(["c1=x", "c2=y"]));
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["requestContext"]["stage"], "$default");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
        assert!(event["requestContext"].get("authorizer").is_none());
        // The same shape the functions deserialize.
        let typed: Result<ApiGatewayV2httpRequest, _> = serde_json::from_value(event.clone());
        assert!(typed.is_ok(), "{typed:?}");
    })
    .await;
}

#[tokio::test]
async fn the_jwt_authorizer_answers_401_and_403_itself() {
    bounded(60, async {
        let no_token = http()
            .get(url("/items/abc"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(no_token.status(), 401);
        assert_eq!(
            no_token.text().await.unwrap_or_default(),
            r#"{"message":"Unauthorized"}"#
        );

        let garbage = http()
            .get(url("/items/abc"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(garbage.status(), 401);

        let other_key = devstack::jwt::Issuer::load_or_create(
            &common::temp_dir("other-key"),
            &format!("http://{}", stack().http),
            "herald",
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .token("mallory", &[], std::time::Duration::from_secs(60))
        .unwrap_or_default();
        let forged = http()
            .get(url("/items/abc"))
            .bearer_auth(other_key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(
            forged.status(),
            401,
            "a token signed with another key is refused"
        );

        let expired = stack()
            .issuer
            .token("alice", &[], std::time::Duration::ZERO)
            .unwrap_or_default();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let resp = http()
            .get(url("/items/abc"))
            .bearer_auth(expired)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(resp.status(), 401, "an expired token is refused");

        let no_scope = http()
            .post(url("/items"))
            .bearer_auth(token("alice", &[]))
            .body("{}")
            .send()
            .await
            .unwrap_or_else(|e| panic!("post: {e}"));
        assert_eq!(no_scope.status(), 403);
        assert_eq!(
            no_scope.text().await.unwrap_or_default(),
            r#"{"message":"Forbidden"}"#
        );

        let scoped = http()
            .post(url("/items"))
            .bearer_auth(token("svc", &["other", "items:write"]))
            .header("content-type", "application/octet-stream")
            .body(vec![0u8, 159, 146, 150])
            .send()
            .await
            .unwrap_or_else(|e| panic!("post: {e}"));
        assert_eq!(scoped.status(), 200);
        let event = event_of(scoped).await;
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "AJ+Slg==");
        assert_eq!(
            event["requestContext"]["authorizer"]["jwt"]["scopes"],
            serde_json::json!(["other", "items:write"])
        );
    })
    .await;
}

#[tokio::test]
async fn claims_reach_the_function_as_strings_and_literal_routes_win() {
    bounded(60, async {
        let resp = http()
            .get(url("/items/a%20b"))
            .bearer_auth(token("alice", &["read"]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(resp.status(), 200);
        let event = event_of(resp).await;
        assert_eq!(event["routeKey"], "GET /items/{id}");
        assert_eq!(event["pathParameters"]["id"], "a b");
        let claims = &event["requestContext"]["authorizer"]["jwt"]["claims"];
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["scope"], "read");
        assert!(claims["exp"].is_string(), "{claims}");
        assert_eq!(claims["iss"], format!("http://{}", stack().http));

        let counts = http()
            .get(url("/items/counts"))
            .bearer_auth(token("alice", &[]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(event_of(counts).await["routeKey"], "GET /items/counts");
    })
    .await;
}

// Over 100 lines on purpose: one stack round-trip per gateway answer that is not a function's
// (404, preflight, CORS headers, discovery, JWKS, a crash as 500), in sequence on the shared stack.
#[tokio::test]
async fn unknown_routes_cors_and_discovery() {
    bounded(60, async {
        let missing = http()
            .get(url("/nope"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.text().await.unwrap_or_default(),
            r#"{"message":"Not Found"}"#
        );

        let preflight = http()
            .request(reqwest::Method::OPTIONS, url("/items"))
            .header("origin", "http://app.test")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap_or_else(|e| panic!("options: {e}"));
        assert_eq!(preflight.status(), 204);
        let h = |name: &str| {
            preflight
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            h("access-control-allow-origin").as_deref(),
            Some("http://app.test")
        );
        assert_eq!(
            h("access-control-allow-methods").as_deref(),
            Some("GET,POST")
        );
        assert_eq!(h("access-control-max-age").as_deref(), Some("60"));

        let simple = http()
            .get(url("/public"))
            .header("origin", "http://evil.test")
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert!(simple
            .headers()
            .get("access-control-allow-origin")
            .is_none());
        let allowed = http()
            .get(url("/public"))
            .header("origin", "http://other.test")
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(
            allowed
                .headers()
                .get("access-control-expose-headers")
                .and_then(|v| v.to_str().ok()),
            Some("x-fixture")
        );

        let discovery: Value = http()
            .get(url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_default();
        assert_eq!(discovery["jwks_uri"], url("/.well-known/jwks.json"));
        let jwks: jsonwebtoken::jwk::JwkSet = http()
            .get(url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("jwks: {e}"));
        // The shared verifier (what the ws function uses) accepts devstack's tokens.
        let settings = shared::config::JwtSettings {
            issuer: format!("http://{}", stack().http),
            audience: "herald".into(),
            jwks_url: url("/.well-known/jwks.json"),
            jwks_ttl: std::time::Duration::from_secs(600),
            tenant_claim: Default::default(),
        };
        let claims = shared::auth::JwksVerifier::with_keys(settings, jwks)
            .verify(&token("bob", &["x"]))
            .await
            .unwrap_or_else(|e| panic!("verify: {e}"));
        assert_eq!(claims.sub, "bob");

        let crash = http()
            .get(url("/crash"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(crash.status(), 500);
        assert_eq!(
            crash.text().await.unwrap_or_default(),
            r#"{"message":"Internal Server Error"}"#
        );
    })
    .await;
}

/// `POST /sized?bytes=N` with `body`: the status and the answer's body.
async fn sized(bytes: usize, body: Vec<u8>) -> (u16, String) {
    let resp = http()
        .post(url(&format!("/sized?bytes={bytes}")))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("post: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn lambdas_6_mb_limits_are_answered_as_api_gateway_answers_them() {
    bounded(120, async {
        const MB6: usize = 6 * 1024 * 1024;
        // A request whose event is over 6,291,456 bytes never reaches the function: 413.
        let (status, body) = sized(10, vec![b'a'; MB6 + 1]).await;
        assert_eq!(
            (status, body.as_str()),
            (413, r#"{"message":"Request Entity Too Large"}"#)
        );
        // Under it, with room for what the event adds, it does.
        let (status, body) = sized(10, vec![b'a'; MB6 - 64 * 1024]).await;
        assert_eq!((status, body.len()), (200, 10));

        // A function answer over 6,291,556 bytes fails the integration: 502.
        let (status, body) = sized(MB6 + 200, vec![]).await;
        assert_eq!(
            (status, body.as_str()),
            (502, r#"{"message":"Internal Server Error"}"#)
        );
        // The runtime was told (413) and carries on: the next answer, just under, goes through.
        let (status, body) = sized(MB6 - 64 * 1024, vec![]).await;
        assert_eq!((status, body.len()), (200, MB6 - 64 * 1024));
    })
    .await;
}
