//! The WebSocket gateway with a real WebSocket client and the real `aws-sdk-apigatewaymanagement`
//! client: `$connect` acceptance, route selection, `@connections` (with the stage in the path),
//! and API Gateway's limits.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_apigatewaymanagement::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_apigatewaymanagement::error::BoxError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use common::{bounded, stack};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(query: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{}/{}{query}", stack().ws, stack().stage);
    tokio_tungstenite::connect_async(url).await.map(|(s, _)| s)
}

/// The next text frame (skipping control frames), within 5 s.
async fn next_text(ws: &mut Socket) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// The close code the server sends, within `secs`.
async fn close_code(ws: &mut Socket, secs: u64) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(secs), ws.next())
            .await
            .ok()?
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct RecordPaths(Arc<Mutex<Vec<String>>>);

impl Intercept for RecordPaths {
    fn name(&self) -> &'static str {
        "RecordPaths"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(mut p) = self.0.lock() {
            p.push(format!(
                "{} {}",
                ctx.request().method(),
                ctx.request().uri()
            ));
        }
        Ok(())
    }
}

fn management_client(paths: RecordPaths) -> aws_sdk_apigatewaymanagement::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{}/{}", stack().ws, stack().stage))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "devstack", "devstack", None, None, "static",
        ))
        .http_client(http)
        .interceptor(paths)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

#[tokio::test]
async fn connections_api_through_the_real_sdk_keeps_the_stage_in_the_path() {
    bounded(60, async {
        let mut ws = open("?token=abc")
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        ws.send(Message::Text(r#"{"action":"echo","whoami":true}"#.into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        let id = next_text(&mut ws).await.unwrap_or_default();
        assert_eq!(id.len(), 16, "connection id {id:?}");
        assert!(id.ends_with('='), "connection id {id:?}");

        let paths = RecordPaths::default();
        let client = management_client(paths.clone());
        client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(r#"{"type":"hello"}"#))
            .send()
            .await
            .unwrap_or_else(|e| panic!("post: {e:?}"));
        assert_eq!(
            next_text(&mut ws).await.as_deref(),
            Some(r#"{"type":"hello"}"#)
        );
        let recorded = paths.0.lock().map(|p| p.clone()).unwrap_or_default();
        let expected_path = format!("/{}/@connections/", stack().stage);
        assert!(
            recorded
                .first()
                .is_some_and(|r| r.starts_with("POST ") && r.contains(&expected_path)),
            "{recorded:?}"
        );

        let described = client
            .get_connection()
            .connection_id(&id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get: {e:?}"));
        assert_eq!(
            described.identity().map(|i| i.source_ip()),
            Some(Some("127.0.0.1"))
        );
        assert!(described.connected_at().is_some());

        client
            .delete_connection()
            .connection_id(&id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete: {e:?}"));
        assert!(close_code(&mut ws, 5).await.is_some());
        let gone = client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new("late"))
            .send()
            .await;
        let err = gone.err().map(|e| e.into_service_error());
        assert!(
            err.as_ref().is_some_and(|e| e.is_gone_exception()),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn connect_is_refused_unless_the_function_answers_200() {
    bounded(60, async {
        match open("?deny=1").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401)
            }
            other => panic!(
                "expected a refused handshake, got {:?}",
                other.map(|_| "a socket")
            ),
        }
        let wrong_stage =
            tokio_tungstenite::connect_async(format!("ws://{}/prod", stack().ws)).await;
        assert!(wrong_stage.is_err());
    })
    .await;
}

#[tokio::test]
async fn frames_over_32_kb_close_with_1009() {
    bounded(60, async {
        let mut ws = open("").await.unwrap_or_else(|e| panic!("connect: {e}"));
        // A frame just under the limit passes (one-way $default: no reply expected).
        ws.send(Message::Text("x".repeat(31 * 1024).into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        ws.send(Message::Text(
            format!(r#"{{"action":"echo","pad":"{}"}}"#, "y".repeat(33 * 1024)).into(),
        ))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(close_code(&mut ws, 5).await, Some(CloseCode::Size));
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    bounded(60, async {
        // This binary's stack runs with --ws-idle-timeout 2.
        let mut ws = open("").await.unwrap_or_else(|e| panic!("connect: {e}"));
        let started = std::time::Instant::now();
        assert_eq!(close_code(&mut ws, 10).await, Some(CloseCode::Away));
        let idle = started.elapsed();
        assert!(
            idle >= Duration::from_millis(1900) && idle < Duration::from_secs(6),
            "closed after {idle:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn messages_route_by_action_with_default_fallback() {
    bounded(60, async {
        let mut ws = open("").await.unwrap_or_else(|e| panic!("connect: {e}"));
        ws.send(Message::Text(r#"{"action":"echo","n":1}"#.into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(
            next_text(&mut ws).await.as_deref(),
            Some(r#"{"action":"echo","n":1}"#)
        );
        // No route "nope": $default (one-way) handles it and nothing comes back; echo still works after.
        ws.send(Message::Text(r#"{"action":"nope"}"#.into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        ws.send(Message::Text(r#"{"action":"echo","n":2}"#.into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(
            next_text(&mut ws).await.as_deref(),
            Some(r#"{"action":"echo","n":2}"#)
        );
    })
    .await;
}
