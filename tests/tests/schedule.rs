//! Send later and best time to send (`docs/scheduling.md`), through `api::handle` and the
//! scheduler's firing step on real Redis and Kafka. The scheduler is driven explicitly with the
//! time it fires at, so nothing here depends on the clock's pace or the machine's speed.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, Timelike, Utc};
use herald_tests::{Call, Reply, TestEnv};
use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::config::SchedulerSettings;
use shared::protocol::{Envelope, Event, Topic};
use shared::schedule::{FireReport, Scheduler};
use shared::store::EngagementStore;

const LEASE: Duration = Duration::from_secs(30);

fn user(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn scheduler(env: &TestEnv) -> Scheduler {
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
        env.bus(),
    )
    .scheduler
}

async fn fire(s: &Scheduler, at: DateTime<Utc>) -> FireReport {
    s.fire_due(at)
        .await
        .unwrap_or_else(|e| panic!("fire_due: {e}"))
}

fn at(r: &Reply) -> DateTime<Utc> {
    r.body["sendAt"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no sendAt in {}", r.body))
}

fn id(r: &Reply) -> String {
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.body))
        .to_owned()
}

async fn create(deps: &api::Deps, sender: &str, body: Value) -> Reply {
    Call::post("/v1/notifications")
        .service(sender)
        .json(&body)
        .send(deps)
        .await
}

fn later(to: &str, send_at: DateTime<Utc>) -> Value {
    json!({"userId": to, "type": "reminder", "title": "later", "body": "b",
           "sendAt": send_at.to_rfc3339()})
}

async fn inbox(deps: &api::Deps, who: &str) -> Vec<Value> {
    let r = Call::get("/v1/notifications").user(who).send(deps).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

async fn total(deps: &api::Deps, who: &str) -> u64 {
    let r = Call::get("/v1/notifications/counts")
        .user(who)
        .send(deps)
        .await;
    r.body["total"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn a_scheduled_send_is_invisible_until_due_then_created_and_published_under_its_id() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fired = scheduler(&env);
    let alice = user("alice");
    let send_at = Utc::now() + Span::minutes(10);
    let r = create(&deps, "svc", later(&alice, send_at)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    let scheduled = id(&r);
    assert_eq!(at(&r).timestamp_millis(), send_at.timestamp_millis());

    assert!(
        inbox(&deps, &alice).await.is_empty(),
        "not listed before sendAt"
    );
    assert_eq!(total(&deps, &alice).await, 0, "not counted before sendAt");
    assert_eq!(fire(&fired, Utc::now()).await.claimed, 0, "not due yet");
    assert!(inbox(&deps, &alice).await.is_empty());

    let report = fire(&fired, send_at).await;
    assert_eq!((report.claimed, report.created), (1, 1), "{report:?}");
    let items = inbox(&deps, &alice).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], scheduled.as_str(), "the id answered at 202");
    assert_eq!(items[0]["seq"], 1, "seq assigned at send time");
    assert_eq!(total(&deps, &alice).await, 1);

    let status = Call::get(&format!("/v1/scheduled/{scheduled}"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(
        (status.status, &status.body["status"]),
        (200, &json!("sent"))
    );

    // The change reached Kafka through the outbox like any create (what `delivery` frames).
    let records = env.consume(Topic::NotificationEvents, 1).await;
    assert_eq!(records.len(), 1);
    let envelope = Envelope::decode(&records[0].payload).unwrap_or_else(|e| panic!("{e}"));
    match envelope.event {
        Event::NotificationCreated { notification, .. } => {
            assert_eq!(notification.id, scheduled);
            assert_eq!(notification.user_id, alice);
        }
        other => panic!("expected a create, got {other:?}"),
    }
}

/// A tenant's scheduled send fires into that tenant's user's inbox, not the default tenant's user
/// with the same id, and its record names the tenant.
#[tokio::test]
async fn a_tenants_scheduled_send_fires_into_the_tenants_inbox_only() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fired = scheduler(&env);
    let bob = user("bob");
    let send_at = Utc::now() + Span::minutes(10);
    let r = Call::post("/v1/notifications")
        .service("svc")
        .tenant("acme")
        .json(&later(&bob, send_at))
        .send(&deps)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let scheduled = id(&r);

    let report = fire(&fired, send_at).await;
    assert_eq!((report.claimed, report.created), (1, 1), "{report:?}");
    let acme_inbox = Call::get("/v1/notifications")
        .user(&bob)
        .tenant("acme")
        .send(&deps)
        .await;
    assert_eq!(acme_inbox.status, 200, "{}", acme_inbox.body);
    let ids: Vec<Value> = acme_inbox.body["items"]
        .as_array()
        .map(|items| items.iter().map(|n| n["id"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [json!(scheduled)]);
    assert!(
        inbox(&deps, &bob).await.is_empty(),
        "the default tenant's bob gets nothing"
    );
    let records = env.consume(Topic::NotificationEvents, 1).await;
    assert_eq!(records.len(), 1);
    let envelope = Envelope::decode(&records[0].payload).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(envelope.tenant.as_str(), "acme");
}

#[tokio::test]
async fn firing_is_exactly_once_under_concurrent_runs_a_crash_and_an_expired_lease() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    let (a, b) = (scheduler(&env), scheduler(&env));
    let send_at = Utc::now() + Span::minutes(5);
    let users: Vec<String> = (0..40).map(|i| user(&format!("u{i}"))).collect();
    for u in &users {
        assert_eq!(create(&deps, "svc", later(u, send_at)).await.status, 202);
    }
    // Two runs at once: every job is claimed by one of them.
    let (ra, rb) = tokio::join!(fire(&a, send_at), fire(&b, send_at));
    assert_eq!(ra.created + rb.created, 40, "{ra:?} {rb:?}");
    for u in &users {
        assert_eq!(total(&deps, u).await, 1, "{u}");
    }
    assert!(fire(&a, send_at + Span::hours(1)).await.claimed == 0);

    // A run that claimed a job and died before creating it: the job waits for its lease...
    let carol = user("carol");
    let r = create(&deps, "svc", later(&carol, send_at)).await;
    let jobs = deps
        .schedules
        .claim_due(send_at.timestamp_millis(), LEASE, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jobs.len(), 1);
    assert_eq!(fire(&a, send_at).await.claimed, 0, "leased");
    // ...and fires once it ended.
    let after_lease = send_at + Span::from_std(LEASE).unwrap_or_default() + Span::seconds(1);
    assert_eq!(fire(&a, after_lease).await.created, 1);
    assert_eq!(total(&deps, &carol).await, 1);

    // A run that created the notification and died before marking the job sent: the next run
    // finds the notification and does not create it again.
    let dave = user("dave");
    let r2 = create(&deps, "svc", later(&dave, send_at)).await;
    let mut conn = env.conn.clone();
    let job: String = conn
        .hget(env.keys.schedule_jobs(), id(&r2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fire(&a, send_at).await.created, 1);
    // Undo the settle: the job as it was while being fired.
    let _: () = conn
        .hset(env.keys.schedule_jobs(), id(&r2), job)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = conn
        .hset(env.keys.schedule_state(), id(&r2), "firing")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = conn
        .zadd(env.keys.schedule_due(), id(&r2), send_at.timestamp_millis())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = fire(&b, after_lease).await;
    assert_eq!((again.created, again.replayed), (0, 1), "{again:?}");
    assert_eq!(total(&deps, &dave).await, 1);
    assert_eq!(inbox(&deps, &dave).await[0]["id"], id(&r2).as_str());
    assert_eq!(inbox(&deps, &carol).await[0]["id"], id(&r).as_str());
}

#[tokio::test]
async fn cancel_by_id_and_by_key_and_another_senders_schedule_is_404() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fired = scheduler(&env);
    let erin = user("erin");
    let send_at = Utc::now() + Span::minutes(5);
    let one = id(&create(&deps, "svc", later(&erin, send_at)).await);

    for (method, path) in [
        ("GET", format!("/v1/scheduled/{one}")),
        ("DELETE", format!("/v1/scheduled/{one}")),
    ] {
        let r = Call::new(method, &path).service("other").send(&deps).await;
        assert_eq!(r.status, 404, "{method} by another sender: {}", r.body);
    }
    let r = Call::delete(&format!("/v1/scheduled/{one}"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("cancelled")),
        "{}",
        r.body
    );
    let r = Call::delete(&format!("/v1/scheduled/{one}"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(r.body["status"], "cancelled", "cancelling twice");

    let mut keyed = Vec::new();
    for title in ["a", "b", "c"] {
        let mut body = later(&erin, send_at);
        body["cancelKey"] = json!("order-42");
        body["title"] = json!(title);
        keyed.push(id(&create(&deps, "svc", body).await));
    }
    let mut kept = later(&erin, send_at);
    kept["cancelKey"] = json!("order-43");
    let kept = id(&create(&deps, "svc", kept).await);
    let r = Call::post("/v1/scheduled/cancel")
        .service("other")
        .json(&json!({"cancelKey": "order-42"}))
        .send(&deps)
        .await;
    assert_eq!(
        r.body["cancelled"],
        json!([]),
        "another sender's key names nothing"
    );
    let r = Call::post("/v1/scheduled/cancel")
        .service("svc")
        .json(&json!({"cancelKey": "order-42"}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut cancelled: Vec<String> = r.body["cancelled"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    cancelled.sort();
    keyed.sort();
    assert_eq!(cancelled, keyed);

    let report = fire(&fired, send_at).await;
    assert_eq!(
        report.created, 1,
        "only the send with another key: {report:?}"
    );
    let items = inbox(&deps, &erin).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], kept.as_str());
    let r = Call::delete(&format!("/v1/scheduled/{kept}"))
        .service("svc")
        .send(&deps)
        .await;
    assert_eq!(r.body["status"], "sent", "too late to cancel");
}

#[tokio::test]
async fn bad_send_at_and_within_are_422_naming_the_field_and_store_nothing() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let now = Utc::now();
    let base = |extra: Value| {
        let mut body = json!({"userId": "frank", "type": "t", "title": "x", "body": ""});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
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
        (json!({"sendAt": "optimal", "within": "8d"}), "within"),
        (json!({"sendAt": "optimal", "within": "soon"}), "within"),
        (json!({"sendAt": "optimal", "within": "0h"}), "within"),
        (json!({"within": "1h"}), "within"),
        (json!({"cancelKey": "k"}), "cancelKey"),
    ];
    for (extra, field) in cases {
        let r = create(&deps, "svc", base(extra.clone())).await;
        assert_eq!(r.status, 422, "{extra}: {}", r.body);
        assert_eq!(r.content_type(), "application/problem+json");
        assert_eq!(r.error_fields(), [field], "{extra}");
        let r = Call::post("/v1/notifications/batch")
            .service("svc")
            .json(&{
                let mut b = base(extra.clone());
                b.as_object_mut().map(|o| o.remove("userId"));
                b["userIds"] = json!(["frank", "gina"]);
                b
            })
            .send(&deps)
            .await;
        assert_eq!((r.status, r.error_fields()), (422, vec![field.to_owned()]));
    }
    assert_eq!(env.keys().await, Vec::<String>::new(), "nothing stored");
}

#[tokio::test]
async fn a_batch_and_an_idempotency_key_schedule_each_recipient_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fired = scheduler(&env);
    let (g, h) = (user("gina"), user("hank"));
    let send_at = Utc::now() + Span::minutes(5);
    let body = json!({"userIds": [g, h], "type": "t", "title": "x", "body": "",
                      "sendAt": send_at.to_rfc3339()});
    let post = || {
        Call::post("/v1/notifications/batch")
            .service("svc")
            .header("Idempotency-Key", "k-1")
            .json(&body)
    };
    let first = post().send(&deps).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = post().send(&deps).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let ids = |r: &Reply| -> Vec<Value> {
        r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| json!([i["id"], i["userId"], i["sendAt"]]))
            .collect()
    };
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(fire(&fired, send_at).await.created, 2);
    for u in [&g, &h] {
        assert_eq!(total(&deps, u).await, 1);
    }
}

#[tokio::test]
async fn optimal_picks_the_users_hour_else_the_global_one_else_now() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api();
    let fired = scheduler(&env);
    let engagement = EngagementStore::new(env.conn.clone(), env.keys.clone());
    let now = Utc::now();
    // Ivy reads 3 hours from now, every day for 3 weeks; everyone else 5 hours from now.
    let (ivy, jo) = (user("ivy"), user("jo"));
    let hour = |h: i64| {
        (now + Span::hours(h))
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now)
    };
    let optimal = |who: &str| {
        json!({"userId": who, "type": "t", "title": "best", "body": "", "sendAt": "optimal",
               "within": "12h"})
    };
    // No data at all: now.
    let r = create(&deps, "svc", optimal(&jo)).await;
    assert_eq!(
        (r.status, &r.body["reason"]),
        (202, &json!("no-data")),
        "{}",
        r.body
    );
    assert!((at(&r) - now).num_seconds().abs() < 600);

    for day in 1..=21 {
        let past = |h: i64| hour(h) - Span::days(day) + Span::minutes(10);
        engagement
            .record(&ivy, past(3))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // The user's own histogram.
    let r = create(&deps, "svc", optimal(&ivy)).await;
    assert_eq!(r.body["reason"], "user-histogram", "{}", r.body);
    assert_eq!(at(&r), hour(3));
    let ivy_send = at(&r);

    // Jo has too few events: the global one (Ivy's 21 at +3 h outweighed by 40 at +5 h).
    for day in 1..=2 {
        engagement
            .record(&jo, hour(1) - Span::days(day))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for i in 0..40 {
        engagement
            .record(&user(&format!("k{i}")), hour(5) - Span::weeks(1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let r = create(&deps, "svc", optimal(&jo)).await;
    assert_eq!(r.body["reason"], "global-histogram", "{}", r.body);
    assert_eq!(at(&r), hour(5));

    // The notification shows the choice once sent.
    assert!(fire(&fired, ivy_send).await.created >= 1);
    let items = inbox(&deps, &ivy).await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["schedule"],
        json!({"sendAt": ivy_send.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), "reason": "user-histogram"})
    );
}

/// Through devstack (the real binaries): the frame arrives when the `scheduler` function fires
/// the job, not before. The run is started through the Invoke API (the template's schedule
/// first fires a minute after devstack starts); the deadline is generous, nothing is timed.
#[tokio::test]
async fn through_devstack_the_frame_arrives_when_the_scheduler_fires() {
    let Some(stack) = herald_tests::stack::shared_stack() else {
        return;
    };
    let kim = user("kim");
    let mut socket = stack.connect(&kim).await;
    let token = stack.token(
        "e2e-service",
        &["notifications:write"],
        Duration::from_secs(300),
    );
    let response = herald_tests::stack::http_client()
        .post(stack.http_url("/v1/notifications"))
        .bearer_auth(token)
        .json(&later(&kim, Utc::now() + Span::seconds(10)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST: {e}"));
    assert_eq!(response.status().as_u16(), 202);
    let scheduled: Value = response.json().await.unwrap_or_default();
    assert!(
        socket
            .next_of("notification.created", Duration::from_millis(500))
            .await
            .is_none(),
        "no frame before the send"
    );
    let invoke = format!(
        "http://{}/2015-03-31/functions/scheduler/invocations",
        stack.invoke
    );
    // The run lasts SCHEDULER_RUN_SECONDS; the test needs only its start.
    let run = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(invoke)
            .json(&json!({"detail-type": "Scheduled Event"}))
            .send()
            .await;
    });
    let frame = socket
        .next_of("notification.created", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no frame for the scheduled send"));
    assert_eq!(frame["notification"]["id"], scheduled["id"]);
    assert_eq!(frame["notification"]["seq"], 1);
    run.abort();
}
