//! Redis for the functions: `REDIS_URL` when set, otherwise a `redis-server` launched by devstack
//! with its data in `<data>/redis/` (AOF on, RDB off, `noeviction`, bound to 127.0.0.1).
//!
//! Contract: [`RedisService::start`] returns once the server answers PING; [`RedisService::stop`]
//! sends SIGTERM (Redis flushes its AOF and exits) and kills it only if it lingers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis-server is not installed. Run scripts/install-deps (or `apt-get install redis-server`), or set REDIS_URL to a running Redis")]
    NotInstalled,
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("redis-server did not answer PING within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
}

/// The Redis the functions use.
pub enum RedisService {
    External(String),
    Launched { url: String, child: Child },
}

impl std::fmt::Debug for RedisService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisService")
            .field("url", &self.url())
            .finish()
    }
}

async fn pong(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && &buf == b"+PONG\r\n"
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

impl RedisService {
    /// Uses `external` if given, else launches `redis-server` in `<data_dir>/redis`.
    pub async fn start(
        data_dir: &Path,
        external: Option<String>,
    ) -> Result<RedisService, RedisError> {
        if let Some(url) = external {
            return Ok(RedisService::External(url));
        }
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir).map_err(|source| RedisError::Io {
            path: dir.clone(),
            source,
        })?;
        let dir = std::fs::canonicalize(&dir).map_err(|source| RedisError::Io {
            path: dir.clone(),
            source,
        })?;
        let port = free_port().map_err(|source| RedisError::Io {
            path: dir.clone(),
            source,
        })?;
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&dir)
            .args([
                "--appendonly",
                "yes",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    RedisError::NotInstalled
                } else {
                    RedisError::Io {
                        path: dir.clone(),
                        source: e,
                    }
                }
            })?;
        let started = Instant::now();
        let wait = Duration::from_secs(30);
        while !pong(port).await {
            if started.elapsed() > wait {
                return Err(RedisError::NotReady(wait, log));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tracing::info!(
            "redis-server on 127.0.0.1:{port}, data in {}",
            dir.display()
        );
        Ok(RedisService::Launched {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        })
    }

    pub fn url(&self) -> &str {
        match self {
            RedisService::External(url) | RedisService::Launched { url, .. } => url,
        }
    }

    /// Stops a launched server cleanly (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(self) {
        if let RedisService::Launched { mut child, .. } = self {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
