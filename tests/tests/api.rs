//! The HTTP API end to end through `api::handle`, on real Redis and a real Kafka-protocol broker:
//! every route for its owner, isolation between users, auth, hostile input, idempotency, exact
//! counts under concurrency and rate limits.

use std::time::Duration;

use futures::future::join_all;
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::config::InboxSettings;

fn note(user: &str, title: &str) -> Value {
    json!({"userId": user, "type": "comment", "title": title, "body": "hello", "data": {"postId": 7}, "channels": ["IN_APP", "EMAIL"]})
}

async fn create(deps: &api::Deps, user: &str, title: &str) -> Value {
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&note(user, title))
        .send(deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn counts(deps: &api::Deps, user: &str) -> Value {
    let r = Call::get("/v1/notifications/counts")
        .user(user)
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn every_inbox_route_works_for_its_owner() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let n = create(&deps, "alice", "first").await;
    for key in [
        "id",
        "seq",
        "userId",
        "type",
        "title",
        "body",
        "data",
        "channels",
        "priority",
        "read",
        "seen",
        "archived",
        "createdAt",
    ] {
        assert!(
            n.get(key).is_some(),
            "created notification lacks {key}: {n}"
        );
    }
    assert_eq!(
        (
            n["seq"].as_u64(),
            n["read"].as_bool(),
            n["priority"].as_str()
        ),
        (Some(1), Some(false), Some("normal"))
    );
    let id = n["id"].as_str().unwrap_or_default().to_owned();
    let second = create(&deps, "alice", "second").await;

    let got = Call::get(&format!("/v1/notifications/{id}"))
        .user("alice")
        .send(&deps)
        .await;
    assert_eq!(
        (got.status, got.body["title"].as_str()),
        (200, Some("first"))
    );

    let list = Call::get("/v1/notifications")
        .user("alice")
        .send(&deps)
        .await;
    assert_eq!(list.status, 200);
    let titles: Vec<&str> = list.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["title"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(titles, ["second", "first"], "newest first");
    assert_eq!(list.body["nextCursor"], Value::Null);

    let c = counts(&deps, "alice").await;
    assert_eq!(
        (
            c["unread"].as_u64(),
            c["unseen"].as_u64(),
            c["total"].as_u64(),
            c["version"].as_u64()
        ),
        (Some(2), Some(2), Some(2), Some(2))
    );
    assert_eq!(c["byType"], json!({"comment": 2}));

    let read = Call::patch(&format!("/v1/notifications/{id}"))
        .user("alice")
        .json(&json!({"read": true}))
        .send(&deps)
        .await;
    assert_eq!(
        (
            read.status,
            read.body["read"].as_bool(),
            read.body["seen"].as_bool()
        ),
        (200, Some(true), Some(true)),
        "reading marks seen"
    );
    let unread_only = Call::get("/v1/notifications")
        .user("alice")
        .query("status", "unread")
        .send(&deps)
        .await;
    assert_eq!(unread_only.body["items"].as_array().map(Vec::len), Some(1));

    let archived = Call::patch(&format!(
        "/v1/notifications/{}",
        second["id"].as_str().unwrap_or_default()
    ))
    .user("alice")
    .json(&json!({"archived": true}))
    .send(&deps)
    .await;
    assert_eq!(archived.status, 200);
    let c = counts(&deps, "alice").await;
    assert_eq!(
        (c["unread"].as_u64(), c["total"].as_u64()),
        (Some(0), Some(1)),
        "archived notifications leave the counts: {c}"
    );
    let with_archived = Call::get("/v1/notifications")
        .user("alice")
        .query("archived", "true")
        .send(&deps)
        .await;
    assert_eq!(
        with_archived.body["items"].as_array().map(Vec::len),
        Some(1)
    );

    create(&deps, "alice", "third").await;
    let all_read = Call::post("/v1/notifications/mark-all-read")
        .user("alice")
        .send(&deps)
        .await;
    // The archived "second" is unread too: mark-all-read covers archived notifications.
    assert_eq!(
        (
            all_read.status,
            all_read.body["updated"].as_u64(),
            all_read.body["counts"]["unread"].as_u64()
        ),
        (200, Some(2), Some(0))
    );

    let changes = Call::get("/v1/changes")
        .user("alice")
        .query("since", "0")
        .send(&deps)
        .await;
    assert_eq!(changes.status, 200);
    let types: Vec<&str> = changes.body["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        types,
        [
            "NOTIFICATION_CREATED",
            "NOTIFICATION_CREATED",
            "NOTIFICATION_UPDATED",
            "NOTIFICATION_UPDATED",
            "NOTIFICATION_CREATED",
            "ALL_READ"
        ]
    );
    assert_eq!(changes.body["upTo"].as_u64(), Some(6));
    assert_eq!(
        changes.body["changes"][2]["payload"]["changes"],
        json!({"read": true, "seen": true})
    );
    let tail = Call::get("/v1/changes")
        .user("alice")
        .query("since", "5")
        .send(&deps)
        .await;
    assert_eq!(tail.body["changes"].as_array().map(Vec::len), Some(1));

    let del = Call::delete(&format!("/v1/notifications/{id}"))
        .user("alice")
        .send(&deps)
        .await;
    assert_eq!(del.status, 204);
    let gone = Call::get(&format!("/v1/notifications/{id}"))
        .user("alice")
        .send(&deps)
        .await;
    assert_eq!(gone.status, 404);

    let prefs = json!({"default": {"EMAIL": false}, "types": {"comment": {"EMAIL": true}}, "quietHours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"}});
    let put = Call::put("/v1/preferences")
        .user("alice")
        .json(&prefs)
        .send(&deps)
        .await;
    assert_eq!((put.status, &put.body), (200, &prefs));
    let get = Call::get("/v1/preferences").user("alice").send(&deps).await;
    assert_eq!(get.body, prefs);
}

#[tokio::test]
async fn another_users_notification_is_404_and_untouched() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let n = create(&deps, "alice", "private").await;
    let path = format!("/v1/notifications/{}", n["id"].as_str().unwrap_or_default());
    assert_eq!(Call::get(&path).user("bob").send(&deps).await.status, 404);
    assert_eq!(
        Call::patch(&path)
            .user("bob")
            .json(&json!({"read": true}))
            .send(&deps)
            .await
            .status,
        404
    );
    assert_eq!(
        Call::delete(&path).user("bob").send(&deps).await.status,
        404
    );
    let bob_all = Call::post("/v1/notifications/mark-all-read")
        .user("bob")
        .send(&deps)
        .await;
    assert_eq!(bob_all.body["updated"].as_u64(), Some(0));
    let bob_list = Call::get("/v1/notifications").user("bob").send(&deps).await;
    assert_eq!(bob_list.body["items"], json!([]));
    assert_eq!(
        Call::get("/v1/changes")
            .user("bob")
            .query("since", "0")
            .send(&deps)
            .await
            .body["changes"],
        json!([])
    );
    // A user id in the query or body of a user route is ignored: only `sub` counts.
    let sneaky = Call::get("/v1/notifications")
        .user("bob")
        .query("userId", "alice")
        .send(&deps)
        .await;
    assert_eq!(sneaky.body["items"], json!([]));
    let alice = Call::get(&path).user("alice").send(&deps).await;
    assert_eq!(
        (alice.status, alice.body["read"].as_bool()),
        (200, Some(false))
    );
    assert_eq!(counts(&deps, "alice").await["unread"].as_u64(), Some(1));
}

#[tokio::test]
async fn missing_claims_are_401_and_missing_scope_is_403() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    for call in [
        Call::get("/v1/notifications"),
        Call::get("/v1/notifications/counts"),
        Call::get("/v1/changes"),
        Call::get("/v1/preferences"),
        Call::post("/v1/notifications").json(&note("alice", "x")),
    ] {
        let r = call.send(&deps).await;
        assert_eq!(
            (r.status, r.content_type()),
            (401, "application/problem+json"),
            "{}",
            r.body
        );
    }
    let r = Call::post("/v1/notifications")
        .user("alice")
        .json(&note("alice", "x"))
        .send(&deps)
        .await;
    assert_eq!((r.status, r.body["status"].as_u64()), (403, Some(403)));
    let r = Call::post("/v1/notifications/batch")
        .user("alice")
        .scope("analytics:read")
        .json(&json!({"userIds": ["a"], "type": "t", "title": "x", "body": ""}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        counts(&deps, "alice").await["total"].as_u64(),
        Some(0),
        "nothing stored"
    );
    let health = Call::get("/v1/health")
        .user("ops")
        .scope("health:read")
        .send(&deps)
        .await;
    assert_eq!(
        (
            health.status,
            health.body["redis"]["ok"].as_bool(),
            health.body["kafka"]["ok"].as_bool()
        ),
        (200, Some(true), Some(true)),
        "{}",
        health.body
    );
    let doc = Call::get("/openapi.json").send(&deps).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    for path in [
        "/v1/notifications",
        "/v1/notifications/batch",
        "/v1/notifications/{id}",
        "/v1/changes",
        "/v1/preferences",
        "/health",
        "/v1/health",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "openapi lacks {path}"
        );
    }
}

#[tokio::test]
async fn a_token_whose_subject_is_not_a_user_id_is_401_on_every_route() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    // The subjects the WebSocket $connect refuses: they would break the {u:<userId>} hash tag.
    for sub in ["{u:x}", "x}", "a b"] {
        for call in [
            Call::get("/v1/notifications").user(sub),
            Call::get("/v1/notifications/counts").user(sub),
            Call::post("/v1/notifications/mark-all-read").user(sub),
            Call::get("/v1/changes").user(sub),
            Call::get("/v1/preferences").user(sub),
            Call::get("/v1/push-subscriptions").user(sub),
            Call::post("/v1/notifications")
                .service(sub)
                .json(&note("alice", "x")),
            Call::get("/v1/analytics")
                .user(sub)
                .scope("analytics:read")
                .query("from", "2026-01-01"),
        ] {
            let r = call.send(&deps).await;
            assert_eq!(
                (r.status, r.content_type()),
                (401, "application/problem+json"),
                "sub {sub:?}: {}",
                r.body
            );
        }
    }
    assert_eq!(
        counts(&deps, "alice").await["total"].as_u64(),
        Some(0),
        "nothing stored"
    );
    assert!(env.keys().await.iter().all(|k| !k.contains("{u:{u:x}")));
}

#[tokio::test]
async fn control_characters_in_any_delivered_text_are_422_per_field_and_nothing_is_stored() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    // Escaped in the JSON, as an attacker sends them: NUL, CR LF, vertical tab, NEL, U+2028.
    for escaped in [
        r"\u0000",
        r"\r\nBcc: x@evil.test",
        r"\u000b",
        r"\u0085",
        r"\u2028",
    ] {
        let body = format!(
            r#"{{"userId": "alice", "type": "comment", "title": "a{escaped}", "body": "b{escaped}",
                "actionUrl": "/n/{escaped}", "groupKey": "g{escaped}"}}"#
        );
        for path in ["/v1/notifications", "/v1/notifications/batch"] {
            let body = if path.ends_with("batch") {
                body.replace(r#""userId": "alice""#, r#""userIds": ["alice"]"#)
            } else {
                body.clone()
            };
            let r = Call::post(path)
                .service("svc")
                .raw_json(&body)
                .send(&deps)
                .await;
            let mut fields = r.error_fields();
            fields.sort();
            assert_eq!(
                (r.status, r.content_type(), fields),
                (
                    422,
                    "application/problem+json",
                    vec![
                        "actionUrl".to_owned(),
                        "body".into(),
                        "groupKey".into(),
                        "title".into()
                    ]
                ),
                "{path} {escaped}: {}",
                r.body
            );
        }
    }
    assert_eq!(
        counts(&deps, "alice").await["total"].as_u64(),
        Some(0),
        "nothing stored"
    );
    // Tab and newline stay allowed in the body.
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&json!({"userId": "alice", "type": "comment", "title": "t", "body": "one\n\ttwo"}))
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.body["body"].as_str()),
        (201, Some("one\n\ttwo"))
    );
}

#[tokio::test]
async fn public_health_reveals_nothing_and_readiness_needs_a_scope_and_caches_the_kafka_check() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    // Kafka down: the readiness check fails, and its cause must not leak.
    let mut deps = env.api_with(InboxSettings::default(), env.dead_bus());
    // A TTL no test run can outlast, so the second call must be served from the cache.
    deps.kafka_check = api::routes::health::KafkaCheckCache::new(Duration::from_secs(3600));
    let live = Call::get("/health").send(&deps).await;
    assert_eq!(
        (live.status, &live.body),
        (200, &json!({"status": "ok"})),
        "liveness says nothing else"
    );

    let readiness = Call::get("/v1/health");
    assert_eq!(readiness.clone().send(&deps).await.status, 401);
    assert_eq!(
        readiness.clone().user("alice").send(&deps).await.status,
        403
    );
    let ops = readiness.user("ops").scope("health:read");
    let first = ops.send(&deps).await;
    assert_eq!(
        (
            first.status,
            first.body["status"].as_str(),
            first.body["redis"]["ok"].as_bool(),
            first.body["kafka"]["ok"].as_bool(),
            first.body["kafka"]["error"].as_str()
        ),
        (
            200,
            Some("degraded"),
            Some(true),
            Some(false),
            Some("unreachable")
        ),
        "{}",
        first.body
    );
    let second = ops.send(&deps).await;
    assert_eq!(
        second.body["kafka"]["checkedAt"], first.body["kafka"]["checkedAt"],
        "the Kafka check is cached: {} then {}",
        first.body, second.body
    );
    assert_ne!(
        second.body["redis"]["checkedAt"],
        Value::Null,
        "Redis is checked on every call"
    );
}

#[tokio::test]
async fn bad_input_gets_a_precise_problem_and_stores_nothing() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let base = note("alice", "ok");
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let create = |body: Value| Call::post("/v1/notifications").service("svc").json(&body);
    let cases: Vec<(&str, Call, u16, Vec<&str>)> = vec![
        ("malformed JSON", Call::post("/v1/notifications").service("svc").raw_json("{\"userId\": \"alice\","), 400, vec![]),
        ("wrong type", create(with("title", json!(42))), 422, vec!["title"]),
        ("unknown channel", create(with("channels", json!(["IN_APP", "PIGEON"]))), 422, vec!["channels[1]"]),
        ("unknown field", create(with("colour", json!("red"))), 422, vec!["colour"]),
        ("title over 200", create(with("title", json!("t".repeat(201)))), 422, vec!["title"]),
        ("body over 4 KB", create(with("body", json!("b".repeat(4097)))), 422, vec!["body"]),
        ("notification over 32 KB", create(with("data", json!({"blob": "x".repeat(33_000)}))), 413, vec![]),
        ("invalid UTF-8", Call::post("/v1/notifications").service("svc").bytes("application/json", b"{\"userId\":\"al\xffice\"}"), 400, vec![]),
        ("not JSON content", Call::post("/v1/notifications").service("svc").bytes("text/plain", b"hello"), 415, vec![]),
        ("bad user id", create(with("userId", json!("a}b"))), 422, vec!["userId"]),
        (
            "batch over 1,000",
            Call::post("/v1/notifications/batch").service("svc").json(&json!({"userIds": (0..1001).map(|i| format!("u{i}")).collect::<Vec<_>>(), "type": "t", "title": "x", "body": ""})),
            413,
            vec![],
        ),
        ("bad cursor", Call::get("/v1/notifications").user("alice").query("cursor", "bm9wZQ"), 400, vec!["cursor"]),
        ("since not a number", Call::get("/v1/changes").user("alice").query("since", "yesterday"), 400, vec!["since"]),
        ("empty patch", Call::patch("/v1/notifications/x").user("alice").json(&json!({})), 422, vec!["body"]),
        ("bad quiet hours", Call::put("/v1/preferences").user("alice").json(&json!({"quietHours": {"start": "25:00", "end": "07:00", "timezone": "UTC"}})), 422, vec!["quietHours"]),
        ("bad timezone", Call::put("/v1/preferences").user("alice").json(&json!({"quietHours": {"start": "22:00", "end": "07:00", "timezone": "Moon/Base"}})), 422, vec!["quietHours"]),
    ];
    for (name, call, status, fields) in cases {
        let r = call.send(&deps).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(r.content_type(), "application/problem+json", "{name}");
        for key in ["type", "title", "status", "detail"] {
            assert!(
                r.body.get(key).is_some(),
                "{name}: problem lacks {key}: {}",
                r.body
            );
        }
        assert_eq!(r.body["status"].as_u64(), Some(u64::from(status)), "{name}");
        assert_eq!(r.error_fields(), fields, "{name}: {}", r.body);
    }
    let c = counts(&deps, "alice").await;
    assert_eq!(
        (c["total"].as_u64(), c["version"].as_u64()),
        (Some(0), Some(0)),
        "nothing was stored: {c}"
    );
    assert_eq!(
        Call::get("/v1/preferences")
            .user("alice")
            .send(&deps)
            .await
            .body,
        json!({"default": {}, "types": {}, "quietHours": null})
    );
}

#[tokio::test]
async fn idempotency_key_replays_the_original_and_refuses_a_different_body() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let send = |body: Value, sender: &str| {
        Call::post("/v1/notifications")
            .service(sender)
            .header("Idempotency-Key", "order-42")
            .json(&body)
    };
    let first = send(note("alice", "shipped"), "svc").send(&deps).await;
    assert_eq!(first.status, 201);
    Call::patch(&format!(
        "/v1/notifications/{}",
        first.body["id"].as_str().unwrap_or_default()
    ))
    .user("alice")
    .json(&json!({"read": true}))
    .send(&deps)
    .await;
    let again = send(note("alice", "shipped"), "svc").send(&deps).await;
    assert_eq!(
        (again.status, &again.body),
        (201, &first.body),
        "the original 201, as it was"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let different = send(note("alice", "cancelled"), "svc").send(&deps).await;
    assert_eq!(
        (different.status, different.error_fields()),
        (422, vec!["Idempotency-Key".to_owned()])
    );
    // Keys are scoped per sender: another service may use the same key.
    let other = send(note("alice", "shipped"), "other-svc")
        .send(&deps)
        .await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["id"], first.body["id"]);
    assert_eq!(counts(&deps, "alice").await["total"].as_u64(), Some(2));

    // Concurrent retries with one key: exactly one notification.
    let race = Call::post("/v1/notifications")
        .service("svc")
        .header("Idempotency-Key", "race")
        .json(&note("carol", "once"));
    let racers = join_all((0..20).map(|_| race.send(&deps))).await;
    assert!(racers.iter().all(|r| r.status == 201));
    let ids: std::collections::HashSet<&str> = racers
        .iter()
        .filter_map(|r| r.body["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(counts(&deps, "carol").await["total"].as_u64(), Some(1));

    // Batch: one key per recipient, derived from the request's key.
    let batch =
        json!({"userIds": ["dave", "erin"], "type": "digest", "title": "weekly", "body": ""});
    let b1 = Call::post("/v1/notifications/batch")
        .service("svc")
        .header("Idempotency-Key", "week-48")
        .json(&batch)
        .send(&deps)
        .await;
    let b2 = Call::post("/v1/notifications/batch")
        .service("svc")
        .header("Idempotency-Key", "week-48")
        .json(&batch)
        .send(&deps)
        .await;
    assert_eq!((b1.status, b2.status), (201, 201));
    assert_eq!(b1.body["items"], b2.body["items"]);
    assert_eq!(b1.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(counts(&deps, "erin").await["total"].as_u64(), Some(1));
}

#[tokio::test]
async fn counts_stay_exact_under_concurrent_creates_marks_and_deletes() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    let deps = &deps;
    let seeds =
        join_all((0..100).map(|i| async move { create(deps, "zoe", &format!("seed {i}")).await }))
            .await;
    let ids: Vec<String> = seeds
        .iter()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    let ops = (0..500).map(|i| {
        let id = ids[i % ids.len()].clone();
        async move {
            match i % 5 {
                0 => Call::post("/v1/notifications").service("svc").json(&json!({"userId": "zoe", "type": if i % 2 == 0 { "a" } else { "b" }, "title": "t", "body": ""})).send(deps).await.status,
                1 => Call::patch(&format!("/v1/notifications/{id}")).user("zoe").json(&json!({"read": true})).send(deps).await.status,
                2 => Call::patch(&format!("/v1/notifications/{id}")).user("zoe").json(&json!({"read": false, "archived": i % 3 == 0})).send(deps).await.status,
                3 => Call::delete(&format!("/v1/notifications/{id}")).user("zoe").send(deps).await.status,
                _ => Call::post("/v1/notifications/mark-all-read").user("zoe").query("type", "a").send(deps).await.status,
            }
        }
    });
    for status in join_all(ops).await {
        assert!([200, 201, 204, 404].contains(&status), "{status}");
    }
    // Recount from the inbox itself.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut call = Call::get("/v1/notifications")
            .user("zoe")
            .query("archived", "all")
            .query("limit", "100");
        if let Some(c) = &cursor {
            call = call.query("cursor", c);
        }
        let page = call.send(deps).await;
        all.extend(page.body["items"].as_array().cloned().unwrap_or_default());
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let live: Vec<&Value> = all
        .iter()
        .filter(|n| n["archived"] == json!(false))
        .collect();
    let unread = live.iter().filter(|n| n["read"] == json!(false)).count() as u64;
    let unseen = live.iter().filter(|n| n["seen"] == json!(false)).count() as u64;
    let mut by_type = serde_json::Map::new();
    for n in live.iter().filter(|n| n["read"] == json!(false)) {
        let t = n["type"].as_str().unwrap_or_default().to_owned();
        let v = by_type.get(&t).and_then(Value::as_u64).unwrap_or(0) + 1;
        by_type.insert(t, json!(v));
    }
    let c = counts(deps, "zoe").await;
    assert_eq!(c["total"].as_u64(), Some(live.len() as u64), "{c}");
    assert_eq!(c["unread"].as_u64(), Some(unread), "{c}");
    assert_eq!(c["unseen"].as_u64(), Some(unseen), "{c}");
    assert_eq!(c["byType"], Value::Object(by_type), "{c}");
    let head = Call::get("/v1/changes")
        .user("zoe")
        .query("since", "0")
        .query("limit", "1000")
        .send(deps)
        .await;
    assert_eq!(
        c["version"],
        head.body["changes"]
            .as_array()
            .and_then(|a| a.last())
            .map(|l| l["seq"].clone())
            .unwrap_or_default(),
        "counts are versioned by the last seq"
    );
}

#[tokio::test]
async fn pagination_and_filters_walk_the_whole_inbox_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    for i in 0..7 {
        let body = json!({"userId": "pat", "type": if i % 2 == 0 { "even" } else { "odd" }, "title": format!("n{i}"), "body": ""});
        assert_eq!(
            Call::post("/v1/notifications")
                .service("svc")
                .json(&body)
                .send(&deps)
                .await
                .status,
            201
        );
    }
    let mut titles = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut call = Call::get("/v1/notifications")
            .user("pat")
            .query("limit", "3")
            .query("type", "even");
        if let Some(c) = &cursor {
            call = call.query("cursor", c);
        }
        let page = call.send(&deps).await;
        titles.extend(
            page.body["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|n| n["title"].as_str().map(str::to_owned)),
        );
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(titles, ["n6", "n4", "n2", "n0"]);
}

/// A limit of `burst` that refills one request a day: however slowly this machine runs the
/// test, no refill lands within it, so the outcome never depends on the machine's speed.
fn never_refilling(burst: u32) -> shared::config::RateLimit {
    shared::config::RateLimit {
        burst,
        per_period: 1,
        period: std::time::Duration::from_secs(24 * 3600),
    }
}

#[tokio::test]
async fn a_sender_over_its_limit_gets_429_with_retry_after() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = shared::config::InboxSettings {
        per_sender: never_refilling(3),
        ..Default::default()
    };
    let deps = env.api_with(inbox, env.bus());
    for i in 0..3 {
        assert_eq!(
            Call::post("/v1/notifications")
                .service("noisy")
                .json(&note(&format!("u{i}"), "x"))
                .send(&deps)
                .await
                .status,
            201
        );
    }
    let r = Call::post("/v1/notifications")
        .service("noisy")
        .json(&note("u9", "x"))
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.content_type()),
        (429, "application/problem+json")
    );
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(
        counts(&deps, "u9").await["total"].as_u64(),
        Some(0),
        "nothing stored"
    );
    // Another sender is not affected.
    assert_eq!(
        Call::post("/v1/notifications")
            .service("quiet")
            .json(&note("u9", "x"))
            .send(&deps)
            .await
            .status,
        201
    );

    // Per recipient.
    let inbox = shared::config::InboxSettings {
        per_recipient: never_refilling(2),
        ..Default::default()
    };
    let deps = env.api_with(inbox, env.bus());
    for _ in 0..2 {
        assert_eq!(
            Call::post("/v1/notifications")
                .service("svc")
                .json(&note("flooded", "x"))
                .send(&deps)
                .await
                .status,
            201
        );
    }
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&note("flooded", "x"))
        .send(&deps)
        .await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn a_batch_skips_a_recipient_over_its_limit_and_stores_nothing_for_it() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = shared::config::InboxSettings {
        per_recipient: never_refilling(1),
        ..TestEnv::unlimited()
    };
    let deps = env.api_with(inbox, env.bus());
    create(&deps, "busy", "first").await;
    let r = Call::post("/v1/notifications/batch")
        .service("svc")
        .json(&json!({"userIds": ["busy", "idle"], "type": "t", "title": "x", "body": "b"}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", r.body);
    assert_eq!(items[0]["userId"], "idle");
    assert_eq!(r.body["skipped"][0]["userId"], "busy");
    assert_eq!(r.body["skipped"][0]["reason"], "rate-limited");
    assert!(r.body["skipped"][0]["retryAfter"].as_u64() >= Some(1));
    assert_eq!(
        counts(&deps, "busy").await["total"].as_u64(),
        Some(1),
        "the skipped recipient got nothing"
    );
    // Every recipient over its limit: 429 for the whole batch.
    let r = Call::post("/v1/notifications/batch")
        .service("svc")
        .json(&json!({"userIds": ["busy", "idle"], "type": "t", "title": "y", "body": "b"}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn a_since_older_than_the_retained_log_requires_a_resync() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = shared::config::InboxSettings {
        change_log_cap: 3,
        ..Default::default()
    };
    let deps = env.api_with(inbox, env.bus());
    for i in 0..6 {
        create(&deps, "quinn", &format!("n{i}")).await;
    }
    let r = Call::get("/v1/changes")
        .user("quinn")
        .query("since", "1")
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.content_type()),
        (410, "application/problem+json")
    );
    assert!(r.body["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("resync-required")));
    let r = Call::get("/v1/changes")
        .user("quinn")
        .query("since", "3")
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.body["changes"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    let ahead = Call::get("/v1/changes")
        .user("quinn")
        .query("since", "99")
        .send(&deps)
        .await;
    assert_eq!(
        ahead.status, 410,
        "a since ahead of the user's seq (an expired inbox) also resyncs"
    );
}

#[tokio::test]
async fn a_user_over_their_mutation_limit_gets_429_and_other_users_do_not() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    // Creates are unlimited; three mutations per user, never refilled within the test.
    let mut inbox = TestEnv::unlimited();
    inbox.per_user_mutation = never_refilling(3);
    let deps = env.api_with(inbox, env.bus());
    let id = create(&deps, "toggler", "t").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/v1/notifications/{id}");
    for read in [true, false, true] {
        let r = Call::patch(&path)
            .user("toggler")
            .json(&json!({"read": read}))
            .send(&deps)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = Call::patch(&path)
        .user("toggler")
        .json(&json!({"read": false}))
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.content_type()),
        (429, "application/problem+json"),
        "{}",
        r.body
    );
    assert!(r.body["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("rate-limited")));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry >= 1, "Retry-After {retry}");
    let stored = Call::get(&path).user("toggler").send(&deps).await;
    assert_eq!(
        stored.body["read"], true,
        "the refused PATCH changed nothing"
    );
    // Every other mutation shares the same limit.
    for refused in [
        Call::delete(&path).user("toggler"),
        Call::post("/v1/notifications/mark-all-read").user("toggler"),
        Call::post(&format!("{path}/click")).user("toggler"),
        Call::put("/v1/preferences")
            .user("toggler")
            .json(&json!({})),
    ] {
        assert_eq!(refused.send(&deps).await.status, 429);
    }
    // Reads are not limited, and another user's mutations are not affected.
    assert_eq!(
        Call::get(&path).user("toggler").send(&deps).await.status,
        200
    );
    let other = create(&deps, "bystander", "b").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = Call::patch(&format!("/v1/notifications/{other}"))
        .user("bystander")
        .json(&json!({"read": true}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_preferences_put_from_a_copy_older_than_a_one_click_unsubscribe_gets_412() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let secret = "test-unsubscribe-secret-0123456789";
    let mut deps = env.api();
    deps.channels = shared::config::SenderSettings::from_env(&shared::config::Env::from_pairs([(
        "UNSUBSCRIBE_SECRET",
        secret,
    )]))
    .unwrap_or_else(|e| panic!("{e}"));
    let get = Call::get("/v1/preferences").user("paula").send(&deps).await;
    assert_eq!(get.status, 200);
    let copy = get
        .header("etag")
        .unwrap_or_else(|| panic!("GET /v1/preferences has no ETag"))
        .to_owned();

    let token = shared::addresses::UnsubscribeToken {
        user_id: "paula".into(),
        kind: "invoice.paid".into(),
        tenant: shared::tenant::Tenant::default_tenant(),
    }
    .sign(secret.as_bytes());
    let r = Call::post("/v1/unsubscribe")
        .query("token", &token)
        .bytes(
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click",
        )
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The stale copy (without the opt-out) is refused and changes nothing.
    let stale = Call::put("/v1/preferences")
        .user("paula")
        .header("if-match", &copy)
        .json(&json!({"types": {"comment": {"EMAIL": false}}}))
        .send(&deps)
        .await;
    assert_eq!(
        (stale.status, stale.content_type()),
        (412, "application/problem+json"),
        "{}",
        stale.body
    );
    assert!(stale.body["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("precondition-failed")));
    let now = Call::get("/v1/preferences").user("paula").send(&deps).await;
    assert_eq!(now.body["types"], json!({"invoice.paid": {"EMAIL": false}}));
    let current = now.header("etag").unwrap_or_default().to_owned();
    assert_ne!(current, copy, "the unsubscribe changed the ETag");

    // With the current tag the write goes through and answers the new one.
    let fresh = Call::put("/v1/preferences")
        .user("paula")
        .header("if-match", &current)
        .json(&json!({"types": {"invoice.paid": {"EMAIL": false}, "comment": {"EMAIL": false}}}))
        .send(&deps)
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let written = fresh.header("etag").unwrap_or_default().to_owned();
    assert_ne!(written, current);
    assert_eq!(
        Call::get("/v1/preferences")
            .user("paula")
            .send(&deps)
            .await
            .header("etag"),
        Some(written.as_str())
    );
    // If-Match is optional: without it the write is unconditional.
    let blind = Call::put("/v1/preferences")
        .user("paula")
        .json(&json!({}))
        .send(&deps)
        .await;
    assert_eq!(blind.status, 200, "{}", blind.body);
}

/// Rewrites the stored creation time of `id` (the `flags` entry `<bits>|<createdMs>|<type>`), so
/// a test can age a notification past the retention without waiting.
async fn age(env: &TestEnv, deps: &api::Deps, user: &str, id: &str, by: Duration) {
    let key = deps.store.user_keys(user).flags();
    let mut conn = env.conn.clone();
    let state: String = redis::cmd("HGET")
        .arg(&key)
        .arg(id)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut parts: Vec<String> = state.splitn(3, '|').map(str::to_owned).collect();
    let created: i64 = parts[1].parse().unwrap_or_else(|e| panic!("{state}: {e}"));
    parts[1] = (created - by.as_millis() as i64).to_string();
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg(id)
        .arg(parts.join("|"))
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn change_types(changes: &Value) -> Vec<(String, String)> {
    changes["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let id = c["payload"]["id"]
                        .as_str()
                        .or(c["payload"]["notification"]["id"].as_str())
                        .unwrap_or_default();
                    (
                        c["type"].as_str().unwrap_or_default().to_owned(),
                        id.to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn expired_notifications_leave_every_read_path_and_their_deletes_reach_the_change_log() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = InboxSettings {
        retention: Duration::from_secs(3600),
        ..TestEnv::unlimited()
    };
    let deps = env.api_with(inbox, env.bus());
    let ids: Vec<String> = [
        create(&deps, "ella", "old").await,
        create(&deps, "ella", "older").await,
        create(&deps, "ella", "fresh").await,
    ]
    .iter()
    .map(|n| n["id"].as_str().unwrap_or_default().to_owned())
    .collect();
    // The first two were created two hours ago: past the one-hour retention.
    for id in &ids[..2] {
        age(&env, &deps, "ella", id, Duration::from_secs(7200)).await;
    }
    let c = counts(&deps, "ella").await;
    assert_eq!(
        (
            c["total"].as_u64(),
            c["unread"].as_u64(),
            c["unseen"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{c}"
    );
    assert_eq!(c["byType"]["comment"], 1);
    for id in &ids[..2] {
        let r = Call::get(&format!("/v1/notifications/{id}"))
            .user("ella")
            .send(&deps)
            .await;
        assert_eq!(r.status, 404, "{id} expired");
    }
    let list = Call::get("/v1/notifications")
        .user("ella")
        .send(&deps)
        .await;
    let listed: Vec<&str> = list.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, [ids[2].as_str()]);
    // Each eviction is a delete with its own seq, after the three creates.
    let changes = Call::get("/v1/changes")
        .user("ella")
        .query("since", "3")
        .send(&deps)
        .await;
    assert_eq!(changes.status, 200, "{}", changes.body);
    assert_eq!(
        change_types(&changes.body),
        [
            ("NOTIFICATION_DELETED".to_owned(), ids[0].clone()),
            ("NOTIFICATION_DELETED".to_owned(), ids[1].clone())
        ]
    );
    let seqs: Vec<u64> = changes.body["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(
        changes.body["changes"][1]["payload"]["counts"]["total"], 1,
        "each delete carries the counts at its seq"
    );
    // A mutation of an expired notification is 404 too.
    let r = Call::patch(&format!("/v1/notifications/{}", ids[0]))
        .user("ella")
        .json(&json!({"read": true}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_notification_evicted_by_the_inbox_cap_is_deleted_in_the_change_log() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = InboxSettings {
        inbox_cap: 2,
        ..TestEnv::unlimited()
    };
    let deps = env.api_with(inbox, env.bus());
    let mut ids = Vec::new();
    for title in ["a", "b", "c"] {
        ids.push(
            create(&deps, "capped", title).await["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let changes = Call::get("/v1/changes")
        .user("capped")
        .query("since", "0")
        .send(&deps)
        .await;
    let created = "NOTIFICATION_CREATED".to_owned();
    assert_eq!(
        change_types(&changes.body),
        [
            (created.clone(), ids[0].clone()),
            (created.clone(), ids[1].clone()),
            ("NOTIFICATION_DELETED".to_owned(), ids[0].clone()),
            (created, ids[2].clone()),
        ],
        "the eviction comes before the create that caused it"
    );
    assert_eq!(counts(&deps, "capped").await["total"], 2);
    let outbox: Vec<String> = redis::cmd("ZRANGE")
        .arg(env.keys.outbox_dirty())
        .arg(0)
        .arg(-1)
        .query_async(&mut env.conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outbox.iter().any(|u| u == "capped"),
        "the user waits for the relay: {outbox:?}"
    );
}

/// Found by schemathesis: an `expiresAt` far ahead (15-digit milliseconds) was stored in Lua's
/// exponent form, which the inbox scripts could not read back, so every read answered 500.
#[tokio::test]
async fn an_expires_at_in_the_year_9999_is_stored_and_read_back() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    let mut body = note("yuki", "far ahead");
    body["expiresAt"] = json!("9999-12-31T23:59:59.999Z");
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&body)
        .send(&deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    create(&deps, "yuki", "next to it").await;
    let list = Call::get("/v1/notifications")
        .user("yuki")
        .send(&deps)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let got = Call::get(&format!("/v1/notifications/{id}"))
        .user("yuki")
        .send(&deps)
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let marked = Call::post("/v1/notifications/mark-all-read")
        .user("yuki")
        .json(&json!({}))
        .send(&deps)
        .await;
    assert_eq!(marked.status, 200, "{}", marked.body);
    assert_eq!(counts(&deps, "yuki").await["unread"], 0);
}

#[tokio::test]
async fn a_notification_past_its_own_expires_at_leaves_every_read_path() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut body = note("ivan", "flash sale");
    body["expiresAt"] = json!(in_an_hour);
    let r = Call::post("/v1/notifications")
        .service("svc")
        .json(&body)
        .send(&deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sale = r.body["id"].as_str().unwrap_or_default().to_owned();
    let kept = create(&deps, "ivan", "kept").await;
    assert_eq!(counts(&deps, "ivan").await["total"], 2);

    // The hour passes: move the stored expiry (and the inbox's earliest one) into the past.
    let keys = deps.store.user_keys("ivan");
    let mut conn = env.conn.clone();
    let state: String = redis::cmd("HGET")
        .arg(keys.flags())
        .arg(&sale)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let past = chrono::Utc::now().timestamp_millis() - 1_000;
    let (head, _) = state
        .rsplit_once('|')
        .unwrap_or_else(|| panic!("no expiry stored: {state}"));
    let _: () = redis::pipe()
        .hset(keys.flags(), &sale, format!("{head}|{past}"))
        .hset(keys.meta(), "exp", past)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let c = counts(&deps, "ivan").await;
    assert_eq!(
        (c["total"].as_u64(), c["unread"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
    let r = Call::get(&format!("/v1/notifications/{sale}"))
        .user("ivan")
        .send(&deps)
        .await;
    assert_eq!(r.status, 404);
    let list = Call::get("/v1/notifications")
        .user("ivan")
        .send(&deps)
        .await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["items"][0]["id"], kept["id"]);
    let changes = Call::get("/v1/changes")
        .user("ivan")
        .query("since", "2")
        .send(&deps)
        .await;
    assert_eq!(
        change_types(&changes.body),
        [("NOTIFICATION_DELETED".to_owned(), sale.clone())]
    );
    let exp: Option<String> = redis::cmd("HGET")
        .arg(keys.meta())
        .arg("exp")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp, None, "no expiry left to watch");
}

/// What schemathesis found where the API accepted a request `/openapi.json` calls invalid
/// (scripts/test.d/40-contract).
#[tokio::test]
async fn requests_the_openapi_document_calls_invalid_are_refused() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    // serde reads a struct from an array of its fields; every body is an object.
    let cases = [
        Call::post("/v1/notifications")
            .service("svc")
            .json(&json!(["alice", null, "t", "x", ""])),
        Call::put("/v1/users/alice/contacts")
            .service("svc")
            .json(&json!([null, null])),
        Call::put("/v1/preferences")
            .user("alice")
            .json(&json!([{}, {}, null])),
        Call::patch("/v1/notifications/x")
            .user("alice")
            .json(&json!([true])),
    ];
    for call in cases {
        let r = call.send(&deps).await;
        assert_eq!(
            (r.status, r.error_fields()),
            (422, vec!["body".to_owned()]),
            "{}",
            r.body
        );
    }
    let r = Call::put("/v1/preferences")
        .user("alice")
        .json(&json!({"quietHours": ["22:00", "07:00", "UTC"]}))
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.error_fields()),
        (422, vec!["quietHours".to_owned()]),
        "{}",
        r.body
    );
    // A bad `?type=` is refused even when the body names a type (the body's wins).
    let r = Call::post("/v1/notifications/mark-all-read")
        .user("alice")
        .query("type", "Not A Type")
        .json(&json!({"type": "comment"}))
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, r.error_fields()),
        (400, vec!["type".to_owned()]),
        "{}",
        r.body
    );
    assert_eq!(counts(&deps, "alice").await["version"].as_u64(), Some(0));
}
