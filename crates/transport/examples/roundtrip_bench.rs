//! Round-trip frames per second for each transport against a local echo
//! peer (built here on tokio, tokio-rustls and tokio-tungstenite only).
//!
//! Two figures per transport:
//! - ping-pong: one frame out, wait for it back, repeat;
//! - pipelined: up to 256 frames in flight, the sender batching whatever
//!   the window allows into one `send`, as a client's writer task does.
//!
//! ```text
//! cargo run --release -p thingsdb-transport --example roundtrip_bench -- --secs 3
//! ```
//!
//! Options: `--secs N` (default 3) per figure, `--payload BYTES` (default
//! 32), `--window N` (default 256), `--only tcp,ws,...`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, SinkExt, StreamExt};
use thingsdb_protocol::{Frame, PackageType};
use thingsdb_transport::{connect, ConnectOptions, Target, TlsOptions, TransportKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    secs: f64,
    payload: usize,
    window: usize,
    only: Option<Vec<String>>,
}

fn args() -> Args {
    let mut a = Args {
        secs: 3.0,
        payload: 32,
        window: 256,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--secs" => a.secs = v.parse().expect("--secs N"),
            "--payload" => a.payload = v.parse().expect("--payload BYTES"),
            "--window" => a.window = v.parse::<usize>().expect("--window N").max(1),
            "--only" => a.only = Some(v.split(',').map(str::to_owned).collect()),
            _ => {
                eprintln!("usage: roundtrip_bench [--secs N] [--payload BYTES] [--window N] [--only tcp,tls,ws,wss,unix]");
                std::process::exit(2);
            }
        }
    }
    a
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

async fn echo_stream(io: Box<dyn Io>) {
    let (mut r, mut w) = tokio::io::split(io);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn echo_ws(io: Box<dyn Io>) {
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(io, Some(cfg)).await else {
        return;
    };
    // Echo each binary message; flush once nothing more is ready.
    while let Some(Ok(m)) = ws.next().await {
        let mut next = Some(m);
        while let Some(m) = next.take() {
            if let Message::Binary(b) = m {
                if ws.feed(Message::Binary(b)).await.is_err() {
                    return;
                }
            }
            if let Some(Some(Ok(m))) = ws.next().now_or_never() {
                next = Some(m);
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// Starts an echo peer for `kind`; returns the target and options to use.
async fn peer(kind: TransportKind, dir: &std::path::Path) -> (Target, ConnectOptions) {
    let opts = ConnectOptions::default();
    if kind == TransportKind::Unix {
        let path = dir.join("bench.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(echo_stream(Box::new(s)));
            }
        });
        return (Target::unix(path.to_str().unwrap()), opts);
    }
    let secure = matches!(kind, TransportKind::Tls | TransportKind::Wss);
    let ws = matches!(kind, TransportKind::Ws | TransportKind::Wss);
    let mut opts = opts;
    let acceptor = if secure {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        opts = opts.with_tls(TlsOptions::with_ca_pem(ck.cert.pem()));
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    } else {
        None
    };
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            s.set_nodelay(true).unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let io: Box<dyn Io> = match acceptor {
                    Some(a) => match a.accept(s).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                    None => Box::new(s),
                };
                if ws {
                    echo_ws(io).await;
                } else {
                    echo_stream(io).await;
                }
            });
        }
    });
    let host = if secure { "localhost" } else { "127.0.0.1" };
    let target = match kind {
        TransportKind::Tcp => Target::tcp(host, port),
        TransportKind::Tls => Target::tls(host, port),
        TransportKind::Ws => Target::ws(host, port, "/"),
        _ => Target::wss(host, port, "/"),
    };
    (target, opts)
}

async fn ping_pong(target: &Target, opts: &ConnectOptions, payload: &Bytes, secs: f64) -> f64 {
    let (mut tx, mut rx) = connect(target, opts).await.unwrap().split();
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < limit {
        for _ in 0..64 {
            let f = Frame::new(PackageType::Query, (n & 0xfffe) as u16, payload.clone());
            tx.send(f.to_bytes()).await.unwrap();
            let got = rx.recv().await.unwrap().unwrap();
            assert_eq!(got.id, (n & 0xfffe) as u16);
            n += 1;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    tx.close().await.unwrap();
    rate
}

async fn pipelined(
    target: &Target,
    opts: &ConnectOptions,
    payload: &Bytes,
    secs: f64,
    window: usize,
) -> f64 {
    let (mut tx, mut rx) = connect(target, opts).await.unwrap().split();
    let permits = Arc::new(Semaphore::new(window));
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let sender = {
        let permits = permits.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut buf = BytesMut::new();
            while start.elapsed() < limit {
                // Wait for room for one, then take whatever else is free:
                // everything queued goes out in one send.
                permits.acquire().await.unwrap().forget();
                let mut k = 1;
                while let Ok(p) = permits.try_acquire() {
                    p.forget();
                    k += 1;
                }
                for _ in 0..k {
                    let f = Frame::new(PackageType::Query, (sent & 0xfffe) as u16, payload.clone());
                    f.encode_into(&mut buf).unwrap();
                    sent += 1;
                }
                tx.send(buf.split().freeze()).await.unwrap();
            }
            (tx, sent)
        })
    };
    let mut sender = sender;
    let mut got = 0u64;
    let (mut tx, sent) = loop {
        tokio::select! {
            f = rx.recv() => {
                let f = f.unwrap().unwrap();
                assert_eq!(f.id, (got & 0xfffe) as u16);
                got += 1;
                permits.add_permits(1);
            }
            done = &mut sender => break done.unwrap(),
        }
    };
    while got < sent {
        rx.recv().await.unwrap().unwrap();
        got += 1;
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    tx.close().await.unwrap();
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let payload = Bytes::from(vec![0xa5u8; a.payload]);
    let dir = tempfile::tempdir().unwrap();
    let kinds = [
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::Ws,
        TransportKind::Wss,
        TransportKind::Unix,
    ];
    println!(
        "Round trips against a local echo peer, {}-byte payloads, {} s per figure.\n",
        a.payload, a.secs
    );
    println!(
        "| transport | ping-pong (frames/s) | pipelined, window {} (frames/s) |",
        a.window
    );
    println!("|---|---:|---:|");
    for kind in kinds {
        if let Some(only) = &a.only {
            if !only
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&kind.to_string()))
            {
                continue;
            }
        }
        let (target, opts) = peer(kind, dir.path()).await;
        let pp = ping_pong(&target, &opts, &payload, a.secs).await;
        let pl = pipelined(&target, &opts, &payload, a.secs, a.window).await;
        println!("| {kind} | {pp:.0} | {pl:.0} |");
    }
}
