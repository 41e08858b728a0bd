//! The sans-IO stream decoder: bytes in, whole frames out.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::Error;
use crate::frame::Frame;
use crate::header::{Header, HEADER_LEN, MAX_PAYLOAD};

/// Room reserved at least when a frame is incomplete.
const MIN_RESERVE: usize = 8 * 1024;

/// Cuts the first whole frame off the front of `src`.
///
/// Returns `Ok(None)` while `src` holds less than a whole frame. The header
/// is checked as soon as its 8 bytes are there, so a bad check byte or a
/// length over `max_payload` is an error before any room is reserved for
/// the payload. The returned payload shares `src`'s allocation: no copy.
///
/// While a frame is incomplete this reserves room for more of it, but never
/// more than the bytes already buffered (at least 8 KiB): what is allocated
/// follows what the peer really sent, not what its header claims.
///
/// ```
/// use bytes::BytesMut;
/// use thingsdb_protocol::{decode_frame, PackageType, MAX_PAYLOAD};
/// let mut src = BytesMut::from(&[1, 0, 0, 0, 0, 0, 0x12, 0xed][..]);
/// assert_eq!(decode_frame(&mut src, MAX_PAYLOAD).unwrap(), None);
/// src.extend_from_slice(&[0x02]);
/// let f = decode_frame(&mut src, MAX_PAYLOAD).unwrap().unwrap();
/// assert_eq!(f.package_type().unwrap(), PackageType::Data);
/// assert_eq!(&f.payload[..], &[0x02]);
/// assert!(src.is_empty());
/// ```
pub fn decode_frame(src: &mut BytesMut, max_payload: u32) -> Result<Option<Frame>, Error> {
    let Some(h) = peek_header(src, max_payload)? else {
        return Ok(None);
    };
    let n = h.frame_len();
    if src.len() < n {
        let missing = n - src.len();
        src.reserve(missing.min(src.len().max(MIN_RESERVE)));
        return Ok(None);
    }
    let mut f = src.split_to(n);
    f.advance(HEADER_LEN);
    Ok(Some(Frame {
        id: h.id,
        type_byte: h.type_byte,
        payload: f.freeze(),
    }))
}

fn peek_header(src: &[u8], max_payload: u32) -> Result<Option<Header>, Error> {
    match src.first_chunk::<HEADER_LEN>() {
        Some(h) => Header::decode(h, max_payload).map(Some),
        None => Ok(None),
    }
}

/// An incremental decoder for a byte stream (TCP, TLS, Unix socket).
///
/// Feed it chunks of any size, from one byte to many megabytes, and take
/// whole frames out with [`Decoder::next_frame`]. It does no I/O.
///
/// After an error the stream cannot be trusted to be in sync any more: the
/// decoder keeps returning that error.
///
/// ```
/// use thingsdb_protocol::{Decoder, PackageType};
/// let wire = [0, 0, 0, 0, 0, 0, 0x10, 0xef, 1, 0, 0, 0, 5, 0, 0x12, 0xed, 0x2a];
/// let mut d = Decoder::new();
/// let mut frames = Vec::new();
/// for b in wire {
///     d.feed(&[b]);
///     while let Some(f) = d.next_frame()? {
///         frames.push(f);
///     }
/// }
/// assert_eq!(frames[0].package_type()?, PackageType::Pong);
/// assert_eq!(frames[1].id, 5);
/// assert_eq!(&frames[1].payload[..], &[0x2a]);
/// d.finish()?; // nothing left over
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    /// Bytes of an incomplete frame (and possibly frames after it).
    buf: BytesMut,
    /// A chunk given by [`Decoder::feed_bytes`], consumed before `buf` is
    /// used; frames cut from it share its allocation.
    chunk: Bytes,
    max_payload: u32,
    failed: Option<Error>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the node's own payload limit, [`MAX_PAYLOAD`].
    pub fn new() -> Self {
        Decoder::with_max_payload(MAX_PAYLOAD)
    }

    /// A decoder refusing payloads longer than `max_payload` bytes.
    pub fn with_max_payload(max_payload: u32) -> Self {
        Decoder {
            buf: BytesMut::new(),
            chunk: Bytes::new(),
            max_payload,
            failed: None,
        }
    }

    /// The payload limit in force.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Appends a chunk of the stream (copied into the decoder's buffer).
    pub fn feed(&mut self, data: &[u8]) {
        self.absorb_chunk();
        self.buf.extend_from_slice(data);
    }

    /// Appends a chunk of the stream without copying it when possible:
    /// frames that lie whole inside `data` share its allocation.
    pub fn feed_bytes(&mut self, data: Bytes) {
        if self.buf.is_empty() && self.chunk.is_empty() {
            self.chunk = data;
        } else {
            self.absorb_chunk();
            self.buf.extend_from_slice(&data);
        }
    }

    /// The buffer the decoder reads from, for a caller that wants to read
    /// from a socket straight into it (`read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        self.absorb_chunk();
        &mut self.buf
    }

    /// Bytes held that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.chunk.len()
    }

    fn absorb_chunk(&mut self) {
        if !self.chunk.is_empty() {
            let c = core::mem::take(&mut self.chunk);
            self.buf.extend_from_slice(&c);
        }
    }

    /// The next whole frame, `Ok(None)` if more input is needed, or the
    /// error that ended the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = if self.buf.is_empty() && !self.chunk.is_empty() {
            self.next_from_chunk()
        } else {
            decode_frame(&mut self.buf, self.max_payload)
        };
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn next_from_chunk(&mut self) -> Result<Option<Frame>, Error> {
        if let Some(h) = peek_header(&self.chunk, self.max_payload)? {
            let n = h.frame_len();
            if self.chunk.len() >= n {
                let mut f = self.chunk.split_to(n);
                f.advance(HEADER_LEN);
                return Ok(Some(Frame {
                    id: h.id,
                    type_byte: h.type_byte,
                    payload: f,
                }));
            }
        }
        // An incomplete frame: keep its bytes in our own buffer, so the
        // caller's chunk is released and later input can be appended.
        self.absorb_chunk();
        Ok(None)
    }

    /// Declares the end of the stream: an error if part of a frame is left.
    pub fn finish(&self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let held = self.buffered();
        if held == 0 {
            return Ok(());
        }
        let needed = if self.buf.is_empty() {
            peek_header(&self.chunk, self.max_payload)
        } else {
            peek_header(&self.buf, self.max_payload)
        }?
        .map_or(HEADER_LEN, |h| h.frame_len());
        Err(Error::Truncated {
            needed,
            available: held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PackageType;
    use alloc::vec::Vec;

    fn wire(frames: &[Frame]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            f.encode_into(&mut v).unwrap();
        }
        v
    }

    fn sample() -> Vec<Frame> {
        (0..10u16)
            .map(|i| {
                Frame::new(
                    PackageType::Data,
                    i,
                    Bytes::from(alloc::vec![i as u8; usize::from(i) * 7]),
                )
            })
            .collect()
    }

    #[test]
    fn feed_bytes_shares_the_chunk_for_whole_frames() {
        let frames = sample();
        let w = Bytes::from(wire(&frames));
        let base = w.as_ptr() as usize;
        let mut d = Decoder::new();
        d.feed_bytes(w.clone());
        for f in &frames {
            let got = d.next_frame().unwrap().unwrap();
            assert_eq!(&got, f);
            if !got.payload.is_empty() {
                let p = got.payload.as_ptr() as usize;
                assert!(p >= base && p < base + w.len(), "payload was copied");
            }
        }
        assert_eq!(d.next_frame().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn split_chunks_reassemble() {
        let frames = sample();
        let w = wire(&frames);
        for cut in 1..w.len() {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            d.feed_bytes(Bytes::copy_from_slice(&w[..cut]));
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
            d.feed_bytes(Bytes::copy_from_slice(&w[cut..]));
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
            assert_eq!(out, frames, "cut at {cut}");
            d.finish().unwrap();
        }
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = Decoder::new();
        d.feed(&[0, 0, 0, 0, 0, 0, 0x20, 0x00]);
        let e = d.next_frame().unwrap_err();
        assert!(matches!(e, Error::BadCheckByte { .. }));
        d.feed(&[0, 0, 0, 0, 0, 0, 0x20, 0xdf]);
        assert_eq!(d.next_frame().unwrap_err(), e);
        assert_eq!(d.finish().unwrap_err(), e);
    }

    #[test]
    fn oversized_length_fails_before_the_payload_arrives() {
        let mut d = Decoder::with_max_payload(1024);
        d.feed(&Header::new(PackageType::Data, 0, 1025).encode());
        assert_eq!(
            d.next_frame(),
            Err(Error::PayloadTooLarge {
                len: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn a_huge_claimed_length_does_not_reserve_memory() {
        let mut src = BytesMut::new();
        src.extend_from_slice(&Header::new(PackageType::Data, 0, 1 << 30).encode());
        assert_eq!(decode_frame(&mut src, MAX_PAYLOAD).unwrap(), None);
        assert!(src.capacity() < 64 * 1024, "{}", src.capacity());
    }

    #[test]
    fn a_header_may_straddle_a_shared_chunk_and_copied_input() {
        let f = Frame::new(PackageType::Data, 4, Bytes::from_static(&[0xa1, b'x']));
        let w = f.to_bytes();
        let mut d = Decoder::new();
        d.feed_bytes(w.slice(..3));
        d.feed(&w[3..6]);
        assert_eq!(
            d.finish(),
            Err(Error::Truncated {
                needed: 8,
                available: 6
            })
        );
        d.feed(&w[6..9]);
        assert_eq!(
            d.finish(),
            Err(Error::Truncated {
                needed: 10,
                available: 9
            })
        );
        d.feed_bytes(w.slice(9..));
        assert_eq!(d.next_frame().unwrap(), Some(f.clone()));
        assert_eq!(d.next_frame().unwrap(), None);
        d.finish().unwrap();

        // Whole frames in a shared chunk, then copied input behind them.
        let mut d = Decoder::new();
        let two = Bytes::from([&w[..], &w[..], &w[..4]].concat());
        d.feed_bytes(two);
        d.feed(&w[4..]);
        assert_eq!(d.buffered(), 3 * w.len());
        for _ in 0..3 {
            assert_eq!(d.next_frame().unwrap(), Some(f.clone()));
        }
        assert_eq!(d.next_frame().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn buffer_mut_holds_every_unread_byte() {
        let f = Frame::new(PackageType::Data, 4, Bytes::from_static(&[0x01]));
        let w = f.to_bytes();
        let mut d = Decoder::new();
        d.feed_bytes(w.slice(..5));
        d.feed(&w[5..7]);
        assert_eq!(&d.buffer_mut()[..], &w[..7]);
        d.buffer_mut().extend_from_slice(&w[7..]);
        assert_eq!(d.next_frame().unwrap(), Some(f));
    }

    #[test]
    fn finish_reports_truncation() {
        let mut d = Decoder::new();
        d.feed(&[5, 0, 0]);
        assert_eq!(
            d.finish(),
            Err(Error::Truncated {
                needed: 8,
                available: 3
            })
        );
        d.feed(&[0, 0, 0, 0x12, 0xed, 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(Error::Truncated {
                needed: 13,
                available: 9
            })
        );
    }
}
