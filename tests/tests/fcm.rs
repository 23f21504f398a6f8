//! The FCM adapter's own rules beyond the conformance suite, against the local FCM fake
//! (`tests/src/fcm.rs`): the access token is fetched once and reused, dropped after a 401; an
//! assertion signed with another key is refused; a token FCM calls invalid is `gone`; a 503 that
//! names a wait is `retry-after`; a payload over 4 KB is `too-large` without a request.

use std::time::Duration;

use herald_tests::fcm::{self, FcmFake, CLIENT_EMAIL};
use push::senders::fcm::{Fcm, FcmMessage};
use push::senders::{Adapter, Outcome, Trim};
use serde_json::json;
use shared::model::Notification;

/// A private key the fake does not know (test material, like the fake's own).
const OTHER_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCYOyy+lrPRCd5b\n\
Boz32AqCveCUGiMTlY9U+r9ig3sx5aOw2lFUXst5Wda2sUXHxt+0kmuoSzYivzH2\n\
aJKCpeeFrwbrX0UkQs09S0+y5p2yGV+GnV7IJMrkLPRGhmBUR7UvrW1Aj6ymBvyw\n\
LSEg5bZkHc24RrQ25FxUd3sxI2mKPWGAKl8L6xcqE7OXdmU5djFyCu5tfb/D51GF\n\
U9yEhMvIMaCJFxRGTVShKdnVllG/scaxqDUY5CcVp7NiUPZeBsM2gurH/guBxGpt\n\
Gn6qetuzHCpMP0uxS740peJGpZ1uFHGxNyd02vm3g6w4UJ3Go2QaPON7ziBmGHdw\n\
lV7q4DfHAgMBAAECggEAB9O2QtZcyHkWON5NWsp9pkGjZy0w2hqGentDlXBNLtn8\n\
k8s/aacce+plyV7nLfsu5VauuMILnOqK4+OpV/sciRl55Mz9/eJ+MV796gtEo5n9\n\
kpF+at8snC7AU7mOmmBVeiFG//RjKOYsqwim+2bUMEsxmJfwcoh4EGyHcpW8VDv4\n\
8VDggBQDp7UIJYz2ak0/1yPVEzoL7swIav3Snx5Zp7A4rKsD6hjtSzO3O/3A/02Y\n\
WAieAoZnIT1VtNnedyWoh4aRE3okr+kXf4Obgv9IfM0qJ7uGzZ8Bat8US9MV1Rj5\n\
JXds/9ZO26UuPG2nylW8jyf5AIKCgqJG5JJs3ZW9gQKBgQDTiUMOoXI5Fwam+oyk\n\
tQQA2Wq1AP18ru/iSSeWOr2HKRtTEfIA2SUozEqfGtDGaVFtFXz1YNqv9GfYauUK\n\
kfjkB6mWE7asvb+MN8DSh7wdj1rYq7vqKzH999SbdMBk2P18FgffU08XMWzJTfJF\n\
rkDWq0glglounLrnFy7GG8KfjQKBgQC4OrdIUg+O5qFcR62F3GsZKrO3yyOy+OOu\n\
J4UxXpzJJYI30kaU3IAaf/K8k0BNkRLx28rCZcWh0t7PnfzPCEbJB8av1q2WZ4+c\n\
KBuR3R+aNoglAg6NzhuGmSnVbeaNx7+SSm1U81ivzreQYJdmEzltsyuNb7RiM3xx\n\
7P4w/4plowKBgEpZAgKQZ8788s+ZW/k/zepmgASiFnXOHm3P/GPmvVpV7k6iDgaS\n\
S2ctdkS5bgtuVLocRVEQ+4vAQQdlep7eczXiI46l2xyXjE1CAzl7j3hsPCfPJDrH\n\
d8ilZEpHHJ/VTDJio92wMCocqvmNtcsb1ZodlTvptryPRXmXQk9Kznq5AoGBAIQm\n\
wkCjdLuaHpeWZxfFtCF6ay5lDnecZ54OhVGTv73eJRmrwauYvF/F9jZlHlRFw6Qw\n\
eLKX1HuvStr9RlKwai5cYJ7TzPM92Fs4vgYU601w3ppFbnE0LrSPe924lxCO/5GN\n\
x/2PDcgW7cAoOZIkKibRxmUPgwKKUjNawEAfnoQnAoGAfr+YZJXJt70EYVSq/ChG\n\
DN4W97W3J+4iKOIol9cFkoDTjcy/zmEtdQQdplEluYHCxB5IDFI1kFCwuxZcR4IP\n\
eEwLc2D1tsOsM06Oe23QTJNRXPDPW9eWP08qVrju0z5OiMHyNcELhHkNORoGo+of\n\
8rUbX5opyXoI4Ed/ClyTcOQ=\n\
-----END PRIVATE KEY-----\n\
";

const TOKEN: &str = "eYq0dJ3mTk2:APA91bF0x7Jk2N1pW3qVb9rZtY5uL8oHcGd4sE6aR0mQiPlKjXwBvCnT-yU_zS7eD2fA9gH1jK3lM5nO7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hI7jK9lM1nO3pQ5r";

fn notification(body: &str) -> Notification {
    serde_json::from_value(json!({
        "id": "n-fcm", "seq": 1, "userId": "ada", "type": "comment",
        "title": "Hello", "body": body, "data": {"k": "v"},
        "channels": ["PUSH"], "priority": "high",
        "read": false, "seen": false, "archived": false, "createdAt": chrono::Utc::now()
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn adapter(fake: &FcmFake, project: &str) -> Fcm {
    Fcm::new(
        &fake.settings(project, CLIENT_EMAIL),
        reqwest::Client::new(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn message() -> FcmMessage {
    FcmMessage::of(&notification("world"), Duration::from_secs(120), 3)
}

#[tokio::test]
async fn the_access_token_is_fetched_once_and_renewed_after_a_401() {
    let fake = FcmFake::start().await;
    let project = "p-cache";
    fake.provider
        .always(&FcmFake::send_path(project), fcm::sent(project));
    let fcm = adapter(&fake, project);
    for _ in 0..3 {
        assert_eq!(fcm.send(TOKEN, &message()).await, Outcome::Sent);
    }
    assert_eq!(fake.tokens_issued(), 1, "one token for three sends");
    let sends = fake.provider.received(&FcmFake::send_path(project));
    let bearers: Vec<_> = sends
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert!(bearers.windows(2).all(|w| w[0] == w[1]), "{bearers:?}");
    // What FCM received: the v1 message for the device.
    let body: serde_json::Value = serde_json::from_slice(&sends[0].body).unwrap_or_default();
    assert_eq!(body["message"]["token"], TOKEN);
    assert_eq!(
        body["message"]["notification"],
        json!({"title": "Hello", "body": "world"})
    );
    assert_eq!(body["message"]["data"]["id"], "n-fcm");
    assert_eq!(
        body["message"]["data"]["badge"], "3",
        "the unread count, a string"
    );
    assert_eq!(
        body["message"]["data"]["data"], r#"{"k":"v"}"#,
        "data values are strings"
    );
    assert_eq!(
        body["message"]["android"],
        json!({"priority": "HIGH", "ttl": "120s", "collapse_key": "n-fcm",
            "notification": {"notification_count": 3}})
    );

    // FCM stops accepting the token: rejected, and the next send gets a new one.
    fake.provider.queue(
        &FcmFake::send_path(project),
        vec![fcm::error(
            401,
            "UNAUTHENTICATED",
            "THIRD_PARTY_AUTH_ERROR",
            "Request had invalid authentication credentials.",
        )],
    );
    assert_eq!(fcm.send(TOKEN, &message()).await.kind(), "rejected");
    assert_eq!(fcm.send(TOKEN, &message()).await, Outcome::Sent);
    assert_eq!(fake.tokens_issued(), 2);
}

#[tokio::test]
async fn an_assertion_signed_with_another_key_gets_no_token() {
    let fake = FcmFake::start().await;
    let project = "p-forged";
    let mut settings = fake.settings(project, CLIENT_EMAIL);
    let mut key: serde_json::Value =
        serde_json::from_str(&settings.service_account).unwrap_or_default();
    key["private_key"] = OTHER_PRIVATE_KEY_PEM.into();
    settings.service_account = key.to_string();
    let fcm = Fcm::new(&settings, reqwest::Client::new(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = fcm.send(TOKEN, &message()).await;
    assert_eq!(outcome.kind(), "rejected", "{outcome:?}");
    assert_eq!(fake.tokens_issued(), 0);
    assert!(fake.sends(project).is_empty());
    let refused = fake.provider.received("/token");
    assert_eq!(refused.len(), 1);
    // A key file that is not one stops the cold start instead.
    settings.service_account = "{\"client_email\": \"x\"}".into();
    assert!(Fcm::new(&settings, reqwest::Client::new(), Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn fcm_answers_map_into_the_contract() {
    let fake = FcmFake::start().await;
    let invalid_token = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
        "message": "The registration token is not a valid FCM registration token",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"},
            {"@type": "type.googleapis.com/google.rpc.BadRequest",
             "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]}});
    let bad_field = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
        "message": "Invalid value at 'message.android.ttl'",
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
             "fieldViolations": [{"field": "message.android.ttl", "description": "Invalid value"}]}]}});
    let cases: Vec<(&str, herald_tests::provider::Answer, &str)> = vec![
        (
            "p-invalid-token",
            herald_tests::provider::answer(400).json(invalid_token),
            "gone",
        ),
        (
            "p-bad-field",
            herald_tests::provider::answer(400).json(bad_field),
            "rejected",
        ),
        (
            "p-unavailable-wait",
            fcm::error(503, "UNAVAILABLE", "UNAVAILABLE", "try later").header("Retry-After", "9"),
            "retry-after",
        ),
        (
            "p-internal",
            fcm::error(500, "INTERNAL", "INTERNAL", "oops"),
            "transient",
        ),
        (
            "p-forbidden",
            fcm::error(
                403,
                "PERMISSION_DENIED",
                "SENDER_ID_MISMATCH",
                "SenderId mismatch",
            ),
            "rejected",
        ),
    ];
    for (project, reply, kind) in cases {
        fake.provider.always(&FcmFake::send_path(project), reply);
        let outcome = adapter(&fake, project).send(TOKEN, &message()).await;
        assert_eq!(outcome.kind(), kind, "{project}: {outcome:?}");
        if let Outcome::RetryAfter(wait) = outcome {
            assert_eq!(wait, Duration::from_secs(9));
        }
    }
}

#[tokio::test]
async fn a_payload_over_4_kb_is_too_large_without_a_request_and_trims_to_id_and_title() {
    let fake = FcmFake::start().await;
    let project = "p-big";
    let big = FcmMessage::of(
        &notification(&"x".repeat(4_100)),
        Duration::from_secs(60),
        3,
    );
    assert!(big.payload_bytes() > 4_096);
    assert_eq!(
        adapter(&fake, project).send(TOKEN, &big).await,
        Outcome::TooLarge
    );
    assert!(fake
        .provider
        .received(&FcmFake::send_path(project))
        .is_empty());
    assert_eq!(fake.tokens_issued(), 0, "not even a token was asked for");
    let trimmed = big.trimmed().unwrap_or_else(|| panic!("a trimmed form"));
    assert!(trimmed.payload_bytes() < 100);
    assert!(trimmed.trimmed().is_none(), "trimmed once");
    assert_eq!(
        adapter(&fake, project).send(TOKEN, &trimmed).await,
        Outcome::Sent
    );
    let got = fake.sends(project);
    assert_eq!(
        got[0]["message"]["data"],
        json!({"id": "n-fcm", "badge": "3"})
    );
}

#[tokio::test]
async fn the_push_function_builds_the_fcm_adapter_from_its_settings() {
    let Some(env) = herald_tests::TestEnv::new().await else {
        return;
    };
    let fake = FcmFake::start().await;
    let mut settings = shared::config::SenderSettings::from_env(&shared::config::Env::from_pairs(
        [("FCM_PROJECT_ID", "p-deps")],
    ))
    .err();
    assert_eq!(
        settings.take(),
        Some(shared::config::ConfigError::Missing("FCM_SERVICE_ACCOUNT")),
        "both or neither"
    );
    let mut channels = shared::config::SenderSettings {
        fcm: Some(fake.settings("p-deps", CLIENT_EMAIL)),
        ..Default::default()
    };
    let deps = push::Deps::new(
        env.conn.clone(),
        env.keys.clone(),
        env.bus(),
        channels.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deps.senders.fcm.as_ref().map(|a| a.provider()), Some("fcm"));
    if let Some(f) = channels.fcm.as_mut() {
        f.service_account = "not json".into();
    }
    let err = push::Deps::new(env.conn.clone(), env.keys.clone(), env.bus(), channels).err();
    assert!(
        matches!(
            err,
            Some(shared::config::ConfigError::Invalid {
                var: "FCM_SERVICE_ACCOUNT",
                ..
            })
        ),
        "{err:?}"
    );
}
