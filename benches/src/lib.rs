//! Inputs shared by the connector's benchmarks: deterministic streams of
//! frames, built once and measured by the criterion benches in `benches/`.
//!
//! Run them with `cargo xtask bench` (or `cargo bench -p thingsdb-benches`).

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{msgpack, Frame, PackageType};

/// A stream of `count` DATA frames whose payloads are 8 to 64 bytes long,
/// as one contiguous buffer, with the frames it holds.
///
/// Payload lengths follow a fixed pseudo-random sequence, so every run
/// measures the same bytes.
pub fn small_frames(count: usize) -> (Bytes, Vec<Frame>) {
    let mut state: u32 = 0x9e37_79b9;
    let frames: Vec<Frame> = (0..count)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let len = 8 + (state % 57) as usize;
            Frame::new(
                PackageType::Data,
                (i % 0xffff) as u16,
                Bytes::from(vec![(i % 251) as u8; len]),
            )
        })
        .collect();
    (wire(&frames), frames)
}

/// A stream of `count` DATA frames of `payload_len` bytes each.
pub fn large_frames(count: usize, payload_len: usize) -> (Bytes, Vec<Frame>) {
    let frames: Vec<Frame> = (0..count)
        .map(|i| {
            Frame::new(
                PackageType::Data,
                i as u16,
                Bytes::from(vec![(i % 251) as u8; payload_len]),
            )
        })
        .collect();
    (wire(&frames), frames)
}

/// The frames back to back, as they travel on a TCP stream.
pub fn wire(frames: &[Frame]) -> Bytes {
    let mut b = BytesMut::with_capacity(frames.iter().map(Frame::wire_len).sum());
    for f in frames {
        // A frame built from a `Vec` always has a length that fits a u32.
        let _ = f.encode_into(&mut b);
    }
    b.freeze()
}

/// The encoded vars map `{"a": 6, "b": 7}` of protocol.md's QUERY vector.
pub fn query_vars() -> Vec<u8> {
    let mut v = Vec::new();
    msgpack::write_map_len(&mut v, 2);
    msgpack::write_str(&mut v, "a");
    msgpack::write_int(&mut v, 6);
    msgpack::write_str(&mut v, "b");
    msgpack::write_int(&mut v, 7);
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use thingsdb_protocol::Decoder;

    #[test]
    fn inputs_decode_to_their_frames() {
        for (wire, frames) in [small_frames(1000), large_frames(3, 70_000)] {
            let mut d = Decoder::new();
            d.feed_bytes(wire);
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got, frames);
        }
        let (_, small) = small_frames(500);
        assert!(small.iter().all(|f| (8..=64).contains(&f.payload.len())));
    }
}
