//! Response, event and request payload decoding.
//!
//! Input layout: byte 0 picks the package type (mostly known types, some
//! raw type bytes), the rest is the payload. Every decoder must return
//! without panicking; whatever decodes must encode again with this crate's
//! encoders and decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use thingsdb_protocol::request::{self, RunArgs};
use thingsdb_protocol::response;
use thingsdb_protocol::{
    decode_value, msgpack, Credentials, DecodedRunArgs, Event, Frame, PackageType, Request,
    Response, MAX_PAYLOAD,
};

fn reparse(b: BytesMut) -> Frame {
    Frame::parse(b.freeze(), MAX_PAYLOAD).expect("an encoded frame parses")
}

fn check_response(f: &Frame) {
    let Ok(r) = Response::decode(f) else { return };
    let mut b = BytesMut::new();
    match &r {
        Response::Pong => response::encode_pong(&mut b, f.id),
        Response::Ok => response::encode_ok(&mut b, f.id),
        Response::Data(d) => {
            assert!(msgpack::validate(d).is_ok());
            // rmpv refuses only nesting deeper than its limit.
            if let Err(e) = decode_value(d) {
                assert_eq!(
                    e,
                    thingsdb_protocol::Error::InvalidMsgpack("value nested too deeply")
                );
            }
            response::encode_data(&mut b, f.id, d).expect("DATA re-encodes");
        }
        Response::Error(e) => {
            response::encode_error(&mut b, f.id, e.code, &e.message).expect("ERROR re-encodes")
        }
    }
    assert_eq!(Response::decode(&reparse(b)).as_ref(), Ok(&r));
}

fn check_event(f: &Frame) {
    let Ok(e) = Event::decode(f) else { return };
    if let Event::Emit(em) = &e {
        let args = em.arg_values().expect("decoded args split");
        for a in args {
            assert!(msgpack::validate(&a).is_ok());
        }
    }
    let mut b = BytesMut::new();
    e.encode(&mut b).expect("a decoded event re-encodes");
    assert_eq!(Event::decode(&reparse(b)).as_ref(), Ok(&e));
}

fn check_request(f: &Frame) {
    let Ok(r) = Request::decode(f) else { return };
    let mut b = BytesMut::new();
    let id = f.id;
    match &r {
        Request::Ping => request::encode_ping(&mut b, id),
        Request::Auth(Credentials::Password { user, password }) => {
            request::encode_auth(&mut b, id, user, password).expect("re-encode")
        }
        Request::Auth(Credentials::Token(t)) => {
            request::encode_auth_token(&mut b, id, t).expect("re-encode")
        }
        Request::Query { scope, code, vars } => {
            request::encode_query(&mut b, id, scope, code, vars.as_deref()).expect("re-encode")
        }
        Request::Run {
            scope,
            procedure,
            args,
        } => {
            let a = match args {
                DecodedRunArgs::None => RunArgs::None,
                DecodedRunArgs::Positional(a) => RunArgs::Positional(a),
                DecodedRunArgs::Named(m) => RunArgs::Named(m),
            };
            request::encode_run(&mut b, id, scope, procedure, a).expect("re-encode")
        }
        Request::Join { scope, rooms } => {
            request::encode_join(&mut b, id, scope, rooms).expect("re-encode")
        }
        Request::Leave { scope, rooms } => {
            request::encode_leave(&mut b, id, scope, rooms).expect("re-encode")
        }
        Request::Emit {
            scope,
            room,
            event,
            args,
            peers_only,
        } => {
            let mut array = Vec::new();
            msgpack::write_array_len(&mut array, args.len() as u32);
            for a in args {
                array.extend_from_slice(a);
            }
            if *peers_only {
                request::encode_emit_peer(&mut b, id, scope, room, event, &array)
            } else {
                request::encode_emit(&mut b, id, scope, room, event, &array)
            }
            .expect("re-encode")
        }
        _ => return,
    }
    assert_eq!(Request::decode(&reparse(b)).as_ref(), Ok(&r));
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    // Half the selectors pick a known package type, half are raw type bytes
    // (unknown ones included).
    let type_byte = if sel < 0x80 {
        PackageType::ALL[usize::from(sel) % PackageType::ALL.len()].as_u8()
    } else {
        sel
    };
    let f = Frame {
        id: u16::from(sel) * 257,
        type_byte,
        payload: Bytes::copy_from_slice(payload),
    };
    check_response(&f);
    check_event(&f);
    check_request(&f);
    let _ = msgpack::validate(payload);
    let _ = decode_value(payload);
});
