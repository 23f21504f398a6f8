//! The resolved wiring devstack runs (the types below), and one reader per resource kind:
//!
//! - [`resources`]: the `Resources` section as a whole: which resources exist (their `Condition`
//!   holds), what `!Ref`/`!GetAtt` of each means locally, and which reader reads each kind;
//! - [`functions`]: `AWS::Serverless::Function`, with its `Events`;
//! - [`http_api`]: the `HttpApi` events and `AWS::Serverless::HttpApi` (routes, JWT authorizers,
//!   CORS);
//! - [`websocket_api`]: `AWS::ApiGatewayV2::Api` (WEBSOCKET) with its routes, integrations and
//!   stage;
//! - [`schedules`]: `Schedule`/`ScheduleV2` events;
//! - [`kafka_triggers`]: `MSK`/`SelfManagedKafka` events and `AWS::Lambda::EventSourceMapping`.

mod functions;
mod http_api;
mod kafka_triggers;
mod resources;
mod schedules;
mod websocket_api;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::TemplateError;

pub(super) use resources::build;
pub use schedules::parse_rate;

/// Everything devstack runs, resolved.
#[derive(Debug, Clone)]
pub struct Stack {
    pub functions: Vec<Function>,
    pub http_api: Option<HttpApi>,
    pub websocket_api: Option<WebSocketApi>,
    /// The parameters in force (defaults with overrides), lists joined with commas.
    pub parameters: BTreeMap<String, String>,
}

impl Stack {
    /// The function whose binary is `binary`.
    pub fn function(&self, binary: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.binary == binary)
    }
}

/// One `AWS::Serverless::Function`.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the cargo binary, and the function's name locally.
    pub binary: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// Globals' variables overlaid with the function's own, resolved.
    pub environment: BTreeMap<String, String>,
    pub schedules: Vec<Schedule>,
    pub kafka: Vec<KafkaEventSource>,
}

/// The HTTP API (`AWS::Serverless::HttpApi`, explicit or SAM's implicit one).
#[derive(Debug, Clone, Default)]
pub struct HttpApi {
    pub logical_id: String,
    pub routes: Vec<HttpRoute>,
    pub authorizers: BTreeMap<String, JwtAuthorizer>,
    pub cors: Option<Cors>,
}

/// One route: `METHOD /path` (or `$default`), the function serving it, and its authorization.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// Upper-case method, or `ANY`.
    pub method: String,
    /// `/v1/notifications/{id}`, `/{proxy+}`, or `$default`.
    pub path: String,
    pub function: String,
    pub auth: RouteAuth,
}

impl HttpRoute {
    /// API Gateway's route key: `GET /v1/notifications/{id}` or `$default`.
    pub fn route_key(&self) -> String {
        if self.path == "$default" {
            "$default".to_owned()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteAuth {
    None,
    Jwt {
        authorizer: String,
        scopes: Vec<String>,
    },
}

/// A JWT authorizer's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtAuthorizer {
    pub issuer: String,
    pub audience: Vec<String>,
    /// The lower-cased header holding the token (from `$request.header.X`).
    pub header: String,
}

/// The HttpApi's `CorsConfiguration`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

/// A `Schedule` event (`rate(...)` expressions).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub every: Duration,
    pub expression: String,
    pub input: Option<Value>,
}

/// Where Kafka records come from, as Lambda reports it in `eventSource`.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaSourceKind {
    /// `Type: MSK`: `eventSource` is `aws:kafka`, with the cluster ARN as `eventSourceArn`.
    Msk { stream_arn: String },
    /// `Type: SelfManagedKafka`: `eventSource` is `SelfManagedKafka`.
    SelfManaged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
}

/// One Kafka event-source mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaEventSource {
    /// The event's name in the function's `Events`.
    pub name: String,
    pub kind: KafkaSourceKind,
    pub topics: Vec<String>,
    pub consumer_group_id: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    pub starting_position: StartingPosition,
    pub report_batch_item_failures: bool,
    /// `None`: retry until success (Lambda's default for Kafka).
    pub maximum_retry_attempts: Option<u32>,
    /// `DestinationConfig.OnFailure.Destination`, as written (locally, failed records go to a topic).
    pub on_failure: Option<String>,
    pub bisect_batch_on_function_error: bool,
}

/// The WebSocket API (`AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketApi {
    pub logical_id: String,
    /// The JSON field named by `RouteSelectionExpression: $request.body.<field>` (dots for nesting).
    pub route_selection_field: String,
    pub routes: Vec<WsRoute>,
    /// `AWS::ApiGatewayV2::Stage`'s `StageName`, when the template has one.
    pub stage: Option<String>,
}

impl WebSocketApi {
    pub fn route(&self, key: &str) -> Option<&WsRoute> {
        self.routes.iter().find(|r| r.route_key == key)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WsRoute {
    /// `$connect`, `$disconnect`, `$default` or an action.
    pub route_key: String,
    pub function: String,
    /// A route with `RouteResponseSelectionExpression`: the function's reply goes back to the client.
    pub two_way: bool,
}

/// Overlays `globals` under `props` (one level; `Environment.Variables` merged key by key).
fn with_globals(
    props: &Map<String, Value>,
    globals: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = globals.cloned().unwrap_or_default();
    for (k, v) in props {
        if k == "Environment" {
            let mut vars = out
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(own) = v.get("Variables").and_then(Value::as_object) {
                vars.extend(own.clone());
            }
            out.insert(k.clone(), serde_json::json!({ "Variables": vars }));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// A list of strings (a lone string is a list of one; numbers are written out), else invalid.
fn str_list(v: Option<&Value>, at: &str, key: &str) -> Result<Vec<String>, TemplateError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(TemplateError::invalid(
                    at,
                    format!("{key} must be a list of strings"),
                )),
            })
            .collect(),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(TemplateError::invalid(
            at,
            format!("{key} must be a list of strings"),
        )),
    }
}
