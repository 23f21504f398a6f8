//! Per-tenant limits through `api::handle` on real Redis: `TENANT_LIMITS` overrides apply to
//! their tenant only, and a tenant over its quota of creates (`TENANT_CREATES_PER_MINUTE`) gets
//! 429 `quota-exceeded` with `Retry-After` and nothing stored, while other tenants create as
//! before. Every limit here refills at most once a minute (30 s a create and slower), and each
//! test's requests follow one another at once, so no outcome depends on the machine's speed.

use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::config::{Env, InboxSettings};
use shared::store::{RateDecision, RateLimiter};
use shared::tenant::Tenant;

fn note(user: &str) -> Value {
    json!({"userId": user, "type": "comment", "title": "hi", "body": "hello"})
}

fn settings(pairs: &[(&str, &str)]) -> InboxSettings {
    InboxSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn tenant(name: &str) -> Tenant {
    Tenant::parse(name).unwrap_or_else(|| panic!("{name} is a valid tenant"))
}

/// A create by the service `svc` of `tenant` (`None`: no claim, the default tenant).
fn create_in(tenant: Option<&str>, body: &Value) -> Call {
    let call = Call::post("/v1/notifications").service("svc").json(body);
    match tenant {
        Some(t) => call.tenant(t),
        None => call,
    }
}

/// `user`'s counts in `tenant`.
async fn total(deps: &api::Deps, tenant: Option<&str>, user: &str) -> Option<u64> {
    let call = Call::get("/v1/notifications/counts").user(user);
    let call = match tenant {
        Some(t) => call.tenant(t),
        None => call,
    };
    let r = call.send(deps).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["total"].as_u64()
}

#[tokio::test]
async fn a_tenants_rate_override_applies_to_it_and_not_to_others() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = settings(&[(
        "TENANT_LIMITS",
        r#"{"acme": {"RATE_SENDER_BURST": 2, "RATE_USER_MUTATION_BURST": 1, "RATE_USER_MUTATION_PER_MINUTE": 1}}"#,
    )]);
    let limiter = RateLimiter::new(env.conn.clone(), env.keys.clone(), &inbox);
    let acme = limiter.for_tenant(&tenant("acme"));
    let beta = limiter.for_tenant(&tenant("beta"));
    assert_eq!(acme.per_sender().burst, 2);
    assert_eq!(beta.per_sender().burst, inbox.per_sender.burst);
    assert_eq!(limiter.per_sender().burst, inbox.per_sender.burst);
    // acme's one mutation a minute: the second is refused; beta's and the default tenant's
    // same user id are other users with the deployment's 60.
    for (who, limiter, allowed) in [
        ("acme", &acme, 1),
        ("beta", &beta, 5),
        ("default", &limiter, 5),
    ] {
        let mut decisions = vec![];
        for _ in 0..allowed {
            decisions.push(
                limiter
                    .check_user_mutation("ann")
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        assert!(
            decisions.iter().all(|d| *d == RateDecision::Allowed),
            "{who}: {decisions:?}"
        );
    }
    let refused = acme
        .check_user_mutation("ann")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(refused, RateDecision::Limited { .. }),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_tenant_over_its_quota_gets_429_and_nothing_is_stored_while_others_create() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    // acme: 2 creates a minute; everyone else unlimited (the deployment's default).
    let inbox = settings(&[(
        "TENANT_LIMITS",
        r#"{"acme": {"TENANT_CREATES_PER_MINUTE": 2}}"#,
    )]);
    let deps = env.api_with(inbox, env.bus());

    // A batch larger than the whole quota never fits: refused, and says so.
    let batch = json!({"userIds": ["a1", "a2", "a3"], "type": "t", "title": "x", "body": "b"});
    let r = Call::post("/v1/notifications/batch")
        .service("svc")
        .tenant("acme")
        .json(&batch)
        .send(&deps)
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 2 per minute")),
        "{}",
        r.body
    );

    // Each recipient counts one: a batch of two uses acme's quota up.
    let batch = json!({"userIds": ["a1", "a2"], "type": "t", "title": "x", "body": "b"});
    let r = Call::post("/v1/notifications/batch")
        .service("svc")
        .tenant("acme")
        .json(&batch)
        .send(&deps)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = create_in(Some("acme"), &note("a3")).send(&deps).await;
    assert_eq!(
        (r.status, r.content_type()),
        (429, "application/problem+json"),
        "{}",
        r.body
    );
    assert_eq!(r.body["type"], "https://herald.dev/problems/quota-exceeded");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("tenant `acme`")),
        "{}",
        r.body
    );
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(
        total(&deps, Some("acme"), "a3").await,
        Some(0),
        "nothing stored"
    );

    // Another tenant and the default tenant are not affected.
    for (other, user) in [(Some("beta"), "b3"), (None, "d3")] {
        let r = create_in(other, &note(user)).send(&deps).await;
        assert_eq!(r.status, 201, "{other:?}: {}", r.body);
        assert_eq!(total(&deps, other, user).await, Some(1), "{other:?}");
    }
    assert_eq!(total(&deps, Some("acme"), "a3").await, Some(0));
}

#[tokio::test]
async fn what_a_request_did_not_create_is_given_back_to_the_quota() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = settings(&[
        ("TENANT_CREATES_PER_MINUTE", "2"),
        ("RATE_RECIPIENT_BURST", "1"),
        ("RATE_RECIPIENT_PER_MINUTE", "1"),
    ]);
    let deps = env.api_with(inbox, env.bus());
    // The default tenant's quota is 2. A retry with the same Idempotency-Key replays: no charge.
    for _ in 0..3 {
        let r = create_in(None, &note("bo"))
            .header("Idempotency-Key", "k1")
            .send(&deps)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // A recipient over its own limit is refused and costs the quota nothing.
    for _ in 0..3 {
        let r = create_in(None, &note("bo")).send(&deps).await;
        assert_eq!(
            r.body["type"], "https://herald.dev/problems/rate-limited",
            "{}",
            r.body
        );
    }
    // An unknown topic's broadcast is 404 and costs nothing.
    let r = Call::post("/v1/topics/nobody/notifications")
        .service("svc")
        .json(&json!({"type": "t", "title": "x", "body": "b"}))
        .send(&deps)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    // So one create of the two is left, then the quota is used up.
    let r = create_in(None, &note("cy")).send(&deps).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = create_in(None, &note("dee")).send(&deps).await;
    assert_eq!(
        r.body["type"], "https://herald.dev/problems/quota-exceeded",
        "{}",
        r.body
    );
    assert_eq!(total(&deps, None, "dee").await, Some(0));
}

#[tokio::test]
async fn scheduled_creates_count_against_the_quota() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let inbox = settings(&[(
        "TENANT_LIMITS",
        r#"{"acme": {"TENANT_CREATES_PER_MINUTE": 1}}"#,
    )]);
    let deps = env.api_with(inbox, env.bus());
    let send_at = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let mut later = note("sam");
    later["sendAt"] = json!(send_at);
    let r = create_in(Some("acme"), &later).send(&deps).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = create_in(Some("acme"), &later).send(&deps).await;
    assert_eq!(
        r.body["type"], "https://herald.dev/problems/quota-exceeded",
        "{}",
        r.body
    );
}
