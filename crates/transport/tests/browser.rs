//! The browser transport in a real browser (headless Chromium through
//! wasm-bindgen-test), against a testkit node on 127.0.0.1 over WebSocket.
//!
//! `cargo xtask wasm` starts the node and builds these tests with its
//! address in `THINGSDB_WASM_WS`; without it they say so and skip.
#![cfg(target_arch = "wasm32")]

use std::collections::HashSet;
use std::time::Duration;

use bytes::BytesMut;
use thingsdb_protocol::{msgpack, request, ErrorCode, PackageType, Response};
use thingsdb_transport::{connect, ConnectOptions, Error, FrameReader, FrameWriter, Target};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn opts() -> ConnectOptions {
    ConnectOptions::default().with_connect_timeout(Duration::from_secs(30))
}

fn node() -> Option<Target> {
    match option_env!("THINGSDB_WASM_WS") {
        Some(ws) => Some(ws.parse().expect("THINGSDB_WASM_WS is a ws:// target")),
        None => {
            console_log!("skipped: THINGSDB_WASM_WS was not set at build time");
            None
        }
    }
}

async fn authed(target: &Target) -> (FrameWriter, FrameReader) {
    let conn = connect(target, &opts()).await.expect("connect");
    assert_eq!(conn.peer(), target.to_string());
    let (mut tx, mut rx) = conn.split();
    let mut out = BytesMut::new();
    request::encode_auth(&mut out, 0, "admin", "pass").unwrap();
    tx.send(out.freeze()).await.unwrap();
    let reply = rx.recv().await.unwrap().expect("an AUTH reply");
    assert_eq!(reply.package_type().unwrap(), PackageType::Ok);
    (tx, rx)
}

fn vars_a_b(a: i64, b: i64) -> Vec<u8> {
    let mut v = Vec::new();
    msgpack::write_map_len(&mut v, 2);
    msgpack::write_str(&mut v, "a");
    msgpack::write_int(&mut v, a);
    msgpack::write_str(&mut v, "b");
    msgpack::write_int(&mut v, b);
    v
}

#[wasm_bindgen_test]
async fn query_round_trip_with_vars() {
    let Some(target) = node() else { return };
    let (mut tx, mut rx) = authed(&target).await;
    let mut out = BytesMut::new();
    request::encode_query(&mut out, 7, "//stuff", "a * b;", Some(&vars_a_b(6, 7))).unwrap();
    tx.send(out.freeze()).await.unwrap();
    let reply = rx.recv().await.unwrap().expect("a reply");
    assert_eq!(reply.id, 7);
    // 42 as a positive fixint.
    assert_eq!(
        Response::decode(&reply).unwrap(),
        Response::Data(vec![42u8].into())
    );
    tx.close().await.unwrap();
    assert!(rx.recv().await.unwrap().is_none(), "closed after our close");
    assert!(matches!(tx.send(out_ping()).await, Err(Error::Closed)));
}

fn out_ping() -> bytes::Bytes {
    let mut out = BytesMut::new();
    request::encode_ping(&mut out, 1);
    out.freeze()
}

#[wasm_bindgen_test]
async fn error_reply_comes_through() {
    let Some(target) = node() else { return };
    let (mut tx, mut rx) = authed(&target).await;
    let mut out = BytesMut::new();
    request::encode_query(&mut out, 3, "//nope", "1;", None).unwrap();
    tx.send(out.freeze()).await.unwrap();
    let reply = rx.recv().await.unwrap().expect("a reply");
    match Response::decode(&reply).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Lookup, "{e:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn ten_thousand_pipelined_frames() {
    let Some(target) = node() else { return };
    let (mut tx, mut rx) = authed(&target).await;
    const N: u16 = 10_000;
    // Sent in batches of 500 (each one `send`, each package its own message).
    let mut sent = 0u16;
    while sent < N {
        let mut out = BytesMut::new();
        for id in sent..(sent + 500).min(N) {
            request::encode_query(
                &mut out,
                id,
                "//stuff",
                "a + b;",
                Some(&vars_a_b(id.into(), 1)),
            )
            .unwrap();
        }
        sent = (sent + 500).min(N);
        tx.send(out.freeze()).await.unwrap();
    }
    let mut seen = HashSet::new();
    for _ in 0..N {
        let f = rx.recv().await.unwrap().expect("a reply");
        let Response::Data(v) = Response::decode(&f).unwrap() else {
            panic!("not DATA for {}", f.id)
        };
        let got: i64 = rmpv::decode::read_value(&mut &v[..])
            .unwrap()
            .as_i64()
            .unwrap();
        assert_eq!(got, i64::from(f.id) + 1);
        assert!(seen.insert(f.id), "{} answered twice", f.id);
    }
    assert_eq!(seen.len(), usize::from(N));
}

#[wasm_bindgen_test]
async fn only_websocket_targets_in_a_browser() {
    for t in [
        "127.0.0.1:9200",
        "thingsdbs://localhost",
        "unix:/tmp/x.sock",
    ] {
        let target: Target = t.parse().unwrap();
        let e = connect(&target, &opts()).await.unwrap_err();
        assert!(matches!(e, Error::InvalidTarget { .. }), "{t}: {e}");
        assert!(e.to_string().contains("ws:// and wss://"), "{e}");
    }
}

#[wasm_bindgen_test]
async fn refused_connection_is_a_connect_error() {
    // A port the harness bound and let go of again.
    let Some(closed) = option_env!("THINGSDB_WASM_CLOSED") else {
        console_log!("skipped: THINGSDB_WASM_CLOSED was not set at build time");
        return;
    };
    let target: Target = closed.parse().unwrap();
    match connect(&target, &opts()).await {
        Err(Error::Connect { .. } | Error::ConnectTimeout { .. }) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// Prints how long opening a WebSocket, authenticating and getting the
/// first event (the ON_JOIN after joining the room `chat` of `//stuff`,
/// which the harness made) take from the page: medians of 20. Speed is not
/// asserted; the numbers are the figures of docs/benchmarks.md.
#[wasm_bindgen_test]
async fn figures_connect_auth_first_event() {
    let Some(target) = node() else { return };
    const N: usize = 20;
    let (mut open_ms, mut auth_ms, mut event_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..N {
        let t0 = js_sys::Date::now();
        let conn = connect(&target, &opts()).await.expect("connect");
        open_ms.push(js_sys::Date::now() - t0);
        let (mut tx, mut rx) = conn.split();
        let mut out = BytesMut::new();
        request::encode_auth(&mut out, 0, "admin", "pass").unwrap();
        tx.send(out.split().freeze()).await.unwrap();
        let reply = rx.recv().await.unwrap().expect("an AUTH reply");
        assert_eq!(reply.package_type().unwrap(), PackageType::Ok);
        auth_ms.push(js_sys::Date::now() - t0);
        request::encode_join(&mut out, 1, "//stuff", &["chat".to_string().into()]).unwrap();
        tx.send(out.freeze()).await.unwrap();
        loop {
            let f = rx.recv().await.unwrap().expect("JOIN reply and ON_JOIN");
            if f.package_type().unwrap() == PackageType::OnJoin {
                break;
            }
            assert_eq!(f.package_type().unwrap(), PackageType::Data, "JOIN reply");
        }
        event_ms.push(js_sys::Date::now() - t0);
        tx.close().await.unwrap();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    console_log!(
        "figures: {N} connections to {target}, medians from the start: WebSocket open {} ms, \
         authenticated {} ms, first event (ON_JOIN) {} ms",
        median(&mut open_ms),
        median(&mut auth_ms),
        median(&mut event_ms)
    );
}
