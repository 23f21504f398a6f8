//! `POST/GET /v1/devices`, `DELETE /v1/devices/{id}` through the api function's handler on real
//! Redis: registration and its limits, token shapes, another user's device, and a token moving
//! to its newest owner (never on two users).

use std::time::Duration;

use herald_tests::{Call, TestEnv};
use serde_json::{json, Value};
use shared::config::RateLimit;
use shared::devices::Device;

fn user() -> String {
    format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// An APNs device token: 64 hex characters, distinct per `n`.
fn apns_token(n: u32) -> String {
    format!("{n:08x}{}", "ab".repeat(28))
}

/// An FCM registration token in the real shape (`<instance id>:APA91b…`, about 160 characters).
fn fcm_token(n: u32) -> String {
    format!("c{n:010}:APA91b{}", "Xy_9-kLm".repeat(18))
}

async fn api(env: &TestEnv) -> api::Deps {
    env.api_with(TestEnv::unlimited(), env.bus())
}

async fn ids(api: &api::Deps, user: &str) -> Vec<String> {
    let r = Call::get("/v1/devices").user(user).send(api).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect()
}

async fn register(api: &api::Deps, user: &str, body: Value) -> herald_tests::http::Reply {
    Call::post("/v1/devices")
        .user(user)
        .json(&body)
        .send(api)
        .await
}

#[tokio::test]
async fn devices_are_registered_listed_and_deleted() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let api = api(&env).await;
    let alice = user();

    let r = register(
        &api,
        &alice,
        json!({"platform": "ios", "token": apns_token(1), "appId": "com.example.app"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ios_id = r.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(r.body["platform"], "ios");
    assert!(r.body["createdAt"].is_string(), "{}", r.body);
    assert!(
        r.body.get("token").is_none(),
        "the token is not echoed: {}",
        r.body
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/devices/{ios_id}").as_str())
    );
    let r = register(
        &api,
        &alice,
        json!({"platform": "android", "token": fcm_token(1)}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let android_id = r.body["id"].as_str().unwrap_or_default().to_owned();
    // The same token again replaces the entry.
    let r = register(
        &api,
        &alice,
        json!({"platform": "ios", "token": apns_token(1)}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (200, Some(ios_id.as_str()))
    );

    // Oldest first; the replaced entry is as new as its last registration.
    assert_eq!(
        ids(&api, &alice).await,
        vec![android_id.clone(), ios_id.clone()]
    );
    let r = Call::get("/v1/devices").user(&alice).send(&api).await;
    assert!(r.body["items"][0].get("token").is_none(), "{}", r.body);

    // Another user's device is out of reach.
    let r = Call::delete(&format!("/v1/devices/{ios_id}"))
        .user("mallory")
        .send(&api)
        .await;
    assert_eq!(
        (r.status, r.content_type()),
        (404, "application/problem+json")
    );
    let r = Call::delete(&format!("/v1/devices/{ios_id}"))
        .user(&alice)
        .send(&api)
        .await;
    assert_eq!(r.status, 204);
    let r = Call::delete(&format!("/v1/devices/{ios_id}"))
        .user(&alice)
        .send(&api)
        .await;
    assert_eq!(r.status, 404, "deleted once");
    assert_eq!(ids(&api, &alice).await, vec![android_id.clone()]);
    // Deleting clears the token index too: only the android device's owner key is left.
    let owners: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains("{dev:"))
        .collect();
    assert_eq!(owners, vec![env.keys.device_owner(&android_id)]);

    // No token, or a subject that would break the user's hash tag: 401, nothing stored.
    let r = Call::get("/v1/devices").send(&api).await;
    assert_eq!(r.status, 401);
    let r = register(
        &api,
        "{u:x}",
        json!({"platform": "ios", "token": apns_token(9)}),
    )
    .await;
    assert_eq!(
        (r.status, r.content_type()),
        (401, "application/problem+json")
    );
    assert!(env.keys().await.iter().all(|k| !k.contains("{u:{u:x}")));
}

#[tokio::test]
async fn the_twenty_first_device_is_refused_and_nothing_is_stored() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let api = api(&env).await;
    let alice = user();
    for n in 0..20 {
        let r = register(
            &api,
            &alice,
            json!({"platform": "android", "token": fcm_token(n)}),
        )
        .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
    }
    let r = register(
        &api,
        &alice,
        json!({"platform": "android", "token": fcm_token(20)}),
    )
    .await;
    assert_eq!(
        (r.status, r.content_type()),
        (422, "application/problem+json"),
        "{}",
        r.body
    );
    assert_eq!(r.error_fields(), vec!["token".to_owned()]);
    assert_eq!(ids(&api, &alice).await.len(), 20);
    let refused = Device::id_for(shared::devices::Platform::Android, &fcm_token(20));
    assert!(!ids(&api, &alice).await.contains(&refused));
    let owner: Option<String> =
        redis::AsyncCommands::get(&mut env.conn.clone(), env.keys.device_owner(&refused))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(owner, None, "a refused registration leaves no owner record");
    // Re-registering one already held is still fine at the cap.
    let r = register(
        &api,
        &alice,
        json!({"platform": "android", "token": fcm_token(3)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn malformed_devices_are_422_problems_and_nothing_is_stored() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let api = api(&env).await;
    let alice = user();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"platform": "windows", "token": apns_token(1)}),
            "platform",
        ),
        (json!({"platform": "ios", "token": "abc"}), "token"),
        (
            json!({"platform": "ios", "token": "zz".repeat(32)}),
            "token",
        ),
        (json!({"platform": "ios", "token": fcm_token(1)}), "token"),
        (
            json!({"platform": "android", "token": apns_token(1)}),
            "token",
        ),
        (
            json!({"platform": "android", "token": "a".repeat(4097)}),
            "token",
        ),
        (
            json!({"platform": "android", "token": format!("{} x", fcm_token(1))}),
            "token",
        ),
        (
            json!({"platform": "android", "token": fcm_token(1), "appId": "com example"}),
            "appId",
        ),
        (
            json!({"platform": "android", "token": fcm_token(1), "extra": 1}),
            "extra",
        ),
        (json!({"platform": "android"}), "body"),
    ];
    for (body, field) in cases {
        let r = register(&api, &alice, body.clone()).await;
        assert_eq!(
            (r.status, r.content_type()),
            (422, "application/problem+json"),
            "{body}: {}",
            r.body
        );
        assert_eq!(
            r.error_fields(),
            vec![field.to_owned()],
            "{body}: {}",
            r.body
        );
    }
    assert!(ids(&api, &alice).await.is_empty());
    assert!(
        env.keys()
            .await
            .iter()
            .all(|k| !k.contains(":devices") && !k.contains("{dev:")),
        "{:?}",
        env.keys().await
    );
}

#[tokio::test]
async fn a_token_moves_to_its_newest_owner() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let api = api(&env).await;
    let (alice, bob) = (user(), user());
    let phone = json!({"platform": "android", "token": fcm_token(7)});
    let r = register(&api, &alice, phone.clone()).await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    // Bob signs in on Alice's old phone.
    let r = register(&api, &bob, phone.clone()).await;
    assert_eq!((r.status, r.body["id"].as_str()), (201, Some(id.as_str())));
    assert_eq!(ids(&api, &alice).await, Vec::<String>::new());
    assert_eq!(ids(&api, &bob).await, vec![id.clone()]);
    assert_eq!(
        api.devices.owner(&id).await.ok().flatten().as_deref(),
        Some(bob.as_str())
    );
    // Alice can no longer delete it; back to Alice, and Bob loses it.
    let r = Call::delete(&format!("/v1/devices/{id}"))
        .user(&alice)
        .send(&api)
        .await;
    assert_eq!(r.status, 404);
    let r = register(&api, &alice, phone).await;
    assert_eq!(r.status, 201);
    assert_eq!(ids(&api, &bob).await, Vec::<String>::new());
    assert_eq!(ids(&api, &alice).await, vec![id.clone()]);
    // The sender's view agrees.
    let owned = api
        .devices
        .devices_owned(&alice)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(owned.len(), 1);
    assert!(api
        .devices
        .devices_owned(&bob)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());
}

#[tokio::test]
async fn device_changes_count_against_the_users_mutation_limit() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let mut inbox = TestEnv::unlimited();
    // Two changes, then one a day: the third is refused whatever the machine's speed.
    inbox.per_user_mutation = RateLimit {
        burst: 2,
        per_period: 1,
        period: Duration::from_secs(86_400),
    };
    let api = env.api_with(inbox, env.bus());
    let alice = user();
    for n in 0..2 {
        let r = register(
            &api,
            &alice,
            json!({"platform": "ios", "token": apns_token(n)}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = register(
        &api,
        &alice,
        json!({"platform": "ios", "token": apns_token(2)}),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let r = Call::delete("/v1/devices/anything")
        .user(&alice)
        .send(&api)
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    // Reading is not a change.
    assert_eq!(ids(&api, &alice).await.len(), 2);
}

#[tokio::test]
async fn the_device_routes_are_in_the_openapi_document_with_a_link_to_delete() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let api = api(&env).await;
    let doc = Call::get("/openapi.json").send(&api).await;
    for (path, method, id) in [
        ("/v1/devices", "post", "createDevice"),
        ("/v1/devices", "get", "listDevices"),
        ("/v1/devices/{id}", "delete", "deleteDevice"),
    ] {
        assert_eq!(
            doc.body["paths"][path][method]["operationId"], id,
            "{method} {path}"
        );
    }
    assert_eq!(
        doc.body["paths"]["/v1/devices"]["post"]["responses"]["201"]["links"]["delete"]
            ["operationId"],
        "deleteDevice"
    );
}
