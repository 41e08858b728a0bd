//! The MessagePack reader against a reference decoder (rmpv): `validate`
//! accepts exactly the inputs rmpv decodes as one whole value, and
//! `skip_value` steps over exactly the bytes rmpv reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingsdb_protocol::msgpack::{self, Kind, Reader};
use thingsdb_protocol::value::MAX_DEPTH;
use thingsdb_protocol::Error;

/// Nesting depth of the first value, iteratively (deep input must not
/// overflow the fuzzer's stack).
fn depth_exceeds(data: &[u8], limit: usize) -> bool {
    // Count container headers in a prefix: a cheap upper bound on depth.
    // Only used to excuse rmpv's depth refusal.
    data.iter()
        .filter(|&&m| matches!(Kind::of_marker(m), Kind::Array | Kind::Map))
        .count()
        > limit
}

fuzz_target!(|data: &[u8]| {
    let ours = msgpack::validate(data);
    let mut rd = data;
    let theirs = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH);
    match (&ours, &theirs) {
        (Ok(()), Ok(_)) => assert!(rd.is_empty(), "rmpv left bytes after a valid value"),
        (Ok(()), Err(_)) => assert!(depth_exceeds(data, MAX_DEPTH), "rmpv refused a valid value"),
        // rmpv reads the reserved marker 0xc1 as nil; MessagePack says it
        // is never used, and we refuse it (first found by this target).
        (Err(e), Ok(_)) => assert!(
            !rd.is_empty() || *e == Error::InvalidMsgpack("reserved marker 0xc1"),
            "we refused what rmpv read whole: {e:?}"
        ),
        (Err(_), Err(_)) => {}
    }

    // skip_value agrees with rmpv on where the first value ends.
    let mut r = Reader::new(data);
    if let Ok(skipped) = r.skip_value() {
        let mut rd = data;
        if rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).is_ok() {
            assert_eq!(skipped.len(), data.len() - rd.len());
        }
    }

    // Every typed read on any input returns without panicking, and a
    // failed read leaves a reader that can still be used.
    let mut r = Reader::new(data);
    for _ in 0..16 {
        if r.is_empty() {
            break;
        }
        let before = r.position();
        let _ = match r.peek_kind() {
            Ok(Kind::Int) => r
                .clone()
                .read_uint()
                .map(drop)
                .and_then(|()| r.read_int().map(drop)),
            Ok(Kind::Str) => r.read_str().map(drop),
            Ok(Kind::Bin) => r.read_bin().map(drop),
            Ok(Kind::Array) => r.read_array_len().map(drop),
            Ok(Kind::Map) => r.read_map_len().map(drop),
            Ok(Kind::Bool) => r.read_bool().map(drop),
            Ok(Kind::Nil) => r.read_nil().map(drop),
            _ => r.skip_value().map(drop),
        };
        if r.position() == before {
            break;
        }
        assert!(r.position() <= data.len());
    }
});
