//! Regression tests for bugs found by the property tests and the fuzzers
//! (fuzz/README.md lists the fuzzing runs). Each test names what found it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{
    msgpack, request, Error, Event, EventRoom, Frame, PackageType, Request, Room, EVENT_ID,
    MAX_PAYLOAD,
};

fn parse(b: BytesMut) -> Frame {
    Frame::parse(b.freeze(), MAX_PAYLOAD).unwrap()
}

/// proptest `join_and_leave_roundtrip` / `emit_roundtrips`: a room id above
/// `i64::MAX` was encoded as `uint 64` but refused by the request decoder
/// ("integer does not fit in i64").
#[test]
fn room_ids_above_i64_max_roundtrip_in_requests() {
    for id in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        let rooms = [Room::Id(id), Room::from("r")];
        let mut b = BytesMut::new();
        request::encode_join(&mut b, 1, "//stuff", &rooms).unwrap();
        assert_eq!(
            Request::decode(&parse(b)).unwrap(),
            Request::Join {
                scope: "//stuff".into(),
                rooms: rooms.to_vec()
            }
        );
        let mut b = BytesMut::new();
        request::encode_emit(&mut b, 1, "//stuff", &Room::Id(id), "e", &[0x90]).unwrap();
        assert_eq!(
            Request::decode(&parse(b)).unwrap(),
            Request::Emit {
                scope: "//stuff".into(),
                room: Room::Id(id),
                event: "e".into(),
                args: vec![],
                peers_only: false
            }
        );
    }
}

/// The same asymmetry in events: `Event::encode` writes any `u64` id, so
/// `Event::decode` must read any `u64` id.
#[test]
fn event_ids_above_i64_max_roundtrip() {
    for e in [
        Event::Join(EventRoom {
            scope: Some("@collection:stuff".into()),
            id: u64::MAX,
        }),
        Event::NodeStatus {
            id: i64::MAX as u64 + 1,
            status: thingsdb_protocol::NodeStatus::Ready,
        },
    ] {
        let mut b = BytesMut::new();
        e.encode(&mut b).unwrap();
        assert_eq!(Event::decode(&parse(b)).unwrap(), e);
    }
}

/// Negative ids stay a well-typed refusal, not a MessagePack error.
#[test]
fn negative_ids_are_wrong_type() {
    let mut p = Vec::new();
    msgpack::write_array_len(&mut p, 2);
    msgpack::write_str(&mut p, "//stuff");
    msgpack::write_int(&mut p, -1);
    let f = Frame::new(PackageType::Join, 0, Bytes::from(p));
    assert!(matches!(
        Request::decode(&f),
        Err(Error::WrongType { field: "room", .. })
    ));
    let mut p = Vec::new();
    msgpack::write_map_len(&mut p, 1);
    msgpack::write_str(&mut p, "id");
    msgpack::write_int(&mut p, i64::MIN);
    let f = Frame::new(PackageType::OnLeave, EVENT_ID, Bytes::from(p));
    assert!(matches!(
        Event::decode(&f),
        Err(Error::WrongType { field: "id", .. })
    ));
}

/// Writing the malformed-input tests: truncated or reserved-marker bytes in
/// an ERROR or event payload were reported as `WrongType` ("payload must be
/// a map", "key must be a string"), hiding that the bytes were not
/// MessagePack at all. They are `InvalidMsgpack` now.
#[test]
fn truncated_payloads_are_invalid_msgpack_not_wrong_type() {
    let ev = |p: &'static [u8]| {
        Event::decode(&Frame::new(
            PackageType::OnJoin,
            EVENT_ID,
            Bytes::from_static(p),
        ))
    };
    assert!(matches!(ev(&[]), Err(Error::InvalidMsgpack(_))));
    assert!(matches!(ev(&[0x81]), Err(Error::InvalidMsgpack(_))));
    assert!(matches!(
        ev(&[0x81, 0xa2, b'i']),
        Err(Error::InvalidMsgpack(_))
    ));
    assert!(matches!(
        ev(&[0x81, 0xa2, b'i', b'd', 0xcd, 0x01]),
        Err(Error::InvalidMsgpack(_))
    ));
    let q = Frame::new(
        PackageType::Query,
        0,
        Bytes::from_static(&[0x92, 0xa2, b'@']),
    );
    assert!(matches!(Request::decode(&q), Err(Error::InvalidMsgpack(_))));
}

/// fuzz target `msgpack_reader`, input `c1`: the reference decoder (rmpv)
/// reads the reserved marker 0xc1 as nil. MessagePack says 0xc1 is never
/// used; we refuse it everywhere, and `decode_value` (which uses rmpv)
/// refuses it too because it validates first.
#[test]
fn reserved_marker_is_refused_everywhere() {
    use thingsdb_protocol::{decode_value, Response};
    for input in [&[0xc1][..], &[0x91, 0xc1], &[0x81, 0xa1, b'k', 0xc1]] {
        assert_eq!(
            msgpack::validate(input),
            Err(Error::InvalidMsgpack("reserved marker 0xc1"))
        );
        assert!(matches!(decode_value(input), Err(Error::InvalidMsgpack(_))));
        let f = Frame::new(PackageType::Data, 0, Bytes::copy_from_slice(input));
        assert!(matches!(
            Response::decode(&f),
            Err(Error::InvalidMsgpack(_))
        ));
    }
}
