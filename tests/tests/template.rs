//! template.yaml against the code and against devstack.
//!
//! - Every function crate (`functions/*`) has a function in the template building its binary
//!   (`Metadata.BuildProperties.Binary`), and every binary the template names has a crate, so
//!   `sam build` and `scripts/dev` build exactly the workspace's functions.
//! - devstack's view of the wiring (functions, HTTP routes, WebSocket routes, schedules, Kafka
//!   triggers) equals what the template says, read here independently with `serde_yaml` and
//!   none of devstack's code: local and cloud cannot drift through a reader bug.
//!
//! No service needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use devstack::template::{self, KafkaSourceKind, LoadOptions};
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn template_yaml() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml"))
        .unwrap_or_else(|e| panic!("template.yaml: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"))
}

/// `(logical id, resource)` of every resource of `kind`.
fn resources<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t.get("Resources")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
                .filter_map(|(k, r)| Some((k.as_str()?, r)))
                .collect()
        })
        .unwrap_or_default()
}

/// The binary of every `AWS::Serverless::Function`, by logical id.
fn binaries(t: &Value) -> BTreeMap<String, String> {
    resources(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, r)| {
            let binary = r
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{id} has no Metadata.BuildProperties.Binary"));
            let method = r
                .get("Metadata")
                .and_then(|m| m.get("BuildMethod"))
                .and_then(Value::as_str);
            assert_eq!(
                method,
                Some("rust-cargolambda"),
                "{id}: sam build must build it with cargo lambda"
            );
            (id.to_owned(), binary.to_owned())
        })
        .collect()
}

/// The binary targets of the workspace's `functions/*` packages (from `cargo metadata`).
fn function_crate_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    let functions = root().join("functions");
    let mut bins = BTreeSet::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        if !manifest.starts_with(&functions) {
            continue;
        }
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if is_bin {
                bins.insert(target["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    // Every folder under functions/ is a crate of the workspace.
    for entry in std::fs::read_dir(&functions)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().join("Cargo.toml").is_file() {
            let name = entry.file_name().to_string_lossy().to_string();
            assert!(
                meta["workspace_members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("functions/{name}")))),
                "functions/{name} is not a workspace member"
            );
        }
    }
    bins
}

#[test]
fn every_function_crate_has_its_template_function_and_back() {
    let t = template_yaml();
    let in_template: BTreeSet<String> = binaries(&t).into_values().collect();
    let crates = function_crate_binaries();
    assert!(!crates.is_empty(), "no function crates found");
    let missing: Vec<_> = crates.difference(&in_template).collect();
    let orphans: Vec<_> = in_template.difference(&crates).collect();
    assert!(
        missing.is_empty(),
        "function crates with no template function building them: {missing:?}"
    );
    assert!(
        orphans.is_empty(),
        "template functions whose Binary no crate under functions/ builds: {orphans:?}"
    );
    // The Globals every deploy build relies on.
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
    assert_eq!(
        globals["Architectures"].as_sequence().map(|a| a.len()),
        Some(1)
    );
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
}

/// A scalar as a string, with `!Ref Parameter` taken at the parameter's default.
fn scalar(t: &Value, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(tagged) if tagged.tag == "Ref" => {
            let name = tagged.value.as_str()?;
            scalar(t, &t["Parameters"][name]["Default"])
        }
        _ => None,
    }
}

/// Every `ConsumerGroupId` anywhere under `v` (both branches of an `!If` included).
fn consumer_groups(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("ConsumerGroupId") {
                    if let Some(g) = v.as_str() {
                        out.insert(g.to_owned());
                    }
                }
                consumer_groups(v, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| consumer_groups(i, out)),
        Value::Tagged(t) => consumer_groups(&t.value, out),
        _ => {}
    }
}

/// One Kafka trigger: (function binary, topics, consumer group, batch size).
type Trigger = (String, Vec<String>, String, usize);

#[derive(Debug, Default, PartialEq)]
struct Wiring {
    functions: BTreeSet<String>,
    /// `METHOD /path` → binary.
    http: BTreeMap<String, String>,
    /// WebSocket route key → binary.
    ws: BTreeMap<String, String>,
    /// binary → schedule expressions.
    schedules: BTreeMap<String, Vec<String>>,
    kafka: BTreeSet<Trigger>,
}

/// The wiring, read from the YAML alone (defaults for every parameter).
fn wiring_from_yaml(t: &Value) -> Wiring {
    let bins = binaries(t);
    let mut w = Wiring {
        functions: bins.values().cloned().collect(),
        ..Wiring::default()
    };
    for (id, r) in resources(t, "AWS::Serverless::Function") {
        let binary = bins[id].clone();
        let events = r["Properties"]["Events"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        for (_, ev) in events {
            let p = &ev["Properties"];
            match ev["Type"].as_str().unwrap_or_default() {
                "HttpApi" => {
                    let key = format!(
                        "{} {}",
                        p["Method"]
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_uppercase(),
                        p["Path"].as_str().unwrap_or_default()
                    );
                    w.http.insert(key, binary.clone());
                }
                "Schedule" => w
                    .schedules
                    .entry(binary.clone())
                    .or_default()
                    .push(p["Schedule"].as_str().unwrap_or_default().to_owned()),
                "MSK" | "SelfManagedKafka" => {
                    let mut groups = BTreeSet::new();
                    consumer_groups(p, &mut groups);
                    w.kafka.insert((
                        binary.clone(),
                        topics(p),
                        groups.into_iter().next().unwrap_or_default(),
                        batch_size(t, p),
                    ));
                }
                other => panic!("{id}: event type {other} is not compared here; add it"),
            }
        }
    }
    for (id, r) in resources(t, "AWS::Lambda::EventSourceMapping") {
        let p = &r["Properties"];
        let function = match &p["FunctionName"] {
            Value::Tagged(tagged) if tagged.tag == "Ref" => {
                tagged.value.as_str().unwrap_or_default().to_owned()
            }
            other => panic!("{id}: FunctionName {other:?} is not a !Ref"),
        };
        let mut groups = BTreeSet::new();
        consumer_groups(p, &mut groups);
        assert_eq!(
            groups.len(),
            1,
            "{id}: one consumer group whatever the flavour: {groups:?}"
        );
        w.kafka.insert((
            bins.get(&function)
                .cloned()
                .unwrap_or_else(|| panic!("{id}: no function {function}")),
            topics(p),
            groups.into_iter().next().unwrap_or_default(),
            batch_size(t, p),
        ));
    }
    let integrations: BTreeMap<&str, &Value> = resources(t, "AWS::ApiGatewayV2::Integration")
        .into_iter()
        .collect();
    for (id, r) in resources(t, "AWS::ApiGatewayV2::Route") {
        let p = &r["Properties"];
        let target = match &p["Target"] {
            Value::Tagged(tagged) if tagged.tag == "Sub" => {
                tagged.value.as_str().unwrap_or_default().to_owned()
            }
            other => panic!("{id}: Target {other:?}"),
        };
        let integration = target
            .trim_start_matches("integrations/${")
            .trim_end_matches('}');
        let uri = match &integrations[integration]["Properties"]["IntegrationUri"] {
            Value::Tagged(tagged) => tagged.value.as_str().unwrap_or_default().to_owned(),
            other => other.as_str().unwrap_or_default().to_owned(),
        };
        // `...functions/${WsFunction.Arn}/invocations`
        let function = uri
            .split("${")
            .find_map(|s| s.split_once(".Arn}").map(|(f, _)| f))
            .unwrap_or_default();
        w.ws.insert(
            p["RouteKey"].as_str().unwrap_or_default().to_owned(),
            bins.get(function)
                .cloned()
                .unwrap_or_else(|| panic!("{id}: integration {uri} names no function")),
        );
    }
    w
}

fn topics(p: &Value) -> Vec<String> {
    p["Topics"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

fn batch_size(t: &Value, p: &Value) -> usize {
    scalar(t, &p["BatchSize"]).map_or(100, |b| b.parse().unwrap_or(0))
}

/// The same, as devstack resolves it (defaults for every parameter).
fn wiring_from_devstack() -> Wiring {
    let stack = template::load(&root().join("template.yaml"), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("devstack cannot read template.yaml: {e}"));
    let mut w = Wiring {
        functions: stack.functions.iter().map(|f| f.binary.clone()).collect(),
        ..Wiring::default()
    };
    for f in &stack.functions {
        if !f.schedules.is_empty() {
            w.schedules.insert(
                f.binary.clone(),
                f.schedules.iter().map(|s| s.expression.clone()).collect(),
            );
        }
        for k in &f.kafka {
            assert_eq!(
                k.kind,
                KafkaSourceKind::SelfManaged,
                "the default flavour is SelfManagedKafka"
            );
            w.kafka.insert((
                f.binary.clone(),
                k.topics.clone(),
                k.consumer_group_id.clone(),
                k.batch_size,
            ));
        }
    }
    for r in stack.http_api.iter().flat_map(|h| h.routes.iter()) {
        w.http.insert(r.route_key(), r.function.clone());
    }
    for r in stack.websocket_api.iter().flat_map(|a| a.routes.iter()) {
        w.ws.insert(r.route_key.clone(), r.function.clone());
    }
    w
}

#[test]
fn devstack_reads_the_same_wiring_as_the_template_says() {
    let yaml = wiring_from_yaml(&template_yaml());
    let devstack = wiring_from_devstack();
    assert_eq!(devstack.functions, yaml.functions, "functions");
    assert_eq!(devstack.http, yaml.http, "HTTP routes");
    assert_eq!(devstack.ws, yaml.ws, "WebSocket routes");
    assert_eq!(devstack.schedules, yaml.schedules, "schedules");
    assert_eq!(devstack.kafka, yaml.kafka, "Kafka triggers");
    // Sanity: the comparison compares something.
    assert!(yaml.http.contains_key("POST /v1/notifications"));
    assert!(yaml.ws.contains_key("$connect"));
    assert!(yaml
        .kafka
        .iter()
        .any(|(f, t, ..)| f == "delivery" && t == &["notification-events".to_owned()]));
    assert!(yaml.schedules.contains_key("outbox-relay"));
}

#[test]
fn sam_local_start_api_sees_a_serverless_api_first() {
    // `sam local start-api` picks its route reader from the *first* API-like resource in template
    // order: a SAM one (Function, Api, HttpApi) and it serves the HttpApi and skips the raw
    // AWS::ApiGatewayV2 WebSocket resources; an AWS::ApiGatewayV2 one first and it parses every
    // Route's RouteKey as "METHOD /path", crashing on "$connect" (checked with SAM CLI 1.170). So
    // the template keeps HttpApi and the functions above the WebSocket API.
    let t = template_yaml();
    let first = t["Resources"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(id, r)| Some((id.as_str()?, r["Type"].as_str()?)))
        .find(|(_, kind)| {
            kind.starts_with("AWS::Serverless::")
                || kind.starts_with("AWS::ApiGateway::")
                || kind.starts_with("AWS::ApiGatewayV2::")
        });
    assert!(
        first.is_some_and(|(_, kind)| kind.starts_with("AWS::Serverless::")),
        "the first API-like resource must be a SAM one, found {first:?}"
    );
}

/// Issue 15: push may send through SES as the one configured identity and do nothing else with
/// SES; the policy exists only when that identity is given, and the function reads
/// `EMAIL_PROVIDERS` and `SES_ENDPOINT` from their parameters.
#[test]
fn push_may_send_through_ses_only_as_the_configured_identity() {
    let t = template_yaml();
    let policy = &t["Resources"]["SesSendPolicy"];
    assert_eq!(policy["Condition"].as_str(), Some("HasSesIdentity"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert_eq!(statements.len(), 1, "{statements:?}");
    let actions: Vec<&str> = statements[0]["Action"]
        .as_sequence()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(actions, ["ses:SendEmail", "ses:SendRawEmail"]);
    let resource = match &statements[0]["Resource"] {
        Value::Tagged(r) if r.tag == "Ref" => r.value.as_str(),
        _ => None,
    };
    assert_eq!(resource, Some("SesIdentityArn"), "never `*`");
    assert_eq!(
        t["Parameters"]["SesIdentityArn"]["Default"].as_str(),
        Some(""),
        "off unless a deployment names its identity"
    );
    let push = &t["Resources"]["PushFunction"]["Properties"];
    let attached = format!("{:?}", push["Policies"]);
    assert!(attached.contains("SesSendPolicy"), "{attached}");
    let variables = &push["Environment"]["Variables"];
    for (var, parameter) in [
        ("EMAIL_PROVIDERS", "EmailProviders"),
        ("SES_ENDPOINT", "SesEndpoint"),
    ] {
        let wired = match &variables[var] {
            Value::Tagged(r) if r.tag == "Ref" => r.value.as_str(),
            _ => None,
        };
        assert_eq!(wired, Some(parameter), "{var}");
        assert_eq!(
            t["Parameters"][parameter]["Default"].as_str(),
            Some(""),
            "{parameter}"
        );
    }
}
