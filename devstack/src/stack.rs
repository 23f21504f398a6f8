//! Starts everything the template wires, in order, and stops it all again.
//!
//! The phases of [`start`], in order, each a function below: bind the listeners (so the real
//! addresses are known) → issuer key and channel keys → [`read_template`] (with devstack's issuer
//! and audience as `JwtIssuer`/`JwtAudience` when the template declares them and they are not
//! overridden) → `find_binaries` → Redis → `start_kafka` (+ mapping and DLQ topics) →
//! `spawn_functions` → `start_gateways` → `start_triggers` (mappings, schedules). The first phase
//! that fails ends the start with its error.
//!
//! Function environment, lowest to highest precedence: Globals, the function's own variables,
//! then any of those variables set in devstack's own environment (as `sam local --env-vars`);
//! then devstack supplies `REDIS_URL`, `KAFKA_BROKERS`, `JWT_ISSUER`, `JWT_AUDIENCE`, `JWKS_URL`
//! `CONNECTIONS_URL` and placeholder AWS credentials unless devstack's own environment sets them;
//! last, the channel keys ([`crate::push_keys`]) fill the declared-but-empty `VAPID_*` and
//! `UNSUBSCRIBE_SECRET`, and `PushAllowLoopback` and `WebhookAllowLoopback` default to true.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ExternalServices, Settings};
use crate::demo::{self, Demo};
use crate::http_gateway::{self, HttpGateway};
use crate::jwt::{Issuer, JwtError};
use crate::kafka::mapping::{self, Mapping};
use crate::kafka::{KafkaService, KafkaServiceError};
use crate::lambda::{invoke_api, FunctionSpec, Lambda};
use crate::push_keys::{PushKeys, PushKeysError};
use crate::redis::{RedisError, RedisService};
use crate::site::Site;
use crate::template::{self, LoadOptions, Pseudo, Stack, TemplateError};
use crate::ws_gateway::{self, WsGateway, WsLimits, WsSettings};

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("template {path}: {source}")]
    Template {
        path: PathBuf,
        #[source]
        source: TemplateError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error(transparent)]
    PushKeys(#[from] PushKeysError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Kafka(#[from] KafkaServiceError),
    #[error("function {function}: {path} does not exist; build it with `cargo build --profile local -p {function}` (or run scripts/dev)")]
    MissingBinary { function: String, path: PathBuf },
}

/// A running devstack.
pub struct Running {
    pub http_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub invoke_addr: SocketAddr,
    pub stack: Stack,
    pub lambda: Lambda,
    pub issuer: Arc<Issuer>,
    pub ws_stage: String,
    pub redis_url: String,
    pub kafka_brokers: String,
    /// The demo page's folder, when it exists.
    pub web_root: Option<PathBuf>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    redis: RedisService,
    kafka: KafkaService,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("http", &self.http_addr)
            .field("ws", &self.ws_addr)
            .field("invoke", &self.invoke_addr)
            .finish()
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StackError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Bind { addr, source })?;
    let a = l
        .local_addr()
        .map_err(|source| StackError::Bind { addr, source })?;
    Ok((l, a))
}

/// The template as devstack would run it with `settings`, without starting anything.
pub fn read_template(settings: &Settings, http: &str, ws: &str) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(&settings.template).map_err(|e| StackError::Template {
        path: settings.template.clone(),
        source: TemplateError::Read {
            path: settings.template.clone(),
            source: e,
        },
    })?;
    let mut parameters = settings.parameters.clone();
    // devstack is the issuer: point the template's JWT parameters at it unless told otherwise.
    let declared: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| StackError::Template {
            path: settings.template.clone(),
            source: e.into(),
        })?;
    // Push endpoints and webhook receivers on this machine (test and demo services) are
    // loopback ones.
    for (name, value) in [
        ("JwtIssuer", http.to_owned()),
        ("JwtAudience", settings.audience.clone()),
        ("PushAllowLoopback", "true".to_owned()),
        ("WebhookAllowLoopback", "true".to_owned()),
    ] {
        if declared
            .get("Parameters")
            .and_then(|p| p.get(name))
            .is_some()
        {
            parameters.entry(name.to_owned()).or_insert(value);
        }
    }
    let options = LoadOptions {
        parameters,
        pseudo: Pseudo {
            region: settings.region.clone(),
            ..Pseudo::default()
        },
        http_endpoint: http.to_owned(),
        ws_endpoint: ws.to_owned(),
    };
    template::parse(&text, &options).map_err(|source| StackError::Template {
        path: settings.template.clone(),
        source,
    })
}

/// Starts devstack: each phase below, in this order. `env` is devstack's own environment: the
/// services to use ([`ExternalServices`]) and overrides of the functions' variables.
pub async fn start(
    settings: Settings,
    env: BTreeMap<String, String>,
) -> Result<Running, StackError> {
    let services = ExternalServices::from_env(&env);
    let listeners = Listeners::bind(&settings).await?;
    let issuer_url = format!("http://{}", listeners.http_addr);
    let issuer = Arc::new(Issuer::load_or_create(
        &settings.data_dir,
        &issuer_url,
        &settings.audience,
    )?);
    let push_keys = PushKeys::load_or_create(&settings.data_dir)?;
    let stack = read_template(
        &settings,
        &issuer_url,
        &format!("ws://{}", listeners.ws_addr),
    )?;
    let executables = find_binaries(&settings, &stack)?;
    let redis = RedisService::start(&settings.data_dir, services.redis_url.clone()).await?;
    let kafka = start_kafka(&services, &stack, settings.batch_window).await?;
    let account_id = Pseudo::default().account_id;
    let supplied = Supplied {
        redis_url: redis.url(),
        kafka_brokers: kafka.brokers(),
        issuer_url: &issuer_url,
        ws_addr: listeners.ws_addr,
    };
    let lambda = spawn_functions(
        &settings,
        &stack,
        &executables,
        &function_variables(&settings, &supplied),
        &env,
        &push_keys,
        &account_id,
    );

    let (stop, stopped) = watch::channel(false);
    let (http_addr, ws_addr, invoke_addr) = (
        listeners.http_addr,
        listeners.ws_addr,
        listeners.invoke_addr,
    );
    let site = open_site(&settings);
    let web_root = site.as_ref().map(|s| s.root().to_path_buf());
    let mut tasks = start_gateways(
        listeners,
        &settings,
        &stack,
        &lambda,
        &issuer,
        site,
        &account_id,
        &stopped,
    );
    tasks.extend(start_triggers(
        &settings,
        &stack,
        &kafka,
        &lambda,
        &account_id,
        &stopped,
    ));

    Ok(Running {
        http_addr,
        ws_addr,
        invoke_addr,
        redis_url: redis.url().to_owned(),
        kafka_brokers: kafka.brokers().to_owned(),
        web_root,
        stack,
        lambda,
        issuer,
        ws_stage: settings.ws_stage,
        stop,
        tasks,
        redis,
        kafka,
    })
}

/// The three servers' listeners, bound first so their real addresses (port 0 picks a free one)
/// are known to the template (`!GetAtt Api.ApiEndpoint`) and to the functions' variables.
struct Listeners {
    http: TcpListener,
    http_addr: SocketAddr,
    ws: TcpListener,
    ws_addr: SocketAddr,
    invoke: TcpListener,
    invoke_addr: SocketAddr,
}

impl Listeners {
    async fn bind(settings: &Settings) -> Result<Listeners, StackError> {
        let (http, http_addr) = bind(settings.http_addr).await?;
        let (ws, ws_addr) = bind(settings.ws_addr).await?;
        let (invoke, invoke_addr) = bind(settings.invoke_addr).await?;
        Ok(Listeners {
            http,
            http_addr,
            ws,
            ws_addr,
            invoke,
            invoke_addr,
        })
    }
}

/// Each function's executable in `--bin-dir`, by binary name; a missing one is an error that
/// says how to build it (nothing has started yet).
fn find_binaries(
    settings: &Settings,
    stack: &Stack,
) -> Result<BTreeMap<String, PathBuf>, StackError> {
    let mut executables = BTreeMap::new();
    for f in &stack.functions {
        let path = settings.bin_dir.join(&f.binary);
        if !path.is_file() {
            return Err(StackError::MissingBinary {
                function: f.binary.clone(),
                path,
            });
        }
        executables.insert(f.binary.clone(), path);
    }
    Ok(executables)
}

/// The external Kafka, or the embedded broker; then every topic a mapping reads that is not in
/// Herald's topic table (those are the functions' to create), and the on-failure topic of each
/// mapping that has a destination.
async fn start_kafka(
    services: &ExternalServices,
    stack: &Stack,
    batch_window: Option<Duration>,
) -> Result<KafkaService, StackError> {
    let mut kafka = match &services.kafka_brokers {
        Some(b) => KafkaService::external(b.clone()).await?,
        None => KafkaService::embedded()?,
    };
    // Each once: several mappings read the same topic (and share its on-failure topic).
    let mut extra = std::collections::BTreeSet::new();
    for f in &stack.functions {
        for source in &f.kafka {
            for topic in &source.topics {
                if !shared::protocol::topics::TOPICS
                    .iter()
                    .any(|t| t.name == topic)
                {
                    extra.insert(topic.clone());
                }
                if source.on_failure.is_some() {
                    extra.insert(mapping::dlq_topic(topic));
                }
            }
            if batch_window.unwrap_or(source.batching_window) <= mapping::PROMPT_WINDOW {
                for topic in &source.topics {
                    kafka.answer_promptly(topic).await?;
                }
            }
        }
    }
    for topic in &extra {
        kafka.create_topic(topic, 1).await?;
    }
    Ok(kafka)
}

/// What devstack knows once its services run, for the functions' variables.
struct Supplied<'a> {
    redis_url: &'a str,
    kafka_brokers: &'a str,
    issuer_url: &'a str,
    ws_addr: SocketAddr,
}

/// The variables devstack supplies to every function (unless its own environment sets them):
/// where Redis, Kafka, the issuer and `@connections` are, and placeholder AWS credentials.
fn function_variables(settings: &Settings, s: &Supplied<'_>) -> Vec<(&'static str, String)> {
    let issuer_url = s.issuer_url;
    vec![
        ("REDIS_URL", s.redis_url.to_owned()),
        ("KAFKA_BROKERS", s.kafka_brokers.to_owned()),
        ("JWT_ISSUER", issuer_url.to_owned()),
        ("JWT_AUDIENCE", settings.audience.clone()),
        ("JWKS_URL", format!("{issuer_url}/.well-known/jwks.json")),
        (
            "CONNECTIONS_URL",
            format!("http://{}/{}", s.ws_addr, settings.ws_stage),
        ),
        // Lambda gives every function its role's credentials; devstack's @connections accepts
        // any signature, so these only have to exist.
        ("AWS_ACCESS_KEY_ID", "devstack".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "devstack".to_owned()),
        ("AWS_SESSION_TOKEN", "devstack".to_owned()),
    ]
}

/// The Lambda service with one pool per function; instances start on demand. Each function's
/// environment follows the precedence in this module's header.
fn spawn_functions(
    settings: &Settings,
    stack: &Stack,
    executables: &BTreeMap<String, PathBuf>,
    supplied: &[(&str, String)],
    env: &BTreeMap<String, String>,
    push_keys: &PushKeys,
    account_id: &str,
) -> Lambda {
    let specs = stack
        .functions
        .iter()
        .map(|f| {
            let mut environment = f.environment.clone();
            for (k, v) in environment.iter_mut() {
                if let Some(own) = env.get(k) {
                    v.clone_from(own);
                }
            }
            for (k, v) in supplied {
                let value = env
                    .get(*k)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| v.clone());
                environment.insert((*k).to_owned(), value);
            }
            push_keys.supply(&mut environment);
            FunctionSpec {
                name: f.binary.clone(),
                executable: executables.get(&f.binary).cloned().unwrap_or_default(),
                environment,
                memory_mb: f.memory_mb,
                timeout: f.timeout,
                max_instances: settings.max_instances,
                region: settings.region.clone(),
                account_id: account_id.to_owned(),
            }
        })
        .collect();
    Lambda::new(specs)
}

/// The demo page's folder, or `None` (with a warning) when `--web-dir` is not a folder.
fn open_site(settings: &Settings) -> Option<Site> {
    let site = Site::open(&settings.web_dir);
    if site.is_none() {
        tracing::warn!(
            "no demo page: {} is not a folder (--web-dir / DEVSTACK_WEB_DIR)",
            settings.web_dir.display()
        );
    }
    site
}

/// Serves `app` on `listener` until `stopped` is set, then finishes the requests in flight.
fn serve(
    listener: TcpListener,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = async move { crate::lambda::stopped_flag(&mut stopped).await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("server stopped: {e}");
        }
    })
}

/// The three servers: the HTTP API (with the issuer's documents, the demo page and its
/// endpoints), the Lambda Invoke API, and the WebSocket API with `@connections`.
#[allow(clippy::too_many_arguments)]
fn start_gateways(
    listeners: Listeners,
    settings: &Settings,
    stack: &Stack,
    lambda: &Lambda,
    issuer: &Arc<Issuer>,
    site: Option<Site>,
    account_id: &str,
    stopped: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let gateway = Arc::new(HttpGateway {
        api: stack.http_api.clone().unwrap_or_default(),
        lambda: lambda.clone(),
        issuer: issuer.clone(),
        account_id: account_id.to_owned(),
        site,
    });
    let demo = Arc::new(Demo {
        gateway: gateway.clone(),
        issuer: issuer.clone(),
        http_addr: listeners.http_addr,
        ws_addr: listeners.ws_addr,
        ws_stage: settings.ws_stage.clone(),
    });
    let ws = WsGateway::new(WsSettings {
        api: stack.websocket_api.clone(),
        lambda: lambda.clone(),
        stage: settings.ws_stage.clone(),
        limits: WsLimits {
            idle_timeout: settings.ws_idle_timeout,
            max_lifetime: settings.ws_max_lifetime,
            ..WsLimits::default()
        },
        domain: format!("{}", listeners.ws_addr),
        account_id: account_id.to_owned(),
    });
    vec![
        serve(
            listeners.http,
            http_gateway::router(gateway).merge(demo::demo_router(demo)),
            stopped.clone(),
        ),
        serve(
            listeners.invoke,
            invoke_api::router(lambda.clone()),
            stopped.clone(),
        ),
        serve(listeners.ws, ws_gateway::router(ws), stopped.clone()),
    ]
}

/// One task per Kafka event-source mapping and per schedule; each runs until `stopped` is set.
fn start_triggers(
    settings: &Settings,
    stack: &Stack,
    kafka: &KafkaService,
    lambda: &Lambda,
    account_id: &str,
    stopped: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for f in &stack.functions {
        for source in &f.kafka {
            let batching_window = settings.batch_window.unwrap_or(source.batching_window);
            let m = Mapping {
                function: f.binary.clone(),
                source: source.clone(),
                brokers: kafka.brokers().to_owned(),
                batching_window,
                prompt: batching_window <= mapping::PROMPT_WINDOW
                    && source.topics.iter().all(|t| kafka.answers_promptly(t)),
            };
            tasks.push(tokio::spawn(m.run(lambda.clone(), stopped.clone())));
        }
        for s in &f.schedules {
            tasks.push(tokio::spawn(crate::schedule::run(
                lambda.clone(),
                f.binary.clone(),
                s.clone(),
                settings.region.clone(),
                account_id.to_owned(),
                stopped.clone(),
            )));
        }
    }
    tasks
}

impl Running {
    /// The Kafka devstack uses (for fault injection on the embedded broker).
    pub fn kafka(&self) -> &KafkaService {
        &self.kafka
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/{}", self.ws_addr, self.ws_stage)
    }

    /// A human summary of what runs where.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("HTTP API        {}\n", self.http_url()));
        if let Some(root) = &self.web_root {
            s.push_str(&format!(
                "Demo page       {}/ (from {})\n",
                self.http_url(),
                root.display()
            ));
        }
        s.push_str(&format!("WebSocket API   {}\n", self.ws_url()));
        s.push_str(&format!(
            "@connections    http://{}/{}/@connections/{{id}}\n",
            self.ws_addr, self.ws_stage
        ));
        s.push_str(&format!(
            "Lambda Invoke   http://{}/2015-03-31/functions/{{name}}/invocations\n",
            self.invoke_addr
        ));
        s.push_str(&format!(
            "JWKS            {}/.well-known/jwks.json\n",
            self.http_url()
        ));
        s.push_str(&format!("Redis           {}\n", self.redis_url));
        s.push_str(&format!(
            "Kafka           {}{}\n",
            self.kafka_brokers,
            if self.kafka.is_embedded() {
                " (embedded)"
            } else {
                ""
            }
        ));
        for f in &self.stack.functions {
            s.push_str(&format!(
                "function        {} ({}, {} MB, timeout {}s)\n",
                f.binary,
                f.logical_id,
                f.memory_mb,
                f.timeout.as_secs()
            ));
            for k in &f.kafka {
                s.push_str(&format!(
                    "  kafka         {:?} group {} batch {}\n",
                    k.topics, k.consumer_group_id, k.batch_size
                ));
            }
            for sc in &f.schedules {
                s.push_str(&format!(
                    "  schedule      {} ({})\n",
                    sc.expression,
                    crate::schedule::describe(sc.every)
                ));
            }
        }
        s
    }

    /// Stops servers, mappings, schedules and functions, then Redis and Kafka.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("a devstack task did not stop within 5 s");
            }
        }
        self.lambda.shutdown().await;
        self.redis.stop().await;
        let kafka = self.kafka;
        let _ = tokio::task::spawn_blocking(move || kafka.stop()).await;
    }
}
