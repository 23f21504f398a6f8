//! The APNs adapter's own rules beyond the conformance suite, against the HTTP/2-over-TLS APNs
//! fake (`tests/src/apns.rs`, which verifies each provider token's ES256 signature with the
//! key's public half): one provider token reused across sends and signed anew once APNs calls it
//! expired; a key APNs does not know refused; the headers (push type, topic, priority,
//! collapse id, expiration) and payload of an alert; the silent background badge update; an
//! alert over 4 KB trimmed once and never sent whole; each of Apple's answers in the contract;
//! the push function building the adapter from its settings.

use std::time::Duration;

use herald_tests::apns::{self, ApnsFake};
use push::senders::apns::{Apns, ApnsMessage, APNS_PAYLOAD_MAX_BYTES};
use push::senders::{Adapter, Delivery, Outcome, SendPolicy};
use serde_json::json;
use shared::config::{Env, SenderSettings};
use shared::model::Notification;
use shared::protocol::outcome::reason;

fn notification(body: &str, priority: &str) -> Notification {
    serde_json::from_value(json!({
        "id": "0193a0c4-7c1e-7000-8000-00000000a9a5", "seq": 1, "userId": "ada", "type": "comment",
        "title": "Hello", "body": body, "data": {"postId": 42}, "actionUrl": "https://app.example/p/42",
        "groupKey": "post-42", "channels": ["PUSH"], "priority": priority,
        "read": false, "seen": false, "archived": false, "createdAt": chrono::Utc::now()
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn adapter(fake: &ApnsFake) -> Apns {
    Apns::new(&fake.settings(), Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"))
}

fn policy() -> SendPolicy {
    let env = Env::from_pairs([("PUSH_RETRY_BACKOFF_MS", "1")]);
    SendPolicy::new(
        SenderSettings::from_env(&env)
            .unwrap_or_else(|e| panic!("{e}"))
            .send,
    )
}

#[tokio::test]
async fn one_provider_token_serves_every_send_until_apns_calls_it_expired() {
    let fake = ApnsFake::start().await;
    let apns = adapter(&fake);
    let device = apns::device_token(1);
    let message = ApnsMessage::of(&notification("b", "normal"), 1, Duration::from_secs(60));
    for _ in 0..3 {
        assert_eq!(apns.send(&device, &message).await, Outcome::Sent);
    }
    let tokens = fake.provider_tokens(&device);
    assert_eq!(tokens.len(), 3);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "reused");
    // A new token's `iat` is a later second than the first's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.expire_tokens_seen();
    let refused = apns.send(&device, &message).await;
    assert!(
        matches!(&refused, Outcome::Rejected { reason, detail }
            if *reason == reason::PROVIDER_4XX && detail.to_string().contains("ExpiredProviderToken")),
        "{refused:?}"
    );
    // Dropped on that answer: the next send signs a new one, which the one after reuses.
    assert_eq!(apns.send(&device, &message).await, Outcome::Sent);
    assert_eq!(apns.send(&device, &message).await, Outcome::Sent);
    let tokens = fake.provider_tokens(&device);
    assert_eq!(tokens.len(), 6);
    assert_ne!(tokens[4], tokens[0], "signed anew");
    assert_eq!(tokens[5], tokens[4]);
}

#[tokio::test]
async fn a_provider_token_apns_cannot_verify_is_refused() {
    let fake = ApnsFake::start().await;
    let device = apns::device_token(2);
    let message = ApnsMessage::of(&notification("b", "normal"), 1, Duration::from_secs(60));
    // Another .p8 key (a revoked or forged one), and the right key under another team.
    let forged = Apns::new(
        &fake.settings_with_key(&apns::new_key()),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut other_team = fake.settings();
    other_team.team_id = "OTHERTEAM1".into();
    let other_team =
        Apns::new(&other_team, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    for apns in [&forged, &other_team] {
        let outcome = apns.send(&device, &message).await;
        assert!(
            matches!(&outcome, Outcome::Rejected { reason, detail }
                if *reason == reason::PROVIDER_4XX && detail.to_string().contains("InvalidProviderToken")),
            "{outcome:?}"
        );
    }
    // A client that does not trust the fake's certificate never sends.
    let mut untrusted = fake.settings();
    untrusted.ca_cert = None;
    let untrusted =
        Apns::new(&untrusted, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let outcome = untrusted.send(&device, &message).await;
    assert!(
        matches!(&outcome, Outcome::Transient { reason, .. } if *reason == reason::ERROR),
        "{outcome:?}"
    );
    assert_eq!(fake.received(&device).len(), 2);
}

#[tokio::test]
async fn an_alert_carries_its_headers_and_payload() {
    let fake = ApnsFake::start().await;
    let apns = adapter(&fake);
    let (normal, low) = (apns::device_token(3), apns::device_token(4));
    let n = notification("Ada replied", "normal");
    let before = chrono::Utc::now().timestamp();
    let sent = apns
        .send(&normal, &ApnsMessage::of(&n, 7, Duration::from_secs(3600)))
        .await;
    assert_eq!(sent, Outcome::Sent);
    let got = fake.received(&normal);
    let r = &got[0];
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-topic"), Some(apns::TOPIC));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-collapse-id"), Some(n.id.as_str()));
    let expiration: i64 = r
        .header("apns-expiration")
        .and_then(|e| e.parse().ok())
        .unwrap_or_default();
    assert!((before + 3600..=chrono::Utc::now().timestamp() + 3600).contains(&expiration));
    assert_eq!(
        fake.payloads(&normal)[0],
        json!({"aps": {"alert": {"title": "Hello", "body": "Ada replied"}, "badge": 7,
            "sound": "default", "thread-id": "post-42"},
            "id": n.id, "actionUrl": "https://app.example/p/42", "data": {"postId": 42}})
    );
    // `low`: delivered when the phone's power allows, silently; a zero TTL is now or never.
    let quiet = ApnsMessage::of(&notification("b", "low"), 0, Duration::ZERO);
    assert_eq!(apns.send(&low, &quiet).await, Outcome::Sent);
    let r = &fake.received(&low)[0];
    assert_eq!(r.header("apns-priority"), Some("5"));
    assert_eq!(r.header("apns-expiration"), Some("0"));
    assert!(fake.payloads(&low)[0]["aps"].get("sound").is_none());
}

#[tokio::test]
async fn a_badge_update_is_a_silent_background_push() {
    let fake = ApnsFake::start().await;
    let apns = adapter(&fake);
    let device = apns::device_token(5);
    assert_eq!(
        apns.send(&device, &ApnsMessage::badge_update(2)).await,
        Outcome::Sent
    );
    let r = &fake.received(&device)[0];
    assert_eq!(r.header("apns-push-type"), Some("background"));
    assert_eq!(r.header("apns-priority"), Some("5"));
    assert_eq!(r.header("apns-collapse-id"), None);
    assert!(r
        .header("apns-expiration")
        .and_then(|e| e.parse::<i64>().ok())
        .is_some_and(|e| e > chrono::Utc::now().timestamp()));
    assert_eq!(
        fake.payloads(&device)[0],
        json!({"aps": {"content-available": 1, "badge": 2}})
    );
}

#[tokio::test]
async fn an_alert_over_4_kb_is_trimmed_once_and_never_sent_whole() {
    let fake = ApnsFake::start().await;
    let apns = adapter(&fake);
    let device = apns::device_token(6);
    let big = ApnsMessage::of(
        &notification(&"é".repeat(3000), "high"),
        1,
        Duration::from_secs(60),
    );
    assert!(big.payload_bytes() > APNS_PAYLOAD_MAX_BYTES);
    assert_eq!(apns.send(&device, &big).await, Outcome::TooLarge);
    assert!(fake.received(&device).is_empty(), "no request");
    assert_eq!(policy().deliver(&apns, &device, &big).await, Delivery::Sent);
    let got = fake.payloads(&device);
    assert_eq!(got.len(), 1, "the trimmed form only");
    let body = got[0]["aps"]["alert"]["body"].as_str().unwrap_or_default();
    assert!(
        body.starts_with("éé") && body.ends_with('…') && body.len() < 300,
        "{body}"
    );
    assert_eq!(got[0]["aps"]["badge"], 1);
    assert!(got[0].get("data").is_none());
    assert!(fake.received(&device)[0].body.len() <= APNS_PAYLOAD_MAX_BYTES);
}

#[tokio::test]
async fn apns_answers_map_into_the_contract() {
    let fake = ApnsFake::start().await;
    let apns = adapter(&fake);
    let message = ApnsMessage::of(&notification("b", "normal"), 1, Duration::from_secs(60));
    let cases = [
        (apns::unregistered(), "gone", None),
        (apns::error(410, "ExpiredToken"), "gone", None),
        (apns::error(400, "BadDeviceToken"), "gone", None),
        // A configuration error (wrong topic), not a dead token: the device stays.
        (
            apns::error(400, "DeviceTokenNotForTopic"),
            "rejected",
            Some(reason::PROVIDER_4XX),
        ),
        (
            apns::error(503, "ServiceUnavailable").header("Retry-After", "30"),
            "retry-after",
            None,
        ),
        (
            apns::error(500, "InternalServerError"),
            "transient",
            Some(reason::PROVIDER_5XX),
        ),
        (
            apns::error(400, "IdleTimeout"),
            "transient",
            Some(reason::ERROR),
        ),
        (
            apns::error(429, "TooManyProviderTokenUpdates"),
            "retry-after",
            None,
        ),
        (
            apns::error(403, "Forbidden"),
            "rejected",
            Some(reason::PROVIDER_4XX),
        ),
        (
            apns::error(400, "BadExpirationDate"),
            "rejected",
            Some(reason::PROVIDER_4XX),
        ),
    ];
    for (i, (reply, kind, why)) in cases.into_iter().enumerate() {
        let device = apns::device_token(0x10 + i as u8);
        fake.provider.always(&ApnsFake::path(&device), reply);
        let outcome = apns.send(&device, &message).await;
        assert_eq!(outcome.kind(), kind, "case {i}: {outcome:?}");
        match (&outcome, why) {
            (Outcome::Transient { reason, .. } | Outcome::Rejected { reason, .. }, Some(why)) => {
                assert_eq!(*reason, why, "case {i}")
            }
            (Outcome::RetryAfter(wait), _) => {
                // Case 4 is the 503 with `Retry-After: 30`; the 429s wait 60 s without one.
                let expected = if i == 4 { 30 } else { 60 };
                assert_eq!(*wait, Duration::from_secs(expected), "case {i}");
            }
            _ => {}
        }
    }
    // The fake's own check: a token that is not 64 hex characters is BadDeviceToken, `gone`.
    let outcome = apns.send("not-a-device-token", &message).await;
    assert!(
        matches!(&outcome, Outcome::Gone { detail } if detail.to_string().contains("BadDeviceToken")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_push_function_builds_the_apns_adapter_from_its_settings() {
    let Some(env) = herald_tests::TestEnv::new().await else {
        return;
    };
    let fake = ApnsFake::start().await;
    let half = SenderSettings::from_env(&Env::from_pairs([
        ("APNS_KEY_ID", apns::KEY_ID),
        ("APNS_TEAM_ID", apns::TEAM_ID),
    ]))
    .err();
    assert_eq!(
        half,
        Some(shared::config::ConfigError::Missing("APNS_PRIVATE_KEY")),
        "all four or none"
    );
    let settings = fake.settings();
    let channels = SenderSettings::from_env(&Env::from_pairs([
        ("APNS_KEY_ID", settings.key_id.clone()),
        ("APNS_TEAM_ID", settings.team_id.clone()),
        ("APNS_PRIVATE_KEY", settings.private_key.clone()),
        ("APNS_TOPIC", settings.topic.clone()),
        ("APNS_ENDPOINT", format!("{}/", fake.provider.url)),
        ("APNS_CA_CERT", fake.ca_cert.clone()),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let deps = push::Deps::new(
        env.conn.clone(),
        env.keys.clone(),
        env.bus(),
        channels.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let Some(built) = deps.senders.apns.as_deref() else {
        panic!("APNs is configured");
    };
    assert_eq!(built.provider(), "apns");
    let device = apns::device_token(7);
    assert_eq!(
        built.send(&device, &ApnsMessage::badge_update(0)).await,
        Outcome::Sent
    );
    let mut bad = channels;
    if let Some(a) = bad.apns.as_mut() {
        a.private_key = "not a key".into();
    }
    let err = push::Deps::new(env.conn.clone(), env.keys.clone(), env.bus(), bad).err();
    assert!(
        matches!(
            err,
            Some(shared::config::ConfigError::Invalid {
                var: "APNS_PRIVATE_KEY",
                ..
            })
        ),
        "{err:?}"
    );
}
