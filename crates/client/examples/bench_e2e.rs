//! End-to-end benchmark against a node: `1+1;` queries through the client
//! next to the node's ceiling, pipelined and one at a time, over TCP and
//! WebSocket, with the process's CPU time per request; heap allocations
//! per request on the pipelined path; the latency from a JOIN's reply to
//! its ON_JOIN and across bursts of room events; and the memory of 10 000
//! requests in flight on one connection.
//!
//! ```text
//! cargo xtask bench-e2e --target thingsdb://127.0.0.1:9200 --target ws://127.0.0.1:9270 [--python]
//! cargo run --release -p thingsdb-client --example bench_e2e -- [--target URI]... [--secs N] [--window N]
//! ```
//!
//! `--rounds N` (3 unless given) splits each cell into N alternating
//! rounds of floor and client and takes the medians: more rounds, a
//! steadier ratio on a noisy machine.
//!
//! `--allocs-only` prints the heap allocations per request on the
//! pipelined path, once per target (`allocs/req TRANSPORT N`).
//!
//! `--pipelined-only` measures the client's pipelined rate only, once per
//! target, and prints `pipelined TRANSPORT REQ_PER_S CPU_US_PER_REQ`
//! lines: `cargo xtask bench-observe` runs it built with and without the
//! client's instrumentation (features `observe`, `metrics`), round after
//! round, for the overhead of spans, metrics and stats when nothing
//! listens.
//!
//! The floor is the node's ceiling, measured without any client library:
//! pipelined, a writer thread keeps `--window` pre-encoded requests in
//! flight over a blocking socket while a reader thread only counts
//! replies; one at a time, one blocking socket writes a request and reads
//! its reply. Over WebSocket the floor writes pre-masked frames itself.
//!
//! CPU time is this process's user + system time (getrusage) over the
//! cell, divided by the requests done; against the in-process testkit node
//! (no `--target`) it includes the node's work too. Every cell is measured
//! once its connection is open and warm. Floor and client alternate in
//! short rounds; a ratio is the median of the rounds' ratios (each round's
//! client against the floor measured next to it).
//!
//! One request at a time, a second table puts the blocking client
//! (`thingsdb_client::blocking`) and the async client (multi-thread and
//! current-thread runtimes) next to the raw blocking socket, with the
//! system calls each makes per request: counted by running this program
//! again under `strace -f -c` for two numbers of requests and taking the
//! difference (so connecting and start-up cancel out); and the time each
//! path takes from the read that brought a reply to the write of the next
//! request (the program again under `perf record`, system call tracepoints),
//! the part of a round trip that is the client's and not the node's.
//!
//! Credentials: `THINGSDB_USER` / `THINGSDB_PASSWORD` (admin/pass).
//! Prints Markdown tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::io::{Read, Write};
use std::net::TcpStream as StdTcp;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use thingsdb_client::blocking::Client as BlockingClient;
use thingsdb_client::{Auth, Client, RoomEvent};
use thingsdb_protocol::{request, Event, Frame, PackageType, Room, HEADER_LEN};
use thingsdb_transport::{ConnectOptions, FrameReader, FrameWriter, Target};

/// Counts every heap allocation of the process.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Rounds of floor and client per cell, unless `--rounds N` says.
const ROUNDS: usize = 3;
/// Fresh connections for the JOIN latency; bursts for the event latency.
const SAMPLES: usize = 5;
/// Events per burst.
const BURST: usize = 10;
/// The collection the room for the latency checks lives in.
const COLLECTION: &str = "//stuff";
const ROOM_CODE: &str =
    "if (!.has('bench_e2e_room')) .bench_e2e_room = room(); .bench_e2e_room.id();";

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
    /// Only the client's pipelined rate (see the module docs).
    pipelined_only: bool,
    /// Only the heap allocations per request, pipelined, per target.
    allocs_only: bool,
    /// Only `count` requests one at a time through this path
    /// (`floor`, `blocking`, `async`), for counting system calls.
    syscalls_of: Option<String>,
    count: u64,
    /// Rounds per cell (`--rounds`): more rounds, a steadier median on a
    /// noisy machine.
    rounds: usize,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        targets: Vec::new(),
        secs: 1.5,
        window: 256,
        user: std::env::var("THINGSDB_USER").unwrap_or_else(|_| "admin".into()),
        password: std::env::var("THINGSDB_PASSWORD").unwrap_or_else(|_| "pass".into()),
        in_flight_check: 10_000,
        memory_only: false,
        pipelined_only: false,
        allocs_only: false,
        syscalls_of: None,
        count: 1000,
        rounds: ROUNDS,
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
            "--pipelined-only" => o.pipelined_only = true,
            "--allocs-only" => o.allocs_only = true,
            "--syscalls-of" => o.syscalls_of = Some(val()),
            "--count" => o.count = val().parse().expect("--count takes a number"),
            "--rounds" => o.rounds = val().parse().expect("--rounds takes a number"),
            "--bench" | "--current-thread" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

// ------------------------------------------------------------- measuring

// CPU time, rates: shared with the HTTP benchmark (crates/http/examples).
#[path = "common/measure.rs"]
mod measure;
use measure::{measured, measured_now, Cell};

/// The median over rounds of `ours` against `base` measured next to it in
/// the same round: (rate, CPU per request). Pairing the rounds cancels
/// drift in the machine's speed between rounds, which a ratio of the two
/// medians keeps.
fn paired(ours: &[Cell], base: &[Cell]) -> (f64, f64) {
    let pairs = || ours.iter().zip(base);
    (
        mid(pairs().map(|(o, b)| o.rate / b.rate).collect()),
        mid(pairs().map(|(o, b)| o.cpu_us / b.cpu_us).collect()),
    )
}

/// The middle of `v` (the upper one of two; 0 when empty).
fn mid(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The median rate and the median CPU time per request of some rounds
/// (each taken alone).
fn median(cells: Vec<Cell>) -> Cell {
    Cell {
        rate: mid(cells.iter().map(|c| c.rate).collect()),
        cpu_us: mid(cells.iter().map(|c| c.cpu_us).collect()),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

// --------------------------------------------------------- raw floor (TCP/WS)

fn query_frame() -> BytesMut {
    let mut b = BytesMut::new();
    request::encode_query(&mut b, 0, "@t", "1+1;", None).unwrap();
    b
}

fn auth_frame(o: &Opts) -> BytesMut {
    let mut b = BytesMut::new();
    request::encode_auth(&mut b, 0, &o.user, &o.password).unwrap();
    b
}

/// A blocking socket that speaks packages, either bare (TCP) or one per
/// WebSocket binary message, with the framing written by hand.
struct RawConn {
    s: StdTcp,
    ws: bool,
}

/// One client-to-server WebSocket binary frame around `payload` (masked,
/// as a client must; the key is fixed, which is allowed).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
    let mut v = vec![0x82];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n if n < 65536 => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&KEY);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    v
}

/// Counts whole replies in a byte stream: bare packages, or WebSocket
/// messages (one package each) from the server (unmasked frames).
struct Counter {
    buf: Vec<u8>,
    ws: bool,
}

impl Counter {
    /// Takes `data`, returns how many whole replies it completed.
    fn feed(&mut self, data: &[u8]) -> u64 {
        self.buf.extend_from_slice(data);
        let (mut at, mut n) = (0usize, 0u64);
        loop {
            let rest = &self.buf[at..];
            let used = if self.ws {
                if rest.len() < 2 {
                    break;
                }
                let (len, hdr) = match rest[1] & 0x7f {
                    126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                    127 if rest.len() >= 10 => (
                        u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => break,
                    l => (l as usize, 2),
                };
                if rest.len() < hdr + len {
                    break;
                }
                // FIN of a binary or continuation frame ends a message.
                if rest[0] & 0x80 != 0 && matches!(rest[0] & 0x0f, 0 | 2) {
                    n += 1;
                }
                hdr + len
            } else {
                if rest.len() < HEADER_LEN {
                    break;
                }
                let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                if rest.len() < HEADER_LEN + len {
                    break;
                }
                let t = rest[6];
                assert!(
                    t == PackageType::Data as u8 || t == PackageType::Ok as u8,
                    "unexpected reply type {t}"
                );
                n += 1;
                HEADER_LEN + len
            };
            at += used;
        }
        self.buf.drain(..at);
        n
    }
}

impl RawConn {
    fn open(target: &str, o: &Opts) -> RawConn {
        let t: Target = target.parse().unwrap();
        let (host, port) = (t.host().unwrap().to_owned(), t.port().unwrap());
        let mut s = StdTcp::connect((host.as_str(), port)).unwrap();
        s.set_nodelay(true).unwrap();
        let ws = matches!(t, Target::Ws { .. });
        if let Target::Ws { path, .. } = &t {
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"), "WebSocket refused");
        }
        let mut c = RawConn { s, ws };
        c.s.write_all(&c.wrap(&auth_frame(o))).unwrap();
        c.wait_replies(1);
        c
    }

    fn wrap(&self, pkg: &[u8]) -> Vec<u8> {
        if self.ws {
            ws_frame(pkg)
        } else {
            pkg.to_vec()
        }
    }

    fn wait_replies(&mut self, n: u64) {
        self.wait_replies_acking(n, true)
    }

    /// Reads until `n` replies came; `ack` re-arms quick ACKs around each
    /// read (two system calls that one request at a time does not need:
    /// the next request carries the ACK).
    fn wait_replies_acking(&mut self, mut n: u64, ack: bool) {
        if ack {
            quickack(&self.s);
        }
        let mut c = Counter {
            buf: Vec::new(),
            ws: self.ws,
        };
        let mut b = [0u8; 4096];
        while n > 0 {
            let k = self.s.read(&mut b).unwrap();
            assert!(k > 0, "closed");
            if ack {
                quickack(&self.s);
            }
            n -= c.feed(&b[..k]);
        }
    }
}

/// Re-arms `TCP_QUICKACK`, as the transport does after each read: a node
/// does not set `TCP_NODELAY`, so without it its second small write waits
/// for our delayed ACK.
fn quickack(s: &StdTcp) {
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = s;
}

/// The node's ceiling: a writer thread keeps `window` requests in flight,
/// a reader thread only counts replies. Measured from the time the
/// connection is open.
fn floor_pipelined(mut conn: RawConn, secs: f64, window: usize) -> Cell {
    let one = conn.wrap(&query_frame());
    let batch: Vec<u8> = one.repeat(window);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = conn.s.try_clone().unwrap();
    let (done_w, stop_w) = (done.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stop_w.load(Relaxed) {
            let room = window as u64 - (sent - done_w.load(Relaxed));
            if room == 0 {
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            if w.write_all(&batch[..room as usize * one.len()]).is_err() {
                break;
            }
            sent += room;
        }
    });
    let mut counter = Counter {
        buf: Vec::with_capacity(1 << 16),
        ws: conn.ws,
    };
    let mut b = vec![0u8; 1 << 16];
    let cell = measured_now(|| {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut n = 0;
        while Instant::now() < deadline {
            let k = conn.s.read(&mut b).unwrap();
            assert!(k > 0, "closed");
            quickack(&conn.s);
            let got = counter.feed(&b[..k]);
            if got > 0 {
                n += got;
                done.fetch_add(got, Relaxed);
                writer.thread().unpark();
            }
        }
        n
    });
    stop.store(true, Relaxed);
    let _ = conn.s.shutdown(std::net::Shutdown::Both);
    writer.thread().unpark();
    writer.join().unwrap();
    cell
}

/// One blocking socket, one request at a time: a write and a read per
/// request, for `secs`; returns the requests made.
fn floor_one_at_a_time(conn: &mut RawConn, one: &[u8], secs: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < deadline {
        conn.s.write_all(one).unwrap();
        conn.wait_replies_acking(1, false);
        n += 1;
    }
    n
}

/// The floor's cell: a fresh connection, measured once it is open (as
/// the blocking client's cell is: a connect and an AUTH are not requests),
/// one at a time after a warm-up like the blocking client's.
async fn floor(target: &str, o: &Opts, secs: f64, window: usize) -> Cell {
    let (t, o2) = (target.to_owned(), clone_opts(o));
    tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::open(&t, &o2);
        if window > 1 {
            return floor_pipelined(conn, secs, window);
        }
        let one = conn.wrap(&query_frame());
        floor_one_at_a_time(&mut conn, &one, 0.1);
        measured_now(|| floor_one_at_a_time(&mut conn, &one, secs))
    })
    .await
    .unwrap()
}

// ------------------------------------------------------------------ client

async fn client_run(client: &Client, secs: f64, window: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
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
    done
}

/// The blocking client, one request at a time, on this (blocking) thread.
fn blocking_run(client: &BlockingClient, secs: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut done = 0u64;
    while Instant::now() < deadline {
        client.query("1+1;").scope("@t").raw().unwrap();
        done += 1;
    }
    done
}

fn blocking_connect(target: &str, o: &Opts) -> BlockingClient {
    BlockingClient::builder()
        .target(target)
        .unwrap()
        .auth(Auth::password(o.user.clone(), o.password.clone()))
        .keepalive(None)
        .connect_blocking()
        .unwrap()
}

async fn blocking_cell(target: &str, o: &Opts, secs: f64) -> Cell {
    let (t, o2) = (target.to_owned(), clone_opts(o));
    tokio::task::spawn_blocking(move || {
        let client = blocking_connect(&t, &o2);
        blocking_run(&client, 0.1);
        let cell = measured_now(|| blocking_run(&client, secs));
        client.close().unwrap();
        cell
    })
    .await
    .unwrap()
}

/// `--syscalls-of PATH`: connects, warms up, then makes `--count`
/// requests one at a time and exits.
async fn syscalls_only(o: &Opts, path: &str) {
    let target = o.targets[0].clone();
    let n = o.count;
    match path {
        "floor" => {
            let o2 = clone_opts(o);
            tokio::task::spawn_blocking(move || {
                let mut conn = RawConn::open(&target, &o2);
                let one = conn.wrap(&query_frame());
                for _ in 0..n {
                    conn.s.write_all(&one).unwrap();
                    conn.wait_replies_acking(1, false);
                }
            })
            .await
            .unwrap();
        }
        "blocking" => {
            let o2 = clone_opts(o);
            tokio::task::spawn_blocking(move || {
                let client = blocking_connect(&target, &o2);
                for _ in 0..n {
                    client.query("1+1;").scope("@t").raw().unwrap();
                }
            })
            .await
            .unwrap();
        }
        "async" => {
            let client = connect(&target, o).await;
            for _ in 0..n {
                client.query("1+1;").scope("@t").raw().await.unwrap();
            }
        }
        other => panic!("unknown --syscalls-of {other}"),
    }
}

/// `tool` (strace, perf: its own arguments given) running this program
/// for `n` requests one at a time through `path` (`--syscalls-of`), its
/// output dropped; `None` when this program's own path is not known.
fn requests_of(
    mut tool: std::process::Command,
    path: &str,
    target: &str,
    n: u64,
    current: bool,
) -> Option<std::process::Command> {
    tool.arg(std::env::current_exe().ok()?)
        .args(["--syscalls-of", path, "--target", target, "--count"])
        .arg(n.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if current {
        tool.arg("--current-thread");
    }
    Some(tool)
}

/// System calls per request of one path, one request at a time: this
/// program under `strace -f -c` for 500 and for 2 500 requests, the
/// difference divided by 2 000. `None` without strace.
fn syscalls_per_request(target: &str, path: &str, current: bool) -> Option<f64> {
    let count = |n: u64| -> Option<f64> {
        let out = std::env::temp_dir().join(format!(
            "bench_e2e_strace_{}_{path}_{n}.txt",
            std::process::id()
        ));
        let mut c = std::process::Command::new("strace");
        c.args(["-f", "-c", "-o"]).arg(&out);
        let ok = requests_of(c, path, target, n, current)?
            .status()
            .ok()?
            .success();
        let text = std::fs::read_to_string(&out).ok();
        let _ = std::fs::remove_file(&out);
        if !ok {
            return None;
        }
        let total = text?
            .lines()
            .rev()
            .find(|l| l.trim_end().ends_with("total"))?
            .to_owned();
        total.split_whitespace().nth(3)?.parse().ok()
    };
    let (a, b) = (count(500)?, count(2500)?);
    Some((b - a) / 2000.0)
}

/// The time from a read that brought a reply to the write of the next
/// request, in microseconds (median): how long one path keeps the round
/// trip waiting on its own code, apart from the node's share, which swings
/// from round to round far more than the client's. This program under
/// `perf record` (system call entry and exit tracepoints, 5 000 requests
/// one at a time, the first tenth left out); `None` without perf. The
/// tracepoints lengthen every path's system calls alike: compare the paths,
/// not the figure with an untraced run.
fn reply_to_next_request_us(target: &str, path: &str, current: bool) -> Option<f64> {
    let data =
        std::env::temp_dir().join(format!("bench_e2e_perf_{}_{path}.data", std::process::id()));
    let mut c = std::process::Command::new("perf");
    c.args(["record", "-q", "-o"]).arg(&data).args([
        "-e",
        "raw_syscalls:sys_enter",
        "-e",
        "raw_syscalls:sys_exit",
        "--",
    ]);
    let recorded = requests_of(c, path, target, 5000, current)
        .and_then(|mut c| c.status().ok())
        .is_some_and(|s| s.success());
    let script = recorded
        .then(|| {
            std::process::Command::new("perf")
                .args(["script", "--ns", "-F", "time,event,trace", "-i"])
                .arg(&data)
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
        })
        .flatten();
    let _ = std::fs::remove_file(&data);
    let text = String::from_utf8(script?.stdout).ok()?;
    let mut gaps = reply_gaps(&text);
    if gaps.len() < 100 {
        return None;
    }
    Some(mid(gaps.split_off(gaps.len() / 10)) * 1e6)
}

/// From `perf script` lines of system call entries and exits (`TIME:
/// raw_syscalls:sys_enter: NR n (fd, buf, count, ..)` and `TIME:
/// raw_syscalls:sys_exit: NR n = ret`), the seconds from each read that
/// returned a package to the next write of one. Reads and writes of 8
/// bytes or fewer are a runtime's wake-ups (an eventfd), not packages (a
/// package has an 8-byte header and a body).
fn reply_gaps(text: &str) -> Vec<f64> {
    // x86-64 numbers: read, pread64, readv, recvfrom, recvmsg; write,
    // pwrite64, writev, sendto, sendmsg.
    const READS: [u32; 5] = [0, 17, 19, 45, 47];
    const WRITES: [u32; 5] = [1, 18, 20, 44, 46];
    let mut gaps = Vec::new();
    let mut reply_at = None;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(time), Some(event), Some("NR"), Some(nr)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(t), Ok(nr)) = (time.trim_end_matches(':').parse::<f64>(), nr.parse::<u32>()) else {
            continue;
        };
        if event.starts_with("raw_syscalls:sys_exit") && READS.contains(&nr) {
            let ret = line
                .rsplit("= ")
                .next()
                .and_then(|r| r.trim().parse::<i64>().ok());
            if ret.is_some_and(|r| r > 8) {
                reply_at = Some(t);
            }
        } else if event.starts_with("raw_syscalls:sys_enter") && WRITES.contains(&nr) {
            // The third argument is the byte count, but for writev and
            // sendmsg (a vector count, flags): those count whatever it is.
            let count = line
                .split_once('(')
                .and_then(|(_, a)| a.split(", ").nth(2))
                .and_then(|c| u64::from_str_radix(c.trim(), 16).ok());
            if matches!(nr, 20 | 46) || count.is_some_and(|c| c > 8) {
                if let Some(r) = reply_at.take() {
                    gaps.push(t - r);
                }
            }
        }
    }
    gaps
}

/// Heap allocations per request, pipelined, over `n` requests: `window`
/// loops that each make one request at a time, all polled together. The
/// loops are made before counting starts, so what is counted is the
/// client's alone (pushing each request into a `FuturesUnordered`, as
/// `client_run` does, costs the benchmark one allocation of its own per
/// request).
async fn allocations_per_request(client: &Client, window: usize, n: u64) -> f64 {
    let left = AtomicU64::new(n);
    let worker = |client: Client| {
        let left = &left;
        async move {
            while left
                .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1))
                .is_ok()
            {
                client.query("1+1;").scope("@t").raw().await.unwrap();
            }
        }
    };
    let mut loops: FuturesUnordered<_> = (0..window).map(|_| worker(client.clone())).collect();
    let region = Region::new(GLOBAL);
    while loops.next().await.is_some() {}
    let allocs = region.change().allocations;
    drop(loops);
    allocs as f64 / n as f64
}

// ---------------------------------------------------------------- latency

/// Median and maximum of some durations.
fn med_max(mut v: Vec<Duration>) -> String {
    v.sort();
    match (v.get(v.len() / 2), v.last()) {
        (Some(m), Some(x)) => format!("{} / {}", ms(*m), ms(*x)),
        _ => "n/a".into(),
    }
}

struct Latency {
    /// JOIN reply to its ON_JOIN, one per fresh connection.
    join: Vec<Duration>,
    /// First to last ON_EMIT of a burst of [`BURST`] events.
    burst: Vec<Duration>,
}

async fn raw_open(target: &Target, o: &Opts, quickack: bool) -> (FrameWriter, FrameReader) {
    let opts = ConnectOptions::default().with_tcp_quickack(quickack);
    let (mut tx, mut rx) = thingsdb_transport::connect(target, &opts)
        .await
        .unwrap()
        .split();
    tx.send(auth_frame(o).freeze()).await.unwrap();
    rx.recv().await.unwrap().unwrap();
    (tx, rx)
}

/// The next reply, skipping events.
async fn raw_reply(rx: &mut FrameReader) -> Frame {
    loop {
        let f = rx.recv().await.unwrap().unwrap();
        if f.id != 0xffff {
            return f;
        }
    }
}

async fn room_id(target: &Target, o: &Opts) -> u64 {
    let (mut tx, mut rx) = raw_open(target, o, true).await;
    let mut b = BytesMut::new();
    request::encode_query(&mut b, 1, COLLECTION, ROOM_CODE, None).unwrap();
    tx.send(b.freeze()).await.unwrap();
    let f = raw_reply(&mut rx).await;
    let v = rmpv::decode::read_value(&mut &f.payload[..]).unwrap();
    v.as_u64().expect("a room id")
}

fn burst_code() -> String {
    (0..BURST)
        .map(|i| format!(".bench_e2e_room.emit('b', {i});"))
        .collect()
}

/// Over the transport alone, with or without quick ACKs.
async fn raw_latency(target: &Target, o: &Opts, quickack: bool, room: u64) -> Latency {
    let mut l = Latency {
        join: Vec::new(),
        burst: Vec::new(),
    };
    for sample in 0..SAMPLES {
        let (mut tx, mut rx) = raw_open(target, o, quickack).await;
        let mut b = BytesMut::new();
        request::encode_join(&mut b, 1, COLLECTION, &[Room::Id(room)]).unwrap();
        tx.send(b.freeze()).await.unwrap();
        raw_reply(&mut rx).await;
        let replied = Instant::now();
        loop {
            let f = rx.recv().await.unwrap().unwrap();
            if let Ok(Event::Join(_)) = Event::decode(&f) {
                break;
            }
        }
        l.join.push(replied.elapsed());
        if sample == 0 {
            // Bursts on the first connection, now joined.
            for _ in 0..SAMPLES {
                let mut b = BytesMut::new();
                request::encode_query(&mut b, 2, COLLECTION, &burst_code(), None).unwrap();
                tx.send(b.freeze()).await.unwrap();
                let mut first = None;
                let mut seen = 0;
                while seen < BURST {
                    let f = rx.recv().await.unwrap().unwrap();
                    if let Ok(Event::Emit(_)) = Event::decode(&f) {
                        first.get_or_insert_with(Instant::now);
                        seen += 1;
                    }
                }
                l.burst.push(first.unwrap().elapsed());
            }
        }
    }
    l
}

/// Through the client's room API.
async fn client_latency(target: &str, o: &Opts, room: u64) -> Latency {
    let mut l = Latency {
        join: Vec::new(),
        burst: Vec::new(),
    };
    for sample in 0..SAMPLES {
        let client = connect(target, o).await;
        let mut events = client.room(COLLECTION, room).unwrap().join().await.unwrap();
        let replied = Instant::now();
        assert!(matches!(events.recv().await, Some(RoomEvent::Joined)));
        l.join.push(replied.elapsed());
        if sample == 0 {
            for _ in 0..SAMPLES {
                let code = burst_code();
                let q = client.query(&code).scope(COLLECTION).raw();
                let mut first = None;
                let recv = async {
                    for _ in 0..BURST {
                        match events.recv().await {
                            Some(RoomEvent::Emitted(_)) => {
                                first.get_or_insert_with(Instant::now);
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                };
                let (r, ()) = tokio::join!(q, recv);
                r.unwrap();
                l.burst.push(first.unwrap().elapsed());
            }
        }
        client.close().await.unwrap();
    }
    l
}

// ---------------------------------------------------------------- memory

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
    let _testkit = if o.targets.is_empty() {
        let node = thingsdb_testkit::TestNode::start().await.unwrap();
        o.targets = vec![node.tcp_target(), node.ws_url()];
        println!("no --target: against an in-process testkit node (client and node share this process and its 2 cores; CPU times include the node)\n");
        Some(node)
    } else {
        None
    };
    if o.pipelined_only {
        for target in o.targets.clone() {
            let client = connect(&target, &o).await;
            client_run(&client, 0.2, o.window).await;
            let c = measured(client_run(&client, o.secs, o.window)).await;
            println!("pipelined {} {:.0} {:.2}", kind(&target), c.rate, c.cpu_us);
            client.close().await.unwrap();
        }
        return;
    }
    if o.allocs_only {
        for target in o.targets.clone() {
            let client = connect(&target, &o).await;
            client_run(&client, 0.2, o.window).await;
            let a = allocations_per_request(&client, o.window, 20_000).await;
            println!("allocs/req {} {a:.2}", kind(&target));
            client.close().await.unwrap();
        }
        return;
    }
    if let Some(path) = o.syscalls_of.clone() {
        syscalls_only(&o, &path).await;
        return;
    }
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
        "`1+1;` in @t, {} s per cell (medians of {} rounds), pipelined window {}, tokio {} runtime\n",
        o.secs,
        o.rounds,
        o.window,
        if current {
            "current-thread"
        } else {
            "multi-thread"
        }
    );
    println!("| transport | mode | floor (req/s) | floor CPU (us/req) | client (req/s) | client CPU (us/req) | client / floor | client allocs/req | client without quick ACKs (req/s, CPU us/req) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut memory_rows = Vec::new();
    let mut latency_rows = Vec::new();
    let mut single_rows = Vec::new();
    for target in o.targets.clone() {
        let client = connect(&target, &o).await;
        // The same client without quick ACKs: what they cost in CPU.
        let no_qa = connect_with(&target, &o, false).await;
        // Warm up.
        client_run(&client, 0.2, o.window).await;
        client_run(&no_qa, 0.2, o.window).await;
        let allocs = allocations_per_request(&client, o.window, 20_000).await;
        for (mode, window) in [("pipelined", o.window), ("one at a time", 1)] {
            // Alternate floor and client in short rounds: the rates and
            // CPU times shown are the medians of each; the ratios are the
            // medians of each round's client against that round's floor,
            // so neither a burst of noise nor a drift of the machine's
            // speed decides them.
            let secs = o.secs / o.rounds as f64;
            let (mut fl, mut ours, mut noqa, mut blk) = (vec![], vec![], vec![], vec![]);
            for _ in 0..o.rounds {
                fl.push(floor(&target, &o, secs, window).await);
                ours.push(measured(client_run(&client, secs, window)).await);
                noqa.push(measured(client_run(&no_qa, secs, window)).await);
                if window == 1 {
                    blk.push(blocking_cell(&target, &o, secs).await);
                }
            }
            let (vs_floor, blk_vs_floor) = (paired(&ours, &fl), paired(&blk, &fl));
            let (fl, ours, noqa, blk) = (median(fl), median(ours), median(noqa), median(blk));
            if window == 1 {
                single_rows.push((
                    kind(&target),
                    target.clone(),
                    (fl, blk, ours),
                    (blk_vs_floor, vs_floor),
                ));
            }
            let allocs = if window > 1 {
                format!("{allocs:.1}")
            } else {
                String::new()
            };
            println!(
                "| {} | {mode} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2}x | {allocs} | {:.0}, {:.1} |",
                kind(&target),
                fl.rate,
                fl.cpu_us,
                ours.rate,
                ours.cpu_us,
                vs_floor.0,
                noqa.rate,
                noqa.cpu_us
            );
        }
        no_qa.close().await.unwrap();
        let (rate, before, peak) = in_flight_memory(&client, o.in_flight_check).await;
        memory_rows.push((kind(&target), rate, before, peak));
        client.close().await.unwrap();

        let t: Target = target.parse().unwrap();
        if _testkit.is_none() {
            let room = room_id(&t, &o).await;
            let off = raw_latency(&t, &o, false, room).await;
            let on = raw_latency(&t, &o, true, room).await;
            let ours = client_latency(&target, &o, room).await;
            latency_rows.push((kind(&target), off, on, ours));
        }
    }
    println!("\nOne request at a time: the blocking client (`thingsdb_client::blocking`) and this run's async client next to the raw blocking socket (the floor), and system calls per request (`strace -f -c`, 2 000 requests), and the median time from the read of a reply to the write of the next request (`perf record` of system call entries and exits, 5 000 requests; the tracing lengthens each path's system calls alike); n/a without strace or perf, or against the testkit\n");
    println!("| transport | floor (req/s, CPU us/req) | blocking (req/s, CPU us/req) | blocking / floor (rate, CPU) | async {} (req/s, CPU us/req) | async / floor (rate, CPU) | syscalls/req: floor, blocking, async | reply to next request (us): floor, blocking, async |", if current { "current-thread" } else { "multi-thread" });
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (k, target, (fl, blk, ours), (blk_vs, ours_vs)) in single_rows {
        // A figure from this program run again under a tracer, against a
        // real node only.
        let traced = |f: fn(&str, &str, bool) -> Option<f64>, path: &str, digits: usize| {
            _testkit
                .is_none()
                .then(|| f(&target, path, current))
                .flatten()
                .map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
        };
        let sc = |path: &str| traced(syscalls_per_request, path, 1);
        let gap = |path: &str| traced(reply_to_next_request_us, path, 2);
        println!(
            "| {k} | {:.0}, {:.1} | {:.0}, {:.1} | {:.2}x, {:.2}x | {:.0}, {:.1} | {:.2}x, {:.2}x | {}, {}, {} | {}, {}, {} |",
            fl.rate,
            fl.cpu_us,
            blk.rate,
            blk.cpu_us,
            blk_vs.0,
            blk_vs.1,
            ours.rate,
            ours.cpu_us,
            ours_vs.0,
            ours_vs.1,
            sc("floor"),
            sc("blocking"),
            sc("async"),
            gap("floor"),
            gap("blocking"),
            gap("async"),
        );
    }
    println!();
    print_memory_header(&o);
    for (k, rate, before, peak) in memory_rows {
        print_memory_row(k, (rate, before, peak));
    }
    if !latency_rows.is_empty() {
        println!("\nLatency in ms, median / max: from a JOIN's reply to its ON_JOIN ({SAMPLES} fresh connections), and from the first to the last ON_EMIT of a burst of {BURST} (`.room.emit(..)` x{BURST} in one query; {SAMPLES} bursts)\n");
        println!("| transport | measure | raw, no quick ACK | raw, quick ACK | client |");
        println!("|---|---|---:|---:|---:|");
        for (k, off, on, ours) in latency_rows {
            println!(
                "| {k} | JOIN reply -> ON_JOIN | {} | {} | {} |",
                med_max(off.join),
                med_max(on.join),
                med_max(ours.join)
            );
            println!(
                "| {k} | burst of {BURST} events | {} | {} | {} |",
                med_max(off.burst),
                med_max(on.burst),
                med_max(ours.burst)
            );
        }
    }
}

async fn connect(target: &str, o: &Opts) -> Client {
    connect_with(target, o, true).await
}

async fn connect_with(target: &str, o: &Opts, quickack: bool) -> Client {
    Client::builder()
        .target(target)
        .unwrap()
        .connect_options(ConnectOptions::default().with_tcp_quickack(quickack))
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
        pipelined_only: o.pipelined_only,
        allocs_only: o.allocs_only,
        syscalls_of: o.syscalls_of.clone(),
        count: o.count,
        rounds: o.rounds,
    }
}
