//! A whole package: header and payload.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::header::{Header, HEADER_LEN};
use crate::package_type::PackageType;

/// One complete package as it travels on the wire.
///
/// The payload is a [`Bytes`], so a frame cut out of a receive buffer shares
/// that buffer instead of copying it.
///
/// ```
/// use bytes::Bytes;
/// use thingsdb_protocol::{Frame, PackageType, MAX_PAYLOAD};
/// let f = Frame::new(PackageType::Data, 0, Bytes::from_static(&[0x02]));
/// let wire = f.to_bytes();
/// assert_eq!(&wire[..], &[1, 0, 0, 0, 0, 0, 0x12, 0xed, 0x02]);
/// assert_eq!(Frame::parse(wire, MAX_PAYLOAD).unwrap(), f);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The package's id.
    pub id: u16,
    /// The raw type byte (see [`Frame::package_type`]).
    pub type_byte: u8,
    /// The MessagePack payload; empty for PING, PONG and OK.
    pub payload: Bytes,
}

impl Frame {
    /// A frame of a known type.
    pub fn new(package_type: PackageType, id: u16, payload: Bytes) -> Self {
        Frame {
            id,
            type_byte: package_type.as_u8(),
            payload,
        }
    }

    /// The package type, or [`Error::UnknownPackageType`].
    pub fn package_type(&self) -> Result<PackageType, Error> {
        PackageType::try_from(self.type_byte)
    }

    /// The frame's header. Fails only if the payload is longer than a
    /// `u32` can describe.
    pub fn header(&self) -> Result<Header, Error> {
        let len = u32::try_from(self.payload.len()).map_err(|_| Error::EncodeTooLarge {
            len: self.payload.len(),
            max: u32::MAX,
        })?;
        Ok(Header {
            len,
            id: self.id,
            type_byte: self.type_byte,
        })
    }

    /// Header plus payload length in bytes.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the frame's header and payload to `buf`.
    pub fn encode_into(&self, buf: &mut impl BufMut) -> Result<(), Error> {
        buf.put_slice(&self.header()?.encode());
        buf.put_slice(&self.payload);
        Ok(())
    }

    /// The frame as one contiguous buffer (header then payload).
    ///
    /// A payload too long for a `u32` length cannot be built by this crate's
    /// decoders; should one be constructed by hand its length is truncated
    /// in the header, so use [`Frame::encode_into`] to get an error instead.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.wire_len());
        let h = Header {
            len: self.payload.len() as u32,
            id: self.id,
            type_byte: self.type_byte,
        };
        b.put_slice(&h.encode());
        b.put_slice(&self.payload);
        b.freeze()
    }

    /// Parses one whole package held in one buffer, as a WebSocket binary
    /// message carries it. The payload shares `msg`.
    ///
    /// A message shorter than its header says is [`Error::Truncated`]; bytes
    /// after the package are ignored, as a node ignores them.
    pub fn parse(msg: Bytes, max_payload: u32) -> Result<Frame, Error> {
        let h = Header::decode_prefix(&msg, max_payload)?;
        let end = h.frame_len();
        if msg.len() < end {
            return Err(Error::Truncated {
                needed: end,
                available: msg.len(),
            });
        }
        Ok(Frame {
            id: h.id,
            type_byte: h.type_byte,
            payload: msg.slice(HEADER_LEN..end),
        })
    }
}

/// Checks that a package of type `t` that carries nothing (PING, OK, PONG,
/// MODULE_CONF_OK, ...) came without a payload.
pub(crate) fn require_empty(t: PackageType, payload: &[u8]) -> Result<(), Error> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(Error::PayloadLength {
            package_type: t,
            expected: "no payload",
            len: payload.len(),
        })
    }
}
