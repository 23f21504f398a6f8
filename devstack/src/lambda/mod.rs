//! Lambda: each function's real binary, run as child processes against devstack's own Lambda
//! Runtime API, plus the Invoke API (`POST /2015-03-31/functions/{name}/invocations`).
//!
//! Contracts:
//! - [`Lambda::invoke`] delivers the payload to exactly one instance and answers with what the
//!   function posted to `/response` (or `/error`). An instance that exits while it holds an
//!   invocation answers that invocation with [`InvokeError::Crashed`] and is restarted; an
//!   invocation past the function's `Timeout` answers [`InvokeError::Timeout`] and its instance is
//!   killed and restarted, as Lambda recycles a timed-out sandbox.
//! - Instances start on demand: a new one when more invocations wait than instances are idle, up
//!   to [`FunctionSpec::max_instances`]. Each instance has its own Runtime API listener, so every
//!   `next`/`response` is attributed to the process that made it.
//! - Cold start (spawn → first `invocation/next`) is measured and logged for every instance.
//! - Children run in their own process group (Ctrl-C reaches only devstack, which then kills them)
//!   and are killed when dropped.

mod instance;
pub mod invoke_api;
mod runtime_api;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

/// Resolves once the flag behind `rx` is set (or its sender is gone).
/// Public alias of [`stopped`] for the other services.
pub async fn stopped_flag(rx: &mut watch::Receiver<bool>) {
    stopped(rx).await
}

pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// How to run one function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The binary name, which is also the function's name locally.
    pub name: String,
    pub executable: PathBuf,
    /// The complete environment of the process (template, overrides, devstack's settings);
    /// the `AWS_LAMBDA_*` variables are added per instance.
    pub environment: BTreeMap<String, String>,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub max_instances: usize,
    pub region: String,
    pub account_id: String,
}

impl FunctionSpec {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}

/// Why an invocation produced no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("no function named {0}")]
    NotFound(String),
    /// The function reported an error through `/invocation/{id}/error` (or `/init/error`).
    #[error("function error {error_type}: {body}")]
    Function { error_type: String, body: String },
    #[error("the runtime exited while handling the invocation: {status}")]
    Crashed { status: String },
    #[error("task timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot start {name}: {reason}")]
    Spawn { name: String, reason: String },
    /// The invocation's payload is over [`MAX_PAYLOAD`]: refused before any instance sees it.
    #[error("Request must be smaller than {MAX_PAYLOAD} bytes for the InvokeFunction operation (it is {0})")]
    TooLarge(usize),
    /// The function answered more than [`MAX_RESPONSE_PAYLOAD`]: the invocation fails.
    #[error("Response payload size ({0} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_PAYLOAD} bytes).")]
    ResponseTooLarge(usize),
    #[error("devstack is shutting down")]
    ShuttingDown,
}

impl InvokeError {
    /// The error document Lambda returns to an Invoke caller (`X-Amz-Function-Error: Unhandled`).
    pub fn to_lambda_json(&self, request_id: &str) -> serde_json::Value {
        match self {
            InvokeError::Function { body, .. } => serde_json::from_str(body).unwrap_or_else(
                |_| serde_json::json!({ "errorMessage": body, "errorType": "Unhandled" }),
            ),
            InvokeError::Crashed { status } => serde_json::json!({
                "errorType": "Runtime.ExitError",
                "errorMessage": format!("RequestId: {request_id} Error: Runtime exited with error: {status}"),
            }),
            InvokeError::ResponseTooLarge(_) => serde_json::json!({
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": self.to_string(),
            }),
            InvokeError::Timeout(d) => serde_json::json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!("RequestId: {request_id} Error: Task timed out after {:.2} seconds", d.as_secs_f64()),
            }),
            other => {
                serde_json::json!({ "errorType": "Runtime.Unknown", "errorMessage": other.to_string() })
            }
        }
    }
}

/// Largest synchronous invocation payload Lambda accepts ("6 MB": 6,291,456 bytes). Over it, the
/// Invoke API answers 413 `RequestEntityTooLargeException` and API Gateway 413.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

/// Largest synchronous response Lambda accepts: 100 bytes more than a request, as Lambda
/// measures it (its error message names 6,291,556). Over it, the Runtime API answers the runtime
/// 413 `RequestEntityTooLarge`, the invocation fails with `Function.ResponseSizeTooLarge`, and
/// API Gateway answers 502.
pub const MAX_RESPONSE_PAYLOAD: usize = MAX_PAYLOAD + 100;

pub(crate) struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub reply: oneshot::Sender<Result<Bytes, InvokeError>>,
}

/// One function's instances and the invocations waiting for them.
pub(crate) struct Pool {
    pub spec: FunctionSpec,
    tx: mpsc::UnboundedSender<Invocation>,
    pub rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    /// Invocations sent and not yet taken by an instance.
    pub queued: AtomicUsize,
    /// Instances waiting in `invocation/next`.
    pub idle: AtomicUsize,
    /// Instances started and not given up on.
    pub live: AtomicUsize,
    /// Instances that have reached their first `invocation/next` and are still running.
    pub ready: AtomicUsize,
    pub shutdown: watch::Receiver<bool>,
    pub cold_starts: Mutex<Vec<Duration>>,
    next_instance: AtomicUsize,
}

impl Pool {
    fn scale(self: &Arc<Self>) {
        loop {
            let live = self.live.load(Ordering::SeqCst);
            if self.queued.load(Ordering::SeqCst)
                <= self.idle.load(Ordering::SeqCst) + self.starting()
                || live >= self.spec.max_instances
            {
                return;
            }
            if self
                .live
                .compare_exchange(live, live + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                let n = self.next_instance.fetch_add(1, Ordering::SeqCst);
                instance::start(self.clone(), n);
                return;
            }
        }
    }

    /// Instances started that have not yet asked for work (counted as about to be idle).
    fn starting(&self) -> usize {
        self.live
            .load(Ordering::SeqCst)
            .saturating_sub(self.busy_or_idle())
    }

    fn busy_or_idle(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    /// Fails everything waiting (the function cannot start, or devstack stops).
    pub fn fail_queued(&self, err: &InvokeError) {
        if let Ok(mut rx) = self.rx.try_lock() {
            while let Ok(inv) = rx.try_recv() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                let _ = inv.reply.send(Err(err.clone()));
            }
        }
    }
}

/// Every function, by name. Cheap to clone.
#[derive(Clone)]
pub struct Lambda {
    pools: Arc<BTreeMap<String, Arc<Pool>>>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Lambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lambda")
            .field("functions", &self.pools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Lambda {
    /// Registers the functions. Nothing starts until the first invocation (or [`Lambda::prewarm`]).
    pub fn new(specs: Vec<FunctionSpec>) -> Lambda {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let pools = specs
            .into_iter()
            .map(|spec| {
                let (tx, rx) = mpsc::unbounded_channel();
                let pool = Pool {
                    spec,
                    tx,
                    rx: tokio::sync::Mutex::new(rx),
                    queued: AtomicUsize::new(0),
                    idle: AtomicUsize::new(0),
                    live: AtomicUsize::new(0),
                    ready: AtomicUsize::new(0),
                    shutdown: shutdown.clone(),
                    cold_starts: Mutex::new(Vec::new()),
                    next_instance: AtomicUsize::new(0),
                };
                (pool.spec.name.clone(), Arc::new(pool))
            })
            .collect();
        Lambda {
            pools: Arc::new(pools),
            shutdown_tx: Arc::new(shutdown_tx),
        }
    }

    pub fn functions(&self) -> impl Iterator<Item = &FunctionSpec> {
        self.pools.values().map(|p| &p.spec)
    }

    pub fn has(&self, name: &str) -> bool {
        self.pools.contains_key(name)
    }

    /// Starts one instance of every function now, so the first request does not pay the cold start.
    pub fn prewarm(&self) {
        for pool in self.pools.values() {
            if pool.live.fetch_add(1, Ordering::SeqCst) < pool.spec.max_instances {
                let n = pool.next_instance.fetch_add(1, Ordering::SeqCst);
                instance::start(pool.clone(), n);
            } else {
                pool.live.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Invokes `name` synchronously (RequestResponse) and returns its response payload.
    pub async fn invoke(&self, name: &str, payload: Bytes) -> Result<Bytes, InvokeError> {
        self.invoke_with_id(name, payload, uuid::Uuid::new_v4().to_string())
            .await
    }

    /// As [`Lambda::invoke`], with the caller's request id.
    pub async fn invoke_with_id(
        &self,
        name: &str,
        payload: Bytes,
        request_id: String,
    ) -> Result<Bytes, InvokeError> {
        let pool = self
            .pools
            .get(name)
            .ok_or_else(|| InvokeError::NotFound(name.to_owned()))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(InvokeError::TooLarge(payload.len()));
        }
        if *self.shutdown_tx.borrow() {
            return Err(InvokeError::ShuttingDown);
        }
        let (reply, answer) = oneshot::channel();
        pool.queued.fetch_add(1, Ordering::SeqCst);
        if pool
            .tx
            .send(Invocation {
                request_id,
                payload,
                reply,
            })
            .is_err()
        {
            pool.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(InvokeError::ShuttingDown);
        }
        pool.scale();
        // The instance enforces the function's timeout once it holds the invocation; this bound
        // only covers an invocation that never reaches an instance (none can start).
        let wait = pool.spec.timeout + Duration::from_secs(60);
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::ShuttingDown),
            Err(_) => Err(InvokeError::Timeout(wait)),
        }
    }

    /// Cold starts measured so far for `name` (spawn → first `invocation/next`).
    pub fn cold_starts(&self, name: &str) -> Vec<Duration> {
        self.pools
            .get(name)
            .and_then(|p| p.cold_starts.lock().ok().map(|c| c.clone()))
            .unwrap_or_default()
    }

    /// Stops every instance (killing its process) and fails whatever waits.
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        for pool in self.pools.values() {
            pool.fail_queued(&InvokeError::ShuttingDown);
        }
        // Instances notice the flag at once; give them a moment to reap their children.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .pools
            .values()
            .any(|p| p.live.load(Ordering::SeqCst) > 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
