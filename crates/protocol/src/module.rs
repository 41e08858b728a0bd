//! The module protocol: packages between a node and the module processes
//! it runs (protocol.md section 9).
//!
//! A node starts each module as a child process and talks to it over the
//! module's stdin and stdout with the same 8-byte [`Header`] and
//! MessagePack payloads as the client protocol, so the [`Decoder`] and
//! [`Frame`] serve here too. The package types are the `Module*` ones of
//! [`PackageType`]; their [`Direction`] is [`Direction::ToModule`] or
//! [`Direction::FromModule`].
//!
//! | type | package | payload |
//! |---|---|---|
//! | 64 | MODULE_CONF, node to module | the configuration value, id 0 |
//! | 65 | MODULE_CONF_OK, module to node | none |
//! | 66 | MODULE_CONF_ERR, module to node | none |
//! | 80 | MODULE_REQ, node to module | the `future` argument (a map) |
//! | 81 | MODULE_RES, module to node | any value, with the request's id |
//! | 82 | MODULE_ERR, module to node | `[error_code, error_msg]`, with the request's id |
//!
//! What a ThingsDB 1.9.2 node does with a module's packages
//! (`src/ti/module.c`, `src/ti/proc.c`):
//!
//! - a MODULE_ERR whose code lies outside [`ERROR_CODES`], or whose
//!   message is longer than [`MAX_ERROR_MSG`] bytes, fails the request with
//!   `bad_data` (-53) or `value` (-60) instead of the module's error;
//! - a reply whose id the node no longer knows is logged and dropped;
//!   the node reuses an id (they wrap at 65536) only after giving up the
//!   older request with that id;
//! - a header with a bad check byte is logged, and the node never reads
//!   that module's output again until the module restarts.
//!
//! [`Header`]: crate::Header
//! [`Decoder`]: crate::Decoder
//!
//! ```
//! use bytes::BytesMut;
//! use thingsdb_protocol::{module, Decoder, ErrorCode};
//! use thingsdb_protocol::module::{FromModule, ToModule};
//!
//! // The node asks; `{"key": "a"}` is the `future` argument.
//! let mut wire = BytesMut::new();
//! module::encode_request(&mut wire, 7, &[0x81, 0xa3, b'k', b'e', b'y', 0xa1, b'a'])?;
//! let mut d = Decoder::new();
//! d.feed(&wire);
//! let frame = d.next_frame()?.expect("a whole frame");
//! assert!(matches!(ToModule::decode(&frame)?, ToModule::Request(_)));
//!
//! // The module answers that id with an error.
//! let mut out = BytesMut::new();
//! module::encode_error(&mut out, frame.id, ErrorCode::Lookup, "no key `a`")?;
//! d.feed(&out);
//! let reply = d.next_frame()?.expect("a whole frame");
//! match FromModule::decode(&reply)? {
//!     FromModule::Error(e) => assert_eq!((reply.id, e.code), (7, ErrorCode::Lookup)),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), thingsdb_protocol::Error>(())
//! ```

use core::ops::RangeInclusive;

use alloc::string::ToString;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::error_code::ErrorCode;
use crate::frame::{require_empty, Frame};
use crate::header::Header;
use crate::msgpack::{self, expect_kind, Kind, Reader};
use crate::package_type::{Direction, PackageType};
use crate::request::{begin_frame, finish_frame};
use crate::response::ErrorReply;

/// The error codes a node accepts in a MODULE_ERR: the built-in catchable
/// errors (-64 ..= -50, and the reserved -99 ..= -65) and the custom ones
/// (-127 ..= -100).
pub const ERROR_CODES: RangeInclusive<i64> = -127..=-50;

/// The longest error message, in bytes, a node accepts in a MODULE_ERR.
pub const MAX_ERROR_MSG: usize = 16383;

/// The id a node puts on MODULE_CONF (and ignores on the answer to it).
pub const CONF_ID: u16 = 0;

/// Whether a node accepts `code` in a MODULE_ERR (see [`ERROR_CODES`]).
///
/// ```
/// use thingsdb_protocol::{module, ErrorCode};
/// assert!(module::is_module_error_code(ErrorCode::Value));
/// assert!(module::is_module_error_code(ErrorCode::Custom(-100)));
/// assert!(!module::is_module_error_code(ErrorCode::RequestTimeout));
/// ```
pub fn is_module_error_code(code: ErrorCode) -> bool {
    ERROR_CODES.contains(&code.code())
}

/// A package a node sends to a module, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToModule {
    /// MODULE_CONF: the configuration, one MessagePack value kept encoded
    /// (it shares the frame's payload). The node packs it three levels
    /// deep, without thing ids.
    Conf(Bytes),
    /// MODULE_REQ: the `future` argument, one MessagePack value kept
    /// encoded; the frame's id is the one to answer with.
    Request(Bytes),
}

impl ToModule {
    /// Decodes a package from a node. The payload must be exactly one
    /// well-formed MessagePack value.
    ///
    /// A package of another direction is [`Error::UnexpectedPackageType`];
    /// an unknown type byte is [`Error::UnknownPackageType`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use thingsdb_protocol::{Frame, PackageType};
    /// use thingsdb_protocol::module::ToModule;
    /// let f = Frame::new(PackageType::ModuleConf, 0, Bytes::from_static(&[0x80]));
    /// assert_eq!(ToModule::decode(&f)?, ToModule::Conf(Bytes::from_static(&[0x80])));
    /// let bad = Frame::new(PackageType::ModuleReq, 1, Bytes::from_static(&[0x81]));
    /// assert!(ToModule::decode(&bad).is_err());
    /// # Ok::<(), thingsdb_protocol::Error>(())
    /// ```
    pub fn decode(frame: &Frame) -> Result<ToModule, Error> {
        let t = frame.package_type()?;
        if t.direction() != Direction::ToModule {
            return Err(Error::UnexpectedPackageType {
                expected: "a package from a node to a module",
                got: t,
            });
        }
        msgpack::validate(&frame.payload)?;
        let p = frame.payload.clone();
        Ok(if t == PackageType::ModuleConf {
            ToModule::Conf(p)
        } else {
            ToModule::Request(p)
        })
    }
}

/// A package a module sends to its node, decoded (what a node, or a test
/// standing in for one, reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromModule {
    /// MODULE_CONF_OK: the module accepted its configuration.
    ConfOk,
    /// MODULE_CONF_ERR: the module refused its configuration.
    ConfErr,
    /// MODULE_RES: the result, one MessagePack value kept encoded.
    Response(Bytes),
    /// MODULE_ERR: the request failed with this error.
    Error(ErrorReply),
}

impl FromModule {
    /// Decodes a package from a module, checking what a node checks: a
    /// MODULE_ERR must be `[error_code, error_msg]` with the code in
    /// [`ERROR_CODES`] and at most [`MAX_ERROR_MSG`] bytes of message.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use thingsdb_protocol::{ErrorCode, Frame, PackageType};
    /// use thingsdb_protocol::module::FromModule;
    /// let f = Frame::new(PackageType::ModuleErr, 3,
    ///     Bytes::from_static(&[0x92, 0xd0, 0xc4, 0xa2, b'n', b'o']));
    /// match FromModule::decode(&f)? {
    ///     FromModule::Error(e) => assert_eq!(e.code, ErrorCode::Value),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), thingsdb_protocol::Error>(())
    /// ```
    pub fn decode(frame: &Frame) -> Result<FromModule, Error> {
        let t = frame.package_type()?;
        if t.direction() != Direction::FromModule {
            return Err(Error::UnexpectedPackageType {
                expected: "a package from a module to a node",
                got: t,
            });
        }
        let p = &frame.payload;
        match t {
            PackageType::ModuleConfOk | PackageType::ModuleConfErr => {
                require_empty(t, p)?;
                Ok(if t == PackageType::ModuleConfOk {
                    FromModule::ConfOk
                } else {
                    FromModule::ConfErr
                })
            }
            PackageType::ModuleRes => {
                msgpack::validate(p)?;
                Ok(FromModule::Response(p.clone()))
            }
            _ => decode_error(p).map(FromModule::Error),
        }
    }
}

fn decode_error(payload: &[u8]) -> Result<ErrorReply, Error> {
    let mut r = Reader::new(payload);
    expect_kind(&r, Kind::Array, "payload", "an array")?;
    if r.read_array_len()? != 2 {
        return Err(Error::WrongType {
            field: "payload",
            expected: "an array of error_code and error_msg",
        });
    }
    expect_kind(&r, Kind::Int, "error_code", "an integer")?;
    let code = r.read_int()?;
    if !ERROR_CODES.contains(&code) {
        return Err(Error::WrongType {
            field: "error_code",
            expected: "a code in -127..=-50",
        });
    }
    expect_kind(&r, Kind::Str, "error_msg", "a string")?;
    let message = r.read_str()?;
    if message.len() > MAX_ERROR_MSG {
        return Err(Error::WrongType {
            field: "error_msg",
            expected: "at most 16383 bytes",
        });
    }
    if !r.is_empty() {
        return Err(Error::InvalidMsgpack("trailing bytes after the payload"));
    }
    Ok(ErrorReply::new(
        ErrorCode::from_code(code),
        message.to_string(),
    ))
}

fn encode_value_frame(
    buf: &mut BytesMut,
    package_type: PackageType,
    id: u16,
    value: &[u8],
) -> Result<(), Error> {
    let start = begin_frame(buf, package_type, id);
    buf.put_slice(value);
    finish_frame(buf, start)
}

/// Appends a MODULE_CONF with one already-encoded MessagePack value (node
/// side).
pub fn encode_conf(buf: &mut BytesMut, value: &[u8]) -> Result<(), Error> {
    encode_value_frame(buf, PackageType::ModuleConf, CONF_ID, value)
}

/// Appends a MODULE_REQ with one already-encoded MessagePack value (node
/// side).
pub fn encode_request(buf: &mut BytesMut, id: u16, value: &[u8]) -> Result<(), Error> {
    encode_value_frame(buf, PackageType::ModuleReq, id, value)
}

/// Appends a MODULE_CONF_OK (module side).
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// thingsdb_protocol::module::encode_conf_ok(&mut buf);
/// assert_eq!(&buf[..], &[0, 0, 0, 0, 0, 0, 65, 0xbe]);
/// ```
pub fn encode_conf_ok(buf: &mut BytesMut) {
    buf.put_slice(&Header::new(PackageType::ModuleConfOk, CONF_ID, 0).encode());
}

/// Appends a MODULE_CONF_ERR (module side).
pub fn encode_conf_err(buf: &mut BytesMut) {
    buf.put_slice(&Header::new(PackageType::ModuleConfErr, CONF_ID, 0).encode());
}

/// Appends a MODULE_RES with one already-encoded MessagePack value for the
/// request with id `id` (module side).
pub fn encode_response(buf: &mut BytesMut, id: u16, value: &[u8]) -> Result<(), Error> {
    encode_value_frame(buf, PackageType::ModuleRes, id, value)
}

/// Appends a MODULE_ERR `[error_code, error_msg]` for the request with id
/// `id` (module side).
///
/// A code outside [`ERROR_CODES`] or a message longer than
/// [`MAX_ERROR_MSG`] bytes is refused with [`Error::WrongType`] (a node
/// would replace such an error with one of its own), and nothing is
/// appended.
///
/// ```
/// use bytes::BytesMut;
/// use thingsdb_protocol::{module, ErrorCode};
/// let mut buf = BytesMut::new();
/// module::encode_error(&mut buf, 5, ErrorCode::Value, "no")?;
/// assert_eq!(&buf[..], &[6, 0, 0, 0, 5, 0, 82, 0xad, 0x92, 0xd0, 0xc4, 0xa2, b'n', b'o']);
/// assert!(module::encode_error(&mut buf, 5, ErrorCode::RequestTimeout, "no").is_err());
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn encode_error(
    buf: &mut BytesMut,
    id: u16,
    code: ErrorCode,
    message: &str,
) -> Result<(), Error> {
    if !is_module_error_code(code) {
        return Err(Error::WrongType {
            field: "error_code",
            expected: "a code in -127..=-50",
        });
    }
    if message.len() > MAX_ERROR_MSG {
        return Err(Error::WrongType {
            field: "error_msg",
            expected: "at most 16383 bytes",
        });
    }
    let start = begin_frame(buf, PackageType::ModuleErr, id);
    msgpack::write_array_len(buf, 2);
    msgpack::write_int(buf, code.code());
    msgpack::write_str(buf, message);
    finish_frame(buf, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::Decoder;
    use alloc::vec::Vec;

    fn one_frame(b: &BytesMut) -> Frame {
        let mut d = Decoder::new();
        d.feed(b);
        let f = d.next_frame().unwrap().unwrap();
        d.finish().unwrap();
        f
    }

    #[test]
    fn every_package_roundtrips() {
        let mut b = BytesMut::new();
        encode_conf(&mut b, &[0x81, 0xa1, b'n', 0x03]).unwrap();
        let f = one_frame(&b);
        assert_eq!((f.id, f.type_byte), (0, 64));
        assert_eq!(
            ToModule::decode(&f).unwrap(),
            ToModule::Conf(Bytes::from_static(&[0x81, 0xa1, b'n', 0x03]))
        );

        let mut b = BytesMut::new();
        encode_request(&mut b, 65535, &[0x80]).unwrap();
        let f = one_frame(&b);
        assert_eq!(f.id, 65535);
        assert_eq!(
            ToModule::decode(&f).unwrap(),
            ToModule::Request(Bytes::from_static(&[0x80]))
        );

        for (enc, want) in [
            (encode_conf_ok as fn(&mut BytesMut), FromModule::ConfOk),
            (encode_conf_err, FromModule::ConfErr),
        ] {
            let mut b = BytesMut::new();
            enc(&mut b);
            assert_eq!(FromModule::decode(&one_frame(&b)).unwrap(), want);
        }

        let mut b = BytesMut::new();
        encode_response(&mut b, 9, &[0x2a]).unwrap();
        let f = one_frame(&b);
        assert_eq!(f.id, 9);
        assert_eq!(
            FromModule::decode(&f).unwrap(),
            FromModule::Response(Bytes::from_static(&[0x2a]))
        );

        for code in [
            ErrorCode::Cancelled,
            ErrorCode::Assert,
            ErrorCode::Custom(-127),
        ] {
            let mut b = BytesMut::new();
            encode_error(&mut b, 2, code, "why").unwrap();
            assert_eq!(
                FromModule::decode(&one_frame(&b)).unwrap(),
                FromModule::Error(ErrorReply::new(code, "why"))
            );
        }
    }

    #[test]
    fn errors_the_node_would_refuse_are_not_encoded() {
        let mut b = BytesMut::new();
        for code in [
            ErrorCode::Internal,
            ErrorCode::Other(-49),
            ErrorCode::Other(-128),
        ] {
            assert!(encode_error(&mut b, 1, code, "x").is_err(), "{code:?}");
        }
        let long: alloc::string::String = core::iter::repeat_n('x', MAX_ERROR_MSG + 1).collect();
        assert!(encode_error(&mut b, 1, ErrorCode::Value, &long).is_err());
        assert!(b.is_empty());
        encode_error(&mut b, 1, ErrorCode::Value, &long[1..]).unwrap();
    }

    #[test]
    fn directions_are_checked() {
        let f = Frame::new(PackageType::ModuleRes, 1, Bytes::from_static(&[0x01]));
        assert!(matches!(
            ToModule::decode(&f),
            Err(Error::UnexpectedPackageType { .. })
        ));
        let f = Frame::new(PackageType::Data, 1, Bytes::from_static(&[0x01]));
        assert!(ToModule::decode(&f).is_err());
        assert!(FromModule::decode(&f).is_err());
        let f = Frame::new(PackageType::ModuleReq, 1, Bytes::from_static(&[0x01]));
        assert!(FromModule::decode(&f).is_err());
        // And the client protocol's decoders refuse module packages.
        assert!(crate::Response::decode(&f).is_err());
        assert!(crate::Request::decode(&f).is_err());
        assert!(crate::Event::decode(&f).is_err());
    }

    proptest::proptest! {
        /// Any error a node accepts round-trips; any other is refused
        /// before a byte is written.
        #[test]
        fn errors_roundtrip_or_are_refused(code in proptest::num::i64::ANY, msg in ".{0,40}", id in 0u16..) {
            let code = ErrorCode::from_code(code);
            let mut b = BytesMut::new();
            match encode_error(&mut b, id, code, &msg) {
                Ok(()) => {
                    proptest::prop_assert!(is_module_error_code(code));
                    let f = one_frame(&b);
                    proptest::prop_assert_eq!(f.id, id);
                    proptest::prop_assert_eq!(
                        FromModule::decode(&f).unwrap(),
                        FromModule::Error(ErrorReply::new(code, msg))
                    );
                }
                Err(_) => {
                    proptest::prop_assert!(!is_module_error_code(code));
                    proptest::prop_assert!(b.is_empty());
                }
            }
        }

        /// Any payload under any module type: a value or a typed error.
        #[test]
        fn any_payload_decodes_or_fails_cleanly(
            t in proptest::sample::select(&[64u8, 65, 66, 80, 81, 82][..]),
            p in proptest::collection::vec(proptest::num::u8::ANY, 0..48),
        ) {
            let f = Frame { id: 1, type_byte: t, payload: Bytes::from(p) };
            let to = ToModule::decode(&f);
            let from = FromModule::decode(&f);
            proptest::prop_assert!(to.is_err() || from.is_err());
            if let Ok(ToModule::Conf(v) | ToModule::Request(v)) = to {
                proptest::prop_assert!(msgpack::validate(&v).is_ok());
            }
        }
    }

    #[test]
    fn malformed_module_errors_are_typed() {
        let bad: [&[u8]; 8] = [
            &[0x91, 0xd0, 0xc4],                   // one element
            &[0x92, 0xa1, b'x', 0xa1, b'x'],       // code not an int
            &[0x92, 0xd0, 0xc4, 0x01],             // message not a string
            &[0x92, 0x05, 0xa1, b'x'],             // code out of range
            &[0x92, 0xd0, 0xc4, 0xa1],             // truncated
            &[0x92, 0xd0, 0xc4, 0xa1, b'x', 0xc0], // trailing bytes
            &[0x80],                               // a map
            &[],
        ];
        for p in bad {
            let f = Frame::new(PackageType::ModuleErr, 1, Bytes::copy_from_slice(p));
            assert!(FromModule::decode(&f).is_err(), "{p:x?}");
        }
        let f = Frame::new(PackageType::ModuleConfOk, 0, Bytes::from_static(&[0xc0]));
        assert!(matches!(
            FromModule::decode(&f),
            Err(Error::PayloadLength { .. })
        ));
        let mut v = Vec::new();
        msgpack::write_str(&mut v, "x");
        let f = Frame::new(PackageType::ModuleReq, 1, Bytes::from(v.clone()));
        assert!(ToModule::decode(&f).is_ok());
        v.push(0);
        let f = Frame::new(PackageType::ModuleReq, 1, Bytes::from(v));
        assert!(ToModule::decode(&f).is_err());
    }
}
