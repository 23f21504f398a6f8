//! The PUSH channel to phones, through devstack (the real template, functions, gateways and
//! Kafka trigger) with FCM pointed at the local FCM fake (`tests/src/fcm.rs`) and APNs at the
//! local HTTP/2-over-TLS APNs fake (`tests/src/apns.rs`):
//!
//! - a notification reaches an android phone with the user's unread count as its badge;
//! - an iPhone gets the same badge through APNs, a read brings it a silent background update,
//!   and a token APNs calls `Unregistered` removes that iPhone only;
//! - a read on the web (API or WebSocket) brings the phone one silent badge update with the new
//!   count; a burst of reads brings at most one per 2 s window, the final count last;
//! - a token FCM calls gone removes that device (and its owner record) only, while the user's
//!   other targets still get the notification;
//! - a redelivered batch, and a retry of a throttled device, send nothing twice to a device.
//!
//! Nothing here times the machine: each test waits for a condition with a generous deadline, and
//! the 2 s coalescing is checked by counting updates against the time the burst took.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::apns::{self, ApnsFake};
use herald_tests::browser::Browser;
use herald_tests::eventually;
use herald_tests::fcm::{self, FcmFake, CLIENT_EMAIL};
use herald_tests::provider::Provider;
use herald_tests::stack::{http_client, Stack};
use serde_json::{json, Value};
use shared::store::KeySpace;

const PROJECT: &str = "herald-phones";
/// Long enough for any machine; conditions end the waits, not this.
const DEADLINE: Duration = Duration::from_secs(60);
/// The badge window (`push`'s `BADGE_WINDOW`).
const WINDOW: Duration = Duration::from_secs(2);

/// A devstack whose push function sends to the FCM and APNs fakes.
struct Phones {
    stack: Stack,
    fcm: FcmFake,
    apns: ApnsFake,
}

fn phones() -> Option<&'static Phones> {
    static PHONES: OnceLock<Option<Phones>> = OnceLock::new();
    PHONES
        .get_or_init(|| {
            if let Some(why) = herald_tests::stack::missing() {
                herald_tests::skip(&why);
                return None;
            }
            // The fake outlives every test's runtime: it runs on a runtime of its own.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("runtime: {e}"));
                rt.block_on(async {
                    let _ = tx.send((FcmFake::start().await, ApnsFake::start().await));
                    std::future::pending::<()>().await;
                });
            });
            let (fcm, apns) = rx
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|e| panic!("the provider fakes did not start: {e}"));
            fcm.provider
                .always(&FcmFake::send_path(PROJECT), fcm::sent(PROJECT));
            let account = fcm::service_account(CLIENT_EMAIL);
            let token_url = format!("{}/token", fcm.provider.url);
            let ios = apns.settings();
            let stack = Stack::start(&[
                ("FCM_PROJECT_ID", PROJECT),
                ("FCM_SERVICE_ACCOUNT", &account),
                ("FCM_ENDPOINT", &fcm.provider.url),
                ("FCM_TOKEN_URL", &token_url),
                ("APNS_KEY_ID", &ios.key_id),
                ("APNS_TEAM_ID", &ios.team_id),
                ("APNS_PRIVATE_KEY", &ios.private_key),
                ("APNS_TOPIC", &ios.topic),
                ("APNS_ENDPOINT", &ios.endpoint),
                ("APNS_CA_CERT", &apns.ca_cert),
            ]);
            Some(Phones { stack, fcm, apns })
        })
        .as_ref()
}

fn user() -> String {
    format!("ph{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A fresh FCM registration token (the shape `POST /v1/devices` accepts).
fn fcm_token() -> String {
    format!(
        "{}:APA91b{}",
        uuid::Uuid::new_v4().simple(),
        "x".repeat(110)
    )
}

impl Phones {
    fn token(&self, user: &str) -> String {
        self.stack.token(user, &[], Duration::from_secs(600))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        user: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = http_client()
            .request(method.clone(), self.stack.http_url(path))
            .bearer_auth(self.token(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Registers an android device for `user`; its id.
    async fn android(&self, user: &str, token: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                user,
                "/v1/devices",
                Some(json!({"platform": "android", "token": token})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Registers an iPhone for `user`; its id.
    async fn iphone(&self, user: &str, token: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                user,
                "/v1/devices",
                Some(json!({"platform": "ios", "token": token})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap_or_default().to_owned()
    }

    /// What APNs received for `token`: (push type, payload), in order.
    fn apns_received(&self, token: &str) -> Vec<(String, Value)> {
        self.apns
            .received(token)
            .iter()
            .map(|r| {
                let push_type = r.header("apns-push-type").unwrap_or_default().to_owned();
                (
                    push_type,
                    serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    async fn device_ids(&self, user: &str) -> Vec<String> {
        let list = self.stack.get(user, "/v1/devices").await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect()
    }

    async fn notify(&self, user: &str, title: &str, channels: &[&str]) -> Value {
        self.stack
            .create_with(
                user,
                json!({"title": title, "body": "b", "channels": channels}),
            )
            .await
    }

    async fn read(&self, user: &str, id: &Value) {
        let path = format!("/v1/notifications/{}", id.as_str().unwrap_or_default());
        let (status, body) = self
            .call(
                reqwest::Method::PATCH,
                user,
                &path,
                Some(json!({"read": true})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The notifications FCM received for `token` (messages with a notification block).
    fn pushes(&self, token: &str) -> Vec<Value> {
        self.fcm
            .sends_to(PROJECT, token)
            .into_iter()
            .filter(|b| b["message"].get("notification").is_some())
            .collect()
    }

    /// The silent badge updates FCM received for `token`: their counts, in order.
    fn badge_updates(&self, token: &str) -> Vec<String> {
        self.fcm
            .sends_to(PROJECT, token)
            .into_iter()
            .filter(|b| b["message"].get("notification").is_none())
            .map(|b| {
                assert_eq!(b["message"]["android"]["collapse_key"], "badge", "{b}");
                b["message"]["data"]["badge"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// Runs the push function's scheduled drain of the retry schedule now, as EventBridge would.
    async fn drain(&self) {
        let event: Value = serde_json::from_str(include_str!(
            "../../events/eventbridge-push-retry-schedule.json"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        self.stack.invoke("push", &event).await;
    }

    /// Is a trailing badge update of `user` waiting on the retry schedule?
    async fn badge_pending(&self, user: &str) -> bool {
        let mut conn = self.stack.redis().await;
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(KeySpace::default().push_due())
            .arg(format!("{user}\nbadge"))
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"));
        score.is_some()
    }

    async fn owner_record(&self, device_id: &str) -> Option<String> {
        let mut conn = self.stack.redis().await;
        redis::cmd("GET")
            .arg(KeySpace::default().device_owner(device_id))
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_reaches_an_android_phone_with_the_unread_count_as_its_badge() {
    let Some(p) = phones() else { return };
    let (ada, token) = (user(), fcm_token());
    p.android(&ada, &token).await;
    // One unread already, in the inbox only: the phone's first push says 2.
    p.notify(&ada, "in-app only", &["IN_APP"]).await;
    let first = p.notify(&ada, "Deployed", &["IN_APP", "PUSH"]).await;
    assert!(eventually(DEADLINE, || async { p.pushes(&token).len() == 1 }).await);
    let second = p.notify(&ada, "Rolled back", &["IN_APP", "PUSH"]).await;
    assert!(eventually(DEADLINE, || async { p.pushes(&token).len() == 2 }).await);
    let pushes = p.pushes(&token);
    for (push, (n, badge)) in pushes.iter().zip([(&first, 2), (&second, 3)]) {
        let m = &push["message"];
        assert_eq!(m["data"]["id"], n["id"], "{push}");
        assert_eq!(m["notification"]["title"], n["title"], "{push}");
        assert_eq!(m["android"]["notification"]["notification_count"], badge);
        assert_eq!(
            m["data"]["badge"],
            badge.to_string(),
            "data values are strings"
        );
    }
    assert!(
        p.badge_updates(&token).is_empty(),
        "a create sends no silent update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_the_web_sends_the_phone_one_silent_badge_update_with_the_new_count() {
    let Some(p) = phones() else { return };
    let (ada, token) = (user(), fcm_token());
    p.android(&ada, &token).await;
    let first = p.notify(&ada, "one", &["IN_APP"]).await;
    let second = p.notify(&ada, "two", &["IN_APP"]).await;
    p.read(&ada, &first["id"]).await;
    assert!(
        eventually(DEADLINE, || async { !p.badge_updates(&token).is_empty() }).await,
        "a silent update reached the phone"
    );
    // Nothing else is on its way: no trailing update waits (one change asked for one).
    assert!(eventually(DEADLINE, || async { !p.badge_pending(&ada).await }).await);
    assert_eq!(p.badge_updates(&token), ["1"]);
    assert!(
        p.pushes(&token).is_empty(),
        "IN_APP notifications are not pushed"
    );

    // The other one read over the WebSocket: the phone gets 0 (from the retry schedule at the
    // window's end if the read came inside the window, at once otherwise).
    let mut socket = p.stack.connect(&ada).await;
    socket
        .send(json!({"action": "markRead", "id": second["id"]}))
        .await;
    let updates = || async {
        p.drain().await;
        p.badge_updates(&token) == ["1", "0"]
    };
    assert!(
        eventually(DEADLINE, updates).await,
        "{:?}",
        p.badge_updates(&token)
    );
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reads_brings_at_most_one_update_per_window_and_the_final_count_last() {
    let Some(p) = phones() else { return };
    let (ada, token) = (user(), fcm_token());
    p.android(&ada, &token).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(p.notify(&ada, &format!("n{i}"), &["IN_APP"]).await["id"].clone());
    }
    let started = Instant::now();
    // The first read's update opens the window; the rest follow at once, inside it unless the
    // machine is slower than 2 s a read (then they are sent as they come: the bound below holds
    // either way).
    p.read(&ada, &ids[0]).await;
    assert!(eventually(DEADLINE, || async { p.badge_updates(&token) == ["4"] }).await);
    for id in &ids[1..3] {
        p.read(&ada, id).await;
    }
    let (status, body) = p
        .call(
            reqwest::Method::POST,
            &ada,
            "/v1/notifications/mark-all-read",
            Some(json!({})),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    // The trailing update is the drain's (every minute on AWS): run it until it has nothing left
    // for this user and the phone shows 0.
    let settled = eventually(DEADLINE, || async {
        p.drain().await;
        !p.badge_pending(&ada).await
            && p.badge_updates(&token).last().map(String::as_str) == Some("0")
    })
    .await;
    let elapsed = started.elapsed();
    let updates = p.badge_updates(&token);
    assert!(settled, "the final count reached the phone: {updates:?}");
    // Each update opened a 2 s window that no other update shared, and every window opened
    // after `started` and before now: however slow the machine, no more than this fit.
    let most = (elapsed.as_millis() / WINDOW.as_millis()) as usize + 1;
    assert!(
        updates.len() <= most,
        "{} updates in {elapsed:?}: {updates:?}",
        updates.len()
    );
    let counts: Vec<u64> = updates
        .iter()
        .map(|c| c.parse().unwrap_or(u64::MAX))
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "each update carries the count when it was sent: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_token_removes_that_device_only_and_the_other_targets_still_get_it() {
    let Some(p) = phones() else { return };
    let ada = user();
    let (live, dead) = (fcm_token(), fcm_token());
    let live_id = p.android(&ada, &live).await;
    let dead_id = p.android(&ada, &dead).await;
    p.fcm.unregister(&dead);
    let service = Provider::start().await;
    let browser = Browser::new();
    let (status, body) = p
        .call(
            reqwest::Method::POST,
            &ada,
            "/v1/push-subscriptions",
            Some(browser.subscription(&format!("{}/push/ada", service.url))),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let n = p.notify(&ada, "Deployed", &["IN_APP", "PUSH"]).await;
    assert!(
        eventually(DEADLINE, || async {
            p.device_ids(&ada).await == [live_id.clone()]
                && p.pushes(&live).len() == 1
                && service.received("/push/ada").len() == 1
        })
        .await,
        "devices {:?}, phone {:?}, browser {}",
        p.device_ids(&ada).await,
        p.pushes(&live),
        service.received("/push/ada").len()
    );
    assert_eq!(p.fcm.sends_to(PROJECT, &dead).len(), 1, "asked once");
    assert_eq!(
        p.owner_record(&dead_id).await,
        None,
        "its owner record went too"
    );
    assert_eq!(
        p.owner_record(&live_id).await.as_deref(),
        Some(ada.as_str())
    );
    assert_eq!(
        browser.decrypt(&service.received("/push/ada")[0].body)["id"],
        n["id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_and_a_throttled_retry_send_nothing_twice_to_a_device() {
    let Some(p) = phones() else { return };
    let ada = user();
    let (fast, slow) = (fcm_token(), fcm_token());
    p.android(&ada, &fast).await;
    p.android(&ada, &slow).await;
    // The slow phone's first send is throttled past the inline wait (5 s): the retry schedule.
    p.fcm.script_token(
        &slow,
        vec![
            fcm::error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down")
                .header("Retry-After", "6"),
        ],
    );
    let n = p.notify(&ada, "Deployed", &["IN_APP", "PUSH"]).await;
    assert!(eventually(DEADLINE, || async { p.pushes(&fast).len() == 1 }).await);
    assert!(
        eventually(DEADLINE, || async {
            p.drain().await;
            p.pushes(&slow).len() == 2
        })
        .await,
        "the throttled phone got it from the retry schedule: {:?}",
        p.pushes(&slow)
    );

    // The same record again, as Kafka redelivers it: push's send records stop it.
    let seq = n["seq"].as_u64().unwrap_or_default();
    let changes = p
        .stack
        .get(&ada, &format!("/v1/changes?since={}", seq - 1))
        .await;
    let envelope = &changes["changes"][0];
    assert_eq!(envelope["seq"], n["seq"]);
    let event = json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": p.stack.kafka_brokers,
        "records": {"push-notifications-0": [{
            "topic": "push-notifications", "partition": 0, "offset": 0,
            "timestamp": 0, "timestampType": "CREATE_TIME",
            "key": STANDARD.encode(&ada),
            "value": STANDARD.encode(envelope.to_string()),
            "headers": []
        }]}
    });
    for _ in 0..2 {
        let response = p.stack.invoke("push", &event).await;
        assert_eq!(response, json!({"batchItemFailures": []}));
    }
    p.drain().await;
    assert_eq!(
        p.pushes(&fast).len(),
        1,
        "the phone that got it never again"
    );
    assert_eq!(
        p.pushes(&slow).len(),
        2,
        "the throttled try and its one retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iphone_gets_the_badge_through_apns_a_read_updates_it_and_an_unregistered_token_is_pruned(
) {
    let Some(p) = phones() else { return };
    let ada = user();
    let (iphone_token, android_token) = (random_apns_token(), fcm_token());
    let iphone = p.iphone(&ada, &iphone_token).await;
    p.android(&ada, &android_token).await;
    let first = p.notify(&ada, "Deployed", &["IN_APP", "PUSH"]).await;
    assert!(
        eventually(DEADLINE, || async {
            p.apns_received(&iphone_token).len() == 1
        })
        .await
    );
    assert!(eventually(DEADLINE, || async { p.pushes(&android_token).len() == 1 }).await);
    let (push_type, alert) = &p.apns_received(&iphone_token)[0];
    assert_eq!(push_type, "alert", "{alert}");
    assert_eq!(alert["id"], first["id"], "{alert}");
    assert_eq!(alert["aps"]["alert"]["title"], "Deployed", "{alert}");
    assert_eq!(alert["aps"]["badge"], 1, "the exact unread count: {alert}");

    // Read on the web: the iPhone gets a silent background update with the new count.
    p.read(&ada, &first["id"]).await;
    assert!(
        eventually(DEADLINE, || async {
            p.apns_received(&iphone_token).len() == 2
        })
        .await
    );
    let (push_type, update) = &p.apns_received(&iphone_token)[1];
    assert_eq!(push_type, "background", "{update}");
    assert_eq!(update["aps"]["content-available"], 1, "{update}");
    assert_eq!(update["aps"]["badge"], 0, "{update}");
    assert!(update["aps"].get("alert").is_none(), "silent: {update}");

    // APNs calls the token gone: that iPhone is removed, the android phone still gets the next.
    p.apns
        .provider
        .always(&ApnsFake::path(&iphone_token), apns::unregistered());
    p.notify(&ada, "Rolled back", &["IN_APP", "PUSH"]).await;
    assert!(eventually(DEADLINE, || async { p.pushes(&android_token).len() == 2 }).await);
    assert!(
        eventually(DEADLINE, || async {
            !p.device_ids(&ada).await.contains(&iphone)
        })
        .await,
        "the unregistered iPhone is removed"
    );
    assert_eq!(p.device_ids(&ada).await.len(), 1, "the android phone stays");
    assert_eq!(p.owner_record(&iphone).await, None, "its owner record too");
}

/// A fresh APNs device token (32 random bytes, hex).
fn random_apns_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
