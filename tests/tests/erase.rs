//! Erasing and exporting a user (`DELETE /v1/users/{id}`, `GET /v1/users/{id}/export`,
//! `GET /v1/me/export`), in process against real Redis and Kafka: every key of the user is gone
//! but the erase marker and other users keep theirs; records from before the erase, replayed
//! through `delivery`, `push`, `analytics` and the outbox relay, bring nothing back; a create
//! after the erase starts a new inbox; open sockets are closed; the export holds every kind of
//! stored data; scopes and bad input.

use std::collections::BTreeMap;

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use herald_tests::capture::CaptureServer;
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::addresses::PushSubscription;
use shared::config::{AnalyticsSettings, Env, RealtimeSettings, SenderSettings};
use shared::model::{Channel, OutcomeStatus};
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::analytics::{HistoryEntry, HistoryWrite};
use shared::store::keys::USER_KEY_SUFFIXES;
use shared::store::{
    AnalyticsStore, Connection, ConnectionRegistry, ContactBook, EngagementStore, EscalationBook,
    NewNotification, PushLedger, SendRecord,
};

const ADMIN: &str = "users:admin";

/// An `@connections` client posting to `url`.
fn connections_api(url: &str) -> ConnectionsApi {
    let settings = RealtimeSettings::from_env(&Env::from_pairs([("CONNECTIONS_URL", url)]))
        .unwrap_or_else(|e| panic!("{e}"));
    let env = Env::from_pairs([
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("CONNECTIONS_URL", url),
    ]);
    ConnectionsApi::from_env(&env, &settings).unwrap_or_else(|e| panic!("{e}"))
}

/// The api, closing sockets through `sockets`. Its rate limits allow a large burst at one request
/// an hour, so a rate state (which expires once its limit is back to full) outlives any test
/// however slow the machine: the erase must find it to delete it.
fn api(env: &TestEnv, sockets: &CaptureServer) -> api::Deps {
    let mut inbox = TestEnv::unlimited();
    for limit in [
        &mut inbox.per_recipient,
        &mut inbox.per_sender,
        &mut inbox.per_user_mutation,
    ] {
        limit.per_period = 1;
        limit.period = std::time::Duration::from_secs(3_600);
    }
    let mut deps = env.api_with(inbox, env.bus());
    deps.sockets = Some(connections_api(&format!("{}/local", sockets.url)));
    deps
}

fn delivery(env: &TestEnv, posts: &CaptureServer) -> delivery::Deps {
    delivery::Deps {
        fanout: Fanout::new(
            ConnectionRegistry::new(env.conn.clone(), env.keys.clone()),
            connections_api(&format!("{}/local", posts.url)),
            4,
        ),
        bus: env.bus(),
        trigger: Default::default(),
    }
}

fn push(env: &TestEnv) -> push::Deps {
    let settings = SenderSettings::from_env(&Env::from_pairs([("PUSH_ALLOW_LOOPBACK", "true")]))
        .unwrap_or_else(|e| panic!("settings: {e}"));
    push::Deps::new(env.conn.clone(), env.keys.clone(), env.bus(), settings)
        .unwrap_or_else(|e| panic!("push deps: {e}"))
}

fn analytics(env: &TestEnv) -> analytics::Deps {
    analytics::Deps::new(analytics_store(env))
}

fn analytics_store(env: &TestEnv) -> AnalyticsStore {
    let settings = AnalyticsSettings {
        topic_suffix: env.kafka.topic_suffix.clone(),
        ..AnalyticsSettings::default()
    };
    AnalyticsStore::new(env.conn.clone(), env.keys.clone(), settings)
}

/// A Kafka event of `topic` holding these payloads, in order, on one partition.
fn event(topic: &str, payloads: &[Vec<u8>]) -> KafkaEvent {
    let records: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"topic": topic, "partition": 0, "offset": 10 + i, "timestamp": 0,
                   "timestampType": "CREATE_TIME", "key": null,
                   "value": STANDARD.encode(p), "headers": []})
        })
        .collect();
    serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "records": {format!("{topic}-0"): records}
    }))
    .unwrap_or_else(|e| panic!("event: {e}"))
}

fn topic(env: &TestEnv, topic: Topic) -> String {
    topic.name_with(&env.kafka.topic_suffix)
}

/// The user's keys in their own slot (`{u:<id>}`), with the slot's tag stripped: `meta`, ….
async fn slot_keys(env: &TestEnv, user: &str) -> Vec<String> {
    let tag = format!("{}{{u:{user}}}:", env.redis.key_prefix);
    env.keys()
        .await
        .into_iter()
        .filter_map(|k| k.strip_prefix(&tag).map(str::to_owned))
        .collect()
}

/// Every key of the user's slot and its content, to show another user is untouched.
async fn slot_dump(env: &TestEnv, user: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for suffix in slot_keys(env, user).await {
        let key = format!("{}{{u:{user}}}:{suffix}", env.redis.key_prefix);
        let mut conn = env.conn.clone();
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let value: Value = match kind.as_str() {
            "string" => json!(redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"))),
            "hash" => json!(redis::cmd("HGETALL")
                .arg(&key)
                .query_async::<BTreeMap<String, String>>(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"))),
            "zset" => json!(redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async::<Vec<String>>(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"))),
            other => json!(other),
        };
        out.insert(suffix, value);
    }
    out
}

/// A notification for `user` on IN_APP and EMAIL, committed through the store (its envelope is
/// what `delivery` and `push` consume).
async fn notify(env: &TestEnv, user: &str) -> Envelope {
    let new = NewNotification {
        channels: vec![Channel::InApp, Channel::Email],
        ..herald_tests::new_notification(user)
    };
    env.seed_notification(new).await.envelope
}

fn created(envelope: &Envelope) -> &shared::model::Notification {
    match &envelope.event {
        Event::NotificationCreated { notification, .. } => notification,
        other => panic!("not a create: {other:?}"),
    }
}

/// Stores one of every kind of data Herald keeps about `user`, through the code that writes it
/// in production: an idempotent create through the api, preferences, contacts, a Web Push
/// subscription, a device, an open connection, a delivery (its `delivered` record and outcome),
/// the send records and retry entry `push` writes, an outcome history, a held delivery claim.
/// Returns the connection id and the device id.
async fn populate(env: &TestEnv, deps: &api::Deps, user: &str) -> (String, String) {
    let r = Call::post("/v1/notifications")
        .service("svc")
        .header("Idempotency-Key", &format!("order-{user}"))
        .json(&json!({"userId": user, "type": "comment", "title": "Hi", "body": "", "channels": ["IN_APP", "EMAIL"]}))
        .send(deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = Call::put("/v1/preferences")
        .user(user)
        .json(&json!({"default": {"EMAIL": true}, "types": {}}))
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Call::put(&format!("/v1/users/{user}/contacts"))
        .service("svc")
        .json(&json!({"email": format!("{user}@example.test")}))
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = format!("{:0>64}", hex_of(user));
    let r = Call::post("/v1/devices")
        .user(user)
        .json(&json!({"platform": "ios", "token": token}))
        .send(deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let device = r.body["id"].as_str().unwrap_or_default().to_owned();
    let subscription = PushSubscription {
        id: format!("sub-{user}"),
        endpoint: format!("https://push.example.test/{user}"),
        p256dh: "BP".into(),
        auth: "au".into(),
        expires_at: None,
        created_at: Utc::now(),
    };
    ContactBook::new(env.conn.clone(), env.keys.clone())
        .subscribe(user, &subscription, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let registry = ConnectionRegistry::new(env.conn.clone(), env.keys.clone());
    let connection = Connection {
        id: format!("conn-{user}"),
        connected_at_ms: Utc::now().timestamp_millis() - 60_000,
        token_expires_ms: Utc::now().timestamp_millis() + 3_600_000,
    };
    registry
        .register(user, &connection)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A delivered notification: `delivered`, and its IN_APP outcome in its history.
    let envelope = notify(env, user).await;
    let n = created(&envelope);
    let posts = CaptureServer::start().await;
    let (response, _) = delivery::deliver_batch(
        &delivery(env, &posts),
        &event(&topic(env, Topic::NotificationEvents), &[envelope.encode()]),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let outcome = DeliveryOutcome::new(n, Channel::InApp, OutcomeStatus::Sent, None);
    let entry = HistoryEntry {
        channel: outcome.channel,
        status: outcome.status,
        reason: None,
        at: outcome.at,
        latency_ms: outcome.latency_ms,
        provider: None,
    };
    let added = analytics_store(env)
        .append_histories(&[HistoryWrite {
            notification_id: &n.id,
            user_id: user,
            tenant: &shared::tenant::Tenant::default_tenant(),
            kind: Some(&n.kind),
            entries: vec![&entry],
            seq: outcome.seq,
            at_ms: outcome.at.timestamp_millis(),
        }])
        .await;
    assert!(matches!(added[..], [Ok(1)]), "{added:?}");

    // What `push` records and schedules.
    let ledger = PushLedger::new(env.conn.clone(), env.keys.clone());
    let record = SendRecord {
        hop: 0,
        status: "deferred".into(),
        pending_outcome: None,
    };
    ledger
        .record(
            user,
            n.seq,
            &[(PushLedger::field(&n.id, Channel::Email), record)],
            Utc::now().timestamp_millis(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ledger
        .schedule(
            user,
            n.seq,
            &format!("retry-{user}"),
            &json!({"notificationId": n.id}).to_string(),
            Utc::now().timestamp_millis() + 3_600_000,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // An escalation step planned (as `push` plans it) and an open digest item.
    let mut escalated = n.clone();
    escalated.escalate = Some(vec![serde_json::from_value(
        json!({"after": "1h", "channels": ["EMAIL"]}),
    )
    .unwrap_or_else(|e| panic!("{e}"))]);
    EscalationBook::new(env.conn.clone(), env.keys.clone())
        .plan(&escalated)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(
            &json!({"userId": user, "type": "comment", "title": "Digest", "body": "",
            "channels": ["IN_APP"], "digest": {"key": "comments", "window": "1h"}}),
        )
        .send(deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // A read in the user's engagement histogram (as analytics adds it).
    EngagementStore::new(env.conn.clone(), env.keys.clone())
        .record(user, Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A topic membership (in the topic's slot, not the user's).
    let r = Call::put("/v1/topics/course:erase")
        .service("svc")
        .json(&json!({"name": "Erase"}))
        .send(deps)
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
    let r = Call::post("/v1/topics/course:erase/subscribers")
        .service("svc")
        .json(&json!({"userIds": [user]}))
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A badge window open (an hour long, so it cannot lapse during the test).
    let badge = ledger
        .open_badge_window(user, std::time::Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(badge, None, "a fresh user has no badge window");
    // A delivery claim in flight.
    registry
        .claim_delivery(user, &[], "in-flight", std::time::Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (connection.id, device)
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn export(deps: &api::Deps, call: Call) -> Value {
    let r = call.send(deps).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn an_erase_leaves_only_the_marker_of_the_user_and_closes_their_sockets() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let sockets = CaptureServer::start().await;
    let deps = api(&env, &sockets);
    let (conn_alice, device_alice) = populate(&env, &deps, "alice").await;
    populate(&env, &deps, "bob").await;

    // Every kind of per-user key exists before the erase (the fixture stores each one).
    let before = slot_keys(&env, "alice").await;
    for suffix in USER_KEY_SUFFIXES {
        assert!(
            before.iter().any(|k| k == suffix),
            "no `{suffix}` in {before:?}"
        );
    }
    assert!(before.iter().any(|k| k.starts_with("idem:")), "{before:?}");
    let bob_before = slot_dump(&env, "bob").await;
    let bob_export = export(&deps, Call::get("/v1/me/export").user("bob")).await;

    let r = Call::delete("/v1/users/alice")
        .user("ops")
        .scope(ADMIN)
        .send(&deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["userId"], "alice");
    assert_eq!(r.body["connectionsClosed"], 1);
    let closed: Vec<_> = sockets
        .requests()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path)
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].ends_with(&format!("/{conn_alice}")), "{closed:?}");

    assert_eq!(slot_keys(&env, "alice").await, ["erased"]);
    let everything = env.keys().await;
    let outside: Vec<&String> = everything
        .iter()
        .filter(|k| !k.contains("{u:") && k.contains("alice"))
        .collect();
    assert!(
        outside.is_empty(),
        "alice's records outside her slot: {outside:?}"
    );
    // Her topic membership is gone; bob's stays.
    let members = Call::get("/v1/topics/course:erase/subscribers")
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(members.status, 200, "{}", members.body);
    assert_eq!(members.body["items"], json!(["bob"]), "{}", members.body);
    let owner = env.keys.device_owner(&device_alice);
    assert!(!everything.contains(&owner), "{owner}");
    let due = PushLedger::new(env.conn.clone(), env.keys.clone())
        .scheduled()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        due.iter().all(|(m, _)| !m.starts_with("alice\n")),
        "{due:?}"
    );
    assert!(due.iter().any(|(m, _)| m.starts_with("bob\n")), "{due:?}");
    // Her notifications' histories are tombstones: nothing to read.
    let export_after = export(
        &deps,
        Call::get("/v1/users/alice/export").user("ops").scope(ADMIN),
    )
    .await;
    for section in [
        "notifications",
        "pushSubscriptions",
        "devices",
        "connections",
        "sends",
        "scheduledRetries",
    ] {
        assert_eq!(
            export_after[section],
            json!([]),
            "{section}: {export_after}"
        );
    }
    assert_eq!(export_after["counts"]["total"], 0);
    assert_eq!(export_after["deliveries"], json!({}));

    // Bob is untouched, key by key and in his export.
    assert_eq!(slot_dump(&env, "bob").await, bob_before);
    let mut bob_after = export(&deps, Call::get("/v1/me/export").user("bob")).await;
    bob_after["exportedAt"] = bob_export["exportedAt"].clone();
    assert_eq!(bob_after, bob_export);

    // Erasing again, or a user that never existed, is accepted and erases nothing more.
    for user in ["alice", "nobody"] {
        let r = Call::delete(&format!("/v1/users/{user}"))
            .user("ops")
            .scope(ADMIN)
            .send(&deps)
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(slot_keys(&env, "alice").await, ["erased"]);
}

#[tokio::test]
async fn records_from_before_the_erase_bring_nothing_back_and_a_new_create_starts_afresh() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let sockets = CaptureServer::start().await;
    let deps = api(&env, &sockets);
    // Committed, published, not yet consumed: the late records.
    let old = notify(&env, "alice").await;
    let old_n = created(&old).clone();
    let control = notify(&env, "bob").await;
    let read = match env
        .store(TestEnv::unlimited())
        .update(
            "alice",
            &old_n.id,
            shared::model::FlagsPatch {
                read: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        shared::store::UpdateOutcome::Updated { change, .. } => change.envelope,
        other => panic!("{other:?}"),
    };
    let outcome = DeliveryOutcome::new(&old_n, Channel::InApp, OutcomeStatus::Sent, None);
    let mut unsequenced = DeliveryOutcome::new(&old_n, Channel::Email, OutcomeStatus::Sent, None);
    unsequenced.seq = None;
    // Every change so far is published (the late records are in Kafka).
    env.relay()
        .relay
        .run_once()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Alice has a socket open at the erase; bob one too.
    let registry = ConnectionRegistry::new(env.conn.clone(), env.keys.clone());
    for user in ["alice", "bob"] {
        let c = Connection {
            id: format!("conn-{user}"),
            connected_at_ms: Utc::now().timestamp_millis() - 60_000,
            token_expires_ms: Utc::now().timestamp_millis() + 3_600_000,
        };
        registry
            .register(user, &c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let r = Call::delete("/v1/users/alice")
        .user("ops")
        .scope(ADMIN)
        .send(&deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(slot_keys(&env, "alice").await, ["erased"]);

    // delivery: the late create and update post nothing to anyone and record nothing.
    let posts = CaptureServer::start().await;
    let (response, stats) = delivery::deliver_batch(
        &delivery(&env, &posts),
        &event(
            &topic(&env, Topic::NotificationEvents),
            &[old.encode(), read.encode(), control.encode()],
        ),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(stats.redelivered, 2, "{stats:?}");
    let posted: Vec<String> = posts.requests().into_iter().map(|c| c.path).collect();
    assert_eq!(posted.len(), 1, "only bob's frame: {posted:?}");
    assert!(posted[0].ends_with("/conn-bob"), "{posted:?}");

    // push: the late routing sends, records and schedules nothing for alice (bob's is handled).
    let (response, stats) = push::process_batch(
        &push(&env),
        &event(
            &topic(&env, Topic::PushNotifications),
            &[old.encode(), control.encode()],
        ),
        Utc::now(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(stats.erased, 1, "{stats:?}");
    // Nor does a send record or retry entry written late by a push that read before the erase.
    let ledger = PushLedger::new(env.conn.clone(), env.keys.clone());
    let record = SendRecord {
        hop: 0,
        status: "sent".into(),
        pending_outcome: None,
    };
    ledger
        .record(
            "alice",
            old_n.seq,
            &[(PushLedger::field(&old_n.id, Channel::Email), record)],
            Utc::now().timestamp_millis(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ledger
        .schedule(
            "alice",
            old_n.seq,
            "late",
            "{}",
            Utc::now().timestamp_millis(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // analytics: the late outcomes (with and without a seq) and the read add no history.
    let (response, _) = analytics::count_batch(
        &analytics(&env),
        &event(
            &topic(&env, Topic::NotificationDelivery),
            &[outcome.encode(), unsequenced.encode()],
        ),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let (response, _) = analytics::count_batch(
        &analytics(&env),
        &event(&topic(&env, Topic::NotificationAnalytics), &[read.encode()]),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let history = analytics_store(&env)
        .history(&old_n.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history, None);

    // The outbox relay has nothing of alice's to publish.
    env.store(TestEnv::unlimited())
        .outbox()
        .mark_dirty("alice")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = env
        .relay()
        .relay
        .run_once()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.published, 0, "{report:?}");

    assert_eq!(slot_keys(&env, "alice").await, ["erased"]);

    // A create after the erase is a new life: fresh counts, seqs above the old ones, delivered.
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&json!({"userId": "alice", "type": "comment", "title": "Welcome back", "body": ""}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let new_seq = r.body["seq"].as_u64().unwrap_or_default();
    assert!(new_seq > read.seq, "{new_seq} after {}", read.seq);
    let counts = Call::get("/v1/notifications/counts")
        .user("alice")
        .send(&deps)
        .await;
    assert_eq!(counts.status, 200, "{}", counts.body);
    assert_eq!(counts.body["total"], 1, "{}", counts.body);
    assert_eq!(counts.body["unread"], 1, "{}", counts.body);
    let list = Call::get("/v1/notifications")
        .user("alice")
        .send(&deps)
        .await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.body
    );
    let fresh = notify(&env, "alice").await;
    let (_, stats) = delivery::deliver_batch(
        &delivery(&env, &posts),
        &event(&topic(&env, Topic::NotificationEvents), &[fresh.encode()]),
    )
    .await;
    assert_eq!((stats.redelivered, stats.delivered), (0, 1), "{stats:?}");
    let keys = slot_keys(&env, "alice").await;
    assert!(keys.iter().any(|k| k == "delivered"), "{keys:?}");
}

#[tokio::test]
async fn the_export_holds_every_kind_of_stored_data_for_the_admin_and_the_user() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let sockets = CaptureServer::start().await;
    let deps = api(&env, &sockets);
    let (connection, device) = populate(&env, &deps, "carol").await;

    let admin = export(
        &deps,
        Call::get("/v1/users/carol/export").user("ops").scope(ADMIN),
    )
    .await;
    assert_eq!(admin["userId"], "carol");
    let notifications = admin["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Two plain notifications and the open digest item, with its digest.
    assert_eq!(notifications.len(), 3, "{admin}");
    assert!(notifications.iter().all(|n| n["read"] == false), "{admin}");
    assert!(
        notifications
            .iter()
            .any(|n| n["digest"]["key"] == "comments"),
        "{admin}"
    );
    assert_eq!(admin["counts"]["total"], 3, "{admin}");
    assert_eq!(admin["preferences"]["default"]["EMAIL"], true, "{admin}");
    assert_eq!(admin["contacts"]["email"], "carol@example.test", "{admin}");
    assert_eq!(
        admin["pushSubscriptions"][0]["endpoint"],
        "https://push.example.test/carol"
    );
    assert!(
        admin["pushSubscriptions"][0].get("p256dh").is_none(),
        "no keys: {admin}"
    );
    assert_eq!(admin["devices"][0]["id"], device.as_str());
    assert!(
        admin["devices"][0].get("token").is_none(),
        "no token: {admin}"
    );
    assert_eq!(admin["connections"][0]["id"], connection.as_str());
    let deliveries = admin["deliveries"].as_object().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), 1, "{admin}");
    assert_eq!(admin["sends"][0]["channel"], "EMAIL", "{admin}");
    assert_eq!(admin["sends"][0]["status"], "deferred", "{admin}");
    assert_eq!(
        admin["scheduledRetries"].as_array().map(Vec::len),
        Some(1),
        "{admin}"
    );
    assert!(admin.get("nextCursor").is_none(), "{admin}");

    let mut own = export(&deps, Call::get("/v1/me/export").user("carol")).await;
    own["exportedAt"] = admin["exportedAt"].clone();
    assert_eq!(own, admin);

    // Pages: one notification per page would need 100+; the cursor continues below a seq.
    let first_seq = notifications
        .last()
        .and_then(|n| n["seq"].as_u64())
        .unwrap_or_default();
    let cursor = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        URL_SAFE_NO_PAD.encode(format!("v1:{first_seq}"))
    };
    let older = export(
        &deps,
        Call::get("/v1/me/export")
            .user("carol")
            .query("cursor", &cursor),
    )
    .await;
    assert_eq!(older["notifications"], json!([]), "{older}");
}

#[tokio::test]
async fn erase_and_export_check_scopes_and_user_ids() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let sockets = CaptureServer::start().await;
    let deps = api(&env, &sockets);
    for call in [
        Call::delete("/v1/users/alice").user("alice"),
        Call::delete("/v1/users/alice").service("svc"),
        Call::get("/v1/users/alice/export").user("alice"),
        Call::get("/v1/users/alice/export").service("svc"),
    ] {
        let r = call.send(&deps).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.content_type(), "application/problem+json");
    }
    let too_long = "x".repeat(shared::limits::USER_ID_MAX_BYTES + 1);
    for path in [
        format!("/v1/users/{too_long}"),
        "/v1/users/a%20b".to_owned(),
        "/v1/users/%zz".to_owned(),
    ] {
        let r = Call::delete(&path)
            .user("ops")
            .scope(ADMIN)
            .send(&deps)
            .await;
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        assert_eq!(r.error_fields(), ["userId"], "{path}");
        let r = Call::get(&format!("{path}/export"))
            .user("ops")
            .scope(ADMIN)
            .send(&deps)
            .await;
        assert_eq!(r.status, 422, "{path}: {}", r.body);
    }
    let r = Call::get("/v1/me/export")
        .user("alice")
        .query("cursor", "not-a-cursor")
        .send(&deps)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Unknown users: the erase is accepted, the export is empty.
    let r = Call::get("/v1/users/nobody/export")
        .user("ops")
        .scope(ADMIN)
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["notifications"], json!([]));
    // Erase never closes anyone else's sockets.
    assert!(sockets.requests().is_empty());
}
