//! A small MessagePack writer and reader, just enough for the protocol's own
//! envelopes (arrays of scope, code, room ids; maps of event keys).
//!
//! User values (query variables, procedure arguments, results) are not
//! interpreted here: they travel as already-encoded MessagePack, and the
//! [`Reader`] can step over any value without building it, so the bytes of a
//! value can be sliced out of a payload as they are.
//!
//! Every read is bounds-checked and returns [`Error::InvalidMsgpack`] on
//! malformed input; nothing here recurses, so deeply nested input cannot
//! exhaust the stack.

use bytes::BufMut;

use crate::error::Error;

// ---------------------------------------------------------------- writing

/// Writes a MessagePack `nil`.
pub fn write_nil(buf: &mut impl BufMut) {
    buf.put_u8(0xc0);
}

/// Writes a MessagePack boolean.
pub fn write_bool(buf: &mut impl BufMut, v: bool) {
    buf.put_u8(if v { 0xc3 } else { 0xc2 });
}

/// Writes an unsigned integer in its shortest MessagePack form.
///
/// ```
/// let mut buf = Vec::new();
/// thingsdb_protocol::msgpack::write_uint(&mut buf, 456);
/// assert_eq!(buf, [0xcd, 0x01, 0xc8]);
/// ```
pub fn write_uint(buf: &mut impl BufMut, v: u64) {
    if v < 0x80 {
        buf.put_u8(v as u8);
    } else if v <= u64::from(u8::MAX) {
        buf.put_u8(0xcc);
        buf.put_u8(v as u8);
    } else if v <= u64::from(u16::MAX) {
        buf.put_u8(0xcd);
        buf.put_u16(v as u16);
    } else if v <= u64::from(u32::MAX) {
        buf.put_u8(0xce);
        buf.put_u32(v as u32);
    } else {
        buf.put_u8(0xcf);
        buf.put_u64(v);
    }
}

/// Writes a signed integer in its shortest MessagePack form (non-negative
/// values use the unsigned forms, as reference encoders do).
///
/// ```
/// let mut buf = Vec::new();
/// thingsdb_protocol::msgpack::write_int(&mut buf, -56);
/// assert_eq!(buf, [0xd0, 0xc8]);
/// ```
pub fn write_int(buf: &mut impl BufMut, v: i64) {
    if v >= 0 {
        write_uint(buf, v as u64);
    } else if v >= -32 {
        buf.put_u8(v as i8 as u8);
    } else if v >= i64::from(i8::MIN) {
        buf.put_u8(0xd0);
        buf.put_i8(v as i8);
    } else if v >= i64::from(i16::MIN) {
        buf.put_u8(0xd1);
        buf.put_i16(v as i16);
    } else if v >= i64::from(i32::MIN) {
        buf.put_u8(0xd2);
        buf.put_i32(v as i32);
    } else {
        buf.put_u8(0xd3);
        buf.put_i64(v);
    }
}

/// Writes a MessagePack string header for `len` bytes of UTF-8.
pub fn write_str_len(buf: &mut impl BufMut, len: u32) {
    if len < 32 {
        buf.put_u8(0xa0 | len as u8);
    } else if len <= u32::from(u8::MAX) {
        buf.put_u8(0xd9);
        buf.put_u8(len as u8);
    } else if len <= u32::from(u16::MAX) {
        buf.put_u8(0xda);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(0xdb);
        buf.put_u32(len);
    }
}

/// Writes a MessagePack string.
///
/// Strings longer than `u32::MAX` bytes cannot be represented; callers
/// building frames are limited far below that by the payload limit.
pub fn write_str(buf: &mut impl BufMut, s: &str) {
    write_str_len(buf, s.len() as u32);
    buf.put_slice(s.as_bytes());
}

/// Writes a MessagePack binary header followed by the bytes.
pub fn write_bin(buf: &mut impl BufMut, b: &[u8]) {
    let len = b.len() as u32;
    if len <= u32::from(u8::MAX) {
        buf.put_u8(0xc4);
        buf.put_u8(len as u8);
    } else if len <= u32::from(u16::MAX) {
        buf.put_u8(0xc5);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(0xc6);
        buf.put_u32(len);
    }
    buf.put_slice(b);
}

/// Writes a MessagePack array header for `len` elements.
pub fn write_array_len(buf: &mut impl BufMut, len: u32) {
    if len < 16 {
        buf.put_u8(0x90 | len as u8);
    } else if len <= u32::from(u16::MAX) {
        buf.put_u8(0xdc);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(0xdd);
        buf.put_u32(len);
    }
}

/// Writes a MessagePack map header for `len` key/value pairs.
pub fn write_map_len(buf: &mut impl BufMut, len: u32) {
    if len < 16 {
        buf.put_u8(0x80 | len as u8);
    } else if len <= u32::from(u16::MAX) {
        buf.put_u8(0xde);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(0xdf);
        buf.put_u32(len);
    }
}

// ---------------------------------------------------------------- reading

/// The broad kind of the next MessagePack value, read from its marker byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool,
    /// Any integer form.
    Int,
    /// `float 32` or `float 64`.
    Float,
    /// A UTF-8 string.
    Str,
    /// Binary data.
    Bin,
    /// An array.
    Array,
    /// A map.
    Map,
    /// An extension type (never sent by a node, but valid MessagePack).
    Ext,
    /// The reserved marker `0xc1`, invalid in MessagePack.
    Reserved,
}

impl Kind {
    /// The kind announced by a marker byte.
    pub fn of_marker(m: u8) -> Kind {
        match m {
            0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => Kind::Int,
            0x80..=0x8f | 0xde | 0xdf => Kind::Map,
            0x90..=0x9f | 0xdc | 0xdd => Kind::Array,
            0xa0..=0xbf | 0xd9..=0xdb => Kind::Str,
            0xc0 => Kind::Nil,
            0xc1 => Kind::Reserved,
            0xc2 | 0xc3 => Kind::Bool,
            0xc4..=0xc6 => Kind::Bin,
            0xc7..=0xc9 | 0xd4..=0xd8 => Kind::Ext,
            0xca | 0xcb => Kind::Float,
        }
    }

    /// A short lowercase name, used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nil => "nil",
            Kind::Bool => "bool",
            Kind::Int => "integer",
            Kind::Float => "float",
            Kind::Str => "string",
            Kind::Bin => "binary",
            Kind::Array => "array",
            Kind::Map => "map",
            Kind::Ext => "extension",
            Kind::Reserved => "reserved marker",
        }
    }
}

/// A bounds-checked cursor over MessagePack bytes.
///
/// ```
/// use thingsdb_protocol::msgpack::Reader;
/// let mut r = Reader::new(&[0x92, 0xa2, b'@', b't', 0x2a]);
/// assert_eq!(r.read_array_len().unwrap(), 2);
/// assert_eq!(r.read_str().unwrap(), "@t");
/// assert_eq!(r.read_int().unwrap(), 42);
/// assert!(r.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

fn invalid(what: &'static str) -> Error {
    Error::InvalidMsgpack(what)
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// The offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The bytes not yet read.
    pub fn remaining(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    /// The kind of the next value, without consuming it.
    pub fn peek_kind(&self) -> Result<Kind, Error> {
        self.data
            .get(self.pos)
            .map(|&m| Kind::of_marker(m))
            .ok_or_else(|| invalid("unexpected end of data"))
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| invalid("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| invalid("length runs past the end of data"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len8(&mut self) -> Result<usize, Error> {
        Ok(usize::from(self.byte()?))
    }
    fn len16(&mut self) -> Result<usize, Error> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }
    fn len32(&mut self) -> Result<usize, Error> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    /// Reads an array header and returns the element count.
    pub fn read_array_len(&mut self) -> Result<usize, Error> {
        match self.byte()? {
            m @ 0x90..=0x9f => Ok(usize::from(m & 0x0f)),
            0xdc => self.len16(),
            0xdd => self.len32(),
            _ => Err(invalid("expected an array")),
        }
    }

    /// Reads a map header and returns the number of key/value pairs.
    pub fn read_map_len(&mut self) -> Result<usize, Error> {
        match self.byte()? {
            m @ 0x80..=0x8f => Ok(usize::from(m & 0x0f)),
            0xde => self.len16(),
            0xdf => self.len32(),
            _ => Err(invalid("expected a map")),
        }
    }

    /// Reads a string (which must be valid UTF-8).
    pub fn read_str(&mut self) -> Result<&'a str, Error> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.len8()?,
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => return Err(invalid("expected a string")),
        };
        core::str::from_utf8(self.take(len)?).map_err(|_| invalid("string is not valid UTF-8"))
    }

    /// Reads binary data.
    pub fn read_bin(&mut self) -> Result<&'a [u8], Error> {
        let len = match self.byte()? {
            0xc4 => self.len8()?,
            0xc5 => self.len16()?,
            0xc6 => self.len32()?,
            _ => return Err(invalid("expected binary data")),
        };
        self.take(len)
    }

    /// Reads any integer form as an `i64`; unsigned values above
    /// `i64::MAX` are an error.
    pub fn read_int(&mut self) -> Result<i64, Error> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => i64::from(m),
            0xe0..=0xff => i64::from(m as i8),
            0xcc => i64::from(self.byte()?),
            0xcd => i64::from(u16::from_be_bytes(self.be()?)),
            0xce => i64::from(u32::from_be_bytes(self.be()?)),
            0xcf => i64::try_from(u64::from_be_bytes(self.be()?))
                .map_err(|_| invalid("integer does not fit in i64"))?,
            0xd0 => i64::from(self.byte()? as i8),
            0xd1 => i64::from(i16::from_be_bytes(self.be()?)),
            0xd2 => i64::from(i32::from_be_bytes(self.be()?)),
            0xd3 => i64::from_be_bytes(self.be()?),
            _ => return Err(invalid("expected an integer")),
        })
    }

    /// Reads any integer form as a `u64`, including `uint 64` values above
    /// `i64::MAX`; negative values are an error.
    ///
    /// ```
    /// use thingsdb_protocol::msgpack::Reader;
    /// let big = [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    /// assert_eq!(Reader::new(&big).read_uint().unwrap(), u64::MAX);
    /// assert!(Reader::new(&[0xff]).read_uint().is_err()); // -1
    /// ```
    pub fn read_uint(&mut self) -> Result<u64, Error> {
        if self.data.get(self.pos) == Some(&0xcf) {
            self.pos += 1;
            return Ok(u64::from_be_bytes(self.be()?));
        }
        let start = self.pos;
        let v = self.read_int()?;
        u64::try_from(v).map_err(|_| {
            self.pos = start;
            invalid("expected a non-negative integer")
        })
    }

    /// Reads a boolean.
    pub fn read_bool(&mut self) -> Result<bool, Error> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(invalid("expected a boolean")),
        }
    }

    /// Reads a `nil` if the next value is one; returns whether it was.
    pub fn read_nil(&mut self) -> Result<bool, Error> {
        if self.peek_kind()? == Kind::Nil {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Steps over one complete value of any kind (including nested arrays,
    /// maps and extension types) and returns its encoded bytes.
    ///
    /// Iterative: nesting depth does not use stack.
    pub fn skip_value(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        // Number of values still to step over.
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let m = self.byte()?;
            let (skip, children): (usize, u64) = match m {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * u64::from(m & 0x0f)),
                0x90..=0x9f => (0, u64::from(m & 0x0f)),
                0xa0..=0xbf => (usize::from(m & 0x1f), 0),
                0xc1 => return Err(invalid("reserved marker 0xc1")),
                0xc4 | 0xd9 => (self.len8()?, 0),
                0xc5 | 0xda => (self.len16()?, 0),
                0xc6 | 0xdb => (self.len32()?, 0),
                0xc7 => (self.len8()? + 1, 0),
                0xc8 => (self.len16()? + 1, 0),
                0xc9 => (self.len32()?.saturating_add(1), 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.len16()? as u64),
                0xdd => (0, self.len32()? as u64),
                0xde => (0, 2 * self.len16()? as u64),
                0xdf => (0, 2 * self.len32()? as u64),
            };
            self.take(skip)?;
            // Every child needs at least one byte: a count larger than what
            // is left is malformed, and refusing it early keeps the loop
            // bounded by the input length.
            pending = pending
                .checked_add(children)
                .filter(|&p| p <= (self.data.len() - self.pos) as u64)
                .ok_or_else(|| invalid("container count runs past the end of data"))?;
        }
        Ok(&self.data[start..self.pos])
    }
}

/// Checks the kind of the next value before a payload decoder reads it, so
/// that malformed MessagePack (input ending early, the reserved marker) is
/// reported as [`Error::InvalidMsgpack`] and only a well-formed value of the
/// wrong kind as [`Error::WrongType`].
pub(crate) fn expect_kind(
    r: &Reader<'_>,
    want: Kind,
    field: &'static str,
    expected: &'static str,
) -> Result<(), Error> {
    match r.peek_kind()? {
        k if k == want => Ok(()),
        Kind::Reserved => Err(invalid("reserved marker 0xc1")),
        _ => Err(Error::WrongType { field, expected }),
    }
}

/// Reads an id (a room's, a node's): any non-negative integer up to
/// `u64::MAX`. A negative integer, or a value of another kind, is
/// [`Error::WrongType`]; malformed bytes are [`Error::InvalidMsgpack`].
pub(crate) fn read_id(
    r: &mut Reader<'_>,
    field: &'static str,
    expected: &'static str,
) -> Result<u64, Error> {
    expect_kind(r, Kind::Int, field, expected)?;
    match r.clone().read_int() {
        Ok(v) if v < 0 => Err(Error::WrongType { field, expected }),
        _ => r.read_uint(),
    }
}

/// Checks that `data` holds exactly one well-formed MessagePack value.
///
/// ```
/// use thingsdb_protocol::msgpack::validate;
/// assert!(validate(&[0x81, 0xa1, b'a', 0x06]).is_ok());
/// assert!(validate(&[0x81, 0xa1, b'a']).is_err());
/// assert!(validate(&[0x01, 0x02]).is_err()); // two values
/// ```
pub fn validate(data: &[u8]) -> Result<(), Error> {
    let mut r = Reader::new(data);
    r.skip_value()?;
    if r.is_empty() {
        Ok(())
    } else {
        Err(invalid("trailing bytes after the value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn roundtrip_int(v: i64) {
        let mut b = Vec::new();
        write_int(&mut b, v);
        let mut r = Reader::new(&b);
        assert_eq!(r.read_int().unwrap(), v, "{v}");
        assert!(r.is_empty());
        let mut r = Reader::new(&b);
        assert_eq!(r.skip_value().unwrap(), &b[..]);
    }

    #[test]
    fn ints_roundtrip_at_every_boundary() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            i64::MIN,
        ] {
            roundtrip_int(v);
        }
    }

    #[test]
    fn lengths_use_every_form() {
        for len in [0u32, 15, 16, 31, 32, 255, 256, 65535, 65536] {
            let mut b = Vec::new();
            write_array_len(&mut b, len);
            assert_eq!(Reader::new(&b).read_array_len().unwrap(), len as usize);
            let mut b = Vec::new();
            write_map_len(&mut b, len);
            assert_eq!(Reader::new(&b).read_map_len().unwrap(), len as usize);
            let s: alloc::string::String = core::iter::repeat_n('x', len as usize).collect();
            let mut b = Vec::new();
            write_str(&mut b, &s);
            assert_eq!(Reader::new(&b).read_str().unwrap(), s);
            let mut b = Vec::new();
            write_bin(&mut b, s.as_bytes());
            assert_eq!(Reader::new(&b).read_bin().unwrap(), s.as_bytes());
        }
    }

    #[test]
    fn skip_handles_nesting_without_recursion() {
        let mut b = Vec::new();
        for _ in 0..100_000 {
            write_array_len(&mut b, 1);
        }
        write_nil(&mut b);
        assert!(validate(&b).is_ok());
        b.pop();
        assert!(validate(&b).is_err());
    }

    #[test]
    fn huge_counts_are_refused_early() {
        // An array that claims 4 billion elements in 5 bytes.
        assert!(validate(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        // A map that claims 65535 pairs.
        assert!(validate(&[0xde, 0xff, 0xff, 0x01]).is_err());
        // A string that claims more bytes than exist.
        assert!(validate(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']).is_err());
    }

    #[test]
    fn ext_and_float_values_are_stepped_over() {
        assert!(validate(&[0xd4, 0x01, 0x00]).is_ok());
        assert!(validate(&[0xc7, 0x02, 0x05, 0xaa, 0xbb]).is_ok());
        assert!(validate(&[0xcb, 0, 0, 0, 0, 0, 0, 0, 0]).is_ok());
        assert!(validate(&[0xc1]).is_err());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert!(Reader::new(&[0xa1, 0xff]).read_str().is_err());
    }
}
