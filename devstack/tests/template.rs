//! Reading templates: the repository's own template.yaml, the fixture template (every intrinsic
//! devstack resolves), and clear failures on what it cannot honour.

use std::collections::BTreeMap;
use std::time::Duration;

use devstack::template::{
    self, KafkaEventSource, KafkaSourceKind, LoadOptions, RouteAuth, StartingPosition,
    TemplateError,
};

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
    for expected in ["api", "ws", "delivery", "outbox-relay"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
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
    // Switched-off features leave no variable behind (AWS::NoValue), so devstack's functions see
    // no SASL, no MSK and no secret references.
    for absent in [
        "KAFKA_SASL_MECHANISM",
        "KAFKA_MSK_CLUSTER_ARN",
        "KAFKA_SASL_PASSWORD_SECRET_ARN",
        "REDIS_URL_SECRET_ARN",
    ] {
        assert!(!env.contains_key(absent), "{absent} in {env:?}");
    }
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

fn delivery_trigger(params: &[(&str, &str)]) -> Result<KafkaEventSource, TemplateError> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let stack = template::load(std::path::Path::new(path), &options(params))?;
    let env = stack
        .function("delivery")
        .map(|f| f.environment.clone())
        .unwrap_or_default();
    let mut sources = stack
        .function("delivery")
        .map(|f| f.kafka.clone())
        .unwrap_or_default();
    assert_eq!(sources.len(), 1, "one trigger whatever the flavour");
    let source = sources.remove(0);
    assert_eq!(
        env.get("KAFKA_REPORT_BATCH_ITEM_FAILURES")
            .map(String::as_str),
        Some(if source.report_batch_item_failures {
            "true"
        } else {
            "false"
        }),
        "the function answers the way its trigger reads answers"
    );
    Ok(source)
}

#[test]
fn the_repository_template_chooses_the_kafka_flavour_and_error_controls(
) -> Result<(), TemplateError> {
    // Default: self-managed Kafka, provisioned pollers with the error controls, failures to the
    // on-failure queue.
    let d = delivery_trigger(&[])?;
    assert_eq!(d.kind, KafkaSourceKind::SelfManaged);
    assert_eq!(
        (d.topics.as_slice(), d.consumer_group_id.as_str()),
        (&["notification-events".to_owned()][..], "herald-delivery")
    );
    assert_eq!(d.batch_size, 100);
    assert_eq!(d.batching_window, Duration::ZERO);
    assert!(d.report_batch_item_failures && d.bisect_batch_on_function_error);
    assert_eq!(d.maximum_retry_attempts, Some(100));
    assert_eq!(
        d.on_failure.as_deref(),
        Some("arn:aws:sqs:us-east-1:000000000000:KafkaFailureQueue")
    );
    // On-demand pollers: no error controls; a failure fails the invocation (whole-batch retry).
    let d = delivery_trigger(&[("KafkaErrorControls", "false")])?;
    assert!(!d.report_batch_item_failures && !d.bisect_batch_on_function_error);
    assert_eq!(d.maximum_retry_attempts, None);
    assert!(d.on_failure.is_some());

    // MSK: the same consumer block reads the cluster; the functions sign in with IAM.
    let arn = "arn:aws:kafka:us-east-1:000000000000:cluster/herald/abc-1";
    let msk = [("KafkaFlavour", "MSK"), ("MskClusterArn", arn)];
    let d = delivery_trigger(&msk)?;
    assert_eq!(
        d.kind,
        KafkaSourceKind::Msk {
            stream_arn: arn.into()
        }
    );
    assert_eq!(d.consumer_group_id, "herald-delivery");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let stack = template::load(std::path::Path::new(path), &options(&msk))?;
    let env = stack
        .function("api")
        .map(|f| f.environment.clone())
        .unwrap_or_default();
    assert_eq!(
        env.get("KAFKA_SASL_MECHANISM").map(String::as_str),
        Some("AWS_MSK_IAM")
    );
    assert_eq!(
        env.get("KAFKA_MSK_CLUSTER_ARN").map(String::as_str),
        Some(arn)
    );

    // The retry budget is a parameter.
    let d = delivery_trigger(&[("KafkaMaximumRetryAttempts", "4")])?;
    assert!(d.report_batch_item_failures && d.bisect_batch_on_function_error);
    assert_eq!(d.maximum_retry_attempts, Some(4));

    // SASL/SCRAM: the producers get the mechanism and references to the secret's fields.
    let secret = "arn:aws:secretsmanager:us-east-1:000000000000:secret:herald/kafka-AbCdEf";
    let stack = template::load(
        std::path::Path::new(path),
        &options(&[("KafkaSaslSecretArn", secret)]),
    )?;
    let env = stack
        .function("outbox-relay")
        .map(|f| f.environment.clone())
        .unwrap_or_default();
    assert_eq!(
        env.get("KAFKA_SASL_MECHANISM").map(String::as_str),
        Some("SCRAM-SHA-512")
    );
    assert_eq!(
        env.get("KAFKA_SASL_PASSWORD_SECRET_ARN").cloned(),
        Some(format!("{secret}#password"))
    );
    Ok(())
}

// Over 100 lines on purpose: one assertion per resolved value of the fixture template, so a
// reader sees every supported intrinsic next to what it resolves to.
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
    // The other mapping of the same function, chosen by its Condition.
    let self_managed = template::load(
        std::path::Path::new(path),
        &options(&[
            ("FixtureDir", "/tmp/x"),
            ("BatchSource", "SelfManagedKafka"),
        ]),
    )?;
    let sources = self_managed
        .function("fixture-kafka-batch")
        .map(|f| f.kafka.clone())
        .unwrap_or_default();
    assert_eq!(sources.len(), 1, "{sources:?}");
    let m = &sources[0];
    assert_eq!(
        (
            &m.kind,
            m.name.as_str(),
            m.consumer_group_id.as_str(),
            m.batch_size,
            m.starting_position
        ),
        (
            &KafkaSourceKind::SelfManaged,
            "BatchSelfManagedTrigger",
            "dt-batch-self-managed",
            4,
            StartingPosition::Latest
        )
    );
    assert!(m.report_batch_item_failures && m.bisect_batch_on_function_error);
    assert_eq!(m.maximum_retry_attempts, Some(2));
    assert_eq!(
        m.on_failure.as_deref(),
        Some("arn:aws:sqs:us-east-1:000000000000:BatchFailures")
    );
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

    let function = "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n";
    let e = fails_with(&format!("{function}  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties: {{FunctionName: !Ref F, EventSourceArn: 'arn:aws:sqs:us-east-1:1:q', BatchSize: 10}}\n"));
    assert!(
        e.contains("Resources.M.Properties") && e.contains("other than Kafka"),
        "{e}"
    );
    let e = fails_with(&format!("{function}  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties: {{FunctionName: elsewhere, Topics: [t], SelfManagedEventSource: {{Endpoints: {{KafkaBootstrapServers: ['h:9092']}}}}}}\n"));
    assert!(
        e.contains("Resources.M") && e.contains("\"elsewhere\" is not a function"),
        "{e}"
    );
}
