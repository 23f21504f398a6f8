//! The resolved wiring, and how it is read from the template's resources.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::intrinsics::{Resolver, ResourceValues};
use super::{parameters, LoadOptions, TemplateError};

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

/// Resource values as devstack sees them: `!Ref` of a function is its binary name, of an API its
/// logical id, of a stage its name; `!GetAtt Fn.Arn` is a local ARN.
struct Resources<'a> {
    all: &'a Map<String, Value>,
    options: &'a LoadOptions,
}

impl Resources<'_> {
    fn kind(&self, id: &str) -> Option<&str> {
        self.all.get(id)?.get("Type")?.as_str()
    }
    fn binary(&self, id: &str) -> Option<String> {
        self.all
            .get(id)?
            .pointer("/Metadata/BuildProperties/Binary")?
            .as_str()
            .map(str::to_owned)
    }
    /// `arn:aws:<service>:<region>:<account>:<logical id>`, the service from the type
    /// (`AWS::SQS::Queue` is `sqs`).
    fn resource_arn(&self, kind: &str, id: &str) -> String {
        let p = &self.options.pseudo;
        let service = kind
            .split("::")
            .nth(1)
            .unwrap_or("resource")
            .to_ascii_lowercase();
        format!("arn:aws:{service}:{}:{}:{id}", p.region, p.account_id)
    }
    fn function_arn(&self, binary: &str) -> String {
        let p = &self.options.pseudo;
        format!(
            "arn:aws:lambda:{}:{}:function:{binary}",
            p.region, p.account_id
        )
    }
}

impl ResourceValues for Resources<'_> {
    fn reference(&self, id: &str) -> Option<Result<String, TemplateError>> {
        let kind = self.kind(id)?;
        Some(Ok(match kind {
            "AWS::Serverless::Function" => self.binary(id).unwrap_or_else(|| id.to_owned()),
            "AWS::ApiGatewayV2::Stage" => self
                .all
                .get(id)
                .and_then(|r| r.pointer("/Properties/StageName"))
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_owned(),
            _ => id.to_owned(),
        }))
    }

    fn attribute(
        &self,
        id: &str,
        attribute: &str,
        at: &str,
    ) -> Option<Result<String, TemplateError>> {
        let kind = self.kind(id)?;
        Some(match (kind, attribute) {
            ("AWS::Serverless::Function", "Arn") => {
                Ok(self.function_arn(&self.binary(id).unwrap_or_else(|| id.to_owned())))
            }
            ("AWS::ApiGatewayV2::Api", "ApiEndpoint") => {
                let ws = self
                    .all
                    .get(id)
                    .and_then(|r| r.pointer("/Properties/ProtocolType"))
                    .and_then(Value::as_str)
                    == Some("WEBSOCKET");
                Ok(if ws {
                    self.options.ws_endpoint.clone()
                } else {
                    self.options.http_endpoint.clone()
                })
            }
            ("AWS::Serverless::HttpApi", "ApiEndpoint") => Ok(self.options.http_endpoint.clone()),
            ("AWS::ApiGatewayV2::Api" | "AWS::Serverless::HttpApi", "ApiId") => Ok(id.to_owned()),
            // Any other resource's ARN (an on-failure queue, a topic): a local ARN naming it.
            (kind, "Arn") => Ok(self.resource_arn(kind, id)),
            (kind, attribute) => Err(TemplateError::unsupported(
                at,
                format!("!GetAtt {id}.{attribute} (a {kind})"),
            )),
        })
    }
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

pub(super) fn build(doc: &Value, options: &LoadOptions) -> Result<Stack, TemplateError> {
    let params = parameters(doc, &options.parameters)?;
    let empty = Map::new();
    let conditions = doc
        .get("Conditions")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let all = doc
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or_else(|| TemplateError::invalid("template", "has no Resources"))?;
    let every = Resources { all, options };
    let r = Resolver {
        parameters: &params,
        conditions,
        pseudo: &options.pseudo,
        resources: &every,
    };

    // Resources whose Condition is false do not exist.
    let mut live = Map::new();
    for (id, res) in all {
        let present = match res.get("Condition").and_then(Value::as_str) {
            Some(c) => r.condition(c, &format!("Resources.{id}.Condition"))?,
            None => true,
        };
        if present {
            live.insert(id.clone(), res.clone());
        }
    }
    let resources = Resources {
        all: &live,
        options,
    };
    let r = Resolver {
        parameters: &params,
        conditions,
        pseudo: &options.pseudo,
        resources: &resources,
    };

    let globals = doc.get("Globals");
    let fn_globals = globals
        .and_then(|g| g.get("Function"))
        .and_then(Value::as_object);
    let api_globals = globals
        .and_then(|g| g.get("HttpApi"))
        .and_then(Value::as_object);

    let mut functions = Vec::new();
    let mut http_routes: Vec<RouteOf> = Vec::new();
    let mut mappings = Vec::new();
    for (id, res) in &live {
        let kind = res.get("Type").and_then(Value::as_str).unwrap_or_default();
        let at = format!("Resources.{id}");
        match kind {
            "AWS::Serverless::Function" => {
                let (f, routes) = function(&r, id, res, fn_globals, &at)?;
                functions.push(f);
                http_routes.extend(routes);
            }
            "AWS::Lambda::EventSourceMapping" => mappings.push((id, res)),
            "AWS::Lambda::Function" | "AWS::Serverless::Api" | "AWS::ApiGateway::RestApi" => {
                return Err(TemplateError::unsupported(
                    &at,
                    format!("{kind} resources (use AWS::Serverless::Function / HttpApi)"),
                ));
            }
            _ => {}
        }
    }

    for (id, res) in mappings {
        let at = format!("Resources.{id}");
        if let Some((binary, source)) = event_source_mapping(&r, id, res, &at)? {
            let f = functions
                .iter_mut()
                .find(|f| f.binary == binary)
                .ok_or_else(|| {
                    TemplateError::invalid(
                        &at,
                        format!("FunctionName {binary:?} is not a function of this template"),
                    )
                })?;
            f.kafka.push(source);
        }
    }

    let http_api = http_api(&r, &live, api_globals, http_routes)?;
    let websocket_api = websocket_api(&r, &live, &functions)?;
    let parameters = params
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect();
    Ok(Stack {
        functions,
        http_api,
        websocket_api,
        parameters,
    })
}

/// A route before its API is known: (ApiId, route, the event's `Auth` as (Authorizer, scopes)).
type RouteOf = (
    Option<String>,
    HttpRoute,
    Option<(Option<String>, Vec<String>)>,
);

fn function(
    r: &Resolver<'_>,
    id: &str,
    res: &Value,
    globals: Option<&Map<String, Value>>,
    at: &str,
) -> Result<(Function, Vec<RouteOf>), TemplateError> {
    let binary_at = format!("{at}.Metadata.BuildProperties.Binary");
    let binary = match res.pointer("/Metadata/BuildProperties/Binary") {
        Some(v) => r.string(v, &binary_at)?,
        None => {
            return Err(TemplateError::invalid(
                at,
                "has no Metadata.BuildProperties.Binary (the cargo binary devstack runs)",
            ))
        }
    };
    let empty = Map::new();
    let props = with_globals(
        res.get("Properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
        globals,
    );
    let number = |key: &str, default: u64| -> Result<u64, TemplateError> {
        match props.get(key) {
            None => Ok(default),
            Some(v) => r
                .string(v, &format!("{at}.Properties.{key}"))?
                .parse()
                .map_err(|_| TemplateError::invalid(at, format!("{key} is not a number"))),
        }
    };
    let memory_mb = u32::try_from(number("MemorySize", 128)?).unwrap_or(u32::MAX);
    let timeout = Duration::from_secs(number("Timeout", 3)?);

    let mut environment = BTreeMap::new();
    if let Some(vars) = props
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_object)
    {
        for (k, v) in vars {
            let vat = format!("{at}.Properties.Environment.Variables.{k}");
            if r.resolve(v, &vat)?.is_some() {
                environment.insert(k.clone(), r.string(v, &vat)?);
            }
        }
    }

    let mut schedules = Vec::new();
    let mut kafka = Vec::new();
    let mut routes = Vec::new();
    if let Some(events) = props.get("Events").and_then(Value::as_object) {
        for (name, ev) in events {
            let eat = format!("{at}.Properties.Events.{name}");
            let kind = ev.get("Type").and_then(Value::as_str).unwrap_or_default();
            let eprops = match ev.get("Properties") {
                Some(p) => match r.resolve(p, &format!("{eat}.Properties"))? {
                    Some(Value::Object(m)) => m,
                    _ => return Err(TemplateError::invalid(&eat, "Properties must be a map")),
                },
                None => Map::new(),
            };
            match kind {
                "HttpApi" => routes.push(http_event(&eprops, &binary, &eat)?),
                "Schedule" | "ScheduleV2" => {
                    if let Some(s) = schedule(name, &eprops, &eat)? {
                        schedules.push(s);
                    }
                }
                "MSK" | "SelfManagedKafka" => {
                    if let Some(k) = kafka_event(id, name, kind, &eprops, &eat)? {
                        kafka.push(k);
                    }
                }
                other => {
                    return Err(TemplateError::unsupported(
                        &eat,
                        format!("event type {other:?}"),
                    ))
                }
            }
        }
    }
    Ok((
        Function {
            logical_id: id.to_owned(),
            binary,
            memory_mb,
            timeout,
            environment,
            schedules,
            kafka,
        },
        routes,
    ))
}

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

fn http_event(p: &Map<String, Value>, binary: &str, at: &str) -> Result<RouteOf, TemplateError> {
    let (method, path) = match (
        p.get("Method").and_then(Value::as_str),
        p.get("Path").and_then(Value::as_str),
    ) {
        (Some(m), Some(path)) => {
            let m = m.to_ascii_uppercase();
            (if m == "*" { "ANY".to_owned() } else { m }, path.to_owned())
        }
        (None, None) => ("ANY".to_owned(), "$default".to_owned()),
        _ => {
            return Err(TemplateError::invalid(
                at,
                "HttpApi events need both Method and Path (or neither, for $default)",
            ))
        }
    };
    if path != "$default" && !path.starts_with('/') {
        return Err(TemplateError::invalid(
            at,
            format!("Path {path:?} must start with /"),
        ));
    }
    let auth = match p.get("Auth") {
        None => None,
        Some(a) => {
            let authorizer = a
                .get("Authorizer")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let scopes = str_list(a.get("AuthorizationScopes"), at, "AuthorizationScopes")?;
            Some((authorizer, scopes))
        }
    };
    let api = p.get("ApiId").and_then(Value::as_str).map(str::to_owned);
    // Authorization is settled once the API (and its DefaultAuthorizer) is known.
    let route = HttpRoute {
        method,
        path,
        function: binary.to_owned(),
        auth: RouteAuth::None,
    };
    Ok((api, route, auth))
}

fn http_api(
    r: &Resolver<'_>,
    live: &Map<String, Value>,
    globals: Option<&Map<String, Value>>,
    routes: Vec<RouteOf>,
) -> Result<Option<HttpApi>, TemplateError> {
    let declared: Vec<&String> = live
        .iter()
        .filter(|(_, v)| v.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::HttpApi"))
        .map(|(k, _)| k)
        .collect();
    if declared.len() > 1 {
        return Err(TemplateError::unsupported(
            "Resources",
            "more than one AWS::Serverless::HttpApi (devstack serves one HTTP API)",
        ));
    }
    if declared.is_empty() && routes.is_empty() {
        return Ok(None);
    }
    let logical_id = declared
        .first()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "ServerlessHttpApi".to_owned());
    let at = format!("Resources.{logical_id}.Properties");
    let empty = Map::new();
    let own = live
        .get(&logical_id)
        .and_then(|v| v.get("Properties"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let props = with_globals(own, globals);
    let props = match r.resolve(&Value::Object(props), &at)? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };

    let mut authorizers = BTreeMap::new();
    let auth = props.get("Auth");
    if let Some(list) = auth
        .and_then(|a| a.get("Authorizers"))
        .and_then(Value::as_object)
    {
        for (name, a) in list {
            let aat = format!("{at}.Auth.Authorizers.{name}");
            let Some(jwt) = a.get("JwtConfiguration") else {
                return Err(TemplateError::unsupported(
                    &aat,
                    "authorizers other than JWT (JwtConfiguration)",
                ));
            };
            let issuer = jwt.get("issuer").and_then(Value::as_str).ok_or_else(|| {
                TemplateError::invalid(&aat, "JwtConfiguration.issuer is missing")
            })?;
            let audience = str_list(jwt.get("audience"), &aat, "audience")?;
            let source = a
                .get("IdentitySource")
                .and_then(Value::as_str)
                .unwrap_or("$request.header.Authorization");
            let header = source
                .strip_prefix("$request.header.")
                .ok_or_else(|| {
                    TemplateError::unsupported(
                        &aat,
                        format!("IdentitySource {source:?} (only $request.header.X)"),
                    )
                })?
                .to_ascii_lowercase();
            authorizers.insert(
                name.clone(),
                JwtAuthorizer {
                    issuer: issuer.to_owned(),
                    audience,
                    header,
                },
            );
        }
    }
    let default_authorizer = auth
        .and_then(|a| a.get("DefaultAuthorizer"))
        .and_then(Value::as_str)
        .map(str::to_owned);

    let cors = match props.get("CorsConfiguration") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            ..Cors::default()
        }),
        Some(c) => {
            let cat = format!("{at}.CorsConfiguration");
            Some(Cors {
                allow_origins: str_list(c.get("AllowOrigins"), &cat, "AllowOrigins")?,
                allow_methods: str_list(c.get("AllowMethods"), &cat, "AllowMethods")?,
                allow_headers: str_list(c.get("AllowHeaders"), &cat, "AllowHeaders")?
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                expose_headers: str_list(c.get("ExposeHeaders"), &cat, "ExposeHeaders")?,
                max_age: c.get("MaxAge").and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                }),
                allow_credentials: c
                    .get("AllowCredentials")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        }
    };

    let mut out = Vec::new();
    for (api, mut route, auth) in routes {
        let rat = format!("route {}", route.route_key());
        if let Some(api) = api {
            if api != logical_id {
                return Err(TemplateError::unsupported(
                    &rat,
                    format!("ApiId {api} (devstack serves the one HttpApi {logical_id})"),
                ));
            }
        }
        let (named, scopes) = match auth {
            Some((named, scopes)) => (named.or(default_authorizer.clone()), scopes),
            None => (default_authorizer.clone(), Vec::new()),
        };
        route.auth = match named.as_deref() {
            None | Some("NONE") => RouteAuth::None,
            Some(name) if authorizers.contains_key(name) => RouteAuth::Jwt {
                authorizer: name.to_owned(),
                scopes,
            },
            Some(name) => {
                return Err(TemplateError::invalid(
                    &rat,
                    format!("authorizer {name} is not declared in {logical_id}.Auth.Authorizers"),
                ))
            }
        };
        if out
            .iter()
            .any(|o: &HttpRoute| o.route_key() == route.route_key())
        {
            return Err(TemplateError::invalid(&rat, "is declared twice"));
        }
        out.push(route);
    }
    Ok(Some(HttpApi {
        logical_id,
        routes: out,
        authorizers,
        cors,
    }))
}

fn schedule(
    name: &str,
    p: &Map<String, Value>,
    at: &str,
) -> Result<Option<Schedule>, TemplateError> {
    let enabled = match p.get("Enabled") {
        Some(Value::Bool(b)) => *b,
        _ => !matches!(p.get("State").and_then(Value::as_str), Some("DISABLED")),
    };
    if !enabled {
        return Ok(None);
    }
    let expr = p
        .get("Schedule")
        .or_else(|| p.get("ScheduleExpression"))
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(at, "Schedule is missing"))?;
    let every = parse_rate(expr).ok_or_else(|| {
        TemplateError::unsupported(at, format!("the schedule {expr:?} (only rate(N unit))"))
    })?;
    let input = match p.get("Input").and_then(Value::as_str) {
        Some(s) => Some(
            serde_json::from_str(s)
                .map_err(|e| TemplateError::invalid(at, format!("Input is not JSON: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(Schedule {
        name: name.to_owned(),
        every,
        expression: expr.to_owned(),
        input,
    }))
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(2 hours)`, `rate(1 day)`.
pub fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

fn kafka_event(
    function_id: &str,
    name: &str,
    kind: &str,
    p: &Map<String, Value>,
    at: &str,
) -> Result<Option<KafkaEventSource>, TemplateError> {
    if p.get("Enabled").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let topics = str_list(p.get("Topics"), at, "Topics")?;
    if topics.is_empty() {
        return Err(TemplateError::invalid(at, "Topics is missing"));
    }
    let pv = Value::Object(p.clone());
    let group = p
        .get("ConsumerGroupId")
        .or_else(|| pv.pointer("/AmazonManagedKafkaEventSourceConfig/ConsumerGroupId"))
        .or_else(|| pv.pointer("/SelfManagedKafkaEventSourceConfig/ConsumerGroupId"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{function_id}-{name}"));
    let num = |key: &str| -> Result<Option<f64>, TemplateError> {
        match p.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| TemplateError::invalid(at, format!("{key} is not a number"))),
            Some(_) => Err(TemplateError::invalid(at, format!("{key} is not a number"))),
        }
    };
    let batch_size = num("BatchSize")?.unwrap_or(100.0).clamp(1.0, 10_000.0) as usize;
    let batching_window = Duration::try_from_secs_f64(
        num("MaximumBatchingWindowInSeconds")?
            .unwrap_or(0.5)
            .clamp(0.0, 300.0),
    )
    .unwrap_or_default();
    let starting_position = match p
        .get("StartingPosition")
        .and_then(Value::as_str)
        .unwrap_or("TRIM_HORIZON")
    {
        "TRIM_HORIZON" => StartingPosition::TrimHorizon,
        "LATEST" => StartingPosition::Latest,
        other => {
            return Err(TemplateError::unsupported(
                at,
                format!("StartingPosition {other}"),
            ))
        }
    };
    let types = str_list(p.get("FunctionResponseTypes"), at, "FunctionResponseTypes")?;
    let maximum_retry_attempts = match num("MaximumRetryAttempts")? {
        None => None,
        Some(n) if n < 0.0 => None,
        Some(n) => Some(n as u32),
    };
    let on_failure = pv
        .pointer("/DestinationConfig/OnFailure/Destination")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let source = if kind == "MSK" {
        KafkaSourceKind::Msk {
            stream_arn: p
                .get("Stream")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    } else {
        KafkaSourceKind::SelfManaged
    };
    Ok(Some(KafkaEventSource {
        name: name.to_owned(),
        kind: source,
        topics,
        consumer_group_id: group,
        batch_size,
        batching_window,
        starting_position,
        report_batch_item_failures: types.iter().any(|t| t == "ReportBatchItemFailures"),
        maximum_retry_attempts,
        on_failure,
        bisect_batch_on_function_error: p
            .get("BisectBatchOnFunctionError")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

/// An `AWS::Lambda::EventSourceMapping` (live: its Condition, if any, holds) reading Kafka:
/// the function's binary and the mapping. MSK when it has an `EventSourceArn` of a Kafka
/// cluster, self-managed when it has a `SelfManagedEventSource`; any other source (SQS, Kinesis,
/// DynamoDB) is unsupported. The Kafka properties are the SAM events' (`kafka_event`), with the
/// consumer group in `AmazonManagedKafkaEventSourceConfig` / `SelfManagedKafkaEventSourceConfig`.
fn event_source_mapping(
    r: &Resolver<'_>,
    id: &str,
    res: &Value,
    at: &str,
) -> Result<Option<(String, KafkaEventSource)>, TemplateError> {
    let pat = format!("{at}.Properties");
    let mut props = match res.get("Properties") {
        Some(p) => match r.resolve(p, &pat)? {
            Some(Value::Object(m)) => m,
            _ => return Err(TemplateError::invalid(at, "Properties must be a map")),
        },
        None => return Err(TemplateError::invalid(at, "has no Properties")),
    };
    let name = props
        .get("FunctionName")
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(&pat, "FunctionName is missing"))?;
    // `!Ref Fn` is the binary locally; `!GetAtt Fn.Arn` an ARN ending in `function:<binary>`.
    let binary = name
        .rsplit_once("function:")
        .map_or(name, |(_, b)| b)
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let kind = if props.contains_key("SelfManagedEventSource") {
        "SelfManagedKafka"
    } else {
        match props.get("EventSourceArn").and_then(Value::as_str) {
            Some(arn) if arn.split(':').nth(2) == Some("kafka") => {
                let arn = arn.to_owned();
                props.insert("Stream".into(), Value::String(arn));
                "MSK"
            }
            other => {
                return Err(TemplateError::unsupported(
                    &pat,
                    format!(
                        "event-source mappings other than Kafka (EventSourceArn {:?}; devstack reads MSK and SelfManagedEventSource mappings)",
                        other.unwrap_or_default()
                    ),
                ))
            }
        }
    };
    Ok(kafka_event(id, id, kind, &props, &pat)?.map(|source| (binary, source)))
}

fn websocket_api(
    r: &Resolver<'_>,
    live: &Map<String, Value>,
    functions: &[Function],
) -> Result<Option<WebSocketApi>, TemplateError> {
    let of_type = |t: &str| -> Vec<(&String, &Value)> {
        live.iter()
            .filter(|(_, v)| v.get("Type").and_then(Value::as_str) == Some(t))
            .collect()
    };
    let apis: Vec<_> = of_type("AWS::ApiGatewayV2::Api")
        .into_iter()
        .filter(|(_, v)| {
            v.pointer("/Properties/ProtocolType")
                .and_then(Value::as_str)
                == Some("WEBSOCKET")
        })
        .collect();
    let Some((api_id, api)) = apis.first() else {
        return Ok(None);
    };
    if apis.len() > 1 {
        return Err(TemplateError::unsupported(
            "Resources",
            "more than one WebSocket API",
        ));
    }
    let at = format!("Resources.{api_id}.Properties");
    let expr = match api.pointer("/Properties/RouteSelectionExpression") {
        Some(v) => r.string(v, &format!("{at}.RouteSelectionExpression"))?,
        None => {
            return Err(TemplateError::invalid(
                &at,
                "RouteSelectionExpression is missing",
            ))
        }
    };
    let field = expr
        .strip_prefix("$request.body.")
        .ok_or_else(|| {
            TemplateError::unsupported(
                &at,
                format!("RouteSelectionExpression {expr:?} (only $request.body.<field>)"),
            )
        })?
        .to_owned();

    let mut routes = Vec::new();
    for (id, res) in of_type("AWS::ApiGatewayV2::Route") {
        let rat = format!("Resources.{id}.Properties");
        let props = match res.get("Properties") {
            Some(p) => r.resolve(p, &rat)?.unwrap_or(Value::Null),
            None => Value::Null,
        };
        if props.get("ApiId").and_then(Value::as_str) != Some(api_id.as_str()) {
            continue;
        }
        let route_key = props
            .get("RouteKey")
            .and_then(Value::as_str)
            .ok_or_else(|| TemplateError::invalid(&rat, "RouteKey is missing"))?
            .to_owned();
        match props
            .get("AuthorizationType")
            .and_then(Value::as_str)
            .unwrap_or("NONE")
        {
            "NONE" => {}
            other => {
                return Err(TemplateError::unsupported(
                    &rat,
                    format!(
                        "AuthorizationType {other} (Herald's ws function verifies tokens itself)"
                    ),
                ))
            }
        }
        let target = props
            .get("Target")
            .and_then(Value::as_str)
            .ok_or_else(|| TemplateError::invalid(&rat, "Target is missing"))?;
        let integration_id = target.strip_prefix("integrations/").ok_or_else(|| {
            TemplateError::unsupported(
                &rat,
                format!("Target {target:?} (expected integrations/<id>)"),
            )
        })?;
        let integration = live.get(integration_id).ok_or_else(|| {
            TemplateError::invalid(&rat, format!("no integration named {integration_id}"))
        })?;
        let iat = format!("Resources.{integration_id}.Properties");
        let iprops = match integration.get("Properties") {
            Some(p) => r.resolve(p, &iat)?.unwrap_or(Value::Null),
            None => Value::Null,
        };
        match iprops.get("IntegrationType").and_then(Value::as_str) {
            Some("AWS_PROXY") => {}
            other => {
                return Err(TemplateError::unsupported(
                    &iat,
                    format!("IntegrationType {other:?} (only AWS_PROXY)"),
                ))
            }
        }
        let uri = iprops
            .get("IntegrationUri")
            .and_then(Value::as_str)
            .ok_or_else(|| TemplateError::invalid(&iat, "IntegrationUri is missing"))?;
        let function = uri
            .split("function:")
            .nth(1)
            .map(|rest| rest.split(['/', ':']).next().unwrap_or_default().to_owned())
            .filter(|f| functions.iter().any(|x| &x.binary == f))
            .ok_or_else(|| {
                TemplateError::unsupported(
                    &iat,
                    format!("IntegrationUri {uri:?} (expected a function of this template)"),
                )
            })?;
        let two_way = props
            .get("RouteResponseSelectionExpression")
            .and_then(Value::as_str)
            .is_some();
        routes.push(WsRoute {
            route_key,
            function,
            two_way,
        });
    }
    let stage = of_type("AWS::ApiGatewayV2::Stage")
        .into_iter()
        .filter_map(|(id, s)| {
            let p = s.get("Properties")?;
            let api = r
                .resolve(p.get("ApiId")?, &format!("Resources.{id}"))
                .ok()??;
            (api.as_str() == Some(api_id.as_str())).then(|| {
                p.get("StageName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })?
        })
        .next();
    Ok(Some(WebSocketApi {
        logical_id: api_id.to_string(),
        route_selection_field: field,
        routes,
        stage,
    }))
}
