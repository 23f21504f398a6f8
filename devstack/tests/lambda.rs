//! The Lambda side through real processes: the Invoke API reaching the fixture binary, the
//! Runtime API contract when a runtime crashes mid-invocation, the 6 MB payload limits, and each
//! function's environment.

mod common;

use common::{bounded, http, stack};
use serde_json::{json, Value};

fn invoke_url(name: &str) -> String {
    format!(
        "http://{}/2015-03-31/functions/{name}/invocations",
        stack().invoke
    )
}

#[tokio::test]
async fn invoke_api_reaches_the_real_binary_with_an_events_fixture() {
    bounded(60, async {
        // A real payload from events/ when the repository has one, else a minimal one.
        let events = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../events"));
        let fixture = std::fs::read_dir(events)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("apigw-http-") && n.ends_with(".json"))
            });
        let payload: Value = match &fixture {
            Some(p) => serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_default())
                .unwrap_or(json!({})),
            None => json!({ "hello": "world" }),
        };
        let resp = http()
            .post(invoke_url("fixture-echo"))
            .json(&payload)
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-amz-function-error").is_none());
        let body: Value = resp.json().await.unwrap_or_default();
        if fixture.is_some() {
            // An HTTP API event gets an HTTP API answer from the fixture.
            assert_eq!(body["statusCode"], 200, "{body}");
        } else {
            assert_eq!(body["echo"], payload);
        }
        let missing = http()
            .post(invoke_url("no-such-function"))
            .body("{}")
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok()),
            Some("ResourceNotFoundException")
        );
    })
    .await;
}

#[tokio::test]
async fn a_crash_mid_invocation_fails_that_invocation_and_the_next_succeeds() {
    bounded(60, async {
        let crash = http()
            .post(invoke_url("fixture-echo"))
            .json(&json!({ "action": "crash" }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        assert_eq!(crash.status(), 200);
        assert_eq!(
            crash
                .headers()
                .get("x-amz-function-error")
                .and_then(|v| v.to_str().ok()),
            Some("Unhandled")
        );
        let body: Value = crash.json().await.unwrap_or_default();
        assert_eq!(body["errorType"], "Runtime.ExitError", "{body}");

        let fail = http()
            .post(invoke_url("fixture-echo"))
            .json(&json!({ "action": "fail" }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        assert_eq!(
            fail.headers()
                .get("x-amz-function-error")
                .and_then(|v| v.to_str().ok()),
            Some("Unhandled")
        );
        let body: Value = fail.json().await.unwrap_or_default();
        assert_eq!(body["errorMessage"], "asked to fail", "{body}");

        let ok = http()
            .post(invoke_url("fixture-echo"))
            .json(&json!({ "n": 1 }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        assert_eq!(ok.status(), 200);
        assert!(ok.headers().get("x-amz-function-error").is_none());
        let body: Value = ok.json().await.unwrap_or_default();
        assert_eq!(body["echo"]["n"], 1);
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_invocation_is_answered_and_the_instance_recycled() {
    bounded(60, async {
        // fixture-echo's Timeout is 2 s.
        let slow = http()
            .post(invoke_url("fixture-echo"))
            .json(&json!({ "action": "sleep", "ms": 5000 }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        let body: Value = slow.json().await.unwrap_or_default();
        assert_eq!(body["errorType"], "Sandbox.Timedout", "{body}");
        let ok = http()
            .post(invoke_url("fixture-echo"))
            .json(&json!({ "action": "sleep", "ms": 10 }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        let body: Value = ok.json().await.unwrap_or_default();
        assert_eq!(body["slept"], 10, "{body}");
    })
    .await;
}

#[tokio::test]
async fn the_environment_follows_the_documented_precedence() {
    bounded(60, async {
        let resp = http()
            .post(invoke_url("fixture-ws"))
            .json(&json!({ "action": "env" }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        let env: Value = resp.json().await.unwrap_or_default();
        let s = stack();
        // devstack's own environment overrides a template variable...
        assert_eq!(env["GREETING"], "from-devstack-env");
        // ...template values stay otherwise...
        assert_eq!(env["FROM_TEMPLATE"], "template");
        // ...and devstack supplies its services and issuer.
        assert_eq!(env["KAFKA_BROKERS"], s.brokers.as_str());
        assert_eq!(env["JWT_ISSUER"], format!("http://{}", s.http));
        assert_eq!(
            env["JWKS_URL"],
            format!("http://{}/.well-known/jwks.json", s.http)
        );
        assert_eq!(
            env["CONNECTIONS_URL"],
            format!("http://{}/{}", s.ws, s.stage)
        );
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "fixture-ws");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(env["AWS_REGION"], "us-east-1");
        assert!(env["AWS_LAMBDA_LOG_STREAM_NAME"]
            .as_str()
            .is_some_and(|s| s.contains("[$LATEST]")));
        assert!(
            env.get("HOME").is_none(),
            "the process environment is not leaked wholesale"
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_invocations_start_more_instances() {
    bounded(60, async {
        let started = std::time::Instant::now();
        let calls = (0..3).map(|_| {
            http()
                .post(invoke_url("fixture-kafka-batch"))
                .json(&json!({ "action": "sleep", "ms": 700 }))
                .send()
        });
        let results = futures::future::join_all(calls).await;
        for r in results {
            let body: Value = r
                .unwrap_or_else(|e| panic!("invoke: {e}"))
                .json()
                .await
                .unwrap_or_default();
            assert_eq!(body["slept"], 700, "{body}");
        }
        // Three 700 ms invocations on one instance would take 2.1 s.
        assert!(
            started.elapsed() < std::time::Duration::from_millis(2000),
            "took {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn payloads_over_6_mb_are_refused_and_answers_over_it_fail_as_lambda_does() {
    bounded(120, async {
        const MB6: usize = 6 * 1024 * 1024;
        let invoke = |body: Vec<u8>| async move {
            http()
                .post(invoke_url("fixture-echo"))
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("invoke: {e}"))
        };
        let header = |resp: &reqwest::Response, name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // The request: 413 RequestEntityTooLargeException, before any instance sees it.
        let mut big = br#"{"action":"echo","pad":""#.to_vec();
        big.resize(MB6, b'a');
        big.extend_from_slice(br#""}"#);
        let refused = invoke(big).await;
        assert_eq!(refused.status(), 413);
        assert_eq!(
            header(&refused, "x-amzn-errortype").as_deref(),
            Some("RequestEntityTooLargeException")
        );

        // The answer: 200 with X-Amz-Function-Error and Function.ResponseSizeTooLarge.
        let over = invoke(
            json!({"action": "sized", "bytes": MB6 + 200})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(over.status(), 200);
        assert_eq!(
            header(&over, "x-amz-function-error").as_deref(),
            Some("Unhandled")
        );
        let error: Value = over.json().await.unwrap_or_default();
        assert_eq!(
            error["errorType"], "Function.ResponseSizeTooLarge",
            "{error}"
        );
        // An answer of exactly 6,291,556 bytes (a JSON string: two quotes) is within the limit.
        let at_limit = invoke(
            json!({"action": "sized", "bytes": MB6 + 98})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(
            (
                at_limit.status().as_u16(),
                header(&at_limit, "x-amz-function-error")
            ),
            (200, None)
        );
        assert_eq!(
            at_limit.bytes().await.map(|b| b.len()).unwrap_or(0),
            MB6 + 100
        );
    })
    .await;
}
