//! The HTTP client against the testkit's HTTP API and status port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use thingsdb_client::{Auth, Error, ErrorCode, LostReason};
use thingsdb_http::{Format, HttpClient, NodeState, StatusProbe};
use thingsdb_testkit::thingsdb_protocol::NodeStatus;
use thingsdb_testkit::{HttpServer, Reply, TestNode};

async fn node() -> (TestNode, HttpServer) {
    let node = TestNode::builder()
        .token("tok123", "admin")
        .start()
        .await
        .unwrap();
    node.on_query(|q| {
        if q.code.starts_with("raise(err(") {
            Reply::error(ErrorCode::from_code(-100), "x")
        } else if q.code == "forbidden;" {
            Reply::error(ErrorCode::Forbidden, "no access")
        } else if q.code == "bytes;" {
            Reply::value(rmpv::Value::Binary(vec![1, 2, 3]))
        } else if q.code == "scope;" {
            Reply::value(q.scope_str.as_str())
        } else {
            q.evaluate()
        }
    });
    node.procedure("add_one", |args| {
        match args.param(0, "x").and_then(|v| v.as_i64()) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expecting an integer"),
        }
    });
    let http = node.serve_http().await.unwrap();
    (node, http)
}

fn client(http: &HttpServer) -> HttpClient {
    HttpClient::new(&http.api_url(), Auth::password("admin", "pass")).unwrap()
}

#[tokio::test]
async fn queries_with_vars_in_both_formats() {
    let (_node, http) = node().await;
    let c = client(&http);
    let v = c.query("a * b;").var("a", &6).var("b", &7).await.unwrap();
    assert_eq!(v, rmpv::Value::from(42));
    let n: i64 = c
        .query("a * 2;")
        .var("a", &21)
        .format(Format::Json)
        .decode()
        .await
        .unwrap();
    assert_eq!(n, 42);
    #[derive(serde::Serialize)]
    struct V {
        a: f64,
    }
    let f: f64 = c
        .query("a / 2;")
        .vars(&V { a: 3.0 })
        .decode()
        .await
        .unwrap();
    assert_eq!(f, 1.5);
    let raw = c.query("1 + 1;").format(Format::Json).raw().await.unwrap();
    assert_eq!(&raw[..], b"2");
    let raw = c.query("1 + 1;").raw().await.unwrap();
    assert_eq!(&raw[..], &[2]);
    // The scope travels as the path and comes back as the node names it.
    let s: String = c.query("scope;").scope("//stuff").decode().await.unwrap();
    assert_eq!(s, "@:stuff");
    let s: String = c.query("scope;").decode().await.unwrap();
    assert_eq!(s, "@t");
}

#[tokio::test]
async fn procedures_positional_and_named() {
    let (_node, http) = node().await;
    let c = HttpClient::builder()
        .url(&http.api_url())
        .unwrap()
        .auth(Auth::token("tok123"))
        .default_scope("//stuff")
        .unwrap()
        .format(Format::Json)
        .build()
        .unwrap();
    let a: i64 = c.run("add_one").arg(&41).decode().await.unwrap();
    let b: i64 = c.run("add_one").named("x", &41).decode().await.unwrap();
    let d: i64 = c.run("add_one").args(&[41]).decode().await.unwrap();
    assert_eq!((a, b, d), (42, 42, 42));
    let e = c.run("nope").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    let e = c.run("add_one").arg(&"x").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Type), "{e}");
}

#[tokio::test]
async fn each_error_class_maps_to_the_socket_clients_code() {
    let (_node, http) = node().await;
    let c = client(&http);
    for (code, want) in [
        ("1/0;", ErrorCode::ZeroDiv),
        ("1 +;", ErrorCode::Syntax),
        ("nope;", ErrorCode::Lookup),
        ("forbidden;", ErrorCode::Forbidden),
        ("9223372036854775807 + 1;", ErrorCode::Overflow),
    ] {
        match c.query(code).await {
            Err(Error::Thingsdb(t)) => assert_eq!(t.code, want, "{code}: {t}"),
            other => panic!("{code}: {other:?}"),
        }
    }
    let e = c.query("1/0;").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "ThingsDB error zero_div (-58): division or modulo by zero"
    );
    // Bytes cannot be JSON: a type error, as a node gives.
    let e = c.query("bytes;").format(Format::Json).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Type));
    let b = c.query("bytes;").await.unwrap();
    assert_eq!(b, rmpv::Value::Binary(vec![1, 2, 3]));
    // A collection that does not exist.
    let e = c.query("1;").scope("//nope").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup));
}

#[tokio::test]
async fn bad_credentials_are_auth_errors() {
    let (_node, http) = node().await;
    for auth in [Auth::password("admin", "wrong"), Auth::token("nope")] {
        let c = HttpClient::new(&http.api_url(), auth).unwrap();
        let e = c.query("1;").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Auth), "{e}");
    }
    let c = HttpClient::builder()
        .url(&http.api_url())
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        c.query("1;").await.unwrap_err().code(),
        Some(ErrorCode::Auth)
    );
}

#[tokio::test]
async fn a_custom_error_closes_the_connection_and_is_reported_at_once() {
    let (_node, http) = node().await;
    let c = client(&http);
    let t = Instant::now();
    let e = c.query("raise(err(-100, 'x'));").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(e.lost_reason(), Some(LostReason::ClosedByPeer), "{e}");
    assert!(e.to_string().contains("custom error"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    // The client goes on working.
    assert_eq!(c.query("1 + 1;").await.unwrap(), rmpv::Value::from(2));
}

#[tokio::test]
async fn keep_alive_and_concurrency() {
    let (_node, http) = node().await;
    let c = client(&http);
    for i in 0..20i64 {
        let v: i64 = c.query("x + 1;").var("x", &i).decode().await.unwrap();
        assert_eq!(v, i + 1);
    }
    let all = futures::future::join_all((0..32i64).map(|i| {
        let c = c.clone();
        async move { c.query("x * 2;").var("x", &i).decode::<i64>().await }
    }))
    .await;
    for (i, r) in all.into_iter().enumerate() {
        assert_eq!(r.unwrap(), 2 * i as i64);
    }
}

#[tokio::test]
async fn failover_on_connection_errors_and_503() {
    let (node_a, http_a) = node().await;
    let (_node_b, http_b) = node().await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let c = HttpClient::builder()
        .urls([dead.as_str(), &http_a.api_url(), &http_b.api_url()])
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .build()
        .unwrap();
    assert_eq!(c.query("1 + 1;").await.unwrap(), rmpv::Value::from(2));
    assert_eq!(c.current_url(), http_a.api_url());
    // Node a shuts down: it answers 503, and the next node takes over.
    http_a.set_status(NodeStatus::ShuttingDown);
    assert_eq!(c.query("2 + 2;").await.unwrap(), rmpv::Value::from(4));
    assert_eq!(c.current_url(), http_b.api_url());
    // Everyone gone: the last error.
    drop(http_b);
    drop(node_a);
    // (A request on a kept-alive connection the node closes at that very
    // moment fails as ConnectionLost: never resent. Let the pool see it.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = c
        .query("1;")
        .timeout(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
    // Nothing listens there any more: refused, with reqwest's error kept.
    assert_eq!(
        e.transport_kind(),
        Some(thingsdb_client::TransportErrorKind::Refused),
        "{e:?}"
    );
    assert!(std::error::Error::source(&e)
        .and_then(|t| t.source())
        .is_some_and(|s| s.is::<reqwest::Error>()));
}

#[tokio::test]
async fn a_silent_node_times_out() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let c = HttpClient::builder()
        .url(&url)
        .unwrap()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = c.query("1;").await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    keep.abort();
}

#[tokio::test]
async fn status_probes() {
    let (_node, http) = node().await;
    let p = StatusProbe::new(&http.status_url()).unwrap();
    assert_eq!(p.status().await.unwrap(), NodeState::Ready);
    assert!(p.ready().await.unwrap());
    assert!(p.healthy().await.unwrap());
    http.set_status(NodeStatus::Away);
    assert_eq!(p.status().await.unwrap(), NodeState::Away);
    assert!(p.ready().await.unwrap());
    http.set_status(NodeStatus::Other("SYNCHRONIZING".into()));
    assert_eq!(p.status().await.unwrap(), NodeState::Synchronizing);
    assert!(!p.ready().await.unwrap());
    http.set_status(NodeStatus::ShuttingDown);
    assert_eq!(p.status().await.unwrap(), NodeState::Unavailable);
    assert!(!p.ready().await.unwrap());
    assert!(p.healthy().await.unwrap());
    // The API port is not a status port.
    let wrong = StatusProbe::new(&http.api_url()).unwrap();
    assert!(wrong.status().await.is_err());
}

#[tokio::test]
async fn through_the_cors_proxy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_node, http) = node().await;
    let proxy = thingsdb_testkit::CorsProxy::start(http.api_addr().to_string())
        .await
        .unwrap();
    let c = HttpClient::new(&proxy.url(), Auth::password("admin", "pass")).unwrap();
    for _ in 0..3 {
        assert_eq!(c.query("6 * 7;").await.unwrap(), rmpv::Value::from(42));
    }
    let e = c.query("1/0;").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ZeroDiv));
    // The node's custom-error close comes through as a close.
    let e = c.query("raise(err(-100, 'x'));").await.unwrap_err();
    assert_eq!(e.lost_reason(), Some(LostReason::ClosedByPeer), "{e:?}");
    // A preflight is answered with the CORS headers; the node gives 405.
    let addr = proxy.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("OPTIONS /thingsdb HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://x\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    assert!(text.contains("Access-Control-Allow-Origin: *"), "{text}");
    assert!(
        text.contains("Access-Control-Allow-Headers: Authorization, Content-Type"),
        "{text}"
    );
}
