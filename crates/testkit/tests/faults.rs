//! Fault injection, WebSocket fragmentation and TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rmpv::Value;
use thingsdb_protocol::{Decoder, PackageType, Room};
use thingsdb_testkit::{Corruption, Ingress, RawClient, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn close_now_and_close_after() {
    let node = TestNode::start().await.unwrap();
    for t in ALL {
        let mut c = authed(&node, t).await;
        node.faults().close_now();
        expect_closed(&mut c).await;

        let mut c = authed(&node, t).await;
        let id = node.connections()[0].id;
        node.connection_faults(id).close_after(2);
        assert_eq!(
            c.request(&ping(1)).await.unwrap().package_type().unwrap(),
            PackageType::Pong
        );
        c.send(&ping(2)).await.unwrap();
        expect_closed(&mut c).await;
        assert!(node.wait_for_connections(0, GUARD).await);
    }
    // For all: new connections close at their first package.
    node.faults().close_after(1);
    let mut c = client(&node, T::Tcp).await;
    c.send(&ping(1)).await.unwrap();
    expect_closed(&mut c).await;
    node.faults().reset();
    let mut c = client(&node, T::Tcp).await;
    assert_eq!(
        c.request(&ping(1)).await.unwrap().package_type().unwrap(),
        PackageType::Pong
    );
    assert_eq!(node.counters().closed_by_fault, 7);
}

#[tokio::test]
async fn delayed_and_missing_replies() {
    let node = TestNode::start().await.unwrap();
    for t in ALL {
        let mut c = authed(&node, t).await;
        node.faults().delay_replies(Duration::from_millis(150));
        let start = Instant::now();
        c.request(&ping(1)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
        node.faults().reset();

        node.faults().stop_replying(true);
        c.send(&ping(2)).await.unwrap();
        let r = c.recv_timeout(Duration::from_millis(300)).await;
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(
            node.wait_for(|c| c.received(PackageType::Ping) >= 2, GUARD)
                .await
        );
        // Events still arrive, and the socket is open.
        assert_eq!(node.emit_warn(2, "still here"), 1);
        assert!(matches!(
            next_event(&mut c).await,
            thingsdb_protocol::Event::Warn { .. }
        ));
        node.faults().stop_replying(false);
        assert_eq!(c.request(&ping(3)).await.unwrap().id, 3);
        node.reset_counters();
        drop(c);
        assert!(node.wait_for_connections(0, GUARD).await);
    }
}

#[tokio::test]
async fn corrupted_replies() {
    let node = TestNode::start().await.unwrap();
    for t in ALL {
        {
            let mut c = authed(&node, t).await;
            node.faults().corrupt_next_reply(Corruption::BadCheckByte);
            c.send(&ping(1)).await.unwrap();
            assert!(
                c.recv_timeout(GUARD).await.is_err(),
                "{t:?}: decoder refuses it"
            );
        }
        {
            let mut c = authed(&node, t).await;
            node.faults()
                .corrupt_next_reply(Corruption::OversizedHeader);
            c.send(&ping(1)).await.unwrap();
            // A decoder with the node's 1 GiB limit refuses the header
            // (over WebSocket the message is a lone header).
            assert!(c.recv_timeout(GUARD).await.is_err());
        }
        assert!(node.wait_for_connections(0, GUARD).await);

        let mut c = authed(&node, t).await;
        node.faults().corrupt_next_reply(Corruption::InvalidMsgpack);
        let f = c.request(&query(4, "@t", "1;", None)).await.unwrap();
        assert_eq!(f.package_type().unwrap(), PackageType::Data);
        assert!(thingsdb_protocol::Response::decode(&f).is_err());
        // The next reply is fine again.
        assert_eq!(
            value(&c.request(&query(5, "@t", "1;", None)).await.unwrap()),
            Value::from(1)
        );

        node.faults().corrupt_next_reply(Corruption::UnknownId(999));
        let f = c.request(&ping(6)).await.unwrap();
        assert_eq!(f.id, 6);
        assert_eq!(c.other.len(), 1);
        assert_eq!(c.other[0].id, 999);

        node.faults().corrupt_next_reply(Corruption::Truncated);
        c.send(&query(7, "@t", "123456;", None)).await.unwrap();
        match c.recv_timeout(GUARD).await {
            Ok(None) | Err(_) => {}
            Ok(Some(f)) => panic!("{t:?}: a truncated package decoded: {f:?}"),
        }
        node.faults().reset();
        drop(c);
        assert!(node.wait_for_connections(0, GUARD).await);
    }
}

#[tokio::test]
async fn raw_bytes_and_byte_by_byte_writes() {
    let node = TestNode::start().await.unwrap();
    node.on_query(|_| thingsdb_testkit::Reply::value("y".repeat(3000)));
    for t in ALL {
        let mut c = authed(&node, t).await;
        node.faults().byte_by_byte(true);
        let f = c.request(&query(1, "@t", "x;", None)).await.unwrap();
        assert_eq!(value(&f).as_str().unwrap().len(), 3000);
        node.faults().byte_by_byte(false);
        // A reply for an id nobody asked, sent as raw bytes.
        node.faults()
            .send_raw(raw_pkg(PackageType::Data, 4242, &[0x01]));
        let f = c.recv_timeout(GUARD).await.unwrap().unwrap();
        assert_eq!(f.id, 4242);
    }
}

#[tokio::test]
async fn refused_connections_and_restart() {
    let node = TestNode::start().await.unwrap();
    let room = node.create_room("stuff", Some("chat"));
    node.procedure("p", |_| thingsdb_testkit::Reply::value(1));
    let mut c = authed(&node, T::Tcp).await;
    c.request(&join(1, "//stuff", &[Room::Id(room)]))
        .await
        .unwrap();
    let mut w = authed(&node, T::Ws).await;

    node.restart().await;
    expect_closed(&mut c).await;
    expect_closed(&mut w).await;
    assert!(node.connections().is_empty());
    assert!(node.room_joiners("stuff", room).is_empty());

    // Rooms, users and procedures survive.
    let mut c = authed(&node, T::Unix).await;
    let f = c
        .request(&join(2, "//stuff", &[Room::from("chat")]))
        .await
        .unwrap();
    assert_eq!(value(&f), Value::Array(vec![room.into()]));
    let f = c.request(&run_pos(3, "@t", "p", vec![])).await.unwrap();
    assert_eq!(value(&f), Value::from(1));

    node.refuse_connections_for(Duration::from_secs(600));
    for t in ALL {
        match t {
            T::Ws => assert!(RawClient::ws(&node.ws_url()).await.is_err()),
            _ => {
                let mut c = client(&node, t).await;
                expect_closed(&mut c).await;
            }
        }
    }
    assert_eq!(node.counters().connections_refused, 3);
    node.accept_connections();
    let _c = authed(&node, T::Tcp).await;

    node.restart_with_downtime(Duration::from_secs(600)).await;
    let mut c = client(&node, T::Tcp).await;
    expect_closed(&mut c).await;
    node.accept_connections();
    let _c = authed(&node, T::Tcp).await;
}

#[tokio::test]
async fn dropping_the_node_closes_everything_and_cleans_up() {
    let node = TestNode::start().await.unwrap();
    let mut c = authed(&node, T::Tcp).await;
    let mut w = authed(&node, T::Ws).await;
    let path = node.unix_path().to_path_buf();
    let addr = node.tcp_addr();
    assert!(path.exists());
    drop(node);
    expect_closed(&mut c).await;
    expect_closed(&mut w).await;
    assert!(!path.exists());
    let deadline = Instant::now() + GUARD;
    // The listener goes away once its task is dropped by the runtime.
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "listener still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads WebSocket frames by hand to see the fragmentation.
#[tokio::test]
async fn large_websocket_replies_are_one_message_in_continuation_frames() {
    let node = TestNode::start().await.unwrap();
    node.on_query(|_| thingsdb_testkit::Reply::value(vec![0u8; 5000]));
    let mut s = tokio::net::TcpStream::connect(node.ws_addr())
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: thingsdb-protocol\r\n\r\n",
            node.ws_addr()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        buf.push(b[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(head.starts_with("http/1.1 101"));
    assert!(head.contains("sec-websocket-protocol: thingsdb-protocol"));

    // Masked client frames.
    let send = |payload: Vec<u8>| {
        let mut f = vec![0x82u8];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        f.extend([0, 0, 0, 0]); // a zero mask leaves the payload as is
        f.extend(payload);
        f
    };
    s.write_all(&send(auth(1, "admin", "pass").to_vec()))
        .await
        .unwrap();
    s.write_all(&send(query(2, "@t", "x;", None).to_vec()))
        .await
        .unwrap();

    async fn frame(s: &mut tokio::net::TcpStream) -> (bool, u8, Vec<u8>) {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        let fin = h[0] & 0x80 != 0;
        let op = h[0] & 0x0f;
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).await.unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.unwrap();
        (fin, op, p)
    }
    let (fin, op, p) = frame(&mut s).await;
    assert!(
        fin && op == 2 && p.len() == 8,
        "the OK to AUTH is one frame"
    );
    let mut frames = Vec::new();
    loop {
        let f = frame(&mut s).await;
        let fin = f.0;
        frames.push(f);
        if fin {
            break;
        }
    }
    assert!(frames.len() > 1);
    assert_eq!(frames[0].1, 2, "binary first");
    assert!(
        frames[1..].iter().all(|f| f.1 == 0),
        "then continuation frames"
    );
    assert!(frames[..frames.len() - 1]
        .iter()
        .all(|f| f.2.len() == thingsdb_testkit::NODE_WS_FRAGMENT));
    let msg: Vec<u8> = frames.into_iter().flat_map(|f| f.2).collect();
    let mut d = Decoder::new();
    d.feed(&msg);
    let f = d.next_frame().unwrap().unwrap();
    assert_eq!(f.id, 2);
    assert_eq!(value(&f), Value::Binary(vec![0u8; 5000]));
}

fn tls_client_config(
    cert_der: rustls_pki_types::CertificateDer<'static>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

#[tokio::test]
async fn tls_and_wss() {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let node = TestNode::builder()
        .tls(ck.cert.pem(), ck.signing_key.serialize_pem())
        .start()
        .await
        .unwrap();
    let cfg = tls_client_config(ck.cert.der().clone());
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();

    // TLS over TCP.
    let tcp = tokio::net::TcpStream::connect(node.tls_addr().unwrap())
        .await
        .unwrap();
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    tls.write_all(&auth(1, "admin", "pass")).await.unwrap();
    tls.write_all(&query(2, "@t", "6 * 7;", None))
        .await
        .unwrap();
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let mut b = [0u8; 512];
        let n = tls.read(&mut b).await.unwrap();
        assert!(n > 0);
        d.feed(&b[..n]);
        while let Some(f) = d.next_frame().unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(frames[0].package_type().unwrap(), PackageType::Ok);
    assert_eq!(value(&frames[1]), Value::from(42));

    // wss://
    let tcp = tokio::net::TcpStream::connect(node.wss_addr().unwrap())
        .await
        .unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let url = node.wss_url().unwrap().replace("127.0.0.1", "localhost");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    use futures::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(auth(
        1, "admin", "pass",
    )))
    .await
    .unwrap();
    let m = ws.next().await.unwrap().unwrap().into_data();
    assert_eq!(
        &m[6..8],
        &[PackageType::Ok.as_u8(), !PackageType::Ok.as_u8()]
    );
    let c = node.counters();
    assert_eq!(
        (c.connections(Ingress::Tls), c.connections(Ingress::Wss)),
        (1, 1)
    );
    assert!(node
        .thingsdbs_url()
        .unwrap()
        .starts_with("thingsdbs://127.0.0.1:"));
    assert!(node.unix_target().starts_with("unix:/"));
    assert!(node.thingsdb_url().starts_with("thingsdb://127.0.0.1:"));
}

#[tokio::test]
async fn bad_tls_material_is_an_error() {
    let e = TestNode::builder()
        .tls("nope", "nope")
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
