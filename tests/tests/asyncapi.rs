//! `/asyncapi.json`: served next to `/openapi.json`, and every example it carries is valid by its
//! own schemas. (Every frame the realtime and end-to-end tests receive is checked against it by
//! `herald_tests::frames`, inside `WsClient`.)

use herald_tests::{frames, Call, TestEnv};
use serde_json::Value;

#[test]
fn every_example_in_the_asyncapi_document_validates_against_its_message() {
    let doc = api::asyncapi::document();
    let messages = doc["components"]["messages"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(messages.len() >= 15, "{} messages", messages.len());
    let mut checked = 0;
    for (name, message) in &messages {
        for example in message["examples"].as_array().into_iter().flatten() {
            if let Err(e) = frames::check_message(name, &example["payload"]) {
                panic!("example {}: {e}", example["name"]);
            }
            checked += 1;
        }
    }
    assert!(checked >= messages.len());
    // And the document refuses what the server never sends.
    let stray: Value = serde_json::json!({"type": "pong", "extra": 1});
    assert!(frames::check_frame(&stray).is_err());
    let unknown: Value = serde_json::json!({"type": "notification.exploded"});
    assert!(frames::check_frame(&unknown).is_err());
}

#[tokio::test]
async fn the_asyncapi_document_is_served_next_to_the_openapi_one() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let r = Call::get("/asyncapi.json").send(&env.api()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["asyncapi"], "3.0.0");
    assert_eq!(&r.body, api::asyncapi::document());
}
