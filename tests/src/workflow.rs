//! The timed workflows (escalation, digests) in process: the api, push and ws functions over one
//! [`TestEnv`], email to a real SMTP server ([`SmtpSink`]), WebSocket replies captured where
//! `@connections` would be. Time is driven, not waited for: the push function's drain runs at
//! the instant a test names ([`Workflow::drain_at`]), so no test depends on machine speed.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use shared::auth::JwksVerifier;
use shared::config::{Env, JwtSettings, RealtimeSettings, SenderSettings};
use shared::outbox::Publisher;
use shared::protocol::{Envelope, Topic};
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::{Connection, ConnectionRegistry, RateLimiter};

use crate::capture::CaptureServer;
use crate::http::{Call, Reply};
use crate::smtp_sink::SmtpSink;
use crate::TestEnv;

/// One environment with email configured (to `sink`).
pub struct Workflow {
    pub env: TestEnv,
    pub api: api::Deps,
    pub push: push::Deps,
    pub ws: ws::Deps,
    pub sink: SmtpSink,
    capture: CaptureServer,
}

impl Workflow {
    /// `None` (after printing why) when Redis or the SMTP server is unavailable.
    pub async fn new() -> Option<Workflow> {
        let sink = SmtpSink::start()?;
        let env = TestEnv::new().await?;
        let settings = SenderSettings::from_env(&Env::from_pairs([
            ("SMTP_URL", sink.url.as_str()),
            ("EMAIL_FROM", "Herald <notify@herald.test>"),
            ("UNSUBSCRIBE_SECRET", "test-unsubscribe-secret-0123456789"),
            ("PUBLIC_API_URL", "https://api.herald.test"),
            ("PUSH_RETRY_BACKOFF_MS", "50"),
        ]))
        .unwrap_or_else(|e| panic!("settings: {e}"));
        let mut api = env.api_with(TestEnv::unlimited(), env.bus());
        api.channels = settings.clone();
        let push = push::Deps::new(env.conn.clone(), env.keys.clone(), env.bus(), settings)
            .unwrap_or_else(|e| panic!("push deps: {e}"));
        let capture = CaptureServer::start().await;
        let vars = Env::from_pairs([
            ("CONNECTIONS_URL", format!("{}/live", capture.url)),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]);
        let realtime = RealtimeSettings::from_env(&vars).unwrap_or_else(|e| panic!("{e}"));
        let connections =
            ConnectionsApi::from_env(&vars, &realtime).unwrap_or_else(|e| panic!("{e}"));
        let inbox = TestEnv::unlimited();
        let store = env.store(inbox.clone());
        let ws = ws::Deps {
            publisher: Publisher::new(env.bus(), store.clone()),
            limiter: RateLimiter::new(env.conn.clone(), env.keys.clone(), &inbox),
            store,
            fanout: Fanout::new(
                ConnectionRegistry::new(env.conn.clone(), env.keys.clone()),
                connections,
                4,
            ),
            verifier: JwksVerifier::new(JwtSettings {
                issuer: "https://issuer.example".into(),
                audience: "herald".into(),
                jwks_url: "http://127.0.0.1:9/unused".into(),
                jwks_ttl: std::time::Duration::MAX,
                tenant_claim: Default::default(),
            }),
        };
        Some(Workflow {
            env,
            api,
            push,
            ws,
            sink,
            capture,
        })
    }

    /// `POST /v1/notifications` from service `svc` with these fields (`type` defaults to
    /// `comment`, `body` to empty).
    pub async fn create(&self, user: &str, fields: Value) -> Reply {
        let mut body = json!({"userId": user, "type": "comment", "title": "Hello", "body": ""});
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        Call::post("/v1/notifications")
            .service("svc")
            .json(&body)
            .send(&self.api)
            .await
    }

    /// Gives `user` an email address.
    pub async fn email(&self, user: &str) {
        let r = Call::put(&format!("/v1/users/{user}/contacts"))
            .service("svc")
            .json(&json!({"email": format!("{user}@example.com")}))
            .send(&self.api)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// The `notification.created` and `notification.updated` envelopes committed for `user`
    /// after `since`, oldest first (what the relay publishes and `delivery` routes).
    pub async fn changes(&self, user: &str, since: u64) -> Vec<Envelope> {
        let r = Call::get("/v1/changes")
            .user(user)
            .query("since", &since.to_string())
            .send(&self.api)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_value(r.body["changes"].clone())
            .unwrap_or_else(|e| panic!("changes {}: {e}", r.body))
    }

    /// Runs the push function on these envelopes as one Kafka batch from `push-notifications`.
    pub async fn push_batch(&self, envelopes: &[&Envelope]) -> push::Stats {
        let records: Vec<Value> = envelopes
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({"topic": "push-notifications", "partition": 1, "offset": 100 + i,
                       "timestamp": 0, "timestampType": "CREATE_TIME",
                       "key": STANDARD.encode(&e.user_id), "value": STANDARD.encode(e.encode()),
                       "headers": []})
            })
            .collect();
        let event: KafkaEvent = serde_json::from_value(json!({
            "eventSource": "SelfManagedKafka",
            "records": {"push-notifications-1": records}
        }))
        .unwrap_or_else(|e| panic!("event: {e}"));
        let (response, stats) = push::process_batch(&self.push, &event, Utc::now()).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "no infrastructure failure expected: {response:?}"
        );
        stats
    }

    /// Runs the push function's scheduled drain as if at `at`.
    pub async fn drain_at(&self, at: DateTime<Utc>) -> push::Stats {
        push::drain_due(&self.push, at).await
    }

    /// The outcomes on `notification-delivery`, as (channel, status, reason), sorted.
    pub async fn outcomes(&self, expected: usize) -> Vec<(String, String, String)> {
        let mut rows: Vec<_> = self
            .env
            .consume(Topic::NotificationDelivery, expected)
            .await
            .iter()
            .map(|r| {
                let o = r.json();
                let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
                (s("channel"), s("status"), s("reason"))
            })
            .collect();
        rows.sort();
        rows
    }

    /// `GET /v1/notifications/{id}/deliveries` as its owner.
    pub async fn deliveries(&self, user: &str, id: &str) -> Value {
        let r = Call::get(&format!("/v1/notifications/{id}/deliveries"))
            .user(user)
            .send(&self.api)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Opens a WebSocket connection for `user` (registered as `$connect` would).
    pub async fn connect(&self, user: &str, connection_id: &str) {
        let connection = Connection {
            id: connection_id.into(),
            connected_at_ms: Utc::now().timestamp_millis(),
            token_expires_ms: i64::MAX,
        };
        self.ws
            .fanout
            .registry()
            .register(user, &connection)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sends one frame from a connection through the ws function; returns what was posted back
    /// to that connection.
    pub async fn ws_send(&self, connection_id: &str, frame: Value) -> Vec<Value> {
        let mut event: ApiGatewayWebsocketProxyRequest = serde_json::from_str(include_str!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../events/apigw-ws-sync.json")
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        event.request_context.connection_id = Some(connection_id.to_owned());
        event.request_context.route_key = frame["action"].as_str().map(str::to_owned);
        event.body = Some(frame.to_string());
        let before = self.capture.requests().len();
        ws::handle(&self.ws, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.capture.requests()[before..]
            .iter()
            .map(|r| r.json())
            .collect()
    }
}

/// A fresh user id.
pub fn user(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}
