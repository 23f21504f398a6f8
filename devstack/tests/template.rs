//! Reading templates: the repository's own template.yaml, the fixture template (every intrinsic
//! devstack resolves), and clear failures on what it cannot honour.

use std::collections::BTreeMap;
use std::time::Duration;

use devstack::template::{self, KafkaSourceKind, LoadOptions, RouteAuth, TemplateError};

fn options(params: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        parameters: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        http_endpoint: "http://127.0.0.1:3000".into(),
        ws_endpoint: "ws://127.0.0.1:3001".into(),
        ..LoadOptions::default()
    }
}

#[test]
fn the_repository_template_wires_the_api_and_the_relay() -> Result<(), TemplateError> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let stack = template::load(std::path::Path::new(path), &options(&[]))?;
    let names: Vec<&str> = stack.functions.iter().map(|f| f.binary.as_str()).collect();
    assert_eq!(names, ["api", "outbox-relay"]);
    let api = stack
        .function("api")
        .map(|f| (f.timeout, f.environment.clone()));
    let (timeout, env) = api.unwrap_or_default();
    assert_eq!(timeout, Duration::from_secs(10));
    assert!(
        env.contains_key("REDIS_URL")
            && env.contains_key("KAFKA_BROKERS")
            && env.contains_key("RUST_LOG"),
        "{env:?}"
    );
    let http = stack.http_api.clone().unwrap_or_default();
    let key = |k: &str| {
        http.routes
            .iter()
            .find(|r| r.route_key() == k)
            .map(|r| r.auth.clone())
    };
    assert_eq!(
        key("POST /v1/notifications"),
        Some(RouteAuth::Jwt {
            authorizer: "HeraldJwt".into(),
            scopes: vec!["notifications:write".into()]
        })
    );
    assert_eq!(
        key("GET /v1/notifications/{id}"),
        Some(RouteAuth::Jwt {
            authorizer: "HeraldJwt".into(),
            scopes: vec![]
        })
    );
    assert_eq!(key("GET /health"), Some(RouteAuth::None));
    assert_eq!(http.routes.len(), 13);
    assert_eq!(
        http.authorizers.get("HeraldJwt").map(|a| a.header.as_str()),
        Some("authorization")
    );
    let relay = stack
        .function("outbox-relay")
        .map(|f| f.schedules.clone())
        .unwrap_or_default();
    assert_eq!(
        relay.first().map(|s| s.every),
        Some(Duration::from_secs(60))
    );
    Ok(())
}

#[test]
fn the_fixture_template_resolves_every_supported_intrinsic() -> Result<(), TemplateError> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/template.yaml");
    let stack = template::load(
        std::path::Path::new(path),
        &options(&[("FixtureDir", "/tmp/x")]),
    )?;
    let echo = stack
        .function("fixture-echo")
        .map(|f| f.environment.clone())
        .unwrap_or_default();
    let get = |k: &str| echo.get(k).map(String::as_str);
    assert_eq!(get("FIXTURE_DIR"), Some("/tmp/x"));
    assert_eq!(get("GREETING"), Some("hello-local"));
    assert_eq!(
        get("FROM_TEMPLATE"),
        Some("function"),
        "the function's variables override Globals"
    );
    assert_eq!(get("JOINED"), Some("a-y"));
    assert_eq!(get("SUBBED"), Some("us-east-1/local/${Literal}"));
    assert_eq!(get("NOVALUE"), None, "AWS::NoValue removes the variable");
    let cloud = template::load(
        std::path::Path::new(path),
        &options(&[("FixtureDir", "/tmp/x"), ("Stage", "cloud")]),
    )?;
    let env = cloud
        .function("fixture-echo")
        .map(|f| f.environment.clone())
        .unwrap_or_default();
    assert_eq!(env.get("GREETING").map(String::as_str), Some("hello-cloud"));
    assert_eq!(env.get("NOVALUE").map(String::as_str), Some("set"));

    let ws = stack
        .websocket_api
        .clone()
        .ok_or_else(|| TemplateError::Invalid {
            at: "test".into(),
            message: "no ws api".into(),
        })?;
    assert_eq!(ws.route_selection_field, "action");
    assert_eq!(ws.stage.as_deref(), Some("local"));
    let mut keys: Vec<_> = ws
        .routes
        .iter()
        .map(|r| (r.route_key.as_str(), r.function.as_str(), r.two_way))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("$connect", "fixture-ws", false),
            ("$default", "fixture-ws", false),
            ("$disconnect", "fixture-ws", false),
            ("echo", "fixture-ws", true)
        ]
    );

    let batch = stack
        .function("fixture-kafka-batch")
        .and_then(|f| f.kafka.first().cloned());
    let batch = batch.ok_or_else(|| TemplateError::Invalid {
        at: "test".into(),
        message: "no mapping".into(),
    })?;
    assert_eq!(
        (batch.batch_size, batch.consumer_group_id.as_str()),
        (3, "dt-batch-group")
    );
    assert!(matches!(batch.kind, KafkaSourceKind::Msk { .. }));
    let dlq = stack
        .function("fixture-kafka-dlq")
        .and_then(|f| f.kafka.first().cloned());
    assert_eq!(dlq.as_ref().and_then(|d| d.maximum_retry_attempts), Some(1));
    assert_eq!(
        dlq.as_ref().map(|d| d.batching_window),
        Some(Duration::from_millis(200))
    );
    let cors = stack.http_api.and_then(|h| h.cors).unwrap_or_default();
    assert_eq!(cors.allow_origins, ["http://app.test", "http://other.test"]);
    Ok(())
}

fn fails_with(yaml: &str) -> String {
    match template::parse(yaml, &options(&[])) {
        Ok(_) => panic!("expected the template to be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_intrinsics_and_wiring_fail_with_their_place() {
    let e = fails_with(
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Environment:\n        Variables:\n          X: !ImportValue shared-thing\n",
    );
    assert!(
        e.contains("Resources.F.Properties.Environment.Variables.X")
            && e.contains("Fn::ImportValue"),
        "{e}"
    );

    let e = fails_with("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Events:\n        Q: {Type: SQS, Properties: {Queue: q}}\n");
    assert!(e.contains("event type \"SQS\""), "{e}");

    let e =
        fails_with("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties: {}\n");
    assert!(e.contains("BuildProperties.Binary"), "{e}");

    let e = fails_with("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Environment: {Variables: {X: !GetAtt Nope.Arn}}\n");
    assert!(e.contains("no resource named Nope"), "{e}");

    let e = fails_with("Parameters:\n  P: {Type: String}\nResources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n");
    assert!(
        e.contains("Parameters.P") && e.contains("no Default"),
        "{e}"
    );

    let e = fails_with("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Events:\n        S: {Type: Schedule, Properties: {Schedule: cron(0 * * * ? *)}}\n");
    assert!(e.contains("cron(0 * * * ? *)"), "{e}");
}
