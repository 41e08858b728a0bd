//! Malformed input: every kind of bad bytes gives its own typed error,
//! never a panic and never a silently wrong value.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{
    decode_frame, decode_value, msgpack, Decoder, Error, Event, Frame, Header, PackageType,
    Request, Response, EVENT_ID, HEADER_LEN, MAX_PAYLOAD,
};

fn header(t: u8, check: u8, id: u16, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_le_bytes();
    let i = id.to_le_bytes();
    [l[0], l[1], l[2], l[3], i[0], i[1], t, check]
}

/// Runs `wire` through every decoding entry point that sees a stream or a
/// message, and returns the error each gives (they must all agree).
fn stream_error(wire: &[u8], max: u32) -> Error {
    // The copying decoder, whole.
    let mut d = Decoder::with_max_payload(max);
    d.feed(wire);
    let e = d.next_frame().unwrap_err();
    // Sticky: asked again, and at the end of the stream, the same error.
    assert_eq!(d.next_frame().unwrap_err(), e);
    assert_eq!(d.finish().unwrap_err(), e);

    // The zero-copy decoder.
    let mut d = Decoder::with_max_payload(max);
    d.feed_bytes(Bytes::copy_from_slice(wire));
    assert_eq!(d.next_frame().unwrap_err(), e);

    // One byte at a time: the error comes as soon as the header is whole.
    let mut d = Decoder::with_max_payload(max);
    for (i, b) in wire.iter().enumerate() {
        d.feed(&[*b]);
        let r = d.next_frame();
        if i + 1 < HEADER_LEN {
            assert_eq!(r, Ok(None), "error before the header was whole");
        } else {
            assert_eq!(r.unwrap_err(), e);
            break;
        }
    }

    // The free function over a BytesMut.
    let mut src = BytesMut::from(wire);
    assert_eq!(decode_frame(&mut src, max).unwrap_err(), e);

    // One WebSocket message.
    assert_eq!(
        Frame::parse(Bytes::copy_from_slice(wire), max).unwrap_err(),
        e
    );
    e
}

// ------------------------------------------------------------ bad check byte

#[test]
fn bad_check_byte() {
    // The public docs' wrong check byte for LEAVE.
    let mut wire = header(39, 0xd9, 0, 0).to_vec();
    assert_eq!(
        stream_error(&wire, MAX_PAYLOAD),
        Error::BadCheckByte {
            package_type: 39,
            check: 0xd9
        }
    );
    // ... and for ON_LEAVE, with a payload behind it.
    wire = header(7, 0xf9, EVENT_ID, 5).to_vec();
    wire.extend_from_slice(&[0x81, 0xa2, b'i', b'd', 0x11]);
    assert_eq!(
        stream_error(&wire, MAX_PAYLOAD),
        Error::BadCheckByte {
            package_type: 7,
            check: 0xf9
        }
    );
    // A zero check byte, and an unknown type with a wrong check byte.
    assert_eq!(
        Header::decode(&header(32, 0, 0, 0), MAX_PAYLOAD),
        Err(Error::BadCheckByte {
            package_type: 32,
            check: 0
        })
    );
    assert_eq!(
        stream_error(&header(200, 200, 1, 0), MAX_PAYLOAD),
        Error::BadCheckByte {
            package_type: 200,
            check: 200
        }
    );
}

#[test]
fn bad_check_byte_after_good_frames() {
    let mut wire = Vec::new();
    wire.extend_from_slice(&header(16, 0xef, 1, 0));
    wire.extend_from_slice(&header(18, 0xed, 2, 1));
    wire.push(0x2a);
    wire.extend_from_slice(&header(17, 0xee ^ 1, 3, 0));
    let mut d = Decoder::new();
    d.feed(&wire);
    assert_eq!(d.next_frame().unwrap().unwrap().id, 1);
    assert_eq!(d.next_frame().unwrap().unwrap().id, 2);
    assert_eq!(
        d.next_frame(),
        Err(Error::BadCheckByte {
            package_type: 17,
            check: 0xef
        })
    );
}

// ---------------------------------------------------------- oversized length

#[test]
fn oversized_length() {
    // Over the node's own limit of 1 GiB.
    assert_eq!(
        stream_error(&header(18, 0xed, 0, MAX_PAYLOAD + 1), MAX_PAYLOAD),
        Error::PayloadTooLarge {
            len: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        }
    );
    assert_eq!(
        stream_error(&header(18, 0xed, 0, u32::MAX), MAX_PAYLOAD),
        Error::PayloadTooLarge {
            len: u32::MAX,
            max: MAX_PAYLOAD
        }
    );
    // Over a client's configured limit, by one byte; the limit itself is fine.
    let mut at_limit = header(18, 0xed, 0, 1024).to_vec();
    at_limit.extend(std::iter::repeat_n(0xc0, 1024));
    let mut d = Decoder::with_max_payload(1024);
    assert_eq!(d.max_payload(), 1024);
    d.feed(&at_limit);
    assert_eq!(d.next_frame().unwrap().unwrap().payload.len(), 1024);
    assert_eq!(
        stream_error(&header(18, 0xed, 0, 1025), 1024),
        Error::PayloadTooLarge {
            len: 1025,
            max: 1024
        }
    );
    // A zero limit refuses any payload, but not an empty package.
    assert!(Frame::parse(Bytes::copy_from_slice(&header(32, 0xdf, 0, 0)), 0).is_ok());
    assert_eq!(
        stream_error(&header(18, 0xed, 0, 1), 0),
        Error::PayloadTooLarge { len: 1, max: 0 }
    );
}

// ---------------------------------------------------------- truncated header

#[test]
fn truncated_header() {
    let full = header(32, 0xdf, 0, 0);
    for n in 0..HEADER_LEN {
        let want = Error::Truncated {
            needed: HEADER_LEN,
            available: n,
        };
        assert_eq!(
            Header::decode_prefix(&full[..n], MAX_PAYLOAD),
            Err(want.clone())
        );
        assert_eq!(
            Frame::parse(Bytes::copy_from_slice(&full[..n]), MAX_PAYLOAD),
            Err(want.clone())
        );
        // A stream waits for more, and says what is missing at its end.
        let mut d = Decoder::new();
        d.feed(&full[..n]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), if n == 0 { Ok(()) } else { Err(want.clone()) });
        let mut d = Decoder::new();
        d.feed_bytes(Bytes::copy_from_slice(&full[..n]));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), n);
        assert_eq!(d.finish(), if n == 0 { Ok(()) } else { Err(want) });
        let mut src = BytesMut::from(&full[..n]);
        assert_eq!(decode_frame(&mut src, MAX_PAYLOAD), Ok(None));
        assert_eq!(src.len(), n, "nothing consumed");
    }
}

// --------------------------------------------------------- truncated payload

#[test]
fn truncated_payload() {
    let mut wire = header(18, 0xed, 9, 10).to_vec();
    wire.extend_from_slice(&[0xa9, b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', b'9']);
    for n in HEADER_LEN..wire.len() {
        let want = Error::Truncated {
            needed: HEADER_LEN + 10,
            available: n,
        };
        assert_eq!(
            Frame::parse(Bytes::copy_from_slice(&wire[..n]), MAX_PAYLOAD),
            Err(want.clone())
        );
        for zero_copy in [false, true] {
            let mut d = Decoder::new();
            if zero_copy {
                d.feed_bytes(Bytes::copy_from_slice(&wire[..n]));
            } else {
                d.feed(&wire[..n]);
            }
            assert_eq!(d.next_frame(), Ok(None));
            assert_eq!(d.finish(), Err(want.clone()));
        }
    }
    // Whole, it is one frame, and the stream ends cleanly.
    let mut d = Decoder::new();
    d.feed(&wire);
    assert_eq!(d.next_frame().unwrap().unwrap().id, 9);
    assert_eq!(d.finish(), Ok(()));
}

/// A frame whose header claims more than the payload's MessagePack value
/// needs cannot be checked by the stream decoder (it cannot know), but the
/// payload decoders refuse the extra bytes.
#[test]
fn payload_with_trailing_bytes() {
    let f = Frame::new(PackageType::Data, 0, Bytes::from_static(&[0x01, 0x02]));
    assert!(matches!(
        Response::decode(&f),
        Err(Error::InvalidMsgpack(_))
    ));
    let f = Frame::new(
        PackageType::OnJoin,
        EVENT_ID,
        Bytes::from_static(&[0x81, 0xa2, b'i', b'd', 0x11, 0x00]),
    );
    assert!(matches!(Event::decode(&f), Err(Error::InvalidMsgpack(_))));
    let f = Frame::new(
        PackageType::Query,
        0,
        Bytes::from_static(&[0x92, 0xa1, b'a', 0xa1, b'b', 0xc0]),
    );
    assert!(matches!(Request::decode(&f), Err(Error::InvalidMsgpack(_))));
}

// ------------------------------------------------ invalid MessagePack payloads

/// An ERROR payload `{error_code: -56, error_msg: "no"}` to damage.
fn error_payload() -> Vec<u8> {
    let mut v = Vec::new();
    msgpack::write_map_len(&mut v, 2);
    msgpack::write_str(&mut v, "error_code");
    msgpack::write_int(&mut v, -56);
    msgpack::write_str(&mut v, "error_msg");
    msgpack::write_str(&mut v, "no");
    v
}

fn decode_error(payload: &[u8]) -> Result<Response, Error> {
    Response::decode(&Frame::new(
        PackageType::Error,
        1,
        Bytes::copy_from_slice(payload),
    ))
}

fn is_invalid_msgpack(r: Result<impl core::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::InvalidMsgpack(_)))
}

#[test]
fn invalid_msgpack_in_error_payload() {
    let good = error_payload();
    assert!(decode_error(&good).is_ok());

    // Cut anywhere: an empty payload, a map header with nothing behind it,
    // a key cut short, the int8 code without its byte, the message cut.
    for n in 0..good.len() {
        let r = decode_error(&good[..n]);
        assert!(is_invalid_msgpack(r.clone()), "cut at {n}: {r:?}");
    }
    // The reserved marker 0xc1, where the map, a key or a value belongs.
    assert!(is_invalid_msgpack(decode_error(&[0xc1])));
    assert!(is_invalid_msgpack(decode_error(&[0x81, 0xc1, 0x00])));
    let mut v = vec![0x81];
    msgpack::write_str(&mut v, "error_code");
    v.push(0xc1);
    assert!(is_invalid_msgpack(decode_error(&v)));
    // A string that is not UTF-8.
    let mut v = good.clone();
    let at = v.len() - 1;
    v[at] = 0xff;
    assert!(is_invalid_msgpack(decode_error(&v)));
    // A map that claims more pairs than there are.
    let mut v = good.clone();
    v[0] = 0x83;
    assert!(is_invalid_msgpack(decode_error(&v)));
    // Bytes after the map.
    let mut v = good.clone();
    v.push(0xc0);
    assert!(is_invalid_msgpack(decode_error(&v)));
    // An unknown key whose value is malformed.
    let mut v = vec![0x83];
    v.extend_from_slice(&good[1..]);
    msgpack::write_str(&mut v, "x");
    v.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert!(is_invalid_msgpack(decode_error(&v)));
}

#[test]
fn well_formed_but_wrong_error_payloads() {
    // Not a map.
    assert!(matches!(
        decode_error(&[0x92, 0x01, 0x02]),
        Err(Error::WrongType {
            field: "payload",
            ..
        })
    ));
    // Keys missing.
    assert_eq!(decode_error(&[0x80]), Err(Error::MissingKey("error_code")));
    let mut v = vec![0x81];
    msgpack::write_str(&mut v, "error_code");
    msgpack::write_int(&mut v, -1);
    assert_eq!(decode_error(&v), Err(Error::MissingKey("error_msg")));
    // A code that is not an integer.
    let mut v = vec![0x82];
    msgpack::write_str(&mut v, "error_code");
    msgpack::write_str(&mut v, "-56");
    msgpack::write_str(&mut v, "error_msg");
    msgpack::write_str(&mut v, "no");
    assert!(matches!(
        decode_error(&v),
        Err(Error::WrongType {
            field: "error_code",
            ..
        })
    ));
    // A non-string key.
    assert!(matches!(
        decode_error(&[0x81, 0x01, 0x02]),
        Err(Error::WrongType { field: "key", .. })
    ));
}

/// A well-formed payload for each event type.
fn event_payloads() -> Vec<(PackageType, Vec<u8>)> {
    let room = |scope: bool| {
        let mut v = Vec::new();
        msgpack::write_map_len(&mut v, if scope { 2 } else { 1 });
        if scope {
            msgpack::write_str(&mut v, "scope");
            msgpack::write_str(&mut v, "@collection:stuff");
        }
        msgpack::write_str(&mut v, "id");
        msgpack::write_uint(&mut v, 456);
        v
    };
    let mut emit = Vec::new();
    msgpack::write_map_len(&mut emit, 4);
    msgpack::write_str(&mut emit, "scope");
    msgpack::write_str(&mut emit, "@collection:stuff");
    msgpack::write_str(&mut emit, "id");
    msgpack::write_uint(&mut emit, 17);
    msgpack::write_str(&mut emit, "event");
    msgpack::write_str(&mut emit, "new-message");
    msgpack::write_str(&mut emit, "args");
    msgpack::write_array_len(&mut emit, 2);
    msgpack::write_str(&mut emit, "Hello!");
    msgpack::write_map_len(&mut emit, 1);
    msgpack::write_str(&mut emit, "#");
    msgpack::write_uint(&mut emit, 70000);
    let mut status = Vec::new();
    msgpack::write_map_len(&mut status, 2);
    msgpack::write_str(&mut status, "id");
    msgpack::write_uint(&mut status, 0);
    msgpack::write_str(&mut status, "status");
    msgpack::write_str(&mut status, "READY");
    let mut warn = Vec::new();
    msgpack::write_map_len(&mut warn, 2);
    msgpack::write_str(&mut warn, "warn_code");
    msgpack::write_uint(&mut warn, 2);
    msgpack::write_str(&mut warn, "warn_msg");
    msgpack::write_str(&mut warn, "log");
    vec![
        (PackageType::OnJoin, room(true)),
        (PackageType::OnLeave, room(false)),
        (PackageType::OnDelete, room(true)),
        (PackageType::OnEmit, emit),
        (PackageType::NodeStatus, status),
        (PackageType::Warn, warn),
    ]
}

fn decode_event(t: PackageType, payload: &[u8]) -> Result<Event, Error> {
    Event::decode(&Frame::new(t, EVENT_ID, Bytes::copy_from_slice(payload)))
}

#[test]
fn invalid_msgpack_in_event_payloads() {
    for (t, good) in event_payloads() {
        assert!(decode_event(t, &good).is_ok(), "{t}");
        for n in 0..good.len() {
            let r = decode_event(t, &good[..n]);
            assert!(is_invalid_msgpack(r.clone()), "{t} cut at {n}: {r:?}");
        }
        assert!(is_invalid_msgpack(decode_event(t, &[0xc1])), "{t}");
        let mut v = good.clone();
        v[0] += 1; // one pair more than there is
        assert!(is_invalid_msgpack(decode_event(t, &v)), "{t}");
        let mut v = good.clone();
        v.push(0x00);
        assert!(is_invalid_msgpack(decode_event(t, &v)), "{t}");
        let mut v = good.clone();
        v[1] = 0xc1; // the first key's marker
        assert!(is_invalid_msgpack(decode_event(t, &v)), "{t}");
    }
}

#[test]
fn invalid_msgpack_inside_emit_args() {
    let mut v = Vec::new();
    msgpack::write_map_len(&mut v, 3);
    msgpack::write_str(&mut v, "id");
    msgpack::write_uint(&mut v, 17);
    msgpack::write_str(&mut v, "event");
    msgpack::write_str(&mut v, "e");
    msgpack::write_str(&mut v, "args");
    // An array of two whose second element is a string cut short... which
    // swallows the rest of the payload: the map then lacks its end.
    v.extend_from_slice(&[0x92, 0x01, 0xa5, b'a', b'b']);
    assert!(is_invalid_msgpack(decode_event(PackageType::OnEmit, &v)));
    // A reserved marker as an argument.
    let at = v.len() - 3;
    v.truncate(at);
    v.push(0xc1);
    assert!(is_invalid_msgpack(decode_event(PackageType::OnEmit, &v)));
}

#[test]
fn well_formed_but_wrong_event_payloads() {
    let f = |pairs: &[(&str, &[u8])]| {
        let mut v = Vec::new();
        msgpack::write_map_len(&mut v, pairs.len() as u32);
        for (k, val) in pairs {
            msgpack::write_str(&mut v, k);
            v.extend_from_slice(val);
        }
        v
    };
    assert!(matches!(
        decode_event(PackageType::OnJoin, &[0x91, 0x11]),
        Err(Error::WrongType {
            field: "payload",
            ..
        })
    ));
    assert_eq!(
        decode_event(PackageType::OnJoin, &f(&[("scope", &[0xa1, b's'])])),
        Err(Error::MissingKey("id"))
    );
    assert!(matches!(
        decode_event(PackageType::OnJoin, &f(&[("id", &[0xff])])),
        Err(Error::WrongType { field: "id", .. })
    ));
    assert!(matches!(
        decode_event(PackageType::OnJoin, &f(&[("id", &[0xa1, b'1'])])),
        Err(Error::WrongType { field: "id", .. })
    ));
    assert!(matches!(
        decode_event(
            PackageType::OnEmit,
            &f(&[("id", &[1]), ("event", &[0xa1, b'e']), ("args", &[0x80])])
        ),
        Err(Error::WrongType { field: "args", .. })
    ));
    assert_eq!(
        decode_event(
            PackageType::OnEmit,
            &f(&[("id", &[1]), ("event", &[0xa1, b'e'])])
        ),
        Err(Error::MissingKey("args"))
    );
    assert_eq!(
        decode_event(PackageType::NodeStatus, &f(&[("id", &[1])])),
        Err(Error::MissingKey("status"))
    );
    assert_eq!(
        decode_event(PackageType::Warn, &f(&[("warn_msg", &[0xa0])])),
        Err(Error::MissingKey("warn_code"))
    );
}

// ----------------------------------------------------------- other payloads

#[test]
fn invalid_msgpack_in_data_payload() {
    let data =
        |p: &[u8]| Response::decode(&Frame::new(PackageType::Data, 3, Bytes::copy_from_slice(p)));
    assert!(is_invalid_msgpack(data(&[])));
    assert!(is_invalid_msgpack(data(&[0xc1])));
    assert!(is_invalid_msgpack(data(&[0x92, 0x01])));
    assert!(is_invalid_msgpack(data(&[0xdd, 0xff, 0xff, 0xff, 0xff])));
    assert!(is_invalid_msgpack(data(&[0xcb, 0, 0, 0])));
    assert!(is_invalid_msgpack(decode_value(&[0xa2, b'a'])));
    assert!(is_invalid_msgpack(decode_value(&[])));
}

#[test]
fn invalid_msgpack_in_request_payloads() {
    let req =
        |t: PackageType, p: &[u8]| Request::decode(&Frame::new(t, 0, Bytes::copy_from_slice(p)));
    let mut q = Vec::new();
    msgpack::write_array_len(&mut q, 3);
    msgpack::write_str(&mut q, "@t");
    msgpack::write_str(&mut q, "a;");
    msgpack::write_map_len(&mut q, 1);
    msgpack::write_str(&mut q, "a");
    msgpack::write_int(&mut q, 1);
    assert!(req(PackageType::Query, &q).is_ok());
    for n in 0..q.len() {
        assert!(req(PackageType::Query, &q[..n]).is_err(), "cut at {n}");
    }
    assert!(is_invalid_msgpack(req(
        PackageType::Query,
        &q[..q.len() - 1]
    )));
}

#[test]
fn wrong_package_types_and_lengths() {
    let frame = |t: u8, p: &'static [u8]| Frame {
        id: 0,
        type_byte: t,
        payload: Bytes::from_static(p),
    };
    assert_eq!(
        Response::decode(&frame(99, &[])),
        Err(Error::UnknownPackageType(99))
    );
    assert_eq!(
        Event::decode(&frame(1, &[])),
        Err(Error::UnknownPackageType(1))
    );
    assert_eq!(
        Request::decode(&frame(42, &[])),
        Err(Error::UnknownPackageType(42))
    );
    assert!(matches!(
        Response::decode(&frame(6, &[0x80])),
        Err(Error::UnexpectedPackageType {
            got: PackageType::OnJoin,
            ..
        })
    ));
    assert!(matches!(
        Event::decode(&frame(18, &[0x01])),
        Err(Error::UnexpectedPackageType {
            got: PackageType::Data,
            ..
        })
    ));
    assert!(matches!(
        Request::decode(&frame(19, &[0x80])),
        Err(Error::UnexpectedPackageType {
            got: PackageType::Error,
            ..
        })
    ));
    assert!(matches!(
        Request::decode(&frame(35, &[])),
        Err(Error::UnexpectedPackageType {
            got: PackageType::DeprecatedWatch,
            ..
        })
    ));
    assert_eq!(
        Response::decode(&frame(17, &[0xc0])),
        Err(Error::PayloadLength {
            package_type: PackageType::Ok,
            expected: "no payload",
            len: 1
        })
    );
    assert!(matches!(
        Request::decode(&frame(32, &[0xc0])),
        Err(Error::PayloadLength {
            package_type: PackageType::Ping,
            ..
        })
    ));
}

#[test]
fn errors_display_without_panicking() {
    let errors = [
        Error::BadCheckByte {
            package_type: 39,
            check: 0xd9,
        },
        Error::PayloadTooLarge { len: 9, max: 8 },
        Error::Truncated {
            needed: 8,
            available: 3,
        },
        Error::UnknownPackageType(3),
        Error::InvalidMsgpack("x"),
        Error::MissingKey("id"),
    ];
    for e in errors {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        Error::BadCheckByte {
            package_type: 39,
            check: 0xd9
        }
        .to_string(),
        "bad check byte 0xd9 for package type 39 (expected 0xd8)"
    );
}
