//! The 8-byte package header.

use crate::error::Error;
use crate::package_type::PackageType;

/// Size of a package header in bytes.
pub const HEADER_LEN: usize = 8;

/// The largest payload a node accepts: 1 GiB. Clients should configure a
/// much lower limit for what they receive.
pub const MAX_PAYLOAD: u32 = 1 << 30;

/// The id the node puts on every event package.
pub const EVENT_ID: u16 = 0xffff;

/// A decoded package header.
///
/// The type is kept as its raw byte so that a header with a type this crate
/// does not know still decodes (the check byte proves it is a header); use
/// [`Header::package_type`] to classify it.
///
/// ```
/// use thingsdb_protocol::{Header, PackageType};
/// let h = Header::new(PackageType::Ping, 0, 0);
/// assert_eq!(h.encode(), [0, 0, 0, 0, 0, 0, 0x20, 0xdf]);
/// assert_eq!(Header::decode(&h.encode(), u32::MAX).unwrap(), h);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Payload length in bytes, header not included.
    pub len: u32,
    /// Request id; echoed in the reply; 65535 on events.
    pub id: u16,
    /// The raw package type byte.
    pub type_byte: u8,
}

impl Header {
    /// A header for a known package type.
    pub const fn new(package_type: PackageType, id: u16, len: u32) -> Self {
        Header {
            len,
            id,
            type_byte: package_type.as_u8(),
        }
    }

    /// The package type, or [`Error::UnknownPackageType`].
    pub fn package_type(&self) -> Result<PackageType, Error> {
        PackageType::try_from(self.type_byte)
    }

    /// The header's 8 bytes: `len` (u32 LE), `id` (u16 LE), type, check.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.len.to_le_bytes();
        let i = self.id.to_le_bytes();
        [
            l[0],
            l[1],
            l[2],
            l[3],
            i[0],
            i[1],
            self.type_byte,
            !self.type_byte,
        ]
    }

    /// Decodes a header, checking the check byte and that `len` does not
    /// exceed `max_payload`. Both checks use the header alone, so a caller
    /// can refuse a package before reserving room for its payload.
    pub fn decode(b: &[u8; HEADER_LEN], max_payload: u32) -> Result<Header, Error> {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let id = u16::from_le_bytes([b[4], b[5]]);
        let (type_byte, check) = (b[6], b[7]);
        if type_byte ^ check != 0xff {
            return Err(Error::BadCheckByte {
                package_type: type_byte,
                check,
            });
        }
        if len > max_payload {
            return Err(Error::PayloadTooLarge {
                len,
                max: max_payload,
            });
        }
        Ok(Header { len, id, type_byte })
    }

    /// Decodes a header from the start of `b`, which may be shorter than a
    /// header ([`Error::Truncated`]) or longer (the rest is ignored).
    pub fn decode_prefix(b: &[u8], max_payload: u32) -> Result<Header, Error> {
        let h: &[u8; HEADER_LEN] =
            b.get(..HEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(Error::Truncated {
                    needed: HEADER_LEN,
                    available: b.len(),
                })?;
        Header::decode(h, max_payload)
    }

    /// Header plus payload length, in bytes.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_check_byte_is_refused() {
        let mut b = Header::new(PackageType::Leave, 0, 0).encode();
        assert_eq!(b[7], 0xd8);
        b[7] = 0xd9; // the public docs' wrong value
        assert_eq!(
            Header::decode(&b, MAX_PAYLOAD),
            Err(Error::BadCheckByte {
                package_type: 39,
                check: 0xd9
            })
        );
    }

    #[test]
    fn oversized_length_is_refused_from_the_header() {
        let b = Header::new(PackageType::Data, 1, MAX_PAYLOAD + 1).encode();
        assert_eq!(
            Header::decode(&b, MAX_PAYLOAD),
            Err(Error::PayloadTooLarge {
                len: MAX_PAYLOAD + 1,
                max: MAX_PAYLOAD
            })
        );
        assert!(Header::decode(&b, u32::MAX).is_ok());
    }

    #[test]
    fn short_input_is_truncated() {
        assert_eq!(
            Header::decode_prefix(&[0, 0, 0], 10),
            Err(Error::Truncated {
                needed: 8,
                available: 3
            })
        );
    }

    #[test]
    fn unknown_type_still_decodes_as_a_header() {
        let h = Header {
            len: 0,
            id: 3,
            type_byte: 200,
        };
        let d = Header::decode(&h.encode(), 0).unwrap();
        assert_eq!(d.package_type(), Err(Error::UnknownPackageType(200)));
    }
}
