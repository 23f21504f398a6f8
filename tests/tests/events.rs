//! The payload files in `events/`, the same ones `sam local invoke -e` and
//! `cargo lambda invoke --data-file` use:
//!
//! - each round-trips through its `aws_lambda_events` type without losing a field, so what the
//!   file shows is what the function receives;
//! - each drives its function's handler against real Redis and a real Kafka-protocol broker and
//!   gets the answer its route promises.
//!
//! Both tests walk the directory and match file names, so a file no case knows fails the suite
//! instead of going unchecked.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::kafka::KafkaEvent;
use herald_tests::capture::CaptureServer;
use herald_tests::kafka::{broker_kind, consume};
use herald_tests::{Call, Reply, TestEnv};
use lambda_http::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use shared::auth::JwksVerifier;
use shared::config::{Env, InboxSettings, JwtSettings, RealtimeSettings};
use shared::outbox::Publisher;
use shared::protocol::Topic;
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::{Connection, ConnectionRegistry, RateLimiter};

/// The notification id the get/patch/delete files carry; the tests swap in a real one.
const PLACEHOLDER_ID: &str = "0190f3a2-0000-7000-8000-000000000001";

/// Which function a file feeds, by its `<source>-` prefix.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// `apigw-http-<case>.json`: API Gateway HTTP API, payload 2.0 → `api`.
    ApiGatewayHttp(&'a str),
    /// `eventbridge-<case>.json`: an EventBridge event → a scheduled function.
    EventBridge(&'a str),
    /// `apigw-ws-<case>.json`: API Gateway WebSocket API → `ws`.
    ApiGatewayWs(&'a str),
    /// `kafka-<case>.json`: a Kafka trigger (MSK or self-managed) → `delivery`, or `analytics`
    /// when the case ends with `notification-delivery` / `notification-analytics`, or `push`
    /// when it ends with `push-notifications` (`eventbridge-push-retry-schedule.json` → `push`
    /// too: its retry-schedule drain).
    Kafka(&'a str),
}

fn source_of(name: &str) -> Source<'_> {
    let Some(stem) = name.strip_suffix(".json") else {
        panic!("events/{name}: every file in events/ must be a .json payload");
    };
    if let Some(case) = stem.strip_prefix("apigw-http-") {
        Source::ApiGatewayHttp(case)
    } else if let Some(case) = stem.strip_prefix("eventbridge-") {
        Source::EventBridge(case)
    } else if let Some(case) = stem.strip_prefix("apigw-ws-") {
        Source::ApiGatewayWs(case)
    } else if let Some(case) = stem.strip_prefix("kafka-") {
        Source::Kafka(case)
    } else {
        panic!("events/{name}: no test knows this source; add it to tests/tests/events.rs")
    }
}

/// Every file in `events/` as (file name, text), in name order.
fn event_files() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut files: Vec<(String, String)> = entries
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (name, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no events", dir.display());
    files
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn every_event_round_trips_through_its_aws_lambda_events_type_without_losing_a_field() {
    for (name, text) in event_files() {
        match source_of(&name) {
            Source::ApiGatewayHttp(_) => round_trip::<ApiGatewayV2httpRequest>(&name, &text),
            Source::EventBridge(_) => round_trip::<EventBridgeEvent>(&name, &text),
            Source::ApiGatewayWs(_) => round_trip::<ApiGatewayWebsocketProxyRequest>(&name, &text),
            Source::Kafka(_) => round_trip::<KafkaEvent>(&name, &text),
        }
    }
}

/// file → `T` → JSON → `T` gives the same value, and the JSON written back still holds every
/// field of the file with its value (a field the type does not know would be dropped silently).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, text: &str) {
    let file: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name} is not JSON: {e}"));
    let typed: T = serde_json::from_str(text).unwrap_or_else(|e| {
        panic!(
            "events/{name} does not parse as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let written =
        serde_json::to_value(&typed).unwrap_or_else(|e| panic!("events/{name}: serialising: {e}"));
    let again: T = serde_json::from_value(written.clone())
        .unwrap_or_else(|e| panic!("events/{name}: reparsing what was written: {e}"));
    assert_eq!(
        typed, again,
        "events/{name}: deserialise → serialise → deserialise changed the value"
    );
    let mut lost = Vec::new();
    lost_fields(&file, &written, "", &mut lost);
    assert!(
        lost.is_empty(),
        "events/{name}: not kept by {}: {lost:#?}",
        std::any::type_name::<T>()
    );
}

/// The JSON paths of `original` that `written` does not reproduce. A null counts as absent, and
/// fields only `written` has (the type's defaults) are fine.
fn lost_fields(original: &Value, written: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, written) {
        (Value::Null, _) => {}
        (Value::Object(o), Value::Object(w)) => {
            for (key, value) in o {
                let at = format!("{path}.{key}");
                match w.get(key) {
                    Some(w) => lost_fields(value, w, &at, lost),
                    None if value.is_null() => {}
                    None => lost.push(format!("{at} is missing")),
                }
            }
        }
        (Value::Array(o), Value::Array(w)) if o.len() == w.len() => {
            for (i, (o, w)) in o.iter().zip(w).enumerate() {
                lost_fields(o, w, &format!("{path}[{i}]"), lost);
            }
        }
        (o, w) if o == w => {}
        // aws_lambda_events' QueryMap writes single values back as one-element lists (the
        // multi-value form); the value is kept.
        (o @ Value::String(_), Value::Array(w)) if w.len() == 1 && &w[0] == o => {}
        // Its MillisecondTimestamp writes the number AWS sends as a string; the value is kept.
        (Value::Number(o), Value::String(w)) if o.to_string() == *w => {}
        (o, w) => lost.push(format!("{path}: {o} became {w}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the handlers

#[tokio::test]
async fn every_event_drives_its_handler() {
    for (name, text) in event_files() {
        // A fresh key prefix and topic suffix per file: no case sees another's data.
        let Some(env) = TestEnv::new().await else {
            return;
        };
        match source_of(&name) {
            Source::ApiGatewayHttp(case) => drive_api(&env, &name, case, &text).await,
            Source::EventBridge("outbox-relay-schedule") => {
                drive_outbox_relay(&env, &name, &text).await
            }
            Source::EventBridge("push-retry-schedule") => {
                drive_push(&env, &name, &text, false).await
            }
            Source::EventBridge(_) => panic!(
                "events/{name}: no test drives this file; add a case to tests/tests/events.rs"
            ),
            Source::ApiGatewayWs(case) => drive_ws(&env, &name, case, &text).await,
            Source::Kafka(case)
                if case.ends_with("notification-delivery")
                    || case.ends_with("notification-analytics") =>
            {
                drive_analytics(&env, &name, case, &text).await
            }
            Source::Kafka(case) if case.ends_with("push-notifications") => {
                drive_push(&env, &name, &text, true).await
            }
            Source::Kafka(_) => drive_delivery(&env, &name, &text).await,
        }
    }
}

async fn drive_api(env: &TestEnv, name: &str, case: &str, text: &str) {
    let deps = env.api();
    let file: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name} is not JSON: {e}"));
    let user = file["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match case {
        "create-notification" => {
            let r = send(&deps, name, text).await;
            assert_eq!(r.status, 201, "events/{name}: {}", r.body);
            assert_eq!((r.body["userId"].as_str(), r.body["type"].as_str(), r.body["priority"].as_str()), (Some("alice"), Some("comment.reply"), Some("high")));
            let id = r.body["id"].as_str().unwrap_or_default();
            assert_eq!(r.header("location"), Some(format!("/v1/notifications/{id}").as_str()));
            let replay = send(&deps, name, text).await;
            assert_eq!((replay.status, replay.header("idempotent-replayed"), &replay.body["id"]), (201, Some("true"), &r.body["id"]), "the Idempotency-Key replays");
            let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
            let records = consume(&env.kafka, &topic, 1, Duration::from_secs(15), Duration::from_millis(300)).await;
            assert_eq!(records.len(), 1, "events/{name}: one record on {} ({})", topic, broker_kind());
            assert_eq!((records[0].key.as_str(), records[0].json()["type"].as_str()), ("alice", Some("NOTIFICATION_CREATED")));
        }
        "batch-create" => {
            let r = send(&deps, name, text).await;
            assert_eq!(r.status, 201, "events/{name}: {}", r.body);
            let recipients: Vec<&str> = r.body["items"].as_array().map(|a| a.iter().filter_map(|n| n["userId"].as_str()).collect()).unwrap_or_default();
            assert_eq!(recipients, ["alice", "bob", "carol"]);
            assert!(r.body.get("skipped").is_none(), "nobody is rate limited: {}", r.body);
        }
        "list-notifications" => {
            let read = seed(&deps, &user).await;
            let unread = seed(&deps, &user).await;
            let patched = Call::patch(&format!("/v1/notifications/{read}")).user(&user).json(&json!({"read": true})).send(&deps).await;
            assert_eq!(patched.status, 200);
            let r = send(&deps, name, text).await;
            assert_eq!(r.status, 200, "events/{name}: {}", r.body);
            let ids: Vec<&str> = r.body["items"].as_array().map(|a| a.iter().filter_map(|n| n["id"].as_str()).collect()).unwrap_or_default();
            assert_eq!(ids, [unread.as_str()], "status=unread lists only the unread one");
            assert_eq!(r.body["nextCursor"], Value::Null);
        }
        "get-notification" => {
            let id = seed(&deps, &user).await;
            let r = send(&deps, name, &with_id(name, text, &id)).await;
            assert_eq!((r.status, r.body["id"].as_str(), r.body["userId"].as_str()), (200, Some(id.as_str()), Some(user.as_str())), "events/{name}: {}", r.body);
        }
        "patch-notification" => {
            let id = seed(&deps, &user).await;
            let r = send(&deps, name, &with_id(name, text, &id)).await;
            assert_eq!((r.status, r.body["read"].as_bool(), r.body["seen"].as_bool()), (200, Some(true), Some(true)), "events/{name}: {}", r.body);
        }
        "delete-notification" => {
            let id = seed(&deps, &user).await;
            let r = send(&deps, name, &with_id(name, text, &id)).await;
            assert_eq!((r.status, r.raw.len()), (204, 0), "events/{name}: {}", r.body);
            let gone = Call::get(&format!("/v1/notifications/{id}")).user(&user).send(&deps).await;
            assert_eq!(gone.status, 404);
        }
        "mark-all-read" => {
            seed(&deps, &user).await;
            seed(&deps, &user).await;
            let r = send(&deps, name, text).await;
            assert_eq!((r.status, r.body["updated"].as_u64(), r.body["counts"]["unread"].as_u64()), (200, Some(2), Some(0)), "events/{name}: {}", r.body);
        }
        "counts" => {
            seed(&deps, &user).await;
            let r = send(&deps, name, text).await;
            assert_eq!((r.status, r.body["unread"].as_u64(), r.body["total"].as_u64(), r.body["version"].as_u64()), (200, Some(1), Some(1), Some(1)), "events/{name}: {}", r.body);
        }
        "changes" => {
            let id = seed(&deps, &user).await;
            let r = send(&deps, name, text).await;
            assert_eq!((r.status, r.body["upTo"].as_u64(), r.body["hasMore"].as_bool()), (200, Some(1), Some(false)), "events/{name}: {}", r.body);
            let change = &r.body["changes"][0];
            assert_eq!((change["type"].as_str(), change["payload"]["notification"]["id"].as_str()), (Some("NOTIFICATION_CREATED"), Some(id.as_str())), "{change}");
        }
        "get-preferences" => {
            let r = send(&deps, name, text).await;
            assert_eq!(r.status, 200, "events/{name}: {}", r.body);
            assert_eq!((&r.body["default"], &r.body["types"]), (&json!({}), &json!({})), "a new user allows everything: {}", r.body);
        }
        "put-preferences" => {
            let r = send(&deps, name, text).await;
            assert_eq!((r.status, r.body["quietHours"]["timezone"].as_str()), (200, Some("Europe/Paris")), "events/{name}: {}", r.body);
            let stored = Call::get("/v1/preferences").user(&user).send(&deps).await;
            assert_eq!(stored.body, r.body, "what was put is what is read back");
        }
        "health" => {
            let r = send(&deps, name, text).await;
            assert_eq!((r.status, &r.body), (200, &json!({"status": "ok"})), "events/{name}: public liveness says nothing else");
        }
        "openapi" => {
            let r = send(&deps, name, text).await;
            assert_eq!(r.status, 200, "events/{name}: {}", r.body);
            assert!(r.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", r.body["openapi"]);
            assert!(r.body["paths"].get("/v1/notifications").is_some(), "the document lists /v1/notifications");
        }
        "analytics" => {
            let r = send(&deps, name, text).await;
            assert_eq!((r.status, r.body["channel"].as_str(), r.body["days"].as_array().map(Vec::len)), (200, Some("IN_APP"), Some(1)), "events/{name}: {}", r.body);
            assert_eq!(r.body["totals"]["outcomes"]["sent"], 0, "nothing was counted here");
        }
        "notification-deliveries" => {
            let id = seed(&deps, &user).await;
            let r = send(&deps, name, &with_id(name, text, &id)).await;
            assert_eq!((r.status, r.body["type"].as_str(), &r.body["deliveries"]), (200, Some("comment.reply"), &json!([])), "events/{name}: the owner's funnel, empty until counted: {}", r.body);
        }
        "click-notification" => {
            let id = seed(&deps, &user).await;
            let r = send(&deps, name, &with_id(name, text, &id)).await;
            assert_eq!(r.status, 202, "events/{name}: {}", r.body);
            let topic = Topic::NotificationAnalytics.name_with(&env.kafka.topic_suffix);
            let records = consume(&env.kafka, &topic, 1, Duration::from_secs(15), Duration::from_millis(300)).await;
            assert_eq!(records.len(), 1, "events/{name}: one click on {topic}");
            assert_eq!((records[0].json()["type"].as_str(), records[0].json()["payload"]["id"].as_str()), (Some("NOTIFICATION_CLICKED"), Some(id.as_str())));
        }
        _ => panic!("events/{name}: no test drives this file; add a case to drive_api in tests/tests/events.rs"),
    }
}

async fn drive_outbox_relay(env: &TestEnv, name: &str, text: &str) {
    let event: EventBridgeEvent =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name}: {e}"));
    // A change Kafka never acknowledged: created while the broker is unreachable.
    let down = env.api_with(InboxSettings::default(), env.dead_bus());
    let created = seed(&down, "alice").await;
    let relay = env.relay();
    let report = outbox_relay::handle(&relay, LambdaEvent::new(event.clone(), Context::default()))
        .await
        .unwrap_or_else(|e| panic!("events/{name}: relay: {e}"));
    assert_eq!(
        (
            report.ran,
            report.published,
            report.failed,
            report.backlog,
            report.users_cleared
        ),
        (true, 1, 0, 0, 1),
        "events/{name}: {report:?}"
    );
    let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
    let records = consume(
        &env.kafka,
        &topic,
        1,
        Duration::from_secs(15),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        records.len(),
        1,
        "events/{name}: the relayed change on {topic} ({})",
        broker_kind()
    );
    assert_eq!(
        records[0].json()["payload"]["notification"]["id"].as_str(),
        Some(created.as_str())
    );
    let again = outbox_relay::handle(&relay, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("events/{name}: relay: {e}"));
    assert_eq!(
        (again.ran, again.published),
        (true, 0),
        "a second run publishes nothing: {again:?}"
    );
}

/// The `@connections` client aimed at `capture`, signing with placeholder credentials.
fn fanout(env: &TestEnv, capture: &CaptureServer) -> Fanout {
    let vars = Env::from_pairs([
        ("CONNECTIONS_URL", format!("{}/live", capture.url)),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]);
    let settings = RealtimeSettings::from_env(&vars).unwrap_or_else(|e| panic!("{e}"));
    let api = ConnectionsApi::from_env(&vars, &settings).unwrap_or_else(|e| panic!("{e}"));
    Fanout::new(
        ConnectionRegistry::new(env.conn.clone(), env.keys.clone()),
        api,
        4,
    )
}

/// Placeholder in `apigw-ws-connect.json`, replaced by a token the test's issuer signs.
const PLACEHOLDER_TOKEN: &str = "REPLACED-BY-TESTS-WITH-A-SIGNED-JWT";

async fn drive_ws(env: &TestEnv, name: &str, case: &str, text: &str) {
    let capture = CaptureServer::start().await;
    let fanout = fanout(env, &capture);
    // A local issuer (devstack's key code) with its JWKS handed to the verifier.
    let key_dir =
        std::env::temp_dir().join(format!("herald-events-{}", uuid::Uuid::new_v4().simple()));
    let issuer =
        devstack::jwt::Issuer::load_or_create(&key_dir, "https://issuer.example", "herald")
            .unwrap_or_else(|e| panic!("{e}"));
    let jwks = serde_json::from_value(issuer.jwks()).unwrap_or_else(|e| panic!("{e}"));
    let verifier = JwksVerifier::with_keys(
        JwtSettings {
            issuer: "https://issuer.example".into(),
            audience: "herald".into(),
            jwks_url: "http://127.0.0.1:9/unused".into(),
            jwks_ttl: std::time::Duration::MAX,
            tenant_claim: Default::default(),
        },
        jwks,
    );
    let store = env.store(InboxSettings::default());
    let deps = ws::Deps {
        publisher: Publisher::new(env.bus(), store.clone()),
        limiter: RateLimiter::new(env.conn.clone(), env.keys.clone(), store.settings()),
        store,
        fanout: fanout.clone(),
        verifier,
    };
    let event: ApiGatewayWebsocketProxyRequest =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name}: {e}"));
    let connection_id = event
        .request_context
        .connection_id
        .clone()
        .unwrap_or_default();
    let invoke = |event: ApiGatewayWebsocketProxyRequest| async {
        ws::handle(&deps, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap_or_else(|e| panic!("events/{name}: {e}"))
            .status_code
    };
    let registered = || async {
        fanout
            .registry()
            .connections("alice")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    let register = || async {
        let connection = Connection {
            id: connection_id.clone(),
            connected_at_ms: chrono::Utc::now().timestamp_millis(),
            token_expires_ms: i64::MAX,
        };
        fanout
            .registry()
            .register("alice", &connection)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    match case {
        "connect" => {
            assert!(text.contains(PLACEHOLDER_TOKEN), "events/{name} should carry {PLACEHOLDER_TOKEN}");
            let token = issuer.token("alice", &[], Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
            let signed: ApiGatewayWebsocketProxyRequest = serde_json::from_str(&text.replace(PLACEHOLDER_TOKEN, &token)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(invoke(event).await, 401, "events/{name}: the placeholder is not a token");
            assert!(registered().await.is_empty());
            assert_eq!(invoke(signed).await, 200, "events/{name}");
            assert_eq!(registered().await, std::slice::from_ref(&connection_id), "the connection is registered for the token's subject");
        }
        "disconnect" => {
            register().await;
            assert_eq!(invoke(event).await, 200, "events/{name}");
            assert!(registered().await.is_empty(), "events/{name}: the connection is gone");
        }
        "sync" => {
            register().await;
            let api = env.api();
            seed(&api, "alice").await;
            seed(&api, "alice").await;
            assert_eq!(invoke(event).await, 200, "events/{name}");
            let posts = capture.requests();
            assert_eq!(posts.len(), 1, "events/{name}: one sync.result page: {posts:?}");
            assert_eq!((posts[0].method.as_str(), posts[0].path.as_str()), ("POST", format!("/live/@connections/{}", connection_id.replace('=', "%3D")).as_str()), "the stage is in the path");
            let page = posts[0].json();
            assert_eq!((page["type"].as_str(), page["upTo"].as_u64(), page["more"].as_bool()), (Some("sync.result"), Some(2), Some(false)), "{page}");
            assert_eq!(page["changes"].as_array().map(Vec::len), Some(2));
        }
        _ => panic!("events/{name}: no test drives this file; add a case to drive_ws in tests/tests/events.rs"),
    }
    let _ = std::fs::remove_dir_all(&key_dir);
}

async fn drive_delivery(env: &TestEnv, name: &str, text: &str) {
    let capture = CaptureServer::start().await;
    let fanout = fanout(env, &capture);
    let connection = Connection {
        id: "Pq3dFe1ZoAMCJ0Q=".into(),
        connected_at_ms: chrono::Utc::now().timestamp_millis(),
        token_expires_ms: i64::MAX,
    };
    fanout
        .registry()
        .register("alice", &connection)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deps = delivery::Deps {
        fanout,
        bus: env.bus(),
        trigger: Default::default(),
    };
    let event: KafkaEvent =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name}: {e}"));
    let response = delivery::handle(&deps, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("events/{name}: {e}"));
    assert!(
        response.batch_item_failures.is_empty(),
        "events/{name}: {response:?}"
    );
    let posts = capture.requests();
    assert_eq!(
        posts.len(),
        1,
        "events/{name}: the frame went to alice's one connection"
    );
    let frame = posts[0].json();
    assert_eq!(
        (
            frame["type"].as_str(),
            frame["seq"].as_u64(),
            frame["notification"]["title"].as_str()
        ),
        (
            Some("notification.created"),
            Some(1),
            Some("Bob replied to your comment")
        ),
        "{frame}"
    );
    let outcomes = consume(
        &env.kafka,
        &Topic::NotificationDelivery.name_with(&env.kafka.topic_suffix),
        1,
        Duration::from_secs(15),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(outcomes.len(), 1, "events/{name}: one IN_APP outcome");
    let outcome = outcomes[0].json();
    assert_eq!(
        (
            outcome["channel"].as_str(),
            outcome["status"].as_str(),
            outcomes[0].key.as_str()
        ),
        (
            Some("IN_APP"),
            Some("sent"),
            "0190f3a2-0000-7000-8000-000000000001"
        ),
        "{outcome}"
    );
    let routed = consume(
        &env.kafka,
        &Topic::PushNotifications.name_with(&env.kafka.topic_suffix),
        1,
        Duration::from_secs(15),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        routed.len(),
        1,
        "events/{name}: EMAIL is routed to push-notifications"
    );
    assert_eq!(
        routed[0].headers.get("idempotency-key").map(Vec::as_slice),
        Some(&b"reply-42"[..]),
        "the Idempotency-Key travels on"
    );
}

/// The analytics files: the delivery outcomes of the placeholder notification, and alice's
/// engagement with it. Counted once (again: nothing), and visible in the API.
async fn drive_analytics(env: &TestEnv, name: &str, case: &str, text: &str) {
    // The files name the production topics (no test suffix).
    let deps = analytics::Deps::new(shared::store::AnalyticsStore::new(
        env.conn.clone(),
        env.keys.clone(),
        shared::config::AnalyticsSettings::default(),
    ));
    let api = env.api();
    let event: KafkaEvent =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name}: {e}"));
    if case.ends_with("notification-analytics") {
        // Engagement names only the notification: its type comes from its history here (the
        // inbox of this test has no such id), which an IN_APP outcome starts.
        let sent = json!({"v":1,"id":"0190f3a2-0000-7000-8000-0000000001ff","notificationId":PLACEHOLDER_ID,"userId":"alice","notificationType":"comment.reply","channel":"IN_APP","status":"sent","at":"2026-11-29T12:00:00.004Z","latencyMs":4});
        let outcome: KafkaEvent = serde_json::from_value(json!({"eventSource": "SelfManagedKafka", "records": {"notification-delivery-0": [
            {"topic": "notification-delivery", "partition": 0, "offset": 0, "timestamp": 0, "timestampType": "CREATE_TIME", "key": null, "value": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sent.to_string()), "headers": []}
        ]}})).unwrap_or_else(|e| panic!("{e}"));
        let (response, _) = analytics::count_batch(&deps, &outcome).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let invoke = |event: KafkaEvent| async {
        analytics::handle(&deps, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap_or_else(|e| panic!("events/{name}: {e}"))
    };
    let response = invoke(event.clone()).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "events/{name}: {response:?}"
    );
    let report = || async {
        Call::get("/v1/analytics")
            .user("dashboard")
            .scope("analytics:read")
            .query("from", "2026-11-29")
            .query("to", "2026-11-29")
            .send(&api)
            .await
    };
    let first = report().await;
    assert_eq!(first.status, 200, "{}", first.body);
    let totals = &first.body["totals"]["byType"]["comment.reply"];
    if case.ends_with("notification-delivery") {
        assert_eq!(
            (
                totals["sent"].as_u64(),
                first.body["totals"]["byChannel"]["EMAIL"]["sent"].as_u64(),
                first.body["totals"]["uniqueRecipients"].as_u64()
            ),
            (Some(2), Some(1), Some(1)),
            "events/{name}: {}",
            first.body
        );
    } else {
        assert_eq!(
            (
                totals["seen"].as_u64(),
                totals["read"].as_u64(),
                totals["clicked"].as_u64()
            ),
            (Some(1), Some(1), Some(1)),
            "events/{name}: {}",
            first.body
        );
    }
    // Lambda delivering the same batch again changes nothing.
    assert!(invoke(event).await.batch_item_failures.is_empty());
    assert_eq!(
        report().await.body,
        first.body,
        "events/{name}: a redelivery counts nothing"
    );
    let funnel = Call::get(&format!("/v1/notifications/{PLACEHOLDER_ID}/deliveries"))
        .user("alice")
        .send(&api)
        .await;
    let statuses: Vec<&str> = funnel.body["deliveries"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["status"].as_str()).collect())
        .unwrap_or_default();
    let expected: &[&str] = if case.ends_with("notification-delivery") {
        &["sent", "sent"]
    } else {
        &["sent", "seen", "read", "clicked"]
    };
    assert_eq!(
        (funnel.status, statuses.as_slice()),
        (200, expected),
        "events/{name}: {}",
        funnel.body
    );
}

/// Creates a notification for `user` through the API and returns its id.
async fn seed(deps: &api::Deps, user: &str) -> String {
    let body = json!({"userId": user, "type": "comment.reply", "title": "seeded by tests/tests/events.rs", "body": ""});
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&body)
        .send(deps)
        .await;
    assert_eq!(
        r.status, 201,
        "seeding a notification for {user}: {}",
        r.body
    );
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("created notification has no id: {}", r.body))
        .to_owned()
}

/// The file with its placeholder notification id (rawPath, requestContext.http.path and
/// pathParameters) replaced by `id`.
fn with_id(name: &str, text: &str, id: &str) -> String {
    assert!(
        text.contains(PLACEHOLDER_ID),
        "events/{name} should carry the placeholder id {PLACEHOLDER_ID}"
    );
    text.replace(PLACEHOLDER_ID, id)
}

/// Parses the file as API Gateway would deliver it and calls `api::handle`.
async fn send(deps: &api::Deps, name: &str, event: &str) -> Reply {
    let request = lambda_http::request::from_str(event)
        .unwrap_or_else(|e| panic!("events/{name}: lambda_http cannot parse it: {e}"));
    let response = match api::handle(deps, request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let raw = match body {
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => vec![],
    };
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        raw,
    }
}

/// `push`: a `push-notifications` batch (no channel configured here, so every off-app channel
/// the notification asks for is recorded `suppressed`/`not-configured`, nothing fails), or the
/// scheduled drain of the retry schedule (nothing due).
async fn drive_push(env: &TestEnv, name: &str, text: &str, kafka: bool) {
    let payload: KafkaEvent =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("events/{name}: {e}"));
    let deps = push::Deps::new(
        env.conn.clone(),
        env.keys.clone(),
        env.bus(),
        shared::config::SenderSettings::default(),
    )
    .unwrap_or_else(|e| panic!("events/{name}: {e}"));
    let answer = push::handle(&deps, LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("events/{name}: push: {e}"));
    if kafka {
        assert_eq!(
            answer,
            serde_json::json!({"batchItemFailures": []}),
            "events/{name}"
        );
        let outcomes = env
            .consume(shared::protocol::Topic::NotificationDelivery, 3)
            .await;
        let mut got: Vec<(String, String)> = outcomes
            .iter()
            .map(|r| {
                let o = r.json();
                (
                    o["channel"].as_str().unwrap_or_default().to_owned(),
                    format!(
                        "{}/{}",
                        o["status"].as_str().unwrap_or_default(),
                        o["reason"].as_str().unwrap_or_default()
                    ),
                )
            })
            .collect();
        got.sort();
        let expected: Vec<(String, String)> = ["EMAIL", "PUSH", "SMS"]
            .iter()
            .map(|c| ((*c).to_owned(), "suppressed/not-configured".to_owned()))
            .collect();
        assert_eq!(got, expected, "events/{name}");
    } else {
        assert_eq!(
            answer["records"], 0,
            "events/{name}: nothing is due: {answer}"
        );
    }
}
