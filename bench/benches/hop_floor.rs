//! The price of one hop on this machine (`scripts/bench floor`): the CPU one request/answer
//! exchange over loopback TCP costs, with no work on either side, so issue 11's figures can be
//! read against what the architecture's hops alone cost.
//!
//! A notification through devstack crosses about twenty such exchanges (the HTTP API, the Runtime
//! API twice per invocation, Redis three to five times, Kafka's produce, fetch and commit, the
//! `@connections` post, the frame), each a write on one side and a wake-up, a read and usually a
//! write back on the other. This bench measures one exchange between two threads of one process
//! (a lower bound: between processes a wake-up also switches address spaces):
//!
//! - `blocking`: two threads with blocking sockets, the least a hop can cost;
//! - `tokio`: each side a current-thread tokio runtime (epoll, its park and wake), as Herald's
//!   functions and their clients run.
//!
//! Each variant runs paced (one exchange per millisecond: between exchanges both sides sleep, as
//! at 200–1,000 notifications/s) and back to back. CPU per exchange is the two threads' own CPU
//! time (`/proc/thread-self/schedstat`, ns) over the exchanges; softirq work is counted where the
//! kernel ran it. It prints figures and asserts no time. Reads `BENCH_EXCHANGES` (20,000).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes each way: about a small HTTP request or a Redis `EVALSHA` with its answer.
const MESSAGE: usize = 200;

/// This thread's CPU time so far (ns on a CPU, from the scheduler's own accounting).
fn thread_cpu() -> Duration {
    schedstat("/proc/thread-self/schedstat")
}

/// The CPU time in a `schedstat` file (its first field, ns).
fn schedstat(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// How the client spaces its exchanges.
#[derive(Clone, Copy)]
enum Pace {
    /// One exchange per millisecond; both sides idle in between.
    PerMillisecond,
    /// The next exchange as soon as the last answer is read.
    BackToBack,
}

impl Pace {
    fn label(self) -> &'static str {
        match self {
            Pace::PerMillisecond => "paced, 1,000/s",
            Pace::BackToBack => "back to back",
        }
    }
}

/// The client's and the server's CPU over `n` exchanges.
struct Cost {
    client: Duration,
    server: Duration,
    wall: Duration,
}

/// The answering side of the blocking variants: `n` exchanges on the first connection to
/// `listener`. Returns its CPU over them.
fn answer(listener: TcpListener, n: usize) -> Duration {
    let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
    s.set_nodelay(true)
        .unwrap_or_else(|e| panic!("nodelay: {e}"));
    let mut buf = [0u8; MESSAGE];
    let start = thread_cpu();
    for _ in 0..n {
        s.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("read: {e}"));
        s.write_all(&buf).unwrap_or_else(|e| panic!("write: {e}"));
    }
    thread_cpu() - start
}

fn blocking(n: usize, pace: Pace) -> Cost {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let server = std::thread::spawn(move || answer(listener, n));
    let (client, wall) = ask(
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}")),
        n,
        pace,
    );
    Cost {
        client,
        server: server
            .join()
            .unwrap_or_else(|_| panic!("the answering thread panicked")),
        wall,
    }
}

/// The child's argument: answer `n` exchanges on this port, then print the CPU it took (ns).
const CHILD: &str = "--answer-on";

fn processes(n: usize, pace: Pace) -> Cost {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"))
        .port();
    drop(listener);
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("this executable: {e}"));
    let child = std::process::Command::new(exe)
        .args([CHILD, &port.to_string(), &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("child: {e}"));
    // The child binds the port just released; connect once it listens.
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let (client, wall) = ask(stream, n, pace);
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("child output: {e}"));
    let ns = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Cost {
        client,
        server: Duration::from_nanos(ns),
        wall,
    }
}

/// The asking side of the blocking variants: `n` exchanges on `c`. Returns its CPU and the wall
/// time they took.
fn ask(mut c: TcpStream, n: usize, pace: Pace) -> (Duration, Duration) {
    c.set_nodelay(true)
        .unwrap_or_else(|e| panic!("nodelay: {e}"));
    let msg = [7u8; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    let (began, cpu) = (Instant::now(), thread_cpu());
    let mut next = began;
    for _ in 0..n {
        if let Pace::PerMillisecond = pace {
            next += Duration::from_millis(1);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        c.write_all(&msg).unwrap_or_else(|e| panic!("write: {e}"));
        c.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("read: {e}"));
    }
    (thread_cpu() - cpu, began.elapsed())
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn tokio_pair(n: usize, pace: Pace) -> Cost {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("nonblocking: {e}"));
    let server = std::thread::spawn(move || {
        current_thread().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .unwrap_or_else(|e| panic!("listener: {e}"));
            let (mut s, _) = listener
                .accept()
                .await
                .unwrap_or_else(|e| panic!("accept: {e}"));
            s.set_nodelay(true)
                .unwrap_or_else(|e| panic!("nodelay: {e}"));
            let mut buf = [0u8; MESSAGE];
            let start = thread_cpu();
            for _ in 0..n {
                s.read_exact(&mut buf)
                    .await
                    .unwrap_or_else(|e| panic!("read: {e}"));
                s.write_all(&buf)
                    .await
                    .unwrap_or_else(|e| panic!("write: {e}"));
            }
            thread_cpu() - start
        })
    });
    let (client, wall) = current_thread().block_on(async move {
        let mut c = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        c.set_nodelay(true)
            .unwrap_or_else(|e| panic!("nodelay: {e}"));
        let msg = [7u8; MESSAGE];
        let mut buf = [0u8; MESSAGE];
        let (began, cpu) = (Instant::now(), thread_cpu());
        let mut next = tokio::time::Instant::now();
        for _ in 0..n {
            if let Pace::PerMillisecond = pace {
                next += Duration::from_millis(1);
                tokio::time::sleep_until(next).await;
            }
            c.write_all(&msg)
                .await
                .unwrap_or_else(|e| panic!("write: {e}"));
            c.read_exact(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("read: {e}"));
        }
        (thread_cpu() - cpu, began.elapsed())
    });
    Cost {
        client,
        server: server
            .join()
            .unwrap_or_else(|_| panic!("the answering thread panicked")),
        wall,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, port, n] = &args[..] {
        if flag == CHILD {
            let listener = TcpListener::bind((
                "127.0.0.1",
                port.parse::<u16>().unwrap_or_else(|e| panic!("port: {e}")),
            ))
            .unwrap_or_else(|e| panic!("bind: {e}"));
            let cpu = answer(listener, n.parse().unwrap_or_else(|e| panic!("n: {e}")));
            println!("{}", cpu.as_nanos());
            return;
        }
    }
    // `cargo test --benches` runs this as a smoke test: a few exchanges, the same output.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke {
        200
    } else {
        std::env::var("BENCH_EXCHANGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    };
    println!("One loopback TCP exchange ({MESSAGE} B each way, nodelay), {n} exchanges per row");
    println!(
        "{:<10} {:<16} {:>13} {:>13} {:>13} {:>12}",
        "sides", "pace", "client µs", "server µs", "µs/exchange", "exchanges/s"
    );
    for (sides, run) in [
        ("blocking", blocking as fn(usize, Pace) -> Cost),
        ("processes", processes),
        ("tokio", tokio_pair),
    ] {
        for pace in [Pace::PerMillisecond, Pace::BackToBack] {
            let cost = run(n, pace);
            let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
            println!(
                "{:<10} {:<16} {:>13.1} {:>13.1} {:>13.1} {:>12.0}",
                sides,
                pace.label(),
                per(cost.client),
                per(cost.server),
                per(cost.client + cost.server),
                n as f64 / cost.wall.as_secs_f64()
            );
        }
    }
    println!(
        "Each exchange is two hops. Paced, the server column is one hop's receiving end (woken by the socket, reads, writes its answer); the client column adds its own timer's wake-up. The paced rows are the stack's regime at 200–1,000 notifications/s."
    );
}
