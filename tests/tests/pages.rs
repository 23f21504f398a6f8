//! Answers that fit in Lambda, through `api::handle` on real Redis: a batch create answers
//! `{id, seq, userId}` per recipient whatever the notification's size; `GET /v1/notifications` and
//! `GET /v1/changes` stop at `limits::PAGE_MAX_BYTES` as well as at their count, however
//! quote-heavy the notifications, and paging on from the cursor returns every item exactly once.

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt};
use herald_tests::{Call, Reply, TestEnv};
use serde_json::{json, Value};
use shared::limits::{LIST_MAX_LIMIT, NOTIFICATION_MAX_BYTES, PAGE_MAX_BYTES};

/// How many notifications the inbox holds: a full page of the largest size (100) would be over
/// Lambda's 6 MB once escaped.
const COUNT: usize = LIST_MAX_LIMIT;

/// A notification just under the size limit whose `data` is all quotes, each stored as `\"`.
fn quote_heavy(user: &str, i: usize) -> Value {
    json!({"userId": user, "type": "quotes", "title": format!("q{i}"), "body": "",
           "data": {"q": "\"".repeat(NOTIFICATION_MAX_BYTES / 2 - 512)}})
}

/// Lambda's answer for this reply as API Gateway's integration carries it: the body is a JSON
/// string inside the function's JSON, so every `"` and `\` of the page is escaped once more.
fn lambda_answer_bytes(r: &Reply) -> usize {
    let body = String::from_utf8_lossy(&r.raw).into_owned();
    json!({"statusCode": r.status, "headers": {"content-type": "application/json"}, "body": body})
        .to_string()
        .len()
}

/// Every page is cut by bytes, not count, and its Lambda answer stays well under 6 MB.
fn assert_bounded(r: &Reply, items: usize, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert!(items >= 1, "{what}: a page holds at least one item");
    assert!(
        r.raw.len() <= PAGE_MAX_BYTES + 16 * 1024,
        "{what}: a page of {} bytes passed the budget of {PAGE_MAX_BYTES}",
        r.raw.len()
    );
    let answer = lambda_answer_bytes(r);
    assert!(
        answer < 3 * 1024 * 1024,
        "{what}: the Lambda answer is {answer} bytes"
    );
}

#[tokio::test]
async fn list_and_changes_pages_stop_at_their_byte_budget_and_page_through_every_item_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    let deps = &deps;
    let created: Vec<Value> = stream::iter(0..COUNT)
        .map(|i| async move {
            let r = Call::post("/v1/notifications")
                .service("svc")
                .json(&quote_heavy("quinn", i))
                .send(deps)
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].clone()
        })
        .buffered(8)
        .collect()
        .await;
    let created: BTreeSet<String> = created
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    assert_eq!(created.len(), COUNT);

    // The inbox, newest first, from the cursor of each page.
    let (mut listed, mut seqs, mut pages) = (Vec::new(), Vec::new(), 0);
    let mut cursor: Option<String> = None;
    loop {
        let mut call = Call::get("/v1/notifications")
            .user("quinn")
            .query("limit", &LIST_MAX_LIMIT.to_string());
        if let Some(c) = &cursor {
            call = call.query("cursor", c);
        }
        let page = call.send(deps).await;
        let items = page.body["items"].as_array().cloned().unwrap_or_default();
        pages += 1;
        assert_bounded(&page, items.len(), &format!("list page {pages}"));
        listed.extend(
            items
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_owned)),
        );
        seqs.extend(items.iter().filter_map(|n| n["seq"].as_u64()));
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        pages >= 3,
        "{COUNT} notifications of ~32 KB fit in {pages} pages"
    );
    assert_eq!(listed.len(), COUNT, "no notification repeated or skipped");
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), created);
    assert_eq!(seqs, (1..=COUNT as u64).rev().collect::<Vec<_>>());

    // The change feed, oldest first, from each page's `upTo`.
    let (mut changed, mut pages, mut since) = (Vec::new(), 0, 0u64);
    loop {
        let page = Call::get("/v1/changes")
            .user("quinn")
            .query("since", &since.to_string())
            .query("limit", "1000")
            .send(deps)
            .await;
        let changes = page.body["changes"].as_array().cloned().unwrap_or_default();
        pages += 1;
        assert_bounded(&page, changes.len(), &format!("changes page {pages}"));
        changed.extend(changes.iter().filter_map(|c| c["seq"].as_u64()));
        since = page.body["upTo"].as_u64().unwrap_or(u64::MAX);
        assert_eq!(
            Some(&since),
            changed.last(),
            "upTo is the last change returned"
        );
        if page.body["hasMore"] != json!(true) {
            break;
        }
    }
    assert!(pages >= 3, "{COUNT} changes of ~32 KB fit in {pages} pages");
    assert_eq!(changed, (1..=COUNT as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_of_large_notifications_answers_compactly_and_its_replay_too() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let deps = env.api_with(TestEnv::unlimited(), env.bus());
    // 200 recipients of a ~30 KB notification: about 6 MB if the answer held the notifications.
    let users: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    let mut body = quote_heavy("", 0);
    body.as_object_mut().map(|b| b.remove("userId"));
    body["userIds"] = json!(users);
    let send = || {
        Call::post("/v1/notifications/batch")
            .service("svc")
            .header("Idempotency-Key", "big-1")
            .json(&body)
    };
    let first = send().send(&deps).await;
    let replay = send().send(&deps).await;
    for (r, what) in [(&first, "first"), (&replay, "replay")] {
        assert_eq!(r.status, 201, "{what}: {}", r.body);
        assert!(
            r.raw.len() < 64 * 1024,
            "{what}: a batch answer of {} bytes",
            r.raw.len()
        );
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), users.len(), "{what}");
        for (item, user) in items.iter().zip(&users) {
            let keys: BTreeSet<&str> = item
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                keys,
                BTreeSet::from(["id", "seq", "userId"]),
                "{what}: {item}"
            );
            assert_eq!(
                (item["userId"].as_str(), item["seq"].as_u64()),
                (Some(user.as_str()), Some(1))
            );
        }
    }
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
}
