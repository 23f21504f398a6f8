//! The `@connections` client (the real `aws-sdk-apigatewaymanagement`) against a local endpoint
//! that answers as API Gateway does: how each answer is classified, that throttling is retried
//! with backoff, and the request's path (stage included).

use herald_tests::capture::CaptureServer;
use shared::config::{Env, RealtimeSettings};
use shared::realtime::{ConnectionsApi, PostOutcome};

fn client(url: &str, retries: &str) -> ConnectionsApi {
    let vars = Env::from_pairs([
        ("CONNECTIONS_URL", format!("{url}/live")),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("WS_POST_RETRIES", retries.into()),
    ]);
    let settings = RealtimeSettings::from_env(&vars).unwrap_or_else(|e| panic!("{e}"));
    ConnectionsApi::from_env(&vars, &settings).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn answers_are_classified_and_throttling_is_retried() {
    let server = CaptureServer::scripted(vec![
        (429, "LimitExceededException"),
        (429, "LimitExceededException"),
        // then 200
    ])
    .await;
    let api = client(&server.url, "3");
    assert_eq!(
        api.post("c1=", b"{\"type\":\"pong\"}").await,
        PostOutcome::Sent
    );
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        3,
        "two throttled attempts, then the one that went through"
    );
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/live/@connections/c1%3D")
        );
        assert_eq!(r.body, b"{\"type\":\"pong\"}");
    }

    let gone = CaptureServer::scripted(vec![(410, "GoneException")]).await;
    assert_eq!(
        client(&gone.url, "3").post("c2", b"{}").await,
        PostOutcome::Gone
    );
    let big = CaptureServer::scripted(vec![(413, "PayloadTooLargeException")]).await;
    assert_eq!(
        client(&big.url, "3").post("c3", b"{}").await,
        PostOutcome::TooLarge
    );
    let forbidden = CaptureServer::scripted(vec![(403, "ForbiddenException")]).await;
    assert!(matches!(
        client(&forbidden.url, "3").post("c4", b"{}").await,
        PostOutcome::Failed(_)
    ));
    // Throttled beyond the retries: a failure, after exactly 1 + retries attempts.
    let throttled = CaptureServer::scripted(vec![(429, "LimitExceededException"); 5]).await;
    assert!(matches!(
        client(&throttled.url, "1").post("c5", b"{}").await,
        PostOutcome::Failed(_)
    ));
    assert_eq!(throttled.requests().len(), 2);

    // Closing: DELETE on the same path; a connection already gone counts as closed.
    let closing = CaptureServer::scripted(vec![(410, "GoneException")]).await;
    let api = client(&closing.url, "0");
    assert_eq!(api.close("c6").await, Ok(()));
    assert_eq!(api.close("c6").await, Ok(()));
    let deletes = closing.requests();
    assert_eq!(deletes.len(), 2);
    assert_eq!(
        (deletes[0].method.as_str(), deletes[0].path.as_str()),
        ("DELETE", "/live/@connections/c6")
    );
}
