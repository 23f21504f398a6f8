//! Tenant isolation on real Redis and a real Kafka-protocol broker, through `api::handle` and
//! `delivery`'s own entry point: the same user id in two tenants has two inboxes, counts,
//! preferences, topics and sockets; a service acts only inside its tenant (another tenant's
//! topic or broadcast is 404); erase and export stay in the tenant; a token without the claim
//! keeps today's keys exactly; the records carry the tenant; a tenant user's unsubscribe link opts
//! out that tenant's user only.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use herald_tests::capture::CaptureServer;
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::config::{Env, RealtimeSettings};
use shared::protocol::{Envelope, Topic};
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::{Connection, ConnectionRegistry, TenantScoped};
use shared::tenant::Tenant;

const ACME: &str = "acme";
const UMBRELLA: &str = "umbrella";

fn tenant(name: &str) -> Tenant {
    Tenant::parse(name).unwrap_or_else(|| panic!("tenant {name}"))
}

fn note(user: &str, title: &str) -> Value {
    json!({"userId": user, "type": "comment", "title": title, "body": "hello"})
}

/// Creates a notification for `user` as the service `svc` of `tenant` (`None`: no claim).
async fn create(deps: &api::Deps, tenant: Option<&str>, user: &str, title: &str) -> Value {
    let mut call = Call::post("/v1/notifications")
        .service("svc")
        .json(&note(user, title));
    if let Some(t) = tenant {
        call = call.tenant(t);
    }
    let r = call.send(deps).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn as_user(call: Call, user: &str, tenant: Option<&str>) -> Call {
    let call = call.user(user);
    match tenant {
        Some(t) => call.tenant(t),
        None => call,
    }
}

async fn unread(deps: &api::Deps, user: &str, tenant: Option<&str>) -> u64 {
    let r = as_user(Call::get("/v1/notifications/counts"), user, tenant)
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["unread"].as_u64().unwrap_or(u64::MAX)
}

async fn titles(deps: &api::Deps, user: &str, tenant: Option<&str>) -> Vec<String> {
    let r = as_user(Call::get("/v1/notifications"), user, tenant)
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut titles: Vec<String> = r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["title"].as_str().map(str::to_owned))
        .collect();
    titles.sort();
    titles
}

#[tokio::test]
async fn the_same_user_id_in_two_tenants_has_two_inboxes_and_the_default_keeps_todays_keys() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let acme_note = create(&deps, Some(ACME), "bob", "from acme").await;
    create(&deps, Some(UMBRELLA), "bob", "from umbrella 1").await;
    create(&deps, Some(UMBRELLA), "bob", "from umbrella 2").await;
    create(&deps, None, "bob", "from default").await;

    assert_eq!(unread(&deps, "bob", Some(ACME)).await, 1);
    assert_eq!(unread(&deps, "bob", Some(UMBRELLA)).await, 2);
    assert_eq!(unread(&deps, "bob", None).await, 1);
    assert_eq!(titles(&deps, "bob", Some(ACME)).await, ["from acme"]);
    assert_eq!(titles(&deps, "bob", None).await, ["from default"]);
    // The claim `tenant: default` is the default tenant itself.
    assert_eq!(
        titles(&deps, "bob", Some("default")).await,
        ["from default"]
    );

    // Another tenant's notification, by id, is not there; marking it read changes nothing.
    let id = acme_note["id"].as_str().unwrap_or_default();
    let r = as_user(
        Call::get(&format!("/v1/notifications/{id}")),
        "bob",
        Some(UMBRELLA),
    )
    .send(&deps)
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = as_user(Call::patch(&format!("/v1/notifications/{id}")), "bob", None)
        .json(&json!({"read": true}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(unread(&deps, "bob", Some(ACME)).await, 1);

    // The key schema: the default tenant's keys are exactly those of a deployment without
    // tenants; a tenant's carry it inside the hash tag. (Rate-limit state is not checked here: a
    // GCRA key expires as soon as its bucket is full again, which a slow machine can reach before
    // this read; keys.rs's unit tests name every scoped tag.)
    let p = &env.redis.key_prefix;
    let keys = env.keys().await;
    for key in [
        format!("{p}{{u:bob}}:meta"),
        format!("{p}{{acme/u:bob}}:meta"),
        format!("{p}{{umbrella/u:bob}}:meta"),
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert!(
        !keys.iter().any(|k| k.contains("default/")),
        "the default tenant's keys are unscoped: {keys:?}"
    );

    // A tenant claim that is not a valid tenant name is refused like an unusable subject.
    for bad in ["Acme", "a/b", "a:b", "{x}", ""] {
        let r = as_user(Call::get("/v1/notifications/counts"), "bob", Some(bad))
            .send(&deps)
            .await;
        assert_eq!(r.status, 401, "tenant {bad:?}: {}", r.body);
    }
}

#[tokio::test]
async fn preferences_topics_and_broadcasts_stay_inside_their_tenant() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let r = as_user(Call::put("/v1/preferences"), "bob", Some(ACME))
        .json(&json!({"types": {"comment": {"EMAIL": false}}}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for other in [Some(UMBRELLA), None] {
        let r = as_user(Call::get("/v1/preferences"), "bob", other)
            .send(&deps)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body["types"].get("comment").is_none(),
            "{other:?} sees acme's preferences: {}",
            r.body
        );
    }

    let r = Call::put("/v1/topics/math")
        .service("svc")
        .tenant(ACME)
        .json(&json!({"name": "Math"}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = Call::post("/v1/topics/math/subscribers")
        .service("svc")
        .tenant(ACME)
        .json(&json!({"userIds": ["bob"]}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Call::post("/v1/topics/math/notifications")
        .service("svc")
        .tenant(ACME)
        .json(&json!({"type": "course.news", "title": "Exam", "body": "Room 4"}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let broadcast = r.body["broadcastId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Another tenant's service (or the default tenant's) finds neither the topic nor the
    // broadcast, and cannot subscribe to, broadcast to or cancel them.
    for other in [Some(UMBRELLA), None] {
        let with = |call: Call| match other {
            Some(t) => call.service("svc").tenant(t),
            None => call.service("svc"),
        };
        let calls = [
            with(Call::get("/v1/topics/math")),
            with(Call::get("/v1/topics/math/subscribers")),
            with(Call::delete("/v1/topics/math")),
            with(Call::post("/v1/topics/math/subscribers")).json(&json!({"userIds": ["eve"]})),
            with(Call::post("/v1/topics/math/notifications"))
                .json(&json!({"type": "x", "title": "t", "body": "b"})),
            with(Call::get(&format!("/v1/broadcasts/{broadcast}"))),
            with(Call::post(&format!("/v1/broadcasts/{broadcast}/cancel"))),
        ];
        for call in calls {
            let r = call.send(&deps).await;
            assert_eq!(r.status, 404, "{other:?}: {}", r.body);
        }
    }
    let r = Call::get("/v1/topics/math")
        .service("svc")
        .tenant(ACME)
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["subscribers"], 1, "{}", r.body);
    let r = Call::get(&format!("/v1/broadcasts/{broadcast}"))
        .service("svc")
        .tenant(ACME)
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mine = |tenant: Option<&'static str>| {
        let deps = &deps;
        async move {
            let r = as_user(Call::get("/v1/me/topics"), "bob", tenant)
                .send(deps)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.to_string()
        }
    };
    assert!(mine(Some(ACME)).await.contains("math"));
    assert!(!mine(Some(UMBRELLA)).await.contains("math"));
    assert!(!mine(None).await.contains("math"));
    let p = &env.redis.key_prefix;
    let keys = env.keys().await;
    assert!(keys.contains(&format!("{p}{{acme/t:math}}")), "{keys:?}");
    assert!(keys.contains(&format!("{p}{{acme/topics}}")), "{keys:?}");
}

#[tokio::test]
async fn erase_and_export_act_on_the_callers_tenant_only() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    create(&deps, Some(ACME), "bob", "kept").await;
    create(&deps, Some(UMBRELLA), "bob", "erased").await;
    let r = Call::delete("/v1/users/bob")
        .user("ops")
        .scope("users:admin")
        .tenant(UMBRELLA)
        .send(&deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        titles(&deps, "bob", Some(UMBRELLA)).await,
        Vec::<String>::new()
    );
    assert_eq!(titles(&deps, "bob", Some(ACME)).await, ["kept"]);

    let export = |tenant: &'static str| {
        let deps = &deps;
        async move {
            let r = Call::get("/v1/users/bob/export")
                .user("ops")
                .scope("users:admin")
                .tenant(tenant)
                .send(deps)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.to_string()
        }
    };
    assert!(export(ACME).await.contains("kept"));
    let umbrella = export(UMBRELLA).await;
    assert!(
        !umbrella.contains("kept") && !umbrella.contains("erased"),
        "{umbrella}"
    );
}

/// A Kafka event of `topic` holding these payloads, in order, on one partition.
fn event(topic: &str, payloads: &[Vec<u8>]) -> KafkaEvent {
    let records: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"topic": topic, "partition": 0, "offset": 10 + i, "timestamp": 0,
                   "timestampType": "CREATE_TIME", "key": "bob",
                   "value": STANDARD.encode(p), "headers": []})
        })
        .collect();
    serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "records": {format!("{topic}-0"): records}
    }))
    .unwrap_or_else(|e| panic!("event: {e}"))
}

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

#[tokio::test]
async fn a_create_in_one_tenant_reaches_only_that_tenants_socket_and_its_record_names_the_tenant() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let registry = ConnectionRegistry::new(env.conn.clone(), env.keys.clone());
    let now = Utc::now().timestamp_millis();
    for (t, id) in [
        (ACME, "conn-acme"),
        (UMBRELLA, "conn-umbrella"),
        ("default", "conn-default"),
    ] {
        let connection = Connection {
            id: id.to_owned(),
            connected_at_ms: now - 1_000,
            token_expires_ms: now + 3_600_000,
        };
        let registered = registry
            .for_tenant(&tenant(t))
            .register("bob", &connection)
            .await;
        assert!(registered.is_ok(), "{registered:?}");
    }
    // The connection's own (global) key names its tenant with the user.
    let session = registry.session("conn-acme").await.ok().flatten();
    assert_eq!(
        session.map(|(t, u, _)| (t.to_string(), u)),
        Some((ACME.to_owned(), "bob".to_owned()))
    );
    let session = registry.session("conn-default").await.ok().flatten();
    assert_eq!(
        session.map(|(t, u, _)| (t.to_string(), u)),
        Some(("default".to_owned(), "bob".to_owned()))
    );

    create(&deps, Some(ACME), "bob", "only acme").await;
    let consumed = env.consume(Topic::NotificationEvents, 1).await;
    let payloads: Vec<Vec<u8>> = consumed.iter().map(|c| c.payload.clone()).collect();
    assert_eq!(payloads.len(), 1);
    let envelope = Envelope::decode(&payloads[0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(envelope.tenant.as_str(), ACME);
    assert!(String::from_utf8_lossy(&payloads[0]).contains("\"tenant\":\"acme\""));

    let posts = CaptureServer::start().await;
    let delivery = delivery::Deps {
        fanout: Fanout::new(
            ConnectionRegistry::new(env.conn.clone(), env.keys.clone()),
            connections_api(&format!("{}/local", posts.url)),
            4,
        ),
        bus: env.bus(),
        trigger: Default::default(),
    };
    let topic = Topic::NotificationEvents.name_with(&env.kafka.topic_suffix);
    let (response, _) = delivery::deliver_batch(&delivery, &event(&topic, &payloads)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let paths: Vec<String> = posts.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].ends_with("/conn-acme"), "{paths:?}");
}

#[test]
fn a_record_without_the_field_is_the_default_tenants() {
    let legacy = br#"{"v":1,"id":"e1","type":"NOTIFICATION_CLICKED","userId":"bob","seq":0,"occurredAt":"2026-11-29T12:00:00Z","payload":{"id":"n1"}}"#;
    let envelope = Envelope::decode(legacy);
    assert!(envelope.is_ok(), "{envelope:?}");
    let envelope = envelope.unwrap_or_else(|e| panic!("{e}"));
    assert!(envelope.tenant.is_default());
    assert!(!String::from_utf8_lossy(&envelope.encode()).contains("tenant"));
}

/// A tenant user's email link (as `push` makes it for the tenant's job) opts out that tenant's
/// user only: the default tenant's user with the same id keeps getting the type's emails.
#[tokio::test]
async fn a_tenant_users_unsubscribe_link_opts_out_that_tenants_user_only() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let settings = shared::config::SenderSettings::from_env(&Env::from_pairs([
        ("UNSUBSCRIBE_SECRET", "test-unsubscribe-secret-0123456789"),
        ("PUBLIC_API_URL", "https://api.herald.test"),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut deps = env.api();
    deps.channels = settings.clone();
    let notification: shared::model::Notification = serde_json::from_value(json!({
        "id": "n1", "seq": 1, "userId": "bob", "type": "invoice.paid", "title": "t",
        "body": "b", "data": {}, "channels": ["EMAIL"], "priority": "normal", "read": false,
        "seen": false, "archived": false, "createdAt": "2026-12-06T06:00:00Z"}))
    .unwrap_or_else(|e| panic!("{e}"));
    let link = push::unsubscribe_url(&settings, &notification, &tenant(ACME));
    let token = link
        .strip_prefix("https://api.herald.test/v1/unsubscribe?token=")
        .unwrap_or_else(|| panic!("unexpected link {link}"));

    let r = Call::post("/v1/unsubscribe")
        .query("token", token)
        .bytes(
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click",
        )
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let preferences = |tenant: Option<&'static str>| {
        let deps = &deps;
        async move {
            let r = as_user(Call::get("/v1/preferences"), "bob", tenant)
                .send(deps)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["types"].clone()
        }
    };
    assert_eq!(
        preferences(Some(ACME)).await,
        json!({"invoice.paid": {"EMAIL": false}})
    );
    assert_eq!(
        preferences(None).await,
        json!({}),
        "the default tenant's bob"
    );
    assert_eq!(
        preferences(Some(UMBRELLA)).await,
        json!({}),
        "another tenant's bob"
    );
}
