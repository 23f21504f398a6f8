//! A scripted HTTP provider for in-process channel tests: a real HTTP/1.1 server on 127.0.0.1
//! standing in for a Web Push service or an SMS API. It records every request (method, path,
//! lower-cased headers, body, arrival instant) and answers, per path, the queued answers first
//! (in order), then the path's standing answer, else `201` with an empty body (or the provider's
//! own default, [`Provider::otherwise`]). An answer is a
//! status, headers and a body ([`answer`], [`Answer::header`], [`Answer::json`]), or no answer
//! at all ([`hold`]: the request is kept open until the client gives up, for timeouts). It stops
//! when dropped. Unlike [`crate::capture::CaptureServer`] (the `@connections` stand-in) it keeps headers
//! and arrival times, which push tests check (VAPID, `TTL`, `Retry-After` waits).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

/// One request the provider received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased; a repeated header keeps its last value.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as an `application/x-www-form-urlencoded` form (what Twilio's API reads).
    pub fn form(&self) -> HashMap<String, String> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((decode_form(k), decode_form(v)))
            })
            .collect()
    }
}

/// One scripted answer: a status, extra headers and a body; or, with `hold`, none.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Never answer: keep the request open until the client closes the connection.
    pub hold: bool,
}

/// An answer with this status, no extra header and an empty body.
pub fn answer(status: u16) -> Answer {
    Answer {
        status,
        headers: vec![],
        body: String::new(),
        hold: false,
    }
}

/// No answer: the request is held open until the client gives up (its timeout).
pub fn hold() -> Answer {
    Answer {
        hold: true,
        ..answer(0)
    }
}

impl Answer {
    /// With this header too.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With this JSON body (`content-type: application/json`).
    pub fn json(mut self, body: serde_json::Value) -> Answer {
        self.body = body.to_string();
        self.header("content-type", "application/json")
    }
}

/// Answers a request before the script does, when it returns `Some` (a fake's own checks:
/// credentials, signatures).
pub type Guard = Arc<dyn Fn(&Received) -> Option<Answer> + Send + Sync>;

#[derive(Default)]
struct Script {
    guard: Option<Guard>,
    queued: HashMap<String, VecDeque<Answer>>,
    standing: HashMap<String, Answer>,
    /// The answer when nothing is scripted for a path: `201` unless [`Provider::otherwise`].
    fallback: Option<Answer>,
    received: Vec<Received>,
}

pub struct Provider {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What records and answers one request from a provider's script: the protocol-neutral half of a
/// provider, for fakes that speak something other than HTTP/1.1 ([`Provider::serving`]).
#[derive(Clone)]
pub struct Responder(Arc<Mutex<Script>>);

impl Responder {
    /// Records `req` and picks its answer: the guard's, else the path's next queued one, else
    /// its standing one, else `201`.
    pub fn answer(&self, req: Received) -> Option<Answer> {
        let mut s = self.0.lock().ok()?;
        let guarded = s.guard.as_ref().and_then(|g| g(&req));
        let a = guarded
            .or_else(|| s.queued.get_mut(&req.path).and_then(VecDeque::pop_front))
            .or_else(|| s.standing.get(&req.path).cloned())
            .or_else(|| s.fallback.clone())
            .unwrap_or(answer(201));
        s.received.push(req);
        Some(a)
    }
}

impl Provider {
    /// An HTTP/1.1 provider.
    pub async fn start() -> Provider {
        Self::serving("http", serve).await
    }

    /// A provider whose connections `serve` speaks (TLS, HTTP/2: `tests/src/apns.rs`), each
    /// request answered by the [`Responder`]; `url` is `<scheme>://127.0.0.1:<port>`.
    pub async fn serving<F, Fut>(scheme: &str, serve: F) -> Provider
    where
        F: Fn(tokio::net::TcpStream, Responder) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (listener, url) = crate::capture::bind_local("provider").await;
        let url = url.replacen("http", scheme, 1);
        let script: Arc<Mutex<Script>> = Arc::default();
        let responder = Responder(script.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, responder.clone()));
            }
        });
        Provider { url, script, task }
    }

    /// Answers these next on `path`, in order, before its standing answer.
    pub fn queue(&self, path: &str, answers: Vec<Answer>) {
        if let Ok(mut s) = self.script.lock() {
            s.queued.entry(path.to_owned()).or_default().extend(answers);
        }
    }

    /// Answers this on `path` whenever nothing is queued for it.
    pub fn always(&self, path: &str, a: Answer) {
        if let Ok(mut s) = self.script.lock() {
            s.standing.insert(path.to_owned(), a);
        }
    }

    /// Answers this on any path with nothing scripted (instead of `201`).
    pub fn otherwise(&self, a: Answer) {
        if let Ok(mut s) = self.script.lock() {
            s.fallback = Some(a);
        }
    }

    /// Every request goes to `guard` first; its answer, when it gives one, replaces the script's.
    pub fn guard(&self, guard: Guard) {
        if let Ok(mut s) = self.script.lock() {
            s.guard = Some(guard);
        }
    }

    /// Everything that arrived, in arrival order.
    pub fn received_all(&self) -> Vec<Received> {
        self.script
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// What arrived on `path`, in arrival order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.script
            .lock()
            .map(|s| {
                s.received
                    .iter()
                    .filter(|r| r.path == path)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One keep-alive connection: each request is recorded, then answered from the script.
async fn serve(stream: tokio::net::TcpStream, responder: Responder) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(req) = read_request(&mut read).await {
        let Some(reply) = responder.answer(req) else {
            return;
        };
        if reply.hold {
            // Until the client closes its side (a read of 0 bytes) or the provider stops.
            let mut rest = Vec::new();
            let _ = read.read_to_end(&mut rest).await;
            return;
        }
        let mut text = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&reply.body);
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_request<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<Received> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        read.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// Percent-decoding with `+` as space, as forms encode.
fn decode_form(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers in the shape of Amazon SES's v2 API (restJson1): `SendEmail` is
/// `POST /v2/email/outbound-emails`, answered `200 {"MessageId": …}`; an error names its type in
/// `x-amzn-ErrorType` and the body (`{"__type", "message"}`), as the AWS SDKs read it.
pub mod ses {
    use super::{answer, Answer};

    /// Where `SendEmail` posts.
    pub const SEND_EMAIL: &str = "/v2/email/outbound-emails";

    /// Accepted, with a message id like SES's.
    pub fn sent() -> Answer {
        answer(200).json(serde_json::json!({
            "MessageId": "0100018c5f3b3e1a-5c7e1b1e-8f4e-4b7a-9f1e-3c2d1a0b9e8f-000000"
        }))
    }

    /// An SES error: `status`, its type (`TooManyRequestsException`, `MessageRejected`,
    /// `SendingPausedException`, …) and message.
    pub fn error(status: u16, kind: &str, message: &str) -> Answer {
        answer(status)
            .json(serde_json::json!({"__type": kind, "message": message}))
            .header("x-amzn-ErrorType", kind)
    }
}
