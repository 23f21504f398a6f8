//! Real-time delivery end to end, through devstack: real template, real function binaries, real
//! gateways and Kafka trigger, real WebSocket clients. Each test uses fresh user ids on the
//! binary's one shared stack, except the Kafka fault, which takes down a private stack's broker,
//! and the per-user action limit, which runs the ws function in process on its own key prefix.

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::capture::CaptureServer;
use herald_tests::kafka::consume;
use herald_tests::stack::{applied_seqs, shared_stack, Stack, WsClient};
use herald_tests::TestEnv;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use shared::auth::JwksVerifier;
use shared::config::{
    Env, InboxSettings, JwtSettings, KafkaSettings, RateLimit, RealtimeSettings, RedisSettings,
};
use shared::outbox::Publisher;
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::{Connection, ConnectionRegistry, KeySpace, RateLimiter, RedisConn};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(800);

fn user(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    if tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .is_err()
    {
        panic!("test did not finish within {secs} s");
    }
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// The registry the functions use (devstack's Redis, no key prefix).
async fn registry(stack: &Stack) -> ConnectionRegistry {
    let env = Env::from_pairs([
        ("REDIS_URL", stack.redis_url.as_str()),
        (
            "REDIS_CLUSTER",
            &std::env::var("REDIS_CLUSTER").unwrap_or_default(),
        ),
    ]);
    let settings = RedisSettings::from_env(&env).unwrap_or_else(|e| panic!("{e}"));
    let conn = RedisConn::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("redis: {e}"));
    ConnectionRegistry::new(conn, KeySpace::new(""))
}

async fn expect_frame(client: &mut WsClient, kind: &str) -> Value {
    client
        .next_of(kind, WAIT)
        .await
        .unwrap_or_else(|| panic!("no {kind} frame (closed: {:?})", client.closed))
}

#[tokio::test]
async fn a_notification_reaches_every_device_of_its_user_and_nobody_else() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let (alice, bob) = (user("alice"), user("bob"));
        let mut phone = stack.connect(&alice).await;
        let mut laptop = stack.connect(&alice).await;
        let mut bobs = stack.connect(&bob).await;

        let created = stack.create(&alice, "Your build passed").await;
        let on_phone = expect_frame(&mut phone, "notification.created").await;
        let on_laptop = expect_frame(&mut laptop, "notification.created").await;
        for frame in [&on_phone, &on_laptop] {
            assert_eq!(frame["seq"], created["seq"]);
            assert_eq!(frame["id"], created["id"]);
            assert_eq!(frame["notification"]["title"], "Your build passed");
            assert_eq!(frame["counts"]["unread"], 1);
            assert_eq!(frame["counts"]["byType"]["comment"], 1);
            assert_eq!(frame["counts"]["version"], created["seq"]);
        }
        assert_eq!(
            bobs.next(QUIET).await,
            None,
            "bob must not see alice's notification"
        );
    })
    .await;
}

#[tokio::test]
async fn marking_read_on_one_device_updates_the_others() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        let mut phone = stack.connect(&alice).await;
        let mut laptop = stack.connect(&alice).await;
        let created = stack.create(&alice, "hello").await;
        expect_frame(&mut phone, "notification.created").await;
        expect_frame(&mut laptop, "notification.created").await;

        phone
            .send(json!({"action": "markRead", "id": created["id"]}))
            .await;
        let update = expect_frame(&mut laptop, "notification.updated").await;
        assert_eq!(update["id"], created["id"]);
        assert_eq!(update["seq"], seq(&created) + 1);
        assert_eq!(update["changes"], json!({"read": true, "seen": true}));
        assert_eq!(update["counts"]["unread"], 0);
        assert_eq!(update["counts"]["version"], seq(&created) + 1);
        // The device that acted hears it too, so every device converges on the same seq.
        assert_eq!(
            expect_frame(&mut phone, "notification.updated").await["seq"],
            update["seq"]
        );

        // Mark-all-read from the laptop: a counts frame on the phone.
        stack.create(&alice, "second").await;
        expect_frame(&mut phone, "notification.created").await;
        laptop.send(json!({"action": "markAllRead"})).await;
        let counts = expect_frame(&mut phone, "counts").await;
        assert_eq!(counts["counts"]["unread"], 0);
        assert_eq!(counts["allRead"], json!({}));
    })
    .await;
}

#[tokio::test]
async fn a_device_that_was_away_catches_up_with_exactly_what_it_missed() {
    let Some(stack) = shared_stack() else { return };
    bounded(90, async {
        let alice = user("alice");
        let mut device = stack.connect(&alice).await;
        let first = stack.create(&alice, "before").await;
        let last_applied = seq(&expect_frame(&mut device, "notification.created").await);
        assert_eq!(last_applied, seq(&first));
        device.close().await;

        let mut missed = Vec::new();
        for i in 1..=5 {
            missed.push(stack.create(&alice, &format!("missed {i}")).await);
        }
        let mut device = stack.connect(&alice).await;
        let (changes, _) = device
            .sync(last_applied)
            .await
            .unwrap_or_else(|head| panic!("unexpected resync at {head}"));
        let seqs: Vec<u64> = changes.iter().map(seq).collect();
        let expected: Vec<u64> = missed.iter().map(seq).collect();
        assert_eq!(seqs, expected, "exactly the 5 missed changes, in order");
        let titles: Vec<&str> = changes
            .iter()
            .map(|c| c["notification"]["title"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            titles,
            ["missed 1", "missed 2", "missed 3", "missed 4", "missed 5"]
        );
        assert_eq!(changes[4]["counts"]["unread"], 6);

        // Nothing new: an empty page up to where the client is.
        let (none, pages) = device.sync(seq(&missed[4])).await.unwrap_or_default();
        assert_eq!((none.len(), pages), (0, 1));
    })
    .await;
}

#[tokio::test]
async fn a_position_older_than_the_change_log_gets_resync() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        for i in 0..3 {
            stack.create(&alice, &format!("n{i}")).await;
        }
        // Trim the log's oldest entry, as the cap does for a user away longer than the log.
        let registry_conn = {
            let settings = RedisSettings::from_env(&Env::from_pairs([
                ("REDIS_URL", stack.redis_url.as_str()),
                (
                    "REDIS_CLUSTER",
                    &std::env::var("REDIS_CLUSTER").unwrap_or_default(),
                ),
            ]))
            .unwrap_or_else(|e| panic!("{e}"));
            RedisConn::connect(&settings)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let log = format!("{{u:{alice}}}:log");
        let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&log)
            .arg("-inf")
            .arg(1)
            .query_async(&mut registry_conn.clone())
            .await
            .unwrap_or_else(|e| panic!("trim: {e}"));
        let mut device = stack.connect(&alice).await;
        assert_eq!(
            device.sync(0).await.err(),
            Some(3),
            "resync with the head seq"
        );
        // From a position the log still holds, a normal reply.
        let (changes, _) = device.sync(1).await.unwrap_or_default();
        assert_eq!(changes.iter().map(seq).collect::<Vec<_>>(), [2, 3]);
    })
    .await;
}

#[tokio::test]
async fn a_sync_larger_than_one_frame_arrives_in_pages() {
    let Some(stack) = shared_stack() else { return };
    bounded(90, async {
        let alice = user("alice");
        let body = "x".repeat(4_000);
        for i in 0..12 {
            stack
                .create_with(&alice, json!({"title": format!("big {i}"), "body": body}))
                .await;
        }
        let mut device = stack.connect(&alice).await;
        let (changes, pages) = device.sync(0).await.unwrap_or_default();
        assert!(
            pages >= 2,
            "12 × 4 KB must not fit one 32 KB frame ({pages} page)"
        );
        assert_eq!(
            changes.iter().map(seq).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        assert!(changes
            .iter()
            .all(|c| c["notification"]["body"] == body.as_str()));
    })
    .await;
}

#[tokio::test]
async fn a_notification_too_big_for_one_frame_arrives_compact() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        let mut device = stack.connect(&alice).await;
        // Within the 32 KB notification limit, but not with the frame's own fields around it.
        let blob = "x".repeat(32_450);
        let created = stack
            .create_with(
                &alice,
                json!({"title": "big", "body": "", "data": {"blob": blob}}),
            )
            .await;
        let frame = expect_frame(&mut device, "notification.created").await;
        assert_eq!(frame["id"], created["id"]);
        assert_eq!(frame["seq"], created["seq"]);
        assert_eq!(frame["counts"]["unread"], 1);
        assert!(
            frame.get("notification").is_none(),
            "compact: fetch it over HTTP"
        );
        let fetched = stack
            .get(
                &alice,
                &format!(
                    "/v1/notifications/{}",
                    created["id"].as_str().unwrap_or_default()
                ),
            )
            .await;
        assert_eq!(fetched["data"]["blob"].as_str().map(str::len), Some(32_450));
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_batch_changes_nothing_twice() {
    let Some(stack) = shared_stack() else { return };
    bounded(90, async {
        let alice = user("alice");
        let mut device = stack.connect(&alice).await;
        let created = stack.create(&alice, "once").await;
        let live = expect_frame(&mut device, "notification.created").await;
        assert_eq!(live["seq"], created["seq"]);

        // The same change as Kafka delivered it, handed to delivery twice more.
        let changes = stack
            .get(&alice, &format!("/v1/changes?since={}", seq(&created) - 1))
            .await;
        let envelope = &changes["changes"][0];
        assert_eq!(envelope["seq"], created["seq"]);
        let event = json!({
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": stack.kafka_brokers,
            "records": {"notification-events-0": [{
                "topic": "notification-events", "partition": 0, "offset": 0,
                "timestamp": 0, "timestampType": "CREATE_TIME",
                "key": STANDARD.encode(&alice),
                "value": STANDARD.encode(envelope.to_string()),
                "headers": []
            }]}
        });
        for _ in 0..2 {
            let response = stack.invoke("delivery", &event).await;
            assert_eq!(response, json!({"batchItemFailures": []}));
        }
        let mut frames = vec![live];
        frames.extend(device.drain(QUIET).await);
        assert_eq!(applied_seqs(&frames, seq(&created) - 1), [seq(&created)]);
        assert_eq!(
            frames.len(),
            1,
            "a redelivered record is not posted again: {frames:?}"
        );

        // Exactly one IN_APP outcome for the notification, however often it was delivered.
        let kafka = KafkaSettings::from_env(&Env::from_pairs([(
            "KAFKA_BROKERS",
            stack.kafka_brokers.as_str(),
        )]))
        .unwrap_or_else(|e| panic!("{e}"));
        let outcomes: Vec<Value> = consume(
            &kafka,
            "notification-delivery",
            usize::MAX,
            Duration::from_secs(4),
            Duration::ZERO,
        )
        .await
        .iter()
        .map(|r| r.json())
        .filter(|o| o["notificationId"] == created["id"])
        .collect();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert_eq!(outcomes[0]["channel"], "IN_APP");
        assert_eq!(outcomes[0]["status"], "sent");
    })
    .await;
}

#[tokio::test]
async fn a_connection_gone_without_disconnect_is_pruned_and_the_others_still_receive() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        let registry = registry(stack).await;
        let mut device = stack.connect(&alice).await;
        let now = chrono::Utc::now().timestamp_millis();
        // A connection API Gateway dropped without calling $disconnect, a minute after it opened.
        let ghost = Connection {
            id: "ghost-connection=".into(),
            connected_at_ms: now - 60_000,
            token_expires_ms: i64::MAX,
        };
        // One whose `$connect` registered it but has not answered yet: API Gateway says 410 for
        // it too, but it is about to exist, so it must be kept.
        let connecting = Connection {
            id: "connecting-connection=".into(),
            connected_at_ms: now,
            token_expires_ms: i64::MAX,
        };
        for c in [&ghost, &connecting] {
            registry
                .register(&alice, c)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let ids = || async {
            registry
                .connections(&alice)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids().await.len(), 3);

        stack.create(&alice, "still here").await;
        expect_frame(&mut device, "notification.created").await;
        // The next notification still reaches the real device; a user's changes are delivered in
        // order, so the first one's posts and removals have finished once its frame is here.
        stack.create(&alice, "and again").await;
        expect_frame(&mut device, "notification.created").await;
        let mut left = ids().await;
        left.sort();
        assert_eq!(left.len(), 2, "only the ghost is pruned: {left:?}");
        assert!(!left.contains(&ghost.id), "{left:?}");
        assert!(left.contains(&connecting.id), "{left:?}");
    })
    .await;
}

#[tokio::test]
async fn a_connection_whose_token_expired_is_closed_at_its_next_delivery() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        let token = stack.token(&alice, &[], Duration::from_secs(1));
        let mut expiring = WsClient::connect(&stack.ws_url(&token))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut fresh = stack.connect(&alice).await;
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        stack.create(&alice, "after expiry").await;
        expect_frame(&mut fresh, "notification.created").await;
        assert_eq!(expiring.next(WAIT).await, None, "no frame after expiry");
        assert!(
            expiring.closed.is_some(),
            "the expired connection is closed"
        );
    })
    .await;
}

#[tokio::test]
async fn every_action_on_a_connection_whose_token_expired_is_refused_and_closes_it() {
    let Some(stack) = shared_stack() else { return };
    bounded(120, async {
        let registry = registry(stack).await;
        let actions = [
            "sync",
            "markRead",
            "markSeen",
            "markAllRead",
            "archive",
            "click",
            "ping",
        ];
        for action in actions {
            let alice = user("alice");
            let mut device = stack.connect(&alice).await;
            let created = stack.create(&alice, "before expiry").await;
            expect_frame(&mut device, "notification.created").await;
            let id = created["id"].as_str().unwrap_or_default().to_owned();
            // The token expires while the connection is open: rewrite the expiry that $connect
            // stored to a moment ago, so no test waits on the clock.
            let mut open = registry
                .connections(&alice)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(open.len(), 1);
            let mut connection = open.remove(0);
            connection.token_expires_ms = chrono::Utc::now().timestamp_millis() - 1_000;
            registry
                .register(&alice, &connection)
                .await
                .unwrap_or_else(|e| panic!("{e}"));

            let frame = match action {
                "sync" => json!({"action": "sync", "since": 0}),
                "markSeen" => json!({"action": "markSeen", "ids": [id]}),
                "markAllRead" | "ping" => json!({"action": action}),
                _ => json!({"action": action, "id": id}),
            };
            device.send(frame).await;
            let refused = device
                .next(WAIT)
                .await
                .unwrap_or_else(|| panic!("{action}: no answer (closed: {:?})", device.closed));
            assert_eq!(
                (
                    refused["type"].as_str(),
                    refused["code"].as_str(),
                    refused["action"].as_str()
                ),
                (Some("error"), Some("unauthorized"), Some(action)),
                "{action}: {refused}"
            );
            assert_eq!(device.next(WAIT).await, None, "{action}: nothing after");
            assert!(
                device.closed.is_some(),
                "{action}: the connection is closed"
            );
            let after = stack.get(&alice, &format!("/v1/notifications/{id}")).await;
            assert_eq!(
                (
                    after["read"].as_bool(),
                    after["seen"].as_bool(),
                    after["archived"].as_bool()
                ),
                (Some(false), Some(false), Some(false)),
                "{action} did not run: {after}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_the_connection_stays_up() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        let mut device = stack.connect(&alice).await;
        let error = |frame: Option<Value>| frame.unwrap_or_else(|| panic!("no error frame"));

        device.send_text("not json".into()).await;
        let e = error(device.next(WAIT).await);
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad-frame"))
        );

        device.send(json!({"action": "dance"})).await;
        let e = error(device.next(WAIT).await);
        assert_eq!(e["code"], "unknown-action");
        assert_eq!(e["action"], "dance");

        device
            .send(json!({"action": "sync", "since": "yesterday"}))
            .await;
        assert_eq!(error(device.next(WAIT).await)["code"], "invalid");

        device
            .send(json!({"action": "markRead", "id": "0190f3a2-0000-7000-8000-00000000dead"}))
            .await;
        assert_eq!(error(device.next(WAIT).await)["code"], "not-found");

        device.send(json!({"action": "ping"})).await;
        assert_eq!(device.next(WAIT).await, Some(json!({"type": "pong"})));

        // A frame over API Gateway's 32 KB limit closes that connection (1009) only.
        device.send_text("x".repeat(40 * 1024)).await;
        assert_eq!(device.next(WAIT).await, None);
        assert_eq!(device.closed, Some(Some(1009)));
        let mut again = stack.connect(&alice).await;
        again.send(json!({"action": "ping"})).await;
        assert_eq!(again.next(WAIT).await, Some(json!({"type": "pong"})));
    })
    .await;
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_refused_at_connect() {
    let Some(stack) = shared_stack() else { return };
    bounded(60, async {
        let alice = user("alice");
        let no_token = format!("ws://{}/{}", stack.ws, stack.stage);
        assert_eq!(WsClient::connect(&no_token).await.err().as_deref(), Some("HTTP 401"));

        // Signed by a key that is not the issuer's, with the issuer's name and audience.
        let other = tempdir();
        let forger = devstack::jwt::Issuer::load_or_create(
            &other,
            &stack.http_url(""),
            "herald",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let forged = forger
            .token(&alice, &[], Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            WsClient::connect(&stack.ws_url(&forged)).await.err().as_deref(),
            Some("HTTP 401")
        );

        // The issuer's own key, expired a minute ago.
        let pem = std::fs::read(devstack::jwt::key_path(&stack.data_dir))
            .unwrap_or_else(|e| panic!("{e}"));
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        let now = chrono::Utc::now().timestamp();
        let expired = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &json!({"iss": stack.http_url(""), "aud": "herald", "sub": alice, "exp": now - 60, "iat": now - 120}),
            &key,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            WsClient::connect(&stack.ws_url(&expired)).await.err().as_deref(),
            Some("HTTP 401")
        );
        assert_eq!(
            WsClient::connect(&stack.ws_url("not-a-jwt")).await.err().as_deref(),
            Some("HTTP 401")
        );

        // And the server is still healthy.
        let mut device = stack.connect(&alice).await;
        device.send(json!({"action": "ping"})).await;
        assert_eq!(device.next(WAIT).await, Some(json!({"type": "pong"})));
    })
    .await;
}

/// The EventBridge schedule event the relay gets every minute.
fn schedule_event() -> Value {
    serde_json::from_str(include_str!(
        "../../events/eventbridge-outbox-relay-schedule.json"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-forger-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// The seed's fallback: with Kafka down, a create still reaches the open socket at once; when
/// Kafka is back the relay publishes the change, and the client applies its seq exactly once.
#[tokio::test]
async fn with_kafka_down_a_create_still_reaches_the_socket_and_is_applied_once() {
    if shared_stack().is_none() {
        return;
    }
    // A private stack on the embedded broker, with no relay grace, so the test can take Kafka
    // down and run the relay without waiting. Its own key prefix keeps its relay and delivery
    // away from the shared stack's users: they would prune those users' sockets, which this
    // stack's gateway does not know (410).
    let stack = Stack::start(&[
        ("KAFKA_BROKERS", ""),
        ("OUTBOX_GRACE_MS", "0"),
        ("REDIS_KEY_PREFIX", "kafka-down:"),
    ]);
    bounded(120, async {
        let alice = user("alice");
        let mut device = stack.connect(&alice).await;
        let before = stack.create(&alice, "while kafka is up").await;
        expect_frame(&mut device, "notification.created").await;

        stack.kafka_down(true).await;
        let during = stack.create(&alice, "while kafka is down").await;
        let fallback = expect_frame(&mut device, "notification.created").await;
        assert_eq!(fallback["seq"], during["seq"]);
        assert_eq!(fallback["notification"]["title"], "while kafka is down");

        stack.kafka_down(false).await;
        let report = stack.invoke("outbox-relay", &schedule_event()).await;
        assert!(
            report["published"].as_u64() >= Some(1),
            "the relay published it: {report}"
        );

        // delivery posts it again once Kafka has it; the client drops the repeat by seq.
        let mut frames = vec![fallback];
        frames.extend(device.drain(Duration::from_secs(3)).await);
        assert_eq!(applied_seqs(&frames, seq(&before)), [seq(&during)]);
        let counts = stack.get(&alice, "/v1/notifications/counts").await;
        assert_eq!(counts["unread"], 2);
    })
    .await;
}

/// The ws function in process, on this test's own key prefix (a second devstack on the shared
/// Redis would run its relay and delivery against the shared stack's users): `sync` frames from
/// two users' connections, replies captured where `@connections` would be.
#[tokio::test]
async fn actions_over_the_users_limit_get_a_rate_limited_frame_and_other_users_do_not() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let capture = CaptureServer::start().await;
    let vars = Env::from_pairs([
        ("CONNECTIONS_URL", format!("{}/live", capture.url)),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]);
    let realtime = RealtimeSettings::from_env(&vars).unwrap_or_else(|e| panic!("{e}"));
    let api = ConnectionsApi::from_env(&vars, &realtime).unwrap_or_else(|e| panic!("{e}"));
    let fanout = Fanout::new(
        ConnectionRegistry::new(env.conn.clone(), env.keys.clone()),
        api,
        4,
    );
    // Three actions per user, refilled once a day: no refill within the test.
    let inbox = InboxSettings {
        per_user_mutation: RateLimit {
            burst: 3,
            per_period: 1,
            period: Duration::from_secs(86_400),
        },
        ..InboxSettings::default()
    };
    let store = env.store(inbox.clone());
    let deps = ws::Deps {
        publisher: Publisher::new(env.bus(), store.clone()),
        limiter: RateLimiter::new(env.conn.clone(), env.keys.clone(), &inbox),
        store,
        fanout: fanout.clone(),
        verifier: JwksVerifier::new(JwtSettings {
            issuer: "https://issuer.example".into(),
            audience: "herald".into(),
            jwks_url: "http://127.0.0.1:9/unused".into(),
            jwks_ttl: Duration::MAX,
            tenant_claim: Default::default(),
        }),
    };
    for (user, id) in [("alice", "AliceConn0001A="), ("bob", "BobConn000001B=")] {
        let connection = Connection {
            id: id.into(),
            connected_at_ms: chrono::Utc::now().timestamp_millis(),
            token_expires_ms: i64::MAX,
        };
        fanout
            .registry()
            .register(user, &connection)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let template: ApiGatewayWebsocketProxyRequest = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/apigw-ws-sync.json"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    // Sends one frame from a connection; returns what was posted back to it.
    let send = |connection: &str, body: Value| {
        let mut event = template.clone();
        event.request_context.connection_id = Some(connection.to_owned());
        event.request_context.route_key = body["action"].as_str().map(str::to_owned);
        event.body = Some(body.to_string());
        let deps = &deps;
        let capture = &capture;
        async move {
            let before = capture.requests().len();
            ws::handle(deps, LambdaEvent::new(event, Context::default()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            capture.requests()[before..]
                .iter()
                .map(|r| r.json())
                .collect::<Vec<Value>>()
        }
    };
    let sync = json!({"action": "sync", "since": 0});
    for _ in 0..3 {
        let replies = send("AliceConn0001A=", sync.clone()).await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["type"], "sync.result", "{replies:?}");
    }
    let refused = send("AliceConn0001A=", sync.clone()).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (
            refused[0]["type"].as_str(),
            refused[0]["code"].as_str(),
            refused[0]["action"].as_str(),
            refused[0]["retryAfter"].as_u64().is_some_and(|s| s >= 1)
        ),
        (Some("error"), Some("rate-limited"), Some("sync"), true),
        "{refused:?}"
    );
    // Every action but ping counts, and nothing closed the connection.
    let mark = send("AliceConn0001A=", json!({"action": "markAllRead"})).await;
    assert_eq!(mark[0]["code"], "rate-limited", "{mark:?}");
    let pong = send("AliceConn0001A=", json!({"action": "ping"})).await;
    assert_eq!(pong, [json!({"type": "pong"})]);
    assert!(capture.requests().iter().all(|r| r.method != "DELETE"));
    // Another user is not affected.
    let other = send("BobConn000001B=", sync).await;
    assert_eq!(other[0]["type"], "sync.result", "{other:?}");
}
