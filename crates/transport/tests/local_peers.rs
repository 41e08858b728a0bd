//! Every transport against small local peers: echo, 1-byte writes, 16 MiB
//! frames, thousands of frames in flight, peers closing mid-frame, and the
//! WebSocket specifics (text and short messages, pings, fragments, close).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use thingsdb_protocol::{Frame, Header, PackageType, HEADER_LEN};
use thingsdb_transport::{
    connect, ConnectOptions, Connection, Error, Target, TlsOptions, TransportKind,
};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_every_kind() {
    for kind in ALL {
        let peer = echo_peer(kind, PeerOpts::default()).await;
        let conn = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(conn.kind(), kind);
        let shown = conn.peer();
        assert!(!shown.is_empty(), "{kind}");
        let (mut tx, mut rx) = conn.split();
        let frames: Vec<Frame> = (0..50).map(|i| frame(i, usize::from(i) * 13)).collect();
        // One batch, then one by one.
        tx.send(wire(&frames)).await.unwrap();
        for f in &frames {
            tx.send(f.to_bytes()).await.unwrap();
        }
        for round in 0..2 {
            for f in &frames {
                let got = guard("recv", rx.recv()).await.unwrap().unwrap();
                assert_eq!(&got, f, "{kind} round {round}");
            }
        }
        // An empty batch sends nothing and is fine.
        tx.send(Bytes::new()).await.unwrap();
        tx.close().await.unwrap();
        assert!(
            guard("end", rx.recv()).await.unwrap().is_none(),
            "{kind}: clean end after close"
        );
        assert!(matches!(
            tx.send(frame(1, 1).to_bytes()).await,
            Err(Error::Closed)
        ));
        tx.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_writes_from_the_peer() {
    for kind in ALL {
        let peer = echo_peer(kind, PeerOpts { trickle: true }).await;
        let (mut tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
            .split();
        let frames: Vec<Frame> = (0..20).map(|i| frame(i, usize::from(i) * 5)).collect();
        tx.send(wire(&frames)).await.unwrap();
        for f in &frames {
            // Cancel-safety under fire: abandon some recv calls mid-way.
            let got = loop {
                tokio::select! {
                    r = rx.recv() => break r.unwrap().unwrap(),
                    () = tokio::task::yield_now() => {}
                }
            };
            assert_eq!(&got, f, "{kind}");
        }
        tx.close().await.unwrap();
        assert!(guard("end", rx.recv()).await.unwrap().is_none(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_frame_both_ways() {
    for kind in ALL {
        let peer = echo_peer(kind, PeerOpts::default()).await;
        let (mut tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
            .split();
        let big = frame(7, 16 << 20);
        let small = frame(8, 3);
        let batch = wire(&[big.clone(), small.clone()]);
        // Send and receive at once: the echo cannot hold 16 MiB in socket
        // buffers, so a transport that locked one side would hang here.
        let sender = tokio::spawn(async move {
            tx.send(batch).await.unwrap();
            tx
        });
        let got = guard("big recv", rx.recv()).await.unwrap().unwrap();
        assert!(got == big, "{kind}: 16 MiB frame differs");
        assert_eq!(guard("recv", rx.recv()).await.unwrap().unwrap(), small);
        let mut tx = guard("sender", sender).await.unwrap();
        tx.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_frames_in_flight() {
    const N: u16 = 5000;
    for kind in ALL {
        let peer = echo_peer(kind, PeerOpts::default()).await;
        let (mut tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
            .split();
        let sender = tokio::spawn(async move {
            let mut id = 0u16;
            let mut batch = 1u16;
            while id < N {
                let n = batch.min(N - id);
                let frames: Vec<Frame> = (id..id + n)
                    .map(|i| frame(i, usize::from(i % 300)))
                    .collect();
                tx.send(wire(&frames)).await.unwrap();
                id += n;
                batch = batch % 97 + 1;
            }
            tx
        });
        for i in 0..N {
            let got = guard("recv", rx.recv()).await.unwrap().unwrap();
            assert_eq!(got, frame(i, usize::from(i % 300)), "{kind}");
        }
        let mut tx = guard("sender", sender).await.unwrap();
        tx.close().await.unwrap();
        assert!(guard("end", rx.recv()).await.unwrap().is_none(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_closing_mid_frame_is_an_error() {
    let whole = frame(1, 100).to_bytes().to_vec();
    for kind in ALL {
        for cut in [3, HEADER_LEN, 50] {
            let chunks = vec![whole.clone(), whole[..cut].to_vec()];
            let peer = serve(kind, PeerOpts::default(), move |io| {
                script(kind, io, chunks.clone(), true)
            })
            .await;
            let (_tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
                .await
                .unwrap()
                .split();
            if is_ws(kind) {
                // A WebSocket peer cannot send part of a package in a
                // message that the WebSocket layer delivers: a short
                // message is a protocol error.
                assert_eq!(
                    guard("recv", rx.recv()).await.unwrap().unwrap(),
                    frame(1, 100)
                );
                let e = guard("recv", rx.recv()).await.unwrap_err();
                assert!(matches!(e, Error::Protocol(_)), "{kind} cut {cut}: {e}");
            } else {
                assert_eq!(
                    guard("recv", rx.recv()).await.unwrap().unwrap(),
                    frame(1, 100)
                );
                match guard("recv", rx.recv()).await {
                    Err(Error::ClosedMidFrame { available, needed }) => {
                        assert_eq!(available, cut, "{kind}");
                        assert_eq!(needed, if cut < HEADER_LEN { 8 } else { 108 });
                    }
                    other => panic!("{kind} cut {cut}: {other:?}"),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_peer_dropping_tcp_mid_message_is_an_error() {
    // Raw bytes: a WebSocket handshake by tungstenite, then half a frame
    // and a TCP close.
    for kind in [TransportKind::Ws, TransportKind::Wss] {
        let peer = serve(kind, PeerOpts::default(), |io| async move {
            let Some(ws) = ws_accept(io).await else {
                return;
            };
            let mut io = ws.into_inner();
            // Unmasked binary frame, final, 100-byte payload; send only 20.
            let mut raw = vec![0x82, 100];
            raw.extend_from_slice(&[0u8; 20]);
            let _ = tokio::io::AsyncWriteExt::write_all(&mut io, &raw).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
        })
        .await;
        let (_tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap()
            .split();
        let r = guard("recv", rx.recv()).await;
        assert!(r.is_err(), "{kind}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_close_between_frames_ends_the_stream() {
    for kind in ALL {
        let chunks = vec![
            frame(1, 10).to_bytes().to_vec(),
            frame(2, 0).to_bytes().to_vec(),
        ];
        let peer = serve(kind, PeerOpts::default(), move |io| {
            script(kind, io, chunks.clone(), false)
        })
        .await;
        let (_tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap()
            .split();
        assert_eq!(guard("recv", rx.recv()).await.unwrap().unwrap().id, 1);
        assert_eq!(guard("recv", rx.recv()).await.unwrap().unwrap().id, 2);
        assert!(guard("recv", rx.recv()).await.unwrap().is_none(), "{kind}");
        assert!(
            guard("recv", rx.recv()).await.unwrap().is_none(),
            "{kind} again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_from_the_peer_are_protocol_errors() {
    let mut bad_check = frame(1, 4).to_bytes().to_vec();
    bad_check[7] ^= 1;
    let too_big = Header::new(PackageType::Data, 2, 1 << 20).encode().to_vec();
    for kind in ALL {
        for (what, bytes) in [("check", bad_check.clone()), ("size", too_big.clone())] {
            let chunks = vec![bytes];
            let peer = serve(kind, PeerOpts::default(), move |io| {
                script(kind, io, chunks.clone(), false)
            })
            .await;
            let opts = peer.opts.clone().with_max_payload(1000);
            let (_tx, mut rx) = guard("connect", connect(&peer.target, &opts))
                .await
                .unwrap()
                .split();
            let e = guard("recv", rx.recv()).await.unwrap_err();
            let ok = matches!(
                (what, &e),
                (
                    "check",
                    Error::Protocol(thingsdb_protocol::Error::BadCheckByte { .. })
                ) | (
                    "size",
                    Error::Protocol(thingsdb_protocol::Error::PayloadTooLarge { .. })
                )
            );
            assert!(ok, "{kind} {what}: {e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_text_short_ping_fragments_and_close() {
    for kind in [TransportKind::Ws, TransportKind::Wss] {
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let peer = serve(kind, PeerOpts::default(), move |io| {
            let seen = seen_tx.clone();
            async move {
                let Some(mut ws) = ws_accept(io).await else {
                    return;
                };
                ws.send(Message::text("hello")).await.unwrap();
                ws.send(Message::Binary(Bytes::from_static(&[1, 2, 3])))
                    .await
                    .unwrap();
                // A ping: the client must answer while only receiving.
                ws.send(Message::Ping(Bytes::from_static(b"p1")))
                    .await
                    .unwrap();
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Pong(p))) => {
                            seen.send(format!("pong {}", String::from_utf8_lossy(&p)))
                                .unwrap();
                            break;
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                }
                // A package sent in four fragments of ~1.5 KiB, as a node
                // does.
                let wire = frame(9, 6000).to_bytes();
                let parts: Vec<Bytes> = wire.chunks(1500).map(Bytes::copy_from_slice).collect();
                let last = parts.len() - 1;
                for (i, p) in parts.into_iter().enumerate() {
                    let op = if i == 0 {
                        OpCode::Data(Data::Binary)
                    } else {
                        OpCode::Data(Data::Continue)
                    };
                    ws.send(Message::Frame(WsFrame::message(p, op, i == last)))
                        .await
                        .unwrap();
                }
                // Then wait for the client's close.
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Close(_) = m {
                        seen.send("close".into()).unwrap();
                    }
                }
            }
        })
        .await;
        let (mut tx, mut rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap()
            .split();
        let e = guard("recv", rx.recv()).await.unwrap_err();
        assert!(matches!(e, Error::TextMessage), "{kind}: {e:?}");
        let e = guard("recv", rx.recv()).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Protocol(thingsdb_protocol::Error::Truncated { .. })
            ),
            "{kind}: {e:?}"
        );
        let rx_task = tokio::spawn(async move {
            let f = rx.recv().await;
            (rx, f)
        });
        assert_eq!(guard("pong", seen_rx.recv()).await.unwrap(), "pong p1");
        let (mut rx, f) = guard("fragments", rx_task).await.unwrap();
        assert_eq!(f.unwrap().unwrap(), frame(9, 6000), "{kind}: reassembled");
        tx.close().await.unwrap();
        assert_eq!(guard("close", seen_rx.recv()).await.unwrap(), "close");
        assert!(guard("end", rx.recv()).await.unwrap().is_none(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_sends_one_package_per_message() {
    for kind in [TransportKind::Ws, TransportKind::Wss] {
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let peer = serve(kind, PeerOpts::default(), move |io| {
            let seen = seen_tx.clone();
            async move {
                let Some(mut ws) = ws_accept(io).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Binary(b) = m {
                        seen.send(b.len()).unwrap();
                    }
                }
            }
        })
        .await;
        let (mut tx, _rx) = guard("connect", connect(&peer.target, &peer.opts))
            .await
            .unwrap()
            .split();
        tx.send(wire(&[frame(1, 0), frame(2, 5), frame(3, 1000)]))
            .await
            .unwrap();
        for want in [8, 13, 1008] {
            assert_eq!(guard("msg", seen_rx.recv()).await.unwrap(), want, "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_partial_packages() {
    let peer = echo_peer(TransportKind::Tcp, PeerOpts::default()).await;
    let (mut tx, mut rx) = connect(&peer.target, &peer.opts).await.unwrap().split();
    let w = wire(&[frame(1, 10), frame(2, 10)]);
    for cut in [1, 8, 17, 19, 25] {
        let e = tx.send(w.slice(..cut)).await.unwrap_err();
        assert!(matches!(e, Error::NotWholeFrames(_)), "{cut}: {e}");
    }
    let mut bad = frame(1, 1).to_bytes().to_vec();
    bad[7] = 0;
    assert!(matches!(
        tx.send(Bytes::from(bad)).await,
        Err(Error::NotWholeFrames(_))
    ));
    // Nothing of the refused batches went out.
    tx.send(frame(5, 1).to_bytes()).await.unwrap();
    assert_eq!(guard("recv", rx.recv()).await.unwrap().unwrap().id, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trust_is_checked() {
    for kind in [TransportKind::Tls, TransportKind::Wss] {
        let peer = echo_peer(kind, PeerOpts::default()).await;
        // Default roots do not know the test certificate.
        let e = guard(
            "connect",
            connect(
                &peer.target,
                &peer.opts.clone().with_tls(TlsOptions::default()),
            ),
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(&e, Error::Tls { message, source: Some(_) } if message.contains("certificate")),
            "{kind}: {e}"
        );
        // Trusted CA but the wrong name.
        let pem = peer.cert_pem.clone().unwrap();
        let wrong = TlsOptions::with_ca_pem(pem.clone()).server_name("other.example");
        let e = guard(
            "connect",
            connect(&peer.target, &peer.opts.clone().with_tls(wrong)),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(&e, Error::Tls { .. }), "{kind}: {e}");
        // By IP address (the certificate names 127.0.0.1 too).
        let by_ip = if kind == TransportKind::Tls {
            Target::tls("127.0.0.1", peer.target.port().unwrap())
        } else {
            Target::wss("127.0.0.1", peer.target.port().unwrap(), "/")
        };
        let (mut tx, mut rx) = guard("connect", connect(&by_ip, &peer.opts))
            .await
            .unwrap()
            .split();
        tx.send(frame(3, 3).to_bytes()).await.unwrap();
        assert_eq!(guard("recv", rx.recv()).await.unwrap().unwrap().id, 3);
        // The dangerous option accepts it.
        let any = peer
            .opts
            .clone()
            .with_tls(TlsOptions::dangerous_accept_any_certificate());
        let (mut tx, mut rx) = guard("connect", connect(&peer.target, &any))
            .await
            .unwrap()
            .split();
        tx.send(frame(4, 3).to_bytes()).await.unwrap();
        assert_eq!(guard("recv", rx.recv()).await.unwrap().unwrap().id, 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_reported() {
    // Refused: a port that was just free.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = connect(&Target::tcp("127.0.0.1", port), &ConnectOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");

    // A missing Unix socket.
    let dir = tempfile::tempdir().unwrap();
    let t = Target::unix(dir.path().join("none.sock").to_str().unwrap());
    let e = connect(&t, &ConnectOptions::default()).await.err().unwrap();
    assert!(matches!(e, Error::Connect { .. }), "{e}");

    // A peer that accepts TCP but never answers the WebSocket handshake:
    // the connect timeout applies to the whole of connecting.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let opts = ConnectOptions::default().with_connect_timeout(Duration::from_millis(300));
    let e = guard(
        "timeout",
        connect(&Target::ws("127.0.0.1", port, "/"), &opts),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(
            e,
            Error::ConnectTimeout {
                elapsed_ms: 300,
                ..
            }
        ),
        "{e}"
    );
    hold.abort();

    // An HTTP server that refuses the upgrade.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let refuse = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut s,
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            )
            .await;
        }
    });
    let e = guard(
        "ws 404",
        connect(
            &Target::ws("127.0.0.1", port, "/x"),
            &ConnectOptions::default(),
        ),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&e, Error::WebSocket { message, .. } if message.contains("404")),
        "{e}"
    );
    refuse.abort();
}

#[tokio::test]
async fn from_stream_over_an_in_memory_duplex() {
    let (a, b) = tokio::io::duplex(64);
    let (mut atx, mut arx) = Connection::from_stream(a, "a", 1 << 20).split();
    let (mut btx, mut brx) = Connection::from_stream(b, "b", 1 << 20).split();
    let frames: Vec<Frame> = (0..100).map(|i| frame(i, usize::from(i))).collect();
    let w = wire(&frames);
    let sender = tokio::spawn(async move {
        atx.send(w).await.unwrap();
        atx.close().await.unwrap();
    });
    let expect = frames.clone();
    let reader = tokio::spawn(async move {
        for f in &expect {
            assert_eq!(&arx.recv().await.unwrap().unwrap(), f);
        }
    });
    for f in &frames {
        let got = brx.recv().await.unwrap().unwrap();
        assert_eq!(&got, f);
        btx.send(got.to_bytes()).await.unwrap();
    }
    assert!(brx.recv().await.unwrap().is_none());
    guard("sender", sender).await.unwrap();
    guard("reader", reader).await.unwrap();
}

/// Counts write calls reaching the stream under a connection.
struct CountingWrites<S> {
    inner: S,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingWrites<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingWrites<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_batch_is_one_write() {
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let counted = CountingWrites {
        inner: a,
        writes: writes.clone(),
    };
    let (mut tx, _rx) = Connection::from_stream(counted, "a", 1 << 20).split();
    let frames: Vec<Frame> = (0..500).map(|i| frame(i, 20)).collect();
    let w = wire(&frames);
    tx.send(w.clone()).await.unwrap();
    assert_eq!(
        writes.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "500 frames, one write"
    );
    let mut got = vec![0u8; w.len()];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..], &w[..]);
}

/// A flush dropped half way (the peer's buffer full) keeps what it has not
/// written; the next flush goes on from there, so the peer gets every
/// byte once, in order. Over a stream and over a WebSocket.
#[tokio::test]
async fn a_flush_cut_short_loses_nothing() {
    // Over an in-memory stream whose buffer holds far less than the batch.
    let (a, b) = tokio::io::duplex(256);
    let (mut tx, _) = Connection::from_stream(a, "a", 1 << 20).split();
    let (_, mut rx) = Connection::from_stream(b, "b", 1 << 20).split();
    let frames: Vec<Frame> = (0..200).map(|i| frame(i, 50)).collect();
    tx.queue(wire(&frames[..100])).unwrap();
    tx.queue(wire(&frames[100..])).unwrap();
    assert!(!tx.is_flushed());
    // Cut the flush short, again and again, while the reader drains.
    let mut got = Vec::new();
    while got.len() < frames.len() {
        let _ = tokio::time::timeout(Duration::from_millis(1), tx.flush()).await;
        while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(1), rx.recv())
            .await
            .map(|r| r.unwrap())
        {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
    tx.flush().await.unwrap();
    assert!(tx.is_flushed());

    // Over a WebSocket to a local peer that echoes.
    let peer = echo_peer(TransportKind::Ws, PeerOpts::default()).await;
    let (mut tx, mut rx) = connect(&peer.target, &peer.opts).await.unwrap().split();
    tx.queue(wire(&frames)).unwrap();
    let _ = tokio::time::timeout(Duration::from_micros(1), tx.flush()).await;
    tx.flush().await.unwrap();
    for f in &frames {
        assert_eq!(&rx.recv().await.unwrap().unwrap(), f);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_quick_acks_only_where_the_reader_sends_them() {
    for kind in ALL {
        for quickack in [true, false] {
            let peer = echo_peer(kind, PeerOpts::default()).await;
            let opts = peer.opts.clone().with_tcp_quickack(quickack);
            let conn = guard("connect", connect(&peer.target, &opts))
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            let (mut tx, mut rx) = conn.split();
            let expected = quickack && kind == TransportKind::Tcp && cfg!(target_os = "linux");
            assert_eq!(rx.set_manual_quick_ack(true), expected, "{kind} {quickack}");
            // Manual or not, frames flow, and an explicit ACK is harmless.
            let frames: Vec<Frame> = (0..20).map(|i| frame(i, usize::from(i) * 7)).collect();
            tx.send(wire(&frames)).await.unwrap();
            for f in &frames {
                let got = guard("recv", rx.recv()).await.unwrap().unwrap();
                assert_eq!(&got, f, "{kind}");
                rx.quick_ack();
            }
            assert_eq!(rx.set_manual_quick_ack(false), expected, "{kind}");
            tx.send(frame(99, 3).to_bytes()).await.unwrap();
            let got = guard("recv", rx.recv()).await.unwrap().unwrap();
            assert_eq!(got, frame(99, 3), "{kind}");
            tx.close().await.unwrap();
        }
    }
}
