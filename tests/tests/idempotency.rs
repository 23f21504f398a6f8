//! `Idempotency-Key` across recipients and batches, through `api::handle` on real Redis: one key
//! names one request of one sender, claimed before anything is written; a different request with
//! the key writes nothing; a retry completes what an earlier attempt missed and answers as the
//! first time (`docs/architecture.md`, Idempotency).

use std::collections::BTreeSet;

use herald_tests::{Call, Reply, TestEnv};
use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::protocol::Topic;

fn single(user: &str, title: &str) -> Value {
    json!({"userId": user, "type": "order", "title": title, "body": "b"})
}

fn batch(users: &[&str], title: &str) -> Value {
    json!({"userIds": users, "type": "digest", "title": title, "body": "b"})
}

async fn post(deps: &api::Deps, path: &str, key: &str, body: &Value) -> Reply {
    Call::post(path)
        .service("svc")
        .header("Idempotency-Key", key)
        .json(body)
        .send(deps)
        .await
}

async fn total(deps: &api::Deps, user: &str) -> u64 {
    let r = Call::get("/v1/notifications/counts")
        .user(user)
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["total"].as_u64().unwrap_or(u64::MAX)
}

/// The user's notifications as a batch answer names them: `{id, seq, userId}`.
async fn inbox(deps: &api::Deps, user: &str) -> Vec<Value> {
    let r = Call::get("/v1/notifications")
        .user(user)
        .query("archived", "all")
        .send(deps)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| json!({"id": n["id"], "seq": n["seq"], "userId": n["userId"]}))
        .collect()
}

fn assert_refused(r: &Reply, why: &str) {
    assert_eq!(
        (r.status, r.error_fields()),
        (422, vec!["Idempotency-Key".to_owned()]),
        "{why}: {}",
        r.body
    );
}

#[tokio::test]
async fn one_key_names_one_request_whatever_its_recipients() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());

    let first = post(&deps, "/v1/notifications", "order-7", &single("alice", "x")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    // The same key and body for another recipient is another request: refused, nothing written.
    let other_user = post(&deps, "/v1/notifications", "order-7", &single("bob", "x")).await;
    assert_refused(&other_user, "another userId");
    let as_batch = post(
        &deps,
        "/v1/notifications/batch",
        "order-7",
        &batch(&["alice", "bob"], "x"),
    )
    .await;
    assert_refused(&as_batch, "the same key as a batch");
    assert_eq!(
        (total(&deps, "alice").await, total(&deps, "bob").await),
        (1, 0)
    );
    // The original request still replays.
    let again = post(&deps, "/v1/notifications", "order-7", &single("alice", "x")).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // A batch's key covers its recipient set: another set (or another body) writes nothing.
    let week = batch(&["dave", "erin"], "weekly");
    let b1 = post(&deps, "/v1/notifications/batch", "week-48", &week).await;
    assert_eq!(b1.status, 201, "{}", b1.body);
    assert_eq!(b1.header("idempotent-replayed"), None);
    let overlapping = post(
        &deps,
        "/v1/notifications/batch",
        "week-48",
        &batch(&["erin", "frank"], "weekly"),
    )
    .await;
    assert_refused(&overlapping, "another recipient set");
    let reworded = post(
        &deps,
        "/v1/notifications/batch",
        "week-48",
        &batch(&["dave", "erin"], "monthly"),
    )
    .await;
    assert_refused(&reworded, "another body");
    assert_eq!(
        (
            total(&deps, "dave").await,
            total(&deps, "erin").await,
            total(&deps, "frank").await
        ),
        (1, 1, 0),
        "the refused requests wrote nothing"
    );
    let b2 = post(&deps, "/v1/notifications/batch", "week-48", &week).await;
    assert_eq!(
        (b2.status, &b2.body),
        (201, &b1.body),
        "the original answer"
    );
    assert_eq!(b2.header("idempotent-replayed"), Some("true"));

    // The claim is the sender's, in the sender's own slot.
    let claim = env.keys.sender_idempotency("svc", "week-48");
    let stored: Option<String> = env
        .conn
        .clone()
        .get(&claim)
        .await
        .unwrap_or_else(|e| panic!("GET {claim}: {e}"));
    assert!(stored.is_some(), "{claim} holds the request's hash");
}

#[tokio::test]
async fn a_batch_that_failed_half_way_is_completed_by_its_retry_without_duplicates() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    let body = batch(&["alice", "bob", "carol"], "maintenance");

    // Bob's inbox cannot be written (its meta hash is a string): his create fails with a Redis
    // error after alice's and carol's committed.
    let broken = env.keys.user("bob").meta();
    let _: () = env
        .conn
        .clone()
        .set(&broken, "not a hash")
        .await
        .unwrap_or_else(|e| panic!("SET {broken}: {e}"));
    let failed = post(&deps, "/v1/notifications/batch", "maint-1", &body).await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    let written_before = [inbox(&deps, "alice").await, inbox(&deps, "carol").await];
    assert_eq!(
        written_before.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 1],
        "the failure came half-way: the others were written"
    );
    // ... and published, failure or not.
    let published: Vec<String> = env
        .consume(Topic::NotificationEvents, 2)
        .await
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        published
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["alice", "carol"]),
        "{published:?}"
    );

    // Repaired, the retry with the same key and body completes bob and replays the others.
    let _: () = env
        .conn
        .clone()
        .del(&broken)
        .await
        .unwrap_or_else(|e| panic!("DEL {broken}: {e}"));
    let completed = post(&deps, "/v1/notifications/batch", "maint-1", &body).await;
    assert_eq!(completed.status, 201, "{}", completed.body);
    assert_eq!(
        completed.header("idempotent-replayed"),
        None,
        "bob was created now"
    );
    let expected: Vec<Value> = [
        written_before[0][0].clone(),
        inbox(&deps, "bob").await[0].clone(),
        written_before[1][0].clone(),
    ]
    .into();
    assert_eq!(
        completed.body,
        json!({"items": expected}),
        "every recipient, compact, with the ids and seqs first created"
    );
    for user in ["alice", "bob", "carol"] {
        assert_eq!(total(&deps, user).await, 1, "{user}: no duplicate");
    }

    // Once more: nothing left to create, the same answer, marked as a replay.
    let replay = post(&deps, "/v1/notifications/batch", "maint-1", &body).await;
    assert_eq!((replay.status, &replay.body), (201, &completed.body));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    // And the key still names only this request.
    let other = post(
        &deps,
        "/v1/notifications/batch",
        "maint-1",
        &batch(&["alice", "dave"], "maintenance"),
    )
    .await;
    assert_refused(&other, "another recipient set after the retry");
    assert_eq!(total(&deps, "dave").await, 0);
}

/// A limit of `burst` that refills one request a day, so no refill lands within the test.
fn never_refilling(burst: u32) -> shared::config::RateLimit {
    shared::config::RateLimit {
        burst,
        per_period: 1,
        period: std::time::Duration::from_secs(24 * 3600),
    }
}

#[tokio::test]
async fn a_retry_replays_recipients_served_before_whatever_their_rate_limit_now() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox_settings = shared::config::InboxSettings {
        per_recipient: never_refilling(1),
        ..TestEnv::unlimited()
    };
    let deps = env.api_with(inbox_settings, env.bus());
    let body = batch(&["gina", "hal"], "once");
    let first = post(&deps, "/v1/notifications/batch", "once-1", &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    // Both recipients have used their one create: a retry must still answer them.
    let retry = post(&deps, "/v1/notifications/batch", "once-1", &body).await;
    assert_eq!((retry.status, &retry.body), (201, &first.body));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let single_first = post(&deps, "/v1/notifications", "once-2", &single("ivy", "x")).await;
    assert_eq!(single_first.status, 201, "{}", single_first.body);
    let single_retry = post(&deps, "/v1/notifications", "once-2", &single("ivy", "x")).await;
    assert_eq!(
        (single_retry.status, &single_retry.body),
        (201, &single_first.body)
    );
}

#[tokio::test]
async fn a_sender_over_its_limit_gets_429_and_claims_no_key() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox_settings = shared::config::InboxSettings {
        per_sender: never_refilling(1),
        ..TestEnv::unlimited()
    };
    let deps = env.api_with(inbox_settings, env.bus());
    let first = post(&deps, "/v1/notifications", "spent-1", &single("kim", "a")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let limited = post(&deps, "/v1/notifications", "spent-2", &single("kim", "b")).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").is_some());
    let claim = env.keys.sender_idempotency("svc", "spent-2");
    let stored: Option<String> = env
        .conn
        .clone()
        .get(&claim)
        .await
        .unwrap_or_else(|e| panic!("GET {claim}: {e}"));
    assert_eq!(stored, None, "a refused request claims nothing");
    let kim = Call::get("/v1/notifications/counts")
        .user("kim")
        .send(&deps)
        .await;
    assert_eq!(kim.body["total"], 1, "{}", kim.body);
}
