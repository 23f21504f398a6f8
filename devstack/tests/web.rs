//! The demo page on the HTTP port: the repository's `web/` files with their content types (API
//! routes still win), the session endpoint's token (verifiable, no write scope) and the send
//! endpoint (401 without a user token; with one, a service-scoped call of the API's own route).

mod common;

use std::sync::OnceLock;

use common::{bounded, http, start_stack, Shared};
use serde_json::Value;

const WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");

fn stack() -> &'static Shared {
    static STACK: OnceLock<Shared> = OnceLock::new();
    STACK.get_or_init(|| start_stack(&[("--web-dir", WEB_DIR)]))
}

fn url(path: &str) -> String {
    format!("http://{}{path}", stack().http)
}

async fn get(path: &str) -> reqwest::Response {
    http()
        .get(url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_page_and_the_client_module_are_served_with_their_types() {
    bounded(60, async {
        let page = get("/").await;
        assert_eq!(page.status(), 200);
        assert_eq!(content_type(&page), "text/html; charset=utf-8");
        let html = page.text().await.unwrap_or_default();
        assert!(html.contains(r#"data-testid="badge""#), "{html}");
        let on_disk = std::fs::read_to_string(format!("{WEB_DIR}/index.html")).unwrap_or_default();
        assert_eq!(html, on_disk);

        for module in ["/herald-client.js", "/app.js"] {
            let js = get(module).await;
            assert_eq!(js.status(), 200, "{module}");
            assert_eq!(
                content_type(&js),
                "text/javascript; charset=utf-8",
                "{module}"
            );
            assert_eq!(
                js.headers()
                    .get("x-content-type-options")
                    .and_then(|v| v.to_str().ok()),
                Some("nosniff")
            );
        }
        let css = get("/style.css").await;
        assert_eq!(content_type(&css), "text/css; charset=utf-8");

        let head = http()
            .head(url("/herald-client.js"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD: {e}"));
        assert_eq!(head.status(), 200);
        assert_eq!(content_type(&head), "text/javascript; charset=utf-8");

        let folder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
            .get(url("/test"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /test: {e}"));
        assert_eq!(folder.status(), 308);
        assert_eq!(
            folder
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok()),
            Some("/test/")
        );

        // Outside the folder, hidden, missing or not GET: the API's own 404.
        for path in [
            "/%2e%2e/Cargo.toml",
            "/node_modules/.package-lock.json",
            "/.gitignore",
            "/missing.js",
        ] {
            let r = get(path).await;
            assert_eq!(r.status(), 404, "{path}");
            assert_eq!(
                r.text().await.unwrap_or_default(),
                r#"{"message":"Not Found"}"#
            );
        }
        let post = http()
            .post(url("/index.html"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST: {e}"));
        assert_eq!(post.status(), 404);

        // A route of the template still answers its path.
        let api = get("/public").await;
        assert_eq!(
            api.headers().get("x-fixture").and_then(|v| v.to_str().ok()),
            Some("yes")
        );
    })
    .await;
}

async fn session(query: &str) -> Value {
    let resp = get(&format!("/_devstack/demo/session{query}")).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap_or_default()
}

#[tokio::test]
async fn a_demo_session_is_a_verifiable_user_token_without_write_scope() {
    bounded(60, async {
        let s = stack();
        let body = session("").await;
        let user = body["userId"].as_str().unwrap_or_default().to_owned();
        assert!(
            user.starts_with("demo-") && user.len() == 13,
            "a random demo user: {body}"
        );
        assert_eq!(body["httpUrl"], format!("http://{}", s.http));
        assert_eq!(body["wsUrl"], format!("ws://{}/{}", s.ws, s.stage));
        assert_eq!(body["expiresIn"], 3600);
        let token = body["token"].as_str().unwrap_or_default();
        let claims = s
            .issuer
            .verify(
                token,
                &s.issuer.issuer,
                std::slice::from_ref(&s.issuer.audience),
            )
            .unwrap_or_else(|e| panic!("the session token does not verify: {e}"));
        assert_eq!(
            claims.get("sub").and_then(Value::as_str),
            Some(user.as_str())
        );
        assert!(claims.get("scope").is_none(), "no scope at all: {claims:?}");
        let ttl =
            claims["exp"].as_u64().unwrap_or_default() - claims["iat"].as_u64().unwrap_or_default();
        assert_eq!(ttl, 3600);

        // The gateway agrees: it reads, but may not write.
        let read = http()
            .get(url("/items/abc"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        assert_eq!(read.status(), 200);
        let write = http()
            .post(url("/v1/notifications"))
            .bearer_auth(token)
            .body("{}")
            .send()
            .await
            .unwrap_or_else(|e| panic!("post: {e}"));
        assert_eq!(write.status(), 403);

        let alice = session("?user=alice%40example.com").await;
        assert_eq!(alice["userId"], "alice@example.com");
        assert_ne!(session("").await["userId"], body["userId"]);
        let bad = get("/_devstack/demo/session?user=a%20b").await;
        assert_eq!(bad.status(), 400);
    })
    .await;
}

#[tokio::test]
async fn send_needs_a_user_token_and_calls_the_api_route_as_a_service() {
    bounded(60, async {
        let send = |token: Option<String>, body: &'static str| async move {
            let mut req = http()
                .post(url("/_devstack/demo/send"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap_or_else(|e| panic!("send: {e}"))
        };
        let none = send(None, r#"{"title":"x"}"#).await;
        assert_eq!(none.status(), 401);
        assert_eq!(
            none.text().await.unwrap_or_default(),
            r#"{"message":"Unauthorized"}"#
        );
        assert_eq!(send(Some("not.a.token".into()), "{}").await.status(), 401);

        let user = session("?user=bob").await["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let bad = send(Some(user.clone()), r#"{"nope":1}"#).await;
        assert_eq!(bad.status(), 400);

        // The fixture's POST /v1/notifications echoes the event the api function would get.
        let ok = send(
            Some(user),
            r#"{"title":"Hello","body":"there","type":"demo.ping","channels":["IN_APP"]}"#,
        )
        .await;
        assert_eq!(ok.status(), 200);
        let out: Value = ok.json().await.unwrap_or_default();
        let event = &out["event"];
        assert_eq!(event["routeKey"], "POST /v1/notifications");
        let jwt = &event["requestContext"]["authorizer"]["jwt"];
        assert_eq!(jwt["claims"]["sub"], "devstack-demo");
        assert_eq!(jwt["scopes"], serde_json::json!(["notifications:write"]));
        let sent: Value =
            serde_json::from_str(event["body"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            sent,
            serde_json::json!({"userId":"bob","type":"demo.ping","title":"Hello","body":"there","channels":["IN_APP"]})
        );
    })
    .await;
}
