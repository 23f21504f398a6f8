//! One instance: a child process running the function's binary, its Runtime API listener, and the
//! supervisor that restarts it when it exits.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{watch, Notify};

use super::runtime_api::{self, InstanceState};
use super::{FunctionSpec, InvokeError, Pool};

/// Consecutive exits before the first `next` after which waiting invocations are failed and the
/// instance is given up (a later invocation starts a new one).
const MAX_INIT_FAILURES: u32 = 3;

pub(crate) fn start(pool: Arc<Pool>, n: usize) {
    tokio::spawn(supervise(pool, n));
}

enum Exit {
    Shutdown,
    SpawnFailed(String),
    Exited { was_ready: bool, status: String },
}

async fn supervise(pool: Arc<Pool>, n: usize) {
    let label = format!("{}#{n}", pool.spec.name);
    let mut init_failures = 0u32;
    loop {
        if *pool.shutdown.borrow() {
            break;
        }
        match run_once(&pool, &label).await {
            Exit::Shutdown => break,
            Exit::SpawnFailed(reason) => {
                tracing::error!(instance = %label, "cannot start: {reason}");
                pool.fail_queued(&InvokeError::Spawn {
                    name: pool.spec.name.clone(),
                    reason,
                });
                break;
            }
            Exit::Exited { was_ready, status } => {
                init_failures = if was_ready { 0 } else { init_failures + 1 };
                if init_failures >= MAX_INIT_FAILURES {
                    let reason = format!("exited during initialisation {init_failures} times in a row (last: {status})");
                    tracing::error!(instance = %label, "{reason}; giving up until the next invocation");
                    pool.fail_queued(&InvokeError::Spawn {
                        name: pool.spec.name.clone(),
                        reason,
                    });
                    break;
                }
                let backoff = if init_failures == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(200 << init_failures)
                };
                tracing::warn!(instance = %label, "exited ({status}); restarting");
                let mut shutdown = pool.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = super::stopped(&mut shutdown) => break,
                }
            }
        }
    }
    pool.live.fetch_sub(1, Ordering::SeqCst);
}

async fn run_once(pool: &Arc<Pool>, label: &str) -> Exit {
    let spec = &pool.spec;
    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => return Exit::SpawnFailed(format!("cannot bind a Runtime API listener: {e}")),
    };
    let runtime_api = match listener.local_addr() {
        Ok(a) => a.to_string(),
        Err(e) => return Exit::SpawnFailed(format!("cannot bind a Runtime API listener: {e}")),
    };
    let (dead_tx, dead) = watch::channel(false);
    let state = Arc::new(InstanceState {
        pool: pool.clone(),
        label: label.to_owned(),
        spawned_at: Instant::now(),
        ready: AtomicBool::new(false),
        in_flight: Mutex::new(None),
        dead,
        kill: Notify::new(),
        init_error: Mutex::new(None),
    });
    let app = runtime_api::router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let stream = format!(
        "{}/[$LATEST]{}",
        chrono::Utc::now().format("%Y/%m/%d"),
        uuid::Uuid::new_v4().simple()
    );
    let mut cmd = command(spec, &runtime_api, stream);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            server.abort();
            return Exit::SpawnFailed(format!("{}: {e}", spec.executable.display()));
        }
    };
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(out, spec.name.clone(), false));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(err, spec.name.clone(), true));
    }

    let mut shutdown = pool.shutdown.clone();
    let status = tokio::select! {
        status = child.wait() => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
        _ = state.kill.notified() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            "killed after a timeout".to_owned()
        }
        _ = super::stopped(&mut shutdown) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let _ = dead_tx.send(true);
            server.abort();
            if let Some(held) = state.take_any() {
                let _ = held.reply.send(Err(InvokeError::ShuttingDown));
            }
            return Exit::Shutdown;
        }
    };
    let _ = dead_tx.send(true);
    server.abort();
    let was_ready = state.ready.load(Ordering::SeqCst);
    if was_ready {
        pool.ready.fetch_sub(1, Ordering::SeqCst);
    }
    let status = match state.init_error.lock().ok().and_then(|mut e| e.take()) {
        Some(init) => format!("{status}; init error: {init}"),
        None => status,
    };
    if let Some(held) = state.take_any() {
        tracing::warn!(instance = %label, request_id = %held.request_id, "instance exited while handling an invocation");
        let _ = held.reply.send(Err(InvokeError::Crashed {
            status: status.clone(),
        }));
    }
    Exit::Exited { was_ready, status }
}

/// The function's process as Lambda starts it: only its own environment plus Lambda's reserved
/// variables (and `PATH`, `LANG`, `RUST_BACKTRACE` unless it sets them), talking to `runtime_api`.
fn command(spec: &FunctionSpec, runtime_api: &str, log_stream: String) -> Command {
    let mut cmd = Command::new(&spec.executable);
    cmd.env_clear()
        .envs(&spec.environment)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.name),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("AWS_REGION", &spec.region)
        .env("AWS_DEFAULT_REGION", &spec.region)
        .env("_HANDLER", "bootstrap")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: Ctrl-C in the terminal reaches devstack only, which then
        // stops its children itself (no restart storm while it shuts down).
        .process_group(0);
    if let Some(dir) = spec.executable.parent() {
        cmd.env("LAMBDA_TASK_ROOT", dir);
    }
    for var in ["PATH", "LANG", "RUST_BACKTRACE"] {
        if let Some(v) = std::env::var_os(var) {
            if !spec.environment.contains_key(var) {
                cmd.env(var, v);
            }
        }
    }
    cmd
}

/// Copies a child's output, each line prefixed with the function name. The lines that arrived
/// together go out in one write: a function logs a few lines per invocation, and a write (and a
/// wake-up) per line was a measurable part of devstack's CPU per notification.
async fn forward(stream: impl AsyncRead + Unpin, name: String, stderr: bool) {
    use std::io::Write;
    let prefix = format!("[{name}] ");
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        push_line(&mut out, &prefix, &line);
        // Every further complete line already read goes in the same write.
        while reader.buffer().contains(&b'\n') {
            line.clear();
            if reader.read_until(b'\n', &mut line).await.is_err() {
                break;
            }
            push_line(&mut out, &prefix, &line);
        }
        let _ = if stderr {
            std::io::stderr().lock().write_all(&out)
        } else {
            std::io::stdout().lock().write_all(&out)
        };
    }
}

/// `prefix`, the line (invalid UTF-8 replaced), and exactly one newline.
fn push_line(out: &mut Vec<u8>, prefix: &str, line: &[u8]) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
    out.push(b'\n');
}
