//! Every transport against `thingsdb-testkit`'s node stand-in: AUTH and a
//! query over TCP, TLS, WS, WSS and Unix; large fragmented replies; many
//! requests pipelined.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{request, Response};
use thingsdb_testkit::{Reply, TestNode};
use thingsdb_transport::{
    connect, ConnectOptions, FrameReader, FrameWriter, Target, TlsOptions, TransportKind,
};

const GUARD: Duration = Duration::from_secs(120);

async fn guard<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: hung for {GUARD:?}"),
    }
}

struct Node {
    node: TestNode,
    ca_pem: String,
}

async fn node() -> Node {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let ca_pem = ck.cert.pem();
    let node = TestNode::builder()
        .tls(&ca_pem, ck.signing_key.serialize_pem())
        .start()
        .await
        .unwrap();
    Node { node, ca_pem }
}

impl Node {
    fn targets(&self) -> Vec<Target> {
        let n = &self.node;
        vec![
            n.tcp_target().parse().unwrap(),
            n.thingsdb_url().parse().unwrap(),
            n.thingsdbs_url().unwrap().parse().unwrap(),
            n.ws_url().parse().unwrap(),
            n.wss_url().unwrap().parse().unwrap(),
            n.unix_target().parse().unwrap(),
        ]
    }

    fn opts(&self) -> ConnectOptions {
        ConnectOptions::default()
            .with_connect_timeout(Duration::from_secs(60))
            .with_tls(TlsOptions::with_ca_pem(self.ca_pem.clone()))
    }
}

async fn open(t: &Target, opts: &ConnectOptions) -> (FrameWriter, FrameReader) {
    let conn = guard("connect", connect(t, opts))
        .await
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    assert_eq!(conn.kind(), t.kind());
    conn.split()
}

async fn auth(tx: &mut FrameWriter, rx: &mut FrameReader) {
    let mut out = BytesMut::new();
    request::encode_auth(&mut out, 1, "admin", "pass").unwrap();
    tx.send(out.freeze()).await.unwrap();
    let f = guard("auth", rx.recv()).await.unwrap().unwrap();
    assert_eq!(f.id, 1);
    assert_eq!(Response::decode(&f).unwrap(), Response::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_query_over_every_transport() {
    let n = node().await;
    for t in n.targets() {
        let (mut tx, mut rx) = open(&t, &n.opts()).await;
        auth(&mut tx, &mut rx).await;
        let mut out = BytesMut::new();
        request::encode_query(&mut out, 2, "@t", "6 * 7;", None).unwrap();
        tx.send(out.freeze()).await.unwrap();
        let f = guard("query", rx.recv()).await.unwrap().unwrap();
        assert_eq!(f.id, 2, "{t}");
        let v = Response::decode(&f).unwrap().value().unwrap().unwrap();
        assert_eq!(v, rmpv::Value::from(42), "{t}");
        tx.close().await.unwrap();
        assert!(guard("end", rx.recv()).await.unwrap().is_none(), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_fails_without_the_dangerous_option() {
    let n = node().await;
    for url in [n.node.thingsdbs_url().unwrap(), n.node.wss_url().unwrap()] {
        let t: Target = url.parse().unwrap();
        let e = guard("connect", connect(&t, &ConnectOptions::default()))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, thingsdb_transport::Error::Tls { .. }),
            "{t}: {e}"
        );
        let any =
            ConnectOptions::default().with_tls(TlsOptions::dangerous_accept_any_certificate());
        let (mut tx, mut rx) = open(&t, &any).await;
        auth(&mut tx, &mut rx).await;
    }
}

/// A self-signed certificate marked as a CA, as `openssl req -x509` makes
/// one (and as the ThingsDB docs tell users to): `with_ca_pem` given that
/// very certificate trusts it; another certificate's PEM does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_ca_certificate_is_trusted_when_pinned() {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let node = TestNode::builder()
        .tls(cert.pem(), key.serialize_pem())
        .start()
        .await
        .unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    for url in [node.thingsdbs_url().unwrap(), node.wss_url().unwrap()] {
        let t: Target = url.parse().unwrap();
        let pinned = ConnectOptions::default().with_tls(TlsOptions::with_ca_pem(cert.pem()));
        let (mut tx, mut rx) = open(&t, &pinned).await;
        auth(&mut tx, &mut rx).await;
        let wrong = ConnectOptions::default().with_tls(TlsOptions::with_ca_pem(other.cert.pem()));
        let e = guard("connect", connect(&t, &wrong)).await.err().unwrap();
        assert!(
            matches!(e, thingsdb_transport::Error::Tls { .. }),
            "{t}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_replies_and_pipelining() {
    let n = node().await;
    // A 1 MiB and a 16 MiB string reply; over WebSocket the stand-in sends
    // them in ~1.5 KiB continuation frames, as a node does.
    n.node.on_query(|q| {
        let len: usize = q.code.trim_end_matches(';').parse().unwrap_or(1);
        Reply::Data(rmpv::Value::from("x".repeat(len)))
    });
    for t in n.targets() {
        let (mut tx, mut rx) = open(&t, &n.opts()).await;
        auth(&mut tx, &mut rx).await;
        for (id, len) in [(10u16, 1usize << 20), (11, 16 << 20)] {
            let mut out = BytesMut::new();
            request::encode_query(&mut out, id, "@t", &format!("{len};"), None).unwrap();
            tx.send(out.freeze()).await.unwrap();
            let f = guard("big", rx.recv()).await.unwrap().unwrap();
            assert_eq!(f.id, id, "{t}");
            let v = Response::decode(&f).unwrap().value().unwrap().unwrap();
            assert_eq!(v.as_str().map(str::len), Some(len), "{t}");
        }
        // 2000 small queries in batches of 100, all in flight at once.
        let mut batch = BytesMut::new();
        let mut batches: Vec<Bytes> = Vec::new();
        for i in 0..2000u16 {
            request::encode_query(&mut batch, 100 + i, "@t", "3;", None).unwrap();
            if i % 100 == 99 {
                batches.push(batch.split().freeze());
            }
        }
        let sender = tokio::spawn(async move {
            for b in batches {
                tx.send(b).await.unwrap();
            }
            tx
        });
        for i in 0..2000u16 {
            let f = guard("pipelined", rx.recv()).await.unwrap().unwrap();
            assert_eq!(f.id, 100 + i, "{t}");
        }
        let mut tx = guard("sender", sender).await.unwrap();
        tx.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_match_the_targets() {
    let n = node().await;
    let kinds: Vec<TransportKind> = n.targets().iter().map(Target::kind).collect();
    assert_eq!(
        kinds,
        [
            TransportKind::Tcp,
            TransportKind::Tcp,
            TransportKind::Tls,
            TransportKind::Ws,
            TransportKind::Wss,
            TransportKind::Unix
        ]
    );
}
