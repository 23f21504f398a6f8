//! The systems under measurement, each started as separate processes on 127.0.0.1 the way a
//! developer runs them, and stopped (with everything they started) when dropped:
//! - [`Server::herald`]: the `devstack` binary exactly as `scripts/dev` starts it (its own
//!   redis-server and embedded Kafka, the template's defaults, the function binaries as its
//!   children), on free ports, with a fresh data folder;
//! - [`Server::centrifugo`]: Centrifugo with its in-memory engine, an HTTP API key, connection
//!   JWTs signed with an HS256 secret, and each connection subscribed by the server to its user's
//!   personal channel `#<user>`.
//!
//! A server knows how its clients connect ([`fleet::Client`]), where messages go
//! ([`load::Target`]), which processes are its own (its CPU is summed over their trees), and how
//! to stop. Nothing here measures.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use devstack::jwt::Issuer;
use serde_json::json;

use crate::fleet::{Client, Protocol};
use crate::load::Target;

/// One running system.
pub struct Server {
    pub name: &'static str,
    pub protocol: Protocol,
    /// The HTTP status that means "accepted" (Herald `201`, Centrifugo `200`).
    pub accepted: u16,
    child: Child,
    dir: PathBuf,
    auth: Auth,
}

enum Auth {
    Herald {
        issuer: Issuer,
        http: String,
        ws: String,
    },
    Centrifugo {
        secret: String,
        api_key: String,
        addr: String,
    },
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh private folder under the system's temporary folder.
fn fresh_dir(what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "herald-bench-{what}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Waits until `addr` accepts TCP connections, or panics after `wait` (the server did not start).
fn await_port(addr: &str, wait: Duration, child: &mut Child) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited before listening on {addr}: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {addr} after {wait:?}");
}

impl Server {
    /// `devstack serve` from `bin_dir` (the `local` profile's folder, which also holds the
    /// function binaries), with `template` and `web_dir`, as `scripts/dev` runs it. REDIS_URL
    /// and KAFKA_BROKERS are removed from its environment so it launches its own Redis and
    /// embedded Kafka; `env` adds variables (e.g. `RUST_LOG`).
    pub fn herald(bin_dir: &Path, template: &Path, web_dir: &Path, env: &[(&str, &str)]) -> Server {
        let dir = fresh_dir("devstack");
        let http = format!("127.0.0.1:{}", free_port());
        let ws = format!("127.0.0.1:{}", free_port());
        let invoke = format!("127.0.0.1:{}", free_port());
        // The same issuer `scripts/dev token` uses; devstack loads the key this creates.
        let issuer = Issuer::load_or_create(&dir, &format!("http://{http}"), "herald")
            .unwrap_or_else(|e| panic!("devstack's key: {e}"));
        let log = std::fs::File::create(dir.join("devstack.log"))
            .unwrap_or_else(|e| panic!("devstack.log: {e}"));
        let mut command = Command::new(bin_dir.join("devstack"));
        command
            .arg("serve")
            .arg("--template")
            .arg(template)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--bin-dir")
            .arg(bin_dir)
            .args([
                "--http-addr",
                &http,
                "--ws-addr",
                &ws,
                "--invoke-addr",
                &invoke,
            ])
            .arg("--web-dir")
            .arg(web_dir)
            .env_remove("REDIS_URL")
            .env_remove("KAFKA_BROKERS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().unwrap_or_else(|e| panic!("{e}")),
            ))
            .stderr(Stdio::from(log));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin_dir.join("devstack").display()));
        await_port(&http, Duration::from_secs(120), &mut child);
        await_port(&ws, Duration::from_secs(30), &mut child);
        Server {
            name: "Herald",
            protocol: Protocol::Herald,
            accepted: 201,
            child,
            dir,
            auth: Auth::Herald { issuer, http, ws },
        }
    }

    /// Centrifugo from `binary` on a free port, configured by a file written here.
    pub fn centrifugo(binary: &Path) -> Server {
        let dir = fresh_dir("centrifugo");
        let port = free_port();
        let secret = format!("bench-secret-{}", now_secs());
        let api_key = format!("bench-api-key-{}", now_secs());
        let config = json!({
            "http_server": {"address": "127.0.0.1", "port": port},
            "log": {"level": "error"},
            "engine": {"type": "memory"},
            "http_api": {"key": api_key},
            "client": {
                "token": {"hmac_secret_key": secret},
                "allowed_origins": ["*"],
                "subscribe_to_user_personal_channel": {"enabled": true},
            },
            // `#<user>` is then a channel only that user may be in.
            "channel": {"without_namespace": {"allow_user_limited_channels": true}},
        });
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(dir.join("centrifugo.log"))
            .unwrap_or_else(|e| panic!("centrifugo.log: {e}"));
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().unwrap_or_else(|e| panic!("{e}")),
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let addr = format!("127.0.0.1:{port}");
        await_port(&addr, Duration::from_secs(30), &mut child);
        Server {
            name: "Centrifugo",
            protocol: Protocol::Centrifugo,
            accepted: 200,
            child,
            dir,
            auth: Auth::Centrifugo {
                secret,
                api_key,
                addr,
            },
        }
    }

    /// The server's process tree roots, labelled: its CPU is everything under them.
    pub fn roots(&self) -> Vec<(&'static str, u32)> {
        let label = match self.auth {
            Auth::Herald { .. } => "devstack",
            Auth::Centrifugo { .. } => "centrifugo",
        };
        vec![(label, self.child.id())]
    }

    /// The client of `user`: Herald's token rides in the URL, Centrifugo's in `connect`.
    pub fn client(&self, user: &str) -> Client {
        match &self.auth {
            Auth::Herald { issuer, ws, .. } => {
                let token = issuer
                    .token(user, &[], Duration::from_secs(6 * 3600))
                    .unwrap_or_else(|e| panic!("token: {e}"));
                Client {
                    url: format!("ws://{ws}/local?token={token}"),
                    token: None,
                }
            }
            Auth::Centrifugo { secret, addr, .. } => {
                let claims = json!({"sub": user, "exp": now_secs() + 6 * 3600});
                let token = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .unwrap_or_else(|e| panic!("token: {e}"));
                Client {
                    url: format!("ws://{addr}/connection/websocket"),
                    token: Some(token),
                }
            }
        }
    }

    /// Where the sender posts: Herald's create route with `senders` service tokens (so no
    /// sender reaches the per-sender limit), or Centrifugo's publish API.
    pub fn target(&self, senders: usize) -> Target {
        match &self.auth {
            Auth::Herald { issuer, http, .. } => Target::Herald {
                url: format!("http://{http}/v1/notifications"),
                tokens: (0..senders.max(1))
                    .map(|j| {
                        let scopes = ["notifications:write".to_owned()];
                        issuer
                            .token(
                                &format!("bench-svc{j}"),
                                &scopes,
                                Duration::from_secs(6 * 3600),
                            )
                            .unwrap_or_else(|e| panic!("token: {e}"))
                    })
                    .collect(),
            },
            Auth::Centrifugo { api_key, addr, .. } => Target::Centrifugo {
                url: format!("http://{addr}/api/publish"),
                api_key: api_key.clone(),
            },
        }
    }

    /// Where the server's own log goes (devstack's includes its functions' logs).
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    /// SIGINT first (devstack's Ctrl-C stops its functions, Redis and Kafka), then SIGKILL after
    /// 15 s; then the data folder goes.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("BENCH_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
