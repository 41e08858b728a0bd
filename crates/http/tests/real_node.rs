//! The HTTP client against a real ThingsDB node's HTTP API and status
//! port.
//!
//! Runs when `THINGSDB_BIN` names a node binary and `THINGSDB_BIN_WS=1`
//! allows ports on every interface (a node binds its HTTP ports on all of
//! them: run inside a network namespace with only loopback, as
//! `cargo xtask real-node` does), or when `THINGSDB_TEST_ADDR` and
//! `THINGSDB_TEST_HTTP` (and `THINGSDB_TEST_STATUS`) name a running node.
//! Otherwise each test says it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use thingsdb_client::{Auth, Client, Error, ErrorCode, LostReason, ThingsdbError};
use thingsdb_http::{Format, HttpClient, NodeState, StatusProbe};
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};

async fn real() -> Option<RealNode> {
    let node = RealNode::from_env().await.unwrap()?;
    if node.http_api_url().is_none() {
        println!("{SKIP_MESSAGE} (and THINGSDB_BIN_WS=1 or THINGSDB_TEST_HTTP for the HTTP API)");
        return None;
    }
    Some(node)
}

macro_rules! real_or_skip {
    () => {
        match real().await {
            Some(r) => r,
            None => {
                println!("{SKIP_MESSAGE}");
                return;
            }
        }
    };
}

fn http(node: &RealNode) -> HttpClient {
    HttpClient::builder()
        .url(node.http_api_url().unwrap())
        .unwrap()
        .auth(Auth::password(node.user(), node.password()))
        .default_scope("//stuff")
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn socket(node: &RealNode) -> Client {
    Client::builder()
        .target(node.tcp_target().unwrap())
        .unwrap()
        .auth(Auth::password(node.user(), node.password()))
        .default_scope("//stuff")
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn queries_with_vars_scopes_and_formats() {
    let node = real_or_skip!();
    let c = http(&node);
    for format in [Format::MessagePack, Format::Json] {
        let v: i64 = c
            .query("a * b;")
            .var("a", &6)
            .var("b", &7)
            .format(format)
            .decode()
            .await
            .unwrap();
        assert_eq!(v, 42);
        #[derive(serde::Serialize)]
        struct Vars<'a> {
            name: &'a str,
        }
        let s: String = c
            .query("`hi {name}`;")
            .vars(&Vars { name: "Iris" })
            .format(format)
            .decode()
            .await
            .unwrap();
        assert_eq!(s, "hi Iris");
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            a: i64,
            b: Vec<String>,
        }
        let t: T = c
            .query("{a: 1, b: ['x', 'y']};")
            .format(format)
            .decode()
            .await
            .unwrap();
        assert_eq!(
            t,
            T {
                a: 1,
                b: vec!["x".into(), "y".into()]
            }
        );
    }
    // Every kind of scope travels as a path a node reads.
    let v: String = c
        .query("'thingsdb';")
        .scope("@thingsdb")
        .decode()
        .await
        .unwrap();
    assert_eq!(v, "thingsdb");
    let id: i64 = c
        .query("node_info().load().node_id;")
        .scope("@node")
        .decode()
        .await
        .unwrap();
    assert_eq!(id, 0);
    let id: i64 = c
        .query("node_info().load().node_id;")
        .scope("@node:0")
        .decode()
        .await
        .unwrap();
    assert_eq!(id, 0);
    let b = c.query("bytes('ab');").await.unwrap();
    assert_eq!(b, rmpv::Value::Binary(b"ab".to_vec()));
    // A result with bytes cannot be JSON: the node's type error.
    let e = c
        .query("bytes('ab');")
        .format(Format::Json)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Type), "{e}");
}

#[tokio::test]
async fn procedures_positional_and_named() {
    let node = real_or_skip!();
    let c = http(&node);
    let _ = c
        .query("new_procedure('http_add', |x, y| x + y);")
        .await
        .unwrap();
    for format in [Format::MessagePack, Format::Json] {
        let a: i64 = c
            .run("http_add")
            .arg(&40)
            .arg(&2)
            .format(format)
            .decode()
            .await
            .unwrap();
        let b: i64 = c
            .run("http_add")
            .named("x", &40)
            .named("y", &2)
            .format(format)
            .decode()
            .await
            .unwrap();
        let d: i64 = c
            .run("http_add")
            .args(&(40, 2))
            .format(format)
            .decode()
            .await
            .unwrap();
        assert_eq!((a, b, d), (42, 42, 42));
    }
    let e = c.run("no_such_procedure").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup));
    let e = c.run("http_add").scope("@node").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadData));
}

/// Each error class gives the very same error over HTTP as over a socket.
#[tokio::test]
async fn every_error_class_matches_the_socket_client() {
    let node = real_or_skip!();
    let c = http(&node);
    let s = socket(&node).await;
    let cases = [
        ("1/0;", ErrorCode::ZeroDiv),
        ("1 +;", ErrorCode::Syntax),
        ("nope;", ErrorCode::Lookup),
        ("abs();", ErrorCode::NumArguments),
        ("1 + 'a';", ErrorCode::Type),
        ("raise(value_err('v'));", ErrorCode::Value),
        ("9223372036854775807 + 1;", ErrorCode::Overflow),
        ("assert(false);", ErrorCode::Assert),
        ("raise(operation_err('op'));", ErrorCode::Operation),
        ("raise(cancelled_err('c'));", ErrorCode::Cancelled),
        ("raise(max_quota_err('q'));", ErrorCode::MaxQuota),
        ("raise(bad_data_err('b'));", ErrorCode::BadData),
        ("raise(forbidden_err('f'));", ErrorCode::Forbidden),
        ("raise(auth_err('a'));", ErrorCode::Auth),
        ("raise(node_err('n'));", ErrorCode::Node),
    ];
    // The node's error, also after resends: NODE_ERROR (-51) is resent by
    // both clients (it says "not now"), so a raised `node_err` comes back
    // after the last attempt.
    fn node_error(code: &str, r: Result<thingsdb_client::Value, Error>) -> ThingsdbError {
        match r {
            Err(Error::Thingsdb(t)) => t,
            Err(Error::Retried { last, .. }) => node_error(code, Err(*last)),
            other => panic!("{code}: {other:?}"),
        }
    }
    for (code, want) in cases {
        let over_http = node_error(code, c.query(code).await);
        let over_socket = node_error(code, s.query(code).await);
        assert_eq!(over_http.code, want, "{code}: {over_http}");
        assert_eq!(over_http, over_socket, "{code}");
    }
    let _ = s.close().await;
}

#[tokio::test]
async fn forbidden_for_a_user_without_rights() {
    let node = real_or_skip!();
    let c = http(&node);
    let _ = c
        .query("new_user('http_bob'); set_password('http_bob', 'pw'); grant('//stuff', 'http_bob', QUERY);")
        .scope("@thingsdb")
        .await
        .unwrap();
    let bob = HttpClient::new(
        node.http_api_url().unwrap(),
        Auth::password("http_bob", "pw"),
    )
    .unwrap();
    assert_eq!(
        bob.query("1;").scope("//stuff").await.unwrap(),
        rmpv::Value::from(1)
    );
    let e = bob.query("1;").scope("@thingsdb").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
}

#[tokio::test]
async fn auth_with_a_token_and_auth_failures() {
    let node = real_or_skip!();
    let c = http(&node);
    let token: String = c
        .query("new_token('admin');")
        .scope("@thingsdb")
        .decode()
        .await
        .unwrap();
    let t = HttpClient::new(node.http_api_url().unwrap(), Auth::token(&token)).unwrap();
    assert_eq!(t.query("1 + 1;").await.unwrap(), rmpv::Value::from(2));
    for auth in [
        Some(Auth::password("admin", "wrong")),
        Some(Auth::password("nobody", "pass")),
        Some(Auth::token("not-a-token")),
        None,
    ] {
        let mut b = HttpClient::builder()
            .url(node.http_api_url().unwrap())
            .unwrap();
        if let Some(a) = auth {
            b = b.auth(a);
        }
        let e = b.build().unwrap().query("1;").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Auth), "{e}");
    }
}

/// ThingsDB 1.9.2 closes the connection without an answer on a custom
/// error: a clear typed error at once, not a hang, and the client goes on.
#[tokio::test]
async fn a_custom_error_is_a_closed_connection_not_a_hang() {
    let node = real_or_skip!();
    let c = http(&node);
    for code in ["raise(err(-100, 'x'));", "raise(err(-127, 'y'));"] {
        let t = Instant::now();
        let e = c.query(code).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(e.lost_reason(), Some(LostReason::ClosedByPeer), "{e:?}");
        assert!(e.to_string().contains("custom error"), "{e}");
        assert_eq!(c.query("1 + 1;").await.unwrap(), rmpv::Value::from(2));
    }
    // The socket client gets the error itself.
    let s = socket(&node).await;
    let e = s.query("raise(err(-100, 'x'));").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some(-100));
    let _ = s.close().await;
}

#[tokio::test]
async fn many_requests_on_kept_alive_connections() {
    let node = real_or_skip!();
    let c = http(&node);
    for i in 0..50i64 {
        let v: i64 = c.query("x + 1;").var("x", &i).decode().await.unwrap();
        assert_eq!(v, i + 1);
    }
    let all = futures::future::join_all((0..16i64).map(|i| {
        let c = c.clone();
        async move { c.query("x * 2;").var("x", &i).decode::<i64>().await }
    }))
    .await;
    for (i, r) in all.into_iter().enumerate() {
        assert_eq!(r.unwrap(), 2 * i as i64);
    }
}

#[tokio::test]
async fn status_probes() {
    let node = real_or_skip!();
    let Some(url) = node.http_status_url() else {
        println!("{SKIP_MESSAGE} (no status port)");
        return;
    };
    let p = StatusProbe::new(url).unwrap();
    assert_eq!(p.status().await.unwrap(), NodeState::Ready);
    assert!(p.ready().await.unwrap());
    assert!(p.healthy().await.unwrap());
}

/// Two nodes behind one client: the first shuts down, requests go on at
/// the second without an error.
#[tokio::test]
async fn a_node_shut_down_behind_a_two_url_list() {
    let Some(bin) = std::env::var("THINGSDB_BIN")
        .ok()
        .filter(|_| std::env::var("THINGSDB_BIN_WS").is_ok_and(|v| v != "0"))
    else {
        println!("{SKIP_MESSAGE} (needs THINGSDB_BIN and THINGSDB_BIN_WS=1)");
        return;
    };
    let a = RealNode::start(Path::new(&bin), true).await.unwrap();
    let b = RealNode::start(Path::new(&bin), true).await.unwrap();
    let c = HttpClient::builder()
        .urls([a.http_api_url().unwrap(), b.http_api_url().unwrap()])
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let id = "node_info().load().node_name;";
    let _: String = c.query(id).scope("@node").decode().await.unwrap();
    assert_eq!(c.current_url(), a.http_api_url().unwrap());
    a.terminate().unwrap();
    // Requests all along the shutdown: each answered (by a, or by b once a
    // refuses or is gone), none lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lost = 0;
    while c.current_url() != b.http_api_url().unwrap() {
        assert!(Instant::now() < deadline, "the client never moved to b");
        match c.query("1 + 1;").await {
            Ok(v) => assert_eq!(v, rmpv::Value::from(2)),
            // A request on a kept-alive connection the node closes at that
            // very moment: reported, never resent.
            Err(e) if e.is_connection_lost() => lost += 1,
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lost <= 1, "{lost} requests lost");
    for _ in 0..10 {
        assert_eq!(c.query("1 + 1;").await.unwrap(), rmpv::Value::from(2));
    }
    assert_eq!(c.current_url(), b.http_api_url().unwrap());
}
