//! Responses: decoding (client side) and encoders (node side).

use alloc::string::{String, ToString};
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::error_code::ErrorCode;
use crate::frame::{require_empty, Frame};
use crate::header::Header;
use crate::msgpack::{self, expect_kind, Kind, Reader};
use crate::package_type::{Direction, PackageType};
use crate::request::{begin_frame, finish_frame};

/// The payload of an ERROR response: `{error_code, error_msg}`.
///
/// ```
/// use thingsdb_protocol::{ErrorCode, ErrorReply};
/// let e = ErrorReply::decode(&[0x82,
///     0xaa, b'e', b'r', b'r', b'o', b'r', b'_', b'c', b'o', b'd', b'e', 0xd0, 0xca,
///     0xa9, b'e', b'r', b'r', b'o', b'r', b'_', b'm', b's', b'g', 0xa2, b'n', b'o'])?;
/// assert_eq!(e.code, ErrorCode::Lookup);
/// assert_eq!(e.message, "no");
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorReply {
    /// The error code.
    pub code: ErrorCode,
    /// The node's message.
    pub message: String,
}

impl ErrorReply {
    /// Decodes an ERROR payload; keys may come in any order and extra keys
    /// are ignored.
    pub fn decode(payload: &[u8]) -> Result<ErrorReply, Error> {
        let mut r = Reader::new(payload);
        expect_kind(&r, Kind::Map, "payload", "a map")?;
        let n = r.read_map_len()?;
        let (mut code, mut message) = (None, None);
        for _ in 0..n {
            expect_kind(&r, Kind::Str, "key", "a string")?;
            match r.read_str()? {
                "error_code" => {
                    expect_kind(&r, Kind::Int, "error_code", "an integer")?;
                    code = Some(r.read_int()?);
                }
                "error_msg" => {
                    expect_kind(&r, Kind::Str, "error_msg", "a string")?;
                    message = Some(r.read_str()?);
                }
                _ => {
                    r.skip_value()?;
                }
            }
        }
        if !r.is_empty() {
            return Err(Error::InvalidMsgpack("trailing bytes after the payload"));
        }
        Ok(ErrorReply {
            code: ErrorCode::from_code(code.ok_or(Error::MissingKey("error_code"))?),
            message: message.ok_or(Error::MissingKey("error_msg"))?.to_string(),
        })
    }
}

impl core::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A decoded response to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// PONG, the answer to PING.
    Pong,
    /// OK: success without a value.
    Ok,
    /// DATA: one MessagePack value, kept encoded (it shares the frame's
    /// payload). It is checked to be exactly one well-formed value.
    Data(Bytes),
    /// ERROR.
    Error(ErrorReply),
}

impl Response {
    /// Decodes a response frame.
    ///
    /// An event frame or a request frame is [`Error::UnexpectedPackageType`];
    /// an unknown type byte is [`Error::UnknownPackageType`].
    pub fn decode(frame: &Frame) -> Result<Response, Error> {
        let t = frame.package_type()?;
        if t.direction() != Direction::Response {
            return Err(Error::UnexpectedPackageType {
                expected: "a response",
                got: t,
            });
        }
        let p = &frame.payload;
        match t {
            PackageType::Pong | PackageType::Ok => {
                require_empty(t, p)?;
                Ok(if t == PackageType::Ok {
                    Response::Ok
                } else {
                    Response::Pong
                })
            }
            PackageType::Data => {
                msgpack::validate(p)?;
                Ok(Response::Data(p.clone()))
            }
            _ => ErrorReply::decode(p).map(Response::Error),
        }
    }

    /// The kind of value a DATA response holds, without decoding it.
    pub fn data_kind(&self) -> Option<Kind> {
        match self {
            Response::Data(d) => Reader::new(d).peek_kind().ok(),
            _ => None,
        }
    }
}

/// Appends a PONG response (node side).
pub fn encode_pong(buf: &mut BytesMut, id: u16) {
    buf.put_slice(&Header::new(PackageType::Pong, id, 0).encode());
}

/// Appends an OK response (node side).
pub fn encode_ok(buf: &mut BytesMut, id: u16) {
    buf.put_slice(&Header::new(PackageType::Ok, id, 0).encode());
}

/// Appends a DATA response with one already-encoded MessagePack value
/// (node side).
pub fn encode_data(buf: &mut BytesMut, id: u16, value: &[u8]) -> Result<(), Error> {
    let start = begin_frame(buf, PackageType::Data, id);
    buf.put_slice(value);
    finish_frame(buf, start)
}

/// Appends an ERROR response `{error_code, error_msg}` (node side).
///
/// ```
/// use bytes::BytesMut;
/// use thingsdb_protocol::{response, ErrorCode};
/// let mut buf = BytesMut::new();
/// response::encode_error(&mut buf, 0, ErrorCode::Auth, "connection is not authenticated")?;
/// assert_eq!(buf.len(), 8 + 0x38);
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn encode_error(
    buf: &mut BytesMut,
    id: u16,
    code: ErrorCode,
    message: &str,
) -> Result<(), Error> {
    let start = begin_frame(buf, PackageType::Error, id);
    msgpack::write_map_len(buf, 2);
    msgpack::write_str(buf, "error_code");
    msgpack::write_int(buf, code.code());
    msgpack::write_str(buf, "error_msg");
    msgpack::write_str(buf, message);
    finish_frame(buf, start)
}

impl From<ErrorReply> for Response {
    fn from(e: ErrorReply) -> Self {
        Response::Error(e)
    }
}

impl ErrorReply {
    /// An error reply with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: PackageType, payload: &'static [u8]) -> Frame {
        Frame::new(t, 1, Bytes::from_static(payload))
    }

    #[test]
    fn error_keys_in_any_order_with_extras() {
        let mut p = alloc::vec::Vec::new();
        msgpack::write_map_len(&mut p, 3);
        msgpack::write_str(&mut p, "error_msg");
        msgpack::write_str(&mut p, "boom");
        msgpack::write_str(&mut p, "extra");
        msgpack::write_array_len(&mut p, 1);
        msgpack::write_nil(&mut p);
        msgpack::write_str(&mut p, "error_code");
        msgpack::write_int(&mut p, -101);
        let e = ErrorReply::decode(&p).unwrap();
        assert_eq!(e, ErrorReply::new(ErrorCode::Custom(-101), "boom"));
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        assert_eq!(
            ErrorReply::decode(&[0x80]),
            Err(Error::MissingKey("error_code"))
        );
        assert!(matches!(
            ErrorReply::decode(&[0x90]),
            Err(Error::WrongType { .. })
        ));
        assert!(Response::decode(&frame(PackageType::Data, &[0x92, 0x01])).is_err());
        assert!(Response::decode(&frame(PackageType::Data, &[])).is_err());
        assert!(Response::decode(&frame(PackageType::Ok, &[0x01])).is_err());
        assert!(matches!(
            Response::decode(&frame(PackageType::OnJoin, &[])),
            Err(Error::UnexpectedPackageType { .. })
        ));
    }

    #[test]
    fn ext_values_in_data_are_accepted() {
        let r = Response::decode(&frame(PackageType::Data, &[0xd4, 0x01, 0x02])).unwrap();
        assert_eq!(r.data_kind(), Some(Kind::Ext));
    }
}
