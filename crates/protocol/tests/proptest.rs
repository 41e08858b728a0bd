//! Property tests: frames round-trip, a stream of frames cut into chunks of
//! any sizes decodes to the same frames, request encoders round-trip through
//! the request decoder, and no input whatsoever makes a decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use thingsdb_protocol::request::{self, RunArgs};
use thingsdb_protocol::{
    decode_frame, decode_value, encode_value, msgpack, Credentials, DecodedRunArgs, Decoder, Event,
    Frame, Header, PackageType, Request, Response, Room, HEADER_LEN, MAX_PAYLOAD,
};

// ------------------------------------------------------------- strategies

/// Any frame: any type byte (known or not), any id, any payload bytes.
fn any_frame() -> impl Strategy<Value = Frame> {
    (any::<u8>(), any::<u16>(), vec(any::<u8>(), 0..300)).prop_map(|(t, id, p)| Frame {
        id,
        type_byte: t,
        payload: Bytes::from(p),
    })
}

/// Chunk sizes to cut a stream with; small sizes are the interesting ones.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![4 => 1usize..16, 2 => 1usize..200, 1 => 200usize..5000],
        1..64,
    )
}

/// Cuts `wire` into chunks of the given sizes, cycling through them.
fn cut<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Feed {
    Copy,
    ZeroCopy,
    Mixed,
}

fn any_feed() -> impl Strategy<Value = Feed> {
    prop_oneof![Just(Feed::Copy), Just(Feed::ZeroCopy), Just(Feed::Mixed)]
}

/// Feeds the chunks to a fresh decoder, draining frames after each.
fn decode_chunks(chunks: &[&[u8]], how: Feed) -> Result<Vec<Frame>, thingsdb_protocol::Error> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let zero_copy = match how {
            Feed::Copy => false,
            Feed::ZeroCopy => true,
            Feed::Mixed => i % 3 == 1,
        };
        if zero_copy {
            d.feed_bytes(Bytes::copy_from_slice(c));
        } else {
            d.feed(c);
        }
        while let Some(f) = d.next_frame()? {
            out.push(f);
        }
    }
    d.finish()?;
    Ok(out)
}

/// A MessagePack value without floats (NaN is not equal to itself).
fn any_value() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value;
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        vec(any::<u8>(), 0..40).prop_map(Value::Binary),
        (any::<i8>(), vec(any::<u8>(), 0..20)).prop_map(|(t, d)| Value::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((inner.clone(), inner), 0..8).prop_map(Value::Map),
        ]
    })
}

fn encoded(v: &rmpv::Value) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_value(&mut b, v);
    b.to_vec()
}

fn any_map() -> impl Strategy<Value = rmpv::Value> {
    vec((".{0,12}".prop_map(rmpv::Value::from), any_value()), 0..6).prop_map(rmpv::Value::Map)
}

fn any_array() -> impl Strategy<Value = rmpv::Value> {
    vec(any_value(), 0..6).prop_map(rmpv::Value::Array)
}

fn any_room() -> impl Strategy<Value = Room> {
    prop_oneof![
        any::<u64>().prop_map(Room::Id),
        ".{0,30}".prop_map(Room::Name)
    ]
}

fn parse(buf: BytesMut) -> Frame {
    let f = Frame::parse(buf.freeze(), MAX_PAYLOAD).unwrap();
    // A whole frame decodes to the same through the stream decoder, too.
    let mut d = Decoder::new();
    d.feed(&f.to_bytes());
    assert_eq!(d.next_frame().unwrap().as_ref(), Some(&f));
    f
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Deterministic: no failure-persistence files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// -------------------------------------------------------------- properties

proptest! {
    #![proptest_config(proptest_config())]

    /// Encode then decode returns the same frame, through every path.
    #[test]
    fn frame_roundtrip(f in any_frame()) {
        let wire = f.to_bytes();
        prop_assert_eq!(wire.len(), HEADER_LEN + f.payload.len());
        let mut via_encode_into = Vec::new();
        f.encode_into(&mut via_encode_into).unwrap();
        prop_assert_eq!(&via_encode_into[..], &wire[..]);

        let h = Header::decode_prefix(&wire, MAX_PAYLOAD).unwrap();
        prop_assert_eq!(h, f.header().unwrap());
        prop_assert_eq!(Header::decode(&h.encode(), u32::MAX).unwrap(), h);

        prop_assert_eq!(&Frame::parse(wire.clone(), MAX_PAYLOAD).unwrap(), &f);

        let mut src = BytesMut::from(&wire[..]);
        prop_assert_eq!(decode_frame(&mut src, MAX_PAYLOAD).unwrap(), Some(f.clone()));
        prop_assert!(src.is_empty());

        let mut d = Decoder::new();
        d.feed_bytes(wire);
        prop_assert_eq!(d.next_frame().unwrap(), Some(f.clone()));
        prop_assert_eq!(d.next_frame().unwrap(), None);
        d.finish().unwrap();
    }

    /// A stream of random frames cut into random chunk sizes decodes to the
    /// same frames, through `feed`, `feed_bytes`, and the two mixed.
    #[test]
    fn chunked_stream_decodes_to_the_same_frames(
        frames in vec(any_frame(), 0..40),
        sizes in chunk_sizes(),
        how in any_feed(),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            f.encode_into(&mut wire).unwrap();
        }
        let chunks = cut(&wire, &sizes);
        prop_assert_eq!(decode_chunks(&chunks, how).unwrap(), frames.clone());

        // The free function over a BytesMut that grows chunk by chunk.
        let mut src = BytesMut::new();
        let mut out = Vec::new();
        for c in &chunks {
            src.extend_from_slice(c);
            while let Some(f) = decode_frame(&mut src, MAX_PAYLOAD).unwrap() {
                out.push(f);
            }
        }
        prop_assert!(src.is_empty());
        prop_assert_eq!(out, frames);
    }

    /// A stream cut short anywhere gives the whole frames before the cut,
    /// then `Truncated` at its end (or a clean end on a frame boundary).
    #[test]
    fn stream_cut_short(frames in vec(any_frame(), 1..10), sizes in chunk_sizes(), at in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        let mut ends = Vec::new();
        for f in &frames {
            f.encode_into(&mut wire).unwrap();
            ends.push(wire.len());
        }
        let n = at.index(wire.len() + 1);
        let whole = ends.iter().filter(|&&e| e <= n).count();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in cut(&wire[..n], &sizes) {
            d.feed_bytes(Bytes::copy_from_slice(c));
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(&out[..], &frames[..whole]);
        let on_boundary = n == 0 || ends.contains(&n);
        prop_assert_eq!(d.finish().is_ok(), on_boundary);
        if !on_boundary {
            let is_truncated = matches!(d.finish(), Err(thingsdb_protocol::Error::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }

    /// Random bytes in random chunks never make the stream decoder panic,
    /// and whatever frames it gives re-encode to a prefix of the input.
    #[test]
    fn random_bytes_never_panic_the_decoder(
        data in vec(any::<u8>(), 0..2000),
        sizes in chunk_sizes(),
        how in any_feed(),
        max in prop_oneof![Just(MAX_PAYLOAD), 0u32..512],
    ) {
        let mut d = Decoder::with_max_payload(max);
        let mut consumed = Vec::new();
        'outer: for (i, c) in cut(&data, &sizes).into_iter().enumerate() {
            match how {
                Feed::ZeroCopy => d.feed_bytes(Bytes::copy_from_slice(c)),
                Feed::Mixed if i % 2 == 0 => d.feed_bytes(Bytes::copy_from_slice(c)),
                _ => d.feed(c),
            }
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        prop_assert!(f.payload.len() <= max as usize);
                        f.encode_into(&mut consumed).unwrap();
                    }
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
        prop_assert_eq!(&data[..consumed.len()], &consumed[..]);
        let _ = d.finish();
    }

    /// Random payloads under every type byte never panic any decoder.
    #[test]
    fn random_payloads_never_panic(t in any::<u8>(), id in any::<u16>(), p in vec(any::<u8>(), 0..400)) {
        let f = Frame { id, type_byte: t, payload: Bytes::from(p.clone()) };
        let _ = Response::decode(&f);
        let _ = Event::decode(&f);
        let _ = Request::decode(&f);
        let _ = msgpack::validate(&p);
        let _ = decode_value(&p);
        let _ = Frame::parse(Bytes::from(p.clone()), MAX_PAYLOAD);
        if let Ok(Response::Data(d)) = Response::decode(&f) {
            prop_assert!(msgpack::validate(&d).is_ok());
            prop_assert!(decode_value(&d).is_ok());
        }
        if let Ok(Event::Emit(e)) = Event::decode(&f) {
            prop_assert!(e.arg_values().is_ok());
        }
    }

    /// Random payloads of each known type: the type-specific code paths.
    #[test]
    fn random_payloads_of_known_types_never_panic(
        t in prop::sample::select(PackageType::ALL.to_vec()),
        value in any_value(),
        noise in vec(any::<u8>(), 0..64),
        cut_at in any::<prop::sample::Index>(),
    ) {
        // A well-formed value, the value cut short, and the value damaged.
        let good = encoded(&value);
        let mut damaged = good.clone();
        if !damaged.is_empty() {
            let i = cut_at.index(damaged.len());
            damaged[i] ^= noise.first().copied().unwrap_or(0x40);
        }
        let short = &good[..cut_at.index(good.len() + 1)];
        for p in [good.as_slice(), short, &damaged, &noise] {
            let f = Frame::new(t, 1, Bytes::copy_from_slice(p));
            let _ = Response::decode(&f);
            let _ = Event::decode(&f);
            let _ = Request::decode(&f);
        }
    }

    /// MessagePack values round-trip through our encoder helpers, and the
    /// reader steps over exactly one value.
    #[test]
    fn values_roundtrip(v in any_value()) {
        let b = encoded(&v);
        prop_assert!(msgpack::validate(&b).is_ok());
        let mut r = msgpack::Reader::new(&b);
        prop_assert_eq!(r.skip_value().unwrap(), &b[..]);
        prop_assert_eq!(decode_value(&b).unwrap(), v);
        // A DATA response carrying it.
        let mut buf = BytesMut::new();
        thingsdb_protocol::response::encode_data(&mut buf, 5, &b).unwrap();
        let f = parse(buf);
        prop_assert_eq!(Response::decode(&f).unwrap(), Response::Data(Bytes::from(b)));
    }

    /// Node-side encoders round-trip: events with any fields (the `scope`
    /// key a node adds included), and ERROR replies with any code.
    #[test]
    fn events_and_errors_roundtrip(
        scope in proptest::option::of(".{0,30}"),
        id in any::<u64>(),
        text in ".{0,60}",
        code in any::<i64>(),
        args in vec(any_value(), 0..6),
        which in 0u8..6,
    ) {
        use thingsdb_protocol::{EmitEvent, ErrorCode, ErrorReply, NodeStatus, EventRoom};
        let room = EventRoom { scope: scope.clone(), id };
        let e = match which {
            0 => Event::Join(room),
            1 => Event::Leave(room),
            2 => Event::Delete(room),
            3 => Event::NodeStatus { id, status: NodeStatus::parse(&text) },
            4 => Event::Warn { code, message: text.clone() },
            _ => Event::Emit(EmitEvent {
                scope,
                id,
                event: text.clone(),
                args: Bytes::from(encoded(&rmpv::Value::Array(args))),
            }),
        };
        let mut b = BytesMut::new();
        e.encode(&mut b).unwrap();
        let f = parse(b);
        prop_assert_eq!(f.id, thingsdb_protocol::EVENT_ID);
        prop_assert_eq!(Event::decode(&f).unwrap(), e);

        let mut b = BytesMut::new();
        thingsdb_protocol::response::encode_error(&mut b, 9, ErrorCode::from_code(code), &text).unwrap();
        prop_assert_eq!(
            Response::decode(&parse(b)).unwrap(),
            Response::Error(ErrorReply::new(ErrorCode::from_code(code), text))
        );
    }

    // ------------------------------------------------ request encoders

    #[test]
    fn auth_roundtrips(id in any::<u16>(), user in ".{0,40}", password in ".{0,40}", token in ".{0,80}") {
        let mut b = BytesMut::new();
        request::encode_auth(&mut b, id, &user, &password).unwrap();
        let f = parse(b);
        prop_assert_eq!(f.id, id);
        prop_assert_eq!(Request::decode(&f).unwrap(), Request::Auth(Credentials::Password { user, password }));

        let mut b = BytesMut::new();
        request::encode_auth_token(&mut b, id, &token).unwrap();
        prop_assert_eq!(Request::decode(&parse(b)).unwrap(), Request::Auth(Credentials::Token(token)));

        let mut b = BytesMut::new();
        request::encode_ping(&mut b, id);
        let f = parse(b);
        prop_assert_eq!(f.id, id);
        prop_assert_eq!(Request::decode(&f).unwrap(), Request::Ping);
    }

    #[test]
    fn query_roundtrips(id in any::<u16>(), scope in ".{0,40}", code in ".{0,300}", vars in proptest::option::of(any_map())) {
        let vars = vars.map(|v| encoded(&v));
        let mut b = BytesMut::new();
        request::encode_query(&mut b, id, &scope, &code, vars.as_deref()).unwrap();
        let f = parse(b);
        prop_assert_eq!(f.id, id);
        prop_assert_eq!(
            Request::decode(&f).unwrap(),
            Request::Query { scope, code, vars: vars.map(Bytes::from) }
        );
    }

    #[test]
    fn run_roundtrips(
        id in any::<u16>(),
        scope in ".{0,40}",
        procedure in ".{0,40}",
        args in prop_oneof![Just(None), any_array().prop_map(|a| Some((false, a))), any_map().prop_map(|m| Some((true, m)))],
    ) {
        let enc = args.as_ref().map(|(named, v)| (*named, encoded(v)));
        let run_args = match &enc {
            None => RunArgs::None,
            Some((false, a)) => RunArgs::Positional(a),
            Some((true, m)) => RunArgs::Named(m),
        };
        let mut b = BytesMut::new();
        request::encode_run(&mut b, id, &scope, &procedure, run_args).unwrap();
        let want = match enc {
            None => DecodedRunArgs::None,
            Some((false, a)) => DecodedRunArgs::Positional(Bytes::from(a)),
            Some((true, m)) => DecodedRunArgs::Named(Bytes::from(m)),
        };
        prop_assert_eq!(Request::decode(&parse(b)).unwrap(), Request::Run { scope, procedure, args: want });
    }

    #[test]
    fn join_and_leave_roundtrip(id in any::<u16>(), scope in ".{0,40}", rooms in vec(any_room(), 0..40)) {
        let mut b = BytesMut::new();
        request::encode_join(&mut b, id, &scope, &rooms).unwrap();
        prop_assert_eq!(Request::decode(&parse(b)).unwrap(), Request::Join { scope: scope.clone(), rooms: rooms.clone() });
        let mut b = BytesMut::new();
        request::encode_leave(&mut b, id, &scope, &rooms).unwrap();
        prop_assert_eq!(Request::decode(&parse(b)).unwrap(), Request::Leave { scope, rooms });
    }

    #[test]
    fn emit_roundtrips(
        id in any::<u16>(),
        scope in ".{0,40}",
        room in any_room(),
        event in ".{0,40}",
        args in vec(any_value(), 0..20),
        peers_only in any::<bool>(),
    ) {
        let array = encoded(&rmpv::Value::Array(args.clone()));
        let mut b = BytesMut::new();
        if peers_only {
            request::encode_emit_peer(&mut b, id, &scope, &room, &event, &array).unwrap();
        } else {
            request::encode_emit(&mut b, id, &scope, &room, &event, &array).unwrap();
        }
        let f = parse(b);
        prop_assert_eq!(f.package_type().unwrap(), if peers_only { PackageType::EmitPeer } else { PackageType::Emit });
        let want_args: Vec<Bytes> = args.iter().map(|a| Bytes::from(encoded(a))).collect();
        prop_assert_eq!(
            Request::decode(&f).unwrap(),
            Request::Emit { scope, room, event, args: want_args, peers_only }
        );
    }

    /// Several requests appended to one buffer are a valid stream.
    #[test]
    fn encoders_append(ids in vec(any::<u16>(), 1..20), sizes in chunk_sizes()) {
        let mut b = BytesMut::new();
        for (i, id) in ids.iter().enumerate() {
            match i % 3 {
                0 => request::encode_ping(&mut b, *id),
                1 => request::encode_query(&mut b, *id, "@t", "1;", None).unwrap(),
                _ => request::encode_join(&mut b, *id, "//stuff", &[Room::Id(u64::from(*id))]).unwrap(),
            }
        }
        let frames = decode_chunks(&cut(&b, &sizes), Feed::Mixed).unwrap();
        prop_assert_eq!(frames.iter().map(|f| f.id).collect::<Vec<_>>(), ids);
        for f in &frames {
            prop_assert!(Request::decode(f).is_ok());
        }
    }
}
