//! Digests (issue 14), against real Redis, a real Kafka-protocol broker and a real SMTP server:
//! the api and push functions in process ([`Workflow`]). The window's close is the push
//! function's retry schedule; the tests drain it at the instant they name, never wait for it.

use chrono::Duration;
use futures::future::join_all;
use herald_tests::workflow::{user, Workflow};
use herald_tests::Call;
use serde_json::{json, Value};
use shared::protocol::Event;

async fn inbox(w: &Workflow, who: &str) -> Vec<Value> {
    let r = Call::get("/v1/notifications").user(who).send(&w.api).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

async fn counts(w: &Workflow, who: &str) -> Value {
    let r = Call::get("/v1/notifications/counts")
        .user(who)
        .send(&w.api)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn event(i: usize, window: &str) -> Value {
    json!({"title": format!("Comment {i}"), "body": format!("text {i}"), "data": {"i": i},
           "channels": ["IN_APP", "EMAIL"], "digest": {"key": "post-42", "window": window}})
}

#[tokio::test]
async fn fifty_events_are_one_item_with_count_50_one_unread_and_one_email() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let alice = user("alice");
    w.email(&alice).await;
    let mut ids = Vec::new();
    for i in 1..=50 {
        let r = w.create(&alice, event(i, "1h")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "every event went to one item"
    );

    let items = inbox(&w, &alice).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let digest = &items[0]["digest"];
    assert_eq!(digest["count"], 50);
    assert_eq!(digest["key"], "post-42");
    let kept: Vec<&str> = digest["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["title"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kept,
        [
            "Comment 46",
            "Comment 47",
            "Comment 48",
            "Comment 49",
            "Comment 50"
        ]
    );
    assert_eq!(digest["items"][4]["data"], json!({"i": 50}));
    assert!(digest["firstAt"].as_str() <= digest["lastAt"].as_str());
    let c = counts(&w, &alice).await;
    assert_eq!(
        (c["unread"].as_u64(), c["total"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );

    // One created change, then 49 updates, each with its own seq (what the frames carry).
    let changes = w.changes(&alice, 0).await;
    assert_eq!(changes.len(), 50);
    let seqs: Vec<u64> = changes.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    assert!(matches!(
        changes[0].event,
        Event::NotificationCreated { .. }
    ));
    match &changes[49].event {
        Event::NotificationUpdated { id, digest, .. } => {
            assert_eq!(id, &ids[0]);
            assert_eq!(digest.as_ref().map(|d| d.count), Some(50));
        }
        other => panic!("expected an update, got {other:?}"),
    }

    // Off-app: nothing before the window closes, then one email with the count and the events.
    let created = changes[0].clone();
    assert_eq!(w.push_batch(&[&created]).await.sent, 0);
    let opened = created.occurred_at;
    w.drain_at(opened + Duration::minutes(59)).await;
    assert!(w.sink.messages().is_empty(), "nothing before the close");
    let closed = w
        .drain_at(opened + Duration::hours(1) + Duration::seconds(1))
        .await;
    assert_eq!(closed.sent, 1, "{closed:?}");
    let messages = w.sink.messages();
    assert_eq!(messages.len(), 1);
    let text = messages[0].to_string();
    assert!(
        text.contains("50 updates") && text.contains("Comment 50: text 50"),
        "{text}"
    );

    // A redelivered create and a second drain send nothing again.
    w.push_batch(&[&created]).await;
    w.drain_at(opened + Duration::hours(2)).await;
    assert_eq!(w.sink.messages().len(), 1, "one email, ever");
}

#[tokio::test]
async fn concurrent_events_all_land_in_one_item_each_counted_once() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let bob = user("bob");
    let replies = join_all((1..=20).map(|i| w.create(&bob, event(i, "10m")))).await;
    assert!(replies.iter().all(|r| r.status == 201), "{replies:?}");
    let items = inbox(&w, &bob).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["digest"]["count"], 20);
    assert_eq!(counts(&w, &bob).await["unread"], 1);
    assert_eq!(w.changes(&bob, 0).await.len(), 20);
}

#[tokio::test]
async fn a_read_then_a_new_event_opens_a_new_item() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let carol = user("carol");
    let first = w.create(&carol, event(1, "1h")).await.body;
    w.create(&carol, event(2, "1h")).await;
    let r = Call::patch(&format!(
        "/v1/notifications/{}",
        first["id"].as_str().unwrap_or_default()
    ))
    .user(&carol)
    .json(&json!({"read": true}))
    .send(&w.api)
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let second = w.create(&carol, event(3, "1h")).await.body;
    assert_ne!(second["id"], first["id"], "a read item collects no more");
    assert_eq!(second["digest"]["count"], 1);
    let items = inbox(&w, &carol).await;
    assert_eq!(items.len(), 2);
    let counts_by_id: Vec<(bool, u64)> = items
        .iter()
        .map(|n| {
            (
                n["read"].as_bool().unwrap_or_default(),
                n["digest"]["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        counts_by_id,
        [(false, 1), (true, 2)],
        "newest first; the read one kept its 2"
    );
    let c = counts(&w, &carol).await;
    assert_eq!(
        (c["unread"].as_u64(), c["total"].as_u64()),
        (Some(1), Some(2)),
        "{c}"
    );
}

#[tokio::test]
async fn urgent_bypasses_the_digest_and_sends_at_once() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let dave = user("dave");
    w.email(&dave).await;
    for i in 1..=2 {
        let mut body = event(i, "1h");
        body["priority"] = json!("urgent");
        let r = w.create(&dave, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.body.get("digest").is_none(), "{}", r.body);
    }
    assert_eq!(inbox(&w, &dave).await.len(), 2);
    assert_eq!(counts(&w, &dave).await["unread"], 2);
    let changes = w.changes(&dave, 0).await;
    let stats = w.push_batch(&changes.iter().collect::<Vec<_>>()).await;
    assert_eq!(stats.sent, 2, "{stats:?}");
    assert_eq!(w.sink.messages().len(), 2);
}

#[tokio::test]
async fn quiet_hours_defer_the_close_and_the_item_is_sent_once_after_them() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let erin = user("erin");
    w.email(&erin).await;
    for i in 1..=3 {
        assert_eq!(w.create(&erin, event(i, "1h")).await.status, 201);
    }
    let created = w.changes(&erin, 0).await.remove(0);
    let closes = created.occurred_at + Duration::hours(1);
    // Quiet from the hour the window closes in, for two hours (UTC).
    let start = chrono::Timelike::hour(&closes);
    let r = Call::put("/v1/preferences")
        .user(&erin)
        .json(&json!({"quietHours": {"start": format!("{start:02}:00"),
                      "end": format!("{:02}:00", (start + 2) % 24), "timezone": "UTC"}}))
        .send(&w.api)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    w.push_batch(&[&created]).await;
    let at_close = w.drain_at(closes + Duration::seconds(1)).await;
    assert_eq!((at_close.sent, at_close.deferred), (0, 1), "{at_close:?}");
    assert!(w.sink.messages().is_empty(), "deferred by quiet hours");
    let after = w.drain_at(closes + Duration::hours(3)).await;
    assert_eq!(after.sent, 1, "{after:?}");
    let messages = w.sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].to_string().contains("3 updates:"),
        "{}",
        messages[0]
    );
    assert_eq!(
        w.outcomes(2).await,
        [
            ("EMAIL".into(), "deferred".into(), "quiet-hours".into()),
            ("EMAIL".into(), "sent".into(), String::new())
        ]
    );
}

/// Through devstack: every event after the first reaches the user's socket as a
/// `notification.updated` frame with its own `seq` and the item's new `digest`, and the counts
/// stay at one unread.
#[tokio::test]
async fn through_devstack_each_digest_event_is_a_notification_updated_frame() {
    let Some(stack) = herald_tests::stack::shared_stack() else {
        return;
    };
    let wait = std::time::Duration::from_secs(30);
    let ivy = user("ivy");
    let mut phone = stack.connect(&ivy).await;
    let first = stack.create_with(&ivy, event(1, "1h")).await;
    let created = phone
        .next_of("notification.created", wait)
        .await
        .unwrap_or_else(|| panic!("no notification.created"));
    assert_eq!(created["notification"]["digest"]["count"], 1);
    for i in 2..=3 {
        let again = stack.create_with(&ivy, event(i, "1h")).await;
        assert_eq!(again["id"], first["id"]);
        let updated = phone
            .next_of("notification.updated", wait)
            .await
            .unwrap_or_else(|| panic!("no notification.updated for event {i}"));
        assert_eq!(updated["id"], first["id"]);
        assert_eq!(updated["seq"].as_u64(), Some(i as u64), "{updated}");
        assert_eq!(
            updated["digest"]["count"].as_u64(),
            Some(i as u64),
            "{updated}"
        );
        assert_eq!(updated["changes"], json!({}));
        assert_eq!(updated["counts"]["unread"], 1);
    }
}

#[tokio::test]
async fn a_retried_event_with_its_idempotency_key_is_counted_once() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let judy = user("judy");
    w.create(&judy, event(1, "1h")).await;
    let call = Call::post("/v1/notifications")
        .service("svc")
        .header("Idempotency-Key", "event-2")
        .json(
            &json!({"userId": judy, "type": "comment", "title": "Comment 2", "body": "",
                      "digest": {"key": "post-42", "window": "1h"}}),
        );
    let first = call.send(&w.api).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["digest"]["count"], 2);
    let again = call.send(&w.api).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    let items = inbox(&w, &judy).await;
    assert_eq!(items[0]["digest"]["count"], 2, "{items:?}");
    assert_eq!(w.changes(&judy, 0).await.len(), 2);
}
