//! What reaches Kafka: records consumed back from the broker (the mock cluster, or Apache Kafka
//! when `KAFKA_BROKERS` is set), with the right key, envelope, headers and per-user order; and the
//! outbox guarantee: with Kafka down, creates still succeed, and one relay run later publishes
//! every change exactly once, in order.

use std::time::{Duration, Instant};

use herald_tests::kafka::{broker_kind, consume};
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::protocol::Topic;

fn note(user: &str, i: usize) -> Value {
    json!({"userId": user, "type": "comment", "title": format!("n{i}"), "body": ""})
}

fn seqs_of(records: &[herald_tests::kafka::Consumed], user: &str) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r.key == user)
        .filter_map(|r| r.json()["seq"].as_u64())
        .collect()
}

#[tokio::test]
async fn changes_arrive_on_the_broker_keyed_by_user_in_seq_order() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    for i in 0..5 {
        let call = Call::post("/v1/notifications")
            .service("svc")
            .json(&note("alice", i));
        let call = if i == 0 {
            call.header("Idempotency-Key", "first-one")
        } else {
            call
        };
        assert_eq!(call.send(&deps).await.status, 201);
        assert_eq!(
            Call::post("/v1/notifications")
                .service("svc")
                .json(&note("bob", i))
                .send(&deps)
                .await
                .status,
            201
        );
    }
    let first = Call::get("/v1/notifications")
        .user("alice")
        .query("limit", "100")
        .send(&deps)
        .await;
    let oldest = first.body["items"]
        .as_array()
        .and_then(|a| a.last())
        .map(|n| n["id"].clone())
        .unwrap_or_default();
    let read = Call::patch(&format!(
        "/v1/notifications/{}",
        oldest.as_str().unwrap_or_default()
    ))
    .user("alice")
    .json(&json!({"read": true}))
    .send(&deps)
    .await;
    assert_eq!(read.status, 200);

    let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
    let records = consume(
        &env.kafka,
        &topic,
        11,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(records.len(), 11, "on {}: {records:?}", broker_kind());
    assert_eq!(seqs_of(&records, "alice"), [1, 2, 3, 4, 5, 6]);
    assert_eq!(seqs_of(&records, "bob"), [1, 2, 3, 4, 5]);
    let by_user_partition: std::collections::HashSet<(String, i32)> = records
        .iter()
        .map(|r| (r.key.clone(), r.partition))
        .collect();
    assert_eq!(by_user_partition.len(), 2, "one partition per user");

    let created = records
        .iter()
        .find(|r| r.key == "alice")
        .map(|r| r.json())
        .unwrap_or_default();
    assert_eq!(
        (
            created["v"].as_u64(),
            created["type"].as_str(),
            created["userId"].as_str()
        ),
        (Some(1), Some("NOTIFICATION_CREATED"), Some("alice"))
    );
    assert!(created["id"]
        .as_str()
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)));
    assert!(created["occurredAt"].as_str().is_some());
    assert_eq!(created["payload"]["notification"]["seq"].as_u64(), Some(1));
    assert_eq!(created["payload"]["counts"]["unread"].as_u64(), Some(1));
    let header = records
        .iter()
        .find(|r| r.key == "alice")
        .and_then(|r| r.headers.get("idempotency-key").cloned());
    assert_eq!(header.as_deref(), Some(&b"first-one"[..]));
    let update = records
        .iter()
        .rev()
        .find(|r| r.key == "alice")
        .map(|r| r.json())
        .unwrap_or_default();
    assert_eq!(
        (update["type"].as_str(), &update["payload"]["changes"]),
        (
            Some("NOTIFICATION_UPDATED"),
            &json!({"read": true, "seen": true})
        )
    );
    assert_eq!(update["payload"]["counts"]["unread"].as_u64(), Some(4));

    let analytics = consume(
        &env.kafka,
        &Topic::NotificationAnalytics.name_with(&env.kafka.topic_suffix),
        1,
        Duration::from_secs(10),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        analytics.len(),
        1,
        "only the read goes to notification-analytics"
    );
    assert_eq!(analytics[0].json()["seq"].as_u64(), Some(6));
}

#[tokio::test]
async fn with_kafka_down_creates_succeed_and_one_relay_run_publishes_each_change_once_in_order() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    // A log cap smaller than the outage: the trim must keep every unpublished change.
    let inbox = shared::config::InboxSettings {
        change_log_cap: 2,
        ..Default::default()
    };
    let down = env.api_with(inbox, env.dead_bus());
    let mut ids = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        let r = Call::post("/v1/notifications")
            .service("svc")
            .json(&note("alice", i))
            .send(&down)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "create took {:?} with the broker down",
            started.elapsed()
        );
        ids.push(r.body["id"].as_str().unwrap_or_default().to_owned());
    }
    let r = Call::patch(&format!("/v1/notifications/{}", ids[0]))
        .user("alice")
        .json(&json!({"archived": true}))
        .send(&down)
        .await;
    assert_eq!(r.status, 200);
    let health = Call::get("/v1/health")
        .user("ops")
        .scope("health:read")
        .send(&down)
        .await;
    assert_eq!(
        (
            health.status,
            health.body["status"].as_str(),
            health.body["kafka"]["ok"].as_bool()
        ),
        (200, Some("degraded"), Some(false))
    );

    let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
    assert!(
        consume(
            &env.kafka,
            &topic,
            1,
            Duration::from_secs(2),
            Duration::ZERO
        )
        .await
        .is_empty(),
        "nothing reached Kafka yet"
    );

    let relay = env.relay();
    let event = lambda_runtime::LambdaEvent::new(Default::default(), Default::default());
    let report = outbox_relay::handle(&relay, event)
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    assert_eq!(
        (
            report.ran,
            report.published,
            report.failed,
            report.backlog,
            report.users_cleared
        ),
        (true, 6, 0, 0, 1),
        "{report:?}"
    );
    let records = consume(
        &env.kafka,
        &topic,
        6,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        seqs_of(&records, "alice"),
        [1, 2, 3, 4, 5, 6],
        "each change exactly once, in order"
    );

    let event = lambda_runtime::LambdaEvent::new(Default::default(), Default::default());
    let again = outbox_relay::handle(&relay, event)
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    assert_eq!((again.published, again.users_scanned), (0, 0), "{again:?}");
    let records = consume(
        &env.kafka,
        &topic,
        7,
        Duration::from_secs(3),
        Duration::ZERO,
    )
    .await;
    assert_eq!(records.len(), 6, "the second run published nothing");

    // Once published, the next write trims the log to its cap.
    let inbox = shared::config::InboxSettings {
        change_log_cap: 2,
        ..Default::default()
    };
    let up = env.api_with(inbox, env.bus());
    assert_eq!(
        Call::post("/v1/notifications")
            .service("svc")
            .json(&note("alice", 9))
            .send(&up)
            .await
            .status,
        201
    );
    let trimmed = Call::get("/v1/changes")
        .user("alice")
        .query("since", "4")
        .send(&up)
        .await;
    assert_eq!(
        trimmed.status, 410,
        "changes up to 5 were trimmed once published"
    );
    let kept = Call::get("/v1/changes")
        .user("alice")
        .query("since", "5")
        .send(&up)
        .await;
    assert_eq!(kept.body["changes"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn the_relay_leaves_published_changes_alone_and_clears_marks() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    for i in 0..3 {
        assert_eq!(
            Call::post("/v1/notifications")
                .service("svc")
                .json(&note("carol", i))
                .send(&deps)
                .await
                .status,
            201
        );
    }
    let relay = env.relay();
    let event = lambda_runtime::LambdaEvent::new(Default::default(), Default::default());
    let report = outbox_relay::handle(&relay, event)
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    assert_eq!(
        (report.users_scanned, report.published, report.users_cleared),
        (1, 0, 1),
        "{report:?}"
    );
    let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
    let records = consume(
        &env.kafka,
        &topic,
        4,
        Duration::from_secs(5),
        Duration::ZERO,
    )
    .await;
    assert_eq!(seqs_of(&records, "carol"), [1, 2, 3]);
}
