//! The off-app channels against real servers on this machine: the push function's handler in
//! process on real Redis and Kafka, sending to a scripted loopback push service (decrypted here
//! with Mozilla's independent RFC 8291 implementation, VAPID verified with p256), a real SMTP
//! server (Python's aiosmtpd, `scripts/services/smtp-sink`) and an HTTP server in Twilio's shape;
//! the api function's subscription, contact and one-click unsubscribe routes; and one pass
//! through devstack (template wiring, devstack's keys, the Kafka triggers).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use herald_tests::browser::{vapid_keys, verify_vapid, Browser};
use herald_tests::logs::LogCapture;
use herald_tests::provider::{answer, ses, Provider};
use herald_tests::smtp_sink::{header, SmtpSink};
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::config::{Env, SenderSettings};
use shared::model::{Channel, Priority};
use shared::protocol::{Envelope, Topic};
use shared::store::NewNotification;

// ---------------------------------------------------------------------------------------------
// Setup: api and push deps over one TestEnv, with the channel settings a test chooses.

const SUBJECT: &str = "mailto:ops@herald.test";

struct Setup {
    env: TestEnv,
    api: api::Deps,
    push: push::Deps,
    vapid_public: String,
}

fn settings(extra: &[(&str, &str)], vapid: Option<(&str, &str)>) -> SenderSettings {
    let mut pairs: Vec<(String, String)> = vec![
        ("PUSH_ALLOW_LOOPBACK".into(), "true".into()),
        ("PUSH_RETRY_BACKOFF_MS".into(), "50".into()),
        ("PUSH_INLINE_WAIT_MAX_MS".into(), "2000".into()),
        ("PUSH_TIMEOUT_MS".into(), "3000".into()),
        (
            "UNSUBSCRIBE_SECRET".into(),
            "test-unsubscribe-secret-0123456789".into(),
        ),
        ("PUBLIC_API_URL".into(), "https://api.herald.test".into()),
    ];
    if let Some((private, public)) = vapid {
        pairs.push(("VAPID_SUBJECT".into(), SUBJECT.into()));
        pairs.push(("VAPID_PRIVATE_KEY".into(), private.into()));
        pairs.push(("VAPID_PUBLIC_KEY".into(), public.into()));
    }
    for (k, v) in extra {
        pairs.push(((*k).into(), (*v).into()));
    }
    SenderSettings::from_env(&Env::from_pairs(pairs)).unwrap_or_else(|e| panic!("settings: {e}"))
}

impl Setup {
    /// Web Push configured; `extra` adds settings (SMTP, SMS, ...).
    async fn new(extra: &[(&str, &str)]) -> Option<Setup> {
        let env = TestEnv::new().await?;
        let (private, public) = vapid_keys();
        let settings = settings(extra, Some((&private, &public)));
        Some(Self::with(env, settings, public))
    }

    /// No VAPID keys (Web Push not configured); `extra` adds settings.
    async fn without_vapid(extra: &[(&str, &str)]) -> Option<Setup> {
        let env = TestEnv::new().await?;
        Some(Self::with(env, settings(extra, None), String::new()))
    }

    fn with(env: TestEnv, settings: SenderSettings, vapid_public: String) -> Setup {
        let mut api = env.api_with(TestEnv::unlimited(), env.bus());
        api.channels = settings.clone();
        let push = push::Deps::new(env.conn.clone(), env.keys.clone(), env.bus(), settings)
            .unwrap_or_else(|e| panic!("push deps: {e}"));
        Setup {
            env,
            api,
            push,
            vapid_public,
        }
    }

    async fn subscribe(&self, user: &str, browser: &Browser, endpoint: &str) -> String {
        let r = Call::post("/v1/push-subscriptions")
            .user(user)
            .json(&browser.subscription(endpoint))
            .send(&self.api)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap_or_default().to_owned()
    }

    async fn subscriptions(&self, user: &str) -> Vec<String> {
        let r = Call::get("/v1/push-subscriptions")
            .user(user)
            .send(&self.api)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["endpoint"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn contacts(&self, user: &str, contacts: Value) {
        let r = Call::put(&format!("/v1/users/{user}/contacts"))
            .service("svc")
            .json(&contacts)
            .send(&self.api)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    async fn preferences(&self, user: &str, prefs: Value) {
        let r = Call::put("/v1/preferences")
            .user(user)
            .json(&prefs)
            .send(&self.api)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// A committed notification's envelope (as `delivery` routes it).
    async fn notify(
        &self,
        user: &str,
        kind: &str,
        body: &str,
        channels: Vec<Channel>,
        priority: Priority,
    ) -> Envelope {
        let new = NewNotification {
            title: format!("Hello {user}"),
            body: body.into(),
            data: json!({"run": 7}),
            channels,
            priority,
            action_url: Some("https://app.herald.test/runs/7".into()),
            kind: kind.into(),
            ..herald_tests::new_notification(user)
        };
        self.env.seed_notification(new).await.envelope
    }

    /// A `comment` for `user` on PUSH only, at normal priority.
    async fn notify_push(&self, user: &str, body: &str) -> Envelope {
        self.notify(user, "comment", body, vec![Channel::Push], Priority::Normal)
            .await
    }

    async fn run(&self, envelopes: &[&Envelope]) -> push::Stats {
        let (response, stats) =
            push::process_batch(&self.push, &batch(envelopes), Utc::now()).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "no infrastructure failure expected: {response:?}"
        );
        stats
    }

    /// Every outcome on `notification-delivery`, as (notificationId, channel, status, reason).
    async fn outcomes(&self, expected: usize) -> Vec<(String, String, String, String)> {
        let records = self
            .env
            .consume(Topic::NotificationDelivery, expected)
            .await;
        let out: Vec<_> = records
            .iter()
            .map(|r| {
                let o = r.json();
                let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
                (s("notificationId"), s("channel"), s("status"), s("reason"))
            })
            .collect();
        sorted(out)
    }
}

/// Outcome rows in the order [`Setup::outcomes`] returns them.
fn sorted(
    mut rows: Vec<(String, String, String, String)>,
) -> Vec<(String, String, String, String)> {
    rows.sort_by_key(|o| (o.0.clone(), o.1.clone()));
    rows
}

fn batch(envelopes: &[&Envelope]) -> KafkaEvent {
    let records: Vec<Value> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"topic": "push-notifications", "partition": 1, "offset": 100 + i, "timestamp": 0,
                   "timestampType": "CREATE_TIME", "key": STANDARD.encode(&e.user_id),
                   "value": STANDARD.encode(e.encode()), "headers": []})
        })
        .collect();
    serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "records": {"push-notifications-1": records}
    }))
    .unwrap_or_else(|e| panic!("event: {e}"))
}

fn id(e: &Envelope) -> String {
    match &e.event {
        shared::protocol::Event::NotificationCreated { notification, .. } => {
            notification.id.clone()
        }
        _ => String::new(),
    }
}

fn user() -> String {
    format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

fn row(
    e: &Envelope,
    channel: &str,
    status: &str,
    reason: &str,
) -> (String, String, String, String) {
    (id(e), channel.into(), status.into(), reason.into())
}

// ---------------------------------------------------------------------------------------------
// Web Push

#[tokio::test]
async fn web_push_arrives_encrypted_for_the_browser_and_signed_for_the_endpoints_origin() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let browser = Browser::new();
    let alice = user();
    s.subscribe(&alice, &browser, &format!("{}/push/a", service.url))
        .await;
    let n = s
        .notify(
            &alice,
            "build.passed",
            "All green",
            vec![Channel::InApp, Channel::Push],
            Priority::High,
        )
        .await;

    let stats = s.run(&[&n]).await;
    assert_eq!((stats.sent, stats.failed), (1, 0), "{stats:?}");
    let got = service.received("/push/a");
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-encoding"), Some("aes128gcm"));
    assert_eq!(req.header("urgency"), Some("high"));
    assert!(req
        .headers
        .get("ttl")
        .is_some_and(|t| t.parse::<u64>().is_ok_and(|t| t > 0)));
    let payload = browser.decrypt(&req.body);
    assert_eq!(
        payload,
        json!({"id": id(&n), "title": format!("Hello {alice}"), "body": "All green",
               "actionUrl": "https://app.herald.test/runs/7", "data": {"run": 7}})
    );
    verify_vapid(
        req.header("authorization").unwrap_or_default(),
        &s.vapid_public,
        &service.url,
        SUBJECT,
    );

    // A redelivered batch sends nothing and records nothing twice.
    let again = s.run(&[&n]).await;
    assert_eq!((again.sent, again.redelivered), (0, 1), "{again:?}");
    assert_eq!(service.received("/push/a").len(), 1);
    assert_eq!(s.outcomes(1).await, [row(&n, "PUSH", "sent", "")]);
}

/// A tenant user's subscription gets the tenant's notification; the default tenant's user with
/// the same id, subscribed at another endpoint, gets nothing of it.
#[tokio::test]
async fn a_tenant_users_subscription_gets_the_tenants_notification_and_no_other_tenants() {
    use shared::store::{CreateOutcome, TenantScoped};
    use shared::tenant::Tenant;
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let acme = Tenant::parse("acme").unwrap_or_default();
    let service = Provider::start().await;
    let (acme_browser, default_browser) = (Browser::new(), Browser::new());
    let alice = user();
    let r = Call::post("/v1/push-subscriptions")
        .user(&alice)
        .tenant(acme.as_str())
        .json(&acme_browser.subscription(&format!("{}/push/acme", service.url)))
        .send(&s.api)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.subscribe(
        &alice,
        &default_browser,
        &format!("{}/push/default", service.url),
    )
    .await;
    let new = NewNotification {
        channels: vec![Channel::Push],
        ..herald_tests::new_notification(&alice)
    };
    let store = s.env.store(TestEnv::unlimited()).for_tenant(&acme);
    let n = match store.create("svc", new, None).await {
        Ok(CreateOutcome::Created { change, .. }) => change.envelope,
        other => panic!("create: {other:?}"),
    };
    assert_eq!(n.tenant, acme);

    let stats = s.run(&[&n]).await;
    assert_eq!((stats.sent, stats.failed), (1, 0), "{stats:?}");
    let got = service.received("/push/acme");
    assert_eq!(got.len(), 1);
    assert_eq!(acme_browser.decrypt(&got[0].body)["id"], json!(id(&n)));
    assert!(
        service.received("/push/default").is_empty(),
        "the default tenant's alice gets nothing"
    );
}

#[tokio::test]
async fn a_gone_or_missing_endpoint_removes_that_subscription_and_no_other() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let alice = user();
    let (a, b, c) = (Browser::new(), Browser::new(), Browser::new());
    for (browser, path) in [(&a, "gone"), (&b, "missing"), (&c, "fine")] {
        s.subscribe(&alice, browser, &format!("{}/push/{path}", service.url))
            .await;
    }
    service.always("/push/gone", answer(410));
    service.always("/push/missing", answer(404));
    // Another user whose only endpoint is gone.
    let bob = user();
    let d = Browser::new();
    s.subscribe(&bob, &d, &format!("{}/push/gone", service.url))
        .await;

    let na = s.notify_push(&alice, "hi").await;
    let nb = s.notify_push(&bob, "hi").await;
    let stats = s.run(&[&na, &nb]).await;
    assert_eq!(stats.gone, 3, "{stats:?}");
    assert_eq!(
        s.subscriptions(&alice).await,
        [format!("{}/push/fine", service.url)]
    );
    assert!(s.subscriptions(&bob).await.is_empty());
    assert_eq!(
        c.decrypt(&service.received("/push/fine")[0].body)["id"],
        id(&na)
    );
    let expected = sorted(vec![
        row(&na, "PUSH", "sent", ""),
        row(&nb, "PUSH", "failed", "gone"),
    ]);
    assert_eq!(s.outcomes(2).await, expected);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_inline_or_from_the_schedule() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let alice = user();
    let browser = Browser::new();
    s.subscribe(&alice, &browser, &format!("{}/push/short", service.url))
        .await;
    let bob = user();
    s.subscribe(&bob, &browser, &format!("{}/push/long", service.url))
        .await;
    let retry_after = |secs: &str| answer(429).header("Retry-After", secs);
    service.queue("/push/short", vec![retry_after("1")]);
    service.queue("/push/long", vec![retry_after("120")]);

    let na = s.notify_push(&alice, "short").await;
    let nb = s.notify_push(&bob, "long").await;
    let started = Utc::now();
    let stats = s.run(&[&na, &nb]).await;
    assert_eq!((stats.sent, stats.deferred), (1, 1), "{stats:?}");

    // 1 s: waited inline, then accepted.
    let short = service.received("/push/short");
    assert_eq!(short.len(), 2);
    assert!(
        short[1].at.duration_since(short[0].at) >= Duration::from_millis(1_000),
        "the retry came {:?} after the 429",
        short[1].at.duration_since(short[0].at)
    );
    // 120 s: on the retry schedule, due about then; nothing is due before.
    assert_eq!(service.received("/push/long").len(), 1);
    let scheduled = s
        .push
        .ledger
        .scheduled()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let due = DateTime::<Utc>::from_timestamp_millis(scheduled[0].1).unwrap_or_default();
    assert!(
        (due - started).num_seconds() >= 119 && (due - started).num_seconds() <= 125,
        "{due}"
    );
    assert_eq!(push::drain_due(&s.push, Utc::now()).await.records, 0);
    let drained = push::drain_due(&s.push, due + chrono::Duration::seconds(1)).await;
    assert_eq!(drained.sent, 1, "{drained:?}");
    let long = service.received("/push/long");
    assert_eq!(long.len(), 2);
    assert_eq!(browser.decrypt(&long[1].body)["body"], "long");
    // Drained once: a second run finds nothing.
    let again = push::drain_due(&s.push, due + chrono::Duration::seconds(2)).await;
    assert_eq!(again.records, 0);

    let mut expected = vec![
        row(&na, "PUSH", "sent", ""),
        row(&nb, "PUSH", "deferred", "rate-limited"),
        row(&nb, "PUSH", "sent", ""),
    ];
    let mut got = s.outcomes(3).await;
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_500_is_retried_a_bounded_number_of_times_then_failed() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let alice = user();
    s.subscribe(
        &alice,
        &Browser::new(),
        &format!("{}/push/down", service.url),
    )
    .await;
    service.always("/push/down", answer(500));
    let n = s.notify_push(&alice, "x").await;
    let stats = s.run(&[&n]).await;
    assert_eq!(stats.failed, 1, "{stats:?}");
    // PUSH_RETRY_ATTEMPTS (3) in all, and the subscription stays.
    assert_eq!(service.received("/push/down").len(), 3);
    assert_eq!(s.subscriptions(&alice).await.len(), 1);
    assert_eq!(
        s.outcomes(1).await,
        [row(&n, "PUSH", "failed", "provider-5xx")]
    );
}

#[tokio::test]
async fn a_large_body_is_trimmed_to_title_and_id_and_a_413_is_resent_trimmed() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let alice = user();
    let browser = Browser::new();
    s.subscribe(&alice, &browser, &format!("{}/push/big", service.url))
        .await;
    let big = s.notify_push(&alice, &"x".repeat(5 * 1024)).await;
    let stats = s.run(&[&big]).await;
    assert_eq!(stats.sent, 1);
    let got = service.received("/push/big");
    assert_eq!(got.len(), 1);
    assert_eq!(
        browser.decrypt(&got[0].body),
        json!({"id": id(&big), "title": format!("Hello {alice}")})
    );

    // Under the limit, but the push service refuses it as too large: sent again, trimmed.
    let bob = user();
    s.subscribe(&bob, &browser, &format!("{}/push/small-limit", service.url))
        .await;
    service.queue("/push/small-limit", vec![answer(413)]);
    let n = s.notify_push(&bob, &"y".repeat(3_000)).await;
    assert_eq!(s.run(&[&n]).await.sent, 1);
    let got = service.received("/push/small-limit");
    assert_eq!(got.len(), 2);
    assert_eq!(
        browser.decrypt(&got[0].body)["body"].as_str().map(str::len),
        Some(3_000)
    );
    assert_eq!(
        browser.decrypt(&got[1].body),
        json!({"id": id(&n), "title": format!("Hello {bob}")})
    );
}

/// Issue 12 §1: a push endpoint that answers a redirect cannot steer the function to another
/// address (a VPC service, the Lambda runtime API): the redirect is not followed, its target gets
/// nothing, and the send is `failed`/`redirect-refused` at once (no retries, no oracle).
#[tokio::test]
async fn a_redirecting_endpoint_is_a_failed_send_and_its_target_gets_nothing() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let inside = Provider::start().await;
    let mut sent = Vec::new();
    for status in [301, 302, 303, 307, 308] {
        let alice = user();
        let path = format!("/push/moved-{status}");
        s.subscribe(&alice, &Browser::new(), &format!("{}{path}", service.url))
            .await;
        service.always(
            &path,
            answer(status).header("Location", &format!("{}/internal", inside.url)),
        );
        sent.push((path, s.notify_push(&alice, "x").await));
    }
    let stats = s
        .run(&sent.iter().map(|(_, n)| n).collect::<Vec<_>>())
        .await;
    assert_eq!((stats.sent, stats.failed), (0, 5), "{stats:?}");
    for (path, _) in &sent {
        assert_eq!(service.received(path).len(), 1, "{path} was retried");
    }
    assert!(
        inside.received("/internal").is_empty(),
        "the redirect was followed"
    );
    let expected = sorted(
        sent.iter()
            .map(|(_, n)| row(n, "PUSH", "failed", "redirect-refused"))
            .collect(),
    );
    assert_eq!(s.outcomes(5).await, expected);
}

/// Issue 12 §1: the endpoint is checked again at send time under the deployment's current rules,
/// with the same policy that refused it at registration.
#[tokio::test]
async fn an_endpoint_the_deployment_no_longer_allows_is_refused_without_a_request() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let alice = user();
    s.subscribe(&alice, &Browser::new(), &format!("{}/push/a", service.url))
        .await;
    let n = s.notify_push(&alice, "x").await;
    // The same deployment, redeployed without PUSH_ALLOW_LOOPBACK.
    let (private, public) = vapid_keys();
    let mut strict = settings(&[], Some((&private, &public)));
    strict.allow_loopback = false;
    let push = push::Deps::new(s.env.conn.clone(), s.env.keys.clone(), s.env.bus(), strict)
        .unwrap_or_else(|e| panic!("push deps: {e}"));
    let (response, stats) = push::process_batch(&push, &batch(&[&n]), Utc::now()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert!(service.received("/push/a").is_empty());
    assert_eq!(
        s.outcomes(1).await,
        [row(&n, "PUSH", "failed", "endpoint-refused")]
    );
}

// ---------------------------------------------------------------------------------------------
// Email, SMS, gates

#[tokio::test]
async fn email_reaches_a_real_smtp_server_with_both_parts_and_one_click_unsubscribe() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let smtp = [
        ("SMTP_URL", sink.url.as_str()),
        ("EMAIL_FROM", "Herald <notify@herald.test>"),
    ];
    let Some(s) = Setup::new(&smtp).await else {
        return;
    };
    let alice = user();
    s.contacts(&alice, json!({"email": "alice@example.com"}))
        .await;
    let n = s
        .notify(
            &alice,
            "invoice.paid",
            "Thanks & see you",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    assert_eq!(s.run(&[&n]).await.sent, 1);

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["rcptTos"], json!(["alice@example.com"]));
    assert_eq!(m["mailFrom"], "notify@herald.test");
    assert_eq!(m["subject"], format!("Hello {alice}"));
    assert_eq!(m["contentType"], "multipart/alternative");
    let parts: BTreeMap<String, String> = m["parts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["contentType"].as_str().unwrap_or_default().to_owned(),
                        p["content"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        parts.keys().collect::<Vec<_>>(),
        ["text/html", "text/plain"]
    );
    assert!(
        parts["text/plain"].starts_with("Payment received")
            && parts["text/plain"].contains("Thanks & see you")
    );
    assert!(parts["text/html"].contains("Thanks &amp; see you"));
    assert_eq!(
        header(m, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    let link = header(m, "List-Unsubscribe")
        .and_then(|h| h.strip_prefix('<')?.strip_suffix('>'))
        .unwrap_or_else(|| panic!("no List-Unsubscribe: {m}"));
    let token = link
        .strip_prefix("https://api.herald.test/v1/unsubscribe?token=")
        .unwrap_or_else(|| panic!("unexpected link {link}"));

    // A forged link changes nothing.
    let forged = Call::post("/v1/unsubscribe")
        .query("token", &format!("{token}x"))
        .bytes(
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click",
        )
        .send(&s.api)
        .await;
    assert_eq!(
        (forged.status, forged.content_type()),
        (400, "application/problem+json")
    );
    // GET only shows the form.
    let page = Call::get("/v1/unsubscribe")
        .query("token", token)
        .send(&s.api)
        .await;
    assert_eq!(page.status, 200);
    let prefs = Call::get("/v1/preferences").user(&alice).send(&s.api).await;
    assert_eq!(prefs.body["types"], json!({}));

    // The mail client's one-click POST, with no credentials but the link's token.
    let r = Call::post("/v1/unsubscribe")
        .query("token", token)
        .bytes(
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click",
        )
        .send(&s.api)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let prefs = Call::get("/v1/preferences").user(&alice).send(&s.api).await;
    assert_eq!(
        prefs.body["types"],
        json!({"invoice.paid": {"EMAIL": false}})
    );

    // The next email of that type is suppressed; other types still go.
    let next = s
        .notify(
            &alice,
            "invoice.paid",
            "again",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let other = s
        .notify(
            &alice,
            "comment",
            "other",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let stats = s.run(&[&next, &other]).await;
    assert_eq!((stats.sent, stats.suppressed), (1, 1), "{stats:?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["subject"], format!("Hello {alice}"));
    assert!(header(&messages[1], "List-Unsubscribe").is_some());
    let expected = sorted(vec![
        row(&n, "EMAIL", "sent", ""),
        row(&next, "EMAIL", "suppressed", "opted-out"),
        row(&other, "EMAIL", "sent", ""),
    ]);
    assert_eq!(s.outcomes(3).await, expected);
}

/// Issue 12 §6: an SMTP reply that echoes the recipient's address is logged without it.
/// The reply is `550 5.1.1` (no such mailbox): `gone` in the adapter contract (issue 15), so the
/// outcome is `failed`/`gone`.
#[tokio::test]
async fn an_smtp_refusal_echoing_the_address_is_logged_without_it() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let smtp = [
        ("SMTP_URL", sink.url.as_str()),
        ("EMAIL_FROM", "Herald <notify@herald.test>"),
    ];
    let Some(s) = Setup::new(&smtp).await else {
        return;
    };
    let alice = user();
    // The sink refuses `unknown…` recipients with `550 5.1.1 <address>: …`.
    let address = format!("unknown.{alice}@example.com");
    s.contacts(&alice, json!({"email": address})).await;
    let n = s
        .notify(
            &alice,
            "invoice.paid",
            "x",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let logs = LogCapture::default();
    let stats = logs.during(s.run(&[&n])).await;
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert!(sink.messages().is_empty());
    let text = logs.text();
    assert!(
        text.contains("send failed") && text.contains("550") && text.contains("[email]"),
        "the failure is logged with the reply's code: {text}"
    );
    assert!(
        !text.contains("@example.com"),
        "the address is in the log: {text}"
    );
    assert_eq!(s.outcomes(1).await, [row(&n, "EMAIL", "failed", "gone")]);
}

/// Issue 15, failover: `EMAIL_PROVIDERS=ses,smtp` moves to SMTP only when SES stays
/// unavailable (5xx after the inline retries) or throttling; never after SES refused or sent; and
/// a redelivered record runs no part of the chain again (the send ledger).
#[tokio::test]
async fn email_fails_over_from_ses_to_smtp_only_when_ses_is_unavailable_and_at_most_once() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let ses_api = Provider::start().await;
    let email = [
        ("EMAIL_PROVIDERS", "ses,smtp"),
        ("SES_ENDPOINT", ses_api.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDHERALDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "eu-west-1"),
        ("SMTP_URL", sink.url.as_str()),
        ("EMAIL_FROM", "Herald <notify@herald.test>"),
        ("PUSH_RETRY_ATTEMPTS", "2"),
    ];
    let Some(s) = Setup::without_vapid(&email).await else {
        return;
    };
    let alice = user();
    s.contacts(&alice, json!({"email": format!("{alice}@example.com")}))
        .await;
    let ses_calls = || ses_api.received(ses::SEND_EMAIL).len();

    // SES unavailable: its two attempts, then SMTP takes it.
    ses_api.always(
        ses::SEND_EMAIL,
        ses::error(503, "ServiceUnavailable", "Service unavailable."),
    );
    let failed_over = s
        .notify(
            &alice,
            "invoice.paid",
            "x",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let stats = s.run(&[&failed_over]).await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!((ses_calls(), sink.messages().len()), (2, 1));
    // Redelivered: the ledger has it; neither provider is asked again.
    let stats = s.run(&[&failed_over]).await;
    assert_eq!((stats.sent, stats.redelivered), (0, 1), "{stats:?}");
    assert_eq!((ses_calls(), sink.messages().len()), (2, 1));

    // SES throttling beyond the inline wait (an exhausted 429): SMTP takes it now.
    ses_api.always(
        ses::SEND_EMAIL,
        ses::error(429, "TooManyRequestsException", "Too many requests.")
            .header("Retry-After", "600"),
    );
    let throttled = s
        .notify(
            &alice,
            "invoice.paid",
            "x",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let stats = s.run(&[&throttled]).await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!((ses_calls(), sink.messages().len()), (3, 2));

    // SES refuses the message: final, SMTP is not tried.
    ses_api.always(
        ses::SEND_EMAIL,
        ses::error(400, "MessageRejected", "Email address is not verified."),
    );
    let rejected = s
        .notify(
            &alice,
            "invoice.paid",
            "x",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let stats = s.run(&[&rejected]).await;
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!((ses_calls(), sink.messages().len()), (4, 2));

    // SES accepts: SMTP is not tried.
    ses_api.always(ses::SEND_EMAIL, ses::sent());
    let sent = s
        .notify(
            &alice,
            "invoice.paid",
            "x",
            vec![Channel::Email],
            Priority::Normal,
        )
        .await;
    let stats = s.run(&[&sent]).await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!((ses_calls(), sink.messages().len()), (5, 2));

    assert_eq!(
        s.outcomes(4).await,
        sorted(vec![
            row(&failed_over, "EMAIL", "sent", ""),
            row(&throttled, "EMAIL", "sent", ""),
            row(&rejected, "EMAIL", "failed", "provider-4xx"),
            row(&sent, "EMAIL", "sent", ""),
        ])
    );
}

/// Issue 15, circuit breaker: after `PROVIDER_BREAKER_FAILURES` consecutive unavailable sends
/// SES's breaker opens in Redis, and every instance's chain then skips SES without a request
/// (SMTP takes the mail). After the cool-down (moved into the past here, not slept) one trial
/// call decides: a failure opens it again, a success closes it.
#[tokio::test]
async fn an_unavailable_provider_is_skipped_by_every_instance_until_one_trial_call_succeeds() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let ses_api = Provider::start().await;
    let email = [
        ("EMAIL_PROVIDERS", "ses,smtp"),
        ("SES_ENDPOINT", ses_api.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDHERALDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "eu-west-1"),
        ("SMTP_URL", sink.url.as_str()),
        ("EMAIL_FROM", "Herald <notify@herald.test>"),
        ("PUSH_RETRY_ATTEMPTS", "1"),
        ("PROVIDER_BREAKER_FAILURES", "2"),
        // Far longer than the test: only the test moves the breaker past its cool-down.
        ("PROVIDER_BREAKER_COOLDOWN_MS", "3600000"),
    ];
    let Some(s) = Setup::without_vapid(&email).await else {
        return;
    };
    // A second function instance: its own deps and adapters, the same Redis.
    let other = push::Deps::new(
        s.env.conn.clone(),
        s.env.keys.clone(),
        s.env.bus(),
        settings(&email, None),
    )
    .unwrap_or_else(|e| panic!("push deps: {e}"));
    let alice = user();
    s.contacts(&alice, json!({"email": format!("{alice}@example.com")}))
        .await;
    let ses_calls = || ses_api.received(ses::SEND_EMAIL).len();
    let notify = || {
        s.notify(
            &alice,
            "invoice.paid",
            "x",
            vec![Channel::Email],
            Priority::Normal,
        )
    };
    let breaker = s.env.keys.provider_breaker("ses");
    let cool_down_passed = || async {
        let mut conn = s.env.conn.clone();
        let _: () = redis::cmd("HSET")
            .arg(&breaker)
            .arg("openedAt")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let mut sent = Vec::new();

    ses_api.always(
        ses::SEND_EMAIL,
        ses::error(503, "ServiceUnavailable", "Service unavailable."),
    );
    // Two unavailable sends open the breaker; SMTP takes both.
    for _ in 0..2 {
        let n = notify().await;
        assert_eq!(s.run(&[&n]).await.sent, 1);
        sent.push(n);
    }
    assert_eq!((ses_calls(), sink.messages().len()), (2, 2));
    // Open: this instance and the other skip SES without a request.
    let n = notify().await;
    assert_eq!(s.run(&[&n]).await.sent, 1);
    sent.push(n);
    let n = notify().await;
    let (response, stats) = push::process_batch(&other, &batch(&[&n]), Utc::now()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(stats.sent, 1, "{stats:?}");
    sent.push(n);
    assert_eq!((ses_calls(), sink.messages().len()), (2, 4));

    // Half-open, and the trial fails: one call, open again.
    cool_down_passed().await;
    for _ in 0..2 {
        let n = notify().await;
        assert_eq!(s.run(&[&n]).await.sent, 1);
        sent.push(n);
    }
    assert_eq!((ses_calls(), sink.messages().len()), (3, 6));

    // Half-open, and the trial succeeds (on the other instance): closed, SES sends again.
    ses_api.always(ses::SEND_EMAIL, ses::sent());
    cool_down_passed().await;
    let n = notify().await;
    let (_, stats) = push::process_batch(&other, &batch(&[&n]), Utc::now()).await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    sent.push(n);
    let n = notify().await;
    assert_eq!(s.run(&[&n]).await.sent, 1);
    sent.push(n);
    assert_eq!((ses_calls(), sink.messages().len()), (5, 6));

    let expected: Vec<_> = sent.iter().map(|n| row(n, "EMAIL", "sent", "")).collect();
    assert_eq!(s.outcomes(sent.len()).await, sorted(expected));
}

#[tokio::test]
async fn sms_is_a_form_post_with_basic_auth_in_twilios_shape() {
    let api = Provider::start().await;
    let sms = [
        ("SMS_API_URL", api.url.as_str()),
        ("SMS_ACCOUNT_SID", "AC0123"),
        ("SMS_AUTH_TOKEN", "s3cret"),
        ("SMS_FROM", "+15005550006"),
    ];
    let Some(s) = Setup::without_vapid(&sms).await else {
        return;
    };
    let alice = user();
    s.contacts(&alice, json!({"phone": "+447700900123"})).await;
    let n = s
        .notify(
            &alice,
            "comment",
            &"word ".repeat(60),
            vec![Channel::Sms, Channel::Push],
            Priority::Normal,
        )
        .await;
    let stats = s.run(&[&n]).await;
    assert_eq!((stats.sent, stats.suppressed), (1, 1), "{stats:?}");
    let path = "/2010-04-01/Accounts/AC0123/Messages.json";
    let got = api.received(path);
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(
        req.header("authorization"),
        Some(format!("Basic {}", STANDARD.encode("AC0123:s3cret")).as_str())
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = req.form();
    assert_eq!(form["To"], "+447700900123");
    assert_eq!(form["From"], "+15005550006");
    assert!(form["Body"].starts_with(&format!("Hello {alice}: word")));
    let length = form["Body"].chars().count();
    assert!(
        (150..=160).contains(&length) && form["Body"].ends_with("..."),
        "one SMS segment, trimmed: {length} {:?}",
        form["Body"]
    );
    // No VAPID here: PUSH is recorded as not configured, never silently dropped.
    assert_eq!(
        s.outcomes(2).await,
        [
            row(&n, "PUSH", "suppressed", "not-configured"),
            row(&n, "SMS", "sent", "")
        ]
    );
}

/// The breaker's own steps against Redis, with two breaker objects as two instances: a success
/// resets the count of consecutive failures; only one caller across instances makes the
/// half-open trial; a failure while open from a call admitted before it opened changes nothing.
#[tokio::test]
async fn the_breakers_half_open_trial_is_made_by_one_instance_only() {
    use shared::store::{Admission, ProviderBreaker};
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let hour = Duration::from_secs(3600);
    let one = ProviderBreaker::new(env.conn.clone(), env.keys.clone(), 3, hour);
    let two = ProviderBreaker::new(env.conn.clone(), env.keys.clone(), 3, hour);
    let record = |b: &ProviderBreaker, failed: bool| {
        let b = b.clone();
        async move {
            b.record("smtp", failed)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let admit = |b: &ProviderBreaker| {
        let b = b.clone();
        async move { b.admit("smtp").await.unwrap_or_else(|e| panic!("{e}")) }
    };
    // Two failures, a success, two failures: never three in a row, still closed.
    for failed in [true, true, false, true, true] {
        assert!(!record(if failed { &one } else { &two }, failed).await);
    }
    assert_eq!(admit(&two).await, Admission::Call);
    // The third in a row, on the other instance, opens it: both skip.
    assert!(record(&two, true).await);
    assert!(matches!(admit(&one).await, Admission::Skip { retry_in } if retry_in > hour / 2));
    assert!(matches!(admit(&two).await, Admission::Skip { .. }));
    // A late failure of a call admitted before it opened: no second opening.
    assert!(!record(&one, true).await);
    // Past the cool-down: the first to ask makes the trial, the other keeps skipping.
    let mut conn = env.conn.clone();
    let _: () = redis::cmd("HSET")
        .arg(env.keys.provider_breaker("smtp"))
        .arg("openedAt")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(admit(&one).await, Admission::Trial);
    assert!(matches!(admit(&two).await, Admission::Skip { .. }));
    // The trial succeeds: closed for everyone.
    assert!(!record(&one, false).await);
    assert_eq!(admit(&two).await, Admission::Call);
}

/// Every provider's breaker open: nothing is called, and the send waits on the retry schedule
/// (`deferred`) for the breaker to half-open, instead of failing.
#[tokio::test]
async fn with_every_breaker_open_the_send_is_deferred_without_a_request() {
    let api = Provider::start().await;
    let sms = [
        ("SMS_API_URL", api.url.as_str()),
        ("SMS_ACCOUNT_SID", "AC0123"),
        ("SMS_AUTH_TOKEN", "s3cret"),
        ("SMS_FROM", "+15005550006"),
        ("PUSH_RETRY_ATTEMPTS", "1"),
        ("PROVIDER_BREAKER_FAILURES", "1"),
        ("PROVIDER_BREAKER_COOLDOWN_MS", "3600000"),
    ];
    let Some(s) = Setup::without_vapid(&sms).await else {
        return;
    };
    let alice = user();
    s.contacts(&alice, json!({"phone": "+447700900123"})).await;
    let path = "/2010-04-01/Accounts/AC0123/Messages.json";
    api.always(path, answer(503));
    let notify = || s.notify(&alice, "comment", "x", vec![Channel::Sms], Priority::Normal);
    let unavailable = notify().await;
    assert_eq!(s.run(&[&unavailable]).await.failed, 1);
    let skipped = notify().await;
    let stats = s.run(&[&skipped]).await;
    assert_eq!(stats.deferred, 1, "{stats:?}");
    assert_eq!(api.received(path).len(), 1, "the open breaker sent nothing");
    assert_eq!(
        s.outcomes(2).await,
        sorted(vec![
            row(&unavailable, "SMS", "failed", "provider-5xx"),
            row(&skipped, "SMS", "deferred", "rate-limited"),
        ])
    );
}

/// Issue 15, failover: `SMS_PROVIDERS=twilio,twilio-fallback` moves to the second Twilio-shaped
/// account only when the first stays unavailable, never after it refused; and the first's
/// breaker then makes the chain skip it.
#[tokio::test]
async fn sms_fails_over_to_the_second_provider_only_when_the_first_is_unavailable() {
    let primary = Provider::start().await;
    let fallback = Provider::start().await;
    let sms = [
        ("SMS_PROVIDERS", "twilio, twilio-fallback"),
        ("SMS_API_URL", primary.url.as_str()),
        ("SMS_ACCOUNT_SID", "AC0123"),
        ("SMS_AUTH_TOKEN", "s3cret"),
        ("SMS_FROM", "+15005550006"),
        ("SMS_FALLBACK_API_URL", fallback.url.as_str()),
        ("SMS_FALLBACK_ACCOUNT_SID", "AC4567"),
        ("SMS_FALLBACK_AUTH_TOKEN", "other"),
        ("SMS_FALLBACK_FROM", "+15005550007"),
        ("PUSH_RETRY_ATTEMPTS", "1"),
        ("PROVIDER_BREAKER_FAILURES", "2"),
        ("PROVIDER_BREAKER_COOLDOWN_MS", "3600000"),
    ];
    let Some(s) = Setup::without_vapid(&sms).await else {
        return;
    };
    let alice = user();
    s.contacts(&alice, json!({"phone": "+447700900123"})).await;
    let first = "/2010-04-01/Accounts/AC0123/Messages.json";
    let second = "/2010-04-01/Accounts/AC4567/Messages.json";
    let calls = || {
        (
            primary.received(first).len(),
            fallback.received(second).len(),
        )
    };
    let notify = || s.notify(&alice, "comment", "x", vec![Channel::Sms], Priority::Normal);

    // The first refuses (bad credentials): final, the fallback is not tried.
    primary.always(
        first,
        answer(401).json(json!({"code": 20003, "message": "Authenticate"})),
    );
    let refused = notify().await;
    assert_eq!(s.run(&[&refused]).await.failed, 1);
    assert_eq!(calls(), (1, 0));

    // The first unavailable: the fallback takes it, from its own number and account.
    primary.always(first, answer(503));
    let mut sent = Vec::new();
    for _ in 0..2 {
        let n = notify().await;
        assert_eq!(s.run(&[&n]).await.sent, 1);
        sent.push(n);
    }
    assert_eq!(calls(), (3, 2));
    let got = fallback.received(second);
    assert_eq!(got[0].form()["From"], "+15005550007");
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Basic {}", STANDARD.encode("AC4567:other")).as_str())
    );
    // Two failures in a row opened the first's breaker: skipped without a request.
    let n = notify().await;
    assert_eq!(s.run(&[&n]).await.sent, 1);
    sent.push(n);
    assert_eq!(calls(), (3, 3));

    // Each outcome names the provider that answered it.
    let mut expected: Vec<_> = sent
        .iter()
        .map(|n| (id(n), "sent".to_owned(), "twilio-fallback".to_owned()))
        .collect();
    expected.push((id(&refused), "failed".into(), "twilio".into()));
    expected.sort();
    let records = s
        .env
        .consume(Topic::NotificationDelivery, expected.len())
        .await;
    let mut got: Vec<_> = records
        .iter()
        .map(|r| {
            let o = r.json();
            let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
            (s("notificationId"), s("status"), s("provider"))
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn preferences_quiet_hours_and_urgent_gate_every_channel() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let smtp = [
        ("SMTP_URL", sink.url.as_str()),
        ("EMAIL_FROM", "notify@herald.test"),
    ];
    let Some(s) = Setup::new(&smtp).await else {
        return;
    };
    let service = Provider::start().await;
    let alice = user();
    let browser = Browser::new();
    s.subscribe(&alice, &browser, &format!("{}/push/alice", service.url))
        .await;
    s.contacts(&alice, json!({"email": "alice@example.com"}))
        .await;
    // EMAIL off for comments; quiet hours from an hour ago to an hour from now (UTC).
    let now = Utc::now();
    let hhmm = |t: DateTime<Utc>| t.format("%H:%M").to_string();
    let end = now + chrono::Duration::hours(1);
    s.preferences(
        &alice,
        json!({"types": {"comment": {"EMAIL": false}},
               "quietHours": {"start": hhmm(now - chrono::Duration::hours(1)), "end": hhmm(end), "timezone": "UTC"}}),
    )
    .await;

    let normal = s
        .notify(
            &alice,
            "comment",
            "normal",
            vec![Channel::Push, Channel::Email],
            Priority::Normal,
        )
        .await;
    let urgent = s
        .notify(
            &alice,
            "comment",
            "urgent",
            vec![Channel::Push, Channel::Email],
            Priority::Urgent,
        )
        .await;
    let stats = s.run(&[&normal, &urgent]).await;
    assert_eq!(
        (stats.sent, stats.suppressed, stats.deferred),
        (2, 1, 1),
        "{stats:?}"
    );
    // Only the urgent one went out, on both channels.
    let pushed = service.received("/push/alice");
    assert_eq!(pushed.len(), 1);
    assert_eq!(browser.decrypt(&pushed[0].body)["body"], "urgent");
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0]["raw"]
        .as_str()
        .unwrap_or_default()
        .contains("urgent"));

    // The quiet-hours deferral is due at the window's end (to the minute) and goes out then.
    let scheduled = s
        .push
        .ledger
        .scheduled()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let due = DateTime::<Utc>::from_timestamp_millis(scheduled[0].1).unwrap_or_default();
    assert_eq!(hhmm(due), hhmm(end));
    assert_eq!(
        push::drain_due(&s.push, now).await.records,
        0,
        "not before the window ends"
    );
    let drained = push::drain_due(&s.push, due + chrono::Duration::seconds(1)).await;
    assert_eq!(drained.sent, 1, "{drained:?}");
    let pushed = service.received("/push/alice");
    assert_eq!(pushed.len(), 2);
    assert_eq!(browser.decrypt(&pushed[1].body)["body"], "normal");
    assert_eq!(sink.messages().len(), 1, "EMAIL stays opted out");

    let mut expected = vec![
        row(&normal, "EMAIL", "suppressed", "opted-out"),
        row(&normal, "PUSH", "deferred", "quiet-hours"),
        row(&normal, "PUSH", "sent", ""),
        row(&urgent, "EMAIL", "sent", ""),
        row(&urgent, "PUSH", "sent", ""),
    ];
    expected.sort();
    let mut got = s.outcomes(5).await;
    got.sort();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn channels_without_settings_are_suppressed_as_not_configured() {
    let Some(s) = Setup::without_vapid(&[]).await else {
        return;
    };
    let alice = user();
    s.contacts(
        &alice,
        json!({"email": "alice@example.com", "phone": "+447700900123"}),
    )
    .await;
    let n = s
        .notify(
            &alice,
            "comment",
            "x",
            vec![Channel::InApp, Channel::Push, Channel::Email, Channel::Sms],
            Priority::Urgent,
        )
        .await;
    let stats = s.run(&[&n]).await;
    assert_eq!(stats.suppressed, 3, "{stats:?}");
    assert_eq!(
        s.outcomes(3).await,
        [
            row(&n, "EMAIL", "suppressed", "not-configured"),
            row(&n, "PUSH", "suppressed", "not-configured"),
            row(&n, "SMS", "suppressed", "not-configured"),
        ]
    );
    // And the api says Web Push is not configured here.
    let key = Call::get("/v1/push/vapid-public-key")
        .user(&alice)
        .send(&s.api)
        .await;
    assert_eq!(key.status, 404);
}

// ---------------------------------------------------------------------------------------------
// Subscriptions and contacts through the api

#[tokio::test]
async fn bad_subscriptions_and_contacts_are_refused_with_problem_json() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let alice = user();
    let browser = Browser::new();
    let good = browser.subscription("https://push.example.com/send/1");
    let post = |body: Value| {
        let api = &s.api;
        let alice = alice.clone();
        async move {
            Call::post("/v1/push-subscriptions")
                .user(&alice)
                .json(&body)
                .send(api)
                .await
        }
    };
    let mut bad_keys = good.clone();
    bad_keys["keys"]["p256dh"] = json!(URL_SAFE_NO_PAD.encode([4u8; 64]));
    bad_keys["keys"]["auth"] = json!(URL_SAFE_NO_PAD.encode([1u8; 8]));
    for (body, fields) in [
        (
            browser.subscription("http://push.example.com/send/1"),
            vec!["endpoint"],
        ),
        (
            browser.subscription("https://10.1.2.3/send/1"),
            vec!["endpoint"],
        ),
        (bad_keys, vec!["keys.p256dh", "keys.auth"]),
    ] {
        let r = post(body.clone()).await;
        assert_eq!(
            (r.status, r.content_type()),
            (422, "application/problem+json"),
            "{body}: {}",
            r.body
        );
        assert_eq!(r.error_fields(), fields, "{}", r.body);
    }
    // Loopback only where the deployment allows it.
    let mut strict = s.api.clone();
    strict.channels.allow_loopback = false;
    let r = Call::post("/v1/push-subscriptions")
        .user(&alice)
        .json(&browser.subscription("http://127.0.0.1:9/push"))
        .send(&strict)
        .await;
    assert_eq!(
        (r.status, r.error_fields()),
        (422, vec!["endpoint".to_owned()])
    );
    // Every host form the HTTP client would read as loopback, private or metadata (issue 12 §2):
    // the route judges the address the client would connect to.
    for endpoint in [
        "https://2130706433/push",
        "https://0x7f.1/push",
        "https://0177.0.0.1/push",
        "https://127.1/push",
        "https://localhost./push",
        "https://%31%32%37.0.0.1/push",
        "https://[::ffff:127.0.0.1]/push",
        "https://[::ffff:10.0.0.1]/push",
        "https://0xa9fea9fe/latest/meta-data",
        "https://100.64.0.1/push",
        "https://[64:ff9b::a00:1]/push",
        "https://[fe80::1]/push",
    ] {
        let r = Call::post("/v1/push-subscriptions")
            .user(&alice)
            .json(&browser.subscription(endpoint))
            .send(&strict)
            .await;
        assert_eq!(
            (r.status, r.error_fields()),
            (422, vec!["endpoint".to_owned()]),
            "{endpoint}: {}",
            r.body
        );
    }
    // No token: 401.
    let r = Call::post("/v1/push-subscriptions")
        .json(&good)
        .send(&s.api)
        .await;
    assert_eq!(r.status, 401);

    // Ten are fine (the same endpoint again replaces, 200); the eleventh is refused.
    for i in 0..10 {
        let r = post(browser.subscription(&format!("https://push.example.com/send/{i}"))).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = post(browser.subscription("https://push.example.com/send/3")).await;
    assert_eq!(r.status, 200, "re-subscribing replaces: {}", r.body);
    let r = post(browser.subscription("https://push.example.com/send/10")).await;
    assert_eq!(
        (r.status, r.content_type()),
        (422, "application/problem+json")
    );
    assert_eq!(s.subscriptions(&alice).await.len(), 10);
    // Delete one, and another user's is out of reach.
    let id = shared::addresses::PushSubscription::id_for("https://push.example.com/send/0");
    let r = Call::delete(&format!("/v1/push-subscriptions/{id}"))
        .user("mallory")
        .send(&s.api)
        .await;
    assert_eq!(r.status, 404);
    let r = Call::delete(&format!("/v1/push-subscriptions/{id}"))
        .user(&alice)
        .send(&s.api)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(s.subscriptions(&alice).await.len(), 9);
    let key = Call::get("/v1/push/vapid-public-key")
        .user(&alice)
        .send(&s.api)
        .await;
    assert_eq!(
        (key.status, key.body["publicKey"].as_str()),
        (200, Some(s.vapid_public.as_str()))
    );

    // Contacts: a service route, validated.
    let r = Call::put(&format!("/v1/users/{alice}/contacts"))
        .user(&alice)
        .json(&json!({"email": "a@example.com"}))
        .send(&s.api)
        .await;
    assert_eq!(r.status, 403);
    let r = Call::put(&format!("/v1/users/{alice}/contacts"))
        .service("svc")
        .json(&json!({"email": "not an email", "phone": "0044 7700"}))
        .send(&s.api)
        .await;
    assert_eq!(
        (r.status, r.error_fields()),
        (422, vec!["email".to_owned(), "phone".to_owned()])
    );
    let r = Call::put(&format!("/v1/users/{alice}/contacts"))
        .service("svc")
        .json(&json!({"email": "a@example.com", "fax": "+1"}))
        .send(&s.api)
        .await;
    assert_eq!(r.status, 422, "unknown fields are refused: {}", r.body);

    // Every route is in the OpenAPI document.
    let doc = Call::get("/openapi.json").send(&s.api).await;
    for (path, method) in [
        ("/v1/push-subscriptions", "post"),
        ("/v1/push-subscriptions", "get"),
        ("/v1/push-subscriptions/{id}", "delete"),
        ("/v1/push/vapid-public-key", "get"),
        ("/v1/users/{userId}/contacts", "put"),
        ("/v1/unsubscribe", "post"),
        ("/v1/unsubscribe", "get"),
    ] {
        assert!(
            doc.body["paths"][path].get(method).is_some(),
            "openapi lacks {method} {path}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Through devstack: template wiring, devstack's keys, delivery → push-notifications → push.

#[tokio::test]
async fn through_devstack_a_notification_reaches_the_browsers_push_service() {
    let Some(stack) = herald_tests::stack::shared_stack() else {
        return;
    };
    let service = Provider::start().await;
    let browser = Browser::new();
    let alice = user();
    let token = stack.token(&alice, &[], Duration::from_secs(300));
    let client = herald_tests::stack::http_client();
    let key: Value = client
        .get(stack.http_url("/v1/push/vapid-public-key"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let public = key["publicKey"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&public).map(|k| k.len()).ok(),
        Some(65),
        "{key}"
    );
    let r = client
        .post(stack.http_url("/v1/push-subscriptions"))
        .bearer_auth(&token)
        .json(&browser.subscription(&format!("{}/push/e2e", service.url)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.status().as_u16(),
        201,
        "devstack allows loopback push endpoints"
    );

    let created = stack
        .create_with(
            &alice,
            json!({"title": "Deployed", "body": "v1.2", "channels": ["IN_APP", "PUSH"]}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = service.received("/push/e2e");
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), 1, "the push function posted to the endpoint");
    let payload = browser.decrypt(&got[0].body);
    assert_eq!(
        (payload["id"].clone(), payload["title"].clone()),
        (created["id"].clone(), json!("Deployed"))
    );
    verify_vapid(
        got[0].header("authorization").unwrap_or_default(),
        &public,
        &service.url,
        devstack::push_keys::VAPID_SUBJECT,
    );
}

/// Issue 12 §1 through devstack, from the attacker's side: a subscription whose endpoint answers
/// `307 Location: <another local listener>` shows only `failed`/`redirect-refused` in its owner's
/// deliveries view, and the listener it pointed at gets no request.
#[tokio::test]
async fn through_devstack_a_redirecting_endpoint_reaches_nothing_and_shows_redirect_refused() {
    let Some(stack) = herald_tests::stack::shared_stack() else {
        return;
    };
    let service = Provider::start().await;
    let inside = Provider::start().await;
    service.always(
        "/push/moved",
        answer(307).header("Location", &format!("{}/internal", inside.url)),
    );
    let mallory = user();
    let token = stack.token(&mallory, &[], Duration::from_secs(300));
    let client = herald_tests::stack::http_client();
    let r = client
        .post(stack.http_url("/v1/push-subscriptions"))
        .bearer_auth(&token)
        .json(&Browser::new().subscription(&format!("{}/push/moved", service.url)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 201);
    let created = stack
        .create_with(
            &mallory,
            json!({"title": "x", "body": "y", "channels": ["PUSH"]}),
        )
        .await;
    let path = format!(
        "/v1/notifications/{}/deliveries",
        created["id"].as_str().unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let push = loop {
        let funnel: Value = client
            .get(stack.http_url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_default();
        let push = funnel["deliveries"].as_array().and_then(|d| {
            d.iter()
                .find(|d| d["channel"] == "PUSH" && d["status"] != "deferred")
                .cloned()
        });
        match push {
            Some(p) => break p,
            None if Instant::now() > deadline => panic!("no PUSH outcome: {funnel}"),
            None => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(
        (&push["status"], &push["reason"]),
        (&json!("failed"), &json!("redirect-refused")),
        "{push}"
    );
    assert_eq!(service.received("/push/moved").len(), 1);
    assert!(
        inside.received("/internal").is_empty(),
        "the redirect was followed"
    );
}

// ---------------------------------------------------------------------------------------------
// Infrastructure failures: only they fail records, and the retry sends nothing twice.

#[tokio::test]
async fn a_redis_failure_retries_only_that_record_and_the_retry_sends_nothing_twice() {
    let Some(s) = Setup::new(&[]).await else {
        return;
    };
    let service = Provider::start().await;
    let (broken, fine) = (user(), user());
    let browser = Browser::new();
    s.subscribe(&broken, &browser, &format!("{}/push/broken", service.url))
        .await;
    s.subscribe(&fine, &browser, &format!("{}/push/fine", service.url))
        .await;
    // A provider failing is not an infrastructure failure: the other record still completes.
    service.always("/push/fine", answer(503));
    let nb = s.notify_push(&broken, "b").await;
    let nf = s.notify_push(&fine, "f").await;
    // Redis fails for `broken` only: its send records key holds the wrong type.
    let sends = s.env.keys.user(&broken).sends();
    let _: () = redis::cmd("SET")
        .arg(&sends)
        .arg("not a hash")
        .query_async(&mut s.env.conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let event = batch(&[&nb, &nf]);
    let (response, stats) = push::process_batch(&s.push, &event, Utc::now()).await;
    let mut expected = shared::trigger::BatchResponse::default();
    expected.fail_from("push-notifications-1", 100);
    assert_eq!(response, expected, "retry from the broken user's record");
    assert_eq!((stats.failed, stats.retried), (1, 1), "{stats:?}");
    assert!(service.received("/push/broken").is_empty());

    // Redis is back; Lambda retries from offset 100: broken is sent, fine is not tried again.
    let _: () = redis::cmd("DEL")
        .arg(&sends)
        .query_async(&mut s.env.conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    service.always("/push/fine", answer(201));
    let (response, stats) = push::process_batch(&s.push, &event, Utc::now()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((stats.sent, stats.redelivered), (1, 1), "{stats:?}");
    assert_eq!(service.received("/push/broken").len(), 1);
    assert_eq!(service.received("/push/fine").len(), 3, "3 attempts, once");
    assert_eq!(s.outcomes(2).await, {
        let mut v = vec![
            row(&nb, "PUSH", "sent", ""),
            row(&nf, "PUSH", "failed", "provider-5xx"),
        ];
        v.sort_by_key(|o| (o.0.clone(), o.1.clone()));
        v
    });
}

#[tokio::test]
async fn with_kafka_down_the_outcome_waits_in_the_record_and_the_retry_does_not_resend() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let (private, public) = vapid_keys();
    let settings = settings(&[], Some((&private, &public)));
    let dead = push::Deps::new(
        env.conn.clone(),
        env.keys.clone(),
        env.dead_bus(),
        settings.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = Setup::with(env, settings, public);
    let service = Provider::start().await;
    let alice = user();
    let browser = Browser::new();
    s.subscribe(&alice, &browser, &format!("{}/push/a", service.url))
        .await;
    let n = s.notify_push(&alice, "x").await;
    let event = batch(&[&n]);

    // Sent, but Kafka never acknowledges the outcome: the record is retried.
    let (response, stats) = push::process_batch(&dead, &event, Utc::now()).await;
    assert_eq!(response.batch_item_failures.len(), 1, "{stats:?}");
    assert_eq!(service.received("/push/a").len(), 1);
    // Kafka is back: the retry re-emits the recorded outcome and sends nothing again.
    let (response, stats) = push::process_batch(&s.push, &event, Utc::now()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((stats.sent, stats.redelivered), (0, 1), "{stats:?}");
    assert_eq!(service.received("/push/a").len(), 1);
    assert_eq!(s.outcomes(1).await, [row(&n, "PUSH", "sent", "")]);
    // Once acknowledged, a further redelivery emits nothing more.
    let (_, stats) = push::process_batch(&s.push, &event, Utc::now()).await;
    assert_eq!(stats.redelivered, 1);
    assert_eq!(s.outcomes(1).await.len(), 1);
}
