//! Topics and broadcasts on real Redis and a real Kafka-protocol broker: the topic routes
//! through `api::handle`, the fan-out through the `broadcast` function's own entry points
//! (a Kafka batch run twice at once and then redelivered, chunks run around a cancel), and one
//! broadcast end to end through devstack to a subscriber's WebSocket. Scheduled broadcasts
//! (`sendAt`) are started by the scheduler's firing step, driven explicitly with the time it
//! fires at, as `schedule.rs` does.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration as Span, Utc};
use herald_tests::stack::shared_stack;
use herald_tests::{Call, TestEnv};
use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::config::{InboxSettings, SchedulerSettings};
use shared::protocol::{BroadcastChunk, Topic};
use shared::schedule::{FireReport, Scheduler};
use shared::store::inbox::IdempotencyClaim;
use shared::store::keys::topic_bucket;
use shared::store::topics::{BROADCAST_CHUNKS, BUCKETS_PER_CHUNK};
use shared::store::CreateOutcome;

fn broadcast_deps(env: &TestEnv) -> broadcast::Deps {
    broadcast::Deps::new(
        env.conn.clone(),
        env.keys.clone(),
        InboxSettings::default(),
        env.bus(),
    )
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn put_topic(deps: &api::Deps, key: &str) {
    let r = Call::put(&format!("/v1/topics/{key}"))
        .service("svc")
        .json(&json!({"name": "Course"}))
        .send(deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn subscribe(deps: &api::Deps, key: &str, ids: &[String]) -> Value {
    let r = Call::post(&format!("/v1/topics/{key}/subscribers"))
        .service("svc")
        .json(&json!({ "userIds": ids }))
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn start_broadcast(deps: &api::Deps, key: &str, extra: Value) -> String {
    let mut body = json!({"type": "course.news", "title": "Exam moved", "body": "Room 4"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = Call::post(&format!("/v1/topics/{key}/notifications"))
        .service("svc")
        .json(&body)
        .send(deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["topic"], key);
    assert_eq!(r.body["status"], "queued");
    r.body["broadcastId"]
        .as_str()
        .unwrap_or_else(|| panic!("no broadcastId in {}", r.body))
        .to_owned()
}

async fn broadcast_state(deps: &api::Deps, id: &str) -> Value {
    let r = Call::get(&format!("/v1/broadcasts/{id}"))
        .service("svc")
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The `broadcast-chunks` batch Lambda would deliver for broadcast `id`, one partition.
fn chunk_batch(id: &str) -> aws_lambda_events::event::kafka::KafkaEvent {
    let records: Vec<Value> =
        BroadcastChunk::all_records(&shared::tenant::Tenant::default_tenant(), id)
            .iter()
            .enumerate()
            .map(|(offset, r)| {
                json!({"topic": "broadcast-chunks", "partition": 0, "offset": offset,
                "timestamp": 0, "timestampType": "CREATE_TIME", "key": null,
                "value": STANDARD.encode(&r.payload), "headers": []})
            })
            .collect();
    serde_json::from_value(json!({"eventSource": "SelfManagedKafka",
        "records": {"broadcast-chunks-0": records}}))
    .unwrap_or_else(|e| panic!("event: {e}"))
}

fn chunk(id: &str, chunk: u16) -> BroadcastChunk {
    BroadcastChunk {
        v: shared::protocol::broadcast::BROADCAST_CHUNK_VERSION,
        broadcast_id: id.to_owned(),
        chunk,
        tenant: shared::tenant::Tenant::default_tenant(),
    }
}

/// How many notifications `user`'s inbox holds.
async fn inbox_total(env: &TestEnv, user: &str) -> u64 {
    env.store(InboxSettings::default())
        .counts(user)
        .await
        .unwrap_or_else(|e| panic!("counts of {user}: {e}"))
        .total
}

#[tokio::test]
async fn topics_are_created_renamed_paged_and_deleted() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    put_topic(&deps, "course:cs101").await;
    let renamed = Call::put("/v1/topics/course:cs101")
        .service("svc")
        .json(&json!({"name": "CS 101"}))
        .send(&deps)
        .await;
    assert_eq!(
        (renamed.status, &renamed.body["name"]),
        (200, &json!("CS 101"))
    );

    let members = users("student", 250);
    assert_eq!(
        subscribe(&deps, "course:cs101", &members).await["added"],
        250
    );
    // Already members count nothing; duplicates in one call count once.
    let again = vec![members[0].clone(), members[0].clone(), "late".to_owned()];
    assert_eq!(subscribe(&deps, "course:cs101", &again).await["added"], 1);
    let got = Call::get("/v1/topics/course:cs101")
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(
        got.body,
        json!({"key": "course:cs101", "name": "CS 101", "subscribers": 251})
    );

    // Pages of 37: every member exactly once.
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let mut call = Call::get("/v1/topics/course:cs101/subscribers")
            .service("svc")
            .query("limit", "37");
        if let Some(c) = &cursor {
            call = call.query("cursor", c);
        }
        let page = call.send(&deps).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 37);
        seen.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        pages += 1;
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (251, 251));

    let removed = Call::delete("/v1/topics/course:cs101/subscribers")
        .service("svc")
        .json(&json!({"userIds": [members[0], members[1], "stranger"]}))
        .send(&deps)
        .await;
    assert_eq!((removed.status, &removed.body["removed"]), (200, &json!(2)));

    // A member sees the topic among their own (any token); a stranger sees none.
    let mine = Call::get("/v1/me/topics")
        .user(&members[5])
        .send(&deps)
        .await;
    assert_eq!(
        mine.body,
        json!({"items": [{"key": "course:cs101", "name": "CS 101", "muted": false}]})
    );
    let none = Call::get("/v1/me/topics")
        .user("stranger")
        .send(&deps)
        .await;
    assert_eq!(none.body, json!({"items": []}));

    let deleted = Call::delete("/v1/topics/course:cs101")
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(deleted.status, 204);
    for path in [
        "/v1/topics/course:cs101",
        "/v1/topics/course:cs101/subscribers",
    ] {
        let gone = Call::get(path).service("svc").send(&deps).await;
        assert_eq!(gone.status, 404, "{path}");
    }
    let left: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains("{t:"))
        .collect();
    assert!(left.is_empty(), "a deleted topic left {left:?}");
}

#[tokio::test]
async fn bad_input_is_refused_with_problem_json_and_writes_nothing() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let before = env.keys().await;
    let too_many = users("u", 1_001);
    let cases: Vec<(Call, u16, &str)> = vec![
        (Call::put("/v1/topics/bad{key}").service("svc"), 422, "key"),
        (
            Call::put(&format!("/v1/topics/{}", "k".repeat(129))).service("svc"),
            422,
            "key",
        ),
        (
            Call::put("/v1/topics/news")
                .service("svc")
                .json(&json!({"name": "a\u{7}b"})),
            422,
            "name",
        ),
        (Call::get("/v1/topics/unknown").service("svc"), 404, ""),
        (Call::delete("/v1/topics/unknown").service("svc"), 404, ""),
        (
            Call::post("/v1/topics/unknown/subscribers")
                .service("svc")
                .json(&json!({"userIds": ["a"]})),
            404,
            "",
        ),
        (
            Call::post("/v1/topics/unknown/subscribers")
                .service("svc")
                .json(&json!({ "userIds": too_many })),
            413,
            "",
        ),
        (
            Call::post("/v1/topics/unknown/subscribers")
                .service("svc")
                .json(&json!({"userIds": ["ok", "bad user"]})),
            422,
            "userIds[1]",
        ),
        (
            Call::post("/v1/topics/unknown/subscribers")
                .service("svc")
                .json(&json!({"userIds": []})),
            422,
            "userIds",
        ),
        (
            Call::post("/v1/topics/unknown/notifications")
                .service("svc")
                .json(&json!({"type": "x", "title": "t", "body": "b"})),
            404,
            "",
        ),
        (
            Call::post("/v1/topics/unknown/notifications")
                .service("svc")
                .json(&json!({"userId": "a", "type": "x", "title": "t", "body": "b"})),
            422,
            "userId",
        ),
        (
            Call::post("/v1/topics/unknown/notifications")
                .service("svc")
                .json(&json!({"type": "x", "title": "t", "body": "b", "maxPerSecond": 0})),
            422,
            "maxPerSecond",
        ),
        (
            Call::post("/v1/topics/unknown/notifications")
                .service("svc")
                .json(&json!({"type": "Bad Type", "title": "t", "body": "b"})),
            422,
            "type",
        ),
        // A user token lacks `notifications:write`.
        (Call::put("/v1/topics/news").user("alice"), 403, ""),
        (
            Call::get("/v1/broadcasts/00000000-0000-7000-8000-000000000000").service("svc"),
            404,
            "",
        ),
        (
            Call::post("/v1/broadcasts/not-an-id/cancel").service("svc"),
            404,
            "",
        ),
        (
            Call::put("/v1/preferences")
                .user("alice")
                .json(&json!({"topics": {"bad key": false}})),
            422,
            "topics.bad key",
        ),
    ];
    for (call, status, field) in cases {
        let r = call.send(&deps).await;
        assert_eq!(r.status, status, "{call:?}: {}", r.body);
        assert_eq!(r.content_type(), "application/problem+json", "{call:?}");
        if !field.is_empty() {
            assert!(
                r.error_fields().iter().any(|f| f == field),
                "{call:?} should name {field}: {}",
                r.body
            );
        }
    }
    // The only thing written is the mutation limit's state of the user who tried preferences.
    let written: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| !before.contains(k) && !k.ends_with(":mutrate") && !k.contains("{s:"))
        .collect();
    assert!(written.is_empty(), "refused calls wrote {written:?}");
}

#[tokio::test]
async fn every_subscriber_gets_one_notification_through_concurrent_and_redelivered_batches() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fanout = broadcast_deps(&env);
    put_topic(&deps, "news").await;
    let members = users("reader", 300);
    subscribe(&deps, "news", &members).await;
    let muted = &members[7];
    let prefs = Call::put("/v1/preferences")
        .user(muted)
        .json(&json!({"topics": {"news": false}}))
        .send(&deps)
        .await;
    assert_eq!(prefs.status, 200, "{}", prefs.body);
    let mine = Call::get("/v1/me/topics").user(muted).send(&deps).await;
    assert_eq!(mine.body["items"][0]["muted"], true);

    let id = start_broadcast(&deps, "news", json!({})).await;
    // The api produced one record per chunk.
    let produced = env
        .consume(Topic::BroadcastChunks, BROADCAST_CHUNKS as usize)
        .await;
    assert_eq!(produced.len(), BROADCAST_CHUNKS as usize);

    // The same batch twice at once (two pollers after a rebalance), then once more
    // (a redelivery after a crash before the commit to Kafka).
    let event = chunk_batch(&id);
    let (a, b) = futures::join!(
        broadcast::fan_out_batch(&fanout, &event),
        broadcast::fan_out_batch(&fanout, &event)
    );
    let (c, _) = broadcast::fan_out_batch(&fanout, &event).await;
    for response in [&a.0, &b.0, &c] {
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    let state = broadcast_state(&deps, &id).await;
    assert_eq!(
        state,
        json!({"id": id, "topic": "news", "status": "done", "targeted": 300,
            "created": 299, "skipped": 1, "failed": 0})
    );
    for user in &members {
        let expected = u64::from(user != muted);
        assert_eq!(inbox_total(&env, user).await, expected, "{user}");
    }
    let list = Call::get("/v1/notifications")
        .user(&members[0])
        .send(&deps)
        .await;
    let item = &list.body["items"][0];
    assert_eq!(
        (&item["title"], &item["type"], &item["seq"]),
        (&json!("Exam moved"), &json!("course.news"), &json!(1))
    );
    // Each created notification was published once, like any create.
    let events = env.consume(Topic::NotificationEvents, 299).await;
    assert_eq!(events.len(), 299);
}

/// A run after an earlier one that served only some recipients (a chunk cut off half-way): within
/// each group of the batched creates the served recipients replay and the others are created,
/// each counted once as created, each inbox holding one notification with seq 1, and each new
/// one published and marked published (nothing left for the relay).
#[tokio::test]
async fn a_run_after_a_partial_one_creates_the_rest_and_counts_each_recipient_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fanout = broadcast_deps(&env);
    put_topic(&deps, "partial").await;
    let members = users("partial", 130);
    subscribe(&deps, "partial", &members).await;
    let id = start_broadcast(&deps, "partial", json!({})).await;
    let broadcast = fanout
        .topics
        .broadcast(&id)
        .await
        .unwrap_or_else(|e| panic!("broadcast: {e}"))
        .unwrap_or_else(|| panic!("no broadcast {id}"));
    let claim = IdempotencyClaim {
        key: format!("broadcast:{id}"),
        body_hash: id.clone(),
    };
    // The earlier run served every third recipient (one create each, as before batching).
    let served: BTreeSet<&String> = members.iter().step_by(3).collect();
    for user in &served {
        let mut new = broadcast.notification.clone();
        new.user_id = (*user).clone();
        let outcome = fanout
            .store
            .create(&broadcast.sender, new, Some(&claim))
            .await
            .unwrap_or_else(|e| panic!("create for {user}: {e}"));
        assert!(
            matches!(outcome, CreateOutcome::Created { .. }),
            "{outcome:?}"
        );
    }

    let (response, stats) = broadcast::fan_out_batch(&fanout, &chunk_batch(&id)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((stats.created, stats.skipped, stats.failed), (130, 0, 0));
    let state = broadcast_state(&deps, &id).await;
    assert_eq!(
        state,
        json!({"id": id, "topic": "partial", "status": "done", "targeted": 130,
            "created": 130, "skipped": 0, "failed": 0})
    );
    let store = env.store(InboxSettings::default());
    let mut conn = env.conn.clone();
    for user in &members {
        let counts = store
            .counts(user)
            .await
            .unwrap_or_else(|e| panic!("counts of {user}: {e}"));
        assert_eq!((counts.total, counts.version), (1, 1), "{user}");
        if !served.contains(user) {
            let unpublished: u64 = conn
                .zcard(store.user_keys(user).unpub())
                .await
                .unwrap_or_else(|e| panic!("unpublished of {user}: {e}"));
            assert_eq!(unpublished, 0, "{user}'s create is marked published");
        }
    }
    let events = env
        .consume(Topic::NotificationEvents, members.len() - served.len())
        .await;
    assert_eq!(events.len(), members.len() - served.len());
}

#[tokio::test]
async fn a_cancel_stops_the_fan_out_and_the_counts_match_the_inboxes() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fanout = broadcast_deps(&env);
    put_topic(&deps, "alerts").await;
    // Members of chunk 0 (about 60: a minute of budget at one a second, far more than a cancel
    // takes to land however slow the machine) and of other chunks.
    let all = users("member", 2_000);
    let (first, rest): (Vec<String>, Vec<String>) = all
        .iter()
        .cloned()
        .partition(|u| topic_bucket(u) < BUCKETS_PER_CHUNK);
    assert!(first.len() >= 3 && !rest.is_empty());
    for part in all.chunks(1_000) {
        subscribe(&deps, "alerts", part).await;
    }

    // One recipient a second: a run of chunk 0 creates one, then waits about a second for the
    // next. Cancel once the first notification exists.
    let id = start_broadcast(&deps, "alerts", json!({"maxPerSecond": 1})).await;
    let run = tokio::spawn({
        let (fanout, id) = (fanout.clone(), id.clone());
        async move { broadcast::fan_out_chunk(&fanout, &chunk(&id, 0)).await }
    });
    let first_reached = async {
        loop {
            let mut reached = 0;
            for user in &first {
                reached += inbox_total(&env, user).await;
            }
            if reached > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), first_reached)
        .await
        .is_err()
    {
        panic!("chunk 0 reached nobody");
    }
    let cancelled = Call::post(&format!("/v1/broadcasts/{id}/cancel"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(
        (cancelled.status, &cancelled.body["status"]),
        (200, &json!("cancelled"))
    );
    let chunk0 = run
        .await
        .unwrap_or_else(|e| panic!("run: {e}"))
        .unwrap_or_else(|e| panic!("chunk 0: {e}"));
    assert!(chunk0.committed);
    // The chunks not started yet run after the cancel: they send nothing.
    for c in 1..BROADCAST_CHUNKS {
        let later = broadcast::fan_out_chunk(&fanout, &chunk(&id, c))
            .await
            .unwrap_or_else(|e| panic!("chunk {c}: {e}"));
        assert_eq!(later.counts.created, 0);
    }

    let mut holders = 0;
    for user in &all {
        holders += inbox_total(&env, user).await;
    }
    for user in &rest {
        assert_eq!(
            inbox_total(&env, user).await,
            0,
            "{user} got it after the cancel"
        );
    }
    let state = broadcast_state(&deps, &id).await;
    assert_eq!(state["status"], "cancelled");
    assert_eq!(state["created"], holders);
    assert_eq!(state["created"], chunk0.counts.created);
    assert!(
        holders >= 1 && holders < first.len() as u64,
        "{holders} of {}",
        first.len()
    );
    // Cancelling again changes nothing.
    let again = Call::post(&format!("/v1/broadcasts/{id}/cancel"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(again.body, state);
}

#[tokio::test]
async fn an_empty_topic_is_done_with_nobody_targeted_and_a_retry_names_the_same_broadcast() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fanout = broadcast_deps(&env);
    put_topic(&deps, "quiet").await;
    let body = json!({"type": "x", "title": "t", "body": "b"});
    let call = Call::post("/v1/topics/quiet/notifications")
        .service("svc")
        .header("Idempotency-Key", "q-1")
        .json(&body);
    let first = call.send(&deps).await;
    let retry = call.send(&deps).await;
    assert_eq!((first.status, retry.status), (202, 202));
    assert_eq!(first.body["broadcastId"], retry.body["broadcastId"]);
    let id = first.body["broadcastId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (response, _) = broadcast::fan_out_batch(&fanout, &chunk_batch(&id)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        broadcast_state(&deps, &id).await,
        json!({"id": id, "topic": "quiet", "status": "done", "targeted": 0,
            "created": 0, "skipped": 0, "failed": 0})
    );
    let other = Call::post("/v1/topics/quiet/notifications")
        .service("svc")
        .header("Idempotency-Key", "q-1")
        .json(&json!({"type": "x", "title": "other", "body": "b"}))
        .send(&deps)
        .await;
    assert_eq!(other.status, 422, "{}", other.body);
}

#[tokio::test]
async fn a_broadcast_reaches_a_subscribers_websocket_through_devstack() {
    let Some(stack) = shared_stack() else { return };
    let user = format!("fan-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let topic = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let token = stack.token(
        "e2e-service",
        &["notifications:write"],
        Duration::from_secs(300),
    );
    let client = herald_tests::stack::http_client();
    let call = |method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, stack.http_url(&path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let put = call(
        reqwest::Method::PUT,
        format!("/v1/topics/{topic}"),
        json!({}),
    )
    .await
    .unwrap_or_else(|e| panic!("PUT topic: {e}"));
    assert_eq!(put.status(), 201);
    let sub = call(
        reqwest::Method::POST,
        format!("/v1/topics/{topic}/subscribers"),
        json!({"userIds": [user]}),
    )
    .await
    .unwrap_or_else(|e| panic!("subscribe: {e}"));
    assert_eq!(sub.status(), 200);
    let mut socket = stack.connect(&user).await;
    let sent = call(
        reqwest::Method::POST,
        format!("/v1/topics/{topic}/notifications"),
        json!({"type": "course.news", "title": "To everyone", "body": "hi"}),
    )
    .await
    .unwrap_or_else(|e| panic!("broadcast: {e}"));
    assert_eq!(sent.status(), 202);
    let frame = socket
        .next_of("notification.created", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no notification.created frame"));
    assert_eq!(frame["notification"]["title"], "To everyone");
    assert_eq!(frame["counts"]["unread"], 1);
    socket.close().await;
}

#[tokio::test]
async fn the_demo_page_broadcast_reaches_the_callers_websocket_through_devstack() {
    let Some(stack) = shared_stack() else { return };
    let user = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let client = herald_tests::stack::http_client();
    let session: Value = client
        .get(stack.http_url(&format!("/_devstack/demo/session?user={user}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("session: {e}"))
        .json()
        .await
        .unwrap_or_default();
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    let mut socket = stack.connect(&user).await;
    let sent = client
        .post(stack.http_url("/_devstack/demo/broadcast"))
        .bearer_auth(&token)
        .json(&json!({"title": "Hello, topic"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("demo broadcast: {e}"));
    assert_eq!(sent.status(), 202);
    let accepted: Value = sent.json().await.unwrap_or_default();
    assert_eq!(accepted["topic"], devstack::demo::DEMO_TOPIC);
    let frame = socket
        .next_of("notification.created", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no notification.created frame"));
    assert_eq!(frame["notification"]["title"], "Hello, topic");
    socket.close().await;
}

/// The scheduler's lease in these tests.
const LEASE: Duration = Duration::from_secs(30);

fn scheduler(env: &TestEnv) -> Scheduler {
    scheduler_on(env, env.bus())
}

fn scheduler_on(env: &TestEnv, bus: shared::bus::EventBus) -> Scheduler {
    let settings = SchedulerSettings {
        run: Duration::from_secs(1),
        poll: Duration::from_millis(50),
        lease: LEASE,
    };
    scheduler::Deps::new(
        env.conn.clone(),
        env.keys.clone(),
        TestEnv::unlimited(),
        settings,
        bus,
    )
    .scheduler
}

async fn fire(s: &Scheduler, at: DateTime<Utc>) -> FireReport {
    s.fire_due(at)
        .await
        .unwrap_or_else(|e| panic!("fire_due: {e}"))
}

/// Puts the scheduler's job `job` back as it was while being fired (claimed, not marked sent):
/// what a ticker that crashed after its work leaves behind, once the lease has ended.
async fn undo_settle(env: &TestEnv, job: &str, stored: &str, send_at: DateTime<Utc>) {
    let mut conn = env.conn.clone();
    let _: () = conn
        .hset(env.keys.schedule_jobs(), job, stored)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = conn
        .hset(env.keys.schedule_state(), job, "firing")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = conn
        .zadd(env.keys.schedule_due(), job, send_at.timestamp_millis())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Posts a broadcast to `key` due at `send_at`; answers its id after checking the `202`.
async fn schedule_broadcast(deps: &api::Deps, key: &str, send_at: DateTime<Utc>) -> String {
    let r = Call::post(&format!("/v1/topics/{key}/notifications"))
        .service("svc")
        .json(
            &json!({"type": "course.news", "title": "Exam tomorrow", "body": "Room 4",
            "sendAt": send_at.to_rfc3339()}),
        )
        .send(deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        (&r.body["topic"], &r.body["status"]),
        (&json!(key), &json!("scheduled"))
    );
    let answered = r.body["sendAt"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    assert_eq!(answered, Some(send_at.timestamp_millis()), "{}", r.body);
    r.body["broadcastId"]
        .as_str()
        .unwrap_or_else(|| panic!("no broadcastId in {}", r.body))
        .to_owned()
}

#[tokio::test]
async fn a_scheduled_broadcast_is_invisible_until_due_then_reaches_the_subscribers_then_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fanout = broadcast_deps(&env);
    let (a, b) = (scheduler(&env), scheduler(&env));
    put_topic(&deps, "exams").await;
    let members = users("student", 40);
    subscribe(&deps, "exams", &members[..30]).await;
    let send_at = Utc::now() + Span::minutes(10);
    let id = schedule_broadcast(&deps, "exams", send_at).await;

    let state = broadcast_state(&deps, &id).await;
    assert_eq!(
        (&state["status"], &state["created"]),
        (&json!("scheduled"), &json!(0))
    );
    assert_eq!(fire(&a, Utc::now()).await.claimed, 0, "not due yet");
    // A stray run of its chunks before it started creates nothing and commits nothing.
    let (early, _) = broadcast::fan_out_batch(&fanout, &chunk_batch(&id)).await;
    assert!(early.batch_item_failures.is_empty(), "{early:?}");
    assert_eq!(broadcast_state(&deps, &id).await["status"], "scheduled");
    for user in &members {
        assert_eq!(inbox_total(&env, user).await, 0, "{user} before sendAt");
    }
    // Subscribers at send time: ten more join before it is due.
    subscribe(&deps, "exams", &members[30..]).await;

    let job = format!("broadcast:{id}");
    let stored: String = env
        .conn
        .clone()
        .hget(env.keys.schedule_jobs(), &job)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Two tickers at sendAt: one of them starts it.
    let (ra, rb) = tokio::join!(fire(&a, send_at), fire(&b, send_at));
    assert_eq!(
        (
            ra.claimed + rb.claimed,
            ra.broadcasts_started + rb.broadcasts_started
        ),
        (1, 1),
        "{ra:?} {rb:?}"
    );
    let started = broadcast_state(&deps, &id).await;
    assert_eq!(
        (&started["status"], &started["targeted"]),
        (&json!("queued"), &json!(40))
    );

    // A ticker that started it and crashed before marking its job sent: the job comes due
    // again and fires a second time while the broadcast is still queued (its chunks are
    // produced again), and a third time after it ran (nothing is produced).
    undo_settle(&env, &job, &stored, send_at).await;
    assert_eq!(fire(&a, send_at).await.broadcasts_started, 1);
    let (first_run, _) = broadcast::fan_out_batch(&fanout, &chunk_batch(&id)).await;
    let (second_run, _) = broadcast::fan_out_batch(&fanout, &chunk_batch(&id)).await;
    for response in [&first_run, &second_run] {
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    undo_settle(&env, &job, &stored, send_at).await;
    let third = fire(&b, send_at).await;
    assert_eq!(
        (
            third.claimed,
            third.broadcasts_started,
            third.broadcasts_skipped
        ),
        (1, 0, 1),
        "{third:?}"
    );

    let done = broadcast_state(&deps, &id).await;
    assert_eq!(
        done,
        json!({"id": id, "topic": "exams", "status": "done", "sendAt": done["sendAt"],
            "targeted": 40, "created": 40, "skipped": 0, "failed": 0})
    );
    for user in &members {
        assert_eq!(inbox_total(&env, user).await, 1, "{user}");
    }
    // Two starts produced chunks (nothing at the 202, nothing at the third firing).
    let produced = env
        .consume(Topic::BroadcastChunks, 2 * BROADCAST_CHUNKS as usize)
        .await;
    assert_eq!(produced.len(), 2 * BROADCAST_CHUNKS as usize);
    let events = env.consume(Topic::NotificationEvents, 40).await;
    assert_eq!(events.len(), 40, "each notification published once");
}

#[tokio::test]
async fn a_scheduled_broadcast_whose_chunks_kafka_refused_starts_after_the_lease() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    put_topic(&deps, "labs").await;
    subscribe(&deps, "labs", &users("lab", 5)).await;
    let send_at = Utc::now() + Span::minutes(3);
    let id = schedule_broadcast(&deps, "labs", send_at).await;

    let down = fire(&scheduler_on(&env, env.dead_bus()), send_at).await;
    assert_eq!(
        (down.claimed, down.failed, down.broadcasts_started),
        (1, 1, 0),
        "{down:?}"
    );
    let up = scheduler(&env);
    assert_eq!(fire(&up, send_at).await.claimed, 0, "leased");
    let after_lease = send_at + Span::from_std(LEASE).unwrap_or_default() + Span::seconds(1);
    assert_eq!(fire(&up, after_lease).await.broadcasts_started, 1);
    let produced = env
        .consume(Topic::BroadcastChunks, BROADCAST_CHUNKS as usize)
        .await;
    assert_eq!(produced.len(), BROADCAST_CHUNKS as usize);
    assert_eq!(broadcast_state(&deps, &id).await["status"], "queued");
}

#[tokio::test]
async fn a_scheduled_broadcast_cancelled_before_it_is_due_sends_nothing() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fired = scheduler(&env);
    put_topic(&deps, "trips").await;
    let members = users("traveller", 20);
    subscribe(&deps, "trips", &members).await;
    let send_at = Utc::now() + Span::hours(2);
    let id = schedule_broadcast(&deps, "trips", send_at).await;

    let r = Call::post(&format!("/v1/broadcasts/{id}/cancel"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert!(r.body["sendAt"].is_string(), "{}", r.body);

    let report = fire(&fired, send_at).await;
    assert_eq!(
        (
            report.claimed,
            report.broadcasts_started,
            report.broadcasts_skipped
        ),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(fire(&fired, send_at + Span::hours(1)).await.claimed, 0);
    let state = broadcast_state(&deps, &id).await;
    assert_eq!(
        (&state["status"], &state["created"]),
        (&json!("cancelled"), &json!(0))
    );
    for user in &members {
        assert_eq!(inbox_total(&env, user).await, 0, "{user}");
    }
    // Even a chunk run (none was produced: nothing started) creates nothing.
    let (run, _) = broadcast::fan_out_batch(&broadcast_deps(&env), &chunk_batch(&id)).await;
    assert!(run.batch_item_failures.is_empty(), "{run:?}");
    for user in &members {
        assert_eq!(
            inbox_total(&env, user).await,
            0,
            "{user} after a stray chunk run"
        );
    }
}

#[tokio::test]
async fn a_bad_send_at_on_a_broadcast_is_422_naming_the_field_and_stores_nothing() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    put_topic(&deps, "labs").await;
    subscribe(&deps, "labs", &users("lab", 3)).await;
    let now = Utc::now();
    let cases = [
        (
            json!({"sendAt": (now - Span::minutes(1)).to_rfc3339()}),
            "sendAt",
        ),
        (
            json!({"sendAt": (now + Span::days(31)).to_rfc3339()}),
            "sendAt",
        ),
        (json!({"sendAt": "next tuesday"}), "sendAt"),
        (json!({"sendAt": "optimal"}), "sendAt"),
        (json!({"sendAt": "optimal", "within": "2h"}), "sendAt"),
        (json!({"within": "2h"}), "within"),
        (
            json!({"sendAt": (now + Span::hours(1)).to_rfc3339(), "cancelKey": "k"}),
            "cancelKey",
        ),
    ];
    for (extra, field) in cases {
        let mut body = json!({"type": "lab.news", "title": "t", "body": "b"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = Call::post("/v1/topics/labs/notifications")
            .service("svc")
            .json(&body)
            .send(&deps)
            .await;
        assert_eq!(
            (r.status, r.error_fields()),
            (422, vec![field.to_owned()]),
            "{extra}: {}",
            r.body
        );
    }
    let mut conn = env.conn.clone();
    let pending: u64 = conn
        .zcard(env.keys.schedule_due())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pending, 0, "no start job");
    let broadcasts: Vec<String> = conn
        .keys(env.keys.broadcast("*").state())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(broadcasts.is_empty(), "no broadcast: {broadcasts:?}");
}
