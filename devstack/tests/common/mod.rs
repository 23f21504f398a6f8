//! One devstack per test binary, started from `tests/fixtures/template.yaml` on 127.0.0.1 with
//! free ports, on its own thread and runtime (tests each have their own runtime). Every function
//! is the fixture binary (`examples/fixture-fn`) under its template name. The stack lives until the
//! test binary exits; its children exit with it (their Runtime API goes away).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use devstack::config::Settings;
use devstack::jwt::Issuer;

pub struct Shared {
    pub http: SocketAddr,
    pub ws: SocketAddr,
    pub invoke: SocketAddr,
    pub brokers: String,
    pub fixture_dir: PathBuf,
    pub issuer: Arc<Issuer>,
    pub stage: String,
}

pub const BINARIES: [&str; 6] = [
    "fixture-echo",
    "fixture-ws",
    "fixture-kafka-retry",
    "fixture-kafka-partial",
    "fixture-kafka-batch",
    "fixture-kafka-dlq",
];

/// The fixture function binary cargo built next to this test binary.
pub fn fixture_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = profile_dir.join("examples").join("fixture-fn");
    assert!(path.is_file(), "{} is missing: run `cargo test -p devstack` (which builds the examples) or `cargo build -p devstack --examples`", path.display());
    path
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("devstack-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    dir
}

/// Settings for a stack of the fixture template, everything on free loopback ports.
pub fn settings(extra: &[(&str, &str)]) -> (Settings, PathBuf) {
    let root = temp_dir("stack");
    let bin_dir = root.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap_or_default();
    let fixture = fixture_binary();
    for name in BINARIES {
        let _ = std::os::unix::fs::symlink(&fixture, bin_dir.join(name));
    }
    let fixture_dir = root.join("fixture");
    std::fs::create_dir_all(&fixture_dir).unwrap_or_default();
    let mut args = vec![
        "--template".to_owned(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/template.yaml").to_owned(),
        "--data-dir".into(),
        root.join("data").display().to_string(),
        "--bin-dir".into(),
        bin_dir.display().to_string(),
        "--http-addr".into(),
        "127.0.0.1:0".into(),
        "--ws-addr".into(),
        "127.0.0.1:0".into(),
        "--invoke-addr".into(),
        "127.0.0.1:0".into(),
        "--param".into(),
        format!("FixtureDir={}", fixture_dir.display()),
    ];
    for (k, v) in extra {
        args.push((*k).to_owned());
        args.push((*v).to_owned());
    }
    let settings = Settings::from_args_and_env(&args, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("settings: {e}"));
    (settings, fixture_dir)
}

/// devstack's own environment for tests: a placeholder Redis (the fixture never uses it) so no
/// redis-server is launched, and whatever overrides the test wants.
pub fn env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("REDIS_URL".to_owned(), "redis://127.0.0.1:1".to_owned()),
        ("GREETING".to_owned(), "from-devstack-env".to_owned()),
    ]);
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

/// Starts a stack on a thread of its own and returns its addresses.
pub fn start_stack(extra_args: &[(&str, &str)]) -> Shared {
    let (settings, fixture_dir) = settings(extra_args);
    let env = env(&[]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        rt.block_on(async move {
            match devstack::stack::start(settings, env).await {
                Ok(running) => {
                    let _ = tx.send(Ok(Shared {
                        http: running.http_addr,
                        ws: running.ws_addr,
                        invoke: running.invoke_addr,
                        brokers: running.kafka_brokers.clone(),
                        fixture_dir,
                        issuer: running.issuer.clone(),
                        stage: running.ws_stage.clone(),
                    }));
                    // Keep it running until the test binary exits.
                    std::future::pending::<()>().await;
                    drop(running);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("devstack did not start: {e}"),
        Err(e) => panic!("devstack did not start within 60 s: {e}"),
    }
}

static STACK: OnceLock<Shared> = OnceLock::new();

/// The stack shared by every test of this binary.
pub fn stack() -> &'static Shared {
    STACK.get_or_init(|| start_stack(&[("--ws-idle-timeout", "2")]))
}

pub fn token(sub: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    stack()
        .issuer
        .token(sub, &scopes, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("token: {e}"))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// Runs a test body with an overall bound.
pub async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    if tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .is_err()
    {
        panic!("test did not finish within {secs} s");
    }
}
