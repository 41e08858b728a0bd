//! End-to-end benchmark: `1+1;` queries through the client, side by side
//! with a raw floor (pre-encoded frames over a bare socket, no client
//! library), pipelined and one at a time, over TCP and WebSocket; and the
//! memory of 10 000 requests in flight on one connection.
//!
//! ```text
//! cargo xtask bench-e2e --target thingsdb://127.0.0.1:9200 --target ws://127.0.0.1:9270
//! cargo run --release -p thingsdb-client --example bench_e2e -- [--target URI]... [--secs N] [--window N]
//! ```
//!
//! Without `--target` it runs against an in-process testkit node (TCP and
//! WS). Credentials: `THINGSDB_USER` / `THINGSDB_PASSWORD` (admin/pass).
//! Prints a Markdown table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use thingsdb_client::{Auth, Client};
use thingsdb_protocol::{decode_frame, request, Frame, PackageType, DEFAULT_MAX_PAYLOAD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Rounds of floor and client per cell.
const ROUNDS: usize = 5;

struct Opts {
    targets: Vec<String>,
    secs: f64,
    window: usize,
    user: String,
    password: String,
    in_flight_check: usize,
    /// Only the in-flight memory check (run one process per transport, so
    /// each is measured from a fresh process).
    memory_only: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        targets: Vec::new(),
        secs: 3.0,
        window: 256,
        user: std::env::var("THINGSDB_USER").unwrap_or_else(|_| "admin".into()),
        password: std::env::var("THINGSDB_PASSWORD").unwrap_or_else(|_| "pass".into()),
        in_flight_check: 10_000,
        memory_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--target" => o.targets.push(val()),
            "--secs" => o.secs = val().parse().expect("--secs takes a number"),
            "--window" => o.window = val().parse().expect("--window takes a number"),
            "--in-flight" => o.in_flight_check = val().parse().expect("--in-flight takes a number"),
            "--memory-only" => o.memory_only = true,
            "--bench" | "--current-thread" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn query_frame(id: u16) -> BytesMut {
    let mut b = BytesMut::new();
    request::encode_query(&mut b, id, "@t", "1+1;", None).unwrap();
    b
}

fn auth_frame(user: &str, password: &str) -> BytesMut {
    let mut b = BytesMut::new();
    request::encode_auth(&mut b, 0, user, password).unwrap();
    b
}

fn check_reply(f: &Frame) {
    assert_eq!(
        f.package_type().unwrap(),
        PackageType::Data,
        "unexpected reply"
    );
}

// ----------------------------------------------------------- raw TCP floor

async fn raw_tcp(addr: &str, o: &Opts, window: usize) -> f64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&auth_frame(&o.user, &o.password))
        .await
        .unwrap();
    let mut rbuf = BytesMut::with_capacity(1 << 16);
    loop {
        s.read_buf(&mut rbuf).await.unwrap();
        if decode_frame(&mut rbuf, DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .is_some()
        {
            break;
        }
    }
    // Pre-encode one frame per id of the window.
    let frames: Vec<BytesMut> = (0..window).map(|i| query_frame(i as u16)).collect();
    let mut out = BytesMut::new();
    let (mut done, mut in_flight, mut next) = (0u64, 0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs_f64(o.secs);
    let start = Instant::now();
    while Instant::now() < deadline {
        while in_flight < window {
            out.extend_from_slice(&frames[next % window]);
            next += 1;
            in_flight += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).await.unwrap();
            out.clear();
        }
        s.read_buf(&mut rbuf).await.unwrap();
        while let Some(f) = decode_frame(&mut rbuf, DEFAULT_MAX_PAYLOAD).unwrap() {
            check_reply(&f);
            in_flight -= 1;
            done += 1;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

// ------------------------------------------------------------ raw WS floor

async fn raw_ws(url: &str, o: &Opts, window: usize) -> f64 {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::Binary(auth_frame(&o.user, &o.password).freeze()))
        .await
        .unwrap();
    rx.next().await.unwrap().unwrap();
    let frames: Vec<Bytes> = (0..window)
        .map(|i| query_frame(i as u16).freeze())
        .collect();
    let (mut done, mut in_flight, mut next) = (0u64, 0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs_f64(o.secs);
    let start = Instant::now();
    while Instant::now() < deadline {
        if in_flight < window {
            while in_flight < window {
                tx.feed(Message::Binary(frames[next % window].clone()))
                    .await
                    .unwrap();
                next += 1;
                in_flight += 1;
            }
            tx.flush().await.unwrap();
        }
        match rx.next().await.unwrap().unwrap() {
            Message::Binary(b) => {
                let f = Frame::parse(b, DEFAULT_MAX_PAYLOAD).unwrap();
                check_reply(&f);
                in_flight -= 1;
                done += 1;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

// ------------------------------------------------------------------ client

async fn client_rate(client: &Client, o: &Opts, window: usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(o.secs);
    let start = Instant::now();
    let mut done = 0u64;
    let mut pending = FuturesUnordered::new();
    loop {
        let go_on = Instant::now() < deadline;
        while go_on && pending.len() < window {
            pending.push(client.query("1+1;").scope("@t").raw());
        }
        match pending.next().await {
            Some(r) => {
                r.unwrap();
                done += 1;
            }
            None => break,
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Peak resident memory of this process, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// 10 000 (or `--in-flight`) requests in flight at once on one connection;
/// returns (requests per second, RSS before, peak RSS) in MiB.
async fn in_flight_memory(client: &Client, n: usize) -> (f64, Option<f64>, Option<f64>) {
    let before = rss_mib();
    let start = Instant::now();
    let mut pending: FuturesUnordered<_> = (0..n)
        .map(|_| client.query("1+1;").scope("@t").raw())
        .collect();
    while let Some(r) = pending.next().await {
        r.unwrap();
    }
    (
        n as f64 / start.elapsed().as_secs_f64(),
        before,
        peak_rss_mib(),
    )
}

fn kind(target: &str) -> &'static str {
    if target.starts_with("ws://") || target.starts_with("wss://") {
        "WS"
    } else {
        "TCP"
    }
}

fn tcp_addr(target: &str) -> String {
    target
        .trim_start_matches("thingsdb://")
        .trim_end_matches('/')
        .to_string()
}

fn main() {
    // `--current-thread` runs everything on one thread; the default is
    // tokio's multi-thread runtime, as most applications use.
    let current = std::env::args().any(|a| a == "--current-thread");
    let rt = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    // Inside a spawned task, as an application's code runs: with the
    // multi-thread runtime, `block_on` itself runs on a thread that is not
    // one of the runtime's workers.
    let rt = rt.expect("a tokio runtime");
    rt.block_on(async move {
        tokio::spawn(run(current))
            .await
            .expect("the benchmark task")
    });
}

async fn run(current: bool) {
    let mut o = parse_args();
    if std::env::var("BENCH_SIZES").is_ok() {
        let node = thingsdb_testkit::TestNode::start().await.unwrap();
        let c = Client::connect(&node.tcp_target(), Auth::password("admin", "pass"))
            .await
            .unwrap();
        let f = c.query("1+1;").scope("@t").raw();
        println!("raw future box: {}", std::mem::size_of_val(&*f));
        let g = c.query("1+1;").into_future();
        println!("value future box: {}", std::mem::size_of_val(&*g));
        return;
    }
    let _testkit = if o.targets.is_empty() {
        let node = thingsdb_testkit::TestNode::start().await.unwrap();
        o.targets = vec![node.tcp_target(), node.ws_url()];
        println!("no --target: against an in-process testkit node (client and node share this process and its 2 cores)\n");
        Some(node)
    } else {
        None
    };
    if o.memory_only {
        print_memory_header(&o);
        for target in o.targets.clone() {
            let client = connect(&target, &o).await;
            let row = in_flight_memory(&client, o.in_flight_check).await;
            print_memory_row(kind(&target), row);
            client.close().await.unwrap();
        }
        return;
    }
    println!(
        "`1+1;` in @t, {} s per cell, pipelined window {}, tokio {} runtime\n",
        o.secs,
        o.window,
        if current {
            "current-thread"
        } else {
            "multi-thread"
        }
    );
    println!("| transport | mode | raw floor (req/s) | client (req/s) | client / floor |");
    println!("|---|---|---:|---:|---:|");
    let mut memory_rows = Vec::new();
    for target in o.targets.clone() {
        let client = connect(&target, &o).await;
        // Warm up both paths.
        let warm = Opts {
            secs: 0.3,
            ..clone_opts(&o)
        };
        let _ = client_rate(&client, &warm, o.window).await;
        for (mode, window) in [("pipelined", o.window), ("one at a time", 1)] {
            // Alternate floor and client in short rounds and keep the best
            // of each, so a burst of noise on this small machine does not
            // decide the ratio.
            let round = Opts {
                secs: o.secs / ROUNDS as f64,
                ..clone_opts(&o)
            };
            let (mut floor, mut ours) = (0f64, 0f64);
            for _ in 0..ROUNDS {
                let f = match kind(&target) {
                    "WS" => raw_ws(&target, &round, window).await,
                    _ => raw_tcp(&tcp_addr(&target), &round, window).await,
                };
                floor = floor.max(f);
                ours = ours.max(client_rate(&client, &round, window).await);
            }
            println!(
                "| {} | {mode} | {floor:.0} | {ours:.0} | {:.0}% |",
                kind(&target),
                100.0 * ours / floor
            );
        }
        let (rate, before, peak) = in_flight_memory(&client, o.in_flight_check).await;
        memory_rows.push((kind(&target), rate, before, peak));
        client.close().await.unwrap();
    }
    println!();
    print_memory_header(&o);
    for (k, rate, before, peak) in memory_rows {
        print_memory_row(k, (rate, before, peak));
    }
}

async fn connect(target: &str, o: &Opts) -> Client {
    Client::builder()
        .target(target)
        .unwrap()
        .auth(Auth::password(o.user.clone(), o.password.clone()))
        .keepalive(None)
        .connect()
        .await
        .unwrap()
}

fn print_memory_header(o: &Opts) {
    println!(
        "| transport | {} requests in flight at once | RSS before (MiB) | peak RSS of the process (MiB) |",
        o.in_flight_check
    );
    println!("|---|---:|---:|---:|");
}

fn print_memory_row(k: &str, (rate, before, peak): (f64, Option<f64>, Option<f64>)) {
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    println!("| {k} | {rate:.0} req/s | {} | {} |", f(before), f(peak));
}

fn clone_opts(o: &Opts) -> Opts {
    Opts {
        targets: o.targets.clone(),
        secs: o.secs,
        window: o.window,
        user: o.user.clone(),
        password: o.password.clone(),
        in_flight_check: o.in_flight_check,
        memory_only: o.memory_only,
    }
}
