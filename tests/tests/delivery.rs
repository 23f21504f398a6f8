//! The delivery handler's batch contract, in process against real Redis and Kafka: poison records
//! are skipped without blocking their partition, a transient Redis failure is reported from its
//! record's offset, and the retried batch completes without doing anything twice.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::TestEnv;
use serde_json::{json, Value};
use shared::config::{Env, RealtimeSettings};
use shared::model::Channel;
use shared::protocol::{Envelope, Topic};
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::{ConnectionRegistry, NewNotification};
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
    let settings = RealtimeSettings::from_env(&Env::from_pairs([(
        "CONNECTIONS_URL",
        "http://127.0.0.1:9/local",
    )]))
    .unwrap_or_else(|e| panic!("{e}"));
    let env_vars = Env::from_pairs([
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CONNECTIONS_URL", "http://127.0.0.1:9/local"),
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
