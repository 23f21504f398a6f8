//! Outbound webhooks end to end, through devstack (the real template, the api and webhooks
//! binaries, the Kafka triggers and the retry schedule) to a local receiver
//! ([`Provider`]: answers 2xx, 5xx, redirects or nothing, as a test scripts it), with the
//! Standard Webhooks reference verifier (`standardwebhooks` from PyPI,
//! `scripts/services/verify-webhook`) checking what arrives.
//!
//! One private stack for this binary: its own embedded Kafka and key prefix, so no other test
//! binary's webhooks function shares its consumer groups or registry; a retry base of 1 ms and a
//! window of 2 ms, so a failed message is retried once (by a drain the test invokes) and then
//! dead-lettered. Nothing waits on a clock: the tests invoke the drain until what they expect
//! has happened, within generous bounds. Every webhook sees every test's events, so each test's
//! receiver answers 200 at once to other users' events and the test reads only its own. The last
//! test holds the store alone to its contract, on real Redis without a stack.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::provider::{answer, Provider, Received};
use herald_tests::stack::{http_client, stack_available, Stack};
use serde_json::{json, Value};
use shared::model::{Counts, Notification};
use shared::protocol::{Envelope, Event};

const HOOK: &str = "/hook";

/// The stack, and its Redis key prefix.
fn stack() -> Option<&'static Stack> {
    stack_and_prefix().map(|(stack, _)| stack)
}

fn stack_and_prefix() -> Option<(&'static Stack, &'static str)> {
    static STACK: OnceLock<Option<(Stack, String)>> = OnceLock::new();
    STACK
        .get_or_init(|| {
            stack_available().then(|| {
                let prefix = format!("webhooks-{}:", uuid::Uuid::new_v4().simple());
                let stack = Stack::start(&[
                    ("KAFKA_BROKERS", ""),
                    ("REDIS_KEY_PREFIX", &prefix),
                    ("WEBHOOK_RETRY_BASE_MS", "1"),
                    ("WEBHOOK_RETRY_WINDOW_MS", "2"),
                ]);
                (stack, prefix)
            })
        })
        .as_ref()
        .map(|(stack, prefix)| (stack, prefix.as_str()))
}

fn user(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn admin(stack: &Stack) -> String {
    stack.token("ops", &["webhooks:admin"], Duration::from_secs(600))
}

/// Sends `method path` with `body` as `token`; the status and the JSON answer.
async fn call(
    stack: &Stack,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_default();
    let mut request = http_client()
        .request(method, stack.http_url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// A receiver on 127.0.0.1 that answers 200 at once to every event that is not `user`'s, so
/// only the test's own events meet its script.
async fn receiver(user: &str) -> Provider {
    let provider = Provider::start().await;
    let user = user.to_owned();
    provider.guard(Arc::new(move |r: &Received| {
        (!is_for(r, &user)).then(|| answer(200))
    }));
    provider
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_default()
}

fn is_for(r: &Received, user: &str) -> bool {
    body(r)["data"]["userId"] == user
}

/// `user`'s requests on the hook path, in arrival order.
fn received_for(provider: &Provider, user: &str) -> Vec<Received> {
    provider
        .received(HOOK)
        .into_iter()
        .filter(|r| is_for(r, user))
        .collect()
}

/// Registers a webhook for `events` at the receiver; returns the 201 body.
async fn register(stack: &Stack, provider: &Provider, events: &[&str]) -> Value {
    let (status, created) = call(
        stack,
        &admin(stack),
        "POST",
        "/v1/webhooks",
        Some(json!({"url": format!("{}{HOOK}", provider.url), "events": events})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn unregister(stack: &Stack, id: &str) {
    let (status, answer) = call(
        stack,
        &admin(stack),
        "DELETE",
        &format!("/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{answer}");
}

/// The webhook's attempts for `notification`, oldest first.
async fn attempts(stack: &Stack, hook: &str, notification: &str) -> Vec<Value> {
    let (status, list) = call(
        stack,
        &admin(stack),
        "GET",
        &format!("/v1/webhooks/{hook}/deliveries"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let mut mine: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["notificationId"] == notification)
        .collect();
    mine.reverse();
    mine
}

/// Runs the retry schedule once, as the `rate(1 minute)` schedule does.
async fn drain(stack: &Stack) -> Value {
    let event = json!({"version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": "eu-west-3", "resources": [], "detail": {}});
    stack.invoke("webhooks", &event).await
}

/// Polls `check` (running the retry schedule between polls when `drive`) until it holds; a
/// generous bound, so a slow machine only waits longer.
async fn until<F, Fut>(what: &str, stack: &Stack, drive: bool, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        if drive {
            drain(stack).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Each request checked by the Standard Webhooks reference verifier: `ok` or why not.
fn verify(secret: &str, requests: &[Received]) -> Vec<String> {
    let input = json!({"secret": secret, "requests": requests.iter().map(|r| json!({
        "headers": r.headers, "body": String::from_utf8_lossy(&r.body)})).collect::<Vec<_>>()});
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/services/verify-webhook"
    );
    let mut child = std::process::Command::new(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(input.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{script}: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `user`'s `notification.created` requests for `notification`.
fn created_for(provider: &Provider, user: &str, notification: &str) -> Vec<Received> {
    received_for(provider, user)
        .into_iter()
        .filter(|r| {
            let b = body(r);
            b["type"] == "notification.created" && b["data"]["id"] == notification
        })
        .collect()
}

#[tokio::test]
async fn a_webhook_arrives_signed_and_verifies_with_the_reference_verifier() {
    let Some(stack) = stack() else { return };
    let alice = user("alice");
    let provider = receiver(&alice).await;
    provider.always(HOOK, answer(200));
    let hook = register(
        stack,
        &provider,
        &[
            "notification.created",
            "delivery.suppressed",
            "notification.read",
        ],
    )
    .await;
    let secret = hook["secret"].as_str().unwrap_or_default();
    assert!(secret.starts_with("whsec_"), "{hook}");
    let created = stack.create(&alice, "signed").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    // Read it: the first read reaches notification-analytics, then the webhook.
    let (status, _) = call(
        stack,
        &stack.token(&alice, &[], Duration::from_secs(600)),
        "PATCH",
        &format!("/v1/notifications/{id}"),
        Some(json!({"read": true})),
    )
    .await;
    assert_eq!(status, 200);
    until(
        "created, suppressed (IN_APP, no connection) and read arrive",
        stack,
        false,
        || {
            let types: Vec<Value> = received_for(&provider, &alice)
                .iter()
                .map(|r| body(r)["type"].clone())
                .collect();
            let all = [
                "notification.created",
                "delivery.suppressed",
                "notification.read",
            ]
            .iter()
            .all(|t| types.contains(&json!(t)));
            async move { all }
        },
    )
    .await;
    let mine = received_for(&provider, &alice);
    assert!(
        verify(secret, &mine).iter().all(|v| v == "ok"),
        "{:?}",
        verify(secret, &mine)
    );
    let first = &created_for(&provider, &alice, &id)[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.header("content-type"), Some("application/json"));
    let webhook_id = first.header("webhook-id").unwrap_or_default();
    assert!(
        webhook_id.ends_with(".notification.created"),
        "{webhook_id}"
    );
    assert_eq!(body(first)["data"]["title"], "signed");
    // Tampering is caught: the same request with another body or secret fails.
    let mut tampered = first.clone();
    tampered.body = br#"{"type":"notification.created"}"#.to_vec();
    assert_ne!(verify(secret, &[tampered]), ["ok"]);
    let other_secret = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    assert_ne!(verify(&other_secret, std::slice::from_ref(first)), ["ok"]);

    let delivered = attempts(stack, hook["id"].as_str().unwrap_or_default(), &id).await;
    assert!(
        delivered
            .iter()
            .all(|a| a["result"] == "delivered" && a["statusCode"] == 200 && a["attempt"] == 1),
        "{delivered:?}"
    );
    // Listed without its secret.
    let (_, list) = call(stack, &admin(stack), "GET", "/v1/webhooks", None).await;
    let listed = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|w| w["id"] == hook["id"]).cloned())
        .unwrap_or_default();
    assert_eq!(listed["url"], hook["url"]);
    assert!(listed.get("secret").is_none(), "{listed}");
    unregister(stack, hook["id"].as_str().unwrap_or_default()).await;
}

#[tokio::test]
async fn a_5xx_is_retried_and_then_succeeds_once() {
    let Some(stack) = stack() else { return };
    let bob = user("bob");
    let provider = receiver(&bob).await;
    provider.queue(HOOK, vec![answer(503)]);
    provider.always(HOOK, answer(204));
    let hook = register(stack, &provider, &["notification.created"]).await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let created = stack.create(&bob, "retried").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until(
        "the first attempt is recorded as retrying",
        stack,
        false,
        || async {
            attempts(stack, hook_id, &id)
                .await
                .first()
                .is_some_and(|a| a["result"] == "retrying")
        },
    )
    .await;
    until("the retry is delivered", stack, true, || {
        let n = created_for(&provider, &bob, &id).len();
        async move { n >= 2 }
    })
    .await;
    // More drains send nothing more: the retry succeeded once.
    drain(stack).await;
    drain(stack).await;
    let sent = created_for(&provider, &bob, &id);
    assert_eq!(sent.len(), 2, "one failure, one success");
    assert_eq!(sent[0].header("webhook-id"), sent[1].header("webhook-id"));
    let secret = hook["secret"].as_str().unwrap_or_default();
    assert_eq!(verify(secret, &sent[1..]), ["ok"]);
    let history = attempts(stack, hook_id, &id).await;
    let summary: Vec<(Value, Value, Value)> = history
        .iter()
        .map(|a| {
            (
                a["attempt"].clone(),
                a["statusCode"].clone(),
                a["result"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!(1), json!(503), json!("retrying")),
            (json!(2), json!(204), json!("delivered"))
        ]
    );
    assert!(history[0]["nextAttemptAt"].is_string());
    unregister(stack, hook_id).await;
}

#[tokio::test]
async fn a_redirect_is_refused_and_never_followed() {
    let Some(stack) = stack() else { return };
    let carol = user("carol");
    let provider = receiver(&carol).await;
    provider.always(
        HOOK,
        answer(302).header("location", &format!("{}/elsewhere", provider.url)),
    );
    let hook = register(stack, &provider, &["notification.created"]).await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let created = stack.create(&carol, "redirected").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until("the redirect is recorded", stack, false, || async {
        !attempts(stack, hook_id, &id).await.is_empty()
    })
    .await;
    let first = attempts(stack, hook_id, &id).await.remove(0);
    assert_eq!(first["statusCode"], 302, "{first}");
    assert_eq!(first["error"], "redirect-refused", "{first}");
    // A redirect is `rejected`: dead-lettered at once (it would be refused again).
    assert_eq!(first["result"], "dead-lettered", "{first}");
    assert!(first.get("nextAttemptAt").is_none(), "{first}");
    assert!(
        provider.received("/elsewhere").is_empty(),
        "a redirect was followed"
    );
    unregister(stack, hook_id).await;
}

#[tokio::test]
async fn bad_registrations_are_422_naming_the_field_and_store_nothing() {
    let Some(stack) = stack() else { return };
    let token = admin(stack);
    for (body, field) in [
        (
            json!({"url": "http://hooks.example.com/x", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://10.1.2.3/x", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://169.254.169.254/latest", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://[fd00:ec2::254]/", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://user:pw@hooks.example.com/", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["notification.exploded"]}),
            "events[0]",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": []}),
            "events",
        ),
    ] {
        let (status, problem) =
            call(stack, &token, "POST", "/v1/webhooks", Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "{body}: {problem}");
        let (_, list) = call(stack, &token, "GET", "/v1/webhooks", None).await;
        assert!(
            !list["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|w| w["url"] == body["url"])),
            "{body} was stored: {list}"
        );
    }
    let (status, _) = call(stack, &token, "DELETE", "/v1/webhooks/no-such-hook", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_redelivered_batch_sends_nothing_twice() {
    let Some(stack) = stack() else { return };
    let dave = user("dave");
    let provider = receiver(&dave).await;
    let hook = register(stack, &provider, &["notification.created"]).await;
    // A real notification's shape, from its own webhook.
    let created = stack.create(&dave, "redelivered").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until("the notification's webhook arrives", stack, false, || {
        let n = created_for(&provider, &dave, &id).len();
        async move { n == 1 }
    })
    .await;
    let mut notification: Notification =
        serde_json::from_value(body(&created_for(&provider, &dave, &id)[0])["data"].clone())
            .unwrap_or_else(|e| panic!("{e}"));
    notification.id = uuid::Uuid::now_v7().to_string();
    let envelope = Envelope::new(
        &dave,
        Event::NotificationCreated {
            notification: notification.clone(),
            counts: Counts::default(),
        },
    );
    let record = json!({"topic": "notification-events", "partition": 0, "offset": 1_000_000,
        "timestamp": 0, "timestampType": "CREATE_TIME", "key": null,
        "value": STANDARD.encode(envelope.encode()), "headers": []});
    let batch = json!({"eventSource": "SelfManagedKafka",
        "records": {"notification-events-0": [record]}});
    for _ in 0..3 {
        let answer = stack.invoke("webhooks", &batch).await;
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    }
    drain(stack).await;
    let sent = created_for(&provider, &dave, &notification.id);
    assert_eq!(
        sent.len(),
        1,
        "the batch arrived three times, the webhook once"
    );
    assert_eq!(
        sent[0].header("webhook-id"),
        Some(format!("{}.notification.created", envelope.id).as_str())
    );
    unregister(stack, hook["id"].as_str().unwrap_or_default()).await;
}

#[tokio::test]
async fn a_dead_letter_is_sent_again_by_a_replay() {
    let Some(stack) = stack() else { return };
    let erin = user("erin");
    let provider = receiver(&erin).await;
    provider.always(HOOK, answer(500));
    let hook = register(stack, &provider, &["notification.created"]).await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let created = stack.create(&erin, "dead letter").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until("the message is dead-lettered", stack, true, || async {
        attempts(stack, hook_id, &id)
            .await
            .iter()
            .any(|a| a["result"] == "dead-lettered")
    })
    .await;
    let history = attempts(stack, hook_id, &id).await;
    assert_eq!(
        history.len(),
        2,
        "one retry, then the dead letter: {history:?}"
    );
    drain(stack).await;
    assert_eq!(
        created_for(&provider, &erin, &id).len(),
        2,
        "no attempt after the dead letter"
    );

    provider.always(HOOK, answer(200));
    let until_now = chrono::Utc::now() + chrono::Duration::minutes(1);
    let (status, replay) = call(
        stack,
        &admin(stack),
        "POST",
        &format!("/v1/webhooks/{hook_id}/replay"),
        Some(json!({"from": since, "to": until_now})),
    )
    .await;
    assert_eq!(status, 202, "{replay}");
    assert!(replay["queued"].as_u64() >= Some(1), "{replay}");
    until("the replay is delivered", stack, true, || {
        let n = created_for(&provider, &erin, &id).len();
        async move { n == 3 }
    })
    .await;
    let sent = created_for(&provider, &erin, &id);
    let secret = hook["secret"].as_str().unwrap_or_default();
    assert_eq!(verify(secret, &sent[2..]), ["ok"]);
    assert_eq!(sent[0].header("webhook-id"), sent[2].header("webhook-id"));
    let last = attempts(stack, hook_id, &id)
        .await
        .pop()
        .unwrap_or_default();
    assert_eq!(
        (last["attempt"].clone(), last["result"].clone()),
        (json!(1), json!("delivered"))
    );
    // A window before the event replays nothing of it.
    let (_, none) = call(
        stack,
        &admin(stack),
        "POST",
        &format!("/v1/webhooks/{hook_id}/replay"),
        Some(json!({"from": since - chrono::Duration::hours(2), "to": since - chrono::Duration::hours(1)})),
    )
    .await;
    assert_eq!(none["queued"], 0, "{none}");
    let (status, _) = call(
        stack,
        &admin(stack),
        "POST",
        &format!("/v1/webhooks/{hook_id}/replay"),
        Some(json!({"from": until_now, "to": since})),
    )
    .await;
    assert_eq!(status, 422, "to before from");
    unregister(stack, hook_id).await;
}

#[tokio::test]
async fn another_scope_cannot_manage_webhooks() {
    let Some(stack) = stack() else { return };
    let provider = Provider::start().await;
    let hook = register(stack, &provider, &["delivery.sent"]).await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    for scopes in [&[][..], &["notifications:write", "analytics:read"][..]] {
        let token = stack.token("intruder", scopes, Duration::from_secs(600));
        for (method, path, body) in [
            (
                "POST",
                "/v1/webhooks".to_owned(),
                Some(
                    json!({"url": format!("{}{HOOK}", provider.url), "events": ["delivery.sent"]}),
                ),
            ),
            ("GET", "/v1/webhooks".to_owned(), None),
            ("DELETE", format!("/v1/webhooks/{hook_id}"), None),
            ("GET", format!("/v1/webhooks/{hook_id}/deliveries"), None),
            (
                "POST",
                format!("/v1/webhooks/{hook_id}/replay"),
                Some(json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})),
            ),
        ] {
            let (status, _) = call(stack, &token, method, &path, body).await;
            assert_eq!(status, 403, "{method} {path} with {scopes:?}");
        }
    }
    unregister(stack, hook_id).await;
}

#[tokio::test]
async fn a_later_event_of_a_notification_waits_behind_an_earlier_one_that_is_retrying() {
    let Some((stack, prefix)) = stack_and_prefix() else {
        return;
    };
    let frank = user("frank");
    let provider = receiver(&frank).await;
    provider.queue(HOOK, vec![answer(503)]);
    provider.always(HOOK, answer(200));
    let hook = register(
        stack,
        &provider,
        &["notification.created", "notification.read"],
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let created = stack.create(&frank, "in order").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until("the created event is retrying", stack, false, || async {
        attempts(stack, hook_id, &id)
            .await
            .first()
            .is_some_and(|a| a["result"] == "retrying")
    })
    .await;
    let (status, _) = call(
        stack,
        &stack.token(&frank, &[], Duration::from_secs(600)),
        "PATCH",
        &format!("/v1/notifications/{id}"),
        Some(json!({"read": true})),
    )
    .await;
    assert_eq!(status, 200);
    // The read reaches the webhook's ledger, queued behind the created one.
    let ledger = shared::store::KeySpace::new(prefix)
        .webhook(hook_id)
        .ledger();
    let redis = stack.redis().await;
    until("the read is queued", stack, false, || {
        let mut redis = redis.clone();
        let ledger = ledger.clone();
        async move {
            let ids: Vec<String> = redis::AsyncCommands::hkeys(&mut redis, &ledger)
                .await
                .unwrap_or_default();
            ids.iter().any(|m| m.ends_with(".notification.read"))
        }
    })
    .await;
    let types = |provider: &Provider| -> Vec<String> {
        received_for(provider, &frank)
            .iter()
            .map(|r| body(r)["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Unless the minute's scheduled drain already retried the created one, nothing else went.
    let so_far = types(&provider);
    if so_far.len() == 1 {
        assert_eq!(so_far, ["notification.created"], "the read waits");
    }
    until("both are delivered", stack, true, || {
        let n = types(&provider).len();
        async move { n == 3 }
    })
    .await;
    assert_eq!(
        types(&provider),
        [
            "notification.created",
            "notification.created",
            "notification.read"
        ]
    );
    unregister(stack, hook_id).await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let Some(stack) = stack() else { return };
    let gina = user("gina");
    let provider = receiver(&gina).await;
    provider.always(HOOK, herald_tests::provider::hold());
    let hook = register(stack, &provider, &["notification.created"]).await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let created = stack.create(&gina, "silence").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until("the timeout is recorded", stack, false, || async {
        !attempts(stack, hook_id, &id).await.is_empty()
    })
    .await;
    let first = attempts(stack, hook_id, &id).await.remove(0);
    assert_eq!(first["error"], "timeout", "{first}");
    assert_eq!(first["result"], "retrying", "{first}");
    assert!(first.get("statusCode").is_none(), "{first}");
    unregister(stack, hook_id).await;
}

/// A receiver's permanent refusal (400: `rejected`) is dead-lettered at its first attempt, with
/// no retry; a 410 (`gone`: the receiver wants no more webhooks) removes the webhook, so nothing
/// more is sent to it.
#[tokio::test]
async fn a_400_dead_letters_at_once_and_a_410_removes_the_webhook() {
    let Some(stack) = stack() else { return };
    let hana = user("hana");
    let refusing = receiver(&hana).await;
    refusing.always(HOOK, answer(400));
    let hook = register(stack, &refusing, &["notification.created"]).await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let created = stack.create(&hana, "refused").await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    until("the refusal is recorded", stack, false, || async {
        !attempts(stack, hook_id, &id).await.is_empty()
    })
    .await;
    drain(stack).await;
    drain(stack).await;
    let history = attempts(stack, hook_id, &id).await;
    assert_eq!(history.len(), 1, "no retry after a 400: {history:?}");
    assert_eq!(
        (
            history[0]["statusCode"].clone(),
            history[0]["result"].clone()
        ),
        (json!(400), json!("dead-lettered"))
    );
    assert!(
        history[0].get("nextAttemptAt").is_none(),
        "{:?}",
        history[0]
    );
    assert_eq!(created_for(&refusing, &hana, &id).len(), 1);
    unregister(stack, hook_id).await;

    let ivan = user("ivan");
    let gone = receiver(&ivan).await;
    gone.always(HOOK, answer(410));
    let witness = receiver(&ivan).await;
    let gone_hook = register(stack, &gone, &["notification.created"]).await;
    let gone_id = gone_hook["id"].as_str().unwrap_or_default().to_owned();
    let witness_hook = register(stack, &witness, &["notification.created"]).await;
    let first = stack.create(&ivan, "gone").await;
    let first = first["id"].as_str().unwrap_or_default().to_owned();
    until("the webhook is removed", stack, false, || async {
        let (_, list) = call(stack, &admin(stack), "GET", "/v1/webhooks", None).await;
        let listed = list["items"].as_array().cloned().unwrap_or_default();
        !listed.is_empty() && listed.iter().all(|w| w["id"] != gone_id.as_str())
    })
    .await;
    assert_eq!(created_for(&gone, &ivan, &first).len(), 1);
    let (status, _) = call(
        stack,
        &admin(stack),
        "GET",
        &format!("/v1/webhooks/{gone_id}/deliveries"),
        None,
    )
    .await;
    assert_eq!(status, 404, "removed with its delivery state");
    // A later notification reaches the other webhook, and not the removed one.
    let later = stack.create(&ivan, "after the 410").await;
    let later = later["id"].as_str().unwrap_or_default().to_owned();
    until("the other webhook gets the later one", stack, true, || {
        let n = created_for(&witness, &ivan, &later).len();
        async move { n == 1 }
    })
    .await;
    assert!(created_for(&gone, &ivan, &later).is_empty());
    assert_eq!(received_for(&gone, &ivan).len(), 1, "nothing after the 410");
    unregister(stack, witness_hook["id"].as_str().unwrap_or_default()).await;
}

/// A token of `tenant` (the `tenant` claim) for `sub` with `scopes`.
fn tenant_token(stack: &Stack, tenant: &str, sub: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let mut claims = serde_json::Map::new();
    claims.insert("tenant".into(), json!(tenant));
    stack
        .issuer
        .token_with_claims(sub, &scopes, claims, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("token: {e}"))
}

/// Registers a webhook of `tenant` for `notification.created` at the receiver; returns its id.
async fn register_in(stack: &Stack, tenant: &str, provider: &Provider) -> String {
    let admin = tenant_token(stack, tenant, "ops", &["webhooks:admin"]);
    let url = format!("{}{HOOK}", provider.url);
    let body = json!({"url": url, "events": ["notification.created"]});
    let (status, created) = call(stack, &admin, "POST", "/v1/webhooks", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap_or_default().to_owned()
}

/// Creates a notification for `user` in `tenant`; returns its id.
async fn create_in(stack: &Stack, tenant: &str, user: &str) -> String {
    let service = tenant_token(stack, tenant, "svc", &["notifications:write"]);
    let body = json!({"userId": user, "type": "comment", "title": "t", "body": "b"});
    let (status, created) = call(stack, &service, "POST", "/v1/notifications", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap_or_default().to_owned()
}

/// A tenant's event goes to that tenant's webhook only, not to the default tenant's nor another
/// tenant's registered for the same event, for the same user id; the tenant's retry is drained.
/// The default tenant's own later event for the user (same partition, so after the tenant's)
/// is what the test waits for before asserting that the other receivers got nothing else.
#[tokio::test]
async fn a_tenants_events_reach_its_own_webhooks_only_and_its_retries_are_drained() {
    let Some(stack) = stack() else { return };
    let tina = user("tina");
    let (acme, globex) = ("acme", "globex");
    let acme_receiver = receiver(&tina).await;
    acme_receiver.queue(HOOK, vec![answer(503)]);
    acme_receiver.always(HOOK, answer(204));
    let default_receiver = receiver(&tina).await;
    default_receiver.always(HOOK, answer(204));
    let globex_receiver = receiver(&tina).await;
    globex_receiver.always(HOOK, answer(204));
    let acme_hook = register_in(stack, acme, &acme_receiver).await;
    let default_hook = register(stack, &default_receiver, &["notification.created"]).await;
    let default_hook = default_hook["id"].as_str().unwrap_or_default().to_owned();
    let globex_hook = register_in(stack, globex, &globex_receiver).await;

    let id = create_in(stack, acme, &tina).await;
    until("the tenant's retry is delivered", stack, true, || {
        let n = created_for(&acme_receiver, &tina, &id).len();
        async move { n >= 2 }
    })
    .await;
    drain(stack).await;
    assert_eq!(
        created_for(&acme_receiver, &tina, &id).len(),
        2,
        "one failure, one drained retry"
    );
    let acme_admin = tenant_token(stack, acme, "ops", &["webhooks:admin"]);
    let path = format!("/v1/webhooks/{acme_hook}/deliveries");
    let (status, list) = call(stack, &acme_admin, "GET", &path, None).await;
    assert_eq!(status, 200, "{list}");
    let results: Vec<Value> = list["items"]
        .as_array()
        .map(|items| items.iter().map(|a| a["result"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(results, [json!("delivered"), json!("retrying")]);

    let own = stack.create(&tina, "the default tenant's").await;
    let own = own["id"].as_str().unwrap_or_default().to_owned();
    until("the default tenant's event arrives", stack, false, || {
        let n = created_for(&default_receiver, &tina, &own).len();
        async move { n >= 1 }
    })
    .await;
    let ids = |provider: &Provider| -> Vec<Value> {
        received_for(provider, &tina)
            .iter()
            .map(|r| body(r)["data"]["id"].clone())
            .collect()
    };
    assert_eq!(
        ids(&default_receiver),
        [json!(own)],
        "only its own tenant's"
    );
    assert!(
        ids(&globex_receiver).is_empty(),
        "another tenant's gets none"
    );
    assert_eq!(
        ids(&acme_receiver),
        [json!(id), json!(id)],
        "the default tenant's event is not the tenant's"
    );

    for (tenant, hook) in [(acme, acme_hook), (globex, globex_hook)] {
        let admin = tenant_token(stack, tenant, "ops", &["webhooks:admin"]);
        let (status, answer) = call(
            stack,
            &admin,
            "DELETE",
            &format!("/v1/webhooks/{hook}"),
            None,
        )
        .await;
        assert_eq!(status, 204, "{answer}");
    }
    unregister(stack, &default_hook).await;
}

/// The store alone, on real Redis (no stack): the ledger, a notification's queue and its owner,
/// the schedule, a replay, and a removal that leaves no key behind.
#[tokio::test]
async fn the_store_queues_in_order_once_and_a_removal_leaves_nothing() {
    use shared::store::{Enqueued, LedgerEntry, LedgerState, WebhookStore};
    use shared::webhooks::{WebhookEventType, WebhookMessage};
    let Some(env) = herald_tests::TestEnv::new().await else {
        return;
    };
    let store = WebhookStore::new(env.conn.clone(), env.keys.clone());
    let hook = shared::webhooks::Webhook {
        id: "h1".into(),
        url: "https://hooks.example.com/x".into(),
        events: vec![WebhookEventType::NotificationCreated],
        secret: shared::webhooks::new_secret(),
        created_at: chrono::Utc::now(),
    };
    assert!(store.register(&hook, 1).await.unwrap_or_default());
    assert!(
        !store.register(&hook, 1).await.unwrap_or(true),
        "the limit holds"
    );
    let at = chrono::Utc::now();
    let message = |id: &str, notification: &str| WebhookMessage {
        id: id.into(),
        kind: WebhookEventType::NotificationCreated,
        notification_id: notification.into(),
        at,
        body: "{}".into(),
    };
    let now = at.timestamp_millis();
    let lease = Duration::from_secs(300);
    let keep = Duration::from_secs(3600);
    let enqueue = |m: WebhookMessage| {
        let store = store.clone();
        async move {
            store
                .enqueue("h1", &m, now, lease, keep)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert_eq!(enqueue(message("m1", "n1")).await, Enqueued::Owner);
    assert_eq!(enqueue(message("m2", "n1")).await, Enqueued::Waiting);
    assert_eq!(enqueue(message("m1", "n1")).await, Enqueued::Known);
    assert_eq!(enqueue(message("m3", "n2")).await, Enqueued::Owner);
    // m1 fails: its queue waits for the schedule; m2 stays behind it.
    store
        .reschedule("h1", "n1", "m1", 1, now + 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let due = store
        .claim_due("h1", now + 10, lease, 10)
        .await
        .unwrap_or_default();
    assert_eq!(due, ["n1"], "n2's lease has not ended");
    let sent = LedgerEntry {
        state: LedgerState::Sent,
        attempts: 2,
    };
    let next = store.complete("h1", "n1", "m1", sent, now, lease).await;
    assert_eq!(next.ok().flatten().as_deref(), Some("m2"));
    let next = store.complete("h1", "n1", "m2", sent, now, lease).await;
    assert_eq!(next.ok().flatten(), None);
    assert_eq!(store.head("h1", "n1").await.ok().flatten(), None);
    // A replay queues the sent ones again, in order; m3 is still queued and left alone.
    let queued = store
        .replay("h1", now - 1, now + 1, now)
        .await
        .unwrap_or_default();
    assert_eq!(queued, 2);
    assert_eq!(
        store.head("h1", "n1").await.ok().flatten().as_deref(),
        Some("m1")
    );
    assert!(store.remove("h1").await.unwrap_or_default());
    assert!(!store.remove("h1").await.unwrap_or(true));
    let left: Vec<String> = env.keys().await;
    assert!(left.iter().all(|k| !k.contains("{wh")), "{left:?}");
}
