//! Escalation when unread (issue 14), against real Redis, a real Kafka-protocol broker and a
//! real SMTP server: the api, push and ws functions in process ([`Workflow`]). A step's timer is
//! the push function's retry schedule; the tests drain it at the instant they name, never wait
//! for it.

use chrono::{DateTime, Duration, Utc};
use herald_tests::workflow::{user, Workflow};
use serde_json::{json, Value};
use shared::protocol::Envelope;

/// Creates a notification for `who` with these escalation steps and hands the push function its
/// `notification.created` (as `delivery` routes it). Returns its id, its envelope and when it was
/// created.
async fn escalating(w: &Workflow, who: &str, steps: Value) -> (String, Envelope, DateTime<Utc>) {
    let r = w
        .create(who, json!({"title": "Deploy failed", "escalate": steps}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["escalate"].as_array().map(Vec::len),
        steps.as_array().map(Vec::len),
        "the notification carries its steps: {}",
        r.body
    );
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    let created = w.changes(who, 0).await.remove(0);
    let at = created.occurred_at;
    let stats = w.push_batch(&[&created]).await;
    assert_eq!(
        stats.sent, 0,
        "IN_APP only: nothing is sent before a step is due"
    );
    (id, created, at)
}

fn statuses(deliveries: &Value) -> Vec<(u64, String, String)> {
    deliveries["escalation"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["step"].as_u64().unwrap_or_default(),
                        s["status"].as_str().unwrap_or_default().to_owned(),
                        s["reason"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn step(n: u64, status: &str, reason: &str) -> (u64, String, String) {
    (n, status.into(), reason.into())
}

#[tokio::test]
async fn an_unread_notification_escalates_to_email_once_per_step_with_reason_escalated() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let alice = user("alice");
    w.email(&alice).await;
    let steps = json!([
        {"after": "15m", "channels": ["EMAIL"]},
        {"after": "2h", "unless": "seen", "channels": ["EMAIL", "SMS"]}
    ]);
    let (id, _, created) = escalating(&w, &alice, steps).await;
    assert_eq!(
        statuses(&w.deliveries(&alice, &id).await),
        [step(1, "pending", ""), step(2, "pending", "")]
    );

    // Nothing is due before 15 minutes.
    w.drain_at(created + Duration::minutes(14)).await;
    assert!(w.sink.messages().is_empty());

    let drained = w
        .drain_at(created + Duration::minutes(15) + Duration::seconds(1))
        .await;
    assert_eq!(drained.sent, 1, "{drained:?}");
    let messages = w.sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["rcptTos"],
        json!([format!("{alice}@example.com")])
    );
    assert_eq!(messages[0]["subject"], "Deploy failed");
    let report = w.deliveries(&alice, &id).await;
    assert_eq!(
        statuses(&report),
        [step(1, "fired", ""), step(2, "pending", "")]
    );
    assert!(report["escalation"][0]["decidedAt"].is_string(), "{report}");
    assert_eq!(report["escalation"][1]["unless"], "seen");

    // Step 2: EMAIL sent, SMS suppressed (no SMS provider here), both say why.
    w.drain_at(created + Duration::hours(2) + Duration::seconds(1))
        .await;
    assert_eq!(w.sink.messages().len(), 2);
    let escalated = (
        "EMAIL".to_owned(),
        "sent".to_owned(),
        "escalated".to_owned(),
    );
    assert_eq!(
        w.outcomes(3).await,
        [
            escalated.clone(),
            escalated,
            ("SMS".into(), "suppressed".into(), "not-configured".into())
        ]
    );
    assert_eq!(
        statuses(&w.deliveries(&alice, &id).await),
        [step(1, "fired", ""), step(2, "fired", "")]
    );
}

#[tokio::test]
async fn a_step_never_fires_twice_under_redelivery_and_concurrent_drains() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let bob = user("bob");
    w.email(&bob).await;
    let (_, created, at) =
        escalating(&w, &bob, json!([{"after": "1s", "channels": ["EMAIL"]}])).await;
    let due = at + Duration::seconds(2);

    // Two drains at once: the retry schedule's lease gives the timer to one of them.
    let (a, b) = tokio::join!(w.drain_at(due), w.drain_at(due));
    assert_eq!(a.sent + b.sent, 1, "{a:?} {b:?}");
    assert_eq!(w.sink.messages().len(), 1);

    // The create redelivered (Kafka at-least-once): the step is planned again, its timer comes
    // due again, and the step, already fired, sends nothing.
    w.push_batch(&[&created]).await;
    w.push_batch(&[&created]).await;
    let (a, b) = tokio::join!(w.drain_at(due), w.drain_at(due));
    assert_eq!(a.sent + b.sent, 0, "{a:?} {b:?}");
    assert!(a.redelivered + b.redelivered >= 1, "{a:?} {b:?}");
    assert_eq!(w.sink.messages().len(), 1, "never a second email");
    assert_eq!(w.outcomes(1).await.len(), 1, "never a second outcome");
}

#[tokio::test]
async fn a_read_on_another_device_cancels_the_pending_steps_before_they_fire() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let carol = user("carol");
    w.email(&carol).await;
    let (id, _, created) = escalating(
        &w,
        &carol,
        json!([{"after": "15m", "channels": ["EMAIL"]}, {"after": "1h", "channels": ["EMAIL"]}]),
    )
    .await;

    // Carol reads it on her phone, over the WebSocket.
    w.connect(&carol, "CarolPhone001A=").await;
    let replies = w
        .ws_send("CarolPhone001A=", json!({"action": "markRead", "id": id}))
        .await;
    assert!(
        replies.iter().all(|r| r["type"] != "error"),
        "markRead: {replies:?}"
    );
    // Marking it unread again does not bring the steps back: a read is a read.
    let r = herald_tests::Call::patch(&format!("/v1/notifications/{id}"))
        .user(&carol)
        .json(&json!({"read": false}))
        .send(&w.api)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Shown cancelled at once; recorded as such when the timers come due.
    let report = w.deliveries(&carol, &id).await;
    assert_eq!(
        statuses(&report),
        [step(1, "cancelled", "read"), step(2, "cancelled", "read")]
    );
    assert!(
        report["escalation"][0].get("decidedAt").is_none(),
        "{report}"
    );
    let drained = w.drain_at(created + Duration::hours(2)).await;
    assert_eq!(drained.sent, 0, "{drained:?}");
    assert!(w.sink.messages().is_empty(), "no escalation after a read");
    let report = w.deliveries(&carol, &id).await;
    assert_eq!(
        statuses(&report),
        [step(1, "cancelled", "read"), step(2, "cancelled", "read")]
    );
    assert!(report["escalation"][0]["decidedAt"].is_string(), "{report}");
}

#[tokio::test]
async fn mark_all_read_archive_and_delete_cancel_too() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let dave = user("dave");
    w.email(&dave).await;
    let steps = json!([{"after": "10m", "unless": "seen", "channels": ["EMAIL"]}]);
    let (all_read, _, at) = escalating(&w, &dave, steps.clone()).await;
    let r = herald_tests::Call::post("/v1/notifications/mark-all-read")
        .user(&dave)
        .send(&w.api)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let erin = user("erin");
    w.email(&erin).await;
    let (archived, _, _) = escalating(&w, &erin, steps.clone()).await;
    let r = herald_tests::Call::patch(&format!("/v1/notifications/{archived}"))
        .user(&erin)
        .json(&json!({"archived": true}))
        .send(&w.api)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let frank = user("frank");
    w.email(&frank).await;
    let (deleted, _, _) = escalating(&w, &frank, steps).await;
    let r = herald_tests::Call::delete(&format!("/v1/notifications/{deleted}"))
        .user(&frank)
        .send(&w.api)
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.body);

    w.drain_at(at + Duration::hours(1)).await;
    assert!(w.sink.messages().is_empty(), "nothing escalated");
    assert_eq!(
        statuses(&w.deliveries(&dave, &all_read).await),
        [step(1, "cancelled", "seen")]
    );
    assert_eq!(
        statuses(&w.deliveries(&erin, &archived).await),
        [step(1, "cancelled", "archived")]
    );
}

#[tokio::test]
async fn bad_escalation_and_digest_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let Some(w) = Workflow::new().await else {
        return;
    };
    let gina = user("gina");
    let ok = json!({"after": "15m", "channels": ["EMAIL"]});
    for (fields, field) in [
        (json!({"escalate": [ok, ok, ok, ok]}), "escalate"),
        (
            json!({"escalate": [{"after": "15 minutes", "channels": ["EMAIL"]}]}),
            "escalate[0].after",
        ),
        (
            json!({"escalate": [{"after": "8d", "channels": ["EMAIL"]}]}),
            "escalate[0].after",
        ),
        (
            json!({"escalate": [ok, {"after": "1h", "channels": ["EMAIL", "FAX"]}]}),
            "escalate[1].channels[1]",
        ),
        (
            json!({"escalate": [{"after": "1h", "channels": ["IN_APP"]}]}),
            "escalate[0].channels[0]",
        ),
        (
            json!({"escalate": [{"after": "1h", "channels": []}]}),
            "escalate[0].channels",
        ),
        (
            json!({"digest": {"key": "k", "window": "5s"}}),
            "digest.window",
        ),
        (
            json!({"digest": {"key": "k", "window": "25h"}}),
            "digest.window",
        ),
        (json!({"digest": {"key": "", "window": "1m"}}), "digest.key"),
    ] {
        let r = w.create(&gina, fields.clone()).await;
        assert_eq!(r.status, 422, "{fields}: {}", r.body);
        assert_eq!(r.content_type(), "application/problem+json");
        assert_eq!(r.error_fields(), [field], "{fields}: {}", r.body);
    }
    let counts = herald_tests::Call::get("/v1/notifications/counts")
        .user(&gina)
        .send(&w.api)
        .await;
    assert_eq!(counts.body["total"], 0, "nothing stored: {}", counts.body);
    assert!(w.changes(&gina, 0).await.is_empty());
}

/// Through devstack (template wiring, the delivery function's routing to `push-notifications`, the
/// Kafka triggers): a notification asking only for IN_APP, with a step an hour away, reaches
/// `push`, which plans the step. Polled with a generous deadline; nothing is timed.
#[tokio::test]
async fn through_devstack_an_in_app_notification_with_steps_reaches_push_and_is_planned() {
    let Some(stack) = herald_tests::stack::shared_stack() else {
        return;
    };
    let harry = user("harry");
    let created = stack
        .create_with(
            &harry,
            json!({"title": "Review requested", "body": "",
                   "escalate": [{"after": "1h", "channels": ["EMAIL"]}]}),
        )
        .await;
    let id = created["id"].as_str().unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let report = stack
            .get(&harry, &format!("/v1/notifications/{id}/deliveries"))
            .await;
        if statuses(&report) == [step(1, "pending", "")] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the step was never planned: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
