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

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use herald_tests::kafka::{broker_kind, consume};
use herald_tests::{Call, Reply, TestEnv};
use lambda_http::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use shared::config::InboxSettings;
use shared::protocol::Topic;

/// The notification id the get/patch/delete files carry; the tests swap in a real one.
const PLACEHOLDER_ID: &str = "0190f3a2-0000-7000-8000-000000000001";

/// Which function a file feeds, by its `<source>-` prefix.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// `apigw-http-<case>.json`: API Gateway HTTP API, payload 2.0 → `api`.
    ApiGatewayHttp(&'a str),
    /// `eventbridge-<case>.json`: an EventBridge event → a scheduled function.
    EventBridge(&'a str),
}

fn source_of(name: &str) -> Source<'_> {
    let Some(stem) = name.strip_suffix(".json") else {
        panic!("events/{name}: every file in events/ must be a .json payload");
    };
    if let Some(case) = stem.strip_prefix("apigw-http-") {
        Source::ApiGatewayHttp(case)
    } else if let Some(case) = stem.strip_prefix("eventbridge-") {
        Source::EventBridge(case)
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
            Source::EventBridge(_) => panic!(
                "events/{name}: no test drives this file; add a case to tests/tests/events.rs"
            ),
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
            assert_eq!((r.status, r.body["status"].as_str(), r.body["redis"]["ok"].as_bool()), (200, Some("ok"), Some(true)), "events/{name}: {}", r.body);
        }
        "openapi" => {
            let r = send(&deps, name, text).await;
            assert_eq!(r.status, 200, "events/{name}: {}", r.body);
            assert!(r.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", r.body["openapi"]);
            assert!(r.body["paths"].get("/v1/notifications").is_some(), "the document lists /v1/notifications");
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
