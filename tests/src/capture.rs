//! A stand-in `@connections` endpoint for in-process handler tests: a real HTTP/1.1 server on
//! 127.0.0.1 that records each request's method, path and body and answers `200`, or the
//! scripted answers given to [`CaptureServer::scripted`] first (status + AWS error type, as API
//! Gateway sends them). The end-to-end tests use devstack's real one. It stops when dropped; each
//! connection serves at most [`MAX_REQUESTS_PER_CONNECTION`] requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const MAX_REQUESTS_PER_CONNECTION: usize = 1_000;

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

pub struct CaptureServer {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    requests: Arc<Mutex<Vec<Captured>>>,
    task: JoinHandle<()>,
}

/// A scripted answer: HTTP status and the `x-amzn-ErrorType` API Gateway sends with it.
pub type Answer = (u16, &'static str);

/// A listener on a free loopback port and its `http://` base URL, for the local fakes; `what`
/// names the fake in the panic if the port cannot be had.
pub(crate) async fn bind_local(what: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{what}: bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{what}: address: {e}"));
    (listener, format!("http://{addr}"))
}

impl CaptureServer {
    pub async fn start() -> CaptureServer {
        Self::scripted(Vec::new()).await
    }

    /// Answers these first, in order, then `200`.
    pub async fn scripted(answers: Vec<Answer>) -> CaptureServer {
        let answers: Arc<Mutex<VecDeque<Answer>>> = Arc::new(Mutex::new(answers.into()));
        let (listener, url) = bind_local("capture server").await;
        let requests: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let sink = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
                        let Some(request) = read_request(&mut read).await else {
                            return;
                        };
                        if let Ok(mut all) = sink.lock() {
                            all.push(request);
                        }
                        let next = answers.lock().ok().and_then(|mut a| a.pop_front());
                        let response = match next {
                            None => "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned(),
                            Some((status, kind)) => {
                                let body = format!("{{\"message\":\"{kind}\"}}");
                                format!(
                                    "HTTP/1.1 {status} Error\r\nx-amzn-errortype: {kind}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                            }
                        };
                        if write.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CaptureServer {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<Captured> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        read.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    Some(Captured { method, path, body })
}
