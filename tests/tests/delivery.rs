//! The delivery handler's batch contract, in process against real Redis and Kafka: poison records
//! are skipped without blocking their partition, a transient Redis failure is reported from its
//! record's offset, and the retried batch completes without doing anything twice; the same batch
//! run by two invocations at the same time posts one frame per connection and produces one
//! outcome per notification, which analytics counts once.

use std::collections::BTreeMap;

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::capture::CaptureServer;
use herald_tests::TestEnv;
use serde_json::{json, Value};
use shared::config::{AnalyticsSettings, Env, RealtimeSettings};
use shared::model::{Channel, OutcomeStatus};
use shared::protocol::{Envelope, Topic};
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::analytics::CounterKey;
use shared::store::{AnalyticsStore, Connection, ConnectionRegistry, NewNotification};
use shared::trigger::BatchResponse;

async fn committed(env: &TestEnv, user: &str, channels: Vec<Channel>) -> Envelope {
    let new = NewNotification {
        channels,
        ..herald_tests::new_notification(user)
    };
    env.seed_notification(new).await.envelope
}

fn record(offset: i64, value: &str) -> Value {
    json!({"topic": "notification-events", "partition": 2, "offset": offset, "timestamp": 0,
           "timestampType": "CREATE_TIME", "key": null, "value": value, "headers": []})
}

fn event(records: Vec<Value>) -> KafkaEvent {
    serde_json::from_value(json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:000000000000:cluster/herald/1",
        "records": {"notification-events-2": records}
    }))
    .unwrap_or_else(|e| panic!("event: {e}"))
}

fn deps(env: &TestEnv) -> delivery::Deps {
    // Nobody here has a connection, so nothing is posted: the endpoint is never called.
    deps_posting_to(env, "http://127.0.0.1:9/local")
}

/// A handler instance of its own (its own `@connections` client and producer) posting to
/// `connections_url`.
fn deps_posting_to(env: &TestEnv, connections_url: &str) -> delivery::Deps {
    let settings =
        RealtimeSettings::from_env(&Env::from_pairs([("CONNECTIONS_URL", connections_url)]))
            .unwrap_or_else(|e| panic!("{e}"));
    let env_vars = Env::from_pairs([
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CONNECTIONS_URL", connections_url),
    ]);
    let api = ConnectionsApi::from_env(&env_vars, &settings).unwrap_or_else(|e| panic!("{e}"));
    delivery::Deps {
        fanout: Fanout::new(
            ConnectionRegistry::new(env.conn.clone(), env.keys.clone()),
            api,
            4,
        ),
        bus: env.bus(),
        trigger: Default::default(),
    }
}

#[tokio::test]
async fn poison_records_are_skipped_and_a_transient_failure_retries_from_its_offset() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = deps(&env);
    let broken = committed(&env, "broken", vec![Channel::InApp]).await;
    let fine = committed(&env, "fine", vec![Channel::InApp, Channel::Email]).await;
    let mut v2: Value = serde_json::from_slice(&fine.encode()).unwrap_or_default();
    v2["v"] = json!(2);
    let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
    let batch = event(vec![
        record(10, "%%% not base64 %%%"),
        record(11, &b64(b"{not json")),
        record(12, &b64(v2.to_string().as_bytes())),
        record(13, &b64(&broken.encode())),
        record(14, &b64(&fine.encode())),
    ]);

    // Redis fails for "broken" only: its connections key holds the wrong type.
    let conns = env.keys.user("broken").conns();
    let _: () = redis::cmd("SET")
        .arg(&conns)
        .arg("not a hash")
        .query_async(&mut env.conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (response, stats) = delivery::deliver_batch(&deps, &batch).await;
    let mut expected = BatchResponse::default();
    expected.fail_from("notification-events-2", 13);
    assert_eq!(
        response, expected,
        "retry from the failed record, not the poison before it"
    );
    assert_eq!(stats.poison, 3);
    assert_eq!(stats.delivered, 1, "the other user's record went through");

    // Redis is back; Lambda retries from offset 13: "broken" is delivered, "fine" is not again.
    let _: () = redis::cmd("DEL")
        .arg(&conns)
        .query_async(&mut env.conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let retry = event(vec![
        record(13, &b64(&broken.encode())),
        record(14, &b64(&fine.encode())),
    ]);
    let (response, stats) = delivery::deliver_batch(&deps, &retry).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!((stats.delivered, stats.redelivered), (1, 1));

    // Outcomes: one per notification; "fine" asked for EMAIL, so it was routed to push once.
    let outcomes = env.consume(Topic::NotificationDelivery, 2).await;
    let mut statuses: Vec<(String, String, String)> = outcomes
        .iter()
        .map(|r| {
            let o = r.json();
            (
                o["userId"].as_str().unwrap_or_default().to_owned(),
                o["status"].as_str().unwrap_or_default().to_owned(),
                o["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("broken".into(), "suppressed".into(), "no-connection".into()),
            ("fine".into(), "suppressed".into(), "no-connection".into()),
        ]
    );
    let routed = env.consume(Topic::PushNotifications, 1).await;
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].key, "fine");
    assert_eq!(
        Envelope::decode(&routed[0].payload).ok().as_ref(),
        Some(&fine)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_run_twice_at_once_posts_one_frame_per_connection_and_counts_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let capture = CaptureServer::start().await;
    let url = format!("{}/live", capture.url);
    // Two handler instances, as two consumers of a rebalancing group would run them.
    let (first, second) = (deps_posting_to(&env, &url), deps_posting_to(&env, &url));
    let registry = ConnectionRegistry::new(env.conn.clone(), env.keys.clone());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let users = [("alice", vec!["a-1", "a-2"]), ("bob", vec!["b-1"])];
    for (user, ids) in &users {
        for id in ids {
            let connection = Connection {
                id: (*id).to_owned(),
                connected_at_ms: now_ms,
                token_expires_ms: now_ms + 3_600_000,
            };
            registry
                .register(user, &connection)
                .await
                .unwrap_or_else(|e| panic!("register: {e}"));
        }
    }
    let mut envelopes = Vec::new();
    for user in ["alice", "bob", "alice", "bob", "alice"] {
        envelopes.push(committed(&env, user, vec![Channel::InApp]).await);
    }
    let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
    let batch = event(
        envelopes
            .iter()
            .enumerate()
            .map(|(i, e)| record(20 + i as i64, &b64(&e.encode())))
            .collect(),
    );

    let ((r1, s1), (r2, s2)) = tokio::join!(
        delivery::deliver_batch(&first, &batch),
        delivery::deliver_batch(&second, &batch)
    );
    assert_eq!(
        (r1, r2),
        (BatchResponse::default(), BatchResponse::default()),
        "both invocations complete: the second waits for the first's claim"
    );
    assert_eq!(
        (s1.delivered + s2.delivered, s1.redelivered + s2.redelivered),
        (5, 5),
        "each record delivered by one invocation and skipped by the other"
    );

    // Each connection got each of its user's seqs exactly once.
    let mut posted: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for request in capture.requests() {
        assert_eq!(request.method, "POST", "{request:?}");
        let connection = request
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let seq = request.json()["seq"].as_u64().unwrap_or_default();
        posted.entry(connection).or_default().push(seq);
    }
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (user, ids) in &users {
        let seqs: Vec<u64> = envelopes
            .iter()
            .filter(|e| e.user_id == *user)
            .map(|e| e.seq)
            .collect();
        for id in ids {
            expected.insert((*id).to_owned(), seqs.clone());
        }
    }
    for seqs in posted.values_mut() {
        seqs.sort_unstable();
    }
    assert_eq!(posted, expected, "one frame per connection and change");

    // One outcome per notification...
    let outcomes = env.consume(Topic::NotificationDelivery, 5).await;
    let mut per_notification: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        let id = o.json()["notificationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *per_notification.entry(id).or_default() += 1;
    }
    assert_eq!(per_notification.len(), 5, "{per_notification:?}");
    assert!(
        per_notification.values().all(|n| *n == 1),
        "{per_notification:?}"
    );

    // ...so analytics counts 5 sent, even when it too runs the outcomes' batch twice at once.
    let topic = Topic::NotificationDelivery.name_with(&env.kafka.topic_suffix);
    let records: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({"topic": topic, "partition": o.partition, "offset": o.offset, "timestamp": 0,
                   "timestampType": "CREATE_TIME", "key": null, "value": b64(&o.payload),
                   "headers": []})
        })
        .collect();
    let mut partitions: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        partitions
            .entry(format!("{topic}-{}", r["partition"]))
            .or_default()
            .push(r);
    }
    let outcomes_event: KafkaEvent = serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "127.0.0.1:9092",
        "records": partitions
    }))
    .unwrap_or_else(|e| panic!("event: {e}"));
    let store = AnalyticsStore::new(
        env.conn.clone(),
        env.keys.clone(),
        AnalyticsSettings {
            topic_suffix: env.kafka.topic_suffix.clone(),
            ..AnalyticsSettings::default()
        },
    );
    let (a1, a2) = (
        analytics::Deps::new(store.clone()),
        analytics::Deps::new(store.clone()),
    );
    let ((c1, t1), (c2, t2)) = tokio::join!(
        analytics::count_batch(&a1, &outcomes_event),
        analytics::count_batch(&a2, &outcomes_event)
    );
    assert_eq!(
        (c1, c2),
        (BatchResponse::default(), BatchResponse::default())
    );
    assert_eq!(t1.counted + t2.counted, 5);
    let today = chrono::Utc::now().date_naive();
    let (days, _) = store
        .days(today - chrono::Days::new(1), today)
        .await
        .unwrap_or_else(|e| panic!("days: {e}"));
    let sent = CounterKey {
        kind: "comment".into(),
        channel: Channel::InApp,
        status: OutcomeStatus::Sent,
    };
    let counted: u64 = days.iter().filter_map(|d| d.counts.get(&sent)).sum();
    assert_eq!(counted, 5, "{days:?}");
}

#[tokio::test]
async fn a_claim_left_by_a_crashed_invocation_expires_and_the_records_are_delivered() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let capture = CaptureServer::start().await;
    let deps = deps_posting_to(&env, &format!("{}/live", capture.url));
    let registry = ConnectionRegistry::new(env.conn.clone(), env.keys.clone());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let connection = Connection {
        id: "c-1".into(),
        connected_at_ms: now_ms,
        token_expires_ms: now_ms + 3_600_000,
    };
    registry
        .register("carol", &connection)
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    let envelope = committed(&env, "carol", vec![Channel::InApp]).await;

    // An invocation claimed carol's record, then died before posting: its lease runs out.
    let claim = registry
        .claim_delivery(
            "carol",
            &[envelope.seq],
            "crashed",
            std::time::Duration::from_millis(300),
        )
        .await
        .unwrap_or_else(|e| panic!("claim: {e}"));
    assert!(matches!(
        claim,
        shared::store::DeliveryClaim::Claimed { .. }
    ));

    let batch = event(vec![record(30, &STANDARD.encode(envelope.encode()))]);
    let (response, stats) = delivery::deliver_batch(&deps, &batch).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!((stats.delivered, stats.frames_sent), (1, 1));
    let posts = capture.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].json()["seq"].as_u64(), Some(envelope.seq));
}
