//! One instance's Lambda Runtime API (`/2018-06-01/runtime/...`), the contract `lambda_runtime`
//! (and every other Lambda runtime) speaks.
//!
//! - `GET invocation/next` long-polls for the next invocation of the function and answers with the
//!   payload and the `Lambda-Runtime-*` headers. Asking for the next event while one is still held
//!   means the runtime dropped it: that invocation is answered with an error.
//! - `POST invocation/{id}/response` and `/error` answer the held invocation (202); an unknown id is
//!   a 400, as in AWS. A response over [`MAX_RESPONSE_PAYLOAD`] is a 413 `RequestEntityTooLarge`
//!   to the runtime, and fails the invocation with `Function.ResponseSizeTooLarge`.
//! - `POST init/error` records why the runtime failed to start; the process then exits and the
//!   instance supervisor sees it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{oneshot, watch, Notify};

use super::{InvokeError, Pool, MAX_RESPONSE_PAYLOAD};

/// The invocation an instance holds.
pub(crate) struct InFlight {
    pub request_id: String,
    pub reply: oneshot::Sender<Result<Bytes, InvokeError>>,
    /// Dropped with the invocation once it is answered (or failed), which ends its timeout
    /// watchdog at once: a watchdog left to sleep out the whole timeout kept one timer per
    /// answered invocation, each expiring alone later and waking a worker for nothing.
    _watchdog: oneshot::Sender<()>,
}

/// What the Runtime API handlers and the supervisor of one instance share.
pub(crate) struct InstanceState {
    pub pool: Arc<Pool>,
    /// `api#0`: function name and instance number, for logs.
    pub label: String,
    pub spawned_at: Instant,
    pub ready: AtomicBool,
    pub in_flight: Mutex<Option<InFlight>>,
    /// Set when the process has exited: pending `next` calls give up.
    pub dead: watch::Receiver<bool>,
    /// Asks the supervisor to kill the process (the held invocation timed out).
    pub kill: Notify,
    pub init_error: Mutex<Option<String>>,
}

impl InstanceState {
    /// Takes the held invocation if it is `request_id`.
    fn take(&self, request_id: &str) -> Option<InFlight> {
        let mut held = self.in_flight.lock().ok()?;
        if held.as_ref().is_some_and(|f| f.request_id == request_id) {
            held.take()
        } else {
            None
        }
    }

    /// Takes whatever invocation is held.
    pub fn take_any(&self) -> Option<InFlight> {
        self.in_flight.lock().ok()?.take()
    }
}

pub(crate) fn router(state: Arc<InstanceState>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // Bigger than Lambda's limit, so an oversized response is answered as Lambda does
        // instead of being cut off by the HTTP layer.
        .layer(DefaultBodyLimit::max(4 * MAX_RESPONSE_PAYLOAD))
        .with_state(state)
}

/// Counts an instance as idle while it waits in `next`, however the wait ends.
struct IdleGuard<'a>(&'a AtomicUsize);

impl<'a> IdleGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        IdleGuard(counter)
    }
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &rand[..24],
        &rand[16..32]
    )
}

async fn next(State(st): State<Arc<InstanceState>>) -> Response {
    let pool = st.pool.clone();
    if !st.ready.swap(true, Ordering::SeqCst) {
        let cold = st.spawned_at.elapsed();
        pool.ready.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = pool.cold_starts.lock() {
            c.push(cold);
        }
        tracing::info!(function = %pool.spec.name, instance = %st.label, cold_start_ms = cold.as_secs_f64() * 1000.0, "cold start: spawn to first invocation/next");
    }
    if let Some(dropped) = st.take_any() {
        let _ = dropped.reply.send(Err(InvokeError::Function {
            error_type: "Runtime.NoResponse".into(),
            body: r#"{"errorType":"Runtime.NoResponse","errorMessage":"the runtime asked for the next invocation without answering this one"}"#.into(),
        }));
    }

    let mut dead = st.dead.clone();
    let mut shutdown = pool.shutdown.clone();
    let invocation = {
        let _idle = IdleGuard::new(&pool.idle);
        let stop = async {
            tokio::select! {
                _ = super::stopped(&mut dead) => {}
                _ = super::stopped(&mut shutdown) => {}
            }
        };
        tokio::pin!(stop);
        let queue = tokio::select! {
            rx = pool.rx.lock() => Some(rx),
            _ = &mut stop => None,
        };
        match queue {
            Some(mut rx) => tokio::select! {
                inv = rx.recv() => inv,
                _ = &mut stop => None,
            },
            None => None,
        }
    };
    let Some(inv) = invocation else {
        // The instance is being stopped: its process is killed and this listener aborted. Never
        // answer, because any answer would be read by the runtime as a malformed invocation.
        return std::future::pending::<Response>().await;
    };
    pool.queued.fetch_sub(1, Ordering::SeqCst);

    let timeout = pool.spec.timeout;
    let deadline = epoch_ms() + timeout.as_millis();
    let request_id = inv.request_id.clone();
    let (watchdog_tx, answered) = oneshot::channel::<()>();
    if let Ok(mut held) = st.in_flight.lock() {
        *held = Some(InFlight {
            request_id: request_id.clone(),
            reply: inv.reply,
            _watchdog: watchdog_tx,
        });
    }
    let watchdog = st.clone();
    let watched = request_id.clone();
    tokio::spawn(async move {
        tokio::select! {
            // Answered, failed or dropped: the sender went with the invocation.
            _ = answered => {}
            _ = tokio::time::sleep(timeout) => {
                if let Some(timed_out) = watchdog.take(&watched) {
                    tracing::warn!(instance = %watchdog.label, request_id = %watched, "invocation timed out after {timeout:?}; killing the instance");
                    let _ = timed_out.reply.send(Err(InvokeError::Timeout(timeout)));
                    watchdog.kill.notify_one();
                }
            }
        }
    });

    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", request_id);
    put("lambda-runtime-deadline-ms", deadline.to_string());
    put("lambda-runtime-invoked-function-arn", pool.spec.arn());
    put("lambda-runtime-trace-id", trace_id());
    put("content-type", "application/json".into());
    (StatusCode::OK, headers, inv.payload).into_response()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

fn unknown_request(id: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": format!("Invalid request ID: {id}"), "errorType": "InvalidRequestID" });
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn response(
    State(st): State<Arc<InstanceState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(held) = st.take(&id) else {
        return unknown_request(&id);
    };
    if body.len() > MAX_RESPONSE_PAYLOAD {
        let _ = held
            .reply
            .send(Err(InvokeError::ResponseTooLarge(body.len())));
        let refusal = serde_json::json!({
            "errorMessage": format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_PAYLOAD} bytes)."),
            "errorType": "RequestEntityTooLarge",
        });
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("content-type", "application/json")],
            refusal.to_string(),
        )
            .into_response();
    }
    let _ = held.reply.send(Ok(body));
    accepted()
}

async fn error(
    State(st): State<Arc<InstanceState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(held) = st.take(&id) else {
        return unknown_request(&id);
    };
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned();
    let _ = held.reply.send(Err(InvokeError::Function {
        error_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }));
    accepted()
}

async fn init_error(State(st): State<Arc<InstanceState>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    tracing::error!(instance = %st.label, error = %text, "function failed to initialise");
    if let Ok(mut e) = st.init_error.lock() {
        *e = Some(text);
    }
    accepted()
}
