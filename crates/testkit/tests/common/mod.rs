//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rmpv::Value;
use thingsdb_protocol::{
    encode_value, request, Event, Frame, PackageType, Response, Room, RunArgs, EVENT_ID,
};
use thingsdb_testkit::{RawClient, TestNode};

/// A generous hang guard; tests never rely on it being tight.
pub const GUARD: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    Tcp,
    Ws,
    Unix,
}

pub const ALL: [T; 3] = [T::Tcp, T::Ws, T::Unix];

pub async fn client(node: &TestNode, t: T) -> RawClient {
    match t {
        T::Tcp => RawClient::tcp(node.tcp_addr()).await.unwrap(),
        T::Ws => RawClient::ws(&node.ws_url()).await.unwrap(),
        T::Unix => RawClient::unix(node.unix_path()).await.unwrap(),
    }
}

pub async fn authed(node: &TestNode, t: T) -> RawClient {
    let mut c = client(node, t).await;
    let r = c.auth("admin", "pass").await.unwrap();
    assert_eq!(r.package_type().unwrap(), PackageType::Ok, "{t:?}");
    c
}

pub fn ping(id: u16) -> Bytes {
    let mut b = BytesMut::new();
    request::encode_ping(&mut b, id);
    b.freeze()
}

pub fn auth(id: u16, user: &str, pass: &str) -> Bytes {
    let mut b = BytesMut::new();
    request::encode_auth(&mut b, id, user, pass).unwrap();
    b.freeze()
}

pub fn auth_token(id: u16, tok: &str) -> Bytes {
    let mut b = BytesMut::new();
    request::encode_auth_token(&mut b, id, tok).unwrap();
    b.freeze()
}

pub fn enc(v: &Value) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_value(&mut b, v);
    b.to_vec()
}

pub fn query(id: u16, scope: &str, code: &str, vars: Option<Value>) -> Bytes {
    let mut b = BytesMut::new();
    let vars = vars.map(|v| enc(&v));
    request::encode_query(&mut b, id, scope, code, vars.as_deref()).unwrap();
    b.freeze()
}

pub fn run_pos(id: u16, scope: &str, name: &str, args: Vec<Value>) -> Bytes {
    let mut b = BytesMut::new();
    let a = enc(&Value::Array(args));
    request::encode_run(&mut b, id, scope, name, RunArgs::Positional(&a)).unwrap();
    b.freeze()
}

pub fn run_named(id: u16, scope: &str, name: &str, args: Vec<(&str, Value)>) -> Bytes {
    let mut b = BytesMut::new();
    let m = Value::Map(args.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
    let a = enc(&m);
    request::encode_run(&mut b, id, scope, name, RunArgs::Named(&a)).unwrap();
    b.freeze()
}

/// A package of any type with a raw MessagePack payload.
pub fn raw_pkg(t: PackageType, id: u16, payload: &[u8]) -> Bytes {
    Frame::new(t, id, Bytes::copy_from_slice(payload)).to_bytes()
}

/// RUN with the arguments spread, as the public docs wrongly show.
pub fn run_spread(id: u16, scope: &str, name: &str, arg: Value) -> Bytes {
    let p = enc(&Value::Array(vec![scope.into(), name.into(), arg]));
    raw_pkg(PackageType::Run, id, &p)
}

pub fn join(id: u16, scope: &str, rooms: &[Room]) -> Bytes {
    let mut b = BytesMut::new();
    request::encode_join(&mut b, id, scope, rooms).unwrap();
    b.freeze()
}

pub fn leave(id: u16, scope: &str, rooms: &[Room]) -> Bytes {
    let mut b = BytesMut::new();
    request::encode_leave(&mut b, id, scope, rooms).unwrap();
    b.freeze()
}

pub fn emit(id: u16, scope: &str, room: &Room, event: &str, args: Vec<Value>, peer: bool) -> Bytes {
    let mut b = BytesMut::new();
    let a = enc(&Value::Array(args));
    if peer {
        request::encode_emit_peer(&mut b, id, scope, room, event, &a).unwrap();
    } else {
        request::encode_emit(&mut b, id, scope, room, event, &a).unwrap();
    }
    b.freeze()
}

pub fn value(f: &Frame) -> Value {
    match Response::decode(f).unwrap() {
        r @ Response::Data(_) => r.value().unwrap().unwrap(),
        other => panic!("expected DATA, got {other:?}"),
    }
}

pub fn error_code(f: &Frame) -> i64 {
    match Response::decode(f).unwrap() {
        Response::Error(e) => e.code.code(),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

pub fn error_msg(f: &Frame) -> String {
    match Response::decode(f).unwrap() {
        Response::Error(e) => e.message,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

/// The next frame, which must be an event.
pub async fn next_event(c: &mut RawClient) -> Event {
    let f = c
        .recv_timeout(GUARD)
        .await
        .unwrap()
        .expect("an event, not a close");
    assert_eq!(f.id, EVENT_ID);
    Event::decode(&f).unwrap()
}

/// Takes the events collected by `request` first, then reads more.
pub async fn take_event(c: &mut RawClient) -> Event {
    if !c.events.is_empty() {
        let f = c.events.remove(0);
        return Event::decode(&f).unwrap();
    }
    next_event(c).await
}

/// Reads until the peer closes; panics on a frame other than an event.
pub async fn expect_closed(c: &mut RawClient) {
    loop {
        match c.recv_timeout(GUARD).await {
            Ok(None) => return,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => panic!("not closed in time"),
            Err(_) => return, // a reset or a refused frame: closed too
            Ok(Some(f)) if f.id == EVENT_ID => continue,
            Ok(Some(f)) => panic!("expected a close, got {f:?}"),
        }
    }
}
