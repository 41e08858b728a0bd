//! `rmpv::Value` conveniences (feature `std`).

use alloc::vec::Vec;
use bytes::{BufMut, BytesMut};
use rmpv::Value;

use crate::error::Error;

/// The nesting depth [`decode_value`] accepts before refusing the input.
pub const MAX_DEPTH: usize = 1024;

/// Decodes exactly one MessagePack value into an [`rmpv::Value`].
///
/// Nesting deeper than [`MAX_DEPTH`] and trailing bytes are errors.
///
/// ```
/// use rmpv::Value;
/// assert_eq!(thingsdb_protocol::decode_value(&[0x92, 0x11, 0xc0])?,
///            Value::Array(vec![Value::from(17), Value::Nil]));
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn decode_value(data: &[u8]) -> Result<Value, Error> {
    // Validate first: our reader is iterative and bounds-checked, so rmpv
    // only ever sees well-formed input.
    crate::msgpack::validate(data)?;
    decode_validated_value(data)
}

/// Decodes one MessagePack value that this crate has already checked to be
/// well-formed, without checking it again: the payload of a
/// [`Response::Data`](crate::Response::Data) and the `args` of an
/// [`EmitEvent`](crate::EmitEvent) are. On other input use
/// [`decode_value`]: this function never panics either, but it lets rmpv
/// see lengths nobody checked.
///
/// ```
/// use rmpv::Value;
/// assert_eq!(thingsdb_protocol::decode_validated_value(&[0x2a])?, Value::from(42));
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn decode_validated_value(data: &[u8]) -> Result<Value, Error> {
    let mut rd = data;
    rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|_| Error::InvalidMsgpack("value nested too deeply"))
}

/// Appends a value's MessagePack encoding to `buf`.
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// thingsdb_protocol::encode_value(&mut buf, &rmpv::Value::from("hi"));
/// assert_eq!(&buf[..], &[0xa2, b'h', b'i']);
/// ```
pub fn encode_value(buf: &mut BytesMut, value: &Value) {
    // Writing into a BytesMut cannot fail.
    let _ = rmpv::encode::write_value(&mut buf.writer(), value);
}

impl crate::response::Response {
    /// The value of a DATA response, decoded; `None` for other responses.
    pub fn value(&self) -> Option<Result<Value, Error>> {
        match self {
            // Response::decode validated the payload.
            crate::response::Response::Data(d) => Some(decode_validated_value(d)),
            _ => None,
        }
    }
}

impl crate::event::EmitEvent {
    /// The arguments, decoded.
    pub fn arg_list(&self) -> Result<Vec<Value>, Error> {
        // Event::decode stepped over the args, which validated them.
        match decode_validated_value(&self.args)? {
            Value::Array(v) => Ok(v),
            _ => Err(Error::WrongType {
                field: "args",
                expected: "an array",
            }),
        }
    }
}
