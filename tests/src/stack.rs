//! End-to-end tests through devstack: the real `template.yaml`, the real function binaries, the
//! real HTTP and WebSocket gateways and Kafka trigger, with real HTTP and WebSocket clients.
//!
//! [`shared_stack`] starts one devstack per test binary on free loopback ports, against the run's
//! Redis (`REDIS_URL`) and Kafka (`KAFKA_BROKERS`, else devstack's embedded broker). Tests keep
//! apart by using fresh user ids. [`Stack::start`] starts a private one, for faults that would
//! disturb other tests (taking Kafka down).
//!
//! The function binaries are the workspace's debug builds next to the test binary
//! (`cargo build --bins`, which `scripts/test` runs first). Without them, or without Redis, the
//! tests skip (or fail under `HERALD_REQUIRE_SERVICES=1`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use devstack::config::Settings;
use devstack::jwt::Issuer;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::skip;

/// The function binaries devstack runs (the template's `BuildProperties.Binary` values).
pub const FUNCTIONS: [&str; 9] = [
    "api",
    "ws",
    "delivery",
    "outbox-relay",
    "analytics",
    "push",
    "webhooks",
    "scheduler",
    "broadcast",
];

enum Control {
    KafkaDown(bool, oneshot::Sender<Result<(), String>>),
}

/// A running devstack.
pub struct Stack {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub invoke: SocketAddr,
    pub stage: String,
    pub issuer: Arc<Issuer>,
    pub redis_url: String,
    pub kafka_brokers: String,
    pub data_dir: PathBuf,
    control: mpsc::UnboundedSender<Control>,
}

/// The directory holding the workspace's binaries for this test binary's profile.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Why the stack cannot start here, if it cannot.
pub fn missing() -> Option<String> {
    if std::env::var("REDIS_URL").map_or(true, |u| u.is_empty()) {
        return Some("REDIS_URL is not set (scripts/test starts Redis and sets it)".into());
    }
    let dir = bin_dir();
    FUNCTIONS.iter().find(|f| !dir.join(f).is_file()).map(|f| {
        format!(
            "{}/{f} is missing: build the functions first (cargo build --bins; scripts/test does)",
            dir.display()
        )
    })
}

/// Can a stack start here? Says why not (after [`skip`]) when it cannot; for tests that start
/// a private [`Stack`] only.
pub fn stack_available() -> bool {
    match missing() {
        Some(why) => {
            skip(&why);
            false
        }
        None => true,
    }
}

/// The stack shared by every test of this binary, or `None` (after [`skip`]).
pub fn shared_stack() -> Option<&'static Stack> {
    static STACK: OnceLock<Option<Stack>> = OnceLock::new();
    let stack = STACK.get_or_init(|| {
        if let Some(why) = missing() {
            skip(&why);
            return None;
        }
        Some(Stack::start(&[]))
    });
    if stack.is_none() {
        // Every test that asks must say so (the first one already did).
        if let Some(why) = missing() {
            skip(&why);
        }
    }
    stack.as_ref()
}

impl Stack {
    /// Starts a devstack on its own thread and runtime. `env` adds to (or overrides) devstack's
    /// own environment: `("KAFKA_BROKERS", "")` forces the embedded broker; variables the template
    /// declares (e.g. `OUTBOX_GRACE_MS`) override the template's values; `DEVSTACK_*` settings
    /// (e.g. `DEVSTACK_BATCH_WINDOW_MS`, `DEVSTACK_MAX_INSTANCES`) configure devstack itself.
    pub fn start(env: &[(&str, &str)]) -> Stack {
        let root =
            std::env::temp_dir().join(format!("herald-e2e-{}", uuid::Uuid::new_v4().simple()));
        let data_dir = root.join("data");
        let template = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
        let args: Vec<String> = [
            "--template",
            template,
            "--data-dir",
            &data_dir.display().to_string(),
            "--bin-dir",
            &bin_dir().display().to_string(),
            "--http-addr",
            "127.0.0.1:0",
            "--ws-addr",
            "127.0.0.1:0",
            "--invoke-addr",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let devstack_env: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("DEVSTACK_"))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let settings = Settings::from_args_and_env(&args, &devstack_env)
            .unwrap_or_else(|e| panic!("devstack settings: {e}"));
        let mut own_env: BTreeMap<String, String> = ["REDIS_URL", "REDIS_CLUSTER", "KAFKA_BROKERS"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        own_env.insert("RUST_LOG".into(), "warn".into());
        for (k, v) in env {
            own_env.insert((*k).to_owned(), (*v).to_owned());
        }
        if own_env.get("KAFKA_BROKERS").is_some_and(|b| b.is_empty()) {
            own_env.remove("KAFKA_BROKERS");
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (control, mut commands) = mpsc::unbounded_channel::<Control>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            rt.block_on(async move {
                let running = match devstack::stack::start(settings, own_env).await {
                    Ok(running) => running,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((
                    running.http_addr,
                    running.ws_addr,
                    running.invoke_addr,
                    running.ws_stage.clone(),
                    running.issuer.clone(),
                    running.redis_url.clone(),
                    running.kafka_brokers.clone(),
                )));
                // Serve until the test binary exits (or the owner drops its handle); the
                // functions exit by themselves when their Runtime API goes away.
                while let Some(command) = commands.recv().await {
                    match command {
                        Control::KafkaDown(down, reply) => {
                            let r = running.kafka().set_down(down).await;
                            let _ = reply.send(r.map_err(|e| e.to_string()));
                        }
                    }
                }
                running.shutdown().await;
            });
        });
        let (http, ws, invoke, stage, issuer, redis_url, kafka_brokers) =
            match ready_rx.recv_timeout(Duration::from_secs(90)) {
                Ok(Ok(ready)) => ready,
                Ok(Err(e)) => panic!("devstack did not start: {e}"),
                Err(e) => panic!("devstack did not start within 90 s: {e}"),
            };
        let stack = Stack {
            http,
            ws,
            invoke,
            stage,
            issuer,
            redis_url,
            kafka_brokers,
            data_dir,
            control,
        };
        stack.warm_up();
        stack
    }

    /// Waits until a notification makes the whole trip (api → Kafka → delivery → socket), so
    /// tests never time out on start-up work: Kafka consumer groups joining, cold starts. Runs on
    /// a thread of its own, since the caller may be inside a test's runtime.
    fn warm_up(&self) {
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap_or_else(|e| panic!("runtime: {e}"));
                    rt.block_on(async {
                        let user = format!("warm-up-{}", uuid::Uuid::new_v4().simple());
                        let mut socket = self.connect(&user).await;
                        self.create(&user, "warm-up").await;
                        socket
                            .next_of("notification.created", Duration::from_secs(120))
                            .await
                            .is_some()
                    })
                })
                .join()
        });
        assert!(
            matches!(result, Ok(true)),
            "devstack started, but a notification did not reach a socket within 120 s"
        );
    }

    /// Takes devstack's embedded Kafka broker down, or brings it back.
    pub async fn kafka_down(&self, down: bool) {
        let (reply, answer) = oneshot::channel();
        let _ = self.control.send(Control::KafkaDown(down, reply));
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("kafka_down({down}): {e}"),
            Err(_) => panic!("devstack is gone"),
        }
    }

    pub fn token(&self, sub: &str, scopes: &[&str], ttl: Duration) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.issuer
            .token(sub, &scopes, ttl)
            .unwrap_or_else(|e| panic!("token: {e}"))
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/{}?token={token}", self.ws, self.stage)
    }

    /// Creates a notification for `user` as a service would; returns the 201 body.
    pub async fn create(&self, user: &str, title: &str) -> Value {
        self.create_with(user, serde_json::json!({"title": title, "body": "hello"}))
            .await
    }

    /// Creates a notification for `user` with these fields (`userId` and `type` are added).
    pub async fn create_with(&self, user: &str, fields: Value) -> Value {
        let mut body = serde_json::json!({"userId": user, "type": "comment"});
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        let token = self.token(
            "e2e-service",
            &["notifications:write"],
            Duration::from_secs(300),
        );
        let response = http_client()
            .post(self.http_url("/v1/notifications"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /v1/notifications: {e}"));
        let status = response.status().as_u16();
        let json: Value = response.json().await.unwrap_or_default();
        assert_eq!(status, 201, "create for {user}: {json}");
        json
    }

    /// GET as `user`.
    pub async fn get(&self, user: &str, path: &str) -> Value {
        let token = self.token(user, &[], Duration::from_secs(300));
        let response = http_client()
            .get(self.http_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap_or_default()
    }

    /// Invokes a function synchronously through devstack's Lambda Invoke API.
    pub async fn invoke(&self, function: &str, event: &Value) -> Value {
        let response = http_client()
            .post(format!(
                "http://{}/2015-03-31/functions/{function}/invocations",
                self.invoke
            ))
            .json(event)
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {function}: {e}"));
        assert!(
            response.status().is_success(),
            "invoke {function}: {}",
            response.status()
        );
        response.json().await.unwrap_or_default()
    }

    /// A connection to the stack's Redis made as its functions make theirs: a single Redis, or
    /// Redis Cluster on the cluster tier (`REDIS_CLUSTER`), where `redis_url` is a seed list.
    pub async fn redis(&self) -> shared::store::RedisConn {
        let mut settings = shared::config::RedisSettings::from_env(&shared::config::Env::process())
            .unwrap_or_else(|e| panic!("redis settings: {e}"));
        settings.url = self.redis_url.clone();
        shared::store::RedisConn::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
    }

    /// Opens a WebSocket as `user` (a one-hour token).
    pub async fn connect(&self, user: &str) -> WsClient {
        let token = self.token(user, &[], Duration::from_secs(3600));
        WsClient::connect(&self.ws_url(&token))
            .await
            .unwrap_or_else(|e| panic!("connect {user}: {e}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.data_dir.parent().unwrap_or(&self.data_dir));
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

/// A real WebSocket client speaking Herald's protocol, as a test sees it.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Set once the server closed the connection: the close code, if any.
    pub closed: Option<Option<u16>>,
}

impl WsClient {
    /// Connects; the error is the HTTP status of a refused handshake, or the transport error.
    pub async fn connect(url: &str) -> Result<WsClient, String> {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => Ok(WsClient {
                socket,
                closed: None,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(format!("HTTP {}", response.status().as_u16()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        if let Err(e) = self.socket.send(Message::Text(text.into())).await {
            panic!("send: {e}");
        }
    }

    /// The next frame within `wait`, or `None` (timeout, or the connection closed).
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                    if let Err(e) = crate::frames::check_frame(&frame) {
                        panic!("the frame breaks /asyncapi.json: {e}\n{text}");
                    }
                    return Some(frame);
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = Some(frame.map(|f| u16::from(f.code)));
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    self.closed.get_or_insert(None);
                    return None;
                }
            }
        }
    }

    /// The next frame of type `kind`, skipping others, within `wait`.
    pub async fn next_of(&mut self, kind: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left).await?;
            if frame["type"] == kind {
                return Some(frame);
            }
        }
    }

    /// Every frame that arrives until `quiet` passes without one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Some(f) = self.next(quiet).await {
            frames.push(f);
        }
        frames
    }

    /// Sends `sync {since}` and collects the pages until the last one: the change frames in
    /// order, and how many pages carried them. `Err(head)` on `resync`.
    pub async fn sync(&mut self, since: u64) -> Result<(Vec<Value>, usize), u64> {
        self.send(serde_json::json!({"action": "sync", "since": since}))
            .await;
        let mut changes = Vec::new();
        let mut pages = 0;
        loop {
            let Some(frame) = self.next(Duration::from_secs(30)).await else {
                panic!("no sync reply (closed by the server: {:?})", self.closed);
            };
            match frame["type"].as_str() {
                Some("resync") => return Err(frame["head"].as_u64().unwrap_or_default()),
                Some("sync.result") => {
                    pages += 1;
                    changes.extend(frame["changes"].as_array().cloned().unwrap_or_default());
                    if frame["more"] != true {
                        return Ok((changes, pages));
                    }
                }
                // A live frame that raced the reply; the protocol's seq rules cover it.
                _ => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// What a client that follows the protocol does with frames: applies each `seq` once, in order.
/// Returns the applied seqs.
pub fn applied_seqs(frames: &[Value], mut last: u64) -> Vec<u64> {
    let mut applied = Vec::new();
    let mut held: std::collections::BTreeMap<u64, ()> = std::collections::BTreeMap::new();
    for frame in frames {
        if let Some(seq) = frame["seq"].as_u64() {
            if seq > last {
                held.insert(seq, ());
            }
        }
        while held.remove(&(last + 1)).is_some() {
            last += 1;
            applied.push(last);
        }
    }
    applied
}
