//! Email failover end to end, through devstack (the real template, functions, gateways and
//! Kafka trigger): `EMAIL_PROVIDERS=ses,smtp`, SES pointed at a local SES fake answering 503
//! (`tests/src/provider.rs`), SMTP at a real SMTP server (`tests/src/smtp_sink.rs`).
//!
//! - a notification's email reaches SMTP once after SES stayed unavailable through its retries;
//! - the same push record delivered again (as Kafka redelivers it) asks neither provider again:
//!   the send ledger holds the whole chain at most once per (notification, channel).
//!
//! Nothing here times the machine: each wait ends on a condition, with a generous deadline.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::eventually;
use herald_tests::provider::{ses, Provider};
use herald_tests::smtp_sink::SmtpSink;
use herald_tests::stack::{http_client, Stack};
use serde_json::{json, Value};

/// Long enough for any machine; conditions end the waits, not this.
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_devstack_email_fails_over_from_an_unavailable_ses_to_smtp_once() {
    if let Some(why) = herald_tests::stack::missing() {
        herald_tests::skip(&why);
        return;
    }
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let ses_api = Provider::start().await;
    ses_api.always(
        ses::SEND_EMAIL,
        ses::error(503, "ServiceUnavailable", "Service unavailable."),
    );
    let stack = Stack::start(&[
        ("EMAIL_PROVIDERS", "ses,smtp"),
        ("SES_ENDPOINT", ses_api.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDHERALDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "eu-west-1"),
        ("SMTP_URL", sink.url.as_str()),
        ("EMAIL_FROM", "Herald <notify@herald.test>"),
    ]);
    let user = format!("fo{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let service = stack.token("e2e-service", &["notifications:write"], DEADLINE);
    let response = http_client()
        .put(stack.http_url(&format!("/v1/users/{user}/contacts")))
        .bearer_auth(&service)
        .json(&json!({"email": format!("{user}@example.com")}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT contacts: {e}"));
    assert_eq!(response.status().as_u16(), 200);

    let n = stack
        .create_with(
            &user,
            json!({"title": "Invoice paid", "body": "b", "channels": ["IN_APP", "EMAIL"]}),
        )
        .await;
    let ses_calls = || ses_api.received(ses::SEND_EMAIL).len();
    assert!(
        eventually(DEADLINE, || async { sink.messages().len() == 1 }).await,
        "SMTP took the email after SES"
    );
    // SES first, with its bounded retries (the count is the policy's, not this test's concern).
    let tried = ses_calls();
    assert!(tried >= 1, "SES was tried first");
    let outcomes = eventually(DEADLINE, || async {
        let deliveries = stack
            .get(
                &user,
                &format!(
                    "/v1/notifications/{}/deliveries",
                    n["id"].as_str().unwrap_or_default()
                ),
            )
            .await;
        deliveries.to_string().contains("\"smtp\"")
    })
    .await;
    assert!(
        outcomes,
        "the EMAIL outcome names the provider that sent it"
    );

    // The same push record again, twice, as Kafka redelivers it: neither provider is asked again.
    let seq = n["seq"].as_u64().unwrap_or_default();
    let changes = stack
        .get(&user, &format!("/v1/changes?since={}", seq - 1))
        .await;
    let envelope: &Value = &changes["changes"][0];
    assert_eq!(envelope["seq"], n["seq"]);
    let event = json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": stack.kafka_brokers,
        "records": {"push-notifications-0": [{
            "topic": "push-notifications", "partition": 0, "offset": 0,
            "timestamp": 0, "timestampType": "CREATE_TIME",
            "key": STANDARD.encode(&user),
            "value": STANDARD.encode(envelope.to_string()),
            "headers": []
        }]}
    });
    for _ in 0..2 {
        let response = stack.invoke("push", &event).await;
        assert_eq!(response, json!({"batchItemFailures": []}));
    }
    assert_eq!(
        (ses_calls(), sink.messages().len()),
        (tried, 1),
        "a redelivered record runs no part of the chain again"
    );
}
