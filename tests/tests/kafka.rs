//! What reaches Kafka: records consumed back from the broker (the mock cluster, or Apache Kafka
//! when `KAFKA_BROKERS` is set), with the right key, envelope, headers and per-user order; and the
//! outbox guarantee: with Kafka down, creates still succeed without waiting for it, and one relay
//! run later publishes every change exactly once, in order; the producer returns to Kafka once the
//! broker is back.

use std::time::Duration;

use herald_tests::kafka::{broker_kind, consume};
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::protocol::Topic;

fn note(user: &str, i: usize) -> Value {
    json!({"userId": user, "type": "comment", "title": format!("n{i}"), "body": ""})
}

/// One scheduled run of the outbox relay with `relay`'s dependencies.
async fn relay_once(relay: &outbox_relay::Deps) -> shared::outbox::RelayReport {
    let event = lambda_runtime::LambdaEvent::new(Default::default(), Default::default());
    outbox_relay::handle(relay, event)
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"))
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
    let dead = env.dead_bus();
    let down = env.api_with(inbox, dead.clone());
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = Call::post("/v1/notifications")
            .service("svc")
            .json(&note("alice", i))
            .send(&down)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap_or_default().to_owned());
    }
    // The first create (at most) learns that Kafka is unreachable; the others answer without
    // producing or waiting for it.
    assert!(
        dead.skipped_sends() >= 4,
        "only {} of 5 creates skipped the produce wait",
        dead.skipped_sends()
    );
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
    let report = relay_once(&relay).await;
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

    let again = relay_once(&relay).await;
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

/// Tenants: with Kafka down, the same user id's changes in two tenants wait in two outboxes; one
/// relay run publishes each tenant's, in its own seq order, on records that name the tenant.
#[tokio::test]
async fn the_relay_publishes_each_tenants_changes_in_that_tenant() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let down = env.api_with(Default::default(), env.dead_bus());
    let user = format!("tina-{}", uuid::Uuid::new_v4().simple());
    for (i, tenant) in [Some("acme"), None, Some("acme")].into_iter().enumerate() {
        let call = Call::post("/v1/notifications")
            .service("svc")
            .json(&note(&user, i));
        let call = match tenant {
            Some(t) => call.tenant(t),
            None => call,
        };
        let r = call.send(&down).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let report = relay_once(&env.relay()).await;
    assert_eq!(
        (report.published, report.failed, report.users_cleared),
        (3, 0, 2),
        "two users: acme's and the default's {report:?}"
    );
    let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
    let records = consume(
        &env.kafka,
        &topic,
        3,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    let of = |tenant: Option<&str>| -> Vec<(u64, String)> {
        records
            .iter()
            .filter(|r| r.key == user)
            .map(|r| r.json())
            .filter(|e| e["tenant"].as_str() == tenant)
            .map(|e| {
                let title = e["payload"]["notification"]["title"]
                    .as_str()
                    .unwrap_or_default();
                (e["seq"].as_u64().unwrap_or_default(), title.to_owned())
            })
            .collect()
    };
    assert_eq!(
        of(Some("acme")),
        [(1, "n0".to_owned()), (2, "n2".to_owned())]
    );
    assert_eq!(
        of(None),
        [(1, "n1".to_owned())],
        "the default tenant's record names no tenant"
    );
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
    let report = relay_once(&relay).await;
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

/// The mock cluster's broker goes down and comes back: the producer learns it is unreachable,
/// then answers at once without producing, and returns to producing once the broker is back.
#[tokio::test]
async fn a_producer_skips_an_unreachable_broker_and_returns_when_it_is_back() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    // A cluster of this test's own, so taking its broker down disturbs no other test.
    let cluster = match rdkafka::mocking::MockCluster::new(1) {
        Ok(c) => c,
        Err(e) => panic!("mock cluster: {e}"),
    };
    let settings = shared::config::KafkaSettings {
        brokers: cluster.bootstrap_servers(),
        ..env.kafka.clone()
    };
    let topic = Topic::NotificationEvents.name_with(&settings.topic_suffix);
    if let Err(e) = cluster.create_topic(&topic, 1, 1) {
        panic!("topic: {e}");
    }
    let bus = match shared::bus::EventBus::new(&settings) {
        Ok(b) => b,
        Err(e) => panic!("producer: {e}"),
    };
    let record = |i: usize| shared::bus::OutgoingRecord {
        topic: Topic::NotificationEvents,
        key: "dave".into(),
        payload: format!("{{\"i\":{i}}}").into_bytes(),
        headers: Vec::new(),
    };
    let sent = bus.send(&[record(0)]).await;
    assert!(sent[0].is_ok(), "broker up: {sent:?}");

    if let Err(e) = cluster.broker_down(1) {
        panic!("broker down: {e}");
    }
    // Each attempt ends within the produce deadline; a bounded number of them, not a clock.
    let mut attempts = 0;
    while !bus.is_unreachable() {
        attempts += 1;
        assert!(
            attempts <= 20,
            "the producer never noticed the broker was down"
        );
        assert!(bus.send(&[record(attempts)]).await[0].is_err());
    }
    let skipped = bus.skipped_sends();
    let answer = bus.send(&[record(100)]).await;
    assert!(
        matches!(answer[0], Err(shared::bus::BusError::Unreachable)),
        "{answer:?}"
    );
    assert_eq!(
        bus.skipped_sends(),
        skipped + 1,
        "answered without producing"
    );

    if let Err(e) = cluster.broker_up(1) {
        panic!("broker up: {e}");
    }
    // The first produce after the probe saw the broker may still fail (and mark it down again);
    // a bounded number of rounds, each waiting for the probe.
    let mut rounds = 0;
    loop {
        let mut polls = 0;
        while bus.is_unreachable() {
            polls += 1;
            assert!(polls <= 600, "the probe never saw the broker come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if bus.send(&[record(200 + rounds)]).await[0].is_ok() {
            break;
        }
        rounds += 1;
        assert!(rounds <= 10, "the producer never returned to the broker");
    }
}

/// Relay fairness: more users whose publish keeps failing than one run scans (here a record
/// larger than the producer's `message.max.bytes`, which Kafka's client refuses) do not starve a
/// healthy user. Each failing user goes behind the others after its failure, so the healthy
/// user's change is relayed once the failing ones have each failed once, and a user marked after
/// that is relayed by the very next run; the failing changes stay unpublished, nothing is lost.
#[tokio::test]
async fn users_whose_publish_keeps_failing_do_not_starve_the_others_in_the_relay() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    const PER_RUN: usize = 5;
    let failing: Vec<String> = (0..3 * PER_RUN).map(|i| format!("failing{i}")).collect();
    for user in &failing {
        env.seed_notification(shared::store::NewNotification {
            body: "x".repeat(4_000),
            ..herald_tests::new_notification(user)
        })
        .await;
    }
    env.seed_notification(herald_tests::new_notification("healthy"))
        .await;

    let small_records = shared::config::KafkaSettings {
        client_properties: vec![("message.max.bytes".into(), "2000".into())],
        ..env.kafka.clone()
    };
    let bus = match shared::bus::EventBus::new(&small_records) {
        Ok(b) => b,
        Err(e) => panic!("producer: {e}"),
    };
    let store = env.store(TestEnv::unlimited());
    let outbox = shared::config::OutboxSettings {
        grace: Duration::ZERO,
        concurrency: 4,
    };
    let relay = shared::outbox::Relay::new(
        shared::outbox::Publisher::new(bus, store.clone()),
        store.clone(),
        outbox,
    )
    .with_users_per_run(PER_RUN);
    let unpublished = |user: &'static str| {
        let store = store.clone();
        async move {
            match store.pending(user, 10).await {
                Ok((_, changes)) => changes.len(),
                Err(e) => panic!("pending {user}: {e}"),
            }
        }
    };

    // The failing users' marks are older than the healthy user's: the scan starts with them.
    // Each run fails PER_RUN of them and moves them back; the fourth reaches the healthy user.
    let mut runs = Vec::new();
    for _ in 0..4 {
        match relay.run_once().await {
            Ok(r) => runs.push(r),
            Err(e) => panic!("relay: {e}"),
        }
    }
    let first_three: Vec<(usize, usize)> =
        runs[..3].iter().map(|r| (r.failed, r.published)).collect();
    assert_eq!(first_three, [(PER_RUN, 0); 3], "{runs:?}");
    assert_eq!(
        (runs[3].published, unpublished("healthy").await),
        (1, 0),
        "the fourth run reached the healthy user first: {runs:?}"
    );

    // Steady state: every failing user has failed once, so a user marked now is relayed by the
    // next run, ahead of all of them.
    env.seed_notification(herald_tests::new_notification("newcomer"))
        .await;
    let next = match relay.run_once().await {
        Ok(r) => r,
        Err(e) => panic!("relay: {e}"),
    };
    assert_eq!(
        (next.published, unpublished("newcomer").await),
        (1, 0),
        "{next:?}"
    );

    for user in &failing {
        let (_, changes) = store
            .pending(user, 10)
            .await
            .unwrap_or_else(|e| panic!("pending {user}: {e}"));
        assert_eq!(changes.len(), 1, "{user}'s change waits for the relay");
    }
    let marked = store
        .outbox()
        .dirty_users(100)
        .await
        .unwrap_or_else(|e| panic!("dirty users: {e}"));
    assert_eq!(
        marked.len(),
        failing.len(),
        "only the failing users stay marked: {marked:?}"
    );

    let records = env.consume(Topic::NotificationEvents, 2).await;
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["healthy", "newcomer"], "each healthy change once");
}
