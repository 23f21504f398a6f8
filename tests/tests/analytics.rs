//! Analytics: the `analytics` function's batch contract in process against real Redis, the
//! analytics routes of the api function, and the per-notification funnel end to end through
//! devstack.
//!
//! - A batch delivered twice (and a batch overlapping it) leaves every counter, estimate and
//!   history unchanged after the first; the counters equal what was sent; poison records are
//!   skipped; `ALL_READ` counts nothing.
//! - A Redis failure retries the partition (from its first record for a count, from the record
//!   for a history or a type lookup), and the retry completes without counting anything twice.
//! - `GET /v1/analytics` returns the daily series and totals; 401/403 without the scope, 400 on
//!   bad parameters. `GET /v1/notifications/{id}/deliveries` is for the owner and services, 404
//!   for everyone else; `POST …/click` records a click that the function then counts.
//! - Through devstack: create (with a socket open) → `sent`; markRead over the WebSocket →
//!   `seen`, `read`; click → `clicked`: the funnel shows all four with timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use herald_tests::stack::{http_client, shared_stack};
use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::config::AnalyticsSettings;
use shared::model::{Channel, FlagsPatch, Notification, OutcomeStatus};
use shared::protocol::outcome::reason;
use shared::protocol::{DeliveryOutcome, Envelope, Event, Topic};
use shared::store::{AnalyticsStore, NewNotification, UpdateOutcome};
use shared::trigger::BatchResponse;

fn deps(env: &TestEnv) -> analytics::Deps {
    let settings = AnalyticsSettings {
        topic_suffix: env.kafka.topic_suffix.clone(),
        ..AnalyticsSettings::default()
    };
    analytics::Deps::new(AnalyticsStore::new(
        env.conn.clone(),
        env.keys.clone(),
        settings,
    ))
}

fn delivery_topic(env: &TestEnv) -> String {
    Topic::NotificationDelivery.name_with(&env.kafka.topic_suffix)
}

fn engagement_topic(env: &TestEnv) -> String {
    Topic::NotificationAnalytics.name_with(&env.kafka.topic_suffix)
}

/// One Kafka record as Lambda sends it; `value` is already base64 (or deliberately not).
fn raw(topic: &str, partition: i64, offset: i64, value: &str) -> Value {
    json!({"topic": topic, "partition": partition, "offset": offset, "timestamp": 1_795_953_600_000u64,
           "timestampType": "CREATE_TIME", "key": null, "value": value, "headers": []})
}

fn rec(topic: &str, partition: i64, offset: i64, bytes: &[u8]) -> Value {
    raw(topic, partition, offset, &STANDARD.encode(bytes))
}

/// A self-managed Kafka event holding `records`, grouped by partition as Lambda does.
fn event(records: &[Value]) -> KafkaEvent {
    let mut grouped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        let key = format!(
            "{}-{}",
            r["topic"].as_str().unwrap_or_default(),
            r["partition"]
        );
        grouped.entry(key).or_default().push(r.clone());
    }
    serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "kafka-1.internal:9092,kafka-2.internal:9092",
        "records": grouped
    }))
    .unwrap_or_else(|e| panic!("event: {e}"))
}

async fn notification(env: &TestEnv, user: &str, kind: &str, channels: &[Channel]) -> Notification {
    let new = NewNotification {
        kind: kind.into(),
        channels: channels.to_vec(),
        ..herald_tests::new_notification(user)
    };
    env.seed_notification(new).await.notification
}

async fn read(env: &TestEnv, user: &str, id: &str, patch: FlagsPatch) -> Envelope {
    match env
        .store(TestEnv::unlimited())
        .update(user, id, patch)
        .await
    {
        Ok(UpdateOutcome::Updated { change, .. }) => change.envelope,
        other => panic!("update: {other:?}"),
    }
}

fn click(user: &str, id: &str) -> Envelope {
    Envelope::new(
        user,
        Event::NotificationClicked {
            id: id.into(),
            first: Some(true),
        },
    )
}

fn outcome(
    n: &Notification,
    channel: Channel,
    status: OutcomeStatus,
    why: Option<&str>,
) -> DeliveryOutcome {
    DeliveryOutcome::new(n, channel, status, why)
}

/// Every analytics key of `day` and of the `notifications`' histories with its content (TTLs
/// aside), to compare before and after. Keys are named, not scanned, so this sees every node of a
/// Redis Cluster.
async fn snapshot(env: &TestEnv, day: &str, notifications: &[&str]) -> BTreeMap<String, String> {
    let mut conn = env.conn.clone();
    let mut shards: Vec<String> = redis::cmd("SMEMBERS")
        .arg(env.keys.analytics_shards())
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    shards.sort();
    let mut keys = vec![
        env.keys.analytics_shards(),
        env.keys.analytics_recipients(day),
    ];
    for shard in &shards {
        let shard = env.keys.analytics_shard(shard);
        keys.extend([shard.watermark(), shard.day(day)]);
    }
    keys.extend(
        notifications
            .iter()
            .map(|id| env.keys.notification_outcomes(id)),
    );
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let value = match kind.as_str() {
            // Watermarks, and the HyperLogLogs' raw registers.
            "string" => {
                let v: Vec<u8> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                STANDARD.encode(v)
            }
            "hash" => {
                let v: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                format!("{v:?}")
            }
            "set" => format!("{shards:?}"),
            other => format!("<{other}>"),
        };
        out.insert(key, value);
    }
    out
}

/// The counts one would expect: `(type, channel, status)` → n.
type Expected = BTreeMap<(String, Channel, OutcomeStatus), u64>;

fn tally(expected: &mut Expected, kind: &str, channel: Channel, status: OutcomeStatus) {
    *expected
        .entry((kind.to_owned(), channel, status))
        .or_default() += 1;
}

/// `totals.byType` as the API should show it for `expected`.
fn by_type(expected: &Expected) -> Value {
    let mut out = serde_json::Map::new();
    for ((kind, _, status), n) in expected {
        let entry = out.entry(kind.clone()).or_insert_with(|| {
            json!({"sent":0,"failed":0,"suppressed":0,"deferred":0,"seen":0,"read":0,"clicked":0})
        });
        entry[status.as_str()] = json!(entry[status.as_str()].as_u64().unwrap_or(0) + n);
    }
    Value::Object(out)
}

fn by_channel(expected: &Expected) -> Value {
    let mut out = serde_json::Map::new();
    for ((_, channel, status), n) in expected {
        let entry = out.entry(channel.as_str()).or_insert_with(|| {
            json!({"sent":0,"failed":0,"suppressed":0,"deferred":0,"seen":0,"read":0,"clicked":0})
        });
        entry[status.as_str()] = json!(entry[status.as_str()].as_u64().unwrap_or(0) + n);
    }
    Value::Object(out)
}

async fn report(env: &TestEnv, day: &str) -> Value {
    let r = Call::get("/v1/analytics")
        .user("analyst")
        .scope("analytics:read")
        .query("from", day)
        .query("to", day)
        .send(&env.api())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn a_redelivered_batch_changes_no_counter_and_the_counters_equal_what_was_sent() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = deps(&env);
    let (dt, et) = (delivery_topic(&env), engagement_topic(&env));

    let n1 = notification(&env, "alice", "comment", &[Channel::InApp, Channel::Email]).await;
    let n2 = notification(
        &env,
        "bob",
        "invoice.paid",
        &[Channel::InApp, Channel::Push],
    )
    .await;
    let n3 = notification(&env, "alice", "comment", &[Channel::InApp]).await;
    let gone = notification(&env, "bob", "digest", &[Channel::InApp]).await;

    // What was sent, and what the users did.
    let outcomes = [
        outcome(&n1, Channel::InApp, OutcomeStatus::Sent, None),
        outcome(&n1, Channel::Email, OutcomeStatus::Sent, None),
        outcome(
            &n2,
            Channel::InApp,
            OutcomeStatus::Suppressed,
            Some(reason::NO_CONNECTION),
        ),
        outcome(
            &n2,
            Channel::Push,
            OutcomeStatus::Failed,
            Some(reason::PROVIDER_5XX),
        ),
        outcome(&n3, Channel::InApp, OutcomeStatus::Sent, None),
        outcome(
            &n2,
            Channel::Push,
            OutcomeStatus::Deferred,
            Some(reason::QUIET_HOURS),
        ),
    ];
    let read_n1 = read(
        &env,
        "alice",
        &n1.id,
        FlagsPatch {
            read: Some(true),
            ..Default::default()
        },
    )
    .await;
    let seen_n2 = read(
        &env,
        "bob",
        &n2.id,
        FlagsPatch {
            seen: Some(true),
            ..Default::default()
        },
    )
    .await;
    let click_n1 = click("alice", &n1.id);
    let all_read = match env
        .store(TestEnv::unlimited())
        .mark_all_read("alice", None)
        .await
    {
        Ok(m) => m.change.unwrap_or_else(|| panic!("n3 was unread")).envelope,
        Err(e) => panic!("{e}"),
    };
    // A click on a notification deleted before analytics saw it: its type is unknown.
    let _ = env
        .store(TestEnv::unlimited())
        .delete("bob", &gone.id)
        .await;
    let click_gone = click("bob", &gone.id);
    let mut v2: Value = serde_json::from_slice(&outcomes[4].encode()).unwrap_or_default();
    v2["v"] = json!(2);

    let mut expected = Expected::new();
    for o in &outcomes {
        tally(&mut expected, &o.notification_type, o.channel, o.status);
    }
    tally(
        &mut expected,
        "comment",
        Channel::InApp,
        OutcomeStatus::Seen,
    );
    tally(
        &mut expected,
        "comment",
        Channel::InApp,
        OutcomeStatus::Read,
    );
    tally(
        &mut expected,
        "comment",
        Channel::InApp,
        OutcomeStatus::Clicked,
    );
    tally(
        &mut expected,
        "invoice.paid",
        Channel::InApp,
        OutcomeStatus::Seen,
    );
    tally(
        &mut expected,
        analytics::UNKNOWN_TYPE,
        Channel::InApp,
        OutcomeStatus::Clicked,
    );

    let records = vec![
        rec(&dt, 0, 10, &outcomes[0].encode()),
        raw(&dt, 0, 11, "%%% not base64 %%%"),
        rec(&dt, 0, 12, &outcomes[1].encode()),
        rec(&dt, 1, 5, &outcomes[2].encode()),
        rec(&dt, 1, 6, &outcomes[3].encode()),
        rec(&dt, 1, 7, b"{not json"),
        rec(&dt, 1, 8, &outcomes[5].encode()),
        rec(&dt, 2, 0, &outcomes[4].encode()),
        rec(&dt, 2, 1, v2.to_string().as_bytes()),
        rec(&et, 0, 20, &read_n1.encode()),
        rec(&et, 0, 21, &click_n1.encode()),
        rec(&et, 0, 22, &all_read.encode()),
        rec(&et, 1, 3, &seen_n2.encode()),
        rec(&et, 1, 4, &click_gone.encode()),
    ];
    let batch = event(&records);
    let (response, stats) = analytics::count_batch(&deps, &batch).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!(
        (
            stats.records,
            stats.poison,
            stats.ignored,
            stats.counted,
            stats.already_counted
        ),
        (14, 3, 1, 10, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.history_added, 11,
        "6 outcomes, seen + read, 2 clicks, 1 seen"
    );

    let day = outcomes[0].at.date_naive().format("%Y-%m-%d").to_string();
    let first = report(&env, &day).await;
    assert_eq!(first["totals"]["byType"], by_type(&expected), "{first}");
    assert_eq!(
        first["totals"]["byChannel"],
        by_channel(&expected),
        "{first}"
    );
    assert_eq!(first["totals"]["uniqueRecipients"], 2, "alice and bob");
    assert_eq!(first["days"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["days"][0]["outcomes"], first["totals"]["outcomes"]);
    assert_eq!(first["days"][0]["date"], day.as_str());

    // The same batch again (Lambda retrying it, or a second poller): nothing changes at all.
    let ids = [
        n1.id.as_str(),
        n2.id.as_str(),
        n3.id.as_str(),
        gone.id.as_str(),
    ];
    let before = snapshot(&env, &day, &ids).await;
    assert_eq!(
        before.len(),
        2 + 2 * 5 + 4,
        "5 shards, 4 histories: {before:#?}"
    );
    assert!(before.values().all(|v| v != "<none>"), "{before:#?}");
    let (response, stats) = analytics::count_batch(&deps, &batch).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!(
        (stats.counted, stats.already_counted, stats.history_added),
        (0, 10, 0),
        "{stats:?}"
    );
    assert_eq!(
        snapshot(&env, &day, &ids).await,
        before,
        "a redelivered batch changes no key"
    );
    assert_eq!(report(&env, &day).await, first);

    // A batch overlapping the first (resumed from offset 12) with one new record: only it counts.
    let retry = outcome(
        &n1,
        Channel::Email,
        OutcomeStatus::Failed,
        Some(reason::PROVIDER_4XX),
    )
    .with_provider(Some("ses"));
    tally(
        &mut expected,
        "comment",
        Channel::Email,
        OutcomeStatus::Failed,
    );
    let overlapping = event(&[
        rec(&dt, 0, 12, &outcomes[1].encode()),
        rec(&dt, 0, 13, &retry.encode()),
        rec(&et, 0, 21, &click_n1.encode()),
    ]);
    let (response, stats) = analytics::count_batch(&deps, &overlapping).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!(
        (stats.counted, stats.already_counted, stats.history_added),
        (1, 2, 1),
        "{stats:?}"
    );
    let last = report(&env, &day).await;
    assert_eq!(last["totals"]["byType"], by_type(&expected), "{last}");

    // The funnel of n1: every channel, with timestamps, seen before read at the same instant.
    let funnel = Call::get(&format!("/v1/notifications/{}/deliveries", n1.id))
        .user("alice")
        .send(&env.api())
        .await;
    assert_eq!(funnel.status, 200, "{}", funnel.body);
    let steps: Vec<(String, String)> = funnel.body["deliveries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["channel"].as_str().unwrap_or("").to_owned(),
                        d["status"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let step = |c: &str, s: &str| (c.to_owned(), s.to_owned());
    assert_eq!(
        steps,
        [
            step("IN_APP", "sent"),
            step("EMAIL", "sent"),
            step("IN_APP", "seen"),
            step("IN_APP", "read"),
            step("IN_APP", "clicked"),
            step("EMAIL", "failed"),
        ],
        "{}",
        funnel.body
    );
    assert_eq!(funnel.body["type"], "comment");
    assert_eq!(funnel.body["deliveries"][5]["reason"], "provider-4xx");
    assert!(funnel.body["deliveries"][0]["latencyMs"].is_u64());
    // The provider that answered an EMAIL send; IN_APP names none.
    assert_eq!(funnel.body["deliveries"][5]["provider"], "ses");
    assert!(funnel.body["deliveries"][0].get("provider").is_none());
}

#[tokio::test]
async fn a_redis_failure_retries_the_partition_and_the_retry_counts_exactly_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = deps(&env);
    let (dt, et) = (delivery_topic(&env), engagement_topic(&env));
    let mut conn = env.conn.clone();
    let n1 = notification(&env, "alice", "comment", &[Channel::InApp]).await;
    let n2 = notification(&env, "carol", "comment", &[Channel::InApp]).await;
    let n3 = notification(&env, "dave", "comment", &[Channel::InApp]).await;
    let o1 = outcome(&n1, Channel::InApp, OutcomeStatus::Sent, None);
    let o2 = outcome(&n2, Channel::InApp, OutcomeStatus::Sent, None);
    let o3 = outcome(&n1, Channel::Push, OutcomeStatus::Sent, None);
    let o4 = outcome(&n3, Channel::InApp, OutcomeStatus::Sent, None);
    let c1 = click("alice", &n1.id);
    let c3 = click("dave", &n3.id);
    let day = o1.at.date_naive().format("%Y-%m-%d").to_string();
    let set = |key: String| redis::cmd("SET").arg(key).arg("not a hash").to_owned();
    let del = |key: String| redis::cmd("DEL").arg(key).to_owned();

    // Partition 0: carol's history key has the wrong type. Partition 1: its watermark does.
    // Engagement partition 0: dave's inbox cannot be read, so his click's type is unknown.
    let history = env.keys.notification_outcomes(&n2.id);
    let batch = event(&[
        rec(&dt, 0, 1, &o1.encode()),
        rec(&dt, 0, 2, &o2.encode()),
        rec(&dt, 0, 3, &o3.encode()),
        rec(&dt, 1, 40, &o4.encode()),
        rec(&et, 0, 7, &c1.encode()),
        rec(&et, 0, 8, &c3.encode()),
    ]);
    let cluster = analytics::cluster_id(deps.store.settings(), &batch);
    let watermark = env
        .keys
        .analytics_shard(&format!("{cluster}:{dt}:1"))
        .watermark();
    let flags = env.keys.user("dave").flags();
    let stash: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&flags)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for key in [&history, &flags] {
        let _: () = del(key.clone())
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for key in [&history, &watermark, &flags] {
        let _: () = set(key.clone())
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let (response, stats) = analytics::count_batch(&deps, &batch).await;
    let mut expected = BatchResponse::default();
    expected.fail_from(&format!("{dt}-0"), 2);
    expected.fail_from(&format!("{dt}-1"), 40);
    expected.fail_from(&format!("{et}-0"), 8);
    let mut got = response.clone();
    got.batch_item_failures.sort_by(|a, b| {
        a.item_identifier
            .partition
            .cmp(&b.item_identifier.partition)
    });
    expected.batch_item_failures.sort_by(|a, b| {
        a.item_identifier
            .partition
            .cmp(&b.item_identifier.partition)
    });
    assert_eq!(
        got, expected,
        "history: from its record; count: from the partition's first; type lookup: from its record"
    );
    assert_eq!(stats.counted, 4, "o1, o2, o3 and alice's click: {stats:?}");

    // Redis is healthy again; Lambda resumes each partition where it was told.
    for key in [&history, &watermark, &flags] {
        let _: () = del(key.clone())
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    if !stash.is_empty() {
        let _: () = redis::cmd("HSET")
            .arg(&flags)
            .arg(&stash)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let retry = event(&[
        rec(&dt, 0, 2, &o2.encode()),
        rec(&dt, 0, 3, &o3.encode()),
        rec(&dt, 1, 40, &o4.encode()),
        rec(&et, 0, 8, &c3.encode()),
    ]);
    let (response, stats) = analytics::count_batch(&deps, &retry).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!((stats.counted, stats.already_counted), (2, 2), "{stats:?}");
    assert_eq!(
        stats.history_added, 2,
        "carol's sent and dave's click (his sent went in on the first attempt)"
    );

    let totals = report(&env, &day).await["totals"].clone();
    assert_eq!(
        totals["byType"]["comment"],
        json!({"sent":4,"failed":0,"suppressed":0,"deferred":0,"seen":0,"read":0,"clicked":2}),
        "every record exactly once: {totals}"
    );
    assert_eq!(totals["byChannel"]["PUSH"]["sent"], 1);
    assert_eq!(totals["uniqueRecipients"], 3);
}

#[tokio::test]
async fn the_analytics_routes_check_scopes_parameters_and_ownership() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let api = env.api();
    let problem = |r: &herald_tests::Reply| {
        assert_eq!(r.content_type(), "application/problem+json", "{}", r.body);
    };

    // The routes are in the OpenAPI document.
    let doc = Call::get("/openapi.json").send(&api).await;
    for path in [
        "/v1/analytics",
        "/v1/notifications/{id}/deliveries",
        "/v1/notifications/{id}/click",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "{path} is not in /openapi.json"
        );
    }
    assert_eq!(
        doc.body["paths"]["/v1/analytics"]["get"]["security"][0]["jwt"][0],
        "analytics:read"
    );

    // 401 without claims, 403 without the scope (a write scope is not enough).
    let r = Call::get("/v1/analytics").send(&api).await;
    assert_eq!(r.status, 401);
    problem(&r);
    for call in [
        Call::get("/v1/analytics").user("alice"),
        Call::get("/v1/analytics").service("svc"),
    ] {
        let r = call.send(&api).await;
        assert_eq!(r.status, 403, "{}", r.body);
        problem(&r);
        assert!(r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("analytics:read")));
    }
    // Bad parameters: 400, naming each one.
    let analyst = || {
        Call::get("/v1/analytics")
            .user("analyst")
            .scope("analytics:read")
    };
    for (call, fields) in [
        (analyst().query("from", "2026-13-01"), vec!["from"]),
        (
            analyst().query("to", "yesterday").query("channel", "FAX"),
            vec!["to", "channel"],
        ),
        (
            analyst()
                .query("from", "2026-11-02")
                .query("to", "2026-11-01"),
            vec!["from"],
        ),
        (
            analyst()
                .query("from", "2024-01-01")
                .query("to", "2026-01-01"),
            vec!["from"],
        ),
        (analyst().query("type", "Not A Type"), vec!["type"]),
    ] {
        let r = call.send(&api).await;
        assert_eq!(
            (r.status, r.error_fields()),
            (
                400,
                fields.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>()
            ),
            "{}",
            r.body
        );
        problem(&r);
    }
    // Defaults: the last 7 days, zeros where nothing was counted.
    let r = analyst().query("channel", "SMS").send(&api).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["days"].as_array().map(Vec::len), Some(7));
    assert_eq!(r.body["channel"], "SMS");
    assert_eq!(r.body["totals"]["outcomes"]["sent"], 0);

    // Deliveries: the owner (even before anything was counted), services; 404 for others.
    let n = notification(&env, "alice", "comment", &[Channel::InApp]).await;
    let path = format!("/v1/notifications/{}/deliveries", n.id);
    let r = Call::get(&path).user("alice").send(&api).await;
    assert_eq!(
        (r.status, &r.body["deliveries"], &r.body["type"]),
        (200, &json!([]), &json!("comment")),
        "{}",
        r.body
    );
    let r = Call::get(&path).user("mallory").send(&api).await;
    assert_eq!(r.status, 404);
    problem(&r);
    let r = Call::get(&path).service("svc").send(&api).await;
    assert_eq!(
        r.status, 404,
        "a service sees a notification once something was counted for it"
    );
    let r = Call::get("/v1/notifications/not-a-notification/deliveries")
        .user("alice")
        .send(&api)
        .await;
    assert_eq!(r.status, 404);

    // A click: 202, one record on notification-analytics, which the function counts (here with
    // the IN_APP outcome delivery emitted before it).
    let sent = outcome(&n, Channel::InApp, OutcomeStatus::Sent, None);
    let r = Call::post(&format!("/v1/notifications/{}/click", n.id))
        .user("mallory")
        .send(&api)
        .await;
    assert_eq!(r.status, 404, "only the owner clicks");
    let r = Call::post(&format!("/v1/notifications/{}/click", n.id))
        .user("alice")
        .send(&api)
        .await;
    assert_eq!((r.status, r.raw.len()), (202, 0), "{}", r.body);
    let clicks = env.consume(Topic::NotificationAnalytics, 1).await;
    assert_eq!(clicks.len(), 1);
    assert_eq!(
        (clicks[0].key.as_str(), clicks[0].json()["type"].as_str()),
        ("alice", Some("NOTIFICATION_CLICKED"))
    );
    let batch = event(&[
        rec(&delivery_topic(&env), 0, 0, &sent.encode()),
        rec(
            &engagement_topic(&env),
            i64::from(clicks[0].partition),
            clicks[0].offset,
            &clicks[0].payload,
        ),
    ]);
    let (response, _) = analytics::count_batch(&deps(&env), &batch).await;
    assert_eq!(response, BatchResponse::default());

    for call in [
        Call::get(&path).user("alice"),
        Call::get(&path).service("svc"),
    ] {
        let r = call.send(&api).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let statuses: Vec<&str> = r.body["deliveries"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["status"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(statuses, ["sent", "clicked"], "{}", r.body);
    }
    let r = Call::get(&path).user("mallory").send(&api).await;
    assert_eq!(
        r.status, 404,
        "another user's funnel is 404 once it exists too"
    );
}

#[tokio::test]
async fn the_funnel_shows_sent_seen_read_and_clicked_end_to_end() {
    let Some(stack) = shared_stack() else { return };
    let outcome = tokio::time::timeout(Duration::from_secs(90), async {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let (alice, bob) = (format!("alice-{tag}"), format!("bob-{tag}"));
        let kind = format!("funnel-{tag}");
        let mut phone = stack.connect(&alice).await;
        let created = stack
            .create_with(
                &alice,
                json!({"type": kind, "title": "Your build passed", "body": ""}),
            )
            .await;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        phone
            .next_of("notification.created", Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no notification.created frame"));
        phone.send(json!({"action": "markRead", "id": id})).await;
        phone
            .next_of("notification.updated", Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no notification.updated frame"));

        let token = |sub: &str, scopes: &[&str]| stack.token(sub, scopes, Duration::from_secs(300));
        let client = http_client();
        let clicked = client
            .post(stack.http_url(&format!("/v1/notifications/{id}/click")))
            .bearer_auth(token(&alice, &[]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("click: {e}"));
        assert_eq!(clicked.status().as_u16(), 202);

        // The analytics function counts within its batching window; poll the funnel.
        let path = format!("/v1/notifications/{id}/deliveries");
        let mut funnel = Value::Null;
        for _ in 0..120 {
            let r = client
                .get(stack.http_url(&path))
                .bearer_auth(token(&alice, &[]))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert_eq!(r.status().as_u16(), 200);
            funnel = r.json().await.unwrap_or_default();
            if funnel["deliveries"].as_array().map_or(0, Vec::len) >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let steps: Vec<(&str, &str)> = funnel["deliveries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["channel"].as_str().unwrap_or(""),
                            d["status"].as_str().unwrap_or(""),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            steps,
            [
                ("IN_APP", "sent"),
                ("IN_APP", "seen"),
                ("IN_APP", "read"),
                ("IN_APP", "clicked")
            ],
            "{funnel}"
        );
        let times: Vec<DateTime<Utc>> = funnel["deliveries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["at"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(times.len(), 4, "every step has its time: {funnel}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{funnel}");
        assert!(funnel["deliveries"][0]["latencyMs"].is_u64(), "{funnel}");

        // Another user: 404. The counters of this type: one of each step.
        let r = client
            .get(stack.http_url(&path))
            .bearer_auth(token(&bob, &[]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 404);
        let analytics = format!("/v1/analytics?type={kind}");
        let r = client
            .get(stack.http_url(&analytics))
            .bearer_auth(token(&alice, &[]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.status().as_u16(),
            403,
            "the gateway checks analytics:read"
        );
        let r = client
            .get(stack.http_url(&analytics))
            .bearer_auth(token("dashboard", &["analytics:read"]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 200);
        let report: Value = r.json().await.unwrap_or_default();
        assert_eq!(
            report["totals"]["byChannel"]["IN_APP"],
            json!({"sent":1,"failed":0,"suppressed":0,"deferred":0,"seen":1,"read":1,"clicked":1}),
            "{report}"
        );
    })
    .await;
    if outcome.is_err() {
        panic!("the funnel test did not finish within 90 s");
    }
}

#[tokio::test]
async fn toggling_read_and_clicking_again_count_each_notification_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = deps(&env);
    let et = engagement_topic(&env);
    let store = env.store(TestEnv::unlimited());
    let n = notification(&env, "tess", "comment", &[Channel::InApp]).await;
    let patch = |read| FlagsPatch {
        read: Some(read),
        ..Default::default()
    };
    // Read, unread, read … 50 times, then a mark-all-read after one more unread: every change,
    // as if each were published to the analytics topic.
    let mut envelopes = Vec::new();
    for i in 0..50 {
        envelopes.push(read(&env, "tess", &n.id, patch(i % 2 == 0)).await);
    }
    let all_read = store
        .mark_all_read("tess", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    envelopes.extend(all_read.change.map(|c| c.envelope));
    let engagement: Vec<&Envelope> = envelopes.iter().filter(|e| e.is_engagement()).collect();
    assert_eq!(
        engagement.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [envelopes[0].seq, envelopes[50].seq],
        "only the first read (and ALL_READ, which counts nothing) go to analytics"
    );
    // Three clicks: the store says which is the first.
    for expected_first in [true, false, false] {
        let first = store
            .record_click("tess", &n.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, Some(expected_first));
        envelopes.push(Envelope::new(
            "tess",
            Event::NotificationClicked {
                id: n.id.clone(),
                first,
            },
        ));
    }
    let records: Vec<Value> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| rec(&et, 0, i as i64, &e.encode()))
        .collect();
    let (response, _) = analytics::count_batch(&deps, &event(&records)).await;
    assert_eq!(response, BatchResponse::default());
    let day = envelopes[0]
        .occurred_at
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let counted = report(&env, &day).await;
    let comment = &counted["totals"]["byType"]["comment"];
    assert_eq!(
        (
            comment["seen"].as_u64(),
            comment["read"].as_u64(),
            comment["clicked"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{counted}"
    );
    // The same batch again counts nothing more.
    analytics::count_batch(&deps, &event(&records)).await;
    assert_eq!(report(&env, &day).await, counted);
}

/// The history scripts go by hash (`EVALSHA`); a server that lost its script cache (a restart, a
/// `SCRIPT FLUSH`) answers `NOSCRIPT`, and those calls go again with the source: the history is
/// still written, once.
#[tokio::test]
async fn histories_are_written_after_redis_forgot_its_scripts() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = deps(&env);
    let dt = delivery_topic(&env);
    let mut conn = env.conn.clone();
    let n = notification(&env, "erin", "comment", &[Channel::InApp]).await;
    let sent = outcome(&n, Channel::InApp, OutcomeStatus::Sent, None);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (response, stats) =
        analytics::count_batch(&deps, &event(&[rec(&dt, 0, 1, &sent.encode())])).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!((stats.counted, stats.history_added), (1, 1), "{stats:?}");

    let push = outcome(&n, Channel::Push, OutcomeStatus::Sent, None);
    let (response, stats) =
        analytics::count_batch(&deps, &event(&[rec(&dt, 0, 2, &push.encode())])).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!((stats.counted, stats.history_added), (1, 1), "{stats:?}");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(env.keys.notification_outcomes(&n.id))
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fields.len(),
        2,
        "one entry per channel × status: {fields:?}"
    );
}

/// A tenant's counters are its own: the same user id and type in tenant `acme` count in acme's
/// report and never in the default tenant's, and the other way round.
#[tokio::test]
async fn each_tenant_reads_only_its_own_counters() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = deps(&env);
    let dt = delivery_topic(&env);
    let n = notification(&env, "bob", "grade", &[Channel::InApp]).await;
    let default_sent = outcome(&n, Channel::InApp, OutcomeStatus::Sent, None);
    let mut acme_sent = outcome(&n, Channel::Push, OutcomeStatus::Sent, None);
    acme_sent.tenant =
        shared::tenant::Tenant::parse("acme").unwrap_or_else(|| panic!("a valid tenant"));
    let day = default_sent.at.date_naive().format("%Y-%m-%d").to_string();

    let batch = event(&[
        rec(&dt, 0, 1, &default_sent.encode()),
        rec(&dt, 0, 2, &acme_sent.encode()),
    ]);
    let (response, stats) = analytics::count_batch(&deps, &batch).await;
    assert_eq!(response, BatchResponse::default());
    assert_eq!(stats.counted, 2, "{stats:?}");

    let sent = |report: &Value, channel: &str| {
        report["totals"]["byChannel"][channel]["sent"]
            .as_u64()
            .unwrap_or(0)
    };
    let default_report = report(&env, &day).await;
    let r = Call::get("/v1/analytics")
        .user("analyst")
        .tenant("acme")
        .scope("analytics:read")
        .query("from", &day)
        .query("to", &day)
        .send(&env.api())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let acme_report = r.body;
    assert_eq!(
        (
            sent(&default_report, "IN_APP"),
            sent(&default_report, "PUSH")
        ),
        (1, 0),
        "the default tenant sees only its own: {default_report}"
    );
    assert_eq!(
        (sent(&acme_report, "IN_APP"), sent(&acme_report, "PUSH")),
        (0, 1),
        "acme sees only its own: {acme_report}"
    );
    assert_eq!(default_report["totals"]["uniqueRecipients"], 1);
    assert_eq!(acme_report["totals"]["uniqueRecipients"], 1);
}
