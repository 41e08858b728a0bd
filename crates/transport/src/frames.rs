//! Walking the headers of a batch of packages laid back to back.

use bytes::Bytes;
use thingsdb_protocol::{Header, HEADER_LEN, MAX_PAYLOAD};

use crate::error::Error;

/// Checks that `b` is a sequence of whole packages with valid headers and
/// payloads no longer than a node accepts; returns how many there are.
///
/// Only the headers are read, so this costs one header decode per package.
pub(crate) fn count_whole_frames(b: &[u8]) -> Result<usize, Error> {
    let mut at = 0usize;
    let mut n = 0usize;
    while at < b.len() {
        let rest = &b[at..];
        let h = Header::decode_prefix(rest, MAX_PAYLOAD)
            .map_err(|e| Error::NotWholeFrames(format!("package {n} at byte {at}: {e}")))?;
        let len = h.frame_len();
        if rest.len() < len {
            return Err(Error::NotWholeFrames(format!(
                "package {n} at byte {at} needs {len} bytes, {} given",
                rest.len()
            )));
        }
        at += len;
        n += 1;
    }
    Ok(n)
}

/// Cuts the next package off the front of a batch already checked by
/// [`count_whole_frames`], sharing its allocation.
pub(crate) fn split_next(b: &mut Bytes) -> Option<Bytes> {
    let h = Header::decode_prefix(b, MAX_PAYLOAD).ok()?;
    let len = h.frame_len();
    if b.len() < len || len < HEADER_LEN {
        return None;
    }
    Some(b.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingsdb_protocol::{Frame, PackageType};

    #[test]
    fn batches() {
        let mut v = Vec::new();
        for i in 0..5u16 {
            Frame::new(PackageType::Query, i, Bytes::from(vec![1; usize::from(i)]))
                .encode_into(&mut v)
                .unwrap();
        }
        assert_eq!(count_whole_frames(&v).unwrap(), 5);
        assert_eq!(count_whole_frames(&[]).unwrap(), 0);
        for cut in 1..v.len() {
            let r = count_whole_frames(&v[..cut]);
            let ends = [8, 17, 27, 38];
            if ends.contains(&cut) {
                assert!(r.is_ok(), "{cut}");
            } else {
                assert!(matches!(r, Err(Error::NotWholeFrames(_))), "{cut}");
            }
        }
        let mut b = Bytes::from(v);
        let mut ids = Vec::new();
        while let Some(p) = split_next(&mut b) {
            ids.push(Frame::parse(p, MAX_PAYLOAD).unwrap().id);
        }
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        assert!(b.is_empty());
    }

    #[test]
    fn bad_check_byte_is_refused() {
        let e = count_whole_frames(&[0, 0, 0, 0, 0, 0, 0x20, 0x00]).unwrap_err();
        assert!(e.to_string().contains("check byte"), "{e}");
    }
}
