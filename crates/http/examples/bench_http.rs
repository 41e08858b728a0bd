//! HTTP API against the socket client on the same node, in one run:
//! `1 + 1;` queries one at a time and with N concurrent requests, each as
//! requests per second and this process's CPU time per request; and the
//! node's HTTP ceiling one at a time, measured with a blocking socket that
//! writes a pre-encoded request and reads its answer (no client library).
//!
//! ```text
//! cargo xtask bench-e2e --target thingsdb://127.0.0.1:9200 --http http://127.0.0.1:9210
//! cargo run --release -p thingsdb-http --example bench_http -- [--target HOST:PORT --http URL] [--secs N]
//! ```
//!
//! Without `--target`/`--http` it runs against an in-process testkit node
//! (then the CPU times include the node's work). Credentials:
//! `THINGSDB_USER` / `THINGSDB_PASSWORD` (admin/pass). Prints a Markdown
//! table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream as StdTcp;
use std::time::{Duration, Instant};

use thingsdb_client::{Auth, Client};
use thingsdb_http::HttpClient;

/// Concurrency levels measured besides one at a time.
const CONCURRENCY: &[usize] = &[8, 64];
/// Rounds per cell; the best is kept.
const ROUNDS: usize = 3;

#[derive(Clone)]
struct Opts {
    target: Option<String>,
    http: Option<String>,
    secs: f64,
    user: String,
    password: String,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        target: None,
        http: None,
        secs: 1.5,
        user: std::env::var("THINGSDB_USER").unwrap_or_else(|_| "admin".into()),
        password: std::env::var("THINGSDB_PASSWORD").unwrap_or_else(|_| "pass".into()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--target" => o.target = Some(val()),
            "--http" => o.http = Some(val()),
            "--secs" => o.secs = val().parse().expect("--secs takes a number"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

// The same measuring as the client's bench_e2e.
#[path = "../../client/examples/common/measure.rs"]
mod measure;
use measure::{measured, Cell};

async fn best<F, Fut>(mut f: F) -> Cell
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let mut b = Cell::default();
    for _ in 0..ROUNDS {
        b = b.better(measured(f()).await);
    }
    b
}

/// `n` tasks each running `one` (a `1 + 1;` query) until `secs` pass; the
/// total answered.
async fn run_for<C, F, Fut>(c: &C, n: usize, secs: f64, one: F) -> u64
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = i64> + Send,
{
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < end {
                    assert_eq!(one(c.clone()).await, 2);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("a bench task");
    }
    total
}

async fn http_one(c: HttpClient) -> i64 {
    c.query("1 + 1;").decode().await.expect("a query over HTTP")
}

async fn socket_one(c: Client) -> i64 {
    c.query("1 + 1;").decode().await.expect("a query over TCP")
}

/// The node's HTTP ceiling one at a time: a blocking socket, a request
/// encoded once, the answer read up to its Content-Length.
fn http_floor(url: &str, o: &Opts, secs: f64) -> u64 {
    use base64::Engine as _;
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = StdTcp::connect(addr).expect("connect to the HTTP API");
    s.set_nodelay(true).unwrap();
    let body = {
        let mut b = Vec::new();
        rmpv::encode::write_value(
            &mut b,
            &rmpv::Value::Map(vec![
                ("type".into(), "query".into()),
                ("code".into(), "1 + 1;".into()),
            ]),
        )
        .unwrap();
        b
    };
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", o.user, o.password));
    let mut req = format!(
        "POST /thingsdb HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut buf = vec![0u8; 4096];
    let mut done = 0;
    while Instant::now() < end {
        s.write_all(&req).unwrap();
        let mut have = 0;
        loop {
            let n = s.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "the node closed the connection");
            have += n;
            let text = &buf[..have];
            if let Some(h) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&text[..h]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a Content-Length");
                if have >= h + 4 + len {
                    break;
                }
            }
        }
        done += 1;
    }
    done
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async { tokio::spawn(run()).await.expect("the benchmark task") });
}

async fn run() {
    let mut o = parse_args();
    let (_node, _http) = if o.target.is_none() || o.http.is_none() {
        let node = thingsdb_testkit::TestNode::start().await.unwrap();
        let http = node.serve_http().await.unwrap();
        o.target = Some(node.tcp_target());
        o.http = Some(http.api_url());
        println!("no --target/--http: against an in-process testkit node (client and node share this process; CPU times include the node)\n");
        (Some(node), Some(http))
    } else {
        (None, None)
    };
    let (target, url) = (o.target.clone().unwrap(), o.http.clone().unwrap());
    let auth = Auth::password(&o.user, &o.password);
    let http = HttpClient::builder()
        .url(&url)
        .unwrap()
        .auth(auth.clone())
        .pool_max_idle_per_node(128)
        .build()
        .unwrap();
    let socket = Client::connect(&target, auth).await.unwrap();
    // Warm both up (connections made, pools filled).
    let _ = run_for(&http, 64, 0.2, http_one).await;
    let _ = run_for(&socket, 64, 0.2, socket_one).await;

    println!("`1 + 1;` against {url} (HTTP keep-alive) and {target} (socket), {} s per cell, best of {ROUNDS}\n", o.secs);
    println!("| requests | HTTP req/s | HTTP CPU µs/req | socket req/s | socket CPU µs/req |");
    println!("|---|---:|---:|---:|---:|");
    let secs = o.secs;
    let floor = best(|| {
        let (u, oo) = (url.clone(), o.clone());
        async move {
            tokio::task::spawn_blocking(move || http_floor(&u, &oo, secs))
                .await
                .unwrap()
        }
    })
    .await;
    for n in std::iter::once(1).chain(CONCURRENCY.iter().copied()) {
        let h = best(|| run_for(&http, n, secs, http_one)).await;
        let s = best(|| run_for(&socket, n, secs, socket_one)).await;
        let what = if n == 1 {
            "one at a time".to_string()
        } else {
            format!("{n} concurrent")
        };
        println!(
            "| {what} | {:.0} | {:.1} | {:.0} | {:.1} |",
            h.rate, h.cpu_us, s.rate, s.cpu_us
        );
    }
    println!(
        "| node's HTTP ceiling, one at a time (raw socket, no client) | {:.0} | {:.1} | | |",
        floor.rate, floor.cpu_us
    );
    let _ = socket.close().await;
}
