//! A fleet of WebSocket clients, one user each, and the [`Ledger`] that stamps what happens to
//! each message of a run: when it was scheduled, sent, answered, and received by its client.
//!
//! A message is matched to its frame by the index it carries in `data.e2e` (so nothing waits for
//! the HTTP answer before counting a frame). Two protocols speak to two systems:
//! - [`Protocol::Herald`]: the token is in the URL; `notification.created` frames carry
//!   `notification.data.e2e`;
//! - [`Protocol::Centrifugo`]: the client sends a `connect` command with its token (the server
//!   subscribes it to its personal channel), answers the server's `{}` pings, and publications
//!   arrive as `{"push":{"pub":{"data":{"e2e":…}}}}`, several per frame, one per line.
//!
//! Readers write the ledger without a lock; a frame for an index already received counts as a
//! duplicate, a frame with no index of this run as a stranger. Nothing here asserts.

use std::ops::Range;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{ms, quantile};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// HTTP status recorded for a request that got no HTTP answer.
pub const TRANSPORT_ERROR: u16 = 1;

/// What happened to each message, as nanoseconds since `epoch` (0 = not yet).
pub struct Ledger {
    pub epoch: Instant,
    pub scheduled: Vec<AtomicU64>,
    pub sent: Vec<AtomicU64>,
    pub answered: Vec<AtomicU64>,
    pub received: Vec<AtomicU64>,
    /// HTTP status of the send; 0 until answered, [`TRANSPORT_ERROR`] without an answer.
    pub status: Vec<AtomicU16>,
    /// The status that means "accepted" (Herald's `201`, Centrifugo's `200`).
    pub accepted: u16,
    /// Frames for an index that had already arrived.
    pub duplicates: AtomicUsize,
    /// Frames carrying no index of this run.
    pub strangers: AtomicUsize,
    /// Connections the server closed while the bench ran.
    pub closed: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
}

impl Ledger {
    pub fn new(len: usize, accepted: u16) -> Ledger {
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Ledger {
            epoch: Instant::now(),
            scheduled: zeros(len),
            sent: zeros(len),
            answered: zeros(len),
            received: zeros(len),
            status: (0..len).map(|_| AtomicU16::new(0)).collect(),
            accepted,
            duplicates: AtomicUsize::new(0),
            strangers: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        }
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Nanoseconds since the epoch, never 0 (0 means "not yet").
    pub fn stamp(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.epoch).as_nanos() as u64).max(1)
    }

    pub fn receive(&self, index: u64, at: Instant) {
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.received.get(i))
        else {
            self.strangers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slot
            .compare_exchange(0, self.stamp(at), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the first error of the run, for the report.
    pub fn error(&self, text: String) {
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(text);
        }
    }

    pub fn at(v: &AtomicU64) -> Option<u64> {
        Some(v.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    fn accepted_at(&self, i: usize) -> bool {
        self.status[i].load(Ordering::Relaxed) == self.accepted
    }

    /// Waits until every accepted message of `range` has its frame, or `drain` passes; returns
    /// how long it waited.
    pub async fn await_frames(&self, range: Range<usize>, drain: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < drain {
            let pending = range
                .clone()
                .any(|i| self.accepted_at(i) && Ledger::at(&self.received[i]).is_none());
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }
}

/// Which system the clients speak to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    Herald,
    Centrifugo,
}

/// One client: where it connects, and (Centrifugo) the token of its `connect` command.
#[derive(Debug, Clone)]
pub struct Client {
    pub url: String,
    pub token: Option<String>,
}

/// How the fleet connected.
#[derive(Debug, Clone)]
pub struct Connected {
    pub clients: usize,
    pub wall: Duration,
    /// Sorted handshake times (WebSocket upgrade, plus the `connect` reply for Centrifugo).
    pub handshakes: Vec<Duration>,
}

impl Connected {
    pub fn line(&self) -> String {
        format!(
            "connected  {} clients in {:.1} s ({:.0}/s; handshake p50 {:.1} ms, p99 {:.1} ms)",
            self.clients,
            self.wall.as_secs_f64(),
            self.clients as f64 / self.wall.as_secs_f64().max(1e-9),
            ms(quantile(&self.handshakes, 0.5)),
            ms(quantile(&self.handshakes, 0.99)),
        )
    }
}

/// Opens every client, `concurrency` handshakes at a time, each with its reader task stamping
/// `ledger`; panics if one cannot connect (a fleet with holes would measure something else).
pub async fn connect(
    clients: Vec<Client>,
    protocol: Protocol,
    concurrency: usize,
    ledger: &Arc<Ledger>,
) -> Connected {
    let started = Instant::now();
    let mut handshakes: Vec<Duration> = futures::stream::iter(clients)
        .map(|client| async move {
            let t = Instant::now();
            let socket = open(&client, protocol)
                .await
                .unwrap_or_else(|e| panic!("WebSocket client {}: {e}", client.url));
            (socket, t.elapsed())
        })
        .buffer_unordered(concurrency.max(1))
        .map(|(socket, took)| {
            tokio::spawn(read_frames(socket, protocol, ledger.clone()));
            took
        })
        .collect()
        .await;
    handshakes.sort_unstable();
    Connected {
        clients: handshakes.len(),
        wall: started.elapsed(),
        handshakes,
    }
}

async fn open(client: &Client, protocol: Protocol) -> Result<Socket, String> {
    let (mut socket, _) = tokio_tungstenite::connect_async(client.url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    if protocol == Protocol::Herald {
        return Ok(socket);
    }
    let connect = serde_json::json!({"id": 1, "connect": {"token": client.token}});
    socket
        .send(Message::text(connect.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    // The reply to `connect` (id 1): subscribed to the personal channel, or an error.
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message.map_err(|e| e.to_string())? else {
            continue;
        };
        for line in text.as_str().lines() {
            let reply: Value = serde_json::from_str(line).unwrap_or_default();
            if reply["id"] == 1 {
                return match reply.get("error") {
                    Some(e) => Err(format!("connect refused: {e}")),
                    None => Ok(socket),
                };
            }
        }
    }
    Err("closed before the connect reply".into())
}

/// The `data.e2e` indexes one text frame carries.
fn indexes(protocol: Protocol, text: &str) -> Vec<Option<u64>> {
    match protocol {
        Protocol::Herald => {
            let frame: Value = serde_json::from_str(text).unwrap_or_default();
            if frame["type"] != "notification.created" {
                return vec![];
            }
            vec![frame["notification"]["data"]["e2e"].as_u64()]
        }
        Protocol::Centrifugo => text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|reply| {
                let publication = reply.get("push")?.get("pub")?;
                Some(publication["data"]["e2e"].as_u64())
            })
            .collect(),
    }
}

/// Reads one client's frames until the connection ends, stamping each message's arrival.
async fn read_frames(mut socket: Socket, protocol: Protocol, ledger: Arc<Ledger>) {
    while let Some(message) = socket.next().await {
        let at = Instant::now();
        match message {
            Ok(Message::Text(text)) => {
                // Centrifugo's ping is an empty command, alone or among publications in one
                // frame (one per line); the client answers each with one, or is disconnected.
                if protocol == Protocol::Centrifugo
                    && text.as_str().lines().any(|l| l.trim() == "{}")
                    && socket.send(Message::text("{}")).await.is_err()
                {
                    break;
                }
                for index in indexes(protocol, text.as_str()) {
                    match index {
                        Some(index) => ledger.receive(index, at),
                        None => {
                            ledger.strangers.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    ledger.closed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_matched_by_their_index_in_either_protocol() {
        let herald = r#"{"type":"notification.created","notification":{"data":{"e2e":7}}}"#;
        assert_eq!(indexes(Protocol::Herald, herald), [Some(7)]);
        assert!(indexes(Protocol::Herald, r#"{"type":"counts"}"#).is_empty());
        let centrifugo = "{\"push\":{\"channel\":\"#u\",\"pub\":{\"data\":{\"e2e\":3}}}}\n{\"push\":{\"channel\":\"#u\",\"pub\":{\"data\":{\"e2e\":4}}}}";
        assert_eq!(
            indexes(Protocol::Centrifugo, centrifugo),
            [Some(3), Some(4)]
        );
    }

    #[test]
    fn a_second_frame_for_an_index_is_a_duplicate() {
        let ledger = Ledger::new(2, 201);
        ledger.receive(1, Instant::now());
        ledger.receive(1, Instant::now());
        ledger.receive(9, Instant::now());
        assert_eq!(ledger.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(ledger.strangers.load(Ordering::Relaxed), 1);
    }
}
