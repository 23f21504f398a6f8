//! The conformance suite of the adapter contract (`shared/src/adapter.rs`): the same
//! scripted provider answers against every off-app adapter, each against a local fake of its
//! provider that answers as the real one does.
//!
//! | case | Web Push service | Twilio Messages API | SMTP server (aiosmtpd) | outcome |
//! |---|---|---|---|---|
//! | accepted | 201 | 201 + message JSON | 250 | `sent` |
//! | gone | 410 | 400, code 21211 | 550 5.1.1 at RCPT | `gone` |
//! | throttled | 429 `Retry-After: 7` | 429 `Retry-After: 7`, code 20429 | 450 4.2.1 | `retry-after(7s)`; SMTP, which has no Retry-After: `transient` |
//! | unavailable | 503 | 503, code 20503 | 451 4.3.0 | `transient`/`provider-5xx` |
//! | timeout | no answer | no answer | no answer to DATA | `transient`/`error` |
//! | oversized | 413 | 400, code 21617 | 552 5.3.4 | `too-large` |
//! | bad credentials | 401 (VAPID refused) | 401, code 20003 | 535 5.7.8 at AUTH | `rejected`/`provider-4xx` |
//!
//! Amazon SES (v2 `SendEmail`, a scripted HTTP fake answering in SES's JSON error shape):
//! accepted 200 `{MessageId}`; throttled 429 `TooManyRequestsException` with `Retry-After: 7`;
//! unavailable 503 `ServiceUnavailable`; timeout no answer; oversized 413; bad credentials 403
//! `UnrecognizedClientException`. SES has no synchronous "gone" (a dead mailbox is accepted and
//! bounces later), so its fake skips that case: `GONE = false`.
//!
//! The timeout case gives the adapter a short timeout (300 ms) against a fake that never
//! answers; every other case a long one (30 s), so no case depends on the machine's speed.
//! Then, through `SendPolicy::deliver`, a `too-large` is resent once trimmed where the message
//! has a smaller form (Web Push `{id, title}`, email text only) and fails where it has none (SMS).
//!
//! Firebase Cloud Messaging (HTTP v1, `tests/src/fcm.rs`: the token endpoint checks the service
//! account's RS256 assertion, sends check the bearer it issued; errors in Google's
//! `{error: {status, details: [{errorCode}]}}` shape): accepted 200 `{name}`; gone 404
//! `UNREGISTERED`; throttled 429 `QUOTA_EXCEEDED` with `Retry-After: 7`; unavailable 503
//! `UNAVAILABLE`; timeout no answer; oversized 400 `INVALID_ARGUMENT` "Android message is too
//! big"; bad credentials a service account the token endpoint refuses (400 `invalid_grant`).
//!
//! Apple Push Notification service (HTTP/2 over TLS, `tests/src/apns.rs`: checks the ES256
//! provider token's signature, the headers, the topic and the payload size; errors as
//! `{"reason": …}`): accepted 200 with an `apns-id`; gone 410 `Unregistered` with its
//! `timestamp`; throttled 429 `TooManyRequests` with `Retry-After: 7`; unavailable 503
//! `ServiceUnavailable`; timeout no answer; oversized 413 `PayloadTooLarge`; bad credentials a
//! provider token signed with another key (403 `InvalidProviderToken`).
//!
//! The outbound webhook (`functions/webhooks/src/send.rs`, a scripted HTTP receiver that checks
//! each request's Standard Webhooks signature with the secret it was given): accepted 204; gone
//! 410 (the receiver wants no more: the function removes the webhook); throttled 429 with
//! `Retry-After: 7`; unavailable 503; timeout no answer; oversized 413 (a message has no smaller
//! form: failed); bad credentials a message signed with another secret (the receiver's 401).
//!
//! Adding an adapter: a [`Fake`] for its provider and one line in `conformance!` at the bottom.

use std::time::Duration;

use herald_tests::apns::{self, ApnsFake};
use herald_tests::browser::{vapid_keys, Browser};
use herald_tests::fcm::{self, FcmFake};
use herald_tests::provider::{answer, hold, ses, Answer, Provider};
use herald_tests::smtp_sink::SmtpSink;
use push::payload::{self, PushPayload, RenderedEmail};
use push::senders::apns::{Apns, ApnsMessage};
use push::senders::email::Email;
use push::senders::fcm::{Fcm, FcmMessage};
use push::senders::ses::Ses;
use push::senders::sms::{Sms, SmsBody};
use push::senders::webpush::{PushMessage, Vapid, WebPush};
use push::senders::{Adapter, Delivery, Outcome, SendPolicy};
use serde_json::json;
use shared::addresses::{PushSubscription, PushSubscriptionRequest};
use shared::config::{AwsSettings, Env, SenderSettings, SmsSettings, VapidSettings};
use shared::egress::EgressPolicy;
use shared::model::{Notification, Priority};
use shared::protocol::outcome::reason;
use shared::webhooks::{new_secret, signature, Webhook, WebhookEventType, WebhookMessage};
use webhooks::WebhookSender;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Accepted,
    Gone,
    Throttled,
    Unavailable,
    Timeout,
    Oversized,
    BadCredentials,
}

const CASES: [Case; 7] = [
    Case::Accepted,
    Case::Gone,
    Case::Throttled,
    Case::Unavailable,
    Case::Timeout,
    Case::Oversized,
    Case::BadCredentials,
];

/// The From address of every email adapter here.
const FROM: &str = "Herald <notify@herald.test>";

/// The wait every fake names when it throttles.
const RETRY_AFTER: Duration = Duration::from_secs(7);

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Accepted => "accepted",
            Case::Gone => "gone",
            Case::Throttled => "throttled",
            Case::Unavailable => "unavailable",
            Case::Timeout => "timeout",
            Case::Oversized => "oversized",
            Case::BadCredentials => "badcredentials",
        }
    }

    /// The adapter's timeout for this case: short only where the fake holds the request.
    fn timeout(self) -> Duration {
        match self {
            Case::Timeout => Duration::from_millis(300),
            _ => Duration::from_secs(30),
        }
    }

    /// What the contract expects of it: the outcome's kind, and its reason where it has one.
    fn expected(self, retry_after: bool) -> (&'static str, Option<&'static str>) {
        match self {
            Case::Accepted => ("sent", None),
            Case::Gone => ("gone", None),
            Case::Throttled if retry_after => ("retry-after", None),
            Case::Throttled => ("transient", Some(reason::PROVIDER_5XX)),
            Case::Unavailable => ("transient", Some(reason::PROVIDER_5XX)),
            Case::Timeout => ("transient", Some(reason::ERROR)),
            Case::Oversized => ("too-large", None),
            Case::BadCredentials => ("rejected", Some(reason::PROVIDER_4XX)),
        }
    }
}

/// A local fake of one provider, and its adapter pointed at it.
trait Fake: Sized {
    /// Whether the protocol can name a wait: HTTP's 429 `Retry-After` can; SMTP's throttling
    /// reply is a plain 4yz, so it is `transient`.
    const RETRY_AFTER: bool = true;
    /// Whether the message has a smaller form to resend after a `too-large`.
    const TRIMS: bool;
    /// Whether the provider says synchronously that an address is dead.
    const GONE: bool = true;

    /// The fake, running; `None` (after `herald_tests::skip`) when it cannot run here.
    async fn start() -> Option<Self>;

    /// Scripts `case` on the fake and makes one call with an adapter whose timeout is
    /// `case.timeout()`.
    async fn call(&self, case: Case) -> Outcome;

    /// Scripts one `too-large` answer, then acceptance of what is small enough, sends through
    /// `policy`, and checks what reached the fake (one resend, trimmed; or no resend): what the
    /// send came to.
    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery;

    /// The messages the fake has accepted, checked to be what was sent.
    fn accepted(&self) -> usize;
}

async fn conformance<F: Fake>() {
    let Some(fake) = F::start().await else {
        return;
    };
    for case in CASES {
        if case == Case::Gone && !F::GONE {
            continue;
        }
        let outcome = fake.call(case).await;
        let (kind, why) = case.expected(F::RETRY_AFTER);
        assert_eq!(outcome.kind(), kind, "{case:?}: {outcome:?}");
        match (&outcome, why) {
            (Outcome::RetryAfter(wait), _) => assert_eq!(*wait, RETRY_AFTER, "{case:?}"),
            (Outcome::Transient { reason, .. } | Outcome::Rejected { reason, .. }, Some(why)) => {
                assert_eq!(*reason, why, "{case:?}: {outcome:?}")
            }
            _ => {}
        }
    }
    assert_eq!(
        fake.accepted(),
        1,
        "only the accepted case's message was kept"
    );

    let policy = SendPolicy::new(
        SenderSettings::from_env(&Env::from_pairs([("PUSH_RETRY_BACKOFF_MS", "1")]))
            .unwrap_or_else(|e| panic!("{e}"))
            .send,
    );
    let delivery = fake.deliver_oversized(&policy).await;
    if F::TRIMS {
        assert_eq!(delivery, Delivery::Sent, "resent trimmed");
    } else {
        assert!(
            matches!(delivery, Delivery::Failed { reason, .. } if reason == reason::PROVIDER_4XX),
            "{delivery:?}"
        );
    }
}

fn notification() -> Notification {
    serde_json::from_value(json!({
        "id": "n-conformance", "seq": 1, "userId": "ada", "type": "comment",
        "title": "Conformance", "body": "x".repeat(2_000), "data": {},
        "channels": ["PUSH", "EMAIL", "SMS"], "priority": "normal",
        "read": false, "seen": false, "archived": false, "createdAt": chrono::Utc::now()
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

// --- Web Push -------------------------------------------------------------------------------

struct WebPushFake {
    service: Provider,
    browser: Browser,
    private_key: String,
}

impl WebPushFake {
    fn adapter(&self, timeout: Duration) -> WebPush {
        let vapid = Vapid::from_settings(&VapidSettings {
            subject: "mailto:ops@herald.test".into(),
            private_key: self.private_key.clone(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let egress = EgressPolicy::new(true);
        let client = egress
            .client(reqwest::Client::builder())
            .unwrap_or_else(|e| panic!("{e}"));
        WebPush::new(vapid, client, timeout, egress)
    }

    fn subscription(&self, path: &str) -> PushSubscription {
        let request: PushSubscriptionRequest = serde_json::from_value(
            self.browser
                .subscription(&format!("{}{path}", self.service.url)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        PushSubscription::from_request(&request, true, chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn message() -> PushMessage {
        PushMessage::new(
            &PushPayload::of(&notification()),
            Priority::Normal,
            Duration::from_secs(60),
        )
    }
}

impl Fake for WebPushFake {
    const TRIMS: bool = true;

    async fn start() -> Option<Self> {
        Some(WebPushFake {
            service: Provider::start().await,
            browser: Browser::new(),
            private_key: vapid_keys().0,
        })
    }

    async fn call(&self, case: Case) -> Outcome {
        // Answers as autopush (Firefox's push service) words them.
        let error = |status: u16, errno: u16, error: &str| {
            answer(status).json(json!({"code": status, "errno": errno, "error": error}))
        };
        let reply: Answer = match case {
            Case::Accepted => answer(201).header("Location", "/m/1"),
            Case::Gone => error(410, 106, "Gone"),
            Case::Throttled => error(429, 0, "Too Many Requests").header("Retry-After", "7"),
            Case::Unavailable => error(503, 201, "Service Unavailable"),
            Case::Timeout => hold(),
            Case::Oversized => error(413, 104, "Payload Too Large"),
            Case::BadCredentials => error(401, 109, "Unauthorized"),
        };
        let path = format!("/push/{}", case.name());
        self.service.always(&path, reply);
        self.adapter(case.timeout())
            .send(&self.subscription(&path), &Self::message())
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        let path = "/push/oversized-then-accepted";
        self.service.queue(path, vec![answer(413)]);
        let adapter = self.adapter(Duration::from_secs(30));
        let delivery = policy
            .deliver(&adapter, &self.subscription(path), &Self::message())
            .await;
        let got: Vec<_> = self
            .service
            .received(path)
            .iter()
            .map(|r| self.browser.decrypt(&r.body))
            .collect();
        assert_eq!(got.len(), 2, "one resend");
        assert!(got[0].get("body").is_some(), "{}", got[0]);
        assert_eq!(
            got[1],
            json!({"id": "n-conformance", "title": "Conformance"})
        );
        delivery
    }

    fn accepted(&self) -> usize {
        let got = self.service.received("/push/accepted");
        // What it accepted is a real Web Push: it decrypts for the browser.
        for r in &got {
            assert_eq!(self.browser.decrypt(&r.body)["title"], "Conformance");
        }
        got.len()
    }
}

// --- SMS: Twilio's Messages API -------------------------------------------------------------

struct TwilioFake {
    api: Provider,
}

impl TwilioFake {
    /// One account per case, so each case has a path of its own.
    fn sid(case: &str) -> String {
        format!("AC{case}")
    }

    fn path(case: &str) -> String {
        format!("/2010-04-01/Accounts/{}/Messages.json", Self::sid(case))
    }

    fn adapter(&self, case: &str, timeout: Duration) -> Sms {
        let settings = SmsSettings {
            api_url: self.api.url.clone(),
            account_sid: Self::sid(case),
            auth_token: "token".into(),
            from: "+15005550006".into(),
        };
        Sms::new(settings, reqwest::Client::new(), timeout)
    }
}

impl Fake for TwilioFake {
    const TRIMS: bool = false;

    async fn start() -> Option<Self> {
        Some(TwilioFake {
            api: Provider::start().await,
        })
    }

    async fn call(&self, case: Case) -> Outcome {
        // Twilio's error body: {code, message, more_info, status}.
        let error = |status: u16, code: u32, message: &str| {
            answer(status).json(json!({
                "code": code, "message": message, "status": status,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}")
            }))
        };
        let reply = match case {
            Case::Accepted => answer(201).json(json!({
                "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued",
                "to": "+447700900123", "from": "+15005550006", "body": "Conformance"
            })),
            Case::Gone => error(
                400,
                21211,
                "The 'To' number +447700900123 is not a valid phone number.",
            ),
            Case::Throttled => error(429, 20429, "Too Many Requests").header("Retry-After", "7"),
            Case::Unavailable => error(503, 20503, "Service Unavailable"),
            Case::Timeout => hold(),
            Case::Oversized => error(
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            ),
            Case::BadCredentials => error(401, 20003, "Authenticate"),
        };
        self.api.always(&Self::path(case.name()), reply);
        let body = SmsBody(payload::sms_text(&notification()));
        self.adapter(case.name(), case.timeout())
            .send("+447700900123", &body)
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        let case = "oversizedthenaccepted";
        self.api.queue(
            &Self::path(case),
            vec![answer(400).json(json!({"code": 21617, "status": 400}))],
        );
        let adapter = self.adapter(case, Duration::from_secs(30));
        let body = SmsBody(payload::sms_text(&notification()));
        let delivery = policy.deliver(&adapter, "+447700900123", &body).await;
        let got = self.api.received(&Self::path(case));
        assert_eq!(got.len(), 1, "no smaller form, no resend");
        delivery
    }

    fn accepted(&self) -> usize {
        let got = self.api.received(&Self::path("accepted"));
        for r in &got {
            assert_eq!(r.form()["To"], "+447700900123");
        }
        got.len()
    }
}

// --- Email: SMTP ----------------------------------------------------------------------------

struct SmtpFake {
    sink: SmtpSink,
}

impl SmtpFake {
    /// The sink's URL with these AUTH credentials (it accepts `herald`/`secret` only).
    fn adapter(&self, password: &str, timeout: Duration) -> Email {
        let url = self
            .sink
            .url
            .replacen("smtp://", &format!("smtp://herald:{password}@"), 1);
        Email::new(&url, FROM, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    fn mail() -> RenderedEmail {
        payload::email(
            &notification(),
            "https://api.herald.test/v1/unsubscribe?token=t",
        )
    }

    /// The sink scripts its answer by the recipient's local part (`smtp_sink.py`).
    fn recipient(case: Case) -> String {
        let local = match case {
            Case::Gone => "unknown",
            Case::Timeout => "slow",
            other => other.name(),
        };
        format!("{local}.ada@example.com")
    }

    fn kept(&self, recipient: &str) -> Vec<serde_json::Value> {
        self.sink
            .messages()
            .into_iter()
            .filter(|m| m["rcptTos"][0] == recipient)
            .collect()
    }
}

impl Fake for SmtpFake {
    const RETRY_AFTER: bool = false;
    const TRIMS: bool = true;

    async fn start() -> Option<Self> {
        Some(SmtpFake {
            sink: SmtpSink::start()?,
        })
    }

    async fn call(&self, case: Case) -> Outcome {
        let password = match case {
            Case::BadCredentials => "wrong",
            _ => "secret",
        };
        self.adapter(password, case.timeout())
            .send(&Self::recipient(case), &Self::mail())
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        // The sink refuses `oversized…` mail with 552 unless it is text only.
        let to = "oversized.bob@example.com";
        let adapter = self.adapter("secret", Duration::from_secs(30));
        let delivery = policy.deliver(&adapter, to, &Self::mail()).await;
        let kept = self.kept(to);
        assert_eq!(kept.len(), 1, "one resend");
        assert_eq!(kept[0]["contentType"], "text/plain", "the text part alone");
        delivery
    }

    fn accepted(&self) -> usize {
        let kept = self.kept(&Self::recipient(Case::Accepted));
        for m in &kept {
            assert_eq!(m["contentType"], "multipart/alternative");
        }
        self.sink.messages().len()
    }
}

// --- Email: Amazon SES (v2) -----------------------------------------------------------------

struct SesFake {
    api: Provider,
}

impl SesFake {
    /// One SES endpoint per case: a path prefix the SDK puts before `/v2/…`.
    fn endpoint(&self, case: &str) -> String {
        format!("{}/{case}", self.api.url)
    }

    fn path(case: &str) -> String {
        format!("/{case}{}", ses::SEND_EMAIL)
    }

    fn adapter(&self, case: &str, timeout: Duration) -> Ses {
        let aws = AwsSettings {
            access_key_id: "AKIDHERALDTEST".into(),
            secret_access_key: "secret".into(),
            session_token: None,
            region: "eu-west-1".into(),
        };
        Ses::new(&aws, Some(&self.endpoint(case)), FROM, timeout).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Fake for SesFake {
    const TRIMS: bool = true;
    const GONE: bool = false;

    async fn start() -> Option<Self> {
        Some(SesFake {
            api: Provider::start().await,
        })
    }

    async fn call(&self, case: Case) -> Outcome {
        let reply = match case {
            Case::Accepted => ses::sent(),
            Case::Gone => ses::sent(),
            Case::Throttled => ses::error(429, "TooManyRequestsException", "Too many requests.")
                .header("Retry-After", "7"),
            Case::Unavailable => ses::error(503, "ServiceUnavailable", "Service unavailable."),
            Case::Timeout => hold(),
            Case::Oversized => {
                ses::error(413, "RequestEntityTooLarge", "Request entity too large.")
            }
            Case::BadCredentials => ses::error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        };
        self.api.always(&Self::path(case.name()), reply);
        self.adapter(case.name(), case.timeout())
            .send("ada@example.com", &SmtpFake::mail())
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        let case = "oversizedthenaccepted";
        self.api.queue(
            &Self::path(case),
            vec![ses::error(
                413,
                "RequestEntityTooLarge",
                "Request entity too large.",
            )],
        );
        self.api.always(&Self::path(case), ses::sent());
        let adapter = self.adapter(case, Duration::from_secs(30));
        let delivery = policy
            .deliver(&adapter, "ada@example.com", &SmtpFake::mail())
            .await;
        let got: Vec<_> = self
            .api
            .received(&Self::path(case))
            .iter()
            .map(raw_mime)
            .collect();
        assert_eq!(got.len(), 2, "one resend");
        assert!(got[0].contains("multipart/alternative"), "{}", got[0]);
        assert!(!got[1].contains("multipart/alternative") && got[1].contains("text/plain"));
        delivery
    }

    fn accepted(&self) -> usize {
        let got = self.api.received(&Self::path("accepted"));
        for r in &got {
            // Signed with the role's key (SigV4), the message as raw MIME with the one-click
            // unsubscribe headers.
            let auth = r.header("authorization").unwrap_or_default();
            assert!(
                auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDHERALDTEST/"),
                "{auth}"
            );
            let body: serde_json::Value =
                serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                body["Destination"]["ToAddresses"],
                json!(["ada@example.com"])
            );
            assert!(raw_mime(r).contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        }
        got.len()
    }
}

// --- Android: Firebase Cloud Messaging (HTTP v1) --------------------------------------------

/// A registration token in FCM's shape.
const FCM_TOKEN: &str = "cXwR4jG7QnS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx6r1aJc7rWx8S9dUPhGvPxTqRmPqkZfFTsFbJ0PjGGVY3XHn1OqHQUhJLkJQq4_S2QpZPjPXYGmQ9hWQa6LvTvTr0Lw8A5M3Rv";

struct FcmConformance {
    fake: FcmFake,
}

impl FcmConformance {
    fn adapter(&self, project: &str, client_email: &str, timeout: Duration) -> Fcm {
        Fcm::new(
            &self.fake.settings(project, client_email),
            reqwest::Client::new(),
            timeout,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn message() -> FcmMessage {
        FcmMessage::of(&notification(), Duration::from_secs(60), 1)
    }
}

impl Fake for FcmConformance {
    const TRIMS: bool = true;

    async fn start() -> Option<Self> {
        Some(FcmConformance {
            fake: FcmFake::start().await,
        })
    }

    async fn call(&self, case: Case) -> Outcome {
        // FCM's own words for each (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
        let project = format!("p-{}", case.name());
        let reply = match case {
            Case::Accepted => fcm::sent(&project),
            Case::Gone => fcm::error(
                404,
                "NOT_FOUND",
                "UNREGISTERED",
                "Requested entity was not found.",
            ),
            Case::Throttled => fcm::error(
                429,
                "RESOURCE_EXHAUSTED",
                "QUOTA_EXCEEDED",
                "Quota exceeded.",
            )
            .header("Retry-After", "7"),
            Case::Unavailable => fcm::error(
                503,
                "UNAVAILABLE",
                "UNAVAILABLE",
                "The service is currently unavailable.",
            ),
            Case::Timeout => hold(),
            Case::Oversized => fcm::error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "Android message is too big",
            ),
            // Bad credentials: a service account the token endpoint does not accept.
            Case::BadCredentials => fcm::sent(&project),
        };
        self.fake
            .provider
            .always(&FcmFake::send_path(&project), reply);
        let email = match case {
            Case::BadCredentials => "someone-else@herald-test.iam.gserviceaccount.com",
            _ => fcm::CLIENT_EMAIL,
        };
        self.adapter(&project, email, case.timeout())
            .send(FCM_TOKEN, &Self::message())
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        let project = "p-oversized-then-accepted";
        self.fake.provider.queue(
            &FcmFake::send_path(project),
            vec![fcm::error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "Android message is too big",
            )],
        );
        self.fake
            .provider
            .always(&FcmFake::send_path(project), fcm::sent(project));
        let adapter = self.adapter(project, fcm::CLIENT_EMAIL, Duration::from_secs(30));
        let delivery = policy.deliver(&adapter, FCM_TOKEN, &Self::message()).await;
        let got = self.fake.sends(project);
        assert_eq!(got.len(), 2, "one resend");
        assert!(
            got[0]["message"]["notification"].get("body").is_some(),
            "{}",
            got[0]
        );
        assert_eq!(
            got[1]["message"]["data"],
            json!({"id": "n-conformance", "badge": "1"}),
            "the trimmed form keeps the badge"
        );
        assert_eq!(
            got[1]["message"]["notification"],
            json!({"title": "Conformance"})
        );
        delivery
    }

    fn accepted(&self) -> usize {
        let got = self.fake.sends("p-accepted");
        for m in &got {
            assert_eq!(m["message"]["token"], FCM_TOKEN);
            assert_eq!(m["message"]["notification"]["title"], "Conformance");
            assert_eq!(m["message"]["android"]["collapse_key"], "n-conformance");
        }
        // The refused service account never reached a send.
        assert!(self.fake.sends("p-badcredentials").is_empty());
        got.len()
    }
}

// --- iOS: Apple Push Notification service (HTTP/2) ----------------------------------------

struct ApnsConformance {
    fake: ApnsFake,
}

impl ApnsConformance {
    /// One device token per case, so each case has a path of its own.
    fn device(case: Case) -> String {
        apns::device_token(case as u8 + 1)
    }

    fn adapter(&self, private_key: Option<&str>, timeout: Duration) -> Apns {
        let settings = match private_key {
            Some(key) => self.fake.settings_with_key(key),
            None => self.fake.settings(),
        };
        Apns::new(&settings, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    fn message() -> ApnsMessage {
        ApnsMessage::of(&notification(), 3, Duration::from_secs(60))
    }
}

impl Fake for ApnsConformance {
    const TRIMS: bool = true;

    async fn start() -> Option<Self> {
        Some(ApnsConformance {
            fake: ApnsFake::start().await,
        })
    }

    async fn call(&self, case: Case) -> Outcome {
        // Apple's words for each (developer.apple.com, "Handling notification responses from
        // APNs").
        let reply = match case {
            Case::Accepted => None,
            Case::Gone => Some(apns::unregistered()),
            Case::Throttled => Some(apns::error(429, "TooManyRequests").header("Retry-After", "7")),
            Case::Unavailable => Some(apns::error(503, "ServiceUnavailable")),
            Case::Timeout => Some(hold()),
            Case::Oversized => Some(apns::error(413, "PayloadTooLarge")),
            // Bad credentials: a provider token signed with a key the fake does not know.
            Case::BadCredentials => None,
        };
        let device = Self::device(case);
        if let Some(reply) = reply {
            self.fake.provider.always(&ApnsFake::path(&device), reply);
        }
        let forged = apns::new_key();
        let key = (case == Case::BadCredentials).then_some(forged.as_str());
        self.adapter(key, case.timeout())
            .send(&device, &Self::message())
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        let device = apns::device_token(0xee);
        self.fake.provider.queue(
            &ApnsFake::path(&device),
            vec![apns::error(413, "PayloadTooLarge")],
        );
        let adapter = self.adapter(None, Duration::from_secs(30));
        let delivery = policy.deliver(&adapter, &device, &Self::message()).await;
        let got = self.fake.payloads(&device);
        assert_eq!(got.len(), 2, "one resend");
        assert_eq!(got[0]["aps"]["alert"]["body"], "x".repeat(2_000));
        let cut = got[1]["aps"]["alert"]["body"].as_str().unwrap_or_default();
        assert!(cut.len() < 300 && cut.ends_with('…'), "{cut}");
        assert_eq!(got[1]["aps"]["alert"]["title"], "Conformance");
        assert_eq!(got[1]["id"], "n-conformance");
        delivery
    }

    fn accepted(&self) -> usize {
        let device = Self::device(Case::Accepted);
        let got = self.fake.received(&device);
        for r in &got {
            assert_eq!(r.header("apns-topic"), Some(apns::TOPIC));
            assert_eq!(r.header("apns-push-type"), Some("alert"));
            assert_eq!(r.header("apns-collapse-id"), Some("n-conformance"));
            let payload: serde_json::Value =
                serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(payload["aps"]["alert"]["title"], "Conformance");
            assert_eq!(payload["aps"]["badge"], 3);
        }
        // The forged provider token reached the fake and was refused there.
        let forged = self.fake.received(&Self::device(Case::BadCredentials));
        assert_eq!(forged.len(), 1);
        got.len()
    }
}

/// The raw MIME message of an SES `SendEmail` request.
fn raw_mime(r: &herald_tests::provider::Received) -> String {
    use base64::Engine;
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let data = body["Content"]["Raw"]["Data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

// --- Outbound webhook: a Standard Webhooks receiver ---------------------------------------------

struct WebhookReceiver {
    receiver: Provider,
    /// The secret the receiver verifies signatures with.
    secret: String,
}

impl WebhookReceiver {
    fn adapter(timeout: Duration) -> WebhookSender {
        WebhookSender::new(EgressPolicy::new(true), timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    fn hook(&self, path: &str, secret: &str) -> Webhook {
        Webhook {
            id: format!("wh-{}", path.trim_start_matches("/hook/")),
            url: format!("{}{path}", self.receiver.url),
            events: vec![WebhookEventType::NotificationCreated],
            secret: secret.to_owned(),
            created_at: chrono::Utc::now(),
        }
    }

    fn message() -> WebhookMessage {
        let n = notification();
        WebhookMessage {
            id: format!("evt-{}.notification.created", n.id),
            kind: WebhookEventType::NotificationCreated,
            notification_id: n.id.clone(),
            at: n.created_at,
            body: json!({"type": "notification.created", "timestamp": n.created_at, "data": n})
                .to_string(),
        }
    }

    /// Whether `r` carries a valid signature for `secret`.
    fn signed_with(r: &herald_tests::provider::Received, secret: &str) -> bool {
        let id = r.header("webhook-id").unwrap_or_default();
        let timestamp = r
            .header("webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        signature(secret, id, timestamp, &r.body)
            .is_ok_and(|s| Some(s.as_str()) == r.header("webhook-signature"))
    }
}

impl Fake for WebhookReceiver {
    const TRIMS: bool = false;

    async fn start() -> Option<Self> {
        let receiver = Provider::start().await;
        let secret = new_secret();
        let expected = secret.clone();
        // A receiver refuses what its secret does not verify, as the reference verifiers do.
        receiver.guard(std::sync::Arc::new(move |r| {
            (!Self::signed_with(r, &expected)).then(|| answer(401))
        }));
        Some(WebhookReceiver { receiver, secret })
    }

    async fn call(&self, case: Case) -> Outcome {
        let reply = match case {
            Case::Accepted => answer(204),
            Case::Gone => answer(410),
            Case::Throttled => answer(429).header("Retry-After", "7"),
            Case::Unavailable => answer(503),
            Case::Timeout => hold(),
            Case::Oversized => answer(413),
            // Never reached: the guard answers first.
            Case::BadCredentials => answer(204),
        };
        let path = format!("/hook/{}", case.name());
        self.receiver.always(&path, reply);
        let secret = match case {
            Case::BadCredentials => new_secret(),
            _ => self.secret.clone(),
        };
        Self::adapter(case.timeout())
            .send(&self.hook(&path, &secret), &Self::message())
            .await
    }

    async fn deliver_oversized(&self, policy: &SendPolicy) -> Delivery {
        let path = "/hook/oversized-then-accepted";
        self.receiver.queue(path, vec![answer(413)]);
        let delivery = policy
            .deliver(
                &Self::adapter(Duration::from_secs(30)),
                &self.hook(path, &self.secret),
                &Self::message(),
            )
            .await;
        assert_eq!(
            self.receiver.received(path).len(),
            1,
            "no smaller form, no resend"
        );
        delivery
    }

    fn accepted(&self) -> usize {
        let got = self.receiver.received("/hook/accepted");
        for r in &got {
            assert!(Self::signed_with(r, &self.secret));
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            assert_eq!(body["data"]["title"], "Conformance");
        }
        got.len()
    }
}

/// One test per adapter, each running the whole suite against its provider's fake.
macro_rules! conformance {
    ($($name:ident: $fake:ty),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                conformance::<$fake>().await;
            }
        )*
    };
}

conformance! {
    web_push_conforms: WebPushFake,
    twilio_sms_conforms: TwilioFake,
    smtp_conforms: SmtpFake,
    ses_conforms: SesFake,
    fcm_conforms: FcmConformance,
    apns_conforms: ApnsConformance,
    webhook_conforms: WebhookReceiver,
}
