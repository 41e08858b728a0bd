//! Every test vector of protocol.md section 7, byte for byte both ways:
//! our encoders produce exactly the listed bytes, and decoding the listed
//! bytes gives the right fields.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::request::{self, RunArgs};
use thingsdb_protocol::response;
use thingsdb_protocol::{
    msgpack, Credentials, DecodedRunArgs, Decoder, EmitEvent, ErrorCode, ErrorReply, Event,
    EventRoom, Frame, Header, NodeStatus, PackageType, Request, Response, Room, EVENT_ID,
    MAX_PAYLOAD,
};

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses a vector as one whole package, and checks that the stream
/// decoder, fed one byte at a time, cuts out the same frame.
fn frame(s: &str) -> Frame {
    let wire = unhex(s);
    let f = Frame::parse(Bytes::from(wire.clone()), MAX_PAYLOAD).unwrap();
    assert_eq!(f.wire_len(), wire.len(), "vector {s} has trailing bytes");
    assert_eq!(hex(&f.to_bytes()), s, "re-encoding the frame");

    let mut d = Decoder::new();
    for (i, b) in wire.iter().enumerate() {
        assert_eq!(d.next_frame().unwrap(), None, "frame out early at {i}");
        d.feed(&[*b]);
    }
    assert_eq!(d.next_frame().unwrap().as_ref(), Some(&f));
    d.finish().unwrap();
    f
}

fn check_header(f: &Frame, t: PackageType, id: u16) {
    assert_eq!(f.package_type().unwrap(), t);
    assert_eq!(f.id, id);
    let h = f.header().unwrap();
    assert_eq!(h, Header::new(t, id, f.payload.len() as u32));
}

fn request(s: &str, t: PackageType, id: u16) -> Request {
    let f = frame(s);
    check_header(&f, t, id);
    Request::decode(&f).unwrap()
}

fn response(s: &str, t: PackageType, id: u16) -> Response {
    let f = frame(s);
    check_header(&f, t, id);
    Response::decode(&f).unwrap()
}

fn event(s: &str, t: PackageType) -> Event {
    let f = frame(s);
    check_header(&f, t, EVENT_ID);
    Event::decode(&f).unwrap()
}

fn encoded(f: impl FnOnce(&mut BytesMut)) -> String {
    let mut b = BytesMut::new();
    f(&mut b);
    hex(&b)
}

/// `[arg, ...]` of strings as one encoded MessagePack array.
fn str_array(items: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    msgpack::write_array_len(&mut v, items.len() as u32);
    for s in items {
        msgpack::write_str(&mut v, s);
    }
    v
}

const PING: &str = "00000000000020df";
const PONG: &str = "00000000000010ef";
const OK: &str = "00000000000011ee";
const AUTH: &str = "0c000000000021de92a561646d696ea470617373";
const AUTH_TOKEN: &str = "17000000000021deb6527a44466c736f756351664471727772664747457463";
const QUERY: &str = "0b000000000022dd92a24074a631202b20313b";
const QUERY_VARS: &str = "17000000070022dd93a72f2f7374756666a661202a20623b82a16106a16207";
const DATA_2: &str = "01000000000012ed02";
const RUN_POS: &str = "0e000000000025da93a24074a76164645f6f6e659129";
const RUN_NAMED: &str = "100000002c0125da93a24074a76164645f6f6e6581a17829";
const JOIN_IDS: &str = "0d000000000026d993a72f2f737475666611cd01c8";
const JOIN_NAME: &str = "0e000000010026d992a72f2f7374756666a463686174";
const DATA_JOIN: &str = "03000000000012ed9211c0";
const LEAVE: &str = "0d000000000027d893a72f2f737475666611cd01c8";
const EMIT: &str = "1d000000000028d794a72f2f737475666611ab6e65772d6d657373616765a648656c6c6f21";
const EMIT_PEER: &str =
    "1d000000000029d694a72f2f737475666611ab6e65772d6d657373616765a648656c6c6f21";
const ERROR: &str = "38000000000013ec82aa6572726f725f636f6465d0c8a96572726f725f6d7367bf636f6e6e656374696f6e206973206e6f742061757468656e74696361746564";
const ON_JOIN: &str = "05000000ffff06f981a2696411";
const ON_LEAVE: &str = "05000000ffff07f881a2696411";
const ON_EMIT: &str =
    "24000000ffff08f783a2696411a56576656e74ab6e65772d6d657373616765a46172677391a648656c6c6f21";
const ON_DELETE: &str = "05000000ffff09f681a2696411";
const NODE_STATUS: &str = "1a000000ffff00ff82a2696400a6737461747573ad5348555454494e475f444f574e";
const WARN: &str = "2d000000ffff05fa82a97761726e5f636f646502a87761726e5f6d7367b7546573742e2e2c206f6e652c2074776f2c207468726565";

// ------------------------------------------------------------- requests

#[test]
fn ping_request() {
    assert_eq!(encoded(|b| request::encode_ping(b, 0)), PING);
    assert_eq!(request(PING, PackageType::Ping, 0), Request::Ping);
}

#[test]
fn auth_password() {
    assert_eq!(
        encoded(|b| request::encode_auth(b, 0, "admin", "pass").unwrap()),
        AUTH
    );
    assert_eq!(
        request(AUTH, PackageType::Auth, 0),
        Request::Auth(Credentials::Password {
            user: "admin".into(),
            password: "pass".into()
        })
    );
}

#[test]
fn auth_token() {
    assert_eq!(
        encoded(|b| request::encode_auth_token(b, 0, "RzDFlsoucQfDqrwrfGGEtc").unwrap()),
        AUTH_TOKEN
    );
    assert_eq!(
        request(AUTH_TOKEN, PackageType::Auth, 0),
        Request::Auth(Credentials::Token("RzDFlsoucQfDqrwrfGGEtc".into()))
    );
}

#[test]
fn query_without_vars() {
    assert_eq!(
        encoded(|b| request::encode_query(b, 0, "@t", "1 + 1;", None).unwrap()),
        QUERY
    );
    assert_eq!(
        request(QUERY, PackageType::Query, 0),
        Request::Query {
            scope: "@t".into(),
            code: "1 + 1;".into(),
            vars: None
        }
    );
}

#[test]
fn query_with_vars() {
    let vars = unhex("82a16106a16207");
    assert_eq!(
        encoded(|b| request::encode_query(b, 7, "//stuff", "a * b;", Some(&vars)).unwrap()),
        QUERY_VARS
    );
    // The same vars built with the writer.
    let mut built = Vec::new();
    msgpack::write_map_len(&mut built, 2);
    msgpack::write_str(&mut built, "a");
    msgpack::write_int(&mut built, 6);
    msgpack::write_str(&mut built, "b");
    msgpack::write_int(&mut built, 7);
    assert_eq!(built, vars);

    let Request::Query { scope, code, vars } = request(QUERY_VARS, PackageType::Query, 7) else {
        panic!("not a query");
    };
    assert_eq!(scope, "//stuff");
    assert_eq!(code, "a * b;");
    let vars = thingsdb_protocol::decode_value(&vars.unwrap()).unwrap();
    assert_eq!(
        vars,
        rmpv::Value::Map(vec![
            (rmpv::Value::from("a"), rmpv::Value::from(6)),
            (rmpv::Value::from("b"), rmpv::Value::from(7)),
        ])
    );
}

#[test]
fn run_positional() {
    assert_eq!(
        encoded(
            |b| request::encode_run(b, 0, "@t", "add_one", RunArgs::Positional(&[0x91, 41]))
                .unwrap()
        ),
        RUN_POS
    );
    assert_eq!(
        request(RUN_POS, PackageType::Run, 0),
        Request::Run {
            scope: "@t".into(),
            procedure: "add_one".into(),
            args: DecodedRunArgs::Positional(Bytes::from_static(&[0x91, 41]))
        }
    );
}

#[test]
fn run_named() {
    let args = unhex("81a17829");
    assert_eq!(
        encoded(|b| request::encode_run(b, 300, "@t", "add_one", RunArgs::Named(&args)).unwrap()),
        RUN_NAMED
    );
    assert_eq!(
        request(RUN_NAMED, PackageType::Run, 300),
        Request::Run {
            scope: "@t".into(),
            procedure: "add_one".into(),
            args: DecodedRunArgs::Named(Bytes::from(args))
        }
    );
}

#[test]
fn join_by_ids() {
    let rooms = [Room::Id(17), Room::Id(456)];
    assert_eq!(
        encoded(|b| request::encode_join(b, 0, "//stuff", &rooms).unwrap()),
        JOIN_IDS
    );
    assert_eq!(
        request(JOIN_IDS, PackageType::Join, 0),
        Request::Join {
            scope: "//stuff".into(),
            rooms: rooms.to_vec()
        }
    );
}

#[test]
fn join_by_name() {
    let rooms = [Room::from("chat")];
    assert_eq!(
        encoded(|b| request::encode_join(b, 1, "//stuff", &rooms).unwrap()),
        JOIN_NAME
    );
    assert_eq!(
        request(JOIN_NAME, PackageType::Join, 1),
        Request::Join {
            scope: "//stuff".into(),
            rooms: rooms.to_vec()
        }
    );
}

#[test]
fn leave_by_ids() {
    let rooms = [Room::Id(17), Room::Id(456)];
    assert_eq!(
        encoded(|b| request::encode_leave(b, 0, "//stuff", &rooms).unwrap()),
        LEAVE
    );
    // The corrected check byte (0xd8, not the docs' 0xd9).
    assert_eq!(&unhex(LEAVE)[6..8], &[39, 0xd8]);
    assert_eq!(
        request(LEAVE, PackageType::Leave, 0),
        Request::Leave {
            scope: "//stuff".into(),
            rooms: rooms.to_vec()
        }
    );
}

fn check_emit(req: Request, peers_only: bool) {
    assert_eq!(
        req,
        Request::Emit {
            scope: "//stuff".into(),
            room: Room::Id(17),
            event: "new-message".into(),
            args: vec![Bytes::from(unhex("a648656c6c6f21"))],
            peers_only,
        }
    );
}

#[test]
fn emit() {
    let args = str_array(&["Hello!"]);
    assert_eq!(
        encoded(
            |b| request::encode_emit(b, 0, "//stuff", &Room::Id(17), "new-message", &args).unwrap()
        ),
        EMIT
    );
    check_emit(request(EMIT, PackageType::Emit, 0), false);
}

#[test]
fn emit_peer() {
    let args = str_array(&["Hello!"]);
    assert_eq!(
        encoded(|b| request::encode_emit_peer(
            b,
            0,
            "//stuff",
            &Room::Id(17),
            "new-message",
            &args
        )
        .unwrap()),
        EMIT_PEER
    );
    check_emit(request(EMIT_PEER, PackageType::EmitPeer, 0), true);
}

// ------------------------------------------------------------ responses

#[test]
fn pong_response() {
    assert_eq!(encoded(|b| response::encode_pong(b, 0)), PONG);
    assert_eq!(response(PONG, PackageType::Pong, 0), Response::Pong);
}

#[test]
fn ok_response() {
    assert_eq!(encoded(|b| response::encode_ok(b, 0)), OK);
    assert_eq!(response(OK, PackageType::Ok, 0), Response::Ok);
}

#[test]
fn data_two() {
    assert_eq!(
        encoded(|b| response::encode_data(b, 0, &[0x02]).unwrap()),
        DATA_2
    );
    let r = response(DATA_2, PackageType::Data, 0);
    assert_eq!(r, Response::Data(Bytes::from_static(&[0x02])));
    assert_eq!(r.value().unwrap().unwrap(), rmpv::Value::from(2));
}

#[test]
fn data_join_reply() {
    let mut v = Vec::new();
    msgpack::write_array_len(&mut v, 2);
    msgpack::write_uint(&mut v, 17);
    msgpack::write_nil(&mut v);
    assert_eq!(
        encoded(|b| response::encode_data(b, 0, &v).unwrap()),
        DATA_JOIN
    );
    let r = response(DATA_JOIN, PackageType::Data, 0);
    assert_eq!(
        r.value().unwrap().unwrap(),
        rmpv::Value::Array(vec![rmpv::Value::from(17), rmpv::Value::Nil])
    );
}

#[test]
fn error_not_authenticated() {
    assert_eq!(
        encoded(|b| response::encode_error(
            b,
            0,
            ErrorCode::Auth,
            "connection is not authenticated"
        )
        .unwrap()),
        ERROR
    );
    let r = response(ERROR, PackageType::Error, 0);
    let Response::Error(e) = r else {
        panic!("not an error: {r:?}")
    };
    assert_eq!(e.code, ErrorCode::Auth);
    assert_eq!(e.code.code(), -56);
    assert_eq!(e.message, "connection is not authenticated");
    assert_eq!(
        e,
        ErrorReply::new(ErrorCode::from_code(-56), "connection is not authenticated")
    );
}

// --------------------------------------------------------------- events

fn room(id: u64) -> EventRoom {
    EventRoom { scope: None, id }
}

fn hello_emit(scope: Option<&str>) -> Event {
    Event::Emit(EmitEvent {
        scope: scope.map(Into::into),
        id: 17,
        event: "new-message".into(),
        args: Bytes::from(str_array(&["Hello!"])),
    })
}

fn encode_event(e: &Event) -> String {
    encoded(|b| e.encode(b).unwrap())
}

#[test]
fn on_join() {
    let e = Event::Join(room(17));
    assert_eq!(encode_event(&e), ON_JOIN);
    assert_eq!(event(ON_JOIN, PackageType::OnJoin), e);
}

#[test]
fn on_leave() {
    let e = Event::Leave(room(17));
    assert_eq!(encode_event(&e), ON_LEAVE);
    // The corrected check byte (0xf8, not the docs' 0xf9).
    assert_eq!(&unhex(ON_LEAVE)[6..8], &[7, 0xf8]);
    assert_eq!(event(ON_LEAVE, PackageType::OnLeave), e);
}

#[test]
fn on_emit() {
    let e = hello_emit(None);
    assert_eq!(encode_event(&e), ON_EMIT);
    let got = event(ON_EMIT, PackageType::OnEmit);
    assert_eq!(got, e);
    let Event::Emit(em) = got else { unreachable!() };
    assert_eq!(
        em.arg_values().unwrap(),
        vec![Bytes::from(unhex("a648656c6c6f21"))]
    );
    assert_eq!(em.arg_list().unwrap(), vec![rmpv::Value::from("Hello!")]);
}

#[test]
fn on_delete() {
    let e = Event::Delete(room(17));
    assert_eq!(encode_event(&e), ON_DELETE);
    assert_eq!(event(ON_DELETE, PackageType::OnDelete), e);
}

#[test]
fn node_status() {
    let e = Event::NodeStatus {
        id: 0,
        status: NodeStatus::ShuttingDown,
    };
    assert_eq!(encode_event(&e), NODE_STATUS);
    assert_eq!(event(NODE_STATUS, PackageType::NodeStatus), e);
}

#[test]
fn warn() {
    let e = Event::Warn {
        code: 2,
        message: "Test.., one, two, three".into(),
    };
    assert_eq!(encode_event(&e), WARN);
    assert_eq!(event(WARN, PackageType::Warn), e);
}

// -------------------------------------- events as a node really sends them

/// A map payload from key/value pairs, each value already encoded.
fn map_payload(pairs: &[(&str, Vec<u8>)]) -> Bytes {
    let mut v = Vec::new();
    msgpack::write_map_len(&mut v, pairs.len() as u32);
    for (k, val) in pairs {
        msgpack::write_str(&mut v, k);
        v.extend_from_slice(val);
    }
    Bytes::from(v)
}

fn enc_str(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    msgpack::write_str(&mut v, s);
    v
}

fn enc_int(i: i64) -> Vec<u8> {
    let mut v = Vec::new();
    msgpack::write_int(&mut v, i);
    v
}

/// Every permutation of `items` (small inputs only).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

const SCOPE: &str = "@collection:stuff";

/// Decodes `t` events built from `pairs` in every key order, with and
/// without an extra unknown key, and checks each against `want`.
fn every_order(t: PackageType, pairs: &[(&str, Vec<u8>)], want: &Event) {
    let mut with_extra = pairs.to_vec();
    with_extra.push(("future_key", vec![0x92, 0xc3, 0x80]));
    for set in [pairs.to_vec(), with_extra] {
        let orders = permutations(&set);
        assert!(!orders.is_empty());
        for order in orders {
            let f = Frame::new(t, EVENT_ID, map_payload(&order));
            let got = Event::decode(&f).unwrap();
            assert_eq!(
                &got,
                want,
                "keys {:?}",
                order.iter().map(|p| p.0).collect::<Vec<_>>()
            );
            // The node-side encoder writes `scope` too, and decodes back.
            let mut b = BytesMut::new();
            want.encode(&mut b).unwrap();
            let back = Frame::parse(b.freeze(), MAX_PAYLOAD).unwrap();
            assert_eq!(&Event::decode(&back).unwrap(), want);
        }
    }
}

#[test]
fn room_events_with_scope_in_any_order() {
    let pairs = [("scope", enc_str(SCOPE)), ("id", enc_int(17))];
    let r = EventRoom {
        scope: Some(SCOPE.into()),
        id: 17,
    };
    every_order(PackageType::OnJoin, &pairs, &Event::Join(r.clone()));
    every_order(PackageType::OnLeave, &pairs, &Event::Leave(r.clone()));
    every_order(PackageType::OnDelete, &pairs, &Event::Delete(r));
}

#[test]
fn on_emit_with_scope_in_any_order() {
    let pairs = [
        ("id", enc_int(17)),
        ("event", enc_str("new-message")),
        ("args", str_array(&["Hello!"])),
        ("scope", enc_str(SCOPE)),
    ];
    every_order(PackageType::OnEmit, &pairs, &hello_emit(Some(SCOPE)));
}

#[test]
fn node_status_and_warn_in_any_order() {
    every_order(
        PackageType::NodeStatus,
        &[("status", enc_str("SHUTTING_DOWN")), ("id", enc_int(0))],
        &Event::NodeStatus {
            id: 0,
            status: NodeStatus::ShuttingDown,
        },
    );
    every_order(
        PackageType::NodeStatus,
        &[("status", enc_str("SYNCHRONIZING")), ("id", enc_int(3))],
        &Event::NodeStatus {
            id: 3,
            status: NodeStatus::Other("SYNCHRONIZING".into()),
        },
    );
    every_order(
        PackageType::Warn,
        &[
            ("warn_msg", enc_str("Test.., one, two, three")),
            ("warn_code", enc_int(2)),
        ],
        &Event::Warn {
            code: 2,
            message: "Test.., one, two, three".into(),
        },
    );
}

#[test]
fn error_reply_in_any_order_with_extra_keys() {
    let pairs = [
        ("error_msg", enc_str("connection is not authenticated")),
        ("error_code", enc_int(-56)),
        ("extra", enc_str("ignored")),
    ];
    for order in permutations(&pairs) {
        let f = Frame::new(PackageType::Error, 0, map_payload(&order));
        assert_eq!(
            Response::decode(&f).unwrap(),
            Response::Error(ErrorReply::new(
                ErrorCode::Auth,
                "connection is not authenticated"
            ))
        );
    }
}

/// The whole section 7 as one stream: every vector back to back, cut at
/// every possible point, decodes to the same frames.
#[test]
fn all_vectors_as_one_stream() {
    let all = [
        PING,
        PONG,
        OK,
        AUTH,
        AUTH_TOKEN,
        QUERY,
        QUERY_VARS,
        DATA_2,
        RUN_POS,
        RUN_NAMED,
        JOIN_IDS,
        JOIN_NAME,
        DATA_JOIN,
        LEAVE,
        EMIT,
        EMIT_PEER,
        ERROR,
        ON_JOIN,
        ON_LEAVE,
        ON_EMIT,
        ON_DELETE,
        NODE_STATUS,
        WARN,
    ];
    let frames: Vec<Frame> = all.iter().map(|s| frame(s)).collect();
    let wire: Vec<u8> = all.iter().flat_map(|s| unhex(s)).collect();
    for cut in 0..=wire.len() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.feed_bytes(Bytes::copy_from_slice(&wire[..cut]));
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
        d.feed(&wire[cut..]);
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
        d.finish().unwrap();
        assert_eq!(out, frames, "cut at {cut}");
    }
}
