//! The stream decoder fed arbitrary bytes in arbitrary chunkings.
//!
//! Input layout: byte 0 picks the payload limit, bytes 1..=8 are a cycle
//! of chunk sizes, the rest is the stream. The same stream goes through
//! `Decoder::feed` (copying), `Decoder::feed_bytes` (zero copy), the two
//! alternated, `decode_frame` over a growing `BytesMut`, and `Frame::parse`;
//! all must agree, and the frames must re-encode to exactly the bytes they
//! were cut from.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use thingsdb_protocol::{decode_frame, Decoder, Error, Frame, HEADER_LEN, MAX_PAYLOAD};

#[derive(Clone, Copy)]
enum Feed {
    Copy,
    ZeroCopy,
    Alternate,
}

/// Frames out, and the error that ended the stream (or `finish`'s verdict).
fn run(chunks: &[&[u8]], max: u32, how: Feed) -> (Vec<Frame>, Result<(), Error>) {
    let mut d = Decoder::with_max_payload(max);
    let mut frames = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let zero_copy = match how {
            Feed::Copy => false,
            Feed::ZeroCopy => true,
            Feed::Alternate => i % 2 == 1,
        };
        if zero_copy {
            d.feed_bytes(Bytes::copy_from_slice(c));
        } else {
            d.feed(c);
        }
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    // Sticky, and reported again at the end.
                    assert_eq!(d.next_frame(), Err(e.clone()));
                    assert_eq!(d.finish(), Err(e.clone()));
                    return (frames, Err(e));
                }
            }
        }
    }
    (frames, d.finish())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let max = match data[0] % 4 {
        0 => MAX_PAYLOAD,
        1 => u32::MAX,
        2 => 0,
        _ => u32::from(data[0]) * 4,
    };
    let sizes: Vec<usize> = data[1..9].iter().map(|&b| usize::from(b) + 1).collect();
    let stream = &data[9..];

    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(sizes[i % sizes.len()].min(rest.len()));
        chunks.push(a);
        rest = b;
        i += 1;
    }

    let (frames, end) = run(&chunks, max, Feed::Copy);
    for how in [Feed::ZeroCopy, Feed::Alternate] {
        let (f2, e2) = run(&chunks, max, how);
        assert_eq!(f2, frames);
        assert_eq!(e2, end);
    }

    // The frames are exactly the bytes they came from.
    let mut consumed = Vec::new();
    for f in &frames {
        assert!(f.payload.len() <= max as usize);
        f.encode_into(&mut consumed)
            .expect("a decoded frame re-encodes");
    }
    assert_eq!(&stream[..consumed.len()], &consumed[..]);
    match &end {
        Ok(()) => assert_eq!(consumed.len(), stream.len()),
        Err(Error::Truncated { available, .. }) => {
            assert_eq!(consumed.len() + available, stream.len())
        }
        Err(Error::BadCheckByte { .. }) | Err(Error::PayloadTooLarge { .. }) => {
            assert!(stream.len() - consumed.len() >= HEADER_LEN)
        }
        Err(e) => panic!("unexpected stream error {e:?}"),
    }

    // The free function over a BytesMut growing chunk by chunk.
    let mut src = BytesMut::new();
    let mut f3 = Vec::new();
    let mut err3 = None;
    'outer: for c in &chunks {
        src.extend_from_slice(c);
        loop {
            match decode_frame(&mut src, max) {
                Ok(Some(f)) => f3.push(f),
                Ok(None) => break,
                Err(e) => {
                    err3 = Some(e);
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(f3, frames);
    if let Some(e) = err3 {
        assert_eq!(Err(e), end);
    }

    // One whole message: the first frame, or the same error.
    match Frame::parse(Bytes::copy_from_slice(stream), max) {
        Ok(f) => assert_eq!(Some(&f), frames.first()),
        Err(Error::Truncated { .. }) => assert!(frames.is_empty()),
        Err(e) => {
            assert!(frames.is_empty());
            assert_eq!(Err(e), end);
        }
    }
});
